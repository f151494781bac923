"""The enforcement module: pledges, judicial freezes (with waiting freezes) and forced transfers.

- Pledge / release: the holder or the holder's broker pledges part of a holding's free balance to
  a pledgee (a registry account or an organization) with a reference; the pledged amount leaves
  the free balance until the pledgee (or the operator, role ``exchange``) releases it. A broker
  never pledges an account a contract owns (``NOT_AUTHORIZED``: only the contract acts for it);
  judicial freezes and forced transfers apply to such accounts like any other.
- Judicial freeze: a freeze authority (``FREEZE_AUTHORITIES``: a court, role ``court``, or the
  regulator) freezes an amount of a holding, or a whole securities account, with a legal
  reference and an expiry (block time, ms). A freeze asking for more than the free
  balance takes effect for what is free and *waits* for the rest; freezes wait in placement order.
  Whenever the module touches a holding (any method here, and every securities transfer from it)
  it first processes expired freezes, then lets waiting freezes take effect, in queue order, as far
  as the free balance allows. Account freezes queue the same way: one is in force at a time.
- Unfreeze by the authority that froze (or any freeze authority); a waiting freeze can be lifted
  too.
- Forced transfer (judicial enforcement): the frozen part of an amount freeze moves to a named
  account, bypassing suitability, halts and account freezes but not conservation; it consumes the
  freeze (an unmet waiting remainder lapses with it).

Every step emits an event carrying its legal reference. Amounts are integers; every check runs
before the first write of a failing transaction (and a failure discards all writes anyway).

State keys:

- ``enforcement/pledge/<pledge id>`` → ``Pledge``
- ``enforcement/freeze/<freeze id>`` → ``Freeze``
- ``enforcement/holding_freezes/<code>/<account id>`` → ``FreezeList`` (open amount freezes, in
  placement order)
- ``enforcement/account_freezes/<account id>`` → ``FreezeList`` (open account freezes, in order)

Holdings keep the totals: ``Holding.pledged`` is the sum of the holding's active pledges and
``Holding.frozen`` the sum of the ``effective`` parts of its open amount freezes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from consortia.execution.context import TxContext
from consortia.execution.errors import TxFailure
from consortia.execution.module import Method, Module
from consortia.modules import securities
from consortia.modules.investors import (
    InvalidArgumentError,
    NotAuthorizedError,
    SecuritiesAccount,
    account_key,
    check_id,
    check_text,
    is_broker_of,
    is_contract,
    require_investor,
    require_open_account,
    require_securities_account,
    sender_account,
)
from consortia.modules.registry import Organization, has_role, load_account, org_key
from consortia.modules.securities import (
    Holding,
    InsufficientFreeBalanceError,
    LockedUpError,
    holding_key,
    load_holding,
    require_approved,
)

NAME = "enforcement"

# Roles that order and lift judicial freezes and forced transfers: a court (judicial freezes and
# enforcement) and the regulator (administrative freezes).
FREEZE_AUTHORITIES: frozenset[str] = frozenset({"court", "regulator"})
OPEN_STATUSES: frozenset[str] = frozenset({"active", "partial", "waiting"})
MAX_OPEN_FREEZES = 64  # per holding / per account: bounds the work of settling one


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Pledge:
    pledge_id: str
    code: str
    account_id: str
    amount: int
    pledgee_address: bytes  # empty when the pledgee is an organization
    pledgee_org: str  # empty when the pledgee is an account
    reference: str
    pledged_by: bytes
    status: str  # active | released
    pledged_height: int
    released_height: int
    released_by: bytes
    release_reference: str


@dataclass(frozen=True)
class Freeze:
    freeze_id: str
    scope: str  # amount | account
    code: str  # "" for an account freeze
    account_id: str
    amount: int  # requested (0 for an account freeze)
    effective: int  # the part in force (amount freeze); 0 or 1 for an account freeze
    reference: str
    expires_at_ms: int
    authority: bytes
    authority_org: str
    status: str  # active | partial | waiting | lifted | expired | enforced
    placed_height: int
    ended_height: int
    end_reference: str


@dataclass(frozen=True)
class FreezeList:
    ids: tuple[str, ...]


def pledge_key(pledge_id: str) -> bytes:
    return b"enforcement/pledge/" + pledge_id.encode()


def freeze_key(freeze_id: str) -> bytes:
    return b"enforcement/freeze/" + freeze_id.encode()


def holding_freezes_key(code: str, account_id: str) -> bytes:
    return b"enforcement/holding_freezes/" + code.encode() + b"/" + account_id.encode()


def account_freezes_key(account_id: str) -> bytes:
    return b"enforcement/account_freezes/" + account_id.encode()


# ---------------------------------------------------------------------------------------------
# Failures (stable codes)


class PledgeExistsError(TxFailure):
    code = "PLEDGE_EXISTS"


class UnknownPledgeError(TxFailure):
    code = "UNKNOWN_PLEDGE"


class PledgeNotActiveError(TxFailure):
    code = "PLEDGE_NOT_ACTIVE"


class UnknownPledgeeError(TxFailure):
    code = "UNKNOWN_PLEDGEE"


class FreezeExistsError(TxFailure):
    code = "FREEZE_EXISTS"


class UnknownFreezeError(TxFailure):
    code = "UNKNOWN_FREEZE"


class FreezeNotActiveError(TxFailure):
    code = "FREEZE_NOT_ACTIVE"


class TooManyFreezesError(TxFailure):
    code = "TOO_MANY_FREEZES"


# ---------------------------------------------------------------------------------------------
# Helpers


def _check_amount(amount: int) -> None:
    if not 1 <= amount <= securities.MAX_AMOUNT:
        raise InvalidArgumentError(f"amount must be an integer in 1..{securities.MAX_AMOUNT}")


def _require_authority(ctx: TxContext) -> None:
    sender = sender_account(ctx)
    if not any(has_role(sender, r) for r in FREEZE_AUTHORITIES):
        raise NotAuthorizedError(
            f"only a freeze authority (roles {sorted(FREEZE_AUTHORITIES)}) may do this"
        )


def _require_freeze(ctx: TxContext, freeze_id: str) -> Freeze:
    f = ctx.get_record(freeze_key(freeze_id), Freeze)
    if f is None:
        raise UnknownFreezeError(f"no freeze {freeze_id!r}")
    return f


def _load_list(ctx: TxContext, key: bytes) -> tuple[str, ...]:
    found = ctx.get_record(key, FreezeList)
    return () if found is None else found.ids


def _store_list(ctx: TxContext, key: bytes, ids: tuple[str, ...]) -> None:
    if ids:
        ctx.put_record(key, FreezeList(ids))
    else:
        ctx.delete(key)


def _amount_status(effective: int, amount: int) -> str:
    if effective == amount:
        return "active"
    return "partial" if effective else "waiting"


def _event(ctx: TxContext, kind: str, f: Freeze, **extra: object) -> None:
    ctx.emit(
        NAME,
        kind,
        freeze_id=f.freeze_id,
        scope=f.scope,
        code=f.code,
        account_id=f.account_id,
        amount=f.amount,
        effective=f.effective,
        status=f.status,
        reference=f.reference,
        **extra,
    )


def settle_holding(ctx: TxContext, code: str, account_id: str) -> None:
    """Expire the holding's lapsed freezes, then let waiting ones take effect in queue order."""
    key = holding_freezes_key(code, account_id)
    ids = _load_list(ctx, key)
    if not ids:
        return
    original = h = load_holding(ctx, code, account_id)
    open_freezes: list[Freeze] = []
    for fid in ids:
        f = _require_freeze(ctx, fid)
        if f.expires_at_ms <= ctx.time_ms:
            h = replace(h, frozen=h.frozen - f.effective)
            f = replace(f, status="expired", ended_height=ctx.height)
            ctx.put_record(freeze_key(fid), f)
            _event(ctx, "freeze_expired", f, released=f.effective)
        else:
            open_freezes.append(f)
    free = h.free(ctx.time_ms)
    for f in open_freezes:
        if free <= 0:
            break
        take = min(f.amount - f.effective, free)
        if take <= 0:
            continue
        free -= take
        h = replace(h, frozen=h.frozen + take)
        effective = f.effective + take
        grown = replace(f, effective=effective, status=_amount_status(effective, f.amount))
        ctx.put_record(freeze_key(f.freeze_id), grown)
        _event(ctx, "freeze_activated", grown, activated=take)
    if h != original:
        ctx.put_record(holding_key(code, account_id), h)
    kept = tuple(f.freeze_id for f in open_freezes)
    if kept != ids:
        _store_list(ctx, key, kept)


