"""The futures module: exchange-listed futures contracts, client futures accounts, trades reported
by the exchange's matching system, margin in e-CNY, daily mark-to-market settlement, margin calls,
forced liquidation and cash settlement at expiry.

Roles. The exchange (role ``exchange``; contracts name the exchange's organization) lists
contracts, halts and resumes them, reports trades and publishes settlement prices. A futures firm
is a member organization of kind ``broker`` acting through accounts with role ``broker`` (the
registry needs no new role: a futures company is a broker of futures; see docs/futures.md): it
opens client futures accounts for its own investors and may order a forced liquidation. Clients
(the investors themselves) deposit and withdraw margin.

Margin custody. All client margin sits in one e-CNY custody wallet that the exchange names once
(``set_custody``): a top-level category-1 corporate wallet held by an account with role
``custodian`` of an active custodian or bank organization other than the exchange's, as the
segregated-margin rules require (the exchange never holds clients' money itself). e-CNY enters it
only by a client's ``deposit`` and leaves it only by a client's ``withdraw``; the module keeps
each account's margin balance (fen, signed: a loss beyond the balance leaves a debt). Variation
margin moves between these balances, so ``custody wallet = Σ balances`` at all times and daily
settlement never moves e-CNY between wallets (it cannot fail on a wallet rule).

Prices and money are integers: a price is fen per unit of the underlying and a multiple of the
contract's tick; a lot is ``contract_size`` units. Per position the module keeps the long and
short lots, the net position at the last settlement (``marked_net``) and the day's trade cash
(``day_cash``: + price × lots for sales, − for purchases). With ``S`` the new settlement price
and ``P`` the previous one, a position's variation margin is
``(S × net − P × marked_net + day_cash) × contract_size`` fen: exact, no averaging. Every trade
adds equal and opposite lots and trade cash to its two sides, so per contract Σ net = 0 and
Σ day_cash = 0, hence Σ variation margin = 0: settlement conserves the total.

Margin rules (``S`` = the contract's last settlement price, the reference price before the
first):

- equity = balance + Σ unsettled P&L at ``S`` (``(S × (net − marked_net) + day_cash) × size``);
- initial requirement = Σ ⌈(long + short) × size × S × margin_rate_bp / 10^4⌉ per position,
  maintenance requirement the same with ``maintenance_rate_bp``;
- a trade side that opens lots needs equity − initial requirement ≥ 0 after the trade (the
  initial margin is reserved); closing is always allowed;
- a withdrawal may take at most min(balance, equity − initial requirement).

Daily settlement (``settle``: the exchange publishes the day's settlement price of every active
contract and everything is marked in that one transaction, contracts and accounts in sorted
order). Afterwards an account whose equity is below its maintenance requirement (or negative)
gets a ``margin_call`` for the amount that restores the initial requirement. A call is met when a
deposit (or closing trades) bring equity to the initial requirement, or at the next settlement if
equity is back at maintenance; otherwise that next settlement marks it missed and the firm may
``force_liquidate``: it records the reason, the account may then only close, and the exchange's
closing trades for it are flagged ``forced``. On a contract's last trading day the settlement
price is the final settlement price: positions are marked to it and then closed (cash
settlement; physical delivery is out of scope) and the contract expires.

Supervision: each settlement also emits, per account, a ``large_position`` event for positions
with either side at or above the chain parameter ``futures.large_position_lots`` (genesis
``futures_large_position_lots``), else 80% of the contract's position limit; the relayer files
it and the ``daily_settlement`` summaries as supervision-chain reports (docs/futures.md).

State keys:

- ``futures/custody`` → ``Custody``
- ``futures/index`` → ``Index`` (active contract codes, accounts with positions, last settled day)
- ``futures/contract/<code>`` → ``Contract``
- ``futures/account/<account id>`` → ``FuturesAccount``
- ``futures/position/<code>/<account id>`` → ``Position``
- ``futures/trade/<trade id>`` → ``Trade``
- ``futures/settlement/<trading day>`` → ``DaySettlement``
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from consortia.execution.context import TxContext
from consortia.execution.errors import TxFailure
from consortia.execution.module import Method, Module
from consortia.modules import securities
from consortia.modules.calendar import cst_date, date_start_ms, is_trading_day
from consortia.modules.ecny import (
    check_fen,
    may_spend,
    pay_between,
    require_spender,
    require_wallet,
)
from consortia.modules.governance import FUTURES_LARGE_POSITION_PARAM, MAX_FEN, get_param
from consortia.modules.investors import (
    AccountFrozenError,
    InvalidArgumentError,
    NotAuthorizedError,
    check_id,
    check_text,
    is_broker_of,
    require_investor,
    sender_account,
)
from consortia.modules.registry import Account, Organization, has_role, load_account, org_key
from consortia.modules.securities import (
    QualifiedInvestorsOnlyError,
    SuitabilityMismatchError,
)

NAME = "futures"

BP = 10_000
MAX_CONTRACT_SIZE = 1_000_000
MAX_POSITION_LIMIT = 1_000_000
MAX_ACTIVE_CONTRACTS = 8
# Settlement visits every account with a position in one transaction; bounding them keeps it
# within a transaction's limits: events ≤ 2 per contract (summary, expiry) + 2 per account (one
# margin review event, one large-position report) = 16 + 200 ≤ 256; writes stay far below 4096.
MAX_ACTIVE_ACCOUNTS = 100
# A side's notional (lots × size × price) stays within this, so every product below is far from
# the codec's 64-bit integers; prices above a contract's ``max_price`` are refused.
MAX_NOTIONAL = MAX_FEN >> 4
MAX_BALANCE = MAX_FEN  # |margin balance| and |day cash × size| bounds (encodable, with headroom)
MIN_TOLERANCE = 4  # futures are high-risk products: accounts only for C4/C5 investors
OFFSETS = ("open", "close")


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Custody:
    wallet_id: str
    set_by: bytes
    set_height: int


@dataclass(frozen=True)
class Index:
    contracts: tuple[str, ...]  # active (listed, unexpired) contract codes, sorted
    accounts: tuple[str, ...]  # accounts holding a position record, sorted
    last_settled_day: int  # 0: never


@dataclass(frozen=True)
class Contract:
    code: str
    underlying: str
    exchange_org: str
    contract_size: int  # units of the underlying per lot
    tick_size: int  # fen
    daily_limit_bp: int  # price band around the previous settlement price
    margin_rate_bp: int
    maintenance_rate_bp: int
    delivery_month: int  # YYYYMM
    last_trading_day: int  # YYYYMMDD
    position_limit: int  # lots per client per side
    risk_level: int  # R1..R5
    qualified_only: bool
    max_price: int  # ⌊MAX_NOTIONAL / (size × position_limit)⌋
    settle_price: int  # the last settlement price (the reference price before the first)
    settle_day: int  # 0: not settled yet
    status: str  # active | expired
    halted: bool
    halt_reason: str
    listed_height: int


@dataclass(frozen=True)
class FuturesAccount:
    account_id: str
    investor_id: str
    firm_org: str
    balance: int  # margin in fen; negative = a debt after losses
    call_day: int  # trading day of the outstanding margin call (0: none)
    call_fen: int
    call_missed: bool
    liquidation_reason: str  # "" unless the firm ordered a forced liquidation
    status: str  # open | closed
    opened_height: int


@dataclass(frozen=True)
class Position:
    code: str
    account_id: str
    long: int
    short: int
    marked_net: int  # long − short at the last settlement
    day_cash: int  # Σ price × lots of today's sales minus purchases

    def net(self) -> int:
        return self.long - self.short


@dataclass(frozen=True)
class TradeSide:
    account_id: str
    offset: str  # open | close


@dataclass(frozen=True)
class Trade:
    trade_id: str
    code: str
    price: int
    lots: int
    buyer: TradeSide
    seller: TradeSide
    forced: tuple[str, ...]  # sides closed by a forced liquidation (account ids)
    time_ms: int
    height: int


@dataclass(frozen=True)
class SettlementPrice:
    code: str
    price: int


@dataclass(frozen=True)
class DaySettlement:
    trading_day: int
    prices: tuple[SettlementPrice, ...]
    height: int


CUSTODY_KEY = b"futures/custody"
INDEX_KEY = b"futures/index"


def contract_key(code: str) -> bytes:
    return b"futures/contract/" + code.encode()


def account_key(account_id: str) -> bytes:
    return b"futures/account/" + account_id.encode()


def position_key(code: str, account_id: str) -> bytes:
    return b"futures/position/" + code.encode() + b"/" + account_id.encode()


def trade_key(trade_id: str) -> bytes:
    return b"futures/trade/" + trade_id.encode()


def settlement_key(trading_day: int) -> bytes:
    return b"futures/settlement/" + str(trading_day).encode()


# ---------------------------------------------------------------------------------------------
# Failures (stable codes)


class CustodyNotSetError(TxFailure):
    code = "CUSTODY_NOT_SET"


class CustodySetError(TxFailure):
    code = "CUSTODY_ALREADY_SET"


class ContractExistsError(TxFailure):
    code = "CONTRACT_EXISTS"


class UnknownContractError(TxFailure):
    code = "UNKNOWN_CONTRACT"


class ContractExpiredError(TxFailure):
    code = "CONTRACT_EXPIRED"


class TooManyContractsError(TxFailure):
    code = "TOO_MANY_CONTRACTS"


class TooManyAccountsError(TxFailure):
    code = "TOO_MANY_ACTIVE_ACCOUNTS"


class FuturesAccountExistsError(TxFailure):
    code = "FUTURES_ACCOUNT_EXISTS"


class UnknownFuturesAccountError(TxFailure):
    code = "UNKNOWN_FUTURES_ACCOUNT"


class FuturesAccountClosedError(TxFailure):
    code = "FUTURES_ACCOUNT_CLOSED"


class AccountNotEmptyError(TxFailure):
    code = "ACCOUNT_NOT_EMPTY"


class TradeExistsError(TxFailure):
    code = "TRADE_EXISTS"


class PriceLimitError(TxFailure):
    code = "PRICE_LIMIT"


class TickSizeError(TxFailure):
    code = "TICK_SIZE"


class PositionLimitError(TxFailure):
    code = "POSITION_LIMIT"


class InsufficientPositionError(TxFailure):
    code = "INSUFFICIENT_POSITION"


class InsufficientMarginError(TxFailure):
    code = "INSUFFICIENT_MARGIN"


class TurnoverLimitError(TxFailure):
    code = "TURNOVER_LIMIT"


class LiquidatingError(TxFailure):
    code = "ACCOUNT_LIQUIDATING"


class NoMissedCallError(TxFailure):
    code = "NO_MISSED_MARGIN_CALL"


class SettlementPricesError(TxFailure):
    code = "SETTLEMENT_PRICES_MISMATCH"


class AlreadySettledError(TxFailure):
    code = "ALREADY_SETTLED"


class NotATradingDayError(TxFailure):
    code = "NOT_A_TRADING_DAY"


class SettlementOverflowError(TxFailure):
    code = "SETTLEMENT_OVERFLOW"


# ---------------------------------------------------------------------------------------------
# Reads and arithmetic


def load_index(ctx: TxContext) -> Index:
    return ctx.get_record(INDEX_KEY, Index) or Index((), (), 0)


def require_contract(ctx: TxContext, code: str) -> Contract:
    c = ctx.get_record(contract_key(code), Contract)
    if c is None:
        raise UnknownContractError(f"no futures contract {code!r}")
    return c


def require_account(ctx: TxContext, account_id: str) -> FuturesAccount:
    a = ctx.get_record(account_key(account_id), FuturesAccount)
    if a is None:
        raise UnknownFuturesAccountError(f"no futures account {account_id!r}")
    return a


def require_open(ctx: TxContext, account_id: str) -> FuturesAccount:
    a = require_account(ctx, account_id)
    if a.status != "open":
        raise FuturesAccountClosedError(f"futures account {account_id!r} is closed")
    return a


def load_position(ctx: TxContext, code: str, account_id: str) -> Position:
    found = ctx.get_record(position_key(code, account_id), Position)
    return found if found is not None else Position(code, account_id, 0, 0, 0, 0)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def unsettled_pnl(c: Contract, p: Position) -> int:
    """What settling ``p`` at the contract's last settlement price would pay it (fen)."""
    return (c.settle_price * (p.net() - p.marked_net) + p.day_cash) * c.contract_size


