"""One ``tritonserver`` process: where the binary is, how it is launched, readiness, load/unload, stop.

Launch facts for the binary PyPI's ``nvidia-pytriton`` wheel ships:
- its libraries live in ``nvidia_pytriton.libs`` next to the package; the binaries find them through
  an RPATH relative to where the wheel put them, so anything copied elsewhere needs LD_LIBRARY_PATH;
- the wheel keeps one Python-backend stub per Python version; the backend directory we hand Triton
  holds the one matching this interpreter;
- the stub finds the Python environment (numpy, triton_python_backend_utils' imports) through PATH,
  so the interpreter's bin directory goes first on it.
Every instance runs in explicit model-control mode, on ports clarad chose, on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import psutil

from clarad import children, leftovers
from clarad.errors import TritonError
from clarad.gpus import Gpus, Slot
from clarad.repository import REVISION_PARAMETER

OPT_BINARY = Path("/opt/tritonserver/bin/tritonserver")
LOAD_TIMEOUT = 900.0  # seconds one load or unload may take before clarad gives up on it
CALL_TIMEOUT = 30.0  # seconds any other call may take: a frozen server must not hold a thread forever
HEALTH_TIMEOUT = 10.0  # seconds a server has to answer the probe before it is given back or reused (a stopped
# process is known at once; this bounds one that is stuck otherwise, and leaves room for a loaded host)
READY_POLL = 0.02  # seconds between readiness looks at a starting server (a look is a connect() until its port opens)
LOG_TAIL = 4096  # bytes of the log read for its last line


@dataclass(frozen=True)
class LaunchSpec:
    binary: Path
    backend_dir: Path
    library_dirs: tuple[Path, ...] = ()
    python_bin: Path = Path(sys.prefix) / "bin"


@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int
    metrics: int = 0  # Triton's own Prometheus endpoint; 0: none (a modelled server)

    @property
    def grpc_uri(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    @property
    def http_uri(self) -> str:
        return f"127.0.0.1:{self.http}"

    @property
    def metrics_uri(self) -> str:
        return f"127.0.0.1:{self.metrics}"


def _pytriton_dir() -> Optional[Path]:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "tritonserver"


def find_binary(configured: Optional[Path]) -> Path:
    """The configured binary, else tritonserver on PATH, else /opt/tritonserver, else nvidia-pytriton's."""
    if configured is not None:
        if not os.access(configured, os.X_OK):
            raise TritonError(f"triton_binary {configured}: not an executable file")
        return configured
    on_path = shutil.which("tritonserver")
    if on_path:
        return Path(on_path)
    if os.access(OPT_BINARY, os.X_OK):
        return OPT_BINARY
    bundled = _pytriton_dir()
    if bundled and os.access(bundled / "bin" / "tritonserver", os.X_OK):
        return bundled / "bin" / "tritonserver"
    raise TritonError(
        "no tritonserver found: set triton_binary, put tritonserver on PATH, install it in /opt/tritonserver, "
        "or install clarad with its 'triton' extra (nvidia-pytriton)"
    )


def prepare_launch(binary: Path, work_dir: Path, configured_backends: Optional[Path]) -> LaunchSpec:
    """Work out (and for nvidia-pytriton, lay out) what running ``binary`` needs."""
    bundled = _pytriton_dir()
    if bundled is None or bundled.resolve() not in binary.resolve().parents:
        return LaunchSpec(binary, configured_backends or binary.parent.parent / "backends")
    libs = bundled.parent.parent / "nvidia_pytriton.libs"
    if configured_backends is not None:
        return LaunchSpec(binary, configured_backends, (libs,))
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = bundled / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonError(f"nvidia-pytriton has no Python-backend stub for Python {version}")
    python_backend = work_dir / "backends" / "python"
    python_backend.mkdir(parents=True, exist_ok=True)
    for source in [*sorted((bundled / "backends" / "python").iterdir()), stub]:
        if source.is_file():
            shutil.copy2(source, python_backend / source.name)
    return LaunchSpec(binary, work_dir / "backends", (libs,))


