"""What one simulation run does: validators and their roles, network faults, crashes, partitions.

A ``Scenario`` is plain data; ``random_scenario(rng)`` draws one from a seeded generator, so a
seed names a scenario and its whole execution.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field


class Role(enum.Enum):
    """How a validator behaves. Everything but HONEST is byzantine (at most f of them)."""

    HONEST = "honest"
    SILENT = "silent"  # sends nothing, answers nothing
    EQUIVOCATING_PROPOSER = "equivocating-proposer"  # two different valid blocks per turn
    DOUBLE_VOTER = "double-voter"  # every vote also signed for another block, split across peers
    INVALID_PROPOSER = "invalid-proposer"  # proposes blocks with a wrong state root
    UNKNOWN_HASH_VOTER = "unknown-hash-voter"  # votes for hashes of blocks that do not exist


BYZANTINE_ROLES = tuple(r for r in Role if r is not Role.HONEST)


@dataclass(frozen=True)
class Partition:
    """From ``start_ms`` to ``end_ms`` only nodes in one group can talk to each other."""

    start_ms: int
    end_ms: int
    groups: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Crash:
    """Node ``node`` stops at ``at_ms`` and restarts at ``restart_ms`` (keeping only its disk)."""

    node: int
    at_ms: int
    restart_ms: int


@dataclass(frozen=True)
class Scenario:
    """One run. Faults (drops, partitions, crashes) happen before ``heal_at_ms``; afterwards the
    network delivers everything (with latency, duplicates and reordering) and the honest
    validators must make progress (liveness)."""

    n_validators: int = 4
    roles: tuple[Role, ...] = ()
    heights: int = 3
    latency_ms: tuple[int, int] = (5, 50)
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    partitions: tuple[Partition, ...] = ()
    crashes: tuple[Crash, ...] = ()
    heal_at_ms: int = 0
    transactions: int = 6
    powers: tuple[int, ...] = field(default=())
    observers: int = 0  # non-validator nodes that follow consensus (indices after validators)

    def __post_init__(self) -> None:
        n = self.n_validators
        if n < 1:
            raise ValueError("need at least one validator")
        if not self.roles:
            object.__setattr__(self, "roles", (Role.HONEST,) * n)
        if not self.powers:
            object.__setattr__(self, "powers", (10,) * n)
        if len(self.roles) != n or len(self.powers) != n:
            raise ValueError("roles and powers need one entry per validator")
        total = sum(self.powers)
        byzantine = sum(p for p, r in zip(self.powers, self.roles, strict=True) if r != Role.HONEST)
        if 3 * byzantine >= total:
            raise ValueError("byzantine validators must hold less than a third of the power")
        lo, hi = self.latency_ms
        if not 0 < lo <= hi:
            raise ValueError("latency range must be positive and ordered")
        for c in self.crashes:
            if self.roles[c.node] != Role.HONEST:
                raise ValueError("only honest nodes crash (byzantine ones do what they like)")
            if not 0 <= c.at_ms < c.restart_ms <= self.heal_at_ms:
                raise ValueError("a crash must restart by heal time")
        for p in self.partitions:
            if not 0 <= p.start_ms < p.end_ms <= self.heal_at_ms:
                raise ValueError("a partition must heal by heal time")
        if self.heights < 1:
            raise ValueError("run at least one height")
        if self.observers < 0:
            raise ValueError("observers cannot be negative")

    @property
    def f(self) -> int:
        return (self.n_validators - 1) // 3

    def byzantine(self) -> tuple[int, ...]:
        return tuple(i for i, r in enumerate(self.roles) if r != Role.HONEST)

    def describe(self) -> str:
        roles = ",".join(f"{i}:{r.value}" for i, r in enumerate(self.roles) if r != Role.HONEST)
        parts = [
            f"n={self.n_validators}",
            f"heights={self.heights}",
            f"byzantine=[{roles}]",
            f"latency={self.latency_ms[0]}-{self.latency_ms[1]}ms",
            f"drop={self.drop_rate:.2f}",
            f"dup={self.duplicate_rate:.2f}",
            f"partitions={len(self.partitions)}",
            f"crashes={len(self.crashes)}",
            f"heal={self.heal_at_ms}ms",
            f"observers={self.observers}",
        ]
        return " ".join(parts)


def random_scenario(rng: random.Random) -> Scenario:
    """Draw a scenario: mostly 4 validators, byzantine roles in about half the runs, and network
    faults, partitions and crashes in most runs."""
    n = rng.choice((4, 4, 4, 4, 5, 6, 7))
    f = (n - 1) // 3
    roles = [Role.HONEST] * n
    if rng.random() < 0.55:
        for i in rng.sample(range(n), rng.randint(1, f)):
            roles[i] = rng.choice(BYZANTINE_ROLES)
    heights = rng.randint(3, 5)
    lo = rng.randint(1, 20)
    latency = (lo, lo + rng.choice((5, 20, 50, 150)))
    duplicate = rng.choice((0.0, 0.0, 0.02, 0.1))
    drop, heal = 0.0, 0
    partitions: list[Partition] = []
    crashes: list[Crash] = []
    if rng.random() < 0.7:
        heal = rng.randint(1500, 8000)
        drop = rng.choice((0.0, 0.02, 0.05, 0.1, 0.25, 0.35))
        t = 0
        for _ in range(rng.randint(0, 2)):
            start = rng.randint(t, heal - 200)
            end = rng.randint(start + 100, heal)
            nodes = list(range(n))
            rng.shuffle(nodes)
            cut = rng.randint(1, n - 1)
            groups = (tuple(sorted(nodes[:cut])), tuple(sorted(nodes[cut:])))
            partitions.append(Partition(start, end, groups))
            t = end
            if t >= heal - 300:
                break
        honest = [i for i in range(n) if roles[i] == Role.HONEST]
        for node in rng.sample(honest, min(len(honest), rng.randint(0, 2))):
            at = rng.randint(0, heal - 100)
            crashes.append(Crash(node, at, rng.randint(at + 50, heal)))
    return Scenario(
        n_validators=n,
        roles=tuple(roles),
        heights=heights,
        latency_ms=latency,
        drop_rate=drop,
        duplicate_rate=duplicate,
        partitions=tuple(partitions),
        crashes=tuple(crashes),
        heal_at_ms=heal,
        transactions=rng.randint(0, 8),
        observers=1 if rng.random() < 0.25 else 0,
    )
