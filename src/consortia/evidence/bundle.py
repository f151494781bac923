"""Offline evidence bundles: the format, and the verifier that needs no node and no network.

A bundle proves one fact about a business chain — a transaction and its outcome, or a holding /
e-CNY wallet record, a contract's storage word or its account record at a height — to anyone
holding the two genesis documents (the business chain's and the supervision chain's). It carries:

- the business **header** of the block and its **commit certificate**, plus the business
  **validator-set history** (every header that announced a new set, certified, with that set), so
  the certificate is checked from the genesis validators;
- the **subject**: the transaction and receipt with their RFC 6962 inclusion proofs into the
  header's ``transactions_root`` / ``receipts_root``; or a state proof of the record against the
  header's ``state_root``;
- the **anchor**: state proofs, against a certified supervision header, of the supervision chain's
  ``anchoring`` records for this business block and for the chain's registration (its genesis
  hash), with the supervision validator-set history from the supervision genesis.

The file is JSON (``bundle_to_json``): every binary value is lowercase hex, and every signed or
hashed structure is carried as its canonical CBOR (``"cbor"``), which is what the verifier
decodes and hashes, beside a readable copy (``"value"``) that must equal the decoded CBOR. The
file must be byte for byte the canonical rendering of the bundle it contains, so no byte of it
can change without verification failing. docs/evidence.md specifies both the format and the
algorithm for independent verifiers.

This module is pure: no I/O, no clock; ``verify_bundle`` raises one ``EvidenceError`` subclass per
failed check, its message naming the check.
"""

from __future__ import annotations

import datetime
import functools
import json
from dataclasses import dataclass
from typing import Any, TypeVar

from consortia import codec
from consortia.contracts import keys as contract_keys
from consortia.crypto import CryptoError, Suite, get_suite
from consortia.execution.genesis import Genesis
from consortia.ledger import light
from consortia.ledger.merkle import InvalidProofError, verify_inclusion
from consortia.ledger.state_tree import InvalidStateProofError, StateProof, verify_state_proof
from consortia.ledger.types import (
    CommitCertificate,
    Header,
    Receipt,
    Transaction,
    TxStatus,
    ValidatorSet,
    WireFormatError,
)
from consortia.modules import anchoring, ecny, securities
from consortia.modules.anchoring import Anchor, AnchoredChain

FORMAT = "consortia-evidence/1"
# Version 2 is version 1 plus the contract record kinds; a bundle carries it exactly when its
# subject is a contract record, so a version-1 verifier refuses such a bundle by its format
# (rather than as a bad proof) and every version-1 bundle stays byte for byte what it was.
FORMAT_CONTRACTS = "consortia-evidence/2"
FORMATS = (FORMAT, FORMAT_CONTRACTS)
KIND_TRANSACTION = "transaction"
KIND_STATE = "state"
KINDS = (KIND_TRANSACTION, KIND_STATE)
# A state subject is a securities holding, or an e-CNY wallet (asset ECNY_ASSET, account = wallet).
RECORD_HOLDING = "securities_holding"
RECORD_WALLET = "ecny_wallet"
ECNY_ASSET = "ecny"
# Contract records (``consortia.contracts.keys``): asset = the contract's 20-byte address as 40
# lowercase hex digits; account = the 32-byte big-endian slot as 64 lowercase hex digits (storage)
# or "" (the account record: nonce and code hash).
RECORD_CONTRACT_STORAGE = "contract_storage"
RECORD_CONTRACT_ACCOUNT = "contract_account"
CONTRACT_RECORDS = (RECORD_CONTRACT_STORAGE, RECORD_CONTRACT_ACCOUNT)
MAX_BUNDLE_BYTES = 16 * 1024 * 1024
MAX_HISTORY = 10_000

T = TypeVar("T")

CST = datetime.timezone(datetime.timedelta(hours=8), "CST")


# ---------------------------------------------------------------------------------------------
# Errors: one per check


class EvidenceError(ValueError):
    """A bundle does not prove what it claims; ``check`` names the check that failed."""

    check = "evidence"

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.check}: {message}")


class BundleFormatError(EvidenceError):
    check = "bundle format"


class GenesisMismatchError(EvidenceError):
    check = "genesis"


class TxInclusionError(EvidenceError):
    check = "transaction inclusion"


class ReceiptInclusionError(EvidenceError):
    check = "receipt inclusion"


class StateProofError(EvidenceError):
    check = "state proof"


class ValidatorHistoryError(EvidenceError):
    check = "validator history"


class HeaderCertificateError(EvidenceError):
    check = "header certificate"


class AnchorProofError(EvidenceError):
    check = "anchor"


class SupervisionCertificateError(EvidenceError):
    check = "supervision certificate"


# ---------------------------------------------------------------------------------------------
# The bundle


@dataclass(frozen=True)
class InclusionProof:
    """RFC 9162 PATH(index, D[size]): sibling hashes from the leaf up."""

    index: int
    size: int
    path: tuple[bytes, ...]


