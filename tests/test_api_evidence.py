"""Evidence export over the REST API: a supervision node's API serves the anchor half, a business
node's API builds the business half from its own store, fetches the anchor half over HTTP from
the supervision API (a real uvicorn on a loopback port), verifies the bundle and answers the
canonical file. Checked: the bundles verify with ``verify_bundle`` against the genesis documents
(and a tampered one does not), the access rules, bad input, unknown ids, not-anchored blocks, a
missing or unreachable supervision API, a supervision API that lies, and the SDK's methods."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from consortia.api import ApiSettings, LocalBackend, create_app
from consortia.evidence.bundle import (
    EvidenceError,
    bundle_to_json,
    parse_bundle,
    verify_bundle,
)
from consortia.evidence.export import anchor_from_obj
from consortia.ledger.types import decode_block
from consortia.node.local import LocalChain
from consortia.node.network_home import NodeConfig
from consortia.node.supervisor import node_homes
from consortia.node.topology import init_two_tier
from consortia.sdk import Client
from consortia.sdk.errors import ApiError, BadEvidenceError, ForbiddenError, InvalidArgumentsError
from tests.apiworld import ApiWorld, build_api_world, opened
from tests.test_api import assert_problem
from tests.test_api_records import Who

OPEN = ApiSettings(rate_per_s=1e6, burst=1_000_000)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """``app`` on a loopback port (uvicorn in a thread); yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def free_port_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass
class Net:
    world: ApiWorld
    business: LocalChain
    supervision: LocalChain
    sup_url: str
    sup: TestClient  # the supervision API
    biz: TestClient  # the business API, fetching anchors from sup_url
    who: Who
    unanchored: int  # a business height committed after the last anchored one


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    world = build_api_world(tmp_path_factory.mktemp("api-evidence"))
    with opened(world.business_home) as business, opened(world.supervision_home) as sup:
        business.commit([])  # one block the relayer has not anchored
        assert business.height == world.anchored + 1
        with (
            serve(create_app(LocalBackend(sup), OPEN)) as sup_url,
            TestClient(create_app(LocalBackend(sup), OPEN)) as sup_client,
            TestClient(
                create_app(
                    LocalBackend(business),
                    ApiSettings(rate_per_s=1e6, burst=1_000_000, supervision_api=sup_url),
                )
            ) as biz,
        ):
            yield Net(
                world,
                business,
                sup,
                sup_url,
                sup_client,
                biz,
                Who(biz, business, world.keys),
                business.height,
            )


def tx_of(chain: LocalChain, sender: bytes, module: str, method: str) -> bytes:
    """The hash of the first ``module.method`` transaction ``sender`` committed."""
    for height in range(1, chain.height + 1):
        raw = chain.store.block(height)
        assert raw is not None
        for tx in decode_block(raw).transactions:
            if (tx.sender, tx.module, tx.method) == (sender, module, method):
                return tx.hash(chain.suite)
    raise AssertionError(f"no {module}.{method} by {sender.hex()}")


def address(net: Net, name: str) -> bytes:
    return net.business.suite.address(net.world.keys[name].public_key)


def verified(net: Net, text: str) -> Any:
    return verify_bundle(text, net.world.business_genesis, net.world.supervision_genesis)


# -- the anchor half (supervision node) ---------------------------------------------------------