def requirement(c: Contract, p: Position, rate_bp: int) -> int:
    """⌈(long + short) × size × S × rate / 10^4⌉ fen: never less than the stated rate."""
    return _ceil_div((p.long + p.short) * c.contract_size * c.settle_price * rate_bp, BP)


@dataclass(frozen=True)
class Standing:
    """An account's equity and margin requirements at the last settlement prices."""

    equity: int
    initial: int
    maintenance: int


def standing(
    ctx: TxContext, a: FuturesAccount, override: dict[str, Position] | None = None
) -> Standing:
    """Equity and requirements over every active contract; ``override`` replaces positions that
    a transaction is about to write."""
    equity, initial, maint = a.balance, 0, 0
    for code in load_index(ctx).contracts:
        c = require_contract(ctx, code)
        p = (override or {}).get(code) or load_position(ctx, code, a.account_id)
        equity += unsettled_pnl(c, p)
        initial += requirement(c, p, c.margin_rate_bp)
        maint += requirement(c, p, c.maintenance_rate_bp)
    return Standing(equity, initial, maint)


def _price_band(c: Contract) -> tuple[int, int]:
    """The day's allowed prices: the previous settlement price ± ⌊S × limit⌋, within
    ``tick..max_price``."""
    width = c.settle_price * c.daily_limit_bp // BP
    return max(c.tick_size, c.settle_price - width), min(c.max_price, c.settle_price + width)


