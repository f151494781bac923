"""What the REST API needs from a chain, and two ways to get it.

``ApiBackend`` is the small read/submit surface the routes use. ``LocalBackend`` runs over a
single-process ``LocalChain`` (a submission commits a block at once: for tests and rehearsals);
``NodeBackend`` runs over a live ``consortia.node.service.Node`` on the node's own event loop and
mirrors its client port (``block.get``, ``state.get``, ``account.get``, ``tx.submit``).

Every read of state goes through one immutable ``ChainState`` snapshot, so a value, its proof, the
state root and the height in one reply always belong together.

``committed(from_height)`` follows the chain: it yields every committed block from that height on,
first the stored ones, then each new one as it is committed. Subscribers are woken by a
``CommitFeed`` (``LocalBackend.submit`` and ``notify_committed``; a node's ``commit_listeners``)
and re-check the head every ``COMMIT_POLL_S`` anyway, so a commit that bypassed the feed is
still seen, and a slow subscriber never makes the node queue anything: it reads the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from consortia import codec
from consortia.crypto import Suite
from consortia.execution.state import ChainState
from consortia.ledger.types import (
    Block,
    CommitCertificate,
    Receipt,
    ReceiptList,
    Transaction,
    TxStatus,
    decode_block,
    decode_certificate,
    decode_transaction,
)
from consortia.node.mempool import Mempool, MempoolError
from consortia.storage import ChainStore

if TYPE_CHECKING:
    from consortia.node.local import LocalChain
    from consortia.node.service import Node


@dataclass(frozen=True)
class StateRead:
    """One state value at ``height`` with its (non-)membership proof against ``state_root``."""

    key: bytes
    value: bytes | None
    proof: bytes
    state_root: bytes
    height: int


COMMIT_POLL_S = 1.0  # a subscriber re-checks the head this often even without a notification


@dataclass(frozen=True)
class CommittedBlock:
    """One committed block as a subscriber sees it (read back from the store)."""

    height: int
    block_hash: bytes
    block: Block
    receipts: tuple[Receipt, ...]
    suite: Suite


class CommitFeed:
    """Wakes subscribed coroutines when the head advances. ``notify`` may be called from any
    thread (and with any arguments, so it can be a node commit listener as is); it never raises."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}
        self._next = 0

    def subscribe(self, event: asyncio.Event) -> int:
        with self._lock:
            self._next += 1
            self._subscribers[self._next] = (asyncio.get_running_loop(), event)
            return self._next

    def unsubscribe(self, token: int) -> None:
        with self._lock:
            self._subscribers.pop(token, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def notify(self, *_: object) -> None:
        with self._lock:
            targets = list(self._subscribers.values())
        for loop, event in targets:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody to wake
                loop.call_soon_threadsafe(event.set)


class ApiBackend(Protocol):
    """The chain as the REST API sees it (committed data only; no private keys)."""

    @property
    def chain_id(self) -> str: ...

    @property
    def suite(self) -> Suite: ...

    def head_height(self) -> int: ...

    def head(self) -> ChainState:
        """The state after the last committed block (immutable)."""
        ...

    def block(self, height: int) -> Block | None: ...

    def certificate(self, height: int) -> CommitCertificate | None: ...

    def receipts(self, height: int) -> tuple[Receipt, ...] | None: ...

    def find_tx(self, tx_hash: bytes) -> tuple[int, int] | None:
        """``(height, position)`` of a committed transaction, or None."""
        ...

    def state_value(self, key: bytes) -> StateRead: ...

    def info(self) -> dict[str, Any]:
        """Extra, public facts about the serving node for ``/v1/status`` (may be empty)."""
        ...

    async def submit(self, raws: list[bytes], wait: bool) -> list[dict[str, Any]]:
        """One reply per raw transaction, as the node's client port gives them:
        ``{ok, tx_hash[, height, code, message]}`` or ``{ok: False, code, message}``."""
        ...

    def metrics_text(self) -> str:
        """Prometheus text exposition (``""`` if the node keeps no metrics yet)."""
        ...

    def committed(self, from_height: int) -> AsyncIterator[CommittedBlock]:
        """Every committed block from ``from_height`` on: the stored ones, then live (never
        ends by itself; close it to unsubscribe)."""
        ...


class _StoreReads(ABC):
    """Block, certificate, receipts and tx-index reads shared by both backends, and the
    committed-block subscription over them."""

    _feed: CommitFeed

    @abstractmethod
    def _store(self) -> ChainStore:
        """The chain store the reads go to."""

    @abstractmethod
    def _state(self) -> ChainState:
        """The head state."""

    @property
    def chain_id(self) -> str:
        return self._state().chain_id

    @property
    def suite(self) -> Suite:
        return self._state().suite

    def head(self) -> ChainState:
        return self._state()

    def head_height(self) -> int:
        return self._state().height

    def _in_range(self, height: int) -> bool:
        return 1 <= height <= self.head_height()

    def block(self, height: int) -> Block | None:
        raw = self._store().block(height) if self._in_range(height) else None
        return None if raw is None else decode_block(raw)

    def certificate(self, height: int) -> CommitCertificate | None:
        raw = self._store().certificate(height) if self._in_range(height) else None
        return None if raw is None else decode_certificate(raw)

    def receipts(self, height: int) -> tuple[Receipt, ...] | None:
        raw = self._store().receipts(height) if self._in_range(height) else None
        return None if raw is None else codec.decode_struct(ReceiptList, raw).receipts

    def find_tx(self, tx_hash: bytes) -> tuple[int, int] | None:
        found = self._store().find_tx(tx_hash)
        if found is None or not self._in_range(found[0]):
            return None
        return found

    def committed_block(self, height: int) -> CommittedBlock | None:
        block = self.block(height)
        receipts = self.receipts(height)
        if block is None or receipts is None:
            return None
        cert = self.certificate(height)
        block_hash = cert.block_hash if cert is not None else block.hash(self.suite)
        return CommittedBlock(height, block_hash, block, receipts, self.suite)

    async def committed(self, from_height: int) -> AsyncIterator[CommittedBlock]:
        event = asyncio.Event()
        token = self._feed.subscribe(event)
        try:
            next_height = max(1, from_height)
            while True:
                event.clear()  # before reading the head: a commit after this wakes us
                while next_height <= self.head_height():
                    item = self.committed_block(next_height)
                    if item is None:  # not readable yet: retry on the next wake-up
                        break
                    yield item
                    next_height += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), COMMIT_POLL_S)
        finally:
            self._feed.unsubscribe(token)

    def state_value(self, key: bytes) -> StateRead:
        state = self._state()
        return StateRead(
            key=key,
            value=state.tree.get(key),
            proof=state.tree.prove(key).to_bytes(),
            state_root=state.state_root,
            height=state.height,
        )


