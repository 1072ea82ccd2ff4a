"""What a tritonserver that did not stop by itself (SIGKILL, a crash) leaves on the host, and its removal.

Triton's Python backend keeps, for each server,
- shared-memory regions ``/dev/shm/<prefix><uuid>`` (1 MiB and more each): clarad gives every
  instance its own prefix (``shm_prefix``: the state directory's and the instance's), so what an
  instance left is known exactly and removed once its process group is gone;
- a directory ``/tmp/python_env_XXXXXX`` made with mkdtemp (the path is fixed in the backend). Its
  name says nothing of its server, but a server makes it after it starts: a directory older than
  every tritonserver still running as clarad's user can belong to none of them. Those are removed
  (under the unit's PrivateTmp=yes, /tmp holds clarad's alone).

Both run after an instance is stopped or dies, and at start-up; the walks run in a worker thread.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
from pathlib import Path

import psutil

log = logging.getLogger("clarad")

SHM = Path("/dev/shm")
TMP = Path("/tmp")
ENV_PREFIX = "python_env_"


def shm_prefix(state_dir: Path, instance_id: str = "") -> str:
    """Names of the shared-memory regions of one instance (or, without ``instance_id``, of every
    instance of this state directory)."""
    tag = hashlib.sha256(os.fsencode(os.path.abspath(state_dir))).hexdigest()[:12]
    return f"clarad-{tag}-{instance_id}-" if instance_id else f"clarad-{tag}-"


def remove_shm(prefix: str, shm: Path = SHM) -> list[str]:
    """Remove the regions whose names start with ``prefix``; return their names."""
    if not prefix:
        return []  # never everything
    removed = []
    for region in _listing(shm):
        if region.startswith(prefix):
            try:
                (shm / region).unlink()
                removed.append(region)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("cannot remove %s: %s", shm / region, exc.strerror or exc)
    return removed


def remove_python_envs(binary_name: str = "tritonserver", tmp: Path = TMP) -> list[str]:
    """Remove the Python backend's directories no running tritonserver of this user can own."""
    uid = os.geteuid()
    oldest = _oldest_server_start(binary_name, uid)
    removed = []
    for name in _listing(tmp):
        if not name.startswith(ENV_PREFIX):
            continue
        path = tmp / name
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if info.st_uid == uid and stat.S_ISDIR(info.st_mode) and (oldest is None or info.st_ctime < oldest):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(name)
    return removed


def remove_after(prefix: str, binary_name: str) -> None:
    """After an instance's process group is gone: what it left, and what older servers left."""
    found = remove_shm(prefix) + remove_python_envs(binary_name)
    if found:
        log.info("removed %d leftover(s) of stopped tritonservers: %s", len(found), ", ".join(sorted(found)))


def _oldest_server_start(binary_name: str, uid: int) -> float | None:
    starts = []
    for proc in psutil.process_iter(["name", "uids", "create_time"]):
        try:
            if proc.info["name"] == binary_name and proc.info["uids"].real == uid:
                starts.append(proc.info["create_time"])
        except (psutil.Error, AttributeError, TypeError):
            continue
    return min(starts, default=None)


def _listing(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []
