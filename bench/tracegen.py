"""A trace of jobs for the placement benchmarks: pure and seeded, so the replay on the real Triton
(bench/trace_replay.py) and the simulation (bench/simulate.py) consume the same one.

- Models: each takes ``load_seconds`` to load and holds ``megabytes`` (drawn per model in a range).
- Pipelines: one operator each, asking for 1 to ``max_per_pipeline`` models; the models are drawn by
  a Zipf popularity of their own, so popular models (shared backbones) appear in several pipelines
  and the model sets overlap.
- Jobs: pipelines drawn by Zipf popularity (exponent ``zipf``); arrivals from a two-state
  Markov-modulated Poisson process (calm at ``rate`` jobs/s, bursts at ``burst_factor`` × that;
  exponential sojourns of mean ``calm_seconds`` and ``burst_seconds``); each job runs its
  pipeline's ``run_seconds`` once its models are ready.

``lower_bound`` is the fewest loads any placement can make for a trace (see its docstring).
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Model:
    name: str
    load_seconds: float
    megabytes: int


@dataclass(frozen=True)
class Pipeline:
    name: str
    models: tuple[str, ...]
    run_seconds: float


@dataclass(frozen=True)
class Job:
    at: float  # seconds from the trace's start
    pipeline: int  # index into Trace.pipelines


@dataclass(frozen=True)
class Trace:
    models: tuple[Model, ...]
    pipelines: tuple[Pipeline, ...]
    jobs: tuple[Job, ...]

    def model_sets(self) -> list[tuple[str, ...]]:
        """The models each job wants, in arrival order."""
        return [self.pipelines[job.pipeline].models for job in self.jobs]

    def wanted(self) -> int:
        """Loads when every job loads all its models (a fresh instance per job)."""
        return sum(len(models) for models in self.model_sets())


@dataclass(frozen=True)
class Shape:
    """What a trace looks like; the defaults are the reference trace of docs/benchmarks.md."""

    models: int = 12
    pipelines: int = 10
    jobs: int = 100
    max_per_pipeline: int = 3
    zipf: float = 1.1  # pipeline popularity exponent (and model popularity within pipelines)
    rate: float = 1.0  # jobs per second when calm
    burst_factor: float = 6.0
    calm_seconds: float = 20.0
    burst_seconds: float = 4.0
    load_seconds: tuple[float, float] = (0.2, 0.6)
    megabytes: tuple[int, int] = (10, 30)
    run_seconds: tuple[float, float] = (0.2, 1.0)


def zipf_weights(count: int, exponent: float) -> list[float]:
    return [1 / (rank + 1) ** exponent for rank in range(count)]


def generate(shape: Shape = Shape(), seed: int = 7) -> Trace:
    rng = random.Random(seed)
    models = tuple(Model(f"m{n}", round(rng.uniform(*shape.load_seconds), 3), rng.randint(*shape.megabytes))
                   for n in range(shape.models))
    popularity = zipf_weights(shape.models, shape.zipf)
    pipelines = []
    for p in range(shape.pipelines):
        size = rng.randint(1, min(shape.max_per_pipeline, shape.models))
        chosen: list[str] = []
        while len(chosen) < size:
            name = models[rng.choices(range(shape.models), popularity)[0]].name
            if name not in chosen:
                chosen.append(name)
        pipelines.append(Pipeline(f"p{p}", tuple(sorted(chosen, key=lambda n: int(n[1:]))),
                                  round(rng.uniform(*shape.run_seconds), 3)))
    return Trace(models, tuple(pipelines), tuple(_arrivals(shape, rng)))


def _arrivals(shape: Shape, rng: random.Random) -> list[Job]:
    """A two-state Markov-modulated Poisson process; exponential sojourns make the state's switch
    memoryless, so a draw that crosses a switch is simply redrawn from the switch at the new rate."""
    weights = zipf_weights(shape.pipelines, shape.zipf)
    jobs: list[Job] = []
    at, bursting = 0.0, False
    switch = rng.expovariate(1 / shape.calm_seconds)
    while len(jobs) < shape.jobs:
        rate = shape.rate * (shape.burst_factor if bursting else 1.0)
        step = rng.expovariate(rate)
        if at + step > switch:
            at, bursting = switch, not bursting
            switch = at + rng.expovariate(1 / (shape.burst_seconds if bursting else shape.calm_seconds))
            continue
        at += step
        jobs.append(Job(round(at, 4), rng.choices(range(shape.pipelines), weights)[0]))
    return jobs


def lower_bound(sets: Sequence[Sequence[str]], instances: int, max_models: int) -> int:
    """The fewest loads any placement can make for jobs started in this order on ``instances``
    instances holding at most ``max_models`` models each: Belady's furthest-next-use eviction on one
    pooled cache of ``instances × max_models`` models, fed the jobs' models one by one.

    Why it bounds every placement from below: take any run, and look at the union of the models
    its instances hold. The union never holds more than the pooled capacity; a model enters it only
    through a load (so its entries are at most the run's loads); and each job's models are all in
    it when the job starts. So the union is a valid schedule of the pooled cache for this request
    sequence (a cache that holds a job's models at once certainly holds each when it is asked for
    one by one), whose misses are at most the run's loads; Belady's eviction has the fewest misses
    of any schedule of one cache (Belady 1966; Mattson et al. 1970). The bound ignores that a model
    wanted by two jobs running at once must be loaded twice, and that jobs cannot share one
    instance: an achievable count may lie above it.
    """
    requests = [name for models in sets for name in dict.fromkeys(models)]
    uses: dict[str, list[int]] = {}
    for position, name in enumerate(requests):
        uses.setdefault(name, []).append(position)
    capacity = instances * max_models

    def next_use(name: str, after: int) -> int:
        positions = uses[name]
        at = bisect.bisect_right(positions, after)
        return positions[at] if at < len(positions) else len(requests)

    cache: set[str] = set()
    misses = 0
    for position, name in enumerate(requests):
        if name in cache:
            continue
        misses += 1
        if len(cache) >= capacity:
            cache.remove(max(cache, key=lambda held: (next_use(held, position), held)))
        cache.add(name)
    return misses
