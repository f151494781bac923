"""``KeyPair``: a suite name, a 32-byte secret and the matching public key."""

from __future__ import annotations

from dataclasses import dataclass

from consortia.crypto.errors import InvalidKeyError

SECRET_SIZE = 32


@dataclass(frozen=True, repr=False)
class KeyPair:
    """A key pair of one suite.

    ``secret`` is the 32-byte Ed25519 seed (``intl``) or the 32-byte big-endian SM2 scalar (``gm``);
    ``public_key`` is the suite's public encoding (32 bytes, or 65 bytes ``04||x||y``).

    Guarantees: ``repr``/``str`` never show the secret. Construction checks only types and the
    secret's length (cheap); the suite checks that the halves match before it signs with them, and
    ``Suite.keypair_from_secret`` is the validating constructor.
    """

    suite: str
    secret: bytes
    public_key: bytes

    def __repr__(self) -> str:
        # Key pairs end up in logs and tracebacks; the secret must not.
        return f"KeyPair(suite={self.suite!r}, public_key={self.public_key.hex()})"

    def __post_init__(self) -> None:
        if not isinstance(self.suite, str):
            raise TypeError("KeyPair.suite must be a str")
        if not isinstance(self.secret, bytes) or not isinstance(self.public_key, bytes):
            raise TypeError("KeyPair.secret and KeyPair.public_key must be bytes")
        if len(self.secret) != SECRET_SIZE:
            raise InvalidKeyError(f"secret must be {SECRET_SIZE} bytes, got {len(self.secret)}")
