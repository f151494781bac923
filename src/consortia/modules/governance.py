"""Consortium governance: changes decided by a qualified majority of the member organizations.

A member organization's admin proposes a change; each voting organization (every active member
except the regulator) approves at most once through one of its org_admins. When approvals reach the
threshold — two thirds of the voting organizations by default, or ``governance.threshold_bp`` basis
points when genesis (``params["governance_threshold_bp"]``) or a ``set_param`` proposal set it —
the change applies in the approving transaction. Proposal kinds:

- ``add_validator`` / ``remove_validator`` / ``set_power`` (method ``propose``): the validator set
  that takes effect ``VALIDATOR_CHANGE_OFFSET`` heights later (block H decides, H + 2 signs);
- ``admit_org`` (``propose_admit_org``): a new active member organization, never a regulator;
- ``remove_org`` (``propose_remove_org``): deactivates a member; its accounts can no longer send
  transactions (``ORGANIZATION_INACTIVE``) and it no longer votes;
- ``set_param`` (``propose_set_param``): an allow-listed integer chain parameter;
- ``appoint_role`` / ``revoke_role`` (``propose_appoint_role`` / ``propose_revoke_role``): a role of
  one account. The ``regulator`` role is set in genesis only: no proposal grants or revokes it, and
  no proposal touches an account of the regulator.
- ``approve_code`` / ``freeze_contract`` / ``unfreeze_contract`` (``propose_contract``): approve
  deploying EVM code by its code hash, or freeze / unfreeze a contract (``consortia.modules.
  contracts``; the proposal's ``address`` field holds the code hash or the contract address).

Every step is an event; proposals stay in state as the audit trail. Integers only (determinism).

State: ``governance/next_id`` → counter; ``governance/proposal/<id>`` → ``Proposal``;
``governance/param/<name>`` → ``ParamValue``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from consortia import codec
from consortia.crypto import CryptoError
from consortia.execution.context import TxContext
from consortia.execution.errors import TxFailure
from consortia.execution.module import Method, Module
from consortia.execution.state import VALIDATOR_CHANGE_OFFSET, VSET_NEXT, VSET_PENDING
from consortia.ledger.types import Validator, ValidatorSet, WireFormatError
from consortia.modules import contracts
from consortia.modules.registry import (
    GENESIS_ONLY_ROLES,
    MAX_ROLES,
    ROLES,
    Account,
    InvalidRoleError,
    Organization,
    OrgNotFoundError,
    account_key,
    add_org,
    check_new_org,
    org_key,
    require_account,
    require_role,
    voting_orgs,
)

# ``contracts`` is imported as a module object and used only inside functions: it reads
# governance's parameters while governance applies the contract lifecycle proposals.

NAME = "governance"
VALIDATOR_ACTIONS = ("add_validator", "remove_validator", "set_power")
ACTIONS = VALIDATOR_ACTIONS  # the actions of ``propose`` (kept for callers of the old name)
KINDS = (
    *VALIDATOR_ACTIONS,
    "admit_org",
    "remove_org",
    "set_param",
    "appoint_role",
    "revoke_role",
    "approve_code",
    "freeze_contract",
    "unfreeze_contract",
)
CONTRACT_ACTIONS = ("approve_code", "freeze_contract", "unfreeze_contract")
MAX_VALIDATORS = 100
MAX_POWER = 1 << 30
MAX_REASON = 500
NEXT_ID_KEY = b"governance/next_id"

# Chain parameters a ``set_param`` proposal may change: name -> inclusive integer bounds.
THRESHOLD_PARAM = "governance.threshold_bp"
MAX_FEN = 1 << 62  # e-CNY amounts are integers in fen
# e-CNY wallet limits per KYC category (2..4; category 1 has none) and the large-value threshold.
# Defaults (used when neither genesis nor governance set them) live in the ecny module.
ECNY_LIMIT_PARAMS: tuple[str, ...] = tuple(
    f"ecny.cat{cat}.{limit}"
    for cat in (2, 3, 4)
    for limit in ("balance_cap_fen", "per_payment_fen", "daily_fen")
)
ECNY_LARGE_VALUE_PARAM = "ecny.large_value_fen"
# EVM gas per transaction and per block (defaults in the contracts module): at least one
# message's intrinsic gas, at most a bound on the work one block may ask of every node.
CONTRACT_GAS_PARAMS: tuple[str, ...] = ("contracts.max_tx_gas", "contracts.max_block_gas")
# Futures: a client's lots in one contract (either side) from which the daily settlement files a
# large-position report (default in the futures module: 80% of the contract's position limit).
FUTURES_LARGE_POSITION_PARAM = "futures.large_position_lots"
PARAMS: dict[str, tuple[int, int]] = {
    THRESHOLD_PARAM: (5_001, 10_000),  # more than half, at most everyone
    ECNY_LARGE_VALUE_PARAM: (1, MAX_FEN),
    **dict.fromkeys(ECNY_LIMIT_PARAMS, (1, MAX_FEN)),
    **dict.fromkeys(CONTRACT_GAS_PARAMS, (21_000, 1_000_000_000)),
    FUTURES_LARGE_POSITION_PARAM: (1, 1_000_000),
}
# Genesis ``params`` entries that seed a chain parameter: genesis name -> parameter name
# (the parameter name with "." spelled "_", e.g. ``ecny_cat4_daily_fen``).
GENESIS_PARAMS: dict[str, str] = {
    "governance_threshold_bp": THRESHOLD_PARAM,
    **{
        name.replace(".", "_"): name
        for name in (
            ECNY_LARGE_VALUE_PARAM,
            *ECNY_LIMIT_PARAMS,
            *CONTRACT_GAS_PARAMS,
            FUTURES_LARGE_POSITION_PARAM,
        )
    },
}
BP = 10_000


def proposal_key(proposal_id: int) -> bytes:
    return b"governance/proposal/" + proposal_id.to_bytes(8, "big")


def param_key(name: str) -> bytes:
    return b"governance/param/" + name.encode()


@dataclass(frozen=True)
class Counter:
    value: int


@dataclass(frozen=True)
class ParamValue:
    value: int


@dataclass(frozen=True)
class Proposal:
    """One proposal of any kind; fields a kind does not use are empty (``""``, ``b""``, 0)."""

    proposal_id: int
    action: str
    name: str  # validator name, organization name, or parameter name
    public_key: bytes  # validator kinds
    power: int  # add_validator / set_power
    org_id: str  # admit_org / remove_org
    org_kind: str  # admit_org
    address: bytes  # appoint_role / revoke_role; the code hash or contract address (contracts)
    role: str  # appoint_role / revoke_role
    value: int  # set_param
    reason: str
    proposer: bytes
    proposer_org: str
    approvals: tuple[str, ...]  # org ids, sorted
    status: str  # "open" | "executed"
    decided_height: int


ValidatorProposal = Proposal  # the record's former name


class GovernanceUnauthorizedError(TxFailure):
    code = "NOT_AUTHORIZED"


class InvalidProposalError(TxFailure):
    code = "INVALID_PROPOSAL"


class ProposalNotFoundError(TxFailure):
    code = "UNKNOWN_PROPOSAL"


class ProposalClosedError(TxFailure):
    code = "PROPOSAL_CLOSED"


class AlreadyApprovedError(TxFailure):
    code = "ALREADY_APPROVED"


def check_param(name: str, value: int) -> None:
    """Raise ``InvalidProposalError`` unless ``name`` is allow-listed and ``value`` in bounds."""
    if name not in PARAMS:
        raise InvalidProposalError(f"parameter must be one of {sorted(PARAMS)}")
    low, high = PARAMS[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidProposalError(f"parameter {name!r} must be an integer in {low}..{high}")


def get_param(ctx: TxContext, name: str) -> int | None:
    """A chain parameter's value, or None if neither genesis nor governance set it."""
    rec = ctx.get_record(param_key(name), ParamValue)
    return None if rec is None else rec.value


