"""Typed reads of funds, fund positions and orders, insurance products and policies, and
``GET /v1/me`` (who the caller is and what it may see: the investor view's single call).

Public (no signature): ``/v1/funds/{code}`` (the fund with its security record and recent NAVs)
and ``/v1/insurance/products/{product_id}``. Private (signed request; 401 problems from
``consortia.api.auth``, 403 ``FORBIDDEN`` for anyone else, unknown ids included; 404 only for the
regulator), each with its state proof:

- a fund position and a fund order: the rules of their securities account (the investor, a
  broker account of the investor's broker organization, the regulator) **and** a ``fund_manager``
  account of the fund's manager organization (``access: "manager"``): the manager keeps the fund's
  unit register and confirms its orders, so it already sees them;
- a policy: the policyholder's rules (the investor, its broker, the regulator) and an
  ``insurer`` account of the policy's insurer organization (``access: "insurer"``).

The state has no secondary index from an account to its wallets, positions, orders or policies,
so ``RecordsIndex`` builds one at this edge by one pass over the head state, reused until the
state root changes (at most once per committed block, and only when a ``/v1/me`` or fund read asks
for it). Nothing here writes state.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Query

from consortia import codec
from consortia.api.backend import ApiBackend
from consortia.api.private import (
    investor_id_access,
    is_regulator,
    read_context,
    securities_account_access,
    wallet_access,
)
from consortia.api.reads import PRIVATE_PROBLEMS, ApiProblem, jsonable, proven, read_at
from consortia.execution.context import TxContext
from consortia.execution.state import ChainState
from consortia.modules import ecny, funds, insurance, investors, registry, securities

MAX_ID_BYTES = 512  # a path id longer than this is a bad request, not an unknown id
DEFAULT_NAVS = 10
MAX_NAVS = 100
ME_MAX_ITEMS = 50  # each list of the investor view holds at most this many entries
DEFAULT_PAGE = 50
MAX_PAGE = 200
MAX_CURSOR = 2 * MAX_ID_BYTES
# Institution roles and the customer lists they see in ``/v1/me``.
INSTITUTION_ROLES = ("broker", "operator_bank", "fund_manager", "insurer")
CUSTOMER_KINDS = ("investor", "wallet", "fund", "product", "policy")

Caller = Callable[..., Coroutine[Any, Any, registry.Account]]


# ---------------------------------------------------------------------------------------------
# The edge index


@dataclass
class _Index:
    state_root: bytes = b""
    investor_records: dict[str, investors.Investor] = field(default_factory=dict)
    accounts_by_investor: dict[str, list[investors.SecuritiesAccount]] = field(default_factory=dict)
    holdings_by_account: dict[str, list[securities.Holding]] = field(default_factory=dict)
    wallets: dict[str, ecny.Wallet] = field(default_factory=dict)
    fund_records: dict[str, funds.Fund] = field(default_factory=dict)
    navs: dict[str, list[funds.Nav]] = field(default_factory=dict)
    positions_by_account: dict[str, list[funds.Position]] = field(default_factory=dict)
    orders_by_account: dict[str, list[funds.Order]] = field(default_factory=dict)
    products: dict[str, insurance.Product] = field(default_factory=dict)
    policies: dict[str, insurance.Policy] = field(default_factory=dict)


_PREFIXES: dict[bytes, str] = {
    investors.investor_key(""): "investor",
    investors.account_key(""): "account",
    b"securities/holding/": "holding",
    ecny.wallet_key(""): "wallet",
    funds.fund_key(""): "fund",
    b"funds/nav/": "nav",
    b"funds/position/": "position",
    funds.order_key(""): "order",
    insurance.product_key(""): "product",
    insurance.policy_key(""): "policy",
}


class RecordsIndex:
    """Investors, securities accounts, holdings, wallets, funds, NAVs, fund positions and orders,
    insurance products and policies of the head, by the links the views follow."""

    def __init__(self) -> None:
        self._index = _Index()

    def current(self, state: ChainState) -> _Index:
        if self._index.state_root != state.state_root:
            self._index = _build(state)
        return self._index

    def accounts(
        self, state: ChainState, investor_id: str
    ) -> list[tuple[investors.SecuritiesAccount, list[securities.Holding]]]:
        """An investor's securities accounts (by id) with their holdings (by code)."""
        index = self.current(state)
        return [
            (acct, index.holdings_by_account.get(acct.account_id, []))
            for acct in index.accounts_by_investor.get(investor_id, [])
        ]


