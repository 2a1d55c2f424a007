"""budgets and leases: per-target budgets, leases with expiry, retries, cancellation

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_TS = sa.DateTime(timezone=True)

_TASK_COLUMNS: list[sa.Column[Any]] = [
    sa.Column("target_key", sa.String(length=253), nullable=True),
    sa.Column("budget_class", sa.String(length=16), nullable=True),
    sa.Column("max_concurrency", sa.Integer(), nullable=True),
    sa.Column("rps", sa.Float(), nullable=True),
    sa.Column("rps_allocated", sa.Float(), nullable=True),
    sa.Column("max_runtime_s", sa.Integer(), nullable=True),
    sa.Column("admitted_at", _TS, nullable=True),
    sa.Column("lease_expires_at", _TS, nullable=True),
    sa.Column("not_before", _TS, nullable=True),
    sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
]
_SCAN_COLUMNS: list[sa.Column[Any]] = [
    sa.Column("budget", _JSON, nullable=True),
    sa.Column("deadline_at", _TS, nullable=True),
    sa.Column("cancel_requested_at", _TS, nullable=True),
    sa.Column("cancelled_by", sa.String(length=256), nullable=True),
]


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        for column in _TASK_COLUMNS:
            batch.add_column(column)
    with op.batch_alter_table("scans") as batch:
        for column in _SCAN_COLUMNS:
            batch.add_column(column)
    op.create_index("ix_tasks_status_target", "tasks", ["status", "target_key"])
    op.create_index("ix_tasks_status_lease", "tasks", ["status", "lease_expires_at"])


def downgrade() -> None:
    op.drop_index("ix_tasks_status_lease", table_name="tasks")
    op.drop_index("ix_tasks_status_target", table_name="tasks")
    with op.batch_alter_table("scans") as batch:
        for column in reversed(_SCAN_COLUMNS):
            batch.drop_column(column.name)
    with op.batch_alter_table("tasks") as batch:
        for column in reversed(_TASK_COLUMNS):
            batch.drop_column(column.name)
