"""Native modules as precompiles: a contract calls consortia's own rules at fixed addresses.

Three precompiled contracts expose native module functions to the EVM, one address per module
(the Solidity and Vyper interfaces are in ``examples/contracts/interfaces/``):

- ``0x…0c0001`` registry: ``hasRole(address account, string role) view returns (bool)``;
- ``0x…0c0002`` e-CNY: ``walletBalance(string walletId) view returns (uint256)``,
  ``payFromWallet(string fromWallet, string toWallet, uint256 amountFen, string memo)``,
  ``createEscrow(string escrowId, string fromWallet, string toWallet, uint256 amountFen,
  string condition, uint256 releaseAtMs, address confirmer, uint256 expiresAtMs, string memo)``,
  ``releaseEscrow(string escrowId)``, ``refundEscrow(string escrowId)``;
- ``0x…0c0003`` securities: ``holdingOf(string code, string account) view returns (uint256
  balance, uint256 free)``, ``transferShares(string code, string fromAccount, string toAccount,
  uint256 shares)``.

The state-changing functions return ``bool`` (always true: a failure reverts), so compilers that
check a callee's code size before a call without return data do not refuse a precompile.

A precompile runs the native module's *own* function (``ecny.pay``, ``securities.move_shares``,
...) — every rule a direct transaction meets (wallet limits and freezes, account freezes, lock-ups,
suitability, halts) applies unchanged — on a child ``TxContext`` whose ``sender`` is the calling
contract's address, whose reads go through the running message's overlay (the contract's own
earlier writes and native calls are visible), and whose writes and events land in the overlay's
journal only when the native call succeeded. So a frame that reverts later undoes them like its
storage writes, and a message that fails changes nothing at all.

A contract acts only for itself: it spends from wallets it owns (``Wallet.owner`` is the contract
address) and moves shares out of securities accounts whose investor's ``address`` is the contract.
An operator bank opens such a wallet, and a broker such an investor, exactly as for a person
(``ecny.open_wallet`` and ``investors.open_investor`` accept a deployed contract's address).

A native rule that fails reverts the precompile call with the ABI-encoded custom error
``NativeCallFailed(string code, string message)``; ``code`` is the module's stable code
(``PER_PAYMENT_LIMIT_EXCEEDED``, ``ACCOUNT_FROZEN``, ...). A contract may catch it; if the message
ends in that very revert payload (Solidity and Vyper bubble a failed call's revert data), the
engine reports the native code as ``ExecutionResult.native_code``. Bad calldata reverts with
``BAD_ARGUMENTS``; a precompile reached by DELEGATECALL or CALLCODE (which would let a contract
act as its caller) reverts with ``NOT_AUTHORIZED``; a frozen contract (``contracts.freeze``)
reverts with ``CONTRACT_FROZEN`` (only a direct query runs a frozen contract's code: the engine
fails every inner frame into it with the same payload); a state-changing
function under STATICCALL faults like any state change there; without a native bridge (see
``NativeBridge``) every call reverts with ``NATIVE_UNAVAILABLE``.

Gas: each function costs a fixed amount (``Function.gas``), charged before it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn, cast

from eth.abc import ComputationAPI
from eth.exceptions import Revert, WriteProtection
from eth_hash.auto import keccak
from eth_typing import Address

from consortia import codec
from consortia.contracts import keys
from consortia.contracts.overlay import OverlayAccountDB
from consortia.execution.context import ExecutionLimitError, TxContext
from consortia.execution.errors import TxFailure, UnrepresentableResultError
from consortia.ledger.state_tree import StateTree
from consortia.modules import contracts as contracts_module
from consortia.modules import ecny, investors, registry, securities

# ``contracts_module`` is used as a module object, only when a call runs: it imports the engine,
# which may still be loading when this module is.


def native_address(index: int) -> bytes:
    """The address of native precompile ``index`` (1 = registry, 2 = e-CNY, 3 = securities)."""
    return (0xC0000 + index).to_bytes(keys.ADDRESS_SIZE, "big")


REGISTRY_ADDRESS: Final = native_address(1)
ECNY_ADDRESS: Final = native_address(2)
SECURITIES_ADDRESS: Final = native_address(3)

GAS_READ: Final = 5_000
"""A view function (one or two record reads): about two cold SLOADs."""
GAS_WRITE: Final = 60_000
"""A state-changing function: a few records rewritten and events (three new storage slots)."""

MAX_STRING_BYTES: Final = 1024  # longer than any id, code, memo or role the modules accept

# Stable codes of the precompile layer itself (native modules bring their own).
CODE_BAD_ARGUMENTS: Final = "BAD_ARGUMENTS"
CODE_UNKNOWN_FUNCTION: Final = "UNKNOWN_FUNCTION"
CODE_NOT_AUTHORIZED: Final = "NOT_AUTHORIZED"
CODE_NATIVE_UNAVAILABLE: Final = "NATIVE_UNAVAILABLE"
CODE_CONTRACT_FROZEN: Final = "CONTRACT_FROZEN"  # the contracts module's code for a freeze


def frozen_key(address: bytes) -> bytes:
    """The state key of a contract's freeze record (``contracts.freeze``), for the engine."""
    return contracts_module.frozen_key(address)


