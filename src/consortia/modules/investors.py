"""The investors module (JR/T 0317 "user registration"): investors opened by their broker, and the
securities accounts they hold positions in.

A broker (an account with role ``broker`` in an organization of kind ``broker``) opens an investor
for a registered chain account (role ``investor``) of its own organization, with its kind,
KYC level, risk tolerance C1–C5 and qualified-investor status. Personal identity data never reaches
the chain in clear: the client seals it to the broker and the regulator (``seal_identity``) and the
chain stores only the opaque envelope and a salted commitment ``H(salt ‖ canonical record)``. The
chain checks that the envelope names the opening broker and a regulator as recipients.

State keys:

- ``investors/investor/<investor id>`` → ``Investor``
- ``investors/by_address/<address>`` → ``InvestorRef`` (one investor per chain account)
- ``investors/account/<account id>`` → ``SecuritiesAccount``
- ``investors/positions/<account id>`` → ``PositionCount`` (written by the securities module: the
  number of non-empty holdings, so an account with positions cannot be closed)

Error codes are stable upper-case strings (``NOT_AUTHORIZED``, ``UNKNOWN_INVESTOR``, ...), shared
with the securities module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from consortia import codec
from consortia.contracts import keys as contract_keys
from consortia.crypto import CryptoError, KeyPair, Suite
from consortia.crypto.envelope import EnvelopeLimits, decode_envelope
from consortia.execution.context import TxContext
from consortia.execution.errors import TxFailure
from consortia.execution.module import Method, Module
from consortia.modules.registry import (
    Account,
    Organization,
    has_role,
    load_account,
    org_key,
    regulator_key_ids,
    require_account,
)

NAME = "investors"

INVESTOR_KINDS: frozenset[str] = frozenset({"individual", "institutional"})
KYC_LEVELS = range(1, 4)  # 1 basic, 2 enhanced, 3 full due diligence
RISK_TOLERANCES = range(1, 6)  # C1 (conservative) .. C5 (aggressive)
COMMITMENT_SIZE = 32
MAX_SEALED_IDENTITY = 4096
MAX_ID = 64
MAX_TEXT = 200
SALT_SIZE = 32


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Investor:
    investor_id: str
    kind: str  # "individual" | "institutional"
    kyc_level: int  # 1..3
    risk_tolerance: int  # 1..5 = C1..C5
    qualified: bool
    address: bytes  # the investor's own registry account
    org_id: str  # the broker organization that opened (and serves) the investor
    opened_by: bytes  # the broker account that opened it
    identity_commitment: bytes  # H(salt || canonical identity record), 32 bytes
    sealed_identity: bytes  # envelope sealed to the opening broker and the regulator
    opened_height: int
    assessed_height: int  # height of the last suitability (re)assessment


@dataclass(frozen=True)
class InvestorRef:
    investor_id: str


@dataclass(frozen=True)
class SecuritiesAccount:
    account_id: str
    investor_id: str
    org_id: str
    status: str  # "open" | "closed"
    frozen: bool  # whole-account judicial freeze (set by the judicial-freeze methods)
    freeze_reference: str
    opened_height: int
    closed_height: int


@dataclass(frozen=True)
class PositionCount:
    count: int


def investor_key(investor_id: str) -> bytes:
    return b"investors/investor/" + investor_id.encode()


def by_address_key(address: bytes) -> bytes:
    return b"investors/by_address/" + address


def account_key(account_id: str) -> bytes:
    return b"investors/account/" + account_id.encode()


def positions_key(account_id: str) -> bytes:
    return b"investors/positions/" + account_id.encode()


# ---------------------------------------------------------------------------------------------
# Failures (stable codes, shared with the securities module)


class NotAuthorizedError(TxFailure):
    code = "NOT_AUTHORIZED"


class InvalidArgumentError(TxFailure):
    code = "INVALID_ARGUMENT"


class UnknownInvestorError(TxFailure):
    code = "UNKNOWN_INVESTOR"


class InvestorExistsError(TxFailure):
    code = "INVESTOR_EXISTS"


class UnknownAccountError(TxFailure):
    code = "UNKNOWN_ACCOUNT"


class AccountExistsError(TxFailure):
    code = "ACCOUNT_EXISTS"


class AccountClosedError(TxFailure):
    code = "ACCOUNT_CLOSED"


class AccountNotEmptyError(TxFailure):
    code = "ACCOUNT_NOT_EMPTY"


class InvalidIdentityError(TxFailure):
    code = "INVALID_IDENTITY"


class AccountFrozenError(TxFailure):
    code = "ACCOUNT_FROZEN"


# ---------------------------------------------------------------------------------------------
# Client side: sealing identity data to the broker and the regulator


def identity_record(identity: Mapping[str, Any]) -> bytes:
    """The canonical (deterministic CBOR) encoding of an identity record."""
    return codec.encode(dict(identity))


def identity_commitment(suite: Suite, salt: bytes, identity: Mapping[str, Any]) -> bytes:
    """``H(salt ‖ canonical identity record)``: binds, and hides while the salt stays sealed."""
    return suite.hash(salt + identity_record(identity))


def seal_identity(
    suite: Suite, identity: Mapping[str, Any], broker_pk: bytes, regulator_pk: bytes
) -> tuple[bytes, bytes, bytes]:
    """Seal ``identity`` to the broker and the regulator: returns (commitment, sealed, salt).

    The sealed payload carries the salt too, so either recipient can re-check the commitment.
    """
    salt = os.urandom(SALT_SIZE)
    payload = codec.encode({"salt": salt, "identity": dict(identity)})
    sealed = suite.seal([broker_pk, regulator_pk], payload)
    return identity_commitment(suite, salt, identity), sealed, salt


def open_identity(suite: Suite, keypair: KeyPair, sealed: bytes) -> tuple[dict[str, Any], bytes]:
    """Open a sealed identity (broker or regulator key): returns (identity, salt)."""
    payload = codec.decode(suite.open_sealed(keypair, sealed))
    if not isinstance(payload, dict) or set(payload) != {"salt", "identity"}:
        raise ValueError("not a sealed identity record")
    identity, salt = payload["identity"], payload["salt"]
    if not isinstance(identity, dict) or not isinstance(salt, bytes):
        raise ValueError("not a sealed identity record")
    return identity, salt


# ---------------------------------------------------------------------------------------------
# Reads used by the securities module


def load_investor(ctx: TxContext, investor_id: str) -> Investor | None:
    return ctx.get_record(investor_key(investor_id), Investor)


def require_investor(ctx: TxContext, investor_id: str) -> Investor:
    inv = load_investor(ctx, investor_id)
    if inv is None:
        raise UnknownInvestorError(f"no investor {investor_id!r}")
    return inv


def require_securities_account(ctx: TxContext, account_id: str) -> SecuritiesAccount:
    acct = ctx.get_record(account_key(account_id), SecuritiesAccount)
    if acct is None:
        raise UnknownAccountError(f"no securities account {account_id!r}")
    return acct


def require_open_account(ctx: TxContext, account_id: str) -> SecuritiesAccount:
    acct = require_securities_account(ctx, account_id)
    if acct.status != "open":
        raise AccountClosedError(f"securities account {account_id!r} is closed")
    return acct


def is_contract(ctx: TxContext, address: bytes) -> bool:
    """``address`` is a deployed contract. A contract may own e-CNY wallets and be an investor
    (its securities accounts), so it can act through the native precompiles for itself."""
    return (
        len(address) == contract_keys.ADDRESS_SIZE
        and ctx.get(contract_keys.account_key(address)) is not None
    )


def sender_account(ctx: TxContext) -> Account:
    return require_account(ctx, ctx.sender)


def is_broker_of(ctx: TxContext, sender: Account, org_id: str) -> bool:
    """True if ``sender`` is a broker account of broker organization ``org_id``."""
    if not has_role(sender, "broker") or sender.org_id != org_id:
        return False
    org = ctx.get_record(org_key(org_id), Organization)
    return org is not None and org.active and org.kind == "broker"


def adjust_positions(ctx: TxContext, account_id: str, delta: int) -> None:
    """The securities module reports a holding becoming non-empty (+1) or empty (-1)."""
    current = ctx.get_record(positions_key(account_id), PositionCount) or PositionCount(0)
    count = current.count + delta
    if count < 0:
        raise AssertionError("position count below zero")
    if count == 0:
        ctx.delete(positions_key(account_id))
    else:
        ctx.put_record(positions_key(account_id), PositionCount(count))


def check_text(name: str, value: str, *, empty_ok: bool = False) -> None:
    """Free text of the business modules (names, reasons, legal references, memos): printable,
    at most MAX_TEXT characters, not blank unless ``empty_ok``; else INVALID_ARGUMENT."""
    if (not empty_ok and not value.strip()) or len(value) > MAX_TEXT or not value.isprintable():
        low = 0 if empty_ok else 1
        raise InvalidArgumentError(f"{name} must be {low}..{MAX_TEXT} printable characters")


def check_id(name: str, value: str) -> None:
    ok = bool(value) and len(value) <= MAX_ID and value.isascii()
    if not ok or not all(c.isalnum() or c in "-_." for c in value):
        raise InvalidArgumentError(f"{name} must be 1..{MAX_ID} ASCII letters, digits, '-_.'")


# ---------------------------------------------------------------------------------------------
# Methods


def _require_broker(ctx: TxContext) -> Account:
    sender = sender_account(ctx)
    if not is_broker_of(ctx, sender, sender.org_id):
        raise NotAuthorizedError("only a broker account of a broker organization may do this")
    return sender


def _check_assessment(kyc_level: int, risk_tolerance: int) -> None:
    if kyc_level not in KYC_LEVELS:
        raise InvalidArgumentError(f"kyc_level must be in {KYC_LEVELS.start}..{KYC_LEVELS[-1]}")
    if risk_tolerance not in RISK_TOLERANCES:
        raise InvalidArgumentError("risk_tolerance must be 1..5 (C1..C5)")


def check_sealed_identity(ctx: TxContext, broker: Account, sealed: bytes) -> None:
    """The envelope must be well formed for this suite and name ``broker`` (the opening
    institution: a broker here, an e-CNY operator for wallets) and a regulator."""
    if not sealed or len(sealed) > MAX_SEALED_IDENTITY:
        raise InvalidIdentityError(f"sealed_identity must be 1..{MAX_SEALED_IDENTITY} bytes")
    suite = ctx.suite
    low, high = suite.wrapped_key_sizes
    limits = EnvelopeLimits(suite.name, suite.cipher_nonce_size, low, high, suite.cipher_overhead)
    try:
        envelope = decode_envelope(sealed, limits)
    except CryptoError as exc:
        raise InvalidIdentityError(f"sealed_identity is not a {suite.name} envelope") from exc
    # Recipients are named by the address of the key sealed to: the *current* key of the
    # opener and of a regulator (an account keeps its address when it rotates its key).
    recipients = {key_id for key_id, _ in envelope.recipients}
    if suite.address(broker.public_key) not in recipients:
        raise InvalidIdentityError("sealed_identity is not sealed to the opening institution")
    if recipients.isdisjoint(regulator_key_ids(ctx)):
        raise InvalidIdentityError("sealed_identity is not sealed to a regulator's current key")



@dataclass(frozen=True)
class OpenInvestorArgs:
    investor_id: str
    kind: str
    kyc_level: int
    risk_tolerance: int
    qualified: bool
    address: bytes
    identity_commitment: bytes
    sealed_identity: bytes


def open_investor(ctx: TxContext, args: OpenInvestorArgs) -> None:
    """A broker opens an investor for an ``investor`` account of its own organization."""
    broker = _require_broker(ctx)
    check_id("investor_id", args.investor_id)
    if args.kind not in INVESTOR_KINDS:
        raise InvalidArgumentError(f"kind must be one of {sorted(INVESTOR_KINDS)}")
    _check_assessment(args.kyc_level, args.risk_tolerance)
    if len(args.identity_commitment) != COMMITMENT_SIZE:
        raise InvalidIdentityError(f"identity_commitment must be {COMMITMENT_SIZE} bytes")
    check_sealed_identity(ctx, broker, args.sealed_identity)
    owner = load_account(ctx, args.address)
    if owner is None:
        if not is_contract(ctx, args.address):  # a contract holds shares for itself
            raise UnknownAccountError(f"no registry account {args.address.hex()}")
    elif not has_role(owner, "investor") or owner.org_id != broker.org_id:
        raise InvalidArgumentError("the investor's address must be an investor account of this org")
    if ctx.get(investor_key(args.investor_id)) is not None:
        raise InvestorExistsError(f"investor {args.investor_id!r} already exists")
    if ctx.get(by_address_key(args.address)) is not None:
        raise InvestorExistsError(f"address {args.address.hex()} already has an investor")
    ctx.put_record(
        investor_key(args.investor_id),
        Investor(
            investor_id=args.investor_id,
            kind=args.kind,
            kyc_level=args.kyc_level,
            risk_tolerance=args.risk_tolerance,
            qualified=args.qualified,
            address=args.address,
            org_id=broker.org_id,
            opened_by=broker.address,
            identity_commitment=args.identity_commitment,
            sealed_identity=args.sealed_identity,
            opened_height=ctx.height,
            assessed_height=ctx.height,
        ),
    )
    ctx.put_record(by_address_key(args.address), InvestorRef(args.investor_id))
    ctx.emit(
        NAME,
        "investor_opened",
        investor_id=args.investor_id,
        kind=args.kind,
        org_id=broker.org_id,
        address=args.address,
        risk_tolerance=args.risk_tolerance,
        qualified=args.qualified,
        identity_commitment=args.identity_commitment,
    )


@dataclass(frozen=True)
class ReassessArgs:
    investor_id: str
    kyc_level: int
    risk_tolerance: int
    qualified: bool


def reassess(ctx: TxContext, args: ReassessArgs) -> None:
    """The investor's broker records a new suitability assessment."""
    broker = _require_broker(ctx)
    inv = require_investor(ctx, args.investor_id)
    if inv.org_id != broker.org_id:
        raise NotAuthorizedError(f"investor {inv.investor_id!r} is served by another broker")
    _check_assessment(args.kyc_level, args.risk_tolerance)
    ctx.put_record(
        investor_key(inv.investor_id),
        replace(
            inv,
            kyc_level=args.kyc_level,
            risk_tolerance=args.risk_tolerance,
            qualified=args.qualified,
            assessed_height=ctx.height,
        ),
    )
    ctx.emit(
        NAME,
        "investor_reassessed",
        investor_id=inv.investor_id,
        kyc_level=args.kyc_level,
        risk_tolerance=args.risk_tolerance,
        qualified=args.qualified,
    )


