"""The RabbitMQ objects of the finding stream, declared idempotently by whoever starts first.

``scanfleet.findings`` is a durable topic exchange; producers publish with routing
key ``finding.<tool>``. Ingest's durable queue is bound to it; its dead-letter
exchange is a fanout into ``<queue>.dlq``, where ingest also publishes malformed
events itself, with the reason in the ``x-scanfleet-dead-letter-reason`` header.
"""

from __future__ import annotations

from dataclasses import dataclass

import pika
from pika.adapters.blocking_connection import BlockingChannel

from ingest.settings import BrokerSettings, IngestSettings

REASON_HEADER = "x-scanfleet-dead-letter-reason"
REASON_KIND_HEADER = "x-scanfleet-dead-letter-kind"
ORIGINAL_KEY_HEADER = "x-scanfleet-original-routing-key"
DEAD_LETTERED_AT_HEADER = "x-scanfleet-dead-lettered-at"


#: Classic queues, version 2 (RabbitMQ >= 3.10; older brokers ignore the argument): its
#: index halves the broker's CPU per persistent message delivered and acked.
QUEUE_ARGUMENTS: dict[str, object] = {"x-queue-version": 2}


@dataclass(frozen=True)
class FindingsTopology:
    exchange: str
    queue: str
    binding_key: str

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.queue}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dlq"

    @classmethod
    def from_settings(cls, broker: BrokerSettings, ingest: IngestSettings) -> FindingsTopology:
        return cls(broker.findings_exchange, ingest.queue, ingest.binding_key)


def declare_exchange(channel: BlockingChannel, exchange: str) -> None:
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)


def declare(channel: BlockingChannel, topology: FindingsTopology) -> None:
    declare_exchange(channel, topology.exchange)
    channel.exchange_declare(topology.dead_letter_exchange, exchange_type="fanout", durable=True)
    channel.queue_declare(topology.dead_letter_queue, durable=True, arguments=QUEUE_ARGUMENTS)
    channel.queue_bind(topology.dead_letter_queue, topology.dead_letter_exchange)
    channel.queue_declare(
        topology.queue,
        durable=True,
        arguments={**QUEUE_ARGUMENTS, "x-dead-letter-exchange": topology.dead_letter_exchange},
    )
    channel.queue_bind(topology.queue, topology.exchange, routing_key=topology.binding_key)


def connection_parameters(url: str) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.heartbeat = 30
    params.blocked_connection_timeout = 60
    params.connection_attempts = 1
    params.socket_timeout = 10
    return params
