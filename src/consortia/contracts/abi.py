"""The Solidity contract ABI: encode calls and constructor arguments, decode return values, event
logs and revert reasons, from a contract's ABI JSON (as solc and vyper emit it).

The binary encoding itself is the ``eth-abi`` package's; this module adds what a client of
consortia needs around it: parsing the ABI JSON into typed entries (``ContractAbi.parse``), finding
a function by name, full signature or 4-byte selector, turning JSON-style values into ABI values
and back (``from_json`` / ``to_json``), and decoding ``contracts.log`` events and revert payloads.
Every bad input (malformed ABI, unknown function, wrong number or kind of arguments, data that
does not decode) raises ``AbiError`` with a stable ``code`` and a message that names the culprit;
nothing else escapes.

JSON conventions (the CLI, the SDK and the REST API share them):

- ``address``: hex, ``0x`` optional, 20 bytes; decoded as lowercase ``0x``-prefixed hex;
- ``bytes`` / ``bytesN``: hex, ``0x`` optional (``bytesN`` is exactly N bytes); decoded as lowercase
  hex without a prefix, as everywhere else in consortia's JSON;
- ``uintN`` / ``intN``: a JSON integer, or a decimal or ``0x`` hex string (for values JavaScript
  cannot hold); decoded as a JSON integer when within ±(2**53 - 1), else as a decimal string;
- ``bool``, ``string``: themselves; arrays and tuples: JSON arrays (a tuple also takes an object
  keyed by component names); decoded tuples are objects when every component is named.

Events: an indexed parameter of a dynamic type (``string``, ``bytes``, arrays, tuples) is stored
by the EVM as the Keccak-256 hash of its encoding, so the decoded value is that 32-byte hash (the
``DecodedParam.hashed`` flag says so).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import DecodingError, EncodingError, ParseError
from eth_abi.grammar import ABIType, BasicType, TupleType, normalize, parse
from eth_hash.auto import keccak

MAX_ABI_JSON: Final = 64 * 1024  # as the contracts module stores at most
SELECTOR_SIZE: Final = 4
WORD: Final = 32
MAX_SAFE_INTEGER: Final = 2**53 - 1  # JavaScript's exact integers

ERROR_SELECTOR: Final = bytes.fromhex("08c379a0")  # Error(string)
PANIC_SELECTOR: Final = bytes.fromhex("4e487b71")  # Panic(uint256)
PANIC_REASONS: Final = {
    0x00: "generic compiler panic",
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "invalid storage byte array",
    0x31: "pop on an empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to an uninitialised function",
}


class AbiError(ValueError):
    """Bad ABI input or data, with a stable ``code``:

    ``BAD_ABI`` (the ABI JSON), ``UNKNOWN_FUNCTION``, ``AMBIGUOUS_FUNCTION``, ``BAD_ABI_ARGS`` (the
    values given), ``BAD_ABI_DATA`` (bytes that do not decode), ``UNKNOWN_EVENT``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def selector(signature: str) -> bytes:
    """The 4-byte selector of a canonical function signature (``transfer(address,uint256)``)."""
    return bytes(keccak(signature.encode()))[:SELECTOR_SIZE]


def event_topic(signature: str) -> bytes:
    """The topic 0 of a (non-anonymous) event with this canonical signature."""
    return bytes(keccak(signature.encode()))


def _parse_type(type_str: str) -> ABIType:
    """eth-abi's parse of a type string, aliases (``uint``, ``int``, ``byte``) normalized."""
    normalized: str = normalize(type_str)  # type: ignore[no-untyped-call]
    parsed: ABIType = parse(normalized)
    return parsed


def _type_str(t: ABIType) -> str:
    return str(t.to_type_str())  # type: ignore[no-untyped-call]


# ---------------------------------------------------------------------------------------------
# ABI entries


@dataclass(frozen=True)
class AbiParam:
    """One input or output: ``type`` is canonical (tuples spelled out: ``(uint256,address)[]``);
    ``components`` are a tuple's named members (for JSON objects); ``indexed`` is for events."""

    name: str
    type: str
    indexed: bool = False
    components: tuple[AbiParam, ...] = ()


