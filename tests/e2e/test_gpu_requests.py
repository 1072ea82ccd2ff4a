"""`requests.gpu` end to end: a pipeline asking for more GPUs than the host has is refused at
ingest; a job whose GPUs are held by another job waits PENDING, with its reason, and starts its
first operator only once they are free. GPU discovery is a stand-in here (no NVIDIA driver): see
tests/e2e/standin_gpus.py; everything else is the real daemon."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.clarad_process import Clarad
from tests.waiting import wait_for

HOLD = Path(__file__).parent / "operators" / "gpu_hold.py"
PIPELINE = f"""
name: gpu-hold
operators:
- name: first
  command: ["true"]
- name: hold
  command: ["{sys.executable}", "{HOLD}"]
  input: [{{from: first}}]
  requests: {{gpu: 1}}
"""


@pytest.fixture
def one_gpu(tmp_path: Path) -> Iterator[Clarad]:
    daemon = Clarad(tmp_path / "state", CLARAD_USE_GPUS="true")
    daemon.command = [sys.executable, "-m", "tests.e2e.standin_gpus", "1"]
    daemon.start()
    yield daemon
    assert daemon.stop() == 0


def test_a_pipeline_asking_for_more_gpus_than_the_host_has_is_refused(tmp_path: Path) -> None:
    daemon = Clarad(tmp_path / "state").start()  # CLARAD_USE_GPUS=false: no GPU
    try:
        daemon.drop_text(PIPELINE, "pipelines", "gpu-hold.yaml")
        rejected = tmp_path / "state" / "rejected"
        reason = wait_for(lambda: next((p.read_text() for p in rejected.glob("*gpu-hold.yaml.reason")), None), 30,
                          "the pipeline's rejection")
        assert 'operator "hold": requests.gpu is 1, but this host has 0 GPU(s)' in reason
        assert daemon.ask("pipelines.list") == []
    finally:
        assert daemon.stop() == 0


def payload(where: Path, name: str, go: bool) -> Path:
    folder = where / name
    folder.mkdir()
    if go:
        (folder / "go").write_text("")
    return folder


def test_a_job_waits_pending_until_the_gpus_it_asks_for_are_free(one_gpu: Clarad, tmp_path: Path) -> None:
    clarad = one_gpu
    assert [gpu["uuid"] for gpu in clarad.ask("status")["gpus"]] == ["GPU-standin-0"]
    clarad.drop_text(PIPELINE, "pipelines", "gpu-hold.yaml")
    wait_for(lambda: clarad.ask("pipelines.list"), 30, "the pipeline")

    clarad.drop(payload(tmp_path, "a", go=False), "jobs/gpu-hold")
    first = clarad.wait_new_job(set())
    first_dir = Path(clarad.ask("jobs.show", id=first)["directory"])
    wait_for((first_dir / "operators" / "hold" / "started").exists, 60, "the first job to hold the GPU")

    clarad.drop(payload(tmp_path, "b", go=True), "jobs/gpu-hold")
    second = clarad.wait_new_job({first})
    waiting = wait_for(lambda: (job := clarad.ask("jobs.show", id=second))["reason"] and job, 30,
                       "the second job's reason to wait")
    assert waiting["state"] == "PENDING"
    assert waiting["reason"] == "waiting for 1 GPU(s): 0 free, the others held by running jobs"
    assert [op["state"] for op in waiting["operators"]] == ["PENDING", "PENDING"]
    assert "reason: waiting for 1 GPU(s)" in clarad.cli("jobs", "show", second).stdout

    (first_dir / "input" / "go").write_text("")
    done = clarad.wait_job_stopped(first)
    after = clarad.wait_job_stopped(second)
    assert (done["status"], after["status"]) == ("HEALTHY", "HEALTHY"), (done["reason"], after["reason"])
    assert after["started_at"] >= done["stopped_at"]  # not one operator of it ran before the GPU was free
    for job in (done, after):
        assert (Path(job["directory"]) / "operators" / "hold" / "gpus.txt").read_text() == "GPU-standin-0"
