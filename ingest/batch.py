"""Turning a batch of deliveries into a committed outcome, isolating the bad ones.

A message that cannot be decoded or validated is set aside for the dead-letter
queue with its reason. If the database refuses a batch's data (not a connection
problem), the batch is split in halves until the offending records are found,
so one bad event never holds up the good ones around it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from contracts.errors import InvalidMessage
from ingest.decode import record_from_body
from ingest.record import IngestRecord
from ingest.writer import BatchOutcome, BatchRejected, BatchWriter


class Delivery(NamedTuple):
    """One received message (a tuple: one is made per event, and cheaply)."""

    tag: int
    body: bytes
    routing_key: str
    headers: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    delivery: Delivery
    reason: str
    kind: str


@dataclass
class BatchResult:
    generation: int
    last_tag: int
    outcome: BatchOutcome
    dead_letters: list[DeadLetter] = field(default_factory=list)


def _add(a: BatchOutcome, b: BatchOutcome) -> BatchOutcome:
    return BatchOutcome(
        a.events + b.events,
        a.duplicates + b.duplicates,
        a.findings_created + b.findings_created,
        a.findings_updated + b.findings_updated,
        a.observations_created + b.observations_created,
    )


EMPTY = BatchOutcome(0, 0, 0, 0, 0)


def decode_batch(
    deliveries: Sequence[Delivery], max_message_bytes: int
) -> tuple[list[tuple[Delivery, IngestRecord]], list[DeadLetter], int]:
    """Validate every delivery; returns (good, dead letters, duplicates within the batch)."""
    good: list[tuple[Delivery, IngestRecord]] = []
    dead: list[DeadLetter] = []
    seen: set[object] = set()
    duplicates = 0
    for delivery in deliveries:
        if len(delivery.body) > max_message_bytes:
            reason = (
                f"message is {len(delivery.body)} bytes, over the {max_message_bytes}-byte "
                "limit; send large evidence as an artifact reference"
            )
            dead.append(DeadLetter(delivery, reason, "too_large"))
            continue
        try:
            record = record_from_body(delivery.body)
        except InvalidMessage as exc:
            dead.append(DeadLetter(delivery, exc.reason, exc.kind))
            continue
        except Exception as exc:  # a message must never block the queue behind it
            reason = f"unexpected error decoding the event: {exc!r}"
            dead.append(DeadLetter(delivery, reason, "internal"))
            continue
        if record.event_id in seen:
            duplicates += 1
            continue
        seen.add(record.event_id)
        good.append((delivery, record))
    return good, dead, duplicates


def write_isolating(
    writer_write: Callable[[Sequence[IngestRecord]], BatchOutcome],
    items: Sequence[tuple[Delivery, IngestRecord]],
) -> tuple[BatchOutcome, list[DeadLetter]]:
    """Write ``items``; on a data refusal, bisect to find and dead-letter the culprits."""
    if not items:
        return EMPTY, []
    try:
        return writer_write([record for _, record in items]), []
    except BatchRejected as exc:
        if len(items) == 1:
            return EMPTY, [DeadLetter(items[0][0], str(exc), "rejected")]
    middle = len(items) // 2
    left, left_dead = write_isolating(writer_write, items[:middle])
    right, right_dead = write_isolating(writer_write, items[middle:])
    return _add(left, right), left_dead + right_dead


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """A batch of deliveries after decoding, before writing."""

    generation: int
    deliveries: Sequence[Delivery]
    good: list[tuple[Delivery, IngestRecord]]
    dead: list[DeadLetter]
    duplicates: int


def decode_deliveries(
    deliveries: Sequence[Delivery], *, generation: int, max_message_bytes: int
) -> DecodedBatch:
    """The first half of :func:`process_batch` (a consumer runs it while the previous
    batch is being written)."""
    if not deliveries:
        raise ValueError("a batch needs at least one delivery")
    good, dead, duplicates = decode_batch(deliveries, max_message_bytes)
    return DecodedBatch(generation, deliveries, good, dead, duplicates)


def write_decoded(
    write: Callable[[Sequence[IngestRecord]], BatchOutcome], batch: DecodedBatch
) -> BatchResult:
    """The second half of :func:`process_batch`: write, isolating refused records."""
    outcome, rejected = write_isolating(write, batch.good)
    outcome = _add(outcome, BatchOutcome(batch.duplicates, batch.duplicates, 0, 0, 0))
    return BatchResult(batch.generation, batch.deliveries[-1].tag, outcome, batch.dead + rejected)


def process_batch(
    writer: BatchWriter,
    deliveries: Sequence[Delivery],
    *,
    generation: int,
    max_message_bytes: int,
    write: Callable[[Sequence[IngestRecord]], BatchOutcome] | None = None,
) -> BatchResult:
    decoded = decode_deliveries(
        deliveries, generation=generation, max_message_bytes=max_message_bytes
    )
    return write_decoded(write or writer.write, decoded)
