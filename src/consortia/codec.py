"""Deterministic CBOR (RFC 8949 §4.2, "core deterministic encoding") for all hashed/signed data.

Why our own codec: everything a signature or a hash covers must have exactly one encoding, and a
decoder for signed data must refuse every other encoding of the same value. The data model is the
subset consensus needs and nothing more:

    None, bool, int (-2**64 .. 2**64-1), bytes, str, list/tuple (encoded as arrays), dict (maps)

Floats, tags, undefined, simple values and indefinite lengths are refused in both directions: floats
are not deterministic across platforms, and the rest have no meaning in our wire types.

Guarantees:
- ``encode`` produces shortest-form heads, definite lengths, and map keys sorted by the bytewise
  lexicographic order of their encodings (§4.2.1).
- ``decode`` accepts exactly the bytes ``encode`` would produce for the value it returns; anything
  else (non-shortest heads, unsorted or duplicate keys, invalid UTF-8, trailing bytes, oversize
  input, nesting deeper than ``max_depth``) raises a specific ``CodecError`` subclass.
- ``encode_struct``/``decode_struct`` map frozen dataclasses to CBOR maps keyed by field name and
  back, rejecting unknown fields, missing fields and wrong types, and re-encoding the decoded value
  to compare it with the input bytes.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, Union

CborValue = Any  # None | bool | int | bytes | str | list[CborValue] | dict[CborValue, CborValue]

# 4 MiB: larger than any block we accept, small enough to bound the work of one decode.
DEFAULT_MAX_SIZE = 4 * 1024 * 1024
DEFAULT_MAX_DEPTH = 32
_UINT64_MAX = (1 << 64) - 1
_NINT64_MIN = -(1 << 64)

_MT_UINT, _MT_NINT, _MT_BYTES, _MT_TEXT, _MT_ARRAY, _MT_MAP, _MT_TAG, _MT_SIMPLE = range(8)


class CodecError(ValueError):
    """Base class: the bytes are not a canonical encoding of a value we accept."""


class TruncatedInputError(CodecError):
    """The input ended in the middle of an item."""


class TrailingBytesError(CodecError):
    """Bytes follow the single top-level item."""


class OversizeInputError(CodecError):
    """The input (or a declared length inside it) exceeds the size limit."""


class NestingTooDeepError(CodecError):
    """Arrays/maps are nested deeper than the depth limit."""


class NonCanonicalError(CodecError):
    """The item is valid CBOR but not its deterministic encoding."""


class UnsupportedItemError(CodecError):
    """Floats, tags, simple values, undefined or indefinite lengths: outside our data model."""


class DuplicateKeyError(CodecError):
    """A map holds the same key twice."""


class InvalidUtf8Error(CodecError):
    """A text string is not valid UTF-8."""


class EncodeError(CodecError):
    """A Python value cannot be encoded (unsupported type or out-of-range integer)."""


class SchemaError(CodecError):
    """Decoded data does not match the expected structure (base of the three below)."""


class UnknownFieldError(SchemaError):
    """A map carries a field the structure does not define."""


class MissingFieldError(SchemaError):
    """A map lacks a field the structure requires."""


class WrongTypeError(SchemaError):
    """A field holds a value of the wrong type."""


# ---------------------------------------------------------------------------------------------
# Encoding


# One-byte heads for arguments 0..23, per major type: the common case on every hot path.
_SMALL_HEADS = tuple(tuple(bytes(((mt << 5) | a,)) for a in range(24)) for mt in range(8))
# Text keys repeat endlessly (field names): memoize their encodings, bounded.
_KEY_CACHE: dict[str, bytes] = {}
_KEY_CACHE_LIMIT = 4096


def _head(major: int, arg: int) -> bytes:
    if arg < 24:
        return _SMALL_HEADS[major][arg]
    mt = major << 5
    if arg < 0x100:
        return bytes((mt | 24, arg))
    if arg < 0x10000:
        return struct.pack(">BH", mt | 25, arg)
    if arg < 0x100000000:
        return struct.pack(">BI", mt | 26, arg)
    return struct.pack(">BQ", mt | 27, arg)


def _encode_text(value: str) -> bytes:
    cached = _KEY_CACHE.get(value)
    if cached is None:
        b = value.encode("utf-8")
        cached = _head(_MT_TEXT, len(b)) + b
        if len(_KEY_CACHE) < _KEY_CACHE_LIMIT and len(b) <= 64:
            _KEY_CACHE[value] = cached
    return cached


def _encode_map_key(key: CborValue, depth: int) -> bytes:
    if type(key) is str:
        return _encode_text(key)
    kb: list[bytes] = []
    _encode_into(kb, key, depth)
    return b"".join(kb)


def _encode_into(out: list[bytes], value: CborValue, depth: int) -> None:
    if depth > DEFAULT_MAX_DEPTH:
        raise NestingTooDeepError(f"value nested deeper than {DEFAULT_MAX_DEPTH} levels")
    t = type(value)
    # Exact-type fast paths first (bool is a subclass of int, so exact checks keep them apart).
    if t is str:
        out.append(_encode_text(value))
    elif t is bytes:
        out.append(_head(_MT_BYTES, len(value)))
        out.append(value)
    elif t is int:
        if 0 <= value <= _UINT64_MAX:
            out.append(_head(_MT_UINT, value))
        elif _NINT64_MIN <= value < 0:
            out.append(_head(_MT_NINT, -1 - value))
        else:
            raise EncodeError(f"integer {value} outside the 64-bit CBOR range")
    elif t is dict:
        pairs = sorted((_encode_map_key(k, depth + 1), v) for k, v in value.items())
        for i in range(1, len(pairs)):
            if pairs[i][0] == pairs[i - 1][0]:
                raise EncodeError("map has two keys with the same encoding")
        out.append(_head(_MT_MAP, len(pairs)))
        for kbytes, v in pairs:
            out.append(kbytes)
            _encode_into(out, v, depth + 1)
    elif t is list or t is tuple:
        out.append(_head(_MT_ARRAY, len(value)))
        for item in value:
            _encode_into(out, item, depth + 1)
    elif t is EncodedItem:
        out.append(value.data)
    elif value is None:
        out.append(b"\xf6")
    elif value is True:
        out.append(b"\xf5")
    elif value is False:
        out.append(b"\xf4")
    elif isinstance(value, int):  # IntEnum and other int subclasses: their integer value
        _encode_into(out, int(value), depth)
    elif isinstance(value, bytearray | memoryview):
        _encode_into(out, bytes(value), depth)
    elif isinstance(value, str):
        _encode_into(out, str(value), depth)
    elif isinstance(value, list | tuple):
        _encode_into(out, list(value), depth)
    elif isinstance(value, dict):
        _encode_into(out, dict(value), depth)
    else:
        raise EncodeError(f"cannot encode a value of type {type(value).__name__}")


def encode(value: CborValue) -> bytes:
    """Return the deterministic CBOR encoding of ``value``; ``EncodeError`` if unsupported."""
    out: list[bytes] = []
    _encode_into(out, value, 0)
    return b"".join(out)


# ---------------------------------------------------------------------------------------------
# Decoding


class _Decoder:
    __slots__ = ("data", "max_depth", "pos")

    def __init__(self, data: bytes, max_depth: int) -> None:
        self.data = data
        self.pos = 0
        self.max_depth = max_depth

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise TruncatedInputError(f"input ends at byte {len(self.data)}, item needs {end}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def _argument(self, info: int) -> int:
        """Read a head's argument, insisting on the shortest form (RFC 8949 §4.2.1)."""
        if info < 24:
            return info
        if info == 24:
            arg = self._take(1)[0]
            if arg < 24:
                raise NonCanonicalError(f"non-shortest argument {arg} at byte {self.pos - 2}")
            return arg
        if info == 25:
            arg = struct.unpack(">H", self._take(2))[0]
            if arg < 0x100:
                raise NonCanonicalError(f"non-shortest argument {arg} at byte {self.pos - 3}")
            return int(arg)
        if info == 26:
            arg = struct.unpack(">I", self._take(4))[0]
            if arg < 0x10000:
                raise NonCanonicalError(f"non-shortest argument {arg} at byte {self.pos - 5}")
            return int(arg)
        if info == 27:
            arg = struct.unpack(">Q", self._take(8))[0]
            if arg < 0x100000000:
                raise NonCanonicalError(f"non-shortest argument {arg} at byte {self.pos - 9}")
            return int(arg)
        if info == 31:
            raise UnsupportedItemError(f"indefinite-length item at byte {self.pos - 1}")
        raise CodecError(f"reserved additional information {info} at byte {self.pos - 1}")

    def _length(self, info: int) -> int:
        n = self._argument(info)
        if n > len(self.data) - self.pos:
            # A declared length can never exceed what is left: refuse before allocating anything.
            raise TruncatedInputError(f"declared length {n} exceeds the remaining input")
        return n

    def item(self, depth: int) -> CborValue:
        if depth > self.max_depth:
            raise NestingTooDeepError(f"nesting deeper than {self.max_depth} levels")
        start = self.pos
        ib = self._take(1)[0]
        major, info = ib >> 5, ib & 0x1F
        if major == _MT_UINT:
            return self._argument(info)
        if major == _MT_NINT:
            return -1 - self._argument(info)
        if major == _MT_BYTES:
            return self._take(self._length(info))
        if major == _MT_TEXT:
            raw = self._take(self._length(info))
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidUtf8Error(f"invalid UTF-8 in text string at byte {start}") from exc
        if major == _MT_ARRAY:
            n = self._length(info)
            return [self.item(depth + 1) for _ in range(n)]
        if major == _MT_MAP:
            n = self._length(info)
            result: dict[CborValue, CborValue] = {}
            prev_key: bytes | None = None
            for _ in range(n):
                key_start = self.pos
                key = self.item(depth + 1)
                key_bytes = self.data[key_start : self.pos]
                if prev_key is not None:
                    if key_bytes == prev_key:
                        raise DuplicateKeyError(f"duplicate map key at byte {key_start}")
                    if key_bytes < prev_key:
                        raise NonCanonicalError(f"map keys out of order at byte {key_start}")
                prev_key = key_bytes
                if isinstance(key, list | dict):
                    raise UnsupportedItemError(f"array or map as a map key at byte {key_start}")
                result[key] = self.item(depth + 1)
            return result
        if major == _MT_TAG:
            raise UnsupportedItemError(f"tagged item at byte {start}")
        # major 7: only false, true and null belong to our data model.
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22:
            return None
        if info in (25, 26, 27):
            raise UnsupportedItemError(f"floating-point number at byte {start}")
        if info == 31:
            raise UnsupportedItemError(f"break code outside an indefinite item at byte {start}")
        raise UnsupportedItemError(f"simple value {info} at byte {start}")