def _build(state: ChainState) -> _Index:
    index = _Index(state_root=state.state_root)
    for key, value in state.tree.items():
        kind = next((k for p, k in _PREFIXES.items() if key.startswith(p)), None)
        if kind is None:
            continue
        try:
            _add(index, kind, value)
        except codec.CodecError:  # not this record type: never fail a read for it
            continue
    for accounts in index.accounts_by_investor.values():
        accounts.sort(key=lambda a: a.account_id)
    for holdings in index.holdings_by_account.values():
        holdings.sort(key=lambda h: h.code)
    for positions in index.positions_by_account.values():
        positions.sort(key=lambda p: p.code)
    for orders in index.orders_by_account.values():
        orders.sort(key=lambda o: o.order_id)
    for navs in index.navs.values():
        navs.sort(key=lambda n: n.trading_day, reverse=True)
    return index


def _add(index: _Index, kind: str, value: bytes) -> None:
    if kind == "investor":
        inv = codec.decode_struct(investors.Investor, value)
        index.investor_records[inv.investor_id] = inv
    elif kind == "account":
        sa = codec.decode_struct(investors.SecuritiesAccount, value)
        index.accounts_by_investor.setdefault(sa.investor_id, []).append(sa)
    elif kind == "holding":
        h = codec.decode_struct(securities.Holding, value)
        index.holdings_by_account.setdefault(h.account_id, []).append(h)
    elif kind == "wallet":
        w = codec.decode_struct(ecny.Wallet, value)
        index.wallets[w.wallet_id] = w
    elif kind == "fund":
        f = codec.decode_struct(funds.Fund, value)
        index.fund_records[f.code] = f
    elif kind == "nav":
        n = codec.decode_struct(funds.Nav, value)
        index.navs.setdefault(n.code, []).append(n)
    elif kind == "position":
        p = codec.decode_struct(funds.Position, value)
        index.positions_by_account.setdefault(p.account_id, []).append(p)
    elif kind == "order":
        o = codec.decode_struct(funds.Order, value)
        index.orders_by_account.setdefault(o.account_id, []).append(o)
    elif kind == "product":
        pr = codec.decode_struct(insurance.Product, value)
        index.products[pr.product_id] = pr
    elif kind == "policy":
        po = codec.decode_struct(insurance.Policy, value)
        index.policies[po.policy_id] = po


# ---------------------------------------------------------------------------------------------
# Access rules beyond consortia.api.private


def _org_active(ctx: TxContext, org_id: str, kinds: tuple[str, ...]) -> bool:
    org = ctx.get_record(registry.org_key(org_id), registry.Organization)
    return org is not None and org.active and org.kind in kinds


def is_fund_manager_of(ctx: TxContext, acct: registry.Account, fund: funds.Fund) -> bool:
    """``acct`` is a ``fund_manager`` account of the fund's (active) manager organization."""
    return (
        registry.has_role(acct, "fund_manager")
        and acct.org_id == fund.manager_org
        and _org_active(ctx, acct.org_id, ("fund_manager",))
    )


def is_insurer_of(ctx: TxContext, acct: registry.Account, org_id: str) -> bool:
    """``acct`` is an ``insurer`` account of (active insurer organization) ``org_id``."""
    return (
        registry.has_role(acct, "insurer")
        and acct.org_id == org_id
        and _org_active(ctx, org_id, ("insurer",))
    )


