"""The state directory's layout (see the brief's filesystem contract); one place names every path."""

from __future__ import annotations

import logging
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

# The inbox is where clarad's group drops files; everything else is clarad's alone to write.
INBOX_MODE = 0o770


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def rejected(self) -> Path:
        return self.root / "rejected"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def revisions(self) -> Path:
        return self.root / "revisions"

    @property
    def staging(self) -> Path:
        """Private scratch space: archives are extracted here, never in place."""
        return self.root / "staging"

    @property
    def pipelines(self) -> Path:
        return self.root / "pipelines"

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    @property
    def payloads(self) -> Path:
        """Clara's reusable payloads, made through the API: payloads/<id>/ holds its files."""
        return self.root / "payloads"

    @property
    def triton(self) -> Path:
        return self.root / "triton"

    @property
    def triton_targets(self) -> Path:
        """The Triton instances' metrics endpoints, for Prometheus (targets.py)."""
        return self.root / "triton-targets.json"

    @property
    def database(self) -> Path:
        return self.root / "clarad.db"

    def job_dir(self, job_id: str) -> Path:
        return self.jobs / job_id

    def job_inbox(self, pipeline: str) -> Path:
        return self.inbox / "jobs" / pipeline

    def empty_staging(self) -> None:
        """What an interrupted extraction or removal left behind is not anyone's."""
        for leftover in self.staging.iterdir():
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)

    def create(self) -> None:
        self.root.mkdir(mode=0o750, parents=True, exist_ok=True)
        # Group-writable or open to others it must not be, whoever made it and with whatever umask;
        # others' search bit stays (operator_user needs it to reach its job, StateDirectoryMode=0751).
        mode = stat.S_IMODE(self.root.stat().st_mode)
        if mode & 0o026:
            try:
                self.root.chmod(mode & ~0o026)
            except PermissionError:
                logging.getLogger("clarad").warning("%s is mode %o and not clarad's to change: others may read it",
                                                    self.root, mode)
        for path in (self.inbox / "models", self.inbox / "pipelines", self.inbox / "jobs", self.rejected,
                     self.models, self.revisions, self.pipelines, self.jobs, self.payloads, self.triton):
            path.mkdir(parents=True, exist_ok=True)
        self.staging.mkdir(mode=0o700, exist_ok=True)
        self.staging.chmod(0o700)
        for folder in (self.inbox / "models", self.inbox / "pipelines", self.inbox / "jobs"):
            folder.chmod(INBOX_MODE)

    def make_job_inbox(self, pipeline: str) -> None:
        self.job_inbox(pipeline).mkdir(parents=True, exist_ok=True)
        self.job_inbox(pipeline).chmod(INBOX_MODE)