def settle_account(ctx: TxContext, account_id: str) -> SecuritiesAccount:
    """Expire lapsed account freezes; the first waiting one takes effect when none is in force.

    Keeps ``SecuritiesAccount.frozen`` / ``freeze_reference`` in step; returns the account."""
    acct = require_securities_account(ctx, account_id)
    key = account_freezes_key(account_id)
    ids = _load_list(ctx, key)
    if not ids and not acct.frozen:
        return acct
    open_freezes: list[Freeze] = []
    for fid in ids:
        f = _require_freeze(ctx, fid)
        if f.expires_at_ms <= ctx.time_ms:
            f = replace(f, status="expired", effective=0, ended_height=ctx.height)
            ctx.put_record(freeze_key(fid), f)
            _event(ctx, "freeze_expired", f)
        else:
            open_freezes.append(f)
    if open_freezes and not any(f.status == "active" for f in open_freezes):
        first = replace(open_freezes[0], status="active", effective=1)
        open_freezes[0] = first
        ctx.put_record(freeze_key(first.freeze_id), first)
        _event(ctx, "freeze_activated", first)
    kept = tuple(f.freeze_id for f in open_freezes)
    if kept != ids:
        _store_list(ctx, key, kept)
    active = [f for f in open_freezes if f.status == "active"]
    frozen, reference = (True, active[0].reference) if active else (False, "")
    if (acct.frozen, acct.freeze_reference) != (frozen, reference):
        acct = replace(acct, frozen=frozen, freeze_reference=reference)
        ctx.put_record(account_key(account_id), acct)
    return acct


