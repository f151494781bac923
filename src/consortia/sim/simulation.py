"""The seeded deterministic simulation: n validators on a simulated network, checked as it runs.

Each validator is a ``SimNode`` (real ``ConsensusCore``, real execution, real signatures) on one
virtual clock. Invariants are checked at every step that could break them:

- safety: no two honest nodes commit different blocks at one height;
- every committed block (by consensus or block sync) has a certificate that passes
  ``verify_commit`` against the validators of its height;
- evidence is valid and accuses only byzantine validators (honest ones never equivocate, even
  across crashes: the last-signed record);
- liveness: after the fault phase ends (partitions healed, crashed nodes restarted, no drops) and
  with byzantine power below a third, every honest node reaches the target height within a
  bounded virtual time.

All randomness comes from ``random.Random(seed)``: the same seed replays the same run, message
for message. A failure message names the seed and the command that reproduces it.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from consortia.consensus import (
    ConsensusParams,
    DuplicateVoteEvidence,
    InvalidEvidenceError,
    TimeoutFired,
    verify_duplicate_vote_evidence,
)
from consortia.crypto import get_suite
from consortia.execution.consortium import DEFAULT_ACCOUNTS, DEFAULT_GENESIS_TIME_MS, DEFAULT_ORGS
from consortia.execution.genesis import Genesis, GenesisAccount, GenesisValidator, genesis_state
from consortia.ledger.types import (
    Block,
    CertificateError,
    CommitCertificate,
    Transaction,
    ValidatorSet,
    sign_transaction,
    verify_commit,
)
from consortia.sim.network import (
    CrashNode,
    Deliver,
    Heal,
    Message,
    Network,
    RestartNode,
    SetPartition,
    SubmitTx,
    Tick,
    Timer,
)
from consortia.sim.node import GOSSIP_INTERVAL_MS, SimNode
from consortia.sim.scenario import Role, Scenario, random_scenario

CHAIN_ID = "sim-chain"

# Short timeouts keep virtual runs short; latencies are up to ~170 ms, so round 0 usually works.
SIM_PARAMS = ConsensusParams(
    timeout_propose_ms=400,
    timeout_propose_delta_ms=100,
    timeout_prevote_ms=200,
    timeout_prevote_delta_ms=100,
    timeout_precommit_ms=200,
    timeout_precommit_delta_ms=100,
    max_rounds_ahead=64,
)
HEIGHTS_AFTER_HEAL = 1  # every honest node must commit at least this many blocks past the heal
LIVENESS_BASE_MS = 30_000
LIVENESS_PER_HEIGHT_MS = 10_000
MAX_STEPS = 400_000


def reproduce_command(seed: int) -> str:
    return f"python -m consortia.sim --seeds {seed}:{seed + 1} --verbose"


class SimulationFailure(AssertionError):
    """An invariant broke. The message names the seed and how to replay it."""


@dataclass(frozen=True)
class Commit:
    time_ms: int
    node: int
    height: int
    block_hash: str
    round: int
    via: str  # "consensus" or "sync"


@dataclass(frozen=True)
class SimResult:
    seed: int
    scenario: Scenario
    failure: str | None
    heights: tuple[int, ...]  # final committed height per node
    commits: tuple[Commit, ...]
    virtual_ms: int
    steps: int
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def digest(self) -> str:
        """A fingerprint of the whole commit log (who committed what, when, how)."""
        h = hashlib.sha256()
        for c in self.commits:
            h.update(f"{c.time_ms}|{c.node}|{c.height}|{c.block_hash}|{c.round}|{c.via};".encode())
        return h.hexdigest()


class Simulation:
    """One seeded run. ``Simulation(seed)`` draws its scenario from the seed; pass ``scenario``
    to run a hand-written one (the seed then drives only keys, latencies and faults)."""

    def __init__(
        self,
        seed: int,
        scenario: Scenario | None = None,
        *,
        params: ConsensusParams = SIM_PARAMS,
        trace: bool = False,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.scenario = scenario if scenario is not None else random_scenario(self.rng)
        self.params = params
        self.trace: list[str] | None = [] if trace else None
        sc = self.scenario
        self.suite = get_suite("intl")
        self.validator_keys = [
            self.suite.keypair_from_secret(self.rng.randbytes(32)) for _ in range(sc.n_validators)
        ]
        self.account_keys = {
            spec.name: self.suite.keypair_from_secret(self.rng.randbytes(32))
            for spec in DEFAULT_ACCOUNTS
        }
        genesis = Genesis(
            chain_id=CHAIN_ID,
            suite="intl",
            tier="business",
            genesis_time_ms=DEFAULT_GENESIS_TIME_MS,
            orgs=DEFAULT_ORGS,
            accounts=tuple(
                GenesisAccount(s.name, self.account_keys[s.name].public_key, s.org_id, s.roles)
                for s in DEFAULT_ACCOUNTS
            ),
            validators=tuple(
                GenesisValidator(f"v{i}", k.public_key, p)
                for i, (k, p) in enumerate(zip(self.validator_keys, sc.powers, strict=True))
            ),
            params={},
        )
        self.genesis = genesis_state(genesis)
        # Observers: keys outside the validator set, so their cores never vote or propose.
        observer_keys = [
            self.suite.keypair_from_secret(self.rng.randbytes(32)) for _ in range(sc.observers)
        ]
        total = sc.n_validators + sc.observers
        self.net = Network(
            self.rng,
            total,
            latency_ms=sc.latency_ms,
            drop_rate=sc.drop_rate,
            duplicate_rate=sc.duplicate_rate,
        )
        self.skew_ms = [self.rng.randint(0, 20) for _ in range(total)]
        self.nodes = [
            SimNode(
                i,
                k,
                sc.roles[i] if i < sc.n_validators else Role.HONEST,
                genesis=self.genesis,
                world=self,
                peers=total,
                params=params,
                rng=self.rng,
            )
            for i, k in enumerate(self.validator_keys + observer_keys)
        ]
        self.by_address = {n.address: n for n in self.nodes}
        self.transactions = self._transactions(sc.transactions)
        self.decided: dict[int, tuple[bytes, int]] = {}  # height -> (block hash, first node)
        self.commits: list[Commit] = []
        self.evidence_seen: set[bytes] = set()
        self.evidence_reporters: dict[bytes, set[int]] = {}  # evidence hash -> detecting nodes
        self.healed = False
        self.target = sc.heights
        self.deadline_ms = 0
        self.max_round = 0
        self.steps = 0

    # -----------------------------------------------------------------------------------------
    # Setup

    def _transactions(self, count: int) -> list[Transaction]:
        """Real signed transactions from two senders (registering firms and investors)."""
        txs: list[Transaction] = []
        nonces = {"exchange-admin": 0, "broker-a-admin": 0}
        for i in range(count):
            who = "exchange-admin" if i % 2 == 0 else "broker-a-admin"
            if who == "exchange-admin":
                method = "register_org"
                args: dict[str, object] = {
                    "org_id": f"firm-{i}",
                    "name": f"Firm {i}",
                    "kind": "broker",
                }
            else:
                investor = self.suite.keypair_from_secret(self.rng.randbytes(32))
                method = "register_account"
                args = {
                    "public_key": investor.public_key,
                    "org_id": "broker-a",
                    "roles": ["investor"],
                }
            txs.append(
                sign_transaction(
                    self.suite,
                    self.account_keys[who],
                    chain_id=CHAIN_ID,
                    nonce=nonces[who],
                    module="registry",
                    method=method,
                    args=args,
                )
            )
            nonces[who] += 1
        return txs

    def _schedule_faults(self) -> None:
        sc = self.scenario
        net = self.net
        net.schedule(sc.heal_at_ms, Heal())
        for p in sc.partitions:
            net.schedule(p.start_ms, SetPartition(p.groups))
            net.schedule(p.end_ms, SetPartition(()))
        for c in sc.crashes:
            net.schedule(c.at_ms, CrashNode(c.node))
            net.schedule(c.restart_ms, RestartNode(c.node))
        horizon = max(sc.heal_at_ms, 1500)
        for i in range(len(self.transactions)):
            net.schedule(self.rng.randint(0, horizon), SubmitTx(i))

    # -----------------------------------------------------------------------------------------
    # World: what nodes call

    def now_ms(self, node: int) -> int:
        return DEFAULT_GENESIS_TIME_MS + self.net.now_ms + self.skew_ms[node]

    def send(self, src: int, dst: int, msg: Message) -> None:
        self.net.send(src, dst, msg)

    def broadcast(self, src: int, msg: Message) -> None:
        for dst in range(len(self.nodes)):
            if dst != src:
                self.net.send(src, dst, msg)

    def set_timer(self, node: int, delay_ms: int, event: TimeoutFired) -> None:
        incarnation = self.nodes[node].incarnation
        self.net.schedule(self.net.now_ms + delay_ms, Timer(node, incarnation, event))

    def committed(
        self, node: int, block: Block, cert: CommitCertificate, validators: ValidatorSet, via: str
    ) -> None:
        height = block.header.height
        block_hash = block.hash(self.suite)
        try:
            verify_commit(
                self.suite,
                validators,
                cert,
                chain_id=CHAIN_ID,
                height=height,
                block_hash=block_hash,
            )
        except CertificateError as exc:
            self.fail(f"node {node} committed height {height} with a bad certificate: {exc}")
        self.max_round = max(self.max_round, cert.round)
        self.commits.append(
            Commit(self.net.now_ms, node, height, block_hash.hex(), cert.round, via)
        )
        self._log(
            f"node {node} commits h={height} r={cert.round} {block_hash.hex()[:12]} via {via}"
        )
        if not self.nodes[node].honest:
            return
        first = self.decided.get(height)
        if first is None:
            self.decided[height] = (block_hash, node)
        elif first[0] != block_hash:
            self.fail(
                f"SAFETY: honest nodes {first[1]} and {node} committed different blocks at "
                f"height {height}: {first[0].hex()[:16]} vs {block_hash.hex()[:16]}"
            )

    def evidence(self, node: int, evidence: DuplicateVoteEvidence) -> None:
        try:
            verify_duplicate_vote_evidence(self.suite, self.genesis.validators, evidence)
        except InvalidEvidenceError as exc:
            self.fail(f"node {node} reported invalid evidence: {exc}")
        accused = self.by_address[evidence.validator]
        if accused.honest:
            self.fail(f"honest node {accused.index} equivocated: {evidence}")
        self.evidence_seen.add(evidence.hash(self.suite))
        self.evidence_reporters.setdefault(evidence.hash(self.suite), set()).add(node)

    def fail(self, message: str) -> None:
        raise SimulationFailure(
            f"seed {self.seed} at t={self.net.now_ms}ms: {message}\n"
            f"  scenario: {self.scenario.describe()}\n"
            f"  reproduce: {reproduce_command(self.seed)}"
        )

    def _log(self, line: str) -> None:
        if self.trace is not None:
            self.trace.append(f"{self.net.now_ms:>7} {line}")

    # -----------------------------------------------------------------------------------------
    # The loop

    def run(self) -> SimResult:
        failure = None
        try:
            self._run()
            self._final_checks()
        except SimulationFailure as exc:
            failure = str(exc)
        return SimResult(
            seed=self.seed,
            scenario=self.scenario,
            failure=failure,
            heights=tuple(n.height for n in self.nodes),
            commits=tuple(self.commits),
            virtual_ms=self.net.now_ms,
            steps=self.steps,
            stats={
                "messages_sent": self.net.sent,
                "messages_dropped": self.net.dropped,
                "messages_duplicated": self.net.duplicated,
                "messages_delivered": self.net.delivered,
                "evidence": len(self.evidence_seen),
                "syncs": sum(n.syncs for n in self.nodes),
                "max_round": self.max_round,
                "sync_commits": sum(1 for c in self.commits if c.via == "sync"),
                "evidence_on_chain": max(
                    (sum(len(b.evidence) for b, _ in n.chain) for n in self.nodes), default=0
                ),
            },
        )

    def _run(self) -> None:
        net = self.net
        self._schedule_faults()
        for node in self.nodes:
            node.boot()
            self._schedule_tick(node.index, self.rng.randint(1, GOSSIP_INTERVAL_MS))
        honest = [n for n in self.nodes if n.honest]
        while True:
            item = net.pop()
            if item is None:
                self.fail("the event queue ran dry (no timers left): a node stopped for good")
                return
            self.steps += 1
            self._dispatch(item)
            if self.healed and min(n.height for n in honest) >= self.target:
                return
            if self.healed and net.now_ms > self.deadline_ms:
                heights = [n.height for n in self.nodes]
                self.fail(
                    f"LIVENESS: honest nodes did not all reach height {self.target} within "
                    f"{self.deadline_ms - self.scenario.heal_at_ms}ms after the heal "
                    f"(heights {heights})"
                )
            if self.steps > MAX_STEPS:
                self.fail(f"no end after {MAX_STEPS} steps")

    def _schedule_tick(self, node: int, delay_ms: int) -> None:
        incarnation = self.nodes[node].incarnation
        self.net.schedule(self.net.now_ms + delay_ms, Tick(node, incarnation))

    def _dispatch(self, item: object) -> None:
        net = self.net
        if isinstance(item, Deliver):
            if net.deliverable(item):
                self.nodes[item.dst].receive(item.src, item.msg)
        elif isinstance(item, Timer):
            node = self.nodes[item.node]
            if node.up and node.incarnation == item.incarnation:
                node.on_timer(item.event)
        elif isinstance(item, Tick):
            node = self.nodes[item.node]
            if node.up and node.incarnation == item.incarnation:
                node.on_tick()
                self._schedule_tick(item.node, GOSSIP_INTERVAL_MS)
        elif isinstance(item, SubmitTx):
            tx = self.transactions[item.index]
            for node in self.nodes:
                node.submit(tx)
        elif isinstance(item, CrashNode):
            self._log(f"node {item.node} crashes at height {self.nodes[item.node].height}")
            self.nodes[item.node].crash()
            net.up[item.node] = False
        elif isinstance(item, RestartNode):
            node = self.nodes[item.node]
            self._log(f"node {item.node} restarts at height {node.height}")
            net.up[item.node] = True
            node.up = True
            node.boot()
            self._schedule_tick(item.node, GOSSIP_INTERVAL_MS)
        elif isinstance(item, SetPartition):
            self._log(f"partition {item.groups}")
            net.set_partition(item.groups)
        elif isinstance(item, Heal):
            net.heal()
            self.healed = True
            best = max((n.height for n in self.nodes if n.honest), default=0)
            self.target = max(self.scenario.heights, best + HEIGHTS_AFTER_HEAL)
            self.deadline_ms = (
                net.now_ms + LIVENESS_BASE_MS + LIVENESS_PER_HEIGHT_MS * (self.target - best)
            )
            self._log(f"heal: target height {self.target}")

    def _final_checks(self) -> None:
        honest = [n for n in self.nodes if n.honest]
        for a in honest:
            for b in honest:
                common = min(a.height, b.height)
                for h in range(common):
                    if a.chain[h][0].hash(self.suite) != b.chain[h][0].hash(self.suite):
                        self.fail(f"SAFETY: nodes {a.index} and {b.index} differ at height {h + 1}")


def run_seed(seed: int, *, trace: bool = False) -> SimResult:
    """Run the scenario the seed draws; never raises for an invariant (see ``failure``)."""
    return Simulation(seed, trace=trace).run()
