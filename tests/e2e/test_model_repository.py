"""The model repository end to end: archives, settling, start-up rescans, revisions while a job
runs, and the `clarad models` commands, against a real `clarad run` and a real tritonserver.

The module's daemon is shared, so every test works on models and pipelines of its own (only the
start-up test looks at `affine`) and stands alone in any order.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Optional

import pytest
import tritonclient.grpc as grpcclient

from clarad.repository import tree_digest
from tests.e2e.clarad_process import DEMO, Clarad
from tests.waiting import wait_for

GATED = Path(__file__).parent / "operators" / "gated_infer.py"


def affine_variant(where: Path, name: str, slope: int) -> Path:
    """The demo model as ``name``, computing y = slope * x + 1."""
    model = where / name
    shutil.copytree(DEMO / "models" / "affine", model)
    config = model / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "affine"', f'name: "{name}"'))
    code = model / "1" / "model.py"
    code.write_text(code.read_text().replace("2 * x + 1", f"{slope} * x + 1"))
    return model


def tgz(model: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as tar:
        tar.add(model, arcname=model.name)
    return out


def gated_pipeline(name: str, model_name: str) -> str:
    """A pipeline whose one operator infers its payload's numbers with ``model_name`` once `go` exists."""
    return f"""
name: {name}
operators:
- name: infer
  command: ["{sys.executable}", "{GATED}", "{model_name}"]
  models: [{{name: {model_name}}}]
"""


@pytest.fixture(scope="module")
def clarad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clarad]:
    base = tmp_path_factory.mktemp("repository")
    daemon = Clarad(base / "state", CLARAD_SETTLE_SECONDS="1.0", CLARAD_RESCAN_SECONDS="2")
    # A drop made while clarad is not running: it must be found by the start-up scan.
    inbox = daemon.state / "inbox" / "models"
    inbox.mkdir(parents=True)
    tgz(DEMO / "models" / "affine", base / "affine.tgz").rename(inbox / "affine.tgz")
    daemon.start()
    yield daemon
    if daemon.proc and daemon.proc.poll() is None:
        assert daemon.stop() == 0
        assert daemon.processes() == []


def model(clarad: Clarad, name: str) -> dict | None:
    return next((m for m in clarad.ask("models.list") if m["name"] == name), None)


def add_pipeline(clarad: Clarad, text: str, name: str) -> None:
    clarad.drop_text(text, "pipelines", f"{name}.yaml")
    wait_for(lambda: any(p["name"] == name for p in clarad.ask("pipelines.list")), 30, f"pipeline {name}")


def test_archive_dropped_while_clarad_was_down_is_taken_at_start(clarad: Clarad) -> None:
    accepted = wait_for(lambda: model(clarad, "affine"), 30, "affine from the start-up scan")
    assert accepted["digest"] == tree_digest(DEMO / "models" / "affine")[0]
    assert accepted["source"] == "inbox:affine.tgz"
    archive = clarad.state / "inbox" / "models" / "affine.tgz"
    wait_for(lambda: not archive.exists(), 30, "the accepted archive to leave the inbox")  # removed after the commit
    assert (clarad.state / "models" / "affine" / "1" / "model.py").is_file()


# -- a slow copy, paced by what clarad has seen ------------------------------------------------


def rejections(clarad: Clarad, name: str) -> list[str]:
    """The reasons of the drops named ``name`` that clarad put into rejected/."""
    return [p.read_text() for p in (clarad.state / "rejected").glob(f"*-{name}.reason")]


def clarad_has_looked(clarad: Clarad, label: str) -> None:
    """Return once clarad's inbox loop has observed every drop made before this call.

    clarad reports nothing about a drop it is still watching settle (not in `clarad status`, not in
    its log), so the test makes a later drop whose taking it can see: a pipeline renamed in. inotify
    reports events in order, and the loop observes every pending drop on the tick that takes one,
    so once this pipeline is listed the loop has observed the earlier, partial drop.
    """
    clarad.drop_text(f"name: {label}\noperators:\n- name: a\n  command: [true]\n", "pipelines", f"{label}.yaml")
    wait_for(lambda: any(p["name"] == label for p in clarad.ask("pipelines.list")), 30, f"pipeline {label}")