def threshold_reached(ctx: TxContext, approvals: int, voters: int) -> bool:
    """Exactly two thirds by default; ``governance.threshold_bp`` basis points if set."""
    bp = get_param(ctx, THRESHOLD_PARAM)
    if bp is None:
        return approvals * 3 >= voters * 2
    return approvals * BP >= voters * bp


def _voter_org(ctx: TxContext) -> str:
    """The sender's organization, if the sender may vote for it (an org_admin of a voting org)."""
    sender = require_account(ctx, ctx.sender)
    try:
        require_role(sender, "org_admin")
    except TxFailure as exc:
        raise GovernanceUnauthorizedError(str(exc)) from exc
    if sender.org_id not in voting_orgs(ctx):
        raise GovernanceUnauthorizedError(f"organization {sender.org_id!r} has no governance vote")
    return sender.org_id


# ---------------------------------------------------------------------------------------------
# Validator changes


def _next_set(ctx: TxContext) -> ValidatorSet:
    """The latest decided set: a change already approved in this block, else the next set."""
    raw = ctx.get(VSET_PENDING)
    if raw is None:
        raw = ctx.get(VSET_NEXT)
    if raw is None:
        raise InvalidProposalError("this chain has no validator set in state")
    return codec.decode_struct(ValidatorSet, raw)