@dataclass(frozen=True)
class AbiFunction:
    name: str
    inputs: tuple[AbiParam, ...]
    outputs: tuple[AbiParam, ...]
    state_mutability: str  # pure, view, nonpayable, payable

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(p.type for p in self.inputs)})"

    @property
    def selector(self) -> bytes:
        return selector(self.signature)

    @property
    def read_only(self) -> bool:
        """A ``view`` or ``pure`` function: a query answers it without a transaction."""
        return self.state_mutability in ("view", "pure")


@dataclass(frozen=True)
class AbiEvent:
    name: str
    inputs: tuple[AbiParam, ...]
    anonymous: bool = False

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(p.type for p in self.inputs)})"

    @property
    def topic(self) -> bytes:
        return event_topic(self.signature)


@dataclass(frozen=True)
class AbiCustomError:
    name: str
    inputs: tuple[AbiParam, ...]

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(p.type for p in self.inputs)})"

    @property
    def selector(self) -> bytes:
        return selector(self.signature)


@dataclass(frozen=True)
class DecodedParam:
    name: str
    type: str
    value: Any
    indexed: bool = False
    hashed: bool = False  # an indexed dynamic value: ``value`` is the hash of its encoding


@dataclass(frozen=True)
class DecodedEvent:
    """A log decoded against an ABI event."""

    event: AbiEvent
    params: tuple[DecodedParam, ...]

    def to_json(self) -> dict[str, Any]:
        """``{"event", "signature", "args": {name: value}, "params": [...]}`` (JSON conventions
        of this module; an unnamed parameter is keyed by its position)."""
        args: dict[str, Any] = {}
        params = []
        for i, p in enumerate(self.params):
            value = to_json(p.type, p.value) if not p.hashed else p.value.hex()
            args[p.name or str(i)] = value
            params.append(
                {
                    "name": p.name,
                    "type": p.type,
                    "indexed": p.indexed,
                    "hashed": p.hashed,
                    "value": value,
                }
            )
        return {
            "event": self.event.name,
            "signature": self.event.signature,
            "args": args,
            "params": params,
        }


def _text(entry: Mapping[str, Any], field: str, where: str, default: str | None = None) -> str:
    value = entry.get(field, default)
    if not isinstance(value, str):
        raise AbiError("BAD_ABI", f"{where}: {field!r} must be a string")
    return value


def _canonical(type_str: str, components: tuple[AbiParam, ...], where: str) -> str:
    if type_str.startswith("tuple"):
        suffix = type_str[len("tuple") :]
        type_str = f"({','.join(c.type for c in components)}){suffix}"
    try:
        parsed = _parse_type(type_str)
        parsed.validate()  # type: ignore[no-untyped-call]
    except (ParseError, ValueError) as exc:
        raise AbiError("BAD_ABI", f"{where}: bad type {type_str!r}: {exc}") from None
    return _type_str(parsed)


def _param(raw: Any, where: str, *, event: bool = False) -> AbiParam:
    if not isinstance(raw, Mapping):
        raise AbiError("BAD_ABI", f"{where}: a parameter must be an object")
    name = _text(raw, "name", where, "")
    type_str = _text(raw, "type", where)
    raw_components = raw.get("components", [])
    if not isinstance(raw_components, list):
        raise AbiError("BAD_ABI", f"{where}: 'components' must be a list")
    components = tuple(
        _param(c, f"{where}.{name or '?'}[{i}]") for i, c in enumerate(raw_components)
    )
    if type_str.startswith("tuple") and not components:
        raise AbiError("BAD_ABI", f"{where}: a tuple parameter needs its components")
    indexed = raw.get("indexed", False)
    if not isinstance(indexed, bool) or (indexed and not event):
        raise AbiError("BAD_ABI", f"{where}: 'indexed' is a boolean, on event inputs only")
    return AbiParam(name, _canonical(type_str, components, where), indexed, components)


def _params(
    entry: Mapping[str, Any], field: str, where: str, *, event: bool = False
) -> tuple[AbiParam, ...]:
    raw = entry.get(field, [])
    if not isinstance(raw, list):
        raise AbiError("BAD_ABI", f"{where}: {field!r} must be a list")
    return tuple(_param(p, f"{where}.{field}[{i}]", event=event) for i, p in enumerate(raw))


