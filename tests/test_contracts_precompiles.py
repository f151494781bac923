"""Native modules as precompiles: contracts reach e-CNY, securities and the registry under their
rules, and a broken rule reverts with the module's code and changes nothing.

Engine level: the messages run through ``evm.execute`` with the native bridge over a
``TxContext`` of a real chain (``tests/ecnykit.py``'s cash world, built block by block), and a
successful result's writes are applied to the head state, which is what the ``contracts`` module
does inside a block. The records the contract acts on (its wallet, its investor and securities
account, holdings, freezes) are made by ordinary transactions in blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import encode as eth_abi_encode
from eth_hash.auto import keccak

from consortia.contracts import evm, keys, precompiles, toolchain
from consortia.contracts.precompiles import NativeBridge, abi_decode, abi_encode
from consortia.execution.context import TxContext
from consortia.ledger.types import Event, Transaction, TxStatus
from consortia.modules import contracts as contracts_module
from consortia.modules.ecny import Wallet, wallet_key
from consortia.modules.investors import seal_identity
from consortia.modules.registry import account_key
from consortia.modules.securities import Holding, holding_key
from tests.chainkit import Consortium, Driver
from tests.ecnykit import cash_world, commit_at, next_block_time, wallet_identity
from tests.govkit import approvals_needed, voters
from tests.test_investors import commit_ok, identity_of, open_account_tx, read
from tests.test_securities import issue_tx, listed, transfer_tx

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "contracts"
INTERFACES = EXAMPLES / "interfaces"
GAS = 3_000_000
_IMPORT_LINE = 'import "../interfaces/IConsortia.sol";'


def interfaces_source() -> str:
    """IConsortia.sol without its licence and pragma lines (to inline into another source)."""
    lines = (INTERFACES / "IConsortia.sol").read_text().splitlines()
    return "\n".join(x for x in lines if not x.startswith(("// SPDX", "pragma ")))


def solidity_example(relative: str) -> str:
    """An example's source with its import of the interfaces inlined: the toolchain compiles
    one source."""
    source = (EXAMPLES / relative).read_text()
    assert _IMPORT_LINE in source
    return source.replace(_IMPORT_LINE, interfaces_source())


def selector(signature: str) -> bytes:
    return bytes(keccak(signature.encode()))[:4]


def calldata(signature: str, *args: Any) -> bytes:
    """ABI calldata for ``name(type,...)`` (types: uint256, address, bool, string)."""
    types = signature[signature.index("(") + 1 : -1].split(",") if "()" not in signature else []
    return selector(signature) + abi_encode(types, args)


# ---------------------------------------------------------------------------------------------
# The engine over a chain's head state


class Engine:
    """Runs messages against the head state of ``d`` with the native bridge, and applies a
    successful result's writes to the head state (standing in for the ``contracts`` module)."""

    def __init__(self, d: Driver) -> None:
        self.d = d
        self._deploy_nonce = 1_000_000  # far from any account's transaction nonces

    def context(self, sender: bytes) -> TxContext:
        state = self.d.state
        return TxContext(
            suite=state.suite,
            chain_id=state.chain_id,
            height=state.height + 1,
            time_ms=next_block_time(self.d),
            tree=state.tree,
            block_writes={},
            sender=sender,
            parent_hash=state.last_block_hash,
        )

    def execute(
        self,
        sender: bytes,
        to: bytes | None,
        data: bytes,
        *,
        gas: int = GAS,
        nonce: int = 0,
        bridge: bool = True,
        static: bool = False,
    ) -> evm.ExecutionResult:
        ctx = self.context(sender)
        block = evm.BlockContext(ctx.chain_id, ctx.height, ctx.time_ms, ctx.parent_hash)
        message = evm.EvmMessage(sender, to, data, gas, nonce=nonce, static=static)
        result = evm.execute(ctx, message, block, native=NativeBridge(ctx) if bridge else None)
        if result.ok:
            tree = self.d.state.tree.update(result.writes)
            self.d.state = replace(self.d.state, tree=tree)
        else:
            assert result.writes == {} and result.native_events == ()
        return result

    def deploy(
        self, sender: bytes, compiled: toolchain.CompiledContract, ctor: bytes = b""
    ) -> bytes:
        self._deploy_nonce += 1
        result = self.execute(sender, None, compiled.init_code + ctor, nonce=self._deploy_nonce)
        assert result.ok and result.created is not None, result.message
        return result.created

    def call(
        self, sender: bytes, contract: bytes, signature: str, *args: Any
    ) -> evm.ExecutionResult:
        return self.execute(sender, contract, calldata(signature, *args))


