"""Intake's looks at drops: a drop renamed in is whole and is not walked; one being written is."""

from __future__ import annotations

import asyncio
from pathlib import Path

from clarad.inbox import Drop
from clarad.intake import Intake, _observe
from tests.unit.test_hostile_models import Harness


def test_a_renamed_drop_is_looked_at_without_walking_its_tree(tmp_path: Path) -> None:
    """Before: every look at a drop walked all of it, also one renamed in whole (a 100,000-file
    payload kept a worker busy, and through the GIL the loop, for seconds)."""
    drop = tmp_path / "scan"
    for n in range(20):
        (drop / f"series{n}").mkdir(parents=True)
        for m in range(100):
            (drop / f"series{n}" / f"{m}.dcm").write_bytes(b"x")
    [(whole, _took)] = _observe([drop], {drop}).values()
    [(copying, _took)] = _observe([drop], set()).values()
    assert whole is not None and whole[0] == 1  # its top alone
    assert copying is not None and copying[0] == 1 + 20 + 2000 and copying[1] >= 2000


def test_a_drop_looked_at_less_often_keeps_its_settle_clock(tmp_path: Path) -> None:
    """A large tree being copied is walked only every so often; between walks it must stay tracked,
    or its settle clock would start again at every walk and it would never be taken."""
    h = Harness(tmp_path / "state")
    try:
        taken: list[str] = []
        intake = Intake(h.layout.inbox, h.ingest, 1.0, lambda job_id, _pipeline: taken.append(job_id), lambda: None)
        pipeline = h.layout.inbox / "pipelines" / "p.yaml"
        pipeline.write_text("name: p\noperators:\n- name: op\n  command: [/bin/true]\n")
        drop = Drop("pipelines", pipeline)

        async def scenario() -> None:
            intake.on_event(drop, renamed=False)
            await intake.step(100.0)  # first look: tracked since 100
            intake.next_look[pipeline] = 105.0  # as if its walk had been slow
            await intake.step(100.5)  # not looked at
            assert intake.tracked[pipeline].since == 100.0
            await intake.step(105.0)  # looked at again, unchanged for 5 s: taken
            assert pipeline not in intake.drops

        asyncio.run(scenario())
        assert [p["name"] for p in h.store.pipelines()] == ["p"]
    finally:
        h.close()
