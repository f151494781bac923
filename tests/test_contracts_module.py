"""The ``contracts`` module inside ``apply_block``: lifecycle, gas limits, events, determinism.

Real Solidity contracts compiled here (once per module) run through real blocks proposed and
re-applied by a second replica (``apply_block``), which must compute the same state root.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest
from eth_hash.auto import keccak

from consortia.contracts import evm, keys, toolchain
from consortia.execution.apply import Proposal, apply_block
from consortia.execution.genesis import genesis_state
from consortia.execution.state import ChainState
from consortia.ledger.types import Receipt, Transaction, TxStatus
from consortia.modules import contracts, governance
from consortia.modules.investors import seal_identity
from consortia.modules.registry import account_key
from tests.chainkit import Consortium, Driver, make_consortium
from tests.ecnykit import cash, issue_tx, load_tx, wallet_identity
from tests.govkit import approvals_needed, voters

BOMB_SOL = """
// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.0;

contract Bomb {
    uint256 public count;
    event Bumped(address indexed by, uint256 count);

    constructor(uint256 start) {
        count = start;
    }

    function bump() external returns (uint256) {
        count += 1;
        emit Bumped(msg.sender, count);
        return count;
    }

    function version() external pure returns (uint256) {
        return 1;
    }

    function spin() external pure returns (uint256 i) {
        while (true) {
            unchecked { i += 1; }
        }
    }

    function recurse(uint256 n) external returns (uint256) {
        return this.recurse(n + 1);
    }

    function allocate(uint256 n) external pure returns (uint256) {
        uint256[] memory a = new uint256[](n);
        return a.length;
    }
}

// The next version: the same storage layout, a different bump. Its constructor writes storage,
// which an upgrade must discard (the old storage stays).
contract BombV2 {
    uint256 public count;
    event Bumped(address indexed by, uint256 count);

    constructor(uint256 start) {
        count = start;
    }

    function bump() external returns (uint256) {
        count += 10;
        emit Bumped(msg.sender, count);
        return count;
    }

    function version() external pure returns (uint256) {
        return 2;
    }
}
"""

# Calls the native modules through their precompiles (registry 0x…0c0001, e-CNY 0x…0c0002).
NATIVE_SOL = """
// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.0;

interface IRegistry {
    function hasRole(address account, string calldata role) external view returns (bool);
}

interface IEcny {
    function payFromWallet(
        string calldata fromWallet,
        string calldata toWallet,
        uint256 amountFen,
        string calldata memo
    ) external returns (bool);
}

