"""The Triton metrics targets file for Prometheus, and the page at / of clarad's metrics endpoint."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from clarad.metrics import Metrics, Snapshot
from clarad.targets import Target, TargetsFile, render
from clarad.triton import LaunchSpec, Ports, argv
from tests.e2e.clarad_process import free_port

A = Target("i-a", "cpu0", "127.0.0.1:8102")
B = Target("i-b", "gpu0", "127.0.0.1:8202")


def test_each_instance_is_a_group_labelled_with_clarads_names() -> None:
    assert json.loads(render([B, A])) == [
        {"targets": ["127.0.0.1:8102"], "labels": {"clarad_instance": "i-a", "clarad_slot": "cpu0"}},
        {"targets": ["127.0.0.1:8202"], "labels": {"clarad_instance": "i-b", "clarad_slot": "gpu0"}},
    ]


def test_the_file_is_replaced_whole_and_only_when_the_list_changes(tmp_path: Path) -> None:
    path = tmp_path / "run" / "triton-targets.json"
    targets = TargetsFile(path)
    targets.publish([A])
    first = path.stat()
    assert json.loads(path.read_text())[0]["targets"] == ["127.0.0.1:8102"]
    assert first.st_mode & 0o777 == 0o644
    targets.publish([A])
    assert path.stat().st_ino == first.st_ino  # unchanged: not rewritten
    targets.publish([A, B])
    assert path.stat().st_ino != first.st_ino  # a new file renamed over the old: never half written
    assert len(json.loads(path.read_text())) == 2
    assert [p.name for p in path.parent.iterdir()] == ["triton-targets.json"]


def test_an_unwritable_place_is_one_warning_then_written_once_possible(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    targets = TargetsFile(blocker / "triton-targets.json")
    with caplog.at_level(logging.WARNING, logger="clarad"):
        targets.publish([A])
        targets.publish([A, B])
    assert len(caplog.records) == 1 and "could not be written" in caplog.records[0].getMessage()
    blocker.unlink()
    targets.publish([A, B])
    assert len(json.loads((blocker / "triton-targets.json").read_text())) == 2


def test_publishing_a_snapshot_lists_its_instances(tmp_path: Path) -> None:
    metrics = Metrics(TargetsFile(tmp_path / "t.json"))
    metrics.publish(Snapshot(triton=(A,)))
    assert json.loads((tmp_path / "t.json").read_text())[0]["labels"]["clarad_instance"] == "i-a"
    metrics.publish(Snapshot())
    assert json.loads((tmp_path / "t.json").read_text()) == []


def test_every_tritonserver_serves_its_metrics_on_loopback_at_its_own_port(tmp_path: Path) -> None:
    args = argv(LaunchSpec(Path("tritonserver"), tmp_path), tmp_path, Ports(1, 2, 3), "p")
    assert {"--allow-metrics=true", "--metrics-address=127.0.0.1", "--metrics-port=3"} <= set(args)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_landing_page_metrics_and_nothing_else(tmp_path: Path) -> None:
    metrics = Metrics(TargetsFile(tmp_path / "t.json"))
    metrics.publish(Snapshot(triton=(Target("i-<x>", "cpu0", "127.0.0.1:8102"),)))
    port = free_port()
    server = metrics.serve("127.0.0.1", port)
    try:
        status, page = get(f"http://127.0.0.1:{port}/")
        assert status == 200 and 'href="/metrics"' in page
        assert "i-&lt;x&gt;" in page and "http://127.0.0.1:8102/metrics" in page and str(tmp_path / "t.json") in page
        status, text = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "clarad_jobs{" in text
        assert get(f"http://127.0.0.1:{port}/other")[0] == 404
    finally:
        server.shutdown()
