"""The supervision module of a business chain: a light client of the supervision chain, and
regulatory orders applied only with a proof that the supervision chain committed them.

- ``trust_supervision`` (the business chain's regulator, once): the supervision chain's genesis
  facts (chain id, crypto suite, genesis hash and time, validator set) start the light client.
- ``follow`` (role ``relayer``): 1..``MAX_HEADERS`` consecutive supervision headers, each with
  its commit certificate (and, when it announces one, the next validator set in full), accepted
  through ``consortia.ledger.light.advance``; the light client's set changes only through
  certified headers. Each followed header's state root is kept under its height.
- ``apply_order`` (role ``relayer``): an ``orders.Order`` with a state proof that, under the
  supervision state root of a followed height, ``orders.order_key(order_id)`` holds exactly
  ``codec.encode_struct(order)``. The order must be addressed to this chain and not applied
  before; it is then carried out with the rules of the direct operation (``enforcement`` freezes,
  unfreezes and forced transfers; ``securities`` trading halts and resumptions; ``governance``
  chain parameters), the order standing in for the authority. A business failure (an unknown
  account, a freeze id in use, ...) fails the transaction with that operation's code and records
  nothing, so the order can be applied again later.

Failures: NOT_AUTHORIZED, ALREADY_TRUSTED, NOT_TRUSTED, INVALID_ARGUMENT, the light client's
codes (WRONG_CHAIN, OUT_OF_ORDER, BROKEN_LINK, VALIDATOR_SET_MISMATCH, BAD_CERTIFICATE),
UNKNOWN_SUPERVISION_HEIGHT, ORDER_PROOF_INVALID, WRONG_TARGET_CHAIN, ORDER_ALREADY_APPLIED,
INVALID_ORDER, and those of the operation an order carries out.

State keys:

- ``supervision/client`` → ``SupervisionClient`` (what the light client trusts now)
- ``supervision/header/<height, 8 bytes big-endian>`` → ``FollowedHeader`` (every followed
  supervision header, in order, no gaps)
- ``supervision/applied/<order id>`` → ``AppliedOrder``
"""

from __future__ import annotations

from dataclasses import dataclass

from consortia import codec
from consortia.crypto import CryptoError, Suite, get_suite
from consortia.execution.context import TxContext
from consortia.execution.errors import TxFailure
from consortia.execution.module import Method, Module
from consortia.ledger.light import (
    CertifiedHeader,
    LightClientError,
    TrustedHead,
    advance,
    trust_genesis,
)
from consortia.ledger.state_tree import StateProof, StateTreeError, verify_state_proof
from consortia.ledger.types import ValidatorSet
from consortia.modules import enforcement, governance, securities
from consortia.modules.anchoring import CHAIN_ID_RE
from consortia.modules.investors import InvalidArgumentError, NotAuthorizedError, sender_account
from consortia.modules.orders import Order, order_key
from consortia.modules.registry import has_role

NAME = "supervision"

RELAYER_ROLE = "relayer"
MAX_HEADERS = 64  # per ``follow`` transaction

CLIENT_KEY = b"supervision/client"


def header_key(height: int) -> bytes:
    return b"supervision/header/" + height.to_bytes(8, "big")


def applied_key(order_id: str) -> bytes:
    return b"supervision/applied/" + order_id.encode()


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class SupervisionClient:
    """The supervision chain this business chain trusts, and its light client's head."""

    chain_id: str
    suite: str  # the supervision chain's crypto suite (may differ from this chain's)
    genesis_hash: bytes
    genesis_time_ms: int
    height: int  # last followed supervision height (0 = only genesis)
    block_hash: bytes  # of ``height`` (the genesis hash at 0)
    time_ms: int
    state_root: bytes
    next_validators: ValidatorSet  # the set that must certify ``height + 1``
    trusted_height: int  # business height of ``trust_supervision``
    trusted_by: bytes


