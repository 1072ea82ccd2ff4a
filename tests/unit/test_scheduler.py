"""The scheduler's reconcile pass, over the real store, pool and runner, a modelled Triton and real
operator processes: placement carried out as decided, waits recorded with their reason, timeouts,
cancels, a lost instance, and how long the loop may sleep after a pass."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from clarad import placement, prepare
from clarad.errors import ClaradError
from clarad.gpus import Gpu
from clarad.placement import Action, Decision, Reuse
from clarad.pool import InstanceState
from tests.unit.driving import Harness, drive, pipeline_text, until

SLEEPER = ["sleep", "60"]  # an operator that runs until it is stopped
KILLED = "killed by SIGKILL (perhaps out of memory)"


def gone(pid: int) -> bool:
    """The operator's process has exited and been reaped."""
    return not psutil.pid_exists(pid)


@drive
async def test_a_queued_job_is_placed_with_exactly_the_decision_placement_gives(tmp_path: Path) -> None:
    # One slot: with a second, reusing (unloading c, which every recent job wanted) and starting anew
    # would cost the same but for the milliseconds the modelled loads were measured at.
    async with Harness(tmp_path, cpu_instances=1, max_models=2) as h:
        a, b, c = h.add_model("a"), h.add_model("b"), h.add_model("c")
        first = h.submit(pipeline_text(["a", "c"]))
        h.scheduler.run_pass(1000.0)
        assert (await h.ended(h.scheduler.running[first]))["status"] == "HEALTHY"

        job = h.submit(pipeline_text(["a", "b"]))
        digests = h.store.model_digests()
        world = replace(h.scheduler.world(digests), queued={})  # the job's own wants are not "others'"
        expected = placement.decide(["a", "b"], digests, h.pool.views(), h.pool.free_slots(), 2, world)
        h.scheduler.run_pass(1001.0)
        running = h.scheduler.running[job]
        assert running.decision == expected == Decision(
            Action.REUSE, "instance triton-0 holds 1 of 2 wanted model(s); loading b; unloading c to stay within 2",
            instance="triton-0", load=("b",), unload=("c",), reuse=Reuse.PARTIAL,
            memory=h.store.model_sizes()["b"])  # b's size: its memory until a load measures it
        assert running.instance is h.pool.instances["triton-0"]
        record = await h.ended(running)
        assert (record["status"], record["instance"], record["models"]) == ("HEALTHY", "triton-0", {"a": a, "b": b})
        assert (h.launcher.started[0].loads, h.launcher.started[0].served) == (["a", "c", "b"], {"a": a, "b": b})
        assert c not in h.pool.instances["triton-0"].loaded.values()
        assert h.metrics.registry.get_sample_value("clarad_placements_total", {"reuse": "partial"}) == 1


@drive
async def test_a_job_placement_refuses_is_faulted_with_placements_reason(tmp_path: Path) -> None:
    async with Harness(tmp_path, max_models=2) as h:
        for name in "abc":
            h.add_model(name)
        job = h.submit(pipeline_text(["a", "b", "c"]))
        h.scheduler.run_pass(1000.0)
        record = h.job(job)
        assert (record["state"], record["status"], record["reason"]) == (
            "STOPPED", "FAULTED", "the job asks for 3 models; one instance may hold at most 2 (max_models_per_instance)")
        assert (list(h.scheduler.queue), h.scheduler.running, h.pool.instances) == ([], {}, {})


