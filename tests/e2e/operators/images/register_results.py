"""Stands in for register.py of NVIDIA's register-results image, which is not public. It takes the
same arguments (`--agent`, `--data`) and records, for that agent and those destinations, the files of
its input (NVIDIA_CLARA_INPUTPATHS split on ':'), in NVIDIA_CLARA_PUBLISHING/registration.json: the
registration Clara's results service would receive."""

import argparse
import json
import os
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--agent", required=True)
parser.add_argument("--data", default="[]")
args = parser.parse_args()
source = Path(os.environ["NVIDIA_CLARA_INPUTPATHS"].split(":")[1])
record = {"agent": args.agent, "data": json.loads(args.data), "job": os.environ["NVIDIA_CLARA_JOBID"],
          "files": sorted(str(path.relative_to(source)) for path in source.rglob("*") if path.is_file())}
Path(os.environ["NVIDIA_CLARA_PUBLISHING"], "registration.json").write_text(json.dumps(record))
print(f"registered {len(record['files'])} file(s) for {args.agent} to {record['data']}")
