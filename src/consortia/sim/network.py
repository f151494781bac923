"""A simulated network on a virtual clock: one event queue ordered by (time, sequence number).

Messages get a random latency (so they are reordered), may be dropped or duplicated before the
network heals, and never cross a partition. Everything random comes from the simulation's one
``random.Random``, drawn in a deterministic order, so a seed replays exactly.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

from consortia.consensus import DuplicateVoteEvidence, SignedProposal, TimeoutFired
from consortia.ledger.types import Block, CommitCertificate, Vote

# ---------------------------------------------------------------------------------------------
# Messages between nodes


@dataclass(frozen=True)
class ProposalMsg:
    proposal: SignedProposal
    block: Block
    pol_votes: tuple[Vote, ...] = ()  # the proof of lock of a re-proposal


@dataclass(frozen=True)
class VoteMsg:
    vote: Vote


@dataclass(frozen=True)
class SyncRequest:
    """Send me your committed blocks from ``from_height`` on."""

    from_height: int


@dataclass(frozen=True)
class SyncResponse:
    blocks: tuple[tuple[Block, CommitCertificate], ...]


@dataclass(frozen=True)
class EvidenceMsg:
    """Equivocation evidence a node detected, gossiped so that whoever proposes next can put it
    in a block (as the production node's ``cons.evidence`` message does)."""

    evidence: DuplicateVoteEvidence


Message = ProposalMsg | VoteMsg | SyncRequest | SyncResponse | EvidenceMsg

# ---------------------------------------------------------------------------------------------
# Queue items


@dataclass(frozen=True)
class Deliver:
    dst: int
    src: int
    msg: Message


@dataclass(frozen=True)
class Timer:
    node: int
    incarnation: int  # timers of a crashed incarnation are dropped
    event: TimeoutFired


@dataclass(frozen=True)
class Tick:
    """Periodic gossip: re-send own messages, check whether to block-sync."""

    node: int
    incarnation: int


@dataclass(frozen=True)
class CrashNode:
    node: int


@dataclass(frozen=True)
class RestartNode:
    node: int


@dataclass(frozen=True)
class SetPartition:
    groups: tuple[tuple[int, ...], ...]  # () = fully connected


@dataclass(frozen=True)
class Heal:
    """The end of the fault phase: no more drops or partitions."""


@dataclass(frozen=True)
class SubmitTx:
    index: int  # into the simulation's transaction list


Item = Deliver | Timer | Tick | CrashNode | RestartNode | SetPartition | Heal | SubmitTx


class Network:
    """The virtual clock, the event queue, and the links between nodes."""

    def __init__(
        self,
        rng: random.Random,
        n: int,
        *,
        latency_ms: tuple[int, int],
        drop_rate: float,
        duplicate_rate: float,
    ) -> None:
        self.rng = rng
        self.n = n
        self.now_ms = 0
        self.latency_ms = latency_ms
        self.drop_rate = drop_rate
        self.duplicate_rate = duplicate_rate
        self.up = [True] * n
        self._group = [0] * n
        self._queue: list[tuple[int, int, Item]] = []
        self._seq = 0
        self.sent = 0
        self.dropped = 0
        self.duplicated = 0
        self.delivered = 0

    def schedule(self, at_ms: int, item: Item) -> None:
        heapq.heappush(self._queue, (max(at_ms, self.now_ms), self._seq, item))
        self._seq += 1

    def pop(self) -> Item | None:
        if not self._queue:
            return None
        at_ms, _, item = heapq.heappop(self._queue)
        self.now_ms = at_ms
        return item

    def set_partition(self, groups: tuple[tuple[int, ...], ...]) -> None:
        self._group = [0] * self.n
        for g, members in enumerate(groups):
            for node in members:
                self._group[node] = g

    def heal(self) -> None:
        self.set_partition(())
        self.drop_rate = 0.0

    def connected(self, a: int, b: int) -> bool:
        return self._group[a] == self._group[b]

    def send(self, src: int, dst: int, msg: Message) -> None:
        """Queue ``msg`` for ``dst`` after a random latency, unless the link loses it."""
        self.sent += 1
        if not self.up[src] or not self.connected(src, dst):
            self.dropped += 1
            return
        if self.drop_rate and self.rng.random() < self.drop_rate:
            self.dropped += 1
            return
        lo, hi = self.latency_ms
        self.schedule(self.now_ms + self.rng.randint(lo, hi), Deliver(dst, src, msg))
        if self.duplicate_rate and self.rng.random() < self.duplicate_rate:
            self.duplicated += 1
            self.schedule(self.now_ms + self.rng.randint(lo, 2 * hi), Deliver(dst, src, msg))

    def deliverable(self, item: Deliver) -> bool:
        """A message reaches a node that is up and still on the sender's side of any partition."""
        ok = self.up[item.dst] and self.connected(item.src, item.dst)
        if ok:
            self.delivered += 1
        else:
            self.dropped += 1
        return ok