def free_ports() -> Ports:
    """Three ports the kernel says are free on 127.0.0.1 now (a race remains; start() retries)."""
    sockets = [socket.socket() for _ in range(3)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        http, grpc, metrics = (sock.getsockname()[1] for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()
    return Ports(http=http, grpc=grpc, metrics=metrics)


def argv(spec: LaunchSpec, repository: Path, ports: Ports, shm_prefix: str) -> list[str]:
    return [
        str(spec.binary),
        f"--model-repository={repository}",
        f"--backend-directory={spec.backend_dir}",
        "--model-control-mode=explicit",
        "--strict-readiness=true",
        "--exit-timeout-secs=5",
        # Triton's own nv_* metrics, on loopback; clarad lists the endpoints for Prometheus (targets.py).
        "--allow-metrics=true",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={ports.metrics}",
        "--http-address=127.0.0.1",
        f"--http-port={ports.http}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={ports.grpc}",
        "--log-verbose=0",
        # The Python backend's shared-memory regions are named after the instance, so that what a
        # killed server leaves is known (leftovers.py).
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
    ]


def environment(spec: LaunchSpec, base: Mapping[str, str], cuda_visible_devices: str) -> dict[str, str]:
    env = dict(base)
    env.pop("NOTIFY_SOCKET", None)
    env["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices
    env["PATH"] = os.pathsep.join([str(spec.python_bin), base.get("PATH", os.defpath)])
    if spec.library_dirs:
        extra = os.pathsep.join(str(p) for p in spec.library_dirs)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [base.get("LD_LIBRARY_PATH"), extra]))
    return env


@dataclass(frozen=True)
class Launcher:
    """What every instance is started with; ``start`` gives one running, ready tritonserver."""

    spec: LaunchSpec
    repository: Path
    log_dir: Path
    registry: children.ChildRegistry
    base_env: Mapping[str, str]
    gpus: Gpus  # GPU memory readings, for the instances of GPU slots
    state_dir: Path  # names the instances' shared memory (leftovers.shm_prefix)

    def remove_leftovers(self) -> None:
        """At start-up, once no instance of this state directory runs: what killed ones left."""
        leftovers.remove_after(leftovers.shm_prefix(self.state_dir), self.spec.binary.name)

    async def start(self, instance_id: str, slot: Slot, timeout: float) -> "TritonServer":
        """Start and wait until ready, within ``timeout`` seconds in all; raise TritonError with the
        log's last line when it cannot."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{instance_id}.log"
        deadline = time.monotonic() + timeout
        prefix = leftovers.shm_prefix(self.state_dir, instance_id)
        last_error = ""
        for _attempt in range(3):
            ports = free_ports()
            with open(log_path, "wb") as log_file:
                child = await children.spawn(
                    argv(self.spec, self.repository, ports, prefix), kind="triton", label=instance_id,
                    registry=self.registry, env=environment(self.spec, self.base_env, slot.cuda_visible_devices),
                    stdout=log_file, stderr=asyncio.subprocess.STDOUT,
                )
            server = TritonServer(instance_id, slot.id, ports, child, log_path, self.registry,
                                  self._memory_probe(slot, child.pid), prefix, self.spec.binary.name)
            try:
                await server._wait_ready(deadline, timeout)
                return server
            except TritonError as exc:
                last_error = str(exc)
                await server.stop(0)
                if "address already in use" not in last_error.lower():
                    break
            except BaseException:  # cancelled while starting: leave nothing running
                await server.stop(0)
                raise
        raise TritonError(last_error)

    def _memory_probe(self, slot: Slot, pid: int) -> Callable[[], int]:
        """Memory in use where the instance loads its models: its GPU (every process on it, as NVML
        sees it), or on the CPU its own process tree."""
        if slot.device == "cpu":
            return lambda: children.resident_bytes(pid)
        return lambda: sum(m.used for m in self.gpus.memory() if m.uuid == slot.cuda_visible_devices)


@dataclass
class TritonServer:
    """A running tritonserver and its gRPC client. Blocking client calls run in a worker thread."""

    id: str
    slot: str
    ports: Ports
    child: children.Child
    log_path: Path
    registry: children.ChildRegistry
    memory_probe: Callable[[], int]
    shm_prefix: str  # its Python backend's shared-memory regions
    binary_name: str
    client: Any = field(init=False)  # tritonclient.grpc.InferenceServerClient
    answered_at: Optional[float] = field(default=None, init=False)  # monotonic time of its last good health probe

    def __post_init__(self) -> None:
        import tritonclient.grpc  # here: tens of MB (numpy) that a daemon running no instance does without

        self.client = tritonclient.grpc.InferenceServerClient(self.ports.grpc_uri)

    async def _wait_ready(self, deadline: float, timeout: float) -> None:
        while time.monotonic() < deadline:
            if self.child.proc.returncode is not None:
                raise TritonError(
                    f"tritonserver {self.id} {children.describe_exit(self.child.proc.returncode)}: {self.last_log_line()}"
                )
            if await asyncio.to_thread(self._ready, min(1.0, max(0.05, deadline - time.monotonic()))):
                self.answered_at = time.monotonic()
                return
            await asyncio.sleep(READY_POLL)
        raise TritonError(f"tritonserver {self.id} not ready after {timeout:g} s: {self.last_log_line()}")

    def _ready(self, within: float, ready: bool = True) -> bool:
        """Live, and (``ready``) ready, each answered within ``within`` seconds."""
        # Ask gRPC only once the port accepts connections: a call to a closed port would put the
        # channel into its reconnect backoff (about a second) after Triton is already up.
        try:
            socket.create_connection(("127.0.0.1", self.ports.grpc), timeout=min(0.2, within)).close()
        except OSError:
            return False
        try:
            return bool(self.client.is_server_live(client_timeout=within)
                        and (not ready or self.client.is_server_ready(client_timeout=within)))
        except _client_error():
            return False

    async def healthy(self, within: float = HEALTH_TIMEOUT) -> bool:
        """Whether the server is running and answers (is live) within ``within`` seconds. A
        stopped (SIGSTOP) or exited process is known at once, without waiting."""
        if not self.running():
            return False
        # Liveness, not readiness: under --strict-readiness a server is "not ready" while any model
        # loads or unloads, which a healthy one does all the time. A frozen one does not answer at all.
        if not await asyncio.to_thread(self._ready, within, False):
            return False
        self.answered_at = time.monotonic()
        return True

    def running(self) -> bool:
        """Its process is there and scheduled: not exited, not stopped (SIGSTOP), not a zombie. A
        look at /proc, no call to Triton."""
        if not self.alive:
            return False
        try:
            return psutil.Process(self.pid).status() not in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP,
                                                             psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
        except psutil.Error:
            return False

    def answered_within(self, seconds: float) -> bool:
        """Whether it answered a health probe in the last ``seconds``."""
        return self.answered_at is not None and time.monotonic() - self.answered_at <= seconds

    def last_log_line(self) -> str:
        """The log's last line, read from its tail only (the log grows for as long as Triton runs)."""
        try:
            with open(self.log_path, "rb") as log_file:
                log_file.seek(max(0, log_file.seek(0, os.SEEK_END) - LOG_TAIL))
                lines = log_file.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1].strip() if lines else "no log output"

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def alive(self) -> bool:
        return self.child.proc.returncode is None

    async def load(self, model: str, config_json: str) -> None:
        """Load ``model`` with ``config_json`` as its configuration (see repository.stamped_config)."""
        try:
            await asyncio.to_thread(self.client.load_model, model, config=config_json, client_timeout=LOAD_TIMEOUT)
        except _client_error() as exc:
            raise TritonError(f"loading {model} on {self.id} failed: {_first_line(exc.message())}") from None

    async def served_revision(self, model: str) -> Optional[str]:
        """The revision stamp in the configuration Triton serves ``model`` with (None: no stamp)."""
        try:
            reply = await asyncio.to_thread(self.client.get_model_config, model, client_timeout=CALL_TIMEOUT)
        except _client_error() as exc:
            raise TritonError(f"{self.id} did not give the configuration of {model}: {_first_line(exc.message())}") from None
        stamp = reply.config.parameters.get(REVISION_PARAMETER)
        return stamp.string_value if stamp is not None else None

    async def unload(self, model: str) -> None:
        """Unload ``model`` and wait until Triton has (its unload returns while the model is still
        UNLOADING, and its memory is given back only after)."""
        try:
            await asyncio.to_thread(self.client.unload_model, model, client_timeout=LOAD_TIMEOUT)
        except _client_error() as exc:
            raise TritonError(f"unloading {model} on {self.id} failed: {_first_line(exc.message())}") from None
        deadline = time.monotonic() + LOAD_TIMEOUT
        while await self._states(model) & {"UNLOADING", "READY"} and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def _states(self, model: str) -> set[str]:
        try:
            index = await asyncio.to_thread(self.client.get_model_repository_index)
        except _client_error() as exc:
            raise TritonError(f"{self.id} did not answer: {_first_line(exc.message())}") from None
        return {entry.state for entry in index.models if entry.name == model}

    async def ready_models(self) -> set[str]:
        try:
            index = await asyncio.to_thread(self.client.get_model_repository_index, client_timeout=CALL_TIMEOUT)
        except _client_error() as exc:
            raise TritonError(f"{self.id} did not answer: {_first_line(exc.message())}") from None
        return {m.name for m in index.models if m.state == "READY"}

    async def memory_used(self) -> int:
        """Bytes in use on the instance's device now (see Launcher._memory_probe)."""
        return await asyncio.to_thread(self.memory_probe)

    async def wait_exit(self) -> str:
        """Wait until tritonserver exits by itself; how it ended, with its log's last line."""
        code = await self.child.proc.wait()
        return f"{children.describe_exit(code)}: {self.last_log_line()}"

    async def stop(self, grace: float) -> str:
        """TERM, ``grace``, KILL, reap (not interruptible); close the client; forget the record."""
        try:
            code = await children.stop_surely(self.child, grace)
        except children.StopFailed as exc:  # logged; it stays recorded, so the next start tries again
            self.client.close()
            return str(exc)
        self.client.close()
        self.registry.forget(self.child.pid)
        await asyncio.to_thread(leftovers.remove_after, self.shm_prefix, self.binary_name)
        return children.describe_exit(code, self.child.killed)


def _first_line(text: Optional[str]) -> str:
    return (text or "unknown error").strip().splitlines()[0]


def _client_error() -> Any:
    """tritonclient's exception class (imported by then: a server's client imports it)."""
    from tritonclient.utils import InferenceServerException

    return InferenceServerException