def _changed_set(ctx: TxContext, p: Proposal) -> ValidatorSet:
    """The validator set after ``p``; raises InvalidProposalError if it cannot apply."""
    current = _next_set(ctx)
    address = ctx.suite.address(p.public_key)
    members = {v.address: v for v in current.validators}
    if p.action == "add_validator":
        if address in members:
            raise InvalidProposalError("that key is already a validator")
        if len(members) >= MAX_VALIDATORS:
            raise InvalidProposalError(f"at most {MAX_VALIDATORS} validators")
        members[address] = Validator(address, p.public_key, p.power)
    elif p.action == "set_power":
        if address not in members:
            raise InvalidProposalError("that key is not a validator")
        members[address] = replace(members[address], power=p.power)
    else:
        if address not in members:
            raise InvalidProposalError("that key is not a validator")
        if len(members) == 1:
            raise InvalidProposalError("cannot remove the last validator")
        del members[address]
    try:
        return ValidatorSet(tuple(members[a] for a in sorted(members)))
    except WireFormatError as exc:
        raise InvalidProposalError(str(exc)) from exc


def _apply_validator_change(ctx: TxContext, p: Proposal) -> None:
    new_set = _changed_set(ctx, p)
    ctx.put(VSET_PENDING, codec.encode_struct(new_set))
    ctx.emit(
        NAME,
        "validator_set_changed",
        proposal_id=p.proposal_id,
        action=p.action,
        validator=ctx.suite.address(p.public_key),
        power=p.power,
        effective_height=ctx.height + VALIDATOR_CHANGE_OFFSET,
        validators=len(new_set.validators),
    )


# ---------------------------------------------------------------------------------------------
# Organizations, parameters, roles: each kind has a check (raises, writes nothing) and an apply.


def _check_admit_org(ctx: TxContext, p: Proposal) -> None:
    if p.org_kind == "regulator":
        raise GovernanceUnauthorizedError("the regulator is set in genesis, not admitted by vote")
    check_new_org(ctx, p.org_id, p.name, p.org_kind)


def _check_remove_org(ctx: TxContext, p: Proposal) -> Organization:
    org = ctx.get_record(org_key(p.org_id), Organization)
    if org is None:
        raise OrgNotFoundError(f"no organization {p.org_id!r}")
    if org.kind == "regulator":
        raise GovernanceUnauthorizedError("the regulator is set in genesis, not removed by vote")
    if not org.active:
        raise InvalidProposalError(f"organization {p.org_id!r} is already inactive")
    if voting_orgs(ctx) == (p.org_id,):
        raise InvalidProposalError("cannot remove the last voting organization")
    return org


