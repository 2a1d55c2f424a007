"""A fleet of real processes for lifecycle tests: ingest, coordinator and several workers on
a RabbitMQ vhost of the test's own and a PostgreSQL database of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from tests.integration.services import REPO_ROOT, run_cli, scalar

FINAL = {"succeeded", "failed", "timed_out", "cancelled"}


@dataclass
class Fleet:
    database_url: str
    vhost: str
    tmp_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "SCANFLEET_DATABASE_URL": self.database_url,
                "SCANFLEET_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{self.vhost}",
                "SCANFLEET_ARTIFACT_URL": (self.tmp_path / "artifacts").as_uri(),
                "SCANFLEET_INGEST_METRICS_PORT": "0",
                "SCANFLEET_INGEST_CONSUMERS": "1",
                "SCANFLEET_SCOPE": "127.0.0.0/8",
                "SCANFLEET_TOOL_PLUGINS": "tests.fleet_tools:SleepTool",
                "SCANFLEET_LEASE_TTL_S": "3",
                "SCANFLEET_HEARTBEAT_S": "0.5",
                "SCANFLEET_TICK_S": "0.5",
                "SCANFLEET_WORKER_GRACE_S": "1",
                "SCANFLEET_RETRY_BACKOFF_S": "0.5",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "coordinator.cli", *args],
            env=self.env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes[name] = process
        return process

    def start_services(self) -> None:
        self.start("ingest", "ingest")
        self.start("coordinator", "coordinator")

    def start_worker(self, name: str, threads: int) -> subprocess.Popen[bytes]:
        return self.start(name, "worker", "--threads", str(threads))

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = run_cli(self.env, *args, timeout=300)
        if check:
            assert result.returncode == 0, (args, result.stdout[-3000:], result.stderr[-3000:])
        return result

    def scan(self, targets: Iterable[str], *options: str) -> str:
        result = self.cli("scan", *targets, "--no-wait", "--json", *options)
        return str(json.loads(result.stdout)["scan_id"])

    def tasks(self, scan_id: str) -> list[dict[str, Any]]:
        return list(json.loads(self.cli("tasks", "list", "--scan", scan_id, "--json").stdout))

    def scan_status(self, scan_id: str) -> str:
        return str(scalar(self.database_url, "SELECT status FROM scans WHERE id = %s", (scan_id,)))

    def wait_final(self, scan_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.scan_status(scan_id)
            if status in ("completed", "partial", "failed", "cancelled"):
                return json.loads(self.cli("scans", "show", scan_id, "--json").stdout)
            time.sleep(0.3)
        raise AssertionError(
            f"scan {scan_id} still {self.scan_status(scan_id)} after {timeout}s: "
            f"{self.tasks(scan_id)}\n{self.logs()}"
        )

    def task_states(self, scan_id: str) -> list[dict[str, Any]]:
        """The tasks' states straight from the database (quicker than the CLI, for polling)."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT target, status, attempts FROM tasks WHERE scan_id = %s", (scan_id,)
            ).fetchall()
        return [{"target": t, "state": s, "attempts": a} for t, s, a in rows]

    def wait_tasks(self, scan_id: str, predicate: Any, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tasks = self.task_states(scan_id)
            if predicate(tasks):
                return tasks
            time.sleep(0.05)
        raise AssertionError(f"tasks never matched: {self.tasks(scan_id)}\n{self.logs()}")

    def wait_ingested(self, scan_id: str, expected: int, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        count = -1
        while time.monotonic() < deadline:
            count = int(
                scalar(
                    self.database_url,
                    "SELECT count(*) FROM ingested_events WHERE scan_id = %s",
                    (scan_id,),
                )
            )
            if count >= expected:
                return count
            time.sleep(0.3)
        return count

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted(self.tmp_path.glob("*.log"))
        )

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def max_overlap(tasks: list[dict[str, Any]]) -> dict[str, int]:
    """Per target key: the most tasks whose [started_at, finished_at] intervals overlap."""
    events: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for task in tasks:
        if task["started_at"] is None:
            continue
        assert task["finished_at"] is not None, task
        events[task["target_key"]].append((parse_time(task["started_at"]), 1))
        # An end sorts before a start at the same instant: touching is not overlapping.
        events[task["target_key"]].append((parse_time(task["finished_at"]), 0))
    peaks = {}
    for key, points in events.items():
        current = peak = 0
        for _, kind in sorted(points):
            current += 1 if kind else -1
            peak = max(peak, current)
        peaks[key] = peak
    return peaks


def observations(database_url: str, scan_id: str) -> tuple[int, int]:
    """(observations, distinct findings) recorded for the scan."""
    total = scalar(database_url, "SELECT count(*) FROM observations WHERE scan_id = %s", (scan_id,))
    distinct = scalar(
        database_url,
        "SELECT count(DISTINCT finding_id) FROM observations WHERE scan_id = %s",
        (scan_id,),
    )
    return int(total), int(distinct)


def pids_alive(pid_dir: Path) -> list[int]:
    alive = []
    for entry in pid_dir.iterdir():
        pid = int(entry.name)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        # A zombie is dead for our purposes.
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive
