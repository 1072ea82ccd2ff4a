"""Operator 2: send the numbers to Triton (NVIDIA_TRITON_GRPCURI) and write what the model returns."""

import argparse
import json
import os
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
model = parser.parse_args().model

numbers = json.loads((Path(os.environ["NVIDIA_CLARA_INPUT"]) / "numbers.json").read_text())
client = grpcclient.InferenceServerClient(os.environ["NVIDIA_TRITON_GRPCURI"])
x = np.array(numbers, dtype=np.float32)
request = grpcclient.InferInput("X", list(x.shape), "FP32")
request.set_data_from_numpy(x)
y = client.infer(model, [request]).as_numpy("Y")

output = Path(os.environ["NVIDIA_CLARA_OUTPUT"])
(output / "result.json").write_text(json.dumps({"model": model, "x": numbers, "y": y.tolist()}))
seen = {k: v for k, v in os.environ.items() if k.startswith(("NVIDIA_", "CLARA_"))}
(output / "env.json").write_text(json.dumps(seen, indent=2))
print(f"infer: {model}({numbers}) = {y.tolist()}")
