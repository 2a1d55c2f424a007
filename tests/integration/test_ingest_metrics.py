"""The ingest /metrics endpoint, scraped by a real Prometheus server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.integration.services import (
    IngestProcess,
    Topology,
    encode,
    make_event,
    publish,
    scalar,
    wait_for,
)

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed; .ci/run installs the Debian package")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    return binary


def _query(port: int, expression: str) -> float | None:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            data = json.load(response)
    except OSError:
        return None
    result = data["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_ingest_counters_and_histograms(
    database_url: str, topology: Topology, tmp_path: Path
) -> None:
    binary = _prometheus_binary()
    metrics_port, prometheus_port = _free_port(), _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: scanfleet-ingest\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
    )
    prometheus = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    ingest = IngestProcess(database_url, topology, metrics_port=metrics_port)
    ingest.start(tmp_path / "ingest.log")
    try:
        scan_id = uuid.uuid4()
        bodies = [encode(make_event(i, scan_id)) for i in range(300)]
        publish(topology, bodies)
        publish(topology, bodies[:50])  # 50 duplicates
        publish(topology, [b"not json"])
        wait_for(lambda: scalar(database_url, "SELECT count(*) FROM findings") == 300, 60)

        def scraped(expression: str, expected: float) -> bool:
            return _query(prometheus_port, expression) == expected

        wait_for(
            lambda: scraped("sum(scanfleet_ingest_events_consumed_total)", 351),
            timeout=60,
            interval=0.5,
            what="Prometheus to scrape the consumed events",
        )
        assert scraped("sum(scanfleet_ingest_findings_created_total)", 300)
        assert scraped("sum(scanfleet_ingest_observations_created_total)", 300)
        assert scraped("sum(scanfleet_ingest_duplicate_events_total)", 50)
        assert scraped('sum(scanfleet_ingest_dead_lettered_total{reason_kind="bad_json"})', 1)
        assert scraped("sum(scanfleet_ingest_consumers_up)", 2)
        assert scraped("sum(scanfleet_ingest_batch_size_sum)", 351)
        batches = _query(prometheus_port, "sum(scanfleet_ingest_commit_seconds_count)")
        assert batches is not None and batches >= 1
    finally:
        ingest.stop()
        prometheus.terminate()
        prometheus.wait(timeout=30)


def test_shipped_alert_rules_and_prometheus_config_pass_promtool() -> None:
    """The rules in observability/alerts and the compose Prometheus config are valid."""
    _prometheus_binary()
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool ships with the prometheus package"
    root = Path(__file__).resolve().parents[2] / "observability"
    rules = subprocess.run(
        [promtool, "check", "rules", str(root / "alerts" / "ingest.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 5 rules found" in rules.stdout
    config = subprocess.run(
        [promtool, "check", "config", str(root / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert config.returncode == 0, config.stdout + config.stderr


def test_dashboard_queries_only_metrics_that_ingest_exports() -> None:
    """Every scanfleet_* series the Grafana dashboard and the alerts use exists."""
    import re

    from observability.metrics import ingest_metrics

    root = Path(__file__).resolve().parents[2] / "observability"
    exported = set()
    for metric in ingest_metrics().__dict__.values():
        for family in metric.describe():
            exported.add(family.name)
            exported.update({f"{family.name}_{s}" for s in ("total", "bucket", "sum", "count")})
    used = set(re.findall(r"scanfleet_[a-z_]+", (root / "dashboards" / "ingest.json").read_text()))
    used |= set(re.findall(r"scanfleet_[a-z_]+", (root / "alerts" / "ingest.yml").read_text()))
    used = {name for name in used if name != "scanfleet_ingest"}
    assert used, "the dashboard queries no scanfleet metric"
    assert used <= exported, f"unknown metrics: {sorted(used - exported)}"
