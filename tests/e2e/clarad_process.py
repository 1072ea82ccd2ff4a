"""`clarad run` as a subprocess on a temporary state directory, used the way a person would."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import psutil

from clarad import control
from clarad.errors import ControlError
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "docs" / "demo"
STARTED: list["Clarad"] = []  # every daemon the tests started, so none outlives them (see conftest.py)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Clarad:
    def __init__(self, state: Path, *, prefix: Sequence[str] = (), python: str = sys.executable,
                 umask: int = -1, **settings: str) -> None:
        """``prefix`` goes before the command (e.g. setpriv, to run clarad with other privileges);
        ``python`` runs it; ``umask`` is its umask (-1: the test's)."""
        self.state = state
        self.prefix = list(prefix)
        self.python = python
        self.umask = umask
        self.metrics_port = free_port()
        self.api_port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"}  # as installed
        self.env = {**env, "CLARAD_SETTLE_SECONDS": "0.3", "CLARAD_USE_GPUS": "false",
                    "CLARAD_API_PORT": str(self.api_port), **settings}
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.log = state.parent / f"{state.name}-clarad.log"
        self.command = [python, "-m", "clarad"]  # what is started with `run --state-dir ...`

    def start(self) -> "Clarad":
        STARTED.append(self)
        self.state.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.prefix, *self.command, "run", "--state-dir", str(self.state),
                 "--metrics-port", str(self.metrics_port)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, umask=self.umask,
            )
        wait_for(self._answers, 30, "clarad's control socket")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"clarad exited with {self.proc.returncode}:\n{self.log.read_text()}")
        try:
            self.ask("status")
            return True
        except ControlError:
            return False

    def stop(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop_if_running(self) -> None:
        """For teardown after a failed test: stop clarad, then anything of its state still running."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.stop()
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for leftover in self.processes():
            leftover.kill()

    def ask(self, command: str, **args: Any) -> Any:
        return control.request(control.socket_path(self.state), command, args)

    def cli(self, *words: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "clarad", *words, "--state-dir", str(self.state)],
                              capture_output=True, text=True, env=self.env, timeout=60)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
            return response.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of /metrics (0 when absent)."""
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return sample.value
        return 0.0

    # -- dropping things, as a person would: write elsewhere, then rename into the inbox --------

    def drop(self, source: Path, inbox_folder: str) -> Path:
        staged = self._staging() / source.name
        if source.is_dir():
            shutil.copytree(source, staged)
        else:
            shutil.copy2(source, staged)
        return self._move_in(staged, inbox_folder)

    def drop_text(self, text: str, inbox_folder: str, name: str) -> Path:
        staged = self._staging() / name
        staged.write_text(text)
        return self._move_in(staged, inbox_folder)

    def _staging(self) -> Path:
        staging = self.state.parent / "staging"
        staging.mkdir(exist_ok=True)
        return staging

    def _move_in(self, staged: Path, inbox_folder: str) -> Path:
        target = self.state / "inbox" / inbox_folder / staged.name
        wait_for(target.parent.is_dir, 30, f"{target.parent} to exist")
        staged.rename(target)
        return target

    def wait_job_stopped(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        return wait_for(lambda: (job := self.ask("jobs.show", id=job_id))["state"] == "STOPPED" and job,
                        timeout, f"job {job_id} to stop")

    def wait_new_job(self, known: set[str], timeout: float = 30) -> str:
        def new() -> Optional[str]:
            ids = {job["id"] for job in self.ask("jobs.list")} - known
            return ids.pop() if ids else None

        return wait_for(new, timeout, "a new job")

    def processes(self) -> list[psutil.Process]:
        """tritonserver and Python-backend stub processes serving this state directory."""
        mine = []
        for proc in psutil.process_iter(["name", "cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if ("tritonserver" in cmdline or "triton_python_backend_stub" in cmdline) and str(self.state) in cmdline:
                mine.append(proc)
        return mine


def demo_pipeline(python: str = sys.executable) -> str:
    """The demo pipeline with this interpreter and the demo's operator scripts filled in."""
    template = (DEMO / "pipeline.yaml.in").read_text()
    return template.replace("@PYTHON@", python).replace("@OPERATORS@", str(DEMO / "operators"))
