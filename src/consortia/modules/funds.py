"""The funds module: open-ended fund products bought with e-CNY (subscription by amount,
redemption by shares) under the "unknown price" rule.

- Registration: a fund manager (role ``fund_manager``) registers a fund: a security of kind
  ``fund_share`` (created ``pending`` in the securities module, issuer = the manager's org) and the
  fund record (custody wallet, fee wallet, fee rates, cut-off). The fund's assets are held by an
  independent custodian, as the law on securities investment funds requires: the custody wallet
  must be a top-level category-1 corporate wallet owned by an account with role ``custodian`` of
  an active organization of kind ``custodian`` or ``bank`` other than the manager's, so the
  manager can never spend investors' money with a plain ``ecny.pay``; the fee wallet is the
  manager's own. Money leaves custody only through this module (refunds, redemption proceeds,
  fees), under the order's terms. The operator (role ``exchange``)
  approves or rejects it with the securities module's ``approve`` / ``reject``; orders need an
  approved, unhalted fund. Fund units exist only through confirmed orders: the module's balance
  hook refuses any other creation or destruction of a registered fund's units (``securities.issue``
  by an issuer of the manager's org, asset mapping, splits).
- Orders: ``subscribe`` (an amount of e-CNY, paid at once from the investor's wallet into the
  custody wallet; the investor signs it, since it spends the investor's wallet; suitability is
  checked now and again at confirmation) and ``redeem`` (a number of units, reserved at
  once: the hook refuses every balance decrease — a transfer, a forced transfer — that would leave
  the holding's free balance below its reserved units; sent by the investor or its broker — never
  a broker for an account a contract owns, ``NOT_AUTHORIZED``; the proceeds go to a wallet the
  investor may spend). An order placed at block time ``t`` is priced at
  the NAV of ``T = trading_day_of_order(t, cutoff)``: today before the cut-off (default 15:00
  CST), else the next trading day. ``cancel`` (the investor or its broker) works only before the
  cut-off of ``T`` and refunds the subscription / releases the reserved units.
- NAV: the manager publishes the NAV of a trading day once, only after that day's cut-off (so no
  order of that day is placed with its price known; a future day is refused too). The NAV is an
  integer: yuan per share × 10^4 (4 decimal places).
- Confirmation: after the NAV of ``T`` is published the manager confirms orders of ``T`` in
  batches (atomic per transaction; the module pays out of the custody wallet under the orders'
  terms, the manager cannot spend it). Let ``k = share decimals + 2`` (fen per yuan × units per
  share gives the scale):

  * subscription: ``fee = floor(amount × subscription_fee_bp / 10^4)`` (never more than the
    stated rate), ``units = floor((amount − fee) × 10^k / nav)`` (never more units than paid
    for); the fee goes from custody to the fee wallet, the rounding residue
    ``(amount − fee) − units × nav / 10^k`` (< ``nav / 10^k`` fen) stays in custody, i.e. in the
    fund's assets.
  * redemption: the units leave the account's oldest lots first (FIFO); each lot segment's holding
    period is the calendar days from the lot's trading day to ``T`` and picks the fee tier with the
    largest ``min_days`` not above it. ``gross = floor(units × nav / 10^k)``; per segment
    ``fee_i = floor(units_i × nav × rate_i / (10^k × 10^4))``, so ``Σ fee_i ≤ gross``; the investor
    receives ``gross − Σ fee_i``; fees of tiers marked ``to_fund`` (the < 7-day 1.5% penalty the
    CSRC liquidity rules credit in full to the fund's assets) stay in custody, the others go to the
    fee wallet.

  An order that can no longer be carried out is closed rather than left pending: a subscription
  whose account has since been closed, frozen or reassessed below the fund (or that buys no whole
  unit) is refunded in full without fee (``refunded``, with the failing rule's code in
  ``failure``); a redemption whose units a court has frozen since the order, or whose account is
  frozen, ends ``failed`` and its reservation is released. A redemption is honoured only if the
  holding's free balance still covers its units *and* every other pending reservation of the
  account (the balance hook allows no less), so when a freeze leaves too little for all of them
  the orders confirmed first in a batch fail (``INSUFFICIENT_FREE_BALANCE``), releasing their
  units, until the rest can be honoured; the batch never fails for it.

  Reconciliation: let ``A`` = custody − unconfirmed subscription money (the fund's assets) and
  ``S`` = units outstanding. If the NAV of ``T`` is honest, ``nav = floor(A × 10^k / S)`` when
  published, then ``0 ≤ A × 10^k − S × nav < S`` at publication, and confirming ``T``'s orders
  only raises ``A × 10^k − S × nav``: by less than ``nav`` per subscription, by less than
  ``10^k`` per redemption, plus ``10^k ×`` the fees kept in the fund. So units are always fully
  backed at the NAV they were confirmed at (nobody is over-credited) and the custody wallet
  exceeds ``S × nav / 10^k`` fen only by that rounding (and the kept fees).
- Lots: per account the fund keeps FIFO lots (trading day, units), merged by day. A transfer of
  units moves the sender's oldest lots, with their dates, to the receiver.

Amounts are integers: e-CNY in fen, units in the security's smallest unit.

State keys:

- ``funds/fund/<code>`` → ``Fund``
- ``funds/nav/<code>/<trading day>`` → ``Nav``
- ``funds/order/<order id>`` → ``Order``
- ``funds/position/<code>/<account id>`` → ``Position`` (FIFO lots and reserved units; absent when
  both are empty)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from consortia.execution.context import TxContext
from consortia.execution.errors import TxFailure
from consortia.execution.module import Method, Module
from consortia.modules import securities
from consortia.modules.calendar import (
    DAY_MS,
    HOUR_MS,
    cst_date,
    date_start_ms,
    is_trading_day,
    trading_day_of_order,
)
from consortia.modules.ecny import (
    check_fen,
    may_spend,
    pay_between,
    require_spender,
    require_wallet,
)
from consortia.modules.governance import MAX_FEN
from consortia.modules.investors import (
    InvalidArgumentError,
    NotAuthorizedError,
    SecuritiesAccount,
    check_id,
    check_text,
    is_broker_of,
    is_contract,
    require_investor,
    require_open_account,
    require_securities_account,
    sender_account,
)
from consortia.modules.registry import Account, Organization, has_role, load_account, org_key
from consortia.modules.securities import (
    MAX_AMOUNT,
    Book,
    Security,
    check_not_frozen,
    check_suitability,
    require_security,
    security_key,
)

NAME = "funds"

BP = 10_000  # basis points in a whole
NAV_SCALE = 10_000  # NAV = yuan per share × 10^4
FEN_PER_YUAN = 100
DEFAULT_CUTOFF_MS = 15 * HOUR_MS
MAX_SHARE_DECIMALS = 6
MAX_TIERS = 8
MAX_BATCH = 32  # a confirmation emits up to ~7 events; a transaction at most 256
MAX_NAV = 10**12


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class FeeTier:
    """A redemption fee rate for units held at least ``min_days`` calendar days."""

    min_days: int
    rate_bp: int
    to_fund: bool  # the fee stays in the fund's assets (custody) instead of the fee wallet


@dataclass(frozen=True)
class Fund:
    code: str
    manager_org: str
    custody_wallet: str
    fee_wallet: str
    subscription_fee_bp: int
    redemption_tiers: tuple[FeeTier, ...]  # min_days strictly increasing, the first 0
    cutoff_ms: int  # ms after 00:00 CST of a trading day
    share_decimals: int
    last_nav_day: int  # the latest trading day with a published NAV (0: none)
    last_nav: int
    registered_height: int


@dataclass(frozen=True)
class Nav:
    code: str
    trading_day: int
    nav: int
    published_height: int


@dataclass(frozen=True)
class Order:
    order_id: str
    code: str
    kind: str  # subscribe | redeem
    account_id: str
    investor_id: str
    wallet_id: str  # pays the subscription / receives the proceeds and refunds
    amount_fen: int  # subscription amount (0 for a redemption)
    units: int  # redemption units (subscription: units credited at confirmation)
    trading_day: int  # T: the NAV day that prices it
    placed_ms: int
    placed_by: bytes
    status: str  # pending | cancelled | confirmed | refunded | failed
    failure: str  # why a subscription was refunded / a redemption failed at confirmation
    nav: int
    fee_fen: int  # subscription fee, or the redemption fee to the manager
    fund_fee_fen: int  # redemption fee kept in the fund's assets
    proceeds_fen: int  # redemption: paid to the investor
    closed_height: int


@dataclass(frozen=True)
class Lot:
    trading_day: int
    units: int


@dataclass(frozen=True)
class Position:
    code: str
    account_id: str
    lots: tuple[Lot, ...]  # oldest first, one per trading day
    reserved: int  # units of pending redemption orders

    def units(self) -> int:
        total: int = sum(lot.units for lot in self.lots)
        return total


def fund_key(code: str) -> bytes:
    return b"funds/fund/" + code.encode()


def nav_key(code: str, trading_day: int) -> bytes:
    return b"funds/nav/" + code.encode() + b"/" + str(trading_day).encode()


def order_key(order_id: str) -> bytes:
    return b"funds/order/" + order_id.encode()


def position_key(code: str, account_id: str) -> bytes:
    return b"funds/position/" + code.encode() + b"/" + account_id.encode()


# ---------------------------------------------------------------------------------------------
# Failures (stable codes)


class FundExistsError(TxFailure):
    code = "FUND_EXISTS"


class UnknownFundError(TxFailure):
    code = "UNKNOWN_FUND"


class UnknownOrderError(TxFailure):
    code = "UNKNOWN_ORDER"


class OrderExistsError(TxFailure):
    code = "ORDER_EXISTS"


class OrderClosedError(TxFailure):
    code = "ORDER_CLOSED"


class OrderMismatchError(TxFailure):
    code = "ORDER_NOT_IN_BATCH_DAY"


class CutoffPassedError(TxFailure):
    code = "CUTOFF_PASSED"


class NavNotPublishedError(TxFailure):
    code = "NAV_NOT_PUBLISHED"


class NavAlreadyPublishedError(TxFailure):
    code = "NAV_ALREADY_PUBLISHED"


class NavNotDueError(TxFailure):
    code = "NAV_NOT_DUE"


class NotATradingDayError(TxFailure):
    code = "NOT_A_TRADING_DAY"


class SharesReservedError(TxFailure):
    code = "SHARES_RESERVED_FOR_REDEMPTION"


class FundUnitsByOrdersOnlyError(TxFailure):
    code = "FUND_UNITS_BY_ORDERS_ONLY"


# ---------------------------------------------------------------------------------------------
# Reads and checks


def require_fund(ctx: TxContext, code: str) -> Fund:
    f = ctx.get_record(fund_key(code), Fund)
    if f is None:
        raise UnknownFundError(f"no fund {code!r}")
    return f


def load_position(ctx: TxContext, code: str, account_id: str) -> Position:
    found = ctx.get_record(position_key(code, account_id), Position)
    return found if found is not None else Position(code, account_id, (), 0)


def _save_position(ctx: TxContext, p: Position) -> None:
    if not p.lots and not p.reserved:
        ctx.delete(position_key(p.code, p.account_id))
    else:
        ctx.put_record(position_key(p.code, p.account_id), p)


def _require_manager(ctx: TxContext, f: Fund) -> Account:
    sender = sender_account(ctx)
    if not has_role(sender, "fund_manager") or sender.org_id != f.manager_org:
        raise NotAuthorizedError(f"only a fund manager of {f.manager_org!r} may do this")
    return sender


def _require_open_fund(ctx: TxContext, f: Fund) -> Security:
    sec = securities.require_approved(ctx, f.code)
    if sec.halted:
        raise securities.TradingHaltedError(f"{sec.code!r} is halted: {sec.halt_reason}")
    return sec


def _require_owner_or_broker(ctx: TxContext, acct: SecuritiesAccount) -> bytes:
    """The sender is the account's investor or its broker; returns the investor's address."""
    inv = require_investor(ctx, acct.investor_id)
    sender = sender_account(ctx)
    if sender.address != inv.address and not is_broker_of(ctx, sender, acct.org_id):
        raise NotAuthorizedError(
            f"only the owner of {acct.account_id!r} or its broker may place or cancel its orders"
        )
    if sender.address != inv.address and is_contract(ctx, inv.address):
        # A contract's units move by the contract's own rules, never by its broker's order.
        raise NotAuthorizedError(
            f"securities account {acct.account_id!r} is owned by contract "
            f"{inv.address.hex()}: only the contract may act for it, not its broker"
        )
    return inv.address


def _cutoff_ms(f: Fund, trading_day: int) -> int:
    return date_start_ms(trading_day) + f.cutoff_ms


def _scale(f: Fund) -> int:
    """``10^k`` with ``k = share decimals + 2``: ``units`` at ``nav`` are worth
    ``units × nav / 10^k`` fen (nav is yuan × 10^4 per share, a share is 10^decimals units)."""
    scale: int = 10 ** (f.share_decimals + 2)
    return scale


def subscription_terms(f: Fund, amount_fen: int, nav: int) -> tuple[int, int]:
    """(fee in fen, units) of a subscription of ``amount_fen`` at ``nav`` (module docstring)."""
    fee = amount_fen * f.subscription_fee_bp // BP
    return fee, (amount_fen - fee) * _scale(f) // nav


def _tier(f: Fund, days: int) -> FeeTier:
    chosen = f.redemption_tiers[0]
    for t in f.redemption_tiers:
        if t.min_days <= days:
            chosen = t
    return chosen


def _take_fifo(lots: tuple[Lot, ...], units: int) -> tuple[tuple[Lot, ...], tuple[Lot, ...]]:
    """Split ``units`` off the oldest lots: (taken segments, remaining lots)."""
    taken: list[Lot] = []
    rest = list(lots)
    while units > 0:
        if not rest:
            raise AssertionError("fund lots do not cover the holding")
        head = rest[0]
        part = min(head.units, units)
        taken.append(Lot(head.trading_day, part))
        units -= part
        if part == head.units:
            rest.pop(0)
        else:
            rest[0] = Lot(head.trading_day, head.units - part)
    return tuple(taken), tuple(rest)


def _add_lots(lots: tuple[Lot, ...], new: tuple[Lot, ...]) -> tuple[Lot, ...]:
    """Merge lots by trading day, oldest first."""
    by_day: dict[int, int] = {lot.trading_day: lot.units for lot in lots}
    for lot in new:
        by_day[lot.trading_day] = by_day.get(lot.trading_day, 0) + lot.units
    return tuple(Lot(day, by_day[day]) for day in sorted(by_day) if by_day[day])


def redemption_terms(
    f: Fund, segments: tuple[Lot, ...], trading_day: int, nav: int
) -> tuple[int, int, int]:
    """(gross, fee to the fee wallet, fee kept in the fund) in fen for redeeming ``segments``
    (FIFO lot segments) at ``nav`` on ``trading_day`` (module docstring)."""
    scale = _scale(f)
    units = sum(s.units for s in segments)
    gross = units * nav // scale
    to_manager = to_fund = 0
    for s in segments:
        days = (date_start_ms(trading_day) - date_start_ms(s.trading_day)) // DAY_MS
        tier = _tier(f, days)
        fee = s.units * nav * tier.rate_bp // (scale * BP)
        if tier.to_fund:
            to_fund += fee
        else:
            to_manager += fee
    return gross, to_manager, to_fund


# ---------------------------------------------------------------------------------------------
# The balance hook: lots follow every change of a registered fund's units


def before_balance_change(ctx: TxContext, book: Book) -> None:
    """``securities.BALANCE_HOOKS`` entry. For a registered fund: refuses decreases that would
    take reserved units, moves FIFO lots with transferred units, and refuses creation or
    destruction of units that the fund module has not booked in the lots first."""
    if book.sec.kind != "fund_share":
        return
    f = ctx.get_record(fund_key(book.sec.code), Fund)
    if f is None:
        return
    moved: list[Lot] = []
    gaining: list[tuple[Position, int]] = []
    for account_id in sorted(book.holdings):
        before, after = book.originals[account_id], book.holdings[account_id]
        if before.balance == after.balance:
            continue
        pos = load_position(ctx, f.code, account_id)
        if after.balance < before.balance and after.free(ctx.time_ms) < pos.reserved:
            raise SharesReservedError(
                f"{pos.reserved} units of {f.code!r} in {account_id!r} are reserved for "
                "pending redemptions"
            )
        held = pos.units()
        if held > after.balance:
            taken, rest = _take_fifo(pos.lots, held - after.balance)
            moved.extend(taken)
            _save_position(ctx, replace(pos, lots=rest))
        elif held < after.balance:
            gaining.append((pos, after.balance - held))
    pool = tuple(moved)
    for pos, need in gaining:
        if need > sum(lot.units for lot in pool):
            raise FundUnitsByOrdersOnlyError(
                f"units of fund {f.code!r} are created only by confirmed subscriptions"
            )
        taken, pool = _take_fifo(pool, need)
        _save_position(ctx, replace(pos, lots=_add_lots(pos.lots, taken)))
    if pool:
        raise FundUnitsByOrdersOnlyError(
            f"units of fund {f.code!r} are cancelled only by confirmed redemptions"
        )


securities.BALANCE_HOOKS.append(before_balance_change)


# ---------------------------------------------------------------------------------------------
# Registration


@dataclass(frozen=True)
class RegisterFundArgs:
    code: str
    name: str
    risk_level: int
    qualified_only: bool
    share_decimals: int
    custody_wallet: str
    fee_wallet: str
    subscription_fee_bp: int
    redemption_tiers: tuple[FeeTier, ...]
    cutoff_ms: int  # 0 = the default 15:00 CST


def _check_bp(name: str, value: int) -> None:
    if not 0 <= value <= BP:
        raise InvalidArgumentError(f"{name} must be 0..{BP} basis points")


CUSTODIAN_ORG_KINDS = frozenset({"custodian", "bank"})


def _check_independent_custody(ctx: TxContext, manager: Account, custody_owner: bytes) -> None:
    """The custody wallet's owner is a ``custodian`` account of an active custodian or bank
    organization other than the manager's."""
    owner = load_account(ctx, custody_owner)
    org = None if owner is None else ctx.get_record(org_key(owner.org_id), Organization)
    if (
        owner is None
        or org is None
        or not has_role(owner, "custodian")
        or org.kind not in CUSTODIAN_ORG_KINDS
        or not org.active
        or owner.org_id == manager.org_id
    ):
        raise InvalidArgumentError(
            "the custody wallet must be held by an independent custodian: an account with role "
            "custodian of an active custodian or bank organization other than the manager's "
            f"{manager.org_id!r} (the manager must not control the fund's assets)"
        )


