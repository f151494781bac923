"""Settlement: standing settlement wallets and DvP (BIS model 1) of securities against e-CNY."""

from __future__ import annotations

from typing import Any

import pytest

from consortia.ledger.types import Transaction
from consortia.modules.settlement import SettlementLink, Trade, link_key, trade_key
from tests.chainkit import Consortium, Driver
from tests.ecnykit import cash, cash_world, load_tx
from tests.test_investors import codes, commit_ok, read
from tests.test_securities import balance, issue_tx, listed

ACCOUNT_OWNER = {"SA-A": "inv-a", "SA-B": "inv-b", "SA-C": "inv-c", "SA-D": "inv-d"}
LOADER = {"W-A": "ccb-admin", "W-B": "bocom-admin", "W-C": "ccb-admin", "W-D": "bocom-admin"}
FUNDED = 1_000_000  # fen in each investor wallet (¥10,000)


def link_tx(c: Consortium, account: str, wallet_id: str, who: str | None = None) -> Transaction:
    return c.tx(
        who or ACCOUNT_OWNER[account],
        "settlement",
        "link_wallet",
        {"account_id": account, "wallet_id": wallet_id},
    )


def instruct_tx(
    c: Consortium,
    who: str,
    trade_id: str,
    side: str,
    seller: str = "SA-A",
    buyer: str = "SA-B",
    shares: int = 100,
    price_fen: int = 250,
    code: str = "EQ1",
) -> Transaction:
    args: dict[str, Any] = {
        "trade_id": trade_id,
        "side": side,
        "code": code,
        "seller_account": seller,
        "buyer_account": buyer,
        "shares": shares,
        "price_fen": price_fen,
    }
    return c.tx(who, "settlement", "instruct", args)


def cancel_tx(c: Consortium, who: str, trade_id: str) -> Transaction:
    return c.tx(who, "settlement", "cancel_instruction", {"trade_id": trade_id})


def snapshot(d: Driver) -> dict[bytes, bytes]:
    """Every state entry except registry accounts (whose nonces advance even on failure)."""
    return {k: v for k, v in d.state.tree.items() if not k.startswith(b"registry/acct/")}


def dvp_world() -> tuple[Consortium, Driver]:
    """Cash world + EQ1 (R2) and EQR (R4) with 1000 each in SA-A, every investor wallet funded
    and linked to the investor's securities account."""
    c, d = cash_world()
    listed(c, d, "EQ1")
    listed(c, d, "EQR", risk_level=4)
    commit_ok(
        d,
        [
            issue_tx(c, "EQ1", "SA-A", 1000),
            issue_tx(c, "EQR", "SA-A", 1000),
            *(load_tx(c, op, w, FUNDED) for w, op in LOADER.items()),
            *(link_tx(c, a, "W-" + a[-1]) for a in ACCOUNT_OWNER),
        ],
    )
    return c, d


def test_dvp_settles_both_legs_atomically() -> None:
    c, d = dvp_world()
    # The seller's broker instructs the deliver side; nothing moves yet.
    p = commit_ok(d, [instruct_tx(c, "broker-a-admin", "T1", "deliver")])
    assert [e.kind for e in p.receipts[0].events] == ["dvp_instructed"]
    t = read(d, trade_key("T1"), Trade)
    assert t is not None and (t.status, t.amount_fen, t.receive_by) == ("pending", 25_000, b"")
    assert (balance(d, "EQ1", "SA-A"), cash(d, "W-B")) == (1000, FUNDED)
    # The buyer itself instructs the receive side: both legs settle in that transaction.
    p = commit_ok(d, [instruct_tx(c, "inv-b", "T1", "receive")])
    kinds = [e.kind for e in p.receipts[0].events if e.kind != "disclosure"]  # 5% steps
    assert kinds == ["dvp_instructed", "transferred", "payment", "dvp_settled"]
    settled = p.receipts[0].events[-1].attributes
    assert (settled["payer_wallet"], settled["payee_wallet"], settled["amount_fen"]) == (
        "W-B",
        "W-A",
        25_000,
    )
    assert (balance(d, "EQ1", "SA-A"), balance(d, "EQ1", "SA-B")) == (900, 100)
    assert (cash(d, "W-A"), cash(d, "W-B")) == (FUNDED + 25_000, FUNDED - 25_000)
    t = read(d, trade_key("T1"), Trade)
    assert t is not None and t.status == "settled" and t.settled_height == d.state.height
    # A settled trade is closed; its parties cannot instruct or cancel it again.
    p = d.commit([instruct_tx(c, "inv-b", "T1", "receive"), cancel_tx(c, "broker-a-admin", "T1")])
    assert codes(p) == ["TRADE_SETTLED", "TRADE_SETTLED"]
    # The receive side pays, so only the holder of the paying wallet signs it: the buyer's
    # broker alone cannot commit the buyer's e-CNY (it may instruct the deliver side only).
    p = d.commit([instruct_tx(c, "broker-b-admin", "T2", "receive", price_fen=300)])
    assert codes(p) == ["NOT_AUTHORIZED"]
    assert read(d, trade_key("T2"), Trade) is None
    # The receive side may come first too.
    commit_ok(d, [instruct_tx(c, "inv-b", "T2", "receive", price_fen=300)])
    commit_ok(d, [instruct_tx(c, "inv-a", "T2", "deliver", price_fen=300)])
    assert (balance(d, "EQ1", "SA-A"), balance(d, "EQ1", "SA-B")) == (800, 200)
    assert cash(d, "W-B") == FUNDED - 25_000 - 30_000


