"""The demo story's smart-contract chapter when the contract cannot be compiled: it fails
loudly (a failed check naming the fix) and submits nothing. The chapter's success path runs in
every demo test (tests/test_node.py) and in the SDK story (tests/test_sdk.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from consortia.crypto import get_suite
from consortia.ledger.types import Transaction
from consortia.node.story import Outcome, Story, prepaid_escrow


class _NoChain:
    """A chain the chapter must never reach: any submission or read is recorded."""

    def __init__(self) -> None:
        self.touched: list[str] = []

    def submit(self, txs: list[Transaction], label: str) -> list[Outcome]:
        self.touched.append(f"submit {label}")
        return [Outcome(True, "", 1) for _ in txs]

    def get(self, key: bytes) -> bytes | None:
        self.touched.append(f"get {key!r}")
        return None

    def now_ms(self) -> int:
        return 0

    def advance_to(self, time_ms: int) -> bool:
        return False


@pytest.fixture
def no_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CONSORTIA_SOLC_JS", str(tmp_path / "no-solc"))
    prepaid_escrow.cache_clear()  # an earlier test may have compiled it with the real solc-js
    yield
    prepaid_escrow.cache_clear()


@pytest.mark.usefixtures("no_compiler")
def test_contract_chapter_fails_clearly_without_the_compiler() -> None:
    chain = _NoChain()
    checks: list[tuple[str, bool, str]] = []
    suite = get_suite("intl")

    def sign(*_args: object) -> Transaction:
        raise AssertionError("nothing may be signed")

    story = Story(
        chain,
        suite,
        {},
        sign,
        lambda label, ok, detail: checks.append((label, ok, detail)),
        lambda _m: None,
    )
    story.contracts()
    assert len(checks) == 1
    label, ok, detail = checks[0]
    assert "PrepaidEscrow.sol compiles" in label and not ok
    assert "solc-js is not installed" in detail and "scripts/toolchain.sh" in detail
    assert chain.touched == []
