"""Pipeline definitions: the corpus under tests/corpus/pipelines, and the pure helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from clarad.errors import PipelineRejected
from clarad.pipelines import Pipeline, check_pipeline, parse_pipeline, topological_order

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "pipelines"
KNOWN_MODELS = {"segmentation_ct_spleen_v1", "segmentation_ct_liver_v1", "affine"}
KNOWN_GPUS = 1
KNOWN_CPUS = 2

VALID = sorted((CORPUS / "valid").glob("*.yaml"))
INVALID = sorted((CORPUS / "invalid").glob("*.yaml"))


def load(text: str, source: str = "pipeline") -> Pipeline:
    pipeline = parse_pipeline(text, source)
    check_pipeline(pipeline, KNOWN_MODELS, KNOWN_GPUS, KNOWN_CPUS)
    return pipeline


def test_corpus_has_enough_samples() -> None:
    assert len(INVALID) >= 15, f"only {len(INVALID)} invalid pipeline samples found under {CORPUS}"
    assert len(VALID) >= 1
    for sample in INVALID:
        assert sample.with_suffix(".expect").is_file(), f"{sample.name} has no .expect file beside it"


@pytest.mark.parametrize("sample", VALID, ids=lambda p: p.stem)
def test_valid_pipeline_is_accepted(sample: Path) -> None:
    pipeline = load(sample.read_text(encoding="utf-8"), sample.name)
    assert pipeline.operators
    assert sorted(topological_order(pipeline)) == sorted(op.name for op in pipeline.operators)


@pytest.mark.parametrize("sample", INVALID, ids=lambda p: p.stem)
def test_invalid_pipeline_is_refused_with_its_reason(sample: Path) -> None:
    expected = sample.with_suffix(".expect").read_text(encoding="utf-8").strip()
    with pytest.raises(PipelineRejected) as refused:
        load(sample.read_text(encoding="utf-8"), sample.name)
    message = str(refused.value)
    assert message.startswith(f"{sample.name}: ")
    assert expected in message
    assert "\n" not in message


def test_null_pipeline_keeps_clara_structure() -> None:
    pipeline = load((CORPUS / "valid" / "null-pipeline.yaml").read_text(encoding="utf-8"), "null-pipeline.yaml")
    reader, writer = pipeline.operators
    assert (pipeline.name, pipeline.api_version) == ("null-pipeline", "0.4.0")
    assert pipeline.notes == [
        "null-pipeline.yaml: orchestrator set aside: Kubernetes-era choice of engine (Clara or Argo); one host has one",
        "null-pipeline.yaml: pull-secrets set aside: Kubernetes image pull secrets; no images are pulled"]
    assert reader.container is not None
    assert reader.argv == ["python", "register.py", "--agent", "renderserver"]
    assert reader.all_variables == {"CLARA_TRACE": "2", "FROM_CONTAINER": "yes"}
    assert reader.model_names == ["segmentation_ct_spleen_v1", "segmentation_ct_liver_v1"]
    assert [(o.name, o.path) for o in reader.output] == [
        ("segmentation", "/output/segmentation"), ("report", "/output/report")]
    assert [(i.from_, i.name, i.path) for i in writer.input] == [("null-reader", "segmentation", "/input")]
    assert writer.container is not None and writer.argv == ["python", "write.py"]
    assert writer.upstream == {"null-reader"}


def test_unknown_model_is_accepted_once_the_repository_has_it() -> None:
    text = (CORPUS / "invalid" / "unknown-model.yaml").read_text(encoding="utf-8")
    check_pipeline(parse_pipeline(text), KNOWN_MODELS | {"missing_model"}, KNOWN_GPUS)  # must not raise


def test_same_model_in_two_operators_is_allowed() -> None:
    pipeline = load(
        "name: p\noperators:\n"
        "- {name: a, command: [x], models: [{name: affine}]}\n"
        "- {name: b, command: [y], models: [{name: affine}], input: [{from: a}]}\n"
    )
    assert pipeline.model_names == ["affine"]


def test_topological_order_puts_readers_after_writers() -> None:
    pipeline = load((CORPUS / "valid" / "diamond.yaml").read_text(encoding="utf-8"))
    assert topological_order(pipeline) == ["a", "b", "c", "d"]


def test_topological_order_of_operators_listed_backwards() -> None:
    pipeline = load(
        "name: p\noperators:\n"
        "- {name: last, command: [z], input: [{from: middle}]}\n"
        "- {name: middle, command: [y], input: [{from: first}]}\n"
        "- {name: first, command: [x]}\n"
    )
    assert topological_order(pipeline) == ["first", "middle", "last"]


def test_topological_order_refuses_a_cycle() -> None:
    pipeline = parse_pipeline(
        "name: p\noperators:\n"
        "- {name: x, command: [a], input: [{from: y}]}\n"
        "- {name: y, command: [b], input: [{from: x}]}\n"
        "- {name: after, command: [c], input: [{from: y}]}\n"
    )
    with pytest.raises(PipelineRejected, match="cycle"):
        topological_order(pipeline)


def test_operator_command_and_container_command_together_are_refused() -> None:
    pipeline = parse_pipeline(
        "name: p\noperators:\n- name: a\n  command: [host, 1, 2.5]\n  container: {command: [inside]}\n"
    )
    assert pipeline.operators[0].argv == ["host", "1", "2.5"]
    with pytest.raises(PipelineRejected, match='operator "a": both command and container.command: give one'):
        check_pipeline(pipeline, set(), 0)


def test_container_command_is_used_when_operator_has_none() -> None:
    op = parse_pipeline("name: p\noperators:\n- name: a\n  container: {command: [run, --port, 8000]}\n").operators[0]
    assert op.argv == ["run", "--port", "8000"]


def test_operator_without_any_command_has_empty_argv() -> None:
    op = parse_pipeline("name: p\noperators:\n- name: a\n").operators[0]
    assert op.argv == []


def test_operator_variables_override_container_variables_and_booleans_are_lowercase() -> None:
    op = parse_pipeline(
        "name: p\noperators:\n- name: a\n  command: [x]\n"
        "  variables: {SHARED: operator, DEBUG: true, RATE: 0.5}\n"
        "  container: {variables: {SHARED: container, QUIET: false, ONLY_HERE: 7}}\n"
    ).operators[0]
    assert op.all_variables == {
        "SHARED": "operator", "DEBUG": "true", "RATE": "0.5", "QUIET": "false", "ONLY_HERE": "7"}


def test_pipeline_model_names_in_order_of_first_mention_without_repeats() -> None:
    pipeline = parse_pipeline(
        "name: p\noperators:\n"
        "- {name: a, command: [x], models: [{name: m2}, {name: m1}]}\n"
        "- {name: b, command: [y], models: [{name: m3}, {name: m2}]}\n"
        "- {name: c, command: [z]}\n"
    )
    assert pipeline.model_names == ["m2", "m1", "m3"]


def test_from_names_an_operator_case_insensitively() -> None:
    pipeline = parse_pipeline(
        "name: p\noperators:\n- name: prepare\n  command: [a]\n- name: infer\n  command: [b]\n  input: [{from: Prepare}]\n"
    )
    check_pipeline(pipeline, set(), 0)
    assert pipeline.operator("infer").upstream == {"prepare"}
    assert topological_order(pipeline) == ["prepare", "infer"]


def test_a_job_holds_as_many_gpus_as_its_most_demanding_operator() -> None:
    pipeline = parse_pipeline(
        "name: p\noperators:\n- name: a\n  command: [a]\n  requests: {gpu: 1}\n"
        "- name: b\n  command: [b]\n  requests: {gpu: 2}\n- name: c\n  command: [c]\n"
    )
    assert pipeline.gpus == 2
    check_pipeline(pipeline, set(), 2)
    with pytest.raises(PipelineRejected, match='operator "b": requests.gpu is 2, but this host has 1 GPU'):
        check_pipeline(pipeline, set(), 1)
