"""The scheduler: the queue of waiting jobs, the running jobs, the GPUs they hold, and one reconcile
pass that converges them, as gunicorn's arbiter does with its workers.

The daemon's loop runs ``run_pass(now)`` once per wake-up; nothing else places a job. A pass:

    1. stops running jobs past their deadline (their timeout);
    2. has idle instances unload models no longer in the repository;
    3. offers each waiting job, in queue order, first its GPUs, then an instance (placement.decide),
       and starts it with exactly that decision, or records why it still waits;
    4. publishes the snapshot that /metrics reads.

It reads the repository's digests once and returns how long the loop may sleep before the next pass
is due (the nearest deadline). Time comes in as ``now``; everything here runs on the loop.

A pass costs what it can place, not the length of the queue or the history: the queue keeps its
order and its wanted models between passes (queue.py); with no idle instance and no free slot left,
a job that already waited under the same repository, costs of its models, settings, instances and
free GPUs is not offered again (its answer would be the same), and jobs wanting the same models
share one answer within a pass. Nothing a pass reads grows with the number of finished jobs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any, Optional

from clarad import placement
from clarad.config import Settings
from clarad.costs import Cost, CostBook
from clarad.errors import ClaradError, TritonError
from clarad.foresight import Foresight
from clarad.gpus import Gpu, GpuMemory
from clarad.jobs import JobState, JobStatus, Priority, QueuedJob
from clarad.layout import Layout
from clarad.memory import gpu_memory, host_memory, less
from clarad.metrics import Metrics, Snapshot
from clarad.pipelines import Pipeline, known
from clarad.placement import Action, Memory, Place, World
from clarad.pool import Instance, InstanceState, Pool
from clarad.queue import JobQueue, Offer
from clarad.runner import JobRunner, Lease, RunningJob
from clarad.store import Store

log = logging.getLogger("clarad")

IDLE_PASS = 1.0  # seconds between passes when nothing is due sooner
MOST_USED_EVERY = 60.0  # seconds between looks at which pipeline is used most (keep_warm)
DEMAND_WINDOW = 200  # recent jobs whose models tell placement which models are in demand
MAX_REQUEUES = 2  # a job whose instance keeps dying before its first operator faults after this


class Scheduler:
    def __init__(self, settings: Settings, store: Store, layout: Layout, metrics: Metrics, pool: Pool,
                 runner: JobRunner, costs: CostBook, gpus: list[Gpu], gpu_memory: Callable[[], list[GpuMemory]],
                 launch_error: Optional[str], wake: Callable[[], None]) -> None:
        self.settings = settings
        self.store = store
        self.layout = layout
        self.metrics = metrics
        self.pool = pool
        self.runner = runner
        self.costs = costs
        self.gpus = gpus
        self.gpu_memory = gpu_memory  # NVML's readings now
        self.launch_error = launch_error  # why no instance can be started (no tritonserver), or None
        self.wake = wake  # ask the loop for a pass soon
        self.queue = JobQueue()
        self.running: dict[str, RunningJob] = {}
        self.free_gpus = {gpu.uuid for gpu in gpus}  # those no running job holds
        self.background: set[asyncio.Task[None]] = set()  # unloads, warm-ups and idle stops under way
        self._most_used: tuple[float, list[str]] = (-MOST_USED_EVERY, [])  # (when read, its models)
        self.unloading: set[tuple[str, str]] = set()  # (instance, model) unloads of removed models under way
        self._waits: dict[str, list[str]] = {}  # reason -> jobs newly waiting for it, this pass
        self._settled: tuple[Any, ...] = ()  # what a waiting job's answer depends on when nothing is free
        self.places = {slot.id: Place(slot.device, slot.domain) for slot in pool.slots.values()}
        self._live_costs: tuple[tuple[int, int], dict[tuple[str, str], Cost]] = ((-1, -1), {})
        self.foresight = Foresight.read(settings.placement_future) if settings.placement_future else None  # oracle's
        self.arrivals: dict[str, int] = {}  # the oracle's: each waiting job's position in the trace it was told
        self.recent: deque[tuple[str, ...]] = deque()  # the models of the last DEMAND_WINDOW jobs placed
        self.demand: Counter[str] = Counter()  # model -> jobs of those that wanted it
        self._arrived = 0

    # -- jobs coming and going ---------------------------------------------------------------

    def enqueue(self, job_id: str, pipeline: Optional[Pipeline] = None) -> None:
        """Queue a PENDING job of the store, with its ``pipeline`` when the caller has it checked
        already, else read from its directory; one whose pipeline cannot be read is faulted."""
        record = self.store.job(job_id)
        assert record is not None
        try:
            if pipeline is None:  # parsed off the loop when the job was created: a cache hit
                pipeline = known.parsed((self.layout.job_dir(job_id) / "pipeline.yaml").read_text(encoding="utf-8"))
        except (OSError, ClaradError) as exc:
            self.runner.finish(job_id, JobStatus.FAULTED, f"cannot read the job's pipeline: {exc}")
            return
        self.queue_job(QueuedJob(job_id, record["name"], pipeline, Priority(record["priority"]), record["created_at"]))
        self.wake()

    def queue_job(self, job: QueuedJob) -> None:
        if self.foresight is not None:  # the oracle baseline: the job's position in the trace it was told
            self.arrivals[job.id] = self._arrived
            self._arrived += 1
        self.queue.add(job)

    def recover(self) -> None:
        """Rebuild the queue from the store: RUNNING jobs died with the last clarad, PENDING ones wait."""
        for job in self.store.jobs_in(JobState.RUNNING):
            self.runner.finish(job["id"], JobStatus.FAULTED, "clarad stopped while the job was running")
        for job in self.store.jobs_in(JobState.PENDING):
            self.enqueue(job["id"])
        if self.queue:
            log.info("%d pending job(s) from before the restart queued again", len(self.queue))

    def cancel(self, job_id: str) -> None:
        """Cancel a job that has not stopped: a waiting one at once, a running one through its runner."""
        queued = self.queue.find(job_id)
        if queued is not None:
            self.queue.remove(queued)
            self.runner.finish(job_id, JobStatus.CANCELED, "canceled before it started")
            self.wake()
        elif job_id in self.running:
            self.running[job_id].stop(JobStatus.CANCELED, "canceled")
        elif (self.store.job(job_id) or {}).get("held"):  # created, never started
            self.runner.finish(job_id, JobStatus.CANCELED, "canceled before it was started")
        else:
            raise ClaradError(f"job {job_id} is not queued or running here")

    def on_done(self, running: RunningJob) -> None:
        """A job ended (or goes back to the queue) and its instance is back: free its GPUs, place what waits."""
        self.running.pop(running.job.id, None)
        self.free_gpus |= set(running.gpus)
        if running.requeued is not None:
            running.job.requeues += 1
            running.job.waiting, running.job.settled = "", None
            self.queue.add(running.job)
        self.wake()

    def on_lost(self, instance: Instance, how: str) -> None:
        """An instance's tritonserver died under a job: the job faults now, not at its next call; if
        none of its operators had started yet, it is queued again (a few times at most)."""
        running = self.running.get(instance.job or "")
        if running is None:
            return
        reason = f"Triton instance {instance.id} {how}"
        preparing = instance.state in (InstanceState.STARTING, InstanceState.LOADING)
        if preparing and running.job.requeues < MAX_REQUEUES:
            running.requeue(f"{reason}, before the job's first operator")
        else:
            running.stop(JobStatus.FAULTED, reason)

    async def stop(self) -> None:
        """Shutdown: every running job stops its operators and returns its instance."""
        for task in self.background:
            task.cancel()
        tasks = [running.task for running in self.running.values() if running.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self.background, return_exceptions=True)

    # -- the pass ----------------------------------------------------------------------------

    def run_pass(self, now: float) -> float:
        """Converge once; the seconds until the next pass is due at the latest."""
        digests = self.store.model_digests()
        for running in self.running.values():
            if now >= running.deadline and running.stop_reason is None:
                running.stop(JobStatus.FAULTED, f"timed out after {running.timeout:g} s")
        self._unload_removed(digests)
        order = self.queue.ordered(now, self.settings.priority_aging_seconds)
        offer = Offer(digests, self.world(digests) if order else World(), self.pool.views(), self.pool.free_slots())
        self._settle()
        measured, self.costs.newly_measured = self.costs.newly_measured, []
        for name in set(measured):  # a new cost of its model may change a waiting job's answer
            for job in self.queue.wanting(name):
                job.settled = None
        cap = self.settings.max_running_jobs
        for n, job in enumerate(order):
            if len(self.running) >= cap:  # the rest wait for room, saying so
                for rest in order[n:]:
                    self._wait(rest, f"waiting: {cap} jobs are running (max_running_jobs)", False)
                break
            # With nothing to give, a job that waited under the same inputs would wait again, for the
            # same reason: it is not offered again (a pass costs the jobs it can place, not the queue).
            if job.settled is not self._settled or not offer.nothing_free():
                self._offer(job, offer, now)
        for reason, waiting in self._waits.items():
            self.store.note_waits(waiting, reason)
        self._waits.clear()
        self._prewarm(digests, offer.world, now, order)
        self._stop_idle(now)
        self.metrics.publish(self.snapshot(digests))
        due = [running.deadline - now for running in self.running.values() if running.stop_reason is None]
        return max(0.0, min([IDLE_PASS, *due]))

    def _offer(self, job: QueuedJob, offer: Offer, now: float) -> None:
        """Place ``job`` if it can run now; ``offer`` becomes what the next job of this pass sees."""
        digests, nothing_free = offer.digests, offer.nothing_free()
        missing = [name for name in job.models if name not in digests]
        if missing:
            self._drop(job, f"model(s) {', '.join(missing)} no longer in the repository")
            return
        if job.gpus > len(self.gpus):
            self._drop(job, f"requests {job.gpus} GPU(s); this host has {len(self.gpus)}")
            return
        if job.gpus > len(self.free_gpus):
            self._wait(job, f"waiting for {job.gpus} GPU(s): {len(self.free_gpus)} free, "
                            "the others held by running jobs", nothing_free)
            return
        offer.take_wants(job)
        if self.foresight is not None:  # the oracle baseline: when each model is wanted next after this job
            offer.world = replace(offer.world, next_use=self.foresight.after(self.arrivals.get(job.id, self._arrived)))
        decide = placement.POLICIES[self.settings.placement_policy]
        max_models = self.settings.max_models_per_instance
        groups = job.groups(max_models)
        views, free, decisions = offer.listed, offer.free, []
        for models in groups:  # each group's instance is its own: not offered to the next group
            decision = offer.blocked.get(models) if nothing_free else None
            if decision is None:
                decision = decide(list(models), digests, views, free, max_models, offer.world)
            if decision.action in (Action.WAIT, Action.REFUSE) and nothing_free:
                offer.blocked[models] = decision  # the same answer for every job wanting these, this pass
            if decision.action is Action.WAIT:
                self._wait(job, f"waiting for an instance: {decision.reason}", nothing_free)
                return
            if decision.action is Action.REFUSE:
                self._drop(job, decision.reason)
                return
            decisions.append((models, decision))
            views = [replace(view, idle=False) if view.id == decision.instance else view for view in views]
            free = [slot for slot in free if slot != decision.slot]
        if decisions and self.launch_error is not None:
            self._drop(job, self.launch_error)
            return
        self.queue.remove(job)
        self.arrivals.pop(job.id, None)
        self._note_demand(tuple(job.models))
        leases = [Lease(self.pool.lease(decision, job.id), decision, models) for models, decision in decisions]
        gpus = sorted(self.free_gpus)[:job.pipeline.gpus]
        self.free_gpus -= set(gpus)
        for (models, decision) in decisions:
            if decision.reuse is not None:
                self.metrics.placements.labels("split" if len(decisions) > 1 else decision.reuse.value).inc()
                self.metrics.loads_avoided.inc(len(models) - len(decision.load))
        reason = "; ".join(d.reason for _, d in decisions) if decisions else "the job's operators ask for no model"
        if len(decisions) > 1:
            reason = f"split over {len(decisions)} instances ({' | '.join(', '.join(m) for m, _ in decisions)}): {reason}"
        log.info("job %s (%s): %s", job.id, job.pipeline.name, reason)
        self.running[job.id] = self.runner.start(job, leases, gpus, now)
        taken: Counter[str] = Counter()
        for lease in leases:
            taken[lease.instance.slot.domain] += lease.decision.memory
        offer.placed([lease.instance for lease in leases], taken)
        self._settle()

    def _settle(self) -> None:
        """What a waiting job's answer depends on while no instance is idle and no slot is free,
        besides the costs of its own models (a measured one unsettles the jobs that want it): the
        repository, the settings, the instances, the free GPUs."""
        inputs = (self.store.catalog_version, self.settings, tuple(self.pool.instances), len(self.free_gpus),
                  self.launch_error)
        if inputs != self._settled:
            self._settled = inputs

    def _note_demand(self, models: tuple[str, ...]) -> None:
        self.recent.append(models)
        self.demand.update(models)
        if len(self.recent) > DEMAND_WINDOW:
            self.demand.subtract(self.recent.popleft())

    def world(self, digests: dict[str, str]) -> World:
        """What placement needs to know this pass: costs, memory per domain, slots, the queue, recent demand."""
        queued = Counter(self.queue.wanted)
        devices = {slot.device for slot in self.pool.slots.values()}
        costs = self.costs.table(digests, self.store.model_sizes(), devices)
        margin = self.settings.memory_margin_bytes
        memory: dict[str, Memory] = {}
        if "gpu" in devices:
            memory.update(gpu_memory(self.gpu_memory(), margin))
        if "cpu" in devices:
            held = sum(costs[(name, "cpu")].memory for instance in self.pool.instances.values()
                       if instance.slot.device == "cpu" for name in instance.loaded if (name, "cpu") in costs)
            memory["cpu"] = host_memory(self.settings.cpu_memory_bytes, held, margin)
        in_flight: Counter[str] = Counter()
        for running in self.running.values():
            for lease in running.leases:
                if lease.instance.state in (InstanceState.STARTING, InstanceState.LOADING):
                    in_flight[lease.instance.slot.domain] += lease.decision.memory
        demand = {name: count / len(self.recent) for name, count in self.demand.items() if count > 0}
        return World(costs, less(memory, in_flight), self.places, self.costs.start_seconds, queued, demand)

    def _prewarm(self, digests: dict[str, str], world: World, now: float, order: list[QueuedJob]) -> None:
        """With a slot free, warm an instance ahead of jobs: with the models of the first waiting job
        that no instance holds (it waits for its GPUs), else (keep_warm) with the most used
        pipeline's. One per pass; what placement would start for them, within memory."""
        free = self.pool.free_slots()
        if not free or self.launch_error is not None or self.settings.placement_policy != "clarad":
            return
        wanted = [list(job.models) for job in order if job in self.queue]
        if self.settings.keep_warm and not wanted:
            wanted = [self._most_used_models(now)]
        for models in wanted:
            if not models or any(set(models) <= set(i.loaded) or i.job is None and i.state is not InstanceState.IDLE
                                 for i in self.pool.instances.values()):
                continue  # held already, or a warm-up is under way
            decision = placement.decide(models, digests, [], free, self.settings.max_models_per_instance, world)
            if decision.action is Action.START:
                instance = self.pool.lease(decision, None)
                log.info("instance %s: warming with %s ahead of the jobs that want them", instance.id, ", ".join(models))
                self._background(self._warm(instance, decision, models))
            return

    async def _warm(self, instance: Instance, decision: placement.Decision, models: list[str]) -> None:
        try:
            await self.runner.preparer.prepare(instance, decision, models)
            self.pool.move(instance, "loaded")
            if self.pool.give_back(instance, time.time()):
                self.metrics.prewarms.inc()
                return
        except Exception as exc:  # TritonError, or a bug: the warm-up is lost, not the daemon
            log.warning("instance %s: warming failed: %s", instance.id, exc)
        finally:
            self.wake()
        await self.pool.stop(instance, self.settings.triton_stop_grace_seconds)

    def _most_used_models(self, now: float) -> list[str]:
        if now - self._most_used[0] > MOST_USED_EVERY:
            name = self.store.most_used_pipeline()
            record = self.store.pipeline(name) if name else None
            self._most_used = (now, known.parsed(record["definition"]).model_names if record else [])
        return self._most_used[1]

    def _stop_idle(self, now: float) -> None:
        """Idle instances beyond instances_min_idle stop once idle instance_idle_seconds."""
        if not self.settings.instance_idle_seconds:
            return
        idle = sorted((i for i in self.pool.instances.values() if i.state is InstanceState.IDLE),
                      key=lambda i: i.idle_since)
        for instance in idle[: max(0, len(idle) - self.settings.instances_min_idle)]:
            if now - instance.idle_since >= self.settings.instance_idle_seconds:
                log.info("instance %s idle for %.0f s: stopping it", instance.id, now - instance.idle_since)
                self._background(self.pool.stop(instance, self.settings.triton_stop_grace_seconds))

    def _drop(self, job: QueuedJob, reason: str) -> None:
        self.queue.remove(job)
        self.arrivals.pop(job.id, None)
        self.runner.finish(job.id, JobStatus.FAULTED, reason)

    def _wait(self, job: QueuedJob, reason: str, nothing_free: bool) -> None:
        """Say in the store (and so in `clarad jobs show`) why a job still waits; written on change only.
        A job that waits with nothing free is settled: not offered again until what it saw changes."""
        job.settled = self._settled if nothing_free else None
        if job.waiting != reason:
            job.waiting = reason
            self._waits.setdefault(reason, []).append(job.id)  # written at the pass's end, one write per reason

    def _unload_removed(self, digests: dict[str, str]) -> None:
        """Idle instances unload models no longer in the repository (in the background)."""
        for instance in self.pool.instances.values():
            gone = [name for name in instance.loaded if name not in digests and (instance.id, name) not in self.unloading]
            if instance.state is InstanceState.IDLE and gone and instance.server is not None:
                self.unloading |= {(instance.id, name) for name in gone}
                self._background(self._unload(instance, gone))

    async def _unload(self, instance: Instance, names: list[str]) -> None:
        for name in names:
            try:
                await self.runner.preparer.unload(instance, name, "removed")
            except TritonError as exc:
                log.warning("%s", exc)
            finally:
                self.unloading.discard((instance.id, name))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    # -- what people see ---------------------------------------------------------------------

    def snapshot(self, digests: dict[str, str]) -> Snapshot:
        models, model_bytes, pipelines = self.store.catalog_counts()
        if self._live_costs[0] != (self.store.catalog_version, self.costs.version):  # else they are as they were
            self._live_costs = ((self.store.catalog_version, self.costs.version),
                                {(name, device): cost for (name, digest, device), cost in self.costs.measured().items()
                                 if digests.get(name) == digest})
        costs = self._live_costs[1]
        return Snapshot(models, model_bytes, pipelines, {"PENDING": len(self.queue), "RUNNING": len(self.running)},
                        self.pool.counts(), costs, self.pool.metrics_targets())

    def waiting(self, now: float) -> list[str]:
        return [job.id for job in self.queue.ordered(now, self.settings.priority_aging_seconds)]

