"""Contracts through the SDK, the REST API and the CLI, against a live API (uvicorn in a thread
over a LocalChain of the default consortium): governance approves the code, the SDK deploys it
and gets a typed handle, transacts (events decoded), queries (no transaction, ``msg.sender`` =
the caller), upgrades, freezes; the API's contract routes answer problems with stable codes; the
``consortia contract`` commands do the same from the command line.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from typer.testing import CliRunner

from consortia.api import ApiSettings, LocalBackend, create_app
from consortia.cli import app as cli_app
from consortia.contracts import keys, toolchain
from consortia.crypto import KeyPair
from consortia.modules import contracts
from consortia.node.home import PASSWORD_ENV, init_home
from consortia.node.local import ACCOUNTS_DIR, VALIDATORS_DIR, LocalChain, load_key_dir
from consortia.sdk import Client, FailedError, InvalidArgumentsError, NotFoundError, SdkError
from consortia.sdk.contracts import Contract, QueryFailedError
from tests.govkit import approvals_needed, voters

PASSWORD = "test-password"
OPEN = ApiSettings(rate_per_s=1e6, burst=1_000_000)
DEPLOYER = "broker-a-admin"  # an org_admin: may upgrade what it deployed
OTHER = "ccb-admin"  # another organization's admin

TOKEN_SOL = """
// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.0;

contract Token {
    address public owner;
    string public name;
    mapping(address => uint256) public balanceOf;
    event Transfer(address indexed from, address indexed to, uint256 value);

    constructor(string memory name_, uint256 supply) {
        owner = msg.sender;
        name = name_;
        balanceOf[msg.sender] = supply;
        emit Transfer(address(0), msg.sender, supply);
    }

    function transfer(address to, uint256 value) external returns (bool) {
        require(balanceOf[msg.sender] >= value, "balance too low");
        balanceOf[msg.sender] -= value;
        balanceOf[to] += value;
        emit Transfer(msg.sender, to, value);
        return true;
    }

    function whoami() external view returns (address) { return msg.sender; }

    function ownerOnly() external view returns (uint256) {
        require(msg.sender == owner, "owner only");
        return 42;
    }
}
"""

TOKEN_V2_SOL = TOKEN_SOL.replace(
    "function whoami()",
    "function version() external pure returns (uint256) { return 2; }\n    function whoami()",
).replace("owner = msg.sender;\n        name = name_;", "name = name_;")


# Reads a registry role through the registry precompile (0x…0c0001, docs/contracts.md).
PEEK_SOL = """
// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.4;

interface IConsortiaRegistry {
    function hasRole(address account, string calldata role) external view returns (bool);
}

