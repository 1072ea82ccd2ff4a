"""How long `clarad status` takes while a payload of 100,000 files is dropped: moved in (mv), or copied
in (cp -r), against the same daemon idle, in the same run.

    .venv-test/bin/python bench/big_payload.py                 # 100,000 files: about two minutes on 2 cores
    .venv-test/bin/python bench/big_payload.py --files 20000   # a quick look

For each way, status requests are sent back to back from the drop until the job exists (and for at
least 5 s), and the script prints the median, p90 and slowest answer, and the ratio of the median
to the idle median; also how long the payload took to become a job.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clarad import control  # noqa: E402
from tests.e2e.clarad_process import Clarad  # noqa: E402
from tests.waiting import wait_for  # noqa: E402


def make_payload(where: Path, files: int) -> Path:
    for n in range(files):
        folder = where / f"series{n // 1000:03d}"
        if n % 1000 == 0:
            folder.mkdir(parents=True)
        (folder / f"{n:06d}.dcm").write_bytes(b"\0" * 64)
    return where


def latencies(path: Path, until: threading.Event, at_least: float) -> list[float]:
    taken: list[float] = []
    began = time.monotonic()
    while not until.is_set() or time.monotonic() - began < at_least:
        start = time.monotonic()
        control.request(path, "status", timeout=120)
        taken.append(time.monotonic() - start)
    return taken


def summary(label: str, taken: list[float], idle: float) -> str:
    ordered = sorted(taken)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    median = statistics.median(ordered)
    return (f"{label:<22} {len(ordered):>6} {median * 1000:>9.1f} {p90 * 1000:>9.1f} {ordered[-1] * 1000:>9.1f} "
            f"{median / idle:>9.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    ns = parser.parse_args()
    print(f"# .venv-test/bin/python bench/big_payload.py --files {ns.files}")
    with tempfile.TemporaryDirectory(prefix="clarad-big-") as scratch:
        root = Path(scratch)
        clarad = Clarad(root / "state").start()
        try:
            clarad.drop_text("name: p\noperators:\n- name: op\n  command: [/bin/true]\n", "pipelines", "p.yaml")
            wait_for(lambda: (clarad.state / "inbox" / "jobs" / "p").is_dir(), 30, "the pipeline")
            sock = control.socket_path(clarad.state)
            idle_stop = threading.Event()
            idle_stop.set()
            idle = latencies(sock, idle_stop, 3.0)
            idle_median = statistics.median(idle)
            rows = [summary("idle", idle, idle_median)]
            for way in ("mv", "cp -r"):
                source = make_payload(root / f"source-{way[:2]}" / "scan", ns.files)
                known = {job["id"] for job in clarad.ask("jobs.list")}
                done = threading.Event()
                result: list[list[float]] = []
                probe = threading.Thread(target=lambda: result.append(latencies(sock, done, 5.0)))
                target = clarad.state / "inbox" / "jobs" / "p" / f"scan-{way[:2]}"
                began = time.monotonic()
                probe.start()
                if way == "mv":
                    source.rename(target)
                else:
                    subprocess.run(["cp", "-r", str(source), str(target)], check=True)
                clarad.wait_new_job(known, timeout=600)
                to_job = time.monotonic() - began
                done.set()
                probe.join()
                rows.append(summary(f"{way} ({to_job:.1f} s to job)", result[0], idle_median))
        finally:
            clarad.stop_if_running()
    print(f"{'status during':<22} {'asks':>6} {'median ms':>9} {'p90 ms':>9} {'max ms':>9} {'x idle':>9}")
    print("\n".join(rows))
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
