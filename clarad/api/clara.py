"""``nvidia.clara.platform.Clara``: the platform itself. Version is clarad's own. Utilization reads
the GPUs' memory through NVML (a host without GPUs gets an empty answer, not an invented one), with
the job holding each GPU; ``pcie_id`` carries NVML's index, and compute utilization is not read
(left 0). With ``watch`` it answers again every ``WATCH_SECONDS`` until the client hangs up. Stop
is refused: clarad is a service, stopped by its service manager, not by whoever reaches its API.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from clarad import __version__
from clarad.api.common import answers, identifier, ok, refuse, streams, timestamp
from clarad.api.protos import clara_pb2, clara_pb2_grpc, common_pb2
from clarad.api.rules import version_numbers
from clarad.gpus import GpuMemory

if TYPE_CHECKING:
    from clarad.daemon import Daemon

C = clara_pb2
Gpu = C.ClaraUtilizationResponse.GpuUtilization
WATCH_SECONDS = 1.0


class ClaraService(clara_pb2_grpc.ClaraServicer):
    def __init__(self, daemon: "Daemon") -> None:
        self.d = daemon

    @answers(C.ClaraVersionResponse)
    async def Version(self, request: Any, context: Any) -> Any:
        major, minor, patch, label = version_numbers(__version__)
        return C.ClaraVersionResponse(header=ok(), version=common_pb2.Version(
            major=major, minor=minor, patch=patch, label=f"clarad {__version__}" + (f" {label}" if label else "")))

    @streams(C.ClaraUtilizationResponse)
    async def Utilization(self, request: Any, context: Any) -> AsyncIterator[Any]:
        while True:
            readings = await asyncio.to_thread(self.d.gpu_source.memory)
            yield C.ClaraUtilizationResponse(header=ok(), gpu_metrics=self._gpus(readings))
            if not request.watch:
                return
            await asyncio.sleep(WATCH_SECONDS)

    def _gpus(self, readings: list[GpuMemory]) -> list[Any]:
        """Each GPU NVML reads, with the job that holds it, if any."""
        now, node = time.time(), socket.gethostname()
        holders = {uuid: job for job, running in self.d.scheduler.running.items() for uuid in running.gpus}
        found = []
        for gpu in readings:
            used = min(gpu.used, gpu.total)
            job = holders.get(gpu.uuid)
            processes = [Gpu.ProcessDetails(name=f"job {job}", job_id=identifier(job))] if job else []
            found.append(Gpu(node_id=node, pcie_id=gpu.index, memory_used=used, memory_free=gpu.total - used,
                             memory_utilization=100.0 * used / gpu.total if gpu.total else 0.0,
                             timestamp=timestamp(now), process_details=processes))
        return found

    Stop = refuse(C.ClaraStopResponse, "clarad is stopped by its service manager (systemctl stop clarad), "
                                       f"not through its API (pid {os.getpid()})")