class ModuleEngine(Engine):
    """The same interface through the ``contracts`` native module: a deployment is approved by
    governance and sent as ``contracts.deploy``, a call as ``contracts.call``, each in its own
    block; the receipt is read back into an ``ExecutionResult`` (``writes``: the block's writes
    other than the sender's nonce; the code a native rule failed with in ``native_code``).
    Read-only calls are ``contracts.query``'s static calls over the head state."""

    def __init__(self, c: Consortium, d: Driver) -> None:
        super().__init__(d)
        self.c = c
        self.names = {c.addr(name): name for name in c.accounts}
        self.approved: set[bytes] = set()

    def _approve(self, code: bytes) -> None:
        subject = contracts_module.code_hash(self.c.suite, code)
        if subject in self.approved:
            return
        votes = voters()
        args = {"action": "approve_code", "subject": subject, "reason": "reviewed"}
        opened = commit_ok(self.d, [self.c.tx(votes[0], "governance", "propose_contract", args)])
        (pid,) = [
            e.attributes["proposal_id"]
            for e in opened.receipts[0].events
            if e.kind == "proposal_opened"
        ]
        approvals = [
            self.c.tx(who, "governance", "approve", {"proposal_id": pid})
            for who in votes[1 : approvals_needed(len(votes))]
        ]
        commit_ok(self.d, approvals)
        assert contracts_module.is_approved(self.d.state.tree, subject)
        self.approved.add(subject)

    def deploy(
        self, sender: bytes, compiled: toolchain.CompiledContract, ctor: bytes = b""
    ) -> bytes:
        self._approve(compiled.init_code)
        name = self.names[sender]
        nonce = self.c.nonces.get(sender, 0)
        args = {"code": compiled.init_code, "args": ctor, "gas_limit": GAS, "abi": ""}
        p = commit_ok(self.d, [self.c.tx(name, "contracts", "deploy", args)])
        assert [r.code for r in p.receipts] == [""], p.receipts[0].message
        return keys.create_address(sender, nonce)

    def execute(
        self,
        sender: bytes,
        to: bytes | None,
        data: bytes,
        *,
        gas: int = GAS,
        nonce: int = 0,
        bridge: bool = True,
        static: bool = False,
    ) -> evm.ExecutionResult:
        if static or to is None or not bridge:
            return super().execute(
                sender, to, data, gas=gas, nonce=nonce, bridge=bridge, static=static
            )
        args = {"address": to, "data": data, "gas_limit": gas}
        p = self.d.commit([self.c.tx(self.names[sender], "contracts", "call", args)])
        (receipt,) = p.receipts
        writes = {k: v for k, v in p.writes.items() if k != account_key(sender)}
        items: list[evm.EvmLog | Event] = []
        output, gas_used = b"", 0
        for e in receipt.events:
            if (e.module, e.kind) == ("contracts", "log"):
                a = e.attributes
                items.append(evm.EvmLog(a["address"], tuple(a["topics"]), a["data"]))
            elif (e.module, e.kind) == ("contracts", "called"):
                output, gas_used = e.attributes["output"], e.attributes["gas_used"]
            else:
                items.append(e)
        if receipt.status == TxStatus.OK:
            return evm.ExecutionResult(
                evm.Status.OK,
                "",
                "",
                gas_used,
                output=output,
                logs=tuple(i for i in items if isinstance(i, evm.EvmLog)),
                writes=writes,
                native_events=tuple(i for i in items if isinstance(i, Event)),
                events_in_order=tuple(items),
            )
        assert writes == {} and not receipt.events, (receipt.code, sorted(writes))
        engine_code = receipt.code.startswith("EVM_")
        return evm.ExecutionResult(
            evm.Status.REVERTED if receipt.code != evm.CODE_OUT_OF_GAS else evm.Status.OUT_OF_GAS,
            receipt.code if engine_code else evm.CODE_REVERTED,
            receipt.message,
            0,
            native_code="" if engine_code else receipt.code,
            native_message="" if engine_code else receipt.message,
        )


def make_engine(backend: str, c: Consortium, d: Driver) -> Engine:
    """``engine``: ``evm.execute`` with the bridge; ``module``: transactions in blocks."""
    return Engine(d) if backend == "engine" else ModuleEngine(c, d)


