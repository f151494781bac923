"""Governance: validator-set changes by 2/3 of organizations, effective two heights later."""

from __future__ import annotations

from consortia.execution.apply import apply_block
from consortia.execution.genesis import genesis_state
from consortia.ledger.types import TxStatus
from tests.chainkit import Driver, make_consortium


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
