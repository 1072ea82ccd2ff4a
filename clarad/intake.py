"""Drops between the inbox and ingest: which are known, which are complete, which may be taken now.

Owned by the daemon's loop. The watchdog thread's events arrive through ``on_event`` (posted to the
loop); ``rescan`` finds what events missed. Each ``step(now)`` observes the drops not yet taken (a
tree walk, in a worker thread), applies the pure settle rule (``inbox.settle_step``) and takes what
is complete: models in the background (extraction and digests take long), then pipelines and
payloads, which wait while a model drop is being taken (a pipeline may need that model).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from clarad import inbox
from clarad.ingest import Ingest
from clarad.pipelines import Pipeline

log = logging.getLogger("clarad")

ORDER = {kind: n for n, kind in enumerate(inbox.KINDS)}
LOOK_AGAIN = 10  # a tree being written is walked again only after ten times what its last walk took


class Intake:
    def __init__(self, inbox_dir: Path, ingest: Ingest, settle_seconds: float,
                 on_job: Callable[[str, Pipeline], None],
                 wake: Callable[[], None]) -> None:
        self.inbox_dir = inbox_dir
        self.ingest = ingest
        self.settle_seconds = settle_seconds
        self.on_job = on_job  # a payload became this job (its id, its checked definition)
        self.wake = wake
        self.drops: dict[Path, inbox.Drop] = {}
        self.complete: set[Path] = set()  # known to be whole: renamed in, or ready and deferred
        self.tracked: dict[Path, inbox.Tracked] = {}
        self.ingesting: dict[Path, asyncio.Task[None]] = {}  # model drops being taken in the background
        self.next_look: dict[Path, float] = {}  # a drop being written is not walked again before this

    @property
    def pending(self) -> bool:
        """Drops are being watched for settling: the loop should look again soon."""
        return bool(self.drops)

    def on_event(self, drop: inbox.Drop, renamed: bool) -> None:
        self.drops.setdefault(drop.path, drop)
        if renamed:
            self.complete.add(drop.path)
        self.wake()

    async def rescan(self) -> None:
        for drop in await asyncio.to_thread(inbox.scan, self.inbox_dir):
            self.drops.setdefault(drop.path, drop)

    async def step(self, now: float) -> None:
        waiting = [path for path in self.drops if path not in self.ingesting and self.next_look.get(path, 0.0) <= now]
        looks = await asyncio.to_thread(_observe, waiting, set(self.complete)) if waiting else {}
        observed = {path: seen for path, (seen, took) in looks.items()}
        self.next_look.update({path: now + LOOK_AGAIN * took for path, (seen, took) in looks.items()})
        ready, tracked = inbox.settle_step(self.tracked, observed, self.complete, now, self.settle_seconds)
        # drops not looked at this time (their next look is later) keep their settle clock
        self.tracked = {**{p: t for p, t in self.tracked.items() if p not in observed}, **tracked}
        for path, seen in observed.items():
            if seen is None:
                self.drops.pop(path, None)
        for path in sorted(ready, key=lambda p: (ORDER[self.drops[p].kind], str(p))):
            drop = self.drops[path]
            if drop.kind == "models":
                self.complete.discard(path)
                self.ingesting[path] = asyncio.create_task(self._take(drop))
            elif self.ingesting:  # a pipeline may need a model still being taken: a later step
                self.complete.add(path)
            else:
                self.complete.discard(path)
                await self._take(drop)
        self.complete &= set(self.drops)
        self.next_look = {path: when for path, when in self.next_look.items() if path in self.drops}
        self.tracked = {path: seen for path, seen in self.tracked.items() if path in self.drops}

    async def _take(self, drop: inbox.Drop) -> None:
        try:
            job = await self.ingest.take(drop)
        except Exception as exc:  # a bug must cost one drop (kept in rejected/), not the inbox
            log.exception("taking %s failed", drop.path)
            job = None
            try:
                self.ingest.reject(drop, f"internal error while taking it: {exc}", "internal")
            except Exception:
                log.exception("rejecting %s failed too; it stays in the inbox", drop.path)
        finally:
            self.drops.pop(drop.path, None)
            self.ingesting.pop(drop.path, None)
        if job is not None:
            self.on_job(job.id, job.pipeline)
        self.wake()

    async def stop(self) -> None:
        tasks = list(self.ingesting.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _observe(paths: list[Path], complete: set[Path]) -> dict[Path, tuple[Optional[inbox.Observation], float]]:
    """In a worker thread: each drop's observation and the seconds it took. A drop known to be
    whole needs only its top looked at (a payload of 100,000 files is not walked for nothing)."""
    looks = {}
    for path in paths:
        began = time.monotonic()
        seen = inbox.observe(path, deep=path not in complete)
        looks[path] = (seen, time.monotonic() - began)
    return looks
