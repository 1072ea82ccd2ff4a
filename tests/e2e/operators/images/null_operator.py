"""Stands in for register.py of the sizing tool's null-pipeline/operator-py image, which is not
public: with the same arguments (`--agent`), it copies its input to its output, as a null operator
does, and asks the Triton server its variables name (CLARA_TRITON_URI, Triton's HTTP API) which models
are ready, writing them to /output/models.json."""

import argparse
import json
import os
import shutil
import urllib.request
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--agent", required=True)
agent = parser.parse_args().agent
source = Path(os.environ["NVIDIA_CLARA_INPUTPATHS"].split(":")[1])
target = Path(os.environ["NVIDIA_CLARA_OUTPUTPATHS"].split(":")[1])
shutil.copytree(source, target, dirs_exist_ok=True)
request = urllib.request.Request(f"http://{os.environ['CLARA_TRITON_URI']}/v2/repository/index", data=b"{}",
                                 method="POST")
with urllib.request.urlopen(request, timeout=30) as answer:
    index = json.loads(answer.read())
ready = sorted(model["name"] for model in index if model.get("state") == "READY")
(target / "models.json").write_text(json.dumps({"agent": agent, "ready": ready}))
print(f"{agent}: models ready {ready}")
