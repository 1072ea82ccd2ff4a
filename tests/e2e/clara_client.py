"""Talking to clarad's gRPC API the way a Clara user does: with the generated classes of PyPI's
nvidia-clara-client (tests/conftest.py selects protobuf's pure-Python implementation they need).

Which of that package's high-level wrappers work against clarad, and why the others do not (their
bugs, not the server's), is listed in README ("Clara's gRPC API"); the raw stubs work for all.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from nvidia_clara.grpc import (
    clara_pb2,
    clara_pb2_grpc,
    common_pb2,
    jobs_pb2,
    jobs_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    payloads_pb2,
    payloads_pb2_grpc,
    pipelines_pb2,
    pipelines_pb2_grpc,
)

from tests.e2e.clarad_process import DEMO

HEADER = common_pb2.RequestHeader(api_version=common_pb2.Version(major=0, minor=8, patch=1), user_agent="tests")
__all__ = ["clara_pb2", "jobs_pb2", "models_pb2", "payloads_pb2", "pipelines_pb2", "Stubs", "HEADER", "put_map",
           "as_dict"]


class Stubs:
    """One channel and the raw stub of each service."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.models = models_pb2_grpc.ModelsStub(self.channel)
        self.pipelines = pipelines_pb2_grpc.PipelinesStub(self.channel)
        self.jobs = jobs_pb2_grpc.JobsStub(self.channel)
        self.payloads = payloads_pb2_grpc.PayloadsStub(self.channel)
        self.clara = clara_pb2_grpc.ClaraStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def upload_model(self, name: str, data: bytes, chunk: int = 256, **details: Any) -> Any:
        def requests() -> Iterator[Any]:
            for start in range(0, max(len(data), 1), chunk):
                yield models_pb2.ModelsUploadModelRequest(
                    header=HEADER, details=models_pb2.ModelDetails(name=name, **details), data=data[start:start + chunk])
        return self.models.UploadModel(requests(), timeout=60)

    def download_model(self, model_id: str) -> tuple[Any, bytes]:
        responses = list(self.models.DownloadModel(
            models_pb2.ModelsDownloadModelRequest(header=HEADER, model_id=common_pb2.Identifier(value=model_id)),
            timeout=60))
        return responses[0], b"".join(r.data for r in responses)

    def list_models(self) -> list[Any]:
        responses = list(self.models.ListModels(models_pb2.ModelsListModelsRequest(header=HEADER), timeout=30))
        assert all(r.header.code == 0 for r in responses), responses
        return [model for r in responses for model in r.models]

    def create_pipeline(self, definition: str) -> Any:
        request = pipelines_pb2.PipelinesCreateRequest(
            header=HEADER, definition=pipelines_pb2.PipelineDefinitionFile(path="pipeline.yaml", content=definition))
        return self.pipelines.Create(iter([request]), timeout=30)

    def upload_payload(self, payload_id: str, name: str, data: bytes) -> Any:
        request = payloads_pb2.PayloadsUploadRequest(
            header=HEADER, payload_id=common_pb2.Identifier(value=payload_id),
            details=payloads_pb2.PayloadFileDetails(name=name, size=len(data)), data=data)
        return self.payloads.Upload(iter([request]), timeout=30)

    def download_payload(self, payload_id: str, name: str) -> tuple[Any, bytes]:
        responses = list(self.payloads.Download(payloads_pb2.PayloadsDownloadRequest(
            header=HEADER, payload_id=common_pb2.Identifier(value=payload_id), name=name), timeout=30))
        return responses[0], b"".join(r.data for r in responses)

    def status(self, job_id: str) -> Any:
        return self.jobs.Status(jobs_pb2.JobsStatusRequest(header=HEADER, job_id=common_pb2.Identifier(value=job_id)),
                                timeout=30)


def put_map(field: Any, items: dict[str, str]) -> None:
    """Fill a map<string, string> field. Clara's protobuf-3-era classes, under the pure-Python
    implementation, show map fields as repeated key/value entries (the same bytes on the wire)."""
    for key, value in items.items():
        field.add(key=key, value=value)


def as_dict(field: Any) -> dict[str, str]:
    return {entry.key: entry.value for entry in field}


def identifier(value: str) -> Any:
    return common_pb2.Identifier(value=value)


def affine_model(parent: Path, name: str, comment: str = "") -> Path:
    """The demo's affine model (y = 2x + 1) under another name, optionally with a different model.py."""
    target = parent / name
    shutil.copytree(DEMO / "models" / "affine", target)
    config = target / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "affine"', f'name: "{name}"'))
    if comment:
        model = target / "1" / "model.py"
        model.write_text(model.read_text() + f"\n# {comment}\n")
    return target


def zip_of(model: Path, at_root: bool = False) -> bytes:
    """A zip of a model directory: the directory at the zip's root, or (``at_root``) its files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(model.rglob("*")):
            if path.is_file():
                relative = path.relative_to(model).as_posix()
                archive.write(path, relative if at_root else f"{model.name}/{relative}")
    return buffer.getvalue()


def hostile_zip(name: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}/config.pbtxt", f'name: "{name}"\nbackend: "python"\n')
        archive.writestr(f"{name}/1/model.py", "print('hello')\n")
        archive.writestr("../escape.txt", "out of the model\n")
    return buffer.getvalue()


def demo_pipeline_for(name: str, model: str, python: str) -> str:
    """The demo pipeline renamed ``name``, using model ``model``."""
    template = (DEMO / "pipeline.yaml.in").read_text()
    text = template.replace("@PYTHON@", python).replace("@OPERATORS@", str(DEMO / "operators"))
    return text.replace("name: affine-demo", f"name: {name}").replace("MODEL_NAME: affine", f"MODEL_NAME: {model}") \
        .replace("  - name: affine", f"  - name: {model}")
