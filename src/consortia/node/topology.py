"""The two-tier topology on one machine: a supervision chain, business chains and their relayers.

Layout of a two-tier home (each chain directory is a network home from ``init_network``)::

    DIR/topology.json        which directory holds the supervision chain and which the business
    DIR/supervision/         the supervision chain (run by the regulator and the association)
    DIR/business-1/          a business chain (the default consortium)
    DIR/business-N/ ...
    DIR/relay-<chain>.log    each relayer's output
    DIR/supervision/lookthrough.sqlite   the regulator's look-through index of every business
                             chain, kept by ``consortia supervise follow`` (``spawn_follower``)
                             and served by the supervision nodes' APIs (``lookthrough_index``)
    DIR/lookthrough.log      the follower's output

Ports. Chain k (0: the supervision chain, 1..9: the business chains) has base port
B + k * PORTS_PER_CHAIN; its nodes' peer and client ports lie in B .. B + 999 and their API ports
in B + API_PORT_OFFSET .. B + 1999 (``network_home``). The relayer of business chain k serves its
Prometheus metrics on B + RELAY_METRICS_OFFSET + k (``relay_metrics_port``: B + 2001 .. B + 2009,
above every node port of the default layout); a port some node of the topology uses (a custom
API offset) or past 65535 gives that relayer no metrics server rather than a clash.

``bootstrap`` makes the tiers trust each other, once, through signed transactions: the regulator
registers every business chain (its genesis hash and validator set) with the supervision chain's
``anchoring`` light client, and on each business chain registers the supervision chain with the
``supervision`` module. It reads state first, so running it again changes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from consortia import codec
from consortia.crypto import KeyPair, decrypt_key_file
from consortia.execution.consortium import (
    SUPERVISION_ACCOUNTS,
    SUPERVISION_ORGS,
    SUPERVISION_VALIDATORS,
    AccountSpec,
)
from consortia.execution.genesis import Genesis
from consortia.modules import anchoring, supervision
from consortia.node.home import key_password
from consortia.node.local import ACCOUNTS_DIR, NodeError, load_genesis
from consortia.node.network_home import (
    API_PORT_OFFSET,
    DEFAULT_BASE_PORT,
    MAX_PORT,
    NodeConfig,
    init_network,
)
from consortia.node.operations import Operator
from consortia.node.supervisor import network_status, node_homes

TOPOLOGY_FILE = "topology.json"
SUPERVISION_DIR = "supervision"
SUPERVISION_CHAIN_ID = "supervision"
PORTS_PER_CHAIN = 100
LOOKTHROUGH_FILE = "lookthrough.sqlite"  # in the supervision chain's directory
RELAY_METRICS_OFFSET = 2 * API_PORT_OFFSET  # above the API ports of all ten chains


@dataclass(frozen=True)
class Topology:
    home: Path
    supervision: str  # directory (and chain id) of the supervision chain
    business: tuple[str, ...]  # directories (and chain ids) of the business chains

    def chain_home(self, name: str) -> Path:
        return self.home / name

    def to_json(self) -> str:
        return (
            json.dumps({"supervision": self.supervision, "business": list(self.business)}, indent=2)
            + "\n"
        )

    @classmethod
    def load(cls, home: Path) -> Topology:
        path = home / TOPOLOGY_FILE
        try:
            raw = json.loads(path.read_text())
            return cls(home, str(raw["supervision"]), tuple(str(b) for b in raw["business"]))
        except FileNotFoundError as exc:
            raise NodeError(f"{path} not found: run `consortia init --two-tier`") from exc
        except (ValueError, TypeError, KeyError) as exc:
            raise NodeError(f"{path} is malformed: {exc}") from exc


def supervision_relayer(business: str) -> str:
    """The supervision-chain account of ``business``'s relayer: one per business chain, since
    relayers sharing one account race for its nonces (NONCE_TAKEN) and starve each other."""
    return f"relayer-{business}"


def is_two_tier(home: Path) -> bool:
    return (home / TOPOLOGY_FILE).is_file()


def init_two_tier(
    home: Path,
    *,
    business_chains: int = 1,
    validators: int = 4,
    observers: int = 1,
    suite_name: str = "intl",
    base_port: int = DEFAULT_BASE_PORT,
    password: str | None = None,
    scrypt_n: int = 1 << 15,
    api_port_offset: int | None = API_PORT_OFFSET,
) -> Topology:
    """Lay out a supervision chain and ``business_chains`` business chains under ``home``
    (each node's REST API on ``api_port_offset`` above its chain's base port; None: no API)."""
    if not 1 <= business_chains <= 9:
        raise NodeError("between 1 and 9 business chains")
    if (home / TOPOLOGY_FILE).exists():
        raise NodeError(f"{home / TOPOLOGY_FILE} already exists; choose another --home")
    password = password if password is not None else key_password()
    names = tuple(f"business-{n}" for n in range(1, business_chains + 1))
    relayers = tuple(AccountSpec(supervision_relayer(n), "csrc", ("relayer",)) for n in names)
    init_network(
        home / SUPERVISION_DIR,
        validators=validators,
        observers=observers,
        suite_name=suite_name,
        chain_id=SUPERVISION_CHAIN_ID,
        base_port=base_port,
        password=password,
        scrypt_n=scrypt_n,
        api_port_offset=api_port_offset,
        tier="supervision",
        orgs=SUPERVISION_ORGS,
        accounts=(*SUPERVISION_ACCOUNTS, *relayers),
        validator_orgs=SUPERVISION_VALIDATORS,
        observer_org="csrc",
    )
    for n, name in enumerate(names, start=1):
        init_network(
            home / name,
            validators=validators,
            observers=observers,
            suite_name=suite_name,
            chain_id=name,
            base_port=base_port + n * PORTS_PER_CHAIN,
            password=password,
            scrypt_n=scrypt_n,
            api_port_offset=api_port_offset,
        )
    topology = Topology(home, SUPERVISION_DIR, names)
    (home / TOPOLOGY_FILE).write_text(topology.to_json())
    configure_lookthrough(topology)
    configure_evidence(topology)
    return topology


def account_key(chain_home: Path, name: str, password: str | None = None) -> KeyPair:
    path = chain_home / ACCOUNTS_DIR / f"{name}.key"
    try:
        return decrypt_key_file(path.read_bytes(), password or key_password())
    except FileNotFoundError as exc:
        raise NodeError(f"no key file {path}") from exc


def entry_node(chain_home: Path) -> Path:
    """The node clients of a chain talk to (its first node)."""
    return node_homes(chain_home)[0]


def observer_node(chain_home: Path) -> Path:
    """The regulator's observer of a chain if it has one, else its first node."""
    homes = node_homes(chain_home)
    return next((h for h in homes if h.name.startswith("observer-")), homes[0])