@dataclass(frozen=True)
class FollowedHeader:
    """One supervision header accepted by the light client."""

    height: int
    block_hash: bytes
    time_ms: int
    state_root: bytes
    followed_height: int  # the business height whose block followed it


@dataclass(frozen=True)
class AppliedOrder:
    order_id: str
    kind: str
    reference: str
    supervision_height: int  # the supervision height whose state root proved the order
    applied_height: int
    applied_by: bytes  # the relayer account that carried it


# ---------------------------------------------------------------------------------------------
# Failures (stable codes)


class AlreadyTrustedError(TxFailure):
    code = "ALREADY_TRUSTED"


class NotTrustedError(TxFailure):
    code = "NOT_TRUSTED"


class UnknownSupervisionHeightError(TxFailure):
    code = "UNKNOWN_SUPERVISION_HEIGHT"


class OrderProofInvalidError(TxFailure):
    code = "ORDER_PROOF_INVALID"


class WrongTargetChainError(TxFailure):
    code = "WRONG_TARGET_CHAIN"


class OrderAlreadyAppliedError(TxFailure):
    code = "ORDER_ALREADY_APPLIED"


class InvalidOrderError(TxFailure):
    code = "INVALID_ORDER"


class HeaderRejectedError(TxFailure):
    """A supervision header the light client refused (base; subclasses carry its codes)."""

    code = "LIGHT_CLIENT_REJECTED"


class WrongChainError(HeaderRejectedError):
    code = "WRONG_CHAIN"


class OutOfOrderError(HeaderRejectedError):
    code = "OUT_OF_ORDER"


class BrokenLinkError(HeaderRejectedError):
    code = "BROKEN_LINK"


class ValidatorSetMismatchError(HeaderRejectedError):
    code = "VALIDATOR_SET_MISMATCH"


class BadCertificateError(HeaderRejectedError):
    code = "BAD_CERTIFICATE"


# The light client's rejection codes, as transaction failures with the same codes.
_HEADER_FAILURES: dict[str, type[HeaderRejectedError]] = {
    cls.code: cls
    for cls in (
        WrongChainError,
        OutOfOrderError,
        BrokenLinkError,
        ValidatorSetMismatchError,
        BadCertificateError,
    )
}


# ---------------------------------------------------------------------------------------------
# Helpers


def load_client(ctx: TxContext) -> SupervisionClient | None:
    return ctx.get_record(CLIENT_KEY, SupervisionClient)


def _require_client(ctx: TxContext) -> SupervisionClient:
    client = load_client(ctx)
    if client is None:
        raise NotTrustedError("this chain trusts no supervision chain yet (trust_supervision)")
    return client


def _require_relayer(ctx: TxContext) -> bytes:
    sender = sender_account(ctx)
    if not has_role(sender, RELAYER_ROLE):
        raise NotAuthorizedError(f"only a {RELAYER_ROLE!r} account may do this")
    return sender.address


def _suite_of(name: str) -> Suite:
    try:
        return get_suite(name)
    except CryptoError as exc:
        raise InvalidArgumentError(f"unknown crypto suite {name!r}") from exc


def _head_of(client: SupervisionClient) -> TrustedHead:
    return TrustedHead(
        chain_id=client.chain_id,
        height=client.height,
        block_hash=client.block_hash,
        time_ms=client.time_ms,
        state_root=client.state_root,
        next_validators=client.next_validators,
    )


# ---------------------------------------------------------------------------------------------
# Methods


@dataclass(frozen=True)
class TrustArgs:
    chain_id: str
    suite: str
    genesis_hash: bytes
    genesis_time_ms: int
    validators: ValidatorSet


