"""Enforcement: pledges, judicial freezes with waiting freezes, expiry, forced transfers."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from consortia.execution.apply import Proposal
from consortia.execution.consortium import DEFAULT_GENESIS_TIME_MS
from consortia.execution.state import ChainState
from consortia.ledger.types import CommitCertificate, Transaction
from consortia.modules.enforcement import (
    Freeze,
    FreezeList,
    Pledge,
    freeze_key,
    holding_freezes_key,
    pledge_key,
)
from consortia.modules.investors import SecuritiesAccount, account_key
from consortia.modules.securities import Holding, holding_key
from tests.chainkit import Consortium, Driver
from tests.test_investors import codes, commit_ok, read
from tests.test_securities import (
    DAY_MS,
    advance_to,
    balance,
    issue_tx,
    listed,
    security,
    transfer_tx,
    world,
)

FAR = DEFAULT_GENESIS_TIME_MS + 365 * DAY_MS
HOLDERS = ("SA-A", "SA-B", "SA-C", "SA-D")
OWNER = {"SA-A": "inv-a", "SA-B": "inv-b", "SA-C": "inv-c", "SA-D": "inv-d"}
BROKER = {
    "SA-A": "broker-a-admin",
    "SA-B": "broker-b-admin",
    "SA-C": "broker-a-admin",
    "SA-D": "broker-a-admin",
}


def pledge_tx(
    c: Consortium,
    pledge_id: str,
    account: str,
    amount: int,
    *,
    who: str | None = None,
    pledgee_org: str = "bank-ccb",
    pledgee_address: bytes = b"",
    code: str = "EQ1",
) -> Transaction:
    return c.tx(
        who or BROKER[account],
        "enforcement",
        "pledge",
        {
            "pledge_id": pledge_id,
            "code": code,
            "account_id": account,
            "amount": amount,
            "pledgee_address": pledgee_address,
            "pledgee_org": "" if pledgee_address else pledgee_org,
            "reference": f"loan contract {pledge_id}",
        },
    )


def release_tx(c: Consortium, pledge_id: str, who: str = "ccb-admin") -> Transaction:
    args = {"pledge_id": pledge_id, "reference": f"repaid {pledge_id}"}
    return c.tx(who, "enforcement", "release", args)


def freeze_tx(
    c: Consortium,
    freeze_id: str,
    account: str,
    amount: int,
    *,
    code: str = "EQ1",
    expires: int = FAR,
    who: str = "regulator",
) -> Transaction:
    return c.tx(
        who,
        "enforcement",
        "freeze",
        {
            "freeze_id": freeze_id,
            "code": code,
            "account_id": account,
            "amount": amount,
            "reference": f"(2026) court ruling {freeze_id}",
            "expires_at_ms": expires,
        },
    )


def unfreeze_tx(c: Consortium, freeze_id: str, who: str = "regulator") -> Transaction:
    args = {"freeze_id": freeze_id, "reference": f"lift order {freeze_id}"}
    return c.tx(who, "enforcement", "unfreeze", args)


def forced_tx(c: Consortium, freeze_id: str, dst: str, who: str = "regulator") -> Transaction:
    args = {"freeze_id": freeze_id, "to_account": dst, "reference": f"enforce {freeze_id}"}
    return c.tx(who, "enforcement", "forced_transfer", args)


def holding(d: Driver, account: str, code: str = "EQ1") -> Holding:
    h = read(d, holding_key(code, account), Holding)
    return h if h is not None else Holding(code, account, 0, 0, 0, 0, 0)


def freeze_of(d: Driver, freeze_id: str) -> Freeze:
    f = read(d, freeze_key(freeze_id), Freeze)
    assert f is not None
    return f


def state_of(d: Driver, freeze_id: str) -> tuple[str, int]:
    f = freeze_of(d, freeze_id)
    return f.status, f.effective


def events(p: Proposal, module: str = "enforcement") -> list[tuple[str, dict[str, Any]]]:
    return [(e.kind, e.attributes) for r in p.receipts for e in r.events if e.module == module]


def equity_world(amount: int = 100, risk: int = 2) -> tuple[Consortium, Driver]:
    c, d = world()
    listed(c, d, "EQ1", risk_level=risk)
    commit_ok(d, [issue_tx(c, "EQ1", "SA-A", amount)])
    return c, d


def now(d: Driver) -> int:
    """The time of the next block."""
    return d.propose([]).block.header.time_ms


# ---------------------------------------------------------------------------------------------
# Pledges


def test_pledge_and_release() -> None:
    c, d = equity_world()
    p = d.commit(
        [
            pledge_tx(c, "P1", "SA-A", 60),
            pledge_tx(c, "P2", "SA-A", 30, who="broker-b-admin"),  # another broker
            pledge_tx(c, "P2", "SA-A", 30, who="inv-b"),  # not the owner
            pledge_tx(c, "P2", "SA-A", 41, who="inv-a"),  # only 40 free
            pledge_tx(c, "P1", "SA-A", 1),  # duplicate id
            pledge_tx(c, "P2", "SA-A", 1, pledgee_org="nobody"),
            pledge_tx(c, "P2", "SA-A", 10, who="inv-a", pledgee_address=c.addr("ccb-admin")),
            transfer_tx(c, "EQ1", "SA-A", "SA-B", 31),
            transfer_tx(c, "EQ1", "SA-A", "SA-B", 30),
        ]
    )
    assert codes(p) == [
        "",
        "NOT_AUTHORIZED",
        "NOT_AUTHORIZED",
        "INSUFFICIENT_FREE_BALANCE",
        "PLEDGE_EXISTS",
        "UNKNOWN_PLEDGEE",
        "",
        "INSUFFICIENT_FREE_BALANCE",
        "",
    ]
    assert [k for k, _ in events(p)] == ["pledged", "pledged"]
    assert events(p)[0][1]["reference"] == "loan contract P1"
    h = holding(d, "SA-A")
    assert (h.balance, h.pledged, h.free(now(d))) == (70, 70, 0)
    p = d.commit(
        [
            release_tx(c, "P1", who="broker-a-admin"),  # not the pledgee
            release_tx(c, "P1", who="inv-a"),
            release_tx(c, "P1"),  # an account of the pledgee org
            release_tx(c, "P1"),
            release_tx(c, "P9"),
            release_tx(c, "P2", who="exchange-admin"),  # the operator
        ]
    )
    assert codes(p) == [
        "NOT_AUTHORIZED",
        "NOT_AUTHORIZED",
        "",
        "PLEDGE_NOT_ACTIVE",
        "UNKNOWN_PLEDGE",
        "",
    ]
    released = events(p)
    assert [k for k, _ in released] == ["pledge_released", "pledge_released"]
    assert released[0][1]["release_reference"] == "repaid P1"
    pledge = read(d, pledge_key("P1"), Pledge)
    assert pledge is not None and (pledge.status, pledge.released_by) == (
        "released",
        c.addr("ccb-admin"),
    )
    h = holding(d, "SA-A")
    assert (h.balance, h.pledged) == (70, 0)
    commit_ok(d, [transfer_tx(c, "EQ1", "SA-A", "SA-B", 70)])
    assert (balance(d, "EQ1", "SA-A"), balance(d, "EQ1", "SA-B")) == (0, 100)


# ---------------------------------------------------------------------------------------------
# Judicial freezes


def test_three_stacked_freezes_activate_in_queue_order() -> None:
    c, d = equity_world()
    p = commit_ok(
        d,
        [
            freeze_tx(c, "F1", "SA-A", 100),
            freeze_tx(c, "F2", "SA-A", 80),
            freeze_tx(c, "F3", "SA-A", 50),
        ],
    )
    assert [(k, a["freeze_id"], a["status"]) for k, a in events(p)] == [
        ("frozen", "F1", "active"),
        ("frozen", "F2", "waiting"),
        ("frozen", "F3", "waiting"),
    ]
    assert events(p)[1][1]["reference"] == "(2026) court ruling F2"
    assert [state_of(d, f) for f in ("F1", "F2", "F3")] == [
        ("active", 100),
        ("waiting", 0),
        ("waiting", 0),
    ]
    queue = read(d, holding_freezes_key("EQ1", "SA-A"), FreezeList)
    assert queue is not None and queue.ids == ("F1", "F2", "F3")
    assert holding(d, "SA-A").frozen == 100
    p = d.commit([transfer_tx(c, "EQ1", "SA-A", "SA-B", 1)])
    assert codes(p) == ["INSUFFICIENT_FREE_BALANCE"]

    # Lifting F1 frees 100: F2 (first in the queue) takes 80, F3 the remaining 20.
    p = commit_ok(d, [unfreeze_tx(c, "F1")])
    assert [(k, a["freeze_id"], a.get("activated")) for k, a in events(p)] == [
        ("unfrozen", "F1", None),
        ("freeze_activated", "F2", 80),
        ("freeze_activated", "F3", 20),
    ]
    assert events(p)[0][1]["unfreeze_reference"] == "lift order F1"
    assert [state_of(d, f) for f in ("F1", "F2", "F3")] == [
        ("lifted", 100),
        ("active", 80),
        ("partial", 20),
    ]
    assert holding(d, "SA-A").frozen == 100
    # Lifting F2 lets F3 take effect in full; the rest is free again.
    p = commit_ok(d, [unfreeze_tx(c, "F2")])
    assert [(k, a["freeze_id"], a.get("activated")) for k, a in events(p)] == [
        ("unfrozen", "F2", None),
        ("freeze_activated", "F3", 30),
    ]
    assert state_of(d, "F3") == ("active", 50)
    assert holding(d, "SA-A").frozen == 50
    p = d.commit(
        [
            transfer_tx(c, "EQ1", "SA-A", "SA-B", 51),
            transfer_tx(c, "EQ1", "SA-A", "SA-B", 50),
            unfreeze_tx(c, "F2"),
            unfreeze_tx(c, "F9"),
            unfreeze_tx(c, "F3"),
        ]
    )
    assert codes(p) == ["INSUFFICIENT_FREE_BALANCE", "", "FREEZE_NOT_ACTIVE", "UNKNOWN_FREEZE", ""]
    h = holding(d, "SA-A")
    assert (h.balance, h.frozen) == (50, 0)
    assert read(d, holding_freezes_key("EQ1", "SA-A"), FreezeList) is None


def test_freeze_arguments_and_capacity() -> None:
    c, d = equity_world()
    commit_ok(d, [pledge_tx(c, "P1", "SA-A", 30)])
    p = d.commit(
        [
            freeze_tx(c, "F1", "SA-A", 71),  # only 70 are not pledged
            freeze_tx(c, "F1", "SA-A", 0),
            freeze_tx(c, "F1", "SA-A", 10, expires=DEFAULT_GENESIS_TIME_MS),  # in the past
            freeze_tx(c, "F1", "SA-X", 10),
            freeze_tx(c, "F1", "SA-A", 10, code="NOPE"),
            freeze_tx(c, "F1", "SA-A", 5, code=""),  # account freezes have amount 0
            freeze_tx(c, "F1", "SA-A", 70),
            freeze_tx(c, "F1", "SA-A", 70),
        ]
    )
    assert codes(p) == [
        "INSUFFICIENT_FREE_BALANCE",
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "UNKNOWN_ACCOUNT",
        "UNKNOWN_SECURITY",
        "INVALID_ARGUMENT",
        "",
        "FREEZE_EXISTS",
    ]
    # A freeze cannot be pledged away, and a pledge release lets a waiting freeze take effect.
    p = d.commit([pledge_tx(c, "P2", "SA-A", 1), freeze_tx(c, "F2", "SA-A", 20)])
    assert codes(p) == ["INSUFFICIENT_FREE_BALANCE", ""]
    p = commit_ok(d, [release_tx(c, "P1")])
    assert [k for k, _ in events(p)] == ["pledge_released", "freeze_activated"]
    assert state_of(d, "F2") == ("active", 20)
    h = holding(d, "SA-A")
    assert (h.balance, h.pledged, h.frozen, h.free(now(d))) == (100, 0, 90, 10)


def test_expired_freezes_no_longer_count() -> None:
    c, d = equity_world()
    t = now(d)
    expiry = t + DAY_MS
    commit_ok(
        d,
        [
            freeze_tx(c, "F1", "SA-A", 100, expires=expiry),
            freeze_tx(c, "F2", "SA-A", 40, expires=expiry + DAY_MS),
            freeze_tx(c, "F3", "SA-A", 100, expires=expiry),  # expires while still waiting
        ],
    )
    advance_to(d, expiry - 1)
    p = d.commit([transfer_tx(c, "EQ1", "SA-A", "SA-B", 1)])
    assert codes(p) == ["INSUFFICIENT_FREE_BALANCE"]
    advance_to(d, expiry)
    # The transfer settles the holding first: F1 and F3 expire, F2 takes 40 of the 100.
    p = d.commit(
        [
            transfer_tx(c, "EQ1", "SA-A", "SA-B", 61),  # fails: its settlement is discarded too
            unfreeze_tx(c, "F1"),
            transfer_tx(c, "EQ1", "SA-A", "SA-B", 60),
        ]
    )
    assert codes(p) == ["INSUFFICIENT_FREE_BALANCE", "FREEZE_NOT_ACTIVE", ""]
    assert [(k, a["freeze_id"]) for k, a in events(p)] == [
        ("freeze_expired", "F1"),
        ("freeze_expired", "F3"),
        ("freeze_activated", "F2"),
    ]
    assert [state_of(d, f)[0] for f in ("F1", "F2", "F3")] == ["expired", "active", "expired"]
    h = holding(d, "SA-A")
    assert (h.balance, h.frozen) == (40, 40)
    # Anyone registered may have expiries processed on demand.
    advance_to(d, expiry + DAY_MS)
    p = commit_ok(
        d, [c.tx("inv-b", "enforcement", "settle", {"account_id": "SA-A", "code": "EQ1"})]
    )
    assert [(k, a["freeze_id"], a["released"]) for k, a in events(p)] == [
        ("freeze_expired", "F2", 40)
    ]
    assert holding(d, "SA-A").frozen == 0


def test_whole_account_freeze_blocks_transfers_and_queues() -> None:
    c, d = equity_world()
    commit_ok(d, [issue_tx(c, "EQ1", "SA-B", 10)])
    t = now(d)
    p = commit_ok(
        d,
        [
            freeze_tx(c, "A1", "SA-A", 0, code=""),
            freeze_tx(c, "A2", "SA-A", 0, code="", expires=t + DAY_MS),
        ],
    )
    assert [(k, a["freeze_id"], a["status"]) for k, a in events(p)] == [
        ("frozen", "A1", "waiting"),
        ("freeze_activated", "A1", "active"),
        ("frozen", "A2", "waiting"),
    ]
    acct = read(d, account_key("SA-A"), SecuritiesAccount)
    assert acct is not None and acct.frozen and acct.freeze_reference == "(2026) court ruling A1"
    p = d.commit(
        [
            transfer_tx(c, "EQ1", "SA-A", "SA-B", 1),
            transfer_tx(c, "EQ1", "SA-B", "SA-A", 1),
            pledge_tx(c, "P1", "SA-A", 1),
            c.tx("broker-a-admin", "investors", "close_account", {"account_id": "SA-A"}),
            freeze_tx(c, "F1", "SA-A", 10),  # an amount freeze still applies to a frozen account
        ]
    )
    assert codes(p) == ["ACCOUNT_FROZEN", "ACCOUNT_FROZEN", "ACCOUNT_FROZEN", "ACCOUNT_FROZEN", ""]
    p = commit_ok(d, [unfreeze_tx(c, "A1")])
    assert [(k, a["freeze_id"]) for k, a in events(p)] == [
        ("unfrozen", "A1"),
        ("freeze_activated", "A2"),
    ]
    acct = read(d, account_key("SA-A"), SecuritiesAccount)
    assert acct is not None and acct.frozen and acct.freeze_reference == "(2026) court ruling A2"
    p = d.commit([transfer_tx(c, "EQ1", "SA-A", "SA-B", 1)])
    assert codes(p) == ["ACCOUNT_FROZEN"]
    # A2 expires: the next transfer processes the expiry and goes through.
    advance_to(d, t + DAY_MS)
    p = commit_ok(d, [transfer_tx(c, "EQ1", "SA-A", "SA-B", 90)])
    assert ("freeze_expired", "A2") in [(k, a["freeze_id"]) for k, a in events(p)]
    acct = read(d, account_key("SA-A"), SecuritiesAccount)
    assert acct is not None and not acct.frozen and acct.freeze_reference == ""
    assert (balance(d, "EQ1", "SA-A"), balance(d, "EQ1", "SA-B")) == (10, 100)


def test_forced_transfer_bypasses_suitability_and_consumes_the_freeze() -> None:
    c, d = equity_world(risk=5)  # SA-C tolerates only C3
    commit_ok(d, [freeze_tx(c, "F1", "SA-A", 70), freeze_tx(c, "F2", "SA-A", 50)])
    assert [state_of(d, f) for f in ("F1", "F2")] == [("active", 70), ("partial", 30)]
    commit_ok(d, [c.tx("exchange-admin", "securities", "halt", {"code": "EQ1", "reason": "h"})])
    p = d.commit(
        [
            forced_tx(c, "F1", "SA-C", who="broker-a-admin"),
            forced_tx(c, "F1", "SA-C", who="exchange-admin"),
            forced_tx(c, "F1", "SA-A"),
            forced_tx(c, "F1", "SA-X"),
            forced_tx(c, "F1", "SA-C"),
            forced_tx(c, "F1", "SA-C"),
        ]
    )
    assert codes(p) == [
        "NOT_AUTHORIZED",
        "NOT_AUTHORIZED",
        "INVALID_ARGUMENT",
        "UNKNOWN_ACCOUNT",
        "",
        "FREEZE_NOT_ACTIVE",
    ]
    (kind, attrs), *_ = events(p)
    assert kind == "forced_transfer"
    assert (attrs["transferred"], attrs["to_account"], attrs["enforcement_reference"]) == (
        70,
        "SA-C",
        "enforce F1",
    )
    assert attrs["reference"] == "(2026) court ruling F1"
    assert state_of(d, "F1") == ("enforced", 70)
    assert (balance(d, "EQ1", "SA-A"), balance(d, "EQ1", "SA-C")) == (30, 70)
    assert sum(balance(d, "EQ1", a) for a in HOLDERS) == security(d, "EQ1").issued == 100
    h = holding(d, "SA-A")
    assert (h.frozen, h.free(now(d))) == (30, 0)
    # F2 keeps its 30 and waits for nothing more; its own forced transfer moves those 30.
    commit_ok(d, [c.tx("exchange-admin", "securities", "resume", {"code": "EQ1", "reason": "r"})])
    p = d.commit([transfer_tx(c, "EQ1", "SA-A", "SA-B", 1), forced_tx(c, "F2", "SA-B")])
    assert codes(p) == ["INSUFFICIENT_FREE_BALANCE", ""]
    assert (balance(d, "EQ1", "SA-A"), balance(d, "EQ1", "SA-B")) == (0, 30)
    assert read(d, holding_freezes_key("EQ1", "SA-A"), FreezeList) is None
    # Ordinary transfers still check suitability.
    p = d.commit([transfer_tx(c, "EQ1", "SA-B", "SA-C", 1)])
    assert codes(p) == ["SUITABILITY_MISMATCH"]


def test_unauthorized_roles_are_refused() -> None:
    c, d = equity_world()
    commit_ok(d, [freeze_tx(c, "F1", "SA-A", 10), pledge_tx(c, "P1", "SA-A", 10)])
    others = ["exchange-admin", "broker-a-admin", "issuer", "inv-a", "ccb-admin", "pboc-admin"]
    txs: list[Transaction] = []
    for i, who in enumerate(others):
        txs += [
            freeze_tx(c, f"X{i}", "SA-A", 1, who=who),
            freeze_tx(c, f"Y{i}", "SA-A", 0, code="", who=who),
            unfreeze_tx(c, "F1", who=who),
            forced_tx(c, "F1", "SA-B", who=who),
        ]
    txs += [
        pledge_tx(c, "P2", "SA-A", 1, who=who) for who in ("regulator", "exchange-admin", "issuer")
    ]
    txs += [release_tx(c, "P1", who=who) for who in ("regulator", "broker-a-admin", "inv-a")]
    p = d.commit(txs)
    assert codes(p) == ["NOT_AUTHORIZED"] * len(txs)
    assert events(p) == []


def test_court_freezes_a_second_freeze_waits_and_the_court_lifts_and_enforces() -> None:
    """The genesis court officer (role ``court``, organization court-sh) is a judicial authority:
    it freezes a holding, its second freeze on the already frozen shares waits, lifting the first
    lets the second take effect, and it enforces that one by forced transfer. Neither a broker nor
    an issuer can do any of it."""
    c, d = equity_world()
    court = "court-officer"
    p = commit_ok(
        d,
        [
            freeze_tx(c, "C1", "SA-A", 100, who=court),
            freeze_tx(c, "C2", "SA-A", 60, who=court),  # nothing free: waits in full
        ],
    )
    assert [(k, a["freeze_id"], a["status"], a["authority"]) for k, a in events(p)] == [
        ("frozen", "C1", "active", c.addr(court)),
        ("frozen", "C2", "waiting", c.addr(court)),
    ]
    assert events(p)[1][1]["reference"] == "(2026) court ruling C2"
    f = freeze_of(d, "C1")
    assert (f.authority, f.authority_org) == (c.addr(court), "court-sh")
    assert [state_of(d, f) for f in ("C1", "C2")] == [("active", 100), ("waiting", 0)]

    # A broker (the account's own) and an issuer (of the frozen security) are refused everything.
    refused = [
        tx
        for who in ("broker-a-admin", "issuer")
        for tx in (
            freeze_tx(c, f"X-{who}", "SA-A", 1, who=who),
            freeze_tx(c, f"Y-{who}", "SA-A", 0, code="", who=who),
            unfreeze_tx(c, "C1", who=who),
            unfreeze_tx(c, "C2", who=who),
            forced_tx(c, "C1", "SA-B", who=who),
        )
    ]
    p = d.commit([*refused, transfer_tx(c, "EQ1", "SA-A", "SA-B", 1)])
    assert codes(p) == ["NOT_AUTHORIZED"] * len(refused) + ["INSUFFICIENT_FREE_BALANCE"]
    assert events(p) == []
    assert [state_of(d, f) for f in ("C1", "C2")] == [("active", 100), ("waiting", 0)]

    # The court lifts C1: the waiting C2 takes effect in full, the rest is free.
    p = commit_ok(d, [unfreeze_tx(c, "C1", who=court)])
    assert [(k, a["freeze_id"], a.get("activated")) for k, a in events(p)] == [
        ("unfrozen", "C1", None),
        ("freeze_activated", "C2", 60),
    ]
    assert events(p)[0][1]["unfreeze_reference"] == "lift order C1"
    assert [state_of(d, f) for f in ("C1", "C2")] == [("lifted", 100), ("active", 60)]
    p = d.commit(
        [transfer_tx(c, "EQ1", "SA-A", "SA-B", 41), transfer_tx(c, "EQ1", "SA-A", "SA-B", 40)]
    )
    assert codes(p) == ["INSUFFICIENT_FREE_BALANCE", ""]

    # Judicial enforcement by the court: C2's 60 shares go to SA-D, consuming the freeze.
    p = d.commit(
        [forced_tx(c, "C2", "SA-D", who="broker-a-admin"), forced_tx(c, "C2", "SA-D", who=court)]
    )
    assert codes(p) == ["NOT_AUTHORIZED", ""]
    (kind, attrs), *_ = events(p)
    assert (kind, attrs["transferred"], attrs["reference"]) == (
        "forced_transfer",
        60,
        "(2026) court ruling C2",
    )
    assert state_of(d, "C2") == ("enforced", 60)
    assert [balance(d, "EQ1", a) for a in HOLDERS] == [0, 40, 0, 60]
    assert read(d, holding_freezes_key("EQ1", "SA-A"), FreezeList) is None


def test_court_and_regulator_lift_each_others_freezes() -> None:
    """Both are freeze authorities (``FREEZE_AUTHORITIES``): either may lift the other's freeze."""
    c, d = equity_world()
    commit_ok(
        d,
        [
            freeze_tx(c, "R1", "SA-A", 10, who="regulator"),
            freeze_tx(c, "C1", "SA-A", 10, who="court-officer"),
        ],
    )
    commit_ok(d, [unfreeze_tx(c, "R1", who="court-officer"), unfreeze_tx(c, "C1")])
    assert [state_of(d, f)[0] for f in ("R1", "C1")] == ["lifted", "lifted"]