def check_price(c: Contract, price: int) -> None:
    """A trade or settlement price: a multiple of the tick inside the day's price band."""
    if isinstance(price, bool) or price % c.tick_size:
        raise TickSizeError(f"price {price} is not a multiple of the tick {c.tick_size}")
    low, high = _price_band(c)
    if not low <= price <= high:
        raise PriceLimitError(
            f"price {price} is outside {c.code!r}'s band {low}..{high} (previous settlement "
            f"{c.settle_price} ± {c.daily_limit_bp} bp)"
        )


def _save_position(ctx: TxContext, p: Position) -> None:
    if p.long == p.short == p.marked_net == p.day_cash == 0:
        ctx.delete(position_key(p.code, p.account_id))
    else:
        ctx.put_record(position_key(p.code, p.account_id), p)


def _sync_index_account(ctx: TxContext, account_id: str) -> None:
    """Keep ``account_id`` in the index exactly while it has a position record."""
    idx = load_index(ctx)
    has = any(ctx.get(position_key(code, account_id)) is not None for code in idx.contracts)
    accounts = set(idx.accounts)
    if has == (account_id in accounts):
        return
    if has:
        if len(accounts) >= MAX_ACTIVE_ACCOUNTS:
            raise TooManyAccountsError(
                f"at most {MAX_ACTIVE_ACCOUNTS} accounts may hold futures positions"
            )
        accounts.add(account_id)
    else:
        accounts.discard(account_id)
    ctx.put_record(INDEX_KEY, replace(idx, accounts=tuple(sorted(accounts))))


