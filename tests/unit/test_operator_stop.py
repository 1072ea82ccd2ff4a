"""Stopping an operator that bwrap runs: its program gets the TERM and its grace period (bwrap
itself dies at TERM), and nothing is left behind, not even when bwrap alone is killed."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from pathlib import Path

import psutil
import pytest

from clarad import children, mounts
from clarad.operators import Workspace, run_operator
from clarad.pipelines import parse_pipeline
from clarad.store import Store
from tests.waiting import wait_for

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None,
                                reason="bwrap is not installed here (apt-get install bubblewrap)")
OP = parse_pipeline("name: p\noperators:\n- name: a\n  command: [x]\n").operators[0]
PROGRAM = ("import pathlib, signal, sys, time\n"
           "out = pathlib.Path(sys.argv[1])\n"
           "def done(*_):\n    time.sleep(0.3)\n    (out / 'cleaned-up').write_text('yes')\n    sys.exit(0)\n"
           "signal.signal(signal.SIGTERM, done)\n(out / 'ready').write_text('')\ntime.sleep(120)\n")


def wrapped(tmp_path: Path) -> tuple[list[str], Workspace]:
    workspace = Workspace(tmp_path / "job")
    workspace.logs.mkdir(parents=True)
    argv = mounts.namespace_argv(shutil.which("bwrap") or "", mounts.root_entries(), [], tmp_path,
                                 [sys.executable, "-c", PROGRAM, str(tmp_path)])
    return argv, workspace


def test_a_stopped_operator_under_bwrap_gets_its_term_and_its_grace(tmp_path: Path) -> None:
    argv, workspace = wrapped(tmp_path)
    store = Store(tmp_path / "clarad.db")

    async def scenario() -> None:
        task = asyncio.ensure_future(run_operator(OP, argv, {"PATH": "/usr/bin:/bin"}, workspace, "j/a",
                                                  children.ChildRegistry(store), 5.0, wrapped=True))
        while not (tmp_path / "ready").exists():
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        asyncio.run(scenario())
        assert (tmp_path / "cleaned-up").read_text() == "yes"
        assert store.children() == []
    finally:
        store.close()


def test_the_program_does_not_outlive_bwrap_killed_alone(tmp_path: Path) -> None:
    argv, _workspace = wrapped(tmp_path)
    proc = psutil.Popen(argv, start_new_session=True)
    wait_for(lambda: (tmp_path / "ready").exists(), 30, "the program to start")
    program = proc.children()[0]
    proc.send_signal(signal.SIGKILL)  # bwrap alone, as a process object's finaliser would
    proc.wait(30)
    wait_for(lambda: not program.is_running() or program.status() == psutil.STATUS_ZOMBIE, 30,
             "the program to end with bwrap")
    assert not (tmp_path / "cleaned-up").exists()  # killed, not asked


def test_an_operator_cancelled_while_it_starts_leaves_nothing(tmp_path: Path) -> None:
    """A cancel that lands while the process is being created (a job cancelled or timed out at that
    moment) stops the whole new group: bwrap's program, still waiting in its half-made namespace,
    would otherwise wait for ever."""
    argv, workspace = wrapped(tmp_path)
    store = Store(tmp_path / "clarad.db")

    async def scenario(turns: int) -> None:
        task = asyncio.ensure_future(run_operator(OP, argv, {"PATH": "/usr/bin:/bin"}, workspace, "j/a",
                                                  children.ChildRegistry(store), 0.0, wrapped=True))
        for _ in range(turns):  # let the start get that far
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    try:
        for turns in range(12):
            asyncio.run(scenario(turns))

        def ours() -> list[psutil.Process]:
            return [p for p in psutil.process_iter(["cmdline", "status"]) if str(tmp_path) in " ".join(
                p.info["cmdline"] or []) and p.info["status"] != psutil.STATUS_ZOMBIE]

        wait_for(lambda: not ours(), 30, "every started operator to be gone")
        assert store.children() == []
    finally:
        store.close()