@dataclass(frozen=True)
class ChainProof:
    """A header of ``chain_id`` and its certificate, checkable from the chain's genesis:
    ``history`` holds, in height order, every earlier header that announced a new validator set
    (``next_validator_set_hash != validator_set_hash``), certified, with the announced set."""

    chain_id: str
    suite: str
    genesis_hash: bytes
    history: tuple[light.CertifiedHeader, ...]
    header: Header
    certificate: CommitCertificate


@dataclass(frozen=True)
class TxSubject:
    transaction: Transaction
    receipt: Receipt
    tx_proof: InclusionProof  # into header.transactions_root, leaf = transaction CBOR
    receipt_proof: InclusionProof  # into header.receipts_root, leaf = receipt CBOR


@dataclass(frozen=True)
class StateSubject:
    record: str  # RECORD_HOLDING | RECORD_WALLET | RECORD_CONTRACT_STORAGE | ..._ACCOUNT
    asset: str  # security code, ECNY_ASSET, or a contract address (40 lowercase hex digits)
    account: str  # securities account id, wallet id, a slot (64 lowercase hex digits), or ""
    proof: StateProof  # membership of the record's key against header.state_root


@dataclass(frozen=True)
class AnchorEvidence:
    anchor_proof: StateProof  # anchoring.anchor_key(chain, height) -> Anchor
    registration_proof: StateProof  # anchoring.chain_key(chain) -> AnchoredChain
    supervision: ChainProof  # the supervision header whose state_root both proofs lead to


@dataclass(frozen=True)
class EvidenceBundle:
    kind: str  # KIND_TRANSACTION | KIND_STATE
    business: ChainProof
    transaction: TxSubject | None
    state: StateSubject | None
    anchor: AnchorEvidence


@dataclass(frozen=True)
class Proven:
    """What a verified bundle proves, in plain words and as data."""

    kind: str
    who: str
    what: str
    when: str  # block time in CST
    block: str
    anchor: str
    chain_id: str
    height: int
    block_hash: bytes
    time_ms: int
    supervision_chain_id: str
    supervision_height: int  # the certified supervision header the anchor is proven against
    supervision_block_hash: bytes
    anchored_height: int  # the supervision height whose block anchored the business block

    def lines(self) -> list[str]:
        return [
            f"who:    {self.who}",
            f"what:   {self.what}",
            f"when:   {self.when}",
            f"block:  {self.block}",
            f"anchor: {self.anchor}",
        ]


def _exact_hex(text: str, size: int, what: str) -> bytes:
    """``text`` as ``size`` bytes: exactly ``2 * size`` lowercase hex digits, no prefix (the one
    spelling, so no character of a bundle's subject is free to change)."""
    try:
        data = bytes.fromhex(text)
    except ValueError:
        data = b""
    if len(data) != size or data.hex() != text:
        raise ValueError(f"{what} must be {2 * size} lowercase hex digits, got {text!r}")
    return data


def contract_subject(address: bytes, slot: int | None) -> tuple[str, str, str]:
    """``(record, asset, account)`` of storage ``slot`` of contract ``address`` or, with slot
    None, of its account record."""
    if len(address) != contract_keys.ADDRESS_SIZE:
        raise ValueError(f"a contract address is {contract_keys.ADDRESS_SIZE} bytes")
    if slot is None:
        return RECORD_CONTRACT_ACCOUNT, address.hex(), ""
    if not 0 <= slot < 1 << 256:
        raise ValueError("a storage slot is a 256-bit unsigned number")
    return RECORD_CONTRACT_STORAGE, address.hex(), slot.to_bytes(32, "big").hex()


def state_key_of(record: str, asset: str, account: str) -> bytes:
    """The state key a state subject proves (``ValueError`` for a subject that names none)."""
    if record in CONTRACT_RECORDS:
        address = _exact_hex(asset, contract_keys.ADDRESS_SIZE, "a contract address")
        if record == RECORD_CONTRACT_ACCOUNT:
            if account != "":
                raise ValueError("a contract account record names no slot (account must be '')")
            return contract_keys.account_key(address)
        slot = _exact_hex(account, contract_keys.WORD_SIZE, "a storage slot")
        return contract_keys.storage_key(address, int.from_bytes(slot, "big"))
    if record == RECORD_HOLDING:
        return securities.holding_key(asset, account)
    if record == RECORD_WALLET:
        if asset != ECNY_ASSET:
            raise ValueError(f"an e-CNY wallet's asset is {ECNY_ASSET!r}, not {asset!r}")
        return ecny.wallet_key(account)
    raise ValueError(f"unknown record kind {record!r}")


def cst_time(time_ms: int) -> str:
    t = datetime.datetime.fromtimestamp(time_ms / 1000, tz=CST)
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{time_ms % 1000:03d} CST (UTC+8)"


# ---------------------------------------------------------------------------------------------
# JSON rendering (canonical)


def _readable_cbor(data: bytes | None) -> Any:
    """The readable copy of CBOR bytes: the decoded item with byte strings as hex (None if the
    bytes are not one canonical CBOR item)."""
    if data is None:
        return None
    try:
        return codec.hex_dump(codec.decode(data, max_depth=24))
    except codec.CodecError:
        return None


