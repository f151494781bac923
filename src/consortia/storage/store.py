"""The chain store: committed blocks, certificates, receipts, state and indexes in one LMDB file.

Guarantees (the reasons are in docs/storage.md):

* **Atomic blocks.** :meth:`ChainStore.commit_block` writes a block, its certificate, receipts
  and hash, every state write of the block, its transaction index entries and the new head in a
  single LMDB write transaction.  After a crash (``kill -9``, power loss on a disk that honours
  ``fsync``) the store holds either all of a block or none of it, and needs no recovery step:
  LMDB's copy-on-write B+tree only ever switches between two complete meta pages.
* **Durable on return.** The environment is opened with ``sync=True, metasync=True`` and without
  ``writemap``/``map_async``, so a mutation has been ``fdatasync``-ed before the call returns.
* **Gap-free history.** Heights are committed in order starting at 1 (:class:`HeightMismatchError`
  otherwise); every height ``1..head`` has all four records and nothing above head exists.  This is
  checked cheaply on every open and thoroughly by :meth:`ChainStore.verify`.
* **One writer.** A writer holds an exclusive ``flock`` on ``writer.lock`` in the store directory;
  a second writer (another process, or the same process) gets :class:`StoreLockedError`.  Read-only
  opens from other processes take no lock and never block or are blocked by the writer.
* **Consistent reads.** A :class:`Snapshot` is one LMDB read transaction: every read through it
  sees the same committed state, whatever commits meanwhile.

The store deals in bytes only; encoding belongs to the layers above (it imports nothing from them).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final

import lmdb

from consortia.storage.errors import (
    DuplicateTxError,
    HeightMismatchError,
    InvalidArgumentError,
    LimitExceededError,
    StorageError,
    StoreClosedError,
    StoreCorruptError,
    StoreFormatError,
    StoreFullError,
    StoreLockedError,
    StoreNotFoundError,
    StoreReadOnlyError,
    TooManyReadersError,
    UnknownHeightError,
)

# --------------------------------------------------------------------------------------------
# Limits.  Every input is bounded; a value over a limit is refused with LimitExceededError before
# the write transaction starts, so an oversized commit never holds the writer lock.

MAX_HEIGHT: Final = (1 << 63) - 1
"""Largest height; heights are stored as 8-byte big-endian keys."""
MAX_HASH_BYTES: Final = 64
"""Longest block or transaction hash (SHA-256 and SM3 give 32; 64 leaves room for SHA-512)."""
MAX_BLOCK_BYTES: Final = 64 << 20
"""Largest encoded block."""
MAX_CERTIFICATE_BYTES: Final = 4 << 20
"""Largest commit certificate (2f+1 signatures; 4 MiB is thousands of validators)."""
MAX_RECEIPTS_BYTES: Final = 64 << 20
"""Largest encoded receipt list of one block."""
MAX_STATE_KEY_BYTES: Final = 511
"""Longest state key: LMDB's compiled-in key limit (checked against the library at open)."""
MAX_STATE_VALUE_BYTES: Final = 16 << 20
"""Largest state value."""
MAX_STATE_WRITES: Final = 1_000_000
"""Most state writes (puts plus deletes) in one block."""
MAX_TXS_PER_BLOCK: Final = 1_000_000
"""Most transaction index entries in one block."""
MAX_TX_POSITION: Final = (1 << 32) - 1
"""Largest position of a transaction in its block (stored as 4 bytes)."""
MAX_COMMIT_BYTES: Final = 256 << 20
"""Largest total payload of one commit; keeps one LMDB write transaction well inside memory."""
MAX_META_NAME_CHARS: Final = 64
"""Longest meta record name."""
MAX_META_VALUE_BYTES: Final = 64 << 20
"""Largest meta record value (e.g. a genesis document)."""
MIN_MAP_SIZE: Final = 1 << 20
"""Smallest accepted LMDB map size."""
MAX_MAP_SIZE: Final = 1 << 44
"""Largest accepted LMDB map size (16 TiB of address space; the file grows only as used)."""
MAX_READERS: Final = 126
"""Concurrent read transactions (snapshots, open iterators) across all processes of one store."""

FORMAT_ID: Final = b"consortia-chainstore/1"
"""Format marker written into every store; a store with another marker is refused."""

LOCK_FILE_NAME: Final = "writer.lock"
"""File in the store directory that the writer holds an exclusive flock on."""

_DB_BLOCKS: Final = b"blocks"
_DB_CERTS: Final = b"certs"
_DB_RECEIPTS: Final = b"receipts"
_DB_HASHES: Final = b"hashes"
_DB_STATE: Final = b"state"
_DB_TXINDEX: Final = b"txindex"
_DB_META: Final = b"meta"
_DB_NAMES: Final = (
    _DB_BLOCKS,
    _DB_CERTS,
    _DB_RECEIPTS,
    _DB_HASHES,
    _DB_STATE,
    _DB_TXINDEX,
    _DB_META,
)

