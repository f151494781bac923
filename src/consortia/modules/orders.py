"""The orders module of the supervision chain: regulatory orders addressed to business chains.

The record and key below are the contract the business chain's ``supervision`` module relies on
when it applies an order proven against a supervision header (it decodes ``Order`` from a state
proof of ``order_key``): keep them stable.

``issue_order`` (role ``regulator`` only) records an order addressed to a business chain that is
registered with the ``anchoring`` module; the order stores ``issued_by`` (the sender) and
``issued_height``, and emits ``order_issued`` (order_id, chain_id, kind, reference). An order is
never changed afterwards: a revocation is a new order (``unfreeze``, ``trading_resume``, another
``param_change``). Failures: NOT_AUTHORIZED, INVALID_ARGUMENT (order id, reference),
INVALID_ORDER (unknown kind, a required field empty / not positive, an unused field set),
UNKNOWN_CHAIN, ORDER_EXISTS.

State key: ``orders/order/<order id>`` → ``Order``.

Kinds and the fields each uses (others stay empty / zero):

- ``freeze``: freeze_id, code ("" = the whole securities account), account_id, amount (0 for a
  whole account), expires_at_ms
- ``unfreeze``: freeze_id
- ``forced_transfer``: freeze_id, to_account
- ``trading_halt`` / ``trading_resume``: code
- ``param_change``: param_name, param_value

Required fields: ids, account ids and names non-empty; ``amount`` > 0 when ``code`` is set (0 for a
whole-account freeze); ``expires_at_ms`` after the issuing block's time; ``param_value`` ≥ 0;
``reference`` always.
"""

from __future__ import annotations

from dataclasses import dataclass

from consortia.execution.context import TxContext
from consortia.execution.errors import TxFailure
from consortia.execution.module import Method, Module
from consortia.modules.anchoring import require_chain
from consortia.modules.registry import InvalidFieldError as InvalidArgumentError
from consortia.modules.registry import check_text, is_id, require_account, require_role

NAME = "orders"

MAX_ID = 64
MAX_AMOUNT = (1 << 63) - 1

ORDER_KINDS: frozenset[str] = frozenset(
    {"freeze", "unfreeze", "forced_transfer", "trading_halt", "trading_resume", "param_change"}
)


@dataclass(frozen=True)
class Order:
    order_id: str
    chain_id: str  # the business chain it is addressed to
    kind: str
    freeze_id: str
    code: str
    account_id: str
    amount: int
    expires_at_ms: int
    to_account: str
    param_name: str
    param_value: int
    reference: str  # the legal / regulatory reference
    issued_by: bytes
    issued_height: int


def order_key(order_id: str) -> bytes:
    return b"orders/order/" + order_id.encode()


# The fields each kind uses (every other field of ``IssueOrderArgs`` must stay empty / zero).
KIND_FIELDS: dict[str, frozenset[str]] = {
    "freeze": frozenset({"freeze_id", "code", "account_id", "amount", "expires_at_ms"}),
    "unfreeze": frozenset({"freeze_id"}),
    "forced_transfer": frozenset({"freeze_id", "to_account"}),
    "trading_halt": frozenset({"code"}),
    "trading_resume": frozenset({"code"}),
    "param_change": frozenset({"param_name", "param_value"}),
}
assert frozenset(KIND_FIELDS) == ORDER_KINDS
_ID_FIELDS = ("freeze_id", "code", "account_id", "to_account", "param_name")
_INT_FIELDS = ("amount", "expires_at_ms", "param_value")
# Fields a kind uses that may still be empty / zero: a whole-account freeze has no code and no
# amount; a parameter may be set to 0.
_OPTIONAL: dict[str, frozenset[str]] = {
    "freeze": frozenset({"code", "amount"}),
    "param_change": frozenset({"param_value"}),
}


# ---------------------------------------------------------------------------------------------
# Failures (stable codes)


class InvalidOrderError(TxFailure):
    code = "INVALID_ORDER"


class OrderExistsError(TxFailure):
    code = "ORDER_EXISTS"


# ---------------------------------------------------------------------------------------------
# Checks



def check_order_fields(args: IssueOrderArgs) -> None:
    """Raise ``InvalidOrderError`` unless ``args`` uses exactly the fields its kind allows."""
    used = KIND_FIELDS.get(args.kind)
    if used is None:
        raise InvalidOrderError(f"kind {args.kind!r} is not one of {sorted(ORDER_KINDS)}")
    optional = _OPTIONAL.get(args.kind, frozenset())
    for name in _ID_FIELDS:
        value: str = getattr(args, name)
        if name not in used:
            if value:
                raise InvalidOrderError(f"a {args.kind} order leaves {name} empty")
        elif value and not is_id(value):
            raise InvalidOrderError(f"{name} must be 1..{MAX_ID} ASCII letters, digits, '-_.'")
        elif not value and name not in optional:
            raise InvalidOrderError(f"a {args.kind} order needs {name}")
    for name in _INT_FIELDS:
        number: int = getattr(args, name)
        if name not in used:
            if number != 0:
                raise InvalidOrderError(f"a {args.kind} order leaves {name} zero")
        elif not 0 <= number <= MAX_AMOUNT:
            raise InvalidOrderError(f"{name} must be in 0..{MAX_AMOUNT}")
        elif number == 0 and name not in optional:
            raise InvalidOrderError(f"a {args.kind} order needs a positive {name}")
    if args.kind == "freeze":
        if args.code and args.amount == 0:
            raise InvalidOrderError("a freeze of a holding needs a positive amount")
        if not args.code and args.amount != 0:
            raise InvalidOrderError("a whole-account freeze (no code) has amount 0")


# ---------------------------------------------------------------------------------------------
# Methods


@dataclass(frozen=True)
class IssueOrderArgs:
    order_id: str
    chain_id: str
    kind: str
    freeze_id: str
    code: str
    account_id: str
    amount: int
    expires_at_ms: int
    to_account: str
    param_name: str
    param_value: int
    reference: str


def issue_order(ctx: TxContext, args: IssueOrderArgs) -> None:
    """The regulator issues an order to a registered business chain."""
    require_role(require_account(ctx, ctx.sender), "regulator")
    if not is_id(args.order_id):
        raise InvalidArgumentError(f"order_id must be 1..{MAX_ID} ASCII letters, digits, '-_.'")
    check_text("reference", args.reference)
    check_order_fields(args)
    if args.kind == "freeze" and args.expires_at_ms <= ctx.time_ms:
        raise InvalidOrderError("expires_at_ms must be after the current block time")
    require_chain(ctx, args.chain_id)
    if ctx.get(order_key(args.order_id)) is not None:
        raise OrderExistsError(f"order {args.order_id!r} already exists")
    ctx.put_record(
        order_key(args.order_id),
        Order(
            order_id=args.order_id,
            chain_id=args.chain_id,
            kind=args.kind,
            freeze_id=args.freeze_id,
            code=args.code,
            account_id=args.account_id,
            amount=args.amount,
            expires_at_ms=args.expires_at_ms,
            to_account=args.to_account,
            param_name=args.param_name,
            param_value=args.param_value,
            reference=args.reference,
            issued_by=ctx.sender,
            issued_height=ctx.height,
        ),
    )
    ctx.emit(
        NAME,
        "order_issued",
        order_id=args.order_id,
        chain_id=args.chain_id,
        kind=args.kind,
        reference=args.reference,
    )


MODULE = Module(name=NAME, methods={"issue_order": Method(IssueOrderArgs, issue_order)})