def decode(
    data: bytes, *, max_size: int = DEFAULT_MAX_SIZE, max_depth: int = DEFAULT_MAX_DEPTH
) -> CborValue:
    """Decode exactly one canonical CBOR item, or raise a specific ``CodecError``.

    Byte strings come back as ``bytes``, arrays as ``list``, maps as ``dict``.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_size:
        raise OversizeInputError(f"input of {len(data)} bytes exceeds the limit of {max_size}")
    if not data:
        raise TruncatedInputError("empty input")
    dec = _Decoder(data, max_depth)
    value = dec.item(0)
    if dec.pos != len(data):
        raise TrailingBytesError(f"{len(data) - dec.pos} bytes follow the item at byte {dec.pos}")
    return value


# ---------------------------------------------------------------------------------------------
# Frozen dataclasses <-> CBOR maps, with strict schema checks


T = TypeVar("T")


_NAMES_CACHE: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _NAMES_CACHE.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls))
        _NAMES_CACHE[cls] = names
    return names


@dataclass(frozen=True, slots=True)
class EncodedItem:
    """An item whose canonical encoding is already known: the encoder copies ``data`` verbatim.

    Lets a value that memoizes its own encoding (a transaction inside a block) be encoded once,
    however many larger structures include it.
    """

    data: bytes


def fields_to_cbor(value: Any) -> dict[str, CborValue]:
    """A dataclass value as the map of its fields (never its own memoized encoding)."""
    return {name: _nested(getattr(value, name)) for name in _field_names(type(value))}


def to_cbor(value: Any) -> CborValue:
    """Convert dataclasses, enums, tuples and plain data into the CBOR data model.

    A top-level dataclass becomes the map of its fields. A *nested* dataclass with a
    ``cbor_encoding()`` method contributes that (memoized, canonical) encoding as an
    ``EncodedItem``, so e.g. a transaction inside a block is encoded once, not once per use.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return fields_to_cbor(value)
    return _nested(value)


