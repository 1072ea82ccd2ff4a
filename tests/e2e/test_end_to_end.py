"""clarad end to end: a real `clarad run`, a real tritonserver, real operator processes.

One daemon serves the module (starting Triton costs seconds); each test drops its own files, waits
for its own jobs and assumes nothing another test did, so any order works. The shutdown test stops
a daemon of its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import tritonclient.grpc as grpcclient
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.clarad_process import DEMO, Clarad, demo_pipeline
from tests.waiting import wait_for

TRITON_VARIABLES = {"NVIDIA_TRITON_GRPCURI", "NVIDIA_TRITON_HTTPURI", "CLARA_TRITON_URI", "NVIDIA_CLARA_TRTISURI"}


def start_with_the_demo(state: Path) -> Clarad:
    """A started clarad holding the demo's model and pipeline."""
    daemon = Clarad(state).start()
    daemon.drop(DEMO / "models" / "affine", "models")
    wait_for(lambda: daemon.ask("models.list"), 30, "the model to be accepted")
    daemon.drop_text(demo_pipeline(), "pipelines", "affine-demo.yaml")
    wait_for(lambda: daemon.ask("pipelines.list"), 30, "the pipeline to be accepted")
    return daemon


@pytest.fixture(scope="module")
def clarad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clarad]:
    daemon = start_with_the_demo(tmp_path_factory.mktemp("e2e") / "state")
    yield daemon
    if daemon.proc and daemon.proc.poll() is None:
        daemon.stop()


def run_job(clarad: Clarad, pipeline: str, text: str, name: str) -> dict:
    known = {job["id"] for job in clarad.ask("jobs.list")}
    clarad.drop_text(text, f"jobs/{pipeline}", name)
    return clarad.wait_job_stopped(clarad.wait_new_job(known))


def outputs(job: dict, operator: str, file: str) -> dict:
    return json.loads((Path(job["directory"]) / "operators" / operator / file).read_text())


def test_job_ends_healthy_with_the_values_the_model_computed(clarad: Clarad) -> None:
    job = run_job(clarad, "affine-demo", "1 2 3\n", "first.txt")
    assert (job["state"], job["status"]) == ("STOPPED", "HEALTHY"), job["reason"]
    assert [op["state"] for op in job["operators"]] == ["COMPLETED", "COMPLETED"]
    assert outputs(job, "infer", "result.json")["y"] == [3.0, 5.0, 7.0]  # affine: 2x + 1
    model = clarad.ask("models.list")[0]
    assert job["models"] == {"affine": model["digest"]}
    assert json.loads((Path(job["directory"]) / "status.json").read_text())["status"] == "HEALTHY"


def test_operators_see_triton_and_job_variables_only_where_due(clarad: Clarad) -> None:
    job = run_job(clarad, "affine-demo", "10\n", "variables.txt")
    instance = next(i for i in clarad.ask("status")["instances"] if i["id"] == job["instance"])
    infer = outputs(job, "infer", "env.json")
    assert infer["NVIDIA_TRITON_GRPCURI"] == instance["grpc"]
    assert infer["NVIDIA_TRITON_HTTPURI"] == infer["CLARA_TRITON_URI"] == infer["NVIDIA_CLARA_TRTISURI"] == instance["http"]
    assert (infer["NVIDIA_CLARA_JOBID"], infer["NVIDIA_CLARA_JOBNAME"], infer["NVIDIA_CLARA_STAGENAME"]) == (
        job["id"], "variables.txt", "infer")
    seen = ("/input", str(Path(job["directory"]) / "operators" / "prepare"))  # declared where bwrap gives it, else real
    assert infer["NVIDIA_CLARA_INPUT"] in seen
    assert infer["NVIDIA_CLARA_INPUTPATHS"] == f"prepare:{infer['NVIDIA_CLARA_INPUT']}"
    prepare = outputs(job, "prepare", "env.json")
    assert not TRITON_VARIABLES & set(prepare)
    assert prepare["NVIDIA_CLARA_STAGENAME"] == "prepare"
    assert prepare["NVIDIA_CLARA_NOSYNCLOCK"] == "1"


