"""The mempool: pending transactions, deduplicated, bounded, ordered by sender nonce.

Admission checks what the proposer will check anyway (chain id, known sender, nonce window,
signature with the sender's registered key) so that bad transactions cost one look and never reach
a block; signatures go through the node's shared ``SignatureCache``, so each is verified once per
node. Everything is bounded: total count, total bytes, transactions per sender, transaction size.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from consortia import codec
from consortia.execution.context import decode_record
from consortia.execution.sigcache import SignatureCache
from consortia.execution.state import ChainState
from consortia.ledger.types import (
    MAX_TX_BYTES,
    Transaction,
    WireFormatError,
    decode_transaction,
)
from consortia.modules.registry import Account, account_key


@dataclass(frozen=True)
class MempoolLimits:
    max_txs: int = 50_000
    max_bytes: int = 64 * 1024 * 1024
    max_per_sender: int = 1_024  # also the nonce window: nonce < account nonce + this
    max_tx_bytes: int = MAX_TX_BYTES


class MempoolError(ValueError):
    """A transaction was not admitted (base class; ``code`` is stable for API clients)."""

    code = "TRANSACTION_REJECTED"


class MalformedTransactionError(MempoolError):
    code = "MALFORMED_TRANSACTION"


class TransactionTooLargeError(MempoolError):
    code = "TRANSACTION_TOO_LARGE"


class WrongChainError(MempoolError):
    code = "WRONG_CHAIN"


class UnknownSenderError(MempoolError):
    code = "UNKNOWN_SENDER"


class StaleNonceError(MempoolError):
    code = "STALE_NONCE"


class NonceTooFarError(MempoolError):
    code = "NONCE_TOO_FAR"


class BadSignatureError(MempoolError):
    code = "BAD_SIGNATURE"


class DuplicateTransactionError(MempoolError):
    code = "DUPLICATE_TRANSACTION"


class NonceTakenError(MempoolError):
    code = "NONCE_TAKEN"


class MempoolFullError(MempoolError):
    code = "MEMPOOL_FULL"


class SenderQuotaError(MempoolError):
    code = "SENDER_QUOTA_EXCEEDED"


@dataclass(frozen=True)
class _Entry:
    tx: Transaction
    tx_hash: bytes
    size: int
    seq: int


class Mempool:
    """Pending transactions of one node. Not thread-safe: the node's event loop owns it."""

    def __init__(
        self,
        *,
        sig_cache: SignatureCache | None = None,
        limits: MempoolLimits | None = None,
    ) -> None:
        self.limits = limits or MempoolLimits()
        self.sig_cache = sig_cache if sig_cache is not None else SignatureCache()
        self._by_hash: dict[bytes, _Entry] = {}
        self._by_sender: dict[bytes, dict[int, _Entry]] = {}
        self._bytes = 0
        self._seq = 0

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._by_hash

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def add_raw(self, raw: bytes, state: ChainState) -> bytes:
        """Decode (strictly) and admit raw transaction bytes; returns the tx hash."""
        if len(raw) > self.limits.max_tx_bytes:
            raise TransactionTooLargeError(f"transaction of {len(raw)} bytes exceeds the limit")
        try:
            tx = decode_transaction(raw)
        except (codec.CodecError, WireFormatError) as exc:
            raise MalformedTransactionError(f"malformed transaction: {exc}") from exc
        return self.add(tx, state)

    def add(self, tx: Transaction, state: ChainState) -> bytes:
        """Admit ``tx`` against the head ``state``; returns its hash or raises a MempoolError."""
        suite = state.suite
        raw = tx.encode()
        if len(raw) > self.limits.max_tx_bytes:
            raise TransactionTooLargeError(f"transaction of {len(raw)} bytes exceeds the limit")
        tx_hash = tx.hash(suite)
        if tx_hash in self._by_hash:
            raise DuplicateTransactionError(f"transaction {tx_hash.hex()} is already pending")
        if tx.chain_id != state.chain_id:
            raise WrongChainError(
                f"transaction is for chain {tx.chain_id!r}, not {state.chain_id!r}"
            )
        acct = self._account(state, tx.sender)
        if acct is None:
            raise UnknownSenderError(f"no account {tx.sender.hex()} on this chain")
        if tx.nonce < acct.nonce:
            raise StaleNonceError(f"nonce {tx.nonce} already used (next is {acct.nonce})")
        if tx.nonce >= acct.nonce + self.limits.max_per_sender:
            raise NonceTooFarError(
                f"nonce {tx.nonce} is more than {self.limits.max_per_sender} ahead of {acct.nonce}"
            )
        pending = self._by_sender.get(tx.sender, {})
        if tx.nonce in pending:
            raise NonceTakenError(f"another transaction with nonce {tx.nonce} is pending")
        if len(pending) >= self.limits.max_per_sender:
            raise SenderQuotaError(f"sender has {len(pending)} pending transactions")
        if (
            len(self._by_hash) >= self.limits.max_txs
            or self._bytes + len(raw) > self.limits.max_bytes
        ):
            raise MempoolFullError("the mempool is full; retry later")
        if not self.sig_cache.verify(suite, tx, tx_hash, acct.public_key):
            raise BadSignatureError("signature does not verify with the sender's registered key")
        self._seq += 1
        entry = _Entry(tx, tx_hash, len(raw), self._seq)
        self._by_hash[tx_hash] = entry
        self._by_sender.setdefault(tx.sender, {})[tx.nonce] = entry
        self._bytes += entry.size
        return tx_hash

    @staticmethod
    def _account(state: ChainState, address: bytes) -> Account | None:
        raw = state.tree.get(account_key(address))
        return None if raw is None else decode_record(Account, raw)

    def reap(self, state: ChainState, *, max_txs: int, max_bytes: int) -> list[Transaction]:
        """Transactions ready for the next block, in a deterministic order.

        Per sender only the gap-free run of nonces starting at the account's next nonce is
        ready; across senders, the earliest-arrived ready transaction goes first.
        """
        heads: list[tuple[int, bytes]] = []
        runs: dict[bytes, list[_Entry]] = {}
        for sender, pending in self._by_sender.items():
            acct = self._account(state, sender)
            if acct is None:
                continue
            run = []
            nonce = acct.nonce
            while nonce in pending:
                run.append(pending[nonce])
                nonce += 1
            if run:
                run.reverse()  # pop() from the end yields nonce order
                runs[sender] = run
                heads.append((run[-1].seq, sender))
        heapq.heapify(heads)
        out: list[Transaction] = []
        total = 0
        while heads and len(out) < max_txs:
            _, sender = heapq.heappop(heads)
            entry = runs[sender].pop()
            if total + entry.size > max_bytes:
                break
            out.append(entry.tx)
            total += entry.size
            if runs[sender]:
                heapq.heappush(heads, (runs[sender][-1].seq, sender))
        return out

    def update(self, state: ChainState, committed: Iterable[bytes] = ()) -> None:
        """After a commit: drop committed transactions and any whose nonce is now used."""
        for tx_hash in committed:
            self._remove(tx_hash)
        for sender in list(self._by_sender):
            acct = self._account(state, sender)
            pending = self._by_sender.get(sender, {})
            for nonce, entry in list(pending.items()):
                if acct is None or nonce < acct.nonce:
                    self._remove(entry.tx_hash)

    def _remove(self, tx_hash: bytes) -> None:
        entry = self._by_hash.pop(tx_hash, None)
        if entry is None:
            return
        self._bytes -= entry.size
        pending = self._by_sender[entry.tx.sender]
        del pending[entry.tx.nonce]
        if not pending:
            del self._by_sender[entry.tx.sender]
