"""The framing on its own: frames split anywhere, many in one read, refused headers."""

from __future__ import annotations

import pytest

from tcpdoor.frames import FrameBuffer, FramingError, MessageType, error_frame, frame


def test_frames_arrive_split_anywhere_and_many_in_one_read() -> None:
    stream = frame(0x01, b'{"product_id":"x"}') + frame(0x04, b"") + frame(0x03, b"{}")
    buffer = FrameBuffer(max_payload=64)
    taken = []
    for byte in stream:  # one byte per read: every split point
        buffer.feed(bytes([byte]))
        while (popped := buffer.pop()) is not None:
            taken.append(popped)
    together = FrameBuffer(max_payload=64)
    together.feed(stream)

    assert taken == [(0x01, b'{"product_id":"x"}'), (0x04, b""), (0x03, b"{}")]
    assert [together.pop(), together.pop(), together.pop(), together.pop()] == [*taken, None]
    assert buffer.holding == together.holding == 0


def test_a_header_is_refused_before_its_payload_arrives() -> None:
    over = FrameBuffer(max_payload=10)
    over.feed(b"\x01\x00\x00\x00\x0b")  # 11 bytes announced, none sent
    unknown = FrameBuffer(max_payload=10)
    unknown.feed(b"\x7f\x00\x00\x00\x00")  # ERROR is the server's, never a request

    with pytest.raises(FramingError, match="frame length 11 is over the maximum of 10 bytes"):
        over.pop()
    with pytest.raises(FramingError, match="unknown message type 0x7f"):
        unknown.pop()


def test_the_seeds_error_answer() -> None:
    assert (
        error_frame(MessageType.ERROR, "invalid json")
        == b'\x7f\x00\x00\x00\x29{"status":"ERROR","error":"invalid json"}'
    )
