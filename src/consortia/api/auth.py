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

Signed session grants (for browsers, which should not hold institution keys: the gm suite's SM2
has no WebCrypto either). ``consortia api login`` signs, with the account's key, the grant
``codec.encode(["consortia/api-session/v1", chain_id, address, issued_ms, expires_ms])`` under
purpose ``"api-session"`` (so it never verifies as a transaction or a request signature) and
hands out the token ``cs1.<chain id hex>.<address hex>.<issued_ms>.<expires_ms>.<signature
hex>`` (only hex digits, digits and dots: safe in a URL fragment and a header). A **GET** request
may carry ``Authorization: Consortia-Session TOKEN`` instead of the three signature headers
(``verify_session``); it is checked for: format (``BAD_SESSION``), this chain
(``SESSION_WRONG_CHAIN``), a lifetime of at most ``MAX_SESSION_MS``, issued no later than the
clock window ahead of the server clock (``BAD_SESSION``), not expired (``SESSION_EXPIRED``), the
account registered (``UNKNOWN_ACCOUNT``) and the signature under the account's *current* key
(``BAD_SESSION``: so a key rotation revokes every session of the account). Any other method with
a session is refused (``SESSION_READ_ONLY``): writes are signed transactions. A session is a
bearer token until it expires; it grants exactly the reads its account's signed requests would.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping

from consortia import codec
from consortia.crypto import CryptoError, KeyPair, Suite
from consortia.modules import registry

PURPOSE = "api-request"
SESSION_PURPOSE = "api-session"
SESSION_DOMAIN = "consortia/api-session/v1"
SESSION_SCHEME = "Consortia-Session"
SESSION_PREFIX = "cs1"
MAX_SESSION_MS = 12 * 3_600_000  # the longest grant the server accepts
MAX_SESSION_TOKEN = 2048  # characters
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


# -- session grants ------------------------------------------------------------------------------


def session_grant(chain_id: str, address: bytes, issued_ms: int, expires_ms: int) -> bytes:
    """The message a session grant's signature covers (see the module docstring)."""
    return codec.encode([SESSION_DOMAIN, chain_id, address, issued_ms, expires_ms])


def issue_session(
    suite: Suite,
    keypair: KeyPair,
    *,
    chain_id: str,
    issued_ms: int,
    ttl_ms: int,
    address: bytes | None = None,
) -> str:
    """A session token for the account of ``keypair`` (or ``address``, an account whose
    current key ``keypair`` is) on ``chain_id``, valid from ``issued_ms`` for ``ttl_ms``.

    ``ValueError`` if ``ttl_ms`` is not in 1..``MAX_SESSION_MS`` (the server would refuse it)."""
    if not 1 <= ttl_ms <= MAX_SESSION_MS:
        raise ValueError(f"a session lasts 1 ms .. {MAX_SESSION_MS // 3_600_000} h")
    who = address if address is not None else suite.address(keypair.public_key)
    expires_ms = issued_ms + ttl_ms
    signature = suite.sign(
        keypair, chain_id, SESSION_PURPOSE, session_grant(chain_id, who, issued_ms, expires_ms)
    )
    return ".".join(
        [
            SESSION_PREFIX,
            chain_id.encode().hex(),
            who.hex(),
            str(issued_ms),
            str(expires_ms),
            signature.hex(),
        ]
    )


def session_token_of(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Consortia-Session TOKEN`` header (None: no session)."""
    value = headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != SESSION_SCHEME.lower():
        return None
    return token.strip()


def _session_parts(token: str) -> tuple[str, bytes, int, int, bytes]:
    bad = AuthError("BAD_SESSION", f"malformed session token (expected {SESSION_PREFIX}.…)")
    if not token.isascii() or len(token) > MAX_SESSION_TOKEN:
        raise bad
    parts = token.split(".")
    if len(parts) != 6 or parts[0] != SESSION_PREFIX:
        raise bad
    _, chain_hex, address_hex, issued, expires, sig_hex = parts
    if not all(p.isdigit() and len(p) <= 16 for p in (issued, expires)):
        raise bad
    try:
        chain_id = bytes.fromhex(chain_hex).decode("utf-8")
        address = bytes.fromhex(address_hex)
        signature = bytes.fromhex(sig_hex)
    except ValueError:  # UnicodeDecodeError is one
        raise bad from None
    if not 1 <= len(address) <= MAX_ADDRESS_BYTES or not 1 <= len(signature) <= MAX_SIGNATURE_BYTES:
        raise bad
    return chain_id, address, int(issued), int(expires), signature


def verify_session(
    token: str,
    *,
    suite: Suite,
    chain_id: str,
    lookup: AccountLookup,
    method: str,
    now_ms: int,
    window_ms: int = WINDOW_MS,
) -> registry.Account:
    """The account a session token stands for, checked as the module docstring says
    (``AuthError`` with a stable code otherwise)."""
    if method.upper() not in ("GET", "HEAD"):
        raise AuthError(
            "SESSION_READ_ONLY",
            "a session grants reads only: sign this request (or submit a signed transaction)",
            status=403,
        )
    token_chain, address, issued_ms, expires_ms, signature = _session_parts(token)
    if token_chain != chain_id:
        raise AuthError(
            "SESSION_WRONG_CHAIN",
            f"this session was granted on chain {token_chain!r}; this API serves {chain_id!r}",
        )
    if not issued_ms < expires_ms <= issued_ms + MAX_SESSION_MS:
        raise AuthError(
            "BAD_SESSION",
            f"a session may last at most {MAX_SESSION_MS // 3_600_000} h",
        )
    if issued_ms > now_ms + window_ms:
        raise AuthError("BAD_SESSION", "the session is issued in the future (check the clocks)")
    if now_ms >= expires_ms:
        raise AuthError("SESSION_EXPIRED", "the session has expired: sign in again")
    account = lookup(address)
    if account is None:
        raise AuthError("UNKNOWN_ACCOUNT", f"no registered account {address.hex()}")
    grant = session_grant(chain_id, address, issued_ms, expires_ms)
    try:
        valid = suite.verify(account.public_key, chain_id, SESSION_PURPOSE, grant, signature)
    except CryptoError:
        valid = False
    if not valid:
        raise AuthError(
            "BAD_SESSION",
            "the session does not verify under the account's current key "
            "(tampered, or revoked by a key rotation)",
        )
    return account


__all__ = [
    "HEADER_ACCOUNT",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "MAX_SESSION_MS",
    "PURPOSE",
    "SESSION_PURPOSE",
    "SESSION_SCHEME",
    "AuthError",
    "RequestAuthenticator",
    "canonical_request",
    "issue_session",
    "session_grant",
    "session_token_of",
    "sign_request",
    "verify_session",
]
