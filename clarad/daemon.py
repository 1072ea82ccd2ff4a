"""`clarad run`: the one asyncio loop that owns clarad's live state.

Owned here, and touched only from the loop: the job queue, running jobs, the instance pool and the
inbox's settle tracking. Everything else sends the loop something: the watchdog thread posts inbox
events with ``call_soon_threadsafe``, signal handlers set an event, control-socket requests are
coroutines on this loop, the metrics thread reads gauges the loop has set.

Shutdown order: stop taking drops and requests, cancel running jobs (each stops its operators),
stop the Triton instances, close the store. Queued jobs stay PENDING in the store and run after the
next start.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import shutil
import signal
import time
from pathlib import Path
from typing import IO, Any, Callable, Optional

from clarad import __version__, archives, children, control, inbox, placement, recovery, repository
from clarad.config import Settings
from clarad.errors import ClaradError, ModelRejected, RejectedDrop, TritonError
from clarad.gpus import Gpus, NvmlGpus, StaticGpus, slots
from clarad.ingest import Ingest
from clarad.jobs import JobState, JobStatus, Priority, QueuedJob, queue_order
from clarad.layout import Layout
from clarad.metrics import Metrics
from clarad.pipelines import parse_pipeline
from clarad.placement import Action, Decision
from clarad.pool import Instance, Pool
from clarad.runner import JobRunner
from clarad.store import Store
from clarad.systemd import notify, watchdog_interval
from clarad.triton import LaunchSpec, TritonServer, find_binary, prepare_launch

log = logging.getLogger("clarad")

SETTLE_POLL = 0.1  # seconds between looks at drops that are still being written
# Settings a running daemon cannot change: where it lives, what it listens on, its instance slots.
RESTART_TO_CHANGE = frozenset({
    "state_dir", "metrics_address", "metrics_port", "triton_binary", "triton_backend_dir", "use_gpus",
    "instances_per_gpu", "cpu_instances",
})


class Daemon:
    def __init__(self, settings: Settings, gpus: Optional[Gpus] = None,
                 reload: Optional[Callable[[], Settings]] = None) -> None:
        self.settings = settings
        self.reload = reload
        self.layout = Layout(settings.state_dir)
        self.metrics = Metrics()
        self.gpu_source = gpus or (NvmlGpus() if settings.use_gpus else StaticGpus([]))
        self.queue: list[QueuedJob] = []
        self.running: dict[str, asyncio.Task[None]] = {}  # job id -> its whole life (_run_job)
        self.inner: dict[str, "asyncio.Future[tuple[JobStatus, str]]"] = {}  # job id -> the runner's work
        self.cancel_reasons: dict[str, str] = {}
        self.drops: dict[Path, inbox.Drop] = {}
        self.complete: set[Path] = set()  # drops known to be whole: renamed in, or ready and deferred
        self.tracked: dict[Path, inbox.Tracked] = {}
        self.ingesting: dict[Path, asyncio.Task[None]] = {}  # model drops being taken in the background
        self.unloading: set[asyncio.Task[None]] = set()  # removed models leaving idle instances
        self.launch: Optional[LaunchSpec] = None
        self.launch_error = ""
        self.started_at = time.time()

    # -- start-up and shutdown ---------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        self.wakeup = asyncio.Event()
        self.layout.create()
        self.lock = _exclusive_lock(self.layout.root / "clarad.lock")  # before touching anything
        self.layout.empty_staging()
        self.store = Store(self.layout.database)
        self._stop_leftovers()
        recovery.reconcile(self.layout, self.store, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
        limits = archives.Limits(self.settings.archive_max_entries, self.settings.archive_max_bytes,
                                 self.settings.archive_max_ratio)
        self.ingest = Ingest(self.layout, self.store, self.metrics, limits, self.settings.model_revisions_kept)
        self.gpus = self.gpu_source.discover()
        self.metrics.watch_gpus(self.gpu_source)
        self.pool = Pool(slots(self.gpus, self.settings.instances_per_gpu, self.settings.cpu_instances))
        log.info("clarad %s: state in %s; %s; %d instance slot(s)", __version__, self.layout.root,
                 f"{len(self.gpus)} GPU(s)" if self.gpus else "no GPU, CPU instances", len(self.pool.slots))
        self._prepare_triton()
        self.runner = JobRunner(self.settings, self.layout, self.store, self.metrics, self.launch, self.gpus, self._publish)
        self._recover_jobs()
        server = await control.serve(control.socket_path(self.layout.root), self._handle)
        http = self.metrics.serve(self.settings.metrics_address, self.settings.metrics_port)
        observer = inbox.watch(self.layout.inbox, lambda d, r: self._post(loop, d, r))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        self._rescan()
        self._schedule()
        ticker = asyncio.create_task(self._tick_forever())
        interval = watchdog_interval()
        keepalive = asyncio.create_task(self._keepalive_forever(interval)) if interval else None
        notify("READY=1", "STATUS=running")
        log.info("ready: control socket %s, metrics %s", control.socket_path(self.layout.root),
                 f"http://{self.settings.metrics_address}:{self.settings.metrics_port}/metrics" if http else "off")
        await self.stopping.wait()

        log.info("stopping: %d running job(s), %d instance(s)", len(self.running), len(self.pool.instances))
        notify("STOPPING=1")
        observer.stop()
        server.close()
        background = [ticker, *([keepalive] if keepalive else []), *self.ingesting.values(), *self.unloading]
        for task in background:
            task.cancel()
        for task in self.running.values():
            task.cancel()
        await asyncio.gather(*background, *self.running.values(), return_exceptions=True)
        await asyncio.gather(*(self._stop_instance(i) for i in list(self.pool.instances.values())))
        observer.join(timeout=5)
        if http is not None:
            http.shutdown()
        self.store.close()
        log.info("stopped")
        return 0

    def _stop_leftovers(self) -> None:
        recorded = self.store.children()
        for description in children.stop_leftovers(recorded):
            log.warning("stopped %s, left running by a previous clarad", description)
        for row in recorded:
            self.store.forget_child(row["pid"])

    def _prepare_triton(self) -> None:
        try:
            binary = find_binary(self.settings.triton_binary)
            self.launch = prepare_launch(binary, self.layout.triton, self.settings.triton_backend_dir)
            log.info("tritonserver: %s (backends %s)", binary, self.launch.backend_dir)
        except TritonError as exc:
            self.launch_error = str(exc)
            log.error("%s; jobs that need models will fault", exc)

    def _recover_jobs(self) -> None:
        """Rebuild the queue from the store: RUNNING jobs died with the last clarad, PENDING ones wait."""
        for job in self.store.jobs_in(JobState.RUNNING):
            self._finish(job["id"], JobStatus.FAULTED, "clarad stopped while the job was running")
        for job in self.store.jobs_in(JobState.PENDING):
            try:
                self._enqueue(job["id"])
            except (OSError, ClaradError) as exc:
                self._finish(job["id"], JobStatus.FAULTED, f"cannot recover the job's pipeline: {exc}")
        if self.queue:
            log.info("%d pending job(s) from before the restart queued again", len(self.queue))

    async def _stop_instance(self, instance: Instance) -> None:
        self.pool.remove(instance)
        if instance.server is None:
            return
        code = await children.stop_surely(instance.server.child, self.settings.triton_stop_grace_seconds)
        instance.server.client.close()
        self.store.forget_child(instance.server.child.pid)
        log.info("instance %s stopped (%s)", instance.id, children.describe_exit(code))

    def _on_sighup(self) -> None:
        """Read the settings again; apply those a running daemon can change, name the others."""
        if self.reload is None:
            return
        try:
            new = self.reload()
        except ClaradError as exc:
            log.error("SIGHUP: settings refused, nothing changed: %s", exc)
            return
        old = self.settings.model_dump()
        changed = [key for key, value in new.model_dump().items() if old[key] != value]
        fixed = [key for key in changed if key in RESTART_TO_CHANGE]
        applied = [key for key in changed if key not in RESTART_TO_CHANGE]
        self.settings = self.runner.settings = new.model_copy(update={key: old[key] for key in fixed})
        self.ingest.limits = archives.Limits(new.archive_max_entries, new.archive_max_bytes, new.archive_max_ratio)
        self.ingest.revisions_kept = new.model_revisions_kept
        logging.getLogger().setLevel(self.settings.log_level)
        log.info("SIGHUP: settings read again; applied: %s", ", ".join(applied) or "no change")
        if fixed:
            log.warning("SIGHUP: %s take effect only after a restart", ", ".join(fixed))
        self._schedule()

    # -- the inbox -----------------------------------------------------------------------------

    def _post(self, loop: asyncio.AbstractEventLoop, drop: inbox.Drop, renamed: bool) -> None:
        """Called on the watchdog thread: hand the event to the loop."""
        loop.call_soon_threadsafe(self._on_drop_event, drop, renamed)

    def _on_drop_event(self, drop: inbox.Drop, renamed: bool) -> None:
        self.drops.setdefault(drop.path, drop)
        if renamed:
            self.complete.add(drop.path)
        self.wakeup.set()

    def _rescan(self) -> None:
        for drop in inbox.scan(self.layout.inbox):
            self.drops.setdefault(drop.path, drop)

    async def _keepalive_forever(self, interval: float) -> None:
        """systemd's watchdog: proof that the loop itself still runs (slow work is in threads)."""
        while True:
            notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def _tick_forever(self) -> None:
        next_rescan = time.monotonic() + self.settings.rescan_seconds
        while True:
            timeout = SETTLE_POLL if self.drops else 1.0
            try:
                await asyncio.wait_for(self.wakeup.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            self.wakeup.clear()
            if time.monotonic() >= next_rescan:
                self._rescan()
                next_rescan = time.monotonic() + self.settings.rescan_seconds
            try:
                await self._take_settled_drops()
                self._reap_dead_instances()
            except Exception:  # keep the inbox alive; the log has the bug
                log.exception("inbox tick failed")

    async def _take_settled_drops(self) -> None:
        pending = {path: drop for path, drop in self.drops.items() if path not in self.ingesting}
        observed = {path: inbox.observe(path) for path in pending}
        ready, self.tracked = inbox.settle_step(self.tracked, observed, self.complete, time.time(), self.settings.settle_seconds)
        for path, seen in observed.items():
            if seen is None:
                self.drops.pop(path, None)
        order = {kind: n for n, kind in enumerate(inbox.KINDS)}
        for path in sorted(ready, key=lambda p: (order[self.drops[p].kind], str(p))):
            drop = self.drops[path]
            if drop.kind == "models":  # extraction and digest take long: in the background
                self.complete.discard(path)
                self.ingesting[path] = asyncio.create_task(self._take(drop))
            elif self.ingesting:  # a pipeline may need a model still being taken: next tick
                self.complete.add(path)
            else:
                self.complete.discard(path)
                await self._take(drop)
        self.complete &= set(self.drops)

    async def _take(self, drop: inbox.Drop) -> None:
        try:
            job = await self.ingest.take(drop)
        except Exception as exc:  # a bug must cost one drop (kept in rejected/), not the inbox
            log.exception("taking %s failed", drop.path)
            self.ingest.reject(drop, f"internal error while taking it: {exc}", "internal")
            job = None
        finally:
            self.drops.pop(drop.path, None)
            self.ingesting.pop(drop.path, None)
        if job is not None:
            self._enqueue(job.id)
        self._schedule()

    def _enqueue(self, job_id: str) -> None:
        record = self.store.job(job_id)
        assert record is not None
        text = (self.layout.job_dir(job_id) / "pipeline.yaml").read_text(encoding="utf-8")
        self.queue.append(QueuedJob(job_id, record["name"], parse_pipeline(text), Priority(record["priority"]),
                                    record["created_at"]))

    # -- placement -----------------------------------------------------------------------------

    def _schedule(self) -> None:
        """Give every queued job that can run now an instance (or none if it needs none)."""
        if self.stopping.is_set():
            return
        self._reap_dead_instances()
        for job in queue_order(self.queue, time.time(), self.settings.priority_aging_seconds):
            digests = self.store.model_digests()
            missing = [name for name in job.pipeline.model_names if name not in digests]
            if missing:
                self.queue.remove(job)
                self._finish(job.id, JobStatus.FAULTED, f"model(s) {', '.join(missing)} no longer in the repository")
                continue
            decision = placement.decide(job.pipeline.model_names, digests, self.pool.views(),
                                        self.pool.free_slots(), self.settings.max_models_per_instance)
            if decision.action is Action.WAIT:
                continue
            self.queue.remove(job)
            if decision.action is Action.REFUSE or (decision.action is not Action.NONE and self.launch is None):
                self._finish(job.id, JobStatus.FAULTED, decision.reason if decision.action is Action.REFUSE else self.launch_error)
                continue
            instance = None if decision.action is Action.NONE else self.pool.lease(decision, job.id)
            if decision.reuse is not None:
                self.metrics.placements.labels(decision.reuse.value).inc()
            log.info("job %s (%s): %s", job.id, job.pipeline.name, decision.reason)
            self.running[job.id] = asyncio.create_task(self._run_job(job, decision, instance))
        self._publish()

    def _unload_removed_models(self) -> None:
        """Idle instances unload models no longer in the repository (in the background)."""
        digests = self.store.model_digests()
        for instance in self.pool.instances.values():
            gone = [name for name in instance.loaded if name not in digests]
            if instance.state == "idle" and gone and instance.server is not None:
                for name in gone:
                    instance.loaded.pop(name)
                    instance.last_used.pop(name, None)
                task = asyncio.create_task(self._unload(instance.server, gone))
                self.unloading.add(task)
                task.add_done_callback(self.unloading.discard)

    async def _unload(self, server: TritonServer, names: list[str]) -> None:
        for name in names:
            try:
                await server.unload(name)
                log.info("instance %s: unloaded removed model %s", server.id, name)
            except TritonError as exc:
                log.warning("%s", exc)

    def _reap_dead_instances(self) -> None:
        for instance in list(self.pool.instances.values()):
            if instance.state == "idle" and instance.server is not None and not instance.server.alive:
                code = instance.server.child.proc.returncode or 0
                log.warning("instance %s %s: %s", instance.id, children.describe_exit(code), instance.server.last_log_line())
                self.store.forget_child(instance.server.child.pid)
                self.pool.remove(instance)

    # -- one job -------------------------------------------------------------------------------

    async def _run_job(self, job: QueuedJob, decision: Decision, instance: Optional[Instance]) -> None:
        """One job, from its lease to its lease's return. Whatever happens, the job ends with a
        status and a reason, its operators are stopped first, and its instance is returned."""
        started = time.time()
        status, reason = JobStatus.FAULTED, "internal error"
        try:
            self.store.start_job(job.id, instance.id if instance else None, started)
            self._publish()
            if job.id in self.cancel_reasons:  # canceled before it began
                status, reason = JobStatus.CANCELED, self.cancel_reasons.pop(job.id)
            else:
                inner = asyncio.ensure_future(self.runner.run(job, decision, instance))
                self.inner[job.id] = inner
                status, reason = await self._outcome(job, inner)
        except Exception as exc:  # a bug; the job still ends with a reason
            log.exception("job %s failed unexpectedly", job.id)
            reason = f"internal error: {exc}"
        finally:
            self.inner.pop(job.id, None)
            self.cancel_reasons.pop(job.id, None)
            try:
                reason += children.left_running(self.store.children(), job.id)
                self._finish(job.id, status, reason)
            except Exception:
                log.exception("job %s: recording its end (%s: %s) failed", job.id, status.value, reason)
            self.metrics.job_duration.observe(time.time() - started)
            if instance is not None:
                await self._return_instance(instance, job.id)
            self.running.pop(job.id, None)  # only now: shutdown waits for the instance's stop too
            self._schedule()

    async def _outcome(self, job: QueuedJob, inner: "asyncio.Future[tuple[JobStatus, str]]") -> tuple[JobStatus, str]:
        """Wait for the runner within the job's timeout; a timeout or a cancel stops it first."""
        timeout = min(job.pipeline.timeout or self.settings.job_timeout_seconds, self.settings.job_timeout_max_seconds)
        try:
            done, _ = await asyncio.wait({inner}, timeout=timeout)
        except asyncio.CancelledError:  # clarad is stopping
            inner.cancel()
            await children.wait_through_cancel(inner)
            return JobStatus.CANCELED, self.cancel_reasons.get(job.id, "clarad stopped while the job was running")
        if not done:
            inner.cancel()
            await children.wait_through_cancel(inner)
            return JobStatus.FAULTED, f"timed out after {timeout:g} s"
        if inner.cancelled():  # `clarad jobs cancel`
            return JobStatus.CANCELED, self.cancel_reasons.get(job.id, "canceled")
        error = inner.exception()
        if isinstance(error, ClaradError):  # Triton failures, workspace permissions: readable as they are
            return JobStatus.FAULTED, str(error)
        if error is not None:
            log.error("job %s failed unexpectedly", job.id, exc_info=error)
            return JobStatus.FAULTED, f"internal error: {error}"
        return inner.result()

    async def _return_instance(self, instance: Instance, job_id: str) -> None:
        """Back to idle if it is alive and was fully prepared for this job; else stop it (a load
        may still be running in Triton, or the server died)."""
        if instance.server is not None and instance.server.alive and instance.prepared_for == job_id:
            self.pool.release(instance)
            self._unload_removed_models()
        else:
            await self._stop_instance(instance)

    def _finish(self, job_id: str, status: JobStatus, reason: str) -> None:
        self.store.finish_job(job_id, status, reason, time.time())
        self.metrics.jobs_finished.labels(status.value).inc()
        job = self.store.job(job_id)
        job_dir = self.layout.job_dir(job_id)
        if job_dir.is_dir():
            (job_dir / "status.json").write_text(json.dumps(job, indent=2, default=str) + "\n", encoding="utf-8")
        log.info("job %s stopped %s: %s", job_id, status.value, reason)
        self._publish()

    # -- what the outside sees -----------------------------------------------------------------

    def _publish(self) -> None:
        models = self.store.models()
        self.metrics.publish({
            "models": len(models),
            "model_bytes": sum(m["size"] for m in models),
            "pipelines": len(self.store.pipelines()),
            "jobs": self.store.job_counts(),
            "instances": self.pool.counts(),
        })

    async def _handle(self, command: str, args: dict[str, Any]) -> Any:
        handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "status": lambda a: self._status(),
            "models.list": lambda a: self.store.models(),
            "models.show": lambda a: self._model(str(a["model"])),
            "models.add": lambda a: self._add_model(Path(str(a["path"]))),
            "models.remove": lambda a: self._remove_model(str(a["model"]), bool(a.get("force"))),
            "models.rollback": lambda a: self._rollback_model(str(a["model"]), a.get("revision")),
            "pipelines.list": lambda a: self.store.pipelines(),
            "jobs.list": lambda a: self.store.jobs(int(a.get("limit", 100))),
            "jobs.show": lambda a: self._job(str(a["id"])),
            "jobs.cancel": lambda a: self._cancel(str(a["id"])),
            "jobs.create": lambda a: self._create_job(a),
        }
        if command not in handlers:
            raise ClaradError(f"unknown command {command!r}; known: {', '.join(sorted(handlers))}")
        result = handlers[command](args)
        return await result if asyncio.iscoroutine(result) else result

    # -- the model repository, asked by people ---------------------------------------------------

    def _find_model(self, key: str) -> dict[str, Any]:
        model = self.store.find_model(key)
        if model is None:
            raise ClaradError(f"no model {key!r} (give its name, its id or a unique prefix of the id)")
        return model

    def _pipelines_needing(self, name: str) -> list[str]:
        return [p["name"] for p in self.store.pipelines() if name in parse_pipeline(p["definition"]).model_names]

    def _model(self, key: str) -> dict[str, Any]:
        model = self._find_model(key)
        model["path"] = str(self.layout.models / model["name"])
        model["revisions"] = self.store.revisions(model["name"])
        model["pipelines"] = self._pipelines_needing(model["name"])
        model["instances"] = [
            {"id": i.id, "state": i.state, "current": i.loaded[model["name"]] == model["digest"]}
            for i in self.pool.instances.values() if model["name"] in i.loaded
        ]
        return model

    async def _add_model(self, path: Path) -> dict[str, Any]:
        if not path.is_absolute():
            raise ClaradError(f"{path}: give an absolute path")
        if not path.exists():
            raise ClaradError(f"{path}: no such file or directory")
        try:
            record = await self.ingest.add_model(path, f"cli:{path}", consume=False)
        except ModelRejected as exc:
            raise ClaradError(f"refused: {exc}") from None
        self._publish()
        return record

    async def _remove_model(self, key: str, force: bool) -> dict[str, Any]:
        model = self._find_model(key)
        name = model["name"]
        needing = self._pipelines_needing(name)
        if needing and not force:
            raise ClaradError(f"model {name} is needed by pipeline(s) {', '.join(needing)}; use --force to remove it anyway")
        trash = self.layout.staging / f"removed-{name}-{time.time_ns()}"
        trash.mkdir()
        for path in (self.layout.models / name, self.layout.revisions / name):
            if path.exists():  # out of the way first: a crash now leaves a record whose files are gone
                path.rename(trash / path.parent.name)
        self.store.remove_model(name)
        await asyncio.to_thread(shutil.rmtree, trash, True)
        log.warning("model %s removed%s", name, f" although pipeline(s) {', '.join(needing)} need it" if needing else "")
        self._unload_removed_models()
        self._publish()
        return {"name": name, "removed": True, "pipelines": needing}

    def _rollback_model(self, key: str, revision: Optional[str]) -> dict[str, Any]:
        model = self._find_model(key)
        kept = self.store.revisions(model["name"])
        chosen = [r for r in kept if r["digest"].startswith(revision)] if revision else kept[:1]
        if len(chosen) != 1:
            have = ", ".join(r["digest"][:12] for r in kept) or "none"
            raise ClaradError(f"model {model['name']}: no single kept revision {revision or ''} (kept: {have})".replace("  ", " "))
        digest = chosen[0]["digest"]
        recovery.begin_install(self.layout, model["name"], digest, model["digest"])
        try:
            repository.restore(model["name"], digest, self.layout.models, self.layout.revisions, model["digest"])
        except ModelRejected as exc:
            recovery.end_install(self.layout, model["name"])
            raise ClaradError(str(exc)) from None
        self.store.rollback_model(model["name"], digest, time.time())
        recovery.end_install(self.layout, model["name"])
        log.info("model %s rolled back to revision %s (was %s)", model["name"], digest[:12], model["digest"][:12])
        self._publish()
        return {"name": model["name"], "digest": digest, "previous": model["digest"]}

    def _job(self, job_id: str) -> dict[str, Any]:
        job = self.store.job(job_id)
        if job is None:
            raise ClaradError(f"no job {job_id}")
        job["directory"] = str(self.layout.job_dir(job["id"]))
        return job

    async def _create_job(self, args: dict[str, Any]) -> dict[str, Any]:
        path = Path(str(args["path"]))
        if not path.is_absolute() or not path.exists():
            raise ClaradError(f"{path}: give the absolute path of an existing file or directory")
        try:
            priority = Priority.parse(str(args.get("priority") or "normal"))
        except ValueError:
            raise ClaradError(f"priority {args.get('priority')!r}: one of low, normal, high, immediate") from None
        name = str(args.get("name") or path.name)
        staging = self.layout.staging / f"payload-{time.time_ns()}"
        staging.mkdir(mode=0o700)
        try:
            copy = staging / path.name
            await asyncio.to_thread(_copy_payload, path, copy)
            job = self.ingest.create_job(str(args["pipeline"]), copy, name, priority)
            self._enqueue(job.id)
        except RejectedDrop as exc:
            raise ClaradError(str(exc)) from None
        except OSError as exc:
            raise ClaradError(f"{path}: {exc.strerror or exc}") from None
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        self._schedule()
        return {"id": job.id, "priority": priority.value}

    def _cancel(self, job_id: str) -> dict[str, Any]:
        job = self._job(job_id)
        if job["state"] == JobState.STOPPED.value:
            raise ClaradError(f"job {job['id']} already stopped ({job['status']})")
        queued = next((q for q in self.queue if q.id == job["id"]), None)
        if queued is not None:
            self.queue.remove(queued)
            self._finish(job["id"], JobStatus.CANCELED, "canceled before it started")
        elif job["id"] in self.running:
            self.cancel_reasons[job["id"]] = "canceled"
            if job["id"] in self.inner:  # else _run_job has not begun, and will see the reason
                self.inner[job["id"]].cancel()
        else:
            raise ClaradError(f"job {job['id']} is being set up; try again in a moment")
        return {"id": job["id"], "canceling": True}

    def _status(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "state_dir": str(self.layout.root),
            "gpus": [gpu.__dict__ for gpu in self.gpus],
            "slots": list(self.pool.slots),
            "triton": str(self.launch.binary) if self.launch else self.launch_error,
            "instances": [instance.describe() for instance in self.pool.instances.values()],
            "queue": [q.id for q in queue_order(self.queue, time.time(), self.settings.priority_aging_seconds)],
            "jobs": self.store.job_counts(),
            "models": len(self.store.models()),
            "pipelines": len(self.store.pipelines()),
            "settings": self.settings.model_dump(mode="json"),
        }


def _copy_payload(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target)


def _exclusive_lock(path: Path) -> IO[bytes]:
    """Hold an exclusive lock on ``path`` for as long as the file stays open; refuse if another
    clarad holds it (its children and jobs are its own, not leftovers)."""
    handle = open(path, "ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ClaradError(f"another clarad is running on {path.parent} (it holds {path.name})") from None
    return handle


def run_daemon(settings: Settings, reload: Optional[Callable[[], Settings]] = None) -> int:
    """Entry point of `clarad run`: log to stderr (journald adds its own timestamps), run the loop."""
    under_journal = bool(os.environ.get("JOURNAL_STREAM"))
    logging.basicConfig(
        level=settings.log_level,
        format="%(levelname)s %(name)s: %(message)s" if under_journal else "%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return asyncio.run(Daemon(settings, reload=reload).run())
    except ClaradError as exc:
        log.error("%s", exc)
        return 1
    except OSError as exc:  # e.g. a state directory clarad may not write
        log.error("cannot run: %s", exc)
        return 1
