"""The SQLite file under the store: opened only when whole, migrated step by step, one transaction at a
time, private to clarad's user and group, and written again while the disk refuses.

A damaged file (not a database, a page that reads wrong) or one from a newer clarad is refused
before anything is written to it, in one line that names it. A transaction that fails, its COMMIT
included (a disk I/O error, a full or read-only file system), leaves the connection ready for the
next one, and ``until_recorded`` writes what must be written once the disk takes writes again.

Durability: the WAL is written at each COMMIT (synchronous=NORMAL) and fsynced right after, in a
worker thread while the daemon's loop runs (inline otherwise), so no commit waits for the disk on
the way to an operator. A commit survives a crash of clarad at once (it is in the kernel's page
cache); a power loss or a kernel crash may roll back the commits of the last few milliseconds (those
whose fsync had not finished), never damaging the file. The start-up reconciliation treats such a
rolled-back step like one interrupted by a crash.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Optional

from clarad.errors import ClaradError

log = logging.getLogger("clarad")

RECORD_RETRY_FIRST = 1.0  # seconds before recording again what the disk refused
RECORD_RETRY_LONGEST = 30.0


async def until_recorded(record: Callable[[], None], what: str) -> None:
    """Run ``record`` until it succeeds: while the state directory refuses writes (read-only, full,
    a disk I/O error), try again, waiting longer each time, so what must be recorded (a job's end)
    is, once the disk is back. A refusal that is not the disk's ends the attempts, as does clarad
    stopping (the next start finds what was not recorded)."""
    wait = RECORD_RETRY_FIRST
    while True:
        try:
            record()
            return
        except (sqlite3.Error, OSError) as exc:
            log.error("recording %s failed (%s); trying again in %.0f s", what, exc, wait)
        except Exception:
            log.exception("recording %s failed", what)
            return
        try:
            await asyncio.sleep(wait)
        except asyncio.CancelledError:
            log.error("clarad is stopping: %s is not recorded; its next start records it", what)
            return
        wait = min(2 * wait, RECORD_RETRY_LONGEST)


def _private(path: Path) -> None:
    """The database and its WAL files are clarad's to write and its group's to read, whatever the
    umask they were created under."""
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with suppress(OSError):
            mode = stat.S_IMODE(name.stat().st_mode)
            if mode & 0o037:
                name.chmod(mode & ~0o037)


class Database:
    """One connection to the file at ``path``, with the schema of ``migrations`` applied."""

    def __init__(self, path: Path, migrations: list[str]) -> None:
        self.migrations = migrations
        self.path = path
        self._flushing: Optional[asyncio.Future[None]] = None  # the WAL's fsync under way
        self._unflushed = False  # a commit made while it was under way: fsync again after it
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        try:  # refuse before changing anything in the file
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            damage = [row[0] for row in self.db.execute("PRAGMA quick_check(1)")]
        except sqlite3.DatabaseError as exc:
            damage = [str(exc)]
        if damage != ["ok"]:
            self.db.close()
            raise ClaradError(f"{path}: damaged ({' '.join(damage[0].split())}); clarad changed nothing in it: "
                              "restore a backup, or move it away to start with an empty one")
        if version > len(migrations):
            self.db.close()
            raise ClaradError(
                f"{path}: schema version {version} is newer than this clarad understands "
                f"({len(migrations)}); upgrade clarad or restore a backup"
            )
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # fsync after the commit instead: _flush
        self.db.execute("PRAGMA foreign_keys=ON")
        self._migrate(version)
        _private(path)

    def close(self) -> None:
        self.db.close()  # the last connection checkpoints the WAL into the file, synced

    def _flush(self) -> None:
        """Make the commits so far durable: fsync the WAL, in a worker thread when the loop runs
        (one at a time; commits made meanwhile get the next one), else here."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._fsync_wal()
            return
        self._unflushed = True
        if self._flushing is None or self._flushing.get_loop() is not loop:  # none, or a finished loop's
            self._flush_in_thread(loop)

    def _flush_in_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        self._unflushed = False
        self._flushing = flushing = loop.run_in_executor(None, self._fsync_wal)

        def done(_: "asyncio.Future[None]") -> None:
            if self._flushing is flushing:
                self._flushing = None
            if self._unflushed and not loop.is_closed():
                self._flush_in_thread(loop)

        flushing.add_done_callback(done)

    def _fsync_wal(self) -> None:
        """The WAL's pages to the disk, whichever descriptor wrote them. A failure is logged: the
        commit stands (a crash of clarad keeps it), only a power loss could take it back."""
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # no WAL: nothing written since the last checkpoint
            return
        except OSError as exc:
            log.error("syncing %s-wal failed: %s", self.path, exc)
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            log.error("syncing %s-wal failed: %s", self.path, exc)
        finally:
            os.close(fd)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction. Whatever fails in it, the COMMIT included (a disk I/O error, a full or
        read-only file system), ends it, so the next one can begin once the disk is back."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                with suppress(sqlite3.Error):  # the first error is the one to report
                    self.db.execute("ROLLBACK")
            raise
        self._flush()

    def _migrate(self, version: int) -> None:
        for number, script in enumerate(self.migrations[version:], start=version + 1):
            with self._tx() as db:
                for statement in statements(script):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")


def statements(script: str) -> list[str]:
    """The SQL statements of ``script`` (a trigger's body holds semicolons of its own)."""
    found, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip().rstrip(";").strip():
                found.append(pending)
            pending = ""
    if pending.strip().rstrip(";").strip():
        found.append(pending)
    return found
