"""Evidence of equivocation: one validator's two signed votes for one height, round and type.

It lives in the ledger layer because blocks carry it (``Block.evidence``) and execution records
it on chain; consensus detects it (``consortia.consensus`` re-exports these names).

An honest validator signs at most one vote per (height, round, type); two with different block
hashes are proof of misbehaviour that anyone holding the validator set can check offline
(``verify_duplicate_vote_evidence``). As in CometBFT, two votes for the same block that differ
only in their timestamp are not evidence: they cannot help anyone commit two blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

from consortia import codec
from consortia.crypto import Suite
from consortia.ledger.merkle import merkle_root
from consortia.ledger.types import (
    DuplicateVoteEvidence,
    ValidatorSet,
    Vote,
    conflict_problem,
    verify_vote_signature,
)


class InvalidEvidenceError(ValueError):
    """The evidence does not prove that a validator equivocated."""


def duplicate_vote_evidence(first: Vote, second: Vote) -> DuplicateVoteEvidence:
    """The canonical evidence for two conflicting votes, whichever arrived first."""
    a, b = (first, second) if first.block_hash < second.block_hash else (second, first)
    return DuplicateVoteEvidence(a, b)


def verify_duplicate_vote_evidence(
    suite: Suite, validators: ValidatorSet, evidence: DuplicateVoteEvidence
) -> None:
    """Raise ``InvalidEvidenceError`` unless ``evidence`` proves equivocation.

    Guarantees on return: both votes are validly signed by the same member of ``validators``, for
    the same chain, height, round and type, for two different blocks, in canonical order.
    """
    a, b = evidence.vote_a, evidence.vote_b
    problem = conflict_problem(a, b)
    if problem is not None:
        raise InvalidEvidenceError(problem)
    member = validators.get(a.validator)
    if member is None:
        raise InvalidEvidenceError(f"{a.validator.hex()} is not in the validator set")
    for name, vote in (("vote_a", a), ("vote_b", b)):
        if not verify_vote_signature(suite, vote, member.public_key):
            raise InvalidEvidenceError(f"{name} signature does not verify")


def decode_evidence(data: bytes) -> DuplicateVoteEvidence:
    return codec.decode_struct(DuplicateVoteEvidence, data, max_size=4096, max_depth=4)


def evidence_hash(suite: Suite, evidence: Sequence[DuplicateVoteEvidence]) -> bytes:
    """What a header commits to: the RFC 6962 root over the evidence encodings."""
    return merkle_root(suite.hash, [ev.encode() for ev in evidence])
