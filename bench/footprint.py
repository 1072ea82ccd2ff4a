"""Benchmark: the daemon's own footprint and scale, without Triton in the way.

- idle: clarad's resident memory and CPU over ``--idle-seconds`` with nothing to do;
- a big catalog: ``/metrics`` scrape time and ``clarad models list`` with ``--models`` models;
- a long history: start-up time (process start to the control socket answering) with
  ``--finished`` finished jobs in the database, against an empty one;
- a burst: ``--burst`` payloads of a one-operator pipeline (``true``, no model) renamed into the
  inbox at once: all reach STOPPED; jobs per second and clarad's CPU per job.

The catalog and the history are written into the database before clarad starts (the records a
long-lived clarad would have; the catalog's model files are not needed by these reads).

    .venv-test/bin/python bench/footprint.py
    .venv-test/bin/python bench/footprint.py --idle-seconds 3 --models 50 --finished 500 --burst 10  # quick
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import git_commit, log
from job_latency import wait_for

from clarad import control
from clarad.errors import ControlError
from clarad.layout import Layout
from clarad.store import Store


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
        jobs = [(uuid.uuid4().hex, "p", f"job{n}", "normal", "STOPPED", "HEALTHY", "done", now - n, now - n, now - n)
                for n in range(finished)]
        store.db.executemany("INSERT INTO jobs (id, pipeline, name, priority, state, status, reason, created_at, "
                             "started_at, stopped_at) VALUES (?,?,?,?,?,?,?,?,?,?)", jobs)
        store.db.executemany("INSERT INTO operators (job_id, name, position, state) VALUES (?, 'op', 0, 'COMPLETED')",
                             [(job[0],) for job in jobs])
        store.db.execute("COMMIT")
    store.close()


class Daemon:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.port = free_port()
        env = {**os.environ, "CLARAD_USE_GPUS": "false", "CLARAD_SETTLE_SECONDS": "0.2", "CLARAD_API_PORT": "0"}
        began = time.monotonic()
        self.log = open(state.parent / f"{state.name}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "clarad", "run", "--state-dir", str(state),
                                      "--metrics-port", str(self.port)], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        wait_for(self._answers, 120, "clarad's control socket", 0.005)
        self.startup = time.monotonic() - began
        self.ps = psutil.Process(self.proc.pid)

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise SystemExit(f"clarad exited with {self.proc.returncode}")
        try:
            self.ask("status")
            return True
        except ControlError:
            return False

    def ask(self, command: str, **args: Any) -> Any:
        return control.request(control.socket_path(self.state), command, args, timeout=120)

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(call: Any, repeats: int = 5) -> float:
    """Median seconds of ``call()``."""
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        samples.append(time.perf_counter() - began)
    return sorted(samples)[len(samples) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--finished", type=int, default=100_000)
    parser.add_argument("--burst", type=int, default=1000)
    args = parser.parse_args()
    log(f"command: {' '.join(sys.argv)}; commit {git_commit()}")
    figures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="clarad-footprint-") as tmp:
        root = Path(tmp)
        empty = Daemon(root / "empty")
        figures["start-up, empty database"] = f"{empty.startup * 1e3:.0f} ms"
        cpu0 = empty.cpu()
        time.sleep(args.idle_seconds)  # nothing to do: what clarad costs while it waits
        figures["idle CPU"] = f"{(empty.cpu() - cpu0) / args.idle_seconds * 100:.2f} % over {args.idle_seconds:g} s"
        figures["idle resident memory"] = f"{empty.ps.memory_info().rss / 2**20:.1f} MiB"

        pipeline = root / "burst.yaml"
        pipeline.write_text('name: burst\noperators:\n- name: op\n  command: ["true"]\n')
        pipeline.rename(empty.state / "inbox" / "pipelines" / pipeline.name)
        wait_for((empty.state / "inbox" / "jobs" / "burst").is_dir, 30, "the pipeline")
        payloads = root / "payloads"
        payloads.mkdir()
        for n in range(args.burst):
            (payloads / f"p{n}").write_text(str(n))
        cpu0, began = empty.cpu(), time.monotonic()
        for n in range(args.burst):
            (payloads / f"p{n}").rename(empty.state / "inbox" / "jobs" / "burst" / f"p{n}")
        wait_for(lambda: empty.ask("status")["jobs"].get("HEALTHY", 0) == args.burst, 60 + args.burst,
                 "every job of the burst", 0.2)
        took = time.monotonic() - began
        figures[f"burst of {args.burst} jobs"] = (f"{args.burst / took:.1f} jobs/s, clarad CPU "
                                                  f"{(empty.cpu() - cpu0) / args.burst * 1e3:.1f} ms per job")
        empty.stop()

        prefill(root / "big", args.models, args.finished)
        big = Daemon(root / "big")
        figures[f"start-up, {args.finished} finished jobs"] = f"{big.startup * 1e3:.0f} ms"
        url = f"http://127.0.0.1:{big.port}/metrics"
        figures[f"/metrics scrape, {args.models} models"] = \
            f"{timed(lambda: urllib.request.urlopen(url, timeout=30).read()) * 1e3:.1f} ms"
        figures[f"models list, {args.models} models"] = f"{timed(lambda: big.ask('models.list')) * 1e3:.1f} ms"
        figures["status"] = f"{timed(lambda: big.ask('status')) * 1e3:.1f} ms"
        big.stop()
    width = max(map(len, figures))
    print("\n".join(f"{name:<{width}}  {value}" for name, value in figures.items()))
    print(f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
