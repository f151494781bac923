"""The view a module gets while one transaction runs: buffered reads/writes and events.

Writes go to a per-transaction overlay; the block executor merges it only if the transaction
succeeds, so a failing transaction changes nothing (all-or-nothing per transaction).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from consortia import codec
from consortia.crypto import Suite
from consortia.ledger.state_tree import StateTree
from consortia.ledger.types import Event

T = TypeVar("T")

MAX_EVENTS_PER_TX = 256
MAX_WRITES_PER_TX = 4096
MAX_VALUE_BYTES = 256 * 1024


_RECORD_MEMO: dict[tuple[type, bytes], Any] = {}
_RECORD_MEMO_LIMIT = 100_000


def decode_record(cls: type[T], raw: bytes) -> T:
    """Decode a state record, memoized by its bytes.

    Safe because decoding is a pure function of (type, bytes) and records are frozen; it saves
    re-decoding the same hot records (a broker's account, an organization) for every transaction.
    """
    key = (cls, raw)
    hit = _RECORD_MEMO.get(key)
    if hit is None:
        hit = codec.decode_struct(cls, raw)
        if len(_RECORD_MEMO) >= _RECORD_MEMO_LIMIT:
            _RECORD_MEMO.clear()  # crude but bounded; a miss only costs a decode
        _RECORD_MEMO[key] = hit
    return hit


class ExecutionLimitError(Exception):
    """A transaction exceeded a per-transaction execution limit (reported as a TxFailure)."""


class BlockGas:
    """The EVM gas the transactions of one block have used so far (a running sum).

    One meter per executed block, shared by its transactions' contexts. Gas is charged when a
    contract message ran, whether or not the transaction then failed: the work was done either
    way, and a failed transaction's writes are discarded but its gas is not. Deterministic: the
    same transactions in the same order charge the same amounts on every node.
    """

    __slots__ = ("used",)

    def __init__(self) -> None:
        self.used = 0

    def charge(self, gas: int) -> None:
        if gas < 0:
            raise ValueError("gas used is not negative")
        self.used += gas


class TxContext:
    """Read-through overlay: tx writes → block writes → the committed tree."""

    __slots__ = (
        "_block_writes",
        "_tree",
        "block_gas",
        "chain_id",
        "events",
        "height",
        "nonce",
        "parent_hash",
        "sender",
        "suite",
        "time_ms",
        "writes",
    )

    def __init__(
        self,
        *,
        suite: Suite,
        chain_id: str,
        height: int,
        time_ms: int,
        tree: StateTree,
        block_writes: Mapping[bytes, bytes | None],
        sender: bytes,
        nonce: int = 0,
        parent_hash: bytes = bytes(32),
        block_gas: BlockGas | None = None,
    ) -> None:
        """``nonce`` is the transaction's nonce (it fixes a contract's deployment address) and
        ``parent_hash`` the hash of the block before this one (what a contract sees as
        BLOCKHASH/PREVRANDAO); ``block_gas`` is the block's shared EVM gas meter (a fresh one
        when the context is not part of a block, e.g. a read-only view)."""
        self.suite = suite
        self.nonce = nonce
        self.parent_hash = parent_hash
        self.block_gas = block_gas if block_gas is not None else BlockGas()
        self.chain_id = chain_id
        self.height = height
        self.time_ms = time_ms
        self.sender = sender
        self._tree = tree
        self._block_writes = block_writes
        self.writes: dict[bytes, bytes | None] = {}
        self.events: list[Event] = []

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        if key in self._block_writes:
            return self._block_writes[key]
        return self._tree.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        if len(value) > MAX_VALUE_BYTES:
            raise ExecutionLimitError(f"state value of {len(value)} bytes exceeds the limit")
        if key not in self.writes and len(self.writes) >= MAX_WRITES_PER_TX:
            raise ExecutionLimitError("too many state writes in one transaction")
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        self.writes[key] = None

    def get_record(self, key: bytes, cls: type[T]) -> T | None:
        raw = self.get(key)
        return None if raw is None else decode_record(cls, raw)

    def put_record(self, key: bytes, record: Any) -> None:
        self.put(key, codec.encode_struct(record))

    def emit(self, module: str, kind: str, /, **attributes: Any) -> None:
        if len(self.events) >= MAX_EVENTS_PER_TX:
            raise ExecutionLimitError("too many events in one transaction")
        self.events.append(Event(module=module, kind=kind, attributes=dict(attributes)))
