"""The ``gm`` suite: SM2 signatures, SM3 hashing, SM4-GCM encryption, SM2 public-key encryption
for wrapping content keys (GmSSL via gmssl_pyx).

Formats at our boundary: public keys are uncompressed ``04||x||y`` (65 bytes), signatures are
``r||s`` (64 bytes). gmssl_pyx speaks raw ``x||y`` keys and DER signatures; we convert here.

Signing and verifying go through the library's digest entry points with e = SM3(Z_A || M) computed
here: Z_A depends only on the key and the signer ID, so it is cached, and the library's
message-level ``sm2_sign`` measured ten times slower than ``sm2_sign_sm3_digest``.
"""

from __future__ import annotations

from functools import lru_cache

import gmssl_pyx

from consortia.crypto import sm2_curve
from consortia.crypto.errors import (
    AuthenticationError,
    InvalidKeyError,
    InvalidSignatureFormatError,
    InvalidUserIdError,
)
from consortia.crypto.keys import SECRET_SIZE, KeyPair
from consortia.crypto.sm2_der import RS_SIZE, der_to_rs, rs_to_der
from consortia.crypto.suite import Suite

DEFAULT_USER_ID = b"1234567812345678"
# ENTL, the ID's length in bits, is a 16-bit field: at most 8191 whole bytes.
MAX_USER_ID_SIZE = 8191
_PUBLIC_KEY_SIZE = 65
_UNCOMPRESSED = 0x04
_COORD = sm2_curve.COORDINATE_SIZE
_SM4_KEY_SIZE = 16
_GCM_NONCE_SIZE = 12
_GCM_TAG_SIZE = 16
# gmssl_pyx refuses an empty GCM plaintext, so every plaintext is prefixed with one fixed byte.
_GCM_PREFIX = b"\x01"
# SM2 ciphertext of a 16-byte key, DER C1C3C2: SEQUENCE{INTEGER x, INTEGER y, OCTET STRING hash
# (32), OCTET STRING (16)}: at most 2 + 35 + 35 + 34 + 18 = 124 bytes; the lower bound only has to
# exclude garbage, the library parses the rest strictly.
_WRAPPED_SIZES = (64, 124)
_KEY_CACHE_SIZE = 1 << 14


def _coordinates(public_key: bytes) -> tuple[int, int]:
    x = int.from_bytes(public_key[1 : 1 + _COORD], "big")
    y = int.from_bytes(public_key[1 + _COORD :], "big")
    return x, y


@lru_cache(maxsize=_KEY_CACHE_SIZE)
def _is_valid_public_key(public_key: bytes) -> bool:
    if len(public_key) != _PUBLIC_KEY_SIZE or public_key[0] != _UNCOMPRESSED:
        return False
    return sm2_curve.is_on_curve(*_coordinates(public_key))


@lru_cache(maxsize=4096)
def _derive_public_key(secret: bytes) -> bytes:
    d = int.from_bytes(secret, "big")
    # d = n-1 is excluded too: SM2 signing inverts (1 + d) mod n.
    if not 1 <= d <= sm2_curve.N - 2:
        raise InvalidKeyError("SM2 private key must be in [1, n-2]")
    point = sm2_curve.multiply_base(d)
    if point is None:  # unreachable for d in range; kept so the types say what can happen
        raise InvalidKeyError("SM2 private key yields the point at infinity")
    x, y = point
    return bytes((_UNCOMPRESSED,)) + x.to_bytes(_COORD, "big") + y.to_bytes(_COORD, "big")


def _user_id(user_id: bytes | None) -> bytes:
    if user_id is None:
        return DEFAULT_USER_ID
    if not isinstance(user_id, bytes) or not 1 <= len(user_id) <= MAX_USER_ID_SIZE:
        raise InvalidUserIdError(f"SM2 user ID must be 1..{MAX_USER_ID_SIZE} bytes")
    return user_id


@lru_cache(maxsize=_KEY_CACHE_SIZE)
def sm2_z_a(public_key: bytes, user_id: bytes = DEFAULT_USER_ID) -> bytes:
    """Z_A = SM3(ENTL || ID || a || b || Gx || Gy || x_A || y_A) (GB/T 32918.2 §5.5).

    ``public_key`` must be a checked 65-byte uncompressed key; ``user_id`` 1..8191 bytes.
    """
    curve = (sm2_curve.A, sm2_curve.B, sm2_curve.GX, sm2_curve.GY)
    parts = [(len(user_id) * 8).to_bytes(2, "big"), user_id]
    parts += [value.to_bytes(_COORD, "big") for value in curve]
    parts.append(public_key[1:])
    return bytes(gmssl_pyx.sm3_hash(b"".join(parts)))


def sm2_message_digest(
    public_key: bytes, message: bytes, user_id: bytes = DEFAULT_USER_ID
) -> bytes:
    """e = SM3(Z_A || M), the value SM2 actually signs (as bytes; reduced mod n by the signer)."""
    return bytes(gmssl_pyx.sm3_hash(sm2_z_a(public_key, user_id) + message))


