"""Clara's Models service (and Clara's own) against a running `clarad run`, with Clara's client classes.

One daemon serves the module; each test uploads models of its own names and assumes nothing another
test did. The daemon is limited to small uploads (``UPLOAD_LIMIT``) and also listens on a Unix socket.
"""

from __future__ import annotations

import io
import json
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clarad import __version__
from clarad.repository import tree_digest
from tests.e2e.clara_client import (
    HEADER,
    Stubs,
    affine_model,
    as_dict,
    clara_pb2,
    demo_pipeline_for,
    hostile_zip,
    identifier,
    models_pb2,
    pipelines_pb2,
    put_map,
    zip_of,
)
from tests.e2e.clarad_process import Clarad

UPLOAD_LIMIT = 200_000


@pytest.fixture(scope="module")
def clarad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clarad]:
    root = tmp_path_factory.mktemp("api-models")
    daemon = Clarad(root / "state", CLARAD_API_UPLOAD_MAX_BYTES=str(UPLOAD_LIMIT),
                    CLARAD_API_SOCKET=str(root / "api.sock")).start()
    yield daemon
    if daemon.proc and daemon.proc.poll() is None:
        daemon.stop()


@pytest.fixture
def api(clarad: Clarad) -> Iterator[Stubs]:
    stubs = Stubs(f"127.0.0.1:{clarad.api_port}")
    yield stubs
    stubs.close()


def metadata_request(model_id: str, **items: str) -> Any:
    request = models_pb2.ModelsAddMetadataRequest(header=HEADER, model_id=identifier(model_id))
    put_map(request.metadata, items)
    return request


def test_uploaded_model_is_listed_serves_a_job_downloads_as_the_same_tree_and_is_deleted(
        clarad: Clarad, api: Stubs, tmp_path: Path) -> None:
    source = affine_model(tmp_path, "affine_up")
    reply = api.upload_model("affine_up", zip_of(source))
    assert reply.header.code == 0, reply.header.messages
    model_id = reply.details.model_id.value
    assert (reply.details.name, len(model_id), reply.details.type) == ("affine_up", 32, models_pb2.MODEL_TYPE_UNKNOWN)
    assert [m.model_id.value for m in api.list_models() if m.name == "affine_up"] == [model_id]
    listed = clarad.cli("models", "list")
    assert any(line.split()[:3] == ["affine_up", model_id, "unknown"] for line in listed.stdout.splitlines())

    pipeline = api.create_pipeline(demo_pipeline_for("uses-affine-up", "affine_up", sys.executable))
    assert pipeline.header.code == 0, pipeline.header.messages
    payload = tmp_path / "values.txt"
    payload.write_text("1 2 3\n")
    created = clarad.cli("jobs", "create", pipeline.pipeline_id.value, str(payload), "--json")  # by pipeline id
    assert created.returncode == 0, created.stderr
    job = clarad.wait_job_stopped(json.loads(created.stdout)["id"])
    assert (job["state"], job["status"], job["models"]) == ("STOPPED", "HEALTHY", {"affine_up": tree_digest(source)[0]})

    first, data = api.download_model(model_id)
    assert first.header.code == 0 and first.details.name == "affine_up"
    zipfile.ZipFile(io.BytesIO(data)).extractall(tmp_path / "downloaded")
    assert tree_digest(tmp_path / "downloaded" / "affine_up") == tree_digest(source)

    refused = api.models.DeleteModel(models_pb2.ModelsDeleteModelRequest(header=HEADER, model_id=identifier(model_id)))
    assert refused.header.code < 0 and "needed by pipeline(s) uses-affine-up" in refused.header.messages[0]
    removed = api.pipelines.Remove(pipelines_pb2.PipelinesRemoveRequest(header=HEADER, pipeline_id=pipeline.pipeline_id))
    assert removed.header.code == 0, removed.header.messages
    deleted = api.models.DeleteModel(models_pb2.ModelsDeleteModelRequest(header=HEADER, model_id=identifier(model_id)))
    assert (deleted.header.code, deleted.model_id.value) == (0, model_id)
    assert "affine_up" not in [m.name for m in api.list_models()]
    again = api.models.DeleteModel(models_pb2.ModelsDeleteModelRequest(header=HEADER, model_id=identifier(model_id)))
    assert again.header.code == -2 and model_id in again.header.messages[0]


