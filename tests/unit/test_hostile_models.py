"""Model ingest against hostile and broken drops (the generated corpus in tests/corpus/models/hostile.py).

Every case goes through the path a drop really takes: an archive through ``archives.extract`` into
an empty staging directory and then ``repository.inspect_model``; a directory through
``inspect_model`` in place; and, end to end, through ``Ingest.take`` from the inbox. Each must be
refused with its expected reason, naming the offending entry where there is one, and a canary checks
that nothing was written outside the staging area (and nothing named ``evil`` anywhere).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from clarad import archives, repository
from clarad.archives import Limits
from clarad.errors import ModelRejected
from clarad.inbox import Drop
from clarad.ingest import Ingest
from clarad.layout import Layout
from clarad.metrics import Metrics
from clarad.repository import ModelRepository
from clarad.store import Store
from tests.corpus.models import hostile
from tests.corpus.models.hostile import Case

DEMO = hostile.DEMO

# -- known defects (each also reported with file, line and proposed fix) ----------------------------

def _params(names: list[str] | None = None) -> list[str]:
    return names if names is not None else hostile.names()


# -- the corpus, built once ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def corpus_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile-corpus")


@pytest.fixture(scope="session")
def corpus(corpus_root: Path) -> dict[str, Case]:
    return {c.name: c for c in hostile.build(corpus_root)}


def paths_under(root: Path, skip: tuple[Path, ...] = ()) -> set[str]:
    """Every path under ``root`` (links not followed), relative, leaving out the ``skip`` subtrees."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        found.update(str((here / n).relative_to(root)) for n in dirnames + filenames if here / n not in skip)
    return found


def evil_files(root: Path, skip: tuple[Path, ...] = ()) -> list[str]:
    return sorted(p for p in paths_under(root, skip) if Path(p).name == "evil")


def refusal_through_ingest_path(case: Case, staging: Path) -> str:
    """Feed the case to what a drop goes through; return the refusal (fail if it is accepted)."""
    with pytest.raises(ModelRejected) as refused:
        if case.path.is_dir() and not case.path.is_symlink():
            repository.inspect_model(case.path)
        else:
            repository.inspect_model(archives.extract(case.path, staging, case.limits))
    return str(refused.value)


def names_entry(message: str, entry: str) -> bool:
    return entry in message or repr(entry) in message


# -- the corpus ---------------------------------------------------------------------------------


def test_corpus_has_enough_cases(corpus: dict[str, Case]) -> None:
    assert len(hostile.names()) >= 25
    assert len(corpus) == len(hostile.names()) >= 25
    assert all(case.expect for case in corpus.values())
    assert len(hostile.names(one_entry=True)) >= 25


def test_corpus_archives_are_small(corpus: dict[str, Case]) -> None:
    sizes = {c.name: c.path.stat().st_size for c in corpus.values() if c.path.is_file()}
    assert len(sizes) >= 25
    assert max(sizes.values()) < 256 << 10, sizes


def test_corpus_covers_each_kind_of_drop(corpus: dict[str, Case]) -> None:
    kinds = {("dir" if c.path.is_dir() else archives.archive_kind(c.path.name)) for c in corpus.values()}
    assert kinds == {"dir", "zip", "tar", None}


@pytest.mark.parametrize("name", _params())
def test_hostile_drop_is_refused_and_writes_nothing_outside_staging(
    name: str, corpus: dict[str, Case], corpus_root: Path, tmp_path: Path
) -> None:
    case = corpus[name]
    staging = tmp_path / "staging"
    staging.mkdir()
    (tmp_path / "outside").mkdir()  # what relative traversal entries aim at
    area = tmp_path
    before = paths_under(area, skip=(staging,))
    case_folder = case.path.parent
    case_before = paths_under(case_folder)
    outside_before = paths_under(corpus_root / hostile.OUTSIDE)

    message = refusal_through_ingest_path(case, staging)

    assert case.expect in message
    assert paths_under(area, skip=(staging,)) == before == {"outside"}
    assert evil_files(area) == [], "extracted where it must not be"
    assert paths_under(case_folder) == case_before
    assert paths_under(corpus_root / hostile.OUTSIDE) == outside_before == {"secret"}


@pytest.mark.parametrize("name", _params(hostile.names(one_entry=True)))
def test_refusal_names_the_offending_entry(name: str, corpus: dict[str, Case], tmp_path: Path) -> None:
    case = corpus[name]
    assert case.entry is not None
    staging = tmp_path / "staging"
    staging.mkdir()
    message = refusal_through_ingest_path(case, staging)
    assert names_entry(message, case.entry), message


