"""Test helpers for futures: the cash world plus a margin custody wallet, a listed contract and
futures accounts, and transaction builders for every futures method.

``futures_world()``: W-MARGIN (category-1 corporate, held by bank-ccb's custodian) named as the
margin custody wallet; contract ``CU2601`` (size 10, tick 10 fen, ±5% band, margin 10%,
maintenance 8%, last trading day Friday 2026-01-09, 100 lots per side, reference price 10,000
fen) listed on Monday 2026-01-05 09:00 CST; futures accounts FA-A (INV-A, broker-a), FA-B
(INV-B, broker-b), FA-D (INV-D, broker-a); investor wallets W-A, W-B, W-D loaded with ¥10,000.
"""

from __future__ import annotations

from typing import Any

from consortia.execution.apply import Proposal
from consortia.ledger.types import Transaction
from consortia.modules.calendar import HOUR_MS, date_start_ms
from consortia.modules.futures import (
    INDEX_KEY,
    Contract,
    FuturesAccount,
    Index,
    Position,
    account_key,
    contract_key,
    position_key,
)
from tests.chainkit import Consortium, Driver
from tests.ecnykit import WALLETS, cash_world, load_tx, open_wallet_tx
from tests.test_investors import commit_ok, read
from tests.test_securities import advance_to

MON, TUE, WED, THU, FRI = 20260105, 20260106, 20260107, 20260108, 20260109
CODE = "CU2601"
LOADED = 1_000_000  # fen loaded into each client wallet
CLIENT = {"FA-A": "inv-a", "FA-B": "inv-b", "FA-D": "inv-d"}
WALLET = {"FA-A": "W-A", "FA-B": "W-B", "FA-D": "W-D"}
FIRM = {"FA-A": "broker-a-admin", "FA-B": "broker-b-admin", "FA-D": "broker-a-admin"}


def hm(day: int, hour: int, minute: int = 0) -> int:
    """Block time of ``hour:minute`` CST on ``day``."""
    return date_start_ms(day) + hour * HOUR_MS + minute * 60_000


def at(d: Driver, time_ms: int, txs: list[Transaction]) -> Proposal:
    """Commit ``txs`` in a block at exactly ``time_ms`` (after an empty block fixing it)."""
    advance_to(d, time_ms)
    p = d.commit(txs)
    assert p.block.header.time_ms == time_ms
    return p


def contract_args(code: str = CODE, **over: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "code": code,
        "underlying": "Copper cathode",
        "contract_size": 10,
        "tick_size": 10,
        "daily_limit_bp": 500,
        "margin_rate_bp": 1000,
        "maintenance_rate_bp": 800,
        "delivery_month": 202601,
        "last_trading_day": FRI,
        "position_limit": 100,
        "reference_price": 10_000,
        "risk_level": 4,
        "qualified_only": False,
    }
    args.update(over)
    return args


def fx(c: Consortium, who: str, method: str, args: dict[str, Any]) -> Transaction:
    return c.tx(who, "futures", method, args)


def list_tx(c: Consortium, **over: Any) -> Transaction:
    return fx(c, "exchange-admin", "list_contract", contract_args(**over))


def deposit_tx(c: Consortium, account: str, amount: int, wallet: str | None = None) -> Transaction:
    args = {"account_id": account, "wallet_id": wallet or WALLET[account], "amount": amount}
    return fx(c, CLIENT[account], "deposit", args)


def withdraw_tx(c: Consortium, account: str, amount: int, wallet: str | None = None) -> Transaction:
    args = {"account_id": account, "wallet_id": wallet or WALLET[account], "amount": amount}
    return fx(c, CLIENT[account], "withdraw", args)


def trade_tx(
    c: Consortium,
    trade_id: str,
    buyer: str,
    seller: str,
    lots: int,
    price: int,
    *,
    buyer_offset: str = "open",
    seller_offset: str = "open",
    code: str = CODE,
    who: str = "exchange-admin",
) -> Transaction:
    args = {
        "trade_id": trade_id,
        "code": code,
        "price": price,
        "lots": lots,
        "buyer": {"account_id": buyer, "offset": buyer_offset},
        "seller": {"account_id": seller, "offset": seller_offset},
    }
    return fx(c, who, "report_trade", args)


def settle_tx(
    c: Consortium, day: int, prices: dict[str, int], who: str = "exchange-admin"
) -> Transaction:
    args = {
        "trading_day": day,
        "prices": [{"code": code, "price": prices[code]} for code in sorted(prices)],
    }
    return fx(c, who, "settle", args)


def liquidate_tx(c: Consortium, account: str, reason: str, who: str | None = None) -> Transaction:
    args = {"account_id": account, "reason": reason}
    return fx(c, who or FIRM[account], "force_liquidate", args)


def futures_world(
    *, deposits: dict[str, int] | None = None, params: dict[str, Any] | None = None
) -> tuple[Consortium, Driver]:
    """The world of the module docstring; ``deposits``: margin paid in on Monday 09:05;
    ``params``: genesis chain parameters."""
    c, d = cash_world(params=params)
    commit_ok(
        d,
        [
            open_wallet_tx(
                c, "ccb-admin", "W-MARGIN", "ccb-custodian", category=1, kind="corporate"
            ),
            *(load_tx(c, WALLETS[w][1], w, LOADED) for w in ("W-A", "W-B", "W-D")),
        ],
    )
    commit_ok(
        d,
        [
            fx(c, "exchange-admin", "set_custody", {"wallet_id": "W-MARGIN"}),
            *(
                fx(c, FIRM[a], "open_account", {"account_id": a, "investor_id": "INV-" + a[-1]})
                for a in CLIENT
            ),
        ],
    )
    p = at(d, hm(MON, 9), [list_tx(c)])
    assert [r.code for r in p.receipts] == [""], p.receipts[0].message
    if deposits:
        p = at(d, hm(MON, 9, 5), [deposit_tx(c, a, n) for a, n in sorted(deposits.items())])
        assert [r.code for r in p.receipts] == [""] * len(deposits), [r.message for r in p.receipts]
    return c, d


def account(d: Driver, account_id: str) -> FuturesAccount:
    a = read(d, account_key(account_id), FuturesAccount)
    assert a is not None, account_id
    return a


def contract(d: Driver, code: str = CODE) -> Contract:
    k = read(d, contract_key(code), Contract)
    assert k is not None, code
    return k


def position(d: Driver, account_id: str, code: str = CODE) -> Position:
    return read(d, position_key(code, account_id), Position) or Position(
        code, account_id, 0, 0, 0, 0
    )


def index(d: Driver) -> Index:
    return read(d, INDEX_KEY, Index) or Index((), (), 0)


def futures_records(d: Driver) -> dict[bytes, bytes]:
    """Every futures and e-CNY record of the current state."""
    return {k: v for k, v in d.state.tree.items() if k.startswith((b"futures/", b"ecny/"))}


def events(p: Proposal, kind: str) -> list[dict[str, Any]]:
    return [e.attributes for r in p.receipts for e in r.events if e.kind == kind]