# Internal meta keys start with NUL, which no public meta name may contain, so the two can never
# collide.
_META_HEAD: Final = b"\x00head"
_META_FORMAT: Final = b"\x00format"

_HEIGHT_BYTES: Final = 8
_POSITION_BYTES: Final = 4
_TX_ENTRY_BYTES: Final = _HEIGHT_BYTES + _POSITION_BYTES
_META_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")

# LMDB forbids opening one environment twice in one process (its fcntl locks belong to the
# process, so closing either copy silently drops the other's locks).  Stores open in this
# process, by (st_dev, st_ino) of the directory, so a second open is refused with our error.
_open_stores: set[tuple[int, int]] = set()
_open_stores_lock = threading.Lock()


# --------------------------------------------------------------------------------------------
# Data types


@dataclass(frozen=True, slots=True)
class BlockCommit:
    """Everything written for one committed block, as bytes.

    ``state_writes`` maps a state key to its new value, or to ``None`` to delete it (deleting an
    absent key is not an error).  ``tx_index`` lists ``(tx hash, position in block)`` pairs.
    """

    height: int
    block_hash: bytes
    block: bytes
    certificate: bytes
    receipts: bytes
    state_writes: Mapping[bytes, bytes | None]
    tx_index: Sequence[tuple[bytes, int]]


@dataclass(frozen=True, slots=True)
class StoreInfo:
    """Sizes of a store at one snapshot, for operators and benchmarks."""

    path: str
    readonly: bool
    head_height: int
    state_entries: int
    tx_entries: int
    map_size: int
    used_bytes: int


@dataclass(frozen=True, slots=True)
class _Dbs:
    blocks: lmdb._Database
    certs: lmdb._Database
    receipts: lmdb._Database
    hashes: lmdb._Database
    state: lmdb._Database
    txindex: lmdb._Database
    meta: lmdb._Database


# --------------------------------------------------------------------------------------------
# Validation and encoding helpers


def _height_key(height: int) -> bytes:
    return height.to_bytes(_HEIGHT_BYTES, "big")


def _check_height(height: int) -> None:
    # bool is an int subclass; a True height is always a bug.
    if type(height) is not int:
        raise InvalidArgumentError(f"height must be an int, not {type(height).__name__}")
    if not 1 <= height <= MAX_HEIGHT:
        raise InvalidArgumentError(f"height {height} is outside 1..{MAX_HEIGHT}")


def _check_bytes(what: str, value: object, max_len: int, *, min_len: int = 0) -> int:
    """Raise unless ``value`` is ``bytes`` with ``min_len <= len <= max_len``; return its length."""
    if not isinstance(value, bytes):
        raise InvalidArgumentError(f"{what} must be bytes, not {type(value).__name__}")
    n = len(value)
    if n > max_len:
        raise LimitExceededError(f"{what} is {n} bytes; the limit is {max_len}")
    if n < min_len:
        raise InvalidArgumentError(f"{what} is {n} bytes; at least {min_len} required")
    return n


def _meta_key(name: str) -> bytes:
    if not isinstance(name, str):
        raise InvalidArgumentError(f"meta name must be a str, not {type(name).__name__}")
    if len(name) > MAX_META_NAME_CHARS:
        raise LimitExceededError(
            f"meta name is {len(name)} characters; the limit is {MAX_META_NAME_CHARS}"
        )
    if not _META_NAME_RE.fullmatch(name):
        raise InvalidArgumentError(
            f"meta name {name!r} must be ASCII letters, digits and ._/- (not starting with ._/-)"
        )
    return name.encode("ascii")


def _decode_head(raw: bytes | None) -> tuple[int, bytes] | None:
    if raw is None:
        return None
    if not _HEIGHT_BYTES < len(raw) <= _HEIGHT_BYTES + MAX_HASH_BYTES:
        raise StoreCorruptError(f"head record has impossible length {len(raw)}")
    height = int.from_bytes(raw[:_HEIGHT_BYTES], "big")
    if not 1 <= height <= MAX_HEIGHT:
        raise StoreCorruptError(f"head record names impossible height {height}")
    return height, raw[_HEIGHT_BYTES:]


def _decode_tx_entry(raw: bytes) -> tuple[int, int]:
    if len(raw) != _TX_ENTRY_BYTES:
        raise StoreCorruptError(f"transaction index entry has impossible length {len(raw)}")
    return int.from_bytes(raw[:_HEIGHT_BYTES], "big"), int.from_bytes(raw[_HEIGHT_BYTES:], "big")


