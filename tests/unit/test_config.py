"""Settings: defaults, TOML file, CLARAD_* environment, explicit overrides; refusals name the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clarad.config import load_settings
from clarad.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("CLARAD_"):
            monkeypatch.delenv(key)


@pytest.fixture
def toml(tmp_path: Path) -> Path:
    path = tmp_path / "clarad.toml"
    path.write_text("", encoding="utf-8")
    return path


def refusal(*args: object, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as refused:
        load_settings(*args, **kwargs)  # type: ignore[arg-type]
    return str(refused.value)


def test_defaults_are_claras(toml: Path) -> None:
    s = load_settings(toml)
    assert (s.state_dir, s.log_level, s.metrics_address, s.metrics_port) == (
        Path("/var/lib/clara"), "INFO", "127.0.0.1", 9464)
    assert (s.job_timeout_seconds, s.job_timeout_max_seconds, s.operator_stop_grace_seconds) == (600.0, 1800.0, 15.0)
    assert (s.max_models_per_instance, s.instances_per_gpu, s.cpu_instances) == (8, 1, 2)
    assert (s.settle_seconds, s.use_gpus, s.triton_binary, s.operator_user) == (2.0, True, None, None)


def test_toml_file_sets_values(toml: Path) -> None:
    toml.write_text('metrics_port = 9100\nstate_dir = "/srv/clara"\nuse_gpus = false\n', encoding="utf-8")
    s = load_settings(toml)
    assert (s.metrics_port, s.state_dir, s.use_gpus) == (9100, Path("/srv/clara"), False)


def test_clarad_config_variable_chooses_the_file(toml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml.write_text("cpu_instances = 5\n", encoding="utf-8")
    monkeypatch.setenv("CLARAD_CONFIG", str(toml))
    assert load_settings().cpu_instances == 5


def test_environment_overrides_toml(toml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml.write_text("metrics_port = 9100\ncpu_instances = 3\n", encoding="utf-8")
    monkeypatch.setenv("CLARAD_METRICS_PORT", "9200")
    s = load_settings(toml)
    assert (s.metrics_port, s.cpu_instances) == (9200, 3)


def test_explicit_override_beats_environment(toml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLARAD_METRICS_PORT", "9200")
    monkeypatch.setenv("CLARAD_STATE_DIR", "/from/env")
    s = load_settings(toml, metrics_port=0, state_dir=None)
    assert (s.metrics_port, s.state_dir) == (0, Path("/from/env"))


def test_bad_integer_in_environment_names_the_key(toml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLARAD_METRICS_PORT", "ninety")
    assert refusal(toml).startswith("metrics_port: Input should be a valid integer")


def test_out_of_range_value_names_the_key(toml: Path) -> None:
    toml.write_text("max_models_per_instance = 0\n", encoding="utf-8")
    message = refusal(toml)
    assert message.startswith("max_models_per_instance: Input should be greater than or equal to 1")
    assert str(toml) in message


def test_out_of_range_override_names_the_key(toml: Path) -> None:
    assert refusal(toml, metrics_port=70000).startswith("metrics_port: Input should be less than or equal to 65535")


def test_unknown_key_in_toml_is_refused(toml: Path) -> None:
    toml.write_text("max_model_per_instance = 4\n", encoding="utf-8")
    assert refusal(toml).startswith("max_model_per_instance: Extra inputs are not permitted")


def test_unknown_log_level_is_refused(toml: Path) -> None:
    toml.write_text('log_level = "LOUD"\n', encoding="utf-8")
    assert refusal(toml).startswith("log_level: ")


def test_default_timeout_above_the_maximum_is_refused(toml: Path) -> None:
    toml.write_text("job_timeout_seconds = 2000\n", encoding="utf-8")
    assert "job_timeout_seconds (2000) exceeds job_timeout_max_seconds (1800)" in refusal(toml)


def test_the_oracle_policy_without_the_jobs_to_come_is_refused(toml: Path) -> None:
    toml.write_text('placement_policy = "oracle"\n', encoding="utf-8")
    assert 'placement_policy "oracle" needs placement_future (the jobs to come)' in refusal(toml)


def test_missing_explicit_file_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert refusal(missing) == f"config file {missing}: not found"


def test_missing_file_named_by_clarad_config_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLARAD_CONFIG", str(tmp_path / "nope.toml"))
    assert refusal().endswith("nope.toml: not found")


def test_malformed_toml_is_refused_naming_the_file(toml: Path) -> None:
    toml.write_text("metrics_port = [\n", encoding="utf-8")
    message = refusal(toml)
    assert message.startswith("config file")
    assert str(toml) in message


def test_refusal_of_an_environment_value_does_not_blame_the_file(toml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLARAD_METRICS_PORT", "ninety")
    message = refusal(toml)
    assert message.startswith("metrics_port: ")
    assert str(toml) not in message