def settle_before_transfer(ctx: TxContext, code: str, src: str, dst: str) -> None:
    """Hook run by ``securities.transfer`` before it reads freezes."""
    settle_account(ctx, src)
    settle_account(ctx, dst)
    settle_holding(ctx, code, src)


securities.SETTLE_HOOKS.append(settle_before_transfer)


def _check_free(ctx: TxContext, h: Holding, amount: int) -> None:
    free = h.free(ctx.time_ms)
    if amount <= free:
        return
    locked = h.effective_locked(ctx.time_ms)
    if amount <= free + locked:
        raise LockedUpError(f"{locked} of {h.code!r} in {h.account_id!r} are locked up")
    raise InsufficientFreeBalanceError(
        f"{h.account_id!r} has {free} free {h.code!r}, {amount} requested"
    )


# ---------------------------------------------------------------------------------------------
# Pledges


@dataclass(frozen=True)
class PledgeArgs:
    pledge_id: str
    code: str
    account_id: str
    amount: int
    pledgee_address: bytes
    pledgee_org: str
    reference: str


def pledge(ctx: TxContext, args: PledgeArgs) -> None:
    """The holder or its broker pledges free shares to a pledgee account or organization."""
    acct = require_open_account(ctx, args.account_id)
    owner = require_investor(ctx, acct.investor_id)
    sender = sender_account(ctx)
    if sender.address != owner.address and not is_broker_of(ctx, sender, acct.org_id):
        raise NotAuthorizedError(f"only the owner of {acct.account_id!r} or its broker may pledge")
    if sender.address != owner.address and is_contract(ctx, owner.address):
        # A pledge takes shares out of the free balance: for a contract's account that is the
        # contract's decision alone (courts and the regulator still freeze it, see ``freeze``).
        raise NotAuthorizedError(
            f"securities account {acct.account_id!r} is owned by contract "
            f"{owner.address.hex()}: only the contract may act for it, not its broker"
        )
    sec = require_approved(ctx, args.code)
    check_id("pledge_id", args.pledge_id)
    check_text("reference", args.reference)
    _check_amount(args.amount)
    if bool(args.pledgee_address) == bool(args.pledgee_org):
        raise InvalidArgumentError("name exactly one pledgee: an account address or an org")
    if args.pledgee_address:
        if load_account(ctx, args.pledgee_address) is None:
            raise UnknownPledgeeError(f"no registry account {args.pledgee_address.hex()}")
    else:
        org = ctx.get_record(org_key(args.pledgee_org), Organization)
        if org is None or not org.active:
            raise UnknownPledgeeError(f"no active organization {args.pledgee_org!r}")
    if ctx.get(pledge_key(args.pledge_id)) is not None:
        raise PledgeExistsError(f"pledge {args.pledge_id!r} already exists")
    acct = settle_account(ctx, acct.account_id)
    securities.check_not_frozen(ctx, acct)
    settle_holding(ctx, sec.code, acct.account_id)
    h = load_holding(ctx, sec.code, acct.account_id)
    _check_free(ctx, h, args.amount)
    ctx.put_record(
        holding_key(sec.code, acct.account_id), replace(h, pledged=h.pledged + args.amount)
    )
    ctx.put_record(
        pledge_key(args.pledge_id),
        Pledge(
            pledge_id=args.pledge_id,
            code=sec.code,
            account_id=acct.account_id,
            amount=args.amount,
            pledgee_address=args.pledgee_address,
            pledgee_org=args.pledgee_org,
            reference=args.reference,
            pledged_by=sender.address,
            status="active",
            pledged_height=ctx.height,
            released_height=0,
            released_by=b"",
            release_reference="",
        ),
    )
    ctx.emit(
        NAME,
        "pledged",
        pledge_id=args.pledge_id,
        code=sec.code,
        account_id=acct.account_id,
        amount=args.amount,
        pledgee_address=args.pledgee_address,
        pledgee_org=args.pledgee_org,
        reference=args.reference,
    )


