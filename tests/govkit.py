"""Governance arithmetic for tests, derived from the genesis organizations (never hard-coded):
which organizations vote, which accounts vote for them, and how many approvals a threshold takes.

The rule mirrored here is the one ``consortia.modules.governance`` states: a proposal passes once
the approving voting organizations reach two thirds of all voting organizations (``approvals * 3
>= voters * 2``), or ``threshold_bp`` basis points of them when a threshold is set. Voting
organizations are the active members whose kind is not in ``registry.NON_VOTING_KINDS``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from consortia.execution.consortium import DEFAULT_ACCOUNTS, DEFAULT_ORGS, AccountSpec
from consortia.execution.genesis import GenesisAccount, GenesisOrg
from consortia.modules.registry import NON_VOTING_KINDS

if TYPE_CHECKING:
    from consortia.ledger.types import Transaction
    from tests.chainkit import Consortium

BP = 10_000


def voting_orgs(orgs: Iterable[GenesisOrg] = DEFAULT_ORGS) -> tuple[str, ...]:
    """The ids of the organizations that vote, in genesis order."""
    return tuple(o.org_id for o in orgs if o.kind not in NON_VOTING_KINDS)


def voters(
    orgs: Iterable[GenesisOrg] = DEFAULT_ORGS,
    accounts: Iterable[AccountSpec | GenesisAccount] = DEFAULT_ACCOUNTS,
) -> tuple[str, ...]:
    """One account name per voting organization that has a genesis org_admin, in genesis order
    (the account that casts the organization's vote)."""
    admins: dict[str, str] = {}
    for spec in accounts:
        if "org_admin" in spec.roles:
            admins.setdefault(spec.org_id, spec.name)
    return tuple(admins[o] for o in voting_orgs(orgs) if o in admins)


def approvals_needed(voting: int, threshold_bp: int | None = None) -> int:
    """The fewest approving organizations out of ``voting`` that pass a proposal."""
    if voting < 1:
        raise ValueError("no voting organizations")
    for n in range(1, voting + 1):
        if threshold_bp is None and n * 3 >= voting * 2:
            return n
        if threshold_bp is not None and n * BP >= voting * threshold_bp:
            return n
    raise ValueError(f"threshold {threshold_bp} bp is unreachable")


def grant_role_by_vote(
    c: Consortium, address: bytes, role: str, proposal_id: int
) -> list[Transaction]:
    """Transactions (for one block) that grant ``role`` to ``address`` by a vote of the default
    consortium: the proposal (it must become ``proposal_id``) and the approvals that pass it.
    For roles no single admin may grant (``registry.GOVERNANCE_ONLY_ROLES``)."""
    names = voters()
    need = approvals_needed(len(voting_orgs()))
    args = {"address": address, "role": role, "reason": "granted by vote"}
    return [
        c.tx(names[0], "governance", "propose_appoint_role", args),
        *(c.tx(n, "governance", "approve", {"proposal_id": proposal_id}) for n in names[1:need]),
    ]
