"""Operator 1: read numbers from every file of the payload, write them as one JSON list."""

import json
import os
from pathlib import Path

numbers = []
for path in sorted(Path(os.environ["NVIDIA_CLARA_INPUT"]).rglob("*")):
    if path.is_file():
        numbers += [float(word) for word in path.read_text().split()]
output = Path(os.environ["NVIDIA_CLARA_OUTPUT"])
(output / "numbers.json").write_text(json.dumps(numbers))
seen = {k: v for k, v in os.environ.items() if k.startswith(("NVIDIA_", "CLARA_"))}
(output / "env.json").write_text(json.dumps(seen, indent=2))
print(f"prepare: {len(numbers)} number(s)")
