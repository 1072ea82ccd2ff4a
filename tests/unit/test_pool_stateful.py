"""Hypothesis drives the scheduler, the pool and the runner together (real store, real operator
processes, the modelled Triton, two instance slots of at most two models) with jobs asking for a few
models, model replacements, loads held and released, instances dying (idle, loading, or as their
job's operator starts, and just before a pass), cancels and passes, and checks after every step:

- no instance is leased to two jobs at once, and each leased instance names the job that holds it;
- an instance that is gone, or whose server died, is neither in the pool nor given to a job (also
  checked right after each pass, before the loop has handled a death);
- every job whose first operator started had each of its models served, at that moment, at the
  revision the store records for the job;
- no model is loaded on an instance that already serves it at the revision asked for;
- a job whose instance died under it is faulted with a reason naming the instance;
- the store and the scheduler agree on which jobs wait, run and have stopped.

The event loop persists across steps. After each step it runs as the daemon's loop does (a pass
whenever an owner asks for one) until quiet: every running job waits at a held load, and nothing is
being stopped or unloaded.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from clarad.pool import Instance, InstanceState
from clarad.runner import RunningJob
from clarad.simulator import ModelledTriton
from clarad.store import Store
from tests.unit.driving import Harness, pipeline_text

MODELS = ("a", "b", "c", "d")
# The state directory on tmpfs where there is one: the store's fsyncs, not what is tested here, would
# otherwise take most of the run on a busy disk.
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None
JOB_MODELS = st.lists(st.sampled_from(MODELS), unique=True, max_size=2)  # an instance holds at most 2


class WatchedStore(Store):
    """The real store, telling the test when a job's first operator is recorded as started (the
    moment before its process is spawned)."""

    first_operator: Optional[Callable[[str], None]] = None

    def move_operator(self, job_id: str, name: str, event: str, now: float, reason: Optional[str] = None,
                      exit_code: Optional[int] = None) -> None:
        record = self.job(job_id) if event == "start" else None
        first = record is not None and all(op["started_at"] is None for op in record["operators"])
        super().move_operator(job_id, name, event, now, reason, exit_code)
        if first and self.first_operator is not None:
            self.first_operator(job_id)


class DrivingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="clarad-driving-", dir=SCRATCH))
        self.loop = asyncio.new_event_loop()
        self.h = Harness(self.root, cpu_instances=2, max_models=2, store=WatchedStore)
        self.gate = asyncio.Event()
        self.gate.set()
        self.h.launcher.gate = self.gate  # shared by every server: hold_loads makes every load wait
        self.now = 1000.0
        self.passes_asked = 0  # the wake-ups already answered with a pass
        self.jobs: dict[str, tuple[str, ...]] = {}  # every job submitted -> the models it asks for
        self.served_at_start: dict[str, dict[str, Optional[str]]] = {}  # job -> what its instance served
        self.violations: list[str] = []
        self.kill_at_operator = False  # the next job to start an operator loses its instance right then
        self.lost_under: set[str] = set()  # jobs whose instance died while their operator ran
        assert isinstance(self.h.store, WatchedStore)
        self.h.store.first_operator = self._first_operator

    # -- driving the loop --------------------------------------------------------------------

    def quiet(self) -> bool:
        scheduler, pool = self.h.scheduler, self.h.pool
        if scheduler.unloading:
            return False
        for instance in pool.instances.values():
            if instance.state is InstanceState.STOPPING:
                return False
            if instance.server is not None and not instance.server.alive:
                return False  # its exit not handled yet
        return all(self._waits_at_gate(running) for running in scheduler.running.values())

    def _waits_at_gate(self, running: RunningJob) -> bool:
        """Its instance (alive, in the pool) holds its load at the gate. A job whose instance died is
        not waiting: it is still ending, or going back to the queue."""
        instance = running.instance
        server = instance.server if instance is not None else None
        return (isinstance(server, ModelledTriton) and server.alive and bool(server.held)
                and instance is not None and instance.id in self.h.pool.instances)

    def on_loop(self, step: Callable[[], None]) -> None:
        """Run ``step`` on the loop, as the daemon's owners run, in one go (nothing else runs meanwhile)."""

        async def call() -> None:
            step()

        self.loop.run_until_complete(call())

    def settle(self) -> None:
        """Run the loop as the daemon's does (a pass whenever an owner asks for one) until quiet."""

        async def converge() -> None:
            deadline = time.monotonic() + 10
            while True:
                if self.h.wakes != self.passes_asked:
                    self.passes_asked = self.h.wakes
                    self._pass()
                elif self.quiet():
                    return
                elif time.monotonic() > deadline:
                    raise AssertionError("the loop did not become quiet within 10 s")
                else:
                    await asyncio.sleep(0.002)

        self.loop.run_until_complete(converge())

    def _first_operator(self, job_id: str) -> None:
        """The job's first operator is about to run: what does its instance serve right now?"""
        running = self.h.scheduler.running.get(job_id)
        if running is None:
            self.violations.append(f"job {job_id} started an operator while not running")
            return
        server = running.instance.server if running.instance is not None else None
        assert server is None or isinstance(server, ModelledTriton)
        if server is None:
            served: dict[str, Optional[str]] = {}
        elif not server.alive:
            self.violations.append(f"job {job_id} started an operator on a dead instance")
            return
        else:
            served = {name: server.served.get(name) for name in self.jobs[job_id]}
        recorded = self.h.job(job_id)["models"]
        self.served_at_start[job_id] = served
        event(f"a first operator started with {len(served)} model(s)")
        if set(recorded) != set(self.jobs[job_id]) or served != recorded:
            self.violations.append(f"job {job_id}: served {served}, recorded {recorded}")
        if self.kill_at_operator and server is not None:
            self.kill_at_operator = False
            self.lost_under.add(job_id)
            event("killed a leased instance as its job's operator started")
            server.die()  # a leased instance, its job's operator starting

    # -- rules -------------------------------------------------------------------------------

    @initialize()
    def install_models(self) -> None:
        for name in MODELS:
            self.h.add_model(name)

    @rule(models=JOB_MODELS)
    def submit(self, models: list[str]) -> None:
        job = self._create(models)
        self.on_loop(lambda: self.h.scheduler.enqueue(job))
        self.settle()

    @rule(model=st.sampled_from(MODELS))
    def replace_model(self, model: str) -> None:
        self.h.add_model(model)
        self.settle()

    @rule()
    def hold_loads(self) -> None:
        self.gate.clear()

    @rule()
    def finish_work(self) -> None:
        self.gate.set()
        self.settle()

    @rule()
    def run_pass(self) -> None:
        self.now += 1.0
        self.on_loop(self._pass)
        self.settle()

    @rule()
    def kill_at_next_operator(self) -> None:
        self.kill_at_operator = True

    def _live(self) -> list[Instance]:
        return [i for i in self.h.pool.instances.values() if i.server is not None and i.server.alive]

    # No precondition on live state: what has ended by now depends on the loop's timing, and a rule
    # choice that differs between a run and its replay is what Hypothesis calls a flaky strategy.
    @rule(pick=st.integers(min_value=0, max_value=7), then_submit=st.booleans())
    def kill_instance(self, pick: int, then_submit: bool) -> None:
        """An instance's server dies; with ``then_submit``, a job asking for the models the instance holds
        arrives and a pass places it before the loop has handled the exit: it must not get the dead one."""
        live = self._live()
        if not live:
            return
        instance = live[pick % len(live)]
        server = instance.server
        assert isinstance(server, ModelledTriton)
        event(f"killed a {instance.state.value} instance{', then a pass' if then_submit else ''}")
        job = self._create(sorted(instance.loaded)) if then_submit else None

        def die() -> None:
            server.die()
            if job is not None:
                self.h.scheduler.enqueue(job)
                self.now += 1.0
                self._pass()

        self.on_loop(die)
        self.settle()

    def _create(self, models: list[str]) -> str:
        job = self.h.create_job(pipeline_text(models))
        self.jobs[job] = tuple(models)
        return job

    @rule(pick=st.integers(min_value=0, max_value=7))
    def cancel_job(self, pick: int) -> None:
        jobs = sorted([job.id for job in self.h.scheduler.queue] + list(self.h.scheduler.running))
        if not jobs:
            return
        self.on_loop(lambda: self.h.scheduler.cancel(jobs[pick % len(jobs)]))
        self.settle()

    def _pass(self) -> None:
        before = set(self.h.scheduler.running)
        self.h.scheduler.run_pass(self.now)
        for job_id, running in self.h.scheduler.running.items():
            instance = running.instance
            if job_id not in before and instance is not None:
                assert instance.state is not InstanceState.GONE, f"job {job_id} given gone {instance.id}"
                assert instance.server is None or instance.server.alive, f"job {job_id} given dead {instance.id}"

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def no_instance_is_leased_to_two_jobs(self) -> None:
        held = [(r.instance.id, r.job.id) for r in self.h.scheduler.running.values() if r.instance is not None]
        assert len({instance for instance, _ in held}) == len(held), held
        assert {i.id: i.job for i in self.h.pool.instances.values() if i.job is not None} == dict(held)

    @invariant()
    def no_gone_or_dead_instance_is_in_the_pool_or_leased(self) -> None:
        for instance in self.h.pool.instances.values():
            assert instance.state is not InstanceState.GONE, instance.id
            assert instance.server is None or instance.server.alive, instance.id
        for running in self.h.scheduler.running.values():
            if running.instance is not None:
                assert running.instance.id in self.h.pool.instances, running.instance.id

    @invariant()
    def every_job_had_its_models_served_at_its_recorded_revision_when_its_first_operator_started(self) -> None:
        assert self.violations == []
        for job_id, models in self.jobs.items():
            record = self.h.job(job_id)
            if record["status"] == "HEALTHY":  # its one operator ran: it was seen starting
                assert self.served_at_start[job_id] == record["models"]
                assert set(record["models"]) == set(models)

    @invariant()
    def a_job_whose_instance_died_under_it_is_faulted_naming_the_instance(self) -> None:
        for job_id in self.lost_under:
            record = self.h.job(job_id)
            assert (record["status"], record["reason"]) == (
                "FAULTED", f"Triton instance {record['instance']} killed by SIGKILL (perhaps out of memory): modelled")

    @invariant()
    def no_model_is_loaded_again_at_the_revision_it_is_served_at(self) -> None:
        for server in self.h.launcher.started:
            for model, before, asked in server.asked:
                assert before != asked, f"{server.id} reloaded {model} at {asked}"

    @invariant()
    def every_job_is_queued_running_or_stopped_in_the_store_alike(self) -> None:
        by_state: dict[str, set[str]] = {"PENDING": set(), "RUNNING": set(), "STOPPED": set()}
        for job_id in self.jobs:
            by_state[self.h.job(job_id)["state"]].add(job_id)
        assert by_state["PENDING"] == {job.id for job in self.h.scheduler.queue}
        assert by_state["RUNNING"] == set(self.h.scheduler.running)

    def teardown(self) -> None:
        try:
            self.gate.set()
            self.settle()
        finally:
            try:
                self.loop.run_until_complete(self.h.close())
            finally:
                self.loop.close()
                shutil.rmtree(self.root, ignore_errors=True)


DrivingMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow],
)
TestDriving = DrivingMachine.TestCase
