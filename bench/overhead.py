"""Per-task overhead of the fleet: median wall time of a task through the fleet minus the
median of running the same built-in check directly, over 200 tasks.

Starts ``scanfleet worker``, ``scanfleet ingest`` and ``scanfleet coordinator`` as
separate processes (a RabbitMQ vhost and a PostgreSQL database of the bench's own), then
200 times: dispatch a one-task scan (``tcp-ports`` on one loopback port) and time it until
the coordinator has recorded the task's end. The direct figure runs the same plugin's
collect() and parse() in this process. Prints JSON.

    python bench/overhead.py [--tasks 200]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(1, str(Path(__file__).resolve().parent))

from common import create_vhost, delete_vhost, drop_database, fresh_database

from coordinator.dispatch import dispatch
from coordinator.publisher import WindowedTaskPublisher
from coordinator.scope import LOOPBACK_SCOPE, Scope
from storage.migrate import upgrade
from workers.tools.base import RunContext, Target
from workers.tools.registry import get_tool


def listener() -> tuple[socket.socket, threading.Event]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    return server, stop


def direct_runs(port: int, n: int) -> list[float]:
    tool = get_tool("tcp-ports")
    ctx = RunContext(Target(ip="127.0.0.1"), time_limit_s=30, options={"ports": str(port)})
    times = []
    for _ in range(n):
        started = time.perf_counter()
        tool.parse(tool.collect(ctx), ctx)
        times.append(time.perf_counter() - started)
    return times


def fleet_runs(db_url: str, broker_url: str, port: int, n: int) -> list[float]:
    publisher = WindowedTaskPublisher(broker_url)
    scope = Scope.parse(LOOPBACK_SCOPE)
    times = []
    with psycopg.connect(db_url, autocommit=True) as conn:
        for _ in range(n):
            started = time.perf_counter()
            result = dispatch(
                db_url,
                ["127.0.0.1"],
                ["tcp-ports"],
                scope,
                publisher.publish,
                options={"tcp-ports": {"ports": str(port)}},
            )
            deadline = started + 60
            while True:
                row = conn.execute(
                    "SELECT status FROM scans WHERE id = %s", (result.scan_id,)
                ).fetchone()
                if row and row[0] in ("completed", "partial", "failed", "cancelled"):
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError("a task did not finish within 60 s")
                time.sleep(0.001)
            times.append(time.perf_counter() - started)
    publisher.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    args = parser.parse_args()
    from observability.logging import configure_logging

    configure_logging("WARNING")
    vhost, broker_url = create_vhost()
    db_name = "scanfleet_bench_overhead"
    db_url = fresh_database(db_name)
    upgrade(db_url)
    server, stop = listener()
    port = server.getsockname()[1]
    env = dict(
        os.environ,
        SCANFLEET_DATABASE_URL=db_url,
        SCANFLEET_BROKER_URL=broker_url,
        SCANFLEET_INGEST_METRICS_PORT="0",
        SCANFLEET_INGEST_CONSUMERS="1",
        SCANFLEET_INGEST_BATCH_MAX_WAIT_S="0.005",
        SCANFLEET_ARTIFACT_URL=Path(f"/tmp/{vhost}-artifacts").as_uri(),
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "coordinator.cli", *cmd],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for cmd in (["ingest"], ["coordinator"], ["worker", "--threads", "2"])
    ]
    try:
        time.sleep(3)
        direct = direct_runs(port, args.tasks)
        fleet_runs(db_url, broker_url, port, 10)  # warm-up: connections, caches
        fleet = fleet_runs(db_url, broker_url, port, args.tasks)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        stop.set()
        server.close()
        delete_vhost(vhost)
        drop_database(db_name)
    direct_ms = statistics.median(direct) * 1000
    fleet_ms = statistics.median(fleet) * 1000
    print(
        json.dumps(
            {
                "benchmark": "overhead",
                "tasks": args.tasks,
                "tool": "tcp-ports (one port)",
                "direct_median_ms": round(direct_ms, 2),
                "fleet_median_ms": round(fleet_ms, 2),
                "fleet_p90_ms": round(statistics.quantiles(fleet, n=10)[-1] * 1000, 2),
                "overhead_ms": round(fleet_ms - direct_ms, 2),
                "target_overhead_ms": 20,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
