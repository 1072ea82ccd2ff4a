"""Benchmark: how soon a dropped job starts its first operator, on a warm instance and on a cold one.

The product brief: "A warm job (all its models already loaded on an idle instance) starts its first operator
within tens of milliseconds of the drop; a cold job costs only what Triton itself needs to start and load."

``clarad run`` (CPU instances, a real tritonserver) on a temporary state directory; a one-operator pipeline whose
operator lists the demo model ``affine`` and writes ``time.time()`` first thing; payloads renamed into the inbox.
Warm jobs reuse the idle instance holding affine; cold jobs each follow a restart of clarad. See bench/README.md.

    /tmp/venv/bin/python bench/job_latency.py                   # 20 warm (x2), 5 cold runs: about a minute
    /tmp/venv/bin/python bench/job_latency.py --runs 5 --cold-runs 2 --json > job_latency.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import Figures, git_commit, log, table  # the same statistics and table as ingest.py

from clarad import control
from clarad.errors import ControlError
from clarad.layout import Layout

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "docs" / "demo" / "models" / "affine"
PIPELINE = "latency"
FIRST_LINE = "import time,os; t=time.time(); open(os.environ['NVIDIA_CLARA_OUTPUT']+'/t','w').write(repr(t))"
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
GLOG = re.compile(r"^[IWE](\d{4} \d\d:\d\d:\d\d\.\d{6}) \d+ [^]]+\] (.*)")  # tritonserver's own log


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)
    return value


class Daemon:
    """One ``clarad run`` on ``state``; each start writes its own log (instance ids restart at triton-1)."""

    def __init__(self, work: Path) -> None:
        self.work, self.state = work, work / "state"
        self.env = {**os.environ, "CLARAD_USE_GPUS": "false"}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log = work / "clarad-0.log"

    def start(self) -> None:
        self.starts += 1
        self.log = self.work / f"clarad-{self.starts}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "clarad", "run", "--state-dir", str(self.state),
                                          "--metrics-port", "0"], env=self.env, stdout=out, stderr=subprocess.STDOUT)
        wait_for(self._answers, 60, "clarad's control socket", 0.02)

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise SystemExit(f"clarad exited with {self.proc.returncode}:\n{self.log.read_text()}")
        with contextlib.suppress(ControlError, OSError):
            self.ask("status")
            return True
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.proc.wait(90) != 0:
                raise SystemExit(f"clarad exited with {self.proc.returncode}:\n{self.log.read_text()}")
        self.proc = None

    def ask(self, command: str, **args: Any) -> Any:
        return control.request(control.socket_path(self.state), command, args)

    def log_lines(self, pattern: str) -> list[tuple[float, re.Match[str]]]:
        """(timestamp, match) of this start's log lines matching ``pattern`` (asctime is local time, ms)."""
        found = []
        for line in self.log.read_text().splitlines():
            stamp, match = STAMP.match(line), re.search(pattern, line)
            if stamp and match:
                found.append((datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp(), match))
        return found

    def triton_log(self, instance: str, year: int) -> dict[str, float]:
        """First time stamp (local time, us; glog omits the year) of each message in ``instance``'s own log."""
        stamps: dict[str, float] = {}
        for line in (Layout(self.state).triton / "logs" / f"{instance}.log").read_text().splitlines():
            if match := GLOG.match(line):
                when = datetime.strptime(f"{year}{match.group(1)}", "%Y%m%d %H:%M:%S.%f").timestamp()
                stamps.setdefault(match.group(2).strip('"'), when)
        return stamps

    def leftovers(self) -> list[psutil.Process]:
        """Every process with the state directory in its command line (clarad, tritonserver, stubs)."""
        return [proc for proc in psutil.process_iter(["cmdline"])
                if proc.pid != os.getpid() and str(self.state) in " ".join(proc.info["cmdline"] or [])]


