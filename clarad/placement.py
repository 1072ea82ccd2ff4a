"""Placement: which Triton instance a job gets. Pure: plain data in, a Decision with its reason out.

The rules (Clara's Model Repository, for one host, placed by what loads cost):

- a job that asks for no model needs no instance;
- an instance serves one job at a time (a lease), however many operators that job has;
- among idle instances and free slots, take the one where the job's models are ready soonest: the
  measured load time of each model it lacks at the repository's current revision (a model loaded
  at another revision is reloaded), plus an instance start for a slot; then reusing before starting,
  most wanted models held, most held at an older revision, fewest other models, lowest id. Without
  measured costs every load counts alike, which is Clara's rule: the idle instance holding most;
- a model already loaded at the current revision is never loaded again;
- an idle instance holding none of the wanted models but others keeps them for the jobs that want
  them when a slot is free: a new instance starts there instead;
- an instance never holds more than ``max_models`` models, nor more than its device's memory can
  take (``World.memory``): unwanted models are unloaded to make room, those least worth keeping
  first, then least recently used. A model's worth is its reload time weighed by how likely the
  next job wants it: surely if a waiting job does, else the share of recent jobs that wanted it
  (``World.demand``; with Zipf-like popularity this beats recency alone). An unload adds that worth
  to the option's cost, so a job goes where its loads cost least, now and expected next;
- with nothing able to take the job now it waits; it never fails for being busy. A job asking for
  more models than one instance may hold, or for more memory than any device ever has, is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import NamedTuple, Optional


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


class Place(NamedTuple):
    """Where an instance loads models: its device kind (what costs are measured per) and its memory
    domain (one GPU by UUID, or "cpu" for host memory, shared by every CPU instance). A tuple: a
    pass puts every instance's place in a set."""

    device: str = "cpu"
    domain: str = "cpu"


@dataclass(frozen=True)
class InstanceView:
    id: str
    slot: str
    idle: bool
    loaded: Mapping[str, str]  # model name -> digest of the revision loaded
    last_used: Mapping[str, float] = field(default_factory=dict)  # model name -> last lease time
    place: Place = Place()


@dataclass(frozen=True)
class LoadCost:
    seconds: float
    memory: int  # bytes


@dataclass(frozen=True)
class Memory:
    free: int  # bytes clarad may still fill on the domain now
    total: int  # bytes clarad may ever fill there


UNKNOWN = LoadCost(1.0, 0)  # without costs every load counts alike and memory is not limited


@dataclass(frozen=True)
class World:
    """What decide needs to know besides the instances: costs, memory, the queue. The defaults mean
    "nothing known": each load counts alike and memory is unlimited (Clara's rule by count)."""

    costs: Mapping[tuple[str, str], LoadCost] = field(default_factory=dict)  # (model, device) -> cost
    memory: Mapping[str, Memory] = field(default_factory=dict)  # domain -> memory; absent: unlimited
    slots: Mapping[str, Place] = field(default_factory=dict)  # free slot -> place; absent: the CPU
    start_seconds: float = 1.0  # an instance start, before its loads
    queued: Mapping[str, int] = field(default_factory=dict)  # model -> other waiting jobs that want it
    demand: Mapping[str, float] = field(default_factory=dict)  # model -> share of recent jobs that wanted it
    # model -> how many jobs from now the next job wanting it comes; absent: none does. Known only
    # to the "oracle" baseline of benchmarks, which is given the whole trace.
    next_use: Mapping[str, int] = field(default_factory=dict)

    def cost(self, name: str, device: str) -> LoadCost:
        return self.costs.get((name, device), UNKNOWN)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    instance: Optional[str] = None  # REUSE: the instance leased
    slot: Optional[str] = None  # START: where to start it
    load: tuple[str, ...] = ()
    unload: tuple[str, ...] = ()
    reuse: Optional[Reuse] = None
    memory: int = 0  # bytes the loads are expected to add on the instance's memory domain
    single_use: bool = False  # the instance stops when the job ends (the "fresh" baseline)