def _nested(value: Any) -> CborValue:
    t = type(value)
    if t is str or t is bytes or t is int or t is bool or value is None:
        return value
    if t is tuple or t is list:
        return [_nested(v) for v in value]
    if t is dict:
        return {k: _nested(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cached = getattr(value, "cbor_encoding", None)
        if cached is not None:
            return EncodedItem(cached())
        return fields_to_cbor(value)
    if isinstance(value, tuple | list):
        return [_nested(v) for v in value]
    if isinstance(value, dict):
        return {k: _nested(v) for k, v in value.items()}
    return value


def encode_struct(value: Any) -> bytes:
    """Deterministic CBOR of a dataclass value (a map keyed by field name)."""
    return encode(to_cbor(value))


_FIELD_CACHE: dict[type, tuple[tuple[str, Any], ...]] = {}


def _field_types(cls: type) -> tuple[tuple[str, Any], ...]:
    cached = _FIELD_CACHE.get(cls)
    if cached is None:
        hints = typing.get_type_hints(cls)
        cached = tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls))
        _FIELD_CACHE[cls] = cached
    return cached


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def from_cbor(tp: Any, obj: CborValue, where: str = "value") -> Any:
    """Build a value of type ``tp`` from decoded CBOR, checking every field and type strictly.

    Supported: int, bool, str, bytes, None, ``X | None``, ``tuple[X, ...]``, ``dict[str, X]``,
    IntEnum/StrEnum subclasses, nested dataclasses, and ``CborValue`` (Any: passed through).
    """
    if tp is Any:
        return obj
    if tp is type(None) or tp is None:
        if obj is not None:
            raise WrongTypeError(f"{where}: expected null")
        return None
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = typing.get_args(tp)
        if obj is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return from_cbor(arg, obj, where)
            except SchemaError as exc:
                errors.append(str(exc))
        raise WrongTypeError("; ".join(errors) or f"{where}: no alternative matched")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(obj, list):
            raise WrongTypeError(f"{where}: expected an array, got {_kind(obj)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_cbor(args[0], v, f"{where}[{i}]") for i, v in enumerate(obj))
        if len(obj) != len(args):
            raise WrongTypeError(f"{where}: expected {len(args)} items, got {len(obj)}")
        return tuple(
            from_cbor(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, obj, strict=True))
        )
    if origin is dict or origin is Mapping:
        kt, vt = typing.get_args(tp)
        if not isinstance(obj, dict):
            raise WrongTypeError(f"{where}: expected a map, got {_kind(obj)}")
        return {
            from_cbor(kt, k, f"{where} key"): from_cbor(vt, v, f"{where}[{k!r}]")
            for k, v in obj.items()
        }
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            return _struct_from_cbor(tp, obj, where)
        if issubclass(tp, enum.Enum):
            try:
                return tp(obj)
            except ValueError as exc:
                raise WrongTypeError(f"{where}: {obj!r} is not a valid {tp.__name__}") from exc
        if tp is bool:
            if not isinstance(obj, bool):
                raise WrongTypeError(f"{where}: expected a boolean, got {_kind(obj)}")
            return obj
        if tp is int:
            if not isinstance(obj, int) or isinstance(obj, bool):
                raise WrongTypeError(f"{where}: expected an integer, got {_kind(obj)}")
            return obj
        if tp is str or tp is bytes:
            if type(obj) is not tp:
                raise WrongTypeError(f"{where}: expected {_type_name(tp)}, got {_kind(obj)}")
            return obj
    raise SchemaError(f"{where}: unsupported schema type {_type_name(tp)}")


