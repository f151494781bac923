"""`consortia init --validators N`: everything a local multi-process network needs, on disk.

Layout (one directory per node, so each node process reads only its own)::

    DIR/genesis.json                   shared genesis (organizations with their CA certificates)
    DIR/accounts/NAME.key              member account keys (encrypted), for clients and the demo
    DIR/orgs/ORG/ca.pem, ca.key        each organization's node CA (the key encrypted)
    DIR/NODE/config.toml               name, organization, role, ports (p2p, client, api), peers,
                                       logging, API limits (docs/configuration.md)
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
import math
import re
import textwrap
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

CONFIG_FILE = "config.toml"
LEGACY_CONFIG_FILE = "config.json"  # before TOML: refused with a message saying so
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
class LogSettings:
    """How ``consortia node start`` logs (its ``--log-format``/``--log-level`` override these)."""

    format: str = "text"  # "text" for people, "json" for one JSON object per line
    level: str = "INFO"


@dataclass(frozen=True)
class NodeSettings:
    """The node shell's knobs (``consortia node start`` builds ``service.NodeParams`` from
    them); the defaults are ``NodeParams``'s."""

    commit_delay_ms: int = 150
    max_block_txs: int = 2_000
    max_block_bytes: int = 3 * 1024 * 1024
    tick_ms: int = 1_000
    sync_batch: int = 32
    max_sync_bytes: int = 3 * 1024 * 1024
    max_client_connections: int = 256
    wait_timeout_s: float = 30.0


@dataclass(frozen=True)
class ApiLimits:
    """The REST API's operational limits (the node builds ``consortia.api.app.ApiSettings``
    from them); the defaults are ``ApiSettings``'s."""

    max_body_bytes: int = 256 * 1024
    rate_per_s: float = 50.0
    burst: int = 100
    max_clients_tracked: int = 10_000
    auth_window_ms: int = 60_000
    max_replay_entries: int = 100_000


@dataclass(frozen=True)
class NodeConfig:
    """One node's settings (``DIR/NODE/config.toml``; every option in docs/configuration.md)."""

    node_name: str
    org_id: str
    role: str  # "validator" | "observer"
    host: str
    p2p_port: int
    client_port: int
    peers: tuple[PeerConfig, ...]
    api_port: int = 0  # REST API (HTTP) port; 0: no API.
    # Look-through index (SQLite, written by `consortia supervise follow`) the API serves the
    # regulator dashboard from; relative to the node home; "": no dashboard data on this node.
    lookthrough_index: str = ""
    # A supervision node's REST API (http://host:port) this business node's API fetches anchor
    # evidence from for `/v1/evidence/...`; "": evidence export over this API is unavailable.
    supervision_api: str = ""
    log: LogSettings = LogSettings()
    api_limits: ApiLimits = ApiLimits()
    node: NodeSettings = NodeSettings()

    def to_toml(self) -> str:
        """The configuration file's text: every option with a comment saying what it does;
        ``NodeConfig.load`` reads it back to an equal ``NodeConfig``."""
        return config_to_toml(self)

    def save(self, node_home: Path) -> Path:
        """Write ``node_home/config.toml`` (replacing any, atomically: a node starting at the
        same time reads the old file or the new one, never half of one); returns its path."""
        path = node_home / CONFIG_FILE
        tmp = path.with_name(f".{CONFIG_FILE}.tmp")
        tmp.write_text(self.to_toml(), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, node_home: Path) -> NodeConfig:
        """Read and validate ``node_home/config.toml``: a missing, unparsable or invalid file
        (unknown key, wrong type, value out of range) raises ``NodeError`` naming the file, the
        key and what is wrong."""
        path = node_home / CONFIG_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            if (node_home / LEGACY_CONFIG_FILE).is_file():
                raise NodeError(
                    f"{node_home / LEGACY_CONFIG_FILE} is the old JSON configuration; this version"
                    f" reads {CONFIG_FILE}: re-create the home with `consortia init`, or write"
                    f" {path} with the same settings (see docs/configuration.md)"
                ) from exc
            raise NodeError(
                f"{path} not found: is {node_home} a node home from `consortia init`?"
            ) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise NodeError(f"{path} cannot be read: {exc}") from exc
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise NodeError(f"{path} is not valid TOML: {exc}") from exc
        return config_from_dict(raw, source=str(path))


