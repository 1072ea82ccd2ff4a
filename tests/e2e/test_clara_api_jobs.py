"""Clara's Pipelines, Jobs and Payloads services against a running `clarad run` and a real Triton,
first with the raw stubs of Clara's client, then with the high-level wrappers of it that work.

One daemon serves the module; each test uploads its own model and creates its own pipeline.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.clara_client import (
    HEADER,
    Stubs,
    affine_model,
    as_dict,
    demo_pipeline_for,
    identifier,
    jobs_pb2,
    payloads_pb2,
    pipelines_pb2,
    zip_of,
)
from tests.e2e.clarad_process import Clarad
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def clarad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clarad]:
    daemon = Clarad(tmp_path_factory.mktemp("api-jobs") / "state").start()
    yield daemon
    if daemon.proc and daemon.proc.poll() is None:
        daemon.stop()


@pytest.fixture
def api(clarad: Clarad) -> Iterator[Stubs]:
    stubs = Stubs(f"127.0.0.1:{clarad.api_port}")
    yield stubs
    stubs.close()


def pipeline_with_model(api: Stubs, tmp_path: Path, name: str, model: str) -> str:
    """Upload a copy of the demo model as ``model`` and create the demo pipeline as ``name``; its id."""
    assert api.upload_model(model, zip_of(affine_model(tmp_path, model))).header.code == 0
    created = api.create_pipeline(demo_pipeline_for(name, model, sys.executable))
    assert created.header.code == 0, created.header.messages
    return str(created.pipeline_id.value)


def wait_stopped(api: Stubs, job_id: str) -> Any:
    return wait_for(lambda: (s := api.status(job_id)).state == jobs_pb2.JOB_STATE_STOPPED and s, 120,
                    f"job {job_id} to stop")


def test_pipeline_is_created_listed_and_detailed_with_its_dag(api: Stubs, tmp_path: Path) -> None:
    pipeline_id = pipeline_with_model(api, tmp_path, "api-details", "affine_details")
    listed = [r.details for r in api.pipelines.List(pipelines_pb2.PipelinesListRequest(header=HEADER))]
    assert [(d.pipeline_id.value, d.name) for d in listed if d.name == "api-details"] == [(pipeline_id, "api-details")]
    details = list(api.pipelines.Details(pipelines_pb2.PipelinesDetailsRequest(
        header=HEADER, pipeline_id=identifier(pipeline_id))))
    assert [r.header.code for r in details] == [0]
    assert "name: api-details" in details[0].definition.content
    assert [(n.name, [m.name for m in n.next]) for n in details[0].dag] == [("prepare", ["infer"])]


def test_refused_pipeline_answers_the_reason_a_dropped_one_gets(api: Stubs) -> None:
    created = api.create_pipeline("api-version: 0.4.0\nname: broken\noperators:\n- name: a\n  command: [x]\n"
                                  "  input:\n  - from: nowhere\n")
    assert created.header.code == -1 and "nowhere" in created.header.messages[0]
    missing = list(api.pipelines.Details(pipelines_pb2.PipelinesDetailsRequest(
        header=HEADER, pipeline_id=identifier("f" * 32))))
    assert [r.header.code for r in missing] == [-2]


def test_job_created_filled_started_and_polled_to_healthy_gives_its_output(
        clarad: Clarad, api: Stubs, tmp_path: Path) -> None:
    pipeline_id = pipeline_with_model(api, tmp_path, "api-job", "affine_job")
    created = api.jobs.Create(jobs_pb2.JobsCreateRequest(header=HEADER, pipeline_id=identifier(pipeline_id),
                                                         name="four-values", priority=jobs_pb2.JOB_PRIORITY_HIGHER))
    assert created.header.code == 0, created.header.messages
    job_id, payload_id = created.job_id.value, created.payload_id.value
    assert api.status(job_id).state == jobs_pb2.JOB_STATE_PENDING
    assert api.upload_payload(payload_id, "values/four.txt", b"1 2 3 4\n").header.code == 0

    started = api.jobs.Start(jobs_pb2.JobsStartRequest(header=HEADER, job_id=identifier(job_id)))
    assert (started.header.code, started.priority) == (0, jobs_pb2.JOB_PRIORITY_HIGHER)
    status = wait_stopped(api, job_id)
    assert (status.status, status.name, status.pipeline_id.value) == (jobs_pb2.JOB_STATUS_HEALTHY, "four-values",
                                                                      pipeline_id), status.messages
    assert [(o.name, o.status) for o in status.operator_details] == [
        ("prepare", jobs_pb2.JOB_OPERATOR_STATUS_COMPLETED), ("infer", jobs_pb2.JOB_OPERATOR_STATUS_COMPLETED)]
    assert status.stopped.value >= status.started.value >= status.created.value > 62_135_596_800

    files = [r.file.name for r in api.payloads.Details(payloads_pb2.PayloadsDetailsRequest(
        header=HEADER, payload_id=identifier(payload_id)))]
    assert {"values/four.txt", "operators/infer/result.json"} <= set(files)
    first, data = api.download_payload(payload_id, "operators/infer/result.json")
    assert (first.header.code, first.details.size) == (0, len(data))
    assert json.loads(data)["y"] == [3.0, 5.0, 7.0, 9.0]  # affine: 2x + 1, computed by Triton

    late = api.upload_payload(payload_id, "more.txt", b"5\n")
    assert late.header.code == -1 and "read-only" in late.header.messages[0]
    logs = [line for r in api.jobs.ReadLogs(jobs_pb2.JobsReadLogsRequest(
        header=HEADER, job_id=identifier(job_id), operator_name="prepare")) for line in r.logs]
    assert "prepare: 4 number(s)" in logs
    listed = [r.job_details for r in api.jobs.List(jobs_pb2.JobsListRequest(header=HEADER))]
    assert [(j.state, j.status) for j in listed if j.job_id.value == job_id] == [
        (jobs_pb2.JOB_STATE_STOPPED, jobs_pb2.JOB_STATUS_HEALTHY)]
    shown = clarad.ask("jobs.show", id=job_id)
    assert (shown["priority"], shown["status"]) == ("high", "HEALTHY")


def test_reusable_payload_feeds_a_job_and_a_held_job_can_be_canceled(api: Stubs, tmp_path: Path) -> None:
    pipeline_id = pipeline_with_model(api, tmp_path, "api-reuse", "affine_reuse")
    payload = api.payloads.Create(payloads_pb2.PayloadsCreateRequest(header=HEADER))
    assert (payload.header.code, payload.type) == (0, payloads_pb2.PAYLOAD_TYPE_REUSABLE)
    assert api.upload_payload(payload.payload_id.value, "x.txt", b"10\n").header.code == 0
    created = api.jobs.Create(jobs_pb2.JobsCreateRequest(header=HEADER, pipeline_id=identifier(pipeline_id),
                                                         name="reused", input_payloads=[payload.payload_id]))
    assert api.jobs.Start(jobs_pb2.JobsStartRequest(header=HEADER, job_id=created.job_id)).header.code == 0
    assert wait_stopped(api, created.job_id.value).status == jobs_pb2.JOB_STATUS_HEALTHY
    _, data = api.download_payload(created.payload_id.value, "operators/infer/result.json")
    assert json.loads(data)["y"] == [21.0]

    held = api.jobs.Create(jobs_pb2.JobsCreateRequest(header=HEADER, pipeline_id=identifier(pipeline_id), name="no"))
    canceled = api.jobs.Cancel(jobs_pb2.JobsCancelRequest(header=HEADER, job_id=held.job_id))
    assert (canceled.header.code, canceled.job_state, canceled.job_status) == (
        0, jobs_pb2.JOB_STATE_STOPPED, jobs_pb2.JOB_STATUS_CANCELED)
    deleted = api.payloads.Delete(payloads_pb2.PayloadsDeleteRequest(header=HEADER, payload_id=payload.payload_id))
    assert deleted.header.code == 0
    gone = list(api.payloads.Details(payloads_pb2.PayloadsDetailsRequest(header=HEADER, payload_id=payload.payload_id)))
    assert [r.header.code for r in gone] == [-2]


def test_payload_names_leading_outside_are_refused_and_start_variables_are_not_supported(
        api: Stubs, tmp_path: Path) -> None:
    pipeline_id = pipeline_with_model(api, tmp_path, "api-names", "affine_names")
    created = api.jobs.Create(jobs_pb2.JobsCreateRequest(header=HEADER, pipeline_id=identifier(pipeline_id), name="n"))
    escape = api.upload_payload(created.payload_id.value, "../../clarad.db", b"x")
    assert escape.header.code == -1 and "without '..'" in escape.header.messages[0]
    variables = api.jobs.Start(jobs_pb2.JobsStartRequest(
        header=HEADER, job_id=created.job_id, Variables=[jobs_pb2.JobsStartRequest.NamedValue(name="a", value="b")]))
    assert variables.header.code == -3 and "not from Start's variables" in variables.header.messages[0]
    metadata = jobs_pb2.JobsAddMetadataRequest(header=HEADER, job_id=created.job_id)
    metadata.metadata.add(key="study", value="42")
    assert as_dict(api.jobs.AddMetadata(metadata).metadata) == {"study": "42"}


def test_the_wrappers_of_claras_client_that_work_run_a_job(api: Stubs, tmp_path: Path) -> None:
    """ClaraClient.version, PipelinesClient.create_pipeline/list_pipelines, JobsClient.create_job/
    start_job/get_status/list_jobs, PayloadsClient.upload/download_from/get_details."""
    from nvidia_clara import ClaraClient, JobsClient, PayloadsClient, PipelinesClient, pipeline_types

    assert api.upload_model("affine_wrap", zip_of(affine_model(tmp_path, "affine_wrap"))).header.code == 0
    target = api.channel._channel.target().decode()  # the same host:port
    assert ClaraClient(target).version().label.startswith("clarad")
    pipelines, jobs, payloads = PipelinesClient(target), JobsClient(target), PayloadsClient(target)
    definition = demo_pipeline_for("api-wrapped", "affine_wrap", sys.executable)
    pipeline_id = pipelines.create_pipeline([pipeline_types.PipelineDefinition(name="p.yaml", content=definition)])
    assert "api-wrapped" in [p.name for p in pipelines.list_pipelines()]
    job = jobs.create_job(pipeline_id, "wrapped")
    source = tmp_path / "values.txt"
    source.write_text("0 1\n")
    payloads.upload(job.payload_id, "values.txt", file_path=str(source))
    jobs.start_job(job.job_id)
    wait_for(lambda: jobs.get_status(job.job_id).job_state == 3, 120, "the wrapped job to stop")
    assert jobs.get_status(job.job_id).job_status == 1  # HEALTHY (the wrapper gives the number)
    assert job.job_id.value in [j.job_id.value for j in jobs.list_jobs()]
    assert "operators/infer/result.json" in [f.name for f in payloads.get_details(job.payload_id).file_details]
    out = tmp_path / "result.json"
    payloads.download_from(job.payload_id, "operators/infer/result.json", dest_path=str(out))
    assert json.loads(out.read_text())["y"] == [1.0, 3.0]
