"""clarad's settings: the one place defaults live.

Sources, strongest first: command-line flags, ``CLARAD_*`` environment variables, the TOML file
(``/etc/clara/clarad.toml``, or ``--config`` / ``CLARAD_CONFIG``), the defaults below. A bad value
stops start-up with a ConfigError that names the key and the reason.
"""

from __future__ import annotations

import grp
import os
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from clarad.errors import ConfigError

DEFAULT_CONFIG_FILE = Path("/etc/clara/clarad.toml")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLARAD_", extra="forbid", validate_default=True)

    state_dir: Path = Field(Path("/var/lib/clara"), description="Everything clarad owns: inbox, models, jobs, database.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    metrics_address: str = Field("127.0.0.1", description="Address of the Prometheus /metrics endpoint.")
    metrics_port: int = Field(9464, ge=0, le=65535, description="0 turns the metrics endpoint off.")
    triton_targets_file: Optional[Path] = Field(
        None, description="Where the Triton instances' metrics endpoints are listed for Prometheus's file_sd_configs "
                          "(default: <state_dir>/triton-targets.json).")

    api_address: str = Field("127.0.0.1", description="Address of Clara's gRPC Platform API (0.0.0.0: every interface).")
    api_port: int = Field(30031, ge=0, le=65535, description="TCP port of Clara's gRPC API (Clara's own); 0 turns it off.")
    api_socket: Optional[Path] = Field(None, description="Also serve Clara's gRPC API on this Unix socket.")
    api_upload_max_bytes: int = Field(64 << 30, gt=0, description="Largest model zip or payload file one upload may bring.")

    settle_seconds: float = Field(2.0, ge=0, description="A copied drop is taken once quiet this long.")
    rescan_seconds: float = Field(30.0, gt=0, description="Period of the inbox rescan that finds missed events.")

    model_revisions_kept: int = Field(3, ge=0, le=1000, description="Earlier revisions of each model kept for rollback.")
    archive_max_bytes: int = Field(64 << 30, gt=0, description="Largest unpacked size of a model archive, in bytes.")
    archive_max_entries: int = Field(10_000, gt=0, description="Most entries a model archive may hold.")
    archive_max_ratio: float = Field(200.0, gt=1, description="Highest unpacked-to-packed size ratio (zip bombs).")

    triton_binary: Optional[Path] = Field(None, description="tritonserver to run; found on PATH etc. when unset.")
    triton_backend_dir: Optional[Path] = Field(None, description="Triton backends; prepared from nvidia-pytriton when unset.")
    triton_start_timeout_seconds: float = Field(60.0, gt=0)
    triton_stop_grace_seconds: float = Field(10.0, ge=0)

    use_gpus: bool = Field(True, description="Discover GPUs with NVML; false runs CPU instances only.")
    instances_per_gpu: int = Field(1, ge=1, le=64)
    cpu_instances: int = Field(2, ge=1, le=64, description="Triton instances when no GPU is found.")
    max_models_per_instance: int = Field(8, ge=1, le=1024, description="Clara's modelLimits.")
    memory_margin_bytes: int = Field(512 << 20, ge=0, description="Device memory placement always leaves free.")
    cpu_memory_bytes: int = Field(0, ge=0, description="Host memory CPU instances may fill; 0: all of it.")
    recycle_unload_share: float = Field(0.5, ge=0, le=1, description="An unload giving back less of what its load "
                                        "took marks the instance for recycling.")
    instance_memory_max_bytes: int = Field(0, ge=0, description="A CPU instance holding more is recycled; 0: no bound.")
    instance_idle_seconds: float = Field(0.0, ge=0, description="Idle instances beyond instances_min_idle stop after "
                                         "this long; 0: they stay.")
    instances_min_idle: int = Field(1, ge=0, description="Idle instances kept however long they are idle.")
    placement_policy: Literal["clarad", "any-idle", "lru", "oracle", "fresh"] = Field(
        "clarad", description="How jobs get instances; the others are baselines for benchmarks.")
    placement_future: Optional[Path] = Field(None, description="The oracle baseline's knowledge: a JSON list of the "
                                             "model lists of the jobs to come, in arrival order.")
    keep_warm: bool = Field(False, description="Keep an instance warm with the models of the pipeline most used by the newest 1,000 jobs.")
    load_timeout_seconds: float = Field(900.0, gt=0, description="A model load taking longer faults the job.")

    priority_aging_seconds: float = Field(60.0, gt=0, description="Each such wait raises a queued job one priority class.")
    job_timeout_seconds: float = Field(600.0, gt=0, description="Default when a pipeline sets none.")
    job_timeout_max_seconds: float = Field(1800.0, gt=0)
    operator_stop_grace_seconds: float = Field(15.0, ge=0, description="TERM to KILL when stopping an operator.")
    operator_user: Optional[str] = Field(None, description="Run operators as this user (clarad's own when unset).")
    operator_mount_namespace: Literal["auto", "off"] = Field(
        "auto", description="auto: operators see their declared paths through bwrap where it works; off: never.")
    operator_runtime: Literal["auto", "podman", "docker", "host"] = Field(
        "auto", description="Runs operators with container.image: auto: podman, else docker, else none (such "
        "pipelines are refused); host: none.")
    container_pull: Literal["never", "missing"] = Field(
        "never", description="never: images come from the local store only; missing: pull what it lacks.")
    max_parallel_operators: int = Field(4, ge=1, le=256, description="Operators of one job running at once, at most.")
    max_running_jobs: int = Field(
        32, ge=1, le=10000, description="Jobs running at once, at most (a job with models also holds an instance "
                                        "of its own); the others wait PENDING, saying so.")
    drop_group: Optional[str] = Field(
        None, description="Drops are taken from root, clarad's user and members of this group (clarad's own when unset).")
    operator_containment: Literal["auto", "cgroup", "descendants"] = Field(
        "auto", description="How what an operator starts outside its process group is stopped with it.")

    finished_jobs_max_age_days: float = Field(30.0, ge=0, description="Finished jobs older than this are removed; 0: kept.")
    finished_jobs_max_bytes: int = Field(10 << 30, ge=0, description="Finished jobs' total size; oldest removed first; 0: no limit.")

    @field_validator("state_dir")
    @classmethod
    def _no_colon(cls, value: Path) -> Path:
        if ":" in str(value):  # NVIDIA_CLARA_INPUTPATHS separates its entries with ':'
            raise ValueError(f"{value}: a ':' in the path would break NVIDIA_CLARA_INPUTPATHS; choose another")
        return value

    @field_validator("drop_group")
    @classmethod
    def _group_exists(cls, value: Optional[str]) -> Optional[str]:
        if value is not None:
            try:
                grp.getgrnam(value)
            except KeyError:
                raise ValueError(f"no group named {value!r}") from None
        return value

    @model_validator(mode="after")
    def _timeouts_agree(self) -> "Settings":
        if self.job_timeout_seconds > self.job_timeout_max_seconds:
            raise ValueError(
                f"job_timeout_seconds ({self.job_timeout_seconds:g}) exceeds "
                f"job_timeout_max_seconds ({self.job_timeout_max_seconds:g})"
            )
        if self.placement_policy == "oracle" and self.placement_future is None:
            raise ValueError("placement_policy \"oracle\" needs placement_future (the jobs to come)")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def config_file(explicit: Optional[Path]) -> Optional[Path]:
    """The TOML file to read: the flag, else $CLARAD_CONFIG, else the default if it exists."""
    chosen = explicit or (Path(os.environ["CLARAD_CONFIG"]) if os.environ.get("CLARAD_CONFIG") else None)
    if chosen is not None:
        if not chosen.is_file():
            raise ConfigError(f"config file {chosen}: not found")
        return chosen
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def load_settings(explicit_file: Optional[Path] = None, **overrides: Any) -> Settings:
    """Build the settings from every source; raise ConfigError naming the first bad key."""
    toml_file = config_file(explicit_file)
    # A subclass per file keeps the file choice out of global state.
    reading: type[Settings] = type("Settings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": toml_file}})
    try:
        return reading(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(f"{key}: {first['msg']}{_source_of(key, overrides, toml_file)}") from None
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        raise ConfigError(f"config file {toml_file}: {exc}") from None


def _source_of(key: str, overrides: dict[str, Any], toml_file: Optional[Path]) -> str:
    """Where the refused value came from, so the person fixes the right place."""
    if overrides.get(key) is not None:
        return " (from the command line)"
    if f"CLARAD_{key.upper()}" in os.environ:
        return f" (from CLARAD_{key.upper()})"
    return f" (in {toml_file})" if toml_file else ""
