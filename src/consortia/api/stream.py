"""``GET /v1/stream``: committed blocks and their events as Server-Sent Events.

One SSE event per committed block, in height order, ``id`` = the height (so a reconnecting
client's ``Last-Event-ID`` resumes after it)::

    event: block
    id: 12
    data: {"height": 12, "hash": "...", "time_ms": ..., "proposer": "...", "tx_count": 2,
           "transactions": [{"tx_hash": "...", "call": "ecny.transfer", "sender": "...",
                             "ok": true, "code": "", "events": [{"module": "ecny",
                             "kind": "transfer", "attributes": {...}}]}]}

(``data`` is one line of JSON.) ``from_height`` replays stored blocks from that height, then goes
live; without it (and without ``Last-Event-ID``) the stream starts after the current head. A
replay longer than ``max_backlog`` blocks is refused (400 ``BACKLOG_TOO_LARGE``: page through
``/v1/blocks/{height}`` instead). ``modules=ecny,securities`` keeps only the transactions that call
one of those modules or emit an event from one, and only those modules' events; every block is
still sent (with its full ``tx_count``), so heights stay contiguous. A comment line
(``: heartbeat``) goes out every ``heartbeat_s`` without a block. At most ``max_streams``
streams are open per API (503 ``TOO_MANY_STREAMS`` beyond).

Who sees what follows ``/v1/tx/{hash}``: headers, transaction hashes, ``ok`` and ``code`` are public
(``/v1/blocks`` lists the hashes already); a transaction's ``call``, ``sender`` and receipt events
only to a signed request (``consortia.api.auth``: the same headers as any private read, over
``GET /v1/stream?...``) by an account ``consortia.api.private.tx_access`` allows — the sender, its
organization, the regulator (who so sees every transaction). An unsigned client gets
``{"tx_hash", "ok", "code"}`` per transaction; ``modules`` needs a signed request (401
``AUTH_REQUIRED``: filtering would reveal the calls) and keeps only transactions the caller may
read. Events are scrubbed as ``/v1/tx`` scrubs receipts (``jsonable``: no sealed identities).
Access is decided per block against the head at the time it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from consortia.api import app as api_app
from consortia.api.auth import (
    HEADER_ACCOUNT,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    AuthError,
    RequestAuthenticator,
)
from consortia.api.backend import ApiBackend, CommittedBlock
from consortia.api.private import load_account, read_context, tx_access
from consortia.api.reads import ApiProblem, Problem, jsonable
from consortia.execution.context import TxContext
from consortia.ledger.types import TxStatus
from consortia.modules import registry

# May the stream's caller read the transactions of this sender? (None: public view only.)
Reader = Callable[[bytes], bool]

SSE_MEDIA_TYPE = "text/event-stream"
_MODULE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class StreamSettings:
    max_streams: int = 64  # concurrent streams per API
    heartbeat_s: float = 15.0
    max_backlog: int = 1_000  # blocks a stream may replay before going live
    max_modules: int = 32  # names in one ``modules`` filter
    retry_ms: int = 2_000  # the reconnection delay suggested to clients


DEFAULT_STREAM_SETTINGS = StreamSettings()


def block_event(
    item: CommittedBlock, modules: frozenset[str] | None, may_read: Reader | None = None
) -> dict[str, Any]:
    """The JSON ``data`` of one ``block`` event (see the module docstring). ``may_read``: which
    senders' transactions are shown in full (None: none; ``modules`` then must be None)."""
    header = item.block.header
    txs: list[dict[str, Any]] = []
    for index, tx in enumerate(item.block.transactions):
        receipt = item.receipts[index] if index < len(item.receipts) else None
        public = {
            "tx_hash": tx.hash(item.suite).hex() if receipt is None else receipt.tx_hash.hex(),
            "ok": receipt is not None and receipt.status == TxStatus.OK,
            "code": "" if receipt is None else receipt.code,
        }
        if may_read is None or not may_read(tx.sender):
            if modules is None:
                txs.append(public)
            continue
        events: list[dict[str, Any]] = [] if receipt is None else jsonable(list(receipt.events))
        if modules is not None:
            if tx.module not in modules and not any(e["module"] in modules for e in events):
                continue
            events = [e for e in events if e["module"] in modules]
        txs.append(
            {
                **public,
                "call": f"{tx.module}.{tx.method}",
                "sender": tx.sender.hex(),
                "events": events,
            }
        )
    return {
        "height": item.height,
        "hash": item.block_hash.hex(),
        "time_ms": header.time_ms,
        "proposer": header.proposer.hex(),
        "tx_count": len(item.block.transactions),
        "transactions": txs,
    }


