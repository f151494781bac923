"""A consortium node process: consensus + execution + storage + network + mempool, on asyncio.

The consensus core decides; this shell performs its actions exactly as the simulator's shell does
(``consortia.sim.node``), with real I/O: it signs through the double-sign guard (persisted before a
message leaves), executes proposals with ``apply_block``, writes each decided block atomically to
the store, gossips over the mutual-TLS peer network, schedules timeouts on the event loop, syncs
blocks from peers when it falls behind, and serves clients on a loopback port.

Message types between nodes (bodies are CBOR maps of canonical encodings):

    cons.proposal  {proposal, block, pol_votes}     cons.vote  {vote}
    cons.evidence  {evidence}
    mempool.tx     {txs}                            sync.status {height}
    sync.request   {from_height}                    sync.blocks {blocks: [[block, cert], ...]}

Client port (plain TCP on 127.0.0.1, same framing; one request → one response):

    tx.submit {tx, wait}  → {ok, tx_hash[, height, code, message]} or {ok: false, code, message}
    tx.submit_many {txs, wait} → {ok, results: [one reply as above per transaction]}
    status {}             → {node, role, height, last_block_hash, peers, mempool}
    block.get {height}    → {block, certificate} (hex-free raw bytes) or an error
    account.get {address} → {ok, address, org_id, roles, nonce, frozen} (committed state) or
                            {ok: false, code: NOT_FOUND}
    metrics {}            → {ok, text}: the Prometheus exposition (``consortia.node.metrics``)

With ``api_port`` configured (``NodeConfig.api_port`` or ``consortia node start --api-port``)
the node also serves the REST API (``consortia.api``, incl. ``GET /metrics``) with uvicorn on
its own event loop; without the API's dependencies it logs why and runs without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from consortia import codec
from consortia.consensus import (
    Action,
    BroadcastProposal,
    BuildProposal,
    CastVote,
    CommitBlock,
    ConsensusCore,
    ConsensusParams,
    Event,
    NewHeight,
    ProposalReceived,
    ProposalValidated,
    RecordEvidence,
    Resume,
    ScheduleTimeout,
    TimeoutFired,
    ValidateProposal,
    VoteReceived,
    decode_proposal,
    sign_proposal,
)
from consortia.crypto import KeyPair, Suite, decrypt_key_file, get_suite
from consortia.execution.apply import (
    AppliedBlock,
    apply_block_detailed,
    evidence_key,
    propose_block,
)
from consortia.execution.context import decode_record
from consortia.execution.errors import InvalidBlock
from consortia.execution.sigcache import SignatureCache
from consortia.ledger.evidence import decode_evidence
from consortia.ledger.types import (
    Block,
    CertificateError,
    CommitCertificate,
    DuplicateVoteEvidence,
    Receipt,
    TxStatus,
    Vote,
    VoteType,
    WireFormatError,
    decode_block,
    decode_certificate,
    sign_vote,
    verify_commit,
)
from consortia.modules.registry import Account, account_key
from consortia.net import frames, pki
from consortia.net.transport import NetConfig, PeerAddress, PeerNetwork, Received
from consortia.node.local import DATA_DIR, load_genesis, restore_state, store_block
from consortia.node.mempool import Mempool, MempoolError
from consortia.node.metrics import AnchoringGauges, NodeMetrics
from consortia.node.network_home import TLS_DIR, VALIDATOR_KEY_FILE, NodeConfig
from consortia.node.signer import DoubleSignError, DoubleSignGuard, Lock, SignStep
from consortia.storage import ChainStore

log = logging.getLogger("consortia.node")

MSG_PROPOSAL = "cons.proposal"
MSG_VOTE = "cons.vote"
MSG_TX = "mempool.tx"
MSG_STATUS = "sync.status"
MSG_SYNC_REQUEST = "sync.request"
MSG_SYNC_BLOCKS = "sync.blocks"
MSG_EVIDENCE = "cons.evidence"
MAX_PENDING_EVIDENCE = 256
SIGNER_STATE_FILE = "signer.state"
MAX_STATE_KEY = 1024
MAX_TXS_PER_REQUEST = 1_000
MAX_SEEN_PROPOSALS = 256


@dataclass(frozen=True)
class NodeParams:
    """The node shell's own knobs (consensus timeouts live in ``ConsensusParams``)."""

    commit_delay_ms: int = 150  # wait after a commit, so transactions gather for the next block
    max_block_txs: int = 2_000
    max_block_bytes: int = 3 * 1024 * 1024
    tick_ms: int = 1_000  # gossip re-send / status / sync check period
    sync_batch: int = 32
    max_sync_bytes: int = 3 * 1024 * 1024
    max_client_connections: int = 256
    wait_timeout_s: float = 30.0


