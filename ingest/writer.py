"""Writing one batch of records in one transaction: the contract every database meets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ingest.record import IngestRecord


@dataclass(frozen=True)
class BatchOutcome:
    """What one committed batch changed."""

    events: int
    duplicates: int
    findings_created: int
    findings_updated: int
    observations_created: int


class RejectedRecord(Exception):
    """The database refused one record (e.g. a NUL byte in a text field)."""

    def __init__(self, record: IngestRecord, reason: str) -> None:
        super().__init__(reason)
        self.record = record
        self.reason = reason


class BatchWriter(Protocol):
    def write(self, records: Sequence[IngestRecord]) -> BatchOutcome:
        """Upsert findings and observations for ``records`` and commit, all or nothing.

        Raises :class:`contracts.errors.TransientError` when the database went away
        (nothing was committed, retrying is safe) and :class:`BatchRejected` when the
        database refused the data itself.
        """

    def close(self) -> None: ...


class BatchRejected(Exception):
    """The database refused the batch's data (not a connection problem)."""
