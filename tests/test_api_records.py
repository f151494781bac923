"""Typed fund, fund-position, fund-order, insurance product and policy reads, and ``GET /v1/me``,
over a chain that ran the whole demo story: success (with proofs that verify), bad input (400),
unknown ids (404 for the regulator, 403 for others), unauthorized (401 unsigned or badly signed,
403 for the wrong account), and refused requests change nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consortia import codec
from consortia.api import LocalBackend, create_app, sign_request
from consortia.crypto import KeyPair
from consortia.ledger.state_tree import StateProof, verify_state_proof
from consortia.modules import funds, insurance
from consortia.node.local import LocalChain
from tests.apiworld import ApiWorld, build_api_world, opened
from tests.test_api import OPEN, assert_problem

FUND = "519888"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> ApiWorld:
    return build_api_world(tmp_path_factory.mktemp("api-records"))


@pytest.fixture(scope="module")
def chain(world: ApiWorld) -> Iterator[LocalChain]:
    with opened(world.business_home) as c:
        yield c


@pytest.fixture(scope="module")
def client(chain: LocalChain) -> Iterator[TestClient]:
    with TestClient(create_app(LocalBackend(chain), OPEN)) as c:
        yield c


class Who:
    """Signs GET requests as the story's accounts (strictly increasing timestamps)."""

    def __init__(self, client: TestClient, chain: LocalChain, keys: dict[str, KeyPair]) -> None:
        self.client, self.chain, self.keys = client, chain, keys
        self.last_ms = 0

    def headers(self, name: str, path: str) -> dict[str, str]:
        self.last_ms = max(time.time_ns() // 1_000_000, self.last_ms + 1)
        kp = self.keys[name]
        return sign_request(
            self.chain.suite,
            kp,
            self.chain.suite.address(kp.public_key),
            "GET",
            path,
            b"",
            self.last_ms,
            chain_id=self.chain.state.chain_id,
        )

    def get(self, name: str, path: str) -> Any:
        return self.client.get(path, headers=self.headers(name, path))


@pytest.fixture(scope="module")
def who(client: TestClient, chain: LocalChain, world: ApiWorld) -> Who:
    return Who(client, chain, world.keys)


def proven(chain: LocalChain, body: dict[str, Any], key: bytes) -> bytes:
    """The value ``body`` claims for ``key``, checked against its proof and state root."""
    proof = StateProof.from_bytes(bytes.fromhex(body["proof"]))
    assert proof.key == key
    value = verify_state_proof(chain.suite.hash, bytes.fromhex(body["state_root"]), proof)
    assert value is not None and value.hex() == body["value"]
    return value


# -- funds (public) -----------------------------------------------------------------------------


def test_fund_with_recent_navs(client: TestClient, chain: LocalChain) -> None:
    resp = client.get(f"/v1/funds/{FUND}")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    fund = codec.decode_struct(funds.Fund, proven(chain, body, funds.fund_key(FUND)))
    assert body["record"]["code"] == fund.code == FUND
    assert body["record"]["manager_org"] == fund.manager_org
    assert body["security"]["kind"] == "fund_share"
    days = [n["trading_day"] for n in body["navs"]]
    assert len(days) == body["navs_total"] == 3
    assert days == sorted(days, reverse=True)  # newest first
    assert body["navs"][0]["nav"] == fund.last_nav and days[0] == fund.last_nav_day
    one = client.get(f"/v1/funds/{FUND}?navs=1").json()
    assert [n["trading_day"] for n in one["navs"]] == days[:1]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/funds/NOPE", 404, "NOT_FOUND"),
        (f"/v1/funds/{FUND}?navs=0", 400, "BAD_REQUEST"),
        (f"/v1/funds/{FUND}?navs=1000", 400, "BAD_REQUEST"),
        (f"/v1/funds/{FUND}?navs=many", 400, "BAD_REQUEST"),
        ("/v1/funds/" + "x" * 600, 400, "BAD_REQUEST"),
        ("/v1/insurance/products/NOPE", 404, "NOT_FOUND"),
        ("/v1/insurance/products/" + "x" * 600, 400, "BAD_REQUEST"),
    ],
)
def test_public_bad_input(client: TestClient, path: str, status: int, code: str) -> None:
    assert_problem(client.get(path), status, code)


def test_insurance_product(client: TestClient, chain: LocalChain) -> None:
    body = client.get("/v1/insurance/products/HEALTH-1").json()
    product = codec.decode_struct(
        insurance.Product, proven(chain, body, insurance.product_key("HEALTH-1"))
    )
    assert body["record"]["insurer_org"] == product.insurer_org
    assert body["record"]["premium_fen"] == product.premium_fen > 0


# -- private reads ------------------------------------------------------------------------------

POSITION = f"/v1/funds/{FUND}/positions/SA-ALICE"
ORDER = "/v1/fund-orders/S-1"
POLICY = "/v1/policies/P-2"


