"""The Tendermint consensus algorithm as a pure state machine: events in, actions out.

This is Algorithm 1 of Buchman, Kwon and Milosevic, "The latest gossip on BFT consensus" (2018),
for one node. The paper's rules are the ``_on_*`` methods below, one per rule, named after it and
citing its lines. After every event the core re-evaluates the rules until none fires (the paper's
``upon`` clauses are conditions on the state and the message log, not on the latest message).

The core does no I/O: no sockets, no clock, no threads, no randomness. It does not know whether a
vote is its own: the shell signs what ``CastVote`` asks for and feeds the signed vote back as
``VoteReceived``, exactly like a peer's (h11's rule: one state machine, no special side). Every
message passes the entry checks (chain, height, round window, membership, signature, proposer)
before it can count, so a byzantine message never does.

Deviations from the paper, each for a reason:

- Heights are driven by the shell: after ``CommitBlock`` the core waits for ``NewHeight`` (the
  shell applies and stores the block first, and knows the next validator set).
- ``valid(v)`` is asynchronous: the core asks ``ValidateProposal`` and rules needing validity wait
  for ``ProposalValidated``; the propose timeout covers slow execution.
- Rules 36 and 49 need the block ``v``, not the proposal message of that exact round: a block is
  identified by its hash and 2f+1 votes for the hash are the proof (CometBFT likewise fetches the
  block a majority voted for). This lets a node that missed a round's proposal still lock/commit.
- The propose timeout is scheduled for the proposer too (as CometBFT does), so a proposer whose
  shell cannot sign (double-sign protection after a restart) does not stall its round.
- Each validator counts once towards "2f+1 of any kind" and at most once per value; an
  equivocator's second vote is evidence and counts for its own value only if that is nil or a
  proposed block (bounded memory). The paper counts distinct senders per value; counting only
  the first vote let the simulator find a deadlock (a node that saw the "other" vote first could
  never recognise the polka a locked validator re-proposed with).
- A re-proposal travels with its proof of lock (``pol_votes``: the 2f+1 prevotes of its
  ``pol_round``), as CometBFT gossips POL prevotes, so a node that missed that round can apply
  rule 28.
- ``NewHeight.resume`` restores a restarted validator's lock (and, with its polka, its valid
  value): the shell persists them with its last-signed record.
"""

from __future__ import annotations

import enum

from consortia.consensus.events import (
    Action,
    BroadcastProposal,
    BuildProposal,
    CastVote,
    CommitBlock,
    Event,
    NewHeight,
    ProposalReceived,
    ProposalValidated,
    RecordEvidence,
    Resume,
    ScheduleTimeout,
    TimeoutFired,
    ValidateProposal,
    VoteReceived,
)
from consortia.consensus.evidence import duplicate_vote_evidence
from consortia.consensus.messages import NO_POL_ROUND, SignedProposal, verify_proposal_signature
from consortia.consensus.params import ConsensusParams, TimeoutKind
from consortia.consensus.proposer import ProposerSchedule
from consortia.consensus.votes import HeightLog
from consortia.crypto import Suite
from consortia.execution.apply import last_commit_hash, transactions_root
from consortia.ledger.evidence import evidence_hash
from consortia.ledger.types import Block, ValidatorSet, Vote, VoteType, verify_vote_signature

_MAX_CACHED_SCHEDULES = 4


class Step(enum.IntEnum):
    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2


