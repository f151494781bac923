"""Test helpers for e-CNY and everything paid in it: a world with two operators and wallets.

``cash_world()`` extends the securities world (investors INV-A..D with accounts SA-A..SA-D, broker
a/b, an issuer) with: e-CNY issued to both operators (bank-ccb, bank-bocom); a category-2 wallet per
investor (W-A..W-D, at alternating operators), citizens ``cit-1`` (category 4 at ccb) and
``cit-2`` (category 2 at bocom) with wallets W-CIT1 / W-CIT2; and corporate category-1 wallets for
the issuer (W-ISSUER), the fund's custodian (W-FUND, held by bank-ccb's ``ccb-custodian`` for the
fund manager's products) and the insurer (W-INSURER).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from consortia import codec
from consortia.execution.apply import Proposal
from consortia.ledger.types import Transaction, bft_time_ms
from consortia.modules.ecny import (
    SUPPLY_KEY,
    Escrow,
    Reserve,
    Supply,
    Wallet,
    escrow_key,
    reserve_key,
    wallet_key,
)
from consortia.modules.investors import seal_identity
from consortia.modules.registry import account_key
from tests.chainkit import Consortium, Driver, make_consortium
from tests.test_investors import commit_ok, open_account_tx, open_investor_tx, read, register
from tests.test_securities import INVESTORS, _org, world

OPERATOR_OF = {"bank-ccb": "ccb-admin", "bank-bocom": "bocom-admin"}
YUAN = 100  # fen per yuan
RESERVE = 100_000_000 * YUAN  # issued to each operator


def wallet_identity(name: str) -> dict[str, Any]:
    return {
        "name": f"Walletholder {name} 李四",
        "id_type": "resident_id",
        "id_number": f"31010419850612{sum(map(ord, name)) % 10_000:04d}",
        "phone": "13900139000",
    }


def open_wallet_tx(
    c: Consortium,
    operator: str,
    wallet_id: str,
    owner: str,
    *,
    category: int,
    kind: str = "personal",
    identity: dict[str, Any] | None = None,
) -> Transaction:
    """``operator`` (an account name) opens ``wallet_id`` for registry account ``owner``."""
    commitment, sealed, _ = seal_identity(
        c.suite,
        identity or wallet_identity(owner),
        c.accounts[operator].public_key,
        c.accounts["regulator"].public_key,
    )
    return c.tx(
        operator,
        "ecny",
        "open_wallet",
        {
            "wallet_id": wallet_id,
            "owner": c.addr(owner),
            "kind": kind,
            "category": category,
            "identity_commitment": commitment,
            "sealed_identity": sealed,
        },
    )


def issue_tx(c: Consortium, org: str, amount: int, method: str = "issue") -> Transaction:
    args = {"operator_org": org, "amount": amount, "reserve_reference": f"RR-{org}"}
    return c.tx("pboc-admin", "ecny", method, args)


def load_tx(c: Consortium, operator: str, wallet_id: str, amount: int) -> Transaction:
    return c.tx(operator, "ecny", "load", {"wallet_id": wallet_id, "amount": amount})


def pay_tx(c: Consortium, who: str, src: str, dst: str, amount: int, memo: str = "") -> Transaction:
    args = {"from_wallet": src, "to_wallet": dst, "amount": amount, "memo": memo}
    return c.tx(who, "ecny", "pay", args)


def wallet(d: Driver, wallet_id: str) -> Wallet:
    w = read(d, wallet_key(wallet_id), Wallet)
    assert w is not None, wallet_id
    return w


def cash(d: Driver, wallet_id: str) -> int:
    return wallet(d, wallet_id).balance


# Wallets of the cash world: wallet id -> (owner account, operator account, category, kind).
WALLETS: dict[str, tuple[str, str, int, str]] = {
    "W-A": ("inv-a", "ccb-admin", 2, "personal"),
    "W-B": ("inv-b", "bocom-admin", 2, "personal"),
    "W-C": ("inv-c", "ccb-admin", 2, "personal"),
    "W-D": ("inv-d", "bocom-admin", 2, "personal"),
    "W-CIT1": ("cit-1", "ccb-admin", 4, "personal"),
    "W-CIT2": ("cit-2", "bocom-admin", 2, "personal"),
    "W-ISSUER": ("issuer", "ccb-admin", 1, "corporate"),
    "W-FUND": ("ccb-custodian", "ccb-admin", 1, "corporate"),  # fund custody, held by the bank
    "W-INSURER": ("insurer-admin", "bocom-admin", 1, "corporate"),
}


def params_world(suite: str, params: dict[str, Any]) -> tuple[Consortium, Driver]:
    """``test_securities.world`` on a genesis with chain ``params`` (``ecny_cat4_daily_fen``…)."""
    c = make_consortium(suite)
    c.genesis = replace(c.genesis, params=dict(params))
    d = Driver(c)
    commit_ok(d, [c.tx("exchange-admin", "registry", "register_org", _org("issuer-x", "issuer"))])
    commit_ok(
        d,
        [
            register(c, "issuer", "issuer-x", ("issuer",)),
            *(
                register(c, owner, broker[:8], ("investor",))
                for _, owner, broker, _, _ in INVESTORS
            ),
        ],
    )
    commit_ok(
        d,
        [
            tx
            for inv_id, owner, broker, tol, q in INVESTORS
            for tx in (
                open_investor_tx(c, broker, inv_id, owner, tolerance=tol, qualified=q),
                open_account_tx(c, broker, "SA-" + inv_id[-1], inv_id),
            )
        ],
    )
    return c, d


def cash_world(
    suite: str = "intl", params: dict[str, Any] | None = None
) -> tuple[Consortium, Driver]:
    """The cash world; ``params``: genesis chain parameters (e-CNY limits, large-value fen)."""
    c, d = world(suite) if params is None else params_world(suite, params)
    commit_ok(
        d,
        [
            register(c, "cit-1", "bank-ccb", ()),
            register(c, "cit-2", "bank-bocom", ()),
            issue_tx(c, "bank-ccb", RESERVE),
            issue_tx(c, "bank-bocom", RESERVE),
        ],
    )
    commit_ok(
        d,
        [
            open_wallet_tx(c, op, wid, owner, category=cat, kind=kind)
            for wid, (owner, op, cat, kind) in WALLETS.items()
        ],
    )
    return c, d


def supply(d: Driver) -> Supply:
    return read(d, SUPPLY_KEY, Supply) or Supply(0, 0)


def ecny_tx(c: Consortium, who: str, method: str, args: dict[str, Any]) -> Transaction:
    return c.tx(who, "ecny", method, args)


def unload_tx(c: Consortium, who: str, wallet_id: str, amount: int) -> Transaction:
    return c.tx(who, "ecny", "unload", {"wallet_id": wallet_id, "amount": amount})


def freeze_tx(
    c: Consortium, who: str, wallet_id: str, method: str = "freeze_wallet", reference: str = "ref"
) -> Transaction:
    return c.tx(who, "ecny", method, {"wallet_id": wallet_id, "reference": reference})


def escrow_tx(
    c: Consortium,
    who: str,
    escrow_id: str,
    src: str,
    dst: str,
    amount: int,
    *,
    condition: str = "payer",
    release_at_ms: int = 0,
    confirmer: bytes = b"",
    expires_at_ms: int,
    memo: str = "",
) -> Transaction:
    args = {
        "escrow_id": escrow_id,
        "from_wallet": src,
        "to_wallet": dst,
        "amount": amount,
        "condition": condition,
        "release_at_ms": release_at_ms,
        "confirmer": confirmer,
        "expires_at_ms": expires_at_ms,
        "memo": memo,
    }
    return c.tx(who, "ecny", "create_escrow", args)


def escrow_call(c: Consortium, who: str, method: str, escrow_id: str) -> Transaction:
    return c.tx(who, "ecny", method, {"escrow_id": escrow_id})


def sub_wallet_tx(
    c: Consortium,
    who: str,
    wallet_id: str,
    parent: str,
    owner: str,
    *,
    cap: int,
    per_payment: int,
    daily: int,
) -> Transaction:
    args = {
        "wallet_id": wallet_id,
        "parent": parent,
        "owner": c.addr(owner),
        "balance_cap": cap,
        "per_payment_limit": per_payment,
        "daily_limit": daily,
    }
    return c.tx(who, "ecny", "open_sub_wallet", args)


def reserve(d: Driver, org_id: str) -> Reserve:
    return read(d, reserve_key(org_id), Reserve) or Reserve(org_id, 0, 0, 0)


def escrow(d: Driver, escrow_id: str) -> Escrow:
    e = read(d, escrow_key(escrow_id), Escrow)
    assert e is not None, escrow_id
    return e


def ecny_records(d: Driver) -> dict[bytes, bytes]:
    """Every e-CNY record of the current state (supply, reserves, wallets, escrows)."""
    return {k: v for k, v in d.state.tree.items() if k.startswith(b"ecny/")}


def money_held(d: Driver) -> tuple[int, int, int]:
    """(sum of reserves, sum of wallet balances, sum held in open escrows), checking on the way
    that no balance is negative and every parent's ``children_balance`` is its sub-wallets' sum."""
    reserves = wallets = escrows = 0
    children: dict[str, int] = {}
    parents: dict[str, int] = {}
    for key, raw in ecny_records(d).items():
        if key.startswith(b"ecny/reserve/"):
            r = codec.decode_struct(Reserve, raw)
            assert r.balance >= 0
            reserves += r.balance
        elif key.startswith(b"ecny/wallet/"):
            w = codec.decode_struct(Wallet, raw)
            assert w.balance >= 0 and w.children_balance >= 0 and w.day_spent >= 0
            wallets += w.balance
            if w.parent:
                children[w.parent] = children.get(w.parent, 0) + w.balance
            else:
                parents[w.wallet_id] = w.children_balance
        elif key.startswith(b"ecny/escrow/"):
            e = codec.decode_struct(Escrow, raw)
            if e.status == "open":
                escrows += e.amount
    for parent, held in parents.items():
        assert held == children.get(parent, 0), parent
    return reserves, wallets, escrows


def assert_conserved(d: Driver) -> int:
    """Supply = issued − redeemed = reserves + wallets + open escrows; returns the supply."""
    s = supply(d)
    outstanding = s.issued - s.redeemed
    assert outstanding == sum(money_held(d))
    return outstanding


def next_block_time(d: Driver) -> int:
    """The time the Driver's next block will have (BFT time of the last certificate)."""
    if d.last_cert is None:
        return d.state.last_time_ms
    return bft_time_ms(d.state.last_validators, d.last_cert)


