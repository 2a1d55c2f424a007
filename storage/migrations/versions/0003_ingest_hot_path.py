"""ingest hot path: observation evidence as json, more room for in-place finding updates

Observation evidence is written once per sighting and read back whole, never queried
inside: ``json`` keeps the text as sent and spares PostgreSQL building a ``jsonb``
value for every event. Findings get fillfactor 50: each re-sighting rewrites its
finding, and with half of every page free nearly all of those updates stay heap-only
(no index entries), where 70 left about a third of them touching every index.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite stores JSON as text either way and has no fillfactor
    op.execute("ALTER TABLE observations ALTER COLUMN evidence TYPE json USING evidence::json")
    op.execute("ALTER TABLE findings SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE findings SET (fillfactor = 70)")
    op.execute("ALTER TABLE observations ALTER COLUMN evidence TYPE jsonb USING evidence::jsonb")
