"""Placement policies at scale, in simulation: clarad's own scheduler (clarad/scheduler.py: the
queue, the pass, the world it builds, placement, the pool) driven by a virtual clock
(clarad.simulator.VirtualClockLoop) over the modelled Triton, on a trace from bench/tracegen.py.

What is modelled: Triton (a start takes ``start_seconds``, a load its model's ``load_seconds``), the
job's run (its pipeline's ``run_seconds`` once its models are ready, no operator process), the
store (an in-memory catalog; every model's load cost known, as after its first measured load) and
GPU memory (ample: ``max_models`` bounds an instance, as for every policy). The lower bound on loads
is bench/tracegen.lower_bound over the pooled capacity.

    .venv-test/bin/python bench/simulate.py                          # 8 GPUs × 4, 500 models, 100,000 jobs
    .venv-test/bin/python bench/simulate.py --jobs 300 --models 40   # a quick check: seconds
    .venv-test/bin/python bench/simulate.py --plot docs/simulation.png
    .venv-test/bin/python bench/simulate.py --sweep 1000            # clarad / oracle on 12 reference-like traces

Other benchmarks import ``simulate(trace, policy, ...)``: it runs a trace's jobs under one policy
and returns a ``Result`` (loads, times to ready, and each pass's queue length and real duration).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import tracegen  # noqa: E402

from clarad.config import Settings  # noqa: E402
from clarad.costs import Cost, CostBook  # noqa: E402
from clarad.gpus import Gpu, StaticGpus, slots  # noqa: E402
from clarad.jobs import JobStatus, Priority, QueuedJob  # noqa: E402
from clarad.layout import Layout  # noqa: E402
from clarad.metrics import Metrics  # noqa: E402
from clarad.pipelines import parse_pipeline  # noqa: E402
from clarad.placement import Decision  # noqa: E402
from clarad.pool import Instance, Pool  # noqa: E402
from clarad.repository import REVISION_PARAMETER  # noqa: E402
from clarad.runner import Lease, RunningJob  # noqa: E402
from clarad.scheduler import Scheduler  # noqa: E402
from clarad.simulator import ModelledLauncher, VirtualClockLoop  # noqa: E402

POLICIES = ("fresh", "any-idle", "lru", "clarad", "oracle")
LABELS = {"fresh": "B0 fresh per job", "any-idle": "B1 any idle", "lru": "B2 per-instance LRU", "clarad": "clarad",
          "oracle": "oracle (Belady)"}


@dataclass
class Result:
    policy: str
    jobs: int
    loads: int = 0
    avoided: int = 0
    ready: list[float] = field(default_factory=list)  # per job: arrival to models ready (virtual seconds)
    waited: int = 0  # jobs that waited for a load or a start
    makespan: float = 0.0  # first arrival to last end (virtual seconds)
    in_order: bool = True  # jobs started in arrival order (what the lower bound assumes)
    passes: list[tuple[int, float]] = field(default_factory=list)  # per pass: queue length, real seconds
    real_seconds: float = 0.0


class Catalog:
    """The store's answers the scheduler asks for, from memory."""

    def __init__(self, trace: tracegen.Trace) -> None:
        self.digests = {model.name: f"digest-{model.name}" for model in trace.models}
        self.sizes = {model.name: model.megabytes << 20 for model in trace.models}
        self.pipelines = len(trace.pipelines)
        self.catalog_version = 0  # the catalog never changes here

    def model_digests(self) -> dict[str, str]:
        return self.digests

    def model_sizes(self) -> dict[str, int]:
        return self.sizes

    def catalog_counts(self) -> tuple[int, int, int]:
        return len(self.digests), sum(self.sizes.values()), self.pipelines

    def load_costs(self) -> list[dict[str, Any]]:
        return []

    def record_load_cost(self, *args: Any) -> None:
        pass

    def note_wait(self, job_id: str, reason: str) -> None:
        pass

    def note_waits(self, job_ids: list[str], reason: str) -> None:
        pass

    def most_used_pipeline(self) -> None:
        return None


