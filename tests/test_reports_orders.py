"""The supervision chain's reports (JR/T 0315-2024 categories, bound to anchored business blocks)
and orders (addressed to registered business chains), through signed transactions and blocks."""

from __future__ import annotations

from typing import Any

import pytest

from consortia.modules.anchoring import Anchor, anchor_key
from consortia.modules.orders import MODULE as ORDERS
from consortia.modules.orders import ORDER_KINDS, Order, order_key
from consortia.modules.reports import CATEGORIES, Report, report_key
from consortia.modules.reports import MODULE as REPORTS
from tests.tierkit import (
    TwoTiers,
    anchor_through,
    commit_fails,
    commit_ok,
    read,
    two_tiers,
)

TX_HASH = "ab" * 32

# One valid report per category (required fields, and some optional ones).
EXAMPLES: dict[str, dict[str, str | int]] = {
    "entity": {
        "entity_id": "broker-a",
        "name": "Alpha Securities",
        "entity_type": "institution",
        "credit_code": "91310000MA1FL0000X",
    },
    "account": {
        "account_id": "SA-1",
        "entity_id": "INV-1",
        "account_type": "securities",
        "status": "open",
        "broker": "broker-a",
    },
    "product": {
        "code": "EQ1",
        "name": "Example Equity",
        "product_type": "equity",
        "issuer": "issuer-x",
        "risk_level": 3,
    },
    "transfer": {
        "code": "EQ1",
        "from_account": "SA-1",
        "to_account": "SA-2",
        "amount": 100,
        "tx_hash": TX_HASH,
    },
    "registration": {"code": "EQ1", "account_id": "SA-1", "action": "issue", "amount": 1000},
    "fund_settlement": {
        "fund_code": "F1",
        "trading_day": 20260105,
        "subscriptions_fen": 1_000_000,
        "redemptions_fen": 0,
        "nav": 10_000,
    },
    "disclosure": {
        "code": "EQ1",
        "holder": "INV-1",
        "holding": 500,
        "step_pct": 5,
        "direction": "up",
    },
    "financial_statement": {
        "entity_id": "issuer-x",
        "period": "2025Q4",
        "total_assets_fen": 10**12,
        "total_liabilities_fen": 4 * 10**11,
        "net_profit_fen": -5 * 10**9,
    },
    "regulatory_object": {
        "rule": "large_value_payment",
        "subject": "W-1",
        "detail": "a payment of 600000.00 yuan",
        "severity": "high",
        "alert_id": "A-1",
        "tx_hash": TX_HASH,
    },
}


def anchored_tiers(blocks: int = 3) -> TwoTiers:
    t = two_tiers()
    anchor_through(t, blocks)
    return t


def report_args(
    t: TwoTiers, report_id: str, category: str, fields: dict[str, Any], height: int = 2
) -> dict[str, Any]:
    return {
        "report_id": report_id,
        "chain_id": t.chain_id,
        "height": height,
        "category": category,
        "fields": fields,
    }


# ---------------------------------------------------------------------------------------------
# Reports


def test_the_categories_are_those_of_the_standard() -> None:
    assert set(CATEGORIES) == {
        "entity",
        "account",
        "product",
        "transfer",
        "registration",
        "fund_settlement",
        "disclosure",
        "financial_statement",
        "regulatory_object",
    }
    assert set(EXAMPLES) == set(CATEGORIES)
    assert set(REPORTS.methods) == {"submit_report"}


def test_a_report_per_category_is_bound_to_its_anchored_block() -> None:
    t = anchored_tiers()
    txs = [
        t.sup.tx(
            "relayer" if i % 2 else "regulator",
            "reports",
            "submit_report",
            report_args(t, f"R-{category}", category, fields, height=1 + i % 3),
        )
        for i, (category, fields) in enumerate(EXAMPLES.items())
    ]
    receipts = commit_ok(t.sd, txs)
    for i, (category, fields) in enumerate(EXAMPLES.items()):
        height = 1 + i % 3
        anchor = read(t.sd, anchor_key(t.chain_id, height), Anchor)
        assert isinstance(anchor, Anchor)
        who = "relayer" if i % 2 else "regulator"
        assert read(t.sd, report_key(f"R-{category}"), Report) == Report(
            report_id=f"R-{category}",
            chain_id=t.chain_id,
            height=height,
            block_hash=anchor.block_hash,
            category=category,
            fields=fields,
            submitted_by=t.sup.addr(who),
            submitted_height=t.sd.state.height,
        )
        (event,) = receipts[i].events
        assert (event.module, event.kind) == ("reports", "report_submitted")
        assert event.attributes["block_hash"] == anchor.block_hash


