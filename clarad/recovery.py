"""Start-up reconciliation: make the database and the state directory agree after a crash.

Accepting a drop is "move into place, then commit". A crash between the two leaves:
- a model install or rollback half done: each writes ``revisions/.pending-<name>.json`` (the new
  and the previous digest) before its renames and deletes it after the commit, so the next start
  knows which model to look at, without hashing every model;
- a payload moved into ``jobs/<id>/`` without its job: moved to rejected/ with the reason;
- a pipeline definition in ``pipelines/`` the database does not hold: accepted again from the file.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Optional

from clarad import repository
from clarad.errors import ClaradError
from clarad.layout import Layout
from clarad.pipelines import check_pipeline, parse_pipeline
from clarad.store import Store

log = logging.getLogger(__name__)


def pending_file(layout: Layout, name: str) -> Path:
    return layout.revisions / f".pending-{name}.json"


def begin_install(layout: Layout, name: str, digest: str, previous: Optional[str]) -> None:
    pending_file(layout, name).write_text(json.dumps({"name": name, "digest": digest, "previous": previous}))


def end_install(layout: Layout, name: str) -> None:
    pending_file(layout, name).unlink(missing_ok=True)


def reconcile(layout: Layout, store: Store, stamp: str, gpus: int) -> None:
    for pending in sorted(layout.revisions.glob(".pending-*.json")):
        _finish_install(layout, store, json.loads(pending.read_text()))
        pending.unlink()
    known_jobs = {job["id"] for job in store.jobs(limit=1_000_000)}
    for job_dir in sorted(layout.jobs.iterdir()):
        if job_dir.name not in known_jobs:
            target = layout.rejected / f"{stamp}-{job_dir.name}"
            job_dir.rename(target)
            Path(f"{target}.reason").write_text("clarad stopped while taking this payload; drop its input again\n")
            log.warning("payload of an unrecorded job moved to rejected/%s", target.name)
    for definition in sorted(layout.pipelines.glob("*.yaml")):
        record = store.pipeline(definition.stem)
        text = definition.read_text(encoding="utf-8")
        if record is None or record["definition"] != text:
            try:
                pipeline = parse_pipeline(text)
                check_pipeline(pipeline, store.model_digests(), gpus)
            except ClaradError as exc:
                log.error("pipelines/%s does not match the database and is not valid: %s", definition.name, exc)
                continue
            store.accept_pipeline(pipeline.name, text, time.time())
            layout.make_job_inbox(pipeline.name)
            log.warning("pipeline %s recovered from pipelines/%s", pipeline.name, definition.name)


def _finish_install(layout: Layout, store: Store, pending: dict[str, Optional[str]]) -> None:
    name, digest, previous = str(pending["name"]), str(pending["digest"]), pending["previous"]
    live = layout.models / name
    recorded = store.model_digests().get(name)
    if not live.exists() and previous is not None and (layout.revisions / name / previous).is_dir():
        (layout.revisions / name / previous).rename(live)  # the new one never arrived: put back the old
        log.warning("model %s: interrupted install undone; revision %s is live again", name, previous[:12])
    elif live.exists() and recorded != digest:
        info = repository.inspect_model(live)
        if info.digest != digest:  # not what was being installed: leave the record as it is
            log.error("model %s: live files (revision %s) match neither the record nor the interrupted install",
                      name, info.digest[:12])
            return
        store.accept_model(name, info.digest, info.backend, info.versions, info.size, "recovered", time.time())
        log.warning("model %s: interrupted install completed (revision %s)", name, info.digest[:12])