class GmSuite(Suite):
    """SM2 + SM3 + SM4-GCM (Chinese national algorithms)."""

    name = "gm"
    hash_name = "sm3"
    public_key_size = _PUBLIC_KEY_SIZE
    signature_size = RS_SIZE
    cipher_name = "sm4-gcm"
    cipher_key_size = _SM4_KEY_SIZE
    cipher_nonce_size = _GCM_NONCE_SIZE
    cipher_overhead = len(_GCM_PREFIX) + _GCM_TAG_SIZE
    wrapped_key_sizes = _WRAPPED_SIZES

    def hash(self, data: bytes) -> bytes:
        """SM3 of ``data`` (32 bytes)."""
        return bytes(gmssl_pyx.sm3_hash(data))

    def keypair_from_secret(self, secret: bytes) -> KeyPair:
        """The SM2 key pair of a 32-byte big-endian scalar d in [1, n-2] (InvalidKeyError else)."""
        return KeyPair(self.name, secret, self._public_key_of(secret))

    def _public_key_of(self, secret: bytes) -> bytes:
        if not isinstance(secret, bytes) or len(secret) != SECRET_SIZE:
            raise InvalidKeyError(f"an SM2 private key is {SECRET_SIZE} bytes")
        return _derive_public_key(secret)

    def check_public_key(self, public_key: bytes) -> None:
        """Accept exactly 65-byte ``04||x||y`` with (x, y) on the curve (cofactor 1: no more)."""
        if not isinstance(public_key, bytes) or len(public_key) != _PUBLIC_KEY_SIZE:
            raise InvalidKeyError(f"an SM2 public key is {_PUBLIC_KEY_SIZE} bytes 04||x||y")
        if public_key[0] != _UNCOMPRESSED:
            raise InvalidKeyError("an SM2 public key must be uncompressed (prefix 04)")
        if not _is_valid_public_key(public_key):
            raise InvalidKeyError("SM2 public key is not a point on the curve")

    def sign_raw(self, keypair: KeyPair, message: bytes, *, user_id: bytes | None = None) -> bytes:
        """The 64-byte ``r||s`` SM2 signature of ``message`` with signer ID ``user_id``
        (default ``1234567812345678``). Randomized: two calls give different signatures."""
        uid = _user_id(user_id)
        self.require_keypair(keypair)
        digest = sm2_message_digest(keypair.public_key, message, uid)
        der = gmssl_pyx.sm2_sign_sm3_digest(keypair.secret, digest)
        try:
            return der_to_rs(bytes(der))
        except InvalidSignatureFormatError as exc:  # the library broke its own contract
            raise InvalidSignatureFormatError(f"gmssl produced a bad signature: {exc}") from exc

    def verify_raw(
        self, public_key: bytes, message: bytes, signature: bytes, *, user_id: bytes | None = None
    ) -> bool:
        """SM2 verification with signer ID ``user_id`` (default ``1234567812345678``).

        Note: on a failed verification the C library prints a trace line to stderr.
        """
        self.check_public_key(public_key)
        uid = _user_id(user_id)
        if not isinstance(signature, bytes):
            return False
        try:
            der = rs_to_der(signature)
        except InvalidSignatureFormatError:
            return False
        digest = sm2_message_digest(public_key, message, uid)
        try:
            return bool(gmssl_pyx.sm2_verify_sm3_digest(public_key[1:], digest, der))
        except gmssl_pyx.GmsslInnerError:
            return False

    def encrypt_aead(self, key: bytes, nonce: bytes, aad: bytes, plaintext: bytes) -> bytes:
        """SM4-GCM with a 16-byte tag appended; 17 bytes longer than ``plaintext``."""
        ciphertext, tag = gmssl_pyx.sm4_gcm_encrypt(key, nonce, aad, _GCM_PREFIX + plaintext)
        return bytes(ciphertext) + bytes(tag)

    def decrypt_aead(self, key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        """Inverse of ``encrypt_aead``; AuthenticationError on any mismatch."""
        if len(ciphertext) < self.cipher_overhead:
            raise AuthenticationError("SM4-GCM ciphertext is too short")
        body, tag = ciphertext[:-_GCM_TAG_SIZE], ciphertext[-_GCM_TAG_SIZE:]
        try:
            plaintext = bytes(gmssl_pyx.sm4_gcm_decrypt(key, nonce, aad, body, tag))
        except gmssl_pyx.GmsslInnerError as exc:
            raise AuthenticationError("SM4-GCM authentication failed") from exc
        if not plaintext.startswith(_GCM_PREFIX):
            raise AuthenticationError("SM4-GCM plaintext lacks its prefix")
        return plaintext[len(_GCM_PREFIX) :]

    def _wrap_key(self, public_key: bytes, content_key: bytes) -> bytes:
        return bytes(gmssl_pyx.sm2_encrypt(public_key[1:], content_key))

    def _unwrap_key(self, keypair: KeyPair, wrapped: bytes) -> bytes:
        try:
            content_key = bytes(gmssl_pyx.sm2_decrypt(keypair.secret, wrapped))
        except gmssl_pyx.GmsslInnerError as exc:
            raise AuthenticationError("wrapped key did not decrypt") from exc
        if len(content_key) != _SM4_KEY_SIZE:
            raise AuthenticationError("wrapped key has the wrong length")
        return content_key