@dataclass(frozen=True)
class ReleaseArgs:
    pledge_id: str
    reference: str


def release(ctx: TxContext, args: ReleaseArgs) -> None:
    """The pledgee (an account of the pledgee org) or the operator releases a pledge."""
    p = ctx.get_record(pledge_key(args.pledge_id), Pledge)
    if p is None:
        raise UnknownPledgeError(f"no pledge {args.pledge_id!r}")
    sender = sender_account(ctx)
    is_pledgee = (p.pledgee_address and sender.address == p.pledgee_address) or (
        p.pledgee_org and sender.org_id == p.pledgee_org
    )
    if not is_pledgee and not has_role(sender, "exchange"):
        raise NotAuthorizedError("only the pledgee or the operator may release a pledge")
    check_text("reference", args.reference)
    if p.status != "active":
        raise PledgeNotActiveError(f"pledge {p.pledge_id!r} is {p.status}")
    h = load_holding(ctx, p.code, p.account_id)
    ctx.put_record(holding_key(p.code, p.account_id), replace(h, pledged=h.pledged - p.amount))
    ctx.put_record(
        pledge_key(p.pledge_id),
        replace(
            p,
            status="released",
            released_height=ctx.height,
            released_by=sender.address,
            release_reference=args.reference,
        ),
    )
    ctx.emit(
        NAME,
        "pledge_released",
        pledge_id=p.pledge_id,
        code=p.code,
        account_id=p.account_id,
        amount=p.amount,
        reference=p.reference,
        release_reference=args.reference,
    )
    settle_holding(ctx, p.code, p.account_id)


# ---------------------------------------------------------------------------------------------
# Judicial freezes


@dataclass(frozen=True)
class FreezeArgs:
    freeze_id: str
    code: str  # "" freezes the whole securities account
    account_id: str
    amount: int  # 0 for a whole-account freeze
    reference: str
    expires_at_ms: int


def freeze(ctx: TxContext, args: FreezeArgs) -> None:
    """A judicial authority freezes an amount of a holding, or a whole securities account."""
    _require_authority(ctx)
    sender = sender_account(ctx)
    freeze_as(ctx, args, sender.address, sender.org_id)


