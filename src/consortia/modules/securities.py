"""The securities module (JR/T 0317 "asset registration", "asset mapping", "transfer management").

- Asset registration: an issuer applies to register a security; the operator (role ``exchange``)
  approves or rejects; the issuer then issues approved securities into securities accounts, never
  beyond the authorized total. Issued shares are locked until the security's lock-up time.
- Asset mapping: the operator registers holdings that already exist off chain, in batches whose
  declared total must equal the sum of their entries (else the whole batch fails).
- Transfer management: transfers between securities accounts, sent by the sending investor or its
  broker, checked atomically against halts, account freezes, free balance, lock-up, suitability
  (product risk R1–R5 against investor tolerance C1–C5) and qualified-investor-only products.
  Crossing a 5% step of the issued amount (up or down) emits a ``disclosure`` event.

Every check runs before the first write; amounts are integers in the security's smallest unit.

State keys:

- ``securities/security/<code>`` → ``Security``
- ``securities/holding/<code>/<account id>`` → ``Holding`` (absent when all amounts are zero)
- ``securities/investor_total/<code>/<investor id>`` → ``InvestorTotal`` (for disclosure)
- ``securities/batch/<code>/<batch id>`` → ``MappingBatch`` (asset-mapping audit, no replays)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from consortia.execution.context import TxContext
from consortia.execution.errors import TxFailure
from consortia.execution.module import Method, Module
from consortia.modules.investors import (
    AccountFrozenError,
    InvalidArgumentError,
    NotAuthorizedError,
    SecuritiesAccount,
    adjust_positions,
    check_id,
    check_text,
    is_broker_of,
    is_contract,
    require_investor,
    require_open_account,
    sender_account,
)
from consortia.modules.registry import has_role, load_account

NAME = "securities"

SECURITY_KINDS: frozenset[str] = frozenset({"equity", "bond", "fund_share"})
RISK_LEVELS = range(1, 6)  # R1..R5
MAX_DECIMALS = 18
MAX_AMOUNT = (1 << 63) - 1
MAX_MAPPING_ENTRIES = 1000
DISCLOSURE_STEP_PCT = 5
STEPS_PER_WHOLE = 100 // DISCLOSURE_STEP_PCT

# Run by ``transfer`` before it reads freezes, with (ctx, code, from account, to account): the
# enforcement module registers one that processes expired freezes and activates waiting ones.
SETTLE_HOOKS: list[Callable[[TxContext, str, str, str], None]] = []

# Run by ``Book.flush`` before it writes anything, with (ctx, book): every change of a balance
# (issuance, asset mapping, transfer, forced transfer) passes here while ``book.originals`` still
# holds the balances before the change. The corporate actions module registers one that freezes
# record-date entitlements and keeps its holder index. A hook may raise a ``TxFailure``.
BALANCE_HOOKS: list[Callable[[TxContext, Book], None]] = []


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Security:
    code: str
    name: str
    kind: str  # equity | bond | fund_share
    issuer: bytes  # the applying issuer account
    issuer_org: str
    authorized: int  # most that may ever be issued (issuance + asset mapping)
    issued: int
    decimals: int
    risk_level: int  # 1..5 = R1..R5
    qualified_only: bool
    lockup_until_ms: int  # issued shares stay locked until this block time
    status: str  # pending | approved | rejected
    halted: bool
    halt_reason: str
    applied_height: int
    decided_height: int
    decision_reason: str


@dataclass(frozen=True)
class Holding:
    """One account's position in one security. free = balance − pledged − frozen − locked."""

    code: str
    account_id: str
    balance: int
    pledged: int
    frozen: int
    locked: int
    lockup_until_ms: int  # ``locked`` becomes free once block time reaches this

    def effective_locked(self, time_ms: int) -> int:
        return self.locked if time_ms < self.lockup_until_ms else 0

    def free(self, time_ms: int) -> int:
        return self.balance - self.pledged - self.frozen - self.effective_locked(time_ms)


@dataclass(frozen=True)
class InvestorTotal:
    total: int


@dataclass(frozen=True)
class MapEntry:
    account_id: str
    amount: int
    locked: int  # part of ``amount`` subject to the security's lock-up


@dataclass(frozen=True)
class MappingBatch:
    code: str
    batch_id: str
    total: int
    entries: int
    mapped_by: bytes
    height: int


def security_key(code: str) -> bytes:
    return b"securities/security/" + code.encode()


