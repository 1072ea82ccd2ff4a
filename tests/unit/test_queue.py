"""The waiting jobs' order and wanted models, kept between passes: at every moment they are what
``queue_order`` and a count over the whole queue would give."""

from __future__ import annotations

import random
from collections import Counter

from clarad.jobs import Priority, QueuedJob, queue_order
from clarad.pipelines import parse_pipeline
from clarad.queue import JobQueue
from tests.unit.driving import pipeline_text

PIPELINES = [parse_pipeline(pipeline_text(models)) for models in (["a"], ["a", "b"], ["c"], [])]


def test_the_kept_order_and_wanted_models_are_those_of_the_whole_queue_at_every_moment() -> None:
    for seed in range(30):
        rng = random.Random(seed)
        queue, reference, now, aging = JobQueue(), [], 1000.0, rng.choice([5.0, 10.0, 60.0])
        gone: list[QueuedJob] = []
        for step in range(150):
            move = rng.random()
            if move < 0.45 or not reference:  # a job arrives (or an old one is queued again)
                created = now - (rng.uniform(0, 100) if rng.random() < 0.3 else 0.0)
                job = (gone.pop(rng.randrange(len(gone))) if gone and rng.random() < 0.3 else
                       QueuedJob(f"j{seed}-{step}", "payload", rng.choice(PIPELINES), rng.choice(list(Priority)), created))
                queue.add(job)
                reference.append(job)
            elif move < 0.7:  # placed, dropped or canceled (several at once, as a removed model drops its jobs)
                for job in rng.sample(reference, rng.randint(1, min(3, len(reference)))):
                    queue.remove(job)
                    reference.remove(job)
                    gone.append(job)
            else:  # time passes, across aging boundaries or not
                now += rng.choice([0.0, 0.5, aging / 3, aging, 2.5 * aging])
            if rng.random() < 0.05:
                aging = rng.choice([5.0, 10.0, 60.0])  # the setting is read again
            if rng.random() < 0.5:  # read at some steps only, as passes do: changes pile up in between
                assert [j.id for j in queue.ordered(now, aging)] == [j.id for j in queue_order(reference, now, aging)], \
                    f"seed {seed}, step {step}"
            assert queue.wanted == Counter(name for job in reference for name in job.models)
            assert {name: {j.id for j in queue.wanting(name)} for name in "abc"} == {
                name: {j.id for j in reference if name in j.models} for name in "abc"}
            assert len(queue) == len(reference) and all(job in queue for job in reference)


def test_a_low_job_overtakes_newer_normal_ones_when_its_waiting_raises_it_without_a_job_arriving() -> None:
    queue = JobQueue()
    low = QueuedJob("low", "p", PIPELINES[0], Priority.LOW, 0.0)
    normal = QueuedJob("normal", "p", PIPELINES[0], Priority.NORMAL, 50.0)
    queue.add(low)
    queue.add(normal)
    assert [job.id for job in queue.ordered(60.0, 100.0)] == ["normal", "low"]
    assert [job.id for job in queue.ordered(99.0, 100.0)] == ["normal", "low"]
    assert [job.id for job in queue.ordered(100.0, 100.0)] == ["low", "normal"]  # both normal now: oldest first


def test_a_removed_job_leaves_the_order_and_its_models_the_count() -> None:
    queue = JobQueue()
    first, second = (QueuedJob(name, "p", PIPELINES[1], Priority.NORMAL, at) for name, at in (("x", 1.0), ("y", 2.0)))
    queue.add(first)
    queue.add(second)
    assert queue.wanted == {"a": 2, "b": 2}
    queue.ordered(3.0, 60.0)
    queue.remove(first)
    assert ([job.id for job in queue.ordered(3.0, 60.0)], dict(queue.wanted)) == (["y"], {"a": 1, "b": 1})
    assert queue.find("x") is None and queue.find("y") is second and first not in queue