class Preparer:
    """Carries out a decision on the modelled Triton as clarad.prepare does, in virtual time."""

    def __init__(self, pool: Pool, launcher: ModelledLauncher, catalog: Catalog, metrics: Metrics) -> None:
        self.pool, self.launcher, self.catalog, self.metrics = pool, launcher, catalog, metrics
        self.loads = 0

    async def prepare(self, instance: Instance, decision: Decision, wanted: Sequence[str]) -> None:
        if instance.server is None:
            self.pool.started(instance, await self.launcher.start(instance.id, instance.slot, 0))
        assert instance.server is not None
        for name in decision.unload:
            await self.unload(instance, name, "room")
        for name in decision.load:
            digest = self.catalog.digests[name]
            instance.loaded.pop(name, None)
            await instance.server.load(name, json.dumps({"parameters": {REVISION_PARAMETER: {"stringValue": digest}}}))
            instance.loaded[name] = digest
            self.loads += 1

    async def unload(self, instance: Instance, name: str, why: str) -> None:
        assert instance.server is not None
        instance.loaded.pop(name, None)
        instance.last_used.pop(name, None)
        await instance.server.unload(name)


class Runner:
    """A job's life as clarad.runner lives it, without operators: prepare, run, give back."""

    def __init__(self, pool: Pool, preparer: Preparer, run_seconds: dict[str, float], result: Result,
                 on_done: Callable[[RunningJob], None]) -> None:
        self.pool, self.preparer, self.run_seconds, self.result, self.on_done = pool, preparer, run_seconds, result, on_done
        self.started: list[int] = []  # arrival positions, in start order

    def start(self, job: QueuedJob, leases: list[Lease], gpus: list[str], now: float) -> RunningJob:
        running = RunningJob(job, leases, gpus, now, float("inf"))
        self.started.append(int(job.id))
        running.task = asyncio.create_task(self._life(running))
        return running

    def finish(self, job_id: str, status: JobStatus, reason: str) -> None:
        raise SystemExit(f"job {job_id} {status.value}: {reason}")  # nothing in a trace may fault

    async def _life(self, running: RunningJob) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(self.preparer.prepare(lease.instance, lease.decision, lease.models)
                               for lease in running.leases))
        for lease in running.leases:
            self.pool.move(lease.instance, "loaded")
        self.result.ready.append(loop.time() - running.job.created_at)
        self.result.waited += any(lease.decision.load for lease in running.leases)
        await asyncio.sleep(self.run_seconds[running.job.name])
        for lease in running.leases:
            if lease.decision.single_use or not self.pool.give_back(lease.instance, loop.time()):
                await self.pool.stop(lease.instance, 0)
        self.result.makespan = loop.time()
        self.on_done(running)


def simulate(trace: tracegen.Trace, policy: str = "clarad", *, gpus: int = 8, per_gpu: int = 4, max_models: int = 4,
             start_seconds: float = 5.0, jobs: Optional[int] = None, backlog: int = 0) -> Result:
    """Run the first ``jobs`` jobs of ``trace`` (all by default) under ``policy`` (one of POLICIES)
    on ``gpus`` GPUs with ``per_gpu`` instance slots each, each instance holding at most
    ``max_models`` models; the first ``backlog`` jobs all arrive at time 0 (a queue that long)."""
    count = len(trace.jobs) if jobs is None else min(jobs, len(trace.jobs))
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(_run(trace, policy, gpus, per_gpu, max_models, start_seconds, count, backlog))
    finally:
        loop.close()