def test_second_job_reuses_the_warm_instance_without_loading_again(clarad: Clarad) -> None:
    before = run_job(clarad, "affine-demo", "0\n", "warm-1.txt")
    hits = clarad.metric("clarad_placements_total", reuse="hit")
    after = run_job(clarad, "affine-demo", "4 5\n", "warm-2.txt")
    assert after["status"] == "HEALTHY", after["reason"]
    assert outputs(after, "infer", "result.json")["y"] == [9.0, 11.0]
    assert after["instance"] == before["instance"]
    instance = next(i for i in clarad.ask("status")["instances"] if i["id"] == after["instance"])
    assert instance["loads"] == {"affine": 1}
    assert clarad.metric("clarad_model_loads_total", model="affine") == 1
    assert clarad.metric("clarad_placements_total", reuse="hit") == hits + 1
    index = grpcclient.InferenceServerClient(instance["grpc"]).get_model_repository_index()
    assert [(m.name, m.state) for m in index.models if m.state] == [("affine", "READY")]


def test_jobs_create_copies_the_payload_and_keeps_its_priority(clarad: Clarad, tmp_path: Path) -> None:
    payload = tmp_path / "numbers.txt"
    payload.write_text("7")
    created = clarad.cli("jobs", "create", "affine-demo", str(payload), "--name", "by-cli", "-i", "higher")
    assert created.returncode == 0, created.stderr
    job_id = created.stdout.split()[1]
    job = clarad.wait_job_stopped(job_id)
    assert (job["status"], job["name"], job["priority"]) == ("HEALTHY", "by-cli", "high")
    assert outputs(job, "infer", "result.json")["y"] == [15.0]
    assert payload.read_text() == "7"  # copied, not taken
    refused = clarad.cli("jobs", "create", "no-such-pipeline", str(payload))
    assert (refused.returncode, refused.stderr.strip()) == (
        1, "clarad: no pipeline named 'no-such-pipeline': drop its definition into inbox/pipelines first")


def test_failing_operator_faults_the_job_and_what_follows(clarad: Clarad) -> None:
    failing = f"""
name: failing
operators:
- name: breaks
  command: ["{sys.executable}", "-c", "import sys; print('boom'); sys.exit(3)"]
- name: after
  command: ["{sys.executable}", "-c", "pass"]
  input: [{{from: breaks}}]
"""
    clarad.drop_text(failing, "pipelines", "failing.yaml")
    job = run_job(clarad, "failing", "x", "payload.txt")
    assert (job["state"], job["status"]) == ("STOPPED", "FAULTED")
    assert "exited with code 3" in job["reason"]
    breaks, after = job["operators"]
    assert (breaks["state"], breaks["exit_code"]) == ("FAULTED", 3)
    assert (after["state"], after["reason"]) == ("FAULTED", "not run: an operator it reads from faulted")
    assert (Path(job["directory"]) / "logs" / "breaks.log").read_text() == "boom\n"
    assert clarad.cli("jobs", "show", job["id"][:10]).stdout.count("FAULTED") >= 2


def test_operator_over_its_memory_request_is_stopped(clarad: Clarad) -> None:
    clarad.drop_text(f"""
name: hungry
operators:
- name: eats
  command: ["{sys.executable}", "-c", "import time; block = bytearray(300 << 20); time.sleep(60)"]
  requests: {{memory: 100}}
""", "pipelines", "hungry.yaml")
    job = run_job(clarad, "hungry", "x", "payload.txt")
    assert job["status"] == "FAULTED"
    assert "more than requests.memory (100 MB): stopped" in job["reason"]
    assert job["operators"][0]["exit_code"] == -15  # SIGTERM, well before the 60 s sleep ends


