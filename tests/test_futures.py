"""Futures: contracts, client accounts, exchange-reported trades, margin in e-CNY, daily
mark-to-market in one block, margin calls, forced liquidation, cash settlement at expiry; a
property test against a Python model; limit tests at, below and above every limit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from consortia.execution.apply import Proposal
from consortia.execution.context import MAX_EVENTS_PER_TX
from consortia.execution.state import ChainState
from consortia.ledger.types import CommitCertificate, Transaction
from consortia.modules import futures
from consortia.modules.registry import account_key as registry_account_key
from tests.chainkit import Consortium, Driver
from tests.ecnykit import cash, cash_world, freeze_tx, open_wallet_tx
from tests.futureskit import (
    CLIENT,
    CODE,
    FRI,
    LOADED,
    MON,
    THU,
    TUE,
    WALLET,
    WED,
    account,
    at,
    contract,
    contract_args,
    deposit_tx,
    events,
    futures_records,
    futures_world,
    fx,
    hm,
    index,
    liquidate_tx,
    position,
    settle_tx,
    trade_tx,
    withdraw_tx,
)
from tests.test_investors import codes, commit_ok


def ok(d: Driver, time_ms: int, txs: list[Transaction]) -> Proposal:
    p = at(d, time_ms, txs)
    assert codes(p) == [""] * len(txs), [(r.code, r.message) for r in p.receipts]
    return p


def refused(d: Driver, tx: Transaction, code: str, time_ms: int) -> Proposal:
    """``tx`` alone fails with ``code`` and leaves every futures and e-CNY record byte-identical
    (only the sender's nonce moves)."""
    before = futures_records(d)
    p = at(d, time_ms, [tx])
    assert codes(p) == [code], [(r.code, r.message) for r in p.receipts]
    assert set(p.writes) == {registry_account_key(tx.sender)}, sorted(p.writes)
    assert futures_records(d) == before
    return p


def balances(d: Driver, *accounts: str) -> list[int]:
    return [account(d, a).balance for a in accounts]


# ---------------------------------------------------------------------------------------------
# The scenario


def test_two_clients_over_three_settlement_days_call_liquidation_and_expiry() -> None:
    c, d = futures_world(deposits={"FA-A": 300_000, "FA-B": 120_000})
    assert cash(d, "W-MARGIN") == 420_000
    assert cash(d, "W-A") == LOADED - 300_000

    # Monday: A buys 10 lots from B at 10,000 (both open); initial margin 10 × 10 × 10,000 × 10%
    # = 100,000 fen each.
    ok(d, hm(MON, 10), [trade_tx(c, "T1", "FA-A", "FA-B", 10, 10_000)])
    assert (position(d, "FA-A").long, position(d, "FA-B").short) == (10, 10)
    p = ok(d, hm(MON, 16), [settle_tx(c, MON, {CODE: 10_200})])
    # Variation margin: 200 fen × 10 units × 10 lots = 20,000 fen from the short to the long.
    assert balances(d, "FA-A", "FA-B") == [320_000, 100_000]
    (summary,) = events(p, "daily_settlement")
    assert summary["variation"] == [["FA-A", 20_000], ["FA-B", -20_000]]
    assert (summary["open_interest"], summary["previous_price"]) == (10, 10_000)
    assert events(p, "margin_call") == []  # B: 100,000 ≥ maintenance 81,600
    assert cash(d, "W-MARGIN") == 420_000  # settlement moves balances, never e-CNY out

    # Tuesday: +500 → B at 50,000, below maintenance (10 × 10 × 10,700 × 8% = 85,600): a call
    # for what restores the initial margin, 107,000 − 50,000.
    p = ok(d, hm(TUE, 16), [settle_tx(c, TUE, {CODE: 10_700})])
    assert balances(d, "FA-A", "FA-B") == [370_000, 50_000]
    (call,) = events(p, "margin_call")
    assert call == {
        "account_id": "FA-B",
        "firm_org": "broker-b",
        "trading_day": TUE,
        "equity": 50_000,
        "maintenance": 85_600,
        "call_fen": 57_000,
    }
    assert account(d, "FA-B").call_day == TUE
    # Too early to liquidate: the call is not missed yet.
    refused(d, liquidate_tx(c, "FA-B", "early"), "NO_MISSED_MARGIN_CALL", hm(WED, 9))

    # Wednesday: +500 again, B has not paid: the call is missed.
    p = ok(d, hm(WED, 16), [settle_tx(c, WED, {CODE: 11_200})])
    assert balances(d, "FA-A", "FA-B") == [420_000, 0]
    (missed,) = events(p, "margin_call_missed")
    assert (missed["account_id"], missed["call_day"], missed["call_fen"]) == ("FA-B", TUE, 112_000)
    assert account(d, "FA-B").call_missed

    # Thursday: B's firm orders the forced liquidation; B may now only close; the exchange
    # reports B's forced closing trade (A closes 4 of its longs against it).
    p = ok(d, hm(THU, 9, 30), [liquidate_tx(c, "FA-B", "margin call of 20260106 not met")])
    (order,) = events(p, "liquidation_ordered")
    assert order["reason"] == "margin call of 20260106 not met"
    refused(d, trade_tx(c, "T-X", "FA-A", "FA-B", 1, 11_200), "ACCOUNT_LIQUIDATING", hm(THU, 9, 45))
    p = ok(
        d,
        hm(THU, 10),
        [trade_tx(c, "T2", "FA-B", "FA-A", 4, 11_500, buyer_offset="close", seller_offset="close")],
    )
    (forced,) = events(p, "forced_liquidation")
    assert forced == {
        "trade_id": "T2",
        "account_id": "FA-B",
        "code": CODE,
        "lots": 4,
        "price": 11_500,
        "reason": "margin call of 20260106 not met",
    }
    assert (position(d, "FA-A").long, position(d, "FA-B").short) == (6, 6)
    p = ok(d, hm(THU, 16), [settle_tx(c, THU, {CODE: 10_900})])
    # A: sold 4 at 11,500 (+300 each) and 6 lots fell 300: (1,200 − 1,800) × 10 = −6,000.
    assert balances(d, "FA-A", "FA-B") == [414_000, 6_000]
    assert account(d, "FA-B").call_missed  # 6,000 is still below maintenance 52,320

    # Friday, the last trading day: the final settlement price cash-settles the rest.
    p = ok(d, hm(FRI, 16), [settle_tx(c, FRI, {CODE: 10_600})])
    assert balances(d, "FA-A", "FA-B") == [396_000, 24_000]
    (expired,) = events(p, "contract_expired")
    assert expired == {
        "code": CODE,
        "final_settlement_price": 10_600,
        "cash_settled": [["FA-A", 6, 0], ["FA-B", 0, 6]],
    }
    # Without positions B needs no margin: the call is over.
    assert events(p, "margin_call_met") == [{"account_id": "FA-B", "call_day": TUE}]
    assert contract(d).status == "expired"
    assert index(d).contracts == () and index(d).accounts == ()
    assert (position(d, "FA-A").long, position(d, "FA-B").short) == (0, 0)
    # Conservation: balances sum to the deposits, and custody holds exactly that.
    assert sum(balances(d, "FA-A", "FA-B")) == 420_000 == cash(d, "W-MARGIN")
    ok(d, hm(FRI, 17), [withdraw_tx(c, "FA-A", 396_000), withdraw_tx(c, "FA-B", 24_000)])
    assert balances(d, "FA-A", "FA-B") == [0, 0] and cash(d, "W-MARGIN") == 0
    assert cash(d, "W-A") == LOADED - 300_000 + 396_000
    assert cash(d, "W-B") == LOADED - 120_000 + 24_000
    refused(d, trade_tx(c, "T3", "FA-A", "FA-D", 1, 10_600), "CONTRACT_EXPIRED", hm(FRI, 18))


def test_negative_equity_is_called_and_kept_as_a_debt() -> None:
    c, d = futures_world(deposits={"FA-A": 300_000, "FA-B": 100_000})
    ok(d, hm(MON, 10), [trade_tx(c, "T1", "FA-A", "FA-B", 10, 10_000)])
    # Two limit-up days: B loses 50,000 then 52,500 → −2,500.
    ok(d, hm(MON, 16), [settle_tx(c, MON, {CODE: 10_500})])
    p = ok(d, hm(TUE, 16), [settle_tx(c, TUE, {CODE: 11_020})])
    assert balances(d, "FA-A", "FA-B") == [402_000, -2_000]
    assert account(d, "FA-B").call_missed
    assert events(p, "margin_call_missed")[0]["equity"] == -2_000
    assert sum(balances(d, "FA-A", "FA-B")) == cash(d, "W-MARGIN") == 400_000
    # Nothing can be withdrawn from a debt; paying the call in full meets it.
    refused(d, withdraw_tx(c, "FA-B", 1), "INSUFFICIENT_MARGIN", hm(WED, 9))
    ok(d, hm(WED, 9, 1), [deposit_tx(c, "FA-B", 2_000 + 110_200 - 1)])
    assert account(d, "FA-B").call_day == MON
    p = ok(d, hm(WED, 9, 2), [deposit_tx(c, "FA-B", 1)])
    assert events(p, "margin_call_met") == [{"account_id": "FA-B", "call_day": MON}]


# ---------------------------------------------------------------------------------------------
# Rules, roles and rejections


def test_a_contract_expires_at_the_first_settlement_from_its_last_trading_day() -> None:
    c, d = futures_world(deposits={"FA-A": 100_000, "FA-B": 100_000})
    ok(d, hm(MON, 10), [trade_tx(c, "T1", "FA-A", "FA-B", 1, 10_000)])
    ok(d, hm(THU, 16), [settle_tx(c, THU, {CODE: 10_100})])  # no settlement Mon–Wed, Fri
    assert contract(d).status == "active"
    mon2 = 20260112
    refused(d, trade_tx(c, "T2", "FA-A", "FA-B", 1, 10_100), "CONTRACT_EXPIRED", hm(mon2, 10))
    p = ok(d, hm(mon2, 16), [settle_tx(c, mon2, {CODE: 10_200})])
    assert [e["code"] for e in events(p, "contract_expired")] == [CODE]
    assert balances(d, "FA-A", "FA-B") == [102_000, 98_000]
    assert index(d) == futures.Index((), (), mon2)


def test_a_deposit_meets_the_call_before_the_next_settlement() -> None:
    c, d = futures_world(deposits={"FA-A": 300_000, "FA-B": 120_000})
    ok(d, hm(MON, 10), [trade_tx(c, "T1", "FA-A", "FA-B", 10, 10_000)])
    ok(d, hm(MON, 16), [settle_tx(c, MON, {CODE: 10_500})])
    assert balances(d, "FA-A", "FA-B") == [350_000, 70_000]  # maintenance 84,000
    assert account(d, "FA-B").call_fen == 105_000 - 70_000
    # One fen short of the initial margin does not meet it; the rest does.
    ok(d, hm(TUE, 9), [deposit_tx(c, "FA-B", 34_999)])
    assert account(d, "FA-B").call_day == MON
    p = ok(d, hm(TUE, 9, 1), [deposit_tx(c, "FA-B", 1)])
    assert events(p, "margin_call_met") == [{"account_id": "FA-B", "call_day": MON}]
    p = ok(d, hm(TUE, 16), [settle_tx(c, TUE, {CODE: 10_500})])
    assert events(p, "margin_call") == events(p, "margin_call_missed") == []


def test_roles_suitability_and_custody_rules() -> None:
    c, d = futures_world(deposits={"FA-A": 100_000, "FA-B": 100_000})
    t = hm(MON, 11)
    # Only the exchange lists, reports and settles; only the firm opens and liquidates.
    refused(d, fx(c, "broker-a-admin", "list_contract", {**_args("X1")}), "NOT_AUTHORIZED", t)
    refused(
        d, trade_tx(c, "T1", "FA-A", "FA-B", 1, 10_000, who="broker-a-admin"), "NOT_AUTHORIZED", t
    )
    refused(d, settle_tx(c, MON, {CODE: 10_000}, who="inv-a"), "NOT_AUTHORIZED", t)
    refused(
        d,
        fx(c, "broker-b-admin", "open_account", {"account_id": "FA-X", "investor_id": "INV-A"}),
        "NOT_AUTHORIZED",
        t,
    )
    refused(d, liquidate_tx(c, "FA-A", "r", who="broker-b-admin"), "NOT_AUTHORIZED", t)
    # INV-C tolerates C3 only: no futures account.
    refused(
        d,
        fx(c, "broker-a-admin", "open_account", {"account_id": "FA-C", "investor_id": "INV-C"}),
        "SUITABILITY_MISMATCH",
        t,
    )
    # Only the client deposits from / withdraws to its own wallet.
    refused(d, deposit_tx(c, "FA-A", 1, wallet="W-B"), "NOT_AUTHORIZED", t)
    refused(d, withdraw_tx(c, "FA-A", 1, wallet="W-B"), "NOT_AUTHORIZED", t)
    # Custody is named once.
    refused(
        d, fx(c, "exchange-admin", "set_custody", {"wallet_id": "W-FUND"}), "CUSTODY_ALREADY_SET", t
    )
    # A qualified-only contract refuses an unqualified client's opening trade (INV-D).
    ok(d, t, [fx(c, "exchange-admin", "list_contract", _args("QF1", qualified_only=True))])
    ok(d, hm(MON, 11, 1), [deposit_tx(c, "FA-D", 100_000)])
    refused(
        d,
        trade_tx(c, "T2", "FA-A", "FA-D", 1, 10_000, code="QF1"),
        "QUALIFIED_INVESTORS_ONLY",
        hm(MON, 11, 2),
    )
    # Halts stop trading; resume restores it.
    ok(d, hm(MON, 12), [fx(c, "exchange-admin", "halt", {"code": CODE, "reason": "news"})])
    refused(d, trade_tx(c, "T3", "FA-A", "FA-B", 1, 10_000), "TRADING_HALTED", hm(MON, 12, 1))
    ok(d, hm(MON, 13), [fx(c, "exchange-admin", "resume", {"code": CODE, "reason": "ok"})])
    ok(d, hm(MON, 13, 1), [trade_tx(c, "T3", "FA-A", "FA-B", 1, 10_000)])
    refused(d, trade_tx(c, "T3", "FA-A", "FA-B", 1, 10_000), "TRADE_EXISTS", hm(MON, 13, 2))
    refused(d, trade_tx(c, "T4", "FA-A", "FA-A", 1, 10_000), "INVALID_ARGUMENT", hm(MON, 13, 3))
    # Settlement names every active contract exactly once, in code order.
    refused(d, settle_tx(c, MON, {CODE: 10_000}), "SETTLEMENT_PRICES_MISMATCH", hm(MON, 16))
    ok(d, hm(MON, 16, 1), [settle_tx(c, MON, {CODE: 10_000, "QF1": 10_000})])
    refused(
        d,
        settle_tx(c, MON, {CODE: 10_000, "QF1": 10_000}),
        "ALREADY_SETTLED",
        hm(MON, 16, 2),
    )
    refused(
        d,
        fx(c, "broker-a-admin", "close_account", {"account_id": "FA-A"}),
        "ACCOUNT_NOT_EMPTY",
        hm(MON, 16, 3),
    )


def test_custody_must_be_held_by_an_independent_custodian() -> None:
    c, d = cash_world()
    commit_ok(
        d,
        [
            open_wallet_tx(
                c, "ccb-admin", "W-EXCH", "exchange-admin", category=1, kind="corporate"
            ),
        ],
    )
    for wallet in ("W-EXCH", "W-A"):  # the exchange's own wallet; a personal wallet
        before = futures_records(d)
        p = d.commit([fx(c, "exchange-admin", "set_custody", {"wallet_id": wallet})])
        assert codes(p) == ["INVALID_ARGUMENT"]
        assert futures_records(d) == before
    p = d.commit([deposit_tx(c, "FA-A", 1)])
    assert codes(p) == ["UNKNOWN_FUTURES_ACCOUNT"]


def _args(code: str, **over: Any) -> dict[str, Any]:
    return contract_args(code, **over)


# ---------------------------------------------------------------------------------------------
# Limits: at, just below and just above


def test_price_limits_at_and_beyond_the_band() -> None:
    c, d = futures_world(deposits={"FA-A": 500_000, "FA-B": 500_000})
    # Band on day one: 10,000 ± 500 (5%), tick 10.
    n = iter(range(100))
    for price in (10_500, 10_490, 9_500, 9_510):
        ok(d, hm(MON, 10, next(n)), [trade_tx(c, f"T{price}", "FA-A", "FA-B", 1, price)])
    for price in (10_510, 9_490):
        refused(
            d,
            trade_tx(c, f"T{price}", "FA-A", "FA-B", 1, price),
            "PRICE_LIMIT",
            hm(MON, 11, next(n)),
        )
    refused(d, trade_tx(c, "Ttick", "FA-A", "FA-B", 1, 10_005), "TICK_SIZE", hm(MON, 11, next(n)))
    # The settlement price obeys the band too, and moves it for the next day.
    refused(d, settle_tx(c, MON, {CODE: 10_510}), "PRICE_LIMIT", hm(MON, 16))
    ok(d, hm(MON, 16, 1), [settle_tx(c, MON, {CODE: 10_500})])
    # New band: 10,500 ± 525 → 9,975..11,025, within ticks 9,980..11,020.
    ok(d, hm(TUE, 10), [trade_tx(c, "U1", "FA-A", "FA-B", 1, 11_020)])
    refused(d, trade_tx(c, "U2", "FA-A", "FA-B", 1, 11_030), "PRICE_LIMIT", hm(TUE, 10, 1))
    ok(d, hm(TUE, 10, 2), [trade_tx(c, "U3", "FA-A", "FA-B", 1, 9_980)])
    refused(d, trade_tx(c, "U4", "FA-A", "FA-B", 1, 9_970), "PRICE_LIMIT", hm(TUE, 10, 3))


def test_position_limit_per_side_at_and_above() -> None:
    c, d = futures_world(deposits={"FA-A": 1_000_000, "FA-B": 1_000_000})
    # Deposits are within W-A's per-payment limit (¥50,000); the limit is 100 lots per side.
    ok(d, hm(MON, 10), [trade_tx(c, "T1", "FA-A", "FA-B", 99, 10_000)])
    refused(d, trade_tx(c, "T2", "FA-A", "FA-B", 2, 10_000), "POSITION_LIMIT", hm(MON, 10, 1))
    ok(d, hm(MON, 10, 2), [trade_tx(c, "T3", "FA-A", "FA-B", 1, 10_000)])  # exactly 100
    refused(d, trade_tx(c, "T4", "FA-A", "FA-B", 1, 10_000), "POSITION_LIMIT", hm(MON, 10, 3))
    # The other side and closing are unaffected by the long limit.
    ok(
        d,
        hm(MON, 10, 4),
        [trade_tx(c, "T5", "FA-B", "FA-A", 1, 10_000, buyer_offset="close", seller_offset="close")],
    )
    ok(d, hm(MON, 10, 5), [trade_tx(c, "T6", "FA-A", "FA-B", 1, 10_000)])  # back to 100
    refused(
        d,
        trade_tx(c, "T7", "FA-A", "FA-B", 101, 10_000, buyer_offset="close"),
        "INVALID_ARGUMENT",
        hm(MON, 10, 6),
    )
    refused(
        d,
        trade_tx(c, "T8", "FA-D", "FA-A", 1, 10_000, seller_offset="close", buyer_offset="close"),
        "INSUFFICIENT_POSITION",
        hm(MON, 10, 7),
    )


def test_initial_margin_and_withdrawal_at_and_above_the_free_margin() -> None:
    # One lot at 10,000 needs 10 × 10,000 × 10% = 10,000 fen of initial margin.
    c, d = futures_world(deposits={"FA-A": 9_999, "FA-B": 10_000})
    refused(d, trade_tx(c, "T1", "FA-A", "FA-B", 1, 10_000), "INSUFFICIENT_MARGIN", hm(MON, 10))
    ok(d, hm(MON, 10, 1), [deposit_tx(c, "FA-A", 1)])
    ok(d, hm(MON, 10, 2), [trade_tx(c, "T1", "FA-A", "FA-B", 1, 10_000)])  # both exactly at
    refused(d, trade_tx(c, "T2", "FA-A", "FA-B", 1, 10_000), "INSUFFICIENT_MARGIN", hm(MON, 10, 3))
    # Buying above the last settlement price costs the difference at once: with 21,000 fen and
    # two lots (initial 20,000), a second lot at P leaves equity 21,000 − (P − 10,000) × 10.
    ok(d, hm(MON, 10, 4), [deposit_tx(c, "FA-A", 11_000), deposit_tx(c, "FA-D", 50_000)])
    refused(d, trade_tx(c, "T3", "FA-A", "FA-D", 1, 10_110), "INSUFFICIENT_MARGIN", hm(MON, 10, 5))
    ok(d, hm(MON, 10, 6), [trade_tx(c, "T3", "FA-A", "FA-D", 1, 10_100)])  # exactly 20,000
    ok(
        d,
        hm(MON, 10, 7),
        [trade_tx(c, "T4", "FA-D", "FA-A", 1, 10_100, buyer_offset="close", seller_offset="close")],
    )
    ok(d, hm(MON, 10, 8), [trade_tx(c, "T5", "FA-A", "FA-D", 1, 10_090)])
    # A: equity 21,000 − 900 (T5) − 0 (T3/T4 round trip) = 20,100; free margin 100.
    refused(d, withdraw_tx(c, "FA-A", 101), "INSUFFICIENT_MARGIN", hm(MON, 11))
    ok(d, hm(MON, 11, 1), [withdraw_tx(c, "FA-A", 100)])
    refused(d, withdraw_tx(c, "FA-A", 1), "INSUFFICIENT_MARGIN", hm(MON, 11, 2))
    # Closing is always allowed, even with no free margin.
    ok(
        d,
        hm(MON, 11, 3),
        [trade_tx(c, "T6", "FA-B", "FA-A", 1, 10_000, buyer_offset="close", seller_offset="close")],
    )


def test_maintenance_boundary_calls_only_below() -> None:
    # B short 10 lots from 10,000 with 101,600 fen; at S it has 101,600 − (S − 10,000) × 100
    # against a maintenance requirement of 10 × 10 × S × 8% = 8 × S: equal at S = 10,200.
    for price, called in ((10_190, False), (10_200, False), (10_210, True)):
        c, d = futures_world(deposits={"FA-A": 300_000, "FA-B": 101_600})
        ok(d, hm(MON, 10), [trade_tx(c, "T1", "FA-A", "FA-B", 10, 10_000)])
        p = ok(d, hm(MON, 16), [settle_tx(c, MON, {CODE: price})])
        equity = 101_600 - (price - 10_000) * 100
        assert account(d, "FA-B").balance == equity
        assert (equity < 8 * price) == called
        assert len(events(p, "margin_call")) == int(called)
        assert (account(d, "FA-B").call_day == MON) == called


def test_listing_checks() -> None:
    c, d = futures_world()
    t = hm(MON, 10)
    for over, code in (
        ({"maintenance_rate_bp": 1001}, "INVALID_ARGUMENT"),
        ({"last_trading_day": 20260210}, "INVALID_ARGUMENT"),  # not in the delivery month
        ({"last_trading_day": 20260110}, "INVALID_ARGUMENT"),  # a Saturday
        ({"reference_price": 10_005}, "TICK_SIZE"),
        ({"contract_size": 0}, "INVALID_ARGUMENT"),
        ({"daily_limit_bp": 10_001}, "INVALID_ARGUMENT"),
        ({"code": CODE}, "CONTRACT_EXISTS"),
    ):
        args = _args(over.pop("code", "NEW1"), **over)  # type: ignore[arg-type]
        refused(d, fx(c, "exchange-admin", "list_contract", args), code, t)
        t += 60_000


@pytest.mark.parametrize(
    ("params", "threshold"), [(None, 80), ({"futures_large_position_lots": 30}, 30)]
)
def test_large_positions_are_reported_from_the_threshold(
    params: dict[str, Any] | None, threshold: int
) -> None:
    """The threshold: genesis ``futures_large_position_lots``, else 80% of the position limit.
    A at the threshold (long), B just below (short −1 after D takes one), D far below."""
    c, d = futures_world(
        deposits={"FA-A": 900_000, "FA-B": 900_000, "FA-D": 100_000}, params=params
    )
    ok(
        d,
        hm(MON, 10),
        [
            trade_tx(c, "T1", "FA-A", "FA-B", threshold - 1, 10_000),
            trade_tx(c, "T2", "FA-A", "FA-D", 1, 10_000),
        ],
    )
    p = ok(d, hm(MON, 16), [settle_tx(c, MON, {CODE: 10_000})])
    assert events(p, "large_position") == [
        {
            "account_id": "FA-A",
            "investor_id": "INV-A",
            "firm_org": "broker-a",
            "trading_day": MON,
            "positions": [[CODE, threshold, 0, threshold]],
        }
    ]
    # One more lot for B: now both sides are reported, sorted by account.
    ok(d, hm(TUE, 10), [trade_tx(c, "T3", "FA-A", "FA-B", 1, 10_000)])
    p = ok(d, hm(TUE, 16), [settle_tx(c, TUE, {CODE: 10_000})])
    assert [(e["account_id"], e["positions"]) for e in events(p, "large_position")] == [
        ("FA-A", [[CODE, threshold + 1, 0, threshold]]),
        ("FA-B", [[CODE, 0, threshold, threshold]]),
    ]


def test_one_settlement_fits_in_one_transaction() -> None:
    # Per settlement: a summary and an expiry event per contract, one margin review event and
    # one large-position report per account.
    per_settlement = 2 * futures.MAX_ACTIVE_CONTRACTS + 2 * futures.MAX_ACTIVE_ACCOUNTS
    assert per_settlement <= MAX_EVENTS_PER_TX


def test_active_accounts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(futures, "MAX_ACTIVE_ACCOUNTS", 2)
    c, d = futures_world(deposits={"FA-A": 100_000, "FA-B": 100_000, "FA-D": 100_000})
    ok(d, hm(MON, 10), [trade_tx(c, "T1", "FA-A", "FA-B", 1, 10_000)])  # at the bound
    refused(
        d, trade_tx(c, "T2", "FA-A", "FA-D", 1, 10_000), "TOO_MANY_ACTIVE_ACCOUNTS", hm(MON, 10, 1)
    )
    # Once B's position is settled away, D may take its place.
    ok(
        d,
        hm(MON, 10, 2),
        [trade_tx(c, "T3", "FA-B", "FA-A", 1, 10_000, buyer_offset="close", seller_offset="close")],
    )
    ok(d, hm(MON, 16), [settle_tx(c, MON, {CODE: 10_000})])
    assert index(d).accounts == ()
    ok(d, hm(TUE, 10), [trade_tx(c, "T2", "FA-A", "FA-D", 1, 10_000)])


def test_turnover_and_balance_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(futures, "MAX_BALANCE", 200_000)
    c, d = futures_world(deposits={"FA-A": 100_000, "FA-B": 100_000})
    # A day's trade cash × contract size may reach the bound, not pass it.
    ok(d, hm(MON, 10), [trade_tx(c, "T1", "FA-A", "FA-B", 2, 10_000)])  # 2 × 10,000 × 10
    refused(d, trade_tx(c, "T2", "FA-A", "FA-B", 1, 10_000), "TURNOVER_LIMIT", hm(MON, 10, 1))
    refused(d, deposit_tx(c, "FA-A", 100_001), "INVALID_ARGUMENT", hm(MON, 10, 2))
    ok(d, hm(MON, 10, 3), [deposit_tx(c, "FA-A", 100_000)])  # exactly the bound
    # A settlement that would carry a balance past the bound fails whole.
    refused(d, settle_tx(c, MON, {CODE: 10_010}), "SETTLEMENT_OVERFLOW", hm(MON, 16))
    ok(d, hm(MON, 16, 1), [settle_tx(c, MON, {CODE: 10_000})])


# ---------------------------------------------------------------------------------------------
# Property: conservation, open interest, calls


ACCOUNTS = ("FA-A", "FA-B", "FA-D")
DAYS = (MON, TUE, WED, THU, FRI)
# Settlement moves of up to 40 ticks (400 fen) a day keep prices within 8,000..12,000 over five
# days, where the 5% band is never narrower than 400 fen: every generated price is in the band.
MOVE_TICKS = 40


@dataclass
class Model:
    """An independent model: per account net lots and today's signed trades; balances."""

    balance: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACCOUNTS, 0))
    net: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACCOUNTS, 0))
    trades: list[tuple[str, int, int]] = field(default_factory=list)  # account, ±lots, price
    price: int = 10_000


