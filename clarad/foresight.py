"""What the "oracle" placement baseline of benchmarks knows: the models of every job to come, in
arrival order (``placement_future``, a JSON list of lists of model names), and from it, for the
job that arrived n-th, how many jobs later each model is wanted next (``World.next_use``).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from clarad.errors import ConfigError


class NextUse(Mapping[str, int]):
    """model -> jobs from ``position`` until the next one wanting it; absent when none does."""

    def __init__(self, uses: Mapping[str, list[int]], position: int) -> None:
        self._uses = uses
        self._position = position

    def __getitem__(self, name: str) -> int:
        positions = self._uses.get(name, [])
        at = bisect.bisect_right(positions, self._position)
        if at == len(positions):
            raise KeyError(name)
        return positions[at] - self._position

    def __iter__(self) -> Iterator[str]:
        return (name for name, positions in self._uses.items() if positions[-1] > self._position)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Foresight:
    def __init__(self, sets: Sequence[Sequence[str]]) -> None:
        self.uses: dict[str, list[int]] = {}
        for position, models in enumerate(sets):
            for name in dict.fromkeys(models):
                self.uses.setdefault(name, []).append(position)

    @classmethod
    def read(cls, path: Path) -> Foresight:
        try:
            sets = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"placement_future {path}: {exc}") from None
        if not isinstance(sets, list) or not all(isinstance(s, list) and all(isinstance(n, str) for n in s)
                                                  for s in sets):
            raise ConfigError(f"placement_future {path}: not a JSON list of lists of model names")
        return cls(sets)

    def after(self, position: int) -> NextUse:
        """What is known at the job that arrived ``position``-th (from 0)."""
        return NextUse(self.uses, position)
