"""Benchmark: the time of clarad's scheduling decision per job, as instances and the queue grow.

The real scheduler (clarad/scheduler.py, its placement and the SQLite store) over the modelled Triton
(clarad/simulator.py), with a fake clock and no process started: 8 GPUs carry the instances; a
population of ``--models`` models with measured load costs (Zipf-popular, 0.2 to 20 s, 50 MB to 4 GB);
``--pipelines`` pipelines of 1 to 3 operators naming 1 to 4 models each, overlapping; every
instance holds up to 8 models already. For each instance count and queue length:

- **one placement**: one instance is idle, the others are leased, and the queue holds Q jobs: the
  time of ``run_pass`` (which places one job, the others still waiting): the decision a job waits for;
- **nothing free**: every instance is leased and nothing changed since the last pass: ``run_pass``;
- **after a load is measured**: the same, after a load of the queue's most wanted model was
  measured (the jobs that want it are offered again): the pass, and the pass divided by Q;
- **decide alone**: ``placement.decide`` for one job over the N instances (the pure part).

Each figure is the median of ``--repeats`` passes after one untimed pass. ``--finished`` finished jobs
are written into the store first, for the row that shows the pass does not grow with them.

    .venv-test/bin/python bench/decision_time.py                          # the grid, about a minute
    .venv-test/bin/python bench/decision_time.py --instances 10 --queue 10 --repeats 3 --finished 100
    .venv-test/bin/python bench/decision_time.py --plot docs/decision-time.png
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clarad import placement
from clarad.children import ChildRegistry
from clarad.config import Settings
from clarad.costs import CostBook
from clarad.gpus import Gpu, StaticGpus, slots
from clarad.jobs import Priority, QueuedJob
from clarad.layout import Layout
from clarad.metrics import Metrics
from clarad.pipelines import parse_pipeline
from clarad.placement import Action, Decision
from clarad.pool import InstanceState, Pool
from clarad.prepare import Preparer
from clarad.runner import JobRunner, Lease, RunningJob
from clarad.scheduler import Scheduler
from clarad.simulator import ModelledLauncher, ModelledTriton
from clarad.store import Store
from clarad.triton import Ports

GPUS = 8
MAX_MODELS = 8


class PlacingRunner(JobRunner):
    """The real runner, but a placed job does not run: the pass's work ends at the placement."""

    def start(self, job: QueuedJob, leases: list[Lease], gpus: list[str], now: float) -> RunningJob:
        return RunningJob(job, leases, gpus, now, 600.0)


@dataclass
class Population:
    models: list[str]
    costs: dict[str, tuple[float, int]]  # model -> (load seconds, bytes)
    pipelines: list[str]  # definitions
    weights: list[float]  # pipeline popularity


def population(models: int, pipelines: int, rng: random.Random) -> Population:
    names = [f"model{n:04d}" for n in range(models)]
    costs = {name: (round(0.2 + rng.paretovariate(1.5) * 0.8, 2) if rng.random() < 0.9 else 20.0,
                    int(rng.uniform(50e6, 4e9))) for name in names}
    popular = [1 / (rank + 1) for rank in range(models)]
    texts = []
    for p in range(pipelines):
        ops = []
        for o in range(rng.randint(1, 3)):
            wanted = list(dict.fromkeys(rng.choices(names, popular, k=rng.randint(1, 2))))
            ops.append({"name": f"op{o}", "command": ["true"], "models": [{"name": m} for m in wanted],
                        **({"input": [{"from": f"op{o - 1}", "path": "/in"}]} if o else {})})
        texts.append(json.dumps({"name": f"pipeline{p}", "operators": ops}))
    weights = [1 / (rank + 1) ** 1.1 for rank in range(pipelines)]
    return Population(names, costs, texts, weights)