@pytest.mark.parametrize(
    ("category", "change", "field"),
    [
        ("transfer", {"price": 5}, "price"),  # unknown field
        ("transfer", {"amount": None}, "amount"),  # missing (None = drop it)
        ("transfer", {"amount": "100"}, "amount"),  # text for an integer
        ("transfer", {"code": 7}, "code"),  # an integer for text
        ("transfer", {"amount": -1}, "amount"),
        ("transfer", {"tx_hash": "XYZ"}, "tx_hash"),
        ("transfer", {"to_account": ""}, "to_account"),
        ("fund_settlement", {"trading_day": 20261301}, "trading_day"),
        ("fund_settlement", {"nav": None}, "nav"),
        ("regulatory_object", {"severity": "urgent"}, "severity"),
        ("regulatory_object", {"detail": "x" * 2001}, "detail"),
        ("regulatory_object", {"rule": None}, "rule"),
        ("disclosure", {"direction": "sideways"}, "direction"),
        ("entity", {"name": "bad\nname"}, "name"),
        ("financial_statement", {"net_profit_fen": "-5"}, "net_profit_fen"),
        ("transfer", {}, "'nonsense'"),  # an unknown category (below)
    ],
)
def test_report_schema_violations(category: str, change: dict[str, Any], field: str) -> None:
    t = anchored_tiers(1)
    fields: dict[str, Any] = {**EXAMPLES[category], **change}
    fields = {k: v for k, v in fields.items() if v is not None}
    if not change:
        category = "nonsense"
    tx = t.sup.tx("relayer", "reports", "submit_report", report_args(t, "R-1", category, fields, 1))
    receipt = commit_fails(t.sd, tx, "REPORT_SCHEMA_VIOLATION")
    assert field in receipt.message


def test_report_binding_and_refusals() -> None:
    t = anchored_tiers(2)
    fields = EXAMPLES["transfer"]

    def submit(who: str = "relayer", **change: Any) -> Any:
        args = {**report_args(t, "R-1", "transfer", fields), **change}
        return t.sup.tx(who, "reports", "submit_report", args)

    for who in ("sac-admin", "clerk"):
        commit_fails(t.sd, submit(who), "NOT_AUTHORIZED")
    commit_fails(t.sd, submit(height=3), "NOT_ANCHORED")  # committed, not yet anchored
    commit_fails(t.sd, submit(height=0), "NOT_ANCHORED")  # genesis has no block
    commit_fails(t.sd, submit(height=-1), "NOT_ANCHORED")
    commit_fails(t.sd, submit(chain_id="unregistered"), "UNKNOWN_CHAIN")
    commit_fails(t.sd, submit(report_id="bad id"), "INVALID_ARGUMENT")
    commit_fails(t.sd, submit(fields={**fields, "amount": True}), "BAD_ARGUMENTS")
    commit_ok(t.sd, [submit()])
    commit_fails(t.sd, submit("regulator", height=1), "REPORT_EXISTS")
    anchor_through(t, 1)
    commit_ok(t.sd, [submit(report_id="R-2", height=3)])


# ---------------------------------------------------------------------------------------------
# Orders


EMPTY_ORDER: dict[str, Any] = {
    "freeze_id": "",
    "code": "",
    "account_id": "",
    "amount": 0,
    "expires_at_ms": 0,
    "to_account": "",
    "param_name": "",
    "param_value": 0,
}
FAR_MS = 1_800_000_000_000
ORDERS_BY_KIND: dict[str, dict[str, Any]] = {
    "freeze": {
        "freeze_id": "FZ-1",
        "code": "EQ1",
        "account_id": "SA-1",
        "amount": 50,
        "expires_at_ms": FAR_MS,
    },
    "unfreeze": {"freeze_id": "FZ-1"},
    "forced_transfer": {"freeze_id": "FZ-1", "to_account": "SA-2"},
    "trading_halt": {"code": "EQ1"},
    "trading_resume": {"code": "EQ1"},
    "param_change": {"param_name": "ecny_large_value_fen", "param_value": 5_000_000},
}


def order_args(t: TwoTiers, order_id: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "chain_id": t.chain_id,
        "kind": kind,
        **EMPTY_ORDER,
        **fields,
        "reference": f"CSRC order {order_id}",
    }


