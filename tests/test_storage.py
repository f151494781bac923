"""Unit tests for consortia.storage: round trips, ordering, indexes, meta, locking, limits."""

from __future__ import annotations

import dataclasses
import gc
import os
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

from consortia.storage import (
    FORMAT_ID,
    MAX_HASH_BYTES,
    MAX_META_NAME_CHARS,
    MAX_STATE_VALUE_BYTES,
    MAX_TX_POSITION,
    BlockCommit,
    ChainStore,
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
    UnknownHeightError,
)
from consortia.storage import store as store_module


def bhash(height: int) -> bytes:
    return height.to_bytes(4, "big") * 8


def commit(
    height: int,
    state: dict[bytes, bytes | None] | None = None,
    txs: list[bytes] | None = None,
    *,
    block: bytes | None = None,
) -> BlockCommit:
    return BlockCommit(
        height=height,
        block_hash=bhash(height),
        block=block if block is not None else b"block-%d" % height,
        certificate=b"cert-%d" % height,
        receipts=b"receipts-%d" % height,
        state_writes=state or {},
        tx_index=[(tx, i) for i, tx in enumerate(txs or [])],
    )


def tx(height: int, i: int) -> bytes:
    return b"tx-%d-%d" % (height, i)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChainStore]:
    s = ChainStore.open(tmp_path / "chain", map_size=64 << 20)
    yield s
    s.close()


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# ---- round trips -------------------------------------------------------------------------


def test_empty_store(store: ChainStore) -> None:
    assert store.head() is None
    assert store.block(1) is None
    assert store.certificate(1) is None
    assert store.receipts(1) is None
    assert store.block_hash(1) is None
    assert store.state_get(b"k") is None
    assert list(store.state_items()) == []
    assert store.find_tx(b"t") is None
    assert store.info().head_height == 0
    store.verify()


def test_commit_round_trip(store: ChainStore) -> None:
    store.commit_block(commit(1, {b"b": b"2", b"a": b"1"}, [tx(1, 0), tx(1, 1)]))
    assert store.head() == (1, bhash(1))
    assert store.block(1) == b"block-1"
    assert store.certificate(1) == b"cert-1"
    assert store.receipts(1) == b"receipts-1"
    assert store.block_hash(1) == bhash(1)
    assert store.state_get(b"a") == b"1"
    assert list(store.state_items()) == [(b"a", b"1"), (b"b", b"2")]
    assert store.find_tx(tx(1, 1)) == (1, 1)
    assert store.block(2) is None

    store.commit_block(commit(2, {b"a": b"one"}, [tx(2, 0)]))
    assert store.head() == (2, bhash(2))
    assert store.block(1) == b"block-1"  # history untouched
    assert store.state_get(b"a") == b"one"
    assert store.find_tx(tx(2, 0)) == (2, 0)
    info = store.info()
    assert (info.head_height, info.state_entries, info.tx_entries) == (2, 2, 3)
    store.verify()


def test_empty_values_and_large_block(store: ChainStore) -> None:
    big = os.urandom(3 << 20)  # overflow pages
    store.commit_block(commit(1, {b"empty": b""}, block=big))
    assert store.block(1) == big
    assert store.state_get(b"empty") == b""


def test_state_items_prefix_sorted(store: ChainStore) -> None:
    writes: dict[bytes, bytes | None] = {b"acct/%03d" % i: b"%d" % i for i in range(50, 0, -1)}
    writes.update({b"hold/x": b"x", b"acc": b"no", b"acct0": b"no"})
    store.commit_block(commit(1, writes))
    items = list(store.state_items(b"acct/"))
    assert [k for k, _ in items] == sorted(k for k in writes if k.startswith(b"acct/"))
    assert len(items) == 50
    assert list(store.state_items(b"zzz")) == []
    everything = [k for k, _ in store.state_items()]
    assert everything == sorted(everything) and len(everything) == 53


def test_deletes(store: ChainStore) -> None:
    store.commit_block(commit(1, {b"a": b"1", b"b": b"2", b"c": b"3"}))
    store.commit_block(commit(2, {b"a": None, b"c": b"33", b"never": None}))
    assert store.state_get(b"a") is None
    assert store.state_get(b"never") is None
    assert list(store.state_items()) == [(b"b", b"2"), (b"c", b"33")]
    store.commit_block(commit(3, {b"a": b"back"}))
    assert store.state_get(b"a") == b"back"