def fund_record_access(
    ctx: TxContext, acct: registry.Account, code: str, account_id: str
) -> str | None:
    """Who may read a position or order of ``account_id`` in fund ``code``: the securities
    account's rules (``self``/``broker``/``regulator``), else the fund's manager (``manager``)."""
    access = securities_account_access(ctx, acct, account_id)
    if access is not None:
        return access
    fund = ctx.get_record(funds.fund_key(code), funds.Fund)
    if fund is not None and is_fund_manager_of(ctx, acct, fund):
        return "manager"
    return None


def policy_access(ctx: TxContext, acct: registry.Account, policy: insurance.Policy) -> str | None:
    """Who may read ``policy``: the policyholder's rules (``self``/``broker``/``regulator``),
    else an insurer account of the policy's insurer (``insurer``)."""
    access = investor_id_access(ctx, acct, policy.investor_id)
    if access is not None:
        return access
    if is_insurer_of(ctx, acct, policy.insurer_org):
        return "insurer"
    return None


# ---------------------------------------------------------------------------------------------
# Helpers


def _id(value: str, what: str) -> str:
    if len(value.encode()) > MAX_ID_BYTES:
        raise ApiProblem(400, "BAD_REQUEST", f"{what} longer than {MAX_ID_BYTES} bytes")
    return value


def _capped(items: list[Any], cap: int = ME_MAX_ITEMS) -> tuple[list[Any], bool]:
    return items[:cap], len(items) > cap


def _wallet_view(ctx: TxContext, w: ecny.Wallet) -> dict[str, Any]:
    return {
        "record": jsonable(w),
        "limits": jsonable(ecny.wallet_limits(ctx, w)),
        "day": w.day,
        "day_spent": w.day_spent,
    }


def _position_view(p: funds.Position) -> dict[str, Any]:
    units = p.units()
    return {
        "record": jsonable(p),
        "units": units,
        "reserved": p.reserved,
        "available": units - p.reserved,
    }


def _org_view(ctx: TxContext, org_id: str) -> dict[str, Any] | None:
    org = ctx.get_record(registry.org_key(org_id), registry.Organization) if org_id else None
    return None if org is None else jsonable(org)


def _account_view(index: _Index, sa: investors.SecuritiesAccount) -> dict[str, Any]:
    holdings, cut = _capped(index.holdings_by_account.get(sa.account_id, []))
    return {
        "account": jsonable(sa),
        "holdings": jsonable(holdings),
        "holdings_truncated": cut,
    }


def _investor_view(ctx: TxContext, index: _Index, inv: investors.Investor) -> dict[str, Any]:
    """One investor's records, each list capped at ``ME_MAX_ITEMS`` (``truncated`` says which)."""
    accounts = index.accounts_by_investor.get(inv.investor_id, [])
    truncated: dict[str, bool] = {}
    shown_accounts, truncated["accounts"] = _capped(accounts)
    positions: list[funds.Position] = []
    orders: list[funds.Order] = []
    for sa in accounts:
        positions.extend(index.positions_by_account.get(sa.account_id, []))
        orders.extend(index.orders_by_account.get(sa.account_id, []))
    orders.sort(key=lambda o: (o.placed_ms, o.order_id), reverse=True)  # newest first
    shown_positions, truncated["fund_positions"] = _capped(positions)
    shown_orders, truncated["fund_orders"] = _capped(orders)
    owned = sorted(
        (p for p in index.policies.values() if p.investor_id == inv.investor_id),
        key=lambda p: p.policy_id,
    )
    shown_policies, truncated["policies"] = _capped(owned)
    return {
        "record": jsonable(inv),
        "accounts": [_account_view(index, sa) for sa in shown_accounts],
        "fund_positions": [_position_view(p) for p in shown_positions],
        "fund_orders": jsonable(shown_orders),
        "policies": jsonable(shown_policies),
        "truncated": truncated,
    }


