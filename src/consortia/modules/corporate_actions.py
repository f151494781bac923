"""Corporate actions (issue 4 item 5): cash dividends with record/ex/payment dates, share splits.

Dates are calendar dates written as ``YYYYMMDD`` integers in China Standard Time (UTC+8, no
daylight saving) and compared with block time (``ctx.time_ms``): date D starts at 00:00 CST of D
and ends at 00:00 CST of D + 1 day.

Cash dividend
-------------

The issuer announces ``amount_per_share_fen``: fen paid per *whole* share, i.e. per
``10 ** decimals`` smallest units of the security. The entitlement of an account holding
``balance`` smallest units at the record date is ``floor(balance * amount_per_share_fen /
10 ** decimals)`` fen (floor per account; the remainders are not paid). The record date must not
be in the past (today, CST, is allowed) and record date ≤ ex-date ≤ payment date. The ex-date is
recorded and published; it has no further effect on chain (entitlement follows holdings at the
end of the record date, the usual T+1 convention makes the ex-date the next trading day).

Holdings at the record date. The state keeps no history, and one transaction may not enumerate
every holder, so the record-date position is captured *lazily, per account*: every change of a
balance goes through ``securities.Book.flush``, which runs ``securities.BALANCE_HOOKS`` before it
writes. Our hook looks at the open dividends of the security whose record date has ended; for
each account whose balance is about to change and that has no entitlement record yet, it writes
one with the balance *before* the change (and, the first time, the security's issued amount
before the change). This is exact: an account that has no entitlement record has not changed
since the record date ended, so its current balance *is* its record-date balance; an account that
has changed got its record written by the first such change, from the pre-change balance, which
is the record-date balance. (Freezing everything at the "first touch" would be wrong for accounts
other than the touched ones only if they had changed earlier, which cannot happen unobserved.)
The issued amount frozen the same way equals the sum of record-date balances, so payment can be
reconciled: the dividend is ``completed`` once the paid shares reach it.

Payment in e-CNY. From the payment date on, the issuer or the operator (role ``exchange``, as
paying agent) calls ``pay`` with a batch of accounts and a paying wallet the sender may spend
(``ecny.require_spender``). Each account's entitlement is paid from that wallet to the account's
settlement wallet (``settlement.settlement_wallet``; ``NO_SETTLEMENT_WALLET`` when the account has
none) through ``ecny.pay_between``, so every wallet rule applies (funds, limits, freezes, caps),
and the entitlement is marked ``paid`` (``dividend_paid`` event per account, ``settlement`` =
"ecny"). The batch is all or nothing: if any payment fails, no account of the batch is paid. An
account can be paid once. An entitlement that floors to 0 fen is marked paid without a payment.
A batch has at most ``MAX_PAY_BATCH`` accounts (each payment emits up to three events).

Share split
-----------

The issuer announces ``new_shares``-for-``old_shares`` (1..1000 each, different), effective on a
date not in the past. From the start of the effective date, balance changes of the security are
refused (``SPLIT_PENDING``) until the issuer or the operator executes the split
(``execute_split``) or the issuer cancels it. Execution multiplies every holding (balance and
locked part), every investor total and the security's issued and authorized amounts by
``new_shares / old_shares``; it is **exact or refused**: if any of these amounts would become
fractional the execution fails with ``FRACTIONAL_UNITS`` (no cash in lieu; the issuer may cancel).
Holdings under pledge or judicial freeze (including waiting freezes) make it fail with
``HOLDINGS_ENCUMBERED``: the enforcement records carry amounts this module does not rescale.
Proportions are unchanged, so no disclosure event is due. The holders are enumerated from a holder
index kept by the same hook (``corporate_actions/holders/<code>``, at most ``MAX_HOLDERS``
accounts per security for a split). To keep dividends and splits consistent, a dividend cannot be
announced while a split whose effective date is on or before its record date is open, and a split
cannot be announced whose effective date is on or before the record date of an open dividend
(``CORPORATE_ACTION_CONFLICT``). Execution first freezes the record-date entitlements of every
holder for dividends whose record date has ended.

State keys:

- ``corporate_actions/dividend/<dividend id>`` → ``Dividend``
- ``corporate_actions/entitlement/<dividend id>/<account id>`` → ``Entitlement``
- ``corporate_actions/split/<split id>`` → ``Split``
- ``corporate_actions/open/<code>`` → ``OpenActions`` (open dividends and split of a security)
- ``corporate_actions/holders/<code>`` → ``Holders`` (accounts with a balance > 0, sorted)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from consortia.execution.context import TxContext
from consortia.execution.errors import TxFailure
from consortia.execution.module import Method, Module
from consortia.modules import enforcement, securities
from consortia.modules.calendar import DAY_MS, InvalidDateError, cst_date, date_start_ms
from consortia.modules.ecny import pay_between, require_spender, require_wallet
from consortia.modules.governance import MAX_FEN
from consortia.modules.investors import (
    InvalidArgumentError,
    NotAuthorizedError,
    check_id,
    require_open_account,
    sender_account,
)
from consortia.modules.registry import has_role
from consortia.modules.securities import (
    Book,
    Holding,
    InvestorTotal,
    Security,
    holding_key,
    investor_total_key,
    load_holding,
    require_approved,
    require_security,
    security_key,
)
from consortia.modules.settlement import settlement_wallet

NAME = "corporate_actions"

MAX_AMOUNT = (1 << 63) - 1
MAX_RATIO = 1000
MAX_OPEN_DIVIDENDS = 16
MAX_PAY_BATCH = 80  # ≤ 3 events per account within MAX_EVENTS_PER_TX
MAX_HOLDERS = 1000


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Dividend:
    dividend_id: str
    code: str
    amount_per_share_fen: int  # fen per whole share (10 ** decimals smallest units)
    decimals: int
    record_date: int  # YYYYMMDD, CST
    ex_date: int
    payment_date: int
    record_end_ms: int  # 00:00 CST of the day after the record date
    payment_start_ms: int  # 00:00 CST of the payment date
    record_issued: int  # issued amount at the record date; -1 until frozen
    paid_shares: int
    paid_fen: int
    status: str  # announced | completed
    announced_by: bytes
    announced_height: int


@dataclass(frozen=True)
class Entitlement:
    dividend_id: str
    account_id: str
    shares: int  # balance at the record date (smallest units)
    amount_fen: int
    status: str  # recorded | paid
    paid_height: int


@dataclass(frozen=True)
class Split:
    split_id: str
    code: str
    new_shares: int
    old_shares: int
    effective_date: int  # YYYYMMDD, CST
    effective_ms: int  # 00:00 CST of the effective date
    status: str  # announced | executed | cancelled
    announced_by: bytes
    announced_height: int
    ended_height: int


@dataclass(frozen=True)
class OpenActions:
    dividends: tuple[str, ...]
    split: str  # "" when none


@dataclass(frozen=True)
class Holders:
    accounts: tuple[str, ...]


def dividend_key(dividend_id: str) -> bytes:
    return b"corporate_actions/dividend/" + dividend_id.encode()


def entitlement_key(dividend_id: str, account_id: str) -> bytes:
    return b"corporate_actions/entitlement/" + dividend_id.encode() + b"/" + account_id.encode()


def split_key(split_id: str) -> bytes:
    return b"corporate_actions/split/" + split_id.encode()


def open_key(code: str) -> bytes:
    return b"corporate_actions/open/" + code.encode()


def holders_key(code: str) -> bytes:
    return b"corporate_actions/holders/" + code.encode()


# ---------------------------------------------------------------------------------------------
# Failures (stable codes)


class ActionExistsError(TxFailure):
    code = "CORPORATE_ACTION_EXISTS"


class UnknownActionError(TxFailure):
    code = "UNKNOWN_CORPORATE_ACTION"


class ActionConflictError(TxFailure):
    code = "CORPORATE_ACTION_CONFLICT"


class TooManyActionsError(TxFailure):
    code = "TOO_MANY_CORPORATE_ACTIONS"


class NotYetError(TxFailure):
    code = "NOT_YET_EFFECTIVE"


class AlreadyPaidError(TxFailure):
    code = "ALREADY_PAID"


class NoEntitlementError(TxFailure):
    code = "NO_ENTITLEMENT"


class ActionClosedError(TxFailure):
    code = "CORPORATE_ACTION_CLOSED"


class SplitPendingError(TxFailure):
    code = "SPLIT_PENDING"


class FractionalUnitsError(TxFailure):
    code = "FRACTIONAL_UNITS"


class EncumberedError(TxFailure):
    code = "HOLDINGS_ENCUMBERED"


class TooManyHoldersError(TxFailure):
    code = "TOO_MANY_HOLDERS"


# ---------------------------------------------------------------------------------------------
# Dates (CST)


def _not_past(ctx: TxContext, name: str, yyyymmdd: int) -> int:
    start = date_start_ms(yyyymmdd)
    if yyyymmdd < cst_date(ctx.time_ms):
        raise InvalidDateError(f"{name} {yyyymmdd} is before today ({cst_date(ctx.time_ms)} CST)")
    return start


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _load_open(ctx: TxContext, code: str) -> OpenActions:
    return ctx.get_record(open_key(code), OpenActions) or OpenActions((), "")


def _store_open(ctx: TxContext, code: str, o: OpenActions) -> None:
    if o.dividends or o.split:
        ctx.put_record(open_key(code), o)
    else:
        ctx.delete(open_key(code))


def _require_issuer(ctx: TxContext, sec: Security) -> None:
    sender = sender_account(ctx)
    if not has_role(sender, "issuer") or sender.org_id != sec.issuer_org:
        raise NotAuthorizedError(f"only an issuer of {sec.issuer_org!r} may do this")


def _require_issuer_or_operator(ctx: TxContext, sec: Security) -> None:
    sender = sender_account(ctx)
    if has_role(sender, "exchange"):
        return
    if not has_role(sender, "issuer") or sender.org_id != sec.issuer_org:
        raise NotAuthorizedError(f"only an issuer of {sec.issuer_org!r} or the operator may")


def _entitled_fen(div: Dividend, shares: int) -> int:
    whole: int = 10**div.decimals  # smallest units per whole share
    return (shares * div.amount_per_share_fen) // whole


def _record_entitlement(ctx: TxContext, div: Dividend, account_id: str, shares: int) -> None:
    key = entitlement_key(div.dividend_id, account_id)
    if ctx.get(key) is None:
        fen = _entitled_fen(div, shares)
        ctx.put_record(key, Entitlement(div.dividend_id, account_id, shares, fen, "recorded", 0))


def _recording_dividends(ctx: TxContext, code: str, issued_before: int) -> list[Dividend]:
    """Open dividends of ``code`` whose record date has ended (record_issued frozen if unset)."""
    out: list[Dividend] = []
    for dividend_id in _load_open(ctx, code).dividends:
        div = ctx.get_record(dividend_key(dividend_id), Dividend)
        if div is None or ctx.time_ms < div.record_end_ms:
            continue
        if div.record_issued < 0:
            div = replace(div, record_issued=issued_before)
            ctx.put_record(dividend_key(dividend_id), div)
        out.append(div)
    return out


def _update_holders(ctx: TxContext, code: str, added: set[str], removed: set[str]) -> None:
    if not added and not removed:
        return
    cur = ctx.get_record(holders_key(code), Holders)
    accounts = (set(cur.accounts) if cur else set()) - removed | added
    if accounts:
        ctx.put_record(holders_key(code), Holders(tuple(sorted(accounts))))
    else:
        ctx.delete(holders_key(code))


def before_balance_change(ctx: TxContext, book: Book) -> None:
    """``securities.BALANCE_HOOKS`` entry: split guard, record-date capture, holder index."""
    code = book.sec.code
    changed = sorted(a for a, h in book.holdings.items() if h.balance != book.originals[a].balance)
    if not changed:
        return
    opened = _load_open(ctx, code)
    if opened.split:
        split = ctx.get_record(split_key(opened.split), Split)
        if split is not None and ctx.time_ms >= split.effective_ms:
            raise SplitPendingError(
                f"split {split.split_id!r} of {code!r} is effective and not yet executed"
            )
    if opened.dividends:
        for div in _recording_dividends(ctx, code, book.issued_before):
            for account_id in changed:
                _record_entitlement(ctx, div, account_id, book.originals[account_id].balance)
    added = {a for a in changed if book.originals[a].balance == 0}
    removed = {a for a in changed if book.holdings[a].balance == 0}
    _update_holders(ctx, code, added, removed)


securities.BALANCE_HOOKS.append(before_balance_change)


# ---------------------------------------------------------------------------------------------
# Cash dividend


@dataclass(frozen=True)
class AnnounceDividendArgs:
    dividend_id: str
    code: str
    amount_per_share_fen: int
    record_date: int
    ex_date: int
    payment_date: int


def announce_dividend(ctx: TxContext, args: AnnounceDividendArgs) -> None:
    """The issuer announces a cash dividend of an approved security."""
    sec = require_security(ctx, args.code)
    _require_issuer(ctx, sec)
    sec = require_approved(ctx, args.code)
    check_id("dividend_id", args.dividend_id)
    if not 1 <= args.amount_per_share_fen <= MAX_AMOUNT:
        raise InvalidArgumentError(f"amount_per_share_fen must be 1..{MAX_AMOUNT}")
    # The whole dividend on every share that may ever exist must be a representable amount of
    # e-CNY, so no holder's entitlement (recorded by later transfers) can overflow.
    if sec.authorized * args.amount_per_share_fen // 10**sec.decimals > MAX_FEN:
        raise InvalidArgumentError(
            f"{args.amount_per_share_fen} fen a share on up to {sec.authorized} units exceeds "
            f"the largest amount of e-CNY ({MAX_FEN} fen)"
        )
    _not_past(ctx, "record_date", args.record_date)
    date_start_ms(args.ex_date)
    payment_start = date_start_ms(args.payment_date)
    if not args.record_date <= args.ex_date <= args.payment_date:
        raise InvalidDateError("dates must satisfy record_date <= ex_date <= payment_date")
    if ctx.get(dividend_key(args.dividend_id)) is not None:
        raise ActionExistsError(f"dividend {args.dividend_id!r} already exists")
    opened = _load_open(ctx, sec.code)
    if len(opened.dividends) >= MAX_OPEN_DIVIDENDS:
        raise TooManyActionsError(f"{sec.code!r} has {MAX_OPEN_DIVIDENDS} open dividends")
    if opened.split:
        split = ctx.get_record(split_key(opened.split), Split)
        if split is not None and split.effective_date <= args.record_date:
            raise ActionConflictError(
                f"split {split.split_id!r} takes effect on {split.effective_date}, on or before "
                f"the record date; execute it first"
            )
    div = Dividend(
        dividend_id=args.dividend_id,
        code=sec.code,
        amount_per_share_fen=args.amount_per_share_fen,
        decimals=sec.decimals,
        record_date=args.record_date,
        ex_date=args.ex_date,
        payment_date=args.payment_date,
        record_end_ms=date_start_ms(args.record_date) + DAY_MS,
        payment_start_ms=payment_start,
        record_issued=-1,
        paid_shares=0,
        paid_fen=0,
        status="announced",
        announced_by=ctx.sender,
        announced_height=ctx.height,
    )
    ctx.put_record(dividend_key(div.dividend_id), div)
    _store_open(ctx, sec.code, replace(opened, dividends=(*opened.dividends, div.dividend_id)))
    ctx.emit(
        NAME,
        "dividend_announced",
        dividend_id=div.dividend_id,
        code=sec.code,
        amount_per_share_fen=div.amount_per_share_fen,
        decimals=div.decimals,
        record_date=div.record_date,
        ex_date=div.ex_date,
        payment_date=div.payment_date,
    )


@dataclass(frozen=True)
class PayArgs:
    dividend_id: str
    account_ids: tuple[str, ...]
    payer_wallet: str  # the e-CNY wallet the dividend is paid from; the sender may spend it


def pay(ctx: TxContext, args: PayArgs) -> None:
    """From the payment date, pay a batch of entitlements in e-CNY (all or nothing)."""
    div = ctx.get_record(dividend_key(args.dividend_id), Dividend)
    if div is None:
        raise UnknownActionError(f"no dividend {args.dividend_id!r}")
    sec = require_security(ctx, div.code)
    _require_issuer_or_operator(ctx, sec)
    if div.status != "announced":
        raise ActionClosedError(f"dividend {div.dividend_id!r} is {div.status}")
    if ctx.time_ms < div.payment_start_ms:
        raise NotYetError(f"dividend {div.dividend_id!r} is payable from {div.payment_date}")
    if not 1 <= len(args.account_ids) <= MAX_PAY_BATCH:
        raise InvalidArgumentError(f"a payment batch has 1..{MAX_PAY_BATCH} accounts")
    if len(set(args.account_ids)) != len(args.account_ids):
        raise InvalidArgumentError("an account appears twice in the batch")
    require_spender(ctx, require_wallet(ctx, args.payer_wallet))
    if div.record_issued < 0:  # no balance change since the record date: issued is unchanged
        div = replace(div, record_issued=sec.issued)
    for account_id in args.account_ids:
        check_id("account_id", account_id)
        key = entitlement_key(div.dividend_id, account_id)
        ent = ctx.get_record(key, Entitlement)
        if ent is None:  # unchanged since the record date: the current balance is the record's
            shares = load_holding(ctx, div.code, account_id).balance
            ent = Entitlement(
                div.dividend_id, account_id, shares, _entitled_fen(div, shares), "recorded", 0
            )
        if ent.status == "paid":
            raise AlreadyPaidError(f"{account_id!r} was already paid {div.dividend_id!r}")
        if ent.shares == 0:
            raise NoEntitlementError(f"{account_id!r} held no {div.code!r} at the record date")
        wallet_id = settlement_wallet(ctx, account_id)
        if ent.amount_fen:
            pay_between(
                ctx,
                args.payer_wallet,
                wallet_id,
                ent.amount_fen,
                purpose="dividend",
                memo=f"{div.dividend_id} {account_id}",
            )
        ctx.put_record(key, replace(ent, status="paid", paid_height=ctx.height))
        div = replace(
            div, paid_shares=div.paid_shares + ent.shares, paid_fen=div.paid_fen + ent.amount_fen
        )
        ctx.emit(
            NAME,
            "dividend_paid",
            dividend_id=div.dividend_id,
            code=div.code,
            account_id=account_id,
            shares=ent.shares,
            amount_fen=ent.amount_fen,
            wallet_id=wallet_id,
            settlement="ecny",
        )
    if div.paid_shares >= div.record_issued:
        div = replace(div, status="completed")
        opened = _load_open(ctx, div.code)
        rest = tuple(i for i in opened.dividends if i != div.dividend_id)
        _store_open(ctx, div.code, replace(opened, dividends=rest))
        ctx.emit(
            NAME,
            "dividend_completed",
            dividend_id=div.dividend_id,
            code=div.code,
            paid_shares=div.paid_shares,
            paid_fen=div.paid_fen,
        )
    ctx.put_record(dividend_key(div.dividend_id), div)


# ---------------------------------------------------------------------------------------------
# Share split


@dataclass(frozen=True)
class AnnounceSplitArgs:
    split_id: str
    code: str
    new_shares: int
    old_shares: int
    effective_date: int


def announce_split(ctx: TxContext, args: AnnounceSplitArgs) -> None:
    """The issuer announces a ``new_shares``-for-``old_shares`` split effective on a date."""
    sec = require_security(ctx, args.code)
    _require_issuer(ctx, sec)
    sec = require_approved(ctx, args.code)
    check_id("split_id", args.split_id)
    if not (1 <= args.new_shares <= MAX_RATIO and 1 <= args.old_shares <= MAX_RATIO):
        raise InvalidArgumentError(f"new_shares and old_shares must be 1..{MAX_RATIO}")
    if args.new_shares == args.old_shares:
        raise InvalidArgumentError("a split changes the number of shares")
    effective_ms = _not_past(ctx, "effective_date", args.effective_date)
    if ctx.get(split_key(args.split_id)) is not None:
        raise ActionExistsError(f"split {args.split_id!r} already exists")
    opened = _load_open(ctx, sec.code)
    if opened.split:
        raise ActionConflictError(f"split {opened.split!r} of {sec.code!r} is still open")
    for dividend_id in opened.dividends:
        div = ctx.get_record(dividend_key(dividend_id), Dividend)
        if div is not None and args.effective_date <= div.record_date:
            raise ActionConflictError(
                f"dividend {dividend_id!r} has record date {div.record_date}; the split must "
                f"take effect after it"
            )
    split = Split(
        split_id=args.split_id,
        code=sec.code,
        new_shares=args.new_shares,
        old_shares=args.old_shares,
        effective_date=args.effective_date,
        effective_ms=effective_ms,
        status="announced",
        announced_by=ctx.sender,
        announced_height=ctx.height,
        ended_height=0,
    )
    ctx.put_record(split_key(split.split_id), split)
    _store_open(ctx, sec.code, replace(opened, split=split.split_id))
    ctx.emit(
        NAME,
        "split_announced",
        split_id=split.split_id,
        code=sec.code,
        new_shares=split.new_shares,
        old_shares=split.old_shares,
        effective_date=split.effective_date,
    )


@dataclass(frozen=True)
class SplitIdArgs:
    split_id: str


def _open_split(ctx: TxContext, split_id: str) -> tuple[Split, Security]:
    split = ctx.get_record(split_key(split_id), Split)
    if split is None:
        raise UnknownActionError(f"no split {split_id!r}")
    return split, require_security(ctx, split.code)


def _scale(amount: int, split: Split, what: str) -> int:
    scaled, rest = divmod(amount * split.new_shares, split.old_shares)
    if rest:
        raise FractionalUnitsError(
            f"{what} of {amount} would become fractional under a "
            f"{split.new_shares}-for-{split.old_shares} split"
        )
    if scaled > MAX_AMOUNT:
        raise InvalidArgumentError(f"{what} would exceed {MAX_AMOUNT}")
    return scaled


def execute_split(ctx: TxContext, args: SplitIdArgs) -> None:
    """From the effective date, rescale every holding and the security's totals exactly."""
    split, sec = _open_split(ctx, args.split_id)
    _require_issuer_or_operator(ctx, sec)
    if split.status != "announced":
        raise ActionClosedError(f"split {split.split_id!r} is {split.status}")
    if ctx.time_ms < split.effective_ms:
        raise NotYetError(f"split {split.split_id!r} takes effect on {split.effective_date}")
    found = ctx.get_record(holders_key(sec.code), Holders)
    holders = found.accounts if found else ()
    if len(holders) > MAX_HOLDERS:
        raise TooManyHoldersError(f"{sec.code!r} has more than {MAX_HOLDERS} holders")
    holdings = [load_holding(ctx, sec.code, a) for a in holders]
    for h in holdings:
        freezes = ctx.get_record(
            enforcement.holding_freezes_key(sec.code, h.account_id), enforcement.FreezeList
        )
        if h.pledged or h.frozen or (freezes is not None and freezes.ids):
            raise EncumberedError(f"{h.account_id!r} has pledged or frozen {sec.code!r}")
    # Record-date entitlements of ended record dates are frozen before balances change.
    for div in _recording_dividends(ctx, sec.code, sec.issued):
        for h in holdings:
            _record_entitlement(ctx, div, h.account_id, h.balance)
    scaled: list[Holding] = [
        replace(
            h,
            balance=_scale(h.balance, split, f"the holding of {h.account_id!r}"),
            locked=_scale(h.locked, split, f"the locked part of {h.account_id!r}"),
        )
        for h in holdings
    ]
    investors: dict[str, int] = {}
    for h in holdings:
        investors.setdefault(require_open_account(ctx, h.account_id).investor_id, 0)
    for investor_id in sorted(investors):
        total = ctx.get_record(investor_total_key(sec.code, investor_id), InvestorTotal)
        if total is not None:
            investors[investor_id] = _scale(total.total, split, f"the total of {investor_id!r}")
    new_sec = replace(
        sec,
        issued=_scale(sec.issued, split, "the issued amount"),
        authorized=_scale(sec.authorized, split, "the authorized amount"),
    )
    # Every check passed: write.
    for h in scaled:
        ctx.put_record(holding_key(sec.code, h.account_id), h)
    for investor_id, total_after in investors.items():
        if total_after:
            ctx.put_record(investor_total_key(sec.code, investor_id), InvestorTotal(total_after))
    ctx.put_record(security_key(sec.code), new_sec)
    ctx.put_record(
        split_key(split.split_id), replace(split, status="executed", ended_height=ctx.height)
    )
    opened = _load_open(ctx, sec.code)
    _store_open(ctx, sec.code, replace(opened, split=""))
    ctx.emit(
        NAME,
        "split_executed",
        split_id=split.split_id,
        code=sec.code,
        new_shares=split.new_shares,
        old_shares=split.old_shares,
        issued=new_sec.issued,
        authorized=new_sec.authorized,
        holders=len(scaled),
    )


def cancel_split(ctx: TxContext, args: SplitIdArgs) -> None:
    """The issuer cancels an announced split that has not been executed."""
    split, sec = _open_split(ctx, args.split_id)
    _require_issuer(ctx, sec)
    if split.status != "announced":
        raise ActionClosedError(f"split {split.split_id!r} is {split.status}")
    ctx.put_record(
        split_key(split.split_id), replace(split, status="cancelled", ended_height=ctx.height)
    )
    opened = _load_open(ctx, sec.code)
    _store_open(ctx, sec.code, replace(opened, split=""))
    ctx.emit(NAME, "split_cancelled", split_id=split.split_id, code=sec.code)


MODULE = Module(
    name=NAME,
    methods={
        "announce_dividend": Method(AnnounceDividendArgs, announce_dividend),
        "pay": Method(PayArgs, pay),
        "announce_split": Method(AnnounceSplitArgs, announce_split),
        "execute_split": Method(SplitIdArgs, execute_split),
        "cancel_split": Method(SplitIdArgs, cancel_split),
    },
)
