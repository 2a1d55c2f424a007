"""``scanfleet coordinator``: consumes task events, moves tasks and scans to their states.

Task events arrive on ``scanfleet.task-events`` (routing key ``task.<type>``); each is
applied in one transaction and acked after the commit. When a scan's last task ends,
its end event (``ScanEvent``) is published on ``scanfleet.scan-events``. A malformed
event is rejected into ``scanfleet.coordinator.dlq``.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import pika
import pika.exceptions
import structlog
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from tenacity import Retrying, retry_if_exception_type, stop_never, wait_exponential

from contracts.task import TaskEvent
from coordinator.lifecycle import handle_task_event
from ingest.topology import QUEUE_ARGUMENTS, connection_parameters, declare_exchange

log = structlog.get_logger("scanfleet.coordinator")

TASK_EVENTS_EXCHANGE = "scanfleet.task-events"
SCAN_EVENTS_EXCHANGE = "scanfleet.scan-events"
QUEUE = "scanfleet.coordinator"


def declare(channel: pika.adapters.blocking_connection.BlockingChannel) -> None:
    declare_exchange(channel, TASK_EVENTS_EXCHANGE)
    declare_exchange(channel, SCAN_EVENTS_EXCHANGE)
    channel.exchange_declare(f"{QUEUE}.dlx", exchange_type="fanout", durable=True)
    channel.queue_declare(f"{QUEUE}.dlq", durable=True, arguments=QUEUE_ARGUMENTS)
    channel.queue_bind(f"{QUEUE}.dlq", f"{QUEUE}.dlx")
    channel.queue_declare(
        QUEUE, durable=True, arguments={**QUEUE_ARGUMENTS, "x-dead-letter-exchange": f"{QUEUE}.dlx"}
    )
    channel.queue_bind(QUEUE, TASK_EVENTS_EXCHANGE, routing_key="task.#")


def serve(broker_url: str, database_url: str) -> None:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    params = connection_parameters(broker_url)
    while not stop.is_set():
        try:
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
            for method, _props, body in channel.consume(QUEUE, inactivity_timeout=0.5):
                if stop.is_set():
                    break
                if method is None:
                    continue
                try:
                    event = TaskEvent.model_validate_json(body)
                except ValidationError as exc:
                    log.warning("task_event_rejected", error=str(exc)[:500])
                    channel.basic_reject(method.delivery_tag, requeue=False)
                    continue
                try:
                    ended = handle_task_event(database_url, event)
                except DBAPIError as exc:
                    # The database went away: hand the event back and retry shortly.
                    log.warning("database_unavailable", error=str(exc)[:500])
                    channel.basic_nack(method.delivery_tag, requeue=True)
                    stop.wait(1)
                    continue
                if ended is not None:
                    channel.basic_publish(
                        SCAN_EVENTS_EXCHANGE,
                        f"scan.{ended.type.value}",
                        ended.model_dump_json().encode(),
                        pika.BasicProperties(delivery_mode=2, content_type="application/json"),
                    )
                channel.basic_ack(method.delivery_tag)
            connection.close()
        except (pika.exceptions.AMQPError, OSError) as exc:
            log.warning("broker_connection_lost", error=repr(exc))
            stop.wait(1)
