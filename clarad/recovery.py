"""Start-up reconciliation: make the database and the state directory agree after a crash.

Accepting a drop is "move into place, then commit". A crash between the two leaves:
- a model install or rollback half done: completed or undone from its journal
  (``ModelRepository.recover``);
- a payload moved into ``jobs/<id>/`` without its job: moved to rejected/ with the reason;
- a pipeline definition in ``pipelines/`` the database does not hold: accepted again from the file.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

from clarad.errors import ClaradError
from clarad.layout import Layout
from clarad.pipelines import check_pipeline, parse_pipeline
from clarad.repository import ModelRepository
from clarad.store import Store

log = logging.getLogger(__name__)


def reconcile(layout: Layout, store: Store, models: ModelRepository, stamp: str, gpus: int,
              runtime: Optional[str] = None) -> None:
    models.recover()
    job_dirs = sorted(layout.jobs.iterdir())
    known_jobs = store.job_ids() if job_dirs else set()
    for job_dir in job_dirs:
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
                check_pipeline(pipeline, store.model_digests(), gpus, runtime=runtime)
            except ClaradError as exc:
                log.error("pipelines/%s does not match the database and is not valid: %s", definition.name, exc)
                continue
            store.accept_pipeline(pipeline.name, text, time.time())
            layout.make_job_inbox(pipeline.name)
            log.warning("pipeline %s recovered from pipelines/%s", pipeline.name, definition.name)