def holding_key(code: str, account_id: str) -> bytes:
    return b"securities/holding/" + code.encode() + b"/" + account_id.encode()


def investor_total_key(code: str, investor_id: str) -> bytes:
    return b"securities/investor_total/" + code.encode() + b"/" + investor_id.encode()


def batch_key(code: str, batch_id: str) -> bytes:
    return b"securities/batch/" + code.encode() + b"/" + batch_id.encode()


# ---------------------------------------------------------------------------------------------
# Failures (stable codes)


class UnknownSecurityError(TxFailure):
    code = "UNKNOWN_SECURITY"


class SecurityExistsError(TxFailure):
    code = "SECURITY_EXISTS"


class NotApprovedError(TxFailure):
    code = "SECURITY_NOT_APPROVED"


class NotPendingError(TxFailure):
    code = "SECURITY_NOT_PENDING"


class ExceedsAuthorizedError(TxFailure):
    code = "EXCEEDS_AUTHORIZED"


class BatchTotalMismatchError(TxFailure):
    code = "BATCH_TOTAL_MISMATCH"


class DuplicateBatchError(TxFailure):
    code = "DUPLICATE_BATCH"


class InsufficientFreeBalanceError(TxFailure):
    code = "INSUFFICIENT_FREE_BALANCE"


class LockedUpError(TxFailure):
    code = "LOCKED_UP"


class SuitabilityMismatchError(TxFailure):
    code = "SUITABILITY_MISMATCH"


class QualifiedInvestorsOnlyError(TxFailure):
    code = "QUALIFIED_INVESTORS_ONLY"


class TradingHaltedError(TxFailure):
    code = "TRADING_HALTED"


class AlreadyHaltedError(TxFailure):
    code = "ALREADY_HALTED"


class NotHaltedError(TxFailure):
    code = "NOT_HALTED"


# ---------------------------------------------------------------------------------------------
# Reads and shared checks (also used by the enforcement module)


def require_security(ctx: TxContext, code: str) -> Security:
    sec = ctx.get_record(security_key(code), Security)
    if sec is None:
        raise UnknownSecurityError(f"no security {code!r}")
    return sec


def require_approved(ctx: TxContext, code: str) -> Security:
    sec = require_security(ctx, code)
    if sec.status != "approved":
        raise NotApprovedError(f"security {code!r} is {sec.status}")
    return sec


def load_holding(ctx: TxContext, code: str, account_id: str) -> Holding:
    found = ctx.get_record(holding_key(code, account_id), Holding)
    return found if found is not None else Holding(code, account_id, 0, 0, 0, 0, 0)


def _check_amount(name: str, amount: int, *, positive: bool = True) -> None:
    low = 1 if positive else 0
    if not low <= amount <= MAX_AMOUNT:
        raise InvalidArgumentError(f"{name} must be an integer in {low}..{MAX_AMOUNT}")


def check_not_frozen(ctx: TxContext, acct: SecuritiesAccount) -> None:
    """Neither the securities account nor its investor's chain account may be frozen."""
    if acct.frozen:
        raise AccountFrozenError(
            f"securities account {acct.account_id!r} is frozen ({acct.freeze_reference})"
        )
    inv = require_investor(ctx, acct.investor_id)
    owner = load_account(ctx, inv.address)
    if owner is not None and owner.frozen:
        raise AccountFrozenError(f"the owner of securities account {acct.account_id!r} is frozen")


def check_suitability(ctx: TxContext, sec: Security, acct: SecuritiesAccount) -> None:
    inv = require_investor(ctx, acct.investor_id)
    if sec.risk_level > inv.risk_tolerance:
        raise SuitabilityMismatchError(
            f"{sec.code} is R{sec.risk_level}; investor {inv.investor_id!r} tolerates "
            f"C{inv.risk_tolerance}"
        )
    if sec.qualified_only and not inv.qualified:
        raise QualifiedInvestorsOnlyError(
            f"{sec.code} is for qualified investors only; {inv.investor_id!r} is not qualified"
        )


def _step(total: int, issued: int) -> int:
    """How many whole 5% steps of ``issued`` a holding of ``total`` reaches."""
    return 0 if issued <= 0 else (total * STEPS_PER_WHOLE) // issued


