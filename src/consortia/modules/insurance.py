"""Insurance: products of insurers, policies bought with e-CNY, cooling-off refunds, claims.

- Products: an insurer account (role ``insurer`` in an active organization of kind ``insurer``)
  registers a product: premium, term in days, coverage (the most all claims of a policy may pay),
  risk level R1–R5, cooling-off period in days (0 = none; a product whose term exceeds one year
  must give at least ``MIN_LONG_TERM_COOLING_OFF_DAYS`` = 15, the rule for personal insurance of
  more than one year) and the insurer's e-CNY wallet that receives premiums and pays refunds and
  claims. The registering account must be able to spend that wallet: registration is the
  insurer's standing mandate for this module to pay refunds and claims of the product from it.
- Policies: an investor (the policyholder, sending from its own registry account) buys a policy,
  paying the premium from one of its wallets (``ecny.pay_between``, every wallet rule applies).
  Suitability as for securities: the product's risk level must not exceed the investor's risk
  tolerance (``SUITABILITY_MISMATCH``). The policy runs from the block time of purchase for
  ``term_days`` × 24 h. Refunds and claims are paid to the wallet the premium came from.
- Cooling-off: the policyholder may cancel until the end of the ``cooling_off_days``-th CST
  calendar day after the purchase date (a policy bought on 1 January with 15 days may be cancelled
  until 16 January 24:00 CST) and gets the full premium back from the product's wallet; afterwards
  ``COOLING_OFF_ENDED``. A policy on which a claim has been paid cannot be cancelled
  (``POLICY_CLAIMED``).
- Claims: an insurer account of the product's insurer pays a claim on an active policy, while the
  policy is in force (``POLICY_NOT_IN_FORCE`` after its end), of at most the remaining coverage
  (``COVERAGE_EXCEEDED``), from the product's wallet to the policy's wallet.

Amounts are integers in fen.

State keys:

- ``insurance/product/<product id>`` → ``Product``
- ``insurance/policy/<policy id>`` → ``Policy``
- ``insurance/claim/<claim id>`` → ``Claim``
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from consortia.execution.context import TxContext
from consortia.execution.errors import TxFailure
from consortia.execution.module import Method, Module
from consortia.modules.calendar import DAY_MS, cst_date, date_start_ms
from consortia.modules.ecny import (
    check_fen,
    pay_between,
    require_spender,
    require_wallet,
)
from consortia.modules.investors import (
    InvalidArgumentError,
    NotAuthorizedError,
    check_id,
    check_text,
    require_investor,
    sender_account,
)
from consortia.modules.registry import Account, Organization, has_role, org_key
from consortia.modules.securities import RISK_LEVELS, SuitabilityMismatchError

NAME = "insurance"

MAX_TERM_DAYS = 100 * 366
MAX_COOLING_OFF_DAYS = 366
DEFAULT_COOLING_OFF_DAYS = 15
MIN_LONG_TERM_COOLING_OFF_DAYS = 15
ONE_YEAR_DAYS = 365


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Product:
    product_id: str
    insurer_org: str
    name: str
    premium_fen: int
    term_days: int
    coverage_fen: int
    risk_level: int  # 1..5 = R1..R5
    cooling_off_days: int
    wallet_id: str  # receives premiums, pays refunds and claims
    registered_by: bytes
    registered_height: int


@dataclass(frozen=True)
class Policy:
    policy_id: str
    product_id: str
    insurer_org: str
    investor_id: str  # the policyholder
    wallet_id: str  # paid the premium; receives refunds and claims
    premium_fen: int
    coverage_fen: int
    claimed_fen: int
    start_ms: int  # block time of purchase
    end_ms: int  # start + term
    cooling_off_end_ms: int  # cancellable with full refund before this block time
    status: str  # active | cancelled
    bought_height: int
    cancelled_height: int


@dataclass(frozen=True)
class Claim:
    claim_id: str
    policy_id: str
    amount_fen: int
    reference: str
    paid_by: bytes
    paid_height: int


def product_key(product_id: str) -> bytes:
    return b"insurance/product/" + product_id.encode()


def policy_key(policy_id: str) -> bytes:
    return b"insurance/policy/" + policy_id.encode()


def claim_key(claim_id: str) -> bytes:
    return b"insurance/claim/" + claim_id.encode()


# ---------------------------------------------------------------------------------------------
# Failures (stable codes)


class ProductExistsError(TxFailure):
    code = "PRODUCT_EXISTS"


class UnknownProductError(TxFailure):
    code = "UNKNOWN_PRODUCT"


class PolicyExistsError(TxFailure):
    code = "POLICY_EXISTS"


class UnknownPolicyError(TxFailure):
    code = "UNKNOWN_POLICY"


class PolicyNotActiveError(TxFailure):
    code = "POLICY_NOT_ACTIVE"


class PolicyNotInForceError(TxFailure):
    code = "POLICY_NOT_IN_FORCE"


class CoolingOffEndedError(TxFailure):
    code = "COOLING_OFF_ENDED"


class PolicyClaimedError(TxFailure):
    code = "POLICY_CLAIMED"


class ClaimExistsError(TxFailure):
    code = "CLAIM_EXISTS"


class CoverageExceededError(TxFailure):
    code = "COVERAGE_EXCEEDED"


# ---------------------------------------------------------------------------------------------
# Helpers


def _is_insurer(ctx: TxContext, acct: Account, org_id: str | None = None) -> bool:
    if not has_role(acct, "insurer") or (org_id is not None and acct.org_id != org_id):
        return False
    org = ctx.get_record(org_key(acct.org_id), Organization)
    return org is not None and org.active and org.kind == "insurer"


def _require_insurer(ctx: TxContext, org_id: str | None = None) -> Account:
    sender = sender_account(ctx)
    if not _is_insurer(ctx, sender, org_id):
        which = f"of {org_id!r} " if org_id else ""
        raise NotAuthorizedError(f"only an insurer account {which}may do this")
    return sender


def require_product(ctx: TxContext, product_id: str) -> Product:
    p = ctx.get_record(product_key(product_id), Product)
    if p is None:
        raise UnknownProductError(f"no insurance product {product_id!r}")
    return p


def require_policy(ctx: TxContext, policy_id: str) -> Policy:
    p = ctx.get_record(policy_key(policy_id), Policy)
    if p is None:
        raise UnknownPolicyError(f"no insurance policy {policy_id!r}")
    return p


def cooling_off_end_ms(bought_ms: int, days: int) -> int:
    """Block time at which the cooling-off of a policy bought at ``bought_ms`` ends: 24:00 CST of
    the ``days``-th calendar day after the purchase date (no cooling-off when ``days`` is 0)."""
    if days == 0:
        return bought_ms
    return date_start_ms(cst_date(bought_ms)) + (days + 1) * DAY_MS


# ---------------------------------------------------------------------------------------------
# Products


@dataclass(frozen=True)
class RegisterProductArgs:
    product_id: str
    name: str
    premium_fen: int
    term_days: int
    coverage_fen: int
    risk_level: int
    cooling_off_days: int
    wallet_id: str


def register_product(ctx: TxContext, args: RegisterProductArgs) -> None:
    """An insurer registers a product, paid into and out of a wallet the sender may spend."""
    insurer = _require_insurer(ctx)
    check_id("product_id", args.product_id)
    check_text("name", args.name)
    check_fen("premium_fen", args.premium_fen)
    check_fen("coverage_fen", args.coverage_fen)
    if isinstance(args.term_days, bool) or not 1 <= args.term_days <= MAX_TERM_DAYS:
        raise InvalidArgumentError(f"term_days must be 1..{MAX_TERM_DAYS}")
    if args.risk_level not in RISK_LEVELS:
        raise InvalidArgumentError("risk_level must be 1..5 (R1..R5)")
    if not 0 <= args.cooling_off_days <= min(args.term_days, MAX_COOLING_OFF_DAYS):
        raise InvalidArgumentError("cooling_off_days must be 0..term_days (at most a year)")
    if args.term_days > ONE_YEAR_DAYS and args.cooling_off_days < MIN_LONG_TERM_COOLING_OFF_DAYS:
        raise InvalidArgumentError(
            f"a product of more than one year has a cooling-off period of at least "
            f"{MIN_LONG_TERM_COOLING_OFF_DAYS} days"
        )
    require_spender(ctx, require_wallet(ctx, args.wallet_id))
    if ctx.get(product_key(args.product_id)) is not None:
        raise ProductExistsError(f"insurance product {args.product_id!r} already exists")
    product = Product(
        product_id=args.product_id,
        insurer_org=insurer.org_id,
        name=args.name,
        premium_fen=args.premium_fen,
        term_days=args.term_days,
        coverage_fen=args.coverage_fen,
        risk_level=args.risk_level,
        cooling_off_days=args.cooling_off_days,
        wallet_id=args.wallet_id,
        registered_by=ctx.sender,
        registered_height=ctx.height,
    )
    ctx.put_record(product_key(product.product_id), product)
    ctx.emit(
        NAME,
        "product_registered",
        product_id=product.product_id,
        insurer_org=product.insurer_org,
        premium_fen=product.premium_fen,
        term_days=product.term_days,
        coverage_fen=product.coverage_fen,
        risk_level=product.risk_level,
        cooling_off_days=product.cooling_off_days,
        wallet_id=product.wallet_id,
    )


# ---------------------------------------------------------------------------------------------
# Policies


@dataclass(frozen=True)
class BuyPolicyArgs:
    policy_id: str
    product_id: str
    investor_id: str
    wallet_id: str


def buy_policy(ctx: TxContext, args: BuyPolicyArgs) -> None:
    """The policyholder buys a policy, paying the premium from its wallet."""
    product = require_product(ctx, args.product_id)
    holder = require_investor(ctx, args.investor_id)
    if ctx.sender != holder.address:
        raise NotAuthorizedError(f"only investor {holder.investor_id!r} buys policies for itself")
    check_id("policy_id", args.policy_id)
    require_spender(ctx, require_wallet(ctx, args.wallet_id))
    if product.risk_level > holder.risk_tolerance:
        raise SuitabilityMismatchError(
            f"product {product.product_id!r} is R{product.risk_level}; investor "
            f"{holder.investor_id!r} tolerates C{holder.risk_tolerance}"
        )
    if ctx.get(policy_key(args.policy_id)) is not None:
        raise PolicyExistsError(f"insurance policy {args.policy_id!r} already exists")
    pay_between(
        ctx,
        args.wallet_id,
        product.wallet_id,
        product.premium_fen,
        purpose="insurance_premium",
        memo=args.policy_id,
    )
    policy = Policy(
        policy_id=args.policy_id,
        product_id=product.product_id,
        insurer_org=product.insurer_org,
        investor_id=holder.investor_id,
        wallet_id=args.wallet_id,
        premium_fen=product.premium_fen,
        coverage_fen=product.coverage_fen,
        claimed_fen=0,
        start_ms=ctx.time_ms,
        end_ms=ctx.time_ms + product.term_days * DAY_MS,
        cooling_off_end_ms=cooling_off_end_ms(ctx.time_ms, product.cooling_off_days),
        status="active",
        bought_height=ctx.height,
        cancelled_height=0,
    )
    ctx.put_record(policy_key(policy.policy_id), policy)
    ctx.emit(
        NAME,
        "policy_bought",
        policy_id=policy.policy_id,
        product_id=product.product_id,
        investor_id=holder.investor_id,
        wallet_id=policy.wallet_id,
        premium_fen=policy.premium_fen,
        start_ms=policy.start_ms,
        end_ms=policy.end_ms,
        cooling_off_end_ms=policy.cooling_off_end_ms,
    )


@dataclass(frozen=True)
class PolicyIdArgs:
    policy_id: str


def cancel_policy(ctx: TxContext, args: PolicyIdArgs) -> None:
    """Within the cooling-off period the policyholder cancels and gets the whole premium back."""
    policy = require_policy(ctx, args.policy_id)
    holder = require_investor(ctx, policy.investor_id)
    if ctx.sender != holder.address:
        raise NotAuthorizedError("only the policyholder cancels a policy")
    if policy.status != "active":
        raise PolicyNotActiveError(f"policy {policy.policy_id!r} is {policy.status}")
    if ctx.time_ms >= policy.cooling_off_end_ms:
        raise CoolingOffEndedError(
            f"the cooling-off period of policy {policy.policy_id!r} ended at "
            f"{policy.cooling_off_end_ms}"
        )
    if policy.claimed_fen:
        raise PolicyClaimedError(f"claims have been paid on policy {policy.policy_id!r}")
    product = require_product(ctx, policy.product_id)
    # Module-authorized: the product's registration mandates refunds from its wallet.
    pay_between(
        ctx,
        product.wallet_id,
        policy.wallet_id,
        policy.premium_fen,
        purpose="insurance_refund",
        memo=policy.policy_id,
    )
    ctx.put_record(
        policy_key(policy.policy_id),
        replace(policy, status="cancelled", cancelled_height=ctx.height),
    )
    ctx.emit(
        NAME,
        "policy_cancelled",
        policy_id=policy.policy_id,
        investor_id=policy.investor_id,
        refund_fen=policy.premium_fen,
        wallet_id=policy.wallet_id,
    )


# ---------------------------------------------------------------------------------------------
# Claims


@dataclass(frozen=True)
class PayClaimArgs:
    claim_id: str
    policy_id: str
    amount_fen: int
    reference: str  # the insurer's claim file


def pay_claim(ctx: TxContext, args: PayClaimArgs) -> None:
    """The insurer pays a claim on a policy in force, within its remaining coverage."""
    policy = require_policy(ctx, args.policy_id)
    _require_insurer(ctx, policy.insurer_org)
    check_id("claim_id", args.claim_id)
    check_fen("amount_fen", args.amount_fen)
    check_text("reference", args.reference)
    if policy.status != "active":
        raise PolicyNotActiveError(f"policy {policy.policy_id!r} is {policy.status}")
    if ctx.time_ms >= policy.end_ms:
        raise PolicyNotInForceError(f"policy {policy.policy_id!r} ended at {policy.end_ms}")
    remaining = policy.coverage_fen - policy.claimed_fen
    if args.amount_fen > remaining:
        raise CoverageExceededError(
            f"policy {policy.policy_id!r} has {remaining} fen of coverage left, "
            f"{args.amount_fen} claimed"
        )
    if ctx.get(claim_key(args.claim_id)) is not None:
        raise ClaimExistsError(f"claim {args.claim_id!r} already exists")
    product = require_product(ctx, policy.product_id)
    pay_between(
        ctx,
        product.wallet_id,
        policy.wallet_id,
        args.amount_fen,
        purpose="insurance_claim",
        memo=args.claim_id,
    )
    policy = replace(policy, claimed_fen=policy.claimed_fen + args.amount_fen)
    ctx.put_record(policy_key(policy.policy_id), policy)
    ctx.put_record(
        claim_key(args.claim_id),
        Claim(
            args.claim_id, policy.policy_id, args.amount_fen, args.reference, ctx.sender, ctx.height
        ),
    )
    ctx.emit(
        NAME,
        "claim_paid",
        claim_id=args.claim_id,
        policy_id=policy.policy_id,
        amount_fen=args.amount_fen,
        claimed_fen=policy.claimed_fen,
        coverage_fen=policy.coverage_fen,
        wallet_id=policy.wallet_id,
    )


MODULE = Module(
    name=NAME,
    methods={
        "register_product": Method(RegisterProductArgs, register_product),
        "buy_policy": Method(BuyPolicyArgs, buy_policy),
        "cancel_policy": Method(PolicyIdArgs, cancel_policy),
        "pay_claim": Method(PayClaimArgs, pay_claim),
    },
)
