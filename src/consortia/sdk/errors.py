"""Typed errors of the SDK: every one carries the stable upper-case ``code``."""

from __future__ import annotations


class SdkError(Exception):
    """Base of every SDK error; ``code`` is the stable error code (``BAD_SIGNATURE``,
    ``INSUFFICIENT_FUNDS``, ``NOT_FOUND``, ``TRANSPORT``, ...), ``status`` the HTTP status if
    the node answered."""

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class InvalidArgumentsError(SdkError):
    """Refused client side before anything was signed: unknown module or method, bad arguments."""


class RejectedError(SdkError):
    """The node refused the transaction at admission (``BAD_SIGNATURE``, ``STALE_NONCE``,
    ``WRONG_CHAIN``, ...): nothing changed on the chain."""


class FailedError(SdkError):
    """The transaction was committed but a business rule refused it (``code`` is the module's
    stable code, e.g. ``INSUFFICIENT_FUNDS``); the nonce advanced, nothing else changed."""

    def __init__(
        self, code: str, message: str, *, tx_hash: bytes, height: int, status: int | None = None
    ) -> None:
        super().__init__(code, message, status=status)
        self.tx_hash = tx_hash
        self.height = height


class NotCommittedError(SdkError):
    """Admitted but not committed within the node's wait (``NOT_COMMITTED_IN_TIME``): it may
    still commit; look it up later by ``tx_hash``."""

    def __init__(self, code: str, message: str, *, tx_hash: bytes | None) -> None:
        super().__init__(code, message)
        self.tx_hash = tx_hash


class NotFoundError(SdkError):
    """No such record, block or transaction (``NOT_FOUND``)."""


class ApiError(SdkError):
    """Any other problem the API answered (``BAD_REQUEST``, ``RATE_LIMITED``, ``PRIVATE_RECORD``,
    ``INTERNAL_ERROR``, ...)."""


class UnauthorizedError(ApiError):
    """The node could not authenticate the request's signature (401: ``AUTH_REQUIRED``,
    ``BAD_REQUEST_SIGNATURE``, ``STALE_REQUEST``, ``REPLAYED_REQUEST``, ``UNKNOWN_ACCOUNT``) —
    e.g. this client's key is not (or no longer) the account's registered key."""


class ForbiddenError(ApiError):
    """The signed request was authenticated but this account may not read that record (403
    ``FORBIDDEN``; also ``PRIVATE_RECORD`` for raw reads of records carrying sealed identities)."""


class TransportError(SdkError):
    """The node could not be reached or answered something that is not the API (code
    ``TRANSPORT``)."""


class ProofError(SdkError):
    """A returned state proof does not hold against the returned state root (code
    ``BAD_PROOF``)."""


class BadEvidenceError(ProofError):
    """An exported evidence bundle is malformed or does not verify against the genesis documents
    given (code ``BAD_EVIDENCE``; the message names the failed check)."""


__all__ = [
    "ApiError",
    "BadEvidenceError",
    "FailedError",
    "ForbiddenError",
    "InvalidArgumentsError",
    "NotCommittedError",
    "NotFoundError",
    "ProofError",
    "RejectedError",
    "SdkError",
    "TransportError",
    "UnauthorizedError",
]
