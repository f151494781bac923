"""Smart contracts through the SDK: ``client.contracts`` deploys and finds contracts, and a
``Contract`` handle calls them by the names of their ABI.

::

    token = client.contracts.deploy(abi_json, init_code, "Bond coupon", 1_000, gas_limit=3_000_000)
    result = token.transact("transfer", "0x" + bob.hex(), 25)    # a signed contracts.call
    print(result.events[0].name, result.events[0].args)          # Transfer {...}, decoded
    print(token.query("balanceOf", "0x" + bob.hex()))            # 25, no transaction
    same = client.contracts.at(token.address)                    # the ABI from the chain

Arguments and results follow ``consortia.contracts.abi``'s JSON conventions (addresses and bytes
as hex, big integers as ints or decimal strings). The ABI codec runs here, client side: a bad
argument raises ``InvalidArgumentsError`` with the codec's code (``BAD_ABI_ARGS``,
``UNKNOWN_FUNCTION``, ...) before anything is signed. A transaction the contract refused raises
``FailedError`` with the engine's code (``EVM_REVERTED``, ``EVM_OUT_OF_GAS``) or a native
module's (``CONTRACT_FROZEN``, ``CODE_NOT_APPROVED``, ...); a query that reverted raises
``QueryFailedError`` with the code and the decoded revert reason.

A deployment's address is Ethereum's CREATE address of the sender and the transaction's nonce
(``consortia.contracts.keys.create_address``), known before the transaction commits; the
``contracts.deployed`` event confirms it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consortia.contracts import keys
from consortia.contracts.abi import AbiError, ContractAbi
from consortia.modules import contracts as contracts_module
from consortia.sdk.client import ModuleOps, TxEvent, TxResult
from consortia.sdk.errors import (
    ApiError,
    InvalidArgumentsError,
    RejectedError,
    SdkError,
)

if TYPE_CHECKING:
    from consortia.ledger.types import Transaction
    from consortia.sdk.client import Client

DEFAULT_GAS = 3_000_000
# Admission refusals after which the nonce is refetched and the transaction signed again, once.
_RETRY_CODES = frozenset({"STALE_NONCE"})

AbiSource = str | Sequence[Any]


class QueryFailedError(SdkError):
    """A read-only query ran but did not succeed (``EVM_REVERTED``, ``EVM_OUT_OF_GAS``, ...);
    ``reason`` is the decoded revert reason when the payload carries one, ``output`` the raw
    payload."""

    def __init__(self, code: str, message: str, *, reason: str | None, output: bytes) -> None:
        super().__init__(code, message if reason is None else f"{message}: {reason}")
        self.reason = reason
        self.output = output


@dataclass(frozen=True)
class ContractEvent:
    """One ``contracts.log`` of a transaction: the emitting ``address``, the raw ``topics`` and
    ``data``, and — when the log came from this contract and its ABI knows the event — its
    ``name``, ``signature`` and decoded ``args`` (else those are None / empty)."""

    address: bytes
    topics: tuple[bytes, ...]
    data: bytes
    name: str | None = None
    signature: str | None = None
    args: dict[str, Any] | None = None


@dataclass(frozen=True)
class ContractTxResult:
    """A committed, successful contract transaction: hash, height, gas used, the decoded return
    value (``result``; None when the call returned nothing or more than the event keeps), the
    contract's events, and every module event as ``TxResult`` has them (``raw``)."""

    tx_hash: bytes
    height: int
    gas_used: int | None
    result: Any
    events: tuple[ContractEvent, ...]
    raw: TxResult


