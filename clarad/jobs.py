"""Job and operator lifecycles (Clara's states) and which operators may run now (``DagProgress``). Pure.

    job:       PENDING --start--> RUNNING --finish--> STOPPED   (status HEALTHY | FAULTED | CANCELED)
               PENDING --finish--> STOPPED                       (faulted or canceled before it ran)
               RUNNING --requeue--> PENDING                      (its instance died before any operator ran)
    operator:  PENDING --start--> RUNNING --complete--> COMPLETED
                                          --fault-----> FAULTED
               PENDING --fault--> FAULTED                        (upstream faulted, job stopped)

A move from a state the table does not allow raises TransitionError and changes nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Optional

from clarad.errors import TransitionError
from clarad.pipelines import Pipeline
from clarad.placement import operator_groups


class JobState(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"


class JobStatus(str, Enum):
    HEALTHY = "HEALTHY"
    FAULTED = "FAULTED"
    CANCELED = "CANCELED"


class OperatorState(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAULTED = "FAULTED"


class Priority(str, Enum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    IMMEDIATE = "immediate"

    @classmethod
    def parse(cls, text: str) -> "Priority":
        aliases = {"lower": "low", "higher": "high"}
        return cls(aliases.get(text.lower(), text.lower()))

    @property
    def rank(self) -> int:
        """Smaller runs first."""
        return _RANKS[self.value]


_RANKS = {"immediate": 0, "high": 1, "normal": 2, "low": 3}


@dataclass(eq=False)
class QueuedJob:
    """A job waiting for (or holding) its instance: what placement and the runner need of it."""

    id: str
    name: str
    pipeline: Pipeline
    priority: Priority
    created_at: float
    waiting: str = ""  # why it has not started yet, as last recorded
    requeues: int = 0  # times its instance died before its first operator
    settled: Optional[object] = None  # what the scheduler saw when it last waited with nothing to give
    _groups: tuple[int, list[tuple[str, ...]]] = field(default=(0, []), repr=False)

    @cached_property
    def models(self) -> tuple[str, ...]:
        """Every model its operators ask for, once (a job's pipeline does not change)."""
        return tuple(self.pipeline.model_names)

    @cached_property
    def gpus(self) -> int:
        return self.pipeline.gpus

    def groups(self, max_models: int) -> list[tuple[str, ...]]:
        """``placement.operator_groups`` of its operators' models, computed once per ``max_models``."""
        if self._groups[0] != max_models:
            self._groups = (max_models, operator_groups([op.model_names for op in self.pipeline.operators],
                                                        max_models))
        return self._groups[1]


def queue_order(jobs: Sequence[QueuedJob], now: float, aging: float) -> list[QueuedJob]:
    """The order in which waiting jobs are offered an instance.

    ``immediate`` jobs first, oldest first (Clara's strict queue). Then by priority, where every
    ``aging`` seconds of waiting raise a job one class, up to ``high``: a low job is never starved
    by a stream of newer normal or high ones. Then oldest first.
    """

    return sorted(jobs, key=lambda job: order_key(job, now, aging))


def order_key(job: QueuedJob, now: float, aging: float) -> tuple[int, float]:
    """``queue_order``'s: smaller is offered first."""
    if job.priority is Priority.IMMEDIATE:
        return (0, job.created_at)
    waited = max(0.0, now - job.created_at)
    return (max(Priority.HIGH.rank, job.priority.rank - int(waited // aging)), job.created_at)


JOB_TRANSITIONS: dict[str, tuple[set[JobState], JobState]] = {
    "start": ({JobState.PENDING}, JobState.RUNNING),
    "finish": ({JobState.PENDING, JobState.RUNNING}, JobState.STOPPED),
    "requeue": ({JobState.RUNNING}, JobState.PENDING),  # its instance died before its first operator
}

OPERATOR_TRANSITIONS: dict[str, tuple[set[OperatorState], OperatorState]] = {
    "start": ({OperatorState.PENDING}, OperatorState.RUNNING),
    "complete": ({OperatorState.RUNNING}, OperatorState.COMPLETED),
    "fault": ({OperatorState.PENDING, OperatorState.RUNNING}, OperatorState.FAULTED),
}


def job_transition(job_id: str, state: JobState, event: str) -> JobState:
    allowed, target = JOB_TRANSITIONS[event]
    if state not in allowed:
        raise TransitionError(f"job {job_id} is {state.value}: cannot {event}")
    return target


def operator_transition(job_id: str, name: str, state: OperatorState, event: str) -> OperatorState:
    allowed, target = OPERATOR_TRANSITIONS[event]
    if state not in allowed:
        raise TransitionError(f"operator {name} of job {job_id} is {state.value}: cannot {event}")
    return target


class DagProgress:
    """Which operators of a pipeline may run now, kept up to date one move at a time: each
    operator and each ``from`` is visited a bounded number of times over a whole job (a
    2,000-operator chain costs as much per operator as a short one)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.state = {op.name: OperatorState.PENDING for op in pipeline.operators}
        self.waiting = {op.name: len(op.upstream) for op in pipeline.operators}  # upstreams not yet COMPLETED
        self.readers: dict[str, list[str]] = {op.name: [] for op in pipeline.operators}
        for op in pipeline.operators:
            for up in sorted(op.upstream):
                self.readers[up].append(op.name)
        self.ready = deque(op.name for op in pipeline.operators if not op.upstream)

    def start(self, limit: int) -> list[str]:
        """Up to ``limit`` operators whose upstreams all COMPLETED, in the order they became ready;
        they are RUNNING from now on."""
        started: list[str] = []
        while self.ready and len(started) < limit:
            name = self.ready.popleft()
            self.state[name] = OperatorState.RUNNING
            started.append(name)
        return started

    def complete(self, name: str) -> None:
        self.state[name] = OperatorState.COMPLETED
        for reader in self.readers[name]:
            self.waiting[reader] -= 1
            if self.waiting[reader] == 0 and self.state[reader] is OperatorState.PENDING:
                self.ready.append(reader)

    def fault(self, name: str) -> list[str]:
        """``name`` FAULTED; returns the PENDING operators that read from it, directly or not, which can
        now never run (FAULTED too), in the order found."""
        self.state[name] = OperatorState.FAULTED
        doomed = []
        todo = deque(self.readers[name])
        while todo:
            reader = todo.popleft()
            if self.state[reader] is OperatorState.PENDING:
                self.state[reader] = OperatorState.FAULTED
                doomed.append(reader)
                todo.extend(self.readers[reader])
        return doomed

    def pending(self) -> list[str]:
        """Operators that have not started, in pipeline order."""
        return [name for name, state in self.state.items() if state is OperatorState.PENDING]

    def stop(self, name: str) -> None:
        """A RUNNING or PENDING operator ended without completing (stopped, or never run)."""
        self.state[name] = OperatorState.FAULTED
