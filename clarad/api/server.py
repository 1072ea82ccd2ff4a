"""The gRPC server of Clara's Platform API, on the daemon's loop (grpc.aio).

It listens on ``api_address:api_port`` (127.0.0.1:30031 unless configured; port 0: no TCP) and,
when ``api_socket`` is set, on that Unix socket too. The API has no authentication, so an address
other than loopback is logged as a warning. A listener that cannot be opened stops start-up with
the setting's name, as a bad setting does. Handlers are coroutines on the loop that ask the same
owners the control socket does; file bodies move in worker threads (see common.py).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from typing import TYPE_CHECKING, Optional

import grpc

from clarad.api.clara import ClaraService
from clarad.api.common import MAX_MESSAGE
from clarad.api.jobs import JobsService
from clarad.api.models import ModelsService
from clarad.api.payloads import PayloadsService
from clarad.api.pipelines import PipelinesService
from clarad.api.protos import (
    clara_pb2_grpc,
    jobs_pb2_grpc,
    models_pb2_grpc,
    payloads_pb2_grpc,
    pipelines_pb2_grpc,
)
from clarad.config import Settings
from clarad.errors import ClaradError

if TYPE_CHECKING:
    from clarad.daemon import Daemon

log = logging.getLogger("clarad")

STOP_GRACE = 2.0  # seconds calls in progress get at shutdown
SERVICES = ((models_pb2_grpc, ModelsService), (pipelines_pb2_grpc, PipelinesService), (jobs_pb2_grpc, JobsService),
            (payloads_pb2_grpc, PayloadsService), (clara_pb2_grpc, ClaraService))


def listeners(settings: Settings) -> list[tuple[str, str]]:
    """(setting, gRPC address) of each listener the settings ask for."""
    found = []
    if settings.api_port:
        host = settings.api_address
        host = f"[{host}]" if ":" in host else host
        found.append(("api_address/api_port", f"{host}:{settings.api_port}"))
    if settings.api_socket is not None:
        found.append(("api_socket", f"unix:{settings.api_socket}"))
    return found


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


async def serve(daemon: "Daemon") -> Optional[grpc.aio.Server]:
    """Start serving Clara's API as the settings say; None when every listener is off."""
    settings = daemon.settings
    wanted = listeners(settings)
    if not wanted:
        return None
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                                      ("grpc.max_send_message_length", MAX_MESSAGE)])
    for module, service in SERVICES:
        getattr(module, f"add_{service.__name__.removesuffix('Service')}Servicer_to_server")(service(daemon), server)
    for setting, address in wanted:
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise ClaradError(f"{setting}: cannot listen on {address} for Clara's gRPC API ({exc})") from None
        if not bound and not address.startswith("unix:"):
            raise ClaradError(f"{setting}: cannot listen on {address} for Clara's gRPC API (in use?)")
    await server.start()
    if settings.api_socket is not None:
        os.chmod(settings.api_socket, 0o660)
    if settings.api_port and not is_loopback(settings.api_address):
        log.warning("Clara's gRPC API listens on %s:%d, beyond this host, without authentication",
                    settings.api_address, settings.api_port)
    log.info("Clara's gRPC API: %s", ", ".join(address for _, address in wanted))
    return server


async def stop(server: Optional[grpc.aio.Server]) -> None:
    if server is not None:
        await server.stop(STOP_GRACE)
