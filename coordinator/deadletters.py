"""Dead-lettered messages: where they are, why they are there, and sending them back.

Three kinds of dead-letter queue exist: ingest's ``<queue>.dlq`` (malformed finding
events, the reason in ``x-scanfleet-dead-letter-reason``), the coordinator's
``scanfleet.coordinator.dlq`` (malformed task events) and dramatiq's
``scanfleet.tasks.<pool>.XQ`` (task messages whose actor failed). Listing peeks (each
message is returned to its queue); retrying republishes a message where it came from,
with confirms, and only then removes it from the dead-letter queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions

from contracts.errors import ConfigError
from coordinator.service import QUEUE as COORDINATOR_QUEUE
from coordinator.service import TASK_EVENTS_EXCHANGE
from coordinator.transport import POOLS, task_queue
from ingest.topology import ORIGINAL_KEY_HEADER, REASON_HEADER, REASON_KIND_HEADER


@dataclass(frozen=True)
class DeadLetterQueue:
    name: str
    #: Where a retried message goes: (exchange, routing key or None for the original key).
    exchange: str
    routing_key: str | None


def known_queues(findings_exchange: str, ingest_queue: str) -> list[DeadLetterQueue]:
    queues = [
        DeadLetterQueue(f"{ingest_queue}.dlq", findings_exchange, None),
        DeadLetterQueue(f"{COORDINATOR_QUEUE}.dlq", TASK_EVENTS_EXCHANGE, None),
    ]
    queues += [DeadLetterQueue(f"{task_queue(p)}.XQ", "", task_queue(p)) for p in POOLS]
    return queues


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    routing_key: str
    reason: str
    reason_kind: str
    size: int
    body_preview: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _reason(headers: dict[str, Any]) -> tuple[str, str]:
    if REASON_HEADER in headers:
        return str(headers[REASON_HEADER]), str(headers.get(REASON_KIND_HEADER, ""))
    deaths = headers.get("x-death") or []
    if deaths:
        death = deaths[0]
        return f"{death.get('reason', 'rejected')} from {death.get('queue', '?')}", "x-death"
    if "traceback" in headers:
        return str(headers["traceback"]).strip().splitlines()[-1], "actor-failed"
    return "unknown", ""


def _original_key(method: Any, headers: dict[str, Any]) -> str:
    if ORIGINAL_KEY_HEADER in headers:
        return str(headers[ORIGINAL_KEY_HEADER])
    deaths = headers.get("x-death") or []
    if deaths and deaths[0].get("routing-keys"):
        return str(deaths[0]["routing-keys"][0])
    return str(method.routing_key)


def _channel(broker_url: str) -> tuple[pika.BlockingConnection, Any]:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    return connection, connection.channel()


def list_dead_letters(
    broker_url: str, queues: list[DeadLetterQueue], limit: int = 100
) -> list[DeadLetter]:
    connection, channel = _channel(broker_url)
    found: list[DeadLetter] = []
    try:
        for queue in queues:
            try:
                depth = channel.queue_declare(queue.name, passive=True).method.message_count
            except pika.exceptions.ChannelClosedByBroker:
                channel = connection.channel()  # the queue does not exist yet
                continue
            taken = []
            for _ in range(min(depth, limit)):
                method, props, body = channel.basic_get(queue.name, auto_ack=False)
                if method is None:
                    break
                taken.append(method.delivery_tag)
                headers = dict(props.headers or {})
                reason, kind = _reason(headers)
                found.append(
                    DeadLetter(
                        queue=queue.name,
                        routing_key=_original_key(method, headers),
                        reason=reason,
                        reason_kind=kind,
                        size=len(body),
                        body_preview=body[:200].decode(errors="replace"),
                    )
                )
            if taken:
                channel.basic_nack(taken[-1], multiple=True, requeue=True)
    finally:
        connection.close()
    return found


def retry_dead_letters(
    broker_url: str, queues: list[DeadLetterQueue], name: str, count: int | None = None
) -> int:
    """Send up to ``count`` (default all) messages of queue ``name`` back; returns how many."""
    matches = [q for q in queues if q.name == name]
    if not matches:
        known = ", ".join(q.name for q in queues)
        raise ConfigError(f"unknown dead-letter queue {name!r}; known: {known}")
    queue = matches[0]
    connection, channel = _channel(broker_url)
    channel.confirm_delivery()
    moved = 0
    try:
        while count is None or moved < count:
            method, props, body = channel.basic_get(queue.name, auto_ack=False)
            if method is None:
                break
            headers = dict(props.headers or {})
            key = queue.routing_key or _original_key(method, headers)
            for header in (REASON_HEADER, REASON_KIND_HEADER, ORIGINAL_KEY_HEADER, "x-death"):
                headers.pop(header, None)
            properties = pika.BasicProperties(
                delivery_mode=2,
                content_type=props.content_type,
                headers=headers or None,
                message_id=props.message_id,
            )
            channel.basic_publish(queue.exchange, key, body, properties, mandatory=True)
            channel.basic_ack(method.delivery_tag)  # only after the broker confirmed it
            moved += 1
    finally:
        connection.close()
    return moved
