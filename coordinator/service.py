"""``scanfleet coordinator``: task events in, leases and admissions out.

Task events arrive on ``scanfleet.task-events`` (routing key ``task.<type>``); each is
applied in one transaction and acked after the commit. A task that ended or was handed
back frees its target's lease, and the target's next waiting tasks are admitted and
published at once. Every ``SCANFLEET_TICK_S`` the coordinator reaps expired leases
(lost workers: their tasks are retried), admits retries that are due, and sweeps scans
(max wall time; none stays "running" after its last task). When a scan ends its
``ScanEvent`` is published on ``scanfleet.scan-events``. A malformed event is rejected
into ``scanfleet.coordinator.dlq``. Several coordinators may run: admission is
serialised by a PostgreSQL advisory lock.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType

import pika
import pika.exceptions
import structlog
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from tenacity import Retrying, retry_if_exception_type, stop_never, wait_exponential

from contracts.errors import TransientError
from contracts.scan import ScanEvent
from contracts.task import TaskEvent
from coordinator.admission import admit_and_publish, tick
from coordinator.lifecycle import handle_task_event, sweep
from coordinator.publisher import WindowedTaskPublisher
from coordinator.settings import get_scan_settings
from ingest.topology import CLASSIC_QUEUE_ARGUMENTS, connection_parameters, declare_exchange

log = structlog.get_logger("scanfleet.coordinator")

TASK_EVENTS_EXCHANGE = "scanfleet.task-events"
SCAN_EVENTS_EXCHANGE = "scanfleet.scan-events"
QUEUE = "scanfleet.coordinator"


def declare(channel: pika.adapters.blocking_connection.BlockingChannel) -> None:
    declare_exchange(channel, TASK_EVENTS_EXCHANGE)
    declare_exchange(channel, SCAN_EVENTS_EXCHANGE)
    channel.exchange_declare(f"{QUEUE}.dlx", exchange_type="fanout", durable=True)
    channel.queue_declare(f"{QUEUE}.dlq", durable=True, arguments=CLASSIC_QUEUE_ARGUMENTS)
    channel.queue_bind(f"{QUEUE}.dlq", f"{QUEUE}.dlx")
    channel.queue_declare(
        QUEUE,
        durable=True,
        arguments={**CLASSIC_QUEUE_ARGUMENTS, "x-dead-letter-exchange": f"{QUEUE}.dlx"},
    )
    channel.queue_bind(QUEUE, TASK_EVENTS_EXCHANGE, routing_key="task.#")


def publish_scan_event(
    channel: pika.adapters.blocking_connection.BlockingChannel, event: ScanEvent
) -> None:
    channel.basic_publish(
        SCAN_EVENTS_EXCHANGE,
        f"scan.{event.type.value}",
        event.model_dump_json().encode(),
        pika.BasicProperties(delivery_mode=2, content_type="application/json"),
    )


def _housekeeping(
    database_url: str,
    publisher: WindowedTaskPublisher,
    channel: pika.adapters.blocking_connection.BlockingChannel,
) -> None:
    try:
        tick(database_url, publisher.publish)
    except TransientError as exc:
        log.warning("admission_publish_failed", error=str(exc)[:300])
    for event in sweep(database_url):
        publish_scan_event(channel, event)


def serve(broker_url: str, database_url: str) -> None:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    params = connection_parameters(broker_url)
    tick_s = get_scan_settings().tick_s
    publisher = WindowedTaskPublisher(broker_url)
    try:
        while not stop.is_set():
            try:
                _consume(params, database_url, publisher, stop, tick_s)
            except (pika.exceptions.AMQPError, OSError) as exc:
                log.warning("broker_connection_lost", error=repr(exc))
                stop.wait(1)
            except DBAPIError as exc:
                log.warning("database_unavailable", error=str(exc)[:500])
                stop.wait(1)
    finally:
        publisher.close()


def _consume(
    params: pika.ConnectionParameters,
    database_url: str,
    publisher: WindowedTaskPublisher,
    stop: threading.Event,
    tick_s: float,
) -> None:
    connection = Retrying(
        retry=retry_if_exception_type((pika.exceptions.AMQPError, OSError)),
        wait=wait_exponential(multiplier=0.5, max=10),
        stop=stop_never,
        reraise=True,
    )(pika.BlockingConnection, params)
    channel = connection.channel()
    declare(channel)
    channel.confirm_delivery()
    channel.basic_qos(prefetch_count=100)
    log.info("coordinator_consuming", queue=QUEUE)
    last_tick = 0.0
    for method, _props, body in channel.consume(QUEUE, inactivity_timeout=min(tick_s, 0.5)):
        if stop.is_set():
            break
        if time.monotonic() - last_tick >= tick_s:
            _housekeeping(database_url, publisher, channel)
            last_tick = time.monotonic()
        if method is None:
            continue
        try:
            event = TaskEvent.model_validate_json(body)
        except ValidationError as exc:
            log.warning("task_event_rejected", error=str(exc)[:500])
            channel.basic_reject(method.delivery_tag, requeue=False)
            continue
        try:
            applied = handle_task_event(database_url, event)
        except DBAPIError as exc:
            # The database went away: hand the event back and retry shortly.
            log.warning("database_unavailable", error=str(exc)[:500])
            channel.basic_nack(method.delivery_tag, requeue=True)
            stop.wait(1)
            continue
        if applied.freed_target is not None:
            try:
                admit_and_publish(
                    database_url, publisher.publish, target_keys=[applied.freed_target]
                )
            except TransientError as exc:
                log.warning("admission_publish_failed", error=str(exc)[:300])
        if applied.scan_event is not None:
            publish_scan_event(channel, applied.scan_event)
        channel.basic_ack(method.delivery_tag)
    connection.close()
