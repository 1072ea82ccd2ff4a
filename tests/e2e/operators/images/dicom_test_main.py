"""Stands in for main.py of NVIDIA's dicom-test image (clara-dicom-adapter, test/dicom-test-pipeline),
which runs under Clara's driver library, not available here. Run the same way (the image's entrypoint
`bash -c "python -u main.py"` in /home/clara), it does the same minimal thing: the directories from
NVIDIA_CLARA_INPUTPATHS / NVIDIA_CLARA_OUTPUTPATHS split on ':' as the original reads them, every
file checked to be DICOM part 10 (the DICM marker after the 128-byte preamble; the original uses
pydicom), the input copied to the output, and a failure when a file is not DICOM."""

import os
import shutil
import sys
from pathlib import Path

input_dir = os.environ.get("NVIDIA_CLARA_INPUTPATHS", "/input").split(":")[1]
output_dir = os.environ.get("NVIDIA_CLARA_OUTPUTPATHS", "/input").split(":")[1]
files = [path for path in Path(input_dir).glob("**/*") if path.is_file()]
invalid = [path for path in files if path.read_bytes()[128:132] != b"DICM"]
for item in os.listdir(input_dir):
    source, target = os.path.join(input_dir, item), os.path.join(output_dir, item)
    if os.path.isdir(source):
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)
print(f"Scanned {len(files)} files with {len(invalid)} non-DICOM part-10 file(s).")
if invalid:
    sys.exit(f"{len(invalid)} invalid DICOM part-10 file(s) found")
