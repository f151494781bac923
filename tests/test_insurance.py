"""Insurance: products, policies paid in e-CNY, cooling-off refunds, claims, role checks."""

from __future__ import annotations

from typing import Any

from consortia.ledger.types import Transaction
from consortia.modules.calendar import DAY_MS, date_start_ms
from consortia.modules.insurance import (
    DEFAULT_COOLING_OFF_DAYS,
    Claim,
    Policy,
    Product,
    claim_key,
    policy_key,
    product_key,
)
from tests.chainkit import Consortium, Driver
from tests.ecnykit import cash, cash_world, load_tx
from tests.test_investors import codes, commit_ok, read, register
from tests.test_securities import advance_to

PREMIUM = 120_000  # ¥1,200
COVERAGE = 10_000_000  # ¥100,000
FUNDED = 1_000_000
INSURER_FLOAT = 50_000_000


def product_tx(
    c: Consortium, product_id: str, who: str = "insurer-admin", **over: Any
) -> Transaction:
    args: dict[str, Any] = {
        "product_id": product_id,
        "name": f"Product {product_id} 平安福",
        "premium_fen": PREMIUM,
        "term_days": 730,
        "coverage_fen": COVERAGE,
        "risk_level": 2,
        "cooling_off_days": DEFAULT_COOLING_OFF_DAYS,
        "wallet_id": "W-INSURER",
    }
    args.update(over)
    return c.tx(who, "insurance", "register_product", args)


def buy_tx(
    c: Consortium,
    policy_id: str,
    product_id: str = "LIFE1",
    who: str = "inv-a",
    investor_id: str = "INV-A",
    wallet_id: str = "W-A",
) -> Transaction:
    args = {
        "policy_id": policy_id,
        "product_id": product_id,
        "investor_id": investor_id,
        "wallet_id": wallet_id,
    }
    return c.tx(who, "insurance", "buy_policy", args)


def cancel_tx(c: Consortium, policy_id: str, who: str = "inv-a") -> Transaction:
    return c.tx(who, "insurance", "cancel_policy", {"policy_id": policy_id})


def claim_tx(
    c: Consortium, claim_id: str, policy_id: str, amount: int, who: str = "insurer-admin"
) -> Transaction:
    args = {
        "claim_id": claim_id,
        "policy_id": policy_id,
        "amount_fen": amount,
        "reference": f"claim file {claim_id}",
    }
    return c.tx(who, "insurance", "pay_claim", args)


def policy(d: Driver, policy_id: str) -> Policy:
    p = read(d, policy_key(policy_id), Policy)
    assert p is not None, policy_id
    return p


def insurance_world() -> tuple[Consortium, Driver]:
    c, d = cash_world()
    commit_ok(
        d,
        [
            load_tx(c, "ccb-admin", "W-A", FUNDED),
            load_tx(c, "ccb-admin", "W-C", FUNDED),
            load_tx(c, "bocom-admin", "W-INSURER", INSURER_FLOAT),
            product_tx(c, "LIFE1"),
        ],
    )
    return c, d


