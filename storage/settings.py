"""Storage configuration (env prefix ``SCANFLEET_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from platformdirs import user_data_dir
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path(user_data_dir("scanfleet", appauthor=False))


class StorageSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCANFLEET_", extra="ignore")

    #: ``postgresql://...`` for the fleet; unset means SQLite in the user's data dir.
    database_url: str | None = None
    data_dir: Path = Field(default_factory=default_data_dir)
    #: Where raw tool output and large evidence go; defaults to ``<data_dir>/artifacts``.
    artifact_url: str | None = None
    db_pool_size: int = 5

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'scanfleet.db'}"

    @property
    def effective_artifact_url(self) -> str:
        if self.artifact_url:
            return self.artifact_url
        return (self.data_dir / "artifacts").as_uri()


@lru_cache(maxsize=1)
def get_settings() -> StorageSettings:
    return StorageSettings()
