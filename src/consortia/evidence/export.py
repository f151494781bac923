"""Build evidence bundles: from node homes' stores, or over any reader of a chain (the REST API
builds them from its node's own store and fetches the anchor half from a supervision node).

A bundle has two halves built on different chains:

- the **business half** (``BusinessEvidence``: the business header, its certificate and validator
  history, and the subject: a transaction with its receipt, or a holding / wallet / contract
  state proof), built from the business chain (``business_transaction``, ``business_state``,
  ``business_contract``);
- the **anchor half** (``AnchorEvidence``: state proofs of the anchor of that business block and
  of the chain's registration, against a certified supervision header), built from the
  supervision chain (``anchor_evidence``); ``anchor_to_obj`` / ``anchor_from_obj`` carry it as
  JSON (exactly the ``anchor`` member of the bundle file).

``complete`` joins them into an ``EvidenceBundle``. ``export_transaction`` / ``export_state`` /
``export_contract`` do all of it from two node homes. Stores are opened read-only, each through
one snapshot, so a running node may keep writing.

The store keeps only the latest state, so what needs older state is replayed from genesis with
``apply_block`` (as ``ledger verify`` does): the validator set a header announced (the state's next
set before that block) and a holding or wallet at an older height. Anchor records are never
removed from the supervision state, so the anchor is proven against the supervision head.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from consortia import codec
from consortia.contracts import keys as contract_keys
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
    anchor_from_obj,
    anchor_to_obj,
    contract_subject,
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
    Receipt,
    ValidatorSet,
    decode_block,
    decode_certificate,
    decode_receipts,
)
from consortia.modules import anchoring, notary
from consortia.node.local import DATA_DIR, load_genesis
from consortia.storage import ChainStore
from consortia.storage.store import Snapshot


class ExportError(Exception):
    """A bundle cannot be built (message says why, for the operator)."""


class UnknownSubjectError(ExportError):
    """The transaction, holding or wallet to prove does not exist (at that height)."""


class NotAnchoredError(ExportError):
    """The business block is not anchored on the supervision chain (yet); ``anchored`` is the
    chain's last anchored height there (None: the chain is not registered there)."""

    def __init__(self, message: str, anchored: int | None) -> None:
        super().__init__(message)
        self.anchored = anchored


# Called as replay advances: (blocks replayed, blocks to replay).
Progress = Callable[[int, int], None]


class ChainReader(Protocol):
    """The committed blocks of one chain, decoded (a store snapshot, or the REST API's backend)."""

    def block(self, height: int) -> Block | None: ...

    def certificate(self, height: int) -> CommitCertificate | None: ...

    def receipts(self, height: int) -> tuple[Receipt, ...] | None: ...

    def find_tx(self, tx_hash: bytes) -> tuple[int, int] | None: ...


class _SnapshotReader:
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def block(self, height: int) -> Block | None:
        raw = self.snap.block(height)
        return None if raw is None else decode_block(raw)

    def certificate(self, height: int) -> CommitCertificate | None:
        raw = self.snap.certificate(height)
        return None if raw is None else decode_certificate(raw)

    def receipts(self, height: int) -> tuple[Receipt, ...] | None:
        raw = self.snap.receipts(height)
        return None if raw is None else decode_receipts(raw).receipts

    def find_tx(self, tx_hash: bytes) -> tuple[int, int] | None:
        return self.snap.find_tx(tx_hash)


@dataclass
class ExportChain:
    """One chain as the exporter reads it: its genesis, its blocks up to ``head``, and a label
    naming it in error messages (a home directory, a chain id)."""

    label: str
    genesis: Genesis
    reader: ChainReader
    head: int

    @property
    def suite(self) -> Suite:
        return get_suite(self.genesis.suite)

    def block(self, height: int) -> Block:
        block = self.reader.block(height) if 1 <= height <= self.head else None
        if block is None:
            raise ExportError(f"{self.label}: block {height} is missing from the store")
        return block

    def certificate(self, height: int) -> CommitCertificate:
        cert = self.reader.certificate(height) if 1 <= height <= self.head else None
        if cert is None:
            raise ExportError(f"{self.label}: certificate {height} is missing from the store")
        return cert

    def replay(
        self, upto: int, announcing: set[int], progress: Progress | None = None
    ) -> tuple[ChainState, dict[int, ValidatorSet]]:
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
                raise ExportError(f"{self.label}: block {height} does not replay: {exc}") from exc
            if progress is not None:
                progress(height, upto)
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

    def chain_proof(self, height: int, progress: Progress | None = None) -> ChainProof:
        """Header ``height`` with its certificate and validator history (replaying only as far
        as the last set change needs)."""
        announcing = self.announcing(height)
        sets: dict[int, ValidatorSet] = {}
        if announcing:
            _, sets = self.replay(max(announcing) - 1, set(announcing), progress)
        return self.proof(self.block(height).header, sets, announcing)


