"""The deterministic state machine: ``apply_block(state, block) -> (state, receipts)``.

Reads top-down like a specification:

1. ``validate_header`` checks the header against the previous state (chain, height, parent,
   time, validator sets, proposer, the certificate of the previous block);
2. ``execute_transactions`` runs each transaction through its module;
3. the computed transactions, receipts and state roots must equal the header's.

Nothing here reads a clock, a random source or the disk; iteration is over lists and sorted keys
only, so the same blocks give the same state root on every node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from consortia import codec
from consortia.crypto import Suite
from consortia.execution.context import BlockGas, ExecutionLimitError, TxContext, decode_record
from consortia.execution.errors import (
    BadEvidenceError,
    BadLastCommitError,
    InvalidBlock,
    InvalidTransactionError,
    SenderFrozenError,
    SenderOrgInactiveError,
    TxFailure,
    UnknownMethodError,
    UnknownModuleError,
    UnrepresentableResultError,
    WrongChainIdError,
    WrongEvidenceHashError,
    WrongHeightError,
    WrongParentHashError,
    WrongProposerError,
    WrongReceiptsRootError,
    WrongStateRootError,
    WrongTimeError,
    WrongTransactionsRootError,
    WrongValidatorSetError,
)
from consortia.execution.sigcache import SignatureCache
from consortia.execution.state import (
    VALIDATOR_CHANGE_OFFSET,
    VSET_CURRENT,
    VSET_LAST,
    VSET_NEXT,
    VSET_PENDING,
    ChainState,
    vset_history_key,
)
from consortia.ledger.evidence import (
    InvalidEvidenceError,
    evidence_hash,
    verify_duplicate_vote_evidence,
)
from consortia.ledger.merkle import merkle_root
from consortia.ledger.state_tree import StateTree
from consortia.ledger.types import (
    MAX_EVIDENCE_PER_BLOCK,
    ZERO_HASH,
    Block,
    CertificateError,
    CommitCertificate,
    DuplicateVoteEvidence,
    Header,
    Receipt,
    Transaction,
    TxStatus,
    ValidatorSet,
    bft_time_ms,
    verify_commit,
    verify_transaction_signature,
)
from consortia.modules import NATIVE_MODULES, modules_of_chain
from consortia.modules.registry import Account, Organization, account_key, org_key


def ensure(condition: bool, error: type[InvalidBlock], message: str) -> None:
    if not condition:
        raise error(message)


# ---------------------------------------------------------------------------------------------
# Roots


def transactions_root(suite: Suite, txs: Sequence[Transaction]) -> bytes:
    return merkle_root(suite.hash, [tx.encode() for tx in txs])


def receipts_root(suite: Suite, receipts: Sequence[Receipt]) -> bytes:
    return merkle_root(suite.hash, [r.encode() for r in receipts])


def last_commit_hash(suite: Suite, cert: CommitCertificate | None) -> bytes:
    return ZERO_HASH if cert is None else cert.hash(suite)


# ---------------------------------------------------------------------------------------------
# Header validation


def validate_header(state: ChainState, block: Block) -> None:
    """Raise an ``InvalidBlock`` subclass unless ``block``'s header may follow ``state``."""
    suite = state.suite
    h = block.header
    ensure(h.chain_id == state.chain_id, WrongChainIdError, f"chain id {h.chain_id!r}")
    ensure(
        h.height == state.height + 1,
        WrongHeightError,
        f"height {h.height}, expected {state.height + 1}",
    )
    ensure(
        h.parent_hash == state.last_block_hash, WrongParentHashError, "parent hash does not link"
    )
    ensure(
        h.validator_set_hash == state.validators.hash(suite),
        WrongValidatorSetError,
        "validator set hash differs from the chain's current set",
    )
    ensure(
        h.next_validator_set_hash == state.next_validators.hash(suite),
        WrongValidatorSetError,
        "next validator set hash differs from the chain's next set",
    )
    ensure(
        state.validators.get(h.proposer) is not None,
        WrongProposerError,
        f"proposer {h.proposer.hex()} is not a validator",
    )
    ensure(
        h.last_commit_hash == last_commit_hash(suite, block.last_commit),
        BadLastCommitError,
        "last commit hash does not match the enclosed certificate",
    )
    ensure(
        h.evidence_hash == evidence_hash(suite, block.evidence),
        WrongEvidenceHashError,
        "evidence hash does not match the enclosed evidence",
    )
    if h.height == 1:
        ensure(block.last_commit is None, BadLastCommitError, "block 1 carries no last commit")
        ensure(h.time_ms == state.last_time_ms, WrongTimeError, "block 1 time must be genesis time")
        return
    cert = block.last_commit
    if cert is None:
        raise BadLastCommitError(f"block {h.height} lacks the certificate of block {state.height}")
    try:
        verify_commit(
            suite,
            state.last_validators,
            cert,
            chain_id=state.chain_id,
            height=state.height,
            block_hash=state.last_block_hash,
        )
    except CertificateError as exc:
        raise BadLastCommitError(f"certificate of block {state.height}: {exc}") from exc
    expected_time = bft_time_ms(state.last_validators, cert)
    ensure(
        h.time_ms == expected_time, WrongTimeError, f"time {h.time_ms}, BFT time {expected_time}"
    )
    ensure(h.time_ms > state.last_time_ms, WrongTimeError, "block time does not increase")


