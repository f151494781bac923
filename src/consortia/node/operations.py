"""Perform any module method against a running node: the Python API behind ``consortia tx``.

``Operator`` holds one account's key, knows its address, keeps its next nonce (fetched once with
the node's ``account.get``), validates the arguments client side against the method's argument
dataclass, signs, submits with ``wait`` and returns the committed receipt's outcome::

    op = Operator.from_node_home(key, Path("net/validator-0"))
    op.call("securities", "transfer", {"code": "600001", "from_account": "A1", ...})

Arguments are plain data as in JSON; a ``bytes`` field also takes a hex string (``0x`` optional).
Bad input raises ``InvalidOperationError`` before anything is signed; a failed receipt or a
transaction the node refuses raises ``OperationError`` carrying the stable code (``call``), or is
returned as a result with ``ok`` false (``submit``).

Personal identity data is sealed client side: for a method that takes ``identity_commitment`` and
``sealed_identity`` (``investors.open_investor``), ``Operator.with_sealed_identity`` seals the
clear identity record to the sender (the opening institution) and the regulator, whose current
public key it reads from the chain (``state.get``, proof-checked) unless given, and fills in both
fields; only the sealed envelope and the salted commitment are ever sent::

    args = op.with_sealed_identity("investors", "open_investor", args, {"name": ..., ...})
    op.call("investors", "open_investor", args)
"""

from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from consortia import codec
from consortia.crypto import CryptoError, KeyPair, Suite, get_suite
from consortia.execution.context import decode_record
from consortia.execution.module import Method
from consortia.ledger.state_tree import StateProof, StateTreeError, verify_state_proof
from consortia.ledger.types import sign_transaction
from consortia.modules import NATIVE_MODULES
from consortia.modules.investors import seal_identity
from consortia.modules.registry import Account, account_key
from consortia.node.client import call as client_call
from consortia.node.local import load_genesis
from consortia.node.network_home import NodeConfig

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")

# Codes of replies that mean "your idea of the nonce is out of date": refetch and retry once.
_NONCE_CODES = frozenset({"STALE_NONCE"})
# The argument fields a method takes when it carries sealed personal identity data.
IDENTITY_FIELDS: tuple[str, str] = ("identity_commitment", "sealed_identity")


