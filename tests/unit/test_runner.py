"""A job's life in the runner, against the modelled Triton and real operator processes: the
placement decision carried out as given (loads, unloads, nothing recomputed), each load checked
against the revision the instance serves, the revisions recorded, and an instance that was not fully
prepared for its job stopped rather than made idle."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Optional

from clarad import placement
from clarad.jobs import JobStatus
from clarad.placement import Action, Decision
from clarad.pool import InstanceState
from clarad.runner import Lease, RunningJob
from tests.unit.driving import Harness, drive, pipeline_text, until

S = InstanceState


def begin(h: Harness, job_id: str, decision: Optional[Decision] = None) -> RunningJob:
    """Start the job as the scheduler would: with the decision placement gives now, unless one is given."""
    job = h.queued(job_id)
    if decision is None:
        decision = placement.decide(job.pipeline.model_names, h.store.model_digests(), h.pool.views(),
                                    h.pool.free_slots(), h.settings.max_models_per_instance)
    models = tuple(dict.fromkeys(job.pipeline.model_names))
    leases = [] if decision.action is Action.NONE else [Lease(h.pool.lease(decision, job_id), decision, models)]
    return h.runner.start(job, leases, [], 1000.0)


def instances(h: Harness) -> dict[str, tuple[InstanceState, Optional[str], dict[str, str]]]:
    return {i.id: (i.state, i.job, dict(i.loaded)) for i in h.pool.instances.values()}


@drive
async def test_a_new_instance_loads_exactly_the_decisions_models_and_the_job_records_them(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        a, b = h.add_model("a"), h.add_model("b")
        job = h.create_job(pipeline_text(["a", "b"], command=["sh", "-c", "echo $NVIDIA_TRITON_GRPCURI > uri"]))
        running = begin(h, job)
        assert (running.decision.action, running.decision.load) == (Action.START, ("a", "b"))
        record = await h.ended(running)

        assert (record["status"], record["instance"], record["models"]) == ("HEALTHY", "triton-0", {"a": a, "b": b})
        (server,) = h.launcher.started
        assert server.loads == list(running.decision.load)
        assert server.asked == [("a", None, a), ("b", None, b)]
        assert server.served == {"a": a, "b": b}
        assert instances(h) == {"triton-0": (S.IDLE, None, {"a": a, "b": b})}
        # the operator ran after the instance was ready, and was told where it is
        assert (h.layout.job_dir(job) / "uri").read_text().strip() == server.ports.grpc_uri


@drive
async def test_a_model_already_at_the_current_revision_is_not_loaded_again(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        a, b1 = h.add_model("a"), h.add_model("b")
        await h.ended(begin(h, h.create_job(pipeline_text(["a", "b"]))))
        (server,) = h.launcher.started

        warm = begin(h, h.create_job(pipeline_text(["a", "b"])))
        assert (warm.decision.action, warm.decision.load) == (Action.REUSE, ())
        assert (await h.ended(warm))["models"] == {"a": a, "b": b1}
        assert server.loads == ["a", "b"]

        b2 = h.add_model("b")
        replaced = begin(h, h.create_job(pipeline_text(["a", "b"])))
        assert replaced.decision.load == ("b",)
        assert (await h.ended(replaced))["models"] == {"a": a, "b": b2}
        assert server.loads == ["a", "b", "b"]
        assert server.asked[-1] == ("b", b1, b2)
        assert h.pool.instances["triton-0"].loads == {"a": 1, "b": 2}


@drive
async def test_the_runner_unloads_and_loads_what_the_decision_says_and_nothing_else(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        a, b, c = h.add_model("a"), h.add_model("b"), h.add_model("c")
        await h.ended(begin(h, h.create_job(pipeline_text(["a", "c"]))))
        job = h.create_job(pipeline_text(["a", "b"]))
        # placement would keep c (there is room for 8); the runner does what it is given, not what it would decide
        given = Decision(Action.REUSE, "given", instance="triton-0", load=("b",), unload=("c",))
        assert placement.decide(["a", "b"], h.store.model_digests(), h.pool.views(), [], 8).unload == ()

        record = await h.ended(begin(h, job, given))
        (server,) = h.launcher.started
        assert (record["status"], record["models"]) == ("HEALTHY", {"a": a, "b": b})
        assert (server.loads, server.served) == (["a", "c", "b"], {"a": a, "b": b})
        assert instances(h) == {"triton-0": (S.IDLE, None, {"a": a, "b": b})}
        assert c not in server.served.values()


@drive
async def test_a_model_replaced_while_it_loads_is_loaded_again_at_the_new_revision(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        h.add_model("a")
        await h.ended(begin(h, h.create_job(pipeline_text(["a"]))))
        (server,) = h.launcher.started
        a1, a2 = h.store.model_digests()["a"], h.add_model("a")
        server.gate = asyncio.Event()
        running = begin(h, h.create_job(pipeline_text(["a"])))
        await until(lambda: server.held == {"a"}, "the load of revision 2 to start")
        a3 = h.add_model("a")  # while Triton reads revision 2's files
        server.gate.set()

        record = await h.ended(running)
        assert (record["status"], record["models"]) == ("HEALTHY", {"a": a3})
        assert server.asked[1:] == [("a", a1, a2), ("a", a2, a3)]
        assert server.served == {"a": a3}


@drive
async def test_a_job_records_the_revisions_its_instance_serves_when_a_model_is_replaced_during_its_preparation(
        tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        h.add_model("a")
        b1 = h.add_model("b")
        await h.ended(begin(h, h.create_job(pipeline_text(["a", "b"]))))
        (server,) = h.launcher.started
        a2 = h.add_model("a")
        server.gate = asyncio.Event()
        running = begin(h, h.create_job(pipeline_text(["a", "b"])))
        assert running.decision.load == ("a",)  # b was current when the job was placed
        await until(lambda: server.held == {"a"}, "the load of a to start")
        h.add_model("b")  # replaced after placement: not this job's to load
        server.gate.set()

        record = await h.ended(running)
        assert (record["status"], record["models"]) == ("HEALTHY", {"a": a2, "b": b1})
        assert server.served == {"a": a2, "b": b1}


@drive
async def test_a_stale_served_revision_faults_the_job_and_stops_the_instance(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        a1 = h.add_model("a")
        await h.ended(begin(h, h.create_job(pipeline_text(["a"]))))
        (server,) = h.launcher.started
        a2 = h.add_model("a")
        server.stale = {"a"}  # Triton keeps serving the revision it had

        record = await h.ended(begin(h, h.create_job(pipeline_text(["a"]))))
        reason = f"instance triton-0 serves model a at revision {a1[:12]} after loading revision {a2[:12]}"
        assert (record["status"], record["reason"], record["models"]) == ("FAULTED", reason, {})
        assert [(op["state"], op["started_at"]) for op in record["operators"]] == [("FAULTED", None)]
        assert (instances(h), h.pool.free_slots(), server.alive) == ({}, ["cpu-0"], False)


@drive
async def test_a_failing_load_faults_the_job_and_stops_the_instance_instead_of_idling_it(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        h.add_model("a")
        h.add_model("b")
        await h.ended(begin(h, h.create_job(pipeline_text(["a"]))))
        (server,) = h.launcher.started
        server.failing = {"b"}

        record = await h.ended(begin(h, h.create_job(pipeline_text(["a", "b"]))))
        assert (record["status"], record["reason"], record["models"]) == (
            "FAULTED", "loading b on triton-0 failed: modelled failure", {})
        assert (instances(h), h.pool.free_slots()) == ({}, ["cpu-0"])
        assert (server.alive, server.exit_reason) == (False, "exited with code 0")  # stopped by the pool


@drive
async def test_an_instance_that_fails_to_start_is_stopped_and_its_job_faulted(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        h.add_model("a")
        h.launcher.fail_next = "no such backend"
        record = await h.ended(begin(h, h.create_job(pipeline_text(["a"]))))
        assert (record["status"], record["reason"]) == (
            "FAULTED", "tritonserver triton-0 exited with code 1: no such backend")
        assert (instances(h), h.pool.free_slots(), h.launcher.started) == ({}, ["cpu-0"], [])


@drive
async def test_a_started_instance_never_prepared_is_stopped_when_its_job_stops(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        h.add_model("a")
        h.launcher.gate = asyncio.Event()  # the load never finishes
        running = begin(h, h.create_job(pipeline_text(["a"])))
        await until(lambda: h.launcher.started and h.launcher.started[0].held == {"a"}, "the load to start")
        (server,) = h.launcher.started
        assert instances(h) == {"triton-0": (S.LOADING, running.job.id, {})}

        running.stop(JobStatus.CANCELED, "canceled")
        record = await h.ended(running)
        assert (record["status"], record["reason"], record["models"]) == ("CANCELED", "canceled", {})
        assert (instances(h), server.alive, server.loads, server.held) == ({}, False, [], set())


@drive
async def test_a_job_stopped_before_it_began_ends_with_that_reason_and_its_slot_is_freed(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        h.add_model("a")
        running = begin(h, h.create_job(pipeline_text(["a"])))
        running.stop(JobStatus.FAULTED, "timed out after 1 s")
        running.stop(JobStatus.CANCELED, "canceled")  # the first reason is the one the job ends with
        record = await h.ended(running)
        assert (record["status"], record["reason"]) == ("FAULTED", "timed out after 1 s")
        assert (instances(h), h.pool.free_slots(), h.launcher.started) == ({}, ["cpu-0"], [])


@drive
async def test_an_operator_that_fails_faults_the_job_but_its_prepared_instance_goes_back_idle(tmp_path: Path) -> None:
    async with Harness(tmp_path) as h:
        a = h.add_model("a")
        job = h.create_job(pipeline_text(["a"], command=["false"]))
        record = await h.ended(begin(h, job))
        assert (record["status"], record["reason"]) == (
            "FAULTED", f'operator "infer" exited with code 1 (log: jobs/{job}/logs/infer.log)')
        assert record["models"] == {"a": a}
        assert instances(h) == {"triton-0": (S.IDLE, None, {"a": a})}
