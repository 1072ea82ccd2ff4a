"""Container operators without a runtime: the runtime's choice, the `run` command line, the paths and
environment a container sees, the GPUs it is given, and what ingest refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from clarad.containers import engine, spec
from clarad.containers.gpus import gpu_args, has_cdi_gpus, minors_from_information
from clarad.errors import ClaradError
from clarad.mounts import Bind
from clarad.operators import Endpoints, Workspace
from clarad.pipelines import Operator, parse_pipeline, validate

STATE = Path("/var/lib/clara")


def op(**fields: object) -> Operator:
    return Operator.model_validate({"name": "seg", "container": {"image": "clara/seg"}, **fields})


# -- the runtime --------------------------------------------------------------------------------

def which_of(*present: str):  # type: ignore[no-untyped-def]
    return lambda name: f"/usr/bin/{name}" if name in present else None


def answers_except(*silent: str):  # type: ignore[no-untyped-def]
    return lambda path: "Cannot connect to the Docker daemon" if Path(path).name in silent else None


def test_auto_takes_podman_first_then_docker_then_none() -> None:
    both = engine.choose("auto", which_of("podman", "docker"), answers_except())[0]
    assert both == engine.Engine("podman", "/usr/bin/podman")
    assert engine.choose("auto", which_of("docker"), answers_except())[0] == engine.Engine("docker", "/usr/bin/docker")
    none, line = engine.choose("auto", which_of(), answers_except())
    assert none is None
    assert line.startswith(engine.NO_RUNTIME) and "podman is not installed; docker is not installed" in line


def test_a_docker_client_without_its_daemon_does_not_count() -> None:
    chosen, line = engine.choose("auto", which_of("docker"), answers_except("docker"))
    assert chosen is None
    assert "docker does not answer: Cannot connect to the Docker daemon" in line


def test_an_explicit_runtime_is_the_only_one_tried_and_host_takes_none() -> None:
    assert engine.choose("docker", which_of("podman"), answers_except())[0] is None
    assert engine.choose("podman", which_of("podman", "docker"), answers_except())[0] == engine.Engine(
        "podman", "/usr/bin/podman")
    chosen, line = engine.choose("host", which_of("podman"), answers_except())
    assert chosen is None and "operators with container.image are refused" in line


# -- the image, the paths, the environment ---------------------------------------------------------

def test_image_and_tag_as_clara_names_them() -> None:
    assert spec.image_ref(op()) == "clara/seg:latest"
    assert spec.image_ref(op(container={"image": "clara/seg", "tag": "0.8.1"})) == "clara/seg:0.8.1"
    assert spec.image_ref(op(container={"image": "nvcr.io:443/clara/seg:1"})) == "nvcr.io:443/clara/seg:1"
    assert spec.image_ref(op(container={"image": "registry:5000/seg"})) == "registry:5000/seg:latest"
    assert spec.image_ref(op(container={"image": "seg", "tag": 1.0})) == "seg:1.0"


def test_entries_without_a_path_take_clara_defaults_once() -> None:
    seen = op(input=[{}, {"path": "/second"}], output=[{"name": "a"}, {"name": "b", "path": "/b"}]).with_default_paths()
    assert [entry.path for entry in seen.input] == ["/input", "/second"]
    assert [entry.path for entry in seen.output] == ["/output", "/b"]
    assert [entry.path for entry in op().with_default_paths().output] == ["/output"]  # declares none: still /output
    taken = op(input=[{"path": "/input"}, {"from": "x"}]).with_default_paths()
    assert taken.input[1].path is None  # /input is taken: ingest refuses it (below)


def test_the_environment_has_the_container_paths_and_nothing_of_the_host(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "job")
    operator = op(input=[{"path": "/in"}], output=[{"name": "masks", "path": "/out"}], variables={"MODE": "fast"},
                  models=[{"name": "m"}]).with_default_paths()
    env = spec.container_env(operator, "j1", "job one", workspace, Endpoints("127.0.0.1:8001", "127.0.0.1:8000"),
                             ["GPU-a"])
    assert env["NVIDIA_CLARA_INPUTPATHS"] == ":/in"
    assert env["NVIDIA_CLARA_OUTPUTPATHS"] == "masks:/out"
    assert (env["NVIDIA_CLARA_LOGS"], env["NVIDIA_CLARA_PUBLISHING"]) == ("/logs", "/publish")
    assert (env["NVIDIA_TRITON_GRPCURI"], env["MODE"], env["CUDA_VISIBLE_DEVICES"]) == ("127.0.0.1:8001", "fast",
                                                                                         "GPU-a")
    assert "PATH" not in env and not any(key.startswith("CLARAD_") for key in env)
    assert env["NVIDIA_VISIBLE_DEVICES"] == "GPU-a"  # not the image's "all", for NVIDIA's runtime hook
    assert spec.container_env(operator, "j1", "j", workspace, None, [])["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert [(b.seen, b.writable) for b in workspace.binds(operator)] == [
        ("/in", False), ("/out", True), ("/logs", True), ("/publish", True)]


def test_names_and_labels_are_unique_per_state_directory_job_and_operator() -> None:
    one = spec.container_name(STATE, "j1", "seg")
    assert one.startswith("clarad-") and one.endswith("-j1-seg")
    assert one != spec.container_name(Path("/srv/other"), "j1", "seg")
    assert spec.labels(STATE, "j1", "seg") == {"clarad.state-dir": "/var/lib/clara", "clarad.job": "j1",
                                               "clarad.operator": "seg"}


def test_the_run_command_line() -> None:
    run = spec.ContainerRun(
        name="c1", image="clara/seg:1", command=["python", "register.py", "--agent", "x"], env={"A": "1 2"},
        binds=[Bind(Path("/s/in"), "/input", False), Bind(Path("/s/out"), "/output", True)],
        labels={"clarad.job": "j1"}, user=(65534, 65534), memory_mb=512, cpus=2, devices=["--device", "d"],
        ulimits={"nofile": (1024, 4096)})
    assert spec.run_argv("/usr/bin/podman", run) == [
        "/usr/bin/podman", "run", "--name", "c1", "--pull=never", "--network=host", "--log-driver=none",
        "--label", "clarad.job=j1", "--ulimit", "nofile=1024:4096", "--env", "A=1 2",
        "--volume", "/s/in:/input:ro", "--volume", "/s/out:/output:rw", "--user", "65534:65534",
        "--memory=512m", "--memory-swap=512m", "--cpus=2", "--device", "d",
        "--entrypoint", "python", "clara/seg:1", "register.py", "--agent", "x"]


def test_without_a_command_the_image_runs_its_own() -> None:
    argv = spec.run_argv("podman", spec.ContainerRun("c1", "clara/seg:1", [], {}, [], {}))
    assert argv[-1] == "clara/seg:1" and "--entrypoint" not in argv and "--memory=0m" not in argv


def test_stop_and_remove_and_what_a_start_looks_for() -> None:
    assert spec.stop_argv("podman", "c1", 2.5) == ["podman", "stop", "--time=3", "c1"]
    assert spec.remove_argv("podman", "c1") == ["podman", "rm", "--force", "--volumes", "c1"]
    assert spec.leftovers_argv("podman", STATE)[-4:] == ["--filter", "label=clarad.state-dir=/var/lib/clara",
                                                         "--format", "{{.Names}}"]
    assert spec.image_exists_argv("podman", "podman", "a:1") == ["podman", "image", "exists", "a:1"]
    assert spec.image_exists_argv("docker", "docker", "a:1")[:3] == ["docker", "image", "inspect"]


def test_a_missing_image_says_how_to_load_it() -> None:
    line = spec.missing_image("podman", "clara/seg:1")
    assert '"podman load -i FILE.tar"' in line and '"podman pull clara/seg:1"' in line and "\n" not in line


@pytest.mark.parametrize(("nproc", "pid_max", "expected"), [
    ((96365, 96365), 32768, (32768, 32768)), ((1024, 4096), 32768, (1024, 4096)), ((-1, -1), 4194304, (4194304, 4194304)),
    ((500, 600), None, (500, 600))])
def test_limits_are_clarads_own_with_processes_held_to_pid_max(nproc: tuple[int, int], pid_max: Optional[int],
                                                               expected: tuple[int, int]) -> None:
    assert spec.ulimits((20000, 20000), nproc, pid_max) == {"nofile": (20000, 20000), "nproc": expected}


# -- GPUs ------------------------------------------------------------------------------------------

INFO = "Model: \t\t NVIDIA H100\nGPU UUID: \t GPU-{u}\nDevice Minor: \t {m}\n"


def test_only_the_granted_gpus_by_cdi_name() -> None:
    assert gpu_args("podman", ["GPU-b"], True, {}) == ["--device", "nvidia.com/gpu=GPU-b"]
    assert gpu_args("podman", [], True, {}) == []


def test_without_cdi_the_device_nodes_of_the_granted_gpus_and_the_control_devices() -> None:
    minors = minors_from_information([INFO.format(u="a", m=0), INFO.format(u="b", m=3)])
    assert minors == {"GPU-a": 0, "GPU-b": 3}
    assert gpu_args("podman", ["GPU-b"], False, minors) == [
        "--device", "/dev/nvidia3", "--device", "/dev/nvidiactl", "--device", "/dev/nvidia-uvm",
        "--device", "/dev/nvidia-uvm-tools"]
    with pytest.raises(ClaradError, match="MIG device: giving it to a container needs a CDI specification"):
        gpu_args("podman", ["MIG-1"], False, minors)
    with pytest.raises(ClaradError, match="no /dev/nvidia<minor> found"):
        gpu_args("podman", ["GPU-z"], False, minors)


def test_docker_takes_the_gpus_flag_and_cdi_specs_are_recognised() -> None:
    assert gpu_args("docker", ["GPU-a", "GPU-b"], False, {}) == ["--gpus", "device=GPU-a,GPU-b"]
    assert has_cdi_gpus(['cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices: []\n'])
    assert has_cdi_gpus(['{"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu"}'])
    assert not has_cdi_gpus(["kind: vendor.com/fpga\n"])


# -- ingest --------------------------------------------------------------------------------------

def pipeline(**operator: object) -> str:
    import yaml

    return yaml.safe_dump({"api-version": "0.4.0", "name": "p", "operators": [{"name": "seg", **operator}]})


def test_without_a_runtime_an_image_is_refused_with_how_to_install_one() -> None:
    text = pipeline(container={"image": "clara/seg", "command": ["run"]}, input=[{"path": "/input"}])
    assert validate(text, "p.yaml", set(), 0, 2, runtime="podman")[1] == []
    refused, problems = validate(text, "p.yaml", set(), 0, 2, runtime=None)
    assert refused is None
    assert problems == [f'p.yaml: operator "seg": container.image: {engine.NO_RUNTIME}']
    assert "apt-get install podman runc" in problems[0]


def test_with_a_runtime_the_image_needs_no_command_but_its_entries_need_paths() -> None:
    assert validate(pipeline(container={"image": "clara/seg"}), "p.yaml", set(), 0, 2, runtime="podman")[1] == []
    _, problems = validate(pipeline(container={"image": "clara/seg"}, input=[{}, {"path": "/x"}, {}],
                                    output=[{"name": "a"}, {"name": "b"}]), "p.yaml", set(), 0, 2, runtime="podman")
    assert [problem.split(": ")[2] for problem in problems] == ["input[2].path", "output[1].path"]


def test_a_host_command_or_a_second_tag_with_an_image_is_refused() -> None:
    _, problems = validate(pipeline(container={"image": "clara/seg:1", "tag": "2"}, command=["x"]), "p.yaml", set(),
                           0, 2, runtime="podman")
    assert [problem.split(": ")[2] for problem in problems] == ["command", "container.tag"]


def test_a_host_operator_is_no_container_and_a_tag_needs_an_image() -> None:
    assert parse_pipeline(pipeline(command=["true"])).operators[0].image is None
    _, problems = validate(pipeline(container={"tag": "1", "command": ["run"]}), "p.yaml", set(), 0, 2, runtime="podman")
    assert problems == ['p.yaml: operator "seg": container.tag: the tag of an image, but container.image is not given']


@pytest.mark.parametrize("image", ["--user=0:0", "-v/:/host", "clara/seg x", ":latest", "nvcr.io/\u00e9"])
def test_an_image_name_the_runtime_would_read_as_an_option_or_not_an_image_is_refused(image: str) -> None:
    _, problems = validate(pipeline(container={"image": image, "command": ["/bin/sh"]}), "p.yaml", set(), 0, 2,
                           runtime="podman")
    assert [problem.split(": ")[2] for problem in problems] == ["container.image"]


def test_a_tag_that_is_no_tag_is_refused_and_real_references_pass() -> None:
    for image, tag in (("nvcr.io/nvidia/clara/ai-liver:0.8.1-2108.1", None), ("localhost:5000/seg", "v1_2.3"),
                       ("clara/seg@sha256:" + "a" * 64, None), ("clara/seg", 0.8)):
        assert validate(pipeline(container={"image": image, "tag": tag}), "p.yaml", set(), 0, 2,
                        runtime="podman")[1] == [], image
    _, problems = validate(pipeline(container={"image": "clara/seg", "tag": "-x"}), "p.yaml", set(), 0, 2,
                           runtime="podman")
    assert [problem.split(": ")[2] for problem in problems] == ["container.tag"]


# -- services ------------------------------------------------------------------------------------

SERVICE = {"name": "cache", "container": {"image": "redis", "tag": "7", "command": ["redis-server"]},
           "connections": {"http": [{"name": "CACHE_URI", "port": 6379}]}}


def test_a_service_that_is_not_tritons_runs_as_a_container_beside_its_operator() -> None:
    text = pipeline(command=["run"], services=[SERVICE])
    accepted, problems = validate(text, "p.yaml", set(), 0, 2, runtime="podman")
    assert problems == [] and accepted is not None
    operator = accepted.operators[0]
    assert [s.name for s in operator.container_services] == ["cache"] and operator.triton_services == []
    assert operator.connections == {} and operator.model_names == []  # nothing of it is Triton's
    assert spec.image_ref_of("redis", "7") == "redis:7"


def test_a_service_container_needs_the_runtime_its_ports_and_no_gpu() -> None:
    _, problems = validate(pipeline(command=["run"], services=[SERVICE]), "p.yaml", set(), 0, 2, runtime=None)
    assert problems == [f'p.yaml: operator "seg": services[0].container.image: \'redis\' is not a Triton image: it '
                        f"runs as a container, and {engine.NO_RUNTIME}"]
    second = {**SERVICE, "name": "again", "requests": {"gpu": 1},
              "connections": {"http": [{"name": "A", "port": 6379}, {"name": "B"}]}}
    _, problems = validate(pipeline(command=["run"], services=[SERVICE, second]), "p.yaml", set(), 1, 2,
                           runtime="podman")
    assert [problem.split(": ")[2] for problem in problems] == [
        "services[1].requests.gpu", "services[1].connections.http[0].port", "services[1].connections.http[1].port"]


def test_a_service_port_another_running_jobs_service_holds_is_refused_before_anything_starts(tmp_path: Path) -> None:
    import asyncio

    from clarad.children import ChildRegistry
    from clarad.config import Settings
    from clarad.containers import services
    from clarad.store import Store

    op = parse_pipeline(pipeline(container={"image": "clara/seg"}, services=[SERVICE])).operators[0]
    workspace = Workspace(tmp_path / "job")
    workspace.logs.mkdir(parents=True)
    store = Store(tmp_path / "clarad.db")
    services.RESERVED.add(6379)  # another job's cache, running now
    try:
        async def start() -> None:
            async with services.running(op, "job-2", workspace, Settings(state_dir=tmp_path, container_pull="missing"),
                                        ChildRegistry(store), engine.Engine("podman", "/nonexistent/podman")):
                raise AssertionError("the service started")

        with pytest.raises(ClaradError, match="port 6379 is another running job's service's"):
            asyncio.run(start())
        assert services.RESERVED == {6379}  # the other job's, still; nothing of this one's
    finally:
        services.RESERVED.discard(6379)
        store.close()
