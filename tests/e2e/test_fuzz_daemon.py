"""Fuzzing a running daemon with a small budget (`bench/fuzz.py` runs ten thousand examples and more):
raw control-socket requests and CLI arguments against a real `clarad run`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import fuzzing
from tests.e2e.clarad_process import Clarad
from tests.waiting import wait_for

EXAMPLES = int(os.environ.get("CLARAD_FUZZ_EXAMPLES", "40"))


@pytest.fixture(scope="module")
def clarad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clarad]:
    daemon = Clarad(tmp_path_factory.mktemp("fuzz") / "state").start()
    daemon.drop_text(fuzzing.pipeline_for_fuzzing(), "pipelines", "p.yaml")
    wait_for(lambda: daemon.ask("pipelines.list"), 30, "the pipeline")
    yield daemon
    daemon.stop_if_running()


def test_any_control_request_is_answered_and_the_daemon_stays(clarad: Clarad, tmp_path: Path) -> None:
    tally = fuzzing.Tally()
    fuzzing.run(lambda t: fuzzing.control_messages(t, clarad.state, fuzzing.sandbox(tmp_path / "sandbox")),
                EXAMPLES, tally)
    assert tally.examples >= EXAMPLES  # a failure raises; stalls are timed by bench/fuzz.py, not here
    assert "Traceback" not in clarad.log.read_text()


def test_any_command_line_against_the_daemon_exits_0_1_or_2(clarad: Clarad, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(fuzzing.sandbox(tmp_path / "sandbox"))
    tally = fuzzing.Tally()
    fuzzing.run(lambda t: fuzzing.cli_arguments(t, clarad.state), EXAMPLES, tally)
    assert tally.examples >= EXAMPLES  # a failure raises; stalls are timed by bench/fuzz.py, not here
