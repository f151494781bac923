"""The demo scenario: a real chain of signed transactions, committed, restarted, verified, proven.

Every step goes through the same path production uses: transactions are signed with registered
keys, blocks are built by ``propose_block``, re-validated by ``apply_block``, certified by the
validators' precommit signatures, written atomically to the store, and re-checked from genesis at
the end. Nothing is printed that was not computed.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from consortia.crypto import KeyPair, Suite
from consortia.ledger.state_tree import verify_state_proof
from consortia.ledger.types import Transaction, TxStatus, sign_transaction
from consortia.modules.registry import account_key
from consortia.node.home import init_home, key_password
from consortia.node.local import (
    ACCOUNTS_DIR,
    VALIDATORS_DIR,
    CommittedBlock,
    LocalChain,
    load_key_dir,
)
from consortia.node.story import Outcome, Story, run_story
from consortia.node.verify import ChainVerdict, verify_chain

Say = Callable[[str], None]


@dataclass
class DemoReport:
    """What the demo did, for the CLI to print (all values measured from the run)."""

    suite: str
    chain_id: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    verdict: ChainVerdict | None = None
    # Evidence bundles written and verified offline: path and what each proves.
    evidence: list[tuple[str, list[str]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.checks) and self.verdict is not None and self.verdict.ok


class _Signer:
    """Tracks nonces of the keys the demo signs with."""

    def __init__(self, suite: Suite, chain_id: str) -> None:
        self.suite = suite
        self.chain_id = chain_id
        self.nonces: dict[bytes, int] = {}

    def tx(
        self,
        key: KeyPair,
        module: str,
        method: str,
        args: dict[str, Any],
        *,
        sender: bytes | None = None,
    ) -> Transaction:
        addr = sender if sender is not None else self.suite.address(key.public_key)
        nonce = self.nonces.get(addr, 0)
        self.nonces[addr] = nonce + 1
        return sign_transaction(
            self.suite,
            key,
            chain_id=self.chain_id,
            nonce=nonce,
            module=module,
            method=method,
            args=args,
            sender=addr,
        )


def investor_openings(
    signer: _Signer, investors: int, broker_a: KeyPair, broker_b: KeyPair
) -> tuple[list[KeyPair], list[Transaction]]:
    """Fresh investor keys and the brokers' signed ``register_account`` transactions for them
    (alternating between the two securities firms)."""
    keys = [signer.suite.generate_keypair() for _ in range(investors)]
    txs = []
    for i, kp in enumerate(keys):
        broker, org = (broker_a, "broker-a") if i % 2 == 0 else (broker_b, "broker-b")
        args = {"public_key": kp.public_key, "org_id": org, "roles": ["investor"]}
        txs.append(signer.tx(broker, "registry", "register_account", args))
    return keys, txs


class RehearsalClock:
    """Wall-clock time plus an offset that only grows: lets the in-process demo run a business
    week (fund cut-offs, NAV days) in seconds. Block times still only increase."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def advance_to(self, time_ms: int) -> None:
        self.offset_ms += max(0, time_ms - self())


