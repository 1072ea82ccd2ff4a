"""One job's whole life, from its lease to its lease's return, as one ``RunningJob``.

    start_job in the store -> the instance started (START) and the decision's unloads and loads
    carried out, each load checked -> the operators in DAG order (dag.py) -> the job finished with
    a status and a reason -> the instance given back (idle) or stopped -> ``on_done``

Whatever happens, the job ends with a status and a reason, its operators are stopped first, and its
instance goes back to the pool. Stopping a job from outside (cancel, timeout, a lost instance) is
``RunningJob.stop``: the first reason given is the one the job ends with.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from clarad import children, operators
from clarad.config import Settings
from clarad.containers import run as containers
from clarad.containers import services
from clarad.containers.engine import NO_RUNTIME, Engine
from clarad.cpus import CpuPins
from clarad.dag import run_operators
from clarad.database import until_recorded
from clarad.errors import ClaradError
from clarad.jobs import JobStatus, QueuedJob
from clarad.layout import Layout
from clarad.metrics import Metrics
from clarad.operators import Endpoints, Outcome, Workspace, prepare_workspace
from clarad.pipelines import Operator
from clarad.placement import Action, Decision
from clarad.pool import Instance, Pool
from clarad.prepare import Preparer
from clarad.store import Store

log = logging.getLogger("clarad")

NO_INSTANCE = Decision(Action.NONE, "the job's operators ask for no model")


@dataclass(frozen=True)
class Lease:
    """One instance a job holds, the decision that gave it, and the models it serves the job."""

    instance: Instance
    decision: Decision
    models: tuple[str, ...]


@dataclass(eq=False)
class RunningJob:
    job: QueuedJob
    leases: list[Lease]  # none for a job that asks for no model; several when its models are split
    gpus: list[str]
    started_at: float
    timeout: float  # seconds from started_at
    stop_reason: Optional[tuple[JobStatus, str]] = None
    requeued: Optional[str] = None  # why it goes back to the queue instead of ending
    work: "Optional[asyncio.Future[tuple[JobStatus, str]]]" = None  # the instance's preparation and the DAG
    task: "Optional[asyncio.Task[None]]" = None  # the whole life

    @property
    def deadline(self) -> float:
        return self.started_at + self.timeout

    @property
    def instance(self) -> Optional[Instance]:
        """Its (first) instance."""
        return self.leases[0].instance if self.leases else None

    @property
    def decision(self) -> Decision:
        return self.leases[0].decision if self.leases else NO_INSTANCE

    def stop(self, status: JobStatus, reason: str) -> None:
        """Stop the job's work; it ends with the first reason given."""
        if self.stop_reason is None:
            self.stop_reason = (status, reason)
        if self.work is not None:
            self.work.cancel()

    def requeue(self, reason: str) -> None:
        """Stop the job's preparation and queue it again (no operator of it has started)."""
        if self.stop_reason is None:
            self.requeued = reason
        self.stop(JobStatus.FAULTED, reason)


