"""The continuous look-through follower: keeps an index file level with the business chains.

``run_follower(db, homes, stop=...)`` polls each node home every ``interval_s`` and indexes what
its node has committed since the last poll (``LookthroughIndex.follow_home``: the node's store
opened read-only, one SQLite transaction per block). It is restart-safe by construction: the
index records each chain's height with every block, so a new follower resumes at the next
height and never indexes a block twice. A chain it cannot read (the node not started yet, its
store missing or locked, another chain under the same id) is reported when the problem first
appears or changes, and retried on every poll; the other chains go on. It stops between two
blocks once ``stop`` is set (the CLI sets it on SIGTERM / SIGINT), so stopping never leaves a
block half indexed.

Off the consensus path: it only reads committed blocks; the clock here is an edge's wall clock
(for the poll interval), never block execution.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from consortia import codec
from consortia.execution.genesis import GenesisError
from consortia.lookthrough.index import ChainProgress, LookthroughError, LookthroughIndex
from consortia.node.local import NodeError
from consortia.storage import StorageError

# Blocks indexed per chain before checking ``stop`` and the other chains again.
DEFAULT_BATCH = 200
# A live chain commits blocks every fraction of a second: progress is said at most this often.
DEFAULT_REPORT_EVERY_S = 10.0

Say = Callable[[str], None]


@dataclass(frozen=True)
class FollowRound:
    """One poll over every home: progress of the chains that could be read, and one-line
    reasons for those that could not (keyed by home)."""

    progress: tuple[ChainProgress, ...]
    errors: dict[Path, str]

    @property
    def indexed(self) -> int:
        return sum(p.indexed for p in self.progress)

    @property
    def behind(self) -> bool:
        """Whether some chain still has committed blocks the index has not reached."""
        return any(p.height < p.head for p in self.progress)


def follow_round(
    index: LookthroughIndex,
    homes: Sequence[Path],
    *,
    batch: int = DEFAULT_BATCH,
    stop: threading.Event | None = None,
) -> FollowRound:
    """Index at most ``batch`` new blocks of each home's chain; never raises for a chain it
    cannot read (the reason is in ``errors``)."""
    progress: list[ChainProgress] = []
    errors: dict[Path, str] = {}
    for home in homes:
        if stop is not None and stop.is_set():
            break
        try:
            progress.append(index.follow_home(home, limit=batch))
        except (
            LookthroughError,
            NodeError,
            GenesisError,
            StorageError,
            codec.CodecError,
            OSError,
        ) as exc:
            errors[home] = str(exc) or type(exc).__name__
    return FollowRound(tuple(progress), errors)


def run_follower(
    db: Path,
    homes: Sequence[Path],
    *,
    stop: threading.Event,
    interval_s: float = 1.0,
    batch: int = DEFAULT_BATCH,
    say: Say = print,
    report_every_s: float = DEFAULT_REPORT_EVERY_S,
) -> None:
    """Follow ``homes`` into the index at ``db`` (created if absent) until ``stop`` is set.

    Says what it indexed per chain (the first time at once, then at most every
    ``report_every_s``: blocks since the last report and the height reached), each chain's
    problem when it appears or changes, and when it recovers. Raises ``LookthroughError`` only
    if the index file itself cannot be opened."""
    last_errors: dict[Path, str] = {}
    unreported: dict[str, int] = {}  # blocks indexed per chain since its last report
    reported_at: dict[str, float] = {}
    with LookthroughIndex(db) as index:
        chains = ", ".join(f"{c} at {h}" for c, h in index.chains()) or "empty"
        say(f"following {len(homes)} chain(s) into {db} ({chains}); every {interval_s:g} s")
        while not stop.is_set():
            result = follow_round(index, homes, batch=batch, stop=stop)
            now = time.monotonic()
            for p in result.progress:
                unreported[p.chain_id] = unreported.get(p.chain_id, 0) + p.indexed
                last = reported_at.get(p.chain_id)
                if unreported[p.chain_id] and (last is None or now - last >= report_every_s):
                    say(f"{p.chain_id}: +{unreported[p.chain_id]} block(s), at {p.height}/{p.head}")
                    unreported[p.chain_id] = 0
                    reported_at[p.chain_id] = now
            for home, reason in result.errors.items():
                if last_errors.get(home) != reason:
                    say(f"{home}: cannot follow: {reason} (retrying)")
            for home in set(last_errors) - set(result.errors):
                say(f"{home}: following again")
            last_errors = dict(result.errors)
            if result.behind:
                continue  # more committed blocks wait: no pause between batches
            stop.wait(interval_s)
        at = ", ".join(f"{c} at {h}" for c, h in index.chains())
        say(f"stopped: {at or 'nothing indexed'}")