def copy_slowly(clarad: Clarad, reference: Path, settle: float) -> Optional[dict]:
    """Copy ``reference`` into the inbox in three parts, as a slow `cp -r` would (no rename);
    between parts, wait until clarad has looked at the partial drop and check it was not taken.

    Return the model clarad accepted, or None when this machine paused the writer for ``settle``
    seconds or more between two parts: clarad may then rightly take the partial drop, so such an
    attempt proves nothing either way. Load only ever turns a verdict into None.
    """
    name = reference.name
    target = clarad.state / "inbox" / "models" / name
    parts: list[Callable[[], object]] = [
        lambda: (target.mkdir(), shutil.copy2(reference / "config.pbtxt", target / "config.pbtxt")),
        lambda: (target / "1").mkdir(),
        lambda: shutil.copy2(reference / "1" / "model.py", target / "1" / "model.py"),
    ]
    spans: list[tuple[float, float]] = []  # (began, ended) of each part, on clarad's clock (time.time)
    early: list[str] = []  # what showed the drop taken before it was complete
    for n, part in enumerate(parts, 1):
        began = time.time()
        try:
            part()
        except FileNotFoundError:  # clarad took (and moved away) the partial drop
            early.append(f"part {n} found the drop gone")
        spans.append((began, time.time()))
        if n == len(parts) or early:
            break
        clarad_has_looked(clarad, f"seen-{name}-{n}")
        if model(clarad, name) or rejections(clarad, name):
            early.append(f"it was taken after part {n} of {len(parts)}: {rejections(clarad, name)}")
            spans.append((time.time(), time.time()))  # it was quiet at most until this look
            break
    # Every quiet stretch before the copy was complete lies between the start of one part and the
    # end of the next; clarad takes a copied drop only after a quiet stretch of `settle` seconds.
    longest_quiet = max((after[1] - before[0] for before, after in zip(spans, spans[1:])), default=0.0)
    if longest_quiet >= settle:
        return None
    assert not early, f"{name}: {early[0]}, although the writer never paused {settle:g} s"
    accepted = wait_for(lambda: model(clarad, name) or rejections(clarad, name), 30 + settle, f"{name} to be taken")
    assert isinstance(accepted, dict), f"{name} rejected: {accepted}"
    # Its last write began at spans[-1][0]; clarad first saw the result no earlier, then waited.
    assert accepted["added_at"] >= spans[-1][0] + settle, "taken before it was quiet for settle_seconds"
    return accepted


def test_slow_copy_is_not_taken_until_it_settles(tmp_path: Path) -> None:
    # A daemon of its own, taking settle_seconds from a file, so that SIGHUP can lengthen it.
    config = tmp_path / "clarad.toml"
    settle = 1.0
    config.write_text(f"settle_seconds = {settle}\n")
    daemon = Clarad(tmp_path / "state", CLARAD_CONFIG=str(config))
    del daemon.env["CLARAD_SETTLE_SECONDS"]  # the file decides
    daemon.start()
    try:
        for attempt in range(6):
            if attempt:  # the machine paused the writer longer than settle_seconds: lengthen it
                settle *= 2
                config.write_text(f"settle_seconds = {settle}\n")
                daemon.proc.send_signal(signal.SIGHUP)
                wait_for(lambda: daemon.ask("status")["settings"]["settle_seconds"] == settle, 30, "the new settle")
            reference = affine_variant(tmp_path / f"reference-{attempt}", f"slow{attempt}", 5)
            accepted = copy_slowly(daemon, reference, settle)
            if accepted is not None:
                assert accepted["digest"] == tree_digest(reference)[0]
                assert accepted["source"] == f"inbox:slow{attempt}"
                break
        else:
            pytest.skip(f"this machine paused the writer longer than settle_seconds in every attempt (up to {settle:g} s)")
    finally:
        assert daemon.stop() == 0


# -- revisions, and the models commands --------------------------------------------------------


