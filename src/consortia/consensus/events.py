"""What goes into the consensus core (events) and what comes out (actions).

All are frozen dataclasses. The shell (a real node, or the simulator) turns network messages,
timers and execution results into events, and performs the actions: it signs, broadcasts,
schedules timers, executes and commits blocks. The core never does any of that itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from consortia.consensus.evidence import DuplicateVoteEvidence
from consortia.consensus.messages import NO_POL_ROUND, SignedProposal
from consortia.consensus.params import TimeoutKind
from consortia.ledger.types import Block, CommitCertificate, ValidatorSet, Vote, VoteType

# ---------------------------------------------------------------------------------------------
# Events (in)


@dataclass(frozen=True)
class Resume:
    """Where a restarted validator picks up a height it had already signed messages in.

    ``round`` is the round of its last signed message; ``locked_round``/``locked_block_hash`` its
    last non-nil precommit at this height (its lock), ``locked_block`` that block and ``polka``
    the 2f+1 prevotes that justified it (from ``CastVote.polka``). A shell persists these before
    signing. Without the lock a restarted honest validator could prevote against its own
    precommit, which with f byzantine validators breaks safety; without the block and its polka
    nobody may be able to re-propose the locked value, and locked validators would wait forever.
    """

    round: int
    locked_round: int = -1
    locked_block_hash: bytes = b""
    locked_block: Block | None = None
    polka: tuple[Vote, ...] = ()


@dataclass(frozen=True)
class NewHeight:
    """Start consensus on ``height`` (the shell has the state after ``height - 1``).

    ``validators`` decide ``height``; ``next_validators`` decide ``height + 1`` (validator-set
    changes take effect at a fixed offset, so both are known), which lets the core check and
    buffer messages from peers that are already one height ahead.
    """

    height: int
    validators: ValidatorSet
    next_validators: ValidatorSet
    resume: Resume | None = None


@dataclass(frozen=True)
class ProposalReceived:
    """A proposal and its block, from a peer or fed back by the shell after BuildProposal;
    ``pol_votes`` is the proof of lock a re-proposal travels with (see BroadcastProposal)."""

    proposal: SignedProposal
    block: Block
    pol_votes: tuple[Vote, ...] = ()


@dataclass(frozen=True)
class VoteReceived:
    """A signed prevote or precommit, from a peer or the node's own (fed back after CastVote)."""

    vote: Vote


@dataclass(frozen=True)
class TimeoutFired:
    """A timer set by ScheduleTimeout went off."""

    kind: TimeoutKind
    height: int
    round: int


@dataclass(frozen=True)
class ProposalValidated:
    """The shell executed the block ``block_hash`` on its state (``apply_block``): valid or not."""

    height: int
    block_hash: bytes
    valid: bool


Event = NewHeight | ProposalReceived | VoteReceived | TimeoutFired | ProposalValidated

# ---------------------------------------------------------------------------------------------
# Actions (out)


@dataclass(frozen=True)
class BuildProposal:
    """It is this node's turn to propose at (height, round).

    With ``block`` set, re-propose that valid value with ``pol_round`` (its polka round);
    otherwise build a fresh block (``propose_block``) and use ``NO_POL_ROUND``. Either way the
    shell signs a ``SignedProposal`` and feeds it back as ``ProposalReceived``.
    """

    height: int
    round: int
    pol_round: int = NO_POL_ROUND
    block: Block | None = None


@dataclass(frozen=True)
class ValidateProposal:
    """Execute ``block`` on the state after ``height - 1``; answer with ProposalValidated."""

    height: int
    block_hash: bytes
    block: Block


@dataclass(frozen=True)
class CastVote:
    """Sign and broadcast a vote (``block_hash`` b"" = nil), then feed it back as VoteReceived.

    The shell must persist (height, round, step) — and for a non-nil precommit the lock — BEFORE
    signing, and refuse to sign anything conflicting (double-sign protection). The vote's time is
    the shell's clock, but at least ``min_time_ms`` (one past the block's time), so that the BFT
    time of the certificate, hence the next block's time, increases.
    """

    vote_type: VoteType
    height: int
    round: int
    block_hash: bytes
    min_time_ms: int = 0
    polka: tuple[Vote, ...] = ()  # a non-nil precommit's justification: persist with the lock


@dataclass(frozen=True)
class BroadcastProposal:
    """Gossip a proposal the core accepted (own or a peer's) to every peer.

    For a re-proposal (``pol_round`` >= 0) ``pol_votes`` are the prevotes of that round for the
    block, when the core has 2f+1 of them: peers need that proof of lock to accept it (rule 28),
    and may have missed those votes. Peers get them back as ``ProposalReceived.pol_votes``.
    """

    proposal: SignedProposal
    block: Block
    pol_votes: tuple[Vote, ...] = ()


@dataclass(frozen=True)
class ScheduleTimeout:
    """Call back with ``TimeoutFired(kind, height, round)`` after ``duration_ms``."""

    kind: TimeoutKind
    height: int
    round: int
    duration_ms: int


@dataclass(frozen=True)
class CommitBlock:
    """``block`` is decided; ``certificate`` (2f+1 precommits of one round) passes verify_commit.

    The core then waits for the shell's ``NewHeight`` (after it applied and stored the block).
    """

    block: Block
    certificate: CommitCertificate


@dataclass(frozen=True)
class RecordEvidence:
    """A validator signed two different votes for one height/round/type."""

    evidence: DuplicateVoteEvidence


Action = (
    BuildProposal
    | ValidateProposal
    | CastVote
    | BroadcastProposal
    | ScheduleTimeout
    | CommitBlock
    | RecordEvidence
)