@dataclass(frozen=True)
class ContractAbi:
    """A contract's interface: its functions (overloads kept), events, errors and constructor."""

    functions: tuple[AbiFunction, ...] = ()
    events: tuple[AbiEvent, ...] = ()
    errors: tuple[AbiCustomError, ...] = ()
    constructor_inputs: tuple[AbiParam, ...] = ()

    @classmethod
    def parse(cls, source: str | bytes | Sequence[Any]) -> ContractAbi:
        """An ABI from its JSON text (at most 64 KiB; "" is the empty ABI) or the parsed list.
        ``AbiError`` ``BAD_ABI`` naming the bad entry otherwise."""
        if isinstance(source, str | bytes):
            if len(source) > MAX_ABI_JSON:
                raise AbiError("BAD_ABI", f"the ABI JSON is over {MAX_ABI_JSON} bytes")
            if not source.strip():
                return cls()
            try:
                entries = json.loads(source)
            except (ValueError, UnicodeDecodeError) as exc:
                raise AbiError("BAD_ABI", f"the ABI is not valid JSON: {exc}") from None
        else:
            entries = list(source)
        if not isinstance(entries, list):
            raise AbiError("BAD_ABI", "the ABI must be a JSON list of entries")
        functions: list[AbiFunction] = []
        events: list[AbiEvent] = []
        errors: list[AbiCustomError] = []
        ctor: tuple[AbiParam, ...] = ()
        for i, entry in enumerate(entries):
            where = f"ABI entry {i}"
            if not isinstance(entry, Mapping):
                raise AbiError("BAD_ABI", f"{where} is not an object")
            kind = _text(entry, "type", where, "function")
            if kind == "function":
                name = _text(entry, "name", where)
                where = f"function {name!r}"
                mutability = _text(entry, "stateMutability", where, "")
                if not mutability:  # older compilers: constant/payable flags
                    constant = entry.get("constant") is True
                    mutability = "view" if constant else "nonpayable"
                functions.append(
                    AbiFunction(
                        name,
                        _params(entry, "inputs", where),
                        _params(entry, "outputs", where),
                        mutability,
                    )
                )
            elif kind == "event":
                name = _text(entry, "name", where)
                anonymous = entry.get("anonymous", False)
                if not isinstance(anonymous, bool):
                    raise AbiError("BAD_ABI", f"event {name!r}: 'anonymous' must be a boolean")
                events.append(
                    AbiEvent(
                        name, _params(entry, "inputs", f"event {name!r}", event=True), anonymous
                    )
                )
            elif kind == "error":
                name = _text(entry, "name", where)
                errors.append(AbiCustomError(name, _params(entry, "inputs", f"error {name!r}")))
            elif kind == "constructor":
                ctor = _params(entry, "inputs", "constructor")
            elif kind not in ("fallback", "receive"):
                raise AbiError("BAD_ABI", f"{where}: unknown entry type {kind!r}")
        return cls(tuple(functions), tuple(events), tuple(errors), ctor)

    # -- lookup ---------------------------------------------------------------------------------

    def function(self, ref: str, *, arity: int | None = None) -> AbiFunction:
        """The function ``ref`` names: a name (if overloaded, the one taking ``arity``
        arguments), a full signature ``name(type,...)``, or a selector ``0x12345678``."""
        ref = ref.strip()
        if ref.startswith("0x") and len(ref) == 2 + 2 * SELECTOR_SIZE:
            try:
                wanted = bytes.fromhex(ref[2:])
            except ValueError:
                wanted = b""
            found = [f for f in self.functions if f.selector == wanted]
        elif "(" in ref:
            try:
                name, _, rest = ref.partition("(")
                types = [t for t in rest.rstrip(")").split(",") if t]
                canonical = f"{name}({','.join(_type_str(_parse_type(t)) for t in types)})"
            except ParseError:
                canonical = ref
            found = [f for f in self.functions if f.signature in (canonical, ref)]
        else:
            found = [f for f in self.functions if f.name == ref]
            if len(found) > 1 and arity is not None:
                found = [f for f in found if len(f.inputs) == arity]
        if not found:
            names = sorted({f.name for f in self.functions})
            raise AbiError(
                "UNKNOWN_FUNCTION",
                f"the ABI has no function {ref!r} (it has: {', '.join(names) or 'none'})",
            )
        if len(found) > 1:
            sigs = ", ".join(f.signature for f in found)
            raise AbiError(
                "AMBIGUOUS_FUNCTION", f"{ref!r} is overloaded ({sigs}): give the full signature"
            )
        return found[0]

    def function_by_selector(self, sel: bytes) -> AbiFunction | None:
        return next((f for f in self.functions if f.selector == sel), None)

    def event_by_topic(self, topic: bytes) -> AbiEvent | None:
        return next((e for e in self.events if not e.anonymous and e.topic == topic), None)

    # -- encoding -------------------------------------------------------------------------------

    def encode_constructor(self, *args: Any) -> bytes:
        """The constructor arguments, ABI-encoded (to append to the init code)."""
        return encode_values(self.constructor_inputs, args, "constructor")

    def encode_call(self, ref: str, *args: Any) -> bytes:
        """Calldata: the function's selector and its encoded arguments (JSON-style values)."""
        fn = self.function(ref, arity=len(args))
        return fn.selector + encode_values(fn.inputs, args, fn.signature)

    def decode_call(self, data: bytes) -> tuple[AbiFunction, tuple[Any, ...]]:
        """The function and arguments of calldata (``UNKNOWN_FUNCTION`` for a foreign selector)."""
        fn = self.function_by_selector(bytes(data[:SELECTOR_SIZE]))
        if fn is None:
            raise AbiError("UNKNOWN_FUNCTION", f"no function has selector 0x{data[:4].hex()}")
        return fn, decode_values(fn.inputs, bytes(data[SELECTOR_SIZE:]), fn.signature)

    def decode_output(self, ref: str | AbiFunction, data: bytes) -> tuple[Any, ...]:
        """A function's return values."""
        fn = ref if isinstance(ref, AbiFunction) else self.function(ref)
        return decode_values(fn.outputs, data, f"the output of {fn.signature}")

    def output_json(self, ref: str | AbiFunction, data: bytes) -> Any:
        """A function's return values as JSON: the single value for one output, else a list (an
        object if every output is named)."""
        fn = ref if isinstance(ref, AbiFunction) else self.function(ref)
        values = self.decode_output(fn, data)
        return _params_json(fn.outputs, values, single=True)

    # -- logs and reverts -----------------------------------------------------------------------

    def decode_log(self, topics: Sequence[bytes], data: bytes) -> DecodedEvent:
        """A log decoded against the ABI's events (``UNKNOWN_EVENT`` if none matches; an
        anonymous event is tried by its indexed count when topic 0 matches nothing)."""
        candidates: list[AbiEvent] = []
        if topics:
            named = self.event_by_topic(bytes(topics[0]))
            if named is not None:
                candidates.append(named)
        if not candidates:
            candidates = [
                e
                for e in self.events
                if e.anonymous and sum(p.indexed for p in e.inputs) == len(topics)
            ]
        last: AbiError | None = None
        for event in candidates:
            try:
                return _decode_event(event, topics, data)
            except AbiError as exc:
                last = exc
        if last is not None:
            raise last
        t0 = topics[0].hex() if topics else "none"
        raise AbiError("UNKNOWN_EVENT", f"no event of the ABI matches topic 0 {t0}")

    def revert_reason(self, output: bytes) -> str | None:
        """A revert payload for people: ``Error(string)``'s text, a ``Panic`` code's meaning, or
        a custom error of the ABI with its arguments; None if empty or unrecognised."""
        return revert_reason(output, self)