def test_replacing_a_model_lets_the_running_job_finish_on_the_old_revision(clarad: Clarad, tmp_path: Path) -> None:
    clarad.drop(affine_variant(tmp_path / "v1", "replaced", 2), "models")
    old = wait_for(lambda: model(clarad, "replaced"), 30, "replaced")["digest"]
    add_pipeline(clarad, gated_pipeline("gated", "replaced"), "gated")

    first = tmp_path / "first"
    first.mkdir()
    (first / "numbers.txt").write_text("1 2")
    known = {job["id"] for job in clarad.ask("jobs.list")}
    clarad.drop(first, "jobs/gated")
    job_id = clarad.wait_new_job(known)
    job_dir = Path(clarad.ask("jobs.show", id=job_id)["directory"])
    wait_for((job_dir / "operators" / "infer" / "started").exists, 60, "the operator to start")

    tgz(affine_variant(tmp_path / "v2", "replaced", 3), tmp_path / "replaced-v2.tgz")
    clarad.drop(tmp_path / "replaced-v2.tgz", "models")
    new = wait_for(lambda: (d := model(clarad, "replaced")["digest"]) != old and d, 30, "the new revision")
    (job_dir / "input" / "go").write_text("")
    done = clarad.wait_job_stopped(job_id)
    assert done["status"] == "HEALTHY", done["reason"]
    assert (job_dir / "operators" / "infer" / "result.json").read_text() == '{"y": [3.0, 5.0]}'  # 2x + 1
    assert done["models"] == {"replaced": old}

    second = tmp_path / "second"
    second.mkdir()
    (second / "numbers.txt").write_text("1 2")
    (second / "go").write_text("")
    known.add(job_id)
    clarad.drop(second, "jobs/gated")
    after = clarad.wait_job_stopped(clarad.wait_new_job(known))
    assert after["status"] == "HEALTHY", after["reason"]
    assert (Path(after["directory"]) / "operators" / "infer" / "result.json").read_text() == '{"y": [4.0, 7.0]}'
    assert after["models"] == {"replaced": new}
    assert after["instance"] == done["instance"]
    instance = next(i for i in clarad.ask("status")["instances"] if i["id"] == after["instance"])
    assert instance["loads"]["replaced"] == 2  # reloaded once, for the new revision
    shown = clarad.ask("models.show", model="replaced")
    assert [r["digest"] for r in shown["revisions"]] == [old]
    assert shown["pipelines"] == ["gated"]
    assert (clarad.state / "revisions" / "replaced" / old / "1" / "model.py").is_file()


def test_models_commands_add_show_download_rollback_remove(clarad: Clarad, tmp_path: Path) -> None:
    source = affine_variant(tmp_path / "src", "double", 2)
    added = clarad.cli("models", "add", str(source))
    assert added.returncode == 0, added.stderr
    assert "model double: revision" in added.stdout
    assert source.is_dir()  # `models add` copies; the source stays
    again = clarad.cli("models", "add", str(source))
    assert "unchanged" in again.stdout

    record = model(clarad, "double")
    shown = clarad.cli("models", "show", record["id"][:6])
    assert shown.returncode == 0 and f"model double (id {record['id']})" in shown.stdout

    archive = tmp_path / "double.zip"
    assert clarad.cli("models", "download", "double", "-o", str(archive)).returncode == 0
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / "unzipped")
    assert tree_digest(tmp_path / "unzipped" / "double")[0] == record["digest"]

    # A model of two revisions that a pipeline needs: removal is refused, rollback is not.
    for slope in (2, 3):
        assert clarad.cli("models", "add", str(affine_variant(tmp_path / f"kept-{slope}", "kept", slope))).returncode == 0
    add_pipeline(clarad, gated_pipeline("needs-kept", "kept"), "needs-kept")
    refused = clarad.cli("models", "remove", "kept")
    assert refused.returncode == 1
    assert "model kept is needed by pipeline(s) needs-kept; use --force" in refused.stderr

    wait_for(lambda: clarad.ask("models.show", model="kept")["revisions"], 30, "a kept revision of kept")
    live = model(clarad, "kept")["digest"]
    kept = clarad.ask("models.show", model="kept")["revisions"][0]["digest"]
    assert kept == tree_digest(tmp_path / "kept-2" / "kept")[0] and live == tree_digest(tmp_path / "kept-3" / "kept")[0]
    rolled = clarad.cli("models", "rollback", "kept")
    assert rolled.returncode == 0, rolled.stderr
    assert model(clarad, "kept")["digest"] == kept
    assert tree_digest(clarad.state / "models" / "kept")[0] == kept
    assert clarad.ask("models.show", model="kept")["revisions"][0]["digest"] == live

    assert clarad.cli("models", "remove", "double").returncode == 0
    assert model(clarad, "double") is None
    assert not (clarad.state / "models" / "double").exists()
    missing = clarad.cli("models", "show", "double")
    assert missing.returncode == 1 and "no model 'double'" in missing.stderr