NATIVE_ERROR_SIGNATURE: Final = "NativeCallFailed(string,string)"
NATIVE_ERROR_SELECTOR: Final = bytes(keccak(NATIVE_ERROR_SIGNATURE.encode()))[:4]


# ---------------------------------------------------------------------------------------------
# A small ABI codec: the static types and ``string``, which is all the native functions use


class BadCalldataError(ValueError):
    """Calldata that does not decode as the function's arguments."""


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def abi_decode(types: Sequence[str], body: bytes) -> tuple[Any, ...]:
    """Decode ``body`` (calldata after the selector) as ``types`` (uint256, address, bool,
    string), strictly: a value out of its type's range or a malformed string is an error."""
    if len(body) < 32 * len(types):
        raise BadCalldataError(f"calldata holds fewer than {len(types)} arguments")
    out: list[Any] = []
    for i, kind in enumerate(types):
        word = body[32 * i : 32 * i + 32]
        n = int.from_bytes(word, "big")
        if kind == "uint256":
            out.append(n)
        elif kind == "address":
            if n >> 160:
                raise BadCalldataError(f"argument {i} is not an address")
            out.append(word[12:])
        elif kind == "bool":
            if n > 1:
                raise BadCalldataError(f"argument {i} is not a bool")
            out.append(n == 1)
        elif kind == "string":
            if n > len(body) - 32:
                raise BadCalldataError(f"argument {i}: string offset out of range")
            length = int.from_bytes(body[n : n + 32], "big")
            if length > MAX_STRING_BYTES or n + 32 + length > len(body):
                raise BadCalldataError(f"argument {i}: string too long or truncated")
            try:
                out.append(body[n + 32 : n + 32 + length].decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise BadCalldataError(f"argument {i}: string is not UTF-8") from exc
        else:  # pragma: no cover - the function table only uses the types above
            raise AssertionError(kind)
    return tuple(out)


def abi_encode(types: Sequence[str], values: Sequence[Any]) -> bytes:
    """ABI-encode ``values`` as ``types`` (uint256, address, bool, string)."""
    heads: list[bytes] = []
    tails: list[bytes] = []
    tail_offset = 32 * len(types)
    for kind, value in zip(types, values, strict=True):
        if kind == "uint256":
            heads.append(_word(value))
        elif kind == "address":
            heads.append(bytes(12) + value)
        elif kind == "bool":
            heads.append(_word(1 if value else 0))
        elif kind == "string":
            raw = value.encode("utf-8")
            padded = raw + bytes(-len(raw) % 32)
            heads.append(_word(tail_offset))
            tails.append(_word(len(raw)) + padded)
            tail_offset += 32 + len(padded)
        else:  # pragma: no cover
            raise AssertionError(kind)
    return b"".join(heads) + b"".join(tails)


def native_error(code: str, message: str) -> bytes:
    """The revert payload of a failed native call: ``NativeCallFailed(code, message)``."""
    return NATIVE_ERROR_SELECTOR + abi_encode(("string", "string"), (code, message))


def decode_native_error(payload: bytes) -> tuple[str, str] | None:
    """(code, message) of a ``NativeCallFailed`` payload, or None if it is not one."""
    if payload[:4] != NATIVE_ERROR_SELECTOR:
        return None
    try:
        code, message = abi_decode(("string", "string"), payload[4:])
    except BadCalldataError:
        return None
    return str(code), str(message)


# ---------------------------------------------------------------------------------------------
# The native functions

Handler = Callable[[TxContext, tuple[Any, ...]], tuple[Any, ...]]


@dataclass(frozen=True)
class Function:
    """One native function: its Solidity signature, argument and result types, gas, effect."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    gas: int
    mutates: bool
    handler: Handler

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(self.inputs)})"

    @property
    def selector(self) -> bytes:
        return bytes(keccak(self.signature.encode()))[:4]


def _has_role(ctx: TxContext, args: tuple[Any, ...]) -> tuple[Any, ...]:
    address, role = args
    acct = registry.load_account(ctx, address)
    return (acct is not None and registry.has_role(acct, role),)


def _wallet_balance(ctx: TxContext, args: tuple[Any, ...]) -> tuple[Any, ...]:
    (wallet_id,) = args
    return (ecny.require_wallet(ctx, wallet_id).balance,)


def _pay_from_wallet(ctx: TxContext, args: tuple[Any, ...]) -> tuple[Any, ...]:
    from_wallet, to_wallet, amount, memo = args
    ecny.pay(ctx, ecny.PayArgs(from_wallet, to_wallet, amount, memo))
    return (True,)


def _create_escrow(ctx: TxContext, args: tuple[Any, ...]) -> tuple[Any, ...]:
    escrow_id, payer, payee, amount, condition, release_at, confirmer, expires, memo = args
    ecny.create_escrow(
        ctx,
        ecny.CreateEscrowArgs(
            escrow_id=escrow_id,
            from_wallet=payer,
            to_wallet=payee,
            amount=amount,
            condition=condition,
            release_at_ms=release_at,
            confirmer=b"" if confirmer == bytes(keys.ADDRESS_SIZE) else confirmer,
            expires_at_ms=expires,
            memo=memo,
        ),
    )
    return (True,)


def _release_escrow(ctx: TxContext, args: tuple[Any, ...]) -> tuple[Any, ...]:
    ecny.release_escrow(ctx, ecny.EscrowIdArgs(args[0]))
    return (True,)


def _refund_escrow(ctx: TxContext, args: tuple[Any, ...]) -> tuple[Any, ...]:
    ecny.refund_escrow(ctx, ecny.EscrowIdArgs(args[0]))
    return (True,)


def _holding_of(ctx: TxContext, args: tuple[Any, ...]) -> tuple[Any, ...]:
    code, account_id = args
    securities.require_security(ctx, code)
    held = securities.load_holding(ctx, code, account_id)
    return (held.balance, max(held.free(ctx.time_ms), 0))


def _transfer_shares(ctx: TxContext, args: tuple[Any, ...]) -> tuple[Any, ...]:
    code, from_account, to_account, amount = args
    # ``securities.transfer``'s authorization, for a contract: it moves shares only out of an
    # account it owns (a contract is never a broker). Then the module's own checked move.
    securities.require_security(ctx, code)
    src = investors.require_open_account(ctx, from_account)
    if investors.require_investor(ctx, src.investor_id).address != ctx.sender:
        raise investors.NotAuthorizedError(
            f"contract {ctx.sender.hex()} does not own securities account {from_account!r}"
        )
    securities.move_shares(ctx, code, from_account, to_account, amount, memo="")
    return (True,)


_S, _U, _A, _B = "string", "uint256", "address", "bool"

REGISTRY_FUNCTIONS: Final = (Function("hasRole", (_A, _S), (_B,), GAS_READ, False, _has_role),)
ECNY_FUNCTIONS: Final = (
    Function("walletBalance", (_S,), (_U,), GAS_READ, False, _wallet_balance),
    Function("payFromWallet", (_S, _S, _U, _S), (_B,), GAS_WRITE, True, _pay_from_wallet),
    Function(
        "createEscrow", (_S, _S, _S, _U, _S, _U, _A, _U, _S), (_B,), GAS_WRITE, True, _create_escrow
    ),
    Function("releaseEscrow", (_S,), (_B,), GAS_WRITE, True, _release_escrow),
    Function("refundEscrow", (_S,), (_B,), GAS_WRITE, True, _refund_escrow),
)
SECURITIES_FUNCTIONS: Final = (
    Function("holdingOf", (_S, _S), (_U, _U), GAS_READ, False, _holding_of),
    Function("transferShares", (_S, _S, _S, _U), (_B,), GAS_WRITE, True, _transfer_shares),
)


# ---------------------------------------------------------------------------------------------
# The bridge: how a running message reaches the native modules


class _OverlayReader:
    """A state view over the running message's overlay (what a child context reads through)."""

    __slots__ = ("_overlay",)

    def __init__(self, overlay: OverlayAccountDB) -> None:
        self._overlay = overlay

    def get(self, key: bytes) -> bytes | None:
        return self._overlay.read(key)


class NativeBridge:
    """Lets contracts call native modules during one ``evm.execute``.

    Build it from the transaction's own context: ``NativeBridge(ctx)``, and pass the same ``ctx``
    as the engine's view: ``evm.execute(ctx, message, block, native=NativeBridge(ctx))``. A native
    call then runs on a child context with ``ctx``'s chain, height, block time and nonce, the
    calling contract as sender, reads through the message's overlay and writes into it. For a
    read-only query (no transaction), a ``TxContext`` over the head state with any sender serves.
    """

    __slots__ = ("_template",)

    def __init__(self, ctx: TxContext) -> None:
        self._template = ctx

    def session(self, overlay: OverlayAccountDB) -> NativeSession:
        """The bridge for one message running on ``overlay`` (the engine calls this)."""
        return NativeSession(self._template, overlay)


class NativeSession:
    """One message's native calls: child contexts, and the failures they reverted with."""

    def __init__(self, template: TxContext, overlay: OverlayAccountDB) -> None:
        self._template = template
        self.overlay = overlay
        # Revert payloads produced by native failures in this message, so a top-level revert
        # carrying one is known to be the native rule's, not a contract's imitation of it.
        self.failures: dict[bytes, tuple[str, str]] = {}

    def child(self, caller: bytes) -> TxContext:
        t = self._template
        return TxContext(
            suite=t.suite,
            chain_id=t.chain_id,
            height=t.height,
            time_ms=t.time_ms,
            # Only ``get`` is used on the tree; the overlay reader stands in for it.
            tree=cast(StateTree, _OverlayReader(self.overlay)),
            block_writes={},
            sender=caller,
            nonce=t.nonce,
            parent_hash=t.parent_hash,
            block_gas=t.block_gas,
        )

    def fail(self, computation: ComputationAPI, code: str, message: str) -> NoReturn:
        payload = native_error(code, message)
        self.failures[payload] = (code, message)
        computation.output = payload
        raise Revert(payload)

    def commit(self, ctx: TxContext, computation: ComputationAPI) -> None:
        """Journal a successful native call's writes and events in the overlay."""
        for key, value in ctx.writes.items():
            self.overlay.put_native(key, value)
        for event in ctx.events:
            order = computation.transaction_context.get_next_log_counter()
            self.overlay.add_native_event(order, event)


def _unavailable(computation: ComputationAPI, message: str) -> NoReturn:
    payload = native_error(CODE_NATIVE_UNAVAILABLE, message)
    computation.output = payload
    raise Revert(payload)


def _precompile(
    module: str, functions: tuple[Function, ...]
) -> Callable[[ComputationAPI], ComputationAPI]:
    table = {f.selector: f for f in functions}

    def run(computation: ComputationAPI) -> ComputationAPI:
        msg = computation.msg
        data = msg.data_as_bytes
        function = table.get(data[:4])
        computation.consume_gas(GAS_READ if function is None else function.gas, module)
        session: NativeSession | None = getattr(computation.state, "native_session", None)
        if session is None:
            _unavailable(computation, "native modules are not reachable from this execution")
        if function is None:
            session.fail(computation, CODE_UNKNOWN_FUNCTION, f"{module} has no such function")
        if msg.storage_address != msg.code_address:
            # DELEGATECALL/CALLCODE: the precompile would act for the delegating contract's
            # caller (or in its name without being called by it). Never.
            session.fail(computation, CODE_NOT_AUTHORIZED, "native calls cannot be delegated")
        if function.mutates and msg.is_static:
            raise WriteProtection(f"{module}.{function.name} changes state in a static call")
        try:
            args = abi_decode(function.inputs, data[4:])
        except BadCalldataError as exc:
            session.fail(computation, CODE_BAD_ARGUMENTS, f"{function.name}: {exc}")
        ctx = session.child(bytes(msg.sender))
        if ctx.get(contracts_module.frozen_key(ctx.sender)) is not None:
            # A frozen contract acts on nothing (its code runs only in a direct query).
            session.fail(
                computation, CODE_CONTRACT_FROZEN, f"contract {ctx.sender.hex()} is frozen"
            )
        try:
            try:
                result = function.handler(ctx, args)
            except ExecutionLimitError as exc:
                raise TxFailure(str(exc)) from exc
            except (codec.CodecError, ArithmeticError, AssertionError) as exc:
                raise UnrepresentableResultError(f"{type(exc).__name__}: {exc}") from exc
        except TxFailure as failure:
            session.fail(computation, failure.code, failure.message)
        session.commit(ctx, computation)
        computation.output = abi_encode(function.outputs, result)
        return computation

    return run


PRECOMPILES: Final[dict[Address, Callable[[ComputationAPI], ComputationAPI]]] = {
    Address(REGISTRY_ADDRESS): _precompile("registry", REGISTRY_FUNCTIONS),
    Address(ECNY_ADDRESS): _precompile("ecny", ECNY_FUNCTIONS),
    Address(SECURITIES_ADDRESS): _precompile("securities", SECURITIES_FUNCTIONS),
}
"""The native precompiles by address, as py-evm's computation looks them up."""