def freeze_as(ctx: TxContext, args: FreezeArgs, authority: bytes, authority_org: str) -> None:
    """``freeze`` on behalf of ``authority`` (of ``authority_org``), which the caller has
    already checked may order freezes (the sender for ``freeze``; a proven supervision order for
    the ``supervision`` module). Every other rule and error code is ``freeze``'s."""
    check_id("freeze_id", args.freeze_id)
    check_text("reference", args.reference)
    if not ctx.time_ms < args.expires_at_ms <= securities.MAX_AMOUNT:
        raise InvalidArgumentError("expires_at_ms must be a block time after the current one")
    acct = require_open_account(ctx, args.account_id)
    if args.code:
        sec = require_approved(ctx, args.code)
        _check_amount(args.amount)
    elif args.amount != 0:
        raise InvalidArgumentError("a whole-account freeze has amount 0")
    if ctx.get(freeze_key(args.freeze_id)) is not None:
        raise FreezeExistsError(f"freeze {args.freeze_id!r} already exists")
    f = Freeze(
        freeze_id=args.freeze_id,
        scope="amount" if args.code else "account",
        code=args.code,
        account_id=acct.account_id,
        amount=args.amount,
        effective=0,
        reference=args.reference,
        expires_at_ms=args.expires_at_ms,
        authority=authority,
        authority_org=authority_org,
        status="waiting",
        placed_height=ctx.height,
        ended_height=0,
        end_reference="",
    )
    if not args.code:
        settle_account(ctx, acct.account_id)
        key = account_freezes_key(acct.account_id)
        ids = _load_list(ctx, key)
        if len(ids) >= MAX_OPEN_FREEZES:
            raise TooManyFreezesError(f"{acct.account_id!r} already has {len(ids)} open freezes")
        ctx.put_record(freeze_key(f.freeze_id), f)
        _store_list(ctx, key, (*ids, f.freeze_id))
        _event(ctx, "frozen", f, expires_at_ms=f.expires_at_ms, authority=f.authority)
        settle_account(ctx, acct.account_id)  # takes effect now unless another is in force
        return
    settle_holding(ctx, sec.code, acct.account_id)
    h = load_holding(ctx, sec.code, acct.account_id)
    capacity = h.balance - h.pledged - h.effective_locked(ctx.time_ms)
    if args.amount > capacity:
        raise InsufficientFreeBalanceError(
            f"{acct.account_id!r} holds {capacity} freezable {sec.code!r}, {args.amount} requested"
        )
    key = holding_freezes_key(sec.code, acct.account_id)
    ids = _load_list(ctx, key)
    if len(ids) >= MAX_OPEN_FREEZES:
        raise TooManyFreezesError(f"{acct.account_id!r} already has {len(ids)} open freezes")
    effective = min(args.amount, max(h.free(ctx.time_ms), 0))
    f = replace(f, effective=effective, status=_amount_status(effective, args.amount))
    ctx.put_record(holding_key(sec.code, acct.account_id), replace(h, frozen=h.frozen + effective))
    ctx.put_record(freeze_key(f.freeze_id), f)
    _store_list(ctx, key, (*ids, f.freeze_id))
    _event(ctx, "frozen", f, expires_at_ms=f.expires_at_ms, authority=f.authority)


@dataclass(frozen=True)
class UnfreezeArgs:
    freeze_id: str
    reference: str


def _open_freeze(ctx: TxContext, freeze_id: str, *, authorized: bool = False) -> Freeze:
    """The freeze after settling its holding or account; it must still be open. Unless the
    caller has ``authorized`` the action itself, the sender must be the freezing account or a
    freeze authority."""
    f = _require_freeze(ctx, freeze_id)
    if not authorized:
        sender = sender_account(ctx)
        if sender.address != f.authority and not any(
            has_role(sender, r) for r in FREEZE_AUTHORITIES
        ):
            raise NotAuthorizedError(
                "only the freezing account or a freeze authority "
                f"(roles {sorted(FREEZE_AUTHORITIES)}) may do this"
            )
    if f.scope == "account":
        settle_account(ctx, f.account_id)
    else:
        settle_holding(ctx, f.code, f.account_id)
    f = _require_freeze(ctx, freeze_id)
    if f.status not in OPEN_STATUSES:
        raise FreezeNotActiveError(f"freeze {f.freeze_id!r} is {f.status}")
    return f


