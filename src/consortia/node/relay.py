"""The relayer between one business chain and the supervision chain.

Each round it:

1. **follows** the supervision chain on the business chain: every supervision header after the
   one the business chain's ``supervision`` light client trusts, with its certificate (and the
   validator set a header announces), in ``supervision.follow`` batches;
2. **carries orders down**: it scans supervision receipts for ``orders/order_issued`` events
   addressed to this business chain; for each not yet applied there (``supervision/applied/<id>``
   is absent) it reads the order with its state proof at the supervision head H, makes sure the
   business chain follows the supervision chain up to H, and submits ``supervision.apply_order``;
3. **anchors** every committed business header after the supervision chain's
   ``AnchoredChain.height`` (read there, so the relayer keeps no state of its own: it is
   idempotent, restart-safe and catches up after downtime without gaps) in
   ``anchoring.anchor`` batches;
4. reports metrics (``RoundReport``): anchoring lag in blocks and in milliseconds (business head
   time − last anchored header time), heights, orders applied, errors.

It is written against ``Endpoint`` (submit signed transactions and wait for their receipts, a
committed block with certificate and receipts, ``state.get``, the head height, an account's
nonce), implemented over a node's client port (``NodeEndpoint``) and in process over a
``LocalChain`` (``LocalEndpoint``, for tests). The relayer holds one key per chain: an account
with role ``relayer`` on each.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from consortia import codec
from consortia.crypto import CryptoError, KeyPair, Suite, get_suite
from consortia.execution.state import vset_history_key
from consortia.ledger.light import CertifiedHeader
from consortia.ledger.state_tree import StateProof, StateTreeError, verify_state_proof
from consortia.ledger.types import (
    Block,
    CommitCertificate,
    Receipt,
    ReceiptList,
    Transaction,
    TxStatus,
    ValidatorSet,
    decode_block,
    decode_certificate,
    sign_transaction,
)
from consortia.modules import anchoring, orders, supervision
from consortia.modules.registry import Account, account_key
from consortia.node.client import NodeUnreachableError
from consortia.node.client import call as client_call
from consortia.node.local import LocalChain, load_genesis
from consortia.node.network_home import NodeConfig

log = logging.getLogger(__name__)

# A transaction is at most ``ledger.types.MAX_TX_BYTES`` (64 KiB): keep a batch's headers well
# under it, whatever the certificate sizes.
MAX_BATCH_BYTES = 48_000


class RelayError(Exception):
    """The relayer could not do a step (a node unreachable, a bad reply); the message says why."""


# ---------------------------------------------------------------------------------------------
# Endpoints


@dataclass(frozen=True)
class CommittedBlock:
    block: Block
    certificate: CommitCertificate
    receipts: tuple[Receipt, ...]


@dataclass(frozen=True)
class StateReading:
    """A committed state value (None: absent) with its proof against ``state_root``."""

    key: bytes
    value: bytes | None
    proof: bytes
    height: int
    state_root: bytes


@dataclass(frozen=True)
class TxOutcome:
    ok: bool
    code: str
    message: str
    height: int | None


class Endpoint(Protocol):
    """What the relayer needs of one chain."""

    @property
    def chain_id(self) -> str: ...

    @property
    def suite(self) -> Suite: ...

    def head_height(self) -> int: ...

    def block(self, height: int) -> CommittedBlock: ...

    def state(self, key: bytes) -> StateReading: ...

    def nonce(self, address: bytes) -> int: ...

    def submit(self, txs: Sequence[Transaction]) -> list[TxOutcome]:
        """Submit and wait until each is committed (or refused); one outcome per transaction."""
        ...


def _decode_receipts(raw: bytes | None) -> tuple[Receipt, ...]:
    if raw is None:
        return ()
    return codec.decode_struct(ReceiptList, raw).receipts


class LocalEndpoint:
    """In process, over a ``LocalChain`` (each ``submit`` commits one block)."""

    def __init__(self, chain: LocalChain) -> None:
        self.chain = chain

    @property
    def chain_id(self) -> str:
        return self.chain.genesis.chain_id

    @property
    def suite(self) -> Suite:
        return self.chain.suite

    def head_height(self) -> int:
        return self.chain.height

    def block(self, height: int) -> CommittedBlock:
        store = self.chain.store
        raw_block, raw_cert = store.block(height), store.certificate(height)
        if raw_block is None or raw_cert is None:
            raise RelayError(f"{self.chain_id}: no committed block {height}")
        return CommittedBlock(
            decode_block(raw_block),
            decode_certificate(raw_cert),
            _decode_receipts(store.receipts(height)),
        )

    def state(self, key: bytes) -> StateReading:
        st = self.chain.state
        return StateReading(
            key, st.tree.get(key), st.tree.prove(key).to_bytes(), st.height, st.state_root
        )

    def nonce(self, address: bytes) -> int:
        raw = self.chain.state.tree.get(account_key(address))
        if raw is None:
            raise RelayError(f"{self.chain_id}: no account {address.hex()}")
        return codec.decode_struct(Account, raw).nonce

    def submit(self, txs: Sequence[Transaction]) -> list[TxOutcome]:
        committed = self.chain.commit(txs)
        height = committed.block.header.height
        by_hash = {r.tx_hash: r for r in committed.receipts}
        refused = {tx.hash(self.suite): reason for tx, reason in committed.rejected}
        out = []
        for tx in txs:
            h = tx.hash(self.suite)
            receipt = by_hash.get(h)
            if receipt is not None:
                ok = receipt.status == TxStatus.OK
                out.append(TxOutcome(ok, receipt.code, receipt.message, height))
            else:
                out.append(TxOutcome(False, "REFUSED", refused.get(h, "not included"), None))
        return out


class NodeEndpoint:
    """Over a node's loopback client port (``consortia.node.client``), with timeouts."""

    def __init__(
        self,
        host: str,
        port: int,
        chain_id: str,
        suite: Suite,
        *,
        timeout_s: float = 10.0,
        submit_timeout_s: float = 60.0,
    ) -> None:
        self.host = host
        self.port = port
        self._chain_id = chain_id
        self._suite = suite
        self.timeout_s = timeout_s
        self.submit_timeout_s = submit_timeout_s

    @classmethod
    def from_node_home(cls, node_home: Path) -> NodeEndpoint:
        """Chain id and suite from the node's genesis, host and client port from its config
        (``NodeError`` / ``GenesisError`` if the home is unusable)."""
        genesis = load_genesis(node_home)
        config = NodeConfig.load(node_home)
        return cls(config.host, config.client_port, genesis.chain_id, get_suite(genesis.suite))

    @property
    def chain_id(self) -> str:
        return self._chain_id

    @property
    def suite(self) -> Suite:
        return self._suite

    def _call(self, kind: str, body: dict[str, Any], *, timeout_s: float | None = None) -> Any:
        where = f"{self._chain_id} node {self.host}:{self.port}"
        try:
            reply = client_call(
                self.host, self.port, kind, body, timeout_s=timeout_s or self.timeout_s
            )
        except NodeUnreachableError as exc:
            raise RelayError(f"{where}: {exc}") from exc
        except Exception as exc:  # a frame, codec or socket error: one clear line, no traceback
            raise RelayError(f"{where}: {kind} failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(reply, dict):
            raise RelayError(f"{where}: {kind}: malformed reply")
        if not reply.get("ok"):
            raise RelayError(f"{where}: {kind}: {reply.get('code')}: {reply.get('message')}")
        return reply

    def head_height(self) -> int:
        height = self._call("status", {}).get("height")
        if not isinstance(height, int):
            raise RelayError(f"{self._chain_id}: status without a height")
        return height

    def block(self, height: int) -> CommittedBlock:
        reply = self._call("block.get", {"height": height})
        raw_block, raw_cert, raw_receipts = (
            reply.get("block"),
            reply.get("certificate"),
            reply.get("receipts"),
        )
        if not isinstance(raw_block, bytes) or not isinstance(raw_cert, bytes):
            raise RelayError(f"{self._chain_id}: block {height} comes without its certificate")
        try:
            block = decode_block(raw_block)
            cert = decode_certificate(raw_cert)
            receipts = _decode_receipts(raw_receipts if isinstance(raw_receipts, bytes) else None)
        except (codec.CodecError, ValueError) as exc:
            raise RelayError(f"{self._chain_id}: block {height} does not decode: {exc}") from exc
        if block.header.height != height or cert.height != height:
            raise RelayError(f"{self._chain_id}: asked for block {height}, got another")
        return CommittedBlock(block, cert, receipts)

    def state(self, key: bytes) -> StateReading:
        reply = self._call("state.get", {"key": key})
        value, raw_proof = reply.get("value"), reply.get("proof")
        height, root = reply.get("height"), reply.get("state_root")
        if (
            not isinstance(raw_proof, bytes)
            or not isinstance(height, int)
            or not isinstance(root, bytes)
            or not (value is None or isinstance(value, bytes))
        ):
            raise RelayError(f"{self._chain_id}: state.get: malformed reply")
        try:
            proof = StateProof.from_bytes(raw_proof)
            if proof.key != key or proof.value != value:
                raise StateTreeError("the proof is for another key or value")
            verify_state_proof(self._suite.hash, root, proof)
        except StateTreeError as exc:
            raise RelayError(f"{self._chain_id}: state.get: bad proof: {exc}") from exc
        return StateReading(key, value, raw_proof, height, root)

    def nonce(self, address: bytes) -> int:
        nonce = self._call("account.get", {"address": address}).get("nonce")
        if not isinstance(nonce, int):
            raise RelayError(f"{self._chain_id}: account.get without a nonce")
        return nonce

    def submit(self, txs: Sequence[Transaction]) -> list[TxOutcome]:
        reply = self._call(
            "tx.submit_many",
            {"txs": [tx.encode() for tx in txs], "wait": True},
            timeout_s=self.submit_timeout_s,
        )
        results = reply.get("results")
        if not isinstance(results, list) or len(results) != len(txs):
            raise RelayError(f"{self._chain_id}: tx.submit_many: malformed reply")
        out = []
        for item in results:
            r: dict[str, Any] = item if isinstance(item, dict) else {}
            height = r.get("height")
            out.append(
                TxOutcome(
                    bool(r.get("ok")),
                    str(r.get("code", "")),
                    str(r.get("message", "")),
                    height if isinstance(height, int) else None,
                )
            )
        return out


# ---------------------------------------------------------------------------------------------
# The relayer


def certified_header(ep: Endpoint, height: int) -> CertifiedHeader:
    """Header ``height`` of ``ep``'s chain as a light client takes it: with its certificate and,
    when it announces a new validator set, that set (from the chain's validator-set history)."""
    data = ep.block(height)
    h = data.block.header
    announced: ValidatorSet | None = None
    if h.next_validator_set_hash != h.validator_set_hash:
        reading = ep.state(vset_history_key(height + 1))
        if reading.value is None:
            raise RelayError(
                f"{ep.chain_id}: header {height} announces a validator set the state lacks"
            )
        announced = codec.decode_struct(ValidatorSet, reading.value)
    return CertifiedHeader(h, data.certificate, announced)


@dataclass(frozen=True)
class RelayConfig:
    max_headers: int = 64  # per anchor / follow transaction (the modules' limit)
    max_batch_bytes: int = MAX_BATCH_BYTES
    max_txs_per_round: int = 8  # header batches submitted per step and round
    max_scan_blocks: int = 1000  # supervision blocks scanned for orders per round
    retry_rounds: int = 5  # an order whose application failed is retried this many rounds later


@dataclass(frozen=True)
class RoundReport:
    """The metrics of one round (``to_json`` for logs and the CLI)."""

    round: int
    business_chain: str
    supervision_chain: str
    business_height: int
    anchored_height: int
    anchor_lag_blocks: int
    anchor_lag_ms: int
    supervision_height: int
    followed_height: int
    anchored: int  # business headers anchored this round
    followed: int  # supervision headers followed this round
    orders_applied: int  # this round
    orders_applied_total: int  # since this relayer started
    orders_pending: int
    errors: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["errors"] = list(self.errors)
        return out


@dataclass
class _Progress:
    anchored: int = 0
    followed: int = 0
    applied: int = 0
    errors: list[str] = field(default_factory=list)


class Relayer:
    """Relays between ``business`` and ``supervision``; ``run_round`` does one pass."""

    def __init__(
        self,
        business: Endpoint,
        supervision_ep: Endpoint,
        business_key: KeyPair,
        supervision_key: KeyPair,
        config: RelayConfig | None = None,
    ) -> None:
        self.business = business
        self.supervision = supervision_ep
        self.business_key = business_key
        self.supervision_key = supervision_key
        self.config = config or RelayConfig()
        self.business_address = business.suite.address(business_key.public_key)
        self.supervision_address = supervision_ep.suite.address(supervision_key.public_key)
        self.rounds = 0
        self.orders_applied_total = 0
        self._scan_next = 1  # the next supervision height to scan for orders
        self._pending: dict[str, int] = {}  # order id -> supervision height that issued it
        self._failed: dict[str, int] = {}  # order id -> round of its last failed application

    # -- signing ---------------------------------------------------------------------------

    def _sign_all(
        self, ep: Endpoint, key: KeyPair, address: bytes, calls: list[tuple[str, str, Any]]
    ) -> list[Transaction]:
        nonce = ep.nonce(address)
        return [
            sign_transaction(
                ep.suite,
                key,
                chain_id=ep.chain_id,
                nonce=nonce + i,
                module=module,
                method=method,
                args=args,
                sender=address,
            )
            for i, (module, method, args) in enumerate(calls)
        ]

    # -- header batches (anchoring and following share the shape) --------------------------

    def _header_batches(self, source: Endpoint, start: int, head: int) -> list[list[Any]]:
        """Certified headers ``start..head`` of ``source`` as CBOR, in batches that fit a tx."""
        batches: list[list[Any]] = []
        height = start
        while height <= head and len(batches) < self.config.max_txs_per_round:
            batch: list[Any] = []
            size = 0
            while height <= head and len(batch) < self.config.max_headers:
                item = codec.to_cbor(certified_header(source, height))
                n = len(codec.encode(item))
                if batch and size + n > self.config.max_batch_bytes:
                    break
                batch.append(item)
                size += n
                height += 1
            batches.append(batch)
        return batches

    def _submit_batches(
        self, ep: Endpoint, key: KeyPair, address: bytes, calls: list[tuple[str, str, Any]]
    ) -> tuple[int, list[str]]:
        """Submit the calls in order; how many succeeded before the first failure, and errors."""
        if not calls:
            return 0, []
        txs = self._sign_all(ep, key, address, calls)
        done, errors = 0, []
        for (module, method, _), outcome in zip(calls, ep.submit(txs), strict=True):
            if outcome.ok:
                done += 1
            else:
                errors.append(f"{ep.chain_id} {module}.{method}: {outcome.code}: {outcome.message}")
                break  # later batches depend on this one
        return done, errors

    # -- steps -----------------------------------------------------------------------------

    def anchored_chain(self) -> anchoring.AnchoredChain | None:
        raw = self.supervision.state(anchoring.chain_key(self.business.chain_id)).value
        return None if raw is None else codec.decode_struct(anchoring.AnchoredChain, raw)

    def supervision_client(self) -> supervision.SupervisionClient | None:
        raw = self.business.state(supervision.CLIENT_KEY).value
        return None if raw is None else codec.decode_struct(supervision.SupervisionClient, raw)

    def anchor_step(self, progress: _Progress) -> None:
        chain = self.anchored_chain()
        if chain is None:
            progress.errors.append(
                f"{self.business.chain_id} is not registered on {self.supervision.chain_id}"
            )
            return
        anchored = chain.height
        head = self.business.head_height()
        while anchored < head:
            batches = self._header_batches(self.business, anchored + 1, head)
            calls = [
                ("anchoring", "anchor", {"chain_id": self.business.chain_id, "headers": b})
                for b in batches
            ]
            done, errors = self._submit_batches(
                self.supervision, self.supervision_key, self.supervision_address, calls
            )
            n = sum(len(b) for b in batches[:done])
            progress.anchored += n
            anchored += n
            if errors:
                progress.errors += errors
                break

    def follow_step(self, progress: _Progress, *, until: int | None = None) -> int:
        """Follow the supervision chain up to its head (or until ``until``); the followed
        height after it (-1 when the business chain trusts no supervision chain)."""
        client = self.supervision_client()
        if client is None:
            progress.errors.append(
                f"{self.business.chain_id} trusts no supervision chain (trust_supervision)"
            )
            return -1
        followed = client.height
        head = self.supervision.head_height()
        target = head if until is None else min(until, head)
        while followed < target:
            batches = self._header_batches(self.supervision, followed + 1, target)
            calls = [("supervision", "follow", {"headers": b}) for b in batches]
            done, errors = self._submit_batches(
                self.business, self.business_key, self.business_address, calls
            )
            n = sum(len(b) for b in batches[:done])
            progress.followed += n
            followed += n
            if errors:
                progress.errors += errors
                break
        return followed

    def _scan_orders(self) -> None:
        head = self.supervision.head_height()
        end = min(head, self._scan_next + self.config.max_scan_blocks - 1)
        for height in range(self._scan_next, end + 1):
            for receipt in self.supervision.block(height).receipts:
                if receipt.status != TxStatus.OK:
                    continue
                for ev in receipt.events:
                    attrs = ev.attributes
                    if (
                        ev.module == orders.NAME
                        and ev.kind == "order_issued"
                        and attrs.get("chain_id") == self.business.chain_id
                        and isinstance(attrs.get("order_id"), str)
                    ):
                        self._pending.setdefault(attrs["order_id"], height)
        self._scan_next = max(self._scan_next, end + 1)

    def orders_step(self, progress: _Progress) -> None:
        self._scan_orders()
        readings: list[tuple[str, orders.Order, StateReading]] = []
        for order_id in sorted(self._pending, key=lambda o: (self._pending[o], o)):
            failed_round = self._failed.get(order_id)
            if failed_round is not None and self.rounds - failed_round < self.config.retry_rounds:
                continue
            if self.business.state(supervision.applied_key(order_id)).value is not None:
                del self._pending[order_id]
                continue
            reading = self.supervision.state(orders.order_key(order_id))
            if reading.value is None:
                progress.errors.append(f"order {order_id!r} is not in the supervision state")
                continue
            readings.append((order_id, codec.decode_struct(orders.Order, reading.value), reading))
        if not readings:
            return
        need = max(r.height for _, _, r in readings)
        if self.follow_step(progress, until=need) < need:
            progress.errors.append(f"cannot follow the supervision chain up to {need}")
            return
        calls = [
            (
                "supervision",
                "apply_order",
                {"order": codec.to_cbor(order), "height": r.height, "proof": r.proof},
            )
            for _, order, r in readings
        ]
        txs = self._sign_all(self.business, self.business_key, self.business_address, calls)
        for (order_id, _, _), outcome in zip(readings, self.business.submit(txs), strict=True):
            if outcome.ok:
                progress.applied += 1
                self._pending.pop(order_id, None)
                self._failed.pop(order_id, None)
            elif outcome.code == supervision.OrderAlreadyAppliedError.code:
                self._pending.pop(order_id, None)
            else:
                self._failed[order_id] = self.rounds
                progress.errors.append(
                    f"order {order_id!r} not applied: {outcome.code}: {outcome.message}"
                )

    # -- a round ---------------------------------------------------------------------------

    def _guard(self, progress: _Progress, step: Callable[[_Progress], Any]) -> None:
        try:
            step(progress)
        except RelayError as exc:
            progress.errors.append(str(exc))
        except (codec.CodecError, ValueError, CryptoError) as exc:
            progress.errors.append(f"{step.__name__}: {type(exc).__name__}: {exc}")

    def run_round(self) -> RoundReport:
        """Follow, carry orders down, anchor; then measure. Never raises for a node's failure:
        errors are listed in the report and the next round starts over from the chains."""
        self.rounds += 1
        progress = _Progress()
        self._guard(progress, self.follow_step)
        self._guard(progress, self.orders_step)
        self._guard(progress, self.anchor_step)
        self.orders_applied_total += progress.applied
        report = self._measure(progress)
        log.info("relay round %d: %s", self.rounds, report.to_json())
        return report

    def _measure(self, progress: _Progress) -> RoundReport:
        business_height = anchored_height = lag_ms = sup_height = followed = -1
        try:
            business_height = self.business.head_height()
            chain = self.anchored_chain()
            if chain is not None:
                anchored_height = chain.height
                head_time = (
                    self.business.block(business_height).block.header.time_ms
                    if business_height > 0
                    else chain.genesis_time_ms
                )
                # Until a block is anchored there is no anchored time to compare with (block 1
                # carries the genesis time, which may be long past): report -1, "not yet".
                lag_ms = max(0, head_time - chain.time_ms) if chain.height > 0 else -1
            sup_height = self.supervision.head_height()
            client = self.supervision_client()
            followed = -1 if client is None else client.height
        except (RelayError, codec.CodecError, ValueError) as exc:
            progress.errors.append(f"metrics: {exc}")
        lag_blocks = (
            business_height - anchored_height if min(business_height, anchored_height) >= 0 else -1
        )
        return RoundReport(
            round=self.rounds,
            business_chain=self.business.chain_id,
            supervision_chain=self.supervision.chain_id,
            business_height=business_height,
            anchored_height=anchored_height,
            anchor_lag_blocks=lag_blocks,
            anchor_lag_ms=lag_ms,
            supervision_height=sup_height,
            followed_height=followed,
            anchored=progress.anchored,
            followed=progress.followed,
            orders_applied=progress.applied,
            orders_applied_total=self.orders_applied_total,
            orders_pending=len(self._pending),
            errors=tuple(progress.errors),
        )

    def run(
        self,
        *,
        interval_ms: int = 1000,
        rounds: int | None = None,
        on_report: Callable[[RoundReport], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Run rounds every ``interval_ms`` until ``rounds`` are done or ``stop`` is set."""
        stop = stop or threading.Event()
        done = 0
        while not stop.is_set() and (rounds is None or done < rounds):
            report = self.run_round()
            done += 1
            if on_report is not None:
                on_report(report)
            if rounds is not None and done >= rounds:
                break
            stop.wait(interval_ms / 1000)


__all__ = [
    "CommittedBlock",
    "Endpoint",
    "LocalEndpoint",
    "NodeEndpoint",
    "RelayConfig",
    "RelayError",
    "Relayer",
    "RoundReport",
    "StateReading",
    "TxOutcome",
    "certified_header",
]
