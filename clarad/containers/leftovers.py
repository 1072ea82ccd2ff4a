"""At start-up, before anything else runs: remove every container a previous clarad of this state
directory left (it was killed, or could not remove one), found by its label; containers of other
state directories, and everyone else's, are not touched."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from clarad.containers import spec
from clarad.containers.engine import Engine

log = logging.getLogger("clarad")

TIMEOUT = 120.0  # seconds for each runtime command


def remove_leftovers(engine: Engine, state_dir: Path) -> list[str]:
    """Remove this state directory's containers; their names."""
    try:
        listed = subprocess.run(spec.leftovers_argv(engine.path, state_dir), capture_output=True, text=True,
                                timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.error("could not list the containers a previous clarad left: %s", exc)
        return []
    if listed.returncode != 0:
        log.error("could not list the containers a previous clarad left: %s", listed.stderr.strip())
        return []
    removed = []
    for name in listed.stdout.split():
        try:
            done = subprocess.run(spec.remove_argv(engine.path, name), capture_output=True, text=True,
                                  timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("container %s, left by a previous clarad, could not be removed: %s", name, exc)
            continue
        if done.returncode != 0:
            log.error("container %s, left by a previous clarad, could not be removed: %s", name, done.stderr.strip())
            continue
        log.warning("removed container %s, left by a previous clarad", name)
        removed.append(name)
    return removed
