"""A deterministic EVM over consortia's authenticated state: ``execute(view, message, block)``.

The engine is py-evm's Cancun interpreter, driven message by message without py-evm's chain,
block or trie machinery: ``OverlayAccountDB`` gives it consortia's state (``keys`` says where
each piece lives), and this module builds the message, runs it and turns the outcome into an
``ExecutionResult``. The result carries the state ``writes`` to apply, non-empty only when the
message succeeded: a revert, an out-of-gas run or any other EVM fault changes nothing.

Determinism. Everything the EVM can observe comes from the message and the ``BlockContext``
(height, header time, parent hash, a chain id derived from the chain's name); there is no
randomness (PREVRANDAO is the parent block hash), no coinbase (the zero address), no fees (gas
price and base fee are 0) and no ether (every balance is 0 and value is refused). Gas bounds the
work of every message; the per-message limit is the caller's and may not exceed the block's.

py-evm runs a nested CALL as a nested Python call (about 6 Python frames per EVM call level),
so a deep EVM recursion is a deep Python recursion, and part of it runs on the C stack. On the
caller's thread its outcome would depend on the caller: a thread with a small stack crashes the
process (measured: a 256 KiB thread stack segfaults at a 436-level Solidity recursion), and a
``RecursionError`` would depend on how deep the caller already was, so could differ between
nodes. Each message therefore runs on one engine thread with a 512 MiB (virtual) stack, started at
a fixed depth, with a recursion limit high enough that the EVM's own call-depth limit (1024) and
gas always end a recursion first. (py-evm itself raises the interpreter's limit to 100 000 when
imported; the engine only makes sure it is at least what it needs.)
"""

from __future__ import annotations

import enum
import functools
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar

from eth.abc import ComputationAPI, MessageAPI, StateAPI, TransactionContextAPI
from eth.constants import CREATE_CONTRACT_ADDRESS
from eth.exceptions import (
    InsufficientStack,
    InvalidInstruction,
    InvalidJumpDestination,
    OutOfGas,
    Revert,
    StackDepthLimit,
    VMError,
    WriteProtection,
)
from eth.vm.execution_context import ExecutionContext
from eth.vm.forks.cancun.computation import CANCUN_PRECOMPILES, CancunComputation
from eth.vm.forks.cancun.state import CancunState
from eth.vm.forks.cancun.transaction_context import CancunTransactionContext
from eth.vm.message import Message
from eth_hash.auto import keccak
from eth_typing import Address, BlockNumber, Hash32

from consortia.contracts import keys, precompiles
from consortia.contracts.overlay import OverlayAccountDB, StateView
from consortia.ledger.types import Event

if TYPE_CHECKING:
    from consortia.contracts.precompiles import NativeBridge, NativeSession

# ``precompiles`` is used as a module object, only when a message runs: it imports the native
# modules, whose package imports the contracts module, which imports this one.

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# Limits and gas schedule

DEFAULT_BLOCK_GAS_LIMIT: Final = 30_000_000
"""The GASLIMIT a block context reports unless told otherwise, and the most a message may use."""

MAX_CODE_SIZE: Final = 24_576  # EIP-170, enforced by the interpreter on deployment
MAX_INITCODE_SIZE: Final = 2 * MAX_CODE_SIZE  # EIP-3860
MAX_CALLDATA_SIZE: Final = 128 * 1024

# Intrinsic gas, as an Ethereum transaction pays it before its first opcode: a base cost, the
# calldata (init code for a deployment) by byte, and the deployment surcharge. The per-word
# init-code cost (EIP-3860) is charged by the interpreter itself.
GAS_BASE: Final = 21_000
GAS_CREATE: Final = 32_000
GAS_DATA_ZERO: Final = 4
GAS_DATA_NONZERO: Final = 16

MAX_REFUND_QUOTIENT: Final = 5  # EIP-3529: refunds return at most a fifth of the gas used