class LocalBackend(_StoreReads):
    """Over a ``LocalChain``: ``submit`` screens like a mempool, then commits one block at once."""

    def __init__(self, chain: LocalChain) -> None:
        self.chain = chain
        self._feed = CommitFeed()

    def notify_committed(self) -> None:
        """Wake stream subscribers (after committing on ``chain`` directly; any thread)."""
        self._feed.notify()

    def _store(self) -> ChainStore:
        return self.chain.store

    def _state(self) -> ChainState:
        return self.chain.state

    def info(self) -> dict[str, Any]:
        return {"node": "local", "role": "local"}

    async def submit(self, raws: list[bytes], wait: bool) -> list[dict[str, Any]]:
        pool = Mempool(sig_cache=self.chain.sig_cache)
        state = self.chain.state
        replies: list[dict[str, Any]] = []
        admitted: list[tuple[int, bytes, Transaction]] = []
        for i, raw in enumerate(raws):
            try:
                tx_hash = pool.add_raw(raw, state)
            except MempoolError as exc:
                replies.append({"ok": False, "code": exc.code, "message": str(exc)})
                continue
            replies.append({"ok": True, "tx_hash": tx_hash})
            admitted.append((i, tx_hash, decode_transaction(raw)))
        if not admitted:
            return replies
        committed = self.chain.commit([tx for _, _, tx in admitted])
        self._feed.notify()
        height = committed.block.header.height
        by_hash = {r.tx_hash: r for r in committed.receipts}
        for i, tx_hash, _ in admitted:
            receipt = by_hash.get(tx_hash)
            if receipt is None:  # dropped by the proposer (e.g. a nonce gap): still pending
                if wait:
                    replies[i] = {
                        "ok": False,
                        "code": "NOT_COMMITTED_IN_TIME",
                        "message": "not committed in time",
                        "tx_hash": tx_hash,
                    }
            elif wait:
                replies[i] = {
                    "ok": receipt.status == TxStatus.OK,
                    "tx_hash": tx_hash,
                    "height": height,
                    "code": receipt.code,
                    "message": receipt.message,
                }
        return replies

    def metrics_text(self) -> str:
        return (
            "# HELP consortia_height Height of the last committed block.\n"
            "# TYPE consortia_height gauge\n"
            f"consortia_height {self.head_height()}\n"
        )


class NodeBackend(_StoreReads):
    """Over a running ``Node``. Call it only from the node's event loop (the API's routes are
    ``async`` for that reason): the node is single-threaded."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._feed = CommitFeed()
        listeners = getattr(node, "commit_listeners", None)
        if isinstance(listeners, list):  # otherwise subscribers poll the head
            listeners.append(self._feed.notify)

    def _store(self) -> ChainStore:
        return self.node.store

    def _state(self) -> ChainState:
        return self.node.state

    def info(self) -> dict[str, Any]:
        config = self.node.config
        return {
            "node": config.node_name,
            "org": config.org_id,
            "role": config.role,
            "mempool": len(self.node.mempool),
        }

    async def submit(self, raws: list[bytes], wait: bool) -> list[dict[str, Any]]:
        return await self.node._submit(raws, wait=wait)

    def metrics_text(self) -> str:
        metrics = getattr(self.node, "metrics", None)
        render = getattr(metrics, "render", None)
        if render is None:
            return ""
        text = render()
        return text if isinstance(text, str) else ""