def register_fund(ctx: TxContext, args: RegisterFundArgs) -> None:
    """A fund manager registers a fund product; the operator approves its ``fund_share``
    security with ``securities.approve`` before orders are accepted."""
    sender = sender_account(ctx)
    if not has_role(sender, "fund_manager"):
        raise NotAuthorizedError("only a fund manager registers a fund")
    check_id("code", args.code)
    check_text("name", args.name)
    if args.risk_level not in securities.RISK_LEVELS:
        raise InvalidArgumentError("risk_level must be 1..5 (R1..R5)")
    if not 0 <= args.share_decimals <= MAX_SHARE_DECIMALS:
        raise InvalidArgumentError(f"share_decimals must be 0..{MAX_SHARE_DECIMALS}")
    _check_bp("subscription_fee_bp", args.subscription_fee_bp)
    tiers = args.redemption_tiers
    if not 1 <= len(tiers) <= MAX_TIERS or tiers[0].min_days != 0:
        raise InvalidArgumentError(f"1..{MAX_TIERS} redemption tiers, the first from 0 days")
    for i, t in enumerate(tiers):
        _check_bp("rate_bp", t.rate_bp)
        if i and not tiers[i - 1].min_days < t.min_days <= 36_600:
            raise InvalidArgumentError("tier min_days must increase strictly (at most 36600)")
    cutoff = args.cutoff_ms or DEFAULT_CUTOFF_MS
    if not 0 < cutoff < DAY_MS:
        raise InvalidArgumentError("cutoff_ms must be within the day")
    custody = require_wallet(ctx, args.custody_wallet)
    fee = require_wallet(ctx, args.fee_wallet)
    if custody.kind != "corporate" or custody.category != 1 or custody.parent:
        raise InvalidArgumentError("the custody wallet must be a top-level category-1 corporate")
    if fee.kind != "corporate" or fee.wallet_id == custody.wallet_id:
        raise InvalidArgumentError("the fee wallet must be another corporate wallet")
    _check_independent_custody(ctx, sender, custody.owner)
    if not may_spend(ctx, fee, sender.address):
        raise NotAuthorizedError("the manager must control the fee wallet")
    if ctx.get(fund_key(args.code)) is not None:
        raise FundExistsError(f"fund {args.code!r} already exists")
    if ctx.get(security_key(args.code)) is not None:
        raise securities.SecurityExistsError(f"security {args.code!r} already exists")
    ctx.put_record(
        security_key(args.code),
        Security(
            code=args.code,
            name=args.name,
            kind="fund_share",
            issuer=sender.address,
            issuer_org=sender.org_id,
            authorized=MAX_AMOUNT,  # open-ended: units follow subscriptions and redemptions
            issued=0,
            decimals=args.share_decimals,
            risk_level=args.risk_level,
            qualified_only=args.qualified_only,
            lockup_until_ms=0,
            status="pending",
            halted=False,
            halt_reason="",
            applied_height=ctx.height,
            decided_height=0,
            decision_reason="",
        ),
    )
    ctx.put_record(
        fund_key(args.code),
        Fund(
            code=args.code,
            manager_org=sender.org_id,
            custody_wallet=custody.wallet_id,
            fee_wallet=fee.wallet_id,
            subscription_fee_bp=args.subscription_fee_bp,
            redemption_tiers=tiers,
            cutoff_ms=cutoff,
            share_decimals=args.share_decimals,
            last_nav_day=0,
            last_nav=0,
            registered_height=ctx.height,
        ),
    )
    ctx.emit(
        NAME,
        "fund_registered",
        code=args.code,
        manager_org=sender.org_id,
        custody_wallet=custody.wallet_id,
        risk_level=args.risk_level,
        qualified_only=args.qualified_only,
        subscription_fee_bp=args.subscription_fee_bp,
        cutoff_ms=cutoff,
    )