def test_job_past_its_timeout_is_faulted_and_its_operator_stopped(clarad: Clarad, tmp_path: Path) -> None:
    pidfile = tmp_path / "sleeper.pid"
    clarad.drop_text(f"""
name: slow
timeout: 1
operators:
- name: sleeps
  command: ["{sys.executable}", "-c", "import os, time; open('{pidfile}', 'w').write(str(os.getpid())); time.sleep(120)"]
""", "pipelines", "slow.yaml")
    job = run_job(clarad, "slow", "x", "payload.txt")
    assert (job["status"], job["reason"]) == ("FAULTED", "timed out after 1 s")
    assert job["operators"][0]["state"] == "FAULTED"
    # A loaded machine may time the job out before the operator wrote its pid: look for it by its
    # command line too, which names the pid file.
    assert not [p.pid for p in psutil.process_iter(["cmdline"]) if str(pidfile) in " ".join(p.info["cmdline"] or [])]
    if pidfile.exists():  # gone, or dead and not yet reaped by PID 1 (it ran under bwrap, which died first)
        assert not psutil.pid_exists(pid := int(pidfile.read_text())) or psutil.Process(pid).status() == "zombie"


def test_cancel_stops_a_running_job(clarad: Clarad, tmp_path: Path) -> None:
    clarad.drop_text(f"""
name: long
operators:
- name: waits
  command: ["{sys.executable}", "-c", "import time; print('waiting', flush=True); time.sleep(120)"]
""", "pipelines", "long.yaml")
    known = {job["id"] for job in clarad.ask("jobs.list")}
    clarad.drop_text("x", "jobs/long", "payload.txt")
    job_id = clarad.wait_new_job(known)
    log = Path(clarad.ask("jobs.show", id=job_id)["directory"]) / "logs" / "waits.log"
    wait_for(lambda: log.exists() and log.read_text() == "waiting\n", 30, "the operator to run")
    canceled = clarad.cli("jobs", "cancel", job_id)
    assert canceled.returncode == 0, canceled.stderr
    job = clarad.wait_job_stopped(job_id)
    assert (job["status"], job["reason"]) == ("CANCELED", "canceled")
    assert clarad.cli("jobs", "cancel", job_id).stderr.strip() == f"clarad: job {job_id} already stopped (CANCELED)"


def test_bad_drops_are_rejected_with_a_reason_and_the_daemon_keeps_running(clarad: Clarad, tmp_path: Path) -> None:
    wrong = tmp_path / "misnamed"
    (wrong / "1").mkdir(parents=True)
    (wrong / "1" / "model.py").write_text("")
    (wrong / "config.pbtxt").write_text('name: "other" backend: "python"')
    clarad.drop(wrong, "models")
    clarad.drop_text("name: needs-x\noperators:\n- name: a\n  command: [true]\n  models: [{name: x}]\n",
                     "pipelines", "needs-x.yaml")
    clarad.drop_text("payload", "jobs/affine-demo", ".hidden.partial")  # not a drop yet: ignored
    clarad.drop_text("payload", "jobs", "stray.txt")  # not inside a pipeline's folder
    secret = tmp_path / "secret.txt"
    secret.write_text("not for clarad")
    (clarad.state / "inbox" / "jobs" / "affine-demo" / "link").symlink_to(secret)
    rejected = clarad.state / "rejected"
    reasons = wait_for(lambda: len(list(rejected.glob("*.reason"))) >= 4 and sorted(rejected.glob("*.reason")),
                       30, "four rejections")
    texts = sorted(path.read_text() for path in reasons)
    assert any("misnamed: config.pbtxt names the model 'other'" in text for text in texts)
    assert any("model(s) x asked for by operator(s) a are not in the model repository" in text for text in texts)
    assert "stray.txt: a payload goes into inbox/jobs/<pipeline>/\n" in texts
    assert "link: a symlink; drop the file or directory itself\n" in texts
    assert sorted(p.name.split("-", 1)[1] for p in rejected.iterdir() if not p.name.endswith(".reason")) == [
        "link", "misnamed", "needs-x.yaml", "stray.txt"]
    assert secret.read_text() == "not for clarad"
    assert (clarad.state / "inbox" / "jobs" / "affine-demo" / ".hidden.partial").exists()
    assert clarad.metric("clarad_drops_rejected_total", kind="models", reason="name") == 1
    assert clarad.cli("status").returncode == 0


