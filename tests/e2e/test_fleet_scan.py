"""A real scan through the distributed fleet: worker, ingest and coordinator as separate
processes on the machine's RabbitMQ (a vhost of the test's own) and PostgreSQL, scanning
loopback services that the test starts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.demo import DemoServices, demo_services
from tests.integration.services import REPO_ROOT, run_cli, scalar

pytestmark = pytest.mark.e2e


@pytest.fixture
def services() -> Iterator[DemoServices]:
    with demo_services() as running:
        yield running


def _env(database_url: str, vhost: str, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "SCANFLEET_DATABASE_URL": database_url,
            "SCANFLEET_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
            "SCANFLEET_ARTIFACT_URL": (tmp_path / "artifacts").as_uri(),
            "SCANFLEET_INGEST_METRICS_PORT": "0",
            "SCANFLEET_INGEST_CONSUMERS": "1",
            "SCANFLEET_SCOPE": "127.0.0.0/8,localhost",
        }
    )
    return env


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", *args],
        env=env,
        cwd=REPO_ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _scan(env: dict[str, str], services: DemoServices, tools: str) -> dict:
    result = run_cli(
        env,
        "scan",
        *services.targets,
        "--tools",
        tools,
        "--ports",
        services.ports,
        "--wait",
        "--json",
        "--max-runtime",
        "120",
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout)


def test_scan_through_separate_worker_ingest_and_coordinator_processes(
    database_url: str, vhost: str, services: DemoServices, tmp_path: Path
) -> None:
    tools = "tcp-ports,http-headers,tls-cert" + (",nmap" if shutil.which("nmap") else "")
    if os.environ.get("CI"):
        assert shutil.which("nmap"), ".ci/run installs nmap"
    env = _env(database_url, vhost, tmp_path)
    processes = [
        _start(["ingest"], env, tmp_path / "ingest.log"),
        _start(["coordinator"], env, tmp_path / "coordinator.log"),
        _start(["worker", "--threads", "4"], env, tmp_path / "worker.log"),
    ]
    try:
        first = _scan(env, services, tools)
        second = _scan(env, services, tools)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
    logs = {p.name: p.read_text()[-2000:] for p in tmp_path.glob("*.log")}
    assert first["scan"]["status"] == "completed", (first, logs)
    ports = {int(p) for p in services.ports.split(",")}
    findings = first["findings"]
    open_ports = {f["port"] for f in findings if f["rule_id"] == "open-port"}
    assert open_ports >= ports, findings
    http_rules = {
        f["rule_id"]
        for f in findings
        if f["kind"] == "web.exposure" and "http:" in (f["url"] or "")
    }
    assert {
        "missing-x-content-type-options",
        "missing-csp",
        "missing-frame-protection",
        "cookie-missing-httponly",
        "cookie-missing-samesite",
    } <= http_rules, http_rules
    tls_rules = {f["rule_id"] for f in findings if f["kind"] == "tls"}
    assert {"cert-expired", "cert-self-signed"} <= tls_rules, tls_rules
    # Every task ran and recorded its tool's version.
    assert all(t["state"] == "succeeded" and t["tool_version"] for t in first["tasks"])
    # The second scan found the same things: no finding is duplicated.
    assert second["scan"]["status"] == "completed"
    assert {f["fingerprint"] for f in second["findings"]} == {f["fingerprint"] for f in findings}
    total = scalar(database_url, "SELECT count(*) FROM findings")
    assert total == len(findings)
    assert scalar(database_url, "SELECT count(*) FROM observations") == 2 * len(findings)
    assert scalar(database_url, "SELECT count(*) FROM findings WHERE last_seen > first_seen") == (
        total
    )
