"""Storage engine choice: LMDB vs RocksDB for consortia's per-block atomic commit.

Each engine commits the same pre-generated blocks, one durable (fsync-ed) atomic batch per block:
the block record, its certificate, its receipts, its hash, the block's state writes, its
transaction index entries and the head pointer.  Then, on the same data:

* random point reads of state keys, transaction index lookups and whole-block reads
  (warm page cache: this measures the engine and binding, not the disk);
* the time to reopen after a clean close, and after ``kill -9`` of a writer mid-run
  (RocksDB replays its write-ahead log; LMDB has nothing to replay);
* the space used on disk.

Engines: ``lmdb`` (py-lmdb, raw, same settings as ChainStore), ``lmdb_chainstore`` (our
ChainStore API, i.e. with its validation and one read transaction per read), and ``rocksdb``
(rocksdict, column families, WriteBatch with ``WriteOptions.sync = True``).

Usage:  .venv/bin/python bench/storage_choice.py [--blocks 200] [--dir /path/on/the/real/disk]
Progress goes to stdout; the last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import lmdb
import rocksdict

from consortia.storage import BlockCommit, ChainStore

_TABLES = ("blocks", "certs", "receipts", "hashes", "state", "txindex", "meta")
_MAX_BLOCKS = 100_000  # keep a typo from filling the disk


@dataclass(frozen=True)
class Block:
    """One pre-generated block commit (all byte strings, ready to write)."""

    height: int
    block_hash: bytes
    block: bytes
    certificate: bytes
    receipts: bytes
    state_writes: list[tuple[bytes, bytes]]
    tx_index: list[tuple[bytes, bytes]]  # (tx hash, 12-byte height+position entry)


@dataclass(frozen=True)
class Params:
    """The workload shape, identical for every engine."""

    blocks: int
    block_bytes: int
    cert_bytes: int
    receipt_bytes: int
    state_writes: int
    value_bytes: int
    update_fraction: float
    txs: int
    reads: int
    block_reads: int
    kill_blocks: int
    seed: int


def generate(p: Params, count: int) -> list[Block]:
    """Deterministic (by seed) workload: random, incompressible payloads; 32-byte hash keys.

    A fraction ``update_fraction`` of each block's state writes overwrite keys written earlier
    (balances change); the rest insert new keys (new accounts, holdings), so the state grows.
    """
    rng = random.Random(p.seed)
    written: list[bytes] = []
    out: list[Block] = []
    for h in range(1, count + 1):
        hb = h.to_bytes(8, "big")
        writes: dict[bytes, bytes] = {}
        for _ in range(p.state_writes):
            if written and rng.random() < p.update_fraction:
                key = written[rng.randrange(len(written))]
            else:
                key = rng.randbytes(32)
                written.append(key)
            writes[key] = rng.randbytes(p.value_bytes)
        out.append(
            Block(
                height=h,
                block_hash=hashlib.sha256(hb).digest(),
                block=rng.randbytes(p.block_bytes),
                certificate=rng.randbytes(p.cert_bytes),
                receipts=rng.randbytes(p.receipt_bytes),
                state_writes=list(writes.items()),
                tx_index=[(rng.randbytes(32), hb + i.to_bytes(4, "big")) for i in range(p.txs)],
            )
        )
    return out


class Backend(Protocol):
    """What the benchmark needs from an engine."""

    def prepare(self, b: Block) -> object: ...
    def commit(self, prepared: object) -> None: ...
    def get_state(self, key: bytes) -> bytes | None: ...
    def get_states_one_view(self, keys: list[bytes]) -> int: ...
    def find_tx(self, tx_hash: bytes) -> bytes | None: ...
    def get_block(self, height: int) -> bytes | None: ...
    def close(self) -> None: ...


class LmdbBackend:
    """Raw py-lmdb with ChainStore's settings: one write transaction per block, sync on."""

    def __init__(self, path: str) -> None:
        self.env = lmdb.open(
            path,
            map_size=16 << 30,
            max_dbs=len(_TABLES),
            sync=True,
            metasync=True,
            writemap=False,
            map_async=False,
            lock=True,
            max_spare_txns=1,
            lib_version=0,
        )
        self.db = {name: self.env.open_db(name.encode()) for name in _TABLES}

    def prepare(self, b: Block) -> object:
        return b

    def commit(self, prepared: object) -> None:
        b = prepared
        assert isinstance(b, Block)
        db = self.db
        hk = b.height.to_bytes(8, "big")
        with self.env.begin(write=True) as txn:
            txn.put(hk, b.block, append=True, db=db["blocks"])
            txn.put(hk, b.certificate, append=True, db=db["certs"])
            txn.put(hk, b.receipts, append=True, db=db["receipts"])
            txn.put(hk, b.block_hash, append=True, db=db["hashes"])
            state = db["state"]
            for k, v in sorted(b.state_writes):
                txn.put(k, v, db=state)
            txindex = db["txindex"]
            for k, v in sorted(b.tx_index):
                txn.put(k, v, overwrite=False, db=txindex)
            txn.put(b"\x00head", hk + b.block_hash, db=db["meta"])

    def get_state(self, key: bytes) -> bytes | None:
        with self.env.begin() as txn:
            return txn.get(key, db=self.db["state"])

    def get_states_one_view(self, keys: list[bytes]) -> int:
        found = 0
        with self.env.begin() as txn:
            state = self.db["state"]
            for k in keys:
                found += txn.get(k, db=state) is not None
        return found

    def find_tx(self, tx_hash: bytes) -> bytes | None:
        with self.env.begin() as txn:
            return txn.get(tx_hash, db=self.db["txindex"])

    def get_block(self, height: int) -> bytes | None:
        with self.env.begin() as txn:
            return txn.get(height.to_bytes(8, "big"), db=self.db["blocks"])

    def close(self) -> None:
        self.env.close()