_BASE: list[tuple[Consortium, ChainState, CommitCertificate | None, dict[bytes, int]]] = []


def _base(deposit: int) -> tuple[Consortium, Driver]:
    if not _BASE:
        c, d = futures_world()
        _BASE.append((c, d.state, d.last_cert, dict(c.nonces)))
    c, state, cert, nonces = _BASE[0]
    c.nonces = dict(nonces)
    d = Driver(c)
    d.state, d.last_cert = state, cert
    ok(d, hm(MON, 9, 5), [deposit_tx(c, a, deposit) for a in ACCOUNTS])
    return c, d


trade_st = st.tuples(
    st.just("trade"),
    st.sampled_from(ACCOUNTS),
    st.sampled_from(ACCOUNTS),
    st.integers(1, 8),  # lots
    st.integers(-4, 4),  # hundreds of fen from the last settlement price
    st.booleans(),  # buyer closes if it can
    st.booleans(),  # seller closes if it can
)
cash_st = st.tuples(
    st.sampled_from(["deposit", "withdraw"]),
    st.sampled_from(ACCOUNTS),
    st.integers(1, 100),  # deposit: thousands of fen; withdraw: percent of the free margin
)
move_st = st.one_of(  # limit-size moves often, so margin calls and missed calls happen
    st.integers(-MOVE_TICKS, MOVE_TICKS), st.sampled_from([-MOVE_TICKS, MOVE_TICKS])
)
day_st = st.tuples(st.lists(st.one_of(trade_st, trade_st, cash_st), max_size=6), move_st)
deposit_st = st.sampled_from([12_000, 25_000, 60_000, 400_000])


