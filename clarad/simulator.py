"""A modelled Triton: in-process servers that load, fail and die on command, for driving the pool,
the runner and the scheduler without tritonserver (tests, and benchmarks with a virtual clock).
Never used by the daemon.

``VirtualClockLoop`` is an asyncio loop whose clock jumps to the next timer whenever nothing is
ready, so a modelled load of 30 s, or a day of jobs, takes no real time.

``ModelledTriton`` implements ``pool.Server``; ``ModelledLauncher`` implements ``pool.Launcher``.
What a real server would serve is modelled faithfully where clarad relies on it: a load records
the revision stamped into the configuration it was given (``repository.REVISION_PARAMETER``), and
``served_revision`` answers with it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import selectors
from dataclasses import dataclass, field
from typing import Optional

from clarad.errors import TritonError
from clarad.gpus import Slot
from clarad.repository import REVISION_PARAMETER
from clarad.triton import Ports

_pids = itertools.count(100_000)


@dataclass(eq=False)
class ModelledTriton:
    id: str
    slot: str
    ports: Ports
    pid: int = field(default_factory=lambda: next(_pids))
    served: dict[str, Optional[str]] = field(default_factory=dict)  # model -> revision stamp
    loads: list[str] = field(default_factory=list)  # every load, in order
    # every load: the model, the revision served before it, the revision it asked for
    asked: list[tuple[str, Optional[str], Optional[str]]] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)  # models whose load fails
    stale: set[str] = field(default_factory=set)  # models whose load keeps the previous revision
    gate: Optional[asyncio.Event] = None  # when given, loads wait until it is set
    load_seconds: dict[str, float] = field(default_factory=dict)  # model -> how long its load takes
    held: set[str] = field(default_factory=set)  # models whose load waits at the gate now
    exit_reason: Optional[str] = None
    _exited: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def alive(self) -> bool:
        return self.exit_reason is None

    async def load(self, model: str, config_json: str) -> None:
        if self.gate is not None:
            self.held.add(model)
            try:
                await self.gate.wait()
            finally:
                self.held.discard(model)
        if model in self.load_seconds:
            await asyncio.sleep(self.load_seconds[model])
        if not self.alive:
            raise TritonError(f"{self.id} did not answer: it exited")
        if model in self.failing:
            raise TritonError(f"loading {model} on {self.id} failed: modelled failure")
        stamp = json.loads(config_json).get("parameters", {}).get(REVISION_PARAMETER, {}).get("stringValue")
        self.loads.append(model)
        self.asked.append((model, self.served.get(model), stamp))
        if model not in self.stale or model not in self.served:
            self.served[model] = stamp

    async def unload(self, model: str) -> None:
        if self.served.pop(model, None) is not None and model in self.leaks:
            self.leaked += self.memory.get(model, 0)  # Triton kept what the model held

    async def served_revision(self, model: str) -> Optional[str]:
        return self.served.get(model)

    async def ready_models(self) -> set[str]:
        if not self.alive:
            raise TritonError(f"{self.id} did not answer: it exited")
        return set(self.served)

    memory: dict[str, int] = field(default_factory=dict)  # model -> bytes it takes when served
    leaks: set[str] = field(default_factory=set)  # models whose unload gives no memory back
    leaked: int = 0

    frozen: bool = False  # modelled SIGSTOP: alive, but answers nothing

    async def healthy(self) -> bool:
        return self.running()

    def running(self) -> bool:
        return self.alive and not self.frozen

    def answered_within(self, seconds: float) -> bool:
        return False  # every reuse asks healthy(), as a stale probe would

    async def memory_used(self) -> int:
        return self.leaked + sum(self.memory.get(model, 0) for model in self.served)

    def die(self, how: str = "killed by SIGKILL (perhaps out of memory)") -> None:
        """The process exits by itself (a crash, the OOM killer)."""
        if self.exit_reason is None:
            self.exit_reason = how
            self._exited.set()

    async def wait_exit(self) -> str:
        await self._exited.wait()
        return f"{self.exit_reason}: modelled"

    async def stop(self, grace: float) -> str:
        self.die("exited with code 0")
        return self.exit_reason or ""


@dataclass
class ModelledLauncher:
    started: list[ModelledTriton] = field(default_factory=list)
    fail_next: Optional[str] = None  # the next start fails with this reason
    gate: Optional[asyncio.Event] = None  # given to every server it starts (see ModelledTriton.gate)
    start_seconds: float = 0.0  # how long a start takes
    load_seconds: dict[str, float] = field(default_factory=dict)  # given to every server it starts

    async def start(self, instance_id: str, slot: Slot, timeout: float) -> ModelledTriton:
        if self.fail_next is not None:
            reason, self.fail_next = self.fail_next, None
            raise TritonError(f"tritonserver {instance_id} exited with code 1: {reason}")
        if self.start_seconds:
            await asyncio.sleep(self.start_seconds)
        port = 20_000 + 2 * len(self.started)
        server = ModelledTriton(instance_id, slot.id, Ports(http=port, grpc=port + 1), gate=self.gate,
                                load_seconds=self.load_seconds)
        self.started.append(server)
        return server


class _Instant(selectors.DefaultSelector):
    """A selector that never blocks: asked to wait for ``timeout`` seconds, it moves the clock on by
    that much instead. With nothing scheduled at all the loop would wait forever: an error here."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = 0.0

    def select(self, timeout: Optional[float] = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(0)
        if not ready and timeout is None:
            raise RuntimeError("the virtual clock would wait forever: nothing is scheduled")
        if not ready and timeout:
            self.clock += timeout
        return ready


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: ``time()`` starts at 0 and jumps to the next timer when no
    callback is ready. Only for code that does no real I/O nor threads (their completions would
    come at an arbitrary virtual time)."""

    def __init__(self) -> None:
        self._instant = _Instant()
        super().__init__(self._instant)

    def time(self) -> float:
        return float(self._instant.clock)
