"""Build evidence bundles from node homes' stores (a business chain's and the supervision chain's).

Both stores are opened read-only, each through one snapshot, so a running node may keep writing.
The store keeps only the latest state, so what needs older state is replayed from genesis with
``apply_block`` (as ``ledger verify`` does): the validator set a header announced (the state's next
set before that block) and a holding or wallet at an older height. Anchor records are never
removed from the supervision state, so the anchor is proven against the supervision head.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from consortia import codec
from consortia.crypto import Suite, get_suite
from consortia.evidence.bundle import (
    ECNY_ASSET,
    KIND_STATE,
    KIND_TRANSACTION,
    RECORD_HOLDING,
    RECORD_WALLET,
    AnchorEvidence,
    ChainProof,
    EvidenceBundle,
    InclusionProof,
    StateSubject,
    TxSubject,
    state_key_of,
)
from consortia.execution.apply import apply_block
from consortia.execution.errors import InvalidBlock
from consortia.execution.genesis import Genesis, genesis_state
from consortia.execution.state import ChainState
from consortia.ledger import light
from consortia.ledger.merkle import MerkleLog
from consortia.ledger.state_tree import StateTree
from consortia.ledger.types import (
    Block,
    CommitCertificate,
    Header,
    ValidatorSet,
    decode_block,
    decode_certificate,
    decode_receipts,
)
from consortia.modules import anchoring
from consortia.node.local import DATA_DIR, load_genesis
from consortia.storage import ChainStore
from consortia.storage.store import Snapshot


class ExportError(Exception):
    """A bundle cannot be built (message says why, for the operator)."""


@dataclass
class _Chain:
    home: Path
    genesis: Genesis
    suite: Suite
    snap: Snapshot
    head: int

    def block(self, height: int) -> Block:
        raw = self.snap.block(height)
        if raw is None:
            raise ExportError(f"{self.home}: block {height} is missing from the store")
        return decode_block(raw)

    def certificate(self, height: int) -> CommitCertificate:
        raw = self.snap.certificate(height)
        if raw is None:
            raise ExportError(f"{self.home}: certificate {height} is missing from the store")
        return decode_certificate(raw)

    def replay(self, upto: int, announcing: set[int]) -> tuple[ChainState, dict[int, ValidatorSet]]:
        """The state after block ``upto``, and for each height in ``announcing`` (<= upto + 1)
        the next validator set of the state before it (the set its header announced)."""
        state = genesis_state(self.genesis)
        sets: dict[int, ValidatorSet] = {}
        for height in range(1, upto + 1):
            if height in announcing:
                sets[height] = state.next_validators
            try:
                state, _ = apply_block(state, self.block(height))
            except InvalidBlock as exc:
                raise ExportError(f"{self.home}: block {height} does not replay: {exc}") from exc
        if upto + 1 in announcing:
            sets[upto + 1] = state.next_validators
        return state, sets

    def announcing(self, below: int) -> list[int]:
        """Heights under ``below`` whose header announces a new validator set."""
        out = []
        for height in range(1, below):
            h = self.block(height).header
            if h.next_validator_set_hash != h.validator_set_hash:
                out.append(height)
        return out

    def proof(
        self, header: Header, history_sets: dict[int, ValidatorSet], announcing: list[int]
    ) -> ChainProof:
        history = tuple(
            light.CertifiedHeader(
                self.block(height).header, self.certificate(height), history_sets[height]
            )
            for height in announcing
        )
        return ChainProof(
            chain_id=self.genesis.chain_id,
            suite=self.genesis.suite,
            genesis_hash=self.genesis.hash(),
            history=history,
            header=header,
            certificate=self.certificate(header.height),
        )

    def chain_proof(self, height: int) -> ChainProof:
        """Header ``height`` with its certificate and validator history (replaying only as far
        as the last set change needs)."""
        announcing = self.announcing(height)
        sets: dict[int, ValidatorSet] = {}
        if announcing:
            _, sets = self.replay(max(announcing) - 1, set(announcing))
        return self.proof(self.block(height).header, sets, announcing)

    def head_tree(self) -> StateTree:
        tree = StateTree.from_items(self.suite.hash, self.snap.state_items())
        if self.head and tree.root != self.block(self.head).header.state_root:
            raise ExportError(f"{self.home}: the stored state does not match the head block")
        return tree


@contextmanager
def _open(home: Path) -> Iterator[_Chain]:
    genesis = load_genesis(home)
    if not (home / DATA_DIR).is_dir():
        raise ExportError(f"{home}: no chain store in {home / DATA_DIR}")
    with ChainStore.open(home / DATA_DIR, readonly=True) as db, db.snapshot() as snap:
        head = snap.head()
        yield _Chain(home, genesis, get_suite(genesis.suite), snap, 0 if head is None else head[0])


def _anchor(business: _Chain, height: int, sup: _Chain) -> AnchorEvidence:
    """State proofs of the anchor of ``business``@``height`` and the chain's registration,
    against the supervision head."""
    if sup.head == 0:
        raise ExportError(f"{sup.home}: the supervision chain has no blocks yet")
    tree = sup.head_tree()
    chain_id = business.genesis.chain_id
    akey = anchoring.anchor_key(chain_id, height)
    if tree.get(akey) is None:
        raw_reg = tree.get(anchoring.chain_key(chain_id))
        upto = (
            "it is not registered there"
            if raw_reg is None
            else f"anchored up to height "
            f"{codec.decode_struct(anchoring.AnchoredChain, raw_reg).height}"
        )
        raise ExportError(
            f"{chain_id}@{height} is not anchored on supervision chain "
            f"{sup.genesis.chain_id} yet ({upto}); wait for the relayer and retry"
        )
    return AnchorEvidence(
        anchor_proof=tree.prove(akey),
        registration_proof=tree.prove(anchoring.chain_key(chain_id)),
        supervision=sup.chain_proof(sup.head),
    )


def _check_tiers(home: Path, supervision_home: Path) -> None:
    """Refuse swapped or wrong homes before opening any store."""
    for where, tier in ((home, "business"), (supervision_home, "supervision")):
        actual = load_genesis(where).tier
        if actual != tier:
            raise ExportError(f"{where} is not a {tier} chain (tier {actual!r})")


def export_transaction(home: Path, supervision_home: Path, tx_hash: bytes) -> EvidenceBundle:
    """The bundle proving transaction ``tx_hash`` of the business chain in ``home`` and its
    receipt, anchored on the supervision chain in ``supervision_home``."""
    _check_tiers(home, supervision_home)
    with _open(home) as chain, _open(supervision_home) as sup:
        where = chain.snap.find_tx(tx_hash)
        if where is None:
            raise ExportError(f"transaction {tx_hash.hex()} is not in {home}")
        height, index = where
        block = chain.block(height)
        raw_receipts = chain.snap.receipts(height)
        if raw_receipts is None:
            raise ExportError(f"{home}: receipts of block {height} are missing")
        receipts = decode_receipts(raw_receipts).receipts
        size = len(block.transactions)
        tx_log = MerkleLog(chain.suite.hash, (tx.encode() for tx in block.transactions))
        receipt_log = MerkleLog(chain.suite.hash, (r.encode() for r in receipts))
        subject = TxSubject(
            transaction=block.transactions[index],
            receipt=receipts[index],
            tx_proof=InclusionProof(index, size, tuple(tx_log.inclusion_proof(index, size))),
            receipt_proof=InclusionProof(
                index, size, tuple(receipt_log.inclusion_proof(index, size))
            ),
        )
        return EvidenceBundle(
            kind=KIND_TRANSACTION,
            business=chain.chain_proof(height),
            transaction=subject,
            state=None,
            anchor=_anchor(chain, height, sup),
        )


def export_state(
    home: Path, supervision_home: Path, *, account: str, asset: str, height: int
) -> EvidenceBundle:
    """The bundle proving ``account``'s holding of security ``asset`` (or, with asset
    ``"ecny"``, e-CNY wallet ``account``) at ``height``, anchored like a transaction bundle."""
    record = RECORD_WALLET if asset.lower() in (ECNY_ASSET, "e-cny") else RECORD_HOLDING
    if record == RECORD_WALLET:
        asset = ECNY_ASSET
    key = state_key_of(record, asset, account)
    _check_tiers(home, supervision_home)
    with _open(home) as chain, _open(supervision_home) as sup:
        if not 1 <= height <= chain.head:
            raise ExportError(f"height {height} is outside 1..{chain.head} of {home}")
        announcing = chain.announcing(height)
        state, sets = chain.replay(height, set(announcing))
        header = chain.block(height).header
        if state.state_root != header.state_root:
            raise ExportError(f"{home}: replayed state root differs from header {height}")
        proof = state.tree.prove(key)
        if proof.value is None:
            what = "wallet" if record == RECORD_WALLET else f"holding of {asset}"
            raise ExportError(f"no {what} for {account!r} at height {height}")
        return EvidenceBundle(
            kind=KIND_STATE,
            business=chain.proof(header, sets, announcing),
            transaction=None,
            state=StateSubject(record, asset, account, proof),
            anchor=_anchor(chain, height, sup),
        )


__all__ = ["ExportError", "export_state", "export_transaction"]