def test_court_freezes_and_unfreezes_registry_accounts() -> None:
    """A court freezes any chain account for judicial purposes (not the regulator's); a frozen
    account sends nothing; an issuer cannot lift the freeze, the court can."""
    c, d = equity_world()
    court = "court-officer"

    def acct_tx(who: str, method: str, target: str) -> Transaction:
        args = {"address": c.addr(target), "reason": f"(2026) ruling on {target}"}
        return c.tx(who, "registry", method, args)

    p = d.commit(
        [
            acct_tx(court, "freeze_account", "regulator"),
            acct_tx("issuer", "freeze_account", "inv-a"),
            acct_tx(court, "freeze_account", "inv-a"),
            acct_tx(court, "freeze_account", "broker-a-admin"),
        ]
    )
    assert codes(p) == ["NOT_AUTHORIZED", "NOT_AUTHORIZED", "", ""]
    frozen = [e.attributes for r in p.receipts for e in r.events if e.kind == "account_frozen"]
    assert [(a["address"], a["by"]) for a in frozen] == [
        (c.addr("inv-a"), c.addr(court)),
        (c.addr("broker-a-admin"), c.addr(court)),
    ]
    p = d.commit(
        [
            transfer_tx(c, "EQ1", "SA-A", "SA-B", 1),  # sent by SA-A's frozen broker
            c.tx("inv-a", "enforcement", "settle", {"account_id": "SA-A", "code": "EQ1"}),
            acct_tx("issuer", "unfreeze_account", "inv-a"),
            acct_tx(court, "unfreeze_account", "inv-a"),
            acct_tx(court, "unfreeze_account", "broker-a-admin"),
        ]
    )
    assert codes(p)[2:] == ["NOT_AUTHORIZED", "", ""]
    assert codes(p)[:2] == ["ACCOUNT_FROZEN"] * 2
    commit_ok(d, [transfer_tx(c, "EQ1", "SA-A", "SA-B", 1)])