def _require_exchange(ctx: TxContext, org_id: str | None = None) -> Account:
    sender = sender_account(ctx)
    if not has_role(sender, "exchange") or (org_id is not None and sender.org_id != org_id):
        which = f" of {org_id!r}" if org_id else ""
        raise NotAuthorizedError(f"only the exchange{which} (role exchange) may do this")
    return sender


def _require_owner(ctx: TxContext, a: FuturesAccount) -> bytes:
    inv = require_investor(ctx, a.investor_id)
    if ctx.sender != inv.address:
        raise NotAuthorizedError(f"only the client of futures account {a.account_id!r} may do this")
    return inv.address


def _check_owner_not_frozen(ctx: TxContext, a: FuturesAccount) -> None:
    inv = require_investor(ctx, a.investor_id)
    owner = load_account(ctx, inv.address)
    if owner is not None and owner.frozen:
        raise AccountFrozenError(f"the owner of futures account {a.account_id!r} is frozen")


def _require_custody(ctx: TxContext) -> Custody:
    custody = ctx.get_record(CUSTODY_KEY, Custody)
    if custody is None:
        raise CustodyNotSetError("the exchange has not named the margin custody wallet")
    return custody


def _review_call(ctx: TxContext, a: FuturesAccount, s: Standing) -> FuturesAccount:
    """Clear an outstanding call once equity covers the initial requirement again."""
    if a.call_day and s.equity >= s.initial and s.equity >= 0:
        ctx.emit(NAME, "margin_call_met", account_id=a.account_id, call_day=a.call_day)
        return replace(a, call_day=0, call_fen=0, call_missed=False, liquidation_reason="")
    return a


# ---------------------------------------------------------------------------------------------
# Custody and contracts


@dataclass(frozen=True)
class SetCustodyArgs:
    wallet_id: str


CUSTODIAN_ORG_KINDS = frozenset({"custodian", "bank"})


def set_custody(ctx: TxContext, args: SetCustodyArgs) -> None:
    """The exchange names the margin custody wallet, once: a top-level category-1 corporate
    wallet held by an independent custodian (not the exchange's organization)."""
    sender = _require_exchange(ctx)
    if ctx.get(CUSTODY_KEY) is not None:
        raise CustodySetError("the margin custody wallet is already named")
    w = require_wallet(ctx, args.wallet_id)
    if w.kind != "corporate" or w.category != 1 or w.parent:
        raise InvalidArgumentError("the custody wallet must be a top-level category-1 corporate")
    owner = load_account(ctx, w.owner)
    org = None if owner is None else ctx.get_record(org_key(owner.org_id), Organization)
    if (
        owner is None
        or org is None
        or not has_role(owner, "custodian")
        or org.kind not in CUSTODIAN_ORG_KINDS
        or not org.active
        or owner.org_id == sender.org_id
    ):
        raise InvalidArgumentError(
            "the custody wallet must be held by an account with role custodian of an active "
            f"custodian or bank organization other than the exchange's {sender.org_id!r}"
        )
    ctx.put_record(CUSTODY_KEY, Custody(w.wallet_id, sender.address, ctx.height))
    ctx.emit(NAME, "custody_set", wallet_id=w.wallet_id)


@dataclass(frozen=True)
class ListContractArgs:
    code: str
    underlying: str
    contract_size: int
    tick_size: int
    daily_limit_bp: int
    margin_rate_bp: int
    maintenance_rate_bp: int
    delivery_month: int
    last_trading_day: int
    position_limit: int
    reference_price: int  # the base of the first day's price band
    risk_level: int
    qualified_only: bool


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not low <= value <= high:
        raise InvalidArgumentError(f"{name} must be an integer in {low}..{high}")


def list_contract(ctx: TxContext, args: ListContractArgs) -> None:
    """The exchange lists a futures contract (trading opens at once)."""
    sender = _require_exchange(ctx)
    check_id("code", args.code)
    check_text("underlying", args.underlying)
    _check_range("contract_size", args.contract_size, 1, MAX_CONTRACT_SIZE)
    _check_range("position_limit", args.position_limit, 1, MAX_POSITION_LIMIT)
    max_price = MAX_NOTIONAL // (args.contract_size * args.position_limit)
    _check_range("tick_size", args.tick_size, 1, max_price)
    _check_range("daily_limit_bp", args.daily_limit_bp, 1, BP)
    _check_range("margin_rate_bp", args.margin_rate_bp, 1, BP)
    _check_range("maintenance_rate_bp", args.maintenance_rate_bp, 1, args.margin_rate_bp)
    _check_range("risk_level", args.risk_level, 1, 5)
    _check_range("reference_price", args.reference_price, args.tick_size, max_price)
    if args.reference_price % args.tick_size:
        raise TickSizeError("reference_price must be a multiple of tick_size")
    month = args.delivery_month
    if isinstance(month, bool) or not 197001 <= month <= 999912 or not 1 <= month % 100 <= 12:
        raise InvalidArgumentError("delivery_month must be YYYYMM")
    if args.last_trading_day // 100 != month:
        raise InvalidArgumentError("last_trading_day must fall in the delivery month")
    if not is_trading_day(args.last_trading_day):
        raise InvalidArgumentError(f"{args.last_trading_day} is not a trading day")
    if args.last_trading_day < cst_date(ctx.time_ms):
        raise InvalidArgumentError("last_trading_day is already past")
    if ctx.get(contract_key(args.code)) is not None:
        raise ContractExistsError(f"futures contract {args.code!r} already exists")
    idx = load_index(ctx)
    if len(idx.contracts) >= MAX_ACTIVE_CONTRACTS:
        raise TooManyContractsError(f"at most {MAX_ACTIVE_CONTRACTS} active contracts")
    ctx.put_record(
        contract_key(args.code),
        Contract(
            code=args.code,
            underlying=args.underlying,
            exchange_org=sender.org_id,
            contract_size=args.contract_size,
            tick_size=args.tick_size,
            daily_limit_bp=args.daily_limit_bp,
            margin_rate_bp=args.margin_rate_bp,
            maintenance_rate_bp=args.maintenance_rate_bp,
            delivery_month=month,
            last_trading_day=args.last_trading_day,
            position_limit=args.position_limit,
            risk_level=args.risk_level,
            qualified_only=args.qualified_only,
            max_price=max_price,
            settle_price=args.reference_price,
            settle_day=0,
            status="active",
            halted=False,
            halt_reason="",
            listed_height=ctx.height,
        ),
    )
    ctx.put_record(INDEX_KEY, replace(idx, contracts=tuple(sorted((*idx.contracts, args.code)))))
    ctx.emit(
        NAME,
        "contract_listed",
        code=args.code,
        underlying=args.underlying,
        exchange_org=sender.org_id,
        last_trading_day=args.last_trading_day,
        reference_price=args.reference_price,
    )