class OperationError(Exception):
    """An operation that did not succeed, with its stable upper-case ``code``."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        tx_hash: bytes | None = None,
        height: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.tx_hash = tx_hash
        self.height = height


class InvalidOperationError(OperationError):
    """Rejected client side, before signing: unknown module or method, or bad arguments."""


@dataclass(frozen=True)
class OperationResult:
    """What became of a submitted transaction (``height`` is None if it was never committed)."""

    ok: bool
    code: str
    message: str
    height: int | None
    tx_hash: bytes | None
    module: str
    method: str

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "code": self.code,
            "message": self.message,
            "height": self.height,
            "tx_hash": None if self.tx_hash is None else self.tx_hash.hex(),
            "module": self.module,
            "method": self.method,
        }

    def summary(self) -> str:
        """One line for people."""
        where = f"{self.module}.{self.method}"
        tx = "" if self.tx_hash is None else f" tx {self.tx_hash.hex()}"
        at = "" if self.height is None else f" at height {self.height}"
        if self.ok:
            return f"OK {where}{tx}{at}"
        return f"FAILED {where} {self.code}: {self.message}{tx}{at}"


# ---------------------------------------------------------------------------------------------
# Discovery and argument conversion (no network)


def find_method(module: str, method: str) -> Method:
    """The method table entry, or ``InvalidOperationError`` naming what exists."""
    mod = NATIVE_MODULES.get(module)
    if mod is None:
        known = ", ".join(sorted(NATIVE_MODULES))
        raise InvalidOperationError("UNKNOWN_MODULE", f"unknown module {module!r} (one of {known})")
    meth = mod.methods.get(method)
    if meth is None:
        known = ", ".join(sorted(mod.methods))
        raise InvalidOperationError(
            "UNKNOWN_METHOD", f"module {module!r} has no method {method!r} (one of {known})"
        )
    return meth


def type_label(tp: Any) -> str:
    """A short readable name of an argument type (``bytes (hex)``, ``list[str]``, …)."""
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return " | ".join(type_label(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list[{type_label(args[0])}]"
        return f"[{', '.join(type_label(a) for a in args)}]"
    if origin is dict or origin is Mapping:
        kt, vt = typing.get_args(tp)
        return f"map[{type_label(kt)}, {type_label(vt)}]"
    if tp is type(None):
        return "null"
    if tp is bytes:
        return "bytes (hex)"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        inner = ", ".join(f"{n}: {type_label(t)}" for n, t in _fields(tp))
        return f"{{{inner}}}"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " | ".join(repr(m.value) for m in tp)
    return getattr(tp, "__name__", str(tp))


def _fields(cls: type) -> list[tuple[str, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]


@dataclass(frozen=True)
class MethodInfo:
    module: str
    method: str
    fields: tuple[tuple[str, str], ...]  # (name, type label)


def describe_methods() -> list[MethodInfo]:
    """Every native module method with its argument fields, in module then method order."""
    return [
        MethodInfo(
            mod_name,
            meth_name,
            tuple((n, type_label(t)) for n, t in _fields(meth.args_type)),
        )
        for mod_name, mod in NATIVE_MODULES.items()
        for meth_name, meth in mod.methods.items()
    ]


def _from_plain(tp: Any, value: Any, where: str) -> Any:
    """Map JSON-style data onto the CBOR data model guided by ``tp``: hex strings become bytes
    where ``tp`` wants bytes, lists stay lists. Anything else passes through unchanged for
    ``codec.from_cbor`` to judge."""
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        for alt in typing.get_args(tp):
            if alt is bytes and isinstance(value, str):
                return _hex_bytes(value, where)
        for alt in typing.get_args(tp):
            if alt is not type(None):
                try:
                    converted = _from_plain(alt, value, where)
                    codec.from_cbor(alt, converted, where)
                    return converted
                except (codec.CodecError, InvalidOperationError):
                    continue
        return value
    if origin is tuple and isinstance(value, list | tuple):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return [_from_plain(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
        if len(args) == len(value):
            return [
                _from_plain(a, v, f"{where}[{i}]")
                for i, (a, v) in enumerate(zip(args, value, strict=True))
            ]
        return list(value)
    if (origin is dict or origin is Mapping) and isinstance(value, Mapping):
        _, vt = typing.get_args(tp)
        return {k: _from_plain(vt, v, f"{where}[{k!r}]") for k, v in value.items()}
    if tp is bytes and isinstance(value, str):
        return _hex_bytes(value, where)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
        types_ = dict(_fields(tp))
        return {
            k: (_from_plain(types_[k], v, f"{where}.{k}") if k in types_ else v)
            for k, v in value.items()
        }
    if isinstance(value, tuple):
        return list(value)
    return value


def _hex_bytes(text: str, where: str) -> bytes:
    body = text[2:] if text[:2].lower() == "0x" else text
    if not _HEX.fullmatch(body):
        raise InvalidOperationError(
            "BAD_ARGUMENTS", f"{where}: expected bytes as an even-length hex string, got {text!r}"
        )
    return bytes.fromhex(body)


def takes_sealed_identity(module: str, method: str) -> bool:
    """Whether ``module.method`` carries an identity commitment and a sealed identity."""
    names = {n for n, _ in _fields(find_method(module, method).args_type)}
    return set(IDENTITY_FIELDS) <= names


def check_identity_args(module: str, method: str, args: Mapping[str, Any]) -> None:
    """Raise ``InvalidOperationError`` unless ``module.method`` takes a sealed identity and
    ``args`` leave both identity fields to be filled in by client-side sealing."""
    if not takes_sealed_identity(module, method):
        raise InvalidOperationError(
            "BAD_ARGUMENTS", f"{module}.{method} takes no identity data to seal"
        )
    given = sorted(f for f in IDENTITY_FIELDS if f in args)
    if given:
        raise InvalidOperationError(
            "BAD_ARGUMENTS", f"args: {given} are computed from the identity record; omit them"
        )


def check_identity_record(identity: Any) -> dict[str, Any]:
    """A clear identity record: a non-empty JSON object with string keys."""
    if not isinstance(identity, Mapping) or not identity:
        raise InvalidOperationError("BAD_ARGUMENTS", "identity: expected a non-empty JSON object")
    if not all(isinstance(k, str) for k in identity):
        raise InvalidOperationError("BAD_ARGUMENTS", "identity: keys must be strings")
    try:
        codec.encode(dict(identity))
    except codec.CodecError as exc:
        raise InvalidOperationError("BAD_ARGUMENTS", f"identity: {exc}") from exc
    return dict(identity)


def prepare_args(module: str, method: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """Transaction arguments for ``module.method`` from plain data, checked exactly as the chain
    will check them (every field present, no unknown field, right types, the dataclass's own
    validation); ``InvalidOperationError`` (code ``BAD_ARGUMENTS``) says what is wrong."""
    meth = find_method(module, method)
    if not isinstance(args, Mapping):
        raise InvalidOperationError("BAD_ARGUMENTS", "args: expected a JSON object")
    converted = _from_plain(meth.args_type, dict(args), "args")
    try:
        codec.from_cbor(meth.args_type, converted, "args")
    except codec.CodecError as exc:
        raise InvalidOperationError("BAD_ARGUMENTS", str(exc)) from exc
    assert isinstance(converted, dict)
    return converted


# ---------------------------------------------------------------------------------------------
# The operator


class Operator:
    """One account acting on the chain through one node's client port (blocking calls)."""

    def __init__(
        self,
        key: KeyPair,
        suite: Suite,
        chain_id: str,
        host: str,
        port: int,
        *,
        sender: bytes | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.key = key
        self.suite = suite
        self.chain_id = chain_id
        self.host = host
        self.port = port
        self.address = sender if sender is not None else suite.address(key.public_key)
        self.timeout_s = timeout_s
        self._nonce: int | None = None
        # Regulator accounts to seal identity data to (addresses stay when keys rotate).
        self.regulators: tuple[bytes, ...] = ()

    @classmethod
    def from_node_home(
        cls, key: KeyPair, node_home: Path, *, sender: bytes | None = None
    ) -> Operator:
        """Chain id and suite from the node's genesis, host and client port from its config,
        the regulators' addresses (for sealing identity data) from the genesis accounts."""
        genesis = load_genesis(node_home)
        config = NodeConfig.load(node_home)
        suite = get_suite(genesis.suite)
        op = cls(key, suite, genesis.chain_id, config.host, config.client_port, sender=sender)
        op.regulators = tuple(
            suite.address(a.public_key) for a in genesis.accounts if "regulator" in a.roles
        )
        return op

    def _request(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return client_call(self.host, self.port, kind, body, timeout_s=self.timeout_s)

    def account(self) -> dict[str, Any]:
        """This account as committed: nonce, org_id, roles, frozen (``OperationError`` if the
        chain does not know it)."""
        reply = self._request("account.get", {"address": self.address})
        if not reply.get("ok"):
            raise OperationError(str(reply.get("code")), str(reply.get("message")))
        return reply

    def state_value(self, key: bytes) -> bytes | None:
        """A committed state value (None: absent), checked against the proof of membership or
        absence the node sends with the state root it reports. ``InvalidOperationError`` if the
        node cannot serve state or its proof does not hold."""
        reply = self._request("state.get", {"key": key})
        if not reply.get("ok"):
            raise InvalidOperationError(
                str(reply.get("code")), f"state.get: {reply.get('message')}"
            )
        root, raw_proof = reply.get("state_root"), reply.get("proof")
        value = reply.get("value")
        try:
            if not isinstance(root, bytes) or not isinstance(raw_proof, bytes):
                raise StateTreeError("the reply lacks a state root or proof")
            proof = StateProof.from_bytes(raw_proof)
            if proof.key != key or proof.value != value:
                raise StateTreeError("the proof is for another key or value")
            return verify_state_proof(self.suite.hash, root, proof)
        except StateTreeError as exc:
            raise InvalidOperationError("BAD_STATE_PROOF", f"state.get: {exc}") from exc

    def public_key_of(self, address: bytes) -> bytes:
        """A registry account's current public key, read from the chain."""
        raw = self.state_value(account_key(address))
        if raw is None:
            raise InvalidOperationError("NOT_FOUND", f"no registry account {address.hex()}")
        return decode_record(Account, raw).public_key

    def regulator_public_key(self) -> bytes:
        """The current key of the first genesis regulator account the chain still holds."""
        for address in self.regulators:
            raw = self.state_value(account_key(address))
            if raw is not None:
                acct = decode_record(Account, raw)
                if "regulator" in acct.roles:
                    return acct.public_key
        raise InvalidOperationError(
            "NO_REGULATOR", "no regulator account found on the chain: give its public key"
        )

    def with_sealed_identity(
        self,
        module: str,
        method: str,
        args: Mapping[str, Any],
        identity: Mapping[str, Any],
        *,
        regulator_public_key: bytes | None = None,
    ) -> dict[str, Any]:
        """``args`` plus ``identity_commitment`` and ``sealed_identity`` for the clear
        ``identity`` record, sealed here to this account (the opening institution) and the
        regulator (its current key from the chain unless given). The clear record and its salt
        stay on this machine; the commitment binds the record, the envelope lets only those two
        recipients open it."""
        check_identity_args(module, method, args)
        record = check_identity_record(identity)
        regulator = (
            regulator_public_key
            if regulator_public_key is not None
            else self.regulator_public_key()
        )
        try:
            self.suite.check_public_key(regulator)
            commitment, sealed, _salt = seal_identity(
                self.suite, record, self.key.public_key, regulator
            )
        except (CryptoError, codec.CodecError) as exc:
            raise InvalidOperationError(
                "BAD_ARGUMENTS", f"cannot seal the identity: {exc}"
            ) from exc
        return {**args, "identity_commitment": commitment, "sealed_identity": sealed}

    def next_nonce(self) -> int:
        """The nonce the next transaction uses (fetched once, then counted locally)."""
        if self._nonce is None:
            self._nonce = int(self.account()["nonce"])
        return self._nonce

    def submit(
        self, module: str, method: str, args: Mapping[str, Any], *, wait: bool = True
    ) -> OperationResult:
        """Validate, sign, submit; the outcome, failed or not (bad input still raises)."""
        prepared = prepare_args(module, method, args)
        result = self._submit_once(module, method, prepared, wait=wait)
        if not result.ok and result.code in _NONCE_CODES and result.tx_hash is None:
            self._nonce = None  # someone else used this account: refetch and retry once
            result = self._submit_once(module, method, prepared, wait=wait)
        return result

    def _submit_once(
        self, module: str, method: str, args: dict[str, Any], *, wait: bool
    ) -> OperationResult:
        nonce = self.next_nonce()
        tx = sign_transaction(
            self.suite,
            self.key,
            chain_id=self.chain_id,
            nonce=nonce,
            module=module,
            method=method,
            args=args,
            sender=self.address,
        )
        reply = self._request("tx.submit", {"tx": tx.encode(), "wait": wait})
        tx_hash = reply.get("tx_hash")
        if isinstance(tx_hash, bytes):
            self._nonce = nonce + 1  # admitted: the nonce is spent even if execution fails
        else:
            self._nonce = None
            tx_hash = None
        height = reply.get("height")
        return OperationResult(
            ok=bool(reply.get("ok")),
            code=str(reply.get("code", "")),
            message=str(reply.get("message", "")),
            height=height if isinstance(height, int) else None,
            tx_hash=tx_hash,
            module=module,
            method=method,
        )

    def call(self, module: str, method: str, args: Mapping[str, Any]) -> OperationResult:
        """Like ``submit`` with ``wait``, but a failure raises ``OperationError``."""
        result = self.submit(module, method, args, wait=True)
        if not result.ok:
            raise OperationError(
                result.code, result.message, tx_hash=result.tx_hash, height=result.height
            )
        return result


__all__ = [
    "IDENTITY_FIELDS",
    "InvalidOperationError",
    "MethodInfo",
    "OperationError",
    "OperationResult",
    "Operator",
    "check_identity_args",
    "check_identity_record",
    "describe_methods",
    "find_method",
    "prepare_args",
    "takes_sealed_identity",
    "type_label",
]