@pytest.mark.parametrize(
    ("path", "readers", "others"),
    [
        (
            POSITION,
            {"alice": "self", "broker-a-admin": "broker", "fund-admin": "manager"},
            ["bob", "broker-b-admin", "ccb-admin", "insurer-admin", "carol"],
        ),
        (
            ORDER,
            {"alice": "self", "broker-a-admin": "broker", "fund-admin": "manager"},
            ["bob", "broker-b-admin", "ccb-admin", "carol"],
        ),
        (
            POLICY,
            {"bob": "self", "broker-b-admin": "broker", "insurer-admin": "insurer"},
            ["alice", "broker-a-admin", "fund-admin", "bocom-admin", "dan"],
        ),
    ],
)
def test_private_readers(
    who: Who, chain: LocalChain, path: str, readers: dict[str, str], others: list[str]
) -> None:
    for name, access in {**readers, "regulator": "regulator"}.items():
        resp = who.get(name, path)
        assert resp.status_code == 200, (name, resp.text)
        assert resp.json()["access"] == access
    for name in others:
        assert_problem(who.get(name, path), 403, "FORBIDDEN")


def test_position_lots_and_proof(who: Who, chain: LocalChain) -> None:
    body = who.get("alice", POSITION).json()
    position = codec.decode_struct(
        funds.Position, proven(chain, body, funds.position_key(FUND, "SA-ALICE"))
    )
    assert body["record"]["lots"] == [
        {"trading_day": lot.trading_day, "units": lot.units} for lot in position.lots
    ]
    assert body["units"] == position.units() > 0
    assert body["available"] == body["units"] - body["reserved"]


def test_order_and_policy_records(who: Who, chain: LocalChain) -> None:
    order = who.get("alice", ORDER).json()
    decoded = codec.decode_struct(funds.Order, proven(chain, order, funds.order_key("S-1")))
    assert order["record"]["status"] == decoded.status == "confirmed"
    assert order["record"]["kind"] == "subscribe"
    assert order["record"]["placed_by"] == decoded.placed_by.hex()
    policy = who.get("bob", POLICY).json()
    p = codec.decode_struct(insurance.Policy, proven(chain, policy, insurance.policy_key("P-2")))
    assert policy["record"]["investor_id"] == p.investor_id == "INV-BOB"
    assert policy["record"]["claimed_fen"] == p.claimed_fen > 0


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/funds/{FUND}/positions/SA-NOBODY",
        "/v1/funds/NOPE/positions/SA-ALICE",
        "/v1/fund-orders/NOPE",
        "/v1/policies/NOPE",
    ],
)
def test_unknown_private_ids(who: Who, path: str) -> None:
    assert_problem(who.get("regulator", path), 404, "NOT_FOUND")
    assert_problem(who.get("alice", path), 403, "FORBIDDEN")
    assert_problem(who.get("fund-admin", path), 403, "FORBIDDEN")


@pytest.mark.parametrize(
    "path",
    [
        f"/v1/funds/{FUND}/positions/" + "x" * 600,
        "/v1/funds/" + "x" * 600 + "/positions/SA-ALICE",
        "/v1/fund-orders/" + "x" * 600,
        "/v1/policies/" + "x" * 600,
        "/v1/me?limit=0",
        "/v1/me?limit=lots",
        "/v1/me?limit=100000",
        "/v1/me?after=nokind",
        "/v1/me?after=alien:X",
        "/v1/me?after=" + "x" * 2000,
    ],
)
def test_private_bad_input(who: Who, path: str) -> None:
    assert_problem(who.get("regulator", path), 400, "BAD_REQUEST")


