"""Equivocation evidence is verified and recorded on chain; bad evidence invalidates the block."""

from __future__ import annotations

from dataclasses import replace

import pytest

from consortia import codec
from consortia.execution import errors as errs
from consortia.execution.apply import EvidenceRecord, apply_block, evidence_key, propose_block
from consortia.ledger.evidence import duplicate_vote_evidence, evidence_hash
from consortia.ledger.types import Vote, VoteType, sign_vote
from tests.chainkit import CHAIN_ID, Driver, make_consortium


def _double_vote(c, height: int):  # type: ignore[no-untyped-def]
    key = c.validators[1]
    addr = c.suite.address(key.public_key)
    votes = [
        sign_vote(c.suite, key, Vote(CHAIN_ID, VoteType.PREVOTE, height, 0, h, 5, addr, b""))
        for h in (b"\x01" * 32, b"\x02" * 32)
    ]
    return duplicate_vote_evidence(*votes)


def test_evidence_is_recorded_and_replayed() -> None:
    c = make_consortium("intl")
    d = Driver(c)
    d.commit([])
    ev = _double_vote(c, d.state.height + 1)
    proposer = d.state.validators.validators[0].address
    p = propose_block(d.state, [], proposer=proposer, last_commit=d.last_cert, evidence=[ev, ev])
    assert p.block.evidence == (ev,)  # deduplicated by the proposer
    raw = p.state.tree.get(evidence_key(c.suite, ev))
    assert raw is not None
    record = codec.decode_struct(EvidenceRecord, raw)
    assert record.validator == ev.validator and record.recorded_height == p.block.header.height
    state, _ = apply_block(d.state, p.block)
    assert state.state_root == p.state.state_root
    # Once recorded it is not admissible again.
    d.state, d.last_cert = p.state, c.certify(p.block)
    again = propose_block(d.state, [], proposer=proposer, last_commit=d.last_cert, evidence=[ev])
    assert again.block.evidence == ()


def test_bad_evidence_invalidates_the_block() -> None:
    c = make_consortium("intl")
    d = Driver(c)
    d.commit([])
    ev = _double_vote(c, d.state.height + 1)
    proposer = d.state.validators.validators[0].address
    block = propose_block(
        d.state, [], proposer=proposer, last_commit=d.last_cert, evidence=[ev]
    ).block

    def with_evidence(items):  # type: ignore[no-untyped-def]
        header = replace(block.header, evidence_hash=evidence_hash(c.suite, items))
        return replace(block, header=header, evidence=tuple(items))

    forged = replace(ev, vote_b=replace(ev.vote_b, signature=bytes(64)))
    outsider = c.suite.generate_keypair()
    o_addr = c.suite.address(outsider.public_key)
    o_votes = [
        sign_vote(c.suite, outsider, Vote(CHAIN_ID, VoteType.PREVOTE, 2, 0, h, 5, o_addr, b""))
        for h in (b"\x01" * 32, b"\x02" * 32)
    ]
    old = _double_vote(c, 1) if d.state.height > 2 else _double_vote(c, 9)
    for bad in ([forged], [ev, ev], [duplicate_vote_evidence(*o_votes)], [old]):
        with pytest.raises(errs.BadEvidenceError):
            apply_block(d.state, with_evidence(bad))
    with pytest.raises(errs.WrongEvidenceHashError):
        apply_block(d.state, replace(block, evidence=()))
