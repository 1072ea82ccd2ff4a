"""Finished jobs kept by age and by total size: the oldest are removed first.

``to_remove`` is the pure rule. ``prune`` measures each finished job's directory once (in a worker
thread: a payload can hold many files), removes what the rule says, directory first, then its
record; a crash in between leaves a record without a directory, which the next prune removes. It
runs on the daemon's loop, so it reads the total size as a running total and the oldest jobs in
batches, until one is kept: its cost is what it removes, not how many finished jobs are kept.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from clarad.layout import Layout
from clarad.store import Store

log = logging.getLogger("clarad")

DAY = 86_400.0


def to_remove(finished: Sequence[dict[str, Any]], now: float, max_age_days: float, max_bytes: int,
              total: Optional[int] = None) -> list[str]:
    """Ids of finished jobs (oldest first, each with ``stopped_at`` and ``size``) to remove: those
    older than ``max_age_days``, then the oldest until the rest fit in ``max_bytes`` (0: no limit).
    ``total``: the size of every finished job when ``finished`` are only the oldest of them."""
    removed: list[str] = []
    total = sum(job["size"] or 0 for job in finished) if total is None else total
    for job in finished:
        stopped = now if job["stopped_at"] is None else job["stopped_at"]
        too_old = max_age_days > 0 and now - stopped > max_age_days * DAY
        too_big = max_bytes > 0 and total > max_bytes
        if not (too_old or too_big):
            continue
        removed.append(job["id"])
        total -= job["size"] or 0
    return removed


def directory_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (symlinks not followed); 0 when it is gone."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total


async def prune(layout: Layout, store: Store, now: float, max_age_days: float, max_bytes: int,
                batch: int = 500) -> list[str]:
    """Remove the finished jobs the rule says; return their ids. What it reads is what it may
    remove, oldest first, and the jobs finished since the last prune: not every finished job."""
    for job_id in store.unmeasured_jobs():
        store.note_job_size(job_id, await asyncio.to_thread(directory_size, layout.job_dir(job_id)))
    total, doomed = store.finished_bytes(), []
    after: Optional[tuple[float, str]] = None
    while True:
        oldest = store.finished_jobs(after, batch)
        chosen = to_remove(oldest, now, max_age_days, max_bytes, total)
        doomed += chosen
        total -= sum(job["size"] or 0 for job in oldest if job["id"] in set(chosen))
        if len(chosen) < len(oldest) or len(oldest) < batch:
            break  # a job kept: the newer ones are kept too
        after = (oldest[-1]["stopped_at"], oldest[-1]["id"])
    for job_id in doomed:
        await asyncio.to_thread(shutil.rmtree, layout.job_dir(job_id), True)
    if doomed:
        store.forget_jobs(doomed)
        log.info("removed %d finished job(s), oldest first (finished_jobs_max_age_days, finished_jobs_max_bytes)",
                 len(doomed))
    return doomed
