"""The e-CNY module (JR/T 0317 "fund mapping"): two-tier issuance, tiered wallets, payments with
controllable anonymity, and conditional (escrowed) payments.

- Two-tier issuance: the central bank (role ``central_bank``) issues e-CNY to an operator bank
  (an active organization of kind ``bank``) into that operator's reserve, against its reserves at
  the central bank, and redeems it back. No other method creates or destroys money, so at every
  height ``issued − redeemed`` equals the sum of every reserve, wallet and open escrow. A bank
  removed from the consortium receives no more e-CNY, but its reserve stays redeemable.
- Wallets: an operator (an ``operator_bank`` account, a role only genesis, a consortium admin or
  governance grants) opens personal and corporate wallets for registry accounts, in a KYC category
  1..4 with a balance cap, a per-payment limit and a daily limit (category 1: none; others: chain
  parameters ``ecny.cat<N>.*``, defaults below = the published 2021 figures). Daily totals reset at
  00:00 China Standard Time of block time. Operators upgrade a wallet's category after stronger KYC.
  A parent wallet may have sub-wallets (one level) whose own limits are within the parent's; the
  parent's cap covers the family's balances and the parent's per-payment and daily limits cover the
  family's spending. The operator opens no sub-wallet under a contract's wallet (only the contract
  acts for it). Wallets can be frozen by a judicial authority (regulator, court) or by their
  operator (risk control); only the same kind of authority lifts the freeze, and a judicial
  freeze takes over an operator's (not the reverse). A frozen wallet (or
  the sub-wallet of a frozen parent) pays nothing but still receives, as bank freezes do.
- Controllable anonymity: the chain holds for each wallet only a salted commitment to its holder's
  identity and the identity sealed to the opening operator and the regulator (see
  ``investors.seal_identity``). Payment events name wallets, never people. A payment at or above the
  large-value threshold (``ecny.large_value_fen``, default ¥50,000) is flagged ``traceable`` and
  emits ``large_value_payment``, which the regulator's services use to open the sealed identities.
- Conditional payments: the payer locks e-CNY in an escrow that releases to the payee when its
  condition holds (a date has come; the payer confirms; a named third party confirms) and that the
  payer can take back once it has expired unreleased — prepaid-funds protection.

Amounts are integers in fen (¥0.01). Other modules (settlement, funds, insurance, corporate actions)
move money only through ``pay_between``, so every wallet rule applies to them too.

State keys:

- ``ecny/supply`` → ``Supply``
- ``ecny/reserve/<org id>`` → ``Reserve`` (an operator's undistributed e-CNY)
- ``ecny/wallet/<wallet id>`` → ``Wallet``
- ``ecny/escrow/<escrow id>`` → ``Escrow``
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from consortia.execution.context import TxContext
from consortia.execution.errors import TxFailure
from consortia.execution.module import Method, Module
from consortia.modules.calendar import cst_date
from consortia.modules.governance import ECNY_LARGE_VALUE_PARAM, MAX_FEN, get_param
from consortia.modules.investors import (
    COMMITMENT_SIZE,
    InvalidArgumentError,
    InvalidIdentityError,
    NotAuthorizedError,
    check_id,
    check_sealed_identity,
    check_text,
    is_contract,
    sender_account,
)
from consortia.modules.registry import (
    Account,
    Organization,
    has_role,
    load_account,
    org_key,
)

NAME = "ecny"

CATEGORIES = range(1, 5)  # 1 = strongest KYC (no fixed limits) .. 4 = phone number only
WALLET_KINDS: frozenset[str] = frozenset({"personal", "corporate"})
CONDITIONS: frozenset[str] = frozenset({"date", "payer", "third_party"})
JUDICIAL_ROLES: tuple[str, ...] = ("regulator", "court")


@dataclass(frozen=True)
class Limits:
    """Balance cap, per-payment and daily limits in fen; ``None`` means no fixed limit."""

    balance_cap: int | None
    per_payment: int | None
    daily: int | None


# The published figures (2021): category 2 (ID + bank account) ¥500,000 / ¥50,000 / ¥100,000;
# category 3 (ID + phone) ¥20,000 / ¥5,000 / ¥10,000; category 4 (phone only) ¥10,000 / ¥2,000 /
# ¥5,000. Genesis or governance may change them (parameters ``ecny.cat<N>.<limit>_fen``).
DEFAULT_LIMITS: dict[int, Limits] = {
    1: Limits(None, None, None),
    2: Limits(50_000_000, 5_000_000, 10_000_000),
    3: Limits(2_000_000, 500_000, 1_000_000),
    4: Limits(1_000_000, 200_000, 500_000),
}
DEFAULT_LARGE_VALUE_FEN = 5_000_000  # ¥50,000
# Running totals that only grow (cumulative issuance, a day's spending) must stay encodable: the
# codec's integers are 64-bit, and a write that cannot be encoded would abort the whole block.
MAX_CUMULATIVE_FEN = (1 << 64) - 1


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Supply:
    issued: int
    redeemed: int


@dataclass(frozen=True)
class Reserve:
    """An operator's e-CNY not yet distributed to wallets, and its issuance history."""

    org_id: str
    balance: int
    issued: int
    redeemed: int


