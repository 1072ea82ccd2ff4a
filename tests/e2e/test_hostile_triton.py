"""A Triton frozen or killed under a job, and a disk that refuses writes mid-job, with a real
tritonserver and real operators."""

from __future__ import annotations

import glob
import ipaddress
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from clarad import leftovers
from tests.e2e.clarad_process import DEMO, Clarad
from tests.waiting import wait_for

GATED = Path(__file__).parent / "operators" / "gated_infer.py"


def gated_pipeline(timeout: float = 600) -> str:
    return f"""
name: gated
timeout: {timeout}
operators:
- name: infer
  command: ["{sys.executable}", "{GATED}", "affine"]
  models: [{{name: affine}}]
"""


def start_gated(state: Path, timeout: float = 600, **settings: str) -> Clarad:
    clarad = Clarad(state, **settings).start()
    clarad.drop(DEMO / "models" / "affine", "models")
    wait_for(lambda: clarad.ask("models.list"), 30, "the model")
    clarad.drop_text(gated_pipeline(timeout), "pipelines", "gated.yaml")
    wait_for(lambda: clarad.ask("pipelines.list"), 30, "the pipeline")
    return clarad


def drop_payload(clarad: Clarad, tmp_path: Path, name: str, go: bool) -> str:
    known = {job["id"] for job in clarad.ask("jobs.list")}
    payload = tmp_path / name
    payload.mkdir()
    (payload / "numbers.txt").write_text("1 2")
    if go:
        (payload / "go").write_text("")
    clarad.drop(payload, "jobs/gated")
    return clarad.wait_new_job(known)


def instance_pids(clarad: Clarad) -> list[int]:
    return [i["pid"] for i in clarad.ask("status")["instances"] if i["pid"]]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_frozen_triton_does_not_go_back_to_the_pool(tmp_path: Path) -> None:
    """Before: a SIGSTOPped tritonserver went back to the pool idle after its job timed out, and the
    next job was placed on it and hung for another timeout."""
    clarad = start_gated(tmp_path / "state", timeout=4, CLARAD_CPU_INSTANCES="1")
    first = drop_payload(clarad, tmp_path, "first", go=False)
    job_dir = clarad.state / "jobs" / first
    wait_for((job_dir / "operators" / "infer" / "started").exists, 60, "the operator to start")
    [frozen] = instance_pids(clarad)
    os.kill(frozen, signal.SIGSTOP)
    stopped = clarad.wait_job_stopped(first)
    assert (stopped["status"], stopped["reason"]) == ("FAULTED", "timed out after 4 s")
    wait_for(lambda: gone(frozen), 60, "the frozen tritonserver to be stopped")
    second = clarad.wait_job_stopped(drop_payload(clarad, tmp_path, "second", go=True), 120)
    assert second["status"] == "HEALTHY", second["reason"]
    assert frozen not in instance_pids(clarad)
    assert clarad.stop() == 0


def test_a_killed_triton_leaves_no_shared_memory_or_python_env_behind(tmp_path: Path) -> None:
    """Before: each SIGKILLed tritonserver left a 1 MiB /dev/shm region and a /tmp/python_env_*
    that clarad removed neither while it ran nor at its next start."""
    clarad = start_gated(tmp_path / "state")
    job = clarad.wait_job_stopped(drop_payload(clarad, tmp_path, "warm", go=True), 120)
    assert job["status"] == "HEALTHY", job["reason"]
    [instance] = clarad.ask("status")["instances"]
    prefix = leftovers.shm_prefix(clarad.state, instance["id"])
    regions = glob.glob(f"/dev/shm/{prefix}*")
    assert regions, "the instance's Python backend keeps its shared memory under clarad's prefix"
    started = psutil.Process(instance["pid"]).create_time()
    envs = [path for path in glob.glob("/tmp/python_env_*")
            if os.lstat(path).st_ctime >= started and os.lstat(path).st_uid == os.geteuid()]

    os.killpg(instance["pid"], signal.SIGKILL)  # tritonserver and its Python stubs, as the OOM killer would
    wait_for(lambda: not clarad.ask("status")["instances"], 60, "clarad to notice")
    wait_for(lambda: not any(os.path.exists(r) for r in regions), 30, "the shared memory to be removed")

    def env_removed_or_kept_for_an_older_server(path: str) -> bool:
        older = [p for p in psutil.process_iter(["name", "create_time"]) if p.info["name"] == "tritonserver"
                 and p.info["create_time"] < os.lstat(path).st_ctime] if os.path.exists(path) else []
        return not os.path.exists(path) or bool(older)

    assert all(env_removed_or_kept_for_an_older_server(path) for path in envs), envs
    assert clarad.stop() == 0
    assert not glob.glob(f"/dev/shm/{leftovers.shm_prefix(clarad.state)}*")


def _chattr(flag: str, path: Path) -> bool:
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="making the database's WAL immutable (chattr +i) needs root")
def test_a_job_whose_end_the_disk_refused_is_recorded_once_the_disk_is_back(tmp_path: Path) -> None:
    """Before: "recording its end failed: disk I/O error", and after write access returned the job
    stayed RUNNING and could not be cancelled until a restart."""
    clarad = start_gated(tmp_path / "state")
    job_id = drop_payload(clarad, tmp_path, "scan", go=False)
    job_dir = clarad.state / "jobs" / job_id
    wait_for((job_dir / "operators" / "infer" / "started").exists, 60, "the operator to start")
    wal = clarad.state / "clarad.db-wal"
    if not _chattr("+i", wal):
        pytest.skip("this file system has no immutable flag")
    try:
        (job_dir / "input" / "go").write_text("")  # the job ends while its end cannot be written
        wait_for(lambda: "disk I/O error" in clarad.log.read_text(), 60, "the refused write")
        assert clarad.ask("jobs.show", id=job_id)["state"] == "RUNNING"
    finally:
        _chattr("-i", wal)
    job = clarad.wait_job_stopped(job_id, 60)
    assert job["state"] == "STOPPED" and job["status"] in ("HEALTHY", "FAULTED")
    cancel = clarad.cli("jobs", "cancel", job_id)
    assert (cancel.returncode, cancel.stderr) == (1, f"clarad: job {job_id} already stopped ({job['status']})\n")
    assert clarad.stop() == 0


def test_nothing_listens_beyond_loopback(tmp_path: Path) -> None:
    """clarad's /metrics, each tritonserver's HTTP and gRPC ports, and whatever else its process
    tree listens on are bound to 127.0.0.1 (the control socket is a Unix socket in a closed folder)."""
    clarad = start_gated(tmp_path / "state")
    job = clarad.wait_job_stopped(drop_payload(clarad, tmp_path, "warm", go=True), 120)
    assert job["status"] == "HEALTHY", job["reason"]
    assert clarad.proc is not None
    tree = {clarad.proc.pid, *(p.pid for p in psutil.Process(clarad.proc.pid).children(recursive=True))}
    listening = [c for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN and c.pid in tree]
    assert len(listening) >= 3  # /metrics, and the instance's HTTP and gRPC ports
    def loopback(ip: str) -> bool:
        address = ipaddress.ip_address(ip)
        return (getattr(address, "ipv4_mapped", None) or address).is_loopback

    assert all(loopback(c.laddr.ip) for c in listening), listening
    assert clarad.stop() == 0
