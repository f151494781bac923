"""Corporate actions: cash dividends on record-date holdings, share splits."""

from __future__ import annotations

from typing import Any

from consortia.execution.apply import Proposal
from consortia.execution.consortium import DEFAULT_GENESIS_TIME_MS
from consortia.ledger.types import Transaction
from consortia.modules.corporate_actions import (
    Dividend,
    Entitlement,
    Holders,
    Split,
    cst_date,
    date_start_ms,
    dividend_key,
    entitlement_key,
    holders_key,
    split_key,
)
from consortia.modules.securities import InvestorTotal, investor_total_key
from tests.chainkit import Consortium, Driver
from tests.ecnykit import cash, cash_world, load_tx
from tests.ecnykit import pay_tx as ecny_pay_tx
from tests.test_enforcement import pledge_tx
from tests.test_investors import codes, commit_ok, read
from tests.test_securities import (
    advance_to,
    apply_args,
    balance,
    issue_tx,
    listed,
    security,
    transfer_tx,
    world,
)
from tests.test_settlement import link_tx, snapshot

HOUR_MS = 3_600_000
ACCOUNTS = ("SA-A", "SA-B", "SA-C", "SA-D")


def dividend_tx(c: Consortium, dividend_id: str, who: str = "issuer", **over: Any) -> Transaction:
    args: dict[str, Any] = {
        "dividend_id": dividend_id,
        "code": "EQ1",
        "amount_per_share_fen": 125,
        "record_date": 20260110,
        "ex_date": 20260111,
        "payment_date": 20260115,
    }
    args.update(over)
    return c.tx(who, "corporate_actions", "announce_dividend", args)


def pay_tx(
    c: Consortium,
    dividend_id: str,
    accounts: list[str],
    who: str = "issuer",
    payer_wallet: str = "W-ISSUER",
) -> Transaction:
    return c.tx(
        who,
        "corporate_actions",
        "pay",
        {"dividend_id": dividend_id, "account_ids": accounts, "payer_wallet": payer_wallet},
    )


ISSUER_FLOAT = 1_000_000  # fen in the issuer's corporate wallet W-ISSUER


def dividend_world(
    linked: tuple[str, ...] = ACCOUNTS, issuer_float: int = ISSUER_FLOAT
) -> tuple[Consortium, Driver]:
    """The cash world with W-ISSUER funded and ``linked`` accounts linked to their investor's
    wallet (SA-A → W-A, ...) as settlement wallets."""
    c, d = cash_world()
    commit_ok(
        d,
        [
            load_tx(c, "ccb-admin", "W-ISSUER", issuer_float),
            *(link_tx(c, a, "W-" + a[-1]) for a in linked),
        ],
    )
    return c, d


def split_tx(c: Consortium, split_id: str, new: int, old: int, date: int) -> Transaction:
    return c.tx(
        "issuer",
        "corporate_actions",
        "announce_split",
        {
            "split_id": split_id,
            "code": "EQ1",
            "new_shares": new,
            "old_shares": old,
            "effective_date": date,
        },
    )


def split_call(c: Consortium, method: str, split_id: str, who: str = "issuer") -> Transaction:
    return c.tx(who, "corporate_actions", method, {"split_id": split_id})


def at(d: Driver, time_ms: int, txs: list[Transaction]) -> Proposal:
    """Commit ``txs`` in a block whose time is ``time_ms``."""
    advance_to(d, time_ms)
    p = d.commit(txs)
    assert p.block.header.time_ms == time_ms
    return p


def test_cst_dates() -> None:
    assert cst_date(DEFAULT_GENESIS_TIME_MS) == 20260101  # 08:00 CST
    start = date_start_ms(20260110)
    assert cst_date(start) == 20260110 and cst_date(start - 1) == 20260109
    assert start == DEFAULT_GENESIS_TIME_MS + 9 * 86_400_000 - 8 * HOUR_MS


