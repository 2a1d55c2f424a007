"""Helpers for tests against the machine's real RabbitMQ and PostgreSQL."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pika
import psutil
import psycopg

from contracts.registry import EXAMPLE_DIR
from ingest.settings import BrokerSettings, IngestSettings
from ingest.topology import FindingsTopology, declare

ADMIN_URL = os.environ.get(
    "SCANFLEET_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BROKER_URL = os.environ.get("SCANFLEET_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
REPO_ROOT = Path(__file__).resolve().parents[2]


def wait_for(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def example_event() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLE_DIR / "finding-event.json").read_text())
    return data


def make_event(
    i: int,
    scan_id: uuid.UUID,
    *,
    observed_at: datetime | None = None,
    attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The i-th distinct finding (one open port on a loopback address), sighted in scan_id."""
    event = copy.deepcopy(example_event())
    event["event_id"] = str(uuid.uuid4())
    event["scan_id"] = str(scan_id)
    event["task_id"] = str(uuid.uuid4())
    event["observed_at"] = (observed_at or datetime.now(UTC)).isoformat()
    event["finding"]["asset"] = {
        "ip": f"127.1.{i // 250}.{i % 250 + 1}",
        "transport": "tcp",
        "port": 1024 + i % 1000,
    }
    event["finding"]["title"] = f"Open TCP port {1024 + i % 1000}"
    if attributes is not None:
        event["finding"]["attributes"] = attributes
    return event


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


@dataclass
class Topology:
    exchange: str
    queue: str

    @property
    def dlq(self) -> str:
        return f"{self.queue}.dlq"

    def findings(self) -> FindingsTopology:
        return FindingsTopology.from_settings(
            BrokerSettings(findings_exchange=self.exchange), IngestSettings(queue=self.queue)
        )


def broker_channel() -> tuple[pika.BlockingConnection, Any]:
    connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    return connection, connection.channel()


def declare_topology(topology: Topology) -> None:
    connection, channel = broker_channel()
    try:
        declare(channel, topology.findings())
    finally:
        connection.close()


def delete_topology(topology: Topology) -> None:
    connection, channel = broker_channel()
    try:
        for queue in (topology.queue, topology.dlq):
            channel.queue_delete(queue)
        channel.exchange_delete(topology.exchange)
        channel.exchange_delete(f"{topology.queue}.dlx")
    finally:
        connection.close()


def queue_depth(queue: str) -> int:
    connection, channel = broker_channel()
    try:
        return int(channel.queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def publish(topology: Topology, bodies: Iterable[bytes], routing_key: str = "finding.nmap") -> int:
    """Publish persistent messages with publisher confirms; returns how many."""
    connection, channel = broker_channel()
    channel.confirm_delivery()
    count = 0
    try:
        for body in bodies:
            channel.basic_publish(
                topology.exchange,
                routing_key,
                body,
                pika.BasicProperties(delivery_mode=2, content_type="application/json"),
                mandatory=True,
            )
            count += 1
    finally:
        connection.close()
    return count


def publish_backlog(
    topology: Topology, bodies: Iterable[bytes], routing_key: str = "finding.nmap"
) -> int:
    """Publish persistent messages quickly (no per-message confirm) and wait until all
    are in the (not yet consumed) queue."""
    connection, channel = broker_channel()
    count = 0
    try:
        for body in bodies:
            channel.basic_publish(
                topology.exchange, routing_key, body, pika.BasicProperties(delivery_mode=2)
            )
            count += 1
    finally:
        connection.close()
    wait_for(lambda: queue_depth(topology.queue) >= count, 60, what="the backlog queued")
    return count


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``scanfleet ARGS`` as a separate process, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "coordinator.cli", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def get_all(queue: str) -> list[tuple[Any, bytes]]:
    """Drain a queue (acking), returning (properties, body) pairs."""
    connection, channel = broker_channel()
    messages = []
    try:
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                break
            messages.append((properties, body))
    finally:
        connection.close()
    return messages


def scalar(database_url: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


def try_scalar(database_url: str, query: str) -> Any:
    """Like scalar() but None while the database is restarting."""
    try:
        return scalar(database_url, query)
    except psycopg.OperationalError:
        return None


@dataclass
class IngestProcess:
    """``scanfleet ingest`` as a separate process, as an operator runs it."""

    database_url: str
    topology: Topology
    consumers: int = 2
    batch_size: int = 200
    metrics_port: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "SCANFLEET_DATABASE_URL": self.database_url,
                "SCANFLEET_BROKER_URL": BROKER_URL,
                "SCANFLEET_FINDINGS_EXCHANGE": self.topology.exchange,
                "SCANFLEET_INGEST_QUEUE": self.topology.queue,
                "SCANFLEET_INGEST_CONSUMERS": str(self.consumers),
                "SCANFLEET_INGEST_BATCH_SIZE": str(self.batch_size),
                "SCANFLEET_INGEST_BATCH_MAX_WAIT_S": "0.1",
                "SCANFLEET_INGEST_METRICS_PORT": str(self.metrics_port),
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, log_path: Path) -> IngestProcess:
        self.log_path = log_path
        log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "coordinator.cli", "ingest"],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        wait_for(
            lambda: (
                self.log().count('"event":"consuming"') >= self.consumers
                or self.process.poll() is not None
            ),  # type: ignore[union-attr]
            timeout=60,
            what="ingest consumers to start",
        )
        assert self.process.poll() is None, f"ingest exited early:\n{self.log()}"
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def children(self) -> list[psutil.Process]:
        assert self.process is not None
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 60) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> list[int]:
        """SIGKILL the supervisor; returns its consumers' pids (which must die with it)."""
        assert self.process is not None
        pids = [child.pid for child in self.children()]
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        return pids


def observed_at(days_ago: int) -> datetime:
    return datetime.now(UTC) - timedelta(days=days_ago)
