"""Alembic environment: the URL comes from ``storage.migrate`` (or the settings)."""

from __future__ import annotations

from alembic import context

from storage.database import get_engine
from storage.models import Base
from storage.settings import get_settings

config = context.config
url = config.attributes.get("database_url") or get_settings().effective_database_url


def run_migrations_online() -> None:
    engine = get_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