def _check_role_change(ctx: TxContext, p: Proposal) -> Account:
    if p.role not in ROLES:
        raise InvalidRoleError(f"unknown role {p.role!r}")
    if p.role in GENESIS_ONLY_ROLES:
        raise InvalidRoleError(f"role {p.role!r} is assigned in genesis only")
    target = require_account(ctx, p.address)
    org = ctx.get_record(org_key(target.org_id), Organization)
    if any(r in GENESIS_ONLY_ROLES for r in target.roles) or (
        org is not None and org.kind == "regulator"
    ):
        raise GovernanceUnauthorizedError("the regulator's accounts are set in genesis")
    if org is None or not org.active:
        raise InvalidProposalError(f"organization {target.org_id!r} is not an active member")
    if p.action == "appoint_role":
        if p.role in target.roles:
            raise InvalidProposalError(f"account already holds role {p.role!r}")
        if len(target.roles) >= MAX_ROLES:
            raise InvalidRoleError(f"at most {MAX_ROLES} roles")
    elif p.role not in target.roles:
        raise InvalidProposalError(f"account does not hold role {p.role!r}")
    return target


def _check(ctx: TxContext, p: Proposal) -> None:
    """Raise unless ``p`` could apply now (writes nothing)."""
    if p.action in VALIDATOR_ACTIONS:
        _changed_set(ctx, p)
    elif p.action == "admit_org":
        _check_admit_org(ctx, p)
    elif p.action == "remove_org":
        _check_remove_org(ctx, p)
    elif p.action == "set_param":
        check_param(p.name, p.value)
    elif p.action in ("appoint_role", "revoke_role"):
        _check_role_change(ctx, p)
    elif p.action == "approve_code":
        contracts.check_approve_code(ctx, p.address)
    elif p.action in ("freeze_contract", "unfreeze_contract"):
        contracts.check_freeze(ctx, p.address, frozen=p.action == "freeze_contract")
    else:
        raise InvalidProposalError(f"action must be one of {KINDS}")


def _apply(ctx: TxContext, p: Proposal) -> None:
    """Apply ``p`` (re-checked against the state now); every change is an event."""
    if p.action in VALIDATOR_ACTIONS:
        _apply_validator_change(ctx, p)
    elif p.action == "admit_org":
        _check_admit_org(ctx, p)
        add_org(ctx, p.org_id, p.name, p.org_kind)
        ctx.emit(NAME, "org_admitted", proposal_id=p.proposal_id, org_id=p.org_id, kind=p.org_kind)
    elif p.action == "remove_org":
        org = _check_remove_org(ctx, p)
        ctx.put_record(org_key(org.org_id), replace(org, active=False))
        ctx.emit(NAME, "org_removed", proposal_id=p.proposal_id, org_id=p.org_id)
    elif p.action == "set_param":
        check_param(p.name, p.value)
        previous = get_param(ctx, p.name)
        ctx.put_record(param_key(p.name), ParamValue(p.value))
        ctx.emit(
            NAME,
            "param_set",
            proposal_id=p.proposal_id,
            name=p.name,
            value=p.value,
            previous=-1 if previous is None else previous,
        )
    elif p.action == "approve_code":
        contracts.approve_code(ctx, p.address, p.proposal_id)
    elif p.action in ("freeze_contract", "unfreeze_contract"):
        contracts.set_frozen(
            ctx,
            p.address,
            frozen=p.action == "freeze_contract",
            reason=p.reason,
            by=b"",
            proposal_id=p.proposal_id,
        )
    else:
        target = _check_role_change(ctx, p)
        if p.action == "appoint_role":
            roles = tuple(sorted((*target.roles, p.role)))
        else:
            roles = tuple(r for r in target.roles if r != p.role)
        ctx.put_record(account_key(target.address), replace(target, roles=roles))
        kind = "role_appointed" if p.action == "appoint_role" else "role_revoked"
        ctx.emit(NAME, kind, proposal_id=p.proposal_id, address=target.address, role=p.role)


