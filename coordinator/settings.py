"""Coordinator and worker configuration (env prefix ``SCANFLEET_``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from coordinator.scope import LOOPBACK_SCOPE


class ScanSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCANFLEET_", extra="ignore")

    #: Allowlist: CIDRs, host names, ``*.domain`` (comma-separated in the environment).
    scope: Annotated[list[str], NoDecode] = list(LOOPBACK_SCOPE)
    default_tools: Annotated[list[str], NoDecode] = [
        "nmap",
        "tcp-ports",
        "http-headers",
        "tls-cert",
    ]
    task_exchange_events: str = "scanfleet.task-events"
    task_time_limit_s: int = 300
    worker_threads: int = 4

    @field_validator("scope", "default_tools", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


@lru_cache(maxsize=1)
def get_scan_settings() -> ScanSettings:
    return ScanSettings()
