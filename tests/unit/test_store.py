"""SQLite state on a real file: job and operator transitions, lookups, schema version, children."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from clarad import database
from clarad.database import until_recorded
from clarad.errors import ClaradError, TransitionError
from clarad.jobs import JobState, JobStatus
from clarad.store import MIGRATIONS, Store

JOB = "0123456789abcdef0123456789abcdef"
OTHER = "0123ffffffffffffffffffffffffffff"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "clarad.db")
    yield opened
    opened.close()


def states(store: Store, job_id: str = JOB) -> dict[str, tuple[str, str | None]]:
    job = store.job(job_id)
    assert job is not None
    return {op["name"]: (op["state"], op["reason"]) for op in job["operators"]}


def test_new_job_is_pending_with_pending_operators_in_order(store: Store) -> None:
    store.create_job(JOB, "seg", "scan-1", "normal", ["b", "a", "c"], now=10.0)
    job = store.job(JOB)
    assert job is not None
    assert {k: job[k] for k in ("id", "pipeline", "name", "priority", "state", "status", "created_at", "models")} == {
        "id": JOB, "pipeline": "seg", "name": "scan-1", "priority": "normal", "state": "PENDING", "status": None,
        "created_at": 10.0, "models": {}}
    assert [(op["name"], op["position"], op["state"]) for op in job["operators"]] == [
        ("b", 0, "PENDING"), ("a", 1, "PENDING"), ("c", 2, "PENDING")]


def test_job_runs_and_finishes_healthy(store: Store) -> None:
    store.create_job(JOB, "seg", "scan-1", "normal", ["a"], now=10.0)
    store.start_job(JOB, "triton-0", now=11.0)
    store.note_job_models(JOB, {"affine": "d1"})
    store.move_operator(JOB, "a", "start", now=12.0)
    store.move_operator(JOB, "a", "complete", now=13.0, exit_code=0)
    store.finish_job(JOB, JobStatus.HEALTHY, "all operators completed", now=14.0)
    job = store.job(JOB)
    assert job is not None
    assert (job["state"], job["status"], job["reason"], job["instance"], job["models"]) == (
        "STOPPED", "HEALTHY", "all operators completed", "triton-0", {"affine": "d1"})
    assert (job["started_at"], job["stopped_at"]) == (11.0, 14.0)
    (op,) = job["operators"]
    assert (op["state"], op["exit_code"], op["started_at"], op["stopped_at"]) == ("COMPLETED", 0, 12.0, 13.0)


def test_finish_faults_leftover_operators_with_the_job_reason(store: Store) -> None:
    store.create_job(JOB, "seg", "scan-1", "normal", ["a", "b", "c", "d"], now=1.0)
    store.start_job(JOB, None, now=2.0)
    store.move_operator(JOB, "a", "start", now=3.0)
    store.move_operator(JOB, "a", "complete", now=4.0, exit_code=0)
    store.move_operator(JOB, "b", "start", now=4.0)
    store.move_operator(JOB, "d", "start", now=4.0)
    store.move_operator(JOB, "d", "fault", now=5.0, reason="killed by SIGKILL", exit_code=-9)
    store.finish_job(JOB, JobStatus.FAULTED, "timed out after 600 s", now=600.0)
    assert states(store) == {
        "a": ("COMPLETED", None),
        "b": ("FAULTED", "timed out after 600 s"),
        "c": ("FAULTED", "timed out after 600 s"),
        "d": ("FAULTED", "killed by SIGKILL"),
    }


def test_pending_job_can_be_canceled_before_it_runs(store: Store) -> None:
    store.create_job(JOB, "seg", "scan-1", "normal", ["a"], now=1.0)
    store.finish_job(JOB, JobStatus.CANCELED, "canceled before it started", now=2.0)
    job = store.job(JOB)
    assert job is not None and (job["state"], job["status"], job["started_at"]) == ("STOPPED", "CANCELED", None)
    assert states(store) == {"a": ("FAULTED", "canceled before it started")}


def test_starting_a_running_job_is_refused_and_changes_nothing(store: Store) -> None:
    store.create_job(JOB, "seg", "scan-1", "normal", ["a"], now=1.0)
    store.start_job(JOB, "triton-0", now=2.0)
    with pytest.raises(TransitionError, match=f"job {JOB} is RUNNING: cannot start"):
        store.start_job(JOB, "triton-1", now=3.0)
    job = store.job(JOB)
    assert job is not None and (job["instance"], job["started_at"]) == ("triton-0", 2.0)


def test_finishing_a_stopped_job_is_refused_and_changes_nothing(store: Store) -> None:
    store.create_job(JOB, "seg", "scan-1", "normal", ["a"], now=1.0)
    store.finish_job(JOB, JobStatus.HEALTHY, "done", now=2.0)
    with pytest.raises(TransitionError, match="is STOPPED: cannot finish"):
        store.finish_job(JOB, JobStatus.FAULTED, "late", now=3.0)
    job = store.job(JOB)
    assert job is not None and (job["status"], job["reason"], job["stopped_at"]) == ("HEALTHY", "done", 2.0)


def test_refused_operator_move_changes_nothing(store: Store) -> None:
    store.create_job(JOB, "seg", "scan-1", "normal", ["a"], now=1.0)
    with pytest.raises(TransitionError, match=f"operator a of job {JOB} is PENDING: cannot complete"):
        store.move_operator(JOB, "a", "complete", now=2.0, exit_code=0)
    assert states(store) == {"a": ("PENDING", None)}


def test_starting_an_unknown_job_is_refused(store: Store) -> None:
    with pytest.raises(ClaradError, match="no job nope"):
        store.start_job("nope", None, now=1.0)


def test_moving_an_unknown_operator_is_refused_with_a_reason(store: Store) -> None:
    store.create_job(JOB, "seg", "scan-1", "normal", ["a"], now=1.0)
    with pytest.raises(ClaradError):
        store.move_operator(JOB, "ghost", "start", now=2.0)


def test_job_found_by_unique_prefix(store: Store) -> None:
    store.create_job(JOB, "seg", "one", "normal", ["a"], now=1.0)
    store.create_job(OTHER, "seg", "two", "normal", ["a"], now=2.0)
    found = store.job("01234")
    assert found is not None and found["name"] == "one"
    exact = store.job(OTHER)
    assert exact is not None and exact["name"] == "two"
    assert store.job("9") is None


def test_ambiguous_prefix_is_refused(store: Store) -> None:
    store.create_job(JOB, "seg", "one", "normal", ["a"], now=1.0)
    store.create_job(OTHER, "seg", "two", "normal", ["a"], now=2.0)
    with pytest.raises(ClaradError, match="job id prefix 0123 is ambiguous"):
        store.job("0123")


def test_like_wildcards_in_a_prefix_are_literal(store: Store) -> None:
    store.create_job(JOB, "seg", "one", "normal", ["a"], now=1.0)
    assert store.job("_") is None
    assert store.job("%") is None


def test_jobs_list_newest_first(store: Store) -> None:
    store.create_job(JOB, "seg", "older", "normal", [], now=1.0)
    store.create_job(OTHER, "seg", "newer", "normal", [], now=2.0)
    assert [job["name"] for job in store.jobs()] == ["newer", "older"]
    assert [job["name"] for job in store.jobs(limit=1)] == ["newer"]


def test_job_counts_by_state_and_status(store: Store) -> None:
    for n, fate in enumerate([None, None, "run", JobStatus.HEALTHY, JobStatus.HEALTHY, JobStatus.FAULTED]):
        job_id = f"{n:032x}"
        store.create_job(job_id, "seg", f"j{n}", "normal", ["a"], now=float(n))
        if fate == "run":
            store.start_job(job_id, None, now=10.0)
        elif isinstance(fate, JobStatus):
            store.finish_job(job_id, fate, "r", now=10.0)
    assert store.job_counts() == {"PENDING": 2, "RUNNING": 1, "STOPPED": 3, "HEALTHY": 2, "FAULTED": 1}


def test_database_from_a_newer_clarad_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "clarad.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(ClaradError, match=f"schema version 99 is newer than this clarad understands \\({len(MIGRATIONS)}\\)"):
        Store(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 99
    assert db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    db.close()


def test_refused_database_is_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "clarad.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE future (x)")
    db.execute("PRAGMA user_version = 99")
    db.close()
    before = path.read_bytes()
    with pytest.raises(ClaradError):
        Store(path)
    assert path.read_bytes() == before


def test_reopening_keeps_data_and_schema_version(tmp_path: Path) -> None:
    first = Store(tmp_path / "clarad.db")
    first.create_job(JOB, "seg", "one", "normal", ["a"], now=1.0)
    first.close()
    again = Store(tmp_path / "clarad.db")
    try:
        assert again.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert [job["id"] for job in again.jobs()] == [JOB]
    finally:
        again.close()


def test_children_are_recorded_and_forgotten(store: Store) -> None:
    store.record_child(101, 5.5, "triton", "triton-0")
    store.record_child(202, 6.5, "operator", "job j op a")
    store.record_child(101, 7.5, "triton", "triton-0 again")  # a reused pid replaces the old record
    assert sorted((c["pid"], c["create_time"], c["kind"], c["label"]) for c in store.children()) == [
        (101, 7.5, "triton", "triton-0 again"), (202, 6.5, "operator", "job j op a")]
    store.forget_child(101)
    store.forget_child(999)
    assert [c["pid"] for c in store.children()] == [202]


def test_held_job_is_pending_but_not_recovered_until_released(store: Store) -> None:
    store.create_job(JOB, "seg", "scan-1", "normal", ["a"], now=10.0, held=True)
    store.create_job(OTHER, "seg", "scan-2", "normal", ["a"], now=11.0)
    job = store.job(JOB)
    assert job is not None and (job["state"], job["held"], job["reason"]) == (
        "PENDING", 1, "created; waiting to be started")
    assert [j["id"] for j in store.jobs_in(JobState.PENDING)] == [OTHER]
    store.release_job(JOB)
    assert [j["id"] for j in store.jobs_in(JobState.PENDING)] == [JOB, OTHER]
    assert store.job(JOB)["reason"] is None  # type: ignore[index]


def test_metadata_is_replaced_whole_and_goes_with_its_model_or_pipeline(store: Store) -> None:
    model_id = store.accept_model("seg", "d" * 64, "python", [1], 10, "inbox:seg", 1.0)
    pipeline_id = store.accept_pipeline("Liver", "name: Liver", 1.0)
    store.replace_metadata("model", model_id, {"Owner": "a", "stage": "b"})
    store.replace_metadata("model", model_id, {"Owner": "c"})
    store.replace_metadata("pipeline", pipeline_id, {"k": "v"})
    store.replace_metadata("job", JOB, {"k": "v"})
    assert store.metadata("model", model_id) == {"Owner": "c"}
    store.remove_model("seg")
    store.remove_pipeline("liver")  # names are case-insensitive
    assert (store.metadata("model", model_id), store.metadata("pipeline", pipeline_id)) == ({}, {})
    assert store.metadata("job", JOB) == {"k": "v"}
    assert store.pipelines() == []


def test_pipeline_found_by_name_in_any_case_or_by_id(store: Store) -> None:
    pipeline_id = store.accept_pipeline("Liver", "name: Liver", 1.0)
    assert store.find_pipeline("LIVER")["id"] == pipeline_id  # type: ignore[index]
    assert store.find_pipeline(pipeline_id.upper())["name"] == "Liver"  # type: ignore[index]
    assert store.find_pipeline("kidney") is None


def test_pipelines_are_found_by_name_in_any_case_or_by_id_prefix(store: Store) -> None:
    pid = store.accept_pipeline("Seg-Liver", "name: Seg-Liver", now=1.0)
    other = store.accept_pipeline("lungs", "name: lungs", now=2.0)
    assert store.find_pipeline("seg-liver")["id"] == pid  # type: ignore[index]
    assert store.find_pipeline(pid[:6].upper())["name"] == "Seg-Liver"  # type: ignore[index]
    assert store.find_pipeline(other)["name"] == "lungs"  # type: ignore[index]
    assert store.find_pipeline("nothing") is None
    assert store.find_pipeline("%") is None  # a wildcard is literal


def test_an_ambiguous_pipeline_id_prefix_is_refused(store: Store) -> None:
    store.accept_pipeline("a", "name: a", now=1.0)
    store.accept_pipeline("b", "name: b", now=1.0)
    store.db.execute("UPDATE pipelines SET id = 'ab' || id")
    with pytest.raises(ClaradError, match="pipeline id prefix ab is ambiguous"):
        store.find_pipeline("ab")


def test_a_removed_pipeline_is_gone_and_its_jobs_stay(store: Store) -> None:
    store.accept_pipeline("seg", "name: seg", now=1.0)
    store.create_job(JOB, "seg", "scan", "normal", ["a"], now=2.0)
    store.remove_pipeline("SEG")
    assert store.pipelines() == []
    assert store.job(JOB) is not None


def test_jobs_list_filters_by_pipeline_state_and_status(store: Store) -> None:
    store.create_job(JOB, "Seg", "scan-1", "normal", ["a"], now=1.0)
    store.create_job(OTHER, "lungs", "scan-2", "normal", ["a"], now=2.0)
    store.finish_job(OTHER, JobStatus.FAULTED, "broke", now=3.0)
    assert [j["id"] for j in store.jobs(pipeline="seg")] == [JOB]
    assert [j["id"] for j in store.jobs(state="STOPPED")] == [OTHER]
    assert [j["id"] for j in store.jobs(status="faulted")] == [OTHER]
    assert store.jobs(pipeline="lungs", status="HEALTHY") == []
    assert [j["id"] for j in store.jobs()] == [OTHER, JOB]


def test_finished_jobs_oldest_first_are_measured_once_and_forgotten(store: Store) -> None:
    store.create_job(JOB, "p", "one", "normal", ["a"], now=1.0)
    store.create_job(OTHER, "p", "two", "normal", ["a"], now=2.0)
    store.finish_job(OTHER, JobStatus.HEALTHY, "done", now=5.0)
    store.finish_job(JOB, JobStatus.HEALTHY, "done", now=6.0)
    assert store.finished_jobs() == [{"id": OTHER, "stopped_at": 5.0, "size": None},
                                     {"id": JOB, "stopped_at": 6.0, "size": None}]
    store.note_job_size(OTHER, 42)
    assert store.finished_jobs()[0]["size"] == 42
    store.forget_jobs([OTHER])
    assert store.job(OTHER) is None
    assert store.db.execute("SELECT count(*) FROM operators WHERE job_id = ?", (OTHER,)).fetchone()[0] == 0


def _fill(path: Path, jobs: int) -> None:
    store = Store(path)
    for n in range(jobs):
        store.create_job(f"{n:032x}", "seg", f"job {n} " + "x" * 200, "normal", ["a", "b"], now=float(n))
    store.start_job(f"{0:032x}", None, now=1.0)
    store.close()


@pytest.mark.parametrize("damage", ["garbage", "middle"])
def test_a_damaged_database_is_refused_in_one_line_and_left_as_it_was(tmp_path: Path, damage: str) -> None:
    """Before: a raw traceback, and with damage in the middle of the file, the running job was
    recorded FAULTED (a write) before a later read failed."""
    path = tmp_path / "clarad.db"
    if damage == "garbage":
        path.write_bytes(b"this is not a database\n" * 200)
    else:
        _fill(path, 400)
        data = bytearray(path.read_bytes())
        page = int.from_bytes(data[16:18], "big")
        middle = (len(data) // page // 2) * page
        data[middle:middle + page] = b"\xa5" * page
        path.write_bytes(bytes(data))
    before = path.read_bytes()
    with pytest.raises(ClaradError) as refused:
        Store(path)
    assert str(refused.value).startswith(f"{path}: damaged (")
    assert str(refused.value).endswith("clarad changed nothing in it: restore a backup, or move it away to start "
                                       "with an empty one")
    assert "\n" not in str(refused.value)
    assert path.read_bytes() == before
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0


def _chattr(flag: str, path: Path) -> bool:
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


def test_a_write_the_disk_refused_leaves_the_store_usable_once_the_disk_is_back(tmp_path: Path) -> None:
    """A COMMIT the disk refused (a disk I/O error) ends its transaction: once the disk is back, the
    same transition is recorded (what until_recorded relies on)."""
    store = Store(tmp_path / "clarad.db")
    try:
        store.create_job(JOB, "seg", "one", "normal", ["a"], now=1.0)
        store.start_job(JOB, None, now=2.0)
        wal = Path(f"{store.path}-wal")
        if os.geteuid() != 0 or not _chattr("+i", wal):
            pytest.skip("making the WAL immutable needs root and chattr on this file system")
        try:
            with pytest.raises(sqlite3.Error):
                store.finish_job(JOB, JobStatus.HEALTHY, "done", now=3.0)
        finally:
            _chattr("-i", wal)
        store.finish_job(JOB, JobStatus.HEALTHY, "done", now=4.0)
        job = store.job(JOB)
        assert job is not None and (job["state"], job["status"], job["stopped_at"]) == ("STOPPED", "HEALTHY", 4.0)
    finally:
        store.close()


def test_until_recorded_tries_again_while_the_disk_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "RECORD_RETRY_FIRST", 0.01)
    attempts: list[int] = []

    def record() -> None:
        attempts.append(len(attempts))
        if len(attempts) < 3:
            raise sqlite3.OperationalError("disk I/O error")

    asyncio.run(until_recorded(record, "the end of job x"))
    assert attempts == [0, 1, 2]

    refused: list[int] = []

    def transition() -> None:  # not the disk's refusal: no second attempt
        refused.append(1)
        raise TransitionError("job x is STOPPED: cannot finish")

    asyncio.run(until_recorded(transition, "the end of job x"))
    assert refused == [1]


def test_the_database_is_not_readable_by_others_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        Store(tmp_path / "clarad.db").close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "clarad.db").stat().st_mode) == 0o640


def _record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(thread name, file) of each fsync clarad's database makes; the real fsync still runs."""
    import threading

    synced: list[tuple[str, str]] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append((threading.current_thread().name, os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(database.os, "fsync", fsync)
    return synced


def test_commits_on_the_loop_are_synced_in_a_worker_thread_not_on_the_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "clarad.db")
    synced = _record_fsyncs(monkeypatch)
    loop_thread = []

    async def dispatch() -> None:
        import threading

        loop_thread.append(threading.current_thread().name)
        for n in range(5):
            store.create_job(f"{n:032x}", "seg", f"scan-{n}", "normal", ["a"], now=10.0)
        while store._flushing is not None:  # the last fsync under way
            await asyncio.sleep(0.001)

    try:
        asyncio.run(dispatch())
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: the commit itself waits for no disk
        assert synced, "the WAL was never synced"
        assert all(thread != loop_thread[0] for thread, _ in synced)
        assert all(path == f"{tmp_path / 'clarad.db'}-wal" for _, path in synced)
        assert len(synced) <= 5  # commits made while one is under way share the next
    finally:
        store.close()


def test_catalog_reads_follow_every_change_of_models_and_pipelines(store: Store) -> None:
    assert (store.model_digests(), store.model_sizes(), store.catalog_counts()) == ({}, {}, (0, 0, 0))
    store.accept_model("seg", "d" * 64, "python", [1], 10, "inbox:seg", 1.0)
    assert (store.model_digests(), store.model_sizes(), store.catalog_counts()) == ({"seg": "d" * 64}, {"seg": 10},
                                                                                    (1, 10, 0))
    store.accept_model("seg", "e" * 64, "python", [1], 20, "inbox:seg", 2.0)
    assert (store.model_digests(), store.catalog_counts()) == ({"seg": "e" * 64}, (1, 20, 0))
    store.rollback_model("seg", "d" * 64, 3.0)
    assert (store.model_digests(), store.model_sizes()) == ({"seg": "d" * 64}, {"seg": 10})
    store.accept_pipeline("p", "name: p", 4.0)
    assert store.catalog_counts() == (1, 10, 1)
    store.remove_pipeline("p")
    store.remove_model("seg")
    assert (store.model_digests(), store.model_sizes(), store.catalog_counts()) == ({}, {}, (0, 0, 0))
    store.model_digests()["x"] = "changed by a caller"
    assert store.model_digests() == {}  # each caller gets its own copy


def scanned(store: Store) -> tuple[dict[str, int], int]:
    """Job counts and finished bytes as a scan over every job gives them."""
    counts: dict[str, int] = {}
    for row in store.db.execute("SELECT state, status, count(*) AS n FROM jobs GROUP BY state, status"):
        counts[row["state"]] = counts.get(row["state"], 0) + row["n"]
        if row["status"]:
            counts[row["status"]] = counts.get(row["status"], 0) + row["n"]
    total = store.db.execute("SELECT coalesce(sum(size), 0) FROM jobs WHERE state = 'STOPPED'").fetchone()[0]
    return counts, total


def test_running_job_totals_equal_a_scan_through_every_transition(store: Store) -> None:
    ids = [f"{n:032x}" for n in range(8)]
    for n, job_id in enumerate(ids):
        store.create_job(job_id, "seg", f"s{n}", "normal", ["a"], now=float(n))
    for job_id in ids[:6]:
        store.start_job(job_id, "triton-0", now=10.0)
    store.requeue_job(ids[5], "instance died")
    for job_id, status in zip(ids[:4], (JobStatus.HEALTHY, JobStatus.HEALTHY, JobStatus.FAULTED, JobStatus.CANCELED)):
        store.finish_job(job_id, status, "r", now=20.0)
    store.note_job_size(ids[0], 1000)
    store.note_job_size(ids[1], 500)
    store.note_job_size(ids[0], 700)  # measured again
    assert (store.job_counts(), store.finished_bytes()) == scanned(store) == (
        {"PENDING": 3, "RUNNING": 1, "STOPPED": 4, "HEALTHY": 2, "FAULTED": 1, "CANCELED": 1}, 1200)
    store.forget_jobs([ids[0], ids[3], ids[6]])  # a job not stopped is not forgotten
    assert (store.job_counts(), store.finished_bytes()) == scanned(store) == (
        {"PENDING": 3, "RUNNING": 1, "STOPPED": 2, "HEALTHY": 1, "FAULTED": 1}, 500)
    assert store.unmeasured_jobs() == [ids[2]]


def test_an_older_database_gets_totals_of_the_jobs_it_already_holds(tmp_path: Path) -> None:
    path = tmp_path / "clarad.db"
    old = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:5], start=1):
        for statement in database.statements(script):
            old.execute(statement)
        old.execute(f"PRAGMA user_version = {number}")
    old.execute("INSERT INTO jobs (id, pipeline, name, priority, state, status, created_at, stopped_at, size) "
                "VALUES ('a', 'p', 'a', 'normal', 'STOPPED', 'HEALTHY', 1, 2, 300), "
                "('b', 'p', 'b', 'normal', 'PENDING', NULL, 3, NULL, NULL)")
    old.close()
    store = Store(path)
    try:
        assert (store.job_counts(), store.finished_bytes()) == ({"STOPPED": 1, "HEALTHY": 1, "PENDING": 1}, 300)
    finally:
        store.close()


def test_a_commit_outside_the_loop_is_synced_before_it_returns(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "clarad.db")
    synced = _record_fsyncs(monkeypatch)
    try:
        store.create_job(JOB, "seg", "scan-1", "normal", ["a"], now=10.0)
        assert [path for _, path in synced] == [f"{tmp_path / 'clarad.db'}-wal"]
    finally:
        store.close()


def test_a_trigger_body_is_one_statement_of_a_migration() -> None:
    script = "CREATE TABLE t (x); CREATE TRIGGER g AFTER INSERT ON t BEGIN UPDATE t SET x = 1; DELETE FROM t; END;\n"
    assert [s.strip() for s in database.statements(script)] == [
        "CREATE TABLE t (x);", "CREATE TRIGGER g AFTER INSERT ON t BEGIN UPDATE t SET x = 1; DELETE FROM t; END;"]
