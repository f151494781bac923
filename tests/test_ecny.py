"""e-CNY (issue 5): two-tier issuance, tiered wallets and their limits, sub-wallets, upgrade,
freeze, payments with the large-value flag, conditional payments, the role matrix, a model-based
property test and controllable anonymity on a real data directory.

Every transaction is signed and runs in a real block (``tests.chainkit.Driver``); a rejection is
checked with ``ecnykit.refused``: its stable code, and that the block wrote nothing but the
sender's nonce (every e-CNY record is byte-for-byte unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consortia import codec
from consortia.crypto import NotARecipientError
from consortia.execution.apply import Proposal
from consortia.execution.consortium import DEFAULT_GENESIS_TIME_MS
from consortia.execution.state import ChainState
from consortia.ledger.types import CommitCertificate, Transaction, TxStatus, sign_transaction
from consortia.modules import ecny
from consortia.modules.calendar import DAY_MS, cst_date, date_start_ms
from consortia.modules.ecny import DEFAULT_LIMITS, Limits, Wallet, wallet_key
from consortia.modules.governance import MAX_FEN
from consortia.modules.investors import open_identity, seal_identity
from consortia.modules.registry import GOVERNANCE_ONLY_ROLES, ROLES
from consortia.node.home import init_home
from consortia.node.local import ACCOUNTS_DIR, VALIDATORS_DIR, LocalChain, load_key_dir
from tests.chainkit import Consortium, Driver
from tests.ecnykit import (
    RESERVE,
    accepted,
    assert_conserved,
    cash,
    cash_world,
    commit_at,
    ecny_records,
    escrow,
    escrow_call,
    escrow_tx,
    freeze_tx,
    issue_tx,
    load_tx,
    money_held,
    next_block_time,
    open_wallet_tx,
    pay_tx,
    refused,
    reserve,
    sub_wallet_tx,
    supply,
    unload_tx,
    wallet,
)
from tests.govkit import grant_role_by_vote, voters
from tests.test_investors import codes, commit_ok, register
from tests.test_securities import HOME_ORG, world

OPERATOR = {"bank-ccb": "ccb-admin", "bank-bocom": "bocom-admin"}
BIG = 1_000_000_000  # fen loaded into category-1 corporate wallets used as sources

# ---------------------------------------------------------------------------------------------
# 1. The story: two-tier issuance, wallets at two operators, payments, unload, redeem


@pytest.mark.parametrize("suite", ["intl", "gm"])
def test_issuance_wallets_payments_unload_and_redeem(suite: str) -> None:
    c, d = world(suite)
    commit_ok(d, [register(c, n, org, ()) for n, org in OWNERS.items()])

    # Nobody but the central bank creates or destroys money.
    for who in ("ccb-admin", "regulator", "exchange-admin", "inv-a"):
        tx = c.tx(
            who,
            "ecny",
            "issue",
            {"operator_org": "bank-ccb", "amount": 1_000, "reserve_reference": "x"},
        )
        refused(d, tx, "NOT_AUTHORIZED")
    refused(d, issue_tx(c, "broker-a", 1_000), "NOT_AN_OPERATOR")
    refused(d, issue_tx(c, "bank-ccb", 0), "INVALID_ARGUMENT")
    assert supply(d).issued == 0

    accepted(d, issue_tx(c, "bank-ccb", 60_000_000))
    accepted(d, issue_tx(c, "bank-bocom", 40_000_000))
    assert (reserve(d, "bank-ccb").balance, reserve(d, "bank-bocom").balance) == (
        60_000_000,
        40_000_000,
    )
    assert assert_conserved(d) == 100_000_000

    # Each operator opens a category-4 and a category-2 wallet.
    commit_ok(
        d,
        [
            open_wallet_tx(c, "ccb-admin", "Z4", "zhang", category=4),
            open_wallet_tx(c, "ccb-admin", "Z2", "wang", category=2),
            open_wallet_tx(c, "bocom-admin", "L4", "li", category=4),
            open_wallet_tx(c, "bocom-admin", "L2", "zhao", category=2, kind="corporate"),
        ],
    )
    assert {w: wallet(d, w).operator_org for w in ("Z4", "Z2", "L4", "L2")} == {
        "Z4": "bank-ccb",
        "Z2": "bank-ccb",
        "L4": "bank-bocom",
        "L2": "bank-bocom",
    }
    # An operator loads only its own wallets, from its own reserve.
    refused(d, load_tx(c, "bocom-admin", "Z2", 100), "NOT_AUTHORIZED")
    refused(d, load_tx(c, "ccb-admin", "Z2", 60_000_001), "INSUFFICIENT_RESERVE")
    commit_ok(
        d,
        [
            load_tx(c, "ccb-admin", "Z4", 500_000),
            load_tx(c, "ccb-admin", "Z2", 20_000_000),
            load_tx(c, "bocom-admin", "L4", 300_000),
            load_tx(c, "bocom-admin", "L2", 10_000_000),
        ],
    )
    assert reserve(d, "bank-ccb").balance == 60_000_000 - 20_500_000
    assert assert_conserved(d) == 100_000_000

    # Payments across operators, both directions.
    p = commit_ok(
        d,
        [
            pay_tx(c, "wang", "Z2", "L4", 100_000, "rent"),
            pay_tx(c, "li", "L4", "Z4", 50_000),
            pay_tx(c, "zhao", "L2", "Z2", 5_000_000, "invoice 7"),
        ],
    )
    payments = [e.attributes for r in p.receipts for e in r.events if e.kind == "payment"]
    assert [(a["payer"], a["payee"], a["amount_fen"]) for a in payments] == [
        ("Z2", "L4", 100_000),
        ("L4", "Z4", 50_000),
        ("L2", "Z2", 5_000_000),
    ]
    refused(d, pay_tx(c, "li", "Z4", "L4", 1), "NOT_AUTHORIZED")  # not li's wallet
    refused(d, pay_tx(c, "zhang", "Z4", "NOPE", 1), "UNKNOWN_WALLET")
    assert [cash(d, w) for w in ("Z4", "Z2", "L4", "L2")] == [
        550_000,
        24_900_000,
        350_000,
        5_000_000,
    ]

    # Unload to the operator's reserve, then the central bank redeems from it.
    refused(d, unload_tx(c, "ccb-admin", "Z2", 1), "NOT_AUTHORIZED")  # the holder unloads
    refused(d, unload_tx(c, "wang", "Z2", 24_900_001), "INSUFFICIENT_FUNDS")
    accepted(d, unload_tx(c, "wang", "Z2", 4_900_000))
    accepted(d, unload_tx(c, "zhao", "L2", 1_000_000))
    assert reserve(d, "bank-ccb").balance == 39_500_000 + 4_900_000
    refused(d, issue_tx(c, "bank-ccb", 44_400_001, "redeem"), "INSUFFICIENT_RESERVE")
    refused(
        d,
        c.tx(
            "ccb-admin",
            "ecny",
            "redeem",
            {"operator_org": "bank-ccb", "amount": 1, "reserve_reference": "x"},
        ),
        "NOT_AUTHORIZED",
    )
    accepted(d, issue_tx(c, "bank-ccb", 44_400_000, "redeem"))
    accepted(d, issue_tx(c, "bank-bocom", 10_000_000, "redeem"))
    assert reserve(d, "bank-ccb").balance == 0
    assert reserve(d, "bank-ccb").redeemed == 44_400_000

    # An open escrow is still money in circulation.
    t = next_block_time(d)
    accepted(d, escrow_tx(c, "zhao", "E1", "L2", "Z2", 700_000, expires_at_ms=t + DAY_MS))
    s = supply(d)
    assert (s.issued, s.redeemed) == (100_000_000, 54_400_000)
    reserves, wallets, escrows = money_held(d)
    assert (reserves, escrows) == (40_000_000 - 10_300_000 + 1_000_000 - 10_000_000, 700_000)
    assert reserves + wallets + escrows == s.issued - s.redeemed


OWNERS = {"zhang": "bank-ccb", "wang": "bank-ccb", "li": "bank-bocom", "zhao": "bank-bocom"}


# ---------------------------------------------------------------------------------------------
# 2. Every wallet limit at, just below and just above its boundary


# Genesis values deliberately unlike the defaults (and unlike each other).
GENESIS_LIMITS: dict[int, Limits] = {
    2: Limits(300_000, 30_000, 70_000),
    3: Limits(200_000, 20_000, 50_000),
    4: Limits(100_000, 15_000, 40_000),
}
GENESIS_PARAMS: dict[str, int] = {
    f"ecny_cat{cat}_{name}_fen": value
    for cat, lim in GENESIS_LIMITS.items()
    for name, value in (
        ("balance_cap", lim.balance_cap),
        ("per_payment", lim.per_payment),
        ("daily", lim.daily),
    )
    if value is not None
}
DAY1 = cst_date(DEFAULT_GENESIS_TIME_MS)
MIDNIGHT = date_start_ms(DAY1) + DAY_MS  # 00:00 CST of the next day


def _spend(c: Consortium, d: Driver, owner: str, src: str, amount: int, per: int) -> None:
    """Pay ``amount`` from ``src`` to W-FUND in payments of at most ``per``."""
    while amount > 0:
        step = min(per, amount)
        accepted(d, pay_tx(c, owner, src, "W-FUND", step))
        amount -= step


@pytest.mark.parametrize("source", ["defaults", "genesis"])
@pytest.mark.parametrize("category", [2, 3, 4])
def test_wallet_limits_at_their_boundaries(category: int, source: str) -> None:
    params = GENESIS_PARAMS if source == "genesis" else None
    limits = (GENESIS_LIMITS if params else DEFAULT_LIMITS)[category]
    cap, per, daily = limits.balance_cap, limits.per_payment, limits.daily
    assert cap is not None and per is not None and daily is not None
    assert 2 * per <= daily <= cap
    c, d = cash_world(params=params)
    commit_ok(
        d,
        [
            open_wallet_tx(c, "ccb-admin", "W-T", "cit-1", category=category),
            load_tx(c, "ccb-admin", "W-ISSUER", BIG),
        ],
    )
    # Balance cap, on load and on an incoming payment.
    refused(d, load_tx(c, "ccb-admin", "W-T", cap + 1), "BALANCE_CAP_EXCEEDED")
    accepted(d, load_tx(c, "ccb-admin", "W-T", cap - 1))
    refused(d, pay_tx(c, "issuer", "W-ISSUER", "W-T", 2), "BALANCE_CAP_EXCEEDED")
    accepted(d, pay_tx(c, "issuer", "W-ISSUER", "W-T", 1))
    assert cash(d, "W-T") == cap
    refused(d, load_tx(c, "ccb-admin", "W-T", 1), "BALANCE_CAP_EXCEEDED")
    refused(d, pay_tx(c, "issuer", "W-ISSUER", "W-T", 1), "BALANCE_CAP_EXCEEDED")
    # Loading an empty wallet to exactly its cap.
    commit_ok(d, [open_wallet_tx(c, "ccb-admin", "W-T2", "cit-1", category=category)])
    accepted(d, load_tx(c, "ccb-admin", "W-T2", cap))

    # Per-payment limit.
    refused(d, pay_tx(c, "cit-1", "W-T", "W-FUND", per + 1), "PER_PAYMENT_LIMIT_EXCEEDED")
    accepted(d, pay_tx(c, "cit-1", "W-T", "W-FUND", per))
    accepted(d, pay_tx(c, "cit-1", "W-T", "W-FUND", per - 1))
    assert wallet(d, "W-T").day_spent == 2 * per - 1

    # Daily limit, up to the last millisecond of the CST day.
    _spend(c, d, "cit-1", "W-T", daily - (2 * per - 1) - 1, per)
    assert wallet(d, "W-T").day_spent == daily - 1
    refused(d, pay_tx(c, "cit-1", "W-T", "W-FUND", 2), "DAILY_LIMIT_EXCEEDED", time_ms=MIDNIGHT - 2)
    last = commit_at(
        d,
        MIDNIGHT - 1,  # 23:59:59.999 CST
        [pay_tx(c, "cit-1", "W-T", "W-FUND", 1), pay_tx(c, "cit-1", "W-T", "W-FUND", 1)],
        next_ms=MIDNIGHT,
    )
    assert codes(last) == ["", "DAILY_LIMIT_EXCEEDED"]
    assert (wallet(d, "W-T").day, wallet(d, "W-T").day_spent) == (DAY1, daily)
    assert cash(d, "W-T") == cap - daily
    # 00:00 CST: a new day, the whole daily limit again (the balance cap still holds).
    accepted(d, pay_tx(c, "cit-1", "W-T", "W-FUND", per), time_ms=MIDNIGHT)
    assert cst_date(MIDNIGHT) != DAY1
    assert (wallet(d, "W-T").day, wallet(d, "W-T").day_spent) == (cst_date(MIDNIGHT), per)
    accepted(d, load_tx(c, "ccb-admin", "W-T", daily))
    refused(d, load_tx(c, "ccb-admin", "W-T", per + 1), "BALANCE_CAP_EXCEEDED")
    _spend(c, d, "cit-1", "W-T", daily - per, per)
    refused(d, pay_tx(c, "cit-1", "W-T", "W-FUND", 1), "DAILY_LIMIT_EXCEEDED")
    # Receiving and unloading are not spending: neither is limited by the daily total.
    accepted(d, pay_tx(c, "issuer", "W-ISSUER", "W-T", 1))
    accepted(d, unload_tx(c, "cit-1", "W-T", cash(d, "W-T")))
    assert cash(d, "W-T") == 0
    assert_conserved(d)


def test_genesis_params_change_only_their_own_limit() -> None:
    c, d = cash_world(params={"ecny_cat4_daily_fen": 123_456})
    commit_ok(d, [load_tx(c, "ccb-admin", "W-CIT1", 300_000)])
    default = DEFAULT_LIMITS[4]
    assert default.per_payment is not None
    # per-payment is still the default ¥2,000; the daily limit is the genesis ¥1,234.56.
    refused(
        d,
        pay_tx(c, "cit-1", "W-CIT1", "W-FUND", default.per_payment + 1),
        "PER_PAYMENT_LIMIT_EXCEEDED",
    )
    refused(d, pay_tx(c, "cit-1", "W-CIT1", "W-FUND", 123_457), "DAILY_LIMIT_EXCEEDED")
    accepted(d, pay_tx(c, "cit-1", "W-CIT1", "W-FUND", 123_456))


def test_category_1_has_no_limit() -> None:
    c, d = cash_world()
    commit_ok(d, [open_wallet_tx(c, "ccb-admin", "W-1", "cit-1", category=1)])
    accepted(d, load_tx(c, "ccb-admin", "W-1", RESERVE))  # the operator's whole reserve
    for _ in range(3):  # far beyond any category's per-payment and daily limits
        accepted(d, pay_tx(c, "cit-1", "W-1", "W-FUND", RESERVE // 4))
    accepted(d, pay_tx(c, "ccb-custodian", "W-FUND", "W-1", 3 * (RESERVE // 4)))
    assert cash(d, "W-1") == RESERVE
    assert_conserved(d)


def test_cumulative_totals_stay_encodable() -> None:
    """A category-1 wallet moving a huge balance back and forth all day, and issue/redeem cycles
    of the maximum amount, never produce a record the codec cannot store (that would abort the
    block instead of failing the transaction)."""
    c, d = cash_world()
    commit_ok(
        d,
        [
            issue_tx(c, "bank-ccb", MAX_FEN - 2 * RESERVE),
            open_wallet_tx(c, "ccb-admin", "W-1", "cit-1", category=1),
        ],
    )
    big = MAX_FEN - 2 * RESERVE
    accepted(d, load_tx(c, "ccb-admin", "W-1", big))
    for _ in range(5):
        commit_ok(
            d,
            [
                pay_tx(c, "cit-1", "W-1", "W-FUND", big),
                pay_tx(c, "ccb-custodian", "W-FUND", "W-1", big),
            ],
        )
    assert wallet(d, "W-1").day_spent == MAX_FEN  # saturated, not overflowed
    accepted(d, unload_tx(c, "cit-1", "W-1", big))
    refused(d, issue_tx(c, "bank-ccb", 1), "INVALID_ARGUMENT")  # supply at its maximum
    for _ in range(10):
        accepted(d, issue_tx(c, "bank-ccb", big, "redeem"))
        if supply(d).issued + big > ecny.MAX_CUMULATIVE_FEN:
            refused(d, issue_tx(c, "bank-ccb", big), "INVALID_ARGUMENT")
            break
        accepted(d, issue_tx(c, "bank-ccb", big))
    else:
        pytest.fail("the cumulative bound was never reached")
    assert_conserved(d)


# ---------------------------------------------------------------------------------------------
# 3. Sub-wallets, upgrade, freeze


def test_sub_wallets_within_the_parent() -> None:
    c, d = cash_world()
    commit_ok(
        d,
        [
            register(c, "kid", "bank-bocom", ()),
            load_tx(c, "ccb-admin", "W-ISSUER", BIG),
        ],
    )
    cat2 = DEFAULT_LIMITS[2]
    cap, per, daily = cat2.balance_cap, cat2.per_payment, cat2.daily
    assert cap is not None and per is not None and daily is not None

    def sub(wid: str, who: str = "cit-2", **limits: int) -> Transaction:
        lim = {"cap": 100_000, "per_payment": 10_000, "daily": 20_000, **limits}
        return sub_wallet_tx(c, who, wid, "W-CIT2", "kid", **lim)

    for too_high in (
        sub("W-KID", cap=cap + 1),
        sub("W-KID", per_payment=per + 1),
        sub("W-KID", daily=daily + 1),
    ):
        refused(d, too_high, "SUB_WALLET_LIMIT_EXCEEDS_PARENT")
    refused(d, sub("W-KID", cap=0), "INVALID_ARGUMENT")
    refused(d, sub("W-KID", who="kid"), "NOT_AUTHORIZED")
    refused(d, sub("W-KID", who="ccb-admin"), "NOT_AUTHORIZED")  # not the parent's operator
    accepted(d, sub("W-KID"))  # by the parent's holder
    accepted(d, sub("W-KID2", who="bocom-admin", cap=cap, per_payment=per, daily=daily))
    refused(d, sub("W-KID2"), "WALLET_EXISTS")
    refused(
        d,
        sub_wallet_tx(c, "bocom-admin", "W-GK", "W-KID", "kid", cap=1, per_payment=1, daily=1),
        "INVALID_ARGUMENT",  # one level only
    )
    kid = wallet(d, "W-KID")
    assert (kid.parent, kid.category, kid.operator_org) == ("W-CIT2", 2, "bank-bocom")
    assert kid.identity_commitment == b"" and kid.sealed_identity == b""

    # The sub-wallet's own cap, then the family's cap (parent + children).
    refused(d, load_tx(c, "bocom-admin", "W-KID", 100_001), "BALANCE_CAP_EXCEEDED")
    accepted(d, load_tx(c, "bocom-admin", "W-KID", 100_000))
    accepted(d, load_tx(c, "bocom-admin", "W-CIT2", cap - 100_001))
    accepted(d, pay_tx(c, "issuer", "W-ISSUER", "W-KID2", 1))  # the family at exactly its cap
    assert wallet(d, "W-CIT2").children_balance == 100_001
    refused(d, load_tx(c, "bocom-admin", "W-CIT2", 1), "BALANCE_CAP_EXCEEDED")
    refused(d, load_tx(c, "bocom-admin", "W-KID2", 1), "BALANCE_CAP_EXCEEDED")
    refused(d, pay_tx(c, "issuer", "W-ISSUER", "W-KID2", 1), "BALANCE_CAP_EXCEEDED")

    # The sub-wallet's own per-payment and daily limits; its holder and the parent's spend.
    refused(d, pay_tx(c, "kid", "W-KID", "W-FUND", 10_001), "PER_PAYMENT_LIMIT_EXCEEDED")
    accepted(d, pay_tx(c, "kid", "W-KID", "W-FUND", 10_000))
    accepted(d, pay_tx(c, "cit-2", "W-KID", "W-FUND", 5_000))  # the parent's holder controls it
    refused(d, pay_tx(c, "kid", "W-CIT2", "W-FUND", 1), "NOT_AUTHORIZED")
    refused(d, pay_tx(c, "kid", "W-KID", "W-FUND", 5_001), "DAILY_LIMIT_EXCEEDED")
    accepted(d, pay_tx(c, "kid", "W-KID", "W-FUND", 5_000))
    assert wallet(d, "W-KID").day_spent == 20_000
    # The parent's daily limit counts its sub-wallets' spending.
    assert wallet(d, "W-CIT2").day_spent == 20_000
    accepted(d, pay_tx(c, "cit-2", "W-CIT2", "W-FUND", per))
    accepted(d, pay_tx(c, "cit-2", "W-CIT2", "W-FUND", daily - 20_000 - per - 1))
    accepted(d, load_tx(c, "bocom-admin", "W-KID2", 100))
    assert wallet(d, "W-KID2").day_spent == 0
    refused(d, pay_tx(c, "kid", "W-KID2", "W-FUND", 2), "DAILY_LIMIT_EXCEEDED")  # the parent's
    accepted(d, pay_tx(c, "kid", "W-KID2", "W-FUND", 1))
    assert wallet(d, "W-CIT2").day_spent == daily
    refused(d, pay_tx(c, "cit-2", "W-CIT2", "W-FUND", 1), "DAILY_LIMIT_EXCEEDED")
    # The parent's per-payment limit covers a sub-wallet with the parent's limits.
    accepted(d, pay_tx(c, "ccb-custodian", "W-FUND", "W-KID2", per + 1))
    refused(d, pay_tx(c, "kid", "W-KID2", "W-FUND", per + 1), "PER_PAYMENT_LIMIT_EXCEEDED")
    # Unloading a sub-wallet returns money to its parent's operator.
    before = reserve(d, "bank-bocom").balance
    accepted(d, unload_tx(c, "kid", "W-KID", 50_000))
    assert reserve(d, "bank-bocom").balance == before + 50_000
    assert wallet(d, "W-CIT2").children_balance == cash(d, "W-KID") + cash(d, "W-KID2")
    assert_conserved(d)


def _upgrade_tx(c: Consortium, who: str, wallet_id: str, category: int) -> Transaction:
    commitment, sealed, _ = seal_identity(
        c.suite,
        {"name": f"Upgraded {wallet_id}", "id_number": "110101199001011234"},
        c.accounts[who].public_key,
        c.accounts["regulator"].public_key,
    )
    args = {
        "wallet_id": wallet_id,
        "category": category,
        "identity_commitment": commitment,
        "sealed_identity": sealed,
    }
    return c.tx(who, "ecny", "upgrade_wallet", args)


def test_upgrade_after_stronger_kyc() -> None:
    c, d = cash_world()
    cat4, cat2 = DEFAULT_LIMITS[4], DEFAULT_LIMITS[2]
    assert cat4.balance_cap is not None and cat4.per_payment is not None
    refused(d, load_tx(c, "ccb-admin", "W-CIT1", cat4.balance_cap + 1), "BALANCE_CAP_EXCEEDED")
    refused(d, _upgrade_tx(c, "bocom-admin", "W-CIT1", 2), "NOT_AUTHORIZED")
    refused(d, _upgrade_tx(c, "cit-1", "W-CIT1", 2), "NOT_AUTHORIZED")
    refused(d, _upgrade_tx(c, "ccb-admin", "W-CIT1", 4), "CATEGORY_NOT_STRONGER")
    refused(d, _upgrade_tx(c, "ccb-admin", "W-CIT1", 0), "INVALID_ARGUMENT")
    old = wallet(d, "W-CIT1")
    accepted(d, _upgrade_tx(c, "ccb-admin", "W-CIT1", 3))
    refused(d, _upgrade_tx(c, "ccb-admin", "W-CIT1", 3), "CATEGORY_NOT_STRONGER")
    p = accepted(d, _upgrade_tx(c, "ccb-admin", "W-CIT1", 2))
    (event,) = p.receipts[0].events
    assert (event.kind, event.attributes["from_category"], event.attributes["to_category"]) == (
        "wallet_upgraded",
        3,
        2,
    )
    new = wallet(d, "W-CIT1")
    assert new.category == 2 and new.identity_commitment != old.identity_commitment
    # The category-2 limits now apply.
    assert cat2.per_payment is not None
    accepted(d, load_tx(c, "ccb-admin", "W-CIT1", cat4.balance_cap + cat2.per_payment))
    accepted(d, pay_tx(c, "cit-1", "W-CIT1", "W-FUND", cat4.per_payment + 1))
    refused(
        d,
        pay_tx(c, "cit-1", "W-CIT1", "W-FUND", cat2.per_payment + 1),
        "PER_PAYMENT_LIMIT_EXCEEDED",
    )
    refused(d, _upgrade_tx(c, "ccb-admin", "W-CIT1", 2), "CATEGORY_NOT_STRONGER")
    # A sub-wallet takes its parent's category.
    commit_ok(
        d,
        [sub_wallet_tx(c, "cit-1", "W-S", "W-CIT1", "cit-1", cap=1, per_payment=1, daily=1)],
    )
    refused(d, _upgrade_tx(c, "ccb-admin", "W-S", 1), "INVALID_ARGUMENT")


def test_freeze_by_regulator_court_and_operator() -> None:
    c, d = cash_world()
    commit_ok(
        d,
        [load_tx(c, "ccb-admin", "W-A", 1_000_000), load_tx(c, "bocom-admin", "W-B", 1_000_000)],
    )
    # Only a judicial authority or the wallet's own operator freezes.
    for who in ("bocom-admin", "inv-a", "exchange-admin", "pboc-admin", "broker-a-admin"):
        refused(d, freeze_tx(c, who, "W-A"), "NOT_AUTHORIZED")
    refused(d, freeze_tx(c, "regulator", "W-A", reference=""), "INVALID_ARGUMENT")
    refused(d, freeze_tx(c, "regulator", "W-A", "unfreeze_wallet"), "WALLET_NOT_FROZEN")

    # A judicial freeze (regulator): pays nothing, still receives.
    p = accepted(d, freeze_tx(c, "regulator", "W-A", reference="CSRC-2026-1"))
    assert p.receipts[0].events[0].attributes["authority"] == "judicial"
    assert wallet(d, "W-A").frozen == "judicial"
    refused(d, pay_tx(c, "inv-a", "W-A", "W-B", 1), "WALLET_FROZEN")
    refused(d, unload_tx(c, "inv-a", "W-A", 1), "WALLET_FROZEN")
    t = next_block_time(d)
    refused(
        d, escrow_tx(c, "inv-a", "E", "W-A", "W-B", 1, expires_at_ms=t + 10_000), "WALLET_FROZEN"
    )
    refused(d, freeze_tx(c, "court-officer", "W-A"), "WALLET_FROZEN")  # already frozen
    accepted(d, pay_tx(c, "inv-b", "W-B", "W-A", 1_000))
    accepted(d, load_tx(c, "ccb-admin", "W-A", 1_000))
    assert cash(d, "W-A") == 1_002_000
    # The operator cannot lift a judicial freeze; a judicial authority can (here the court).
    refused(d, freeze_tx(c, "ccb-admin", "W-A", "unfreeze_wallet"), "NOT_AUTHORIZED")
    accepted(d, freeze_tx(c, "court-officer", "W-A", "unfreeze_wallet"))
    accepted(d, pay_tx(c, "inv-a", "W-A", "W-B", 1))

    # An operator's risk-control freeze: lifted by the operator; a court's order takes it over.
    accepted(d, freeze_tx(c, "ccb-admin", "W-C", reference="risk-1"))
    assert wallet(d, "W-C").frozen == "operator"
    refused(d, freeze_tx(c, "ccb-admin", "W-C"), "WALLET_FROZEN")
    refused(d, freeze_tx(c, "regulator", "W-C", "unfreeze_wallet"), "NOT_AUTHORIZED")
    refused(d, freeze_tx(c, "bocom-admin", "W-C", "unfreeze_wallet"), "NOT_AUTHORIZED")
    accepted(d, freeze_tx(c, "ccb-admin", "W-C", "unfreeze_wallet"))
    accepted(d, freeze_tx(c, "ccb-admin", "W-C", reference="risk-2"))
    accepted(d, freeze_tx(c, "court-officer", "W-C", reference="(2026) Hu 74 Zhi 1"))
    assert (wallet(d, "W-C").frozen, wallet(d, "W-C").freeze_reference) == (
        "judicial",
        "(2026) Hu 74 Zhi 1",
    )
    refused(d, freeze_tx(c, "ccb-admin", "W-C", "unfreeze_wallet"), "NOT_AUTHORIZED")
    accepted(d, freeze_tx(c, "regulator", "W-C", "unfreeze_wallet"))

    # A frozen parent stops its sub-wallets paying; a frozen sub-wallet leaves the parent free.
    commit_ok(
        d,
        [
            sub_wallet_tx(
                c, "inv-b", "W-BK", "W-B", "inv-b", cap=100_000, per_payment=9_000, daily=9_000
            ),
        ],
    )
    accepted(d, pay_tx(c, "inv-b", "W-B", "W-BK", 50_000))
    accepted(d, freeze_tx(c, "bocom-admin", "W-B"))
    refused(d, pay_tx(c, "inv-b", "W-BK", "W-A", 1), "WALLET_FROZEN")
    refused(
        d,
        sub_wallet_tx(c, "inv-b", "W-BK2", "W-B", "inv-b", cap=1, per_payment=1, daily=1),
        "WALLET_FROZEN",
    )
    accepted(d, freeze_tx(c, "bocom-admin", "W-B", "unfreeze_wallet"))
    accepted(d, freeze_tx(c, "court-officer", "W-BK"))
    refused(d, pay_tx(c, "inv-b", "W-BK", "W-A", 1), "WALLET_FROZEN")
    accepted(d, pay_tx(c, "inv-b", "W-B", "W-A", 1))
    accepted(d, pay_tx(c, "inv-a", "W-A", "W-BK", 1))
    assert_conserved(d)


# ---------------------------------------------------------------------------------------------
# 4. Conditional payments


def test_conditional_payments() -> None:
    c, d = cash_world()
    commit_ok(
        d,
        [load_tx(c, "ccb-admin", "W-A", 3_000_000), load_tx(c, "ccb-admin", "W-C", 100_000)],
    )
    t0 = next_block_time(d)
    release_at, expires = t0 + 60_000, t0 + 600_000

    def create(eid: str, condition: str, **kw: Any) -> Transaction:
        return escrow_tx(
            c, "inv-a", eid, "W-A", "W-B", 100_000, condition=condition, expires_at_ms=expires, **kw
        )

    # Malformed escrows.
    for bad in (
        create("X", "date"),  # no release time
        create("X", "date", release_at_ms=expires),  # not before expiry
        create("X", "payer", release_at_ms=release_at),
        create("X", "third_party"),  # no confirmer
        create("X", "payer", confirmer=c.addr("court-officer")),
        create("X", "whenever"),
        escrow_tx(c, "inv-a", "X", "W-A", "W-B", 1, expires_at_ms=t0 - 1),
        escrow_tx(c, "inv-a", "X", "W-A", "W-A", 1, expires_at_ms=expires),
        escrow_tx(c, "inv-a", "X", "W-A", "W-B", 0, expires_at_ms=expires),
    ):
        refused(d, bad, "INVALID_ARGUMENT")
    refused(d, escrow_tx(c, "inv-b", "X", "W-A", "W-B", 1, expires_at_ms=expires), "NOT_AUTHORIZED")
    refused(d, escrow_tx(c, "inv-a", "X", "W-A", "W-Q", 1, expires_at_ms=expires), "UNKNOWN_WALLET")
    refused(
        d,
        escrow_tx(c, "inv-a", "X", "W-A", "W-B", 3_000_001, expires_at_ms=expires),
        "INSUFFICIENT_FUNDS",
    )

    p = commit_ok(
        d,
        [
            create("E-DATE", "date", release_at_ms=release_at),
            create("E-PAYER", "payer"),
            create("E-THIRD", "third_party", confirmer=c.addr("insurer-admin")),
            create("E-LAPSE", "payer"),
        ],
    )
    assert all(r.events[0].kind == "escrow_created" for r in p.receipts)
    refused(d, create("E-DATE", "payer"), "ESCROW_EXISTS")
    assert cash(d, "W-A") == 3_000_000 - 400_000
    assert money_held(d)[2] == 400_000
    assert_conserved(d)

    # date: releasable from the date by the payer's or the payee's holder, nobody else.
    refused(d, escrow_call(c, "inv-c", "release_escrow", "E-DATE"), "NOT_AUTHORIZED")
    refused(d, escrow_call(c, "bocom-admin", "release_escrow", "E-DATE"), "NOT_AUTHORIZED")
    refused(
        d,
        escrow_call(c, "inv-b", "release_escrow", "E-DATE"),
        "CONDITION_NOT_MET",
        time_ms=release_at - 1,
    )
    p = accepted(d, escrow_call(c, "inv-b", "release_escrow", "E-DATE"), time_ms=release_at)
    assert [e.kind for e in p.receipts[0].events] == ["escrow_released", "payment"]
    assert p.receipts[0].events[1].attributes["purpose"] == "escrow"
    assert cash(d, "W-B") == 100_000
    refused(d, escrow_call(c, "inv-a", "release_escrow", "E-DATE"), "ESCROW_CLOSED")
    refused(d, escrow_call(c, "inv-a", "refund_escrow", "E-DATE"), "ESCROW_CLOSED")

    # payer: only the payer's holder confirms.
    refused(d, escrow_call(c, "inv-b", "release_escrow", "E-PAYER"), "NOT_AUTHORIZED")
    accepted(d, escrow_call(c, "inv-a", "release_escrow", "E-PAYER"))
    refused(d, escrow_call(c, "inv-a", "release_escrow", "E-PAYER"), "ESCROW_CLOSED")

    # third_party: only the named confirmer.
    for who in ("inv-a", "inv-b", "regulator"):
        refused(d, escrow_call(c, who, "release_escrow", "E-THIRD"), "NOT_AUTHORIZED")
    accepted(d, escrow_call(c, "insurer-admin", "release_escrow", "E-THIRD"))
    refused(d, escrow_call(c, "insurer-admin", "release_escrow", "E-THIRD"), "ESCROW_CLOSED")
    assert cash(d, "W-B") == 300_000

    # Expiry: refund only from the expiry time, by the payer; release no longer possible.
    refused(
        d,
        escrow_call(c, "inv-a", "refund_escrow", "E-LAPSE"),
        "ESCROW_NOT_EXPIRED",
        time_ms=expires - 1,
    )
    refused(
        d, escrow_call(c, "inv-a", "release_escrow", "E-LAPSE"), "ESCROW_EXPIRED", time_ms=expires
    )
    refused(d, escrow_call(c, "inv-b", "refund_escrow", "E-LAPSE"), "NOT_AUTHORIZED")
    p = accepted(d, escrow_call(c, "inv-a", "refund_escrow", "E-LAPSE"))
    assert p.receipts[0].events[0].kind == "escrow_refunded"
    refused(d, escrow_call(c, "inv-a", "refund_escrow", "E-LAPSE"), "ESCROW_CLOSED")
    refused(d, escrow_call(c, "inv-a", "release_escrow", "E-LAPSE"), "ESCROW_CLOSED")
    refused(d, escrow_call(c, "inv-a", "release_escrow", "E-NONE"), "UNKNOWN_ESCROW")
    assert [escrow(d, e).status for e in ("E-DATE", "E-PAYER", "E-THIRD", "E-LAPSE")] == [
        "released",
        "released",
        "released",
        "refunded",
    ]
    assert cash(d, "W-A") == 3_000_000 - 300_000
    assert money_held(d)[2] == 0
    assert_conserved(d)


def test_escrow_limits_and_caps() -> None:
    """The payer's limits apply when the money is locked; the payee's cap when it is released;
    an escrow that cannot be released is refunded after expiry, whatever the payer's cap."""
    c, d = cash_world()
    commit_ok(
        d, [load_tx(c, "ccb-admin", "W-A", 6_000_000), load_tx(c, "ccb-admin", "W-CIT1", 999_999)]
    )
    t0 = next_block_time(d)
    refused(
        d,
        escrow_tx(c, "inv-a", "X", "W-A", "W-B", 5_000_001, expires_at_ms=t0 + 10_000),
        "PER_PAYMENT_LIMIT_EXCEEDED",
    )
    accepted(d, escrow_tx(c, "inv-a", "E1", "W-A", "W-CIT1", 2, expires_at_ms=t0 + 10_000))
    refused(d, escrow_call(c, "inv-a", "release_escrow", "E1"), "BALANCE_CAP_EXCEEDED")
    accepted(d, escrow_call(c, "inv-a", "refund_escrow", "E1"), time_ms=t0 + 10_000)
    assert cash(d, "W-A") == 6_000_000
    assert_conserved(d)


