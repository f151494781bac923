"""Investors (user registration): sealed identities, opening by brokers, reassessment, accounts."""

from __future__ import annotations

from typing import Any, TypeVar

import pytest

from consortia import codec
from consortia.crypto import KeyPair, NotARecipientError, get_suite
from consortia.execution.apply import Proposal
from consortia.ledger.types import Transaction, TxStatus
from consortia.modules.investors import (
    Investor,
    SecuritiesAccount,
    account_key,
    by_address_key,
    identity_commitment,
    investor_key,
    open_identity,
    seal_identity,
)
from tests.chainkit import Consortium, Driver, make_consortium

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Helpers shared with test_securities


def register(c: Consortium, name: str, org_id: str, roles: tuple[str, ...]) -> Transaction:
    """A consortium admin opens a registry account ``name`` (a fresh key) in ``org_id``."""
    kp = c.suite.generate_keypair()
    c.accounts[name] = kp
    return c.tx(
        "exchange-admin",
        "registry",
        "register_account",
        {"public_key": kp.public_key, "org_id": org_id, "roles": list(roles)},
    )


def identity_of(investor_id: str) -> dict[str, Any]:
    return {
        "name": f"Testperson {investor_id} 张三",
        "id_type": "resident_id",
        "id_number": f"11010119900307{sum(map(ord, investor_id)) % 10_000:04d}",
        "phone": "13800138000",
    }


def open_investor_tx(
    c: Consortium,
    broker: str,
    investor_id: str,
    owner: str,
    *,
    tolerance: int = 5,
    qualified: bool = True,
    kind: str = "individual",
    identity: dict[str, Any] | None = None,
    recipients: tuple[str, str] | None = None,
) -> Transaction:
    """``broker`` opens ``investor_id`` for registry account ``owner`` with a sealed identity."""
    first, second = recipients or (broker, "regulator")
    commitment, sealed, _ = seal_identity(
        c.suite,
        identity or identity_of(investor_id),
        c.accounts[first].public_key,
        c.accounts[second].public_key,
    )
    return c.tx(
        broker,
        "investors",
        "open_investor",
        {
            "investor_id": investor_id,
            "kind": kind,
            "kyc_level": 2,
            "risk_tolerance": tolerance,
            "qualified": qualified,
            "address": c.addr(owner),
            "identity_commitment": commitment,
            "sealed_identity": sealed,
        },
    )


def open_account_tx(c: Consortium, broker: str, account_id: str, investor_id: str) -> Transaction:
    return c.tx(
        broker,
        "investors",
        "open_account",
        {"account_id": account_id, "investor_id": investor_id},
    )


def codes(p: Proposal) -> list[str]:
    return [r.code for r in p.receipts]


def commit_ok(d: Driver, txs: list[Transaction]) -> Proposal:
    p = d.commit(txs)
    failed = [(r.code, r.message) for r in p.receipts if r.status != TxStatus.OK]
    assert not failed, failed
    return p


def read(d: Driver, key: bytes, cls: type[T]) -> T | None:
    raw = d.state.tree.get(key)
    return None if raw is None else codec.decode_struct(cls, raw)


# ---------------------------------------------------------------------------------------------
# Client-side sealing


@pytest.mark.parametrize("suite_name", ["intl", "gm"])
def test_sealed_identity_opens_for_broker_and_regulator_only(suite_name: str) -> None:
    suite = get_suite(suite_name)
    broker, regulator, outsider = (suite.generate_keypair() for _ in range(3))
    identity = {"name": "李四 Li Si", "id_number": "440301198001011234"}
    commitment, sealed, salt = seal_identity(
        suite, identity, broker.public_key, regulator.public_key
    )
    assert len(commitment) == 32 and len(salt) == 32
    assert commitment == suite.hash(salt + codec.encode(identity))
    for kp in (broker, regulator):
        opened, opened_salt = open_identity(suite, kp, sealed)
        assert opened == identity and opened_salt == salt
        assert identity_commitment(suite, opened_salt, opened) == commitment
    with pytest.raises(NotARecipientError):
        open_identity(suite, outsider, sealed)
    assert b"Li Si" not in sealed and b"440301198001011234" not in sealed
    # A fresh salt every time: the same identity never gives the same commitment twice.
    again, _, _ = seal_identity(suite, identity, broker.public_key, regulator.public_key)
    assert again != commitment


