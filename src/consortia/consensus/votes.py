"""The message log of one height: proposals, their blocks, and votes tallied by voting power.

Only messages that passed the core's entry checks (membership, signature, proposer) get here.
Everything is bounded by the validator set (one vote per validator, round and type) and by the
rounds the core admits.
"""

from __future__ import annotations

from consortia.consensus.messages import SignedProposal
from consortia.consensus.proposer import ProposerSchedule
from consortia.ledger.types import (
    Block,
    CommitCertificate,
    CommitSig,
    ValidatorSet,
    Vote,
    VoteType,
)


class VoteTally:
    """The votes of one (height, round, type), summed by power.

    Each validator counts once towards "any" (its first vote) and at most once per value. An
    equivocator's later vote for another value is counted for that value only (the paper counts
    distinct senders per value): otherwise a node that happened to see the "wrong" vote first
    could never recognise a polka the others saw, and locked validators could wait forever.
    """

    __slots__ = ("by_validator", "by_value", "power_any", "power_by_hash", "quorum", "quorum_value")

    def __init__(self, quorum: int) -> None:
        self.quorum = quorum
        self.by_validator: dict[bytes, Vote] = {}  # each validator's first vote
        self.by_value: dict[bytes, dict[bytes, Vote]] = {}  # block hash (b"" = nil) -> votes
        self.power_by_hash: dict[bytes, int] = {}
        self.power_any = 0
        self.quorum_value: bytes | None = None  # first non-nil hash to reach 2f+1

    def has(self, validator: bytes, block_hash: bytes) -> bool:
        return validator in self.by_value.get(block_hash, {})

    def add(self, vote: Vote, power: int) -> int:
        """Count ``vote`` (not yet counted for its value); returns the value's new power."""
        voters = self.by_value.setdefault(vote.block_hash, {})
        assert vote.validator not in voters
        voters[vote.validator] = vote
        if vote.validator not in self.by_validator:
            self.by_validator[vote.validator] = vote
            self.power_any += power
        total = self.power_by_hash.get(vote.block_hash, 0) + power
        self.power_by_hash[vote.block_hash] = total
        if vote.block_hash and total >= self.quorum and self.quorum_value is None:
            self.quorum_value = vote.block_hash
        return total

    def power_for(self, block_hash: bytes) -> int:
        return self.power_by_hash.get(block_hash, 0)


class HeightLog:
    """Everything admitted for one height (the paper's message log, per height)."""

    def __init__(self, height: int, validators: ValidatorSet, schedule: ProposerSchedule) -> None:
        assert schedule.validators == validators
        self.height = height
        self.validators = validators
        self.schedule = schedule
        self.quorum = validators.quorum_power()
        self.total_power = validators.total_power
        # round -> block hash -> the first proposal of it (arrival order matters: rule 22 takes
        # the first proposal of the round).
        self.proposals: dict[int, dict[bytes, SignedProposal]] = {}
        self.blocks: dict[bytes, Block] = {}
        self.tallies: dict[tuple[int, VoteType], VoteTally] = {}
        # For the round-skip rule: who sent anything in a round, and their power.
        self.round_senders: dict[int, dict[bytes, None]] = {}
        self.round_power: dict[int, int] = {}
        # (round, block hash) pairs with 2f+1 precommits, in the order they got there.
        self.precommit_quorums: dict[tuple[int, bytes], None] = {}
        # (validator, round, type) already reported as equivocating.
        self.evidenced: set[tuple[bytes, int, int]] = set()

    def tally(self, round: int, vote_type: VoteType) -> VoteTally:
        key = (round, vote_type)
        tally = self.tallies.get(key)
        if tally is None:
            tally = self.tallies[key] = VoteTally(self.quorum)
        return tally

    def note_sender(self, round: int, validator: bytes, power: int) -> None:
        senders = self.round_senders.setdefault(round, {})
        if validator not in senders:
            senders[validator] = None
            self.round_power[round] = self.round_power.get(round, 0) + power

    def add_vote(self, vote: Vote, power: int) -> None:
        vote_type = VoteType(vote.vote_type)
        total = self.tally(vote.round, vote_type).add(vote, power)
        self.note_sender(vote.round, vote.validator, power)
        if vote_type == VoteType.PRECOMMIT and vote.block_hash and total >= self.quorum:
            self.precommit_quorums.setdefault((vote.round, vote.block_hash), None)

    def add_proposal(self, proposal: SignedProposal, block: Block, power: int) -> None:
        self.proposals.setdefault(proposal.round, {})[proposal.block_hash] = proposal
        self.blocks.setdefault(proposal.block_hash, block)
        self.note_sender(proposal.round, proposal.proposer, power)

    def round_proposals(self, round: int) -> list[SignedProposal]:
        return list(self.proposals.get(round, {}).values())

    def votes_for(self, round: int, vote_type: VoteType, block_hash: bytes) -> tuple[Vote, ...]:
        """The votes of a round and type for one block (nil: b""), sorted by validator."""
        tally = self.tallies.get((round, vote_type))
        if tally is None:
            return ()
        votes = tally.by_value.get(block_hash, {}).values()
        return tuple(sorted(votes, key=lambda v: v.validator))

    def certificate(self, chain_id: str, round: int, block_hash: bytes) -> CommitCertificate:
        """The precommits for ``block_hash`` in ``round`` as a certificate, sorted by validator."""
        sigs = tuple(
            CommitSig(v.validator, v.time_ms, v.signature)
            for v in self.votes_for(round, VoteType.PRECOMMIT, block_hash)
        )
        return CommitCertificate(chain_id, self.height, round, block_hash, sigs)
