"""The regulator dashboard's data: ``GET /v1/supervision/...`` and the public ``GET /v1/activity``.

Regulator only (a signed request by an account with the ``regulator`` role: 401 problems from
``consortia.api.auth`` for an unsigned or badly signed request, 403 ``FORBIDDEN`` for anyone
else). Most views read the look-through index (``consortia.lookthrough``), a SQLite file a
``consortia supervise follow`` process keeps level with the business chains; the node names it
in ``NodeConfig.lookthrough_index`` (``ApiSettings.lookthrough_index``). The API opens it
**read-only** (SQLite ``mode=ro``, a fresh connection per request, every query of one request
in one read transaction: WAL lets it read while the follower writes), in a worker thread so a
long query never blocks the node's event loop. Without an index (none configured, the file not
written yet, another schema) these views answer 503 ``LOOKTHROUGH_UNAVAILABLE``. Every answer
carries ``indexed``: each indexed chain's height, block hash and block time (the index's
freshness).

- ``overview``: per business chain the indexed height, the anchored height (this node's own
  state, when it is a supervision node), the lag, stored alerts, open freezes and orders.
- ``alerts``, ``large-payments``: newest first, ``limit`` per page, ``after=<id>`` for the next.
- ``investors/{investor_id}``: look-through across chains (accounts, holdings, wallets, history).
- ``holders/{chain_id}/{code}``: the holder register of one security (``height`` for the past).
- ``freezes``: open freezes (and ``lifted=N`` recently lifted ones).
- ``notary``: notary deposits per institution per project, and the gap report (projects
  idle for more than ``gap_days`` days of block time).
- ``orders`` and ``anchoring`` read the supervision chain's own head state (no index needed: on a
  business node they are empty, ``tier`` says which); ``indexed`` is null without an index.

``/v1/activity`` is public on every node: recent blocks' time, transaction count, commit round
and the interval since the previous block, read from the stored blocks and certificates.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from consortia import codec
from consortia.api import app as api_app
from consortia.api.backend import ApiBackend
from consortia.api.private import is_regulator
from consortia.api.reads import PRIVATE_PROBLEMS
from consortia.execution.state import ChainState
from consortia.lookthrough.index import LookthroughError, LookthroughIndex
from consortia.lookthrough.surveillance import RULES
from consortia.modules import TIER_KEY, anchoring, orders, registry

Caller = Callable[..., Coroutine[Any, Any, registry.Account]]
T = TypeVar("T")

UNAVAILABLE = "LOOKTHROUGH_UNAVAILABLE"
MAX_ID_BYTES = 256  # a path id or filter longer than this is a bad request
DEFAULT_PAGE = 50
MAX_PAGE = 500
DEFAULT_HISTORY = 100
MAX_HISTORY = 1_000
DEFAULT_HOLDERS = 1_000
MAX_HOLDERS = 10_000
MAX_LIFTED = 500
DEFAULT_ORDERS = 100
MAX_ORDERS = 1_000
DEFAULT_ACTIVITY = 100
MAX_ACTIVITY = 500
MAX_ROW_ID = (1 << 63) - 1  # SQLite's largest integer
MAX_HEIGHT = (1 << 63) - 1
AFTER = "`next_after` of the previous page."
# Supervision records are followed block by block from the receipts; past this many new blocks
# one pass over the state is cheaper than reading their receipts.
MAX_CATCH_UP = 256
DEFAULT_GAP_DAYS = 30  # notary gap report: a project idle this long is reported
MAX_GAP_DAYS = 36_500
_ORDER_PREFIX = orders.order_key("")


def _problem(status: int, code: str, detail: str) -> Exception:
    return api_app.ApiProblem(status, code, detail)


def _check_id(value: str | None, what: str) -> None:
    if value is not None and not 1 <= len(value.encode()) <= MAX_ID_BYTES:
        raise _problem(400, "BAD_REQUEST", f"{what} must be 1..{MAX_ID_BYTES} bytes")


def _next_after(rows: list[dict[str, Any]], limit: int) -> int | None:
    """The cursor of the next page: the last row's id when the page is full."""
    return int(rows[-1]["id"]) if len(rows) == limit and rows else None