# ---------------------------------------------------------------------------------------------
# 5. Large-value payments


def _payment_events(p: Proposal) -> list[tuple[str, dict[str, Any]]]:
    return [(e.kind, e.attributes) for r in p.receipts for e in r.events]


@pytest.mark.parametrize("threshold", [None, 123_456])
def test_large_value_payments_are_traceable(threshold: int | None) -> None:
    params = None if threshold is None else {"ecny_large_value_fen": threshold}
    c, d = cash_world(params=params)
    limit = ecny.DEFAULT_LARGE_VALUE_FEN if threshold is None else threshold
    commit_ok(d, [load_tx(c, "ccb-admin", "W-ISSUER", BIG)])
    p = accepted(d, pay_tx(c, "issuer", "W-ISSUER", "W-INSURER", limit, "premium"))
    events = _payment_events(p)
    assert [k for k, _ in events] == ["payment", "large_value_payment"]
    assert events[0][1]["traceable"] is True
    assert events[1][1] == {
        "payer": "W-ISSUER",
        "payer_operator": "bank-ccb",
        "payee": "W-INSURER",
        "payee_operator": "bank-bocom",
        "amount_fen": limit,
        "purpose": "payment",
    }
    p = accepted(d, pay_tx(c, "issuer", "W-ISSUER", "W-INSURER", limit - 1))
    events = _payment_events(p)
    assert [k for k, _ in events] == ["payment"] and events[0][1]["traceable"] is False
    # A released escrow at the threshold is traceable too.
    t = next_block_time(d)
    accepted(d, escrow_tx(c, "issuer", "E", "W-ISSUER", "W-FUND", limit, expires_at_ms=t + DAY_MS))
    p = accepted(d, escrow_call(c, "issuer", "release_escrow", "E"))
    assert [k for k, _ in _payment_events(p)] == [
        "escrow_released",
        "payment",
        "large_value_payment",
    ]