# ---------------------------------------------------------------------------------------------
# config.toml: one table of options drives validation, the generated file's comments and
# (through tests/test_config.py) docs/configuration.md, so the three cannot drift apart.

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ROLES = ("validator", "observer")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MAX_API_BODY_BYTES = 64 * 1024 * 1024
MAX_PROPOSAL_BYTES = 3 * 1024 * 1024  # room under the 4 MiB block and frame limits


def _name(v: Any) -> str | None:
    if _NAME_RE.fullmatch(v):
        return None
    return "must be 1..64 of A-Z a-z 0-9 . _ - starting with a letter or digit"


def _host(v: Any) -> str | None:
    if v and len(v) <= 253 and not any(c.isspace() for c in v):
        return None
    return "must be a host name or IP address (1..253 characters, no spaces)"


def _range(lo: float, hi: float | None = None) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if lo <= v and (hi is None or v <= hi) and math.isfinite(v):
            return None
        return f"must be between {lo} and {hi}" if hi is not None else f"must be at least {lo}"

    return check


def _positive(v: Any) -> str | None:
    return None if v > 0 and math.isfinite(v) else "must be a positive number"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v in choices else "must be one of " + ", ".join(map(repr, choices))

    return check


def _url_or_empty(v: Any) -> str | None:
    if v == "" or (v.startswith(("http://", "https://")) and not any(c.isspace() for c in v)):
        return None
    return 'must be "" (none) or an http:// or https:// URL'


def _path_or_empty(v: Any) -> str | None:
    return None if "\x00" not in v else "must be a path (no NUL characters)"


@dataclass(frozen=True)
class ConfigOption:
    """One key of config.toml: its type, what a valid value is, and the comment above it."""

    key: str
    kind: type  # str, int or float (an integer is accepted where a float is expected)
    doc: str
    check: Callable[[Any], str | None]  # what is wrong with a well-typed value, or None
    required: bool = False


