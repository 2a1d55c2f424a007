"""Shared set-up of the benchmarks: throwaway databases, queue names, synthetic events."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from psycopg import sql

ADMIN_URL = os.environ.get("SCANFLEET_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1/postgres")
BROKER_URL = os.environ.get("SCANFLEET_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def fresh_database(name: str) -> str:
    """Drop and create database ``name``; return its URL."""
    drop_database(name)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


_HEADERS = (
    "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 21 Nov 2026 09:30:00 GMT\r\n"
    "Content-Type: text/html; charset=utf-8\r\nContent-Length: 4211\r\nConnection: keep-alive\r\n"
    "Set-Cookie: session=REDACTED; Path=/; HttpOnly\r\nCache-Control: no-cache\r\n"
    "X-Powered-By: PHP/8.2.7\r\n\r\n"
)


def _evidence(rng: random.Random) -> list[dict[str, Any]]:
    body = "".join(rng.choice('abcdefghijklmnopqrstuvwxyz <>/="') for _ in range(260))
    return [
        {
            "type": "http_response",
            "label": "response",
            "content": _HEADERS + body,
            "media_type": "text/plain",
        },
        {"type": "text", "label": "matched", "content": "X-Powered-By disclosed PHP/8.2.7"},
    ]


def finding_template(i: int) -> dict[str, Any]:
    """The i-th distinct finding: a spread of kinds over 2,000 hosts."""
    host = f"127.{(i // 2000) % 250}.{(i // 10) % 200}.{i % 10 + 1}"
    kind = i % 4
    if kind == 0:
        return {
            "kind": "network.service",
            "rule_id": "open-port",
            "title": "Open port",
            "severity": "info",
            "confidence": "high",
            "asset": {"ip": host, "transport": "tcp", "port": 1000 + i % 5000},
            "attributes": {"service": "http", "product": "nginx", "version": "1.22.1"},
        }
    if kind == 1:
        return {
            "kind": "web.exposure",
            "rule_id": "exposed-git",
            "title": "Exposed .git",
            "severity": "high",
            "confidence": "high",
            "asset": {
                "host": f"app{i}.example.test",
                "url": f"https://app{i}.example.test/.git/HEAD",
            },
            "identity": {},
            "attributes": {"status": 200},
            "cwe": ["CWE-538"],
        }
    if kind == 2:
        return {
            "kind": "tls",
            "rule_id": "cert-expiring",
            "title": "Certificate expires soon",
            "severity": "medium",
            "confidence": "high",
            "asset": {"ip": host, "port": 443 + i % 7},
            "attributes": {"not_after": "2026-12-01T00:00:00Z", "key_bits": 2048},
        }
    return {
        "kind": "package.vuln",
        "rule_id": "osv",
        "title": "Vulnerable package",
        "severity": "critical",
        "confidence": "low",
        "asset": {"host": f"img{i % 3000}.test"},
        "identity": {"package": f"pkg{i}", "vulnerability_id": f"CVE-2026-{10000 + i}"},
        "attributes": {"installed": "1.0.0", "fixed": "1.0.1"},
        "cve": [f"CVE-2026-{10000 + i}"],
        "cvss": 9.8,
    }


def events(distinct: int, sightings: int, seed: int = 7) -> Iterator[bytes]:
    """``distinct`` findings, each sighted ``sightings`` times, one scan per sighting."""
    rng = random.Random(seed)
    started = datetime(2026, 11, 1, tzinfo=UTC)
    templates = [finding_template(i) for i in range(distinct)]
    for round_ in range(sightings):
        scan_id = str(uuid.UUID(int=rng.getrandbits(128)))
        observed = (started + timedelta(days=round_)).isoformat()
        for i, template in enumerate(templates):
            finding = dict(template)
            if round_ and i % 10 == 0:  # one in ten changes a volatile attribute
                finding["attributes"] = {**template["attributes"], "round": round_}
            finding["evidence"] = _evidence(rng)
            yield orjson.dumps(
                {
                    "schema": "scanfleet.finding-event/1",
                    "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "scan_id": scan_id,
                    "task_id": str(uuid.UUID(int=rng.getrandbits(128))),
                    "tool": {"name": "bench", "version": "1.0"},
                    "observed_at": observed,
                    "finding": finding,
                }
            )


def create_vhost() -> tuple[str, str]:
    """A RabbitMQ vhost of the benchmark's own (guest may use it); returns (name, URL)."""
    import subprocess

    name = f"scanfleet-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
        check=True,
    )
    return name, BROKER_URL.rsplit("/", 1)[0] + "/" + name


def delete_vhost(name: str) -> None:
    import subprocess

    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], check=False)
