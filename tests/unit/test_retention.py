"""Finished jobs kept by age and total size, the oldest removed first: the rule, and a prune over a
real store and real directories."""

from __future__ import annotations

import asyncio
from pathlib import Path

from clarad.jobs import JobStatus
from clarad.layout import Layout
from clarad.retention import DAY, directory_size, prune, to_remove
from clarad.store import Store


def job(job_id: str, stopped_at: float, size: int) -> dict:
    return {"id": job_id, "stopped_at": stopped_at, "size": size}


def test_jobs_older_than_the_age_limit_go() -> None:
    jobs = [job("old", 0, 1), job("new", 9 * DAY, 1)]
    assert to_remove(jobs, now=10 * DAY, max_age_days=5, max_bytes=0) == ["old"]


def test_the_oldest_go_first_until_the_rest_fits() -> None:
    jobs = [job("a", 1, 100), job("b", 2, 100), job("c", 3, 100), job("d", 4, 100)]
    assert to_remove(jobs, now=10, max_age_days=0, max_bytes=250) == ["a", "b"]
    assert to_remove(jobs, now=10, max_age_days=0, max_bytes=400) == []


def test_zero_limits_keep_everything() -> None:
    assert to_remove([job("a", 0, 10**12)], now=1000 * DAY, max_age_days=0, max_bytes=0) == []


def test_prune_removes_the_oldest_finished_jobs_directory_and_record(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "state")
    layout.create()
    store = Store(layout.database)
    try:
        for n, size in enumerate((3000, 2000, 1000)):
            job_id = f"j{n}"
            store.create_job(job_id, "p", job_id, "normal", ["a"], float(n))
            (layout.job_dir(job_id) / "input").mkdir(parents=True)
            (layout.job_dir(job_id) / "input" / "data").write_bytes(b"x" * size)
            store.finish_job(job_id, JobStatus.HEALTHY, "done", 100.0 + n)
        store.create_job("running", "p", "running", "normal", ["a"], 5.0)
        layout.job_dir("running").mkdir()
        removed = asyncio.run(prune(layout, store, now=200.0, max_age_days=0, max_bytes=3500))
        assert removed == ["j0"]
        assert sorted(p.name for p in layout.jobs.iterdir()) == ["j1", "j2", "running"]
        assert [j["id"] for j in store.jobs()] == ["running", "j2", "j1"]
        assert [j["size"] for j in store.finished_jobs()] == [2000, 1000]
    finally:
        store.close()


def test_directory_size_counts_files_and_not_what_links_point_to(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"12345")
    (tmp_path / "big").write_bytes(b"x" * 10_000)
    (tmp_path / "d" / "link").symlink_to(tmp_path / "big")
    assert directory_size(tmp_path / "d") == 5 + len(str(tmp_path / "big"))
    assert directory_size(tmp_path / "gone") == 0


def test_prune_in_batches_removes_what_the_rule_says_over_every_finished_job(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "state")
    layout.create()
    store = Store(layout.database)
    try:
        sizes = [400, 100, 300, 200, 100, 500, 100]
        for n, size in enumerate(sizes):
            job_id = f"j{n}"
            store.create_job(job_id, "p", job_id, "normal", ["a"], float(n))
            (layout.job_dir(job_id)).mkdir(parents=True)
            (layout.job_dir(job_id) / "data").write_bytes(b"x" * size)
            store.finish_job(job_id, JobStatus.HEALTHY, "done", 100.0 + (n if n != 3 else 1.5))  # j3 before j2
        expected = to_remove([{"id": f"j{n}", "stopped_at": 100.0 + (n if n != 3 else 1.5), "size": s}
                              for n, s in sorted(enumerate(sizes), key=lambda e: e[0] if e[0] != 3 else 1.5)],
                             now=200.0, max_age_days=0, max_bytes=700)
        removed = asyncio.run(prune(layout, store, now=200.0, max_age_days=0, max_bytes=700, batch=2))
        assert removed == expected == ["j0", "j1", "j3", "j2"]
        assert store.finished_bytes() == 700 and sorted(p.name for p in layout.jobs.iterdir()) == ["j4", "j5", "j6"]
        assert store.unmeasured_jobs() == []
    finally:
        store.close()