# ---------------------------------------------------------------------------------------------
# 6. Role matrix

# (method, case) -> roles whose account succeeds. The targets make the relations hold for the
# role's account: W-M (category 4, operator bank-ccb) belongs to the investor's account; HOME_ORG
# puts operator_bank and custodian in bank-ccb; the third-party escrow names the insurer's account.
MATRIX: dict[tuple[str, str], frozenset[str]] = {
    ("issue", ""): frozenset({"central_bank"}),
    ("redeem", ""): frozenset({"central_bank"}),
    ("open_wallet", ""): frozenset({"operator_bank"}),
    ("open_sub_wallet", ""): frozenset({"operator_bank", "investor"}),
    ("upgrade_wallet", ""): frozenset({"operator_bank"}),
    ("freeze_wallet", ""): frozenset({"operator_bank", "regulator", "court"}),
    ("unfreeze_wallet", "judicial"): frozenset({"regulator", "court"}),
    ("unfreeze_wallet", "operator"): frozenset({"operator_bank"}),
    ("load", ""): frozenset({"operator_bank"}),
    ("unload", ""): frozenset({"investor"}),
    ("pay", ""): frozenset({"investor"}),
    ("create_escrow", ""): frozenset({"investor"}),
    ("release_escrow", "payer"): frozenset({"investor"}),
    ("release_escrow", "date"): frozenset({"investor", "fund_manager"}),
    ("release_escrow", "third_party"): frozenset({"insurer"}),
    ("refund_escrow", ""): frozenset({"investor"}),
}