def open_contract_wallet(
    c: Consortium, d: Driver, wallet_id: str, owner: bytes, *, category: int, load: int
) -> None:
    """An operator bank opens ``wallet_id`` for contract ``owner`` and loads it (transactions)."""
    commitment, sealed, _ = seal_identity(
        c.suite,
        wallet_identity(wallet_id),
        c.accounts["ccb-admin"].public_key,
        c.accounts["regulator"].public_key,
    )
    args = {
        "wallet_id": wallet_id,
        "owner": owner,
        "kind": "corporate",
        "category": category,
        "identity_commitment": commitment,
        "sealed_identity": sealed,
    }
    commit_ok(d, [c.tx("ccb-admin", "ecny", "open_wallet", args)])
    if load:
        commit_ok(d, [c.tx("ccb-admin", "ecny", "load", {"wallet_id": wallet_id, "amount": load})])


def open_contract_investor(
    c: Consortium, d: Driver, investor_id: str, account_id: str, owner: bytes, *, tolerance: int = 5
) -> None:
    """broker-a opens an investor for contract ``owner`` and a securities account for it."""
    commitment, sealed, _ = seal_identity(
        c.suite,
        identity_of(investor_id),
        c.accounts["broker-a-admin"].public_key,
        c.accounts["regulator"].public_key,
    )
    args = {
        "investor_id": investor_id,
        "kind": "institutional",
        "kyc_level": 3,
        "risk_tolerance": tolerance,
        "qualified": True,
        "address": owner,
        "identity_commitment": commitment,
        "sealed_identity": sealed,
    }
    commit_ok(d, [c.tx("broker-a-admin", "investors", "open_investor", args)])
    commit_ok(d, [open_account_tx(c, "broker-a-admin", account_id, investor_id)])


def freeze_tx(
    c: Consortium, d: Driver, freeze_id: str, account_id: str, *, code: str = "", amount: int = 0
) -> Transaction:
    args = {
        "freeze_id": freeze_id,
        "code": code,
        "account_id": account_id,
        "amount": amount,
        "reference": f"(2026) Hu 01 Zhi {freeze_id}",
        "expires_at_ms": next_block_time(d) + 365 * 86_400_000,
    }
    return c.tx("court-officer", "enforcement", "freeze", args)


def balance_fen(d: Driver, wallet_id: str) -> int:
    w = read(d, wallet_key(wallet_id), Wallet)
    assert w is not None
    return w.balance


def shares(d: Driver, code: str, account_id: str) -> int:
    h = read(d, holding_key(code, account_id), Holding)
    return 0 if h is None else h.balance


# ---------------------------------------------------------------------------------------------
# A probe contract and its world

PROBE_SOL = """
// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.4;
INTERFACES

contract Probe {
    event Before(uint256 n);
    event After(uint256 n);
    uint256 public attempts;

    function walletBalance(string calldata w) external view returns (uint256) {
        return CONSORTIA_ECNY.walletBalance(w);
    }
    function pay(string calldata src, string calldata dst, uint256 amount) external {
        emit Before(amount);
        CONSORTIA_ECNY.payFromWallet(src, dst, amount, "probe");
        emit After(amount);
    }
    function payThenRevert(string calldata src, string calldata dst, uint256 amount) external {
        CONSORTIA_ECNY.payFromWallet(src, dst, amount, "probe");
        revert("changed my mind");
    }
    function tryPay(string calldata src, string calldata dst, uint256 amount)
        external returns (bytes memory reason)
    {
        attempts += 1;
        try CONSORTIA_ECNY.payFromWallet(src, dst, amount, "probe") returns (bool) {
            return "";
        } catch (bytes memory r) {
            return r;
        }
    }
    function forge() external pure {
        revert NativeCallFailed("PER_PAYMENT_LIMIT_EXCEEDED", "forged by the contract");
    }
    function delegated(string calldata src, string calldata dst, uint256 amount)
        external returns (bool ok, bytes memory ret)
    {
        (ok, ret) = address(CONSORTIA_ECNY).delegatecall(
            abi.encodeCall(IConsortiaEcny.payFromWallet, (src, dst, amount, "d")));
    }
    function staticPay(string calldata src, string calldata dst, uint256 amount)
        external view returns (bool ok)
    {
        (ok, ) = address(CONSORTIA_ECNY).staticcall(
            abi.encodeCall(IConsortiaEcny.payFromWallet, (src, dst, amount, "s")));
    }
    function raw(address target, bytes calldata data) external returns (bool ok, bytes memory ret) {
        (ok, ret) = target.call(data);
    }
    function holding(string calldata code, string calldata account)
        external view returns (uint256, uint256)
    {
        return CONSORTIA_SECURITIES.holdingOf(code, account);
    }
    function moveShares(string calldata code, string calldata src, string calldata dst, uint256 n)
        external
    {
        CONSORTIA_SECURITIES.transferShares(code, src, dst, n);
    }
    function role(address who, string calldata r) external view returns (bool) {
        return CONSORTIA_REGISTRY.hasRole(who, r);
    }
    function escrow(string calldata id, string calldata src, string calldata dst, uint256 amount,
                    uint256 expiresAtMs) external {
        CONSORTIA_ECNY.createEscrow(id, src, dst, amount, "payer", 0, address(0), expiresAtMs, "e");
    }
    function release(string calldata id) external {
        CONSORTIA_ECNY.releaseEscrow(id);
    }
    function takeBack(string calldata id) external {
        CONSORTIA_ECNY.refundEscrow(id);
    }
}
"""


