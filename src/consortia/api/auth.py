"""Request signatures for the REST API's private reads.

A client proves it holds a registry account's key by signing each request. Headers:

- ``X-Consortia-Account``: the account's address (hex);
- ``X-Consortia-Timestamp``: the client's wall clock in milliseconds (decimal);
- ``X-Consortia-Signature``: hex of ``suite.sign(keypair, chain_id, "api-request", canonical)``.

``canonical`` is ``codec.encode(["consortia/api-request/v1", address, METHOD, path, timestamp,
sha256(body)])`` where ``path`` is the request target exactly as sent on the wire (percent-encoded
path, then ``?query`` if there is one). The suite's domain separation (purpose ``"api-request"``,
the chain id) means an API signature never verifies as a transaction, vote or any other signature,
nor on another chain.

The server (``RequestAuthenticator``) checks, in order: all three headers present
(``AUTH_REQUIRED``), well formed (``BAD_REQUEST_SIGNATURE``), timestamp within ±60 s of its clock
(``STALE_REQUEST``), the account registered (``UNKNOWN_ACCOUNT``), the signature valid under the
account's *current* key (``BAD_REQUEST_SIGNATURE``), and that this exact signed request was not
seen before inside the window (``REPLAYED_REQUEST``; a bounded in-memory cache keyed by the hash of
the signed message, so a re-encoded signature of the same request is a replay too).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping

from consortia import codec
from consortia.crypto import CryptoError, KeyPair, Suite
from consortia.modules import registry

PURPOSE = "api-request"
CANONICAL_DOMAIN = "consortia/api-request/v1"
HEADER_ACCOUNT = "X-Consortia-Account"
HEADER_TIMESTAMP = "X-Consortia-Timestamp"
HEADER_SIGNATURE = "X-Consortia-Signature"
WINDOW_MS = 60_000
MAX_REPLAY_ENTRIES = 100_000
MAX_ADDRESS_BYTES = 64
MAX_SIGNATURE_BYTES = 256

# The registry read ``authenticate`` needs: address → account at the head (None if unknown).
AccountLookup = Callable[[bytes], registry.Account | None]


class AuthError(Exception):
    """An authentication failure: answered as a problem with ``status`` and ``code``."""

    def __init__(self, code: str, detail: str, status: int = 401) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def canonical_request(
    address: bytes, method: str, path: str, timestamp_ms: int, body: bytes
) -> bytes:
    """The message a request signature covers (see the module docstring)."""
    return codec.encode(
        [
            CANONICAL_DOMAIN,
            address,
            method.upper(),
            path,
            timestamp_ms,
            hashlib.sha256(body).digest(),
        ]
    )


def sign_request(
    suite: Suite,
    keypair: KeyPair,
    address: bytes,
    method: str,
    path: str,
    body: bytes,
    now_ms: int,
    *,
    chain_id: str,
) -> dict[str, str]:
    """The three authentication headers for one request.

    ``path`` is the request target as sent (``/v1/investors/INV-1`` or with ``?query``);
    ``chain_id`` the chain served by the API (``GET /v1/status`` gives it)."""
    message = canonical_request(address, method, path, now_ms, body)
    signature = suite.sign(keypair, chain_id, PURPOSE, message)
    return {
        HEADER_ACCOUNT: address.hex(),
        HEADER_TIMESTAMP: str(now_ms),
        HEADER_SIGNATURE: signature.hex(),
    }


class _ReplayCache:
    """Signed requests seen within the window: bounded; fails closed when full of live entries."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._seen: OrderedDict[bytes, int] = OrderedDict()  # digest → expiry (ms), oldest first

    def _purge(self, now_ms: int) -> None:
        # Entries are inserted with non-decreasing expiry only approximately (client clocks
        # differ), so scan from the oldest and stop at the first live one; stragglers expire
        # on a later purge.
        while self._seen:
            digest, expiry = next(iter(self._seen.items()))
            if expiry > now_ms:
                break
            del self._seen[digest]

    def add(self, digest: bytes, expiry_ms: int, now_ms: int) -> None:
        self._purge(now_ms)
        if digest in self._seen:
            raise AuthError("REPLAYED_REQUEST", "this signed request was already used")
        if len(self._seen) >= self.max_entries:
            raise AuthError(
                "RATE_LIMITED", "too many signed requests in flight; retry shortly", status=429
            )
        self._seen[digest] = expiry_ms

    def __len__(self) -> int:
        return len(self._seen)


class RequestAuthenticator:
    """Verifies request signatures against the registry at the head (see the module docstring)."""

    def __init__(
        self, *, window_ms: int = WINDOW_MS, max_replay_entries: int = MAX_REPLAY_ENTRIES
    ) -> None:
        self.window_ms = window_ms
        self._replays = _ReplayCache(max_replay_entries)

    def authenticate(
        self,
        *,
        suite: Suite,
        chain_id: str,
        lookup: AccountLookup,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        now_ms: int,
    ) -> registry.Account:
        account_hex = headers.get(HEADER_ACCOUNT.lower())
        stamp = headers.get(HEADER_TIMESTAMP.lower())
        sig_hex = headers.get(HEADER_SIGNATURE.lower())
        if not account_hex or not stamp or not sig_hex:
            raise AuthError(
                "AUTH_REQUIRED",
                f"this read is private: sign the request ({HEADER_ACCOUNT}, {HEADER_TIMESTAMP}, "
                f"{HEADER_SIGNATURE})",
            )
        try:
            address = bytes.fromhex(account_hex)
            signature = bytes.fromhex(sig_hex)
            if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 16:
                raise ValueError("timestamp")
            timestamp = int(stamp)
        except ValueError:
            raise AuthError("BAD_REQUEST_SIGNATURE", "malformed authentication headers") from None
        if (
            not 1 <= len(address) <= MAX_ADDRESS_BYTES
            or not 1 <= len(signature) <= MAX_SIGNATURE_BYTES
        ):
            raise AuthError("BAD_REQUEST_SIGNATURE", "malformed authentication headers")
        if abs(timestamp - now_ms) > self.window_ms:
            raise AuthError(
                "STALE_REQUEST",
                f"request timestamp is more than {self.window_ms // 1000} s off the server clock",
            )
        account = lookup(address)
        if account is None:
            raise AuthError("UNKNOWN_ACCOUNT", f"no registered account {address.hex()}")
        message = canonical_request(address, method, path, timestamp, body)
        try:
            valid = suite.verify(account.public_key, chain_id, PURPOSE, message, signature)
        except CryptoError:
            valid = False
        if not valid:
            raise AuthError(
                "BAD_REQUEST_SIGNATURE", "the request signature does not verify for this account"
            )
        digest = hashlib.sha256(codec.encode([chain_id, message])).digest()
        self._replays.add(digest, timestamp + self.window_ms + 1, now_ms)
        return account


__all__ = [
    "HEADER_ACCOUNT",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "PURPOSE",
    "AuthError",
    "RequestAuthenticator",
    "canonical_request",
    "sign_request",
]