def _matrix_args(c: Consortium, actor: str, method: str, case: str, t: int) -> dict[str, Any]:
    if method in ("open_wallet", "upgrade_wallet"):
        commitment, sealed, _ = seal_identity(
            c.suite,
            {"name": "Matrix Person", "id_number": "110101199001010000"},
            c.accounts[actor].public_key,
            c.accounts["regulator"].public_key,
        )
        ident = {"identity_commitment": commitment, "sealed_identity": sealed}
        if method == "open_wallet":
            owner = c.addr("actor-investor")
            return {
                "wallet_id": "W-NEW",
                "owner": owner,
                "kind": "personal",
                "category": 3,
                **ident,
            }
        return {"wallet_id": "W-M", "category": 2, **ident}
    table: dict[str, dict[str, Any]] = {
        "issue": {"operator_org": "bank-ccb", "amount": 10, "reserve_reference": "m"},
        "redeem": {"operator_org": "bank-ccb", "amount": 10, "reserve_reference": "m"},
        "open_sub_wallet": {
            "wallet_id": "W-MS",
            "parent": "W-M",
            "owner": c.addr("actor-investor"),
            "balance_cap": 10,
            "per_payment_limit": 10,
            "daily_limit": 10,
        },
        "freeze_wallet": {"wallet_id": "W-M", "reference": "m"},
        "unfreeze_wallet": {"wallet_id": f"W-FROZEN-{case}", "reference": "m"},
        "load": {"wallet_id": "W-M", "amount": 10},
        "unload": {"wallet_id": "W-M", "amount": 10},
        "pay": {"from_wallet": "W-M", "to_wallet": "W-FUND", "amount": 10, "memo": "m"},
        "create_escrow": {
            "escrow_id": "E-NEW",
            "from_wallet": "W-M",
            "to_wallet": "W-FUND",
            "amount": 10,
            "condition": "payer",
            "release_at_ms": 0,
            "confirmer": b"",
            "expires_at_ms": t + DAY_MS,
            "memo": "",
        },
        "release_escrow": {"escrow_id": f"E-{case}"},
        "refund_escrow": {"escrow_id": "E-EXPIRED"},
    }
    return table[method]


