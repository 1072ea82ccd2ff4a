"""Benchmark: model loads and time to ready of one mixed stream of jobs under clarad's placement and
under the two things a user would otherwise do, measured in the same run on the real Triton.

Policies (the ``placement_policy`` setting): ``fresh`` (a new tritonserver for every job, stopped
after it), ``any-idle`` (the first idle instance, whatever it holds) and ``clarad``. For each one, in
turn: a new state directory, ``clarad run`` with ``--instances`` CPU instances, the same models (each
a Python-backend model whose load holds ``--megabytes`` and takes ``--load-seconds``), the same
pipelines (one operator each, overlapping model sets) and the same trace: ``--jobs`` jobs, pipelines
drawn with Zipf-skewed popularity, arriving as a Poisson stream (``--interval`` mean seconds apart).

Printed per policy: loads (``clarad_model_loads_total``), loads avoided, time to ready (job created to
its operator started) p50/p90/p99, share of jobs that waited for a load, makespan; and each baseline
as a ratio of clarad's figure.

    .venv-test/bin/python bench/pool_policies.py                     # 100 jobs: a few minutes
    .venv-test/bin/python bench/pool_policies.py --jobs 6 --models 3 # a quick check: seconds
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "bench"), str(REPO)]  # this checkout's clarad, and the tests' helper
from ingest import git_commit, log
from job_latency import wait_for

from tests.e2e.clarad_process import Clarad

BALLAST = REPO / "tests" / "e2e" / "models" / "ballast"
POLICIES = ("fresh", "any-idle", "clarad")


def make_models(where: Path, count: int, megabytes: int, seconds: float) -> list[Path]:
    models = []
    for n in range(count):
        model = where / f"m{n}"
        shutil.copytree(BALLAST, model)
        config = model / "config.pbtxt"
        text = config.read_text().replace('name: "ballast"', f'name: "m{n}"')
        text = text.replace('key: "megabytes" value: { string_value: "100" }',
                            f'key: "megabytes" value: {{ string_value: "{megabytes}" }}')
        config.write_text(text.replace('key: "seconds" value: { string_value: "0" }',
                                       f'key: "seconds" value: {{ string_value: "{seconds}" }}'))
        models.append(model)
    return models


def model_sets(models: int, pipelines: int, rng: random.Random) -> list[list[str]]:
    """Overlapping sets: each pipeline takes 1 to 3 models, neighbours share some."""
    sets = []
    for p in range(pipelines):
        size = rng.randint(1, min(3, models))
        start = (p * 2) % models
        sets.append([f"m{(start + k) % models}" for k in range(size)])
    return sets


def trace(jobs: int, pipelines: int, interval: float, rng: random.Random) -> list[tuple[float, int]]:
    """(arrival time from the start, pipeline index): Zipf-skewed popularity, Poisson arrivals."""
    weights = [1 / (rank + 1) ** 1.1 for rank in range(pipelines)]
    at, out = 0.0, []
    for _ in range(jobs):
        at += rng.expovariate(1 / interval) if interval > 0 else 0.0
        out.append((at, rng.choices(range(pipelines), weights)[0]))
    return out


class Daemon(Clarad):
    """``clarad run`` with one placement policy, started as the end-to-end tests start it."""

    def __init__(self, work: Path, policy: str, instances: int, max_models: int) -> None:
        super().__init__(work / "state", CLARAD_CPU_INSTANCES=str(instances), CLARAD_PLACEMENT_POLICY=policy,
                         CLARAD_SETTLE_SECONDS="0.2", CLARAD_MAX_MODELS_PER_INSTANCE=str(max_models))
        self.start()

    def total(self, name: str) -> float:
        """The sum of ``name``'s samples (every label) in /metrics."""
        return sum(float(line.split()[-1]) for line in self.metrics().splitlines()
                   if line.startswith(name) and not line.startswith("#"))


