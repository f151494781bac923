"""A frozen contract runs for no one: not as a transaction's target, not inside the EVM.

Real Solidity contracts in real blocks, each re-applied by a second replica (``Replicated``),
which must reach the same state root. ``Caller`` reaches ``Target`` by CALL (bubbling a failure,
or catching it), STATICCALL and DELEGATECALL; once ``Target`` is frozen every such frame fails
with ``NativeCallFailed("CONTRACT_FROZEN", ...)``, and a transaction that lets it bubble up fails
with ``CONTRACT_FROZEN`` and changes nothing but its nonce.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from consortia.contracts import evm, keys, precompiles, toolchain
from consortia.ledger.types import TxStatus
from consortia.modules import contracts
from tests.test_contracts_module import DEPLOYER, GAS, Replicated, call_data, call_tx, chain

SOURCE = """
// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.0;

contract Target {
    uint256 public count;

    function bump() external returns (uint256) {
        count += 1;
        return count;
    }
}

contract Caller {
    uint256 public calls;
    uint256 public caught;
    event Caught(bytes reason);

    function callBump(address t) external returns (uint256) {
        calls += 1;
        return Target(t).bump();
    }

    function tryBump(address t) external returns (bool) {
        calls += 1;
        try Target(t).bump() returns (uint256) {
            return true;
        } catch (bytes memory reason) {
            caught += 1;
            emit Caught(reason);
            return false;
        }
    }

    function readVia(address t) external view returns (uint256) {
        return Target(t).count();
    }

    function delegateBump(address t) external returns (uint256) {
        calls += 1;
        (bool ok, bytes memory ret) = t.delegatecall(abi.encodeWithSignature("bump()"));
        if (!ok) {
            assembly { revert(add(ret, 32), mload(ret)) }
        }
        return abi.decode(ret, (uint256));
    }
}
"""


@dataclass(frozen=True)
class Compiled:
    target: toolchain.CompiledContract
    caller: toolchain.CompiledContract


@pytest.fixture(scope="module")
def compiled() -> Compiled:
    return Compiled(
        toolchain.compile_solidity(SOURCE, "Target"),
        toolchain.compile_solidity(SOURCE, "Caller"),
    )


def deploy(r: Replicated, code: bytes) -> bytes:
    nonce = r.c.nonces.get(r.c.addr(DEPLOYER), 0)
    args = {"code": code, "args": b"", "gas_limit": GAS, "abi": ""}
    r.ok(r.tx(DEPLOYER, "contracts", "deploy", args))
    return keys.create_address(r.c.addr(DEPLOYER), nonce)


def query(r: Replicated, address: bytes, signature: str, *args: int | bytes) -> evm.ExecutionResult:
    state = r.d.state
    return contracts.query(
        state.tree,
        chain_id=state.chain_id,
        height=state.height + 1,
        time_ms=state.last_time_ms,
        parent_hash=state.last_block_hash,
        address=address,
        data=call_data(signature, *args),
    )


def number(result: evm.ExecutionResult) -> int:
    assert result.ok, (result.code, result.message)
    return int.from_bytes(result.output, "big")


def freeze(r: Replicated, address: bytes) -> None:
    r.ok(r.tx("regulator", "contracts", "freeze", {"address": address, "reason": "court order"}))


def unfreeze(r: Replicated, address: bytes) -> None:
    r.ok(r.tx("regulator", "contracts", "unfreeze", {"address": address}))


@pytest.fixture
def world(compiled: Compiled) -> tuple[Replicated, bytes, bytes]:
    r = chain(deployer_role=True)
    return r, deploy(r, compiled.target.init_code), deploy(r, compiled.caller.init_code)


def contract_state(r: Replicated, *addresses: bytes) -> dict[bytes, bytes]:
    """Every state key of the given contracts, and of the contracts module, with its value."""
    tree = r.d.state.tree
    prefixes = [keys.storage_prefix(a) for a in addresses] + [b"contracts/"]
    return {k: v for k, v in tree.items() if any(k.startswith(p) for p in prefixes)}


def test_unfrozen_target_is_reached_by_every_kind_of_call(
    world: tuple[Replicated, bytes, bytes],
) -> None:
    r, target, caller = world
    r.ok(call_tx(r, target, call_data("bump()")))
    r.ok(call_tx(r, caller, call_data("callBump(address)", target)))
    assert r.ok(call_tx(r, caller, call_data("tryBump(address)", target))).events[-1].attributes[
        "output"
    ] == (1).to_bytes(32, "big")
    assert number(query(r, target, "count()")) == 3
    assert number(query(r, caller, "readVia(address)", target)) == 3
    r.ok(call_tx(r, caller, call_data("delegateBump(address)", target)))
    # Target's bump ran on Caller's storage: slot 0 (``calls``) went 2 -> 3 -> 4.
    assert number(query(r, caller, "calls()")) == 4
    assert number(query(r, target, "count()")) == 3
    assert number(query(r, caller, "caught()")) == 0


def test_a_direct_call_to_a_frozen_contract_is_refused(
    world: tuple[Replicated, bytes, bytes],
) -> None:
    r, target, _ = world
    freeze(r, target)
    refused = r.one(call_tx(r, target, call_data("bump()")))
    assert refused.status == TxStatus.FAILED and refused.code == "CONTRACT_FROZEN"
    # A direct query still reads it (the freeze stops actions, not inspection).
    assert number(query(r, target, "count()")) == 0


def test_an_inner_call_to_a_frozen_contract_fails_the_transaction_and_changes_nothing(
    world: tuple[Replicated, bytes, bytes],
) -> None:
    r, target, caller = world
    freeze(r, target)
    before = contract_state(r, target, caller)
    failed = r.one(call_tx(r, caller, call_data("callBump(address)", target)))
    assert failed.status == TxStatus.FAILED, failed
    assert failed.code == "CONTRACT_FROZEN" and target.hex() in failed.message, failed
    assert failed.events == ()
    assert contract_state(r, target, caller) == before
    # DELEGATECALL borrows the frozen code: refused the same way.
    borrowed = r.one(call_tx(r, caller, call_data("delegateBump(address)", target)))
    assert borrowed.status == TxStatus.FAILED and borrowed.code == "CONTRACT_FROZEN", borrowed
    assert contract_state(r, target, caller) == before


def test_the_caller_may_catch_the_frozen_failure_and_carry_on(
    world: tuple[Replicated, bytes, bytes],
) -> None:
    r, target, caller = world
    freeze(r, target)
    receipt = r.ok(call_tx(r, caller, call_data("tryBump(address)", target)))
    (log,) = [e for e in receipt.events if e.kind == "log"]
    data = log.attributes["data"]
    length = int.from_bytes(data[32:64], "big")
    reason = precompiles.decode_native_error(data[64 : 64 + length])
    assert reason is not None and reason[0] == "CONTRACT_FROZEN", reason
    assert receipt.events[-1].attributes["output"] == bytes(32)  # tryBump returned false
    assert number(query(r, caller, "calls()")) == 1
    assert number(query(r, caller, "caught()")) == 1
    assert number(query(r, target, "count()")) == 0  # the frozen code did not run


def test_a_query_reaching_a_frozen_contract_through_another_fails(
    world: tuple[Replicated, bytes, bytes],
) -> None:
    r, target, caller = world
    r.ok(call_tx(r, target, call_data("bump()")))
    freeze(r, target)
    assert number(query(r, target, "count()")) == 1  # directly: still readable
    via = query(r, caller, "readVia(address)", target)
    assert not via.ok and via.receipt_code == "CONTRACT_FROZEN", (via.code, via.message)
    assert via.writes == {}


def test_unfreezing_restores_every_path(world: tuple[Replicated, bytes, bytes]) -> None:
    r, target, caller = world
    freeze(r, target)
    assert r.one(call_tx(r, caller, call_data("callBump(address)", target))).code == (
        "CONTRACT_FROZEN"
    )
    unfreeze(r, target)
    r.ok(call_tx(r, caller, call_data("callBump(address)", target)))
    r.ok(call_tx(r, target, call_data("bump()")))
    assert number(query(r, caller, "readVia(address)", target)) == 2
    assert number(query(r, caller, "calls()")) == 1
