"""What the tests of the driving code (pool, scheduler, runner) share: the real owners wired as
``daemon._wire`` wires them, around a real SQLite store and state directory and the modelled Triton
of ``clarad.simulator``; models and jobs registered the way ingest does it; waiting on conditions.

Nothing here replaces a piece of clarad: the only stand-in is the modelled Triton, and operators are
real processes (``true``, ``false``, ``sleep``).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Optional, TypeVar

from clarad.children import ChildRegistry
from clarad.config import Settings
from clarad.costs import CostBook
from clarad.gpus import Gpu, StaticGpus, slots
from clarad.jobs import JobState, Priority, QueuedJob
from clarad.layout import Layout
from clarad.metrics import Metrics
from clarad.pipelines import parse_pipeline
from clarad.pool import Pool
from clarad.prepare import Preparer
from clarad.runner import JobRunner, RunningJob
from clarad.scheduler import Scheduler
from clarad.simulator import ModelledLauncher
from clarad.store import Store, new_id

AFFINE = Path(__file__).resolve().parents[2] / "docs" / "demo" / "models" / "affine"
T = TypeVar("T")


def drive(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop of its own."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def until(condition: Callable[[], T], what: str, timeout: float = 10.0) -> T:
    """Let the loop run until ``condition`` holds (checked every 2 ms); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.002)


def digest_of(name: str, revision: int) -> str:
    return hashlib.sha256(f"{name} revision {revision}".encode()).hexdigest()


def pipeline_text(models: tuple[str, ...] | list[str] = (), command: Optional[list[str]] = None, gpu: int = 0,
                  timeout: Optional[float] = None, name: str = "p") -> str:
    """A one-operator pipeline (JSON is YAML) whose operator ``infer`` asks for ``models``."""
    operator: dict[str, Any] = {"name": "infer", "command": command or ["true"],
                                "models": [{"name": model} for model in models]}
    if gpu:
        operator["requests"] = {"gpu": gpu}
    pipeline: dict[str, Any] = {"name": name, "operators": [operator]}
    if timeout is not None:
        pipeline["timeout"] = timeout
    return json.dumps(pipeline)


class Harness:
    """Store, layout, pool, runner and scheduler as the daemon wires them, over a modelled Triton."""

    def __init__(self, root: Path, *, cpu_instances: int = 1, gpus: Optional[list[Gpu]] = None,
                 max_models: int = 8, store: type[Store] = Store) -> None:
        self.layout = Layout(root)
        self.layout.create()
        self.store = store(self.layout.database)
        self.gpus = gpus or []
        self.settings = Settings(
            state_dir=root, use_gpus=bool(self.gpus), cpu_instances=cpu_instances, instances_per_gpu=1,
            max_models_per_instance=max_models, metrics_port=0, triton_stop_grace_seconds=0,
            operator_stop_grace_seconds=5,
        )
        self.metrics = Metrics()
        self.launcher = ModelledLauncher()
        self.wakes = 0  # passes the owners asked for
        self.revisions: dict[str, int] = {}
        self.pool = Pool(slots(self.gpus, 1, cpu_instances), on_lost=lambda i, how: self.scheduler.on_lost(i, how))
        self.costs = CostBook(self.store)
        self.preparer = Preparer(self.settings, self.layout, self.store, self.metrics, self.pool, self.launcher,
                                 self.costs)
        self.runner = JobRunner(self.settings, self.layout, self.store, self.metrics, self.pool, self.preparer,
                                ChildRegistry(self.store), on_done=lambda running: self.scheduler.on_done(running))
        self.scheduler = Scheduler(self.settings, self.store, self.layout, self.metrics, self.pool, self.runner,
                                   self.costs, self.gpus, StaticGpus(self.gpus).memory, None, self._wake)

    def _wake(self) -> None:
        self.wakes += 1

    async def __aenter__(self) -> Harness:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Shutdown in the daemon's order: running jobs, then the instances, then the store."""
        await self.scheduler.stop()
        await self.pool.stop_all(0)
        self.store.close()

    # -- the repository and the jobs, as ingest records them -----------------------------------

    def add_model(self, name: str) -> str:
        """Install ``name`` (the demo model renamed), or a new revision of it: a changed config.pbtxt
        and a new digest in the store. Returns the digest."""
        revision = self.revisions.get(name, 0) + 1
        self.revisions[name] = revision
        model = self.layout.models / name
        if not model.exists():
            shutil.copytree(AFFINE, model)
        config = (AFFINE / "config.pbtxt").read_text().replace('name: "affine"', f'name: "{name}"')
        (model / "config.pbtxt").write_text(f"# revision {revision}\n{config}")
        digest = digest_of(name, revision)
        self.store.accept_model(name, digest, "python", [1], 1000 + revision, f"test:{name}", time.time())
        return digest

    def create_job(self, text: str, priority: Priority = Priority.NORMAL) -> str:
        """A PENDING job with its pipeline.yaml and payload in its directory, as ingest creates it."""
        pipeline = parse_pipeline(text)
        job_id = new_id()
        job_dir = self.layout.job_dir(job_id)
        (job_dir / "input").mkdir(parents=True)
        (job_dir / "pipeline.yaml").write_text(text, encoding="utf-8")
        self.store.create_job(job_id, pipeline.name, f"payload-{job_id[:6]}", priority.value,
                              [op.name for op in pipeline.operators], time.time())
        return job_id

    def submit(self, text: str, priority: Priority = Priority.NORMAL) -> str:
        """Create a job and queue it, as the daemon does with a new job."""
        job_id = self.create_job(text, priority)
        self.scheduler.enqueue(job_id)
        return job_id

    def queued(self, job_id: str) -> QueuedJob:
        """The job as the runner takes it, without going through the scheduler."""
        record = self.store.job(job_id)
        assert record is not None
        text = (self.layout.job_dir(job_id) / "pipeline.yaml").read_text(encoding="utf-8")
        return QueuedJob(job_id, record["name"], parse_pipeline(text), Priority(record["priority"]),
                         record["created_at"])

    def job(self, job_id: str) -> dict[str, Any]:
        record = self.store.job(job_id)
        assert record is not None
        return record

    async def stopped(self, job_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """Let the loop run until the job is STOPPED; its record."""
        await until(lambda: self.job(job_id)["state"] == JobState.STOPPED.value, f"job {job_id} to stop", timeout)
        return self.job(job_id)

    async def ended(self, running: RunningJob) -> dict[str, Any]:
        """Wait for a running job's whole life to end (its instance back or stopped); its record."""
        assert running.task is not None
        await asyncio.wait_for(asyncio.shield(running.task), 10)
        return self.job(running.job.id)

    async def operator_running(self, job_id: str) -> int:
        """Let the loop run until the job's operator process runs; its pid."""
        children = await until(lambda: [c for c in self.store.children() if c["label"].startswith(job_id)],
                               f"an operator of job {job_id} to start")
        return int(children[0]["pid"])