def is_supervision_state(state: ChainState) -> bool:
    return state.tree.get(TIER_KEY) == b"supervision"


@dataclass(frozen=True)
class _Ids:
    height: int
    chains: frozenset[str]  # registered business chains
    orders: frozenset[str]  # issued order ids


def _scan(state: ChainState) -> _Ids:
    """Every registered chain and order id of ``state``: one pass over the state tree (it has
    no prefix index). Safe in a worker thread: a ``ChainState`` is immutable."""
    chains: set[str] = set()
    order_ids: set[str] = set()
    for key, _ in state.tree.items():
        chain_id = anchoring.chain_id_of_key(key)
        if chain_id is not None:
            chains.add(chain_id)
        elif key.startswith(_ORDER_PREFIX):
            order_ids.add(key[len(_ORDER_PREFIX) :].decode())
    return _Ids(state.height, frozenset(chains), frozenset(order_ids))


class SupervisionRecords:
    """The registered business chains and the issued orders of a supervision chain's head.

    Built once by a pass over the state (in a worker thread), then kept up to date from the
    ``chain_registered`` and ``order_issued`` events of each newly committed block (records
    are never deleted: a chain stays registered, an order is never changed). The records
    themselves are read from the head state at each request."""

    def __init__(self, backend: ApiBackend) -> None:
        self.backend = backend
        self._ids = _Ids(-1, frozenset(), frozenset())

    async def ids(self, state: ChainState) -> _Ids:
        if not is_supervision_state(state):
            return _Ids(state.height, frozenset(), frozenset())
        known = self._ids
        if known.height == state.height:
            return known
        if known.height < 0 or not 0 < state.height - known.height <= MAX_CATCH_UP:
            fresh = await run_in_threadpool(_scan, state)
        else:
            chains, order_ids = set(known.chains), set(known.orders)
            for height in range(known.height + 1, state.height + 1):
                for receipt in self.backend.receipts(height) or ():
                    for ev in receipt.events:
                        if ev.module == anchoring.NAME and ev.kind == "chain_registered":
                            chains.add(str(ev.attributes["chain_id"]))
                        elif ev.module == orders.NAME and ev.kind == "order_issued":
                            order_ids.add(str(ev.attributes["order_id"]))
            fresh = _Ids(state.height, frozenset(chains), frozenset(order_ids))
        if fresh.height >= self._ids.height:
            self._ids = fresh
        return fresh

    async def anchored(self, state: ChainState) -> dict[str, anchoring.AnchoredChain]:
        out = {}
        for chain_id in sorted((await self.ids(state)).chains):
            chain = anchoring.read_chain(state.tree, chain_id)
            if chain is not None:
                out[chain_id] = chain
        return out

    async def orders(self, state: ChainState) -> list[orders.Order]:
        """Every order, newest first (issued height, then order id)."""
        found = []
        for order_id in (await self.ids(state)).orders:
            raw = state.tree.get(orders.order_key(order_id))
            if raw is not None:
                found.append(codec.decode_struct(orders.Order, raw))
        found.sort(key=lambda o: (-o.issued_height, o.order_id))
        return found