def _decode_event(event: AbiEvent, topics: Sequence[bytes], data: bytes) -> DecodedEvent:
    indexed_topics = list(topics if event.anonymous else topics[1:])
    indexed = [p for p in event.inputs if p.indexed]
    if len(indexed_topics) != len(indexed):
        raise AbiError(
            "BAD_ABI_DATA",
            f"event {event.signature} has {len(indexed)} indexed parameters, "
            f"the log {len(indexed_topics)} topics",
        )
    plain = tuple(p for p in event.inputs if not p.indexed)
    plain_values = iter(decode_values(plain, data, f"the data of event {event.signature}"))
    topic_values = iter(indexed_topics)
    params: list[DecodedParam] = []
    for p in event.inputs:
        if not p.indexed:
            params.append(DecodedParam(p.name, p.type, next(plain_values)))
            continue
        topic = bytes(next(topic_values))
        if len(topic) != WORD:
            raise AbiError("BAD_ABI_DATA", "a log topic is 32 bytes")
        if _parse_type(p.type).is_dynamic or not isinstance(_parse_type(p.type), BasicType):
            params.append(DecodedParam(p.name, p.type, topic, indexed=True, hashed=True))
        else:
            (value,) = decode_values((p,), topic, f"topic {p.name!r} of {event.signature}")
            params.append(DecodedParam(p.name, p.type, value, indexed=True))
    return DecodedEvent(event, tuple(params))


