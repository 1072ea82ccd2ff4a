"""Every Prometheus metric clarad exports, in a registry of its own, served on 127.0.0.1 by default.

Counters and histograms are updated where the event happens (on the daemon's loop). The gauges of
live state are read at scrape time from the last ``Snapshot`` the loop published (one immutable
value, swapped whole), so a scrape on the HTTP thread never touches live state. GPU memory is read
from NVML at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any, Optional

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

from clarad import __version__
from clarad.costs import Cost
from clarad.errors import ClaradError
from clarad.gpus import Gpus
from clarad.targets import Target, TargetsFile

INSTANCE_STATES = ("starting", "loading", "leased", "idle", "stopping")


@dataclass(frozen=True)
class Snapshot:
    """What the loop last saw of its live state; published once per scheduling pass."""

    models: int = 0
    model_bytes: int = 0
    pipelines: int = 0
    jobs: Mapping[str, int] = field(default_factory=dict)  # PENDING, RUNNING
    instances: Mapping[str, int] = field(default_factory=dict)  # by instance state
    costs: Mapping[tuple[str, str], Cost] = field(default_factory=dict)  # (model, device) -> live revision's
    triton: tuple[Target, ...] = ()  # the instances' own metrics endpoints


LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
JOB_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800)


class Metrics:
    def __init__(self, targets: Optional[TargetsFile] = None) -> None:
        self.targets = targets
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.state = StateCollector()
        r.register(self.state)
        self.jobs_finished = Counter(
            "clarad_jobs_finished", "Jobs that stopped, by final status.", ["status"], registry=r
        )
        self.job_duration = Histogram(
            "clarad_job_duration_seconds", "Time from a job's start to its stop.", buckets=JOB_BUCKETS, registry=r
        )
        self.model_loads = Counter("clarad_model_loads", "Models loaded into Triton instances.", ["model"], registry=r)
        self.model_load_seconds = Histogram(
            "clarad_model_load_seconds", "Time to load one model into an instance.", buckets=LOAD_BUCKETS, registry=r
        )
        self.model_unloads = Counter("clarad_model_unloads", "Models unloaded from Triton instances, by why.",
                                     ["reason"], registry=r)
        self.loads_avoided = Counter("clarad_model_loads_avoided", "Wanted models a job found already loaded.",
                                     registry=r)
        self.prewarms = Counter("clarad_instance_prewarms", "Instances warmed ahead of the jobs that want them.",
                                registry=r)
        self.recycles = Counter("clarad_instance_recycles", "Instances replaced by a fresh process, by why.",
                                ["reason"], registry=r)
        self.ready_seconds = Histogram(
            "clarad_job_ready_seconds", "Time from a job's creation to its models ready (its first operator).",
            buckets=JOB_BUCKETS, registry=r,
        )
        self.placements = Counter(
            "clarad_placements",
            "Jobs given an instance, by how many of their models it already held (hit, partial, miss).",
            ["reuse"],
            registry=r,
        )
        self.drops_accepted = Counter("clarad_drops_accepted", "Drops and additions accepted, by kind.", ["kind"], registry=r)
        self.drops_rejected = Counter(
            "clarad_drops_rejected", "Drops and additions refused, by kind and reason category.", ["kind", "reason"], registry=r
        )
        self.ingest_seconds = Histogram(
            "clarad_model_ingest_seconds", "Time to extract, validate and install one model.", buckets=LOAD_BUCKETS, registry=r
        )
        for status in ("HEALTHY", "FAULTED", "CANCELED"):
            self.jobs_finished.labels(status)
        for reuse in ("hit", "partial", "miss", "split"):
            self.placements.labels(reuse)

    def watch_gpus(self, gpus: Gpus) -> None:
        """Export each GPU's memory, read from ``gpus`` when Prometheus scrapes."""
        self.registry.register(GpuMemoryCollector(gpus))

    def publish(self, snapshot: Snapshot) -> None:
        """Called on the loop: what the next scrape reports, and where Prometheus finds Triton's metrics."""
        self.state.snapshot = snapshot
        if self.targets is not None:
            self.targets.publish(snapshot.triton)

    def serve(self, address: str, port: int) -> Optional[Any]:
        """Start the HTTP server of /metrics and its landing page (port 0: none); return the server
        so it can be shut down."""
        if port == 0:
            return None
        try:
            server, _thread = start_http_server(port, addr=address, registry=self.registry)
        except OSError as exc:
            raise ClaradError(f"metrics_port {port} on {address}: {exc.strerror or exc}") from None
        server.set_app(self._routes(server.get_app()))
        return server

    def _routes(self, metrics_app: Any) -> Any:
        """/metrics as prometheus_client serves it, a landing page at /, nothing else."""
        def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            path = environ.get("PATH_INFO") or "/"
            if path == "/metrics":
                return metrics_app(environ, start_response)  # type: ignore[no-any-return]
            if path == "/":
                start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
                return [self.landing().encode()]
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"clarad serves /metrics and a landing page at /\n"]
        return app

    def landing(self) -> str:
        """The page at /: where the metrics are, and where Prometheus finds each Triton instance's."""
        triton = self.state.snapshot.triton
        rows = "".join(f"<li><code>{escape(t.instance)}</code> on {escape(t.slot)}: "
                       f"<code>http://{escape(t.address)}/metrics</code></li>" for t in triton)
        where = (f"listed for Prometheus's <code>file_sd_configs</code> in <code>{escape(str(self.targets.path))}</code>"
                 if self.targets is not None else "not listed in a file")
        return ("<!DOCTYPE html><html><head><title>clarad</title></head><body><h1>clarad</h1>"
                f"<p>clarad {escape(__version__)}: <a href=\"/metrics\">/metrics</a> (Prometheus text format).</p>"
                f"<p>Triton instances' own metrics ({len(triton)}), {where}:</p><ul>{rows}</ul></body></html>\n")


