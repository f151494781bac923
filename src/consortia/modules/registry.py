"""The registry module: member organizations, accounts, their keys and roles, account freezes.

Every account belongs to one member organization and is identified by an address derived from the
public key it was opened with; the address stays when the key is rotated. Roles decide what an
account may do in every module. ``regulator`` exists only from genesis: no transaction grants it,
so ordinary consortium governance cannot create a regulator.

State keys: ``registry/org/<org id>`` → ``Organization``; ``registry/acct/<address>`` → ``Account``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from consortia.crypto import CryptoError
from consortia.execution.context import TxContext
from consortia.execution.errors import TxFailure
from consortia.execution.module import Method, Module

NAME = "registry"

# Roles an account may hold. Keep in sync with DESIGN.md §3 "Identity".
ROLES: frozenset[str] = frozenset(
    {
        "admin",  # consortium administrator: admits member organizations
        "org_admin",  # manages its own organization's accounts
        "regulator",
        "court",  # a judicial authority: orders and lifts judicial freezes, forced transfers
        "validator_operator",
        "exchange",
        "issuer",
        "broker",
        "custodian",
        "fund_manager",
        "insurer",
        "operator_bank",
        "central_bank",
        "investor",
        "relayer",  # submits business headers and reports to the supervision chain (anchoring)
        "contract_deployer",  # deploys EVM contracts without a per-code governance approval
    }
)
GENESIS_ONLY_ROLES: frozenset[str] = frozenset({"regulator"})
# Roles only genesis or a governance vote (``appoint_role``) grants or revokes, never a single
# admin: deploying unapproved contract code is a consortium-wide trust decision.
GOVERNANCE_ONLY_ROLES: frozenset[str] = frozenset({"contract_deployer"})
# Roles with consortium-wide powers: only a consortium admin (or governance) grants them, never
# an organization's own org_admin (else a broker could make itself the market operator, a bank
# an e-CNY operator, any member a court).
ADMIN_ONLY_ROLES: frozenset[str] = frozenset(
    {"admin", "central_bank", "court", "exchange", "operator_bank", "validator_operator"}
)
# Roles that freeze and unfreeze any registry account: the regulator, and a court for judicial
# purposes. An organization's org_admin freezes accounts of its own organization only.
ACCOUNT_FREEZE_ROLES: frozenset[str] = frozenset({"court", "regulator"})

ORG_KINDS: frozenset[str] = frozenset(
    {
        "exchange",
        "broker",
        "issuer",
        "custodian",
        "fund_manager",
        "insurer",
        "bank",
        "central_bank",
        "regulator",
        "court",
        "association",
        "other",
    }
)
# Not consortium members in governance: the regulator's powers come from genesis and the
# supervision chain, a court's from the law.
NON_VOTING_KINDS: frozenset[str] = frozenset({"regulator", "court"})
MAX_ROLES = 16
MAX_TEXT = 200
MAX_ID = 64


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Organization:
    org_id: str
    name: str
    kind: str
    active: bool


@dataclass(frozen=True)
class Account:
    address: bytes
    public_key: bytes
    org_id: str
    roles: tuple[str, ...]
    nonce: int
    frozen: bool
    freeze_reason: str
    key_version: int


@dataclass(frozen=True)
class OrgList:
    """Every organization id, sorted: the tree has no prefix scan, and governance counts orgs."""

    org_ids: tuple[str, ...]


ORG_LIST_KEY = b"registry/orgs"
# The regulator accounts (sorted addresses), written by genesis: the role is genesis-only, so the
# list never changes; modules use it to find the regulators' current keys.
REGULATORS_KEY = b"registry/regulators"


@dataclass(frozen=True)
class RegulatorList:
    addresses: tuple[bytes, ...]


def regulator_key_ids(ctx: TxContext) -> dict[bytes, bytes]:
    """Key id (address of the *current* public key) -> account address, for every regulator
    account still holding the role (a key rotation changes the key id, not the address)."""
    regs = ctx.get_record(REGULATORS_KEY, RegulatorList) or RegulatorList(())
    out: dict[bytes, bytes] = {}
    for address in regs.addresses:
        acct = load_account(ctx, address)
        if acct is not None and has_role(acct, "regulator"):
            out[ctx.suite.address(acct.public_key)] = address
    return out
MAX_ORGS = 1_000


def org_key(org_id: str) -> bytes:
    return b"registry/org/" + org_id.encode()


def account_key(address: bytes) -> bytes:
    return b"registry/acct/" + address


# ---------------------------------------------------------------------------------------------
# Failures (stable codes)


class UnauthorizedError(TxFailure):
    code = "NOT_AUTHORIZED"


class OrgExistsError(TxFailure):
    code = "ORGANIZATION_EXISTS"


class OrgNotFoundError(TxFailure):
    code = "UNKNOWN_ORGANIZATION"


class AccountExistsError(TxFailure):
    code = "ACCOUNT_ALREADY_REGISTERED"


class AccountNotFoundError(TxFailure):
    code = "ACCOUNT_NOT_REGISTERED"


class InvalidKeyError(TxFailure):
    code = "INVALID_KEY"


class InvalidRoleError(TxFailure):
    code = "INVALID_ROLE"


class InvalidFieldError(TxFailure):
    code = "INVALID_ARGUMENT"


class AlreadyFrozenError(TxFailure):
    code = "ALREADY_FROZEN"


class NotFrozenError(TxFailure):
    code = "NOT_FROZEN"


# ---------------------------------------------------------------------------------------------
# Reads used by other modules and the executor


def voting_orgs(ctx: TxContext) -> tuple[str, ...]:
    """Organizations that vote in consortium governance: active members, not the regulator or a
    court (see ``NON_VOTING_KINDS``)."""
    orgs = ctx.get_record(ORG_LIST_KEY, OrgList) or OrgList(())
    out = []
    for org_id in orgs.org_ids:
        org = ctx.get_record(org_key(org_id), Organization)
        if org is not None and org.active and org.kind not in NON_VOTING_KINDS:
            out.append(org_id)
    return tuple(out)


def load_account(ctx: TxContext, address: bytes) -> Account | None:
    return ctx.get_record(account_key(address), Account)


def require_account(ctx: TxContext, address: bytes) -> Account:
    acct = load_account(ctx, address)
    if acct is None:
        raise AccountNotFoundError(f"no account {address.hex()}")
    return acct


def has_role(acct: Account, role: str) -> bool:
    return role in acct.roles


def require_role(acct: Account, *roles: str) -> None:
    """Raise ``UnauthorizedError`` unless ``acct`` holds at least one of ``roles``."""
    if not any(r in acct.roles for r in roles):
        raise UnauthorizedError(f"account {acct.address.hex()} needs one of roles {sorted(roles)}")


def check_text(name: str, value: str, limit: int = MAX_TEXT) -> None:
    if not value.strip() or len(value) > limit or not value.isprintable():
        raise InvalidFieldError(f"{name} must be 1..{limit} printable characters")


def is_id(value: str) -> bool:
    """An identifier: 1..MAX_ID ASCII letters, digits, '-', '_' and '.' (both tiers use it)."""
    return (
        bool(value)
        and len(value) <= MAX_ID
        and value.isascii()
        and all(c.isalnum() or c in "-_." for c in value)
    )


def _check_id(name: str, value: str) -> None:
    if not is_id(value):
        raise InvalidFieldError(f"{name} must be 1..{MAX_ID} ASCII letters, digits, '-', '_', '.'")


def _normalize_roles(roles: tuple[str, ...]) -> tuple[str, ...]:
    if len(roles) > MAX_ROLES:
        raise InvalidRoleError(f"at most {MAX_ROLES} roles")
    unknown = sorted(set(roles) - ROLES)
    if unknown:
        raise InvalidRoleError(f"unknown roles {unknown}")
    # Sorted and de-duplicated: the record's bytes must not depend on the caller's ordering.
    return tuple(sorted(set(roles)))


def _check_grantable(granter: Account, roles: tuple[str, ...], previous: tuple[str, ...]) -> None:
    added = set(roles) - set(previous)
    removed = set(previous) - set(roles)
    for role in sorted(added | removed):
        if role in GENESIS_ONLY_ROLES:
            raise InvalidRoleError(f"role {role!r} is assigned in genesis only")
        if role in GOVERNANCE_ONLY_ROLES:
            raise InvalidRoleError(f"role {role!r} is granted by genesis or governance only")
        if role in ADMIN_ONLY_ROLES and not has_role(granter, "admin"):
            raise UnauthorizedError(f"only a consortium admin grants or revokes {role!r}")


def _require_manager_of(ctx: TxContext, org_id: str) -> Account:
    """The sender must be a consortium admin, or an org_admin of ``org_id``."""
    sender = require_account(ctx, ctx.sender)
    if has_role(sender, "admin"):
        return sender
    if has_role(sender, "org_admin") and sender.org_id == org_id:
        return sender
    raise UnauthorizedError(f"sender may not manage accounts of organization {org_id!r}")


def _check_public_key(ctx: TxContext, public_key: bytes) -> bytes:
    try:
        ctx.suite.check_public_key(public_key)
        return ctx.suite.address(public_key)
    except CryptoError as exc:
        raise InvalidKeyError(f"invalid {ctx.suite.name} public key: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Methods


@dataclass(frozen=True)
class RegisterOrgArgs:
    org_id: str
    name: str
    kind: str


def check_new_org(ctx: TxContext, org_id: str, name: str, kind: str) -> None:
    """Raise unless an organization ``org_id`` may be admitted now (never a regulator)."""
    _check_id("org_id", org_id)
    check_text("name", name)
    if kind not in ORG_KINDS or kind == "regulator":
        raise InvalidFieldError(f"organization kind {kind!r} is not admissible by transaction")
    if ctx.get(org_key(org_id)) is not None:
        raise OrgExistsError(f"organization {org_id!r} already exists")
    orgs = ctx.get_record(ORG_LIST_KEY, OrgList) or OrgList(())
    if len(orgs.org_ids) >= MAX_ORGS:
        raise InvalidFieldError(f"the consortium already has {MAX_ORGS} organizations")


def add_org(ctx: TxContext, org_id: str, name: str, kind: str) -> None:
    """Write a new active organization (after ``check_new_org``) and emit ``org_registered``."""
    check_new_org(ctx, org_id, name, kind)
    orgs = ctx.get_record(ORG_LIST_KEY, OrgList) or OrgList(())
    ctx.put_record(ORG_LIST_KEY, OrgList(tuple(sorted((*orgs.org_ids, org_id)))))
    ctx.put_record(org_key(org_id), Organization(org_id, name, kind, True))
    ctx.emit(NAME, "org_registered", org_id=org_id, kind=kind)


def register_org(ctx: TxContext, args: RegisterOrgArgs) -> None:
    """Admit a member organization (consortium admin only). Regulators come from genesis."""
    require_role(require_account(ctx, ctx.sender), "admin")
    add_org(ctx, args.org_id, args.name, args.kind)


@dataclass(frozen=True)
class RegisterAccountArgs:
    public_key: bytes
    org_id: str
    roles: tuple[str, ...]


def register_account(ctx: TxContext, args: RegisterAccountArgs) -> None:
    """Open an account for ``public_key`` in ``org_id`` (its org_admin, or a consortium admin)."""
    granter = _require_manager_of(ctx, args.org_id)
    org = ctx.get_record(org_key(args.org_id), Organization)
    if org is None or not org.active:
        raise OrgNotFoundError(f"no active organization {args.org_id!r}")
    address = _check_public_key(ctx, args.public_key)
    roles = _normalize_roles(args.roles)
    _check_grantable(granter, roles, ())
    if ctx.get(account_key(address)) is not None:
        raise AccountExistsError(f"account {address.hex()} already exists")
    ctx.put_record(
        account_key(address),
        Account(address, args.public_key, args.org_id, roles, 0, False, "", 1),
    )
    ctx.emit(NAME, "account_registered", address=address, org_id=args.org_id, roles=list(roles))


@dataclass(frozen=True)
class RotateKeyArgs:
    new_public_key: bytes


def rotate_key(ctx: TxContext, args: RotateKeyArgs) -> None:
    """The sender replaces its own key; the address stays, later transactions need the new key."""
    acct = require_account(ctx, ctx.sender)
    _check_public_key(ctx, args.new_public_key)
    if args.new_public_key == acct.public_key:
        raise InvalidKeyError("the new key equals the current key")
    ctx.put_record(
        account_key(acct.address),
        replace(acct, public_key=args.new_public_key, key_version=acct.key_version + 1),
    )
    ctx.emit(NAME, "key_rotated", address=acct.address, key_version=acct.key_version + 1)


@dataclass(frozen=True)
class ResetKeyArgs:
    address: bytes
    new_public_key: bytes


def reset_key(ctx: TxContext, args: ResetKeyArgs) -> None:
    """An org_admin (or admin) replaces a member account's lost or compromised key."""
    target = require_account(ctx, args.address)
    _require_manager_of(ctx, target.org_id)
    if has_role(target, "regulator"):
        raise UnauthorizedError("a regulator's key is reset only by the regulator itself")
    _check_public_key(ctx, args.new_public_key)
    ctx.put_record(
        account_key(target.address),
        replace(target, public_key=args.new_public_key, key_version=target.key_version + 1),
    )
    ctx.emit(NAME, "key_reset", address=target.address, by=ctx.sender)


