"""Job and operator lifecycles, and which operators may run now."""

from __future__ import annotations

import pytest

from clarad.errors import TransitionError
from clarad.jobs import (
    DagProgress,
    JobState,
    OperatorState,
    Priority,
    QueuedJob,
    job_transition,
    operator_transition,
    queue_order,
)
from clarad.pipelines import Pipeline, parse_pipeline

P, R, C, F = OperatorState.PENDING, OperatorState.RUNNING, OperatorState.COMPLETED, OperatorState.FAULTED

JOB_MOVES = [
    (JobState.PENDING, "start", JobState.RUNNING),
    (JobState.PENDING, "finish", JobState.STOPPED),
    (JobState.RUNNING, "finish", JobState.STOPPED),
]
JOB_REFUSED = [
    (JobState.RUNNING, "start"),
    (JobState.STOPPED, "start"),
    (JobState.STOPPED, "finish"),
]
OPERATOR_MOVES = [(P, "start", R), (R, "complete", C), (R, "fault", F), (P, "fault", F)]
OPERATOR_REFUSED = [(R, "start"), (C, "start"), (F, "start"), (P, "complete"), (C, "complete"), (F, "complete"),
                    (C, "fault"), (F, "fault")]


@pytest.mark.parametrize(("state", "event", "target"), JOB_MOVES)
def test_allowed_job_move(state: JobState, event: str, target: JobState) -> None:
    assert job_transition("j1", state, event) is target


@pytest.mark.parametrize(("state", "event"), JOB_REFUSED)
def test_refused_job_move_names_job_state_and_event(state: JobState, event: str) -> None:
    with pytest.raises(TransitionError) as refused:
        job_transition("j1", state, event)
    assert str(refused.value) == f"job j1 is {state.value}: cannot {event}"


@pytest.mark.parametrize(("state", "event", "target"), OPERATOR_MOVES)
def test_allowed_operator_move(state: OperatorState, event: str, target: OperatorState) -> None:
    assert operator_transition("j1", "seg", state, event) is target


@pytest.mark.parametrize(("state", "event"), OPERATOR_REFUSED)
def test_refused_operator_move_names_operator_job_state_and_event(state: OperatorState, event: str) -> None:
    with pytest.raises(TransitionError) as refused:
        operator_transition("j1", "seg", state, event)
    assert str(refused.value) == f"operator seg of job j1 is {state.value}: cannot {event}"


def chain() -> Pipeline:
    """a -> b -> c, and d independent; e reads from a and d."""
    return parse_pipeline(
        "name: p\noperators:\n"
        "- {name: a, command: [x]}\n"
        "- {name: b, command: [x], input: [{from: a}]}\n"
        "- {name: c, command: [x], input: [{from: b}]}\n"
        "- {name: d, command: [x]}\n"
        "- {name: e, command: [x], input: [{from: a}, {from: d}]}\n"
    )


def test_operators_without_upstream_are_runnable_first() -> None:
    progress = DagProgress(chain())
    assert progress.start(10) == ["a", "d"]
    assert progress.start(10) == []


def test_start_takes_no_more_than_its_limit_and_keeps_the_rest_for_later() -> None:
    progress = DagProgress(chain())
    assert progress.start(1) == ["a"]
    assert progress.start(0) == []
    assert progress.start(5) == ["d"]


def test_operator_waits_for_every_upstream_to_complete() -> None:
    progress = DagProgress(chain())
    progress.start(10)
    progress.complete("a")
    assert progress.start(10) == ["b"]  # e still waits for d
    progress.complete("d")
    assert progress.start(10) == ["e"]
    assert progress.state == dict(a=C, b=R, c=P, d=C, e=R)


def test_nothing_is_doomed_by_a_completion() -> None:
    progress = DagProgress(chain())
    progress.start(10)
    progress.complete("a")
    assert progress.pending() == ["b", "c", "e"]


def test_fault_dooms_everything_downstream_transitively() -> None:
    progress = DagProgress(chain())
    progress.start(10)
    assert progress.fault("a") == ["b", "e", "c"]
    assert progress.state == dict(a=F, b=F, c=F, d=R, e=F)
    assert progress.start(10) == []


def test_fault_of_one_upstream_dooms_a_join_but_not_what_runs() -> None:
    progress = DagProgress(chain())
    progress.start(10)
    progress.complete("a")
    progress.start(10)  # b
    assert progress.fault("d") == ["e"]
    assert progress.state == dict(a=C, b=R, c=P, d=F, e=F)
    progress.complete("b")
    assert progress.start(10) == ["c"]


@pytest.mark.parametrize(("text", "expected"), [
    ("lower", Priority.LOW), ("low", Priority.LOW), ("LOW", Priority.LOW), ("normal", Priority.NORMAL),
    ("higher", Priority.HIGH), ("High", Priority.HIGH), ("Higher", Priority.HIGH), ("immediate", Priority.IMMEDIATE),
])
def test_priority_parse_accepts_clara_names_and_aliases(text: str, expected: Priority) -> None:
    assert Priority.parse(text) is expected


def test_priority_parse_refuses_unknown_name() -> None:
    with pytest.raises(ValueError):
        Priority.parse("urgent")


def test_priorities_run_immediate_then_high_normal_low() -> None:
    ordered = sorted(Priority, key=lambda p: p.rank)
    assert ordered == [Priority.IMMEDIATE, Priority.HIGH, Priority.NORMAL, Priority.LOW]
    assert len({p.rank for p in Priority}) == len(Priority)


def _queued(job_id: str, priority: str, created_at: float) -> QueuedJob:
    pipeline = parse_pipeline("name: p\noperators:\n- name: a\n  command: [true]\n")
    return QueuedJob(job_id, job_id, pipeline, Priority.parse(priority), created_at)


def test_queue_order_immediate_first_then_priority_then_age() -> None:
    jobs = [_queued("low", "low", 10), _queued("normal", "normal", 11), _queued("high", "higher", 12),
            _queued("imm", "immediate", 13), _queued("normal-older", "normal", 5)]
    assert [j.id for j in queue_order(jobs, now=20, aging=60)] == ["imm", "high", "normal-older", "normal", "low"]


def test_waiting_raises_a_job_one_class_per_aging_period_but_never_above_high() -> None:
    old_low = _queued("old-low", "low", 0)
    fresh_high = _queued("fresh-high", "high", 170)
    fresh_normal = _queued("fresh-normal", "normal", 170)
    assert [j.id for j in queue_order([fresh_normal, old_low], now=70, aging=60)] == ["old-low", "fresh-normal"]
    assert [j.id for j in queue_order([fresh_high, old_low], now=180, aging=60)] == ["old-low", "fresh-high"]
    assert [j.id for j in queue_order([_queued("imm", "immediate", 179), old_low], now=10_000, aging=60)][0] == "imm"
