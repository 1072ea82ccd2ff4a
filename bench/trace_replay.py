"""Benchmark: a trace of jobs replayed on the real Triton through the running daemon under each
placement policy, in the same run: model loads, loads avoided, time to ready, share of jobs that
waited for a load, makespan.

Policies (the ``placement_policy`` setting): ``fresh`` (B0: a new tritonserver for every job, stopped
after it), ``any-idle`` (B1: the first idle instance, made to hold exactly the job's models), ``lru``
(B2: the first idle instance as a per-instance LRU cache), ``clarad``, and ``oracle`` (told the whole
trace through ``placement_future``: Belady's eviction). For each one, in turn: a new state directory,
``clarad run`` with ``--instances`` CPU instances, the trace's models (Python-backend models whose
``initialize`` holds the trace's megabytes and sleeps its load seconds), its pipelines (one operator,
``sleep`` for the pipeline's run seconds) and its jobs, dropped at their arrival times. The trace is
bench/tracegen.py's (the same one bench/simulate.py can run); the lower bound on loads is
``tracegen.lower_bound``.

    .venv-test/bin/python bench/trace_replay.py                  # the reference trace, 100 jobs: about 10 minutes
    .venv-test/bin/python bench/trace_replay.py --jobs 4 --models 2 --pipelines 2 --policies fresh,clarad  # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's clarad
sys.path.insert(0, str(Path(__file__).resolve().parent))
import tracegen  # noqa: E402
from ingest import git_commit, log  # noqa: E402
from job_latency import wait_for  # noqa: E402
from simulate import LABELS, POLICIES, percentile  # noqa: E402

from clarad import control  # noqa: E402
from clarad.errors import ControlError  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BALLAST = REPO / "tests" / "e2e" / "models" / "ballast"


def make_models(where: Path, trace: tracegen.Trace) -> list[Path]:
    """The trace's models: copies of the ballast model with their megabytes and load seconds."""
    models = []
    for spec in trace.models:
        model = where / spec.name
        shutil.copytree(BALLAST, model)
        config = model / "config.pbtxt"
        text = config.read_text().replace('name: "ballast"', f'name: "{spec.name}"')
        text = text.replace('key: "megabytes" value: { string_value: "100" }',
                            f'key: "megabytes" value: {{ string_value: "{spec.megabytes}" }}')
        config.write_text(text.replace('key: "seconds" value: { string_value: "0" }',
                                       f'key: "seconds" value: {{ string_value: "{spec.load_seconds}" }}'))
        models.append(model)
    return models


def pipeline_yaml(pipeline: tracegen.Pipeline) -> str:
    listed = ", ".join(f"{{name: {name}}}" for name in pipeline.models)
    return (f"name: {pipeline.name}\noperators:\n- name: op\n  command: [sleep, \"{pipeline.run_seconds}\"]\n"
            f"  models: [{listed}]\n")


