"""The example contracts of examples/contracts/, end to end on a real chain's state.

- ``prepaid/PrepaidEscrow.sol``: prepaid funds held in the contract's e-CNY wallet, paid to the
  merchant as services are used, refunded after a default declared by the regulator;
- ``coupon/CouponPayer.vy``: a bond's coupons paid in e-CNY to the holders of record;
- ``vesting/RestrictedShareVesting.sol``: restricted shares released to an employee as they vest.

Each is compiled from the file in examples/contracts/ (once per module), deployed and called
through ``evm.execute`` with the native bridge over the head state of a chain built by ordinary
transactions (``tests/test_contracts_precompiles.Engine``), and every money or share movement is
checked in the native records. Each also shows a native rule refusing the contract's attempt,
with the module's code and no change.
"""

from __future__ import annotations

from functools import cache

import pytest
from eth_hash.auto import keccak

from consortia.contracts import evm, toolchain
from consortia.contracts.precompiles import abi_decode, abi_encode
from consortia.ledger.types import Transaction
from consortia.modules.investors import seal_identity
from tests.chainkit import Consortium, Driver
from tests.ecnykit import cash_world, commit_at, next_block_time, wallet_identity
from tests.test_contracts_precompiles import (
    EXAMPLES,
    balance_fen,
    calldata,
    freeze_tx,
    make_engine,
    open_contract_investor,
    open_contract_wallet,
    records,
    shares,
    solidity_example,
)
from tests.test_investors import commit_ok
from tests.test_securities import issue_tx, listed

DAY_S = 86_400


@cache
def prepaid_escrow() -> toolchain.CompiledContract:
    return toolchain.compile_solidity(
        solidity_example("prepaid/PrepaidEscrow.sol"), "PrepaidEscrow"
    )


@cache
def coupon_payer() -> toolchain.CompiledContract:
    source = (EXAMPLES / "coupon" / "CouponPayer.vy").read_text()
    return toolchain.compile_vyper(source, name="CouponPayer")


@cache
def vesting() -> toolchain.CompiledContract:
    return toolchain.compile_solidity(
        solidity_example("vesting/RestrictedShareVesting.sol"), "RestrictedShareVesting"
    )


def now_s(d: Driver) -> int:
    return next_block_time(d) // 1000


def reason(result: evm.ExecutionResult) -> str:
    assert result.code == evm.CODE_REVERTED, (result.code, result.message)
    return result.message


def logs_named(result: evm.ExecutionResult, signature: str) -> list[evm.EvmLog]:
    topic = bytes(keccak(signature.encode()))
    return [log for log in result.logs if log.topics and log.topics[0] == topic]


def prepay_tx(c: Consortium, who: str, src: str, dst: str, amount: int) -> Transaction:
    args = {"from_wallet": src, "to_wallet": dst, "amount": amount, "memo": "prepaid card"}
    return c.tx(who, "ecny", "pay", args)


# ---------------------------------------------------------------------------------------------
# Prepaid funds escrow


