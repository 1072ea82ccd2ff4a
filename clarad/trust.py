"""Whose drops clarad takes. Whoever can put a file in the inbox can run code as the operator user (a
pipeline's commands, a Python-backend model), so, as sshd's StrictModes and cron do, clarad takes a
drop only when the dropped file or directory, and every directory above it up to the state
directory, is owned by root, by clarad's user or by a member of ``drop_group`` (clarad's own group
by default), and none of them is writable by others. A refusal names the path that failed.

``refusal`` is the pure rule over what ``lstat`` said; ``check`` gathers that and asks it.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from clarad.errors import RejectedDrop


@dataclass(frozen=True)
class Seen:
    path: Path
    uid: int
    mode: int


def refusal(seen: Sequence[Seen], trusted: Callable[[int], bool]) -> Optional[str]:
    """Why the drop (``seen[0]``) and the directories above it (the rest) may not be taken, or None."""
    for item in seen:
        if not trusted(item.uid):
            return f"{item.path} is owned by uid {item.uid}, not by root, clarad's user or a member of drop_group"
        if item.mode & stat.S_IWOTH and not stat.S_ISLNK(item.mode):  # a symlink's mode means nothing
            return f"{item.path} is writable by others"
    return None


class Trust:
    def __init__(self, group: Optional[str]) -> None:
        self.gid = grp.getgrnam(group).gr_gid if group else os.getegid()
        self.members = set(grp.getgrgid(self.gid).gr_mem) if _group_exists(self.gid) else set()

    def trusted(self, uid: int) -> bool:
        if uid in (0, os.geteuid()):
            return True
        try:
            user = pwd.getpwuid(uid)
        except KeyError:
            return False  # no such user: nobody to trust
        return user.pw_gid == self.gid or user.pw_name in self.members

    def check(self, drop: Path, state_dir: Path) -> None:
        """Raise RejectedDrop (label "unsafe") when ``drop`` may not be taken."""
        seen = []
        path = drop
        while True:
            info = os.lstat(path)
            seen.append(Seen(path, info.st_uid, info.st_mode))
            if path == state_dir or path.parent == path:
                break
            path = path.parent
        why = refusal(seen, self.trusted)
        if why is not None:
            raise RejectedDrop(f"{drop.name}: not taken: {why}", "unsafe")


def _group_exists(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
        return True
    except KeyError:
        return False
