"""The clarad command: pure formatting, argument parsing, and exit codes without a daemon."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from clarad.cli import (
    build_parser,
    format_job,
    format_jobs,
    format_model,
    format_models,
    format_pipelines,
    format_status,
    main,
)

T = 1_700_000_000.0
WHEN = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(T))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("CLARAD_"):
            monkeypatch.delenv(key)


def status(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "version": "0.1.0", "pid": 4242, "uptime_seconds": 61.4, "state_dir": "/var/lib/clara",
        "gpus": [{"index": 0, "name": "NVIDIA H100"}], "slots": ["gpu0-0", "gpu0-1"],
        "triton": "/opt/tritonserver/bin/tritonserver",
        "instances": [
            {"id": "triton-1", "slot": "gpu0-1", "state": "idle", "job": None, "grpc": "127.0.0.1:8001",
             "http": "127.0.0.1:8000", "pid": 7, "models": {"zeta": "d1", "affine": "d2"}, "loads": {}},
            {"id": "triton-0", "slot": "gpu0-0", "state": "starting", "job": "abc", "grpc": None, "http": None,
             "pid": None, "models": {}, "loads": {}},
        ],
        "queue": [], "jobs": {"PENDING": 2, "STOPPED": 4, "HEALTHY": 3, "FAULTED": 1}, "models": 2, "pipelines": 1,
    }
    return {**base, **changes}


def test_format_status_summarises_the_daemon() -> None:
    lines = format_status(status()).splitlines()
    assert lines[0] == "clarad 0.1.0 (pid 4242), up 61 s, state in /var/lib/clara"
    assert lines[1] == "GPUs: NVIDIA H100; slots: gpu0-0, gpu0-1"
    assert lines[2] == "tritonserver: /opt/tritonserver/bin/tritonserver"
    assert lines[3] == "models: 2, pipelines: 1"
    assert lines[4] == "jobs: pending 2, running 0, healthy 3, faulted 1, canceled 0"
    assert lines[5] == "instances:"
    assert lines[6].split() == ["ID", "SLOT", "STATE", "JOB", "GRPC", "MODELS"]
    assert lines[7].split() == ["triton-1", "gpu0-1", "idle", "-", "127.0.0.1:8001", "affine,", "zeta"]
    assert lines[8].split() == ["triton-0", "gpu0-0", "starting", "abc", "-", "-"]


def test_format_status_without_gpus_or_instances() -> None:
    text = format_status(status(gpus=[], instances=[], slots=["cpu-0"]))
    assert "GPUs: none (CPU instances); slots: cpu-0" in text
    assert text.endswith("instances:\n  (none)")


def test_format_models_shows_short_revision_and_human_size() -> None:
    models = [
        {"name": "affine", "id": "a" * 32, "digest": "0123456789abcdef" * 4, "backend": "python", "type": "unknown",
         "versions": [1, 3], "size": 1536, "source": "inbox:affine", "added_at": T},
        {"name": "tiny", "id": "b" * 32, "digest": "f" * 64, "backend": "tensorrt_plan", "type": "tensorrt",
         "versions": [1], "size": 100, "source": "inbox:tiny", "added_at": None},
    ]
    header, first, second = format_models(models).splitlines()
    assert header.split() == ["NAME", "ID", "TYPE", "BACKEND", "VERSIONS", "REVISION", "SIZE", "ADDED"]
    assert first.split() == ["affine", "a" * 32, "unknown", "python", "1,3", "0123456789ab", "1.5", "KiB",
                             *WHEN.split()]
    assert second.split() == ["tiny", "b" * 32, "tensorrt", "tensorrt_plan", "1", "ffffffffffff", "100", "B", "-"]


def test_format_models_columns_line_up() -> None:
    models = [{"name": n, "id": i, "digest": "d", "backend": "python", "type": "unknown", "versions": [1], "size": 1,
               "added_at": T}
              for n, i in (("a", "X1"), ("much_longer_name", "X2"))]
    header, first, second = format_models(models).splitlines()
    assert header.index("ID") == first.index("X1") == second.index("X2") == len("much_longer_name  ")


def test_empty_lists_say_none() -> None:
    assert format_models([]) == format_pipelines([]) == format_jobs([]) == "(none)"


def test_format_pipelines() -> None:
    header, row = format_pipelines([{"name": "seg", "id": "c" * 32, "definition": "...", "added_at": T}]).splitlines()
    assert header.split() == ["NAME", "ID", "ADDED"]
    assert row.split() == ["seg", "c" * 32, *WHEN.split()]


def job(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "d" * 32, "pipeline": "seg", "name": "scan-1", "priority": "normal", "state": "STOPPED",
        "status": "FAULTED", "reason": "operator b exited with code 2", "instance": "triton-0",
        "models": {"affine": "0123456789abcdef"}, "created_at": T, "started_at": T, "stopped_at": None,
        "directory": "/var/lib/clara/jobs/" + "d" * 32,
        "operators": [
            {"job_id": "d" * 32, "name": "a", "position": 0, "state": "COMPLETED", "reason": None, "exit_code": 0},
            {"job_id": "d" * 32, "name": "b", "position": 1, "state": "FAULTED", "reason": "exited with code 2",
             "exit_code": 2},
            {"job_id": "d" * 32, "name": "c", "position": 2, "state": "FAULTED", "reason": None, "exit_code": None},
        ],
    }
    return {**base, **changes}


def test_format_jobs() -> None:
    header, row, pending = format_jobs([job(), job(id="e" * 32, state="PENDING", status=None)]).splitlines()
    assert header.split() == ["ID", "PIPELINE", "NAME", "STATE", "STATUS", "CREATED"]
    assert row.split() == ["d" * 32, "seg", "scan-1", "STOPPED", "FAULTED", *WHEN.split()]
    assert pending.split()[3:5] == ["PENDING", "-"]


def test_format_job_shows_reason_models_and_operators() -> None:
    lines = format_job(job()).splitlines()
    assert lines[:7] == [
        f"job {'d' * 32} (scan-1) of pipeline seg",
        "state: STOPPED FAULTED",
        "reason: operator b exited with code 2",
        "priority: normal, instance: triton-0",
        f"created {WHEN}, started {WHEN}, stopped -",
        "models: affine@0123456789ab",
        f"directory: /var/lib/clara/jobs/{'d' * 32}",
    ]
    assert lines[7] == "operators:"
    assert lines[8].split() == ["NAME", "STATE", "EXIT", "REASON"]
    assert lines[9].split() == ["a", "COMPLETED", "0"]
    assert lines[10].split() == ["b", "FAULTED", "2", "exited", "with", "code", "2"]
    assert lines[11].split() == ["c", "FAULTED", "-"]


def test_format_job_of_a_pending_job_has_no_reason_line() -> None:
    text = format_job(job(state="PENDING", status=None, reason=None, instance=None, models={}, started_at=None))
    assert "state: PENDING\n" in text
    assert "reason:" not in text
    assert "instance: -" in text and "models: -" in text


def test_parser_reads_jobs_show_with_json() -> None:
    ns = build_parser().parse_args(["jobs", "show", "abc123", "--json", "--state-dir", "/tmp/x"])
    assert (ns.command, ns.action, ns.id, ns.json, ns.state_dir) == ("jobs", "show", "abc123", True, Path("/tmp/x"))
    assert callable(ns.func)


def test_parser_reads_jobs_logs_with_an_operator() -> None:
    ns = build_parser().parse_args(["jobs", "logs", "abc", "seg"])
    assert (ns.id, ns.operator, ns.json) == ("abc", "seg", False)


def test_parser_refuses_unknown_command() -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["jobs", "explode"])
    assert exited.value.code == 2


def test_config_check_prints_state_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", "--state-dir", str(tmp_path)]) == 0
    assert f'state_dir = "{tmp_path}"' in capsys.readouterr().out.splitlines()


def test_config_check_prints_values_from_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "clarad.toml"
    config.write_text("cpu_instances = 3\n", encoding="utf-8")
    assert main(["config", "check", "--state-dir", str(tmp_path), "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert f'state_dir = "{tmp_path}"' in out
    assert "cpu_instances = 3" in out


def test_config_check_refusal_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "clarad.toml"
    config.write_text("cpu_instances = 0\n", encoding="utf-8")
    assert main(["config", "check", "--config", str(config)]) == 1
    assert capsys.readouterr().err.startswith("clarad: cpu_instances: ")


def test_status_without_a_daemon_exits_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--state-dir", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("clarad: clarad is not running")


def test_parser_takes_several_models_to_remove_and_a_type_to_add() -> None:
    removing = build_parser().parse_args(["models", "remove", "a", "b", "--force"])
    assert (removing.model, removing.force) == (["a", "b"], True)
    adding = build_parser().parse_args(["models", "add", "/m", "-t", "TensorRT"])
    assert adding.type == "TensorRT"


def test_format_model_shows_its_clara_type_and_metadata() -> None:
    model = {"name": "seg", "id": "a" * 32, "digest": "d" * 64, "type": "tensorrt", "backend": "tensorrt_plan",
             "versions": [1], "size": 10, "added_at": T, "source": "api:ipv4:127.0.0.1:5000", "path": "/m/seg",
             "pipelines": [], "instances": [], "revisions": [], "metadata": {"Owner": "radiology"}}
    text = format_model(model)
    assert "type: tensorrt, backend: tensorrt_plan" in text
    assert "metadata: Owner=radiology" in text


def test_parser_reads_jobs_create_with_parameters_and_a_pipeline_id() -> None:
    ns = build_parser().parse_args(["jobs", "create", "0123abcd", "/tmp/x", "--param", "a=1", "--param", "b=x=y"])
    assert (ns.pipeline, ns.param) == ("0123abcd", ["a=1", "b=x=y"])
    from clarad.cli import _params
    assert _params(ns.param) == {"a": "1", "b": "x=y"}


def test_a_parameter_without_a_value_is_refused_by_the_cli() -> None:
    from clarad.cli import _params
    from clarad.errors import ClaradError
    with pytest.raises(ClaradError, match="--param 'oops': write NAME=VALUE"):
        _params(["oops"])


def test_parser_reads_jobs_list_filters_and_logs_follow() -> None:
    ns = build_parser().parse_args(["jobs", "list", "--pipeline", "seg", "--state", "STOPPED", "--status", "faulted"])
    assert (ns.pipeline, ns.state, ns.status, ns.limit) == ("seg", "stopped", "faulted", 100)
    assert build_parser().parse_args(["jobs", "logs", "abc", "-f"]).follow is True
    with pytest.raises(SystemExit):
        build_parser().parse_args(["jobs", "list", "--state", "asleep"])


def test_format_pipeline_shows_parameters_operators_and_jobs() -> None:
    from clarad.cli import format_pipeline
    text = format_pipeline({
        "name": "seg", "id": "0" * 32, "api_version": "0.8.1", "description": "liver segmentation", "added_at": None,
        "timeout": None, "parameters": {"threshold": "0.5", "tag": None}, "models": ["liver"],
        "jobs": {"HEALTHY": 2, "RUNNING": 1},
        "operators": [{"name": "reader", "input": [{"from": None, "name": None, "path": "/input"}],
                       "output": [{"name": "dcm", "path": "/output"}], "requests": {"cpu": 1, "gpu": 0},
                       "models": ["liver"], "command": ["python", "read.py"]}]})
    lines = text.splitlines()
    assert lines[:2] == [f"pipeline seg (id {'0' * 32}), api-version 0.8.1", "description: liver segmentation"]
    assert "parameters: threshold=0.5, tag=(required)" in lines
    assert "jobs: healthy 2, running 1" in lines
    assert lines[-1].split() == ["reader", "@/input", "dcm@/output", "cpu=1,gpu=0", "liver", "python", "read.py"]
