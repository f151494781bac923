"""Contract reads: a contract's public record, read-only queries, and event-log decoding.

- ``GET /v1/contracts/{address}`` (public): the contract's lifecycle record as the ``contracts``
  module keeps it (deployer, deployer organization, the code hash governance approved, version,
  heights), whether it is frozen (and why, by whom), the Keccak-256 hash and size of its runtime
  code, and the ABI its deployer published with it (``abi``, with each event's topic 0 under
  ``events``), with the state proof of the record. Contract metadata is public the way the
  registry and governance records are: who runs which approved code, and whether the regulator
  stopped it, is what every member and auditor must be able to check.
- ``POST /v1/contracts/{address}/query`` (signed request): a read-only call (``static``: any
  state change faults, nothing is written, no transaction, no gas charged to anyone) over the
  head state, as if in the next block. Give raw ``data`` (calldata, hex) or a ``function`` (name,
  full signature or selector) and its JSON ``args``, encoded with the stored ABI; the answer
  holds the raw ``output`` and, for a ``function``, its decoded ``result``.
- ``POST /v1/contracts/{address}/decode-log`` (public): a ``contracts.log`` event's ``topics``
  and ``data`` decoded with the contract's stored ABI (the explorer uses it; it reads nothing
  but the public ABI).

Who may query. Contract storage is not public chain data here (raw ``evm/`` state is the
regulator's only, as every key outside the public prefixes), yet a token's ``balanceOf`` must be
answerable to its holders. The rule: any registry account of the chain (a consortium member's
account, signed request; 401 problems otherwise) may query any contract, and the query runs with
``msg.sender`` = the caller's address, so a contract guards private views the way it guards its
transactions (``require(msg.sender == ...)``). Frozen contracts may still be queried (the
regulator must be able to look inside). Queries run over the committed tree without the
native-module precompiles' bridge, so a contract's precompile call reverts there
(``NATIVE_UNAVAILABLE``) and a query cannot read holdings or wallets around the API's own role
rules (``contracts.query`` would enable the bridge for a ``TxContext`` view; this route
deliberately does not give it one).

Errors are problem details with stable codes: ``NOT_FOUND`` (no contract at the address),
``BAD_REQUEST``, ``NO_ABI`` (a function was named but no ABI was published), the codec's
``UNKNOWN_FUNCTION``, ``AMBIGUOUS_FUNCTION``, ``BAD_ABI_ARGS``, ``BAD_ABI_DATA``,
``UNKNOWN_EVENT``, and the engine's ``EVM_BAD_MESSAGE`` / ``EVM_GAS_LIMIT`` for a message that
cannot start. A query that ran but reverted, ran out of gas or faulted is an answer, not a
problem: 200 with ``ok: false``, the engine's ``code`` and, if the payload says, ``revert_reason``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from consortia import codec
from consortia.api.backend import ApiBackend
from consortia.api.private import read_context
from consortia.api.reads import (
    PRIVATE_PROBLEMS,
    ApiProblem,
    Problem,
    hex_arg,
    jsonable,
    proven,
    read_at,
)
from consortia.contracts import evm, keys
from consortia.contracts.abi import AbiError, ContractAbi
from consortia.execution.state import ChainState
from consortia.modules import contracts, registry

Caller = Callable[..., Coroutine[Any, Any, registry.Account]]

MAX_TOPICS = 4  # LOG0..LOG4
MAX_LOG_DATA_HEX = 2 * 64 * 1024


class QueryRequest(BaseModel):
    """A read-only call: ``data`` (hex calldata) or ``function`` with ``args``."""

    model_config = ConfigDict(extra="forbid")

    data: StrictStr | None = Field(None, description="ABI calldata, hex (0x optional)")
    function: StrictStr | None = Field(
        None, description="A function of the stored ABI: name, full signature or 0x selector"
    )
    args: list[Any] = Field(default_factory=list, description="The function's arguments (JSON)")
    gas_limit: StrictInt | None = Field(
        None, description=f"At most contracts.max_tx_gas; default {contracts.DEFAULT_QUERY_GAS}"
    )


class DecodeLogRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topics: list[StrictStr] = Field(..., max_length=MAX_TOPICS)
    data: StrictStr = Field("", max_length=MAX_LOG_DATA_HEX)


def _hex(text: str, what: str) -> bytes:
    body = text[2:] if text[:2].lower() == "0x" else text
    try:
        return bytes.fromhex(body)
    except ValueError:
        raise ApiProblem(400, "BAD_REQUEST", f"{what} must be hex") from None


def _address(text: str) -> bytes:
    address = hex_arg(text.removeprefix("0x"), "contract address", max_bytes=keys.ADDRESS_SIZE)
    if len(address) != keys.ADDRESS_SIZE:
        raise ApiProblem(400, "BAD_REQUEST", "a contract address is 20 bytes (40 hex digits)")
    return address


def _require_contract(state: ChainState, address: bytes) -> None:
    if not state.tree.get(keys.code_key(address)):
        raise ApiProblem(404, "NOT_FOUND", f"no contract at {address.hex()}")


def _stored_abi(state: ChainState, address: bytes) -> tuple[str, ContractAbi | None]:
    """The ABI text the deployer published and its parse (None if absent or unusable)."""
    raw = state.tree.get(contracts.abi_key(address))
    if not raw:
        return "", None
    text = raw.decode("utf-8", errors="replace")
    try:
        return text, ContractAbi.parse(text)
    except AbiError:
        return text, None  # stored as given: a broken ABI decodes nothing, breaks nothing


def _abi_problem(exc: AbiError) -> ApiProblem:
    return ApiProblem(400, exc.code, exc.message)


def contract_view(state: ChainState, address: bytes) -> dict[str, Any]:
    """The public JSON view of the contract at ``address`` (``ApiProblem`` 404 if none)."""
    _require_contract(state, address)
    info_read = read_at(state, contracts.info_key(address))
    info = (
        None
        if info_read.value is None
        else codec.decode_struct(contracts.ContractInfo, info_read.value)
    )
    raw_freeze = state.tree.get(contracts.frozen_key(address))
    freeze = (
        None if raw_freeze is None else codec.decode_struct(contracts.ContractFreeze, raw_freeze)
    )
    raw_account = state.tree.get(keys.account_key(address))
    account = (
        None if raw_account is None else codec.decode_struct(keys.ContractAccount, raw_account)
    )
    runtime = state.tree.get(keys.code_key(address)) or b""
    text, parsed = _stored_abi(state, address)
    abi_json: Any = None
    if text:
        try:
            abi_json = json.loads(text)
        except ValueError:
            abi_json = None
    events = (
        []
        if parsed is None
        else [
            {
                "name": e.name,
                "signature": e.signature,
                "topic0": None if e.anonymous else e.topic.hex(),
                "inputs": [
                    {"name": p.name, "type": p.type, "indexed": p.indexed} for p in e.inputs
                ],
            }
            for e in parsed.events
        ]
    )
    return {
        **proven(info_read),
        "address": address.hex(),
        "record": jsonable(info),  # None: created by another contract, not by a transaction
        "deployer": None if info is None else info.deployer.hex(),
        "code_hash": None if info is None else info.code_hash.hex(),
        "runtime_code_hash": None if account is None else account.code_hash.hex(),
        "runtime_code_size": len(runtime),
        "frozen": freeze is not None,
        "freeze": jsonable(freeze),
        "abi": abi_json,
        "abi_valid": parsed is not None,
        "events": events,
    }


def run_query(
    state: ChainState, address: bytes, req: QueryRequest, sender: bytes
) -> dict[str, Any]:
    """Run ``req`` as a static call over ``state`` from ``sender`` (see the module's rules)."""
    _require_contract(state, address)
    if (req.data is None) == (req.function is None):
        raise ApiProblem(400, "BAD_REQUEST", "give exactly one of data and function")
    if req.data is not None and req.args:
        raise ApiProblem(400, "BAD_REQUEST", "args go with function, not with data")
    max_gas = contracts.max_tx_gas(read_context(state))
    gas = min(contracts.DEFAULT_QUERY_GAS, max_gas) if req.gas_limit is None else req.gas_limit
    if not contracts.MIN_GAS <= gas <= max_gas:
        raise ApiProblem(
            400, "BAD_REQUEST", f"gas_limit must be {contracts.MIN_GAS}..{max_gas} (max_tx_gas)"
        )
    _text, parsed = _stored_abi(state, address)
    fn = None
    if req.function is not None:
        if parsed is None:
            raise ApiProblem(
                400, "NO_ABI", f"contract {address.hex()} has no usable ABI: send data instead"
            )
        try:
            fn = parsed.function(req.function, arity=len(req.args))
            data = parsed.encode_call(fn.signature, *req.args)
        except AbiError as exc:
            raise _abi_problem(exc) from None
    else:
        assert req.data is not None
        data = _hex(req.data, "data")
    result = contracts.query(
        state.tree,
        chain_id=state.chain_id,
        height=state.height + 1,  # as if in the next block, on top of the head
        time_ms=state.last_time_ms,
        parent_hash=state.last_block_hash,
        address=address,
        data=data,
        sender=sender,
        gas_limit=gas,
    )
    if result.status is evm.Status.REJECTED:
        raise ApiProblem(400, result.code, result.message)
    out: dict[str, Any] = {
        "address": address.hex(),
        "height": state.height,
        "state_root": state.state_root.hex(),
        "ok": result.ok,
        "status": result.status.value,
        "code": result.code,
        "message": result.message,
        "gas_used": result.gas_used,
        "output": result.output.hex(),
    }
    if fn is not None:
        out["function"] = fn.signature
    if result.ok and fn is not None and parsed is not None:
        try:
            out["result"] = parsed.output_json(fn, result.output)
        except AbiError as exc:  # the code does not return what its ABI says: report, not fail
            out["result"] = None
            out["result_error"] = f"{exc.code}: {exc.message}"
    if not result.ok:
        out["revert_reason"] = (
            parsed.revert_reason(result.output)
            if parsed is not None
            else ContractAbi().revert_reason(result.output)
        )
    return out


# One query at a time per process: the EVM engine thread is per process and shared with block
# execution (see ``query_contract``). A query waits at most QUERY_WAIT_S for its turn.
QUERY_SLOT = threading.Lock()
QUERY_WAIT_S = 1.0


QUERY_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **PRIVATE_PROBLEMS,
    503: {
        "model": Problem,
        "description": "QUERY_BUSY: another contract query is running here (problem details)",
    },
}