def test_limits_of_the_small_cases_are_what_refuses_them(corpus: dict[str, Case], tmp_path: Path) -> None:
    """The limit cases are refused because of their Limits, not something else: defaults accept them."""
    for name in ("too-many-entries", "over-max-bytes"):
        staging = tmp_path / name
        staging.mkdir()
        info = repository.inspect_model(archives.extract(corpus[name].path, staging, Limits()))
        assert (info.name, info.versions) == ("affine", [1])


# -- valid models -------------------------------------------------------------------------------


@pytest.fixture
def affine(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    return hostile.affine_dir(source)


def tar_of(model: Path, out: Path, *, dirs: bool = True) -> Path:
    """The model's directory at the archive's root, made by tarfile.add (modes from the files)."""
    with tarfile.open(out, "w:gz") as tar:
        if dirs:
            tar.add(model, arcname=model.name)
        else:
            for path in sorted(model.rglob("*")):
                if path.is_symlink() or path.is_file():
                    tar.add(path, arcname=f"{model.name}/{path.relative_to(model).as_posix()}", recursive=False)
    return out


def zip_of(model: Path, out: Path, *, at_root: bool) -> Path:
    """A zip made by zipfile.write (modes from the files); symlinks stored as links."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(model.rglob("*")):
            rel = path.relative_to(model).as_posix()
            arcname = rel if at_root else f"{model.name}/{rel}"
            if path.is_symlink():
                hostile.zip_member(zf, arcname, os.readlink(path).encode(), hostile.LINK)
            else:
                zf.write(path, arcname)
    return out


def extract_and_inspect(archive: Path, tmp_path: Path) -> tuple[Path, repository.ModelInfo]:
    staging = tmp_path / "staging"
    staging.mkdir()
    root = archives.extract(archive, staging, Limits())
    assert root.parent == staging
    return root, repository.inspect_model(root)


def test_tgz_with_the_model_directory_at_the_root(affine: Path, tmp_path: Path) -> None:
    archive = tar_of(affine, tmp_path / "upload.tgz")
    root, info = extract_and_inspect(archive, tmp_path)
    assert (root.name, info.name, info.backend, info.versions) == ("affine", "affine", "python", [1])
    assert info.digest == repository.tree_digest(affine)[0]


def test_zip_with_the_files_at_the_root_is_named_after_the_archive(affine: Path, tmp_path: Path) -> None:
    archive = zip_of(affine, tmp_path / "affine.zip", at_root=True)
    assert "config.pbtxt" in zipfile.ZipFile(archive).namelist()
    root, info = extract_and_inspect(archive, tmp_path)
    assert (root.name, info.name, info.versions) == ("affine", "affine", [1])
    assert info.digest == repository.tree_digest(affine)[0]


def test_tar_gz_of_files_only(affine: Path, tmp_path: Path) -> None:
    archive = tar_of(affine, tmp_path / "affine.tar.gz", dirs=False)
    with tarfile.open(archive) as tar:
        assert all(m.isreg() for m in tar.getmembers())
    root, info = extract_and_inspect(archive, tmp_path)
    assert (root.name, info.name, info.versions) == ("affine", "affine", [1])
    assert info.digest == repository.tree_digest(affine)[0]


def test_directory_with_an_internal_relative_symlink(affine: Path) -> None:
    plain = repository.tree_digest(affine)[0]
    os.symlink("model.py", affine / "1" / "link.py")
    info = repository.inspect_model(affine)
    assert (info.name, info.versions) == ("affine", [1])
    assert info.digest == repository.tree_digest(affine)[0] != plain


@pytest.mark.parametrize("form", ["tgz", "zip"])
def test_internal_symlink_survives_an_archive(form: str, affine: Path, tmp_path: Path) -> None:
    os.symlink("model.py", affine / "1" / "link.py")
    archive = (tar_of(affine, tmp_path / "affine.tgz") if form == "tgz"
               else zip_of(affine, tmp_path / "affine.zip", at_root=False))
    root, info = extract_and_inspect(archive, tmp_path)
    assert os.readlink(root / "1" / "link.py") == "model.py"
    assert info.digest == repository.tree_digest(affine)[0]


@pytest.mark.parametrize("form", ["tgz", "zip-at-root", "zip"])
def test_the_exec_bit_survives_an_archive(form: str, affine: Path, tmp_path: Path) -> None:
    plain = repository.tree_digest(affine)[0]
    (affine / "1" / "model.py").chmod(0o750)
    executable = repository.tree_digest(affine)[0]
    assert executable != plain  # tree_digest hashes whether a file is executable
    archive = {
        "tgz": lambda: tar_of(affine, tmp_path / "x.tgz"),
        "zip-at-root": lambda: zip_of(affine, tmp_path / "affine.zip", at_root=True),
        "zip": lambda: zip_of(affine, tmp_path / "x.zip", at_root=False),
    }[form]()
    root, info = extract_and_inspect(archive, tmp_path)
    assert info.digest == executable
    assert stat.S_IMODE((root / "1" / "model.py").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "config.pbtxt").stat().st_mode) == 0o644


def test_zip_written_with_writestr_is_accepted(affine: Path, tmp_path: Path) -> None:
    archive = tmp_path / "affine.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(affine.rglob("*")):
            if path.is_file():
                zf.writestr(path.relative_to(affine).as_posix(), path.read_bytes())
    _, info = extract_and_inspect(archive, tmp_path)
    assert info.digest == repository.tree_digest(affine)[0]


def test_write_zip_round_trip(affine: Path, tmp_path: Path) -> None:
    out = tmp_path / "download.zip"
    assert archives.write_zip(affine, out) == 2
    assert not out.with_name(out.name + ".partial").exists()
    assert sorted(zipfile.ZipFile(out).namelist()) == ["affine/1/model.py", "affine/config.pbtxt"]
    root, info = extract_and_inspect(out, tmp_path)
    assert (root.name, info.name, info.versions) == ("affine", "affine", [1])
    assert info.digest == repository.tree_digest(affine)[0]


@pytest.mark.parametrize("link, target", [("1/link.py", "model.py"), ("2", "1")])
def test_write_zip_round_trip_keeps_internal_symlinks(link: str, target: str, affine: Path, tmp_path: Path) -> None:
    os.symlink(target, affine / link)
    original = repository.inspect_model(affine)
    out = tmp_path / "download.zip"
    archives.write_zip(affine, out)
    _, info = extract_and_inspect(out, tmp_path)
    assert (info.versions, info.digest) == (original.versions, original.digest)


# -- Ingest, end to end, without a daemon -------------------------------------------------------


class Harness:
    def __init__(self, root: Path, limits: Limits | None = None, revisions_kept: int = 2) -> None:
        self.layout = Layout(root)
        self.layout.create()
        self.store = Store(self.layout.database)
        models = ModelRepository(self.layout, self.store, revisions_kept)
        self.ingest = Ingest(self.layout, self.store, Metrics(), models, limits or Limits(), gpus=0,
                             max_models=8)

    @property
    def inbox(self) -> Path:
        return self.layout.inbox / "models"

    def take(self, path: Path) -> None:
        assert path.parent == self.inbox
        assert asyncio.run(self.ingest.take(Drop("models", path))) is None

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path / "state")
    yield h
    h.close()


def affine_archive(model: Path, out: Path) -> Path:
    return tar_of(model, out)


@pytest.mark.parametrize("name", _params())
def test_hostile_drop_goes_to_rejected_with_its_reason(name: str, tmp_path: Path) -> None:
    case = hostile.build_one(name, tmp_path / "build")
    h = Harness(tmp_path / "state", case.limits)
    try:
        drop = h.inbox / case.path.name
        case.path.rename(drop)  # a rename keeps hard links, FIFOs and modes as built
        skip = (h.layout.staging, h.layout.rejected, drop)
        before = {p for p in paths_under(tmp_path, skip=skip) if not Path(p).name.startswith("clarad.db")}

        h.take(drop)

        assert not os.path.lexists(drop)
        rejected = sorted(os.listdir(h.layout.rejected))
        assert len(rejected) == 2 and rejected[0].endswith(f"-{case.path.name}")
        assert rejected[1] == rejected[0] + ".reason"
        reason = (h.layout.rejected / rejected[1]).read_text(encoding="utf-8")
        assert case.expect in reason and reason.endswith("\n") and reason.count("\n") == 1
        assert os.listdir(h.layout.models) == [] and os.listdir(h.layout.revisions) == []
        assert os.listdir(h.layout.staging) == []
        assert h.store.models() == []
        after = {p for p in paths_under(tmp_path, skip=skip) if not Path(p).name.startswith("clarad.db")}
        assert after == before
        assert evil_files(tmp_path, skip=(h.layout.rejected,)) == []
    finally:
        h.close()


def test_symlink_chain_cannot_plant_a_model_in_the_live_repository(harness: Harness) -> None:
    """The chain escape seen from the daemon: staging/<id>/m/up -> ../../.. is the state directory."""
    planted = hostile.affine_members("d/d/d/up/models/planted/", "planted")
    drop = hostile.write_tar(harness.inbox / "m.tgz", hostile.affine_members("", "m") + [
        hostile.symlink("d", "."), hostile.symlink("d/d/d/up", "../../..")] + planted)
    harness.take(drop)
    assert len(os.listdir(harness.layout.rejected)) == 2
    assert harness.store.models() == []
    assert os.listdir(harness.layout.models) == [], "a model was written into the live repository"


def test_good_archive_is_installed_and_removed_from_the_inbox(harness: Harness, affine: Path) -> None:
    drop = affine_archive(affine, harness.inbox / "affine.tgz")
    harness.take(drop)
    live = harness.layout.models / "affine"
    assert not drop.exists()
    assert sorted(paths_under(live)) == ["1", "1/model.py", "config.pbtxt"]
    assert repository.tree_digest(live) == repository.tree_digest(affine)
    [model] = harness.store.models()
    assert (model["name"], model["digest"], model["versions"]) == ("affine", repository.tree_digest(affine)[0], [1])
    assert os.listdir(harness.layout.rejected) == [] and os.listdir(harness.layout.staging) == []


def test_good_directory_drop_is_moved_in(harness: Harness, affine: Path) -> None:
    drop = harness.inbox / "affine"
    shutil.copytree(affine, drop, symlinks=True)
    harness.take(drop)
    assert not drop.exists()
    assert repository.tree_digest(harness.layout.models / "affine") == repository.tree_digest(affine)
    assert [m["name"] for m in harness.store.models()] == ["affine"]


def test_same_content_again_changes_nothing(harness: Harness, affine: Path) -> None:
    harness.take(affine_archive(affine, harness.inbox / "affine.tgz"))
    first = harness.store.models()
    second = affine_archive(affine, harness.inbox / "affine.tgz")
    harness.take(second)
    assert not second.exists()
    assert harness.store.models() == first
    assert harness.store.revisions("affine") == []
    assert os.listdir(harness.layout.revisions) == [] and os.listdir(harness.layout.rejected) == []

    third = affine_archive(affine, harness.inbox / "again.tgz")
    record = asyncio.run(harness.ingest.add_model(third, "inbox:again.tgz", consume=True))
    assert record == {"name": "affine", "digest": first[0]["digest"], "changed": False}
    assert not third.exists()
    assert harness.store.models() == first


def test_changed_model_becomes_a_revision_and_keeps_the_previous(harness: Harness, affine: Path) -> None:
    harness.take(affine_archive(affine, harness.inbox / "affine.tgz"))
    old = repository.tree_digest(affine)[0]
    (affine / "1" / "model.py").write_text((affine / "1" / "model.py").read_text() + "# v2\n")
    new = repository.tree_digest(affine)[0]
    assert new != old
    harness.take(affine_archive(affine, harness.inbox / "affine.tgz"))
    [model] = harness.store.models()
    assert model["digest"] == new
    assert repository.tree_digest(harness.layout.models / "affine")[0] == new
    kept = harness.layout.revisions / "affine" / old
    assert kept.is_dir() and repository.tree_digest(kept)[0] == old
    assert [r["digest"] for r in harness.store.revisions("affine")] == [old]


def test_only_revisions_kept_survive(harness: Harness, affine: Path) -> None:
    assert harness.ingest.models.revisions_kept == 2
    digests = []
    for n in range(4):
        (affine / "1" / "model.py").write_text(f"# revision {n}\n")
        digests.append(repository.tree_digest(affine)[0])
        harness.take(affine_archive(affine, harness.inbox / f"affine-{n}.tgz"))
    assert len(set(digests)) == 4
    assert harness.store.models()[0]["digest"] == digests[3]
    assert [r["digest"] for r in harness.store.revisions("affine")] == [digests[2], digests[1]]
    assert sorted(os.listdir(harness.layout.revisions / "affine")) == sorted(digests[1:3])
    for digest in digests[1:3]:
        assert repository.tree_digest(harness.layout.revisions / "affine" / digest)[0] == digest
    assert os.listdir(harness.inbox) == [] and os.listdir(harness.layout.staging) == []