def revert_reason(output: bytes, contract: ContractAbi | None = None) -> str | None:
    """See ``ContractAbi.revert_reason`` (without an ABI only ``Error``/``Panic`` are known)."""
    if len(output) < SELECTOR_SIZE:
        return None
    sel, body = bytes(output[:SELECTOR_SIZE]), bytes(output[SELECTOR_SIZE:])
    try:
        if sel == ERROR_SELECTOR:
            (text,) = abi_decode(["string"], body)
            return str(text)
        if sel == PANIC_SELECTOR:
            (code,) = abi_decode(["uint256"], body)
            what = PANIC_REASONS.get(int(code), "unknown panic code")
            return f"panic 0x{int(code):02x}: {what}"
        for err in contract.errors if contract is not None else ():
            if err.selector == sel:
                values = decode_values(err.inputs, body, err.signature)
                args = json.dumps(_params_json(err.inputs, values, single=False))
                return f"{err.name}{args}"
    except (DecodingError, AbiError, UnicodeDecodeError):
        return None
    return None


# ---------------------------------------------------------------------------------------------
# Values: JSON ⇄ ABI


def encode_values(params: Sequence[AbiParam], args: Sequence[Any], where: str) -> bytes:
    """``args`` (JSON-style values) encoded as ``params``; ``BAD_ABI_ARGS`` naming the argument
    otherwise."""
    if len(args) != len(params):
        raise AbiError(
            "BAD_ABI_ARGS", f"{where} takes {len(params)} arguments, {len(args)} were given"
        )
    values = [
        from_json(p.type, a, f"{where} argument {p.name or i}", p.components)
        for i, (p, a) in enumerate(zip(params, args, strict=True))
    ]
    try:
        return bytes(abi_encode([p.type for p in params], values))
    except (EncodingError, TypeError, ValueError, OverflowError) as exc:
        raise AbiError("BAD_ABI_ARGS", f"{where}: {exc}") from None


