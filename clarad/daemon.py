"""`clarad run`: wiring, the one asyncio loop that owns clarad's live state, and the shutdown order.

Owners, all on this loop: ``Intake`` (drops until taken), ``Scheduler`` (queue, running jobs, GPUs;
one reconcile pass per wake-up), ``Pool`` (Triton instances), ``ModelRepository`` (models/). Other
threads only post to the loop: the watchdog thread its inbox events (``call_soon_threadsafe``),
signal handlers set an event, control requests are coroutines on the loop, and /metrics reads the
snapshot the last pass published.

The loop: wait for a wake-up (or the next deadline), take settled drops, run one scheduling pass.
Shutdown order: stop taking drops and requests (control socket, Clara's gRPC API), cancel running
jobs (each stops its operators and returns its instance), stop the Triton instances, close the
store. Queued jobs stay PENDING in the store and run after the next start.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import time
from pathlib import Path
from typing import IO, Callable, Optional

from clarad import __version__, archives, children, containment, control, inbox, recovery, retention
from clarad.config import Settings
from clarad.containers import engine
from clarad.containers.leftovers import remove_leftovers
from clarad.control.handlers import Handlers
from clarad.costs import CostBook
from clarad.errors import ClaradError, TritonError
from clarad.gpus import Gpus, NvmlGpus, StaticGpus, slots
from clarad.ingest import Ingest
from clarad.intake import Intake
from clarad.layout import Layout
from clarad.metrics import Metrics
from clarad.pool import Pool
from clarad.prepare import Preparer
from clarad.repository import ModelRepository
from clarad.runner import JobRunner
from clarad.scheduler import Scheduler
from clarad.spares import Spares
from clarad.store import Store
from clarad.systemd import log_formatter, notify, reloading, watchdog_interval
from clarad.targets import TargetsFile
from clarad.triton import Launcher, find_binary, prepare_launch
from clarad.trust import Trust

log = logging.getLogger("clarad")

SETTLE_POLL = 0.1  # seconds between looks at drops that are still being written
# Settings a running daemon cannot change: where it lives, what it listens on, its instance slots.
RESTART_TO_CHANGE = frozenset({
    "state_dir", "metrics_address", "metrics_port", "triton_targets_file", "api_address", "api_port", "api_socket", "triton_binary",
    "triton_backend_dir", "use_gpus", "instances_per_gpu", "cpu_instances", "operator_containment",
    "operator_runtime",
})


class Daemon:
    def __init__(self, settings: Settings, gpus: Optional[Gpus] = None,
                 reload: Optional[Callable[[], Settings]] = None) -> None:
        self.settings = settings
        self.reload = reload
        self.layout = Layout(settings.state_dir)
        self.metrics = Metrics(TargetsFile(settings.triton_targets_file or self.layout.triton_targets))
        self.gpu_source = gpus or (NvmlGpus() if settings.use_gpus else StaticGpus([]))
        self.started_at = time.time()
        self.stopping = asyncio.Event()
        self.wakeup = asyncio.Event()

    def wake(self) -> None:
        self.wakeup.set()

    def _wire(self) -> None:
        """Build the owners, once the state directory is locked and recovered."""
        s, layout, store = self.settings, self.layout, self.store
        self.launcher: Optional[Launcher] = None
        self.launch_error: Optional[str] = None
        try:
            binary = find_binary(s.triton_binary)
            spec = prepare_launch(binary, layout.triton, s.triton_backend_dir)
            self.launcher = Launcher(spec, layout.models, layout.triton / "logs", self.children, os.environ,
                                     self.gpu_source, layout.root)
            self.launcher.remove_leftovers()
            log.info("tritonserver: %s (backends %s)", binary, spec.backend_dir)
        except TritonError as exc:
            self.launch_error = str(exc)
            log.error("%s; jobs that need models will fault", exc)
        limits = archives.Limits(s.archive_max_entries, s.archive_max_bytes, s.archive_max_ratio)
        self.ingest = Ingest(layout, store, self.metrics, self.models, limits, len(self.gpus),
                             s.max_models_per_instance, Trust(s.drop_group), self.engine.name if self.engine else None)
        self.pool = Pool(slots(self.gpus, s.instances_per_gpu, s.cpu_instances),
                         on_lost=lambda instance, how: self.scheduler.on_lost(instance, how))
        self.costs = CostBook(store)
        self.preparer = Preparer(s, layout, store, self.metrics, self.pool, self.launcher, self.costs)
        runner = JobRunner(s, layout, store, self.metrics, self.pool, self.preparer, self.children,
                           on_done=lambda running: self.scheduler.on_done(running), engine=self.engine)
        self.scheduler = Scheduler(s, store, layout, self.metrics, self.pool, runner, self.costs, self.gpus,
                                   self.gpu_source.memory, self.launch_error, self.wake)
        self.intake = Intake(layout.inbox, self.ingest, s.settle_seconds, self.scheduler.enqueue, self.wake)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.layout.create()
        self.lock = _exclusive_lock(self.layout.root / "clarad.lock")  # before touching anything
        self.layout.empty_staging()
        self.store = Store(self.layout.database)
        self.children = children.ChildRegistry(
            self.store, containment.choose(self.settings.operator_containment, self.layout.root),
            str(self.layout.root.resolve()))
        self.engine = engine.detect(self.settings.operator_runtime)
        if self.engine is not None:  # before its clients are stopped: a container goes whole
            remove_leftovers(self.engine, Path(self.children.marker))
        self.children.stop_leftovers()
        if self.children.containment.kind == "cgroup":  # where an operator's start waits for its cgroup
            self.spares: Optional[Spares] = Spares(self.children)
            self.children.spares = self.spares
        else:
            self.spares = None
        self.gpus = self.gpu_source.discover()
        self.metrics.watch_gpus(self.gpu_source)
        self.models = ModelRepository(self.layout, self.store, self.settings.model_revisions_kept)
        recovery.reconcile(self.layout, self.store, self.models, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
                           len(self.gpus), self.engine.name if self.engine else None)
        self._wire()
        log.info("clarad %s: state in %s; %s; %d instance slot(s)", __version__, self.layout.root,
                 f"{len(self.gpus)} GPU(s)" if self.gpus else "no GPU, CPU instances", len(self.pool.slots))
        self.scheduler.recover()
        server = await control.serve(control.socket_path(self.layout.root), Handlers(self))
        from clarad.api import server as api  # here: Clara's protobuf names load only into a running daemon

        api_server = await api.serve(self)
        http = self.metrics.serve(self.settings.metrics_address, self.settings.metrics_port)
        def post(drop: inbox.Drop, renamed: bool) -> None:  # on the watchdog thread
            loop.call_soon_threadsafe(self.intake.on_event, drop, renamed)

        def overflowed() -> None:  # on the watching thread: events were lost
            loop.call_soon_threadsafe(self._rescan_now)

        observer = inbox.watch(self.layout.inbox, post, overflowed)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        await self.intake.rescan()
        interval = watchdog_interval()
        keepalive = asyncio.create_task(_keepalive_forever(interval)) if interval else None
        notify("READY=1", "STATUS=running")
        log.info("ready: control socket %s, metrics %s", control.socket_path(self.layout.root),
                 f"http://{self.settings.metrics_address}:{self.settings.metrics_port}/metrics" if http else "off")
        await self._loop()

        log.info("stopping: %d running job(s), %d instance(s)", len(self.scheduler.running), len(self.pool.instances))
        notify("STOPPING=1")
        observer.stop()
        server.close()
        await api.stop(api_server)
        if keepalive is not None:
            keepalive.cancel()
        await self.intake.stop()
        await self.scheduler.stop()
        if self.spares is not None:
            await self.spares.stop()
        await self.pool.stop_all(self.settings.triton_stop_grace_seconds)
        observer.join(timeout=5)
        if http is not None:
            http.shutdown()
        self.store.close()
        log.info("stopped")
        return 0

    async def _loop(self) -> None:
        """Until told to stop: wait for a wake-up or what is due, take drops, converge."""
        self.next_rescan = time.monotonic() + self.settings.rescan_seconds
        delay = 0.0
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.wakeup.wait(), min(delay, SETTLE_POLL) if self.intake.pending else delay)
            except asyncio.TimeoutError:
                pass
            self.wakeup.clear()
            if self.stopping.is_set():
                return
            try:
                if time.monotonic() >= self.next_rescan:
                    await self.intake.rescan()
                    await retention.prune(self.layout, self.store, time.time(), self.settings.finished_jobs_max_age_days,
                                          self.settings.finished_jobs_max_bytes)
                    self.next_rescan = time.monotonic() + self.settings.rescan_seconds
                await self.intake.step(time.time())
                delay = self.scheduler.run_pass(time.time())
            except Exception:  # keep the daemon alive; the log has the bug
                log.exception("a pass of the loop failed")
                delay = SETTLE_POLL

    def _rescan_now(self) -> None:
        self.next_rescan = 0.0
        self.wake()

    def _stop(self) -> None:
        self.stopping.set()
        self.wake()

    def _on_sighup(self) -> None:
        try:
            self.reload_settings("SIGHUP")
        except ClaradError:
            pass  # logged; SIGHUP has no one to answer

    def reload_settings(self, cause: str) -> dict[str, list[str]]:
        """Read the settings again (on SIGHUP, and for `clarad reload`, which `systemctl reload`
        runs); systemd sees RELOADING=1 until it is done. Refused settings raise ClaradError."""
        if self.reload is None:
            raise ClaradError("this clarad has no settings to read again")
        reloading()
        try:
            return self._apply_settings(cause)
        finally:
            notify("READY=1")

    def _apply_settings(self, cause: str) -> dict[str, list[str]]:
        """Apply the settings a running daemon can change, name the others; refused ones change nothing."""
        assert self.reload is not None
        try:
            new = self.reload()
        except ClaradError as exc:
            log.error("%s: settings refused, nothing changed: %s", cause, exc)
            raise
        old = self.settings.model_dump()
        changed = [key for key, value in new.model_dump().items() if old[key] != value]
        fixed = [key for key in changed if key in RESTART_TO_CHANGE]
        applied = [key for key in changed if key not in RESTART_TO_CHANGE]
        self.settings = new.model_copy(update={key: old[key] for key in fixed})
        self.scheduler.settings = self.scheduler.runner.settings = self.settings
        self.intake.settle_seconds = self.settings.settle_seconds
        self.ingest.limits = archives.Limits(new.archive_max_entries, new.archive_max_bytes, new.archive_max_ratio)
        self.ingest.trust = Trust(new.drop_group)
        self.models.revisions_kept = new.model_revisions_kept
        self.ingest.max_models = self.settings.max_models_per_instance
        logging.getLogger().setLevel(self.settings.log_level)
        log.info("%s: settings read again; applied: %s", cause, ", ".join(applied) or "no change")
        if fixed:
            log.warning("%s: %s take effect only after a restart", cause, ", ".join(fixed))
        self.wake()
        return {"applied": applied, "restart_needed": fixed}


async def _keepalive_forever(interval: float) -> None:
    """systemd's watchdog: proof that the loop itself still runs (slow work is in threads)."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)


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
    """Entry point of `clarad run`: log to stderr (with priorities when it is the journal), run the loop."""
    handler = logging.StreamHandler()
    handler.setFormatter(log_formatter())
    logging.basicConfig(level=settings.log_level, handlers=[handler])
    try:
        return asyncio.run(Daemon(settings, reload=reload).run())
    except ClaradError as exc:
        log.error("%s", exc)
        return 1
    except OSError as exc:  # e.g. a state directory clarad may not write
        log.error("cannot run: %s", exc)
        return 1
