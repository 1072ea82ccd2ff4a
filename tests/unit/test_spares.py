"""Spare operator processes (spares.py), real ones: started ahead of need in a cgroup of their own, an
operator handed to one runs in its process and cgroup, with its log, environment and directory; one
killed while waiting, or at shutdown, leaves no record, process or cgroup behind."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from clarad import children, containment
from clarad.errors import ConfigError
from clarad.spares import Spares
from clarad.store import Store


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[children.ChildRegistry]:
    try:
        scopes = containment.choose("cgroup", tmp_path)
    except ConfigError as exc:
        pytest.skip(f"spares are used with cgroup containment only, and no cgroup can be made here: {exc}")
    store = Store(tmp_path / "clarad.db")
    yield children.ChildRegistry(store, scopes, "test-spares")
    store.close()


async def until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def a_spare(spares: Spares) -> int:
    """Ask for one (the first use finds none and starts it); its pid once it waits."""
    assert spares.use(["/bin/true"], {}, None, sys.stdout, "nobody/none", None) is None
    await until(lambda: spares.ready, "a spare to wait")
    return spares.ready[0].child.pid


def recorded(registry: children.ChildRegistry) -> dict[int, str]:
    return {row["pid"]: row["label"] for row in registry.store.children()}


def kinds(registry: children.ChildRegistry) -> dict[int, str]:
    return {row["pid"]: row["kind"] for row in registry.store.children()}


def test_an_operator_handed_to_a_spare_runs_as_that_process_in_its_cgroup(
        registry: children.ChildRegistry, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    program = ("import json,os,sys; print('hello from the operator'); "
               "json.dump({'pid': os.getpid(), 'cwd': os.getcwd(), 'env': os.environ.get('ONLY_HERE'), "
               "'cgroup': open('/proc/self/cgroup').read()}, open(sys.argv[1], 'w'))")

    async def scenario() -> Path:
        spares = Spares(registry)
        registry.spares = spares
        pid = await a_spare(spares)
        scope = registry.containment.scope(recorded(registry)[pid])  # type: ignore[attr-defined]
        assert scope.is_dir() and kinds(registry)[pid] == "spare"  # a spare, not counted as an operator
        with open(tmp_path / "op.log", "ab") as log_file:
            child = await children.spawn([sys.executable, "-c", program, str(report)], kind="operator",
                                         label="job1/first", registry=registry, env={"ONLY_HERE": "yes", "PATH": os.defpath},
                                         cwd=tmp_path, stdout=log_file, stderr=asyncio.subprocess.STDOUT)
        assert child.pid == pid
        assert (recorded(registry)[pid], kinds(registry)[pid]) == ("job1/first", "operator")
        assert await child.proc.wait() == 0
        registry.forget(child.pid)
        await children.end_scope(child, registry)
        assert not scope.exists()
        await spares.stop()
        return scope

    scope = asyncio.run(scenario())
    seen = json.loads(report.read_text())
    assert seen["cwd"] == str(tmp_path) and seen["env"] == "yes"
    assert seen["cgroup"].strip().endswith(f"/{scope.name}")  # its cgroup is the spare's
    assert "hello from the operator" in (tmp_path / "op.log").read_text()
    assert recorded(registry) == {}


def test_a_spare_killed_while_waiting_is_forgotten_with_its_cgroup(registry: children.ChildRegistry) -> None:
    async def scenario() -> None:
        spares = Spares(registry)
        pid = await a_spare(spares)
        scope = registry.containment.scope(recorded(registry)[pid])  # type: ignore[attr-defined]
        os.kill(pid, 9)
        await until(lambda: pid not in recorded(registry) and not scope.exists(), "the killed spare to be forgotten")
        assert all(spare.child.pid != pid for spare in spares.ready)
        await spares.stop()

    asyncio.run(scenario())
    assert recorded(registry) == {}


def test_stopping_the_spares_leaves_no_process_record_or_cgroup(registry: children.ChildRegistry) -> None:
    async def scenario() -> tuple[int, Path]:
        spares = Spares(registry)
        pid = await a_spare(spares)
        scope = registry.containment.scope(recorded(registry)[pid])  # type: ignore[attr-defined]
        await spares.stop()
        assert spares.use(["/bin/true"], {}, None, sys.stdout, "nobody/none", None) is None  # and none comes
        await asyncio.sleep(0)
        assert spares.refilling is None
        return pid, scope

    pid, scope = asyncio.run(scenario())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert recorded(registry) == {}
    assert not scope.exists()


def test_a_placed_job_has_a_spare_started_before_its_operator_asks(registry: children.ChildRegistry) -> None:
    async def scenario() -> None:
        spares = Spares(registry)
        spares.expect()
        await until(lambda: spares.ready, "a spare to wait")
        assert set(kinds(registry).values()) == {"spare"}  # started, none of them an operator
        await spares.stop()

    asyncio.run(scenario())
    assert recorded(registry) == {}


def test_a_spare_that_cannot_start_leaves_nothing_and_is_not_tried_again_at_once(
        registry: children.ChildRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clarad import spares as module

    monkeypatch.setattr(module, "PROGRAM", tmp_path / "missing.py")  # the interpreter exits at once

    async def scenario() -> None:
        spares = Spares(registry)
        spares.expect()
        await until(lambda: spares.retry_at > 0, "the failed start to be noted")
        assert spares.ready == [] and recorded(registry) == {}
        spares.expect()
        assert spares.refilling is None  # not before RETRY_AFTER
        await spares.stop()

    asyncio.run(scenario())
    assert list(registry.containment.parent.glob(f"{registry.containment.prefix_name}*")) == []  # type: ignore[attr-defined]


def test_an_operator_from_a_spare_inherits_no_ignored_signal(registry: children.ChildRegistry, tmp_path: Path) -> None:
    """Python ignores SIGPIPE and SIGXFSZ; a spare must not pass that on (`producer | head` must end the producer)."""
    async def scenario() -> None:
        spares = Spares(registry)
        registry.spares = spares
        pid = await a_spare(spares)
        with open(tmp_path / "op.log", "ab") as log_file:
            child = await children.spawn(["grep", "^SigIgn", "/proc/self/status"], kind="operator", label="job1/sig",
                                         registry=registry, env={"PATH": os.defpath}, cwd=tmp_path, stdout=log_file,
                                         stderr=asyncio.subprocess.STDOUT)
        assert child.pid == pid
        assert await child.proc.wait() == 0
        registry.forget(child.pid)
        await children.end_scope(child, registry)
        await spares.stop()

    asyncio.run(scenario())
    assert (tmp_path / "op.log").read_text().split() == ["SigIgn:", "0" * 16]
