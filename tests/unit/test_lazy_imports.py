"""A daemon that runs no Triton instance does without tritonclient's gRPC package (numpy with it):
model configurations are still parsed with Triton's own schema, the one the package uses later."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHECK = """
import sys, threading
import clarad.daemon, clarad.api.server
from clarad.repository import parse_config
start, parsed = threading.Barrier(8), []
def parse(n):
    start.wait()  # the first loads of the schema at once, as concurrent validations do
    parsed.append(parse_config(f'name: "m{n}" backend: "python" max_batch_size: {n}').max_batch_size)
threads = [threading.Thread(target=parse, args=(n,)) for n in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
assert sorted(parsed) == list(range(8)), parsed
config = parse_config('name: "m" backend: "python" max_batch_size: 4')
heavy = sorted(name for name in ("numpy", "tritonclient.grpc", "tritonclient.utils") if name in sys.modules)
import tritonclient.grpc
print(heavy, type(config) is tritonclient.grpc.model_config_pb2.ModelConfig)
"""


def test_the_daemon_imports_no_triton_client_until_an_instance_needs_one() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[]", "True"]
