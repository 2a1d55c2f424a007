"""The lean delivery reader against frames marshalled by pika itself."""

from __future__ import annotations

from typing import Any

import pika.exceptions
import pika.frame
import pika.spec
import pytest

from ingest.deliveries import DeliveryReader

CHANNEL = 1


class FakeConnection:
    """The connection internals the reader uses; records what pika would have processed."""

    def __init__(self, leftover: bytes = b"") -> None:
        self._frame_buffer = leftover
        self.bytes_received = 0
        self.frames_received = 0
        self.processed: list[Any] = []

    def _process_frame(self, frame: Any) -> None:
        self.processed.append(frame)


def delivery_frames(
    tag: int,
    body: bytes,
    *,
    channel: int = CHANNEL,
    key: str = "finding.nmap",
    headers: dict[str, Any] | None = None,
    frame_max: int = 4096,
) -> bytes:
    method = pika.spec.Basic.Deliver(
        consumer_tag="ctag-1",
        delivery_tag=tag,
        redelivered=tag % 2 == 0,
        exchange="scanfleet.findings",
        routing_key=key,
    )
    properties = pika.spec.BasicProperties(
        delivery_mode=2, content_type="application/json", headers=headers
    )
    out = [
        pika.frame.Method(channel, method).marshal(),
        pika.frame.Header(channel, len(body), properties).marshal(),
    ]
    for start in range(0, len(body), frame_max):
        out.append(pika.frame.Body(channel, body[start : start + frame_max]).marshal())
    return b"".join(out)


def reader_with(connection: FakeConnection) -> tuple[DeliveryReader, list[tuple[Any, ...]]]:
    got: list[tuple[Any, ...]] = []
    reader = DeliveryReader(connection, CHANNEL, lambda *args: got.append(args))
    return reader, got


def test_deliveries_in_any_chunking_come_out_whole_and_in_order() -> None:
    stream = b"".join(
        [
            delivery_frames(1, b'{"a": 1}'),
            delivery_frames(2, b"x" * 10_000, key="finding.zap"),  # three body frames
            delivery_frames(3, b""),
            delivery_frames(4, b"\xce" * 50, headers={"x-retry": 2, "origin": "dlq"}),
        ]
    )
    expected = [
        (1, "finding.nmap", None, b'{"a": 1}'),
        (2, "finding.zap", None, b"x" * 10_000),
        (3, "finding.nmap", None, b""),
        (4, "finding.nmap", {"x-retry": 2, "origin": "dlq"}, b"\xce" * 50),
    ]
    for chunk in (1, 7, 100, 4096, len(stream)):
        connection = FakeConnection()
        reader, got = reader_with(connection)
        for start in range(0, len(stream), chunk):
            reader.data_received(stream[start : start + chunk])
        assert got == expected
        assert connection.bytes_received == len(stream)
        assert connection.processed == []
        assert connection.frames_received == 3 + 5 + 2 + 3  # method, header, bodies


def test_other_frames_go_to_pika_in_order() -> None:
    ack = pika.frame.Method(2, pika.spec.Basic.Ack(delivery_tag=9))
    cancel_ok = pika.frame.Method(CHANNEL, pika.spec.Basic.CancelOk(consumer_tag="ctag-1"))
    other_channel = delivery_frames(5, b"elsewhere", channel=2)
    stream = b"".join(
        [
            ack.marshal(),
            delivery_frames(1, b"one"),
            pika.frame.Heartbeat().marshal(),
            cancel_ok.marshal(),
            other_channel,
        ]
    )
    connection = FakeConnection()
    reader, got = reader_with(connection)
    reader.data_received(stream)
    assert got == [(1, "finding.nmap", None, b"one")]
    kinds = [type(f).__name__ for f in connection.processed]
    assert kinds == ["Method", "Heartbeat", "Method", "Method", "Header", "Body"]
    assert connection.processed[0].method.delivery_tag == 9
    assert isinstance(connection.processed[2].method, pika.spec.Basic.CancelOk)
    assert connection.processed[5].fragment == b"elsewhere"
    assert connection.bytes_received == len(stream)


def test_a_partial_frame_pika_already_held_is_taken_over() -> None:
    stream = delivery_frames(7, b"body")
    connection = FakeConnection(leftover=stream[:10])
    reader, got = reader_with(connection)
    assert connection._frame_buffer == b""
    reader.data_received(stream[10:])
    assert got == [(7, "finding.nmap", None, b"body")]


def test_a_corrupt_frame_end_is_a_protocol_error() -> None:
    stream = bytearray(delivery_frames(1, b"body"))
    stream[-1] = 0
    reader, _ = reader_with(FakeConnection())
    with pytest.raises(pika.exceptions.InvalidFrameError):
        reader.data_received(bytes(stream))
