"""A job whose models do not fit one instance runs on several, with the real Triton: each operator's
models on one instance that serves it alone, every instance leased to that job, all loaded before
the first operator starts. An operator whose own models cannot fit one instance is refused at ingest."""

from __future__ import annotations

import sys
from pathlib import Path

import tritonclient.grpc as grpcclient

from tests.e2e.clarad_process import Clarad
from tests.e2e.test_revision_served import adder
from tests.waiting import wait_for

GATED = Path(__file__).parent / "operators" / "gated_infer.py"


def operator(name: str, model: str) -> str:
    return f"""- name: {name}
  command: ["{sys.executable}", "{GATED}", "{model}"]
  models: [{{name: {model}}}]
"""


def test_a_job_whose_models_need_two_instances_runs_on_two(tmp_path: Path) -> None:
    clarad = Clarad(tmp_path / "state", CLARAD_MAX_MODELS_PER_INSTANCE="1").start()
    try:
        for model, add in (("plus1", 1), ("plus2", 2)):
            assert clarad.cli("models", "add", str(adder(tmp_path, model, add))).returncode == 0
        clarad.drop_text(f"name: both\noperators:\n{operator('one', 'plus1')}{operator('two', 'plus2')}",
                         "pipelines", "both.yaml")
        clarad.drop_text("name: greedy\noperators:\n- name: all\n  command: [\"true\"]\n"
                         "  models: [{name: plus1}, {name: plus2}]\n", "pipelines", "greedy.yaml")
        wait_for(lambda: clarad.ask("pipelines.list"), 30, "the pipeline")
        reason = wait_for(lambda: next((p.read_text() for p in (clarad.state / "rejected").glob("*greedy.yaml.reason")),
                                       None), 30, "the refusal of greedy")
        assert 'operator "all": asks for 2 models; one instance may hold at most 1' in reason

        payload = tmp_path / "payload"
        payload.mkdir()
        (payload / "numbers.txt").write_text("10")
        (payload / "go").write_text("")
        clarad.drop(payload, "jobs/both")
        job = clarad.wait_job_stopped(clarad.wait_new_job(set()))
        assert job["status"] == "HEALTHY", job["reason"]
        results = {op: (Path(job["directory"]) / "operators" / op / "result.json").read_text() for op in ("one", "two")}
        assert results == {"one": '{"y": [11.0]}', "two": '{"y": [12.0]}'}
        first, second = job["instance"].split(",")
        instances = {i["id"]: i for i in clarad.ask("status")["instances"]}
        assert (set(instances[first]["models"]), set(instances[second]["models"])) == ({"plus1"}, {"plus2"})
        assert grpcclient.InferenceServerClient(instances[second]["grpc"]).is_model_ready("plus2")
        assert clarad.metric("clarad_placements_total", reuse="split") == 2
    finally:
        assert clarad.stop() == 0