# ---------------------------------------------------------------------------------------------
# Equivocation evidence


@dataclass(frozen=True)
class EvidenceRecord:
    """On-chain record of a validator's proven equivocation (key: ``evidence_key``)."""

    validator: bytes
    height: int
    round: int
    vote_type: int
    recorded_height: int


def evidence_key(suite: Suite, ev: DuplicateVoteEvidence) -> bytes:
    return b"consensus/evidence/" + ev.hash(suite)


def _check_evidence(
    state: ChainState, ev: DuplicateVoteEvidence, height: int, seen: set[bytes]
) -> bytes:
    """Return the state key recording ``ev`` if block ``height`` may include it, else raise.

    Evidence must concern this height or the previous one (whose validator sets the state
    holds), verify against that set, and be new (neither repeated in the block nor recorded).
    """
    vote_height = ev.vote_a.height
    if vote_height == height:
        validators = state.validators
    elif vote_height == height - 1:
        validators = state.last_validators
    else:
        raise BadEvidenceError(
            f"evidence for height {vote_height} is outside {height - 1}..{height}"
        )
    try:
        verify_duplicate_vote_evidence(state.suite, validators, ev)
    except InvalidEvidenceError as exc:
        raise BadEvidenceError(str(exc)) from exc
    if ev.vote_a.chain_id != state.chain_id:
        raise BadEvidenceError("evidence is for another chain")
    key = evidence_key(state.suite, ev)
    if key in seen or state.tree.get(key) is not None:
        raise BadEvidenceError("evidence already included")
    seen.add(key)
    return key


def record_evidence(
    state: ChainState,
    evidence: Sequence[DuplicateVoteEvidence],
    height: int,
    writes: dict[bytes, bytes | None],
) -> None:
    """Validate and record a block's evidence in ``writes`` (any bad item invalidates the block)."""
    seen: set[bytes] = set()
    for ev in evidence:
        key = _check_evidence(state, ev, height, seen)
        a = ev.vote_a
        writes[key] = codec.encode_struct(
            EvidenceRecord(a.validator, a.height, a.round, int(a.vote_type), height)
        )


def admissible_evidence(
    state: ChainState, candidates: Sequence[DuplicateVoteEvidence], height: int
) -> tuple[DuplicateVoteEvidence, ...]:
    """The candidates a proposer may include at ``height`` (at most the per-block limit)."""
    seen: set[bytes] = set()
    out: list[DuplicateVoteEvidence] = []
    for ev in candidates:
        if len(out) >= MAX_EVIDENCE_PER_BLOCK:
            break
        try:
            _check_evidence(state, ev, height, seen)
        except BadEvidenceError:
            continue
        out.append(ev)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Transactions


