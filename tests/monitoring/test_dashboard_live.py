"""Every query of the shipped Grafana dashboard, asked of a real Prometheus that scrapes a running
clarad (with stand-in GPUs, so the GPU panel has a reading) and its Triton instances through the
targets file, returns data.

    bash tests/monitoring/run.sh
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.clarad_process import DEMO, Clarad, demo_pipeline, free_port
from tests.waiting import wait_for

DASHBOARD = Path(__file__).resolve().parents[2] / "etc" / "grafana" / "clarad.json"
SCRAPE_CONFIG = Path(__file__).resolve().parents[2] / "etc" / "prometheus" / "clarad.yml"


def queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel["targets"]]


class Prometheus:
    def __init__(self, work: Path, clarad: Clarad) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.skip("no prometheus binary: run bash tests/monitoring/run.sh (it installs Debian's package)")
        # The shipped scrape jobs, pointed at this test's clarad and its targets file, scraped every second.
        config: dict[str, Any] = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                                  "scrape_configs": []}
        shipped = SCRAPE_CONFIG.read_text()
        for job in ("clarad", "clarad-triton"):
            assert f"job_name: {job}" in shipped
        config["scrape_configs"] = [
            {"job_name": "clarad", "static_configs": [{"targets": [f"127.0.0.1:{clarad.metrics_port}"]}]},
            {"job_name": "clarad-triton",
             "file_sd_configs": [{"files": [str(clarad.state / "triton-targets.json")], "refresh_interval": "1s"}]},
        ]
        (work / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.port = free_port()
        self.log = work / "prometheus.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"], stdout=log, stderr=subprocess.STDOUT)

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]  # type: ignore[no-any-return]

    def scraped(self, job: str) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.log.read_text()[-2000:]}")
        try:
            active = self.api("targets")["activeTargets"]
        except OSError:
            return False
        return any(t["labels"]["job"] == job and t["health"] == "up" for t in active)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    work = tmp_path_factory.mktemp("monitoring")
    clarad = Clarad(work / "state", CLARAD_USE_GPUS="true")
    clarad.command = [sys.executable, "-m", "tests.e2e.standin_gpus", "1"]
    clarad.start()
    prometheus = Prometheus(work, clarad)
    try:
        wait_for(lambda: prometheus.scraped("clarad"), 60, "Prometheus to scrape clarad")
        # What the panels show, made after the first scrape so that every rate has something to see:
        # a model ingested and loaded, a pipeline, a refused drop, a job that infers through Triton.
        clarad.drop(DEMO / "models" / "affine", "models")
        wait_for(lambda: clarad.ask("models.list"), 30, "the model to be accepted")
        clarad.drop_text(demo_pipeline(), "pipelines", "affine-demo.yaml")
        clarad.drop_text("not: [a pipeline", "pipelines", "broken.yaml")
        wait_for(lambda: clarad.ask("pipelines.list"), 30, "the pipeline to be accepted")
        clarad.drop_text("1 2\n", "jobs/affine-demo", "numbers.txt")
        job = wait_for(lambda: next(iter(clarad.ask("jobs.list")), None), 30, "the job")
        assert clarad.wait_job_stopped(job["id"])["status"] == "HEALTHY"
        wait_for(lambda: prometheus.scraped("clarad-triton"), 60, "Prometheus to scrape a Triton instance")
        yield prometheus
    finally:
        prometheus.stop()
        clarad.stop_if_running()


@pytest.mark.parametrize(("title", "expr"), queries(), ids=[f"{t}: {e}" for t, e in queries()])
def test_dashboard_query_returns_data(scraped: Prometheus, title: str, expr: str) -> None:
    def answered() -> list[dict[str, Any]] | None:
        result = scraped.query(expr)
        return result if any(math.isfinite(float(r["value"][1])) for r in result) else None

    result = wait_for(answered, 60, f"panel {title!r} to show data: {expr}")
    assert result


def test_triton_targets_carry_clarads_instance_names(scraped: Prometheus) -> None:
    result = scraped.query('nv_inference_count{model="affine", job="clarad-triton"}')
    assert result and all(r["metric"]["clarad_slot"].startswith("gpu0") for r in result)  # the stand-in GPU 0
    assert sum(float(r["value"][1]) for r in result) >= 1