@pytest.mark.parametrize("backend", ["engine", "module"])
def test_prepaid_escrow_end_to_end(backend: str) -> None:
    c, d = cash_world()
    engine = make_engine(backend, c, d)
    merchant, alice, bob = c.addr("issuer"), c.addr("inv-a"), c.addr("inv-b")
    expires = now_s(d) + 90 * DAY_S
    ctor = abi_encode(
        ["address", "string", "string", "uint256"], [merchant, "W-ESC", "W-ISSUER", expires]
    )
    escrow = engine.deploy(merchant, prepaid_escrow(), ctor)
    # The escrow wallet is the contract's; category 3 (¥5,000 a payment, ¥20,000 cap).
    open_contract_wallet(c, d, "W-ESC", escrow, category=3, load=0)
    commit_ok(
        d,
        [
            c.tx("ccb-admin", "ecny", "load", {"wallet_id": "W-A", "amount": 1_000_000}),
            c.tx("bocom-admin", "ecny", "load", {"wallet_id": "W-B", "amount": 1_000_000}),
        ],
    )
    issue = "issueCard(string,address,string,uint256)"

    # A card is recorded only once its price is in escrow.
    refused = engine.call(merchant, escrow, issue, "CARD-1", alice, "W-A", 300_000)
    assert "not in escrow" in reason(refused) and refused.writes == {}
    commit_ok(d, [prepay_tx(c, "inv-a", "W-A", "W-ESC", 300_000)])
    assert "only the merchant" in reason(engine.call(alice, escrow, issue, "C", alice, "W-A", 1))
    issued = engine.call(merchant, escrow, issue, "CARD-1", alice, "W-A", 300_000)
    assert issued.ok, issued.message
    assert len(logs_named(issued, "CardIssued(string,address,uint256)")) == 1

    # Alice uses ¥500 of services: the merchant is paid from escrow, under the wallet rules.
    merchant_before = balance_fen(d, "W-ISSUER")
    release = "release(string,uint256)"
    used = engine.call(alice, escrow, release, "CARD-1", 50_000)
    assert used.ok, used.message
    assert balance_fen(d, "W-ESC") == 250_000
    assert balance_fen(d, "W-ISSUER") == merchant_before + 50_000
    kinds = [getattr(e, "kind", "log") for e in used.events_in_order]
    assert kinds == ["payment", "log"]  # the payment, then the contract's Released
    assert "only the card holder" in reason(engine.call(bob, escrow, release, "CARD-1", 1))
    assert "beyond" in reason(engine.call(alice, escrow, release, "CARD-1", 250_001))

    # Bob prepays ¥6,000 for a card.
    commit_ok(d, [prepay_tx(c, "inv-b", "W-B", "W-ESC", 600_000)])
    assert engine.call(merchant, escrow, issue, "CARD-2", bob, "W-B", 600_000).ok

    # Refunds wait for a default or the expiry; only the regulator declares a default.
    refund = "refund(string)"
    assert "still in use" in reason(engine.call(alice, escrow, refund, "CARD-1"))
    assert "only the regulator" in reason(engine.call(merchant, escrow, "declareDefault()"))
    assert engine.call(c.addr("regulator"), escrow, "declareDefault()").ok
    assert "closed" in reason(engine.call(alice, escrow, release, "CARD-1", 1))

    alice_before = balance_fen(d, "W-A")
    back = engine.call(alice, escrow, refund, "CARD-1")
    assert back.ok, back.message
    assert balance_fen(d, "W-A") == alice_before + 250_000
    assert "nothing to refund" in reason(engine.call(alice, escrow, refund, "CARD-1"))

    # The escrow wallet's own limits bind the contract: a ¥6,000 refund from a category-3 wallet
    # (¥5,000 a payment) is refused with the wallet rule's code, and nothing changes.
    before = records(d)
    too_big = engine.call(bob, escrow, refund, "CARD-2")
    assert too_big.native_code == "PER_PAYMENT_LIMIT_EXCEEDED"
    assert too_big.writes == {} and records(d) == before
    card = engine.execute(bob, escrow, calldata("cardOf(string)", "CARD-2"), static=True)
    assert abi_decode(["address", "uint256"], card.output) == (bob, 600_000)
    assert balance_fen(d, "W-ESC") == 600_000
    outstanding = engine.execute(bob, escrow, calldata("outstandingFen()"), static=True)
    assert abi_decode(["uint256"], outstanding.output) == (600_000,)
    # After stronger KYC the operator upgrades the escrow wallet to category 2 (¥50,000 a
    # payment); the same refund then goes through.
    commitment, sealed, _ = seal_identity(
        c.suite,
        wallet_identity("W-ESC"),
        c.accounts["ccb-admin"].public_key,
        c.accounts["regulator"].public_key,
    )
    upgrade = {
        "wallet_id": "W-ESC",
        "category": 2,
        "identity_commitment": commitment,
        "sealed_identity": sealed,
    }
    commit_ok(d, [c.tx("ccb-admin", "ecny", "upgrade_wallet", upgrade)])
    bob_before = balance_fen(d, "W-B")
    assert engine.call(bob, escrow, refund, "CARD-2").ok
    assert balance_fen(d, "W-B") == bob_before + 600_000 and balance_fen(d, "W-ESC") == 0


# ---------------------------------------------------------------------------------------------
# Bond coupon payer


