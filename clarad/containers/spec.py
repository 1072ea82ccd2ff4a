"""A container operator as command lines for its runtime. Pure: no processes, no files.

Clara's contract, as on Kubernetes: ``image:tag`` (``latest`` by default) from the local image
store; ``command`` replaces the image's entrypoint (Kubernetes' ``command``), none runs the image's
own; the operator's and the container's ``variables`` and clarad's ``NVIDIA_*`` variables with the
paths the container sees; each input bound read-only at its ``path``, each output read-write at
its, ``/logs`` and ``/publish`` too (an input or output without a ``path`` is at Clara's
``/input`` / ``/output``). Networking is the host's: Triton listens on 127.0.0.1 only, and the
container reaches it at the same ``host:port`` a host operator gets, with no port published.

Every container carries labels naming clarad's state directory, the job and the operator, so the
next start of this clarad removes what it left (and nothing another clarad owns), and a name that
is unique per state directory, job and operator.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from clarad import mounts
from clarad.operators import Endpoints, Workspace, operator_env
from clarad.pipelines import Operator
from clarad.pipelines.model import Scalar, env_value

LABEL_STATE, LABEL_JOB, LABEL_OPERATOR = "clarad.state-dir", "clarad.job", "clarad.operator"


def image_ref(op: Operator) -> str:
    """``image:tag`` as Clara names it; ``latest`` when no tag is given."""
    assert op.container is not None and op.container.image is not None
    return image_ref_of(op.container.image, op.container.tag)


def image_ref_of(image: str, tag: Optional[Scalar]) -> str:
    if tag is not None:
        return f"{image}:{env_value(tag)}"
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last or "@" in last else f"{image}:latest"


def container_name(state_dir: Path, job_id: str, op: str) -> str:
    """Unique per state directory, job and operator."""
    return f"clarad-{state_hash(state_dir)}-{job_id}-{op}"


def state_hash(state_dir: Path) -> str:
    return hashlib.sha256(str(state_dir).encode()).hexdigest()[:8]


def labels(state_dir: Path, job_id: str, op: str) -> dict[str, str]:
    return {LABEL_STATE: str(state_dir), LABEL_JOB: job_id, LABEL_OPERATOR: op}


def container_env(op: Operator, job_id: str, job_name: str, workspace: Workspace, triton: Optional[Endpoints],
                  gpus: list[str]) -> dict[str, str]:
    """What the container's program finds in its environment: the variables a host operator in its
    own mount namespace gets (``op`` with its paths, see ``Operator.with_default_paths``), nothing of
    clarad's own environment (the image has its PATH, HOME...), and no ``CLARAD_*`` real directories."""
    env = operator_env({}, op, job_id, job_name, workspace, triton, ",".join(gpus), namespaced=True)
    env = {key: value for key, value in env.items() if not key.startswith("CLARAD_")}
    # CUDA images say NVIDIA_VISIBLE_DEVICES=all, and NVIDIA's runtime hook, where installed, gives the
    # container what it names: only the granted GPUs, or none ("void").
    env["NVIDIA_VISIBLE_DEVICES"] = ",".join(gpus) or "void"
    return env


@dataclass(frozen=True)
class ContainerRun:
    name: str
    image: str
    command: list[str]  # empty: the image's own entrypoint and command
    env: Mapping[str, str]
    binds: list[mounts.Bind]
    labels: Mapping[str, str]
    user: Optional[tuple[int, int]] = None  # operator_user's uid and gid
    memory_mb: Optional[int] = None
    cpus: Optional[int] = None
    devices: list[str] = field(default_factory=list)  # gpus.gpu_args
    ulimits: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # name -> (soft, hard)
    pull: str = "never"


def ulimits(nofile: tuple[int, int], nproc: tuple[int, int], pid_max: Optional[int]) -> dict[str, tuple[int, int]]:
    """The container's limits: clarad's own, as a host operator inherits them. The runtime's defaults
    may exceed this host's hard limits, and the container would not start; the container's first
    process cannot raise a limit above what it inherits from the runtime's monitor (conmon), whose
    process limit podman holds to kernel.pid_max."""
    if pid_max is not None:  # -1 is unlimited
        nproc = (pid_max if nproc[0] < 0 else min(nproc[0], pid_max), pid_max if nproc[1] < 0 else min(nproc[1], pid_max))
    return {"nofile": nofile, "nproc": nproc}


def run_argv(program: str, run: ContainerRun) -> list[str]:
    """``<runtime> run`` attached: the container's output is the command's, its exit status too."""
    argv = [program, "run", "--name", run.name, f"--pull={run.pull}", "--network=host", "--log-driver=none"]
    for key, value in run.labels.items():
        argv += ["--label", f"{key}={value}"]
    for name, (soft, hard) in run.ulimits.items():
        argv += ["--ulimit", f"{name}={soft}:{hard}"]
    for key, value in run.env.items():
        argv += ["--env", f"{key}={value}"]
    for bind in run.binds:
        argv += ["--volume", f"{bind.real}:{bind.seen}:{'rw' if bind.writable else 'ro'}"]
    if run.user is not None:
        argv += ["--user", f"{run.user[0]}:{run.user[1]}"]
    if run.memory_mb:
        argv += [f"--memory={run.memory_mb}m", f"--memory-swap={run.memory_mb}m"]  # no swap, as on Kubernetes
    if run.cpus:
        argv += [f"--cpus={run.cpus}"]
    argv += run.devices
    if run.command:
        argv += ["--entrypoint", run.command[0]]
    return [*argv, run.image, *run.command[1:]]


def stop_argv(program: str, name: str, grace: float) -> list[str]:
    """TERM to the container's program, KILL after ``grace`` seconds (whole seconds, rounded up)."""
    return [program, "stop", f"--time={math.ceil(grace)}", name]


def remove_argv(program: str, name: str) -> list[str]:
    """Remove the container, killing it if it still runs, with its anonymous volumes."""
    return [program, "rm", "--force", "--volumes", name]


def image_exists_argv(engine: str, program: str, image: str) -> list[str]:
    if engine == "podman":
        return [program, "image", "exists", image]
    return [program, "image", "inspect", "--format={{.Id}}", image]


def leftovers_argv(program: str, state_dir: Path) -> list[str]:
    """Names of every container, running or not, labelled with this state directory."""
    return [program, "ps", "--all", "--filter", f"label={LABEL_STATE}={state_dir}", "--format", "{{.Names}}"]


def oom_argv(program: str, name: str) -> list[str]:
    return [program, "inspect", "--format", "{{.State.OOMKilled}}", name]


def missing_image(engine: str, image: str) -> str:
    """Why a job cannot run an image that is not in the local store, and the line that fixes it."""
    return (f'image {image} is not in {engine}\'s local image store: load it with "{engine} load -i FILE.tar" '
            f'(a file made by "{engine} save -o FILE.tar {image}" where the image is), or "{engine} pull {image}"; '
            "clarad pulls nothing unless container_pull = \"missing\"")