# ---- heights ------------------------------------------------------------------------------


def test_height_mismatch(store: ChainStore) -> None:
    with pytest.raises(HeightMismatchError) as e:
        store.commit_block(commit(2))
    assert (e.value.expected, e.value.got) == (1, 2)
    store.commit_block(commit(1, {b"k": b"v"}))
    for bad in (1, 3, 10):
        with pytest.raises(HeightMismatchError) as e:
            store.commit_block(commit(bad, {b"k": b"changed"}, [tx(bad, 0)]))
        assert e.value.expected == 2
    # A refused commit leaves nothing behind.
    assert store.head() == (1, bhash(1))
    assert store.state_get(b"k") == b"v"
    assert store.block(3) is None and store.find_tx(tx(3, 0)) is None
    store.verify()


@pytest.mark.parametrize("height", [0, -1, True, 1 << 63, "1"])
def test_bad_heights(store: ChainStore, height: object) -> None:
    with pytest.raises(InvalidArgumentError):
        store.block(height)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        store.commit_block(dataclasses.replace(commit(1), height=height))  # type: ignore[arg-type]


# ---- transaction index ---------------------------------------------------------------------


def test_tx_index(store: ChainStore) -> None:
    store.commit_block(commit(1, txs=[tx(1, i) for i in range(100)]))
    store.commit_block(commit(2, txs=[tx(2, i) for i in range(3)]))
    assert store.find_tx(tx(1, 99)) == (1, 99)
    assert store.find_tx(tx(2, 2)) == (2, 2)
    assert store.find_tx(b"unknown") is None


def test_duplicate_tx_in_block(store: ChainStore) -> None:
    with pytest.raises(DuplicateTxError) as e:
        store.commit_block(commit(1, txs=[b"t", b"u", b"t"]))
    assert e.value.first_height is None
    assert store.head() is None


def test_duplicate_tx_across_blocks_rolls_back(store: ChainStore) -> None:
    store.commit_block(commit(1, txs=[b"t"]))
    with pytest.raises(DuplicateTxError) as e:
        store.commit_block(commit(2, {b"k": b"v"}, txs=[b"a", b"t"]))
    assert e.value.first_height == 1
    assert store.head() == (1, bhash(1))
    assert store.state_get(b"k") is None
    assert store.find_tx(b"a") is None
    assert store.find_tx(b"t") == (1, 0)
    store.verify()


# ---- certificate replacement, meta --------------------------------------------------------


def test_replace_certificate(store: ChainStore) -> None:
    store.commit_block(commit(1))
    store.commit_block(commit(2))
    store.replace_certificate(1, b"better-cert")
    assert store.certificate(1) == b"better-cert"
    assert store.block(1) == b"block-1"
    with pytest.raises(UnknownHeightError):
        store.replace_certificate(3, b"x")
    assert store.certificate(3) is None
    store.verify()


def test_meta(store: ChainStore) -> None:
    assert store.meta_get("genesis") is None
    store.meta_put("genesis", b"doc")
    store.meta_put("chain/id", b"c1")
    assert store.meta_get("genesis") == b"doc"
    store.meta_put("genesis", b"doc2")
    assert store.meta_get("genesis") == b"doc2"
    assert store.meta_get("chain/id") == b"c1"
    store.verify()


@pytest.mark.parametrize("name", ["", "\x00head", "\x00format", "with space", "é", "/lead", "a\n"])
def test_meta_bad_names(store: ChainStore, name: str) -> None:
    with pytest.raises(InvalidArgumentError):
        store.meta_put(name, b"v")
    with pytest.raises(InvalidArgumentError):
        store.meta_get(name)


def test_meta_cannot_touch_head(store: ChainStore) -> None:
    store.commit_block(commit(1))
    with pytest.raises(InvalidArgumentError):
        store.meta_put("\x00head", b"\x00" * 8 + b"x")
    assert store.head() == (1, bhash(1))


# ---- persistence, read-only, locking --------------------------------------------------------


def test_reopen_persists(tmp_path: Path) -> None:
    path = tmp_path / "chain"
    with ChainStore.open(path) as s:
        s.meta_put("genesis", b"g")
        for h in range(1, 6):
            s.commit_block(commit(h, {b"k%d" % h: b"v", b"k%d" % (h - 1): None}, [tx(h, 0)]))
    with ChainStore.open(str(path)) as s:
        assert s.head() == (5, bhash(5))
        assert s.meta_get("genesis") == b"g"
        assert list(s.state_items()) == [(b"k5", b"v")]
        assert s.find_tx(tx(3, 0)) == (3, 0)
        s.commit_block(commit(6))
        s.verify()


