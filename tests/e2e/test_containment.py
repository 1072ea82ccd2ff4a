"""What an operator starts outside its process group or session is stopped with it, by a cgroup per
operator where clarad may make one, else by following its descendants."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from clarad import containment
from tests.e2e.clarad_process import Clarad
from tests.waiting import wait_for


def cgroups_here() -> bool:
    try:
        return os.access(containment.own_cgroup(), os.W_OK)
    except OSError:
        return False


MODES = [pytest.param("cgroup", marks=pytest.mark.skipif(not cgroups_here(), reason="no writable cgroup v2 here")),
         "descendants"]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def pids(path: Path) -> list[int]:
    return [int(word) for word in path.read_text().split()]


ESCAPES = """
name: escapes
operators:
- name: leaves
  command: ["/bin/sh", "-c", "setsid sleep 77 & echo $! > {out}; (setsid sh -c 'sleep 78 & echo $! >> {out}; wait' &); sleep 0.2; {then}"]
"""


@pytest.mark.parametrize("mode", MODES)
def test_what_an_operator_started_in_another_session_ends_with_it(tmp_path: Path, mode: str) -> None:
    """Before: `setsid sleep 77 &` in an operator survived its job."""
    clarad = Clarad(tmp_path / "state", CLARAD_OPERATOR_CONTAINMENT=mode).start()
    out = tmp_path / "escaped.pids"
    clarad.drop_text(ESCAPES.format(out=out, then="exit 0"), "pipelines", "escapes.yaml")
    clarad.drop_text("x", "jobs/escapes", "payload.txt")
    job = clarad.wait_job_stopped(clarad.wait_new_job(set()))
    assert job["status"] == "HEALTHY", job["reason"]
    escaped = pids(out)
    assert len(escaped) == 2
    assert all(gone(pid) for pid in escaped), [psutil.Process(p).cmdline() for p in escaped if not gone(p)]
    assert ("operators: one cgroup each" if mode == "cgroup" else "operators: following their descendants") \
        in clarad.log.read_text()
    assert clarad.stop() == 0


@pytest.mark.parametrize("mode", MODES)
def test_a_cancelled_operator_takes_what_it_left_outside_its_session_with_it(tmp_path: Path, mode: str) -> None:
    clarad = Clarad(tmp_path / "state", CLARAD_OPERATOR_CONTAINMENT=mode).start()
    out = tmp_path / "escaped.pids"
    clarad.drop_text(ESCAPES.format(out=out, then="sleep 60"), "pipelines", "escapes.yaml")
    clarad.drop_text("x", "jobs/escapes", "payload.txt")
    job_id = clarad.wait_new_job(set())
    escaped = wait_for(lambda: out.exists() and len(pids(out)) == 2 and pids(out), 30, "the escapees")
    assert not any(gone(pid) for pid in escaped)
    assert clarad.cli("jobs", "cancel", job_id).returncode == 0
    assert clarad.wait_job_stopped(job_id)["status"] == "CANCELED"
    assert all(gone(pid) for pid in escaped)
    assert clarad.stop() == 0


@pytest.mark.parametrize("mode", MODES)
def test_what_operators_left_outside_their_sessions_is_stopped_after_a_crash(tmp_path: Path, mode: str) -> None:
    clarad = Clarad(tmp_path / "state", CLARAD_OPERATOR_CONTAINMENT=mode).start()
    out = tmp_path / "escaped.pids"
    clarad.drop_text(ESCAPES.format(out=out, then="sleep 60"), "pipelines", "escapes.yaml")
    clarad.drop_text("x", "jobs/escapes", "payload.txt")
    job_id = clarad.wait_new_job(set())
    escaped = wait_for(lambda: out.exists() and len(pids(out)) == 2 and pids(out), 30, "the escapees")
    assert clarad.proc is not None
    clarad.proc.kill()  # SIGKILL: no chance to stop anything
    clarad.proc.wait(30)
    assert not any(gone(pid) for pid in escaped)
    clarad.start()
    wait_for(lambda: all(gone(pid) for pid in escaped), 30, "the escapees to be stopped")
    assert clarad.ask("jobs.show", id=job_id)["status"] == "FAULTED"
    assert "that operators of a previous clarad had left outside their process groups" in clarad.log.read_text()
    assert clarad.stop() == 0