# ---------------------------------------------------------------------------------------------
# Orders


@dataclass(frozen=True)
class SubscribeArgs:
    order_id: str
    code: str
    account_id: str
    wallet_id: str
    amount_fen: int


def _new_order_checks(ctx: TxContext, order_id: str, code: str) -> tuple[Fund, Security]:
    check_id("order_id", order_id)
    f = require_fund(ctx, code)
    sec = _require_open_fund(ctx, f)
    if ctx.get(order_key(order_id)) is not None:
        raise OrderExistsError(f"order {order_id!r} already exists")
    return f, sec


def subscribe(ctx: TxContext, args: SubscribeArgs) -> None:
    """The investor subscribes an amount of e-CNY, paid now into the fund's custody wallet."""
    f, sec = _new_order_checks(ctx, args.order_id, args.code)
    acct = require_open_account(ctx, args.account_id)
    inv = require_investor(ctx, acct.investor_id)
    if ctx.sender != inv.address:
        raise NotAuthorizedError("only the investor subscribes (the order spends its e-CNY)")
    w = require_wallet(ctx, args.wallet_id)
    require_spender(ctx, w)
    check_fen("amount_fen", args.amount_fen)
    check_not_frozen(ctx, acct)
    check_suitability(ctx, sec, acct)
    day = trading_day_of_order(ctx.time_ms, f.cutoff_ms)
    pay_between(
        ctx,
        w.wallet_id,
        f.custody_wallet,
        args.amount_fen,
        purpose="fund_subscription",
        memo=f"{f.code} {args.order_id}",
    )
    _put_order(ctx, args.order_id, f, "subscribe", acct, w.wallet_id, args.amount_fen, 0, day)
    ctx.emit(
        NAME,
        "subscription_placed",
        order_id=args.order_id,
        code=f.code,
        account_id=acct.account_id,
        amount_fen=args.amount_fen,
        trading_day=day,
    )


