"""Pure translations between clarad and Clara's API (clarad.api.rules)."""

from __future__ import annotations

from typing import Any, Optional

import pytest

from clarad.api import rules
from clarad.errors import ClaradError
from clarad.pipelines import parse_pipeline


def test_clara_timestamps_count_seconds_from_year_one() -> None:
    assert rules.clara_seconds(0.0) == 0 and rules.clara_seconds(None) == 0  # never
    assert rules.clara_seconds(1_700_000_000.7) == 1_700_000_000 + 62_135_596_800
    assert rules.unix_time(rules.clara_seconds(1_700_000_000)) == 1_700_000_000.0
    assert rules.unix_time(0) is None


@pytest.mark.parametrize("version, numbers", [
    ("0.1.0", (0, 1, 0, "")), ("1.2", (1, 2, 0, "")), ("2.0.1rc1", (2, 0, 1, "rc1")), ("dev", (0, 0, 0, "dev")),
])
def test_version_numbers(version: str, numbers: tuple[int, int, int, str]) -> None:
    assert rules.version_numbers(version) == numbers


@pytest.mark.parametrize("name, clean", [("a.txt", "a.txt"), ("d/./e//f", "d/e/f"), ("dir/x", "dir/x")])
def test_payload_file_names_are_normalised(name: str, clean: str) -> None:
    assert rules.payload_file(name) == clean


@pytest.mark.parametrize("name, reason", [
    ("", "1 to 4096 bytes"), ("/etc/passwd", "relative"), ("a/../../b", "without '..'"), ("..", "without '..'"),
    ("a\\b", "backslashes"), ("a\nb", "control characters"), (".", "relative"), ("x" * 4097, "1 to 4096 bytes"),
])
def test_payload_file_names_that_could_escape_are_refused(name: str, reason: str) -> None:
    with pytest.raises(ClaradError, match=reason):
        rules.payload_file(name)


def test_a_jobs_payload_shows_inputs_at_its_root_and_outputs_under_operators() -> None:
    assert rules.job_payload_place("values.txt") == ("input", "values.txt")
    assert rules.job_payload_place("operators/infer/result.json") == ("operators", "infer/result.json")
    assert rules.job_payload_place("operatorsx/y") == ("input", "operatorsx/y")


def job(state: str = "STOPPED", status: Optional[str] = "HEALTHY", pipeline: str = "Demo", created: float = 100.0,
        stopped: Optional[float] = 200.0) -> dict[str, Any]:
    return {"state": state, "status": status, "pipeline": pipeline, "created_at": created, "stopped_at": stopped}


@pytest.mark.parametrize("record, wanted, matches", [
    (job(), rules.JobFilter(), True),
    (job(), rules.JobFilter(states=frozenset({"RUNNING"})), False),
    (job(state="RUNNING", status=None, stopped=None), rules.JobFilter(statuses=frozenset({"HEALTHY"})), True),
    (job(status="FAULTED"), rules.JobFilter(statuses=frozenset({"HEALTHY"})), False),
    (job(), rules.JobFilter(pipelines=frozenset({"demo"})), True),
    (job(), rules.JobFilter(pipelines=frozenset({"other"})), False),
    (job(), rules.JobFilter(created_after=100.0), False),
    (job(), rules.JobFilter(created_after=99.0), True),
    (job(), rules.JobFilter(completed_before=201.0), True),
    (job(state="RUNNING", status=None, stopped=None), rules.JobFilter(completed_before=1e12), False),
])
def test_job_filters_as_clara_defines_them(record: dict[str, Any], wanted: rules.JobFilter, matches: bool) -> None:
    assert rules.job_matches(record, wanted) is matches


def test_dag_edges_run_from_each_operator_to_its_readers() -> None:
    pipeline = parse_pipeline("""
api-version: 0.4.0
name: diamond
operators:
- {name: a, command: [x], input: [{path: /input}]}
- {name: b, command: [x], input: [{from: a, path: /input}]}
- {name: c, command: [x], input: [{from: a, path: /input}]}
- {name: d, command: [x], input: [{from: b, path: /b}, {from: c, path: /c}]}
""")
    assert rules.roots(pipeline) == ["a"]
    assert rules.downstream(pipeline) == {"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []}