def _free_margin(d: Driver, m: Model, a: str) -> int:
    """The model's withdrawable margin: min(balance, equity − initial) at the last price."""
    pos = position(d, a)
    mine = [(q, px) for who, q, px in m.trades if who == a]
    equity = m.balance[a] + sum(q * (m.price - px) * 10 for q, px in mine)
    initial = -(-(pos.long + pos.short) * 10 * m.price * 1000 // 10_000)
    return min(m.balance[a], equity - initial)


def _cash_op(c: Consortium, d: Driver, m: Model, op: Any, time_ms: int) -> int:
    """A deposit or withdrawal; returns the change of the margin total."""
    kind, a = op[0], op[1]
    x: int = op[2]
    if kind == "deposit":
        if cash(d, WALLET[a]) < x * 1_000:  # the client's wallet has run dry
            refused(d, deposit_tx(c, a, x * 1_000), "INSUFFICIENT_FUNDS", time_ms)
            return 0
        ok(d, time_ms, [deposit_tx(c, a, x * 1_000)])
        m.balance[a] += x * 1_000
        return x * 1_000
    free = _free_margin(d, m, a)
    amount = free * x // 100
    if amount <= 0:
        refused(d, withdraw_tx(c, a, max(free + 1, 1)), "INSUFFICIENT_MARGIN", time_ms)
        return 0
    if amount > cash(d, "W-MARGIN"):  # others' unpaid debts: custody cannot pay it all
        refused(d, withdraw_tx(c, a, amount), "INSUFFICIENT_FUNDS", time_ms)
        return 0
    ok(d, time_ms, [withdraw_tx(c, a, amount)])
    m.balance[a] -= amount
    return -amount


def _run(deposit: int, days: list[Any]) -> None:
    c, d = _base(deposit)
    m = Model(balance=dict.fromkeys(ACCOUNTS, deposit))
    total = deposit * len(ACCOUNTS)
    n = 0
    for day, (ops, move) in zip(DAYS, days, strict=False):
        for op in ops:
            n += 1
            if op[0] != "trade":
                total += _cash_op(c, d, m, op, hm(day, 10, n))
                continue
            _, buyer, seller, lots, ticks, bclose, sclose = op
            if buyer == seller:
                continue
            price = m.price + ticks * 100
            pb, ps = position(d, buyer), position(d, seller)
            boff = "close" if bclose and pb.short >= lots else "open"
            soff = "close" if sclose and ps.long >= lots else "open"
            tx = trade_tx(
                c, f"T{n}", buyer, seller, lots, price, buyer_offset=boff, seller_offset=soff
            )
            p = at(d, hm(day, 10, n), [tx])
            assert codes(p)[0] in ("", "INSUFFICIENT_MARGIN", "POSITION_LIMIT"), p.receipts
            event(f"trade {codes(p)[0] or 'accepted'}")
            if codes(p) == [""]:
                m.trades += [(buyer, lots, price), (seller, -lots, price)]
        settle = m.price + move * 10
        p = ok(d, hm(day, 16), [settle_tx(c, day, {CODE: settle})])
        # The model's variation margin: today's trades against the new price, and the
        # positions carried from yesterday against the move.
        for a in ACCOUNTS:
            vm = m.net[a] * (settle - m.price) * 10
            vm += sum(q * (settle - px) * 10 for who, q, px in m.trades if who == a)
            m.balance[a] += vm
            m.net[a] += sum(q for who, q, _ in m.trades if who == a)
        m.trades, m.price = [], settle
        expired = day == FRI
        calls = {e["account_id"] for e in events(p, "margin_call")}
        if calls:
            event("margin call raised")
        if events(p, "margin_call_missed"):
            event("margin call missed")
        for a in ACCOUNTS:
            fa = account(d, a)
            assert fa.balance == m.balance[a]
            pos = position(d, a)
            assert pos.long - pos.short == (0 if expired else m.net[a])
            # No account ends a settlement short of maintenance (or negative) without a call.
            maint = -(-(pos.long + pos.short) * 10 * settle * 800 // 10_000)
            if fa.balance < maint or fa.balance < 0:
                assert fa.call_day != 0
                assert (a in calls) == (fa.call_day == day)
            else:
                assert fa.call_day == 0
        # Conservation and open interest.
        assert sum(m.balance.values()) == total == cash(d, "W-MARGIN")
        longs = sum(position(d, a).long for a in ACCOUNTS)
        assert longs == sum(position(d, a).short for a in ACCOUNTS)
        assert (contract(d).status == "expired") == expired


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    deposit=deposit_st,
    days=st.lists(day_st, min_size=1, max_size=3),
)
def test_margin_conserved_open_interest_balanced_calls_raised(
    deposit: int, days: list[Any]
) -> None:
    _run(deposit, days)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    deposit=deposit_st,
    days=st.lists(day_st, min_size=1, max_size=5),
)
def test_margin_conserved_open_interest_balanced_calls_raised_long(
    deposit: int, days: list[Any]
) -> None:
    _run(deposit, days)


