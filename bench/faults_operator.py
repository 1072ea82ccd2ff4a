"""The operator of bench/faults.py: notes its run in a ledger (so a job run twice is seen), asks Triton
for the model on the payload's numbers, holds a moment (so kills land while it runs), writes the result.

    faults_operator.py LEDGER HOLD_SECONDS
"""

import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

ledger, hold = sys.argv[1], float(sys.argv[2])
with open(ledger, "a") as runs:  # one short O_APPEND write: lines from concurrent operators do not mix
    runs.write(f"{os.environ['NVIDIA_CLARA_JOBID']} {os.environ['NVIDIA_CLARA_STAGENAME']} {os.getpid()}\n")
payload = Path(os.environ["NVIDIA_CLARA_INPUT"])
numbers = [float(w) for f in sorted(payload.iterdir()) for w in f.read_text().split()]
x = np.array(numbers, dtype=np.float32)
request = grpcclient.InferInput("X", list(x.shape), "FP32")
request.set_data_from_numpy(x)
y = grpcclient.InferenceServerClient(os.environ["NVIDIA_TRITON_GRPCURI"]).infer("affine", [request]).as_numpy("Y")
time.sleep(random.uniform(0, hold))
(Path(os.environ["NVIDIA_CLARA_OUTPUT"]) / "result.json").write_text(json.dumps({"x": numbers, "y": y.tolist()}))
