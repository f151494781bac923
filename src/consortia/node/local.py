"""A single-process chain: the node shell around execution and storage, before the network lands.

All validators' keys live in one home directory; each block gets a real commit certificate signed
by every local validator (precommits over the block hash), and block, certificate, receipts and
state writes are committed to the store in one atomic write. This is what the demo and the ledger
tests run; the BFT network replaces only "who signs the precommits", not the block path.

Home layout::

    HOME/genesis.json           the genesis document (JSON)
    HOME/validators/NAME.key    encrypted validator key files
    HOME/accounts/NAME.key      encrypted account key files (demo accounts)
    HOME/data/                  the chain store (LMDB)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from consortia import codec
from consortia.crypto import KeyPair, Suite, decrypt_key_file, get_suite
from consortia.execution.apply import (
    AppliedBlock,
    apply_block_detailed,
    check_admission,
    propose_block,
)
from consortia.execution.genesis import Genesis, genesis_from_json, genesis_state
from consortia.execution.sigcache import SignatureCache
from consortia.execution.state import VSET_CURRENT, VSET_LAST, VSET_NEXT, ChainState
from consortia.ledger.state_tree import StateTree
from consortia.ledger.types import (
    Block,
    CommitCertificate,
    CommitSig,
    Receipt,
    ReceiptList,
    Transaction,
    ValidatorSet,
    Vote,
    VoteType,
    decode_block,
    decode_certificate,
    sign_vote,
)
from consortia.storage import BlockCommit, ChainStore

GENESIS_FILE = "genesis.json"
DATA_DIR = "data"
VALIDATORS_DIR = "validators"
ACCOUNTS_DIR = "accounts"


class NodeError(Exception):
    """The node cannot do what was asked (message says why, for the operator)."""


class StateMismatchError(NodeError):
    """The stored state does not hash to the state root of the stored head block."""


@dataclass(frozen=True)
class CommittedBlock:
    block: Block
    certificate: CommitCertificate
    receipts: tuple[Receipt, ...]
    rejected: tuple[tuple[Transaction, str], ...]


def load_genesis(home: Path) -> Genesis:
    path = home / GENESIS_FILE
    if not path.is_file():
        raise NodeError(f"{path} not found: run `consortia init --home {home}` first")
    return genesis_from_json(path.read_text())


def load_key_dir(directory: Path, password: str) -> dict[str, KeyPair]:
    """Decrypt every ``*.key`` file in ``directory`` (name = file stem)."""
    keys: dict[str, KeyPair] = {}
    for path in sorted(directory.glob("*.key")):
        keys[path.stem] = decrypt_key_file(path.read_bytes(), password)
    return keys


def restore_state(genesis: Genesis, store: ChainStore) -> ChainState:
    """Rebuild the chain state at the store's head from the stored state and head block.

    Guarantees: the returned state's root equals the head header's state root (else
    ``StateMismatchError``), so a node never continues from a state it cannot prove.
    """
    base = genesis_state(genesis)
    head = store.head()
    if head is None:
        return base
    height, head_hash = head
    raw = store.block(height)
    if raw is None:
        raise StateMismatchError(f"head block {height} is missing from the store")
    header = decode_block(raw).header
    suite = base.suite
    tree = StateTree.from_items(suite.hash, store.state_items())
    if tree.root != header.state_root:
        raise StateMismatchError(
            f"stored state root {tree.root.hex()[:16]} != header {height} state root "
            f"{header.state_root.hex()[:16]}"
        )
    sets = []
    for key in (VSET_LAST, VSET_CURRENT, VSET_NEXT):
        raw_vset = tree.get(key)
        if raw_vset is None:
            raise StateMismatchError(f"validator set {key.decode()} missing from the stored state")
        sets.append(codec.decode_struct(ValidatorSet, raw_vset))
    return ChainState(
        suite_name=base.suite_name,
        chain_id=base.chain_id,
        height=height,
        last_block_hash=head_hash,
        last_time_ms=header.time_ms,
        tree=tree,
        last_validators=sets[0],
        validators=sets[1],
        next_validators=sets[2],
    )


def store_block(
    store: ChainStore,
    prev: ChainState,
    block: Block,
    cert: CommitCertificate,
    applied: AppliedBlock,
) -> None:
    """Write a committed block with its certificate, receipts, state writes and tx index in one
    atomic commit. The store holds the full state, so genesis state lands with block 1."""
    suite = prev.suite
    writes: dict[bytes, bytes | None] = {}
    if block.header.height == 1:
        writes.update(prev.tree.items())
    writes.update(applied.writes)
    store.commit_block(
        BlockCommit(
            height=block.header.height,
            block_hash=cert.block_hash,
            block=block.encode(),
            certificate=cert.encode(),
            receipts=codec.encode_struct(ReceiptList(applied.receipts)),
            state_writes=writes,
            tx_index=[(tx.hash(suite), i) for i, tx in enumerate(block.transactions)],
        )
    )


class LocalChain:
    """Owns the store and the current state; builds, certifies and commits blocks."""

    def __init__(
        self,
        home: Path,
        validator_keys: dict[str, KeyPair],
        *,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.home = home
        self.genesis = load_genesis(home)
        self.suite: Suite = get_suite(self.genesis.suite)
        self.store = ChainStore.open(home / DATA_DIR)
        try:
            self.state = restore_state(self.genesis, self.store)
        except Exception:
            self.store.close()
            raise
        by_addr = {self.suite.address(k.public_key): k for k in validator_keys.values()}
        self._signers = [
            by_addr[v.address] for v in self.state.validators.validators if v.address in by_addr
        ]
        if self.state.validators.quorum_power() > sum(
            v.power for v in self.state.validators.validators if v.address in by_addr
        ):
            self.store.close()
            raise NodeError("the local validator keys hold no quorum of the validator set")
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._last_cert: CommitCertificate | None = None
        self.sig_cache = SignatureCache()
        head = self.store.head()
        if head is not None:
            raw_cert = self.store.certificate(head[0])
            if raw_cert is not None:
                self._last_cert = decode_certificate(raw_cert)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> LocalChain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def height(self) -> int:
        return self.state.height

    def admissible(self, txs: Iterable[Transaction]) -> list[tuple[Transaction, str]]:
        """Screen transactions against the head state alone (as a mempool would)."""
        problems = []
        for tx in txs:
            try:
                check_admission(self.state, {}, tx, sig_cache=self.sig_cache)
            except ValueError as exc:
                problems.append((tx, str(exc)))
        return problems

    def _certify(self, block: Block) -> CommitCertificate:
        """Every local validator precommits the block (times never go backwards)."""
        block_hash = block.hash(self.suite)
        now = max(self._clock_ms(), block.header.time_ms + 1)
        sigs = []
        for key in self._signers:
            vote = Vote(
                chain_id=self.state.chain_id,
                vote_type=VoteType.PRECOMMIT,
                height=block.header.height,
                round=0,
                block_hash=block_hash,
                time_ms=now,
                validator=self.suite.address(key.public_key),
                signature=b"",
            )
            signed = sign_vote(self.suite, key, vote)
            sigs.append(CommitSig(signed.validator, signed.time_ms, signed.signature))
        sigs.sort(key=lambda s: s.validator)
        return CommitCertificate(
            self.state.chain_id, block.header.height, 0, block_hash, tuple(sigs)
        )

    def commit(self, txs: Sequence[Transaction]) -> CommittedBlock:
        """Propose a block of the admissible ``txs``, re-validate it, certify it, store it.

        Guarantees: the block passed ``apply_block`` against the current state before it was
        written, and block + certificate + receipts + state writes land in one atomic commit.
        """
        proposer = self.state.validators.validators[
            self.state.height % len(self.state.validators.validators)
        ]
        proposal = propose_block(
            self.state, txs, proposer=proposer.address, last_commit=self._last_cert
        )
        # Validate the proposal exactly as a peer would before signing it.
        applied = apply_block_detailed(self.state, proposal.block, sig_cache=self.sig_cache)
        assert applied.state.state_root == proposal.state.state_root
        cert = self._certify(proposal.block)
        store_block(self.store, self.state, proposal.block, cert, applied)
        self.state = applied.state
        self._last_cert = cert
        return CommittedBlock(proposal.block, cert, applied.receipts, proposal.rejected)
