"""The regulator dashboard's data over the REST API: ``/v1/supervision/*`` and ``/v1/activity``.

A supervision chain and two business chains on ``LocalChain``s (the relayer's world of
test_relay.py): the regulator registers both chains, the relayer anchors them and carries a
freeze order down to business-1; a third, hand-built chain (test_surveillance.py's ``Feed``)
adds holdings, a large-value payment and its alert. The business chains are indexed into a
look-through file and the API serves the supervision chain with that file, read-only.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi.testclient import TestClient

from consortia.api import ApiSettings, LocalBackend, create_app
from consortia.api.auth import sign_request
from consortia.crypto import KeyPair
from consortia.ledger.types import decode_block, decode_certificate
from consortia.lookthrough.index import LookthroughIndex
from consortia.lookthrough.surveillance import ABNORMAL_VOLUME, LARGE_VALUE_PAYMENT
from consortia.sdk.client import Client
from consortia.sdk.errors import ForbiddenError, NotFoundError
from tests.test_api import assert_problem
from tests.test_investors import open_account_tx, open_investor_tx, register
from tests.test_relay import Net, business, relayer, start
from tests.test_supervision import FAR, order_args, trust_args
from tests.test_surveillance import Feed
from tests.tierkit import make_supervision, register_chain_args

NOW = 1_800_000_000_000
FAST = {"rate_per_s": 1e6, "burst": 1_000_000}
FEED_CHAIN = "biz-test"  # test_surveillance's hand-built chain


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


@dataclass
class World:
    sup: Net
    b1: Net
    b2: Net
    index: Path
    clock: Clock
    unanchored: int  # business-1 blocks committed after the last relay round


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("api-supervision")
    sup = start(base / "sup", make_supervision())
    b1 = start(base / "b1", business("business-1"))
    b2 = start(base / "b2", business("business-2"))
    try:
        sup.ok(
            [
                sup.c.tx("regulator", "anchoring", "register_chain", register_chain_args(b.c))
                for b in (b1, b2)
            ]
        )
        for b in (b1, b2):
            b.ok([b.c.tx("regulator", "supervision", "trust_supervision", trust_args(sup.c))])
            b.ok([register(b.c, "inv-a", "broker-a", ("investor",))])
            b.ok(
                [
                    open_investor_tx(b.c, "broker-a-admin", "INV-A", "inv-a"),
                    open_account_tx(b.c, "broker-a-admin", "SA-A", "INV-A"),
                ]
            )
        r1, r2 = relayer(b1, sup), relayer(b2, sup)
        for r in (r1, r2):
            assert r.run_round().errors == ()
        args = order_args(
            "ORD-1",
            "freeze",
            chain_id="business-1",
            freeze_id="F-1",
            account_id="SA-A",
            expires_at_ms=FAR,
        )
        sup.ok([sup.c.tx("regulator", "orders", "issue_order", args)])
        assert r1.run_round().orders_applied == 1
        assert r2.run_round().errors == ()
        # A later order, not carried down (no relay round after it).
        halt = order_args("ORD-0", "trading_halt", chain_id="business-2", code="000009")
        sup.ok([sup.c.tx("regulator", "orders", "issue_order", halt)])
        b1.empty_blocks(3)  # committed, indexed, not anchored yet
        index = base / "lookthrough.sqlite"
        with LookthroughIndex(index) as idx:
            for b in (b1, b2):
                idx.follow_store(b.chain.store, b.chain.genesis.chain_id)
            feed = Feed(idx)
            issued = {"code": "000001", "account_id": "SA-A", "amount": 1_000}
            opened = {
                "investor_id": "INV-A",
                "address": bytes(20),
                "org_id": "broker-a",
                "kind": "individual",
            }
            feed.block(
                1_767_225_600_000,
                feed.tx(
                    "investors", "open_investor", {}, [("investors", "investor_opened", opened)]
                ),
                feed.tx(
                    "investors",
                    "open_account",
                    {"account_id": "SA-A", "investor_id": "INV-A"},
                    [
                        (
                            "investors",
                            "account_opened",
                            {"account_id": "SA-A", "investor_id": "INV-A"},
                        )
                    ],
                ),
                feed.tx("securities", "issue", issued, [("securities", "issued", issued)]),
            )
            feed.block(1_767_225_601_000, feed.transfer("000001", "SA-A", "SA-B", 300))
            feed.block(1_767_225_602_000, feed.pay("W-1", "W-2", 6_000_000, True))
            feed.block(1_767_225_603_000, feed.pay("W-2", "W-1", 7_000_000, True))
        yield World(sup, b1, b2, index, Clock(), 3)
    finally:
        for n in (sup, b1, b2):
            n.chain.close()


def client_for(world: World, index: Path | None) -> TestClient:
    settings = ApiSettings(lookthrough_index=index, **FAST)  # type: ignore[arg-type]
    return TestClient(create_app(LocalBackend(world.sup.chain), settings, clock_ms=world.clock))


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[TestClient]:
    with client_for(world, world.index) as c:
        yield c


def get(client: TestClient, world: World, who: str | None, path: str) -> Any:
    """GET ``path`` signed by the supervision chain account ``who`` (None: unsigned)."""
    if who is None:
        return client.get(path)
    kp: KeyPair = world.sup.c.accounts[who]
    chain = world.sup.chain
    world.clock.now += 1
    headers = sign_request(
        chain.suite,
        kp,
        chain.suite.address(kp.public_key),
        "GET",
        path,
        b"",
        world.clock.now,
        chain_id=chain.state.chain_id,
    )
    return client.get(path, headers=headers)


def ok(client: TestClient, world: World, path: str) -> dict[str, Any]:
    resp = get(client, world, "regulator", path)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


ENDPOINTS = (
    "/v1/supervision/overview",
    "/v1/supervision/alerts",
    "/v1/supervision/investors/INV-A",
    "/v1/supervision/holders/biz-test/000001",
    "/v1/supervision/large-payments",
    "/v1/supervision/freezes",
    "/v1/supervision/orders",
    "/v1/supervision/anchoring",
)
INDEXED = ("/v1/supervision/overview", "/v1/supervision/alerts", "/v1/supervision/freezes")


def heights(body: dict[str, Any]) -> dict[str, int]:
    return {h["chain_id"]: h["height"] for h in body["indexed"]}


# -- access -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ENDPOINTS)
def test_unsigned_is_401_and_non_regulator_is_403(
    client: TestClient, world: World, path: str
) -> None:
    assert_problem(get(client, world, None, path), 401, "AUTH_REQUIRED")
    # The clerk is an account of the regulator's organization, without the regulator role.
    assert_problem(get(client, world, "clerk", path), 403, "FORBIDDEN")
    assert_problem(get(client, world, "relayer", path), 403, "FORBIDDEN")
    assert get(client, world, "regulator", path).status_code == 200


def test_without_an_index_the_indexed_views_are_503(world: World, tmp_path: Path) -> None:
    junk = tmp_path / "not-an-index.sqlite"
    with sqlite3.connect(junk) as db:
        db.execute("CREATE TABLE other (x INTEGER)")
    for index in (None, tmp_path / "missing.sqlite", junk):
        with client_for(world, index) as c:
            for path in ENDPOINTS:
                resp = get(c, world, "regulator", path)
                if path in ("/v1/supervision/orders", "/v1/supervision/anchoring"):
                    # On-chain data: served without an index, freshness null.
                    assert resp.status_code == 200, resp.text
                    assert resp.json()["indexed"] is None
                else:
                    assert_problem(resp, 503, "LOOKTHROUGH_UNAVAILABLE")
            # Authorization still comes first.
            assert_problem(get(c, world, "clerk", INDEXED[0]), 403, "FORBIDDEN")
    # Opened read-only: nothing was created in the foreign file, no file appeared.
    with sqlite3.connect(junk) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"other"}
    assert not (tmp_path / "missing.sqlite").exists()


# -- views ------------------------------------------------------------------------------------


def test_overview_per_chain(client: TestClient, world: World) -> None:
    body = ok(client, world, "/v1/supervision/overview")
    assert body["node"]["tier"] == "supervision"
    assert body["node"]["height"] == world.sup.chain.height
    chains = {c["chain_id"]: c for c in body["chains"]}
    assert set(chains) == {"business-1", "business-2", FEED_CHAIN}
    b1, b2, feed = chains["business-1"], chains["business-2"], chains[FEED_CHAIN]
    assert heights(body) == {
        "business-1": world.b1.chain.height,
        "business-2": world.b2.chain.height,
        FEED_CHAIN: 4,
    }
    assert b1["indexed_height"] == world.b1.chain.height
    assert b1["registered"] and b2["registered"] and not feed["registered"]
    assert b1["anchored_height"] == world.b1.chain.height - world.unanchored
    assert b1["lag_blocks"] == world.unanchored and b2["lag_blocks"] == 0
    assert b1["lag_ms"] is not None and b1["lag_ms"] > 0 and b2["lag_ms"] == 0
    assert feed["anchored_height"] is None and feed["lag_blocks"] is None
    assert (b1["orders"], b2["orders"], feed["orders"]) == (1, 1, 0)
    assert (b1["open_freezes"], b2["open_freezes"]) == (1, 0)
    # Two large-value payments, each also an abnormal day's volume for its payer and payee.
    assert feed["alerts"] == 4 and feed["alerts_by_severity"] == {"medium": 4}
    assert body["totals"] == {"alerts": 4, "open_freezes": 1, "orders": 2}


def test_alerts_newest_first_filtered_and_paged(client: TestClient, world: World) -> None:
    body = ok(client, world, "/v1/supervision/alerts")
    alerts = body["alerts"]
    ids = [a["id"] for a in alerts]
    assert len(ids) == 4 and ids == sorted(ids, reverse=True)  # newest first
    assert [a["height"] for a in alerts] == [4, 3, 3, 3]
    assert {a["rule"] for a in alerts} == {LARGE_VALUE_PAYMENT, ABNORMAL_VOLUME}
    assert body["next_after"] is None and heights(body)[FEED_CHAIN] == 4
    page1 = ok(client, world, "/v1/supervision/alerts?limit=3")
    assert [a["id"] for a in page1["alerts"]] == ids[:3] and page1["next_after"] == ids[2]
    page2 = ok(client, world, f"/v1/supervision/alerts?limit=3&after={page1['next_after']}")
    assert [a["id"] for a in page2["alerts"]] == ids[3:] and page2["next_after"] is None
    large = ok(client, world, f"/v1/supervision/alerts?rule={LARGE_VALUE_PAYMENT}")["alerts"]
    assert [(a["height"], a["subject"]) for a in large] == [(4, "W-2"), (3, "W-1")]
    assert ok(client, world, "/v1/supervision/alerts?rule=WASH_TRADE")["alerts"] == []
    assert ok(client, world, "/v1/supervision/alerts?chain=business-1")["alerts"] == []
    assert len(ok(client, world, f"/v1/supervision/alerts?chain={FEED_CHAIN}")["alerts"]) == 4


def test_investor_look_through_across_chains(client: TestClient, world: World) -> None:
    body = ok(client, world, "/v1/supervision/investors/INV-A")
    chains = {c["chain_id"]: c for c in body["chains"]}
    assert set(chains) == {"business-1", "business-2", FEED_CHAIN}
    assert chains[FEED_CHAIN]["accounts"] == [{"account_id": "SA-A", "holdings": {"000001": 700}}]
    assert chains["business-1"]["broker"] == "broker-a"
    assert body["total_holdings"] == {f"{FEED_CHAIN}:000001": 700}
    calls = {(h["chain_id"], h["call"]) for h in body["history"]}
    assert ("business-1", "investors.open_account") in calls
    assert ("business-2", "investors.open_investor") in calls
    assert (FEED_CHAIN, "securities.transfer") in calls
    feed = [
        (h["height"], h["call"], h["via"]) for h in body["history"] if h["chain_id"] == FEED_CHAIN
    ]
    assert feed == [
        (2, "securities.transfer", "SA-A"),
        (1, "securities.issue", "SA-A"),
        (1, "investors.open_account", "INV-A,SA-A"),
        (1, "investors.open_investor", "INV-A"),
    ]
    times = [h["time_ms"] for h in body["history"]]
    assert times == sorted(times, reverse=True)
    assert "sealed_identity" not in str(body) and "identity" not in str(body["chains"])
    short = ok(client, world, "/v1/supervision/investors/INV-A?history=1")
    assert len(short["history"]) == 1 and short["history"][0] == body["history"][0]


def test_holder_register_now_and_at_a_height(client: TestClient, world: World) -> None:
    now = ok(client, world, f"/v1/supervision/holders/{FEED_CHAIN}/000001")
    assert now["height"] == 4 and now["holder_count"] == 2 and now["total"] == 1_000
    assert [(h["account_id"], h["balance"]) for h in now["holders"]] == [
        ("SA-A", 700),
        ("SA-B", 300),
    ]
    then = ok(client, world, f"/v1/supervision/holders/{FEED_CHAIN}/000001?height=1")
    assert [(h["account_id"], h["balance"]) for h in then["holders"]] == [("SA-A", 1_000)]
    top = ok(client, world, f"/v1/supervision/holders/{FEED_CHAIN}/000001?limit=1")
    assert len(top["holders"]) == 1 and top["holder_count"] == 2


def test_large_payments_and_freezes(client: TestClient, world: World) -> None:
    body = ok(client, world, "/v1/supervision/large-payments")
    assert [p["amount_fen"] for p in body["payments"]] == [7_000_000, 6_000_000]
    assert body["payments"][0]["payer_operator"] == "bank-ccb"
    page = ok(client, world, "/v1/supervision/large-payments?limit=1")
    rest = ok(client, world, f"/v1/supervision/large-payments?limit=1&after={page['next_after']}")
    assert [p["amount_fen"] for p in rest["payments"]] == [6_000_000]
    freezes = ok(client, world, "/v1/supervision/freezes?lifted=5")
    [f] = freezes["open"]
    assert (f["chain_id"], f["freeze_id"], f["account_id"]) == ("business-1", "F-1", "SA-A")
    assert f["reference"] == "CSRC order ORD-1" and f["closed_height"] is None
    assert 0 < f["opened_height"] <= world.b1.chain.height
    assert freezes["lifted"] == []
    assert ok(client, world, "/v1/supervision/freezes?chain=business-2")["open"] == []


def test_orders_and_anchoring_from_the_supervision_state(client: TestClient, world: World) -> None:
    body = ok(client, world, "/v1/supervision/orders")
    assert [o["order_id"] for o in body["orders"]] == ["ORD-0", "ORD-1"]  # newest first
    assert body["total"] == 2 and heights(body)["business-1"] == world.b1.chain.height
    ord1 = body["orders"][1]
    assert (ord1["kind"], ord1["chain_id"], ord1["freeze_id"]) == ("freeze", "business-1", "F-1")
    only = ok(client, world, "/v1/supervision/orders?kind=freeze&chain=business-1")
    assert [o["order_id"] for o in only["orders"]] == ["ORD-1"]
    assert ok(client, world, "/v1/supervision/orders?limit=1")["total"] == 2
    anchors = {c["chain_id"]: c for c in ok(client, world, "/v1/supervision/anchoring")["chains"]}
    b1 = anchors["business-1"]
    b1_store = world.b1.chain.store
    anchored = world.b1.chain.height - world.unanchored
    assert b1["registered"] and b1["anchored_height"] == anchored
    assert b1["anchored_block_hash"] == (b1_store.block_hash(anchored) or b"").hex()
    assert b1["lag_blocks"] == world.unanchored
    assert not anchors[FEED_CHAIN]["registered"]


def test_records_follow_new_supervision_blocks(world: World, tmp_path: Path) -> None:
    """Chains registered and orders issued after the first read are seen (the edge's id cache
    follows the events of new blocks); a chain of its own, so the shared world stays as is."""
    sup = start(tmp_path / "sup", make_supervision())
    try:
        b7, b8 = business("business-7"), business("business-8")
        sup.ok([sup.c.tx("regulator", "anchoring", "register_chain", register_chain_args(b7))])
        mine = World(sup, world.b1, world.b2, world.index, world.clock, 0)
        with client_for(mine, None) as c:
            assert ok(c, mine, "/v1/supervision/orders")["total"] == 0
            chains = ok(c, mine, "/v1/supervision/anchoring")["chains"]
            assert [x["chain_id"] for x in chains] == ["business-7"]
            assert chains[0]["anchored_height"] == 0 and chains[0]["anchored_time_ms"] is None
            sup.ok([sup.c.tx("regulator", "anchoring", "register_chain", register_chain_args(b8))])
            args = order_args("ORD-9", "trading_halt", chain_id="business-8", code="000009")
            sup.ok([sup.c.tx("regulator", "orders", "issue_order", args)])
            body = ok(c, mine, "/v1/supervision/orders")
            assert [o["order_id"] for o in body["orders"]] == ["ORD-9"]
            assert body["node"]["height"] == sup.chain.height
            chains = ok(c, mine, "/v1/supervision/anchoring")["chains"]
            assert [x["chain_id"] for x in chains] == ["business-7", "business-8"]
    finally:
        sup.chain.close()


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/supervision/alerts?limit=0", 400, "BAD_REQUEST"),
        ("/v1/supervision/alerts?limit=501", 400, "BAD_REQUEST"),
        ("/v1/supervision/alerts?after=x", 400, "BAD_REQUEST"),
        ("/v1/supervision/alerts?rule=NOPE", 400, "BAD_REQUEST"),
        ("/v1/supervision/alerts?chain=" + "c" * 300, 400, "BAD_REQUEST"),
        ("/v1/supervision/large-payments?after=0", 400, "BAD_REQUEST"),
        (f"/v1/supervision/alerts?after={1 << 63}", 400, "BAD_REQUEST"),
        (f"/v1/supervision/holders/{FEED_CHAIN}/000001?height={1 << 64}", 400, "BAD_REQUEST"),
        ("/v1/supervision/investors/" + "i" * 300, 400, "BAD_REQUEST"),
        ("/v1/supervision/alerts?chain=", 400, "BAD_REQUEST"),
        ("/v1/supervision/freezes?lifted=-1", 400, "BAD_REQUEST"),
        ("/v1/supervision/orders?kind=nope", 400, "BAD_REQUEST"),
        ("/v1/supervision/investors/INV-A?history=1001", 400, "BAD_REQUEST"),
        (f"/v1/supervision/holders/{FEED_CHAIN}/000001?height=0", 400, "BAD_REQUEST"),
        ("/v1/supervision/investors/INV-NOBODY", 404, "NOT_FOUND"),
        ("/v1/supervision/holders/no-such-chain/000001", 404, "NOT_FOUND"),
        (f"/v1/supervision/holders/{FEED_CHAIN}/999999", 404, "NOT_FOUND"),
        (f"/v1/supervision/holders/{FEED_CHAIN}/000001?height=5", 404, "NOT_FOUND"),
    ],
)
def test_bad_parameters_and_unknown_ids(
    client: TestClient, world: World, path: str, status: int, code: str
) -> None:
    assert_problem(get(client, world, "regulator", path), status, code)


# -- activity (public) --------------------------------------------------------------------------


def test_activity_is_public_and_follows_the_stored_blocks(client: TestClient, world: World) -> None:
    chain = world.sup.chain
    resp = client.get("/v1/activity?blocks=4")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    head = chain.height
    assert body["chain_id"] == chain.state.chain_id and body["height"] == head
    rows = body["blocks"]
    assert [r["height"] for r in rows] == list(range(head - 3, head + 1))
    times = []
    for r in rows:
        b = decode_block(chain.store.block(r["height"]) or b"")
        cert = decode_certificate(chain.store.certificate(r["height"]) or b"")
        assert (r["time_ms"], r["txs"], r["round"]) == (
            b.header.time_ms,
            len(b.transactions),
            cert.round,
        )
        times.append(b.header.time_ms)
    prev = decode_block(chain.store.block(head - 4) or b"").header.time_ms
    assert [r["interval_ms"] for r in rows] == [
        t - p for t, p in zip(times, [prev, *times[:-1]], strict=True)
    ]
    summary = body["summary"]
    assert summary["blocks"] == 4 and summary["txs"] == sum(r["txs"] for r in rows)
    assert summary["span_ms"] == times[-1] - prev
    whole = client.get("/v1/activity?blocks=500").json()
    assert whole["blocks"][0]["height"] == 1 and whole["blocks"][0]["interval_ms"] is None
    assert len(whole["blocks"]) == head
    default = client.get("/v1/activity").json()
    assert len(default["blocks"]) == min(100, head)
    for bad in ("0", "501", "x"):
        assert_problem(client.get(f"/v1/activity?blocks={bad}"), 400, "BAD_REQUEST")


# -- the SDK over a real server -------------------------------------------------------------------


def test_sdk_methods_over_uvicorn(world: World) -> None:
    settings = ApiSettings(lookthrough_index=world.index, **FAST)  # type: ignore[arg-type]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    app = create_app(LocalBackend(world.sup.chain), settings)  # wall clock, as the SDK signs
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        chain_id = world.sup.chain.state.chain_id
        reg = Client(url, world.sup.c.accounts["regulator"], suite="intl", chain_id=chain_id)
        assert {c["chain_id"] for c in reg.supervision_overview()["chains"]} >= {"business-1"}
        page = reg.supervision_alerts(rule=LARGE_VALUE_PAYMENT, chain=FEED_CHAIN, limit=1)
        assert len(page["alerts"]) == 1 and page["next_after"] is not None
        rest = reg.supervision_alerts(rule=LARGE_VALUE_PAYMENT, after=page["next_after"])
        assert len(rest["alerts"]) == 1
        assert reg.supervision_investor("INV-A", history=2)["investor_id"] == "INV-A"
        held = reg.supervision_holders(FEED_CHAIN, "000001", height=1)
        assert held["total"] == 1_000
        assert len(reg.supervision_large_payments(limit=5)["payments"]) == 2
        assert len(reg.supervision_freezes(chain="business-1", lifted=1)["open"]) == 1
        assert reg.supervision_orders(kind="freeze")["total"] == 1
        assert reg.supervision_anchoring()["node"]["tier"] == "supervision"
        assert len(reg.activity(blocks=2)["blocks"]) == 2
        with pytest.raises(NotFoundError):
            reg.supervision_investor("INV-NOBODY")
        clerk = Client(url, world.sup.c.accounts["clerk"], suite="intl", chain_id=chain_id)
        with pytest.raises(ForbiddenError):
            clerk.supervision_overview()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
