"""Evidence bundles of contract data: a contract's storage word, or its account record, at a height.

The world: a business chain (a ``LocalChain`` home, real store and certificates) on which an
account with the ``contract_deployer`` role deploys a small hand-assembled contract (its
constructor stores 7 in slot 0 and 0xdeadbeef in slot 5; each call adds 1 to slot 0), then calls
it once; a supervision chain registers the business chain and anchors every header. Bundles are
exported from the stores and verified with nothing but the two genesis files; any altered byte
fails; a zero (unstored) slot and an address without a contract are refused with a clear error.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_hash.auto import keccak
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from consortia import codec
from consortia.api import ApiSettings, LocalBackend, create_app
from consortia.cli import app
from consortia.contracts import keys as contract_keys
from consortia.evidence.bundle import (
    FORMAT,
    FORMAT_CONTRACTS,
    RECORD_CONTRACT_ACCOUNT,
    RECORD_CONTRACT_STORAGE,
    BundleFormatError,
    EvidenceBundle,
    EvidenceError,
    Proven,
    StateProofError,
    Verifier,
    bundle_to_json,
    bundle_to_obj,
    parse_bundle,
    verify_bundle,
)
from consortia.evidence.export import UnknownSubjectError, export_contract
from consortia.execution.genesis import Genesis, genesis_from_json
from consortia.ledger.types import TxStatus
from consortia.node.demo import RehearsalClock
from consortia.node.local import ACCOUNTS_DIR, GENESIS_FILE, load_key_dir
from consortia.sdk import Client, InvalidArgumentsError
from tests.apiworld import opened
from tests.evidencekit import (
    BUSINESS_ID,
    PASSWORD,
    SUPERVISION_ID,
    Signer,
    anchor_all,
    make_home,
    open_chain,
)
from tests.test_api import assert_problem
from tests.test_api_evidence import OPEN, serve
from tests.test_api_records import Who

runner = CliRunner()

DEPLOYER = "broker-a-admin"
# Runtime: slot0 += 1 (PUSH1 1, PUSH1 0, SLOAD, ADD, PUSH1 0, SSTORE, STOP).
RUNTIME = bytes.fromhex("600160005401600055" + "00")
# Init: SSTORE(0, 7); SSTORE(5, 0xdeadbeef); return the runtime (CODECOPY from offset 25).
INIT = (
    bytes.fromhex("6007600055" + "63deadbeef600555")
    + bytes.fromhex(f"60{len(RUNTIME):02x}6019600039" + f"60{len(RUNTIME):02x}6000f3")
    + RUNTIME
)
assert INIT.index(RUNTIME) == 0x19


@dataclass(frozen=True)
class ContractWorld:
    business_home: Path
    supervision_home: Path
    business_genesis: Genesis
    supervision_genesis: Genesis
    address: bytes
    deploy_height: int  # slot 0 = 7 from here
    call_height: int  # slot 0 = 8 from here
    head: int


def build_contract_world(root: Path) -> ContractWorld:
    bhome, shome = root / "business", root / "supervision"
    bgen = make_home(bhome, BUSINESS_ID)
    bgen = dataclasses.replace(
        bgen,
        accounts=tuple(
            dataclasses.replace(a, roles=(*a.roles, "contract_deployer"))
            if a.name == DEPLOYER
            else a
            for a in bgen.accounts
        ),
    )
    (bhome / GENESIS_FILE).write_text(bgen.to_json())
    make_home(shome, SUPERVISION_ID, tier="supervision")

    chain = open_chain(bhome, RehearsalClock())
    keys = load_key_dir(bhome / ACCOUNTS_DIR, PASSWORD)
    sign = Signer(chain.suite, BUSINESS_ID)
    deployer = keys[DEPLOYER]
    try:
        chain.commit([])
        deploy = sign(
            deployer,
            "contracts",
            "deploy",
            {"code": INIT, "args": b"", "gas_limit": 200_000, "abi": ""},
        )
        committed = chain.commit([deploy])
        assert [r.status for r in committed.receipts] == [TxStatus.OK], committed.receipts
        deploy_height = chain.height
        address = contract_keys.create_address(chain.suite.address(deployer.public_key), 0)
        call = sign(
            deployer, "contracts", "call", {"address": address, "data": b"", "gas_limit": 100_000}
        )
        committed = chain.commit([call])
        assert [r.status for r in committed.receipts] == [TxStatus.OK], committed.receipts
        call_height = chain.height
        chain.commit([])
        assert chain.state.tree.get(contract_keys.storage_key(address, 0)) == (8).to_bytes(
            32, "big"
        )
    finally:
        chain.close()

    sup = open_chain(shome, RehearsalClock())
    skeys = load_key_dir(shome / ACCOUNTS_DIR, PASSWORD)
    ssign = Signer(sup.suite, SUPERVISION_ID)
    try:
        register = ssign(
            skeys["regulator"],
            "anchoring",
            "register_chain",
            {
                "chain_id": bgen.chain_id,
                "suite": bgen.suite,
                "genesis_hash": bgen.hash(),
                "genesis_time_ms": bgen.genesis_time_ms,
                "validators": codec.to_cbor(bgen.validator_set()),
            },
        )
        committed = sup.commit([register])
        assert [r.code for r in committed.receipts] == [""], committed.receipts
        # No validator-set change on this business chain: no announced sets are needed.
        head = anchor_all(sup, ssign, skeys["relayer"], bhome, {}, first=1)
        sup.commit([])
    finally:
        sup.close()
    return ContractWorld(
        bhome,
        shome,
        genesis_from_json((bhome / GENESIS_FILE).read_text()),
        genesis_from_json((shome / GENESIS_FILE).read_text()),
        address,
        deploy_height,
        call_height,
        head,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> ContractWorld:
    return build_contract_world(tmp_path_factory.mktemp("evidence-contracts"))


@pytest.fixture(scope="module")
def bundles(world: ContractWorld) -> dict[str, EvidenceBundle]:
    b, s, a = world.business_home, world.supervision_home, world.address
    return {
        "slot0_deployed": export_contract(b, s, address=a, slot=0, height=world.deploy_height),
        "slot0_called": export_contract(b, s, address=a, slot=0, height=world.call_height),
        "slot5": export_contract(b, s, address=a, slot=5, height=world.head),
        "account": export_contract(b, s, address=a, slot=None, height=world.head),
    }


def verify(world: ContractWorld, bundle: EvidenceBundle | str | bytes) -> Proven:
    """Verify offline: only the two genesis documents, as read from their files."""
    return verify_bundle(bundle, world.business_genesis, world.supervision_genesis)


# ---------------------------------------------------------------------------------------------
# What verifies, and what it says


def test_storage_bundles_verify_offline_and_say_the_word(
    world: ContractWorld, bundles: dict[str, EvidenceBundle]
) -> None:
    addr = world.address.hex()
    for name, height, slot, word in (
        ("slot0_deployed", world.deploy_height, 0, 7),
        ("slot0_called", world.call_height, 0, 8),
        ("slot5", world.head, 5, 0xDEADBEEF),
    ):
        bundle = bundles[name]
        text = bundle_to_json(bundle)
        assert parse_bundle(text) == bundle
        assert json.loads(text)["format"] == FORMAT_CONTRACTS
        assert bundle.state is not None
        assert (bundle.state.record, bundle.state.asset) == (RECORD_CONTRACT_STORAGE, addr)
        assert bundle.state.account == slot.to_bytes(32, "big").hex()
        proven = verify(world, text)
        assert proven == verify(world, bundle)
        assert proven.kind == "state" and proven.height == height
        assert proven.who == f"contract 0x{addr}"
        assert proven.what == f"slot {hex(slot)} = {hex(word)} ({word}) at height {height}"
        assert proven.chain_id == BUSINESS_ID and proven.anchored_height > 0


def test_account_bundle_proves_nonce_and_code_hash(
    world: ContractWorld, bundles: dict[str, EvidenceBundle]
) -> None:
    bundle = bundles["account"]
    assert bundle.state is not None
    assert (bundle.state.record, bundle.state.account) == (RECORD_CONTRACT_ACCOUNT, "")
    proven = verify(world, bundle_to_json(bundle))
    assert bundle.state.proof.value is not None
    account = codec.decode_struct(contract_keys.ContractAccount, bundle.state.proof.value)
    assert account.code_hash == bytes(keccak(RUNTIME))
    assert proven.what == (
        f"account at height {world.head}: nonce {account.nonce}, "
        f"code hash (Keccak-256) 0x{keccak(RUNTIME).hex()}"
    )


# ---------------------------------------------------------------------------------------------
# What fails


def test_flipping_any_byte_of_the_subject_and_sampled_bytes_elsewhere_fails(
    world: ContractWorld, bundles: dict[str, EvidenceBundle]
) -> None:
    data = bundle_to_json(bundles["slot0_called"]).encode()
    verifier = Verifier(world.business_genesis, world.supervision_genesis)
    verifier.verify(data)
    start = data.index(b'"state":')
    end = data.index(b"\n", start)
    positions = [*range(start, end), *range(0, len(data), 11)]
    checks: set[str] = set()
    for i in positions:
        altered = bytearray(data)
        altered[i] ^= 0x01
        try:
            verifier.verify(bytes(altered))
        except EvidenceError as exc:
            checks.add(type(exc).__name__)
        else:
            pytest.fail(f"flipping byte {i} still verifies: ...{data[i - 40 : i + 20]!r}")
    # The raw storage word has no readable CBOR copy: flips in it fail the proof itself.
    assert {"BundleFormatError", "StateProofError"} <= checks


def test_a_tampered_subject_fails_naming_the_check(
    world: ContractWorld, bundles: dict[str, EvidenceBundle]
) -> None:
    bundle = bundles["slot0_called"]
    assert bundle.state is not None
    other = bundles["slot5"]
    assert other.state is not None
    # Another slot's word under this slot's name; another contract; a slot spelled differently.
    for state, message in (
        (dataclasses.replace(bundle.state, account=other.state.account), "the proof is for key"),
        (dataclasses.replace(bundle.state, asset="11" * 20), "the proof is for key"),
        (dataclasses.replace(bundle.state, account="0" * 63), "64 lowercase hex"),
        (dataclasses.replace(bundle.state, asset=bundle.state.asset.upper()), "40 lowercase"),
        (dataclasses.replace(bundle.state, record=RECORD_CONTRACT_ACCOUNT), "account must be"),
    ):
        with pytest.raises(StateProofError, match=message):
            verify(world, dataclasses.replace(bundle, state=state))
    # The proof of this slot at another height does not match this header's state root.
    moved = dataclasses.replace(bundles["slot0_deployed"], state=bundle.state)
    with pytest.raises(StateProofError):
        verify(world, moved)


def test_the_format_version_is_bound_to_the_record_kind(
    world: ContractWorld, bundles: dict[str, EvidenceBundle]
) -> None:
    text = bundle_to_json(bundles["slot5"])
    downgraded = text.replace(json.dumps(FORMAT_CONTRACTS), json.dumps(FORMAT), 1)
    assert downgraded != text
    with pytest.raises(BundleFormatError, match="consortia-evidence/2"):
        verify(world, downgraded)
    unknown = text.replace(json.dumps(FORMAT_CONTRACTS), '"consortia-evidence/9"', 1)
    with pytest.raises(BundleFormatError, match="expected one of"):
        verify(world, unknown)
    assert bundle_to_obj(bundles["slot5"])["format"] == FORMAT_CONTRACTS


def test_export_refuses_a_zero_slot_and_an_address_without_a_contract(
    world: ContractWorld,
) -> None:
    b, s, a = world.business_home, world.supervision_home, world.address
    with pytest.raises(UnknownSubjectError, match=r"slot 0x1 of contract .* is zero at height"):
        export_contract(b, s, address=a, slot=1, height=world.head)
    with pytest.raises(UnknownSubjectError, match="no contract at 0x"):
        export_contract(b, s, address=a, slot=0, height=world.deploy_height - 1)
    with pytest.raises(UnknownSubjectError, match="no contract at 0x" + "22" * 20):
        export_contract(b, s, address=b"\x22" * 20, slot=0, height=world.head)


# ---------------------------------------------------------------------------------------------
# The CLI


def test_cli_exports_and_verifies_a_contract_slot(world: ContractWorld, tmp_path: Path) -> None:
    out = tmp_path / "slot.json"
    common = ["--home", str(world.business_home), "--supervision-home", str(world.supervision_home)]
    r = runner.invoke(
        app,
        [
            "evidence",
            "contract",
            *common,
            "--address",
            "0x" + world.address.hex(),
            "--slot",
            "0x0",
            "--height",
            str(world.call_height),
            "-o",
            str(out),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    written = json.loads(r.output)
    assert written["ok"] and written["height"] == world.call_height
    bg = str(world.business_home / GENESIS_FILE)
    sg = str(world.supervision_home / GENESIS_FILE)
    r = runner.invoke(app, ["evidence", "verify", str(out), "--genesis", sg, "--genesis", bg])
    assert r.exit_code == 0, r.output
    assert f"contract 0x{world.address.hex()}" in r.output
    assert f"slot 0x0 = 0x8 (8) at height {world.call_height}" in r.output
    # Without --slot: the account record.
    r = runner.invoke(
        app,
        [
            "evidence",
            "contract",
            *common,
            "--address",
            world.address.hex(),
            "--height",
            str(world.head),
            "-o",
            str(tmp_path / "account.json"),
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        ["evidence", "verify", str(tmp_path / "account.json"), "--genesis", bg, "--genesis", sg],
    )
    assert r.exit_code == 0 and "code hash (Keccak-256)" in r.output, r.output


def test_cli_contract_errors_are_one_line(world: ContractWorld, tmp_path: Path) -> None:
    common = [
        "evidence",
        "contract",
        "--home",
        str(world.business_home),
        "--supervision-home",
        str(world.supervision_home),
        "-o",
        str(tmp_path / "x.json"),
        "--height",
        str(world.head),
    ]
    addr = world.address.hex()
    for args, code, message in (
        (["--address", "0x1234", "--slot", "0"], 2, "is not a 20-byte hex address"),
        (["--address", addr, "--slot", "-1"], 2, "is not a slot number"),
        (["--address", addr, "--slot", "0xzz"], 2, "is not a slot number"),
        (["--address", addr, "--slot", "1_0"], 2, "is not a slot number"),
        (["--address", addr, "--slot", hex(1 << 256)], 2, "is not a 256-bit slot number"),
        (["--address", addr, "--slot", "1"], 1, "is zero at height"),
    ):
        r = runner.invoke(app, [*common, *args])
        assert r.exit_code == code, r.output
        assert message in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.json").exists()


# ---------------------------------------------------------------------------------------------
# The REST API (a business node's API fetching the anchor half from a supervision node's API)


@pytest.fixture(scope="module")
def api(world: ContractWorld) -> Iterator[Who]:
    keys = load_key_dir(world.business_home / ACCOUNTS_DIR, PASSWORD)
    with opened(world.business_home) as business, opened(world.supervision_home) as sup:
        settings = ApiSettings(rate_per_s=1e6, burst=1_000_000)
        with (
            serve(create_app(LocalBackend(sup), OPEN)) as sup_url,
            TestClient(
                create_app(
                    LocalBackend(business),
                    dataclasses.replace(settings, supervision_api=sup_url),
                )
            ) as client,
        ):
            who = Who(client, business, keys)
            who.sup_url = sup_url  # type: ignore[attr-defined]
            yield who


def test_api_contract_evidence_for_the_regulator(world: ContractWorld, api: Who) -> None:
    addr = world.address.hex()
    r = api.get("regulator", f"/v1/evidence/contract/0x{addr}/0?height={world.call_height}")
    assert r.status_code == 200, r.text
    proven = verify(world, r.text)
    assert proven.what == f"slot 0x0 = 0x8 (8) at height {world.call_height}"
    assert r.text == bundle_to_json(parse_bundle(r.text))
    r = api.get("regulator", f"/v1/evidence/contract/{addr}/0x5")
    assert r.status_code == 200, r.text
    assert verify(world, r.text).what.startswith("slot 0x5 = 0xdeadbeef (3735928559)")
    r = api.get("regulator", f"/v1/evidence/contract/{addr}?height={world.head}")
    assert r.status_code == 200, r.text
    assert "code hash (Keccak-256)" in verify(world, r.text).what


def test_api_contract_evidence_rules_and_bad_input(world: ContractWorld, api: Who) -> None:
    addr = world.address.hex()
    # Raw evm/ state is the regulator's: even the deployer is refused, for any slot or address.
    for path in (
        f"/v1/evidence/contract/{addr}/0",
        f"/v1/evidence/contract/{addr}",
        "/v1/evidence/contract/" + "22" * 20 + "/0",
    ):
        assert_problem(api.get(DEPLOYER, path), 403, "FORBIDDEN")
    for path, status, code in (
        (f"/v1/evidence/contract/{addr}/1", 404, "NOT_FOUND"),  # zero: nothing stored
        ("/v1/evidence/contract/" + "22" * 20 + "/0", 404, "NOT_FOUND"),
        (f"/v1/evidence/contract/{addr}/0?height={world.deploy_height - 1}", 404, "NOT_FOUND"),
        ("/v1/evidence/contract/1234/0", 400, "BAD_REQUEST"),
        (f"/v1/evidence/contract/{addr}/-1", 400, "BAD_REQUEST"),
        (f"/v1/evidence/contract/{addr}/0x" + "f" * 65, 400, "BAD_REQUEST"),
        (f"/v1/evidence/contract/{addr}/0?height={world.head + 50}", 400, "BAD_REQUEST"),
    ):
        assert_problem(api.get("regulator", path), status, code)


def test_sdk_exports_and_verifies_contract_evidence(world: ContractWorld, api: Who) -> None:
    settings = ApiSettings(rate_per_s=1e6, burst=10**6, supervision_api=api.sup_url)  # type: ignore[attr-defined]
    with serve(create_app(LocalBackend(api.chain), settings)) as url:
        regulator = Client(url, api.keys["regulator"])
        word = regulator.export_contract_evidence(
            "0x" + world.address.hex(),
            0,
            height=world.call_height,
            verify=True,
            business_genesis=world.business_genesis,
            supervision_genesis=world.supervision_genesis,
        )
        assert word.proven is not None
        assert word.proven.what == f"slot 0x0 = 0x8 (8) at height {world.call_height}"
        account = regulator.export_contract_evidence(world.address.hex())
        assert account.bundle.state is not None
        with pytest.raises(InvalidArgumentsError):
            regulator.export_contract_evidence(world.address.hex(), -1)
