"""What the daemon answers on its control socket: one method per ``Command``, on the loop.

Handlers ask the owners (the store, the model repository, the scheduler, the pool) and return plain
data; a refusal is a ClaradError whose message the CLI prints as it is.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clarad import __version__, trees
from clarad.control.protocol import Command
from clarad.errors import ClaradError, ModelRejected, PipelineRejected, RejectedDrop
from clarad.ingest import MAX_PIPELINE_BYTES, copy_error
from clarad.jobs import JobState, Priority
from clarad.pipelines import describe, parse_pipeline, validate
from clarad.repository import clara_type, parse_clara_type

if TYPE_CHECKING:
    from clarad.daemon import Daemon


MAX_LIST = 1_000_000  # jobs one list may ask for


class Handlers:
    def __init__(self, daemon: "Daemon") -> None:
        self.d = daemon

    async def __call__(self, command: str, args: dict[str, Any]) -> Any:
        try:
            known = Command(command)
        except ValueError:
            raise ClaradError(f"unknown command {command!r}; known: {', '.join(c.value for c in Command)}") from None
        result = getattr(self, known.handler)(args)
        answer = await result if asyncio.iscoroutine(result) else result
        self.d.wake()  # whatever it changed, the next pass sees it
        return answer

    # -- status and models -------------------------------------------------------------------

    def status(self, args: dict[str, Any]) -> dict[str, Any]:
        d = self.d
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_seconds": round(time.time() - d.started_at, 1),
            "state_dir": str(d.layout.root),
            "gpus": [gpu.__dict__ for gpu in d.gpus],
            "slots": list(d.pool.slots),
            "triton": str(d.launcher.spec.binary) if d.launcher else d.launch_error,
            "instances": [instance.describe() for instance in d.pool.instances.values()],
            "queue": d.scheduler.waiting(time.time()),
            "jobs": d.store.job_counts(),
            "models": len(d.store.models()),
            "pipelines": len(d.store.pipelines()),
            "settings": d.settings.model_dump(mode="json"),
        }

    def reload(self, args: dict[str, Any]) -> dict[str, list[str]]:
        return self.d.reload_settings("reload")

    def models_list(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**model, "type": clara_type(model["backend"])} for model in self.d.store.models()]

    def models_show(self, args: dict[str, Any]) -> dict[str, Any]:
        model = self.d.models.show(str(args["model"]))
        model["type"] = clara_type(model["backend"])
        model["metadata"] = self.d.store.metadata("model", model["id"])
        model["costs"] = [row for row in self.d.store.load_costs() if row["name"] == model["name"]]
        model["instances"] = [
            {"id": i.id, "state": i.state.value, "current": i.loaded[model["name"]] == model["digest"]}
            for i in self.d.pool.instances.values() if model["name"] in i.loaded
        ]
        return model

    async def models_add(self, args: dict[str, Any]) -> dict[str, Any]:
        path = Path(str(args["path"]))
        if not path.is_absolute():
            raise ClaradError(f"{path}: give an absolute path")
        if not path.exists():
            raise ClaradError(f"{path}: no such file or directory")
        try:
            kind = parse_clara_type(str(args["type"])) if args.get("type") else None
            return await self.d.ingest.add_model(path, f"cli:{path}", consume=False, model_type=kind)
        except ModelRejected as exc:
            raise ClaradError(f"refused: {exc}") from None

    async def models_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.d.models.remove(str(args["model"]), bool(args.get("force")))

    def models_rollback(self, args: dict[str, Any]) -> dict[str, Any]:
        revision = args.get("revision")
        return self.d.models.rollback(str(args["model"]), str(revision) if revision else None)

    # -- pipelines and jobs ------------------------------------------------------------------

    def pipelines_list(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        return self.d.store.pipelines()

    async def pipelines_show(self, args: dict[str, Any]) -> dict[str, Any]:
        record = self.d.store.find_pipeline(str(args["pipeline"]))
        if record is None:
            raise ClaradError(f"no pipeline {args['pipeline']!r}")
        pipeline = await asyncio.to_thread(parse_pipeline, record["definition"], f"pipeline {record['name']}")
        counts: dict[str, int] = {}
        for job in self.d.store.jobs(limit=1_000_000, pipeline=record["name"]):
            key = job["status"] or job["state"]
            counts[key] = counts.get(key, 0) + 1
        return {**record, **describe(pipeline), "jobs": counts}

    def pipelines_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        return self.d.ingest.remove_pipeline(str(args["pipeline"]), bool(args.get("force")))

    async def pipelines_validate(self, args: dict[str, Any]) -> dict[str, Any]:
        """Every problem of a definition the CLI read (it is not installed)."""
        source = str(args.get("source") or "pipeline")
        if len(str(args["text"]).encode()) > MAX_PIPELINE_BYTES:
            return {"source": source, "problems": [f"{source}: larger than {MAX_PIPELINE_BYTES} bytes"], "notes": []}
        try:
            pipeline, problems = await asyncio.to_thread(
                validate, str(args["text"]), source, self.d.store.model_digests(), self.d.ingest.gpus,
                self.d.ingest.cpus, self.d.ingest.max_models, self.d.ingest.runtime)
        except PipelineRejected as exc:  # not YAML at all
            return {"source": source, "problems": exc.problems, "notes": []}
        return {"source": source, "problems": problems, "notes": pipeline.notes if pipeline else []}

    def jobs_list(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        limit = args.get("limit", 100)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
            raise ClaradError(f"limit {limit!r}: a whole number from 1 to {MAX_LIST}")
        pipeline = args.get("pipeline") or None
        if pipeline is not None and not isinstance(pipeline, str):
            raise ClaradError(f"pipeline {pipeline!r}: give a pipeline's name or id")
        if pipeline:
            record = self.d.store.find_pipeline(pipeline)
            pipeline = record["name"] if record else pipeline  # a removed pipeline's jobs, by its name
        state, status = (str(args[k]).upper() if args.get(k) else None for k in ("state", "status"))
        return self.d.store.jobs(limit, pipeline=pipeline, state=state, status=status)

    def jobs_show(self, args: dict[str, Any]) -> dict[str, Any]:
        job = self.d.store.job(str(args["id"]))
        if job is None:
            raise ClaradError(f"no job {args['id']}")
        job["directory"] = str(self.d.layout.job_dir(job["id"]))
        return job

    def jobs_cancel(self, args: dict[str, Any]) -> dict[str, Any]:
        job = self.jobs_show(args)
        if job["state"] == JobState.STOPPED.value:
            raise ClaradError(f"job {job['id']} already stopped ({job['status']})")
        self.d.scheduler.cancel(job["id"])
        return {"id": job["id"], "canceling": True}

    async def jobs_create(self, args: dict[str, Any]) -> dict[str, Any]:
        path = Path(str(args["path"]))
        if not path.is_absolute() or not os.path.lexists(path):
            raise ClaradError(f"{path}: give the absolute path of an existing file or directory")
        staging_area = self.d.layout.staging.resolve()
        if staging_area.is_relative_to(path.resolve()) or path.resolve().is_relative_to(staging_area):
            raise ClaradError(f"{path}: overlaps clarad's staging directory {staging_area} (a copy would contain "
                              "itself); give a payload outside clarad's state directory")
        try:
            priority = Priority.parse(str(args.get("priority") or "normal"))
        except ValueError:
            raise ClaradError(f"priority {args.get('priority')!r}: one of low, normal, high, immediate") from None
        staging = self.d.layout.staging / f"payload-{time.time_ns()}"
        staging.mkdir(mode=0o700)
        try:
            await asyncio.to_thread(trees.check_payload, path)  # no device read forever, no links followed
            copy = staging / path.name
            await asyncio.to_thread(_copy_payload, path, copy)
            params = {str(k): str(v) for k, v in (args.get("params") or {}).items()}
            job = await self.d.ingest.create_job(str(args["pipeline"]), copy, str(args.get("name") or path.name),
                                                 priority, params)
        except RejectedDrop as exc:
            raise ClaradError("; ".join(getattr(exc, "problems", None) or [str(exc)])) from None
        except OSError as exc:
            raise ClaradError(f"{path}: {copy_error(exc)}") from None
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        self.d.scheduler.enqueue(job.id, job.pipeline)
        return {"id": job.id, "priority": priority.value}


def _copy_payload(source: Path, target: Path) -> None:
    """Copy what ``trees.check_payload`` accepted: regular files and directories only."""
    if source.is_dir() and not source.is_symlink():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target, follow_symlinks=False)