def trust_supervision(ctx: TxContext, args: TrustArgs) -> None:
    """The regulator names, once, the supervision chain this business chain answers to."""
    sender = sender_account(ctx)
    if not has_role(sender, "regulator"):
        raise NotAuthorizedError("only the regulator names the supervision chain")
    if load_client(ctx) is not None:
        raise AlreadyTrustedError("this chain already trusts a supervision chain")
    cid = args.chain_id
    if not CHAIN_ID_RE.fullmatch(cid):
        raise InvalidArgumentError("chain_id must be 1..64 of A-Z a-z 0-9 . _ -")
    if cid == ctx.chain_id:
        raise InvalidArgumentError("a chain cannot supervise itself")
    suite = _suite_of(args.suite)
    if len(args.genesis_hash) != len(suite.hash(b"")):
        raise InvalidArgumentError(f"genesis_hash must be a {args.suite} hash")
    if args.genesis_time_ms < 0:
        raise InvalidArgumentError("genesis_time_ms must not be negative")
    for v in args.validators.validators:
        try:
            suite.check_public_key(v.public_key)
            ok = suite.address(v.public_key) == v.address
        except CryptoError as exc:
            raise InvalidArgumentError(f"validator {v.address.hex()}: {exc}") from exc
        if not ok or v.power <= 0:
            raise InvalidArgumentError(
                f"validator {v.address.hex()}: address must match its key, power be positive"
            )
    head = trust_genesis(cid, args.genesis_hash, args.genesis_time_ms, args.validators)
    ctx.put_record(
        CLIENT_KEY,
        SupervisionClient(
            chain_id=cid,
            suite=args.suite,
            genesis_hash=args.genesis_hash,
            genesis_time_ms=args.genesis_time_ms,
            height=head.height,
            block_hash=head.block_hash,
            time_ms=head.time_ms,
            state_root=head.state_root,
            next_validators=head.next_validators,
            trusted_height=ctx.height,
            trusted_by=sender.address,
        ),
    )
    ctx.emit(
        NAME,
        "supervision_trusted",
        chain_id=cid,
        suite=args.suite,
        genesis_hash=args.genesis_hash,
        validators=len(args.validators.validators),
    )


@dataclass(frozen=True)
class FollowArgs:
    headers: tuple[CertifiedHeader, ...]


def follow(ctx: TxContext, args: FollowArgs) -> None:
    """A relayer hands the light client the next consecutive certified supervision headers."""
    _require_relayer(ctx)
    client = _require_client(ctx)
    if not 1 <= len(args.headers) <= MAX_HEADERS:
        raise InvalidArgumentError(f"follow takes 1..{MAX_HEADERS} headers")
    suite = _suite_of(client.suite)
    head = _head_of(client)
    first = head.height + 1
    for item in args.headers:
        try:
            head = advance(suite, head, item)
        except LightClientError as exc:
            failure = _HEADER_FAILURES.get(exc.code, HeaderRejectedError)
            raise failure(f"supervision header {item.header.height}: {exc}") from exc
        ctx.put_record(
            header_key(head.height),
            FollowedHeader(head.height, head.block_hash, head.time_ms, head.state_root, ctx.height),
        )
    ctx.put_record(
        CLIENT_KEY,
        SupervisionClient(
            chain_id=client.chain_id,
            suite=client.suite,
            genesis_hash=client.genesis_hash,
            genesis_time_ms=client.genesis_time_ms,
            height=head.height,
            block_hash=head.block_hash,
            time_ms=head.time_ms,
            state_root=head.state_root,
            next_validators=head.next_validators,
            trusted_height=client.trusted_height,
            trusted_by=client.trusted_by,
        ),
    )
    ctx.emit(
        NAME,
        "supervision_followed",
        chain_id=client.chain_id,
        from_height=first,
        to_height=head.height,
        block_hash=head.block_hash,
    )


@dataclass(frozen=True)
class ApplyOrderArgs:
    order: Order
    height: int  # the followed supervision height whose state root proves the order
    proof: bytes  # ``StateProof.to_bytes()`` of ``orders.order_key(order.order_id)``


