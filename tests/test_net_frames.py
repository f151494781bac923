"""Frames and the message envelope: exact bytes, limits, and one error class per failure."""

from __future__ import annotations

import asyncio
import struct

import pytest

from consortia import codec
from consortia.net import frames
from consortia.net.frames import (
    EmptyFrameError,
    EnvelopeError,
    FrameError,
    FrameTooLargeError,
    Message,
    PayloadDecodeError,
    TruncatedFrameError,
)


def _frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def _reader(data: bytes, *, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


def test_frame_bytes_are_length_then_canonical_cbor() -> None:
    assert frames.encode_frame(1) == b"\x00\x00\x00\x01\x01"
    value = {"type": "vote", "body": [1, b"\x00", "x"]}
    data = frames.encode_frame(value)
    assert data[:4] == struct.pack(">I", len(data) - 4)
    assert data[4:] == codec.encode(value)


def test_decode_frame_round_trip_and_leaves_the_rest() -> None:
    a, b = frames.encode_frame({"n": 1}), frames.encode_frame([b"x" * 300])
    value, rest = frames.decode_frame(a + b)
    assert value == {"n": 1}
    assert rest == b
    value, rest = frames.decode_frame(rest)
    assert value == [b"x" * 300]
    assert rest == b""


def test_all_frame_errors_share_one_base() -> None:
    for cls in (
        FrameTooLargeError,
        EmptyFrameError,
        TruncatedFrameError,
        PayloadDecodeError,
        EnvelopeError,
    ):
        assert issubclass(cls, FrameError)


def test_oversize_is_refused_on_both_ends() -> None:
    with pytest.raises(FrameTooLargeError):
        frames.encode_frame(b"x" * 100, max_payload=50)
    # The declared length alone is enough to refuse: no payload needed, nothing buffered.
    with pytest.raises(FrameTooLargeError):
        frames.decode_frame(struct.pack(">I", 51), max_payload=50)
    with pytest.raises(FrameTooLargeError):
        frames.parse_header(b"\xff\xff\xff\xff")
    assert frames.parse_header(struct.pack(">I", frames.DEFAULT_MAX_PAYLOAD)) == (
        frames.DEFAULT_MAX_PAYLOAD
    )
    with pytest.raises(FrameTooLargeError):
        frames.parse_header(struct.pack(">I", frames.DEFAULT_MAX_PAYLOAD + 1))


def test_default_limit_fits_a_maximum_block_in_an_envelope() -> None:
    body = b"\x00" * (codec.DEFAULT_MAX_SIZE - 16)
    data = frames.encode_message(Message("block", body))
    value, _ = frames.decode_frame(data)
    assert frames.message_from_cbor(value).body == body


def test_truncated_and_empty_frames() -> None:
    with pytest.raises(TruncatedFrameError):
        frames.decode_frame(b"\x00\x00")
    with pytest.raises(TruncatedFrameError):
        frames.decode_frame(_frame(codec.encode("hello"))[:-1])
    with pytest.raises(EmptyFrameError):
        frames.decode_frame(b"\x00\x00\x00\x00")


@pytest.mark.parametrize(
    "payload",
    [
        b"\x18\x01",  # 1 with a non-shortest head
        b"\xa2\x61b\x01\x61a\x02",  # map keys out of canonical order
        b"\xf9\x3c\x00",  # a float
        b"\x9f\x01\xff",  # indefinite-length array
        b"\x01\x01",  # two items in one payload
        b"\xff\xfe\xfd",  # not CBOR at all
        b"\x62\xc3\x28",  # invalid UTF-8
    ],
)
def test_non_canonical_or_invalid_payload_is_refused(payload: bytes) -> None:
    with pytest.raises(PayloadDecodeError):
        frames.decode_frame(_frame(payload))


def test_nesting_limit() -> None:
    nested = b"\x81" * 10 + b"\x01"
    assert frames.decode_frame(_frame(nested), max_depth=10)[0] is not None
    with pytest.raises(PayloadDecodeError):
        frames.decode_frame(_frame(nested), max_depth=9)


def test_read_frame_from_a_stream() -> None:
    async def main() -> None:
        data = frames.encode_frame("a") + frames.encode_frame({"b": 2})
        reader = _reader(data)
        assert await frames.read_frame(reader) == "a"
        assert await frames.read_frame(reader) == {"b": 2}
        assert await frames.read_frame(reader) is None  # clean end between frames

        with pytest.raises(TruncatedFrameError):
            await frames.read_frame(_reader(b"\x00\x00"))
        with pytest.raises(TruncatedFrameError):
            await frames.read_frame(_reader(b"\x00\x00\x00\x05\x01"))
        # Oversize: refused from the header alone, while the stream is still open.
        with pytest.raises(FrameTooLargeError):
            await frames.read_frame(_reader(b"\x7f\xff\xff\xff", eof=False), max_payload=1024)
        with pytest.raises(PayloadDecodeError):
            await frames.read_frame(_reader(_frame(b"\x18\x01")))

    asyncio.run(main())


@pytest.mark.parametrize("name", ["", "Vote", "1vote", "x" * 65, "vo te", "héllo", "a/b"])
def test_bad_type_names(name: str) -> None:
    with pytest.raises(EnvelopeError):
        Message(name, None)


def test_type_name_limit_is_inclusive() -> None:
    assert Message("v" * frames.MAX_TYPE_LEN).type == "v" * 64
    assert Message("block.part-2_x").type == "block.part-2_x"


@pytest.mark.parametrize(
    "value",
    [
        [1, 2],
        {"type": "vote"},
        {"type": "vote", "body": 1, "extra": 2},
        {"type": 7, "body": 1},
        {"type": "Bad Name", "body": 1},
    ],
)
def test_envelope_shape_is_strict(value: object) -> None:
    with pytest.raises(EnvelopeError):
        frames.message_from_cbor(value)


def test_message_round_trip_through_a_stream() -> None:
    async def main() -> None:
        msg = Message("tx", {"nonce": 3, "data": b"\x01\x02"})
        data = frames.encode_message(msg)
        got = await frames.read_message(_reader(data))
        assert got == (msg, len(data) - 4)
        with pytest.raises(EnvelopeError):
            await frames.read_message(_reader(frames.encode_frame([1])))

    asyncio.run(main())
