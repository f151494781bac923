"""The crypto layer's exceptions: one class per failure kind, all under ``CryptoError``.

Callers that only need "something about this key/signature/ciphertext is wrong" catch
``CryptoError``; callers that react differently (ask for the password again, report a tampered
envelope) catch the specific subclass.
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base class for every error raised by ``consortia.crypto``."""


class UnknownSuiteError(CryptoError):
    """A suite name other than the ones in ``SUITES``."""


class InvalidKeyError(CryptoError):
    """A public key or secret is malformed (wrong length, bad prefix, not on the curve, out of
    range), or a key pair's halves do not belong together."""


class InvalidSignatureFormatError(CryptoError):
    """Signature bytes that cannot be converted between encodings (strict DER <-> r||s).

    ``verify_raw`` never raises this: a malformed signature there simply does not verify.
    """


class InvalidUserIdError(CryptoError):
    """An SM2 signer ID of unusable length, or a signer ID passed to a suite that has none."""


class AuthenticationError(CryptoError):
    """An authenticated cipher rejected its input (wrong key, or tampered nonce/AAD/ciphertext).

    Internal: sealing reports it as ``SealCorruptedError``, key files as ``WrongPasswordError``.
    """


class RecipientListError(CryptoError):
    """A seal was requested for no recipients, or for more than ``MAX_SEAL_RECIPIENTS``."""


class PayloadTooLargeError(CryptoError):
    """A plaintext larger than ``MAX_SEAL_PLAINTEXT`` was given to ``seal``."""


class NotARecipientError(CryptoError):
    """The sealed envelope holds no entry for this key pair."""


class SealCorruptedError(CryptoError):
    """The sealed envelope is malformed, for another suite, or fails authentication."""


class WrongPasswordError(CryptoError):
    """The key file did not decrypt: wrong password (or a modified ciphertext; the two cannot be
    told apart)."""


class KeyFileError(CryptoError):
    """Not a well-formed consortia key file (bad JSON, fields, sizes, parameters)."""


__all__ = [
    "AuthenticationError",
    "CryptoError",
    "InvalidKeyError",
    "InvalidSignatureFormatError",
    "InvalidUserIdError",
    "KeyFileError",
    "NotARecipientError",
    "PayloadTooLargeError",
    "RecipientListError",
    "SealCorruptedError",
    "UnknownSuiteError",
    "WrongPasswordError",
]
