"""Governance: validator-set changes by 2/3 of organizations, effective two heights later;
admitting and removing organizations, chain parameters and roles by the same vote."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from consortia import codec
from consortia.execution.apply import apply_block
from consortia.execution.genesis import GenesisError, genesis_state, validate_genesis
from consortia.ledger.types import Transaction, TxStatus
from consortia.modules.governance import THRESHOLD_PARAM, ParamValue, param_key
from consortia.modules.registry import Account, Organization, account_key, org_key
from tests.chainkit import Consortium, Driver, make_consortium
from tests.govkit import approvals_needed, voters, voting_orgs

# The org_admin accounts voting for the default consortium's voting organizations (not the
# regulator's nor a court's), and how many approving organizations two thirds of them takes.
VOTERS = voters()
N_VOTING = len(voting_orgs())
NEED = approvals_needed(N_VOTING)


def others(*excluded: str, n: int) -> list[str]:
    """The first ``n`` voters other than ``excluded``."""
    rest = [v for v in VOTERS if v not in excluded]
    assert len(rest) >= n, "the default consortium has too few voting organizations"
    return rest[:n]


def test_voters_follow_the_genesis_organizations() -> None:
    """The regulator and the court do not vote; every other genesis member does, through its
    org_admin; and two thirds is reached exactly at ``NEED``, not one approval earlier."""
    assert "csrc" not in voting_orgs() and "court-sh" not in voting_orgs()
    assert len(VOTERS) == N_VOTING >= 5
    assert (NEED - 1) * 3 < N_VOTING * 2 <= NEED * 3


def test_add_then_remove_validator_by_two_thirds_of_organizations() -> None:
    c = make_consortium("intl")
    d = Driver(c)
    newcomer = c.suite.generate_keypair()
    new_addr = c.suite.address(newcomer.public_key)
    args = {
        "action": "add_validator",
        "name": "validator-4",
        "public_key": newcomer.public_key,
        "power": 10,
        "reason": "Gamma Securities joins the validator set",
    }
    # The proposer's organization approves by proposing; NEED - 2 more make one short of 2/3.
    *early, last = others("broker-a-admin", n=NEED - 1)
    p = d.commit(
        [
            c.tx("broker-a-admin", "governance", "propose", args),
            *_votes(c, 1, *early),
            c.tx("regulator", "governance", "approve", {"proposal_id": 1}),  # no vote
            c.tx("court-officer", "governance", "approve", {"proposal_id": 1}),  # no vote
            c.tx(early[-1], "governance", "approve", {"proposal_id": 1}),  # twice
        ]
    )
    assert [r.code for r in p.receipts] == [""] * (NEED - 1) + [
        "NOT_AUTHORIZED",
        "NOT_AUTHORIZED",
        "ALREADY_APPROVED",
    ]
    # NEED - 1 of N_VOTING voting organizations: not yet.
    assert "proposal_executed" not in _kinds(p.receipts)
    assert d.state.next_validators.get(new_addr) is None
    p = d.commit(_votes(c, 1, last))
    decided_at = p.block.header.height
    changed = [e for r in p.receipts for e in r.events if e.kind == "validator_set_changed"]
    assert changed and changed[0].attributes["effective_height"] == decided_at + 2
    (executed,) = [e for r in p.receipts for e in r.events if e.kind == "proposal_executed"]
    assert (executed.attributes["approvals"], executed.attributes["voters"]) == (NEED, N_VOTING)
    # Decided in H: H + 1 still has the old set, H + 2 the new one.
    assert d.state.validators.get(new_addr) is None
    assert d.state.next_validators.get(new_addr) is not None
    d.commit([])
    assert d.state.validators.get(new_addr) is not None
    assert d.state.height + 1 == decided_at + 2
    # The newcomer now signs: certify with all five.
    c.validators.append(newcomer)
    d.commit([])
    d.commit([])
    # A replica replaying the same blocks agrees on every set (they are in the state root).
    remove = {**args, "action": "remove_validator", "power": 0, "reason": "leaves"}
    p = d.commit(
        [
            c.tx("exchange-admin", "governance", "propose", remove),
            *_votes(c, 2, *others("exchange-admin", n=NEED - 1)),
        ]
    )
    assert all(r.status == TxStatus.OK for r in p.receipts)
    d.commit([])
    assert d.state.validators.get(new_addr) is None


def test_replay_agrees_on_validator_sets() -> None:
    c = make_consortium("intl")
    d = Driver(c)
    newcomer = c.suite.generate_keypair()
    blocks = []
    args = {
        "action": "add_validator",
        "name": "v4",
        "public_key": newcomer.public_key,
        "power": 5,
        "reason": "join",
    }
    txs = [
        c.tx("broker-a-admin", "governance", "propose", args),
        *_votes(c, 1, *others("broker-a-admin", n=NEED - 1)),
    ]
    blocks.append(d.commit(txs).block)
    for _ in range(3):
        blocks.append(d.commit([]).block)
    state = genesis_state(c.genesis)
    for blk in blocks:
        state, _ = apply_block(state, blk)
    assert state.state_root == d.state.state_root
    assert state.validators == d.state.validators
    assert len(state.validators.validators) == 5


def test_invalid_proposals_are_refused() -> None:
    c = make_consortium("intl")
    d = Driver(c)
    existing = c.validators[0].public_key
    base = {"name": "x", "power": 10, "reason": "r"}
    p = d.commit(
        [
            c.tx(
                "broker-a-admin",
                "governance",
                "propose",
                {**base, "action": "add_validator", "public_key": existing},
            ),
            c.tx(
                "broker-a-admin",
                "governance",
                "propose",
                {**base, "action": "explode", "public_key": existing},
            ),
            c.tx(
                "broker-a-admin",
                "governance",
                "propose",
                {**base, "action": "add_validator", "public_key": b"\x01" * 5},
            ),
            c.tx(
                "regulator",
                "governance",
                "propose",
                {**base, "action": "remove_validator", "public_key": existing},
            ),
            c.tx("broker-a-admin", "governance", "approve", {"proposal_id": 99}),
        ]
    )
    assert [r.code for r in p.receipts] == [
        "INVALID_PROPOSAL",
        "INVALID_PROPOSAL",
        "INVALID_PROPOSAL",
        "NOT_AUTHORIZED",
        "UNKNOWN_PROPOSAL",
    ]


# ---------------------------------------------------------------------------------------------
# Organizations, parameters and roles


def _account(d: Driver, address: bytes) -> Account:
    raw = d.state.tree.get(account_key(address))
    assert raw is not None
    return codec.decode_struct(Account, raw)


def _org(d: Driver, org_id: str) -> Organization:
    raw = d.state.tree.get(org_key(org_id))
    assert raw is not None
    return codec.decode_struct(Organization, raw)


def _votes(c: Consortium, proposal_id: int, *who: str) -> list[Transaction]:
    return [c.tx(w, "governance", "approve", {"proposal_id": proposal_id}) for w in who]


def _kinds(receipts: Any) -> list[str]:
    return [e.kind for r in receipts for e in r.events]


def test_admit_org_by_two_thirds_then_its_admin_acts() -> None:
    c = make_consortium("intl")
    d = Driver(c)
    admit = {"org_id": "broker-c", "name": "Gamma Securities", "kind": "broker", "reason": "joins"}
    *early, last, extra = others("broker-a-admin", n=NEED)
    p = d.commit(
        [
            c.tx("broker-a-admin", "governance", "propose_admit_org", admit),
            *_votes(c, 1, *early),
            c.tx(
                "broker-a-admin",
                "governance",
                "propose_admit_org",
                {**admit, "org_id": "x2", "kind": "regulator"},
            ),
            c.tx(
                "broker-a-admin", "governance", "propose_admit_org", {**admit, "org_id": "exchange"}
            ),
        ]
    )
    assert [r.code for r in p.receipts] == [""] * (NEED - 1) + [
        "NOT_AUTHORIZED",
        "ORGANIZATION_EXISTS",
    ]
    assert d.state.tree.get(org_key("broker-c")) is None  # NEED - 1 of N_VOTING: not yet
    p = d.commit(_votes(c, 1, last, extra))
    assert [r.code for r in p.receipts] == ["", "PROPOSAL_CLOSED"]
    assert {"org_registered", "org_admitted", "proposal_executed"} <= set(_kinds(p.receipts))
    assert _org(d, "broker-c") == Organization("broker-c", "Gamma Securities", "broker", True)

    # The consortium admin opens the new member's admin account; it then acts and votes.
    c.accounts["broker-c-admin"] = newcomer = c.suite.generate_keypair()
    investor = c.suite.generate_keypair()
    reg = {
        "public_key": newcomer.public_key,
        "org_id": "broker-c",
        "roles": ["broker", "org_admin"],
    }
    p = d.commit(
        [
            c.tx("exchange-admin", "registry", "register_account", reg),
            c.tx(
                "broker-c-admin",
                "registry",
                "register_account",
                {"public_key": investor.public_key, "org_id": "broker-c", "roles": ["investor"]},
            ),
            c.tx(
                "broker-c-admin",
                "governance",
                "propose_set_param",
                {"name": THRESHOLD_PARAM, "value": 5001, "reason": "simple majority"},
            ),
        ]
    )
    assert [r.code for r in p.receipts] == ["", "", ""]
    # N_VOTING + 1 voting organizations now: one approval short of their two thirds does not
    # pass, reaching it does (the proposer's organization counts as approving).
    need = approvals_needed(N_VOTING + 1)
    *early, last = others(n=need - 1)
    p = d.commit(_votes(c, 2, *early))
    assert "proposal_executed" not in _kinds(p.receipts)
    p = d.commit(_votes(c, 2, last))
    (executed,) = [e for r in p.receipts for e in r.events if e.kind == "proposal_executed"]
    assert (executed.attributes["approvals"], executed.attributes["voters"]) == (
        need,
        N_VOTING + 1,
    )


def test_remove_org_refuses_its_accounts() -> None:
    c = make_consortium("intl")
    d = Driver(c)
    remove = {"org_id": "broker-b", "reason": "licence withdrawn"}
    p = d.commit(
        [
            c.tx("broker-a-admin", "governance", "propose_remove_org", remove),
            *_votes(c, 1, *others("broker-a-admin", "broker-b-admin", n=NEED - 1)),
            c.tx(
                "broker-a-admin", "governance", "propose_remove_org", {**remove, "org_id": "csrc"}
            ),
            c.tx(
                "broker-a-admin", "governance", "propose_remove_org", {**remove, "org_id": "nope"}
            ),
        ]
    )
    assert [r.code for r in p.receipts] == [""] * NEED + [
        "NOT_AUTHORIZED",
        "UNKNOWN_ORGANIZATION",
    ]
    assert "org_removed" in _kinds(p.receipts)
    assert not _org(d, "broker-b").active
    newcomer = c.suite.generate_keypair()
    p = d.commit(
        [
            c.tx("broker-b-admin", "governance", "approve", {"proposal_id": 1}),
            c.tx(
                "broker-b-admin",
                "registry",
                "register_account",
                {"public_key": newcomer.public_key, "org_id": "broker-b", "roles": ["investor"]},
            ),
            c.tx(
                "exchange-admin",
                "registry",
                "register_account",
                {"public_key": newcomer.public_key, "org_id": "broker-b", "roles": ["investor"]},
            ),
            c.tx("broker-a-admin", "governance", "propose_remove_org", remove),
        ]
    )
    assert [r.code for r in p.receipts] == [
        "ORGANIZATION_INACTIVE",
        "ORGANIZATION_INACTIVE",
        "UNKNOWN_ORGANIZATION",
        "INVALID_PROPOSAL",  # already inactive
    ]
    assert all(r.status == TxStatus.FAILED for r in p.receipts)


def test_set_param_changes_the_threshold() -> None:
    c = make_consortium("intl")
    d = Driver(c)
    target = c.addr("ccb-admin")
    appoint = {"address": target, "role": "custodian", "reason": "custody licence"}
    bad = {"name": THRESHOLD_PARAM, "reason": "r"}
    *early, last = others("broker-a-admin", n=NEED - 1)
    p = d.commit(
        [
            c.tx("broker-a-admin", "governance", "propose_set_param", {**bad, "value": 5000}),
            c.tx("broker-a-admin", "governance", "propose_set_param", {**bad, "value": 10001}),
            c.tx(
                "broker-a-admin",
                "governance",
                "propose_set_param",
                {**bad, "name": "x.y", "value": 6000},
            ),
            c.tx("broker-a-admin", "governance", "propose_set_param", {**bad, "value": 5001}),
            *_votes(c, 1, *early),
        ]
    )
    assert [r.code for r in p.receipts] == ["INVALID_PROPOSAL"] * 3 + [""] * (NEED - 1)
    assert d.state.tree.get(param_key(THRESHOLD_PARAM)) is None  # NEED - 1 < 2/3
    p = d.commit(_votes(c, 1, last))
    assert "param_set" in _kinds(p.receipts)
    raw = d.state.tree.get(param_key(THRESHOLD_PARAM))
    assert raw is not None and codec.decode_struct(ParamValue, raw).value == 5001
    # A simple majority now decides, fewer than two thirds.
    majority = approvals_needed(N_VOTING, 5001)
    assert majority < NEED
    *early, last = others("broker-a-admin", n=majority - 1)
    p = d.commit(
        [
            c.tx("broker-a-admin", "governance", "propose_appoint_role", appoint),
            *_votes(c, 2, *early),
        ]
    )
    assert "custodian" not in _account(d, target).roles
    d.commit(_votes(c, 2, last))
    assert "custodian" in _account(d, target).roles


def test_genesis_sets_the_threshold() -> None:
    c = make_consortium("intl")
    c.genesis = replace(c.genesis, params={"governance_threshold_bp": 10_000})
    d = Driver(c)
    appoint = {"address": c.addr("ccb-admin"), "role": "custodian", "reason": "r"}
    assert approvals_needed(N_VOTING, 10_000) == N_VOTING == len(VOTERS)
    *early, last = others("broker-a-admin", n=N_VOTING - 1)
    d.commit(
        [
            c.tx("broker-a-admin", "governance", "propose_appoint_role", appoint),
            *_votes(c, 1, *early),
        ]
    )
    # Every voting organization but one: not unanimous.
    assert "custodian" not in _account(d, c.addr("ccb-admin")).roles
    d.commit(_votes(c, 1, last))
    assert "custodian" in _account(d, c.addr("ccb-admin")).roles
    for bad in (5000, 10_001, "6667", True):
        with pytest.raises(GenesisError):
            validate_genesis(replace(c.genesis, params={"governance_threshold_bp": bad}))


def test_appoint_and_revoke_role() -> None:
    c = make_consortium("intl")
    d = Driver(c)
    target = c.addr("broker-b-admin")
    args = {"address": target, "role": "custodian", "reason": "custody licence"}
    p = d.commit(
        [
            c.tx("broker-a-admin", "governance", "propose_appoint_role", args),
            *_votes(c, 1, *others("broker-a-admin", n=NEED - 1)),
            c.tx(
                "broker-a-admin", "governance", "propose_appoint_role", {**args, "role": "wizard"}
            ),
            c.tx("broker-a-admin", "governance", "propose_revoke_role", {**args, "role": "issuer"}),
        ]
    )
    assert [r.code for r in p.receipts] == [""] * NEED + ["INVALID_ROLE", "INVALID_PROPOSAL"]
    assert "role_appointed" in _kinds(p.receipts)
    assert _account(d, target).roles == ("broker", "custodian", "org_admin")
    p = d.commit(
        [
            c.tx("broker-a-admin", "governance", "propose_appoint_role", args),  # already held
            c.tx("exchange-admin", "governance", "propose_revoke_role", args),
            *_votes(c, 2, *others("exchange-admin", n=NEED - 1)),
        ]
    )
    assert [r.code for r in p.receipts] == ["INVALID_PROPOSAL"] + [""] * NEED
    assert "role_revoked" in _kinds(p.receipts)
    assert _account(d, target).roles == ("broker", "org_admin")


def test_regulator_role_cannot_be_granted_or_revoked_by_governance() -> None:
    c = make_consortium("intl")
    d = Driver(c)
    reg = c.addr("regulator")
    p = d.commit(
        [
            c.tx(
                "broker-a-admin",
                "governance",
                "propose_appoint_role",
                {"address": c.addr("broker-b-admin"), "role": "regulator", "reason": "r"},
            ),
            c.tx(
                "broker-a-admin",
                "governance",
                "propose_revoke_role",
                {"address": reg, "role": "regulator", "reason": "r"},
            ),
            c.tx(
                "broker-a-admin",
                "governance",
                "propose_appoint_role",
                {"address": reg, "role": "exchange", "reason": "r"},
            ),
            c.tx(
                "regulator",
                "governance",
                "propose_appoint_role",
                {"address": c.addr("broker-a-admin"), "role": "custodian", "reason": "r"},
            ),
        ]
    )
    assert [r.code for r in p.receipts] == [
        "INVALID_ROLE",
        "INVALID_ROLE",
        "NOT_AUTHORIZED",
        "NOT_AUTHORIZED",
    ]
    assert _account(d, reg).roles == ("regulator",)
    assert _account(d, c.addr("broker-b-admin")).roles == ("broker", "org_admin")
