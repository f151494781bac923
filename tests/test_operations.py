"""The operations API (``consortia.node.operations``) and ``consortia tx``: argument conversion
and validation offline, then real operations on a 4-validator network through both."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consortia.cli import app
from consortia.crypto import decrypt_key_file, get_suite
from consortia.execution.context import decode_record
from consortia.modules import NATIVE_MODULES
from consortia.modules.investors import (
    Investor,
    identity_commitment,
    investor_key,
    open_identity,
)
from consortia.node.operations import (
    InvalidOperationError,
    OperationError,
    Operator,
    describe_methods,
    prepare_args,
)
from tests.netkit import PASSWORD, LocalNet

runner = CliRunner()

# ---------------------------------------------------------------------------------------------
# Offline: conversion and validation


def test_hex_strings_become_bytes_for_bytes_fields() -> None:
    args = prepare_args(
        "registry", "freeze_account", {"address": "0x" + "ab" * 20, "reason": "court order"}
    )
    assert args == {"address": b"\xab" * 20, "reason": "court order"}
    # Bytes given directly (Python callers) pass through.
    same = prepare_args("registry", "freeze_account", {"address": b"\xab" * 20, "reason": "x"})
    assert same["address"] == b"\xab" * 20


def test_lists_and_nested_records_are_converted() -> None:
    args = prepare_args(
        "securities",
        "map_holdings",
        {
            "code": "600001",
            "batch_id": "b1",
            "batch_total": 30,
            "entries": [
                {"account_id": "A1", "amount": 10, "locked": 0},
                {"account_id": "A2", "amount": 20, "locked": 5},
            ],
        },
    )
    assert args["entries"][1] == {"account_id": "A2", "amount": 20, "locked": 5}
    roles = prepare_args(
        "registry", "set_roles", {"address": "00" * 20, "roles": ["broker", "org_admin"]}
    )
    assert roles["roles"] == ["broker", "org_admin"]


@pytest.mark.parametrize(
    ("module", "method", "args", "code", "fragment"),
    [
        ("nope", "x", {}, "UNKNOWN_MODULE", "unknown module 'nope'"),
        ("securities", "steal", {}, "UNKNOWN_METHOD", "has no method 'steal'"),
        ("governance", "approve", {}, "BAD_ARGUMENTS", "lacks field 'proposal_id'"),
        ("governance", "approve", {"proposal_id": 1, "x": 2}, "BAD_ARGUMENTS", "unknown field"),
        ("governance", "approve", {"proposal_id": "1"}, "BAD_ARGUMENTS", "expected an integer"),
        ("governance", "approve", {"proposal_id": True}, "BAD_ARGUMENTS", "expected an integer"),
        ("registry", "rotate_key", {"new_public_key": "xyz"}, "BAD_ARGUMENTS", "hex"),
        ("registry", "rotate_key", {"new_public_key": 5}, "BAD_ARGUMENTS", "expected bytes"),
        ("registry", "set_roles", {"address": "00", "roles": "broker"}, "BAD_ARGUMENTS", "array"),
        (
            "securities",
            "map_holdings",
            {"code": "c", "batch_id": "b", "batch_total": 1, "entries": [{"account_id": "A"}]},
            "BAD_ARGUMENTS",
            "entries[0]",
        ),
    ],
)
def test_bad_input_is_rejected_before_signing(
    module: str, method: str, args: dict[str, object], code: str, fragment: str
) -> None:
    with pytest.raises(InvalidOperationError) as info:
        prepare_args(module, method, args)
    assert info.value.code == code
    assert fragment in info.value.message


def test_every_method_is_described() -> None:
    described = {(i.module, i.method) for i in describe_methods()}
    expected = {(m, n) for m, mod in NATIVE_MODULES.items() for n in mod.methods}
    assert described == expected
    transfer = next(
        i for i in describe_methods() if (i.module, i.method) == ("securities", "transfer")
    )
    assert dict(transfer.fields)["amount"] == "int"


def test_cli_list_shows_every_method() -> None:
    result = runner.invoke(app, ["tx", "list"])
    assert result.exit_code == 0, result.output
    for mod in NATIVE_MODULES.values():
        assert f"{mod.name}:" in result.output
        for name in mod.methods:
            assert f"  {name}(" in result.output
    as_json = runner.invoke(app, ["tx", "list", "--json"])
    rows = json.loads(as_json.output)
    assert {"name": "public_key", "type": "bytes (hex)"} in next(
        r["args"] for r in rows if r["method"] == "register_account"
    )


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["tx", "transfer", "--module", "nope"], "UNKNOWN_MODULE"),
        (["tx", "securities.steal"], "UNKNOWN_METHOD"),
        (["tx", "transfer"], "--module"),
        (["tx", "approve", "-m", "governance", "--args", "{bad"], "not valid JSON"),
        (["tx", "approve", "-m", "governance", "--args", "[1]"], "JSON object"),
        (["tx", "approve", "-m", "governance", "--args", '{"proposal_id": "x"}'], "BAD_ARGUMENTS"),
        (["tx", "approve", "-m", "governance", "--args", '{"proposal_id": 1}'], "--key and --node"),
    ],
)
def test_cli_bad_input_exits_2_without_traceback(argv: list[str], fragment: str) -> None:
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_cli_unusable_key_or_node_exits_2(tmp_path: Path) -> None:
    argv = ["tx", "governance.approve", "--args", '{"proposal_id": 1}']
    missing = runner.invoke(app, [*argv, "--key", str(tmp_path / "no.key"), "--node", "."])
    assert missing.exit_code == 2 and "cannot read" in missing.output
    (tmp_path / "bad.key").write_text("{}")
    bad = runner.invoke(app, [*argv, "--key", str(tmp_path / "bad.key"), "--node", "."])
    assert bad.exit_code == 2 and "error:" in bad.output


# ---------------------------------------------------------------------------------------------
# A real network


def test_operations_on_a_running_network(tmp_path: Path) -> None:
    net = LocalNet(tmp_path / "net", validators=4)
    accounts = net.home / "accounts"
    suite = get_suite("intl")

    def key(name: str):  # type: ignore[no-untyped-def]
        return decrypt_key_file((accounts / f"{name}.key").read_bytes(), PASSWORD)

    try:
        net.start_all()
        net.wait_for(net.names, 1)
        node = net.home / "validator-0"

        # Python API: the operator fetches its nonce and keeps counting.
        admin = Operator.from_node_home(key("exchange-admin"), node)
        assert admin.account()["roles"] == ["admin", "exchange", "org_admin"]
        done = admin.call(
            "registry",
            "register_org",
            {"org_id": "fund-x", "name": "Xin Fund", "kind": "fund_manager"},
        )
        assert done.ok and done.code == "" and done.height is not None and done.tx_hash
        # A failed receipt raises with the stable code; the nonce is spent all the same.
        with pytest.raises(OperationError) as info:
            admin.call(
                "registry",
                "register_org",
                {"org_id": "fund-x", "name": "Again", "kind": "fund_manager"},
            )
        assert info.value.code == "ORGANIZATION_EXISTS" and info.value.height is not None
        broker = Operator.from_node_home(key("broker-a-admin"), node)
        newcomer = suite.generate_keypair()
        opened = broker.call(
            "registry",
            "register_account",
            {
                "public_key": newcomer.public_key.hex(),
                "org_id": "broker-a",
                "roles": ["broker"],
            },
        )
        assert opened.ok
        assert admin.account()["nonce"] == 2 and broker.account()["nonce"] == 1
        # An account the chain does not know.
        stranger = Operator.from_node_home(suite.generate_keypair(), node)
        with pytest.raises(OperationError) as info:
            stranger.account()
        assert info.value.code == "NOT_FOUND"
        assert net.request("validator-0", "account.get", {"address": "x"})["code"] == "BAD_REQUEST"

        # CLI: the regulator freezes broker-b's admin, who then fails with exit 1 + the code.
        env = {"CONSORTIA_KEY_PASSWORD": PASSWORD}
        target = suite.address(key("broker-b-admin").public_key).hex()
        froze = runner.invoke(
            app,
            [
                "tx",
                "freeze_account",
                "--module",
                "registry",
                "--args",
                json.dumps({"address": target, "reason": "court order 7"}),
                "--key",
                str(accounts / "regulator.key"),
                "--node",
                str(net.home / "validator-1"),
                "--json",
            ],
            env=env,
        )
        assert froze.exit_code == 0, froze.output
        out = json.loads(froze.stdout)
        assert out["ok"] is True and out["code"] == "" and out["height"] >= 1
        refused = runner.invoke(
            app,
            [
                "tx",
                "registry.register_org",
                "--args",
                json.dumps({"org_id": "fund-y", "name": "Y", "kind": "fund_manager"}),
                "--key",
                str(accounts / "broker-b-admin.key"),
                "--node",
                str(net.home / "validator-2"),
            ],
            env=env,
        )
        assert refused.exit_code == 1, refused.output
        assert "ACCOUNT_FROZEN" in refused.output
        assert refused.output.startswith("FAILED registry.register_org ACCOUNT_FROZEN")
    finally:
        net.stop_all()


# ---------------------------------------------------------------------------------------------
# Client-side sealing of identity data (``--identity-file``)


def test_cli_identity_file_checks_offline(tmp_path: Path) -> None:
    identity = tmp_path / "identity.json"
    identity.write_text(json.dumps({"name": "Somebody"}))
    base = ["tx", "investors.open_investor", "--identity-file", str(identity)]
    open_args = {
        "investor_id": "INV-1",
        "kind": "individual",
        "kyc_level": 2,
        "risk_tolerance": 3,
        "qualified": False,
        "address": "00" * 20,
    }
    cases = [
        # The identity fields are computed, never given alongside the clear record.
        ([*base, "--args", json.dumps({**open_args, "sealed_identity": "00"})], "omit them"),
        (
            ["tx", "governance.approve", "--args", '{"proposal_id": 1}', "--identity-file", "x"],
            "takes no identity data",
        ),
        ([*base, "--args", json.dumps({**open_args, "kyc_level": "x"})], "BAD_ARGUMENTS"),
        ([*base, "--args", json.dumps(open_args), "--regulator-key", "zz"], "hex"),
        ([*base, "--args", json.dumps(open_args)], "--key and --node"),
    ]
    (tmp_path / "list.json").write_text("[1]")
    bad_record = ["--identity-file", str(tmp_path / "list.json")]
    cases.append(
        (["tx", "investors.open_investor", "--args", json.dumps(open_args), *bad_record], "object")
    )
    for argv, fragment in cases:
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, (argv, result.output)
        assert fragment in result.output, (argv, result.output)
        assert "Traceback" not in result.output


def test_cli_seals_identity_client_side(tmp_path: Path) -> None:
    """``consortia tx investors.open_investor --identity-file`` seals the investor's identity on
    the client to the broker and the regulator (key read from the chain, proof-checked): the
    chain holds the envelope and the salted commitment, both recipients open it, and the clear
    name and ID number appear nowhere in any node's files (blocks, state, logs)."""
    net = LocalNet(tmp_path / "net", validators=4)
    accounts = net.home / "accounts"
    suite = get_suite("intl")

    def key(name: str):  # type: ignore[no-untyped-def]
        return decrypt_key_file((accounts / f"{name}.key").read_bytes(), PASSWORD)

    name, id_number = "Clienttest 李四 Sealed", "110101198801019876"
    identity = {"name": name, "id_type": "resident_id", "id_number": id_number}
    identity_path = tmp_path / "identity.json"  # outside every node's home
    identity_path.write_text(json.dumps(identity, ensure_ascii=False), encoding="utf-8")
    env = {"CONSORTIA_KEY_PASSWORD": PASSWORD}
    try:
        net.start_all()
        net.wait_for(net.names, 1)
        node = net.home / "validator-0"
        broker = Operator.from_node_home(key("broker-a-admin"), node)
        owner = suite.generate_keypair()
        broker.call(
            "registry",
            "register_account",
            {"public_key": owner.public_key, "org_id": "broker-a", "roles": ["investor"]},
        )
        args = {
            "investor_id": "INV-CLI",
            "kind": "individual",
            "kyc_level": 2,
            "risk_tolerance": 3,
            "qualified": False,
            "address": suite.address(owner.public_key).hex(),
        }
        argv = [
            "tx",
            "investors.open_investor",
            "--args",
            json.dumps(args),
            "--identity-file",
            str(identity_path),
            "--key",
            str(accounts / "broker-a-admin.key"),
            "--node",
            str(node),
        ]
        # Sealed to a key that is not the regulator's: the chain refuses the envelope.
        stranger = suite.generate_keypair().public_key.hex()
        refused = runner.invoke(app, [*argv, "--regulator-key", stranger], env=env)
        assert refused.exit_code == 1, refused.output
        assert "INVALID_IDENTITY" in refused.output

        opened = runner.invoke(app, [*argv, "--json"], env=env)
        assert opened.exit_code == 0, opened.output
        out = json.loads(opened.stdout)
        assert out["ok"] is True and out["code"] == ""

        raw = broker.state_value(investor_key("INV-CLI"))  # proof-checked
        assert raw is not None
        investor = decode_record(Investor, raw)
        assert investor.identity_commitment.hex() == out["identity_commitment"]
        for recipient in ("regulator", "broker-a-admin"):
            record, salt = open_identity(suite, key(recipient), investor.sealed_identity)
            assert record == identity
            assert identity_commitment(suite, salt, record) == investor.identity_commitment
    finally:
        net.stop_all()
    needles = [name.encode(), id_number.encode(), "李四".encode()]
    for path in net.home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(n in data for n in needles), f"clear identity data in {path}"