@cache
def probe() -> toolchain.CompiledContract:
    return toolchain.compile_solidity(PROBE_SOL.replace("INTERFACES", interfaces_source()), "Probe")


@dataclass
class World:
    c: Consortium
    d: Driver
    engine: Engine
    probe: bytes
    deployer: bytes


def probe_world(backend: str = "engine") -> World:
    """The cash world, the probe deployed, its wallet W-P (category 3: ¥5,000 a payment, ¥10,000
    a day, ¥20,000 cap) holding ¥15,000, its investor INV-P with account SA-P holding 10 000 EQ1
    (risk R4; SA-C's investor tolerates C3 only)."""
    c, d = cash_world()
    engine = make_engine(backend, c, d)
    deployer = c.addr("inv-a")
    address = engine.deploy(deployer, probe())
    open_contract_wallet(c, d, "W-P", address, category=3, load=1_500_000)
    open_contract_investor(c, d, "INV-P", "SA-P", address)
    listed(c, d, "EQ1", risk_level=4)
    commit_ok(d, [issue_tx(c, "EQ1", "SA-P", 10_000)])
    return World(c, d, engine, address, deployer)


@pytest.fixture(params=["engine", "module"])
def w(request: pytest.FixtureRequest) -> World:
    """The probe world, run by the engine directly and through the ``contracts`` module."""
    return probe_world(request.param)


RECORD_PREFIXES = (b"ecny/", b"securities/", b"investors/", b"enforcement/", b"evm/")


def records(d: Driver) -> dict[bytes, bytes]:
    """Every record a contract's native calls could change (not nonces or block metadata)."""
    return {k: v for k, v in d.state.tree.items() if k.startswith(RECORD_PREFIXES)}


def out(result: evm.ExecutionResult, *types: str) -> tuple[Any, ...]:
    assert result.ok, (result.code, result.message)
    return abi_decode(types, result.output)


def returned_bytes(output: bytes, index: int) -> bytes:
    """The ``bytes`` value at head ``index`` of ABI-encoded return data."""
    offset = int.from_bytes(output[32 * index : 32 * index + 32], "big")
    length = int.from_bytes(output[offset : offset + 32], "big")
    return output[offset + 32 : offset + 32 + length]


def native_failure(payload: bytes) -> tuple[str, str]:
    decoded = precompiles.decode_native_error(payload)
    assert decoded is not None, payload.hex()
    return decoded


# ---------------------------------------------------------------------------------------------
# Interfaces, addresses, codec


def test_interfaces_match_the_precompiles() -> None:
    """The Solidity and Vyper interfaces name exactly the functions the precompiles serve."""
    served = {
        "IConsortiaRegistry": precompiles.REGISTRY_FUNCTIONS,
        "IConsortiaEcny": precompiles.ECNY_FUNCTIONS,
        "IConsortiaSecurities": precompiles.SECURITIES_FUNCTIONS,
    }
    source = (INTERFACES / "IConsortia.sol").read_text()
    import vyper  # type: ignore[import-untyped]
    from vyper.compiler.settings import Settings  # type: ignore[import-untyped]

    for name, functions in served.items():
        expected = {(f.signature, f.outputs, f.mutates) for f in functions}
        sol = toolchain.compile_solidity(source, name).abi
        vyi = INTERFACES / f"{name}.vyi"
        vy = vyper.compile_code(
            vyi.read_text(),
            contract_path=str(vyi),
            output_formats=["abi"],
            settings=Settings(evm_version=toolchain.EVM_VERSION),
        )["abi"]
        for abi in (sol, vy):
            got = {
                (
                    f"{f['name']}({','.join(i['type'] for i in f['inputs'])})",
                    tuple(o["type"] for o in f["outputs"]),
                    f["stateMutability"] != "view",
                )
                for f in abi
                if f["type"] == "function"
            }
            assert got == expected, name
    # The addresses the Solidity file names are the engine's.
    for label, address in (
        ("CONSORTIA_REGISTRY", precompiles.REGISTRY_ADDRESS),
        ("CONSORTIA_ECNY", precompiles.ECNY_ADDRESS),
        ("CONSORTIA_SECURITIES", precompiles.SECURITIES_ADDRESS),
    ):
        tail = source[source.index(f"{label} =") :]
        literal = tail[tail.index("(0x") + 1 : tail.index(")")]
        assert bytes.fromhex(literal[2:]) == address
    assert precompiles.ECNY_ADDRESS.hex() == "00000000000000000000000000000000000c0002"


