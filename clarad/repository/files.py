"""The managed Triton model repository: validate a model directory, then install it under models/.

Validation is Triton's own: ``config.pbtxt`` parsed into ``model_config_pb2.ModelConfig``; the name
rules Clara and Triton share; numeric version directories; the file the backend needs. Installing is a
rename (constant time, same file system). A replaced revision is kept under revisions/<name>/<digest>.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

from google.protobuf import json_format, text_format

from clarad.errors import ModelRejected
from clarad.pipelines import NAME_RE

VERSION_RE = re.compile(r"[0-9]+")
# Triton's Python-backend stub writes bytecode next to model.py (it ignores PYTHONDONTWRITEBYTECODE),
# so a model's content is everything but these.
BYTECODE_DIR = "__pycache__"

# The file each backend or platform loads from a version directory (Triton's defaults).
DEFAULT_MODEL_FILES = {
    "python": "model.py",
    "onnxruntime": "model.onnx",
    "onnxruntime_onnx": "model.onnx",
    "tensorrt": "model.plan",
    "tensorrt_plan": "model.plan",
    "pytorch": "model.pt",
    "pytorch_libtorch": "model.pt",
    "tensorflow": "model.savedmodel",
    "tensorflow_savedmodel": "model.savedmodel",
    "tensorflow_graphdef": "model.graphdef",
    "openvino": "model.xml",
}


# Clara's ModelType (UNKNOWN, TENSOR_FLOW, TENSOR_RT, PY_TORCH) follows from the backend or platform:
# every backend Clara had no word for (python, onnxruntime, openvino, ...) is "unknown".
CLARA_TYPES = ("unknown", "tensorflow", "tensorrt", "pytorch")


def clara_type(backend: str) -> str:
    """Clara's name for the type of a model served by ``backend`` (one of ``CLARA_TYPES``)."""
    return next((kind for kind in CLARA_TYPES[1:] if backend.startswith(kind)), "unknown")


def parse_clara_type(text: str) -> str:
    """A type as Clara's CLI and enum spell it (``TensorRT``, ``MODEL_TYPE_PY_TORCH``, ``py_torch``)."""
    word = text.lower().removeprefix("model_type_").replace("_", "").replace("-", "")
    if word not in CLARA_TYPES:
        raise ModelRejected(f"model type {text!r}: one of {', '.join(CLARA_TYPES)}", "invalid")
    return word


@dataclass(frozen=True)
class ModelInfo:
    name: str
    backend: str
    versions: list[int]
    digest: str
    size: int


# Every load hands Triton the model's configuration with this parameter set to the revision's
# digest. Triton reloads a loaded model only when it judges it modified, from directory timestamps
# that a rollback (older files) or Triton's own bytecode writes make wrong; a configuration that
# differs always reloads, so a revision change is a real reload. Reading the parameter back tells
# which revision Triton serves.
REVISION_PARAMETER = "clarad_revision"


def stamped_config(text: str, digest: str, where: str = "config.pbtxt") -> str:
    """``config.pbtxt`` text as the JSON Triton's load takes, stamped with the revision ``digest``."""
    config = parse_config(text, where)
    config.parameters[REVISION_PARAMETER].string_value = digest
    return str(json_format.MessageToJson(config))


def model_config_pb2() -> ModuleType:
    """Triton's model configuration schema, loaded from tritonclient's file without the package
    ``tritonclient.grpc`` around it: that package imports numpy and its gRPC stubs, tens of MB a
    daemon needs only once it runs an instance. Loaded once (validations run in worker threads, and
    may ask at once), under a name of its own; the package, once imported, finds the schema already
    in protobuf's pool and shares its message classes."""
    global _schema
    with _schema_lock:
        if _schema is None:
            package = importlib.util.find_spec("tritonclient")  # finds, does not import
            assert package is not None and package.submodule_search_locations is not None
            spec = importlib.util.spec_from_file_location(
                "clarad_triton_model_config_pb2",
                Path(list(package.submodule_search_locations)[0]) / "grpc" / "model_config_pb2.py")
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _schema = module
        return _schema


_schema: Optional[ModuleType] = None
_schema_lock = threading.Lock()


def parse_config(text: str, where: str = "config.pbtxt") -> Any:
    """``text`` as a ``model_config_pb2.ModelConfig``; refused with the parser's reason."""
    config = model_config_pb2().ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ModelRejected(f"{where}: {exc}", "config") from None
    return config


