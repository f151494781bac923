"""Exceptions raised by the chain store: one class per failure kind.

Everything the storage layer raises on purpose derives from :class:`StorageError`, so a caller
that only wants to know "the store failed" catches that; callers that can react to a specific
kind (a node that lost a race to its own committer, an operator tool that found another process
holding the store) catch the subclass.  Errors about the caller's arguments also derive from
:class:`ValueError`, because that is what they are.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error the chain store raises on purpose."""


class StoreCorruptError(StorageError):
    """The files on disk break an invariant the store maintains (or LMDB reports corruption).

    Never raised for anything a caller did; the store must not be written to afterwards.
    """


class StoreFormatError(StorageError):
    """The directory holds an LMDB environment that is not a chain store of this format version."""


class StoreNotFoundError(StorageError):
    """A read-only open found no store at the path (read-only opens never create one)."""


class StoreLockedError(StorageError):
    """Another writer holds the store, or this process already has it open.

    A chain store has exactly one writer at a time (one committer per node).  LMDB itself would
    let a second process write, serialised by its mutex, but two committers on one chain is a
    deployment bug we refuse loudly instead.  LMDB also forbids opening one environment twice in
    one process (its POSIX locks are per process), so that is refused with this error too.
    """


class StoreClosedError(StorageError):
    """The store, or the snapshot being used, has been closed."""


class StoreReadOnlyError(StorageError):
    """A mutation was attempted on a store opened with ``readonly=True``."""


class StoreFullError(StorageError):
    """The LMDB map is full; the write was rolled back.  Reopen with a larger ``map_size``."""


class TooManyReadersError(StorageError):
    """Every LMDB reader slot is in use; close snapshots or iterators that are no longer needed."""


class HeightMismatchError(StorageError):
    """A block commit was not at height ``head + 1`` (or 1 for an empty store)."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"block commit at height {got}, but the next height is {expected}")
        self.expected = expected
        self.got = got


class UnknownHeightError(StorageError):
    """An operation on committed history named a height that has not been committed."""

    def __init__(self, height: int, head: int) -> None:
        super().__init__(f"height {height} is not committed (head is {head})")
        self.height = height
        self.head = head


class DuplicateTxError(StorageError):
    """A transaction hash in a commit is already indexed (earlier block or same block).

    The execution layer rejects replays, so this means an invariant above storage broke; the
    whole commit is rolled back rather than silently re-pointing the index.
    """

    def __init__(self, tx_hash: bytes, first_height: int | None) -> None:
        where = (
            "earlier in the same commit" if first_height is None else f"at height {first_height}"
        )
        super().__init__(f"transaction {tx_hash.hex()} is already indexed {where}")
        self.tx_hash = tx_hash
        self.first_height = first_height


class InvalidArgumentError(StorageError, ValueError):
    """An argument has the wrong type or shape (non-bytes key, height below 1, bad meta name)."""


class LimitExceededError(InvalidArgumentError):
    """An argument is larger than a documented limit of the store (see ``consortia.storage``)."""
