"""consortia.crypto: two crypto suites behind one interface, chosen per chain by name.

- ``intl``: Ed25519 + SHA-256; sealing with X25519 + XSalsa20-Poly1305 (libsodium via PyNaCl).
- ``gm``: SM2 + SM3; sealing with SM2 encryption + SM4-GCM (GmSSL via gmssl_pyx).

Usage::

    suite = get_suite(genesis.crypto_suite)
    kp = suite.generate_keypair()
    sig = suite.sign(kp, chain_id, "tx", tx_bytes)
    assert suite.verify(kp.public_key, chain_id, "tx", tx_bytes, sig)
"""

from __future__ import annotations

from consortia.crypto.envelope import MAX_SEAL_PLAINTEXT, MAX_SEAL_RECIPIENTS
from consortia.crypto.errors import (
    AuthenticationError,
    CryptoError,
    InvalidKeyError,
    InvalidSignatureFormatError,
    InvalidUserIdError,
    KeyFileError,
    NotARecipientError,
    PayloadTooLargeError,
    RecipientListError,
    SealCorruptedError,
    UnknownSuiteError,
    WrongPasswordError,
)
from consortia.crypto.keyfile import decrypt_key_file, encrypt_key_file
from consortia.crypto.keys import KeyPair
from consortia.crypto.registry import SUITES, get_suite
from consortia.crypto.suite import ADDRESS_SIZE, Suite

__all__ = [
    "ADDRESS_SIZE",
    "MAX_SEAL_PLAINTEXT",
    "MAX_SEAL_RECIPIENTS",
    "SUITES",
    "AuthenticationError",
    "CryptoError",
    "InvalidKeyError",
    "InvalidSignatureFormatError",
    "InvalidUserIdError",
    "KeyFileError",
    "KeyPair",
    "NotARecipientError",
    "PayloadTooLargeError",
    "RecipientListError",
    "SealCorruptedError",
    "Suite",
    "UnknownSuiteError",
    "WrongPasswordError",
    "decrypt_key_file",
    "encrypt_key_file",
    "get_suite",
]
