"""The instance pool's state machine, against the modelled Triton: every legal move and path, every
refused move (named, and changing nothing), the lease's return, an instance's death noticed at once,
and the one way an instance is stopped."""

from __future__ import annotations

from typing import Optional

import pytest

from clarad.errors import TransitionError
from clarad.gpus import Slot
from clarad.placement import Action, Decision, InstanceView
from clarad.pool import TRANSITIONS, Instance, InstanceState, Pool
from clarad.simulator import ModelledLauncher, ModelledTriton
from tests.unit.driving import drive, until

S = InstanceState
SLOTS = [Slot("cpu-0", ""), Slot("cpu-1", "")]
KILLED = "killed by SIGKILL (perhaps out of memory)"

# The table, written out again from the pool's docstring, so that a change to pool.TRANSITIONS fails here.
LEGAL = [
    (S.STARTING, "started", S.LOADING),
    (S.LOADING, "loaded", S.LEASED),
    (S.LEASED, "release", S.IDLE),
    (S.IDLE, "lease", S.LOADING),
    *[(state, "stop", S.STOPPING) for state in (S.STARTING, S.LOADING, S.LEASED, S.IDLE)],
    *[(state, "exited", S.GONE) for state in (S.STARTING, S.LOADING, S.LEASED, S.IDLE, S.STOPPING)],
]
EVENTS = ["started", "loaded", "release", "lease", "stop", "exited"]
REFUSED = [(state, event) for state in S for event in EVENTS
           if not any(legal[:2] == (state, event) for legal in LEGAL)]