def _struct_json(value: Any, suite: Suite | None = None) -> dict[str, Any]:
    data = codec.encode_struct(value)
    out: dict[str, Any] = {"cbor": data.hex(), "value": _readable_cbor(data)}
    if suite is not None:
        out["hash"] = suite.hash(data).hex()
    return out


def _try_suite(name: str) -> Suite | None:
    try:
        return get_suite(name)
    except CryptoError:
        return None


def _inclusion_json(p: InclusionProof) -> dict[str, Any]:
    return {"index": p.index, "size": p.size, "path": [x.hex() for x in p.path]}


def _key_text(key: bytes) -> str:
    """The key for people: printable ASCII as is, any other byte (and backslash) as \\xNN."""
    return "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in key)


def _state_proof_json(p: StateProof) -> dict[str, Any]:
    return {
        "key": p.key.hex(),
        "key_text": _key_text(p.key),
        "value": None if p.value is None else p.value.hex(),
        "record": _readable_cbor(p.value),
        "siblings": [s.hex() for s in p.siblings],
        "other_path": None if p.other_path is None else p.other_path.hex(),
        "other_value_hash": None if p.other_value_hash is None else p.other_value_hash.hex(),
    }


def _chain_json(c: ChainProof) -> dict[str, Any]:
    suite = _try_suite(c.suite)
    return {
        "chain_id": c.chain_id,
        "suite": c.suite,
        "genesis_hash": c.genesis_hash.hex(),
        "validator_history": [
            {
                "header": _struct_json(item.header, suite),
                "certificate": _struct_json(item.certificate),
                "next_validators": (
                    None
                    if item.next_validators is None
                    else _struct_json(item.next_validators, suite)
                ),
            }
            for item in c.history
        ],
        "header": _struct_json(c.header, suite),
        "certificate": _struct_json(c.certificate),
    }


def format_of(b: EvidenceBundle) -> str:
    """The format a bundle is written in: ``FORMAT_CONTRACTS`` for a contract record, else
    ``FORMAT``."""
    if b.state is not None and b.state.record in CONTRACT_RECORDS:
        return FORMAT_CONTRACTS
    return FORMAT


def bundle_to_obj(b: EvidenceBundle) -> dict[str, Any]:
    """The bundle as the JSON data model (the canonical file is ``bundle_to_json``)."""
    suite = _try_suite(b.business.suite)
    tx: dict[str, Any] | None = None
    if b.transaction is not None:
        t = b.transaction
        tx = {
            "transaction": _struct_json(t.transaction, suite),
            "receipt": _struct_json(t.receipt),
            "transaction_proof": _inclusion_json(t.tx_proof),
            "receipt_proof": _inclusion_json(t.receipt_proof),
        }
    state: dict[str, Any] | None = None
    if b.state is not None:
        s = b.state
        state = {
            "record": s.record,
            "asset": s.asset,
            "account": s.account,
            "proof": _state_proof_json(s.proof),
        }
    return {
        "format": format_of(b),
        "kind": b.kind,
        "business": _chain_json(b.business),
        "transaction": tx,
        "state": state,
        "anchor": anchor_to_obj(b.anchor),
    }


def anchor_to_obj(anchor: AnchorEvidence) -> dict[str, Any]:
    """The anchor half as JSON data: exactly the ``anchor`` member of the bundle file (a
    business node fetches it from a supervision node's API in this form)."""
    return {
        "anchor_proof": _state_proof_json(anchor.anchor_proof),
        "registration_proof": _state_proof_json(anchor.registration_proof),
        "supervision": _chain_json(anchor.supervision),
    }


def _dump(obj: dict[str, Any]) -> str:
    """Canonical text: one top-level member per line, each value compact with sorted keys,
    ASCII only (``\\uXXXX`` escapes), and a final newline."""
    members = [
        json.dumps(k) + ":" + json.dumps(obj[k], sort_keys=True, separators=(",", ":"))
        for k in sorted(obj)
    ]
    return "{\n" + ",\n".join(members) + "\n}\n"


def bundle_to_json(b: EvidenceBundle) -> str:
    """The canonical file (see ``_dump``); ``parse_bundle`` accepts exactly this text."""
    return _dump(bundle_to_obj(b))


# ---------------------------------------------------------------------------------------------
# JSON parsing (strict)


def _fail(path: str, message: str) -> BundleFormatError:
    return BundleFormatError(f"{path}: {message}")