@drive
async def test_a_job_waits_for_an_instance_with_its_reason_and_starts_when_one_is_free(tmp_path: Path) -> None:
    async with Harness(tmp_path, cpu_instances=1) as h:
        h.add_model("a")
        h.add_model("b")
        h.launcher.gate = asyncio.Event()  # the first job's load takes until the test says
        first = h.submit(pipeline_text(["a"]))
        h.scheduler.run_pass(1000.0)
        running = h.scheduler.running[first]
        await until(lambda: h.launcher.started and h.launcher.started[0].held == {"a"}, "the first load to start")

        second = h.submit(pipeline_text(["b"]))
        h.scheduler.run_pass(1001.0)
        record = h.job(second)
        assert (record["state"], record["reason"]) == (
            "PENDING", "waiting for an instance: all 1 instance(s) are leased and no slot is free")
        assert (h.scheduler.waiting(1001.0), list(h.scheduler.running)) == ([second], [first])

        h.launcher.gate.set()
        wakes = h.wakes
        assert (await h.ended(running))["status"] == "HEALTHY"
        assert h.wakes > wakes  # the job's end asks for a pass
        h.scheduler.run_pass(1002.0)
        assert second in h.scheduler.running and list(h.scheduler.queue) == []
        record = await h.ended(h.scheduler.running[second])
        assert (record["status"], record["reason"], record["instance"]) == (
            "HEALTHY", "all 1 operator(s) completed", "triton-0")
        assert h.launcher.started[0].loads == ["a", "b"]


@drive
async def test_a_job_waits_for_gpus_with_its_reason_and_starts_when_they_are_free(tmp_path: Path) -> None:
    gpu = Gpu(0, "GPU-0000", "stand-in", 1 << 30)
    async with Harness(tmp_path, gpus=[gpu]) as h:
        h.add_model("a")
        h.launcher.gate = asyncio.Event()
        holder = h.submit(pipeline_text(["a"], gpu=1))
        h.scheduler.run_pass(1000.0)
        running = h.scheduler.running[holder]
        assert (running.gpus, h.scheduler.free_gpus) == (["GPU-0000"], set())

        # needs no instance, only the GPU; its operator checks that it is given that GPU
        job = h.submit(pipeline_text(command=["sh", "-c", 'test "$CUDA_VISIBLE_DEVICES" = GPU-0000'], gpu=1))
        h.scheduler.run_pass(1001.0)
        record = h.job(job)
        assert (record["state"], record["reason"]) == (
            "PENDING", "waiting for 1 GPU(s): 0 free, the others held by running jobs")

        h.launcher.gate.set()
        await h.ended(running)
        assert h.scheduler.free_gpus == {"GPU-0000"}
        h.scheduler.run_pass(1002.0)
        record = await h.ended(h.scheduler.running[job])
        assert (record["status"], record["reason"]) == ("HEALTHY", "all 1 operator(s) completed")
        assert h.scheduler.free_gpus == {"GPU-0000"}