@dataclass(frozen=True)
class BusinessEvidence:
    """The business half of a bundle: everything but the anchor."""

    kind: str  # KIND_TRANSACTION | KIND_STATE
    business: ChainProof
    transaction: TxSubject | None
    state: StateSubject | None

    @property
    def chain_id(self) -> str:
        return self.business.chain_id

    @property
    def height(self) -> int:
        return self.business.header.height


def complete(half: BusinessEvidence, anchor: AnchorEvidence) -> EvidenceBundle:
    """The bundle of a business half and the anchor half of the same block."""
    return EvidenceBundle(
        kind=half.kind,
        business=half.business,
        transaction=half.transaction,
        state=half.state,
        anchor=anchor,
    )


def business_transaction(
    chain: ExportChain, tx_hash: bytes, progress: Progress | None = None
) -> BusinessEvidence:
    """The business half proving committed transaction ``tx_hash`` and its receipt (replays
    blocks only up to the last validator-set change before it)."""
    where = chain.reader.find_tx(tx_hash)
    if where is None or not 1 <= where[0] <= chain.head:
        raise UnknownSubjectError(f"transaction {tx_hash.hex()} is not in {chain.label}")
    height, index = where
    block = chain.block(height)
    receipts = chain.reader.receipts(height)
    if receipts is None:
        raise ExportError(f"{chain.label}: receipts of block {height} are missing")
    if index >= len(block.transactions) or len(receipts) != len(block.transactions):
        raise ExportError(f"{chain.label}: block {height} and its receipts do not match")
    size = len(block.transactions)
    suite = chain.suite
    tx_log = MerkleLog(suite.hash, (tx.encode() for tx in block.transactions))
    receipt_log = MerkleLog(suite.hash, (r.encode() for r in receipts))
    subject = TxSubject(
        transaction=block.transactions[index],
        receipt=receipts[index],
        tx_proof=InclusionProof(index, size, tuple(tx_log.inclusion_proof(index, size))),
        receipt_proof=InclusionProof(index, size, tuple(receipt_log.inclusion_proof(index, size))),
    )
    return BusinessEvidence(KIND_TRANSACTION, chain.chain_proof(height, progress), subject, None)


def state_subject(account: str, asset: str) -> tuple[str, str]:
    """``(record kind, asset)`` of a holding of security ``asset`` or, with asset ``"ecny"``
    (or ``"e-cny"``), of e-CNY wallet ``account``."""
    if asset.lower() in (ECNY_ASSET, "e-cny"):
        return RECORD_WALLET, ECNY_ASSET
    return RECORD_HOLDING, asset


def business_state(
    chain: ExportChain,
    *,
    account: str,
    asset: str,
    height: int,
    progress: Progress | None = None,
) -> BusinessEvidence:
    """The business half proving ``account``'s holding of security ``asset`` (or, with asset
    ``"ecny"``, e-CNY wallet ``account``) at ``height`` (replays blocks 1..height)."""
    record, asset = state_subject(account, asset)
    key = state_key_of(record, asset, account)
    state, chain_proof = _state_at(chain, height, progress)
    proof = state.tree.prove(key)
    if proof.value is None:
        what = "wallet" if record == RECORD_WALLET else f"holding of {asset}"
        raise UnknownSubjectError(f"no {what} for {account!r} at height {height}")
    return BusinessEvidence(
        KIND_STATE, chain_proof, None, StateSubject(record, asset, account, proof)
    )


def _state_at(
    chain: ExportChain, height: int, progress: Progress | None
) -> tuple[ChainState, ChainProof]:
    """The state after block ``height`` (replayed 1..height, its root checked against the
    header) and the chain proof of that header."""
    if not 1 <= height <= chain.head:
        raise ExportError(f"height {height} is outside 1..{chain.head} of {chain.label}")
    announcing = chain.announcing(height)
    state, sets = chain.replay(height, set(announcing), progress)
    header = chain.block(height).header
    if state.state_root != header.state_root:
        raise ExportError(f"{chain.label}: replayed state root differs from header {height}")
    return state, chain.proof(header, sets, announcing)


_HEX_DIGITS = frozenset("0123456789abcdef")


