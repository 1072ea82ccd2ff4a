"""Every key of Clara's pipeline format: applied, refused with a reason naming file, operator and
key, or set aside with a note; and the table in docs/clara-pipelines.md is the one clarad uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clarad.pipelines import parse_pipeline, validate
from clarad.pipelines.keys import IGNORED, REFUSED, table

DOC = Path(__file__).resolve().parents[2] / "docs" / "clara-pipelines.md"
OP = "name: p\noperators:\n- name: a\n  command: [run]\n"

# One definition per refused key, each holding that key (and nothing else wrong).
REFUSED_SAMPLES = {
    "operators[].input[].shape": OP + "  input: [{path: /input, shape: [3]}]\n",
    "operators[].output[].shape": OP + "  output: [{path: /output, shape: [3]}]\n",
    "operators[].services[].import": OP + "  models: [{name: m}]\n  services:\n  - import: {path: trtis.yaml}\n",
    "operators[].import": "name: p\noperators:\n- name: a\n  import: {path: a.yaml}\n  command: [run]\n",
}
IGNORED_SAMPLES = {
    "orchestrator": "orchestrator: Argo\n" + OP,
    "pull-secrets": "pull-secrets: [ngc]\n" + OP,
}
# A Triton service's tag and requests are set aside with a note; another service's are applied.
TRITON_NOTED = {
    "services[0].container.tag": OP + "  models: [{name: m}]\n  services:\n  - name: t\n"
                                      "    container: {image: nvcr.io/nvidia/tritonserver, tag: '21.04'}\n",
    "services[0].requests": OP + "  models: [{name: m}]\n  services:\n  - name: t\n"
                                 "    container: {image: nvcr.io/nvidia/tritonserver}\n    requests: {gpu: 1}\n",
}


def documented() -> list[tuple[str, str, str]]:
    text = DOC.read_text(encoding="utf-8")
    block = text.split("<!-- keys:", 1)[1].split("<!-- end keys -->", 1)[0]
    return [(m.group(1), m.group(2), m.group(3)) for m in re.finditer(r"^\| `([^`]+)` \| (\w+) \| (.*) \|$", block, re.M)]


def test_the_documented_table_is_clarads_table() -> None:
    assert documented() == table()


def test_every_refused_and_ignored_key_has_a_sample() -> None:
    assert sorted(REFUSED_SAMPLES) == sorted(key for key, status, _ in table() if status == REFUSED)
    assert sorted(IGNORED_SAMPLES) == sorted(key for key, status, _ in table() if status == IGNORED)


@pytest.mark.parametrize("key", sorted(REFUSED_SAMPLES))
def test_a_refused_key_names_the_file_the_operator_and_the_key(key: str) -> None:
    why = dict((k, w) for k, _, w in table())[key]
    where = re.sub(r"^operators\[\]\.", "", key).replace("[]", "[0]")
    _pipeline, problems = validate(REFUSED_SAMPLES[key], "sample.yaml", {"m"}, 0, 2)
    assert problems == [f'sample.yaml: operator "a": {where}: {why}']


@pytest.mark.parametrize("key", sorted(IGNORED_SAMPLES))
def test_an_ignored_key_is_accepted_with_a_note_naming_it(key: str) -> None:
    pipeline, problems = validate(IGNORED_SAMPLES[key], "sample.yaml", {"m"}, 0, 2)
    assert problems == []
    assert pipeline is not None
    where = re.sub(r"^operators\[\]\.", 'operator "a": ', key).replace("[]", "[0]")
    assert [note.split(" set aside: ")[0] for note in pipeline.notes] == [f"sample.yaml: {where}"]


@pytest.mark.parametrize("key", sorted(TRITON_NOTED))
def test_a_triton_services_tag_and_requests_are_set_aside_with_a_note(key: str) -> None:
    pipeline, problems = validate(TRITON_NOTED[key], "sample.yaml", {"m"}, 0, 2)
    assert problems == [] and pipeline is not None
    assert [note.split(" set aside: ")[0] for note in pipeline.notes] == [f'sample.yaml: operator "a": {key}']


def test_a_triton_services_variables_are_refused() -> None:
    text = (OP + "  models: [{name: m}]\n  services:\n  - name: t\n"
            "    container: {image: nvcr.io/nvidia/tritonserver}\n    variables: {A: 1}\n")
    assert validate(text, "sample.yaml", {"m"}, 0, 2)[1] == [
        'sample.yaml: operator "a": services[0].variables: variables of the Triton container; the job\'s instance '
        "is clarad's tritonserver, configured by clarad"]


@pytest.mark.parametrize(("text", "where"), [
    ("version: 1\n" + OP, "sample.yaml: version: unknown key (Clara's keys here: api-version, name,"),
    (OP + "  image: x\n", 'sample.yaml: operator "a": image: unknown key'),
    (OP + "  requests: {disk: 1}\n", 'sample.yaml: operator "a": requests.disk: unknown key'),
    (OP + "  input: [{path: /in, mode: ro}]\n", 'sample.yaml: operator "a": input[0].mode: unknown key'),
    (OP + "  models: [{name: m, version: 2}]\n", 'sample.yaml: operator "a": models[0].version: unknown key'),
])
def test_an_unknown_key_is_refused_where_it_is(text: str, where: str) -> None:
    _pipeline, problems = validate(text, "sample.yaml", {"m"}, 0, 2)
    assert len(problems) == 1 and problems[0].startswith(where)


def test_validate_reports_every_problem_not_just_the_first() -> None:
    text = ("name: p\nversion: 2\noperators:\n"
            "- name: a\n  container: {image: x}\n  requests: {gpu: 3}\n"
            "- name: b\n  command: [run]\n  input: [{from: ghost}]\n  output: [{path: /usr/out}]\n")
    _pipeline, problems = validate(text, "many.yaml", set(), 1, 2)
    starts = ["version: unknown key", 'operator "a": requests.gpu is 3',
              'operator "a": container.image: no container runtime is available',
              'operator "b": input[0] from "ghost"', "operator \"b\": output[0].path: '/usr/out' is inside /usr"]
    assert len(problems) == len(starts)
    assert all(problem.startswith(f"many.yaml: {start}") for problem, start in zip(problems, starts)), problems


def test_a_triton_service_maps_its_connections_and_the_models_its_command_names() -> None:
    op = parse_pipeline(OP + "  services:\n  - name: trtis\n    container:\n      image: nvcr.io/nvidia/tensorrtserver\n"
                        "      command: [trtserver, --load-model=seg, --load-model, liver]\n"
                        "    connections:\n      http:\n      - {name: NVIDIA_CLARA_TRTISURI, port: 8000}\n"
                        "      - {name: MY_GRPC, port: 8001}\n      - {name: NO_PORT}\n").operators[0]
    assert op.model_names == ["seg", "liver"]
    assert op.connections == {"NVIDIA_CLARA_TRTISURI": "http", "MY_GRPC": "grpc", "NO_PORT": "http"}


def test_an_operators_own_models_win_over_its_services_command() -> None:
    op = parse_pipeline(OP + "  models: [{name: mine}]\n  services:\n  - name: t\n    container:\n"
                        "      image: tritonserver\n      command: [tritonserver, --load-model=other]\n").operators[0]
    assert op.model_names == ["mine"]


def test_stream_types_are_applied_and_element_types_must_match() -> None:
    text = ("api-version: 0.5.0\nname: p\noperators:\n"
            "- name: a\n  command: [run]\n  output: [{name: dcm, type: stream, element-type: dicom, path: /out}]\n"
            "- name: b\n  command: [run]\n  input: [{from: a, name: dcm, type: stream, element-type: nifti, path: /in}]\n")
    _pipeline, problems = validate(text, "typed.yaml", set(), 0, 2)
    assert problems == ['typed.yaml: operator "b": input[0]: element-type \'nifti\' does not match \'dicom\' of operator "a"']
    _pipeline, problems = validate(text.replace("nifti", "dicom"), "typed.yaml", set(), 0, 2)
    assert problems == []


@pytest.mark.parametrize("version", ["0.2.0", "0.3.0", 0.4, "0.5.0", "0.6.0", "0.7.3", "0.8.1"])
def test_every_clara_api_version_is_read(version: object) -> None:
    assert parse_pipeline(f"api-version: {version}\n" + OP).api_version == str(version)


@pytest.mark.parametrize("version", ["0.1.0", "0.9.0", "1.0", "latest"])
def test_an_api_version_outside_clara_s_range_is_refused(version: str) -> None:
    _pipeline, problems = validate(f"api-version: {version}\n" + OP, "v.yaml", set(), 0, 2)
    assert problems and problems[0].startswith("v.yaml: api-version: ")


@pytest.mark.parametrize(("variables", "problem"), [
    ("{'A=B': 1}", "not an environment variable name"),
    ("{'1A': 1}", "not an environment variable name"),
    ('{A: "x\\0y"}', "a NUL character cannot be passed"),
])
def test_variables_that_cannot_be_an_environment_are_refused_at_ingest(variables: str, problem: str) -> None:
    _pipeline, problems = validate(OP + f"  variables: {variables}\n", "env.yaml", set(), 0, 2)
    assert len(problems) == 1 and problem in problems[0] and 'operator "a": variables' in problems[0]


def test_one_operators_models_must_fit_one_instance() -> None:
    text = OP + "  models: [{name: m}, {name: n}, {name: o}]\n"
    _pipeline, problems = validate(text, "many-models.yaml", {"m", "n", "o"}, 0, 2, max_models=2)
    assert problems == ['many-models.yaml: operator "a": asks for 3 models; one instance may hold at most 2 '
                        "(max_models_per_instance)"]
    assert validate(text, "many-models.yaml", {"m", "n", "o"}, 0, 2, max_models=3)[1] == []