@dataclass(frozen=True)
class SetRolesArgs:
    address: bytes
    roles: tuple[str, ...]


def set_roles(ctx: TxContext, args: SetRolesArgs) -> None:
    """Replace an account's roles (org_admin of its organization, or admin)."""
    target = require_account(ctx, args.address)
    granter = _require_manager_of(ctx, target.org_id)
    roles = _normalize_roles(args.roles)
    _check_grantable(granter, roles, target.roles)
    ctx.put_record(account_key(target.address), replace(target, roles=roles))
    ctx.emit(NAME, "roles_set", address=target.address, roles=list(roles))


@dataclass(frozen=True)
class FreezeArgs:
    address: bytes
    reason: str


def _require_freezer(ctx: TxContext, target: Account) -> Account:
    sender = require_account(ctx, ctx.sender)
    if has_role(sender, "regulator"):
        return sender
    if has_role(target, "regulator"):
        raise UnauthorizedError("only a regulator freezes a regulator account")
    if any(has_role(sender, r) for r in ACCOUNT_FREEZE_ROLES):
        return sender  # a court, for judicial purposes
    if has_role(sender, "org_admin") and sender.org_id == target.org_id:
        return sender
    raise UnauthorizedError(
        f"freezing needs one of roles {sorted(ACCOUNT_FREEZE_ROLES)} or the account's org_admin"
    )