TOP_OPTIONS = (
    ConfigOption(
        "node_name",
        str,
        "This node's name: its TLS certificate's subject and what peers call it.",
        _name,
        True,
    ),
    ConfigOption(
        "org_id",
        str,
        "The organization running this node (an org_id of genesis.json);"
        " its CA issued tls/cert.pem.",
        _name,
        True,
    ),
    ConfigOption(
        "role",
        str,
        "validator (votes; needs validator.key) or observer (follows every block, never votes).",
        _one_of(*ROLES),
        True,
    ),
    ConfigOption(
        "host", str, "Address the node listens on (peers, clients and the REST API).", _host, True
    ),
    ConfigOption(
        "p2p_port", int, "TCP port for the mutual-TLS peer network.", _range(1, MAX_PORT), True
    ),
    ConfigOption(
        "client_port",
        int,
        "TCP port for local clients (the CLI, the relayer, the demo).",
        _range(1, MAX_PORT),
        True,
    ),
    ConfigOption(
        "api_port",
        int,
        "REST API (HTTP) port; 0: no API. `consortia node start --api-port` overrides it.",
        _range(0, MAX_PORT),
    ),
    ConfigOption(
        "lookthrough_index",
        str,
        "Look-through index (SQLite from `consortia supervise follow`) the API serves the"
        ' regulator views from, relative to this directory; "": none.',
        _path_or_empty,
    ),
    ConfigOption(
        "supervision_api",
        str,
        "A supervision node's REST API (http://host:port) the API fetches anchor evidence"
        ' from for /v1/evidence; "": none.',
        _url_or_empty,
    ),
)
LOG_OPTIONS = (
    ConfigOption(
        "format",
        str,
        "text (for people) or json (one JSON object per line: ts, level, logger, message,"
        " chain, height, tx). `--log-format` overrides it.",
        _one_of(*LOG_FORMATS),
    ),
    ConfigOption(
        "level",
        str,
        "DEBUG, INFO, WARNING or ERROR. `--log-level` overrides it.",
        _one_of(*LOG_LEVELS),
    ),
)
API_LIMIT_OPTIONS = (
    ConfigOption(
        "max_body_bytes",
        int,
        "Largest request body the REST API accepts (bytes); larger ones get 413.",
        _range(1024, MAX_API_BODY_BYTES),
    ),
    ConfigOption(
        "rate_per_s",
        float,
        "Requests per second each client address may make on average (token refill rate).",
        _positive,
    ),
    ConfigOption(
        "burst",
        int,
        "Requests a client address may make at once (token bucket size); then 429.",
        _range(1),
    ),
    ConfigOption(
        "max_clients_tracked",
        int,
        "Client addresses whose rate is tracked at once; past it the table starts afresh"
        " (each client with a full bucket).",
        _range(1),
    ),
    ConfigOption(
        "auth_window_ms",
        int,
        "How far (ms) a signed request's timestamp may be off this node's clock.",
        _range(1000),
    ),
    ConfigOption(
        "max_replay_entries",
        int,
        "Signed requests remembered within the window, to refuse replays.",
        _range(1),
    ),
)
NODE_OPTIONS = (
    ConfigOption(
        "commit_delay_ms",
        int,
        "Pause after a commit before the next height starts, so transactions gather (ms).",
        _range(0, 60_000),
    ),
    ConfigOption(
        "max_block_txs",
        int,
        "Most transactions this node puts in a block it proposes.",
        _range(1, 100_000),
    ),
    ConfigOption(
        "max_block_bytes",
        int,
        "Most transaction bytes in a block this node proposes (a block is at most 4 MiB).",
        _range(1024, MAX_PROPOSAL_BYTES),
    ),
    ConfigOption(
        "tick_ms",
        int,
        "How often (ms) the node re-gossips a stalled height, announces its height and checks"
        " whether to sync.",
        _range(50, 60_000),
    ),
    ConfigOption(
        "sync_batch", int, "Most blocks sent to a syncing peer per reply.", _range(1, 1_000)
    ),
    ConfigOption(
        "max_sync_bytes",
        int,
        "Most bytes of blocks per sync reply (one block is always sent).",
        _range(1024, MAX_PROPOSAL_BYTES),
    ),
    ConfigOption(
        "max_client_connections",
        int,
        "Client-port connections served at once; more are closed straight away.",
        _range(1, 100_000),
    ),
    ConfigOption(
        "wait_timeout_s",
        float,
        "How long (s) a client's submit-and-wait waits for the commit before"
        " NOT_COMMITTED_IN_TIME.",
        _range(0.1, 3600),
    ),
)
PEER_OPTIONS = (
    ConfigOption("name", str, "The peer's node name (its certificate's subject).", _name, True),
    ConfigOption("host", str, "The peer's address.", _host, True),
    ConfigOption("port", int, "The peer's p2p_port.", _range(1, MAX_PORT), True),
)
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


def _describe(v: object) -> str:
    if isinstance(v, bool | int | float | str):
        return f"{_TYPE_NAMES[type(v)]} ({v!r})"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "a table"
    return f"a {type(v).__name__}"


