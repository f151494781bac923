"""The consensus core, driven by hand-made events: each test asserts the exact actions.

Scenario tests port the intent of CometBFT's consensus state tests (locking, relocking on a
proof of lock, no unlock on a nil polka, late precommits, round skipping, re-proposing the valid
value, equivocation evidence) onto Algorithm 1's rules. Four validators of power 10 (quorum 30,
f+1 = 20); at height 1 the proposer of round r is validator r % 4 (address order).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from consortia.consensus import (
    NO_POL_ROUND,
    Action,
    BroadcastProposal,
    BuildProposal,
    CastVote,
    CommitBlock,
    ConsensusCore,
    ConsensusParams,
    InvalidEvidenceError,
    NewHeight,
    ProposalReceived,
    ProposalValidated,
    ProposerSchedule,
    RecordEvidence,
    Resume,
    ScheduleTimeout,
    SignedProposal,
    Step,
    TimeoutFired,
    TimeoutKind,
    ValidateProposal,
    VoteReceived,
    decode_proposal,
    duplicate_vote_evidence,
    sign_proposal,
    verify_duplicate_vote_evidence,
    verify_proposal_signature,
)
from consortia.consensus.evidence import decode_evidence
from consortia.consensus.proposer import increment_priorities
from consortia.crypto import KeyPair, get_suite
from consortia.execution.apply import apply_block, propose_block
from consortia.execution.consortium import DEFAULT_GENESIS_TIME_MS, DEFAULT_ORGS
from consortia.execution.genesis import Genesis, GenesisValidator, genesis_state
from consortia.ledger.types import (
    Block,
    CommitCertificate,
    CommitSig,
    Validator,
    ValidatorSet,
    Vote,
    VoteType,
    WireFormatError,
    bft_time_ms,
    sign_vote,
    verify_commit,
)

CHAIN = "test-chain"
PV, PC = VoteType.PREVOTE, VoteType.PRECOMMIT
PARAMS = ConsensusParams()
NIL = b""


def _t(kind: TimeoutKind, round: int, height: int = 1) -> ScheduleTimeout:
    return ScheduleTimeout(kind, height, round, PARAMS.timeout_ms(kind, round))


class Net:
    """Four validators, a genesis state, and one core under test (``me``; None = observer)."""

    def __init__(self, me: int | None = 3, suite_name: str = "intl") -> None:
        self.suite = get_suite(suite_name)
        keys = [self.suite.keypair_from_secret(bytes([i + 1]) * 32) for i in range(4)]
        genesis = Genesis(
            chain_id=CHAIN,
            suite=suite_name,
            tier="business",
            genesis_time_ms=DEFAULT_GENESIS_TIME_MS,
            orgs=DEFAULT_ORGS,
            accounts=(),
            validators=tuple(
                GenesisValidator(f"v{i}", k.public_key, 10) for i, k in enumerate(keys)
            ),
            params={},
        )
        self.state = genesis_state(genesis)
        self.vset = self.state.validators
        by_addr = {self.suite.address(k.public_key): k for k in keys}
        # keys[i] is validator i in address order (the order the proposer schedule uses)
        self.keys: list[KeyPair] = [by_addr[v.address] for v in self.vset.validators]
        self.addrs = [v.address for v in self.vset.validators]
        self.me = me
        self.core = ConsensusCore(
            self.suite, CHAIN, address=None if me is None else self.addrs[me], params=PARAMS
        )
        # Distinct valid height-1 blocks: same content, different proposer field.
        self.blocks = [
            propose_block(self.state, [], proposer=a, last_commit=None).block for a in self.addrs
        ]

    def h(self, block: Block) -> bytes:
        return block.hash(self.suite)

    def start(self, height: int = 1, resume: Resume | None = None) -> list[Action]:
        return self.core.handle(NewHeight(height, self.vset, self.vset, resume))

    def vote(
        self,
        who: int,
        vote_type: VoteType,
        round: int,
        block_hash: bytes,
        *,
        height: int = 1,
        time_ms: int | None = None,
        key: KeyPair | None = None,
        chain_id: str = CHAIN,
    ) -> Vote:
        t = DEFAULT_GENESIS_TIME_MS + 1000 + who if time_ms is None else time_ms
        unsigned = Vote(chain_id, vote_type, height, round, block_hash, t, self.addrs[who], b"")
        return sign_vote(self.suite, key or self.keys[who], unsigned)

    def feed_votes(
        self, who: list[int], vote_type: VoteType, round: int, block_hash: bytes, height: int = 1
    ) -> list[Action]:
        out: list[Action] = []
        for i in who:
            out += self.core.handle(
                VoteReceived(self.vote(i, vote_type, round, block_hash, height=height))
            )
        return out

    def proposal(
        self,
        round: int,
        block: Block,
        *,
        pol_round: int = NO_POL_ROUND,
        proposer: int | None = None,
        height: int = 1,
    ) -> ProposalReceived:
        who = round % 4 if proposer is None else proposer
        p = sign_proposal(
            self.suite,
            self.keys[who],
            chain_id=CHAIN,
            height=height,
            round=round,
            block_hash=self.h(block),
            pol_round=pol_round,
        )
        return ProposalReceived(p, block)

    def propose(self, round: int, block: Block, *, pol_round: int = NO_POL_ROUND) -> list[Action]:
        return self.core.handle(self.proposal(round, block, pol_round=pol_round))

    def validated(self, block: Block, valid: bool = True, height: int = 1) -> list[Action]:
        return self.core.handle(ProposalValidated(height, self.h(block), valid))

    def echo(self, actions: list[Action]) -> list[Action]:
        """Perform own CastVote actions like a shell: sign and feed back; returns the rest."""
        out: list[Action] = []
        for a in actions:
            if isinstance(a, CastVote):
                assert self.me is not None
                out += self.core.handle(
                    VoteReceived(
                        self.vote(self.me, a.vote_type, a.round, a.block_hash, height=a.height)
                    )
                )
        return out

    def votes(
        self, who: list[int], vote_type: VoteType, round: int, block_hash: bytes
    ) -> tuple[Vote, ...]:
        """The votes ``feed_votes``/``echo`` deliver, sorted by validator (as the core reports)."""
        signed = [self.vote(i, vote_type, round, block_hash) for i in who]
        return tuple(sorted(signed, key=lambda v: v.validator))

    def cast(
        self, vote_type: VoteType, round: int, block: Block | None, polka: list[int] | None = None
    ) -> CastVote:
        """The CastVote the core should emit; a non-nil precommit carries its polka."""
        if block is None:
            return CastVote(vote_type, 1, round, NIL, 0)
        proof = self.votes(polka, PV, round, self.h(block)) if polka else ()
        return CastVote(vote_type, 1, round, self.h(block), block.header.time_ms + 1, proof)

    def timeout(self, kind: TimeoutKind, round: int, height: int = 1) -> list[Action]:
        return self.core.handle(TimeoutFired(kind, height, round))


def _accept(net: Net, round: int, block: Block, pol_round: int = NO_POL_ROUND) -> list[Action]:
    """Deliver a proposal and its (valid) execution result; return the actions of the latter."""
    ev = net.proposal(round, block, pol_round=pol_round)
    assert net.core.handle(ev) == [
        BroadcastProposal(ev.proposal, block),
        ValidateProposal(1, net.h(block), block),
    ]
    return net.validated(block)


def _lock_in_round_0(net: Net, block: Block) -> None:
    """Round 0: prevote ``block``, see a polka for it, lock it and precommit it; others
    precommit nil, so round 0 ends without a decision. Leaves the core in round 1."""
    assert net.start() == [_t(TimeoutKind.PROPOSE, 0)]
    assert _accept(net, 0, block) == [net.cast(PV, 0, block)]
    assert net.echo([net.cast(PV, 0, block)]) == []
    acts = net.feed_votes([0, 1], PV, 0, net.h(block))
    assert acts == [_t(TimeoutKind.PREVOTE, 0), net.cast(PC, 0, block, polka=[0, 1, 3])]
    assert (net.core.locked_round, net.core.locked_block_hash) == (0, net.h(block))
    assert net.echo(acts) == []
    assert net.feed_votes([0, 1], PC, 0, NIL) == [_t(TimeoutKind.PRECOMMIT, 0)]
    assert net.timeout(TimeoutKind.PRECOMMIT, 0) == [_t(TimeoutKind.PROPOSE, 1)]
    assert (net.core.round, net.core.step) == (1, Step.PROPOSE)


# ---------------------------------------------------------------------------------------------
# Proposer selection


def test_proposer_matches_cometbft_selection_vector() -> None:
    # CometBFT types/validator_set_test.go TestProposerSelection1: foo 1000, bar 300, baz 330.
    names = {n.encode().ljust(20, b"\0"): n for n in ("bar", "baz", "foo")}
    power = {"foo": 1000, "bar": 300, "baz": 330}
    vset = ValidatorSet(tuple(Validator(a, b"k", power[n]) for a, n in sorted(names.items())))
    schedule = ProposerSchedule(vset)
    got = " ".join(names[schedule.proposer(1 + i, 0)] for i in range(99))
    expected = (
        "foo baz foo bar foo foo baz foo bar foo foo baz foo foo bar foo baz foo foo bar "
        "foo foo baz foo bar foo foo baz foo bar foo foo baz foo foo bar foo baz foo foo bar "
        "foo baz foo foo bar foo baz foo foo bar foo baz foo foo foo baz bar foo foo foo baz "
        "foo bar foo foo baz foo bar foo foo baz foo bar foo foo baz foo bar foo foo baz foo "
        "foo bar foo baz foo foo bar foo baz foo foo bar foo baz foo foo"
    )
    assert got == expected


@pytest.mark.parametrize("seed", range(40))
def test_proposer_frequency_is_proportional_to_power(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 9)
    addrs = sorted(rng.randbytes(20) for _ in range(n))
    powers = [rng.choice([1, 2, 3, 5, 10, 10, 10, 100]) for _ in range(n)]
    vset = ValidatorSet(tuple(Validator(a, b"k", p) for a, p in zip(addrs, powers, strict=True)))
    schedule = ProposerSchedule(vset)
    periods = 3
    counts = Counter(schedule.proposer(h, 0) for h in range(1, periods * schedule.period + 1))
    g = vset.total_power // schedule.period
    assert {a: counts[a] for a in addrs} == {
        a: periods * p // g for a, p in zip(addrs, powers, strict=True)
    }
    # Fair within any window too: over k steps each validator is within 1 of k * p / total.
    k = rng.randint(1, schedule.period)
    start = rng.randint(0, 50)
    window = Counter(schedule.proposer(1 + start + i, 0) for i in range(k))
    for a, p in zip(addrs, powers, strict=True):
        assert abs(window[a] - k * p / vset.total_power) < 2


def test_proposer_schedule_is_periodic_and_rounds_advance_it() -> None:
    addrs = sorted(bytes([i]) * 20 for i in range(1, 5))
    vset = ValidatorSet(tuple(Validator(a, b"k", 10) for a in addrs))
    s = ProposerSchedule(vset)
    assert s.period == 4
    assert [s.proposer(1, r) for r in range(4)] == addrs  # round robin, lowest address first
    assert s.proposer(2, 0) == s.proposer(1, 1)  # one step per height and per round
    assert s.proposer(1 + 4 * 1000, 3) == addrs[3]
    # Priorities return to zero after a period: the same check by direct iteration.
    prios, powers = [0] * 4, [10] * 4
    for _ in range(4):
        increment_priorities(prios, powers, 40)
    assert prios == [0, 0, 0, 0]


def test_proposer_schedule_with_a_long_period_uses_checkpoints() -> None:
    addrs = sorted(bytes([i]) * 20 for i in range(1, 4))
    powers = [4999, 5003, 7919]  # period = total: too long to tabulate
    vset = ValidatorSet(tuple(Validator(a, b"k", p) for a, p in zip(addrs, powers, strict=True)))
    s = ProposerSchedule(vset)
    assert s.period == sum(powers)
    prios = [0, 0, 0]
    direct = [addrs[increment_priorities(prios, powers, sum(powers))] for _ in range(6000)]
    assert [s.proposer(1 + k, 0) for k in range(6000)] == direct
    assert s.proposer(5000, 7) == direct[5006]  # a fresh lookup from a checkpoint
    assert s.proposer(20, 0) == direct[19]  # going back also works


# ---------------------------------------------------------------------------------------------
# Wire type and evidence


def test_proposal_roundtrip_and_domain_separation() -> None:
    net = Net()
    p = net.proposal(2, net.blocks[0], pol_round=1).proposal
    assert decode_proposal(p.encode()) == p
    assert verify_proposal_signature(net.suite, p, net.keys[2].public_key)
    assert not verify_proposal_signature(net.suite, p, net.keys[1].public_key)
    # The same bytes signed as a vote (or for another chain) do not verify as a proposal.
    as_vote = net.suite.sign(net.keys[2], CHAIN, "vote", p.signing_bytes())
    assert not verify_proposal_signature(
        net.suite, replace(p, signature=as_vote), net.keys[2].public_key
    )
    other_chain = net.suite.sign(net.keys[2], "other", "proposal", p.signing_bytes())
    assert not verify_proposal_signature(
        net.suite, replace(p, signature=other_chain), net.keys[2].public_key
    )
    with pytest.raises(WireFormatError):
        replace(p, pol_round=2)  # the polka must be from an earlier round
    with pytest.raises(WireFormatError):
        replace(p, pol_round=-2)


# ---------------------------------------------------------------------------------------------
# The happy path


def test_happy_path_commits_with_a_certificate_that_verifies() -> None:
    net = Net(me=1)
    a = net.blocks[0]
    assert net.start() == [_t(TimeoutKind.PROPOSE, 0)]
    assert _accept(net, 0, a) == [net.cast(PV, 0, a)]
    assert net.echo([net.cast(PV, 0, a)]) == []
    assert net.core.vote_power(0, PV, net.h(a)) == 10  # own vote counts only once fed back
    acts = net.feed_votes([0, 2], PV, 0, net.h(a))
    # The precommit carries the polka that justifies it (the shell persists it with the lock).
    assert acts == [_t(TimeoutKind.PREVOTE, 0), net.cast(PC, 0, a, polka=[0, 1, 2])]
    assert net.echo(acts) == []
    assert net.feed_votes([3], PC, 0, net.h(a)) == []
    [commit] = net.feed_votes([0], PC, 0, net.h(a))
    assert isinstance(commit, CommitBlock)
    assert commit.block == a and net.core.decided
    cert = commit.certificate
    assert [s.validator for s in cert.signatures] == sorted(
        [net.addrs[0], net.addrs[1], net.addrs[3]]
    )
    verify_commit(net.suite, net.vset, cert, chain_id=CHAIN, height=1, block_hash=net.h(a))
    assert bft_time_ms(net.vset, cert) > a.header.time_ms
    # After deciding, the height is closed: more votes do nothing until NewHeight.
    assert net.feed_votes([2], PC, 0, net.h(a)) == []
    assert net.start(2) == [  # proposer of (2, 0) is validator 1: us
        BuildProposal(2, 0, NO_POL_ROUND, None),
        _t(TimeoutKind.PROPOSE, 0, height=2),
    ]
    assert net.core.height == 2 and not net.core.decided and net.core.locked_round == -1


def test_invalid_proposal_gets_a_nil_prevote() -> None:
    net = Net()
    net.start()
    ev = net.proposal(0, net.blocks[0])
    net.core.handle(ev)
    assert net.validated(net.blocks[0], valid=False) == [net.cast(PV, 0, None)]
    assert net.core.step == Step.PREVOTE
    # Even a polka for it cannot make us lock on an invalid block.
    assert net.feed_votes([0, 1, 2], PV, 0, net.h(net.blocks[0])) == [_t(TimeoutKind.PREVOTE, 0)]
    assert net.core.locked_round == -1


def test_timeouts_move_through_the_steps_and_grow_with_the_round() -> None:
    net = Net(me=3)
    net.start()
    assert net.timeout(TimeoutKind.PROPOSE, 0) == [net.cast(PV, 0, None)]
    assert net.timeout(TimeoutKind.PROPOSE, 0) == []  # already past propose
    assert net.timeout(TimeoutKind.PREVOTE, 0) == [net.cast(PC, 0, None)]
    assert net.timeout(TimeoutKind.PRECOMMIT, 0) == [_t(TimeoutKind.PROPOSE, 1)]
    assert net.timeout(TimeoutKind.PRECOMMIT, 0) == []  # stale: we are in round 1
    assert net.timeout(TimeoutKind.PROPOSE, 1, height=2) == []  # wrong height
    assert PARAMS.timeout_ms(TimeoutKind.PROPOSE, 1) == 3500
    assert PARAMS.timeout_ms(TimeoutKind.PREVOTE, 4) == 3000
    assert PARAMS.timeout_ms(TimeoutKind.PRECOMMIT, 0) == 1000


def test_proposer_builds_then_prevotes_its_own_proposal_fed_back() -> None:
    net = Net(me=0)
    assert net.start() == [BuildProposal(1, 0, NO_POL_ROUND, None), _t(TimeoutKind.PROPOSE, 0)]
    a = net.blocks[0]
    ev = net.proposal(0, a)
    assert net.core.handle(ev) == [
        BroadcastProposal(ev.proposal, a),
        ValidateProposal(1, net.h(a), a),
    ]
    assert net.validated(a) == [net.cast(PV, 0, a)]


def test_observer_follows_and_commits_but_never_votes_or_proposes() -> None:
    net = Net(me=None)
    acts = net.start()
    assert acts == [_t(TimeoutKind.PROPOSE, 0)]
    a = net.blocks[0]
    acts += net.core.handle(net.proposal(0, a)) + net.validated(a)
    acts += net.feed_votes([0, 1, 2, 3], PV, 0, net.h(a))
    acts += net.feed_votes([0, 1, 2], PC, 0, net.h(a))
    assert not any(isinstance(x, CastVote | BuildProposal) for x in acts)
    assert isinstance(acts[-1], CommitBlock)
    # An address that is not in the validator set is an observer too.
    outsider = net.suite.keypair_from_secret(b"\x77" * 32)
    core = ConsensusCore(net.suite, CHAIN, address=net.suite.address(outsider.public_key))
    for r in range(8):
        out = core.handle(NewHeight(1 + r, net.vset, net.vset))
        assert not any(isinstance(x, CastVote | BuildProposal) for x in out)


# ---------------------------------------------------------------------------------------------
# Scenarios (CometBFT consensus state tests, by intent)


def test_lock_and_relock_on_proof_of_lock() -> None:
    net = Net(me=3)
    a, b = net.blocks[0], net.blocks[1]
    _lock_in_round_0(net, a)
    # Round 1: we miss everything and time out to round 2 without seeing round 1's polka.
    assert net.timeout(TimeoutKind.PROPOSE, 1) == [net.cast(PV, 1, None)]
    assert net.feed_votes([0, 1], PC, 1, NIL) == []
    assert net.echo([net.cast(PV, 1, None)]) == []
    assert net.timeout(TimeoutKind.PREVOTE, 1) == [net.cast(PC, 1, None)]
    assert net.echo([net.cast(PC, 1, None)]) == [_t(TimeoutKind.PRECOMMIT, 1)]
    assert net.timeout(TimeoutKind.PRECOMMIT, 1) == [_t(TimeoutKind.PROPOSE, 2)]
    # Round 2: B re-proposed with pol_round 1. Without the polka we wait (locked on A).
    ev = net.proposal(2, b, pol_round=1)
    assert net.core.handle(ev) == [
        BroadcastProposal(ev.proposal, b),
        ValidateProposal(1, net.h(b), b),
    ]
    assert net.validated(b) == []
    # The proof of lock arrives: 2f+1 prevotes for B in round 1 >= our lock round 0: prevote B.
    acts = net.feed_votes([0, 1, 2], PV, 1, net.h(b))
    assert acts == [net.cast(PV, 2, b)]
    assert (net.core.locked_round, net.core.locked_block_hash) == (0, net.h(a))
    assert net.echo(acts) == []
    # A polka for B in round 2: relock on B and precommit it.
    acts = net.feed_votes([1, 2], PV, 2, net.h(b))
    assert acts == [_t(TimeoutKind.PREVOTE, 2), net.cast(PC, 2, b, polka=[1, 2, 3])]
    assert (net.core.locked_round, net.core.locked_block_hash) == (2, net.h(b))
    assert (net.core.valid_round, net.core.valid_block) == (2, b)


def test_relock_on_polka_in_a_later_round() -> None:
    net = Net(me=3)
    a, b = net.blocks[0], net.blocks[1]
    _lock_in_round_0(net, a)
    # Round 1: a fresh B while locked on A: prevote nil; then a polka for B: relock, precommit.
    assert _accept(net, 1, b) == [net.cast(PV, 1, None)]
    acts = net.feed_votes([0, 1, 2], PV, 1, net.h(b))
    assert acts == [_t(TimeoutKind.PREVOTE, 1), net.cast(PC, 1, b, polka=[0, 1, 2])]
    assert (net.core.locked_round, net.core.locked_block_hash) == (1, net.h(b))


def test_no_unlock_on_nil_polka() -> None:
    net = Net(me=3)
    a, b, c = net.blocks[0], net.blocks[1], net.blocks[2]
    _lock_in_round_0(net, a)
    # Round 1: fresh B: locked on A, so nil. A nil polka: precommit nil, but keep the lock.
    assert _accept(net, 1, b) == [net.cast(PV, 1, None)]
    assert net.echo([net.cast(PV, 1, None)]) == []
    acts = net.feed_votes([0, 1], PV, 1, NIL)
    assert acts == [_t(TimeoutKind.PREVOTE, 1), net.cast(PC, 1, None)]
    assert (net.core.locked_round, net.core.locked_block_hash) == (0, net.h(a))
    assert net.echo(acts) == []
    assert net.feed_votes([0, 1], PC, 1, NIL) == [_t(TimeoutKind.PRECOMMIT, 1)]
    assert net.timeout(TimeoutKind.PRECOMMIT, 1) == [_t(TimeoutKind.PROPOSE, 2)]
    # Round 2: another fresh value C: still nil. A proposal of A itself gets our prevote.
    assert _accept(net, 2, c) == [net.cast(PV, 2, None)]
    net2 = Net(me=3)
    _lock_in_round_0(net2, a)
    net2.timeout(TimeoutKind.PROPOSE, 1)
    net2.feed_votes([0, 1, 2], PV, 1, NIL)
    net2.feed_votes([0, 1, 2], PC, 1, NIL)
    net2.timeout(TimeoutKind.PRECOMMIT, 1)
    ev = net2.proposal(2, a, proposer=2)
    # Validity is already known, so no ValidateProposal: the prevote for A comes at once.
    assert net2.core.handle(ev) == [BroadcastProposal(ev.proposal, a), net2.cast(PV, 2, a)]
    assert net2.core.locked_block_hash == net2.h(a)


def test_late_precommits_still_commit() -> None:
    net = Net(me=3)
    a = net.blocks[0]
    net.start()
    _accept(net, 0, a)
    net.echo([net.cast(PV, 0, a)])
    net.echo(net.feed_votes([0, 1], PV, 0, net.h(a)))  # we lock and precommit A
    assert net.feed_votes([0], PC, 0, net.h(a)) == []
    assert net.feed_votes([1], PC, 0, NIL) == [_t(TimeoutKind.PRECOMMIT, 0)]
    net.timeout(TimeoutKind.PRECOMMIT, 0)
    assert net.timeout(TimeoutKind.PROPOSE, 1) == [net.cast(PV, 1, None)]
    # Validator 2's round-0 precommit arrives while we are in round 1: A has 2f+1 in round 0.
    [commit] = net.feed_votes([2], PC, 0, net.h(a))
    assert isinstance(commit, CommitBlock)
    assert commit.block == a and commit.certificate.round == 0
    assert [s.validator for s in commit.certificate.signatures] == sorted(
        [net.addrs[0], net.addrs[2], net.addrs[3]]
    )
    verify_commit(
        net.suite, net.vset, commit.certificate, chain_id=CHAIN, height=1, block_hash=net.h(a)
    )


def test_commit_from_previous_round() -> None:
    net = Net(me=3)
    a = net.blocks[0]
    net.start()
    # f+1 validators in round 2: skip there without ever seeing round 0.
    assert net.feed_votes([0, 1], PV, 2, NIL) == [_t(TimeoutKind.PROPOSE, 2)]
    assert net.core.round == 2
    # Round 0's precommits for A (2f+1), then its proposal: validate, then commit A from round 0.
    assert net.feed_votes([0, 1, 2], PC, 0, net.h(a)) == []
    ev = net.proposal(0, a)
    assert net.core.handle(ev) == [
        BroadcastProposal(ev.proposal, a),
        ValidateProposal(1, net.h(a), a),
    ]
    [commit] = net.validated(a)
    assert isinstance(commit, CommitBlock) and commit.certificate.round == 0
    assert net.core.vote_power(0, PV) == 0  # we never prevoted


def test_node_behind_by_one_height_buffers_and_finishes() -> None:
    net = Net(me=3)
    a = net.blocks[0]
    net.start()
    # Peers are already at height 2: their proposal and precommits are checked and buffered.
    state2, _ = apply_block(net.state, a)
    cert = CommitCertificate(CHAIN, 1, 0, net.h(a), ())
    signed = sorted(
        (net.vote(i, PC, 0, net.h(a), time_ms=a.header.time_ms + 10 + i) for i in range(3)),
        key=lambda v: v.validator,
    )
    cert = replace(
        cert, signatures=tuple(CommitSig(v.validator, v.time_ms, v.signature) for v in signed)
    )
    b2 = propose_block(state2, [], proposer=net.addrs[1], last_commit=cert).block
    ev = net.proposal(0, b2, proposer=1, height=2)  # proposer(2, 0) is validator 1
    assert net.core.proposer(2, 0) == net.addrs[1]
    assert net.core.handle(ev) == [BroadcastProposal(ev.proposal, b2)]
    assert net.feed_votes([0, 1, 2], PC, 0, net.h(b2), height=2) == []
    # Height 1 still finishes on 2f+1 precommits for A.
    net.core.handle(net.proposal(0, a))
    net.validated(a)
    [commit] = net.feed_votes([0, 1, 2], PC, 0, net.h(a))
    assert isinstance(commit, CommitBlock)
    # At height 2 the buffered messages are replayed: validate, then commit at once.
    acts = net.start(2)
    assert acts == [
        ValidateProposal(2, net.h(b2), b2),
        _t(TimeoutKind.PROPOSE, 0, height=2),
        _t(TimeoutKind.PRECOMMIT, 0, height=2),  # the buffered 2f+1 precommits (rule 47)
    ]
    [commit2] = net.validated(b2, height=2)
    assert isinstance(commit2, CommitBlock) and commit2.block == b2


def test_skip_to_higher_round_on_f_plus_one_votes() -> None:
    net = Net(me=3)
    net.start()
    assert net.feed_votes([0], PV, 5, NIL) == []  # 10 of 40: not more than a third
    assert net.core.round == 0
    assert net.feed_votes([1], PC, 5, NIL) == [_t(TimeoutKind.PROPOSE, 5)]  # 20 of 40: skip
    assert (net.core.round, net.core.step) == (5, Step.PROPOSE)
    # Round 7: its proposer's proposal counts as a message from it, with one vote: skip again.
    # (proposer of height 1, round 7 is validator 3 = us, so the skip makes us build.)
    net.feed_votes([0], PV, 7, NIL)
    assert net.feed_votes([1], PV, 7, NIL) == [
        BuildProposal(1, 7, NO_POL_ROUND, None),
        _t(TimeoutKind.PROPOSE, 7),
    ]


def test_proposer_reproposes_valid_value() -> None:
    net = Net(me=1)  # proposer of round 1
    a = net.blocks[0]
    net.start()
    _accept(net, 0, a)
    net.echo([net.cast(PV, 0, a)])
    acts = net.feed_votes([0, 2], PV, 0, net.h(a))
    assert acts == [_t(TimeoutKind.PREVOTE, 0), net.cast(PC, 0, a, polka=[0, 1, 2])]
    assert (net.core.valid_round, net.core.valid_block) == (0, a)
    net.echo(acts)
    net.feed_votes([0, 2], PC, 0, NIL)
    assert net.timeout(TimeoutKind.PRECOMMIT, 0) == [
        BuildProposal(1, 1, 0, a),
        _t(TimeoutKind.PROPOSE, 1),
    ]
    # The shell signs (A, pol_round 0) and feeds it back: it is gossiped with its proof of lock
    # (the round-0 prevotes for A), and we prevote it on that polka.
    ev = net.proposal(1, a, pol_round=0)
    assert net.core.handle(ev) == [
        BroadcastProposal(ev.proposal, a, net.votes([0, 1, 2], PV, 0, net.h(a))),
        net.cast(PV, 1, a),
    ]


def test_valid_value_updates_even_after_precommitting_nil() -> None:
    net = Net(me=3)
    a = net.blocks[0]
    net.start()
    assert net.timeout(TimeoutKind.PROPOSE, 0) == [net.cast(PV, 0, None)]
    net.echo([net.cast(PV, 0, None)])
    net.timeout(TimeoutKind.PREVOTE, 0)
    assert net.core.step == Step.PRECOMMIT
    net.core.handle(net.proposal(0, a))
    net.validated(a)
    net.feed_votes([0, 1, 2], PV, 0, net.h(a))  # a late polka for A (rule 36 in precommit)
    assert (net.core.valid_round, net.core.valid_block) == (0, a)
    assert net.core.locked_round == -1  # no lock: we did not precommit A


def test_equivocation_produces_evidence_once() -> None:
    net = Net(me=3)
    a, b, c = (net.h(x) for x in net.blocks[:3])
    net.start()
    first = net.vote(0, PV, 0, a)
    assert net.core.handle(VoteReceived(first)) == []
    assert net.core.handle(VoteReceived(first)) == []  # a redelivery is not evidence
    second = net.vote(0, PV, 0, b)
    [rec] = net.core.handle(VoteReceived(second))
    assert isinstance(rec, RecordEvidence)
    ev = rec.evidence
    assert ev == duplicate_vote_evidence(second, first)  # canonical order, whatever came first
    assert ev.vote_a.block_hash < ev.vote_b.block_hash
    verify_duplicate_vote_evidence(net.suite, net.vset, ev)
    assert decode_evidence(ev.encode()) == ev
    # Reported once per (validator, height, round, type), and the second vote never counts.
    assert net.core.handle(VoteReceived(net.vote(0, PV, 0, c))) == []
    assert net.core.handle(VoteReceived(net.vote(0, PV, 0, NIL))) == []
    assert net.core.vote_power(0, PV, a) == 10
    assert net.core.vote_power(0, PV, b) == 0
    assert net.core.vote_power(0, PV) == 10
    # The same block with another timestamp is not evidence (nothing to prove).
    assert net.core.handle(VoteReceived(net.vote(0, PV, 0, a, time_ms=5))) == []
    # Precommits are a separate triple: a second report there.
    net.core.handle(VoteReceived(net.vote(0, PC, 0, a)))
    [rec2] = net.core.handle(VoteReceived(net.vote(0, PC, 0, NIL)))
    assert isinstance(rec2, RecordEvidence) and rec2.evidence.vote_a.block_hash == NIL


def test_duplicate_vote_evidence_verification_rejects_forgeries() -> None:
    net = Net()
    a, b = (net.h(x) for x in net.blocks[:2])
    good = duplicate_vote_evidence(net.vote(0, PV, 0, a), net.vote(0, PV, 0, b))
    verify_duplicate_vote_evidence(net.suite, net.vset, good)
    forged = replace(good.vote_b, signature=bytes(64))
    with pytest.raises(InvalidEvidenceError):
        verify_duplicate_vote_evidence(net.suite, net.vset, replace(good, vote_b=forged))
    outsider = net.suite.keypair_from_secret(b"\x55" * 32)
    others = ValidatorSet(
        (Validator(net.suite.address(outsider.public_key), outsider.public_key, 10),)
    )
    with pytest.raises(InvalidEvidenceError):
        verify_duplicate_vote_evidence(net.suite, others, good)
    with pytest.raises(WireFormatError):  # not conflicting: other rounds
        duplicate_vote_evidence(net.vote(0, PV, 0, a), net.vote(0, PV, 1, b))
    with pytest.raises(WireFormatError):  # same block
        duplicate_vote_evidence(net.vote(0, PV, 0, a), net.vote(0, PV, 0, a, time_ms=1))
    with pytest.raises(WireFormatError):  # not canonical
        type(good)(good.vote_b, good.vote_a)


def test_votes_from_non_validators_and_bad_signatures_ignored() -> None:
    net = Net(me=3)
    a_block = net.blocks[0]
    a = net.h(a_block)
    net.start()
    outsider = net.suite.keypair_from_secret(b"\x66" * 32)
    out_addr = net.suite.address(outsider.public_key)
    bad: list[Vote] = [
        # a non-validator's well-signed vote
        sign_vote(net.suite, outsider, Vote(CHAIN, PV, 1, 0, a, 1, out_addr, b"")),
        # a validator's vote signed by someone else, or with a corrupted signature
        net.vote(0, PV, 0, a, key=outsider),
        replace(net.vote(1, PV, 0, a), signature=bytes(64)),
        replace(net.vote(2, PV, 0, a), block_hash=net.h(net.blocks[1])),
        # another chain, or a signature for another purpose
        net.vote(2, PV, 0, a, chain_id="other-chain"),
        replace(
            net.vote(2, PV, 0, a),
            signature=net.suite.sign(
                net.keys[2], CHAIN, "tx", net.vote(2, PV, 0, a).signing_bytes()
            ),
        ),
        # old height, too far ahead
        net.vote(2, PV, 0, a, height=0),
        net.vote(2, PV, 0, a, height=3),
        net.vote(2, PV, PARAMS.max_rounds_ahead + 1, a),
    ]
    for v in bad:
        assert net.core.handle(VoteReceived(v)) == []
    assert net.core.vote_power(0, PV) == 0
    assert net.core.round == 0
    # A forged signature first does not block the validator's genuine vote, nor make evidence.
    assert net.core.handle(VoteReceived(net.vote(1, PV, 0, a))) == []
    assert net.core.vote_power(0, PV, a) == 10
    # Proposals: from a validator that is not the round's proposer, with a bad signature, with
    # a block that is not the one named, or with a doctored body.
    wrong_proposer = net.proposal(0, a_block, proposer=2)
    real = net.proposal(0, a_block)
    bad_sig = ProposalReceived(replace(real.proposal, signature=bytes(64)), a_block)
    other_block = ProposalReceived(real.proposal, net.blocks[1])
    some_tx_block = replace(a_block, last_commit=CommitCertificate(CHAIN, 1, 0, a, ()))
    doctored = ProposalReceived(real.proposal, some_tx_block)
    ev_item = duplicate_vote_evidence(net.vote(0, PV, 0, a), net.vote(0, PV, 0, NIL))
    doctored_evidence = ProposalReceived(real.proposal, replace(a_block, evidence=(ev_item,)))
    for ev in (wrong_proposer, bad_sig, other_block, doctored, doctored_evidence):
        assert net.core.handle(ev) == []
    # The genuine proposal still gets through after all that.
    assert net.core.handle(real) == [
        BroadcastProposal(real.proposal, a_block),
        ValidateProposal(1, a, a_block),
    ]


def test_resume_keeps_the_lock_after_a_restart() -> None:
    net = Net(me=3)
    a, b = net.blocks[0], net.blocks[2]
    acts = net.start(resume=Resume(round=2, locked_round=1, locked_block_hash=net.h(a)))
    assert acts == [_t(TimeoutKind.PROPOSE, 2)]
    assert (net.core.round, net.core.locked_round) == (2, 1)
    assert _accept(net, 2, b) == [net.cast(PV, 2, None)]  # locked on A: no prevote for B


def test_proposals_per_round_are_bounded() -> None:
    net = Net(me=3)
    net.start()
    state = net.state
    extra = [
        propose_block(
            replace(state, last_time_ms=state.last_time_ms), [], proposer=x, last_commit=None
        ).block
        for x in net.addrs
    ]
    accepted = 0
    for block in [*net.blocks, *extra]:
        out = net.core.handle(net.proposal(0, block))
        accepted += any(isinstance(x, BroadcastProposal) for x in out)
    assert accepted == min(PARAMS.max_proposals_per_round, 4)


def test_same_events_same_actions() -> None:
    def run() -> list[Any]:
        net = Net(me=2)
        a = net.blocks[0]
        log: list[Any] = list(net.start())
        log += _accept(net, 0, a)
        log += net.feed_votes([0, 1, 3], PV, 0, net.h(a))
        log += net.feed_votes([0, 1, 3], PC, 0, net.h(a))
        return log

    assert run() == run()


def test_signed_proposal_rejects_malformed_fields() -> None:
    base: dict[str, Any] = {
        "chain_id": CHAIN,
        "height": 1,
        "round": 0,
        "block_hash": b"\x01" * 32,
        "pol_round": -1,
        "proposer": b"\x02" * 20,
        "signature": b"",
    }
    SignedProposal(**base)
    for name, value in (("height", 0), ("round", -1), ("block_hash", b"x"), ("proposer", b"y")):
        with pytest.raises(WireFormatError):
            SignedProposal(**{**base, name: value})


def test_equivocators_second_vote_counts_only_for_its_own_value() -> None:
    """The paper counts distinct senders per value. A node that saw an equivocator's nil vote
    first must still recognise a polka for A that includes the same validator's A vote (else it
    could never accept the proof of lock others acted on); "any" counts the validator once."""
    net = Net(me=3)
    a = net.blocks[0]
    net.start()
    net.core.handle(net.proposal(0, a))
    assert net.core.handle(VoteReceived(net.vote(0, PV, 0, NIL))) == []
    [rec] = net.core.handle(VoteReceived(net.vote(0, PV, 0, net.h(a))))
    assert isinstance(rec, RecordEvidence)
    assert net.core.vote_power(0, PV, NIL) == 10
    assert net.core.vote_power(0, PV, net.h(a)) == 10
    assert net.core.vote_power(0, PV) == 10  # once towards "any"
    # With two honest prevotes for A that is a polka for A: after validation we lock on it.
    net.validated(a)
    net.echo([net.cast(PV, 0, a)])
    acts = net.feed_votes([1], PV, 0, net.h(a))
    assert acts == [_t(TimeoutKind.PREVOTE, 0), net.cast(PC, 0, a, polka=[0, 1, 3])]
    # A conflicting vote for a hash nobody proposed is evidence but is not stored or counted.
    unknown = b"\x42" * 32
    assert net.core.handle(VoteReceived(net.vote(2, PC, 0, unknown))) == []  # a first vote
    assert net.core.vote_power(0, PC, unknown) == 10
    [ev] = net.core.handle(VoteReceived(net.vote(2, PC, 0, b"\x43" * 32)))
    assert isinstance(ev, RecordEvidence)
    assert net.core.vote_power(0, PC, b"\x43" * 32) == 0


def test_reproposal_carries_its_proof_of_lock() -> None:
    """A node that missed round 0 accepts a round-2 re-proposal of A with pol_round 0 when the
    round-0 prevotes travel with it (ProposalReceived.pol_votes), and relays them on."""
    net = Net(me=3)
    a = net.blocks[0]
    net.start()
    net.feed_votes([0, 1], PV, 2, NIL)  # skip to round 2 (proposer: validator 2)
    proof = net.votes([0, 1, 2], PV, 0, net.h(a))
    p = net.proposal(2, a, pol_round=0).proposal
    acts = net.core.handle(ProposalReceived(p, a, proof))
    assert acts == [BroadcastProposal(p, a, proof), ValidateProposal(1, net.h(a), a)]
    assert net.validated(a) == [net.cast(PV, 2, a)]
    # Votes in the proof that are not prevotes of that round for that block are ignored.
    net2 = Net(me=3)
    net2.start()
    net2.feed_votes([0, 1], PV, 2, NIL)
    junk = (net2.vote(0, PC, 0, net2.h(a)), net2.vote(1, PV, 1, net2.h(a)))
    net2.core.handle(ProposalReceived(p, a, junk))
    assert net2.core.vote_power(0, PC) == 0 and net2.core.vote_power(1, PV) == 0


def test_resume_restores_the_valid_value_and_its_polka() -> None:
    """A restarted proposer whose record holds its lock, the block and the polka re-proposes
    the locked block with its proof of lock, as it would have without the crash."""
    net = Net(me=1)  # proposer of round 1
    a = net.blocks[0]
    polka = net.votes([0, 1, 2], PV, 0, net.h(a))
    resume = Resume(1, locked_round=0, locked_block_hash=net.h(a), locked_block=a, polka=polka)
    assert net.start(resume=resume) == [
        ValidateProposal(1, net.h(a), a),
        BuildProposal(1, 1, 0, a),
        _t(TimeoutKind.PROPOSE, 1),
    ]
    assert (net.core.valid_round, net.core.locked_round) == (0, 0)
    ev = net.proposal(1, a, pol_round=0)
    assert net.core.handle(ev) == [BroadcastProposal(ev.proposal, a, polka)]
    assert net.validated(a) == [net.cast(PV, 1, a)]
    # A record whose polka does not check out restores the lock but not the valid value.
    net2 = Net(me=1)
    forged = tuple(replace(v, signature=bytes(64)) for v in polka)
    resume2 = Resume(1, locked_round=0, locked_block_hash=net.h(a), locked_block=a, polka=forged)
    assert net2.start(resume=resume2) == [
        BuildProposal(1, 1, NO_POL_ROUND, None),
        _t(TimeoutKind.PROPOSE, 1),
    ]
    assert (net2.core.valid_round, net2.core.locked_round) == (-1, 0)


def test_gossip_votes_cover_the_rounds_that_matter() -> None:
    net = Net(me=3)
    a = net.blocks[0]
    _lock_in_round_0(net, a)  # locked and valid at round 0, now in round 1
    net.timeout(TimeoutKind.PROPOSE, 1)
    net.feed_votes([0], PV, 1, NIL)
    gossip = net.core.gossip_votes()
    assert {(v.round, v.vote_type) for v in gossip} == {(0, PV), (0, PC), (1, PV)}
    assert len(gossip) == len(set(gossip)) == 3 + 3 + 1