def intrinsic_gas(data: bytes, *, create: bool) -> int:
    """The gas a message costs before it runs (see the constants above)."""
    zeros = data.count(0)
    return (
        GAS_BASE
        + (GAS_CREATE if create else 0)
        + zeros * GAS_DATA_ZERO
        + (len(data) - zeros) * GAS_DATA_NONZERO
    )


def evm_chain_id(chain_id: str) -> int:
    """The CHAINID a contract sees on chain ``chain_id``: the first 6 bytes of
    ``keccak256("consortia/evm/chain-id/" + chain_id)``, big-endian (below 2**48, so every
    JavaScript tool represents it exactly)."""
    digest = keccak(b"consortia/evm/chain-id/" + chain_id.encode())
    return int.from_bytes(digest[:6], "big")


# ---------------------------------------------------------------------------------------------
# Inputs and outputs


@dataclass(frozen=True)
class BlockContext:
    """What a contract may observe about the block it runs in, all from the block header.

    ``time_ms`` is the header's BFT time; TIMESTAMP is it in whole seconds. PREVRANDAO and
    BLOCKHASH(height - 1) are ``parent_hash``; older BLOCKHASH values are 0.
    """

    chain_id: str
    height: int
    time_ms: int
    parent_hash: bytes
    gas_limit: int = DEFAULT_BLOCK_GAS_LIMIT

    def __post_init__(self) -> None:
        if self.height < 1:
            raise ValueError("a block context's height is at least 1")
        if self.time_ms < 0:
            raise ValueError("a block context's time is not negative")
        if len(self.parent_hash) != keys.WORD_SIZE:
            raise ValueError("a block context's parent hash is 32 bytes")
        if self.gas_limit < GAS_BASE:
            raise ValueError(f"a block gas limit is at least {GAS_BASE}")


@dataclass(frozen=True)
class EvmMessage:
    """One top-level EVM message: a deployment (``to`` is None) or a call.

    ``sender`` is the consortia account address of the transaction's signer; ``nonce`` is the
    transaction's nonce, which fixes a deployment's address (``keys.create_address``). ``data``
    is the init code of a deployment, the ABI-encoded calldata of a call. A message carries no
    value: contract accounts hold none.
    """

    sender: bytes
    to: bytes | None
    data: bytes
    gas_limit: int
    nonce: int = 0
    static: bool = False  # a read-only query: any state change faults (STATICCALL rules)


class Status(enum.Enum):
    OK = "ok"
    REVERTED = "reverted"  # REVERT: the contract refused, its reason is in ``output``
    OUT_OF_GAS = "out_of_gas"
    FAULT = "fault"  # any other EVM exception (bad opcode, bad jump, stack, depth, static write)
    REJECTED = "rejected"  # the message could not start; no opcode ran


# Stable codes, as on consortia receipts (clients and auditors key on them).
CODE_REVERTED: Final = "EVM_REVERTED"
CODE_OUT_OF_GAS: Final = "EVM_OUT_OF_GAS"
CODE_INVALID_INSTRUCTION: Final = "EVM_INVALID_INSTRUCTION"
CODE_INVALID_JUMP: Final = "EVM_INVALID_JUMP"
CODE_STACK: Final = "EVM_STACK_ERROR"
CODE_CALL_DEPTH: Final = "EVM_CALL_DEPTH"
CODE_STATIC_WRITE: Final = "EVM_STATIC_STATE_CHANGE"
CODE_FAULT: Final = "EVM_FAULT"
CODE_BAD_MESSAGE: Final = "EVM_BAD_MESSAGE"
CODE_GAS_LIMIT: Final = "EVM_GAS_LIMIT"
CODE_NO_CONTRACT: Final = "EVM_NO_CONTRACT"
CODE_ADDRESS_COLLISION: Final = "EVM_ADDRESS_COLLISION"


@dataclass(frozen=True)
class EvmLog:
    """A LOG record: the emitting contract, its topics (32-byte words) and data."""

    address: bytes
    topics: tuple[bytes, ...]
    data: bytes


