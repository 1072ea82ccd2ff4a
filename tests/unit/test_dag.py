"""A job's DAG as dag.run_operators carries it out, with a real store and operators modelled as
coroutines the test releases one by one (no processes, no sleeps): parallel up to the bound,
fan-out and fan-in, and the first fault stopping its siblings."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from clarad.cpus import CpuPins
from clarad.dag import run_operators
from clarad.jobs import JobStatus, Priority, QueuedJob
from clarad.operators import Outcome
from clarad.pipelines import Operator, parse_pipeline
from clarad.store import Store

FAN = """
name: fan
operators:
- {name: a, command: [x]}
- {name: b, command: [x], input: [{from: a}], requests: {cpu: 1}}
- {name: c, command: [x], input: [{from: a}]}
- {name: d, command: [x], input: [{from: a}]}
- {name: e, command: [x], input: [{from: b}, {from: c}, {from: d}]}
- {name: f, command: [x], input: [{from: e}]}
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "clarad.db")
    yield store
    store.close()


class Operators:
    """Each operator runs until the test ends it with ``finish``; what ran and when is recorded."""

    def __init__(self) -> None:
        self.running: dict[str, asyncio.Future[Outcome]] = {}
        self.started: list[str] = []
        self.most_at_once = 0
        self.cpus: dict[str, list[int]] = {}
        self.cancelled: list[str] = []
        self.changed = asyncio.Event()

    async def run_one(self, op: Operator, gpus: list[str], cpus: list[int]) -> Outcome:
        self.running[op.name] = asyncio.get_running_loop().create_future()
        self.started.append(op.name)
        self.cpus[op.name] = cpus
        self.most_at_once = max(self.most_at_once, len(self.running))
        self.changed.set()
        try:
            return await self.running[op.name]
        except asyncio.CancelledError:
            self.cancelled.append(op.name)
            raise
        finally:
            del self.running[op.name]
            self.changed.set()

    async def until_running(self, *names: str) -> None:
        while set(self.running) != set(names):
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 5)

    def finish(self, name: str, ok: bool = True) -> None:
        self.running[name].set_result(Outcome(ok, "exited with code 0" if ok else "exited with code 2", 0 if ok else 2))


def start(store: Store, text: str, ops: Operators, parallel: int) -> tuple[QueuedJob, asyncio.Task[tuple[JobStatus, str]]]:
    pipeline = parse_pipeline(text)
    store.create_job("j1", pipeline.name, "job", "normal", [op.name for op in pipeline.operators], 0.0)
    job = QueuedJob("j1", "job", pipeline, Priority.NORMAL, 0.0)
    return job, asyncio.ensure_future(run_operators(job, store, [], ops.run_one, CpuPins([0, 1]), parallel))


def states(store: Store) -> dict[str, tuple[str, str | None]]:
    job = store.job("j1")
    assert job is not None
    return {op["name"]: (op["state"], op["reason"]) for op in job["operators"]}


def test_fan_out_runs_at_most_the_bound_at_once_and_fan_in_waits_for_all(store: Store) -> None:
    async def scenario() -> None:
        ops = Operators()
        _job, done = start(store, FAN, ops, parallel=2)
        await ops.until_running("a")
        ops.finish("a")
        await ops.until_running("b", "c")  # d waits for a free place
        assert states(store)["d"] == ("PENDING", None)
        ops.finish("b")
        await ops.until_running("c", "d")
        ops.finish("c")
        await ops.until_running("d")  # e waits for d too
        assert states(store)["e"] == ("PENDING", None)
        ops.finish("d")
        await ops.until_running("e")
        ops.finish("e")
        await ops.until_running("f")
        ops.finish("f")
        assert await done == (JobStatus.HEALTHY, "all 6 operator(s) completed")
        assert ops.started == ["a", "b", "c", "d", "e", "f"]
        assert ops.most_at_once == 2
        assert ops.cpus == {"a": [], "b": [0], "c": [], "d": [], "e": [], "f": []}
        assert {state for state, _ in states(store).values()} == {"COMPLETED"}

    asyncio.run(scenario())


def test_independent_operators_all_run_together_under_a_high_bound(store: Store) -> None:
    async def scenario() -> None:
        ops = Operators()
        _job, done = start(store, FAN, ops, parallel=8)
        await ops.until_running("a")
        ops.finish("a")
        await ops.until_running("b", "c", "d")
        for name in ("b", "c", "d"):
            ops.finish(name)
        await ops.until_running("e")
        ops.finish("e")
        await ops.until_running("f")
        ops.finish("f")
        assert (await done)[0] is JobStatus.HEALTHY
        assert ops.most_at_once == 3

    asyncio.run(scenario())


def test_the_first_fault_stops_running_siblings_and_starts_nothing_more(store: Store) -> None:
    async def scenario() -> None:
        ops = Operators()
        _job, done = start(store, FAN, ops, parallel=2)
        await ops.until_running("a")
        ops.finish("a")
        await ops.until_running("b", "c")
        ops.finish("b", ok=False)
        status, reason = await done
        assert status is JobStatus.FAULTED
        assert reason == 'operator "b" exited with code 2 (log: jobs/j1/logs/b.log)'
        assert ops.cancelled == ["c"]
        assert ops.started == ["a", "b", "c"]  # d never started
        assert states(store) == {
            "a": ("COMPLETED", None),
            "b": ("FAULTED", "exited with code 2 (log: jobs/j1/logs/b.log)"),
            "c": ("FAULTED", 'stopped: operator "b" faulted'),
            "d": ("FAULTED", 'not run: operator "b" faulted'),
            "e": ("FAULTED", "not run: an operator it reads from faulted"),
            "f": ("FAULTED", "not run: an operator it reads from faulted"),
        }
        assert ops.cpus["b"] == [0]

    asyncio.run(scenario())


def test_cancelling_the_job_stops_what_runs(store: Store) -> None:
    async def scenario() -> None:
        ops = Operators()
        _job, done = start(store, FAN, ops, parallel=4)
        await ops.until_running("a")
        done.cancel()
        with pytest.raises(asyncio.CancelledError):
            await done
        assert ops.cancelled == ["a"]
        assert ops.running == {}

    asyncio.run(scenario())