class ChainStoreBackend:
    """consortia.storage.ChainStore itself: validation, sorting and one snapshot per read."""

    def __init__(self, path: str) -> None:
        self.store = ChainStore.open(path, map_size=16 << 30)

    def prepare(self, b: Block) -> object:
        # Built outside the timed region: the node hands ChainStore a ready BlockCommit.
        return BlockCommit(
            height=b.height,
            block_hash=b.block_hash,
            block=b.block,
            certificate=b.certificate,
            receipts=b.receipts,
            state_writes=dict(b.state_writes),
            tx_index=[(h, int.from_bytes(e[8:], "big")) for h, e in b.tx_index],
        )

    def commit(self, prepared: object) -> None:
        assert isinstance(prepared, BlockCommit)
        self.store.commit_block(prepared)

    def get_state(self, key: bytes) -> bytes | None:
        return self.store.state_get(key)

    def get_states_one_view(self, keys: list[bytes]) -> int:
        found = 0
        with self.store.snapshot() as snap:
            for k in keys:
                found += snap.state_get(k) is not None
        return found

    def find_tx(self, tx_hash: bytes) -> bytes | None:
        r = self.store.find_tx(tx_hash)
        return None if r is None else r[0].to_bytes(8, "big") + r[1].to_bytes(4, "big")

    def get_block(self, height: int) -> bytes | None:
        return self.store.block(height)

    def close(self) -> None:
        self.store.close()


class RocksBackend:
    """rocksdict in raw mode: a column family per table, one synced WriteBatch per block."""

    def __init__(self, path: str) -> None:
        opts = rocksdict.Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.create_missing_column_families(True)
        cfs = {name: rocksdict.Options(raw_mode=True) for name in _TABLES}
        self.db = rocksdict.Rdict(path, opts, column_families=cfs)
        self.handle = {name: self.db.get_column_family_handle(name) for name in _TABLES}
        self.cf = {name: self.db.get_column_family(name) for name in _TABLES}
        self.sync = rocksdict.WriteOptions()
        self.sync.sync = True  # fsync the WAL before write() returns

    def prepare(self, b: Block) -> object:
        return b

    def commit(self, prepared: object) -> None:
        b = prepared
        assert isinstance(b, Block)
        h = self.handle
        hk = b.height.to_bytes(8, "big")
        wb = rocksdict.WriteBatch(raw_mode=True)
        wb.put(hk, b.block, h["blocks"])
        wb.put(hk, b.certificate, h["certs"])
        wb.put(hk, b.receipts, h["receipts"])
        wb.put(hk, b.block_hash, h["hashes"])
        state = h["state"]
        for k, v in b.state_writes:
            wb.put(k, v, state)
        txindex = h["txindex"]
        for k, v in b.tx_index:
            wb.put(k, v, txindex)
        wb.put(b"\x00head", hk + b.block_hash, h["meta"])
        self.db.write(wb, self.sync)

    def get_state(self, key: bytes) -> bytes | None:
        v = self.cf["state"].get(key)
        return None if v is None else bytes(v)

    def get_states_one_view(self, keys: list[bytes]) -> int:
        # RocksDB point reads need no transaction; a consistent multi-key view would use a
        # snapshot, which costs about the same per read.
        state = self.cf["state"]
        return sum(state.get(k) is not None for k in keys)

    def find_tx(self, tx_hash: bytes) -> bytes | None:
        v = self.cf["txindex"].get(tx_hash)
        return None if v is None else bytes(v)

    def get_block(self, height: int) -> bytes | None:
        v = self.cf["blocks"].get(height.to_bytes(8, "big"))
        return None if v is None else bytes(v)

    def close(self) -> None:
        for cf in self.cf.values():
            cf.close()
        self.cf.clear()
        self.handle.clear()
        self.db.close()
        del self.db