@dataclass(frozen=True)
class ExecutionResult:
    """The outcome of one message. ``writes`` is empty unless ``status`` is OK.

    ``code`` is "" when OK, else a stable ``EVM_*`` code; ``message`` is for people. ``output``
    is the return data (the revert reason's ABI encoding after a REVERT). ``gas_used`` includes
    the intrinsic gas and is net of refunds; a fault other than REVERT uses all the gas.

    Native calls (``precompiles``): ``native_events`` are the events the native modules emitted
    in successful calls (empty unless OK), and ``events_in_order`` interleaves them with ``logs``
    in execution order (what a receipt lists). ``native_code``/``native_message`` are set when
    the message reverted with the payload of a native rule's failure (``PER_PAYMENT_LIMIT_EXCEEDED``
    ...): the receipt's code is then the native one (``receipt_code``).
    """

    status: Status
    code: str
    message: str
    gas_used: int
    output: bytes = b""
    created: bytes | None = None
    logs: tuple[EvmLog, ...] = ()
    writes: dict[bytes, bytes | None] = field(default_factory=dict)
    native_events: tuple[Event, ...] = ()
    events_in_order: tuple[EvmLog | Event, ...] = ()
    native_code: str = ""
    native_message: str = ""

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def receipt_code(self) -> str:
        """The code a receipt carries: a native rule's when one failed the message, else
        ``code``."""
        return self.native_code or self.code


def _rejected(code: str, message: str) -> ExecutionResult:
    return ExecutionResult(Status.REJECTED, code, message, 0)


# ---------------------------------------------------------------------------------------------
# The engine thread


# Python frames per EVM call level: 6 measured on py-evm 0.12.1b1 (a self-CALL recursion), with a
# margin for heavier call paths (CREATE, DELEGATECALL, precompiles).
_FRAMES_PER_CALL_LEVEL: Final = 16
_EVM_DEPTH_LIMIT: Final = 1024
_RECURSION_LIMIT: Final = _FRAMES_PER_CALL_LEVEL * (_EVM_DEPTH_LIMIT + 2) + 1_000
_ENGINE_STACK_BYTES: Final = 512 * 1024 * 1024  # virtual; only the pages used are committed

_ENGINE_THREAD_NAME: Final = "consortia-evm"
_engine_lock = threading.Lock()
_engine: ThreadPoolExecutor | None = None


def _engine_thread_init() -> None:
    # The recursion limit is per interpreter (py-evm already raised it on import).
    if sys.getrecursionlimit() < _RECURSION_LIMIT:
        sys.setrecursionlimit(_RECURSION_LIMIT)