@dataclass(frozen=True)
class HaltArgs:
    code: str
    reason: str


def _active_contract(ctx: TxContext, code: str) -> Contract:
    c = require_contract(ctx, code)
    if c.status != "active":
        raise ContractExpiredError(f"futures contract {code!r} has expired")
    return c


def halt(ctx: TxContext, args: HaltArgs) -> None:
    """The exchange halts trading in a contract (settlement still marks its positions)."""
    c = _active_contract(ctx, args.code)
    _require_exchange(ctx, c.exchange_org)
    check_text("reason", args.reason)
    if c.halted:
        raise securities.AlreadyHaltedError(f"{c.code!r} is already halted")
    ctx.put_record(contract_key(c.code), replace(c, halted=True, halt_reason=args.reason))
    ctx.emit(NAME, "trading_halted", code=c.code, reason=args.reason)


def resume(ctx: TxContext, args: HaltArgs) -> None:
    """The exchange lifts a trading halt."""
    c = _active_contract(ctx, args.code)
    _require_exchange(ctx, c.exchange_org)
    check_text("reason", args.reason)
    if not c.halted:
        raise securities.NotHaltedError(f"{c.code!r} is not halted")
    ctx.put_record(contract_key(c.code), replace(c, halted=False, halt_reason=""))
    ctx.emit(NAME, "trading_resumed", code=c.code, reason=args.reason)


# ---------------------------------------------------------------------------------------------
# Accounts and margin


@dataclass(frozen=True)
class OpenAccountArgs:
    account_id: str
    investor_id: str


def open_account(ctx: TxContext, args: OpenAccountArgs) -> None:
    """A futures firm opens a futures account for one of its own investors, who must tolerate
    high risk (C4 or C5) and not be frozen."""
    sender = sender_account(ctx)
    if not is_broker_of(ctx, sender, sender.org_id):
        raise NotAuthorizedError("only a futures firm (role broker of a broker org) opens accounts")
    check_id("account_id", args.account_id)
    inv = require_investor(ctx, args.investor_id)
    if inv.org_id != sender.org_id:
        raise NotAuthorizedError(f"investor {inv.investor_id!r} is a client of {inv.org_id!r}")
    if inv.risk_tolerance < MIN_TOLERANCE:
        raise SuitabilityMismatchError(
            f"futures need risk tolerance C{MIN_TOLERANCE} or above; {inv.investor_id!r} is "
            f"C{inv.risk_tolerance}"
        )
    owner = load_account(ctx, inv.address)
    if owner is not None and owner.frozen:
        raise AccountFrozenError(f"investor {inv.investor_id!r} is frozen")
    if ctx.get(account_key(args.account_id)) is not None:
        raise FuturesAccountExistsError(f"futures account {args.account_id!r} already exists")
    ctx.put_record(
        account_key(args.account_id),
        FuturesAccount(
            args.account_id, inv.investor_id, sender.org_id, 0, 0, 0, False, "", "open", ctx.height
        ),
    )
    ctx.emit(
        NAME,
        "futures_account_opened",
        account_id=args.account_id,
        investor_id=inv.investor_id,
        firm_org=sender.org_id,
    )


@dataclass(frozen=True)
class AccountIdArgs:
    account_id: str


def close_account(ctx: TxContext, args: AccountIdArgs) -> None:
    """The firm closes an account without positions and with a zero balance."""
    a = require_open(ctx, args.account_id)
    if not is_broker_of(ctx, sender_account(ctx), a.firm_org):
        raise NotAuthorizedError(f"only the futures firm {a.firm_org!r} closes this account")
    if a.balance or args.account_id in load_index(ctx).accounts:
        raise AccountNotEmptyError(f"futures account {a.account_id!r} holds margin or positions")
    ctx.put_record(account_key(a.account_id), replace(a, status="closed"))
    ctx.emit(NAME, "futures_account_closed", account_id=a.account_id)