def _halt(c: Consortium) -> Transaction:
    return c.tx("exchange-admin", "securities", "halt", {"code": "EQ1", "reason": "news"})


# (name, deliver instruction terms, setup after the first instruction, expected code)
FAILING: list[tuple[str, dict[str, Any], str]] = [
    ("cash leg: insufficient funds", {"price_fen": 20_000}, "INSUFFICIENT_FUNDS"),
    ("securities leg: insufficient shares", {"shares": 2000}, "INSUFFICIENT_FREE_BALANCE"),
    ("unsuitable buyer", {"buyer": "SA-C", "code": "EQR"}, "SUITABILITY_MISMATCH"),
    ("halted security", {}, "TRADING_HALTED"),
]


@pytest.mark.parametrize(("terms", "code"), [f[1:] for f in FAILING], ids=[f[0] for f in FAILING])
def test_a_failing_leg_changes_nothing(terms: dict[str, Any], code: str) -> None:
    c, d = dvp_world()
    buyer = terms.get("buyer", "SA-B")
    commit_ok(d, [instruct_tx(c, "broker-a-admin", "T1", "deliver", **terms)])
    if code == "TRADING_HALTED":
        commit_ok(d, [_halt(c)])
    before = snapshot(d)
    p = d.commit([instruct_tx(c, ACCOUNT_OWNER[buyer], "T1", "receive", **terms)])
    assert codes(p) == [code]
    assert snapshot(d) == before  # neither leg, nor the matching, left a trace
    t = read(d, trade_key("T1"), Trade)
    assert t is not None and t.status == "pending" and t.receive_by == b""


def test_insufficient_cash_then_funded_settles() -> None:
    c, d = dvp_world()
    commit_ok(d, [instruct_tx(c, "inv-a", "T1", "deliver", price_fen=15_000)])  # ¥15,000
    p = d.commit([instruct_tx(c, "inv-b", "T1", "receive", price_fen=15_000)])
    assert codes(p) == ["INSUFFICIENT_FUNDS"]
    commit_ok(d, [load_tx(c, "bocom-admin", "W-B", FUNDED)])
    commit_ok(d, [instruct_tx(c, "inv-b", "T1", "receive", price_fen=15_000)])
    assert balance(d, "EQ1", "SA-B") == 100 and cash(d, "W-B") == 2 * FUNDED - 1_500_000


def test_mismatched_terms_and_cancellation() -> None:
    c, d = dvp_world()
    commit_ok(d, [instruct_tx(c, "broker-a-admin", "T1", "deliver")])
    before = snapshot(d)
    p = d.commit(
        [
            instruct_tx(c, "inv-b", "T1", "receive", price_fen=249),
            instruct_tx(c, "inv-b", "T1", "receive", shares=99),
            instruct_tx(c, "inv-b", "T1", "receive", seller="SA-D"),
            instruct_tx(c, "inv-d", "T1", "receive", buyer="SA-D"),
            instruct_tx(c, "inv-a", "T1", "deliver"),  # the deliver side is instructed already
            instruct_tx(c, "inv-c", "T1", "receive"),  # not SA-B's owner or broker
            instruct_tx(c, "broker-a-admin", "T9", "receive"),  # SA-B is kept by broker-b
            cancel_tx(c, "inv-b", "T1"),  # the receive side did not instruct it
            cancel_tx(c, "broker-b-admin", "T1"),
            cancel_tx(c, "inv-a", "NOPE"),
        ]
    )
    assert codes(p) == [
        "TERMS_MISMATCH",
        "TERMS_MISMATCH",
        "TERMS_MISMATCH",
        "TERMS_MISMATCH",
        "INSTRUCTION_EXISTS",
        "NOT_AUTHORIZED",
        "NOT_AUTHORIZED",
        "NOT_AUTHORIZED",
        "NOT_AUTHORIZED",
        "UNKNOWN_INSTRUCTION",
    ]
    assert snapshot(d) == before
    # The owner of the instructing side (its broker sent it) cancels; the id can be used again.
    p = commit_ok(d, [cancel_tx(c, "inv-a", "T1")])
    assert [e.kind for e in p.receipts[0].events] == ["dvp_cancelled"]
    assert read(d, trade_key("T1"), Trade) is None
    p = d.commit([instruct_tx(c, "inv-b", "T1", "receive", price_fen=249)])
    assert codes(p) == [""]  # a fresh pending instruction, now from the buyer
    commit_ok(d, [instruct_tx(c, "inv-a", "T1", "deliver", price_fen=249)])
    assert balance(d, "EQ1", "SA-B") == 100 and cash(d, "W-A") == FUNDED + 24_900