class Book:
    """The holdings a transaction changes, buffered so every check precedes every write."""

    def __init__(self, ctx: TxContext, sec: Security) -> None:
        self.ctx = ctx
        self.sec = sec
        self.issued_before = sec.issued
        self.holdings: dict[str, Holding] = {}
        self.originals: dict[str, Holding] = {}
        self.owner: dict[str, str] = {}  # account id -> investor id

    def get(self, acct: SecuritiesAccount) -> Holding:
        if acct.account_id not in self.holdings:
            h = load_holding(self.ctx, self.sec.code, acct.account_id)
            self.originals[acct.account_id] = h
            self.holdings[acct.account_id] = h
            self.owner[acct.account_id] = acct.investor_id
        return self.holdings[acct.account_id]

    def set(self, h: Holding) -> None:
        self.holdings[h.account_id] = h

    def flush(self, issued_after: int) -> None:
        """Write holdings, position counts, investor totals; emit disclosure events."""
        ctx, code = self.ctx, self.sec.code
        for hook in BALANCE_HOOKS:
            hook(ctx, self)
        deltas: dict[str, int] = {}
        for account_id in sorted(self.holdings):
            before, after = self.originals[account_id], self.holdings[account_id]
            if before == after:
                continue
            # A lock-up that has passed is released for good when the record is rewritten.
            if after.lockup_until_ms and ctx.time_ms >= after.lockup_until_ms:
                after = replace(after, locked=0, lockup_until_ms=0)
            empty = after.balance == 0
            if empty:
                ctx.delete(holding_key(code, account_id))
            else:
                ctx.put_record(holding_key(code, account_id), after)
            if (before.balance == 0) != empty:
                adjust_positions(ctx, account_id, -1 if empty else 1)
            investor_id = self.owner[account_id]
            deltas[investor_id] = deltas.get(investor_id, 0) + after.balance - before.balance
        for investor_id in sorted(deltas):
            key = investor_total_key(code, investor_id)
            old = (ctx.get_record(key, InvestorTotal) or InvestorTotal(0)).total
            new = old + deltas[investor_id]
            if new == 0:
                ctx.delete(key)
            else:
                ctx.put_record(key, InvestorTotal(new))
            step_before = _step(old, self.issued_before)
            step_after = _step(new, issued_after)
            if step_before == step_after:
                continue
            up = step_after > step_before
            # The threshold crossed nearest to the new holding (several may be crossed at once).
            threshold = step_after if up else step_after + 1
            ctx.emit(
                NAME,
                "disclosure",
                code=code,
                investor_id=investor_id,
                direction="up" if up else "down",
                threshold_pct=threshold * DISCLOSURE_STEP_PCT,
                previous_step_pct=step_before * DISCLOSURE_STEP_PCT,
                holding=new,
                issued=issued_after,
                holding_bp=(new * 10_000) // issued_after if issued_after else 0,
            )


# ---------------------------------------------------------------------------------------------
# Asset registration


@dataclass(frozen=True)
class ApplyArgs:
    code: str
    name: str
    kind: str
    authorized: int
    decimals: int
    risk_level: int
    qualified_only: bool
    lockup_until_ms: int


def apply(ctx: TxContext, args: ApplyArgs) -> None:
    """An issuer applies to register a security; it waits for the operator's decision."""
    sender = sender_account(ctx)
    if not has_role(sender, "issuer"):
        raise NotAuthorizedError("only an issuer applies to register a security")
    check_id("code", args.code)
    check_text("name", args.name)
    if args.kind not in SECURITY_KINDS:
        raise InvalidArgumentError(f"kind must be one of {sorted(SECURITY_KINDS)}")
    _check_amount("authorized", args.authorized)
    if not 0 <= args.decimals <= MAX_DECIMALS:
        raise InvalidArgumentError(f"decimals must be 0..{MAX_DECIMALS}")
    if args.risk_level not in RISK_LEVELS:
        raise InvalidArgumentError("risk_level must be 1..5 (R1..R5)")
    _check_amount("lockup_until_ms", args.lockup_until_ms, positive=False)
    if ctx.get(security_key(args.code)) is not None:
        raise SecurityExistsError(f"security {args.code!r} already exists")
    ctx.put_record(
        security_key(args.code),
        Security(
            code=args.code,
            name=args.name,
            kind=args.kind,
            issuer=sender.address,
            issuer_org=sender.org_id,
            authorized=args.authorized,
            issued=0,
            decimals=args.decimals,
            risk_level=args.risk_level,
            qualified_only=args.qualified_only,
            lockup_until_ms=args.lockup_until_ms,
            status="pending",
            halted=False,
            halt_reason="",
            applied_height=ctx.height,
            decided_height=0,
            decision_reason="",
        ),
    )
    ctx.emit(NAME, "security_applied", code=args.code, kind=args.kind, issuer=sender.address)