@dataclass(frozen=True)
class MarginArgs:
    account_id: str
    wallet_id: str
    amount: int


def deposit(ctx: TxContext, args: MarginArgs) -> None:
    """The client pays margin from its wallet into custody (every wallet rule applies)."""
    a = require_open(ctx, args.account_id)
    _require_owner(ctx, a)
    custody = _require_custody(ctx)
    w = require_wallet(ctx, args.wallet_id)
    require_spender(ctx, w)
    check_fen("amount", args.amount)
    if a.balance + args.amount > MAX_BALANCE:
        raise InvalidArgumentError(f"a margin balance stays at most {MAX_BALANCE} fen")
    pay_between(
        ctx,
        w.wallet_id,
        custody.wallet_id,
        args.amount,
        purpose="futures_margin",
        memo=a.account_id,
    )
    a = replace(a, balance=a.balance + args.amount)
    a = _review_call(ctx, a, standing(ctx, a))
    ctx.put_record(account_key(a.account_id), a)
    ctx.emit(NAME, "margin_deposited", account_id=a.account_id, amount=args.amount)


def withdraw(ctx: TxContext, args: MarginArgs) -> None:
    """The client takes free margin back to a wallet it may spend: at most
    min(balance, equity − initial requirement)."""
    a = require_open(ctx, args.account_id)
    owner = _require_owner(ctx, a)
    _check_owner_not_frozen(ctx, a)
    custody = _require_custody(ctx)
    w = require_wallet(ctx, args.wallet_id)
    if not may_spend(ctx, w, owner):
        raise NotAuthorizedError(f"wallet {w.wallet_id!r} is not the client's")
    check_fen("amount", args.amount)
    s = standing(ctx, a)
    free = min(a.balance, s.equity - s.initial)
    if args.amount > free:
        raise InsufficientMarginError(
            f"futures account {a.account_id!r} may withdraw {max(free, 0)} fen, "
            f"{args.amount} requested"
        )
    pay_between(
        ctx,
        custody.wallet_id,
        w.wallet_id,
        args.amount,
        purpose="futures_margin",
        memo=a.account_id,
    )
    ctx.put_record(account_key(a.account_id), replace(a, balance=a.balance - args.amount))
    ctx.emit(NAME, "margin_withdrawn", account_id=a.account_id, amount=args.amount)


# ---------------------------------------------------------------------------------------------
# Trades


@dataclass(frozen=True)
class ReportTradeArgs:
    trade_id: str
    code: str
    price: int
    lots: int
    buyer: TradeSide
    seller: TradeSide


def _apply_side(
    c: Contract, p: Position, side: str, offset: str, lots: int, price: int
) -> Position:
    """The position after a buy/sell of ``lots`` that opens or closes (refuses over-closing)."""
    cash = price * lots * (1 if side == "sell" else -1)
    if offset == "open":
        if side == "buy":
            return replace(p, long=p.long + lots, day_cash=p.day_cash + cash)
        return replace(p, short=p.short + lots, day_cash=p.day_cash + cash)
    held = p.short if side == "buy" else p.long
    if lots > held:
        raise InsufficientPositionError(
            f"{p.account_id!r} holds {held} {'short' if side == 'buy' else 'long'} lots of "
            f"{c.code!r}; cannot close {lots}"
        )
    if side == "buy":
        return replace(p, short=p.short - lots, day_cash=p.day_cash + cash)
    return replace(p, long=p.long - lots, day_cash=p.day_cash + cash)


def _check_side(
    ctx: TxContext, c: Contract, a: FuturesAccount, side: str, offset: str, p: Position
) -> None:
    """Rules for one side of a trade whose resulting position is ``p``."""
    if abs(p.day_cash) * c.contract_size > MAX_BALANCE:
        raise TurnoverLimitError(f"{a.account_id!r}'s trading in {c.code!r} today is too large")
    if offset == "close":
        return
    if a.liquidation_reason:
        raise LiquidatingError(f"{a.account_id!r} is being force-liquidated; it may only close")
    _check_owner_not_frozen(ctx, a)
    inv = require_investor(ctx, a.investor_id)
    if c.risk_level > inv.risk_tolerance:
        raise SuitabilityMismatchError(
            f"{c.code} is R{c.risk_level}; investor {inv.investor_id!r} tolerates "
            f"C{inv.risk_tolerance}"
        )
    if c.qualified_only and not inv.qualified:
        raise QualifiedInvestorsOnlyError(f"{c.code} is for qualified investors only")
    lots = p.long if side == "buy" else p.short
    if lots > c.position_limit:
        raise PositionLimitError(
            f"{a.account_id!r} would hold {lots} {'long' if side == 'buy' else 'short'} lots of "
            f"{c.code!r}, above the limit of {c.position_limit}"
        )
    s = standing(ctx, a, {c.code: p})
    if s.equity < s.initial:
        raise InsufficientMarginError(
            f"{a.account_id!r} has equity {s.equity} fen; the initial margin after this trade is "
            f"{s.initial} fen"
        )


