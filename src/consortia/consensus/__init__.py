"""Consensus layer: the Tendermint algorithm as a pure state machine (``core``), its events and
actions (``events``), the proposal wire type (``messages``), proposer selection (``proposer``),
vote bookkeeping (``votes``) and equivocation evidence (``evidence``). No I/O anywhere."""

from consortia.consensus.core import ConsensusCore, Step
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
from consortia.consensus.evidence import (
    DuplicateVoteEvidence,
    InvalidEvidenceError,
    duplicate_vote_evidence,
    verify_duplicate_vote_evidence,
)
from consortia.consensus.messages import (
    NO_POL_ROUND,
    PURPOSE_PROPOSAL,
    SignedProposal,
    decode_proposal,
    sign_proposal,
    verify_proposal_signature,
)
from consortia.consensus.params import ConsensusParams, TimeoutKind
from consortia.consensus.proposer import ProposerSchedule, proposer_for

__all__ = [
    "NO_POL_ROUND",
    "PURPOSE_PROPOSAL",
    "Action",
    "BroadcastProposal",
    "BuildProposal",
    "CastVote",
    "CommitBlock",
    "ConsensusCore",
    "ConsensusParams",
    "DuplicateVoteEvidence",
    "Event",
    "InvalidEvidenceError",
    "NewHeight",
    "ProposalReceived",
    "ProposalValidated",
    "ProposerSchedule",
    "RecordEvidence",
    "Resume",
    "ScheduleTimeout",
    "SignedProposal",
    "Step",
    "TimeoutFired",
    "TimeoutKind",
    "ValidateProposal",
    "VoteReceived",
    "decode_proposal",
    "duplicate_vote_evidence",
    "proposer_for",
    "sign_proposal",
    "verify_duplicate_vote_evidence",
    "verify_proposal_signature",
]