def freeze_account(ctx: TxContext, args: FreezeArgs) -> None:
    """Freeze an account: it can send no transaction until unfrozen. Reason is recorded."""
    target = require_account(ctx, args.address)
    _require_freezer(ctx, target)
    check_text("reason", args.reason)
    if target.frozen:
        raise AlreadyFrozenError(f"account {target.address.hex()} is already frozen")
    if target.address == ctx.sender:
        raise UnauthorizedError("an account cannot freeze itself")
    ctx.put_record(
        account_key(target.address), replace(target, frozen=True, freeze_reason=args.reason)
    )
    ctx.emit(NAME, "account_frozen", address=target.address, by=ctx.sender, reason=args.reason)


def unfreeze_account(ctx: TxContext, args: FreezeArgs) -> None:
    """Lift a freeze (same authorities as freezing). Reason is recorded."""
    target = require_account(ctx, args.address)
    _require_freezer(ctx, target)
    check_text("reason", args.reason)
    if not target.frozen:
        raise NotFrozenError(f"account {target.address.hex()} is not frozen")
    ctx.put_record(account_key(target.address), replace(target, frozen=False, freeze_reason=""))
    ctx.emit(NAME, "account_unfrozen", address=target.address, by=ctx.sender, reason=args.reason)


MODULE = Module(
    name=NAME,
    methods={
        "register_org": Method(RegisterOrgArgs, register_org),
        "register_account": Method(RegisterAccountArgs, register_account),
        "rotate_key": Method(RotateKeyArgs, rotate_key),
        "reset_key": Method(ResetKeyArgs, reset_key),
        "set_roles": Method(SetRolesArgs, set_roles),
        "freeze_account": Method(FreezeArgs, freeze_account),
        "unfreeze_account": Method(FreezeArgs, unfreeze_account),
    },
)

# Methods a frozen sender may still call: none. A frozen account is frozen; the regulator, a court
# or its org_admin lifts the freeze with their own accounts.
