"""Consortium governance: validator-set changes decided by two thirds of the member organizations.

A member organization's admin proposes adding a validator (its consensus public key and voting
power), changing a validator's power, or removing one; each voting organization (every active
member except the regulator) approves at most once through one of its org_admins. When approvals
reach two thirds of the voting organizations, the change is applied to the validator set that
takes effect ``VALIDATOR_CHANGE_OFFSET`` heights later (block H decides, H + 2 is the first height
the new set signs). Every step is an event; proposals stay in state as the audit trail.

State: ``governance/next_id`` → counter; ``governance/proposal/<id>`` → ``ValidatorProposal``.
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
from consortia.modules.registry import (
    require_account,
    require_role,
    voting_orgs,
)

NAME = "governance"
ACTIONS = ("add_validator", "remove_validator", "set_power")
MAX_VALIDATORS = 100
MAX_POWER = 1 << 30
NEXT_ID_KEY = b"governance/next_id"


def proposal_key(proposal_id: int) -> bytes:
    return b"governance/proposal/" + proposal_id.to_bytes(8, "big")


@dataclass(frozen=True)
class Counter:
    value: int


@dataclass(frozen=True)
class ValidatorProposal:
    proposal_id: int
    action: str
    name: str
    public_key: bytes
    power: int
    reason: str
    proposer: bytes
    proposer_org: str
    approvals: tuple[str, ...]  # org ids, sorted
    status: str  # "open" | "executed" | "failed"
    decided_height: int


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


def _next_set(ctx: TxContext) -> ValidatorSet:
    """The latest decided set: a change already approved in this block, else the next set."""
    raw = ctx.get(VSET_PENDING)
    if raw is None:
        raw = ctx.get(VSET_NEXT)
    if raw is None:
        raise InvalidProposalError("this chain has no validator set in state")
    return codec.decode_struct(ValidatorSet, raw)


def _changed_set(ctx: TxContext, p: ValidatorProposal) -> ValidatorSet:
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


def _maybe_execute(ctx: TxContext, p: ValidatorProposal) -> ValidatorProposal:
    voters = voting_orgs(ctx)
    approvals = [o for o in p.approvals if o in voters]
    if len(approvals) * 3 < len(voters) * 2:
        return p
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
    return replace(p, status="executed", decided_height=ctx.height)


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
    if args.action not in ACTIONS:
        raise InvalidProposalError(f"action must be one of {ACTIONS}")
    if not args.name or len(args.name) > 64 or not args.reason or len(args.reason) > 500:
        raise InvalidProposalError("name (1..64) and reason (1..500 characters) are required")
    power = 0 if args.action == "remove_validator" else args.power
    if args.action != "remove_validator" and not 1 <= power <= MAX_POWER:
        raise InvalidProposalError(f"power must be in 1..{MAX_POWER}")
    try:
        ctx.suite.check_public_key(args.public_key)
    except CryptoError as exc:
        raise InvalidProposalError(f"invalid consensus public key: {exc}") from exc
    counter = ctx.get_record(NEXT_ID_KEY, Counter) or Counter(1)
    p = ValidatorProposal(
        proposal_id=counter.value,
        action=args.action,
        name=args.name,
        public_key=args.public_key,
        power=power,
        reason=args.reason,
        proposer=ctx.sender,
        proposer_org=org,
        approvals=(org,),
        status="open",
        decided_height=0,
    )
    _changed_set(ctx, p)  # refuse now what could never apply
    ctx.put_record(NEXT_ID_KEY, Counter(counter.value + 1))
    ctx.emit(NAME, "proposal_opened", proposal_id=p.proposal_id, action=p.action, org=org)
    ctx.put_record(proposal_key(p.proposal_id), _maybe_execute(ctx, p))


@dataclass(frozen=True)
class ApproveArgs:
    proposal_id: int


def approve(ctx: TxContext, args: ApproveArgs) -> None:
    """One approval per voting organization; the change applies at two thirds."""
    org = _voter_org(ctx)
    p = ctx.get_record(proposal_key(args.proposal_id), ValidatorProposal)
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
        "approve": Method(ApproveArgs, approve),
    },
)