def _on_engine_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` on the engine thread (created on first use) and return its result."""
    global _engine  # noqa: PLW0603 - one engine thread per process, created lazily
    if threading.current_thread().name.startswith(_ENGINE_THREAD_NAME):
        return fn()  # already there (a nested use): waiting on itself would deadlock
    with _engine_lock:
        if _engine is None:
            previous = threading.stack_size(_ENGINE_STACK_BYTES)
            try:
                _engine = ThreadPoolExecutor(
                    max_workers=1,
                    thread_name_prefix=_ENGINE_THREAD_NAME,
                    initializer=_engine_thread_init,
                )
                # Start the thread now, while the large stack size is in force.
                _engine.submit(lambda: None).result()
            finally:
                threading.stack_size(previous)
        engine = _engine
    return engine.submit(fn).result()


# ---------------------------------------------------------------------------------------------
# Execution


class _ConsortiaState(CancunState):
    """Cancun's state with the account database replaced by the overlay, and the message's
    native bridge (None: native calls revert) where the precompiles find it."""

    def __init__(
        self,
        overlay: OverlayAccountDB,
        context: ExecutionContext,
        native_session: NativeSession | None,
    ) -> None:
        # Not calling super().__init__: it would build a trie-backed account database.
        self._db = None  # type: ignore[assignment]
        self.execution_context = context
        self._account_db = overlay
        self.overlay = overlay
        self.native_session = native_session
        # Revert payloads of frames refused because their code is frozen (``CONTRACT_FROZEN``),
        # so a message ending in one reports that code; and the freeze status read per address
        # (a message cannot freeze or unfreeze a contract, so it is fixed for the message).
        self.frozen_failures: dict[bytes, tuple[str, str]] = {}
        self.frozen_code: dict[bytes, bool] = {}


_POINT_EVALUATION_ADDRESS: Final = Address((0x0A).to_bytes(keys.ADDRESS_SIZE, "big"))
_POINT_EVALUATION_GAS: Final = 50_000  # EIP-4844's price, charged before the refusal


def _no_point_evaluation(computation: ComputationAPI) -> ComputationAPI:
    """EIP-4844's point evaluation (0x0a), refused: a consortia chain carries no blobs, and
    py-evm's version reloads the KZG trusted setup on every call (about 2 s of CPU for 50 000
    gas), so one transaction could stall every node for minutes. It faults at its gas price."""
    computation.consume_gas(_POINT_EVALUATION_GAS, reason="point evaluation (refused)")
    raise VMError("the point evaluation precompile (0x0a) is not available: no blobs here")


# py-evm computes BLAKE2 F (0x09) and the BN254 pairing (0x08) in pure Python: measured about
# 160k and 250k gas/s at Ethereum's prices against about 4.7M gas/s for ordinary opcodes, so a
# block's gas of them would keep every node busy 20-30 times longer. A surcharge, charged before
# py-evm's own price, brings them in line (about 30 gas a round; 600 000 gas a pair and per
# call, the final exponentiation costing about one pair).
_BLAKE2_ADDRESS: Final = Address((0x09).to_bytes(keys.ADDRESS_SIZE, "big"))
_PAIRING_ADDRESS: Final = Address((0x08).to_bytes(keys.ADDRESS_SIZE, "big"))
_BLAKE2_INPUT_SIZE: Final = 213  # EIP-152; other sizes are refused by py-evm
_BLAKE2_ROUND_SURCHARGE: Final = 30
_PAIRING_SURCHARGE: Final = 600_000  # per pair and once per call
_PAIRING_INPUT_SIZE: Final = 192


def _surcharged(
    address: Address, surcharge: Callable[[bytes], int]
) -> Callable[[ComputationAPI], ComputationAPI]:
    inner = CANCUN_PRECOMPILES[address]

    def run(computation: ComputationAPI) -> ComputationAPI:
        computation.consume_gas(surcharge(computation.msg.data_as_bytes), "py-evm surcharge")
        return inner(computation)  # type: ignore[no-any-return]

    return run


def _blake2_surcharge(data: bytes) -> int:
    if len(data) != _BLAKE2_INPUT_SIZE:
        return 0
    return int.from_bytes(data[:4], "big") * _BLAKE2_ROUND_SURCHARGE


def _pairing_surcharge(data: bytes) -> int:
    return (len(data) // _PAIRING_INPUT_SIZE + 1) * _PAIRING_SURCHARGE


@functools.cache
def _precompile_table() -> dict[Address, Callable[[ComputationAPI], Any]]:
    return {
        **CANCUN_PRECOMPILES,
        _PAIRING_ADDRESS: _surcharged(_PAIRING_ADDRESS, _pairing_surcharge),
        _BLAKE2_ADDRESS: _surcharged(_BLAKE2_ADDRESS, _blake2_surcharge),
        _POINT_EVALUATION_ADDRESS: _no_point_evaluation,
        **precompiles.PRECOMPILES,
    }


def _frozen_code_failure(state: _ConsortiaState, message: MessageAPI) -> tuple[str, str] | None:
    """(code, reason) when ``message`` is an inner frame whose code is a frozen contract's.

    The top-level frame is the ``contracts`` module's business (``call`` refuses a frozen
    target, ``query`` reads it); a deployment runs fresh init code. Every other frame — CALL,
    STATICCALL, DELEGATECALL, CALLCODE — runs the code at ``code_address``, so that is what is
    checked: a frozen library is not borrowed either. One overlay read per address and message.
    """
    if message.depth == 0 or message.is_create:
        return None
    address = bytes(message.code_address)
    frozen = state.frozen_code.get(address)
    if frozen is None:
        frozen = state.overlay.read(precompiles.frozen_key(address)) is not None
        state.frozen_code[address] = frozen
    if not frozen:
        return None
    return precompiles.CODE_CONTRACT_FROZEN, f"contract {address.hex()} is frozen"


class _ConsortiaComputation(CancunComputation):
    """Cancun's computation with consortia's native precompiles next to the standard ones, and
    frames into frozen contracts refused."""

    @property
    def precompiles(self) -> dict[Address, Callable[[ComputationAPI], Any]]:
        return _precompile_table()

    @classmethod
    def apply_computation(
        cls,
        state: StateAPI,
        message: MessageAPI,
        transaction_context: TransactionContextAPI,
        parent_computation: ComputationAPI | None = None,
    ) -> ComputationAPI:
        """py-evm's frame, except that a frame whose code is a frozen contract's fails at once
        like a REVERT with ``NativeCallFailed("CONTRACT_FROZEN", ...)``: the caller keeps its
        gas and may catch it; bubbled up uncaught, the receipt's code is ``CONTRACT_FROZEN``."""
        assert isinstance(state, _ConsortiaState)
        failure = _frozen_code_failure(state, message)
        if failure is None:
            return super().apply_computation(
                state, message, transaction_context, parent_computation=parent_computation
            )
        payload = precompiles.native_error(*failure)
        state.frozen_failures[payload] = failure
        with cls(state, message, transaction_context) as computation:
            # The context manager records the Revert as the frame's error (gas is kept).
            computation.output = payload
            raise Revert(payload)
        return computation


def _execution_context(block: BlockContext) -> ExecutionContext:
    return ExecutionContext(
        coinbase=Address(bytes(keys.ADDRESS_SIZE)),
        timestamp=block.time_ms // 1000,
        block_number=BlockNumber(block.height),
        difficulty=0,
        mix_hash=Hash32(block.parent_hash),
        gas_limit=block.gas_limit,
        prev_hashes=(Hash32(block.parent_hash),),
        chain_id=evm_chain_id(block.chain_id),
        base_fee_per_gas=0,
        excess_blob_gas=0,
    )


def _check_message(
    view: StateView, message: EvmMessage, block: BlockContext
) -> tuple[str, str] | None:
    """Why ``message`` cannot start, as (stable code, reason), or None when it can."""
    if len(message.sender) != keys.ADDRESS_SIZE:
        return CODE_BAD_MESSAGE, "the sender is not a 20-byte address"
    if message.to is not None and len(message.to) != keys.ADDRESS_SIZE:
        return CODE_BAD_MESSAGE, "the recipient is not a 20-byte address"
    if message.nonce < 0:
        return CODE_BAD_MESSAGE, "the nonce is negative"
    if message.to is None:
        if len(message.data) > MAX_INITCODE_SIZE:
            return CODE_BAD_MESSAGE, f"init code exceeds {MAX_INITCODE_SIZE} bytes"
        if message.static:
            return CODE_BAD_MESSAGE, "a deployment cannot be a read-only query"
    elif len(message.data) > MAX_CALLDATA_SIZE:
        return CODE_BAD_MESSAGE, f"calldata exceeds {MAX_CALLDATA_SIZE} bytes"
    if message.gas_limit > block.gas_limit:
        return CODE_GAS_LIMIT, (
            f"gas limit {message.gas_limit} exceeds the block's {block.gas_limit}"
        )
    needed = intrinsic_gas(message.data, create=message.to is None)
    if message.gas_limit < needed:
        return CODE_GAS_LIMIT, f"gas limit {message.gas_limit} is below the intrinsic {needed}"
    if message.to is not None and not view.get(keys.code_key(message.to)):
        return CODE_NO_CONTRACT, f"no contract at {message.to.hex()}"
    return None


def _fault_code(error: VMError) -> tuple[Status, str]:
    if isinstance(error, Revert):
        return Status.REVERTED, CODE_REVERTED
    if isinstance(error, OutOfGas):
        return Status.OUT_OF_GAS, CODE_OUT_OF_GAS
    if isinstance(error, InvalidInstruction):
        return Status.FAULT, CODE_INVALID_INSTRUCTION
    if isinstance(error, InvalidJumpDestination):
        return Status.FAULT, CODE_INVALID_JUMP
    if isinstance(error, InsufficientStack):
        return Status.FAULT, CODE_STACK
    if isinstance(error, StackDepthLimit):
        return Status.FAULT, CODE_CALL_DEPTH
    if isinstance(error, WriteProtection):
        return Status.FAULT, CODE_STATIC_WRITE
    # FullStack, OutOfBoundsRead, ReservedBytesInCode, a code size over EIP-170, ...
    if type(error).__name__ == "FullStack":
        return Status.FAULT, CODE_STACK
    return Status.FAULT, CODE_FAULT


_ERROR_STRING_SELECTOR: Final = bytes.fromhex("08c379a0")  # Error(string), Solidity and Vyper
_MAX_REASON_BYTES: Final = 512  # of a revert reason quoted in a receipt's message


def _describe(error: VMError, output: bytes) -> str:
    """A message for people: a revert's reason string when it has one, else the fault."""
    if not isinstance(error, Revert):
        return str(error) or type(error).__name__
    if output[:4] == _ERROR_STRING_SELECTOR and len(output) >= 68:
        length = min(int.from_bytes(output[36:68], "big"), len(output) - 68)
        # The receipt keeps this message on every node, and a long reason costs only memory
        # gas: quote a bounded prefix (a cut UTF-8 sequence decodes as U+FFFD, deterministically).
        shown = min(length, _MAX_REASON_BYTES)
        reason = output[68 : 68 + shown].decode("utf-8", errors="replace")
        more = f" ... ({length} bytes)" if length > shown else ""
        return f"the contract reverted: {reason}{more}"
    return "the contract reverted"


def _failure_chain(computation: ComputationAPI) -> str:
    """Where a failure that bubbled up began, e.g. the out-of-gas at the bottom of a recursion
    that each level turned into a revert ("" when the failing frame failed on its own)."""
    frame = computation
    while frame.children and frame.children[-1].is_error:
        frame = frame.children[-1]
    if frame is computation:
        return ""
    _, code = _fault_code(frame.error)
    return f" (it began at call depth {frame.msg.depth}: {code})"


def _ordered(
    computation: ComputationAPI, overlay: OverlayAccountDB
) -> tuple[tuple[EvmLog, ...], tuple[EvmLog | Event, ...]]:
    """The message's LOGs, and those merged with its native events by log counter."""
    numbered: list[tuple[int, EvmLog | Event]] = [
        (order, EvmLog(bytes(address), tuple(t.to_bytes(32, "big") for t in topics), bytes(data)))
        for order, address, topics, data in computation.get_raw_log_entries()
    ]
    logs = tuple(item for _, item in numbered if isinstance(item, EvmLog))
    numbered.extend(overlay.native_events)
    numbered.sort(key=lambda pair: pair[0])  # counters are unique within a message
    return logs, tuple(item for _, item in numbered)


def _run(
    view: StateView, message: EvmMessage, block: BlockContext, native: NativeBridge | None
) -> ExecutionResult:
    problem = _check_message(view, message, block)
    if problem is not None:
        return _rejected(*problem)
    overlay = OverlayAccountDB(view)
    session = None if native is None else native.session(overlay)
    state = _ConsortiaState(overlay, _execution_context(block), session)
    intrinsic = intrinsic_gas(message.data, create=message.to is None)
    sender = Address(message.sender)
    created: bytes | None = None
    if message.to is None:
        created = keys.create_address(message.sender, message.nonce)
        if overlay.account_exists(Address(created)):  # a contract, or a registered account
            return _rejected(CODE_ADDRESS_COLLISION, f"address {created.hex()} is taken")
        target = Address(created)
        evm_message = Message(
            gas=message.gas_limit - intrinsic,
            to=CREATE_CONTRACT_ADDRESS,
            sender=sender,
            value=0,
            data=b"",
            code=message.data,
            create_address=target,
        )
    else:
        target = Address(message.to)
        evm_message = Message(
            gas=message.gas_limit - intrinsic,
            to=target,
            sender=sender,
            value=0,
            data=message.data,
            code=overlay.get_code(target),
            is_static=message.static,
        )
    # EIP-2929: the sender and the target start warm (precompiles are warm by rule).
    overlay.mark_address_warm(sender)
    overlay.mark_address_warm(target)
    context = CancunTransactionContext(gas_price=0, origin=sender, blob_versioned_hashes=[])
    computation: ComputationAPI
    if message.to is None:
        computation = _ConsortiaComputation.apply_create_message(state, evm_message, context)
    else:
        computation = _ConsortiaComputation.apply_message(state, evm_message, context)
    state.clear_transient_storage()

    gas_used = message.gas_limit - computation.get_gas_remaining()
    if computation.is_error:
        error = computation.error
        status, code = _fault_code(error)
        output = bytes(computation.output) if status is Status.REVERTED else b""
        native_failure = state.frozen_failures.get(output) or (
            None if session is None else session.failures.get(output)
        )
        if native_failure is not None:
            native_code, native_message = native_failure
            return ExecutionResult(
                status,
                code,
                f"a native call failed: {native_code}: {native_message}",
                gas_used,
                output=output,
                native_code=native_code,
                native_message=native_message,
            )
        return ExecutionResult(
            status,
            code,
            _describe(error, bytes(computation.output)) + _failure_chain(computation),
            gas_used,
            output=output,
        )
    # SELFDESTRUCT (EIP-6780): only a contract created in this message can be removed.
    for address in computation.get_accounts_for_deletion():
        overlay.delete_account(address)
    gas_used -= min(computation.get_gas_refund(), gas_used // MAX_REFUND_QUOTIENT)
    overlay.lock_changes()
    writes = {k: v for k, v in sorted(overlay.writes.items()) if view.get(k) != v}
    logs, events_in_order = _ordered(computation, overlay)
    return ExecutionResult(
        Status.OK,
        "",
        "",
        gas_used,
        output=b"" if created is not None else bytes(computation.output),
        created=created,
        logs=logs,
        writes=writes,
        native_events=tuple(event for _, event in overlay.native_events),
        events_in_order=events_in_order,
    )


def execute(
    view: StateView,
    message: EvmMessage,
    block: BlockContext,
    *,
    native: NativeBridge | None = None,
) -> ExecutionResult:
    """Run ``message`` against ``view`` in ``block``; never changes ``view``.

    Guarantees: the same view contents, message and block give the same result on every node;
    the result's ``writes`` (consortia state keys, sorted; ``None`` deletes) are non-empty only
    when the status is OK, and applying them is the message's whole effect on the state; the
    work done is bounded by ``message.gas_limit``. Any problem with the message itself is a
    REJECTED result with a stable code, not an exception.

    ``native`` lets contracts call the native modules (``precompiles``); without it those calls
    revert with ``NATIVE_UNAVAILABLE``. The ``contracts`` module, running transaction context
    ``ctx``, builds it from that same context and applies the whole result::

        result = evm.execute(ctx, message, block, native=NativeBridge(ctx))
        if not result.ok:
            raise <a TxFailure whose code is result.receipt_code>(result.message)
        for key, value in result.writes.items():   # contract and native module keys alike
            ctx.put(key, value) if value is not None else ctx.delete(key)
        for item in result.events_in_order:        # LOGs and native events, in order
            if isinstance(item, evm.EvmLog):
                ctx.emit("contracts", "log", address=..., topics=..., data=...)
            else:
                ctx.emit(item.module, item.kind, **item.attributes)

    A read-only query passes a ``TxContext`` over the head state (any sender) as ``view`` and
    bridge, with ``static=True``: view functions of the precompiles work, others fault.
    """
    return _on_engine_thread(lambda: _run(view, message, block, native))
