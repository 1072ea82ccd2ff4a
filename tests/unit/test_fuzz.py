"""Fuzzing with a small budget in the default run (`bench/fuzz.py` runs the same targets with ten
thousand examples and more): pipeline YAML, model configurations, archives, CLI arguments."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import fuzzing

EXAMPLES = int(os.environ.get("CLARAD_FUZZ_EXAMPLES", "40"))


@pytest.mark.parametrize("target", [fuzzing.pipeline_yaml, fuzzing.model_config, fuzzing.model_archive])
def test_hostile_input_is_accepted_or_refused_in_one_line(target: fuzzing.Target) -> None:
    tally = fuzzing.Tally()
    fuzzing.run(target, EXAMPLES, tally)
    assert tally.examples >= EXAMPLES  # a failure raises; stalls are timed by bench/fuzz.py, not here


def test_any_command_line_exits_0_1_or_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No daemon here: most commands say it is not running (exit 1); tests/e2e/test_fuzz_daemon.py
    runs the same against a daemon."""
    monkeypatch.chdir(fuzzing.sandbox(tmp_path / "sandbox"))
    tally = fuzzing.Tally()
    fuzzing.run(lambda t: fuzzing.cli_arguments(t, tmp_path / "state"), EXAMPLES, tally)
    assert tally.examples >= EXAMPLES  # a failure raises; stalls are timed by bench/fuzz.py, not here
