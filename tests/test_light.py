"""The light client follows a chain through certified headers and validator-set changes only."""

from __future__ import annotations

from dataclasses import replace

import pytest

from consortia import codec
from consortia.crypto import KeyPair
from consortia.execution.state import vset_history_key
from consortia.ledger.light import (
    BadCertificateError,
    BrokenLinkError,
    CertifiedHeader,
    OutOfOrderError,
    TrustedHead,
    ValidatorSetMismatchError,
    WrongChainError,
    advance,
    trust_genesis,
    verify_certified,
)
from consortia.ledger.types import Block, CommitCertificate, Transaction, Validator, ValidatorSet
from tests.chainkit import Consortium, Driver, make_consortium
from tests.govkit import approvals_needed, voters


def follow(d: Driver, txs: list[Transaction] | None = None) -> tuple[Block, CertifiedHeader]:
    """Commit one block; return it and the certified header a light client receives."""
    announced = d.state.next_validators  # a header names the set its parent state has as next
    p = d.commit(txs or [])
    assert d.last_cert is not None
    h = p.block.header
    changed = h.next_validator_set_hash != h.validator_set_hash
    return p.block, CertifiedHeader(h, d.last_cert, announced if changed else None)


def genesis_head(c: Consortium) -> TrustedHead:
    g = c.genesis
    return trust_genesis(g.chain_id, g.hash(), g.genesis_time_ms, g.validator_set())


def strangers(c: Consortium) -> tuple[list[KeyPair], ValidatorSet]:
    keys = [c.suite.generate_keypair() for _ in range(4)]
    members = sorted(
        (Validator(c.suite.address(k.public_key), k.public_key, 10) for k in keys),
        key=lambda v: v.address,
    )
    return keys, ValidatorSet(tuple(members))


def test_follows_a_chain_and_refuses_what_it_must() -> None:
    c = make_consortium()
    d = Driver(c)
    trusted = genesis_head(c)
    chain = [follow(d) for _ in range(5)]
    for _, item in chain[:3]:
        trusted = advance(c.suite, trusted, item)
    assert trusted.height == 3 and trusted.block_hash == chain[2][1].header.hash(c.suite)
    block, nxt = chain[3]
    with pytest.raises(OutOfOrderError):
        advance(c.suite, trusted, chain[2][1])  # a replay
    with pytest.raises(OutOfOrderError):
        advance(c.suite, trusted, chain[4][1])  # a gap
    with pytest.raises(WrongChainError):
        advance(c.suite, trusted, replace(nxt, header=replace(nxt.header, chain_id="other")))
    with pytest.raises(BrokenLinkError):
        advance(c.suite, trusted, replace(nxt, header=replace(nxt.header, parent_hash=bytes(32))))
    # A header altered after certification no longer matches its certificate.
    with pytest.raises(BadCertificateError):
        advance(c.suite, trusted, replace(nxt, header=replace(nxt.header, state_root=bytes(32))))
    # Under quorum: two of four precommits.
    cert = nxt.certificate
    thin = CommitCertificate(
        cert.chain_id, cert.height, cert.round, cert.block_hash, cert.signatures[:2]
    )
    with pytest.raises(BadCertificateError, match="power"):
        advance(c.suite, trusted, replace(nxt, certificate=thin))
    # Forged: the same block certified by keys that are not the chain's validators.
    keys, their_set = strangers(c)
    forged = replace(c, validators=keys).certify(block)
    with pytest.raises(BadCertificateError, match="not a validator"):
        advance(c.suite, trusted, replace(nxt, certificate=forged))
    # A set "change" smuggled alongside a header that announces none.
    with pytest.raises(ValidatorSetMismatchError):
        advance(c.suite, trusted, replace(nxt, next_validators=their_set))
    assert advance(c.suite, trusted, nxt).height == 4


def test_validator_set_changes_only_through_certified_headers() -> None:
    c = make_consortium()
    d = Driver(c)
    trusted = genesis_head(c)
    newcomer = c.suite.generate_keypair()
    args = {
        "action": "add_validator",
        "name": "validator-4",
        "public_key": newcomer.public_key,
        "power": 10,
        "reason": "a new member runs a validator",
    }
    voting = voters()
    need = approvals_needed(len(voting))
    txs = [c.tx(voting[0], "governance", "propose", args)]
    txs += [c.tx(v, "governance", "approve", {"proposal_id": 1}) for v in voting[1:need]]
    items = [follow(d, txs)[1]]
    while len(d.state.validators.validators) == 4:
        items.append(follow(d)[1])
    c.validators.append(newcomer)  # the new validator signs from now on
    items += [follow(d)[1] for _ in range(2)]
    announcing = [i for i in items if i.next_validators is not None]
    assert len(announcing) == 1  # exactly one header announces the new set
    # ... and the state keeps it in the history under the first height it validates.
    h = announcing[0].header.height
    raw = d.state.tree.get(vset_history_key(h + 1))
    assert (
        raw is not None and codec.decode_struct(ValidatorSet, raw) == announcing[0].next_validators
    )
    assert d.state.tree.get(vset_history_key(1)) is not None  # genesis set
    for item in items:
        if item is announcing[0]:
            with pytest.raises(ValidatorSetMismatchError, match="supply it"):
                advance(c.suite, trusted, replace(item, next_validators=None))
            _, wrong = strangers(c)
            with pytest.raises(ValidatorSetMismatchError, match="does not match"):
                advance(c.suite, trusted, replace(item, next_validators=wrong))
        trusted = advance(c.suite, trusted, item)
    assert len(trusted.next_validators.validators) == 5
    # The old set alone can no longer certify the chain's next header.
    last = items[-1]
    old = ValidatorSet(
        tuple(v for v in trusted.next_validators.validators if v.public_key != newcomer.public_key)
    )
    with pytest.raises(ValidatorSetMismatchError):
        verify_certified(c.suite, c.genesis.chain_id, old, last)
    assert verify_certified(c.suite, c.genesis.chain_id, trusted.next_validators, last) == (
        last.header.hash(c.suite)
    )
