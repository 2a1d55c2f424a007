"""observations: keyed by (scan, finding) without a surrogate id; evidence stored as text

An observation is one finding in one scan, and nothing refers to an observation by
anything else, so its primary key becomes (scan_id, finding_id), which was already
unique. The surrogate ``id`` cost every event a sequence step and a third index entry.

Evidence is stored as the JSON text ingest wrote after validating it (read back whole,
never queried inside; ``evidence::json`` where a query needs it). As ``json``,
PostgreSQL parsed those ~700 bytes again for every event: about a fifth of the cost of
an observation insert.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _sqlite_columns(evidence: sa.types.TypeEngine[Any]) -> list[sa.Column[Any]]:
    """The columns an observation keeps either way (SQLite rebuilds the table)."""
    return [
        sa.Column("finding_id", sa.BigInteger(), nullable=False),
        sa.Column("scan_id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=True),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tool_name", sa.String(length=64), nullable=False),
        sa.Column("tool_version", sa.String(length=128), nullable=False),
        sa.Column("attr_hash", sa.String(length=64), nullable=False),
        sa.Column("evidence", evidence, nullable=False),
    ]


def _rebuild_on_sqlite(*schema: Any) -> None:
    """SQLite cannot change a primary key in place: a new table, the rows copied over."""
    columns = (
        "finding_id, scan_id, task_id, event_id, observed_at, tool_name, tool_version, "
        "attr_hash, evidence"
    )
    op.create_table("observations_rebuilt", *schema)
    op.execute(
        f"INSERT INTO observations_rebuilt ({columns}) SELECT {columns} FROM observations"  # noqa: S608
    )
    op.drop_index("ix_observations_finding_id", table_name="observations")
    op.drop_table("observations")
    op.rename_table("observations_rebuilt", "observations")
    op.create_index("ix_observations_finding_id", "observations", ["finding_id"], unique=False)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE observations DROP CONSTRAINT observations_pkey")
        op.execute("ALTER TABLE observations DROP COLUMN id")
        op.execute("ALTER TABLE observations DROP CONSTRAINT uq_observations_scan_finding")
        op.execute(
            "ALTER TABLE observations ADD CONSTRAINT pk_observations "
            "PRIMARY KEY (scan_id, finding_id)"
        )
        op.execute("ALTER TABLE observations ALTER COLUMN evidence TYPE text")
        return
    _rebuild_on_sqlite(
        *_sqlite_columns(sa.Text()),
        sa.PrimaryKeyConstraint("scan_id", "finding_id", name="pk_observations"),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE observations ALTER COLUMN evidence TYPE json USING evidence::json")
        op.execute("ALTER TABLE observations DROP CONSTRAINT pk_observations")
        op.execute(
            "ALTER TABLE observations ADD CONSTRAINT uq_observations_scan_finding "
            "UNIQUE (scan_id, finding_id)"
        )
        op.execute("ALTER TABLE observations ADD COLUMN id bigserial PRIMARY KEY")
        return
    _rebuild_on_sqlite(
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        *_sqlite_columns(sa.JSON()),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("scan_id", "finding_id", name="uq_observations_scan_finding"),
    )