# Called after each block is durably stored (by consensus or sync) with the block, its
# certificate and its receipts. Must be cheap; an exception is logged, never raised into the node.
CommitListener = Callable[[Block, CommitCertificate, tuple[Receipt, ...]], None]


def _clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Node:
    """One node. Single-threaded: everything runs on the event loop that calls ``run``."""

    def __init__(
        self,
        home: Path,
        *,
        password: str,
        params: NodeParams | None = None,
        consensus: ConsensusParams | None = None,
        clock_ms: Callable[[], int] = _clock_ms,
        api_port: int | None = None,
    ) -> None:
        """``api_port`` overrides the configured REST API port (0: no API)."""
        self.home = home
        self.params = params or NodeParams()
        self.config = NodeConfig.load(home)
        self.api_port = self.config.api_port if api_port is None else api_port
        self.genesis = load_genesis(home)
        self.suite: Suite = get_suite(self.genesis.suite)
        self.chain_id = self.genesis.chain_id
        self._clock_ms = clock_ms
        self.key: KeyPair | None = None
        self.guard: DoubleSignGuard | None = None
        if self.config.role == "validator":
            self.key = decrypt_key_file((home / VALIDATOR_KEY_FILE).read_bytes(), password)
            self.guard = DoubleSignGuard(home / SIGNER_STATE_FILE)
        self.address = None if self.key is None else self.suite.address(self.key.public_key)
        self.store = ChainStore.open(home / DATA_DIR)
        self.state = restore_state(self.genesis, self.store)
        self.last_cert: CommitCertificate | None = None
        head = self.store.head()
        if head is not None:
            raw = self.store.certificate(head[0])
            self.last_cert = None if raw is None else decode_certificate(raw)
        self.sig_cache = SignatureCache()
        self.mempool = Mempool(sig_cache=self.sig_cache)
        self.core = ConsensusCore(self.suite, self.chain_id, address=self.address, params=consensus)
        self.net = self._make_network()
        self.executed: dict[bytes, AppliedBlock] = {}
        self.blocks: dict[bytes, Block] = {}
        self.relayed: dict[bytes, frames.Message] = {}
        self._seen_proposals: set[bytes] = set()
        self.evidence: list[DuplicateVoteEvidence] = []
        self.waiters: dict[bytes, list[asyncio.Future[dict[str, Any]]]] = {}
        self.peer_heights: dict[str, int] = {}
        self._tick_height = -1
        self._last_sync_ms = 0
        self._stopping = asyncio.Event()
        self._client_server: asyncio.Server | None = None
        self._client_count = 0
        self._pending_new_height: asyncio.TimerHandle | None = None
        self._height_started = time.monotonic()
        self._api_server: Any = None  # a uvicorn.Server while the REST API runs
        self.metrics = self._make_metrics()
        self.anchoring_gauges = AnchoringGauges(self.metrics)  # supervision tier only
        self.anchoring_gauges.start(self.state)
        self.commit_listeners: list[CommitListener] = []  # e.g. the REST API's event stream

    # -----------------------------------------------------------------------------------------
    # Setup

    def _make_network(self) -> PeerNetwork:
        tls_dir = self.home / TLS_DIR
        creds = pki.NodeCredentials(
            pki.cert_from_pem(pki.read_pem(tls_dir / "cert.pem")),
            pki.key_from_pem(pki.read_pem(tls_dir / "key.pem")),
        )
        trust = pki.TrustAnchors.from_pem(
            {o.org_id: o.ca_pem.encode("ascii") for o in self.genesis.orgs if o.ca_pem}
        )
        revoked = self.genesis.params.get("revoked_tls_fingerprints", [])
        revocations = pki.Revocations(fingerprints=frozenset(bytes.fromhex(x) for x in revoked))
        config = NetConfig(
            chain_id=self.chain_id,
            host=self.config.host,
            port=self.config.p2p_port,
            peers=tuple(PeerAddress(p.name, p.host, p.port) for p in self.config.peers),
        )
        return PeerNetwork(config, creds, trust, revocations)

    def _make_metrics(self) -> NodeMetrics:
        m = NodeMetrics(
            chain_id=self.chain_id,
            node=self.config.node_name,
            org=self.config.org_id,
            role=self.config.role,
        )
        # Read when rendered, so the hot path never touches them.
        m.height.set_function(lambda: self.height)
        m.round.set_function(lambda: self.core.round)
        m.mempool_size.set_function(lambda: len(self.mempool))
        m.peers.set_function(lambda: len(self.net.peers()))
        return m

    @property
    def height(self) -> int:
        return self.state.height

    # -----------------------------------------------------------------------------------------
    # Lifecycle

    async def run(self) -> None:
        """Serve until ``stop()``; then close everything cleanly."""
        await self.net.start()
        self.net.set_height(self.height)
        self._client_server = await asyncio.start_server(
            self._serve_client, self.config.host, self.config.client_port, limit=1 << 16
        )
        log.info(
            "%s (%s) up at height %d; p2p %d, clients %d",
            self.config.node_name,
            self.config.role,
            self.height,
            self.net.listen_port,
            self.config.client_port,
        )
        api_task = self._start_api() if self.api_port else None  # imports before consensus runs
        self._start_height(resume=True)
        tasks = [
            asyncio.create_task(self._receive_loop(), name="receive"),
            asyncio.create_task(self._tick_loop(), name="tick"),
        ]
        try:
            await self._stopping.wait()
        finally:
            if api_task is not None:
                await self._stop_api(api_task)
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            if self._client_server is not None:
                self._client_server.close()
                await self._client_server.wait_closed()
            await self.net.close()
            self.store.close()
            log.info("%s stopped at height %d", self.config.node_name, self.height)

    def stop(self) -> None:
        self._stopping.set()

    def _start_api(self) -> asyncio.Task[None] | None:
        """Serve the REST API (``consortia.api``) with uvicorn on this event loop, if it and
        its dependencies are installed; otherwise log why and run without it."""
        try:
            import uvicorn  # noqa: PLC0415 (loaded only when the node serves the API)

            create_app = importlib.import_module("consortia.api.app").create_app
            backend_class = importlib.import_module("consortia.api.backend").NodeBackend
        except (ImportError, AttributeError) as exc:
            log.error(
                "REST API on port %d disabled: %s (it needs consortia.api, fastapi and uvicorn)",
                self.api_port,
                exc,
            )
            return None

        class EmbeddedServer(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Generator[None, None, None]:
                yield  # the node owns SIGINT/SIGTERM and stops the API itself

        try:
            settings_class = importlib.import_module("consortia.api.app").ApiSettings
            index = self.config.lookthrough_index
            app = create_app(
                backend_class(self),
                settings_class(
                    lookthrough_index=(self.home / index) if index else None,
                    supervision_api=self.config.supervision_api,
                    **asdict(self.config.api_limits),  # config.toml [api_limits]
                ),
            )
            server = EmbeddedServer(
                uvicorn.Config(
                    app,
                    host=self.config.host,
                    port=self.api_port,
                    log_level="warning",
                    log_config=None,  # uvicorn's lines go through the node's (text or JSON) logs
                    lifespan="off",
                )
            )
        except Exception:  # a broken API must not take consensus down with it
            log.exception("REST API on port %d disabled: it failed to build", self.api_port)
            return None
        self._api_server = server
        return asyncio.create_task(self._serve_api(server), name="api")

    async def _serve_api(self, server: Any) -> None:
        log.info("REST API on http://%s:%d", self.config.host, self.api_port)
        try:
            await server.serve()
        except SystemExit:
            # uvicorn exits the process when it cannot bind; the node keeps running without it.
            log.error("REST API could not start on %s:%d", self.config.host, self.api_port)
        except Exception:
            log.exception("REST API on port %d failed", self.api_port)

    async def _stop_api(self, task: asyncio.Task[None]) -> None:
        if self._api_server is not None:
            self._api_server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=5.0)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._api_server = None

    def _start_height(self, *, resume: bool = False) -> None:
        height = self.height + 1
        res = None
        if resume and self.guard is not None and self.guard.last is not None:
            last = self.guard.last
            if last.height == height:
                lock = self.guard.lock_at(height)
                if lock is not None:
                    res = Resume(
                        round=last.round,
                        locked_round=lock.round,
                        locked_block_hash=lock.block_hash,
                        locked_block=decode_block(lock.block),
                        polka=tuple(codec.decode_struct(Vote, v) for v in lock.polka),
                    )
                else:
                    res = Resume(round=last.round)
        self._height_started = time.monotonic()
        self._run(NewHeight(height, self.state.validators, self.state.next_validators, res))
        if res is not None and self.guard is not None and self.guard.last is not None:
            # Our votes of this height may never have left before the crash: re-send them, and
            # let the core count them like anyone's.
            for raw in self.guard.last.height_votes:
                self.net.broadcast(frames.Message(MSG_VOTE, {"vote": raw}))
                self._run(VoteReceived(codec.decode_struct(Vote, raw)))

    # -----------------------------------------------------------------------------------------
    # The action loop (same shape as the simulator's shell)

    def _run(self, first: Event) -> None:
        height, round_ = self.height, self.core.round
        queue: deque[Event] = deque([first])
        while queue:
            for action in self.core.handle(queue.popleft()):
                queue.extend(self._perform(action))
        if self.height == height and self.core.round > round_:
            log.info(
                "view change at height %d: round %d -> %d",
                height + 1,
                round_,
                self.core.round,
                extra={"chain": self.chain_id, "height": height + 1, "round": self.core.round},
            )

    def _perform(self, action: Action) -> list[Event]:
        if isinstance(action, ScheduleTimeout):
            event = TimeoutFired(action.kind, action.height, action.round)
            asyncio.get_running_loop().call_later(
                action.duration_ms / 1000, self._run_if_current, event
            )
            return []
        if isinstance(action, CastVote):
            return self._cast_vote(action)
        if isinstance(action, BuildProposal):
            return self._build_proposal(action)
        if isinstance(action, ValidateProposal):
            return self._validate(action)
        if isinstance(action, BroadcastProposal):
            msg = frames.Message(
                MSG_PROPOSAL,
                {
                    "proposal": action.proposal.encode(),
                    "block": action.block.encode(),
                    "pol_votes": [codec.encode_struct(v) for v in action.pol_votes],
                },
            )
            self.net.broadcast(msg)
            if len(self.relayed) < 32:
                self.relayed[action.proposal.signing_bytes()] = msg
            return []
        if isinstance(action, CommitBlock):
            return self._commit(action.block, action.certificate, via="consensus")
        if isinstance(action, RecordEvidence):
            ev = action.evidence
            log.warning(
                "equivocation by %s at height %d round %d: recording evidence",
                ev.validator.hex(),
                ev.vote_a.height,
                ev.vote_a.round,
                extra={"chain": self.chain_id, "height": ev.vote_a.height},
            )
            self._add_evidence(ev)
            self.net.broadcast(frames.Message(MSG_EVIDENCE, {"evidence": ev.encode()}))
        return []

    def _add_evidence(self, ev: DuplicateVoteEvidence) -> None:
        """Pool evidence until a block records it (bounded; old or recorded items age out)."""
        if ev not in self.evidence and len(self.evidence) < MAX_PENDING_EVIDENCE:
            self.evidence.append(ev)

    def _run_if_current(self, event: TimeoutFired) -> None:
        if event.height == self.height + 1 and not self._stopping.is_set():
            self._run(event)

    # -----------------------------------------------------------------------------------------
    # Signing through the double-sign guard

    def _cast_vote(self, a: CastVote) -> list[Event]:
        if self.key is None or self.guard is None or self.address is None:
            return []
        key, address = self.key, self.address
        step = SignStep.PREVOTE if a.vote_type == VoteType.PREVOTE else SignStep.PRECOMMIT
        lock = None
        if a.vote_type == VoteType.PRECOMMIT and a.block_hash and a.block_hash in self.blocks:
            lock = Lock(
                a.height,
                a.round,
                a.block_hash,
                self.blocks[a.block_hash].encode(),
                tuple(codec.encode_struct(v) for v in a.polka),
            )

        def make() -> bytes:
            t = max(self._clock_ms(), a.min_time_ms)
            unsigned = Vote(
                self.chain_id, a.vote_type, a.height, a.round, a.block_hash, t, address, b""
            )
            return codec.encode_struct(sign_vote(self.suite, key, unsigned))

        try:
            raw = self.guard.sign(a.height, a.round, step, a.block_hash, make, lock=lock)
        except DoubleSignError as exc:
            log.error("not voting: %s", exc)
            return []
        self.net.broadcast(frames.Message(MSG_VOTE, {"vote": raw}))
        return [VoteReceived(codec.decode_struct(Vote, raw))]

    def _build_proposal(self, a: BuildProposal) -> list[Event]:
        if self.key is None or self.guard is None or a.height != self.height + 1:
            return []
        key = self.key
        block = a.block if a.block is not None else self._new_block()
        block_hash = block.hash(self.suite)

        def make() -> bytes:
            proposal = sign_proposal(
                self.suite,
                key,
                chain_id=self.chain_id,
                height=a.height,
                round=a.round,
                block_hash=block_hash,
                pol_round=a.pol_round,
            )
            return codec.encode({"proposal": proposal.encode(), "block": block.encode()})

        try:
            raw = self.guard.sign(a.height, a.round, SignStep.PROPOSAL, block_hash, make)
        except DoubleSignError as exc:
            log.error("not proposing: %s", exc)
            return []
        stored = codec.decode(raw)
        return [
            ProposalReceived(decode_proposal(stored["proposal"]), decode_block(stored["block"]))
        ]

    def _new_block(self) -> Block:
        assert self.address is not None
        candidates = self.mempool.reap(
            self.state, max_txs=self.params.max_block_txs, max_bytes=self.params.max_block_bytes
        )
        proposal = propose_block(
            self.state,
            candidates,
            proposer=self.address,
            last_commit=self.last_cert,
            sig_cache=self.sig_cache,
            evidence=self.evidence,
        )
        block_hash = proposal.block.hash(self.suite)
        self.executed[block_hash] = AppliedBlock(proposal.state, proposal.receipts, proposal.writes)
        self.blocks[block_hash] = proposal.block
        return proposal.block

    # -----------------------------------------------------------------------------------------
    # Execution and commit

    def _validate(self, a: ValidateProposal) -> list[Event]:
        if a.height != self.height + 1:
            return []
        self.blocks[a.block_hash] = a.block
        valid = a.block_hash in self.executed
        if not valid:
            try:
                self.executed[a.block_hash] = apply_block_detailed(
                    self.state, a.block, sig_cache=self.sig_cache
                )
                valid = True
            except InvalidBlock as exc:
                log.warning(
                    "invalid proposal at height %d: %s",
                    a.height,
                    exc,
                    extra={"chain": self.chain_id, "height": a.height},
                )
        return [ProposalValidated(a.height, a.block_hash, valid)]

    def _commit(self, block: Block, cert: CommitCertificate, *, via: str) -> list[Event]:
        height = block.header.height
        if height != self.height + 1:
            return []
        block_hash = block.hash(self.suite)
        applied = self.executed.get(block_hash)
        if applied is None:
            applied = apply_block_detailed(self.state, block, sig_cache=self.sig_cache)
        store_block(self.store, self.state, block, cert, applied)
        self.state = applied.state
        self.last_cert = cert
        self.executed, self.blocks, self.relayed = {}, {}, {}
        self._seen_proposals = set()
        committed_hashes = [tx.hash(self.suite) for tx in block.transactions]
        # Evidence ages out once recorded or too old for any next block to include.
        self.evidence = [
            ev
            for ev in self.evidence
            if ev.vote_a.height >= self.height
            and self.state.tree.get(evidence_key(self.suite, ev)) is None
        ]
        self.mempool.update(self.state, committed_hashes)
        self.metrics.committed_blocks.inc(via=via)
        self.metrics.committed_txs.inc(len(committed_hashes))
        self.anchoring_gauges.on_commit(self.state, applied.receipts)
        if via == "consensus":
            self.metrics.commit_latency.observe(time.monotonic() - self._height_started)
        self.net.set_height(self.height)
        self.net.broadcast(frames.Message(MSG_STATUS, {"height": self.height}))
        for tx_hash, receipt in zip(committed_hashes, applied.receipts, strict=True):
            for fut in self.waiters.pop(tx_hash, []):
                if not fut.done():
                    fut.set_result(
                        {
                            "ok": receipt.status == TxStatus.OK,
                            "tx_hash": tx_hash,
                            "height": height,
                            "code": receipt.code,
                            "message": receipt.message,
                        }
                    )
        log.info(
            "committed height %d (%s, %d txs, via %s)",
            height,
            block_hash.hex()[:16],
            len(block.transactions),
            via,
            extra={
                "chain": self.chain_id,
                "height": height,
                "block": block_hash.hex(),
                "txs": len(block.transactions),
                "via": via,
            },
        )
        if log.isEnabledFor(logging.DEBUG):
            for tx_hash, receipt in zip(committed_hashes, applied.receipts, strict=True):
                log.debug(
                    "tx %s committed at height %d: %s",
                    tx_hash.hex()[:16],
                    height,
                    receipt.code or "OK",
                    extra={
                        "chain": self.chain_id,
                        "height": height,
                        "tx": tx_hash.hex(),
                        "code": receipt.code or "OK",
                    },
                )
        self._notify_commit(block, cert, applied.receipts)
        if via == "consensus":
            # Give transactions a moment to gather before the next height starts.
            loop = asyncio.get_running_loop()
            self._pending_new_height = loop.call_later(
                self.params.commit_delay_ms / 1000, self._next_height, height + 1
            )
            return []
        return []

    def _notify_commit(
        self, block: Block, cert: CommitCertificate, receipts: tuple[Receipt, ...]
    ) -> None:
        for listener in list(self.commit_listeners):
            try:
                listener(block, cert, receipts)
            except Exception:
                log.exception(
                    "commit listener %r failed at height %d", listener, block.header.height
                )

    def _next_height(self, height: int) -> None:
        if height == self.height + 1 and not self._stopping.is_set():
            self._start_height()

    # -----------------------------------------------------------------------------------------
    # Network input

    async def _receive_loop(self) -> None:
        while True:
            received = await self.net.receive()
            try:
                self._on_message(received)
            except (codec.CodecError, WireFormatError, KeyError, TypeError, ValueError) as exc:
                # A malformed message from an authenticated peer: drop the message, log who.
                log.warning("bad %s from %s: %s", received.message.type, received.peer, exc)
            except Exception:
                # A bug, not bad input: log it loudly with its traceback, but keep the node
                # serving — a silently dead receive loop would stall consensus unnoticed.
                log.exception("error handling %s from %s", received.message.type, received.peer)

    def _on_message(self, received: Received) -> None:
        msg = received.message
        peer = received.peer.node_name
        body = msg.body
        if msg.type == MSG_VOTE:
            vote = codec.decode_struct(Vote, body["vote"], max_size=4096)
            self._note_height(peer, vote.height)
            if vote.height == self.height + 1 or vote.height == self.height + 2:
                self._run(VoteReceived(vote))
        elif msg.type == MSG_PROPOSAL:
            raw_proposal = body["proposal"]
            if raw_proposal in self._seen_proposals:
                return  # every peer relays the proposal it accepted: decode each block once
            proposal = decode_proposal(raw_proposal)
            self._note_height(peer, proposal.height)
            if proposal.height in (self.height + 1, self.height + 2):
                if len(self._seen_proposals) < MAX_SEEN_PROPOSALS:
                    self._seen_proposals.add(raw_proposal)
                block = decode_block(body["block"])
                pol = tuple(codec.decode_struct(Vote, v, max_size=4096) for v in body["pol_votes"])
                self._run(ProposalReceived(proposal, block, pol))
        elif msg.type == MSG_TX:
            for raw in body["txs"][:MAX_TXS_PER_REQUEST]:
                with contextlib.suppress(MempoolError):
                    self.mempool.add_raw(raw, self.state)
        elif msg.type == MSG_EVIDENCE:
            self._add_evidence(decode_evidence(body["evidence"]))
        elif msg.type == MSG_STATUS:
            self._note_height(peer, int(body["height"]) + 1)
        elif msg.type == MSG_SYNC_REQUEST:
            self._serve_sync(peer, int(body["from_height"]))
        elif msg.type == MSG_SYNC_BLOCKS:
            self._apply_synced(body["blocks"])
        else:
            log.debug("ignoring message type %s from %s", msg.type, peer)

    def _note_height(self, peer: str, working_height: int) -> None:
        """``peer`` works on ``working_height``: it has committed ``working_height - 1``."""
        committed = working_height - 1
        if committed > self.peer_heights.get(peer, 0):
            self.peer_heights[peer] = committed
        if committed > self.height + 1:
            self._request_sync(peer)

    def _request_sync(self, peer: str) -> None:
        now = self._clock_ms()
        if now - self._last_sync_ms < 500:
            return
        self._last_sync_ms = now
        self.net.send(peer, frames.Message(MSG_SYNC_REQUEST, {"from_height": self.height + 1}))

    def _serve_sync(self, peer: str, from_height: int) -> None:
        blocks: list[list[bytes]] = []
        size = 0
        head = self.height
        h = max(1, from_height)
        while h <= head and len(blocks) < self.params.sync_batch:
            raw_block, raw_cert = self.store.block(h), self.store.certificate(h)
            if raw_block is None or raw_cert is None:
                break
            size += len(raw_block) + len(raw_cert)
            if blocks and size > self.params.max_sync_bytes:
                break
            blocks.append([raw_block, raw_cert])
            h += 1
        if blocks:
            self.net.send(peer, frames.Message(MSG_SYNC_BLOCKS, {"blocks": blocks}))

    def _apply_synced(self, blocks: list[list[bytes]]) -> None:
        """Each block must follow our chain, carry a certificate by this height's validators
        (``verify_commit``) and pass ``apply_block``; the first that does not ends the batch."""
        advanced = False
        for raw_block, raw_cert in blocks:
            block = decode_block(raw_block)
            cert = decode_certificate(raw_cert)
            height = block.header.height
            if height <= self.height:
                continue
            if height != self.height + 1:
                break
            try:
                verify_commit(
                    self.suite,
                    self.state.validators,
                    cert,
                    chain_id=self.chain_id,
                    height=height,
                    block_hash=block.hash(self.suite),
                )
                self.executed[cert.block_hash] = apply_block_detailed(
                    self.state, block, sig_cache=self.sig_cache
                )
            except (CertificateError, InvalidBlock) as exc:
                log.warning(
                    "sync: block %d rejected: %s",
                    height,
                    exc,
                    extra={"chain": self.chain_id, "height": height},
                )
                break
            self._commit(block, cert, via="sync")
            advanced = True
        if advanced:
            if self._pending_new_height is not None:
                self._pending_new_height.cancel()
            self._start_height()
            if any(h > self.height for h in self.peer_heights.values()):
                best = max(self.peer_heights, key=lambda p: self.peer_heights[p])
                self._last_sync_ms = 0
                self._request_sync(best)

    async def _tick_loop(self) -> None:
        """Re-gossip when a height stalls; announce our height; catch up with a peer ahead."""
        while True:
            await asyncio.sleep(self.params.tick_ms / 1000)
            stalled = self._tick_height == self.height
            self._tick_height = self.height
            self.net.broadcast(frames.Message(MSG_STATUS, {"height": self.height}))
            if stalled:
                for vote in self.core.gossip_votes():
                    self.net.broadcast(
                        frames.Message(MSG_VOTE, {"vote": codec.encode_struct(vote)})
                    )
                for msg in list(self.relayed.values())[-4:]:
                    self.net.broadcast(msg)
            ahead = [p for p, h in self.peer_heights.items() if h > self.height]
            if ahead:
                self._request_sync(max(ahead, key=lambda p: self.peer_heights[p]))

    # -----------------------------------------------------------------------------------------
    # Clients

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self._client_count >= self.params.max_client_connections:
            writer.close()
            return
        self._client_count += 1
        try:
            while True:
                try:
                    got = await frames.read_message(reader)
                except frames.FrameError as exc:
                    writer.write(
                        frames.encode_frame({"ok": False, "code": "BAD_FRAME", "message": str(exc)})
                    )
                    break
                if got is None:
                    break
                reply = await self._client_request(got[0])
                writer.write(frames.encode_frame(reply))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._client_count -= 1
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _client_request(self, msg: frames.Message) -> dict[str, Any]:
        body = msg.body if isinstance(msg.body, dict) else {}
        if msg.type == "status":
            return self.status()
        if msg.type == "tx.submit":
            raw = body.get("tx")
            if not isinstance(raw, bytes):
                return {"ok": False, "code": "BAD_REQUEST", "message": "tx must be bytes"}
            results = await self._submit([raw], wait=bool(body.get("wait")))
            return results[0]
        if msg.type == "tx.submit_many":
            raws = body.get("txs")
            if (
                not isinstance(raws, list)
                or not 1 <= len(raws) <= MAX_TXS_PER_REQUEST
                or not all(isinstance(r, bytes) for r in raws)
            ):
                return {
                    "ok": False,
                    "code": "BAD_REQUEST",
                    "message": f"txs must be a list of 1..{MAX_TXS_PER_REQUEST} byte strings",
                }
            return {"ok": True, "results": await self._submit(raws, wait=bool(body.get("wait")))}
        if msg.type == "block.get":
            height = body.get("height")
            if not isinstance(height, int) or not 1 <= height <= self.height:
                return {"ok": False, "code": "NOT_FOUND", "message": f"no block {height!r}"}
            return {
                "ok": True,
                "block": self.store.block(height),
                "certificate": self.store.certificate(height),
                "receipts": self.store.receipts(height),
            }
        if msg.type == "account.get":
            return self._account_reply(body.get("address"))
        if msg.type == "metrics":
            return {"ok": True, "text": self.metrics.render()}
        if msg.type == "state.get":
            return self._state_reply(body.get("key"))
        return {
            "ok": False,
            "code": "UNKNOWN_REQUEST",
            "message": f"unknown request {msg.type!r}",
        }

    def _state_reply(self, key: object) -> dict[str, Any]:
        """One state value as of the last committed block, with its membership (or absence)
        proof against that block's state root, so the caller need not trust this node."""
        if not isinstance(key, bytes) or not 1 <= len(key) <= MAX_STATE_KEY:
            return {
                "ok": False,
                "code": "BAD_REQUEST",
                "message": f"key must be 1..{MAX_STATE_KEY} bytes",
            }
        state = self.state
        return {
            "ok": True,
            "height": state.height,
            "state_root": state.state_root,
            "value": state.tree.get(key),
            "proof": state.tree.prove(key).to_bytes(),
        }

    def _account_reply(self, address: object) -> dict[str, Any]:
        """A registry account as of the last committed block (its next nonce, roles, frozen)."""
        if not isinstance(address, bytes):
            return {"ok": False, "code": "BAD_REQUEST", "message": "address must be bytes"}
        raw = self.state.tree.get(account_key(address))
        if raw is None:
            return {"ok": False, "code": "NOT_FOUND", "message": f"no account {address.hex()}"}
        acct = decode_record(Account, raw)
        return {
            "ok": True,
            "address": acct.address,
            "org_id": acct.org_id,
            "roles": list(acct.roles),
            "nonce": acct.nonce,
            "frozen": acct.frozen,
            "height": self.height,
        }

    async def _submit(self, raws: list[bytes], *, wait: bool) -> list[dict[str, Any]]:
        """Admit each transaction (specific error per bad one), gossip the admitted ones, and
        optionally wait until each is committed (its receipt's status and code)."""
        replies: list[dict[str, Any]] = []
        admitted: list[bytes] = []
        futures: dict[int, asyncio.Future[dict[str, Any]]] = {}
        loop = asyncio.get_running_loop()
        self.metrics.tx_submitted.inc(len(raws))
        for i, raw in enumerate(raws):
            try:
                tx_hash = self.mempool.add_raw(raw, self.state)
            except MempoolError as exc:
                self.metrics.tx_rejected.inc(code=exc.code)
                # DEBUG, as admissions: a client can send any number (the metrics count them).
                log.debug(
                    "tx rejected: %s: %s",
                    exc.code,
                    exc,
                    extra={"chain": self.chain_id, "height": self.height, "code": exc.code},
                )
                replies.append({"ok": False, "code": exc.code, "message": str(exc)})
                continue
            admitted.append(raw)
            replies.append({"ok": True, "tx_hash": tx_hash})
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "tx %s admitted",
                    tx_hash.hex()[:16],
                    extra={"chain": self.chain_id, "height": self.height, "tx": tx_hash.hex()},
                )
            if wait:
                fut: asyncio.Future[dict[str, Any]] = loop.create_future()
                self.waiters.setdefault(tx_hash, []).append(fut)
                futures[i] = fut
        if admitted:
            self.net.broadcast(frames.Message(MSG_TX, {"txs": admitted}))
        if futures:
            done, _ = await asyncio.wait(futures.values(), timeout=self.params.wait_timeout_s)
            for i, fut in futures.items():
                if fut in done:
                    replies[i] = fut.result()
                else:
                    fut.cancel()
                    waiting = self.waiters.get(replies[i]["tx_hash"], [])
                    if fut in waiting:
                        waiting.remove(fut)
                    if not waiting:
                        self.waiters.pop(replies[i]["tx_hash"], None)
                    replies[i] = {
                        "ok": False,
                        "code": "NOT_COMMITTED_IN_TIME",
                        "message": "not committed in time",
                        "tx_hash": replies[i]["tx_hash"],
                    }
        return replies

    def status(self) -> dict[str, Any]:
        return {
            "ok": True,
            "node": self.config.node_name,
            "org": self.config.org_id,
            "role": self.config.role,
            "height": self.height,
            "last_block_hash": self.state.last_block_hash.hex(),
            "state_root": self.state.state_root.hex(),
            "peers": sorted(p.identity.node_name for p in self.net.peers()),
            "mempool": len(self.mempool),
            "evidence": len(self.evidence),
            "signature_cache": {"hits": self.sig_cache.hits, "misses": self.sig_cache.misses},
            "validators": [v.address.hex() for v in self.state.validators.validators],
            "api": f"http://{self.config.host}:{self.api_port}" if self.api_port else None,
        }
