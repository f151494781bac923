"""Surveillance rules: each one raised by a pattern, and not raised by its near miss.

Blocks here are hand-built with the events the modules emit (the index reads committed blocks
and trusts their receipts; the story test in test_lookthrough.py covers real ones), so each rule
sees exactly the pattern under test.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from consortia.ledger.types import Block, Event, Header, Receipt, Transaction, TxStatus
from consortia.lookthrough.index import LookthroughIndex
from consortia.lookthrough.surveillance import (
    ABNORMAL_VOLUME,
    FROZEN_ACTIVITY,
    HOLDING_STEP,
    LARGE_VALUE_PAYMENT,
    WASH_TRADE,
    Alert,
    SurveillanceConfig,
    alert_as_report_fields,
)
from consortia.modules.calendar import DAY_MS
from consortia.modules.reports import check_report_fields

CHAIN = "biz-test"
T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC = 08:00 CST
Z32 = bytes(32)


class Feed:
    """Builds consecutive blocks of one chain and feeds them to an index."""

    def __init__(self, idx: LookthroughIndex) -> None:
        self.idx = idx
        self.height = 0
        self.nonce = 0

    def block(self, time_ms: int, *txs: tuple[Transaction, Receipt]) -> None:
        self.height += 1
        header = Header(
            CHAIN, self.height, time_ms, Z32, Z32, Z32, Z32, Z32, Z32, bytes(20), Z32, Z32
        )
        block = Block(header, tuple(t for t, _ in txs))
        bh = hashlib.sha256(f"{CHAIN}/{self.height}".encode()).digest()
        assert self.idx.ingest(block, [r for _, r in txs], block_hash=bh)

    def skip_to(self, height: int, time_ms: int) -> None:
        while self.height < height - 1:
            self.block(time_ms)

    def tx(
        self,
        module: str,
        method: str,
        args: dict[str, Any],
        events: list[tuple[str, str, dict[str, Any]]] = (),  # type: ignore[assignment]
        *,
        code: str = "",
    ) -> tuple[Transaction, Receipt]:
        self.nonce += 1
        tx = Transaction(CHAIN, bytes(19) + b"\x01", self.nonce, module, method, args, b"")
        tx_hash = hashlib.sha256(f"tx{self.nonce}".encode()).digest()
        status = TxStatus.FAILED if code else TxStatus.OK
        evs = () if code else tuple(Event(m, k, a) for m, k, a in events)
        return tx, Receipt(tx_hash, status, code, code.lower(), evs)

    def transfer(self, code: str, src: str, dst: str, amount: int) -> tuple[Transaction, Receipt]:
        args = {"code": code, "from_account": src, "to_account": dst, "amount": amount, "memo": ""}
        return self.tx(
            "securities", "transfer", args, [("securities", "transferred", {**args, "memo": ""})]
        )

    def pay(self, src: str, dst: str, amount: int, traceable: bool) -> tuple[Transaction, Receipt]:
        ev = {
            "payer": src,
            "payee": dst,
            "amount_fen": amount,
            "purpose": "payment",
            "memo": "",
            "traceable": traceable,
        }
        events = [("ecny", "payment", ev)]
        if traceable:
            events.append(
                (
                    "ecny",
                    "large_value_payment",
                    {
                        "payer": src,
                        "payer_operator": "bank-ccb",
                        "payee": dst,
                        "payee_operator": "bank-bocom",
                        "amount_fen": amount,
                        "purpose": "payment",
                    },
                )
            )
        return self.tx(
            "ecny",
            "pay",
            {"from_wallet": src, "to_wallet": dst, "amount": amount, "memo": ""},
            events,
        )


@pytest.fixture
def idx(tmp_path: Path) -> LookthroughIndex:
    index = LookthroughIndex(
        tmp_path / "idx.db",
        SurveillanceConfig(
            wash_window_blocks=10,
            wash_window_ms=60_000,
            volume_k=3,
            volume_days=5,
            volume_floor=1_000,
        ),
    )
    yield index  # type: ignore[misc]
    index.close()


def rules(idx: LookthroughIndex, rule: str) -> list[Alert]:
    return idx.alerts(rule)


# -- LARGE_VALUE_PAYMENT -----------------------------------------------------------------------

THRESHOLD = 5_000_000  # the chain's default ecny.large_value_fen (¥50,000)


def test_large_value_payment_at_threshold_raises(idx: LookthroughIndex) -> None:
    f = Feed(idx)
    f.block(T0, f.pay("W-A", "W-B", THRESHOLD, traceable=True))
    [alert] = rules(idx, LARGE_VALUE_PAYMENT)
    assert (alert.subject, alert.height, alert.chain_id) == ("W-A", 1, CHAIN)
    assert str(THRESHOLD) in alert.detail
    assert idx.large_payments()[0]["amount_fen"] == THRESHOLD


def test_payment_one_fen_below_threshold_does_not_raise(idx: LookthroughIndex) -> None:
    f = Feed(idx)
    f.block(T0, f.pay("W-A", "W-B", THRESHOLD - 1, traceable=False))
    assert rules(idx, LARGE_VALUE_PAYMENT) == []
    assert idx.large_payments() == []


# -- HOLDING_STEP ------------------------------------------------------------------------------


def _disclosure(f: Feed) -> tuple[Transaction, Receipt]:
    args = {
        "code": "000001",
        "from_account": "SA-X",
        "to_account": "SA-A",
        "amount": 60,
        "memo": "",
    }
    return f.tx(
        "securities",
        "transfer",
        args,
        [
            ("securities", "transferred", args),
            (
                "securities",
                "disclosure",
                {
                    "code": "000001",
                    "investor_id": "INV-A",
                    "direction": "up",
                    "threshold_pct": 5,
                    "previous_step_pct": 0,
                    "holding": 60,
                    "issued": 1000,
                    "holding_bp": 600,
                },
            ),
        ],
    )


def test_holding_crossing_a_5pct_step_raises(idx: LookthroughIndex) -> None:
    f = Feed(idx)
    f.block(T0, _disclosure(f))
    [alert] = rules(idx, HOLDING_STEP)
    assert alert.subject == "INV-A" and "up through 5%" in alert.detail


def test_transfer_without_a_step_does_not_raise(idx: LookthroughIndex) -> None:
    f = Feed(idx)
    f.block(T0, f.transfer("000001", "SA-X", "SA-A", 40))
    assert rules(idx, HOLDING_STEP) == []


# -- WASH_TRADE --------------------------------------------------------------------------------


def test_a_b_a_within_the_block_window_raises(idx: LookthroughIndex) -> None:
    f = Feed(idx)
    f.block(T0, f.transfer("000001", "SA-A", "SA-B", 500))
    f.skip_to(8, T0 + 1_000)
    f.block(T0 + 10 * 60_000, f.transfer("000001", "SA-B", "SA-A", 500))  # 7 blocks, 10 min later
    [alert] = rules(idx, WASH_TRADE)
    assert alert.subject == "SA-A" and alert.height == 8
    assert "7 blocks" in alert.detail


def test_a_b_a_within_the_time_window_raises(idx: LookthroughIndex) -> None:
    f = Feed(idx)
    f.block(T0, f.transfer("000001", "SA-A", "SA-B", 500))
    f.skip_to(30, T0 + 1_000)
    f.block(T0 + 30_000, f.transfer("000001", "SA-B", "SA-A", 200))  # 29 blocks but 30 s later
    assert [a.subject for a in rules(idx, WASH_TRADE)] == ["SA-A"]


def test_a_b_a_outside_both_windows_does_not_raise(idx: LookthroughIndex) -> None:
    f = Feed(idx)
    f.block(T0, f.transfer("000001", "SA-A", "SA-B", 500))
    f.skip_to(30, T0 + 1_000)
    f.block(T0 + 120_000, f.transfer("000001", "SA-B", "SA-A", 500))  # 29 blocks, 2 min
    f.block(T0 + 121_000, f.transfer("000002", "SA-A", "SA-B", 5))
    f.block(T0 + 122_000, f.transfer("000001", "SA-B", "SA-C", 5))  # another asset / party
    assert rules(idx, WASH_TRADE) == []


# -- FROZEN_ACTIVITY ---------------------------------------------------------------------------


def _freeze_event(kind: str, *, scope: str = "amount", code: str = "000001") -> dict[str, Any]:
    return {
        "freeze_id": "F-1",
        "scope": scope,
        "code": code,
        "account_id": "SA-A",
        "amount": 100,
        "effective": 100,
        "status": "active" if kind == "frozen" else "released",
        "reference": "(2026) court 1",
    }


def test_failed_transaction_with_frozen_code_raises(idx: LookthroughIndex) -> None:
    f = Feed(idx)
    f.block(
        T0,
        f.tx(
            "ecny",
            "pay",
            {"from_wallet": "W-A", "to_wallet": "W-B", "amount": 5, "memo": ""},
            code="WALLET_FROZEN",
        ),
        f.tx("registry", "rotate_key", {"public_key": b"k"}, code="ACCOUNT_FROZEN"),
    )
    alerts = rules(idx, FROZEN_ACTIVITY)
    assert [a.detail.rsplit(" ", 1)[-1] for a in alerts] == ["WALLET_FROZEN", "ACCOUNT_FROZEN"]


def test_failed_transfer_of_a_frozen_holding_raises(idx: LookthroughIndex) -> None:
    f = Feed(idx)
    f.block(
        T0, f.tx("enforcement", "freeze", {}, [("enforcement", "frozen", _freeze_event("frozen"))])
    )
    args = {
        "code": "000001",
        "from_account": "SA-A",
        "to_account": "SA-B",
        "amount": 900,
        "memo": "",
    }
    f.block(T0 + 1, f.tx("securities", "transfer", args, code="INSUFFICIENT_FREE_BALANCE"))
    [alert] = rules(idx, FROZEN_ACTIVITY)
    assert alert.subject == "SA-A" and "F-1" in alert.detail and alert.height == 2


def test_no_frozen_activity_without_a_freeze_or_after_unfreeze(idx: LookthroughIndex) -> None:
    f = Feed(idx)
    args = {
        "code": "000001",
        "from_account": "SA-A",
        "to_account": "SA-B",
        "amount": 900,
        "memo": "",
    }
    f.block(T0, f.tx("securities", "transfer", args, code="INSUFFICIENT_FREE_BALANCE"))
    f.block(
        T0 + 1,
        f.tx("enforcement", "freeze", {}, [("enforcement", "frozen", _freeze_event("frozen"))]),
    )
    other = {**args, "code": "000002"}  # a freeze of 000001 does not cover 000002
    f.block(T0 + 2, f.tx("securities", "transfer", other, code="INSUFFICIENT_FREE_BALANCE"))
    f.block(
        T0 + 3,
        f.tx(
            "enforcement", "unfreeze", {}, [("enforcement", "unfrozen", _freeze_event("unfrozen"))]
        ),
    )
    f.block(T0 + 4, f.tx("securities", "transfer", args, code="INSUFFICIENT_FREE_BALANCE"))
    f.block(T0 + 5, f.transfer("000001", "SA-A", "SA-B", 10))  # succeeded: not an attempt
    assert rules(idx, FROZEN_ACTIVITY) == []


# -- ABNORMAL_VOLUME ---------------------------------------------------------------------------


def _history(f: Feed, days: int, amount: int) -> None:
    for d in range(days):
        f.block(T0 + d * DAY_MS, f.transfer("000001", "SA-A", "SA-B", amount))


def test_volume_above_k_times_trailing_average_raises_once(idx: LookthroughIndex) -> None:
    f = Feed(idx)
    _history(f, 5, 900)  # SA-A averages 900 a day (under the floor: no alert while it builds)
    assert rules(idx, ABNORMAL_VOLUME) == []
    day = T0 + 5 * DAY_MS

    def on_a() -> list[Alert]:
        return [a for a in rules(idx, ABNORMAL_VOLUME) if a.subject == "SA-A"]

    f.block(day, f.transfer("000001", "SA-A", "SA-C", 2_000))
    assert on_a() == []  # 2,000 ≤ 3 × 900
    f.block(day + 1_000, f.transfer("000001", "SA-A", "SA-C", 701))  # 2,701 > 2,700
    f.block(day + 2_000, f.transfer("000001", "SA-A", "SA-C", 5_000))  # same day: no repeat
    alerts = on_a()
    assert len(alerts) == 1 and alerts[0].height == 7 and "volume 2701" in alerts[0].detail


def test_volume_within_k_times_average_or_below_floor_does_not_raise(idx: LookthroughIndex) -> None:
    f = Feed(idx)
    _history(f, 5, 1_000)
    before = len(rules(idx, ABNORMAL_VOLUME))  # the first day of any account is above 0 × k
    f.block(T0 + 5 * DAY_MS, f.transfer("000001", "SA-A", "SA-B", 3_000))  # exactly k × average
    f.block(T0 + 6 * DAY_MS, f.transfer("000001", "SA-D", "SA-E", 999))  # new accounts, < floor
    assert len(rules(idx, ABNORMAL_VOLUME)) == before


def test_absolute_volume_limit_raises(tmp_path: Path) -> None:
    with LookthroughIndex(
        tmp_path / "abs.db", SurveillanceConfig(volume_k=1_000_000, volume_absolute=10_000)
    ) as idx:
        f = Feed(idx)
        f.block(T0, f.pay("W-A", "W-B", 9_999, traceable=False))
        assert rules(idx, ABNORMAL_VOLUME) == []
        f.block(T0 + 1, f.pay("W-A", "W-C", 1, traceable=False))
        assert {a.subject for a in rules(idx, ABNORMAL_VOLUME)} == {"W-A"}


# -- alerts as reports, determinism ------------------------------------------------------------


def test_alert_as_report_fields_and_determinism(tmp_path: Path) -> None:
    def run(path: Path) -> list[Alert]:
        with LookthroughIndex(path, SurveillanceConfig(wash_window_blocks=5)) as idx:
            f = Feed(idx)
            f.block(T0, f.pay("W-A", "W-B", THRESHOLD, traceable=True))
            f.block(T0 + 1, f.transfer("000001", "SA-A", "SA-B", 1))
            f.block(T0 + 2, f.transfer("000001", "SA-B", "SA-A", 1))
            return idx.alerts()

    first, second = run(tmp_path / "1.db"), run(tmp_path / "2.db")
    assert first == second and {a.rule for a in first} >= {LARGE_VALUE_PAYMENT, WASH_TRADE}
    for alert in first:
        fields = alert_as_report_fields(alert)
        # Every alert makes a report the supervision chain's schema accepts.
        check_report_fields("regulatory_object", fields)
        assert fields["rule"] == alert.rule and len(str(fields["tx_hash"])) == 64


def test_config_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        SurveillanceConfig(volume_days=0)
    with pytest.raises(ValueError):
        SurveillanceConfig(wash_window_blocks=-1)
