"""What a payload or a model given by path may hold (clarad/trees.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clarad import trees
from clarad.errors import RejectedDrop


def test_check_payload_counts_the_entries_it_walked(tmp_path: Path) -> None:
    (tmp_path / "p" / "d").mkdir(parents=True)
    (tmp_path / "p" / "d" / "f").write_text("x")
    assert trees.check_payload(tmp_path / "p") == 3


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_payload_holding_a_device_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    os.mknod(tmp_path / "p" / "zero", 0o600 | 0o020000, os.makedev(1, 5))  # a copy of /dev/zero
    with pytest.raises(RejectedDrop, match=r"^p/zero: a character device; a payload holds only regular files"):
        trees.check_payload(tmp_path / "p")


def test_a_model_to_copy_may_hold_symlinks_but_no_fifo(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "link").symlink_to("../config.pbtxt")
    assert trees.check_copyable(tmp_path / "m") == 3
    os.mkfifo(tmp_path / "m" / "fifo")
    with pytest.raises(RejectedDrop, match=r"^m/fifo: a FIFO; a model holds only regular files and directories$"):
        trees.check_copyable(tmp_path / "m")


def test_a_symlinked_payload_is_refused_at_its_top(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(RejectedDrop, match=r"^link: the payload is a symlink; give a regular file or a directory$"):
        trees.check_payload(tmp_path / "link")