def test_buy_cancel_in_cooling_off_buy_again_and_claim() -> None:
    c, d = insurance_world()
    product = read(d, product_key("LIFE1"), Product)
    assert product is not None and (product.insurer_org, product.cooling_off_days) == (
        "insurer-ping",
        15,
    )
    p = commit_ok(d, [buy_tx(c, "POL1")])
    assert [e.kind for e in p.receipts[0].events] == ["payment", "policy_bought"]
    pol = policy(d, "POL1")
    bought = pol.start_ms
    assert (pol.status, pol.investor_id, pol.wallet_id, pol.premium_fen) == (
        "active",
        "INV-A",
        "W-A",
        PREMIUM,
    )
    assert pol.end_ms == bought + 730 * DAY_MS
    # Bought on 2026-01-01 (CST): cancellable until 2026-01-16 24:00 CST.
    assert pol.cooling_off_end_ms == date_start_ms(20260117)
    assert (cash(d, "W-A"), cash(d, "W-INSURER")) == (FUNDED - PREMIUM, INSURER_FLOAT + PREMIUM)
    # The last millisecond of the cooling-off period: the whole premium comes back.
    advance_to(d, date_start_ms(20260117) - 1)
    p = d.commit([cancel_tx(c, "POL1", who="inv-b"), cancel_tx(c, "POL1")])
    assert codes(p) == ["NOT_AUTHORIZED", ""]
    assert [e.kind for e in p.receipts[1].events] == ["payment", "policy_cancelled"]
    refund = p.receipts[1].events[0].attributes
    assert (refund["payer"], refund["payee"], refund["purpose"]) == (
        "W-INSURER",
        "W-A",
        "insurance_refund",
    )
    assert (cash(d, "W-A"), cash(d, "W-INSURER")) == (FUNDED, INSURER_FLOAT)
    assert policy(d, "POL1").status == "cancelled"
    p = d.commit([cancel_tx(c, "POL1"), claim_tx(c, "CL0", "POL1", 1)])
    assert codes(p) == ["POLICY_NOT_ACTIVE", "POLICY_NOT_ACTIVE"]

    # Bought again; the cooling-off of POL2 counts from its own purchase date (2026-01-17).
    commit_ok(d, [buy_tx(c, "POL2")])
    assert policy(d, "POL2").cooling_off_end_ms == date_start_ms(20260202)
    advance_to(d, date_start_ms(20260202))
    p = d.commit(
        [
            cancel_tx(c, "POL2"),  # the cooling-off has ended
            claim_tx(c, "CL1", "POL2", 4_000_000),
            claim_tx(c, "CL2", "POL2", COVERAGE - 4_000_000 + 1),  # above the remaining coverage
            claim_tx(c, "CL1", "POL2", 1),
            claim_tx(c, "CL2", "POL2", COVERAGE - 4_000_000),  # exactly the remaining coverage
            claim_tx(c, "CL3", "POL2", 1),
        ]
    )
    assert codes(p) == [
        "COOLING_OFF_ENDED",
        "",
        "COVERAGE_EXCEEDED",
        "CLAIM_EXISTS",
        "",
        "COVERAGE_EXCEEDED",
    ]
    assert [e.kind for e in p.receipts[1].events] == ["payment", "claim_paid"]
    pol = policy(d, "POL2")
    assert (pol.status, pol.claimed_fen) == ("active", COVERAGE)
    claim = read(d, claim_key("CL2"), Claim)
    assert claim is not None and (claim.policy_id, claim.amount_fen, claim.paid_by) == (
        "POL2",
        COVERAGE - 4_000_000,
        c.addr("insurer-admin"),
    )
    assert cash(d, "W-A") == FUNDED - PREMIUM + COVERAGE
    assert cash(d, "W-INSURER") == INSURER_FLOAT + PREMIUM - COVERAGE


def test_claims_end_with_the_term_and_block_cancellation() -> None:
    c, d = insurance_world()
    commit_ok(
        d,
        [product_tx(c, "TRAVEL", term_days=10, cooling_off_days=0, premium_fen=5_000)],
    )
    commit_ok(d, [buy_tx(c, "POL1"), buy_tx(c, "POL2", "TRAVEL")])
    p = d.commit([claim_tx(c, "CL1", "POL1", 1_000), cancel_tx(c, "POL1"), cancel_tx(c, "POL2")])
    # A policy with a paid claim is not cancelled; a product without cooling-off neither.
    assert codes(p) == ["", "POLICY_CLAIMED", "COOLING_OFF_ENDED"]
    end = policy(d, "POL2").end_ms
    advance_to(d, end - 1)
    commit_ok(d, [claim_tx(c, "CL2", "POL2", 5_000)])
    p = d.commit([claim_tx(c, "CL3", "POL2", 1)])
    assert codes(p) == ["POLICY_NOT_IN_FORCE"]