def test_wallet_rules_apply_to_margin_payments() -> None:
    # Category-2 wallets limited by genesis to ¥1,000 per payment and ¥1,500 a day.
    params = {"ecny_cat2_per_payment_fen": 100_000, "ecny_cat2_daily_fen": 150_000}
    c, d = futures_world(params=params)
    refused(d, deposit_tx(c, "FA-A", 100_001), "PER_PAYMENT_LIMIT_EXCEEDED", hm(MON, 10))
    ok(d, hm(MON, 10, 1), [deposit_tx(c, "FA-A", 100_000)])
    refused(d, deposit_tx(c, "FA-A", 50_001), "DAILY_LIMIT_EXCEEDED", hm(MON, 10, 2))
    ok(d, hm(MON, 10, 3), [deposit_tx(c, "FA-A", 50_000)])
    # A frozen wallet receives but does not pay: a withdrawal into it works, a deposit from it
    # does not.
    ok(d, hm(MON, 11), [freeze_tx(c, "court-officer", "W-A")])
    refused(d, deposit_tx(c, "FA-A", 1), "WALLET_FROZEN", hm(MON, 11, 1))
    ok(d, hm(MON, 11, 2), [withdraw_tx(c, "FA-A", 150_000)])
    assert cash(d, "W-MARGIN") == 0 and account(d, "FA-A").balance == 0
    unknown = {"account_id": "FA-Z", "wallet_id": "W-A", "amount": 1}
    refused(d, fx(c, "inv-a", "deposit", unknown), "UNKNOWN_FUTURES_ACCOUNT", hm(MON, 11, 3))
    assert CLIENT["FA-A"] == "inv-a" and WALLET["FA-A"] == "W-A"


def test_a_frozen_client_may_only_close() -> None:
    c, d = futures_world(deposits={"FA-A": 100_000, "FA-B": 100_000})
    ok(d, hm(MON, 10), [trade_tx(c, "T1", "FA-A", "FA-B", 2, 10_000)])
    freeze = {"address": c.addr("inv-a"), "reason": "court order 2026-1"}
    ok(d, hm(MON, 11), [c.tx("court-officer", "registry", "freeze_account", freeze)])
    refused(d, trade_tx(c, "T2", "FA-A", "FA-B", 1, 10_000), "ACCOUNT_FROZEN", hm(MON, 11, 1))
    refused(d, withdraw_tx(c, "FA-A", 1), "ACCOUNT_FROZEN", hm(MON, 11, 2))
    ok(
        d,
        hm(MON, 11, 3),
        [trade_tx(c, "T3", "FA-B", "FA-A", 1, 10_000, buyer_offset="close", seller_offset="close")],
    )
    assert position(d, "FA-A").long == 1