BACKENDS: dict[str, Callable[[str], Backend]] = {
    "lmdb": LmdbBackend,
    "lmdb_chainstore": ChainStoreBackend,
    "rocksdb": RocksBackend,
}


def du(path: str) -> int:
    """Bytes allocated on disk under ``path`` (sparse files count only what is allocated)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.stat(os.path.join(root, f)).st_blocks * 512
    return total


def pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def fsync_baseline(dirpath: str, n: int = 100) -> float:
    """Median milliseconds for a 4 KiB write + fdatasync on this disk (what any commit pays)."""
    path = os.path.join(dirpath, "fsync.probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    times = []
    try:
        for i in range(n):
            t = time.perf_counter()
            os.pwrite(fd, os.urandom(4096), i * 4096)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    return statistics.median(times) * 1000


def run_engine(name: str, p: Params, blocks: list[Block], base: str) -> dict[str, object]:
    """Commit every block, reopen, read; return the figures for one engine."""
    path = os.path.join(base, name)
    os.makedirs(path)
    make = BACKENDS[name]
    be = make(path)
    prepared = [be.prepare(b) for b in blocks]
    lat: list[float] = []
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for b in prepared:
        t = time.perf_counter()
        be.commit(b)
        lat.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    be.close()

    t = time.perf_counter()
    be = make(path)
    reopen_ms = (time.perf_counter() - t) * 1000

    rng = random.Random(p.seed + 1)
    keys = [k for b in blocks for k, _ in b.state_writes]
    sample = [keys[rng.randrange(len(keys))] for _ in range(p.reads)]
    t = time.perf_counter()
    found = sum(be.get_state(k) is not None for k in sample)
    read_s = time.perf_counter() - t
    assert found == len(sample), f"{name}: {len(sample) - found} state keys missing"
    t = time.perf_counter()
    found = be.get_states_one_view(sample)
    read_view_s = time.perf_counter() - t
    assert found == len(sample)

    txs = [
        blocks[rng.randrange(len(blocks))].tx_index[rng.randrange(p.txs)][0] for _ in range(p.reads)
    ]
    t = time.perf_counter()
    found = sum(be.find_tx(h) is not None for h in txs)
    tx_s = time.perf_counter() - t
    assert found == len(txs)

    heights = [rng.randrange(1, len(blocks) + 1) for _ in range(p.block_reads)]
    t = time.perf_counter()
    for h in heights:
        v = be.get_block(h)
        assert v is not None and len(v) == p.block_bytes
    block_s = time.perf_counter() - t
    be.close()

    lat.sort()
    n = len(blocks)
    return {
        "blocks_per_s": round(n / wall, 1),
        "state_writes_per_s": round(n * p.state_writes / wall),
        "commit_ms_p50": round(pct(lat, 0.50) * 1000, 2),
        "commit_ms_p99": round(pct(lat, 0.99) * 1000, 2),
        "commit_ms_max": round(lat[-1] * 1000, 2),
        "commit_cpu_ms_per_block": round(cpu / n * 1000, 2),
        "write_mb_per_s": round(n * (p.block_bytes + p.receipt_bytes) / wall / 1e6, 1),
        "state_reads_per_s": round(p.reads / read_s),
        "state_reads_per_s_one_view": round(p.reads / read_view_s),
        "tx_lookups_per_s": round(p.reads / tx_s),
        "block_reads_per_s": round(p.block_reads / block_s),
        "reopen_clean_ms": round(reopen_ms, 2),
        "disk_mb": round(du(path) / 1e6, 1),
    }


def kill_child(name: str, path: str, p: Params) -> None:
    """Child mode: commit ``kill_blocks`` blocks, then SIGKILL ourselves (no close, no flush)."""
    blocks = generate(p, p.kill_blocks)
    be = BACKENDS[name](path)
    for b in blocks:
        be.commit(be.prepare(b))
    os.kill(os.getpid(), signal.SIGKILL)


def reopen_after_kill(name: str, p: Params, base: str) -> dict[str, object]:
    """Time the first open after a writer was killed with SIGKILL, and check nothing was lost."""
    path = os.path.join(base, name + "-killed")
    os.makedirs(path)
    argv = [sys.executable, __file__, "--kill-child", name, path, *param_argv(p)]
    proc = subprocess.run(argv, check=False, capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    t = time.perf_counter()
    be = BACKENDS[name](path)
    ms = (time.perf_counter() - t) * 1000
    last = be.get_block(p.kill_blocks)
    be.close()
    assert last is not None, f"{name}: block {p.kill_blocks} lost after kill -9"
    return {"reopen_after_kill_ms": round(ms, 2), "blocks_before_kill": p.kill_blocks}


def param_argv(p: Params) -> list[str]:
    return [
        f"--blocks={p.blocks}",
        f"--block-bytes={p.block_bytes}",
        f"--cert-bytes={p.cert_bytes}",
        f"--receipt-bytes={p.receipt_bytes}",
        f"--state-writes={p.state_writes}",
        f"--value-bytes={p.value_bytes}",
        f"--update-fraction={p.update_fraction}",
        f"--txs={p.txs}",
        f"--reads={p.reads}",
        f"--block-reads={p.block_reads}",
        f"--kill-blocks={p.kill_blocks}",
        f"--seed={p.seed}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blocks", type=int, default=200)
    ap.add_argument("--block-bytes", type=int, default=300_000)
    ap.add_argument("--cert-bytes", type=int, default=2_000)
    ap.add_argument("--receipt-bytes", type=int, default=50_000)
    ap.add_argument("--state-writes", type=int, default=1_000)
    ap.add_argument("--value-bytes", type=int, default=100)
    ap.add_argument("--update-fraction", type=float, default=0.5)
    ap.add_argument("--txs", type=int, default=1_000)
    ap.add_argument("--reads", type=int, default=100_000)
    ap.add_argument("--block-reads", type=int, default=1_000)
    ap.add_argument("--kill-blocks", type=int, default=100)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--engines", default=",".join(BACKENDS))
    ap.add_argument("--dir", default=None, help="parent directory for the stores (a real disk)")
    ap.add_argument("--kill-child", nargs=2, metavar=("ENGINE", "PATH"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if not 1 <= a.blocks <= _MAX_BLOCKS or not 1 <= a.kill_blocks <= _MAX_BLOCKS:
        ap.error(f"--blocks and --kill-blocks must be in 1..{_MAX_BLOCKS}")
    p = Params(
        blocks=a.blocks,
        block_bytes=a.block_bytes,
        cert_bytes=a.cert_bytes,
        receipt_bytes=a.receipt_bytes,
        state_writes=a.state_writes,
        value_bytes=a.value_bytes,
        update_fraction=a.update_fraction,
        txs=a.txs,
        reads=a.reads,
        block_reads=a.block_reads,
        kill_blocks=a.kill_blocks,
        seed=a.seed,
    )
    if a.kill_child:
        kill_child(a.kill_child[0], a.kill_child[1], p)
        return

    engines = [e for e in a.engines.split(",") if e]
    for e in engines:
        if e not in BACKENDS:
            ap.error(f"unknown engine {e!r}; choose from {', '.join(BACKENDS)}")
    base = tempfile.mkdtemp(prefix="consortia-storage-bench-", dir=a.dir)
    try:
        print(f"generating {p.blocks} blocks in {base} ...", flush=True)
        blocks = generate(p, p.blocks)
        fsync_ms = fsync_baseline(base)
        print(f"fsync baseline (4 KiB write + fdatasync): {fsync_ms:.2f} ms", flush=True)
        results: dict[str, dict[str, object]] = {}
        for e in engines:
            r = run_engine(e, p, blocks, base)
            r.update(reopen_after_kill(e, p, base))
            results[e] = r
            print(f"{e:16s} " + "  ".join(f"{k}={v}" for k, v in r.items()), flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report = {
        "bench": "storage_choice",
        "workload": {
            "blocks": p.blocks,
            "per_block": {
                "block_bytes": p.block_bytes,
                "certificate_bytes": p.cert_bytes,
                "receipts_bytes": p.receipt_bytes,
                "state_writes": p.state_writes,
                "state_value_bytes": p.value_bytes,
                "state_key_bytes": 32,
                "update_fraction": p.update_fraction,
                "tx_index_entries": p.txs,
            },
            "durability": "fsync per block (LMDB sync+metasync; RocksDB WriteOptions.sync)",
            "reads": p.reads,
            "block_reads": p.block_reads,
            "seed": p.seed,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "lmdb": ".".join(map(str, lmdb.version())),
            "py_lmdb": lmdb.__version__,
            "rocksdict": importlib.metadata.version("rocksdict"),
            "fsync_4k_ms": round(fsync_ms, 3),
        },
        "results": results,
    }
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    main()
