"""Pure translations between clarad's records and Clara's API: times, names, priorities, job
filters, DAGs, payload file names. No protobuf here, so these are tested on their own.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any, Optional

from clarad.errors import ClaradError
from clarad.pipelines import Pipeline

# Clara's Timestamp is seconds since 0001-01-01T00:00:00Z (a .NET DateTime); Unix time starts here.
UNIX_EPOCH_FROM_YEAR_ONE = 62_135_596_800

# clarad's priorities and Clara's JobPriority names (JOB_PRIORITY_<name>).
CLARA_PRIORITY = {"low": "LOWER", "normal": "NORMAL", "high": "HIGHER", "immediate": "IMMEDIATE"}
CLARAD_PRIORITY = {clara: ours for ours, clara in CLARA_PRIORITY.items()}

# A job's payload as Clara showed it: the files it was given at its root, each operator's output
# under operators/<operator>/. clarad keeps the former in the job's input/ folder.
OUTPUTS = "operators"
INPUT = "input"


def clara_seconds(unix: Optional[float]) -> int:
    """A Clara Timestamp's value for a Unix time; 0 (never) for None."""
    return int(unix) + UNIX_EPOCH_FROM_YEAR_ONE if unix else 0


def unix_time(clara: int) -> Optional[float]:
    """The Unix time of a Clara Timestamp's value; None for 0 (unset)."""
    return float(clara - UNIX_EPOCH_FROM_YEAR_ONE) if clara else None


def version_numbers(version: str) -> tuple[int, int, int, str]:
    """(major, minor, patch, label) of a version such as ``0.1.0`` or ``1.2.3rc1``."""
    match = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?(.*)", version)
    if match is None:
        return 0, 0, 0, version
    major, minor, patch, label = match.groups()
    return int(major), int(minor or 0), int(patch or 0), label.lstrip(".-+")


def payload_file(name: str) -> str:
    """A payload file's name, checked: a relative path of at most 4096 bytes without ``..``,
    backslashes or control characters; returned in normal form (``a/./b`` is ``a/b``)."""
    if not name or len(name.encode()) > 4096:
        raise ClaradError(f"payload file name {name[:60]!r}: 1 to 4096 bytes")
    if any(ord(c) < 32 or ord(c) == 127 for c in name) or "\\" in name:
        raise ClaradError(f"payload file name {name!r}: control characters and backslashes are refused")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts or not parts:
        raise ClaradError(f"payload file name {name!r}: give a path relative to the payload, without '..'")
    return posixpath.join(*parts)


def job_payload_place(name: str) -> tuple[str, str]:
    """Where a file of a job's payload lives in the job's folder: (``input`` or ``operators``, path)."""
    clean = payload_file(name)
    if clean == OUTPUTS or clean.startswith(OUTPUTS + "/"):
        return OUTPUTS, clean[len(OUTPUTS) + 1:]
    return INPUT, clean


@dataclass(frozen=True)
class JobFilter:
    """Clara's JobsListRequest.JobFilter, in clarad's words (empty sets match everything)."""

    states: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()
    pipelines: frozenset[str] = frozenset()  # names
    created_after: Optional[float] = None
    completed_before: Optional[float] = None


def job_matches(job: dict[str, Any], wanted: JobFilter) -> bool:
    """Whether a job record passes Clara's filter. A job still running has no status (Clara calls
    it HEALTHY), and has not completed before any time."""
    status = job["status"] or "HEALTHY"
    return ((not wanted.states or job["state"] in wanted.states)
            and (not wanted.statuses or status in wanted.statuses)
            and (not wanted.pipelines or job["pipeline"].lower() in wanted.pipelines)
            and (wanted.created_after is None or job["created_at"] > wanted.created_after)
            and (wanted.completed_before is None
                 or (job["stopped_at"] is not None and job["stopped_at"] < wanted.completed_before)))


def downstream(pipeline: Pipeline) -> dict[str, list[str]]:
    """Each operator's readers, in the pipeline's order: the edges of Clara's DAG."""
    return {op.name: [other.name for other in pipeline.operators if op.name in other.upstream]
            for op in pipeline.operators}


def roots(pipeline: Pipeline) -> list[str]:
    """Operators that read only the job's payload: where Clara's DAG starts."""
    return [op.name for op in pipeline.operators if not op.upstream]