@dataclass(frozen=True)
class DecideArgs:
    code: str
    reason: str


def _require_operator(ctx: TxContext) -> None:
    if not has_role(sender_account(ctx), "exchange"):
        raise NotAuthorizedError("only the operator (role exchange) may do this")


def _decide(ctx: TxContext, args: DecideArgs, status: str) -> None:
    _require_operator(ctx)
    check_text("reason", args.reason)
    sec = require_security(ctx, args.code)
    if sec.status != "pending":
        raise NotPendingError(f"security {sec.code!r} is already {sec.status}")
    ctx.put_record(
        security_key(sec.code),
        replace(sec, status=status, decided_height=ctx.height, decision_reason=args.reason),
    )
    ctx.emit(NAME, f"security_{status}", code=sec.code, reason=args.reason)


def approve(ctx: TxContext, args: DecideArgs) -> None:
    """The operator approves a pending application; the security can then be issued."""
    _decide(ctx, args, "approved")


def reject(ctx: TxContext, args: DecideArgs) -> None:
    """The operator rejects a pending application (final; the code stays taken for the record)."""
    _decide(ctx, args, "rejected")


@dataclass(frozen=True)
class IssueArgs:
    code: str
    account_id: str
    amount: int


def issue(ctx: TxContext, args: IssueArgs) -> None:
    """The issuer issues approved securities into an investor's account (locked until lock-up)."""
    sec = require_security(ctx, args.code)
    sender = sender_account(ctx)
    if not has_role(sender, "issuer") or sender.org_id != sec.issuer_org:
        raise NotAuthorizedError(f"only an issuer of {sec.issuer_org!r} issues {sec.code!r}")
    if sec.status != "approved":
        raise NotApprovedError(f"security {sec.code!r} is {sec.status}")
    _check_amount("amount", args.amount)
    if args.amount > sec.authorized - sec.issued:
        raise ExceedsAuthorizedError(
            f"issuing {args.amount} would exceed the authorized {sec.authorized} "
            f"({sec.issued} issued)"
        )
    acct = require_open_account(ctx, args.account_id)
    check_not_frozen(ctx, acct)
    check_suitability(ctx, sec, acct)
    book = Book(ctx, sec)
    book.set(_credit(ctx, sec, book.get(acct), args.amount, args.amount))
    issued = sec.issued + args.amount
    ctx.put_record(security_key(sec.code), replace(sec, issued=issued))
    book.flush(issued)
    ctx.emit(NAME, "issued", code=sec.code, account_id=acct.account_id, amount=args.amount)


def _credit(ctx: TxContext, sec: Security, h: Holding, amount: int, locked: int) -> Holding:
    """``h`` plus ``amount`` new shares of which ``locked`` fall under the lock-up."""
    if ctx.time_ms >= sec.lockup_until_ms:
        locked = 0
    if h.lockup_until_ms and ctx.time_ms >= h.lockup_until_ms:
        h = replace(h, locked=0, lockup_until_ms=0)
    return replace(
        h,
        balance=h.balance + amount,
        locked=h.locked + locked,
        lockup_until_ms=sec.lockup_until_ms if h.locked + locked else 0,
    )


@dataclass(frozen=True)
class MapHoldingsArgs:
    code: str
    batch_id: str
    batch_total: int
    entries: tuple[MapEntry, ...]


