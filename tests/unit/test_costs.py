"""The cost book's table for placement: each cost looked up when asked, as ``CostBook.of`` gives it."""

from __future__ import annotations

from pathlib import Path

import pytest

from clarad.costs import CostBook, estimate
from clarad.placement import UNKNOWN, LoadCost, World
from clarad.store import Store


def test_the_table_gives_the_measured_cost_of_the_current_revision_else_the_estimate(tmp_path: Path) -> None:
    store = Store(tmp_path / "clarad.db")
    try:
        book = CostBook(store)
        book.record("a", "a2", "gpu", 3.0, 300, 1.0)
        book.record("a", "a1", "gpu", 9.0, 900, 1.0)  # an older revision's: not the current one
        table = book.table({"a": "a2", "b": "b1"}, {"a": 10, "b": 2_000_000_000}, {"gpu"})
        assert table[("a", "gpu")] == LoadCost(3.0, 300)
        assert table[("b", "gpu")] == estimate(2_000_000_000).load
        assert dict(table) == {("a", "gpu"): LoadCost(3.0, 300), ("b", "gpu"): estimate(2_000_000_000).load}
        with pytest.raises(KeyError):
            table[("a", "cpu")]  # no CPU slot
        world = World(costs=table)
        assert (world.cost("gone", "gpu"), world.cost("a", "gpu")) == (UNKNOWN, LoadCost(3.0, 300))
        assert book.version == 2
    finally:
        store.close()