def contracts_router(backend: ApiBackend, caller: Caller) -> APIRouter:
    """The contract routes over ``backend``; ``caller`` is ``create_app``'s signed-request
    dependency (the registry account, or a 401 problem)."""
    router = APIRouter()

    @router.get("/v1/contracts/{address}", tags=["contracts"])
    async def get_contract(address: str) -> dict[str, Any]:
        """A contract's public record: deployer, approved code hash, version, frozen, runtime
        code hash and size, the published ABI and its events' topics, with the record's proof
        (404 ``NOT_FOUND`` if no contract lives at ``address``)."""
        return contract_view(backend.head(), _address(address))

    @router.post("/v1/contracts/{address}/query", tags=["contracts"], responses=QUERY_PROBLEMS)
    def query_contract(
        address: str, req: QueryRequest, acct: registry.Account = Depends(caller)
    ) -> dict[str, Any]:
        """A read-only call of the contract over the head state (no transaction), with
        ``msg.sender`` = the caller. Signed request of any registry account required.
        ``ok: false`` with the engine's code when the call reverted or failed; 400 problems for
        bad input (``UNKNOWN_FUNCTION``, ``BAD_ABI_ARGS``, ``NO_ABI``, ``EVM_BAD_MESSAGE``, ...)."""
        # A plain ``def``: the EVM runs on its own engine thread and this waits for it, off the
        # event loop. Block execution shares that one thread, so at most one query may be
        # queued on it at a time (a flood of queries must not delay a validator's blocks).
        if not QUERY_SLOT.acquire(timeout=QUERY_WAIT_S):
            raise ApiProblem(
                503, "QUERY_BUSY", "another contract query is running on this node; retry"
            )
        try:
            return run_query(backend.head(), _address(address), req, acct.address)
        finally:
            QUERY_SLOT.release()

    @router.post("/v1/contracts/{address}/decode-log", tags=["contracts"])
    async def decode_log(address: str, req: DecodeLogRequest) -> dict[str, Any]:
        """Decode one ``contracts.log`` event (``topics``, ``data``, hex) with the contract's
        published ABI: ``{"event", "signature", "args", "params"}``. 400 ``UNKNOWN_EVENT`` if
        no event of the ABI matches, ``NO_ABI`` if none was published."""
        state = backend.head()
        addr = _address(address)
        _require_contract(state, addr)
        _text, parsed = _stored_abi(state, addr)
        if parsed is None:
            raise ApiProblem(400, "NO_ABI", f"contract {addr.hex()} has no usable ABI")
        topics = [_hex(t, "a topic") for t in req.topics]
        if any(len(t) != 32 for t in topics):
            raise ApiProblem(400, "BAD_REQUEST", "a topic is 32 bytes (64 hex digits)")
        try:
            decoded = parsed.decode_log(topics, _hex(req.data, "data"))
        except AbiError as exc:
            raise _abi_problem(exc) from None
        return {"address": addr.hex(), **decoded.to_json()}

    return router


__all__ = ["DecodeLogRequest", "QueryRequest", "contract_view", "contracts_router", "run_query"]
