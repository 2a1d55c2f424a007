"""Writing one batch of records in one transaction: the contract every database meets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol
from uuid import UUID

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


#: Finding columns that the newest sighting overwrites (one at least as new as the stored
#: ``last_seen``); every writer takes them from here.
VOLATILE_COLUMNS = (
    "title",
    "severity",
    "confidence",
    "attributes",
    "attr_hash",
    "description",
    "remediation",
    "references",
    "cwe",
    "cve",
    "cvss",
    "last_scan_id",
)


#: Observation columns every writer takes from the record as they are (after the
#: finding id, which the finding upsert gives).
OBSERVATION_FIELDS = (
    "scan_id",
    "task_id",
    "event_id",
    "observed_at",
    "tool_name",
    "tool_version",
    "attr_hash",
    "evidence",
)


class BatchFacts(NamedTuple):
    """What every writer derives from a batch before writing it (``id()`` of records)."""

    #: The earliest sighting per fingerprint (a new finding's first_seen).
    first_seen: dict[str, datetime]
    #: The records that become observations: per (fingerprint, scan) the latest.
    kept_events: set[int]
    #: The latest sighting per fingerprint: newest observed_at, ties to the smallest
    #: event id (the order of PostgreSQL's ``DISTINCT ON ... observed_at DESC, event_id``).
    latest_events: set[int]


def batch_facts(records: Sequence[IngestRecord]) -> BatchFacts:
    first_seen: dict[str, datetime] = {}
    observation_of: dict[tuple[str, UUID], IngestRecord] = {}
    latest: dict[str, IngestRecord] = {}
    for record in records:
        fp = record.fingerprint
        at = record.observed_at
        newest = latest.get(fp)
        if newest is None:
            first_seen[fp] = at
            latest[fp] = record
        else:
            if at < first_seen[fp]:
                first_seen[fp] = at
            if at > newest.observed_at or (
                at == newest.observed_at and record.event_id < newest.event_id
            ):
                latest[fp] = record
        key = (fp, record.scan_id)
        kept = observation_of.get(key)
        if kept is None or at > kept.observed_at:
            observation_of[key] = record
    return BatchFacts(
        first_seen,
        {id(r) for r in observation_of.values()},
        {id(r) for r in latest.values()},
    )
