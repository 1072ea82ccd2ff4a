"""clarad used carelessly and with hostile intent, as a person would: odd drops, odd commands, a
frozen Triton, a disk that refuses writes, a damaged database, a careless umask."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from clarad.errors import ControlError
from tests.e2e.clarad_process import Clarad
from tests.waiting import wait_for

SLEEPER = f'["{sys.executable}", "-c", "import os, sys, time; open(sys.argv[1], \'w\').write(str(os.getpid())); time.sleep(float(sys.argv[2]))"'


def test_an_operator_exec_would_refuse_is_named_at_the_drop_not_an_internal_error(tmp_path: Path) -> None:
    """Before: an operator with the variable `A=B` ended its job with "internal error" while its
    sibling was killed as it started. Now the pipeline is refused at the drop, naming the variable
    (and run_operator still refuses, naming it, what exec would: tests/unit/test_operators.py)."""
    clarad = Clarad(tmp_path / "state").start()
    clarad.drop_text(f"""
name: mixed
operators:
- name: good
  command: {SLEEPER}, "{tmp_path / 'pid'}", "0"]
- name: bad
  command: ["/bin/true"]
  variables: {{"A=B": "x"}}
""", "pipelines", "mixed.yaml")
    reason = wait_for(lambda: next(iter((clarad.state / "rejected").glob("*.reason")), None), 30, "the refusal")
    assert "'A=B' is not an environment variable name" in reason.read_text()
    assert "internal" not in reason.read_text() and clarad.ask("pipelines.list") == []
    assert clarad.stop() == 0


PLAIN = "name: plain\noperators:\n- name: op\n  command: [/bin/true]\n"


def test_jobs_create_of_a_device_or_of_the_state_directory_is_refused_in_one_line(tmp_path: Path) -> None:
    """Before: /dev/zero filled the file system; the state directory was copied into its own staging/."""
    clarad = Clarad(tmp_path / "state").start()
    clarad.drop_text(PLAIN, "pipelines", "plain.yaml")
    wait_for(lambda: clarad.ask("pipelines.list"), 30, "the pipeline")
    zero = clarad.cli("jobs", "create", "plain", "/dev/zero")
    assert (zero.returncode, zero.stderr) == (
        1, "clarad: zero: the payload is a character device; give a regular file or a directory\n")
    for given in (clarad.state, clarad.state.parent, Path("/")):
        itself = clarad.cli("jobs", "create", "plain", str(given))
        assert itself.returncode == 1 and itself.stderr.count("\n") == 1, itself.stderr
        assert "overlaps clarad's staging directory" in itself.stderr
    assert clarad.ask("jobs.list") == [] and os.listdir(clarad.state / "staging") == []
    assert clarad.stop() == 0


def test_hostile_names_neither_forge_a_log_line_nor_reach_the_terminal(tmp_path: Path) -> None:
    clarad = Clarad(tmp_path / "state").start()
    clarad.drop_text(PLAIN, "pipelines", "plain.yaml")
    forged = "x\n2026-01-01 00:00:00,000 INFO clarad: job 0 stopped HEALTHY: forged"
    clarad.drop_text("data", "jobs/plain", forged)
    clarad.drop_text("data", "jobs/plain", "\x1b[2J\x1b[31mred")
    wait_for(lambda: len(clarad.ask("jobs.list")) == 2, 30, "both jobs")
    for job in clarad.ask("jobs.list"):
        clarad.wait_job_stopped(job["id"])
    listing = clarad.cli("jobs", "list")
    assert listing.returncode == 0 and "\x1b" not in listing.stdout
    assert "\\x1b[2J\\x1b[31mred" in listing.stdout and "x\\n2026-01-01" in listing.stdout
    log_lines = clarad.log.read_text().splitlines()
    assert not any(line.startswith("2026-01-01 00:00:00,000") for line in log_lines)
    assert any("x\\n2026-01-01 00:00:00,000 INFO clarad: job 0 stopped HEALTHY: forged" in line for line in log_lines)
    assert clarad.stop() == 0


def test_a_damaged_database_stops_the_start_with_one_line_and_is_left_as_it_was(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "clarad.db").write_bytes(b"SQLite format 3\0" + b"\xff" * 8000)
    before = (state / "clarad.db").read_bytes()
    run = subprocess.run([sys.executable, "-m", "clarad", "run", "--state-dir", str(state), "--metrics-port", "0"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    assert f"ERROR clarad: {state / 'clarad.db'}: damaged (" in run.stderr
    assert (state / "clarad.db").read_bytes() == before


def test_a_state_directory_made_under_umask_022_is_closed_to_others(tmp_path: Path) -> None:
    """Before: `clarad run` by hand made a 0755 state directory and a 0644 database."""
    state = tmp_path / "fresh" / "state"
    proc = subprocess.Popen([sys.executable, "-m", "clarad", "run", "--state-dir", str(state), "--metrics-port", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, umask=0o022)
    try:
        wait_for(lambda: (state / "run" / "clarad.sock").exists(), 30, "clarad to start")
        modes = {path: stat.S_IMODE(os.stat(state / path).st_mode)
                 for path in (".", "clarad.db", "jobs", "models", "run", "inbox/jobs")}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert modes == {".": 0o750, "clarad.db": 0o640, "jobs": 0o750, "models": 0o750, "run": 0o750,
                     "inbox/jobs": 0o770}


def test_a_flood_of_idle_connections_neither_exhausts_clarad_nor_its_log(tmp_path: Path) -> None:
    """Before: 500 idle connections under `ulimit -n 200` put asyncio's accept into a loop of
    errors: 619,000 tracebacks, 285 MB of log in two minutes, 100 % CPU. Here the limit is 64
    (clarad needs about 22 itself), so the descriptors do run out."""
    clarad = Clarad(tmp_path / "state", prefix=["prlimit", "--nofile=64:64", "--"]).start()
    flood = []
    try:
        for _ in range(500):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.connect(str(clarad.state / "run" / "clarad.sock"))
            except BlockingIOError:
                pass  # the listen backlog is full: the kernel queues it when clarad accepts more
            flood.append(sock)
        status = clarad.cli("status")
        assert status.returncode == 0, status.stderr
        assert psutil.Process(clarad.proc.pid).num_fds() <= 64
    finally:
        for sock in flood:
            sock.close()
    assert clarad.ask("status")["pid"] == clarad.proc.pid
    log = clarad.log.read_text()
    assert "Traceback" not in log and len(log) < 100_000
    assert clarad.stop() == 0


def test_out_of_range_numbers_in_a_request_are_refused_not_internal_errors(tmp_path: Path) -> None:
    """Found by fuzzing: `jobs.list` with a limit of 2**70 or infinity answered "internal error"."""
    clarad = Clarad(tmp_path / "state").start()
    for limit in (2**70, float("inf"), 0, "5", True):
        with pytest.raises(ControlError, match=r"^limit .*: a whole number from 1 to 1000000$"):
            clarad.ask("jobs.list", limit=limit)
    assert clarad.ask("jobs.list", limit=5) == []
    assert clarad.ask("jobs.list", pipeline=[]) == []  # found by fuzzing too: "internal error: Error binding"
    with pytest.raises(ControlError, match=r"^pipeline \['p'\]: give a pipeline's name or id$"):
        clarad.ask("jobs.list", pipeline=["p"])
    assert clarad.stop() == 0