def _current(view: InstanceView, name: str, digests: Mapping[str, str]) -> bool:
    return name in digests and view.loaded.get(name) == digests[name]


@dataclass(frozen=True)
class _Option:
    score: tuple[float, int, int, int, int, str]
    decision: Decision


def decide(
    wanted: Sequence[str],
    digests: Mapping[str, str],
    instances: Sequence[InstanceView],
    free_slots: Sequence[str],
    max_models: int,
    world: World = World(),
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
    starts = [o for o in (_start(want, slot, world) for slot in free_slots) if o is not None]
    fitting = [o for o in (_reuse(want, v, digests, max_models, world) for v in instances if v.idle) if o is not None]
    reuses = fitting
    if starts:  # Clara: an idle instance holding only other models keeps them for the jobs that want them
        reuses = [o for o in fitting if o.decision.reuse is not Reuse.MISS or _overlaps(o, instances, want)]
    best = min(starts + reuses, key=lambda option: option.score, default=None)
    if best is None:
        return _no_option(want, instances, free_slots, world)
    if best.decision.action is Action.REUSE:
        return best.decision
    if not any(view.idle for view in instances):
        why = "no instance is idle"
    elif not fitting:
        why = "no idle instance has the memory the job's models need"
    elif not reuses:
        why = "no idle instance holds any wanted model"
    else:
        sooner = min(reuses, key=lambda option: option.score)
        why = f"a new instance is ready sooner ({best.score[0]:.1f} s) than instance {sooner.decision.instance} " \
              f"({sooner.score[0]:.1f} s)"
    return replace(best.decision, reason=f"{why}: {best.decision.reason}")


def _overlaps(option: _Option, instances: Sequence[InstanceView], want: list[str]) -> bool:
    view = next(v for v in instances if v.id == option.decision.instance)
    return any(name in view.loaded for name in want) or not view.loaded


def _start(want: list[str], slot: str, world: World) -> Optional[_Option]:
    place = world.slots.get(slot, Place())
    costs = [world.cost(name, place.device) for name in want]
    need = sum(cost.memory for cost in costs)
    room = world.memory.get(place.domain)
    if room is not None and need > room.free:
        return None
    seconds = world.start_seconds + sum(cost.seconds for cost in costs)
    decision = Decision(Action.START, f"starting one in slot {slot}", slot=slot, load=tuple(want), reuse=Reuse.MISS,
                        memory=need)
    return _Option((seconds, 1, 0, 0, 0, slot), decision)


def _reuse(want: list[str], view: InstanceView, digests: Mapping[str, str], max_models: int,
           world: World) -> Optional[_Option]:
    device = view.place.device
    held = sum(_current(view, name, digests) for name in want)
    stale = sum(name in view.loaded for name in want) - held
    load = tuple(name for name in want if not _current(view, name, digests))
    need = sum(world.cost(name, device).memory for name in load if name not in view.loaded)
    def keep(name: str) -> float:
        """What unloading ``name`` is expected to cost later: its reload, weighed by how likely the
        next job wants it (surely if a waiting job does; else as often as recent jobs did)."""
        likely = 1.0 if world.queued.get(name, 0) else world.demand.get(name, 0.0)
        return world.cost(name, device).seconds * likely

    # Unloading order: what is least worth keeping first, then least recently used, then by name.
    extra = sorted((name for name in view.loaded if name not in want),
                   key=lambda n: (keep(n), view.last_used.get(n, 0.0), n))
    unload = extra[: max(0, len(extra) - (max_models - len(want)))]
    room = world.memory.get(view.place.domain)
    if room is not None:
        freed = sum(world.cost(name, device).memory for name in unload)
        for name in extra[len(unload):]:
            if need <= room.free + freed:
                break
            unload.append(name)
            freed += world.cost(name, device).memory
        if need > room.free + freed:
            return None
    seconds = sum(world.cost(name, device).seconds for name in load)
    penalty = sum(keep(name) for name in unload)
    others = len(view.loaded) - held - stale
    kind = Reuse.HIT if not load else (Reuse.PARTIAL if held else Reuse.MISS)
    reason = f"instance {view.id} holds {held} of {len(want)} wanted model(s)"
    if load:
        reason += f"; loading {', '.join(load)}"
    if unload:
        reason += f"; unloading {', '.join(unload)} to stay within {max_models}"
        if room is not None and len(unload) > max(0, len(extra) - (max_models - len(want))):
            reason += " models and the device's memory"
    decision = Decision(Action.REUSE, reason, instance=view.id, load=load, unload=tuple(unload), reuse=kind,
                        memory=need)
    return _Option((seconds + penalty, 0, -held, -stale, others, view.id), decision)


def _no_option(want: list[str], instances: Sequence[InstanceView], free_slots: Sequence[str], world: World) -> Decision:
    """Nothing can take the job now: wait, or refuse what can never fit."""
    places = {world.slots.get(slot, Place()) for slot in free_slots} | {v.place for v in instances}
    needs = {place: sum(world.cost(name, place.device).memory for name in want) for place in places}
    rooms = {place: world.memory.get(place.domain) for place in places}
    if places and all(room is not None and needs[place] > room.total for place, room in rooms.items()):
        most = max(room.total for room in rooms.values() if room is not None)
        return Decision(Action.REFUSE, f"the job's models need {_mib(min(needs.values()))} of device memory; "
                                       f"at most {_mib(most)} is ever available on one device")
    if any(view.idle for view in instances) or free_slots:
        return Decision(Action.WAIT, f"no idle instance or free slot has the memory the job's models need "
                                     f"({_mib(min(needs.values(), default=0))})")
    return Decision(Action.WAIT, f"all {len(instances)} instance(s) are leased and no slot is free")


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


def operator_groups(operators: Sequence[Sequence[str]], max_models: int) -> list[tuple[str, ...]]:
    """The model sets a job's instances serve: every operator's own models in one of them (Clara:
    all models of one operator on one instance), one set for the whole job where they fit one
    instance ("where possible" its operators share one), else as few as first-fit decreasing finds,
    each within ``max_models``. An operator asking for more than ``max_models`` alone keeps its set
    (placement refuses it)."""
    wanted = [tuple(dict.fromkeys(models)) for models in operators if models]
    union = tuple(dict.fromkeys(name for models in wanted for name in models))
    if len(union) <= max_models:
        return [union] if union else []
    groups: list[list[str]] = []
    for models in sorted(wanted, key=len, reverse=True):
        group = next((g for g in groups if len(set(g) | set(models)) <= max_models), None)
        if group is None:
            groups.append(list(models))
        else:
            group.extend(name for name in models if name not in group)
    return [tuple(group) for group in groups]


# -- baselines, for benchmarks (placement_policy): what a user would do without clarad -------------


def decide_fresh(wanted: Sequence[str], digests: Mapping[str, str], instances: Sequence[InstanceView],
                 free_slots: Sequence[str], max_models: int, world: World = World()) -> Decision:
    """A fresh Triton for every job, loaded with its models and stopped after it."""
    want = list(dict.fromkeys(wanted))
    if not want:
        return Decision(Action.NONE, "the job's operators ask for no model")
    if not free_slots:
        return Decision(Action.WAIT, f"all {len(instances)} instance(s) are in use and no slot is free")
    return Decision(Action.START, f"a fresh instance per job: starting one in slot {free_slots[0]}",
                    slot=free_slots[0], load=tuple(want), reuse=Reuse.MISS, single_use=True)


def decide_any_idle(wanted: Sequence[str], digests: Mapping[str, str], instances: Sequence[InstanceView],
                    free_slots: Sequence[str], max_models: int, world: World = World()) -> Decision:
    """The first idle instance, whatever it holds, made to hold exactly the job's models (those it
    already has stay, every other is unloaded); a new one only when none is idle."""
    return _first_idle(wanted, digests, instances, free_slots, max_models, keep=False)


def decide_lru(wanted: Sequence[str], digests: Mapping[str, str], instances: Sequence[InstanceView],
               free_slots: Sequence[str], max_models: int, world: World = World()) -> Decision:
    """The first idle instance, whatever it holds, as a per-instance LRU cache: it loads what it
    lacks and unloads its least recently used other models beyond ``max_models``; a new one only
    when none is idle."""
    return _first_idle(wanted, digests, instances, free_slots, max_models, keep=True)


def _first_idle(wanted: Sequence[str], digests: Mapping[str, str], instances: Sequence[InstanceView],
                free_slots: Sequence[str], max_models: int, keep: bool) -> Decision:
    want = list(dict.fromkeys(wanted))
    idle = sorted((view for view in instances if view.idle), key=lambda view: view.id)
    if not want:
        return Decision(Action.NONE, "the job's operators ask for no model")
    if not idle:
        return replace(decide_fresh(want, digests, instances, free_slots, max_models), single_use=False,
                       reason=f"no instance is idle: starting one in slot {free_slots[0]}" if free_slots else
                       f"all {len(instances)} instance(s) are in use and no slot is free")
    view = idle[0]
    load = tuple(name for name in want if not _current(view, name, digests))
    extra = sorted((n for n in view.loaded if n not in want), key=lambda n: (view.last_used.get(n, 0.0), n))
    unload = tuple(extra[: max(0, len(extra) - (max_models - len(want)))] if keep else extra)
    held = len(want) - len(load)
    kind = Reuse.HIT if not load else (Reuse.PARTIAL if held else Reuse.MISS)
    return Decision(Action.REUSE, f"any idle instance: {view.id}", instance=view.id, load=load, unload=unload,
                    reuse=kind)


def decide_oracle(wanted: Sequence[str], digests: Mapping[str, str], instances: Sequence[InstanceView],
                  free_slots: Sequence[str], max_models: int, world: World = World()) -> Decision:
    """Placement that knows the jobs to come (``world.next_use``): among idle instances and free
    slots, the fewest loads now plus wanted-again models evicted that no other instance holds;
    evicting, as Belady, the models whose next use is furthest; then the option whose nearest
    evicted next use is furthest. Memory is not modelled (``max_models`` bounds each instance)."""
    want = list(dict.fromkeys(wanted))
    if not want:
        return Decision(Action.NONE, "the job's operators ask for no model")
    never = 1 << 62

    def upcoming(name: str) -> int:
        return world.next_use.get(name, never)

    options: list[tuple[tuple[int, tuple[int, ...], int, str], Decision]] = []
    for view in instances:
        if not view.idle:
            continue
        load = tuple(name for name in want if not _current(view, name, digests))
        extra = sorted((n for n in view.loaded if n not in want), key=lambda n: (-upcoming(n), n))
        unload = tuple(extra[: max(0, len(extra) - (max_models - len(want)))])
        elsewhere = {n for other in instances if other.id != view.id for n in other.loaded}
        lost = sum(upcoming(n) < never and n not in elsewhere for n in unload)
        held = len(want) - len(load)
        kind = Reuse.HIT if not load else (Reuse.PARTIAL if held else Reuse.MISS)
        decision = Decision(Action.REUSE, f"knowing the jobs to come: instance {view.id}", instance=view.id,
                            load=load, unload=unload, reuse=kind)
        options.append(((len(load) + lost, tuple(-upcoming(n) for n in sorted(unload, key=upcoming)), 0, view.id),
                        decision))
    for slot in free_slots[:1]:
        decision = Decision(Action.START, f"knowing the jobs to come: starting one in slot {slot}", slot=slot,
                            load=tuple(want), reuse=Reuse.MISS)
        options.append(((len(want), (), 1, slot), decision))
    if not options:
        return Decision(Action.WAIT, f"all {len(instances)} instance(s) are in use and no slot is free")
    return min(options, key=lambda option: option[0])[1]


POLICIES = {"clarad": decide, "any-idle": decide_any_idle, "lru": decide_lru, "oracle": decide_oracle,
            "fresh": decide_fresh}