def map_holdings(ctx: TxContext, args: MapHoldingsArgs) -> None:
    """The operator brings pre-existing holdings on chain; the batch total must match exactly."""
    _require_operator(ctx)
    sec = require_approved(ctx, args.code)
    check_id("batch_id", args.batch_id)
    if not 1 <= len(args.entries) <= MAX_MAPPING_ENTRIES:
        raise InvalidArgumentError(f"a batch has 1..{MAX_MAPPING_ENTRIES} entries")
    if ctx.get(batch_key(sec.code, args.batch_id)) is not None:
        raise DuplicateBatchError(f"batch {args.batch_id!r} of {sec.code!r} is already mapped")
    seen: set[str] = set()
    for e in args.entries:
        _check_amount("amount", e.amount)
        if not 0 <= e.locked <= e.amount:
            raise InvalidArgumentError("an entry's locked part must be within 0..amount")
        if e.account_id in seen:
            raise InvalidArgumentError(f"account {e.account_id!r} appears twice in the batch")
        seen.add(e.account_id)
    total = sum(e.amount for e in args.entries)
    if total != args.batch_total:
        raise BatchTotalMismatchError(
            f"entries sum to {total}, the batch declares {args.batch_total}"
        )
    if total > sec.authorized - sec.issued:
        raise ExceedsAuthorizedError(
            f"mapping {total} would exceed the authorized {sec.authorized} ({sec.issued} issued)"
        )
    book = Book(ctx, sec)
    for e in args.entries:
        acct = require_open_account(ctx, e.account_id)
        book.set(_credit(ctx, sec, book.get(acct), e.amount, e.locked))
    issued = sec.issued + total
    ctx.put_record(security_key(sec.code), replace(sec, issued=issued))
    ctx.put_record(
        batch_key(sec.code, args.batch_id),
        MappingBatch(sec.code, args.batch_id, total, len(args.entries), ctx.sender, ctx.height),
    )
    book.flush(issued)
    ctx.emit(
        NAME,
        "holdings_mapped",
        code=sec.code,
        batch_id=args.batch_id,
        total=total,
        entries=len(args.entries),
    )


# ---------------------------------------------------------------------------------------------
# Trading halts


@dataclass(frozen=True)
class HaltArgs:
    code: str
    reason: str


def halt(ctx: TxContext, args: HaltArgs) -> None:
    """The operator halts trading (transfers) in a security."""
    _require_operator(ctx)
    halt_as_authority(ctx, args)


def halt_as_authority(ctx: TxContext, args: HaltArgs) -> None:
    """``halt`` once the caller has checked the authority (the operator for ``halt``; a proven
    supervision order for the ``supervision`` module); same rules and error codes."""
    check_text("reason", args.reason)
    sec = require_approved(ctx, args.code)
    if sec.halted:
        raise AlreadyHaltedError(f"{sec.code!r} is already halted")
    ctx.put_record(security_key(sec.code), replace(sec, halted=True, halt_reason=args.reason))
    ctx.emit(NAME, "trading_halted", code=sec.code, reason=args.reason)


def resume(ctx: TxContext, args: HaltArgs) -> None:
    """The operator lifts a trading halt."""
    _require_operator(ctx)
    resume_as_authority(ctx, args)


def resume_as_authority(ctx: TxContext, args: HaltArgs) -> None:
    """``resume`` once the caller has checked the authority; same rules and error codes."""
    check_text("reason", args.reason)
    sec = require_approved(ctx, args.code)
    if not sec.halted:
        raise NotHaltedError(f"{sec.code!r} is not halted")
    ctx.put_record(security_key(sec.code), replace(sec, halted=False, halt_reason=""))
    ctx.emit(NAME, "trading_resumed", code=sec.code, reason=args.reason)


# ---------------------------------------------------------------------------------------------
# Transfers


@dataclass(frozen=True)
class TransferArgs:
    code: str
    from_account: str
    to_account: str
    amount: int
    memo: str


def transfer(ctx: TxContext, args: TransferArgs) -> None:
    """Move free shares between securities accounts, sent by the owner or the owner's broker."""
    sec = require_security(ctx, args.code)
    src = require_open_account(ctx, args.from_account)
    src_owner = require_investor(ctx, src.investor_id)
    sender = sender_account(ctx)
    # A contract's account is moved only by the contract (through its precompile): a broker
    # acting for it could bypass the contract's own rules, e.g. release unvested shares.
    brokered = is_broker_of(ctx, sender, src.org_id) and not is_contract(ctx, src_owner.address)
    if sender.address != src_owner.address and not brokered:
        raise NotAuthorizedError(
            f"only the owner of {src.account_id!r} or its broker may transfer from it"
        )
    check_text("memo", args.memo, empty_ok=True)
    move_shares(ctx, sec.code, args.from_account, args.to_account, args.amount, memo=args.memo)


