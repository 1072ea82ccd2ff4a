"""Container operators through a real `clarad run` and a real podman (runc), with images built offline
(images.py): a two-operator pipeline reading /input and writing /output; a container calling the real
Triton at $NVIDIA_TRITON_GRPCURI; timeout, cancel and a kill -9 of clarad leave no container; a missing
image refuses the job with the line that loads it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from tests.e2e import images
from tests.e2e.clarad_process import DEMO, Clarad, free_port
from tests.waiting import wait_for

pytestmark = [pytest.mark.skipif(images.PODMAN is None, reason=images.NO_PODMAN),
              pytest.mark.skipif(not images.BUSYBOX.exists(), reason=images.NO_BUSYBOX)]

SHOUT = ("mkdir -p /output/text && tr a-z A-Z < /input/words.txt > /output/text/words.txt && "
         "echo \"$NVIDIA_CLARA_INPUTPATHS|$NVIDIA_CLARA_OUTPUTPATHS|$NVIDIA_CLARA_STAGENAME|$(id -u)\" > /output/seen.txt"
         " && echo shouted")
COUNT = "wc -w < /input/text/words.txt > /output/count.txt && cat /input/seen.txt > /output/upstream-seen.txt"


@pytest.fixture(scope="session")
def busybox() -> str:
    return images.image("busybox", {})


@pytest.fixture(scope="session")
def demo_image() -> str:
    """Python with the Triton client and the demo's own operator scripts at /opt/demo."""
    if not images.PYTHON.exists():
        pytest.skip(images.NO_PYTHON)
    scripts = {f"/opt/demo/{name}": (DEMO / "operators" / name).read_text() for name in ("prepare.py", "infer.py")}
    return images.image("demo", scripts, python=True, triton_client=True)


@pytest.fixture(scope="module")
def clarad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clarad]:
    daemon = Clarad(tmp_path_factory.mktemp("containers") / "state", CLARAD_OPERATOR_STOP_GRACE_SECONDS="2").start()
    yield daemon
    daemon.stop_if_running()


def containers(state: Path) -> list[str]:
    """Every container, running or not, labelled with this state directory."""
    assert images.PODMAN is not None
    out = subprocess.run([images.PODMAN, "ps", "--all", "--filter", f"label=clarad.state-dir={state.resolve()}",
                          "--format", "{{.Names}}"], capture_output=True, text=True, check=True).stdout
    return out.split()


def add_pipeline(daemon: Clarad, data: dict, name: str) -> None:
    data["name"] = name
    daemon.drop_text(yaml.safe_dump(data), "pipelines", f"{name}.yaml")
    wait_for(lambda: any(p["name"] == name for p in daemon.ask("pipelines.list")) or rejection(daemon, name), 30,
             f"pipeline {name}")
    assert not rejection(daemon, name)


def rejection(daemon: Clarad, name: str) -> str:
    return "".join(path.read_text() for path in (daemon.state / "rejected").glob(f"*-{name}.yaml.reason"))


