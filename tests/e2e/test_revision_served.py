"""The revision Triton serves is the one clarad records: after a rollback, and after a replacement
whose files are older than the revision it replaces, the next job on the warm instance gets the new
answer, and `clarad jobs show` names the revision that gave it."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clarad.repository import tree_digest
from tests.e2e.clarad_process import DEMO, Clarad
from tests.waiting import wait_for

GATED = Path(__file__).parent / "operators" / "gated_infer.py"


def adder(where: Path, name: str, add: int) -> Path:
    """The demo model as ``name``, computing y = x + add."""
    model = where / f"{name}-{add}" / name
    shutil.copytree(DEMO / "models" / "affine", model)
    config = model / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "affine"', f'name: "{name}"'))
    code = model / "1" / "model.py"
    code.write_text(code.read_text().replace("2 * x + 1", f"x + {add}"))
    return model


@pytest.fixture(scope="module")
def clarad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clarad]:
    daemon = Clarad(tmp_path_factory.mktemp("revisions") / "state").start()
    yield daemon
    assert daemon.stop() == 0
    assert daemon.processes() == []


def add_model(clarad: Clarad, source: Path) -> str:
    added = clarad.cli("models", "add", str(source))
    assert added.returncode == 0, added.stderr
    return tree_digest(source)[0]


def run_job(clarad: Clarad, pipeline: str, where: Path) -> dict:
    payload = where / f"payload-{len(list(where.iterdir()))}"
    payload.mkdir()
    (payload / "numbers.txt").write_text("10 20")
    (payload / "go").write_text("")
    known = {job["id"] for job in clarad.ask("jobs.list")}
    clarad.drop(payload, f"jobs/{pipeline}")
    job = clarad.wait_job_stopped(clarad.wait_new_job(known))
    assert job["status"] == "HEALTHY", job["reason"]
    job["result"] = (Path(job["directory"]) / "operators" / "infer" / "result.json").read_text()
    return job


def add_pipeline(clarad: Clarad, model: str) -> None:
    clarad.drop_text(f"""
name: uses-{model}
operators:
- name: infer
  command: ["{sys.executable}", "{GATED}", "{model}"]
  models: [{{name: {model}}}]
""", "pipelines", f"uses-{model}.yaml")
    wait_for(lambda: any(p["name"] == f"uses-{model}" for p in clarad.ask("pipelines.list")), 30, "the pipeline")


def test_after_a_rollback_the_warm_instance_serves_the_old_revision(clarad: Clarad, tmp_path: Path) -> None:
    first = add_model(clarad, adder(tmp_path, "rolled", 1))
    add_pipeline(clarad, "rolled")
    assert run_job(clarad, "uses-rolled", tmp_path)["result"] == '{"y": [11.0, 21.0]}'

    second = add_model(clarad, adder(tmp_path, "rolled", 2))
    replaced = run_job(clarad, "uses-rolled", tmp_path)
    assert replaced["result"] == '{"y": [12.0, 22.0]}'
    assert replaced["models"] == {"rolled": second}

    rolled = clarad.cli("models", "rollback", "rolled")
    assert rolled.returncode == 0, rolled.stderr
    after = run_job(clarad, "uses-rolled", tmp_path)
    assert after["instance"] == replaced["instance"]  # the warm instance, reloaded
    assert after["result"] == '{"y": [11.0, 21.0]}'
    assert after["models"] == {"rolled": first}
    shown = clarad.cli("jobs", "show", after["id"])
    assert f"models: rolled@{first[:12]}" in shown.stdout


def test_a_replacement_with_files_dated_2001_is_served_on_the_next_job(clarad: Clarad, tmp_path: Path) -> None:
    add_model(clarad, adder(tmp_path, "dated", 1))
    add_pipeline(clarad, "dated")
    before = run_job(clarad, "uses-dated", tmp_path)
    assert before["result"] == '{"y": [11.0, 21.0]}'

    old = adder(tmp_path, "dated", 3)
    stamp = 978307200  # 2001-01-01
    for path in [*old.rglob("*"), old]:
        os.utime(path, (stamp, stamp))
    digest = add_model(clarad, old)
    after = run_job(clarad, "uses-dated", tmp_path)
    assert after["instance"] == before["instance"]
    assert after["result"] == '{"y": [13.0, 23.0]}'
    assert after["models"] == {"dated": digest}
