"""A bounded memo of transaction signatures already verified, so a node checks each one once.

A transaction's hash covers every signed field and the signature itself, so "(tx hash, public
key) verified before" implies the same check would succeed again: a hit changes no outcome, a
miss simply verifies. The mempool, the proposer and block execution share one cache per node.
"""

from __future__ import annotations

from collections import OrderedDict

from consortia.crypto import Suite
from consortia.ledger.types import Transaction, verify_transaction_signature

DEFAULT_CAPACITY = 200_000  # ~2 blocks' worth at the design ceiling, a few tens of MB at most


class SignatureCache:
    __slots__ = ("_capacity", "_seen", "hits", "misses")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("signature cache capacity must be positive")
        self._capacity = capacity
        self._seen: OrderedDict[tuple[bytes, bytes], None] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._seen)

    def verify(self, suite: Suite, tx: Transaction, tx_hash: bytes, public_key: bytes) -> bool:
        """True iff ``tx`` carries ``public_key``'s valid signature (memoized when valid)."""
        key = (tx_hash, public_key)
        if key in self._seen:
            self._seen.move_to_end(key)
            self.hits += 1
            return True
        self.misses += 1
        if not verify_transaction_signature(suite, tx, public_key):
            return False  # failures are not cached: they are rare and cheap to repeat
        self._seen[key] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True
