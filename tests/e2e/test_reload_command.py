"""`clarad reload` (what `systemctl reload clarad` runs): it returns after the settings are applied,
names those that need a restart, and fails with the reason when they are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from clarad.errors import ControlError
from tests.e2e.clarad_process import Clarad


def test_reload_returns_after_applying_and_fails_with_the_reason_when_refused(tmp_path: Path) -> None:
    config = tmp_path / "clarad.toml"
    config.write_text("job_timeout_seconds = 600.0\ncpu_instances = 2\n")
    clarad = Clarad(tmp_path / "state", CLARAD_CONFIG=str(config)).start()
    try:
        config.write_text("job_timeout_seconds = 7.0\ncpu_instances = 3\n")
        done = clarad.cli("reload")
        assert (done.returncode, done.stdout.strip()) == (
            0, "settings applied: job_timeout_seconds; cpu_instances take effect only after a restart"), done.stderr
        settings = clarad.ask("status")["settings"]  # no waiting: applied before the command returned
        assert (settings["job_timeout_seconds"], settings["cpu_instances"]) == (7.0, 2)
        assert "reload: cpu_instances take effect only after a restart" in clarad.log.read_text()

        config.write_text("job_timeout_seconds = -5\n")
        refused = clarad.cli("reload")  # the command reads the file too, to find the socket, and stops there
        assert refused.returncode == 1
        assert refused.stderr.startswith("clarad: ") and "job_timeout_seconds" in refused.stderr, refused.stderr
        with pytest.raises(ControlError, match="job_timeout_seconds"):  # what the daemon answers itself
            clarad.ask("reload")
        assert "reload: settings refused, nothing changed: job_timeout_seconds" in clarad.log.read_text()
        assert clarad.ask("status")["settings"]["job_timeout_seconds"] == 7.0
        assert clarad.stop() == 0
    finally:
        clarad.stop_if_running()