def test_role_matrix() -> None:
    """Every e-CNY operation × every role (an account holding only that role): exactly the
    permitted ones succeed, the others fail with NOT_AUTHORIZED."""
    c, d = cash_world()
    actors = {"regulator": "regulator"}
    setup = []
    for role in sorted(ROLES - set(actors)):
        actors[role] = f"actor-{role}"
        granted = () if role in GOVERNANCE_ONLY_ROLES else (role,)
        setup.append(register(c, actors[role], HOME_ORG[role], granted))
    commit_ok(d, setup)
    for n, role in enumerate(sorted(GOVERNANCE_ONLY_ROLES), start=1):
        commit_ok(d, grant_role_by_vote(c, c.addr(actors[role]), role, n))
    commit_ok(
        d,
        [
            open_wallet_tx(c, "ccb-admin", "W-M", "actor-investor", category=4),
            open_wallet_tx(c, "ccb-admin", "W-PAYEE", "actor-fund_manager", category=1),
            open_wallet_tx(c, "ccb-admin", "W-FROZEN-judicial", "inv-a", category=2),
            open_wallet_tx(c, "ccb-admin", "W-FROZEN-operator", "inv-a", category=2),
        ],
    )
    t = next_block_time(d)
    soon = t + 30_000
    commit_ok(
        d,
        [
            load_tx(c, "ccb-admin", "W-M", 100_000),
            freeze_tx(c, "court-officer", "W-FROZEN-judicial"),
            freeze_tx(c, "ccb-admin", "W-FROZEN-operator"),
        ],
    )
    commit_ok(
        d,
        [
            escrow_tx(
                c, "actor-investor", "E-payer", "W-M", "W-FUND", 10, expires_at_ms=t + DAY_MS
            ),
            escrow_tx(
                c,
                "actor-investor",
                "E-date",
                "W-M",
                "W-PAYEE",
                10,
                condition="date",
                release_at_ms=soon - 1,
                expires_at_ms=t + DAY_MS,
            ),
            escrow_tx(
                c,
                "actor-investor",
                "E-third_party",
                "W-M",
                "W-FUND",
                10,
                condition="third_party",
                confirmer=c.addr("actor-insurer"),
                expires_at_ms=t + DAY_MS,
            ),
            escrow_tx(c, "actor-investor", "E-EXPIRED", "W-M", "W-FUND", 10, expires_at_ms=soon),
        ],
    )
    commit_at(d, soon, [])
    assert set(actors) == set(ROLES)
    t = next_block_time(d)
    for (method, case), permitted in MATRIX.items():
        succeeded = set()
        for role, actor in sorted(actors.items()):
            saved = dict(c.nonces)
            tx = c.tx(actor, "ecny", method, _matrix_args(c, actor, method, case, t))
            c.nonces = saved  # proposals are not committed
            (receipt,) = d.propose([tx]).receipts
            if receipt.status == TxStatus.OK:
                succeeded.add(role)
            else:
                assert receipt.code == "NOT_AUTHORIZED", (method, case, role, receipt.message)
        assert succeeded == permitted, (method, case, succeeded)
    assert {m for m, _ in MATRIX} == set(ecny.MODULE.methods)


