"""Deterministic block workload for the storage kill -9 test, and the child process that writes it.

Every byte of block ``h`` is a pure function of ``h`` (and, for the hash chain, of the hashes
before it), so the parent test can compute exactly what the store must hold after any prefix of
blocks without talking to the child.

Run as a script, it is the child: it opens the store, continues from head + 1, and commits blocks
until it is killed (or a safety limit is reached), logging ``begin h`` just before each commit and
``done h`` just after it returns, so the parent can tell whether a kill landed mid-commit.
"""

from __future__ import annotations

import hashlib
import sys
import time

from consortia.storage import BlockCommit, ChainStore

KEYSPACE = 3_000  # distinct state keys, so later blocks overwrite and delete earlier writes
WRITES_PER_BLOCK = 1_500
TXS_PER_BLOCK = 300
DELETE_PER_256 = 51  # about 20 % of the state writes are deletes
MIN_BLOCK_BYTES = 48 << 10
BLOCK_BYTES_SPREAD = 160 << 10
MAX_VALUE_BYTES = 128
MAP_SIZE = 4 << 30
CHILD_MAX_SECONDS = 60.0  # the parent kills far sooner; this only stops an orphan
CHILD_MAX_HEIGHT = 1_000_000

GENESIS_HASH = bytes(32)


def _h8(height: int) -> bytes:
    return height.to_bytes(8, "big")


def block_hash(prev_hash: bytes, height: int) -> bytes:
    """The hash chain: hash(h) = SHA-256(hash(h-1) || h), hash(0) = 32 zero bytes."""
    return hashlib.sha256(prev_hash + _h8(height)).digest()


def block_bytes(prev_hash: bytes, height: int) -> bytes:
    """The block record: the previous hash, then a pseudo-random body of height-dependent size."""
    size = MIN_BLOCK_BYTES + (height * 7919) % BLOCK_BYTES_SPREAD
    return prev_hash + hashlib.shake_256(b"block" + _h8(height)).digest(size)


def certificate_bytes(height: int) -> bytes:
    return hashlib.shake_256(b"cert" + _h8(height)).digest(96 + height % 64)


def receipts_bytes(height: int) -> bytes:
    return hashlib.shake_256(b"receipts" + _h8(height)).digest(2_000 + (height * 31) % 3_000)


def state_writes(height: int) -> dict[bytes, bytes | None]:
    """About 1,500 writes over a 3,000-key space, ~20 % deletes; later duplicates win."""
    ctl = hashlib.shake_256(b"state-ctl" + _h8(height)).digest(WRITES_PER_BLOCK * 6)
    vals = hashlib.shake_256(b"state-val" + _h8(height)).digest(WRITES_PER_BLOCK * MAX_VALUE_BYTES)
    out: dict[bytes, bytes | None] = {}
    for i in range(WRITES_PER_BLOCK):
        c = ctl[6 * i : 6 * i + 6]
        key = b"acct/%05d" % (int.from_bytes(c[:4], "big") % KEYSPACE)
        if c[4] < DELETE_PER_256:
            out[key] = None
        else:
            start = i * MAX_VALUE_BYTES
            out[key] = vals[start : start + 8 + c[5] % (MAX_VALUE_BYTES - 8)]
    return out


def tx_hashes(height: int) -> list[bytes]:
    return [
        hashlib.sha256(b"tx" + _h8(height) + i.to_bytes(4, "big")).digest()
        for i in range(TXS_PER_BLOCK)
    ]


def make_commit(prev_hash: bytes, height: int) -> BlockCommit:
    """The complete, deterministic commit for ``height`` on top of ``prev_hash``."""
    return BlockCommit(
        height=height,
        block_hash=block_hash(prev_hash, height),
        block=block_bytes(prev_hash, height),
        certificate=certificate_bytes(height),
        receipts=receipts_bytes(height),
        state_writes=state_writes(height),
        tx_index=[(h, i) for i, h in enumerate(tx_hashes(height))],
    )


def child_main(path: str) -> int:
    """Commit blocks from head + 1 until killed; log progress lines to stdout (unbuffered)."""
    deadline = time.monotonic() + CHILD_MAX_SECONDS
    out = sys.stdout
    with ChainStore.open(path, map_size=MAP_SIZE) as store:
        head = store.head()
        height, prev = (0, GENESIS_HASH) if head is None else head
        out.write(f"ready {height}\n")
        out.flush()
        while height < CHILD_MAX_HEIGHT and time.monotonic() < deadline:
            height += 1
            commit = make_commit(prev, height)
            out.write(f"begin {height}\n")
            out.flush()
            store.commit_block(commit)
            out.write(f"done {height}\n")
            out.flush()
            prev = commit.block_hash
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
