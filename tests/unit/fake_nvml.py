"""A stand-in for the ``pynvml`` module (nvidia-ml-py) at the library level: the same functions
clarad calls, answering from a described set of GPUs, so NvmlGpus runs its real code here."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Optional

NVML_DEVICE_MIG_ENABLE = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_GPU_IS_LOST = 15


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value


@dataclass
class Device:
    uuid: str
    name: str
    total: int
    used: int = 0
    mig: Optional[list["Device"]] = None  # MIG devices when MIG is on; None: no MIG support
    lost: bool = False  # every read fails


@dataclass
class FakeNvml:
    devices: list[Device] = field(default_factory=list)
    driver: bool = True
    initialized: int = 0

    def module(self) -> Any:
        def need(handle: Device) -> Device:
            if handle.lost:
                raise NVMLError(NVML_ERROR_GPU_IS_LOST)
            return handle

        def init() -> None:
            if not self.driver:
                raise NVMLError(9)  # NVML_ERROR_DRIVER_NOT_LOADED
            self.initialized += 1

        def mig_mode(handle: Device) -> tuple[int, int]:
            if need(handle).mig is None:
                raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
            return (NVML_DEVICE_MIG_ENABLE, NVML_DEVICE_MIG_ENABLE) if handle.mig else (0, 0)

        def mig_handle(handle: Device, index: int) -> Device:
            migs = need(handle).mig or []
            if index >= len(migs):
                raise NVMLError(NVML_ERROR_NOT_FOUND)
            return migs[index]

        return SimpleNamespace(
            NVMLError=NVMLError, NVML_DEVICE_MIG_ENABLE=NVML_DEVICE_MIG_ENABLE,
            nvmlInit=init, nvmlShutdown=lambda: None,
            nvmlDeviceGetCount=lambda: len(self.devices),
            nvmlDeviceGetHandleByIndex=lambda index: self.devices[index],
            nvmlDeviceGetName=lambda handle: need(handle).name.encode(),
            nvmlDeviceGetUUID=lambda handle: need(handle).uuid,
            nvmlDeviceGetMemoryInfo=lambda handle: SimpleNamespace(total=need(handle).total, used=handle.used,
                                                                   free=handle.total - handle.used),
            nvmlDeviceGetMigMode=mig_mode,
            nvmlDeviceGetMaxMigDeviceCount=lambda handle: 7,
            nvmlDeviceGetMigDeviceHandleByIndex=mig_handle,
        )
