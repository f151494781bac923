"""Records a contract owns are moved by the contract alone, never by a broker or operator for it.

The probe world of ``test_contracts_precompiles`` (run through the ``contracts`` module in real
blocks): contract ``Probe`` owns e-CNY wallet W-P (operator ccb) and securities account SA-P
(investor INV-P, broker broker-a) holding 10 000 EQ1. broker-a may act for its people's accounts
(SA-A is the control), but for SA-P it is refused everywhere it could move or encumber the
contract's holdings — securities transfers, settlement instructions, pledges, fund redemptions —
with ``NOT_AUTHORIZED`` naming the contract, and nothing changes. The operator cannot open
sub-wallets under the contract's wallet. Courts and the regulator keep their powers (judicial
freezes), the operator keeps its own (loading, freezing), and the contract itself still moves
its shares and pays from its wallet through the precompiles.
"""

from __future__ import annotations

import pytest

from consortia.contracts import evm
from consortia.ledger.types import Transaction, TxStatus
from tests.chainkit import Driver
from tests.ecnykit import load_tx, next_block_time, open_wallet_tx, sub_wallet_tx
from tests.test_contracts_precompiles import (
    World,
    balance_fen,
    freeze_tx,
    probe_world,
    records,
    shares,
)
from tests.test_enforcement import pledge_tx
from tests.test_funds import listed_fund
from tests.test_investors import commit_ok
from tests.test_securities import issue_tx, transfer_tx

BROKER = "broker-a-admin"  # the broker of SA-A (inv-a) and of SA-P (the probe contract)
OPERATOR = "ccb-admin"  # the operator of W-A (inv-a) and of W-P (the probe contract)


@pytest.fixture
def w() -> World:
    return probe_world("module")


def move(w: World, to_account: str, n: int) -> evm.ExecutionResult:
    """The probe contract moves ``n`` EQ1 out of its own account SA-P (a ``contracts.call``)."""
    signature = "moveShares(string,string,string,uint256)"
    return w.engine.call(w.deployer, w.probe, signature, "EQ1", "SA-P", to_account, n)


def refused_as_contract_owned(d: Driver, tx: Transaction) -> None:
    """``tx`` fails with NOT_AUTHORIZED saying only the contract may act, changing nothing."""
    before = records(d)
    (receipt,) = d.commit([tx]).receipts
    assert receipt.status == TxStatus.FAILED, receipt
    assert receipt.code == "NOT_AUTHORIZED", (receipt.code, receipt.message)
    assert "owned by contract" in receipt.message and "only the contract" in receipt.message
    assert receipt.events == ()
    assert records(d) == before


def test_a_broker_cannot_transfer_out_of_a_contracts_account(w: World) -> None:
    c, d = w.c, w.d
    before = records(d)
    (receipt,) = d.commit([transfer_tx(c, "EQ1", "SA-P", "SA-A", 10, BROKER)]).receipts
    assert receipt.code == "NOT_AUTHORIZED", (receipt.code, receipt.message)
    assert records(d) == before
    # The contract itself moves them.
    moved = move(w, "SA-A", 10)
    assert moved.ok, (moved.code, moved.native_code, moved.message)
    assert shares(d, "EQ1", "SA-P") == 9_990 and shares(d, "EQ1", "SA-A") == 10


def test_a_broker_cannot_give_settlement_instructions_for_a_contracts_account(w: World) -> None:
    c, d = w.c, w.d
    # Control: the broker links its person's account to the person's wallet.
    control = {"account_id": "SA-A", "wallet_id": "W-A"}
    commit_ok(d, [c.tx(BROKER, "settlement", "link_wallet", control)])
    link = {"account_id": "SA-P", "wallet_id": "W-P"}
    refused_as_contract_owned(d, c.tx(BROKER, "settlement", "link_wallet", link))
    deliver = {
        "trade_id": "T-1",
        "side": "deliver",
        "code": "EQ1",
        "seller_account": "SA-P",
        "buyer_account": "SA-A",
        "shares": 100,
        "price_fen": 1,
    }
    refused_as_contract_owned(d, c.tx(BROKER, "settlement", "instruct", deliver))
    # Someone else entirely is still told the ordinary rule.
    (other,) = d.commit([c.tx("broker-b-admin", "settlement", "instruct", deliver)]).receipts
    assert other.code == "NOT_AUTHORIZED" and "only the owner" in other.message


