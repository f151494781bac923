"""`consortia ledger verify`: re-check a whole stored chain from its genesis.

For every height, in order: the block decodes canonically, its stored hash is its header's hash,
its certificate is a valid quorum of precommits by that height's validators, and replaying it with
``apply_block`` from the previous state succeeds (hash link, transactions root, time, last commit,
receipts root, state root); the stored receipts equal the replayed ones and the transaction index
points at it. Finally the stored state must equal the replayed state. The first failure is reported
with its height.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from consortia import codec
from consortia.execution.apply import apply_block_detailed
from consortia.execution.errors import InvalidBlock
from consortia.execution.genesis import genesis_state
from consortia.ledger.state_tree import StateTree
from consortia.ledger.types import (
    CertificateError,
    ReceiptList,
    WireFormatError,
    decode_block,
    decode_certificate,
    verify_commit,
)
from consortia.node.local import DATA_DIR, load_genesis
from consortia.storage import ChainStore

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ChainVerdict:
    """``first_bad_height`` is None when the whole chain checked out."""

    head_height: int
    checked_heights: int
    first_bad_height: int | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.first_bad_height is None


def verify_chain(home: Path, progress: Progress | None = None) -> ChainVerdict:
    """Replay and check every stored block; never raises for bad data, reports it instead."""
    genesis = load_genesis(home)
    state = genesis_state(genesis)
    suite = state.suite
    # One read snapshot: a consistent view even if a writer commits meanwhile.
    with ChainStore.open(home / DATA_DIR, readonly=True) as db, db.snapshot() as store:
        head = store.head()
        head_height = 0 if head is None else head[0]

        def bad(height: int, reason: str) -> ChainVerdict:
            return ChainVerdict(head_height, height - 1, height, reason)

        for height in range(1, head_height + 1):
            raw = store.block(height)
            raw_cert = store.certificate(height)
            raw_receipts = store.receipts(height)
            if raw is None or raw_cert is None or raw_receipts is None:
                return bad(height, "block, certificate or receipts missing")
            try:
                block = decode_block(raw)
                cert = decode_certificate(raw_cert)
            except (codec.CodecError, WireFormatError) as exc:
                return bad(height, f"stored data does not decode: {exc}")
            block_hash = block.hash(suite)
            if store.block_hash(height) != block_hash:
                return bad(height, "stored block hash differs from the header's hash")
            try:
                verify_commit(
                    suite,
                    state.validators,
                    cert,
                    chain_id=state.chain_id,
                    height=height,
                    block_hash=block_hash,
                )
            except CertificateError as exc:
                return bad(height, f"commit certificate: {exc}")
            try:
                applied = apply_block_detailed(state, block)
            except InvalidBlock as exc:
                return bad(height, f"{type(exc).__name__}: {exc}")
            if raw_receipts != codec.encode_struct(ReceiptList(applied.receipts)):
                return bad(height, "stored receipts differ from the replayed receipts")
            for i, tx in enumerate(block.transactions):
                if store.find_tx(tx.hash(suite)) != (height, i):
                    return bad(height, f"transaction index entry {i} is wrong or missing")
            state = applied.state
            if progress is not None:
                progress(height, head_height)
        stored = StateTree.from_items(suite.hash, store.state_items())
        if stored.root != state.state_root:
            return ChainVerdict(
                head_height,
                head_height,
                head_height,
                "stored state differs from the state replayed from the blocks",
            )
    return ChainVerdict(
        head_height, head_height, None, "all blocks, certificates and state check out"
    )