def _put_order(
    ctx: TxContext,
    order_id: str,
    f: Fund,
    kind: str,
    acct: SecuritiesAccount,
    wallet_id: str,
    amount_fen: int,
    units: int,
    day: int,
) -> None:
    ctx.put_record(
        order_key(order_id),
        Order(
            order_id=order_id,
            code=f.code,
            kind=kind,
            account_id=acct.account_id,
            investor_id=acct.investor_id,
            wallet_id=wallet_id,
            amount_fen=amount_fen,
            units=units,
            trading_day=day,
            placed_ms=ctx.time_ms,
            placed_by=ctx.sender,
            status="pending",
            failure="",
            nav=0,
            fee_fen=0,
            fund_fee_fen=0,
            proceeds_fen=0,
            closed_height=0,
        ),
    )


@dataclass(frozen=True)
class RedeemArgs:
    order_id: str
    code: str
    account_id: str
    wallet_id: str
    units: int


def redeem(ctx: TxContext, args: RedeemArgs) -> None:
    """The investor (or its broker) redeems units; they are reserved until confirmation."""
    f, _ = _new_order_checks(ctx, args.order_id, args.code)
    acct = require_open_account(ctx, args.account_id)
    owner = _require_owner_or_broker(ctx, acct)
    w = require_wallet(ctx, args.wallet_id)
    if not may_spend(ctx, w, owner):
        raise NotAuthorizedError(f"wallet {w.wallet_id!r} is not the investor's")
    if not 1 <= args.units <= MAX_AMOUNT:
        raise InvalidArgumentError(f"units must be an integer in 1..{MAX_AMOUNT}")
    check_not_frozen(ctx, acct)
    held = securities.load_holding(ctx, f.code, acct.account_id)
    pos = load_position(ctx, f.code, acct.account_id)
    free = held.free(ctx.time_ms) - pos.reserved
    if args.units > free:
        raise securities.InsufficientFreeBalanceError(
            f"{acct.account_id!r} has {free} free {f.code!r} units not already being redeemed, "
            f"{args.units} requested"
        )
    day = trading_day_of_order(ctx.time_ms, f.cutoff_ms)
    _save_position(ctx, replace(pos, reserved=pos.reserved + args.units))
    _put_order(ctx, args.order_id, f, "redeem", acct, w.wallet_id, 0, args.units, day)
    ctx.emit(
        NAME,
        "redemption_placed",
        order_id=args.order_id,
        code=f.code,
        account_id=acct.account_id,
        units=args.units,
        trading_day=day,
    )


