"""Equivocation evidence is a ledger type (blocks carry it); consensus detects it. Re-exported
here so consensus code and its users keep one import path."""

from consortia.ledger.evidence import (
    InvalidEvidenceError,
    decode_evidence,
    duplicate_vote_evidence,
    verify_duplicate_vote_evidence,
)
from consortia.ledger.types import DuplicateVoteEvidence

__all__ = [
    "DuplicateVoteEvidence",
    "InvalidEvidenceError",
    "decode_evidence",
    "duplicate_vote_evidence",
    "verify_duplicate_vote_evidence",
]
