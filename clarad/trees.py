"""What a dropped or given tree may hold, checked entry by entry before clarad moves, copies or
hands it to an operator.

A payload holds regular files and directories only: a symlink (at any depth) would let an operator
read what it points to, a FIFO or a device would hang or flood whoever reads it, and a file
hard-linked to something outside the payload would hand that file to operator_user when the
payload is given to it. A model given to ``clarad models add`` may also hold symlinks (the model's
own validation decides where they may lead), but nothing a copy would read forever.

The walk does not follow links and reads nothing but directory entries and ``lstat``: it runs in a
worker thread, never on the daemon's loop. Every refusal is a RejectedDrop naming the entry.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from clarad.errors import RejectedDrop

KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
         stat.S_IFSOCK: "a socket", stat.S_IFLNK: "a symlink"}


def kind_of(mode: int) -> str:
    return KINDS.get(stat.S_IFMT(mode), "not a regular file or directory")


def check_payload(root: Path) -> int:
    """Refuse a payload that is or holds anything but regular files and directories, or a file
    hard-linked to one outside it; return the number of entries."""
    return _check(root, symlinks=False, what="payload")


def check_copyable(root: Path) -> int:
    """Refuse a tree a copy would hang on or that is not plain content: devices, FIFOs, sockets,
    and files hard-linked outside it (symlinks are left to the model's own checks)."""
    return _check(root, symlinks=True, what="model")


def _check(root: Path, symlinks: bool, what: str) -> int:
    top = os.lstat(root)
    if not (stat.S_ISREG(top.st_mode) or stat.S_ISDIR(top.st_mode)):
        raise RejectedDrop(f"{root.name}: the {what} is {kind_of(top.st_mode)}; give a regular file or a directory",
                           "unsafe")
    entries = 1
    seen: dict[tuple[int, int], int] = {}  # inode of a file with several names -> names of it inside
    linked: dict[tuple[int, int], tuple[int, str]] = {}  # that inode -> (its st_nlink, one of its paths)
    if stat.S_ISREG(top.st_mode) and top.st_nlink > 1:
        raise RejectedDrop(f"{root.name}: hard-linked to a file elsewhere; give a copy", "unsafe")

    def fail(error: OSError) -> None:
        raise error

    if stat.S_ISDIR(top.st_mode):
        for folder, dirs, files in os.walk(root, onerror=fail):
            for name in dirs + files:
                path = os.path.join(folder, name)
                info = os.lstat(path)
                entries += 1
                rel = os.path.relpath(path, root.parent)
                if stat.S_ISLNK(info.st_mode) and symlinks:
                    continue
                if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                    raise RejectedDrop(f"{rel}: {kind_of(info.st_mode)}; a {what} holds only regular files and "
                                       "directories", "unsafe")
                if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
                    inode = (info.st_dev, info.st_ino)
                    seen[inode] = seen.get(inode, 0) + 1
                    linked.setdefault(inode, (info.st_nlink, rel))
    for inode, (total, rel) in linked.items():
        if seen[inode] < total:
            raise RejectedDrop(f"{rel}: hard-linked to a file outside the {what}; give a copy", "unsafe")
    return entries
