"""GPU discovery behind a small interface: NVML on a real host, a fixed list as a stand-in.

``discover`` never raises: a host without a driver or without GPUs has no GPUs, and clarad runs
CPU instances there. A GPU with MIG enabled counts as its MIG devices, each its own slot and memory;
a GPU NVML cannot read is left out (and logged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    memory_total: int  # bytes


@dataclass(frozen=True)
class GpuMemory:
    index: int
    uuid: str
    used: int  # bytes
    total: int


class Gpus(Protocol):
    def discover(self) -> list[Gpu]: ...

    def memory(self) -> list[GpuMemory]: ...


class NvmlGpus:
    """The real GPUs, as NVML (nvidia-ml-py, module ``pynvml``) reports them."""

    def discover(self) -> list[Gpu]:
        def read(pynvml: Any, index: int, handle: Any) -> Gpu:
            name = _text(pynvml.nvmlDeviceGetName(handle))
            total = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
            return Gpu(index, _text(pynvml.nvmlDeviceGetUUID(handle)), name, total)

        return _each_device(read, "listing GPUs", log.info)

    def memory(self) -> list[GpuMemory]:
        """Memory in use on each GPU now (read at scrape time); empty without NVML."""
        def read(pynvml: Any, index: int, handle: Any) -> GpuMemory:
            info = pynvml.nvmlDeviceGetMemoryInfo(handle)
            return GpuMemory(index, _text(pynvml.nvmlDeviceGetUUID(handle)), int(info.used), int(info.total))

        return _each_device(read, "reading GPU memory", log.debug)


T = TypeVar("T")


def _each_device(read: Callable[[Any, int, Any], T], doing: str, say: Callable[..., None]) -> list[T]:
    """``read`` every device NVML knows; no library, no driver or no device all mean no GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:
        say("NVML unavailable (%s): no GPU, CPU instances only", exc)
        return []
    try:
        count = pynvml.nvmlDeviceGetCount()
    except pynvml.NVMLError as exc:
        log.warning("NVML failed while %s (%s)", doing, exc)
        pynvml.nvmlShutdown()
        return []
    found = []
    for index in range(count):
        try:
            found += [read(pynvml, index, handle) for handle in _devices(pynvml, pynvml.nvmlDeviceGetHandleByIndex(index))]
        except pynvml.NVMLError as exc:  # a GPU NVML cannot read is unhealthy: it is left out, the others stay
            log.warning("GPU %d left out while %s: %s", index, doing, exc)
    pynvml.nvmlShutdown()
    return found


def _devices(pynvml: Any, handle: Any) -> list[Any]:
    """What instances can be pinned to on one GPU: its MIG devices when MIG is on (each with its own
    memory and UUID, for CUDA_VISIBLE_DEVICES), else the GPU itself."""
    try:
        current, _pending = pynvml.nvmlDeviceGetMigMode(handle)
    except pynvml.NVMLError:  # a GPU without MIG support
        return [handle]
    if current != pynvml.NVML_DEVICE_MIG_ENABLE:
        return [handle]
    migs = []
    for slot in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            migs.append(pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot))
        except pynvml.NVMLError:  # no MIG device configured at this index
            continue
    return migs


class StaticGpus:
    """A stand-in for hosts without NVML: the GPUs it is given."""

    def __init__(self, gpus: list[Gpu], used: int = 0) -> None:
        self._gpus = list(gpus)
        self._used = used

    def discover(self) -> list[Gpu]:
        return list(self._gpus)

    def memory(self) -> list[GpuMemory]:
        return [GpuMemory(gpu.index, gpu.uuid, self._used, gpu.memory_total) for gpu in self._gpus]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Slot:
    """A place a Triton instance may run: one GPU, or the CPU."""

    id: str
    cuda_visible_devices: str  # "" hides every GPU (a CPU instance)

    @property
    def device(self) -> str:
        """The device kind its instance loads models onto: "gpu" or "cpu"."""
        return "gpu" if self.cuda_visible_devices else "cpu"

    @property
    def domain(self) -> str:
        """Whose memory its instance's models fill: its GPU's (by UUID), or the host's ("cpu")."""
        return self.cuda_visible_devices or "cpu"


def slots(gpus: list[Gpu], per_gpu: int, cpu_instances: int) -> list[Slot]:
    """Instance slots: ``per_gpu`` on each GPU, or ``cpu_instances`` CPU slots when there is none."""
    if not gpus:
        return [Slot(f"cpu-{n}", "") for n in range(cpu_instances)]
    return [Slot(f"gpu{gpu.index}-{n}", gpu.uuid) for gpu in gpus for n in range(per_gpu)]