def test_codec_agrees_with_eth_abi() -> None:
    types = ["string", "uint256", "address", "bool", "string"]
    values = ["W-P", 2**256 - 1, bytes(range(20)), True, "付款 memo " * 9]
    assert abi_encode(types, values) == eth_abi_encode(types, values)
    assert abi_decode(types, abi_encode(types, values)) == tuple(values)
    error = precompiles.native_error("WALLET_FROZEN", "frozen")
    assert error[:4] == selector("NativeCallFailed(string,string)")
    assert precompiles.decode_native_error(error) == ("WALLET_FROZEN", "frozen")
    assert precompiles.decode_native_error(b"\x08\xc3\x79\xa0" + bytes(64)) is None


@pytest.mark.parametrize(
    "body",
    [
        b"",  # no arguments at all
        abi_encode(["uint256"], [32])[:31],  # short head
        abi_encode(["uint256", "uint256"], [2**64, 0]),  # string offset beyond the data
        abi_encode(["uint256", "uint256"], [32, 5000]),  # string longer than the data
        abi_encode(["uint256", "uint256", "uint256"], [32, 1, 0xFF << 248]),  # not UTF-8
    ],
)
def test_codec_refuses_malformed_calldata(body: bytes) -> None:
    with pytest.raises(precompiles.BadCalldataError):
        abi_decode(["string"], body)


# ---------------------------------------------------------------------------------------------
# e-CNY


def test_contract_pays_from_its_own_wallet(w: World) -> None:
    assert out(w.engine.call(w.deployer, w.probe, "walletBalance(string)", "W-P"), "uint256") == (
        1_500_000,
    )
    before_a = balance_fen(w.d, "W-A")
    result = w.engine.call(w.deployer, w.probe, "pay(string,string,uint256)", "W-P", "W-A", 400_000)
    assert result.ok, result.message
    assert balance_fen(w.d, "W-P") == 1_100_000
    assert balance_fen(w.d, "W-A") == before_a + 400_000
    # The native payment event sits between the contract's two LOGs, in execution order.
    kinds = [
        "log" if isinstance(e, evm.EvmLog) else f"{e.module}.{e.kind}"
        for e in result.events_in_order
    ]
    assert kinds == ["log", "ecny.payment", "log"]
    (payment,) = result.native_events
    assert isinstance(payment, Event)
    assert payment.attributes["payer"] == "W-P" and payment.attributes["amount_fen"] == 400_000
    assert result.receipt_code == ""


def test_payment_beyond_a_wallet_limit_reverts_with_the_module_code(w: World) -> None:
    """Done-when: a contract's attempt to pay beyond a wallet limit reverts with the right code
    and changes nothing."""
    before = records(w.d)
    result = w.engine.call(w.deployer, w.probe, "pay(string,string,uint256)", "W-P", "W-A", 500_001)
    assert result.status is evm.Status.REVERTED
    assert result.code == evm.CODE_REVERTED
    assert result.native_code == "PER_PAYMENT_LIMIT_EXCEEDED"
    assert result.receipt_code == "PER_PAYMENT_LIMIT_EXCEEDED"
    assert "500000" in result.native_message
    assert result.writes == {} and result.native_events == () and result.logs == ()
    assert records(w.d) == before
    # The same payment within the limit goes through: the refusal was the limit's.
    ok = w.engine.call(w.deployer, w.probe, "pay(string,string,uint256)", "W-P", "W-A", 500_000)
    assert ok.ok and balance_fen(w.d, "W-P") == 1_000_000


def test_daily_limit_and_balance_cap_apply_to_contracts(w: World) -> None:
    pay = "pay(string,string,uint256)"
    assert w.engine.call(w.deployer, w.probe, pay, "W-P", "W-A", 500_000).ok
    assert w.engine.call(w.deployer, w.probe, pay, "W-P", "W-A", 500_000).ok
    daily = w.engine.call(w.deployer, w.probe, pay, "W-P", "W-A", 1)
    assert daily.native_code == "DAILY_LIMIT_EXCEEDED" and daily.writes == {}