class Bench:
    """One scheduler, wired as the daemon wires it, with ``instances`` instances and ``queued`` jobs."""

    def __init__(self, root: Path, pop: Population, instances: int, queued: int, finished: int,
                 rng: random.Random) -> None:
        self.layout = Layout(root)
        self.layout.create()
        self.store = Store(self.layout.database)
        gpus = [Gpu(n, f"GPU-{n:02d}", "modelled", 80 << 30) for n in range(GPUS)]
        per_gpu = -(-instances // GPUS)
        self.settings = Settings(state_dir=root, use_gpus=True, instances_per_gpu=per_gpu,
                                 max_models_per_instance=MAX_MODELS, metrics_port=0)
        now = time.time()
        self._fill_store(pop, queued, finished, now, rng)
        self.metrics = Metrics()
        self.pool = Pool(slots(gpus, per_gpu, 0)[:instances], on_lost=lambda i, how: None)
        self.costs = CostBook(self.store)
        launcher = ModelledLauncher()
        preparer = Preparer(self.settings, self.layout, self.store, self.metrics, self.pool, launcher, self.costs)
        runner = PlacingRunner(self.settings, self.layout, self.store, self.metrics, self.pool, preparer,
                               ChildRegistry(self.store), on_done=lambda running: None)
        self.scheduler = Scheduler(self.settings, self.store, self.layout, self.metrics, self.pool, runner,
                                   self.costs, gpus, StaticGpus(gpus).memory, None, lambda: None)
        self.pop, self.rng, self.now = pop, rng, now
        self.jobs = list(self._jobs)

    def _fill_store(self, pop: Population, queued: int, finished: int, now: float, rng: random.Random) -> None:
        db = self.store.db
        db.execute("BEGIN")
        db.executemany("INSERT INTO models VALUES (?, ?, ?, 'python', '[1]', ?, 'bench', ?)",
                       [(m, uuid.uuid4().hex, f"{n:064x}", pop.costs[m][1], now) for n, m in enumerate(pop.models)])
        db.executemany("INSERT INTO model_costs VALUES (?, ?, 'gpu', 1, ?, ?, ?)",
                       [(m, f"{n:064x}", pop.costs[m][0], pop.costs[m][1], now) for n, m in enumerate(pop.models)])
        db.executemany("INSERT INTO pipelines VALUES (?, ?, ?, ?)",
                       [(f"pipeline{p}", uuid.uuid4().hex, text, now) for p, text in enumerate(pop.pipelines)])
        old = [(uuid.uuid4().hex, f"pipeline{rng.randrange(len(pop.pipelines))}", f"old{n}", "normal", "STOPPED",
                "HEALTHY", "done", now - 1e6 + n, now - 1e6 + n, now - 1e6 + n) for n in range(finished)]
        db.executemany("INSERT INTO jobs (id, pipeline, name, priority, state, status, reason, created_at, started_at,"
                       " stopped_at) VALUES (?,?,?,?,?,?,?,?,?,?)", old)
        parsed = [parse_pipeline(text) for text in pop.pipelines]
        picks = rng.choices(range(len(pop.pipelines)), pop.weights, k=queued)
        self._jobs = []
        for n, p in enumerate(picks):
            job_id = uuid.uuid4().hex
            priority = Priority.HIGH if rng.random() < 0.1 else Priority.NORMAL
            db.execute("INSERT INTO jobs (id, pipeline, name, priority, state, created_at) VALUES (?,?,?,?,?,?)",
                       (job_id, f"pipeline{p}", f"payload{n}", priority.value, "PENDING", now - queued + n))
            self._jobs.append(QueuedJob(job_id, f"payload{n}", parsed[p], priority, now - queued + n))
        db.execute("COMMIT")

    async def start_instances(self) -> None:
        """Every slot gets an instance holding up to 8 models (drawn by popularity), leased to a job."""
        digests = self.store.model_digests()
        popular = [1 / (rank + 1) for rank in range(len(self.pop.models))]
        for n, slot in enumerate(self.pool.slots):
            instance = self.pool.lease(Decision(Action.START, "bench", slot=slot), f"busy{n}")
            self.pool.started(instance, ModelledTriton(instance.id, slot, Ports(0, 0)))
            held = dict.fromkeys(self.rng.choices(self.pop.models, popular, k=MAX_MODELS))
            instance.loaded = {name: digests[name] for name in held}
            instance.last_used = {name: self.now - self.rng.uniform(0, 3600) for name in held}
            self.pool.move(instance, "loaded")
        for job in self.jobs:
            self.queue_job(job)

    def queue_job(self, job: QueuedJob) -> None:
        add = getattr(self.scheduler, "queue_job", None)  # a clarad before queue.py: a plain list
        add(job) if add is not None else self.scheduler.queue.append(job)

    def idle(self, instance_id: str) -> None:
        instance = self.pool.instances[instance_id]
        instance.job = None
        instance.state = InstanceState.IDLE

    def lease_again(self, instance_id: str) -> None:
        instance = self.pool.instances[instance_id]
        instance.state, instance.job = InstanceState.LEASED, "busy"

    def undo(self) -> None:
        """Put back what a pass placed: its jobs queued again, their instances leased to others."""
        for running in list(self.scheduler.running.values()):
            del self.scheduler.running[running.job.id]
            for lease in running.leases:
                lease.instance.state, lease.instance.job = InstanceState.LEASED, "busy"
            self.queue_job(running.job)

    def timed_pass(self) -> float:
        began = time.perf_counter()
        self.scheduler.run_pass(self.now)
        return time.perf_counter() - began

    async def close(self) -> None:
        await self.pool.stop_all(0)
        self.store.close()


async def measure(root: Path, pop: Population, instances: int, queued: int, finished: int, repeats: int,
                  seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    bench = Bench(root, pop, instances, queued, finished, rng)
    try:
        await bench.start_instances()
        gc.collect()  # what building the bench left is not the pass's to collect
        bench.timed_pass()  # untimed: records every job's reason for waiting once
        busy = [bench.timed_pass() for _ in range(repeats)]
        changed = []
        wanted = Counter(name for job in bench.jobs for name in job.pipeline.model_names)
        popular = max(wanted, key=lambda name: wanted[name])
        digest = bench.store.model_digests()[popular]
        for n in range(repeats):  # a load of the most wanted model measured: the jobs wanting it are offered again
            bench.costs.record(popular, digest, "gpu", 1.0 + n / 100, pop.costs[popular][1], bench.now)
            changed.append(bench.timed_pass())
        ids = list(bench.pool.instances)
        one, placed = [], 0
        for n in range(repeats + 1):
            bench.idle(ids[n % len(ids)])
            seconds = bench.timed_pass()
            placed += len(bench.scheduler.running)
            if n:
                one.append(seconds)
            bench.lease_again(ids[n % len(ids)])
            bench.undo()
        assert placed == repeats + 1, f"{placed} placements in {repeats + 1} passes with one idle instance"
        scheduler, digests = bench.scheduler, bench.store.model_digests()
        world = scheduler.world(digests)
        bench.idle(ids[0])
        views, free = bench.pool.views(), bench.pool.free_slots()
        decide = []
        for job in bench.jobs[:repeats]:
            began = time.perf_counter()
            placement.decide(job.pipeline.model_names, digests, views, free, MAX_MODELS, world)
            decide.append(time.perf_counter() - began)
        return {"instances": instances, "queued": queued, "finished": finished,
                "one_placement_ms": statistics.median(one) * 1e3,
                "nothing_free_ms": statistics.median(busy) * 1e3,
                "after_change_ms": statistics.median(changed) * 1e3,
                "wanting_share": sum(popular in job.pipeline.model_names for job in bench.jobs) / queued,
                "per_queued_job_us": statistics.median(changed) / queued * 1e6,
                "decide_us": statistics.median(decide) * 1e6}
    finally:
        await bench.close()


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def plot(rows: list[dict[str, Any]], path: Path, note: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (one, change) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for instances in sorted({row["instances"] for row in rows}):
        mine = sorted((r for r in rows if r["instances"] == instances and r["finished"] == 0), key=lambda r: r["queued"])
        for ax, key in ((one, "one_placement_ms"), (change, "after_change_ms")):
            ax.plot([r["queued"] for r in mine], [r[key] for r in mine], marker="o", label=f"{instances} instances")
    one.set_title("a pass that places one job")
    change.set_title("a pass after a load of the most wanted model is measured")
    one.set_ylabel("time of the scheduling pass (ms)")
    for ax in (one, change):
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="1 ms")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("queued jobs")
        ax.grid(True, which="both", alpha=0.3)
    one.legend()
    fig.suptitle("clarad: scheduling decision time against queue length (real scheduler, modelled Triton)")
    fig.text(0.01, 0.01, note, fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, nargs="+", default=[10, 20, 50, 100])
    parser.add_argument("--queue", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--finished", type=int, default=100_000, help="finished jobs for the history row")
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--pipelines", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--plot", type=Path, help="write the PNG plot here")
    parser.add_argument("--json", action="store_true", help="every row as JSON on stdout")
    args = parser.parse_args()
    print(f"command: {' '.join(sys.argv)}; load average {load_average()}; {os.cpu_count()} cores", flush=True)
    pop = population(args.models, args.pipelines, random.Random(args.seed))
    cases = [(n, q, 0) for n in args.instances for q in args.queue]
    cases.append((max(args.instances), sorted(args.queue)[len(args.queue) // 2], args.finished))
    rows = []
    with tempfile.TemporaryDirectory(prefix="clarad-decision-") as tmp:
        for k, (instances, queued, finished) in enumerate(cases):
            rows.append(asyncio.run(measure(Path(tmp) / str(k), pop, instances, queued, finished, args.repeats,
                                            args.seed + k)))
    if args.json:
        print(json.dumps(rows, indent=1))
    print(f"{'instances':>9} {'queued':>7} {'finished':>8} {'pass placing one job':>21} {'nothing free':>13} "
          f"{'after a load':>13} {'(jobs wanting it)':>18} {'per queued job':>15} {'decide() alone':>15}")
    for r in rows:
        print(f"{r['instances']:>9} {r['queued']:>7} {r['finished']:>8} {r['one_placement_ms']:>18.3f} ms "
              f"{r['nothing_free_ms']:>10.3f} ms {r['after_change_ms']:>10.3f} ms {r['wanting_share'] * 100:>17.0f}% "
              f"{r['per_queued_job_us']:>12.2f} µs {r['decide_us']:>12.1f} µs")
    base = [r for r in rows if r["finished"] == 0 and (r["instances"], r["queued"]) == (rows[-1]["instances"],
                                                                                      rows[-1]["queued"])]
    if base and rows[-1]["finished"]:
        print(f"with {rows[-1]['finished']} finished jobs: {rows[-1]['one_placement_ms'] / base[0]['one_placement_ms']:.2f}× "
              "the pass time with none")
    print(f"load average after: {load_average()}")
    if args.plot:
        plot(rows, args.plot, f"bench/decision_time.py, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
                              f"load average {load_average()}")
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