def decode_values(params: Sequence[AbiParam], data: bytes, where: str) -> tuple[Any, ...]:
    """``data`` decoded as ``params`` (strictly: bad padding or pointers are errors)."""
    try:
        return tuple(abi_decode([p.type for p in params], bytes(data), strict=True))
    except (DecodingError, OverflowError, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise AbiError("BAD_ABI_DATA", f"{where} does not decode: {exc}") from None


def _hex_bytes(value: Any, where: str) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if not isinstance(value, str):
        raise AbiError("BAD_ABI_ARGS", f"{where}: expected a hex string")
    body = value[2:] if value[:2].lower() == "0x" else value
    try:
        return bytes.fromhex(body)
    except ValueError:
        raise AbiError("BAD_ABI_ARGS", f"{where}: {value!r} is not hex") from None


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise AbiError("BAD_ABI_ARGS", f"{where}: expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if text.lower().startswith(("0x", "-0x")):
                return int(text, 16)
            if text.lstrip("-").isdigit():
                return int(text, 10)
        except ValueError:
            pass
    raise AbiError("BAD_ABI_ARGS", f"{where}: expected an integer, got {value!r}")


def from_json(
    type_str: str, value: Any, where: str = "value", components: tuple[AbiParam, ...] = ()
) -> Any:
    """A JSON-style value as eth-abi takes it for ``type_str`` (see the module's conventions);
    ``AbiError`` ``BAD_ABI_ARGS`` naming ``where`` when it cannot be."""
    t = _parse_type(type_str)
    return _from_json(t, value, where, components)


def _from_json(t: ABIType, value: Any, where: str, components: tuple[AbiParam, ...]) -> Any:
    if t.is_array:
        if not isinstance(value, list | tuple):
            raise AbiError("BAD_ABI_ARGS", f"{where}: expected a list for {_type_str(t)}")
        dims = t.arrlist[-1] if t.arrlist else ()
        if dims and len(value) != dims[0]:
            raise AbiError("BAD_ABI_ARGS", f"{where}: expected {dims[0]} items, got {len(value)}")
        item = t.item_type
        return [_from_json(item, v, f"{where}[{i}]", components) for i, v in enumerate(value)]
    if isinstance(t, TupleType):
        if isinstance(value, Mapping):
            if not components or any(not c.name for c in components):
                raise AbiError("BAD_ABI_ARGS", f"{where}: this tuple takes a list, not an object")
            unknown = set(value) - {c.name for c in components}
            if unknown:
                raise AbiError("BAD_ABI_ARGS", f"{where}: unknown fields {sorted(unknown)}")
            try:
                value = [value[c.name] for c in components]
            except KeyError as exc:
                raise AbiError("BAD_ABI_ARGS", f"{where}: missing field {exc}") from None
        if not isinstance(value, list | tuple) or len(value) != len(t.components):
            raise AbiError(
                "BAD_ABI_ARGS", f"{where}: expected {len(t.components)} values for a tuple"
            )
        subs = components if len(components) == len(t.components) else ()
        return tuple(
            _from_json(
                ct,
                v,
                f"{where}.{subs[i].name if subs and subs[i].name else i}",
                subs[i].components if subs else (),
            )
            for i, (ct, v) in enumerate(zip(t.components, value, strict=True))
        )
    assert isinstance(t, BasicType)
    base = t.base
    if base == "address":
        raw = _hex_bytes(value, where)
        if len(raw) != 20:
            raise AbiError("BAD_ABI_ARGS", f"{where}: an address is 20 bytes, got {len(raw)}")
        return raw
    if base == "bytes":
        raw = _hex_bytes(value, where)
        if t.sub is not None and len(raw) != t.sub:
            raise AbiError(
                "BAD_ABI_ARGS", f"{where}: bytes{t.sub} is {t.sub} bytes, got {len(raw)}"
            )
        return raw
    if base in ("uint", "int"):
        return _integer(value, where)
    if base == "bool":
        if not isinstance(value, bool):
            raise AbiError("BAD_ABI_ARGS", f"{where}: expected true or false, got {value!r}")
        return value
    if base == "string":
        if not isinstance(value, str):
            raise AbiError("BAD_ABI_ARGS", f"{where}: expected a string, got {value!r}")
        return value
    raise AbiError("BAD_ABI_ARGS", f"{where}: type {_type_str(t)} is not supported")


def to_json(type_str: str, value: Any, components: tuple[AbiParam, ...] = ()) -> Any:
    """A decoded ABI value as JSON (see the module's conventions)."""
    return _to_json(_parse_type(type_str), value, components)


def _to_json(t: ABIType, value: Any, components: tuple[AbiParam, ...]) -> Any:
    if t.is_array:
        return [_to_json(t.item_type, v, components) for v in value]
    if isinstance(t, TupleType):
        subs = components if len(components) == len(t.components) else ()
        items = [
            _to_json(ct, v, subs[i].components if subs else ())
            for i, (ct, v) in enumerate(zip(t.components, value, strict=True))
        ]
        if subs and all(c.name for c in subs):
            return {c.name: v for c, v in zip(subs, items, strict=True)}
        return items
    assert isinstance(t, BasicType)
    if t.base == "address":
        text = value if isinstance(value, str) else "0x" + bytes(value).hex()
        return text.lower()
    if t.base == "bytes":
        return bytes(value).hex()
    if t.base in ("uint", "int"):
        number = int(value)
        return number if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER else str(number)
    return value


def _params_json(params: Sequence[AbiParam], values: Sequence[Any], *, single: bool) -> Any:
    items = [to_json(p.type, v, p.components) for p, v in zip(params, values, strict=True)]
    if single and len(items) == 1:
        return items[0]
    if params and all(p.name for p in params):
        return {p.name: v for p, v in zip(params, items, strict=True)}
    return items


__all__ = [
    "MAX_ABI_JSON",
    "AbiCustomError",
    "AbiError",
    "AbiEvent",
    "AbiFunction",
    "AbiParam",
    "ContractAbi",
    "DecodedEvent",
    "DecodedParam",
    "decode_values",
    "encode_values",
    "event_topic",
    "from_json",
    "revert_reason",
    "selector",
    "to_json",
]
