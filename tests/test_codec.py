"""Deterministic CBOR: published vectors, strict decoding, struct schema checks."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consortia import codec
from tests.conftest import load_vector


def _vectors() -> list[dict[str, object]]:
    return list(load_vector("cbor_deterministic.json")["examples"])


@pytest.mark.parametrize("example", _vectors(), ids=lambda e: str(e["hex"]))
def test_published_vectors_encode_and_decode(example: dict[str, object]) -> None:
    value = (
        bytes.fromhex(str(example["value_bytes_hex"]))
        if "value_bytes_hex" in example
        else example["value"]
    )
    expected = bytes.fromhex(str(example["hex"]))
    assert codec.encode(value) == expected
    assert codec.decode(expected) == value


@pytest.mark.parametrize(
    ("hex_input", "error"),
    [
        ("1817", codec.NonCanonicalError),  # 23 in two bytes
        ("190017", codec.NonCanonicalError),
        ("1a000000ff", codec.NonCanonicalError),
        ("1b00000000ffffffff", codec.NonCanonicalError),
        ("5801ff", codec.NonCanonicalError),  # 1-byte string with a long length
        ("9fff", codec.UnsupportedItemError),  # indefinite array
        ("5f41ff", codec.UnsupportedItemError),  # indefinite byte string
        ("a2616201616101", codec.NonCanonicalError),  # keys b, a: out of order
        ("a2616101616102", codec.DuplicateKeyError),
        ("f93c00", codec.UnsupportedItemError),  # half float 1.0
        ("fb3ff0000000000000", codec.UnsupportedItemError),
        ("c11a514b67b0", codec.UnsupportedItemError),  # tag 1
        ("f7", codec.UnsupportedItemError),  # undefined
        ("62c328", codec.InvalidUtf8Error),
        ("0000", codec.TrailingBytesError),
        ("", codec.TruncatedInputError),
        ("8301", codec.TruncatedInputError),
        ("5affffffff00", codec.TruncatedInputError),  # huge declared length, no allocation
        ("1c", codec.CodecError),  # reserved additional info
    ],
)
def test_strict_decoder_rejects(hex_input: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        codec.decode(bytes.fromhex(hex_input))


def test_size_and_depth_limits() -> None:
    with pytest.raises(codec.OversizeInputError):
        codec.decode(codec.encode(b"x" * 100), max_size=50)
    deep: object = 0
    for _ in range(40):
        deep = [deep]
    raw = bytes([0x81] * 40) + b"\x00"
    with pytest.raises(codec.NestingTooDeepError):
        codec.decode(raw)
    with pytest.raises(codec.NestingTooDeepError):
        codec.encode(deep)


def test_encoder_refuses_values_outside_the_model() -> None:
    for bad in (1.5, 1 << 64, -(1 << 64) - 1, {1, 2}, object()):
        with pytest.raises(codec.EncodeError):
            codec.encode(bad)


def test_map_keys_sorted_by_encoded_bytes() -> None:
    # "b" (0x6162) sorts before "aa" (0x626161): shorter encodings first (length-first is implied).
    assert codec.encode({"aa": 1, "b": 2}) == bytes.fromhex("a261620262616101")
    assert codec.encode({10: 0, -1: 0, 100: 0}) == bytes.fromhex("a30a00186400" + "2000")


cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 64), max_value=(1 << 64) - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=8) | st.integers(-100, 100), children, max_size=5)
    ),
    max_leaves=30,
)


@given(cbor_values)
def test_roundtrip_and_canonical(value: object) -> None:
    raw = codec.encode(value)
    assert codec.decode(raw) == value
    assert codec.encode(codec.decode(raw)) == raw


@given(cbor_values, st.data())
def test_single_byte_tamper_never_yields_a_different_canonical_encoding_of_the_same_value(
    value: object, data: st.DataObject
) -> None:
    raw = bytearray(codec.encode(value))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    try:
        decoded = codec.decode(bytes(raw))
    except codec.CodecError:
        return
    # If it still decodes, the tampered bytes must be the canonical encoding of what they decode
    # to; since they differ from the original encoding, they encode a *different* value.
    assert codec.encode(decoded) == bytes(raw)
    assert codec.encode(decoded) != codec.encode(value)


@dataclass(frozen=True)
class Inner:
    n: int
    tag: str


@dataclass(frozen=True)
class Outer:
    name: str
    blob: bytes
    flag: bool
    items: tuple[Inner, ...]
    maybe: int | None

    def __post_init__(self) -> None:
        if len(self.blob) > 8:
            raise ValueError("blob longer than 8 bytes")


def _outer() -> Outer:
    return Outer("x", b"\x01", True, (Inner(1, "a"), Inner(2, "b")), None)


def test_struct_roundtrip() -> None:
    raw = codec.encode_struct(_outer())
    assert codec.decode_struct(Outer, raw) == _outer()


def test_struct_rejects_unknown_missing_and_wrong_types() -> None:
    base = codec.to_cbor(_outer())
    with pytest.raises(codec.UnknownFieldError):
        codec.decode_struct(Outer, codec.encode({**base, "extra": 1}))
    missing = dict(base)
    del missing["flag"]
    with pytest.raises(codec.MissingFieldError):
        codec.decode_struct(Outer, codec.encode(missing))
    with pytest.raises(codec.WrongTypeError):
        codec.decode_struct(Outer, codec.encode({**base, "flag": 1}))  # int is not bool
    with pytest.raises(codec.WrongTypeError):
        codec.decode_struct(Outer, codec.encode({**base, "blob": "text"}))
    with pytest.raises(codec.WrongTypeError):
        codec.decode_struct(Outer, codec.encode({**base, "items": [{"n": True, "tag": "a"}]}))
    with pytest.raises(codec.WrongTypeError):  # __post_init__ validation
        codec.decode_struct(Outer, codec.encode({**base, "blob": b"123456789"}))


def test_struct_rejects_tampered_encoding() -> None:
    raw = bytearray(codec.encode_struct(_outer()))
    # Replace the 1-byte head of the "maybe" null with a non-shortest integer form of 0.
    tampered = bytes(raw).replace(b"\x65maybe\xf6", b"\x65maybe\x18\x00")
    with pytest.raises(codec.NonCanonicalError):
        codec.decode_struct(Outer, tampered)