@dataclass(frozen=True)
class OrderIdArgs:
    order_id: str


def _require_pending(ctx: TxContext, order_id: str) -> Order:
    o = ctx.get_record(order_key(order_id), Order)
    if o is None:
        raise UnknownOrderError(f"no fund order {order_id!r}")
    if o.status != "pending":
        raise OrderClosedError(f"order {order_id!r} is {o.status}")
    return o


def cancel(ctx: TxContext, args: OrderIdArgs) -> None:
    """The investor (or its broker) cancels a pending order before the cut-off of its day T:
    a subscription is refunded in full, a redemption's units are released."""
    o = _require_pending(ctx, args.order_id)
    f = require_fund(ctx, o.code)
    _require_owner_or_broker(ctx, require_securities_account(ctx, o.account_id))
    if ctx.time_ms >= _cutoff_ms(f, o.trading_day):
        raise CutoffPassedError(
            f"order {o.order_id!r} is past the {o.trading_day} cut-off; it can no longer be "
            "cancelled"
        )
    if o.kind == "subscribe":
        # The refund is the investor's own money returning under the order's terms.
        pay_between(
            ctx,
            f.custody_wallet,
            o.wallet_id,
            o.amount_fen,
            purpose="fund_refund",
            memo=f"{f.code} {o.order_id}",
        )
    else:
        pos = load_position(ctx, f.code, o.account_id)
        _save_position(ctx, replace(pos, reserved=pos.reserved - o.units))
    ctx.put_record(order_key(o.order_id), replace(o, status="cancelled", closed_height=ctx.height))
    ctx.emit(NAME, "order_cancelled", order_id=o.order_id, code=f.code, kind=o.kind)


