"""The relayer, in process: two business chains and one supervision chain on ``LocalChain``s.

Every committed business block gets anchored; an order issued on the supervision chain is
applied on the chain it names only; a relayer dropped mid-way and replaced by a fresh one leaves
no gap and anchors nothing twice. Reports derived from the business events are filed bound to
their anchored blocks, each once, also across a restart in the middle of reporting.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from consortia import codec
from consortia.cli import app
from consortia.crypto import encrypt_key_file
from consortia.ledger.types import (
    Event,
    Receipt,
    ReceiptList,
    Transaction,
    TxStatus,
    decode_transaction,
)
from consortia.modules import anchoring, reports, supervision
from consortia.modules.enforcement import Freeze, freeze_key
from consortia.modules.investors import SecuritiesAccount, account_key
from consortia.modules.registry import Account
from consortia.modules.registry import account_key as registry_account_key
from consortia.net import frames
from consortia.node.local import LocalChain
from consortia.node.metrics import AnchoringGauges, MetricsServer, NodeMetrics, RelayMetrics
from consortia.node.network_home import NodeConfig
from consortia.node.relay import (
    LocalEndpoint,
    NodeEndpoint,
    RelayConfig,
    Relayer,
    RelayError,
    ReportCandidate,
    TxOutcome,
    report_candidates,
    report_id,
)
from tests.chainkit import make_consortium
from tests.futureskit import CODE, futures_world, settle_tx, trade_tx
from tests.test_funds import MON, TUE, at, confirm_tx, fund_world, hm, nav_tx, red_tx, sub_tx
from tests.test_investors import commit_ok, open_account_tx, open_investor_tx, register
from tests.test_metrics import Family, parse_exposition, value_of
from tests.test_securities import apply_args, issue_tx, transfer_tx
from tests.test_settlement import dvp_world, instruct_tx
from tests.test_supervision import FAR, order_args, trust_args
from tests.tierkit import TierConsortium, make_supervision, register_chain_args

PASSWORD = "relay-test"
runner = CliRunner()


@dataclass
class Net:
    chain: LocalChain
    c: TierConsortium

    @property
    def ep(self) -> LocalEndpoint:
        return LocalEndpoint(self.chain)

    def ok(self, txs: list[Transaction]) -> None:
        committed = self.chain.commit(txs)
        assert not committed.rejected, committed.rejected
        failed = [(r.code, r.message) for r in committed.receipts if r.status != TxStatus.OK]
        assert not failed, failed

    def empty_blocks(self, n: int) -> None:
        for _ in range(n):
            self.chain.commit([])

    def read(self, key: bytes) -> bytes | None:
        return self.chain.state.tree.get(key)


def _clock() -> Iterator[int]:
    return itertools.count(1_767_225_600_000 + 1000, 1000)


def start(home: Path, c: TierConsortium) -> Net:
    home.mkdir()
    (home / "genesis.json").write_text(c.genesis.to_json())
    ticks = _clock()
    chain = LocalChain(
        home, {f"v{i}": k for i, k in enumerate(c.validators)}, clock_ms=lambda: next(ticks)
    )
    return Net(chain, c)


def business(chain_id: str) -> TierConsortium:
    base = make_consortium()
    return TierConsortium(
        base.suite,
        replace(base.genesis, chain_id=chain_id),
        base.validators,
        base.accounts,
        {},
    )


@pytest.fixture
def nets(tmp_path: Path) -> Iterator[tuple[Net, Net, Net]]:
    sup = start(tmp_path / "sup", make_supervision())
    b1 = start(tmp_path / "b1", business("business-1"))
    b2 = start(tmp_path / "b2", business("business-2"))
    sup.ok(
        [
            sup.c.tx("regulator", "anchoring", "register_chain", register_chain_args(b.c))
            for b in (b1, b2)
        ]
    )
    for b in (b1, b2):
        b.ok([b.c.tx("regulator", "supervision", "trust_supervision", trust_args(sup.c))])
        # An investor with securities account SA-A on both chains.
        b.ok([register(b.c, "inv-a", "broker-a", ("investor",))])
        b.ok(
            [
                open_investor_tx(b.c, "broker-a-admin", "INV-A", "inv-a"),
                open_account_tx(b.c, "broker-a-admin", "SA-A", "INV-A"),
            ]
        )
    yield sup, b1, b2
    for n in (sup, b1, b2):
        n.chain.close()


def relayer(b: Net, sup: Net, **config: int) -> Relayer:
    return Relayer(
        b.ep,
        sup.ep,
        b.c.accounts["relayer"],
        sup.c.accounts["relayer"],
        RelayConfig(**config),
    )


def anchored_ranges(sup: Net, chain_id: str) -> list[tuple[int, int]]:
    """Every ``anchored`` event for ``chain_id`` on the supervision chain, in order; and no
    anchoring transaction failed."""
    ranges = []
    store = sup.chain.store
    for h in range(1, sup.chain.height + 1):
        raw = store.receipts(h)
        assert raw is not None
        for r in codec.decode_struct(ReceiptList, raw).receipts:
            if r.status != TxStatus.OK:
                assert "anchoring" not in r.message, r
                continue
            for ev in r.events:
                if ev.kind == "anchored" and ev.attributes["chain_id"] == chain_id:
                    ranges.append((ev.attributes["from_height"], ev.attributes["to_height"]))
    return ranges


def assert_fully_anchored(sup: Net, b: Net, upto: int) -> None:
    ranges = anchored_ranges(sup, b.chain.genesis.chain_id)
    covered = [h for lo, hi in ranges for h in range(lo, hi + 1)]
    assert covered == list(range(1, len(covered) + 1)), ranges  # no gap, nothing twice
    assert len(covered) >= upto
    for h in range(1, upto + 1):
        raw = sup.read(anchoring.anchor_key(b.chain.genesis.chain_id, h))
        assert raw is not None, h
        anchor = codec.decode_struct(anchoring.Anchor, raw)
        assert anchor.block_hash == b.chain.store.block_hash(h)


def test_relay_anchors_follows_and_carries_orders_to_the_right_chain(
    nets: tuple[Net, Net, Net],
) -> None:
    sup, b1, b2 = nets
    b1.empty_blocks(5)
    r1, r2 = relayer(b1, sup), relayer(b2, sup)
    for r in (r1, r2):
        report = r.run_round()
        assert report.errors == (), report.errors
        # Anchoring runs last in a round: every business block committed so far is anchored.
        assert report.anchor_lag_blocks == 0 and report.anchor_lag_ms == 0
        assert report.anchored_height == report.business_height
        assert report.followed > 0
    assert_fully_anchored(sup, b1, b1.chain.height)
    assert_fully_anchored(sup, b2, b2.chain.height)

    # The regulator orders SA-A frozen on business-1 only.
    args = order_args(
        "ORD-1",
        "freeze",
        chain_id="business-1",
        freeze_id="F-1",
        account_id="SA-A",
        expires_at_ms=FAR,
    )
    sup.ok([sup.c.tx("regulator", "orders", "issue_order", args)])
    b1.empty_blocks(3)
    rep1, rep2 = r1.run_round(), r2.run_round()
    assert rep1.errors == () and rep2.errors == (), (rep1.errors, rep2.errors)
    assert (rep1.orders_applied, rep2.orders_applied) == (1, 0)
    frozen = codec.decode_struct(SecuritiesAccount, b1.read(account_key("SA-A")) or b"")
    assert frozen.frozen and frozen.freeze_reference == "CSRC order ORD-1"
    f = codec.decode_struct(Freeze, b1.read(freeze_key("F-1")) or b"")
    assert f.status == "active"
    assert b1.read(supervision.applied_key("ORD-1")) is not None
    untouched = codec.decode_struct(SecuritiesAccount, b2.read(account_key("SA-A")) or b"")
    assert not untouched.frozen
    assert b2.read(freeze_key("F-1")) is None
    assert b2.read(supervision.applied_key("ORD-1")) is None
    # Applied once: later rounds, and a fresh relayer that scans from the start, leave it.
    again = r1.run_round()
    assert again.orders_applied == 0 and again.orders_pending == 0 and again.errors == ()
    fresh = relayer(b1, sup).run_round()
    assert fresh.orders_applied == 0 and fresh.errors == ()
    assert_fully_anchored(sup, b1, b1.chain.height)
    assert_fully_anchored(sup, b2, b2.chain.height)


class FailingAfter:
    """The supervision endpoint, failing every ``submit`` after the first ``allowed`` ones (the
    relayer 'dies' mid-way)."""

    def __init__(self, inner: LocalEndpoint, allowed: int) -> None:
        self.inner = inner
        self.allowed = allowed
        self.chain_id = inner.chain_id
        self.suite = inner.suite
        self.head_height = inner.head_height
        self.block = inner.block
        self.state = inner.state
        self.nonce = inner.nonce

    def submit(self, txs: Sequence[Transaction]) -> list[TxOutcome]:
        if self.allowed <= 0:
            raise RelayError("supervision node unreachable (test)")
        self.allowed -= 1
        return self.inner.submit(txs)


def test_a_restarted_relayer_leaves_no_gap_and_anchors_nothing_twice(
    nets: tuple[Net, Net, Net],
) -> None:
    sup, b1, _ = nets
    b1.empty_blocks(20)
    # Small batches; the supervision node goes away after the first anchoring transaction.
    dying = Relayer(
        b1.ep,
        FailingAfter(sup.ep, allowed=1),  # type: ignore[arg-type]
        b1.c.accounts["relayer"],
        sup.c.accounts["relayer"],
        RelayConfig(max_headers=10, max_txs_per_round=1),
    )
    report = dying.run_round()
    assert report.errors and "unreachable" in report.errors[0]
    assert 0 < report.anchored_height < report.business_height
    del dying  # the relayer is gone; the business chain keeps committing
    b1.empty_blocks(130)
    head = b1.chain.height
    report = relayer(b1, sup).run_round()
    assert report.errors == (), report.errors
    assert report.anchored_height == b1.chain.height >= head
    assert_fully_anchored(sup, b1, b1.chain.height)
    # Running again changes nothing but the blocks the round itself caused.
    report = relayer(b1, sup).run_round()
    assert report.errors == () and report.anchor_lag_blocks == 0
    assert_fully_anchored(sup, b1, b1.chain.height)


def test_round_reports_what_is_missing(tmp_path: Path) -> None:
    sup = start(tmp_path / "sup", make_supervision())
    b = start(tmp_path / "b", business("business-x"))
    try:
        report = relayer(b, sup).run_round()
        assert any("trusts no supervision chain" in e for e in report.errors)
        assert any("is not registered" in e for e in report.errors)
        assert report.anchored_height == -1 and report.anchor_lag_blocks == -1
    finally:
        sup.chain.close()
        b.chain.close()


# ---------------------------------------------------------------------------------------------
# Over the client port: the same relay through ``NodeEndpoint`` and the ``consortia relay`` CLI,
# against a stand-in client port served from a ``LocalChain`` (the node's reply shapes).


class ClientPort:
    """Answers ``status``, ``block.get``, ``state.get``, ``account.get`` and ``tx.submit_many``
    (each submission commits one block) on 127.0.0.1, from a background thread."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self.loop
        ).result(10)
        self.port: int = self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (got := await frames.read_message(reader)) is not None:
                writer.write(frames.encode_frame(self._reply(got[0].type, got[0].body or {})))
                await writer.drain()
        finally:
            writer.close()

    def _reply(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        chain = self.net.chain
        if kind == "status":
            return {"ok": True, "height": chain.height}
        if kind == "block.get":
            h = body["height"]
            if not 1 <= h <= chain.height:
                return {"ok": False, "code": "NOT_FOUND", "message": f"no block {h}"}
            store = chain.store
            return {
                "ok": True,
                "block": store.block(h),
                "certificate": store.certificate(h),
                "receipts": store.receipts(h),
            }
        if kind == "state.get":
            st = chain.state
            return {
                "ok": True,
                "height": st.height,
                "state_root": st.state_root,
                "value": st.tree.get(body["key"]),
                "proof": st.tree.prove(body["key"]).to_bytes(),
            }
        if kind == "account.get":
            raw = chain.state.tree.get(registry_account_key(body["address"]))
            if raw is None:
                return {"ok": False, "code": "NOT_FOUND", "message": "no account"}
            return {"ok": True, "nonce": codec.decode_struct(Account, raw).nonce}
        if kind == "tx.submit_many":
            txs = [decode_transaction(raw) for raw in body["txs"]]
            outcomes = LocalEndpoint(chain).submit(txs)
            results = [
                {
                    "ok": o.ok,
                    "tx_hash": tx.hash(chain.suite),
                    "height": o.height,
                    "code": o.code,
                    "message": o.message,
                }
                for tx, o in zip(txs, outcomes, strict=True)
            ]
            return {"ok": True, "results": results}
        return {"ok": False, "code": "UNKNOWN_REQUEST", "message": kind}


def node_home(tmp_path: Path, name: str, net: Net, port: int) -> Path:
    home = tmp_path / name
    home.mkdir()
    (home / "genesis.json").write_text(net.c.genesis.to_json())
    config = NodeConfig(name, "csrc", "observer", "127.0.0.1", port, port, ())
    config.save(home)
    key = home / "relayer.key"
    key.write_bytes(encrypt_key_file(net.c.accounts["relayer"], PASSWORD, scrypt_n=1 << 10))
    return home


def test_relay_over_the_client_port_and_the_cli(
    nets: tuple[Net, Net, Net], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sup, b1, _ = nets
    b1.empty_blocks(3)
    ports = [ClientPort(sup), ClientPort(b1)]
    try:
        sup_ep = NodeEndpoint("127.0.0.1", ports[0].port, sup.c.genesis.chain_id, sup.c.suite)
        b1_ep = NodeEndpoint("127.0.0.1", ports[1].port, b1.c.genesis.chain_id, b1.c.suite)
        r = Relayer(b1_ep, sup_ep, b1.c.accounts["relayer"], sup.c.accounts["relayer"])
        report = r.run_round()
        assert report.errors == () and report.anchor_lag_blocks == 0, report
        args = order_args(
            "ORD-7",
            "freeze",
            chain_id="business-1",
            freeze_id="F-7",
            account_id="SA-A",
            expires_at_ms=FAR,
        )
        sup.ok([sup.c.tx("regulator", "orders", "issue_order", args)])
        b1.empty_blocks(2)
        # The CLI: one round, one JSON line of metrics, exit 0.
        monkeypatch.setenv("CONSORTIA_KEY_PASSWORD", PASSWORD)
        sup_home = node_home(tmp_path, "sup-node", sup, ports[0].port)
        b1_home = node_home(tmp_path, "b1-node", b1, ports[1].port)
        argv = [
            "relay",
            "--business",
            str(b1_home),
            "--supervision",
            str(sup_home),
            "--business-key",
            str(b1_home / "relayer.key"),
            "--supervision-key",
            str(sup_home / "relayer.key"),
            "--once",
        ]
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, result.output
        line = json.loads(result.stdout.strip().splitlines()[-1])
        assert line["orders_applied"] == 1 and line["anchor_lag_blocks"] == 0, line
        assert b1.read(supervision.applied_key("ORD-7")) is not None
        assert_fully_anchored(sup, b1, b1.chain.height)
    finally:
        for p in ports:
            p.close()
    # The nodes are gone: the round reports it (exit 1), no traceback.
    result = runner.invoke(app, argv)
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert any("no node answers" in e for e in line["errors"]), line
    # Unusable input: exit 2 with one line.
    bad = runner.invoke(app, [*argv[:2], str(tmp_path / "nowhere"), *argv[3:]])
    assert bad.exit_code == 2 and "error: --business" in bad.output, bad.output
    (tmp_path / "bad.key").write_text("{}")
    bad = runner.invoke(app, [*argv[:6], str(tmp_path / "bad.key"), *argv[7:]])
    assert bad.exit_code == 2 and "error: --business-key" in bad.output, bad.output


def test_the_business_chain_follows_a_supervision_validator_change(
    nets: tuple[Net, Net, Net],
) -> None:
    sup, b1, _ = nets
    r = relayer(b1, sup)
    assert r.run_round().errors == ()
    newcomer = sup.c.suite.generate_keypair()
    args = {
        "action": "add_validator",
        "name": "sac-v4",
        "public_key": newcomer.public_key,
        "power": 10,
        "reason": "the association runs a fifth validator",
    }
    # The association is the supervision chain's only voting member: its proposal decides.
    sup.ok([sup.c.tx("sac-admin", "governance", "propose", args)])
    sup.empty_blocks(3)
    assert len(sup.chain.state.validators.validators) == 5
    report = r.run_round()
    assert report.errors == (), report.errors
    raw = b1.read(supervision.CLIENT_KEY)
    assert raw is not None
    client = codec.decode_struct(supervision.SupervisionClient, raw)
    assert client.height == report.followed_height >= sup.chain.height - 1
    assert len(client.next_validators.validators) == 5


# ---------------------------------------------------------------------------------------------
# Reports derived from business events


def checked(candidates: list[ReportCandidate]) -> list[ReportCandidate]:
    """Every candidate passes the reports module's schema check (as submit_report runs it)."""
    for c in candidates:
        reports.check_report_fields(c.category, c.fields)
        assert len(c.report_id) <= reports.MAX_ID
    return candidates


def by_category(candidates: list[ReportCandidate], category: str) -> list[dict[str, Any]]:
    return [c.fields for c in candidates if c.category == category]


def test_transfer_disclosure_registration_and_account_mappings() -> None:
    # The securities world (Driver): accounts opened, EQ1 issued, a transfer crossing 5%.
    c, d = dvp_world()
    p = commit_ok(d, [transfer_tx(c, "EQ1", "SA-A", "SA-B", 50)])
    found, skipped = report_candidates("business-1", 7, p.receipts)
    assert skipped == 0
    tx_hash = p.receipts[0].tx_hash.hex()
    assert by_category(checked(found), "transfer") == [
        {
            "code": "EQ1",
            "from_account": "SA-A",
            "to_account": "SA-B",
            "amount": 50,
            "tx_hash": tx_hash,
        }
    ]
    assert by_category(found, "disclosure") == [
        {
            "code": "EQ1",
            "holder": "INV-A",
            "holding": 950,
            "step_pct": 100,
            "direction": "down",
            "tx_hash": tx_hash,
        },
        {
            "code": "EQ1",
            "holder": "INV-B",
            "holding": 50,
            "step_pct": 5,
            "direction": "up",
            "tx_hash": tx_hash,
        },
    ]
    # The ids: chain, height, transaction index, event index (transferred, disclosure ×2).
    assert [x.report_id for x in found] == [f"business-1-7-0-{i}" for i in range(3)]
    p = commit_ok(d, [issue_tx(c, "EQ1", "SA-C", 10)])
    found, _ = report_candidates("business-1", 8, p.receipts)
    assert by_category(checked(found), "registration") == [
        {
            "code": "EQ1",
            "account_id": "SA-C",
            "action": "issue",
            "amount": 10,
            "tx_hash": p.receipts[0].tx_hash.hex(),
        }
    ]
    p = commit_ok(
        d,
        [
            open_account_tx(c, "broker-a-admin", "SA-A2", "INV-A"),
            c.tx("broker-a-admin", "investors", "close_account", {"account_id": "SA-A2"}),
        ],
    )
    found, _ = report_candidates("business-1", 9, p.receipts)
    assert by_category(checked(found), "account") == [
        {"account_id": "SA-A2", "entity_id": "INV-A", "account_type": "securities", "status": s}
        for s in ("open", "closed")
    ]


def test_dvp_cash_leg_mapping() -> None:
    c, d = dvp_world()
    commit_ok(d, [instruct_tx(c, "broker-a-admin", "T1", "deliver", shares=10)])
    p = commit_ok(d, [instruct_tx(c, "inv-b", "T1", "receive", shares=10)])
    found, skipped = report_candidates("business-1", 9, p.receipts)
    assert skipped == 0
    tx_hash = p.receipts[0].tx_hash.hex()
    # The share leg (securities/transferred) and the cash leg (settlement/dvp_settled).
    assert by_category(checked(found), "transfer") == [
        {
            "code": "EQ1",
            "from_account": "SA-A",
            "to_account": "SA-B",
            "amount": 10,
            "tx_hash": tx_hash,
            "memo": "DvP T1",
        },
        {
            "code": "e-CNY",
            "from_account": "W-B",
            "to_account": "W-A",
            "amount": 2_500,
            "tx_hash": tx_hash,
            "memo": "DvP T1 cash leg",
        },
    ]


def test_fund_settlement_mapping() -> None:
    c, d = fund_world()
    at(d, hm(MON, 10), [sub_tx(c, "inv-a", "S1", 1_000_000)])
    at(d, hm(MON, 16), [nav_tx(c, MON, 10_000), confirm_tx(c, MON, ["S1"])])
    at(d, hm(TUE, 10), [red_tx(c, "inv-a", "R1", 100_000), sub_tx(c, "inv-b", "S2", 500_000)])
    p = at(d, hm(TUE, 16), [nav_tx(c, TUE, 10_100), confirm_tx(c, TUE, ["R1", "S2"])])
    found, skipped = report_candidates("business-1", 12, p.receipts)
    assert skipped == 0
    redeemed = [e.attributes for e in p.receipts[1].events if e.kind == "redemption_confirmed"]
    assert by_category(checked(found), "fund_settlement") == [
        {
            "fund_code": "HF1",
            "trading_day": TUE,
            "subscriptions_fen": 500_000,
            "redemptions_fen": redeemed[0]["gross_fen"],
            "nav": 10_100,
        }
    ]
    assert redeemed[0]["gross_fen"] == 101_000  # 100,000 units (1,000 shares) at ¥1.01
    # The units created for S2 are an issuance.
    assert [f["account_id"] for f in by_category(found, "registration")] == ["SA-B"]


def test_futures_settlement_and_large_position_mappings() -> None:
    c, d = futures_world(deposits={"FA-A": 900_000, "FA-B": 900_000})
    at(d, hm(MON, 10), [trade_tx(c, "T1", "FA-A", "FA-B", 80, 10_000)])  # 80% of the limit
    p = at(d, hm(MON, 16), [settle_tx(c, MON, {CODE: 10_200})])
    found, skipped = report_candidates("business-1", 9, p.receipts)
    assert skipped == 0
    tx_hash = p.receipts[0].tx_hash.hex()
    assert [c.category for c in checked(found)] == ["regulatory_object"] * 3
    assert by_category(found, "regulatory_object") == [
        {
            "rule": "futures_daily_settlement",
            "subject": CODE,
            "detail": f"{CODE} settled {MON} at 10200 (previous 10000); open interest 80 lots; "
            "variation margin 160000 fen paid across 2 account(s)",
            "severity": "low",
            "tx_hash": tx_hash,
        },
        {
            "rule": "futures_large_position",
            "subject": "FA-A",
            "detail": f"investor INV-A at broker-a on {MON}: {CODE} long 80 short 0 (threshold 80)",
            "severity": "medium",
            "tx_hash": tx_hash,
        },
        {
            "rule": "futures_large_position",
            "subject": "FA-B",
            "detail": f"investor INV-B at broker-b on {MON}: {CODE} long 0 short 80 (threshold 80)",
            "severity": "medium",
            "tx_hash": tx_hash,
        },
    ]
    # Each report has its own deterministic id.
    assert len({c.report_id for c in found}) == 3


def test_an_event_that_makes_no_valid_report_is_skipped_and_counted() -> None:
    def receipt(*events: Event, status: TxStatus = TxStatus.OK) -> Receipt:
        return Receipt(b"\x11" * 32, status, "", "", events)

    good = {"code": "EQ1", "from_account": "SA-A", "to_account": "SA-B", "amount": 1, "memo": ""}
    bad_id = dict(good, to_account="SA B")  # not an id
    found, skipped = report_candidates(
        "business-1",
        3,
        [
            receipt(
                Event("securities", "transferred", bad_id),
                Event("securities", "transferred", {"code": "EQ1"}),  # attributes missing
                Event("securities", "transferred", good),
                Event("securities", "security_approved", {"code": "EQ1", "reason": "ok"}),
            ),
            receipt(Event("securities", "transferred", good), status=TxStatus.FAILED),
        ],
    )
    assert skipped == 2
    assert [x.report_id for x in checked(found)] == ["business-1-3-0-2"]
    assert "memo" not in found[0].fields  # an empty memo is left out
    long_chain = "c" * 64
    rid = report_id(long_chain, 10**12, 999, 999)
    assert len(rid) <= reports.MAX_ID and rid == report_id(long_chain, 10**12, 999, 999)


def securities_on(b: Net) -> None:
    """Issuer X lists EQ1 on ``b``; INV-B opens SA-B; 1000 EQ1 issued to SA-A."""
    c = b.c
    org = {"org_id": "issuer-x", "name": "Org issuer-x", "kind": "issuer"}
    b.ok([c.tx("exchange-admin", "registry", "register_org", org)])
    b.ok(
        [
            register(c, "issuer", "issuer-x", ("issuer",)),
            register(c, "inv-b", "broker-b", ("investor",)),
        ]
    )
    b.ok(
        [
            open_investor_tx(c, "broker-b-admin", "INV-B", "inv-b"),
            open_account_tx(c, "broker-b-admin", "SA-B", "INV-B"),
            c.tx("issuer", "securities", "apply", apply_args("EQ1")),
        ]
    )
    b.ok([c.tx("exchange-admin", "securities", "approve", {"code": "EQ1", "reason": "ok"})])
    b.ok([issue_tx(c, "EQ1", "SA-A", 1000)])


def events_of(b: Net, kinds: tuple[str, ...]) -> list[tuple[str, int, str, dict[str, Any]]]:
    """(expected report id, height, kind, attributes) of every ``kinds`` event on ``b``."""
    out = []
    chain_id = b.chain.genesis.chain_id
    for h in range(1, b.chain.height + 1):
        raw = b.chain.store.receipts(h)
        assert raw is not None
        for i, r in enumerate(codec.decode_struct(ReceiptList, raw).receipts):
            for j, ev in enumerate(r.events):
                if ev.kind in kinds and r.status == TxStatus.OK:
                    out.append((f"{chain_id}-{h}-{i}-{j}", h, ev.kind, ev.attributes))
    return out


def filed_reports(sup: Net) -> tuple[list[tuple[str, str, int]], int]:
    """(report id, chain id, height) of every ``report_submitted`` on the supervision chain, and
    how many submit_report transactions failed."""
    filed, failed = [], 0
    for h in range(1, sup.chain.height + 1):
        raw = sup.chain.store.receipts(h)
        assert raw is not None
        for r in codec.decode_struct(ReceiptList, raw).receipts:
            failed += r.status != TxStatus.OK and r.code.startswith(("REPORT", "NOT_ANCH"))
            for ev in r.events:
                if ev.kind == "report_submitted":
                    a = ev.attributes
                    filed.append((a["report_id"], a["chain_id"], a["height"]))
    return filed, failed


def report_record(sup: Net, rid: str) -> reports.Report:
    raw = sup.read(reports.report_key(rid))
    assert raw is not None, rid
    return codec.decode_struct(reports.Report, raw)


def test_relay_files_reports_bound_to_anchored_blocks_once(nets: tuple[Net, Net, Net]) -> None:
    sup, b1, b2 = nets
    securities_on(b1)
    for amount in (10, 39, 1, 5):  # INV-B reaches 5% with the third transfer
        b1.ok([transfer_tx(b1.c, "EQ1", "SA-A", "SA-B", amount)])
    r1, r2 = relayer(b1, sup, reports_per_submit=3), relayer(b2, sup)
    for r in (r1, r2):
        report = r.run_round()
        assert report.errors == (), report.errors
        assert report.reports_skipped == 0 and report.reports_filed == report.reports_total > 0
        assert report.reported_height == report.anchored_height
    transfers = events_of(b1, ("transferred",))
    disclosures = events_of(b1, ("disclosure",))
    assert len(transfers) == 4
    assert ("INV-B", "up", 5) in [
        (a["investor_id"], a["direction"], a["threshold_pct"]) for _, _, _, a in disclosures
    ]
    for rid, h, _, a in transfers + disclosures:
        rep = report_record(sup, rid)
        assert (rep.chain_id, rep.height) == ("business-1", h)
        assert rep.block_hash == b1.chain.store.block_hash(h)  # the anchored block
        assert rep.fields["code"] == a["code"]
        if rep.category == "transfer":
            assert (rep.fields["to_account"], rep.fields["amount"]) == ("SA-B", a["amount"])
        else:
            assert rep.category == "disclosure"
            assert (rep.fields["holder"], rep.fields["step_pct"]) == (
                a["investor_id"],
                a["threshold_pct"],
            )
    filed, failed = filed_reports(sup)
    categories = {report_record(sup, rid).category for rid, _, _ in filed}
    assert categories == {"account", "registration", "transfer", "disclosure"}
    # business-2 had no securities activity: its only report is the account opened on it.
    b2_reports = [report_record(sup, rid) for rid, chain, _ in filed if chain == "business-2"]
    assert [(x.category, x.fields["account_id"]) for x in b2_reports] == [("account", "SA-A")]
    assert failed == 0 and len(filed) == len({rid for rid, _, _ in filed})

    # More activity; the same relayer files only the new reports; fresh relayers file nothing.
    b1.ok([transfer_tx(b1.c, "EQ1", "SA-B", "SA-A", 6)])  # INV-B falls below 5% (55 → 49)
    report = r1.run_round()
    # The transfer; disclosures: INV-B down through 5%, INV-A (94.5% → 95.1%) up through 95%.
    assert report.errors == () and report.reports_filed == 3
    for _ in range(2):
        for b in (b1, b2):
            report = relayer(b, sup).run_round()
            assert report.errors == () and report.reports_filed == 0, report
            assert report.reported_height == report.anchored_height
    filed_after, failed = filed_reports(sup)
    assert failed == 0 and filed_after[: len(filed)] == filed
    assert len(filed_after) == len(filed) + 3 == len({rid for rid, _, _ in filed_after})


def test_a_relayer_dying_while_reporting_is_replaced_without_gaps_or_duplicates(
    nets: tuple[Net, Net, Net],
) -> None:
    sup, b1, _ = nets
    securities_on(b1)
    b1.ok([transfer_tx(b1.c, "EQ1", "SA-A", "SA-B", n) for n in (10, 20, 30)])
    b1.ok([transfer_tx(b1.c, "EQ1", "SA-A", "SA-B", n) for n in (40, 50)])
    expected = {rid for rid, *_ in events_of(b1, ("transferred", "disclosure", "issued"))}
    # The supervision node goes away after the anchoring and two report submissions.
    dying = Relayer(
        b1.ep,
        FailingAfter(sup.ep, allowed=3),  # type: ignore[arg-type]
        b1.c.accounts["relayer"],
        sup.c.accounts["relayer"],
        RelayConfig(reports_per_submit=2),
    )
    report = dying.run_round()
    assert report.reports_filed == 4 and report.errors and "unreachable" in report.errors[0]
    assert report.anchored_height == report.business_height  # anchoring was not held up
    assert 0 < report.reported_height < report.anchored_height
    filed, _ = filed_reports(sup)
    assert len(filed) == 4
    report = relayer(b1, sup).run_round()
    assert report.errors == () and report.reported_height == report.anchored_height
    filed, failed = filed_reports(sup)
    ids = [rid for rid, _, _ in filed if rid.startswith("business-1-")]
    assert failed == 0 and len(ids) == len(set(ids))
    assert expected <= set(ids)


# ---------------------------------------------------------------------------------------------
# Metrics: a supervision node's anchoring gauges, the relayer's counters and its HTTP endpoint


def new_receipts(n: Net, after: int) -> list[Receipt]:
    return [r for h in range(after + 1, n.chain.height + 1) for r in n.ep.block(h).receipts]


def test_supervision_gauges_move_when_headers_are_anchored(nets: tuple[Net, Net, Net]) -> None:
    sup, b1, b2 = nets

    def fresh() -> tuple[NodeMetrics, AnchoringGauges]:
        m = NodeMetrics(chain_id="supervision", node="observer-0", org="csrc", role="observer")
        return m, AnchoringGauges(m)

    metrics, gauges = fresh()
    gauges.start(sup.chain.state)
    assert gauges.active and set(gauges.chains) == {"business-1", "business-2"}
    fams = parse_exposition(metrics.render())
    for b in (b1, b2):
        assert value_of(fams, "consortia_anchored_height", chain=b.chain.genesis.chain_id) == 0
        age_ms = sup.chain.state.last_time_ms - b.c.genesis.genesis_time_ms
        assert value_of(fams, "consortia_anchor_age_seconds", chain=b.chain.genesis.chain_id) == (
            max(0, age_ms) / 1000
        )

    seen = sup.chain.height
    b1.empty_blocks(2)
    report = relayer(b1, sup).run_round()
    assert report.errors == () and report.anchored > 0 and report.anchor_lag_blocks == 0
    gauges.on_commit(sup.chain.state, new_receipts(sup, seen))
    fams = parse_exposition(metrics.render())
    head = sup.chain.state
    anchored = b1.ep.block(report.anchored_height).block.header
    assert value_of(fams, "consortia_anchored_height", chain="business-1") == anchored.height
    assert value_of(fams, "consortia_anchor_age_seconds", chain="business-1") == (
        max(0, head.last_time_ms - anchored.time_ms) / 1000
    )
    assert value_of(fams, "consortia_anchored_height", chain="business-2") == 0  # untouched
    # Followed commit by commit, the gauges equal a fresh pass over the head state.
    full, full_gauges = fresh()
    full_gauges.start(head)
    assert full.render() == metrics.render()

    # Supervision blocks without anchoring: the heights stay, the ages grow with block time
    # (the test chains' clocks tick 1 s per block, each its own: the age is 0 while the
    # supervision chain's time is behind the anchored header's).
    ages = []
    for _ in range(2):
        seen = sup.chain.height
        sup.empty_blocks(max(1, (anchored.time_ms - sup.chain.state.last_time_ms) // 1000 + 1))
        gauges.on_commit(sup.chain.state, new_receipts(sup, seen))
        later = parse_exposition(metrics.render())
        assert value_of(later, "consortia_anchored_height", chain="business-1") == anchored.height
        age = value_of(later, "consortia_anchor_age_seconds", chain="business-1")
        assert age == (sup.chain.state.last_time_ms - anchored.time_ms) / 1000 > 0
        ages.append(age)
    assert ages[1] == ages[0] + 1.0

    # A business node has no anchoring module: no series, and commits change nothing.
    biz, biz_gauges = fresh()
    biz_gauges.start(b1.chain.state)
    biz_gauges.on_commit(b1.chain.state, new_receipts(b1, 0))
    fams = parse_exposition(biz.render())
    assert not biz_gauges.active
    assert fams["consortia_anchored_height"].samples == []
    assert fams["consortia_anchor_age_seconds"].samples == []


def scrape(url: str) -> dict[str, Family]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.status == 200
        return parse_exposition(reply.read().decode())


def test_relayer_metrics_move_across_rounds_and_are_served(nets: tuple[Net, Net, Net]) -> None:
    sup, b1, _ = nets
    metrics = RelayMetrics()
    r = relayer(b1, sup)
    with MetricsServer(metrics, "127.0.0.1", 0) as server:
        fams = scrape(server.url)
        assert value_of(fams, "consortia_relay_rounds_total") == 0
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server.url.removesuffix("metrics") + "status", timeout=10)
        assert err.value.code == 404

        first = r.run_round()
        metrics.record(first)
        assert first.errors == () and first.anchored > 0
        fams = scrape(server.url)
        assert value_of(fams, "consortia_relay_rounds_total") == 1
        assert value_of(fams, "consortia_relay_anchored_headers_total") == first.anchored
        assert value_of(fams, "consortia_anchoring_lag_blocks", chain="business-1") == 0

        # Business activity (reports to file) and an order for business-1, then two rounds.
        securities_on(b1)
        args = order_args(
            "ORD-M",
            "freeze",
            chain_id="business-1",
            freeze_id="F-M",
            account_id="SA-A",
            expires_at_ms=FAR,
        )
        sup.ok([sup.c.tx("regulator", "orders", "issue_order", args)])
        rounds = [first, r.run_round(), r.run_round()]
        for report in rounds[1:]:
            metrics.record(report)
        fams = scrape(server.url)
    assert all(report.errors == () for report in rounds), [x.errors for x in rounds]
    assert value_of(fams, "consortia_relay_rounds_total") == 3
    assert value_of(fams, "consortia_relay_errors_total") == 0
    anchored = sum(x.anchored for x in rounds)
    assert anchored > first.anchored
    assert value_of(fams, "consortia_relay_anchored_headers_total") == anchored
    filed = sum(x.reports_filed for x in rounds)
    assert filed > 0 and value_of(fams, "consortia_relay_reports_filed_total") == filed
    assert value_of(fams, "consortia_relay_orders_applied_total") == 1
    last = rounds[-1]
    assert value_of(fams, "consortia_anchoring_lag_blocks", chain="business-1") == (
        last.anchor_lag_blocks
    )
    assert value_of(fams, "consortia_anchoring_lag_seconds", chain="business-1") == (
        last.anchor_lag_ms / 1000
    )
    # Errors count too: the supervision node refusing submissions, a round reports them.
    b1.empty_blocks(1)  # something to anchor
    broken = Relayer(
        b1.ep,
        FailingAfter(sup.ep, 0),
        b1.c.accounts["relayer"],
        sup.c.accounts["relayer"],
    )
    report = broken.run_round()
    metrics.record(report)
    assert report.errors
    fams = parse_exposition(metrics.render())
    assert value_of(fams, "consortia_relay_errors_total") == len(report.errors)


def test_relay_cli_serves_metrics_while_it_runs(nets: tuple[Net, Net, Net], tmp_path: Path) -> None:
    sup, b1, _ = nets
    ports = [ClientPort(sup), ClientPort(b1)]
    with socket.socket() as probe:  # a free port for the relayer's metrics
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    sup_home = node_home(tmp_path, "sup-node", sup, ports[0].port)
    b1_home = node_home(tmp_path, "b1-node", b1, ports[1].port)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "consortia",
            "relay",
            "--business",
            str(b1_home),
            "--supervision",
            str(sup_home),
            "--business-key",
            str(b1_home / "relayer.key"),
            "--supervision-key",
            str(sup_home / "relayer.key"),
            "--interval-ms",
            "100",
            "--metrics-port",
            str(metrics_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "CONSORTIA_KEY_PASSWORD": PASSWORD},
    )
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                fams = scrape(url)
                if value_of(fams, "consortia_relay_rounds_total") >= 2:
                    break
            except (OSError, KeyError):
                pass
            assert time.monotonic() < deadline, "no metrics from the relayer"
            time.sleep(0.2)
        assert value_of(fams, "consortia_relay_errors_total") == 0
        assert value_of(fams, "consortia_relay_anchored_headers_total") > 0
        assert value_of(fams, "consortia_anchoring_lag_blocks", chain="business-1") >= 0
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + "/x", timeout=10)
        assert err.value.code == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        finally:
            proc.kill()
            for p in ports:
                p.close()
    assert code == 0
    with pytest.raises(OSError):  # the server went with the relayer
        urllib.request.urlopen(url, timeout=5)


def test_relay_cli_runs_on_when_its_metrics_port_is_taken(
    nets: tuple[Net, Net, Net], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sup, b1, _ = nets
    ports = [ClientPort(sup), ClientPort(b1)]
    monkeypatch.setenv("CONSORTIA_KEY_PASSWORD", PASSWORD)
    sup_home = node_home(tmp_path, "sup-node", sup, ports[0].port)
    b1_home = node_home(tmp_path, "b1-node", b1, ports[1].port)
    try:
        with socket.socket() as blocker:
            blocker.bind(("127.0.0.1", 0))
            blocker.listen()
            argv = [
                "relay",
                "--business",
                str(b1_home),
                "--supervision",
                str(sup_home),
                "--business-key",
                str(b1_home / "relayer.key"),
                "--supervision-key",
                str(sup_home / "relayer.key"),
                "--once",
                "--metrics-port",
                str(blocker.getsockname()[1]),
            ]
            result = runner.invoke(app, argv)
    finally:
        for p in ports:
            p.close()
    assert result.exit_code == 0, result.output
    assert "warning: --metrics-port: cannot listen on 127.0.0.1:" in result.stderr
    assert "Traceback" not in result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["errors"] == [] and line["anchor_lag_blocks"] == 0, line
    bad = runner.invoke(app, [*argv[:-1], "70000"])
    assert bad.exit_code == 2 and "--metrics-port" in bad.output, bad.output
