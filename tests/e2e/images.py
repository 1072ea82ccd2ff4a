"""Small OCI images for the container tests, built offline from what this host has (Debian's
busybox-static and python3.11, and the test environment's Triton client), never from a registry,
then ``podman import``ed. An image's tag is a digest of what goes into it, so each is built once
and found in podman's store by later runs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

PODMAN = shutil.which("podman")
NO_PODMAN = ("podman is not installed here (apt-get install podman runc; .ci/run installs it): container "
             "operators cannot run")
BUSYBOX = Path("/bin/busybox")
NO_BUSYBOX = "busybox-static is not installed here (apt-get install busybox-static): no image can be built"
PYTHON = Path("/usr/bin/python3.11")  # Debian's python3.11-minimal, with the standard library of libpython3.11-stdlib
NO_PYTHON = "Debian's /usr/bin/python3.11 is not installed here (apt-get install python3): no Python image"
BASH = Path("/usr/bin/bash")
SITE = Path(next(p for p in sys.path if p.endswith("site-packages")))
TRITON_CLIENT = ("tritonclient", "grpc", "google", "numpy", "numpy.libs", "packaging", "rapidjson.cpython-311-x86_64-linux-gnu.so",
                 "typing_extensions.py", "ml_dtypes")
STDLIB_LEFT_OUT = {"test", "idlelib", "tkinter", "ensurepip", "lib2to3", "turtledemo", "config-3.11-x86_64-linux-gnu"}


def image(name: str, files: Mapping[str, str], *, python: bool = False, triton_client: bool = False,
          cmd: Optional[list[str]] = None, entrypoint: Optional[list[str]] = None, workdir: str = "/") -> str:
    """``localhost/clarad-test/<name>:<digest>``, built unless podman has it: busybox, plus Python
    and bash (and the Triton client) when asked, plus ``files`` (path in the image -> text, mode 0755)."""
    assert PODMAN is not None
    extras = [SITE / top for top in TRITON_CLIENT] if triton_client else []
    key = hashlib.sha256(repr((sorted(files.items()), python, cmd, entrypoint, workdir, _stamp(BUSYBOX),
                               _stamp(PYTHON) if python else None, [_stamp(p) for p in extras],
                               Path(__file__).read_bytes())).encode()).hexdigest()[:16]
    tag = f"localhost/clarad-test/{name}:{key}"
    if subprocess.run([PODMAN, "image", "exists", tag]).returncode == 0:
        return tag
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _busybox(tar)
        if python:
            _python(tar, extras)
        for path, text in files.items():
            _add_bytes(tar, path.lstrip("/"), text.encode(), 0o755)
    changes = [f"WORKDIR {workdir}", "ENV PATH=/usr/local/bin:/usr/bin:/bin"]  # a blank after the instruction
    if cmd:
        changes.append(f"CMD {_json(cmd)}")
    if entrypoint:
        changes.append(f"ENTRYPOINT {_json(entrypoint)}")
    argv = [PODMAN, "import", *[arg for change in changes for arg in ("--change", change)], "-", tag]
    subprocess.run(argv, input=buffer.getvalue(), check=True, capture_output=True)
    return tag


def save(tag: str, target: Path) -> None:
    """What a person brings to the box: ``podman save`` of the image."""
    assert PODMAN is not None
    subprocess.run([PODMAN, "save", "-o", str(target), tag], check=True, capture_output=True)


def _json(argv: list[str]) -> str:
    return json.dumps(argv, separators=(",", ":"))


def _stamp(path: Path) -> tuple[str, int, int]:
    info = path.stat()
    return str(path), info.st_size, int(info.st_mtime)


def _busybox(tar: tarfile.TarFile) -> None:
    tar.add(BUSYBOX, "bin/busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            _add_link(tar, f"bin/{applet}", "busybox")
    for folder in ("tmp", "input", "output", "logs", "publish", "etc", "usr/bin"):
        info = tarfile.TarInfo(folder)
        info.type, info.mode = tarfile.DIRTYPE, 0o1777 if folder == "tmp" else 0o755
        tar.addfile(info)
    _add_bytes(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n", 0o644)
    _add_bytes(tar, "etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644)


def _python(tar: tarfile.TarFile, extras: list[Path]) -> None:
    tar.add(PYTHON, "usr/bin/python3.11")
    tar.add(BASH, "usr/bin/bash")
    _add_link(tar, "usr/bin/python3", "python3.11")
    _add_link(tar, "usr/bin/python", "python3.11")
    stdlib = Path("/usr/lib/python3.11")
    tar.add(stdlib, "usr/lib/python3.11", filter=lambda info: None if _left_out(info.name) else info)
    for extra in extras:
        tar.add(extra, f"usr/lib/python3/dist-packages/{extra.name}",
                filter=lambda info: None if "__pycache__" in info.name else info)
    objects = [PYTHON, BASH, *stdlib.rglob("*.so"), *[so for extra in extras for so in
                                                 ([extra] if extra.is_file() else extra.rglob("*.so*"))]]
    for library in _libraries([str(p) for p in objects if p.is_file()]):
        tar.add(os.path.realpath(library), library.lstrip("/"))


def _left_out(name: str) -> bool:
    parts = name.split("/")
    return len(parts) > 3 and parts[3] in STDLIB_LEFT_OUT or "__pycache__" in parts


def _libraries(objects: list[str]) -> set[str]:
    """The shared libraries these binaries load (ldd), the dynamic loader included."""
    found: set[str] = set()
    for start in range(0, len(objects), 200):
        out = subprocess.run(["ldd", *objects[start:start + 200]], capture_output=True, text=True).stdout
        for line in out.splitlines():
            words = line.split()
            if "=>" in words and len(words) > words.index("=>") + 1 and words[words.index("=>") + 1].startswith("/"):
                found.add(words[words.index("=>") + 1])
            elif words and words[0].startswith("/") and "ld-linux" in words[0]:
                found.add(words[0])
    return {path for path in found if not path.startswith(str(SITE))}


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _add_link(tar: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    tar.addfile(info)