@dataclass(frozen=True)
class BlockExecution:
    """What executing a list of transactions produced (the state is not yet advanced)."""

    included: tuple[Transaction, ...]
    receipts: tuple[Receipt, ...]
    writes: dict[bytes, bytes | None]
    rejected: tuple[tuple[Transaction, str], ...]


def _load_account(
    state: ChainState, writes: dict[bytes, bytes | None], address: bytes
) -> Account | None:
    key = account_key(address)
    raw = writes[key] if key in writes else state.tree.get(key)
    return None if raw is None else decode_record(Account, raw)


def check_admission(
    state: ChainState,
    writes: dict[bytes, bytes | None],
    tx: Transaction,
    *,
    tx_hash: bytes | None = None,
    sig_cache: SignatureCache | None = None,
) -> Account:
    """Return the sender's account if an honest proposer may include ``tx`` now.

    Raises ``ValueError`` with the reason otherwise (wrong chain, unknown sender, nonce, signature).
    ``sig_cache`` only saves work: the outcome is the same with or without it.
    """
    if tx.chain_id != state.chain_id:
        raise ValueError(f"transaction is for chain {tx.chain_id!r}")
    acct = _load_account(state, writes, tx.sender)
    if acct is None:
        raise ValueError(f"unknown sender {tx.sender.hex()}")
    if tx.nonce != acct.nonce:
        raise ValueError(f"nonce {tx.nonce}, expected {acct.nonce}")
    if sig_cache is not None:
        h = tx_hash if tx_hash is not None else tx.hash(state.suite)
        valid = sig_cache.verify(state.suite, tx, h, acct.public_key)
    else:
        valid = verify_transaction_signature(state.suite, tx, acct.public_key)
    if not valid:
        raise ValueError("signature does not verify with the sender's registered key")
    return acct


def _run(ctx: TxContext, tx: Transaction, sender: Account, enabled: frozenset[str]) -> None:
    if sender.frozen:
        raise SenderFrozenError(f"account {sender.address.hex()} is frozen: {sender.freeze_reason}")
    org = ctx.get_record(org_key(sender.org_id), Organization)
    if org is None or not org.active:
        raise SenderOrgInactiveError(f"organization {sender.org_id!r} is not an active member")
    module = NATIVE_MODULES.get(tx.module)
    if module is None or tx.module not in enabled:
        raise UnknownModuleError(f"no module {tx.module!r} on this chain")
    method = module.methods.get(tx.method)
    if method is None:
        raise UnknownMethodError(f"module {tx.module!r} has no method {tx.method!r}")
    try:
        method.handler(ctx, method.parse_args(tx.args))
    except ExecutionLimitError as exc:
        raise TxFailure(str(exc)) from exc
    except (codec.CodecError, ArithmeticError, AssertionError) as exc:
        # Deterministic for a given state and transaction, so every node fails it alike.
        raise UnrepresentableResultError(f"{type(exc).__name__}: {exc}") from exc