def _prepare_commit(
    c: BlockCommit, max_key_bytes: int
) -> tuple[list[tuple[bytes, bytes | None]], list[tuple[bytes, bytes]]]:
    """Validate a commit against every limit; return its state writes and tx entries, sorted.

    Sorting by key makes LMDB touch each B+tree page once per run of neighbouring keys rather
    than bouncing between pages, which shortens the write and the set of dirty pages.
    """
    if not isinstance(c, BlockCommit):
        raise InvalidArgumentError(f"expected a BlockCommit, not {type(c).__name__}")
    _check_height(c.height)
    total = _check_bytes("block_hash", c.block_hash, MAX_HASH_BYTES, min_len=1)
    total += _check_bytes("block", c.block, MAX_BLOCK_BYTES)
    total += _check_bytes("certificate", c.certificate, MAX_CERTIFICATE_BYTES)
    total += _check_bytes("receipts", c.receipts, MAX_RECEIPTS_BYTES)

    if not isinstance(c.state_writes, Mapping):
        raise InvalidArgumentError("state_writes must be a mapping of key -> value or None")
    if not isinstance(c.tx_index, Sequence):
        raise InvalidArgumentError("tx_index must be a sequence of (tx hash, position) pairs")
    if len(c.state_writes) > MAX_STATE_WRITES:
        raise LimitExceededError(
            f"{len(c.state_writes)} state writes in one block; the limit is {MAX_STATE_WRITES}"
        )
    writes: list[tuple[bytes, bytes | None]] = []
    for key, value in c.state_writes.items():
        total += _check_bytes("state key", key, max_key_bytes, min_len=1)
        if value is not None:
            total += _check_bytes("state value", value, MAX_STATE_VALUE_BYTES)
        writes.append((key, value))
    writes.sort(key=lambda kv: kv[0])

    if len(c.tx_index) > MAX_TXS_PER_BLOCK:
        raise LimitExceededError(
            f"{len(c.tx_index)} transaction index entries in one block; "
            f"the limit is {MAX_TXS_PER_BLOCK}"
        )
    entries: list[tuple[bytes, bytes]] = []
    seen: set[bytes] = set()
    height_bytes = _height_key(c.height)
    for item in c.tx_index:
        if not isinstance(item, tuple) or len(item) != 2:
            raise InvalidArgumentError("tx_index entries must be (tx hash, position) pairs")
        tx_hash, position = item
        total += _check_bytes("transaction hash", tx_hash, MAX_HASH_BYTES, min_len=1)
        if type(position) is not int or not 0 <= position <= MAX_TX_POSITION:
            raise InvalidArgumentError(
                f"transaction position {position!r} is not an int in 0..{MAX_TX_POSITION}"
            )
        if tx_hash in seen:
            raise DuplicateTxError(tx_hash, None)
        seen.add(tx_hash)
        entries.append((tx_hash, height_bytes + position.to_bytes(_POSITION_BYTES, "big")))
        total += _TX_ENTRY_BYTES
    entries.sort(key=lambda kv: kv[0])

    if total > MAX_COMMIT_BYTES:
        raise LimitExceededError(f"commit is {total} bytes; the limit is {MAX_COMMIT_BYTES}")
    return writes, entries


def _translate(exc: lmdb.Error, closed: bool) -> StorageError:
    """Map an LMDB exception to the store's own error kinds."""
    if closed:
        return StoreClosedError("the store is closed")
    if isinstance(exc, lmdb.MapFullError):
        return StoreFullError(
            "the LMDB map is full; the write was rolled back. Reopen with a larger map_size"
        )
    if isinstance(exc, lmdb.ReadersFullError):
        return TooManyReadersError(
            f"all {MAX_READERS} LMDB reader slots are in use; close unused snapshots/iterators"
        )
    if isinstance(exc, lmdb.TxnFullError | lmdb.BadValsizeError):
        return LimitExceededError(f"the write exceeds an LMDB transaction limit: {exc}")
    if isinstance(
        exc,
        lmdb.CorruptedError
        | lmdb.PageNotFoundError
        | lmdb.PanicError
        | lmdb.InvalidError
        | lmdb.VersionMismatchError
        | lmdb.IncompatibleError,
    ):
        return StoreCorruptError(f"LMDB reports a damaged store: {exc}")
    return StorageError(f"LMDB error: {exc}")


# --------------------------------------------------------------------------------------------
# Point reads, shared by the store (one short read transaction each) and snapshots (one view)


