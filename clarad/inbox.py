"""The inbox: what has been dropped, and when a drop is complete.

    inbox/models/<item>              a model directory, or a .zip / .tar.gz / .tgz archive of one
    inbox/pipelines/<item>.yaml|yml  a pipeline definition
    inbox/jobs/<pipeline>/<item>     a payload: one job of <pipeline>

A drop moved in by rename is complete at once. Anything else (``cp -r``, a slow writer) is complete
once its observation (entries, bytes, newest mtime) has not changed for ``settle`` seconds: that rule
is the pure ``settle_step``. Names starting with ``.`` or ending in ``.partial``/``.tmp`` are not
drops yet. Events (inotify.py, else watchdog's polling) only say *where to look*; a start-up and a periodic rescan find
whatever the events missed, so a lost event delays a drop but never loses it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.polling import PollingObserver

from clarad.inotify import InboxWatcher

log = logging.getLogger(__name__)

KINDS = ("models", "pipelines", "jobs")

Observation = tuple[int, int, int]  # entries, bytes, newest mtime (ns)


@dataclass(frozen=True)
class Drop:
    kind: str  # "models", "pipelines" or "jobs"
    path: Path
    pipeline: Optional[str] = None  # for jobs


@dataclass(frozen=True)
class Tracked:
    seen: Observation
    since: float


def ignored(name: str) -> bool:
    return name.startswith(".") or name.endswith((".partial", ".tmp"))


def drop_at(inbox: Path, path: Path) -> Optional[Drop]:
    """The drop that ``path`` (anything inside the inbox) belongs to, if any."""
    try:
        parts = path.relative_to(inbox).parts
    except ValueError:
        return None
    if len(parts) >= 2 and parts[0] in ("models", "pipelines"):
        return None if ignored(parts[1]) else Drop(parts[0], inbox / parts[0] / parts[1])
    if len(parts) >= 3 and parts[0] == "jobs":
        return None if ignored(parts[1]) or ignored(parts[2]) else Drop("jobs", inbox.joinpath(*parts[:3]), parts[1])
    if len(parts) == 2 and parts[0] == "jobs" and not ignored(parts[1]):
        return Drop("jobs", path)  # a pipeline's folder, or a stray payload (refused: no pipeline)
    return None


def scan(inbox: Path) -> list[Drop]:
    """Every drop present now; models first, then pipelines, then payloads, each by name."""
    found: list[Drop] = []
    for kind in ("models", "pipelines"):
        found += [Drop(kind, p) for p in _entries(inbox / kind)]
    for folder in _entries(inbox / "jobs"):
        if folder.is_symlink() or not folder.is_dir():
            found.append(Drop("jobs", folder))  # not a pipeline's folder: refused with a reason
        else:
            found += [Drop("jobs", p, folder.name) for p in _entries(folder)]
    return found


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if not ignored(p.name))
    except OSError:
        return []


def observe(path: Path, deep: bool = True) -> Optional[Observation]:
    """(entries, bytes, newest mtime) of a file or a whole tree (of its top alone unless ``deep``);
    None once it is gone."""
    try:
        top = os.lstat(path)
    except OSError:
        return None
    entries, size, newest = 1, top.st_size, top.st_mtime_ns
    if deep and path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                try:
                    info = os.lstat(os.path.join(dirpath, name))
                except OSError:
                    continue
                entries += 1
                size += info.st_size
                newest = max(newest, info.st_mtime_ns)
    return entries, size, newest


def settle_step(
    tracked: Mapping[Path, Tracked],
    observed: Mapping[Path, Optional[Observation]],
    renamed: set[Path],
    now: float,
    settle: float,
) -> tuple[list[Path], dict[Path, Tracked]]:
    """Given fresh observations, return (drops complete now, what stays tracked).

    A renamed drop is complete at once; any other once unchanged for ``settle`` seconds. A drop
    that vanished is forgotten.
    """
    ready: list[Path] = []
    still: dict[Path, Tracked] = {}
    for path, seen in observed.items():
        if seen is None:
            continue
        before = tracked.get(path)
        if path in renamed or (before is not None and before.seen == seen and now - before.since >= settle):
            ready.append(path)
        elif before is not None and before.seen == seen:
            still[path] = before
        else:
            still[path] = Tracked(seen, now)
    return ready, still


class _Forward(FileSystemEventHandler):
    """The polling observer's events, as drops."""

    def __init__(self, inbox: Path, notify: Callable[[Drop, bool], None]) -> None:
        self.inbox = inbox
        self.notify = notify

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        target = getattr(event, "dest_path", "") or event.src_path
        _forward(self.inbox, Path(os.fsdecode(target)), event.event_type == "moved", self.notify)


def _forward(inbox: Path, path: Path, moved: bool, notify: Callable[[Drop, bool], None]) -> None:
    drop = drop_at(inbox, path)
    if drop is not None:
        # A rename whose destination *is* the drop means the writer finished elsewhere.
        notify(drop, moved and path == drop.path)


def watch(inbox: Path, notify: Callable[[Drop, bool], None], overflow: Callable[[], None]) -> Watcher:
    """Start watching ``inbox``; inotify where it works, else polling (and the log says which).
    ``notify`` and ``overflow`` (events were lost: rescan) are called on the watching thread."""
    folders = [inbox / kind for kind in KINDS]
    try:
        watcher = InboxWatcher(folders, [inbox / "jobs"], lambda path, moved: _forward(inbox, path, moved, notify),
                               overflow)
        watcher.start()
        log.info("watching %s with inotify", inbox)
        return watcher
    except OSError as exc:
        log.warning("inotify unavailable for %s (%s): polling it instead", inbox, exc)
    observer = PollingObserver()
    observer.schedule(_Forward(inbox, notify), str(inbox), recursive=True)
    observer.start()
    return observer


class Watcher(Protocol):
    def stop(self) -> None: ...

    def join(self, timeout: float) -> None: ...
