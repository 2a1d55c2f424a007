"""``scanfleet ingest``: a supervisor process and N consumer processes.

The supervisor checks the database schema, starts the consumers, serves the summed
``/metrics`` of all of them, restarts a consumer that dies, and on SIGTERM/SIGINT
stops them gracefully (each commits and acks what it holds). Consumers die with
their supervisor (``PR_SET_PDEATHSIG``), so a killed service leaves no orphans.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

import structlog

from contracts.errors import ConfigError
from ingest.process import consumer_main
from ingest.settings import BrokerSettings, IngestSettings
from storage.database import is_postgres, libpq_conninfo
from storage.migrate import current_revision, head_revision
from storage.settings import StorageSettings

log = structlog.get_logger("scanfleet.ingest")


def check_configuration(
    broker: BrokerSettings, storage: StorageSettings, *, require_schema: bool = True
) -> str:
    if not broker.broker_url:
        raise ConfigError("scanfleet ingest needs SCANFLEET_BROKER_URL (amqp://...)")
    if not storage.database_url or not is_postgres(storage.database_url):
        raise ConfigError("scanfleet ingest needs SCANFLEET_DATABASE_URL (postgresql://...)")
    if require_schema:
        try:
            current = current_revision(storage.database_url)
        except Exception as exc:
            raise ConfigError(f"cannot read the database schema version: {exc}") from exc
        head = head_revision(storage.database_url)
        if current != head:
            raise ConfigError(
                f"database schema is at {current or 'nothing'}, this version needs {head}: "
                "run 'scanfleet db upgrade'"
            )
    return storage.database_url


def check_topology(broker: BrokerSettings, ingest: IngestSettings) -> None:
    """Declare the findings topology once before any consumer starts, so that a queue of
    another type fails the start with its explanation (:class:`ConfigError`). A broker
    that cannot be reached yet is not an error: the consumers keep trying to connect."""
    import pika.exceptions

    from ingest.topology import FindingsTopology, connection_parameters, declare

    assert broker.broker_url is not None
    try:
        connection = pika.BlockingConnection(connection_parameters(broker.broker_url))
    except (pika.exceptions.AMQPError, OSError) as exc:
        log.warning("broker_unreachable_at_start", error=repr(exc))
        return
    try:
        declare(connection.channel(), FindingsTopology.from_settings(broker, ingest))
    finally:
        if connection.is_open:
            connection.close()


class Supervisor:
    def __init__(self, ingest: IngestSettings, database_url: str) -> None:
        self._settings = ingest
        self._conninfo = libpq_conninfo(database_url)
        self._context = multiprocessing.get_context("spawn")
        self._children: dict[int, BaseProcess] = {}
        self._stopping = False
        self._metrics_dir = Path(tempfile.mkdtemp(prefix="scanfleet-ingest-metrics-"))

    def _start(self, index: int) -> None:
        process = self._context.Process(
            target=consumer_main,
            args=(index, os.getpid(), self._conninfo),
            name=f"scanfleet-ingest-{index}",
            daemon=False,
        )
        process.start()
        self._children[index] = process
        log.info("consumer_started", consumer=index, pid=process.pid)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stopping:
            log.info("stopping", signal=signal.Signals(signum).name)
        self._stopping = True

    def run(self) -> int:
        # Every consumer process writes its metric samples here; set before they start.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(self._metrics_dir)
        from observability.metrics import mark_process_dead, multiprocess_registry, serve_metrics

        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if self._settings.metrics_port:
            serve_metrics(
                self._settings.metrics_port,
                self._settings.metrics_addr,
                multiprocess_registry(self._metrics_dir),
            )
            log.info(
                "metrics_serving",
                addr=self._settings.metrics_addr,
                port=self._settings.metrics_port,
            )
        for index in range(self._settings.consumers):
            self._start(index)
        restarts: dict[int, float] = {}
        try:
            while not self._stopping:
                time.sleep(0.2)
                for index, process in list(self._children.items()):
                    if process.is_alive() or self._stopping:
                        continue
                    log.error("consumer_died", consumer=index, exitcode=process.exitcode)
                    if process.pid is not None:
                        mark_process_dead(process.pid)
                    # Back off a little if it keeps dying (e.g. a bad configuration).
                    if time.monotonic() - restarts.get(index, 0.0) < 5:
                        time.sleep(2)
                    restarts[index] = time.monotonic()
                    self._start(index)
        finally:
            self._stop_children()
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
        return 0

    def _stop_children(self, grace_s: float = 40.0) -> None:
        for process in self._children.values():
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in self._children.values():
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        log.info("ingest_stopped")