def _wallets_of(index: _Index, address: bytes) -> list[ecny.Wallet]:
    """Wallets ``address`` owns, and the sub-wallets of those (their owner reads them too)."""
    own = {w.wallet_id for w in index.wallets.values() if w.owner == address}
    return sorted(
        (w for w in index.wallets.values() if w.wallet_id in own or w.parent in own),
        key=lambda w: w.wallet_id,
    )


def _customers(ctx: TxContext, acct: registry.Account, index: _Index) -> list[tuple[str, str, Any]]:
    """``(kind, id, record)`` of every record this institution account serves, sorted."""
    out: list[tuple[str, str, Any]] = []
    if investors.is_broker_of(ctx, acct, acct.org_id):
        out += [
            ("investor", i, v) for i, v in index.investor_records.items() if v.org_id == acct.org_id
        ]
    if ecny.is_operator(ctx, acct, acct.org_id):
        out += [("wallet", i, w) for i, w in index.wallets.items() if w.operator_org == acct.org_id]
    managed = [f for f in index.fund_records.values() if is_fund_manager_of(ctx, acct, f)]
    out += [("fund", f.code, f) for f in managed]
    if is_insurer_of(ctx, acct, acct.org_id):
        out += [
            ("product", i, p) for i, p in index.products.items() if p.insurer_org == acct.org_id
        ]
        out += [("policy", i, p) for i, p in index.policies.items() if p.insurer_org == acct.org_id]
    out.sort(key=lambda item: (CUSTOMER_KINDS.index(item[0]), item[1]))
    return out


def _cursor(kind: str, item_id: str) -> str:
    return f"{kind}:{item_id}"


def _after(cursor: str) -> tuple[int, str]:
    kind, sep, item_id = cursor.partition(":")
    if not sep or kind not in CUSTOMER_KINDS:
        raise ApiProblem(
            400,
            "BAD_REQUEST",
            f"after must be KIND:ID with KIND one of {', '.join(CUSTOMER_KINDS)}",
        )
    return CUSTOMER_KINDS.index(kind), item_id


# ---------------------------------------------------------------------------------------------
# The router