def test_dividend_follows_record_date_holdings() -> None:
    c, d = dividend_world()
    # The issuer gives the operator, its paying agent, a sub-wallet of W-ISSUER and funds it.
    agent = {
        "wallet_id": "W-AGENT",
        "parent": "W-ISSUER",
        "owner": c.addr("exchange-admin"),
        "balance_cap": 10**12,
        "per_payment_limit": 10**12,
        "daily_limit": 10**12,
    }
    commit_ok(d, [c.tx("issuer", "ecny", "open_sub_wallet", agent)])
    commit_ok(d, [ecny_pay_tx(c, "issuer", "W-ISSUER", "W-AGENT", 10_000)])
    listed(c, d, "EQ1", decimals=2)  # amounts in 1/100 share; 125 fen per whole share
    commit_ok(d, [issue_tx(c, "EQ1", "SA-A", 1000), issue_tx(c, "EQ1", "SA-B", 550)])
    p = commit_ok(d, [dividend_tx(c, "DIV1")])
    assert [e.kind for r in p.receipts for e in r.events] == ["dividend_announced"]
    record_start = date_start_ms(20260110)
    # On the record date itself changes still count.
    p = at(d, record_start + 10 * HOUR_MS, [transfer_tx(c, "EQ1", "SA-A", "SA-C", 100)])
    assert codes(p) == [""]
    # Record date: A 900, B 550, C 100, D 0 (issued 1550). Holdings now change a lot.
    p = at(
        d,
        record_start + 86_400_000,  # 00:00 CST the day after: the record date has ended
        [
            transfer_tx(c, "EQ1", "SA-B", "SA-D", 550),
            transfer_tx(c, "EQ1", "SA-A", "SA-B", 200),
            issue_tx(c, "EQ1", "SA-C", 100),
            pay_tx(c, "DIV1", ["SA-A"]),  # before the payment date
        ],
    )
    assert codes(p) == ["", "", "", "NOT_YET_EFFECTIVE"]
    assert [balance(d, "EQ1", a) for a in ACCOUNTS] == [700, 200, 200, 550]
    div = read(d, dividend_key("DIV1"), Dividend)
    assert div is not None and div.record_issued == 1550
    p = at(
        d,
        date_start_ms(20260115),
        [
            pay_tx(c, "DIV1", ["SA-A", "SA-B"], who="exchange-admin", payer_wallet="W-AGENT"),
            pay_tx(c, "DIV1", ["SA-D"]),  # held nothing at the record date
            pay_tx(c, "DIV1", ["SA-A"]),  # paid already
            pay_tx(c, "DIV1", ["SA-C"], who="broker-a-admin"),
            pay_tx(c, "DIV1", ["SA-C"], who="exchange-admin"),  # may not spend W-ISSUER
            pay_tx(c, "DIV1", ["SA-C"], payer_wallet="W-C"),  # the issuer may not spend W-C
            pay_tx(c, "DIV1", ["SA-C"], payer_wallet="W-NOPE"),
            pay_tx(c, "DIV1", ["SA-C"]),
            pay_tx(c, "DIV1", ["SA-C"]),  # completed
            pay_tx(c, "NOPE", ["SA-C"]),
        ],
    )
    assert codes(p) == [
        "",
        "NO_ENTITLEMENT",
        "ALREADY_PAID",
        "NOT_AUTHORIZED",
        "NOT_AUTHORIZED",
        "NOT_AUTHORIZED",
        "UNKNOWN_WALLET",
        "",
        "CORPORATE_ACTION_CLOSED",
        "UNKNOWN_CORPORATE_ACTION",
    ]
    expected = {"SA-A": (900, 1125), "SA-B": (550, 687), "SA-C": (100, 125)}  # floor(5.5*125)
    for account, (shares, fen) in expected.items():
        ent = read(d, entitlement_key("DIV1", account), Entitlement)
        assert ent is not None and (ent.shares, ent.amount_fen, ent.status) == (
            shares,
            fen,
            "paid",
        )
    ent_d = read(d, entitlement_key("DIV1", "SA-D"), Entitlement)
    assert ent_d is not None and (ent_d.shares, ent_d.status) == (0, "recorded")
    paid = [e.attributes for r in p.receipts for e in r.events if e.kind == "dividend_paid"]
    assert [(a["account_id"], a["amount_fen"]) for a in paid] == [
        ("SA-A", 1125),
        ("SA-B", 687),
        ("SA-C", 125),
    ]
    assert all(a["settlement"] == "ecny" for a in paid)
    assert [a["wallet_id"] for a in paid] == ["W-A", "W-B", "W-C"]
    # The money moved in e-CNY to the wallets of the record-date holders, not of today's.
    payments = [e.attributes for r in p.receipts for e in r.events if e.kind == "payment"]
    assert [(a["payer"], a["payee"], a["amount_fen"], a["purpose"]) for a in payments] == [
        ("W-AGENT", "W-A", 1125, "dividend"),
        ("W-AGENT", "W-B", 687, "dividend"),
        ("W-ISSUER", "W-C", 125, "dividend"),
    ]
    assert [cash(d, "W-" + a[-1]) for a in ACCOUNTS] == [1125, 687, 125, 0]
    assert cash(d, "W-AGENT") == 10_000 - 1125 - 687
    assert cash(d, "W-ISSUER") == ISSUER_FLOAT - 10_000 - 125
    div = read(d, dividend_key("DIV1"), Dividend)
    assert div is not None
    assert (div.status, div.paid_shares, div.paid_fen) == ("completed", 1550, 1937)
    holders = read(d, holders_key("EQ1"), Holders)
    assert holders is not None and holders.accounts == ACCOUNTS


