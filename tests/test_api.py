"""The REST API over a LocalChain: every endpoint's success path, problem details for bad input
(and nothing changes), privacy of sealed identities, limits, and a property run finding no 5xx."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consortia import codec
from consortia.api import ApiSettings, LocalBackend, StateRead, create_app
from consortia.api.auth import sign_request
from consortia.crypto import KeyPair
from consortia.ledger.state_tree import StateProof, verify_state_proof
from consortia.ledger.types import Transaction, TxStatus, sign_transaction
from consortia.modules import anchoring, ecny
from consortia.modules.registry import Account, account_key
from consortia.node.home import init_home
from consortia.node.local import ACCOUNTS_DIR, VALIDATORS_DIR, LocalChain, load_key_dir
from consortia.node.story import Outcome, Story

PASSWORD = "test-password"
OPEN = ApiSettings(rate_per_s=1e6, burst=1_000_000)
PROBLEM = "application/problem+json"


class _Signer:
    def __init__(self, chain: LocalChain) -> None:
        self.chain = chain
        self.nonces: dict[bytes, int] = {}

    def tx(self, kp: KeyPair, module: str, method: str, args: dict[str, Any]) -> Transaction:
        addr = self.chain.suite.address(kp.public_key)
        n = self.nonces.get(addr, next_nonce(self.chain, addr))
        self.nonces[addr] = n + 1
        return sign_transaction(
            self.chain.suite,
            kp,
            chain_id=self.chain.state.chain_id,
            nonce=n,
            module=module,
            method=method,
            args=args,
        )


class _StoryOnChain:
    def __init__(self, chain: LocalChain) -> None:
        self.chain = chain

    def submit(self, txs: list[Transaction], label: str) -> list[Outcome]:
        done = self.chain.commit(txs)
        by_hash = {r.tx_hash: r for r in done.receipts}
        out = []
        for tx in txs:
            r = by_hash.get(tx.hash(self.chain.suite))
            if r is None:
                out.append(Outcome(False, "REJECTED", None))
            else:
                out.append(Outcome(r.status == TxStatus.OK, r.code, done.block.header.height))
        return out

    def get(self, key: bytes) -> bytes | None:
        return self.chain.state.tree.get(key)

    def now_ms(self) -> int:
        return self.chain.state.last_time_ms

    def advance_to(self, time_ms: int) -> bool:
        return False


def next_nonce(chain: LocalChain, addr: bytes) -> int:
    raw = chain.state.tree.get(account_key(addr))
    return 0 if raw is None else codec.decode_struct(Account, raw).nonce


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalChain, dict[str, Any]]]:
    home: Path = tmp_path_factory.mktemp("api-home")
    init_home(home, password=PASSWORD, scrypt_n=1 << 10)
    vkeys = load_key_dir(home / VALIDATORS_DIR, PASSWORD)
    keys = load_key_dir(home / ACCOUNTS_DIR, PASSWORD)
    failures: list[str] = []

    def check(label: str, ok: bool, detail: str) -> None:
        if not ok:
            failures.append(f"{label}: {detail}")

    with LocalChain(home, vkeys) as chain:
        story = Story(_StoryOnChain(chain), chain.suite, keys, _Signer(chain).tx, check, print)
        story.members()
        story.listing()
        story.wallets()
        assert not failures, failures
        yield chain, story.keys


@pytest.fixture(scope="module")
def client(world: tuple[LocalChain, dict[str, Any]]) -> Iterator[TestClient]:
    chain, _ = world
    with TestClient(create_app(LocalBackend(chain), OPEN)) as c:
        yield c


def sign(chain: LocalChain, kp: KeyPair, module: str, method: str, args: dict[str, Any]) -> bytes:
    return sign_transaction(
        chain.suite,
        kp,
        chain_id=chain.state.chain_id,
        nonce=next_nonce(chain, chain.suite.address(kp.public_key)),
        module=module,
        method=method,
        args=args,
    ).encode()


_last_ms = [0]


def signed_get(client: TestClient, chain: LocalChain, kp: KeyPair, path: str) -> Any:
    """``GET path`` signed with ``kp`` (wall clock, strictly increasing: never a replay)."""
    _last_ms[0] = max(time.time_ns() // 1_000_000, _last_ms[0] + 1)
    headers = sign_request(
        chain.suite,
        kp,
        chain.suite.address(kp.public_key),
        "GET",
        path,
        b"",
        _last_ms[0],
        chain_id=chain.state.chain_id,
    )
    return client.get(path, headers=headers)


def assert_problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = resp.json()
    assert body["status"] == status and body["code"] == code
    assert body["type"] and body["title"] and isinstance(body["detail"], str)
    assert "Traceback" not in resp.text
    return body


# -- operations and docs ------------------------------------------------------------------------


def test_operations_and_docs(client: TestClient, world: tuple[LocalChain, Any]) -> None:
    chain, _ = world
    assert client.get("/healthz").json() == {"ok": True}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["height"] == chain.height
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert f"consortia_height {chain.height}" in metrics.text
    spec = client.get("/openapi.json").json()
    assert "/v1/tx" in spec["paths"] and "/v1/blocks/{height}" in spec["paths"]
    operations = [op for item in spec["paths"].values() for op in item.values()]
    assert all("422" not in op["responses"] for op in operations)  # validation errors are 400
    assert client.get("/docs").status_code == 200


def test_status(client: TestClient, world: tuple[LocalChain, Any]) -> None:
    chain, _ = world
    body = client.get("/v1/status").json()
    assert body["chain_id"] == chain.state.chain_id and body["suite"] == "intl"
    assert body["height"] == chain.height
    assert body["state_root"] == chain.state.state_root.hex()
    assert body["last_block_hash"] == chain.state.last_block_hash.hex()
    assert len(body["validators"]) == 4


# -- blocks, certificates, transactions -----------------------------------------------------------


def test_block_and_certificate(client: TestClient, world: tuple[LocalChain, Any]) -> None:
    chain, _ = world
    block = client.get("/v1/blocks/2").json()
    stored = chain.store.block_hash(2)
    assert stored is not None and block["hash"] == stored.hex()
    assert block["header"]["height"] == 2 and block["header"]["chain_id"] == chain.state.chain_id
    assert len(block["transactions"]) >= 1 and all(len(h) == 64 for h in block["transactions"])
    assert len(block["certificate"]["signers"]) == 4
    cert = client.get("/v1/blocks/2/certificate").json()
    assert cert["height"] == 2 and cert["block_hash"] == block["hash"]
    assert len(cert["signatures"]) == 4 and bytes.fromhex(cert["encoded"])
    for missing in ("0", "-1", str(chain.height + 1), "99999999999999999999"):
        assert_problem(client.get(f"/v1/blocks/{missing}"), 404, "NOT_FOUND")
        assert_problem(client.get(f"/v1/blocks/{missing}/certificate"), 404, "NOT_FOUND")
    assert_problem(client.get("/v1/blocks/abc"), 400, "BAD_REQUEST")


def test_transaction_with_receipt_and_no_sealed_identity(
    client: TestClient, world: tuple[LocalChain, Any]
) -> None:
    chain, keys = world
    for height in range(1, chain.height + 1):
        block = client.get(f"/v1/blocks/{height}").json()
        for tx_hash in block["transactions"]:
            got = signed_get(client, chain, keys["regulator"], f"/v1/tx/{tx_hash}")
            assert got.status_code == 200
            body = got.json()
            assert body["height"] == height and body["receipt"]["tx_hash"] == tx_hash
            if body["transaction"]["method"] == "open_wallet":
                assert "sealed_identity" not in body["transaction"]["args"]
                assert "sealed_identity" not in got.text
                assert body["receipt"]["status"] == "OK"
                assert body["receipt"]["events"], "open_wallet emits an event"
                return
    raise AssertionError("no open_wallet transaction found")


def test_unknown_and_bad_tx_hash(client: TestClient, world: tuple[LocalChain, Any]) -> None:
    chain, keys = world
    regulator = keys["regulator"]
    assert_problem(signed_get(client, chain, regulator, "/v1/tx/" + "00" * 32), 404, "NOT_FOUND")
    assert_problem(
        signed_get(client, chain, keys["alice"], "/v1/tx/" + "00" * 32), 403, "FORBIDDEN"
    )
    assert_problem(signed_get(client, chain, regulator, "/v1/tx/xyz"), 400, "BAD_REQUEST")
    assert_problem(signed_get(client, chain, regulator, "/v1/tx/" + "00" * 65), 400, "BAD_REQUEST")
    assert_problem(client.get("/v1/tx/" + "00" * 32), 401, "AUTH_REQUIRED")  # unsigned


# -- state and typed reads ----------------------------------------------------------------------


def test_state_read_with_proof(client: TestClient, world: tuple[LocalChain, Any]) -> None:
    chain, keys = world
    key = account_key(chain.suite.address(keys["exchange-admin"].public_key))
    body = client.get(f"/v1/state/{key.hex()}").json()
    assert body["state_root"] == chain.state.state_root.hex() and body["height"] == chain.height
    proof = StateProof.from_bytes(bytes.fromhex(body["proof"]))
    assert proof.key == key
    assert verify_state_proof(chain.suite.hash, bytes.fromhex(body["state_root"]), proof) == (
        bytes.fromhex(body["value"])
    )
    no_key = f"/v1/state/{b'no/such/key'.hex()}"
    assert_problem(client.get(no_key), 401, "AUTH_REQUIRED")  # not a public prefix
    absent = signed_get(client, chain, keys["regulator"], no_key).json()
    assert absent["value"] is None
    proof = StateProof.from_bytes(bytes.fromhex(absent["proof"]))
    assert verify_state_proof(chain.suite.hash, chain.state.state_root, proof) is None
    assert_problem(
        client.get(f"/v1/state/{ecny.wallet_key('W-ALICE').hex()}"), 403, "PRIVATE_RECORD"
    )
    assert_problem(client.get("/v1/state/0g"), 400, "BAD_REQUEST")
    assert_problem(client.get("/v1/state/" + "ab" * 1025), 400, "BAD_REQUEST")


def test_typed_reads(client: TestClient, world: tuple[LocalChain, Any]) -> None:
    chain, keys = world
    addr = chain.suite.address(keys["exchange-admin"].public_key)
    acct = client.get(f"/v1/accounts/{addr.hex()}").json()
    assert acct["record"]["org_id"] == "exchange" and "admin" in acct["record"]["roles"]
    assert acct["record"]["nonce"] == next_nonce(chain, addr)
    alice = keys["alice"]
    holding = signed_get(client, chain, alice, "/v1/holdings/000001/SA-ALICE").json()
    assert holding["record"]["balance"] == 100_000 and holding["record"]["account_id"] == "SA-ALICE"
    assert holding["access"] == "self" and holding["value"] and holding["proof"]
    wallet = signed_get(client, chain, alice, "/v1/wallets/W-ALICE")
    assert wallet.status_code == 200 and wallet.json()["access"] == "owner"
    record = wallet.json()["record"]
    assert record["owner"] == chain.suite.address(keys["alice"].public_key).hex()
    assert record["category"] == 2 and record["balance"] > 0
    assert "sealed_identity" not in wallet.text and "value" not in wallet.json()
    assert_problem(client.get(f"/v1/accounts/{'00' * 20}"), 404, "NOT_FOUND")
    assert_problem(client.get("/v1/accounts/nothex"), 400, "BAD_REQUEST")
    regulator = keys["regulator"]
    for path in ("/v1/holdings/000001/SA-NOBODY", "/v1/wallets/W-NOBODY"):
        assert_problem(signed_get(client, chain, regulator, path), 404, "NOT_FOUND")
        assert_problem(signed_get(client, chain, alice, path), 403, "FORBIDDEN")
    # A business chain registers no anchored chains.
    assert_problem(client.get("/v1/anchors/business-1"), 404, "NOT_FOUND")


def test_anchor_read(world: tuple[LocalChain, Any]) -> None:
    chain, _ = world
    record = anchoring.AnchoredChain(
        chain_id="business-1",
        suite="intl",
        genesis_hash=b"\x01" * 32,
        genesis_time_ms=1,
        height=7,
        block_hash=b"\x02" * 32,
        time_ms=2,
        state_root=b"\x03" * 32,
        next_validators=chain.state.next_validators,
        registered_height=3,
        registered_by=b"\x04" * 20,
    )

    class Supervision(LocalBackend):
        def state_value(self, key: bytes) -> StateRead:
            read = super().state_value(key)
            if key == anchoring.chain_key("business-1"):
                return StateRead(key, codec.encode_struct(record), read.proof, read.state_root, 1)
            return read

    with TestClient(create_app(Supervision(chain), OPEN)) as c:
        body = c.get("/v1/anchors/business-1").json()
    assert body["record"]["height"] == 7 and body["record"]["block_hash"] == "02" * 32
    assert len(body["record"]["next_validators"]["validators"]) == 4


# -- submission ---------------------------------------------------------------------------------


def test_submit_and_wait(client: TestClient, world: tuple[LocalChain, Any]) -> None:
    chain, keys = world
    raw = sign(
        chain,
        keys["exchange-admin"],
        "registry",
        "register_org",
        {"org_id": "broker-api", "name": "API Securities", "kind": "broker"},
    )
    resp = client.post("/v1/tx", json={"tx": raw.hex(), "wait": True})
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["ok"] is True and out["height"] == chain.height and out["code"] == ""
    got = signed_get(client, chain, keys["exchange-admin"], f"/v1/tx/{out['tx_hash']}").json()
    assert got["transaction"]["args"]["org_id"] == "broker-api"
    # The same org again: committed, but the business rule refuses it (200, ok false).
    again = sign(
        chain,
        keys["exchange-admin"],
        "registry",
        "register_org",
        {"org_id": "broker-api", "name": "API Securities", "kind": "broker"},
    )
    refused = client.post("/v1/tx", json={"tx": again.hex(), "wait": True}).json()
    assert refused["ok"] is False and refused["code"] and refused["height"] == chain.height
    # Without waiting: accepted (202) with its hash.
    third = sign(
        chain,
        keys["exchange-admin"],
        "registry",
        "register_org",
        {"org_id": "broker-api-2", "name": "API Securities 2", "kind": "broker"},
    )
    accepted = client.post("/v1/tx", json={"tx": third.hex()})
    assert accepted.status_code == 202 and accepted.json()["ok"] is True


def _tampered(raw: bytes) -> bytes:
    tx = codec.decode_struct(Transaction, raw)
    sig = bytearray(tx.signature)
    sig[0] ^= 1
    return codec.encode_struct(
        Transaction(tx.chain_id, tx.sender, tx.nonce, tx.module, tx.method, tx.args, bytes(sig))
    )


def test_bad_requests_change_nothing(client: TestClient, world: tuple[LocalChain, Any]) -> None:
    chain, keys = world
    admin = keys["exchange-admin"]
    args = {"org_id": "broker-never", "name": "Never", "kind": "broker"}
    good = sign(chain, admin, "registry", "register_org", args)
    stale = sign_transaction(
        chain.suite,
        admin,
        chain_id=chain.state.chain_id,
        nonce=0,
        module="registry",
        method="register_org",
        args=args,
    ).encode()
    big = {"tx": "00" * (256 * 1024), "wait": True}
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("malformed json", {"content": b'{"tx": "00",', "headers": _JSON}, 400, "BAD_REQUEST"),
        ("not an object", {"json": ["tx"]}, 400, "BAD_REQUEST"),
        ("tx not a string", {"json": {"tx": 5}}, 400, "BAD_REQUEST"),
        ("wait not a bool", {"json": {"tx": good.hex(), "wait": "yes"}}, 400, "BAD_REQUEST"),
        ("extra field", {"json": {"tx": good.hex(), "x": 1}}, 400, "BAD_REQUEST"),
        ("missing tx", {"json": {"wait": True}}, 400, "BAD_REQUEST"),
        ("tx not hex", {"json": {"tx": "zz"}}, 400, "BAD_REQUEST"),
        ("not a transaction", {"json": {"tx": "a1"}}, 400, "MALFORMED_TRANSACTION"),
        ("oversize body", {"json": big}, 413, "PAYLOAD_TOO_LARGE"),
        ("oversize, chunked", {"content": _chunks(300 * 1024)}, 413, "PAYLOAD_TOO_LARGE"),
        (
            "bad signature",
            {"json": {"tx": _tampered(good).hex(), "wait": True}},
            400,
            "BAD_SIGNATURE",
        ),
        ("stale nonce", {"json": {"tx": stale.hex(), "wait": True}}, 409, "STALE_NONCE"),
    ]
    root, height = chain.state.state_root, chain.height
    for label, kwargs, status, code in cases:
        body = assert_problem(client.post("/v1/tx", **kwargs), status, code)
        assert body["detail"], label
        assert (chain.state.state_root, chain.height) == (root, height), label
    assert_problem(client.get("/v1/nope"), 404, "NOT_FOUND")
    assert_problem(client.get("/nope/at/all"), 404, "NOT_FOUND")
    assert_problem(client.delete("/v1/tx"), 405, "METHOD_NOT_ALLOWED")
    assert_problem(client.post("/v1/status"), 405, "METHOD_NOT_ALLOWED")
    assert (chain.state.state_root, chain.height) == (root, height)


_JSON = {"content-type": "application/json"}


def _chunks(total: int) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * 4096
        sent += 4096


# -- limits and failures ------------------------------------------------------------------------


def test_rate_limit(world: tuple[LocalChain, Any]) -> None:
    chain, _ = world
    app = create_app(LocalBackend(chain), ApiSettings(rate_per_s=0.001, burst=3))
    with TestClient(app) as c:
        assert [c.get("/healthz").status_code for _ in range(3)] == [200, 200, 200]
        body = assert_problem(c.get("/healthz"), 429, "RATE_LIMITED")
        assert body["detail"]


def test_internal_error_is_a_problem(world: tuple[LocalChain, Any]) -> None:
    chain, _ = world

    class Broken(LocalBackend):
        def head_height(self) -> int:
            raise RuntimeError("secret internals")

    with TestClient(create_app(Broken(chain), OPEN)) as c:
        resp = c.get("/readyz")
    body = assert_problem(resp, 500, "INTERNAL_ERROR")
    assert "secret" not in json.dumps(body)


# -- property: no 5xx anywhere ------------------------------------------------------------------

_ROUTES = [
    "/v1/blocks/{}",
    "/v1/blocks/{}/certificate",
    "/v1/tx/{}",
    "/v1/state/{}",
    "/v1/accounts/{}",
    "/v1/holdings/{}/{}",
    "/v1/wallets/{}",
    "/v1/anchors/{}",
    "/v1/{}",
    "/{}",
]
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    route=st.sampled_from(_ROUTES),
    segments=st.lists(st.text(min_size=1, max_size=40), min_size=2, max_size=2),
    body=_json | st.fixed_dictionaries({"tx": st.text(max_size=40), "wait": _json}),
)
def test_no_5xx(client: TestClient, route: str, segments: list[str], body: Any) -> None:
    path = route.format(*(quote(s, safe="") for s in segments))
    got = client.get(path)
    assert got.status_code < 500, (path, got.text)
    if got.status_code >= 400:
        assert got.headers["content-type"].startswith(PROBLEM)
    posted = client.post("/v1/tx", json=body)
    assert posted.status_code < 500, (body, posted.text)
    assert posted.status_code >= 400 and posted.headers["content-type"].startswith(PROBLEM)


def test_not_ready_before_first_block(world: tuple[LocalChain, Any]) -> None:
    chain, _ = world

    class Fresh(LocalBackend):
        def head_height(self) -> int:
            return 0

    with TestClient(create_app(Fresh(chain), OPEN)) as c:
        assert_problem(c.get("/readyz"), 503, "NOT_READY")
        assert c.get("/healthz").status_code == 200


def test_node_backend_reads_the_node(world: tuple[LocalChain, Any]) -> None:
    """NodeBackend only reads a Node's attributes; a stand-in with the same ones serves the API."""
    from types import SimpleNamespace

    from consortia.api import NodeBackend

    chain, _ = world
    calls: list[tuple[list[bytes], bool]] = []

    async def _submit(raws: list[bytes], *, wait: bool) -> list[dict[str, Any]]:
        calls.append((raws, wait))
        return [{"ok": False, "code": "STALE_NONCE", "message": "nonce 0 already used"}]

    node = SimpleNamespace(
        state=chain.state,
        store=chain.store,
        mempool=[],
        _submit=_submit,
        config=SimpleNamespace(node_name="v0", org_id="exchange", role="validator"),
    )
    with TestClient(create_app(NodeBackend(node), OPEN)) as c:  # type: ignore[arg-type]
        status = c.get("/v1/status").json()
        assert status["node"] == "v0" and status["height"] == chain.state.height
        assert c.get("/v1/blocks/1").status_code == 200
        assert c.get("/metrics").text == ""  # no metrics on this node yet
        assert_problem(c.post("/v1/tx", json={"tx": "a1", "wait": True}), 409, "STALE_NONCE")
        assert calls == [([b"\xa1"], True)]
        node.metrics = SimpleNamespace(render=lambda: "consortia_up 1\n")
        assert c.get("/metrics").text == "consortia_up 1\n"
