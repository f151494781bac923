"""The anchoring module of the supervision chain: a light client per registered business chain.

The records and keys below are the contract the relayer and the evidence bundles rely on: keep
them stable.

- ``register_chain(chain_id, suite, genesis_hash, genesis_time_ms, validators)`` — role
  ``regulator`` only, once per chain id (CHAIN_EXISTS); ``suite`` is a known suite name
  (UNKNOWN_SUITE), every validator's address matches its public key in that suite
  (INVALID_VALIDATOR_SET). The light client starts at the business chain's genesis: an
  ``AnchoredChain`` at height 0 and the genesis set at ``vset_key(chain, 1)``.
- ``anchor(chain_id, headers)`` — role ``relayer``; 1..``MAX_BATCH`` consecutive
  ``CertifiedHeader``s following ``AnchoredChain.height``. Each passes
  ``consortia.ledger.light.advance`` with the business chain's own suite, or the whole batch fails
  with the rejection's code (WRONG_CHAIN, OUT_OF_ORDER, BROKEN_LINK, VALIDATOR_SET_MISMATCH,
  BAD_CERTIFICATE) and a message naming the height; UNKNOWN_CHAIN for an unregistered chain.
  Writes an ``Anchor`` per header, the new trusted head, and ``vset_key(chain, h + 1)`` when header
  ``h`` announces a new validator set (so the set changes only through certified headers). Emits
  ``anchored`` (chain_id, from_height, to_height, block_hash of the last). Re-submitting anchored
  heights fails with OUT_OF_ORDER and changes nothing: a relayer resumes from
  ``AnchoredChain.height + 1`` and may retry a batch safely.

Batch size: a transaction is at most ``MAX_TX_BYTES`` (64 KiB) encoded. One certified header costs
about 610 + 125·n bytes with n precommits (both suites), plus about 110 bytes per validator when it
carries a new set. Measured maxima: 58 headers with 4 validators, 44 with 7, 35 with 10, 21 with
20. ``RELAY_BATCH`` (32) fits up to 10 validators; ``MAX_BATCH`` (64) is the method's own cap.

State keys:

- ``anchoring/chain/<chain id>`` → ``AnchoredChain`` (the light client: what it trusts now)
- ``anchoring/header/<chain id>/<height, 8 bytes big-endian>`` → ``Anchor`` (every anchored
  business header, in order, no gaps)
- ``anchoring/vset/<chain id>/<first height, 8 bytes big-endian>`` → ``ValidatorSet`` (the
  business chain's validator-set history: the set that certifies heights from that one on)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from consortia import codec
from consortia.crypto import SUITES, CryptoError, get_suite
from consortia.execution.context import TxContext
from consortia.execution.errors import TxFailure
from consortia.execution.module import Method, Module
from consortia.ledger import light
from consortia.ledger.state_tree import StateTree
from consortia.ledger.types import Event, ValidatorSet
from consortia.modules.registry import Account, require_account, require_role
from consortia.modules.registry import InvalidFieldError as InvalidArgumentError

NAME = "anchoring"

MAX_BATCH = 64  # headers per ``anchor`` transaction (the byte bound may allow fewer: see above)
RELAY_BATCH = 32  # what a relayer should send: fits MAX_TX_BYTES with up to 10 validators
MAX_VALIDATORS = 150  # of a registered chain's genesis set
MAX_TIME_MS = (1 << 63) - 1
# The same alphabet as a genesis chain id (``consortia.execution.genesis.CHAIN_ID_RE``).
CHAIN_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class AnchoredChain:
    """A registered business chain and its light client's trusted head."""

    chain_id: str
    suite: str  # the business chain's crypto suite (may differ from the supervision chain's)
    genesis_hash: bytes
    genesis_time_ms: int
    height: int  # last anchored height (0 = only genesis)
    block_hash: bytes  # of ``height`` (the genesis hash at 0)
    time_ms: int
    state_root: bytes
    next_validators: ValidatorSet  # the set that must certify ``height + 1``
    registered_height: int  # supervision height of the registration
    registered_by: bytes


@dataclass(frozen=True)
class Anchor:
    """One business header accepted by the light client (the parts evidence needs)."""

    chain_id: str
    height: int
    block_hash: bytes
    time_ms: int
    state_root: bytes
    transactions_root: bytes
    receipts_root: bytes
    anchored_height: int  # the supervision height whose block anchored it


CHAIN_PREFIX = b"anchoring/chain/"


def chain_key(chain_id: str) -> bytes:
    return CHAIN_PREFIX + chain_id.encode()


