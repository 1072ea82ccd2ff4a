"""Benchmark: the cold path, as a ratio to doing the same by hand in the same run.

clarad: ``clarad run`` (one CPU instance slot, the real tritonserver) with ``--models`` copies of the
demo model ``affine`` and a pipeline whose one operator lists them all and writes ``time.time()``
first thing (``python -S``). Each run restarts clarad (no instance is running then) and renames a
payload into the inbox: drop to the operator's first line, a new instance started and every model
loaded on the way.

Bare: what a person would do without clarad, timed in the same run, interleaved with clarad's runs:
start the same ``tritonserver`` (same binary, arguments and environment), poll it every 20 ms until
it is ready (its gRPC port, then the real tritonclient's ``is_server_ready``), load the same models one after another
(``load_model``), then spawn the same operator command; start to its first line.

    .venv-test/bin/python bench/cold_path.py                 # 10 runs each, 3 models: a few minutes
    .venv-test/bin/python bench/cold_path.py --runs 1 --models 1   # a quick check
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dispatch import pct
from ingest import git_commit, log
from job_latency import FIRST_LINE, MODEL, Daemon, wait_for

from clarad import triton

PIPELINE = "cold"
READY_POLL = 0.02  # seconds between readiness polls of the bare server


def models(work: Path, count: int) -> list[Path]:
    """``count`` copies of the demo model, named affine_1, affine_2, ... (outside any inbox)."""
    made = []
    for n in range(1, count + 1):
        target = work / "models" / f"affine_{n}"
        shutil.copytree(MODEL, target)
        config = target / "config.pbtxt"
        config.write_text(config.read_text().replace('name: "affine"', f'name: "affine_{n}"'))
        made.append(target)
    return made


def setup(d: Daemon, sources: list[Path]) -> None:
    staging = d.work / "staging"
    staging.mkdir()
    wait_for((d.state / "inbox" / "models").is_dir, 30, "inbox/models")
    for source in sources:
        shutil.copytree(source, staging / source.name)
        (staging / source.name).rename(d.state / "inbox" / "models" / source.name)
    names = {source.name for source in sources}
    wait_for(lambda: names <= {m["name"] for m in d.ask("models.list")}, 120, "the models", 0.05)
    command = f'["{sys.executable}", "-S", "-c", "{FIRST_LINE}"]'
    listed = "".join(f"  - name: {name}\n" for name in sorted(names))
    (staging / f"{PIPELINE}.yaml").write_text(
        f"api-version: 0.4.0\nname: {PIPELINE}\noperators:\n- name: first\n  command: {command}\n"
        f"  input:\n  - path: /input\n  output:\n  - path: /output\n  models:\n{listed}")
    (staging / f"{PIPELINE}.yaml").rename(d.state / "inbox" / "pipelines" / f"{PIPELINE}.yaml")
    wait_for((d.state / "inbox" / "jobs" / PIPELINE).is_dir, 60, f"inbox/jobs/{PIPELINE}", 0.05)


def clarad_run(d: Daemon, n: int) -> float:
    """Restart clarad, drop one payload; drop to the operator's first line."""
    d.stop()
    d.start()
    payload = d.work / "staging" / f"payload-{n}.txt"
    payload.write_text("1\n")
    jobs = d.state / "jobs"
    known = set(os.listdir(jobs)) if jobs.is_dir() else set()
    dropped = time.time()
    payload.rename(d.state / "inbox" / "jobs" / PIPELINE / payload.name)
    job_id = wait_for(lambda: jobs.is_dir() and set(os.listdir(jobs)) - known, 60, "the job's directory").pop()
    stamp = jobs / job_id / "operators" / "first" / "t"
    wait_for(lambda: stamp.is_file() and stamp.stat().st_size, 300, "the operator's first line")
    job = wait_for(lambda: (j := d.ask("jobs.show", id=job_id))["state"] == "STOPPED" and j, 60, "the job", 0.02)
    if job["status"] != "HEALTHY":
        raise SystemExit(f"job {job_id} ended {job['status']}: {job['reason']}")
    return float(stamp.read_text()) - dropped


