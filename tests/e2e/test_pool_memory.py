"""Placement within device memory, with the real Triton: models whose load takes a known amount of
memory (tests/e2e/models/ballast) are measured, and under a host budget that holds one of them but
not two, an idle instance unloads what no waiting job wants instead of a second instance starting
and driving the host past its budget."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import tritonclient.grpc as grpcclient

from tests.e2e.clarad_process import Clarad
from tests.waiting import wait_for

GATED = Path(__file__).parent / "operators" / "gated_infer.py"
BALLAST = Path(__file__).parent / "models" / "ballast"


def ballast(where: Path, name: str, megabytes: int) -> Path:
    model = where / name
    shutil.copytree(BALLAST, model)
    config = model / "config.pbtxt"
    text = config.read_text().replace('name: "ballast"', f'name: "{name}"')
    config.write_text(text.replace('string_value: "100"', f'string_value: "{megabytes}"'))
    return model


def setup(clarad: Clarad, where: Path) -> None:
    for name in ("heavy1", "heavy2"):
        added = clarad.cli("models", "add", str(ballast(where, name, 120)))
        assert added.returncode == 0, added.stderr
        clarad.drop_text(f"""
name: uses-{name}
operators:
- name: infer
  command: ["{sys.executable}", "{GATED}", "{name}"]
  models: [{{name: {name}}}]
""", "pipelines", f"uses-{name}.yaml")
    wait_for(lambda: len(clarad.ask("pipelines.list")) == 2, 30, "the pipelines")


def run_job(clarad: Clarad, pipeline: str, where: Path) -> dict:
    payload = where / f"payload-{len(list(where.iterdir()))}"
    payload.mkdir()
    (payload / "numbers.txt").write_text("4 5")
    (payload / "go").write_text("")
    known = {job["id"] for job in clarad.ask("jobs.list")}
    clarad.drop(payload, f"jobs/{pipeline}")
    job = clarad.wait_job_stopped(clarad.wait_new_job(known))
    assert job["status"] == "HEALTHY", job["reason"]
    assert (Path(job["directory"]) / "operators" / "infer" / "result.json").read_text() == '{"y": [4.0, 5.0]}'
    return job


def measured(clarad: Clarad, name: str) -> int:
    (cost,) = clarad.ask("models.show", model=name)["costs"]
    return int(cost["memory_bytes"])


def test_under_a_memory_budget_an_idle_instance_makes_room_instead_of_a_second_starting(tmp_path: Path) -> None:
    state, work = tmp_path / "state", tmp_path / "work"
    work.mkdir()
    first = Clarad(state, CLARAD_CPU_INSTANCES="2").start()
    setup(first, work)
    one, two = run_job(first, "uses-heavy1", work), run_job(first, "uses-heavy2", work)
    assert one["instance"] != two["instance"]  # unlimited memory: heavy1 stays warm, a second instance starts
    heavy1, heavy2 = measured(first, "heavy1"), measured(first, "heavy2")
    assert min(heavy1, heavy2) > 120 << 20  # the ballast, at least, was seen in the instances' memory
    assert first.stop() == 0

    budget = max(heavy1, heavy2) * 3 // 2  # room for one of them, not for both
    second = Clarad(state, CLARAD_CPU_INSTANCES="2", CLARAD_MEMORY_MARGIN_BYTES="0",
                    CLARAD_CPU_MEMORY_BYTES=str(budget)).start()
    try:
        one = run_job(second, "uses-heavy1", work)
        two = run_job(second, "uses-heavy2", work)
        assert two["instance"] == one["instance"]
        (instance,) = second.ask("status")["instances"]
        assert set(instance["models"]) == {"heavy2"}
        served = grpcclient.InferenceServerClient(instance["grpc"])
        assert served.is_model_ready("heavy2") and not served.is_model_ready("heavy1")
    finally:
        assert second.stop() == 0
