"""Fault injection: jobs on the real Triton while clarad is SIGKILLed at random moments and at each of
its named crash points (clarad/faults.py), and tritonservers are SIGKILLed under leased jobs; clarad
is restarted after each of its deaths. At the end every payload must be accounted for.

    .venv-test/bin/python bench/faults.py                                        # 60 jobs, 12 + 6 kills: minutes
    .venv-test/bin/python bench/faults.py --jobs 200 --kills 50 --triton-kills 20  # the full run
    .venv-test/bin/python bench/faults.py --seed 7 --json                           # another draw, machine-readable

Prints: jobs submitted; terminal (by status); refused with a reason after a crash cut their taking
short; lost (neither); hung (not stopped by the end); duplicate operator runs (from the operators'
own ledger); orphan processes (this state directory's children alive after the last stop); leftovers
in /dev/shm (this state directory's regions) and /tmp (python_env_* made during the run); and an
integrity check of the database against the state directory. Exit status 1 unless all are zero/ok.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clarad import faults, leftovers, repository  # noqa: E402
from clarad.errors import ControlError  # noqa: E402
from clarad.survivors import MARK  # noqa: E402
from tests.e2e.clarad_process import DEMO, Clarad  # noqa: E402
from tests.waiting import wait_for  # noqa: E402

OPERATOR = Path(__file__).resolve().parent / "faults_operator.py"
PIPELINE = """
name: faulty
operators:
- name: infer
  command: ["{python}", "{operator}", "{ledger}", "{hold}"]
  models: [{{name: affine}}]