# ---------------------------------------------------------------------------------------------
# 7. Property: random operations against a model; conservation; failures change nothing

# The model's wallets: id -> (owner, operator org, category). W-K is a sub-wallet of W-B.
P_WALLETS: dict[str, tuple[str, str, int]] = {
    "W-A": ("inv-a", "bank-ccb", 2),
    "W-B": ("inv-b", "bank-bocom", 2),
    "W-CIT1": ("cit-1", "bank-ccb", 4),
    "W-ISSUER": ("issuer", "bank-ccb", 1),
}
SUB = ("W-K", "W-B", Limits(300_000, 100_000, 150_000))  # owner inv-b (the parent's holder)
ALL_WALLETS = [*P_WALLETS, SUB[0]]
P_ORG = {**{w: org for w, (_, org, _) in P_WALLETS.items()}, SUB[0]: "bank-bocom"}
# Balances loaded before the random operations, so most of them get past INSUFFICIENT_FUNDS.
PRELOAD = {
    "W-A": 20_000_000,
    "W-B": 20_000_000,
    "W-CIT1": 900_000,
    "W-ISSUER": 100_000_000,
    "W-K": 200_000,
}
ORGS = ["bank-ccb", "bank-bocom"]


@dataclass
class WalletModel:
    owner: str
    org: str
    limits: Limits
    parent: str = ""
    balance: int = 0
    day: int = 0
    spent: int = 0
    frozen: bool = False


@dataclass
class CashModel:
    wallets: dict[str, WalletModel]
    reserves: dict[str, int]
    issued: int
    redeemed: int = 0
    escrows: dict[str, tuple[str, str, int, str]] = field(default_factory=dict)  # id -> status
    today: int = 0

    def w(self, wallet_id: str) -> WalletModel:
        return self.wallets[wallet_id]

    def family(self, w: WalletModel) -> int:
        return w.balance + sum(
            x.balance for x in self.wallets.values() if x.parent and self.wallets[x.parent] is w
        )

    def _roll(self, w: WalletModel) -> None:
        if w.day != self.today:
            w.day, w.spent = self.today, 0

    def _debit_check(self, src: str, amount: int, spend: bool) -> str:
        w = self.w(src)
        if w.frozen:
            return "WALLET_FROZEN"
        if amount > w.balance:
            return "INSUFFICIENT_FUNDS"
        parent = self.w(w.parent) if w.parent else None
        if parent is not None and parent.frozen:
            return "WALLET_FROZEN"
        if spend:
            for x in (w, parent):
                if x is None:
                    continue
                self._roll(x)
                lim = x.limits
                if lim.per_payment is not None and amount > lim.per_payment:
                    return "PER_PAYMENT_LIMIT_EXCEEDED"
                if lim.daily is not None and x.spent + amount > lim.daily:
                    return "DAILY_LIMIT_EXCEEDED"
        return ""

    def _credit_check(self, dst: str, amount: int, moved_from: str = "") -> str:
        """Caps after ``dst`` receives ``amount`` (``moved_from`` already debited, same family)."""
        w = self.w(dst)
        delta = {dst: amount}
        if moved_from:
            delta[moved_from] = delta.get(moved_from, 0) - amount
        after = {k: x.balance + delta.get(k, 0) for k, x in self.wallets.items()}

        def fam(k: str) -> int:
            return after[k] + sum(after[j] for j, x in self.wallets.items() if x.parent == k)

        own = after[dst] if w.parent else fam(dst)
        if w.limits.balance_cap is not None and own > w.limits.balance_cap:
            return "BALANCE_CAP_EXCEEDED"
        if w.parent:
            cap = self.w(w.parent).limits.balance_cap
            if cap is not None and fam(w.parent) > cap:
                return "BALANCE_CAP_EXCEEDED"
        return ""

    def _spend(self, src: str, amount: int) -> None:
        w = self.w(src)
        w.balance -= amount
        for x in (w, self.w(w.parent) if w.parent else None):
            if x is not None:
                self._roll(x)
                x.spent += amount

    def pay(self, sender: str, src: str, dst: str, amount: int) -> str:
        if sender != self.w(src).owner and not (
            self.w(src).parent and sender == self.w(self.w(src).parent).owner
        ):
            return "NOT_AUTHORIZED"
        if amount < 1 or src == dst:
            return "INVALID_ARGUMENT"
        fail = self._debit_check(src, amount, True) or self._credit_check(dst, amount, src)
        if not fail:
            self._spend(src, amount)
            self.w(dst).balance += amount
        return fail

    def load(self, dst: str, amount: int) -> str:
        if amount < 1:
            return "INVALID_ARGUMENT"
        org = self.w(dst).org
        if amount > self.reserves[org]:
            return "INSUFFICIENT_RESERVE"
        fail = self._credit_check(dst, amount)
        if not fail:
            self.reserves[org] -= amount
            self.w(dst).balance += amount
        return fail

    def unload(self, src: str, amount: int) -> str:
        if amount < 1:
            return "INVALID_ARGUMENT"
        fail = self._debit_check(src, amount, False)
        if not fail:
            self.w(src).balance -= amount
            self.reserves[self.w(src).org] += amount
        return fail

    def issue(self, sender: str, org: str, amount: int, redeem: bool) -> str:
        if sender != "pboc-admin":
            return "NOT_AUTHORIZED"
        if amount < 1:
            return "INVALID_ARGUMENT"
        if redeem:
            if amount > self.reserves[org]:
                return "INSUFFICIENT_RESERVE"
            self.reserves[org] -= amount
            self.redeemed += amount
        else:
            self.reserves[org] += amount
            self.issued += amount
        return ""

    def create_escrow(self, eid: str, src: str, dst: str, amount: int) -> str:
        """Created by the payer wallet's holder, with condition "payer"."""
        if amount < 1 or src == dst:
            return "INVALID_ARGUMENT"
        if eid in self.escrows:
            return "ESCROW_EXISTS"
        fail = self._debit_check(src, amount, True)
        if not fail:
            self._spend(src, amount)
            self.escrows[eid] = (src, dst, amount, "open")
        return fail

    def release(self, eid: str) -> str:
        if eid not in self.escrows:
            return "UNKNOWN_ESCROW"
        src, dst, amount, status = self.escrows[eid]
        if status != "open":
            return "ESCROW_CLOSED"
        fail = self._credit_check(dst, amount)
        if not fail:
            self.w(dst).balance += amount
            self.escrows[eid] = (src, dst, amount, "released")
        return fail

    def freeze(self, wallet_id: str, on: bool) -> str:
        w = self.w(wallet_id)
        if on == w.frozen:
            return "WALLET_FROZEN" if on else "WALLET_NOT_FROZEN"
        w.frozen = on
        return ""


