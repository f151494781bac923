"""Length-prefixed frames of deterministic CBOR, and the message envelope inside them.

Wire format of one frame::

    length: 4 bytes, big-endian, = len(payload), 1 .. max_payload
    payload: codec.encode(value) — canonical CBOR, exactly one item

The length is checked against ``max_payload`` *before* anything is read or allocated, so a peer
cannot make us buffer more than one maximum frame. Every way a frame can be bad has its own
``FrameError`` subclass; the transport drops the peer on any of them.

Every frame between two nodes carries an envelope ``{"body": <any CBOR>, "type": <str>}``.
Type names are short ASCII identifiers (``vote``, ``block.part``, ``net.ping``); ``net.*`` is
reserved for the transport itself.
"""

from __future__ import annotations

import asyncio
import re
import struct
from dataclasses import dataclass
from typing import Final

from consortia import codec
from consortia.codec import CborValue

HEADER_SIZE: Final = 4
# A block is at most codec.DEFAULT_MAX_SIZE (4 MiB) encoded; the envelope around it adds a few
# dozen bytes. 4 KiB of headroom keeps "the largest block fits in one frame" true.
DEFAULT_MAX_PAYLOAD: Final = codec.DEFAULT_MAX_SIZE + 4096
ABSOLUTE_MAX_PAYLOAD: Final = (1 << 32) - 1  # what 4 length bytes can say
MAX_TYPE_LEN: Final = 64
TYPE_RE: Final = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
RESERVED_PREFIX: Final = "net."


class FrameError(Exception):
    """Base class: the byte stream is not a valid sequence of frames / messages."""


class FrameTooLargeError(FrameError):
    """A declared (or to-be-sent) payload length exceeds the maximum frame size."""


class EmptyFrameError(FrameError):
    """A frame declares a zero-length payload (no CBOR item can be empty)."""


class TruncatedFrameError(FrameError):
    """The stream ended inside a frame header or payload."""


class PayloadDecodeError(FrameError):
    """The payload is not exactly one canonical CBOR item within the limits."""


class EnvelopeError(FrameError):
    """The payload decodes but is not a ``{"type", "body"}`` envelope with a valid type name."""


def _check_max(max_payload: int) -> None:
    if not 1 <= max_payload <= ABSOLUTE_MAX_PAYLOAD:
        raise ValueError(f"max_payload must be 1..{ABSOLUTE_MAX_PAYLOAD}, got {max_payload}")


def encode_frame(value: CborValue, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> bytes:
    """Header + canonical CBOR of ``value``; ``FrameTooLargeError`` if it would not be accepted."""
    _check_max(max_payload)
    payload = codec.encode(value)
    if len(payload) > max_payload:
        raise FrameTooLargeError(f"payload of {len(payload)} bytes exceeds {max_payload}")
    return struct.pack(">I", len(payload)) + payload


def parse_header(header: bytes, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> int:
    """The payload length a 4-byte header declares, checked against the limit."""
    if len(header) != HEADER_SIZE:
        raise TruncatedFrameError(f"frame header of {len(header)} bytes, need {HEADER_SIZE}")
    (length,) = struct.unpack(">I", header)
    if length == 0:
        raise EmptyFrameError("frame declares an empty payload")
    if length > max_payload:
        raise FrameTooLargeError(f"frame declares {length} bytes, limit is {max_payload}")
    return int(length)


def decode_payload(payload: bytes, *, max_depth: int = codec.DEFAULT_MAX_DEPTH) -> CborValue:
    try:
        return codec.decode(payload, max_size=len(payload), max_depth=max_depth)
    except codec.CodecError as exc:
        raise PayloadDecodeError(f"{type(exc).__name__}: {exc}") from exc


def decode_frame(
    data: bytes,
    *,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    max_depth: int = codec.DEFAULT_MAX_DEPTH,
) -> tuple[CborValue, bytes]:
    """Decode the first frame of ``data``; returns ``(value, remaining bytes)`` (no I/O)."""
    _check_max(max_payload)
    length = parse_header(bytes(data[:HEADER_SIZE]), max_payload=max_payload)
    end = HEADER_SIZE + length
    if len(data) < end:
        raise TruncatedFrameError(f"frame needs {end} bytes, have {len(data)}")
    return decode_payload(bytes(data[HEADER_SIZE:end]), max_depth=max_depth), bytes(data[end:])


async def read_payload(
    reader: asyncio.StreamReader, *, max_payload: int = DEFAULT_MAX_PAYLOAD
) -> bytes | None:
    """Read one frame's raw payload; ``None`` on a clean end of stream *between* frames.

    Reads at most ``HEADER_SIZE + max_payload`` bytes; the length is checked before the payload is
    read, so an oversize declaration costs nothing.
    """
    try:
        header = await reader.readexactly(HEADER_SIZE)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise TruncatedFrameError("stream ended inside a frame header") from exc
    length = parse_header(header, max_payload=max_payload)
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise TruncatedFrameError(
            f"stream ended after {len(exc.partial)} of {length} payload bytes"
        ) from exc


async def read_frame(
    reader: asyncio.StreamReader,
    *,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    max_depth: int = codec.DEFAULT_MAX_DEPTH,
) -> CborValue | None:
    """Read and decode one frame; ``None`` on a clean end of stream between frames."""
    payload = await read_payload(reader, max_payload=max_payload)
    return None if payload is None else decode_payload(payload, max_depth=max_depth)


# ---------------------------------------------------------------------------------------------
# Envelope


def check_type_name(name: str) -> str:
    if not isinstance(name, str) or not TYPE_RE.fullmatch(name):
        raise EnvelopeError(
            f"message type must match {TYPE_RE.pattern} (at most {MAX_TYPE_LEN} chars): {name!r}"
        )
    return name


@dataclass(frozen=True)
class Message:
    """One network message: a type name and a CBOR body (the node layer defines both)."""

    type: str
    body: CborValue = None

    def __post_init__(self) -> None:
        check_type_name(self.type)

    def to_cbor(self) -> CborValue:
        return {"type": self.type, "body": self.body}


def message_from_cbor(value: CborValue) -> Message:
    """The envelope in a decoded payload, or ``EnvelopeError``."""
    if not isinstance(value, dict) or set(value) != {"type", "body"}:
        raise EnvelopeError("payload is not a {type, body} map")
    return Message(check_type_name(value["type"]), value["body"])


def encode_message(msg: Message, *, max_payload: int = DEFAULT_MAX_PAYLOAD) -> bytes:
    return encode_frame(msg.to_cbor(), max_payload=max_payload)


async def read_message(
    reader: asyncio.StreamReader,
    *,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    max_depth: int = codec.DEFAULT_MAX_DEPTH,
) -> tuple[Message, int] | None:
    """Read one message and its payload size; ``None`` on a clean end of stream."""
    payload = await read_payload(reader, max_payload=max_payload)
    if payload is None:
        return None
    return message_from_cbor(decode_payload(payload, max_depth=max_depth)), len(payload)