def _trust_args(g: Genesis) -> dict[str, object]:
    return {
        "chain_id": g.chain_id,
        "suite": g.suite,
        "genesis_hash": g.hash(),
        "genesis_time_ms": g.genesis_time_ms,
        "validators": codec.fields_to_cbor(g.validator_set()),
    }


def bootstrap(topology: Topology, *, password: str | None = None) -> list[str]:
    """Make the tiers trust each other (idempotent); returns what it did, for the log."""
    done: list[str] = []
    sup_home = topology.chain_home(topology.supervision)
    sup_genesis = load_genesis(sup_home)
    regulator = Operator.from_node_home(
        account_key(sup_home, "regulator", password), entry_node(sup_home)
    )
    for name in topology.business:
        biz_home = topology.chain_home(name)
        biz_genesis = load_genesis(biz_home)
        if regulator.state_value(anchoring.chain_key(biz_genesis.chain_id)) is None:
            regulator.call("anchoring", "register_chain", _trust_args(biz_genesis))
            done.append(f"supervision chain now anchors {biz_genesis.chain_id}")
        local = Operator.from_node_home(
            account_key(biz_home, "regulator", password), entry_node(biz_home)
        )
        if local.state_value(supervision.CLIENT_KEY) is None:
            local.call("supervision", "trust_supervision", _trust_args(sup_genesis))
            done.append(f"{biz_genesis.chain_id} now follows the supervision chain")
    return done


def relay_metrics_port(topology: Topology, business: str) -> int:
    """The metrics port of ``business``'s relayer (see the module docstring); 0: none."""
    sup = [NodeConfig.load(h) for h in node_homes(topology.chain_home(topology.supervision))]
    biz = [
        NodeConfig.load(h)
        for name in topology.business
        for h in node_homes(topology.chain_home(name))
    ]
    base = min(c.p2p_port for c in sup)  # the supervision chain's first node's: B
    port = base + RELAY_METRICS_OFFSET + 1 + topology.business.index(business)
    taken = {p for c in (*sup, *biz) for p in (c.p2p_port, c.client_port, c.api_port)}
    return 0 if port > MAX_PORT or port in taken else port