def execute_transactions(
    state: ChainState,
    txs: Sequence[Transaction],
    *,
    height: int,
    time_ms: int,
    drop_inadmissible: bool = False,
    sig_cache: SignatureCache | None = None,
) -> BlockExecution:
    """Run ``txs`` in order on top of ``state``.

    A transaction failing a business rule gets a FAILED receipt and only its nonce advances. A
    transaction that is not admissible raises ``InvalidTransactionError`` — or, with
    ``drop_inadmissible`` (the proposer building a block), is left out and listed in ``rejected``.
    """
    suite = state.suite
    writes: dict[bytes, bytes | None] = {}
    included: list[Transaction] = []
    enabled = modules_of_chain(state.tree.get)  # the tier is fixed at genesis
    receipts: list[Receipt] = []
    rejected: list[tuple[Transaction, str]] = []
    # EVM gas used by the block's contract transactions so far; the contracts module refuses a
    # transaction whose gas limit exceeds what is left of the block's (BLOCK_GAS_EXHAUSTED).
    block_gas = BlockGas()
    for index, tx in enumerate(txs):
        tx_hash = tx.hash(suite)
        try:
            sender = check_admission(state, writes, tx, tx_hash=tx_hash, sig_cache=sig_cache)
        except ValueError as exc:
            if drop_inadmissible:
                rejected.append((tx, str(exc)))
                continue
            raise InvalidTransactionError(index, str(exc)) from exc
        ctx = TxContext(
            suite=suite,
            chain_id=state.chain_id,
            height=height,
            time_ms=time_ms,
            tree=state.tree,
            block_writes=writes,
            sender=tx.sender,
            nonce=tx.nonce,
            parent_hash=state.last_block_hash,
            block_gas=block_gas,
        )
        try:
            _run(ctx, tx, sender, enabled)
            receipt = Receipt(tx_hash, TxStatus.OK, "", "", tuple(ctx.events))
            try:
                receipt.encode()  # cached for the receipts root and the store
            except codec.CodecError as exc:  # an event this transaction cannot record
                raise UnrepresentableResultError(f"event: {exc}") from exc
        except TxFailure as failure:
            receipt = Receipt(tx_hash, TxStatus.FAILED, failure.code, failure.message, ())
        else:
            writes.update(ctx.writes)
        # The nonce advances whether or not the transaction succeeded, so it can't be replayed.
        latest = _load_account(state, writes, tx.sender)
        assert latest is not None  # admission found it, and no method deletes accounts
        writes[account_key(tx.sender)] = codec.encode_struct(
            replace(latest, nonce=latest.nonce + 1)
        )
        included.append(tx)
        receipts.append(receipt)
    return BlockExecution(tuple(included), tuple(receipts), writes, tuple(rejected))


def _rotate_validator_sets(
    state: ChainState, writes: dict[bytes, bytes | None]
) -> tuple[ValidatorSet, ValidatorSet, ValidatorSet]:
    """Shift the validator sets by one height and adopt a governance change made in this block.

    A change decided in block H (written to VSET_PENDING) decides block H + 2: the sets of H + 1
    were fixed by block H's header already. Writes the shifted sets into ``writes`` (only those
    that changed) so the state root covers them; the pending key itself never reaches the tree.
    """
    last, current = state.validators, state.next_validators
    pending_raw = writes.pop(VSET_PENDING, None)
    nxt = state.next_validators
    if pending_raw is not None:
        nxt = codec.decode_struct(ValidatorSet, pending_raw)
        if nxt != state.next_validators:
            first = state.height + 1 + VALIDATOR_CHANGE_OFFSET
            writes[vset_history_key(first)] = codec.encode_struct(nxt)
    for key, new, old in (
        (VSET_LAST, last, state.last_validators),
        (VSET_CURRENT, current, state.validators),
        (VSET_NEXT, nxt, state.next_validators),
    ):
        if new != old:
            writes[key] = codec.encode_struct(new)
    return last, current, nxt


@dataclass(frozen=True)
class _PostState:
    tree: StateTree
    last: ValidatorSet
    current: ValidatorSet
    next: ValidatorSet


def _post_state(state: ChainState, writes: dict[bytes, bytes | None]) -> _PostState:
    """The tree and validator sets after a block's ``writes`` (completed here with the sets)."""
    last, current, nxt = _rotate_validator_sets(state, writes)
    return _PostState(state.tree.update(writes), last, current, nxt)


def _advance(state: ChainState, header: Header, post: _PostState) -> ChainState:
    return replace(
        state,
        height=header.height,
        last_block_hash=header.hash(state.suite),
        last_time_ms=header.time_ms,
        tree=post.tree,
        last_validators=post.last,
        validators=post.current,
        next_validators=post.next,
    )


