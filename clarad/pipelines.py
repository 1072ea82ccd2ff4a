"""Clara pipeline definitions: YAML text -> validated ``Pipeline``.

Pure: no files, no clock. ``parse_pipeline`` checks the schema (Clara's keys, plus an operator-level
``command`` for host processes); ``check_pipeline`` checks what needs context: unique operator names,
``from`` references, cycles and models missing from the repository. Every refusal is a
PipelineRejected whose message says where (operator, input) and what is wrong, in one line.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from clarad.errors import PipelineRejected

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")

Scalar = Union[str, int, float, bool]


def _check_name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(f"name {value!r} must be 1-255 characters of A-Z a-z 0-9 - _")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ModelRef(BaseModel):
    model_config = ConfigDict(extra="allow")  # Clara only knows `name`; tolerate the rest.
    name: str
    _valid = field_validator("name")(_check_name)


class Input(_Strict):
    from_: Optional[str] = Field(None, alias="from")
    name: Optional[str] = None
    path: Optional[str] = None


class Output(_Strict):
    name: Optional[str] = None
    path: Optional[str] = None


class Container(_Strict):
    image: Optional[str] = None
    tag: str = "latest"
    command: Optional[list[Scalar]] = None
    variables: dict[str, Scalar] = {}


class Requests(_Strict):
    cpu: Optional[float] = Field(None, ge=0)
    gpu: int = Field(0, ge=0)
    memory: Optional[int] = Field(None, ge=0, description="MB")


class Operator(_Strict):
    name: str
    description: Optional[str] = None
    container: Optional[Container] = None
    command: Optional[list[Scalar]] = None  # clarad's extension: a host command without a container
    input: list[Input] = []
    output: list[Output] = []
    requests: Requests = Requests()
    models: list[ModelRef] = []
    variables: dict[str, Scalar] = {}
    services: Optional[list[dict[str, Any]]] = None  # deprecated Clara key; accepted, not used
    _valid = field_validator("name")(_check_name)

    @property
    def argv(self) -> list[str]:
        raw = self.command or (self.container.command if self.container else None) or []
        return [_env_value(part) for part in raw]

    @property
    def all_variables(self) -> dict[str, str]:
        merged = {**(self.container.variables if self.container else {}), **self.variables}
        return {key: _env_value(value) for key, value in merged.items()}

    @property
    def model_names(self) -> list[str]:
        return [model.name for model in self.models]

    @property
    def upstream(self) -> set[str]:
        return {inp.from_ for inp in self.input if inp.from_}


class Pipeline(_Strict):
    api_version: Optional[str] = Field(None, alias="api-version")
    name: str
    operators: list[Operator] = Field(min_length=1)
    parameters: dict[str, Any] = {}
    timeout: Optional[float] = Field(None, gt=0, description="seconds; clarad's default when unset")
    orchestrator: Optional[str] = None
    pull_secrets: Optional[list[Any]] = Field(None, alias="pull-secrets")
    _valid = field_validator("name")(_check_name)

    @model_validator(mode="after")
    def _canonical_from(self) -> "Pipeline":
        """Names are case-insensitive in Clara: ``from: Prepare`` reads operator ``prepare``."""
        canonical = {op.name.lower(): op.name for op in self.operators}
        for op in self.operators:
            for inp in op.input:
                if inp.from_ is not None:
                    inp.from_ = canonical.get(inp.from_.lower(), inp.from_)
        return self

    def operator(self, name: str) -> Operator:
        return next(op for op in self.operators if op.name == name)

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


def _env_value(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _where(loc: tuple[Any, ...], data: Any) -> str:
    """Turn a pydantic location into 'operator "x": input[0].from' style."""
    parts: list[str] = []
    node = data
    for step in loc:
        if isinstance(step, int):
            label = node[step].get("name") if isinstance(node, list) and isinstance(node[step], dict) else None
            parts[-1] = f'{parts[-1][:-1]} "{label}"' if label and parts and parts[-1] == "operators" else f"{parts[-1]}[{step}]"
        else:
            parts.append(str(step))
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            node = None
    return ".".join(parts) or "pipeline"


def parse_pipeline(text: str) -> Pipeline:
    """Parse and validate the schema of a Clara pipeline definition."""
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise PipelineRejected(f"not valid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise PipelineRejected("a pipeline definition must be a YAML mapping with 'name' and 'operators'")
    try:
        pipeline = Pipeline.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise PipelineRejected(f"{_where(first['loc'], data)}: {first['msg']}") from None
    return pipeline


def topological_order(pipeline: Pipeline) -> list[str]:
    """Operator names so that each comes after those it reads from; raises on a cycle."""
    remaining = {op.name: set(op.upstream) for op in pipeline.operators}
    order: list[str] = []
    while remaining:
        ready = [name for name, ups in remaining.items() if not ups - set(order)]
        if not ready:
            raise PipelineRejected(f"operators form a cycle: {' -> '.join(sorted(remaining))}")
        for name in ready:
            order.append(name)
            del remaining[name]
    return order


def check_pipeline(pipeline: Pipeline, known_models: Collection[str], gpus: int) -> None:
    """Check what the schema cannot: names, references, the DAG, the models it needs and the
    ``gpus`` this host has for its operators."""
    seen: set[str] = set()
    for op in pipeline.operators:
        if op.name.lower() in seen:
            raise PipelineRejected(f'operator "{op.name}": name used twice (names are case-insensitive)')
        seen.add(op.name.lower())
    by_name = {op.name: op for op in pipeline.operators}
    for op in pipeline.operators:
        _check_operator(op, by_name)
        if op.requests.gpu > gpus:
            raise PipelineRejected(
                f'operator "{op.name}": requests.gpu is {op.requests.gpu}, but this host has {gpus} GPU(s) '
                "clarad may use (see use_gpus)"
            )
    topological_order(pipeline)
    missing = [name for name in pipeline.model_names if name not in known_models]
    if missing:
        users = [op.name for op in pipeline.operators if set(op.model_names) & set(missing)]
        raise PipelineRejected(
            f"model(s) {', '.join(missing)} asked for by operator(s) {', '.join(users)} "
            "are not in the model repository: add the model first"
        )


def _check_operator(op: Operator, by_name: dict[str, Operator]) -> None:
    where = f'operator "{op.name}"'
    if not op.argv:
        raise PipelineRejected(f"{where}: no command (set container.command or command)")
    out_names = [out.name for out in op.output if out.name]
    if len(out_names) != len(set(out_names)):
        raise PipelineRejected(f"{where}: output names must be unique")
    if len(op.output) > 1 and len(out_names) != len(op.output):
        raise PipelineRejected(f"{where}: with several outputs each needs a name")
    for index, inp in enumerate(op.input):
        if inp.from_ is None:
            if inp.name is not None:
                raise PipelineRejected(f"{where}: input[{index}] has a name but no from")
            continue
        if inp.from_ == op.name:
            raise PipelineRejected(f"{where}: input[{index}] reads from the operator itself")
        source = by_name.get(inp.from_)
        if source is None:
            raise PipelineRejected(f'{where}: input[{index}] from "{inp.from_}": no such operator in this pipeline')
        if inp.name is not None and inp.name not in {out.name for out in source.output}:
            raise PipelineRejected(f'{where}: input[{index}]: operator "{inp.from_}" has no output named "{inp.name}"')
    if len(set(op.model_names)) != len(op.model_names):
        raise PipelineRejected(f"{where}: a model is listed twice under models")