def _check_proof(client: SupervisionClient, root: bytes, args: ApplyOrderArgs) -> None:
    order = args.order
    try:
        proof = StateProof.from_bytes(args.proof)
        if proof.key != order_key(order.order_id):
            raise OrderProofInvalidError("the proof is for another state key")
        if proof.value != codec.encode_struct(order):
            raise OrderProofInvalidError("the proof is for another value than this order")
        proven = verify_state_proof(get_suite(client.suite).hash, root, proof)
    except StateTreeError as exc:
        raise OrderProofInvalidError(f"the order's state proof does not hold: {exc}") from exc
    if proven is None:  # unreachable with a value set, kept as a guard
        raise OrderProofInvalidError("the proof shows the order absent")


def _carry_out(ctx: TxContext, order: Order, client: SupervisionClient) -> None:
    """The order's operation, with the rules (and error codes) of the direct method."""
    kind, ref = order.kind, order.reference
    if kind == "freeze":
        enforcement.freeze_as(
            ctx,
            enforcement.FreezeArgs(
                freeze_id=order.freeze_id,
                code=order.code,
                account_id=order.account_id,
                amount=order.amount,
                reference=ref,
                expires_at_ms=order.expires_at_ms,
            ),
            order.issued_by,
            f"{NAME}:{client.chain_id}",
        )
    elif kind == "unfreeze":
        enforcement.unfreeze_as(ctx, enforcement.UnfreezeArgs(order.freeze_id, ref))
    elif kind == "forced_transfer":
        enforcement.forced_transfer_as(
            ctx, enforcement.ForcedTransferArgs(order.freeze_id, order.to_account, ref)
        )
    elif kind == "trading_halt":
        securities.halt_as_authority(ctx, securities.HaltArgs(order.code, ref))
    elif kind == "trading_resume":
        securities.resume_as_authority(ctx, securities.HaltArgs(order.code, ref))
    elif kind == "param_change":
        governance.check_param(order.param_name, order.param_value)
        ctx.put_record(
            governance.param_key(order.param_name), governance.ParamValue(order.param_value)
        )
        ctx.emit(
            NAME,
            "param_set",
            name=order.param_name,
            value=order.param_value,
            order_id=order.order_id,
            reference=ref,
        )
    else:
        raise InvalidOrderError(f"unknown order kind {kind!r}")


def apply_order(ctx: TxContext, args: ApplyOrderArgs) -> None:
    """A relayer carries a supervision order down, with the proof that supervision committed it."""
    relayer = _require_relayer(ctx)
    client = _require_client(ctx)
    order = args.order
    followed = (
        ctx.get_record(header_key(args.height), FollowedHeader)
        if 1 <= args.height <= client.height
        else None
    )
    if followed is None:
        raise UnknownSupervisionHeightError(
            f"supervision height {args.height} is not followed (followed up to {client.height})"
        )
    _check_proof(client, followed.state_root, args)
    if order.chain_id != ctx.chain_id:
        raise WrongTargetChainError(
            f"order {order.order_id!r} is addressed to {order.chain_id!r}, not {ctx.chain_id!r}"
        )
    if ctx.get(applied_key(order.order_id)) is not None:
        raise OrderAlreadyAppliedError(f"order {order.order_id!r} is already applied")
    _carry_out(ctx, order, client)
    ctx.put_record(
        applied_key(order.order_id),
        AppliedOrder(
            order_id=order.order_id,
            kind=order.kind,
            reference=order.reference,
            supervision_height=args.height,
            applied_height=ctx.height,
            applied_by=relayer,
        ),
    )
    ctx.emit(
        NAME,
        "order_applied",
        order_id=order.order_id,
        kind=order.kind,
        reference=order.reference,
        supervision_chain=client.chain_id,
        supervision_height=args.height,
        issued_height=order.issued_height,
    )


MODULE = Module(
    name=NAME,
    methods={
        "trust_supervision": Method(TrustArgs, trust_supervision),
        "follow": Method(FollowArgs, follow),
        "apply_order": Method(ApplyOrderArgs, apply_order),
    },
)
