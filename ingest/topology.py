"""The RabbitMQ objects of the finding stream, declared idempotently by whoever starts first.

``scanfleet.findings`` is a durable topic exchange; producers publish with routing
key ``finding.<tool>``. Ingest's durable queue is bound to it; its dead-letter
exchange is a fanout into ``<queue>.dlq``, where ingest also publishes malformed
events itself, with the reason in the ``x-scanfleet-dead-letter-reason`` header.

Both queues are quorum queues by default (``SCANFLEET_INGEST_QUEUE_TYPE``): RabbitMQ's
replicated queue type, meant for messages that must not be lost, and here also the
cheaper one to drain (see :data:`QUEUE_TYPES`). A queue keeps the type it was declared
with; declaring it again as another type is refused by RabbitMQ, and
:func:`declare` turns that refusal into a :class:`~contracts.errors.ConfigError` that
says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from contracts.errors import ConfigError
from ingest.settings import BrokerSettings, IngestSettings, QueueType

REASON_HEADER = "x-scanfleet-dead-letter-reason"
REASON_KIND_HEADER = "x-scanfleet-dead-letter-kind"
ORIGINAL_KEY_HEADER = "x-scanfleet-original-routing-key"
DEAD_LETTERED_AT_HEADER = "x-scanfleet-dead-lettered-at"


#: Classic queues, version 2 (RabbitMQ >= 3.10; older brokers ignore the argument): its
#: index halves the broker's CPU per persistent message delivered and acked, against
#: version 1. The coordinator's queues are classic queues of this version.
CLASSIC_QUEUE_ARGUMENTS: dict[str, object] = {"x-queue-version": 2}

#: The arguments that make a queue of each type. Draining a backlog of 100,000 persistent
#: events from a classic queue cost RabbitMQ 20 or 40-70 us of CPU per message here,
#: depending on whether the broker had moved the waiting messages out of memory; from a
#: quorum queue, 15-23 us (bench/ingest.py, README "Performance").
QUEUE_TYPES: dict[QueueType, dict[str, object]] = {
    "quorum": {"x-queue-type": "quorum"},
    "classic": CLASSIC_QUEUE_ARGUMENTS,
}

#: AMQP reply code of a declaration that does not match the existing object.
_PRECONDITION_FAILED = 406


@dataclass(frozen=True)
class FindingsTopology:
    exchange: str
    queue: str
    binding_key: str
    queue_type: QueueType = "quorum"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.queue}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dlq"

    @classmethod
    def from_settings(cls, broker: BrokerSettings, ingest: IngestSettings) -> FindingsTopology:
        return cls(broker.findings_exchange, ingest.queue, ingest.binding_key, ingest.queue_type)

    @property
    def queue_arguments(self) -> dict[str, object]:
        return QUEUE_TYPES[self.queue_type]


def declare_exchange(channel: BlockingChannel, exchange: str) -> None:
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)


def declare(channel: BlockingChannel, topology: FindingsTopology) -> None:
    """Declare the exchanges and both queues; raises :class:`ConfigError` when a queue
    exists with other arguments (the broker closes ``channel`` then)."""
    declare_exchange(channel, topology.exchange)
    channel.exchange_declare(topology.dead_letter_exchange, exchange_type="fanout", durable=True)
    arguments = topology.queue_arguments
    _declare_queue(channel, topology, topology.dead_letter_queue, arguments)
    channel.queue_bind(topology.dead_letter_queue, topology.dead_letter_exchange)
    _declare_queue(
        channel,
        topology,
        topology.queue,
        {**arguments, "x-dead-letter-exchange": topology.dead_letter_exchange},
    )
    channel.queue_bind(topology.queue, topology.exchange, routing_key=topology.binding_key)


def _declare_queue(
    channel: BlockingChannel,
    topology: FindingsTopology,
    name: str,
    arguments: dict[str, object],
) -> None:
    try:
        channel.queue_declare(name, durable=True, arguments=arguments)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != _PRECONDITION_FAILED:
            raise
        other = "classic" if topology.queue_type == "quorum" else "quorum"
        raise ConfigError(
            f"RabbitMQ refused to declare queue {name!r} as a {topology.queue_type} queue: "
            f"{exc.reply_text}. It exists with other arguments (a queue declared by another "
            f"version of scanfleet, or as a {other} queue). Either set "
            f"SCANFLEET_INGEST_QUEUE_TYPE={other} to keep using it, or let ingest drain it, "
            f"stop ingest, delete the queue and start ingest again "
            f"(docs: README, 'Ingest queue type')."
        ) from exc


def connection_parameters(url: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.heartbeat = 30
    params.blocked_connection_timeout = 60
    params.connection_attempts = 1
    params.socket_timeout = 10
    return params