@dataclass(frozen=True)
class AppliedBlock:
    """The result of applying a block, with the state writes a store must persist."""

    state: ChainState
    receipts: tuple[Receipt, ...]
    writes: dict[bytes, bytes | None]


def apply_block_detailed(
    state: ChainState, block: Block, *, sig_cache: SignatureCache | None = None
) -> AppliedBlock:
    """``apply_block`` that also returns the block's state writes (for the store)."""
    suite = state.suite
    header = block.header
    validate_header(state, block)
    ensure(
        header.transactions_root == transactions_root(suite, block.transactions),
        WrongTransactionsRootError,
        "transactions root does not match the transactions",
    )
    execution = execute_transactions(
        state, block.transactions, height=header.height, time_ms=header.time_ms, sig_cache=sig_cache
    )
    record_evidence(state, block.evidence, header.height, execution.writes)
    ensure(
        header.receipts_root == receipts_root(suite, execution.receipts),
        WrongReceiptsRootError,
        "receipts root does not match the execution",
    )
    new_state = _advance(state, header, _post_state(state, execution.writes))
    ensure(
        header.state_root == new_state.state_root,
        WrongStateRootError,
        f"state root {header.state_root.hex()[:16]} != computed {new_state.state_root.hex()[:16]}",
    )
    return AppliedBlock(new_state, execution.receipts, execution.writes)


def apply_block(
    state: ChainState, block: Block, *, sig_cache: SignatureCache | None = None
) -> tuple[ChainState, tuple[Receipt, ...]]:
    """Validate and execute ``block`` on ``state``.

    Returns the new state and the receipts, or raises an ``InvalidBlock`` subclass; ``state``
    itself is never modified. Same ``state`` and ``block`` give the same result on every node.
    """
    applied = apply_block_detailed(state, block, sig_cache=sig_cache)
    return applied.state, applied.receipts


@dataclass(frozen=True)
class Proposal:
    block: Block
    state: ChainState
    receipts: tuple[Receipt, ...]
    writes: dict[bytes, bytes | None]
    rejected: tuple[tuple[Transaction, str], ...]


def propose_block(
    state: ChainState,
    candidates: Sequence[Transaction],
    *,
    proposer: bytes,
    last_commit: CommitCertificate | None,
    sig_cache: SignatureCache | None = None,
    evidence: Sequence[DuplicateVoteEvidence] = (),
) -> Proposal:
    """Build the next block from ``candidates`` (inadmissible ones are dropped and reported).

    Its time is the genesis time at height 1 and the BFT time of ``last_commit`` afterwards, so
    the proposal passes ``apply_block`` on any honest node.
    """
    suite = state.suite
    height = state.height + 1
    time_ms = (
        state.last_time_ms
        if last_commit is None
        else bft_time_ms(state.last_validators, last_commit)
    )
    execution = execute_transactions(
        state,
        candidates,
        height=height,
        time_ms=time_ms,
        drop_inadmissible=True,
        sig_cache=sig_cache,
    )
    included_evidence = admissible_evidence(state, evidence, height)
    record_evidence(state, included_evidence, height, execution.writes)
    post = _post_state(state, execution.writes)
    header = Header(
        chain_id=state.chain_id,
        height=height,
        time_ms=time_ms,
        parent_hash=state.last_block_hash,
        transactions_root=transactions_root(suite, execution.included),
        receipts_root=receipts_root(suite, execution.receipts),
        state_root=post.tree.root,
        validator_set_hash=state.validators.hash(suite),
        next_validator_set_hash=state.next_validators.hash(suite),
        proposer=proposer,
        last_commit_hash=last_commit_hash(suite, last_commit),
        evidence_hash=evidence_hash(suite, included_evidence),
    )
    block = Block(header, execution.included, last_commit, included_evidence)
    return Proposal(
        block,
        _advance(state, header, post),
        execution.receipts,
        execution.writes,
        execution.rejected,
    )
