"""The managed Triton model repository: validate a model directory, then install it under models/.

Validation is Triton's own: ``config.pbtxt`` parsed into ``model_config_pb2.ModelConfig``; the name
rules Clara and Triton share; numeric version directories; the file the backend needs. Installing is a
rename (constant time, same file system). A replaced revision is kept under revisions/<name>/<digest>.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from clarad.errors import ModelRejected

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")

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


@dataclass(frozen=True)
class ModelInfo:
    name: str
    backend: str
    versions: list[int]
    digest: str
    size: int


def parse_config(text: str, where: str = "config.pbtxt") -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ModelRejected(f"{where}: {exc}") from None
    return config


def inspect_model(path: Path) -> ModelInfo:
    """Validate a model directory; return what the repository records about it."""
    name = path.name
    if not NAME_RE.match(name):
        raise ModelRejected(f"model name {name!r} must be 1-255 characters of A-Z a-z 0-9 - _")
    if not path.is_dir() or path.is_symlink():
        raise ModelRejected(f"{name}: a model is a directory holding config.pbtxt and version directories")
    config_file = path / "config.pbtxt"
    if not config_file.is_file():
        raise ModelRejected(f"{name}: config.pbtxt is missing")
    try:
        config = parse_config(config_file.read_text(encoding="utf-8"), f"{name}/config.pbtxt")
    except UnicodeDecodeError:
        raise ModelRejected(f"{name}/config.pbtxt: not UTF-8 text") from None
    if config.name and config.name != name:
        raise ModelRejected(f"{name}: config.pbtxt names the model {config.name!r}; the directory must have the same name")
    backend = config.backend or config.platform
    if not backend:
        raise ModelRejected(f"{name}/config.pbtxt: neither backend nor platform is set")
    versions = sorted(int(p.name) for p in path.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        raise ModelRejected(f"{name}: no numeric version directory (e.g. {name}/1/)")
    needed = config.default_model_filename or DEFAULT_MODEL_FILES.get(backend)
    if needed and not any((path / str(v) / needed).exists() for v in versions):
        raise ModelRejected(f"{name}: backend {backend} needs {needed} in a version directory; none has it")
    digest, size = tree_digest(path)
    return ModelInfo(name=name, backend=backend, versions=versions, digest=digest, size=size)


def tree_digest(root: Path) -> tuple[str, int]:
    """sha256 over relative paths, kinds and contents, in sorted order; and the total size in bytes."""
    digest = hashlib.sha256()
    size = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            full = os.path.join(dirpath, filename)
            rel = os.path.relpath(full, root)
            info = os.lstat(full)
            if not stat.S_ISREG(info.st_mode):
                raise ModelRejected(f"{root.name}: {rel} is not a regular file (links and devices are refused)")
            digest.update(f"{rel}\0{info.st_mode & 0o111 != 0}\0{info.st_size}\0".encode())
            with open(full, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            size += info.st_size
    return digest.hexdigest(), size


def install(source: Path, models_dir: Path, revisions_dir: Path, info: ModelInfo, current_digest: str | None) -> None:
    """Move a validated model into the live repository; keep the revision it replaces."""
    live = models_dir / info.name
    if current_digest is not None and live.exists():
        kept = revisions_dir / info.name / current_digest
        kept.parent.mkdir(parents=True, exist_ok=True)
        if kept.exists():
            shutil.rmtree(kept)
        live.rename(kept)
    source.rename(live)