def run_policy(policy: str, args: argparse.Namespace, models: list[Path], sets: list[list[str]],
               jobs: list[tuple[float, int]], root: Path) -> dict[str, Any]:
    work = root / policy
    work.mkdir()
    daemon = Daemon(work, policy, args.instances, args.max_models)
    try:
        for model in models:
            daemon.ask("models.add", path=str(model))
        for p, names in enumerate(sets):
            listed = ", ".join(f"{{name: {name}}}" for name in names)
            text = f"name: p{p}\noperators:\n- name: op\n  command: [\"true\"]\n  models: [{listed}]\n"
            staged = work / f"p{p}.yaml"
            staged.write_text(text)
            staged.rename(daemon.state / "inbox" / "pipelines" / staged.name)
        wait_for(lambda: len(daemon.ask("pipelines.list")) == len(sets), 60, "the pipelines")
        payloads = work / "payloads"
        payloads.mkdir()
        began = time.monotonic()
        for n, (at, p) in enumerate(jobs):
            time.sleep(max(0.0, began + at - time.monotonic()))  # the trace's arrival time
            payload = payloads / f"job{n}"
            payload.write_text(str(n))
            payload.rename(daemon.state / "inbox" / "jobs" / f"p{p}" / payload.name)
        done = wait_for(lambda: (listed := daemon.ask("jobs.list", limit=len(jobs) + 10)) and len(listed) == len(jobs)
                        and all(job["state"] == "STOPPED" for job in listed) and listed,
                        60 + 30 * len(jobs), "every job to stop", 0.2)
        shown = [daemon.ask("jobs.show", id=job["id"]) for job in done]
        unhealthy = [job["reason"] for job in shown if job["status"] != "HEALTHY"]
        if unhealthy:
            raise SystemExit(f"{policy}: {len(unhealthy)} job(s) not HEALTHY, e.g. {unhealthy[0]}")
        ready = [job["operators"][0]["started_at"] - job["created_at"] for job in shown]
        makespan = max(job["stopped_at"] for job in shown) - min(job["created_at"] for job in shown)
        hits = daemon.total('clarad_placements_total{reuse="hit"}')
        return {"loads": daemon.total("clarad_model_loads_total"), "avoided": daemon.total("clarad_model_loads_avoided_total"),
                "ready": ready, "waited": 1 - hits / len(jobs), "makespan": makespan}
    finally:
        daemon.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--pipelines", type=int, default=6)
    parser.add_argument("--instances", type=int, default=2, help="CPU instance slots (default 2)")
    parser.add_argument("--max-models", type=int, default=3, help="max_models_per_instance (default 3)")
    parser.add_argument("--megabytes", type=int, default=20, help="memory each model's load holds")
    parser.add_argument("--load-seconds", type=float, default=0.2, help="time each model's initialize() takes")
    parser.add_argument("--interval", type=float, default=0.3, help="mean seconds between arrivals")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    sets = model_sets(args.models, args.pipelines, rng)
    jobs = trace(args.jobs, args.pipelines, args.interval, rng)
    log(f"command: {' '.join(sys.argv)}; commit {git_commit()}; pipelines {sets}")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="clarad-policies-") as tmp:
        root = Path(tmp)
        models = make_models(root / "models", args.models, args.megabytes, args.load_seconds)
        for policy in POLICIES:
            log(f"policy {policy}: {args.jobs} jobs")
            results[policy] = run_policy(policy, args, models, sets, jobs, root)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    header = f"{'policy':<10} {'loads':>6} {'/job':>5} {'avoided':>8} {'ready p50':>10} {'p90':>9} {'p99':>9} " \
             f"{'waited':>7} {'makespan':>9}"
    print_lines = [header, "-" * len(header)]
    for policy, r in results.items():
        print_lines.append(
            f"{policy:<10} {r['loads']:>6.0f} {r['loads'] / args.jobs:>5.2f} {r['avoided']:>8.0f} "
            f"{percentile(r['ready'], 50) * 1e3:>8.0f}ms {percentile(r['ready'], 90) * 1e3:>7.0f}ms "
            f"{percentile(r['ready'], 99) * 1e3:>7.0f}ms {r['waited'] * 100:>6.0f}% {r['makespan']:>8.1f}s")
    ours = results["clarad"]
    for policy in ("fresh", "any-idle"):
        print_lines.append(
            f"{policy} / clarad: loads {results[policy]['loads'] / max(ours['loads'], 1):.2f}x, time to ready p50 "
            f"{percentile(results[policy]['ready'], 50) / max(percentile(ours['ready'], 50), 1e-9):.2f}x, makespan "
            f"{results[policy]['makespan'] / max(ours['makespan'], 1e-9):.2f}x")
    print("\n".join(print_lines))
    return 0


def percentile(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


if __name__ == "__main__":
    sys.exit(main())
