"""Benchmark: warm dispatch under a stream of payloads, as an overhead over a bare spawn of the same
operator measured in the same run.

``clarad run`` (CPU instances, the real tritonserver) with the demo model ``affine`` and a pipeline
whose one operator lists it and writes ``time.time()`` first thing (``python -S``). After one warm-up
job, three series, interleaved so that the machine's load falls on all alike:

- back-to-back: each payload renamed into the inbox right after the previous job stopped;
- Poisson: payloads renamed in at random (exponential) intervals, not waiting for the jobs;
- bare: the same operator command spawned directly, time.time() before the spawn against its own.

Each latency is drop (or spawn) to the operator's first line; the overhead of a series is its
percentile minus the bare spawn's. With one instance, a Poisson drop that comes while the previous
job still runs waits for it: "Poisson, instance free" leaves those out (their share is printed).
``--mount-namespace off`` runs operators without bwrap (the setting operator_mount_namespace).

    .venv-test/bin/python bench/dispatch.py                  # 200 jobs per series: a few minutes
    .venv-test/bin/python bench/dispatch.py --jobs 10        # a quick check
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import git_commit, log
from job_latency import FIRST_LINE, PIPELINE, Daemon, one_job, setup, wait_for


def bare(work: Path, n: int) -> float:
    out = work / f"bare-{n}"
    out.mkdir()
    began = time.time()
    subprocess.run([sys.executable, "-S", "-c", FIRST_LINE], env={**os.environ, "NVIDIA_CLARA_OUTPUT": str(out)},
                   check=True)
    return float((out / "t").read_text()) - began


def poisson(d: Daemon, count: int, interval: float, rng: random.Random, first: int) -> list[tuple[float, bool]]:
    """Drop ``count`` payloads at exponential intervals; each one's drop-to-first-line latency, and
    whether the previous job had stopped when it was dropped (the instance was free)."""
    dropped: dict[str, float] = {}
    for n in range(first, first + count):
        time.sleep(rng.expovariate(1 / interval))
        payload = d.work / "staging" / f"payload-{n}.txt"
        payload.write_text("1\n")
        dropped[payload.name] = time.time()
        payload.rename(d.state / "inbox" / "jobs" / PIPELINE / payload.name)
    jobs = wait_for(lambda: (listed := [j for j in d.ask("jobs.list", limit=10 * count) if j["name"] in dropped])
                    and len(listed) == count and all(j["state"] == "STOPPED" for j in listed) and listed,
                    60 + 5 * count, "the Poisson jobs", 0.05)
    latencies = []
    ended = 0.0  # the latest end of the jobs dropped before this one
    for job in sorted(jobs, key=lambda j: dropped[j["name"]]):
        if job["status"] != "HEALTHY":
            raise SystemExit(f"job {job['id']} ended {job['status']}: {job['reason']}")
        stamp = d.state / "jobs" / job["id"] / "operators" / "first" / "t"
        latencies.append((float(stamp.read_text()) - dropped[job["name"]], dropped[job["name"]] >= ended))
        ended = max(ended, job["stopped_at"])
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs per series (default 200)")
    parser.add_argument("--interval", type=float, default=0.25, help="mean seconds between Poisson drops")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--mount-namespace", choices=("auto", "off"), default="auto",
                        help="operators in their own mount namespace (bwrap) where it works (default auto)")
    args = parser.parse_args()
    log(f"command: {' '.join(sys.argv)}; commit {git_commit()}; load average {os.getloadavg()[0]:.2f}")
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="clarad-bench-dispatch-"))
    d = Daemon(work)
    d.env["CLARAD_CPU_INSTANCES"] = "1"  # one warm instance: every job is a warm one
    d.env["CLARAD_OPERATOR_MOUNT_NAMESPACE"] = args.mount_namespace
    series: dict[str, list[float]] = {"back-to-back": [], "poisson": [], "poisson, free": [], "bare spawn": []}
    try:
        d.start()
        setup(d)
        one_job(d, 0)
        batch = 20
        for start in range(0, args.jobs, batch):
            size = min(batch, args.jobs - start)
            for n in range(start, start + size):
                run = one_job(d, 1 + n)
                series["back-to-back"].append(run["first_line"] - run["dropped"])
                series["bare spawn"].append(bare(work, n))
            for latency, free in poisson(d, size, args.interval, rng, 100_000 + start):
                series["poisson"].append(latency)
                if free:
                    series["poisson, free"].append(latency)
            log(f"{start + size}/{args.jobs}")
        loads = len(d.log_lines(r"loaded affine"))
    finally:
        d.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"mount namespace {args.mount_namespace}; load average {os.getloadavg()[0]:.2f} at the end; "
          f"{len(series['poisson, free'])} of {len(series['poisson'])} Poisson drops found the instance free")
    print(f"{'series':<14} {'p50':>8} {'p90':>8} {'p99':>8}   overhead over a bare spawn: p50, p99")
    for name, values in series.items():
        if not values:
            continue
        line = f"{name:<14} " + " ".join(f"{pct(values, q) * 1e3:>6.1f}ms" for q in (50, 90, 99))
        if name != "bare spawn":
            base = series["bare spawn"]
            line += f"   {(pct(values, 50) - pct(base, 50)) * 1e3:.1f} ms, {(pct(values, 99) - pct(base, 99)) * 1e3:.1f} ms"
        print(line)
    print(f"model loads in the whole run: {loads} (1 is the warm-up's: every measured job was warm)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