def parse_contract_address(text: str) -> bytes:
    """A contract address as people write it: 40 hex digits, optionally ``0x``-prefixed
    (``ValueError`` otherwise)."""
    digits = text.lower().removeprefix("0x")
    if len(digits) != 2 * contract_keys.ADDRESS_SIZE or not set(digits) <= _HEX_DIGITS:
        raise ValueError(f"{text!r} is not a 20-byte hex address")
    return bytes.fromhex(digits)


def parse_slot(text: str) -> int:
    """A storage slot as people write it: decimal digits, or hex digits after ``0x`` (nothing
    else: no sign, spaces or underscores); below 2**256 (``ValueError`` otherwise)."""
    lowered = text.lower()
    if lowered.startswith("0x"):
        digits, base, alphabet = lowered[2:], 16, _HEX_DIGITS
    else:
        digits, base, alphabet = lowered, 10, frozenset("0123456789")
    if not digits or len(digits) > 80 or not set(digits) <= alphabet:
        raise ValueError(f"{text!r} is not a slot number (decimal, or hex after 0x)")
    slot = int(digits, base)
    if slot >= 1 << 256:
        raise ValueError(f"{text!r} is not a 256-bit slot number")
    return slot


def business_contract(
    chain: ExportChain,
    *,
    address: bytes,
    slot: int | None,
    height: int,
    progress: Progress | None = None,
) -> BusinessEvidence:
    """The business half proving storage ``slot`` of contract ``address`` at ``height`` (with
    slot None: the contract's account record, its nonce and code hash). A zero word is not
    stored (reading it as zero is the EVM's rule, not a record), so a zero slot has nothing to
    prove by membership and is refused (``UnknownSubjectError``), as is an address that holds
    no contract at that height."""
    try:
        record, asset, account = contract_subject(address, slot)
    except ValueError as exc:
        raise ExportError(str(exc)) from exc
    state, chain_proof = _state_at(chain, height, progress)
    if state.tree.get(contract_keys.account_key(address)) is None:
        raise UnknownSubjectError(f"no contract at 0x{address.hex()} at height {height}")
    proof = state.tree.prove(state_key_of(record, asset, account))
    if proof.value is None:
        assert slot is not None  # the account record was just found
        raise UnknownSubjectError(
            f"slot {hex(slot)} of contract 0x{address.hex()} is zero at height {height}: a "
            "zero word is not stored, so there is no record to prove (prove the contract's "
            "account record to show the contract exists)"
        )
    return BusinessEvidence(
        KIND_STATE, chain_proof, None, StateSubject(record, asset, account, proof)
    )


def anchor_evidence(
    sup: ExportChain, tree: StateTree, chain_id: str, height: int
) -> AnchorEvidence:
    """State proofs, against the supervision head (``tree`` is its state, ``sup.head`` its
    height), of the anchor of ``chain_id``@``height`` and of the chain's registration, with the
    supervision chain proof of that head."""
    if sup.head == 0:
        raise ExportError(f"{sup.label}: the supervision chain has no blocks yet")
    if tree.root != sup.block(sup.head).header.state_root:
        raise ExportError(f"{sup.label}: the state does not match the head block")
    akey = anchoring.anchor_key(chain_id, height)
    if tree.get(akey) is None:
        raw_reg = tree.get(anchoring.chain_key(chain_id))
        anchored = (
            None
            if raw_reg is None
            else codec.decode_struct(anchoring.AnchoredChain, raw_reg).height
        )
        upto = (
            "it is not registered there"
            if anchored is None
            else f"anchored up to height {anchored}"
        )
        raise NotAnchoredError(
            f"{chain_id}@{height} is not anchored on supervision chain "
            f"{sup.genesis.chain_id} yet ({upto}); wait for the relayer and retry",
            anchored,
        )
    return AnchorEvidence(
        anchor_proof=tree.prove(akey),
        registration_proof=tree.prove(anchoring.chain_key(chain_id)),
        supervision=sup.chain_proof(sup.head),
    )


# ---------------------------------------------------------------------------------------------
# From node homes


def _head_tree(chain: ExportChain, snap: Snapshot) -> StateTree:
    return StateTree.from_items(chain.suite.hash, snap.state_items())


@contextmanager
def _open(home: Path) -> Iterator[tuple[ExportChain, Snapshot]]:
    genesis = load_genesis(home)
    if not (home / DATA_DIR).is_dir():
        raise ExportError(f"{home}: no chain store in {home / DATA_DIR}")
    with ChainStore.open(home / DATA_DIR, readonly=True) as db, db.snapshot() as snap:
        head = snap.head()
        height = 0 if head is None else head[0]
        yield ExportChain(str(home), genesis, _SnapshotReader(snap), height), snap


