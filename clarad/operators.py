"""One operator of one job: its directories and environment (pure), and running it as a process.

Directory mapping inside ``jobs/<job-id>/`` (as NVIDIA's single-host emulator did):

    input/                       the payload: an input without ``from``
    operators/<op>/              an output without a name (``from: op``)
    operators/<op>/<name>/       an output named <name> (``from: op, name: <name>``)
    logs/<op>.log                the operator's stdout and stderr
    publish/                     NVIDIA_CLARA_PUBLISHING

Each declared input and output is also given as ``CLARAD_INPUT_<i>`` / ``CLARAD_OUTPUT_<i>``
(0-based, in declaration order); the first of each is ``NVIDIA_CLARA_INPUT`` / ``NVIDIA_CLARA_OUTPUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from clarad import children
from clarad.errors import ClaradError
from clarad.pipelines import Operator, Pipeline

TRITON_VARIABLES = ("NVIDIA_TRITON_GRPCURI", "NVIDIA_TRITON_HTTPURI", "CLARA_TRITON_URI", "NVIDIA_CLARA_TRTISURI")
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass(frozen=True)
class Endpoints:
    grpc: str  # host:port, no scheme
    http: str


@dataclass(frozen=True)
class Workspace:
    root: Path  # jobs/<job-id>

    @property
    def payload(self) -> Path:
        return self.root / "input"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def publish(self) -> Path:
        return self.root / "publish"

    def output_dir(self, op: str, name: Optional[str] = None) -> Path:
        base = self.root / "operators" / op
        return base / name if name else base

    def inputs(self, op: Operator) -> list[Path]:
        return [self.output_dir(i.from_, i.name) if i.from_ else self.payload for i in op.input]

    def outputs(self, op: Operator) -> list[Path]:
        return [self.output_dir(op.name, o.name) for o in op.output] or [self.output_dir(op.name)]

    def log_file(self, op: str) -> Path:
        return self.logs / f"{op}.log"


def operator_env(
    base: Mapping[str, str],
    op: Operator,
    job_id: str,
    job_name: str,
    workspace: Workspace,
    triton: Optional[Endpoints],
    gpus: str = "",
) -> dict[str, str]:
    """The operator's whole environment. clarad's own names win over the operator's variables."""
    env = {k: v for k, v in base.items() if k not in TRITON_VARIABLES and not k.startswith("CLARAD_")}
    env.pop("NOTIFY_SOCKET", None)
    env.update(op.all_variables)
    inputs, outputs = workspace.inputs(op), workspace.outputs(op)
    env.update(
        NVIDIA_CLARA_JOBID=job_id,
        NVIDIA_CLARA_JOBNAME=job_name,
        NVIDIA_CLARA_STAGENAME=op.name,
        NVIDIA_CLARA_NOSYNCLOCK="1",
        NVIDIA_CLARA_INPUT=str(inputs[0] if inputs else workspace.payload),
        NVIDIA_CLARA_OUTPUT=str(outputs[0]),
        NVIDIA_CLARA_LOGS=str(workspace.logs),
        NVIDIA_CLARA_PUBLISHING=str(workspace.publish),
        CUDA_VISIBLE_DEVICES=gpus,
    )
    env.update({f"CLARAD_INPUT_{i}": str(p) for i, p in enumerate(inputs)})
    env.update({f"CLARAD_OUTPUT_{i}": str(p) for i, p in enumerate(outputs)})
    if op.models and triton is not None:
        env.update(
            NVIDIA_TRITON_GRPCURI=triton.grpc,
            NVIDIA_TRITON_HTTPURI=triton.http,
            CLARA_TRITON_URI=triton.http,
            NVIDIA_CLARA_TRTISURI=triton.http,
        )
    return env