class StateCollector:
    """The gauges of live state, from the loop's last snapshot (a plain attribute read: atomic)."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def describe(self) -> list[GaugeMetricFamily]:
        return list(self.collect())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.snapshot
        yield GaugeMetricFamily("clarad_models", "Models in the repository.", value=now.models)
        yield GaugeMetricFamily("clarad_model_bytes", "Bytes of the models in the repository.", value=now.model_bytes)
        yield GaugeMetricFamily("clarad_pipelines", "Registered pipelines.", value=now.pipelines)
        jobs = GaugeMetricFamily("clarad_jobs", "Jobs not yet stopped, by state.", labels=["state"])
        for state in ("PENDING", "RUNNING"):
            jobs.add_metric([state], now.jobs.get(state, 0))
        yield jobs
        instances = GaugeMetricFamily("clarad_triton_instances", "Triton instances, by state.", labels=["state"])
        for state in INSTANCE_STATES:
            instances.add_metric([state], now.instances.get(state, 0))
        yield instances
        seconds = GaugeMetricFamily("clarad_model_cost_seconds", "Measured load time of each model's live revision.",
                                    labels=["model", "device"])
        memory = GaugeMetricFamily("clarad_model_cost_memory_bytes",
                                   "Measured device memory each model's live revision takes once loaded.",
                                   labels=["model", "device"])
        for (model, device), cost in sorted(now.costs.items()):
            seconds.add_metric([model, device], cost.seconds)
            memory.add_metric([model, device], cost.memory)
        yield seconds
        yield memory


class GpuMemoryCollector:
    """GPU memory in use and in total, read at scrape time (on the HTTP thread: NVML, no loop state)."""

    def __init__(self, gpus: Gpus) -> None:
        self.gpus = gpus

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # read at scrape time only: nothing to call NVML for at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        used = GaugeMetricFamily("clarad_gpu_memory_used_bytes", "GPU memory in use, by GPU.", labels=["gpu", "uuid"])
        total = GaugeMetricFamily("clarad_gpu_memory_total_bytes", "GPU memory, by GPU.", labels=["gpu", "uuid"])
        for reading in self.gpus.memory():
            used.add_metric([str(reading.index), reading.uuid], reading.used)
            total.add_metric([str(reading.index), reading.uuid], reading.total)
        yield used
        yield total
