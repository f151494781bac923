"""Double-sign protection survives restarts and refuses conflicting or regressing signatures."""

from __future__ import annotations

from pathlib import Path

import pytest

from consortia.node.signer import DoubleSignError, DoubleSignGuard, SignerStateError, SignStep


def _sig(tag: str):  # type: ignore[no-untyped-def]
    calls: list[bytes] = []

    def make(data: bytes) -> bytes:
        calls.append(data)
        return f"{tag}:{data.hex()}".encode()

    return make, calls


def test_conflicts_refused_and_state_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "signer.state"
    guard = DoubleSignGuard(path)
    make, calls = _sig("a")
    rec = guard.sign(5, 0, SignStep.PREVOTE, b"\x01" * 32, b"vote-1", make)
    assert rec.signature == b"a:" + b"vote-1".hex().encode()
    # Same step, same block: the stored record again, nothing newly signed.
    again = guard.sign(5, 0, SignStep.PREVOTE, b"\x01" * 32, b"vote-1-later-time", make)
    assert again == rec and len(calls) == 1
    # Same step, another block: equivocation.
    with pytest.raises(DoubleSignError, match="different value"):
        guard.sign(5, 0, SignStep.PREVOTE, b"\x02" * 32, b"vote-2", make)
    with pytest.raises(DoubleSignError, match="different value"):
        guard.sign(5, 0, SignStep.PREVOTE, b"", b"nil", make)
    # A restarted validator remembers.
    restarted = DoubleSignGuard(path)
    assert restarted.last == rec
    with pytest.raises(DoubleSignError):
        restarted.sign(5, 0, SignStep.PREVOTE, b"\x02" * 32, b"vote-2", make)
    with pytest.raises(DoubleSignError, match="go back"):
        restarted.sign(4, 9, SignStep.PRECOMMIT, b"\x02" * 32, b"old", make)
    with pytest.raises(DoubleSignError, match="go back"):
        restarted.sign(5, 0, SignStep.PROPOSAL, b"\x02" * 32, b"old", make)
    # Moving forward is fine.
    nxt = restarted.sign(5, 0, SignStep.PRECOMMIT, b"\x01" * 32, b"pc", make)
    assert DoubleSignGuard(path).last == nxt


def test_corrupt_state_refuses_to_sign(tmp_path: Path) -> None:
    path = tmp_path / "signer.state"
    path.write_bytes(b"\xff\x00garbage")
    with pytest.raises(SignerStateError):
        DoubleSignGuard(path)