def chain_id_of_key(key: bytes) -> str | None:
    """The chain id an ``anchoring/chain/<id>`` state key names; None for any other key."""
    if not key.startswith(CHAIN_PREFIX):
        return None
    return key[len(CHAIN_PREFIX) :].decode()


def anchor_key(chain_id: str, height: int) -> bytes:
    return b"anchoring/header/" + chain_id.encode() + b"/" + height.to_bytes(8, "big")


def vset_key(chain_id: str, first_height: int) -> bytes:
    return b"anchoring/vset/" + chain_id.encode() + b"/" + first_height.to_bytes(8, "big")


# ---------------------------------------------------------------------------------------------
# Failures (stable codes)


class ChainExistsError(TxFailure):
    code = "CHAIN_EXISTS"


class UnknownChainError(TxFailure):
    code = "UNKNOWN_CHAIN"


class UnknownSuiteError(TxFailure):
    code = "UNKNOWN_SUITE"


class InvalidValidatorSetError(TxFailure):
    code = "INVALID_VALIDATOR_SET"


class LightClientRejectedError(TxFailure):
    """A header the light client refused for a reason without a more specific code."""

    code = "LIGHT_CLIENT_REJECTED"


class WrongChainError(TxFailure):
    code = "WRONG_CHAIN"


class OutOfOrderError(TxFailure):
    code = "OUT_OF_ORDER"


class BrokenLinkError(TxFailure):
    code = "BROKEN_LINK"


class ValidatorSetMismatchError(TxFailure):
    code = "VALIDATOR_SET_MISMATCH"


class BadCertificateError(TxFailure):
    code = "BAD_CERTIFICATE"


# Each light-client rejection becomes the transaction failure with the same stable code.
_REJECTIONS: dict[type[light.LightClientError], type[TxFailure]] = {
    light.WrongChainError: WrongChainError,
    light.OutOfOrderError: OutOfOrderError,
    light.BrokenLinkError: BrokenLinkError,
    light.ValidatorSetMismatchError: ValidatorSetMismatchError,
    light.BadCertificateError: BadCertificateError,
}
assert all(light_cls.code == tx_cls.code for light_cls, tx_cls in _REJECTIONS.items())


# ---------------------------------------------------------------------------------------------
# Reads (also used by the reports and orders modules)


def require_chain(ctx: TxContext, chain_id: str) -> AnchoredChain:
    chain = ctx.get_record(chain_key(chain_id), AnchoredChain)
    if chain is None:
        raise UnknownChainError(f"no business chain {chain_id!r} is registered")
    return chain


def load_anchor(ctx: TxContext, chain_id: str, height: int) -> Anchor | None:
    if not 0 < height < 1 << 64:
        return None
    return ctx.get_record(anchor_key(chain_id, height), Anchor)


def read_chain(tree: StateTree, chain_id: str) -> AnchoredChain | None:
    """A registered chain's record in a state tree (None: not registered)."""
    raw = tree.get(chain_key(chain_id))
    return None if raw is None else codec.decode_struct(AnchoredChain, raw)


def registered_chains(tree: StateTree) -> frozenset[str]:
    """Every registered chain id: one pass over the whole tree (it has no prefix index, so
    callers keep the result and follow ``chains_changed_by`` from then on)."""
    found = (chain_id_of_key(key) for key, _ in tree.items())
    return frozenset(c for c in found if c is not None)


def chains_changed_by(events: Iterable[Event]) -> frozenset[str]:
    """The chains whose ``AnchoredChain`` record these (committed) events say was written:
    registered (``chain_registered``) or advanced (``anchored``)."""
    return frozenset(
        str(ev.attributes["chain_id"])
        for ev in events
        if ev.module == NAME and ev.kind in ("chain_registered", "anchored")
    )


def _trusted(chain: AnchoredChain) -> light.TrustedHead:
    return light.TrustedHead(
        chain_id=chain.chain_id,
        height=chain.height,
        block_hash=chain.block_hash,
        time_ms=chain.time_ms,
        state_root=chain.state_root,
        next_validators=chain.next_validators,
    )


def _require_sender_role(ctx: TxContext, role: str) -> Account:
    sender = require_account(ctx, ctx.sender)
    require_role(sender, role)
    return sender


# ---------------------------------------------------------------------------------------------
# Methods


@dataclass(frozen=True)
class RegisterChainArgs:
    chain_id: str
    suite: str
    genesis_hash: bytes
    genesis_time_ms: int
    validators: ValidatorSet  # the genesis validator set (certifies height 1)


