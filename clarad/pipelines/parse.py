"""YAML text -> a validated ``Pipeline``, or every problem at once. Pure.

The steps: load the YAML (safe loader), resolve the template (``templates``), sweep every key
against Clara's table (``keys``), then validate types with the pydantic models (``model``). Each
problem is one line naming the file, the operator and the key.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Optional

import yaml
from pydantic import ValidationError

from clarad.errors import PipelineRejected
from clarad.pipelines import keys, templates
from clarad.pipelines.checks import check_pipeline
from clarad.pipelines.model import Pipeline


def load(text: str, source: str) -> dict[str, Any]:
    """The definition as loaded from YAML; refused unless it is a mapping."""
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise PipelineRejected(f"{source}: not valid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer too long to convert
        raise PipelineRejected(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PipelineRejected(f"{source}: a pipeline definition must be a YAML mapping with 'name' and 'operators'")
    return data


def parse_pipeline(text: str, source: str = "pipeline", args: Optional[Mapping[str, str]] = None) -> Pipeline:
    """Parse and validate a Clara pipeline definition, resolving its template with ``args`` (a job's
    arguments; None checks the definition itself, a parameter without a default standing in by its
    name). Raises PipelineRejected with every problem found."""
    pipeline, problems = _parse(text, source, args)
    if problems or pipeline is None:
        raise PipelineRejected(problems[0], problems=problems)
    return pipeline


def resolve_for_job(text: str, source: str, args: Mapping[str, str]) -> str:
    """The definition a job runs: its template resolved with the job's ``args`` (and defaults), as
    YAML text; raises PipelineRejected naming each unresolved reference or undeclared argument."""
    try:
        data = templates.resolve(load(text, source), args, source)
    except templates.Unresolved as exc:
        raise PipelineRejected(exc.problems[0], problems=exc.problems) from None
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def validate(text: str, source: str, known_models: Collection[str], gpus: int, cpus: Optional[int] = None,
             max_models: Optional[int] = None, runtime: Optional[str] = None) -> tuple[Optional[Pipeline], list[str]]:
    """Every problem of a definition, the schema's and the checks' together (``clarad pipelines
    validate``, and the reason a dropped one is refused), with the pipeline when there is none.
    ``runtime``: the container runtime's name, None when there is none."""
    try:
        pipeline, problems = _parse(text, source, None)
    except PipelineRejected as exc:  # not YAML, or a template that cannot be resolved
        return None, exc.problems
    if pipeline is not None:
        try:
            check_pipeline(pipeline, known_models, gpus, cpus, max_models, runtime)
        except PipelineRejected as exc:
            problems += exc.problems
    return (None if problems else pipeline), problems


def _parse(text: str, source: str, args: Optional[Mapping[str, str]]) -> tuple[Optional[Pipeline], list[str]]:
    """The pipeline (None when the schema refuses it) and the problems found so far."""
    data = load(text, source)
    try:
        data = templates.resolve(data, args or {}, source, stand_in=args is None)
    except templates.Unresolved as exc:
        raise PipelineRejected(exc.problems[0], problems=exc.problems) from None
    kept, swept = keys.sweep(data, source)
    problems = list(swept.problems)
    try:
        pipeline = Pipeline.model_validate(kept)
    except ValidationError as exc:
        for error in exc.errors():
            where = _where(error["loc"], kept)
            if not any(_covers(where, refused) for refused in swept.paths):
                problems.append(f"{source}: {where}: {error['msg']}")
        return None, problems
    pipeline._notes = swept.notes + _triton_service_notes(pipeline, source)
    pipeline._source = source
    return pipeline, problems


def _triton_service_notes(pipeline: Pipeline, source: str) -> list[str]:
    """A Triton service's tag and requests describe the container Clara would start; the job's instance
    is clarad's own tritonserver: set aside, with a log line."""
    notes = []
    for op in pipeline.operators:
        for index, service in enumerate(op.services):
            where = f'{source}: operator "{op.name}": services[{index}]'
            if service.is_triton and service.container.tag is not None:
                notes.append(f"{where}.container.tag set aside: the job's instance is clarad's own tritonserver, "
                             "whatever the tag")
            if service.is_triton and "requests" in service.model_fields_set:
                notes.append(f"{where}.requests set aside: the job's instance is clarad's (a GPU instance when the "
                             "host has GPUs)")
    return notes


def _covers(where: str, refused: str) -> bool:
    """A schema error that only repeats a refused key's absence (its parent then misses it)."""
    parent = refused.rsplit(".", 1)[0] if "." in refused else None
    return parent is not None and where.startswith(parent)


def _where(loc: tuple[Any, ...], data: Any) -> str:
    """A pydantic location as 'operator "x": input[0].from'."""
    parts: list[str] = []
    operator = ""
    node = data
    for step in loc:
        if isinstance(step, int):
            label = node[step].get("name") if isinstance(node, list) and isinstance(node[step], dict) else None
            if parts == ["operators"]:
                operator = f'operator "{label}": ' if isinstance(label, str) else f"operators[{step}]: "
                parts = []
            elif parts:
                parts[-1] = f"{parts[-1]}[{step}]"
        else:
            parts.append(str(step))
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            node = None
    path = ".".join(parts)
    if operator:
        return f"{operator}{path}" if path else operator[:-2]
    return path or "pipeline"