class _PointReads(ABC):
    """The single-key reads; subclasses say how one key is read and how long a key may be."""

    __slots__ = ()
    _dbs: _Dbs

    @abstractmethod
    def _get(self, key: bytes, db: lmdb._Database) -> bytes | None:
        """The value of ``key`` in ``db``, or None."""

    @abstractmethod
    def _key_limit(self) -> int:
        """Longest state key accepted."""

    def _at_height(self, height: int, db: lmdb._Database) -> bytes | None:
        _check_height(height)
        return self._get(_height_key(height), db)

    def head(self) -> tuple[int, bytes] | None:
        """``(height, block hash)`` of the last committed block, or None for an empty store."""
        return _decode_head(self._get(_META_HEAD, self._dbs.meta))

    def block(self, height: int) -> bytes | None:
        """The block committed at ``height`` (>= 1), or None if above head."""
        return self._at_height(height, self._dbs.blocks)

    def certificate(self, height: int) -> bytes | None:
        """The (latest) commit certificate stored for ``height`` (>= 1), or None above head."""
        return self._at_height(height, self._dbs.certs)

    def receipts(self, height: int) -> bytes | None:
        """The receipts of the block at ``height`` (>= 1), or None above head."""
        return self._at_height(height, self._dbs.receipts)

    def block_hash(self, height: int) -> bytes | None:
        """The hash of the block at ``height`` (>= 1), or None above head."""
        return self._at_height(height, self._dbs.hashes)

    def state_get(self, key: bytes) -> bytes | None:
        """The current value of state ``key``, or None if absent."""
        _check_bytes("state key", key, self._key_limit(), min_len=1)
        return self._get(key, self._dbs.state)


# --------------------------------------------------------------------------------------------
# Snapshot: a consistent read view


