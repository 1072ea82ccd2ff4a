"""An operator's mount namespace: the bwrap command line (pure), and the real bwrap running a
program that reads /input and writes /output, as code written for a Clara container does."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from clarad import mounts
from clarad.mounts import Bind, RootEntry, namespace_argv

ENTRIES = [RootEntry("bin", "usr/bin"), RootEntry("data", None), RootEntry("tmp", None), RootEntry("usr", None)]
NO_BWRAP = "bwrap is not installed here (apt-get install bubblewrap); the namespace path cannot run"


def test_the_host_root_is_bound_but_for_directories_a_declared_path_lives_under() -> None:
    binds = [Bind(Path("/state/jobs/1/input"), "/input", False), Bind(Path("/state/out"), "/data/out", True)]
    argv = namespace_argv("/usr/bin/bwrap", ENTRIES, binds, Path("/state/jobs/1"), ["python3", "op.py"])
    assert argv == ["/usr/bin/bwrap", "--die-with-parent", "--symlink", "usr/bin", "/bin", "--dev-bind", "/tmp", "/tmp",
                    "--dev-bind", "/usr", "/usr",
                    "--ro-bind", "/state/jobs/1/input", "/input", "--bind", "/state/out", "/data/out",
                    "--chdir", "/state/jobs/1", "--", "python3", "op.py"]


def test_parents_are_bound_before_their_children_and_a_hidden_cwd_becomes_root() -> None:
    binds = [Bind(Path("/r/seg"), "/tmp/out/seg", True), Bind(Path("/r/out"), "/tmp/out", True)]
    argv = namespace_argv("bwrap", ENTRIES, binds, Path("/tmp/state/jobs/1"), ["run"])
    assert argv[argv.index("/r/out") - 1:argv.index("/r/seg") + 2] == [
        "--bind", "/r/out", "/tmp/out", "--bind", "/r/seg", "/tmp/out/seg"]
    assert argv[-4:] == ["--chdir", "/", "--", "run"]
    assert "/tmp" not in argv[:argv.index("/r/out")]


@pytest.mark.skipif(shutil.which("bwrap") is None, reason=NO_BWRAP)
def test_a_program_reading_input_and_writing_output_runs_unchanged_in_its_namespace(tmp_path: Path) -> None:
    payload, output = tmp_path / "payload", tmp_path / "out"
    payload.mkdir()
    output.mkdir()
    (payload / "numbers.txt").write_text("1 2 3")
    program = ("import pathlib\n"
               "total = sum(map(int, pathlib.Path('/input/numbers.txt').read_text().split()))\n"
               "pathlib.Path('/output/total.txt').write_text(str(total))\n"
               "try:\n    pathlib.Path('/input/x').write_text('no')\nexcept OSError as e:\n    print(e.errno)\n")
    binds = [Bind(payload, "/input", False), Bind(output, "/output", True)]
    argv = namespace_argv(shutil.which("bwrap") or "", mounts.root_entries(), binds, tmp_path,
                          [sys.executable, "-c", program])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (output / "total.txt").read_text() == "6"
    assert done.stdout.strip() == "30"  # EROFS: an input cannot be written
    assert not (payload / "x").exists()
    assert not Path("/output/total.txt").exists()  # nothing on the host's root


def test_probe_says_why_operators_get_real_directories_when_off() -> None:
    mounts._probed.clear()
    found = asyncio.run(mounts.probe("off", None))
    assert (found.enabled, found.why_not) == (False, "operator_mount_namespace is off")


@pytest.mark.skipif(shutil.which("bwrap") is None, reason=NO_BWRAP)
def test_probe_finds_a_working_bwrap() -> None:
    mounts._probed.clear()
    found = asyncio.run(mounts.probe("auto", None))
    assert found.enabled, found.why_not
    assert found.bwrap == shutil.which("bwrap")


def test_probe_without_bwrap_on_path_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no bwrap
    mounts._probed.clear()
    found = asyncio.run(mounts.probe("auto", None))
    mounts._probed.clear()
    assert (found.enabled, found.why_not) == (False, "bwrap not found (apt-get install bubblewrap)")