@dataclass(frozen=True)
class Wallet:
    wallet_id: str
    operator_org: str  # the operator bank that opened it and holds the sealed identity
    owner: bytes  # the registry account that spends from it
    kind: str  # personal | corporate
    category: int  # 1..4; a sub-wallet has its parent's category
    parent: str  # "" for a top-level wallet
    balance: int
    children_balance: int  # sum of the sub-wallets' balances (0 for a sub-wallet)
    # A sub-wallet's own limits (0 = none of its own); a top-level wallet's come from its category.
    own_balance_cap: int
    own_per_payment: int
    own_daily: int
    day: int  # CST date (YYYYMMDD) that ``day_spent`` counts
    day_spent: int  # spent on ``day``, for a parent including its sub-wallets' spending
    frozen: str  # "" | "judicial" | "operator"
    freeze_reference: str
    identity_commitment: bytes  # H(salt ‖ identity), empty for a sub-wallet (its parent's holder)
    sealed_identity: bytes  # sealed to the operator and the regulator
    opened_height: int
    upgraded_height: int


@dataclass(frozen=True)
class Escrow:
    escrow_id: str
    payer: str  # wallet ids
    payee: str
    amount: int
    condition: str  # date | payer | third_party
    release_at_ms: int  # "date": releasable from this block time
    confirmer: bytes  # "third_party": the registry account whose confirmation releases it
    expires_at_ms: int  # unreleased at this block time → the payer may take it back
    memo: str
    status: str  # open | released | refunded
    created_height: int
    closed_height: int


SUPPLY_KEY = b"ecny/supply"


def reserve_key(org_id: str) -> bytes:
    return b"ecny/reserve/" + org_id.encode()


def wallet_key(wallet_id: str) -> bytes:
    return b"ecny/wallet/" + wallet_id.encode()


def escrow_key(escrow_id: str) -> bytes:
    return b"ecny/escrow/" + escrow_id.encode()


# ---------------------------------------------------------------------------------------------
# Failures (stable codes)


class NotOperatorError(TxFailure):
    code = "NOT_AN_OPERATOR"


class InsufficientReserveError(TxFailure):
    code = "INSUFFICIENT_RESERVE"


class UnknownWalletError(TxFailure):
    code = "UNKNOWN_WALLET"


class WalletExistsError(TxFailure):
    code = "WALLET_EXISTS"


class WalletFrozenError(TxFailure):
    code = "WALLET_FROZEN"


class WalletNotFrozenError(TxFailure):
    code = "WALLET_NOT_FROZEN"


class InsufficientFundsError(TxFailure):
    code = "INSUFFICIENT_FUNDS"


class BalanceCapExceededError(TxFailure):
    code = "BALANCE_CAP_EXCEEDED"


class PerPaymentLimitError(TxFailure):
    code = "PER_PAYMENT_LIMIT_EXCEEDED"


class DailyLimitError(TxFailure):
    code = "DAILY_LIMIT_EXCEEDED"


class CategoryNotStrongerError(TxFailure):
    code = "CATEGORY_NOT_STRONGER"


class SubWalletLimitError(TxFailure):
    code = "SUB_WALLET_LIMIT_EXCEEDS_PARENT"


class UnknownEscrowError(TxFailure):
    code = "UNKNOWN_ESCROW"


class EscrowExistsError(TxFailure):
    code = "ESCROW_EXISTS"


class EscrowClosedError(TxFailure):
    code = "ESCROW_CLOSED"


class ConditionNotMetError(TxFailure):
    code = "CONDITION_NOT_MET"


class EscrowExpiredError(TxFailure):
    code = "ESCROW_EXPIRED"


class EscrowNotExpiredError(TxFailure):
    code = "ESCROW_NOT_EXPIRED"


# ---------------------------------------------------------------------------------------------
# Reads and checks shared with other modules


def check_fen(name: str, amount: int) -> None:
    """An amount of e-CNY: a positive integer number of fen."""
    if isinstance(amount, bool) or not 1 <= amount <= MAX_FEN:
        raise InvalidArgumentError(f"{name} must be an integer number of fen in 1..{MAX_FEN}")


def load_supply(ctx: TxContext) -> Supply:
    return ctx.get_record(SUPPLY_KEY, Supply) or Supply(0, 0)


def load_reserve(ctx: TxContext, org_id: str) -> Reserve:
    return ctx.get_record(reserve_key(org_id), Reserve) or Reserve(org_id, 0, 0, 0)


def require_wallet(ctx: TxContext, wallet_id: str) -> Wallet:
    w = ctx.get_record(wallet_key(wallet_id), Wallet)
    if w is None:
        raise UnknownWalletError(f"no e-CNY wallet {wallet_id!r}")
    return w


