"""Prometheus metrics.

The ingest service runs one consumer per process; each process writes its
samples to ``PROMETHEUS_MULTIPROC_DIR`` and the supervisor serves the sum on
``/metrics``. Metrics are created on first use, never at import time, so the
directory is set before any is made.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)
from prometheus_client import multiprocess as prom_multiprocess

BATCH_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class IngestMetrics:
    events_consumed: Counter
    findings_created: Counter
    findings_updated: Counter
    observations_created: Counter
    duplicates: Counter
    dead_lettered: Counter
    batch_size: Histogram
    commit_seconds: Histogram
    batch_retries: Counter
    reconnects: Counter
    consumers_up: Gauge


@lru_cache(maxsize=1)
def ingest_metrics() -> IngestMetrics:
    return IngestMetrics(
        events_consumed=Counter(
            "scanfleet_ingest_events_consumed_total", "Finding events taken off the queue"
        ),
        findings_created=Counter(
            "scanfleet_ingest_findings_created_total", "Findings seen for the first time"
        ),
        findings_updated=Counter(
            "scanfleet_ingest_findings_updated_total",
            "Known findings whose volatile attributes changed",
        ),
        observations_created=Counter(
            "scanfleet_ingest_observations_created_total", "New (finding, scan) sightings"
        ),
        duplicates=Counter(
            "scanfleet_ingest_duplicate_events_total",
            "Events already ingested (redelivered or published twice)",
        ),
        dead_lettered=Counter(
            "scanfleet_ingest_dead_lettered_total",
            "Events sent to the dead-letter queue",
            ["reason_kind"],
        ),
        batch_size=Histogram(
            "scanfleet_ingest_batch_size", "Events per committed batch", buckets=BATCH_SIZE_BUCKETS
        ),
        commit_seconds=Histogram(
            "scanfleet_ingest_commit_seconds",
            "Time to write and commit one batch",
            buckets=LATENCY_BUCKETS,
        ),
        batch_retries=Counter(
            "scanfleet_ingest_batch_retries_total", "Batches retried after a transient error"
        ),
        reconnects=Counter(
            "scanfleet_ingest_reconnects_total", "Reconnections to a service", ["service"]
        ),
        consumers_up=Gauge(
            "scanfleet_ingest_consumers_up",
            "Consumer processes connected and consuming",
            multiprocess_mode="livesum",
        ),
    )


def multiprocess_registry(directory: Path) -> CollectorRegistry:
    registry = CollectorRegistry()
    prom_multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return registry


def serve_metrics(port: int, addr: str, registry: CollectorRegistry | None = None) -> None:
    """Serve ``/metrics`` from a daemon thread."""
    if registry is None:
        start_http_server(port, addr=addr)
    else:
        start_http_server(port, addr=addr, registry=registry)


def mark_process_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        prom_multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
