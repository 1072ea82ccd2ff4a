"""How much device memory placement may still fill: per memory domain (each GPU, and the host's
memory that CPU instances share), read when a scheduling pass has a job to place.

A GPU's free memory is NVML's reading; the host's is the smaller of what the kernel says is
available and the configured budget less what CPU instances hold (measured per model). Both leave
``memory_margin_bytes`` free, and both subtract the loads already decided but not yet done.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import psutil

from clarad.gpus import GpuMemory
from clarad.placement import Memory


def host_memory(budget: int, held: int, margin: int) -> Memory:
    """``budget``: cpu_memory_bytes (0: the host's); ``held``: bytes CPU instances' models take."""
    info = psutil.virtual_memory()
    total = (budget or info.total) - margin
    return Memory(free=max(0, min(total - held, info.available - margin)), total=max(0, total))


def gpu_memory(readings: Iterable[GpuMemory], margin: int) -> dict[str, Memory]:
    return {r.uuid: Memory(free=max(0, r.total - r.used - margin), total=max(0, r.total - margin)) for r in readings}


def less(memory: Mapping[str, Memory], taken: Mapping[str, int]) -> dict[str, Memory]:
    """``memory`` with the bytes of loads decided but not yet done taken out of each domain."""
    return {domain: Memory(max(0, room.free - taken.get(domain, 0)), room.total) for domain, room in memory.items()}
