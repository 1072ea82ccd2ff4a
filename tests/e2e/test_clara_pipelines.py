"""Real Clara pipeline files through a real `clarad run`: NVIDIA's dicom-test pipeline with its images
replaced by a Clara-style operator script, which runs unchanged in its own mount namespace (bwrap)
and, without one, from the real directories its variables name; container operators refused and
never run; parameters; a Triton service mapped onto the job's instance; pipelines by id; job
filters; logs followed; CPU pins; operators in parallel; finished jobs removed, oldest first.
Container operators (tests/e2e/test_container_operators.py) are off here: operator_runtime = host.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
import yaml

from clarad.containers.engine import NO_RUNTIME
from tests.e2e.clarad_process import DEMO, Clarad
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
CLARA = REPO / "tests" / "corpus" / "pipelines" / "clara"
OPERATORS = Path(__file__).resolve().parent / "operators"
CLARA_STYLE = str(OPERATORS / "clara_style.py")
NO_BWRAP = "bwrap is not installed here (apt-get install bubblewrap): the namespace path cannot run"


def dicom_test(container_mode: bool) -> str:
    """NVIDIA's dicom-test pipeline with only its images replaced by the Clara-style script."""
    data = yaml.safe_load((CLARA / "dicom-adapter-dicom-test.yaml").read_text())
    for op in data["operators"]:
        op["container"] = {"command": [sys.executable, CLARA_STYLE,
                                       *(["--container"] if container_mode and op["name"] == "dicom-test" else [])]}
    return yaml.safe_dump(data)


def started(state: Path, **settings: str) -> Clarad:
    return Clarad(state, **settings).start()


@pytest.fixture(scope="module")
def clarad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clarad]:
    daemon = started(tmp_path_factory.mktemp("clara") / "state", CLARAD_OPERATOR_RUNTIME="host")  # no containers
    daemon.drop(DEMO / "models" / "affine", "models")
    wait_for(lambda: daemon.ask("models.list"), 30, "the model to be accepted")
    yield daemon
    daemon.stop_if_running()


def add_pipeline(daemon: Clarad, text: str, name: str) -> dict:
    daemon.drop_text(text, "pipelines", f"{name}.yaml")
    return wait_for(lambda: next((p for p in daemon.ask("pipelines.list") if p["name"] == name), None), 30,
                    f"pipeline {name}")


def run_job(daemon: Clarad, pipeline: str, payload: Path) -> dict:
    known = {job["id"] for job in daemon.ask("jobs.list")}
    daemon.drop(payload, f"jobs/{pipeline}")
    return daemon.wait_job_stopped(daemon.wait_new_job(known))


def report(job: dict, operator: str, *output: str) -> dict:
    return json.loads(Path(job["directory"], "operators", operator, *output, "report.json").read_text())


def dicom_payload(tmp_path: Path) -> Path:
    payload = tmp_path / "study"
    (payload / "series").mkdir(parents=True)
    (payload / "a.dcm").write_text("a")
    (payload / "series" / "b.dcm").write_text("b")
    return payload


@pytest.mark.skipif(shutil.which("bwrap") is None, reason=NO_BWRAP)
def test_a_clara_style_operator_runs_unchanged_at_input_and_output(clarad: Clarad, tmp_path: Path) -> None:
    add_pipeline(clarad, dicom_test(container_mode=True), "dicom-test-pipeline")
    job = run_job(clarad, "dicom-test-pipeline", dicom_payload(tmp_path))
    assert job["status"] == "HEALTHY", job["reason"]
    first = report(job, "dicom-test", "dcmout")
    assert (first["input_dir"], first["output_dir"]) == ("/input", "/output")
    assert (first["inputpaths"], first["outputpaths"], first["logs"]) == (":/input", "dcmout:/output", "/logs")
    assert first["files"] == ["a.dcm", "series/b.dcm"]
    assert first["slash_input"] == ["a.dcm", "series"]
    real = Path(job["directory"])
    assert (real / "operators" / "dicom-test" / "dcmout" / "written-at-slash-output").read_text() == "yes"
    assert (real / "logs" / "dicom-test" / "app.log").read_text() == "logged"
    second = report(job, "register-dicom-output")
    assert second["inputpaths"] == "dcmout:/input"
    assert second["files"] == ["a.dcm", "report.json", "series/b.dcm", "written-at-slash-output"]
    assert not Path("/input").exists() and not Path("/output").exists()  # nothing made on the host


