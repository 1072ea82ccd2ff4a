"""clarad killed at the worst moment: the next start accounts for every child and every job."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from clarad import containment
from clarad.survivors import MARK
from tests.e2e.clarad_process import DEMO, Clarad
from tests.waiting import wait_for

GATED = Path(__file__).parent / "operators" / "gated_infer.py"


def test_restart_after_a_crash_stops_leftovers_and_faults_the_running_job(tmp_path: Path) -> None:
    clarad = Clarad(tmp_path / "state").start()
    clarad.drop(DEMO / "models" / "affine", "models")
    wait_for(lambda: clarad.ask("models.list"), 30, "the model")
    clarad.drop_text(f"""
name: gated
operators:
- name: infer
  command: ["{sys.executable}", "{GATED}", "affine"]
  models: [{{name: affine}}]
""", "pipelines", "gated.yaml")
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "numbers.txt").write_text("1")
    clarad.drop(payload, "jobs/gated")
    job_id = clarad.wait_new_job(set())
    job_dir = Path(clarad.ask("jobs.show", id=job_id)["directory"])
    wait_for((job_dir / "operators" / "infer" / "started").exists, 60, "the operator to start")
    children = psutil.Process(clarad.proc.pid).children(recursive=True)
    assert any("gated_infer.py" in " ".join(c.cmdline()) for c in children)
    assert clarad.processes()

    clarad.proc.send_signal(signal.SIGKILL)  # no chance to clean up
    clarad.proc.wait(10)
    # Triton outlives a SIGKILLed clarad until the next start (an operator run by bwrap may die with
    # it: --die-with-parent); whatever is left is stopped by that start.
    def live_triton(child: psutil.Process) -> bool:
        try:
            return child.status() != psutil.STATUS_ZOMBIE and "tritonserver" in child.name()
        except psutil.NoSuchProcess:
            return False

    tritons = [c for c in children if live_triton(c)]
    assert tritons, "tritonserver outlives a SIGKILLed clarad until the next start"

    queued = tmp_path / "queued"
    queued.mkdir()
    (queued / "numbers.txt").write_text("7")
    (queued / "go").write_text("")
    (tmp_path / "queued").rename(clarad.state / "inbox" / "jobs" / "gated" / "queued")  # dropped while down

    clarad.start()
    gone = psutil.wait_procs(children, timeout=30)[1]
    assert gone == [], f"left running after restart: {gone}"
    crashed = clarad.ask("jobs.show", id=job_id)
    assert (crashed["state"], crashed["status"]) == ("STOPPED", "FAULTED")
    assert crashed["reason"] == "clarad stopped while the job was running"
    assert crashed["operators"][0]["state"] == "FAULTED"

    later = clarad.wait_job_stopped(clarad.wait_new_job({job_id}))
    assert later["status"] == "HEALTHY", later["reason"]
    assert (Path(later["directory"]) / "operators" / "infer" / "result.json").read_text() == '{"y": [15.0]}'
    assert clarad.stop() == 0
    assert clarad.processes() == []


def test_cancel_then_shutdown_stops_an_operator_that_ignores_sigterm(tmp_path: Path) -> None:
    clarad = Clarad(tmp_path / "state", CLARAD_OPERATOR_STOP_GRACE_SECONDS="3").start()
    pidfile = tmp_path / "stubborn.pid"
    clarad.drop_text(f"""
name: stubborn
operators:
- name: ignores-term
  command: ["{sys.executable}", "-c", "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); open('{pidfile}', 'w').write(str(os.getpid())); time.sleep(120)"]
""", "pipelines", "stubborn.yaml")
    clarad.drop_text("x", "jobs/stubborn", "payload.txt")
    job_id = clarad.wait_new_job(set())
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), 30, "the operator to start"))
    assert clarad.cli("jobs", "cancel", job_id).returncode == 0
    assert clarad.stop() == 0  # SIGTERM while the operator's grace period is still running
    # gone, or dead and not yet reaped by PID 1 (it ran under bwrap, which died first)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", "the operator outlived clarad"
    status = json.loads((clarad.state / "jobs" / job_id / "status.json").read_text())
    assert (status["state"], status["status"], status["reason"]) == ("STOPPED", "CANCELED", "canceled")
    assert status["operators"][0]["state"] == "FAULTED"


@pytest.mark.skipif(os.geteuid() != 0, reason="switching operators to another user needs root (as clarad's unit grants it)")
def test_operators_run_as_operator_user_with_their_own_directories() -> None:
    base = Path(tempfile.mkdtemp(prefix="clarad-user-"))  # not under pytest's private (0700) tmp
    base.chmod(0o755)
    try:
        clarad = Clarad(base / "state", CLARAD_OPERATOR_USER="nobody").start()
        clarad.drop_text("""