def test_dividend_untouched_holdings_use_current_balances() -> None:
    c, d = dividend_world()
    listed(c, d, "EQ1")
    commit_ok(d, [issue_tx(c, "EQ1", "SA-A", 30), issue_tx(c, "EQ1", "SA-B", 10)])
    commit_ok(d, [dividend_tx(c, "DIV1", record_date=20260101, ex_date=20260101)])
    p = at(d, date_start_ms(20260115), [pay_tx(c, "DIV1", ["SA-A", "SA-B"])])
    assert codes(p) == [""]
    div = read(d, dividend_key("DIV1"), Dividend)
    assert div is not None and (div.status, div.record_issued, div.paid_fen) == (
        "completed",
        40,
        40 * 125,
    )


def test_dividend_batch_is_paid_in_ecny_all_or_nothing() -> None:
    c, d = dividend_world(linked=("SA-A", "SA-B"), issuer_float=4_000)
    listed(c, d, "EQ1")
    commit_ok(
        d,
        [
            issue_tx(c, "EQ1", "SA-A", 30),
            issue_tx(c, "EQ1", "SA-B", 10),
            issue_tx(c, "EQ1", "SA-C", 20),
            dividend_tx(c, "DIV1", record_date=20260101, ex_date=20260101),
        ],
    )
    advance_to(d, date_start_ms(20260115))
    before = snapshot(d)
    p = d.commit(
        [
            pay_tx(c, "DIV1", ["SA-A", "SA-C"]),  # SA-C has no settlement wallet
            pay_tx(c, "DIV1", ["SA-A", "SA-B"]),  # 3750 + 1250 fen > 4000 in W-ISSUER
        ]
    )
    assert codes(p) == ["NO_SETTLEMENT_WALLET", "INSUFFICIENT_FUNDS"]
    assert snapshot(d) == before  # SA-A, paid first in both batches, was not paid either
    assert read(d, entitlement_key("DIV1", "SA-A"), Entitlement) is None
    p = d.commit(
        [
            pay_tx(c, "DIV1", ["SA-A"]),
            load_tx(c, "ccb-admin", "W-ISSUER", 10_000),
            link_tx(c, "SA-C", "W-C", who="broker-a-admin"),
            pay_tx(c, "DIV1", ["SA-B", "SA-C"]),
        ]
    )
    assert codes(p) == ["", "", "", ""]
    assert [cash(d, w) for w in ("W-A", "W-B", "W-C")] == [3750, 1250, 2500]
    assert cash(d, "W-ISSUER") == 4_000 + 10_000 - 7_500
    div = read(d, dividend_key("DIV1"), Dividend)
    assert div is not None and (div.status, div.paid_fen) == ("completed", 7_500)


def test_dividend_validation_codes() -> None:
    c, d = world()
    listed(c, d, "EQ1")
    commit_ok(d, [c.tx("issuer", "securities", "apply", apply_args("EQ2"))])
    p = d.commit(
        [
            dividend_tx(c, "D1", record_date=20251231, ex_date=20260101),  # past
            dividend_tx(c, "D2", ex_date=20260109),  # ex before record
            dividend_tx(c, "D3", payment_date=20260111 - 1),  # payment before ex
            dividend_tx(c, "D4", record_date=20260230),  # not a calendar date
            dividend_tx(c, "D5", payment_date=2026011),  # not YYYYMMDD
            dividend_tx(c, "D6", who="exchange-admin"),
            dividend_tx(c, "D7", who="broker-a-admin"),
            dividend_tx(c, "D8", code="NOPE"),
            dividend_tx(c, "D9", code="EQ2"),  # pending
            dividend_tx(c, "D10", amount_per_share_fen=0),
            dividend_tx(c, "D11", record_date=20260101, ex_date=20260101),  # today is fine
            dividend_tx(c, "D11"),
        ]
    )
    assert codes(p) == [
        "INVALID_DATE",
        "INVALID_DATE",
        "INVALID_DATE",
        "INVALID_DATE",
        "INVALID_DATE",
        "NOT_AUTHORIZED",
        "NOT_AUTHORIZED",
        "UNKNOWN_SECURITY",
        "SECURITY_NOT_APPROVED",
        "INVALID_ARGUMENT",
        "",
        "CORPORATE_ACTION_EXISTS",
    ]


