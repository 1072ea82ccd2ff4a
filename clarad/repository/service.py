"""The model repository as a service: every change to ``models/`` and ``revisions/`` goes through
``ModelRepository`` (install, rollback, remove), whoever asks: ingest, the control socket, recovery.

Each change is "move into place, then commit": a journal file ``revisions/.pending-<name>.json``
(the new and the previous digest) is written before the renames and deleted after the commit, so
``recover`` at the next start completes or undoes a change a crash interrupted, without hashing
every model. Renames take constant time and run on the loop; deletions (pruned revisions, a removed
model's files) run in a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Optional

from clarad.errors import ClaradError, ModelRejected
from clarad.faults import crash_point
from clarad.layout import Layout
from clarad.pipelines import parse_pipeline
from clarad.repository import files
from clarad.store import Store, new_id

log = logging.getLogger("clarad")


class ModelRepository:
    def __init__(self, layout: Layout, store: Store, revisions_kept: int) -> None:
        self.layout = layout
        self.store = store
        self.revisions_kept = revisions_kept

    # -- changes -----------------------------------------------------------------------------

    async def install(self, model_dir: Path, info: files.ModelInfo, origin: str) -> dict[str, Any]:
        """Make the validated model at ``model_dir`` (same file system) the live revision of its name."""
        current = self.store.model_digests().get(info.name)
        if current == info.digest:
            log.info("model %s: same content as the current revision %s; nothing changed", info.name, info.digest[:12])
            return {"name": info.name, "digest": info.digest, "changed": False}
        self.begin(info.name, info.digest, current)
        try:
            files.install(model_dir, self.layout.models, self.layout.revisions, info, current)
        except OSError as exc:  # e.g. a directory owned by another user: nothing was installed
            self.end(info.name)
            raise ModelRejected(f"{info.name}: cannot be moved into the repository ({exc.strerror or exc})",
                                "unreadable") from None
        crash_point("model-swap")
        model_id = self.store.accept_model(info.name, info.digest, info.backend, info.versions, info.size, origin,
                                           time.time())
        self.end(info.name)  # a crash before this line is completed by recover()
        forgotten = self.store.prune_revisions(info.name, self.revisions_kept)
        crash_point("revision-prune")
        kept = [r["digest"] for r in self.store.revisions(info.name)]
        await asyncio.to_thread(files.prune, info.name, self.layout.revisions, kept)
        log.info("model %s %s: revision %s, backend %s, versions %s, %d bytes (from %s)%s", info.name,
                 "replaced" if current else "accepted", info.digest[:12], info.backend,
                 ",".join(map(str, info.versions)), info.size, origin,
                 f"; {len(forgotten)} old revision(s) deleted" if forgotten else "")
        return {"name": info.name, "id": model_id, "digest": info.digest, "changed": True}

    def rollback(self, key: str, revision: Optional[str]) -> dict[str, Any]:
        """Make a kept revision (the newest, or the one ``revision`` starts) live again."""
        model = self.find(key)
        kept = self.store.revisions(model["name"])
        chosen = [r for r in kept if r["digest"].startswith(revision)] if revision else kept[:1]
        if len(chosen) != 1:
            have = ", ".join(r["digest"][:12] for r in kept) or "none"
            wanted = f" {revision}" if revision else ""
            raise ClaradError(f"model {model['name']}: no single kept revision{wanted} (kept: {have})")
        digest = chosen[0]["digest"]
        self.begin(model["name"], digest, model["digest"])
        try:
            files.restore(model["name"], digest, self.layout.models, self.layout.revisions, model["digest"])
        except ModelRejected as exc:
            self.end(model["name"])
            raise ClaradError(str(exc)) from None
        self.store.rollback_model(model["name"], digest, time.time())
        self.end(model["name"])
        log.info("model %s rolled back to revision %s (was %s)", model["name"], digest[:12], model["digest"][:12])
        return {"name": model["name"], "digest": digest, "previous": model["digest"]}

    async def remove(self, key: str, force: bool) -> dict[str, Any]:
        """Remove a model and its kept revisions; refused while a pipeline needs it, unless ``force``."""
        name = self.find(key)["name"]
        needing = self.needed_by(name)
        if needing and not force:
            raise ClaradError(f"model {name} is needed by pipeline(s) {', '.join(needing)}; use --force to remove it anyway")
        trash = self.layout.staging / f"removed-{new_id()}"
        trash.mkdir()
        for path in (self.layout.models / name, self.layout.revisions / name):
            if path.exists():  # out of the way first: a crash now leaves a record whose files are gone
                path.rename(trash / path.parent.name)
        self.store.remove_model(name)
        await asyncio.to_thread(shutil.rmtree, trash, True)
        log.warning("model %s removed%s", name, f" although pipeline(s) {', '.join(needing)} need it" if needing else "")
        return {"name": name, "removed": True, "pipelines": needing}

    # -- questions ---------------------------------------------------------------------------

    def find(self, key: str) -> dict[str, Any]:
        """A model by name, id or unique id prefix."""
        model = self.store.find_model(key)
        if model is None:
            raise ClaradError(f"no model {key!r} (give its name, its id or a unique prefix of the id)")
        return model

    def needed_by(self, name: str) -> list[str]:
        return [p["name"] for p in self.store.pipelines() if name in parse_pipeline(p["definition"]).model_names]

    def show(self, key: str) -> dict[str, Any]:
        model = self.find(key)
        model["path"] = str(self.layout.models / model["name"])
        model["revisions"] = self.store.revisions(model["name"])
        model["pipelines"] = self.needed_by(model["name"])
        return model

    # -- the journal -------------------------------------------------------------------------

    def journal(self, name: str) -> Path:
        """Named after a digest of the model's name (which may be 255 bytes long itself); the entry
        inside names the model."""
        return self.layout.revisions / f".pending-{hashlib.sha256(name.encode()).hexdigest()[:32]}.json"

    def begin(self, name: str, digest: str, previous: Optional[str]) -> None:
        self.journal(name).write_text(json.dumps({"name": name, "digest": digest, "previous": previous}))

    def end(self, name: str) -> None:
        self.journal(name).unlink(missing_ok=True)

    def recover(self) -> None:
        """At start-up: complete or undo every change a crash interrupted; delete the files of kept
        revisions the database no longer knows (a crash between forgetting them and deleting them)."""
        for pending in sorted(self.layout.revisions.glob(".pending-*.json")):
            entry = json.loads(pending.read_text())
            self._finish(str(entry["name"]), str(entry["digest"]), entry["previous"])
            pending.unlink()
        for folder in sorted(p for p in self.layout.revisions.iterdir() if p.is_dir() and not p.name.startswith(".")):
            self.store.prune_revisions(folder.name, self.revisions_kept)
            kept = [r["digest"] for r in self.store.revisions(folder.name)]
            deleted = files.prune(folder.name, self.layout.revisions, kept)
            if deleted:
                log.warning("model %s: %d revision(s) forgotten before a crash deleted now", folder.name, len(deleted))

    def _finish(self, name: str, digest: str, previous: Optional[str]) -> None:
        live = self.layout.models / name
        recorded = self.store.model_digests().get(name)
        if not live.exists() and previous is not None and (self.layout.revisions / name / previous).is_dir():
            (self.layout.revisions / name / previous).rename(live)  # the new one never arrived: put back the old
            log.warning("model %s: interrupted install undone; revision %s is live again", name, previous[:12])
        elif live.exists() and recorded != digest:
            info = files.inspect_model(live)
            if info.digest != digest:  # not what was being installed: leave the record as it is
                log.error("model %s: live files (revision %s) match neither the record nor the interrupted install",
                          name, info.digest[:12])
                return
            self.store.accept_model(name, info.digest, info.backend, info.versions, info.size, "recovered", time.time())
            log.warning("model %s: interrupted install completed (revision %s)", name, info.digest[:12])
