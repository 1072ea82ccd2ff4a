"""Operators under operator_user: stops that always finish, and children that get no privilege.

Needs root (to be clarad's unit: switch users, grant or withhold capabilities) and util-linux's
setpriv, which clarad itself needs to start any child.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import psutil
import pytest

from tests.e2e.clarad_process import REPO, Clarad
from tests.e2e.test_containment import cgroups_here
from tests.waiting import wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="switching operators to another user and setting clarad's capabilities need root"
)
SETPRIV = shutil.which("setpriv") or "setpriv"
HERE = Path(__file__).parent
NOBODY = pwd.getpwnam("nobody")


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory operator_user can pass through: not under pytest's private (0700) tmp."""
    path = Path(tempfile.mkdtemp(prefix="clarad-user-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_sleeper(clarad: Clarad, pipeline: str, known: set[str], timeout: str = "") -> tuple[str, psutil.Process]:
    """Run a job whose operator (as operator_user) writes its pid and sleeps; its id and process."""
    clarad.drop_text(f"""
name: {pipeline}
{timeout}
operators:
- name: sleeps
  # $$$$: clarad turns $$ into $ (Clara's rule), so the shell sees $$: its own pid, the operator's
  command: ["/bin/sh", "-c", "echo $$$$ > $NVIDIA_CLARA_OUTPUT/pid && exec sleep 300"]
""", "pipelines", f"{pipeline}.yaml")
    clarad.drop_text("x", f"jobs/{pipeline}", "payload.txt")
    job_id = clarad.wait_new_job(known)
    pidfile = clarad.state / "jobs" / job_id / "operators" / "sleeps" / "pid"
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 30, "the operator's pid"))
    proc = psutil.Process(pid)
    assert proc.uids().real == NOBODY.pw_uid
    return job_id, proc


