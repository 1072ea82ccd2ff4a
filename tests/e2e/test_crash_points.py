"""clarad killed (SIGKILL) at each named crash point (clarad/faults.py): the next start finishes or
undoes what was under way, and nothing is lost, run twice or left running."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psutil
import pytest

from clarad import repository
from tests.e2e.clarad_process import DEMO, Clarad
from tests.waiting import wait_for

SLEEPS = """
name: sleeps
operators:
- name: op
  command: ["/bin/sh", "-c", "echo $$$$ > {pidfile}; exec sleep {seconds}"]  # $$ is a literal $ to clarad
"""


def armed(clarad: Clarad, point: str) -> Clarad:
    clarad.env["CLARAD_CRASH_POINT"] = point
    return clarad.start()


def died(clarad: Clarad) -> None:
    assert clarad.proc is not None
    assert clarad.proc.wait(60) == -9, "clarad did not reach its crash point"
    del clarad.env["CLARAD_CRASH_POINT"]


def reasons(clarad: Clarad) -> list[str]:
    return [p.read_text() for p in (clarad.state / "rejected").glob("*.reason")]


def test_a_payload_moved_but_not_recorded_is_rejected_with_a_reason(tmp_path: Path) -> None:
    clarad = armed(Clarad(tmp_path / "state"), "payload-moved")
    clarad.drop_text(SLEEPS.format(pidfile=tmp_path / "pid", seconds=0), "pipelines", "sleeps.yaml")
    wait_for(lambda: (clarad.state / "inbox" / "jobs" / "sleeps").is_dir(), 30, "the pipeline")
    clarad.drop_text("x", "jobs/sleeps", "scan.txt")
    died(clarad)
    clarad.start()
    assert reasons(clarad) == ["clarad stopped while taking this payload; drop its input again\n"]
    assert clarad.ask("jobs.list") == []
    assert clarad.stop() == 0


def test_a_job_recorded_but_not_queued_runs_once_after_the_restart(tmp_path: Path) -> None:
    clarad = armed(Clarad(tmp_path / "state"), "drop-accepted")
    clarad.drop_text(SLEEPS.format(pidfile=tmp_path / "pid", seconds=0), "pipelines", "sleeps.yaml")
    wait_for(lambda: (clarad.state / "inbox" / "jobs" / "sleeps").is_dir(), 30, "the pipeline")
    clarad.drop_text("x", "jobs/sleeps", "scan.txt")
    died(clarad)
    clarad.start()
    [job] = clarad.ask("jobs.list")
    assert clarad.wait_job_stopped(job["id"])["status"] == "HEALTHY"
    assert clarad.stop() == 0


def test_a_child_started_but_not_recorded_is_stopped_at_the_next_start(tmp_path: Path) -> None:
    """The child is the job's tritonserver (operators have their cgroups besides): found at the next
    start by the CLARAD_CHILD_OF mark in its environment."""
    clarad = Clarad(tmp_path / "state").start()
    clarad.drop(DEMO / "models" / "affine", "models")
    wait_for(lambda: clarad.ask("models.list"), 30, "the model")
    clarad.drop_text("name: infers\noperators:\n- name: op\n  command: [/bin/true]\n  models: [{name: affine}]\n",
                     "pipelines", "infers.yaml")
    wait_for(lambda: (clarad.state / "inbox" / "jobs" / "infers").is_dir(), 30, "the pipeline")
    assert clarad.stop() == 0
    armed(clarad, "child-started")
    clarad.drop_text("x", "jobs/infers", "scan.txt")
    died(clarad)
    [triton] = clarad.processes()  # started, never recorded
    clarad.start()
    wait_for(lambda: not triton.is_running() or triton.status() == psutil.STATUS_ZOMBIE, 30,
             "the unrecorded tritonserver to be stopped")
    assert "tritonserver" in clarad.log.read_text().split("started by a previous clarad that died before recording it")[0]
    job = clarad.wait_job_stopped(clarad.ask("jobs.list")[0]["id"])
    assert (job["status"], job["reason"]) == ("FAULTED", "clarad stopped while the job was running")
    assert clarad.stop() == 0
    assert clarad.processes() == []


def new_revision(tmp_path: Path, n: int) -> Path:
    model = tmp_path / f"rev{n}" / "affine"
    shutil.copytree(DEMO / "models" / "affine", model)
    with open(model / "1" / "model.py", "a") as source:
        source.write(f"\n# revision {n}\n")
    return model


@pytest.mark.parametrize("point", ["model-swap", "revision-prune"])
def test_a_model_swap_cut_short_is_completed_and_forgotten_revisions_deleted(tmp_path: Path, point: str) -> None:
    clarad = Clarad(tmp_path / "state", CLARAD_MODEL_REVISIONS_KEPT="0").start()
    clarad.drop(DEMO / "models" / "affine", "models")
    first = wait_for(lambda: clarad.ask("models.list"), 30, "the model")[0]["digest"]
    assert clarad.stop() == 0
    armed(clarad, point)
    model = new_revision(tmp_path, 2)
    digest = repository.tree_digest(model)[0]
    clarad.drop(model, "models")
    died(clarad)
    clarad.start()
    [live] = clarad.ask("models.list")
    assert live["digest"] == digest != first
    assert repository.tree_digest(clarad.state / "models" / "affine")[0] == digest
    assert os.listdir(clarad.state / "revisions" / "affine") == []  # revisions_kept = 0: nothing kept
    assert [p.name for p in (clarad.state / "revisions").glob(".pending-*")] == []
    assert clarad.stop() == 0