@pytest.mark.parametrize("backend", ["engine", "module"])
def test_coupon_payer_end_to_end(backend: str) -> None:
    c, d = cash_world()
    engine = make_engine(backend, c, d)
    issuer = c.addr("issuer")
    listed(c, d, "BOND1", kind="bond", risk_level=1)
    commit_ok(d, [issue_tx(c, "BOND1", "SA-A", 1_000), issue_tx(c, "BOND1", "SA-B", 500)])
    first = now_s(d)
    ctor = abi_encode(
        ["string", "string", "uint256", "uint256", "uint256", "uint256"],
        ["BOND1", "W-CPN", 350, first, 182 * DAY_S, 4],
    )
    payer = engine.deploy(issuer, coupon_payer(), ctor)
    open_contract_wallet(c, d, "W-CPN", payer, category=1, load=10_000_000)

    register = "register(string,string)"
    assert "only the issuer" in reason(engine.call(c.addr("inv-a"), payer, register, "SA-A", "W-A"))
    assert engine.call(issuer, payer, register, "SA-A", "W-A").ok
    assert engine.call(issuer, payer, register, "SA-B", "W-B").ok
    assert engine.call(issuer, payer, register, "SA-C", "W-C").ok  # holds no bonds: paid nothing
    assert "already registered" in reason(engine.call(issuer, payer, register, "SA-A", "W-A"))

    # A frozen paying wallet pays nothing: the whole period reverts, with the wallet's code.
    commit_ok(
        d, [c.tx("regulator", "ecny", "freeze_wallet", {"wallet_id": "W-CPN", "reference": "r"})]
    )
    before = records(d)
    frozen = engine.call(issuer, payer, "pay_coupon(uint256)", 0)
    assert frozen.native_code == "WALLET_FROZEN" and frozen.writes == {}
    assert records(d) == before
    commit_ok(
        d,
        [c.tx("regulator", "ecny", "unfreeze_wallet", {"wallet_id": "W-CPN", "reference": "r"})],
    )

    a_before, b_before = balance_fen(d, "W-A"), balance_fen(d, "W-B")
    paid = engine.call(c.addr("inv-c"), payer, "pay_coupon(uint256)", 0)  # anyone may trigger
    assert paid.ok, paid.message
    assert abi_decode(["uint256"], paid.output) == (525_000,)
    assert balance_fen(d, "W-A") == a_before + 350_000
    assert balance_fen(d, "W-B") == b_before + 175_000
    assert balance_fen(d, "W-CPN") == 10_000_000 - 525_000
    payments = [e for e in paid.native_events if getattr(e, "kind", "") == "payment"]
    assert [(e.attributes["payee"], e.attributes["amount_fen"]) for e in payments] == [
        ("W-A", 350_000),
        ("W-B", 175_000),
    ]
    assert len(logs_named(paid, "CouponPaid(uint256,string,uint256,uint256)")) == 2
    assert "already paid" in reason(engine.call(issuer, payer, "pay_coupon(uint256)", 0))
    assert "not yet due" in reason(engine.call(issuer, payer, "pay_coupon(uint256)", 1))
    assert "no such period" in reason(engine.call(issuer, payer, "pay_coupon(uint256)", 4))

    # Half a year later the holders of record have changed: SA-B sold 300 to SA-C.
    commit_ok(
        d,
        [
            c.tx(
                "broker-b-admin",
                "securities",
                "transfer",
                {
                    "code": "BOND1",
                    "from_account": "SA-B",
                    "to_account": "SA-C",
                    "amount": 300,
                    "memo": "",
                },
            )
        ],
    )
    commit_at(d, (first + 182 * DAY_S) * 1000, [])
    second = engine.call(issuer, payer, "pay_coupon(uint256)", 1)
    assert second.ok, second.message
    payments = [e for e in second.native_events if getattr(e, "kind", "") == "payment"]
    assert [(e.attributes["payee"], e.attributes["amount_fen"]) for e in payments] == [
        ("W-A", 350_000),
        ("W-B", 70_000),
        ("W-C", 105_000),
    ]


# ---------------------------------------------------------------------------------------------
# Restricted-share vesting


@pytest.mark.parametrize("backend", ["engine", "module"])
def test_vesting_end_to_end(backend: str) -> None:
    c, d = cash_world()
    engine = make_engine(backend, c, d)
    employee, company = c.addr("inv-a"), c.addr("issuer")
    listed(c, d, "RS1", risk_level=2)
    start = now_s(d) - 90 * DAY_S  # granted three months ago
    ctor = abi_encode(
        ["address", "string", "string", "string", "uint256", "uint256", "uint256", "uint256"],
        [employee, "RS1", "SA-V", "SA-A", 12_000, start, 30 * DAY_S, 360 * DAY_S],
    )
    grant = engine.deploy(company, vesting(), ctor)
    open_contract_investor(c, d, "INV-V", "SA-V", grant)
    commit_ok(d, [issue_tx(c, "RS1", "SA-V", 12_000)])

    def vested_now() -> int:
        return 12_000 * (now_s(d) - start) // (360 * DAY_S)

    assert "only the beneficiary" in reason(engine.call(company, grant, "release()"))
    expected = vested_now()
    assert 2_990 < expected < 3_010
    released = engine.call(employee, grant, "release()")
    assert released.ok, released.message
    assert abi_decode(["uint256"], released.output) == (expected,)
    assert shares(d, "RS1", "SA-A") == expected
    assert shares(d, "RS1", "SA-V") == 12_000 - expected
    assert [e.kind for e in released.native_events][-1] == "transferred"
    assert "nothing has vested" in reason(engine.call(employee, grant, "release()"))

    # A court freezes the vesting account; months later the release is refused with the
    # module's code, and nothing changes (the contract's `released` counter included).
    commit_ok(d, [freeze_tx(c, d, "F-V", "SA-V")])
    commit_at(d, (start + 270 * DAY_S) * 1000, [])
    before = records(d)
    frozen = engine.call(employee, grant, "release()")
    assert frozen.native_code == "ACCOUNT_FROZEN" and frozen.receipt_code == "ACCOUNT_FROZEN"
    assert frozen.writes == {} and records(d) == before
    assert shares(d, "RS1", "SA-V") == 12_000 - expected
    counter = engine.execute(employee, grant, calldata("released()"), static=True)
    assert abi_decode(["uint256"], counter.output) == (expected,)

    # Lifted, the release catches up; after the vesting period everything has been released.
    commit_ok(
        d,
        [
            c.tx(
                "court-officer",
                "enforcement",
                "unfreeze",
                {"freeze_id": "F-V", "reference": "lifted"},
            )
        ],
    )
    assert engine.call(employee, grant, "release()").ok
    assert shares(d, "RS1", "SA-A") == vested_now()
    commit_at(d, (start + 361 * DAY_S) * 1000, [])
    assert engine.call(employee, grant, "release()").ok
    assert shares(d, "RS1", "SA-A") == 12_000 and shares(d, "RS1", "SA-V") == 0
