"""A simulated node: the real consensus core and real execution inside an in-memory shell.

The shell performs the core's actions the way a production node will: it builds blocks with
``propose_block`` and validates them with ``apply_block``, signs proposals and votes with the
node's key after persisting its last-signed record (double-sign protection, plus the lock, which
survive a crash), broadcasts, sets timers, and commits to an in-memory chain. A simple block sync
lets a node that fell behind (or restarted) fetch committed blocks with their certificates,
check them with ``verify_commit`` and ``apply_block``, and carry on.

Byzantine roles are implemented here, in the shell: the core is the honest algorithm and stays
unchanged; a byzantine node just does something else with the actions it returns.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Protocol

from consortia import codec
from consortia.consensus import (
    Action,
    BroadcastProposal,
    BuildProposal,
    CastVote,
    CommitBlock,
    ConsensusCore,
    ConsensusParams,
    DuplicateVoteEvidence,
    Event,
    NewHeight,
    ProposalReceived,
    ProposalValidated,
    Resume,
    ScheduleTimeout,
    SignedProposal,
    TimeoutFired,
    ValidateProposal,
    VoteReceived,
    sign_proposal,
)
from consortia.crypto import KeyPair, Suite
from consortia.execution.apply import apply_block, evidence_key, propose_block
from consortia.execution.errors import InvalidBlock
from consortia.execution.state import ChainState
from consortia.ledger.types import (
    Block,
    CertificateError,
    CommitCertificate,
    Transaction,
    ValidatorSet,
    Vote,
    VoteType,
    sign_vote,
    verify_commit,
)
from consortia.modules.registry import Account, account_key
from consortia.sim.network import (
    EvidenceMsg,
    Message,
    ProposalMsg,
    SyncRequest,
    SyncResponse,
    VoteMsg,
)
from consortia.sim.scenario import Role

MAX_BLOCK_TXS = 3
MAX_MEMPOOL = 256
MAX_SYNC_BLOCKS = 8
GOSSIP_INTERVAL_MS = 1000
SYNC_DELAY_MS = 1500  # a peer one height ahead is normal for a moment; after this, fetch blocks
SYNC_COOLDOWN_MS = 500
MAX_REGOSSIP_PROPOSALS = 4
MAX_RECORDED_VOTES = 16
MAX_EVIDENCE_POOL = 32

_STEP_PROPOSE, _STEP_PREVOTE, _STEP_PRECOMMIT = 0, 1, 2


class World(Protocol):
    """What a node may do to the outside world (implemented by the simulation)."""

    def now_ms(self, node: int) -> int: ...
    def send(self, src: int, dst: int, msg: Message) -> None: ...
    def broadcast(self, src: int, msg: Message) -> None: ...
    def set_timer(self, node: int, delay_ms: int, event: TimeoutFired) -> None: ...
    def committed(
        self, node: int, block: Block, cert: CommitCertificate, validators: ValidatorSet, via: str
    ) -> None: ...
    def evidence(self, node: int, evidence: DuplicateVoteEvidence) -> None: ...
    def fail(self, message: str) -> None: ...


@dataclass
class SignRecord:
    """The validator's last-signed record: persisted before each signature, survives crashes.

    Refuses anything below the last signed (height, round, step); at the same triple it only
    re-sends what it signed. Also kept, so that a restart loses nothing others may need:

    - the lock (last non-nil precommit of the height) with its block and polka, restored into the
      core (safety: never prevote against one's own precommit; liveness: re-propose it);
    - this height's own votes (the most recent ``MAX_RECORDED_VOTES``), fed back into the new
      core and so gossiped again. Otherwise a vote lost in flight when its sender crashed could be
      missing forever, and a round waiting for 2f+1 prevotes of any kind would never end.
    """

    height: int = 0
    round: int = 0
    step: int = -1
    vote: Vote | None = None  # the last one
    votes: list[Vote] = field(default_factory=list)  # own votes at ``height``
    proposal: ProposalMsg | None = None
    lock_height: int = 0
    lock_round: int = -1
    lock_hash: bytes = b""
    lock_block: Block | None = None
    lock_polka: tuple[Vote, ...] = ()

    def compare(self, height: int, round: int, step: int) -> int:
        """-1: already signed something later; 0: this very step; 1: new."""
        mine = (self.height, self.round, self.step)
        other = (height, round, step)
        return -1 if other < mine else (0 if other == mine else 1)


class SimNode:
    def __init__(
        self,
        index: int,
        keypair: KeyPair,
        role: Role,
        *,
        genesis: ChainState,
        world: World,
        peers: int,
        params: ConsensusParams,
        rng: random.Random,
    ) -> None:
        self.index = index
        self.key = keypair
        self.suite: Suite = genesis.suite
        self.chain_id = genesis.chain_id
        self.address = self.suite.address(keypair.public_key)
        self.role = role
        self.world = world
        self.n = peers
        self.params = params
        self.rng = rng
        # Persistent (the node's disk): the chain, the state after it, the last-signed record.
        self.state = genesis
        self.chain: list[tuple[Block, CommitCertificate]] = []
        self.sign_record = SignRecord()
        # Volatile: lost on a crash.
        self.up = True
        self.incarnation = 0
        self.core: ConsensusCore | None = None
        self.mempool: dict[bytes, Transaction] = {}
        self.executed: dict[bytes, ChainState] = {}
        self.blocks: dict[bytes, Block] = {}  # blocks of the working height, by hash
        self.relayed: dict[bytes, ProposalMsg] = {}
        self.evidence_pool: dict[bytes, DuplicateVoteEvidence] = {}  # to put on chain
        self.ahead: tuple[int, int, int] | None = None  # (peer, its height, first seen ms)
        self.last_sync_ms = -SYNC_COOLDOWN_MS
        self.syncs = 0
        self.tick_height = -1

    @property
    def honest(self) -> bool:
        return self.role == Role.HONEST

    @property
    def height(self) -> int:
        """Height of the last committed block."""
        return self.state.height

    @property
    def last_cert(self) -> CommitCertificate | None:
        return self.chain[-1][1] if self.chain else None

    # -----------------------------------------------------------------------------------------
    # Lifecycle

    def boot(self) -> None:
        """Start (or restart) consensus at the height after the stored chain."""
        if self.role == Role.SILENT:
            return
        self.core = ConsensusCore(
            self.suite, self.chain_id, address=self.address, params=self.params
        )
        self.mempool, self.executed, self.relayed = {}, {}, {}
        self.blocks = {}
        self.ahead = None
        height = self.height + 1
        rec = self.sign_record
        resume = None
        if rec.height == height:
            if rec.lock_height == height:
                resume = Resume(
                    round=rec.round,
                    locked_round=rec.lock_round,
                    locked_block_hash=rec.lock_hash,
                    locked_block=rec.lock_block,
                    polka=rec.lock_polka,
                )
            else:
                resume = Resume(round=rec.round)
        self._run(NewHeight(height, self.state.validators, self.state.next_validators, resume))
        for vote in list(rec.votes):
            if vote.height == height:  # sent before the crash: the core must know them too
                self._run(VoteReceived(vote))

    def crash(self) -> None:
        self.up = False
        self.incarnation += 1
        self.core = None
        self.mempool, self.executed, self.relayed = {}, {}, {}
        self.blocks = {}

    def submit(self, tx: Transaction) -> None:
        if self.core is not None and len(self.mempool) < MAX_MEMPOOL:
            self.mempool.setdefault(tx.hash(self.suite), tx)

    # -----------------------------------------------------------------------------------------
    # Inputs

    def receive(self, src: int, msg: Message) -> None:
        if self.core is None:
            return
        if isinstance(msg, VoteMsg):
            self._note_height(src, msg.vote.height)
            self._run(VoteReceived(msg.vote))
        elif isinstance(msg, ProposalMsg):
            self._note_height(src, msg.proposal.height)
            self._run(ProposalReceived(msg.proposal, msg.block, msg.pol_votes))
        elif isinstance(msg, EvidenceMsg):
            self._pool_evidence(msg.evidence)
        elif isinstance(msg, SyncRequest):
            start = max(1, msg.from_height)
            blocks = tuple(self.chain[start - 1 : start - 1 + MAX_SYNC_BLOCKS])
            if blocks:
                self.world.send(self.index, src, SyncResponse(blocks))
        else:
            self._apply_synced(msg.blocks)

    def on_timer(self, event: TimeoutFired) -> None:
        if self.core is not None:
            self._run(event)

    def on_tick(self) -> None:
        """Gossip: if the height made no progress since the last tick, re-send the votes the
        core holds for the current rounds and the proposals it relayed (the paper's liveness
        needs every message a correct node received to reach all correct nodes eventually, and
        messages were dropped before the network healed). Block-sync if a peer is ahead."""
        if self.core is None:
            return
        stalled = self.tick_height == self.height
        self.tick_height = self.height
        if stalled:
            for vote in self.core.gossip_votes():
                self.world.broadcast(self.index, VoteMsg(vote))
            for msg in list(self.relayed.values())[-MAX_REGOSSIP_PROPOSALS:]:
                self.world.broadcast(self.index, msg)
        if self.ahead is not None:
            peer, _, since = self.ahead
            if self.world.now_ms(self.index) - since >= SYNC_DELAY_MS:
                self._request_sync(peer)

    def _note_height(self, src: int, height: int) -> None:
        """A message from a height beyond the one we work on means ``src`` committed more."""
        working = self.height + 1
        if height <= working:
            return
        now = self.world.now_ms(self.index)
        if height > working + 1:
            self._request_sync(src)  # two or more heights behind: no point waiting
        elif self.ahead is None:
            self.ahead = (src, height, now)

    def _request_sync(self, peer: int) -> None:
        now = self.world.now_ms(self.index)
        if now - self.last_sync_ms < SYNC_COOLDOWN_MS:
            return
        self.last_sync_ms = now
        self.syncs += 1
        self.world.send(self.index, peer, SyncRequest(self.height + 1))

    def _apply_synced(self, blocks: tuple[tuple[Block, CommitCertificate], ...]) -> None:
        """Block sync: each block must follow our chain, carry a certificate that passes
        verify_commit, and pass apply_block; the first that does not ends the batch."""
        advanced = False
        for block, cert in blocks:
            height = block.header.height
            if height <= self.height:
                continue
            if height != self.height + 1:
                break
            block_hash = block.hash(self.suite)
            try:
                verify_commit(
                    self.suite,
                    self.state.validators,
                    cert,
                    chain_id=self.chain_id,
                    height=height,
                    block_hash=block_hash,
                )
                new_state, _ = apply_block(self.state, block)
            except (CertificateError, InvalidBlock):
                break
            self._append(block, cert, new_state, "sync")
            advanced = True
        if advanced:
            self._run(NewHeight(self.height + 1, self.state.validators, self.state.next_validators))

    # -----------------------------------------------------------------------------------------
    # The action loop

    def _run(self, first: Event) -> None:
        """Feed ``first`` to the core, perform its actions, and feed back what they produce
        (own proposals and votes, validation results, the next height) until quiet."""
        queue: deque[Event] = deque([first])
        while queue and self.core is not None:
            for action in self.core.handle(queue.popleft()):
                queue.extend(self._perform(action))

    def _perform(self, action: Action) -> list[Event]:
        if isinstance(action, ScheduleTimeout):
            event = TimeoutFired(action.kind, action.height, action.round)
            self.world.set_timer(self.index, action.duration_ms, event)
            return []
        if isinstance(action, CastVote):
            return self._cast_vote(action)
        if isinstance(action, BuildProposal):
            return self._build_proposal(action)
        if isinstance(action, ValidateProposal):
            return self._validate(action)
        if isinstance(action, BroadcastProposal):
            msg = ProposalMsg(action.proposal, action.block, action.pol_votes)
            if self.role != Role.EQUIVOCATING_PROPOSER:  # it keeps its two halves apart
                self.world.broadcast(self.index, msg)
            if action.proposal.height == self.height + 1 and len(self.relayed) < 32:
                self.relayed[action.proposal.signing_bytes()] = msg
            return []
        if isinstance(action, CommitBlock):
            return self._commit(action)
        self.world.evidence(self.index, action.evidence)
        if self.honest:
            # Pool it and gossip it, as the production node does: the next proposer may not
            # have seen both votes itself, and evidence is admissible for one more height only.
            self._pool_evidence(action.evidence)
            self.world.broadcast(self.index, EvidenceMsg(action.evidence))
        return []

    def _pool_evidence(self, evidence: DuplicateVoteEvidence) -> None:
        """Keep evidence to propose (honest nodes; bounded). Whether a block may include it is
        checked when a block is built (``propose_block`` admits only valid, new evidence)."""
        if self.honest and len(self.evidence_pool) < MAX_EVIDENCE_POOL:
            self.evidence_pool.setdefault(evidence.hash(self.suite), evidence)

    # -----------------------------------------------------------------------------------------
    # Signing (with the last-signed record) and the byzantine variants

    def _now(self) -> int:
        return self.world.now_ms(self.index)

    def _sign_vote(
        self, vote_type: VoteType, height: int, round: int, block_hash: bytes, min_time: int
    ) -> Vote:
        t = max(self._now(), min_time)
        unsigned = Vote(self.chain_id, vote_type, height, round, block_hash, t, self.address, b"")
        return sign_vote(self.suite, self.key, unsigned)

    def _cast_vote(self, a: CastVote) -> list[Event]:
        if self.role == Role.UNKNOWN_HASH_VOTER:
            vote = self._sign_vote(
                a.vote_type, a.height, a.round, self.rng.randbytes(32), a.min_time_ms
            )
            self.world.broadcast(self.index, VoteMsg(vote))
            return [VoteReceived(vote)]
        if self.role == Role.DOUBLE_VOTER:
            return self._double_vote(a)
        step = _STEP_PREVOTE if a.vote_type == VoteType.PREVOTE else _STEP_PRECOMMIT
        rec = self.sign_record
        order = rec.compare(a.height, a.round, step)
        if order < 0 or (order == 0 and (rec.vote is None or rec.vote.block_hash != a.block_hash)):
            return []  # would sign something conflicting with what we signed: refuse
        if order == 0:
            assert rec.vote is not None
            vote = rec.vote  # the very vote we signed before a crash: re-send it, don't re-sign
        else:
            # Persist first, then sign (a crash in between leaves us unable to sign, never
            # able to sign twice).
            if a.height != rec.height:
                rec.votes = []
            rec.height, rec.round, rec.step = a.height, a.round, step
            if a.vote_type == VoteType.PRECOMMIT and a.block_hash:
                rec.lock_height, rec.lock_round, rec.lock_hash = a.height, a.round, a.block_hash
                rec.lock_block, rec.lock_polka = self.blocks.get(a.block_hash), a.polka
            vote = self._sign_vote(a.vote_type, a.height, a.round, a.block_hash, a.min_time_ms)
            rec.vote = vote
            rec.votes = [*rec.votes[-(MAX_RECORDED_VOTES - 1) :], vote]
        self.world.broadcast(self.index, VoteMsg(vote))
        return [VoteReceived(vote)]

    def _double_vote(self, a: CastVote) -> list[Event]:
        """Sign the vote asked for and one for another block; show each to half of the peers."""
        first = self._sign_vote(a.vote_type, a.height, a.round, a.block_hash, a.min_time_ms)
        others = [h for h in self.executed if h != a.block_hash]
        alt = others[0] if others else (b"" if a.block_hash else self.rng.randbytes(32))
        second = self._sign_vote(a.vote_type, a.height, a.round, alt, a.min_time_ms)
        # Everyone gets one of the two; some get both (as gossip would make happen), so honest
        # nodes see the equivocation and must report it (and must not count the second vote).
        for p in range(self.n):
            if p == self.index:
                continue
            pick = self.rng.randrange(3)
            if pick != 1:
                self.world.send(self.index, p, VoteMsg(first))
            if pick != 0:
                self.world.send(self.index, p, VoteMsg(second))
        return [VoteReceived(first)]

    def _build_proposal(self, a: BuildProposal) -> list[Event]:
        if a.height != self.height + 1:
            return []
        honest_guard = self.role != Role.EQUIVOCATING_PROPOSER
        rec = self.sign_record
        if honest_guard:
            stored = rec.proposal
            if stored is not None and (stored.proposal.height, stored.proposal.round) == (
                a.height,
                a.round,
            ):
                return [ProposalReceived(stored.proposal, stored.block)]  # re-send, never re-sign
            if rec.compare(a.height, a.round, _STEP_PROPOSE) <= 0:
                return []  # already signed something later (we restarted): refuse
        block = a.block if a.block is not None else self._new_block(self.address)
        if self.role == Role.INVALID_PROPOSER:
            header = replace(block.header, state_root=self.rng.randbytes(32))
            block = replace(block, header=header)
        if honest_guard:
            if a.height != rec.height:
                rec.votes = []
            rec.height, rec.round, rec.step, rec.vote = a.height, a.round, _STEP_PROPOSE, None
        proposal = sign_proposal(
            self.suite,
            self.key,
            chain_id=self.chain_id,
            height=a.height,
            round=a.round,
            block_hash=block.hash(self.suite),
            pol_round=a.pol_round,
        )
        if honest_guard:
            rec.proposal = ProposalMsg(proposal, block)
        if self.role == Role.EQUIVOCATING_PROPOSER:
            self._equivocate(a, proposal, block)
        return [ProposalReceived(proposal, block)]

    def _equivocate(self, a: BuildProposal, proposal_a: SignedProposal, block_a: Block) -> None:
        """A second, different but valid block for the same round (another validator named as
        proposer in the header), each shown to half of the peers."""
        others = [v.address for v in self.state.validators.validators if v.address != self.address]
        block_b = self._new_block(
            self.rng.choice(others) if others else self.address, drop_txs=True
        )
        proposal_b = sign_proposal(
            self.suite,
            self.key,
            chain_id=self.chain_id,
            height=a.height,
            round=a.round,
            block_hash=block_b.hash(self.suite),
            pol_round=-1,
        )
        peers = [p for p in range(self.n) if p != self.index]
        self.rng.shuffle(peers)
        for i, p in enumerate(peers):
            msg = (
                ProposalMsg(proposal_a, block_a) if i % 2 == 0 else ProposalMsg(proposal_b, block_b)
            )
            self.world.send(self.index, p, msg)

    def _new_block(self, proposer: bytes, *, drop_txs: bool = False) -> Block:
        candidates = (
            [] if drop_txs else sorted(self.mempool.values(), key=lambda t: (t.sender, t.nonce))
        )
        evidence = list(self.evidence_pool.values())
        built = propose_block(
            self.state,
            candidates[: MAX_BLOCK_TXS * 2],
            proposer=proposer,
            last_commit=self.last_cert,
            evidence=evidence,
        )
        block = built.block
        if len(block.transactions) > MAX_BLOCK_TXS:
            built = propose_block(
                self.state,
                list(block.transactions[:MAX_BLOCK_TXS]),
                proposer=proposer,
                last_commit=self.last_cert,
                evidence=evidence,
            )
            block = built.block
        self.executed[block.hash(self.suite)] = built.state
        return block

    # -----------------------------------------------------------------------------------------
    # Execution and commit

    def _validate(self, a: ValidateProposal) -> list[Event]:
        if a.height != self.height + 1:
            return []
        self.blocks[a.block_hash] = a.block
        valid = a.block_hash in self.executed
        if not valid:
            try:
                new_state, _ = apply_block(self.state, a.block)
            except InvalidBlock:
                pass
            else:
                self.executed[a.block_hash] = new_state
                valid = True
        return [ProposalValidated(a.height, a.block_hash, valid)]

    def _commit(self, a: CommitBlock) -> list[Event]:
        height = a.block.header.height
        block_hash = a.block.hash(self.suite)
        if height != self.height + 1:
            return []  # already have it (block sync was faster)
        new_state = self.executed.get(block_hash)
        if new_state is None:
            new_state, _ = apply_block(self.state, a.block)
        self._append(a.block, a.certificate, new_state, "consensus")
        return [NewHeight(height + 1, self.state.validators, self.state.next_validators)]

    def _append(
        self, block: Block, cert: CommitCertificate, new_state: ChainState, via: str
    ) -> None:
        # The world checks the certificate against the validators of this height and safety
        # across honest nodes before the block counts.
        self.world.committed(self.index, block, cert, self.state.validators, via)
        self.chain.append((block, cert))
        self.state = new_state
        self.executed, self.relayed, self.blocks = {}, {}, {}
        self.ahead = None
        self._prune_mempool()
        # Evidence can go into blocks for a while only (votes of this height or the previous),
        # and once only (gossip may bring back evidence an earlier block recorded).
        self.evidence_pool = {
            k: ev
            for k, ev in self.evidence_pool.items()
            if ev.vote_a.height >= self.height
            and self.state.tree.get(evidence_key(self.suite, ev)) is None
        }

    def _prune_mempool(self) -> None:
        nonces: dict[bytes, int] = {}
        for tx_hash, tx in list(self.mempool.items()):
            if tx.sender not in nonces:
                raw = self.state.tree.get(account_key(tx.sender))
                nonces[tx.sender] = -1 if raw is None else codec.decode_struct(Account, raw).nonce
            if tx.nonce < nonces[tx.sender]:
                del self.mempool[tx_hash]
