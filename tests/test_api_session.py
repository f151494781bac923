"""Signed session grants (``Authorization: Consortia-Session``): a token signed with an account's
key stands in for per-request signatures on GET reads until it expires; every way it can be wrong
is a 401 problem with its own code, a key rotation revokes it, and it never authorizes a write
nor verifies as any other signature."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from consortia import codec
from consortia.api import LocalBackend, create_app
from consortia.api.auth import (
    MAX_SESSION_MS,
    PURPOSE,
    SESSION_PURPOSE,
    AuthError,
    issue_session,
    session_grant,
    session_token_of,
    sign_request,
    verify_session,
)
from consortia.cli import app as cli_app
from consortia.crypto import KeyPair, get_suite
from consortia.ledger.types import TxStatus, sign_transaction
from consortia.modules import registry
from consortia.node.local import ACCOUNTS_DIR, LocalChain, load_genesis
from consortia.node.network_home import NodeConfig, init_network
from tests.test_api import OPEN, assert_problem, next_nonce, world

__all__ = ["world"]  # the module-scoped demo chain fixture of test_api

HOUR = 3_600_000
INVESTOR = "/v1/investors/INV-ALICE"
WALLET = "/v1/wallets/W-ALICE/private"
DAN_WALLET = "/v1/wallets/W-DAN/private"
CLI_PASSWORD = "login-test"
KEY_ENV = "CONSORTIA_KEY_PASSWORD"


class Clock:
    def __init__(self) -> None:
        self.now = time.time_ns() // 1_000_000

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


def token_for(
    chain: LocalChain,
    kp: KeyPair,
    clock: Clock,
    *,
    issued: int | None = None,
    ttl: int = HOUR,
    chain_id: str | None = None,
) -> str:
    return issue_session(
        chain.suite,
        kp,
        chain_id=chain.state.chain_id if chain_id is None else chain_id,
        issued_ms=clock.now if issued is None else issued,
        ttl_ms=ttl,
    )


def session(token: str) -> dict[str, str]:
    return {"Authorization": f"Consortia-Session {token}"}


# -- valid sessions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "path", "access"),
    [
        ("alice", INVESTOR, "self"),
        ("alice", WALLET, "owner"),
        ("broker-a-admin", INVESTOR, "broker"),
        ("regulator", INVESTOR, "regulator"),
        ("ccb-admin", WALLET, "operator"),
    ],
)
def test_session_reads_like_a_signed_request(
    client: TestClient,
    world: tuple[LocalChain, dict[str, KeyPair]],
    clock: Clock,
    name: str,
    path: str,
    access: str,
) -> None:
    chain, keys = world
    token = token_for(chain, keys[name], clock)
    # the same token serves many requests (no replay rule: it is a grant, not a request)
    for _ in range(3):
        resp = client.get(path, headers=session(token))
        assert resp.status_code == 200, resp.text
        assert resp.json()["access"] == access
    assert "sealed_identity" not in resp.text


def test_session_grants_no_more_than_its_account(
    client: TestClient, world: tuple[LocalChain, dict[str, KeyPair]], clock: Clock
) -> None:
    chain, keys = world
    token = token_for(chain, keys["bob"], clock)
    assert_problem(client.get(INVESTOR, headers=session(token)), 403, "FORBIDDEN")
    assert_problem(client.get(WALLET, headers=session(token)), 403, "FORBIDDEN")


def test_token_shape_and_header_parsing(
    world: tuple[LocalChain, dict[str, KeyPair]], clock: Clock
) -> None:
    chain, keys = world
    token = token_for(chain, keys["alice"], clock)
    prefix, chain_hex, address, issued, expires, sig = token.split(".")
    assert prefix == "cs1"
    assert bytes.fromhex(chain_hex).decode() == chain.state.chain_id
    assert address == chain.suite.address(keys["alice"].public_key).hex()
    assert int(expires) - int(issued) == HOUR and bytes.fromhex(sig)
    assert set(token) <= set("0123456789abcdef.cs")  # URL-fragment and header safe
    assert session_token_of({"authorization": f"consortia-session  {token} "}) == token
    assert session_token_of({"authorization": f"Bearer {token}"}) is None
    assert session_token_of({}) is None
    with pytest.raises(ValueError, match="session lasts"):
        token_for(chain, keys["alice"], clock, ttl=MAX_SESSION_MS + 1)


# -- refused sessions ---------------------------------------------------------------------------


def test_expired(
    client: TestClient, world: tuple[LocalChain, dict[str, KeyPair]], clock: Clock
) -> None:
    chain, keys = world
    old = token_for(chain, keys["alice"], clock, issued=clock.now - 2 * HOUR, ttl=HOUR)
    assert_problem(client.get(INVESTOR, headers=session(old)), 401, "SESSION_EXPIRED")
    # the last millisecond of a grant is outside it
    edge = token_for(chain, keys["alice"], clock, issued=clock.now - HOUR, ttl=HOUR)
    assert_problem(client.get(INVESTOR, headers=session(edge)), 401, "SESSION_EXPIRED")
    live = token_for(chain, keys["alice"], clock, issued=clock.now - HOUR, ttl=HOUR + 1)
    assert client.get(INVESTOR, headers=session(live)).status_code == 200


def test_issued_in_the_future_or_too_long(
    client: TestClient, world: tuple[LocalChain, dict[str, KeyPair]], clock: Clock
) -> None:
    chain, keys = world
    ahead = token_for(chain, keys["alice"], clock, issued=clock.now + 5 * 60_000)
    body = assert_problem(client.get(INVESTOR, headers=session(ahead)), 401, "BAD_SESSION")
    assert "future" in body["detail"]
    # within the clock window ahead is fine (clients' clocks differ a little)
    near = token_for(chain, keys["alice"], clock, issued=clock.now + 30_000)
    assert client.get(INVESTOR, headers=session(near)).status_code == 200
    # a 24 h grant signed by hand (issue_session refuses to make one): refused by the server
    kp = keys["alice"]
    address = chain.suite.address(kp.public_key)
    issued, expires = clock.now, clock.now + 24 * HOUR
    cid = chain.state.chain_id
    sig = chain.suite.sign(kp, cid, SESSION_PURPOSE, session_grant(cid, address, issued, expires))
    long = f"cs1.{cid.encode().hex()}.{address.hex()}.{issued}.{expires}.{sig.hex()}"
    body = assert_problem(client.get(INVESTOR, headers=session(long)), 401, "BAD_SESSION")
    assert "at most 12 h" in body["detail"]


def test_wrong_chain(
    client: TestClient, world: tuple[LocalChain, dict[str, KeyPair]], clock: Clock
) -> None:
    chain, keys = world
    other = token_for(chain, keys["alice"], clock, chain_id="another-chain")
    body = assert_problem(client.get(INVESTOR, headers=session(other)), 401, "SESSION_WRONG_CHAIN")
    assert "another-chain" in body["detail"]
    # relabelled to this chain, the signature (over the other chain id) no longer verifies
    parts = other.split(".")
    parts[1] = chain.state.chain_id.encode().hex()
    relabelled = ".".join(parts)
    assert_problem(client.get(INVESTOR, headers=session(relabelled)), 401, "BAD_SESSION")


@pytest.mark.parametrize("field", [2, 3, 4, 5])
def test_tampered(
    client: TestClient,
    world: tuple[LocalChain, dict[str, KeyPair]],
    clock: Clock,
    field: int,
) -> None:
    chain, keys = world
    parts = token_for(chain, keys["alice"], clock).split(".")
    if field == 2:  # claim to be the regulator with alice's signature
        parts[2] = chain.suite.address(keys["regulator"].public_key).hex()
    elif field == 3:  # issued a minute earlier
        parts[3] = str(int(parts[3]) - 60_000)
    elif field == 4:  # stretched by an hour
        parts[4] = str(int(parts[4]) + HOUR)
    else:  # one bit of the signature
        sig = bytearray(bytes.fromhex(parts[5]))
        sig[0] ^= 1
        parts[5] = sig.hex()
    body = assert_problem(
        client.get(INVESTOR, headers=session(".".join(parts))), 401, "BAD_SESSION"
    )
    assert "does not verify" in body["detail"]


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "cs1.a.b.c.d.e",
        "cs2.00.00.1.2.00",
        "cs1.zz.00.1.2.00",
        "cs1.6161.00.-1.2.00",
        "cs1.6161.00.1.99999999999999999.00",
        "cs1.ff.0011.1.2.0011",  # chain id not UTF-8
        "cs1.6161..1.2.00",  # empty address
        "cs1.6161.00.1.2.",  # empty signature
        "cs1.6161.00.1.2.00.extra",
        "cs1.6161.00.1.2." + "00" * 300,  # signature too long
        "cs1.6161.00.١.2.00",  # non-ASCII digits
        "x" * 5000,
    ],
)
def test_malformed(client: TestClient, token: str) -> None:
    raw = f"Consortia-Session {token}".encode()  # non-ASCII arrives as latin-1 text
    resp = client.get(INVESTOR, headers={b"Authorization": raw})
    assert_problem(resp, 401, "BAD_SESSION")


def test_401_names_both_schemes_and_the_contract_documents_sessions(
    client: TestClient, world: tuple[LocalChain, dict[str, KeyPair]], clock: Clock
) -> None:
    """A refused session (like a refused signature) challenges with both ways in, and every
    private route's OpenAPI 401/403 responses name the session scheme and its codes."""
    chain, keys = world
    old = token_for(chain, keys["alice"], clock, issued=clock.now - 2 * HOUR, ttl=HOUR)
    resp = client.get(INVESTOR, headers=session(old))
    assert_problem(resp, 401, "SESSION_EXPIRED")
    assert resp.headers["www-authenticate"] == "Consortia-Signature, Consortia-Session"
    paths = client.get("/openapi.json").json()["paths"]
    private = [
        (path, op)
        for path, item in paths.items()
        for op in item.values()
        if "401" in op.get("responses", {})
    ]
    assert {"/v1/investors/{investor_id}", "/v1/me", "/v1/tx/{tx_hash}"} <= {p for p, _ in private}
    session_codes = ("BAD_SESSION", "SESSION_WRONG_CHAIN", "SESSION_EXPIRED")
    for path, op in private:
        unauthorized = op["responses"]["401"]["description"]
        assert "Consortia-Session" in unauthorized and "Consortia-Signature" in unauthorized, path
        assert all(code in unauthorized for code in session_codes), path
        assert "SESSION_READ_ONLY" in op["responses"]["403"]["description"], path


