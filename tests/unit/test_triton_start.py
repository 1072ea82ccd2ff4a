"""A tritonserver start is bounded by its timeout, whatever the server does meanwhile."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from clarad import children, triton
from clarad.errors import TritonError
from clarad.gpus import Slot, StaticGpus
from clarad.store import Store

# A server that takes connections on its gRPC port and never answers: what a tritonserver stuck in
# its start-up looks like from outside (the real one cannot be made to hang there on purpose).
MUTE = """#!{python}
import socket, sys
port = int(next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--grpc-port=")))
listener = socket.socket()
listener.bind(("127.0.0.1", port))
listener.listen(64)
held = []
while True:
    held.append(listener.accept()[0])
"""


def test_a_server_that_never_answers_fails_its_start_within_the_timeout(tmp_path: Path) -> None:
    """Before: a 2 s start timeout took 20 s (each readiness probe waited for gRPC's own deadline)."""
    binary = tmp_path / "tritonserver"
    binary.write_text(MUTE.format(python=sys.executable))
    binary.chmod(0o755)
    registry = children.ChildRegistry(Store(tmp_path / "clarad.db"))
    launcher = triton.Launcher(triton.LaunchSpec(binary, tmp_path), tmp_path / "models", tmp_path / "logs", registry,
                               dict(os.environ), StaticGpus([]), tmp_path)
    slot = Slot("cpu-0", "")

    async def start() -> float:
        began = time.monotonic()
        with pytest.raises(TritonError, match=r"^tritonserver triton-0 not ready after 2 s: "):
            await asyncio.wait_for(launcher.start("triton-0", slot, 2.0), 60)
        return time.monotonic() - began

    took = asyncio.run(start())
    assert took < 2.0 + 3.0, f"a 2 s start timeout took {took:.1f} s"
    assert registry.store.children() == []  # stopped and forgotten
