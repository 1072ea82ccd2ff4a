"""An operator that reports what it could do with privileges it should not have.

Writes `operator.txt` to its output: the outcome of `setresuid(0, 0, 0)` and its `Uid`, `Groups`
and `Cap*` lines of /proc/self/status. With a model name as argument, also asks that model
(tests/e2e/models/privileges) for the same report about the Python-backend stub that runs it, and
writes it to `model.txt`.
"""

import os
import sys
from pathlib import Path


def report() -> str:
    with open("/proc/self/status") as status:  # before: a successful setresuid changes them
        lines = [line for line in status if line.startswith(("Uid", "Groups", "Cap"))]
    try:
        os.setresuid(0, 0, 0)
        outcome = "setresuid(0, 0, 0): succeeded"
    except OSError as exc:
        outcome = f"setresuid(0, 0, 0): {exc.strerror}"
    return outcome + "\n" + "".join(lines)


output = Path(os.environ["NVIDIA_CLARA_OUTPUT"])
with open(output / "operator.txt", "w") as out:  # opened first: once root, it may no longer be allowed to
    out.write(report())
if len(sys.argv) > 1:
    import numpy as np
    import tritonclient.grpc as grpcclient

    request = grpcclient.InferInput("X", [1], "FP32")
    request.set_data_from_numpy(np.zeros(1, dtype=np.float32))
    client = grpcclient.InferenceServerClient(os.environ["NVIDIA_TRITON_GRPCURI"])
    answer = client.infer(sys.argv[1], [request]).as_numpy("REPORT")
    (output / "model.txt").write_text(answer[0].decode())