def setup(d: Daemon) -> None:
    """Drop the model and the pipeline as a person would: write outside the inbox, then rename in."""
    staging = d.work / "staging"
    staging.mkdir()
    shutil.copytree(MODEL, staging / "affine")
    wait_for((d.state / "inbox" / "models").is_dir, 30, "inbox/models")
    (staging / "affine").rename(d.state / "inbox" / "models" / "affine")
    wait_for(lambda: any(m["name"] == "affine" for m in d.ask("models.list")), 60, "model affine", 0.05)
    command = json.dumps([sys.executable, "-S", "-c", FIRST_LINE])
    (staging / f"{PIPELINE}.yaml").write_text(
        f"api-version: 0.4.0\nname: {PIPELINE}\noperators:\n- name: first\n  command: {command}\n"
        "  input:\n  - path: /input\n  output:\n  - path: /output\n  models:\n  - name: affine\n")
    (staging / f"{PIPELINE}.yaml").rename(d.state / "inbox" / "pipelines" / f"{PIPELINE}.yaml")
    wait_for((d.state / "inbox" / "jobs" / PIPELINE).is_dir, 60, f"inbox/jobs/{PIPELINE}", 0.05)


def one_job(d: Daemon, n: int) -> dict[str, Any]:
    """Drop one payload; wait (polling the file system, not clarad's loop) for its operator, then its end."""
    payload = d.work / "staging" / f"payload-{n}.txt"
    payload.write_text("1 2 3 4\n")
    jobs = d.state / "jobs"
    known = set(os.listdir(jobs)) if jobs.is_dir() else set()
    dropped = time.time()
    payload.rename(d.state / "inbox" / "jobs" / PIPELINE / payload.name)
    new = wait_for(lambda: jobs.is_dir() and set(os.listdir(jobs)) - known, 60, "the job's directory")
    job_id = new.pop()
    stamp = jobs / job_id / "operators" / "first" / "t"
    wait_for(lambda: stamp.is_file() and stamp.stat().st_size, 120, "the operator's first line")
    job = wait_for(lambda: (j := d.ask("jobs.show", id=job_id))["state"] == "STOPPED" and j, 60, "the job", 0.02)
    if job["status"] != "HEALTHY":
        raise SystemExit(f"job {job_id} ended {job['status']}: {job['reason']}\n{d.log.read_text()}")
    return {"job": job, "dropped": dropped, "first_line": float(stamp.read_text())}