class ConsensusCore:
    """One node's Tendermint state for the current height.

    ``address`` is the node's validator address, or None for an observer (which follows and
    commits but never asks to vote or propose). Feed events with ``handle``; perform the actions
    it returns in order.
    """

    def __init__(
        self,
        suite: Suite,
        chain_id: str,
        *,
        address: bytes | None = None,
        params: ConsensusParams | None = None,
    ) -> None:
        self.suite = suite
        self.chain_id = chain_id
        self.address = address
        self.params = params if params is not None else ConsensusParams()
        # The paper's state (h_p, round_p, step_p, lockedValue_p, ...); height 0 = not started.
        self.height = 0
        self.round = 0
        self.step = Step.PROPOSE
        self.decided = False
        self.locked_round = -1
        self.locked_block_hash = b""
        self.valid_round = -1
        self.valid_block: Block | None = None
        self._log: HeightLog | None = None
        self._next: HeightLog | None = None
        self._signer = False  # address is a validator at this height
        self._validity: dict[bytes, bool | None] = {}  # block hash -> valid (None = asked)
        # Rounds in which a "for the first time" rule already fired.
        self._fired_polka_any: set[int] = set()
        self._fired_polka_value: set[int] = set()
        self._fired_precommit_any: set[int] = set()
        self._schedules: dict[ValidatorSet, ProposerSchedule] = {}
        self._out: list[Action] = []

    # -----------------------------------------------------------------------------------------
    # Public interface

    def handle(self, event: Event) -> list[Action]:
        """Process one event; return the actions to perform, in order."""
        self._out = []
        if isinstance(event, NewHeight):
            self._start_height(event)
        elif self._log is not None:
            if isinstance(event, VoteReceived):
                self._admit_vote(event.vote)
            elif isinstance(event, ProposalReceived):
                self._admit_proposal(event.proposal, event.block, event.pol_votes)
            elif isinstance(event, ProposalValidated):
                self._record_validity(event)
            elif isinstance(event, TimeoutFired):
                self._on_timeout(event)
            self._apply_rules()
        out, self._out = self._out, []
        return out

    def proposer(self, height: int, round: int) -> bytes:
        """The proposer of (height, round) for the current (or next) height's validators."""
        log = self._next if self._next is not None and height == self._next.height else self._log
        if log is None:
            raise ValueError("no height started")
        return log.schedule.proposer(height, round)

    def vote_power(self, round: int, vote_type: VoteType, block_hash: bytes | None = None) -> int:
        """Power counted at the current height for ``block_hash`` (None: any) in a round."""
        tally = None if self._log is None else self._log.tallies.get((round, vote_type))
        if tally is None:
            return 0
        return tally.power_any if block_hash is None else tally.power_for(block_hash)

    def gossip_votes(self) -> list[Vote]:
        """Votes of the current height worth re-sending to peers that may have missed them.

        The paper's liveness assumes gossip: a message a correct process received reaches every
        correct process eventually. A shell re-broadcasts these when its height stalls: both
        vote types of the current and previous round and of the valid and locked rounds (the
        polkas a re-proposal needs), at most 4 rounds x 2 types x one vote per validator and
        value.
        """
        log = self._log
        if log is None or self.decided:
            return []
        rounds = dict.fromkeys(
            r for r in (self.round, self.round - 1, self.valid_round, self.locked_round) if r >= 0
        )
        votes: list[Vote] = []
        for r in rounds:
            for vote_type in (VoteType.PREVOTE, VoteType.PRECOMMIT):
                tally = log.tallies.get((r, vote_type))
                if tally is not None:
                    for by_validator in tally.by_value.values():
                        votes.extend(by_validator.values())
        return votes

    # -----------------------------------------------------------------------------------------
    # Heights and rounds

    def _schedule_for(self, validators: ValidatorSet) -> ProposerSchedule:
        schedule = self._schedules.get(validators)
        if schedule is None:
            if len(self._schedules) >= _MAX_CACHED_SCHEDULES:
                del self._schedules[next(iter(self._schedules))]
            schedule = self._schedules[validators] = ProposerSchedule(validators)
        return schedule

    def _start_height(self, event: NewHeight) -> None:
        """Paper lines 52-54 (h_p <- h_p + 1, reset, StartRound(0)), on the shell's word."""
        if event.height < 1 or (self._log is not None and event.height <= self.height):
            return  # heights only go up
        nxt = self._next
        if nxt is not None and nxt.height == event.height and nxt.validators == event.validators:
            log = nxt  # messages buffered while we finished the previous height
        else:
            log = HeightLog(event.height, event.validators, self._schedule_for(event.validators))
        self._log = log
        self._next = HeightLog(
            event.height + 1, event.next_validators, self._schedule_for(event.next_validators)
        )
        self.height = event.height
        self.round, self.step = 0, Step.PROPOSE
        self.decided = False
        self.locked_round, self.locked_block_hash = -1, b""
        self.valid_round, self.valid_block = -1, None
        self._signer = self.address is not None and log.validators.get(self.address) is not None
        self._validity = {}
        self._fired_polka_any.clear()
        self._fired_polka_value.clear()
        self._fired_precommit_any.clear()
        for block_hash, block in log.blocks.items():
            self._request_validation(block_hash, block)
        start_round = 0
        if event.resume is not None:
            start_round = self._resume(event.resume)
        self._start_round(start_round)
        self._apply_rules()

    def _resume(self, resume: Resume) -> int:
        """Restore the lock a restarted validator persisted; return the round to start in.

        The polka votes go through the normal entry checks; if they still prove a polka for the
        locked block, that block is also the valid value (as rule 36 had set it), so this node
        can re-propose it with its proof of lock.
        """
        self.round = max(0, resume.round)
        self.locked_round = resume.locked_round
        self.locked_block_hash = resume.locked_block_hash
        for vote in resume.polka:
            self._admit_vote(vote)
        block = resume.locked_block
        log = self._current()
        if (
            block is not None
            and resume.locked_round >= 0
            and block.hash(self.suite) == resume.locked_block_hash
            and log.tally(resume.locked_round, VoteType.PREVOTE).power_for(resume.locked_block_hash)
            >= log.quorum
        ):
            log.blocks.setdefault(resume.locked_block_hash, block)
            self._request_validation(resume.locked_block_hash, block)
            self.valid_round, self.valid_block = resume.locked_round, block
        return self.round

    def _start_round(self, round: int) -> None:
        """StartRound, lines 11-21."""
        self.round = round
        self.step = Step.PROPOSE
        log = self._current()
        if self._signer and log.schedule.proposer(self.height, round) == self.address:
            if self.valid_block is not None:
                self._emit(BuildProposal(self.height, round, self.valid_round, self.valid_block))
            else:
                self._emit(BuildProposal(self.height, round, NO_POL_ROUND, None))
        self._schedule_timeout(TimeoutKind.PROPOSE)

    # -----------------------------------------------------------------------------------------
    # Entry checks: only what passes them is in the message log

    def _log_for(self, chain_id: str, height: int, round: int) -> HeightLog | None:
        """The log a message of (height, round) belongs in, or None to drop it.

        Current height (until decided) within ``max_rounds_ahead`` of our round; the next height
        within ``max_rounds_ahead`` of round 0; everything else (old, or too far ahead) dropped.
        """
        if chain_id != self.chain_id or round < 0:
            return None
        if height == self.height and not self.decided:
            log, base = self._log, self.round
        elif height == self.height + 1:
            log, base = self._next, 0
        else:
            return None
        if round > base + self.params.max_rounds_ahead:
            return None
        return log

    def _admit_vote(self, vote: Vote) -> None:
        log = self._log_for(vote.chain_id, vote.height, vote.round)
        if log is None or vote.vote_type not in (VoteType.PREVOTE, VoteType.PRECOMMIT):
            return
        member = log.validators.get(vote.validator)
        if member is None:
            return  # not a validator at this height
        tally = log.tally(vote.round, VoteType(vote.vote_type))
        if tally.has(vote.validator, vote.block_hash):
            return  # a redelivery, or the same value with another timestamp: nothing new
        existing = tally.by_validator.get(vote.validator)
        if existing is not None and vote.block_hash and vote.block_hash not in log.blocks:
            # A conflicting vote for a block nobody proposed to us: evidence, but not worth
            # memory (an equivocator could sign endlessly many).
            self._check_equivocation(log, existing, vote, member.public_key)
            return
        if not verify_vote_signature(self.suite, vote, member.public_key):
            return
        if existing is not None:
            self._report_equivocation(log, existing, vote)
        log.add_vote(vote, member.power)

    def _check_equivocation(
        self, log: HeightLog, existing: Vote, vote: Vote, public_key: bytes
    ) -> None:
        if verify_vote_signature(self.suite, vote, public_key):
            self._report_equivocation(log, existing, vote)

    def _report_equivocation(self, log: HeightLog, existing: Vote, vote: Vote) -> None:
        """A validly signed second vote for another value by one validator at one (height,
        round, type) is evidence, reported once per triple. It never adds to the "any" power,
        and counts for its own value only (see ``VoteTally``)."""
        key = (vote.validator, vote.round, int(vote.vote_type))
        if key not in log.evidenced:
            log.evidenced.add(key)
            self._emit(RecordEvidence(duplicate_vote_evidence(existing, vote)))

    def _admit_proposal(
        self, proposal: SignedProposal, block: Block, pol_votes: tuple[Vote, ...]
    ) -> None:
        log = self._log_for(proposal.chain_id, proposal.height, proposal.round)
        if log is None:
            return
        if proposal.proposer != log.schedule.proposer(proposal.height, proposal.round):
            return
        in_round = log.proposals.get(proposal.round, {})
        if proposal.block_hash in in_round:
            return  # a redelivery (or the same block with another pol_round: the first counts)
        if len(in_round) >= self.params.max_proposals_per_round:
            return
        known = log.blocks.get(proposal.block_hash)
        if known is not None:
            block = known
        elif not self._block_matches(block, proposal):
            return
        member = log.validators.get(proposal.proposer)
        assert member is not None  # the schedule only names members
        if not verify_proposal_signature(self.suite, proposal, member.public_key):
            return
        log.add_proposal(proposal, block, member.power)
        # Its proof of lock after the proposal: an equivocator's vote for the proposed block
        # can then count (the block is known), see VoteTally.
        self._admit_pol_votes(log, proposal, pol_votes)
        proof: tuple[Vote, ...] = ()
        vr = proposal.pol_round
        if vr >= 0 and log.tally(vr, VoteType.PREVOTE).power_for(proposal.block_hash) >= log.quorum:
            proof = log.votes_for(vr, VoteType.PREVOTE, proposal.block_hash)
        self._emit(BroadcastProposal(proposal, block, proof))
        if log is self._log:
            self._request_validation(proposal.block_hash, block)

    def _admit_pol_votes(
        self, log: HeightLog, p: SignedProposal, pol_votes: tuple[Vote, ...]
    ) -> None:
        """The proof of lock sent with a re-proposal: its prevotes, admitted like any votes."""
        if p.pol_round < 0:
            return
        for vote in pol_votes[: 2 * len(log.validators.validators)]:
            if (vote.height, vote.round, vote.vote_type, vote.block_hash) == (
                p.height,
                p.pol_round,
                VoteType.PREVOTE,
                p.block_hash,
            ):
                self._admit_vote(vote)

    def _block_matches(self, block: Block, proposal: SignedProposal) -> bool:
        """The block is the one the proposal names, body included.

        The block hash covers only the header; checking the transactions, last-commit and
        evidence roots here means a relay cannot pair a genuine proposal with a doctored body
        and get the proposed block judged invalid.
        """
        header = block.header
        return (
            header.chain_id == self.chain_id
            and header.height == proposal.height
            and block.hash(self.suite) == proposal.block_hash
            and header.transactions_root == transactions_root(self.suite, block.transactions)
            and header.last_commit_hash == last_commit_hash(self.suite, block.last_commit)
            and header.evidence_hash == evidence_hash(self.suite, block.evidence)
        )

    def _request_validation(self, block_hash: bytes, block: Block) -> None:
        if block_hash not in self._validity:
            self._validity[block_hash] = None
            self._emit(ValidateProposal(self.height, block_hash, block))

    def _record_validity(self, event: ProposalValidated) -> None:
        if event.height == self.height and event.block_hash in self._validity:
            self._validity[event.block_hash] = event.valid

    # -----------------------------------------------------------------------------------------
    # The rules of Algorithm 1

    def _apply_rules(self) -> None:
        """Fire rules until none applies (each firing changes state, so this terminates)."""
        rules = (
            self._on_commit_value,
            self._on_round_skip,
            self._on_proposal_in_propose_step,
            self._on_proposal_with_polka_in_propose,
            self._on_polka_any,
            self._on_polka_for_value,
            self._on_polka_nil,
            self._on_precommit_any,
        )
        fired = True
        while fired and not self.decided:
            fired = False
            for rule in rules:
                if self.decided:
                    return
                if rule():
                    fired = True

    def _on_proposal_in_propose_step(self) -> bool:
        """Lines 22-27: a fresh proposal (vr = -1) from the round's proposer, in step propose:
        prevote it if valid and we are not locked on something else, else prevote nil."""
        if self.step != Step.PROPOSE:
            return False
        log = self._current()
        for proposal in log.round_proposals(self.round):
            if proposal.pol_round != NO_POL_ROUND:
                continue
            v = proposal.block_hash
            valid = self._validity.get(v)
            if valid is None:
                return False  # wait for execution (or the propose timeout)
            if valid and (self.locked_round == -1 or self.locked_block_hash == v):
                self._cast(VoteType.PREVOTE, v)
            else:
                self._cast(VoteType.PREVOTE, b"")
            self.step = Step.PREVOTE
            return True
        return False

    def _on_proposal_with_polka_in_propose(self) -> bool:
        """Lines 28-33: a re-proposal with a polka (2f+1 prevotes for v in round vr < round_p):
        prevote v if valid and our lock is no newer than vr (or is v), else prevote nil."""
        if self.step != Step.PROPOSE:
            return False
        log = self._current()
        for proposal in log.round_proposals(self.round):
            vr, v = proposal.pol_round, proposal.block_hash
            if not 0 <= vr < self.round:
                continue
            if log.tally(vr, VoteType.PREVOTE).power_for(v) < log.quorum:
                continue
            valid = self._validity.get(v)
            if valid is None:
                return False
            if valid and (self.locked_round <= vr or self.locked_block_hash == v):
                self._cast(VoteType.PREVOTE, v)
            else:
                self._cast(VoteType.PREVOTE, b"")
            self.step = Step.PREVOTE
            return True
        return False

    def _on_polka_any(self) -> bool:
        """Lines 34-35: 2f+1 prevotes of any kind in this round, first time: start the prevote
        timeout."""
        if self.step != Step.PREVOTE or self.round in self._fired_polka_any:
            return False
        if self._current().tally(self.round, VoteType.PREVOTE).power_any < self._current().quorum:
            return False
        self._fired_polka_any.add(self.round)
        self._schedule_timeout(TimeoutKind.PREVOTE)
        return True

    def _on_polka_for_value(self) -> bool:
        """Lines 36-43: a polka for a valid v in this round while in prevote or later, first
        time: in prevote, lock v and precommit it; either way v becomes the valid value."""
        if self.step < Step.PREVOTE or self.round in self._fired_polka_value:
            return False
        log = self._current()
        v = log.tally(self.round, VoteType.PREVOTE).quorum_value
        if v is None:
            return False
        block = log.blocks.get(v)
        if block is None or self._validity.get(v) is not True:
            return False
        self._fired_polka_value.add(self.round)
        if self.step == Step.PREVOTE:
            self.locked_round, self.locked_block_hash = self.round, v
            self._cast(VoteType.PRECOMMIT, v, log.votes_for(self.round, VoteType.PREVOTE, v))
            self.step = Step.PRECOMMIT
        self.valid_round, self.valid_block = self.round, block
        return True

    def _on_polka_nil(self) -> bool:
        """Lines 44-46: 2f+1 prevotes for nil in this round, in step prevote: precommit nil."""
        if self.step != Step.PREVOTE:
            return False
        log = self._current()
        if log.tally(self.round, VoteType.PREVOTE).power_for(b"") < log.quorum:
            return False
        self._cast(VoteType.PRECOMMIT, b"")
        self.step = Step.PRECOMMIT
        return True

    def _on_precommit_any(self) -> bool:
        """Lines 47-48: 2f+1 precommits of any kind in this round, first time: start the
        precommit timeout."""
        if self.round in self._fired_precommit_any:
            return False
        log = self._current()
        if log.tally(self.round, VoteType.PRECOMMIT).power_any < log.quorum:
            return False
        self._fired_precommit_any.add(self.round)
        self._schedule_timeout(TimeoutKind.PRECOMMIT)
        return True

    def _on_commit_value(self) -> bool:
        """Lines 49-54: 2f+1 precommits for a valid v in ANY round r: decide v.

        Also how a node that never prevoted (late, restarted, an observer) finishes the height.
        The certificate is exactly those precommits, sorted by validator.
        """
        log = self._current()
        for r, v in log.precommit_quorums:
            block = log.blocks.get(v)
            if block is None:
                continue  # wait for the block (gossip or block sync)
            valid = self._validity.get(v)
            if valid is None:
                self._request_validation(v, block)
                continue
            if not valid:
                continue  # 2f+1 precommits for an invalid block: more than f are faulty
            self.decided = True
            self._emit(CommitBlock(block, log.certificate(self.chain_id, r, v)))
            return True
        return False

    def _on_round_skip(self) -> bool:
        """Lines 55-56: messages from more than 1/3 of the power (f+1) in a higher round: at
        least one honest validator is there, so skip to it (the highest such round)."""
        log = self._current()
        target = -1
        for r, power in log.round_power.items():
            if r > self.round and 3 * power > log.total_power and r > target:
                target = r
        if target < 0:
            return False
        self._start_round(target)
        return True

    def _on_timeout(self, event: TimeoutFired) -> None:
        if event.kind == TimeoutKind.PROPOSE:
            self._on_timeout_propose(event.height, event.round)
        elif event.kind == TimeoutKind.PREVOTE:
            self._on_timeout_prevote(event.height, event.round)
        else:
            self._on_timeout_precommit(event.height, event.round)

    def _on_timeout_propose(self, height: int, round: int) -> None:
        """Lines 57-60: no acceptable proposal in time: prevote nil."""
        if self._live(height, round) and self.step == Step.PROPOSE:
            self._cast(VoteType.PREVOTE, b"")
            self.step = Step.PREVOTE

    def _on_timeout_prevote(self, height: int, round: int) -> None:
        """Lines 61-64: no polka for a value in time: precommit nil."""
        if self._live(height, round) and self.step == Step.PREVOTE:
            self._cast(VoteType.PRECOMMIT, b"")
            self.step = Step.PRECOMMIT

    def _on_timeout_precommit(self, height: int, round: int) -> None:
        """Lines 65-67: no decision in this round: go to the next."""
        if self._live(height, round):
            self._start_round(self.round + 1)

    # -----------------------------------------------------------------------------------------
    # Helpers

    def _current(self) -> HeightLog:
        assert self._log is not None
        return self._log

    def _live(self, height: int, round: int) -> bool:
        return height == self.height and round == self.round and not self.decided

    def _emit(self, action: Action) -> None:
        self._out.append(action)

    def _schedule_timeout(self, kind: TimeoutKind) -> None:
        duration = self.params.timeout_ms(kind, self.round)
        self._emit(ScheduleTimeout(kind, self.height, self.round, duration))

    def _cast(self, vote_type: VoteType, block_hash: bytes, polka: tuple[Vote, ...] = ()) -> None:
        """Ask the shell to sign and broadcast a vote (observers never do)."""
        if not self._signer:
            return
        min_time_ms = 0
        block = self._current().blocks.get(block_hash) if block_hash else None
        if block is not None:
            min_time_ms = block.header.time_ms + 1
        self._emit(CastVote(vote_type, self.height, self.round, block_hash, min_time_ms, polka))