async def _run(trace: tracegen.Trace, policy: str, gpus: int, per_gpu: int, max_models: int, start_seconds: float,
               count: int, backlog: int) -> Result:
    loop = asyncio.get_running_loop()
    began = time.perf_counter()
    result = Result(policy, count)
    devices = [Gpu(n, f"GPU-{n:04d}", "modelled", 80 << 30) for n in range(gpus)]
    future = None
    if policy == "oracle":  # told the jobs to come as the daemon is: a file, read when the scheduler starts
        future = Path(tempfile.mkdtemp(prefix="clarad-future-")) / "future.json"
        future.write_text(json.dumps(trace.model_sets()[:count]))
    settings = Settings(state_dir=Path("/nonexistent"), use_gpus=True, instances_per_gpu=per_gpu, metrics_port=0,
                        max_models_per_instance=max_models, placement_policy=policy, placement_future=future,
                        max_running_jobs=10_000)
    catalog, metrics, wakeup = Catalog(trace), Metrics(), asyncio.Event()
    costs = CostBook(catalog)  # type: ignore[arg-type]
    costs.start_seconds = start_seconds
    for model in trace.models:  # as measured by an earlier load
        costs.known[(model.name, catalog.digests[model.name], "gpu")] = Cost(model.load_seconds, model.megabytes << 20, True)
    launcher = ModelledLauncher(start_seconds=start_seconds, load_seconds={m.name: m.load_seconds for m in trace.models})
    pool = Pool(slots(devices, per_gpu, 0), on_lost=lambda instance, how: None)
    preparer = Preparer(pool, launcher, catalog, metrics)
    runner = Runner(pool, preparer, {p.name: p.run_seconds for p in trace.pipelines}, result,
                    on_done=lambda running: scheduler.on_done(running))
    scheduler = Scheduler(settings, catalog, Layout(Path("/nonexistent")), metrics, pool, runner,  # type: ignore[arg-type]
                          costs, devices, StaticGpus(devices).memory, None, wakeup.set)
    if future is not None:
        shutil.rmtree(future.parent)
    pipelines = {p.name: parse_pipeline(json.dumps({"name": p.name, "operators": [
        {"name": "infer", "command": ["true"], "models": [{"name": name} for name in p.models]}]}))
        for p in trace.pipelines}
    arrivals = [0.0 if n < backlog else job.at for n, job in enumerate(trace.jobs[:count])]

    async def feed() -> None:
        for n, job in enumerate(trace.jobs[:count]):
            await asyncio.sleep(arrivals[n] - loop.time())
            name = trace.pipelines[job.pipeline].name
            scheduler.queue_job(QueuedJob(str(n), name, pipelines[name], Priority.NORMAL, arrivals[n]))
            scheduler.wake()

    feeder = asyncio.create_task(feed())
    due = 0.0
    while len(result.ready) < count or scheduler.running:
        try:
            await asyncio.wait_for(wakeup.wait(), due)
        except asyncio.TimeoutError:
            pass
        wakeup.clear()
        queued, tick = len(scheduler.queue), time.perf_counter()
        due = scheduler.run_pass(loop.time())
        result.passes.append((queued, time.perf_counter() - tick))
    await feeder
    await scheduler.stop()
    await pool.stop_all(0)
    result.loads = preparer.loads
    result.avoided = int(metrics.registry.get_sample_value("clarad_model_loads_avoided_total") or 0)
    result.in_order = runner.started == sorted(runner.started)
    result.makespan -= arrivals[0] if arrivals else 0.0
    result.real_seconds = time.perf_counter() - began
    return result


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else 0.0


def table(results: list[Result], wanted: int, bound: int) -> str:
    lines = [f"{'policy':<20} {'loads':>7} {'/job':>5} {'avoided':>8} {'ready p50':>10} {'p99':>9} {'waited':>7} "
             f"{'makespan':>9} {'real':>7}"]
    for r in results:
        lines.append(f"{LABELS.get(r.policy, r.policy):<20} {r.loads:>7} {r.loads / r.jobs:>5.2f} {r.avoided:>8} "
                     f"{percentile(r.ready, 50):>9.1f}s {percentile(r.ready, 99):>8.1f}s {r.waited / r.jobs:>7.1%} "
                     f"{r.makespan:>8.0f}s {r.real_seconds:>6.1f}s" + ("" if r.in_order else "  (started out of order)"))
    lines.append(f"{'lower bound':<20} {bound:>7} {bound / results[0].jobs:>5.2f}   (every job loading all: {wanted})")
    by = {r.policy: r for r in results}
    if "clarad" in by:
        ours = max(by["clarad"].loads, 1)
        for policy, r in by.items():
            if policy != "clarad":
                lines.append(f"{LABELS[policy]} / clarad: loads {r.loads / ours:.2f}x, time to ready p99 "
                             f"{percentile(r.ready, 99) / max(percentile(by['clarad'].ready, 99), 1e-9):.2f}x, "
                             f"makespan {r.makespan / max(by['clarad'].makespan, 1e-9):.2f}x")
        lines.append(f"clarad / lower bound: loads {by['clarad'].loads / max(bound, 1):.2f}x")
    return "\n".join(lines)