def dead(proc: psutil.Process) -> bool:
    """Gone, or a zombie nobody reaps (an orphan, once clarad has exited)."""
    try:
        return bool(proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def test_cancel_and_timeout_stop_an_operator_running_as_operator_user(base: Path) -> None:
    clarad = Clarad(base / "state", CLARAD_OPERATOR_USER="nobody", CLARAD_OPERATOR_STOP_GRACE_SECONDS="3").start()
    try:
        canceled, proc = start_sleeper(clarad, "sleeper", set())
        assert clarad.cli("jobs", "cancel", canceled).returncode == 0
        job = clarad.wait_job_stopped(canceled, 30)
        assert (job["status"], job["reason"]) == ("CANCELED", "canceled")
        assert dead(proc), "the canceled operator is still running"

        timed, proc = start_sleeper(clarad, "timed", {canceled}, timeout="timeout: 5")
        job = clarad.wait_job_stopped(timed, 30)
        assert (job["status"], job["reason"]) == ("FAULTED", "timed out after 5 s")
        assert dead(proc), "the timed-out operator is still running"
        assert clarad.stop() == 0
    finally:
        clarad.stop_if_running()


def test_without_cap_kill_cancel_and_shutdown_finish_and_name_the_operator_left_running(base: Path) -> None:
    # clarad as root but without CAP_KILL: it can start operators as nobody, not signal them (EPERM).
    # Followed by their descendants, not in cgroups: cgroup.kill needs no CAP_KILL (the test below).
    clarad = Clarad(base / "state", prefix=[SETPRIV, "--bounding-set=-kill", "--inh-caps=-kill", "--"],
                    CLARAD_OPERATOR_USER="nobody", CLARAD_OPERATOR_STOP_GRACE_SECONDS="1",
                    CLARAD_OPERATOR_CONTAINMENT="descendants")
    left: list[psutil.Process] = []
    try:
        clarad.start()
        canceled, proc = start_sleeper(clarad, "sleeper", set())
        left.append(proc)
        assert clarad.cli("jobs", "cancel", canceled).returncode == 0
        job = clarad.wait_job_stopped(canceled, 30)
        assert job["status"] == "CANCELED"
        leader = os.getpgid(proc.pid)  # the child clarad started: the operator, or bwrap running it
        assert job["reason"] == (f'canceled; operator "sleeps" (pid {leader}) could not be stopped and was '
                                 "left running (see clarad's log)")
        assert proc.is_running() and not dead(proc), "the test expects the operator to have been left running"
        logged = [line for line in clarad.log.read_text().splitlines() if f"(pid {leader})" in line]
        assert any(f"{canceled}/sleeps" in line and "CAP_KILL" in line for line in logged), logged

        shutdown, proc = start_sleeper(clarad, "sleeper", {canceled})
        left.append(proc)
        assert clarad.stop(timeout=60) == 0  # SIGTERM to clarad: its shutdown finishes too
        status = json.loads((clarad.state / "jobs" / shutdown / "status.json").read_text())
        assert f'operator "sleeps" (pid {os.getpgid(proc.pid)}) could not be stopped' in status["reason"]
        with sqlite3.connect(clarad.state / "clarad.db") as db:  # still recorded, for the next start
            recorded = {pid for (pid,) in db.execute("SELECT pid FROM children WHERE kind = 'operator'")}
        assert recorded == {os.getpgid(p.pid) for p in left}
    finally:
        for proc in left:  # what clarad could not stop, the test does
            if not dead(proc):
                proc.kill()
        wait_for(lambda: all(dead(p) for p in left), 30, "the operators left running to die")
        clarad.stop_if_running()


@pytest.mark.skipif(not cgroups_here(), reason="no writable cgroup v2 here: operators are followed otherwise")
def test_without_cap_kill_an_operator_in_its_cgroup_is_still_stopped(base: Path) -> None:
    """Signals to operator_user's processes need CAP_KILL; writing the operator's cgroup.kill does not."""
    clarad = Clarad(base / "state", prefix=[SETPRIV, "--bounding-set=-kill", "--inh-caps=-kill", "--"],
                    CLARAD_OPERATOR_USER="nobody", CLARAD_OPERATOR_STOP_GRACE_SECONDS="1",
                    CLARAD_OPERATOR_CONTAINMENT="cgroup")
    left: list[psutil.Process] = []
    try:
        clarad.start()
        canceled, proc = start_sleeper(clarad, "sleeper", set())
        left.append(proc)
        assert clarad.cli("jobs", "cancel", canceled).returncode == 0
        job = clarad.wait_job_stopped(canceled, 30)
        assert (job["status"], job["reason"]) == ("CANCELED", "canceled")
        wait_for(lambda: dead(proc), 10, "the operator to be gone")
        with sqlite3.connect(clarad.state / "clarad.db") as db:
            assert db.execute("SELECT count(*) FROM children WHERE kind = 'operator'").fetchone()[0] == 0
        assert clarad.stop() == 0
    finally:
        for proc in left:
            if not dead(proc):
                proc.kill()
        clarad.stop_if_running()


def interpreter_for(users: list[str], base: Path) -> Optional[str]:
    """A Python with this one's packages that ``users`` can run: this one, or (where it lives out of
    their reach, e.g. under /root) a virtualenv in ``base`` made from the system's Python of the same
    version, given this one's packages by a .pth file. A virtualenv, not PYTHONPATH: Triton's
    Python-backend stub finds its environment from the python on PATH. None if there is none."""

    def runnable(python: str) -> bool:
        # through sh: a plain exec, as tritonserver runs the stub's interpreter
        return all(subprocess.run(
            [SETPRIV, f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}", "--clear-groups", "/bin/sh", "-c",
             '"$0" -c "import clarad.daemon, numpy, tritonclient.grpc"', python], capture_output=True, cwd=REPO,
        ).returncode == 0 for user in users)

    if runnable(sys.executable):
        return sys.executable
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    venv = base / "venv"
    if subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], capture_output=True).returncode != 0:
        return None
    python = str(venv / "bin" / "python")
    site = subprocess.check_output([python, "-c", "import site; print(site.getsitepackages()[0])"], text=True)
    (Path(site.strip()) / "clarad-tests.pth").write_text(f"{REPO}\n{sysconfig.get_paths()['purelib']}\n")
    return python if runnable(python) else None


