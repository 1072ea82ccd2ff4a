"""Benchmark: the daemon's own footprint and scale, without Triton in the way.

- idle: clarad's resident memory and CPU over ``--idle-seconds`` with nothing to do (its gRPC API
  and /metrics on, as by default);
- a big catalog: ``/metrics`` scrape time and ``clarad models list`` with ``--models`` models;
- a long history: start-up time (process start to the control socket answering) with
  ``--finished`` finished jobs in the database, against an empty one;
- a burst: ``--burst`` payloads of a one-operator pipeline (``true``, no model) renamed into the
  inbox at once: all reach STOPPED; jobs per second and clarad's CPU per job.

The catalog and the history are written into the database before clarad starts (the records a
long-lived clarad would have, each finished job's size measured; the catalog's model files are not
needed by these reads). clarad runs as the end-to-end tests run it (tests/e2e/clarad_process.py).

    .venv-test/bin/python bench/footprint.py                     # full size: about 5 minutes
    .venv-test/bin/python bench/footprint.py --idle-seconds 3 --models 50 --finished 500 --burst 10  # quick
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "bench"), str(REPO)]  # this checkout's clarad, and the tests' helper
from ingest import git_commit, log

from clarad.layout import Layout
from clarad.store import Store
from tests.e2e.clarad_process import Clarad
from tests.waiting import wait_for


def prefill(state: Path, models: int, finished: int) -> None:
    layout = Layout(state)
    layout.create()
    store = Store(layout.database)
    now = time.time()
    with store.db:  # one transaction: the records a long-lived clarad would have made one by one
        store.db.execute("BEGIN")
        store.db.executemany(
            "INSERT INTO models (name, id, digest, backend, versions, size, source, added_at) VALUES (?,?,?,?,?,?,?,?)",
            [(f"model{n}", uuid.uuid4().hex, f"{n:064x}", "python", "[1]", 1000 + n, "bench", now) for n in range(models)])
        jobs = [(uuid.uuid4().hex, "p", f"job{n}", "normal", "STOPPED", "HEALTHY", "done", now - n, now - n, now - n,
                 1000) for n in range(finished)]
        store.db.executemany("INSERT INTO jobs (id, pipeline, name, priority, state, status, reason, created_at, "
                             "started_at, stopped_at, size) VALUES (?,?,?,?,?,?,?,?,?,?,?)", jobs)
        store.db.executemany("INSERT INTO operators (job_id, name, position, state) VALUES (?, 'op', 0, 'COMPLETED')",
                             [(job[0],) for job in jobs])
        store.db.execute("COMMIT")
    store.close()


class Daemon(Clarad):
    """``clarad run`` as the end-to-end tests start it; how long it took to answer, its CPU time."""

    def start(self) -> "Daemon":
        began = time.monotonic()
        super().start()
        self.startup = time.monotonic() - began
        assert self.proc is not None
        self.ps = psutil.Process(self.proc.pid)
        return self

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system


def timed(call: Any, repeats: int = 5) -> float:
    """Median seconds of ``call()``."""
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        samples.append(time.perf_counter() - began)
    return sorted(samples)[len(samples) // 2]


def burst(daemon: Daemon, root: Path, count: int, figures: dict[str, str]) -> None:
    """``count`` payloads renamed into the inbox at once; every job must stop HEALTHY."""
    pipeline = root / "burst.yaml"
    pipeline.write_text('name: burst\noperators:\n- name: op\n  command: ["true"]\n')
    pipeline.rename(daemon.state / "inbox" / "pipelines" / pipeline.name)
    wait_for((daemon.state / "inbox" / "jobs" / "burst").is_dir, 30, "the pipeline")
    payloads = root / "payloads"
    payloads.mkdir()
    for n in range(count):
        (payloads / f"p{n}").write_text(str(n))
    cpu0, began, peak = daemon.cpu(), time.monotonic(), 0
    for n in range(count):
        (payloads / f"p{n}").rename(daemon.state / "inbox" / "jobs" / "burst" / f"p{n}")
    deadline = began + 120 + count
    while daemon.metric("clarad_jobs_finished_total", status="HEALTHY") < count:  # a scrape: the queue is not listed
        peak = max(peak, daemon.ps.memory_info().rss)
        if time.monotonic() > deadline or daemon.metric("clarad_jobs_finished_total", status="FAULTED"):
            raise SystemExit(f"the burst did not end HEALTHY: {daemon.ask('status')['jobs']}")
        time.sleep(0.25)
    took = time.monotonic() - began
    jobs = daemon.ask("status")["jobs"]
    assert jobs.get("STOPPED") == jobs.get("HEALTHY") == count, jobs
    figures[f"burst of {count} payloads at once"] = (
        f"all {count} STOPPED HEALTHY in {took:.0f} s: {count / took:.1f} jobs/s, clarad CPU "
        f"{(daemon.cpu() - cpu0) / count * 1e3:.1f} ms per job, peak RSS {peak / 2**20:.0f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--finished", type=int, default=100_000)
    parser.add_argument("--burst", type=int, default=10_000)
    args = parser.parse_args()
    log(f"command: {' '.join(sys.argv)}; commit {git_commit()}")
    loads = [" ".join(f"{x:.2f}" for x in os.getloadavg())]
    figures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="clarad-footprint-") as tmp:
        root = Path(tmp)
        empty = Daemon(root / "empty").start()
        try:
            figures["start-up, empty database"] = f"{empty.startup * 1e3:.0f} ms"
            cpu0 = empty.cpu()
            time.sleep(args.idle_seconds)  # nothing to do: what clarad costs while it waits
            figures["idle CPU"] = f"{(empty.cpu() - cpu0) / args.idle_seconds * 100:.2f} % over {args.idle_seconds:g} s"
            figures["idle resident memory"] = f"{empty.ps.memory_info().rss / 2**20:.1f} MiB"
            burst(empty, root, args.burst, figures)
        finally:
            empty.stop_if_running()
        loads.append(" ".join(f"{x:.2f}" for x in os.getloadavg()))

        prefill(root / "big", args.models, args.finished)
        big = Daemon(root / "big").start()
        try:
            figures[f"start-up, {args.finished} finished jobs"] = f"{big.startup * 1e3:.0f} ms"
            url = f"http://127.0.0.1:{big.metrics_port}/metrics"
            figures[f"/metrics scrape, {args.models} models"] = \
                f"{timed(lambda: urllib.request.urlopen(url, timeout=30).read()) * 1e3:.1f} ms"
            figures[f"models list, {args.models} models"] = f"{timed(lambda: big.ask('models.list')) * 1e3:.1f} ms"
            figures[f"status, {args.finished} finished jobs"] = f"{timed(lambda: big.ask('status')) * 1e3:.1f} ms"
        finally:
            big.stop_if_running()
    loads.append(" ".join(f"{x:.2f}" for x in os.getloadavg()))
    width = max(map(len, figures))
    print("\n".join(f"{name:<{width}}  {value}" for name, value in figures.items()))
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average (1, 5, 15 min) at the start, "
          f"after the burst, at the end: {' / '.join(loads)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