def test_metadata_is_added_and_removed_by_claras_rules_and_shown_by_models_show(
        clarad: Clarad, api: Stubs, tmp_path: Path) -> None:
    model_id = api.upload_model("affine_meta", zip_of(affine_model(tmp_path, "affine_meta"))).details.model_id.value
    added = api.models.AddMetadata(metadata_request(model_id, Owner="radiology", stage="test"))
    assert (added.header.code, as_dict(added.metadata)) == (0, {"Owner": "radiology", "stage": "test"})
    twice = api.models.AddMetadata(metadata_request(model_id, OWNER="someone else"))
    assert twice.header.code == -1 and "already present" in twice.header.messages[0]
    too_long = api.models.AddMetadata(metadata_request(model_id, **{"k" * 129: "v"}))
    assert too_long.header.code == -1 and "longer than 128 bytes" in too_long.header.messages[0]
    shown = clarad.cli("models", "show", "affine_meta")
    assert "metadata: Owner=radiology, stage=test" in shown.stdout
    removed = api.models.RemoveMetadata(models_pb2.ModelsRemoveMetadataRequest(
        header=HEADER, model_id=identifier(model_id), keys=["owner"]))
    assert (removed.header.code, as_dict(removed.metadata)) == (0, {"stage": "test"})
    listed = [m for m in api.list_models() if m.name == "affine_meta"]
    assert as_dict(listed[0].metadata) == {"stage": "test"}


def test_hostile_zip_is_refused_with_the_reason_a_dropped_one_gets(clarad: Clarad, api: Stubs) -> None:
    reply = api.upload_model("evil", hostile_zip("evil"))
    assert reply.header.code == -1
    assert reply.header.messages[0] == "entry '../escape.txt': '..' in the path"
    assert "evil" not in [m.name for m in api.list_models()]
    assert not list((clarad.state / "staging").iterdir())  # nothing half-written left behind


def test_upload_named_otherwise_than_its_model_or_typed_wrongly_is_refused(
        clarad: Clarad, api: Stubs, tmp_path: Path) -> None:
    data = zip_of(affine_model(tmp_path, "affine_named"))
    misnamed = api.upload_model("other_name", data)
    assert misnamed.header.code == -1
    assert "the upload is named 'other_name', but the model in it is 'affine_named'" in misnamed.header.messages[0]
    mistyped = api.upload_model("affine_named", data, type=models_pb2.MODEL_TYPE_TENSOR_RT)
    assert mistyped.header.code == -1 and "backend python makes it unknown" in mistyped.header.messages[0]
    files_at_root = api.upload_model("affine_named", zip_of(tmp_path / "affine_named", at_root=True))
    assert (files_at_root.header.code, files_at_root.details.name) == (0, "affine_named")


def test_upload_over_the_size_limit_is_refused(clarad: Clarad, api: Stubs) -> None:
    reply = api.upload_model("too_big", b"\0" * (UPLOAD_LIMIT + 1), chunk=65536)
    assert reply.header.code == -1
    assert reply.header.messages[0] == f"model too_big: larger than api_upload_max_bytes ({UPLOAD_LIMIT} bytes)"
    assert not list((clarad.state / "staging").iterdir())


def test_concurrent_uploads_of_one_name_leave_one_whole_revision_live(
        clarad: Clarad, api: Stubs, tmp_path: Path) -> None:
    for n in range(2):
        (tmp_path / str(n)).mkdir()
    sources = [affine_model(tmp_path / str(n), "affine_race", comment=f"variant {n}") for n in range(2)]
    replies: list[Any] = [None, None]

    def upload(n: int) -> None:
        replies[n] = api.upload_model("affine_race", zip_of(sources[n]), chunk=64)

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [reply.header.code for reply in replies] == [0, 0]
    digests = {tree_digest(source)[0] for source in sources}
    live = clarad.ask("models.show", model="affine_race")
    assert tree_digest(clarad.state / "models" / "affine_race")[0] == live["digest"]  # whole, and the recorded one
    assert {live["digest"], *(r["digest"] for r in live["revisions"])} == digests  # the other one is kept


def test_models_remove_takes_several_and_add_takes_a_clara_type(clarad: Clarad, tmp_path: Path) -> None:
    for name in ("affine_rm1", "affine_rm2"):
        added = clarad.cli("models", "add", str(affine_model(tmp_path, name)), "-t", "unknown")
        assert added.returncode == 0, added.stderr
    wrong = clarad.cli("models", "add", str(affine_model(tmp_path, "affine_rm3")), "-t", "PyTorch")
    assert wrong.returncode == 1 and "backend python makes it unknown" in wrong.stderr
    removed = clarad.cli("models", "remove", "affine_rm1", "affine_rm2", "nonesuch")
    assert removed.returncode == 1 and "nonesuch" in removed.stderr
    assert removed.stdout.splitlines() == ["model affine_rm1 removed", "model affine_rm2 removed"]
    names = {m["name"] for m in clarad.ask("models.list")}
    assert not names & {"affine_rm1", "affine_rm2", "affine_rm3"}


