"""The ABI codec (``consortia.contracts.abi``) against real compiled contracts run by the engine.

A Solidity contract exercising the ABI's corners (constructor arguments, overloads, structs,
arrays, fixed bytes, negative integers, big integers, events with indexed and hashed parameters,
custom errors, ``require`` and panics) is compiled with solc (``scripts/toolchain.sh``), deployed
on ``consortia.contracts.evm`` and called with calldata this codec built; what comes back (return
data, logs, revert payloads) is decoded by it. Known published values (the ERC-20 selectors and
the Transfer topic) pin the hashing.
"""

from __future__ import annotations

import json
from functools import cache

import pytest

from consortia.contracts import abi, evm, toolchain
from consortia.contracts.abi import AbiError, ContractAbi
from consortia.crypto import get_suite
from consortia.ledger.state_tree import StateTree

SUITE = get_suite("intl")
ALICE = SUITE.hash(b"alice")[:20]
BOB = SUITE.hash(b"bob")[:20]
BLOCK = evm.BlockContext("abi-test", 3, 1_700_000_000_000, SUITE.hash(b"parent"))
GAS = 3_000_000

KITCHEN_SOL = """
// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.0;

contract Kitchen {
    struct Point { int64 x; int64 y; }

    string public name;
    uint256 public supply;
    mapping(address => uint256) public balanceOf;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Tagged(string indexed tag, bytes32 id, string note);
    error TooMuch(uint256 wanted, uint256 available);

    constructor(string memory name_, uint256 supply_) {
        name = name_;
        supply = supply_;
        balanceOf[msg.sender] = supply_;
    }

    function transfer(address to, uint256 value) external returns (bool) {
        if (balanceOf[msg.sender] < value) revert TooMuch(value, balanceOf[msg.sender]);
        balanceOf[msg.sender] -= value;
        balanceOf[to] += value;
        emit Transfer(msg.sender, to, value);
        return true;
    }

    function tag(string calldata t, bytes32 id, string calldata note) external {
        emit Tagged(t, id, note);
    }

    function echo(uint256 a) external pure returns (uint256) { return a; }
    function echo(uint256 a, uint256 b) external pure returns (uint256) { return a + b; }

    function mirror(Point calldata p, int8[] calldata xs, bytes4 b4, bytes calldata raw)
        external pure returns (Point memory q, int256 total, bytes4 out4, bytes memory rawOut)
    {
        q = Point(p.y, p.x);
        for (uint256 i = 0; i < xs.length; i++) total += xs[i];
        out4 = b4;
        rawOut = raw;
    }

    function check(uint256 x) external pure returns (uint256) {
        require(x < 10, "x must be below 10");
        uint256[] memory a = new uint256[](1);
        return a[x];  // x in 1..9: index out of bounds (panic 0x32)
    }
}
"""


@cache
def kitchen() -> toolchain.CompiledContract:
    return toolchain.compile_solidity(KITCHEN_SOL, "Kitchen")


@cache
def kitchen_abi() -> ContractAbi:
    return ContractAbi.parse(json.dumps(list(kitchen().abi)))


class Chain:
    """A state tree that applies a result's writes when the engine says OK."""

    def __init__(self) -> None:
        self.tree = StateTree.empty(SUITE.hash)
        self.nonce = 0

    def run(self, sender: bytes, to: bytes | None, data: bytes) -> evm.ExecutionResult:
        result = evm.execute(
            self.tree, evm.EvmMessage(sender, to, data, GAS, nonce=self.nonce), BLOCK
        )
        self.nonce += 1
        if result.ok:
            self.tree = self.tree.update(result.writes)
        return result


@pytest.fixture
def deployed() -> tuple[Chain, bytes]:
    chain = Chain()
    ctor = kitchen_abi().encode_constructor("Kitchen Token", 2**200)
    result = chain.run(ALICE, None, kitchen().init_code + ctor)
    assert result.ok, result.message
    assert result.created is not None
    return chain, result.created


def test_known_selectors_and_topics() -> None:
    # Published ERC-20 values (EIP-20): transfer's selector and the Transfer event's topic 0.
    assert abi.selector("transfer(address,uint256)").hex() == "a9059cbb"
    assert abi.selector("balanceOf(address)").hex() == "70a08231"
    assert (
        abi.event_topic("Transfer(address,address,uint256)").hex()
        == "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
    )
    parsed = kitchen_abi()
    assert parsed.function("transfer").selector.hex() == "a9059cbb"
    assert parsed.function("mirror").signature == "mirror((int64,int64),int8[],bytes4,bytes)"
    assert [p.type for p in parsed.constructor_inputs] == ["string", "uint256"]