def bare_run(work: Path, repository: Path, names: list[str], n: int) -> dict[str, float]:
    """tritonserver started by hand, polled until ready, the models loaded, the operator spawned."""
    spec = triton.prepare_launch(triton.find_binary(None), work / "bare-triton", None)
    ports = triton.free_ports()
    out = work / f"bare-out-{n}"
    out.mkdir()
    logfile = open(work / f"bare-triton-{n}.log", "wb")
    began = time.time()
    server = subprocess.Popen(triton.argv(spec, repository, ports, f"bare{os.getpid()}-{n}-"),
                              env=triton.environment(spec, os.environ, ""), stdout=logfile,
                              stderr=subprocess.STDOUT, start_new_session=True)
    client = None
    try:
        while True:
            if server.poll() is not None:
                raise SystemExit(f"tritonserver exited with {server.returncode}: see {logfile.name}")
            try:  # the port first: a gRPC call to a closed port puts the channel into a 1 s backoff
                socket.create_connection(("127.0.0.1", ports.grpc), timeout=0.2).close()
                client = client or grpcclient.InferenceServerClient(ports.grpc_uri)
                if client.is_server_ready(client_timeout=1.0):
                    break
            except (OSError, InferenceServerException):
                pass
            time.sleep(READY_POLL)
        ready = time.time()
        for name in names:
            client.load_model(name)
        loaded = time.time()
        subprocess.run([sys.executable, "-S", "-c", FIRST_LINE], env={**os.environ, "NVIDIA_CLARA_OUTPUT": str(out)},
                       check=True)
        first = float((out / "t").read_text())
    finally:
        if client is not None:
            client.close()
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        logfile.close()
    return {"total": first - began, "ready": ready - began, "loads": loaded - ready}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="cold runs of each (default 10)")
    parser.add_argument("--models", type=int, default=3, help="models the operator lists (default 3)")
    args = parser.parse_args()
    log(f"command: {' '.join(sys.argv)}; commit {git_commit()}; load average {os.getloadavg()[0]:.2f}")
    work = Path(tempfile.mkdtemp(prefix="clarad-bench-cold-"))
    sources = models(work, args.models)
    names = [source.name for source in sources]
    d = Daemon(work)
    d.env.update({"CLARAD_CPU_INSTANCES": "1", "CLARAD_KEEP_WARM": "false"})
    clarad_times: list[float] = []
    bare: list[dict[str, float]] = []
    try:
        d.start()
        setup(d, sources)
        for n in range(args.runs):
            clarad_times.append(clarad_run(d, n))
            bare.append(bare_run(work, work / "models", names, n))
            log(f"{n + 1}/{args.runs}: clarad {clarad_times[-1]:.3f} s, bare {bare[-1]['total']:.3f} s")
        starts = len(d.log_lines(r"instance \S+ started on "))
    finally:
        d.stop()
    shutil.rmtree(work, ignore_errors=True)
    totals = [run["total"] for run in bare]
    print(f"{args.runs} cold runs each, {args.models} model(s); load average {os.getloadavg()[0]:.2f} at the end")
    print(f"{'series':<34} {'p50':>8} {'p90':>8} {'max':>8}")
    for name, values in (("clarad: drop -> operator", clarad_times), ("bare: start -> operator", totals),
                         ("  of which tritonserver ready", [run["ready"] for run in bare]),
                         ("  of which loads", [run["loads"] for run in bare])):
        print(f"{name:<34} " + " ".join(f"{pct(values, q):>7.3f}s" for q in (50, 90, 100)))
    print(f"cold path overhead, clarad / bare (p50): {pct(clarad_times, 50) / pct(totals, 50):.3f}x; "
          f"median of each run's ratio (a run and its bare run are minutes apart at most): "
          f"{pct([c / b for c, b in zip(clarad_times, totals)], 50):.3f}x")
    print(f"instances started by clarad in its last start: {starts} (1: each run was cold)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