def test_unknown_account(client: TestClient, world: tuple[LocalChain, Any], clock: Clock) -> None:
    chain, _ = world
    stranger = chain.suite.generate_keypair()
    token = token_for(chain, stranger, clock)
    body = assert_problem(client.get(INVESTOR, headers=session(token)), 401, "UNKNOWN_ACCOUNT")
    assert chain.suite.address(stranger.public_key).hex() in body["detail"]


def test_key_rotation_revokes_sessions(
    client: TestClient, world: tuple[LocalChain, dict[str, KeyPair]], clock: Clock
) -> None:
    chain, keys = world
    old_key = keys["dan"]
    address = chain.suite.address(old_key.public_key)
    token = token_for(chain, old_key, clock)
    assert client.get(DAN_WALLET, headers=session(token)).status_code == 200
    new_key = chain.suite.generate_keypair()
    rotate = sign_transaction(
        chain.suite,
        old_key,
        chain_id=chain.state.chain_id,
        nonce=next_nonce(chain, address),
        module="registry",
        method="rotate_key",
        args={"new_public_key": new_key.public_key},
    )
    [receipt] = chain.commit([rotate]).receipts
    assert receipt.status == TxStatus.OK, receipt.code
    keys["dan"] = new_key  # later users of the fixture sign with the current key
    body = assert_problem(client.get(DAN_WALLET, headers=session(token)), 401, "BAD_SESSION")
    assert "rotation" in body["detail"]
    # a grant under the new key, for the same account address, works
    fresh = issue_session(
        chain.suite,
        new_key,
        chain_id=chain.state.chain_id,
        issued_ms=clock.now,
        ttl_ms=HOUR,
        address=address,
    )
    resp = client.get(DAN_WALLET, headers=session(fresh))
    assert resp.status_code == 200, resp.text
    assert resp.json()["access"] == "owner"


