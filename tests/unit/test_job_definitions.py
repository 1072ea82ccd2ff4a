"""A job's definition (its pipeline resolved with its parameters and checked): payloads of one
pipeline share the work, and never a result that the repository or the parameters have changed."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from clarad.ingest import NewJob
from clarad.jobs import Priority
from tests.unit.test_hostile_input import drop_pipeline, rejected, take
from tests.unit.test_hostile_models import Harness

AFFINE = Path(__file__).resolve().parents[2] / "docs" / "demo" / "models" / "affine"
PIPELINE = """name: p
parameters:
  LEVEL: "1"
operators:
- name: op
  command: [/bin/echo, "${{ LEVEL }}"]
  models: [{name: affine}]
"""


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path / "state")
    shutil.copytree(AFFINE, h.inbox / "affine")
    h.take(h.inbox / "affine")
    drop_pipeline(h, PIPELINE, "p.yaml")
    yield h
    h.close()


def payload(h: Harness, name: str) -> Path:
    path = h.layout.job_inbox("p") / name
    path.write_text("x")
    return path


def test_payloads_of_one_pipeline_share_one_checked_definition(harness: Harness) -> None:
    first, second = (take(harness, "jobs", payload(harness, n), "p") for n in ("a", "b"))
    assert isinstance(first, NewJob) and isinstance(second, NewJob)
    assert second.pipeline is first.pipeline  # worked out once
    texts = {(harness.layout.job_dir(job.id) / "pipeline.yaml").read_text() for job in (first, second)}
    assert len(texts) == 1 and "/bin/echo" in texts.pop()


def test_a_model_removed_after_a_job_was_accepted_refuses_the_next_payload(harness: Harness) -> None:
    assert isinstance(take(harness, "jobs", payload(harness, "a"), "p"), NewJob)
    harness.store.remove_model("affine")
    assert take(harness, "jobs", payload(harness, "b"), "p") is None
    [reason] = rejected(harness).values()
    assert "affine" in reason


def test_other_parameters_are_resolved_again(harness: Harness) -> None:
    source = payload(harness, "a")
    default = asyncio.run(harness.ingest.create_job("p", source, "a", Priority.NORMAL, {}))
    other = asyncio.run(harness.ingest.create_job("p", payload(harness, "b"), "b", Priority.NORMAL, {"LEVEL": "7"}))
    assert other.pipeline is not default.pipeline
    assert other.pipeline.operators[0].argv[-1] == "7" and default.pipeline.operators[0].argv[-1] == "1"