def test_constructor_view_and_big_integers(deployed: tuple[Chain, bytes]) -> None:
    chain, address = deployed
    parsed = kitchen_abi()
    out = chain.run(ALICE, address, parsed.encode_call("name"))
    assert out.ok and parsed.output_json("name", out.output) == "Kitchen Token"
    out = chain.run(ALICE, address, parsed.encode_call("supply"))
    # Beyond JavaScript's exact integers: a decimal string in JSON, the int in Python.
    assert parsed.output_json("supply", out.output) == str(2**200)
    assert parsed.decode_output("supply", out.output) == (2**200,)
    # Integers are also accepted as decimal and hex strings.
    assert parsed.encode_call("echo(uint256)", "0x10") == parsed.encode_call("echo(uint256)", 16)
    assert parsed.encode_call("echo(uint256)", "16") == parsed.encode_call("echo(uint256)", 16)


def test_transfer_decodes_the_event_and_the_output(deployed: tuple[Chain, bytes]) -> None:
    chain, address = deployed
    parsed = kitchen_abi()
    result = chain.run(ALICE, address, parsed.encode_call("transfer", "0x" + BOB.hex(), 1234))
    assert result.ok, result.message
    assert parsed.output_json("transfer", result.output) is True
    (log,) = result.logs
    event = parsed.decode_log(log.topics, log.data)
    assert event.event.name == "Transfer"
    assert event.to_json()["args"] == {
        "from": "0x" + ALICE.hex(),
        "to": "0x" + BOB.hex(),
        "value": 1234,
    }
    balance = chain.run(ALICE, address, parsed.encode_call("balanceOf", BOB.hex()))
    assert parsed.output_json("balanceOf", balance.output) == 1234


def test_indexed_dynamic_values_decode_as_their_hash(deployed: tuple[Chain, bytes]) -> None:
    chain, address = deployed
    parsed = kitchen_abi()
    tag_id = bytes(range(32))
    result = chain.run(ALICE, address, parsed.encode_call("tag", "dvp", tag_id.hex(), "note ✓"))
    assert result.ok
    (log,) = result.logs
    decoded = parsed.decode_log(log.topics, log.data).to_json()
    assert decoded["event"] == "Tagged"
    tag = decoded["params"][0]
    assert tag["indexed"] and tag["hashed"]
    assert tag["value"] == abi.event_topic("dvp").hex()  # keccak256 of the string's bytes
    assert decoded["args"]["id"] == tag_id.hex()
    assert decoded["args"]["note"] == "note ✓"


def test_structs_arrays_fixed_bytes_and_negative_numbers(deployed: tuple[Chain, bytes]) -> None:
    chain, address = deployed
    parsed = kitchen_abi()
    data = parsed.encode_call("mirror", {"x": -5, "y": 7}, [-1, 2, -3, 100], "0xdeadbeef", "00ff")
    assert data == parsed.encode_call("mirror", [-5, 7], [-1, 2, -3, 100], "deadbeef", "0x00ff")
    result = chain.run(ALICE, address, data)
    assert result.ok, result.message
    assert parsed.output_json("mirror", result.output) == {
        "q": {"x": 7, "y": -5},
        "total": 98,
        "out4": "deadbeef",
        "rawOut": "00ff",
    }
    fn, args = parsed.decode_call(data)
    assert fn.name == "mirror" and args[0] == (-5, 7) and args[2] == bytes.fromhex("deadbeef")


def test_overloads_need_an_arity_or_signature(deployed: tuple[Chain, bytes]) -> None:
    chain, address = deployed
    parsed = kitchen_abi()
    one = chain.run(ALICE, address, parsed.encode_call("echo", 41))
    two = chain.run(ALICE, address, parsed.encode_call("echo", 40, 2))
    assert parsed.output_json("echo(uint256)", one.output) == 41
    assert parsed.output_json("echo(uint256,uint256)", two.output) == 42
    with pytest.raises(AbiError) as err:
        parsed.function("echo")
    assert err.value.code == "AMBIGUOUS_FUNCTION"
    sel = "0x" + abi.selector("echo(uint256,uint256)").hex()
    assert parsed.function(sel).signature == "echo(uint256,uint256)"


