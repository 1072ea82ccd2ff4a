"""placement.decide: every branch asserted as a whole Decision, plus its invariants as properties."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from clarad.placement import (
    Action,
    Decision,
    InstanceView,
    LoadCost,
    Memory,
    Reuse,
    World,
    decide,
    decide_any_idle,
    decide_fresh,
    decide_lru,
    decide_oracle,
    operator_groups,
)

D = {"a": "da", "b": "db", "c": "dc", "d": "dd", "e": "de"}


def idle(id: str, loaded: dict[str, str], last_used: dict[str, float] | None = None, slot: str = "") -> InstanceView:
    return InstanceView(id, slot or f"slot-{id}", True, loaded, last_used or {})


def busy(id: str, loaded: dict[str, str] | None = None) -> InstanceView:
    return InstanceView(id, f"slot-{id}", False, loaded or {})


def test_job_without_models_needs_no_instance() -> None:
    assert decide([], D, [idle("i0", {"a": "da"})], ["gpu0"], 8) == Decision(
        Action.NONE, "the job's operators ask for no model")


def test_job_asking_for_more_models_than_an_instance_holds_is_refused() -> None:
    assert decide(["a", "b", "c"], D, [], ["gpu0"], 2) == Decision(
        Action.REFUSE,
        "the job asks for 3 models; one instance may hold at most 2 (max_models_per_instance)")


def test_repeated_wanted_names_count_once() -> None:
    decision = decide(["a", "a", "b"], D, [], ["gpu0"], 2)
    assert decision == Decision(Action.START, "no instance is idle: starting one in slot gpu0", slot="gpu0",
                                load=("a", "b"), reuse=Reuse.MISS)


def test_starts_an_instance_when_none_is_idle_and_a_slot_is_free() -> None:
    assert decide(["a", "b"], D, [busy("i0", {"a": "da"})], ["gpu1", "gpu2"], 8) == Decision(
        Action.START, "no instance is idle: starting one in slot gpu1", slot="gpu1", load=("a", "b"),
        reuse=Reuse.MISS)


def test_waits_when_every_instance_is_leased_and_no_slot_is_free() -> None:
    assert decide(["a"], D, [busy("i0", {"a": "da"}), busy("i1")], [], 8) == Decision(
        Action.WAIT, "all 2 instance(s) are leased and no slot is free")


def test_waits_when_there_are_no_instances_and_no_slots() -> None:
    assert decide(["a"], D, [], [], 8).action is Action.WAIT


def test_reuse_hit_loads_nothing() -> None:
    assert decide(["a", "b"], D, [idle("i0", {"a": "da", "b": "db"})], ["gpu1"], 8) == Decision(
        Action.REUSE, "instance i0 holds 2 of 2 wanted model(s)", instance="i0", reuse=Reuse.HIT)


def test_reuse_partial_loads_only_what_is_missing() -> None:
    assert decide(["a", "b", "c"], D, [idle("i0", {"b": "db"})], ["gpu1"], 8) == Decision(
        Action.REUSE, "instance i0 holds 1 of 3 wanted model(s); loading a, c", instance="i0", load=("a", "c"),
        reuse=Reuse.PARTIAL)


def test_reuse_miss_of_zero_overlap_idle_instance_when_no_slot_is_free() -> None:
    assert decide(["a"], D, [idle("i0", {"b": "db"}), busy("i1", {"a": "da"})], [], 8) == Decision(
        Action.REUSE, "instance i0 holds 0 of 1 wanted model(s); loading a", instance="i0", load=("a",),
        reuse=Reuse.MISS)


def test_zero_overlap_idle_instance_keeps_its_models_when_a_slot_is_free() -> None:
    assert decide(["a"], D, [idle("i0", {"b": "db"})], ["gpu1"], 8) == Decision(
        Action.START, "no idle instance holds any wanted model: starting one in slot gpu1", slot="gpu1",
        load=("a",), reuse=Reuse.MISS)


def test_prefers_the_idle_instance_with_most_wanted_models() -> None:
    views = [idle("i0", {"a": "da"}), idle("i1", {"a": "da", "b": "db"}), busy("i2", {"a": "da", "b": "db", "c": "dc"})]
    assert decide(["a", "b", "c"], D, views, ["gpu3"], 8) == Decision(
        Action.REUSE, "instance i1 holds 2 of 3 wanted model(s); loading c", instance="i1", load=("c",),
        reuse=Reuse.PARTIAL)


def test_tie_goes_to_the_instance_holding_fewest_other_models() -> None:
    views = [idle("i0", {"a": "da", "c": "dc", "d": "dd"}), idle("i1", {"a": "da", "e": "de"})]
    assert decide(["a"], D, views, [], 8) == Decision(
        Action.REUSE, "instance i1 holds 1 of 1 wanted model(s)", instance="i1", reuse=Reuse.HIT)


def test_full_tie_goes_to_the_lowest_id() -> None:
    views = [idle("i2", {"a": "da"}), idle("i1", {"a": "da"}), idle("i3", {"a": "da"})]
    assert decide(["a"], D, views, [], 8).instance == "i1"


def test_model_loaded_at_a_stale_revision_counts_as_not_loaded() -> None:
    assert decide(["a", "b"], D, [idle("i0", {"a": "old", "b": "db"})], [], 8) == Decision(
        Action.REUSE, "instance i0 holds 1 of 2 wanted model(s); loading a", instance="i0", load=("a",),
        reuse=Reuse.PARTIAL)


def test_current_revision_beats_stale_one_when_choosing() -> None:
    views = [idle("i0", {"a": "old"}), idle("i1", {"a": "da"})]
    assert decide(["a"], D, views, [], 8).instance == "i1"


def test_stale_overlap_reloads_in_the_running_instance_even_when_a_slot_is_free() -> None:
    decision = decide(["a"], D, [idle("i0", {"a": "old"})], ["gpu1"], 8)
    assert (decision.action, decision.instance, decision.load, decision.reuse) == (
        Action.REUSE, "i0", ("a",), Reuse.MISS)


def test_empty_idle_instance_is_reused_rather_than_starting_another() -> None:
    decision = decide(["a"], D, [idle("i0", {})], ["gpu1"], 8)
    assert (decision.action, decision.instance, decision.load) == (Action.REUSE, "i0", ("a",))


def test_unloads_least_recently_used_extras_beyond_max_models() -> None:
    view = idle("i0", {"a": "da", "b": "db", "c": "dc", "d": "dd"}, last_used={"b": 30.0, "c": 10.0, "d": 20.0})
    assert decide(["a", "e"], D, [view], [], 3) == Decision(
        Action.REUSE, "instance i0 holds 1 of 2 wanted model(s); loading e; unloading c, d to stay within 3",
        instance="i0", load=("e",), unload=("c", "d"), reuse=Reuse.PARTIAL)


def test_never_used_extras_go_first_then_by_name() -> None:
    view = idle("i0", {"z": "dz", "y": "dy", "x": "dx"}, last_used={"x": 5.0})
    decision = decide(["a"], D, [view], [], 2)
    assert decision.unload == ("y", "z")


def test_extras_within_the_limit_stay_loaded() -> None:
    decision = decide(["a"], D, [idle("i0", {"a": "da", "b": "db"})], [], 2)
    assert (decision.unload, decision.reuse) == ((), Reuse.HIT)


# -- properties ----------------------------------------------------------------------------------

NAMES = ["m0", "m1", "m2", "m3", "m4", "m5"]
REVISIONS = ["r0", "r1"]


@st.composite
def situations(draw: st.DrawFn) -> tuple[list[str], dict[str, str], list[InstanceView], list[str], int]:
    max_models = draw(st.integers(1, 5))
    digests = {name: draw(st.sampled_from(REVISIONS)) for name in NAMES}
    wanted = draw(st.lists(st.sampled_from(NAMES), max_size=6))
    count = draw(st.integers(0, 4))
    instances = []
    for n in range(count):
        names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=max_models))
        loaded = {name: draw(st.sampled_from(REVISIONS)) for name in names}
        last_used = {name: draw(st.floats(0, 100)) for name in names}
        instances.append(InstanceView(f"i{n}", f"s{n}", draw(st.booleans()), loaded, last_used))
    free = draw(st.lists(st.sampled_from(["g0", "g1", "g2"]), unique=True, max_size=2))
    return wanted, digests, instances, free, max_models


@given(situations())
def test_decision_respects_placement_rules(situation: tuple[list[str], dict[str, str], list[InstanceView], list[str], int]) -> None:
    wanted, digests, instances, free, max_models = situation
    want = set(wanted)
    decision = decide(wanted, digests, instances, free, max_models)
    if not want:
        assert decision.action is Action.NONE
        return
    if len(want) > max_models:
        assert decision.action is Action.REFUSE
        return
    if decision.action is Action.START:
        assert decision.slot in free
        assert set(decision.load) == want
    elif decision.action is Action.WAIT:
        assert not free and not any(view.idle for view in instances)
    else:
        assert decision.action is Action.REUSE
        chosen = next(view for view in instances if view.id == decision.instance)
        assert chosen.idle
        current = {name for name, digest in chosen.loaded.items() if digests.get(name) == digest}
        assert set(decision.load) | (current & want) == want
        assert not set(decision.load) & current
        after = (set(chosen.loaded) - set(decision.unload)) | set(decision.load)
        assert len(after) <= max_models
        assert want <= after
        assert not set(decision.unload) & want
        assert set(decision.unload) <= set(chosen.loaded)


# -- by cost and within memory -------------------------------------------------------------------

MiB = 1 << 20


def costs(**seconds: float) -> dict[tuple[str, str], LoadCost]:
    return {(name, "cpu"): LoadCost(value, 0) for name, value in seconds.items()}


def test_the_instance_where_models_are_ready_soonest_wins_over_the_one_holding_most() -> None:
    world = World(costs=costs(a=1.0, b=1.0, c=30.0), start_seconds=0.5)
    views = [idle("i0", {"a": "da", "b": "db"}), idle("i1", {"c": "dc"})]
    decision = decide(["a", "b", "c"], D, views, [], 8, world)
    assert (decision.instance, decision.load) == ("i1", ("a", "b"))  # 2 s of loads, not 30


def test_a_new_instance_is_started_rather_than_evict_a_model_a_waiting_job_wants() -> None:
    world = World(costs=costs(a=1.0, b=1.0, z=30.0), start_seconds=0.5, queued={"z": 1})
    assert decide(["a", "b"], D, [idle("i0", {"b": "db", "z": "dz"})], ["s1"], 2, world) == Decision(
        Action.START, "a new instance is ready sooner (2.5 s) than instance i0 (31.0 s): starting one in slot s1",
        slot="s1", load=("a", "b"), reuse=Reuse.MISS)


def test_never_more_than_the_memory_a_device_has_left() -> None:
    world = World(costs={("a", "cpu"): LoadCost(1.0, 80 * MiB), ("b", "cpu"): LoadCost(1.0, 80 * MiB)},
                  memory={"cpu": Memory(free=100 * MiB, total=1000 * MiB)})
    assert decide(["a", "b"], D, [], ["s0"], 8, world) == Decision(
        Action.WAIT, "no idle instance or free slot has the memory the job's models need (160 MiB)")


def test_unloads_what_no_waiting_job_wants_to_make_room_in_memory() -> None:
    world = World(costs={(n, "cpu"): LoadCost(1.0, 60 * MiB) for n in "abcd"},
                  memory={"cpu": Memory(free=10 * MiB, total=1000 * MiB)}, queued={"b": 2})
    view = idle("i0", {"b": "db", "c": "dc", "d": "dd"}, last_used={"b": 1.0, "c": 5.0, "d": 9.0})
    decision = decide(["a"], D, [view], [], 8, world)
    assert decision == Decision(
        Action.REUSE, "instance i0 holds 0 of 1 wanted model(s); loading a; unloading c to stay within 8 models "
        "and the device's memory", instance="i0", load=("a",), unload=("c",), reuse=Reuse.MISS, memory=60 * MiB)


def test_a_job_whose_models_never_fit_any_device_is_refused_with_the_numbers() -> None:
    world = World(costs={("a", "cpu"): LoadCost(1.0, 900 * MiB), ("b", "cpu"): LoadCost(1.0, 900 * MiB)},
                  memory={"cpu": Memory(free=500 * MiB, total=1000 * MiB)})
    assert decide(["a", "b"], D, [busy("i0")], ["s1"], 8, world) == Decision(
        Action.REFUSE, "the job's models need 1800 MiB of device memory; at most 1000 MiB is ever available on one "
        "device")


@st.composite
def worlds(draw: st.DrawFn) -> World:
    memory = {(name, "cpu"): LoadCost(draw(st.floats(0.1, 30)), draw(st.integers(0, 300)) * MiB) for name in NAMES}
    free = draw(st.integers(0, 1000)) * MiB
    queued = {name: draw(st.integers(0, 2)) for name in NAMES}
    return World(costs=memory, memory={"cpu": Memory(free, free + draw(st.integers(0, 1000)) * MiB)}, queued=queued,
                 start_seconds=draw(st.floats(0.0, 5.0)))


@given(situations(), worlds())
def test_never_over_memory_and_never_a_needless_load(
    situation: tuple[list[str], dict[str, str], list[InstanceView], list[str], int], world: World
) -> None:
    wanted, digests, instances, free, max_models = situation
    decision = decide(wanted, digests, instances, free, max_models, world)
    room = world.memory["cpu"].free
    if decision.action is Action.START:
        assert sum(world.cost(n, "cpu").memory for n in set(wanted)) <= room
    if decision.action is Action.REUSE:
        chosen = next(view for view in instances if view.id == decision.instance)
        freed = sum(world.cost(n, "cpu").memory for n in decision.unload)
        added = sum(world.cost(n, "cpu").memory for n in decision.load if n not in chosen.loaded)
        assert added <= room + freed
        current = {name for name, digest in chosen.loaded.items() if digests.get(name) == digest}
        assert not set(decision.load) & current  # never a needless load
        assert not set(decision.unload) & set(wanted)


# -- the baselines -------------------------------------------------------------------------------


def test_fresh_baseline_starts_a_single_use_instance_for_every_job() -> None:
    assert decide_fresh(["a"], D, [idle("i0", {"a": "da"})], ["s1"], 8) == Decision(
        Action.START, "a fresh instance per job: starting one in slot s1", slot="s1", load=("a",), reuse=Reuse.MISS,
        single_use=True)
    assert decide_fresh(["a"], D, [busy("i0")], [], 8).action is Action.WAIT


def test_any_idle_baseline_makes_the_first_idle_instance_hold_exactly_the_job_s_models() -> None:
    views = [idle("i1", {"a": "da"}), idle("i0", {"b": "db", "c": "dc"}, last_used={"b": 2.0, "c": 1.0})]
    assert decide_any_idle(["a", "b"], D, views, ["s2"], 8) == Decision(
        Action.REUSE, "any idle instance: i0", instance="i0", load=("a",), unload=("c",), reuse=Reuse.PARTIAL)
    started = decide_any_idle(["a"], D, [busy("i0")], ["s1"], 2)
    assert (started.action, started.slot, started.single_use) == (Action.START, "s1", False)


def test_lru_baseline_keeps_what_fits_and_unloads_the_least_recently_used_beyond_max_models() -> None:
    views = [idle("i1", {"a": "da"}), idle("i0", {"b": "db", "c": "dc", "d": "dd"},
                                             last_used={"b": 2.0, "c": 1.0, "d": 3.0})]
    assert decide_lru(["a"], D, views, ["s2"], 3) == Decision(
        Action.REUSE, "any idle instance: i0", instance="i0", load=("a",), unload=("c",), reuse=Reuse.MISS)
    assert decide_lru(["a"], D, views, ["s2"], 8).unload == ()
    assert decide_lru(["a"], D, [busy("i0")], [], 2).action is Action.WAIT


def test_oracle_unloads_the_model_wanted_furthest_in_the_future() -> None:
    view = idle("i0", {"b": "db", "c": "dc", "d": "dd"}, last_used={"b": 1.0, "c": 2.0, "d": 3.0})
    world = World(next_use={"b": 5, "c": 1, "d": 2})
    assert decide_oracle(["a"], D, [view], [], 3, world) == Decision(
        Action.REUSE, "knowing the jobs to come: instance i0", instance="i0", load=("a",), unload=("b",),
        reuse=Reuse.MISS)
    never_again = decide_oracle(["a"], D, [view], [], 3, World(next_use={"b": 5, "c": 1}))
    assert never_again.unload == ("d",)


def test_oracle_takes_the_instance_whose_unloads_are_not_wanted_again() -> None:
    soon = idle("i0", {"b": "db", "c": "dc"})
    later = idle("i1", {"d": "dd", "e": "de"})
    world = World(next_use={"b": 1, "c": 3, "d": 9})
    assert decide_oracle(["a"], D, [soon, later], [], 2, world).instance == "i1"  # e never wanted again
    both_wanted = World(next_use={"b": 1, "c": 3, "d": 9, "e": 7})
    assert decide_oracle(["a"], D, [soon, later], [], 2, both_wanted).unload == ("d",)  # the furthest next use


def test_oracle_holds_before_it_starts_and_starts_before_it_evicts() -> None:
    holder = idle("i0", {"a": "da", "b": "db"})
    assert decide_oracle(["a"], D, [holder], ["s1"], 2, World(next_use={"b": 1})).action is Action.REUSE
    full = idle("i0", {"b": "db", "c": "dc"})
    started = decide_oracle(["a"], D, [full], ["s1"], 2, World(next_use={"b": 1, "c": 2}))
    assert (started.action, started.slot, started.load) == (Action.START, "s1", ("a",))
    assert decide_oracle(["a"], D, [busy("i0")], [], 2).action is Action.WAIT


def test_clarad_unloads_what_recent_jobs_wanted_least() -> None:
    view = idle("i0", {"b": "db", "c": "dc"}, last_used={"b": 1.0, "c": 2.0})
    assert decide(["a"], D, [view], [], 2, World(demand={"b": 0.6, "c": 0.05})).unload == ("c",)
    assert decide(["a"], D, [view], [], 2).unload == ("b",)  # nothing known: least recently used


def test_clarad_starts_rather_than_unload_a_model_in_demand() -> None:
    view = idle("i0", {"a": "da", "b": "db"}, last_used={"a": 1.0, "b": 2.0})
    costs = {("a", "cpu"): LoadCost(1.0, 0), ("b", "cpu"): LoadCost(5.0, 0), ("c", "cpu"): LoadCost(5.0, 0)}
    world = World(costs=costs, start_seconds=1.0, demand={"b": 0.9})  # b is likely wanted again: 5 s more
    decision = decide(["a", "c"], D, [view], ["s1"], 2, world)
    assert (decision.action, decision.slot) == (Action.START, "s1")
    assert decide(["a", "c"], D, [view], ["s1"], 2, replace(world, demand={})).instance == "i0"


# -- a job's models over several instances -------------------------------------------------------


def test_a_job_whose_models_fit_one_instance_gets_one_group() -> None:
    assert operator_groups([["a", "b"], [], ["b", "c"]], 3) == [("a", "b", "c")]
    assert operator_groups([[], []], 3) == []


def test_operators_models_stay_together_and_groups_are_few() -> None:
    groups = operator_groups([["a", "b"], ["c"], ["d", "e"], ["b", "c"]], 3)
    assert groups == [("a", "b", "c"), ("d", "e")]


@given(st.lists(st.lists(st.sampled_from(NAMES), max_size=3, unique=True), max_size=6), st.integers(3, 5))
def test_every_operator_has_all_its_models_on_one_instance_within_the_limit(
    operators: list[list[str]], max_models: int
) -> None:
    groups = operator_groups(operators, max_models)
    assert all(len(group) <= max_models for group in groups)
    for models in operators:
        assert not models or any(set(models) <= set(group) for group in groups)
