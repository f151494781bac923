"""The sealed-envelope wire format: a deterministic CBOR map, decoded strictly.

    {"v": 1, "suite": str, "recipients": [{"id": address, "key": wrapped key}, ...],
     "nonce": bytes, "ciphertext": bytes}

Everything except the ciphertext (the "header") is bound to the ciphertext as associated data, so
changing any recipient entry, the suite or the nonce makes decryption fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consortia import codec
from consortia.crypto.errors import SealCorruptedError

ENVELOPE_VERSION = 1
KEY_ID_SIZE = 20
MAX_SEAL_RECIPIENTS = 256
# With 256 recipients of ~150 bytes each, a 1 MiB payload keeps the envelope far below the codec's
# decode limit, so everything ``seal`` produces can be opened.
MAX_SEAL_PLAINTEXT = 1 << 20
_FIELDS = frozenset({"v", "suite", "recipients", "nonce", "ciphertext"})
_ENTRY_FIELDS = frozenset({"id", "key"})
_HEADER_DOMAIN = "consortia/seal/v1"


@dataclass(frozen=True)
class Envelope:
    """A parsed envelope; ``recipients`` is a tuple of (key id, wrapped content key)."""

    suite: str
    recipients: tuple[tuple[bytes, bytes], ...]
    nonce: bytes
    ciphertext: bytes

    def header(self) -> bytes:
        """The bytes authenticated as associated data: every field but the ciphertext."""
        entries = [[key_id, wrapped] for key_id, wrapped in self.recipients]
        return codec.encode([_HEADER_DOMAIN, ENVELOPE_VERSION, self.suite, entries, self.nonce])

    def encode(self) -> bytes:
        """The canonical CBOR encoding of the envelope."""
        return codec.encode(
            {
                "v": ENVELOPE_VERSION,
                "suite": self.suite,
                "recipients": [{"id": i, "key": k} for i, k in self.recipients],
                "nonce": self.nonce,
                "ciphertext": self.ciphertext,
            }
        )


@dataclass(frozen=True)
class EnvelopeLimits:
    """What one suite's envelopes must look like, checked while decoding."""

    suite: str
    nonce_size: int
    min_wrapped_size: int
    max_wrapped_size: int
    min_ciphertext_size: int


def _fail(reason: str) -> SealCorruptedError:
    return SealCorruptedError(f"sealed envelope: {reason}")


def _bytes_field(obj: dict[Any, Any], name: str) -> bytes:
    value = obj[name]
    if type(value) is not bytes:
        raise _fail(f"{name!r} must be a byte string")
    return value


def _decode_entry(entry: Any, limits: EnvelopeLimits) -> tuple[bytes, bytes]:
    if not isinstance(entry, dict) or set(entry) != _ENTRY_FIELDS:
        raise _fail("each recipient must be a map with exactly 'id' and 'key'")
    key_id = _bytes_field(entry, "id")
    wrapped = _bytes_field(entry, "key")
    if len(key_id) != KEY_ID_SIZE:
        raise _fail(f"recipient id must be {KEY_ID_SIZE} bytes")
    if not limits.min_wrapped_size <= len(wrapped) <= limits.max_wrapped_size:
        raise _fail("wrapped key has the wrong size")
    return key_id, wrapped


def _decode_recipients(value: Any, limits: EnvelopeLimits) -> tuple[tuple[bytes, bytes], ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_SEAL_RECIPIENTS:
        raise _fail(f"'recipients' must be an array of 1..{MAX_SEAL_RECIPIENTS} entries")
    recipients = tuple(_decode_entry(entry, limits) for entry in value)
    if len({key_id for key_id, _ in recipients}) != len(recipients):
        raise _fail("duplicate recipient id")
    return recipients


def decode_envelope(data: bytes, limits: EnvelopeLimits) -> Envelope:
    """Parse ``data`` as an envelope of ``limits.suite``.

    Guarantees: the result has exactly the fields above with the types and sizes ``limits`` demands,
    no duplicate recipient ids, and re-encodes to ``data`` byte for byte. Raises SealCorruptedError
    for anything else, including an envelope made for another suite.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _fail("expected bytes")
    try:
        obj = codec.decode(bytes(data))
    except codec.CodecError as exc:
        raise _fail(f"not canonical CBOR ({exc})") from exc
    if not isinstance(obj, dict) or set(obj) != _FIELDS:
        raise _fail(f"must be a map with exactly the fields {sorted(_FIELDS)}")
    if type(obj["v"]) is not int or obj["v"] != ENVELOPE_VERSION:
        raise _fail(f"unsupported version {obj['v']!r}")
    if obj["suite"] != limits.suite:
        raise _fail(f"made for suite {obj['suite']!r}, not {limits.suite!r}")
    nonce = _bytes_field(obj, "nonce")
    ciphertext = _bytes_field(obj, "ciphertext")
    if len(nonce) != limits.nonce_size:
        raise _fail(f"nonce must be {limits.nonce_size} bytes")
    if len(ciphertext) < limits.min_ciphertext_size:
        raise _fail("ciphertext is too short")
    envelope = Envelope(
        limits.suite, _decode_recipients(obj["recipients"], limits), nonce, ciphertext
    )
    # The codec already refuses non-canonical input; this also pins the field set and order.
    if envelope.encode() != bytes(data):
        raise _fail("does not re-encode to the same bytes")
    return envelope
