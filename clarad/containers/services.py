"""Clara's ``services:`` that are not Triton: each runs as a container beside its operator, for as
long as the operator runs. Each is started before its operator (its image checked first), on the
host's network, and waited for until every port its ``connections`` name accepts connections on
127.0.0.1; the operator then gets each connection's variable as ``127.0.0.1:<port>``. When the
operator ends (or its job is stopped), the service is stopped and removed like an operator's
container; its output goes to ``logs/<operator>.<service>.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

from clarad import children
from clarad.config import Settings
from clarad.containers import run as containers
from clarad.containers import spec
from clarad.containers.engine import Engine
from clarad.errors import ClaradError
from clarad.operators import Workspace, expand
from clarad.pipelines import Operator
from clarad.pipelines.model import Service, env_value

READY_SECONDS = 120.0  # for a service's ports to accept connections
READY_POLL = 0.1
LABEL_SERVICE = "clarad.service"
# The ports of the services running now, of every job: checked and taken on the loop, so that a
# second job's service can never find the first one's port answering and talk to it.
RESERVED: set[int] = set()


@contextlib.asynccontextmanager
async def running(op: Operator, job_id: str, workspace: Workspace, settings: Settings,
                  registry: children.ChildRegistry, engine: Engine) -> AsyncIterator[dict[str, str]]:
    """The operator's services, running and answering; yields the variables that reach them. Raises
    ClaradError naming the service that could not start. Every one started is stopped and removed
    when the block ends, however it ends."""
    started: list[tuple[str, children.Child, IO[Any]]] = []
    reserved: list[int] = []
    try:
        variables: dict[str, str] = {}
        for service in op.container_services:
            variables.update(await _start(service, op, job_id, workspace, settings, registry, engine, started,
                                          reserved))
        yield variables
    finally:
        ending = asyncio.ensure_future(_stop_all(started, engine, settings.operator_stop_grace_seconds, registry))
        await children.wait_through_cancel(ending)
        RESERVED.difference_update(reserved)


async def _start(service: Service, op: Operator, job_id: str, workspace: Workspace, settings: Settings,
                 registry: children.ChildRegistry, engine: Engine,
                 started: list[tuple[str, children.Child, IO[Any]]], reserved: list[int]) -> dict[str, str]:
    image = spec.image_ref_of(service.container.image, service.container.tag)
    what = f"service {service.name}"  # the job's reason names the operator
    if settings.container_pull == "never" and not await containers.image_present(engine, image):
        raise ClaradError(f"{what}: {spec.missing_image(engine.name, image)}")
    ports = [c.port for c in service.connections.http if c.port is not None]
    ours = [port for port in ports if port in RESERVED]
    if ours:
        raise ClaradError(f"{what}: port {ours[0]} is another running job's service's: services share the host's "
                          "network")
    taken = [port for port in ports if _answers(port)]
    if taken:
        raise ClaradError(f"{what}: port {taken[0]} is in use on this host already (another program): services "
                          "share the host's network")
    RESERVED.update(ports)
    reserved.extend(ports)
    state = Path(registry.marker)
    name = spec.container_name(state, job_id, f"{op.name}.{service.name}")
    env = {key: env_value(value) for key, value in service.variables.items()}
    run = spec.ContainerRun(
        name, image, expand([env_value(part) for part in service.container.command or []], env), env, [],
        {**spec.labels(state, job_id, op.name), LABEL_SERVICE: service.name}, user=containers.identity(settings.operator_user),
        memory_mb=service.requests.memory, cpus=service.requests.cpu, ulimits=containers.own_ulimits(),
        pull=settings.container_pull)
    log_file = open(workspace.logs / f"{op.name}.{service.name}.log", "ab", buffering=0)
    try:
        child = await children.spawn(spec.run_argv(engine.path, run), kind="service", label=f"{job_id}/{op.name}/{service.name}",
                                     registry=registry, env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
                                     cwd=workspace.root, stdout=log_file, stderr=asyncio.subprocess.STDOUT)
    except (OSError, ClaradError) as exc:
        log_file.close()
        raise ClaradError(f"{what}: cannot start {engine.name}: {exc}") from None
    started.append((name, child, log_file))
    await _ready(child, ports, what, f"logs/{op.name}.{service.name}.log")
    return {c.name: f"127.0.0.1:{c.port}" for c in service.connections.http}


async def _ready(child: children.Child, ports: list[int], what: str, log_name: str) -> None:
    deadline = time.monotonic() + READY_SECONDS
    waiting = list(ports)
    while waiting:
        if child.proc.returncode is not None:
            raise ClaradError(f"{what} {children.describe_exit(child.proc.returncode)} before it answered "
                              f"(see {log_name})")
        if time.monotonic() > deadline:
            raise ClaradError(f"{what}: port {waiting[0]} did not accept connections within {READY_SECONDS:g} s "
                              f"(see {log_name})")
        waiting = [port for port in waiting if not await asyncio.to_thread(_answers, port)]
        if waiting:
            await asyncio.sleep(READY_POLL)


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


async def _stop_all(started: list[tuple[str, children.Child, IO[Any]]], engine: Engine, grace: float,
                    registry: children.ChildRegistry) -> None:
    for name, child, log_file in reversed(started):
        with contextlib.suppress(children.StopFailed):  # logged; stays recorded for the next start
            await containers.stop_container(engine, name, child, grace)
            registry.forget(child.pid)
        await containers.remove(engine, name)
        log_file.close()
        await asyncio.to_thread(containers.reap_monitors, name)

