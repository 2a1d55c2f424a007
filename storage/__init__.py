"""Persistence: SQLAlchemy models, Alembic migrations, queries, the artifact store."""
