"""A 2,000-operator chain is checked in time linear in its size: per operator, it costs about what a
20-operator chain does (a quadratic check would cost 100 times as much per operator, a cubic one
10,000 times). Measured as a ratio in the same run, never against a clock."""

from __future__ import annotations

import time
from collections.abc import Callable

from clarad.jobs import DagProgress
from clarad.pipelines import parse_pipeline, validate


def chain(length: int) -> str:
    """op0 <- op1 <- ... : each operator reads from the one before, listed last first (the worst
    order for a check that scans for what is ready)."""
    ops = [f"- name: op{i}\n  command: [run]\n" + (f"  input: [{{from: op{i - 1}}}]\n" if i else "")
           for i in reversed(range(length))]
    return "api-version: 0.8.0\nname: chain\noperators:\n" + "".join(ops)


def per_operator(check: Callable[[str], object], length: int) -> float:
    text = chain(length)
    best = float("inf")
    for _ in range(3):
        began = time.process_time()
        check(text)
        best = min(best, time.process_time() - began)
    return best / length


def accept(text: str) -> None:
    pipeline, problems = validate(text, "chain.yaml", set(), 0, 2)
    assert pipeline is not None and problems == []


def run_to_the_end(text: str) -> None:
    pipeline = parse_pipeline(text)
    progress = DagProgress(pipeline)
    finished = 0
    while started := progress.start(4):
        for name in started:
            progress.complete(name)
            finished += 1
    assert finished == len(pipeline.operators)


def test_a_2000_operator_chain_is_accepted_as_quickly_per_operator_as_a_20_operator_one() -> None:
    per_operator(accept, 20)  # warm caches (pydantic's validators, imports)
    ratio = per_operator(accept, 2000) / per_operator(accept, 20)
    assert ratio < 10, f"2,000 operators cost {ratio:.1f} times as much per operator as 20"


def test_running_a_2000_operator_chain_is_linear_too() -> None:
    per_operator(run_to_the_end, 20)
    ratio = per_operator(run_to_the_end, 2000) / per_operator(run_to_the_end, 20)
    assert ratio < 10, f"2,000 operators cost {ratio:.1f} times as much per operator as 20"
