"""Placement: which Triton instance a job gets. Pure: plain data in, a Decision with its reason out.

The rules (Clara's Model Repository, for one host):

- a job that asks for no model needs no instance;
- an instance serves one job at a time (a lease), however many operators that job has;
- among idle instances, take the one that already holds most of the wanted models at the revision
  the repository has now; then most of them at an older revision (reloading in a running server
  beats starting one); then the one holding fewest other models; then the lowest id;
- a model already loaded at the current revision is never loaded again;
- if the best idle instance holds none of the wanted models (at any revision) but holds others, and
  a slot is free, start a new instance there instead, so the idle one keeps its warm models for the
  jobs that want them;
- an instance never holds more than ``max_models`` models: unwanted ones are unloaded, least recently
  used first, to make room;
- with no idle instance and no free slot the job waits; it never fails for being busy. A job asking
  for more models than one instance may hold can never be placed and is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Optional


class Action(str, Enum):
    NONE = "none"  # the job needs no instance
    REUSE = "reuse"  # lease an idle instance, load what it lacks
    START = "start"  # start a new instance in a free slot, load everything
    WAIT = "wait"  # nothing can be given now
    REFUSE = "refuse"  # can never be satisfied


class Reuse(str, Enum):
    """How much of the job's models an instance already had: the reuse metric's label."""

    HIT = "hit"
    PARTIAL = "partial"
    MISS = "miss"


@dataclass(frozen=True)
class InstanceView:
    id: str
    slot: str
    idle: bool
    loaded: Mapping[str, str]  # model name -> digest of the revision loaded
    last_used: Mapping[str, float] = field(default_factory=dict)  # model name -> last lease time


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    instance: Optional[str] = None  # REUSE: the instance leased
    slot: Optional[str] = None  # START: where to start it
    load: tuple[str, ...] = ()
    unload: tuple[str, ...] = ()
    reuse: Optional[Reuse] = None


def _current(view: InstanceView, name: str, digests: Mapping[str, str]) -> bool:
    return name in digests and view.loaded.get(name) == digests[name]


def decide(
    wanted: Sequence[str],
    digests: Mapping[str, str],
    instances: Sequence[InstanceView],
    free_slots: Sequence[str],
    max_models: int,
) -> Decision:
    """Decide where a job that wants ``wanted`` models runs now.

    ``digests`` is the repository's current revision of each model; a model loaded at another
    revision counts as not loaded (it is reloaded).
    """
    want = list(dict.fromkeys(wanted))
    if not want:
        return Decision(Action.NONE, "the job's operators ask for no model")
    if len(want) > max_models:
        return Decision(
            Action.REFUSE,
            f"the job asks for {len(want)} models; one instance may hold at most {max_models} "
            "(max_models_per_instance)",
        )
    idle = [view for view in instances if view.idle]

    def score(view: InstanceView) -> tuple[int, int, int, str]:
        held = sum(_current(view, name, digests) for name in want)
        stale = sum(name in view.loaded for name in want) - held
        others = sum(name not in want for name in view.loaded)
        return (-held, -stale, others, view.id)

    best = min(idle, key=score, default=None)
    held, stale, others = (-score(best)[0], -score(best)[1], score(best)[2]) if best else (0, 0, 0)
    if best is None or (held == 0 and stale == 0 and others > 0 and free_slots):
        if not free_slots:
            busy = len(instances)
            return Decision(Action.WAIT, f"all {busy} instance(s) are leased and no slot is free")
        why = "no instance is idle" if best is None else "no idle instance holds any wanted model"
        return Decision(
            Action.START, f"{why}: starting one in slot {free_slots[0]}", slot=free_slots[0],
            load=tuple(want), reuse=Reuse.MISS,
        )
    load = tuple(name for name in want if not _current(best, name, digests))
    room = max_models - len(want)
    extra = sorted((name for name in best.loaded if name not in want), key=lambda n: (best.last_used.get(n, 0.0), n))
    unload = tuple(extra[: max(0, len(extra) - room)])
    kind = Reuse.HIT if not load else (Reuse.PARTIAL if held else Reuse.MISS)
    reason = f"instance {best.id} holds {held} of {len(want)} wanted model(s)"
    if load:
        reason += f"; loading {', '.join(load)}"
    if unload:
        reason += f"; unloading {', '.join(unload)} to stay within {max_models}"
    return Decision(Action.REUSE, reason, instance=best.id, load=load, unload=unload, reuse=kind)