# ---------------------------------------------------------------------------------------------
# On chain


def test_open_reassess_and_accounts_end_to_end() -> None:
    c = make_consortium("intl")
    d = Driver(c)
    commit_ok(d, [register(c, "alice", "broker-a", ("investor",))])
    p = commit_ok(
        d,
        [
            open_investor_tx(c, "broker-a-admin", "INV-1", "alice", tolerance=3, qualified=False),
            open_account_tx(c, "broker-a-admin", "SA-1", "INV-1"),
            open_account_tx(c, "broker-a-admin", "SA-2", "INV-1"),
        ],
    )
    opened = p.receipts[0].events[0]
    assert opened.kind == "investor_opened" and opened.attributes["investor_id"] == "INV-1"
    inv = read(d, investor_key("INV-1"), Investor)
    assert inv is not None
    assert (inv.risk_tolerance, inv.qualified, inv.org_id) == (3, False, "broker-a")
    assert inv.address == c.addr("alice") and inv.opened_by == c.addr("broker-a-admin")
    assert d.state.tree.get(by_address_key(c.addr("alice"))) is not None
    # The stored envelope opens for the regulator and gives back the committed record.
    identity, salt = open_identity(c.suite, c.accounts["regulator"], inv.sealed_identity)
    assert identity == identity_of("INV-1")
    assert identity_commitment(c.suite, salt, identity) == inv.identity_commitment

    commit_ok(
        d,
        [
            c.tx(
                "broker-a-admin",
                "investors",
                "reassess",
                {"investor_id": "INV-1", "kyc_level": 3, "risk_tolerance": 5, "qualified": True},
            ),
            c.tx("broker-a-admin", "investors", "close_account", {"account_id": "SA-2"}),
        ],
    )
    inv = read(d, investor_key("INV-1"), Investor)
    assert inv is not None
    assert (inv.kyc_level, inv.risk_tolerance, inv.qualified) == (3, 5, True)
    assert inv.assessed_height == d.state.height
    closed = read(d, account_key("SA-2"), SecuritiesAccount)
    assert closed is not None and closed.status == "closed"
    p = d.commit(
        [
            c.tx("broker-a-admin", "investors", "close_account", {"account_id": "SA-2"}),
            open_account_tx(c, "broker-a-admin", "SA-1", "INV-1"),
        ]
    )
    assert codes(p) == ["ACCOUNT_CLOSED", "ACCOUNT_EXISTS"]


def test_opening_rules() -> None:
    c = make_consortium("intl")
    d = Driver(c)
    commit_ok(
        d,
        [
            register(c, "alice", "broker-a", ("investor",)),
            register(c, "bob", "broker-b", ("investor",)),
            register(c, "clerk", "broker-a", ("custodian",)),
        ],
    )
    commit_ok(d, [open_investor_tx(c, "broker-a-admin", "INV-1", "alice")])
    before = d.state.state_root
    p = d.commit(
        [
            # Not a broker.
            open_investor_tx(c, "exchange-admin", "INV-2", "bob"),
            # A broker of another organization than the investor account's.
            open_investor_tx(c, "broker-a-admin", "INV-2", "bob"),
            # Not sealed to the regulator (sealed to the broker and an outsider).
            open_investor_tx(
                c, "broker-b-admin", "INV-2", "bob", recipients=("broker-b-admin", "clerk")
            ),
            # Not sealed to the opening broker.
            open_investor_tx(
                c, "broker-b-admin", "INV-2", "bob", recipients=("broker-a-admin", "regulator")
            ),
            # The address is not an investor account.
            open_investor_tx(c, "broker-a-admin", "INV-2", "clerk"),
            # Same id / same address twice.
            open_investor_tx(c, "broker-b-admin", "INV-1", "bob"),
            open_investor_tx(c, "broker-a-admin", "INV-3", "alice"),
            # Out-of-range assessment and kind.
            open_investor_tx(c, "broker-b-admin", "INV-2", "bob", tolerance=6),
            open_investor_tx(c, "broker-b-admin", "INV-2", "bob", kind="robot"),
            # Reassessment and accounts by another broker.
            c.tx(
                "broker-b-admin",
                "investors",
                "reassess",
                {"investor_id": "INV-1", "kyc_level": 1, "risk_tolerance": 1, "qualified": False},
            ),
            open_account_tx(c, "broker-b-admin", "SA-9", "INV-1"),
            open_account_tx(c, "broker-a-admin", "SA-9", "INV-404"),
        ]
    )
    assert codes(p) == [
        "NOT_AUTHORIZED",
        "INVALID_ARGUMENT",
        "INVALID_IDENTITY",
        "INVALID_IDENTITY",
        "INVALID_ARGUMENT",
        "INVESTOR_EXISTS",
        "INVESTOR_EXISTS",
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "NOT_AUTHORIZED",
        "NOT_AUTHORIZED",
        "UNKNOWN_INVESTOR",
    ]
    # Failed transactions change nothing but their senders' nonces.
    assert d.state.state_root != before
    assert read(d, investor_key("INV-2"), Investor) is None
    assert read(d, account_key("SA-9"), SecuritiesAccount) is None