def category_limits(ctx: TxContext, category: int) -> Limits:
    """A category's limits: chain parameters where set, else the published defaults."""
    default = DEFAULT_LIMITS[category]
    if category == 1:
        return default

    def param(limit: str, fallback: int | None) -> int | None:
        value = get_param(ctx, f"ecny.cat{category}.{limit}_fen")
        return fallback if value is None else value

    return Limits(
        param("balance_cap", default.balance_cap),
        param("per_payment", default.per_payment),
        param("daily", default.daily),
    )


def wallet_limits(ctx: TxContext, w: Wallet) -> Limits:
    """A wallet's own limits: its category's for a top-level wallet; its own for a sub-wallet."""
    if not w.parent:
        return category_limits(ctx, w.category)
    return Limits(w.own_balance_cap or None, w.own_per_payment or None, w.own_daily or None)


def large_value_fen(ctx: TxContext) -> int:
    value = get_param(ctx, ECNY_LARGE_VALUE_PARAM)
    return DEFAULT_LARGE_VALUE_FEN if value is None else value


def is_operator(ctx: TxContext, acct: Account, org_id: str | None = None) -> bool:
    """``acct`` is an ``operator_bank`` account of an active bank (of ``org_id`` if given)."""
    if not has_role(acct, "operator_bank") or (org_id is not None and acct.org_id != org_id):
        return False
    org = ctx.get_record(org_key(acct.org_id), Organization)
    return org is not None and org.active and org.kind == "bank"


def _require_operator(ctx: TxContext, org_id: str | None = None) -> Account:
    sender = sender_account(ctx)
    if not is_operator(ctx, sender, org_id):
        which = f"of {org_id!r} " if org_id else ""
        raise NotAuthorizedError(f"only an e-CNY operator bank account {which}may do this")
    return sender


def may_spend(ctx: TxContext, w: Wallet, address: bytes) -> bool:
    """Whether ``address`` may move money out of ``w``: its owner, or for a sub-wallet also the
    parent's owner (a family or a company controls its sub-wallets)."""
    if address == w.owner:
        return True
    if w.parent:
        parent = require_wallet(ctx, w.parent)
        return address == parent.owner
    return False


def require_spender(ctx: TxContext, w: Wallet) -> None:
    if not may_spend(ctx, w, ctx.sender):
        raise NotAuthorizedError(f"only the holder of wallet {w.wallet_id!r} may spend from it")


def _check_not_frozen(w: Wallet) -> None:
    if w.frozen:
        raise WalletFrozenError(
            f"wallet {w.wallet_id!r} is frozen ({w.frozen}: {w.freeze_reference})"
        )


def _rolled(w: Wallet, today: int) -> Wallet:
    """``w`` with its daily total reset if the CST day has changed since it last spent."""
    return w if w.day == today else replace(w, day=today, day_spent=0)


def _add_spent(day_spent: int, amount: int) -> int:
    """A day's running total, saturating at ``MAX_FEN``: every daily limit is at most ``MAX_FEN``
    (a governance bound), so the checks are unchanged, and a category-1 wallet that moves a large
    balance back and forth all day never overflows the record's 64-bit integer."""
    return min(day_spent + amount, MAX_FEN)


def _check_spend(ctx: TxContext, w: Wallet, amount: int, today: int) -> None:
    """Per-payment and daily limits of ``w`` (already rolled to today) for spending ``amount``."""
    limits = wallet_limits(ctx, w)
    if limits.per_payment is not None and amount > limits.per_payment:
        raise PerPaymentLimitError(
            f"{amount} fen exceeds wallet {w.wallet_id!r}'s per-payment limit of "
            f"{limits.per_payment} fen"
        )
    if limits.daily is not None and w.day_spent + amount > limits.daily:
        raise DailyLimitError(
            f"wallet {w.wallet_id!r} has spent {w.day_spent} fen on {today} (CST); {amount} more "
            f"exceeds its daily limit of {limits.daily} fen"
        )


def _check_cap(ctx: TxContext, w: Wallet, new_balance: int) -> None:
    """Balance caps after ``w``'s balance becomes ``new_balance`` (the family's, for a parent)."""
    limits = wallet_limits(ctx, w)
    if limits.balance_cap is not None and new_balance + w.children_balance > limits.balance_cap:
        raise BalanceCapExceededError(
            f"wallet {w.wallet_id!r} would hold {new_balance + w.children_balance} fen, above its "
            f"balance cap of {limits.balance_cap} fen"
        )