def test_forced_removal_unloads_the_model_from_idle_instances(clarad: Clarad, tmp_path: Path) -> None:
    # Load `forced` into an instance with a job of its own, then let that instance go idle.
    clarad.drop(affine_variant(tmp_path, "forced", 2), "models")
    wait_for(lambda: model(clarad, "forced"), 30, "forced")
    add_pipeline(clarad, gated_pipeline("uses-forced", "forced"), "uses-forced")
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "numbers.txt").write_text("1")
    (payload / "go").write_text("")
    known = {job["id"] for job in clarad.ask("jobs.list")}
    clarad.drop(payload, "jobs/uses-forced")
    job = clarad.wait_job_stopped(clarad.wait_new_job(known))
    assert job["status"] == "HEALTHY", job["reason"]
    # The job is recorded as stopped just before its instance is handed back.
    holder = wait_for(lambda: next((i for i in clarad.ask("status")["instances"]
                                    if i["id"] == job["instance"] and i["state"] != "leased"), None),
                      30, "the job's instance to be handed back")
    assert "forced" in holder["models"]
    assert holder["state"] == "idle"

    removed = clarad.cli("models", "remove", "forced", "--force")
    assert removed.returncode == 0, removed.stderr
    index = grpcclient.InferenceServerClient(holder["grpc"])
    wait_for(lambda: not index.is_model_ready("forced"), 30, "Triton to unload forced")
    assert all("forced" not in i["models"] for i in clarad.ask("status")["instances"])
    assert not (clarad.state / "models" / "forced").exists()
    assert not (clarad.state / "revisions" / "forced").exists()


def test_repository_metrics(clarad: Clarad, tmp_path: Path) -> None:
    wait_for(lambda: model(clarad, "affine"), 30, "affine from the start-up scan")  # nothing else in flight
    accepted = clarad.metric("clarad_drops_accepted_total", kind="models")
    ingested = clarad.metric("clarad_model_ingest_seconds_count")

    # Three models, each the way people add them: an archive, a directory, `clarad models add`.
    clarad.drop(tgz(affine_variant(tmp_path, "counted-a", 4), tmp_path / "counted-a.tgz"), "models")
    clarad.drop(affine_variant(tmp_path, "counted-b", 5), "models")
    assert clarad.cli("models", "add", str(affine_variant(tmp_path, "counted-c", 6))).returncode == 0
    for name in ("counted-a", "counted-b", "counted-c"):
        wait_for(lambda: model(clarad, name), 30, name)
    wait_for(lambda: clarad.metric("clarad_model_ingest_seconds_count") >= ingested + 3, 30, "three ingests counted")
    assert clarad.metric("clarad_model_ingest_seconds_count") == ingested + 3
    assert clarad.metric("clarad_drops_accepted_total", kind="models") == accepted + 3

    def gauges_agree() -> bool:  # set from the daemon's snapshot, published after each change
        models = clarad.ask("models.list")
        return (clarad.metric("clarad_models") == len(models)
                and clarad.metric("clarad_model_bytes") == sum(m["size"] for m in models))

    wait_for(gauges_agree, 30, "clarad_models and clarad_model_bytes to match `models list`")
