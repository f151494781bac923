"""The EVM engine over consortia's state: real Vyper and Solidity contracts, compiled here.

The compilers come from ``scripts/toolchain.sh`` (vyper from PyPI into .venv, solc-js from npm into
.tools/). Nothing is skipped: without them these tests fail, saying which script installs them.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest
from eth_hash.auto import keccak

from consortia.contracts import evm, keys, toolchain
from consortia.crypto import get_suite
from consortia.ledger.state_tree import StateTree, verify_state_proof

SUITE = get_suite("intl")
ALICE = SUITE.hash(b"alice")[:20]
BOB = SUITE.hash(b"bob")[:20]
BLOCK = evm.BlockContext("contracts-test", 7, 1_700_000_123_456, SUITE.hash(b"parent"))
GAS = 2_000_000

COUNTER_VY = """
# pragma version 0.4.3
event Added:
    who: indexed(address)
    amount: uint256

counter: public(uint256)
owner: public(address)

@deploy
def __init__(start: uint256):
    self.counter = start
    self.owner = msg.sender

@external
def add(x: uint256) -> uint256:
    self.counter += x
    assert self.counter <= 1000, "counter over limit"
    log Added(who=msg.sender, amount=x)
    return self.counter

@external
@view
def context() -> (uint256, uint256, uint256, bytes32, address):
    return block.number, block.timestamp, chain.id, block.prevrandao, block.coinbase
"""

LEDGER_SOL = """
// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.0;

contract Child {
    uint256 public born = 1;
}

contract Ledger {
    mapping(address => uint256) public balanceOf;
    event Credited(address indexed who, uint256 amount);

    function credit(address who, uint256 amount) external {
        balanceOf[who] += amount;
        emit Credited(who, amount);
    }

    function creditThenFail(address who, uint256 amount) external {
        balanceOf[who] += amount;
        revert("refused");
    }

    // Keeps its own write when the inner call reverts: only the failed frame is undone.
    function creditAndTry(address who) external {
        balanceOf[who] += 1;
        try this.creditThenFail(who, 5) {} catch {}
    }

    function make() external returns (address) {
        return address(new Child());
    }

    function recurse(uint256 n) external returns (uint256) {
        return this.recurse(n + 1);
    }

    function allocate(uint256 n) external pure returns (uint256) {
        uint256[] memory a = new uint256[](n);
        return a.length;
    }

    function spin() external pure returns (uint256 i) {
        while (true) {
            unchecked { i += 1; }
        }
    }
}
"""

# Hand-assembled runtimes for the pure gas cases.
INFINITE_LOOP = bytes.fromhex("5b600056")  # JUMPDEST PUSH1 0 JUMP
HUGE_MSTORE = bytes.fromhex("6001640100000000" "52" "00")  # MSTORE 1 at offset 2**32; STOP


def selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


def word(value: int | bytes) -> bytes:
    if isinstance(value, bytes):
        return value.rjust(32, b"\0")
    return value.to_bytes(32, "big")


def call_data(signature: str, *args: int | bytes) -> bytes:
    return selector(signature) + b"".join(word(a) for a in args)


def mapping_slot(key: bytes, slot: int) -> int:
    """Solidity's storage slot of ``mapping[key]`` declared at ``slot``."""
    return int.from_bytes(keccak(word(key) + word(slot)), "big")


def revert_reason(output: bytes) -> str:
    """Decode an ``Error(string)`` revert payload."""
    assert output[:4] == selector("Error(string)"), output.hex()
    length = int.from_bytes(output[36:68], "big")
    return output[68 : 68 + length].decode()


def deployer(runtime: bytes) -> bytes:
    """Init code that deploys ``runtime`` as it is (CODECOPY it, RETURN it)."""
    n = len(runtime)
    assert n < 256
    return bytes([0x60, n, 0x60, 12, 0x60, 0, 0x39, 0x60, n, 0x60, 0, 0xF3]) + runtime


