"""The contracts module: EVM smart contracts under the consortium's rules (business tier).

Methods (each a transaction; every step is an event):

- ``deploy(code, args, gas_limit, abi)``: ``code`` is the init bytecode *without* constructor
  arguments, ``args`` their ABI encoding (appended here). Allowed when the *code hash* of
  ``code`` is approved (governance proposal ``approve_code``) or the sender holds the role
  ``contract_deployer`` (genesis or governance grant it). The contract's address is Ethereum's
  CREATE address of the sender and the transaction's nonce (``keys.create_address``), so a client
  knows it before sending. ``abi`` (JSON text, may be empty, at most 64 KiB) is stored for
  explorers and SDKs. Events: the constructor's logs, then ``contracts.deployed``.
- ``call(address, data, gas_limit)``: ABI calldata to a contract, which may call the native
  modules through their precompiles (``consortia.contracts.precompiles``) under their own rules.
  Events, in execution order: each EVM LOG as ``contracts.log(address, topics, data)`` and the
  native modules' own events; then ``contracts.called``.
- ``upgrade(address, code, args, gas_limit)``: installs a new version at an existing address and
  keeps its storage. Only an org_admin of the original deployer's organization, with the new
  code approved like a deployment's. The new init code runs as a deployment would (from the
  sender, at the transaction's nonce) only to produce the runtime code; that runtime code then
  replaces the old one at the address, and everything else the constructor did (its storage
  writes, logs, contracts it created) is discarded, so the old storage stays exactly as it was.
  A constructor that reads ``address(this)`` sees the scratch address, not the upgraded one.
  Event ``contracts.upgraded``.
- ``freeze(address, reason)`` / ``unfreeze(address)``: by the regulator or a court (governance
  does the same through the proposal kinds ``freeze_contract`` / ``unfreeze_contract``). A
  frozen contract refuses calls and upgrades (``CONTRACT_FROZEN``), and no call frame inside the
  EVM runs its code (an inner call to it fails with ``CONTRACT_FROZEN``); a direct read
  (``query``) still works. Events ``contracts.frozen`` / ``contracts.unfrozen``.

The code hash is the chain suite's hash of the init code without constructor arguments
(SHA-256 on ``intl`` chains, SM3 on ``gm``): ``code_hash(suite, code)``.

Gas. A transaction's ``gas_limit`` is at most the chain parameter ``contracts.max_tx_gas``
(default 30 000 000; else ``TX_GAS_LIMIT_EXCEEDED``), and at most what is left of the block's
``contracts.max_block_gas`` (default 100 000 000) after the gas its earlier transactions used
(else ``BLOCK_GAS_EXHAUSTED``): such a transaction fails alone, with no effect, and the others
run. Gas a message used counts against the block even when the transaction then fails (a
revert, an out-of-gas run), since the work was done. There are no fees.

Failures. An EVM outcome other than success is the engine's stable code (``EVM_REVERTED``,
``EVM_OUT_OF_GAS``, ...) on a FAILED receipt — or the native module's code (``UNKNOWN_WALLET``,
``PER_PAYMENT_LIMIT_EXCEEDED``, ...) when a precompile's rule failed and the message ended in
that revert — with no state change beyond the nonce.

State: ``contracts/approved/<code hash>`` → ``CodeApproval``; ``contracts/info/<addr>`` →
``ContractInfo`` (contracts deployed by a transaction); ``contracts/abi/<addr>`` → the ABI text
(UTF-8); ``contracts/frozen/<addr>`` → ``ContractFreeze`` (absent when not frozen). The EVM's
own accounts, code and storage live under ``evm/`` (``consortia.contracts.keys``).

Determinism: integers and bytes only, no clock (block values come from the header), no set
iteration; the engine's result is a function of the state, the message and the block.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from eth_hash.auto import keccak

from consortia import codec
from consortia.contracts import evm, keys, precompiles
from consortia.crypto import Suite
from consortia.execution.context import TxContext
from consortia.execution.errors import TxFailure
from consortia.execution.module import Method, Module
from consortia.modules import governance
from consortia.modules.registry import (
    ACCOUNT_FREEZE_ROLES,
    Account,
    has_role,
    require_account,
)

if TYPE_CHECKING:
    from consortia.contracts.overlay import StateView

# ``evm``, ``precompiles`` and ``governance`` are imported as module objects and used only
# inside functions: the engine imports the native modules (hence this package), and governance
# imports this module, so any of them may still be loading when this one is.

NAME = "contracts"
DEPLOYER_ROLE: Final = "contract_deployer"
FREEZE_ROLES: Final = ACCOUNT_FREEZE_ROLES  # the regulator and a court

MAX_TX_GAS_PARAM: Final = "contracts.max_tx_gas"
MAX_BLOCK_GAS_PARAM: Final = "contracts.max_block_gas"
DEFAULT_MAX_TX_GAS: Final = 30_000_000
DEFAULT_MAX_BLOCK_GAS: Final = 100_000_000
MIN_GAS: Final = 21_000  # the intrinsic gas of the smallest message
MAX_GAS_PARAM: Final = 1_000_000_000  # the upper bound governance may set either limit to

MAX_ABI_BYTES: Final = 64 * 1024
MAX_REASON: Final = 500
MAX_EVENT_OUTPUT: Final = 4096  # a call's return data is in its event up to this size
DEFAULT_QUERY_GAS: Final = 10_000_000


def code_hash(suite: Suite, code: bytes) -> bytes:
    """The hash governance approves: the suite hash of the init code without its arguments."""
    return suite.hash(code)


def approval_key(hash_: bytes) -> bytes:
    return b"contracts/approved/" + hash_


def info_key(address: bytes) -> bytes:
    return b"contracts/info/" + address


def abi_key(address: bytes) -> bytes:
    return b"contracts/abi/" + address


def frozen_key(address: bytes) -> bytes:
    return b"contracts/frozen/" + address


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class CodeApproval:
    """Governance approved deploying (or upgrading to) code with this hash."""

    code_hash: bytes
    proposal_id: int
    height: int


@dataclass(frozen=True)
class ContractInfo:
    """A contract deployed by a transaction: who deployed which code, and its version."""

    address: bytes
    deployer: bytes
    deployer_org: str
    code_hash: bytes  # of the current version's init code (see ``code_hash``)
    version: int  # 1 when deployed, +1 per upgrade
    deployed_height: int
    updated_height: int


@dataclass(frozen=True)
class ContractFreeze:
    reason: str
    by: bytes  # the regulator's or court's account; empty when governance froze it
    proposal_id: int  # the governance proposal, 0 when the regulator or a court froze it
    height: int


# ---------------------------------------------------------------------------------------------
# Failures


class InvalidContractArgumentError(TxFailure):
    code = "INVALID_CONTRACT_ARGUMENT"


class CodeNotApprovedError(TxFailure):
    code = "CODE_NOT_APPROVED"


class CodeAlreadyApprovedError(TxFailure):
    code = "CODE_ALREADY_APPROVED"


class UnknownContractError(TxFailure):
    code = "UNKNOWN_CONTRACT"


class ContractFrozenError(TxFailure):
    code = "CONTRACT_FROZEN"


class ContractNotFrozenError(TxFailure):
    code = "CONTRACT_NOT_FROZEN"


class ContractsUnauthorizedError(TxFailure):
    code = "NOT_AUTHORIZED"


class TxGasLimitExceededError(TxFailure):
    code = "TX_GAS_LIMIT_EXCEEDED"


class BlockGasExhaustedError(TxFailure):
    code = "BLOCK_GAS_EXHAUSTED"


_EVM_FAILURES: dict[str, type[TxFailure]] = {}


def _evm_failure(code: str, message: str) -> TxFailure:
    """A TxFailure carrying ``code`` (an engine ``EVM_*`` code, or a native module's code when a
    precompile's rule check failed inside the call): one subclass per code, made once."""
    cls = _EVM_FAILURES.get(code)
    if cls is None:
        cls = type(f"ContractFailure_{code}", (TxFailure,), {"code": code})
        _EVM_FAILURES[code] = cls
    return cls(message)


# ---------------------------------------------------------------------------------------------
# Reads used by other modules, governance and the API


def is_approved(view: StateView, hash_: bytes) -> bool:
    return view.get(approval_key(hash_)) is not None


def contract_info(ctx: TxContext, address: bytes) -> ContractInfo | None:
    return ctx.get_record(info_key(address), ContractInfo)


def freeze_record(ctx: TxContext, address: bytes) -> ContractFreeze | None:
    return ctx.get_record(frozen_key(address), ContractFreeze)


def has_code(view: StateView, address: bytes) -> bool:
    return len(address) == keys.ADDRESS_SIZE and bool(view.get(keys.code_key(address)))


def max_tx_gas(ctx: TxContext) -> int:
    value = governance.get_param(ctx, MAX_TX_GAS_PARAM)
    return DEFAULT_MAX_TX_GAS if value is None else value


def max_block_gas(ctx: TxContext) -> int:
    value = governance.get_param(ctx, MAX_BLOCK_GAS_PARAM)
    return DEFAULT_MAX_BLOCK_GAS if value is None else value


# ---------------------------------------------------------------------------------------------
# Lifecycle steps shared with governance (each kind: a check that writes nothing, an apply)


def _check_hash(suite: Suite, hash_: bytes) -> None:
    if len(hash_) != len(suite.hash(b"")):
        raise InvalidContractArgumentError(
            f"a code hash is {len(suite.hash(b''))} bytes ({suite.name} suite hash)"
        )


def check_approve_code(ctx: TxContext, hash_: bytes) -> None:
    """Raise unless code with hash ``hash_`` may be approved now."""
    _check_hash(ctx.suite, hash_)
    if is_approved(ctx, hash_):
        raise CodeAlreadyApprovedError(f"code {hash_.hex()} is already approved")


def approve_code(ctx: TxContext, hash_: bytes, proposal_id: int) -> None:
    check_approve_code(ctx, hash_)
    ctx.put_record(approval_key(hash_), CodeApproval(hash_, proposal_id, ctx.height))
    ctx.emit(NAME, "code_approved", code_hash=hash_, proposal_id=proposal_id)


def _require_contract(ctx: TxContext, address: bytes) -> None:
    if len(address) != keys.ADDRESS_SIZE:
        raise InvalidContractArgumentError("a contract address is 20 bytes")
    if not has_code(ctx, address):
        raise UnknownContractError(f"no contract at {address.hex()}")


def check_freeze(ctx: TxContext, address: bytes, *, frozen: bool) -> None:
    """Raise unless the contract at ``address`` may be frozen (``frozen``) or unfrozen now."""
    _require_contract(ctx, address)
    current = freeze_record(ctx, address)
    if frozen and current is not None:
        raise ContractFrozenError(f"contract {address.hex()} is already frozen")
    if not frozen and current is None:
        raise ContractNotFrozenError(f"contract {address.hex()} is not frozen")


def _check_reason(reason: str) -> None:
    if not reason.strip() or len(reason) > MAX_REASON or not reason.isprintable():
        raise InvalidContractArgumentError(f"reason must be 1..{MAX_REASON} printable characters")


def set_frozen(
    ctx: TxContext, address: bytes, *, frozen: bool, reason: str, by: bytes, proposal_id: int
) -> None:
    """Freeze or unfreeze the contract at ``address`` (checked first); emits the event."""
    check_freeze(ctx, address, frozen=frozen)
    if frozen:
        ctx.put_record(frozen_key(address), ContractFreeze(reason, by, proposal_id, ctx.height))
        ctx.emit(NAME, "frozen", address=address, reason=reason, by=by, proposal_id=proposal_id)
    else:
        ctx.delete(frozen_key(address))
        ctx.emit(NAME, "unfrozen", address=address, by=by, proposal_id=proposal_id)


# ---------------------------------------------------------------------------------------------
# Running a message


def _reserve_gas(ctx: TxContext, gas_limit: int) -> int:
    """Check ``gas_limit`` against the per-transaction and the block's remaining gas; return the
    block gas limit (what GASLIMIT reports)."""
    if gas_limit < MIN_GAS:
        raise InvalidContractArgumentError(f"gas_limit must be at least {MIN_GAS}")
    per_tx = max_tx_gas(ctx)
    if gas_limit > per_tx:
        raise TxGasLimitExceededError(f"gas_limit {gas_limit} exceeds {MAX_TX_GAS_PARAM} {per_tx}")
    per_block = max_block_gas(ctx)
    remaining = per_block - ctx.block_gas.used
    if gas_limit > remaining:
        raise BlockGasExhaustedError(
            f"gas_limit {gas_limit} exceeds the {max(remaining, 0)} gas left in this block"
        )
    return per_block


def _block_context(ctx: TxContext, block_gas_limit: int) -> evm.BlockContext:
    return evm.BlockContext(
        ctx.chain_id, ctx.height, ctx.time_ms, ctx.parent_hash, max(block_gas_limit, MIN_GAS)
    )


def _execute(
    ctx: TxContext, message: evm.EvmMessage, *, native: bool = True
) -> evm.ExecutionResult:
    """Run ``message`` in this transaction; charge its gas to the block; raise on failure.

    With ``native``, contracts reach the native modules through the precompiles, on child
    contexts of ``ctx`` (their rule failures revert the message; the receipt then carries the
    native module's code, e.g. ``PER_PAYMENT_LIMIT_EXCEEDED``, instead of ``EVM_REVERTED``).
    """
    block = _block_context(ctx, _reserve_gas(ctx, message.gas_limit))
    bridge = precompiles.NativeBridge(ctx) if native else None
    result = evm.execute(ctx, message, block, native=bridge)
    ctx.block_gas.charge(result.gas_used)  # counted even if the message failed: work was done
    if not result.ok:
        raise _evm_failure(result.receipt_code, result.message)
    return result


def _apply_writes(ctx: TxContext, writes: dict[bytes, bytes | None]) -> None:
    for key, value in writes.items():  # sorted by the engine
        if value is None:
            ctx.delete(key)
        else:
            ctx.put(key, value)


def _emit_events(ctx: TxContext, result: evm.ExecutionResult) -> None:
    """The message's LOGs (as ``contracts.log``) and its native modules' events, in the order
    they happened."""
    for item in result.events_in_order:
        if isinstance(item, evm.EvmLog):
            ctx.emit(NAME, "log", address=item.address, topics=list(item.topics), data=item.data)
        else:
            ctx.emit(item.module, item.kind, **item.attributes)


def _check_code(code: bytes, abi: str | None = None) -> None:
    # The ABI text is stored as given, not parsed here: block validity must not depend on a JSON
    # or ABI parser (its version, its recursion on deeply nested input). Readers parse it.
    if not code:
        raise InvalidContractArgumentError("code (the init bytecode) is empty")
    if abi is not None and len(abi.encode()) > MAX_ABI_BYTES:
        raise InvalidContractArgumentError(f"abi exceeds {MAX_ABI_BYTES} bytes")


def _require_approved(ctx: TxContext, sender: Account, hash_: bytes) -> None:
    if is_approved(ctx, hash_) or has_role(sender, DEPLOYER_ROLE):
        return
    raise CodeNotApprovedError(
        f"code {hash_.hex()} is not approved by governance and the sender lacks {DEPLOYER_ROLE!r}"
    )


# ---------------------------------------------------------------------------------------------
# Methods


@dataclass(frozen=True)
class DeployArgs:
    code: bytes
    args: bytes
    gas_limit: int
    abi: str


def deploy(ctx: TxContext, args: DeployArgs) -> None:
    """Deploy approved code at ``keys.create_address(sender, tx nonce)``."""
    _check_code(args.code, args.abi)
    sender = require_account(ctx, ctx.sender)
    hash_ = code_hash(ctx.suite, args.code)
    _require_approved(ctx, sender, hash_)
    message = evm.EvmMessage(
        ctx.sender, None, args.code + args.args, args.gas_limit, nonce=ctx.nonce
    )
    result = _execute(ctx, message)
    address = result.created
    assert address is not None  # a successful deployment always created an address
    _apply_writes(ctx, result.writes)
    ctx.put_record(
        info_key(address),
        ContractInfo(address, ctx.sender, sender.org_id, hash_, 1, ctx.height, ctx.height),
    )
    if args.abi:
        ctx.put(abi_key(address), args.abi.encode())
    _emit_events(ctx, result)
    ctx.emit(
        NAME,
        "deployed",
        address=address,
        code_hash=hash_,
        deployer=ctx.sender,
        gas_used=result.gas_used,
    )


@dataclass(frozen=True)
class CallArgs:
    address: bytes
    data: bytes
    gas_limit: int


def call(ctx: TxContext, args: CallArgs) -> None:
    """Call a contract that is not frozen; its logs become events."""
    _require_contract(ctx, args.address)
    if freeze_record(ctx, args.address) is not None:
        raise ContractFrozenError(f"contract {args.address.hex()} is frozen")
    message = evm.EvmMessage(ctx.sender, args.address, args.data, args.gas_limit, nonce=ctx.nonce)
    result = _execute(ctx, message)
    _apply_writes(ctx, result.writes)
    _emit_events(ctx, result)
    output = result.output
    ctx.emit(
        NAME,
        "called",
        address=args.address,
        gas_used=result.gas_used,
        output=output if len(output) <= MAX_EVENT_OUTPUT else b"",
        output_size=len(output),
    )


@dataclass(frozen=True)
class UpgradeArgs:
    address: bytes
    code: bytes
    args: bytes
    gas_limit: int


def upgrade(ctx: TxContext, args: UpgradeArgs) -> None:
    """Replace a contract's runtime code with an approved new version's; keep its storage."""
    _check_code(args.code)
    _require_contract(ctx, args.address)
    info = contract_info(ctx, args.address)
    if info is None:
        raise UnknownContractError(
            f"contract {args.address.hex()} was not deployed by a transaction"
        )
    sender = require_account(ctx, ctx.sender)
    if not (has_role(sender, "org_admin") and sender.org_id == info.deployer_org):
        raise ContractsUnauthorizedError(
            f"only an org_admin of {info.deployer_org!r} upgrades this contract"
        )
    if freeze_record(ctx, args.address) is not None:
        raise ContractFrozenError(f"contract {args.address.hex()} is frozen")
    hash_ = code_hash(ctx.suite, args.code)
    _require_approved(ctx, sender, hash_)
    message = evm.EvmMessage(
        ctx.sender, None, args.code + args.args, args.gas_limit, nonce=ctx.nonce
    )
    # No native bridge: the constructor runs only to produce code, and its effects are dropped.
    result = _execute(ctx, message, native=False)
    scratch = result.created
    assert scratch is not None
    runtime = result.writes.get(keys.code_key(scratch))
    if not runtime:
        raise InvalidContractArgumentError("the new version's constructor returned no code")
    account_raw = ctx.get(keys.account_key(args.address))
    assert account_raw is not None  # the contract has code, so it has an account record
    account = codec.decode_struct(keys.ContractAccount, account_raw)
    ctx.put(keys.code_key(args.address), runtime)
    ctx.put_record(
        keys.account_key(args.address), replace(account, code_hash=bytes(keccak(runtime)))
    )
    ctx.put_record(
        info_key(args.address),
        replace(info, code_hash=hash_, version=info.version + 1, updated_height=ctx.height),
    )
    ctx.emit(
        NAME,
        "upgraded",
        address=args.address,
        previous_code_hash=info.code_hash,
        code_hash=hash_,
        version=info.version + 1,
        gas_used=result.gas_used,
    )


@dataclass(frozen=True)
class FreezeArgs:
    address: bytes
    reason: str


def _require_freezer(ctx: TxContext) -> None:
    sender = require_account(ctx, ctx.sender)
    if not any(has_role(sender, r) for r in sorted(FREEZE_ROLES)):
        raise ContractsUnauthorizedError("only the regulator or a court freezes contracts")


def freeze(ctx: TxContext, args: FreezeArgs) -> None:
    """The regulator or a court freezes a contract: calls and upgrades are refused."""
    _require_freezer(ctx)
    _check_reason(args.reason)
    set_frozen(ctx, args.address, frozen=True, reason=args.reason, by=ctx.sender, proposal_id=0)


@dataclass(frozen=True)
class UnfreezeArgs:
    address: bytes


def unfreeze(ctx: TxContext, args: UnfreezeArgs) -> None:
    """The regulator or a court lifts a contract's freeze."""
    _require_freezer(ctx)
    set_frozen(ctx, args.address, frozen=False, reason="", by=ctx.sender, proposal_id=0)


# ---------------------------------------------------------------------------------------------
# Read-only queries (API, SDK; no transaction)


def query(
    view: StateView,
    *,
    chain_id: str,
    height: int,
    time_ms: int,
    parent_hash: bytes,
    address: bytes,
    data: bytes,
    sender: bytes = bytes(keys.ADDRESS_SIZE),
    gas_limit: int = DEFAULT_QUERY_GAS,
) -> evm.ExecutionResult:
    """A static call of ``address`` with ``data`` over ``view`` (e.g. the committed tree), as in
    a block at ``height`` (≥ 1) with the given header values; never changes ``view``.

    A frozen contract may still be read. Any state change faults (``EVM_STATIC_STATE_CHANGE``);
    a bad message is a REJECTED result with a stable code, never an exception. When ``view`` is a
    ``TxContext`` (e.g. ``api.private.read_context``), the precompiles' view functions work too.
    """
    block = evm.BlockContext(
        chain_id, max(height, 1), time_ms, parent_hash, max(gas_limit, MIN_GAS)
    )
    message = evm.EvmMessage(sender, address, data, gas_limit, static=True)
    bridge = precompiles.NativeBridge(view) if isinstance(view, TxContext) else None
    return evm.execute(view, message, block, native=bridge)


MODULE = Module(
    name=NAME,
    methods={
        "deploy": Method(DeployArgs, deploy),
        "call": Method(CallArgs, call),
        "upgrade": Method(UpgradeArgs, upgrade),
        "freeze": Method(FreezeArgs, freeze),
        "unfreeze": Method(UnfreezeArgs, unfreeze),
    },
)