def test_failed_purchase_changes_nothing() -> None:
    c, d = insurance_world()
    commit_ok(d, [product_tx(c, "RISKY", risk_level=4)])
    p = d.commit(
        [
            buy_tx(c, "POL1", who="inv-d", investor_id="INV-D", wallet_id="W-D"),  # no funds
            buy_tx(c, "POL2", "RISKY", who="inv-c", investor_id="INV-C", wallet_id="W-C"),
            buy_tx(c, "POL3", "NOPE"),
        ]
    )
    assert codes(p) == ["INSUFFICIENT_FUNDS", "SUITABILITY_MISMATCH", "UNKNOWN_PRODUCT"]
    assert all(read(d, policy_key(i), Policy) is None for i in ("POL1", "POL2", "POL3"))
    assert (cash(d, "W-C"), cash(d, "W-D"), cash(d, "W-INSURER")) == (FUNDED, 0, INSURER_FLOAT)
    # INV-C (C3) may buy an R2 product.
    commit_ok(d, [buy_tx(c, "POL2", who="inv-c", investor_id="INV-C", wallet_id="W-C")])
    p = d.commit([buy_tx(c, "POL2"), claim_tx(c, "CL1", "NOPE", 1)])
    assert codes(p) == ["POLICY_EXISTS", "UNKNOWN_POLICY"]


def test_product_validation_and_roles() -> None:
    c, d = insurance_world()
    commit_ok(d, [register(c, "fake-insurer", "broker-b", ("insurer",))])
    p = d.commit(
        [
            product_tx(c, "P1", who="issuer"),
            product_tx(c, "P1", who="inv-a"),
            product_tx(c, "P1", who="fake-insurer"),  # role insurer, but not of an insurer
            product_tx(c, "P1", wallet_id="W-A"),  # not the insurer's wallet
            product_tx(c, "P1", wallet_id="W-NOPE"),
            product_tx(c, "P1", risk_level=6),
            product_tx(c, "P1", premium_fen=0),
            product_tx(c, "P1", term_days=0),
            product_tx(c, "P1", cooling_off_days=31, term_days=30),
            product_tx(c, "P1", cooling_off_days=14),  # two-year term: at least 15 days
            product_tx(c, "P 1"),
            product_tx(c, "LIFE1"),
            product_tx(c, "P1", term_days=365, cooling_off_days=0),
        ]
    )
    assert codes(p) == [
        "NOT_AUTHORIZED",
        "NOT_AUTHORIZED",
        "NOT_AUTHORIZED",
        "NOT_AUTHORIZED",
        "UNKNOWN_WALLET",
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "PRODUCT_EXISTS",
        "",
    ]
    p = d.commit(
        [
            buy_tx(c, "POL1", who="inv-b"),  # for another investor
            buy_tx(c, "POL1", who="broker-a-admin"),
            buy_tx(c, "POL1", wallet_id="W-B"),  # a wallet INV-A may not spend
            buy_tx(c, "POL1"),
        ]
    )
    assert codes(p) == ["NOT_AUTHORIZED", "NOT_AUTHORIZED", "NOT_AUTHORIZED", ""]
    p = d.commit(
        [
            claim_tx(c, "CL1", "POL1", 100, who="issuer"),
            claim_tx(c, "CL1", "POL1", 100, who="inv-a"),
            claim_tx(c, "CL1", "POL1", 100, who="fake-insurer"),
            claim_tx(c, "CL1", "POL1", 0),
            claim_tx(c, "CL1", "POL1", 100),
        ]
    )
    assert codes(p) == [
        "NOT_AUTHORIZED",
        "NOT_AUTHORIZED",
        "NOT_AUTHORIZED",
        "INVALID_ARGUMENT",
        "",
    ]
