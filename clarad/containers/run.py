"""One container operator of one job, run to its end through the operator lifecycle of operators.py.

The runtime's client (``podman run``, attached) is the operator's child process: recorded, its
output in the operator's log, its exit status the container's. A timeout, a cancel or clarad's
shutdown stops the container itself (``stop``: TERM, the grace, KILL), then its client; whatever
happened, the container is removed at the end. One left behind by a crash of clarad is found by
its labels at the next start (leftovers.py).
"""

from __future__ import annotations

import asyncio
import functools
import glob
import logging
import os
import pwd
import resource
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import psutil

from clarad import children
from clarad.config import Settings
from clarad.containers import gpus as container_gpus
from clarad.containers import spec
from clarad.containers.engine import Engine
from clarad.errors import ClaradError
from clarad.operators import Endpoints, Outcome, Workspace, expand, run_operator
from clarad.pipelines import Operator, Pipeline

log = logging.getLogger("clarad")

COMMAND_TIMEOUT = 60.0  # seconds for one runtime command (inspect, rm); stop gets its grace on top
CDI_DIRS = ("/etc/cdi", "/var/run/cdi")


async def run(op: Operator, job_id: str, job_name: str, workspace: Workspace, triton: Optional[Endpoints],
              gpus: list[str], settings: Settings, registry: children.ChildRegistry, engine: Engine) -> Outcome:
    """Run one container operator to its end; the container is gone when this returns."""
    op = op.with_default_paths()
    image = spec.image_ref(op)
    try:
        devices = await asyncio.to_thread(gpu_devices, engine.name, gpus)
        user = identity(settings.operator_user)
    except ClaradError as exc:
        return Outcome(False, f"cannot start: {exc}", None)
    env = spec.container_env(op, job_id, job_name, workspace, triton, gpus)
    name = spec.container_name(Path(registry.marker), job_id, op.name)
    container = spec.ContainerRun(
        name, image, expand(op.argv, env), env, workspace.binds(op), spec.labels(Path(registry.marker), job_id, op.name),
        user=user, memory_mb=op.requests.memory, cpus=op.requests.cpu, devices=devices, ulimits=own_ulimits(),
        pull=settings.container_pull)
    client_env = {key: value for key, value in os.environ.items() if key != "NOTIFY_SOCKET"}
    try:
        outcome = await run_operator(op, spec.run_argv(engine.path, container), client_env, workspace,
                                     f"{job_id}/{op.name}", registry, settings.operator_stop_grace_seconds,
                                     wrapped=True, stopper=functools.partial(stop_container, engine, name))
        if not outcome.ok and op.requests.memory and await _oom_killed(engine, name):
            outcome = Outcome(False, f"used more memory than requests.memory ({op.requests.memory} MB): killed by "
                                     "the kernel's OOM killer", outcome.exit_code)
        elif op.requests.memory and outcome.exit_code == -signal.SIGKILL:  # not clarad's: its stops cancel this
            # The runtime does not always learn of the kernel's kill (cgroup v1): say what is most likely.
            outcome = Outcome(False, f"killed by SIGKILL, most likely by the kernel for using more memory than "
                                     f"requests.memory ({op.requests.memory} MB), the container's limit", -9)
        elif outcome.exit_code == 125:  # the runtime's own failure: the image is checked only then
            missing = settings.container_pull == "never" and not await image_present(engine, image)
            outcome = Outcome(False, spec.missing_image(engine.name, image) if missing else
                              f"{engine.name} could not run the container (exit status 125; its reason is at the end "
                              "of the operator's log)", 125)
    finally:
        await children.wait_through_cancel(asyncio.ensure_future(remove(engine, name)))
        await asyncio.to_thread(reap_monitors, name)
    return outcome


async def stop_container(engine: Engine, name: str, child: children.Child, grace: float) -> int:
    """Stop the container (TERM, ``grace``, KILL), then wait for its client, which ends with it;
    a client that does not is stopped like any child (StopFailed when it cannot be)."""
    if child.proc.returncode is None:
        problem = await command(spec.stop_argv(engine.path, name, grace), grace + COMMAND_TIMEOUT)
        if problem is not None:
            log.warning("operator %s: %s stop %s: %s", child.label, engine.name, name, problem)
    try:
        return await asyncio.wait_for(child.proc.wait(), children.KILL_WAIT)
    except asyncio.TimeoutError:
        return await children.stop(child, 0)