def commit_at(
    d: Driver, time_ms: int, txs: list[Transaction], *, next_ms: int | None = None
) -> Proposal:
    """Commit ``txs`` in a block whose time is exactly ``time_ms`` (an empty block first if
    needed); ``next_ms`` fixes the time of the block after it (default: one second later)."""
    if next_block_time(d) != time_ms:
        p = d.propose([])
        d.state = p.state
        d.last_cert = d.c.certify(p.block, time_ms=time_ms)
    p = d.propose(txs)
    assert p.block.header.time_ms == time_ms
    d.state = p.state
    d.last_cert = d.c.certify(p.block, time_ms=next_ms)
    return p


def refused(d: Driver, tx: Transaction, code: str, *, time_ms: int | None = None) -> Proposal:
    """Commit ``tx`` alone; it must fail with ``code`` and write nothing but its sender's nonce."""
    before = ecny_records(d)
    p = d.commit([tx]) if time_ms is None else commit_at(d, time_ms, [tx])
    (receipt,) = p.receipts
    assert receipt.code == code, (receipt.code, receipt.message)
    assert set(p.writes) == {account_key(tx.sender)}, sorted(p.writes)
    assert ecny_records(d) == before
    return p


def accepted(d: Driver, tx: Transaction, *, time_ms: int | None = None) -> Proposal:
    p = commit_ok(d, [tx]) if time_ms is None else commit_at(d, time_ms, [tx])
    assert [r.code for r in p.receipts] == [""], p.receipts[0].message
    return p
