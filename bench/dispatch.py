"""Dispatch throughput: plan, persist and publish a 100,000-target scan with confirms.

Measures, in one run: (1) the raw limit, a plain aio-pika publish of N messages of the
same size as the task messages with publisher confirms awaited in windows of 1,000;
(2) ``coordinator.dispatch.dispatch`` of a scan of N addresses in 127.0.0.0/8 with one
tool and no worker running, from the call to the last confirm, planning, persisting the
tasks in PostgreSQL and admitting each within its target's budget (a lease) included;
peak RSS at N and at N/10 (memory must stay flat).
Prints JSON.

    python bench/dispatch.py [--targets 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import resource
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pika
import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(1, str(Path(__file__).resolve().parent))

from common import create_vhost, delete_vhost, drop_database, fresh_database

from contracts.task import TaskMessage
from coordinator.dispatch import dispatch
from coordinator.publisher import WindowedTaskPublisher
from coordinator.scope import LOOPBACK_SCOPE, Scope
from coordinator.transport import task_message, task_queue
from storage.migrate import upgrade


def addresses(n: int) -> Iterator[str]:
    first = int(ipaddress.ip_address("127.1.0.1"))
    for i in range(n):
        yield str(ipaddress.ip_address(first + i))


def sample_size() -> int:
    task = TaskMessage(
        task_id=uuid.uuid4(), scan_id=uuid.uuid4(), target="127.1.0.1", tool="tcp-ports"
    )
    return len(task_message(task).encode())


async def raw_publish(url: str, n: int, size: int, window: int = 1000) -> float:
    connection = await aio_pika.connect(url)
    channel = await connection.channel(publisher_confirms=True)
    queue = await channel.declare_queue(f"bench.raw.{uuid.uuid4().hex[:8]}", durable=True)
    body = b"x" * size
    started = time.perf_counter()
    for offset in range(0, n, window):
        await asyncio.gather(
            *(
                channel.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=queue.name,
                )
                for _ in range(min(window, n - offset))
            )
        )
    elapsed = time.perf_counter() - started
    await queue.delete(if_unused=False, if_empty=False)
    await connection.close()
    return elapsed


class PeakRss:
    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            time.sleep(0.05)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_dispatch(db_url: str, url: str, n: int) -> dict[str, float]:
    publisher = WindowedTaskPublisher(url)
    with PeakRss() as rss:
        base = rss.peak or psutil.Process().memory_info().rss
        started = time.perf_counter()
        result = dispatch(
            db_url, addresses(n), ["tcp-ports"], Scope.parse(LOOPBACK_SCOPE), publisher.publish
        )
        elapsed = time.perf_counter() - started
    publisher.close()
    assert result.tasks == n == result.admitted, result
    connection = pika.BlockingConnection(pika.URLParameters(url))
    queued = connection.channel().queue_declare(task_queue("default"), passive=True)
    depth = queued.method.message_count
    connection.channel().queue_purge(task_queue("default"))
    connection.close()
    return {
        "tasks": n,
        "seconds": round(elapsed, 3),
        "tasks_per_s": round(n / elapsed, 1),
        "queued": depth,
        "peak_rss_mb": round(rss.peak / 2**20, 1),
        "rss_growth_mb": round((rss.peak - base) / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=100_000)
    args = parser.parse_args()
    from observability.logging import configure_logging

    configure_logging("WARNING")

    vhost, url = create_vhost()
    db_name = "scanfleet_bench_dispatch"
    try:
        size = sample_size()
        raw_s = asyncio.run(raw_publish(url, args.targets, size))
        db_url = fresh_database(db_name)
        upgrade(db_url)
        small = run_dispatch(db_url, url, max(args.targets // 10, 1))
        # The small run's tasks hold their targets' leases (no worker runs them): clear them
        # so the full run admits every task as a fresh scan of free targets would.
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("DELETE FROM tasks")
            conn.execute("VACUUM ANALYZE tasks")
        full = run_dispatch(db_url, url, args.targets)
        raw_rate = args.targets / raw_s
        report = {
            "benchmark": "dispatch",
            "targets": args.targets,
            "message_bytes": size,
            "raw_limit": {
                "messages": args.targets,
                "seconds": round(raw_s, 3),
                "messages_per_s": round(raw_rate, 1),
                "confirm_window": 1000,
            },
            "dispatch": full,
            "dispatch_tenth": small,
            "ratio_to_raw_limit": round(full["tasks_per_s"] / raw_rate, 3),
            "rss_growth_ratio_full_to_tenth": round(
                max(full["rss_growth_mb"], 1) / max(small["rss_growth_mb"], 1), 2
            ),
            "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "cpus": os.cpu_count(),
            "targets_goal": {"ratio_to_raw_limit": 0.5},
        }
        print(json.dumps(report, indent=2))
    finally:
        delete_vhost(vhost)
        drop_database(db_name)


if __name__ == "__main__":
    main()