"""


class Run:
    def __init__(self, root: Path, rng: random.Random, hold: float) -> None:
        self.root, self.rng = root, rng
        self.state = root / "state"
        self.ledger = root / "ledger"
        self.clarad = Clarad(self.state, CLARAD_CPU_INSTANCES="2", CLARAD_MODEL_REVISIONS_KEPT="1",
                             CLARAD_JOB_TIMEOUT_SECONDS="60")
        self.hold = hold
        self.submitted: list[str] = []
        self.revisions = 0
        self.kills: Counter[str] = Counter()
        self.unreached: Counter[str] = Counter()

    # -- clarad's life ------------------------------------------------------------------------------

    def start(self, point: Optional[str] = None) -> None:
        self.clarad.env.pop("CLARAD_CRASH_POINT", None)
        if point:
            self.clarad.env["CLARAD_CRASH_POINT"] = point
        try:
            self.clarad.start()
        except AssertionError:  # it reached its crash point while starting (a child for a queued job)
            assert point is not None and self.clarad.proc is not None and self.clarad.proc.returncode == -9

    def alive(self) -> bool:
        return self.clarad.proc is not None and self.clarad.proc.poll() is None

    def kill_clarad(self) -> None:
        assert self.clarad.proc is not None
        self.clarad.proc.send_signal(signal.SIGKILL)
        self.clarad.proc.wait(30)

    def restart(self) -> None:
        if self.alive():
            self.clarad.stop(120)
        self.start()

    # -- what is dropped ---------------------------------------------------------------------------

    def submit(self, count: int) -> None:
        folder = self.state / "inbox" / "jobs" / "faulty"
        for _ in range(count):
            name = f"p{len(self.submitted):04d}"
            staged = self.root / "staging" / name
            staged.parent.mkdir(exist_ok=True)
            staged.write_text(" ".join(str(self.rng.randint(-9, 9)) for _ in range(self.rng.randint(1, 4))))
            staged.rename(folder / name)
            self.submitted.append(name)

    def new_revision(self) -> None:
        self.revisions += 1
        model = self.root / "revisions" / str(self.revisions) / "affine"
        shutil.copytree(DEMO / "models" / "affine", model)
        with open(model / "1" / "model.py", "a") as source:
            source.write(f"\n# revision {self.revisions}\n")
        inbox = self.state / "inbox" / "models"
        wait_for(lambda: not os.listdir(inbox), 120, "the previous model drop to be taken")
        model.rename(inbox / "affine")

    # -- the events ----------------------------------------------------------------------------------

    def at_random_moment(self) -> None:
        time.sleep(self.rng.uniform(0.05, 2.5))
        if self.alive():
            self.kill_clarad()
            self.kills["random moment"] += 1
        self.start()

    def at_point(self, point: str) -> None:
        if self.alive():
            self.clarad.stop(120)
        self.start(point)
        if point in ("model-swap", "revision-prune"):
            self.new_revision()
        else:
            self.submit(self.rng.randint(1, 3))
        try:
            assert self.clarad.proc is not None
            self.clarad.proc.wait(60)
            self.kills[point] += 1
        except Exception:
            self.unreached[point] += 1
            self.clarad.stop(120)
        self.start()

    def kill_triton_under_a_job(self) -> bool:
        def leased() -> Optional[int]:
            try:
                found = [i["pid"] for i in self.clarad.ask("status")["instances"] if i["job"] and i["pid"]]
            except ControlError:
                return None
            return found[0] if found else None

        try:
            pid = wait_for(leased, 30, "a leased instance")
        except AssertionError:
            return False
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        self.kills["tritonserver under a job"] += 1
        return True

    # -- the end -------------------------------------------------------------------------------------

    def settle(self, deadline: float) -> list[dict[str, Any]]:
        """Wait until the inbox is empty and no job waits or runs (or the deadline); the jobs."""
        def quiet() -> bool:
            inbox = os.listdir(self.state / "inbox" / "jobs" / "faulty") + os.listdir(self.state / "inbox" / "models")
            counts = self.clarad.ask("status")["jobs"]
            return not inbox and not counts.get("PENDING") and not counts.get("RUNNING")

        try:
            wait_for(quiet, deadline, "every job to stop")
        except AssertionError:
            pass
        return self.clarad.ask("jobs.list", limit=100000)


def refused_after_crash(state: Path) -> set[str]:
    """Payload names in rejected/: refused as drops, or moved there by recovery (jobs/<id>/input/<name>)."""
    names = set()
    for path in (state / "rejected").iterdir():
        if path.name.endswith(".reason"):
            continue
        names.update(p.name for p in (path / "input").iterdir()) if (path / "input").is_dir() else names.add(
            path.name.split("-")[-1])
    return names


def orphans(state: Path) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            marked = proc.environ().get(MARK) == str(state.resolve())
            named = str(state) in " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if (marked or named) and proc.status() != psutil.STATUS_ZOMBIE:
            found.append(f"{proc.pid} {' '.join(proc.info['cmdline'] or [])[:100]}")
    return found


def integrity(state: Path) -> list[str]:
    problems = []
    db = sqlite3.connect(f"file:{state / 'clarad.db'}?mode=ro", uri=True)
    check = db.execute("PRAGMA integrity_check").fetchone()[0]
    if check != "ok":
        problems.append(f"integrity_check: {check}")
    jobs = {row[0]: row[1:] for row in db.execute("SELECT id, state, status FROM jobs")}
    problems += [f"job {i} is {s} with status {st}" for i, (s, st) in jobs.items() if (s == "STOPPED") != bool(st)]
    problems += [f"jobs/{d} has no record" for d in os.listdir(state / "jobs") if d not in jobs]
    problems += [f"job {i} has no directory" for i in jobs if not (state / "jobs" / i).is_dir()]
    problems += [f"child {row} still recorded" for row in db.execute("SELECT pid, kind, label FROM children")]
    for name, digest in db.execute("SELECT name, digest FROM models"):
        if repository.tree_digest(state / "models" / name)[0] != digest:
            problems.append(f"models/{name} is not revision {digest[:12]}")
        kept = {row[0] for row in db.execute("SELECT digest FROM model_revisions WHERE name = ?", (name,))}
        on_disk = set(os.listdir(state / "revisions" / name)) if (state / "revisions" / name).is_dir() else set()
        if kept != on_disk:
            problems.append(f"revisions/{name}: {sorted(on_disk)} on disk, {sorted(kept)} recorded")
    problems += [f"journal {p}" for p in glob.glob(str(state / "revisions" / ".pending-*"))]
    db.close()
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--kills", type=int, default=12, help="SIGKILLs of clarad (each named crash point once, "
                                                              "the rest at random moments)")
    parser.add_argument("--triton-kills", type=int, default=6)
    parser.add_argument("--hold", type=float, default=1.0, help="longest an operator holds after its inference (s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args()
    print(f"# .venv-test/bin/python bench/faults.py --jobs {ns.jobs} --kills {ns.kills} "
          f"--triton-kills {ns.triton_kills} --hold {ns.hold:g} --seed {ns.seed}", flush=True)
    rng = random.Random(ns.seed)
    points = list(faults.POINTS)
    events = points[: ns.kills] + ["random"] * max(0, ns.kills - len(points)) + ["triton"] * ns.triton_kills
    rng.shuffle(events)
    shm_before = set(os.listdir(leftovers.SHM))
    envs_before = set(glob.glob("/tmp/python_env_*"))
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="clarad-faults-") as scratch:
        run = Run(Path(scratch), rng, ns.hold)
        run.start()
        run.clarad.drop(DEMO / "models" / "affine", "models")
        wait_for(lambda: run.clarad.ask("models.list"), 60, "the model")
        run.clarad.drop_text(PIPELINE.format(python=sys.executable, operator=OPERATOR, ledger=run.ledger, hold=ns.hold),
                             "pipelines", "faulty.yaml")
        wait_for((run.state / "inbox" / "jobs" / "faulty").is_dir, 60, "the pipeline")
        per_event = max(1, ns.jobs // max(1, len(events) + 1))
        for event in events:
            run.submit(min(per_event, ns.jobs - len(run.submitted)) if len(run.submitted) < ns.jobs else 0)
            print(f"[{time.monotonic() - began:6.0f} s] {len(run.submitted)} submitted; next: {event}", file=sys.stderr,
                  flush=True)
            if event == "random":
                run.at_random_moment()
            elif event == "triton":
                if not run.kill_triton_under_a_job():
                    run.submit(1)
                    run.kill_triton_under_a_job()
            else:
                run.at_point(event)
        if not run.alive():
            run.start()
        run.submit(ns.jobs - len(run.submitted))
        jobs = run.settle(600)
        assert run.clarad.stop(180) == 0
        took = time.monotonic() - began
        names = {job["name"]: job for job in jobs}
        stopped = [j for j in jobs if j["state"] == "STOPPED"]
        refused = refused_after_crash(run.state) - set(names)
        lost = sorted(set(run.submitted) - set(names) - refused)
        runs = Counter(tuple(line.split()[:2]) for line in run.ledger.read_text().splitlines()) if run.ledger.exists() \
            else Counter()
        shm_left = sorted(r for r in set(os.listdir(leftovers.SHM)) - shm_before
                          if r.startswith(leftovers.shm_prefix(run.state)))
        envs_left = sorted(set(glob.glob("/tmp/python_env_*")) - envs_before)
        others = [p.info["create_time"] for p in psutil.process_iter(["name", "create_time"])
                  if p.info["name"] == "tritonserver"]
        # A leftover newer than another user's running tritonserver may be that server's: clarad keeps those.
        unclaimed = [e for e in envs_left if os.path.exists(e) and all(os.lstat(e).st_ctime < t for t in others)]
        result = {
            "seconds": round(took),
            "jobs submitted": len(run.submitted),
            "terminal": len(stopped),
            "terminal by status": dict(Counter(j["status"] for j in stopped)),
            "refused with a reason after a crash": len(refused),
            "lost": len(lost),
            "hung": len(jobs) - len(stopped),
            "duplicate operator runs": sum(n - 1 for n in runs.values() if n > 1),
            "kills of clarad": sum(n for k, n in run.kills.items() if k != "tritonserver under a job"),
            "kills by kind": dict(run.kills),
            "crash points not reached": dict(run.unreached),
            "orphan processes": orphans(run.state),
            "/dev/shm leftovers": shm_left,
            "/tmp leftovers": unclaimed,
            "/tmp python_env_* made during the run and kept (another tritonserver on this host, older, may own "
            "them)": len(envs_left) - len(unclaimed),
            "tritonservers of others running": len(others),
            "integrity": integrity(run.state) or "ok",
            "lost payloads": lost,
        }
    if ns.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    bad = (result["lost"] or result["hung"] or result["duplicate operator runs"] or result["orphan processes"]
           or result["/dev/shm leftovers"] or result["/tmp leftovers"] or result["integrity"] != "ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