def report_trade(ctx: TxContext, args: ReportTradeArgs) -> None:
    """The exchange reports a matched trade: both sides open or close, checked against the price
    band, position limits and available margin (all or nothing)."""
    check_id("trade_id", args.trade_id)
    c = _active_contract(ctx, args.code)
    _require_exchange(ctx, c.exchange_org)
    if c.halted:
        raise securities.TradingHaltedError(f"{c.code!r} is halted: {c.halt_reason}")
    if cst_date(ctx.time_ms) > c.last_trading_day:
        raise ContractExpiredError(f"{c.code!r} stopped trading on {c.last_trading_day}")
    if ctx.get(trade_key(args.trade_id)) is not None:
        raise TradeExistsError(f"trade {args.trade_id!r} already exists")
    _check_range("lots", args.lots, 1, c.position_limit)
    check_price(c, args.price)
    if args.buyer.account_id == args.seller.account_id:
        raise InvalidArgumentError("a trade needs two different accounts")
    forced: list[str] = []
    for side, ts in (("buy", args.buyer), ("sell", args.seller)):
        if ts.offset not in OFFSETS:
            raise InvalidArgumentError(f"offset must be one of {list(OFFSETS)}")
        a = require_open(ctx, ts.account_id)
        before = load_position(ctx, c.code, a.account_id)
        after = _apply_side(c, before, side, ts.offset, args.lots, args.price)
        _check_side(ctx, c, a, side, ts.offset, after)
        _save_position(ctx, after)
        _sync_index_account(ctx, a.account_id)
        if a.liquidation_reason:
            forced.append(a.account_id)
            ctx.emit(
                NAME,
                "forced_liquidation",
                trade_id=args.trade_id,
                account_id=a.account_id,
                code=c.code,
                lots=args.lots,
                price=args.price,
                reason=a.liquidation_reason,
            )
        reviewed = _review_call(ctx, a, standing(ctx, a))
        if reviewed != a:
            ctx.put_record(account_key(a.account_id), reviewed)
    ctx.put_record(
        trade_key(args.trade_id),
        Trade(
            args.trade_id,
            c.code,
            args.price,
            args.lots,
            args.buyer,
            args.seller,
            tuple(forced),
            ctx.time_ms,
            ctx.height,
        ),
    )
    ctx.emit(
        NAME,
        "trade_reported",
        trade_id=args.trade_id,
        code=c.code,
        price=args.price,
        lots=args.lots,
        buyer=args.buyer.account_id,
        buyer_offset=args.buyer.offset,
        seller=args.seller.account_id,
        seller_offset=args.seller.offset,
    )


# ---------------------------------------------------------------------------------------------
# Daily settlement, margin calls, forced liquidation, expiry


@dataclass(frozen=True)
class SettleArgs:
    trading_day: int
    prices: tuple[SettlementPrice, ...]  # one per active contract


def settle(ctx: TxContext, args: SettleArgs) -> None:
    """The exchange publishes the day's settlement prices and marks every open position to
    market: variation margin between balances, then margin calls; contracts whose last trading
    day it is are cash-settled and expire. Contracts and accounts in sorted order."""
    sender = _require_exchange(ctx)
    day = args.trading_day
    if isinstance(day, bool) or not is_trading_day(day):
        raise NotATradingDayError(f"{day} is not a trading day")
    idx = load_index(ctx)
    if day <= idx.last_settled_day:
        raise AlreadySettledError(f"{day} is not after the last settled day {idx.last_settled_day}")
    if date_start_ms(day) > ctx.time_ms:
        raise InvalidArgumentError(f"{day} has not begun yet")
    given = [sp.code for sp in args.prices]
    if given != list(idx.contracts):
        raise SettlementPricesError(
            "settlement needs exactly one price per active contract, in code order: "
            f"{list(idx.contracts)}"
        )
    contracts: dict[str, Contract] = {}
    for sp in args.prices:
        c = require_contract(ctx, sp.code)
        if c.exchange_org != sender.org_id:
            raise NotAuthorizedError(f"{c.code!r} is listed by {c.exchange_org!r}")
        check_price(c, sp.price)
        contracts[c.code] = c
    variation: dict[str, int] = {}
    for code, price in ((sp.code, sp.price) for sp in args.prices):  # = the index's order
        c = contracts[code]
        expires = day >= c.last_trading_day
        moves: list[list[object]] = []
        open_interest = 0
        settled_lots: list[list[object]] = []
        for account_id in idx.accounts:
            p = ctx.get_record(position_key(code, account_id), Position)
            if p is None:
                continue
            vm = (price * p.net() - c.settle_price * p.marked_net + p.day_cash) * c.contract_size
            variation[account_id] = variation.get(account_id, 0) + vm
            moves.append([account_id, vm])
            open_interest += p.long
            if expires:
                if p.long or p.short:
                    settled_lots.append([account_id, p.long, p.short])
                _save_position(ctx, Position(code, account_id, 0, 0, 0, 0))
            else:
                _save_position(ctx, replace(p, marked_net=p.net(), day_cash=0))
        contracts[code] = replace(c, settle_price=price, settle_day=day)
        ctx.put_record(contract_key(code), contracts[code])
        ctx.emit(
            NAME,
            "daily_settlement",
            code=code,
            trading_day=day,
            settlement_price=price,
            previous_price=c.settle_price,
            open_interest=open_interest,
            variation=moves,
        )
        if expires:
            ctx.put_record(contract_key(code), replace(contracts[code], status="expired"))
            ctx.emit(
                NAME,
                "contract_expired",
                code=code,
                final_settlement_price=price,
                cash_settled=settled_lots,
            )
    remaining = tuple(code for code in idx.contracts if day < contracts[code].last_trading_day)
    threshold = get_param(ctx, FUTURES_LARGE_POSITION_PARAM)
    ctx.put_record(INDEX_KEY, replace(idx, contracts=remaining, last_settled_day=day))
    for account_id in idx.accounts:
        a = require_account(ctx, account_id)
        balance = a.balance + variation.get(account_id, 0)
        if abs(balance) > MAX_BALANCE:
            raise SettlementOverflowError(f"{account_id!r}'s balance would leave the fen range")
        a = replace(a, balance=balance)
        a = _margin_review(ctx, a, standing(ctx, a), day)
        ctx.put_record(account_key(account_id), a)
        _report_large_positions(ctx, a, remaining, threshold, day)
        _sync_index_account(ctx, account_id)
    ctx.put_record(settlement_key(day), DaySettlement(day, args.prices, ctx.height))


