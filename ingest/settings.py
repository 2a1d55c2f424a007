"""Ingest and broker configuration (env prefixes ``SCANFLEET_`` and ``SCANFLEET_INGEST_``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: RabbitMQ queue types the findings queue can be declared as (see ingest.topology).
QueueType = Literal["quorum", "classic"]


class BrokerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCANFLEET_", extra="ignore")

    #: ``amqp://user:pass@host:5672/vhost``; unset means the embedded in-process mode.
    broker_url: str | None = None
    findings_exchange: str = "scanfleet.findings"


class IngestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCANFLEET_INGEST_", extra="ignore")

    queue: str = "scanfleet.ingest"
    binding_key: str = "finding.#"
    #: RabbitMQ type of the findings queue and its dead-letter queue: ``quorum``
    #: (replicated, RabbitMQ's type for messages that must not be lost) or ``classic``.
    queue_type: QueueType = "quorum"
    #: Consumer processes; each has its own connections and a writer thread.
    consumers: int = Field(default=2, ge=1, le=64)
    batch_size: int = Field(default=4000, ge=1, le=50000)
    #: A batch is written after this long even if it is not full (sooner if deliveries
    #: pause while the consumer's writer has nothing in hand).
    batch_max_wait_s: float = Field(default=0.25, gt=0, le=60)
    #: Unacked messages per consumer; above ``batch_size`` so consuming overlaps commits.
    prefetch: int | None = Field(default=None, ge=1, le=65535)
    max_message_bytes: int = Field(default=1_048_576, ge=1024)
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    metrics_addr: str = "127.0.0.1"
    log_level: str = "INFO"

    @property
    def effective_prefetch(self) -> int:
        return self.prefetch if self.prefetch is not None else min(self.batch_size * 3, 65535)


@lru_cache(maxsize=1)
def get_broker_settings() -> BrokerSettings:
    return BrokerSettings()


@lru_cache(maxsize=1)
def get_ingest_settings() -> IngestSettings:
    return IngestSettings()
