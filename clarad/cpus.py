"""CPUs for operators with ``requests.cpu``: each is pinned (CPU affinity, through util-linux's
``taskset``) to that many of the CPUs clarad may use, the ones fewest running operators are pinned
to, so that pinned operators spread over the host. Pins are not exclusive: an operator without
``requests.cpu`` may run anywhere, as before. Owned by the daemon's loop; pure but for the count.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence

from clarad.errors import ClaradError


class CpuPins:
    def __init__(self, cpus: Iterable[int]) -> None:
        self.load = {cpu: 0 for cpu in sorted(cpus)}  # running operators pinned to each CPU

    @classmethod
    def for_host(cls) -> "CpuPins":
        return cls(os.sched_getaffinity(0))

    def take(self, count: int) -> list[int]:
        """``count`` CPUs, the least used first (lowest number among equals); [] for 0."""
        if count > len(self.load):
            raise ClaradError(f"requests.cpu is {count}, but clarad may use {len(self.load)} CPU(s)")
        chosen = sorted(self.load, key=lambda cpu: (self.load[cpu], cpu))[:count]
        for cpu in chosen:
            self.load[cpu] += 1
        return sorted(chosen)

    def give(self, cpus: Sequence[int]) -> None:
        for cpu in cpus:
            self.load[cpu] -= 1


def pinned_argv(cpus: Sequence[int], argv: Sequence[str]) -> list[str]:
    """``argv`` run on ``cpus`` only (taskset sets the affinity and execs it; children inherit it)."""
    if not cpus:
        return list(argv)
    taskset = shutil.which("taskset")
    if taskset is None:
        raise ClaradError("taskset (util-linux) not found on PATH: it pins operators with requests.cpu")
    return [taskset, "--cpu-list", ",".join(map(str, cpus)), *argv]  # taskset takes no "--"
