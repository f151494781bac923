"""Double-sign protection: a validator never signs two different messages for one height/round/step.

Before a signature leaves the node, the signed height/round/step, the block hash and the signature
itself are written to disk (temp file, fsync, atomic rename, fsync of the directory). A restarted
validator loads that record and

- refuses anything at a lower (height, round, step) — it has moved past it;
- at the same (height, round, step) re-issues the stored signature only for the same block hash,
  and refuses a different one (that would be equivocation);
- signs anything higher, recording it first.

So even a crash between "signed" and "sent" cannot lead to two conflicting signatures.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from consortia import codec


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
class LastSigned:
    height: int
    round: int
    step: int
    block_hash: bytes
    signed_bytes: bytes  # exactly what was signed (a vote's bytes include its timestamp)
    signature: bytes

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

    def sign(
        self,
        height: int,
        round_: int,
        step: SignStep,
        block_hash: bytes,
        signed_bytes: bytes,
        make_signature: Callable[[bytes], bytes],
    ) -> LastSigned:
        """Sign ``signed_bytes`` for (height, round, step, block_hash), persisted before return.

        ``make_signature`` computes the actual signature; it is only called when signing is safe.
        A repeated request for the same block at the same step returns the record signed before
        (its ``signed_bytes`` may differ from the new request's, e.g. in a vote timestamp: the
        caller must then send the stored message). Raises ``DoubleSignError`` for a conflicting
        or regressing request.
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
                return last
        signature = make_signature(signed_bytes)
        record = LastSigned(height, round_, int(step), block_hash, signed_bytes, signature)
        self._persist(record)
        self.last = record
        return record

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
