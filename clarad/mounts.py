"""An operator's own view of the file system: its inputs and outputs at their declared paths.

Clara's operators are containers that read ``/input`` and write ``/output``. A host operator gets
the same through bubblewrap (``bwrap``, Debian's ``bubblewrap`` package): a mount namespace for that
operator alone, where every top-level directory of the host is bound as it is, except those a
declared path lives under, which start empty; then each declared input (read-only), output, and
``/logs`` and ``/publish`` are bound at their paths. Nothing outside the namespace changes.

bwrap runs the program with ``--die-with-parent``: when bwrap ends (a TERM, a KILL of bwrap alone),
its program ends too, never left waiting in a half-made namespace. To keep an operator's grace
period, a stop sends the program its TERM first (operators._stop).

Where bwrap is missing, or cannot make a namespace (a kernel or a unit without user namespaces),
operators run as before and their variables name the real directories; ``probe`` says which, once.
Building the command line is pure (``namespace_argv``); the probe runs bwrap once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from clarad import children
from clarad.errors import ClaradError

log = logging.getLogger("clarad")

PROBE_TIMEOUT = 10.0  # seconds


@dataclass(frozen=True)
class Bind:
    real: Path  # the directory on the host
    seen: str  # where the operator sees it
    writable: bool


@dataclass(frozen=True)
class RootEntry:
    name: str
    symlink: Optional[str]  # the link's target when the entry is a symlink (/lib -> usr/lib)


def root_entries(root: Path = Path("/")) -> list[RootEntry]:
    """The host's top-level directories and symlinks (files at / are left out)."""
    entries = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_symlink():
            entries.append(RootEntry(entry.name, os.readlink(entry.path)))
        elif entry.is_dir():
            entries.append(RootEntry(entry.name, None))
    return entries


def namespace_argv(bwrap: str, entries: Sequence[RootEntry], binds: Sequence[Bind], cwd: Path,
                   argv: Sequence[str]) -> list[str]:
    """``argv`` run by bwrap with ``binds`` over the host's root. Top-level directories that a bind
    lives under are not bound from the host (bwrap's own empty root holds the bind instead), so
    nothing is ever created on the host; parents are bound before their children."""
    shadowed = {bind.seen.split("/")[1] for bind in binds}
    args = [bwrap, "--die-with-parent"]  # its program never outlives it, however bwrap ends
    for entry in entries:
        if entry.name in shadowed:
            continue
        if entry.symlink is not None:
            args += ["--symlink", entry.symlink, f"/{entry.name}"]
        else:
            args += ["--dev-bind", f"/{entry.name}", f"/{entry.name}"]
    for bind in sorted(binds, key=lambda b: b.seen.count("/")):
        args += ["--bind" if bind.writable else "--ro-bind", str(bind.real), bind.seen]
    top = cwd.parts[1] if len(cwd.parts) > 1 else ""
    args += ["--chdir", "/" if top in shadowed else str(cwd), "--", *argv]
    return args


@dataclass(frozen=True)
class Namespaces:
    """Whether operators get their own mount namespace, and bwrap's path when they do."""

    bwrap: Optional[str]
    why_not: str = ""

    @property
    def enabled(self) -> bool:
        return self.bwrap is not None


_probed: dict[tuple[str, Optional[str]], Namespaces] = {}


async def probe(setting: str, user: Optional[str]) -> Namespaces:
    """Can operators (as ``user``) get a mount namespace? Asked once per setting and user; the answer
    is logged once."""
    key = (setting, user)
    if key not in _probed:
        _probed[key] = await _probe(setting, user)
        found = _probed[key]
        if found.enabled:
            log.info("operators see their inputs and outputs at their declared paths (%s)", found.bwrap)
        else:
            log.warning("operators get the real directories in their variables, not their declared paths: %s",
                        found.why_not)
    return _probed[key]


async def _probe(setting: str, user: Optional[str]) -> Namespaces:
    if setting == "off":
        return Namespaces(None, "operator_mount_namespace is off")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Namespaces(None, "bwrap not found (apt-get install bubblewrap)")
    argv = namespace_argv(bwrap, root_entries(), [], Path("/"), ["true"])
    try:
        identity = None
        if user is not None:
            account = pwd.getpwnam(user)
            identity = (account.pw_uid, account.pw_gid)
        proc = await asyncio.create_subprocess_exec(
            *children.setpriv_argv(children.setpriv(), argv, identity), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        try:
            _out, err = await asyncio.wait_for(proc.communicate(), PROBE_TIMEOUT)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            return Namespaces(None, f"bwrap did not answer within {PROBE_TIMEOUT:g} s")
    except (OSError, KeyError, ClaradError) as exc:
        return Namespaces(None, f"bwrap cannot be started: {exc}")
    if proc.returncode != 0:
        reason = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return Namespaces(None, f"bwrap cannot make a namespace here: {reason[0]}")
    return Namespaces(bwrap)