@drive
async def test_a_running_job_past_its_deadline_is_faulted_and_its_operators_stopped(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        a = h.add_model("a")
        job = h.submit(pipeline_text(["a"], command=SLEEPER, timeout=30))
        h.scheduler.run_pass(1000.0)
        running = h.scheduler.running[job]
        pid = await h.operator_running(job)

        h.scheduler.run_pass(1029.9)  # not yet
        assert running.stop_reason is None and not gone(pid)
        h.scheduler.run_pass(1030.0)
        record = await h.ended(running)
        assert (record["status"], record["reason"]) == ("FAULTED", "timed out after 30 s")
        assert [(op["name"], op["state"], op["reason"]) for op in record["operators"]] == [
            ("infer", "FAULTED", "timed out after 30 s")]
        assert gone(pid) and h.store.children() == []
        # its instance was fully prepared: it goes back idle, warm
        assert {i.id: (i.state, i.job, i.loaded) for i in h.pool.instances.values()} == {
            "triton-0": (InstanceState.IDLE, None, {"a": a})}
        assert h.scheduler.running == {}


@drive
async def test_cancel_of_a_queued_job_stops_it_before_it_starts(tmp_path: Path) -> None:
    async with Harness(tmp_path, cpu_instances=1) as h:
        h.add_model("a")
        holder = h.submit(pipeline_text(["a"], command=SLEEPER))
        h.scheduler.run_pass(1000.0)
        waiting = h.submit(pipeline_text(["a"]))
        h.scheduler.run_pass(1001.0)
        assert h.scheduler.waiting(1001.0) == [waiting]

        h.scheduler.cancel(waiting)
        record = h.job(waiting)
        assert (record["state"], record["status"], record["reason"], record["started_at"]) == (
            "STOPPED", "CANCELED", "canceled before it started", None)
        assert (h.scheduler.waiting(1002.0), list(h.scheduler.running)) == ([], [holder])
        assert (h.layout.job_dir(waiting) / "status.json").is_file()
        with pytest.raises(ClaradError, match=f"job {waiting} is not queued or running here"):
            h.scheduler.cancel(waiting)


@drive
async def test_cancel_of_a_running_job_stops_its_operators_and_returns_its_instance(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        a = h.add_model("a")
        job = h.submit(pipeline_text(["a"], command=SLEEPER))
        h.scheduler.run_pass(1000.0)
        running = h.scheduler.running[job]
        pid = await h.operator_running(job)

        h.scheduler.cancel(job)
        record = await h.ended(running)
        assert (record["status"], record["reason"]) == ("CANCELED", "canceled")
        assert [(op["state"], op["reason"]) for op in record["operators"]] == [("FAULTED", "canceled")]
        assert gone(pid) and h.store.children() == []
        assert {i.id: (i.state, i.job, i.loaded) for i in h.pool.instances.values()} == {
            "triton-0": (InstanceState.IDLE, None, {"a": a})}


@drive
async def test_a_lost_instance_faults_its_job_at_once_naming_the_instance(tmp_path: Path) -> None:
    async with Harness(tmp_path, cpu_instances=1) as h:
        a = h.add_model("a")
        job = h.submit(pipeline_text(["a"], command=SLEEPER))
        h.scheduler.run_pass(1000.0)
        running = h.scheduler.running[job]
        pid = await h.operator_running(job)

        h.launcher.started[0].die()
        record = await h.ended(running)  # no pass, no deadline: the exit itself
        assert (record["status"], record["reason"]) == ("FAULTED", f"Triton instance triton-0 {KILLED}: modelled")
        assert gone(pid) and h.store.children() == []
        assert (h.pool.instances, h.pool.free_slots(), h.scheduler.running) == ({}, ["cpu-0"], {})

        # the slot is free again: the next job gets a new instance there
        again = h.submit(pipeline_text(["a"]))
        h.scheduler.run_pass(1001.0)
        record = await h.ended(h.scheduler.running[again])
        assert (record["status"], record["instance"], record["models"]) == ("HEALTHY", "triton-1", {"a": a})


@drive
async def test_the_pass_returns_the_seconds_to_the_nearest_deadline(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        assert h.scheduler.run_pass(1000.0) == 1.0  # nothing due: the idle period
        long = h.submit(pipeline_text(command=SLEEPER, timeout=30))
        short = h.submit(pipeline_text(command=SLEEPER, timeout=10))
        assert h.scheduler.run_pass(1000.0) == 1.0
        assert h.scheduler.run_pass(1009.5) == 0.5
        assert h.scheduler.run_pass(1010.0) == 1.0  # the short one timed out; the long one is 20 s away
        assert h.scheduler.running[short].stop_reason is not None
        assert h.scheduler.run_pass(1029.75) == 0.25
        assert h.scheduler.run_pass(1031.0) == 1.0
        for job in (long, short):
            record = await h.stopped(job)
            assert (record["status"], record["reason"]) == ("FAULTED", f"timed out after {30 if job == long else 10} s")


@drive
async def test_idle_instances_unload_models_removed_from_the_repository(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        a = h.add_model("a")
        h.add_model("b")
        job = h.submit(pipeline_text(["a", "b"]))
        h.scheduler.run_pass(1000.0)
        await h.ended(h.scheduler.running[job])

        h.store.remove_model("b")
        h.scheduler.run_pass(1001.0)
        server = h.launcher.started[0]
        assert h.scheduler.unloading == {("triton-0", "b")}
        h.scheduler.run_pass(1001.5)  # a second pass while it runs starts no second unload
        await until(lambda: not h.scheduler.unloading and not h.scheduler.background, "the unload to end")
        assert h.pool.instances["triton-0"].loaded == {"a": a}
        assert server.served == {"a": a}
        assert h.metrics.registry.get_sample_value("clarad_model_unloads_total", {"reason": "removed"}) == 1


@drive
async def test_an_instance_whose_unload_keeps_the_memory_is_recycled_when_next_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prepare, "RELEASE_WAIT", 0.05)
    async with Harness(tmp_path, max_models=1) as h:
        h.add_model("a")
        h.add_model("b")
        first = h.submit(pipeline_text(["a"]))
        h.launcher.gate = asyncio.Event()  # its load waits until the server's memory is set
        h.scheduler.run_pass(1000.0)
        server = await until(lambda: h.launcher.started and h.launcher.started[0], "the instance")
        server.memory, server.leaks = {"a": 100 << 20, "b": 10 << 20}, {"a"}
        h.launcher.gate.set()
        await h.ended(h.scheduler.running[first])

        second = h.submit(pipeline_text(["b"]))  # one model at most: a is unloaded to make room
        h.scheduler.run_pass(1001.0)
        running = h.scheduler.running[second]
        assert running.decision.unload == ("a",)
        record = await h.ended(running)
        assert (record["status"], record["instance"]) == ("HEALTHY", "triton-0")
        assert "triton-0" not in h.pool.instances and not server.alive  # replaced, not made idle
        assert h.metrics.registry.get_sample_value("clarad_instance_recycles_total", {"reason": "leak"}) == 1

        third = h.submit(pipeline_text(["b"]))
        h.scheduler.run_pass(1002.0)
        assert (await h.ended(h.scheduler.running[third]))["instance"] == "triton-1"  # a fresh process


@drive
async def test_a_job_waiting_for_its_gpu_finds_its_models_warmed(tmp_path: Path) -> None:
    gpu = Gpu(0, "GPU-0", "stand-in", 16 << 30)
    async with Harness(tmp_path, cpu_instances=1, gpus=[gpu, Gpu(1, "GPU-1", "stand-in", 16 << 30)]) as h:
        h.add_model("a")
        go = tmp_path / "go"
        holder = h.submit(pipeline_text([], command=["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.01; done"], gpu=2))
        h.scheduler.run_pass(1000.0)
        waiting = h.submit(pipeline_text(["a"], gpu=1))
        h.scheduler.run_pass(1001.0)  # its GPU is held: it waits, and an instance is warmed for it
        assert h.job(waiting)["state"] == "PENDING"
        warm = await until(lambda: next((i for i in h.pool.instances.values()
                                         if i.state is InstanceState.IDLE and "a" in i.loaded), None),
                           "an instance warmed with a")
        assert h.metrics.registry.get_sample_value("clarad_instance_prewarms_total") == 1
        go.write_text("")
        await h.ended(h.scheduler.running[holder])
        h.scheduler.run_pass(1002.0)
        running = h.scheduler.running[waiting]
        assert (running.instance, running.decision.load) == (warm, ())  # a hit: nothing left to load
        assert (await h.ended(running))["status"] == "HEALTHY"


@drive
async def test_a_warm_instance_that_stopped_answering_is_replaced_and_its_job_queued_again(tmp_path: Path) -> None:
    async with Harness(tmp_path, cpu_instances=2) as h:
        a = h.add_model("a")
        first = h.submit(pipeline_text(["a"]))
        h.scheduler.run_pass(1000.0)
        assert (await h.ended(h.scheduler.running[first]))["status"] == "HEALTHY"
        frozen = h.launcher.started[0]
        frozen.frozen = True  # modelled SIGSTOP while idle

        job = h.submit(pipeline_text(["a"]))
        h.scheduler.run_pass(1001.0)
        assert h.scheduler.running[job].instance.id == "triton-0"  # the best match, before its probe
        await until(lambda: h.scheduler.queue, "the job to be queued again")
        assert "did not answer a health probe" in h.job(job)["reason"]
        assert not frozen.alive  # stopped, not offered again
        h.scheduler.run_pass(1002.0)
        record = await h.ended(h.scheduler.running[job])
        assert (record["status"], record["instance"], record["models"]) == ("HEALTHY", "triton-1", {"a": a})


@drive
async def test_a_waiting_job_is_offered_again_only_when_what_its_answer_depends_on_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with Harness(tmp_path, cpu_instances=1) as h:
        h.add_model("a")
        b = h.add_model("b")
        asked: list[list[str]] = []

        def counted(wanted, *args, **kwargs):  # type: ignore[no-untyped-def]
            asked.append(list(wanted))
            return placement.decide(wanted, *args, **kwargs)

        monkeypatch.setitem(placement.POLICIES, "clarad", counted)
        h.launcher.gate = asyncio.Event()  # the first job holds the only instance until the test says
        first = h.submit(pipeline_text(["a"]))
        h.scheduler.run_pass(1000.0)
        waiting = [h.submit(pipeline_text(["b"])) for _ in range(3)]
        h.scheduler.run_pass(1001.0)
        assert asked == [["a"], ["b"]]  # the three jobs wanting b get placement's one answer
        assert {h.job(job)["reason"] for job in waiting} == {
            "waiting for an instance: all 1 instance(s) are leased and no slot is free"}

        h.scheduler.run_pass(1002.0)
        assert asked == [["a"], ["b"]]  # nothing changed: no job offered again

        h.costs.record("a", h.store.model_digests()["a"], "cpu", 2.0, 1000, 1003.0)  # no waiting job wants a
        h.scheduler.run_pass(1003.0)
        assert asked == [["a"], ["b"]]
        h.costs.record("b", b, "cpu", 2.0, 1000, 1003.0)  # b's load measured: placement may answer otherwise
        h.scheduler.run_pass(1003.0)
        assert asked == [["a"], ["b"], ["b"]]

        h.store.remove_model("b")  # the repository changed: the jobs are faulted though nothing is free
        h.scheduler.run_pass(1004.0)
        assert [(h.job(job)["status"], h.job(job)["reason"]) for job in waiting] == [
            ("FAULTED", "model(s) b no longer in the repository")] * 3
        assert list(h.scheduler.queue) == [] and first in h.scheduler.running
        h.launcher.gate.set()
        assert (await h.ended(h.scheduler.running[first]))["status"] == "HEALTHY"


@drive
async def test_jobs_beyond_max_running_jobs_wait_saying_so_and_start_as_room_comes(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        h.scheduler.settings = h.settings.model_copy(update={"max_running_jobs": 2})
        jobs = [h.submit(pipeline_text(command=SLEEPER)) for _ in range(4)]  # no model: no instance bounds them
        h.scheduler.run_pass(1000.0)
        started = set(h.scheduler.running)
        assert len(started) == 2
        waiting = [job for job in jobs if job not in started]
        assert [h.job(job)["reason"] for job in waiting] == ["waiting: 2 jobs are running (max_running_jobs)"] * 2
        pids = [await h.operator_running(job) for job in started]
        assert all(psutil.pid_exists(pid) for pid in pids)

        ended = sorted(started)[0]
        h.scheduler.cancel(ended)
        await until(lambda: ended not in h.scheduler.running, "the canceled job to end")
        h.scheduler.run_pass(1001.0)
        assert len(h.scheduler.running) == 2 and len(set(h.scheduler.running) & set(waiting)) == 1
