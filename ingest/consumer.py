"""One ingest consumer: a pika connection in the main thread, a database writer thread.

The main thread owns the AMQP connection (pika is not thread-safe): it receives
deliveries (through :mod:`ingest.deliveries`), cuts them into batches by count and by
time, decodes and validates each batch while the writer thread commits the previous
one, hands it to the writer thread, and acks a batch (``multiple=True`` up to its last delivery tag)
only after the writer reports it committed and its malformed messages are
confirmed in the dead-letter queue. Prefetch is larger than a batch, so the next
batch fills while the previous one commits.

After a broker outage the unacked deliveries come back; batches of the old
connection that still commit are simply redelivered and recognised as
duplicates by their event ids, so nothing is lost and nothing is doubled.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pika
import pika.exceptions
import structlog
from pika.adapters.blocking_connection import BlockingChannel
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_never,
    wait_exponential,
)

from contracts.errors import TransientError
from ingest import deliveries
from ingest.batch import BatchResult, DecodedBatch, Delivery, decode_deliveries, write_decoded
from ingest.record import IngestRecord
from ingest.topology import (
    DEAD_LETTERED_AT_HEADER,
    ORIGINAL_KEY_HEADER,
    REASON_HEADER,
    REASON_KIND_HEADER,
    FindingsTopology,
    connection_parameters,
    declare,
)
from ingest.writer import BatchOutcome, BatchWriter
from observability.metrics import IngestMetrics

log = structlog.get_logger("scanfleet.ingest")

_AMQP_ERRORS = (pika.exceptions.AMQPError, OSError)
#: How long one wait for deliveries lasts: a whole one without any is an idle queue.
_POLL_S = 0.02


class _StopRequested(Exception):
    pass


class Consumer:
    def __init__(
        self,
        *,
        broker_url: str,
        topology: FindingsTopology,
        writer: BatchWriter,
        metrics: IngestMetrics,
        batch_size: int,
        batch_max_wait_s: float,
        prefetch: int,
        max_message_bytes: int,
        name: str = "ingest",
    ) -> None:
        self._params = connection_parameters(broker_url)
        self._topology = topology
        self._writer = writer
        self._metrics = metrics
        self._batch_size = batch_size
        self._max_wait = batch_max_wait_s
        self._prefetch = prefetch
        self._max_bytes = max_message_bytes
        self._name = name
        self._stop = threading.Event()
        self._generation = 0
        self._pending: list[Delivery] = []
        self._pending_since = 0.0
        #: A decoded batch waiting for the writer thread to take it.
        self._ready: DecodedBatch | None = None
        self._to_writer: queue.Queue[DecodedBatch | None] = queue.Queue(maxsize=1)
        self._from_writer: queue.Queue[BatchResult | BaseException] = queue.Queue()
        self._in_flight = 0
        self._writer_thread = threading.Thread(
            target=self._writer_loop, name=f"{name}-writer", daemon=True
        )

    # -- control ---------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Consume until :meth:`request_stop`; survives broker and database restarts."""
        self._writer_thread.start()
        try:
            while not self._stop.is_set():
                try:
                    self._session()
                except _StopRequested:
                    break
                except _AMQP_ERRORS as exc:
                    self._lost_connection(exc)
        finally:
            self._to_writer.put(None)
            self._writer_thread.join(timeout=30)
            self._writer.close()
            log.info("consumer_stopped", consumer=self._name)

    # -- AMQP side (main thread) -------------------------------------------------------

    def _connect(self) -> pika.BlockingConnection:
        def before_sleep(state: RetryCallState) -> None:
            if self._stop.is_set():
                raise _StopRequested
            exc = state.outcome.exception() if state.outcome else None
            log.warning("broker_connect_failed", error=str(exc), attempt=state.attempt_number)

        retrying = Retrying(
            retry=retry_if_exception_type(_AMQP_ERRORS),
            wait=wait_exponential(multiplier=0.5, max=10),
            stop=stop_never,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(pika.BlockingConnection, self._params)

    def _session(self) -> None:
        connection = self._connect()
        try:
            channel = connection.channel()
            declare(channel, self._topology)
            channel.basic_qos(prefetch_count=self._prefetch)
            dead_letters = connection.channel()
            dead_letters.confirm_delivery()
            generation = self._generation
            # Deliveries on this channel skip pika's per-frame objects (see ingest.deliveries);
            # pika's own callback stays as the path for a pika without the internals used.
            deliveries.install(connection, channel.channel_number, self._on_delivery)
            channel.basic_consume(
                self._topology.queue,
                lambda _ch, method, props, body: self._on_delivery(
                    method.delivery_tag, method.routing_key, props.headers, body
                ),
            )
            self._metrics.consumers_up.inc()
            log.info(
                "consuming",
                consumer=self._name,
                queue=self._topology.queue,
                prefetch=self._prefetch,
                batch_size=self._batch_size,
            )
            try:
                while not self._stop.is_set():
                    waiting = len(self._pending)
                    connection.process_data_events(time_limit=_POLL_S)
                    self._hand_over(generation, force=False, idle=len(self._pending) == waiting)
                    self._settle(channel, dead_letters, generation)
                self._drain(connection, channel, dead_letters, generation)
            finally:
                self._metrics.consumers_up.dec()
        finally:
            if connection.is_open:
                with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                    connection.close()

    def _on_delivery(
        self, tag: int, routing_key: str, headers: dict[str, Any] | None, body: bytes
    ) -> None:
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append(Delivery(tag, body, routing_key, headers))

    def _hand_over(self, generation: int, *, force: bool, idle: bool = False) -> None:
        """Decode the pending deliveries when a batch is due, and pass it to the writer.

        A batch is due when it is full, when its first delivery has waited the batch time,
        or when nothing arrived for a whole poll (``idle``) while the writer has nothing
        in hand: the queue is drained for now, and waiting would only delay these events
        (with batches in flight, the prefetch window may be what holds deliveries back,
        and the batch is left to fill).

        Decoding happens here, in the main thread, so that it overlaps the writer thread's
        wait for the database (which releases the GIL) instead of following it.
        """
        if self._ready is None:
            if not self._pending:
                return
            due = (
                force
                or len(self._pending) >= self._batch_size
                or (idle and self._in_flight == 0)
                or time.monotonic() - self._pending_since >= self._max_wait
            )
            if not due:
                return
            self._ready = decode_deliveries(
                self._pending, generation=generation, max_message_bytes=self._max_bytes
            )
            self._pending = []
        try:
            self._to_writer.put_nowait(self._ready)
        except queue.Full:
            return  # the writer is busy; keep filling, up to the prefetch window
        self._in_flight += 1
        self._ready = None

    def _settle(
        self, channel: BlockingChannel, dead_letters: BlockingChannel, generation: int
    ) -> None:
        while True:
            try:
                item = self._from_writer.get_nowait()
            except queue.Empty:
                return
            self._in_flight -= 1
            if isinstance(item, BaseException):
                raise item
            if item.generation != generation:
                continue  # its connection is gone; the broker redelivers those messages
            for dead in item.dead_letters:
                self._publish_dead_letter(dead_letters, dead.delivery, dead.reason, dead.kind)
            channel.basic_ack(item.last_tag, multiple=True)

    def _publish_dead_letter(
        self, channel: BlockingChannel, delivery: Delivery, reason: str, kind: str
    ) -> None:
        headers = dict(delivery.headers or {})
        headers.update(
            {
                REASON_HEADER: reason[:4000],
                REASON_KIND_HEADER: kind,
                ORIGINAL_KEY_HEADER: delivery.routing_key,
                DEAD_LETTERED_AT_HEADER: datetime.now(UTC).isoformat(),
                "x-scanfleet-consumer": f"{socket.gethostname()}/{os.getpid()}",
            }
        )
        channel.basic_publish(
            self._topology.dead_letter_exchange,
            delivery.routing_key,
            delivery.body,
            pika.BasicProperties(delivery_mode=2, headers=headers),
            mandatory=True,
        )
        self._metrics.dead_lettered.labels(reason_kind=kind).inc()
        log.warning(
            "event_dead_lettered",
            reason=reason,
            reason_kind=kind,
            routing_key=delivery.routing_key,
            size=len(delivery.body),
        )

    def _drain(
        self,
        connection: pika.BlockingConnection,
        channel: BlockingChannel,
        dead_letters: BlockingChannel,
        generation: int,
        grace_s: float = 30.0,
    ) -> None:
        """On stop: no new deliveries, commit and ack what was received, then leave."""
        channel.stop_consuming()
        self._hand_over(generation, force=True)
        deadline = time.monotonic() + grace_s
        while (self._in_flight or self._pending or self._ready) and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.05)
            self._hand_over(generation, force=True)
            self._settle(channel, dead_letters, generation)
        if self._in_flight or self._pending or self._ready:
            log.warning("stopped_with_unacked_batches", batches=self._in_flight)

    def _lost_connection(self, exc: BaseException) -> None:
        self._generation += 1
        dropped = len(self._pending) + (len(self._ready.deliveries) if self._ready else 0)
        self._pending = []
        self._ready = None
        self._metrics.reconnects.labels(service="rabbitmq").inc()
        log.warning(
            "broker_connection_lost",
            error=repr(exc),
            unacked_pending=dropped,
            note="unacked deliveries are redelivered by the broker",
        )
        self._stop.wait(0.5)

    # -- database side (writer thread) -------------------------------------------------

    def _writer_loop(self) -> None:
        while True:
            item = self._to_writer.get()
            if item is None:  # shut down
                return
            try:
                result = self._process(item)
            except BaseException as exc:  # surfaced in the main thread
                log.exception("writer_failed")
                self._from_writer.put(exc)
                return
            self._from_writer.put(result)

    def _write_retrying(self) -> Callable[[Sequence[IngestRecord]], BatchOutcome]:
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            self._metrics.batch_retries.inc()
            self._metrics.reconnects.labels(service="postgresql").inc()
            log.warning("database_unavailable", error=str(exc), attempt=state.attempt_number)

        def write(records: Sequence[IngestRecord]) -> BatchOutcome:
            retrying = Retrying(
                retry=retry_if_exception_type(TransientError),
                wait=wait_exponential(multiplier=0.2, max=10),
                stop=stop_never,
                before_sleep=before_sleep,
                reraise=True,
            )
            return retrying(self._writer.write, records)

        return write

    def _process(self, batch: DecodedBatch) -> BatchResult:
        started = time.perf_counter()
        result = write_decoded(self._write_retrying(), batch)
        deliveries = batch.deliveries
        elapsed = time.perf_counter() - started
        outcome = result.outcome
        m = self._metrics
        m.events_consumed.inc(len(deliveries))
        m.findings_created.inc(outcome.findings_created)
        m.findings_updated.inc(outcome.findings_updated)
        m.observations_created.inc(outcome.observations_created)
        m.duplicates.inc(outcome.duplicates)
        m.batch_size.observe(len(deliveries))
        m.commit_seconds.observe(elapsed)
        log.debug(
            "batch_committed",
            events=len(deliveries),
            duplicates=outcome.duplicates,
            findings_created=outcome.findings_created,
            findings_updated=outcome.findings_updated,
            observations_created=outcome.observations_created,
            dead_lettered=len(result.dead_letters),
            seconds=round(elapsed, 4),
        )
        return result