@pytest.mark.parametrize("path", [POSITION, ORDER, POLICY, "/v1/me"])
def test_unauthorized(client: TestClient, who: Who, path: str) -> None:
    assert_problem(client.get(path), 401, "AUTH_REQUIRED")
    headers = who.headers("alice", path)
    sig = headers["X-Consortia-Signature"]
    headers["X-Consortia-Signature"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    assert_problem(client.get(path, headers=headers), 401, "BAD_REQUEST_SIGNATURE")
    other = who.headers("alice", "/v1/me?limit=1")  # signed for another path
    assert_problem(client.get(path, headers=other), 401, "BAD_REQUEST_SIGNATURE")


# -- /v1/me -------------------------------------------------------------------------------------


def test_me_investor_view(who: Who, chain: LocalChain) -> None:
    resp = who.get("alice", "/v1/me")
    assert resp.status_code == 200, resp.text
    assert "sealed_identity" not in resp.text
    me = resp.json()
    alice = chain.suite.address(who.keys["alice"].public_key)
    assert me["address"] == alice.hex() and me["roles"] == ["investor"]
    assert me["organization"]["org_id"] == me["org_id"] == "broker-a"
    assert me["height"] == chain.height and me["max_items"] > 0
    assert "customers" not in me and "regulator" not in me
    [inv] = me["investors"]
    assert inv["record"]["investor_id"] == "INV-ALICE"
    assert [a["account"]["account_id"] for a in inv["accounts"]] == ["SA-ALICE"]
    codes = {h["code"] for h in inv["accounts"][0]["holdings"]}
    assert inv["accounts"][0]["holdings_truncated"] is False
    assert "000001" in codes
    [position] = inv["fund_positions"]
    assert position["record"]["code"] == FUND and position["record"]["lots"]
    assert {o["order_id"] for o in inv["fund_orders"]} == {"S-1", "R-1"}
    assert inv["fund_orders"][0]["order_id"] == "R-1"  # newest first
    assert inv["policies"] == []
    assert not any(inv["truncated"].values())
    [wallet] = me["wallets"]
    assert wallet["record"]["wallet_id"] == "W-ALICE" and wallet["record"]["owner"] == alice.hex()
    assert set(wallet["limits"]) == {"balance_cap", "per_payment", "daily"}
    assert {"day", "day_spent"} <= set(wallet)
    bob = who.get("bob", "/v1/me").json()
    assert {p["policy_id"] for p in bob["investors"][0]["policies"]} == {"P-1", "P-2"}


def _all_pages(who: Who, name: str, limit: int) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    path = f"/v1/me?limit={limit}"
    for _ in range(50):
        page = who.get(name, path).json()["customers"]
        assert len(page["items"]) <= limit
        items += [(i["kind"], i["id"]) for i in page["items"]]
        if page["next"] is None:
            return items
        path = f"/v1/me?limit={limit}&after={page['next']}"
    raise AssertionError("pagination does not end")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("broker-a-admin", [("investor", "INV-ALICE")]),
        ("broker-b-admin", [("investor", "INV-BOB")]),
        (
            "ccb-admin",
            [("wallet", w) for w in ("W-ALICE", "W-CAROL", "W-FUND-CUSTODY", "W-FUND-FEES")],
        ),
        ("fund-admin", [("fund", FUND)]),
        ("insurer-admin", [("product", "HEALTH-1"), ("policy", "P-1"), ("policy", "P-2")]),
    ],
)
def test_me_institution_customers(who: Who, name: str, expected: list[tuple[str, str]]) -> None:
    resp = who.get(name, "/v1/me")
    assert resp.status_code == 200, resp.text
    assert "sealed_identity" not in resp.text
    page = resp.json()["customers"]
    assert [(i["kind"], i["id"]) for i in page["items"]] == expected
    assert page["next"] is None
    assert _all_pages(who, name, 1) == expected  # one per page, in the same order


def test_me_regulator_summary(who: Who) -> None:
    me = who.get("regulator", "/v1/me").json()
    summary = me["regulator"]
    assert summary["investors"] == 2 and summary["funds"] == 1
    assert summary["policies"] == 2 and summary["insurance_products"] == 1
    assert summary["wallets"] >= 8 and summary["fund_positions"] == 2
    assert me["investors"] == [] and me["wallets"] == []


def test_refused_requests_change_nothing(client: TestClient, who: Who, chain: LocalChain) -> None:
    before = (chain.height, chain.state.state_root)
    for path in (POSITION, ORDER, POLICY, "/v1/me"):
        client.get(path)
        who.get("carol", path)
        client.post(path, content=b"{bad json")
        client.get(path, headers={"X-Consortia-Account": "zz"})
    resp = client.post(POLICY, content=json.dumps({"x": 1}))
    assert_problem(resp, 405, "METHOD_NOT_ALLOWED")
    oversize = client.request("GET", "/v1/me", content=b"x" * (OPEN.max_body_bytes + 1))
    assert_problem(oversize, 413, "PAYLOAD_TOO_LARGE")
    assert (chain.height, chain.state.state_root) == before


def test_investor_view_lists_are_capped(chain: LocalChain) -> None:
    """Each list of the investor view holds at most ``ME_MAX_ITEMS``; ``truncated`` says so."""
    from dataclasses import replace

    from consortia.api.private import read_context
    from consortia.api.records import ME_MAX_ITEMS, RecordsIndex, _investor_view

    index = RecordsIndex().current(chain.state)
    inv = index.investor_records["INV-ALICE"]
    [order] = [o for o in index.orders_by_account["SA-ALICE"] if o.order_id == "S-1"]
    index.orders_by_account["SA-ALICE"] = [
        replace(order, order_id=f"S-{i:03d}", placed_ms=i) for i in range(ME_MAX_ITEMS + 5)
    ]
    view = _investor_view(read_context(chain.state), index, inv)
    assert len(view["fund_orders"]) == ME_MAX_ITEMS
    assert view["fund_orders"][0]["order_id"] == f"S-{ME_MAX_ITEMS + 4:03d}"  # newest first
    assert view["truncated"] == {
        "accounts": False,
        "fund_positions": False,
        "fund_orders": True,
        "policies": False,
    }
