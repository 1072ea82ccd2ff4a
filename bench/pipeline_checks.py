"""Checking a pipeline definition grows linearly with its size.

    .venv-test/bin/python bench/pipeline_checks.py [--runs 7]

For chains of 20, 200 and 2,000 operators (each reads from the one before, listed last first), the
median over --runs of the whole check clarad runs on a dropped definition (YAML, template, Clara's
keys, schema, names, paths, the DAG, models), in a worker thread of clarad, and of a job's DAG run to
its end (jobs.DagProgress); per operator, and as a ratio to the 20-operator chain measured in the
same run (1.0 is linear; a quadratic check would give 100 at 2,000 operators).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clarad.jobs import DagProgress  # noqa: E402
from clarad.pipelines import parse_pipeline, validate  # noqa: E402


def chain(length: int) -> str:
    ops = [f"- name: op{i}\n  command: [run]\n" + (f"  input: [{{from: op{i - 1}}}]\n" if i else "")
           for i in reversed(range(length))]
    return "api-version: 0.8.0\nname: chain\noperators:\n" + "".join(ops)


def check(text: str) -> None:
    pipeline, problems = validate(text, "chain.yaml", set(), 0, 2)
    assert pipeline is not None, problems


def run_dag(text: str) -> None:
    progress = DagProgress(parse_pipeline(text))
    while started := progress.start(4):
        for name in started:
            progress.complete(name)


def median(task, text: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        task(text)
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    print(f"# .venv-test/bin/python bench/pipeline_checks.py --runs {runs}")
    for name, task in (("check a dropped definition", check), ("parse + run its DAG", run_dag)):
        task(chain(20))  # warm-up
        base = None
        for length in (20, 200, 2000):
            took = median(task, chain(length), runs)
            per = took / length
            base = base or per
            print(f"{name:28} {length:5} operators: {took * 1000:8.1f} ms, {per * 1e6:6.1f} µs per operator, "
                  f"{per / base:4.2f} x the 20-operator cost per operator")


if __name__ == "__main__":
    main()
