"""clarad's .proto files speak Clara's wire format, and the committed Python modules are what
clarad/api/protos/regenerate.sh makes of them.

Compared with the descriptors shipped in PyPI's nvidia-clara-client: packages, messages, fields
(name, number, type, label), enums, services and methods (with their streaming). File names and
imports differ on purpose (clarad's are package paths, so Clara's client and clarad never clash).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

REPO = Path(__file__).resolve().parents[2]
PROTOS = REPO / "clarad" / "api" / "protos"
FILES = ["common", "clara", "models", "pipelines", "jobs", "payloads"]
PROTOC = [sys.executable, "-m", "grpc_tools.protoc", "-I", str(REPO)]


def _wire_only(proto: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """What reaches the wire or the method paths: no file names, imports, JSON names or comments."""
    copy = descriptor_pb2.FileDescriptorProto()
    copy.CopyFrom(proto)
    copy.ClearField("name")
    copy.ClearField("dependency")
    copy.ClearField("source_code_info")

    def clean(message: descriptor_pb2.DescriptorProto) -> None:
        for field in message.field:
            field.ClearField("json_name")
        for nested in message.nested_type:
            clean(nested)

    for message in copy.message_type:
        clean(message)
    return copy


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    out = tmp_path_factory.mktemp("descriptors") / "set.pb"
    subprocess.run([*PROTOC, f"--descriptor_set_out={out}", *(str(PROTOS / f"{f}.proto") for f in FILES)],
                   check=True, capture_output=True)
    found = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return {Path(proto.name).stem: proto for proto in found.file}


@pytest.mark.parametrize("name", FILES)
def test_each_service_file_matches_claras_own_descriptor(ours: dict[str, descriptor_pb2.FileDescriptorProto],
                                                          name: str) -> None:
    clara = descriptor_pb2.FileDescriptorProto.FromString(
        importlib.import_module(f"nvidia_clara.grpc.{name}_pb2").DESCRIPTOR.serialized_pb)
    assert _wire_only(ours[name]) == _wire_only(clara)


def test_every_rpc_of_claras_services_is_declared(ours: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
    methods = {(s.name, m.name) for proto in ours.values() for s in proto.service for m in s.method}
    assert len(methods) == 16 + 7 + 8 + 8 + 3  # Models, Pipelines, Jobs, Payloads, Clara


def test_committed_modules_are_what_regenerate_makes(tmp_path: Path) -> None:
    subprocess.run([*PROTOC, f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
                    *(f"clarad/api/protos/{f}.proto" for f in FILES)], check=True, capture_output=True, cwd=REPO)
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py*"))
    assert len(made) == 3 * len(FILES)
    for relative in made:
        assert (REPO / relative).read_text() == (tmp_path / relative).read_text(), f"{relative}: run regenerate.sh"