def _table(
    raw: object,
    options: tuple[ConfigOption, ...],
    *,
    source: str,
    where: str,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """Check one TOML table against ``options``: unknown keys, missing required keys, types
    and values are refused with a ``NodeError`` naming ``source`` and the key."""
    if not isinstance(raw, dict):
        raise NodeError(f"{source}: {where or 'the file'} must be a table, not {_describe(raw)}")
    prefix = f"{where}." if where else ""
    known = {o.key for o in options} | set(extra)
    for key in raw:
        if key not in known:
            raise NodeError(
                f"{source}: unknown key {prefix + key!r} (known: {', '.join(sorted(known))})"
            )
    out: dict[str, Any] = {}
    for o in options:
        if o.key not in raw:
            if o.required:
                raise NodeError(f"{source}: missing key {prefix + o.key!r} ({o.doc})")
            continue
        v = raw[o.key]
        typed = isinstance(v, o.kind) or (o.kind is float and isinstance(v, int))
        if isinstance(v, bool) or not typed:
            raise NodeError(
                f"{source}: key {prefix + o.key!r} must be {_TYPE_NAMES[o.kind]},"
                f" not {_describe(v)}"
            )
        v = float(v) if o.kind is float else v
        wrong = o.check(v)
        if wrong is not None:
            raise NodeError(f"{source}: key {prefix + o.key!r} {wrong}, not {v!r}")
        out[o.key] = v
    return out


def config_from_dict(raw: dict[str, Any], *, source: str) -> NodeConfig:
    """A validated ``NodeConfig`` from parsed config.toml; ``source`` names the file in errors."""
    top = _table(
        raw, TOP_OPTIONS, source=source, where="", extra=("peers", "log", "api_limits", "node")
    )
    peers_raw = raw.get("peers", [])
    if not isinstance(peers_raw, list):
        raise NodeError(
            f"{source}: key 'peers' must be an array of tables ([[peers]]),"
            f" not {_describe(peers_raw)}"
        )
    peers = tuple(
        PeerConfig(**_table(p, PEER_OPTIONS, source=source, where=f"peers[{i}]"))
        for i, p in enumerate(peers_raw)
    )
    names = [p.name for p in peers]
    for name in names:
        if names.count(name) > 1 or name == top["node_name"]:
            raise NodeError(f"{source}: peer {name!r} is listed twice or is this node itself")
    log_settings = LogSettings(
        **_table(raw.get("log", {}), LOG_OPTIONS, source=source, where="log")
    )
    limits = ApiLimits(
        **_table(raw.get("api_limits", {}), API_LIMIT_OPTIONS, source=source, where="api_limits")
    )
    node = NodeSettings(**_table(raw.get("node", {}), NODE_OPTIONS, source=source, where="node"))
    return NodeConfig(peers=peers, log=log_settings, api_limits=limits, node=node, **top)


def _toml_value(v: object) -> str:
    if isinstance(v, str):
        # A TOML basic string: JSON's escapes are TOML's, except DEL must be escaped too.
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _toml_lines(obj: object, options: tuple[ConfigOption, ...]) -> list[str]:
    lines = []
    for o in options:
        lines += [f"# {line}" for line in textwrap.wrap(o.doc, 96)]
        lines.append(f"{o.key} = {_toml_value(getattr(obj, o.key))}")
    return lines


def config_to_toml(config: NodeConfig) -> str:
    """config.toml for ``config``: each option under a comment saying what it does."""
    lines = [
        f"# consortia node configuration for {config.node_name}. Every option is described in",
        "# docs/configuration.md; the node refuses unknown keys and wrong types at start.",
        "",
        *_toml_lines(config, TOP_OPTIONS),
        "",
        "# Logging of `consortia node start`.",
        "[log]",
        *_toml_lines(config.log, LOG_OPTIONS),
        "",
        "# Limits of the REST API (when api_port is set).",
        "[api_limits]",
        *_toml_lines(config.api_limits, API_LIMIT_OPTIONS),
        "",
        "# The node's block building, sync and client limits.",
        "[node]",
        *_toml_lines(config.node, NODE_OPTIONS),
    ]
    if config.peers:
        lines += ["", "# The nodes this one dials, one [[peers]] table each (name, host, port)."]
    for peer in config.peers:
        lines += ["[[peers]]"] + [
            f"{o.key} = {_toml_value(getattr(peer, o.key))}" for o in PEER_OPTIONS
        ]
    return "\n".join(lines) + "\n"


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
    progress: Callable[[int, int], None] | None = None,
) -> Genesis:
    """Create a local network of ``validators`` + ``observers`` nodes under ``home``.

    ``standby`` extra validator nodes get consensus keys but are not in the genesis set: they
    follow the chain until governance adds them (and vote from then on). ``tier``, ``orgs``,
    ``accounts``, ``validator_orgs`` (which organization runs validator i) and ``observer_org``
    default to the business consortium; the supervision chain passes its own. Node i's REST
    API gets port ``base_port + api_port_offset + i`` (None: no API); see the module docstring.
    ``progress(done, total)`` is called after each organization, account and node is made
    (each has a key encrypted with scrypt, the slow part).
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
    total, done = len(orgs) + len(accounts) + len(nodes), 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    cas: dict[str, pki.OrgCA] = {}
    for org in orgs:
        ca = pki.create_org_ca(org.org_id)
        cas[org.org_id] = ca
        org_dir = home / ORGS_DIR / org.org_id
        org_dir.mkdir(parents=True, exist_ok=True)
        pki.write_pem(org_dir / "ca.pem", pki.cert_to_pem(ca.cert))
        pki.write_pem(org_dir / "ca.key", pki.key_to_pem(ca.key, password.encode()), private=True)
        step()
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
        step()

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
        config.save(node_dir)
        step()

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