class Ledger:
    """The wallets one transaction changes, buffered so checks see each other's effects."""

    def __init__(self, ctx: TxContext) -> None:
        self.ctx = ctx
        self.today = cst_date(ctx.time_ms)
        self.wallets: dict[str, Wallet] = {}

    def get(self, wallet_id: str) -> Wallet:
        if wallet_id not in self.wallets:
            self.wallets[wallet_id] = _rolled(require_wallet(self.ctx, wallet_id), self.today)
        return self.wallets[wallet_id]

    def debit(self, wallet_id: str, amount: int, *, spend: bool) -> None:
        """Take ``amount`` out of a wallet; ``spend`` applies per-payment and daily limits (to the
        parent too, for a sub-wallet)."""
        w = self.get(wallet_id)
        _check_not_frozen(w)
        if amount > w.balance:
            raise InsufficientFundsError(
                f"wallet {w.wallet_id!r} holds {w.balance} fen, {amount} needed"
            )
        parent = self.get(w.parent) if w.parent else None
        if parent is not None:
            _check_not_frozen(parent)
        if spend:
            _check_spend(self.ctx, w, amount, self.today)
            if parent is not None:
                _check_spend(self.ctx, parent, amount, self.today)
                parent = replace(parent, day_spent=_add_spent(parent.day_spent, amount))
            w = replace(w, day_spent=_add_spent(w.day_spent, amount))
        self.wallets[w.wallet_id] = replace(w, balance=w.balance - amount)
        if parent is not None:
            self.wallets[parent.wallet_id] = replace(
                parent, children_balance=parent.children_balance - amount
            )

    def credit(self, wallet_id: str, amount: int, *, capped: bool = True) -> None:
        """Put ``amount`` into a wallet, within its cap and its parent's family cap. A frozen
        wallet still receives: a freeze stops money leaving ("receive but not pay")."""
        w = self.get(wallet_id)
        if capped:
            _check_cap(self.ctx, w, w.balance + amount)
        self.wallets[w.wallet_id] = replace(w, balance=w.balance + amount)
        if w.parent:
            parent = self.get(w.parent)
            parent = replace(parent, children_balance=parent.children_balance + amount)
            if capped:
                _check_cap(self.ctx, parent, parent.balance)
            self.wallets[parent.wallet_id] = parent

    def flush(self) -> None:
        for wallet_id in sorted(self.wallets):
            self.ctx.put_record(wallet_key(wallet_id), self.wallets[wallet_id])


def pay_between(
    ctx: TxContext, payer: str, payee: str, amount: int, *, purpose: str, memo: str = ""
) -> None:
    """Move ``amount`` fen from wallet ``payer`` to wallet ``payee`` under every wallet rule.

    The caller has checked that the transaction's sender may spend from ``payer``. Raises a
    ``TxFailure`` (and writes nothing) if a wallet is unknown or frozen, the payer lacks funds or
    would exceed a per-payment or daily limit, or the payee would exceed a balance cap. Emits
    ``payment`` (and ``large_value_payment`` at or above the threshold); events name wallets only.
    """
    check_fen("amount", amount)
    if payer == payee:
        raise InvalidArgumentError("a payment needs two different wallets")
    ledger = Ledger(ctx)
    ledger.debit(payer, amount, spend=True)
    ledger.credit(payee, amount)
    ledger.flush()
    _emit_payment(ctx, ledger, payer, payee, amount, purpose, memo)


def _emit_payment(
    ctx: TxContext, ledger: Ledger, payer: str, payee: str, amount: int, purpose: str, memo: str
) -> None:
    traceable = amount >= large_value_fen(ctx)
    ctx.emit(
        NAME,
        "payment",
        payer=payer,
        payee=payee,
        amount_fen=amount,
        purpose=purpose,
        memo=memo,
        traceable=traceable,
    )
    if traceable:
        p, q = ledger.get(payer), ledger.get(payee)
        ctx.emit(
            NAME,
            "large_value_payment",
            payer=payer,
            payer_operator=p.operator_org,
            payee=payee,
            payee_operator=q.operator_org,
            amount_fen=amount,
            purpose=purpose,
        )


# ---------------------------------------------------------------------------------------------
# Two-tier issuance


@dataclass(frozen=True)
class IssueArgs:
    operator_org: str
    amount: int
    reserve_reference: str  # the central bank's record of the reserves set aside


def _require_bank(ctx: TxContext, org_id: str, *, active: bool = True) -> None:
    """``org_id`` is a bank (an active one unless ``active`` is False)."""
    check_id("operator_org", org_id)
    org = ctx.get_record(org_key(org_id), Organization)
    if org is None or (active and not org.active) or org.kind != "bank":
        state = "an active " if active else "a "
        raise NotOperatorError(f"{org_id!r} is not {state}bank that may operate e-CNY")


def issue(ctx: TxContext, args: IssueArgs) -> None:
    """The central bank issues e-CNY into an operator's reserve (the only way money is created)."""
    if not has_role(sender_account(ctx), "central_bank"):
        raise NotAuthorizedError("only the central bank issues e-CNY")
    _require_bank(ctx, args.operator_org)
    check_fen("amount", args.amount)
    check_text("reserve_reference", args.reserve_reference)
    supply = load_supply(ctx)
    if supply.issued - supply.redeemed + args.amount > MAX_FEN:
        raise InvalidArgumentError("issuance would exceed the representable supply")
    if supply.issued + args.amount > MAX_CUMULATIVE_FEN:
        raise InvalidArgumentError("issuance would exceed the representable cumulative total")
    r = load_reserve(ctx, args.operator_org)
    ctx.put_record(
        reserve_key(r.org_id),
        replace(r, balance=r.balance + args.amount, issued=r.issued + args.amount),
    )
    ctx.put_record(SUPPLY_KEY, replace(supply, issued=supply.issued + args.amount))
    ctx.emit(
        NAME,
        "issued",
        operator_org=r.org_id,
        amount_fen=args.amount,
        reserve_reference=args.reserve_reference,
    )


