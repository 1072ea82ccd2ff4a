"""Fan-out proof: writes <name> into the shared directory given, then waits until every name given
after it is there too (so all of them ran at the same time), then writes its output; exits 1 if
the others do not come within 60 s. With `--lines N`, instead prints N lines, each once the test
creates `next-<i>` in the payload (for following logs while they grow)."""

import os
import sys
import time
from pathlib import Path

deadline = time.monotonic() + 60
if sys.argv[1] == "--lines":
    payload = Path(os.environ["NVIDIA_CLARA_INPUT"])
    for i in range(int(sys.argv[2])):
        while not (payload / f"next-{i}").exists():
            if time.monotonic() > deadline:
                sys.exit(f"no next-{i} within 60 s")
            time.sleep(0.02)
        print(f"line {i}", flush=True)
    sys.exit(0)
shared, me, others = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
(shared / me).write_text("")
while not all((shared / other).exists() for other in others):
    if time.monotonic() > deadline:
        sys.exit(f"{me}: {others} did not run at the same time")
    time.sleep(0.02)
Path(os.environ["NVIDIA_CLARA_OUTPUT"], f"{me}.done").write_text(me)
