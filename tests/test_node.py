"""The single-process chain end to end: commit, restart, verify, and tamper detection on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consortia.cli import app
from consortia.ledger.types import TxStatus, sign_transaction
from consortia.node.home import init_home
from consortia.node.local import (
    ACCOUNTS_DIR,
    DATA_DIR,
    VALIDATORS_DIR,
    LocalChain,
    NodeError,
    load_key_dir,
)
from consortia.node.verify import verify_chain
from consortia.storage import ChainStore
from tests.netkit import free_base_port
from tests.twotierkit import free_two_tier_base

PASSWORD = "test-password"


def _flip_stored_byte(home: Path, height: int, offset_in_block: int, mask: int = 0x01) -> bytes:
    """Flip one byte of block ``height`` where LMDB really keeps it (not a stale page copy).

    Copy-on-write leaves old page versions in the file, so the block's bytes can occur more than
    once; the live copy is the one whose change the store reads back. Returns the pristine file.
    """
    data_file = home / DATA_DIR / "data.mdb"
    pristine = data_file.read_bytes()
    with ChainStore.open(home / DATA_DIR, readonly=True) as store:
        raw = store.block(height)
    assert raw is not None
    at = pristine.find(raw)
    while at >= 0:
        content = bytearray(pristine)
        content[at + offset_in_block] ^= mask
        data_file.write_bytes(bytes(content))
        with ChainStore.open(home / DATA_DIR, readonly=True) as store:
            if store.block(height) != raw:
                return pristine
        at = pristine.find(raw, at + 1)
    raise AssertionError(f"block {height} not found verbatim in the data file")


def _build_chain(home: Path, blocks: int, suite: str = "intl") -> list[bytes]:
    """Commit ``blocks`` blocks that each register an organization; return the block hashes."""
    init_home(home, suite_name=suite, password=PASSWORD, scrypt_n=1 << 10)
    vkeys = load_key_dir(home / VALIDATORS_DIR, PASSWORD)
    admin = load_key_dir(home / ACCOUNTS_DIR, PASSWORD)["exchange-admin"]
    hashes = []
    with LocalChain(home, vkeys) as chain:
        for i in range(blocks):
            tx = sign_transaction(
                chain.suite,
                admin,
                chain_id=chain.state.chain_id,
                nonce=i,
                module="registry",
                method="register_org",
                args={
                    "org_id": f"org-{i:04d}",
                    "name": f"Organization number {i}",
                    "kind": "broker",
                },
            )
            committed = chain.commit([tx])
            assert committed.receipts[0].status == TxStatus.OK
            hashes.append(committed.certificate.block_hash)
    return hashes


@pytest.mark.parametrize("suite", ["intl", "gm"])
def test_commit_restart_and_verify(tmp_path: Path, suite: str) -> None:
    home = tmp_path / "node"
    hashes = _build_chain(home, 5, suite)
    vkeys = load_key_dir(home / VALIDATORS_DIR, PASSWORD)
    with LocalChain(home, vkeys) as chain:
        assert chain.height == 5
        assert chain.state.last_block_hash == hashes[-1]
        chain.commit([])  # continues after restart, with the stored certificate as last commit
    verdict = verify_chain(home)
    assert verdict.ok, verdict.reason
    assert verdict.head_height == 6


def test_flipped_byte_in_a_stored_block_is_found_and_named(tmp_path: Path) -> None:
    home = tmp_path / "node"
    _build_chain(home, 8)
    with ChainStore.open(home / DATA_DIR, readonly=True) as store:
        raw = store.block(5)
    assert raw is not None
    # Flip one byte inside the organization name of block 5's transaction.
    _flip_stored_byte(home, 5, raw.index(b"Organization number 4") + 3)
    verdict = verify_chain(home)
    assert not verdict.ok
    assert verdict.first_bad_height == 5, verdict.reason
    # And through the CLI: exit 1, height named.
    result = CliRunner().invoke(app, ["ledger", "verify", "--home", str(home)])
    assert result.exit_code == 1
    assert "height 5" in result.output


def test_every_single_byte_flip_in_a_block_is_detected_at_its_height(tmp_path: Path) -> None:
    home = tmp_path / "node"
    _build_chain(home, 3)
    with ChainStore.open(home / DATA_DIR, readonly=True) as store:
        raw = store.block(2)
    assert raw is not None
    data_file = home / DATA_DIR / "data.mdb"
    pristine = data_file.read_bytes()
    for offset in range(0, len(raw), max(1, len(raw) // 40)):
        _flip_stored_byte(home, 2, offset, 0x80)
        verdict = verify_chain(home)
        assert verdict.first_bad_height == 2, (offset, verdict.reason)
        data_file.write_bytes(pristine)
    data_file.write_bytes(pristine)
    assert verify_chain(home).ok


def test_node_refuses_a_home_without_genesis(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="genesis"):
        LocalChain(tmp_path, {})


def test_single_process_demo_runs_and_verifies(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "demo",
            "--single-process",
            "--home",
            str(tmp_path / "demo"),
            "--investors",
            "20",
            "--block-size",
            "10",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True
    assert all(check["ok"] for check in report["checks"])
    assert len(report["blocks"]) >= 10
    # The business story ran in full, on the rehearsal clock (fund orders confirmed at NAVs).
    names = " | ".join(check["name"] for check in report["checks"])
    for step in (
        "central bank issues",
        "each operator opens category 2 and 4 wallets",
        "cannot pay ¥2,000.01",
        "the trade settles",
        "neither leg moved",
        "cancels within the cooling-off period",
        "received ¥0.10 per share in e-CNY",
        "the cut-off decides the NAV day",
        "S-1 confirmed at",
        "S-2 confirmed at",
        "redemption pays units × NAV",
        "the waiting part takes effect",
        "open her wallet identity",
    ):
        assert step in names, step


def test_network_demo_runs_and_verifies(tmp_path: Path) -> None:
    """The one-tier network demo (--one-tier): the business chain's processes alone."""
    result = CliRunner().invoke(
        app,
        [
            "demo",
            "--one-tier",
            "--base-port",
            str(free_base_port(12)),
            "--home",
            str(tmp_path / "net"),
            "--investors",
            "20",
            "--block-size",
            "10",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True
    assert all(check["ok"] for check in report["checks"]), report["checks"]
    assert all(b["signers"] >= 3 for b in report["blocks"])


def test_two_tier_demo_runs_the_whole_story(tmp_path: Path) -> None:
    """The default demo: both tiers as processes, the story, an order down, evidence up."""
    home = tmp_path / "two-tier"
    result = CliRunner().invoke(
        app,
        [
            "demo",
            "--home",
            str(home),
            "--base-port",
            str(free_two_tier_base(chains=2, nodes_per_chain=5)),
            "--investors",
            "20",
            "--block-size",
            "10",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True
    assert all(check["ok"] for check in report["checks"]), report["checks"]
    assert all(b["signers"] >= 3 for b in report["blocks"] if b["height"] > 0)
    names = " | ".join(check["name"] for check in report["checks"])
    for step in (
        "the regulator links the tiers",
        "every business block is anchored on the supervision chain within seconds",
        "the business chain applies it with a supervision proof",
        "surveillance raises alerts",
        "filed on the supervision chain",
        "evidence bundle payment.json verifies offline",
        "evidence bundle holding.json verifies offline",
        "an altered bundle is refused",
        "ledger verify on every node of both tiers",
    ):
        assert step in names, step
    # The bundles stay in HOME/evidence and verify with the CLI from the two genesis files.
    bundle = home / "evidence" / "payment.json"
    verified = CliRunner().invoke(
        app,
        [
            "evidence",
            "verify",
            str(bundle),
            "--genesis",
            str(home / "business-1" / "genesis.json"),
            "--genesis",
            str(home / "supervision" / "genesis.json"),
        ],
    )
    assert verified.exit_code == 0, verified.output
    assert "anchored on supervision chain" in verified.output