name: as-nobody
operators:
- name: writes
  command: ["/bin/sh", "-c", "id -u > $NVIDIA_CLARA_OUTPUT/uid && cat $NVIDIA_CLARA_INPUT/payload.txt > $NVIDIA_CLARA_OUTPUT/copy"]
""", "pipelines", "as-nobody.yaml")
        clarad.drop_text("hello", "jobs/as-nobody", "payload.txt")
        job = clarad.wait_job_stopped(clarad.wait_new_job(set()))
        assert job["status"] == "HEALTHY", job["reason"]
        out = Path(job["directory"]) / "operators" / "writes"
        nobody = pwd.getpwnam("nobody")
        assert (out / "uid").read_text().strip() == str(nobody.pw_uid)
        assert (out / "copy").read_text() == "hello"
        assert (out / "copy").stat().st_uid == nobody.pw_uid
        assert clarad.stop() == 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_sighup_applies_new_settings_and_names_those_needing_a_restart(tmp_path: Path) -> None:
    config = tmp_path / "clarad.toml"
    config.write_text("job_timeout_seconds = 600.0\ncpu_instances = 2\n")
    clarad = Clarad(tmp_path / "state", CLARAD_CONFIG=str(config)).start()
    clarad.drop_text(f"""
name: sleepy
operators:
- name: sleeps
  command: ["{sys.executable}", "-c", "import time; time.sleep(60)"]
""", "pipelines", "sleepy.yaml")
    config.write_text("job_timeout_seconds = 1.0\ncpu_instances = 3\n")
    clarad.proc.send_signal(signal.SIGHUP)
    settings = wait_for(lambda: (s := clarad.ask("status")["settings"])["job_timeout_seconds"] == 1.0 and s,
                        30, "the new timeout")
    assert settings["cpu_instances"] == 2  # a restart is needed for that one
    assert "SIGHUP: cpu_instances take effect only after a restart" in clarad.log.read_text()
    clarad.drop_text("x", "jobs/sleepy", "payload.txt")
    job = clarad.wait_job_stopped(clarad.wait_new_job(set()))
    assert (job["status"], job["reason"]) == ("FAULTED", "timed out after 1 s")
    config.write_text("job_timeout_seconds = -5\n")
    clarad.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: settings refused, nothing changed: job_timeout_seconds" in clarad.log.read_text(),
             30, "the refusal")
    assert clarad.ask("status")["settings"]["job_timeout_seconds"] == 1.0
    assert clarad.stop() == 0


def _spares(state: Path) -> list[psutil.Process]:
    """The spare operator processes of the clarad of ``state`` (spares.py): marked with it, waiting."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "spare_exec.py" in " ".join(proc.info["cmdline"] or []) and \
                    proc.environ().get(MARK) == str(state.resolve()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_spare_operator_processes_end_with_clarad_and_are_stopped_after_a_crash(tmp_path: Path) -> None:
    clarad = Clarad(tmp_path / "state").start()
    if "operators: one cgroup each" not in clarad.log.read_text():
        clarad.stop()
        pytest.skip("no cgroup can be made here: operators start without spares (only cgroups need them)")
    clarad.drop_text(f'name: quick\noperators:\n- name: op\n  command: ["{sys.executable}", "-c", "pass"]\n',
                     "pipelines", "quick.yaml")

    def one_job(n: int, known: set[str]) -> str:
        payload = tmp_path / f"payload-{n}"
        payload.write_text("x")
        clarad.drop(payload, "jobs/quick")
        job_id = clarad.wait_new_job(known)
        assert clarad.wait_job_stopped(job_id)["status"] == "HEALTHY"
        return job_id

    first = one_job(1, set())
    spares = wait_for(lambda: _spares(clarad.state), 30, "spare processes after the first operator")
    clarad.proc.send_signal(signal.SIGKILL)
    clarad.proc.wait(10)
    assert all(spare.is_running() for spare in spares)  # in sessions of their own: the crash leaves them

    clarad.start()
    gone, alive = psutil.wait_procs(spares, timeout=30)
    assert alive == [], f"spares left running after the restart: {alive}"
    one_job(2, {first})  # the operators start as before; new spares come
    wait_for(lambda: _spares(clarad.state), 30, "new spare processes")
    later = _spares(clarad.state)
    assert clarad.stop() == 0
    gone, alive = psutil.wait_procs(later, timeout=10)
    assert alive == [], f"spares left running after clarad stopped: {alive}"
    assert _spares(clarad.state) == []
    parent = containment.own_cgroup()
    assert list(parent.glob(f"{containment.scope_prefix(clarad.state)}*")) == []  # their cgroups removed too
