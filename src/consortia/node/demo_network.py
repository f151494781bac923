"""The demo on a real local network: 4 validators and a regulator's observer, each its own process.

The same scenario as the single-process demo, through the nodes' client ports: member firms'
transactions are signed here and submitted to different nodes, committed by Tendermint consensus
over mutual TLS; one validator is killed with SIGKILL mid-run and the chain keeps committing; it
restarts and catches up; at the end every node must hold the same chain, every node's store is
re-verified from genesis, and an account is proven against the head's state root.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from consortia.crypto import decrypt_key_file, get_suite
from consortia.ledger.state_tree import verify_state_proof
from consortia.ledger.types import Transaction, decode_certificate, sign_transaction
from consortia.modules.registry import account_key
from consortia.node.client import NodeUnreachableError, request
from consortia.node.demo import DemoReport, _Signer, investor_openings
from consortia.node.home import key_password
from consortia.node.local import ACCOUNTS_DIR, DATA_DIR, load_genesis, restore_state
from consortia.node.network_home import DEFAULT_BASE_PORT, NodeConfig, init_network
from consortia.node.story import Outcome, Story, run_story
from consortia.node.supervisor import node_homes, spawn_node
from consortia.node.verify import verify_chain
from consortia.storage import ChainStore

Say = Callable[[str], None]
VALIDATORS = [f"validator-{i}" for i in range(4)]
NODES = [*VALIDATORS, "observer-0"]


class ChainClients:
    """The nodes of one chain (a network home), reached through their client ports."""

    def __init__(self, home: Path, names: list[str] | None = None) -> None:
        self.home = home
        homes = [home / n for n in names] if names is not None else node_homes(home)
        self.nodes = {h.name: h for h in homes}
        self.configs = {name: NodeConfig.load(h) for name, h in self.nodes.items()}

    def call(
        self, name: str, kind: str, body: dict[str, Any], timeout_s: float = 60
    ) -> dict[str, Any]:
        cfg = self.configs[name]
        return asyncio.run(request(cfg.host, cfg.client_port, kind, body, timeout_s=timeout_s))

    def height(self, name: str) -> int:
        """The node's height, or -1 if it does not answer within 10 s (busy or down)."""
        try:
            return int(self.call(name, "status", {}, timeout_s=10)["height"])
        except (NodeUnreachableError, OSError):
            return -1

    def wait_for(self, names: list[str], height: int, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while min(self.height(n) for n in names) < height:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{names} did not reach height {height} in {timeout_s:.0f} s")
            time.sleep(0.3)


class _Network(ChainClients):
    def __init__(self, home: Path, password: str) -> None:
        super().__init__(home, NODES)
        self.password = password
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        self.procs[name] = spawn_node(self.home / name, password=self.password)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def record_submission(
    report: DemoReport, node: str, label: str, count: int, results: list[dict[str, Any]]
) -> None:
    """Add one ``tx.submit_many`` round to the report's block table (hashes filled in later)."""
    heights = sorted({r["height"] for r in results if "height" in r})
    report.blocks.append(
        {
            "height": heights[-1] if heights else 0,
            "label": f"{label} (via {node})",
            "txs": count,
            "ok": sum(1 for r in results if r.get("ok")),
            "failed": sum(1 for r in results if not r.get("ok") and "height" in r),
            "rejected": sum(1 for r in results if "height" not in r and not r.get("ok")),
            "hash": "",
            "signers": 0,
        }
    )


def fill_block_hashes(report: DemoReport, node_home: Path) -> None:
    """Fill in each reported block's hash and certificate signers from ``node_home``'s store."""
    with ChainStore.open(node_home / DATA_DIR, readonly=True) as store:
        for b in report.blocks:
            if b["height"] < 1:
                continue
            raw_hash, raw_cert = store.block_hash(b["height"]), store.certificate(b["height"])
            if raw_hash is not None and raw_cert is not None:
                b["hash"] = raw_hash.hex()
                b["signers"] = len(decode_certificate(raw_cert).signatures)


class NetworkStoryChain:
    """The demo story's ``StoryChain`` over client ports: submissions rotate over ``nodes``;
    reads go to ``reader`` once it holds the block of the last submission."""

    def __init__(
        self,
        submit: Callable[[str, list[Transaction], str], list[dict[str, Any]]],
        nodes: list[str],
        wait_for: Callable[[list[str], int], None],
        state: Callable[[str, bytes], bytes | None],
        reader: str = "observer-0",
    ) -> None:
        self._submit, self._nodes, self._wait_for, self._state = submit, nodes, wait_for, state
        self._reader = reader
        self._last_height = 0
        self._turn = 0

    def submit(self, txs: list[Transaction], label: str) -> list[Outcome]:
        self._turn += 1
        out = []
        for x in self._submit(self._nodes[self._turn % len(self._nodes)], txs, label):
            h = x.get("height")
            if isinstance(h, int):
                self._last_height = max(self._last_height, h)
            out.append(Outcome(bool(x.get("ok")), str(x.get("code", "")), h))
        return out

    def get(self, key: bytes) -> bytes | None:
        self._wait_for([self._reader], self._last_height)
        return self._state(self._reader, key)

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000  # block time is the validators' clock time

    def advance_to(self, time_ms: int) -> bool:
        return False  # real time: nothing moves the validators' clocks


def run_network_demo(
    home: Path,
    *,
    suite_name: str = "intl",
    investors: int = 600,
    block_size: int = 300,
    say: Say = print,
    progress: Callable[[int, int], None] | None = None,
    base_port: int = DEFAULT_BASE_PORT,
) -> DemoReport:
    """Run the scenario on a fresh network in ``home`` (ports from ``base_port``) and return
    what happened."""
    if home.exists():
        shutil.rmtree(home)
    password = key_password()
    genesis = init_network(
        home,
        validators=4,
        observers=1,
        suite_name=suite_name,
        chain_id="consortia-demo",
        password=password,
        base_port=base_port,
    )
    suite = get_suite(suite_name)
    say(
        f"initialised {home}: 4 validators (exchange, 2 brokers, bank) and the regulator's "
        f"observer, suite {suite_name}"
    )
    net = _Network(home, password)
    report = DemoReport(suite=suite_name, chain_id=genesis.chain_id)
    keys = {
        p.stem: decrypt_key_file(p.read_bytes(), password)
        for p in (home / ACCOUNTS_DIR).glob("*.key")
    }
    signer = _Signer(suite, genesis.chain_id)

    def check(name: str, ok: bool, detail: str) -> None:
        report.checks.append((name, ok, detail))
        say(f"{'✔' if ok else '✘'} {name}: {detail}")

    def submit(node: str, txs: list[Transaction], label: str) -> list[dict[str, Any]]:
        reply = net.call(node, "tx.submit_many", {"txs": [tx.encode() for tx in txs], "wait": True})
        results: list[dict[str, Any]] = reply["results"]
        record_submission(report, node, label, len(txs), results)
        return results

    try:
        for n in NODES:
            net.start(n)
        net.wait_for(NODES, 1)
        say("network up: every node committed block 1")
        admin, regulator = keys["exchange-admin"], keys["regulator"]
        broker_a, broker_b = keys["broker-a-admin"], keys["broker-b-admin"]

        r = submit(
            "validator-0",
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
        check(
            "consortium admin admits a firm",
            r[0]["ok"],
            f"committed at height {r[0].get('height')}",
        )

        investor_keys, opening = investor_openings(signer, investors, broker_a, broker_b)
        opened = 0
        for i in range(0, len(opening), block_size):
            results = submit(
                VALIDATORS[(i // block_size) % 4],
                opening[i : i + block_size],
                "open investor accounts",
            )
            opened += sum(1 for x in results if x.get("ok"))
            if progress is not None:
                progress(min(i + block_size, len(opening)), len(opening))
        check(
            "brokers open investor accounts",
            opened == investors,
            f"{opened} of {investors} committed",
        )

        # kill -9 a validator; the other three keep committing.
        net.kill("validator-3")
        before = net.height("validator-0")
        alice, bob = investor_keys[0], investor_keys[1]
        bob_addr = suite.address(bob.public_key)
        results = submit(
            "validator-1",
            [
                signer.tx(
                    regulator,
                    "registry",
                    "freeze_account",
                    {"address": bob_addr, "reason": "judicial assistance notice 2026-118"},
                ),
                signer.tx(
                    broker_a,
                    "registry",
                    "set_roles",
                    {
                        "address": suite.address(alice.public_key),
                        "roles": ["investor", "regulator"],
                    },
                ),
            ],
            "with validator-3 killed",
        )
        check(
            "chain commits with one validator killed (kill -9)",
            all("height" in x for x in results) and net.height("validator-0") > before,
            f"heights {before} → {net.height('validator-0')}",
        )
        check(
            "regulator role cannot be granted",
            results[1].get("code") == "INVALID_ROLE",
            str(results[1].get("code")),
        )
        results = submit(
            "validator-2",
            [
                signer.tx(
                    bob,
                    "registry",
                    "rotate_key",
                    {"new_public_key": suite.generate_keypair().public_key},
                )
            ],
            "frozen account tries to act",
        )
        check(
            "frozen account cannot transact",
            results[0].get("code") == "ACCOUNT_FROZEN",
            str(results[0].get("code")),
        )
        foreign = sign_transaction(
            suite,
            broker_a,
            chain_id="another-chain",
            nonce=signer.nonces[suite.address(broker_a.public_key)],
            module="registry",
            method="set_roles",
            args={"address": bob_addr, "roles": ["investor"]},
        )
        reply = net.call(
            "validator-0", "tx.submit", {"tx": replace(foreign, chain_id=genesis.chain_id).encode()}
        )
        check(
            "signature made for another chain refused",
            reply.get("code") == "BAD_SIGNATURE",
            str(reply.get("code")),
        )
        results = submit(
            "validator-0",
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
        check(
            "regulator unfreezes",
            results[0].get("ok") is True,
            f"height {results[0].get('height')}",
        )

        # The business story, with validator-3 restarting underneath (it catches up by block
        # sync while the others commit); the regulator's observer answers the reads once it
        # holds the block of the last submission.
        net.start("validator-3")

        def state_value(node: str, key: bytes) -> bytes | None:
            value = net.call(node, "state.get", {"key": key}).get("value")
            return value if isinstance(value, bytes) else None

        run_story(
            Story(
                NetworkStoryChain(submit, VALIDATORS[:3], net.wait_for, state_value),
                suite,
                keys,
                signer.tx,
                check,
                say,
            )
        )

        # The height the others reached (at least the last committed transaction's height).
        target = max(net.height("validator-0"), int(results[0].get("height", 0)))
        net.wait_for(NODES, target + 1)  # every node answers and holds the block compared below
        check(
            "killed validator restarts and catches up", True, f"all nodes at height ≥ {target + 1}"
        )
        head = target + 1
        hashes = {}
        for n in NODES:
            blk = net.call(n, "block.get", {"height": head})
            hashes[n] = blk["block"]
        check(
            "all five nodes hold the same chain",
            len(set(hashes.values())) == 1,
            f"same block at height {head} on {len(hashes)} nodes",
        )
    finally:
        net.stop_all()

    fill_block_hashes(report, home / "observer-0")
    verdicts = {n: verify_chain(home / n) for n in NODES}
    bad = {n: v.reason for n, v in verdicts.items() if not v.ok}
    report.verdict = verdicts["observer-0"]
    check(
        "ledger verify on every node's store",
        not bad,
        "all replayed from genesis" if not bad else str(bad),
    )
    node_home = home / "observer-0"
    with ChainStore.open(node_home / DATA_DIR, readonly=True) as store:
        state = restore_state(load_genesis(node_home), store)
    proof = state.tree.prove(account_key(suite.address(investor_keys[0].public_key)))
    value = verify_state_proof(suite.hash, state.state_root, proof)
    check(
        "regulator's node proves an investor account",
        value is not None,
        f"{len(proof.to_bytes())}-byte proof, root {state.state_root.hex()[:16]}… "
        f"at height {state.height}",
    )
    return report
