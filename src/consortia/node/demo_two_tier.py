"""The demo of the whole system: both tiers as separate processes, the business story, supervision.

A supervision chain (4 validators of the regulator and the association, the regulator's observer)
and a business chain (4 validators of the exchange, two securities firms and a bank, the
regulator's observer) start as 10 node processes over mutual TLS, plus the relayer. The regulator
makes the tiers trust each other; brokers open investor accounts in bulk; a business validator is
killed with SIGKILL and the chain goes on; the business story runs (securities, e-CNY, DvP,
insurance, dividends, funds, a court's freezes); every business block is anchored on the
supervision chain within seconds; the regulator orders a freeze on the supervision chain and the
relayer carries it down, where the business chain applies it only with a proof; the look-through
index raises alerts and one is filed as a regulatory object; evidence bundles are exported and
verified offline against the two genesis files (and a one-byte alteration is caught); every
node's store is re-verified from genesis. Everything printed is read back from the chains.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from consortia import codec
from consortia.crypto import decrypt_key_file, get_suite
from consortia.evidence.bundle import EvidenceError, bundle_to_json, verify_bundle
from consortia.evidence.export import ExportError, export_state, export_transaction
from consortia.ledger.types import Transaction
from consortia.lookthrough.index import LookthroughIndex
from consortia.lookthrough.surveillance import alert_as_report_fields
from consortia.modules import anchoring, enforcement
from consortia.node.demo import DemoReport, _Signer, investor_openings
from consortia.node.demo_network import (
    ChainClients,
    NetworkStoryChain,
    fill_block_hashes,
    record_submission,
)
from consortia.node.home import key_password
from consortia.node.local import ACCOUNTS_DIR, load_genesis
from consortia.node.network_home import DEFAULT_BASE_PORT
from consortia.node.operations import OperationError, Operator
from consortia.node.story import Story, run_story
from consortia.node.supervisor import spawn_node
from consortia.node.topology import (
    Topology,
    bootstrap,
    init_two_tier,
    lookthrough_path,
    observer_node,
    spawn_follower,
    spawn_relay,
    wait_until_serving,
)
from consortia.node.verify import verify_chain
from consortia.storage import StorageError

Say = Callable[[str], None]
BUSINESS = "business-1"
EVIDENCE_DIR = "evidence"
FAR_FUTURE_MS = 4_102_444_800_000  # 2100-01-01


class _Chain(ChainClients):
    """One chain of the topology seen through its nodes' client ports."""

    def __init__(self, home: Path) -> None:
        super().__init__(home)
        self.genesis = load_genesis(home)

    def state(self, key: bytes) -> bytes | None:
        reply = self.call("observer-0", "state.get", {"key": key})
        value = reply.get("value")
        return value if isinstance(value, bytes) else None


