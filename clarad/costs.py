"""What loading a model revision costs: seconds until ready, and device memory taken.

Measured on every load (time, and the instance's memory before and after: NVML on a GPU, the
tritonserver process tree's resident memory on the CPU), per model revision and device kind, and
kept in the store. A revision never measured on a device kind gets an estimate from its files'
size until it is. Owned by the daemon's loop; placement reads plain ``Cost`` values from it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass

from clarad.placement import LoadCost
from clarad.store import Store

# Estimates for a revision not yet measured: a fixed start-up cost plus reading its files, and
# device memory equal to its files (weights dominate both).
ESTIMATE_BASE_SECONDS = 1.0
ESTIMATE_BYTES_PER_SECOND = 500e6


@dataclass(frozen=True)
class Cost:
    seconds: float
    memory: int  # bytes
    measured: bool

    @property
    def load(self) -> LoadCost:
        return LoadCost(self.seconds, self.memory)


def estimate(size: int) -> Cost:
    return Cost(ESTIMATE_BASE_SECONDS + size / ESTIMATE_BYTES_PER_SECOND, size, False)


class CostBook:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.start_seconds = 1.0  # an instance start until one is measured; then the latest
        self.version = 0  # moves with every measurement
        self.newly_measured: list[str] = []  # models measured since the scheduler last took this list
        self.known = {(row["name"], row["digest"], row["device"]): Cost(row["load_seconds"], row["memory_bytes"], True)
                      for row in store.load_costs()}

    def of(self, name: str, digest: str, size: int, device: str) -> Cost:
        return self.known.get((name, digest, device)) or estimate(size)

    def record(self, name: str, digest: str, device: str, seconds: float, memory: int, now: float) -> Cost:
        cost = Cost(seconds, max(0, memory), True)  # another load on the same GPU can make a delta negative
        self.known[(name, digest, device)] = cost
        self.version += 1
        self.newly_measured.append(name)
        self.store.record_load_cost(name, digest, device, seconds, cost.memory, now)
        return cost

    def measured(self) -> dict[tuple[str, str, str], Cost]:
        return dict(self.known)

    def table(self, digests: Mapping[str, str], sizes: Mapping[str, int],
              devices: Collection[str]) -> Mapping[tuple[str, str], LoadCost]:
        """Placement's costs of the repository's current revisions, looked up as placement asks for
        them (a pass looks at a few models, not the whole repository)."""
        return _Table(self, digests, sizes, devices)


class _Table(Mapping[tuple[str, str], LoadCost]):
    def __init__(self, book: CostBook, digests: Mapping[str, str], sizes: Mapping[str, int],
                 devices: Collection[str]) -> None:
        self.book, self.digests, self.sizes, self.devices = book, digests, sizes, devices
        self.seen: dict[tuple[str, str], LoadCost] = {}

    def __getitem__(self, key: tuple[str, str]) -> LoadCost:
        cost = self.seen.get(key)
        if cost is None:
            name, device = key
            if name not in self.digests or device not in self.devices:
                raise KeyError(key)
            cost = self.seen[key] = self.book.of(name, self.digests[name], self.sizes.get(name, 0), device).load
        return cost

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((name, device) for name in self.digests for device in self.devices)

    def __len__(self) -> int:
        return len(self.digests) * len(self.devices)