def test_anchor_half(net: Net) -> None:
    chain_id, height = net.world.business_genesis.chain_id, net.world.anchored
    resp = net.sup.get(f"/v1/evidence/anchor/{chain_id}/{height}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["chain_id"], body["height"], body["part"]) == (chain_id, height, "anchor")
    assert body["supervision_genesis_hash"] == net.world.supervision_genesis.hash().hex()
    anchor = anchor_from_obj(body["anchor"])
    assert anchor.supervision.header.height == net.supervision.height
    assert anchor.anchor_proof.value is not None


@pytest.mark.parametrize(
    ("path", "status", "code", "detail"),
    [
        ("/v1/evidence/anchor/biz-evidence/{unanchored}", 409, "NOT_ANCHORED", "up to height"),
        ("/v1/evidence/anchor/nobody/1", 409, "NOT_ANCHORED", "not registered"),
        ("/v1/evidence/anchor/biz-evidence/0", 400, "BAD_REQUEST", ""),
        ("/v1/evidence/anchor/biz-evidence/-3", 400, "BAD_REQUEST", ""),
        ("/v1/evidence/anchor/biz-evidence/high", 400, "BAD_REQUEST", ""),
        ("/v1/evidence/anchor/biz-evidence/99999999999999999999", 400, "BAD_REQUEST", ""),
        ("/v1/evidence/anchor/" + "c" * 200 + "/1", 400, "BAD_REQUEST", ""),
    ],
)
def test_anchor_half_problems(net: Net, path: str, status: int, code: str, detail: str) -> None:
    body = assert_problem(net.sup.get(path.format(unanchored=net.unanchored)), status, code)
    assert detail in body["detail"]


def test_anchor_half_only_on_supervision_nodes(net: Net) -> None:
    assert_problem(net.biz.get("/v1/evidence/anchor/biz-evidence/1"), 404, "NOT_A_SUPERVISION_NODE")
    path = "/v1/evidence/holding/000001/SA-ALICE"
    resp = net.sup.get(path)  # unsigned: 401 before anything else
    assert_problem(resp, 401, "AUTH_REQUIRED")


# -- whole bundles (business node) --------------------------------------------------------------


def test_transaction_bundle_verifies(net: Net) -> None:
    h = tx_of(net.business, address(net, "alice"), "funds", "subscribe")
    path = f"/v1/evidence/tx/{h.hex()}"
    resp = net.who.get("alice", path)
    assert resp.status_code == 200, resp.text
    text = resp.text
    bundle = parse_bundle(text)
    assert bundle_to_json(bundle) == text  # the canonical file itself
    proven = verified(net, text)
    assert proven.kind == "transaction" and h.hex() in proven.what
    assert proven.chain_id == net.world.business_genesis.chain_id
    # Same rule as /v1/tx: the sender's organization and the regulator read it too.
    assert net.who.get("broker-a-admin", path).status_code == 200
    assert net.who.get("regulator", path).status_code == 200
    assert_problem(net.who.get("bob", path), 403, "FORBIDDEN")
    # One changed byte anywhere fails verification.
    obj = json.loads(text)
    cbor = obj["transaction"]["receipt"]["cbor"]
    obj["transaction"]["receipt"]["cbor"] = cbor[:-2] + ("00" if cbor[-2:] != "00" else "01")
    tampered = text.replace(cbor, obj["transaction"]["receipt"]["cbor"])
    with pytest.raises(EvidenceError):
        verified(net, tampered)


def test_holding_bundle_verifies(net: Net) -> None:
    height = net.world.anchored
    path = f"/v1/evidence/holding/000001/SA-ALICE?height={height}"
    for name in ("alice", "broker-a-admin", "regulator"):
        resp = net.who.get(name, path)
        assert resp.status_code == 200, (name, resp.text)
        proven = verified(net, resp.text)
        assert proven.height == height and "SA-ALICE" in proven.who and "000001" in proven.what
    for name in ("bob", "broker-b-admin", "ccb-admin"):
        assert_problem(net.who.get(name, path), 403, "FORBIDDEN")


def test_wallet_bundle_verifies(net: Net) -> None:
    path = f"/v1/evidence/wallet/W-ALICE?height={net.world.anchored - 3}"
    for name in ("alice", "ccb-admin", "regulator"):
        resp = net.who.get(name, path)
        assert resp.status_code == 200, (name, resp.text)
        proven = verified(net, resp.text)
        assert "W-ALICE" in proven.who and proven.height == net.world.anchored - 3
    for name in ("bob", "bocom-admin", "broker-a-admin"):
        assert_problem(net.who.get(name, path), 403, "FORBIDDEN")


@pytest.mark.parametrize(
    ("name", "path", "status", "code"),
    [
        ("regulator", "/v1/evidence/tx/" + "ab" * 32, 404, "NOT_FOUND"),
        ("alice", "/v1/evidence/tx/" + "ab" * 32, 403, "FORBIDDEN"),
        ("alice", "/v1/evidence/tx/xyz", 400, "BAD_REQUEST"),
        ("alice", "/v1/evidence/tx/" + "ab" * 100, 400, "BAD_REQUEST"),
        ("regulator", "/v1/evidence/holding/000001/SA-NOBODY?height=5", 404, "NOT_FOUND"),
        ("alice", "/v1/evidence/holding/000001/SA-NOBODY", 403, "FORBIDDEN"),
        ("regulator", "/v1/evidence/holding/NOPE/SA-ALICE?height=5", 404, "NOT_FOUND"),
        ("alice", "/v1/evidence/holding/000001/SA-ALICE?height=1", 404, "NOT_FOUND"),
        ("alice", "/v1/evidence/holding/000001/SA-ALICE?height=0", 400, "BAD_REQUEST"),
        ("alice", "/v1/evidence/holding/000001/SA-ALICE?height=x", 400, "BAD_REQUEST"),
        ("alice", "/v1/evidence/holding/000001/SA-ALICE?height=99999", 400, "BAD_REQUEST"),
        ("alice", "/v1/evidence/holding/ecny/SA-ALICE", 400, "BAD_REQUEST"),
        ("alice", "/v1/evidence/holding/" + "x" * 600 + "/SA-ALICE", 400, "BAD_REQUEST"),
        ("regulator", "/v1/evidence/wallet/W-NOBODY?height=5", 404, "NOT_FOUND"),
        ("alice", "/v1/evidence/wallet/W-NOBODY", 403, "FORBIDDEN"),
        ("alice", "/v1/evidence/wallet/" + "x" * 600, 400, "BAD_REQUEST"),
        ("alice", "/v1/evidence/wallet/W-ALICE?height=-1", 400, "BAD_REQUEST"),
    ],
)
def test_bundle_problems(net: Net, name: str, path: str, status: int, code: str) -> None:
    assert_problem(net.who.get(name, path), status, code)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/evidence/tx/" + "ab" * 32,
        "/v1/evidence/holding/000001/SA-ALICE",
        "/v1/evidence/wallet/W-ALICE",
    ],
)
def test_unsigned_or_badly_signed(net: Net, path: str) -> None:
    assert_problem(net.biz.get(path), 401, "AUTH_REQUIRED")
    headers = net.who.headers("alice", path + "?other")
    assert_problem(net.biz.get(path, headers=headers), 401, "BAD_REQUEST_SIGNATURE")


