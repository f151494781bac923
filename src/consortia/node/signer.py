"""Double-sign protection: a validator never signs two different messages for one height/round/step.

Before a signed proposal or vote leaves the node, its height/round/step, block hash, the signed
message itself and — for a non-nil precommit — the validator's lock (round, block, and the polka
that justified it) are written to disk (temp file, fsync, atomic rename, fsync of the directory).
A restarted validator loads that record and

- refuses anything at a lower (height, round, step) — it has moved past it;
- at the same (height, round, step) re-issues the stored message only for the same block hash,
  and refuses a different one (that would be equivocation);
- signs anything higher, recording it first;
- resumes consensus with its lock, so it cannot prevote against its own precommit.

So even a crash between "signed" and "sent" cannot lead to two conflicting signatures.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from consortia import codec

MAX_HEIGHT_VOTES = 16


class SignStep(enum.IntEnum):
    """Ordered as in Tendermint: a proposal precedes the prevote, which precedes the precommit."""

    PROPOSAL = 1
    PREVOTE = 2
    PRECOMMIT = 3


class DoubleSignError(Exception):
    """Signing this would contradict (or go back behind) what this validator already signed."""


class SignerStateError(Exception):
    """The persisted signer state is unreadable: refuse to sign rather than guess."""


@dataclass(frozen=True)
class Lock:
    """The last non-nil precommit of a height: round, block (encoded) and its polka (votes)."""

    height: int
    round: int
    block_hash: bytes
    block: bytes
    polka: tuple[bytes, ...]


@dataclass(frozen=True)
class LastSigned:
    height: int
    round: int
    step: int
    block_hash: bytes
    message: bytes  # the full signed message as sent (vote, or proposal with its block)
    lock: Lock | None
    # This height's own votes (bounded): a restarted validator feeds them back to consensus,
    # or a round could wait forever for 2f+1 prevotes that include its own.
    height_votes: tuple[bytes, ...]

    def hrs(self) -> tuple[int, int, int]:
        return (self.height, self.round, self.step)


class DoubleSignGuard:
    """Owns ``path``; all of a validator's consensus signatures go through ``sign``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last: LastSigned | None = None
        if path.exists():
            try:
                self.last = codec.decode_struct(LastSigned, path.read_bytes())
            except (OSError, codec.CodecError) as exc:
                raise SignerStateError(f"cannot read signer state {path}: {exc}") from exc

    def lock_at(self, height: int) -> Lock | None:
        last = self.last
        if last is None or last.lock is None or last.lock.height != height:
            return None
        return last.lock

    def sign(
        self,
        height: int,
        round_: int,
        step: SignStep,
        block_hash: bytes,
        make_message: Callable[[], bytes],
        *,
        lock: Lock | None = None,
    ) -> bytes:
        """Return the signed message for (height, round, step, block_hash), persisted first.

        ``make_message`` signs and encodes the message; it runs only when signing is safe. A
        repeated request for the same block at the same step returns the message signed before
        (the caller re-sends it as is). ``lock`` (a non-nil precommit's) is persisted with it.
        Raises ``DoubleSignError`` for a conflicting or regressing request.
        """
        hrs = (height, round_, int(step))
        last = self.last
        if last is not None:
            if hrs < last.hrs():
                raise DoubleSignError(
                    f"refusing to sign {hrs}: already signed at {last.hrs()} (would go back)"
                )
            if hrs == last.hrs():
                if block_hash != last.block_hash:
                    new, old = block_hash.hex()[:16] or "nil", last.block_hash.hex()[:16] or "nil"
                    raise DoubleSignError(
                        f"refusing to sign a second, different value at {hrs} ({new} vs {old})"
                    )
                return last.message
        message = make_message()
        kept_lock = lock if lock is not None else (last.lock if last is not None else None)
        votes = last.height_votes if last is not None and last.height == height else ()
        if step != SignStep.PROPOSAL:
            votes = (*votes, message)[-MAX_HEIGHT_VOTES:]
        record = LastSigned(height, round_, int(step), block_hash, message, kept_lock, votes)
        self._persist(record)
        self.last = record
        return message

    def forget_lock_below(self, height: int) -> None:
        """Locks of decided heights are irrelevant (kept in memory only until the next write)."""
        if self.last is not None and self.last.lock is not None and self.last.lock.height < height:
            self.last = replace(self.last, lock=None)

    def _persist(self, record: LastSigned) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        data = codec.encode_struct(record)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