def _chunks(items: list[Transaction], size: int) -> Iterator[list[Transaction]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def run_demo(
    home: Path,
    *,
    suite_name: str = "intl",
    investors: int = 600,
    block_size: int = 300,
    fresh: bool = True,
    say: Say = print,
    progress: Callable[[int, int], None] | None = None,
) -> DemoReport:
    """Run the scenario in ``home`` (wiped first when ``fresh``) and return what happened."""
    if fresh and home.exists():
        shutil.rmtree(home)
    password = key_password()
    genesis = init_home(home, suite_name=suite_name, password=password)
    say(f"initialised {home} — chain {genesis.chain_id}, suite {suite_name}, 4 validators")
    validator_keys = load_key_dir(home / VALIDATORS_DIR, password)
    accounts = load_key_dir(home / ACCOUNTS_DIR, password)
    report = DemoReport(suite=suite_name, chain_id=genesis.chain_id)
    clock = RehearsalClock()
    chain = LocalChain(home, validator_keys, clock_ms=clock)
    suite = chain.suite
    signer = _Signer(suite, genesis.chain_id)

    def commit(txs: list[Transaction], label: str) -> CommittedBlock:
        nonlocal chain
        committed = chain.commit(txs)
        ok = sum(1 for r in committed.receipts if r.status == TxStatus.OK)
        report.blocks.append(
            {
                "height": committed.block.header.height,
                "label": label,
                "txs": len(committed.block.transactions),
                "ok": ok,
                "failed": len(committed.receipts) - ok,
                "rejected": len(committed.rejected),
                "hash": committed.certificate.block_hash.hex(),
                "signers": len(committed.certificate.signatures),
            }
        )
        return committed

    def check(name: str, ok: bool, detail: str) -> None:
        report.checks.append((name, ok, detail))
        say(f"{'✔' if ok else '✘'} {name}: {detail}")

    admin, regulator = accounts["exchange-admin"], accounts["regulator"]
    broker_a, broker_b = accounts["broker-a-admin"], accounts["broker-b-admin"]

    # 1. The consortium admin admits a third securities firm.
    commit(
        [
            signer.tx(
                admin,
                "registry",
                "register_org",
                {"org_id": "broker-c", "name": "Gamma Securities", "kind": "broker"},
            )
        ],
        "admit broker-c",
    )

    # 2. Brokers open investor accounts in bulk (real keys, real signatures).
    investor_keys, opening = investor_openings(signer, investors, broker_a, broker_b)
    for n, chunk in enumerate(_chunks(opening, block_size), start=1):
        commit(chunk, f"open investor accounts ({n})")
        if progress is not None:
            progress(min(n * block_size, len(opening)), len(opening))
    check(
        "investor accounts opened",
        all(
            chain.state.tree.get(account_key(suite.address(k.public_key))) is not None
            for k in investor_keys
        ),
        f"{investors} accounts in state",
    )

    # 3. Rules hold: a broker may not open accounts for another firm; nobody grants "regulator".
    alice, bob = investor_keys[0], investor_keys[1]
    blk = commit(
        [
            signer.tx(
                broker_a,
                "registry",
                "register_account",
                {
                    "public_key": suite.generate_keypair().public_key,
                    "org_id": "broker-b",
                    "roles": ["investor"],
                },
            ),
            signer.tx(
                broker_a,
                "registry",
                "set_roles",
                {"address": suite.address(alice.public_key), "roles": ["investor", "regulator"]},
            ),
        ],
        "rule violations",
    )
    codes = [r.code for r in blk.receipts]
    check("cross-firm account opening refused", codes[0] == "NOT_AUTHORIZED", codes[0])
    check("regulator role cannot be granted", codes[1] == "INVALID_ROLE", codes[1])

    # 4. Key rotation: alice rotates; her old key no longer signs for her.
    alice_new = suite.generate_keypair()
    alice_addr = suite.address(alice.public_key)
    commit(
        [signer.tx(alice, "registry", "rotate_key", {"new_public_key": alice_new.public_key})],
        "key rotation",
    )
    stale = signer.tx(
        alice, "registry", "rotate_key", {"new_public_key": suite.generate_keypair().public_key}
    )
    problems = chain.admissible([stale])
    check(
        "old key refused after rotation",
        bool(problems),
        problems[0][1] if problems else "accepted!",
    )
    signer.nonces[alice_addr] -= 1  # the stale transaction never landed
    fresh_tx = signer.tx(
        alice_new,
        "registry",
        "rotate_key",
        {"new_public_key": suite.generate_keypair().public_key},
        sender=alice_addr,
    )
    blk = commit([fresh_tx], "new key signs")
    check(
        "new key accepted",
        blk.receipts[0].status == TxStatus.OK,
        f"receipt {blk.receipts[0].status.name}",
    )

    # 5. The regulator freezes bob; his transactions fail with a stable code; then unfreezes.
    bob_addr = suite.address(bob.public_key)
    commit(
        [
            signer.tx(
                regulator,
                "registry",
                "freeze_account",
                {"address": bob_addr, "reason": "judicial assistance notice 2026-118"},
            )
        ],
        "regulator freezes an account",
    )
    blk = commit(
        [
            signer.tx(
                bob,
                "registry",
                "rotate_key",
                {"new_public_key": suite.generate_keypair().public_key},
            ),
            signer.tx(
                broker_a,
                "registry",
                "freeze_account",
                {"address": suite.address(regulator.public_key), "reason": "attempt"},
            ),
        ],
        "frozen sender, unauthorized freeze",
    )
    check(
        "frozen account cannot transact",
        blk.receipts[0].code == "ACCOUNT_FROZEN",
        blk.receipts[0].code,
    )
    check(
        "a broker cannot freeze the regulator",
        blk.receipts[1].code == "NOT_AUTHORIZED",
        blk.receipts[1].code,
    )
    commit(
        [
            signer.tx(
                regulator,
                "registry",
                "unfreeze_account",
                {"address": bob_addr, "reason": "notice lifted"},
            )
        ],
        "regulator unfreezes",
    )

    # 6. A signature made for another chain is refused before it reaches a block.
    foreign = sign_transaction(
        suite,
        broker_a,
        chain_id="another-chain",
        nonce=signer.nonces[suite.address(broker_a.public_key)],
        module="registry",
        method="set_roles",
        args={"address": bob_addr, "roles": ["investor"]},
    )
    replayed = replace(foreign, chain_id=genesis.chain_id)
    problems = chain.admissible([replayed])
    check(
        "cross-chain signature refused", bool(problems), problems[0][1] if problems else "accepted!"
    )

    # 7. Restart: reopen the store and continue from the same state root.
    root_before = chain.state.state_root
    chain.close()
    chain = LocalChain(home, validator_keys, clock_ms=clock)
    check(
        "restart restores the state",
        chain.state.state_root == root_before,
        f"height {chain.height}, root {root_before.hex()[:16]}…",
    )
    commit(
        [
            signer.tx(
                admin,
                "registry",
                "register_org",
                {"org_id": "fund-x", "name": "Xin Fund Management", "kind": "fund_manager"},
            )
        ],
        "after restart",
    )

    # 8. The business story: securities, e-CNY wallets and payments, escrow, judicial freezes.
    class _InProcess:
        def submit(self, txs: list[Transaction], label: str) -> list[Outcome]:
            committed = commit(txs, label)
            refused = {tx.hash(suite): why for tx, why in committed.rejected}
            by_hash = {r.tx_hash: r for r in committed.receipts}
            height = committed.block.header.height
            out = []
            for tx in txs:
                h = tx.hash(suite)
                if h in by_hash:
                    r = by_hash[h]
                    out.append(Outcome(r.status == TxStatus.OK, r.code, height))
                else:
                    out.append(Outcome(False, refused.get(h, "NOT_INCLUDED"), None))
            return out

        def get(self, key: bytes) -> bytes | None:
            return chain.state.tree.get(key)

        def now_ms(self) -> int:
            return max(clock(), chain.state.last_time_ms)

        def advance_to(self, time_ms: int) -> bool:
            # The next block's time is the BFT time of the last certificate: certify an empty
            # block at ``time_ms`` so the blocks after it carry that time.
            clock.advance_to(time_ms)
            commit([], "rehearsal clock moves on")
            return True

    story = Story(
        _InProcess(),
        suite,
        accounts,
        signer.tx,
        check,
        say,
    )
    run_story(story)

    # 9. Prove alice's account against the head's state root, offline.
    proof = chain.state.tree.prove(account_key(alice_addr))
    value = verify_state_proof(suite.hash, chain.state.state_root, proof)
    check(
        "state proof of an account verifies",
        value is not None,
        f"{len(proof.to_bytes())}-byte proof, root {chain.state.state_root.hex()[:16]}…",
    )
    absent = chain.state.tree.prove(account_key(bytes(20)))
    check(
        "non-membership proof verifies",
        verify_state_proof(suite.hash, chain.state.state_root, absent) is None,
        "no account at 0x00…00",
    )
    chain.close()

    # 10. Re-verify the whole stored chain from genesis.
    report.verdict = verify_chain(home)
    check("ledger verify", report.verdict.ok, report.verdict.reason)
    return report
