"""Signed private reads: request signatures (401 problems for every way they fail) and role-based
authorization of investor and wallet reads (the investor, its broker / operator bank, the
regulator; 403 for everyone else), and domain separation from transaction signatures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consortia import codec
from consortia.api import LocalBackend, create_app
from consortia.api.auth import (
    HEADER_ACCOUNT,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    PURPOSE,
    canonical_request,
    sign_request,
)
from consortia.crypto import KeyPair
from consortia.ledger.types import Transaction, sign_transaction, verify_transaction_signature
from consortia.modules import anchoring, ecny, investors, registry, securities
from consortia.node.local import LocalChain
from tests.test_api import OPEN, assert_problem, next_nonce, world

__all__ = ["world"]  # the module-scoped demo chain fixture of test_api

NOW = 1_800_000_000_000
INVESTOR = "/v1/investors/INV-ALICE"
WALLET = "/v1/wallets/W-ALICE/private"
BALANCE = "/v1/wallets/W-ALICE"
HOLDING = "/v1/holdings/000001/SA-ALICE"


def state_path(key: bytes) -> str:
    return f"/v1/state/{key.hex()}"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def client(world: tuple[LocalChain, dict[str, Any]], clock: Clock) -> Iterator[TestClient]:
    chain, _ = world
    with TestClient(create_app(LocalBackend(chain), OPEN, clock_ms=clock)) as c:
        yield c


class Caller:
    """Signs requests as one account; each call uses a fresh timestamp (no accidental replay)."""

    def __init__(self, chain: LocalChain, kp: KeyPair, clock: Clock) -> None:
        self.chain, self.kp, self.clock = chain, kp, clock
        self.address = chain.suite.address(kp.public_key)

    def headers(
        self, method: str, path: str, body: bytes = b"", *, at: int | None = None
    ) -> dict[str, str]:
        self.clock.now += 1
        return sign_request(
            self.chain.suite,
            self.kp,
            self.address,
            method,
            path,
            body,
            self.clock.now if at is None else at,
            chain_id=self.chain.state.chain_id,
        )

    def get(self, client: TestClient, path: str) -> Any:
        return client.get(path, headers=self.headers("GET", path))


@pytest.fixture(scope="module")
def who(world: tuple[LocalChain, dict[str, Any]], clock: Clock) -> dict[str, Caller]:
    chain, keys = world
    return {name: Caller(chain, kp, clock) for name, kp in keys.items()}


# -- authorization ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "access"),
    [("alice", "self"), ("broker-a-admin", "broker"), ("regulator", "regulator")],
)
def test_investor_readers(
    client: TestClient,
    who: dict[str, Caller],
    world: tuple[LocalChain, Any],
    name: str,
    access: str,
) -> None:
    chain, _ = world
    resp = who[name].get(client, INVESTOR)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["access"] == access and body["height"] == chain.height
    assert body["record"]["investor_id"] == "INV-ALICE" and body["record"]["org_id"] == "broker-a"
    assert "sealed_identity" not in resp.text
    assert body["state_root"] == chain.state.state_root.hex() and body["proof"]
    [account] = body["accounts"]
    assert account["account"]["account_id"] == "SA-ALICE"
    assert [(h["code"], h["balance"]) for h in account["holdings"]] == [("000001", 100_000)]


@pytest.mark.parametrize(
    ("name", "access"),
    [("alice", "owner"), ("ccb-admin", "operator"), ("regulator", "regulator")],
)
def test_wallet_readers(client: TestClient, who: dict[str, Caller], name: str, access: str) -> None:
    resp = who[name].get(client, WALLET)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["access"] == access
    assert body["record"]["wallet_id"] == "W-ALICE" and body["record"]["balance"] > 0
    assert body["record"]["operator_org"] == "bank-ccb"
    assert set(body["limits"]) == {"balance_cap", "per_payment", "daily"}
    assert body["limits"]["balance_cap"] is not None  # category 2 has a cap
    assert {"day", "day_spent"} <= set(body)
    assert "sealed_identity" not in resp.text


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("bob", INVESTOR),  # another investor
        ("broker-b-admin", INVESTOR),  # another broker
        ("ccb-admin", INVESTOR),  # a bank is not the investor's broker
        ("exchange-admin", INVESTOR),  # consortium admin: no special read right
        ("bob", WALLET),  # another wallet holder
        ("bocom-admin", WALLET),  # an unrelated operator bank
        ("broker-a-admin", WALLET),  # alice's broker does not see her e-CNY wallet
        ("court-officer", WALLET),
    ],
)
def test_others_are_forbidden(
    client: TestClient, who: dict[str, Caller], name: str, path: str
) -> None:
    body = assert_problem(who[name].get(client, path), 403, "FORBIDDEN")
    assert "balance" not in body["detail"]


def test_unknown_ids(client: TestClient, who: dict[str, Caller]) -> None:
    """Only the regulator learns that an id does not exist; others get the same 403."""
    for path in ("/v1/investors/INV-NOBODY", "/v1/wallets/W-NOBODY/private"):
        assert_problem(who["regulator"].get(client, path), 404, "NOT_FOUND")
        assert_problem(who["alice"].get(client, path), 403, "FORBIDDEN")


@pytest.mark.parametrize(
    ("name", "access"),
    [("alice", "owner"), ("ccb-admin", "operator"), ("regulator", "regulator")],
)
def test_wallet_balance_readers(
    client: TestClient, who: dict[str, Caller], name: str, access: str
) -> None:
    resp = who[name].get(client, BALANCE)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["access"] == access and body["record"]["balance"] > 0
    assert "sealed_identity" not in resp.text and "value" not in body


@pytest.mark.parametrize(
    ("name", "access"),
    [("alice", "self"), ("broker-a-admin", "broker"), ("regulator", "regulator")],
)
def test_holding_readers(
    client: TestClient,
    who: dict[str, Caller],
    world: tuple[LocalChain, Any],
    name: str,
    access: str,
) -> None:
    chain, _ = world
    resp = who[name].get(client, HOLDING)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["access"] == access and body["record"]["balance"] == 100_000
    assert body["state_root"] == chain.state.state_root.hex() and body["value"] and body["proof"]


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("bob", BALANCE),  # another investor
        ("bocom-admin", BALANCE),  # an unrelated operator bank
        ("broker-a-admin", BALANCE),  # her broker does not see her e-CNY wallet
        ("exchange-admin", BALANCE),
        ("bob", HOLDING),  # another investor
        ("broker-b-admin", HOLDING),  # another broker
        ("ccb-admin", HOLDING),  # her bank is not her broker
        ("court-officer", HOLDING),
    ],
)
def test_balances_and_holdings_of_others_are_forbidden(
    client: TestClient, who: dict[str, Caller], name: str, path: str
) -> None:
    body = assert_problem(who[name].get(client, path), 403, "FORBIDDEN")
    assert "balance" not in body["detail"]


def test_unsigned_private_reads_are_unauthorized(
    client: TestClient, world: tuple[LocalChain, Any]
) -> None:
    chain, _ = world
    block = client.get(f"/v1/blocks/{chain.height}").json()
    private = [
        BALANCE,
        HOLDING,
        "/v1/wallets/W-NOBODY",
        "/v1/holdings/000001/SA-NOBODY",
        state_path(securities.holding_key("000001", "SA-ALICE")),
        state_path(investors.account_key("SA-ALICE")),
        state_path(ecny.SUPPLY_KEY),
        state_path(b"no/such/key"),
        "/v1/tx/" + "00" * 32,
    ]
    private += [f"/v1/tx/{h}" for h in block["transactions"][:1]]
    for path in private:
        resp = client.get(path)
        assert_problem(resp, 401, "AUTH_REQUIRED")
        assert resp.headers["www-authenticate"] == "Consortia-Signature, Consortia-Session"


def test_public_reads_stay_open(client: TestClient, world: tuple[LocalChain, Any]) -> None:
    chain, keys = world
    assert client.get("/v1/status").status_code == 200
    assert client.get("/v1/blocks/1").status_code == 200
    assert client.get("/v1/blocks/1/certificate").status_code == 200
    address = chain.suite.address(keys["alice"].public_key)
    assert client.get(f"/v1/accounts/{address.hex()}").status_code == 200
    assert_problem(client.get("/v1/anchors/business-1"), 404, "NOT_FOUND")  # open, just absent
    for key in (
        securities.security_key("000001"),
        registry.account_key(address),
        registry.org_key("broker-a"),
        anchoring.chain_key("business-1"),
        b"consensus/vset/current",
        b"funds/fund/F-NONE",
        b"orders/order/O-NONE",
        b"reports/report/R-NONE",
    ):
        resp = client.get(state_path(key))
        assert resp.status_code == 200, (key, resp.text)
        assert "access" not in resp.json()
    assert client.get(state_path(securities.security_key("000001"))).json()["value"]


def test_raw_state_follows_the_owner_rules(client: TestClient, who: dict[str, Caller]) -> None:
    holding = state_path(securities.holding_key("000001", "SA-ALICE"))
    account = state_path(investors.account_key("SA-ALICE"))
    for name, access in (
        ("alice", "self"),
        ("broker-a-admin", "broker"),
        ("regulator", "regulator"),
    ):
        for path in (holding, account):
            resp = who[name].get(client, path)
            assert resp.status_code == 200, resp.text
            assert resp.json()["access"] == access and resp.json()["value"]
    for name in ("bob", "broker-b-admin", "ccb-admin"):
        for path in (holding, account):
            assert_problem(who[name].get(client, path), 403, "FORBIDDEN")
    # Other private records (e-CNY supply and reserves, indexes, absent keys): the regulator only.
    for key in (ecny.SUPPLY_KEY, ecny.reserve_key("bank-ccb"), b"no/such/key"):
        assert who["regulator"].get(client, state_path(key)).status_code == 200
        assert_problem(who["ccb-admin"].get(client, state_path(key)), 403, "FORBIDDEN")
    # Records carrying sealed identities: refused to everyone, the regulator included.
    for key in (ecny.wallet_key("W-ALICE"), investors.investor_key("INV-ALICE")):
        assert_problem(who["regulator"].get(client, state_path(key)), 403, "PRIVATE_RECORD")
        assert_problem(client.get(state_path(key)), 403, "PRIVATE_RECORD")


def test_transaction_readers(
    client: TestClient, who: dict[str, Caller], world: tuple[LocalChain, Any]
) -> None:
    """A committed transaction: its sender, accounts of the sender's organization, the
    regulator; nobody else (members see the blocks' transaction hashes, not their contents)."""
    chain, _ = world
    backend = LocalBackend(chain)
    by_address = {c.address: name for name, c in who.items()}
    org_of = {
        name: codec.decode_struct(
            registry.Account, chain.state.tree.get(registry.account_key(c.address)) or b""
        ).org_id
        for name, c in who.items()
        if chain.state.tree.get(registry.account_key(c.address)) is not None
    }
    checked = 0
    for height in range(1, chain.height + 1):
        block = backend.block(height)
        assert block is not None
        for tx in block.transactions:
            sender = by_address.get(tx.sender)
            if sender is None or sender == "regulator" or sender not in org_of:
                continue
            path = f"/v1/tx/{tx.hash(chain.suite).hex()}"
            assert who[sender].get(client, path).json()["access"] == "sender"
            assert who["regulator"].get(client, path).json()["access"] == "regulator"
            same = [n for n, o in org_of.items() if o == org_of[sender] and n != sender]
            for name in same[:1]:
                if not registry.has_role(load(chain, who[name].address), "regulator"):
                    assert who[name].get(client, path).json()["access"] == "org"
            other = next(n for n, o in org_of.items() if o != org_of[sender] and n != "regulator")
            assert_problem(who[other].get(client, path), 403, "FORBIDDEN")
            checked += 1
    assert checked >= 3


def load(chain: LocalChain, address: bytes) -> registry.Account:
    raw = chain.state.tree.get(registry.account_key(address))
    assert raw is not None
    return codec.decode_struct(registry.Account, raw)


# -- authentication failures ---------------------------------------------------------------------


def test_missing_headers(client: TestClient, who: dict[str, Caller]) -> None:
    for path in (INVESTOR, WALLET):
        resp = client.get(path)
        assert_problem(resp, 401, "AUTH_REQUIRED")
        assert resp.headers["www-authenticate"] == "Consortia-Signature, Consortia-Session"
    partial = who["alice"].headers("GET", INVESTOR)
    del partial[HEADER_SIGNATURE]
    assert_problem(client.get(INVESTOR, headers=partial), 401, "AUTH_REQUIRED")


def test_bad_signature(client: TestClient, who: dict[str, Caller]) -> None:
    headers = who["alice"].headers("GET", INVESTOR)
    sig = bytearray(bytes.fromhex(headers[HEADER_SIGNATURE]))
    sig[0] ^= 1
    headers[HEADER_SIGNATURE] = sig.hex()
    assert_problem(client.get(INVESTOR, headers=headers), 401, "BAD_REQUEST_SIGNATURE")
    # Malformed header values are the same failure, never a 500.
    for field, value in (
        (HEADER_SIGNATURE, "zz"),
        (HEADER_ACCOUNT, "xyz"),
        (HEADER_TIMESTAMP, "-5"),
    ):
        bad = {**who["alice"].headers("GET", INVESTOR), field: value}
        assert_problem(client.get(INVESTOR, headers=bad), 401, "BAD_REQUEST_SIGNATURE")
    # Someone else's valid signature under alice's address.
    bob = who["bob"].headers("GET", INVESTOR)
    forged = {**bob, HEADER_ACCOUNT: who["alice"].address.hex()}
    assert_problem(client.get(INVESTOR, headers=forged), 401, "BAD_REQUEST_SIGNATURE")


def test_tampered_body_path_and_method(client: TestClient, who: dict[str, Caller]) -> None:
    alice = who["alice"]
    signed = alice.headers("GET", INVESTOR, b'{"a": 1}')
    resp = client.request("GET", INVESTOR, content=b'{"a": 2}', headers=signed)
    assert_problem(resp, 401, "BAD_REQUEST_SIGNATURE")
    other = alice.headers("GET", "/v1/investors/INV-BOB")
    assert_problem(client.get(INVESTOR, headers=other), 401, "BAD_REQUEST_SIGNATURE")
    with_query = alice.headers("GET", INVESTOR + "?x=1")
    assert_problem(client.get(INVESTOR, headers=with_query), 401, "BAD_REQUEST_SIGNATURE")
    assert (
        client.get(INVESTOR + "?x=1", headers=alice.headers("GET", INVESTOR + "?x=1")).status_code
        == 200
    )
    as_post = alice.headers("POST", INVESTOR)
    assert_problem(client.get(INVESTOR, headers=as_post), 401, "BAD_REQUEST_SIGNATURE")
    # Signed for another chain: the chain id is part of the domain.
    foreign = sign_request(
        alice.chain.suite,
        alice.kp,
        alice.address,
        "GET",
        INVESTOR,
        b"",
        alice.clock.now + 5,
        chain_id="some-other-chain",
    )
    assert_problem(client.get(INVESTOR, headers=foreign), 401, "BAD_REQUEST_SIGNATURE")


def test_stale_and_future_timestamps(
    client: TestClient, who: dict[str, Caller], clock: Clock
) -> None:
    alice = who["alice"]
    for skew in (-61_000, 61_000):
        headers = alice.headers("GET", INVESTOR, at=clock.now + skew)
        assert_problem(client.get(INVESTOR, headers=headers), 401, "STALE_REQUEST")
    for skew in (-59_000, 59_000):
        headers = alice.headers("GET", INVESTOR, at=clock.now + skew)
        assert client.get(INVESTOR, headers=headers).status_code == 200


def test_replay(client: TestClient, who: dict[str, Caller], clock: Clock) -> None:
    headers = who["alice"].headers("GET", WALLET)
    assert client.get(WALLET, headers=headers).status_code == 200
    assert_problem(client.get(WALLET, headers=headers), 401, "REPLAYED_REQUEST")
    clock.now += 61_000  # once out of the window, it is stale rather than replayed
    assert_problem(client.get(WALLET, headers=headers), 401, "STALE_REQUEST")


def test_unknown_account(client: TestClient, world: tuple[LocalChain, Any], clock: Clock) -> None:
    chain, _ = world
    stranger = Caller(chain, chain.suite.generate_keypair(), clock)
    assert_problem(stranger.get(client, INVESTOR), 401, "UNKNOWN_ACCOUNT")


def test_replay_cache_is_bounded(world: tuple[LocalChain, dict[str, Any]]) -> None:
    from consortia.api import ApiSettings

    chain, keys = world
    clock = Clock()
    settings = ApiSettings(rate_per_s=1e6, burst=1_000_000, max_replay_entries=2)
    alice = Caller(chain, keys["alice"], clock)
    with TestClient(create_app(LocalBackend(chain), settings, clock_ms=clock)) as c:
        assert [alice.get(c, WALLET).status_code for _ in range(2)] == [200, 200]
        assert_problem(alice.get(c, WALLET), 429, "RATE_LIMITED")  # full: fails closed
        clock.now += 61_000  # the remembered requests expire
        assert alice.get(c, WALLET).status_code == 200


# -- domain separation ---------------------------------------------------------------------------


def test_api_signature_is_no_transaction_signature(
    client: TestClient, world: tuple[LocalChain, dict[str, Any]], who: dict[str, Caller]
) -> None:
    chain, keys = world
    kp = keys["exchange-admin"]
    tx = sign_transaction(
        chain.suite,
        kp,
        chain_id=chain.state.chain_id,
        nonce=next_nonce(chain, chain.suite.address(kp.public_key)),
        module="registry",
        method="register_org",
        args={"org_id": "broker-x", "name": "X", "kind": "broker"},
    )
    assert verify_transaction_signature(chain.suite, tx, kp.public_key)
    # The same key signs the transaction's exact signing bytes, but for the API purpose.
    api_sig = chain.suite.sign(kp, chain.state.chain_id, PURPOSE, tx.signing_bytes())
    forged = Transaction(tx.chain_id, tx.sender, tx.nonce, tx.module, tx.method, tx.args, api_sig)
    assert not verify_transaction_signature(chain.suite, forged, kp.public_key)
    # And a real request signature from sign_request, likewise.
    headers = who["exchange-admin"].headers("POST", "/v1/tx", tx.signing_bytes())
    req_sig = bytes.fromhex(headers[HEADER_SIGNATURE])
    forged2 = Transaction(tx.chain_id, tx.sender, tx.nonce, tx.module, tx.method, tx.args, req_sig)
    root, height = chain.state.state_root, chain.height
    for bad in (forged, forged2):
        resp = client.post("/v1/tx", json={"tx": bad.encode().hex(), "wait": True})
        assert_problem(resp, 400, "BAD_SIGNATURE")
    assert (chain.state.state_root, chain.height) == (root, height)
    # Conversely a transaction signature never authenticates a request.
    alice = who["alice"]
    stamp = alice.clock.now + 7
    message = canonical_request(alice.address, "GET", INVESTOR, stamp, b"")
    tx_sig = chain.suite.sign(alice.kp, chain.state.chain_id, "tx", message)
    headers = {
        HEADER_ACCOUNT: alice.address.hex(),
        HEADER_TIMESTAMP: str(stamp),
        HEADER_SIGNATURE: tx_sig.hex(),
    }
    assert_problem(client.get(INVESTOR, headers=headers), 401, "BAD_REQUEST_SIGNATURE")


def test_openapi_documents_private_reads(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in (
        "/v1/investors/{investor_id}",
        "/v1/wallets/{wallet_id}/private",
        "/v1/wallets/{wallet_id}",
        "/v1/holdings/{code}/{account_id}",
        "/v1/tx/{tx_hash}",
        "/v1/state/{key_hex}",
    ):
        responses = spec["paths"][path]["get"]["responses"]
        assert {"200", "401", "403"} <= set(responses)