def test_a_second_daemon_on_the_same_state_is_refused_and_harms_nothing(clarad: Clarad) -> None:
    assert run_job(clarad, "affine-demo", "1\n", "before-a-second-daemon.txt")["status"] == "HEALTHY"  # a Triton runs
    instances = clarad.ask("status")["instances"]
    assert instances
    second = subprocess.run(
        [sys.executable, "-m", "clarad", "run", "--state-dir", str(clarad.state), "--metrics-port", "0"],
        env=clarad.env, capture_output=True, text=True, timeout=60,
    )
    assert second.returncode == 1
    assert f"another clarad is running on {clarad.state} (it holds clarad.lock)" in second.stderr
    assert [(i["id"], i["pid"]) for i in clarad.ask("status")["instances"]] == [(i["id"], i["pid"]) for i in instances]
    assert all(psutil.pid_exists(i["pid"]) for i in instances)


def test_shutdown_leaves_no_triton_process(tmp_path: Path) -> None:
    clarad = start_with_the_demo(tmp_path / "state")  # not the module's: stopping it would end the others
    assert run_job(clarad, "affine-demo", "1\n", "before-shutdown.txt")["status"] == "HEALTHY"
    assert clarad.processes(), "a tritonserver should be running before shutdown"
    assert clarad.stop() == 0
    assert clarad.processes() == []
    assert clarad.cli("status").returncode == 1


def test_each_load_is_measured_and_shown_with_the_model(clarad: Clarad) -> None:
    job = run_job(clarad, "affine-demo", "1\n", "measured.txt")
    assert job["status"] == "HEALTHY", job["reason"]
    shown = clarad.ask("models.show", model="affine")
    (cost,) = [c for c in shown["costs"] if c["digest"] == shown["digest"]]
    assert cost["device"] == "cpu" and cost["loads"] >= 1
    assert 0 < cost["load_seconds"] < 600
    assert cost["memory_bytes"] > 1 << 20  # the model's Python-backend stub process, at least
    assert clarad.metric("clarad_model_cost_seconds", model="affine", device="cpu") == cost["load_seconds"]
    assert clarad.metric("clarad_model_cost_memory_bytes", model="affine", device="cpu") == cost["memory_bytes"]
    text = clarad.cli("models", "show", "affine").stdout
    assert f"{shown['digest'][:12]}  cpu     {cost['loads']}" in text


def test_prometheus_finds_each_instance_metrics_in_the_targets_file(clarad: Clarad) -> None:
    job = run_job(clarad, "affine-demo", "1\n", "scraped.txt")
    assert job["status"] == "HEALTHY", job["reason"]
    groups = json.loads((clarad.state / "triton-targets.json").read_text())
    group = next(g for g in groups if g["labels"]["clarad_instance"] == job["instance"])
    with urllib.request.urlopen(f"http://{group['targets'][0]}/metrics", timeout=10) as response:
        text = response.read().decode()
    served = {s.labels.get("model"): s.value for f in text_string_to_metric_families(text)
              for s in f.samples if f.name == "nv_inference_count"}
    assert served.get("affine", 0) >= 1  # Triton's own count of the inference this job's operator made
    with urllib.request.urlopen(f"http://127.0.0.1:{clarad.metrics_port}/", timeout=10) as response:
        page = response.read().decode()
    assert 'href="/metrics"' in page and f"http://{group['targets'][0]}/metrics" in page
