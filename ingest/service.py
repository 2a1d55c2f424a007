"""``scanfleet ingest``: a supervisor process and N consumer processes.

The supervisor checks the database schema, starts the consumers, serves the summed
``/metrics`` of all of them, restarts a consumer that dies, and on SIGTERM/SIGINT
stops them gracefully (each commits and acks what it holds). Consumers die with
their supervisor (``PR_SET_PDEATHSIG``), so a killed service leaves no orphans.
"""

from __future__ import annotations

import ctypes
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
from ingest.settings import BrokerSettings, IngestSettings
from storage.database import is_postgres, libpq_conninfo
from storage.migrate import current_revision, head_revision
from storage.settings import StorageSettings

log = structlog.get_logger("scanfleet.ingest")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def consumer_main(index: int, parent_pid: int) -> None:
    """Entry point of one consumer process (spawned: settings come from the environment)."""
    _die_with_parent()
    if os.getppid() != parent_pid:
        return
    from ingest.consumer import Consumer
    from ingest.postgres import PostgresBatchWriter
    from ingest.settings import get_broker_settings, get_ingest_settings
    from ingest.topology import FindingsTopology
    from observability.logging import configure_logging
    from observability.metrics import ingest_metrics
    from storage.settings import get_settings

    ingest = get_ingest_settings()
    broker = get_broker_settings()
    storage = get_settings()
    configure_logging(ingest.log_level)
    structlog.contextvars.bind_contextvars(component="ingest", consumer=index, pid=os.getpid())
    assert broker.broker_url is not None and storage.database_url is not None
    consumer = Consumer(
        broker_url=broker.broker_url,
        topology=FindingsTopology.from_settings(broker, ingest),
        writer=PostgresBatchWriter(
            libpq_conninfo(storage.database_url), application_name=f"scanfleet-ingest-{index}"
        ),
        metrics=ingest_metrics(),
        batch_size=ingest.batch_size,
        batch_max_wait_s=ingest.batch_max_wait_s,
        prefetch=ingest.effective_prefetch,
        max_message_bytes=ingest.max_message_bytes,
        name=f"ingest-{index}",
    )

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        consumer.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    consumer.run()


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


class Supervisor:
    def __init__(self, ingest: IngestSettings) -> None:
        self._settings = ingest
        self._context = multiprocessing.get_context("spawn")
        self._children: dict[int, BaseProcess] = {}
        self._stopping = False
        self._metrics_dir = Path(tempfile.mkdtemp(prefix="scanfleet-ingest-metrics-"))

    def _start(self, index: int) -> None:
        process = self._context.Process(
            target=consumer_main,
            args=(index, os.getpid()),
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