def _fields(obj: Any, path: str, names: set[str]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _fail(path, "expected an object")
    if set(obj) != names:
        missing = sorted(names - set(obj))
        extra = sorted(set(obj) - names)
        raise _fail(path, f"wrong fields: missing {missing}, unexpected {extra}")
    return obj


def _hex(obj: Any, path: str) -> bytes:
    if isinstance(obj, str):
        try:
            data = bytes.fromhex(obj)
        except ValueError:
            pass
        else:
            if data.hex() == obj:  # lowercase, no spaces: the one spelling of these bytes
                return data
    raise _fail(path, "expected lowercase hex with an even number of digits")


def _opt_hex(obj: Any, path: str) -> bytes | None:
    return None if obj is None else _hex(obj, path)


def _int(obj: Any, path: str) -> int:
    if not isinstance(obj, int) or isinstance(obj, bool) or not 0 <= obj < 1 << 63:
        raise _fail(path, "expected a non-negative integer")
    return obj


def _str(obj: Any, path: str) -> str:
    if not isinstance(obj, str):
        raise _fail(path, "expected a string")
    return obj


def _list(obj: Any, path: str, limit: int = MAX_HISTORY) -> list[Any]:
    if not isinstance(obj, list) or len(obj) > limit:
        raise _fail(path, f"expected an array of at most {limit} items")
    return obj


def _readable_mismatch(path: str) -> BundleFormatError:
    return _fail(path, "the readable copy differs from the canonical CBOR it accompanies")


_DECODED: dict[tuple[type[Any], bytes], tuple[Any, str]] = {}
_DECODED_MAX = 512


def _decode_struct(cls: type[Any], data: bytes) -> tuple[Any, str]:
    """``data`` decoded strictly as ``cls``, and its readable copy as canonical JSON text.
    (Memoized by content: values are immutable, and a verifier checking many similar bundles
    decodes each distinct structure once.)"""
    cached = _DECODED.get((cls, data))
    if cached is not None:
        return cached
    raw = codec.decode(data, max_depth=24)
    value = codec.from_cbor(cls, raw, cls.__name__)
    if codec.encode_struct(value) != data:
        raise codec.NonCanonicalError(f"{cls.__name__} does not re-encode to the same bytes")
    result = (value, json.dumps(codec.hex_dump(raw), sort_keys=True))
    if len(_DECODED) >= _DECODED_MAX:
        _DECODED.clear()
    _DECODED[(cls, data)] = result
    return result


@functools.lru_cache(maxsize=512)
def _readable_cbor_text(data: bytes | None) -> str:
    return json.dumps(_readable_cbor(data), sort_keys=True)


def _struct(cls: type[T], obj: Any, path: str, suite: Suite | None) -> T:
    """A structure carried as canonical CBOR, its readable copy and (``suite`` given) its hash;
    the copy and the hash must be exactly what the CBOR gives."""
    d = _fields(obj, path, {"cbor", "value", "hash"} if suite else {"cbor", "value"})
    data = _hex(d["cbor"], f"{path}.cbor")
    try:
        value, readable = _decode_struct(cls, data)
    except (codec.CodecError, WireFormatError) as exc:
        raise _fail(f"{path}.cbor", f"not a canonical {cls.__name__}: {exc}") from exc
    if json.dumps(d["value"], sort_keys=True) != readable:
        raise _readable_mismatch(f"{path}.value")
    if suite is not None and d["hash"] != suite.hash(data).hex():
        raise _fail(f"{path}.hash", "is not the hash of the CBOR")
    return value  # type: ignore[no-any-return]


def _inclusion(obj: Any, path: str) -> InclusionProof:
    d = _fields(obj, path, {"index", "size", "path"})
    hashes = _list(d["path"], f"{path}.path", 64)
    return InclusionProof(
        _int(d["index"], f"{path}.index"),
        _int(d["size"], f"{path}.size"),
        tuple(_hex(x, f"{path}.path[{i}]") for i, x in enumerate(hashes)),
    )


def _state_proof(obj: Any, path: str) -> StateProof:
    d = _fields(
        obj,
        path,
        {"key", "key_text", "value", "record", "siblings", "other_path", "other_value_hash"},
    )
    siblings = _list(d["siblings"], f"{path}.siblings", 256)
    try:
        proof = StateProof(
            key=_hex(d["key"], f"{path}.key"),
            value=_opt_hex(d["value"], f"{path}.value"),
            siblings=tuple(_hex(x, f"{path}.siblings[{i}]") for i, x in enumerate(siblings)),
            other_path=_opt_hex(d["other_path"], f"{path}.other_path"),
            other_value_hash=_opt_hex(d["other_value_hash"], f"{path}.other_value_hash"),
        )
    except InvalidStateProofError as exc:
        raise _fail(path, str(exc)) from exc
    if d["key_text"] != _key_text(proof.key):
        raise _readable_mismatch(f"{path}.key_text")
    if json.dumps(d["record"], sort_keys=True) != _readable_cbor_text(proof.value):
        raise _readable_mismatch(f"{path}.record")
    return proof


def _chain(obj: Any, path: str) -> ChainProof:
    d = _fields(
        obj,
        path,
        {"chain_id", "suite", "genesis_hash", "validator_history", "header", "certificate"},
    )
    suite_name = _str(d["suite"], f"{path}.suite")
    suite = _try_suite(suite_name)
    if suite is None:
        raise _fail(f"{path}.suite", f"unknown crypto suite {suite_name!r}")
    history = []
    for i, raw in enumerate(_list(d["validator_history"], f"{path}.validator_history")):
        where = f"{path}.validator_history[{i}]"
        item = _fields(raw, where, {"header", "certificate", "next_validators"})
        nxt = item["next_validators"]
        history.append(
            light.CertifiedHeader(
                _struct(Header, item["header"], f"{where}.header", suite),
                _struct(CommitCertificate, item["certificate"], f"{where}.certificate", None),
                None
                if nxt is None
                else _struct(ValidatorSet, nxt, f"{where}.next_validators", suite),
            )
        )
    return ChainProof(
        chain_id=_str(d["chain_id"], f"{path}.chain_id"),
        suite=suite_name,
        genesis_hash=_hex(d["genesis_hash"], f"{path}.genesis_hash"),
        history=tuple(history),
        header=_struct(Header, d["header"], f"{path}.header", suite),
        certificate=_struct(CommitCertificate, d["certificate"], f"{path}.certificate", None),
    )


def parse_bundle(data: str | bytes) -> EvidenceBundle:
    """Parse a bundle file strictly. It must be exactly ``bundle_to_json`` of what it contains:
    every readable copy and hash equals what its CBOR gives, and the text is the canonical
    rendering, so no byte of the file is free to change."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleFormatError(f"larger than {MAX_BUNDLE_BYTES} bytes")
    if isinstance(data, bytes):
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError as exc:
            raise BundleFormatError("the file is not ASCII") from exc
    else:
        text = data
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BundleFormatError(f"not JSON: {exc}") from exc
    d = _fields(obj, "bundle", {"format", "kind", "business", "transaction", "state", "anchor"})
    # Every field below is checked against what the canonical rendering would hold, so once they
    # pass, the canonical rendering of the bundle is the rendering of ``obj``.
    if _dump(d) != text:
        raise BundleFormatError(
            "the file is not in canonical layout (one top-level member per line, compact "
            "values, sorted keys, ASCII escapes, final newline)"
        )
    if d["format"] not in FORMATS:
        raise _fail("bundle.format", f"expected one of {list(FORMATS)}")
    kind = _str(d["kind"], "bundle.kind")
    business = _chain(d["business"], "bundle.business")
    tx = None
    if d["transaction"] is not None:
        t = _fields(
            d["transaction"],
            "bundle.transaction",
            {"transaction", "receipt", "transaction_proof", "receipt_proof"},
        )
        tx = TxSubject(
            _struct(
                Transaction,
                t["transaction"],
                "bundle.transaction.transaction",
                get_suite(business.suite),
            ),
            _struct(Receipt, t["receipt"], "bundle.transaction.receipt", None),
            _inclusion(t["transaction_proof"], "bundle.transaction.transaction_proof"),
            _inclusion(t["receipt_proof"], "bundle.transaction.receipt_proof"),
        )
    state = None
    if d["state"] is not None:
        s = _fields(d["state"], "bundle.state", {"record", "asset", "account", "proof"})
        state = StateSubject(
            _str(s["record"], "bundle.state.record"),
            _str(s["asset"], "bundle.state.asset"),
            _str(s["account"], "bundle.state.account"),
            _state_proof(s["proof"], "bundle.state.proof"),
        )
    bundle = EvidenceBundle(
        kind=kind,
        business=business,
        transaction=tx,
        state=state,
        anchor=anchor_from_obj(d["anchor"], "bundle.anchor"),
    )
    if d["format"] != format_of(bundle):
        raise _fail(
            "bundle.format",
            f"a bundle of this subject is written as {format_of(bundle)!r}, not {d['format']!r}",
        )
    return bundle


def anchor_from_obj(obj: Any, path: str = "anchor") -> AnchorEvidence:
    """Parse ``anchor_to_obj`` data strictly (``BundleFormatError`` naming the bad field under
    ``path``). Parsing checks the form only; ``verify_bundle`` on a completed bundle checks the
    proofs."""
    a = _fields(obj, path, {"anchor_proof", "registration_proof", "supervision"})
    return AnchorEvidence(
        _state_proof(a["anchor_proof"], f"{path}.anchor_proof"),
        _state_proof(a["registration_proof"], f"{path}.registration_proof"),
        _chain(a["supervision"], f"{path}.supervision"),
    )


# ---------------------------------------------------------------------------------------------
# Verification


def _check_genesis(
    c: ChainProof, genesis: Genesis, genesis_hash: bytes, tier: str, what: str
) -> Suite:
    if genesis.tier != tier:
        raise GenesisMismatchError(f"the {what} genesis given is of tier {genesis.tier!r}")
    if c.chain_id != genesis.chain_id:
        raise GenesisMismatchError(
            f"the bundle's {what} chain is {c.chain_id!r}, the genesis is of {genesis.chain_id!r}"
        )
    if c.suite != genesis.suite:
        raise GenesisMismatchError(f"the bundle's {what} suite differs from the genesis suite")
    if c.genesis_hash != genesis_hash:
        raise GenesisMismatchError(
            f"the bundle's {what} genesis hash {c.genesis_hash.hex()[:16]} is not the hash "
            f"{genesis_hash.hex()[:16]} of the genesis given"
        )
    return get_suite(genesis.suite)


def _check_chain(
    c: ChainProof,
    genesis: Genesis,
    suite: Suite,
    history_error: type[EvidenceError],
    cert_error: type[EvidenceError],
    what: str,
) -> bytes:
    """Walk the validator-set history from genesis, then check the header's certificate.
    Returns the header's hash."""
    validators = genesis.validator_set()
    previous = 0
    for i, item in enumerate(c.history):
        h = item.header
        if not previous < h.height < c.header.height:
            raise history_error(
                f"{what} history item {i} (height {h.height}) is out of order or not below "
                f"the proven height {c.header.height}"
            )
        if h.next_validator_set_hash == h.validator_set_hash:
            raise history_error(f"{what} header {h.height} announces no validator-set change")
        if item.next_validators is None:
            raise history_error(f"{what} header {h.height}: the announced set is missing")
        try:
            light.verify_certified(suite, c.chain_id, validators, item)
            validators = light.next_validators_of(suite, validators, item)
        except light.LightClientError as exc:
            raise history_error(f"{what} header {h.height}: {exc}") from exc
        previous = h.height
    if c.header.height < 1:
        raise cert_error(f"{what} header height must be at least 1")
    if c.header.height == 1 and c.header.parent_hash != c.genesis_hash:
        raise cert_error(f"{what} header 1 does not link to the genesis")
    try:
        return light.verify_certified(
            suite,
            c.chain_id,
            validators,
            light.CertifiedHeader(c.header, c.certificate, None),
        )
    except light.LightClientError as exc:
        raise cert_error(f"{what} header {c.header.height}: {exc}") from exc


def _check_inclusion(
    suite: Suite,
    leaf: bytes,
    proof: InclusionProof,
    root: bytes,
    error: type[EvidenceError],
    what: str,
) -> None:
    try:
        verify_inclusion(suite.hash, leaf, proof.index, proof.size, proof.path, root)
    except InvalidProofError as exc:
        raise error(f"{what}: {exc}") from exc


def _prove_state(
    suite: Suite, root: bytes, proof: StateProof, key: bytes, error: type[EvidenceError], what: str
) -> bytes:
    if proof.key != key:
        raise error(f"{what}: the proof is for key {proof.key!r}, expected {key!r}")
    if proof.value is None:
        raise error(f"{what}: the proof shows the key absent")
    try:
        value = verify_state_proof(suite.hash, root, proof)
    except InvalidStateProofError as exc:
        raise error(f"{what}: {exc}") from exc
    assert value is not None
    return value


def _decode(cls: type[T], data: bytes, error: type[EvidenceError], what: str) -> T:
    try:
        return codec.decode_struct(cls, data, max_depth=24)
    except (codec.CodecError, WireFormatError) as exc:
        raise error(f"{what} does not decode: {exc}") from exc


def _contract_record(s: StateSubject, value: bytes, height: int) -> tuple[str, str]:
    """Who and what a proven contract record says (its key already names the contract and
    slot; the value must be what the contracts module stores there)."""
    who = f"contract 0x{s.asset}"
    if s.record == RECORD_CONTRACT_ACCOUNT:
        account = _decode(
            contract_keys.ContractAccount, value, StateProofError, "the contract account record"
        )
        if len(account.code_hash) != 32:
            raise StateProofError("the contract account's code hash is not 32 bytes")
        return who, (
            f"account at height {height}: nonce {account.nonce}, "
            f"code hash (Keccak-256) 0x{account.code_hash.hex()}"
        )
    # A zero word is never stored (the key is deleted), so a stored value is a non-zero word.
    if len(value) != contract_keys.WORD_SIZE or not any(value):
        raise StateProofError("the storage value is not a non-zero 32-byte word")
    word = int.from_bytes(value, "big")
    slot = int(s.account, 16)
    return who, f"slot {hex(slot)} = {hex(word)} ({word}) at height {height}"


def _render_args(args: dict[str, Any]) -> str:
    return json.dumps(codec.hex_dump(codec.to_cbor(args)), sort_keys=True, ensure_ascii=False)


def verify_bundle(
    bundle: EvidenceBundle | str | bytes,
    business_genesis: Genesis,
    supervision_genesis: Genesis,
) -> Proven:
    """Check everything a bundle claims, offline; return what it proves or raise the
    ``EvidenceError`` of the first check that fails (the order is in docs/evidence.md)."""
    return Verifier(business_genesis, supervision_genesis).verify(bundle)


class Verifier:
    """``verify_bundle`` for many bundles against one pair of genesis documents (hashed once,
    here: later changes to the ``Genesis`` objects are not seen)."""

    def __init__(self, business_genesis: Genesis, supervision_genesis: Genesis) -> None:
        self.business_genesis = business_genesis
        self.supervision_genesis = supervision_genesis
        self.business_hash = business_genesis.hash()
        self.supervision_hash = supervision_genesis.hash()

    def verify(self, bundle: EvidenceBundle | str | bytes) -> Proven:
        return _verify(
            bundle,
            self.business_genesis,
            self.business_hash,
            self.supervision_genesis,
            self.supervision_hash,
        )


def _verify(
    bundle: EvidenceBundle | str | bytes,
    business_genesis: Genesis,
    business_hash: bytes,
    supervision_genesis: Genesis,
    supervision_hash: bytes,
) -> Proven:
    b = bundle if isinstance(bundle, EvidenceBundle) else parse_bundle(bundle)
    # 1. Shape.
    if b.kind not in KINDS:
        raise BundleFormatError(f"unknown kind {b.kind!r}")
    if (b.kind == KIND_TRANSACTION) != (b.transaction is not None) or (b.kind == KIND_STATE) != (
        b.state is not None
    ):
        raise BundleFormatError(f"a {b.kind} bundle carries the wrong subject")
    # 2. Both genesis documents.
    bsuite = _check_genesis(b.business, business_genesis, business_hash, "business", "business")
    sup = b.anchor.supervision
    ssuite = _check_genesis(
        sup, supervision_genesis, supervision_hash, "supervision", "supervision"
    )
    header = b.business.header
    block_hash = header.hash(bsuite)
    # 3. The subject, against the business header.
    who: str
    what: str
    if b.transaction is not None:
        t = b.transaction
        tx = t.transaction
        if tx.chain_id != b.business.chain_id:
            raise TxInclusionError(f"the transaction is for chain {tx.chain_id!r}")
        _check_inclusion(
            bsuite,
            tx.encode(),
            t.tx_proof,
            header.transactions_root,
            TxInclusionError,
            f"transaction in block {header.height}",
        )
        tx_hash = tx.hash(bsuite)
        if t.receipt.tx_hash != tx_hash:
            raise ReceiptInclusionError("the receipt is for another transaction")
        if (t.receipt_proof.index, t.receipt_proof.size) != (t.tx_proof.index, t.tx_proof.size):
            raise ReceiptInclusionError("the receipt is not at the transaction's position")
        _check_inclusion(
            bsuite,
            t.receipt.encode(),
            t.receipt_proof,
            header.receipts_root,
            ReceiptInclusionError,
            f"receipt in block {header.height}",
        )
        outcome = (
            "succeeded"
            if t.receipt.status == TxStatus.OK
            else f"failed with {t.receipt.code} ({t.receipt.message})"
        )
        who = f"sender {tx.sender.hex()} (nonce {tx.nonce})"
        what = (
            f"transaction {tx_hash.hex()}: {tx.module}.{tx.method}({_render_args(tx.args)}) "
            f"{outcome}, position {t.tx_proof.index} of {t.tx_proof.size}"
        )
    else:
        assert b.state is not None
        s = b.state
        try:
            key = state_key_of(s.record, s.asset, s.account)
        except ValueError as exc:
            raise StateProofError(str(exc)) from exc
        value = _prove_state(
            bsuite,
            header.state_root,
            s.proof,
            key,
            StateProofError,
            f"{s.record} at height {header.height}",
        )
        if s.record in CONTRACT_RECORDS:
            who, what = _contract_record(s, value, header.height)
        elif s.record == RECORD_HOLDING:
            holding = _decode(securities.Holding, value, StateProofError, "the holding record")
            if (holding.code, holding.account_id) != (s.asset, s.account):
                raise StateProofError("the holding record is of another security or account")
            who = f"securities account {holding.account_id}"
            what = (
                f"holds {holding.balance} of security {holding.code} (pledged {holding.pledged}, "
                f"frozen {holding.frozen}, locked {holding.locked})"
            )
        else:
            wallet = _decode(ecny.Wallet, value, StateProofError, "the wallet record")
            if wallet.wallet_id != s.account:
                raise StateProofError("the wallet record is of another wallet")
            who = f"e-CNY wallet {wallet.wallet_id} of account {wallet.owner.hex()}"
            what = (
                f"balance {wallet.balance} fen (category {wallet.category}, "
                f"{wallet.kind}, operator {wallet.operator_org}"
                + (f", frozen: {wallet.frozen}" if wallet.frozen else "")
                + ")"
            )
    # 4. The anchor: the supervision chain's light client accepted exactly this header.
    sroot = sup.header.state_root
    raw_anchor = _prove_state(
        ssuite,
        sroot,
        b.anchor.anchor_proof,
        anchoring.anchor_key(b.business.chain_id, header.height),
        AnchorProofError,
        f"anchor record of {b.business.chain_id}@{header.height}",
    )
    anchor = _decode(Anchor, raw_anchor, AnchorProofError, "the anchor record")
    expected = Anchor(
        chain_id=b.business.chain_id,
        height=header.height,
        block_hash=block_hash,
        time_ms=header.time_ms,
        state_root=header.state_root,
        transactions_root=header.transactions_root,
        receipts_root=header.receipts_root,
        anchored_height=anchor.anchored_height,
    )
    if anchor != expected:
        raise AnchorProofError(
            f"the anchored header of {b.business.chain_id}@{header.height} is not this header"
        )
    if not 0 < anchor.anchored_height <= sup.header.height:
        raise AnchorProofError("the anchor is dated after the supervision header proving it")
    raw_reg = _prove_state(
        ssuite,
        sroot,
        b.anchor.registration_proof,
        anchoring.chain_key(b.business.chain_id),
        AnchorProofError,
        f"registration of {b.business.chain_id}",
    )
    reg = _decode(AnchoredChain, raw_reg, AnchorProofError, "the registration record")
    if (reg.chain_id, reg.suite, reg.genesis_hash) != (
        b.business.chain_id,
        business_genesis.suite,
        business_hash,
    ):
        raise AnchorProofError("the supervision chain registered this chain with another genesis")
    if reg.height < header.height:
        raise AnchorProofError("the registration has not reached the anchored height")
    # 5. Certificates, from each genesis (most expensive last).
    _check_chain(
        b.business,
        business_genesis,
        bsuite,
        ValidatorHistoryError,
        HeaderCertificateError,
        "business",
    )
    sup_hash = _check_chain(
        sup,
        supervision_genesis,
        ssuite,
        ValidatorHistoryError,
        SupervisionCertificateError,
        "supervision",
    )
    return Proven(
        kind=b.kind,
        who=who,
        what=what,
        when=cst_time(header.time_ms),
        block=f"chain {b.business.chain_id}, height {header.height}, hash {block_hash.hex()}",
        anchor=(
            f"anchored on supervision chain {sup.chain_id} at height {anchor.anchored_height}; "
            f"proven against supervision height {sup.header.height}, hash {sup_hash.hex()}"
        ),
        chain_id=b.business.chain_id,
        height=header.height,
        block_hash=block_hash,
        time_ms=header.time_ms,
        supervision_chain_id=sup.chain_id,
        supervision_height=sup.header.height,
        supervision_block_hash=sup_hash,
        anchored_height=anchor.anchored_height,
    )


# ---------------------------------------------------------------------------------------------
# A notarized file against a deposit bundle (``consortia evidence verify --file``)

NOTARY_MODULE = "notary"
NOTARY_DEPOSIT = "deposit"


class FileMismatchError(EvidenceError):
    check = "file"


@dataclass(frozen=True)
class FileDigests:
    """What a file is checked by: its size, SHA-256 and its hash with the business suite."""

    size: int
    sha256: bytes
    suite_hash: bytes


def check_deposited_file(b: EvidenceBundle, file: FileDigests) -> str:
    """That ``b`` (already verified by ``verify_bundle``) is the bundle of a successful
    ``notary.deposit`` transaction of exactly this file: same size, SHA-256 and suite hash.
    Returns the deposit id; raises ``FileMismatchError`` naming what differs."""
    t = b.transaction
    if t is None or (t.transaction.module, t.transaction.method) != (
        NOTARY_MODULE,
        NOTARY_DEPOSIT,
    ):
        raise FileMismatchError("the bundle is not the evidence of a notary deposit")
    if t.receipt.status != TxStatus.OK:
        raise FileMismatchError(f"the deposit transaction failed ({t.receipt.code})")
    args = t.transaction.args
    if args.get("size") != file.size:
        raise FileMismatchError(
            f"the file has {file.size} bytes, the deposited document {args.get('size')}"
        )
    if args.get("sha256") != file.sha256:
        raise FileMismatchError("the file's SHA-256 is not the deposited one")
    if args.get("suite_hash") != file.suite_hash:
        raise FileMismatchError(f"the file's {b.business.suite} hash is not the deposited one")
    for event in t.receipt.events:
        if (event.module, event.kind) == (NOTARY_MODULE, "deposited"):
            deposit_id = event.attributes.get("deposit_id")
            if isinstance(deposit_id, str):
                return deposit_id
    raise FileMismatchError("the deposit transaction reported no deposit id")


__all__ = [
    "CONTRACT_RECORDS",
    "ECNY_ASSET",
    "FORMAT",
    "FORMATS",
    "FORMAT_CONTRACTS",
    "KIND_STATE",
    "KIND_TRANSACTION",
    "RECORD_CONTRACT_ACCOUNT",
    "RECORD_CONTRACT_STORAGE",
    "RECORD_HOLDING",
    "RECORD_WALLET",
    "AnchorEvidence",
    "AnchorProofError",
    "BundleFormatError",
    "ChainProof",
    "EvidenceBundle",
    "EvidenceError",
    "FileDigests",
    "FileMismatchError",
    "GenesisMismatchError",
    "HeaderCertificateError",
    "InclusionProof",
    "Proven",
    "ReceiptInclusionError",
    "StateProofError",
    "StateSubject",
    "SupervisionCertificateError",
    "TxInclusionError",
    "TxSubject",
    "ValidatorHistoryError",
    "Verifier",
    "anchor_from_obj",
    "anchor_to_obj",
    "bundle_to_json",
    "bundle_to_obj",
    "check_deposited_file",
    "contract_subject",
    "cst_time",
    "format_of",
    "parse_bundle",
    "state_key_of",
    "verify_bundle",
]