@cache
def counter_vy() -> toolchain.CompiledContract:
    return toolchain.compile_vyper(COUNTER_VY, name="Counter")


@cache
def ledger_sol() -> toolchain.CompiledContract:
    return toolchain.compile_solidity(LEDGER_SOL, "Ledger")


def empty_tree() -> StateTree:
    return StateTree.empty(SUITE.hash)


class Chain:
    """A state tree that applies a result's writes exactly when the engine says OK."""

    def __init__(self, tree: StateTree | None = None) -> None:
        self.tree = tree if tree is not None else empty_tree()
        self.nonce = 0

    def run(self, message: evm.EvmMessage) -> evm.ExecutionResult:
        result = evm.execute(self.tree, message, BLOCK)
        if result.ok:
            self.tree = self.tree.update(result.writes)
        else:
            assert result.writes == {}
        return result

    def deploy(self, init_code: bytes, *, sender: bytes = ALICE) -> bytes:
        result = self.run(evm.EvmMessage(sender, None, init_code, GAS, nonce=self.nonce))
        self.nonce += 1
        assert result.ok, (result.code, result.message)
        assert result.created is not None
        return result.created

    def call(
        self, to: bytes, data: bytes, *, gas: int = GAS, static: bool = False
    ) -> evm.ExecutionResult:
        return self.run(evm.EvmMessage(ALICE, to, data, gas, static=static))

    def storage(self, address: bytes, slot: int) -> int:
        raw = self.tree.get(keys.storage_key(address, slot))
        return 0 if raw is None else int.from_bytes(raw, "big")


# ---------------------------------------------------------------------------------------------
# Toolchain


def test_compilers_are_the_pinned_versions() -> None:
    vy = counter_vy()
    sol = ledger_sol()
    assert vy.init_code and vy.runtime_code and any(e.get("name") == "add" for e in vy.abi)
    assert sol.init_code and sol.runtime_code and any(e.get("name") == "credit" for e in sol.abi)