def _maybe_execute(ctx: TxContext, p: Proposal) -> Proposal:
    voters = voting_orgs(ctx)
    approvals = [o for o in p.approvals if o in voters]
    if not threshold_reached(ctx, len(approvals), len(voters)):
        return p
    _apply(ctx, p)
    ctx.emit(
        NAME,
        "proposal_executed",
        proposal_id=p.proposal_id,
        action=p.action,
        approvals=len(approvals),
        voters=len(voters),
    )
    return replace(p, status="executed", decided_height=ctx.height)


def _open(ctx: TxContext, org: str, draft: Proposal) -> None:
    """Check ``draft`` (refuse now what could never apply), number it, store it, maybe apply."""
    if not draft.reason.strip() or len(draft.reason) > MAX_REASON:
        raise InvalidProposalError(f"reason (1..{MAX_REASON} characters) is required")
    _check(ctx, draft)
    counter = ctx.get_record(NEXT_ID_KEY, Counter) or Counter(1)
    p = replace(draft, proposal_id=counter.value, approvals=(org,))
    ctx.put_record(NEXT_ID_KEY, Counter(counter.value + 1))
    ctx.emit(NAME, "proposal_opened", proposal_id=p.proposal_id, action=p.action, org=org)
    ctx.put_record(proposal_key(p.proposal_id), _maybe_execute(ctx, p))


def _draft(ctx: TxContext, org: str, action: str, reason: str) -> Proposal:
    return Proposal(
        proposal_id=0,
        action=action,
        name="",
        public_key=b"",
        power=0,
        org_id="",
        org_kind="",
        address=b"",
        role="",
        value=0,
        reason=reason,
        proposer=ctx.sender,
        proposer_org=org,
        approvals=(),
        status="open",
        decided_height=0,
    )


# ---------------------------------------------------------------------------------------------
# Methods


@dataclass(frozen=True)
class ProposeArgs:
    action: str
    name: str
    public_key: bytes
    power: int
    reason: str


def propose(ctx: TxContext, args: ProposeArgs) -> None:
    """An org_admin of a voting organization proposes a validator change (its org approves)."""
    org = _voter_org(ctx)
    if args.action not in VALIDATOR_ACTIONS:
        raise InvalidProposalError(f"action must be one of {VALIDATOR_ACTIONS}")
    if not args.name or len(args.name) > 64 or not args.reason or len(args.reason) > MAX_REASON:
        raise InvalidProposalError("name (1..64) and reason (1..500 characters) are required")
    power = 0 if args.action == "remove_validator" else args.power
    if args.action != "remove_validator" and not 1 <= power <= MAX_POWER:
        raise InvalidProposalError(f"power must be in 1..{MAX_POWER}")
    try:
        ctx.suite.check_public_key(args.public_key)
    except CryptoError as exc:
        raise InvalidProposalError(f"invalid consensus public key: {exc}") from exc
    draft = replace(
        _draft(ctx, org, args.action, args.reason),
        name=args.name,
        public_key=args.public_key,
        power=power,
    )
    _open(ctx, org, draft)


@dataclass(frozen=True)
class AdmitOrgArgs:
    org_id: str
    name: str
    kind: str
    reason: str


def propose_admit_org(ctx: TxContext, args: AdmitOrgArgs) -> None:
    """Propose admitting a member organization (any kind but ``regulator``)."""
    org = _voter_org(ctx)
    draft = replace(
        _draft(ctx, org, "admit_org", args.reason),
        name=args.name,
        org_id=args.org_id,
        org_kind=args.kind,
    )
    _open(ctx, org, draft)


