"""An operator that waits for a go-ahead before calling Triton, so a test can act while it runs.

Writes `started` to its output, waits until `go` exists in the payload, then infers the payload's
numbers with the model given as the first argument and writes `result.json`.
"""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

payload = Path(os.environ["NVIDIA_CLARA_INPUT"])
output = Path(os.environ["NVIDIA_CLARA_OUTPUT"])
(output / "started").write_text("")
deadline = time.monotonic() + 120
while not (payload / "go").exists():
    if time.monotonic() > deadline:
        sys.exit("no go-ahead within 120 s")
    time.sleep(0.02)
x = np.array([float(w) for w in (payload / "numbers.txt").read_text().split()], dtype=np.float32)
request = grpcclient.InferInput("X", list(x.shape), "FP32")
request.set_data_from_numpy(x)
client = grpcclient.InferenceServerClient(os.environ["NVIDIA_TRITON_GRPCURI"])
y = client.infer(sys.argv[1], [request]).as_numpy("Y")
(output / "result.json").write_text(json.dumps({"y": y.tolist()}))