class ActivityCache:
    """Per-height facts of committed blocks for ``/v1/activity`` (a committed block never
    changes, so a row is decoded once; bounded)."""

    def __init__(self, backend: ApiBackend, capacity: int = 4 * MAX_ACTIVITY) -> None:
        self.backend = backend
        self.capacity = capacity
        self._rows: dict[int, dict[str, Any]] = {}

    def row(self, height: int) -> dict[str, Any] | None:
        cached = self._rows.get(height)
        if cached is not None:
            return cached
        block = self.backend.block(height)
        cert = self.backend.certificate(height)
        if block is None or cert is None:
            return None
        row = {
            "height": height,
            "time_ms": block.header.time_ms,
            "txs": len(block.transactions),
            "round": cert.round,
            "proposer": block.header.proposer.hex(),
        }
        if len(self._rows) >= self.capacity:
            for old in sorted(self._rows)[: self.capacity // 2]:
                del self._rows[old]
        self._rows[height] = row
        return row


def _anchoring_row(
    chain_id: str, anchored: anchoring.AnchoredChain | None, head: dict[str, Any] | None
) -> dict[str, Any]:
    """One business chain's anchoring: the business head is the index's (or the anchored
    height, if the index is behind the light client); lag = head - anchored."""
    indexed = None if head is None else int(head["height"])
    row: dict[str, Any] = {
        "chain_id": chain_id,
        "registered": anchored is not None,
        "registered_height": None if anchored is None else anchored.registered_height,
        "anchored_height": None if anchored is None else anchored.height,
        "anchored_block_hash": None if anchored is None else anchored.block_hash.hex(),
        "anchored_time_ms": None if anchored is None or anchored.height == 0 else anchored.time_ms,
        "indexed_height": indexed,
        "indexed_time_ms": None if head is None else int(head["time_ms"]),
        "lag_blocks": None,
        "lag_ms": None,
    }
    if anchored is not None and head is not None and indexed is not None:
        row["lag_blocks"] = max(0, indexed - anchored.height)
        if anchored.height > 0:  # before the first anchor there is no anchored block time
            behind = indexed > anchored.height
            row["lag_ms"] = max(0, int(head["time_ms"]) - anchored.time_ms) if behind else 0
    return row


def supervision_router(
    backend: ApiBackend, settings: api_app.ApiSettings, caller: Caller
) -> APIRouter:
    """The regulator dashboard's endpoints and ``/v1/activity`` over ``backend``; ``caller``
    is the API's signed-request dependency (the registry account of the caller)."""
    router = APIRouter()
    records = SupervisionRecords(backend)
    activity_rows = ActivityCache(backend)
    private: dict[int | str, dict[str, Any]] = {
        401: PRIVATE_PROBLEMS[401],
        403: {
            "model": api_app.Problem,
            "description": "FORBIDDEN: not the regulator; SESSION_READ_ONLY: a session was sent "
            "with a method other than GET (problem details)",
        },
        503: {
            "model": api_app.Problem,
            "description": "LOOKTHROUGH_UNAVAILABLE: this node has no look-through index",
        },
    }

    async def regulator(acct: registry.Account = Depends(caller)) -> registry.Account:
        if not is_regulator(acct):
            raise _problem(403, "FORBIDDEN", "the supervision views are the regulator's only")
        return acct

    def open_index() -> LookthroughIndex:
        path: Path | None = settings.lookthrough_index
        if path is None:
            raise _problem(
                503, UNAVAILABLE, "this node serves no look-through index (lookthrough_index)"
            )
        try:
            return LookthroughIndex(path, readonly=True)
        except LookthroughError as exc:
            raise _problem(
                503, UNAVAILABLE, f"the look-through index is not available yet: {exc}"
            ) from None

    async def query(fn: Callable[[LookthroughIndex], T]) -> T:
        """``fn`` over one consistent read of the index, in a worker thread."""

        def run() -> T:
            idx = open_index()
            try:
                with idx.snapshot():
                    return fn(idx)
            except sqlite3.Error as exc:
                raise _problem(
                    503, UNAVAILABLE, f"the look-through index cannot be read: {exc}"
                ) from None
            finally:
                idx.close()

        return await run_in_threadpool(run)

    async def freshness() -> list[dict[str, Any]] | None:
        """The index's freshness, or None when there is none (for views that need no index)."""
        try:
            return await query(lambda idx: idx.chain_heads())
        except api_app.ApiProblem as exc:
            if exc.code == UNAVAILABLE:
                return None
            raise

    def supervision_head(state: ChainState) -> dict[str, Any]:
        return {
            "chain_id": state.chain_id,
            "tier": "supervision" if is_supervision_state(state) else "business",
            "height": state.height,
            "time_ms": state.last_time_ms,
        }

    @router.get("/v1/supervision/overview", tags=["supervision"], responses=private)
    async def overview(acct: registry.Account = Depends(regulator)) -> dict[str, Any]:
        """Per business chain: indexed height, anchored height (this node's state), lag in
        blocks and ms, stored alerts (by severity), open freezes, orders addressed to it."""

        def q(idx: LookthroughIndex) -> tuple[Any, ...]:
            return idx.chain_heads(), idx.alert_counts(), idx.open_freeze_counts()

        heads, alert_counts, freeze_counts = await query(q)
        state = backend.head()
        anchored = await records.anchored(state)
        by_chain: dict[str, int] = {}
        for order in await records.orders(state):
            by_chain[order.chain_id] = by_chain.get(order.chain_id, 0) + 1
        head_of = {h["chain_id"]: h for h in heads}
        chains = []
        for chain_id in sorted(set(head_of) | set(anchored)):
            row = _anchoring_row(chain_id, anchored.get(chain_id), head_of.get(chain_id))
            severities = alert_counts.get(chain_id, {})
            chains.append(
                {
                    "chain_id": chain_id,
                    "indexed_height": row["indexed_height"],
                    "indexed_time_ms": row["indexed_time_ms"],
                    "registered": row["registered"],
                    "anchored_height": row["anchored_height"],
                    "lag_blocks": row["lag_blocks"],
                    "lag_ms": row["lag_ms"],
                    "alerts": sum(severities.values()),
                    "alerts_by_severity": dict(sorted(severities.items())),
                    "open_freezes": freeze_counts.get(chain_id, 0),
                    "orders": by_chain.get(chain_id, 0),
                }
            )
        return {
            "node": supervision_head(state),
            "chains": chains,
            "totals": {
                key: sum(c[key] for c in chains) for key in ("alerts", "open_freezes", "orders")
            },
            "indexed": heads,
        }

    @router.get("/v1/supervision/alerts", tags=["supervision"], responses=private)
    async def alerts(
        rule: str | None = Query(None, description="Only this rule: " + ", ".join(RULES)),
        chain: str | None = Query(None, description="Only this business chain."),
        limit: int = Query(DEFAULT_PAGE, ge=1, le=MAX_PAGE),
        after: int | None = Query(None, ge=1, le=MAX_ROW_ID, description=AFTER),
        acct: registry.Account = Depends(regulator),
    ) -> dict[str, Any]:
        """Surveillance alerts, newest first; ``next_after`` pages on (null: no more)."""
        if rule is not None and rule not in RULES:
            raise _problem(400, "BAD_REQUEST", f"unknown rule {rule!r}; rules: {', '.join(RULES)}")
        _check_id(chain, "chain")

        def q(idx: LookthroughIndex) -> tuple[Any, ...]:
            rows = idx.alerts_page(rule=rule, chain_id=chain, limit=limit, before_id=after)
            return rows, idx.chain_heads()

        rows, heads = await query(q)
        return {"alerts": rows, "next_after": _next_after(rows, limit), "indexed": heads}

    @router.get("/v1/supervision/investors/{investor_id}", tags=["supervision"], responses=private)
    async def investor(
        investor_id: str,
        history: int = Query(DEFAULT_HISTORY, ge=0, le=MAX_HISTORY),
        acct: registry.Account = Depends(regulator),
    ) -> dict[str, Any]:
        """Look-through of one investor across every indexed chain: its securities accounts and
        holdings, its e-CNY wallets and balances (never an identity), totals, and its ``history``
        latest transactions (newest first)."""
        _check_id(investor_id, "investor id")

        def q(idx: LookthroughIndex) -> tuple[Any, ...]:
            found = idx.investor(investor_id)
            if not found["chains"]:
                return None, [], []
            past = idx.investor_history(investor_id, history) if history else []
            return found, past, idx.chain_heads()

        found, past, heads = await query(q)
        if found is None:
            raise _problem(404, "NOT_FOUND", f"no investor {investor_id!r} in the index")
        return {**found, "history": past, "indexed": heads}

    @router.get(
        "/v1/supervision/holders/{chain_id}/{code}", tags=["supervision"], responses=private
    )
    async def holders(
        chain_id: str,
        code: str,
        height: int | None = Query(
            None, ge=1, le=MAX_HEIGHT, description="At this height (default: indexed)."
        ),
        limit: int = Query(DEFAULT_HOLDERS, ge=1, le=MAX_HOLDERS),
        acct: registry.Account = Depends(regulator),
    ) -> dict[str, Any]:
        """The holder register of security ``code`` on ``chain_id`` at ``height``: exact (each
        account's last balance change at or before it), largest holders first, at most
        ``limit`` of them (``holder_count`` and ``total`` count them all)."""
        _check_id(chain_id, "chain id")
        _check_id(code, "security code")

        def q(idx: LookthroughIndex) -> dict[str, Any]:
            heads = idx.chain_heads()
            head = next((h for h in heads if h["chain_id"] == chain_id), None)
            if head is None:
                raise _problem(404, "NOT_FOUND", f"chain {chain_id!r} is not in the index")
            at = head["height"] if height is None else height
            if at > head["height"]:
                raise _problem(
                    404, "NOT_FOUND", f"{chain_id} is indexed up to height {head['height']} only"
                )
            if not idx.knows_security(chain_id, code):
                raise _problem(404, "NOT_FOUND", f"no holding of {code!r} on {chain_id} indexed")
            rows = idx.holders(code, at, chain_id)
            return {
                "chain_id": chain_id,
                "code": code,
                "height": at,
                "holder_count": len(rows),
                "total": sum(int(r["balance"]) for r in rows),
                "holders": [
                    {k: r[k] for k in ("account_id", "balance", "since_height")}
                    for r in rows[:limit]
                ],
                "indexed": heads,
            }

        return await query(q)

    @router.get("/v1/supervision/large-payments", tags=["supervision"], responses=private)
    async def large_payments(
        chain: str | None = Query(None, description="Only this business chain."),
        limit: int = Query(DEFAULT_PAGE, ge=1, le=MAX_PAGE),
        after: int | None = Query(None, ge=1, le=MAX_ROW_ID, description=AFTER),
        acct: registry.Account = Depends(regulator),
    ) -> dict[str, Any]:
        """Large-value (traceable) e-CNY payments, newest indexed first: payer and payee
        wallets and their operator banks, amount in fen, purpose (no identities)."""
        _check_id(chain, "chain")

        def q(idx: LookthroughIndex) -> tuple[Any, ...]:
            rows = idx.large_payments_page(chain_id=chain, limit=limit, before_id=after)
            return rows, idx.chain_heads()

        rows, heads = await query(q)
        return {"payments": rows, "next_after": _next_after(rows, limit), "indexed": heads}

    @router.get("/v1/supervision/freezes", tags=["supervision"], responses=private)
    async def freezes(
        chain: str | None = Query(None, description="Only this business chain."),
        lifted: int = Query(0, ge=0, le=MAX_LIFTED, description="Also the N latest lifted."),
        acct: registry.Account = Depends(regulator),
    ) -> dict[str, Any]:
        """Open judicial / regulatory freezes on every indexed chain (oldest first) and, with
        ``lifted``, the latest lifted ones (``closed_by``: unfrozen, expired, forced_transfer)."""
        _check_id(chain, "chain")

        def q(idx: LookthroughIndex) -> dict[str, Any]:
            return {**idx.freezes(chain_id=chain, lifted=lifted), "indexed": idx.chain_heads()}

        return await query(q)

    @router.get("/v1/supervision/notary", tags=["supervision"], responses=private)
    async def notary_projects(
        org: str | None = Query(None, description="Only this institution (org id)."),
        project: str | None = Query(None, description="Only this project."),
        gap_days: int = Query(
            DEFAULT_GAP_DAYS, ge=0, le=MAX_GAP_DAYS, description="Gap report threshold (days)."
        ),
        acct: registry.Account = Depends(regulator),
    ) -> dict[str, Any]:
        """Notary deposits per institution per project (``projects``: counts, withdrawn, the
        latest deposit and its block time), with ``org`` and ``project`` also that project's
        ``deposits`` (newest first), and the gap report (``gaps``: projects whose latest
        deposit is more than ``gap_days`` days of block time older than their chain's head)."""
        _check_id(org, "org")
        _check_id(project, "project")

        def q(idx: LookthroughIndex) -> dict[str, Any]:
            listed = (
                idx.notary_deposits(org, project, limit=DEFAULT_HISTORY)
                if org is not None and project is not None
                else []
            )
            return {
                "projects": idx.notary_projects(org_id=org, project=project),
                "deposits": listed,
                "gap_days": gap_days,
                "gaps": idx.notary_gaps(gap_days, org_id=org),
                "indexed": idx.chain_heads(),
            }

        return await query(q)

    @router.get("/v1/supervision/orders", tags=["supervision"], responses=private)
    async def list_orders(
        chain: str | None = Query(None, description="Only orders addressed to this chain."),
        kind: str | None = Query(None, description="Only this kind of order."),
        limit: int = Query(DEFAULT_ORDERS, ge=1, le=MAX_ORDERS),
        acct: registry.Account = Depends(regulator),
    ) -> dict[str, Any]:
        """Regulatory orders on this supervision chain's head state, newest first (on-chain
        data: no index needed). ``total`` counts every match, ``orders`` holds ``limit``."""
        if kind is not None and kind not in orders.ORDER_KINDS:
            raise _problem(
                400, "BAD_REQUEST", f"unknown kind {kind!r}; kinds: {sorted(orders.ORDER_KINDS)}"
            )
        _check_id(chain, "chain")
        state = backend.head()
        found = [
            o
            for o in await records.orders(state)
            if (chain is None or o.chain_id == chain) and (kind is None or o.kind == kind)
        ]
        return {
            "node": supervision_head(state),
            "total": len(found),
            "orders": [api_app.jsonable(o) for o in found[:limit]],
            "indexed": await freshness(),
        }

    @router.get("/v1/supervision/anchoring", tags=["supervision"], responses=private)
    async def anchoring_lag(acct: registry.Account = Depends(regulator)) -> dict[str, Any]:
        """Per business chain: registered with this supervision chain's light client or not,
        the anchored height, block hash and block time, the business head as the index knows
        it, and the lag in blocks (and in ms of block time, once anything is anchored). Works
        without an index (then only the anchored side)."""
        state = backend.head()
        anchored = await records.anchored(state)
        heads = await freshness()
        head_of = {h["chain_id"]: h for h in heads or ()}
        return {
            "node": supervision_head(state),
            "chains": [
                _anchoring_row(c, anchored.get(c), head_of.get(c))
                for c in sorted(set(anchored) | set(head_of))
            ],
            "indexed": heads,
        }

    @router.get("/v1/activity", tags=["chain"])
    async def activity(
        blocks: int = Query(DEFAULT_ACTIVITY, ge=1, le=MAX_ACTIVITY),
    ) -> dict[str, Any]:
        """The last ``blocks`` committed blocks, oldest first: height, block time, transaction
        count, commit round and ``interval_ms`` since the previous block (null for block 1).

        This chain is BFT: a block is final when it is committed (no confirmations to wait for),
        so the block interval is the finality time series, and ``round`` > 0 marks a block that
        needed more than one round. ``summary`` adds throughput over the window. Public."""
        head = backend.head_height()
        low = max(1, head - blocks + 1)
        previous = activity_rows.row(low - 1) if low > 1 else None
        rows: list[dict[str, Any]] = []
        prev_time = None if previous is None else int(previous["time_ms"])
        for height in range(low, head + 1):
            row = activity_rows.row(height)
            if row is None:  # not readable (yet): the window ends before it
                break
            interval = None if prev_time is None else int(row["time_ms"]) - prev_time
            rows.append({**row, "interval_ms": interval})
            prev_time = int(row["time_ms"])
        intervals = [int(r["interval_ms"]) for r in rows if r["interval_ms"] is not None]
        txs = sum(int(r["txs"]) for r in rows)
        span_ms = sum(intervals)
        return {
            "chain_id": backend.chain_id,
            "height": head,
            "blocks": rows,
            "summary": {
                "blocks": len(rows),
                "txs": txs,
                "span_ms": span_ms,
                "tps": round(txs * 1000 / span_ms, 3) if span_ms > 0 else None,
                "mean_interval_ms": round(span_ms / len(intervals), 1) if intervals else None,
                "max_interval_ms": max(intervals) if intervals else None,
                "rounds_above_zero": sum(1 for r in rows if int(r["round"]) > 0),
            },
        }

    return router


__all__ = ["ActivityCache", "SupervisionRecords", "is_supervision_state", "supervision_router"]