def test_catalogs_and_hand_managed_instances_are_refused_with_the_reason(api: Stubs) -> None:
    catalog = api.models.CreateCatalog(models_pb2.ModelsCreateCatalogRequest(header=HEADER))
    assert catalog.header.code == -3 and "no model catalogs" in catalog.header.messages[0]
    listed = list(api.models.ListCatalogs(models_pb2.ModelsListCatalogsRequest(header=HEADER)))
    assert [r.header.code for r in listed] == [-3]
    instance = api.models.CreateInstance(models_pb2.ModelsCreateInstanceRequest(header=HEADER))
    assert instance.header.code == -3 and "ListInstances and ReadInstance show them" in instance.header.messages[0]
    stop = api.clara.Stop(clara_pb2.ClaraStopRequest(header=HEADER))
    assert stop.header.code == -3 and "systemctl stop clarad" in stop.header.messages[0]


def test_version_and_utilization_say_what_is_true(clarad: Clarad, api: Stubs) -> None:
    version = api.clara.Version(clara_pb2.ClaraVersionRequest(header=HEADER))
    numbers = ".".join(str(n) for n in (version.version.major, version.version.minor, version.version.patch))
    assert (version.header.code, numbers) == (0, __version__)
    assert version.version.label.startswith("clarad")
    usage = list(api.clara.Utilization(clara_pb2.ClaraUtilizationRequest(header=HEADER)))
    assert [(r.header.code, len(r.gpu_metrics)) for r in usage] == [(0, 0)]  # CLARAD_USE_GPUS=false: no GPU


def test_the_api_also_answers_on_its_unix_socket(clarad: Clarad) -> None:
    socket = clarad.state.parent / "api.sock"
    assert socket.stat().st_mode & 0o777 == 0o660
    stubs = Stubs(f"unix:{socket}")
    try:
        assert stubs.clara.Version(clara_pb2.ClaraVersionRequest(header=HEADER)).header.code == 0
    finally:
        stubs.close()


def test_instances_show_the_models_clarad_loaded_for_a_job(clarad: Clarad, api: Stubs, tmp_path: Path) -> None:
    api.upload_model("affine_inst", zip_of(affine_model(tmp_path, "affine_inst")))
    assert api.create_pipeline(demo_pipeline_for("uses-affine-inst", "affine_inst", sys.executable)).header.code == 0
    payload = tmp_path / "values.txt"
    payload.write_text("4\n")
    created = clarad.cli("jobs", "create", "uses-affine-inst", str(payload), "--json")  # by pipeline name
    job = clarad.wait_job_stopped(json.loads(created.stdout)["id"])
    assert job["status"] == "HEALTHY", job["reason"]
    listed = list(api.models.ListInstances(models_pb2.ModelsListInstancesRequest(header=HEADER)))
    holding = [i.catalog_id.value for r in listed for i in r.instances if "affine_inst" in [m.name for m in i.models]]
    assert holding == [job["instance"]]  # the idle instance keeps what it loaded
    read = list(api.models.ReadInstance(models_pb2.ModelsReadInstanceRequest(
        header=HEADER, instance_id=identifier(job["instance"]))))
    assert "affine_inst" in [m.name for m in read[0].models]
    missing = list(api.models.ReadInstance(models_pb2.ModelsReadInstanceRequest(
        header=HEADER, instance_id=identifier("nonesuch"))))
    assert [r.header.code for r in missing] == [-2]


def test_utilization_reports_each_gpu_nvml_reads(tmp_path: Path) -> None:
    """With two stand-in GPUs in place of NVML's answer (tests/e2e/standin_gpus.py)."""
    daemon = Clarad(tmp_path / "state", CLARAD_USE_GPUS="true")
    daemon.command = [sys.executable, "-m", "tests.e2e.standin_gpus", "2"]
    daemon.start()
    stubs = Stubs(f"127.0.0.1:{daemon.api_port}")
    try:
        usage = list(stubs.clara.Utilization(clara_pb2.ClaraUtilizationRequest(header=HEADER)))
        gpus = [(g.pcie_id, g.memory_used, g.memory_free, len(g.process_details)) for g in usage[0].gpu_metrics]
        assert (usage[0].header.code, gpus) == (0, [(0, 0, 16 << 30, 0), (1, 0, 16 << 30, 0)])
        assert usage[0].gpu_metrics[0].timestamp.value > 62_135_596_800
    finally:
        stubs.close()
        daemon.stop()