class Daemon:
    def __init__(self, work: Path, policy: str, instances: int, max_models: int, future: Path) -> None:
        self.state = work / "state"
        self.log = work / "clarad.log"
        self.port = free_port()
        self.env = {**os.environ, "CLARAD_USE_GPUS": "false", "CLARAD_CPU_INSTANCES": str(instances),
                    "CLARAD_PLACEMENT_POLICY": policy, "CLARAD_SETTLE_SECONDS": "0.2",
                    "CLARAD_MAX_MODELS_PER_INSTANCE": str(max_models)}
        if policy == "oracle":
            self.env["CLARAD_PLACEMENT_FUTURE"] = str(future)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "clarad", "run", "--state-dir", str(self.state),
                                          "--metrics-port", str(self.port)], env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT)
        wait_for(self._answers, 60, "clarad's control socket")

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise SystemExit(f"clarad exited: {self.log.read_text()[-2000:]}")
        try:
            self.ask("status")
            return True
        except ControlError:
            return False

    def ask(self, command: str, **args: Any) -> Any:
        return control.request(control.socket_path(self.state), command, args)

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as response:
            text = response.read().decode()
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith(name) and not line.startswith("#"))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_policy(policy: str, args: argparse.Namespace, trace: tracegen.Trace, models: list[Path],
               root: Path) -> dict[str, Any]:
    work = root / policy
    work.mkdir()
    future = root / "future.json"
    daemon = Daemon(work, policy, args.instances, args.max_models, future)
    try:
        for model in models:
            daemon.ask("models.add", path=str(model))
        for pipeline in trace.pipelines:
            staged = work / f"{pipeline.name}.yaml"
            staged.write_text(pipeline_yaml(pipeline))
            staged.rename(daemon.state / "inbox" / "pipelines" / staged.name)
        wait_for(lambda: len(daemon.ask("pipelines.list")) == len(trace.pipelines), 60, "the pipelines")
        payloads = work / "payloads"
        payloads.mkdir()
        began = time.monotonic()
        for n, job in enumerate(trace.jobs):
            time.sleep(max(0.0, began + job.at - time.monotonic()))  # the trace's arrival time
            payload = payloads / f"job{n:05d}"
            payload.write_text(str(n))
            payload.rename(daemon.state / "inbox" / "jobs" / trace.pipelines[job.pipeline].name / payload.name)
        count = len(trace.jobs)
        done = wait_for(lambda: (listed := daemon.ask("jobs.list", limit=count + 10)) and len(listed) == count
                        and all(job["state"] == "STOPPED" for job in listed) and listed,
                        60 + 30 * count, "every job to stop", 0.2)
        shown = [daemon.ask("jobs.show", id=job["id"]) for job in done]
        unhealthy = [job["reason"] for job in shown if job["status"] != "HEALTHY"]
        if unhealthy:
            raise SystemExit(f"{policy}: {len(unhealthy)} job(s) not HEALTHY, e.g. {unhealthy[0]}")
        ready = [job["operators"][0]["started_at"] - job["created_at"] for job in shown]
        makespan = max(job["stopped_at"] for job in shown) - min(job["created_at"] for job in shown)
        hits = daemon.metric('clarad_placements_total{reuse="hit"}')
        arrival = [job["id"] for job in sorted(shown, key=lambda job: job["created_at"])]
        started = [job["id"] for job in sorted(shown, key=lambda job: job["started_at"])]
        return {"loads": daemon.metric("clarad_model_loads_total"),
                "avoided": daemon.metric("clarad_model_loads_avoided_total"), "ready": ready,
                "waited": 1 - hits / count, "makespan": makespan, "in_order": arrival == started}
    finally:
        daemon.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    reference = tracegen.Shape()
    parser.add_argument("--jobs", type=int, default=reference.jobs)
    parser.add_argument("--models", type=int, default=reference.models)
    parser.add_argument("--pipelines", type=int, default=reference.pipelines)
    parser.add_argument("--rate", type=float, default=reference.rate, help="jobs per second when calm")
    parser.add_argument("--instances", type=int, default=3, help="CPU instance slots (default 3)")
    parser.add_argument("--max-models", type=int, default=6, help="max_models_per_instance (default 6)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    shape = tracegen.Shape(models=args.models, pipelines=args.pipelines, jobs=args.jobs, rate=args.rate)
    trace = tracegen.generate(shape, args.seed)
    bound = tracegen.lower_bound(trace.model_sets(), args.instances, args.max_models)
    log(f"command: {' '.join(sys.argv)}; commit {git_commit()}; load average {os.getloadavg()[0]:.1f}; {shape}; "
        f"pipelines {[p.models for p in trace.pipelines]}")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="clarad-trace-") as tmp:
        root = Path(tmp)
        (root / "future.json").write_text(json.dumps([list(models) for models in trace.model_sets()]))
        models = make_models(root / "models", trace)
        for policy in args.policies.split(","):
            log(f"policy {policy}: {len(trace.jobs)} jobs")
            results[policy] = run_policy(policy, args, trace, models, root)
    log(f"load average {os.getloadavg()[0]:.1f}")
    if args.json:
        print(json.dumps({"results": results, "lower_bound": bound, "wanted": trace.wanted()}, indent=2))
        return 0
    count = len(trace.jobs)
    header = f"{'policy':<20} {'loads':>6} {'/job':>5} {'avoided':>8} {'ready p50':>10} {'p99':>9} " \
             f"{'waited':>7} {'makespan':>9}"
    lines = [header, "-" * len(header)]
    for policy, r in results.items():
        lines.append(
            f"{LABELS[policy]:<20} {r['loads']:>6.0f} {r['loads'] / count:>5.2f} {r['avoided']:>8.0f} "
            f"{percentile(r['ready'], 50) * 1e3:>8.0f}ms {percentile(r['ready'], 99) * 1e3:>7.0f}ms "
            f"{r['waited'] * 100:>6.0f}% {r['makespan']:>8.1f}s" + ("" if r["in_order"] else "  (started out of order)"))
    lines.append(f"{'lower bound':<20} {bound:>6} {bound / count:>5.2f}   (every job loading all its models: "
                 f"{trace.wanted()})")
    if "clarad" in results:
        ours = results["clarad"]
        for policy, r in results.items():
            if policy != "clarad":
                lines.append(
                    f"{LABELS[policy]} / clarad: loads {r['loads'] / max(ours['loads'], 1):.2f}x, time to ready p50 "
                    f"{percentile(r['ready'], 50) / max(percentile(ours['ready'], 50), 1e-9):.2f}x, makespan "
                    f"{r['makespan'] / max(ours['makespan'], 1e-9):.2f}x")
        lines.append(f"clarad / lower bound: loads {ours['loads'] / max(bound, 1):.2f}x")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
