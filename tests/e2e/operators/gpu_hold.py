"""An operator that notes the GPUs it was given, then holds them until the job's payload has `go`."""

import os
import sys
import time
from pathlib import Path

output = Path(os.environ["NVIDIA_CLARA_OUTPUT"])
(output / "gpus.txt").write_text(os.environ.get("CUDA_VISIBLE_DEVICES", ""))
(output / "started").write_text("")
deadline = time.monotonic() + 120
while not Path("input", "go").exists():  # the operator runs in its job's directory
    if time.monotonic() > deadline:
        sys.exit("no go-ahead within 120 s")
    time.sleep(0.02)