class Snapshot(_PointReads):
    """A consistent read-only view of the store: one LMDB read transaction.

    Every read sees the store as of the moment the snapshot began.  Readers never block the
    writer, but a long-lived snapshot pins the pages it sees, so the file cannot reuse them:
    close snapshots promptly (use ``with``).  At most :data:`MAX_READERS` may be open at once
    across all processes.  A snapshot may be used from any thread, but by one thread at a time.
    """

    __slots__ = ("_dbs", "_live", "_store", "_txn")

    def __init__(self, store: ChainStore, txn: lmdb.Transaction[bytes], dbs: _Dbs) -> None:
        """Internal: use :meth:`ChainStore.snapshot`."""
        self._store = store
        self._txn = txn
        self._dbs = dbs
        self._live = True

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the read transaction.  Idempotent; later reads raise StoreClosedError."""
        if not self._live:
            return
        self._live = False
        if not self._store.closed:
            # If the environment was closed concurrently it has already released the slot.
            with contextlib.suppress(lmdb.Error):
                self._txn.abort()

    def _check(self) -> None:
        if not self._live or self._store.closed:
            raise StoreClosedError("the snapshot or its store is closed")

    def _get(self, key: bytes, db: lmdb._Database) -> bytes | None:
        self._check()
        try:
            return self._txn.get(key, db=db)
        except lmdb.Error as exc:
            raise _translate(exc, self._store.closed) from exc

    def _key_limit(self) -> int:
        return self._store.max_key_bytes

    def state_items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Every ``(key, value)`` of the state whose key starts with ``prefix``, sorted by key.

        The iterator reads from this snapshot and is valid only while it is open.
        """
        _check_bytes("state prefix", prefix, self._store.max_key_bytes)
        self._check()
        return self._iter_state(prefix)

    def _iter_state(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        try:
            cursor = self._txn.cursor(db=self._dbs.state)
            positioned = cursor.set_range(prefix) if prefix else cursor.first()
            while positioned:
                key, value = cursor.item()
                if not key.startswith(prefix):
                    return
                yield key, value
                # The consumer ran between items: it may have closed us.
                self._check()
                positioned = cursor.next()
        except lmdb.Error as exc:
            raise _translate(exc, self._store.closed) from exc

    def find_tx(self, tx_hash: bytes) -> tuple[int, int] | None:
        """``(height, position)`` of the committed transaction ``tx_hash``, or None."""
        _check_bytes("transaction hash", tx_hash, MAX_HASH_BYTES, min_len=1)
        raw = self._get(tx_hash, self._dbs.txindex)
        return None if raw is None else _decode_tx_entry(raw)

    def meta_get(self, name: str) -> bytes | None:
        """The meta record ``name`` (e.g. the genesis document), or None if never written."""
        return self._get(_meta_key(name), self._dbs.meta)

    def info(self) -> StoreInfo:
        """Entry counts and sizes as of this snapshot."""
        self._check()
        head = self.head()
        try:
            env_info = self._store._env.info()
            psize = self._store._env.stat()["psize"]
            state_entries = self._txn.stat(self._dbs.state)["entries"]
            tx_entries = self._txn.stat(self._dbs.txindex)["entries"]
        except lmdb.Error as exc:
            raise _translate(exc, self._store.closed) from exc
        return StoreInfo(
            path=self._store.path,
            readonly=self._store.readonly,
            head_height=0 if head is None else head[0],
            state_entries=state_entries,
            tx_entries=tx_entries,
            map_size=env_info["map_size"],
            used_bytes=(env_info["last_pgno"] + 1) * psize,
        )

    def check_consistency(self) -> None:
        """Cheap O(1) invariant check, run on every open; raises StoreCorruptError.

        Verifies that the head record agrees with the four history tables: each holds exactly
        the heights 1..head (by count, first key and last key), the stored hash at head equals
        the head hash, and an empty store has no state or index entries.
        """
        self._check()
        head = self.head()
        head_height = 0 if head is None else head[0]
        try:
            for name, db in (
                ("blocks", self._dbs.blocks),
                ("certs", self._dbs.certs),
                ("receipts", self._dbs.receipts),
                ("hashes", self._dbs.hashes),
            ):
                entries = self._txn.stat(db)["entries"]
                if entries != head_height:
                    raise StoreCorruptError(
                        f"table {name} holds {entries} heights but head is {head_height}"
                    )
                if entries:
                    cursor = self._txn.cursor(db=db)
                    cursor.first()
                    first = cursor.key()
                    cursor.last()
                    last = cursor.key()
                    if first != _height_key(1) or last != _height_key(head_height):
                        raise StoreCorruptError(
                            f"table {name} spans heights {first.hex()}..{last.hex()}, "
                            f"not 1..{head_height}"
                        )
            if head is None:
                for name, db in (("state", self._dbs.state), ("txindex", self._dbs.txindex)):
                    if self._txn.stat(db)["entries"]:
                        raise StoreCorruptError(
                            f"table {name} has entries but no block is committed"
                        )
            elif self._txn.get(_height_key(head[0]), db=self._dbs.hashes) != head[1]:
                raise StoreCorruptError(
                    f"stored hash at head {head[0]} differs from the head record"
                )
        except lmdb.Error as exc:
            raise _translate(exc, self._store.closed) from exc

    def verify(self) -> None:
        """Thorough O(size) invariant check; raises StoreCorruptError on the first violation.

        On top of :meth:`check_consistency`: every history table holds exactly the keys 1..head
        in order, every transaction index entry points at a committed height, and every meta
        key is an internal key or a valid public name.
        """
        self.check_consistency()
        head = self.head()
        head_height = 0 if head is None else head[0]
        try:
            for name, db in (
                ("blocks", self._dbs.blocks),
                ("certs", self._dbs.certs),
                ("receipts", self._dbs.receipts),
                ("hashes", self._dbs.hashes),
            ):
                expected = 1
                for key in self._txn.cursor(db=db).iternext(keys=True, values=False):
                    if key != _height_key(expected):
                        raise StoreCorruptError(f"table {name}: key {key.hex()} at slot {expected}")
                    expected += 1
            for tx_hash, raw in self._txn.cursor(db=self._dbs.txindex):
                height, _ = _decode_tx_entry(raw)
                if not 1 <= height <= head_height or len(tx_hash) > MAX_HASH_BYTES:
                    raise StoreCorruptError(
                        f"transaction {tx_hash.hex()} indexed at uncommitted height {height}"
                    )
            for key in self._txn.cursor(db=self._dbs.meta).iternext(keys=True, values=False):
                if key in (_META_HEAD, _META_FORMAT):
                    continue
                try:
                    _meta_key(key.decode("ascii"))
                except (UnicodeDecodeError, InvalidArgumentError) as exc:
                    raise StoreCorruptError(f"unexpected meta key {key!r}") from exc
        except lmdb.Error as exc:
            raise _translate(exc, self._store.closed) from exc


# --------------------------------------------------------------------------------------------
# The store


def _acquire_writer_lock(root: str) -> int:
    """Take the exclusive writer flock; return its fd.  Raises StoreLockedError if held.

    flock (not fcntl/POSIX locks) because flock conflicts between two opens in the same process
    too, and is not dropped when an unrelated descriptor of the file is closed.  The kernel
    releases it when the holder dies, so a kill -9 never leaves a stale lock.
    """
    lock_path = os.path.join(root, LOCK_FILE_NAME)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StorageError(f"cannot open lock file {lock_path}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = b""
        with contextlib.suppress(OSError):
            holder = os.pread(fd, 32, 0).strip()
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            who = f" (pid {holder.decode('ascii', 'replace')})" if holder else ""
            raise StoreLockedError(f"store {root} is already open for writing{who}") from exc
        raise StorageError(f"cannot lock {lock_path}: {exc}") from exc
    try:
        # The pid is only a hint for the error message above; the flock is the lock.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    except OSError:
        pass
    return fd


def _fsync_dir(root: str) -> None:
    """Make the directory entries of newly created files durable (they survive power loss)."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StorageError(f"cannot fsync store directory {root}: {exc}") from exc


def _open_env(root: str, map_size: int, readonly: bool) -> lmdb.Environment:
    """Open the LMDB environment with the durability settings the store's guarantees rest on."""
    return lmdb.open(
        root,
        map_size=map_size,
        subdir=True,
        readonly=readonly,
        # Both syncs on: a commit returns only after the data pages and then the meta page have
        # reached the disk.  No writemap (a stray write through the map could damage the file,
        # and its flush ordering is weaker) and no map_async.
        metasync=True,
        sync=True,
        map_async=False,
        writemap=False,
        # Chain data is private to the node's user: LMDB creates its files 0600 from this.
        mode=0o700,
        create=not readonly,
        meminit=True,
        max_readers=MAX_READERS,
        max_dbs=len(_DB_NAMES),
        max_spare_txns=1,
        lock=True,
        # The LMDB 0.9 on-disk format: the mature one, readable by the mdb_* tools and other
        # bindings.  py-lmdb also bundles 1.0; pinning keeps every store in one format.
        lib_version=0,
    )


def _release(
    env: lmdb.Environment | None, ident: tuple[int, int] | None, lock_fd: int | None
) -> None:
    """Close the environment, forget it in the process registry, drop the writer lock."""
    try:
        if env is not None:
            env.close()
    finally:
        if ident is not None:
            with _open_stores_lock:
                _open_stores.discard(ident)
        if lock_fd is not None:
            os.close(lock_fd)  # closing the only descriptor releases the flock


class ChainStore(_PointReads):
    """The node's embedded, transactional chain store (see the module docstring for guarantees).

    Reads may be made from any thread; mutations are serialised by an internal lock.  Use
    :meth:`open` to construct one, and close it (or use ``with``) when done.
    """

    def __init__(
        self,
        *,
        env: lmdb.Environment,
        dbs: _Dbs,
        path: str,
        readonly: bool,
        ident: tuple[int, int],
        lock_fd: int | None,
    ) -> None:
        """Internal: use :meth:`ChainStore.open`."""
        self._env = env
        self._dbs = dbs
        self._path = path
        self._readonly = readonly
        self._closed = False
        self._write_lock = threading.Lock()
        self._max_key_bytes = min(MAX_STATE_KEY_BYTES, env.max_key_size())
        # Runs once: from close(), or when the store is garbage-collected unclosed, so a dropped
        # store never leaves the writer lock or the process registry entry behind.
        self._finalizer = weakref.finalize(self, _release, env, ident, lock_fd)

    # ---- lifecycle -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        map_size: int = 8 << 30,
        readonly: bool = False,
    ) -> ChainStore:
        """Open (creating if needed, unless ``readonly``) the store in directory ``path``.

        ``map_size`` bounds the database size (address space only; the file grows as used).
        On return the store's format is checked and its head agrees with its history tables.

        Raises StoreLockedError if another writer holds the store or this process already has it
        open; StoreNotFoundError for a read-only open of a missing store; StoreFormatError for an
        LMDB directory that is not a chain store of this version; StoreCorruptError if the
        invariants fail.
        """
        if type(map_size) is not int or not MIN_MAP_SIZE <= map_size <= MAX_MAP_SIZE:
            raise InvalidArgumentError(f"map_size must be an int in {MIN_MAP_SIZE}..{MAX_MAP_SIZE}")
        root = os.path.abspath(os.fspath(path))
        data_path = os.path.join(root, "data.mdb")
        lock_fd: int | None = None
        ident: tuple[int, int] | None = None
        env: lmdb.Environment | None = None
        try:
            if readonly:
                if not os.path.isfile(data_path):
                    raise StoreNotFoundError(f"no chain store at {root}")
            else:
                try:
                    os.makedirs(root, mode=0o700, exist_ok=True)
                except OSError as exc:
                    raise StorageError(f"cannot create store directory {root}: {exc}") from exc
                lock_fd = _acquire_writer_lock(root)
            st = os.stat(root)
            key = (st.st_dev, st.st_ino)
            with _open_stores_lock:
                if key in _open_stores:
                    raise StoreLockedError(
                        f"store {root} is already open in this process; share that ChainStore"
                    )
                _open_stores.add(key)
            ident = key
            new = not os.path.exists(data_path)
            try:
                env = _open_env(root, map_size, readonly)
            except (lmdb.InvalidError, lmdb.VersionMismatchError) as exc:
                raise StoreFormatError(
                    f"{root} is not an LMDB store this build reads: {exc}"
                ) from exc
            except lmdb.Error as exc:
                raise _translate(exc, closed=False) from exc
            if new:
                _fsync_dir(root)
            dbs = _init_readonly(env, root) if readonly else _init_writable(env, root)
            store = cls(
                env=env, dbs=dbs, path=root, readonly=readonly, ident=ident, lock_fd=lock_fd
            )
        except BaseException:
            _release(env, ident, lock_fd)
            raise
        try:
            # Reader slots of processes that died (kill -9) would otherwise pin old pages and
            # use up the MAX_READERS slots.
            try:
                env.reader_check()
            except lmdb.Error as exc:
                raise _translate(exc, closed=False) from exc
            with store.snapshot() as snap:
                snap.check_consistency()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Close the store and release the writer lock.  Idempotent.

        Waits for a mutation running in another thread to finish.  Snapshots and iterators
        still open become unusable (StoreClosedError).
        """
        with self._write_lock:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> ChainStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closed

    @property
    def readonly(self) -> bool:
        """True if opened with ``readonly=True``: every mutation raises StoreReadOnlyError."""
        return self._readonly

    @property
    def path(self) -> str:
        """Absolute path of the store directory."""
        return self._path

    @property
    def max_key_bytes(self) -> int:
        """Longest state key this store accepts."""
        return self._max_key_bytes

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"store {self._path} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self._readonly:
            raise StoreReadOnlyError(f"store {self._path} was opened read-only")

    # ---- reads -----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Begin a consistent read view; use as ``with store.snapshot() as snap: ...``."""
        self._check_open()
        try:
            txn = self._env.begin(write=False)
        except lmdb.Error as exc:
            raise _translate(exc, self._closed) from exc
        return Snapshot(self, txn, self._dbs)

    def _get(self, key: bytes, db: lmdb._Database) -> bytes | None:
        # Single-key reads skip the Snapshot object: one short read transaction is all they need,
        # and this path is hot (state lookups during admission, API queries).
        self._check_open()
        try:
            with self._env.begin(write=False) as txn:
                return txn.get(key, db=db)
        except lmdb.Error as exc:
            raise _translate(exc, self._closed) from exc

    def _key_limit(self) -> int:
        return self._max_key_bytes

    def state_items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Every state ``(key, value)`` with the given key prefix, sorted by key.

        The items come from one snapshot taken at the first ``next()``; it is released when the
        iterator is exhausted or closed, so drain or ``close()`` it promptly.
        """
        with self.snapshot() as snap:
            yield from snap.state_items(prefix)

    def find_tx(self, tx_hash: bytes) -> tuple[int, int] | None:
        """``(height, position)`` of the committed transaction ``tx_hash``, or None."""
        _check_bytes("transaction hash", tx_hash, MAX_HASH_BYTES, min_len=1)
        raw = self._get(tx_hash, self._dbs.txindex)
        return None if raw is None else _decode_tx_entry(raw)

    def meta_get(self, name: str) -> bytes | None:
        """The meta record ``name``, or None if never written."""
        return self._get(_meta_key(name), self._dbs.meta)

    def info(self) -> StoreInfo:
        """Entry counts and sizes."""
        with self.snapshot() as snap:
            return snap.info()

    def verify(self) -> None:
        """Thorough invariant check of the whole store; raises StoreCorruptError.  O(size)."""
        with self.snapshot() as snap:
            snap.verify()

    # ---- mutations -------------------------------------------------------------------------

    def commit_block(self, c: BlockCommit) -> None:
        """Commit one block atomically and durably.

        One LMDB write transaction stores the block, certificate, receipts and hash under
        ``c.height``, applies every state write (``None`` deletes), indexes every transaction,
        and moves the head to ``(c.height, c.block_hash)``.  On return it is on disk; on any
        exception nothing of it is.

        Raises HeightMismatchError unless ``c.height`` is head + 1 (1 for an empty store),
        DuplicateTxError if a transaction hash is already indexed, LimitExceededError /
        InvalidArgumentError for bad input (checked before the write begins), StoreFullError if
        the map is full, StoreReadOnlyError / StoreClosedError as named.
        """
        self._check_writable()
        writes, tx_entries = _prepare_commit(c, self._max_key_bytes)
        hkey = _height_key(c.height)
        dbs = self._dbs
        with self._write_lock:
            self._check_open()
            try:
                with self._env.begin(write=True) as txn:
                    head = _decode_head(txn.get(_META_HEAD, db=dbs.meta))
                    expected = 1 if head is None else head[0] + 1
                    if c.height != expected:
                        raise HeightMismatchError(expected, c.height)
                    # append=True: heights only grow, so LMDB can skip the search; it also
                    # refuses (returns False) if a key at or above this height already exists.
                    for name, db, value in (
                        ("blocks", dbs.blocks, c.block),
                        ("certs", dbs.certs, c.certificate),
                        ("receipts", dbs.receipts, c.receipts),
                        ("hashes", dbs.hashes, c.block_hash),
                    ):
                        if not txn.put(hkey, value, append=True, db=db):
                            raise StoreCorruptError(
                                f"table {name} already holds a record at or above height "
                                f"{c.height} while head is {expected - 1}"
                            )
                    for key, new_value in writes:
                        if new_value is None:
                            txn.delete(key, db=dbs.state)
                        else:
                            txn.put(key, new_value, db=dbs.state)
                    for tx_hash, entry in tx_entries:
                        if not txn.put(tx_hash, entry, overwrite=False, db=dbs.txindex):
                            old = txn.get(tx_hash, db=dbs.txindex)
                            raise DuplicateTxError(
                                tx_hash, None if old is None else _decode_tx_entry(old)[0]
                            )
                    txn.put(_META_HEAD, hkey + c.block_hash, db=dbs.meta)
            except lmdb.Error as exc:
                raise _translate(exc, self._closed) from exc

    def replace_certificate(self, height: int, certificate: bytes) -> None:
        """Replace the stored commit certificate of committed ``height``; durable on return.

        The only mutation of history: a later, equally valid certificate (e.g. the one the next
        block carries, with more signatures) may supersede the local one.  The block and
        everything else at that height are untouched.  Raises UnknownHeightError above head.
        """
        self._check_writable()
        _check_height(height)
        _check_bytes("certificate", certificate, MAX_CERTIFICATE_BYTES)
        with self._write_lock:
            self._check_open()
            try:
                with self._env.begin(write=True) as txn:
                    head = _decode_head(txn.get(_META_HEAD, db=self._dbs.meta))
                    head_height = 0 if head is None else head[0]
                    if height > head_height:
                        raise UnknownHeightError(height, head_height)
                    txn.put(_height_key(height), certificate, db=self._dbs.certs)
            except lmdb.Error as exc:
                raise _translate(exc, self._closed) from exc

    def meta_put(self, name: str, value: bytes) -> None:
        """Write meta record ``name`` (replacing any previous value) atomically and durably."""
        self._check_writable()
        key = _meta_key(name)
        _check_bytes(f"meta value {name!r}", value, MAX_META_VALUE_BYTES)
        with self._write_lock:
            self._check_open()
            try:
                with self._env.begin(write=True) as txn:
                    txn.put(key, value, db=self._dbs.meta)
            except lmdb.Error as exc:
                raise _translate(exc, self._closed) from exc


# --------------------------------------------------------------------------------------------
# Opening helpers


def _init_writable(env: lmdb.Environment, root: str) -> _Dbs:
    """Create or check the sub-databases and format marker in one write transaction."""
    try:
        with env.begin(write=True) as txn:
            names = set(txn.cursor().iternext(keys=True, values=False))
            unknown = names - set(_DB_NAMES)
            if unknown:
                raise StoreFormatError(
                    f"{root} holds LMDB databases that are not a chain store's: {sorted(unknown)!r}"
                )
            handles = [env.open_db(name, txn=txn, create=True) for name in _DB_NAMES]
            dbs = _Dbs(*handles)
            marker = txn.get(_META_FORMAT, db=dbs.meta)
            if marker is None:
                # A new store (or one whose first open was killed before committing this
                # transaction): every table must be empty before we stamp it.
                for name, db in zip(_DB_NAMES, handles, strict=True):
                    if txn.stat(db)["entries"]:
                        raise StoreFormatError(
                            f"{root}: table {name.decode()} has data but the store has no "
                            "format marker"
                        )
                txn.put(_META_FORMAT, FORMAT_ID, db=dbs.meta)
            elif marker != FORMAT_ID:
                raise StoreFormatError(
                    f"{root} has format {marker!r}; this build reads {FORMAT_ID!r}"
                )
    except lmdb.Error as exc:
        raise _translate(exc, closed=False) from exc
    return dbs


def _init_readonly(env: lmdb.Environment, root: str) -> _Dbs:
    """Open the sub-databases of an existing store without writing anything."""
    try:
        handles = [env.open_db(name, create=False) for name in _DB_NAMES]
    except lmdb.NotFoundError as exc:
        raise StoreFormatError(f"{root} is not an initialised chain store") from exc
    except lmdb.Error as exc:
        raise _translate(exc, closed=False) from exc
    dbs = _Dbs(*handles)
    try:
        with env.begin() as txn:
            marker = txn.get(_META_FORMAT, db=dbs.meta)
    except lmdb.Error as exc:
        raise _translate(exc, closed=False) from exc
    if marker != FORMAT_ID:
        raise StoreFormatError(f"{root} has format {marker!r}; this build reads {FORMAT_ID!r}")
    return dbs
