"""The benchmark scripts still run, on a tiny size (their figures are for docs/benchmarks.md, not here)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize(("script", "args", "expected"), [
    ("dispatch.py", ["--jobs", "2"], "overhead over a bare spawn"),
    ("cold_path.py", ["--runs", "1", "--models", "1"], "cold path overhead, clarad / bare"),
    ("trace_replay.py", ["--jobs", "3", "--models", "2", "--pipelines", "2", "--rate", "5", "--instances", "1",
                         "--policies", "fresh,oracle,clarad"], "B0 fresh per job / clarad"),
    ("footprint.py", ["--idle-seconds", "0.5", "--models", "5", "--finished", "20", "--burst", "2"], "idle CPU"),
    ("decision_time.py", ["--instances", "4", "--queue", "3", "--repeats", "2", "--finished", "5", "--models", "20",
                          "--pipelines", "5"], "pass placing one job"),
])
def test_a_benchmark_runs_on_a_tiny_size(script: str, args: list[str], expected: str) -> None:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert expected in done.stdout


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed here: no container to measure")
def test_the_container_benchmark_runs_on_a_tiny_size() -> None:
    done = subprocess.run([sys.executable, str(BENCH / "containers.py"), "--jobs", "1"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "container / host" in done.stdout


def test_the_decision_time_plot_is_drawn(tmp_path: Path) -> None:
    plot = tmp_path / "decision-time.png"
    done = subprocess.run([sys.executable, str(BENCH / "decision_time.py"), "--instances", "2", "4", "--queue", "2", "4",
                           "--repeats", "1", "--finished", "0", "--models", "10", "--pipelines", "3", "--plot", str(plot)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_simulation_runs_every_policy_on_a_tiny_trace_and_plots_them(tmp_path: Path) -> None:
    plot = tmp_path / "policies.png"
    done = subprocess.run([sys.executable, str(BENCH / "simulate.py"), "--jobs", "60", "--models", "12",
                           "--pipelines", "8", "--gpus", "2", "--per-gpu", "2", "--max-models", "3", "--json",
                           "--plot", str(plot)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    *results, bound = json.loads(done.stdout)
    assert [r["policy"] for r in results] == ["fresh", "any-idle", "lru", "clarad", "oracle"]
    assert results[0]["loads"] == bound["wanted"]  # a fresh instance per job loads every model it wants
    for r in results:  # the lower bound holds, and its premise (jobs start in arrival order) with it
        assert bound["lower_bound"] <= r["loads"] and r["in_order"], r
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
