"""Who proposes at (height, round): Tendermint's weighted round-robin by proposer priority.

Each validator has a priority. One step: every priority grows by the validator's power, the
highest priority proposes (ties: the lowest address), and the proposer's priority drops by the
total power. So a validator with power p proposes p times in every ``total`` steps, spread out
evenly (the same scheme as nginx's smooth weighted round-robin). Before each step the priorities
are kept in a window (spread at most 2 * total) and centred on zero, as CometBFT does; starting
from all zeros with a fixed set both are no-ops, which is what makes the schedule periodic.

Step k = (height - 1) + round: CometBFT advances the set's priorities once per height and once
more per round inside a height, so (h, r + 1) and (h + 1, r) share a proposer. We compute the
schedule from the validator set alone, starting from zero priorities (CometBFT carries
priorities across validator-set changes; a deterministic function of the set keeps a node that
block-syncs or restarts in agreement without storing priorities). Its period is
``total // gcd(powers)``: after it, every validator proposed exactly ``power // gcd`` times and
all priorities are back to zero.
"""

from __future__ import annotations

from math import gcd

from consortia.ledger.types import ValidatorSet

_PRIORITY_WINDOW_FACTOR = 2
_TABLE_LIMIT = 1 << 12  # periods up to this length are tabulated once
_MAX_CHECKPOINTS = 8


def increment_priorities(priorities: list[int], powers: list[int], total: int) -> int:
    """Advance ``priorities`` (in place) by one step; return the index of the proposer.

    ``powers`` are in address order, so the first maximum is the lowest address.
    """
    window = _PRIORITY_WINDOW_FACTOR * total
    spread = max(priorities) - min(priorities)
    if spread > window:
        ratio = -(-spread // window)
        for i, p in enumerate(priorities):
            # Truncating division, like Go's int64 division.
            priorities[i] = abs(p) // ratio * (1 if p >= 0 else -1)
    average = sum(priorities) // len(priorities)
    best = 0
    for i, power in enumerate(powers):
        priorities[i] += power - average
        if priorities[i] > priorities[best]:
            best = i
    priorities[best] -= total
    return best


class ProposerSchedule:
    """The proposer sequence of one validator set (pure; memoizes what it computed)."""

    def __init__(self, validators: ValidatorSet) -> None:
        self.validators = validators
        self._addresses = [v.address for v in validators.validators]
        self._powers = [v.power for v in validators.validators]
        self._total = sum(self._powers)
        divisor = 0
        for p in self._powers:
            divisor = gcd(divisor, p)
        self.period = self._total // divisor
        self._table: list[int] | None = None
        # step -> priorities before that step (for periods too long to tabulate)
        self._checkpoints: dict[int, tuple[int, ...]] = {0: (0,) * len(self._powers)}

    def proposer(self, height: int, round: int) -> bytes:
        """The address that proposes at ``height`` (>= 1), ``round`` (>= 0)."""
        if height < 1 or round < 0:
            raise ValueError(f"no proposer for height {height}, round {round}")
        return self._addresses[self.index_at(height - 1 + round)]

    def index_at(self, step: int) -> int:
        """Index (in address order) of the validator picked by the ``step``-th increment."""
        step %= self.period
        if self.period <= _TABLE_LIMIT:
            if self._table is None:
                prios = [0] * len(self._powers)
                self._table = [
                    increment_priorities(prios, self._powers, self._total)
                    for _ in range(self.period)
                ]
            return self._table[step]
        start = max(k for k in self._checkpoints if k <= step)
        prios = list(self._checkpoints[start])
        for _ in range(start, step):
            increment_priorities(prios, self._powers, self._total)
        picked = increment_priorities(prios, self._powers, self._total)
        self._checkpoints[step + 1] = tuple(prios)
        if len(self._checkpoints) > _MAX_CHECKPOINTS:
            del self._checkpoints[min(k for k in self._checkpoints if k != 0)]
        return picked


def proposer_for(validators: ValidatorSet, height: int, round: int) -> bytes:
    """One-off convenience: the proposer at (height, round) for ``validators``."""
    return ProposerSchedule(validators).proposer(height, round)