def test_not_anchored_yet(net: Net) -> None:
    for path in (
        f"/v1/evidence/holding/000001/SA-ALICE?height={net.unanchored}",
        "/v1/evidence/wallet/W-ALICE",  # default: the head, not anchored yet
    ):
        body = assert_problem(net.who.get("alice", path), 409, "NOT_ANCHORED")
        assert f"anchored up to height {net.world.anchored}" in body["detail"]


def test_without_a_supervision_api(net: Net) -> None:
    path = f"/v1/evidence/wallet/W-ALICE?height={net.world.anchored}"
    for settings in (
        OPEN,
        ApiSettings(rate_per_s=1e6, burst=10**6, supervision_api=free_port_url()),
    ):
        with TestClient(create_app(LocalBackend(net.business), settings)) as biz:
            body = assert_problem(
                Who(biz, net.business, net.world.keys).get("alice", path),
                503,
                "EVIDENCE_UNAVAILABLE",
            )
            assert "supervision API" in body["detail"]


def test_a_lying_supervision_api_is_caught(net: Net) -> None:
    """The anchor half is checked before the bundle is answered: a supervision API answering a
    tampered anchor half, or another chain's genesis, gets 502 BAD_EVIDENCE."""
    height = net.world.anchored
    honest = net.sup.get(f"/v1/evidence/anchor/biz-evidence/{height}").json()
    root = honest["anchor"]["supervision"]["header"]
    tampered_header = json.loads(json.dumps(honest))
    cbor = root["cbor"]
    tampered_header["anchor"]["supervision"]["header"]["cbor"] = cbor[:-2] + (
        "00" if cbor[-2:] != "00" else "01"
    )
    other_genesis = json.loads(json.dumps(honest))
    other_genesis["supervision_genesis"]["genesis_time_ms"] += 1
    for lie in (tampered_header, other_genesis, {"anchor": 1}):
        fake = FastAPI()

        @fake.get("/v1/evidence/anchor/{chain_id}/{h}")
        async def anchor(chain_id: str, h: int, lie: dict[str, Any] = lie) -> JSONResponse:
            return JSONResponse(lie)

        with (
            serve(fake) as url,
            TestClient(
                create_app(
                    LocalBackend(net.business),
                    ApiSettings(rate_per_s=1e6, burst=10**6, supervision_api=url),
                )
            ) as biz,
        ):
            path = f"/v1/evidence/wallet/W-ALICE?height={height}"
            assert_problem(
                Who(biz, net.business, net.world.keys).get("alice", path), 502, "BAD_EVIDENCE"
            )


def test_refused_exports_change_nothing(net: Net) -> None:
    before = (net.business.height, net.business.state.state_root, net.supervision.state.state_root)
    net.biz.get("/v1/evidence/tx/zz")
    net.who.get("bob", "/v1/evidence/wallet/W-ALICE")
    net.biz.post("/v1/evidence/wallet/W-ALICE", content=b"{not json")
    net.sup.get("/v1/evidence/anchor/biz-evidence/0")
    assert (
        net.business.height,
        net.business.state.state_root,
        net.supervision.state.state_root,
    ) == before


