"""The parts of a Clara pipeline definition clarad applies, as pydantic models.

These see a definition only after ``keys.sweep`` has refused (or set aside, with a log line) every
key clarad does not apply, so a key reaching them is one clarad acts on; ``extra="forbid"`` still
guards against a key the sweep's table forgot.
"""

from __future__ import annotations

import re
from typing import Optional, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TRITON_IMAGES = ("tritonserver", "tensorrtserver", "trtserver")  # Triton, and TRTIS before its renaming
TRITON_GRPC_PORT = 8001
CLARA_INPUT, CLARA_OUTPUT = "/input", "/output"  # where a Clara container finds an entry without a path

Scalar = Union[str, int, float, bool]


def check_name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(f"name {value!r} must be 1-255 characters of A-Z a-z 0-9 - _")
    return value


def version_text(value: object) -> object:
    """``api-version: 0.4`` is a float to YAML; Clara reads it as the version "0.4"."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def check_env_name(value: str) -> str:
    if not ENV_NAME_RE.match(value):
        raise ValueError(f"{value!r} is not an environment variable name (letters, digits, _; not a digit first)")
    return value


def env_value(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check_variables(values: dict[str, Scalar]) -> dict[str, Scalar]:
    for key, value in values.items():
        check_env_name(key)
        if "\0" in env_value(value):
            raise ValueError(f"variable {key}: a NUL character cannot be passed in an environment")
    return values


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelRef(_Strict):
    name: str
    _valid = field_validator("name")(check_name)


class Input(_Strict):
    from_: Optional[str] = Field(None, alias="from")
    name: Optional[str] = None
    path: Optional[str] = None
    type: Optional[str] = None  # api-version 0.5.0: only "stream" (on disk) reaches here
    element_type: Optional[str] = Field(None, alias="element-type")
    _valid = field_validator("name")(lambda v: v if v is None else check_name(v))


class Output(_Strict):
    name: Optional[str] = None
    path: Optional[str] = None
    type: Optional[str] = None
    element_type: Optional[str] = Field(None, alias="element-type")
    _valid = field_validator("name")(lambda v: v if v is None else check_name(v))


class Container(_Strict):
    image: Optional[str] = None  # run with the container runtime (clarad/containers/)
    tag: Optional[Scalar] = None
    command: Optional[list[Scalar]] = None
    variables: dict[str, Scalar] = {}
    _vars = field_validator("variables")(check_variables)


class Requests(_Strict):
    cpu: Optional[int] = Field(None, ge=0, description="CPUs the operator is pinned to; 0: not pinned")
    gpu: int = Field(0, ge=0)
    memory: Optional[int] = Field(None, ge=0, description="MB; 0: no limit")


class Connection(_Strict):
    name: str
    port: Optional[int] = Field(None, ge=1, le=65535)
    _valid = field_validator("name")(check_env_name)


class Connections(_Strict):
    http: list[Connection] = []


class ServiceContainer(_Strict):
    image: str
    tag: Optional[Scalar] = None
    command: Optional[list[Scalar]] = None


class Service(_Strict):
    """Clara's (deprecated) ``services:``: a Triton service is mapped onto the job's Triton instance;
    any other runs as a container beside its operator (clarad/containers/services.py)."""

    name: str
    description: Optional[str] = None
    container: ServiceContainer
    connections: Connections = Connections()
    requests: Requests = Requests()
    variables: dict[str, Scalar] = {}
    _valid = field_validator("name")(check_name)
    _vars = field_validator("variables")(check_variables)

    @property
    def is_triton(self) -> bool:
        return is_triton_image(self.container.image)

    @property
    def load_models(self) -> list[str]:
        """Models the service's command line names (``--load-model=NAME`` or ``--load-model NAME``)."""
        argv = [env_value(part) for part in self.container.command or []]
        names = [arg.split("=", 1)[1] for arg in argv if arg.startswith("--load-model=")]
        names += [after for before, after in zip(argv, argv[1:]) if before == "--load-model"]
        return names


def is_triton_image(image: str) -> bool:
    last = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    return any(last.startswith(name) for name in TRITON_IMAGES)