def record(figures: Figures, run: dict[str, Any]) -> None:
    job, dropped = run["job"], run["dropped"]
    figures.add("drop -> job created", (job["created_at"] - dropped) * 1e3, "ms", "clarad's record")
    figures.add("drop -> operator started", (job["operators"][0]["started_at"] - dropped) * 1e3, "ms",
                "clarad's record: the operator is spawned")
    figures.add("drop -> operator's first line", (run["first_line"] - dropped) * 1e3, "ms",
                "time.time() in the operator (python -S start-up included)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="warm jobs, after one untimed warm-up (default 20)")
    parser.add_argument("--gap", type=float, default=1.0,
                        help="quiet seconds before each idle warm drop (default 1.0; watchdog holds moves 0.5 s)")
    parser.add_argument("--cold-runs", type=int, default=5, help="cold jobs, each after a restart (default 5)")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout instead of the table")
    args = parser.parse_args()
    if args.runs < 1 or args.cold_runs < 1:
        parser.error("--runs and --cold-runs must be at least 1")
    command = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    log(f"$ {command}")

    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="clarad-bench-latency-"))
    d = Daemon(work)
    warm, b2b, cold = Figures(), Figures(), Figures()
    try:
        d.start()
        setup(d)
        log("[warm] warm-up job (starts an instance, loads affine)")
        instance = one_job(d, 0)["job"]["instance"]
        loads = len(d.log_lines(r"loaded affine"))
        for i in range(args.runs):
            time.sleep(args.gap)
            for figures, n, label in ((warm, 2 * i + 1, "idle"), (b2b, 2 * i + 2, "back-to-back")):
                run = one_job(d, n)
                if run["job"]["instance"] != instance or len(d.log_lines(r"loaded affine")) != loads:
                    raise SystemExit(f"warm job {n} did not reuse {instance} with affine loaded:\n{d.log.read_text()}")
                record(figures, run)
                took = figures.series["drop -> operator started"]["samples"][-1]
                log(f"[warm] run {i + 1}/{args.runs}, {label}: operator started {took:.1f} ms after the drop")
        for i in range(args.cold_runs):
            d.stop()
            d.start()
            run = one_job(d, 1000 + i)
            job = run["job"]
            up = d.log_lines(rf"instance {re.escape(job['instance'])} started on ")
            load = d.log_lines(rf"instance {re.escape(job['instance'])}: loaded affine \(revision \w+\) in ([\d.]+) s")
            if len(up) != 1 or len(load) != 1:
                raise SystemExit(f"cold run {i + 1}: job {job['id']} did not start {job['instance']} and load "
                                 f"affine once:\n{d.log.read_text()}")
            own = d.triton_log(job["instance"], datetime.fromtimestamp(job["created_at"]).year)
            listening = next(t for m, t in own.items() if m.startswith("Started GRPCInferenceService"))
            record(cold, run)
            cold.add("Triton start", (up[0][0] - job["created_at"]) * 1e3, "ms",
                     "clarad's log 'instance ... started' - job created")
            cold.add("  of which tritonserver up (own log)", (listening - job["created_at"]) * 1e3, "ms",
                     "its 'Started GRPCInferenceService' - job created")
            cold.add("  of which clarad sees it ready", (up[0][0] - listening) * 1e3, "ms",
                     "clarad's 'started' - tritonserver's 'Started GRPC...'")
            cold.add("model load (affine)", float(load[0][1].group(1)) * 1e3, "ms",
                     "clarad's 'loaded affine ... in X s'")
            loading = own["successfully loaded 'affine'"] - own["loading: affine:1"]
            cold.add("  Triton's own load (own log)", loading * 1e3, "ms", "its 'loading' -> 'successfully loaded'")
            cold.add("loaded -> operator started", (job["operators"][0]["started_at"] - load[0][0]) * 1e3, "ms",
                     "operator started - clarad's log 'loaded'")
            took = cold.series["drop -> operator started"]["samples"][-1]
            log(f"[cold] run {i + 1}/{args.cold_runs}: operator started {took:.0f} ms after the drop")
    finally:
        try:
            d.stop()
        finally:
            left = d.leftovers()
            for proc in left:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
            if left:
                raise SystemExit("processes left running after clarad stopped (killed now): "
                                 + "; ".join(f"{p.pid} {' '.join(p.info['cmdline'] or [])[:200]}" for p in left))
            shutil.rmtree(work, ignore_errors=True)

    w, wb, c = warm.summary(), b2b.summary(), cold.summary()
    ratios = {f"cold/warm (idle), {name}": c[name]["median"] / w[name]["median"]
              for name in ("drop -> operator started", "drop -> operator's first line")}  # medians, same run
    result: dict[str, Any] = {
        "command": command,
        "environment": {"python": platform.python_version(), "platform": platform.platform(),
                        "cpus": os.cpu_count(), "clarad_commit": git_commit(), "tmp_dir": str(work)},
        "parameters": {"runs": args.runs, "gap_s": args.gap, "cold_runs": args.cold_runs},
        "notes": [f"Ran on a {os.cpu_count()}-CPU shared machine: other load on it shows up as noise, mostly in p90.",
                  "CPU instances (CLARAD_USE_GPUS=false), tritonserver from nvidia-pytriton, Python-backend model.",
                  "p90: 90th percentile of the per-run values (linear interpolation)."],
        "warm_idle": w, "warm_back_to_back": wb, "cold": c, "ratios": ratios,
        "elapsed_s": round(time.time() - started, 1)}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    env = result["environment"]
    lines = [f"$ {command}", "",
             (f"clarad {env['clarad_commit']}, Python {env['python']}, {env['platform']}, {env['cpus']} CPUs; "
              f"temp dir {env['tmp_dir']} (removed); elapsed {result['elapsed_s']:.0f} s")]
    lines += [f"NOTE: {note}" for note in result["notes"]]
    lines += ["", *table(f"Warm, idle: {args.runs} jobs on the idle instance that holds affine, each dropped "
                         f"{args.gap:g} s after the previous job stopped", w)]
    lines += ["", *table(f"Warm, back-to-back: {args.runs} jobs, each dropped as soon as the previous job stopped "
                         "(watchdog's 0.5 s hold of clarad's IN_MOVED_FROM)", wb)]
    lines += ["", *table(f"Cold: {args.cold_runs} jobs, each the first after a restart of clarad", c)]
    lines += ["", "Ratios (medians of this run)"]
    lines += [f"  {name}: {r:,.1f}x" for name, r in ratios.items()]
    lines += ["", f"No process left with {d.state} in its command line."]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