@dataclass(frozen=True)
class OpenAccountArgs:
    account_id: str
    investor_id: str


def open_account(ctx: TxContext, args: OpenAccountArgs) -> None:
    """The investor's broker opens a securities account for it."""
    broker = _require_broker(ctx)
    check_id("account_id", args.account_id)
    inv = require_investor(ctx, args.investor_id)
    if inv.org_id != broker.org_id:
        raise NotAuthorizedError(f"investor {inv.investor_id!r} is served by another broker")
    if ctx.get(account_key(args.account_id)) is not None:
        raise AccountExistsError(f"securities account {args.account_id!r} already exists")
    ctx.put_record(
        account_key(args.account_id),
        SecuritiesAccount(
            args.account_id, inv.investor_id, inv.org_id, "open", False, "", ctx.height, 0
        ),
    )
    ctx.emit(NAME, "account_opened", account_id=args.account_id, investor_id=inv.investor_id)


@dataclass(frozen=True)
class CloseAccountArgs:
    account_id: str


def close_account(ctx: TxContext, args: CloseAccountArgs) -> None:
    """The investor's broker closes an empty, unfrozen securities account."""
    broker = _require_broker(ctx)
    acct = require_securities_account(ctx, args.account_id)
    if acct.org_id != broker.org_id:
        raise NotAuthorizedError(f"account {acct.account_id!r} is served by another broker")
    if acct.status != "open":
        raise AccountClosedError(f"securities account {acct.account_id!r} is already closed")
    if acct.frozen:
        raise AccountFrozenError(f"securities account {acct.account_id!r} is frozen")
    if ctx.get(positions_key(acct.account_id)) is not None:
        raise AccountNotEmptyError(f"securities account {acct.account_id!r} still holds positions")
    ctx.put_record(
        account_key(acct.account_id), replace(acct, status="closed", closed_height=ctx.height)
    )
    ctx.emit(NAME, "account_closed", account_id=acct.account_id, investor_id=acct.investor_id)


MODULE = Module(
    name=NAME,
    methods={
        "open_investor": Method(OpenInvestorArgs, open_investor),
        "reassess": Method(ReassessArgs, reassess),
        "open_account": Method(OpenAccountArgs, open_account),
        "close_account": Method(CloseAccountArgs, close_account),
    },
)
