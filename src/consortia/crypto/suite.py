"""``Suite``: the one interface every part of consortia uses for hashing, keys, signatures and
sealing. Concrete suites (``intl``, ``gm``) supply the primitives; this base class builds the
protocol-level operations on top of them, identically for both:

- addresses: ``hash(b"consortia/address/v1" + public_key)[:20]``;
- domain-separated signatures over ``codec.encode(["consortia/sig/v1", chain_id, purpose, msg])``;
- sealing to several recipients: a fresh content key encrypts the payload once (authenticated
  cipher, the envelope header as associated data) and is wrapped to each recipient's public key.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from consortia import codec
from consortia.crypto.envelope import (
    KEY_ID_SIZE,
    MAX_SEAL_PLAINTEXT,
    MAX_SEAL_RECIPIENTS,
    Envelope,
    EnvelopeLimits,
    decode_envelope,
)
from consortia.crypto.errors import (
    AuthenticationError,
    InvalidKeyError,
    NotARecipientError,
    PayloadTooLargeError,
    RecipientListError,
    SealCorruptedError,
)
from consortia.crypto.keys import KeyPair

ADDRESS_DOMAIN = b"consortia/address/v1"
SIGNATURE_DOMAIN = "consortia/sig/v1"
ADDRESS_SIZE = KEY_ID_SIZE


class Suite(ABC):
    """A crypto suite. Instances are stateless singletons obtained from ``get_suite``."""

    name: ClassVar[str]
    hash_name: ClassVar[str]
    public_key_size: ClassVar[int]
    signature_size: ClassVar[int]
    # The authenticated cipher used for sealing and key files.
    cipher_name: ClassVar[str]
    cipher_key_size: ClassVar[int]
    cipher_nonce_size: ClassVar[int]
    cipher_overhead: ClassVar[int]
    # Bounds on one recipient's wrapped content key, enforced when an envelope is decoded.
    wrapped_key_sizes: ClassVar[tuple[int, int]]

    def __repr__(self) -> str:
        return f"<Suite {self.name}>"

    # -- primitives each suite provides --------------------------------------------------------

    @abstractmethod
    def hash(self, data: bytes) -> bytes:
        """The suite's 32-byte digest of ``data``."""

    @abstractmethod
    def keypair_from_secret(self, secret: bytes) -> KeyPair:
        """The key pair for a 32-byte secret; InvalidKeyError if the secret is unusable."""

    @abstractmethod
    def check_public_key(self, public_key: bytes) -> None:
        """Return if ``public_key`` is a valid public key of this suite, else InvalidKeyError."""

    @abstractmethod
    def sign_raw(self, keypair: KeyPair, message: bytes, *, user_id: bytes | None = None) -> bytes:
        """Sign ``message`` as is (no domain separation); returns ``signature_size`` bytes.

        InvalidKeyError if ``keypair`` is not a consistent key pair of this suite.
        """

    @abstractmethod
    def verify_raw(
        self, public_key: bytes, message: bytes, signature: bytes, *, user_id: bytes | None = None
    ) -> bool:
        """True iff ``signature`` is a valid signature of ``message`` under ``public_key``.

        Never raises for a wrong or malformed signature (returns False); raises InvalidKeyError
        for a malformed public key.
        """

    @abstractmethod
    def encrypt_aead(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        """Authenticated encryption bound to ``aad``; ``cipher_overhead`` bytes longer."""

    @abstractmethod
    def decrypt_aead(self, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        """Inverse of ``encrypt_aead``; AuthenticationError if anything does not match."""

    @abstractmethod
    def _public_key_of(self, secret: bytes) -> bytes:
        """The public key for ``secret`` (implementations cache it; InvalidKeyError if unusable)."""

    @abstractmethod
    def _wrap_key(self, public_key: bytes, content_key: bytes) -> bytes:
        """Encrypt ``content_key`` so only the holder of ``public_key``'s secret can read it."""

    @abstractmethod
    def _unwrap_key(self, keypair: KeyPair, wrapped: bytes) -> bytes:
        """Inverse of ``_wrap_key``; AuthenticationError if it does not decrypt."""

    # -- shared operations ---------------------------------------------------------------------

    def generate_keypair(self) -> KeyPair:
        """A fresh key pair from the operating system's CSPRNG."""
        while True:
            try:
                return self.keypair_from_secret(os.urandom(32))
            except InvalidKeyError:
                # Only gm can land here (a scalar outside [1, n-2]), with probability ~2^-32.
                continue

    def require_keypair(self, keypair: KeyPair) -> None:
        """Return if ``keypair`` belongs to this suite and its public key matches its secret.

        Why: signing with a public key that does not match the secret can leak the secret
        (Ed25519's nonce ignores the public key but its challenge hashes it, so two signatures
        of one message under two public keys reveal the scalar). Every operation that uses a
        secret checks this first; the derivation is cached.
        """
        if not isinstance(keypair, KeyPair) or keypair.suite != self.name:
            raise InvalidKeyError(f"not a key pair of suite {self.name!r}")
        if self._public_key_of(keypair.secret) != keypair.public_key:
            raise InvalidKeyError("the key pair's public key does not match its secret")

    def address(self, public_key: bytes) -> bytes:
        """The 20-byte account address of a valid public key (InvalidKeyError otherwise)."""
        self.check_public_key(public_key)
        return self.hash(ADDRESS_DOMAIN + public_key)[:ADDRESS_SIZE]

    def signing_bytes(self, chain_id: str, purpose: str, message: bytes) -> bytes:
        """The exact bytes ``sign`` signs: distinct for every (chain id, purpose, message)."""
        if not isinstance(chain_id, str) or not isinstance(purpose, str):
            raise TypeError("chain_id and purpose must be str")
        if not isinstance(message, bytes):
            raise TypeError("message must be bytes")
        return codec.encode([SIGNATURE_DOMAIN, chain_id, purpose, message])

    def sign(self, keypair: KeyPair, chain_id: str, purpose: str, message: bytes) -> bytes:
        """Sign ``message`` for one chain and one purpose; the signature verifies for no other."""
        return self.sign_raw(keypair, self.signing_bytes(chain_id, purpose, message))

    def verify(
        self, public_key: bytes, chain_id: str, purpose: str, message: bytes, signature: bytes
    ) -> bool:
        """True iff ``signature`` came from ``sign`` with this chain id, purpose and message."""
        signed = self.signing_bytes(chain_id, purpose, message)
        return self.verify_raw(public_key, signed, signature)

    # -- sealing -------------------------------------------------------------------------------

    def _envelope_limits(self) -> EnvelopeLimits:
        low, high = self.wrapped_key_sizes
        return EnvelopeLimits(self.name, self.cipher_nonce_size, low, high, self.cipher_overhead)

    def _unique_recipients(self, recipients: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
        """(address, public key) per distinct recipient, in first-seen order; validates keys."""
        if isinstance(recipients, bytes | str):
            raise TypeError("recipients must be a sequence of public keys, not one key")
        by_address: dict[bytes, bytes] = {}
        for public_key in recipients:
            by_address.setdefault(self.address(public_key), public_key)
        if not 1 <= len(by_address) <= MAX_SEAL_RECIPIENTS:
            raise RecipientListError(f"a seal needs 1..{MAX_SEAL_RECIPIENTS} distinct recipients")
        return list(by_address.items())

    def seal(self, recipients: Sequence[bytes], plaintext: bytes) -> bytes:
        """Encrypt ``plaintext`` so that exactly the holders of ``recipients`` can open it.

        Duplicate recipients are sealed to once. InvalidKeyError for a malformed recipient key,
        RecipientListError for none or too many, PayloadTooLargeError above
        ``MAX_SEAL_PLAINTEXT``. The envelope reveals the recipients' addresses and the
        plaintext's length, nothing else.
        """
        if not isinstance(plaintext, bytes):
            raise TypeError("plaintext must be bytes")
        if len(plaintext) > MAX_SEAL_PLAINTEXT:
            raise PayloadTooLargeError(f"a sealed payload is at most {MAX_SEAL_PLAINTEXT} bytes")
        targets = self._unique_recipients(recipients)
        content_key = os.urandom(self.cipher_key_size)
        nonce = os.urandom(self.cipher_nonce_size)
        entries = tuple((addr, self._wrap_key(pk, content_key)) for addr, pk in targets)
        unsealed = Envelope(self.name, entries, nonce, b"")
        ciphertext = self.encrypt_aead(content_key, nonce, unsealed.header(), plaintext)
        return Envelope(self.name, entries, nonce, ciphertext).encode()

    def open_sealed(self, keypair: KeyPair, sealed: bytes) -> bytes:
        """The plaintext of an envelope made by ``seal`` for ``keypair``.

        NotARecipientError if the envelope names no entry for this key pair; SealCorruptedError if
        it is malformed, made for another suite, or any part of it was changed.
        """
        self.require_keypair(keypair)
        envelope = decode_envelope(sealed, self._envelope_limits())
        my_id = self.address(keypair.public_key)
        wrapped = next((k for key_id, k in envelope.recipients if key_id == my_id), None)
        if wrapped is None:
            raise NotARecipientError("this key pair is not a recipient of the sealed envelope")
        try:
            content_key = self._unwrap_key(keypair, wrapped)
            return self.decrypt_aead(
                content_key, envelope.nonce, envelope.header(), envelope.ciphertext
            )
        except AuthenticationError as exc:
            raise SealCorruptedError("sealed envelope failed authentication") from exc
