"""What a killed tritonserver leaves (shared memory, the Python backend's /tmp directory) is removed,
and nothing that a running server may still use."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psutil

from clarad import leftovers
from tests.waiting import wait_for


def test_each_instance_has_its_own_shared_memory_prefix(tmp_path: Path) -> None:
    one, two = leftovers.shm_prefix(tmp_path, "triton-0"), leftovers.shm_prefix(tmp_path, "triton-1")
    other = leftovers.shm_prefix(tmp_path / "other", "triton-0")
    assert len({one, two, other}) == 3
    assert one.startswith(leftovers.shm_prefix(tmp_path)) and not other.startswith(leftovers.shm_prefix(tmp_path))


def test_only_the_regions_of_the_prefix_are_removed(tmp_path: Path) -> None:
    prefix = leftovers.shm_prefix(tmp_path / "state", "triton-3")
    neighbour = f"{leftovers.shm_prefix(tmp_path / 'state', 'triton-30')}x"
    for name in (f"{prefix}a1", f"{prefix}b2", neighbour, "triton_python_backend_shm_region_someone-else"):
        (tmp_path / name).write_bytes(b"\0" * 16)
    assert sorted(leftovers.remove_shm(prefix, tmp_path)) == [f"{prefix}a1", f"{prefix}b2"]
    assert sorted(os.listdir(tmp_path)) == sorted([neighbour, "triton_python_backend_shm_region_someone-else"])
    assert leftovers.remove_shm("", tmp_path) == []


def test_python_env_directories_older_than_every_running_server_are_removed(tmp_path: Path) -> None:
    """A server makes its directory after it starts: one older than every running server is no one's."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    server = tmp_path / f"srv{os.getpid() % 100000}"  # a process name no one else uses
    shutil.copy("/bin/sleep", server)
    (tmp / "python_env_old").mkdir()
    (tmp / "python_env_old" / "lib").mkdir()
    (tmp / "unrelated_dir").mkdir()
    old = os.lstat(tmp / "python_env_old").st_ctime
    running = subprocess.Popen([str(server), "60"])
    try:
        # The process must have started strictly after the old directory (its start time counts in
        # clock ticks): start it again until it has.
        while psutil.Process(running.pid).create_time() <= old:
            running.kill()
            running.wait()
            running = subprocess.Popen([str(server), "60"])
        wait_for(lambda: psutil.Process(running.pid).name() == server.name, 10, "the server's name")
        (tmp / "python_env_new").mkdir()  # made by the running server, as far as anyone can tell
        assert leftovers.remove_python_envs(server.name, tmp) == ["python_env_old"]
        assert sorted(os.listdir(tmp)) == ["python_env_new", "unrelated_dir"]
    finally:
        running.kill()
        running.wait()
    assert leftovers.remove_python_envs(server.name, tmp) == ["python_env_new"]
