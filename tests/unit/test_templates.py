"""Clara's ${{ name }} templates: defaults, a job's arguments, scopes, and what refuses a job."""

from __future__ import annotations

import pytest
import yaml

from clarad.errors import PipelineRejected
from clarad.pipelines import declared, parse_pipeline, resolve_for_job, validate

TEXT = """
name: templated
parameters:
  input-from: reader
  threshold: 0.5
  required-tag:
operators:
- name: reader
  command: [read, "--tag=${{ required-tag }}"]
- name: scorer
  parameters: {mode: fast}
  command: [score, "${{threshold}}", "${{ mode }}"]
  input: [{from: "${{ input-from }}"}]
  variables: {THRESHOLD: "${{ threshold }}"}
"""


def resolved(args: dict[str, str]) -> dict:
    return yaml.safe_load(resolve_for_job(TEXT, "templated.yaml", args))


def test_defaults_fill_what_the_job_does_not_give() -> None:
    data = resolved({"required-tag": "t1"})
    reader, scorer = data["operators"]
    assert reader["command"] == ["read", "--tag=t1"]
    assert scorer["command"] == ["score", "0.5", "fast"]
    assert scorer["input"] == [{"from": "reader"}]
    assert scorer["variables"] == {"THRESHOLD": "0.5"}


def test_a_job_argument_overrides_pipeline_and_operator_defaults() -> None:
    data = resolved({"required-tag": "t1", "threshold": "0.9", "mode": "slow"})
    assert data["operators"][1]["command"] == ["score", "0.9", "slow"]
    assert data["parameters"] == {"input-from": "reader", "threshold": "0.9", "required-tag": "t1"}


def test_the_resolved_definition_parses_as_the_job_runs_it() -> None:
    pipeline = parse_pipeline(resolve_for_job(TEXT, "templated.yaml", {"required-tag": "x"}))
    assert pipeline.operator("scorer").all_variables == {"THRESHOLD": "0.5"}
    assert pipeline.operator("scorer").upstream == {"reader"}


def test_a_parameter_without_a_value_refuses_the_job_with_its_name() -> None:
    with pytest.raises(PipelineRejected) as refused:
        resolve_for_job(TEXT, "templated.yaml", {})
    assert refused.value.problems == [
        "templated.yaml: operator \"reader\": command[1]: parameter 'required-tag' has no value: give it when "
        "creating the job (--param required-tag=VALUE) or a default in parameters"]


def test_an_argument_the_pipeline_does_not_declare_is_refused() -> None:
    with pytest.raises(PipelineRejected, match="argument 'colour': the pipeline declares no parameter 'colour' "
                                               r"\(declared: input-from, mode, required-tag, threshold\)"):
        resolve_for_job(TEXT, "templated.yaml", {"required-tag": "x", "colour": "red"})


def test_an_undeclared_placeholder_refuses_the_pipeline_at_ingest_with_its_name() -> None:
    with pytest.raises(PipelineRejected) as refused:
        parse_pipeline(TEXT.replace("${{ mode }}", "${{ speed }}"), "templated.yaml")
    assert refused.value.problems == ['templated.yaml: operator "scorer": command[2]: unresolved reference '
                                      "${{ speed }}: declare 'speed' under parameters"]


def test_an_operators_parameters_do_not_reach_another_operator() -> None:
    text = TEXT.replace("--tag=${{ required-tag }}", "--mode=${{ mode }}")
    with pytest.raises(PipelineRejected, match=r'operator "reader": command\[1\]: unresolved reference \$\{\{ mode \}\}'):
        parse_pipeline(text, "templated.yaml")


def test_at_ingest_a_parameter_without_a_value_stands_in_by_its_name() -> None:
    pipeline = parse_pipeline(TEXT, "templated.yaml")
    assert pipeline.operator("reader").argv == ["read", "--tag=required-tag"]


def test_a_value_cannot_add_keys_or_structure() -> None:
    hostile = "x\n  image: evil\ncommand: [rm, -rf, /]"
    data = resolved({"required-tag": hostile})
    assert data["operators"][0]["command"] == ["read", f"--tag={hostile}"]
    assert set(data["operators"][0]) == {"name", "command"}


def test_a_malformed_placeholder_is_refused() -> None:
    with pytest.raises(PipelineRejected, match="a malformed placeholder"):
        parse_pipeline("name: p\noperators:\n- name: a\n  command: [run, '${{ open']\n", "bad.yaml")


def test_parameter_names_follow_clara_name_rules_and_values_are_scalars() -> None:
    with pytest.raises(PipelineRejected) as refused:
        parse_pipeline("name: p\nparameters: {'a b': x, ok: [1, 2]}\noperators:\n- name: a\n  command: [run]\n", "p.yaml")
    assert refused.value.problems == [
        "p.yaml: parameters: 'a b' is not a name (1-255 of A-Z a-z 0-9 - _)",
        "p.yaml: parameters.ok: a parameter's value is a string, not a list or mapping"]


def test_declared_lists_every_parameter_with_its_default() -> None:
    data = yaml.safe_load(TEXT)
    assert declared(data) == {"input-from": "reader", "threshold": "0.5", "required-tag": None, "mode": "fast"}


def test_a_nul_in_an_argument_or_a_command_is_refused() -> None:
    with pytest.raises(PipelineRejected, match="argument 'who': a NUL character cannot be passed"):
        resolve_for_job(TEXT, "templated.yaml", {"required-tag": "x", "who": "a\0b"})
    _pipeline, problems = validate('name: p\noperators:\n- name: a\n  command: [run, "x\\0y"]\n', "nul.yaml",
                                   set(), 0, 2)
    assert problems == ['nul.yaml: operator "a": command: a NUL character cannot be passed to a program']
