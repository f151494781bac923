"""Genesis: the document every member signs off on, and the chain state it defines at height 0.

A genesis file is JSON for people (byte strings in hex); its canonical form is the CBOR of
``Genesis``, whose suite hash is the parent hash of block 1. Loading validates everything and
reports the first problem in plain words.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from consortia import codec
from consortia.crypto import CryptoError, get_suite
from consortia.execution.state import (
    VSET_CURRENT,
    VSET_LAST,
    VSET_NEXT,
    ChainState,
    vset_history_key,
)
from consortia.ledger.state_tree import StateTree
from consortia.ledger.types import Validator, ValidatorSet
from consortia.modules import TIER_KEY
from consortia.modules.governance import (
    GENESIS_PARAMS,
    InvalidProposalError,
    ParamValue,
    check_param,
    param_key,
)
from consortia.modules.registry import (
    ORG_KINDS,
    ORG_LIST_KEY,
    REGULATORS_KEY,
    ROLES,
    Account,
    Organization,
    OrgList,
    RegulatorList,
    account_key,
    org_key,
)

TIERS = ("business", "supervision")
# Chain ids also appear in node certificate URIs and file names: keep them to a safe alphabet.
CHAIN_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


class GenesisError(ValueError):
    """The genesis document is malformed or inconsistent."""


@dataclass(frozen=True)
class GenesisOrg:
    """A member organization; ``ca_pem`` is its X.509 CA for node TLS ("" if it runs no node)."""

    org_id: str
    name: str
    kind: str
    ca_pem: str = ""


@dataclass(frozen=True)
class GenesisAccount:
    name: str
    public_key: bytes
    org_id: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class GenesisValidator:
    name: str
    public_key: bytes
    power: int


@dataclass(frozen=True)
class Genesis:
    chain_id: str
    suite: str
    tier: str
    genesis_time_ms: int
    orgs: tuple[GenesisOrg, ...]
    accounts: tuple[GenesisAccount, ...]
    validators: tuple[GenesisValidator, ...]
    params: dict[str, Any]

    def encode(self) -> bytes:
        return codec.encode_struct(self)

    def hash(self) -> bytes:
        return get_suite(self.suite).hash(self.encode())

    def validator_set(self) -> ValidatorSet:
        suite = get_suite(self.suite)
        vals = [
            Validator(suite.address(v.public_key), v.public_key, v.power) for v in self.validators
        ]
        return ValidatorSet(tuple(sorted(vals, key=lambda v: v.address)))

    def to_json(self) -> str:
        return json.dumps(codec.hex_dump(codec.to_cbor(self)), indent=2, sort_keys=True) + "\n"


_BYTES_FIELDS = {"public_key"}


def _unhex(obj: Any, where: str = "") -> Any:
    """Turn the JSON form back into the CBOR data model (hex strings → bytes for key fields)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in _BYTES_FIELDS:
                if not isinstance(v, str):
                    raise GenesisError(f"{where}{k}: expected a hex string")
                try:
                    out[k] = bytes.fromhex(v)
                except ValueError as exc:
                    raise GenesisError(f"{where}{k}: not valid hex") from exc
            else:
                out[k] = _unhex(v, f"{where}{k}.")
        return out
    if isinstance(obj, list):
        return [_unhex(v, where) for v in obj]
    if isinstance(obj, float):
        raise GenesisError(f"{where}: floating-point numbers are not allowed in genesis")
    return obj