# ---------------------------------------------------------------------------------------------
# Property: conservation and frozen + pledged + locked <= balance


_BASE: list[tuple[Consortium, ChainState, CommitCertificate | None, dict[bytes, int], int]] = []
ISSUED = 400


def _base() -> tuple[Consortium, ChainState, CommitCertificate | None, dict[bytes, int], int]:
    if not _BASE:
        c, d = world()
        listed(c, d, "EQ1")
        commit_ok(d, [issue_tx(c, "EQ1", a, ISSUED // len(HOLDERS)) for a in HOLDERS])
        _BASE.append((c, d.state, d.last_cert, dict(c.nonces), now(d)))
    return _BASE[0]


holders_st = st.sampled_from(HOLDERS)
small_st = st.integers(min_value=-1, max_value=120)
ref_st = st.integers(min_value=0, max_value=7)
op_st = st.one_of(
    st.tuples(st.just("transfer"), holders_st, holders_st, small_st),
    st.tuples(st.just("pledge"), holders_st, small_st),
    st.tuples(st.just("release"), ref_st),
    st.tuples(st.just("freeze"), holders_st, small_st, st.integers(1, 4)),
    st.tuples(st.just("freeze_account"), holders_st, st.integers(1, 4)),
    st.tuples(st.just("unfreeze"), ref_st),
    st.tuples(st.just("forced"), ref_st, holders_st),
    st.tuples(st.just("forced"), ref_st, holders_st),
    st.tuples(st.just("settle"), holders_st),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=st.lists(st.lists(op_st, max_size=6), min_size=1, max_size=6))
def test_random_enforcement_conserves_and_bounds_encumbrance(blocks: list[list[Any]]) -> None:
    c, state, cert, nonces, start = _base()
    c.nonces = dict(nonces)
    d = Driver(c)
    d.state, d.last_cert = state, cert
    pledges: list[str] = []
    freezes: list[str] = []
    amount_freezes: list[str] = []
    block_ms = 3_600_000  # each block is an hour later, so freezes of 1..4 hours expire
    t = start
    for ops in blocks:
        txs: list[Transaction] = []
        for op in ops:
            kind = op[0]
            if kind == "transfer":
                txs.append(transfer_tx(c, "EQ1", op[1], op[2], op[3]))
            elif kind == "pledge":
                pledges.append(f"P{len(pledges)}")
                txs.append(pledge_tx(c, pledges[-1], op[1], op[2]))
            elif kind == "release" and pledges:
                txs.append(release_tx(c, pledges[op[1] % len(pledges)]))
            elif kind in {"freeze", "freeze_account"}:
                freezes.append(f"F{len(freezes)}")
                if kind == "freeze":
                    amount_freezes.append(freezes[-1])
                    expires = t + op[3] * block_ms
                    txs.append(freeze_tx(c, freezes[-1], op[1], op[2], expires=expires))
                else:
                    expires = t + op[2] * block_ms
                    txs.append(freeze_tx(c, freezes[-1], op[1], 0, code="", expires=expires))
            elif kind == "unfreeze" and freezes:
                txs.append(unfreeze_tx(c, freezes[op[1] % len(freezes)]))
            elif kind == "forced" and amount_freezes:
                txs.append(forced_tx(c, amount_freezes[op[1] % len(amount_freezes)], op[2]))
            elif kind == "settle":
                args = {"account_id": op[1], "code": "EQ1"}
                txs.append(c.tx("inv-a", "enforcement", "settle", args))
        p = d.propose(txs)
        for tx, receipt in zip(txs, p.receipts, strict=True):
            event(f"{tx.method}: {receipt.code or 'ok'}")
        d.state = p.state
        t = p.block.header.time_ms + block_ms
        d.last_cert = c.certify(p.block, time_ms=t)
        _check_invariants(d, pledges, freezes, p.block.header.time_ms)


def _check_invariants(d: Driver, pledges: list[str], freezes: list[str], time_ms: int) -> None:
    held = {a: holding(d, a) for a in HOLDERS}
    assert sum(h.balance for h in held.values()) == security(d, "EQ1").issued == ISSUED
    pledged = dict.fromkeys(HOLDERS, 0)
    for pid in pledges:
        pledge = read(d, pledge_key(pid), Pledge)
        if pledge is not None and pledge.status == "active":
            pledged[pledge.account_id] += pledge.amount
    frozen = dict.fromkeys(HOLDERS, 0)
    account_active = dict.fromkeys(HOLDERS, 0)
    for fid in freezes:
        f = read(d, freeze_key(fid), Freeze)
        if f is None:
            continue
        assert 0 <= f.effective <= max(f.amount, 1)
        if f.status in {"active", "partial", "waiting"}:
            if f.scope == "amount":
                frozen[f.account_id] += f.effective
            else:
                account_active[f.account_id] += f.status == "active"
    for a, h in held.items():
        assert h.pledged == pledged[a]
        assert h.frozen == frozen[a]
        assert h.frozen + h.pledged + h.effective_locked(time_ms) <= h.balance
        assert account_active[a] <= 1
        acct = read(d, account_key(a), SecuritiesAccount)
        assert acct is not None and acct.frozen == (account_active[a] == 1)
