"""Look-through index over real stores: the demo's business story committed by a LocalChain."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from consortia.cli import app
from consortia.crypto import KeyPair, encrypt_key_file
from consortia.ledger.types import Transaction, TxStatus
from consortia.lookthrough.index import (
    LookthroughError,
    LookthroughIndex,
    large_payments_with_identities,
)
from consortia.lookthrough.surveillance import HOLDING_STEP, LARGE_VALUE_PAYMENT
from consortia.node.demo import RehearsalClock, _Signer
from consortia.node.home import init_home
from consortia.node.local import ACCOUNTS_DIR, VALIDATORS_DIR, LocalChain, load_key_dir
from consortia.node.story import Outcome, Story, demo_identity, run_story

PASSWORD = "lookthrough-test"


@dataclass
class StoryHome:
    home: Path
    chain_id: str
    keys: dict[str, KeyPair]
    checks: list[tuple[str, bool, str]]


def run_story_home(home: Path, chain_id: str, *, stop_after: int | None = None) -> StoryHome:
    """Commit the demo's business story into a LocalChain home (rehearsal clock)."""
    init_home(home, chain_id=chain_id, password=PASSWORD, scrypt_n=1 << 10)
    validators = load_key_dir(home / VALIDATORS_DIR, PASSWORD)
    accounts = load_key_dir(home / ACCOUNTS_DIR, PASSWORD)
    clock = RehearsalClock()
    chain = LocalChain(home, validators, clock_ms=clock)
    signer = _Signer(chain.suite, chain_id)
    checks: list[tuple[str, bool, str]] = []

    class InProcess:
        def submit(self, txs: list[Transaction], label: str) -> list[Outcome]:
            committed = chain.commit(txs)
            by_hash = {r.tx_hash: r for r in committed.receipts}
            out = []
            for tx in txs:
                r = by_hash.get(tx.hash(chain.suite))
                out.append(
                    Outcome(False, "NOT_INCLUDED", None)
                    if r is None
                    else Outcome(r.status == TxStatus.OK, r.code, committed.block.header.height)
                )
            return out

        def get(self, key: bytes) -> bytes | None:
            return chain.state.tree.get(key)

        def now_ms(self) -> int:
            return max(clock(), chain.state.last_time_ms)

        def advance_to(self, time_ms: int) -> bool:
            clock.advance_to(time_ms)
            chain.commit([])
            return True

    story = Story(
        InProcess(),
        chain.suite,
        accounts,
        signer.tx,
        lambda n, ok, d: checks.append((n, ok, d)),
        lambda _m: None,
    )
    try:
        run_story(story)
    finally:
        chain.close()
    return StoryHome(home, chain_id, story.keys, checks)


@pytest.fixture(scope="module")
def two_chains(tmp_path_factory: pytest.TempPathFactory) -> tuple[StoryHome, StoryHome]:
    base = tmp_path_factory.mktemp("lookthrough")
    a = run_story_home(base / "chain-a", "biz-a")
    b = run_story_home(base / "chain-b", "biz-b")
    # The story's fund steps depend on the rehearsal clock against wall time (not needed here);
    # the securities, e-CNY and settlement steps before them must have run.
    first_fund = next(i for i, (name, _, _) in enumerate(a.checks) if "NAV" in name)
    assert all(ok for _, ok, _ in a.checks[: first_fund - 1]), a.checks[:first_fund]
    return a, b


def test_index_story_chain_and_queries(
    two_chains: tuple[StoryHome, StoryHome], tmp_path: Path
) -> None:
    a, _ = two_chains
    with LookthroughIndex(tmp_path / "idx.db") as idx:
        progress = idx.follow_home(a.home)
        assert progress.height == progress.head > 10
        # Holder register of 000001 at the head agrees with the sum of issued shares.
        holders = idx.holders("000001")
        accounts = {h["account_id"]: h["balance"] for h in holders}
        assert accounts["SA-BOB"] >= 1_000
        assert "SA-ALICE" in accounts
        # History of SA-BOB shows the DvP and the failing DvP (with its code).
        hist = idx.history("SA-BOB")
        calls = [(h["call"], h["outcome"]) for h in hist]
        assert ("settlement.instruct", "OK") in calls
        assert any(call == "settlement.instruct" and out != "OK" for call, out in calls)
        # Investor look-through: accounts and wallets with balances.
        alice = idx.investor("INV-ALICE")
        chain = alice["chains"][0]
        assert chain["accounts"][0]["account_id"] == "SA-ALICE"
        assert "W-ALICE" in {w["wallet_id"] for w in chain["wallets"]}
        # Large-value payments were indexed and raised alerts; a disclosure step too.
        assert idx.large_payments()
        assert idx.alerts(LARGE_VALUE_PAYMENT)
        assert idx.alerts(HOLDING_STEP)