async def remove(engine: Engine, name: str) -> None:
    problem = await command(spec.remove_argv(engine.path, name), COMMAND_TIMEOUT)
    if problem is not None:
        log.error("container %s could not be removed: %s (the next start of clarad tries again)", name, problem)


async def _oom_killed(engine: Engine, name: str) -> bool:
    done = await _exec(spec.oom_argv(engine.path, name), COMMAND_TIMEOUT)
    return done is not None and done[0] == 0 and done[1].strip() == "true"


MONITOR_WAIT = 5.0  # seconds for a removed container's monitor to exit


async def check_images(engine: Engine, pipeline: Pipeline) -> None:
    """Raise ClaradError naming the first image of the pipeline (its operators' and their services')
    that the local store lacks, who needs it, and the line that loads it."""
    wanted: dict[str, str] = {}
    for op in pipeline.operators:
        if op.image is not None:
            wanted.setdefault(spec.image_ref(op), f'operator "{op.name}"')
        for service in op.container_services:
            wanted.setdefault(spec.image_ref_of(service.container.image, service.container.tag),
                              f'operator "{op.name}" service {service.name}')
    for image, who in wanted.items():
        if not await image_present(engine, image):
            raise ClaradError(f"{who}: {spec.missing_image(engine.name, image)}")


def reap_monitors(name: str) -> None:
    """Reap the runtime's container monitors (conmon) that clarad adopted: each leaves the client that
    started it, and under operator_containment = descendants clarad is a child subreaper, so they
    become clarad's. The removed container ``name``'s is waited for (bounded), every other that has
    exited is reaped too. clarad never starts a conmon itself, so no wait of its own is taken."""
    for child in psutil.Process().children():
        try:
            if child.name() != "conmon":
                continue
            if child.status() != psutil.STATUS_ZOMBIE:
                argv = child.cmdline()
                if argv[argv.index("-n"):][:2] != ["-n", name]:  # another container's, still running
                    continue
            child.wait(MONITOR_WAIT)  # psutil reaps a child of this process it waits for
        except (psutil.Error, ValueError, ChildProcessError):
            continue


async def image_present(engine: Engine, image: str) -> bool:
    done = await _exec(spec.image_exists_argv(engine.name, engine.path, image), COMMAND_TIMEOUT)
    return done is not None and done[0] == 0


async def command(argv: Sequence[str], timeout: float) -> Optional[str]:
    """Run a runtime command to its end; None, or why it failed in one line."""
    done = await _exec(argv, timeout)
    if done is None:
        return f"no answer within {timeout:g} s"
    code, out, err = done
    if code == 0:
        return None
    lines = (err or out).strip().splitlines()
    return lines[-1] if lines else f"exit status {code}"


async def _exec(argv: Sequence[str], timeout: float) -> Optional[tuple[int, str, str]]:
    """(exit status, stdout, stderr), or None after ``timeout`` (the command is then killed)."""
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def identity(user: Optional[str]) -> Optional[tuple[int, int]]:
    """operator_user's uid and gid, numeric: the image need not know the name."""
    if user is None:
        return None
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise ClaradError(f"operator_user {user}: no such user") from None
    return account.pw_uid, account.pw_gid


def own_ulimits() -> dict[str, tuple[int, int]]:
    """clarad's own limits for the container, as a host operator inherits them (spec.ulimits)."""
    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        pid_max = None
    return spec.ulimits(resource.getrlimit(resource.RLIMIT_NOFILE), resource.getrlimit(resource.RLIMIT_NPROC), pid_max)


def gpu_devices(engine: str, uuids: list[str]) -> list[str]:
    """The runtime's arguments for the granted GPUs (read from the host's CDI and driver files)."""
    if not uuids:
        return []
    specs = [_read(path) for folder in CDI_DIRS for path in sorted(glob.glob(f"{folder}/*"))]
    infos = [_read(path) for path in sorted(glob.glob("/proc/driver/nvidia/gpus/*/information"))]
    return container_gpus.gpu_args(engine, uuids, container_gpus.has_cdi_gpus(specs),
                                   container_gpus.minors_from_information(infos))


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""
