"""A drop renamed into the inbox is complete: it is taken at once, not after settle_seconds."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.clarad_process import DEMO, Clarad, demo_pipeline
from tests.waiting import wait_for

SETTLE = 120.0  # far longer than any wait below: only the rename path can take these drops in time


def test_renamed_drops_are_taken_without_settling(tmp_path: Path) -> None:
    clarad = Clarad(tmp_path / "state", CLARAD_SETTLE_SECONDS=str(SETTLE), CLARAD_RESCAN_SECONDS="600").start()
    try:
        clarad.drop(DEMO / "models" / "affine", "models")  # a directory renamed in from outside the inbox
        wait_for(lambda: clarad.ask("models.list"), SETTLE / 4, "the renamed model")
        clarad.drop_text(demo_pipeline(), "pipelines", "affine-demo.yaml")  # a file renamed in
        wait_for(lambda: clarad.ask("pipelines.list"), SETTLE / 4, "the renamed pipeline")
        clarad.drop_text("3", "jobs/affine-demo", "n.txt")
        job = clarad.wait_job_stopped(clarad.wait_new_job(set(), SETTLE / 4))
        assert job["status"] == "HEALTHY", job["reason"]
    finally:
        assert clarad.stop() == 0