def test_files_private(tmp_path: Path) -> None:
    path = tmp_path / "chain"
    ChainStore.open(path).close()
    for name in ("data.mdb", "lock.mdb", "writer.lock"):
        assert stat.S_IMODE(os.stat(path / name).st_mode) & 0o077 == 0, name


def test_readonly(tmp_path: Path) -> None:
    path = tmp_path / "chain"
    with ChainStore.open(path) as s:
        s.commit_block(commit(1, {b"k": b"v"}, [b"t"]))
        s.meta_put("genesis", b"g")
    with ChainStore.open(path, readonly=True) as r:
        assert r.readonly
        assert r.head() == (1, bhash(1))
        assert r.state_get(b"k") == b"v"
        assert r.find_tx(b"t") == (1, 0)
        assert r.meta_get("genesis") == b"g"
        with pytest.raises(StoreReadOnlyError):
            r.commit_block(commit(2))
        with pytest.raises(StoreReadOnlyError):
            r.meta_put("x", b"y")
        with pytest.raises(StoreReadOnlyError):
            r.replace_certificate(1, b"c")
        r.verify()


def test_readonly_missing(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError):
        ChainStore.open(tmp_path / "nothing", readonly=True)
    assert not (tmp_path / "nothing").exists()


def test_readonly_process_reads_while_writer_commits(tmp_path: Path) -> None:
    path = tmp_path / "chain"
    with ChainStore.open(path) as s:
        s.commit_block(commit(1, {b"k": b"1"}))
        code = f"""
            from consortia.storage import ChainStore
            with ChainStore.open({str(path)!r}, readonly=True) as r:
                print(r.head()[0], r.state_get(b"k").decode())
        """
        out = run_python(code)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["1", "1"]
        s.commit_block(commit(2, {b"k": b"2"}))
        out = run_python(code)
        assert out.stdout.split() == ["2", "2"], out.stderr


def test_second_writer_in_same_process_refused(tmp_path: Path) -> None:
    path = tmp_path / "chain"
    with ChainStore.open(path) as s:
        with pytest.raises(StoreLockedError):
            ChainStore.open(path)
        with pytest.raises(StoreLockedError):
            ChainStore.open(path, readonly=True)  # LMDB forbids two opens in one process
        s.commit_block(commit(1))  # the first store is unharmed
        assert s.head() == (1, bhash(1))
    with ChainStore.open(path) as again:
        assert again.head() == (1, bhash(1))


def test_second_writer_process_refused(tmp_path: Path) -> None:
    path = tmp_path / "chain"
    code = f"""
        from consortia.storage import ChainStore, StoreLockedError
        try:
            ChainStore.open({str(path)!r})
        except StoreLockedError as e:
            print("locked:", e)
            raise SystemExit(3)
        raise SystemExit(0)
    """
    with ChainStore.open(path) as s:
        s.commit_block(commit(1))
        out = run_python(code)
        assert out.returncode == 3, out.stderr
        assert f"pid {os.getpid()}" in out.stdout
    out = run_python(code)  # lock released on close
    assert out.returncode == 0, out.stderr


def test_unclosed_store_releases_on_gc(tmp_path: Path) -> None:
    path = tmp_path / "chain"
    s = ChainStore.open(path)
    s.commit_block(commit(1))
    del s
    gc.collect()
    with ChainStore.open(path) as again:
        assert again.head() == (1, bhash(1))


# ---- snapshots, closing ---------------------------------------------------------------------


def test_snapshot_is_consistent(store: ChainStore) -> None:
    store.commit_block(commit(1, {b"a": b"1", b"b": b"1"}))
    with store.snapshot() as snap:
        store.commit_block(commit(2, {b"a": b"2", b"b": None, b"c": b"2"}))
        assert snap.head() == (1, bhash(1))
        assert snap.block(2) is None
        assert snap.state_get(b"a") == b"1"
        assert list(snap.state_items()) == [(b"a", b"1"), (b"b", b"1")]
        assert snap.info().head_height == 1
    assert store.head() == (2, bhash(2))
    assert list(store.state_items()) == [(b"a", b"2"), (b"c", b"2")]
    with pytest.raises(StoreClosedError):
        snap.head()


