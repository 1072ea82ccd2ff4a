"""One operator of one job: its directories and environment (pure), and running it as a process.

Directory mapping inside ``jobs/<job-id>/`` (as NVIDIA's single-host emulator did):

    input/                       the payload: an input without ``from``
    operators/<op>/              an output without a name (``from: op``)
    operators/<op>/<name>/       an output named <name> (``from: op, name: <name>``)
    logs/<op>.log                the operator's stdout and stderr
    logs/<op>/                   NVIDIA_CLARA_LOGS: the operator's own log files
    publish/                     NVIDIA_CLARA_PUBLISHING

Clara's operator contract: ``NVIDIA_CLARA_INPUTPATHS`` / ``NVIDIA_CLARA_OUTPUTPATHS`` list every
input and output as ``name:path`` pairs joined by ``:``, so that ``split(":")[2k + 1]`` is the k-th
path, as NVIDIA's operator code reads them (``split(":")[1]`` for the first). An entry's name is the
input's ``name``, else its ``from``, else empty (the payload); an output's ``name``, else empty.
``NVIDIA_CLARA_INPUT`` / ``NVIDIA_CLARA_OUTPUT`` are the input declared at ``/input`` and the output
at ``/output``, else the first of each. Paths are the declared ones when the operator has its own
mount namespace (mounts.py), else the real directories. ``CLARAD_INPUT_<i>`` /
``CLARAD_OUTPUT_<i>`` (0-based, declaration order) always name the real directories.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import pwd
import re
import shutil
import signal
import stat
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import psutil

from clarad import children, mounts, trees
from clarad.config import Settings
from clarad.cpus import pinned_argv
from clarad.errors import ClaradError
from clarad.pipelines import Operator, Pipeline

TRITON_VARIABLES = ("NVIDIA_TRITON_GRPCURI", "NVIDIA_TRITON_HTTPURI", "CLARA_TRITON_URI", "NVIDIA_CLARA_TRTISURI")
INPUT, OUTPUT, LOGS, PUBLISH = "/input", "/output", "/logs", "/publish"  # Clara's container defaults
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

    def app_logs(self, op: str) -> Path:
        return self.logs / op

    def input_entries(self, op: Operator) -> list[tuple[str, Path, Optional[str]]]:
        """(entry name, real directory, declared path) of each input."""
        return [(i.name or i.from_ or "", real, i.path) for i, real in zip(op.input, self.inputs(op))]

    def output_entries(self, op: Operator) -> list[tuple[str, Path, Optional[str]]]:
        if not op.output:
            return [("", self.output_dir(op.name), None)]
        return [(o.name or "", real, o.path) for o, real in zip(op.output, self.outputs(op))]

    def binds(self, op: Operator) -> list[mounts.Bind]:
        """What the operator's mount namespace shows at its declared paths, /logs and /publish included."""
        binds = [mounts.Bind(real, seen, False) for _n, real, seen in self.input_entries(op) if seen]
        binds += [mounts.Bind(real, seen, True) for _n, real, seen in self.output_entries(op) if seen]
        taken = {bind.seen for bind in binds}
        for real, seen in ((self.app_logs(op.name), LOGS), (self.publish, PUBLISH)):
            if seen not in taken:
                binds.append(mounts.Bind(real, seen, True))
        return binds


def operator_env(
    base: Mapping[str, str],
    op: Operator,
    job_id: str,
    job_name: str,
    workspace: Workspace,
    triton: Optional[Endpoints],
    gpus: str = "",
    namespaced: bool = False,
) -> dict[str, str]:
    """The operator's whole environment. clarad's own names win over the operator's variables.
    ``namespaced``: the operator sees its declared paths (mounts.py); else it gets real directories."""
    env = {k: v for k, v in base.items() if k not in TRITON_VARIABLES and not k.startswith("CLARAD_")}
    env.pop("NOTIFY_SOCKET", None)
    for name in op.connections:  # a Triton service's variables: never inherited, set below
        env.pop(name, None)
    env.update(op.all_variables)

    def seen(real: Path, declared: Optional[str]) -> str:
        return declared if namespaced and declared else str(real)

    inputs = [(name, seen(real, path), path) for name, real, path in workspace.input_entries(op)]
    outputs = [(name, seen(real, path), path) for name, real, path in workspace.output_entries(op)]
    env.update(
        NVIDIA_CLARA_JOBID=job_id,
        NVIDIA_CLARA_JOBNAME=job_name,
        NVIDIA_CLARA_STAGENAME=op.name,
        NVIDIA_CLARA_NOSYNCLOCK="1",
        NVIDIA_CLARA_INPUT=_main(inputs, INPUT) or str(workspace.payload),
        NVIDIA_CLARA_OUTPUT=_main(outputs, OUTPUT) or str(workspace.output_dir(op.name)),
        NVIDIA_CLARA_INPUTPATHS=":".join(f"{name}:{path}" for name, path, _d in inputs),
        NVIDIA_CLARA_OUTPUTPATHS=":".join(f"{name}:{path}" for name, path, _d in outputs),
        NVIDIA_CLARA_LOGS=LOGS if namespaced and LOGS not in _declared(op) else str(workspace.app_logs(op.name)),
        NVIDIA_CLARA_PUBLISHING=PUBLISH if namespaced else str(workspace.publish),
        CUDA_VISIBLE_DEVICES=gpus,
    )
    env.update({f"CLARAD_INPUT_{i}": str(p) for i, p in enumerate(workspace.inputs(op))})
    env.update({f"CLARAD_OUTPUT_{i}": str(p) for i, p in enumerate(workspace.outputs(op))})
    if op.model_names and triton is not None:
        env.update(
            NVIDIA_TRITON_GRPCURI=triton.grpc,
            NVIDIA_TRITON_HTTPURI=triton.http,
            CLARA_TRITON_URI=triton.http,
            NVIDIA_CLARA_TRTISURI=triton.http,
        )
        env.update({name: triton.grpc if kind == "grpc" else triton.http for name, kind in op.connections.items()})
    return env