# ---------------------------------------------------------------------------------------------
# NAV and confirmation


@dataclass(frozen=True)
class PublishNavArgs:
    code: str
    trading_day: int
    nav: int


def publish_nav(ctx: TxContext, args: PublishNavArgs) -> None:
    """The manager publishes the NAV of a trading day, once, after that day's cut-off."""
    f = require_fund(ctx, args.code)
    _require_manager(ctx, f)
    if not is_trading_day(args.trading_day):
        raise NotATradingDayError(f"{args.trading_day} is not a trading day")
    if not 1 <= args.nav <= MAX_NAV:
        raise InvalidArgumentError(f"nav must be 1..{MAX_NAV} (yuan per share × 10^4)")
    if ctx.time_ms < _cutoff_ms(f, args.trading_day):
        raise NavNotDueError(
            f"the NAV of {args.trading_day} is due after its cut-off (now {cst_date(ctx.time_ms)})"
        )
    key = nav_key(f.code, args.trading_day)
    if ctx.get(key) is not None:
        raise NavAlreadyPublishedError(f"the NAV of {f.code!r} on {args.trading_day} is published")
    ctx.put_record(key, Nav(f.code, args.trading_day, args.nav, ctx.height))
    if args.trading_day > f.last_nav_day:
        ctx.put_record(
            fund_key(f.code), replace(f, last_nav_day=args.trading_day, last_nav=args.nav)
        )
    ctx.emit(NAME, "nav_published", code=f.code, trading_day=args.trading_day, nav=args.nav)


