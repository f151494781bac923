"""The REST API (first slice): public chain reads, typed record reads, transaction submission.

``create_app(backend)`` returns a FastAPI application over any ``ApiBackend`` (a running node or a
``LocalChain``). Everything is versioned under ``/v1`` and speaks JSON; byte strings are lowercase
hex. OpenAPI is at ``/openapi.json`` and interactive docs at ``/docs``; operations endpoints are
``/metrics`` (Prometheus text), ``/healthz`` and ``/readyz``.

Errors are RFC 9457 problem details (``application/problem+json``) with ``type``, ``title``,
``status``, ``detail`` and ``code``, the stable error code (a mempool admission code such as
``BAD_SIGNATURE`` or ``STALE_NONCE``, or ``NOT_FOUND``, ``BAD_REQUEST``, ``PAYLOAD_TOO_LARGE``,
``RATE_LIMITED``, ``INTERNAL_ERROR``, ...) — for every error, FastAPI's validation errors and
unknown routes included; an unexpected exception is logged and answered with ``INTERNAL_ERROR``,
never a traceback. Request bodies are limited (read and counted before any parsing) and each
client address has a token bucket.

Sealed identities (``sealed_identity`` fields of wallets, investors and their transactions) are
never returned; raw state reads of records that carry them are refused (``PRIVATE_RECORD``).
Private reads (investors, wallets, holdings, committed transactions, raw state outside the public
prefixes) need a request signed with a registry account's key (``consortia.api.auth``; 401
problems) and are authorized by role (``consortia.api.private``; 403 ``FORBIDDEN``): the investor
/ wallet owner / transaction sender, its broker, operator bank or organization, the regulator.
Public chain data (status, blocks, certificates, accounts, anchors, public state prefixes) stays
open. Committed blocks stream as Server-Sent Events (``consortia.api.stream``). Typed fund,
position, order, product and policy reads and ``/v1/me`` are in ``consortia.api.records``,
evidence export in ``consortia.api.evidence``. Not yet: mutual TLS for institutions, typed alert
reads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consortia import codec
from consortia.api.auth import (
    SESSION_SCHEME,
    AuthError,
    RequestAuthenticator,
    session_token_of,
    verify_session,
)
from consortia.api.backend import ApiBackend
from consortia.api.contracts import contracts_router
from consortia.api.evidence import Fetch, evidence_router, http_fetch
from consortia.api.notary import notary_router
from consortia.api.private import (
    SEALED_STATE_PREFIXES,
    investor_access,
    is_public_key,
    is_regulator,
    load_account,
    read_context,
    securities_account_access,
    state_access,
    tx_access,
    wallet_access,
)
from consortia.api.reads import (
    MAX_HASH_BYTES,
    PRIVATE_PROBLEMS,
    ApiProblem,
    Problem,
    hex_arg,
    jsonable,
    proven,
    read_at,
)
from consortia.api.records import RecordsIndex, records_router
from consortia.api.stream import stream_router
from consortia.api.supervision_views import supervision_router
from consortia.api.webui import webui_router
from consortia.modules import anchoring, ecny, investors, registry, securities

log = logging.getLogger("consortia.api")

PROBLEM_JSON = "application/problem+json"
WWW_AUTHENTICATE = f"Consortia-Signature, {SESSION_SCHEME}"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_STATE_KEY = 1024  # as the node's client port
# Raw state reads of these records would hand out sealed identities: refused to everyone.
PRIVATE_PREFIXES = SEALED_STATE_PREFIXES

# HTTP status for each mempool admission code (anything else refused: 400).
ADMISSION_STATUS = {
    "MALFORMED_TRANSACTION": 400,
    "WRONG_CHAIN": 400,
    "UNKNOWN_SENDER": 400,
    "BAD_SIGNATURE": 400,
    "TRANSACTION_TOO_LARGE": 413,
    "STALE_NONCE": 409,
    "NONCE_TOO_FAR": 409,
    "NONCE_TAKEN": 409,
    "DUPLICATE_TRANSACTION": 409,
    "SENDER_QUOTA_EXCEEDED": 429,
    "MEMPOOL_FULL": 503,
}
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


@dataclass(frozen=True)
class ApiSettings:
    max_body_bytes: int = 256 * 1024
    rate_per_s: float = 50.0  # token refill per client address
    burst: int = 100  # bucket size
    max_clients_tracked: int = 10_000
    auth_window_ms: int = 60_000  # a signed request's timestamp may be this far off the clock
    max_replay_entries: int = 100_000  # signed requests remembered (within the window)
    lookthrough_index: Path | None = None  # SQLite look-through index for the regulator views
    supervision_api: str = ""  # a supervision node's API URL, for anchor evidence


# ---------------------------------------------------------------------------------------------
# Problems


def problem(
    status: int, code: str, detail: str, *, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {
        "type": f"urn:consortia:error:{code}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


class _TokenBuckets:
    def __init__(self, rate: float, burst: int, max_clients: int) -> None:
        self.rate, self.burst, self.max_clients = rate, float(burst), max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str) -> bool:
        now = time.monotonic()
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return False
        if client not in self._buckets and len(self._buckets) >= self.max_clients:
            self._buckets.clear()  # crude but bounded: a forgotten client starts full
        self._buckets[client] = (tokens - 1.0, now)
        return True


class Guard:
    """Outermost ASGI layer: rate limit, body size limit (before parsing), and a catch-all that
    turns an unexpected exception into an ``INTERNAL_ERROR`` problem (logged, no traceback)."""

    def __init__(self, app: ASGIApp, settings: ApiSettings) -> None:
        self.app = app
        self.settings = settings
        self.buckets = _TokenBuckets(
            settings.rate_per_s, settings.burst, settings.max_clients_tracked
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        host = str(client[0]) if client else "unknown"
        if not self.buckets.take(host):
            await problem(
                429,
                "RATE_LIMITED",
                "too many requests from this client; slow down",
                headers={"Retry-After": "1"},
            )(scope, receive, send)
            return
        limit = self.settings.max_body_bytes
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await problem(400, "BAD_REQUEST", "invalid Content-Length")(scope, receive, send)
                return
            if size > limit:
                await self._too_large(scope, receive, send)
                return
        chunks: list[bytes] = []
        total = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, replay, watch)
        except Exception:
            log.exception("unhandled error serving %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await problem(500, "INTERNAL_ERROR", "internal error; see the node's log")(
                scope, receive, send
            )

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await problem(
            413,
            "PAYLOAD_TOO_LARGE",
            f"request body exceeds {self.settings.max_body_bytes} bytes",
        )(scope, receive, send)


# ---------------------------------------------------------------------------------------------
# JSON views


def _record(
    backend: ApiBackend, key: bytes, cls: type[Any], what: str, *, with_value: bool = True
) -> dict[str, Any]:
    if len(key) > MAX_STATE_KEY:
        raise ApiProblem(400, "BAD_REQUEST", f"state key longer than {MAX_STATE_KEY} bytes")
    read = backend.state_value(key)
    if read.value is None:
        raise ApiProblem(404, "NOT_FOUND", f"no {what}")
    record = codec.decode_struct(cls, read.value)
    return {**proven(read, with_value=with_value), "record": jsonable(record)}


_PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": f"{TITLES[status]} (problem details)"}
    for status in (400, 404, 413, 429, 500)
}


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class SubmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tx: StrictStr
    wait: StrictBool = False


# ---------------------------------------------------------------------------------------------
# The application


def create_app(
    backend: ApiBackend,
    settings: ApiSettings | None = None,
    *,
    clock_ms: Callable[[], int] = _wall_clock_ms,
    evidence_fetch: Fetch = http_fetch,
) -> FastAPI:
    """The API over ``backend``. ``clock_ms`` is the wall clock signed requests are checked
    against (the API is an edge: wall clock, not block time); ``evidence_fetch`` reads the anchor
    half of a bundle from ``settings.supervision_api`` (HTTP; a test may serve it in-process)."""
    settings = settings or ApiSettings()
    authenticator = RequestAuthenticator(
        window_ms=settings.auth_window_ms, max_replay_entries=settings.max_replay_entries
    )
    records_index = RecordsIndex()  # one scan of the head per block for every private view
    app = FastAPI(
        title="consortia",
        version="1",
        description="A permissioned two-tier consortium blockchain: public reads and "
        "transaction submission. Errors are RFC 9457 problem details with a stable `code`.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        responses=_PROBLEMS,
    )
    app.add_middleware(Guard, settings=settings)
    app.include_router(stream_router(backend))
    app.include_router(webui_router())

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> Response:
        return problem(exc.status, exc.code, exc.detail)

    @app.exception_handler(AuthError)
    async def _auth_problem(request: Request, exc: AuthError) -> Response:
        # Both ways in (RFC 9110 §11.6.1: one challenge per scheme): a signed request, or
        # for a GET the bearer of a session grant (``consortia api login``).
        headers = {"WWW-Authenticate": WWW_AUTHENTICATE} if exc.status == 401 else None
        return problem(exc.status, exc.code, exc.detail, headers=headers)

    async def caller(request: Request) -> registry.Account:
        """The registry account that signed this request, or whose session grant it carries
        (``Authorization: Consortia-Session``, GET only); a 401/403 problem otherwise."""
        state = backend.head()
        token = session_token_of(request.headers)
        if token is not None:
            return verify_session(
                token,
                suite=state.suite,
                chain_id=state.chain_id,
                lookup=lambda address: load_account(state, address),
                method=request.method,
                now_ms=clock_ms(),
                window_ms=settings.auth_window_ms,
            )
        target = request.scope.get("raw_path") or request.url.path.encode()
        path = target.decode("latin-1")
        query = request.scope.get("query_string") or b""
        if query:
            path += "?" + query.decode("latin-1")
        return authenticator.authenticate(
            suite=state.suite,
            chain_id=state.chain_id,
            lookup=lambda address: load_account(state, address),
            method=request.method,
            path=path,
            headers=request.headers,
            body=await request.body(),
            now_ms=clock_ms(),
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for err in exc.errors()[:10]:
            loc = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        return problem(400, "BAD_REQUEST", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        code = codes.get(exc.status_code, f"HTTP_{exc.status_code}")
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "")
        if exc.status_code == 404:
            detail = f"no such resource: {request.url.path}"
        return problem(exc.status_code, code, detail, headers=exc.headers)

    # -- operations ----------------------------------------------------------------------------

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, Any]:
        """The process is alive and serving."""
        return {"ok": True}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> Response:
        """Ready once at least one block is committed (503 problem before)."""
        height = backend.head_height()
        if height < 1:
            return problem(503, "NOT_READY", "no block committed yet")
        return JSONResponse({"ok": True, "height": height})

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus text exposition format 0.0.4."""
        return Response(backend.metrics_text(), media_type=METRICS_CONTENT_TYPE)

    # -- chain ---------------------------------------------------------------------------------

    @app.get("/v1/status", tags=["chain"])
    async def status() -> dict[str, Any]:
        """Chain id, suite, head height, last block hash, state root and the node's public facts."""
        state = backend.head()
        return {
            **backend.info(),
            "chain_id": state.chain_id,
            "suite": state.suite_name,
            "height": state.height,
            "last_block_hash": state.last_block_hash.hex(),
            "last_time_ms": state.last_time_ms,
            "state_root": state.state_root.hex(),
            "validators": [
                {"address": v.address.hex(), "power": v.power} for v in state.validators.validators
            ],
        }

    @app.get("/v1/blocks/{height}", tags=["chain"])
    async def get_block(height: int) -> dict[str, Any]:
        """A committed block: header fields, transaction hashes and its certificate's signers."""
        block = backend.block(height)
        cert = backend.certificate(height)
        if block is None or cert is None:
            raise ApiProblem(404, "NOT_FOUND", f"no block {height}")
        suite = backend.suite
        return {
            "height": height,
            "hash": cert.block_hash.hex(),
            "header": jsonable(block.header),
            "transactions": [tx.hash(suite).hex() for tx in block.transactions],
            "evidence": len(block.evidence),
            "certificate": {
                "round": cert.round,
                "signers": [s.validator.hex() for s in cert.signatures],
            },
            "last_commit_signers": (
                []
                if block.last_commit is None
                else [s.validator.hex() for s in block.last_commit.signatures]
            ),
        }

    @app.get("/v1/blocks/{height}/certificate", tags=["chain"])
    async def get_certificate(height: int) -> dict[str, Any]:
        """The commit certificate of block ``height`` (decoded, and its canonical bytes)."""
        cert = backend.certificate(height)
        if cert is None:
            raise ApiProblem(404, "NOT_FOUND", f"no certificate for block {height}")
        return {**jsonable(cert), "encoded": cert.encode().hex()}

    def forbidden(what: str) -> ApiProblem:
        return ApiProblem(403, "FORBIDDEN", f"this account may not read {what}")

    def unknown(acct: registry.Account, what: str) -> ApiProblem:
        """404 for the regulator, the same 403 as for an existing record for anyone else."""
        return ApiProblem(404, "NOT_FOUND", f"no {what}") if is_regulator(acct) else forbidden(what)

    @app.get("/v1/tx/{tx_hash}", tags=["chain"], responses=PRIVATE_PROBLEMS)
    async def get_tx(tx_hash: str, acct: registry.Account = Depends(caller)) -> dict[str, Any]:
        """A committed transaction with its receipt (status, code, events), height and position.

        Signed request required. Allowed: the transaction's sender, an account of the sender's
        organization, the regulator (403 ``FORBIDDEN`` otherwise; 404 only for the regulator)."""
        h = hex_arg(tx_hash, "transaction hash", max_bytes=MAX_HASH_BYTES)
        what = f"committed transaction {h.hex()}"
        found = backend.find_tx(h)
        if found is None:
            raise unknown(acct, what)
        height, index = found
        block = backend.block(height)
        receipts = backend.receipts(height)
        if block is None or receipts is None or index >= len(block.transactions):
            raise unknown(acct, what)
        tx = block.transactions[index]
        access = tx_access(read_context(backend.head()), acct, tx.sender)
        if access is None:
            raise forbidden(what)
        return {
            "access": access,
            "tx_hash": h.hex(),
            "height": height,
            "index": index,
            "transaction": jsonable(tx),
            "receipt": jsonable(receipts[index]),
        }

    @app.get("/v1/state/{key_hex}", tags=["state"], responses=PRIVATE_PROBLEMS)
    async def get_state(key_hex: str, request: Request) -> dict[str, Any]:
        """A raw state value at the head with its (non-)membership proof and the state root.

        Public prefixes (anchoring, consensus, registry, governance, supervision, securities'
        security records, funds' fund and NAV records, reports, orders, insurance products,
        dividends and splits) are open. Wallets and investors are refused to everyone
        (``PRIVATE_RECORD``: use the typed reads). Any other key needs a signed request: holdings,
        securities accounts, fund positions and orders, policies, escrows by their owner rules;
        everything else (and absent private keys) the regulator only."""
        key = hex_arg(key_hex, "state key", max_bytes=MAX_STATE_KEY)
        if key.startswith(PRIVATE_PREFIXES):
            raise ApiProblem(
                403, "PRIVATE_RECORD", "this record carries a sealed identity; use the typed read"
            )
        if is_public_key(key):
            return proven(backend.state_value(key))
        acct = await caller(request)
        state = backend.head()
        read = read_at(state, key)
        access = state_access(read_context(state), acct, key, read.value)
        if access is None:
            raise forbidden(f"state key {key!r}")
        return {**proven(read), "access": access}

    # -- typed reads ---------------------------------------------------------------------------

    @app.get("/v1/accounts/{address_hex}", tags=["records"])
    async def get_account(address_hex: str) -> dict[str, Any]:
        """A registry account (organization, roles, next nonce, frozen) at the head."""
        address = hex_arg(address_hex, "address", max_bytes=64)
        return _record(backend, registry.account_key(address), registry.Account, "account")

    @app.get("/v1/holdings/{code}/{account_id}", tags=["private"], responses=PRIVATE_PROBLEMS)
    async def get_holding(
        code: str, account_id: str, acct: registry.Account = Depends(caller)
    ) -> dict[str, Any]:
        """One securities account's position in one security, with its proof.

        Signed request required. Allowed: the investor owning the securities account, a broker
        account of the investor's broker organization, the regulator (403 ``FORBIDDEN``
        otherwise, unknown ids included; 404 only for the regulator)."""
        key = securities.holding_key(code, account_id)
        if len(key) > MAX_STATE_KEY:
            raise ApiProblem(400, "BAD_REQUEST", f"state key longer than {MAX_STATE_KEY} bytes")
        what = f"holding {code!r}/{account_id!r}"
        state = backend.head()
        read = read_at(state, key)
        if read.value is None:
            raise unknown(acct, what)
        holding = codec.decode_struct(securities.Holding, read.value)
        access = securities_account_access(read_context(state), acct, holding.account_id)
        if access is None:
            raise forbidden(what)
        return {**proven(read), "access": access, "record": jsonable(holding)}

    @app.get("/v1/wallets/{wallet_id}", tags=["private"], responses=PRIVATE_PROBLEMS)
    async def get_wallet(
        wallet_id: str, acct: registry.Account = Depends(caller)
    ) -> dict[str, Any]:
        """An e-CNY wallet (balance), without its sealed identity (and so without the raw value).

        Signed request required. Allowed: the owner (for a sub-wallet also the parent wallet's
        owner), an ``operator_bank`` account of the wallet's operator bank, the regulator (403
        ``FORBIDDEN`` otherwise, unknown ids included; 404 only for the regulator)."""
        key = ecny.wallet_key(wallet_id)
        if len(key) > MAX_STATE_KEY:
            raise ApiProblem(400, "BAD_REQUEST", f"state key longer than {MAX_STATE_KEY} bytes")
        what = f"wallet {wallet_id!r}"
        state = backend.head()
        read = read_at(state, key)
        if read.value is None:
            raise unknown(acct, what)
        wallet = codec.decode_struct(ecny.Wallet, read.value)
        access = wallet_access(read_context(state), acct, wallet)
        if access is None:
            raise forbidden(what)
        return {**proven(read, with_value=False), "access": access, "record": jsonable(wallet)}

    @app.get("/v1/anchors/{chain_id}", tags=["records"])
    async def get_anchor(chain_id: str) -> dict[str, Any]:
        """Supervision chain: a registered business chain and its last anchored header."""
        key = anchoring.chain_key(chain_id)
        return _record(backend, key, anchoring.AnchoredChain, "anchored chain")

    # -- private reads (signed requests, role-based) ---------------------------------------------

    @app.get("/v1/investors/{investor_id}", tags=["private"], responses=PRIVATE_PROBLEMS)
    async def get_investor(
        investor_id: str, acct: registry.Account = Depends(caller)
    ) -> dict[str, Any]:
        """An investor (without its sealed identity), its securities accounts and their holdings.

        Signed request required. Allowed: the investor's own account, a broker account of the
        investor's broker organization, the regulator (403 ``FORBIDDEN`` otherwise, unknown ids
        included; 404 only for the regulator)."""
        state = backend.head()
        what = f"investor {investor_id!r}"
        if len(investor_id.encode()) > MAX_STATE_KEY // 2:
            raise ApiProblem(400, "BAD_REQUEST", "investor id too long")
        raw = state.tree.get(investors.investor_key(investor_id))
        if raw is None:
            raise (
                ApiProblem(404, "NOT_FOUND", f"no {what}")
                if is_regulator(acct)
                else forbidden(what)
            )
        inv = codec.decode_struct(investors.Investor, raw)
        access = investor_access(read_context(state), acct, inv)
        if access is None:
            raise forbidden(what)
        return {
            **proven(read_at(state, investors.investor_key(investor_id)), with_value=False),
            "access": access,
            "record": jsonable(inv),
            "accounts": [
                {"account": jsonable(sa), "holdings": jsonable(held)}
                for sa, held in records_index.accounts(state, investor_id)
            ],
        }

    @app.get("/v1/wallets/{wallet_id}/private", tags=["private"], responses=PRIVATE_PROBLEMS)
    async def get_wallet_private(
        wallet_id: str, acct: registry.Account = Depends(caller)
    ) -> dict[str, Any]:
        """A wallet's private view: the record (no sealed identity) with its effective limits
        and today's spending. Signed request required. Allowed: the owner, an ``operator_bank``
        account of the wallet's operator bank, the regulator."""
        state = backend.head()
        what = f"wallet {wallet_id!r}"
        if len(wallet_id.encode()) > MAX_STATE_KEY // 2:
            raise ApiProblem(400, "BAD_REQUEST", "wallet id too long")
        raw = state.tree.get(ecny.wallet_key(wallet_id))
        if raw is None:
            raise (
                ApiProblem(404, "NOT_FOUND", f"no {what}")
                if is_regulator(acct)
                else forbidden(what)
            )
        wallet = codec.decode_struct(ecny.Wallet, raw)
        ctx = read_context(state)
        access = wallet_access(ctx, acct, wallet)
        if access is None:
            raise forbidden(what)
        limits = ecny.wallet_limits(ctx, wallet)
        return {
            **proven(read_at(state, ecny.wallet_key(wallet_id)), with_value=False),
            "access": access,
            "record": jsonable(wallet),
            "limits": jsonable(limits),
            "day": wallet.day,
            "day_spent": wallet.day_spent,
        }

    app.include_router(records_router(backend, caller, records_index))  # funds, policies, /v1/me
    app.include_router(evidence_router(backend, caller, settings, fetch=evidence_fetch))
    app.include_router(supervision_router(backend, settings, caller))  # dashboard data
    app.include_router(contracts_router(backend, caller))  # contract records, queries
    app.include_router(notary_router(backend, caller, settings.supervision_api, evidence_fetch))

    # -- submission ----------------------------------------------------------------------------

    @app.post("/v1/tx", tags=["transactions"])
    async def submit(req: SubmitRequest) -> Response:
        """Submit one signed transaction (canonical encoding, hex); ``wait`` for its receipt.

        200: committed (``ok`` tells whether it succeeded, ``code`` why not); 202: admitted, not
        yet committed; 4xx problem: refused at admission (nothing changed)."""
        raw = hex_arg(req.tx, "tx", max_bytes=settings.max_body_bytes)
        reply = (await backend.submit([raw], req.wait))[0]
        out = jsonable(reply)
        if "height" in reply:
            return JSONResponse(out)
        if reply.get("ok") or reply.get("code") == "NOT_COMMITTED_IN_TIME":
            return JSONResponse(out, status_code=202)
        code = str(reply.get("code", "TRANSACTION_REJECTED"))
        return problem(ADMISSION_STATUS.get(code, 400), code, str(reply.get("message", "")))

    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI documents validation errors as 422; this API answers them with a 400 problem.
        Error responses are documented as ``application/problem+json``, as they are served."""
        if app.openapi_schema is None:
            schema = plain_openapi()
            for item in schema.get("paths", {}).values():
                for operation in item.values():
                    responses = operation.get("responses", {})
                    responses.pop("422", None)
                    for status, response in responses.items():
                        content = response.get("content", {})
                        if str(status).startswith(("4", "5")) and "application/json" in content:
                            content[PROBLEM_JSON] = content.pop("application/json")
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        return app.openapi_schema or plain_openapi()

    app.openapi = openapi  # type: ignore[method-assign]
    return app


# ApiProblem, Problem and jsonable live in ``consortia.api.reads``; named here too for callers
# of the application module.
__all__ = ["ApiProblem", "ApiSettings", "Guard", "Problem", "create_app", "jsonable", "problem"]
