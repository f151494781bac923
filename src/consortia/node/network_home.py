"""`consortia init --validators N`: everything a local multi-process network needs, on disk.

Layout (one directory per node, so each node process reads only its own)::

    DIR/genesis.json                   shared genesis (organizations with their CA certificates)
    DIR/accounts/NAME.key              member account keys (encrypted), for clients and the demo
    DIR/orgs/ORG/ca.pem, ca.key        each organization's node CA (the key encrypted)
    DIR/NODE/config.json               name, organization, role, ports (p2p, client, api), peers
    DIR/NODE/genesis.json              a copy of the shared genesis
    DIR/NODE/validator.key             the node's consensus key (validators only, encrypted)
    DIR/NODE/tls/cert.pem, key.pem     the node's TLS certificate from its organization's CA
    DIR/NODE/data/                     the chain store (created by the node)

Validators are spread over the market institutions (exchange, brokers, bank, then extra member
firms); observers are run by the regulator, which follows every block and never votes.

Ports, from ``base_port`` (B) for node i of the N nodes (validators, standby, then observers)::

    p2p     B + 2i          client  B + 2i + 1          REST API  B + API_PORT_OFFSET + i

so one chain's peer and client ports fill B .. B + 2N - 1, and its API ports
B + 1000 .. B + 1000 + N - 1. A two-tier home (``node/topology.py``) places chain k (0 the
supervision chain, 1..9 business chains) at B + k * PORTS_PER_CHAIN (100): every chain's peer
and client ports then lie in B .. B + 999 and its API ports in B + 1000 + 100k .. — disjoint from
each other and from every chain's peer ports as long as a chain has at most 50 nodes (the
layout already needs 2N <= 100 for the peer ports not to run into the next chain's).
``api_port_offset=None`` leaves the API off (``api_port`` 0) in every node's config.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from consortia.crypto import encrypt_key_file, get_suite
from consortia.execution.consortium import (
    DEFAULT_ACCOUNTS,
    DEFAULT_GENESIS_TIME_MS,
    DEFAULT_ORGS,
    AccountSpec,
)
from consortia.execution.genesis import (
    Genesis,
    GenesisAccount,
    GenesisOrg,
    GenesisValidator,
    validate_genesis,
)
from consortia.net import pki
from consortia.node.home import key_password
from consortia.node.local import ACCOUNTS_DIR, GENESIS_FILE, NodeError

CONFIG_FILE = "config.json"
VALIDATOR_KEY_FILE = "validator.key"
TLS_DIR = "tls"
ORGS_DIR = "orgs"
VALIDATOR_ORGS = ("exchange", "broker-a", "broker-b", "bank-ccb")
OBSERVER_ORG = "csrc"
DEFAULT_BASE_PORT = 26_600
MAX_NODES = 64
API_PORT_OFFSET = 1_000
MAX_PORT = 65_535


@dataclass(frozen=True)
class PeerConfig:
    name: str
    host: str
    port: int


@dataclass(frozen=True)
class NodeConfig:
    """One node's settings (``DIR/NODE/config.json``)."""

    node_name: str
    org_id: str
    role: str  # "validator" | "observer"
    host: str
    p2p_port: int
    client_port: int
    peers: tuple[PeerConfig, ...]
    api_port: int = 0  # REST API (HTTP) port; 0: no API. Absent from pre-API config files.
    # Look-through index (SQLite, written by `consortia supervise follow`) the API serves the
    # regulator dashboard from; relative to the node home; "": no dashboard data on this node.
    lookthrough_index: str = ""
    # A supervision node's REST API (http://host:port) this business node's API fetches anchor
    # evidence from for `/v1/evidence/...`; "": evidence export over this API is unavailable.
    supervision_api: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def load(cls, node_home: Path) -> NodeConfig:
        path = node_home / CONFIG_FILE
        try:
            raw = json.loads(path.read_text())
            peers = tuple(PeerConfig(**p) for p in raw.pop("peers"))
            config = cls(peers=peers, **raw)
            port = config.api_port
            if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= MAX_PORT:
                raise ValueError(f"api_port must be 0 (off) or a TCP port, not {config.api_port!r}")
            return config
        except FileNotFoundError as exc:
            raise NodeError(
                f"{path} not found: is {node_home} a node home from `consortia init`?"
            ) from exc
        except (ValueError, TypeError, KeyError) as exc:
            raise NodeError(f"{path} is malformed: {exc}") from exc


def _validator_org(i: int, validator_orgs: Sequence[str]) -> str:
    return validator_orgs[i] if i < len(validator_orgs) else f"member-{i + 1}"


