"""How children start (through setpriv) and stop (bounded, even when a signal is refused)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

from clarad import children
from clarad.errors import ClaradError
from clarad.operators import _chown_tree
from clarad.store import Store


@pytest.fixture
def registry(tmp_path: Path) -> children.ChildRegistry:
    return children.ChildRegistry(Store(tmp_path / "clarad.db"))


def test_every_child_starts_with_empty_inheritable_and_ambient_capabilities() -> None:
    assert children.setpriv_argv("/usr/bin/setpriv", ["tritonserver", "--x"]) == [
        "/usr/bin/setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--", "tritonserver", "--x",
    ]


def test_an_operator_user_child_gets_that_user_and_group_and_no_supplementary_groups() -> None:
    assert children.setpriv_argv("setpriv", ["-op", "$x"], (65534, 65533)) == [
        "setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--reuid=65534", "--regid=65533", "--clear-groups",
        "--", "-op", "$x",  # after "--": never read as setpriv's options
    ]


def test_without_setpriv_no_child_starts(monkeypatch: pytest.MonkeyPatch, registry: children.ChildRegistry) -> None:
    children.setpriv.cache_clear()
    monkeypatch.setenv("PATH", "/nonexistent")
    try:
        with pytest.raises(ClaradError, match=r"^setpriv \(util-linux\) not found on PATH: .* starts none without it"):
            asyncio.run(children.spawn([sys.executable, "-c", "pass"], kind="operator", label="j/op",
                                       registry=registry, env={"PATH": os.defpath}))
    finally:
        children.setpriv.cache_clear()


def test_a_missing_program_fails_to_start_as_exec_would(tmp_path: Path, registry: children.ChildRegistry) -> None:
    with pytest.raises(FileNotFoundError):
        asyncio.run(children.spawn(["no-such-program"], kind="operator", label="j/op", registry=registry,
                                   env={"PATH": str(tmp_path)}))
    with pytest.raises(FileNotFoundError):  # relative to the child's working directory
        asyncio.run(children.spawn(["./run.sh"], kind="operator", label="j/op", registry=registry,
                                   env={"PATH": os.defpath}, cwd=tmp_path))


def test_stop_gives_up_on_a_child_it_may_not_signal_within_its_bound(
    monkeypatch: pytest.MonkeyPatch, registry: children.ChildRegistry
) -> None:
    """EPERM (an operator_user child, clarad without CAP_KILL): a StopFailed naming the child, the
    pid and the capability, after REFUSED_WAIT and not the grace; the child keeps running."""
    monkeypatch.setattr(children, "REFUSED_WAIT", 0.2)
    monkeypatch.setattr(children, "KILL_WAIT", 3600.0)
    real_killpg = os.killpg

    def refused(pgid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    async def scenario() -> tuple[children.Child, BaseException]:
        child = await children.spawn([sys.executable, "-c", "import time; time.sleep(60)"], kind="operator",
                                     label="j1/sleeps", registry=registry, env=dict(os.environ))
        assert [row["pid"] for row in registry.store.children()] == [child.pid]
        monkeypatch.setattr(os, "killpg", refused)
        try:
            with pytest.raises(children.StopFailed) as caught:
                await asyncio.wait_for(children.stop(child, grace=3600), 30)
            assert psutil.Process(child.pid).is_running()
        finally:
            monkeypatch.setattr(os, "killpg", real_killpg)
            real_killpg(child.pid, signal.SIGKILL)
            await child.proc.wait()
        return child, caught.value

    child, error = asyncio.run(scenario())
    assert str(error) == (f"operator j1/sleeps (pid {child.pid}) could not be stopped and was left running: "
                          f"{children.NO_CAP_KILL}")
    assert "CAP_KILL" in str(error)


def test_stop_terminates_and_reaps(registry: children.ChildRegistry) -> None:
    async def scenario() -> int:
        child = await children.spawn([sys.executable, "-c", "import time; time.sleep(60)"], kind="operator",
                                     label="j1/sleeps", registry=registry, env=dict(os.environ))
        return await children.stop(child, grace=30)

    assert asyncio.run(scenario()) == -signal.SIGTERM


def test_left_running_names_the_jobs_operators_still_recorded() -> None:
    recorded = [
        {"pid": 11, "kind": "operator", "label": "job1/sleeps"},
        {"pid": 12, "kind": "operator", "label": "job10/other"},
        {"pid": 13, "kind": "triton", "label": "triton-0"},
    ]
    assert children.left_running(recorded, "job1") == (
        '; operator "sleeps" (pid 11) could not be stopped and was left running (see clarad\'s log)'
    )
    assert children.left_running(recorded, "job2") == ""


def test_the_workspace_is_handed_over_deepest_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory given away (0750 under the unit's UMask) can no longer be entered by clarad's user."""
    (tmp_path / "input" / "a" / "b").mkdir(parents=True)
    (tmp_path / "input" / "a" / "b" / "f").write_text("x")
    (tmp_path / "input" / "g").write_text("x")
    order: list[str] = []

    def chown(path: str, uid: int, gid: int) -> None:  # through the handle: /proc/self/fd/N
        order.append(os.readlink(path))

    monkeypatch.setattr(os, "chown", chown)
    _chown_tree(tmp_path / "input", 1, 1)
    assert sorted(order) == sorted(str(p) for p in [tmp_path / "input", *(tmp_path / "input").rglob("*")])
    for i, path in enumerate(order):
        assert not any(earlier in Path(path).parents for earlier in map(Path, order[:i])), order


@pytest.mark.parametrize("planted", ["hardlink", "symlink", "fifo"])
def test_the_workspace_handover_refuses_what_is_not_plain_content(tmp_path: Path, planted: str) -> None:
    """A hard link would hand over the file it shares an inode with (a root-only secret elsewhere),
    a symlink what it points to: neither is changed, and the refusal names it."""
    secret = tmp_path / "secret"
    secret.write_text("root only")
    secret.chmod(0o600)
    payload = tmp_path / "input"
    (payload / "sub").mkdir(parents=True)
    (payload / "sub" / "plain").write_text("x")
    entry = payload / "sub" / "x"
    if planted == "hardlink":
        os.link(secret, entry)
    elif planted == "symlink":
        entry.symlink_to(secret)
    else:
        os.mkfifo(entry)
    owner = secret.stat().st_uid
    with pytest.raises(OSError, match=rf"^{entry}: (hard-linked to another file name|a symlink|a FIFO), not handed over$"):
        _chown_tree(payload, 65534, 65534)
    assert secret.stat().st_uid == owner


def test_an_exit_by_clarads_own_kill_is_not_put_down_to_memory(registry: children.ChildRegistry) -> None:
    async def scenario() -> tuple[int, bool]:
        child = await children.spawn(
            [sys.executable, "-c", "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                   "print('ready', flush=True); time.sleep(60)"],
            kind="operator", label="j1/stubborn", registry=registry, env=dict(os.environ),
            stdout=asyncio.subprocess.PIPE)
        assert child.proc.stdout is not None
        await child.proc.stdout.readline()  # TERM is ignored from here on
        return await children.stop(child, grace=0.2), child.killed

    code, killed = asyncio.run(scenario())
    assert code == -signal.SIGKILL and killed
    assert children.describe_exit(code, killed) == "killed by SIGKILL (sent by clarad: it did not stop in time)"
    assert children.describe_exit(code) == "killed by SIGKILL (perhaps out of memory)"