def redeem(ctx: TxContext, args: IssueArgs) -> None:
    """The central bank redeems e-CNY from an operator's reserve (the only way money is
    destroyed)."""
    if not has_role(sender_account(ctx), "central_bank"):
        raise NotAuthorizedError("only the central bank redeems e-CNY")
    # A bank removed from the consortium can no longer receive e-CNY, but its reserve (where its
    # holders' unloads land) must still be redeemable, or that money would be stuck forever.
    _require_bank(ctx, args.operator_org, active=False)
    check_fen("amount", args.amount)
    check_text("reserve_reference", args.reserve_reference)
    r = load_reserve(ctx, args.operator_org)
    if args.amount > r.balance:
        raise InsufficientReserveError(
            f"{r.org_id!r} holds {r.balance} fen in reserve, {args.amount} to redeem"
        )
    ctx.put_record(
        reserve_key(r.org_id),
        replace(r, balance=r.balance - args.amount, redeemed=r.redeemed + args.amount),
    )
    supply = load_supply(ctx)
    ctx.put_record(SUPPLY_KEY, replace(supply, redeemed=supply.redeemed + args.amount))
    ctx.emit(
        NAME,
        "redeemed",
        operator_org=r.org_id,
        amount_fen=args.amount,
        reserve_reference=args.reserve_reference,
    )


# ---------------------------------------------------------------------------------------------
# Wallets


@dataclass(frozen=True)
class OpenWalletArgs:
    wallet_id: str
    owner: bytes
    kind: str
    category: int
    identity_commitment: bytes
    sealed_identity: bytes


def _check_identity(ctx: TxContext, operator: Account, commitment: bytes, sealed: bytes) -> None:
    if len(commitment) != COMMITMENT_SIZE:
        raise InvalidIdentityError(f"identity_commitment must be {COMMITMENT_SIZE} bytes")
    check_sealed_identity(ctx, operator, sealed)


def open_wallet(ctx: TxContext, args: OpenWalletArgs) -> None:
    """An operator opens a wallet for a registry account, its holder's identity sealed."""
    operator = _require_operator(ctx)
    check_id("wallet_id", args.wallet_id)
    if args.kind not in WALLET_KINDS:
        raise InvalidArgumentError(f"kind must be one of {sorted(WALLET_KINDS)}")
    if args.category not in CATEGORIES:
        raise InvalidArgumentError("category must be 1..4")
    _check_identity(ctx, operator, args.identity_commitment, args.sealed_identity)
    if load_account(ctx, args.owner) is None and not is_contract(ctx, args.owner):
        raise InvalidArgumentError(f"owner {args.owner.hex()} is not a registry account")
    if ctx.get(wallet_key(args.wallet_id)) is not None:
        raise WalletExistsError(f"wallet {args.wallet_id!r} already exists")
    ctx.put_record(
        wallet_key(args.wallet_id),
        Wallet(
            wallet_id=args.wallet_id,
            operator_org=operator.org_id,
            owner=args.owner,
            kind=args.kind,
            category=args.category,
            parent="",
            balance=0,
            children_balance=0,
            own_balance_cap=0,
            own_per_payment=0,
            own_daily=0,
            day=0,
            day_spent=0,
            frozen="",
            freeze_reference="",
            identity_commitment=args.identity_commitment,
            sealed_identity=args.sealed_identity,
            opened_height=ctx.height,
            upgraded_height=ctx.height,
        ),
    )
    # The event names the wallet and its operator, never the holder's identity.
    ctx.emit(
        NAME,
        "wallet_opened",
        wallet_id=args.wallet_id,
        operator_org=operator.org_id,
        kind=args.kind,
        category=args.category,
        identity_commitment=args.identity_commitment,
    )


@dataclass(frozen=True)
class OpenSubWalletArgs:
    wallet_id: str
    parent: str
    owner: bytes
    balance_cap: int
    per_payment_limit: int
    daily_limit: int


def _within(name: str, value: int, parent_limit: int | None) -> None:
    check_fen(name, value)
    if parent_limit is not None and value > parent_limit:
        raise SubWalletLimitError(f"{name} {value} exceeds the parent's {parent_limit} fen")