def test_orders_of_every_kind() -> None:
    assert set(ORDERS_BY_KIND) == ORDER_KINDS
    assert set(ORDERS.methods) == {"issue_order"}  # no way to change an order afterwards
    t = two_tiers()
    orders = {f"O-{kind}": (kind, fields) for kind, fields in ORDERS_BY_KIND.items()}
    orders["O-freeze-account"] = ("freeze", {**ORDERS_BY_KIND["freeze"], "code": "", "amount": 0})
    orders["O-param-zero"] = ("param_change", {"param_name": "p", "param_value": 0})
    txs = [
        t.sup.tx("regulator", "orders", "issue_order", order_args(t, oid, kind, **fields))
        for oid, (kind, fields) in orders.items()
    ]
    receipts = commit_ok(t.sd, txs)
    for (oid, (kind, fields)), receipt in zip(orders.items(), receipts, strict=True):
        args = order_args(t, oid, kind, **fields)
        assert read(t.sd, order_key(oid), Order) == Order(
            **args, issued_by=t.sup.addr("regulator"), issued_height=t.sd.state.height
        )
        (event,) = receipt.events
        assert (event.module, event.kind) == ("orders", "order_issued")
        assert event.attributes == {
            "order_id": oid,
            "chain_id": t.chain_id,
            "kind": kind,
            "reference": args["reference"],
        }


def _invalid_orders() -> list[tuple[str, dict[str, Any]]]:
    """Per kind: each required field emptied, and each unused field set."""
    cases: list[tuple[str, dict[str, Any]]] = []
    optional = {"freeze": {"code", "amount"}, "param_change": {"param_value"}}
    for kind, fields in ORDERS_BY_KIND.items():
        for name in fields:
            if name not in optional.get(kind, set()):
                cases.append((kind, {**fields, name: EMPTY_ORDER[name]}))
        for name, empty in EMPTY_ORDER.items():
            if name not in fields:
                cases.append((kind, {**fields, name: 1 if empty == 0 else "X-1"}))
    cases.append(("freeze", {**ORDERS_BY_KIND["freeze"], "amount": 0}))  # a holding needs amount
    cases.append(("freeze", {**ORDERS_BY_KIND["freeze"], "code": ""}))  # whole account: amount 0
    cases.append(("freeze", {**ORDERS_BY_KIND["freeze"], "amount": -5}))
    cases.append(("freeze", {**ORDERS_BY_KIND["freeze"], "expires_at_ms": 1000}))  # in the past
    cases.append(("freeze", {**ORDERS_BY_KIND["freeze"], "account_id": "bad id"}))
    cases.append(("liquidate", {}))
    return cases


def test_invalid_orders() -> None:
    t = two_tiers()
    cases = _invalid_orders()
    assert len(cases) > 40
    for i, (kind, fields) in enumerate(cases):
        tx = t.sup.tx("regulator", "orders", "issue_order", order_args(t, f"O-{i}", kind, **fields))
        commit_fails(t.sd, tx, "INVALID_ORDER")


def test_order_refusals() -> None:
    t = two_tiers()
    args = order_args(t, "O-1", "trading_halt", code="EQ1")
    for who in ("relayer", "sac-admin", "clerk"):
        commit_fails(t.sd, t.sup.tx(who, "orders", "issue_order", args), "NOT_AUTHORIZED")
    unknown = {**args, "chain_id": "unregistered"}
    commit_fails(t.sd, t.sup.tx("regulator", "orders", "issue_order", unknown), "UNKNOWN_CHAIN")
    no_ref = {**args, "reference": " "}
    commit_fails(t.sd, t.sup.tx("regulator", "orders", "issue_order", no_ref), "INVALID_ARGUMENT")
    bad_id = {**args, "order_id": "a/b"}
    commit_fails(t.sd, t.sup.tx("regulator", "orders", "issue_order", bad_id), "INVALID_ARGUMENT")
    commit_ok(t.sd, [t.sup.tx("regulator", "orders", "issue_order", args)])
    again = order_args(t, "O-1", "trading_resume", code="EQ1")
    commit_fails(t.sd, t.sup.tx("regulator", "orders", "issue_order", again), "ORDER_EXISTS")
    order = read(t.sd, order_key("O-1"), Order)
    assert isinstance(order, Order) and order.kind == "trading_halt"
