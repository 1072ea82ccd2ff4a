"""Linux inotify for the inbox: a thread that reports each change the moment the kernel does.

watchdog's inotify observer holds every IN_MOVED_FROM for half a second to pair it with its
IN_MOVED_TO, and events queued behind it wait too: clarad's own move of a payload out of the inbox
delayed the next drop by 0.5 s. The inbox needs no pairing, only where to look and whether the drop
was renamed in (complete at once), so this reads the kernel's events itself.

Watched: each inbox folder (models/, pipelines/, jobs/ and every jobs/<pipeline>/, added as they
appear); what happens inside a drop is seen by the settle rule's observations, not by events. A
queue overflow asks for a rescan. Pure parsing (``parse``) is separate from the thread.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE_SELF = 0x400
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
MASK = IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name

Notify = Callable[[Path, bool], None]  # (path that changed, renamed in)


def parse(buffer: bytes) -> Iterator[tuple[int, int, str]]:
    """(watch descriptor, mask, name) of every event in ``buffer``, as read(2) returned them."""
    offset = 0
    while offset + _EVENT.size <= len(buffer):
        wd, mask, _cookie, length = _EVENT.unpack_from(buffer, offset)
        raw = buffer[offset + _EVENT.size: offset + _EVENT.size + length]
        yield wd, mask, os.fsdecode(raw.rstrip(b"\0"))
        offset += _EVENT.size + length


class InboxWatcher:
    """Watch ``folders`` (and folders created in those of ``nested``); call ``notify`` on the
    watching thread for every change, ``overflow`` when events were lost."""

    def __init__(self, folders: list[Path], nested: list[Path], notify: Notify, overflow: Callable[[], None]) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_init1: {os.strerror(ctypes.get_errno())}")
        self.notify, self.overflow = notify, overflow
        self.nested = set(nested)
        self.watches: dict[int, Path] = {}
        self._stop_r, self._stop_w = os.pipe()
        try:
            for folder in folders:
                self._watch(folder)
                if folder in self.nested:
                    for child in sorted(folder.iterdir()):
                        if child.is_dir() and not child.is_symlink():
                            self._watch(child)
        except OSError:
            self.close()
            raise
        self.thread = threading.Thread(target=self._run, name="clarad-inotify", daemon=True)

    def _watch(self, folder: Path) -> None:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(folder), MASK)
        if wd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"inotify_add_watch {folder}: {os.strerror(errno)}")
        self.watches[wd] = folder

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while True:
            ready, _, _ = select.select([self.fd, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            try:
                buffer = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                continue
            for wd, mask, name in parse(buffer):
                self._event(wd, mask, name)

    def _event(self, wd: int, mask: int, name: str) -> None:
        if mask & IN_Q_OVERFLOW:
            log.warning("inbox events were lost (inotify queue overflow): rescanning")
            self.overflow()
            return
        folder = self.watches.get(wd)
        if folder is None or mask & IN_IGNORED or not name:
            if mask & IN_IGNORED:
                self.watches.pop(wd, None)
            return
        path = folder / name
        if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO) and folder in self.nested:
            try:
                self._watch(path)  # a new pipeline's folder: its drops count too,
                for child in sorted(path.iterdir()):  # those made before the watch included
                    self.notify(child, False)
            except OSError as exc:
                log.warning("cannot watch %s (%s): its drops are found by the rescan", path, exc.strerror)
        self.notify(path, bool(mask & IN_MOVED_TO))

    def stop(self) -> None:
        os.write(self._stop_w, b"x")
        if self.thread.is_alive():
            self.thread.join(timeout=5)
        self.close()

    def close(self) -> None:
        for fd in (self.fd, self._stop_r, self._stop_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def join(self, timeout: float) -> None:  # what callers of a watchdog observer do after stop()
        self.thread.join(timeout)