def records_router(backend: ApiBackend, caller: Caller, index: RecordsIndex) -> APIRouter:
    """Fund, policy and ``/v1/me`` reads over ``backend``; ``caller`` is ``create_app``'s
    signed-request dependency (the registry account, or a 401 problem); ``index`` is the app's
    one ``RecordsIndex`` (shared with the investor read, so the head is scanned once)."""
    router = APIRouter()
    private = PRIVATE_PROBLEMS

    def forbidden(what: str) -> ApiProblem:
        return ApiProblem(403, "FORBIDDEN", f"this account may not read {what}")

    def unknown(acct: registry.Account, what: str) -> ApiProblem:
        if is_regulator(acct):
            return ApiProblem(404, "NOT_FOUND", f"no {what}")
        return forbidden(what)

    def private_record(
        state: ChainState,
        key: bytes,
        cls: type[Any],
        what: str,
        acct: registry.Account,
        rule: Callable[[TxContext, Any], str | None],
    ) -> tuple[dict[str, Any], Any]:
        read = read_at(state, key)
        if read.value is None:
            raise unknown(acct, what)
        record = codec.decode_struct(cls, read.value)
        access = rule(read_context(state), record)
        if access is None:
            raise forbidden(what)
        return {**proven(read), "access": access, "record": jsonable(record)}, (record)

    @router.get("/v1/funds/{code}", tags=["records"])
    async def get_fund(
        code: str, navs: int = Query(DEFAULT_NAVS, ge=1, le=MAX_NAVS)
    ) -> dict[str, Any]:
        """A fund (manager, custody and fee wallets, fees, cut-off, last NAV) with its proof, its
        security record, and its ``navs`` most recent published NAVs, newest first."""
        _id(code, "fund code")
        state = backend.head()
        read = read_at(state, funds.fund_key(code))
        if read.value is None:
            raise ApiProblem(404, "NOT_FOUND", f"no fund {code!r}")
        fund = codec.decode_struct(funds.Fund, read.value)
        raw_sec = state.tree.get(securities.security_key(code))
        security = None if raw_sec is None else codec.decode_struct(securities.Security, raw_sec)
        published = index.current(state).navs.get(code, [])
        return {
            **proven(read),
            "record": jsonable(fund),
            "security": jsonable(security),
            "navs": jsonable(published[:navs]),
            "navs_total": len(published),
        }

    @router.get("/v1/funds/{code}/positions/{account_id}", tags=["private"], responses=private)
    async def get_fund_position(
        code: str, account_id: str, acct: registry.Account = Depends(caller)
    ) -> dict[str, Any]:
        """A securities account's position in a fund: FIFO lots (oldest first, one per trading
        day), units, units reserved by pending redemptions, with its proof.

        Signed request required. Allowed: the investor owning the securities account, a broker
        account of the investor's broker organization, a ``fund_manager`` account of the fund's
        manager organization, the regulator (403 ``FORBIDDEN`` otherwise, unknown ids included;
        404 only for the regulator)."""
        _id(code, "fund code")
        _id(account_id, "account id")
        state = backend.head()
        out, position = private_record(
            state,
            funds.position_key(code, account_id),
            funds.Position,
            f"fund position {code!r}/{account_id!r}",
            acct,
            lambda ctx, p: fund_record_access(ctx, acct, p.code, p.account_id),
        )
        view = _position_view(position)
        return {**out, **{k: view[k] for k in ("units", "reserved", "available")}}

    @router.get("/v1/fund-orders/{order_id}", tags=["private"], responses=private)
    async def get_fund_order(
        order_id: str, acct: registry.Account = Depends(caller)
    ) -> dict[str, Any]:
        """A fund subscription or redemption order and its status (``pending``, ``cancelled``,
        ``confirmed``, ``refunded``, ``failed``), with its proof.

        Signed request required. Allowed: as for fund positions (the order's securities account's
        investor and broker, the fund's manager, the regulator)."""
        _id(order_id, "order id")
        out, _ = private_record(
            backend.head(),
            funds.order_key(order_id),
            funds.Order,
            f"fund order {order_id!r}",
            acct,
            lambda ctx, o: fund_record_access(ctx, acct, o.code, o.account_id),
        )
        return out

    @router.get("/v1/insurance/products/{product_id}", tags=["records"])
    async def get_product(product_id: str) -> dict[str, Any]:
        """An insurance product (insurer, premium, term, coverage, cooling-off), with its proof."""
        _id(product_id, "product id")
        read = read_at(backend.head(), insurance.product_key(product_id))
        if read.value is None:
            raise ApiProblem(404, "NOT_FOUND", f"no insurance product {product_id!r}")
        product = codec.decode_struct(insurance.Product, read.value)
        return {**proven(read), "record": jsonable(product)}

    @router.get("/v1/policies/{policy_id}", tags=["private"], responses=private)
    async def get_policy(
        policy_id: str, acct: registry.Account = Depends(caller)
    ) -> dict[str, Any]:
        """An insurance policy (status, premium, coverage, claimed, cooling-off end), with its
        proof.

        Signed request required. Allowed: the policyholder (the investor's own account), a broker
        account of the investor's broker organization, an ``insurer`` account of the policy's
        insurer organization, the regulator (403 ``FORBIDDEN`` otherwise, unknown ids included;
        404 only for the regulator)."""
        _id(policy_id, "policy id")
        out, _ = private_record(
            backend.head(),
            insurance.policy_key(policy_id),
            insurance.Policy,
            f"policy {policy_id!r}",
            acct,
            lambda ctx, p: policy_access(ctx, acct, p),
        )
        return out

    @router.get("/v1/me", tags=["private"], responses=private)
    async def get_me(
        acct: registry.Account = Depends(caller),
        limit: int = Query(DEFAULT_PAGE, ge=1, le=MAX_PAGE),
        after: str = Query("", max_length=MAX_CURSOR),
    ) -> dict[str, Any]:
        """Who the caller is (address, organization, roles) and what it may see, at the head.

        - ``investor``: for an account that is an investor's own account: the investor record
          (no sealed identity), its securities accounts with holdings, fund positions (with
          lots) and orders (newest first), insurance policies; ``wallets``: the e-CNY wallets it
          owns (and their sub-wallets) with balance, limits and the day's spending. Every list
          holds at most ``max_items`` entries; ``truncated`` says which lists were cut.
        - ``customers``: for an institution account (``broker``, ``operator_bank``,
          ``fund_manager``, ``insurer`` of an active organization of that kind): the investors its
          broker organization opened, the wallets its bank operates, the funds it manages, its
          insurer's products and policies: one list sorted by kind then id, ``limit`` per page,
          ``after=KIND:ID`` (the previous page's ``next``) for the next page.
        - ``regulator``: counts of the records the other endpoints serve it (it may read all).

        Signed request required (any registered account)."""
        if after:
            cursor = _after(after)
        state = backend.head()
        ctx = read_context(state)
        idx = index.current(state)
        out: dict[str, Any] = {
            "height": state.height,
            "state_root": state.state_root.hex(),
            "address": acct.address.hex(),
            "org_id": acct.org_id,
            "organization": _org_view(ctx, acct.org_id),
            "roles": list(acct.roles),
            "frozen": acct.frozen,
            "key_version": acct.key_version,
            "max_items": ME_MAX_ITEMS,
        }
        mine = sorted(
            (i for i in idx.investor_records.values() if i.address == acct.address),
            key=lambda i: i.investor_id,
        )
        out["investors"] = [_investor_view(ctx, idx, inv) for inv in mine[:ME_MAX_ITEMS]]
        wallets, cut = _capped(_wallets_of(idx, acct.address))
        out["wallets"] = [_wallet_view(ctx, w) for w in wallets if wallet_access(ctx, acct, w)]
        out["truncated"] = {"investors": len(mine) > ME_MAX_ITEMS, "wallets": cut}
        if any(registry.has_role(acct, r) for r in INSTITUTION_ROLES):
            customers = _customers(ctx, acct, idx)
            if after:
                customers = [c for c in customers if (CUSTOMER_KINDS.index(c[0]), c[1]) > cursor]
            page = customers[:limit]
            more = len(customers) > limit
            out["customers"] = {
                "items": [
                    {"kind": kind, "id": item_id, "record": jsonable(record)}
                    for kind, item_id, record in page
                ],
                "next": _cursor(page[-1][0], page[-1][1]) if more and page else None,
            }
        if is_regulator(acct):
            out["regulator"] = {
                "investors": len(idx.investor_records),
                "securities_accounts": sum(len(v) for v in idx.accounts_by_investor.values()),
                "wallets": len(idx.wallets),
                "funds": len(idx.fund_records),
                "fund_positions": sum(len(v) for v in idx.positions_by_account.values()),
                "fund_orders_pending": sum(
                    1 for v in idx.orders_by_account.values() for o in v if o.status == "pending"
                ),
                "insurance_products": len(idx.products),
                "policies": len(idx.policies),
                "note": "the regulator may read every record through the typed reads",
            }
        return out

    return router


__all__ = [
    "CUSTOMER_KINDS",
    "ME_MAX_ITEMS",
    "RecordsIndex",
    "fund_record_access",
    "is_fund_manager_of",
    "is_insurer_of",
    "policy_access",
    "records_router",
]