def init_network(
    home: Path,
    *,
    validators: int = 4,
    observers: int = 0,
    standby: int = 0,
    suite_name: str = "intl",
    chain_id: str = "consortia-local",
    base_port: int = DEFAULT_BASE_PORT,
    password: str | None = None,
    scrypt_n: int = 1 << 15,
    tier: str = "business",
    orgs: Sequence[GenesisOrg] = DEFAULT_ORGS,
    accounts: Sequence[AccountSpec] = DEFAULT_ACCOUNTS,
    validator_orgs: Sequence[str] = VALIDATOR_ORGS,
    observer_org: str = OBSERVER_ORG,
    api_port_offset: int | None = API_PORT_OFFSET,
) -> Genesis:
    """Create a local network of ``validators`` + ``observers`` nodes under ``home``.

    ``standby`` extra validator nodes get consensus keys but are not in the genesis set: they
    follow the chain until governance adds them (and vote from then on). ``tier``, ``orgs``,
    ``accounts``, ``validator_orgs`` (which organization runs validator i) and ``observer_org``
    default to the business consortium; the supervision chain passes its own. Node i's REST
    API gets port ``base_port + api_port_offset + i`` (None: no API); see the module docstring.
    """
    if not 1 <= validators <= MAX_NODES or not 0 <= observers + standby <= MAX_NODES:
        raise NodeError(f"between 1 and {MAX_NODES} validators and at most {MAX_NODES} observers")
    if (home / GENESIS_FILE).exists():
        raise NodeError(f"{home / GENESIS_FILE} already exists; choose another --home")
    n_nodes = validators + standby + observers
    if api_port_offset is not None and base_port + api_port_offset + n_nodes - 1 > MAX_PORT:
        raise NodeError(
            f"API ports up to {base_port + api_port_offset + n_nodes - 1} exceed {MAX_PORT}:"
            " choose a lower base port"
        )
    suite = get_suite(suite_name)
    password = password if password is not None else key_password()
    home.mkdir(parents=True, exist_ok=True)

    nodes = [
        (f"validator-{i}", _validator_org(i, validator_orgs), "validator")
        for i in range(validators + standby)
    ]
    nodes += [(f"observer-{i}", observer_org, "observer") for i in range(observers)]

    orgs = list(orgs)
    known = {o.org_id for o in orgs}
    for _, org_id, _ in nodes:
        if org_id not in known:
            orgs.append(GenesisOrg(org_id, f"Member firm {org_id}", "broker"))
            known.add(org_id)
    cas: dict[str, pki.OrgCA] = {}
    for org in orgs:
        ca = pki.create_org_ca(org.org_id)
        cas[org.org_id] = ca
        org_dir = home / ORGS_DIR / org.org_id
        org_dir.mkdir(parents=True, exist_ok=True)
        pki.write_pem(org_dir / "ca.pem", pki.cert_to_pem(ca.cert))
        pki.write_pem(org_dir / "ca.key", pki.key_to_pem(ca.key, password.encode()), private=True)
    orgs = [
        GenesisOrg(o.org_id, o.name, o.kind, pki.cert_to_pem(cas[o.org_id].cert).decode("ascii"))
        for o in orgs
    ]

    (home / ACCOUNTS_DIR).mkdir(exist_ok=True)
    genesis_accounts = []
    for spec in accounts:
        kp = suite.generate_keypair()
        path = home / ACCOUNTS_DIR / f"{spec.name}.key"
        path.write_bytes(encrypt_key_file(kp, password, scrypt_n=scrypt_n))
        path.chmod(0o600)
        genesis_accounts.append(GenesisAccount(spec.name, kp.public_key, spec.org_id, spec.roles))

    genesis_validators: list[GenesisValidator] = []
    ports = {name: base_port + 2 * i for i, (name, _, _) in enumerate(nodes)}
    api_ports = {
        name: 0 if api_port_offset is None else base_port + api_port_offset + i
        for i, (name, _, _) in enumerate(nodes)
    }
    for name, org_id, role in nodes:
        node_dir = home / name
        (node_dir / TLS_DIR).mkdir(parents=True, exist_ok=True)
        creds = pki.issue_node_certificate(cas[org_id], chain_id=chain_id, node_name=name)
        pki.write_pem(node_dir / TLS_DIR / "cert.pem", pki.cert_to_pem(creds.cert))
        pki.write_pem(node_dir / TLS_DIR / "key.pem", pki.key_to_pem(creds.key), private=True)
        if role == "validator":
            kp = suite.generate_keypair()
            path = node_dir / VALIDATOR_KEY_FILE
            path.write_bytes(encrypt_key_file(kp, password, scrypt_n=scrypt_n))
            path.chmod(0o600)
            if len(genesis_validators) < validators:
                genesis_validators.append(GenesisValidator(name, kp.public_key, 10))
        config = NodeConfig(
            node_name=name,
            org_id=org_id,
            role=role,
            host="127.0.0.1",
            p2p_port=ports[name],
            client_port=ports[name] + 1,
            peers=tuple(PeerConfig(p, "127.0.0.1", ports[p]) for p, _, _ in nodes if p != name),
            api_port=api_ports[name],
        )
        (node_dir / CONFIG_FILE).write_text(config.to_json())

    genesis = Genesis(
        chain_id=chain_id,
        suite=suite_name,
        tier=tier,
        genesis_time_ms=DEFAULT_GENESIS_TIME_MS,
        orgs=tuple(orgs),
        accounts=tuple(genesis_accounts),
        validators=tuple(genesis_validators),
        params={},
    )
    validate_genesis(genesis)
    text = genesis.to_json()
    (home / GENESIS_FILE).write_text(text)
    for name, _, _ in nodes:
        (home / name / GENESIS_FILE).write_text(text)
    return genesis
