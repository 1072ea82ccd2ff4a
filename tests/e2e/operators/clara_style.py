"""An operator written as NVIDIA's own are (clara-dicom-adapter's dicom-test operator): it takes its
input and output directories from NVIDIA_CLARA_INPUTPATHS / NVIDIA_CLARA_OUTPUTPATHS split on ':',
and, given `--container`, also reads /input and writes /output literally, as code in a Clara
container may. It copies its input to its output and writes report.json there."""

import json
import os
import shutil
import sys
from pathlib import Path

input_dir = os.environ["NVIDIA_CLARA_INPUTPATHS"].split(":")[1]
output_dir = os.environ["NVIDIA_CLARA_OUTPUTPATHS"].split(":")[1]
files = sorted(str(p.relative_to(input_dir)) for p in Path(input_dir).rglob("*") if p.is_file())
for name in files:
    if name != "report.json":
        (Path(output_dir) / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(input_dir) / name, Path(output_dir) / name)
report = {
    "input_dir": input_dir, "output_dir": output_dir, "files": files,
    "inputpaths": os.environ["NVIDIA_CLARA_INPUTPATHS"], "outputpaths": os.environ["NVIDIA_CLARA_OUTPUTPATHS"],
    "logs": os.environ["NVIDIA_CLARA_LOGS"], "affinity": sorted(os.sched_getaffinity(0)),
}
if "--container" in sys.argv:
    report["slash_input"] = sorted(p.name for p in Path("/input").iterdir())
    Path("/output/written-at-slash-output").write_text("yes")
    Path("/logs/app.log").write_text("logged")
(Path(output_dir) / "report.json").write_text(json.dumps(report))
print(f"copied {len(files)} file(s) from {input_dir} to {output_dir}")