def _check_tiers(home: Path, supervision_home: Path) -> None:
    """Refuse swapped or wrong homes before opening any store."""
    for where, tier in ((home, "business"), (supervision_home, "supervision")):
        actual = load_genesis(where).tier
        if actual != tier:
            raise ExportError(f"{where} is not a {tier} chain (tier {actual!r})")


def _anchored(half: BusinessEvidence, supervision_home: Path) -> EvidenceBundle:
    with _open(supervision_home) as (sup, snap):
        tree = _head_tree(sup, snap) if sup.head else StateTree.from_items(sup.suite.hash, [])
        return complete(half, anchor_evidence(sup, tree, half.chain_id, half.height))


def export_transaction(
    home: Path, supervision_home: Path, tx_hash: bytes, *, progress: Progress | None = None
) -> EvidenceBundle:
    """The bundle proving transaction ``tx_hash`` of the business chain in ``home`` and its
    receipt, anchored on the supervision chain in ``supervision_home``."""
    _check_tiers(home, supervision_home)
    with _open(home) as (chain, _):
        half = business_transaction(chain, tx_hash, progress)
    return _anchored(half, supervision_home)


def export_state(
    home: Path,
    supervision_home: Path,
    *,
    account: str,
    asset: str,
    height: int,
    progress: Progress | None = None,
) -> EvidenceBundle:
    """The bundle proving ``account``'s holding of security ``asset`` (or, with asset
    ``"ecny"``, e-CNY wallet ``account``) at ``height``, anchored like a transaction bundle."""
    _check_tiers(home, supervision_home)
    with _open(home) as (chain, _):
        half = business_state(chain, account=account, asset=asset, height=height, progress=progress)
    return _anchored(half, supervision_home)


def export_contract(
    home: Path,
    supervision_home: Path,
    *,
    address: bytes,
    slot: int | None,
    height: int,
    progress: Progress | None = None,
) -> EvidenceBundle:
    """The bundle proving storage ``slot`` of contract ``address`` (slot None: its account
    record) at ``height``, anchored like a transaction bundle."""
    _check_tiers(home, supervision_home)
    with _open(home) as (chain, _):
        half = business_contract(
            chain, address=address, slot=slot, height=height, progress=progress
        )
    return _anchored(half, supervision_home)


def deposit_tx_hash(chain: ExportChain, read: notary.Read, deposit_id: str) -> bytes:
    """The id of the ``notary.deposit`` transaction that created deposit ``deposit_id``: the
    deposit record (read by ``read``) names its block, whose receipts name the deposit."""
    deposit = notary.load_deposit(read, deposit_id)
    if deposit is None:
        raise UnknownSubjectError(f"no deposit {deposit_id!r} in {chain.label}")
    receipts = chain.reader.receipts(deposit.height) if deposit.height <= chain.head else None
    for receipt in receipts or ():
        for event in receipt.events:
            if (event.module, event.kind) == (notary.NAME, "deposited") and event.attributes.get(
                "deposit_id"
            ) == deposit_id:
                return receipt.tx_hash
    raise ExportError(f"{chain.label}: block {deposit.height} does not record {deposit_id}")


def export_deposit(
    home: Path, supervision_home: Path, deposit_id: str, *, progress: Progress | None = None
) -> EvidenceBundle:
    """The transaction bundle of the ``notary.deposit`` that created ``deposit_id`` (see
    docs/notary.md), anchored; ``consortia evidence verify --file`` checks a file against it."""
    _check_tiers(home, supervision_home)
    with _open(home) as (chain, snap):
        tx_hash = deposit_tx_hash(chain, snap.state_get, deposit_id)
        half = business_transaction(chain, tx_hash, progress)
    return _anchored(half, supervision_home)


__all__ = [
    "BusinessEvidence",
    "ChainReader",
    "ExportChain",
    "ExportError",
    "NotAnchoredError",
    "Progress",
    "UnknownSubjectError",
    "anchor_evidence",
    "anchor_from_obj",
    "anchor_to_obj",
    "business_contract",
    "business_state",
    "business_transaction",
    "complete",
    "deposit_tx_hash",
    "export_contract",
    "export_deposit",
    "export_state",
    "export_transaction",
    "parse_contract_address",
    "parse_slot",
    "state_subject",
]