@dataclass(frozen=True)
class RemoveOrgArgs:
    org_id: str
    reason: str


def propose_remove_org(ctx: TxContext, args: RemoveOrgArgs) -> None:
    """Propose deactivating a member organization (never the regulator)."""
    org = _voter_org(ctx)
    _open(ctx, org, replace(_draft(ctx, org, "remove_org", args.reason), org_id=args.org_id))


@dataclass(frozen=True)
class SetParamArgs:
    name: str
    value: int
    reason: str


def propose_set_param(ctx: TxContext, args: SetParamArgs) -> None:
    """Propose setting an allow-listed integer chain parameter (see ``PARAMS``)."""
    org = _voter_org(ctx)
    draft = replace(_draft(ctx, org, "set_param", args.reason), name=args.name, value=args.value)
    _open(ctx, org, draft)


@dataclass(frozen=True)
class RoleChangeArgs:
    address: bytes
    role: str
    reason: str


def propose_appoint_role(ctx: TxContext, args: RoleChangeArgs) -> None:
    """Propose granting ``role`` to an account; never ``regulator`` (genesis only)."""
    org = _voter_org(ctx)
    draft = replace(
        _draft(ctx, org, "appoint_role", args.reason), address=args.address, role=args.role
    )
    _open(ctx, org, draft)


def propose_revoke_role(ctx: TxContext, args: RoleChangeArgs) -> None:
    """Propose revoking ``role`` from an account; never ``regulator`` (genesis only)."""
    org = _voter_org(ctx)
    draft = replace(
        _draft(ctx, org, "revoke_role", args.reason), address=args.address, role=args.role
    )
    _open(ctx, org, draft)


@dataclass(frozen=True)
class ContractProposalArgs:
    action: str  # approve_code | freeze_contract | unfreeze_contract
    subject: bytes  # the code hash (approve_code) or the contract's address
    reason: str


def propose_contract(ctx: TxContext, args: ContractProposalArgs) -> None:
    """Propose approving EVM code by its hash, or freezing / unfreezing a contract."""
    org = _voter_org(ctx)
    if args.action not in CONTRACT_ACTIONS:
        raise InvalidProposalError(f"action must be one of {CONTRACT_ACTIONS}")
    draft = replace(_draft(ctx, org, args.action, args.reason), address=args.subject)
    _open(ctx, org, draft)


@dataclass(frozen=True)
class ApproveArgs:
    proposal_id: int


def approve(ctx: TxContext, args: ApproveArgs) -> None:
    """One approval per voting organization; the change applies at the threshold."""
    org = _voter_org(ctx)
    p = ctx.get_record(proposal_key(args.proposal_id), Proposal)
    if p is None:
        raise ProposalNotFoundError(f"no proposal {args.proposal_id}")
    if p.status != "open":
        raise ProposalClosedError(f"proposal {p.proposal_id} is {p.status}")
    if org in p.approvals:
        raise AlreadyApprovedError(f"organization {org!r} already approved {p.proposal_id}")
    p = replace(p, approvals=tuple(sorted((*p.approvals, org))))
    ctx.emit(NAME, "proposal_approved", proposal_id=p.proposal_id, org=org)
    ctx.put_record(proposal_key(p.proposal_id), _maybe_execute(ctx, p))


MODULE = Module(
    name=NAME,
    methods={
        "propose": Method(ProposeArgs, propose),
        "propose_admit_org": Method(AdmitOrgArgs, propose_admit_org),
        "propose_remove_org": Method(RemoveOrgArgs, propose_remove_org),
        "propose_set_param": Method(SetParamArgs, propose_set_param),
        "propose_appoint_role": Method(RoleChangeArgs, propose_appoint_role),
        "propose_revoke_role": Method(RoleChangeArgs, propose_revoke_role),
        "propose_contract": Method(ContractProposalArgs, propose_contract),
        "approve": Method(ApproveArgs, approve),
    },
)