def test_revert_reasons_error_panic_and_custom(deployed: tuple[Chain, bytes]) -> None:
    chain, address = deployed
    parsed = kitchen_abi()
    too_big = chain.run(ALICE, address, parsed.encode_call("check", 10))
    assert too_big.code == evm.CODE_REVERTED
    assert parsed.revert_reason(too_big.output) == "x must be below 10"
    panic = chain.run(ALICE, address, parsed.encode_call("check", 3))
    assert parsed.revert_reason(panic.output) == "panic 0x32: array index out of bounds"
    broke = chain.run(BOB, address, parsed.encode_call("transfer", ALICE.hex(), 1))
    assert broke.code == evm.CODE_REVERTED
    assert parsed.revert_reason(broke.output) == 'TooMuch{"wanted": 1, "available": 0}'
    assert abi.revert_reason(broke.output) is None  # a custom error needs the ABI
    assert parsed.revert_reason(b"") is None


@pytest.mark.parametrize(
    ("fn", "args", "needle"),
    [
        ("transfer", ("0x1234", 1), "address is 20 bytes"),
        ("transfer", (BOB.hex(), -1), "transfer(address,uint256)"),
        ("transfer", (BOB.hex(), "lots"), "expected an integer"),
        ("transfer", (BOB.hex(),), "takes 2 arguments, 1 were given"),
        ("transfer", (BOB.hex(), True), "got a boolean"),
        ("mirror", ({"x": 1, "z": 2}, [], "00000000", ""), "unknown fields"),
        ("mirror", ([1, 2], [], "0000", ""), "bytes4 is 4 bytes"),
        ("mirror", ([1, 2], [200], "00000000", ""), "int8"),
        ("tag", ("t", "zz", "n"), "is not hex"),
    ],
)
def test_bad_arguments_are_named(fn: str, args: tuple[object, ...], needle: str) -> None:
    with pytest.raises(AbiError) as err:
        kitchen_abi().encode_call(fn, *args)
    assert err.value.code == "BAD_ABI_ARGS"
    assert needle in err.value.message


def test_unknown_function_lists_what_exists() -> None:
    with pytest.raises(AbiError) as err:
        kitchen_abi().encode_call("mint", 1)
    assert err.value.code == "UNKNOWN_FUNCTION" and "transfer" in err.value.message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("{", "not valid JSON"),
        ('{"type": "function"}', "JSON list"),
        ('[{"type": "function", "name": "f", "inputs": [{"type": "uint7"}]}]', "bad type"),
        ('[{"type": "function", "name": "f", "inputs": [{"type": "tuple"}]}]', "components"),
        ('[{"type": "banana"}]', "unknown entry type"),
        ('[{"type": "function", "inputs": []}]', "'name' must be a string"),
        ("[" + " " * abi.MAX_ABI_JSON + "]", "over 65536 bytes"),
    ],
)
def test_bad_abi_json_is_refused(text: str, needle: str) -> None:
    with pytest.raises(AbiError) as err:
        ContractAbi.parse(text)
    assert err.value.code == "BAD_ABI" and needle in err.value.message


def test_data_that_does_not_decode_is_refused(deployed: tuple[Chain, bytes]) -> None:
    parsed = kitchen_abi()
    with pytest.raises(AbiError) as err:
        parsed.decode_output("supply", b"\x01\x02")
    assert err.value.code == "BAD_ABI_DATA"
    transfer_topic = parsed.events[0].topic
    with pytest.raises(AbiError) as err:
        parsed.decode_log([transfer_topic], b"")  # the two indexed topics are missing
    assert err.value.code == "BAD_ABI_DATA"
    with pytest.raises(AbiError) as err:
        parsed.decode_log([b"\x00" * 32], b"")
    assert err.value.code == "UNKNOWN_EVENT"
    assert ContractAbi.parse("") == ContractAbi()


def test_vyper_abi_round_trips() -> None:
    source = """
# pragma version 0.4.3
event Stored:
    who: indexed(address)
    values: DynArray[uint256, 4]

last: public(DynArray[uint256, 4])

@external
def store(values: DynArray[uint256, 4]) -> uint256:
    self.last = values
    log Stored(who=msg.sender, values=values)
    return len(values)
"""
    compiled = toolchain.compile_vyper(source, name="Store")
    parsed = ContractAbi.parse(list(compiled.abi))
    chain = Chain()
    created = chain.run(ALICE, None, compiled.init_code)
    assert created.ok and created.created is not None
    result = chain.run(ALICE, created.created, parsed.encode_call("store", [1, 2, 3]))
    assert result.ok, result.message
    assert parsed.output_json("store", result.output) == 3
    (log,) = result.logs
    assert parsed.decode_log(log.topics, log.data).to_json()["args"] == {
        "who": "0x" + ALICE.hex(),
        "values": [1, 2, 3],
    }
