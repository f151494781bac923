"""Strict conversion between SM2 signatures as DER ``SEQUENCE { r INTEGER, s INTEGER }`` (what
gmssl_pyx speaks) and the fixed 64-byte ``r||s`` form (what consortia puts on the wire).

Why strict: a signature is hashed into transactions and blocks, so one signature must have exactly
one encoding. We accept only minimal DER (no leading zero bytes beyond the one a positive integer
needs, short-form lengths, nothing trailing) with 1 <= r, s < n.
"""

from __future__ import annotations

from consortia.crypto.errors import InvalidSignatureFormatError
from consortia.crypto.sm2_curve import N

RS_SIZE = 64
_HALF = RS_SIZE // 2
_TAG_SEQUENCE = 0x30
_TAG_INTEGER = 0x02
# Two INTEGERs of at most 33 bytes each: 70 content bytes, so lengths are always short-form (<128).
_MAX_INTEGER_LEN = _HALF + 1


def _in_range(value: int) -> bool:
    return 1 <= value < N


def _der_integer(value: int) -> bytes:
    # Minimal two's complement of a positive integer: big-endian magnitude, plus a 0x00 byte when
    # the top bit is set so it does not read as negative.
    body = value.to_bytes((value.bit_length() + 8) // 8, "big")
    return bytes((_TAG_INTEGER, len(body))) + body


def rs_to_der(signature: bytes) -> bytes:
    """Encode a 64-byte ``r||s`` signature as minimal DER.

    Raises InvalidSignatureFormatError unless the input is 64 bytes with 1 <= r, s < n.
    """
    r, s = split_rs(signature)
    body = _der_integer(r) + _der_integer(s)
    return bytes((_TAG_SEQUENCE, len(body))) + body


def split_rs(signature: bytes) -> tuple[int, int]:
    """Return (r, s) from a 64-byte ``r||s`` signature, checking 1 <= r, s < n.

    Raises InvalidSignatureFormatError otherwise.
    """
    if len(signature) != RS_SIZE:
        raise InvalidSignatureFormatError(f"SM2 signature must be {RS_SIZE} bytes r||s")
    r = int.from_bytes(signature[:_HALF], "big")
    s = int.from_bytes(signature[_HALF:], "big")
    if not (_in_range(r) and _in_range(s)):
        raise InvalidSignatureFormatError("SM2 signature r or s outside [1, n-1]")
    return r, s


def _read_integer(der: bytes, pos: int) -> tuple[int, int]:
    """Parse one minimal positive DER INTEGER at ``pos``; return (value, next position)."""
    if pos + 2 > len(der) or der[pos] != _TAG_INTEGER:
        raise InvalidSignatureFormatError("expected a DER INTEGER")
    length = der[pos + 1]
    start, end = pos + 2, pos + 2 + length
    if not 1 <= length <= _MAX_INTEGER_LEN or end > len(der):
        raise InvalidSignatureFormatError("DER INTEGER has a bad length")
    body = der[start:end]
    if body[0] & 0x80:
        raise InvalidSignatureFormatError("DER INTEGER is negative")
    if length > 1 and body[0] == 0 and not body[1] & 0x80:
        raise InvalidSignatureFormatError("DER INTEGER is not minimally encoded")
    return int.from_bytes(body, "big"), end


def der_to_rs(der: bytes) -> bytes:
    """Decode a strict minimal DER SM2 signature into 64-byte ``r||s``.

    Raises InvalidSignatureFormatError for anything else (wrong tags, long-form or inconsistent
    lengths, non-minimal or negative integers, trailing bytes, r or s outside [1, n-1]).
    """
    # der[1] < 0x80: the content is at most 70 bytes, so only the short length form is minimal.
    if len(der) < 2 or der[0] != _TAG_SEQUENCE or der[1] >= 0x80 or der[1] != len(der) - 2:
        raise InvalidSignatureFormatError("expected a DER SEQUENCE spanning the whole input")
    r, pos = _read_integer(der, 2)
    s, pos = _read_integer(der, pos)
    if pos != len(der):
        raise InvalidSignatureFormatError("bytes follow the two DER INTEGERs")
    if not (_in_range(r) and _in_range(s)):
        raise InvalidSignatureFormatError("SM2 signature r or s outside [1, n-1]")
    return r.to_bytes(_HALF, "big") + s.to_bytes(_HALF, "big")