def test_receiving_wallet_cap_applies(w: World) -> None:
    # W-CIT1 is category 4: a ¥10,000 cap; it holds ¥9,000.
    commit_ok(
        w.d, [w.c.tx("ccb-admin", "ecny", "load", {"wallet_id": "W-CIT1", "amount": 900_000})]
    )
    pay = "pay(string,string,uint256)"
    capped = w.engine.call(w.deployer, w.probe, pay, "W-P", "W-CIT1", 100_001)
    assert capped.native_code == "BALANCE_CAP_EXCEEDED" and capped.writes == {}
    assert w.engine.call(w.deployer, w.probe, pay, "W-P", "W-CIT1", 100_000).ok
    assert balance_fen(w.d, "W-CIT1") == 1_000_000


def test_frozen_wallet_pays_nothing(w: World) -> None:
    commit_ok(
        w.d,
        [w.c.tx("regulator", "ecny", "freeze_wallet", {"wallet_id": "W-P", "reference": "r"})],
    )
    result = w.engine.call(w.deployer, w.probe, "pay(string,string,uint256)", "W-P", "W-A", 10)
    assert result.native_code == "WALLET_FROZEN" and result.writes == {}
    assert balance_fen(w.d, "W-P") == 1_500_000


def test_contract_spends_only_its_own_wallets(w: World) -> None:
    result = w.engine.call(w.deployer, w.probe, "pay(string,string,uint256)", "W-A", "W-B", 10)
    assert result.native_code == "NOT_AUTHORIZED" and result.writes == {}
    unknown = w.engine.call(w.deployer, w.probe, "walletBalance(string)", "W-NONE")
    assert unknown.native_code == "UNKNOWN_WALLET"


def test_revert_after_a_native_call_undoes_it(w: World) -> None:
    result = w.engine.call(
        w.deployer, w.probe, "payThenRevert(string,string,uint256)", "W-P", "W-A", 100
    )
    assert result.code == evm.CODE_REVERTED and result.native_code == ""
    assert "changed my mind" in result.message
    assert result.writes == {} and balance_fen(w.d, "W-P") == 1_500_000


def test_contract_may_catch_a_native_failure(w: World) -> None:
    """A caught failure undoes only the failed native call; the contract's own writes stay."""
    result = w.engine.call(
        w.deployer, w.probe, "tryPay(string,string,uint256)", "W-P", "W-A", 600_000
    )
    assert result.ok and result.native_code == ""
    assert native_failure(returned_bytes(result.output, 0)) == (
        "PER_PAYMENT_LIMIT_EXCEEDED",
        "600000 fen exceeds wallet 'W-P''s per-payment limit of 500000 fen",
    )
    assert result.writes
    assert all(key.startswith(keys.STORAGE_PREFIX) for key in result.writes)  # `attempts` only
    assert result.native_events == () and balance_fen(w.d, "W-P") == 1_500_000


def test_forged_native_error_is_not_reported_as_native(w: World) -> None:
    result = w.engine.call(w.deployer, w.probe, "forge()")
    assert result.code == evm.CODE_REVERTED
    assert result.native_code == "" and result.receipt_code == evm.CODE_REVERTED


def test_delegatecall_and_staticcall_cannot_move_money(w: World) -> None:
    args = ("W-P", "W-A", 100)
    delegated = w.engine.call(w.deployer, w.probe, "delegated(string,string,uint256)", *args)
    assert out(delegated, "bool", "uint256")[0] is False
    assert native_failure(returned_bytes(delegated.output, 1))[0] == "NOT_AUTHORIZED"
    static = w.engine.call(w.deployer, w.probe, "staticPay(string,string,uint256)", *args)
    assert out(static, "bool") == (False,)
    assert balance_fen(w.d, "W-P") == 1_500_000


def test_bad_calldata_and_unknown_functions_revert(w: World) -> None:
    raw = "raw(address,bytes)"
    cases = {
        "BAD_ARGUMENTS": selector("walletBalance(string)") + bytes(10),
        "UNKNOWN_FUNCTION": selector("mint(uint256)") + bytes(32),
    }
    for code, data in cases.items():
        result = w.engine.execute(
            w.deployer,
            w.probe,
            selector(raw) + eth_abi_encode(["address", "bytes"], [precompiles.ECNY_ADDRESS, data]),
        )
        assert out(result, "bool", "uint256")[0] is False
        assert native_failure(returned_bytes(result.output, 1))[0] == code


def test_without_a_bridge_native_calls_revert(w: World) -> None:
    ctx = w.engine.context(w.deployer)
    block = evm.BlockContext(ctx.chain_id, ctx.height, ctx.time_ms, ctx.parent_hash)
    message = evm.EvmMessage(
        w.deployer, w.probe, calldata("walletBalance(string)", "W-P"), GAS, static=True
    )
    result = evm.execute(ctx, message, block)
    assert result.code == evm.CODE_REVERTED and result.native_code == ""
    assert native_failure(result.output)[0] == "NATIVE_UNAVAILABLE"


