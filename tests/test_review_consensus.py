"""Review findings on the consensus path (code that runs inside block execution).

Each test pins one problem found in review: it failed before the fix next to it.
"""

from __future__ import annotations

import hashlib
import time

from consortia.contracts import keys
from consortia.ledger.types import TxStatus
from tests.test_contracts_module import DEPLOYER, Replicated, call_tx, chain


def _returning(runtime: bytes) -> bytes:
    """Init code that returns ``runtime`` as the contract's code."""
    # PUSH2 len DUP1 PUSH1 12 PUSH1 0 CODECOPY PUSH1 0 RETURN (12 bytes), then the runtime.
    init = bytes([0x61, *len(runtime).to_bytes(2, "big"), 0x80, 0x60, 12, 0x60, 0, 0x39])
    return init + bytes([0x60, 0, 0xF3]) + runtime


def _forwarder(target: int) -> bytes:
    """Runtime code: CALL ``target`` with this call's calldata and all gas; revert with the
    callee's return data when it failed, else return it."""
    head = bytes([0x36, 0x60, 0, 0x60, 0, 0x37])  # CALLDATACOPY(0, 0, CALLDATASIZE)
    head += bytes([0x60, 0, 0x60, 0, 0x36, 0x60, 0, 0x60, 0, 0x73])  # out 0,0; in 0,size; value 0
    head += target.to_bytes(20, "big") + bytes([0x5A, 0xF1])  # target, GAS, CALL
    head += bytes([0x3D, 0x60, 0, 0x60, 0, 0x3E])  # RETURNDATACOPY(0, 0, RETURNDATASIZE)
    failed = bytes([0x3D, 0x60, 0, 0xFD])  # REVERT(0, RETURNDATASIZE)
    ok = bytes([0x5B, 0x3D, 0x60, 0, 0xF3])  # JUMPDEST RETURN(0, RETURNDATASIZE)
    dest = len(head) + 3 + len(failed)
    return head + bytes([0x60, dest, 0x57]) + failed + ok


def _deploy_raw(r: Replicated, runtime: bytes) -> bytes:
    nonce = r.c.nonces.get(r.c.addr(DEPLOYER), 0)
    args = {"code": _returning(runtime), "args": b"", "gas_limit": 1_000_000, "abi": ""}
    r.ok(r.tx(DEPLOYER, "contracts", "deploy", args))
    return keys.create_address(r.c.addr(DEPLOYER), nonce)


def test_the_point_evaluation_precompile_is_refused_cheaply() -> None:
    # py-evm's EIP-4844 point evaluation (0x0a) reloads the KZG trusted setup on every call:
    # about 2 s of CPU for 50 000 gas, so one 30M-gas transaction could stall every node for
    # many minutes. Consortia chains carry no blobs; the precompile faults at its gas price.
    r = chain(deployer_role=True)
    forwarder = _deploy_raw(r, _forwarder(0x0A))
    commitment = bytes(48)
    versioned = b"\x01" + hashlib.sha256(commitment).digest()[1:]
    data = versioned + bytes(64) + commitment + bytes(48)  # well-formed: reaches the proof check
    txs = [call_tx(r, forwarder, data, gas=200_000) for _ in range(3)]
    started = time.perf_counter()
    receipts = r.commit(txs).receipts  # the proposer and a replica both execute them
    elapsed = time.perf_counter() - started
    assert [rc.status for rc in receipts] == [TxStatus.FAILED] * 3
    assert {rc.code for rc in receipts} == {"EVM_REVERTED"}
    assert all("EVM_FAULT" in rc.message for rc in receipts)
    assert elapsed < 3.0, f"3 point evaluations took {elapsed:.1f} s"


def _reverting_with_reason(length: int) -> bytes:
    """Runtime code: REVERT with ``Error(string)`` whose string is ``length`` zero bytes."""
    selector = bytes.fromhex("08c379a0") + bytes(28)
    code = bytes([0x7F]) + selector + bytes([0x60, 0, 0x52])  # MSTORE(0, selector word)
    code += bytes([0x60, 0x20, 0x60, 4, 0x52])  # MSTORE(4, 0x20): the string's offset
    code += bytes([0x62, *length.to_bytes(3, "big"), 0x60, 36, 0x52])  # MSTORE(36, length)
    return code + bytes([0x62, *(68 + length).to_bytes(3, "big"), 0x60, 0, 0xFD])  # REVERT


def test_a_revert_reason_does_not_swell_the_receipt() -> None:
    # The receipt's message is consensus data that every node keeps; a contract's revert reason
    # costs only memory gas (a 200 KB reason is ~0.3M gas, no LOG byte price), so the message
    # quotes a bounded prefix of it, like the 4 KiB cap on a call's output in its event.
    r = chain(deployer_role=True)
    contract = _deploy_raw(r, _reverting_with_reason(200_000))
    receipt = r.one(call_tx(r, contract, b"", gas=5_000_000))
    assert receipt.status == TxStatus.FAILED
    assert receipt.code == "EVM_REVERTED"
    assert receipt.message.startswith("the contract reverted: ")
    assert len(receipt.message) <= 1024


# py-evm computes BLAKE2 F (0x09) and the BN254 pairing (0x08) in pure Python: measured on the
# development machine at about 160k and 250k gas per second at Ethereum's prices, against about
# 4.7M for ordinary opcodes, so a block's gas of them kept every node busy ~20-30 times longer.
# The engine charges a surcharge that brings them in line; these calls fit Ethereum's price but
# not the surcharged one.


def test_blake2_rounds_pay_for_py_evms_speed() -> None:
    r = chain(deployer_role=True)
    forwarder = _deploy_raw(r, _forwarder(0x09))
    rounds = 100_000  # 100 000 gas at Ethereum's price
    data = rounds.to_bytes(4, "big") + bytes(64 + 128 + 16) + b"\x01"
    receipt = r.one(call_tx(r, forwarder, data, gas=1_000_000))
    assert receipt.status == TxStatus.FAILED
    assert "EVM_OUT_OF_GAS" in receipt.message
    cheap = (100).to_bytes(4, "big") + bytes(64 + 128 + 16) + b"\x01"
    assert r.one(call_tx(r, forwarder, cheap, gas=1_000_000)).status == TxStatus.OK


def test_pairing_checks_pay_for_py_evms_speed() -> None:
    r = chain(deployer_role=True)
    forwarder = _deploy_raw(r, _forwarder(0x08))
    pairs = 8  # 317 000 gas at Ethereum's price; points at infinity are valid input
    receipt = r.one(call_tx(r, forwarder, bytes(192 * pairs), gas=2_000_000))
    assert receipt.status == TxStatus.FAILED
    assert "EVM_OUT_OF_GAS" in receipt.message
    one = r.one(call_tx(r, forwarder, bytes(192), gas=2_000_000))
    assert one.status == TxStatus.OK, one.message
