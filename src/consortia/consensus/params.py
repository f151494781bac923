"""Consensus parameters: timeouts that grow with the round, and the limits on what is buffered."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class TimeoutKind(enum.IntEnum):
    """The three timeouts of Algorithm 1 (lines 57-65), one per step."""

    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2


@dataclass(frozen=True)
class ConsensusParams:
    """Timeouts are ``base + round * delta`` per step (partial synchrony: every round waits a
    little longer, so after GST some round is long enough for all honest messages to arrive).

    Limits bound the memory a byzantine peer can make a node spend (TigerBeetle: put a limit on
    everything): votes and proposals for rounds beyond ``round + max_rounds_ahead`` are dropped,
    at most ``max_proposals_per_round`` distinct blocks are kept per round, and only the next
    height is buffered (at most one vote per validator, round and type there, too).
    """

    timeout_propose_ms: int = 3000
    timeout_propose_delta_ms: int = 500
    timeout_prevote_ms: int = 1000
    timeout_prevote_delta_ms: int = 500
    timeout_precommit_ms: int = 1000
    timeout_precommit_delta_ms: int = 500
    max_rounds_ahead: int = 64
    max_proposals_per_round: int = 4

    def __post_init__(self) -> None:
        for name in (
            "timeout_propose_ms",
            "timeout_prevote_ms",
            "timeout_precommit_ms",
            "max_rounds_ahead",
            "max_proposals_per_round",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        for name in (
            "timeout_propose_delta_ms",
            "timeout_prevote_delta_ms",
            "timeout_precommit_delta_ms",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    def timeout_ms(self, kind: TimeoutKind, round: int) -> int:
        """How long the ``kind`` step of ``round`` waits: base + round * delta."""
        if kind == TimeoutKind.PROPOSE:
            return self.timeout_propose_ms + round * self.timeout_propose_delta_ms
        if kind == TimeoutKind.PREVOTE:
            return self.timeout_prevote_ms + round * self.timeout_prevote_delta_ms
        return self.timeout_precommit_ms + round * self.timeout_precommit_delta_ms
