"""Benchmark: what running an operator as a container costs, as a ratio to the same operator as a
host process, measured in the same run.

``clarad run`` with two one-operator pipelines whose operator runs ``true``: one as a host process
(in its bwrap namespace where the host allows one), one in a busybox image through podman (built
offline, tests/e2e/images.py). Jobs alternate between the two, one at a time, so that the machine's
load falls on both alike. Each figure is the operator's time as clarad records it, from its start to
its end: for the container, the image check, ``podman run`` to the program's exit, the removal.

    .venv-test/bin/python bench/containers.py               # 30 jobs of each
    .venv-test/bin/python bench/containers.py --jobs 3      # a quick check
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.e2e import images  # noqa: E402
from tests.e2e.clarad_process import Clarad  # noqa: E402
from tests.e2e.test_container_operators import add_pipeline, payload, start_job  # noqa: E402


def operator_seconds(daemon: Clarad, pipeline: str, work: Path, n: int) -> float:
    job = daemon.wait_job_stopped(start_job(daemon, pipeline, payload(work / f"{pipeline}-{n}", {"a": "a"})))
    assert job["status"] == "HEALTHY", job["reason"]
    op = job["operators"][0]
    return float(op["stopped_at"] - op["started_at"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=30)
    args = parser.parse_args()
    if images.PODMAN is None:
        print(images.NO_PODMAN)
        return 1
    repository, tag = images.image("busybox", {}).rsplit(":", 1)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        daemon = Clarad(work / "state").start()
        try:
            add_pipeline(daemon, {"operators": [{"name": "a", "command": ["true"]}]}, "host")
            add_pipeline(daemon, {"operators": [{"name": "a", "container": {
                "image": repository, "tag": tag, "command": ["true"]}}]}, "boxed")
            times: dict[str, list[float]] = {"host": [], "boxed": []}
            for n in range(args.jobs + 1):  # the first of each warms up
                for pipeline, seen in times.items():
                    took = operator_seconds(daemon, pipeline, work, n)
                    if n:
                        seen.append(took)
        finally:
            daemon.stop_if_running()
    host, boxed = statistics.median(times["host"]), statistics.median(times["boxed"])
    print(f"{args.jobs} jobs each; operator start to end, median: host process {host * 1000:.0f} ms, "
          f"container {boxed * 1000:.0f} ms; container / host {boxed / host:.1f}x "
          f"(p90: {_p90(times['host']) * 1000:.0f} ms, {_p90(times['boxed']) * 1000:.0f} ms)")
    return 0


def _p90(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * 0.9))]


if __name__ == "__main__":
    raise SystemExit(main())