_PBASE: list[tuple[Consortium, ChainState, CommitCertificate | None, dict[bytes, int]]] = []


def _pbase() -> tuple[Consortium, ChainState, CommitCertificate | None, dict[bytes, int]]:
    if not _PBASE:
        c, d = cash_world()
        lim = SUB[2]
        assert lim.balance_cap and lim.per_payment and lim.daily
        commit_ok(
            d,
            [
                sub_wallet_tx(
                    c,
                    "inv-b",
                    SUB[0],
                    SUB[1],
                    "inv-b",
                    cap=lim.balance_cap,
                    per_payment=lim.per_payment,
                    daily=lim.daily,
                )
            ],
        )
        commit_ok(
            d,
            [load_tx(c, OPERATOR[P_ORG[wid]], wid, amount) for wid, amount in PRELOAD.items()],
        )
        _PBASE.append((c, d.state, d.last_cert, dict(c.nonces)))
    return _PBASE[0]


def _model() -> CashModel:
    wallets = {
        wid: WalletModel(owner, org, DEFAULT_LIMITS[cat])
        for wid, (owner, org, cat) in P_WALLETS.items()
    }
    wallets[SUB[0]] = WalletModel("inv-b", "bank-bocom", SUB[2], parent=SUB[1])
    reserves = {
        org: RESERVE - sum(a for w, a in PRELOAD.items() if P_ORG[w] == org) for org in ORGS
    }
    for wid, amount in PRELOAD.items():
        wallets[wid].balance = amount
    return CashModel(wallets, reserves, issued=2 * RESERVE)


wallet_st = st.sampled_from(ALL_WALLETS)
# Small amounts, the limits' boundaries (W-K 100,000 / 150,000 / 300,000; category 4 200,000 /
# 500,000 / 1,000,000; category 2 5,000,000 / 10,000,000) and large ones.
BOUNDARIES = [
    n + delta
    for n in (100_000, 150_000, 200_000, 300_000, 500_000, 1_000_000, 5_000_000)
    for delta in (-1, 0, 1)
]
amount_st = st.one_of(
    st.integers(min_value=-1, max_value=250_000),
    st.sampled_from(BOUNDARIES),
    st.sampled_from(BOUNDARIES),
    st.integers(min_value=0, max_value=6_000_000),
)
holder_st = st.sampled_from(["owner", "owner", "owner", "other"])
pay_st = st.tuples(st.just("pay"), holder_st, wallet_st, wallet_st, amount_st)
# A spree: the same payment three times in a row (reaches the daily limits).
spree_st = st.tuples(st.just("spree"), holder_st, wallet_st, wallet_st, amount_st)
p_op_st = st.one_of(
    pay_st,
    pay_st,
    spree_st,
    st.tuples(st.just("load"), wallet_st, amount_st),
    st.tuples(st.just("unload"), wallet_st, amount_st),
    st.tuples(
        st.just("issue"),
        st.sampled_from(["pboc-admin", "pboc-admin", "ccb-admin"]),
        st.sampled_from(ORGS),
        st.booleans(),
        st.one_of(
            st.integers(min_value=0, max_value=RESERVE),
            st.sampled_from([RESERVE - 1, RESERVE, RESERVE + 1]),
        ),
    ),
    st.tuples(st.just("escrow"), st.integers(0, 2), wallet_st, wallet_st, amount_st),
    st.tuples(st.just("release"), st.integers(0, 2)),
    st.tuples(st.just("freeze"), wallet_st, st.booleans()),
)
block_st = st.tuples(st.booleans(), st.lists(p_op_st, max_size=8))  # (next CST day?, ops)


def _run_blocks(blocks: list[tuple[bool, list[Any]]]) -> None:
    c, state, cert, nonces = _pbase()
    c.nonces = dict(nonces)
    d = Driver(c)
    d.state, d.last_cert = state, cert
    model = _model()
    t = next_block_time(d)
    for next_day, ops in blocks:
        if next_day:
            t = date_start_ms(cst_date(t)) + DAY_MS + 1  # just after the next midnight
        model.today = cst_date(t)
        txs: list[Transaction] = []
        expected: list[str] = []
        spread = [
            ("pay", *op[1:]) if op[0] == "spree" else op
            for op in ops
            for _ in range(3 if op[0] == "spree" else 1)
        ]
        for op in spread:
            kind = op[0]
            if kind == "pay":
                _, holder, src, dst, amount = op
                who = model.w(src).owner if holder == "owner" else "inv-c"
                txs.append(pay_tx(c, who, src, dst, amount))
                expected.append(model.pay(who, src, dst, amount))
            elif kind == "load":
                _, dst, amount = op
                txs.append(load_tx(c, OPERATOR[model.w(dst).org], dst, amount))
                expected.append(model.load(dst, amount))
            elif kind == "unload":
                _, src, amount = op
                txs.append(unload_tx(c, model.w(src).owner, src, amount))
                expected.append(model.unload(src, amount))
            elif kind == "issue":
                _, who, org, redeem, amount = op
                method = "redeem" if redeem else "issue"
                args = {"operator_org": org, "amount": amount, "reserve_reference": "p"}
                txs.append(c.tx(who, "ecny", method, args))
                expected.append(model.issue(who, org, amount, redeem))
            elif kind == "escrow":
                _, n, src, dst, amount = op
                eid = f"E-{n}"
                txs.append(
                    escrow_tx(
                        c, model.w(src).owner, eid, src, dst, amount, expires_at_ms=t + 30 * DAY_MS
                    )
                )
                expected.append(model.create_escrow(eid, src, dst, amount))
            elif kind == "release":
                eid = f"E-{op[1]}"
                payer = model.escrows.get(eid, ("W-A",))[0]
                txs.append(escrow_call(c, model.w(payer).owner, "release_escrow", eid))
                expected.append(model.release(eid))
            else:
                _, wid, on = op
                method = "freeze_wallet" if on else "unfreeze_wallet"
                txs.append(freeze_tx(c, "regulator", wid, method))
                expected.append(model.freeze(wid, on))
        before = ecny_records(d)
        p = commit_at(d, t, txs)
        t = next_block_time(d)
        assert codes(p) == expected
        if not any(code == "" for code in expected):
            assert ecny_records(d) == before  # failed transactions changed nothing
        # The chain agrees with the model; conservation; nothing negative (money_held checks).
        for wid in ALL_WALLETS:
            w, m = wallet(d, wid), model.w(wid)
            assert w.balance == m.balance, wid
            assert bool(w.frozen) == m.frozen, wid
            spent = w.day_spent if w.day == model.today else 0
            assert spent == (m.spent if m.day == model.today else 0), wid
        for org in ORGS:
            assert reserve(d, org).balance == model.reserves[org]
        s = supply(d)
        assert (s.issued, s.redeemed) == (model.issued, model.redeemed)
        reserves, wallets, escrows = money_held(d)
        open_escrows = sum(a for _, _, a, status in model.escrows.values() if status == "open")
        assert escrows == open_escrows
        assert reserves + wallets + escrows == s.issued - s.redeemed


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=st.lists(block_st, min_size=1, max_size=5))
def test_random_operations_match_a_model_and_conserve_supply(
    blocks: list[tuple[bool, list[Any]]],
) -> None:
    _run_blocks(blocks)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=st.lists(block_st, min_size=1, max_size=12))
def test_random_operations_match_a_model_and_conserve_supply_long(
    blocks: list[tuple[bool, list[Any]]],
) -> None:
    _run_blocks(blocks)


# ---------------------------------------------------------------------------------------------
# 8. Controllable anonymity on a real data directory