def test_garbage_identity_and_commitment_are_refused() -> None:
    c = make_consortium("gm")
    d = Driver(c)
    commit_ok(d, [register(c, "alice", "broker-a", ("investor",))])
    good = open_investor_tx(c, "broker-a-admin", "INV-1", "alice")
    args = dict(good.args)
    c.nonces[c.addr("broker-a-admin")] -= 1  # ``good`` is never submitted
    bad_commitment = c.tx(
        "broker-a-admin", "investors", "open_investor", {**args, "identity_commitment": b"1" * 31}
    )
    garbage = c.tx(
        "broker-a-admin", "investors", "open_investor", {**args, "sealed_identity": b"\xa0"}
    )
    too_big = c.tx(
        "broker-a-admin", "investors", "open_investor", {**args, "sealed_identity": b"x" * 5000}
    )
    p = d.commit([bad_commitment, garbage, too_big])
    assert codes(p) == ["INVALID_IDENTITY"] * 3


def test_sealing_follows_rotated_keys_of_the_broker_and_the_regulator() -> None:
    """Envelopes are addressed to current keys: after the regulator and the broker rotate their
    keys, an identity sealed to the new keys is accepted and one sealed to an old key is not."""
    c = make_consortium()
    d = Driver(c)
    commit_ok(d, [register(c, "alice", "broker-a", ("investor",))])
    old = {name: c.accounts[name] for name in ("regulator", "broker-a-admin")}
    address = {name: c.addr(name) for name in old}
    new = {name: c.suite.generate_keypair() for name in old}
    commit_ok(
        d,
        [
            c.tx(name, "registry", "rotate_key", {"new_public_key": new[name].public_key})
            for name in old
        ],
    )

    def opening(investor_id: str, broker_key: KeyPair, regulator_key: KeyPair) -> Transaction:
        commitment, sealed, _ = seal_identity(
            c.suite, identity_of(investor_id), broker_key.public_key, regulator_key.public_key
        )
        args = {
            "investor_id": investor_id,
            "kind": "individual",
            "kyc_level": 2,
            "risk_tolerance": 3,
            "qualified": False,
            "address": c.addr("alice"),
            "identity_commitment": commitment,
            "sealed_identity": sealed,
        }
        return c.tx(
            new["broker-a-admin"],
            "investors",
            "open_investor",
            args,
            sender=address["broker-a-admin"],
        )

    p = d.commit(
        [
            opening("INV-1", new["broker-a-admin"], old["regulator"]),
            opening("INV-2", old["broker-a-admin"], new["regulator"]),
            opening("INV-3", new["broker-a-admin"], new["regulator"]),
        ]
    )
    assert codes(p) == ["INVALID_IDENTITY", "INVALID_IDENTITY", ""]
    inv = read(d, investor_key("INV-3"), Investor)
    assert inv is not None
    identity, _ = open_identity(c.suite, new["regulator"], inv.sealed_identity)
    assert identity == identity_of("INV-3")