def open_sub_wallet(ctx: TxContext, args: OpenSubWalletArgs) -> None:
    """The parent's holder (or its operator) opens a sub-wallet with limits within the parent's."""
    parent = require_wallet(ctx, args.parent)
    sender = sender_account(ctx)
    if ctx.sender != parent.owner and not is_operator(ctx, sender, parent.operator_org):
        raise NotAuthorizedError("only the parent wallet's holder or operator opens a sub-wallet")
    if ctx.sender != parent.owner and is_contract(ctx, parent.owner):
        # A sub-wallet's holder spends within the parent's limits, and the parent's holder
        # spends from it: for a contract's wallet that is the contract's decision, not the
        # operator's (which opens, loads, upgrades and freezes it like any other).
        raise NotAuthorizedError(
            f"wallet {parent.wallet_id!r} is owned by contract {parent.owner.hex()}: only the "
            "contract may act for it, not its operator"
        )
    if parent.parent:
        raise InvalidArgumentError("a sub-wallet cannot have sub-wallets of its own")
    _check_not_frozen(parent)
    check_id("wallet_id", args.wallet_id)
    if load_account(ctx, args.owner) is None and not is_contract(ctx, args.owner):
        raise InvalidArgumentError(f"owner {args.owner.hex()} is not a registry account")
    limits = category_limits(ctx, parent.category)
    _within("balance_cap", args.balance_cap, limits.balance_cap)
    _within("per_payment_limit", args.per_payment_limit, limits.per_payment)
    _within("daily_limit", args.daily_limit, limits.daily)
    if ctx.get(wallet_key(args.wallet_id)) is not None:
        raise WalletExistsError(f"wallet {args.wallet_id!r} already exists")
    ctx.put_record(
        wallet_key(args.wallet_id),
        Wallet(
            wallet_id=args.wallet_id,
            operator_org=parent.operator_org,
            owner=args.owner,
            kind=parent.kind,
            category=parent.category,
            parent=parent.wallet_id,
            balance=0,
            children_balance=0,
            own_balance_cap=args.balance_cap,
            own_per_payment=args.per_payment_limit,
            own_daily=args.daily_limit,
            day=0,
            day_spent=0,
            frozen="",
            freeze_reference="",
            identity_commitment=b"",
            sealed_identity=b"",
            opened_height=ctx.height,
            upgraded_height=ctx.height,
        ),
    )
    ctx.emit(
        NAME,
        "sub_wallet_opened",
        wallet_id=args.wallet_id,
        parent=parent.wallet_id,
        balance_cap_fen=args.balance_cap,
        per_payment_fen=args.per_payment_limit,
        daily_fen=args.daily_limit,
    )


@dataclass(frozen=True)
class UpgradeWalletArgs:
    wallet_id: str
    category: int
    identity_commitment: bytes
    sealed_identity: bytes


def upgrade_wallet(ctx: TxContext, args: UpgradeWalletArgs) -> None:
    """After stronger KYC the wallet's operator moves it to a stronger (lower) category."""
    w = require_wallet(ctx, args.wallet_id)
    operator = _require_operator(ctx, w.operator_org)
    if w.parent:
        raise InvalidArgumentError("a sub-wallet takes its parent's category")
    if args.category not in CATEGORIES:
        raise InvalidArgumentError("category must be 1..4")
    if args.category >= w.category:
        raise CategoryNotStrongerError(
            f"wallet {w.wallet_id!r} is category {w.category}; "
            f"an upgrade goes to 1..{w.category - 1}"
        )
    _check_identity(ctx, operator, args.identity_commitment, args.sealed_identity)
    ctx.put_record(
        wallet_key(w.wallet_id),
        replace(
            w,
            category=args.category,
            identity_commitment=args.identity_commitment,
            sealed_identity=args.sealed_identity,
            upgraded_height=ctx.height,
        ),
    )
    ctx.emit(
        NAME,
        "wallet_upgraded",
        wallet_id=w.wallet_id,
        from_category=w.category,
        to_category=args.category,
        identity_commitment=args.identity_commitment,
    )


@dataclass(frozen=True)
class FreezeWalletArgs:
    wallet_id: str
    reference: str  # the legal or risk-control reference


def _freeze_authority(ctx: TxContext, w: Wallet) -> str:
    sender = sender_account(ctx)
    if any(has_role(sender, r) for r in JUDICIAL_ROLES):
        return "judicial"
    if is_operator(ctx, sender, w.operator_org):
        return "operator"
    raise NotAuthorizedError("only a judicial authority or the wallet's operator freezes it")


def freeze_wallet(ctx: TxContext, args: FreezeWalletArgs) -> None:
    """A judicial authority (regulator, court) or the wallet's operator freezes a wallet."""
    w = require_wallet(ctx, args.wallet_id)
    authority = _freeze_authority(ctx, w)
    check_text("reference", args.reference)
    # A judicial freeze takes over an operator's risk-control freeze (else the operator could lift
    # its own freeze and let the money go before the court's order lands); nothing else stacks.
    if w.frozen and not (authority == "judicial" and w.frozen == "operator"):
        raise WalletFrozenError(f"wallet {w.wallet_id!r} is already frozen ({w.freeze_reference})")
    ctx.put_record(
        wallet_key(w.wallet_id), replace(w, frozen=authority, freeze_reference=args.reference)
    )
    ctx.emit(
        NAME, "wallet_frozen", wallet_id=w.wallet_id, authority=authority, reference=args.reference
    )


def unfreeze_wallet(ctx: TxContext, args: FreezeWalletArgs) -> None:
    """Lift a wallet freeze; only the kind of authority that froze it (an operator cannot lift a
    judicial freeze)."""
    w = require_wallet(ctx, args.wallet_id)
    authority = _freeze_authority(ctx, w)
    check_text("reference", args.reference)
    if not w.frozen:
        raise WalletNotFrozenError(f"wallet {w.wallet_id!r} is not frozen")
    if authority != w.frozen:
        raise NotAuthorizedError(f"a {w.frozen} freeze is lifted only by a {w.frozen} authority")
    ctx.put_record(wallet_key(w.wallet_id), replace(w, frozen="", freeze_reference=""))
    ctx.emit(
        NAME,
        "wallet_unfrozen",
        wallet_id=w.wallet_id,
        authority=authority,
        reference=args.reference,
    )