def test_missing_solc_names_the_install_script(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("CONSORTIA_SOLC_JS", str(tmp_path))
    with pytest.raises(toolchain.ToolchainError, match=r"scripts/toolchain\.sh"):
        toolchain.compile_solidity(LEDGER_SOL, "Ledger")


def test_compile_errors_are_reported() -> None:
    with pytest.raises(toolchain.CompileError, match="solc"):
        toolchain.compile_solidity("contract Broken { function f( }", "Broken")
    with pytest.raises(toolchain.CompileError, match="vyper"):
        toolchain.compile_vyper("@external\ndef f(:\n    pass\n")
    with pytest.raises(toolchain.CompileError, match="no contract 'Nope'"):
        toolchain.compile_solidity(LEDGER_SOL, "Nope")


# ---------------------------------------------------------------------------------------------
# Deploy, call, read back from the state tree


def test_vyper_counter_deploys_and_runs_with_state_in_the_tree() -> None:
    chain = Chain()
    chain.nonce = 3
    address = chain.deploy(counter_vy().init_code + word(40))
    assert address == keys.create_address(ALICE, 3)
    # Code and account record live under documented keys, covered by the state root.
    assert chain.tree.get(keys.code_key(address)) == counter_vy().runtime_code
    proof = chain.tree.prove(keys.code_key(address))
    assert verify_state_proof(SUITE.hash, chain.tree.root, proof) == counter_vy().runtime_code
    assert chain.tree.get(keys.account_key(address)) is not None

    result = chain.call(address, call_data("add(uint256)", 2))
    assert result.ok, result.message
    assert int.from_bytes(result.output, "big") == 42
    assert chain.storage(address, 0) == 42  # `counter` is Vyper's first storage slot
    assert chain.storage(address, 1) == int.from_bytes(ALICE, "big")  # `owner`
    slot_proof = chain.tree.prove(keys.storage_key(address, 0))
    assert verify_state_proof(SUITE.hash, chain.tree.root, slot_proof) == word(42)
    # The event: Added(who indexed, amount).
    (log,) = result.logs
    assert log.address == address
    assert log.topics == (keccak(b"Added(address,uint256)"), word(ALICE))
    assert log.data == word(2)
    assert 21_000 < result.gas_used < 100_000

    # A read-only query sees the value and cannot change anything.
    view = chain.call(address, call_data("counter()"), static=True)
    assert view.ok and view.writes == {} and int.from_bytes(view.output, "big") == 42
    write = chain.call(address, call_data("add(uint256)", 1), static=True)
    assert write.code == evm.CODE_STATIC_WRITE
    assert chain.storage(address, 0) == 42


def test_block_context_comes_from_the_header() -> None:
    chain = Chain()
    address = chain.deploy(counter_vy().init_code + word(0))
    result = chain.call(address, call_data("context()"), static=True)
    assert result.ok, result.message
    out = [result.output[i : i + 32] for i in range(0, 160, 32)]
    assert int.from_bytes(out[0], "big") == BLOCK.height
    assert int.from_bytes(out[1], "big") == BLOCK.time_ms // 1000
    assert int.from_bytes(out[2], "big") == evm.evm_chain_id(BLOCK.chain_id)
    assert out[3] == BLOCK.parent_hash  # PREVRANDAO: fixed, not random
    assert out[4] == bytes(32)  # no coinbase
    assert evm.evm_chain_id("contracts-test") != evm.evm_chain_id("contracts-test2")


def test_solidity_ledger_mappings_events_and_nested_creation() -> None:
    chain = Chain()
    address = chain.deploy(ledger_sol().init_code)
    assert chain.tree.get(keys.code_key(address)) == ledger_sol().runtime_code

    result = chain.call(address, call_data("credit(address,uint256)", BOB, 250))
    assert result.ok, result.message
    assert chain.storage(address, mapping_slot(BOB, 0)) == 250
    (log,) = result.logs
    assert log.topics == (keccak(b"Credited(address,uint256)"), word(BOB))
    balance = chain.call(address, call_data("balanceOf(address)", BOB), static=True)
    assert int.from_bytes(balance.output, "big") == 250

    # A contract creating a contract: the address follows from the creator's own nonce, which
    # lives in the creator's account record (1 after its own deployment, EIP-161).
    made = chain.call(address, call_data("make()"))
    assert made.ok, made.message
    child = made.output[12:32]
    assert child == keys.create_address(address, 1)
    assert chain.tree.get(keys.code_key(child))
    assert chain.storage(child, 0) == 1


# ---------------------------------------------------------------------------------------------
# Failures change nothing


def test_revert_leaves_the_state_byte_identical() -> None:
    chain = Chain()
    vy = chain.deploy(counter_vy().init_code + word(999))
    sol = chain.deploy(ledger_sol().init_code)
    chain.call(sol, call_data("credit(address,uint256)", BOB, 7))
    before_root, before_items = chain.tree.root, sorted(chain.tree.items())

    # Vyper: the write to `counter` happens before the assert fails.
    over = chain.call(vy, call_data("add(uint256)", 5))
    assert over.status is evm.Status.REVERTED and over.code == evm.CODE_REVERTED
    assert revert_reason(over.output) == "counter over limit"
    assert over.message == "the contract reverted: counter over limit"
    assert over.writes == {} and over.logs == ()
    # Solidity: a credit, then a revert.
    refused = chain.call(sol, call_data("creditThenFail(address,uint256)", BOB, 1))
    assert refused.code == evm.CODE_REVERTED and revert_reason(refused.output) == "refused"
    # A failing deployment (the constructor reverts) creates nothing.
    failed = chain.run(
        evm.EvmMessage(ALICE, None, bytes.fromhex("60006000fd"), GAS, nonce=chain.nonce)
    )
    assert failed.code == evm.CODE_REVERTED and failed.created is None

    assert chain.tree.root == before_root
    assert sorted(chain.tree.items()) == before_items
    assert chain.storage(vy, 0) == 999 and chain.storage(sol, mapping_slot(BOB, 0)) == 7


def test_an_inner_revert_undoes_only_its_own_frame() -> None:
    chain = Chain()
    sol = chain.deploy(ledger_sol().init_code)
    result = chain.call(sol, call_data("creditAndTry(address)", BOB))
    assert result.ok, result.message
    assert chain.storage(sol, mapping_slot(BOB, 0)) == 1  # the inner +5 was undone


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (evm.EvmMessage(ALICE, None, b"\x00", 21_000), evm.CODE_GAS_LIMIT),  # below intrinsic
        (evm.EvmMessage(ALICE, None, b"\x00", BLOCK.gas_limit + 1), evm.CODE_GAS_LIMIT),
        (evm.EvmMessage(ALICE, BOB, b"", GAS), evm.CODE_NO_CONTRACT),
        (evm.EvmMessage(ALICE[:19], None, b"", GAS), evm.CODE_BAD_MESSAGE),
        (evm.EvmMessage(ALICE, b"\x01" * 21, b"", GAS), evm.CODE_BAD_MESSAGE),
        (evm.EvmMessage(ALICE, None, b"\x00" * 49_153, GAS), evm.CODE_BAD_MESSAGE),
        (evm.EvmMessage(ALICE, None, b"", GAS, static=True), evm.CODE_BAD_MESSAGE),
        (evm.EvmMessage(ALICE, None, b"", GAS, nonce=-1), evm.CODE_BAD_MESSAGE),
    ],
)
def test_bad_messages_are_rejected_with_a_code(message: evm.EvmMessage, code: str) -> None:
    result = evm.execute(empty_tree(), message, BLOCK)
    assert result.status is evm.Status.REJECTED
    assert result.code == code and result.message
    assert result.writes == {} and result.gas_used == 0


