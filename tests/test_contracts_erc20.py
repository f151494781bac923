"""A published ERC-20 test scenario, run against our Vyper and our Solidity token.

The tokens are ``examples/contracts/erc20/Token.vy`` and ``Token.sol`` (written for consortia,
same behaviour, same revert reasons). The scenario is written once against a small driver
interface (``Backend``) with two backends:

- ``engine``: the EVM engine directly (``consortia.contracts.evm.execute`` over a ``StateTree``,
  applying ``result.writes`` exactly when the engine says OK);
- ``consortia``: deployed and called through transactions of the ``contracts`` native module on
  an in-process chain (``tests/chainkit.py``), events read from the receipts.

Where the cases come from (rewritten here in our own words and code):

- the EIP-20 specification (https://eips.ethereum.org/EIPS/eip-20), its required behaviours:
  ``transfer``/``transferFrom`` move ``_value`` and MUST fire ``Transfer``, zero-value transfers
  MUST be treated as normal transfers and fire ``Transfer``; ``transfer`` SHOULD throw when the
  sender's balance is short; ``transferFrom`` SHOULD throw unless the owner authorised the
  spender; ``approve`` overwrites the current allowance and MUST fire ``Approval``; a token that
  creates tokens SHOULD fire ``Transfer`` from ``0x0``; the exact event signatures
  ``Transfer(address indexed, address indexed, uint256)`` and
  ``Approval(address indexed, address indexed, uint256)``;
- the OpenZeppelin Contracts ERC-20 behaviour suite, ``test/token/ERC20/ERC20.behavior.js``
  (``shouldBehaveLikeERC20``, ``shouldBehaveLikeERC20Transfer``, ``shouldBehaveLikeERC20Approve``
  of OpenZeppelin/openzeppelin-contracts v5): total supply and balances; transfer of the whole
  balance, of zero, beyond the balance, to the zero address; transferFrom with enough
  allowance (moves, decreases the allowance, emits Transfer and, like OpenZeppelin v5's default,
  no Approval), owner short of balance, spender short of allowance, unlimited allowance (never
  decreased, no Approval), to and from the zero address; approve with and without a previous
  approval, beyond the balance, to the zero address. Added here: transfers to oneself, partial
  allowance use, and zero-value transferFrom without any allowance (EIP-20's "normal transfer").

Our tokens implement the **unlimited allowance**: an allowance of 2**256 - 1 is never decreased.
Every refusal must change nothing: each refused call is checked against a before/after reading
of every balance and allowance among the scenario's accounts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import pytest
from eth_hash.auto import keccak

from consortia.contracts import evm, keys, toolchain
from consortia.crypto import get_suite
from consortia.execution.apply import Proposal, apply_block
from consortia.execution.genesis import genesis_state
from consortia.execution.state import ChainState
from consortia.ledger.state_tree import StateTree
from consortia.ledger.types import Receipt, Transaction, TxStatus
from consortia.modules import contracts
from consortia.modules.registry import account_key
from tests.chainkit import Driver, make_consortium
from tests.govkit import approvals_needed, voters

ERC20_DIR = Path(__file__).resolve().parents[1] / "examples" / "contracts" / "erc20"

SUPPLY = 100 * 10**18
MAX_UINT256 = 2**256 - 1
ZERO = bytes(20)
GAS = 1_000_000

TRANSFER_TOPIC = keccak(b"Transfer(address,address,uint256)")
APPROVAL_TOPIC = keccak(b"Approval(address,address,uint256)")


# ---------------------------------------------------------------------------------------------
# A minimal ABI codec for the scenario (static words, and strings for the constructor)


def word(value: int | bytes) -> bytes:
    if isinstance(value, bytes):
        return value.rjust(32, b"\0")
    return value.to_bytes(32, "big")


def call_data(signature: str, *args: int | bytes) -> bytes:
    return keccak(signature.encode())[:4] + b"".join(word(a) for a in args)


def encode_constructor(name: str, symbol: str, decimals: int, supply: int) -> bytes:
    """ABI encoding of ``(string, string, uint8, uint256)``."""
    tails = [name.encode(), symbol.encode()]
    padded = [t + bytes(-len(t) % 32) for t in tails]
    head_size = 4 * 32
    name_at = head_size
    symbol_at = name_at + 32 + len(padded[0])
    head = word(name_at) + word(symbol_at) + word(decimals) + word(supply)
    return head + word(len(tails[0])) + padded[0] + word(len(tails[1])) + padded[1]


def decode_string(output: bytes) -> str:
    offset = int.from_bytes(output[:32], "big")
    length = int.from_bytes(output[offset : offset + 32], "big")
    return output[offset + 32 : offset + 32 + length].decode()


# ---------------------------------------------------------------------------------------------
# The driver interface


@dataclass(frozen=True)
class Log:
    address: bytes
    topics: tuple[bytes, ...]
    data: bytes


@dataclass(frozen=True)
class Outcome:
    """What a state-changing call did, as the backend reports it.

    ``code`` is "" on success, else the stable failure code; ``message`` is for people (it holds
    a revert's reason). ``output`` is the return data, or None when the backend does not report
    it (a consortia receipt carries events, not return data).
    """

    code: str
    message: str
    logs: tuple[Log, ...]
    output: bytes | None

    @property
    def ok(self) -> bool:
        return self.code == ""


class Backend(Protocol):
    """Where the tokens run. Accounts are 20-byte addresses the backend can send from."""

    name: str
    holder: bytes  # deploys every token, so holds the initial supply
    recipient: bytes
    other: bytes

    def deploy(self, contract: toolchain.CompiledContract, args: bytes) -> tuple[bytes, Outcome]:
        """Deploy ``contract`` from ``holder``; its address and the deployment's outcome."""
        ...

    def send(self, sender: bytes, to: bytes, data: bytes) -> Outcome:
        """A state-changing call from ``sender``."""
        ...

    def view(self, to: bytes, data: bytes) -> bytes:
        """A read-only call; its return data."""
        ...


# ---------------------------------------------------------------------------------------------
# Backend 1: the engine over a StateTree

SUITE = get_suite("intl")
ENGINE_BLOCK = evm.BlockContext("erc20-test", 1, 1_700_000_000_000, SUITE.hash(b"parent"))


class EngineBackend:
    """The EVM engine alone: a state tree that takes a result's writes exactly when OK."""

    name = "engine"

    def __init__(self) -> None:
        self.tree = StateTree.empty(SUITE.hash)
        self.holder = SUITE.hash(b"holder")[:20]
        self.recipient = SUITE.hash(b"recipient")[:20]
        self.other = SUITE.hash(b"another account")[:20]
        self.nonces: dict[bytes, int] = {}

    def _run(self, message: evm.EvmMessage) -> evm.ExecutionResult:
        result = evm.execute(self.tree, message, ENGINE_BLOCK)
        if result.ok:
            self.tree = self.tree.update(result.writes)
        else:
            assert result.writes == {}
        return result

    def _outcome(self, result: evm.ExecutionResult) -> Outcome:
        logs = tuple(Log(log.address, log.topics, log.data) for log in result.logs)
        return Outcome(result.code, result.message, logs, result.output)

    def _nonce(self, sender: bytes) -> int:
        n = self.nonces.get(sender, 0)
        self.nonces[sender] = n + 1
        return n

    def deploy(self, contract: toolchain.CompiledContract, args: bytes) -> tuple[bytes, Outcome]:
        message = evm.EvmMessage(
            self.holder, None, contract.init_code + args, 3_000_000, nonce=self._nonce(self.holder)
        )
        result = self._run(message)
        assert result.ok and result.created is not None, (result.code, result.message)
        return result.created, self._outcome(result)

    def send(self, sender: bytes, to: bytes, data: bytes) -> Outcome:
        message = evm.EvmMessage(sender, to, data, GAS, nonce=self._nonce(sender))
        return self._outcome(self._run(message))

    def view(self, to: bytes, data: bytes) -> bytes:
        result = evm.execute(
            self.tree, evm.EvmMessage(self.holder, to, data, GAS, static=True), ENGINE_BLOCK
        )
        assert result.ok, (result.code, result.message)
        return result.output


# ---------------------------------------------------------------------------------------------
# Backend 2: deployed on consortia, through the contracts module in real blocks


class ConsortiaBackend:
    """An in-process business chain (``tests/chainkit.py``); every deployment and call is a
    signed ``contracts`` transaction in its own block, and a second replica re-applies each
    block with ``apply_block`` and must reach the same state root. The tokens' code is approved
    by a governance ``approve_code`` proposal before its first deployment (the deployer holds
    no ``contract_deployer`` role)."""

    name = "consortia"

    def __init__(self) -> None:
        self.c = make_consortium()
        self.driver = Driver(self.c)
        self.replica: ChainState = genesis_state(self.c.genesis)
        self.names = {self.c.addr(n): n for n in ("broker-a-admin", "broker-b-admin", "ccb-admin")}
        self.holder = self.c.addr("broker-a-admin")
        self.recipient = self.c.addr("broker-b-admin")
        self.other = self.c.addr("ccb-admin")

    def _commit(self, txs: list[Transaction]) -> Proposal:
        p = self.driver.commit(txs)
        self.replica, receipts = apply_block(self.replica, p.block)
        assert receipts == p.receipts
        assert self.replica.state_root == p.state.state_root == p.block.header.state_root
        return p

    def _ok(self, tx: Transaction) -> Receipt:
        (receipt,) = self._commit([tx]).receipts
        assert receipt.status == TxStatus.OK, (receipt.code, receipt.message)
        return receipt

    def _approve(self, code: bytes) -> None:
        """Pass an ``approve_code`` proposal for ``code`` (once per code)."""
        code_hash = contracts.code_hash(self.c.suite, code)
        if contracts.is_approved(self.driver.state.tree, code_hash):
            return
        votes = voters()
        args = {"action": "approve_code", "subject": code_hash, "reason": "ERC-20 scenario"}
        opened = self._ok(self.c.tx(votes[0], "governance", "propose_contract", args))
        (pid,) = [e.attributes["proposal_id"] for e in opened.events if e.kind == "proposal_opened"]
        for who in votes[1 : approvals_needed(len(votes))]:
            self._ok(self.c.tx(who, "governance", "approve", {"proposal_id": pid}))
        assert contracts.is_approved(self.driver.state.tree, code_hash)

    @staticmethod
    def _logs(receipt: Receipt) -> tuple[Log, ...]:
        return tuple(
            Log(e.attributes["address"], tuple(e.attributes["topics"]), e.attributes["data"])
            for e in receipt.events
            if (e.module, e.kind) == ("contracts", "log")
        )

    def deploy(self, contract: toolchain.CompiledContract, args: bytes) -> tuple[bytes, Outcome]:
        self._approve(contract.init_code)
        tx_args = {
            "code": contract.init_code,
            "args": args,
            "gas_limit": 3_000_000,
            "abi": json.dumps(contract.abi),
        }
        receipt = self._ok(self.c.tx("broker-a-admin", "contracts", "deploy", tx_args))
        (deployed,) = [e for e in receipt.events if e.kind == "deployed"]
        address: bytes = deployed.attributes["address"]
        assert address == keys.create_address(self.holder, self.c.nonces[self.holder] - 1)
        return address, Outcome("", "", self._logs(receipt), None)

    def send(self, sender: bytes, to: bytes, data: bytes) -> Outcome:
        tx_args: dict[str, Any] = {"address": to, "data": data, "gas_limit": GAS}
        p = self._commit([self.c.tx(self.names[sender], "contracts", "call", tx_args)])
        (receipt,) = p.receipts
        if receipt.status != TxStatus.OK:
            # A failed transaction's only effect is its sender's nonce.
            assert set(p.writes) == {account_key(sender)}
            assert receipt.events == ()
            return Outcome(receipt.code, receipt.message, (), None)
        (called,) = [e for e in receipt.events if e.kind == "called"]
        return Outcome("", "", self._logs(receipt), called.attributes["output"])

    def view(self, to: bytes, data: bytes) -> bytes:
        state = self.driver.state
        result = contracts.query(
            state.tree,
            chain_id=state.chain_id,
            height=state.height + 1,
            time_ms=state.last_time_ms,
            parent_hash=state.last_block_hash,
            address=to,
            data=data,
        )
        assert result.ok, (result.code, result.message)
        return result.output


# ---------------------------------------------------------------------------------------------
# The token under test


class Token:
    """One deployed token and the ERC-20 calls of the scenario."""

    def __init__(self, backend: Backend, language: str) -> None:
        self.backend = backend
        self.language = language
        args = encode_constructor("Consortia Test Token", "CTT", 18, SUPPLY)
        self.address, self.deployment = backend.deploy(compiled(language), args)

    # state-changing calls
    def transfer(self, sender: bytes, to: bytes, value: int) -> Outcome:
        data = call_data("transfer(address,uint256)", to, value)
        return self.backend.send(sender, self.address, data)

    def approve(self, owner: bytes, spender: bytes, value: int) -> Outcome:
        data = call_data("approve(address,uint256)", spender, value)
        return self.backend.send(owner, self.address, data)

    def transfer_from(self, spender: bytes, owner: bytes, to: bytes, value: int) -> Outcome:
        data = call_data("transferFrom(address,address,uint256)", owner, to, value)
        return self.backend.send(spender, self.address, data)

    # views
    def uint(self, signature: str, *args: int | bytes) -> int:
        return int.from_bytes(self.backend.view(self.address, call_data(signature, *args)), "big")

    def balance(self, who: bytes) -> int:
        return self.uint("balanceOf(address)", who)

    def allowance(self, owner: bytes, spender: bytes) -> int:
        return self.uint("allowance(address,address)", owner, spender)

    def total_supply(self) -> int:
        return self.uint("totalSupply()")

    def text(self, signature: str) -> str:
        return decode_string(self.backend.view(self.address, call_data(signature)))

    def books(self) -> tuple[int, ...]:
        """Every balance and allowance among the scenario's accounts, and the supply."""
        b = self.backend
        people = (b.holder, b.recipient, b.other, ZERO)
        balances = tuple(self.balance(p) for p in people)
        allowances = tuple(self.allowance(o, s) for o in people for s in people)
        return (self.total_supply(), *balances, *allowances)

    # expected events
    def transfer_log(self, sender: bytes, to: bytes, value: int) -> Log:
        return Log(self.address, (TRANSFER_TOPIC, word(sender), word(to)), word(value))

    def approval_log(self, owner: bytes, spender: bytes, value: int) -> Log:
        return Log(self.address, (APPROVAL_TOPIC, word(owner), word(spender)), word(value))


def assert_succeeded(outcome: Outcome, *logs: Log) -> None:
    """Succeeded, returned true (when the backend reports return data), emitted exactly ``logs``."""
    assert outcome.ok, (outcome.code, outcome.message)
    if outcome.output is not None:
        assert outcome.output == word(1)  # EIP-20: returns (bool success)
    assert outcome.logs == logs


def assert_refused(token: Token, action: Callable[[], Outcome], reason: str) -> None:
    """``action`` reverts with ``reason``, emits nothing and changes no balance or allowance."""
    before = token.books()
    outcome = action()
    assert outcome.code == evm.CODE_REVERTED, (outcome.code, outcome.message)
    assert reason in outcome.message, outcome.message
    assert outcome.logs == ()
    assert token.books() == before


# ---------------------------------------------------------------------------------------------
# Fixtures


@cache
def compiled(language: str) -> toolchain.CompiledContract:
    if language == "vyper":
        return toolchain.compile_vyper((ERC20_DIR / "Token.vy").read_text(), name="Token")
    return toolchain.compile_solidity((ERC20_DIR / "Token.sol").read_text(), "Token")


def make_backend(name: str) -> Backend:
    if name == "engine":
        return EngineBackend()
    if name == "consortia":
        return ConsortiaBackend()
    raise AssertionError(f"unknown backend {name}")


@pytest.fixture(scope="module", params=["engine", "consortia"])
def backend(request: pytest.FixtureRequest) -> Backend:
    return make_backend(request.param)  # one chain per backend; every test deploys its tokens


@pytest.fixture(params=["vyper", "solidity"])
def token(request: pytest.FixtureRequest, backend: Backend) -> Token:
    return Token(backend, request.param)  # a fresh token per test: cases are independent


# ---------------------------------------------------------------------------------------------
# Deployment, supply and balances


def test_deployment_mints_the_supply_to_the_deployer_with_a_transfer_from_zero(
    token: Token,
) -> None:
    b = token.backend
    assert token.deployment.ok
    assert token.deployment.logs == (token.transfer_log(ZERO, b.holder, SUPPLY),)
    assert token.total_supply() == SUPPLY
    assert token.text("name()") == "Consortia Test Token"
    assert token.text("symbol()") == "CTT"
    assert token.uint("decimals()") == 18


def test_balance_of_is_zero_without_tokens_and_the_supply_for_the_holder(token: Token) -> None:
    b = token.backend
    assert token.balance(b.other) == 0
    assert token.balance(b.holder) == SUPPLY


# ---------------------------------------------------------------------------------------------
# transfer


def test_transfer_beyond_the_balance_reverts(token: Token) -> None:
    b = token.backend
    assert_refused(
        token, lambda: token.transfer(b.holder, b.recipient, SUPPLY + 1), "insufficient balance"
    )
    # Someone holding nothing cannot send even 1.
    assert_refused(token, lambda: token.transfer(b.other, b.holder, 1), "insufficient balance")


def test_transfer_of_the_whole_balance(token: Token) -> None:
    b = token.backend
    outcome = token.transfer(b.holder, b.recipient, SUPPLY)
    assert_succeeded(outcome, token.transfer_log(b.holder, b.recipient, SUPPLY))
    assert token.balance(b.holder) == 0
    assert token.balance(b.recipient) == SUPPLY
    assert token.total_supply() == SUPPLY


def test_transfer_of_zero_is_a_normal_transfer(token: Token) -> None:
    b = token.backend
    outcome = token.transfer(b.holder, b.recipient, 0)
    assert_succeeded(outcome, token.transfer_log(b.holder, b.recipient, 0))
    assert token.balance(b.holder) == SUPPLY
    assert token.balance(b.recipient) == 0
    # Also from an account that holds nothing.
    assert_succeeded(token.transfer(b.other, b.holder, 0), token.transfer_log(b.other, b.holder, 0))


def test_transfer_to_oneself_keeps_the_balance_and_emits_transfer(token: Token) -> None:
    b = token.backend
    outcome = token.transfer(b.holder, b.holder, 40)
    assert_succeeded(outcome, token.transfer_log(b.holder, b.holder, 40))
    assert token.balance(b.holder) == SUPPLY
    assert_refused(
        token, lambda: token.transfer(b.holder, b.holder, SUPPLY + 1), "insufficient balance"
    )


def test_transfer_to_the_zero_address_reverts(token: Token) -> None:
    b = token.backend
    assert_refused(
        token, lambda: token.transfer(b.holder, ZERO, SUPPLY), "transfer to the zero address"
    )


def test_transfers_chain_between_accounts(token: Token) -> None:
    b = token.backend
    assert_succeeded(
        token.transfer(b.holder, b.recipient, 70), token.transfer_log(b.holder, b.recipient, 70)
    )
    assert_succeeded(
        token.transfer(b.recipient, b.other, 30), token.transfer_log(b.recipient, b.other, 30)
    )
    assert_refused(token, lambda: token.transfer(b.recipient, b.other, 41), "insufficient balance")
    assert (token.balance(b.holder), token.balance(b.recipient), token.balance(b.other)) == (
        SUPPLY - 70,
        40,
        30,
    )


# ---------------------------------------------------------------------------------------------
# approve and allowance


def test_approve_sets_the_allowance_and_emits_approval(token: Token) -> None:
    b = token.backend
    assert token.allowance(b.holder, b.recipient) == 0
    outcome = token.approve(b.holder, b.recipient, SUPPLY)
    assert_succeeded(outcome, token.approval_log(b.holder, b.recipient, SUPPLY))
    assert token.allowance(b.holder, b.recipient) == SUPPLY
    assert token.allowance(b.recipient, b.holder) == 0  # allowances are directed


def test_approve_overwrites_the_previous_allowance(token: Token) -> None:
    b = token.backend
    assert_succeeded(
        token.approve(b.holder, b.recipient, 1), token.approval_log(b.holder, b.recipient, 1)
    )
    assert_succeeded(
        token.approve(b.holder, b.recipient, SUPPLY),
        token.approval_log(b.holder, b.recipient, SUPPLY),
    )
    assert token.allowance(b.holder, b.recipient) == SUPPLY
    # Lowering works the same way (no "increase only"), down to zero.
    assert_succeeded(
        token.approve(b.holder, b.recipient, 5), token.approval_log(b.holder, b.recipient, 5)
    )
    assert token.allowance(b.holder, b.recipient) == 5
    assert_succeeded(
        token.approve(b.holder, b.recipient, 0), token.approval_log(b.holder, b.recipient, 0)
    )
    assert token.allowance(b.holder, b.recipient) == 0


def test_approve_beyond_the_balance_is_allowed(token: Token) -> None:
    b = token.backend
    outcome = token.approve(b.holder, b.recipient, SUPPLY + 1)
    assert_succeeded(outcome, token.approval_log(b.holder, b.recipient, SUPPLY + 1))
    assert token.allowance(b.holder, b.recipient) == SUPPLY + 1
    # An account with no tokens may approve too.
    assert_succeeded(
        token.approve(b.other, b.recipient, 7), token.approval_log(b.other, b.recipient, 7)
    )
    assert token.allowance(b.other, b.recipient) == 7


def test_approve_to_the_zero_address_reverts(token: Token) -> None:
    b = token.backend
    assert_refused(
        token, lambda: token.approve(b.holder, ZERO, SUPPLY), "approve to the zero address"
    )


# ---------------------------------------------------------------------------------------------
# transferFrom


def test_transfer_from_with_enough_allowance_moves_and_spends_it(token: Token) -> None:
    b = token.backend
    assert token.approve(b.holder, b.recipient, SUPPLY).ok
    outcome = token.transfer_from(b.recipient, b.holder, b.other, SUPPLY)
    # Transfer only: like OpenZeppelin v5, spending an allowance emits no Approval.
    assert_succeeded(outcome, token.transfer_log(b.holder, b.other, SUPPLY))
    assert token.balance(b.holder) == 0
    assert token.balance(b.other) == SUPPLY
    assert token.balance(b.recipient) == 0  # the spender moves, it does not receive
    assert token.allowance(b.holder, b.recipient) == 0


def test_transfer_from_decreases_the_allowance_by_the_value(token: Token) -> None:
    b = token.backend
    assert token.approve(b.holder, b.recipient, 10).ok
    assert_succeeded(
        token.transfer_from(b.recipient, b.holder, b.other, 3),
        token.transfer_log(b.holder, b.other, 3),
    )
    assert token.allowance(b.holder, b.recipient) == 7
    assert_succeeded(
        token.transfer_from(b.recipient, b.holder, b.recipient, 7),
        token.transfer_log(b.holder, b.recipient, 7),
    )
    assert token.allowance(b.holder, b.recipient) == 0
    assert (token.balance(b.other), token.balance(b.recipient)) == (3, 7)
    assert_refused(
        token,
        lambda: token.transfer_from(b.recipient, b.holder, b.other, 1),
        "insufficient allowance",
    )


def test_transfer_from_reverts_when_the_owner_lacks_the_balance(token: Token) -> None:
    b = token.backend
    assert token.approve(b.holder, b.recipient, SUPPLY).ok
    assert token.transfer(b.holder, b.other, 1).ok
    assert_refused(
        token,
        lambda: token.transfer_from(b.recipient, b.holder, b.other, SUPPLY),
        "insufficient balance",
    )


def test_transfer_from_beyond_the_allowance_reverts(token: Token) -> None:
    b = token.backend
    assert token.approve(b.holder, b.recipient, SUPPLY - 1).ok
    assert_refused(
        token,
        lambda: token.transfer_from(b.recipient, b.holder, b.other, SUPPLY),
        "insufficient allowance",
    )


def test_transfer_from_within_the_allowance_but_beyond_the_balance_reverts(token: Token) -> None:
    b = token.backend
    allowance = SUPPLY - 1
    assert token.approve(b.holder, b.recipient, allowance).ok
    assert token.transfer(b.holder, b.other, 2).ok
    assert_refused(
        token,
        lambda: token.transfer_from(b.recipient, b.holder, b.other, allowance),
        "insufficient balance",
    )
    assert token.allowance(b.holder, b.recipient) == allowance  # the refusal spent nothing


def test_transfer_from_without_approval_reverts(token: Token) -> None:
    b = token.backend
    assert_refused(
        token, lambda: token.transfer_from(b.other, b.holder, b.other, 1), "insufficient allowance"
    )


def test_unlimited_allowance_is_never_decreased_and_emits_no_approval(token: Token) -> None:
    b = token.backend
    assert token.approve(b.holder, b.recipient, MAX_UINT256).ok
    outcome = token.transfer_from(b.recipient, b.holder, b.other, 1)
    assert_succeeded(outcome, token.transfer_log(b.holder, b.other, 1))
    assert token.allowance(b.holder, b.recipient) == MAX_UINT256
    assert_succeeded(
        token.transfer_from(b.recipient, b.holder, b.other, SUPPLY - 1),
        token.transfer_log(b.holder, b.other, SUPPLY - 1),
    )
    assert token.allowance(b.holder, b.recipient) == MAX_UINT256
    # Unlimited spending is still bounded by the owner's balance.
    assert_refused(
        token,
        lambda: token.transfer_from(b.recipient, b.holder, b.other, 1),
        "insufficient balance",
    )


def test_one_below_unlimited_is_an_ordinary_allowance(token: Token) -> None:
    b = token.backend
    assert token.approve(b.holder, b.recipient, MAX_UINT256 - 1).ok
    assert token.transfer_from(b.recipient, b.holder, b.other, 5).ok
    assert token.allowance(b.holder, b.recipient) == MAX_UINT256 - 6


def test_transfer_from_to_the_zero_address_reverts(token: Token) -> None:
    b = token.backend
    assert token.approve(b.holder, b.recipient, SUPPLY).ok
    assert_refused(
        token,
        lambda: token.transfer_from(b.recipient, b.holder, ZERO, SUPPLY),
        "transfer to the zero address",
    )


def test_transfer_from_the_zero_address_reverts(token: Token) -> None:
    b = token.backend
    assert_refused(
        token,
        lambda: token.transfer_from(b.recipient, ZERO, b.recipient, 0),
        "transfer from the zero address",
    )


def test_zero_value_transfer_from_without_allowance_is_a_normal_transfer(token: Token) -> None:
    b = token.backend
    outcome = token.transfer_from(b.other, b.holder, b.recipient, 0)
    assert_succeeded(outcome, token.transfer_log(b.holder, b.recipient, 0))
    assert token.balance(b.holder) == SUPPLY
    assert token.allowance(b.holder, b.other) == 0


def test_spender_may_send_to_itself_and_owner_to_itself_through_transfer_from(
    token: Token,
) -> None:
    b = token.backend
    assert token.approve(b.holder, b.holder, 50).ok  # approving oneself is an ordinary approval
    assert_succeeded(
        token.transfer_from(b.holder, b.holder, b.holder, 20),
        token.transfer_log(b.holder, b.holder, 20),
    )
    assert token.balance(b.holder) == SUPPLY
    assert token.allowance(b.holder, b.holder) == 30