# -- reads only, and no other signature ---------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_session_never_authorizes_a_write(
    world: tuple[LocalChain, dict[str, KeyPair]], clock: Clock, method: str
) -> None:
    chain, keys = world
    state = chain.state
    token = token_for(chain, keys["alice"], clock)

    def lookup(address: bytes) -> registry.Account | None:
        raw = state.tree.get(registry.account_key(address))
        return None if raw is None else codec.decode_struct(registry.Account, raw)

    common: dict[str, Any] = {
        "suite": state.suite,
        "chain_id": state.chain_id,
        "lookup": lookup,
        "now_ms": clock.now,
    }
    assert verify_session(token, method="GET", **common).org_id == "broker-a"
    with pytest.raises(AuthError) as refused:
        verify_session(token, method=method, **common)
    assert refused.value.code == "SESSION_READ_ONLY" and refused.value.status == 403


def test_session_on_a_submission_adds_nothing(
    client: TestClient, world: tuple[LocalChain, dict[str, KeyPair]], clock: Clock
) -> None:
    chain, keys = world
    token = token_for(chain, keys["regulator"], clock)
    height = chain.height
    resp = client.post("/v1/tx", json={"tx": "00"}, headers=session(token))
    assert_problem(resp, 400, "MALFORMED_TRANSACTION")
    assert chain.height == height