def test_holders_at_height_is_exact(
    two_chains: tuple[StoryHome, StoryHome], tmp_path: Path
) -> None:
    a, _ = two_chains
    with LookthroughIndex(tmp_path / "idx.db") as idx:
        idx.follow_home(a.home)
        changes = idx.db.execute(
            "SELECT height, account_id, balance FROM holdings WHERE chain_id='biz-a' "
            "AND code='000001' ORDER BY height"
        ).fetchall()
        assert len({h for h, _, _ in changes}) >= 2
        first_h = changes[0][0]
        at_first = {h["account_id"]: h["balance"] for h in idx.holders("000001", first_h)}
        expected = {acc: bal for h, acc, bal in changes if h == first_h and bal}
        assert at_first == expected
        assert idx.holders("000001", first_h - 1) == []
        # Every register entry is the last change at or before the height.
        last_h = changes[-1][0]
        for height in {h for h, _, _ in changes} | {last_h + 5}:
            want: dict[str, int] = {}
            for h, acc, bal in changes:
                if h <= height:
                    want[acc] = bal
            got = {x["account_id"]: x["balance"] for x in idx.holders("000001", height)}
            assert got == {k: v for k, v in want.items() if v}


def test_restart_resumes_without_double_counting(
    two_chains: tuple[StoryHome, StoryHome], tmp_path: Path
) -> None:
    a, _ = two_chains
    db = tmp_path / "idx.db"
    with LookthroughIndex(db) as idx:
        first = idx.follow_home(a.home, limit=7)
        assert first.height == 7 and first.head > 7
    with LookthroughIndex(db) as idx:  # a restart resumes at 8
        second = idx.follow_home(a.home)
        assert second.indexed == second.head - 7
        again = idx.follow_home(a.home)
        assert again.indexed == 0
        resumed = (
            idx.holders("000001"),
            idx.investor("INV-BOB"),
            idx.alerts(),
            idx.history("W-BOB"),
        )
    with LookthroughIndex(tmp_path / "once.db") as idx:
        idx.follow_home(a.home)
        once = (idx.holders("000001"), idx.investor("INV-BOB"), idx.alerts(), idx.history("W-BOB"))
    assert resumed == once


def test_reindexing_a_block_is_a_no_op_and_gaps_are_refused(
    two_chains: tuple[StoryHome, StoryHome], tmp_path: Path
) -> None:
    from consortia.ledger.types import decode_block, decode_receipts
    from consortia.node.local import DATA_DIR
    from consortia.storage import ChainStore

    a, _ = two_chains
    with (
        LookthroughIndex(tmp_path / "idx.db") as idx,
        ChainStore.open(a.home / DATA_DIR, readonly=True) as store,
    ):
        idx.follow_store(store, "biz-a", limit=3)
        raw, receipts, bh = store.block(3), store.receipts(3), store.block_hash(3)
        assert raw and receipts and bh
        assert not idx.ingest(decode_block(raw), decode_receipts(receipts).receipts, block_hash=bh)
        raw5, rec5, bh5 = store.block(5), store.receipts(5), store.block_hash(5)
        assert raw5 and rec5 and bh5
        with pytest.raises(LookthroughError, match="does not follow"):
            idx.ingest(decode_block(raw5), decode_receipts(rec5).receipts, block_hash=bh5)
        assert idx.indexed_height("biz-a") == 3


def test_index_follows_a_live_store_while_the_chain_commits(tmp_path: Path) -> None:
    """The node keeps committing; the index picks up exactly the new blocks."""
    home = tmp_path / "live"
    init_home(home, chain_id="biz-live", password=PASSWORD, scrypt_n=1 << 10)
    chain = LocalChain(home, load_key_dir(home / VALIDATORS_DIR, PASSWORD))
    try:
        with LookthroughIndex(tmp_path / "idx.db") as idx:
            chain.commit([])
            chain.commit([])
            assert idx.follow_store(chain.store, "biz-live").indexed == 2
            chain.commit([])
            assert idx.follow_store(chain.store, "biz-live").indexed == 1
            assert idx.indexed_height("biz-live") == 3
    finally:
        chain.close()