# ---------------------------------------------------------------------------------------------
# Moving money: operator ↔ wallet, wallet → wallet


@dataclass(frozen=True)
class LoadArgs:
    wallet_id: str
    amount: int


def load(ctx: TxContext, args: LoadArgs) -> None:
    """The wallet's operator moves e-CNY from its reserve into the wallet (the holder exchanged
    deposits for e-CNY), within the wallet's balance cap."""
    w = require_wallet(ctx, args.wallet_id)
    _require_operator(ctx, w.operator_org)
    check_fen("amount", args.amount)
    r = load_reserve(ctx, w.operator_org)
    if args.amount > r.balance:
        raise InsufficientReserveError(
            f"{r.org_id!r} holds {r.balance} fen in reserve, {args.amount} to load"
        )
    ledger = Ledger(ctx)
    ledger.credit(w.wallet_id, args.amount)
    ledger.flush()
    ctx.put_record(reserve_key(r.org_id), replace(r, balance=r.balance - args.amount))
    ctx.emit(NAME, "loaded", wallet_id=w.wallet_id, amount_fen=args.amount)


def unload(ctx: TxContext, args: LoadArgs) -> None:
    """The holder moves e-CNY back to the operator's reserve (exchanging it for deposits)."""
    w = require_wallet(ctx, args.wallet_id)
    require_spender(ctx, w)
    check_fen("amount", args.amount)
    ledger = Ledger(ctx)
    ledger.debit(w.wallet_id, args.amount, spend=False)
    ledger.flush()
    r = load_reserve(ctx, w.operator_org)
    ctx.put_record(reserve_key(r.org_id), replace(r, balance=r.balance + args.amount))
    ctx.emit(NAME, "unloaded", wallet_id=w.wallet_id, amount_fen=args.amount)


@dataclass(frozen=True)
class PayArgs:
    from_wallet: str
    to_wallet: str
    amount: int
    memo: str


def pay(ctx: TxContext, args: PayArgs) -> None:
    """The holder pays from a wallet to any other wallet, across operators too."""
    w = require_wallet(ctx, args.from_wallet)
    require_spender(ctx, w)
    check_text("memo", args.memo, empty_ok=True)
    pay_between(
        ctx, args.from_wallet, args.to_wallet, args.amount, purpose="payment", memo=args.memo
    )


# ---------------------------------------------------------------------------------------------
# Conditional payments


@dataclass(frozen=True)
class CreateEscrowArgs:
    escrow_id: str
    from_wallet: str
    to_wallet: str
    amount: int
    condition: str
    release_at_ms: int
    confirmer: bytes
    expires_at_ms: int
    memo: str


def create_escrow(ctx: TxContext, args: CreateEscrowArgs) -> None:
    """The payer locks e-CNY for the payee until a condition releases it or it expires.

    The money leaves the payer's wallet now (its limits apply now) and is counted in supply while
    held. ``condition``: "date" (releasable from ``release_at_ms``), "payer" (the payer confirms),
    "third_party" (``confirmer`` confirms, e.g. a regulator-appointed custodian of prepaid funds).
    """
    payer = require_wallet(ctx, args.from_wallet)
    require_spender(ctx, payer)
    check_id("escrow_id", args.escrow_id)
    check_fen("amount", args.amount)
    check_text("memo", args.memo, empty_ok=True)
    if args.condition not in CONDITIONS:
        raise InvalidArgumentError(f"condition must be one of {sorted(CONDITIONS)}")
    if args.expires_at_ms <= ctx.time_ms or args.expires_at_ms > MAX_FEN:
        raise InvalidArgumentError("expires_at_ms must be a block time after now")
    if args.condition == "date":
        if not ctx.time_ms < args.release_at_ms < args.expires_at_ms:
            raise InvalidArgumentError("a dated escrow releases after now and before it expires")
    elif args.release_at_ms != 0:
        raise InvalidArgumentError("release_at_ms is only for condition 'date'")
    if args.condition == "third_party":
        if load_account(ctx, args.confirmer) is None:
            raise InvalidArgumentError("confirmer must be a registry account")
    elif args.confirmer:
        raise InvalidArgumentError("confirmer is only for condition 'third_party'")
    if args.from_wallet == args.to_wallet:
        raise InvalidArgumentError("an escrow needs two different wallets")
    require_wallet(ctx, args.to_wallet)
    if ctx.get(escrow_key(args.escrow_id)) is not None:
        raise EscrowExistsError(f"escrow {args.escrow_id!r} already exists")
    ledger = Ledger(ctx)
    ledger.debit(payer.wallet_id, args.amount, spend=True)
    ledger.flush()
    ctx.put_record(
        escrow_key(args.escrow_id),
        Escrow(
            escrow_id=args.escrow_id,
            payer=args.from_wallet,
            payee=args.to_wallet,
            amount=args.amount,
            condition=args.condition,
            release_at_ms=args.release_at_ms,
            confirmer=args.confirmer,
            expires_at_ms=args.expires_at_ms,
            memo=args.memo,
            status="open",
            created_height=ctx.height,
            closed_height=0,
        ),
    )
    ctx.emit(
        NAME,
        "escrow_created",
        escrow_id=args.escrow_id,
        payer=args.from_wallet,
        payee=args.to_wallet,
        amount_fen=args.amount,
        condition=args.condition,
        expires_at_ms=args.expires_at_ms,
    )


