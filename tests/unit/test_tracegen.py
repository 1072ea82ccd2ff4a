"""The benchmarks' trace generator (bench/tracegen.py): seeded, bursty, skewed and overlapping as it
says, and a lower bound on loads that no policy of the simulation (bench/simulate.py) goes under."""

from __future__ import annotations

import statistics
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import simulate  # noqa: E402
import tracegen  # noqa: E402


def test_a_seed_gives_one_trace() -> None:
    assert tracegen.generate(seed=3) == tracegen.generate(seed=3)
    assert tracegen.generate(seed=3).jobs != tracegen.generate(seed=4).jobs


def test_arrivals_come_in_bursts_and_popularity_is_skewed() -> None:
    trace = tracegen.generate(tracegen.Shape(jobs=5000), seed=1)
    gaps = [b.at - a.at for a, b in zip(trace.jobs, trace.jobs[1:])]
    assert statistics.stdev(gaps) / statistics.mean(gaps) > 1.2  # a Poisson stream's is 1
    counts = Counter(job.pipeline for job in trace.jobs)
    assert counts.most_common(1)[0][0] == 0 and counts[0] > 3 * counts[len(trace.pipelines) - 1]
    uses = Counter(name for pipeline in trace.pipelines for name in pipeline.models)
    assert max(uses.values()) >= 3  # model sets overlap


@pytest.mark.parametrize(("sets", "instances", "max_models", "fewest"), [
    ([["a"], ["b"], ["a"], ["c"], ["a"]], 1, 2, 3),  # c evicts b (never wanted again), not a
    ([["a"], ["b"], ["a"], ["c"], ["a"]], 1, 1, 5),
    ([["a", "b"], ["c"], ["a", "b"]], 2, 2, 3),  # pooled: four slots hold all three
])
def test_the_lower_bound_is_belady_on_the_pooled_capacity(sets: list[list[str]], instances: int, max_models: int,
                                                          fewest: int) -> None:
    assert tracegen.lower_bound(sets, instances, max_models) == fewest


def test_no_policy_loads_less_than_the_lower_bound() -> None:
    trace = tracegen.generate(tracegen.Shape(jobs=80, models=10, pipelines=8), seed=5)
    bound = tracegen.lower_bound(trace.model_sets(), 2, 3)
    for policy in simulate.POLICIES:
        result = simulate.simulate(trace, policy, gpus=2, per_gpu=1, max_models=3, start_seconds=1.0)
        assert result.in_order and len(result.ready) == 80
        assert bound <= result.loads <= trace.wanted(), policy
