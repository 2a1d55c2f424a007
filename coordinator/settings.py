"""Coordinator and worker configuration (env prefix ``SCANFLEET_``)."""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contracts.scan import BudgetOverride
from coordinator.budgets import BudgetPolicy, FleetConfig
from coordinator.scope import LOOPBACK_SCOPE

#: dramatiq's own time limit is the task's plus this (a last resort).
TIME_LIMIT_MARGIN_S = 60


class ScanSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCANFLEET_", extra="ignore")

    #: The config file (TOML): budget profiles, the scope and its budget rules.
    config: Path | None = None
    #: Allowlist: CIDRs, host names, ``*.domain``; ``!entry`` denies (comma-separated in
    #: the environment). Unset: the config file's scope, else loopback only.
    scope: Annotated[list[str] | None, NoDecode] = None
    default_tools: Annotated[list[str], NoDecode] = [
        "nmap",
        "tcp-ports",
        "http-headers",
        "tls-cert",
        "http-exposure",
    ]
    task_exchange_events: str = "scanfleet.task-events"
    profile: str = "default"
    worker_threads: int = 4

    #: A running task's lease lasts this long past the worker's last heartbeat.
    lease_ttl_s: Annotated[float, Field(gt=0)] = 30.0
    #: How often a worker renews its leases and looks for cancellations.
    heartbeat_s: Annotated[float, Field(gt=0)] = 1.0
    #: An admitted task not started by a worker within this is admitted again.
    admitted_ttl_s: Annotated[float, Field(gt=0)] = 3600.0
    #: Attempts of a task whose failures are transient (a lost worker, a connection).
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 4
    retry_backoff_s: Annotated[float, Field(ge=0)] = 2.0
    retry_backoff_max_s: Annotated[float, Field(ge=0)] = 60.0
    #: RabbitMQ's consumer (delivery acknowledgement) timeout on the task queues; every
    #: task's time limit must stay under it (``consumer_timeout`` in rabbitmq.conf, or the
    #: ``consumer-timeout`` policy on ``scanfleet.tasks.*`` with RabbitMQ 3.12+).
    broker_consumer_timeout_s: Annotated[int, Field(ge=60)] = 1800
    #: On SIGTERM a worker stops taking tasks and lets running ones finish this long,
    #: then hands the rest back.
    worker_grace_s: Annotated[float, Field(ge=0)] = 30.0
    #: How often the coordinator reaps expired leases and admits waiting tasks.
    tick_s: Annotated[float, Field(gt=0)] = 1.0

    @field_validator("scope", "default_tools", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _backoff_under_consumer_timeout(self) -> ScanSettings:
        self.retry_backoff_max_s = min(self.retry_backoff_max_s, self.broker_consumer_timeout_s)
        return self

    @property
    def max_task_runtime_s(self) -> int:
        """The longest time limit a task may have under the broker's consumer timeout.

        A delivered message stays unacked while its task runs, and a prefetched one may
        first wait for a busy worker thread, as long as one task at most: so twice the
        time limit (plus dramatiq's margin) must fit in the consumer timeout.
        """
        return (self.broker_consumer_timeout_s - 2 * TIME_LIMIT_MARGIN_S) // 2

    @cached_property
    def fleet_config(self) -> FleetConfig:
        """The config file, read once per settings object."""
        return FleetConfig.load(self.config)

    def budget_policy(
        self, profile: str | None = None, override: BudgetOverride | None = None
    ) -> BudgetPolicy:
        """A scan's budgets: the profile (default ``SCANFLEET_PROFILE``) and its overrides."""
        return BudgetPolicy.for_scan(self.fleet_config, profile or self.profile, override)

    def scope_entries(self) -> list[str]:
        config = self.fleet_config
        entries = self.scope if self.scope is not None else (config.scope.allow or LOOPBACK_SCOPE)
        return [*entries, *(f"!{d.lstrip('!')}" for d in config.scope.deny)]

    def backoff(self, attempts: int) -> timedelta:
        """Capped exponential backoff before retry number ``attempts``."""
        seconds = self.retry_backoff_s * (2 ** max(attempts - 1, 0))
        return timedelta(seconds=min(seconds, self.retry_backoff_max_s))


@lru_cache(maxsize=1)
def get_scan_settings() -> ScanSettings:
    return ScanSettings()