def payload(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "payload"
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def start_job(daemon: Clarad, pipeline: str, folder: Path) -> str:
    known = {job["id"] for job in daemon.ask("jobs.list")}
    daemon.drop(folder, f"jobs/{pipeline}")
    return daemon.wait_new_job(known)


def sleeper(image: str, name: str, timeout: float | None = None) -> dict:
    data: dict = {"api-version": "0.4.0", "name": name, "operators": [{
        "name": "nap", "container": {"image": image.rsplit(":", 1)[0], "tag": image.rsplit(":", 1)[1],
                                     "command": ["sleep", "600"]},
        "input": [{"path": "/input"}], "output": [{"path": "/output"}]}]}
    if timeout is not None:
        data["timeout"] = timeout
    return data


def running_container(daemon: Clarad, job_id: str) -> str:
    return wait_for(lambda: next((n for n in containers(daemon.state) if job_id in n), None), 60,
                    "the operator's container to run")


def test_two_container_operators_read_input_and_write_output(clarad: Clarad, busybox: str, tmp_path: Path) -> None:
    repository, tag = busybox.rsplit(":", 1)
    add_pipeline(clarad, {"api-version": "0.4.0", "operators": [
        {"name": "shout", "container": {"image": repository, "tag": tag, "command": ["sh", "-c", SHOUT]},
         "input": [{"path": "/input"}], "output": [{"path": "/output"}]},
        {"name": "count", "container": {"image": repository, "tag": tag, "command": ["sh", "-c", COUNT]},
         "input": [{"from": "shout", "path": "/input"}], "output": [{"path": "/output"}]},
    ]}, "boxed-pair")
    job = clarad.wait_job_stopped(start_job(clarad, "boxed-pair", payload(tmp_path, {"words.txt": "one two three\n"})))
    assert job["status"] == "HEALTHY", job["reason"]
    real = Path(job["directory"])
    assert (real / "operators" / "shout" / "text" / "words.txt").read_text() == "ONE TWO THREE\n"
    assert (real / "operators" / "count" / "count.txt").read_text().strip() == "3"
    assert (real / "operators" / "shout" / "seen.txt").read_text() == ":/input|:/output|shout|0\n"
    assert "shouted" in (real / "logs" / "shout.log").read_text()  # the container's output in the operator's log
    assert containers(clarad.state) == []  # removed once ended


def test_a_container_operator_calls_triton_at_its_grpc_uri(clarad: Clarad, demo_image: str, tmp_path: Path) -> None:
    clarad.drop(DEMO / "models" / "affine", "models")
    wait_for(lambda: any(m["name"] == "affine" for m in clarad.ask("models.list")), 60, "the model")
    repository, tag = demo_image.rsplit(":", 1)
    add_pipeline(clarad, {"api-version": "0.4.0", "operators": [
        {"name": "prepare", "container": {"image": repository, "tag": tag,
                                          "command": ["python3", "/opt/demo/prepare.py"]},
         "input": [{"path": "/input"}], "output": [{"path": "/output"}]},
        {"name": "infer", "container": {"image": repository, "tag": tag,
                                        "command": ["python3", "/opt/demo/infer.py", "--model", "$(MODEL_NAME)"]},
         "variables": {"MODEL_NAME": "affine"}, "models": [{"name": "affine"}],
         "input": [{"from": "prepare", "path": "/input"}], "output": [{"path": "/output"}]},
    ]}, "boxed-affine")
    job = clarad.wait_job_stopped(start_job(clarad, "boxed-affine", payload(tmp_path, {"x.txt": "1 2 3 4"})), 240)
    assert job["status"] == "HEALTHY", job["reason"]
    out = Path(job["directory"]) / "operators" / "infer"
    assert json.loads((out / "result.json").read_text())["y"] == [3.0, 5.0, 7.0, 9.0]
    seen = json.loads((out / "env.json").read_text())
    assert seen["NVIDIA_TRITON_GRPCURI"].startswith("127.0.0.1:")
    assert (seen["NVIDIA_CLARA_INPUT"], seen["NVIDIA_CLARA_OUTPUT"]) == ("/input", "/output")


def test_a_timeout_stops_and_removes_the_container(clarad: Clarad, busybox: str, tmp_path: Path) -> None:
    add_pipeline(clarad, sleeper(busybox, "boxed-timeout", timeout=8), "boxed-timeout")
    job_id = start_job(clarad, "boxed-timeout", payload(tmp_path, {"a": "a"}))
    running_container(clarad, job_id)
    job = clarad.wait_job_stopped(job_id, 90)
    assert (job["status"], job["reason"].startswith("timed out")) == ("FAULTED", True), job["reason"]
    assert containers(clarad.state) == []


def test_a_cancel_stops_and_removes_the_container(clarad: Clarad, busybox: str, tmp_path: Path) -> None:
    add_pipeline(clarad, sleeper(busybox, "boxed-cancel"), "boxed-cancel")
    job_id = start_job(clarad, "boxed-cancel", payload(tmp_path, {"a": "a"}))
    running_container(clarad, job_id)
    clarad.ask("jobs.cancel", id=job_id)
    job = clarad.wait_job_stopped(job_id, 60)
    assert job["status"] == "CANCELED", job["reason"]
    assert containers(clarad.state) == []


def test_a_missing_image_refuses_the_job_with_the_line_that_loads_it(clarad: Clarad, busybox: str,
                                                                    tmp_path: Path) -> None:
    absent = "localhost/clarad-test/never-built"
    repository, tag = busybox.rsplit(":", 1)
    data = sleeper(f"{absent}:1", "boxed-absent")
    data["operators"][0]["input"] = [{"from": "first", "path": "/input"}]
    data["operators"].insert(0, {"name": "first", "container": {"image": repository, "tag": tag,
                                                               "command": ["touch", "/output/ran"]}})
    add_pipeline(clarad, data, "boxed-absent")
    job = clarad.wait_job_stopped(start_job(clarad, "boxed-absent", payload(tmp_path, {"a": "a"})))
    assert job["status"] == "FAULTED"
    assert job["reason"].startswith(f'operator "nap": image {absent}:1 is not in podman\'s local image store: load it '
                                    'with "podman load -i FILE.tar"'), job["reason"]
    assert not (Path(job["directory"]) / "operators" / "first" / "ran").exists()  # refused before anything ran


def test_after_a_kill_of_clarad_the_next_start_removes_its_containers_and_only_its(
        busybox: str, tmp_path: Path) -> None:
    assert images.PODMAN is not None
    other = subprocess.run([images.PODMAN, "run", "-d", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                            "--label", f"clarad.state-dir={tmp_path / 'another'}", busybox, "sleep", "600"],
                           capture_output=True, text=True, check=True).stdout.strip()
    daemon = Clarad(tmp_path / "state").start()
    try:
        add_pipeline(daemon, sleeper(busybox, "boxed-crash"), "boxed-crash")
        job_id = start_job(daemon, "boxed-crash", payload(tmp_path, {"a": "a"}))
        name = running_container(daemon, job_id)
        assert daemon.proc is not None
        os.kill(daemon.proc.pid, signal.SIGKILL)
        daemon.proc.wait(30)
        assert containers(daemon.state) == [name]  # it outlives clarad
        daemon.start()
        assert containers(daemon.state) == []
        assert f"removed container {name}, left by a previous clarad" in daemon.log.read_text()
        assert f"container operators run with podman ({images.PODMAN})" in daemon.log.read_text()  # the choice
        alive = subprocess.run([images.PODMAN, "ps", "--filter", f"id={other}", "--format", "{{.ID}}"],
                               capture_output=True, text=True, check=True).stdout
        assert other.startswith(alive.strip()) and alive.strip()  # another state directory's: untouched
    finally:
        daemon.stop_if_running()
        subprocess.run([images.PODMAN, "rm", "--force", other], capture_output=True)


def test_stopping_clarad_stops_and_removes_a_running_container(busybox: str, tmp_path: Path) -> None:
    daemon = Clarad(tmp_path / "state", CLARAD_OPERATOR_STOP_GRACE_SECONDS="1").start()
    try:
        add_pipeline(daemon, sleeper(busybox, "boxed-shutdown"), "boxed-shutdown")
        job_id = start_job(daemon, "boxed-shutdown", payload(tmp_path, {"a": "a"}))
        running_container(daemon, job_id)
        assert daemon.stop() == 0
        assert containers(daemon.state) == []
    finally:
        daemon.stop_if_running()


def test_operator_user_is_the_containers_user_and_its_memory_request_its_limit(busybox: str, tmp_path: Path) -> None:
    daemon = Clarad(tmp_path / "state", CLARAD_OPERATOR_USER="nobody").start()
    try:
        repository, tag = busybox.rsplit(":", 1)
        add_pipeline(daemon, {"api-version": "0.4.0", "operators": [{
            "name": "who", "requests": {"memory": 64},
            "container": {"image": repository, "tag": tag, "command": [
                "sh", "-c", "id -u > /output/uid && cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                            "/sys/fs/cgroup/memory.max 2>/dev/null > /output/limit; true"]},
            "input": [{"path": "/input"}], "output": [{"path": "/output"}]}]}, "boxed-user")
        job = daemon.wait_job_stopped(start_job(daemon, "boxed-user", payload(tmp_path, {"a": "a"})))
        assert job["status"] == "HEALTHY", job["reason"]
        out = Path(job["directory"]) / "operators" / "who"
        assert (out / "uid").read_text().strip() == "65534"
        assert (out / "uid").stat().st_uid == 65534
        assert (out / "limit").read_text().split() == [str(64 << 20)]
    finally:
        daemon.stop_if_running()


def test_a_container_over_its_memory_request_is_faulted_naming_it(clarad: Clarad, busybox: str, tmp_path: Path) -> None:
    repository, tag = busybox.rsplit(":", 1)
    add_pipeline(clarad, {"api-version": "0.4.0", "operators": [{
        "name": "hog", "requests": {"memory": 32},
        "container": {"image": repository, "tag": tag,
                      "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"]},
        "input": [{"path": "/input"}], "output": [{"path": "/output"}]}]}, "boxed-hog")
    job = clarad.wait_job_stopped(start_job(clarad, "boxed-hog", payload(tmp_path, {"a": "a"})))
    assert job["status"] == "FAULTED"
    assert job["reason"].startswith('operator "hog" '), job["reason"]
    assert "more memory than requests.memory (32 MB)" in job["reason"]  # as the runtime knows it, or most likely
    assert containers(clarad.state) == []


def test_a_service_runs_beside_its_operator_which_reaches_it_through_its_connection(
        clarad: Clarad, busybox: str, tmp_path: Path) -> None:
    web = images.image("web", {"/www/hello.txt": "hello from the service\n"})
    port = free_port()
    repository, tag = busybox.rsplit(":", 1)
    add_pipeline(clarad, {"api-version": "0.4.0", "operators": [{
        "name": "fetch",
        "container": {"image": repository, "tag": tag,
                      "command": ["sh", "-c", "wget -q -O /output/got.txt http://$(WEB_URI)/hello.txt"]},
        "input": [{"path": "/input"}], "output": [{"path": "/output"}],
        "services": [{"name": "web", "container": {"image": web.rsplit(":", 1)[0], "tag": web.rsplit(":", 1)[1],
                                                   "command": ["httpd", "-f", "-v", "-p", str(port), "-h", "/www"]},
                      "connections": {"http": [{"name": "WEB_URI", "port": port}]}}]}]}, "boxed-service")
    job = clarad.wait_job_stopped(start_job(clarad, "boxed-service", payload(tmp_path, {"a": "a"})))
    assert job["status"] == "HEALTHY", job["reason"]
    real = Path(job["directory"])
    assert (real / "operators" / "fetch" / "got.txt").read_text() == "hello from the service\n"
    assert "response:200" in (real / "logs" / "fetch.web.log").read_text()  # the service's own output (httpd -v)
    assert containers(clarad.state) == []  # the service went with its operator


def test_as_a_child_subreaper_clarad_leaves_no_container_monitor_unreaped(busybox: str, tmp_path: Path) -> None:
    """operator_containment = descendants makes clarad adopt each container's monitor (conmon)."""
    daemon = Clarad(tmp_path / "state", CLARAD_OPERATOR_CONTAINMENT="descendants").start()
    try:
        repository, tag = busybox.rsplit(":", 1)
        add_pipeline(daemon, {"api-version": "0.4.0", "operators": [{
            "name": "a", "container": {"image": repository, "tag": tag, "command": ["true"]}}]}, "boxed-reaped")
        for n in range(2):
            job = daemon.wait_job_stopped(start_job(daemon, "boxed-reaped", payload(tmp_path / str(n), {"a": "a"})))
            assert job["status"] == "HEALTHY", job["reason"]
        assert daemon.proc is not None
        assert [child.name() for child in psutil.Process(daemon.proc.pid).children()
                if child.status() == psutil.STATUS_ZOMBIE] == []
    finally:
        daemon.stop_if_running()


def test_a_service_whose_image_is_missing_faults_its_operator_which_never_runs(clarad: Clarad, busybox: str,
                                                                              tmp_path: Path) -> None:
    repository, tag = busybox.rsplit(":", 1)
    add_pipeline(clarad, {"api-version": "0.4.0", "operators": [{
        "name": "fetch", "container": {"image": repository, "tag": tag, "command": ["touch", "/output/ran"]},
        "input": [{"path": "/input"}], "output": [{"path": "/output"}],
        "services": [{"name": "web", "container": {"image": "localhost/clarad-test/never-built", "tag": "2"},
                      "connections": {"http": [{"name": "WEB_URI", "port": free_port()}]}}]}]}, "boxed-no-service")
    job = clarad.wait_job_stopped(start_job(clarad, "boxed-no-service", payload(tmp_path, {"a": "a"})))
    assert job["status"] == "FAULTED"
    assert job["reason"].startswith('operator "fetch" service web: image '
                                    "localhost/clarad-test/never-built:2 is not in podman's local image store"), job["reason"]
    assert not (Path(job["directory"]) / "operators" / "fetch" / "ran").exists()
