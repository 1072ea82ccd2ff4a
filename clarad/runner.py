"""Running one job to its end: its instance started and loaded, then its operators in DAG order.

Used by the daemon's loop, on the loop: the runner changes only the instance it was handed (leased
to this job alone) and the GPU set it owns. What the job ends as, and the lease's return, are the
daemon's business.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Optional

from clarad import children, repository
from clarad.config import Settings
from clarad.errors import TritonError
from clarad.jobs import JobStatus, OperatorState, QueuedJob, doomed_operators, runnable_operators
from clarad.layout import Layout
from clarad.metrics import Metrics
from clarad.operators import Endpoints, Outcome, Workspace, expand, operator_env, prepare_workspace, run_operator
from clarad.pipelines import Operator
from clarad.placement import Decision
from clarad.pool import Instance
from clarad.store import Store
from clarad.triton import LaunchSpec, TritonServer

log = logging.getLogger("clarad")


class JobRunner:
    def __init__(self, settings: Settings, layout: Layout, store: Store, metrics: Metrics,
                 launch: Optional[LaunchSpec], on_change: Callable[[], None]) -> None:
        self.settings = settings
        self.layout = layout
        self.store = store
        self.metrics = metrics
        self.launch = launch
        self.on_change = on_change

    async def run(self, job: QueuedJob, decision: Decision, instance: Optional[Instance],
                  gpus: list[str]) -> tuple[JobStatus, str]:
        """Prepare the instance (if the job needs one), then run the operators on the ``gpus`` the
        job holds; the job's status and reason."""
        workspace = Workspace(self.layout.job_dir(job.id))
        prepare_workspace(workspace, job.pipeline, self.settings.operator_user)
        endpoints = None
        if instance is not None:
            endpoints = await self._prepare_instance(instance, decision, job)
        return await self._run_operators(job, workspace, endpoints, GpuShare(gpus))

    async def _prepare_instance(self, instance: Instance, decision: Decision, job: QueuedJob) -> Endpoints:
        """Start the instance if new; load exactly the wanted models it lacks; all ready before returning."""
        if instance.server is None:
            assert self.launch is not None
            instance.server = await TritonServer.start(
                instance.id, instance.slot.id, instance.slot.cuda_visible_devices, self.launch, self.layout.models,
                self.layout.triton / "logs", self.store.record_child, self.store.forget_child,
                self.settings.triton_start_timeout_seconds,
                os.environ,
            )
            instance.state = "leased"
            log.info("instance %s started on %s: grpc %s, http %s", instance.id, instance.slot.id,
                     instance.server.ports.grpc_uri, instance.server.ports.http_uri)
            self.on_change()
        server = instance.server
        for name in decision.unload:
            await server.unload(name)
            instance.loaded.pop(name, None)
            log.info("instance %s: unloaded %s to make room", instance.id, name)
        wanted = job.pipeline.model_names
        for name in wanted:
            if instance.loaded.get(name) != self.store.model_digests().get(name):
                await self._load(instance, name)
        missing = set(wanted) - await server.ready_models()
        if missing:
            raise TritonError(f"instance {instance.id}: model(s) {', '.join(sorted(missing))} not ready after loading")
        self.store.note_job_models(job.id, {name: instance.loaded[name] for name in wanted})
        instance.prepared_for = job.id
        return Endpoints(server.ports.grpc_uri, server.ports.http_uri)

    async def _load(self, instance: Instance, name: str) -> None:
        """Load the repository's current revision of ``name`` and confirm Triton serves that one."""
        assert instance.server is not None
        began = time.monotonic()
        instance.loaded.pop(name, None)
        for _attempt in range(3):
            digest = self.store.model_digests().get(name)
            if digest is None:
                raise TritonError(f"model {name} was removed from the repository before the job started")
            config = self.layout.models / name / "config.pbtxt"
            text = await asyncio.to_thread(config.read_text, encoding="utf-8")
            await instance.server.load(name, repository.stamped_config(text, digest, f"{name}/config.pbtxt"))
            if self.store.model_digests().get(name) == digest:
                break  # else it was replaced while Triton read its files: load the new one
        else:
            raise TritonError(f"model {name} was replaced three times while loading; the job did not start")
        served = await instance.server.served_revision(name)
        if served != digest:
            raise TritonError(f"instance {instance.id} serves model {name} at revision {(served or 'unknown')[:12]} "
                              f"after loading revision {digest[:12]}")
        took = time.monotonic() - began
        instance.loaded[name] = digest
        instance.loads[name] = instance.loads.get(name, 0) + 1
        self.metrics.model_loads.labels(name).inc()
        self.metrics.model_load_seconds.observe(took)
        log.info("instance %s: loaded %s (revision %s) in %.2f s", instance.id, name, digest[:12], took)

    async def _run_operators(self, job: QueuedJob, workspace: Workspace, endpoints: Optional[Endpoints],
                             gpus: "GpuShare") -> tuple[JobStatus, str]:
        """Run the DAG: start every operator whose inputs are complete; stop when nothing more can run."""
        pipeline = job.pipeline
        states = {op.name: OperatorState.PENDING for op in pipeline.operators}
        tasks: dict[asyncio.Task[Outcome], str] = {}
        first_fault: Optional[str] = None
        try:
            while True:
                for name in runnable_operators(pipeline, states):
                    states[name] = OperatorState.RUNNING
                    self.store.move_operator(job.id, name, "start", time.time())
                    run = self._operator(job, pipeline.operator(name), workspace, endpoints, gpus)
                    tasks[asyncio.create_task(run)] = name
                if not tasks:
                    break
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    name = tasks.pop(task)
                    outcome = task.result()
                    if outcome.ok:
                        states[name] = OperatorState.COMPLETED
                        self.store.move_operator(job.id, name, "complete", time.time(), None, outcome.exit_code)
                    else:
                        states[name] = OperatorState.FAULTED
                        reason = f"{outcome.reason} (log: jobs/{job.id}/logs/{name}.log)"
                        self.store.move_operator(job.id, name, "fault", time.time(), reason, outcome.exit_code)
                        first_fault = first_fault or f'operator "{name}" {reason}'
                    log.info("job %s: operator %s %s", job.id, name, outcome.reason)
                for name in doomed_operators(pipeline, states):
                    states[name] = OperatorState.FAULTED
                    self.store.move_operator(job.id, name, "fault", time.time(), "not run: an operator it reads from faulted")
        finally:
            for task in tasks:
                task.cancel()
            if tasks:  # each stops its operator's process group; nothing may interrupt that
                await children.wait_through_cancel(asyncio.gather(*tasks, return_exceptions=True))
        if first_fault:
            return JobStatus.FAULTED, first_fault
        return JobStatus.HEALTHY, f"all {len(pipeline.operators)} operator(s) completed"

    async def _operator(self, job: QueuedJob, op: Operator, workspace: Workspace, endpoints: Optional[Endpoints],
                        share: "GpuShare") -> Outcome:
        gpus = await share.take(op.requests.gpu)
        try:
            env = operator_env(os.environ, op, job.id, job.name, workspace, endpoints, ",".join(gpus))
            return await run_operator(
                expand(op.argv, env), env, workspace, op.name, f"{job.id}/{op.name}", self.store.record_child,
                self.store.forget_child, self.settings.operator_stop_grace_seconds, self.settings.operator_user,
                op.requests.memory,
            )
        finally:
            await share.give(gpus)


class GpuShare:
    """The GPUs one job holds. Its operators take theirs from here and give them back when they end;
    one asking for more than is free now waits for a sibling (never for another job)."""

    def __init__(self, uuids: list[str]) -> None:
        self.free = set(uuids)
        self.freed = asyncio.Condition()

    async def take(self, count: int) -> list[str]:
        if count == 0:
            return []
        async with self.freed:
            await self.freed.wait_for(lambda: len(self.free) >= count)
            taken = sorted(self.free)[:count]
            self.free -= set(taken)
        return taken

    async def give(self, uuids: list[str]) -> None:
        if uuids:
            async with self.freed:
                self.free |= set(uuids)
                self.freed.notify_all()
