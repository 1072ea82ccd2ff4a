"""Clara pipeline definitions: YAML text -> a validated ``Pipeline``, or every problem at once.

    parse.py      YAML, the template, Clara's keys, the schema -> Pipeline
    keys.py       every key of Clara's format and what clarad does with it (the one table)
    templates.py  ${{ name }} placeholders and parameters
    model.py      the pydantic models of what clarad applies
    checks.py     names, references, paths, the DAG (linear), models, GPUs and CPUs

Pure: no files, no clock. Every refusal is a PipelineRejected whose ``problems`` are lines naming
the file, the operator and the key.
"""

from clarad.pipelines.checks import check_pipeline, path_problem, topological_order
from clarad.pipelines.model import (
    NAME_RE,
    Container,
    Input,
    ModelRef,
    Operator,
    Output,
    Pipeline,
    Requests,
    Service,
    describe,
)
from clarad.pipelines.parse import load, parse_pipeline, resolve_for_job, validate
from clarad.pipelines.templates import declared

__all__ = [
    "NAME_RE", "Container", "Input", "ModelRef", "Operator", "Output", "Pipeline", "Requests", "Service",
    "check_pipeline", "declared", "describe", "load", "parse_pipeline", "path_problem", "resolve_for_job", "topological_order", "validate",
]