class Operator(_Strict):
    name: str
    description: Optional[str] = None
    api_version: Optional[str] = Field(None, alias="api-version")
    container: Optional[Container] = None
    command: Optional[list[Scalar]] = None  # clarad's extension: a host command without a container
    input: list[Input] = []
    output: list[Output] = []
    requests: Requests = Requests()
    models: list[ModelRef] = []
    variables: dict[str, Scalar] = {}
    parameters: dict[str, Optional[Scalar]] = {}
    services: list[Service] = []
    _valid = field_validator("name")(check_name)
    _vars = field_validator("variables")(check_variables)
    _version = field_validator("api_version", mode="before")(version_text)

    @property
    def argv(self) -> list[str]:
        raw = self.command or (self.container.command if self.container else None) or []
        return [env_value(part) for part in raw]

    @property
    def image(self) -> Optional[str]:
        """The container image it runs in; None for a host operator."""
        return self.container.image if self.container is not None else None

    def with_default_paths(self) -> "Operator":
        """A container operator as it sees its directories: the first input and the first output
        without a ``path`` at Clara's ``/input`` and ``/output`` (unless another is there already); one
        that declares no output still has its directory at ``/output``."""
        return self.model_copy(update={"input": _defaulted(self.input, CLARA_INPUT),
                                       "output": _defaulted(self.output or [Output()], CLARA_OUTPUT)})

    @property
    def all_variables(self) -> dict[str, str]:
        merged = {**(self.container.variables if self.container else {}), **self.variables}
        return {key: env_value(value) for key, value in merged.items()}

    @property
    def model_names(self) -> list[str]:
        """The operator's ``models:``; failing that, the models its Triton service's command names."""
        own = [model.name for model in self.models]
        return own or list(dict.fromkeys(name for service in self.triton_services for name in service.load_models))

    @property
    def triton_services(self) -> list[Service]:
        return [service for service in self.services if service.is_triton]

    @property
    def container_services(self) -> list[Service]:
        """Services run as containers beside the operator (not Triton's)."""
        return [service for service in self.services if not service.is_triton]

    @property
    def connections(self) -> dict[str, str]:
        """Variables a Triton service's ``connections`` name: "grpc" for Triton's gRPC port, else "http"."""
        return {c.name: "grpc" if c.port == TRITON_GRPC_PORT else "http"
                for service in self.triton_services for c in service.connections.http}

    @property
    def upstream(self) -> set[str]:
        return {inp.from_ for inp in self.input if inp.from_}


Entry = TypeVar("Entry", Input, Output)


def _defaulted(entries: list[Entry], default: str) -> list[Entry]:
    taken = any(entry.path == default for entry in entries)
    result = []
    for entry in entries:
        if entry.path is None and not taken:
            entry, taken = entry.model_copy(update={"path": default}), True
        result.append(entry)
    return result


class Pipeline(_Strict):
    api_version: Optional[str] = Field(None, alias="api-version")
    name: str
    description: Optional[str] = None
    operators: list[Operator] = Field(min_length=1)
    parameters: dict[str, Optional[Scalar]] = {}
    timeout: Optional[float] = Field(None, gt=0, description="seconds; clarad's default when unset")
    _valid = field_validator("name")(check_name)
    _version = field_validator("api_version", mode="before")(version_text)
    _notes: list[str] = PrivateAttr(default_factory=list)  # keys set aside, for the log
    _source: str = PrivateAttr(default="pipeline")  # the file it came from, for messages
    _by_name: dict[str, Operator] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _canonical_from(self) -> "Pipeline":
        """Names are case-insensitive in Clara: ``from: Prepare`` reads operator ``prepare``."""
        canonical = {op.name.lower(): op.name for op in self.operators}
        for op in self.operators:
            for inp in op.input:
                if inp.from_ is not None:
                    inp.from_ = canonical.get(inp.from_.lower(), inp.from_)
        return self

    @property
    def notes(self) -> list[str]:
        return self._notes

    @property
    def source(self) -> str:
        return self._source

    def operator(self, name: str) -> Operator:
        if not self._by_name:
            self._by_name = {op.name: op for op in self.operators}
        return self._by_name[name]

    @property
    def gpus(self) -> int:
        """GPUs a job of this pipeline holds from its start to its end: as many as its most demanding
        operator asks for (Clara starts a job only once its resources are there; operators that ask
        for GPUs at the same time share these, one waiting for another to give them back)."""
        return max(op.requests.gpu for op in self.operators)

    @property
    def model_names(self) -> list[str]:
        """Every model any operator asks for, once, in order of first mention."""
        return list(dict.fromkeys(name for op in self.operators for name in op.model_names))


def describe(pipeline: Pipeline) -> dict[str, object]:
    """What ``clarad pipelines show`` tells: plain data."""
    return {
        "api_version": pipeline.api_version,
        "description": pipeline.description,
        "parameters": pipeline.parameters,
        "timeout": pipeline.timeout,
        "models": pipeline.model_names,
        "operators": [{
            "name": op.name,
            "description": op.description,
            "image": op.image and (f"{op.image}:{env_value(op.container.tag)}" if op.container and
                                   op.container.tag is not None else op.image),
            "command": op.argv,
            "input": [{"from": i.from_, "name": i.name, "path": i.path} for i in op.input],
            "output": [{"name": o.name, "path": o.path} for o in op.output],
            "requests": op.requests.model_dump(exclude_none=True),
            "models": op.model_names,
            "services": [s.name if s.is_triton else f"{s.name} ({s.container.image}, a container)" for s in op.services],
            "connections": op.connections,
        } for op in pipeline.operators],
    }
