"""The inbox: the pure settle rule, which paths are drops, and scanning/observing real directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clarad.inbox import Drop, Tracked, drop_at, ignored, observe, scan, settle_step

A, B = Path("/inbox/models/a"), Path("/inbox/models/b")
SEEN = (3, 100, 1_000)
GREW = (3, 180, 2_000)


def test_renamed_drop_is_taken_at_once() -> None:
    ready, still = settle_step({}, {A: SEEN}, {A}, now=10.0, settle=2.0)
    assert (ready, still) == ([A], {})


def test_new_drop_is_tracked_not_taken() -> None:
    ready, still = settle_step({}, {A: SEEN}, set(), now=10.0, settle=2.0)
    assert (ready, still) == ([], {A: Tracked(SEEN, 10.0)})


def test_unchanged_drop_is_not_taken_before_settle_seconds() -> None:
    ready, still = settle_step({A: Tracked(SEEN, 10.0)}, {A: SEEN}, set(), now=11.9, settle=2.0)
    assert (ready, still) == ([], {A: Tracked(SEEN, 10.0)})


def test_unchanged_drop_is_taken_after_settle_seconds() -> None:
    ready, still = settle_step({A: Tracked(SEEN, 10.0)}, {A: SEEN}, set(), now=12.0, settle=2.0)
    assert (ready, still) == ([A], {})


def test_changed_observation_restarts_the_clock() -> None:
    ready, still = settle_step({A: Tracked(SEEN, 10.0)}, {A: GREW}, set(), now=13.0, settle=2.0)
    assert (ready, still) == ([], {A: Tracked(GREW, 13.0)})
    ready, still = settle_step(still, {A: GREW}, set(), now=14.5, settle=2.0)
    assert ready == []
    ready, still = settle_step(still, {A: GREW}, set(), now=15.0, settle=2.0)
    assert (ready, still) == ([A], {})


def test_vanished_drop_is_forgotten_even_if_renamed() -> None:
    ready, still = settle_step({A: Tracked(SEEN, 1.0), B: Tracked(SEEN, 1.0)}, {A: None, B: SEEN}, {A}, 9.0, 2.0)
    assert (ready, still) == ([B], {})


def test_zero_settle_takes_a_drop_on_its_second_observation() -> None:
    _, still = settle_step({}, {A: SEEN}, set(), now=5.0, settle=0.0)
    ready, _ = settle_step(still, {A: SEEN}, set(), now=5.0, settle=0.0)
    assert ready == [A]


@pytest.mark.parametrize(("name", "expected"), [
    (".hidden", True), ("scan.partial", True), ("scan.tmp", True), (".", True),
    ("scan", False), ("scan.yaml", False), ("partial", False), ("tmp.scan", False),
])
def test_ignored_names(name: str, expected: bool) -> None:
    assert ignored(name) is expected


INBOX = Path("/state/inbox")


@pytest.mark.parametrize(("path", "expected"), [
    (INBOX / "models" / "affine" / "1" / "model.py", Drop("models", INBOX / "models" / "affine")),
    (INBOX / "models" / "affine", Drop("models", INBOX / "models" / "affine")),
    (INBOX / "pipelines" / "p.yaml", Drop("pipelines", INBOX / "pipelines" / "p.yaml")),
    (INBOX / "jobs" / "p" / "scan1" / "a.dcm", Drop("jobs", INBOX / "jobs" / "p" / "scan1", "p")),
    (INBOX / "jobs" / "p" / "scan1", Drop("jobs", INBOX / "jobs" / "p" / "scan1", "p")),
    (INBOX / "jobs" / "p", Drop("jobs", INBOX / "jobs" / "p")),  # a pipeline's folder or a stray file
    (INBOX / "jobs", None),
    (INBOX / "models", None),
    (INBOX / "other" / "x", None),
    (INBOX / "models" / ".affine" / "config.pbtxt", None),
    (INBOX / "pipelines" / "p.yaml.partial", None),
    (INBOX / "jobs" / "p" / "scan1.tmp" / "a.dcm", None),
    (Path("/elsewhere/models/affine"), None),
])
def test_drop_at(path: Path, expected: Drop | None) -> None:
    assert drop_at(INBOX, path) == expected


def test_drop_at_ignores_hidden_pipeline_folder_as_scan_does(tmp_path: Path) -> None:
    (tmp_path / "jobs" / ".staging" / "scan1").mkdir(parents=True)
    assert scan(tmp_path) == []
    assert drop_at(tmp_path, tmp_path / "jobs" / ".staging" / "scan1") is None


def test_scan_of_missing_inbox_is_empty(tmp_path: Path) -> None:
    assert scan(tmp_path / "nowhere") == []


def test_scan_finds_models_then_pipelines_then_payloads_by_name(tmp_path: Path) -> None:
    for folder in ("models/b", "models/a", "models/.c", "models/d.partial", "jobs/q/s2", "jobs/p/s9",
                   "jobs/.hidden/s0", "jobs/p/.s1", "pipelines"):
        (tmp_path / folder).mkdir(parents=True)
    for file in ("pipelines/z.yaml", "pipelines/y.yml", "pipelines/x.yaml.tmp", "jobs/p/s3.dcm", "jobs/stray"):
        (tmp_path / file).write_text("x")
    assert scan(tmp_path) == [
        Drop("models", tmp_path / "models" / "a"),
        Drop("models", tmp_path / "models" / "b"),
        Drop("pipelines", tmp_path / "pipelines" / "y.yml"),
        Drop("pipelines", tmp_path / "pipelines" / "z.yaml"),
        Drop("jobs", tmp_path / "jobs" / "p" / "s3.dcm", "p"),
        Drop("jobs", tmp_path / "jobs" / "p" / "s9", "p"),
        Drop("jobs", tmp_path / "jobs" / "q" / "s2", "q"),
        Drop("jobs", tmp_path / "jobs" / "stray"),  # not in a pipeline's folder: refused by ingest
    ]


def test_observe_of_missing_path_is_none(tmp_path: Path) -> None:
    assert observe(tmp_path / "gone") is None


def test_observe_counts_entries_and_bytes_of_a_tree(tmp_path: Path) -> None:
    drop = tmp_path / "m"
    (drop / "1").mkdir(parents=True)
    (drop / "config.pbtxt").write_bytes(b"12345")
    (drop / "1" / "model.py").write_bytes(b"abc")
    seen = observe(drop)
    assert seen is not None
    entries, size, _ = seen
    assert entries == 4
    assert size == os.lstat(drop).st_size + os.lstat(drop / "1").st_size + 5 + 3


def test_observe_changes_when_a_file_deep_in_the_tree_grows(tmp_path: Path) -> None:
    drop = tmp_path / "m"
    (drop / "1").mkdir(parents=True)
    weights = drop / "1" / "model.py"
    weights.write_bytes(b"a" * 10)
    before = observe(drop)
    with open(weights, "ab") as handle:
        handle.write(b"b" * 10)
    after = observe(drop)
    assert before is not None and after is not None
    assert before != after
    assert after[1] == before[1] + 10


def test_observe_of_a_single_file(tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    file.write_bytes(b"name: p\n")
    os.utime(file, ns=(1_000_000_000, 2_000_000_000))
    assert observe(file) == (1, 8, 2_000_000_000)


# -- inotify ---------------------------------------------------------------------------------------


def test_parse_reads_each_event_with_its_name() -> None:
    import struct

    from clarad.inotify import IN_CREATE, IN_MOVED_TO, parse

    def event(wd: int, mask: int, name: bytes) -> bytes:
        padded = name + b"\0" * (16 - len(name) % 16)
        return struct.pack("iIII", wd, mask, 0, len(padded)) + padded

    buffer = event(1, IN_CREATE, b"model") + event(2, IN_MOVED_TO, b"x.yaml") + struct.pack("iIII", 3, 0x4000, 0, 0)
    assert list(parse(buffer)) == [(1, IN_CREATE, "model"), (2, IN_MOVED_TO, "x.yaml"), (3, 0x4000, "")]


def test_watcher_reports_renames_at_once_and_watches_new_pipeline_folders(tmp_path) -> None:
    import queue

    from clarad.inotify import InboxWatcher

    inbox = tmp_path / "inbox"
    for kind in ("models", "pipelines", "jobs"):
        (inbox / kind).mkdir(parents=True)
    seen: "queue.Queue[tuple[Path, bool]]" = queue.Queue()
    watcher = InboxWatcher([inbox / k for k in ("models", "pipelines", "jobs")], [inbox / "jobs"],
                           lambda path, moved: seen.put((path, moved)), lambda: None)
    watcher.start()
    try:
        (tmp_path / "p.yaml").write_text("x")
        (tmp_path / "p.yaml").rename(inbox / "pipelines" / "p.yaml")
        assert seen.get(timeout=5) == (inbox / "pipelines" / "p.yaml", True)
        (inbox / "jobs" / "p").mkdir()
        assert seen.get(timeout=5) == (inbox / "jobs" / "p", False)
        (tmp_path / "payload").write_text("1")
        (tmp_path / "payload").rename(inbox / "jobs" / "p" / "payload")
        assert seen.get(timeout=5) == (inbox / "jobs" / "p" / "payload", True)
        (inbox / "jobs" / "p" / "payload").rename(tmp_path / "taken")  # leaving the inbox: no drop event
        (tmp_path / "next").write_text("2")
        (tmp_path / "next").rename(inbox / "jobs" / "p" / "next")
        assert seen.get(timeout=5) == (inbox / "jobs" / "p" / "next", True)
    finally:
        watcher.stop()
