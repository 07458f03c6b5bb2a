"""The seed's framing: TYPE (1 byte), LENGTH (4 bytes, big-endian), PAYLOAD (LENGTH bytes of
UTF-8 JSON). Both ends use this module: the server and ``python -m tcpdoor.client``.

It imports nothing from Django, so the client runs anywhere.
"""

from __future__ import annotations

import json
import struct
from enum import IntEnum
from typing import Any

HEADER = struct.Struct(">BI")
HEADER_SIZE = HEADER.size  # 5


class MessageType(IntEnum):
    """Message types. An answer carries its request's type; ERROR only answers a frame that
    broke the framing (the connection is closed after it)."""

    ATTEMPT_PURCHASE = 0x01
    CHALLENGE = 0x02
    SALE_STATUS = 0x03
    PING = 0x04
    JOIN_QUEUE = 0x05
    QUEUE_PLACE = 0x06
    ERROR = 0x7F


REQUEST_TYPES = frozenset(
    {
        MessageType.ATTEMPT_PURCHASE,
        MessageType.CHALLENGE,
        MessageType.SALE_STATUS,
        MessageType.PING,
        MessageType.JOIN_QUEUE,
        MessageType.QUEUE_PLACE,
    }
)


class FramingError(Exception):
    """The bytes no longer follow the framing (unknown type, length over the maximum): the
    peer is answered ERROR and the connection closed, since where the next frame starts is
    unknown."""


def frame(kind: int, payload: bytes) -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def json_frame(kind: int, body: dict[str, Any]) -> bytes:
    return frame(kind, json.dumps(body, separators=(",", ":")).encode())


def error_frame(kind: int, error: str) -> bytes:
    """The seed's ``{"status": "ERROR", "error": ...}``."""
    return json_frame(kind, {"status": "ERROR", "error": error})


class FrameBuffer:
    """Bytes received on one connection, cut into frames as they complete.

    Holds at most the frame being received plus what one read brought: the caller stops
    reading while it cannot take frames (see the server's pipelining limit).
    """

    __slots__ = ("_buffer", "_offset", "max_payload", "request_types")

    def __init__(self, *, max_payload: int, request_types: frozenset[int] = REQUEST_TYPES) -> None:
        self._buffer = bytearray()
        self._offset = 0
        self.max_payload = max_payload
        self.request_types = request_types

    def feed(self, data: bytes) -> None:
        if self._offset and self._offset == len(self._buffer):
            self._buffer.clear()
            self._offset = 0
        self._buffer += data

    @property
    def holding(self) -> int:
        """Bytes received and not yet taken as a frame: a frame begun, or frames waiting."""
        return len(self._buffer) - self._offset

    def pop(self) -> tuple[int, bytes] | None:
        """The next whole frame (type, payload), or None until more bytes arrive. Raises
        ``FramingError`` as soon as a header is wrong, before its payload arrives."""
        available = len(self._buffer) - self._offset
        if available < HEADER_SIZE:
            return None
        kind, length = HEADER.unpack_from(self._buffer, self._offset)
        if kind not in self.request_types:
            raise FramingError(f"unknown message type 0x{kind:02x}")
        if length > self.max_payload:
            raise FramingError(f"frame length {length} is over the maximum of {self.max_payload} bytes")
        end = self._offset + HEADER_SIZE + length
        if len(self._buffer) < end:
            return None
        payload = bytes(self._buffer[self._offset + HEADER_SIZE : end])
        self._offset = end
        if self._offset == len(self._buffer):
            self._buffer.clear()
            self._offset = 0
        elif self._offset > 65536:
            del self._buffer[: self._offset]
            self._offset = 0
        return kind, payload

    def clear(self) -> None:
        self._buffer.clear()
        self._offset = 0
