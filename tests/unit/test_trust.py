"""Whose drops clarad takes: root's, its own user's and drop_group members', through directories no
one else may write (clarad/trust.py)."""

from __future__ import annotations

import asyncio
import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from clarad.inbox import Drop
from clarad.trust import Seen, Trust, refusal
from tests.unit.test_hostile_models import Harness

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
NOBODY = pwd.getpwnam("nobody").pw_uid
FILE, DIR = stat.S_IFREG | 0o644, stat.S_IFDIR | 0o770


def test_a_drop_of_trusted_owners_through_closed_directories_is_taken() -> None:
    seen = [Seen(Path("/s/inbox/jobs/p/x"), 1000, FILE), Seen(Path("/s/inbox/jobs/p"), 0, DIR),
            Seen(Path("/s"), 0, stat.S_IFDIR | 0o751)]
    assert refusal(seen, lambda uid: uid in (0, 1000)) is None


@pytest.mark.parametrize("index, uid, mode, why", [
    (0, 1001, FILE, "/s/inbox/jobs/p/x is owned by uid 1001, not by root, clarad's user or a member of drop_group"),
    (0, 1000, FILE | 0o002, "/s/inbox/jobs/p/x is writable by others"),
    (1, 1001, DIR, "/s/inbox/jobs/p is owned by uid 1001, not by root, clarad's user or a member of drop_group"),
    (2, 0, stat.S_IFDIR | 0o777, "/s is writable by others"),
])
def test_the_first_path_that_fails_is_named(index: int, uid: int, mode: int, why: str) -> None:
    seen = [Seen(Path("/s/inbox/jobs/p/x"), 1000, FILE), Seen(Path("/s/inbox/jobs/p"), 0, DIR),
            Seen(Path("/s"), 0, stat.S_IFDIR | 0o750)]
    seen[index] = Seen(seen[index].path, uid, mode)
    assert refusal(seen, lambda u: u in (0, 1000)) == why


def test_members_of_drop_group_and_clarads_user_are_trusted_others_not() -> None:
    trust = Trust(None)
    assert trust.trusted(0) and trust.trusted(os.geteuid())
    assert trust.trusted(NOBODY) == (pwd.getpwuid(NOBODY).pw_gid == os.getegid())
    assert not trust.trusted(4_000_000_000)  # no such user


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path / "state")
    path = h.layout.inbox / "pipelines" / "p.yaml"
    path.write_text("name: p\noperators:\n- name: op\n  command: [/bin/true]\n")
    asyncio.run(h.ingest.take(Drop("pipelines", path)))
    yield h
    h.close()


def reasons(h: Harness) -> list[str]:
    return [p.read_text() for p in sorted(h.layout.rejected.glob("*.reason"))]


@ROOT_ONLY
def test_a_payload_owned_by_an_untrusted_user_is_not_taken(harness: Harness) -> None:
    payload = harness.layout.job_inbox("p") / "scan.txt"
    payload.write_text("x")
    os.chown(payload, NOBODY, NOBODY)
    assert asyncio.run(harness.ingest.take(Drop("jobs", payload, "p"))) is None
    assert reasons(harness) == [f"scan.txt: not taken: {payload} is owned by uid {NOBODY}, not by root, clarad's "
                                "user or a member of drop_group\n"]
    assert harness.store.jobs() == []


def test_a_drop_through_a_folder_anyone_may_write_is_not_taken(harness: Harness) -> None:
    folder = harness.layout.job_inbox("p")
    folder.chmod(0o777)
    payload = folder / "scan.txt"
    payload.write_text("x")
    assert asyncio.run(harness.ingest.take(Drop("jobs", payload, "p"))) is None
    assert reasons(harness) == [f"scan.txt: not taken: {folder} is writable by others\n"]
    assert harness.store.jobs() == []


def test_a_trusted_payload_is_taken(harness: Harness) -> None:
    payload = harness.layout.job_inbox("p") / "scan.txt"
    payload.write_text("x")
    assert asyncio.run(harness.ingest.take(Drop("jobs", payload, "p"))) is not None
    assert reasons(harness) == []


def test_a_symlinks_mode_is_not_held_against_it() -> None:
    """A symlink is always 0777; it is refused for being a symlink, with that reason, not here."""
    seen = [Seen(Path("/s/inbox/jobs/p/link"), 0, stat.S_IFLNK | 0o777), Seen(Path("/s"), 0, stat.S_IFDIR | 0o750)]
    assert refusal(seen, lambda uid: uid == 0) is None
