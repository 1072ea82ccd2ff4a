"""Careless and hostile drops through the path a drop really takes (``Ingest.take``): long names,
names differing in case, payloads holding links, FIFOs or devices, numbers YAML cannot hold, headers
that would be read into memory whole. Each is refused with a one-line reason, or accepted whole."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from clarad import archives
from clarad.errors import ModelRejected
from clarad.inbox import Drop
from tests.corpus.models import hostile
from tests.unit.test_hostile_models import Harness

PIPELINE = "name: {name}\noperators:\n- name: op\n  command: [/bin/true]\n"


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path / "state")
    yield h
    h.close()


def take(h: Harness, kind: str, path: Path, pipeline: str | None = None) -> object:
    return asyncio.run(h.ingest.take(Drop(kind, path, pipeline)))


def rejected(h: Harness) -> dict[str, str]:
    """rejected/: each kept drop's name and its reason."""
    names = sorted(os.listdir(h.layout.rejected))
    return {n: (h.layout.rejected / f"{n}.reason").read_text() for n in names if not n.endswith(".reason")}


def drop_pipeline(h: Harness, text: str, file_name: str) -> Path:
    path = h.layout.inbox / "pipelines" / file_name
    path.write_text(text)
    take(h, "pipelines", path)
    return path


# -- long names -----------------------------------------------------------------------------------


def test_a_drop_name_too_long_for_its_rejected_copy_is_still_moved_out_of_the_inbox(harness: Harness) -> None:
    """Before: rejected/<stamp>-<name> was over 255 bytes; the drop stayed and failed at every rescan."""
    name = "n" * 250
    drop = harness.inbox / name
    drop.write_text("not a model")
    take(harness, "models", drop)
    assert not drop.exists()
    [(kept, reason)] = rejected(harness).items()
    stamp, _, kept_name = kept.partition("-")
    assert len(f"{kept}.reason".encode()) == 255 and name.startswith(kept_name) and len(stamp) == 16
    assert reason.count("\n") == 1 and "a model is a directory" in reason


def test_a_model_with_a_245_character_name_is_installed(harness: Harness) -> None:
    """Before: its journal, revisions/.pending-<name>.json, was too long a file name."""
    name = "m" * 245
    model = hostile.affine_dir(harness.inbox, name)
    take(harness, "models", model)
    assert rejected(harness) == {}
    assert [m["name"] for m in harness.store.models()] == [name]
    assert (harness.layout.models / name / "config.pbtxt").is_file()


def test_a_pipeline_whose_files_would_be_too_long_a_name_is_refused(harness: Harness) -> None:
    long_op = "o" * 252
    drop_pipeline(harness, f"name: p\noperators:\n- name: {long_op}\n  command: [/bin/true]\n", "p.yaml")
    [reason] = rejected(harness).values()
    assert reason == (f"name '{long_op[:24]}'... is 252 characters: logs/<operator>.log must fit in 255 bytes\n")
    assert harness.store.pipelines() == []


# -- names that differ in case ----------------------------------------------------------------------


def test_a_pipeline_differing_only_in_case_is_refused_not_a_second_folder(harness: Harness) -> None:
    """Names are case-insensitive in the database: before, `casep` replaced `CaseP`'s definition while
    both files and both inbox folders stayed, and a payload in CaseP/ ran casep's command."""
    drop_pipeline(harness, PIPELINE.format(name="CaseP"), "CaseP.yaml")
    drop_pipeline(harness, PIPELINE.format(name="casep").replace("/bin/true", "/bin/false"), "casep.yaml")
    [reason] = rejected(harness).values()
    assert reason == ('pipeline "casep": pipeline "CaseP" exists and names are case-insensitive; '
                      'name it "CaseP" to replace it\n')
    assert os.listdir(harness.layout.pipelines) == ["CaseP.yaml"]
    assert os.listdir(harness.layout.inbox / "jobs") == ["CaseP"]
    assert "/bin/true" in harness.store.pipeline("CaseP")["definition"]


def test_the_same_pipeline_dropped_again_replaces_it(harness: Harness) -> None:
    drop_pipeline(harness, PIPELINE.format(name="CaseP"), "CaseP.yaml")
    drop_pipeline(harness, PIPELINE.format(name="CaseP").replace("/bin/true", "/bin/false"), "CaseP.yaml")
    assert rejected(harness) == {}
    assert "/bin/false" in harness.store.pipeline("CaseP")["definition"]


