"""Ledger-core throughput on this machine; prints one JSON object as its last line.

    .venv/bin/python bench/ledger.py            # full run (< 2 minutes on the 2-core dev box)
    .venv/bin/python bench/ledger.py --quick    # smaller counts, for a smoke run

Figures (per second, one process, one core unless said otherwise):
- sign / verify for each suite (domain-separated signatures, as the chain uses them);
- tx decode + verify: strict canonical decode of a signed transaction plus its signature check;
- Merkle appends (RFC 6962 log) and inclusion proofs generated + verified;
- state updates applied in 1,000-key batches to a 100k-key tree, and proofs generated + verified;
- 1,000-transaction blocks committed by the single-process chain: propose (execute), re-validate
  (execute again, as a peer would), certify (4 precommit signatures), and one fsync'd atomic store
  commit — transactions are signed beforehand, as clients would.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from consortia.cli.progress import stages
from consortia.crypto import get_suite
from consortia.ledger.merkle import MerkleLog, verify_inclusion
from consortia.ledger.state_tree import StateTree, verify_state_proof
from consortia.ledger.types import (
    decode_transaction,
    sign_transaction,
    verify_transaction_signature,
)
from consortia.node.home import init_home
from consortia.node.local import ACCOUNTS_DIR, VALIDATORS_DIR, LocalChain, load_key_dir


def rate(n: int, fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def bench_suite(name: str, n: int) -> dict[str, float]:
    suite = get_suite(name)
    kp = suite.generate_keypair()
    msgs = [os.urandom(100) for _ in range(n)]
    sigs: list[bytes] = []

    def sign() -> None:
        sigs.extend(suite.sign(kp, "bench", "tx", m) for m in msgs)

    def verify() -> None:
        for m, s in zip(msgs, sigs, strict=True):
            assert suite.verify(kp.public_key, "bench", "tx", m, s)

    txs = [
        sign_transaction(
            suite,
            kp,
            chain_id="bench",
            nonce=i,
            module="registry",
            method="register_org",
            args={"org_id": f"org-{i}", "name": "A name of typical length", "kind": "broker"},
        ).encode()
        for i in range(n)
    ]

    def decode_verify() -> None:
        for raw in txs:
            tx = decode_transaction(raw)
            assert verify_transaction_signature(suite, tx, kp.public_key)

    return {
        f"{name}_sign_per_s": round(rate(n, sign)),
        f"{name}_verify_per_s": round(rate(n, verify)),
        f"{name}_tx_decode_verify_per_s": round(rate(n, decode_verify)),
    }


def bench_merkle(n: int) -> dict[str, float]:
    h = get_suite("intl").hash
    log = MerkleLog(h)
    leaves = [os.urandom(64) for _ in range(n)]

    def append() -> None:
        for leaf in leaves:
            log.append(leaf)

    appends = rate(n, append)
    size = log.size
    root = log.root()
    k = min(n, 5_000)

    def proofs() -> None:
        for i in range(0, size, max(1, size // k)):
            verify_inclusion(h, leaves[i], i, size, log.inclusion_proof(i, size), root)

    proved = len(range(0, size, max(1, size // k)))
    return {
        "merkle_appends_per_s": round(appends),
        "merkle_proofs_generated_and_verified_per_s": round(rate(proved, proofs)),
    }


def bench_state(keys: int, batches: int) -> dict[str, float]:
    h = get_suite("intl").hash
    tree = StateTree.from_items(h, ((os.urandom(32), os.urandom(100)) for _ in range(keys)))
    batch_list = [{os.urandom(32): os.urandom(100) for _ in range(1_000)} for _ in range(batches)]

    def update() -> None:
        nonlocal tree
        for batch in batch_list:
            tree = tree.update(batch)
            _ = tree.root  # include hashing: a block needs its root

    updates = rate(batches * 1_000, update)
    present = [k for batch in batch_list for k in batch][:5_000]
    probe = present + [os.urandom(32) for _ in range(1_000)]  # members and non-members
    root = tree.root

    def proofs() -> None:
        for key in probe:
            verify_state_proof(h, root, tree.prove(key))

    return {
        "state_tree_keys": len(tree),
        "state_updates_per_s": round(updates),
        "state_proofs_generated_and_verified_per_s": round(rate(len(probe), proofs)),
    }


def bench_blocks(suite_name: str, blocks: int, txs_per_block: int) -> dict[str, float]:
    password = "bench"
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "node"
        init_home(home, suite_name=suite_name, password=password, scrypt_n=1 << 10)
        vkeys = load_key_dir(home / VALIDATORS_DIR, password)
        broker = load_key_dir(home / ACCOUNTS_DIR, password)["broker-a-admin"]
        with LocalChain(home, vkeys) as chain:
            suite = chain.suite
            work = []
            nonce = 0
            for _ in range(blocks):
                block_txs = []
                for _ in range(txs_per_block):
                    investor = suite.generate_keypair()
                    block_txs.append(
                        sign_transaction(
                            suite,
                            broker,
                            chain_id=chain.state.chain_id,
                            nonce=nonce,
                            module="registry",
                            method="register_account",
                            args={
                                "public_key": investor.public_key,
                                "org_id": "broker-a",
                                "roles": ["investor"],
                            },
                        )
                    )
                    nonce += 1
                work.append(block_txs)
            start = time.perf_counter()
            for block_txs in work:
                committed = chain.commit(block_txs)
                assert len(committed.block.transactions) == txs_per_block
            elapsed = time.perf_counter() - start
    return {
        f"{suite_name}_blocks_committed_per_s_{txs_per_block}tx": round(blocks / elapsed, 2),
        f"{suite_name}_block_txs_per_s": round(blocks * txs_per_block / elapsed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (smoke run)")
    args = parser.parse_args()
    q = args.quick
    started = time.perf_counter()
    results: dict[str, float | str] = {"machine_cores": os.cpu_count() or 0}
    # Progress on stderr (a bar on a terminal); stdout is only the JSON result.
    with stages("ledger benchmarks", 6) as stage:
        for name, n in (("intl", 300 if q else 3_000), ("gm", 50 if q else 400)):
            stage(f"crypto suite {name}")
            results.update(bench_suite(name, n))
        stage("merkle")
        results.update(bench_merkle(2_000 if q else 100_000))
        stage("state tree")
        results.update(bench_state(5_000 if q else 100_000, 2 if q else 10))
        for name, blocks in (("intl", 1 if q else 5), ("gm", 1 if q else 2)):
            stage(f"blocks ({name})")
            results.update(bench_blocks(name, blocks, 100 if q else 1_000))
    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