def genesis_from_json(text: str) -> Genesis:
    """Parse and validate a genesis document; raises ``GenesisError`` naming the problem."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenesisError(f"genesis is not valid JSON: {exc}") from exc
    try:
        genesis: Genesis = codec.from_cbor(Genesis, _unhex(raw), "genesis")
    except codec.CodecError as exc:
        raise GenesisError(str(exc)) from exc
    validate_genesis(genesis)
    return genesis


def validate_genesis(g: Genesis) -> None:
    """Check internal consistency: suite, tier, ids, keys, roles, a regulator and validators."""
    try:
        suite = get_suite(g.suite)
    except CryptoError as exc:
        raise GenesisError(str(exc)) from exc
    if not CHAIN_ID_RE.fullmatch(g.chain_id):
        raise GenesisError("chain_id must be 1..64 characters of A-Z a-z 0-9 . _ -")
    if g.tier not in TIERS:
        raise GenesisError(f"tier must be one of {TIERS}")
    if not g.validators:
        raise GenesisError("genesis needs at least one validator")
    org_ids = [o.org_id for o in g.orgs]
    if len(set(org_ids)) != len(org_ids):
        raise GenesisError("duplicate organization id")
    for o in g.orgs:
        if o.kind not in ORG_KINDS:
            raise GenesisError(f"organization {o.org_id}: unknown kind {o.kind!r}")
    seen: set[bytes] = set()
    for a in g.accounts:
        try:
            addr = suite.address(a.public_key)
        except CryptoError as exc:
            raise GenesisError(f"account {a.name}: {exc}") from exc
        if addr in seen:
            raise GenesisError(f"account {a.name}: duplicate key")
        seen.add(addr)
        if a.org_id not in org_ids:
            raise GenesisError(f"account {a.name}: unknown organization {a.org_id!r}")
        bad = set(a.roles) - ROLES
        if bad:
            raise GenesisError(f"account {a.name}: unknown roles {sorted(bad)}")
    vaddrs: set[bytes] = set()
    if len({v.name for v in g.validators}) != len(g.validators):
        raise GenesisError("validator names must be unique")
    for v in g.validators:
        try:
            vaddr = suite.address(v.public_key)
        except CryptoError as exc:
            raise GenesisError(f"validator {v.name}: {exc}") from exc
        if vaddr in vaddrs:
            raise GenesisError(f"validator {v.name}: duplicate key")
        vaddrs.add(vaddr)
        if not 1 <= v.power < 1 << 40:
            raise GenesisError(f"validator {v.name}: power must be positive")
    for gname, pname in sorted(GENESIS_PARAMS.items()):
        if gname in g.params:
            try:
                check_param(pname, g.params[gname])
            except InvalidProposalError as exc:
                raise GenesisError(f"params.{gname}: {exc}") from exc


def genesis_state(g: Genesis) -> ChainState:
    """The state at height 0: organizations, accounts (nonce 0), the validator set and the
    governance parameters seeded from ``params`` (e.g. ``governance_threshold_bp``)."""
    validate_genesis(g)
    suite = get_suite(g.suite)
    writes: dict[bytes, bytes | None] = {}
    for o in g.orgs:
        writes[org_key(o.org_id)] = codec.encode_struct(
            Organization(o.org_id, o.name, o.kind, True)
        )
    for a in g.accounts:
        addr = suite.address(a.public_key)
        roles = tuple(sorted(set(a.roles)))
        acct = Account(addr, a.public_key, a.org_id, roles, 0, False, "", 1)
        writes[account_key(addr)] = codec.encode_struct(acct)
    vset = g.validator_set()
    for key in (VSET_LAST, VSET_CURRENT, VSET_NEXT, vset_history_key(1)):
        writes[key] = codec.encode_struct(vset)
    writes[ORG_LIST_KEY] = codec.encode_struct(OrgList(tuple(sorted(o.org_id for o in g.orgs))))
    writes[TIER_KEY] = g.tier.encode()
    regulators = sorted(suite.address(a.public_key) for a in g.accounts if "regulator" in a.roles)
    writes[REGULATORS_KEY] = codec.encode_struct(RegulatorList(tuple(regulators)))
    for gname, pname in GENESIS_PARAMS.items():
        if gname in g.params:
            writes[param_key(pname)] = codec.encode_struct(ParamValue(g.params[gname]))
    tree = StateTree.empty(suite.hash).update(writes)
    return ChainState(
        suite_name=g.suite,
        chain_id=g.chain_id,
        height=0,
        last_block_hash=g.hash(),
        last_time_ms=g.genesis_time_ms,
        tree=tree,
        last_validators=vset,
        validators=vset,
        next_validators=vset,
    )
