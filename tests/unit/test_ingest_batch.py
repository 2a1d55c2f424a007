"""Batch logic of ingest: dead-lettering bad messages, in-batch dedupe, isolating records
the database refuses. The database is a small fake writer defined here."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import TransientError
from contracts.registry import EXAMPLE_DIR
from ingest.batch import DeadLetter, Delivery, decode_batch, process_batch, write_isolating
from ingest.decode import record_from_body
from ingest.record import IngestRecord
from ingest.writer import BatchOutcome, BatchRejected

EXAMPLE_EVENT: dict[str, Any] = json.loads(
    (EXAMPLE_DIR / "finding-event.json").read_text(encoding="utf-8")
)
LIMIT = 64 * 1024


def event_body(n: int, **finding_changes: Any) -> bytes:
    """The example event with event id ``n`` and its own port (so its own finding)."""
    data = copy.deepcopy(EXAMPLE_EVENT)
    data["event_id"] = str(UUID(int=n))
    data["finding"]["asset"]["port"] = 1 + n % 65535
    data["finding"].update(finding_changes)
    return json.dumps(data).encode()


def delivery(tag: int, body: bytes) -> Delivery:
    return Delivery(tag=tag, body=body, routing_key="finding.nmap", headers=None)


def good_delivery(tag: int, n: int | None = None) -> Delivery:
    return delivery(tag, event_body(tag if n is None else n))


def items(deliveries: Sequence[Delivery]) -> list[tuple[Delivery, IngestRecord]]:
    return [(d, record_from_body(d.body)) for d in deliveries]


class FakeWriter:
    """Commits whole batches; refuses (BatchRejected) any batch holding a poison event."""

    def __init__(self, poison: set[UUID] | None = None, error: Exception | None = None) -> None:
        self.poison = poison or set()
        self.error = error
        self.calls: list[list[IngestRecord]] = []
        self.committed: list[IngestRecord] = []

    def write(self, records: Sequence[IngestRecord]) -> BatchOutcome:
        batch = list(records)
        self.calls.append(batch)
        if self.error is not None:
            raise self.error
        bad = [r.event_id for r in batch if r.event_id in self.poison]
        if bad:
            raise BatchRejected(f"refused event {bad[0]}")
        self.committed.extend(batch)
        return BatchOutcome(
            events=len(batch),
            duplicates=0,
            findings_created=len(batch),
            findings_updated=0,
            observations_created=len(batch),
        )

    def close(self) -> None:
        pass


def committed_ids(writer: FakeWriter) -> list[UUID]:
    return [r.event_id for r in writer.committed]


# -- decode_batch ----------------------------------------------------------------------


def test_message_over_the_size_limit_is_dead_lettered_as_too_large() -> None:
    fitting = good_delivery(2)
    big = delivery(1, event_body(1, description="x" * 2000))
    good, dead, duplicates = decode_batch([big, fitting], max_message_bytes=len(fitting.body))
    assert dead == [DeadLetter(big, dead[0].reason, "too_large")]
    assert str(len(big.body)) in dead[0].reason
    assert [d for d, _ in good] == [fitting]
    assert duplicates == 0


def test_message_exactly_at_the_size_limit_is_accepted() -> None:
    exact = good_delivery(1)
    good, dead, _ = decode_batch([exact], max_message_bytes=len(exact.body))
    assert ([d for d, _ in good], dead) == ([exact], [])


def test_invalid_messages_are_dead_lettered_with_their_reason_and_kind() -> None:
    not_json = delivery(1, b"{not json")
    bad_severity = delivery(2, event_body(2, severity="urgent"))
    fine = good_delivery(3)
    good, dead, duplicates = decode_batch([not_json, bad_severity, fine], LIMIT)
    assert [(d.delivery, d.kind) for d in dead] == [
        (not_json, "bad_json"),
        (bad_severity, "validation"),
    ]
    assert "Invalid JSON" in dead[0].reason
    assert dead[1].reason.startswith("finding.severity: ")
    assert [d for d, _ in good] == [fine]
    assert good[0][1] == record_from_body(fine.body)
    assert duplicates == 0


def test_same_event_id_twice_in_a_batch_counts_one_duplicate_and_keeps_the_first() -> None:
    first = good_delivery(1, n=7)
    other = good_delivery(2)
    again = good_delivery(3, n=7)
    good, dead, duplicates = decode_batch([first, other, again], LIMIT)
    assert duplicates == 1
    assert dead == []
    assert [d for d, _ in good] == [first, other]


# -- write_isolating -------------------------------------------------------------------


def test_batch_without_refusals_is_written_in_one_call() -> None:
    writer = FakeWriter()
    batch = items([good_delivery(t) for t in range(1, 6)])
    outcome, dead = write_isolating(writer.write, batch)
    assert len(writer.calls) == 1
    assert dead == []
    assert outcome.events == 5
    assert committed_ids(writer) == [r.event_id for _, r in batch]


def test_empty_batch_calls_no_writer() -> None:
    writer = FakeWriter()
    outcome, dead = write_isolating(writer.write, [])
    assert (writer.calls, dead, outcome.events) == ([], [], 0)


def test_poison_record_is_dead_lettered_as_rejected_and_all_others_are_written() -> None:
    deliveries = [good_delivery(t) for t in range(1, 8)]
    batch = items(deliveries)
    poison = batch[3][1].event_id
    writer = FakeWriter(poison={poison})
    outcome, dead = write_isolating(writer.write, batch)
    assert [(d.delivery, d.kind) for d in dead] == [(deliveries[3], "rejected")]
    assert str(poison) in dead[0].reason
    others = [r.event_id for _, r in batch if r.event_id != poison]
    assert sorted(committed_ids(writer)) == sorted(others)
    assert len(committed_ids(writer)) == len(set(committed_ids(writer)))
    assert outcome.events == outcome.observations_created == len(others)


PREBUILT = items([good_delivery(t) for t in range(1, 25)])


@settings(max_examples=100, deadline=None)
@given(data=st.data(), size=st.integers(min_value=1, max_value=24))
def test_bisection_dead_letters_exactly_the_poison_records_and_writes_the_rest_once(
    data: st.DataObject, size: int
) -> None:
    batch = PREBUILT[:size]
    poison_indexes = data.draw(st.sets(st.integers(min_value=0, max_value=size - 1)))
    poison = {batch[i][1].event_id for i in poison_indexes}
    writer = FakeWriter(poison=poison)
    outcome, dead = write_isolating(writer.write, batch)
    assert all(d.kind == "rejected" for d in dead)
    assert sorted(d.delivery.tag for d in dead) == sorted(batch[i][0].tag for i in poison_indexes)
    good_ids = [r.event_id for _, r in batch if r.event_id not in poison]
    assert sorted(committed_ids(writer)) == sorted(good_ids)
    assert len(committed_ids(writer)) == len(set(committed_ids(writer)))
    assert outcome.events + len(dead) == size


@pytest.mark.parametrize("error", [TransientError("database went away"), RuntimeError("bug")])
def test_errors_other_than_a_data_refusal_are_raised_not_dead_lettered(error: Exception) -> None:
    writer = FakeWriter(error=error)
    with pytest.raises(type(error)):
        write_isolating(writer.write, items([good_delivery(1), good_delivery(2)]))
    assert len(writer.calls) == 1


# -- process_batch ---------------------------------------------------------------------


def test_process_batch_reports_the_last_tag_and_counts_every_delivery() -> None:
    deliveries = [
        good_delivery(10, n=1),
        good_delivery(11, n=2),
        delivery(12, b"nope"),
        good_delivery(13, n=1),  # duplicate of tag 10
        good_delivery(14, n=3),  # poison
        delivery(15, event_body(4, severity="urgent")),  # last tag, invalid
    ]
    writer = FakeWriter(poison={UUID(int=3)})
    result = process_batch(writer, deliveries, generation=5, max_message_bytes=LIMIT)
    assert result.generation == 5
    assert result.last_tag == 15
    assert sorted((d.delivery.tag, d.kind) for d in result.dead_letters) == [
        (12, "bad_json"),
        (14, "rejected"),
        (15, "validation"),
    ]
    assert sorted(committed_ids(writer)) == [UUID(int=1), UUID(int=2)]
    assert result.outcome.duplicates == 1
    assert result.outcome.events == 3  # two written plus the in-batch duplicate
    assert result.outcome.events + len(result.dead_letters) == len(deliveries)


def test_process_batch_adds_in_batch_duplicates_to_those_the_writer_reports() -> None:
    class CountingDuplicates(FakeWriter):
        def write(self, records: Sequence[IngestRecord]) -> BatchOutcome:
            outcome = super().write(records)
            return BatchOutcome(outcome.events, 1, 0, 0, 0)

    deliveries = [good_delivery(1, n=9), good_delivery(2, n=9), good_delivery(3, n=9)]
    result = process_batch(CountingDuplicates(), deliveries, generation=0, max_message_bytes=LIMIT)
    assert result.outcome.duplicates == 1 + 2
    assert result.outcome.events == 3


def test_process_batch_writes_through_the_given_write_function() -> None:
    unused = FakeWriter(error=RuntimeError("writer.write must not be called"))
    retrying = FakeWriter()
    deliveries = [good_delivery(1), good_delivery(2)]
    result = process_batch(
        unused, deliveries, generation=1, max_message_bytes=LIMIT, write=retrying.write
    )
    assert unused.calls == []
    assert committed_ids(retrying) == [UUID(int=1), UUID(int=2)]
    assert result.outcome.events == 2