class JobRunner:
    def __init__(self, settings: Settings, layout: Layout, store: Store, metrics: Metrics, pool: Pool,
                 preparer: Preparer, registry: children.ChildRegistry, on_done: Callable[[RunningJob], None],
                 engine: Optional[Engine] = None) -> None:
        self.settings = settings
        self.layout = layout
        self.store = store
        self.metrics = metrics
        self.pool = pool
        self.preparer = preparer
        self.children = registry
        self.cpu_pins = CpuPins.for_host()  # operators with requests.cpu, across jobs
        self.on_done = on_done  # the job has ended and its instance is back: its GPUs are free
        self.engine = engine  # runs operators with container.image; none: they fault (ingest refuses them)

    def start(self, job: QueuedJob, leases: list[Lease], gpus: list[str], now: float) -> RunningJob:
        timeout = min(job.pipeline.timeout or self.settings.job_timeout_seconds, self.settings.job_timeout_max_seconds)
        running = RunningJob(job, leases, gpus, now, timeout)
        if self.children.spares is not None:  # the first job after a start, or after a while, finds one too
            self.children.spares.expect()
        running.task = asyncio.create_task(self._life(running))
        return running

    def finish(self, job_id: str, status: JobStatus, reason: str) -> None:
        """Record a job's end (it may never have started), with its status.json beside its files."""
        self.store.finish_job(job_id, status, reason, time.time())
        self.metrics.jobs_finished.labels(status.value).inc()
        job_dir = self.layout.job_dir(job_id)
        if job_dir.is_dir():
            record = self.store.job(job_id)
            (job_dir / "status.json").write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
        log.info("job %s stopped %s: %s", job_id, status.value, reason)

    # -- the life ----------------------------------------------------------------------------

    async def _life(self, running: RunningJob) -> None:
        job = running.job
        status, reason = JobStatus.FAULTED, "internal error"
        try:
            self.store.start_job(job.id, ",".join(lease.instance.id for lease in running.leases) or None,
                                 running.started_at)
            if running.stop_reason is None:
                running.work = asyncio.ensure_future(self._work(running))
                status, reason = await self._outcome(running)
            else:  # stopped before it began
                status, reason = running.stop_reason
        except Exception as exc:  # a bug; the job still ends with a reason
            log.exception("job %s failed unexpectedly", job.id)
            reason = f"internal error: {exc}"
        finally:
            reason += self.children.left_running(job.id)

            def record() -> None:
                if running.requeued is not None:
                    self.store.requeue_job(job.id, f"queued again: {running.requeued}")
                    log.warning("job %s queued again: %s", job.id, running.requeued)
                else:
                    self.finish(job.id, status, reason)
                    self.metrics.job_duration.observe(time.time() - running.started_at)

            # The instances first: whoever sees the job stopped sees them idle (or stopped) already.
            await asyncio.gather(*(self._give_back(lease) for lease in running.leases))
            await until_recorded(record, f"the end of job {job.id}")  # the disk may refuse for a while
            self.on_done(running)

    async def _give_back(self, lease: Lease) -> None:
        """Idle again if it was fully prepared and is healthy; else stopped (recycled, if marked)."""
        instance = lease.instance
        healthy = instance.server is not None and await instance.server.healthy()  # a frozen one would hang the next job
        if not lease.decision.single_use and healthy and self.pool.give_back(instance, time.time()):
            return
        if instance.recycle is not None:
            self.metrics.recycles.labels(instance.recycle[0]).inc()
            log.info("instance %s recycled: %s", instance.id, instance.recycle[1])
        await self.pool.stop(instance, self.settings.triton_stop_grace_seconds)

    async def _outcome(self, running: RunningJob) -> tuple[JobStatus, str]:
        work = running.work
        assert work is not None
        try:
            await asyncio.wait({work})
        except asyncio.CancelledError:  # clarad is stopping
            running.stop(JobStatus.CANCELED, "clarad stopped while the job was running")
            await children.wait_through_cancel(work)
        if work.cancelled():
            return running.stop_reason or (JobStatus.CANCELED, "canceled")
        error = work.exception()
        if isinstance(error, ClaradError):  # Triton failures, workspace permissions: readable as they are
            return JobStatus.FAULTED, str(error)
        if error is not None:
            log.error("job %s failed unexpectedly", running.job.id, exc_info=error)
            return JobStatus.FAULTED, f"internal error: {error}"
        return work.result()

    async def _work(self, running: RunningJob) -> tuple[JobStatus, str]:
        job = running.job
        workspace = Workspace(self.layout.job_dir(job.id))
        if self.engine is not None and self.settings.container_pull == "never":
            await containers.check_images(self.engine, job.pipeline)  # before anything of the job runs
        await asyncio.to_thread(prepare_workspace, workspace, job.pipeline, self.settings.operator_user)
        endpoints = await self._prepare_all(running.leases)
        self.store.note_job_models(job.id, {name: lease.instance.loaded[name] for lease in running.leases
                                            for name in lease.models})
        for lease in running.leases:
            self.pool.move(lease.instance, "loaded")
        self.metrics.ready_seconds.observe(max(0.0, time.time() - job.created_at))

        def serving(op: Operator) -> Optional[Endpoints]:
            """The instance holding all of the operator's models (every operator's are on one)."""
            wanted = set(op.model_names)
            return next((endpoints[n] for n, lease in enumerate(running.leases) if wanted <= set(lease.models)), None)

        async def run_one(op: Operator, gpus: list[str], cpus: list[int]) -> Outcome:
            if not op.container_services:
                return await run_alone(op, gpus, cpus)
            if self.engine is None:
                return Outcome(False, f"services: {NO_RUNTIME}", None)
            try:  # its services beside it, reached through the variables their connections name
                async with services.running(op, job.id, workspace, self.settings, self.children, self.engine) as reach:
                    return await run_alone(op.model_copy(update={"variables": {**op.variables, **reach}}), gpus, cpus)
            except ClaradError as exc:
                return Outcome(False, str(exc), None)

        async def run_alone(op: Operator, gpus: list[str], cpus: list[int]) -> Outcome:
            if op.image is None:
                return await operators.run(op, job.id, job.name, workspace, serving(op), gpus, cpus, self.settings,
                                           self.children)
            if self.engine is None:
                return Outcome(False, f"container.image: {NO_RUNTIME}", None)
            return await containers.run(op, job.id, job.name, workspace, serving(op), gpus, self.settings,
                                        self.children, self.engine)

        return await run_operators(job, self.store, running.gpus, run_one, self.cpu_pins,
                                   self.settings.max_parallel_operators)

    async def _prepare_all(self, leases: list[Lease]) -> list[Endpoints]:
        """Every instance of the job ready at once; the first failure stops the others' preparation."""
        tasks = [asyncio.ensure_future(self.preparer.prepare(lease.instance, lease.decision, lease.models))
                 for lease in leases]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION) if tasks else None
        finally:
            for task in tasks:
                task.cancel()
            await children.wait_through_cancel(asyncio.gather(*tasks, return_exceptions=True))
        for task in tasks:  # the first real failure, not a sibling's cancellation
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error
        return [task.result() for task in tasks]