def test_without_a_namespace_the_variables_name_the_real_directories(tmp_path: Path) -> None:
    daemon = started(tmp_path / "state", CLARAD_OPERATOR_MOUNT_NAMESPACE="off")
    try:
        add_pipeline(daemon, dicom_test(container_mode=False), "dicom-test-pipeline")
        job = run_job(daemon, "dicom-test-pipeline", dicom_payload(tmp_path))
        assert job["status"] == "HEALTHY", job["reason"]
        real = Path(job["directory"])
        first = report(job, "dicom-test", "dcmout")
        assert first["inputpaths"] == f":{real / 'input'}"
        assert first["outputpaths"] == f"dcmout:{real / 'operators' / 'dicom-test' / 'dcmout'}"
        assert first["files"] == ["a.dcm", "series/b.dcm"]
        assert report(job, "register-dicom-output")["input_dir"] == str(real / "operators" / "dicom-test" / "dcmout")
        assert "operators get the real directories in their variables" in daemon.log.read_text()
    finally:
        daemon.stop()


def test_an_operator_with_an_image_is_refused_at_ingest_and_never_run(clarad: Clarad, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    data = yaml.safe_load((CLARA / "dicom-adapter-dicom-test.yaml").read_text())
    data["name"] = "boxed"
    data["operators"][1]["container"]["command"] = ["touch", str(marker)]
    clarad.drop_text(yaml.safe_dump(data), "pipelines", "boxed.yaml")
    reason = wait_for(lambda: next(iter((clarad.state / "rejected").glob("*-boxed.yaml.reason")), None), 30,
                      "the rejection")
    lines = reason.read_text().splitlines()
    assert lines[0] == f'boxed.yaml: operator "dicom-test": container.image: {NO_RUNTIME}'
    assert "apt-get install podman runc" in lines[0]
    assert any(line.startswith('boxed.yaml: operator "register-dicom-output": container.image') for line in lines)
    assert "boxed" not in {p["name"] for p in clarad.ask("pipelines.list")}
    assert not marker.exists()


PARAMETERS = f"""
name: params
parameters:
  greeting: hello
  who:
operators:
- name: say
  command: ["{sys.executable}", "-c", "import os; open(os.environ['NVIDIA_CLARA_OUTPUT'] + '/said', 'w').write('${{{{ greeting }}}} ${{{{ who }}}}')"]
"""


def test_parameters_from_the_job_override_defaults_and_a_missing_one_refuses_the_job(
        clarad: Clarad, tmp_path: Path) -> None:
    add_pipeline(clarad, PARAMETERS, "params")
    payload = tmp_path / "p.txt"
    payload.write_text("x")
    created = clarad.cli("jobs", "create", "params", str(payload), "--param", "who=world", "--param", "greeting=hi")
    assert created.returncode == 0, created.stderr
    job = clarad.wait_job_stopped(created.stdout.split()[1])
    assert (Path(job["directory"]) / "operators" / "say" / "said").read_text() == "hi world"
    assert yaml.safe_load((Path(job["directory"]) / "pipeline.yaml").read_text())["parameters"] == {
        "greeting": "hi", "who": "world"}
    missing = clarad.cli("jobs", "create", "params", str(payload))
    assert missing.returncode == 1
    assert "parameter 'who' has no value: give it when creating the job (--param who=VALUE)" in missing.stderr
    unknown = clarad.cli("jobs", "create", "params", str(payload), "--param", "who=a", "--param", "colour=red")
    assert "argument 'colour': the pipeline declares no parameter 'colour'" in unknown.stderr
    clarad.drop_text("x", "jobs/params", "dropped.txt")  # a drop has the defaults only: 'who' has none
    reason = wait_for(lambda: next(iter((clarad.state / "rejected").glob("*-dropped.txt.reason")), None), 30,
                      "the dropped payload's rejection")
    assert "parameter 'who' has no value" in reason.read_text()


def test_a_triton_service_is_the_jobs_instance_under_the_names_of_its_connections(clarad: Clarad,
                                                                                 tmp_path: Path) -> None:
    add_pipeline(clarad, f"""
api-version: 0.4.0
name: with-service
operators:
- name: infer
  command: ["{sys.executable}", "-c", "import json, os; json.dump(dict(os.environ), open(os.environ['NVIDIA_CLARA_OUTPUT'] + '/env.json', 'w'))"]
  services:
  - name: trtis
    container:
      image: nvcr.io/nvidia/tensorrtserver
      tag: 19.08-py3
      command: [trtserver, --load-model=affine]
    requests: {{gpu: 1}}
    connections:
      http:
      - {{name: NVIDIA_CLARA_TRTISURI, port: 8000}}
      - {{name: MY_TRITON_GRPC, port: 8001}}
""", "with-service")
    payload = tmp_path / "p.txt"
    payload.write_text("x")
    job = run_job(clarad, "with-service", payload)
    assert job["status"] == "HEALTHY", job["reason"]
    env = json.loads((Path(job["directory"]) / "operators" / "infer" / "env.json").read_text())
    instance = next(i for i in clarad.ask("status")["instances"] if i["id"] == job["instance"])
    assert (env["NVIDIA_CLARA_TRTISURI"], env["MY_TRITON_GRPC"]) == (instance["http"], instance["grpc"])
    assert "affine" in job["models"]
    assert grpcclient.InferenceServerClient(env["MY_TRITON_GRPC"]).is_model_ready("affine")
    log = clarad.log.read_text()
    assert 'with-service.yaml: operator "infer": services[0].container.tag set aside' in log
    assert 'with-service.yaml: operator "infer": services[0].requests set aside' in log


def test_pipelines_by_id_show_remove_and_jobs_listed_by_filter(clarad: Clarad, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    record = add_pipeline(clarad, f"""
name: gated
description: waits for a file
operators:
- name: waits
  command: ["{sys.executable}", "-c", "import os, time\\nwhile not os.path.exists('{gate}'): time.sleep(0.02)"]
  requests: {{cpu: 1}}
""", "gated")
    shown = clarad.cli("pipelines", "show", record["id"][:8])
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[:2] == [f"pipeline gated (id {record['id']}), api-version -",
                                             "description: waits for a file"]
    payload = tmp_path / "p.txt"
    payload.write_text("x")
    created = clarad.cli("jobs", "create", record["id"], str(payload), "--name", "by-id")
    assert created.returncode == 0, created.stderr
    job_id = created.stdout.split()[1]
    wait_for(lambda: clarad.ask("jobs.show", id=job_id)["state"] == "RUNNING", 30, "the job to run")
    refused = clarad.cli("pipelines", "remove", "gated")
    assert refused.returncode == 1
    assert f"pipeline gated has 1 job(s) waiting or running ({job_id}): wait for them, or use --force" in refused.stderr
    assert [j["id"] for j in clarad.ask("jobs.list", pipeline=record["id"], state="running")] == [job_id]
    assert clarad.ask("jobs.list", pipeline="gated", status="healthy") == []
    forced = clarad.cli("pipelines", "remove", record["id"], "--force")
    assert forced.returncode == 0, forced.stderr
    assert "gated" not in {p["name"] for p in clarad.ask("pipelines.list")}
    assert not (clarad.state / "pipelines" / "gated.yaml").exists()
    assert not (clarad.state / "inbox" / "jobs" / "gated").exists()
    gate.write_text("")
    job = clarad.wait_job_stopped(job_id)
    assert (job["status"], job["name"]) == ("HEALTHY", "by-id")  # it ran on after its pipeline went
    listed = clarad.cli("jobs", "list", "--pipeline", "gated", "--status", "healthy")
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == [job_id]


def test_logs_follow_prints_lines_as_they_come_and_ends_with_the_job(clarad: Clarad, tmp_path: Path) -> None:
    add_pipeline(clarad, f"""
name: talks
operators:
- name: talker
  command: ["{sys.executable}", "{OPERATORS / 'rendezvous.py'}", --lines, "3"]
""", "talks")
    payload = tmp_path / "talk"
    payload.mkdir()
    created = clarad.cli("jobs", "create", "talks", str(payload))
    job_id = created.stdout.split()[1]
    job_payload = Path(clarad.ask("jobs.show", id=job_id)["directory"]) / "input"
    follower = subprocess.Popen([sys.executable, "-m", "clarad", "jobs", "logs", job_id, "--follow", "--state-dir",
                                 str(clarad.state)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=clarad.env)
    try:
        assert follower.stdout is not None
        for i in range(3):
            (job_payload / f"next-{i}").write_text("")
            assert follower.stdout.readline() == f"line {i}\n"  # printed before the job ends
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert (follower.returncode, out) == (0, "")
    assert err.startswith(f"job {job_id} stopped HEALTHY")


def test_operators_run_in_parallel_and_requests_cpu_pins_them(clarad: Clarad, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    meet = [sys.executable, str(OPERATORS / "rendezvous.py"), str(shared)]
    add_pipeline(clarad, yaml.safe_dump({"name": "fan", "operators": [
        {"name": "start", "command": ["true"]},
        {"name": "left", "command": [*meet, "left", "right", "middle"], "input": [{"from": "start"}]},
        {"name": "middle", "command": [*meet, "middle", "left", "right"], "input": [{"from": "start"}]},
        {"name": "right", "command": [*meet, "right", "left", "middle"], "input": [{"from": "start"}]},
        {"name": "join", "command": [sys.executable, CLARA_STYLE], "requests": {"cpu": 1},
         "input": [{"from": "left"}, {"from": "middle"}, {"from": "right"}]},
    ]}), "fan")
    payload = tmp_path / "p.txt"
    payload.write_text("x")
    job = run_job(clarad, "fan", payload)
    assert job["status"] == "HEALTHY", job["reason"]
    joined = report(job, "join")
    assert joined["files"] == ["left.done"]  # the first input (split(":")[1]); the others are in INPUTPATHS
    assert [path.split("/")[-1] for path in joined["inputpaths"].split(":")[1::2]] == ["left", "middle", "right"]
    assert len(joined["affinity"]) == 1


def test_finished_jobs_are_removed_oldest_first_beyond_the_size_limit(tmp_path: Path) -> None:
    daemon = started(tmp_path / "state", CLARAD_RESCAN_SECONDS="0.2", CLARAD_FINISHED_JOBS_MAX_BYTES="250000")
    try:
        add_pipeline(daemon, "name: keep\noperators:\n- name: a\n  command: [\"true\"]\n", "keep")
        jobs = []
        for n in range(3):
            payload = tmp_path / f"payload-{n}"
            payload.write_bytes(b"x" * 100_000)  # two such jobs fit in the limit, three do not
            jobs.append(run_job(daemon, "keep", payload)["id"])
        wait_for(lambda: [j["id"] for j in daemon.ask("jobs.list")] == [jobs[2], jobs[1]], 30, "the oldest job to go")
        assert sorted(p.name for p in (daemon.state / "jobs").iterdir()) == sorted(jobs[1:])
    finally:
        daemon.stop()


def test_pipelines_validate_prints_every_problem_and_installs_nothing(clarad: Clarad, tmp_path: Path) -> None:
    checked = clarad.cli("pipelines", "validate", str(CLARA / "sizing-tool-nullpipeline.yaml"))
    assert checked.returncode == 1
    lines = checked.stdout.splitlines()
    assert len(lines) == 4  # three images without a container runtime (operator_runtime = host), a GPU the host lacks
    assert all(line.startswith('sizing-tool-nullpipeline.yaml: operator "null-') for line in lines)
    assert sum("container.image: no container runtime is available" in line for line in lines) == 3
    fine = tmp_path / "fine.yaml"
    fine.write_text(dicom_test(container_mode=False).replace("dicom-test-pipeline", "never-installed"))
    checked = clarad.cli("pipelines", "validate", str(fine))
    assert (checked.returncode, checked.stdout.splitlines()[0]) == (0, "fine.yaml: no problem")
    assert "fine.yaml: pull-secrets set aside: Kubernetes image pull secrets; no images are pulled" in checked.stdout
    assert "never-installed" not in {p["name"] for p in clarad.ask("pipelines.list")}
