"""Model directories: Triton's own validation, and the content digest that names a revision."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from clarad import repository
from clarad.errors import ModelRejected
from clarad.repository import inspect_model, tree_digest

DEMO = Path(__file__).resolve().parents[2] / "docs" / "demo" / "models" / "affine"


@pytest.fixture
def affine(tmp_path: Path) -> Path:
    target = tmp_path / "affine"
    shutil.copytree(DEMO, target)
    return target


def model(root: Path, name: str, config: str, files: dict[str, bytes]) -> Path:
    path = root / name
    path.mkdir()
    (path / "config.pbtxt").write_text(config, encoding="utf-8")
    for rel, content in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(content)
    return path


def refusal(path: Path) -> str:
    with pytest.raises(ModelRejected) as refused:
        inspect_model(path)
    return str(refused.value)


def test_python_backend_model_is_accepted(affine: Path) -> None:
    info = inspect_model(affine)
    digest, size = tree_digest(affine)
    assert (info.name, info.backend, info.versions, info.digest, info.size) == ("affine", "python", [1], digest, size)
    assert size == (affine / "config.pbtxt").stat().st_size + (affine / "1" / "model.py").stat().st_size


def test_versions_are_sorted_numerically_and_other_dirs_ignored(affine: Path) -> None:
    for version in ("10", "2"):
        shutil.copytree(affine / "1", affine / version)
    (affine / "notes").mkdir()
    assert inspect_model(affine).versions == [1, 2, 10]


def test_config_without_a_name_takes_the_directory_name(tmp_path: Path) -> None:
    path = model(tmp_path, "m", 'backend: "python"\n', {"1/model.py": b"pass\n"})
    assert inspect_model(path).name == "m"


def test_platform_instead_of_backend_is_accepted(tmp_path: Path) -> None:
    path = model(tmp_path, "onnx", 'name: "onnx"\nplatform: "onnxruntime_onnx"\n', {"1/model.onnx": b"\0"})
    assert inspect_model(path).backend == "onnxruntime_onnx"


def test_default_model_filename_from_config_is_honoured(tmp_path: Path) -> None:
    config = 'name: "m"\nbackend: "python"\ndefault_model_filename: "entry.py"\n'
    path = model(tmp_path, "m", config, {"1/entry.py": b"pass\n"})
    assert inspect_model(path).versions == [1]


def test_bad_model_name_is_refused(tmp_path: Path) -> None:
    path = model(tmp_path, "bad name", 'backend: "python"\n', {"1/model.py": b""})
    assert "model name 'bad name' must be 1-255 characters" in refusal(path)


def test_model_without_config_is_refused(affine: Path) -> None:
    (affine / "config.pbtxt").unlink()
    assert refusal(affine) == "affine: config.pbtxt is missing"


def test_a_file_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "m").write_text("x")
    assert "a model is a directory" in refusal(tmp_path / "m")


def test_unparsable_config_is_refused(affine: Path) -> None:
    (affine / "config.pbtxt").write_text('name: "affine"\nbackend: python\n', encoding="utf-8")
    assert refusal(affine).startswith("affine/config.pbtxt: ")


def test_config_with_unknown_field_is_refused(affine: Path) -> None:
    (affine / "config.pbtxt").write_text('name: "affine"\nbackend: "python"\nflavour: 3\n', encoding="utf-8")
    assert refusal(affine).startswith("affine/config.pbtxt: ")


def test_config_name_other_than_directory_is_refused(affine: Path) -> None:
    renamed = affine.parent / "linear"
    affine.rename(renamed)
    assert refusal(renamed) == (
        "linear: config.pbtxt names the model 'affine'; the directory must have the same name")


def test_config_without_backend_or_platform_is_refused(tmp_path: Path) -> None:
    path = model(tmp_path, "m", 'name: "m"\nmax_batch_size: 0\n', {"1/model.py": b""})
    assert refusal(path) == "m/config.pbtxt: neither backend nor platform is set"


def test_model_without_numeric_version_directory_is_refused(tmp_path: Path) -> None:
    path = model(tmp_path, "m", 'name: "m"\nbackend: "python"\n', {"v1/model.py": b"", "model.py": b""})
    assert refusal(path) == "m: no numeric version directory (e.g. m/1/)"


def test_python_model_without_model_py_is_refused(affine: Path) -> None:
    (affine / "1" / "model.py").rename(affine / "1" / "main.py")
    assert refusal(affine) == "affine: backend python needs model.py in a version directory; none has it"


def test_onnx_model_without_model_onnx_is_refused(tmp_path: Path) -> None:
    path = model(tmp_path, "seg", 'name: "seg"\nplatform: "onnxruntime_onnx"\n', {"1/model.plan": b"\0"})
    assert refusal(path) == "seg: backend onnxruntime_onnx needs model.onnx in a version directory; none has it"


def test_absolute_symlink_inside_a_model_is_refused(affine: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.write_text("x")
    os.symlink(outside, affine / "1" / "extra.py")
    assert refusal(affine) == f"affine: symlink 1/extra.py -> {outside} points outside the model"


def test_relative_symlink_leading_out_of_the_model_is_refused(affine: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("x")
    os.symlink("../../secret", affine / "1" / "extra.py")
    assert refusal(affine) == "affine: symlink 1/extra.py -> ../../secret points outside the model"


def test_absolute_symlink_even_to_the_model_itself_is_refused(affine: Path) -> None:
    os.symlink(affine / "1", affine / "2")
    assert "symlink 2 -> " in refusal(affine)


def test_relative_symlink_within_the_model_is_accepted_and_digested(affine: Path) -> None:
    os.symlink("1", affine / "2")
    info = inspect_model(affine)
    assert info.versions == [1, 2]
    (affine / "1" / "other.py").write_text("pass\n")
    before = tree_digest(affine)[0]
    (affine / "2").unlink()
    os.symlink("1/other.py", affine / "2")
    assert tree_digest(affine)[0] != before


def test_fifo_inside_a_model_is_refused(affine: Path) -> None:
    os.mkfifo(affine / "1" / "pipe")
    assert refusal(affine) == "affine: 1/pipe is not a regular file (devices, FIFOs and sockets are refused)"


def test_setuid_file_inside_a_model_is_refused(affine: Path) -> None:
    os.chmod(affine / "1" / "model.py", 0o4755)
    assert refusal(affine) == "affine: 1/model.py has a setuid, setgid or sticky bit"


def test_file_hard_linked_outside_the_model_is_refused(affine: Path, tmp_path: Path) -> None:
    os.link(affine / "1" / "model.py", tmp_path / "outside.py")
    assert refusal(affine) == "affine: 1/model.py is hard-linked to a file outside the model"


def test_file_hard_linked_within_the_model_is_accepted(affine: Path) -> None:
    os.link(affine / "1" / "model.py", affine / "1" / "copy.py")
    assert inspect_model(affine).versions == [1]


def test_symlinked_model_directory_is_refused(affine: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.mkdir()
    os.symlink(affine, link / "affine")
    assert "a model is a directory" in refusal(link / "affine")


def test_file_name_that_is_not_utf8_is_digested_or_refused(affine: Path) -> None:
    with open(os.path.join(os.fsencode(affine / "1"), b"weights-\xff.bin"), "wb") as handle:
        handle.write(b"w")
    try:
        info = inspect_model(affine)
    except ModelRejected:
        return
    assert info.size == tree_digest(affine)[1]


def test_same_content_gives_the_same_digest(affine: Path, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "affine"
    shutil.copytree(affine, copy)
    assert tree_digest(copy) == tree_digest(affine)


def test_one_changed_byte_changes_the_digest(affine: Path) -> None:
    before, size = tree_digest(affine)
    script = affine / "1" / "model.py"
    content = bytearray(script.read_bytes())
    content[0] ^= 1
    script.write_bytes(bytes(content))
    assert tree_digest(affine) != (before, size)
    assert tree_digest(affine)[1] == size


def test_renamed_file_changes_the_digest(affine: Path) -> None:
    before = tree_digest(affine)[0]
    (affine / "1" / "model.py").rename(affine / "1" / "other.py")
    assert tree_digest(affine)[0] != before


def test_executable_bit_changes_the_digest(affine: Path) -> None:
    before = tree_digest(affine)[0]
    os.chmod(affine / "1" / "model.py", 0o755)
    assert tree_digest(affine)[0] != before


def test_moving_bytes_between_files_changes_the_digest(tmp_path: Path) -> None:
    one = model(tmp_path, "one", "", {"a": b"xy", "b": b""})
    two = model(tmp_path, "two", "", {"a": b"x", "b": b"y"})
    assert tree_digest(one)[0] != tree_digest(two)[0]
    assert tree_digest(one)[1] == tree_digest(two)[1]


def test_directory_with_a_unicode_digit_name_is_not_a_version(affine: Path) -> None:
    (affine / "²").mkdir()
    assert inspect_model(affine).versions == [1]


def test_stamped_config_carries_the_revision_and_keeps_the_model_config() -> None:
    import json

    from clarad.repository import REVISION_PARAMETER, stamped_config

    text = (Path(__file__).parents[2] / "docs" / "demo" / "models" / "affine" / "config.pbtxt").read_text()
    config = json.loads(stamped_config(text, "ab" * 32))
    assert config["parameters"][REVISION_PARAMETER] == {"stringValue": "ab" * 32}
    assert config["name"] == "affine" and config["backend"] == "python"
    assert [i["name"] for i in config["input"]] == ["X"]


@pytest.mark.parametrize("backend, kind", [
    ("python", "unknown"), ("onnxruntime_onnx", "unknown"), ("tensorrt_plan", "tensorrt"), ("tensorrt", "tensorrt"),
    ("pytorch_libtorch", "pytorch"), ("tensorflow_savedmodel", "tensorflow"), ("tensorflow_graphdef", "tensorflow"),
])
def test_clara_type_follows_the_backend(backend: str, kind: str) -> None:
    assert repository.clara_type(backend) == kind


@pytest.mark.parametrize("text, kind", [
    ("TensorRT", "tensorrt"), ("MODEL_TYPE_PY_TORCH", "pytorch"), ("tensor-flow", "tensorflow"), ("Unknown", "unknown"),
])
def test_clara_type_is_read_as_claras_cli_and_enum_spell_it(text: str, kind: str) -> None:
    assert repository.parse_clara_type(text) == kind


def test_unknown_clara_type_is_refused_with_the_choices() -> None:
    with pytest.raises(ModelRejected, match="one of unknown, tensorflow, tensorrt, pytorch"):
        repository.parse_clara_type("caffe")
