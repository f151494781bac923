"""The ``intl`` suite: Ed25519 signatures and X25519 key wrapping (libsodium via PyNaCl), SHA-256,
and XSalsa20-Poly1305 (``SecretBox``) as the authenticated cipher."""

from __future__ import annotations

import hashlib
from functools import lru_cache

from nacl import bindings
from nacl.exceptions import CryptoError as NaclCryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.secret import SecretBox

from consortia.crypto.errors import AuthenticationError, InvalidKeyError, InvalidUserIdError
from consortia.crypto.keys import SECRET_SIZE, KeyPair
from consortia.crypto.suite import Suite

_PUBLIC_KEY_SIZE = 32
_SIGNATURE_SIZE = 64
_CONTENT_KEY_SIZE = SecretBox.KEY_SIZE
# crypto_box_seal: ephemeral X25519 public key (32) + Poly1305 tag (16) + the 32-byte content key.
_WRAPPED_SIZE = 32 + 16 + _CONTENT_KEY_SIZE
_AAD_DOMAIN = b"consortia/secretbox-aad/v1"
# Validators and accounts form a bounded working set; caching keeps point checks off the hot path
# (a point check costs about as much as a verification).
_KEY_CACHE_SIZE = 1 << 14


@lru_cache(maxsize=_KEY_CACHE_SIZE)
def _is_valid_point(public_key: bytes) -> bool:
    # libsodium: canonical encoding, on the curve, in the prime-order subgroup, not small order.
    return bool(bindings.crypto_core_ed25519_is_valid_point(public_key))


@lru_cache(maxsize=4096)
def _derive_public_key(seed: bytes) -> bytes:
    public_key, _ = bindings.crypto_sign_seed_keypair(seed)
    return bytes(public_key)


def _no_user_id(user_id: bytes | None) -> None:
    if user_id is not None:
        # Ed25519 has no signer ID; silently ignoring one would let a caller believe it is bound.
        raise InvalidUserIdError("the intl suite (Ed25519) takes no user_id")


def _bind_aad(key: bytes, aad: bytes) -> bytes:
    """A SecretBox key unique to (key, aad).

    SecretBox has no associated data, so the header is bound by deriving the box key from the
    content key and the header's hash: any change to the header yields a different key and the
    Poly1305 tag fails. Both inputs have fixed length, so plain concatenation is unambiguous.
    """
    return hashlib.sha256(_AAD_DOMAIN + key + hashlib.sha256(aad).digest()).digest()


class IntlSuite(Suite):
    """Ed25519 + SHA-256 + X25519/XSalsa20-Poly1305."""

    name = "intl"
    hash_name = "sha256"
    public_key_size = _PUBLIC_KEY_SIZE
    signature_size = _SIGNATURE_SIZE
    cipher_name = "xsalsa20-poly1305"
    cipher_key_size = _CONTENT_KEY_SIZE
    cipher_nonce_size = SecretBox.NONCE_SIZE
    cipher_overhead = SecretBox.MACBYTES
    wrapped_key_sizes = (_WRAPPED_SIZE, _WRAPPED_SIZE)

    def hash(self, data: bytes) -> bytes:
        """SHA-256 of ``data`` (32 bytes)."""
        return hashlib.sha256(data).digest()

    def keypair_from_secret(self, secret: bytes) -> KeyPair:
        """The Ed25519 key pair of a 32-byte seed (RFC 8032 §5.1.5); every seed is usable."""
        return KeyPair(self.name, secret, self._public_key_of(secret))

    def _public_key_of(self, secret: bytes) -> bytes:
        if not isinstance(secret, bytes) or len(secret) != SECRET_SIZE:
            raise InvalidKeyError(f"an Ed25519 seed is {SECRET_SIZE} bytes")
        return _derive_public_key(secret)

    def check_public_key(self, public_key: bytes) -> None:
        """Accept exactly the 32-byte canonical encodings of prime-order-subgroup points."""
        if not isinstance(public_key, bytes) or len(public_key) != _PUBLIC_KEY_SIZE:
            raise InvalidKeyError(f"an Ed25519 public key is {_PUBLIC_KEY_SIZE} bytes")
        if not _is_valid_point(public_key):
            raise InvalidKeyError("not a valid Ed25519 public key (off curve or small order)")

    def sign_raw(self, keypair: KeyPair, message: bytes, *, user_id: bytes | None = None) -> bytes:
        """The 64-byte Ed25519 signature of ``message`` (deterministic, RFC 8032)."""
        _no_user_id(user_id)
        self.require_keypair(keypair)
        # libsodium's 64-byte secret key is seed || public key.
        signed = bindings.crypto_sign(message, keypair.secret + keypair.public_key)
        return bytes(signed[:_SIGNATURE_SIZE])

    def verify_raw(
        self, public_key: bytes, message: bytes, signature: bytes, *, user_id: bytes | None = None
    ) -> bool:
        """Ed25519 verification as libsodium does it (rejects non-canonical S, small-order R)."""
        self.check_public_key(public_key)
        _no_user_id(user_id)
        if not isinstance(signature, bytes) or len(signature) != _SIGNATURE_SIZE:
            return False
        try:
            bindings.crypto_sign_open(signature + message, public_key)
        except (NaclCryptoError, ValueError, TypeError):
            return False
        return True

    def encrypt_aead(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        """XSalsa20-Poly1305 under a key bound to ``aad``; 16 bytes longer than ``plaintext``."""
        box = SecretBox(_bind_aad(key, aad))
        return bytes(box.encrypt(plaintext, nonce).ciphertext)

    def decrypt_aead(self, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        """Inverse of ``encrypt_aead``; AuthenticationError on any mismatch."""
        try:
            return bytes(SecretBox(_bind_aad(key, aad)).decrypt(ciphertext, nonce))
        except (NaclCryptoError, ValueError, TypeError) as exc:
            raise AuthenticationError("XSalsa20-Poly1305 authentication failed") from exc

    def _wrap_key(self, public_key: bytes, content_key: bytes) -> bytes:
        # crypto_box_seal to the recipient's Ed25519 key converted to its X25519 form.
        x25519_public = bindings.crypto_sign_ed25519_pk_to_curve25519(public_key)
        return bytes(SealedBox(PublicKey(x25519_public)).encrypt(content_key))

    def _unwrap_key(self, keypair: KeyPair, wrapped: bytes) -> bytes:
        x25519_secret = bindings.crypto_sign_ed25519_sk_to_curve25519(
            keypair.secret + keypair.public_key
        )
        try:
            content_key = SealedBox(PrivateKey(x25519_secret)).decrypt(wrapped)
        except (NaclCryptoError, ValueError, TypeError) as exc:
            raise AuthenticationError("wrapped key did not decrypt") from exc
        if len(content_key) != _CONTENT_KEY_SIZE:
            raise AuthenticationError("wrapped key has the wrong length")
        return bytes(content_key)
