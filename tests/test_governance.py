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

VOTERS = ("exchange-admin", "broker-a-admin", "broker-b-admin", "ccb-admin", "pboc-admin")


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
    p = d.commit(
        [
            c.tx("broker-a-admin", "governance", "propose", args),
            c.tx("exchange-admin", "governance", "approve", {"proposal_id": 1}),
            c.tx("broker-b-admin", "governance", "approve", {"proposal_id": 1}),
            c.tx("regulator", "governance", "approve", {"proposal_id": 1}),  # no vote
            c.tx("broker-b-admin", "governance", "approve", {"proposal_id": 1}),  # twice
        ]
    )
    assert [r.code for r in p.receipts] == [
        "",
        "",
        "",
        "NOT_AUTHORIZED",
        "ALREADY_APPROVED",
    ]
    # 3 of 5 voting organizations: not yet.
    assert d.state.next_validators.get(new_addr) is None
    p = d.commit([c.tx("ccb-admin", "governance", "approve", {"proposal_id": 1})])
    decided_at = p.block.header.height
    changed = [e for r in p.receipts for e in r.events if e.kind == "validator_set_changed"]
    assert changed and changed[0].attributes["effective_height"] == decided_at + 2
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
            *(
                c.tx(who, "governance", "approve", {"proposal_id": 2})
                for who in ("broker-a-admin", "broker-b-admin", "ccb-admin")
            ),
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
    txs = [c.tx("broker-a-admin", "governance", "propose", args)] + [
        c.tx(w, "governance", "approve", {"proposal_id": 1})
        for w in ("exchange-admin", "broker-b-admin", "ccb-admin")
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
    p = d.commit(
        [
            c.tx("broker-a-admin", "governance", "propose_admit_org", admit),
            *_votes(c, 1, "exchange-admin", "broker-b-admin"),
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
    assert [r.code for r in p.receipts] == ["", "", "", "NOT_AUTHORIZED", "ORGANIZATION_EXISTS"]
    assert d.state.tree.get(org_key("broker-c")) is None  # 3 of 5: not yet
    p = d.commit(_votes(c, 1, "ccb-admin", "pboc-admin"))
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
    # Six voting organizations now: 3 approvals are not two thirds, the fourth is.
    p = d.commit(_votes(c, 2, "exchange-admin", "broker-a-admin"))
    assert "proposal_executed" not in _kinds(p.receipts)
    p = d.commit(_votes(c, 2, "broker-b-admin"))
    assert "proposal_executed" in _kinds(p.receipts)


def test_remove_org_refuses_its_accounts() -> None:
    c = make_consortium("intl")
    d = Driver(c)
    remove = {"org_id": "broker-b", "reason": "licence withdrawn"}
    p = d.commit(
        [
            c.tx("broker-a-admin", "governance", "propose_remove_org", remove),
            *_votes(c, 1, "exchange-admin", "ccb-admin", "pboc-admin"),
            c.tx(
                "broker-a-admin", "governance", "propose_remove_org", {**remove, "org_id": "csrc"}
            ),
            c.tx(
                "broker-a-admin", "governance", "propose_remove_org", {**remove, "org_id": "nope"}
            ),
        ]
    )
    assert [r.code for r in p.receipts] == [
        "",
        "",
        "",
        "",
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
            *_votes(c, 1, "exchange-admin", "broker-b-admin"),
        ]
    )
    assert [r.code for r in p.receipts] == ["INVALID_PROPOSAL"] * 3 + [""] * 3
    assert d.state.tree.get(param_key(THRESHOLD_PARAM)) is None  # 3 of 5 < 2/3
    p = d.commit(_votes(c, 1, "pboc-admin"))
    assert "param_set" in _kinds(p.receipts)
    raw = d.state.tree.get(param_key(THRESHOLD_PARAM))
    assert raw is not None and codec.decode_struct(ParamValue, raw).value == 5001
    # A simple majority now decides: 3 of 5.
    p = d.commit(
        [
            c.tx("broker-a-admin", "governance", "propose_appoint_role", appoint),
            *_votes(c, 2, "exchange-admin"),
        ]
    )
    assert "custodian" not in _account(d, target).roles
    d.commit(_votes(c, 2, "pboc-admin"))
    assert "custodian" in _account(d, target).roles


def test_genesis_sets_the_threshold() -> None:
    c = make_consortium("intl")
    c.genesis = replace(c.genesis, params={"governance_threshold_bp": 10_000})
    d = Driver(c)
    appoint = {"address": c.addr("ccb-admin"), "role": "custodian", "reason": "r"}
    d.commit(
        [
            c.tx("broker-a-admin", "governance", "propose_appoint_role", appoint),
            *_votes(c, 1, "exchange-admin", "broker-b-admin", "ccb-admin"),
        ]
    )
    assert "custodian" not in _account(d, c.addr("ccb-admin")).roles  # 4 of 5: not unanimous
    d.commit(_votes(c, 1, "pboc-admin"))
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
            *_votes(c, 1, *VOTERS[2:]),
            c.tx(
                "broker-a-admin", "governance", "propose_appoint_role", {**args, "role": "wizard"}
            ),
            c.tx("broker-a-admin", "governance", "propose_revoke_role", {**args, "role": "issuer"}),
        ]
    )
    assert [r.code for r in p.receipts] == ["", "", "", "", "INVALID_ROLE", "INVALID_PROPOSAL"]
    assert "role_appointed" in _kinds(p.receipts)
    assert _account(d, target).roles == ("broker", "custodian", "org_admin")
    p = d.commit(
        [
            c.tx("broker-a-admin", "governance", "propose_appoint_role", args),  # already held
            c.tx("exchange-admin", "governance", "propose_revoke_role", args),
            *_votes(c, 2, "broker-a-admin", "ccb-admin", "pboc-admin"),
        ]
    )
    assert [r.code for r in p.receipts] == ["INVALID_PROPOSAL", "", "", "", ""]
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