def move_shares(
    ctx: TxContext, code: str, from_account: str, to_account: str, amount: int, *, memo: str
) -> None:
    """Move ``amount`` free shares of ``code`` between two open securities accounts.

    The caller has authorized the move (``transfer`` checks the sender; settlement checks both
    parties' instructions). Checks, before any write: the security is approved and not halted,
    neither account is frozen, the source's free balance covers the amount (``LOCKED_UP`` when only
    the lock-up stands in the way) and the destination investor is suitable. Emits ``transferred``.
    """
    sec = require_security(ctx, code)
    if sec.status != "approved":
        raise NotApprovedError(f"security {sec.code!r} is {sec.status}")
    _check_amount("amount", amount)
    if from_account == to_account:
        raise InvalidArgumentError("a transfer needs two different accounts")
    src = require_open_account(ctx, from_account)
    dst = require_open_account(ctx, to_account)
    if sec.halted:
        raise TradingHaltedError(f"trading in {sec.code!r} is halted: {sec.halt_reason}")
    if SETTLE_HOOKS:
        for hook in SETTLE_HOOKS:
            hook(ctx, sec.code, src.account_id, dst.account_id)
        src = require_open_account(ctx, src.account_id)
        dst = require_open_account(ctx, dst.account_id)
    check_not_frozen(ctx, src)
    check_not_frozen(ctx, dst)
    book = Book(ctx, sec)
    held = book.get(src)
    free = held.free(ctx.time_ms)
    if amount > free:
        if amount <= free + held.effective_locked(ctx.time_ms):
            raise LockedUpError(
                f"{held.effective_locked(ctx.time_ms)} of {sec.code!r} in {src.account_id!r} "
                f"are locked up until {held.lockup_until_ms}"
            )
        raise InsufficientFreeBalanceError(
            f"{src.account_id!r} has {free} free {sec.code!r}, {amount} requested"
        )
    check_suitability(ctx, sec, dst)
    book.set(replace(held, balance=held.balance - amount))
    received = book.get(dst)
    book.set(replace(received, balance=received.balance + amount))
    book.flush(sec.issued)
    ctx.emit(
        NAME,
        "transferred",
        code=sec.code,
        from_account=src.account_id,
        to_account=dst.account_id,
        amount=amount,
        memo=memo,
    )


def create_units(ctx: TxContext, code: str, account_id: str, amount: int) -> None:
    """Create ``amount`` new units of an approved security in an account (fund subscriptions:
    the caller is the fund module, which has checked the manager and the order). Checks the
    account is open, not frozen and suitable, and the authorized total. Emits ``issued``."""
    sec = require_approved(ctx, code)
    _check_amount("amount", amount)
    if amount > sec.authorized - sec.issued:
        raise ExceedsAuthorizedError(
            f"creating {amount} would exceed the authorized {sec.authorized} "
            f"({sec.issued} issued)"
        )
    acct = require_open_account(ctx, account_id)
    check_not_frozen(ctx, acct)
    check_suitability(ctx, sec, acct)
    book = Book(ctx, sec)
    book.set(_credit(ctx, sec, book.get(acct), amount, amount))
    issued = sec.issued + amount
    ctx.put_record(security_key(sec.code), replace(sec, issued=issued))
    book.flush(issued)
    ctx.emit(NAME, "issued", code=sec.code, account_id=acct.account_id, amount=amount)


def cancel_units(ctx: TxContext, code: str, account_id: str, amount: int) -> None:
    """Cancel ``amount`` free units of a security held in an account (fund redemptions: the
    caller has checked the order). The units leave the issued total. Emits ``cancelled``."""
    sec = require_approved(ctx, code)
    _check_amount("amount", amount)
    acct = require_open_account(ctx, account_id)
    if SETTLE_HOOKS:
        for hook in SETTLE_HOOKS:
            hook(ctx, sec.code, acct.account_id, acct.account_id)
        acct = require_open_account(ctx, acct.account_id)
    check_not_frozen(ctx, acct)
    book = Book(ctx, sec)
    held = book.get(acct)
    free = held.free(ctx.time_ms)
    if amount > free:
        raise InsufficientFreeBalanceError(
            f"{acct.account_id!r} has {free} free {sec.code!r}, {amount} to cancel"
        )
    book.set(replace(held, balance=held.balance - amount))
    issued = sec.issued - amount
    ctx.put_record(security_key(sec.code), replace(sec, issued=issued))
    book.flush(issued)
    ctx.emit(NAME, "cancelled", code=sec.code, account_id=acct.account_id, amount=amount)


MODULE = Module(
    name=NAME,
    methods={
        "apply": Method(ApplyArgs, apply),
        "approve": Method(DecideArgs, approve),
        "reject": Method(DecideArgs, reject),
        "issue": Method(IssueArgs, issue),
        "map_holdings": Method(MapHoldingsArgs, map_holdings),
        "halt": Method(HaltArgs, halt),
        "resume": Method(HaltArgs, resume),
        "transfer": Method(TransferArgs, transfer),
    },
)
