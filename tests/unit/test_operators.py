"""An operator's environment (the names in docs/clara-compat.md), $(VAR) expansion, workspace paths."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from clarad.children import ChildRegistry
from clarad.operators import (
    TRITON_VARIABLES,
    Endpoints,
    Outcome,
    Workspace,
    command_problem,
    expand,
    operator_env,
    run_operator,
)
from clarad.pipelines import Operator, parse_pipeline
from clarad.store import Store

ROOT = Path("/state/jobs/j1")
WS = Workspace(ROOT)
TRITON = Endpoints(grpc="127.0.0.1:8001", http="127.0.0.1:8000")

PIPELINE = parse_pipeline(
    "name: p\noperators:\n"
    "- name: reader\n  command: [r]\n  input: [{path: /input}]\n"
    "  output: [{name: image}, {name: report}]\n"
    "- name: seg\n  command: [s]\n  models: [{name: affine}]\n"
    "  input: [{from: reader, name: image}, {from: plain}, {path: /raw}]\n"
    "  variables: {NVIDIA_CLARA_JOBID: spoofed, CLARAD_OUTPUT_0: spoofed, MINE: kept, DEBUG: true}\n"
    "- name: plain\n  command: [p]\n"
)
READER, SEG, PLAIN = PIPELINE.operators


def env_of(op: Operator, triton: Endpoints | None = TRITON, base: dict[str, str] | None = None) -> dict[str, str]:
    return operator_env(base or {}, op, "j1", "scan-42", WS, triton, gpus="0")


def test_operator_with_models_gets_all_four_triton_names() -> None:
    env = env_of(SEG)
    assert {name: env[name] for name in TRITON_VARIABLES} == {
        "NVIDIA_TRITON_GRPCURI": "127.0.0.1:8001",
        "NVIDIA_TRITON_HTTPURI": "127.0.0.1:8000",
        "CLARA_TRITON_URI": "127.0.0.1:8000",
        "NVIDIA_CLARA_TRTISURI": "127.0.0.1:8000",
    }


def test_operator_without_models_gets_no_triton_names() -> None:
    env = env_of(PLAIN)
    assert not set(TRITON_VARIABLES) & set(env)


def test_operator_with_models_but_no_endpoints_gets_no_triton_names() -> None:
    env = env_of(SEG, triton=None)
    assert not set(TRITON_VARIABLES) & set(env)


def test_every_operator_gets_job_identity_and_nosynclock() -> None:
    env = env_of(PLAIN)
    assert (env["NVIDIA_CLARA_JOBID"], env["NVIDIA_CLARA_JOBNAME"], env["NVIDIA_CLARA_STAGENAME"]) == (
        "j1", "scan-42", "plain")
    assert env["NVIDIA_CLARA_NOSYNCLOCK"] == "1"
    assert env["NVIDIA_CLARA_LOGS"] == str(ROOT / "logs" / "plain")
    assert env["NVIDIA_CLARA_PUBLISHING"] == str(ROOT / "publish")
    assert env["CUDA_VISIBLE_DEVICES"] == "0"


def test_inputs_map_to_payload_and_upstream_outputs() -> None:
    env = env_of(SEG)
    assert env["NVIDIA_CLARA_INPUT"] == str(ROOT / "operators" / "reader" / "image")
    assert (env["CLARAD_INPUT_0"], env["CLARAD_INPUT_1"], env["CLARAD_INPUT_2"]) == (
        str(ROOT / "operators" / "reader" / "image"), str(ROOT / "operators" / "plain"), str(ROOT / "input"))
    assert "CLARAD_INPUT_3" not in env


def test_named_outputs_each_get_their_directory() -> None:
    env = env_of(READER)
    assert env["NVIDIA_CLARA_INPUT"] == env["CLARAD_INPUT_0"] == str(ROOT / "input")
    assert env["NVIDIA_CLARA_OUTPUT"] == env["CLARAD_OUTPUT_0"] == str(ROOT / "operators" / "reader" / "image")
    assert env["CLARAD_OUTPUT_1"] == str(ROOT / "operators" / "reader" / "report")
    assert "CLARAD_OUTPUT_2" not in env


def test_operator_without_declared_input_or_output_uses_payload_and_its_own_directory() -> None:
    env = env_of(PLAIN)
    assert env["NVIDIA_CLARA_INPUT"] == str(ROOT / "input")
    assert "CLARAD_INPUT_0" not in env
    assert env["NVIDIA_CLARA_OUTPUT"] == env["CLARAD_OUTPUT_0"] == str(ROOT / "operators" / "plain")


def test_operator_variables_are_present_but_clarads_names_win() -> None:
    env = env_of(SEG)
    assert (env["MINE"], env["DEBUG"]) == ("kept", "true")
    assert env["NVIDIA_CLARA_JOBID"] == "j1"
    assert env["CLARAD_OUTPUT_0"] == str(ROOT / "operators" / "seg")


def test_inherited_triton_and_clarad_variables_are_removed() -> None:
    base = {"PATH": "/usr/bin", "HOME": "/root", "CLARAD_STATE_DIR": "/x", "CLARAD_INPUT_7": "/stale",
            "NOTIFY_SOCKET": "/run/systemd/notify", **{name: "stale:1" for name in TRITON_VARIABLES}}
    env = env_of(PLAIN, base=base)
    assert (env["PATH"], env["HOME"]) == ("/usr/bin", "/root")
    assert {k for k in env if k.startswith("CLARAD_")} == {"CLARAD_OUTPUT_0"}
    assert not set(TRITON_VARIABLES) & set(env)
    assert "NOTIFY_SOCKET" not in env


def test_inherited_triton_names_are_replaced_for_an_operator_with_models() -> None:
    env = env_of(SEG, base={name: "stale:1" for name in TRITON_VARIABLES})
    assert env["NVIDIA_TRITON_GRPCURI"] == "127.0.0.1:8001"


def test_base_environment_is_not_modified() -> None:
    base = {"CLARAD_X": "1", "NVIDIA_TRITON_GRPCURI": "old:1"}
    env_of(SEG, base=base)
    assert base == {"CLARAD_X": "1", "NVIDIA_TRITON_GRPCURI": "old:1"}


@pytest.mark.parametrize(("argv", "expected"), [
    (["run", "$(A)"], ["run", "alpha"]),
    (["--in=$(A)/$(B)"], ["--in=alpha/beta"]),
    (["$$(A)"], ["$(A)"]),
    (["cost: $$5"], ["cost: $5"]),
    (["$(UNKNOWN)", "$(A"], ["$(UNKNOWN)", "$(A"]),
    (["$A", "${A}"], ["$A", "${A}"]),
    (["$$$(A)"], ["$alpha"]),
])
def test_expand_follows_clara_rules(argv: list[str], expected: list[str]) -> None:
    assert expand(argv, {"A": "alpha", "B": "beta"}) == expected


def test_expand_does_not_expand_a_value_twice() -> None:
    assert expand(["$(A)"], {"A": "$(B)", "B": "no"}) == ["$(B)"]


def test_workspace_paths() -> None:
    assert (WS.payload, WS.logs, WS.publish) == (ROOT / "input", ROOT / "logs", ROOT / "publish")
    assert WS.output_dir("seg") == ROOT / "operators" / "seg"
    assert WS.output_dir("seg", "mask") == ROOT / "operators" / "seg" / "mask"
    assert WS.log_file("seg") == ROOT / "logs" / "seg.log"
    assert WS.app_logs("seg") == ROOT / "logs" / "seg"
    assert WS.inputs(SEG) == [ROOT / "operators" / "reader" / "image", ROOT / "operators" / "plain", ROOT / "input"]
    assert WS.outputs(READER) == [ROOT / "operators" / "reader" / "image", ROOT / "operators" / "reader" / "report"]
    assert WS.outputs(PLAIN) == [ROOT / "operators" / "plain"]


CLARA_STYLE = parse_pipeline(
    "name: c\noperators:\n"
    "- name: reader\n  command: [r]\n  input: [{path: /input}]\n  output: [{name: dcmout, path: /output}]\n"
    "- name: classify\n  command: [c]\n"
    "  input: [{from: reader, name: dcmout, path: /label_image}, {path: /input}]\n"
    "  output: [{name: classification, path: /output}, {name: rendering, path: /publish}]\n"
    "- name: trtis-user\n  command: [t]\n  models: [{name: affine}]\n"
    "  services:\n  - name: trtis\n    container: {image: nvcr.io/nvidia/tritonserver}\n"
    "    connections: {http: [{name: MY_TRITON, port: 8000}, {name: MY_GRPC, port: 8001}]}\n"
)
C_READER, C_CLASSIFY, C_TRITON = CLARA_STYLE.operators


def test_inputpaths_and_outputpaths_are_name_path_pairs_as_nvidia_code_splits_them() -> None:
    env = env_of(C_READER)
    assert env["NVIDIA_CLARA_INPUTPATHS"] == f":{ROOT / 'input'}"
    assert env["NVIDIA_CLARA_INPUTPATHS"].split(":")[1] == str(ROOT / "input")  # clara-dicom-adapter's dicom-test
    assert env["NVIDIA_CLARA_OUTPUTPATHS"].split(":") == ["dcmout", str(ROOT / "operators" / "reader" / "dcmout")]


def test_several_entries_keep_every_odd_field_a_path() -> None:
    fields = env_of(C_CLASSIFY)["NVIDIA_CLARA_INPUTPATHS"].split(":")
    assert fields[0::2] == ["dcmout", ""]
    assert fields[1::2] == [str(ROOT / "operators" / "reader" / "dcmout"), str(ROOT / "input")]


def test_in_its_own_namespace_an_operator_is_given_its_declared_paths() -> None:
    env = operator_env({}, C_CLASSIFY, "j1", "scan", WS, None, namespaced=True)
    assert env["NVIDIA_CLARA_INPUTPATHS"] == "dcmout:/label_image::/input"
    assert env["NVIDIA_CLARA_OUTPUTPATHS"] == "classification:/output:rendering:/publish"
    assert (env["NVIDIA_CLARA_INPUT"], env["NVIDIA_CLARA_OUTPUT"]) == ("/input", "/output")  # Clara's, not the first
    assert (env["NVIDIA_CLARA_LOGS"], env["NVIDIA_CLARA_PUBLISHING"]) == ("/logs", "/publish")
    assert env["CLARAD_INPUT_0"] == str(ROOT / "operators" / "reader" / "dcmout")  # always the real directory


def test_without_a_namespace_the_default_paths_are_real_directories() -> None:
    env = env_of(C_CLASSIFY)
    assert env["NVIDIA_CLARA_INPUT"] == str(ROOT / "input")  # the input declared at /input
    assert env["NVIDIA_CLARA_OUTPUT"] == str(ROOT / "operators" / "classify" / "classification")
    assert env["NVIDIA_CLARA_PUBLISHING"] == str(ROOT / "publish")


def test_the_namespace_binds_inputs_read_only_and_outputs_logs_publish_writable() -> None:
    binds = {(b.seen, b.writable): b.real for b in WS.binds(C_CLASSIFY)}
    assert binds == {
        ("/label_image", False): ROOT / "operators" / "reader" / "dcmout",
        ("/input", False): ROOT / "input",
        ("/output", True): ROOT / "operators" / "classify" / "classification",
        ("/publish", True): ROOT / "operators" / "classify" / "rendering",  # a declared output wins
        ("/logs", True): ROOT / "logs" / "classify",
    }


def test_a_triton_services_connections_point_at_the_jobs_instance() -> None:
    env = env_of(C_TRITON, base={"MY_TRITON": "stale:1"})
    assert (env["MY_TRITON"], env["MY_GRPC"]) == ("127.0.0.1:8000", "127.0.0.1:8001")
    assert env["NVIDIA_CLARA_TRTISURI"] == "127.0.0.1:8000"
    assert "MY_TRITON" not in env_of(C_TRITON, triton=None, base={"MY_TRITON": "stale:1"})


@pytest.mark.parametrize("argv, variables, reason", [
    (["echo", "a\0b"], {}, "argument 1 of its command holds a NUL character"),
    (["echo"], {"A=B": "x"}, "environment variable name 'A=B' is not allowed (empty, or holding '=' or NUL)"),
    (["echo"], {"": "x"}, "environment variable name '' is not allowed (empty, or holding '=' or NUL)"),
    (["echo"], {"V": "x\0y"}, "environment variable V holds a NUL character"),
])
def test_what_exec_would_refuse_is_named_before_the_start(argv: list[str], variables: dict[str, str],
                                                         reason: str) -> None:
    assert command_problem(argv, {"PATH": "/bin", **variables}) == reason


def test_a_valid_command_has_no_problem() -> None:
    assert command_problem(["echo", "$x", "é"], env_of(SEG)) is None


def test_an_operator_exec_would_refuse_faults_with_its_reason_and_starts_nothing(tmp_path: Path) -> None:
    """Before: a ValueError out of the process start ended the job as "internal error" (pipelines now
    refuse such variable names at the drop; an inherited one still reaches this check)."""
    op = parse_pipeline('name: p\noperators:\n- name: bad\n  command: [/bin/true]\n').operators[0]
    workspace = Workspace(tmp_path)
    workspace.logs.mkdir()
    registry = ChildRegistry(Store(tmp_path / "clarad.db"))
    env = {**operator_env({"PATH": os.defpath}, op, "j1", "n", workspace, None), "A=B": "x"}  # e.g. inherited
    outcome = asyncio.run(run_operator(op, op.argv, env, workspace, "j1/bad", registry, grace=1))
    assert outcome == Outcome(False, "cannot start: environment variable name 'A=B' is not allowed (empty, or "
                                     "holding '=' or NUL)", None)
    assert registry.store.children() == []