def register_chain(ctx: TxContext, args: RegisterChainArgs) -> None:
    """The regulator registers a business chain from its genesis: its light client starts there."""
    _require_sender_role(ctx, "regulator")
    if not CHAIN_ID_RE.fullmatch(args.chain_id):
        raise InvalidArgumentError("chain_id must be 1..64 of A-Z a-z 0-9 . _ -")
    if args.chain_id == ctx.chain_id:
        raise InvalidArgumentError("the supervision chain does not anchor itself")
    if args.suite not in SUITES:
        raise UnknownSuiteError(f"suite {args.suite!r} is not one of {list(SUITES)}")
    suite = get_suite(args.suite)
    if len(args.genesis_hash) != len(suite.hash(b"")):
        raise InvalidArgumentError(f"genesis_hash must be a {args.suite} hash")
    if not 0 <= args.genesis_time_ms <= MAX_TIME_MS:
        raise InvalidArgumentError(f"genesis_time_ms must be in 0..{MAX_TIME_MS}")
    members = args.validators.validators
    if len(members) > MAX_VALIDATORS:
        raise InvalidValidatorSetError(f"at most {MAX_VALIDATORS} validators")
    for v in members:
        try:
            address = suite.address(v.public_key)
        except CryptoError as exc:
            raise InvalidValidatorSetError(
                f"validator {v.address.hex()}: invalid {args.suite} public key: {exc}"
            ) from exc
        if address != v.address:
            raise InvalidValidatorSetError(
                f"validator {v.address.hex()}: address does not match its {args.suite} public key"
            )
    if ctx.get(chain_key(args.chain_id)) is not None:
        raise ChainExistsError(f"business chain {args.chain_id!r} is already registered")
    ctx.put_record(
        chain_key(args.chain_id),
        AnchoredChain(
            chain_id=args.chain_id,
            suite=args.suite,
            genesis_hash=args.genesis_hash,
            genesis_time_ms=args.genesis_time_ms,
            height=0,
            block_hash=args.genesis_hash,
            time_ms=args.genesis_time_ms,
            state_root=light.ZERO_HASH,
            next_validators=args.validators,
            registered_height=ctx.height,
            registered_by=ctx.sender,
        ),
    )
    ctx.put_record(vset_key(args.chain_id, 1), args.validators)
    ctx.emit(
        NAME,
        "chain_registered",
        chain_id=args.chain_id,
        suite=args.suite,
        genesis_hash=args.genesis_hash,
        validators=len(members),
    )


@dataclass(frozen=True)
class AnchorArgs:
    chain_id: str
    headers: tuple[light.CertifiedHeader, ...]  # consecutive, from the anchored height + 1


def anchor(ctx: TxContext, args: AnchorArgs) -> None:
    """A relayer submits the next certified headers of a registered business chain.

    Every header must pass the light client (``consortia.ledger.light.advance``) with the
    business chain's suite, or the whole batch fails with the rejection's code.
    """
    _require_sender_role(ctx, "relayer")
    if not 1 <= len(args.headers) <= MAX_BATCH:
        raise InvalidArgumentError(f"a batch holds 1..{MAX_BATCH} headers")
    chain = require_chain(ctx, args.chain_id)
    suite = get_suite(chain.suite)
    trusted = _trusted(chain)
    first = trusted.height + 1
    for item in args.headers:
        try:
            after = light.advance(suite, trusted, item)
        except light.LightClientError as exc:
            failure = _REJECTIONS.get(type(exc), LightClientRejectedError)
            raise failure(f"{args.chain_id}: header at height {item.header.height}: {exc}") from exc
        h = item.header
        ctx.put_record(
            anchor_key(args.chain_id, h.height),
            Anchor(
                chain_id=args.chain_id,
                height=h.height,
                block_hash=after.block_hash,
                time_ms=h.time_ms,
                state_root=h.state_root,
                transactions_root=h.transactions_root,
                receipts_root=h.receipts_root,
                anchored_height=ctx.height,
            ),
        )
        if after.next_validators != trusted.next_validators:
            ctx.put_record(vset_key(args.chain_id, h.height + 1), after.next_validators)
        trusted = after
    ctx.put_record(
        chain_key(args.chain_id),
        replace(
            chain,
            height=trusted.height,
            block_hash=trusted.block_hash,
            time_ms=trusted.time_ms,
            state_root=trusted.state_root,
            next_validators=trusted.next_validators,
        ),
    )
    ctx.emit(
        NAME,
        "anchored",
        chain_id=args.chain_id,
        from_height=first,
        to_height=trusted.height,
        block_hash=trusted.block_hash,
    )


MODULE = Module(
    name=NAME,
    methods={
        "register_chain": Method(RegisterChainArgs, register_chain),
        "anchor": Method(AnchorArgs, anchor),
    },
)
