"""What the oracle baseline knows of the jobs to come (clarad.foresight), how the scheduler hands it
to placement from each job's arrival position, and the recent demand it hands to clarad's own rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clarad.errors import ConfigError
from clarad.foresight import Foresight
from tests.unit.driving import Harness, drive, pipeline_text


def test_next_use_counts_the_jobs_until_the_next_one_wanting_each_model() -> None:
    foresight = Foresight([["a", "b"], ["c"], ["b", "b"], ["a"]])
    assert dict(foresight.after(0)) == {"a": 3, "b": 2, "c": 1}
    assert dict(foresight.after(2)) == {"a": 1}
    assert "c" not in foresight.after(1) and len(foresight.after(3)) == 0


def test_a_future_file_that_is_not_a_list_of_model_lists_is_refused_naming_it(tmp_path: Path) -> None:
    wrong = tmp_path / "future.json"
    wrong.write_text(json.dumps([["a"], "b"]))
    with pytest.raises(ConfigError, match=f"placement_future {wrong}: not a JSON list of lists of model names"):
        Foresight.read(wrong)
    wrong.write_text("[[")
    with pytest.raises(ConfigError, match=f"placement_future {wrong}: Expecting"):
        Foresight.read(wrong)


@drive
async def test_the_oracle_policy_unloads_the_model_wanted_furthest_after_the_job_s_arrival(tmp_path: Path) -> None:
    future = tmp_path / "future.json"
    future.write_text(json.dumps([["a", "b"], ["c"], ["b"], ["a"]]))
    async with Harness(tmp_path / "state", cpu_instances=1, max_models=2) as h:
        for name in "abc":
            h.add_model(name)
        h.settings.placement_policy = "oracle"
        h.scheduler.foresight = Foresight.read(future)
        first = h.submit(pipeline_text(["a", "b"]))
        h.scheduler.run_pass(1000.0)
        await h.ended(h.scheduler.running[first])
        second = h.submit(pipeline_text(["c"]))
        h.scheduler.run_pass(1001.0)
        decision = h.scheduler.running[second].decision
        assert (decision.load, decision.unload) == (("c",), ("a",))  # b is wanted one job later, a two
        await h.ended(h.scheduler.running[second])
        assert h.scheduler.arrivals == {}  # forgotten once placed


@drive
async def test_placement_is_told_the_share_of_recent_jobs_that_wanted_each_model(tmp_path: Path) -> None:
    async with Harness(tmp_path, cpu_instances=1, max_models=2) as h:
        for name in "ab":
            h.add_model(name)
        for models in (["a", "b"], ["a"]):
            job = h.submit(pipeline_text(models))
            h.scheduler.run_pass(1000.0)
            await h.ended(h.scheduler.running[job])
        assert h.scheduler.world(h.store.model_digests()).demand == {"a": 1.0, "b": 0.5}
