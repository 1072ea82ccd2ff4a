"""Taking complete drops from the inbox: accept into the repository, pipelines or a new job, or
move to rejected/ with a one-line reason (every problem in the .reason file). Runs on the daemon's
loop; slow work goes to a thread, and so does everything whose cost grows with what was dropped
(a pipeline's parsing and checks, a job's template).

Ownership: a model or payload is moved (renamed) into place before its record is committed, so a
crash in between leaves it either still in the inbox (taken again by the next rescan) or in place.
Archives are extracted into a private staging directory first; only a validated model is installed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from clarad import archives, repository, trees
from clarad.errors import ClaradError, ModelRejected, PipelineRejected, RejectedDrop
from clarad.faults import crash_point
from clarad.inbox import Drop
from clarad.jobs import JobState, Priority
from clarad.layout import Layout
from clarad.logs import printable
from clarad.metrics import Metrics
from clarad.pipelines import Pipeline, known, resolve_for_job, validate
from clarad.repository import ModelRepository
from clarad.store import Store, new_id
from clarad.trust import Trust

log = logging.getLogger(__name__)

MAX_PIPELINE_BYTES = 1024 * 1024
NAME_MAX = 255  # bytes in one file name (ext4, xfs, tmpfs)
DEFINITIONS_KEPT = 16  # jobs' resolved definitions kept (pipelines taking payloads now)


@dataclass(frozen=True)
class NewJob:
    id: str
    pipeline: Pipeline  # its definition, resolved and checked


class Ingest:
    def __init__(self, layout: Layout, store: Store, metrics: Metrics, models: ModelRepository,
                 limits: archives.Limits, gpus: int, max_models: int, trust: Optional[Trust] = None,
                 runtime: Optional[str] = None) -> None:
        self.layout = layout
        self.store = store
        self.metrics = metrics
        self.models = models
        self.limits = limits
        self.gpus = gpus  # GPUs clarad may give operators: a pipeline asking for more is refused
        self.max_models = max_models  # models one instance may hold: one operator's must fit
        self.cpus = len(os.sched_getaffinity(0))  # and CPUs (requests.cpu)
        self.trust = trust or Trust(None)  # whose drops are taken
        self.runtime = runtime  # the container runtime's name: operators with an image are refused without one
        # (template, parameters, models, gpus, cpus, max_models, runtime) -> a job's definition and its pipeline
        self._definitions: OrderedDict[tuple[Any, ...], tuple[str, Pipeline]] = OrderedDict()
        self._definitions_lock = threading.Lock()  # used from worker threads

    async def take(self, drop: Drop) -> NewJob | None:
        """Accept or reject one complete drop; return the job it created, if any."""
        if drop.kind == "jobs" and drop.pipeline is None and drop.path.is_dir() and not drop.path.is_symlink():
            return None  # a pipeline's folder: what is dropped inside it is the drop
        try:
            self.trust.check(drop.path, self.layout.root)
            if drop.path.is_symlink():
                raise RejectedDrop(f"{drop.path.name}: a symlink; drop the file or directory itself", "unsafe")
            if drop.kind == "jobs" and drop.pipeline is None:
                raise RejectedDrop(f"{drop.path.name}: a payload goes into inbox/jobs/<pipeline>/", "no_pipeline")
            if drop.kind == "models":
                await self.add_model(drop.path, f"inbox:{drop.path.name}", consume=True)
                return None
            if drop.kind == "pipelines":
                await self.add_pipeline(drop.path)
                return None
            return await self._payload(drop)
        except RejectedDrop as exc:
            self.reject(drop, str(exc), exc.label, getattr(exc, "problems", None))
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self.reject(drop, f"cannot read {drop.path.name}: {getattr(exc, 'strerror', None) or exc}", "unreadable")
            return None

    # -- models --------------------------------------------------------------------------------

    async def add_model(self, source: Path, origin: str, consume: bool, name: Optional[str] = None,
                        model_type: Optional[str] = None) -> dict[str, Any]:
        """Validate and install a model directory or archive at ``source``.

        ``consume``: the source is the inbox's, so a directory is moved in and an accepted archive
        removed; otherwise (``clarad models add``, an upload) the source is copied and left alone.
        ``name`` and ``model_type`` (Clara's, see ``repository.clara_type``), when given, are what
        the sender says the model is: a model that is something else is refused.
        """
        began = time.monotonic()
        staging = self.layout.staging / new_id()
        staging.mkdir(mode=0o700)
        try:
            model_dir = await asyncio.to_thread(self._stage, source, staging, consume)
            info = await asyncio.to_thread(repository.inspect_model, model_dir)
            _check_claims(info, name, model_type)
            record = await self.models.install(model_dir, info, origin)
        except ModelRejected as exc:
            if not consume:
                self.metrics.drops_rejected.labels("models", exc.label).inc()
            raise
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        if consume and source.exists():
            await asyncio.to_thread(_remove, source)  # an accepted archive, or a duplicate's directory
        if record["changed"]:
            self.metrics.drops_accepted.labels("models").inc()
        self.metrics.ingest_seconds.observe(time.monotonic() - began)
        return record

    def _stage(self, source: Path, staging: Path, consume: bool) -> Path:
        """The model directory to validate: an archive extracted, the inbox's directory itself
        (validated in place, so a refused one goes to rejected/ whole), or a copy (CLI)."""
        if source.is_file() and archives.archive_kind(source.name):
            return archives.extract(source, staging, self.limits)
        if not source.is_dir() or source.is_symlink():
            raise ModelRejected(
                f"{source.name}: a model is a directory, or a .zip, .tar.gz or .tgz archive holding one", "layout"
            )
        if consume:
            return source
        try:
            trees.check_copyable(source)
        except RejectedDrop as exc:
            raise ModelRejected(str(exc), exc.label) from None
        target = staging / source.name
        try:
            shutil.copytree(source, target, symlinks=True)
        except OSError as exc:
            raise ModelRejected(f"{source.name}: cannot be copied ({copy_error(exc)})", "unreadable") from None
        return target

    # -- pipelines and payloads ------------------------------------------------------------------

    async def add_pipeline(self, path: Path) -> dict[str, Any]:
        """Validate the definition at ``path`` (off the loop) and move it into pipelines/; return its record."""
        if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
            raise PipelineRejected(f"{path.name}: a pipeline definition is a .yaml or .yml file", "layout")
        if path.stat().st_size > MAX_PIPELINE_BYTES:
            raise PipelineRejected(f"{path.name}: larger than {MAX_PIPELINE_BYTES} bytes", "too_large")
        text = await asyncio.to_thread(path.read_text, encoding="utf-8", errors="strict")
        pipeline = await self.validated(text, path.name)
        existing = self.store.pipeline(pipeline.name)
        if existing is not None and existing["name"] != pipeline.name:
            raise PipelineRejected(
                f'pipeline "{pipeline.name}": pipeline "{existing["name"]}" exists and names are case-insensitive; '
                f'name it "{existing["name"]}" to replace it', "name")
        for note in pipeline.notes:
            log.info("%s", note)
        path.rename(self.layout.pipelines / f"{pipeline.name}.yaml")
        pipeline_id = self.store.accept_pipeline(pipeline.name, text, time.time())
        self.layout.make_job_inbox(pipeline.name)
        self.metrics.drops_accepted.labels("pipelines").inc()
        log.info("pipeline %s (id %s) accepted: %d operator(s), models %s", pipeline.name, pipeline_id,
                 len(pipeline.operators), ", ".join(pipeline.model_names) or "none")
        record = self.store.pipeline(pipeline.name)
        assert record is not None
        return record

    async def validated(self, text: str, source: str) -> Pipeline:
        """The pipeline of a definition, checked against this host and repository off the loop (its
        size is the author's); raises PipelineRejected with every problem."""
        pipeline, problems = await asyncio.to_thread(checked, text, source, self.store.model_digests(), self.gpus,
                                                     self.cpus, self.max_models, self.runtime)
        if pipeline is None:
            raise PipelineRejected(problems[0], problems=problems)
        return pipeline

    async def _payload(self, drop: Drop) -> NewJob:
        assert drop.pipeline is not None
        await asyncio.to_thread(trees.check_payload, drop.path)  # a walk: never on the loop
        return await self.create_job(drop.pipeline, drop.path, drop.path.name, Priority.NORMAL, {})

    async def create_job(self, pipeline_key: str, source: Path, name: str, priority: Priority,
                         params: Optional[Mapping[str, str]] = None, held: bool = False) -> NewJob:
        """A job of the pipeline named (or with the id) ``pipeline_key`` over the payload at ``source``
        (a file or a directory, on the state directory's file system), which is moved into the job's
        directory; its template resolved with ``params`` over the pipeline's defaults (a dropped
        payload: the defaults alone). Raises RejectedDrop naming what cannot be resolved. A ``held``
        job waits to be started (Clara's create, then start); the caller queues the others."""
        params = params or {}
        record = self.store.find_pipeline(pipeline_key)
        if record is None:
            raise RejectedDrop(f"no pipeline named {pipeline_key!r}: drop its definition into inbox/pipelines first",
                               "no_pipeline")
        job_id = new_id()
        job_dir = self.layout.job_dir(job_id)
        pipeline = await asyncio.to_thread(self._job_definition, record["definition"], f"pipeline {record['name']}",
                                           params, self.store.model_digests(), job_dir)
        payload = job_dir / "input"
        whole = source.is_dir() and not source.is_symlink()
        target = payload if whole else payload / source.name
        target.parent.mkdir(exist_ok=True)
        try:
            source.rename(target)
        except OSError as exc:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise RejectedDrop(
                f"{source.name}: cannot be moved into the job ({exc.strerror or exc}); drop it as clarad's user or group",
                "unreadable",
            ) from None
        crash_point("payload-moved")
        self.store.create_job(job_id, pipeline.name, name, priority.value, [op.name for op in pipeline.operators],
                              time.time(), held)
        crash_point("drop-accepted")
        self.metrics.drops_accepted.labels("jobs").inc()
        log.info("job %s created: pipeline %s, payload %s, priority %s%s", job_id, pipeline.name, name, priority.value,
                 "".join(f", {k}={v}" for k, v in params.items()))
        return NewJob(job_id, pipeline)

    def _job_definition(self, template: str, where: str, params: Mapping[str, str], models: Collection[str],
                        job_dir: Path) -> Pipeline:
        """In a worker thread, in one go: the job's definition resolved and checked, written into its
        new directory. Raises PipelineRejected with every problem (no directory made then). The
        payloads of one pipeline resolve alike: the last few results are kept, not worked out again."""
        key = (template, tuple(sorted(params.items())), tuple(sorted(models)), self.gpus, self.cpus, self.max_models,
               self.runtime)
        with self._definitions_lock:
            known = self._definitions.get(key)
        if known is None:
            definition = resolve_for_job(template, where, params)
            pipeline, problems = checked(definition, where, models, self.gpus, self.cpus, self.max_models, self.runtime)
            if pipeline is None:
                raise PipelineRejected(problems[0], problems=problems)
            with self._definitions_lock:
                self._definitions[key] = (definition, pipeline)
                while len(self._definitions) > DEFINITIONS_KEPT:
                    self._definitions.popitem(last=False)
        else:
            definition, pipeline = known
        job_dir.mkdir(parents=True)
        (job_dir / "pipeline.yaml").write_text(definition, encoding="utf-8")
        return pipeline

    def remove_pipeline(self, pipeline_key: str, force: bool) -> dict[str, Any]:
        """Remove a pipeline: refused while jobs of it wait or run, unless ``force`` (they carry their
        own copy of the definition and run to their end). Its inbox folder goes once it is empty."""
        record = self.store.find_pipeline(pipeline_key)
        if record is None:
            raise ClaradError(f"no pipeline {pipeline_key!r}")
        name = record["name"]
        active = [job["id"] for state in (JobState.PENDING, JobState.RUNNING)
                  for job in self.store.jobs(limit=1_000_000, pipeline=name, state=state.value)]
        if active and not force:
            raise ClaradError(f"pipeline {name} has {len(active)} job(s) waiting or running ({', '.join(active[:3])}"
                              f"{'...' if len(active) > 3 else ''}): wait for them, or use --force (they still run)")
        self.store.remove_pipeline(name)
        (self.layout.pipelines / f"{name}.yaml").unlink(missing_ok=True)
        try:
            self.layout.job_inbox(name).rmdir()
        except OSError:
            log.warning("inbox/jobs/%s is not empty: what is in it will be refused (no such pipeline)", name)
        log.info("pipeline %s (id %s) removed%s", name, record["id"], f"; {len(active)} job(s) of it run on" if active else "")
        return {"name": name, "id": record["id"], "active_jobs": active}

    def reject(self, drop: Drop, reason: str, label: str, details: Optional[list[str]] = None) -> None:
        """Move the drop to rejected/ with its reason beside it (every problem, one a line, when there
        are ``details``); log the one-line reason."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.layout.rejected / rejected_name(stamp, drop.path.name)
        n = 1
        while os.path.lexists(target) or os.path.lexists(f"{target}.reason"):
            n += 1
            target = self.layout.rejected / rejected_name(f"{stamp}-{n}", drop.path.name)
        try:
            drop.path.rename(target)
        except FileNotFoundError:
            log.warning("%s vanished before it could be rejected: %s", drop.path, reason)
            return
        except OSError as exc:  # e.g. a directory owned by another user: it stays, the next rescan tries again
            log.error("rejected %s/%s: %s; it stays in the inbox because it cannot be moved to rejected/ (%s)",
                      drop.kind, drop.path.name, reason, exc.strerror or exc)
            return
        Path(f"{target}.reason").write_text("\n".join(printable(line) for line in details or [reason]) + "\n",
                                            encoding="utf-8")
        self.metrics.drops_rejected.labels(drop.kind, label).inc()
        log.warning("rejected %s/%s: %s (kept as %s)", drop.kind, drop.path.name, reason, target.name)


def _check_claims(info: repository.ModelInfo, name: Optional[str], model_type: Optional[str]) -> None:
    if name is not None and name != info.name:
        raise ModelRejected(f"{info.name}: the upload is named {name!r}, but the model in it is {info.name!r}", "name")
    actual = repository.clara_type(info.backend)
    if model_type is not None and model_type != actual:
        raise ModelRejected(f"{info.name}: said to be of type {model_type}, but its backend {info.backend} "
                            f"makes it {actual}", "config")


def checked(text: str, source: str, models: Collection[str], gpus: int, cpus: int,
            max_models: int, runtime: Optional[str] = None) -> tuple[Optional[Pipeline], list[str]]:
    """``pipelines.validate``, each problem on one line (YAML's own messages run over several), and
    names that cannot be file names refused too; the pipeline only when there is no problem (and
    remembered for ``pipelines.known``)."""
    try:
        pipeline, problems = validate(text, source, models, gpus, cpus, max_models, runtime)
    except RecursionError:  # an alias that contains itself, or nesting deeper than the checks can walk
        return None, [f"{source}: nested too deeply, or an alias (&name ... *name) that contains itself"]
    problems = [one_line(problem) for problem in problems] or (file_name_problems(pipeline) if pipeline else [])
    if pipeline is not None and not problems:
        known.remember(text, pipeline)  # the scheduler queues the job with this parse
    return (None if problems else pipeline), problems


def file_name_problems(pipeline: Pipeline) -> list[str]:
    """Names that would not fit a file name where clarad keeps them (pipelines/<name>.yaml,
    logs/<operator>.log): refused at the drop rather than failing when a job runs. Pure."""
    return [f"name {name[:24]!r}... is {len(name)} characters: {what}{suffix} must fit in {NAME_MAX} bytes"
            for name, suffix, what in [(pipeline.name, ".yaml", "pipelines/<name>"),
                                       *((op.name, ".log", "logs/<operator>") for op in pipeline.operators)]
            if len(name.encode()) + len(suffix) > NAME_MAX]


def rejected_name(prefix: str, name: str) -> str:
    """``<prefix>-<name>``, the name cut so that it and its ``.reason`` fit in one file name."""
    room = NAME_MAX - len(".reason") - len(prefix.encode()) - 1
    return f"{prefix}-{os.fsdecode(os.fsencode(name)[:room])}"


def one_line(text: str) -> str:
    return " ".join(text.split()) or "no reason given"


def copy_error(exc: OSError) -> str:
    """The first failure of a copy, in one line (shutil.Error carries a list of them)."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        source, _target, why = exc.args[0][0]
        return one_line(f"{source}: {why}")
    return one_line(exc.strerror or str(exc))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