def _main(entries: list[tuple[str, str, Optional[str]]], clara_default: str) -> Optional[str]:
    """The entry declared at Clara's default path, else the first."""
    at_default = [path for _n, path, declared in entries if declared == clara_default]
    candidates = at_default or [path for _n, path, _d in entries]
    return candidates[0] if candidates else None


def _declared(op: Operator) -> set[str]:
    return {entry.path for entry in op.input if entry.path} | {entry.path for entry in op.output if entry.path}


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
    pass through the job's directory (logs/ stays clarad's: it writes the operators' output there;
    logs/<op>/ is the operator's own);
    raises ClaradError when that is not possible."""
    for op in pipeline.operators:
        for path in [*workspace.outputs(op), workspace.app_logs(op.name)]:
            path.mkdir(parents=True, exist_ok=True)
    workspace.logs.mkdir(parents=True, exist_ok=True)
    workspace.publish.mkdir(parents=True, exist_ok=True)
    if user is None:
        return
    try:
        account = pwd.getpwnam(user)
        own_logs = [workspace.app_logs(op.name) for op in pipeline.operators]
        for top in (workspace.payload, workspace.root / "operators", workspace.publish, *own_logs):
            _chown_tree(top, account.pw_uid, account.pw_gid)
        for folder in (workspace.root, workspace.root.parent, workspace.logs):  # logs/: to reach logs/<op>/
            folder.chmod(folder.stat().st_mode | stat.S_IXOTH)  # pass through, not list
    except (KeyError, OSError) as exc:
        raise ClaradError(f"cannot hand the job's directories to operator_user {user}: {exc}") from None


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    """Hand ``top`` and everything under it to uid:gid, deepest first: once a directory is the
    operator user's (mode 0750 under the unit's UMask), clarad's own user cannot enter it any more.

    Only regular files and directories are handed over, and no file with a second name: a change of
    owner follows the inode, so a hard link to a file elsewhere (a root-only secret) would hand that
    file over too. Each entry is opened without following links and changed through that handle,
    so an entry swapped for another meanwhile is never the one changed."""

    def fail(error: OSError) -> None:
        raise error

    for folder, dirs, files, dirfd in os.fwalk(top, topdown=False, onerror=fail):
        for name in [*files, *dirs]:
            _chown_entry(name, dirfd, uid, gid, os.path.join(folder, name))
    _chown_entry(str(top), None, uid, gid, str(top))


def _chown_entry(name: str, dirfd: Optional[int], uid: int, gid: int, shown: str) -> None:
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        info = os.fstat(fd)
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            raise OSError(f"{shown}: {trees.kind_of(info.st_mode)}, not handed over")
        if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
            raise OSError(f"{shown}: hard-linked to another file name, not handed over")
        os.chown(f"/proc/self/fd/{fd}", uid, gid)  # the inode this handle holds, not whatever the name is now
    finally:
        os.close(fd)


def command_problem(argv: list[str], env: Mapping[str, str]) -> Optional[str]:
    """Why exec would refuse this command line or environment, in words; None if it would not. Pure."""
    for index, arg in enumerate(argv):
        if "\0" in arg:
            return f"argument {index} of its command holds a NUL character"
    for key, value in env.items():
        if not key or "=" in key or "\0" in key:
            return f"environment variable name {key!r} is not allowed (empty, or holding '=' or NUL)"
        if "\0" in value:
            return f"environment variable {key} holds a NUL character"
    return None


async def run(op: Operator, job_id: str, job_name: str, workspace: Workspace, triton: Optional[Endpoints],
              gpus: list[str], cpus: list[int], settings: Settings, registry: children.ChildRegistry) -> Outcome:
    """Run one operator of a job to its end: its environment, its mount namespace where the host
    allows one, pinned to ``cpus`` when it asked for some."""
    views = await mounts.probe(settings.operator_mount_namespace, settings.operator_user)
    env = operator_env(os.environ, op, job_id, job_name, workspace, triton, ",".join(gpus), views.enabled)
    argv = expand(op.argv, env)
    try:
        _check_program(argv[0], env, workspace.root)
        if views.bwrap is not None:
            argv = mounts.namespace_argv(views.bwrap, mounts.root_entries(), workspace.binds(op), workspace.root, argv)
        argv = pinned_argv(cpus, argv)
    except OSError as exc:
        return Outcome(False, f"cannot start {argv[0]!r}: {exc.strerror or exc}", None)
    except ClaradError as exc:
        return Outcome(False, f"cannot start {argv[0]!r}: {exc}", None)
    return await run_operator(op, argv, env, workspace, f"{job_id}/{op.name}", registry,
                              settings.operator_stop_grace_seconds, settings.operator_user, views.enabled)


def _check_program(program: str, env: Mapping[str, str], cwd: Path) -> None:
    """Refuse, as exec would, a program that is not there, before a wrapper (bwrap, taskset) would
    only exit with 127."""
    target = os.path.join(cwd, program) if "/" in program else program
    if shutil.which(target, path=env.get("PATH", os.defpath)) is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


Stopper = Callable[[children.Child, float], Awaitable[int]]  # stops a child within a grace; its exit status


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
    wrapped: bool = False,
    stopper: Optional[Stopper] = None,
) -> Outcome:
    """Run one operator to its end. If the caller cancels (job timeout, cancel, shutdown), the
    operator's process group is stopped and reaped before the cancellation goes on. With
    Clara's ``requests.memory`` (MB), an operator whose processes together use more resident memory
    is stopped. ``wrapped``: ``argv`` is bwrap running the operator (see ``_stop``), or a container
    runtime's client, which exits as a shell does too. ``stopper``: how to stop it instead of
    ``_stop`` (a container's runtime enforces its memory limit itself, so none is watched here)."""
    memory_mb = op.requests.memory if stopper is None else None
    stop = stopper or functools.partial(_stop, wrapped=wrapped)
    problem = command_problem(argv, env)
    if problem is not None:
        return Outcome(False, f"cannot start: {problem}", None)
    with open(workspace.log_file(op.name), "ab", buffering=0) as log_file:
        # A start is not interrupted half-way: asyncio would kill the new process alone (not its group),
        # stranding what it had begun (bwrap's program); a cancel during the start stops it whole.
        spawning = asyncio.ensure_future(children.spawn(
            argv, kind="operator", label=label, registry=registry, env=env, cwd=workspace.root,
            stdout=log_file, stderr=asyncio.subprocess.STDOUT, user=user,
        ))
        try:
            child = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            await children.wait_through_cancel(spawning)
            if spawning.exception() is None:
                with contextlib.suppress(children.StopFailed):
                    await children.wait_through_cancel(stopping := asyncio.ensure_future(
                        stop(spawning.result(), grace)))
                    stopping.result()
                    registry.forget(spawning.result().pid)
                await children.end_scope(spawning.result(), registry)
            raise
        except (OSError, ValueError) as exc:  # ValueError: what exec refuses that command_problem missed
            return Outcome(False, f"cannot start {argv[0]!r}: {getattr(exc, 'strerror', None) or exc}", None)
        except ClaradError as exc:  # no setpriv, no such operator_user
            return Outcome(False, f"cannot start {argv[0]!r}: {exc}", None)
        try:
            over = await _wait_within_memory(child, memory_mb)
            code = await stop(child, grace) if over else child.proc.returncode
        except asyncio.CancelledError:
            # One that cannot be stopped (StopFailed, logged) stays recorded, not forgotten: the record
            # names it in the job's reason, and the next start of clarad tries to stop it again.
            with contextlib.suppress(children.StopFailed):
                stopping = asyncio.ensure_future(stop(child, grace))
                await children.wait_through_cancel(stopping)
                stopping.result()
                registry.forget(child.pid)
            await children.end_scope(child, registry)
            raise
        except children.StopFailed as exc:  # over requests.memory; left recorded, as above
            return Outcome(False, f"used more memory than requests.memory ({memory_mb} MB); {exc}", None)
        children.stop_group_remains(child)
        registry.forget(child.pid)
        await children.end_scope(child, registry)
    assert code is not None
    if wrapped and code > 128:  # bwrap (and podman) exit with 128 + the signal that killed the program, as a shell does
        code = 128 - code
    if over:
        return Outcome(False, f"used {over} MB of memory, more than requests.memory ({memory_mb} MB): stopped", code)
    return Outcome(code == 0, children.describe_exit(code, child.killed), code)


async def _stop(child: children.Child, grace: float, wrapped: bool) -> int:
    """Stop an operator's process group (children.stop). Under bwrap, which dies at TERM and takes
    its program with it (--die-with-parent), the program gets the TERM first and the grace to end,
    bwrap ending with it; what is left is then stopped at once."""
    if wrapped and child.proc.returncode is None:
        try:
            programs = [proc.pid for proc in psutil.Process(child.pid).children()]
        except psutil.Error:
            programs = []
        for pid in programs:
            with contextlib.suppress(ProcessLookupError, PermissionError):  # refused: children.stop says so
                os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(child.proc.wait(), grace)
        grace = 0.0
    return await children.stop(child, grace)


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