def test_instruction_validation() -> None:
    c, d = dvp_world()
    listed(c, d, "BD2", kind="bond", decimals=2)  # amounts in 1/100 unit
    commit_ok(d, [issue_tx(c, "BD2", "SA-A", 1000)])
    p = d.commit(
        [
            instruct_tx(c, "inv-a", "T1", "sell"),
            instruct_tx(c, "inv-a", "T1", "deliver", code="NOPE"),
            instruct_tx(c, "inv-a", "T1", "deliver", buyer="SA-A"),
            instruct_tx(c, "inv-a", "T1", "deliver", buyer="SA-X"),
            instruct_tx(c, "inv-a", "T1", "deliver", shares=0),
            instruct_tx(c, "inv-a", "T1", "deliver", price_fen=0),
            instruct_tx(c, "inv-a", "T 1", "deliver"),
            instruct_tx(c, "inv-a", "T1", "deliver", code="BD2", shares=3, price_fen=50),
            instruct_tx(c, "inv-a", "T1", "deliver", code="BD2", shares=4, price_fen=50),
        ]
    )
    assert codes(p) == [
        "INVALID_ARGUMENT",
        "UNKNOWN_SECURITY",
        "INVALID_ARGUMENT",
        "UNKNOWN_ACCOUNT",
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",  # 3 × 50 / 100 is not a whole fen
        "",  # 4/100 unit at 50 fen per unit: 2 fen
    ]
    t = read(d, trade_key("T1"), Trade)
    assert t is not None and t.amount_fen == 2


def test_settlement_wallet_links() -> None:
    c, d = cash_world()
    listed(c, d, "EQ1")
    p = d.commit(
        [
            instruct_tx(c, "inv-a", "T1", "deliver"),  # no settlement wallet yet
            link_tx(c, "SA-A", "W-B"),  # not the investor's wallet
            link_tx(c, "SA-A", "W-NOPE"),
            link_tx(c, "SA-A", "W-A", who="inv-b"),
            link_tx(c, "SA-A", "W-A", who="broker-b-admin"),
            link_tx(c, "SA-X", "W-A", who="inv-a"),
            link_tx(c, "SA-A", "W-A", who="broker-a-admin"),
            link_tx(c, "SA-A", "W-A"),
        ]
    )
    assert codes(p) == [
        "NO_SETTLEMENT_WALLET",
        "WALLET_NOT_INVESTORS",
        "UNKNOWN_WALLET",
        "NOT_AUTHORIZED",
        "NOT_AUTHORIZED",
        "UNKNOWN_ACCOUNT",
        "",
        "",
    ]
    relinked = p.receipts[-1].events[0].attributes
    assert (relinked["wallet_id"], relinked["previous_wallet_id"]) == ("W-A", "W-A")
    link = read(d, link_key("SA-A"), SettlementLink)
    assert link is not None and (link.wallet_id, link.linked_by) == ("W-A", c.addr("inv-a"))
    # A sub-wallet of the investor's wallet, held by someone else, is spendable by the investor.
    sub = {
        "wallet_id": "W-A-SUB",
        "parent": "W-A",
        "owner": c.addr("cit-1"),
        "balance_cap": 100_000,
        "per_payment_limit": 10_000,
        "daily_limit": 20_000,
    }
    commit_ok(d, [c.tx("inv-a", "ecny", "open_sub_wallet", sub)])
    p = d.commit([link_tx(c, "SA-A", "W-A-SUB"), link_tx(c, "SA-A", "W-CIT1")])
    assert codes(p) == ["", "WALLET_NOT_INVESTORS"]
