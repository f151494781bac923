"""Double-sign protection survives restarts and refuses conflicting or regressing signatures."""

from __future__ import annotations

from pathlib import Path

import pytest

from consortia.node.signer import (
    DoubleSignError,
    DoubleSignGuard,
    Lock,
    SignerStateError,
    SignStep,
)


class _Signer:
    def __init__(self) -> None:
        self.calls = 0

    def message(self, text: bytes):  # type: ignore[no-untyped-def]
        def make() -> bytes:
            self.calls += 1
            return b"signed:" + text

        return make


def test_conflicts_refused_and_state_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "signer.state"
    guard = DoubleSignGuard(path)
    s = _Signer()
    msg = guard.sign(5, 0, SignStep.PREVOTE, b"\x01" * 32, s.message(b"vote-1"))
    assert msg == b"signed:vote-1"
    # Same step, same block: the stored message again, nothing newly signed.
    assert guard.sign(5, 0, SignStep.PREVOTE, b"\x01" * 32, s.message(b"later")) == msg
    assert s.calls == 1
    # Same step, another block (or nil): equivocation.
    with pytest.raises(DoubleSignError, match="different value"):
        guard.sign(5, 0, SignStep.PREVOTE, b"\x02" * 32, s.message(b"vote-2"))
    with pytest.raises(DoubleSignError, match="different value"):
        guard.sign(5, 0, SignStep.PREVOTE, b"", s.message(b"nil"))
    # A restarted validator remembers.
    restarted = DoubleSignGuard(path)
    assert restarted.last == guard.last
    with pytest.raises(DoubleSignError):
        restarted.sign(5, 0, SignStep.PREVOTE, b"\x02" * 32, s.message(b"vote-2"))
    with pytest.raises(DoubleSignError, match="go back"):
        restarted.sign(4, 9, SignStep.PRECOMMIT, b"\x02" * 32, s.message(b"old"))
    with pytest.raises(DoubleSignError, match="go back"):
        restarted.sign(5, 0, SignStep.PROPOSAL, b"\x02" * 32, s.message(b"old"))
    assert s.calls == 1
    # Moving forward is fine; the lock of a precommit is persisted with it and kept.
    lock = Lock(5, 0, b"\x01" * 32, b"block", (b"v1", b"v2"))
    restarted.sign(5, 0, SignStep.PRECOMMIT, b"\x01" * 32, s.message(b"pc"), lock=lock)
    restarted.sign(5, 1, SignStep.PREVOTE, b"", s.message(b"pv-nil"))
    again = DoubleSignGuard(path)
    assert again.lock_at(5) == lock and again.lock_at(6) is None
    assert again.last is not None and again.last.hrs() == (5, 1, int(SignStep.PREVOTE))
    # This height's own votes are kept for a restart (the proposal is not a vote).
    assert again.last.height_votes == (b"signed:vote-1", b"signed:pc", b"signed:pv-nil")
    again.sign(6, 0, SignStep.PROPOSAL, b"\x03" * 32, s.message(b"prop"))
    again.sign(6, 0, SignStep.PREVOTE, b"\x03" * 32, s.message(b"v6"))
    assert again.last.height_votes == (b"signed:v6",)


def test_corrupt_state_refuses_to_sign(tmp_path: Path) -> None:
    path = tmp_path / "signer.state"
    path.write_bytes(b"\xff\x00garbage")
    with pytest.raises(SignerStateError):
        DoubleSignGuard(path)