def _reader(ctx: TxContext, acct: registry.Account) -> Reader:
    def may_read(sender: bytes) -> bool:
        return tx_access(ctx, acct, sender) is not None

    return may_read


def sse(event: str, event_id: str, data: Any) -> str:
    payload = json.dumps(data, separators=(",", ":"), sort_keys=True)
    return f"event: {event}\nid: {event_id}\ndata: {payload}\n\n"


class _Slots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def take(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active = max(0, self.active - 1)


class _SlotResponse(StreamingResponse):
    """Releases its stream slot exactly once, however the response ends (even unstarted)."""

    def __init__(self, content: AsyncIterator[str], slots: _Slots) -> None:
        super().__init__(
            content,
            media_type=SSE_MEDIA_TYPE,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._slots: _Slots | None = slots

    def release(self) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.release()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()


def _parse_modules(text: str | None, limit: int) -> frozenset[str] | None:
    if text is None:
        return None
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    if not names or len(names) > limit or not all(_MODULE_NAME.match(n) for n in names):
        raise ApiProblem(
            400, "BAD_REQUEST", f"modules must be 1..{limit} comma-separated module names"
        )
    return names


def stream_router(backend: ApiBackend, settings: StreamSettings | None = None) -> APIRouter:
    """The ``/v1/stream`` route over ``backend`` (``DEFAULT_STREAM_SETTINGS`` unless given)."""
    config = settings or DEFAULT_STREAM_SETTINGS
    slots = _Slots(config.max_streams)
    authenticator = RequestAuthenticator()
    router = APIRouter()

    def caller(request: Request) -> registry.Account | None:
        """The signing account, or None for an unsigned request (401 if badly signed)."""
        names = (HEADER_ACCOUNT.lower(), HEADER_TIMESTAMP.lower(), HEADER_SIGNATURE.lower())
        if not any(name in request.headers for name in names):
            return None
        state = backend.head()
        path = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
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
            body=b"",
            now_ms=time.time_ns() // 1_000_000,
        )

    @router.get(
        "/v1/stream",
        tags=["chain"],
        response_class=StreamingResponse,
        responses={
            200: {"content": {SSE_MEDIA_TYPE: {}}, "description": "Server-Sent Events"},
            503: {"model": Problem, "description": "TOO_MANY_STREAMS (problem details)"},
        },
    )
    async def stream(
        request: Request,
        from_height: int | None = Query(None, ge=1, le=2**63 - 1),
        modules: str | None = Query(None, max_length=2048),
    ) -> Response:
        """Committed blocks with their transactions' outcomes and events (Server-Sent Events;
        see docs/api.md, "Event stream"). ``from_height``: replay from there (at most
        ``max_backlog`` blocks), then live; ``modules``: comma-separated filter."""
        wanted = _parse_modules(modules, config.max_modules)
        acct = caller(request)
        if wanted is not None and acct is None:
            raise AuthError("AUTH_REQUIRED", "the modules filter needs a signed request")
        head = backend.head_height()
        start = head + 1
        if from_height is not None:
            start = from_height
        else:
            last_id = request.headers.get("last-event-id", "").strip()
            if last_id.isdigit() and len(last_id) < 20:
                start = int(last_id) + 1
        if head - start + 1 > config.max_backlog:
            raise ApiProblem(
                400,
                "BACKLOG_TOO_LARGE",
                f"a stream replays at most {config.max_backlog} blocks; the head is {head}",
            )
        if not slots.take():
            return api_app.problem(
                503,
                "TOO_MANY_STREAMS",
                f"at most {config.max_streams} streams are open; retry later",
                headers={"Retry-After": "5"},
            )
        return _SlotResponse(_events(backend, start, wanted, acct, config), slots)

    return router


async def _events(
    backend: ApiBackend,
    start: int,
    modules: frozenset[str] | None,
    acct: registry.Account | None,
    config: StreamSettings,
) -> AsyncIterator[str]:
    blocks = backend.committed(start)
    pending: asyncio.Future[CommittedBlock] | None = None
    try:
        yield f"retry: {config.retry_ms}\n: consortia stream from height {start}\n\n"
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(blocks))
            done, _ = await asyncio.wait({pending}, timeout=config.heartbeat_s)
            if not done:
                yield ": heartbeat\n\n"
                continue
            item = pending.result()
            pending = None
            may_read = None if acct is None else _reader(read_context(backend.head()), acct)
            yield sse("block", str(item.height), block_event(item, modules, may_read))
    except StopAsyncIteration:
        return
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        aclose = getattr(blocks, "aclose", None)  # an async generator: unsubscribe now
        if aclose is not None:
            with contextlib.suppress(RuntimeError):
                await aclose()


__all__ = ["DEFAULT_STREAM_SETTINGS", "StreamSettings", "block_event", "stream_router"]