@dataclass(frozen=True)
class ConfirmArgs:
    code: str
    trading_day: int
    order_ids: tuple[str, ...]


def confirm(ctx: TxContext, args: ConfirmArgs) -> None:
    """The manager confirms pending orders of ``trading_day`` at its NAV (all or none)."""
    f = require_fund(ctx, args.code)
    _require_manager(ctx, f)
    if not 1 <= len(args.order_ids) <= MAX_BATCH:
        raise InvalidArgumentError(f"a batch confirms 1..{MAX_BATCH} orders")
    if len(set(args.order_ids)) != len(args.order_ids):
        raise InvalidArgumentError("an order appears twice in the batch")
    published = ctx.get_record(nav_key(f.code, args.trading_day), Nav)
    if published is None:
        raise NavNotPublishedError(f"no NAV of {f.code!r} for {args.trading_day}")
    nav = published.nav
    for order_id in args.order_ids:
        o = _require_pending(ctx, order_id)
        if o.code != f.code or o.trading_day != args.trading_day:
            raise OrderMismatchError(
                f"order {order_id!r} is for {o.code!r} on {o.trading_day}, not this batch"
            )
        if o.kind == "subscribe":
            _confirm_subscription(ctx, f, o, nav)
        else:
            _confirm_redemption(ctx, f, o, nav)


def _unconfirmable_subscription(ctx: TxContext, sec: Security, o: Order) -> str:
    """The stable code of the rule that now stops ``o``'s units being created, or ""."""
    try:
        acct = require_open_account(ctx, o.account_id)
        check_not_frozen(ctx, acct)
        check_suitability(ctx, sec, acct)
    except TxFailure as exc:
        return exc.code
    return ""


