"""A lean reader for the deliveries of one consuming channel of a pika connection.

pika decodes every inbound frame into objects (a ``Basic.Deliver`` method, a
``BasicProperties`` header, a body frame), routes each through the connection's and
the channel's callback tables and, in a ``BlockingConnection``, through a pending
event per message: ~30 µs of CPU per delivery, as much as validating the event.

:class:`DeliveryReader` sits in front of the connection's frame parser. It walks the
received bytes frame by frame; the content of a ``Basic.Deliver`` on the consuming
channel (method, header and body frames) is taken apart here and handed to a plain
callback, and every other frame (connection and channel control, heartbeats,
publisher confirms, anything on other channels) is decoded and processed by pika
exactly as before. pika still owns the connection: negotiation, heartbeats, flow
control, ``basic_qos``/``basic_consume``/``basic_ack``, closing and errors.

If the connection object does not have the internals this relies on (another pika
version), :func:`install` returns ``None`` and pika's own delivery path is used.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pika.exceptions
import pika.frame
import pika.spec

#: (tag, routing key, headers or None, body) of one delivery.
DeliveryCallback = Callable[[int, str, "dict[str, Any] | None", bytes], None]

_FRAME_HEADER = struct.Struct(">BHL")  # type, channel, payload size
_FRAME_HEADER_SIZE = 7
_FRAME_END = 0xCE
_FRAME_METHOD = 1
_FRAME_CONTENT_HEADER = 2
_FRAME_BODY = 3
_BASIC_DELIVER = (60 << 16) | 60  # class Basic, method Deliver
_METHOD_ID = struct.Struct(">I")
_DELIVERY_TAG = struct.Struct(">QB")  # delivery-tag, redelivered bit
_CONTENT_HEADER = struct.Struct(">HHQH")  # class, weight, body size, property flags
_HEADERS_FLAG = pika.spec.BasicProperties.FLAG_HEADERS

#: Bytes asked of the socket per read (pika's default is 4 KiB: a read per ~3 events).
RECV_BYTES = 128 * 1024

_REQUIRED_INTERNALS = ("_on_data_available", "_process_frame", "_frame_buffer", "bytes_received")


class DeliveryReader:
    """Parses the connection's inbound bytes; see the module documentation."""

    def __init__(self, impl: Any, channel_number: int, on_delivery: DeliveryCallback) -> None:
        self._impl = impl
        self._channel = channel_number
        self._on_delivery = on_delivery
        self._buffer = bytearray(impl._frame_buffer)  # a partial frame pika already holds
        impl._frame_buffer = b""
        # The delivery being assembled: its method was seen, header/body frames pending.
        self._tag = 0
        self._routing_key = ""
        self._headers: dict[str, Any] | None = None
        self._awaiting_header = False
        self._remaining = 0
        self._parts: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        impl = self._impl
        size = len(buffer)
        pos = 0
        try:
            while size - pos > _FRAME_HEADER_SIZE:
                frame_type, channel, payload_size = _FRAME_HEADER.unpack_from(buffer, pos)
                payload = pos + _FRAME_HEADER_SIZE
                end = payload + payload_size  # index of the frame-end octet
                if end >= size:
                    break  # the rest of this frame has not arrived yet
                if buffer[end] != _FRAME_END:
                    raise pika.exceptions.InvalidFrameError("Invalid FRAME_END marker")
                if channel == self._channel and self._take(frame_type, buffer, payload, end):
                    impl.frames_received += 1
                else:
                    consumed, frame = pika.frame.decode_frame(bytes(buffer[pos : end + 1]))
                    if frame is None or consumed != end + 1 - pos:
                        raise pika.exceptions.InvalidFrameError("undecodable frame")
                    impl._process_frame(frame)
                pos = end + 1
        finally:
            if pos:
                impl.bytes_received += pos
                del buffer[:pos]

    def _take(self, frame_type: int, buffer: bytearray, payload: int, end: int) -> bool:
        """Consume one frame of the consuming channel if it is delivery content."""
        if frame_type == _FRAME_BODY:
            if self._remaining <= 0 or self._awaiting_header:
                return False
            self._parts.append(bytes(buffer[payload:end]))
            self._remaining -= end - payload
            if self._remaining <= 0:
                parts = self._parts
                self._parts = []
                self._deliver(parts[0] if len(parts) == 1 else b"".join(parts))
            return True
        if frame_type == _FRAME_METHOD:
            if _METHOD_ID.unpack_from(buffer, payload)[0] != _BASIC_DELIVER:
                return False
            at = payload + 4
            at += 1 + buffer[at]  # consumer tag: there is one consumer on this channel
            self._tag = _DELIVERY_TAG.unpack_from(buffer, at)[0]
            at += 9
            at += 1 + buffer[at]  # exchange
            key_length = buffer[at]
            self._routing_key = buffer[at + 1 : at + 1 + key_length].decode()
            self._awaiting_header = True
            self._remaining = 0
            self._parts = []
            return True
        if frame_type == _FRAME_CONTENT_HEADER:
            if not self._awaiting_header:
                return False
            self._awaiting_header = False
            _class, _weight, body_size, flags = _CONTENT_HEADER.unpack_from(buffer, payload)
            if flags & _HEADERS_FLAG:
                properties = pika.spec.BasicProperties()
                properties.decode(bytes(buffer[payload + 12 : end]))
                self._headers = properties.headers
            else:
                self._headers = None
            self._remaining = body_size
            if body_size == 0:
                self._deliver(b"")
            return True
        return False

    def _deliver(self, body: bytes) -> None:
        self._remaining = 0
        self._on_delivery(self._tag, self._routing_key, self._headers, body)


def install(
    connection: pika.BlockingConnection, channel_number: int, on_delivery: DeliveryCallback
) -> DeliveryReader | None:
    """Route the deliveries of ``channel_number`` to ``on_delivery``; call before consuming.

    Returns ``None`` (and changes nothing) if this pika lacks the internals relied on.
    """
    impl = getattr(connection, "_impl", None)
    if impl is None or not all(hasattr(impl, name) for name in _REQUIRED_INTERNALS):
        return None
    reader = DeliveryReader(impl, channel_number, on_delivery)
    impl._on_data_available = reader.data_received  # an instance attribute shadows the method
    transport = getattr(impl, "_transport", None)
    if transport is not None and hasattr(transport, "_MAX_RECV_BYTES"):
        transport._MAX_RECV_BYTES = RECV_BYTES
    return reader