def test_two_chains_investor_look_through(
    two_chains: tuple[StoryHome, StoryHome], tmp_path: Path
) -> None:
    a, b = two_chains
    with LookthroughIndex(tmp_path / "idx.db") as idx:
        idx.follow_home(a.home)
        idx.follow_home(b.home)
        assert {c for c, _ in idx.chains()} == {"biz-a", "biz-b"}
        bob = idx.investor("INV-BOB")
        assert [c["chain_id"] for c in bob["chains"]] == ["biz-a", "biz-b"]
        per_chain = [c["accounts"][0]["holdings"] for c in bob["chains"]]
        assert per_chain[0] == per_chain[1] and per_chain[0].get("000001", 0) > 0
        assert bob["total_holdings"] == {
            f"{chain}:{code}": amount
            for chain, held in zip(("biz-a", "biz-b"), per_chain, strict=True)
            for code, amount in held.items()
        }
        cash = [sum(w["balance_fen"] for w in c["wallets"]) for c in bob["chains"]]
        assert bob["total_ecny_fen"] == sum(cash) > 0
        # The index's e-CNY balance equals the chain's own wallet record.
        from consortia import codec
        from consortia.modules.ecny import Wallet, wallet_key
        from consortia.modules.securities import Holding, holding_key
        from consortia.node.local import DATA_DIR
        from consortia.storage import ChainStore

        with ChainStore.open(a.home / DATA_DIR, readonly=True) as store:
            for wallet_id in ("W-ALICE", "W-BOB", "W-CAROL", "W-DAN", "W-ISSUER"):
                raw = store.state_get(wallet_key(wallet_id))
                assert raw is not None
                w = codec.decode_struct(Wallet, raw)
                assert idx.wallet_balance("biz-a", wallet_id) == w.balance, wallet_id
            for h in idx.holders("000001", chain_id="biz-a"):
                raw = store.state_get(holding_key("000001", h["account_id"]))
                assert raw is not None
                assert codec.decode_struct(Holding, raw).balance == h["balance"]


def _identity_strings() -> list[bytes]:
    out = []
    for name in ("alice", "bob", "carol", "dan", "issuer", "insurer", "fund manager"):
        ident = demo_identity(name)
        out += [ident["name"].encode(), ident["id_number"].encode()]
    return out


def test_large_payments_open_identities_at_query_time_only(
    two_chains: tuple[StoryHome, StoryHome], tmp_path: Path
) -> None:
    a, _ = two_chains
    db = tmp_path / "idx.db"
    with LookthroughIndex(db) as idx:
        idx.follow_home(a.home)
        rows = large_payments_with_identities(idx, [a.home], a.keys["regulator"])
        assert rows
        names = {r["payer_identity"]["name"] for r in rows if isinstance(r["payer_identity"], dict)}
        assert demo_identity("alice")["name"] in names
        # Another key opens nothing.
        wrong = large_payments_with_identities(idx, [a.home], a.keys["exchange-admin"])
        assert all(isinstance(r["payer_identity"], str) for r in wrong)
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("idx.db"))
    for secret in _identity_strings():
        assert secret not in blob


def test_cli_supervise(two_chains: tuple[StoryHome, StoryHome], tmp_path: Path) -> None:
    a, b = two_chains
    db = str(tmp_path / "idx.db")
    runner = CliRunner()
    r = runner.invoke(
        app, ["supervise", "index", "--db", db, "--home", str(a.home), "--home", str(b.home)]
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["supervise", "investor", "INV-ALICE", "--db", db, "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["chains"]) == 2
    r = runner.invoke(app, ["supervise", "holders", "000001", "--height", "1000", "--db", db])
    assert r.exit_code == 0 and "SA-ALICE" in r.output
    r = runner.invoke(app, ["supervise", "history", "SA-BOB", "--db", db])
    assert r.exit_code == 0 and "settlement.instruct" in r.output
    r = runner.invoke(app, ["supervise", "alerts", "--db", db])
    assert r.exit_code == 0 and LARGE_VALUE_PAYMENT in r.output
    key = tmp_path / "regulator.key"
    key.write_bytes(encrypt_key_file(a.keys["regulator"], PASSWORD, scrypt_n=1 << 10))
    env: dict[str, Any] = {"CONSORTIA_KEY_PASSWORD": PASSWORD}
    r = runner.invoke(
        app,
        [
            "supervise",
            "large-payments",
            "--db",
            db,
            "--home",
            str(a.home),
            "--regulator-key",
            str(key),
            "--json",
        ],
        env=env,
    )
    assert r.exit_code == 0, r.output
    assert demo_identity("alice")["name"] in r.stdout
    # Clear errors, no tracebacks.
    r = runner.invoke(app, ["supervise", "index", "--db", db, "--home", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    r = runner.invoke(app, ["supervise", "alerts", "--db", str(tmp_path / "missing.db")])
    assert r.exit_code == 2 and "no index" in r.output