def test_split_conserves_proportions_and_totals() -> None:
    c, d = dividend_world()
    listed(c, d, "EQ1", authorized=10_000)
    commit_ok(
        d,
        [
            issue_tx(c, "EQ1", "SA-A", 600),
            issue_tx(c, "EQ1", "SA-B", 300),
            issue_tx(c, "EQ1", "SA-C", 100),
            dividend_tx(c, "DIV1"),  # record date 2026-01-10
        ],
    )
    p = d.commit(
        [
            split_tx(c, "S0", 2, 1, 20260110),  # on the dividend's record date
            split_tx(c, "S1", 2, 2, 20260120),
            split_tx(c, "S1", 2, 1, 20251231),
            split_tx(c, "S1", 2, 1, 20260120),
            split_tx(c, "S2", 3, 1, 20260121),  # one open split at a time
            dividend_tx(c, "DIV2", record_date=20260125, ex_date=20260125, payment_date=20260130),
            split_call(c, "execute_split", "S1"),  # not yet effective
        ]
    )
    assert codes(p) == [
        "CORPORATE_ACTION_CONFLICT",
        "INVALID_ARGUMENT",
        "INVALID_DATE",
        "",
        "CORPORATE_ACTION_CONFLICT",
        "CORPORATE_ACTION_CONFLICT",
        "NOT_YET_EFFECTIVE",
    ]
    # After the dividend's record date and before the split date: A 500, B 300, C 100, D 100.
    at(d, date_start_ms(20260112), [transfer_tx(c, "EQ1", "SA-A", "SA-D", 100)])
    p = at(
        d,
        date_start_ms(20260120),
        [
            transfer_tx(c, "EQ1", "SA-A", "SA-D", 1),
            issue_tx(c, "EQ1", "SA-A", 1),
            split_call(c, "execute_split", "S1", who="broker-a-admin"),
            split_call(c, "execute_split", "S1", who="exchange-admin"),
            split_call(c, "execute_split", "S1"),
            transfer_tx(c, "EQ1", "SA-A", "SA-D", 1),
        ],
    )
    assert codes(p) == [
        "SPLIT_PENDING",
        "SPLIT_PENDING",
        "NOT_AUTHORIZED",
        "",
        "CORPORATE_ACTION_CLOSED",
        "",
    ]
    assert [balance(d, "EQ1", a) for a in ACCOUNTS] == [999, 600, 200, 201]
    sec = security(d, "EQ1")
    assert (sec.issued, sec.authorized) == (2000, 20_000)
    assert sum(balance(d, "EQ1", a) for a in ACCOUNTS) == sec.issued
    totals = [read(d, investor_total_key("EQ1", "INV-" + a[-1]), InvestorTotal) for a in ACCOUNTS]
    assert [t.total if t else 0 for t in totals] == [999, 600, 200, 201]
    split = read(d, split_key("S1"), Split)
    assert split is not None and split.status == "executed"
    # The dividend's entitlements stay those of its record date, before the split.
    p = at(d, date_start_ms(20260121), [pay_tx(c, "DIV1", ["SA-A", "SA-B", "SA-C"])])
    assert codes(p) == [""]
    div = read(d, dividend_key("DIV1"), Dividend)
    assert div is not None and (div.status, div.paid_shares) == ("completed", 1000)

    # A reverse split that would leave fractional shares fails and changes nothing.
    commit_ok(d, [split_tx(c, "S3", 1, 2, 20260121)])
    before = [balance(d, "EQ1", a) for a in ACCOUNTS]
    p = d.commit([split_call(c, "execute_split", "S3")])
    assert codes(p) == ["FRACTIONAL_UNITS"]
    assert [balance(d, "EQ1", a) for a in ACCOUNTS] == before
    p = d.commit(
        [
            split_call(c, "cancel_split", "S3", who="exchange-admin"),
            split_call(c, "cancel_split", "S3"),
            transfer_tx(c, "EQ1", "SA-A", "SA-D", 1),
        ]
    )
    assert codes(p) == ["NOT_AUTHORIZED", "", ""]

    # Pledged holdings block a split.
    commit_ok(d, [pledge_tx(c, "P1", "SA-B", 100), split_tx(c, "S4", 2, 1, 20260121)])
    p = d.commit([split_call(c, "execute_split", "S4"), split_call(c, "execute_split", "NOPE")])
    assert codes(p) == ["HOLDINGS_ENCUMBERED", "UNKNOWN_CORPORATE_ACTION"]


def test_a_dividend_that_could_overflow_is_refused_at_announcement() -> None:
    """Per-share amount × every unit that may exist must be a representable amount of e-CNY;
    otherwise a holder's later transfer would record an entitlement that cannot be encoded."""
    c, d = world()
    listed(c, d, "EQ1")
    commit_ok(d, [issue_tx(c, "EQ1", "SA-A", 100)])
    p = d.commit([dividend_tx(c, "D-HUGE", amount_per_share_fen=2**63 - 1)])
    assert codes(p) == ["INVALID_ARGUMENT"]
    assert read(d, dividend_key("D-HUGE"), Dividend) is None
    commit_ok(d, [dividend_tx(c, "D-OK", amount_per_share_fen=4_000_000)])