def inspect_model(path: Path, name: Optional[str] = None) -> ModelInfo:
    """Validate a model directory; return what the repository records about it.

    ``name`` is the model's name when it differs from the directory's (an archive named after it).
    """
    name = name or path.name
    if not NAME_RE.match(name):
        raise ModelRejected(f"model name {name!r} must be 1-255 characters of A-Z a-z 0-9 - _", "name")
    if not path.is_dir() or path.is_symlink():
        raise ModelRejected(f"{name}: a model is a directory holding config.pbtxt and version directories", "layout")
    digest, size = tree_digest(path)  # refuses unsafe trees before any file is read as config
    config_file = path / "config.pbtxt"
    if not config_file.is_file() or config_file.is_symlink():
        raise ModelRejected(f"{name}: config.pbtxt is missing", "layout")
    try:
        config = parse_config(config_file.read_text(encoding="utf-8"), f"{name}/config.pbtxt")
    except UnicodeDecodeError:
        raise ModelRejected(f"{name}/config.pbtxt: not UTF-8 text", "config") from None
    if config.name and config.name != name:
        raise ModelRejected(
            f"{name}: config.pbtxt names the model {config.name!r}; the directory must have the same name", "name"
        )
    backend = config.backend or config.platform
    if not backend:
        raise ModelRejected(f"{name}/config.pbtxt: neither backend nor platform is set", "config")
    versions = sorted(int(p.name) for p in path.iterdir() if p.is_dir() and VERSION_RE.fullmatch(p.name))
    if not versions:
        raise ModelRejected(f"{name}: no numeric version directory (e.g. {name}/1/)", "layout")
    needed = config.default_model_filename or DEFAULT_MODEL_FILES.get(backend)
    if needed and not any((path / str(v) / needed).exists() for v in versions):
        raise ModelRejected(f"{name}: backend {backend} needs {needed} in a version directory; none has it", "backend_file")
    return ModelInfo(name=name, backend=backend, versions=versions, digest=digest, size=size)


def tree_digest(root: Path) -> tuple[str, int]:
    """sha256 over relative paths, kinds and contents, in sorted order; and the total size in bytes.

    Refuses what a model must not hold: devices, FIFOs, sockets, setuid/setgid/sticky bits,
    symlinks leading outside the model, and files hard-linked to something outside it.
    """
    digest = hashlib.sha256()
    size = 0
    links: dict[tuple[int, int], list[Any]] = {}  # inode -> [links seen inside, st_nlink, a path]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != BYTECODE_DIR)
        if os.lstat(dirpath).st_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX):
            rel_dir = os.path.relpath(dirpath, root)
            raise ModelRejected(f"{root.name}: directory {rel_dir} has a setuid, setgid or sticky bit", "unsafe")
        for entry in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            full = os.path.join(dirpath, entry)
            rel = os.path.relpath(full, root)
            info = os.lstat(full)
            if info.st_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX):
                raise ModelRejected(f"{root.name}: {rel} has a setuid, setgid or sticky bit", "unsafe")
            if stat.S_ISLNK(info.st_mode):
                target = os.readlink(full)
                if os.path.isabs(target) or not _within(root, os.path.join(dirpath, target)):
                    raise ModelRejected(f"{root.name}: symlink {rel} -> {target} points outside the model", "unsafe")
                digest.update(b"L\0" + os.fsencode(rel) + b"\0" + os.fsencode(target) + b"\0")
                continue
            if not stat.S_ISREG(info.st_mode):
                raise ModelRejected(f"{root.name}: {rel} is not a regular file (devices, FIFOs and sockets are refused)", "unsafe")
            if info.st_nlink > 1:
                seen = links.setdefault((info.st_dev, info.st_ino), [0, info.st_nlink, rel])
                seen[0] += 1
            digest.update(b"F\0" + os.fsencode(rel) + f"\0{info.st_mode & 0o111 != 0}\0{info.st_size}\0".encode())
            with open(full, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            size += info.st_size
    for inside, total, rel in links.values():
        if inside < total:
            raise ModelRejected(f"{root.name}: {rel} is hard-linked to a file outside the model", "unsafe")
    return digest.hexdigest(), size


def _within(root: Path, path: str) -> bool:
    real_root = os.path.realpath(root)
    return os.path.commonpath([real_root, os.path.realpath(path)]) == real_root


def install(source: Path, layout_models: Path, revisions: Path, info: ModelInfo, current: Optional[str]) -> None:
    """Move a validated model into the live repository (a rename); keep the revision it replaces
    as ``revisions/<name>/<digest>``."""
    live = layout_models / info.name
    if current is not None and live.exists():
        kept = revisions / info.name / current
        kept.parent.mkdir(parents=True, exist_ok=True)
        if kept.exists():
            shutil.rmtree(kept)
        live.rename(kept)
    source.rename(live)


def restore(name: str, digest: str, layout_models: Path, revisions: Path, current: str) -> None:
    """Make a kept revision live again; the live one becomes a kept revision."""
    kept = revisions / name / digest
    if not kept.is_dir():
        raise ModelRejected(f"{name}: revision {digest[:12]} is not kept", "revision")
    live = layout_models / name
    live.rename(revisions / name / current)
    kept.rename(live)


def prune(name: str, revisions: Path, keep: list[str]) -> list[str]:
    """Delete kept revisions of ``name`` not in ``keep``; return the digests deleted."""
    folder = revisions / name
    if not folder.is_dir():
        return []
    deleted = []
    for path in folder.iterdir():
        if path.name not in keep:
            shutil.rmtree(path)
            deleted.append(path.name)
    return deleted