def test_grant_signature_is_no_other_signature(
    world: tuple[LocalChain, dict[str, KeyPair]], clock: Clock
) -> None:
    chain, keys = world
    kp = keys["alice"]
    cid = chain.state.chain_id
    token = token_for(chain, kp, clock)
    _, _, address_hex, issued, expires, sig_hex = token.split(".")
    grant = session_grant(cid, bytes.fromhex(address_hex), int(issued), int(expires))
    sig = bytes.fromhex(sig_hex)
    assert chain.suite.verify(kp.public_key, cid, SESSION_PURPOSE, grant, sig)
    assert not chain.suite.verify(kp.public_key, cid, PURPOSE, grant, sig)
    assert not chain.suite.verify(kp.public_key, cid, "tx", grant, sig)
    assert not chain.suite.verify(kp.public_key, "another-chain", SESSION_PURPOSE, grant, sig)


def test_signed_requests_still_work_and_unsigned_still_refused(
    client: TestClient, world: tuple[LocalChain, dict[str, KeyPair]], clock: Clock
) -> None:
    chain, keys = world
    kp = keys["alice"]
    address = chain.suite.address(kp.public_key)
    cid = chain.state.chain_id
    signed = sign_request(chain.suite, kp, address, "GET", INVESTOR, b"", clock.now, chain_id=cid)
    assert client.get(INVESTOR, headers=signed).status_code == 200
    assert_problem(client.get(INVESTOR), 401, "AUTH_REQUIRED")
    assert_problem(
        client.get(INVESTOR, headers={"Authorization": "Bearer abc"}), 401, "AUTH_REQUIRED"
    )


# -- `consortia api login` ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def net_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home: Path = tmp_path_factory.mktemp("login-net")
    init_network(home, validators=1, password=CLI_PASSWORD, scrypt_n=1 << 10, base_port=40_100)
    return home


def _login(*args: str) -> Result:
    return CliRunner().invoke(cli_app, ["api", "login", *args], env={KEY_ENV: CLI_PASSWORD})