def test_read_only_query_reads_native_state(w: World) -> None:
    result = w.engine.execute(
        w.deployer, w.probe, calldata("holding(string,string)", "EQ1", "SA-P"), static=True
    )
    assert out(result, "uint256", "uint256") == (10_000, 10_000)
    static_pay = w.engine.execute(
        w.deployer, w.probe, calldata("pay(string,string,uint256)", "W-P", "W-A", 1), static=True
    )
    assert static_pay.status is evm.Status.FAULT and balance_fen(w.d, "W-P") == 1_500_000


def test_precompile_gas_is_charged(w: World) -> None:
    cheap = w.engine.call(w.deployer, w.probe, "walletBalance(string)", "W-P")
    assert cheap.gas_used > precompiles.GAS_READ
    starved = w.engine.execute(
        w.deployer, w.probe, calldata("pay(string,string,uint256)", "W-P", "W-A", 1), gas=60_000
    )
    assert starved.status in (evm.Status.OUT_OF_GAS, evm.Status.REVERTED)
    assert starved.writes == {} and balance_fen(w.d, "W-P") == 1_500_000


def test_contract_wallet_needs_a_contract_or_an_account(w: World) -> None:
    """Only a deployed contract's address (or a registry account) may own a wallet."""
    commitment, sealed, _ = seal_identity(
        w.c.suite,
        wallet_identity("x"),
        w.c.accounts["ccb-admin"].public_key,
        w.c.accounts["regulator"].public_key,
    )
    args = {
        "wallet_id": "W-NOBODY",
        "owner": keys.create_address(w.deployer, 99),  # no contract there
        "kind": "corporate",
        "category": 2,
        "identity_commitment": commitment,
        "sealed_identity": sealed,
    }
    p = w.d.commit([w.c.tx("ccb-admin", "ecny", "open_wallet", args)])
    assert [r.code for r in p.receipts] == ["INVALID_ARGUMENT"]


def test_contract_escrows_from_its_own_wallet(w: World) -> None:
    """A conditional payment by the contract: created, released by it as the payer; another
    expires unreleased and the contract takes it back."""
    expires = next_block_time(w.d) + 86_400_000
    create = "escrow(string,string,string,uint256,uint256)"
    assert w.engine.call(w.deployer, w.probe, create, "E-1", "W-P", "W-A", 200_000, expires).ok
    assert w.engine.call(w.deployer, w.probe, create, "E-2", "W-P", "W-A", 300_000, expires).ok
    assert balance_fen(w.d, "W-P") == 1_000_000
    over = w.engine.call(w.deployer, w.probe, create, "E-3", "W-P", "W-A", 500_001, expires)
    assert over.native_code == "PER_PAYMENT_LIMIT_EXCEEDED" and over.writes == {}
    a_before = balance_fen(w.d, "W-A")
    released = w.engine.call(w.deployer, w.probe, "release(string)", "E-1")
    assert released.ok and balance_fen(w.d, "W-A") == a_before + 200_000
    early = w.engine.call(w.deployer, w.probe, "takeBack(string)", "E-2")
    assert early.native_code == "ESCROW_NOT_EXPIRED" and early.writes == {}
    commit_at(w.d, expires, [])
    assert w.engine.call(w.deployer, w.probe, "takeBack(string)", "E-2").ok
    assert balance_fen(w.d, "W-P") == 1_300_000
    again = w.engine.call(w.deployer, w.probe, "takeBack(string)", "E-2")
    assert again.native_code == "ESCROW_CLOSED"


def test_frozen_contract_acts_on_nothing_even_through_another(w: World) -> None:
    """A frozen contract cannot be called (the module checks the target), and when another
    contract calls it, its native calls revert with CONTRACT_FROZEN."""
    relay = w.engine.deploy(w.deployer, probe())
    freeze = {"address": w.probe, "reason": "court order (2026) 7"}
    commit_ok(w.d, [w.c.tx("regulator", "contracts", "freeze", freeze)])
    inner = calldata("pay(string,string,uint256)", "W-P", "W-A", 10)
    result = w.engine.execute(
        w.deployer,
        relay,
        selector("raw(address,bytes)") + eth_abi_encode(["address", "bytes"], [w.probe, inner]),
    )
    assert out(result, "bool", "uint256")[0] is False
    assert native_failure(returned_bytes(result.output, 1))[0] == "CONTRACT_FROZEN"
    assert balance_fen(w.d, "W-P") == 1_500_000
    commit_ok(w.d, [w.c.tx("regulator", "contracts", "unfreeze", {"address": w.probe})])
    again = w.engine.execute(
        w.deployer,
        relay,
        selector("raw(address,bytes)") + eth_abi_encode(["address", "bytes"], [w.probe, inner]),
    )
    assert out(again, "bool", "uint256")[0] is True
    assert balance_fen(w.d, "W-P") == 1_499_990