def relay_metrics_url(topology: Topology, business: str) -> str | None:
    port = relay_metrics_port(topology, business)
    return f"http://127.0.0.1:{port}/metrics" if port else None


def spawn_relay(
    topology: Topology, business: str, *, password: str | None = None, interval_ms: int = 300
) -> subprocess.Popen[bytes]:
    """Start ``consortia relay`` between ``business`` and the supervision chain, output appended
    to ``DIR/relay-<business>.log``, serving its metrics on ``relay_metrics_port``."""
    biz_home = topology.chain_home(business)
    sup_home = topology.chain_home(topology.supervision)
    sup_key = sup_home / ACCOUNTS_DIR / f"{supervision_relayer(business)}.key"
    if not sup_key.is_file():  # a home laid out before relayers had an account each
        sup_key = sup_home / ACCOUNTS_DIR / "relayer.key"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if password is not None:
        env["CONSORTIA_KEY_PASSWORD"] = password
    with open(topology.home / f"relay-{business}.log", "ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "consortia",
                "relay",
                "--business",
                str(observer_node(biz_home)),
                "--supervision",
                str(observer_node(sup_home)),
                "--business-key",
                str(biz_home / ACCOUNTS_DIR / "relayer.key"),
                "--supervision-key",
                str(sup_key),
                "--interval-ms",
                str(interval_ms),
                "--metrics-port",
                str(relay_metrics_port(topology, business)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )


def lookthrough_path(topology: Topology) -> Path:
    """The look-through index of a two-tier home (written by its follower)."""
    return topology.chain_home(topology.supervision) / LOOKTHROUGH_FILE


def configure_lookthrough(topology: Topology) -> list[Path]:
    """Point every supervision node's ``lookthrough_index`` at the topology's index (relative to
    the node home), leaving a node that already names one alone; returns the nodes changed.
    Idempotent: ``consortia up`` runs it for homes laid out before the follower existed."""
    index = lookthrough_path(topology)
    changed = []
    for node_home in node_homes(topology.chain_home(topology.supervision)):
        config = NodeConfig.load(node_home)
        if not config.lookthrough_index:
            relative = os.path.relpath(index, node_home)
            replace(config, lookthrough_index=relative).save(node_home)
            changed.append(node_home)
    return changed


def configure_evidence(topology: Topology) -> list[Path]:
    """Point every business node that serves an API (and names no supervision API yet) at a
    supervision node's API, where its ``/v1/evidence/...`` fetch the anchor half of bundles;
    returns the nodes changed. Idempotent; does nothing when the supervision nodes serve no API."""
    sup_apis = [
        f"http://{c.host}:{c.api_port}"
        for c in map(NodeConfig.load, node_homes(topology.chain_home(topology.supervision)))
        if c.api_port
    ]
    if not sup_apis:
        return []
    changed = []
    for name in topology.business:
        for node_home in node_homes(topology.chain_home(name)):
            config = NodeConfig.load(node_home)
            if config.api_port and not config.supervision_api:
                replace(config, supervision_api=sup_apis[0]).save(node_home)
                changed.append(node_home)
    return changed


def spawn_follower(topology: Topology, *, interval_s: float = 1.0) -> subprocess.Popen[bytes]:
    """Start ``consortia supervise follow`` over every business chain (each read from its
    regulator's observer node) into ``lookthrough_path``, output appended to
    ``DIR/lookthrough.log``. It resumes where the index stopped, so a restart is harmless."""
    homes = [observer_node(topology.chain_home(b)) for b in topology.business]
    args = [str(a) for h in homes for a in ("--home", h)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(topology.home / "lookthrough.log", "ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "consortia",
                "supervise",
                "follow",
                "--db",
                str(lookthrough_path(topology)),
                *args,
                "--interval",
                str(interval_s),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )


def wait_until_serving(topology: Topology, *, timeout_s: float = 90.0) -> None:
    """Return once every node of every chain answers and has committed a block."""
    deadline = time.monotonic() + timeout_s
    for name in (topology.supervision, *topology.business):
        while True:
            statuses = network_status(topology.chain_home(name), timeout_s=3.0)
            if all(s.get("ok") and int(s.get("height", 0)) >= 1 for s in statuses):
                break
            if time.monotonic() > deadline:
                raise NodeError(f"the nodes of {name} did not come up in {timeout_s:.0f} s")
            time.sleep(0.5)
