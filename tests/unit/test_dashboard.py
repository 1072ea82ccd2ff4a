"""The shipped Grafana dashboard asks only for metrics clarad really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from clarad.gpus import Gpu, StaticGpus
from clarad.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "etc" / "grafana" / "clarad.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported() -> set[str]:
    metrics = Metrics()
    metrics.watch_gpus(StaticGpus([Gpu(0, "GPU-a", "test", 1)]))
    return {family.name + suffix for family in metrics.registry.collect() for suffix in SUFFIXES[family.type]}


def test_every_dashboard_query_names_an_exported_metric() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    asked = {name for panel in panels for target in panel["targets"]
             for name in re.findall(r"\bclarad_[a-z_]+", target["expr"])}
    assert len(panels) >= 10
    assert asked and asked <= exported(), f"not exported: {sorted(asked - exported())}"
