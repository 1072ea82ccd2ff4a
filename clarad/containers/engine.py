"""Which OCI runtime runs container operators (setting ``operator_runtime``), chosen once at start.

``auto`` takes podman, else docker, else none; ``podman`` or ``docker`` take that one only. A
runtime counts when its program is on PATH and answers ``version`` (docker's client alone, without
its daemon, does not). With none, a pipeline with ``container.image`` is refused at ingest with
``NO_RUNTIME``: clarad never runs an image's command on the host instead.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

log = logging.getLogger("clarad")

RUNTIMES = ("podman", "docker")
NO_RUNTIME = ("no container runtime is available to clarad (operator_runtime: podman or docker): install podman "
              "(apt-get install podman runc) or docker, then restart clarad; clarad never runs an image's "
              "command on the host instead")
ANSWER_TIMEOUT = 20.0  # seconds for `<runtime> version`


@dataclass(frozen=True)
class Engine:
    name: str  # "podman" or "docker"
    path: str  # the program


def candidates(setting: str) -> tuple[str, ...]:
    """The runtimes ``setting`` allows, in the order they are tried. Pure."""
    if setting == "auto":
        return RUNTIMES
    return (setting,) if setting in RUNTIMES else ()


def choose(setting: str, which: Callable[[str], Optional[str]],
           answers: Callable[[str], Optional[str]]) -> tuple[Optional[Engine], str]:
    """The runtime to use and one line for the log. ``which`` finds a program, ``answers`` runs
    ``<program> version`` and returns why it failed (None when it answered)."""
    if setting == "host":
        return None, "operator_runtime = host: operators with container.image are refused"
    tried = []
    for name in candidates(setting):
        path = which(name)
        if path is None:
            tried.append(f"{name} is not installed")
            continue
        problem = answers(path)
        if problem is None:
            return Engine(name, path), f"container operators run with {name} ({path})"
        tried.append(f"{name} does not answer: {problem}")
    return None, f"{NO_RUNTIME} (operator_runtime = {setting}: {'; '.join(tried)})"


def _answers(path: str) -> Optional[str]:
    try:
        done = subprocess.run([path, "version"], capture_output=True, text=True, timeout=ANSWER_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit status {done.returncode}"
    return None


def detect(setting: str) -> Optional[Engine]:
    """Choose and say in the log what was chosen (an error when a runtime was asked for and is not there)."""
    engine, line = choose(setting, shutil.which, _answers)
    (log.info if engine is not None or setting in ("host", "auto") else log.error)("%s", line)
    return engine
