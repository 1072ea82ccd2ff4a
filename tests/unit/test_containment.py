"""Where clarad's own cgroup is (containment.own_cgroup), read from /proc as the kernel writes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from clarad import containment


def test_clarads_own_cgroup_is_read_from_proc(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "cgroup").write_text("1:name=systemd:/x\n0::/system.slice/clarad.service\n")
    (tmp_path / "self" / "mountinfo").write_text(
        "25 1 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
        "26 1 0:23 / /proc rw - proc proc rw\n")
    assert containment.own_cgroup(tmp_path) == Path("/sys/fs/cgroup/system.slice/clarad.service")
    (tmp_path / "self" / "mountinfo").write_text("26 1 0:23 / /proc rw - proc proc rw\n")
    with pytest.raises(OSError, match="no cgroup v2 hierarchy is mounted"):
        containment.own_cgroup(tmp_path)