def run_two_tier_demo(
    home: Path,
    *,
    suite_name: str = "intl",
    investors: int = 600,
    block_size: int = 300,
    say: Say = print,
    progress: Callable[[int, int], None] | None = None,
    base_port: int = DEFAULT_BASE_PORT,
) -> DemoReport:
    """Run the whole story on a fresh two-tier network in ``home`` (ports from ``base_port``);
    bundles land in ``home/evidence``. Returns what happened (``report.ok`` only if every check
    passed)."""
    if home.exists():
        shutil.rmtree(home)
    password = key_password()
    topology = init_two_tier(
        home, business_chains=1, suite_name=suite_name, password=password, base_port=base_port
    )
    suite = get_suite(suite_name)
    biz = _Chain(topology.chain_home(BUSINESS))
    sup = _Chain(topology.chain_home(topology.supervision))
    report = DemoReport(suite=suite_name, chain_id=biz.genesis.chain_id)
    say(
        f"initialised {home}: supervision chain ({len(sup.nodes)} nodes) and business chain "
        f"{BUSINESS} ({len(biz.nodes)} nodes), suite {suite_name}"
    )
    keys = {
        p.stem: decrypt_key_file(p.read_bytes(), password)
        for p in (biz.home / ACCOUNTS_DIR).glob("*.key")
    }
    signer = _Signer(suite, biz.genesis.chain_id)
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def check(name: str, ok: bool, detail: str) -> None:
        report.checks.append((name, ok, detail))
        say(f"{'✔' if ok else '✘'} {name}: {detail}")

    def submit(node: str, txs: list[Transaction], label: str) -> list[dict[str, Any]]:
        reply = biz.call(node, "tx.submit_many", {"txs": [tx.encode() for tx in txs], "wait": True})
        results: list[dict[str, Any]] = reply["results"]
        record_submission(report, node, label, len(txs), results)
        return results

    def stop(name: str, sig: int = signal.SIGTERM) -> None:
        proc = procs.pop(name, None)
        if proc is None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    story: Story | None = None
    anchored = 0
    try:
        for chain in (sup, biz):
            for name, node_home in chain.nodes.items():
                procs[f"{chain.home.name}/{name}"] = spawn_node(node_home, password=password)
        wait_until_serving(topology)
        say("both tiers up: every node committed a block")
        for line in bootstrap(topology, password=password):
            check("the regulator links the tiers", True, line)
        procs["relay"] = spawn_relay(topology, BUSINESS, password=password)
        # The regulator's dashboard data: the supervision nodes' APIs serve this index.
        procs["lookthrough"] = spawn_follower(topology)
        # The bootstrap signed with the business regulator's key: continue from its nonce.
        reg = suite.address(keys["regulator"].public_key)
        signer.nonces[reg] = int(biz.call("validator-0", "account.get", {"address": reg})["nonce"])

        investor_keys, opening = investor_openings(
            signer, investors, keys["broker-a-admin"], keys["broker-b-admin"]
        )
        opened = 0
        validators = [n for n in biz.nodes if n.startswith("validator-")]
        for i in range(0, len(opening), block_size):
            results = submit(
                validators[(i // block_size) % len(validators)],
                opening[i : i + block_size],
                "open investor accounts",
            )
            opened += sum(1 for x in results if x.get("ok"))
            if progress is not None:
                progress(min(i + block_size, len(opening)), len(opening))
        check("brokers open investor accounts", opened == investors, f"{opened} of {investors}")

        stop(f"{BUSINESS}/validator-3", signal.SIGKILL)
        results = submit(
            "validator-1",
            [
                signer.tx(
                    keys["regulator"],
                    "registry",
                    "freeze_account",
                    {
                        "address": suite.address(investor_keys[1].public_key),
                        "reason": "judicial assistance notice 2026-118",
                    },
                )
            ],
            "with validator-3 killed",
        )
        check(
            "the business chain commits with a validator killed (kill -9)",
            all(x.get("ok") and "height" in x for x in results),
            f"committed at height {results[0].get('height')} by three of four validators"
            if results[0].get("ok")
            else str(results[0].get("code")),
        )
        procs[f"{BUSINESS}/validator-3"] = spawn_node(biz.nodes["validator-3"], password=password)

        on_network = NetworkStoryChain(
            submit, validators[:3], biz.wait_for, lambda _node, key: biz.state(key)
        )
        story = Story(on_network, suite, keys, signer.tx, check, say)
        run_story(story)

        _supervise(biz, sup, topology, password, check)
        _surveil(biz, sup, topology, password, check, say)
        biz.wait_for(list(biz.nodes), biz.height("validator-0"))
        check("the killed validator restarted and caught up", True, "every node at the head")
        raw = sup.state(anchoring.chain_key(biz.genesis.chain_id))
        anchored = 0 if raw is None else codec.decode_struct(anchoring.AnchoredChain, raw).height
    finally:
        for name in list(procs):
            stop(name)

    fill_block_hashes(report, observer_node(biz.home))
    if story is not None:
        report.evidence = _evidence(home, biz, sup, story, anchored, check, say)
    verdicts = {
        f"{chain.home.name}/{n}": verify_chain(h)
        for chain in (sup, biz)
        for n, h in chain.nodes.items()
    }
    bad = {n: v.reason for n, v in verdicts.items() if not v.ok}
    report.verdict = verdicts[f"{BUSINESS}/observer-0"]
    check(
        "ledger verify on every node of both tiers",
        not bad,
        f"{len(verdicts)} stores replayed from genesis" if not bad else str(bad),
    )
    return report


def _regulator(topology: Topology, chain: _Chain, password: str) -> Operator:
    key = decrypt_key_file((chain.home / ACCOUNTS_DIR / "regulator.key").read_bytes(), password)
    return Operator.from_node_home(key, chain.nodes["validator-0"])


def _supervise(
    biz: _Chain,
    sup: _Chain,
    topology: Topology,
    password: str,
    check: Callable[[str, bool, str], None],
) -> None:
    """Anchoring keeps up; an order issued on the supervision chain is applied below."""
    head = biz.height("validator-0")
    started = time.monotonic()
    anchored = 0
    while time.monotonic() - started < 30:
        raw = sup.state(anchoring.chain_key(biz.genesis.chain_id))
        anchored = 0 if raw is None else codec.decode_struct(anchoring.AnchoredChain, raw).height
        if anchored >= head:
            break
        time.sleep(0.2)
    waited = time.monotonic() - started
    check(
        "every business block is anchored on the supervision chain within seconds",
        anchored >= head and waited < 10,
        f"business height {head} anchored after {waited:.1f} s (anchored height {anchored})",
    )
    regulator = _regulator(topology, sup, password)
    order = {
        "order_id": "CSRC-ORDER-2026-77",
        "chain_id": biz.genesis.chain_id,
        "kind": "freeze",
        "freeze_id": "SUP-F-1",
        "code": "000001",
        "account_id": "SA-BOB",
        "amount": 500,
        "expires_at_ms": FAR_FUTURE_MS,
        "to_account": "",
        "param_name": "",
        "param_value": 0,
        "reference": "CSRC freeze order 2026-77",
    }
    try:
        result = regulator.call("orders", "issue_order", order)
        issued = f"committed at supervision height {result.height}"
        ok = result.ok
    except OperationError as exc:
        issued, ok = f"{exc.code}: {exc.message}", False
    check("the regulator issues a freeze order on the supervision chain", ok, issued)
    started = time.monotonic()
    freeze: enforcement.Freeze | None = None
    while ok and time.monotonic() - started < 30 and freeze is None:
        raw = biz.state(enforcement.freeze_key("SUP-F-1"))
        freeze = None if raw is None else codec.decode_struct(enforcement.Freeze, raw)
        time.sleep(0.2)
    check(
        "the relayer carries it down; the business chain applies it with a supervision proof",
        freeze is not None and freeze.status == "active" and freeze.effective == 500,
        f"freeze {freeze.freeze_id} {freeze.status}, {freeze.effective} of 000001 in SA-BOB, "
        f"authority {freeze.authority_org}, after {time.monotonic() - started:.1f} s"
        if freeze
        else "not applied",
    )


def _surveil(
    biz: _Chain,
    sup: _Chain,
    topology: Topology,
    password: str,
    check: Callable[[str, bool, str], None],
    say: Say,
) -> None:
    """The regulator's look-through index follows the business chain and raises alerts."""
    db = lookthrough_path(topology)  # the follower's index: catch up now, then read it
    with LookthroughIndex(db) as index:
        index.follow_home(observer_node(biz.home))
        alerts = index.alerts()
        rules = sorted({a.rule for a in alerts})
        check(
            "surveillance raises alerts from the committed blocks",
            {"LARGE_VALUE_PAYMENT", "HOLDING_STEP"} <= set(rules),
            f"{len(alerts)} alerts: {', '.join(rules)}",
        )
        large = next((a for a in alerts if a.rule == "LARGE_VALUE_PAYMENT"), None)
    if large is None:
        return
    regulator = _regulator(topology, sup, password)
    try:
        result = regulator.call(
            "reports",
            "submit_report",
            {
                "report_id": f"ALERT-{large.height}-{large.rule}",
                "chain_id": biz.genesis.chain_id,
                "height": large.height,
                "category": "regulatory_object",
                "fields": alert_as_report_fields(large),
            },
        )
        ok, detail = result.ok, f"report committed at supervision height {result.height}"
    except OperationError as exc:
        ok, detail = False, f"{exc.code}: {exc.message}"
    check("an alert is filed on the supervision chain as a regulatory object", ok, detail)
    say(f"  alert: {large.rule} at {large.chain_id}@{large.height}: {large.detail}")


def _evidence(
    home: Path,
    biz: _Chain,
    sup: _Chain,
    story: Story,
    anchored: int,
    check: Callable[[str, bool, str], None],
    say: Say,
) -> list[tuple[str, list[str]]]:
    """Export bundles from the regulator's stores and verify them offline (the holding as of
    the last height the supervision chain had anchored when the network stopped); returns each
    verified bundle's path and what it proves."""
    out = home / EVIDENCE_DIR
    out.mkdir(parents=True, exist_ok=True)
    biz_node, sup_node = observer_node(biz.home), observer_node(sup.home)
    bundles: dict[str, str] = {}
    try:
        for label in ("payment", "dvp"):
            if label in story.marks:
                bundles[label] = bundle_to_json(
                    export_transaction(biz_node, sup_node, story.marks[label])
                )
        bundles["holding"] = bundle_to_json(
            export_state(biz_node, sup_node, account="SA-BOB", asset="000001", height=anchored)
        )
    except (ExportError, EvidenceError, StorageError, OSError) as exc:
        check("evidence bundles exported", False, f"{type(exc).__name__}: {exc}")
        return []
    verified: list[tuple[str, list[str]]] = []
    for label, text in bundles.items():
        (out / f"{label}.json").write_text(text)
        try:
            proven = verify_bundle(text, biz.genesis, sup.genesis)
        except EvidenceError as exc:
            check(f"evidence bundle {label}.json verifies offline", False, str(exc))
            continue
        check(
            f"evidence bundle {label}.json verifies offline",
            True,
            f"{len(text):,} bytes, checked against the two genesis files only",
        )
        verified.append((str(out / f"{label}.json"), proven.lines()))
    text = bundles.get("payment") or next(iter(bundles.values()))
    middle = len(text) // 2
    flipped = text[:middle] + chr(ord(text[middle]) ^ 1) + text[middle + 1 :]
    try:
        verify_bundle(flipped, biz.genesis, sup.genesis)
        check("an altered bundle is refused", False, "a one-byte change verified!")
    except EvidenceError as exc:
        check("an altered bundle is refused", True, f"byte {middle} flipped: {exc}")
    other = sup.genesis
    try:
        verify_bundle(text, other, other)
        check("a bundle against the wrong genesis is refused", False, "verified!")
    except EvidenceError as exc:
        check("a bundle against the wrong genesis is refused", True, type(exc).__name__)
    return verified
