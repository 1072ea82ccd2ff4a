"""``nvidia.clara.platform.Jobs``: jobs through Clara's API, Clara's way: create, fill the payload,
start, poll the status, read the logs.

Create makes a job of the store that is *held*: PENDING, with its (empty, or copied from the given
reusable payloads) input in jobs/<id>/input/, not queued, not even after a restart, until Start
releases it to the scheduler. The job's payload id is the job's id (see payloads.py). A job that
was never started can be canceled. A running job has no status yet in clarad; Clara calls it
HEALTHY, and so does this API. Start's variables would fill Clara's pipeline parameters, which
clarad does not have: they are refused.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from clarad import metadata
from clarad.api.common import (
    CHUNK,
    NotFound,
    Unsupported,
    add_metadata,
    answers,
    identifier,
    ok,
    remove_metadata,
    streams,
    timestamp,
)
from clarad.api.protos import common_pb2, jobs_pb2, jobs_pb2_grpc
from clarad.api.rules import CLARA_PRIORITY, CLARAD_PRIORITY, JobFilter, job_matches, unix_time
from clarad.errors import ClaradError, RejectedDrop
from clarad.jobs import JobState, Priority
from clarad.pipelines import Pipeline, parse_pipeline
from clarad.store import new_id

if TYPE_CHECKING:
    from clarad.daemon import Daemon

J = jobs_pb2
LIST_LIMIT = 1000  # the newest jobs List looks at (the store is read on the loop)


def state(job: dict[str, Any]) -> Any:
    return J.JobState.Value(f"JOB_STATE_{job['state']}")


def status(job: dict[str, Any]) -> Any:
    return J.JobStatus.Value(f"JOB_STATUS_{job['status'] or 'HEALTHY'}")


def priority(job: dict[str, Any]) -> Any:
    return J.JobPriority.Value(f"JOB_PRIORITY_{CLARA_PRIORITY[job['priority']]}")


def _text_time(unix: Optional[float]) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(unix)) if unix else ""


class JobsService(jobs_pb2_grpc.JobsServicer):
    def __init__(self, daemon: "Daemon") -> None:
        self.d = daemon

    def find(self, job_id: common_pb2.Identifier) -> dict[str, Any]:
        if not job_id.value:
            raise ClaradError("job_id is empty: give a job's id")
        job = self.d.store.job(job_id.value)
        if job is None:
            raise NotFound(f"no job {job_id.value!r}")
        return job

    def _pipeline_ids(self) -> dict[str, str]:
        return {p["name"].lower(): p["id"] for p in self.d.store.pipelines()}

    @answers(J.JobsCreateResponse)
    async def Create(self, request: Any, context: Any) -> Any:
        pipeline = self.d.store.find_pipeline(request.pipeline_id.value) if request.pipeline_id.value else None
        if pipeline is None:
            raise NotFound(f"no pipeline {request.pipeline_id.value!r}")
        wanted = J.JobPriority.Name(request.priority).removeprefix("JOB_PRIORITY_")
        chosen = Priority(CLARAD_PRIORITY.get(wanted, "normal"))
        tags = metadata.add({}, request.metadata.items(), "the job")
        sources = [self._reusable(payload.value) for payload in request.input_payloads]
        staging = self.d.layout.staging / f"job-{new_id()}"
        staging.mkdir(mode=0o700)
        try:
            payload = staging / "input"
            await asyncio.to_thread(_gather, sources, payload)
            job = await self.d.ingest.create_job(pipeline["name"], payload, request.name or pipeline["name"], chosen,
                                                 held=True)
        except RejectedDrop as exc:
            raise ClaradError(str(exc)) from None
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
        if tags:
            self.d.store.replace_metadata("job", job.id, tags)
        return J.JobsCreateResponse(header=ok(), job_id=identifier(job.id), payload_id=identifier(job.id))

    def _reusable(self, payload_id: str) -> Path:
        folder = self.d.layout.payloads / payload_id
        if not payload_id.isalnum() or not folder.is_dir():
            raise NotFound(f"no reusable payload {payload_id!r} (Payloads.Create makes one)")
        return folder

    @answers(J.JobsStartResponse)
    async def Start(self, request: Any, context: Any) -> Any:
        job = self.find(request.job_id)
        if request.Variables:
            raise Unsupported("Start: clarad resolves a job's pipeline parameters when the job is created "
                              "(clarad jobs create --param NAME=VALUE), not from Start's variables")
        if not job["held"]:
            raise ClaradError(f"job {job['id']} was started already (it is {job['state']})")
        self.d.store.release_job(job["id"])
        self.d.scheduler.enqueue(job["id"])
        job = self.find(request.job_id)
        return J.JobsStartResponse(header=ok(), priority=priority(job), state=state(job), status=status(job))

    @answers(J.JobsCancelResponse)
    async def Cancel(self, request: Any, context: Any) -> Any:
        job = self.find(request.job_id)
        if job["state"] == JobState.STOPPED.value:
            raise ClaradError(f"job {job['id']} has already stopped ({job['status']})")
        self.d.scheduler.cancel(job["id"])
        job = self.find(request.job_id)
        return J.JobsCancelResponse(header=ok(), job_id=identifier(job["id"]), job_state=state(job),
                                    job_status=status(job))

    @answers(J.JobsStatusResponse)
    async def Status(self, request: Any, context: Any) -> Any:
        job = self.find(request.job_id)
        operators = [J.JobsStatusResponse.JobOperatorDetails(
            name=op["name"], status=J.JobOperatorStatus.Value(f"JOB_OPERATOR_STATUS_{op['state']}"),
            created=timestamp(job["created_at"]), started=timestamp(op["started_at"]),
            stopped=timestamp(op["stopped_at"])) for op in job["operators"]]
        return J.JobsStatusResponse(
            header=ok(), job_id=identifier(job["id"]), payload_id=identifier(job["id"]),
            pipeline_id=identifier(self._pipeline_ids().get(job["pipeline"].lower(), "")),
            state=state(job), status=status(job), name=job["name"], priority=priority(job),
            created=timestamp(job["created_at"]), started=timestamp(job["started_at"]),
            stopped=timestamp(job["stopped_at"]), operator_details=operators, dag=self._dag(job["id"]),
            metadata=self.d.store.metadata("job", job["id"]), messages=[job["reason"]] if job["reason"] else [],
            timestamp_created=_text_time(job["created_at"]), timestamp_started=_text_time(job["started_at"]),
            timestamp_stopped=_text_time(job["stopped_at"]))

    def _dag(self, job_id: str) -> list[Any]:
        """Each operator with the operators it reads from (Clara's input dependencies)."""
        try:
            pipeline: Pipeline = parse_pipeline((self.d.layout.job_dir(job_id) / "pipeline.yaml").read_text())
        except (OSError, ClaradError):
            return []

        def node(name: str, depth: int) -> Any:
            before = sorted(pipeline.operator(name).upstream) if depth < len(pipeline.operators) else []
            return J.JobsStatusResponse.JobDagNode(name=name, input_dependencies=[node(n, depth + 1) for n in before])

        return [node(op.name, 0) for op in pipeline.operators]

    @streams(J.JobsListResponse)
    async def List(self, request: Any, context: Any) -> AsyncIterator[Any]:
        ids = self._pipeline_ids()
        names = {pid: name for name, pid in ids.items()}
        wanted = JobFilter(
            states=frozenset(J.JobState.Name(s).removeprefix("JOB_STATE_") for s in request.filter.has_state),
            statuses=frozenset(J.JobStatus.Name(s).removeprefix("JOB_STATUS_") for s in request.filter.has_status),
            pipelines=frozenset(names.get(p.value, p.value.lower()) for p in request.filter.pipeline_id),
            created_after=unix_time(request.filter.created_after.value),
            completed_before=unix_time(request.filter.completed_before.value))
        jobs = [job for job in self.d.store.jobs(LIST_LIMIT) if job_matches(job, wanted)]
        for job in jobs:
            details = J.JobsListResponse.JobDetails(
                job_id=identifier(job["id"]), payload_id=identifier(job["id"]),
                pipeline_id=identifier(ids.get(job["pipeline"].lower(), "")), job_name=job["name"],
                state=state(job), status=status(job), priority=priority(job), created=timestamp(job["created_at"]),
                started=timestamp(job["started_at"]), stopped=timestamp(job["stopped_at"]),
                metadata=self.d.store.metadata("job", job["id"]), timestamp_created=_text_time(job["created_at"]),
                timestamp_started=_text_time(job["started_at"]), timestamp_stopped=_text_time(job["stopped_at"]))
            yield J.JobsListResponse(header=ok(), job_details=details)
        if not jobs:
            yield J.JobsListResponse(header=ok())

    @streams(J.JobsReadLogsResponse)
    async def ReadLogs(self, request: Any, context: Any) -> AsyncIterator[Any]:
        job = self.find(request.job_id)
        if request.operator_name not in [op["name"] for op in job["operators"]]:
            raise NotFound(f"job {job['id']} has no operator {request.operator_name!r}")
        path = self.d.layout.job_dir(job["id"]) / "logs" / f"{request.operator_name}.log"
        header = dict(header=ok(), job_id=identifier(job["id"]), operator_name=request.operator_name)
        if not path.is_file():
            yield J.JobsReadLogsResponse(**header)
            return
        with await asyncio.to_thread(open, path, encoding="utf-8", errors="replace") as handle:
            while lines := await asyncio.to_thread(handle.readlines, CHUNK):
                yield J.JobsReadLogsResponse(**header, logs=[line.rstrip("\n") for line in lines])

    @answers(J.JobsAddMetadataResponse)
    async def AddMetadata(self, request: Any, context: Any) -> Any:
        job = self.find(request.job_id)
        result = add_metadata(self.d.store, "job", job["id"], f"job {job['id']}", request.metadata.items())
        return J.JobsAddMetadataResponse(header=ok(), job_id=identifier(job["id"]), metadata=result)

    @answers(J.JobsRemoveMetadataResponse)
    async def RemoveMetadata(self, request: Any, context: Any) -> Any:
        job = self.find(request.job_id)
        result = remove_metadata(self.d.store, "job", job["id"], f"job {job['id']}", request.keys)
        return J.JobsRemoveMetadataResponse(header=ok(), job_id=identifier(job["id"]), metadata=result)


def _gather(sources: list[Path], target: Path) -> None:
    """A job's input: the files of every given reusable payload (later ones win), or nothing."""
    target.mkdir()
    for source in sources:
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