contract Peek {
    IConsortiaRegistry constant REGISTRY = IConsortiaRegistry(address(0xc0001));
    event Seen(address who, bool regulator);

    function isRegulator(address who) external view returns (bool) {
        return REGISTRY.hasRole(who, "regulator");
    }

    function record(address who) external {
        emit Seen(who, REGISTRY.hasRole(who, "regulator"));
    }
}
"""


@cache
def token() -> toolchain.CompiledContract:
    return toolchain.compile_solidity(TOKEN_SOL, "Token")


@cache
def token_v2() -> toolchain.CompiledContract:
    return toolchain.compile_solidity(TOKEN_V2_SOL, "Token")


@dataclass
class World:
    url: str
    home: Path
    chain: LocalChain
    keys: dict[str, KeyPair]

    def client(self, name: str) -> Client:
        return Client(self.url, self.keys[name])

    def approve(self, code: bytes) -> None:
        """Pass an ``approve_code`` proposal through the SDK: open it, approve to the threshold."""
        votes = voters()
        opened = self.client(votes[0]).contracts.approve(code, reason="reviewed by the members")
        (pid,) = [e.attributes["proposal_id"] for e in opened.events if e.kind == "proposal_opened"]
        for who in votes[1 : approvals_needed(len(votes))]:
            self.client(who).governance.approve(proposal_id=pid)
        hash_ = contracts.code_hash(self.chain.suite, code)
        assert contracts.is_approved(self.chain.state.tree, hash_)


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("contracts-sdk")
    init_home(home, password=PASSWORD, scrypt_n=1 << 10)
    vkeys = load_key_dir(home / VALIDATORS_DIR, PASSWORD)
    keys_ = load_key_dir(home / ACCOUNTS_DIR, PASSWORD)
    with LocalChain(home, vkeys) as chain:
        sock = free_socket()
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(LocalBackend(chain), OPEN), log_level="warning", lifespan="off"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        try:
            w = World(f"http://127.0.0.1:{port}", home, chain, keys_)
            w.approve(token().init_code)
            yield w
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()


def deploy_token(world: World, supply: int = 1_000) -> Contract:
    abi_text = json.dumps(list(token().abi))
    client = world.client(DEPLOYER)
    return client.contracts.deploy(abi_text, token().init_code, "Bond", supply, gas_limit=2_000_000)


def addr(world: World, name: str) -> str:
    return "0x" + world.chain.suite.address(world.keys[name].public_key).hex()


def test_deploy_transact_and_query(world: World) -> None:
    deployer = world.client(DEPLOYER)
    nonce = deployer.next_nonce(refresh=True)
    t = deploy_token(world)
    assert t.address == keys.create_address(deployer.address, nonce)  # CREATE(sender, nonce)
    assert t.query("name") == "Bond"
    assert t.query("balanceOf", addr(world, DEPLOYER)) == 1_000

    result = t.transact("transfer", addr(world, OTHER), 25)
    assert result.result is True and result.gas_used is not None and result.gas_used > 21_000
    (event,) = result.events
    assert event.address == t.address and event.name == "Transfer"
    assert event.args == {"from": addr(world, DEPLOYER), "to": addr(world, OTHER), "value": 25}
    assert t.query("balanceOf", addr(world, OTHER)) == 25
    # The receipt holds the raw log too, as every module's events.
    receipt = deployer.tx(result.tx_hash)["receipt"]
    kinds = [(e["module"], e["kind"]) for e in receipt["events"]]
    assert kinds == [("contracts", "log"), ("contracts", "called")]


def test_queries_run_as_the_caller_and_revert_cleanly(world: World) -> None:
    t = deploy_token(world)
    other = world.client(OTHER).contracts.at(t.address)  # the ABI from the chain
    assert other.abi == t.abi
    assert other.query("whoami") == addr(world, OTHER)
    assert t.query("ownerOnly") == 42
    with pytest.raises(QueryFailedError) as err:
        other.query("ownerOnly")
    assert err.value.code == "EVM_REVERTED" and err.value.reason == "owner only"
    nonce = world.client(OTHER).next_nonce(refresh=True)
    other.query("whoami")
    assert world.client(OTHER).next_nonce(refresh=True) == nonce  # no transaction


def test_a_failed_transaction_carries_the_engine_code(world: World) -> None:
    t = deploy_token(world, supply=10)
    with pytest.raises(FailedError) as err:
        t.transact("transfer", addr(world, OTHER), 11)
    assert err.value.code == "EVM_REVERTED" and "balance too low" in err.value.message
    assert t.query("balanceOf", addr(world, DEPLOYER)) == 10


def test_bad_arguments_are_refused_before_signing(world: World) -> None:
    t = deploy_token(world)
    client = t.client
    nonce = client.next_nonce(refresh=True)
    for call, code in [
        (lambda: t.transact("transfer", "0x1234", 1), "BAD_ABI_ARGS"),
        (lambda: t.transact("mint", 1), "UNKNOWN_FUNCTION"),
        (lambda: t.query("balanceOf"), "BAD_ABI_ARGS"),
        (lambda: client.contracts.deploy("{", token().init_code), "BAD_ABI"),
        (lambda: client.contracts.deploy("[]", "zz"), "BAD_ARGUMENTS"),
    ]:
        with pytest.raises(InvalidArgumentsError) as err:
            call()
        assert err.value.code == code
    assert client.next_nonce(refresh=True) == nonce


def test_unapproved_code_is_refused(world: World) -> None:
    client = world.client(DEPLOYER)
    unapproved = token().init_code + b"\x00"  # another code hash (refused before it runs)
    with pytest.raises(FailedError) as err:
        client.contracts.deploy("[]", unapproved, gas_limit=2_000_000)
    assert err.value.code == "CODE_NOT_APPROVED"


def test_info_freeze_and_unfreeze(world: World) -> None:
    t = deploy_token(world)
    info = t.info()
    assert info["deployer"] == addr(world, DEPLOYER)[2:]
    assert info["code_hash"] == contracts.code_hash(world.chain.suite, token().init_code).hex()
    assert info["frozen"] is False and info["abi"] == list(token().abi)
    assert {e["name"] for e in info["events"]} == {"Transfer"}
    regulator = world.client("regulator")
    regulator.contracts.freeze(t.address, reason="court order 7")
    assert t.info()["frozen"] is True and t.info()["freeze"]["reason"] == "court order 7"
    with pytest.raises(FailedError) as err:
        t.transact("transfer", addr(world, OTHER), 1)
    assert err.value.code == "CONTRACT_FROZEN"
    assert t.query("balanceOf", addr(world, DEPLOYER)) == 1_000  # still readable
    with pytest.raises(FailedError) as err:
        world.client(OTHER).contracts.freeze(t.address, reason="no")
    assert err.value.code == "NOT_AUTHORIZED"
    regulator.contracts.unfreeze(t.address)
    assert t.transact("transfer", addr(world, OTHER), 1).result is True


def test_upgrade_keeps_storage(world: World) -> None:
    t = deploy_token(world)
    t.transact("transfer", addr(world, OTHER), 7)
    world.approve(token_v2().init_code)
    v2_abi = json.dumps(list(token_v2().abi))
    with pytest.raises(FailedError) as err:
        world.client(OTHER).contracts.upgrade(t.address, token_v2().init_code, "X", 0, abi=v2_abi)
    assert err.value.code == "NOT_AUTHORIZED"
    client = world.client(DEPLOYER)
    client.contracts.upgrade(t.address, token_v2().init_code, "ignored", 0, abi=v2_abi)
    v2 = client.contracts.at(t.address, v2_abi)
    assert v2.query("version") == 2
    assert v2.query("balanceOf", addr(world, OTHER)) == 7  # the old storage
    assert v2.query("name") == "Bond"
    assert v2.info()["record"]["version"] == 2


def test_queries_get_no_native_bridge(world: World) -> None:
    """A query runs without the precompiles' bridge (docs/api.md): the registry precompile
    reverts there, so a query cannot read native records around the API's role rules; the same
    read inside a transaction works."""
    peek = toolchain.compile_solidity(PEEK_SOL, "Peek")
    world.approve(peek.init_code)
    client = world.client(DEPLOYER)
    contract = client.contracts.deploy(list(peek.abi), peek.init_code, gas_limit=2_000_000)
    regulator = addr(world, "regulator")
    with pytest.raises(QueryFailedError) as err:
        contract.query("isRegulator", regulator)
    assert err.value.code == "EVM_REVERTED" and b"NATIVE_UNAVAILABLE" in err.value.output
    (seen,) = contract.transact("record", regulator).events
    assert seen.name == "Seen" and seen.args == {"who": regulator, "regulator": True}


# -- the REST API's problems ------------------------------------------------------------------


def test_api_contract_routes_answer_problems(world: World) -> None:
    t = deploy_token(world)
    base = f"{world.url}/v1/contracts"
    with httpx2.Client(trust_env=False) as http:
        missing = http.get(f"{base}/{'00' * 20}")
        assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
        bad = http.get(f"{base}/abcd")
        assert bad.status_code == 400 and bad.json()["code"] == "BAD_REQUEST"
        unsigned = http.post(f"{base}/{t.address.hex()}/query", json={"function": "name"})
        assert unsigned.status_code == 401
        assert unsigned.headers["content-type"].startswith("application/problem+json")
    with pytest.raises(NotFoundError):
        t.client.contracts.info(bytes(20))
    http_client = t.client
    path = f"/v1/contracts/{t.address.hex()}/query"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"function": "mint", "args": [1]}, "UNKNOWN_FUNCTION"),
        ({"function": "balanceOf", "args": ["0x12"]}, "BAD_ABI_ARGS"),
        ({"function": "name", "data": "00"}, "BAD_REQUEST"),
        ({"data": "zz"}, "BAD_REQUEST"),
        ({"data": "00", "gas_limit": 10**12}, "BAD_REQUEST"),
        ({"data": "00", "extra": 1}, "BAD_REQUEST"),
    ]
    for body, code in cases:
        with pytest.raises(SdkError) as err:
            http_client._request("POST", path, body)
        assert err.value.code == code and err.value.status == 400, (body, err.value)
    by_name = http_client._request(
        "POST", path, {"function": "balanceOf", "args": [addr(world, DEPLOYER)]}
    )
    assert by_name["ok"] is True and by_name["result"] == 1_000
    reverted = http_client._request(
        "POST", path, {"function": "transfer", "args": [addr(world, OTHER), 10**9]}
    )
    # ``require`` refuses before any write: a revert with its reason (200, ok false).
    assert reverted["ok"] is False and reverted["code"] == "EVM_REVERTED"
    assert reverted["revert_reason"] == "balance too low"
    # Past the require, the write faults under the static rules.
    writes = http_client._request(
        "POST", path, {"function": "transfer", "args": [addr(world, OTHER), 1]}
    )
    assert writes["ok"] is False and writes["code"] == "EVM_STATIC_STATE_CHANGE"


def test_decode_log_route(world: World) -> None:
    t = deploy_token(world)
    result = t.transact("transfer", addr(world, OTHER), 3)
    log = next(e for e in result.raw.events if e.kind == "log")
    path = f"{world.url}/v1/contracts/{t.address.hex()}/decode-log"
    body = {"topics": log.attributes["topics"], "data": log.attributes["data"]}
    with httpx2.Client(trust_env=False) as http:
        decoded = http.post(path, json=body).json()
        assert decoded["event"] == "Transfer" and decoded["args"]["value"] == 3
        unknown = http.post(path, json={"topics": ["00" * 32], "data": ""})
        assert unknown.status_code == 400 and unknown.json()["code"] == "UNKNOWN_EVENT"
        short = http.post(path, json={"topics": ["00"], "data": ""})
        assert short.status_code == 400 and short.json()["code"] == "BAD_REQUEST"


# -- the CLI -----------------------------------------------------------------------------------


def run_cli(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli_app, args, env={PASSWORD_ENV: PASSWORD})
    return result.exit_code, result.stdout, result.stderr


def test_cli_deploy_call_query_info_freeze(world: World, tmp_path: Path) -> None:
    abi_file = tmp_path / "token.abi.json"
    abi_file.write_text(json.dumps(list(token().abi)))
    code_file = tmp_path / "token.bin"
    code_file.write_text(token().init_code.hex())
    key = str(world.home / ACCOUNTS_DIR / f"{DEPLOYER}.key")
    common = ["--key", key, "--api", world.url]
    code, out, err = run_cli(
        [
            "contract",
            "deploy",
            "--abi",
            str(abi_file),
            "--bytecode",
            str(code_file),
            "Coupon",
            "500",
            *common,
            "--json",
        ]
    )
    assert code == 0, err
    address = json.loads(out)["address"]
    code, out, err = run_cli(
        ["contract", "call", address, "transfer", addr(world, OTHER), "5", *common, "--json"]
    )
    assert code == 0, err
    called = json.loads(out)
    assert called["result"] is True and called["events"][0]["event"] == "Transfer"
    code, out, err = run_cli(
        ["contract", "query", address, "balanceOf", addr(world, OTHER), *common]
    )
    assert code == 0 and json.loads(out) == 5, err
    code, out, err = run_cli(["contract", "info", address, "--api", world.url])
    assert code == 0 and "function   transfer(address,uint256) nonpayable" in out, err
    # Failures: on chain (1), bad input (2), never a traceback.
    code, out, err = run_cli(
        ["contract", "call", address, "transfer", addr(world, OTHER), "100000", *common]
    )
    assert code == 1 and "EVM_REVERTED" in err and "balance too low" in err
    code, out, err = run_cli(["contract", "query", address, "nope", *common])
    assert code == 2 and "UNKNOWN_FUNCTION" in err and "Traceback" not in err
    code, out, err = run_cli(["contract", "call", address, "transfer", "0x12", "1", *common])
    assert code == 2 and "BAD_ABI_ARGS" in err
    code, out, err = run_cli(["contract", "deploy", "--bytecode", "nothex-nofile", *common])
    assert code == 2 and "neither hex nor a readable file" in err
    regulator = ["--key", str(world.home / ACCOUNTS_DIR / "regulator.key"), "--api", world.url]
    code, out, err = run_cli(["contract", "freeze", address, "--reason", "audit", *regulator])
    assert code == 0, err
    code, out, err = run_cli(
        ["contract", "call", address, "transfer", addr(world, OTHER), "1", *common]
    )
    assert code == 1 and "CONTRACT_FROZEN" in err
    code, out, err = run_cli(["contract", "unfreeze", address, *regulator])
    assert code == 0, err


def test_cli_approve_opens_a_proposal(world: World, tmp_path: Path) -> None:
    key = str(world.home / ACCOUNTS_DIR / f"{voters()[0]}.key")
    source = tmp_path / "Other.sol"
    source.write_text(TOKEN_SOL.replace("contract Token", "contract Other"))
    code, out, err = run_cli(
        [
            "contract",
            "approve",
            "--source",
            str(source),
            "--reason",
            "review",
            "--key",
            key,
            "--api",
            world.url,
            "--json",
        ]
    )
    assert code == 0, err
    opened = json.loads(out)
    compiled = toolchain.compile_solidity(source.read_text(), "Other")
    assert opened["code_hash"] == contracts.code_hash(world.chain.suite, compiled.init_code).hex()
    assert isinstance(opened["proposal_id"], int)
    code, out, err = run_cli(
        ["contract", "approve", "--reason", "x", "--key", key, "--api", world.url]
    )
    assert code == 2 and "exactly one of --bytecode and --source" in err


def test_one_query_at_a_time_shares_the_engine_with_blocks(world: World) -> None:
    """Block execution shares the EVM thread: while a query holds the node's query slot, another
    waits at most QUERY_WAIT_S and is then refused with 503 QUERY_BUSY; free again, it runs."""
    from consortia.api import contracts as api_contracts

    t = deploy_token(world)
    assert api_contracts.QUERY_SLOT.acquire(timeout=5)
    try:
        with pytest.raises(SdkError) as err:
            t.query("name")
        assert err.value.code == "QUERY_BUSY"
    finally:
        api_contracts.QUERY_SLOT.release()
    assert t.query("name") == "Bond"