def _close(ctx: TxContext, f: Freeze, status: str, reference: str) -> Freeze:
    closed = replace(f, status=status, ended_height=ctx.height, end_reference=reference)
    ctx.put_record(freeze_key(f.freeze_id), closed)
    key = (
        account_freezes_key(f.account_id)
        if f.scope == "account"
        else holding_freezes_key(f.code, f.account_id)
    )
    _store_list(ctx, key, tuple(i for i in _load_list(ctx, key) if i != f.freeze_id))
    return closed


def unfreeze(ctx: TxContext, args: UnfreezeArgs) -> None:
    """Lift a freeze (in force or waiting); waiting freezes behind it take effect in order."""
    unfreeze_as(ctx, args, authorized=False)


def unfreeze_as(ctx: TxContext, args: UnfreezeArgs, *, authorized: bool = True) -> None:
    """``unfreeze``; with ``authorized`` the caller has checked the authority (a supervision
    order) and the sender is not asked to be one."""
    f = _open_freeze(ctx, args.freeze_id, authorized=authorized)
    check_text("reference", args.reference)
    released = f.effective if f.scope == "amount" else 0
    if released:
        h = load_holding(ctx, f.code, f.account_id)
        ctx.put_record(holding_key(f.code, f.account_id), replace(h, frozen=h.frozen - released))
    closed = _close(ctx, f, "lifted", args.reference)
    _event(ctx, "unfrozen", closed, released=released, unfreeze_reference=args.reference)
    if f.scope == "account":
        settle_account(ctx, f.account_id)
    else:
        settle_holding(ctx, f.code, f.account_id)


@dataclass(frozen=True)
class ForcedTransferArgs:
    freeze_id: str
    to_account: str
    reference: str


def forced_transfer(ctx: TxContext, args: ForcedTransferArgs) -> None:
    """Judicial enforcement: the frozen part of an amount freeze moves to ``to_account``."""
    forced_transfer_as(ctx, args, authorized=False)


def forced_transfer_as(
    ctx: TxContext, args: ForcedTransferArgs, *, authorized: bool = True
) -> None:
    """``forced_transfer``; with ``authorized`` the caller has checked the authority (a
    supervision order) and the sender is not asked to be one."""
    f = _open_freeze(ctx, args.freeze_id, authorized=authorized)
    check_text("reference", args.reference)
    if f.scope != "amount" or f.effective == 0:
        raise FreezeNotActiveError(f"freeze {f.freeze_id!r} holds no frozen shares to transfer")
    if args.to_account == f.account_id:
        raise InvalidArgumentError("a forced transfer needs a different receiving account")
    dst = require_open_account(ctx, args.to_account)
    src = require_securities_account(ctx, f.account_id)
    sec = securities.require_security(ctx, f.code)
    book = securities.Book(ctx, sec)
    held = book.get(src)
    book.set(replace(held, balance=held.balance - f.effective, frozen=held.frozen - f.effective))
    received = book.get(dst)
    book.set(replace(received, balance=received.balance + f.effective))
    closed = _close(ctx, f, "enforced", args.reference)
    book.flush(sec.issued)
    _event(
        ctx,
        "forced_transfer",
        closed,
        to_account=dst.account_id,
        transferred=f.effective,
        enforcement_reference=args.reference,
    )


# ---------------------------------------------------------------------------------------------
# Settling on demand


@dataclass(frozen=True)
class SettleArgs:
    account_id: str
    code: str  # "" settles only the account's whole-account freezes


def settle(ctx: TxContext, args: SettleArgs) -> None:
    """Any registered account may have expiries processed and waiting freezes activated."""
    sender_account(ctx)
    settle_account(ctx, args.account_id)
    if args.code:
        securities.require_security(ctx, args.code)
        settle_holding(ctx, args.code, args.account_id)


MODULE = Module(
    name=NAME,
    methods={
        "pledge": Method(PledgeArgs, pledge),
        "release": Method(ReleaseArgs, release),
        "freeze": Method(FreezeArgs, freeze),
        "unfreeze": Method(UnfreezeArgs, unfreeze),
        "forced_transfer": Method(ForcedTransferArgs, forced_transfer),
        "settle": Method(SettleArgs, settle),
    },
)