def test_wallet_identity_never_stored_in_clear(tmp_path: Path) -> None:
    home = tmp_path / "node"
    init_home(home, suite_name="intl", password="pw", scrypt_n=1 << 10)
    vkeys = load_key_dir(home / VALIDATORS_DIR, "pw")
    keys = load_key_dir(home / ACCOUNTS_DIR, "pw")
    people = {
        "wang": {
            "name": "王小明",
            "name_latin": "WANG Xiaoming",
            "id_type": "resident_id",
            "id_number": "310101198807071234",
            "phone": "13912345678",
        },
        "chen": {
            "name": "陈静怡",
            "name_latin": "CHEN Jingyi",
            "id_type": "resident_id",
            "id_number": "44030119950505888X",
            "phone": "13698765432",
        },
    }
    operator_of = {"wang": "ccb-admin", "chen": "bocom-admin"}
    with LocalChain(home, vkeys) as chain:
        suite = chain.suite
        keys.update({n: suite.generate_keypair() for n in people})
        nonces: dict[str, int] = {}

        def tx(who: str, method: str, args: dict[str, Any], module: str = "ecny") -> Transaction:
            n = nonces.get(who, 0)
            nonces[who] = n + 1
            return sign_transaction(
                suite,
                keys[who],
                chain_id=chain.state.chain_id,
                nonce=n,
                module=module,
                method=method,
                args=args,
                sender=suite.address(keys[who].public_key),
            )

        def open_tx(owner: str, wallet_id: str, category: int) -> Transaction:
            operator = operator_of[owner]
            commitment, sealed, _ = seal_identity(
                suite, people[owner], keys[operator].public_key, keys["regulator"].public_key
            )
            args = {
                "wallet_id": wallet_id,
                "owner": suite.address(keys[owner].public_key),
                "kind": "personal",
                "category": category,
                "identity_commitment": commitment,
                "sealed_identity": sealed,
            }
            return tx(operator, "open_wallet", args)

        def issue(org: str) -> Transaction:
            args = {"operator_org": org, "amount": 10_000_000, "reserve_reference": "GREPRR"}
            return tx("pboc-admin", "issue", args)

        def account(name: str, org: str) -> Transaction:
            args = {"public_key": keys[name].public_key, "org_id": org, "roles": ["investor"]}
            return tx("exchange-admin", "register_account", args, module="registry")

        batches = [
            [account("wang", "bank-ccb"), account("chen", "bank-bocom")],
            [issue("bank-ccb"), issue("bank-bocom")],
            [open_tx("wang", "GREPW-1", 2), open_tx("chen", "GREPW-2", 4)],
            [
                tx("ccb-admin", "load", {"wallet_id": "GREPW-1", "amount": 6_000_000}),
                tx("bocom-admin", "load", {"wallet_id": "GREPW-2", "amount": 100_000}),
            ],
            [
                tx(
                    "wang",
                    "pay",
                    {
                        "from_wallet": "GREPW-1",
                        "to_wallet": "GREPW-2",
                        "amount": 50_000,
                        "memo": "grepmemo",
                    },
                ),
                tx(
                    "chen",
                    "pay",
                    {
                        "from_wallet": "GREPW-2",
                        "to_wallet": "GREPW-1",
                        "amount": 20_000,
                        "memo": "",
                    },
                ),
            ],
        ]
        for batch in batches:
            committed = chain.commit(batch)
            assert [r.code for r in committed.receipts] == [""] * len(batch)
        sealed_of = {}
        for owner, wid in (("wang", "GREPW-1"), ("chen", "GREPW-2")):
            raw = chain.state.tree.get(wallet_key(wid))
            assert raw is not None
            sealed_of[owner] = codec.decode_struct(Wallet, raw).sealed_identity
    stored = b"".join(p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file())
    for visible in ("GREPW-1", "GREPW-2", "grepmemo", "GREPRR"):  # the grep works
        assert visible.encode() in stored
    for person in people.values():
        for key, value in person.items():
            if key == "id_type":
                continue
            for encoding in ("utf-8", "utf-16-le", "utf-16-be", "gb18030"):
                assert value.encode(encoding) not in stored, (value, encoding)
    # The opening operator and the regulator open the identity; nobody else can.
    for owner, sealed in sealed_of.items():
        for opener in (operator_of[owner], "regulator"):
            opened, _ = open_identity(suite, keys[opener], sealed)
            assert opened == people[owner]
        other = "bocom-admin" if operator_of[owner] == "ccb-admin" else "ccb-admin"
        for outsider in (other, "broker-a-admin", "pboc-admin", owner):
            with pytest.raises(NotARecipientError):
                open_identity(suite, keys[outsider], sealed)


def test_wallet_events_name_wallets_not_people() -> None:
    c, d = cash_world()
    ident = {"name": "赵六 Zhao Liu", "id_number": "110101197001019999", "phone": "13500001111"}
    p = commit_ok(d, [open_wallet_tx(c, "ccb-admin", "W-Z", "cit-1", category=4, identity=ident)])
    blob = repr([e for r in p.receipts for e in r.events]).encode()
    for value in ident.values():
        assert value.encode() not in blob


def test_open_wallet_validation() -> None:
    c, d = cash_world()
    refused(d, open_wallet_tx(c, "ccb-admin", "W-A", "cit-1", category=4), "WALLET_EXISTS")
    refused(d, open_wallet_tx(c, "inv-a", "W-N", "cit-1", category=4), "NOT_AUTHORIZED")
    for category in (0, 5):
        refused(
            d, open_wallet_tx(c, "ccb-admin", "W-N", "cit-1", category=category), "INVALID_ARGUMENT"
        )
    refused(
        d,
        open_wallet_tx(c, "ccb-admin", "W-N", "cit-1", category=4, kind="joint"),
        "INVALID_ARGUMENT",
    )
    commitment, sealed, _ = seal_identity(
        c.suite,
        {"name": "x"},
        c.accounts["bocom-admin"].public_key,  # not the opening operator
        c.accounts["regulator"].public_key,
    )
    args = {
        "wallet_id": "W-N",
        "owner": c.addr("cit-1"),
        "kind": "personal",
        "category": 4,
        "identity_commitment": commitment,
        "sealed_identity": sealed,
    }
    refused(d, c.tx("ccb-admin", "ecny", "open_wallet", args), "INVALID_IDENTITY")
    args = {**args, "identity_commitment": b"short"}
    refused(d, c.tx("ccb-admin", "ecny", "open_wallet", args), "INVALID_IDENTITY")
    stranger = c.suite.generate_keypair()
    c.accounts["stranger"] = stranger  # a key, but no registry account
    refused(d, open_wallet_tx(c, "ccb-admin", "W-N", "stranger", category=4), "INVALID_ARGUMENT")
    accepted(d, open_wallet_tx(c, "ccb-admin", "W-N", "cit-1", category=4))


def test_removed_operator_keeps_paying_out_and_its_reserve_stays_redeemable() -> None:
    """Governance removes bank-bocom: it can neither receive new e-CNY nor load wallets, but its
    holders still pay and unload, and the central bank still redeems its reserve."""
    c, d = cash_world()
    commit_ok(d, [load_tx(c, "bocom-admin", "W-B", 1_000_000)])
    p = commit_ok(
        d,
        [
            c.tx(
                "exchange-admin",
                "governance",
                "propose_remove_org",
                {"org_id": "bank-bocom", "reason": "licence withdrawn"},
            )
        ],
    )
    (proposal_id,) = {
        e.attributes["proposal_id"] for e in p.receipts[0].events if "proposal_id" in e.attributes
    }
    for voter in voters():
        if voter == "exchange-admin":
            continue
        p = d.commit([c.tx(voter, "governance", "approve", {"proposal_id": proposal_id})])
        if any(e.kind == "org_removed" for r in p.receipts for e in r.events):
            break
    else:
        pytest.fail("bank-bocom was never removed")
    refused(d, issue_tx(c, "bank-bocom", 1), "NOT_AN_OPERATOR")
    refused(d, load_tx(c, "bocom-admin", "W-B", 1), "ORGANIZATION_INACTIVE")
    accepted(d, pay_tx(c, "inv-b", "W-B", "W-A", 400_000))
    accepted(d, unload_tx(c, "inv-b", "W-B", 600_000))
    left = reserve(d, "bank-bocom").balance
    assert left == RESERVE - 400_000
    accepted(d, issue_tx(c, "bank-bocom", left, "redeem"))
    assert reserve(d, "bank-bocom").balance == 0
    refused(d, issue_tx(c, "broker-a", 1, "redeem"), "NOT_AN_OPERATOR")  # never a bank
    assert_conserved(d)