# -- payloads ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("planted, kind", [("symlink", "a symlink"), ("fifo", "a FIFO"),
                                           ("hardlink", "hard-linked to a file outside the payload")])
def test_a_payload_holding_a_link_or_fifo_at_any_depth_is_refused(harness: Harness, tmp_path: Path,
                                                                   planted: str, kind: str) -> None:
    """Before, only the top of a payload was checked: a nested symlink was followed by the operator."""
    drop_pipeline(harness, PIPELINE.format(name="p"), "p.yaml")
    secret = tmp_path / "secret"
    secret.write_text("not for operators")
    payload = harness.layout.job_inbox("p") / "scan"
    (payload / "series" / "1").mkdir(parents=True)
    (payload / "series" / "1" / "slice.dcm").write_bytes(b"\0" * 10)
    entry = payload / "series" / "1" / "x"
    if planted == "symlink":
        entry.symlink_to(secret)
    elif planted == "fifo":
        os.mkfifo(entry)
    else:
        os.link(secret, entry)
    assert take(harness, "jobs", payload, "p") is None
    [reason] = rejected(harness).values()
    assert reason.startswith(f"scan/series/1/x: {kind}")
    assert harness.store.jobs() == [] and os.listdir(harness.layout.jobs) == []


def test_a_fifo_payload_is_refused(harness: Harness) -> None:
    drop_pipeline(harness, PIPELINE.format(name="p"), "p.yaml")
    fifo = harness.layout.job_inbox("p") / "pipe"
    os.mkfifo(fifo)
    assert take(harness, "jobs", fifo, "p") is None
    assert list(rejected(harness).values()) == ["pipe: the payload is a FIFO; give a regular file or a directory\n"]


def test_a_payload_hard_linked_within_itself_is_accepted(harness: Harness) -> None:
    drop_pipeline(harness, PIPELINE.format(name="p"), "p.yaml")
    payload = harness.layout.job_inbox("p") / "scan"
    payload.mkdir()
    (payload / "a").write_text("x")
    os.link(payload / "a", payload / "b")
    job = take(harness, "jobs", payload, "p")
    assert job is not None and rejected(harness) == {}


# -- values and entries a reader chokes on ----------------------------------------------------------


def test_a_pipeline_with_a_5000_digit_number_is_refused_with_a_reason(harness: Harness) -> None:
    """Before: Python's limit on integer digits raised a ValueError: "internal error"."""
    drop_pipeline(harness, PIPELINE.format(name="p") + f"timeout: {'9' * 5000}\n", "p.yaml")
    [reason] = rejected(harness).values()
    assert reason.startswith("p.yaml: not valid YAML: Exceeds the limit (4300 digits) for integer string conversion")
    assert "internal" not in reason and reason.count("\n") == 1


def test_models_add_of_a_directory_holding_a_fifo_is_refused_naming_it(tmp_path: Path) -> None:
    """Before: the copy failed with shutil.Error, answered as "internal error"."""
    h = Harness(tmp_path / "state")
    try:
        model = hostile.affine_dir(tmp_path, "affine")
        os.mkfifo(model / "1" / "pipe")
        with pytest.raises(ModelRejected, match=r"^affine/1/pipe: a FIFO; a model holds only regular files"):
            asyncio.run(h.ingest.add_model(model, "cli:test", consume=False))
        assert h.store.models() == [] and os.listdir(h.layout.staging) == []
    finally:
        h.close()


def test_a_huge_tar_header_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """Before: tarfile read the 64 MiB header into memory before any limit applied (a 611 KB
    archive raised clarad's resident memory by 600 MB)."""
    case = hostile.build_one("tar-huge-long-name-header", tmp_path / "corpus")
    assert case.path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ModelRejected, match="a tar extension header of 67108864 bytes"):
            archives.extract(case.path, tmp_path / "staging", case.limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak} bytes allocated while refusing it"


@pytest.mark.parametrize("text", ["name: p\nx: &a [*a]\n", "name: p\nx: " + "[" * 900 + "]" * 900 + "\n"])
def test_a_pipeline_that_contains_itself_or_nests_deep_is_refused_with_a_reason(harness: Harness, text: str) -> None:
    """Found by fuzzing: the template and key checks walk a definition recursively, and an alias
    that contains itself or 900 levels of nesting raised RecursionError ("internal error")."""
    drop_pipeline(harness, text, "p.yaml")
    [reason] = rejected(harness).values()
    assert reason == "p.yaml: nested too deeply, or an alias (&name ... *name) that contains itself\n"
