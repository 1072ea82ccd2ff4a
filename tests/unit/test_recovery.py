"""Start-up reconciliation after a crash between "move into place" and "commit" (real files, real SQLite)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from clarad import recovery, repository
from clarad.layout import Layout
from clarad.store import Store

AFFINE = Path(__file__).resolve().parents[2] / "docs" / "demo" / "models" / "affine"
STAMP = "20261125T000000Z"


@pytest.fixture
def state(tmp_path: Path) -> tuple[Layout, Store, repository.ModelRepository]:
    layout = Layout(tmp_path / "state")
    layout.create()
    store = Store(layout.database)
    return layout, store, repository.ModelRepository(layout, store, revisions_kept=3)


def accept(layout: Layout, store: Store, source: Path) -> repository.ModelInfo:
    info = repository.inspect_model(source)
    current = store.model_digests().get(info.name)
    repository.install(source, layout.models, layout.revisions, info, current)
    store.accept_model(info.name, info.digest, info.backend, info.versions, info.size, "test", 0.0)
    return info


def variant(where: Path, slope: int) -> Path:
    model = where / "affine"
    shutil.copytree(AFFINE, model)
    code = model / "1" / "model.py"
    code.write_text(code.read_text().replace("2 * x", f"{slope} * x"))
    return model


def test_install_interrupted_after_the_new_revision_moved_in_is_completed(state, tmp_path: Path) -> None:
    layout, store, models = state
    old = accept(layout, store, variant(tmp_path / "a", 2))
    new = repository.inspect_model(variant(tmp_path / "b", 3))
    models.begin("affine", new.digest, old.digest)
    repository.install(tmp_path / "b" / "affine", layout.models, layout.revisions, new, old.digest)
    # crash: no commit
    recovery.reconcile(layout, store, models, STAMP, gpus=0)
    assert store.model_digests() == {"affine": new.digest}
    assert [r["digest"] for r in store.revisions("affine")] == [old.digest]
    assert not models.journal("affine").exists()


def test_install_interrupted_between_its_two_renames_is_undone(state, tmp_path: Path) -> None:
    layout, store, models = state
    old = accept(layout, store, variant(tmp_path / "a", 2))
    models.begin("affine", "f" * 64, old.digest)
    kept = layout.revisions / "affine" / old.digest
    kept.parent.mkdir(parents=True)
    (layout.models / "affine").rename(kept)  # crash before the new one moved in
    recovery.reconcile(layout, store, models, STAMP, gpus=0)
    assert repository.tree_digest(layout.models / "affine")[0] == old.digest == store.model_digests()["affine"]
    assert not kept.exists()


def test_finished_install_leaves_nothing_to_do(state, tmp_path: Path) -> None:
    layout, store, models = state
    info = accept(layout, store, variant(tmp_path / "a", 2))
    recovery.reconcile(layout, store, models, STAMP, gpus=0)
    assert store.model_digests() == {"affine": info.digest}
    assert store.revisions("affine") == []


def test_payload_of_an_unrecorded_job_goes_to_rejected_with_a_reason(state) -> None:
    layout, store, models = state
    orphan = layout.jobs / "0123456789abcdef0123456789abcdef"
    (orphan / "input").mkdir(parents=True)
    (orphan / "input" / "scan.dcm").write_text("data")
    recovery.reconcile(layout, store, models, STAMP, gpus=0)
    kept = layout.rejected / f"{STAMP}-{orphan.name}"
    assert (kept / "input" / "scan.dcm").read_text() == "data"
    assert Path(f"{kept}.reason").read_text() == "clarad stopped while taking this payload; drop its input again\n"
    assert not orphan.exists()


def test_recorded_jobs_stay(state) -> None:
    layout, store, models = state
    store.create_job("a" * 32, "p", "payload", "normal", ["op"], 0.0)
    (layout.jobs / ("a" * 32) / "input").mkdir(parents=True)
    recovery.reconcile(layout, store, models, STAMP, gpus=0)
    assert (layout.jobs / ("a" * 32) / "input").is_dir()


def test_pipeline_file_the_database_lacks_is_accepted_again(state) -> None:
    layout, store, models = state
    text = "name: p\noperators:\n- name: a\n  command: [true]\n"
    (layout.pipelines / "p.yaml").write_text(text)
    (layout.pipelines / "broken.yaml").write_text("name: broken\noperators: []\n")
    recovery.reconcile(layout, store, models, STAMP, gpus=0)
    assert [(p["name"], p["definition"]) for p in store.pipelines()] == [("p", text)]
    assert layout.job_inbox("p").is_dir()
    assert (layout.pipelines / "broken.yaml").exists()  # left for a person, with a log line