def status_fields(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def test_children_get_no_privilege_under_the_units_capabilities(base: Path) -> None:
    """The unit's operator_user drop-in, emulated: clarad as a user that is not root (daemon here,
    clara there) with CAP_CHOWN, CAP_SETUID, CAP_SETGID and CAP_KILL as ambient capabilities,
    NoNewPrivileges, UMask=0027 and a 0751 state directory. An operator (as nobody) and a
    Python-backend model (in tritonserver's stub, as clarad's user) each try to become root."""
    python = interpreter_for(["daemon", "nobody"], base)
    if python is None:
        pytest.skip("no Python with this environment's packages that users daemon and nobody can run")
    daemon = pwd.getpwnam("daemon")
    state = base / "state"
    state.mkdir()
    os.chown(state, daemon.pw_uid, daemon.pw_gid)  # StateDirectory=
    state.chmod(0o751)  # StateDirectoryMode=0751, as the drop-in says
    caps = "+chown,+setuid,+setgid,+kill"
    unit = [SETPRIV, f"--reuid={daemon.pw_uid}", f"--regid={daemon.pw_gid}", "--clear-groups",
            f"--inh-caps={caps}", f"--ambient-caps={caps}", "--no-new-privs", "--"]
    clarad = Clarad(state, prefix=unit, python=python, umask=0o027, CLARAD_OPERATOR_USER="nobody", HOME=str(base))
    try:
        clarad.start()
        assert clarad.proc is not None
        granted = 1 << 0 | 1 << 5 | 1 << 6 | 1 << 7  # CAP_CHOWN, CAP_KILL, CAP_SETGID, CAP_SETUID
        own = status_fields(Path(f"/proc/{clarad.proc.pid}/status").read_text())
        assert (int(own["CapEff"], 16), int(own["CapAmb"], 16)) == (granted, granted), "the emulation is not the unit"

        staged = base / "privileges"  # dropped as clarad's user, as the README says: write, then rename in
        shutil.copytree(HERE / "models" / "privileges", staged)
        for path in [staged, *staged.rglob("*")]:
            os.chown(path, daemon.pw_uid, daemon.pw_gid)
        staged.rename(state / "inbox" / "models" / "privileges")
        wait_for(lambda: clarad.ask("models.list"), 60, "the model")
        clarad.drop_text(f"""
name: privileges
operators:
- name: report
  command: ["{python}", "{HERE / 'operators' / 'privileges.py'}", "privileges"]
  models: [{{name: privileges}}]
""", "pipelines", "privileges.yaml")
        clarad.drop_text("x", "jobs/privileges", "payload.txt")
        job = clarad.wait_job_stopped(clarad.wait_new_job(set()), 180)

        out = Path(job["directory"]) / "operators" / "report"
        for name in ("operator.txt", "model.txt"):  # the operator's own report first: it may fault as root
            assert (out / name).exists(), job["reason"]
            report = (out / name).read_text()
            # EINVAL for an operator in bwrap's user namespace, where uid 0 is not even mapped
            assert report.startswith(("setresuid(0, 0, 0): Operation not permitted",
                                      "setresuid(0, 0, 0): Invalid argument")), f"{name}: {report}"
            fields = status_fields(report)
            held = {key: int(fields[key], 16) for key in ("CapInh", "CapPrm", "CapEff", "CapAmb")}
            assert held == dict.fromkeys(held, 0), f"{name}: {report}"
        assert job["status"] == "HEALTHY", job["reason"]
        operator = status_fields((out / "operator.txt").read_text())
        assert operator["Uid"].split()[0] == str(NOBODY.pw_uid)
        assert operator["Groups"].split() == [], "the operator kept supplementary groups"
        for proc in clarad.processes():  # tritonserver and its stub
            assert int(status_fields(Path(f"/proc/{proc.pid}/status").read_text())["CapEff"], 16) == 0
        assert clarad.stop() == 0
    finally:
        clarad.stop_if_running()