def _confirm_subscription(ctx: TxContext, f: Fund, o: Order, nav: int) -> None:
    fee, units = subscription_terms(f, o.amount_fen, nav)
    memo = f"{f.code} {o.order_id}"
    sec = require_security(ctx, f.code)
    failure = "NO_WHOLE_UNIT" if units == 0 else ""
    # More units than the fund may ever have (a tiny NAV): refund rather than fail the batch.
    failure = failure or ("EXCEEDS_AUTHORIZED" if units > sec.authorized - sec.issued else "")
    failure = failure or _unconfirmable_subscription(ctx, sec, o)
    if failure:
        # Confirmation failed (nothing to buy, or the account was closed, frozen or reassessed
        # since the order): the whole amount goes back, no fee.
        pay_between(
            ctx, f.custody_wallet, o.wallet_id, o.amount_fen, purpose="fund_refund", memo=memo
        )
        ctx.put_record(
            order_key(o.order_id),
            replace(o, status="refunded", failure=failure, nav=nav, closed_height=ctx.height),
        )
        ctx.emit(
            NAME,
            "subscription_refunded",
            order_id=o.order_id,
            code=f.code,
            nav=nav,
            amount_fen=o.amount_fen,
            failure=failure,
        )
        return
    pos = load_position(ctx, f.code, o.account_id)
    _save_position(ctx, replace(pos, lots=_add_lots(pos.lots, (Lot(o.trading_day, units),))))
    securities.create_units(ctx, f.code, o.account_id, units)
    if fee:
        pay_between(ctx, f.custody_wallet, f.fee_wallet, fee, purpose="fund_fee", memo=memo)
    ctx.put_record(
        order_key(o.order_id),
        replace(o, status="confirmed", nav=nav, units=units, fee_fen=fee, closed_height=ctx.height),
    )
    ctx.emit(
        NAME,
        "subscription_confirmed",
        order_id=o.order_id,
        code=f.code,
        account_id=o.account_id,
        trading_day=o.trading_day,
        nav=nav,
        amount_fen=o.amount_fen,
        fee_fen=fee,
        units=units,
    )


def _unconfirmable_redemption(ctx: TxContext, o: Order) -> str:
    """The stable code of the rule that now stops ``o``'s units being cancelled, or ""."""
    try:
        acct = require_open_account(ctx, o.account_id)
        check_not_frozen(ctx, acct)
    except TxFailure as exc:
        return exc.code
    held = securities.load_holding(ctx, o.code, o.account_id)
    others = load_position(ctx, o.code, o.account_id).reserved - o.units
    # The free balance (e.g. less a judicial freeze since the order) must cover this order and
    # the account's other pending reservations, which the balance hook keeps intact.
    if held.free(ctx.time_ms) - others < o.units:
        return securities.InsufficientFreeBalanceError.code
    return ""


def _confirm_redemption(ctx: TxContext, f: Fund, o: Order, nav: int) -> None:
    pos = load_position(ctx, f.code, o.account_id)
    failure = _unconfirmable_redemption(ctx, o)
    if not failure:
        # Proceeds beyond the largest amount of e-CNY (an absurd NAV): fail the order, not the
        # whole confirmation batch.
        gross, _, _ = redemption_terms(f, _take_fifo(pos.lots, o.units)[0], o.trading_day, nav)
        failure = "EXCEEDS_MAX_AMOUNT" if gross > MAX_FEN else ""
    if failure:
        # The units cannot be redeemed (frozen by a court since the order, so the free balance
        # no longer covers every reservation; account frozen): the order fails and its
        # reservation is released.
        _save_position(ctx, replace(pos, reserved=pos.reserved - o.units))
        ctx.put_record(
            order_key(o.order_id),
            replace(o, status="failed", failure=failure, nav=nav, closed_height=ctx.height),
        )
        ctx.emit(NAME, "redemption_failed", order_id=o.order_id, code=f.code, failure=failure)
        return
    segments, rest = _take_fifo(pos.lots, o.units)
    gross, to_manager, to_fund = redemption_terms(f, segments, o.trading_day, nav)
    proceeds = gross - to_manager - to_fund
    _save_position(ctx, replace(pos, lots=rest, reserved=pos.reserved - o.units))
    securities.cancel_units(ctx, f.code, o.account_id, o.units)
    memo = f"{f.code} {o.order_id}"
    if proceeds:
        pay_between(
            ctx, f.custody_wallet, o.wallet_id, proceeds, purpose="fund_redemption", memo=memo
        )
    if to_manager:
        pay_between(ctx, f.custody_wallet, f.fee_wallet, to_manager, purpose="fund_fee", memo=memo)
    ctx.put_record(
        order_key(o.order_id),
        replace(
            o,
            status="confirmed",
            nav=nav,
            fee_fen=to_manager,
            fund_fee_fen=to_fund,
            proceeds_fen=proceeds,
            closed_height=ctx.height,
        ),
    )
    ctx.emit(
        NAME,
        "redemption_confirmed",
        order_id=o.order_id,
        code=f.code,
        account_id=o.account_id,
        trading_day=o.trading_day,
        nav=nav,
        units=o.units,
        gross_fen=gross,
        fee_fen=to_manager,
        fund_fee_fen=to_fund,
        proceeds_fen=proceeds,
        lots=[[s.trading_day, s.units] for s in segments],
    )


MODULE = Module(
    name=NAME,
    methods={
        "register_fund": Method(RegisterFundArgs, register_fund),
        "subscribe": Method(SubscribeArgs, subscribe),
        "redeem": Method(RedeemArgs, redeem),
        "cancel": Method(OrderIdArgs, cancel),
        "publish_nav": Method(PublishNavArgs, publish_nav),
        "confirm": Method(ConfirmArgs, confirm),
    },
)
