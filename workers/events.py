"""Where a worker sends what it found and how its task went.

The fleet publishes to RabbitMQ with publisher confirms (``scanfleet.findings`` and
``scanfleet.task-events``); the embedded mode hands the same messages to in-process
handlers. The domain code never knows which.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

import pika
import pika.exceptions
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from contracts.errors import TransientError
from contracts.events import FindingEvent
from contracts.task import TaskEvent, TaskEventType
from ingest.topology import FindingsTopology, connection_parameters
from ingest.topology import declare as declare_findings


class EventSink(Protocol):
    def findings(self, events: Sequence[FindingEvent]) -> None: ...

    def task_event(self, event: TaskEvent) -> None: ...


class InProcessSink:
    """Embedded mode: deliver to handlers in this process, synchronously."""

    def __init__(
        self,
        on_findings: Callable[[Sequence[FindingEvent]], None],
        on_task_event: Callable[[TaskEvent], None],
    ) -> None:
        self._on_findings = on_findings
        self._on_task_event = on_task_event
        self._lock = threading.Lock()

    def findings(self, events: Sequence[FindingEvent]) -> None:
        with self._lock:
            self._on_findings(events)

    def task_event(self, event: TaskEvent) -> None:
        with self._lock:
            self._on_task_event(event)


class RabbitSink:
    """Publishes with confirms; one connection per worker thread (pika is not thread-safe)."""

    def __init__(
        self, url: str, findings_exchange: str, task_events_exchange: str, retry_s: float = 60.0
    ) -> None:
        self._params = connection_parameters(url)
        self._retry_s = retry_s
        self._findings = findings_exchange
        self._task_events = task_events_exchange
        self._local = threading.local()

    def _channel(self) -> pika.adapters.blocking_connection.BlockingChannel:
        channel = getattr(self._local, "channel", None)
        if channel is None or channel.is_closed or channel.connection.is_closed:
            connection = pika.BlockingConnection(self._params)
            channel = connection.channel()
            channel.confirm_delivery()
            # Declare the consumers' queues too: an event published before ingest or the
            # coordinator first started must wait in their queue, not vanish.
            from coordinator.service import declare as declare_coordinator
            from ingest.settings import get_broker_settings, get_ingest_settings

            declare_findings(
                channel,
                FindingsTopology.from_settings(get_broker_settings(), get_ingest_settings()),
            )
            declare_coordinator(channel)
            self._local.channel = channel
        return channel

    def _publish(self, exchange: str, key: str, body: bytes) -> None:
        """Publish with a confirm; reconnect and retry while the broker restarts."""
        properties = pika.BasicProperties(delivery_mode=2, content_type="application/json")

        def attempt() -> None:
            try:
                self._channel().basic_publish(exchange, key, body, properties, mandatory=True)
            except (pika.exceptions.AMQPError, OSError):
                self._local.channel = None
                raise

        try:
            Retrying(
                retry=retry_if_exception_type((pika.exceptions.AMQPError, OSError)),
                wait=wait_exponential(multiplier=0.2, max=5),
                stop=stop_after_delay(self._retry_s),
                reraise=True,
            )(attempt)
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise TransientError(f"cannot publish to {exchange}: {exc!r}") from exc

    def findings(self, events: Sequence[FindingEvent]) -> None:
        for event in events:
            self._publish(self._findings, event.routing_key(), event.model_dump_json().encode())

    def task_event(self, event: TaskEvent) -> None:
        key, body = f"task.{event.type.value}", event.model_dump_json().encode()
        if event.type is TaskEventType.STARTED:
            self._notify(key, body)
            return
        self._publish(self._task_events, key, body)

    def _notify(self, key: str, body: bytes) -> None:
        """A notice for observers, without waiting for a confirm: the task's start is
        recorded in PostgreSQL by its claim; a lost notice loses nothing."""
        try:
            channel = getattr(self._local, "notices", None)
            if channel is None or channel.is_closed or channel.connection.is_closed:
                channel = self._channel().connection.channel()
                self._local.notices = channel
            channel.basic_publish(
                self._task_events,
                key,
                body,
                pika.BasicProperties(delivery_mode=2, content_type="application/json"),
            )
        except (pika.exceptions.AMQPError, OSError):
            self._local.notices = None