class Lost:
    """The pool's on_lost: what it was told, as it was when told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Optional[str], str]] = []

    def __call__(self, instance: Instance, how: str) -> None:
        self.calls.append((instance.id, instance.job, how))


def whole(pool: Pool) -> dict[str, tuple[str, Optional[str], dict[str, str]]]:
    """The pool's whole state: each instance's state, job and loaded models."""
    return {i.id: (i.state.value, i.job, dict(i.loaded)) for i in pool.instances.values()}


def start(slot: str = "cpu-0") -> Decision:
    return Decision(Action.START, f"starting one in slot {slot}", slot=slot, load=("a",))


def reuse(instance: str) -> Decision:
    return Decision(Action.REUSE, f"instance {instance} holds 1 of 1 wanted model(s)", instance=instance)


async def leased(pool: Pool, job: str = "j1", slot: str = "cpu-0") -> tuple[Instance, ModelledTriton]:
    """An instance started for ``job`` and prepared with model a: LEASED, as the runner leaves it."""
    instance = pool.lease(start(slot), job)
    server = await ModelledLauncher().start(instance.id, instance.slot, 1.0)
    pool.started(instance, server)
    instance.loaded["a"] = "d1"
    pool.move(instance, "loaded")
    return instance, server


def test_the_table_is_the_one_documented() -> None:
    assert {event: (set(allowed), target) for event, (allowed, target) in TRANSITIONS.items()} == {
        event: ({state for state, e, _ in LEGAL if e == event}, next(t for _, e, t in LEGAL if e == event))
        for event in EVENTS
    }


@pytest.mark.parametrize(("state", "event", "target"), LEGAL)
def test_legal_move(state: InstanceState, event: str, target: InstanceState) -> None:
    pool = Pool(SLOTS, Lost())
    instance = Instance("triton-0", SLOTS[0], state, "j1", loaded={"a": "d1"})
    pool.instances[instance.id] = instance
    pool.move(instance, event)
    assert instance.state is target
    expected = {} if target is S.GONE else {"triton-0": (target.value, None if target is S.IDLE else "j1", {"a": "d1"})}
    assert whole(pool) == expected


@pytest.mark.parametrize(("state", "event"), REFUSED)
def test_refused_move_names_instance_state_and_event_and_changes_nothing(state: InstanceState, event: str) -> None:
    pool = Pool(SLOTS, Lost())
    instance = Instance("triton-0", SLOTS[0], state, "j1", loaded={"a": "d1"}, last_used={"a": 5.0})
    pool.instances[instance.id] = instance
    before, pool_before = dict(vars(instance)), whole(pool)
    with pytest.raises(TransitionError) as refused:
        pool.move(instance, event)
    assert str(refused.value) == f"instance triton-0 is {state.value}: cannot {event}"
    assert (dict(vars(instance)), whole(pool)) == (before, pool_before)


@drive
async def test_an_instance_is_started_leased_given_back_leased_again_and_stopped() -> None:
    lost = Lost()
    pool = Pool(SLOTS, lost)
    instance = pool.lease(start("cpu-0"), "j1")
    assert (whole(pool), pool.free_slots()) == ({"triton-0": ("starting", "j1", {})}, ["cpu-1"])

    server = await ModelledLauncher().start(instance.id, instance.slot, 1.0)
    pool.started(instance, server)
    assert (whole(pool), instance.server) == ({"triton-0": ("loading", "j1", {})}, server)
    instance.loaded["a"] = "d1"
    pool.move(instance, "loaded")
    assert whole(pool) == {"triton-0": ("leased", "j1", {"a": "d1"})}
    assert pool.views() == [InstanceView("triton-0", "cpu-0", False, {"a": "d1"}, {})]

    assert pool.give_back(instance, 50.0) is True
    assert whole(pool) == {"triton-0": ("idle", None, {"a": "d1"})}
    assert pool.views() == [InstanceView("triton-0", "cpu-0", True, {"a": "d1"}, {"a": 50.0})]

    assert pool.lease(reuse("triton-0"), "j2") is instance
    assert whole(pool) == {"triton-0": ("loading", "j2", {"a": "d1"})}
    pool.move(instance, "loaded")
    assert whole(pool) == {"triton-0": ("leased", "j2", {"a": "d1"})}

    await pool.stop(instance, 0)
    assert (whole(pool), instance.state, pool.free_slots()) == ({}, S.GONE, ["cpu-0", "cpu-1"])
    assert (server.alive, server.exit_reason) == (False, "exited with code 0")
    await until(lambda: not pool._watchers, "the exit watcher to end")
    assert lost.calls == []  # stopped on purpose: not lost


@drive
async def test_an_instance_whose_start_never_finished_is_stopped_without_a_server() -> None:
    pool = Pool(SLOTS, Lost())
    instance = pool.lease(start(), "j1")
    await pool.stop(instance, 0)
    assert (whole(pool), instance.state, instance.server, pool.free_slots()) == ({}, S.GONE, None, ["cpu-0", "cpu-1"])


@drive
async def test_stop_of_a_stopped_instance_does_nothing() -> None:
    pool = Pool(SLOTS, Lost())
    instance, server = await leased(pool)
    await pool.stop(instance, 0)
    await pool.stop(instance, 0)
    assert (whole(pool), instance.state, server.alive) == ({}, S.GONE, False)


@drive
async def test_leasing_an_instance_that_is_not_idle_is_refused_and_changes_nothing() -> None:
    pool = Pool(SLOTS, Lost())
    await leased(pool, "j1")
    with pytest.raises(TransitionError) as refused:
        pool.lease(reuse("triton-0"), "j2")
    assert str(refused.value) == "instance triton-0 is leased: cannot lease"
    assert whole(pool) == {"triton-0": ("leased", "j1", {"a": "d1"})}
    await pool.stop_all(0)


@drive
async def test_started_twice_is_refused_and_keeps_the_first_server() -> None:
    pool = Pool(SLOTS, Lost())
    instance, first = await leased(pool)
    other = await ModelledLauncher().start("other", SLOTS[1], 1.0)
    with pytest.raises(TransitionError) as refused:
        pool.started(instance, other)
    assert str(refused.value) == "instance triton-0 is leased: cannot started"
    assert (instance.server, whole(pool)) == (first, {"triton-0": ("leased", "j1", {"a": "d1"})})
    await pool.stop_all(0)
    assert (first.alive, other.alive) == (False, True)  # the refused server was never the pool's


@drive
async def test_give_back_of_an_instance_never_started_is_refused() -> None:
    pool = Pool(SLOTS, Lost())
    instance = pool.lease(start(), "j1")
    assert pool.give_back(instance, 50.0) is False
    assert whole(pool) == {"triton-0": ("starting", "j1", {})}
    await pool.stop_all(0)


@drive
async def test_give_back_of_an_instance_still_loading_is_refused() -> None:
    pool = Pool(SLOTS, Lost())
    instance = pool.lease(start(), "j1")
    pool.started(instance, await ModelledLauncher().start(instance.id, instance.slot, 1.0))
    assert pool.give_back(instance, 50.0) is False
    assert (whole(pool), instance.last_used) == ({"triton-0": ("loading", "j1", {})}, {})
    await pool.stop_all(0)


@drive
async def test_give_back_of_an_instance_whose_server_died_is_refused() -> None:
    pool = Pool(SLOTS, Lost())
    instance, server = await leased(pool)
    server.die()
    assert pool.give_back(instance, 50.0) is False  # before its exit is even handled
    assert instance.state is not S.IDLE
    await until(lambda: not pool.instances, "the dead instance to leave the pool")


@pytest.mark.parametrize("prepared", [False, True], ids=["loading", "leased"])
@drive
async def test_a_leased_instance_whose_server_dies_is_noticed_at_once(prepared: bool) -> None:
    lost = Lost()
    pool = Pool(SLOTS, lost)
    instance = pool.lease(start("cpu-1"), "j1")
    server = await ModelledLauncher().start(instance.id, instance.slot, 1.0)
    pool.started(instance, server)
    if prepared:
        pool.move(instance, "loaded")
    server.die()
    await until(lambda: lost.calls, "the pool to notice the exit")  # no give_back, no pass: the exit itself
    assert lost.calls == [("triton-0", "j1", f"{KILLED}: modelled")]
    await until(lambda: instance.state is S.GONE, "the instance to be gone")
    assert (whole(pool), pool.free_slots()) == ({}, ["cpu-0", "cpu-1"])


@drive
async def test_an_idle_instance_whose_server_dies_leaves_the_pool_and_no_job_is_told() -> None:
    lost = Lost()
    pool = Pool(SLOTS, lost)
    instance, server = await leased(pool)
    assert pool.give_back(instance, 50.0)
    server.die()
    await until(lambda: instance.state is S.GONE, "the instance to be gone")
    assert (whole(pool), lost.calls, pool.free_slots()) == ({}, [], ["cpu-0", "cpu-1"])


@drive
async def test_an_idle_instance_whose_server_died_is_not_offered_before_its_exit_is_handled() -> None:
    pool = Pool(SLOTS, Lost())
    instance, server = await leased(pool)
    assert pool.give_back(instance, 50.0)
    server.die()  # the exit watcher has not run yet
    assert pool.views() == [InstanceView("triton-0", "cpu-0", False, {"a": "d1"}, {"a": 50.0})]
    await until(lambda: not pool.instances, "the dead instance to leave the pool")


@drive
async def test_stop_all_stops_every_instance_and_their_watchers() -> None:
    lost = Lost()
    pool = Pool(SLOTS, lost)
    first, first_server = await leased(pool, "j1", "cpu-0")
    second, second_server = await leased(pool, "j2", "cpu-1")
    assert pool.give_back(second, 50.0)
    await pool.stop_all(0)
    assert (whole(pool), first.state, second.state) == ({}, S.GONE, S.GONE)
    assert (first_server.alive, second_server.alive, lost.calls) == (False, False, [])
    await until(lambda: not pool._watchers, "the exit watchers to end")