def _kind(obj: CborValue) -> str:
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "boolean"
    names = {int: "integer", bytes: "byte string", str: "text string", list: "array", dict: "map"}
    return names.get(type(obj), type(obj).__name__)


def _struct_from_cbor(cls: type[T], obj: CborValue, where: str) -> T:
    if not isinstance(obj, dict):
        raise WrongTypeError(f"{where}: expected a {cls.__name__} map, got {_kind(obj)}")
    spec = _field_types(cls)
    names = {name for name, _ in spec}
    for key in obj:
        if key not in names:
            raise UnknownFieldError(f"{where}: unknown field {key!r} in {cls.__name__}")
    kwargs = {}
    for name, ftype in spec:
        if name not in obj:
            raise MissingFieldError(f"{where}: {cls.__name__} lacks field {name!r}")
        kwargs[name] = from_cbor(ftype, obj[name], f"{where}.{name}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        # __post_init__ validators (lengths, ranges) report through the same error family.
        raise WrongTypeError(f"{where}: invalid {cls.__name__}: {exc}") from exc


def decode_struct(
    cls: type[T],
    data: bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> T:
    """Decode canonical bytes into ``cls``; the result re-encodes to exactly ``data``.

    Raises a ``CodecError`` subclass naming the first problem found.
    """
    obj = decode(data, max_size=max_size, max_depth=max_depth)
    value = _struct_from_cbor(cls, obj, cls.__name__)
    # Belt and braces: a signed structure must round-trip byte for byte.
    if encode_struct(value) != bytes(data):
        raise NonCanonicalError(f"{cls.__name__} does not re-encode to the same bytes")
    return value


def hex_dump(value: CborValue, render: Callable[[bytes], str] = bytes.hex) -> Any:
    """Make a decoded value JSON-friendly (bytes as hex) for display at the edges."""
    if isinstance(value, bytes):
        return render(value)
    if isinstance(value, EncodedItem):
        return hex_dump(decode(value.data), render)
    if isinstance(value, list | tuple):
        return [hex_dump(v, render) for v in value]
    if isinstance(value, dict):
        return {str(hex_dump(k, render)): hex_dump(v, render) for k, v in value.items()}
    return value


__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_SIZE",
    "CborValue",
    "CodecError",
    "DuplicateKeyError",
    "EncodeError",
    "InvalidUtf8Error",
    "MissingFieldError",
    "NestingTooDeepError",
    "NonCanonicalError",
    "OversizeInputError",
    "SchemaError",
    "TrailingBytesError",
    "TruncatedInputError",
    "UnknownFieldError",
    "UnsupportedItemError",
    "WrongTypeError",
    "decode",
    "decode_struct",
    "encode",
    "encode_struct",
    "fields_to_cbor",
    "from_cbor",
    "hex_dump",
    "to_cbor",
]