# ---------------------------------------------------------------------------------------------
# Securities and registry


def test_contract_moves_shares_it_owns(w: World) -> None:
    move = "moveShares(string,string,string,uint256)"
    result = w.engine.call(w.deployer, w.probe, move, "EQ1", "SA-P", "SA-A", 2_500)
    assert result.ok, result.message
    assert shares(w.d, "EQ1", "SA-P") == 7_500 and shares(w.d, "EQ1", "SA-A") == 2_500
    assert [f"{e.module}.{e.kind}" for e in result.native_events][-1] == "securities.transferred"
    assert out(
        w.engine.call(w.deployer, w.probe, "holding(string,string)", "EQ1", "SA-P"),
        "uint256",
        "uint256",
    ) == (7_500, 7_500)
    stolen = w.engine.call(w.deployer, w.probe, move, "EQ1", "SA-A", "SA-P", 1)
    assert stolen.native_code == "NOT_AUTHORIZED" and stolen.writes == {}
    # Nobody moves the contract's shares but the contract: not even the broker of its account.
    p = w.d.commit([transfer_tx(w.c, "EQ1", "SA-P", "SA-A", 1, who="broker-a-admin")])
    assert [r.code for r in p.receipts] == ["NOT_AUTHORIZED"]
    assert shares(w.d, "EQ1", "SA-P") == 7_500
    unsuitable = w.engine.call(w.deployer, w.probe, move, "EQ1", "SA-P", "SA-C", 1)
    assert unsuitable.native_code == "SUITABILITY_MISMATCH" and unsuitable.writes == {}
    unknown = w.engine.call(w.deployer, w.probe, "holding(string,string)", "NOPE", "SA-P")
    assert unknown.native_code == "UNKNOWN_SECURITY"


def test_moving_frozen_shares_reverts_with_the_module_code(w: World) -> None:
    """Done-when: a contract's attempt to move frozen shares reverts with the right code and
    changes nothing — an amount frozen in the holding, then the whole account frozen."""
    move = "moveShares(string,string,string,uint256)"
    commit_ok(w.d, [freeze_tx(w.c, w.d, "F-1", "SA-P", code="EQ1", amount=8_000)])
    before = records(w.d)
    over = w.engine.call(w.deployer, w.probe, move, "EQ1", "SA-P", "SA-A", 2_001)
    assert over.native_code == "INSUFFICIENT_FREE_BALANCE" and over.writes == {}
    assert records(w.d) == before
    assert w.engine.call(w.deployer, w.probe, move, "EQ1", "SA-P", "SA-A", 2_000).ok
    commit_ok(w.d, [freeze_tx(w.c, w.d, "F-2", "SA-P")])
    before = records(w.d)
    frozen = w.engine.call(w.deployer, w.probe, move, "EQ1", "SA-P", "SA-A", 1)
    assert frozen.native_code == "ACCOUNT_FROZEN" and frozen.receipt_code == "ACCOUNT_FROZEN"
    assert frozen.writes == {} and records(w.d) == before
    assert shares(w.d, "EQ1", "SA-P") == 8_000


def test_has_role(w: World) -> None:
    role = "role(address,string)"
    regulator = w.c.addr("regulator")
    assert out(w.engine.call(w.deployer, w.probe, role, regulator, "regulator"), "bool") == (True,)
    assert out(w.engine.call(w.deployer, w.probe, role, w.deployer, "regulator"), "bool") == (
        False,
    )
    assert out(w.engine.call(w.deployer, w.probe, role, bytes(20), "regulator"), "bool") == (False,)


def test_same_state_same_result(w: World) -> None:
    """Two runs of the same native-calling message over the same state agree byte for byte."""
    args = ("W-P", "W-A", 123)
    ctx = w.engine.context(w.deployer)
    block = evm.BlockContext(ctx.chain_id, ctx.height, ctx.time_ms, ctx.parent_hash)
    message = evm.EvmMessage(
        w.deployer, w.probe, calldata("pay(string,string,uint256)", *args), GAS
    )
    first = evm.execute(ctx, message, block, native=NativeBridge(ctx))
    second = evm.execute(ctx, message, block, native=NativeBridge(ctx))
    assert first.ok and first == second