def _bytes(value: bytes | str, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    body = value.strip()
    body = body[2:] if body[:2].lower() == "0x" else body
    try:
        return bytes.fromhex(body)
    except ValueError:
        raise InvalidArgumentsError("BAD_ARGUMENTS", f"{what} must be bytes or hex") from None


def _abi(source: AbiSource) -> tuple[str, ContractAbi]:
    """The ABI's JSON text (as stored on chain) and its parse."""
    text = source if isinstance(source, str) else json.dumps(list(source), separators=(",", ":"))
    try:
        return text, ContractAbi.parse(text)
    except AbiError as exc:
        raise InvalidArgumentsError(exc.code, exc.message) from None


def _event_attr(event: TxEvent, name: str) -> Any:
    return event.attributes.get(name)


class Contract:
    """A deployed contract seen through its ABI, acting as ``client``'s account."""

    def __init__(
        self, client: Client, address: bytes, abi: ContractAbi, *, abi_text: str = ""
    ) -> None:
        if len(address) != keys.ADDRESS_SIZE:
            raise InvalidArgumentsError("BAD_ARGUMENTS", "a contract address is 20 bytes")
        self.client = client
        self.address = address
        self.abi = abi
        self.abi_text = abi_text

    def __repr__(self) -> str:
        return f"<Contract 0x{self.address.hex()}: {len(self.abi.functions)} functions>"

    def encode(self, fn: str, *args: Any) -> bytes:
        """The calldata of ``fn(*args)`` (``InvalidArgumentsError`` for bad arguments)."""
        try:
            return self.abi.encode_call(fn, *args)
        except AbiError as exc:
            raise InvalidArgumentsError(exc.code, exc.message) from None

    def decode_events(self, result: TxResult) -> tuple[ContractEvent, ...]:
        """The ``contracts.log`` events of ``result``, decoded where this ABI knows them."""
        out = []
        for e in result.events:
            if e.module != contracts_module.NAME or e.kind != "log":
                continue
            address = bytes.fromhex(str(_event_attr(e, "address")))
            topics = tuple(bytes.fromhex(str(t)) for t in _event_attr(e, "topics") or [])
            data = bytes.fromhex(str(_event_attr(e, "data") or ""))
            event = ContractEvent(address, topics, data)
            if address == self.address:
                try:
                    decoded = self.abi.decode_log(topics, data).to_json()
                    event = ContractEvent(
                        address,
                        topics,
                        data,
                        decoded["event"],
                        decoded["signature"],
                        decoded["args"],
                    )
                except AbiError:
                    pass  # not an event of this ABI: kept raw
            out.append(event)
        return tuple(out)

    def transact(self, fn: str, *args: Any, gas_limit: int = DEFAULT_GAS) -> ContractTxResult:
        """Call ``fn(*args)`` in a signed ``contracts.call`` transaction and wait for it; the
        decoded return value and events come back (``FailedError`` if it failed on chain)."""
        data = self.encode(fn, *args)
        function = self.abi.function(fn, arity=len(args))
        raw = self.client.call(
            contracts_module.NAME, "call", address=self.address, data=data, gas_limit=gas_limit
        )
        called = next(
            (e for e in raw.events if e.module == contracts_module.NAME and e.kind == "called"),
            None,
        )
        result: Any = None
        gas_used: int | None = None
        if called is not None:
            gas_used = int(_event_attr(called, "gas_used"))
            output = bytes.fromhex(str(_event_attr(called, "output") or ""))
            if output and function.outputs:
                try:
                    result = self.abi.output_json(function, output)
                except AbiError:
                    result = None
        return ContractTxResult(
            raw.tx_hash, raw.height, gas_used, result, self.decode_events(raw), raw
        )

    def query(self, fn: str, *args: Any, gas_limit: int | None = None) -> Any:
        """``fn(*args)`` as a read-only call over the head state (no transaction; ``msg.sender``
        is this client's account): the decoded return value. ``QueryFailedError`` if it
        reverted or failed."""
        data = self.encode(fn, *args)
        function = self.abi.function(fn, arity=len(args))
        reply = self.query_raw(data, gas_limit=gas_limit)
        output = bytes.fromhex(str(reply.get("output", "")))
        if not reply.get("ok"):
            reason = self.abi.revert_reason(output)
            code = str(reply.get("code") or "QUERY_FAILED")
            raise QueryFailedError(
                code, str(reply.get("message", "")), reason=reason, output=output
            )
        if not function.outputs:
            return None
        try:
            return self.abi.output_json(function, output)
        except AbiError as exc:
            raise ApiError(exc.code, f"the contract's answer: {exc.message}") from None

    def query_raw(self, data: bytes, *, gas_limit: int | None = None) -> dict[str, Any]:
        """``POST /v1/contracts/{address}/query`` with raw calldata: the API's answer."""
        body: dict[str, Any] = {"data": data.hex()}
        if gas_limit is not None:
            body["gas_limit"] = gas_limit
        reply = self.client._request("POST", f"/v1/contracts/{self.address.hex()}/query", body)
        reply.pop("_status", None)
        return reply

    def info(self) -> dict[str, Any]:
        """``GET /v1/contracts/{address}``: deployer, code hash, version, frozen, ABI."""
        return self.client.contracts.info(self.address)


class ContractsOps(ModuleOps):
    """The ``contracts`` module: deploy, call, upgrade, freeze, unfreeze — plus ``at`` (a handle
    on a deployed contract), ``info`` and ``approve`` (a governance proposal)."""

    def _submit(
        self, module: str, method: str, args: dict[str, Any]
    ) -> tuple[Transaction, TxResult]:
        """Sign and submit; on a stale nonce refetch it and sign once more (as ``Client.call``)."""
        client = self._client
        for attempt in range(2):
            tx = client.sign(module, method, args)
            try:
                return tx, client.submit(tx)
            except RejectedError as exc:
                if exc.code not in _RETRY_CODES or attempt:
                    raise
        raise AssertionError("unreachable")

    def deploy(
        self,
        abi: AbiSource,
        bytecode: bytes | str,
        *ctor_args: Any,
        gas_limit: int = DEFAULT_GAS,
    ) -> Contract:
        """Deploy ``bytecode`` (init code without constructor arguments) with ``ctor_args``
        encoded by ``abi`` (JSON text or the parsed list; stored on chain with the contract) and
        return its handle. The code must be approved by governance, or this account hold the
        ``contract_deployer`` role (else ``FailedError`` ``CODE_NOT_APPROVED``)."""
        abi_text, parsed = _abi(abi)
        code = _bytes(bytecode, "bytecode")
        try:
            encoded = parsed.encode_constructor(*ctor_args)
        except AbiError as exc:
            raise InvalidArgumentsError(exc.code, exc.message) from None
        args = {"code": code, "args": encoded, "gas_limit": gas_limit, "abi": abi_text}
        tx, result = self._submit(contracts_module.NAME, "deploy", args)
        address = keys.create_address(self._client.address, tx.nonce)
        for e in result.events:
            if e.module == contracts_module.NAME and e.kind == "deployed":
                address = bytes.fromhex(str(_event_attr(e, "address")))
        return Contract(self._client, address, parsed, abi_text=abi_text)

    def at(self, address: bytes | str, abi: AbiSource | None = None) -> Contract:
        """A handle on the contract at ``address``; without ``abi``, the ABI its deployer
        published on chain (``GET /v1/contracts/{address}``)."""
        addr = _bytes(address, "address")
        if abi is None:
            published = self.info(addr).get("abi")
            abi = [] if published is None else published
        text, parsed = _abi(abi)
        return Contract(self._client, addr, parsed, abi_text=text)

    def info(self, address: bytes | str) -> dict[str, Any]:
        """``GET /v1/contracts/{address}`` (public): the contract's record (deployer, code
        hash, version), ``frozen``, runtime code hash and size, ``abi`` and its ``events``."""
        addr = _bytes(address, "address")
        reply = self._client._get(f"/v1/contracts/{addr.hex()}")
        reply.pop("_status", None)
        return reply

    def code_hash(self, bytecode: bytes | str) -> bytes:
        """The hash governance approves for ``bytecode`` (init code without arguments)."""
        return contracts_module.code_hash(self._client.suite, _bytes(bytecode, "bytecode"))

    def approve(self, bytecode: bytes | str, *, reason: str) -> TxResult:
        """Propose (as a voting organization's account) that governance approve deploying
        ``bytecode``; other organizations then vote (``client.governance.vote``)."""
        return self._client.call(
            "governance",
            "propose_contract",
            action="approve_code",
            subject=self.code_hash(bytecode),
            reason=reason,
        )

    def call_contract(
        self, address: bytes | str, data: bytes | str, *, gas_limit: int = DEFAULT_GAS
    ) -> TxResult:
        """A ``contracts.call`` with raw calldata (use ``Contract.transact`` to go by name)."""
        return self._client.call(
            contracts_module.NAME,
            "call",
            address=_bytes(address, "address"),
            data=_bytes(data, "data"),
            gas_limit=gas_limit,
        )

    def upgrade(
        self,
        address: bytes | str,
        bytecode: bytes | str,
        *ctor_args: Any,
        abi: AbiSource | None = None,
        gas_limit: int = DEFAULT_GAS,
    ) -> TxResult:
        """Install an approved new version at ``address`` (storage kept); ``ctor_args`` are
        encoded with ``abi`` (the new version's; default: no arguments)."""
        encoded = b""
        if ctor_args or abi is not None:
            _text, parsed = _abi(abi if abi is not None else [])
            try:
                encoded = parsed.encode_constructor(*ctor_args)
            except AbiError as exc:
                raise InvalidArgumentsError(exc.code, exc.message) from None
        return self._client.call(
            contracts_module.NAME,
            "upgrade",
            address=_bytes(address, "address"),
            code=_bytes(bytecode, "bytecode"),
            args=encoded,
            gas_limit=gas_limit,
        )

    def freeze(self, address: bytes | str, *, reason: str) -> TxResult:
        """The regulator or a court freezes a contract (calls and upgrades refused)."""
        return self._client.call(
            contracts_module.NAME, "freeze", address=_bytes(address, "address"), reason=reason
        )

    def unfreeze(self, address: bytes | str) -> TxResult:
        """The regulator or a court lifts a contract's freeze."""
        return self._client.call(
            contracts_module.NAME, "unfreeze", address=_bytes(address, "address")
        )


__all__ = [
    "Contract",
    "ContractEvent",
    "ContractTxResult",
    "ContractsOps",
    "QueryFailedError",
]