def test_a_broker_cannot_pledge_but_a_court_still_freezes_a_contracts_account(w: World) -> None:
    c, d = w.c, w.d
    commit_ok(d, [issue_tx(c, "EQ1", "SA-A", 100)])
    commit_ok(d, [pledge_tx(c, "PL-A", "SA-A", 5, who=BROKER)])  # control: a person's account
    refused_as_contract_owned(d, pledge_tx(c, "PL-P", "SA-P", 5, who=BROKER))
    # A court's judicial freeze of the contract's holding is exactly what it must still do.
    commit_ok(d, [freeze_tx(c, d, "F-P", "SA-P", code="EQ1", amount=9_000)])
    blocked = move(w, "SA-A", 1_001)
    assert blocked.native_code == "INSUFFICIENT_FREE_BALANCE", (blocked.code, blocked.message)
    # And the regulator freezes the whole account.
    unfreeze = {"freeze_id": "F-P", "reference": "lifted"}
    commit_ok(d, [c.tx("court-officer", "enforcement", "unfreeze", unfreeze)])
    account_freeze = {
        "freeze_id": "F-R",
        "code": "",
        "account_id": "SA-P",
        "amount": 0,
        "reference": "administrative freeze 7",
        "expires_at_ms": next_block_time(d) + 86_400_000,
    }
    commit_ok(d, [c.tx("regulator", "enforcement", "freeze", account_freeze)])
    frozen = move(w, "SA-A", 1)
    assert frozen.native_code == "ACCOUNT_FROZEN", (frozen.code, frozen.message)


def test_a_broker_cannot_redeem_fund_units_of_a_contracts_account(w: World) -> None:
    c, d = w.c, w.d
    commit_ok(d, [open_wallet_tx(c, OPERATOR, "W-FEE", "fund-admin", category=1, kind="corporate")])
    listed_fund(c, d, "HF1")
    order = {"order_id": "R-P", "code": "HF1", "account_id": "SA-P", "wallet_id": "W-P", "units": 1}
    refused_as_contract_owned(d, c.tx(BROKER, "funds", "redeem", order))
    # Control: for a person's account the broker passes authorization (and fails later, for lack
    # of units, with another code).
    person = {**order, "order_id": "R-A", "account_id": "SA-A", "wallet_id": "W-A"}
    (receipt,) = d.commit([c.tx(BROKER, "funds", "redeem", person)]).receipts
    assert receipt.code == "INSUFFICIENT_FREE_BALANCE", (receipt.code, receipt.message)


def test_the_operator_keeps_its_powers_but_opens_no_sub_wallet_under_a_contracts_wallet(
    w: World,
) -> None:
    c, d = w.c, w.d
    limits = {"cap": 100_000, "per_payment": 10_000, "daily": 20_000}
    commit_ok(d, [sub_wallet_tx(c, OPERATOR, "W-A1", "W-A", "inv-c", **limits)])  # control
    refused_as_contract_owned(d, sub_wallet_tx(c, OPERATOR, "W-P1", "W-P", "inv-c", **limits))
    # Loading, freezing and unfreezing the contract's wallet stay the operator's.
    before = balance_fen(d, "W-P")
    commit_ok(d, [load_tx(c, OPERATOR, "W-P", 1_000)])
    assert balance_fen(d, "W-P") == before + 1_000
    freeze = {"wallet_id": "W-P", "reference": "risk control"}
    commit_ok(d, [c.tx(OPERATOR, "ecny", "freeze_wallet", freeze)])
    stopped = w.engine.call(w.deployer, w.probe, "pay(string,string,uint256)", "W-P", "W-A", 100)
    assert stopped.native_code == "WALLET_FROZEN", (stopped.code, stopped.message)
    commit_ok(d, [c.tx(OPERATOR, "ecny", "unfreeze_wallet", freeze)])
    # The contract pays from its own wallet.
    paid = w.engine.call(w.deployer, w.probe, "pay(string,string,uint256)", "W-P", "W-A", 100)
    assert paid.ok, (paid.code, paid.native_code, paid.message)
    assert balance_fen(d, "W-P") == before + 1_000 - 100
