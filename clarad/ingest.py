"""Taking complete drops from the inbox: accept into the repository, pipelines or a new job, or
move to rejected/ with a one-line reason. Runs on the daemon's loop; slow checks go to a thread.

Ownership: a model or payload is moved (renamed) into place before its record is committed, so a
crash in between leaves it either still in the inbox (taken again by the next rescan) or in place.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from clarad import repository
from clarad.errors import PipelineRejected, RejectedDrop
from clarad.inbox import Drop
from clarad.jobs import Priority
from clarad.layout import Layout
from clarad.metrics import Metrics
from clarad.pipelines import check_pipeline, parse_pipeline
from clarad.store import Store, new_id

log = logging.getLogger(__name__)

MAX_PIPELINE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class NewJob:
    id: str
    pipeline: str


class Ingest:
    def __init__(self, layout: Layout, store: Store, metrics: Metrics) -> None:
        self.layout = layout
        self.store = store
        self.metrics = metrics

    async def take(self, drop: Drop) -> NewJob | None:
        """Accept or reject one complete drop; return the job it created, if any."""
        try:
            if drop.kind == "models":
                await self._model(drop.path)
                return None
            if drop.kind == "pipelines":
                self._pipeline(drop.path)
                return None
            return self._payload(drop)
        except RejectedDrop as exc:
            self.reject(drop, str(exc))
            return None
        except OSError as exc:
            self.reject(drop, f"cannot read {drop.path.name}: {exc.strerror or exc}")
            return None

    async def _model(self, path: Path) -> None:
        info = await asyncio.to_thread(repository.inspect_model, path)
        current = self.store.model_digests().get(info.name)
        if current == info.digest:
            await asyncio.to_thread(_remove_tree, path)
            log.info("model %s: dropped again with identical content (revision %s); drop removed", info.name, info.digest[:12])
            return
        repository.install(path, self.layout.models, self.layout.revisions, info, current)
        self.store.accept_model(info.name, info.digest, info.backend, info.versions, info.size, f"inbox:{path.name}", time.time())
        self.metrics.drops.labels("models", "accepted").inc()
        verb = "replaced" if current else "accepted"
        log.info("model %s %s: revision %s, backend %s, versions %s", info.name, verb, info.digest[:12],
                 info.backend, ",".join(map(str, info.versions)))

    def _pipeline(self, path: Path) -> None:
        if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
            raise PipelineRejected(f"{path.name}: a pipeline definition is a .yaml or .yml file")
        if path.stat().st_size > MAX_PIPELINE_BYTES:
            raise PipelineRejected(f"{path.name}: larger than {MAX_PIPELINE_BYTES} bytes")
        text = path.read_text(encoding="utf-8", errors="strict")
        pipeline = parse_pipeline(text)
        check_pipeline(pipeline, self.store.model_digests())
        for key in ("orchestrator", "pull_secrets"):
            if getattr(pipeline, key) is not None:
                log.info("pipeline %s: Kubernetes-era key %r ignored", pipeline.name, key.replace("_", "-"))
        path.rename(self.layout.pipelines / f"{pipeline.name}.yaml")
        self.store.accept_pipeline(pipeline.name, text, time.time())
        self.layout.job_inbox(pipeline.name).mkdir(parents=True, exist_ok=True)
        self.metrics.drops.labels("pipelines", "accepted").inc()
        log.info("pipeline %s accepted: %d operator(s), models %s", pipeline.name, len(pipeline.operators),
                 ", ".join(pipeline.model_names) or "none")

    def _payload(self, drop: Drop) -> NewJob:
        assert drop.pipeline is not None
        record = self.store.pipeline(drop.pipeline)
        if record is None:
            raise RejectedDrop(f"no pipeline named {drop.pipeline!r}: drop its definition into inbox/pipelines first")
        pipeline = parse_pipeline(record["definition"])
        job_id = new_id()
        job_dir = self.layout.job_dir(job_id)
        job_dir.mkdir(parents=True)
        (job_dir / "pipeline.yaml").write_text(record["definition"], encoding="utf-8")
        payload = job_dir / "input"
        if drop.path.is_dir() and not drop.path.is_symlink():
            drop.path.rename(payload)
        else:
            payload.mkdir()
            drop.path.rename(payload / drop.path.name)
        name = drop.path.name
        self.store.create_job(job_id, pipeline.name, name, Priority.NORMAL.value,
                              [op.name for op in pipeline.operators], time.time())
        self.metrics.drops.labels("jobs", "accepted").inc()
        log.info("job %s created: pipeline %s, payload %s", job_id, pipeline.name, name)
        return NewJob(job_id, pipeline.name)

    def reject(self, drop: Drop, reason: str) -> None:
        """Move the drop to rejected/ with its reason beside it; log the same line."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.layout.rejected / f"{stamp}-{drop.path.name}"
        n = 1
        while target.exists() or Path(f"{target}.reason").exists():
            n += 1
            target = self.layout.rejected / f"{stamp}-{n}-{drop.path.name}"
        try:
            drop.path.rename(target)
        except FileNotFoundError:
            log.warning("%s vanished before it could be rejected: %s", drop.path, reason)
            return
        Path(f"{target}.reason").write_text(reason + "\n", encoding="utf-8")
        self.metrics.drops.labels(drop.kind, "rejected").inc()
        log.warning("rejected %s/%s: %s (kept as %s)", drop.kind, drop.path.name, reason, target.name)


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        os.unlink(path)