def test_a_taken_address_is_a_collision() -> None:
    chain = Chain()
    chain.deploy(counter_vy().init_code + word(1))
    again = chain.run(evm.EvmMessage(ALICE, None, counter_vy().init_code + word(2), GAS, nonce=0))
    assert again.code == evm.CODE_ADDRESS_COLLISION


# ---------------------------------------------------------------------------------------------
# Gas bounds every kind of runaway


def _assert_stopped_at_gas_limit(result: evm.ExecutionResult, gas: int) -> None:
    assert not result.ok and result.writes == {}
    assert result.gas_used == gas  # a fault other than REVERT burns all the gas


def test_infinite_loops_stop_at_the_gas_limit() -> None:
    chain = Chain()
    raw = chain.deploy(deployer(INFINITE_LOOP))
    sol = chain.deploy(ledger_sol().init_code)
    root = chain.tree.root
    for target, data in ((raw, b""), (sol, call_data("spin()"))):
        result = chain.call(target, data, gas=300_000)
        assert result.status is evm.Status.OUT_OF_GAS and result.code == evm.CODE_OUT_OF_GAS
        _assert_stopped_at_gas_limit(result, 300_000)
    assert chain.tree.root == root


def test_huge_memory_expansion_stops_at_the_gas_limit() -> None:
    chain = Chain()
    raw = chain.deploy(deployer(HUGE_MSTORE))
    sol = chain.deploy(ledger_sol().init_code)
    for target, data in ((raw, b""), (sol, call_data("allocate(uint256)", 10**9))):
        result = chain.call(target, data, gas=GAS)
        assert result.code == evm.CODE_OUT_OF_GAS, result.message
        _assert_stopped_at_gas_limit(result, GAS)
    # A modest allocation works: the contract itself is fine.
    small = chain.call(sol, call_data("allocate(uint256)", 100))
    assert small.ok and int.from_bytes(small.output, "big") == 100


