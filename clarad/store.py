"""SQLite state: what must survive a restart (models, pipelines, jobs, child processes).

One connection, owned by the daemon's loop thread. Each public method is one transaction named after
the transition it records. The schema's migrations are in schema.py; opening the file (refusing a
damaged one or one from a newer clarad, untouched), migrating it and running transactions is
database.py's.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from clarad.database import Database
from clarad.errors import ClaradError
from clarad.jobs import JobState, JobStatus, OperatorState, job_transition, operator_transition
from clarad.schema import MIGRATIONS


def _prefix(text: str) -> str:
    """A LIKE pattern (with ESCAPE '\\') matching what starts with ``text``."""
    return text.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"


def new_id() -> str:
    """Clara-style identifier: 32 hex digits."""
    return uuid.uuid4().hex


class Store(Database):
    def __init__(self, path: Path) -> None:
        super().__init__(path, MIGRATIONS)
        self.catalog_version = 0  # moves with every change of models or pipelines
        self._catalog: dict[str, Any] = {}  # reads of the catalog, until it changes (every pass reads them)

    def _catalog_changed(self) -> None:
        self.catalog_version += 1
        self._catalog.clear()

    def _cached(self, key: str, read: Callable[[], Any]) -> Any:
        if key not in self._catalog:
            self._catalog[key] = read()
        return self._catalog[key]

    # -- models ----------------------------------------------------------------------------------

    def accept_model(self, name: str, digest: str, backend: str, versions: list[int], size: int,
                     source: str, now: float) -> str:
        """Record a new model or a new revision of one; the replaced revision is kept. The id stays
        the same across revisions of a name."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
            model_id = row["id"] if row else new_id()
            if row is not None:
                self._keep_revision(db, row, now)
            db.execute("DELETE FROM model_revisions WHERE name = ? AND digest = ?", (name, digest))
            db.execute(
                "INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, model_id, digest, backend, json.dumps(versions), size, source, now),
            )
        self._catalog_changed()
        return model_id

    @staticmethod
    def _keep_revision(db: sqlite3.Connection, row: sqlite3.Row, now: float) -> None:
        db.execute(
            "INSERT OR REPLACE INTO model_revisions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (row["name"], row["digest"], row["backend"], row["versions"], row["size"], row["source"],
             row["added_at"], now),
        )

    def rollback_model(self, name: str, digest: str, now: float) -> None:
        """Make kept revision ``digest`` live again; the live one is kept in its place."""
        with self._tx() as db:
            live = db.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
            kept = db.execute("SELECT * FROM model_revisions WHERE name = ? AND digest = ?", (name, digest)).fetchone()
            if live is None or kept is None:
                raise ClaradError(f"model {name} has no kept revision {digest[:12]}")
            self._keep_revision(db, live, now)
            db.execute("DELETE FROM model_revisions WHERE name = ? AND digest = ?", (name, digest))
            db.execute(
                "UPDATE models SET digest = ?, backend = ?, versions = ?, size = ?, source = ?, added_at = ? WHERE name = ?",
                (kept["digest"], kept["backend"], kept["versions"], kept["size"], kept["source"], kept["added_at"], name),
            )
        self._catalog_changed()

    def prune_revisions(self, name: str, keep: int) -> list[str]:
        """Forget all but the ``keep`` most recently replaced revisions; return the digests forgotten."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT digest FROM model_revisions WHERE name = ? ORDER BY replaced_at DESC", (name,)
            ).fetchall()
            dropped = [row["digest"] for row in rows[keep:]]
            db.executemany("DELETE FROM model_revisions WHERE name = ? AND digest = ?", [(name, d) for d in dropped])
        return dropped

    def remove_model(self, name: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM metadata WHERE kind = 'model' AND owner IN (SELECT id FROM models WHERE name = ?)",
                       (name,))
            db.execute("DELETE FROM models WHERE name = ?", (name,))
            db.execute("DELETE FROM model_revisions WHERE name = ?", (name,))
            db.execute("DELETE FROM model_costs WHERE name = ?", (name,))
        self._catalog_changed()

    def revisions(self, name: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT * FROM model_revisions WHERE name = ? ORDER BY replaced_at DESC", (name,)
        ).fetchall()
        return [{**dict(row), "versions": json.loads(row["versions"])} for row in rows]

    def models(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM models ORDER BY name").fetchall()
        return [{**dict(row), "versions": json.loads(row["versions"])} for row in rows]

    def find_model(self, key: str) -> Optional[dict[str, Any]]:
        """A model by name, or by its id or a unique prefix of the id; None when there is none."""
        models = self.models()
        by_name = [m for m in models if m["name"] == key]
        if by_name:
            return by_name[0]
        matches = [m for m in models if m["id"].startswith(key.lower())] if key else []
        if len(matches) > 1:
            raise ClaradError(f"model id prefix {key} is ambiguous: {', '.join(m['name'] for m in matches)}")
        return matches[0] if matches else None

    def record_load_cost(self, name: str, digest: str, device: str, seconds: float, memory: int, now: float) -> None:
        """One measured load; the figures kept are the latest (a revision's cost does not drift)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO model_costs VALUES (?, ?, ?, 1, ?, ?, ?) ON CONFLICT (name, digest, device) DO UPDATE "
                "SET loads = loads + 1, load_seconds = excluded.load_seconds, memory_bytes = excluded.memory_bytes, "
                "measured_at = excluded.measured_at",
                (name, digest, device, seconds, memory, now),
            )

    def load_costs(self) -> list[dict[str, Any]]:
        """Measured costs of the live and kept revisions (a removed model's are deleted with it)."""
        return [dict(row) for row in self.db.execute("SELECT * FROM model_costs ORDER BY name, device")]

    def catalog_counts(self) -> tuple[int, int, int]:
        """Models, their bytes, and pipelines: one query, for the metrics snapshot."""
        return self._cached("counts", self._catalog_counts)  # type: ignore[no-any-return]

    def _catalog_counts(self) -> tuple[int, int, int]:
        row = self.db.execute(
            "SELECT (SELECT count(*) FROM models), (SELECT coalesce(sum(size), 0) FROM models), "
            "(SELECT count(*) FROM pipelines)"
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def model_sizes(self) -> dict[str, int]:
        return dict(self._cached("sizes", lambda: {row["name"]: row["size"]
                                                   for row in self.db.execute("SELECT name, size FROM models")}))

    def model_digests(self) -> dict[str, str]:
        return dict(self._cached("digests", lambda: {row["name"]: row["digest"]
                                                     for row in self.db.execute("SELECT name, digest FROM models")}))

    # -- pipelines -------------------------------------------------------------------------------

    def accept_pipeline(self, name: str, definition: str, now: float) -> str:
        with self._tx() as db:
            row = db.execute("SELECT id FROM pipelines WHERE name = ?", (name,)).fetchone()
            pipeline_id = row["id"] if row else new_id()
            db.execute("INSERT OR REPLACE INTO pipelines VALUES (?, ?, ?, ?)", (name, pipeline_id, definition, now))
        self._catalog_changed()
        return pipeline_id

    def pipelines(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self.db.execute("SELECT * FROM pipelines ORDER BY name")]

    def pipeline(self, name: str) -> Optional[dict[str, Any]]:
        row = self.db.execute("SELECT * FROM pipelines WHERE name = ?", (name,)).fetchone()
        return dict(row) if row else None

    def find_pipeline(self, key: str) -> Optional[dict[str, Any]]:
        """A pipeline by name (case-insensitive), or by its id or a unique prefix of the id."""
        found = self.pipeline(key)
        if found is not None or not key:
            return found
        rows = self.db.execute("SELECT * FROM pipelines WHERE id LIKE ? ESCAPE '\\' LIMIT 2", (_prefix(key),)).fetchall()
        if len(rows) > 1:
            raise ClaradError(f"pipeline id prefix {key} is ambiguous")
        return dict(rows[0]) if rows else None

    def remove_pipeline(self, name: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM metadata WHERE kind = 'pipeline' AND owner IN "
                       "(SELECT id FROM pipelines WHERE name = ?)", (name,))
            db.execute("DELETE FROM pipelines WHERE name = ?", (name,))
        self._catalog_changed()

    # -- jobs ------------------------------------------------------------------------------------

    def create_job(self, job_id: str, pipeline: str, name: str, priority: str, operators: list[str],
                   now: float, held: bool = False) -> None:
        """A PENDING job; a ``held`` one is not queued (nor after a restart) until ``release_job``."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO jobs (id, pipeline, name, priority, state, created_at, held, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, pipeline, name, priority, JobState.PENDING.value, now, int(held),
                 "created; waiting to be started" if held else None),
            )
            db.executemany(
                "INSERT INTO operators (job_id, name, position, state) VALUES (?, ?, ?, ?)",
                [(job_id, op, i, OperatorState.PENDING.value) for i, op in enumerate(operators)],
            )

    def release_job(self, job_id: str) -> None:
        """A held job may be queued now."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET held = 0, reason = NULL WHERE id = ? AND held = 1", (job_id,))

    def _job_state(self, db: sqlite3.Connection, job_id: str) -> JobState:
        row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise ClaradError(f"no job {job_id}")
        return JobState(row["state"])

    def start_job(self, job_id: str, instance: Optional[str], now: float) -> None:
        with self._tx() as db:
            state = job_transition(job_id, self._job_state(db, job_id), "start")
            db.execute(
                "UPDATE jobs SET state = ?, instance = ?, started_at = ?, reason = NULL WHERE id = ?",
                (state.value, instance, now, job_id),
            )

    def requeue_job(self, job_id: str, reason: str) -> None:
        """Back to PENDING: its instance died before any of its operators started."""
        with self._tx() as db:
            state = job_transition(job_id, self._job_state(db, job_id), "requeue")
            db.execute("UPDATE jobs SET state = ?, instance = NULL, started_at = NULL, reason = ? WHERE id = ?",
                       (state.value, reason, job_id))

    def note_wait(self, job_id: str, reason: str) -> None:
        """Why a PENDING job has not started yet (cleared when it starts)."""
        self.note_waits([job_id], reason)

    def note_waits(self, job_ids: list[str], reason: str) -> None:
        """The same reason for many PENDING jobs, in one transaction."""
        with self._tx() as db:
            db.executemany("UPDATE jobs SET reason = ? WHERE id = ? AND state = ?",
                           [(reason, job_id, JobState.PENDING.value) for job_id in job_ids])

    def note_job_models(self, job_id: str, models: dict[str, str]) -> None:
        """Record which revision of each model served the job."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET models = ? WHERE id = ?", (json.dumps(models), job_id))

    def finish_job(self, job_id: str, status: JobStatus, reason: str, now: float) -> None:
        """Stop the job; operators still PENDING or RUNNING are FAULTED with the same reason."""
        with self._tx() as db:
            state = job_transition(job_id, self._job_state(db, job_id), "finish")
            db.execute(
                "UPDATE jobs SET state = ?, status = ?, reason = ?, stopped_at = ? WHERE id = ?",
                (state.value, status.value, reason, now, job_id),
            )
            db.execute(
                "UPDATE operators SET state = ?, reason = coalesce(reason, ?), stopped_at = ? "
                "WHERE job_id = ? AND state IN (?, ?)",
                (OperatorState.FAULTED.value, reason, now, job_id,
                 OperatorState.PENDING.value, OperatorState.RUNNING.value),
            )

    def move_operator(self, job_id: str, name: str, event: str, now: float, reason: Optional[str] = None,
                      exit_code: Optional[int] = None) -> None:
        with self._tx() as db:
            row = db.execute("SELECT state FROM operators WHERE job_id = ? AND name = ?", (job_id, name)).fetchone()
            if row is None:
                raise ClaradError(f"job {job_id} has no operator {name}")
            target = operator_transition(job_id, name, OperatorState(row["state"]), event)
            column = "started_at" if event == "start" else "stopped_at"
            db.execute(
                f"UPDATE operators SET state = ?, reason = ?, exit_code = ?, {column} = ? WHERE job_id = ? AND name = ?",
                (target.value, reason, exit_code, now, job_id, name),
            )

    def jobs(self, limit: int = 100, pipeline: Optional[str] = None, state: Optional[str] = None,
             status: Optional[str] = None) -> list[dict[str, Any]]:
        """The newest jobs first; only those of ``pipeline`` (name, any case), in ``state``, with ``status``."""
        wheres = [(column, value) for column, value in (("pipeline", pipeline), ("state", state), ("status", status))
                  if value is not None]
        where = " AND ".join(f"{column} = ? COLLATE NOCASE" for column, _ in wheres) or "1"
        rows = self.db.execute(f"SELECT * FROM jobs WHERE {where} ORDER BY created_at DESC LIMIT ?",
                               (*[value for _, value in wheres], limit)).fetchall()
        return [self._job_dict(row) for row in rows]

    def finished_jobs(self, after: Optional[tuple[float, str]] = None, limit: int = -1) -> list[dict[str, Any]]:
        """Stopped jobs, oldest first: id, stopped_at, size (None until measured); those after
        ``after``, the (stopped_at, id) of the last of a previous batch; at most ``limit`` (-1: all)."""
        since = "" if after is None else "AND (stopped_at, id) > (?, ?)"
        rows = self.db.execute(f"SELECT id, stopped_at, size FROM jobs WHERE state = ? {since} ORDER BY stopped_at, id "
                               "LIMIT ?", (JobState.STOPPED.value, *(after or ()), limit))
        return [dict(row) for row in rows]

    def unmeasured_jobs(self) -> list[str]:
        """Stopped jobs whose size is not measured yet (those stopped since the last look)."""
        return [row["id"] for row in self.db.execute(
            "SELECT id FROM jobs INDEXED BY jobs_unmeasured WHERE state = 'STOPPED' AND size IS NULL")]  # as the index says

    def finished_bytes(self) -> int:
        """The measured size of every stopped job together (a running total, not a scan)."""
        row = self.db.execute("SELECT coalesce(sum(bytes), 0) FROM job_totals WHERE state = ?",
                              (JobState.STOPPED.value,)).fetchone()
        return int(row[0])

    def job_ids(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT id FROM jobs")}

    def note_job_size(self, job_id: str, size: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET size = ? WHERE id = ?", (size, job_id))

    def forget_jobs(self, job_ids: list[str]) -> None:
        """Remove stopped jobs' records (their directories are gone)."""
        with self._tx() as db:
            for job_id in job_ids:
                db.execute("DELETE FROM operators WHERE job_id = ?", (job_id,))
                db.execute("DELETE FROM metadata WHERE kind = 'job' AND owner = ?", (job_id,))
                db.execute("DELETE FROM jobs WHERE id = ? AND state = ?", (job_id, JobState.STOPPED.value))

    def jobs_in(self, state: JobState) -> list[dict[str, Any]]:
        """Jobs in ``state``, oldest first; held jobs are left out (nothing is to be done with them)."""
        rows = self.db.execute("SELECT * FROM jobs WHERE state = ? AND held = 0 ORDER BY created_at",
                               (state.value,)).fetchall()
        return [self._job_dict(row) for row in rows]

    def job(self, job_id_or_prefix: str) -> Optional[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM jobs WHERE id LIKE ? ESCAPE '\\' LIMIT 2",
                               (_prefix(job_id_or_prefix),)).fetchall()
        if len(rows) > 1:
            raise ClaradError(f"job id prefix {job_id_or_prefix} is ambiguous")
        if not rows:
            return None
        job = self._job_dict(rows[0])
        ops = self.db.execute("SELECT * FROM operators WHERE job_id = ? ORDER BY position", (job["id"],))
        job["operators"] = [dict(op) for op in ops]
        return job

    def most_used_pipeline(self, recent: int = 1000) -> Optional[str]:
        """The pipeline of most of the ``recent`` newest jobs (rowids grow with insertion)."""
        row = self.db.execute("SELECT pipeline FROM (SELECT pipeline FROM jobs ORDER BY rowid DESC LIMIT ?) "
                              "GROUP BY pipeline ORDER BY count(*) DESC LIMIT 1", (recent,)).fetchone()
        return str(row["pipeline"]) if row else None

    def job_counts(self) -> dict[str, int]:
        """Jobs by state, and stopped ones by status: {"PENDING": n, ..., "HEALTHY": n, ...}."""
        counts: dict[str, int] = {}
        for row in self.db.execute("SELECT state, status, jobs AS n FROM job_totals WHERE jobs > 0"):  # kept by triggers
            counts[row["state"]] = counts.get(row["state"], 0) + row["n"]
            if row["status"]:
                counts[row["status"]] = counts.get(row["status"], 0) + row["n"]
        return counts

    @staticmethod
    def _job_dict(row: sqlite3.Row) -> dict[str, Any]:
        job = dict(row)
        job["models"] = json.loads(job["models"]) if job["models"] else {}
        return job

    # -- metadata (Clara's, of a model, pipeline, job or payload) ------------------------------------

    def metadata(self, kind: str, owner: str) -> dict[str, str]:
        rows = self.db.execute("SELECT key, value FROM metadata WHERE kind = ? AND owner = ? ORDER BY key",
                               (kind, owner))
        return {row["key"]: row["value"] for row in rows}

    def replace_metadata(self, kind: str, owner: str, items: dict[str, str]) -> None:
        """Make ``items`` the whole metadata of ``owner`` (checked by clarad.metadata first)."""
        with self._tx() as db:
            db.execute("DELETE FROM metadata WHERE kind = ? AND owner = ?", (kind, owner))
            db.executemany("INSERT INTO metadata VALUES (?, ?, ?, ?, ?)",
                           [(kind, owner, key.casefold(), key, value) for key, value in items.items()])

    # -- child processes (so a crash never leaves one unaccounted for) ---------------------------

    def record_child(self, pid: int, create_time: float, kind: str, label: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO children VALUES (?, ?, ?, ?)", (pid, create_time, kind, label))

    def forget_child(self, pid: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM children WHERE pid = ?", (pid,))

    def forget_children(self) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM children")

    def children(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self.db.execute("SELECT * FROM children")]