def expand(argv: list[str], env: Mapping[str, str]) -> list[str]:
    """Expand ``$(NAME)`` from ``env`` as Clara (and Kubernetes) do; ``$$`` is a literal ``$``;
    an unknown name is left as written."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return [_REFERENCE.sub(one, arg) for arg in argv]


def prepare_workspace(workspace: Workspace, pipeline: Pipeline, user: Optional[str] = None) -> None:
    """Create every output, log and publish directory before the first operator starts. With
    ``user`` (operator_user), hand the payload, the outputs and publish/ to that user and let it
    pass through the job's directory (logs/ stays clarad's: it writes the operators' output there);
    raises ClaradError when that is not possible."""
    for op in pipeline.operators:
        for path in workspace.outputs(op):
            path.mkdir(parents=True, exist_ok=True)
    workspace.logs.mkdir(parents=True, exist_ok=True)
    workspace.publish.mkdir(parents=True, exist_ok=True)
    if user is None:
        return
    try:
        account = pwd.getpwnam(user)
        for top in (workspace.payload, workspace.root / "operators", workspace.publish):
            _chown_tree(top, account.pw_uid, account.pw_gid)
        for folder in (workspace.root, workspace.root.parent):
            folder.chmod(folder.stat().st_mode | stat.S_IXOTH)  # pass through, not list
    except (KeyError, OSError) as exc:
        raise ClaradError(f"cannot hand the job's directories to operator_user {user}: {exc}") from None


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    """Hand ``top`` and everything under it to uid:gid, deepest first: once a directory is the
    operator user's (mode 0750 under the unit's UMask), clarad's own user cannot enter it any more."""

    def fail(error: OSError) -> None:
        raise error

    for folder, dirs, files in os.walk(top, topdown=False, onerror=fail):
        for name in [*files, *dirs]:
            os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)
    os.chown(top, uid, gid, follow_symlinks=False)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    reason: str
    exit_code: Optional[int]


async def run_operator(
    op: Operator,
    argv: list[str],
    env: Mapping[str, str],
    workspace: Workspace,
    label: str,
    registry: children.ChildRegistry,
    grace: float,
    user: Optional[str] = None,
) -> Outcome:
    """Run one operator to its end. If the caller cancels (job timeout, cancel, shutdown), the
    operator's process group is stopped and reaped before the cancellation goes on. With
    Clara's ``requests.memory`` (MB), an operator whose processes together use more resident memory
    is stopped."""
    memory_mb = op.requests.memory
    with open(workspace.log_file(op.name), "ab", buffering=0) as log_file:
        try:
            child = await children.spawn(
                argv, kind="operator", label=label, registry=registry, env=env, cwd=workspace.root,
                stdout=log_file, stderr=asyncio.subprocess.STDOUT, user=user,
            )
        except OSError as exc:
            return Outcome(False, f"cannot start {argv[0]!r}: {exc.strerror or exc}", None)
        except ClaradError as exc:  # no setpriv, no such operator_user
            return Outcome(False, f"cannot start {argv[0]!r}: {exc}", None)
        try:
            over = await _wait_within_memory(child, memory_mb)
            code = await children.stop(child, grace) if over else child.proc.returncode
        except asyncio.CancelledError:
            # One that cannot be stopped (StopFailed, logged) stays recorded, not forgotten: the record
            # names it in the job's reason, and the next start of clarad tries to stop it again.
            with contextlib.suppress(children.StopFailed):
                await children.stop_surely(child, grace)
                registry.forget(child.pid)
            raise
        except children.StopFailed as exc:  # over requests.memory; left recorded, as above
            return Outcome(False, f"used more memory than requests.memory ({memory_mb} MB); {exc}", None)
        children.stop_group_remains(child)
        registry.forget(child.pid)
    assert code is not None
    if over:
        return Outcome(False, f"used {over} MB of memory, more than requests.memory ({memory_mb} MB): stopped", code)
    return Outcome(code == 0, children.describe_exit(code), code)


MEMORY_POLL = 0.25  # seconds between memory checks of an operator with requests.memory


async def _wait_within_memory(child: children.Child, memory_mb: Optional[int]) -> int:
    """Wait for the child to exit; return 0, or the MB it used once it went over ``memory_mb``."""
    exited = asyncio.ensure_future(child.proc.wait())
    if not memory_mb:
        await exited
        return 0
    while not (await asyncio.wait({exited}, timeout=MEMORY_POLL))[0]:
        used = children.resident_mb(child.pid)
        if used > memory_mb:
            return used
    return 0