def test_iterator_sees_one_snapshot(store: ChainStore) -> None:
    store.commit_block(commit(1, {b"k%03d" % i: b"old" for i in range(100)}))
    it = store.state_items()
    first = next(it)
    store.commit_block(commit(2, {b"k%03d" % i: b"new" for i in range(100)}))
    rest = list(it)
    assert first == (b"k000", b"old")
    assert all(v == b"old" for _, v in rest) and len(rest) == 99


def test_closed_store(tmp_path: Path) -> None:
    s = ChainStore.open(tmp_path / "chain")
    s.commit_block(commit(1, {b"k": b"v"}))
    snap = s.snapshot()
    it = s.state_items()
    s.close()
    s.close()  # idempotent
    assert s.closed
    for call in (
        s.head,
        lambda: s.block(1),
        lambda: s.state_get(b"k"),
        lambda: s.commit_block(commit(2)),
        lambda: s.meta_put("a", b"b"),
        s.snapshot,
        snap.head,
        lambda: next(it),
    ):
        with pytest.raises(StoreClosedError):
            call()
    snap.close()


def test_iteration_interrupted_by_close(tmp_path: Path) -> None:
    s = ChainStore.open(tmp_path / "chain")
    s.commit_block(commit(1, {b"k%d" % i: b"v" for i in range(10)}))
    with s.snapshot() as snap:
        it = snap.state_items()
        next(it)
        s.close()
        with pytest.raises(StoreClosedError):
            next(it)


def test_concurrent_readers_and_writer(store: ChainStore) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                with store.snapshot() as snap:
                    head = snap.head()
                    if head is not None:
                        # Within one snapshot, the state matches the head it reports.
                        assert snap.state_get(b"height") == b"%d" % head[0]
                        assert snap.block(head[0]) == b"block-%d" % head[0]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for h in range(1, 41):
        store.commit_block(commit(h, {b"height": b"%d" % h}))
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors


# ---- limits and bad input -----------------------------------------------------------------


def test_oversize_state_key(store: ChainStore) -> None:
    limit = store.max_key_bytes
    assert limit == 511
    store.commit_block(commit(1, {b"k" * limit: b"ok"}))
    with pytest.raises(LimitExceededError, match=r"state key is 512 bytes; the limit is 511"):
        store.commit_block(commit(2, {b"k" * (limit + 1): b"v", b"fine": b"v"}))
    assert store.head() == (1, bhash(1))
    assert store.state_get(b"fine") is None
    with pytest.raises(LimitExceededError):
        store.state_get(b"k" * (limit + 1))


def test_limits_and_types(store: ChainStore) -> None:
    bad_commits = [
        (LimitExceededError, {"state_writes": {b"k": b"v" * (MAX_STATE_VALUE_BYTES + 1)}}),
        (LimitExceededError, {"block_hash": b"h" * (MAX_HASH_BYTES + 1)}),
        (InvalidArgumentError, {"block_hash": b""}),
        (InvalidArgumentError, {"state_writes": {b"": b"v"}}),
        (InvalidArgumentError, {"state_writes": {"str": b"v"}}),
        (InvalidArgumentError, {"state_writes": {b"k": bytearray(b"v")}}),
        (InvalidArgumentError, {"block": "text"}),
        (InvalidArgumentError, {"tx_index": [(b"t", -1)]}),
        (InvalidArgumentError, {"tx_index": [(b"t", MAX_TX_POSITION + 1)]}),
        (InvalidArgumentError, {"tx_index": [(b"t",)]}),
        (InvalidArgumentError, {"tx_index": {b"t": 0}}),
        (InvalidArgumentError, {"state_writes": [(b"k", b"v")]}),
        (LimitExceededError, {"tx_index": [(b"t" * (MAX_HASH_BYTES + 1), 0)]}),
    ]
    for exc, override in bad_commits:
        with pytest.raises(exc):
            store.commit_block(dataclasses.replace(commit(1), **override))  # type: ignore[arg-type]
    with pytest.raises(LimitExceededError):
        store.meta_put("n" * (MAX_META_NAME_CHARS + 1), b"v")
    with pytest.raises(InvalidArgumentError):
        store.commit_block("not a commit")  # type: ignore[arg-type]
    assert store.head() is None
    # Every argument error is also a ValueError and a StorageError.
    assert issubclass(LimitExceededError, ValueError)
    assert issubclass(LimitExceededError, StorageError)