contract Native {
    event Checked(bool regulator);

    function check(address who) external returns (bool) {
        bool answer = IRegistry(address(0xc0001)).hasRole(who, "regulator");
        emit Checked(answer);
        return answer;
    }

    function payOwn(uint256 amountFen) external {
        emit Checked(false);
        IEcny(address(0xc0002)).payFromWallet("W-K", "W-X", amountFen, "from a contract");
        emit Checked(true);
    }

    function payUnknown() external {
        IEcny(address(0xc0002)).payFromWallet("W-NONE", "W-X", 1, "from a contract");
    }
}
"""

DEPLOYER = "broker-a-admin"  # an org_admin of broker-a
GAS = 1_000_000
BOMB_GAS = 300_000


@dataclass(frozen=True)
class Compiled:
    v1: toolchain.CompiledContract
    v2: toolchain.CompiledContract
    native: toolchain.CompiledContract


@pytest.fixture(scope="module")
def compiled() -> Compiled:
    return Compiled(
        toolchain.compile_solidity(BOMB_SOL, "Bomb"),
        toolchain.compile_solidity(BOMB_SOL, "BombV2"),
        toolchain.compile_solidity(NATIVE_SOL, "Native"),
    )


def word(value: int | bytes) -> bytes:
    if isinstance(value, bytes):
        return value.rjust(32, b"\0")
    return value.to_bytes(32, "big")


def call_data(signature: str, *args: int | bytes) -> bytes:
    return keccak(signature.encode())[:4] + b"".join(word(a) for a in args)


class Replicated:
    """A proposer (``Driver``) and a second replica that re-applies every committed block with
    ``apply_block``: the block is only accepted if the replica computes the same roots."""

    def __init__(self, c: Consortium) -> None:
        self.c = c
        self.d = Driver(c)
        self.replica: ChainState = genesis_state(c.genesis)
        self.roots: list[bytes] = []

    def commit(self, txs: list[Transaction]) -> Proposal:
        p = self.d.commit(txs)
        self.replica, receipts = apply_block(self.replica, p.block)
        assert receipts == p.receipts
        assert self.replica.state_root == p.state.state_root == p.block.header.state_root
        self.roots.append(p.state.state_root)
        return p

    def one(self, tx: Transaction) -> Receipt:
        (receipt,) = self.commit([tx]).receipts
        return receipt

    def ok(self, tx: Transaction) -> Receipt:
        receipt = self.one(tx)
        assert receipt.status == TxStatus.OK, (receipt.code, receipt.message)
        return receipt

    def tx(self, who: str, module: str, method: str, args: dict[str, Any]) -> Transaction:
        return self.c.tx(who, module, method, args)

    def get(self, key: bytes) -> bytes | None:
        return self.d.state.tree.get(key)

    def query(self, address: bytes, signature: str, *args: int) -> int:
        state = self.d.state
        result = contracts.query(
            state.tree,
            chain_id=state.chain_id,
            height=state.height + 1,
            time_ms=state.last_time_ms,
            parent_hash=state.last_block_hash,
            address=address,
            data=call_data(signature, *args),
        )
        assert result.ok, (result.code, result.message)
        return int.from_bytes(result.output, "big")


def chain(params: dict[str, Any] | None = None, deployer_role: bool = False) -> Replicated:
    c = make_consortium()
    genesis = c.genesis
    if params:
        genesis = replace(genesis, params=params)
    if deployer_role:
        genesis = replace(
            genesis,
            accounts=tuple(
                replace(a, roles=(*a.roles, "contract_deployer")) if a.name == DEPLOYER else a
                for a in genesis.accounts
            ),
        )
    c.genesis = genesis
    return Replicated(c)


def deploy_tx(r: Replicated, code: bytes, *, start: int = 0, gas: int = GAS) -> Transaction:
    abi = '[{"type":"function","name":"bump"}]'
    args = {"code": code, "args": word(start), "gas_limit": gas, "abi": abi}
    return r.tx(DEPLOYER, "contracts", "deploy", args)


def call_tx(
    r: Replicated, address: bytes, data: bytes, *, gas: int = GAS, who: str = DEPLOYER
) -> Transaction:
    return r.tx(who, "contracts", "call", {"address": address, "data": data, "gas_limit": gas})


def pass_proposal(r: Replicated, method: str, args: dict[str, Any]) -> int:
    """Open a governance proposal and approve it to the threshold; return its id."""
    votes = voters()
    need = approvals_needed(len(votes))
    opened = r.ok(r.tx(votes[0], "governance", method, args))
    (pid,) = [e.attributes["proposal_id"] for e in opened.events if e.kind == "proposal_opened"]
    for who in votes[1:need]:
        r.ok(r.tx(who, "governance", "approve", {"proposal_id": pid}))
    raw = r.get(governance.proposal_key(pid))
    assert raw is not None
    return int(pid)


def approve_code(r: Replicated, code: bytes) -> None:
    subject = contracts.code_hash(r.c.suite, code)
    args = {"action": "approve_code", "subject": subject, "reason": "reviewed"}
    pass_proposal(r, "propose_contract", args)
    assert contracts.is_approved(r.d.state.tree, subject)


def deployed(r: Replicated, code: bytes, *, start: int = 0) -> bytes:
    nonce = r.c.nonces.get(r.c.addr(DEPLOYER), 0)
    receipt = r.ok(deploy_tx(r, code, start=start))
    address = keys.create_address(r.c.addr(DEPLOYER), nonce)
    (event,) = [e for e in receipt.events if e.kind == "deployed"]
    assert event.attributes["address"] == address
    return address


# ---------------------------------------------------------------------------------------------
# Deployment needs an approval


def test_unapproved_code_is_refused_and_changes_nothing_but_the_nonce(compiled: Compiled) -> None:
    r = chain()
    p = r.commit([deploy_tx(r, compiled.v1.init_code)])
    (receipt,) = p.receipts
    assert receipt.status == TxStatus.FAILED and receipt.code == "CODE_NOT_APPROVED"
    assert set(p.writes) == {account_key(r.c.addr(DEPLOYER))}  # the nonce only
    address = keys.create_address(r.c.addr(DEPLOYER), 0)
    assert r.get(keys.code_key(address)) is None


def test_governance_approval_then_deploy_and_call_with_events_in_receipts(
    compiled: Compiled,
) -> None:
    r = chain()
    approve_code(r, compiled.v1.init_code)
    address = deployed(r, compiled.v1.init_code, start=5)
    info = r.get(contracts.info_key(address))
    assert info is not None and r.get(contracts.abi_key(address)) is not None
    assert r.query(address, "count()") == 5

    receipt = r.ok(call_tx(r, address, call_data("bump()")))
    log, called = receipt.events
    assert (log.module, log.kind) == ("contracts", "log")
    assert log.attributes["address"] == address
    assert log.attributes["topics"] == [
        keccak(b"Bumped(address,uint256)"),
        word(r.c.addr(DEPLOYER)),
    ]
    assert log.attributes["data"] == word(6)
    assert called.kind == "called" and called.attributes["output"] == word(6)
    assert 21_000 < called.attributes["gas_used"] < GAS
    assert r.query(address, "count()") == 6

    # A revert is a FAILED receipt with the engine's code, and the storage stays.
    failed = r.one(call_tx(r, address, call_data("nonexistent()")))
    assert failed.status == TxStatus.FAILED and failed.code == evm.CODE_REVERTED
    assert r.query(address, "count()") == 6


def test_deployer_role_deploys_without_approval_and_is_granted_only_by_governance(
    compiled: Compiled,
) -> None:
    r = chain(deployer_role=True)
    address = deployed(r, compiled.v1.init_code, start=1)
    assert r.query(address, "version()") == 1
    assert not contracts.is_approved(
        r.d.state.tree, contracts.code_hash(r.c.suite, compiled.v1.init_code)
    )
    # No single admin grants the role, not even the consortium admin.
    target = r.c.addr("broker-b-admin")
    grant = {"address": target, "roles": ["broker", "contract_deployer", "org_admin"]}
    refused = r.one(r.tx("exchange-admin", "registry", "set_roles", grant))
    assert refused.status == TxStatus.FAILED and refused.code == "INVALID_ROLE"
    # Governance does.
    args = {"address": target, "role": "contract_deployer", "reason": "deploys contracts"}
    pass_proposal(r, "propose_appoint_role", args)
    nonce = r.c.nonces.get(target, 0)
    done = r.ok(
        r.tx(
            "broker-b-admin",
            "contracts",
            "deploy",
            {"code": compiled.v2.init_code, "args": word(0), "gas_limit": GAS, "abi": ""},
        )
    )
    assert done.events[-1].attributes["address"] == keys.create_address(target, nonce)


def test_native_calls_run_in_the_transaction_and_their_failures_keep_the_native_code(
    compiled: Compiled,
) -> None:
    r = chain(deployer_role=True)
    code = compiled.native.init_code
    nonce = r.c.nonces.get(r.c.addr(DEPLOYER), 0)
    r.ok(
        r.tx(
            DEPLOYER,
            "contracts",
            "deploy",
            {"code": code, "args": b"", "gas_limit": GAS, "abi": ""},
        )
    )
    address = keys.create_address(r.c.addr(DEPLOYER), nonce)
    checked = r.ok(call_tx(r, address, call_data("check(address)", r.c.addr("regulator"))))
    assert checked.events[0].attributes["data"] == word(1)  # Checked(true)
    assert checked.events[-1].attributes["output"] == word(1)
    # The contract's own wallet W-K pays W-X: the e-CNY events sit between the LOGs around it.
    commitment, sealed, _ = seal_identity(
        r.c.suite,
        wallet_identity("contract"),
        r.c.accounts["ccb-admin"].public_key,
        r.c.accounts["regulator"].public_key,
    )
    wallets = [
        ("W-K", address, "corporate", 1),
        ("W-X", r.c.addr("ccb-custodian"), "corporate", 1),
    ]
    r.commit([issue_tx(r.c, "bank-ccb", 1_000_000)])
    for wallet_id, owner, kind, category in wallets:
        args = {
            "wallet_id": wallet_id,
            "owner": owner,
            "kind": kind,
            "category": category,
            "identity_commitment": commitment,
            "sealed_identity": sealed,
        }
        r.ok(r.tx("ccb-admin", "ecny", "open_wallet", args))
    r.ok(load_tx(r.c, "ccb-admin", "W-K", 500))
    paid = r.ok(call_tx(r, address, call_data("payOwn(uint256)", 120)))
    kinds = [(e.module, e.kind) for e in paid.events]
    assert kinds[0] == kinds[-2] == ("contracts", "log") and kinds[-1] == ("contracts", "called")
    assert all(module == "ecny" for module, _ in kinds[1:-2]) and len(kinds) > 3, kinds
    assert cash(r.d, "W-K") == 380 and cash(r.d, "W-X") == 120
    # Beyond the wallet's balance: the e-CNY rule fails the call with its own code, nothing moves.
    broke = r.one(call_tx(r, address, call_data("payOwn(uint256)", 1_000)))
    assert broke.status == TxStatus.FAILED and broke.code.startswith("INSUFFICIENT"), broke
    assert cash(r.d, "W-K") == 380
    failed = r.one(call_tx(r, address, call_data("payUnknown()")))
    assert failed.status == TxStatus.FAILED and failed.code == "UNKNOWN_WALLET", failed


# ---------------------------------------------------------------------------------------------
# Freeze, unfreeze, upgrade


def test_regulator_freezes_and_unfreezes_a_contract(compiled: Compiled) -> None:
    r = chain(deployer_role=True)
    address = deployed(r, compiled.v1.init_code)
    args = {"address": address, "reason": "under investigation"}
    refused = r.one(r.tx(DEPLOYER, "contracts", "freeze", args))
    assert refused.code == "NOT_AUTHORIZED"
    frozen = r.ok(r.tx("regulator", "contracts", "freeze", args))
    assert [e.kind for e in frozen.events] == ["frozen"]
    blocked = r.one(call_tx(r, address, call_data("bump()")))
    assert blocked.status == TxStatus.FAILED and blocked.code == "CONTRACT_FROZEN"
    assert r.query(address, "count()") == 0  # still readable
    again = r.one(r.tx("court-officer", "contracts", "freeze", args))
    assert again.code == "CONTRACT_FROZEN"
    unfrozen = r.ok(r.tx("court-officer", "contracts", "unfreeze", {"address": address}))
    assert [e.kind for e in unfrozen.events] == ["unfrozen"]
    r.ok(call_tx(r, address, call_data("bump()")))
    assert r.query(address, "count()") == 1
    nothing = r.one(r.tx("regulator", "contracts", "freeze", {**args, "address": bytes(20)}))
    assert nothing.code == "UNKNOWN_CONTRACT"


def test_governance_freezes_and_unfreezes_a_contract(compiled: Compiled) -> None:
    r = chain(deployer_role=True)
    address = deployed(r, compiled.v1.init_code)
    freeze = {"action": "freeze_contract", "subject": address, "reason": "court order pending"}
    pid = pass_proposal(r, "propose_contract", freeze)
    record = r.get(contracts.frozen_key(address))
    assert record is not None
    blocked = r.one(call_tx(r, address, call_data("bump()")))
    assert blocked.code == "CONTRACT_FROZEN"
    unfreeze = {"action": "unfreeze_contract", "subject": address, "reason": "cleared"}
    assert pass_proposal(r, "propose_contract", unfreeze) == pid + 1
    assert r.get(contracts.frozen_key(address)) is None
    r.ok(call_tx(r, address, call_data("bump()")))
    # A proposal that could never apply is refused when opened.
    bad = {"action": "unfreeze_contract", "subject": address, "reason": "again"}
    refused = r.one(r.tx(voters()[0], "governance", "propose_contract", bad))
    assert refused.code == "CONTRACT_NOT_FROZEN"


def test_upgrade_keeps_the_storage_and_needs_the_deployers_org_and_an_approval(
    compiled: Compiled,
) -> None:
    r = chain()
    approve_code(r, compiled.v1.init_code)
    address = deployed(r, compiled.v1.init_code, start=3)
    r.ok(call_tx(r, address, call_data("bump()")))
    assert r.query(address, "count()") == 4
    upgrade = {
        "address": address,
        "code": compiled.v2.init_code,
        "args": word(99),
        "gas_limit": GAS,
    }
    unapproved = r.one(r.tx(DEPLOYER, "contracts", "upgrade", upgrade))
    assert unapproved.code == "CODE_NOT_APPROVED"
    approve_code(r, compiled.v2.init_code)
    other_org = r.one(r.tx("broker-b-admin", "contracts", "upgrade", upgrade))
    assert other_org.code == "NOT_AUTHORIZED"
    before = r.get(keys.storage_key(address, 0))
    receipt = r.ok(r.tx(DEPLOYER, "contracts", "upgrade", upgrade))
    (event,) = receipt.events
    assert event.kind == "upgraded" and event.attributes["version"] == 2
    assert r.get(keys.storage_key(address, 0)) == before  # the constructor's 99 is discarded
    assert r.query(address, "version()") == 2
    assert r.query(address, "count()") == 4
    r.ok(call_tx(r, address, call_data("bump()")))
    assert r.query(address, "count()") == 14
    account = r.get(keys.account_key(address))
    code = r.get(keys.code_key(address))
    assert account is not None and code == compiled.v2.runtime_code
    # A frozen contract is not upgraded.
    r.ok(r.tx("regulator", "contracts", "freeze", {"address": address, "reason": "hold"}))
    frozen = r.one(r.tx(DEPLOYER, "contracts", "upgrade", upgrade))
    assert frozen.code == "CONTRACT_FROZEN"


# ---------------------------------------------------------------------------------------------
# Gas


def test_gas_bombs_stop_at_their_limit_and_the_block_commits_with_the_others(
    compiled: Compiled,
) -> None:
    r = chain(deployer_role=True)
    address = deployed(r, compiled.v1.init_code)
    org = {"org_id": "fund-x", "name": "Xin Fund", "kind": "fund_manager"}
    txs = [
        call_tx(r, address, call_data("spin()"), gas=BOMB_GAS),
        r.tx("exchange-admin", "registry", "register_org", org),
        call_tx(r, address, call_data("recurse(uint256)", 0), gas=BOMB_GAS),
        call_tx(r, address, call_data("allocate(uint256)", 10**9), gas=BOMB_GAS),
        call_tx(r, address, call_data("bump()")),
    ]
    p = r.commit(txs)
    loop, org_tx, recursion, memory, bump = p.receipts
    assert loop.code == evm.CODE_OUT_OF_GAS
    assert memory.code == evm.CODE_OUT_OF_GAS
    # Each level of the recursion turns the failure below into a revert, down to the gas.
    assert recursion.code == evm.CODE_REVERTED and evm.CODE_OUT_OF_GAS in recursion.message
    assert org_tx.status == TxStatus.OK and bump.status == TxStatus.OK
    assert r.get(b"registry/org/fund-x") is not None
    assert r.query(address, "count()") == 1


def test_a_transaction_beyond_the_blocks_remaining_gas_fails_alone() -> None:
    r = chain(params={"contracts_max_block_gas": 500_000}, deployer_role=True)
    # A raw contract whose runtime loops forever: JUMPDEST PUSH1 0 JUMP.
    runtime = bytes.fromhex("5b600056")
    init = bytes([0x60, len(runtime), 0x60, 12, 0x60, 0, 0x39, 0x60, len(runtime), 0x60, 0, 0xF3])
    r.commit([])
    nonce = r.c.nonces.get(r.c.addr(DEPLOYER), 0)
    r.ok(
        r.tx(
            DEPLOYER,
            "contracts",
            "deploy",
            {"code": init + runtime, "args": b"", "gas_limit": 100_000, "abi": ""},
        )
    )
    loop = keys.create_address(r.c.addr(DEPLOYER), nonce)
    txs = [
        call_tx(r, loop, b"", gas=300_000),  # uses all 300 000
        call_tx(r, loop, b"", gas=300_000),  # only 200 000 left in the block
        call_tx(r, loop, b"", gas=150_000),  # fits
        call_tx(r, loop, b"", gas=60_000),  # 50 000 left
    ]
    first, second, third, fourth = r.commit(txs).receipts
    assert first.code == third.code == evm.CODE_OUT_OF_GAS
    assert second.code == fourth.code == "BLOCK_GAS_EXHAUSTED"
    # The next block has its full budget again.
    (again,) = r.commit([call_tx(r, loop, b"", gas=300_000)]).receipts
    assert again.code == evm.CODE_OUT_OF_GAS


def test_per_transaction_gas_limit_is_a_governance_parameter(compiled: Compiled) -> None:
    r = chain(deployer_role=True)
    address = deployed(r, compiled.v1.init_code)
    over = r.one(call_tx(r, address, call_data("bump()"), gas=contracts.DEFAULT_MAX_TX_GAS + 1))
    assert over.code == "TX_GAS_LIMIT_EXCEEDED"
    args = {"name": "contracts.max_tx_gas", "value": 50_000, "reason": "tighter"}
    pass_proposal(r, "propose_set_param", args)
    refused = r.one(call_tx(r, address, call_data("bump()"), gas=60_000))
    assert refused.code == "TX_GAS_LIMIT_EXCEEDED"
    r.ok(call_tx(r, address, call_data("bump()"), gas=50_000))
    too_low = {"name": "contracts.max_tx_gas", "value": 20_999, "reason": "too low"}
    bad = r.one(r.tx(voters()[0], "governance", "propose_set_param", too_low))
    assert bad.code == "INVALID_PROPOSAL"
    assert set(governance.CONTRACT_GAS_PARAMS) == {
        contracts.MAX_TX_GAS_PARAM,
        contracts.MAX_BLOCK_GAS_PARAM,
    }
    for name in governance.CONTRACT_GAS_PARAMS:
        assert governance.PARAMS[name] == (contracts.MIN_GAS, contracts.MAX_GAS_PARAM)
    below = r.one(call_tx(r, address, call_data("bump()"), gas=20_999))
    assert below.code == "INVALID_CONTRACT_ARGUMENT"


def test_same_blocks_give_the_same_state_root_on_an_independent_replay(
    compiled: Compiled,
) -> None:
    base = chain(deployer_role=True)

    def run() -> list[bytes]:
        r = Replicated(replace(base.c, nonces={}))  # the same keys and genesis, from height 0
        address = deployed(r, compiled.v1.init_code)
        r.commit(
            [
                call_tx(r, address, call_data("bump()")),
                call_tx(r, address, call_data("spin()"), gas=BOMB_GAS),
                call_tx(r, address, call_data("bump()")),
            ]
        )
        return r.roots

    first, second = run(), run()
    assert first == second and len(first) == 2


def test_genesis_seeds_the_gas_parameters() -> None:
    r = chain(params={"contracts_max_tx_gas": 40_000, "contracts_max_block_gas": 90_000})
    for name, value in (
        (contracts.MAX_TX_GAS_PARAM, 40_000),
        (contracts.MAX_BLOCK_GAS_PARAM, 90_000),
    ):
        raw = r.get(governance.param_key(name))
        assert raw is not None and governance.ParamValue(value) == decode_param(raw)


def decode_param(raw: bytes) -> governance.ParamValue:
    from consortia import codec

    return codec.decode_struct(governance.ParamValue, raw)
