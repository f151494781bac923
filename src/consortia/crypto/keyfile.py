"""Password-encrypted key files (JSON).

    {"version": 1, "suite": "gm", "address": hex, "public_key": hex,
     "kdf": "scrypt", "kdf_params": {"n": 32768, "r": 8, "p": 1, "dklen": 16}, "salt": hex,
     "cipher": "sm4-gcm" | "xsalsa20-poly1305", "nonce": hex, "ciphertext": hex}

The secret is encrypted with the suite's authenticated cipher under a key derived from the
password by scrypt. Every header field is authenticated as associated data, so a file whose suite,
public key, address or KDF parameters were swapped does not decrypt.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from consortia import codec
from consortia.crypto.errors import (
    AuthenticationError,
    CryptoError,
    KeyFileError,
    WrongPasswordError,
)
from consortia.crypto.keys import SECRET_SIZE, KeyPair
from consortia.crypto.registry import get_suite
from consortia.crypto.suite import Suite

KEY_FILE_VERSION = 1
KDF_NAME = "scrypt"
DEFAULT_SCRYPT_N = 1 << 15
DEFAULT_SCRYPT_R = 8
DEFAULT_SCRYPT_P = 1
# Below 2^10 a file is too cheap to brute-force to be worth accepting; the low end exists for tests.
MIN_SCRYPT_N = 1 << 10
# Bounds applied when reading a file, so a hostile file cannot make us allocate or spin forever.
MAX_SCRYPT_MEMORY = 256 * 1024 * 1024
MAX_SCRYPT_P = 16
MAX_KEY_FILE_SIZE = 64 * 1024
SALT_SIZE = 16
_AAD_DOMAIN = "consortia/keyfile/v1"
_FIELDS = frozenset(
    {
        "version",
        "suite",
        "address",
        "public_key",
        "kdf",
        "kdf_params",
        "salt",
        "cipher",
        "nonce",
        "ciphertext",
    }
)
_PARAM_FIELDS = frozenset({"n", "r", "p", "dklen"})
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


@dataclass(frozen=True)
class ScryptParams:
    """scrypt cost parameters; ``check`` enforces the accepted ranges."""

    n: int
    r: int
    p: int
    dklen: int

    def check(self) -> None:
        """Return if the parameters are within our bounds, else KeyFileError."""
        for value in (self.n, self.r, self.p, self.dklen):
            if type(value) is not int or value < 1:
                raise KeyFileError("scrypt parameters must be positive integers")
        if self.n < MIN_SCRYPT_N or self.n & (self.n - 1):
            raise KeyFileError(f"scrypt n must be a power of two >= {MIN_SCRYPT_N}")
        if 128 * self.r * self.n > MAX_SCRYPT_MEMORY or self.p > MAX_SCRYPT_P:
            raise KeyFileError("scrypt parameters exceed the accepted cost")

    def derive(self, password: str, salt: bytes) -> bytes:
        """The ``dklen``-byte key for ``password`` (NFC-normalized, UTF-8) and ``salt``."""
        # NFC: the same password typed on two systems may arrive in different Unicode forms.
        secret = unicodedata.normalize("NFC", password).encode("utf-8")
        # scrypt needs 128·r·n bytes for its table plus 128·r·p for the blocks; add headroom.
        maxmem = 128 * self.r * (self.n + self.p) + (1 << 20)
        return hashlib.scrypt(
            secret, salt=salt, n=self.n, r=self.r, p=self.p, maxmem=maxmem, dklen=self.dklen
        )


def _associated_data(suite: Suite, public_key: bytes, params: ScryptParams, salt: bytes) -> bytes:
    """Every header field, canonically encoded (the address is a function of the public key)."""
    return codec.encode(
        [
            _AAD_DOMAIN,
            KEY_FILE_VERSION,
            suite.name,
            public_key,
            KDF_NAME,
            [params.n, params.r, params.p, params.dklen],
            salt,
            suite.cipher_name,
        ]
    )


def encrypt_key_file(
    keypair: KeyPair,
    password: str,
    *,
    scrypt_n: int = DEFAULT_SCRYPT_N,
    scrypt_r: int = DEFAULT_SCRYPT_R,
    scrypt_p: int = DEFAULT_SCRYPT_P,
) -> bytes:
    """Serialize ``keypair`` encrypted under ``password`` as UTF-8 JSON bytes.

    InvalidKeyError if the key pair is inconsistent or of an unknown suite (UnknownSuiteError);
    KeyFileError if the scrypt parameters are out of range. ``decrypt_key_file`` with the same
    password returns an equal key pair.
    """
    if not isinstance(password, str):
        raise TypeError("password must be a str")
    suite = get_suite(keypair.suite)
    suite.require_keypair(keypair)
    params = ScryptParams(scrypt_n, scrypt_r, scrypt_p, suite.cipher_key_size)
    params.check()
    salt = os.urandom(SALT_SIZE)
    nonce = os.urandom(suite.cipher_nonce_size)
    header: dict[str, Any] = {
        "version": KEY_FILE_VERSION,
        "suite": suite.name,
        "address": suite.address(keypair.public_key).hex(),
        "public_key": keypair.public_key.hex(),
        "kdf": KDF_NAME,
        "kdf_params": {"n": params.n, "r": params.r, "p": params.p, "dklen": params.dklen},
        "salt": salt.hex(),
        "cipher": suite.cipher_name,
    }
    key = params.derive(password, salt)
    aad = _associated_data(suite, keypair.public_key, params, salt)
    ciphertext = suite.encrypt_aead(key, nonce, aad, keypair.secret)
    document = {**header, "nonce": nonce.hex(), "ciphertext": ciphertext.hex()}
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise KeyFileError("key file has a duplicate field")
    return result


def _parse_json(data: bytes) -> dict[str, Any]:
    if not isinstance(data, bytes | bytearray) or len(data) > MAX_KEY_FILE_SIZE:
        raise KeyFileError("key file must be bytes of at most 64 KiB")
    try:
        document = json.loads(bytes(data).decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise KeyFileError(f"key file is not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or set(document) != _FIELDS:
        raise KeyFileError(f"key file must be an object with exactly the fields {sorted(_FIELDS)}")
    return document


def _hex_field(document: dict[str, Any], name: str, size: int | None = None) -> bytes:
    value = document[name]
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise KeyFileError(f"key file field {name!r} must be an even-length hex string")
    raw = bytes.fromhex(value)
    if size is not None and len(raw) != size:
        raise KeyFileError(f"key file field {name!r} must be {size} bytes")
    return raw


def _header_suite(document: dict[str, Any]) -> Suite:
    if type(document["version"]) is not int or document["version"] != KEY_FILE_VERSION:
        raise KeyFileError(f"unsupported key file version {document['version']!r}")
    try:
        suite = get_suite(document["suite"])
    except CryptoError as exc:
        raise KeyFileError(f"key file names an unknown suite {document['suite']!r}") from exc
    if document["kdf"] != KDF_NAME or document["cipher"] != suite.cipher_name:
        raise KeyFileError(f"key file must use {KDF_NAME} and {suite.cipher_name}")
    return suite


def _header_params(document: dict[str, Any], suite: Suite) -> ScryptParams:
    raw = document["kdf_params"]
    if not isinstance(raw, dict) or set(raw) != _PARAM_FIELDS:
        raise KeyFileError(f"kdf_params must have exactly the fields {sorted(_PARAM_FIELDS)}")
    params = ScryptParams(raw["n"], raw["r"], raw["p"], raw["dklen"])
    params.check()
    if params.dklen != suite.cipher_key_size:
        raise KeyFileError(f"kdf_params.dklen must be {suite.cipher_key_size} for {suite.name}")
    return params


def _header_public_key(document: dict[str, Any], suite: Suite) -> bytes:
    public_key = _hex_field(document, "public_key", suite.public_key_size)
    try:
        address = suite.address(public_key)
    except CryptoError as exc:
        raise KeyFileError(f"key file holds an invalid public key: {exc}") from exc
    if _hex_field(document, "address", len(address)) != address:
        raise KeyFileError("key file address does not match its public key")
    return public_key


def decrypt_key_file(data: bytes, password: str) -> KeyPair:
    """The key pair stored in a key file made by ``encrypt_key_file``.

    KeyFileError if the file is malformed (JSON, fields, types, sizes, parameters, an address or
    public key that do not match); WrongPasswordError if it does not decrypt under ``password``.
    """
    if not isinstance(password, str):
        raise TypeError("password must be a str")
    document = _parse_json(data)
    suite = _header_suite(document)
    params = _header_params(document, suite)
    public_key = _header_public_key(document, suite)
    salt = _hex_field(document, "salt", SALT_SIZE)
    nonce = _hex_field(document, "nonce", suite.cipher_nonce_size)
    ciphertext = _hex_field(document, "ciphertext", SECRET_SIZE + suite.cipher_overhead)
    key = params.derive(password, salt)
    try:
        aad = _associated_data(suite, public_key, params, salt)
        secret = suite.decrypt_aead(key, nonce, aad, ciphertext)
    except AuthenticationError as exc:
        raise WrongPasswordError("wrong password (or the key file was modified)") from exc
    try:
        keypair = suite.keypair_from_secret(secret)
    except CryptoError as exc:
        raise KeyFileError(f"key file holds an unusable secret: {exc}") from exc
    if keypair.public_key != public_key:
        raise KeyFileError("key file secret does not match its public key")
    return keypair