# -- the SDK ------------------------------------------------------------------------------------


def test_sdk_exports_and_verifies(net: Net, tmp_path: Path) -> None:
    with serve(
        create_app(
            LocalBackend(net.business),
            ApiSettings(rate_per_s=1e6, burst=10**6, supervision_api=net.sup_url),
        )
    ) as url:
        alice = Client(url, net.world.keys["alice"])
        h = tx_of(net.business, alice.address, "funds", "subscribe")
        plain = alice.export_transaction_evidence(h)
        assert plain.proven is None and plain.bundle.transaction is not None
        bgen = tmp_path / "business.json"
        bgen.write_text(net.world.business_genesis.to_json())
        checked = alice.export_transaction_evidence(
            h, verify=True, business_genesis=bgen, supervision_genesis=net.world.supervision_genesis
        )
        assert checked.proven is not None and checked.proven.kind == "transaction"
        holding = alice.export_holding_evidence(
            "000001",
            "SA-ALICE",
            height=net.world.anchored,
            verify=True,
            business_genesis=net.world.business_genesis,
            supervision_genesis=net.world.supervision_genesis,
        )
        assert holding.proven is not None and holding.proven.height == net.world.anchored
        wallet = alice.export_wallet_evidence("W-ALICE", height=net.world.anchored)
        assert wallet.bundle.state is not None and wallet.bundle.state.account == "W-ALICE"
        # Verified against the wrong genesis: refused locally.
        with pytest.raises(BadEvidenceError):
            alice.export_wallet_evidence(
                "W-ALICE",
                height=net.world.anchored,
                verify=True,
                business_genesis=net.world.supervision_genesis,
                supervision_genesis=net.world.supervision_genesis,
            )
        with pytest.raises(InvalidArgumentsError):
            alice.export_wallet_evidence("W-ALICE", verify=True)
        with pytest.raises(ForbiddenError):
            Client(url, net.world.keys["bob"]).export_wallet_evidence("W-ALICE", height=5)
        with pytest.raises(ApiError) as exc:
            alice.export_wallet_evidence("W-ALICE")  # the head: not anchored yet
        assert exc.value.code == "NOT_ANCHORED"


def test_sdk_typed_records(net: Net) -> None:
    with serve(create_app(LocalBackend(net.business), OPEN)) as url:
        alice = Client(url, net.world.keys["alice"])
        fund = alice.fund("519888")
        assert fund.fund.code == "519888" and len(fund.navs) == fund.navs_total == 3
        assert fund.security is not None and fund.security.kind == "fund_share"
        position = alice.fund_position("519888", "SA-ALICE")
        assert position.units() > 0 and position.lots
        assert alice.fund_order("S-1").status == "confirmed"
        assert alice.insurance_product("HEALTH-1").insurer_org
        with pytest.raises(ForbiddenError):
            alice.policy("P-2")
        bob = Client(url, net.world.keys["bob"])
        assert bob.policy("P-2").investor_id == "INV-BOB"
        me = alice.me()
        assert me.address == alice.address and me.roles == ("investor",)
        assert [w.wallet_id for w in me.wallets] == ["W-ALICE"]
        assert me.investors[0]["record"]["investor_id"] == "INV-ALICE"
        insurer = Client(url, net.world.keys["insurer-admin"])
        pages, after = [], None
        while True:
            page = insurer.me(limit=1, after=after)
            pages += [(c.kind, c.id) for c in page.customers]
            if page.next_customers is None:
                break
            after = page.next_customers
        assert pages == [("product", "HEALTH-1"), ("policy", "P-1"), ("policy", "P-2")]


def test_two_tier_business_nodes_fetch_anchors_from_a_supervision_api(tmp_path: Path) -> None:
    topology = init_two_tier(tmp_path / "net", validators=1, observers=1, scrypt_n=1 << 10)
    sup = [NodeConfig.load(h) for h in node_homes(topology.chain_home(topology.supervision))]
    urls = {f"http://{c.host}:{c.api_port}" for c in sup if c.api_port}
    business = [NodeConfig.load(h) for h in node_homes(topology.chain_home(topology.business[0]))]
    assert len(business) == 2
    assert all(c.supervision_api in urls for c in business)
    assert all(not c.supervision_api for c in sup)
    without_api = init_two_tier(
        tmp_path / "quiet", validators=1, observers=0, scrypt_n=1 << 10, api_port_offset=None
    )
    quiet = node_homes(without_api.chain_home(without_api.business[0]))
    assert [NodeConfig.load(h).supervision_api for h in quiet] == [""]
