"""NVIDIA's public pipeline files, unchanged but for their image names, through a real `clarad run` and
podman: their images are built here (images.py) with the same entrypoints, working directories and
command lines, each with a program at the path the pipeline runs that does the original's minimal
work (the originals are not available; tests/e2e/operators/images/ says what each stands in for)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e import images
from tests.e2e.clarad_process import DEMO, Clarad
from tests.e2e.test_container_operators import containers, payload, rejection, start_job
from tests.waiting import wait_for

pytestmark = [pytest.mark.skipif(images.PODMAN is None, reason=images.NO_PODMAN),
              pytest.mark.skipif(not images.BUSYBOX.exists(), reason=images.NO_BUSYBOX),
              pytest.mark.skipif(not images.PYTHON.exists(), reason=images.NO_PYTHON)]

CLARA = Path(__file__).resolve().parents[2] / "tests" / "corpus" / "pipelines" / "clara"
PROGRAMS = Path(__file__).resolve().parent / "operators" / "images"
DICOM = b"\0" * 128 + b"DICM" + b"\2\0\1\0UL\4\0\0\0\0\0"  # preamble, marker, a group length element


@pytest.fixture(scope="module")
def clarad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clarad]:
    daemon = Clarad(tmp_path_factory.mktemp("clara-images") / "state").start()
    yield daemon
    daemon.stop_if_running()


def with_images(name: str, replaced: dict[str, str]) -> str:
    """The corpus file with only its images' names (image and tag) replaced."""
    data = yaml.safe_load((CLARA / name).read_text())
    for op in data["operators"]:
        repository, tag = replaced[op["container"]["image"]].rsplit(":", 1)
        op["container"]["image"], op["container"]["tag"] = repository, tag
    return yaml.safe_dump(data, sort_keys=False)


def install(daemon: Clarad, text: str, name: str) -> None:
    daemon.drop_text(text, "pipelines", f"{name}.yaml")
    wait_for(lambda: any(p["name"] == name for p in daemon.ask("pipelines.list")) or rejection(daemon, name), 30,
             f"pipeline {name}")
    assert not rejection(daemon, name)


def test_dicom_adapters_dicom_test_pipeline_runs_with_only_its_images_renamed(clarad: Clarad, tmp_path: Path) -> None:
    dicom_test = images.image("dicom-test", {"/home/clara/main.py": (PROGRAMS / "dicom_test_main.py").read_text()},
                              python=True, workdir="/home/clara", entrypoint=["bash", "-c", "python -u main.py"])
    register = images.image("register-results", {"/opt/clara/register.py": (PROGRAMS / "register_results.py").read_text()},
                            python=True, workdir="/opt/clara")
    install(clarad, with_images("dicom-adapter-dicom-test.yaml", {
        "clara/dicom-test": dicom_test, "nvcr.io/nvidia/clara/register-results": register}), "dicom-test-pipeline")
    study = payload(tmp_path, {})
    (study / "series").mkdir()
    (study / "a.dcm").write_bytes(DICOM)
    (study / "series" / "b.dcm").write_bytes(DICOM)
    job = clarad.wait_job_stopped(start_job(clarad, "dicom-test-pipeline", study), 180)
    assert job["status"] == "HEALTHY", job["reason"]
    real = Path(job["directory"])
    copied = real / "operators" / "dicom-test" / "dcmout"
    assert (copied / "a.dcm").read_bytes() == DICOM and (copied / "series" / "b.dcm").read_bytes() == DICOM
    registered = json.loads((real / "publish" / "registration.json").read_text())
    assert registered == {"agent": "ClaraSCU", "data": ["MYPACS"], "job": job["id"], "files": ["a.dcm", "series/b.dcm"]}
    assert "Scanned 2 files with 0 non-DICOM part-10 file(s)." in (real / "logs" / "dicom-test.log").read_text()
    assert containers(clarad.state) == []

    bad = payload(tmp_path / "bad", {"notes.txt": "not DICOM"})
    job = clarad.wait_job_stopped(start_job(clarad, "dicom-test-pipeline", bad), 180)
    assert job["status"] == "FAULTED"
    assert job["reason"].startswith('operator "dicom-test" exited with code 1'), job["reason"]
    assert "1 invalid DICOM part-10 file(s) found" in (Path(job["directory"]) / "logs" / "dicom-test.log").read_text()


def test_the_sizing_tools_operator_with_model_pipeline_finds_its_models_ready(clarad: Clarad, tmp_path: Path) -> None:
    for name in ("segmentation_ct_spleen_v1", "segmentation_ct_liver_v1"):
        model = tmp_path / name
        shutil.copytree(DEMO / "models" / "affine", model)
        config = model / "config.pbtxt"
        config.write_text(config.read_text().replace('name: "affine"', f'name: "{name}"'))
        clarad.drop(model, "models")
    wait_for(lambda: {"segmentation_ct_spleen_v1", "segmentation_ct_liver_v1"} <= {
        m["name"] for m in clarad.ask("models.list")}, 60, "the models")
    null = images.image("null-operator", {"/app/register.py": (PROGRAMS / "null_operator.py").read_text()},
                        python=True, workdir="/app")
    install(clarad, with_images("sizing-tool-operator_with_model.yaml", {"null-pipeline/operator-py": null}),
            "null-pipeline")
    job = clarad.wait_job_stopped(start_job(clarad, "null-pipeline", payload(tmp_path, {"in.txt": "x"})), 240)
    assert job["status"] == "HEALTHY", job["reason"]
    out = Path(job["directory"]) / "operators" / "null-reader"
    assert json.loads((out / "models.json").read_text()) == {
        "agent": "renderserver", "ready": ["segmentation_ct_liver_v1", "segmentation_ct_spleen_v1"]}
    assert (out / "in.txt").read_text() == "x"
