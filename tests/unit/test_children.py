"""How children start: through setpriv, without clarad's capabilities."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from clarad import children
from clarad.errors import ClaradError
from clarad.operators import _chown_tree


def test_every_child_starts_with_empty_inheritable_and_ambient_capabilities() -> None:
    assert children.setpriv_argv("/usr/bin/setpriv", ["tritonserver", "--x"]) == [
        "/usr/bin/setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--", "tritonserver", "--x",
    ]


def test_an_operator_user_child_gets_that_user_and_group_and_no_supplementary_groups() -> None:
    assert children.setpriv_argv("setpriv", ["-op", "$x"], (65534, 65533)) == [
        "setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--reuid=65534", "--regid=65533", "--clear-groups",
        "--", "-op", "$x",  # after "--": never read as setpriv's options
    ]


def test_without_setpriv_no_child_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    children.setpriv.cache_clear()
    monkeypatch.setenv("PATH", "/nonexistent")
    try:
        with pytest.raises(ClaradError, match=r"^setpriv \(util-linux\) not found on PATH: .* starts none without it"):
            asyncio.run(children.spawn([sys.executable, "-c", "pass"], kind="operator", label="j/op",
                                       record=lambda *a: None, env={"PATH": os.defpath}))
    finally:
        children.setpriv.cache_clear()


def test_a_missing_program_fails_to_start_as_exec_would(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        asyncio.run(children.spawn(["no-such-program"], kind="operator", label="j/op", record=lambda *a: None,
                                   env={"PATH": str(tmp_path)}))
    with pytest.raises(FileNotFoundError):  # relative to the child's working directory
        asyncio.run(children.spawn(["./run.sh"], kind="operator", label="j/op", record=lambda *a: None,
                                   env={"PATH": os.defpath}, cwd=tmp_path))


def test_the_workspace_is_handed_over_deepest_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory given away (0750 under the unit's UMask) can no longer be entered by clarad's user."""
    (tmp_path / "input" / "a" / "b").mkdir(parents=True)
    (tmp_path / "input" / "a" / "b" / "f").write_text("x")
    (tmp_path / "input" / "g").write_text("x")
    (tmp_path / "input" / "link").symlink_to("/etc")
    order: list[str] = []
    monkeypatch.setattr(os, "chown", lambda path, uid, gid, follow_symlinks=True: order.append(str(path)))
    _chown_tree(tmp_path / "input", 1, 1)
    assert sorted(order) == sorted(str(p) for p in [tmp_path / "input", *(tmp_path / "input").rglob("*")])
    for i, path in enumerate(order):
        assert not any(earlier in Path(path).parents for earlier in map(Path, order[:i])), order