def test_deep_recursion_stops_at_the_gas_limit_at_any_caller_depth() -> None:
    chain = Chain()
    sol = chain.deploy(ledger_sol().init_code)
    root = chain.tree.root
    gas = BLOCK.gas_limit  # the most a message may have: the deepest recursion there is
    message = evm.EvmMessage(ALICE, sol, call_data("recurse(uint256)", 0), gas)

    def from_depth(depth: int) -> evm.ExecutionResult:
        # Python recursion of the caller must not matter: the engine has its own thread.
        return evm.execute(chain.tree, message, BLOCK) if depth == 0 else from_depth(depth - 1)

    shallow = evm.execute(chain.tree, message, BLOCK)
    deep = from_depth(800)
    # Each level bubbles the failure of the level below as a revert, down to an out-of-gas.
    assert shallow.code == evm.CODE_REVERTED
    assert f"{evm.CODE_OUT_OF_GAS}" in shallow.message and "call depth" in shallow.message
    depth = int(shallow.message.split("call depth ")[1].split(":")[0])
    assert depth > 300  # far deeper than Python's default recursion limit allows unaided
    # Each level keeps 1/64 of its gas (EIP-150), so the reverting levels return most of it.
    assert shallow.writes == {} and 0 < shallow.gas_used <= gas
    assert deep == shallow
    assert chain.tree.root == root


def test_deep_recursion_is_safe_from_a_thread_with_a_small_stack() -> None:
    # On the caller's own 256 KiB thread stack this recursion crashes the interpreter
    # (SIGSEGV); the engine runs it on its own large stack. Run in a child process, so a crash
    # is a failed assertion here, not a dead test session.
    script = textwrap.dedent(
        """
        import sys, threading
        sys.path.insert(0, sys.argv[1])
        import test_contracts_evm as t
        from consortia.contracts import evm

        chain = t.Chain()
        sol = chain.deploy(t.ledger_sol().init_code)
        msg = evm.EvmMessage(t.ALICE, sol, t.call_data("recurse(uint256)", 0), 30_000_000)
        out = []
        threading.stack_size(256 * 1024)
        th = threading.Thread(target=lambda: out.append(evm.execute(chain.tree, msg, t.BLOCK)))
        th.start()
        th.join()
        print(out[0].code, out[0].message)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.startswith(evm.CODE_REVERTED)
    assert evm.CODE_OUT_OF_GAS in proc.stdout


# ---------------------------------------------------------------------------------------------
# Determinism


def _scenario() -> tuple[bytes, list[evm.ExecutionResult]]:
    chain = Chain()
    vy = chain.deploy(counter_vy().init_code + word(1))
    sol = chain.deploy(ledger_sol().init_code)
    results = [
        chain.call(vy, call_data("add(uint256)", 10)),
        chain.call(sol, call_data("credit(address,uint256)", BOB, 5)),
        chain.call(sol, call_data("creditAndTry(address)", ALICE)),
        chain.call(sol, call_data("make()")),
        chain.call(vy, call_data("add(uint256)", 5000)),  # reverts
        chain.call(sol, call_data("spin()"), gas=100_000),  # out of gas
    ]
    return chain.tree.root, results


def test_same_inputs_give_the_same_state_root_and_results() -> None:
    first_root, first = _scenario()
    second: list[tuple[bytes, list[evm.ExecutionResult]]] = []
    # The second run starts on another thread: where the caller runs must not matter.
    runner: Callable[[], None] = lambda: second.append(_scenario())  # noqa: E731
    thread = threading.Thread(target=runner)
    thread.start()
    thread.join()
    second_root, second_results = second[0]
    assert first_root == second_root
    assert first == second_results
    assert [r.status for r in first][-2:] == [evm.Status.REVERTED, evm.Status.OUT_OF_GAS]