def test_login_prints_a_session_for_the_named_account(net_home: Path) -> None:
    node = net_home / "validator-0"
    before = time.time_ns() // 1_000_000
    result = _login("--home", str(node), "--account", "regulator", "--ttl", "2h", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    genesis = load_genesis(node)
    suite = get_suite(genesis.suite)
    [reg] = [a for a in genesis.accounts if a.name == "regulator"]
    assert out["address"] == suite.address(reg.public_key).hex()
    assert out["expires_ms"] - out["issued_ms"] == 2 * HOUR and out["issued_ms"] >= before
    api_port = NodeConfig.load(node).api_port
    assert api_port and out["url"] == f"http://127.0.0.1:{api_port}/ui/#session={out['token']}"
    account = registry.Account(
        bytes.fromhex(out["address"]), reg.public_key, reg.org_id, tuple(reg.roles), 0, False, "", 0
    )
    got = verify_session(
        out["token"],
        suite=suite,
        chain_id=genesis.chain_id,
        lookup=lambda a: account if a == account.address else None,
        method="GET",
        now_ms=out["issued_ms"] + 1,
    )
    assert got is account
    # plain output: the URL and the token on their own lines
    plain = _login("--home", str(node), "--account", "regulator")
    assert plain.exit_code == 0, plain.output
    lines = plain.output.splitlines()
    assert lines[1].startswith(f"http://127.0.0.1:{api_port}/ui/#session=cs1.")
    assert lines[-1].startswith("cs1.") and lines[1].endswith(lines[-1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--account", "nobody"], "no key for account 'nobody'"),
        (["--account", "../x"], "is not an account name"),
        (["--account", "regulator", "--ttl", "13h"], "--ttl must be between"),
        (["--account", "regulator", "--ttl", "eight"], "--ttl must look like"),
        ([], "exactly one of --account"),
        (["--account", "regulator", "--key", "k.key"], "exactly one of --account"),
        (["--key", "/nonexistent/k.key"], "cannot read"),
        (["--account", "regulator", "--address", "zz"], "--address must be hex"),
    ],
)
def test_login_bad_input(net_home: Path, args: list[str], message: str) -> None:
    result = _login("--home", str(net_home / "validator-0"), *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_login_needs_a_node_home(tmp_path: Path) -> None:
    result = _login("--home", str(tmp_path), "--account", "regulator")
    assert result.exit_code == 2 and "not found" in result.output


def test_login_wrong_password(net_home: Path) -> None:
    result = CliRunner().invoke(
        cli_app,
        ["api", "login", "--home", str(net_home / "validator-0"), "--account", "regulator"],
        env={KEY_ENV: "wrong"},
    )
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output


def test_sdk_session_token(
    client: TestClient, world: tuple[LocalChain, dict[str, KeyPair]], clock: Clock
) -> None:
    from consortia.sdk import Client

    chain, keys = world
    sdk = Client(
        "http://127.0.0.1:9", keys["alice"], suite=chain.suite, chain_id=chain.state.chain_id
    )
    token = sdk.session_token(ttl_ms=HOUR)
    _, _, address, issued, expires, _ = token.split(".")
    assert address == chain.suite.address(keys["alice"].public_key).hex()
    assert int(expires) - int(issued) == HOUR
    clock.now = max(clock.now, int(issued))
    resp = client.get(INVESTOR, headers=session(token))
    assert resp.status_code == 200 and resp.json()["access"] == "self"
    with pytest.raises(ValueError):
        sdk.session_token(ttl_ms=MAX_SESSION_MS + 1)


def test_login_with_a_key_file_for_a_rotated_account(net_home: Path) -> None:
    node = net_home / "validator-0"
    key_file = net_home / ACCOUNTS_DIR / "broker-a-admin.key"
    first_address = "ab" * 20  # the account's address stays that of its first key
    result = _login("--home", str(node), "--key", str(key_file), "--address", first_address)
    assert result.exit_code == 0, result.output
    token = result.output.splitlines()[-1]
    assert token.split(".")[2] == first_address
    genesis = load_genesis(node)
    suite = get_suite(genesis.suite)
    [acct] = [a for a in genesis.accounts if a.name == "broker-a-admin"]
    rotated = registry.Account(
        bytes.fromhex(first_address),
        acct.public_key,
        acct.org_id,
        tuple(acct.roles),
        3,
        False,
        "",
        1,
    )
    got = verify_session(
        token,
        suite=suite,
        chain_id=genesis.chain_id,
        lookup=lambda a: rotated if a == rotated.address else None,
        method="GET",
        now_ms=time.time_ns() // 1_000_000,
    )
    assert got is rotated