def test_commit_size_limit(store: ChainStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "MAX_COMMIT_BYTES", 10_000)
    with pytest.raises(LimitExceededError, match="commit is"):
        store.commit_block(commit(1, {b"k%d" % i: b"v" * 100 for i in range(200)}))
    assert store.head() is None


def test_map_full_rolls_back(tmp_path: Path) -> None:
    path = tmp_path / "chain"
    with ChainStore.open(path, map_size=1 << 20) as s:
        s.commit_block(commit(1, {b"k": b"v"}))
        with pytest.raises(StoreFullError):
            s.commit_block(commit(2, {b"k": b"w"}, block=os.urandom(2 << 20)))
        assert s.head() == (1, bhash(1))
        assert s.state_get(b"k") == b"v"
        s.commit_block(commit(2, {b"k": b"w"}))  # still usable
    with ChainStore.open(path, map_size=64 << 20) as s:  # grow and carry on
        s.commit_block(commit(3, block=os.urandom(2 << 20)))
        s.verify()


@pytest.mark.parametrize("size", [0, 1 << 10, 1 << 50, 2.5])
def test_bad_map_size(tmp_path: Path, size: object) -> None:
    with pytest.raises(InvalidArgumentError):
        ChainStore.open(tmp_path / "chain", map_size=size)  # type: ignore[arg-type]


# ---- format and corruption detection -------------------------------------------------------


def test_foreign_lmdb_refused(tmp_path: Path) -> None:
    path = tmp_path / "other"
    env = lmdb.open(str(path), max_dbs=2)
    db = env.open_db(b"something")
    with env.begin(write=True) as txn:
        txn.put(b"a", b"b", db=db)
    env.close()
    with pytest.raises(StoreFormatError):
        ChainStore.open(path)
    with pytest.raises(StoreFormatError):
        ChainStore.open(path, readonly=True)
    ChainStore.open(tmp_path / "fresh").close()  # the registry was cleaned up after failures


def test_garbage_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "chain"
    path.mkdir()
    (path / "data.mdb").write_bytes(os.urandom(64 << 10))
    with pytest.raises((StoreFormatError, StoreCorruptError)):
        ChainStore.open(path)


def _tamper(path: Path, table: bytes, key: bytes, value: bytes | None) -> None:
    env = lmdb.open(str(path), max_dbs=8)
    db = env.open_db(table, create=False)
    with env.begin(write=True) as txn:
        if value is None:
            txn.delete(key, db=db)
        else:
            txn.put(key, value, db=db)
    env.close()


def test_format_marker_checked(tmp_path: Path) -> None:
    path = tmp_path / "chain"
    ChainStore.open(path).close()
    _tamper(path, b"meta", b"\x00format", b"consortia-chainstore/999")
    with pytest.raises(StoreFormatError):
        ChainStore.open(path)
    _tamper(path, b"meta", b"\x00format", FORMAT_ID)
    ChainStore.open(path).close()


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [
        (b"blocks", (3).to_bytes(8, "big"), None),  # a hole at head
        (b"certs", (4).to_bytes(8, "big"), b"x"),  # a record above head
        (b"hashes", (3).to_bytes(8, "big"), b"wrong"),  # head hash mismatch
        (b"meta", b"\x00head", b"short"),  # damaged head record
    ],
)
def test_inconsistency_detected_on_open(
    tmp_path: Path, table: bytes, key: bytes, value: bytes | None
) -> None:
    path = tmp_path / "chain"
    with ChainStore.open(path) as s:
        for h in range(1, 4):
            s.commit_block(commit(h))
    _tamper(path, table, key, value)
    with pytest.raises(StoreCorruptError):
        ChainStore.open(path)


def test_verify_finds_deep_damage(tmp_path: Path) -> None:
    path = tmp_path / "chain"
    with ChainStore.open(path) as s:
        for h in range(1, 4):
            s.commit_block(commit(h, txs=[tx(h, 0)]))
    # Dangling index entry: points at height 9.  The O(1) open check cannot see it; verify can.
    _tamper(path, b"txindex", b"dangling", (9).to_bytes(8, "big") + bytes(4))
    with ChainStore.open(path) as s, pytest.raises(StoreCorruptError, match="uncommitted"):
        s.verify()