@dataclass(frozen=True)
class EscrowIdArgs:
    escrow_id: str


def _open_escrow(ctx: TxContext, escrow_id: str) -> Escrow:
    e = ctx.get_record(escrow_key(escrow_id), Escrow)
    if e is None:
        raise UnknownEscrowError(f"no escrow {escrow_id!r}")
    if e.status != "open":
        raise EscrowClosedError(f"escrow {escrow_id!r} is {e.status}")
    return e


def release_escrow(ctx: TxContext, args: EscrowIdArgs) -> None:
    """Release an escrow to its payee once its condition holds (before it expires).

    "date": from ``release_at_ms``, sent by the payer's or the payee's holder; "payer": sent by the
    payer's holder; "third_party": sent by the named confirmer.
    """
    e = _open_escrow(ctx, args.escrow_id)
    payer = require_wallet(ctx, e.payer)
    payee = require_wallet(ctx, e.payee)
    # Who may release first (a stranger learns nothing about the escrow's timing), then when.
    if e.condition == "date":
        if not (may_spend(ctx, payer, ctx.sender) or may_spend(ctx, payee, ctx.sender)):
            raise NotAuthorizedError("only the payer or the payee releases a dated escrow")
    elif e.condition == "payer":
        if not may_spend(ctx, payer, ctx.sender):
            raise NotAuthorizedError("only the payer confirms this escrow")
    elif ctx.sender != e.confirmer:
        raise NotAuthorizedError("only the named third party confirms this escrow")
    if ctx.time_ms >= e.expires_at_ms:
        raise EscrowExpiredError(f"escrow {e.escrow_id!r} expired at {e.expires_at_ms}")
    if e.condition == "date" and ctx.time_ms < e.release_at_ms:
        raise ConditionNotMetError(f"escrow {e.escrow_id!r} is releasable from {e.release_at_ms}")
    ledger = Ledger(ctx)
    ledger.credit(e.payee, e.amount)
    ledger.flush()
    ctx.put_record(escrow_key(e.escrow_id), replace(e, status="released", closed_height=ctx.height))
    ctx.emit(NAME, "escrow_released", escrow_id=e.escrow_id, payee=e.payee, amount_fen=e.amount)
    _emit_payment(ctx, ledger, e.payer, e.payee, e.amount, "escrow", e.memo)


def refund_escrow(ctx: TxContext, args: EscrowIdArgs) -> None:
    """Once an unreleased escrow has expired, its payer's holder takes the money back.

    The refund is the payer's own money returning: it is not a payment, so no limit applies (a
    balance cap lowered meanwhile must not trap prepaid funds in an escrow).
    """
    e = _open_escrow(ctx, args.escrow_id)
    payer = require_wallet(ctx, e.payer)
    if not may_spend(ctx, payer, ctx.sender):
        raise NotAuthorizedError("only the payer takes back an expired escrow")
    if ctx.time_ms < e.expires_at_ms:
        raise EscrowNotExpiredError(f"escrow {e.escrow_id!r} expires at {e.expires_at_ms}")
    ledger = Ledger(ctx)
    ledger.credit(e.payer, e.amount, capped=False)
    ledger.flush()
    ctx.put_record(escrow_key(e.escrow_id), replace(e, status="refunded", closed_height=ctx.height))
    ctx.emit(NAME, "escrow_refunded", escrow_id=e.escrow_id, payer=e.payer, amount_fen=e.amount)


MODULE = Module(
    name=NAME,
    methods={
        "issue": Method(IssueArgs, issue),
        "redeem": Method(IssueArgs, redeem),
        "open_wallet": Method(OpenWalletArgs, open_wallet),
        "open_sub_wallet": Method(OpenSubWalletArgs, open_sub_wallet),
        "upgrade_wallet": Method(UpgradeWalletArgs, upgrade_wallet),
        "freeze_wallet": Method(FreezeWalletArgs, freeze_wallet),
        "unfreeze_wallet": Method(FreezeWalletArgs, unfreeze_wallet),
        "load": Method(LoadArgs, load),
        "unload": Method(LoadArgs, unload),
        "pay": Method(PayArgs, pay),
        "create_escrow": Method(CreateEscrowArgs, create_escrow),
        "release_escrow": Method(EscrowIdArgs, release_escrow),
        "refund_escrow": Method(EscrowIdArgs, refund_escrow),
    },
)