def plot(results: list[Result], bound: int, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [LABELS[r.policy] for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.bar(names, [r.loads for r in results], color="#4c72b0")
    left.axhline(bound, color="black", linestyle="--", linewidth=1, label=f"lower bound ({bound})")
    left.set_ylabel("model loads")
    left.legend()
    x = range(len(results))
    right.bar([i - 0.2 for i in x], [percentile(r.ready, 50) for r in results], 0.4, label="p50", color="#55a868")
    right.bar([i + 0.2 for i in x], [percentile(r.ready, 99) for r in results], 0.4, label="p99", color="#c44e52")
    right.set_xticks(list(x), names)
    right.set_ylabel("time to ready (virtual s)")
    right.legend()
    for axis in (left, right):
        axis.tick_params(axis="x", labelrotation=20)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def sweep(jobs: int, seeds: Sequence[int]) -> str:
    """clarad's loads over the oracle policy's on the reference trace's shape (``tracegen.Shape()``)
    with ``jobs`` jobs, for several seeds and instance counts × capacities: how robust one
    replay's ratio is."""
    lines, ratios = [f"{'instances':>9} {'max models':>10} {'seed':>4} {'clarad':>6} {'oracle':>6} {'ratio':>6}"], []
    for instances, max_models in ((2, 4), (3, 4), (2, 6), (3, 6)):
        for seed in seeds:
            trace = tracegen.generate(tracegen.Shape(jobs=jobs), seed)
            ours, oracle = (simulate(trace, policy, gpus=instances, per_gpu=1, max_models=max_models,
                                     start_seconds=2.0).loads for policy in ("clarad", "oracle"))
            ratios.append(ours / oracle)
            lines.append(f"{instances:>9} {max_models:>10} {seed:>4} {ours:>6} {oracle:>6} {ratios[-1]:>6.2f}")
    mean = 2 ** (sum(math.log2(r) for r in ratios) / len(ratios))
    lines.append(f"clarad / oracle: geometric mean {mean:.2f}, highest {max(ratios):.2f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--per-gpu", type=int, default=4, help="instance slots per GPU")
    parser.add_argument("--max-models", type=int, default=4, help="max_models_per_instance")
    parser.add_argument("--rate", type=float, default=0.8, help="jobs per second when calm (bursts: 4x)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--plot", type=Path, help="write a PNG of loads and time to ready per policy")
    parser.add_argument("--workers", type=int, default=1, help="policies simulated at once, one process each")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sweep", type=int, metavar="JOBS",
                        help="instead: clarad against the oracle on the reference trace's shape, JOBS jobs, 3 seeds")
    args = parser.parse_args()
    if args.sweep:
        print(sweep(args.sweep, (args.seed, args.seed + 1, args.seed + 2)))
        return 0
    shape = tracegen.Shape(models=args.models, pipelines=args.pipelines, jobs=args.jobs, zipf=1.0, rate=args.rate,
                           burst_factor=4.0, calm_seconds=60.0, burst_seconds=10.0, load_seconds=(2.0, 10.0),
                           megabytes=(200, 2000), run_seconds=(1.0, 5.0))
    trace = tracegen.generate(shape, args.seed)
    print(f"command: {' '.join(sys.argv)}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average "
          f"{os.getloadavg()[0]:.1f}; {shape}", file=sys.stderr)
    run = functools.partial(simulate, trace, gpus=args.gpus, per_gpu=args.per_gpu, max_models=args.max_models)
    with concurrent.futures.ProcessPoolExecutor(args.workers) as workers:
        results = list(workers.map(run, args.policies.split(",")))
    for r in results:
        print(f"{r.policy}: {r.real_seconds:.1f} s", file=sys.stderr)
    print(f"load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    bound = tracegen.lower_bound(trace.model_sets(), args.gpus * args.per_gpu, args.max_models)
    if args.json:
        print(json.dumps([{"policy": r.policy, "loads": r.loads, "avoided": r.avoided, "ready_p50": percentile(r.ready, 50),
                           "ready_p99": percentile(r.ready, 99), "waited": r.waited / r.jobs, "makespan": r.makespan,
                           "in_order": r.in_order, "real_seconds": r.real_seconds, "passes": len(r.passes)}
                          for r in results] + [{"lower_bound": bound, "wanted": trace.wanted()}], indent=2))
    print(table(results, trace.wanted(), bound), file=sys.stderr if args.json else sys.stdout)
    if args.plot:
        plot(results, bound, args.plot, f"{args.jobs:,} jobs, {args.models} models, {args.gpus} GPUs × {args.per_gpu} "
                                        f"instances of {args.max_models} models (simulated)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