def _report_large_positions(
    ctx: TxContext, a: FuturesAccount, codes: tuple[str, ...], threshold: int | None, day: int
) -> None:
    """One ``large_position`` event per account listing its positions (after settlement) with
    either side at or above the reporting threshold: the genesis / governance parameter
    ``futures.large_position_lots``, else 80% of the contract's position limit."""
    large: list[list[object]] = []
    for code in codes:
        p = ctx.get_record(position_key(code, a.account_id), Position)
        if p is None:
            continue
        c = require_contract(ctx, code)
        limit = threshold if threshold is not None else max(1, c.position_limit * 8 // 10)
        if max(p.long, p.short) >= limit:
            large.append([code, p.long, p.short, limit])
    if large:
        ctx.emit(
            NAME,
            "large_position",
            account_id=a.account_id,
            investor_id=a.investor_id,
            firm_org=a.firm_org,
            trading_day=day,
            positions=large,
        )


def _margin_review(ctx: TxContext, a: FuturesAccount, s: Standing, day: int) -> FuturesAccount:
    """After settlement: calls below maintenance (or negative equity); an earlier call not met
    by now is missed; one met (back at maintenance) is cleared."""
    short = s.equity < s.maintenance or s.equity < 0
    if not short:
        if a.call_day:
            ctx.emit(NAME, "margin_call_met", account_id=a.account_id, call_day=a.call_day)
        return replace(a, call_day=0, call_fen=0, call_missed=False, liquidation_reason="")
    call_fen = max(s.initial, 0) - s.equity
    if a.call_day:
        ctx.emit(
            NAME,
            "margin_call_missed",
            account_id=a.account_id,
            call_day=a.call_day,
            trading_day=day,
            equity=s.equity,
            call_fen=call_fen,
        )
        return replace(a, call_fen=call_fen, call_missed=True)
    ctx.emit(
        NAME,
        "margin_call",
        account_id=a.account_id,
        firm_org=a.firm_org,
        trading_day=day,
        equity=s.equity,
        maintenance=s.maintenance,
        call_fen=call_fen,
    )
    return replace(a, call_day=day, call_fen=call_fen, call_missed=False)


@dataclass(frozen=True)
class ForceLiquidateArgs:
    account_id: str
    reason: str


def force_liquidate(ctx: TxContext, args: ForceLiquidateArgs) -> None:
    """The account's futures firm orders a forced liquidation after a missed margin call, under
    a recorded reason: from now the account may only close, and the exchange's closing trades
    for it are recorded as forced (until the call is met)."""
    a = require_open(ctx, args.account_id)
    if not is_broker_of(ctx, sender_account(ctx), a.firm_org):
        raise NotAuthorizedError(f"only the futures firm {a.firm_org!r} may liquidate this account")
    check_text("reason", args.reason)
    if not a.call_missed:
        raise NoMissedCallError(f"futures account {a.account_id!r} has no missed margin call")
    if a.liquidation_reason:
        raise LiquidatingError(f"futures account {a.account_id!r} is already being liquidated")
    ctx.put_record(account_key(a.account_id), replace(a, liquidation_reason=args.reason))
    ctx.emit(
        NAME,
        "liquidation_ordered",
        account_id=a.account_id,
        firm_org=a.firm_org,
        call_day=a.call_day,
        call_fen=a.call_fen,
        reason=args.reason,
    )


MODULE = Module(
    name=NAME,
    methods={
        "set_custody": Method(SetCustodyArgs, set_custody),
        "list_contract": Method(ListContractArgs, list_contract),
        "halt": Method(HaltArgs, halt),
        "resume": Method(HaltArgs, resume),
        "open_account": Method(OpenAccountArgs, open_account),
        "close_account": Method(AccountIdArgs, close_account),
        "deposit": Method(MarginArgs, deposit),
        "withdraw": Method(MarginArgs, withdraw),
        "report_trade": Method(ReportTradeArgs, report_trade),
        "settle": Method(SettleArgs, settle),
        "force_liquidate": Method(ForceLiquidateArgs, force_liquidate),
    },
)
