"""Role matrix for enforcement, corporate actions, governance and registry (issue 4, "Done when").

``tests/test_securities.py::test_role_matrix`` covers ``investors`` and ``securities``; this file
covers every method of the other four business modules. For each operation a fresh chain is built
(the default consortium, an issuer organization, one account per role holding only that role, two
investors with securities accounts, a listed security) and brought to a state where the operation
succeeds for a permitted caller. Then, for every role in ``registry.ROLES``, the role's account
signs the operation and it is proposed in a real block on that same state (proposals are not
committed, so the cases are independent). Exactly the permitted roles must succeed; every other
role must be refused with ``NOT_AUTHORIZED``.

Where the home organization of each role's account is (``HOME_ORG``): broker, org_admin, investor →
broker-a; issuer → issuer-x; exchange, admin, validator_operator → exchange; custodian,
operator_bank → bank-ccb; fund_manager, insurer → broker-b; central_bank → pboc; court → court-sh;
regulator → csrc (the genesis regulator account). Some permissions are relations as well as roles;
the targets below are chosen so that the relation holds for the role's account:

========================================  ================================================
operation                                 permitted roles (relation that makes them hold)
========================================  ================================================
enforcement.pledge                        broker (broker-a keeps SA-A), investor (owns SA-A)
enforcement.release                       exchange; custodian, operator_bank (members of
                                          bank-ccb, the pledgee organization)
enforcement.freeze                        court, regulator
enforcement.unfreeze                      court, regulator (also the freezing account itself)
enforcement.forced_transfer               court, regulator (also the freezing account itself)
enforcement.settle                        every role (any registered account)
corporate_actions.announce_dividend       issuer (of issuer-x, the security's issuer)
corporate_actions.pay                     issuer (of issuer-x), exchange
corporate_actions.announce_split          issuer (of issuer-x)
corporate_actions.execute_split           issuer (of issuer-x), exchange
corporate_actions.cancel_split            issuer (of issuer-x)
governance.propose (validator change)     org_admin (of a voting organization)
governance.propose_admit_org              org_admin (of a voting organization)
governance.propose_remove_org             org_admin (of a voting organization)
governance.propose_set_param              org_admin (of a voting organization)
governance.propose_appoint_role           org_admin (of a voting organization)
governance.propose_revoke_role            org_admin (of a voting organization)
governance.approve                        org_admin (of a voting organization not yet approving)
registry.register_org                     admin
registry.register_account                 admin, org_admin (of the target org, broker-a)
registry.rotate_key                       every role (its own key)
registry.reset_key                        admin, org_admin (of the target's org, broker-a)
registry.set_roles                        admin, org_admin (of the target's org, broker-a)
registry.freeze_account                   court, regulator, org_admin (of the target's org,
                                          broker-a)
registry.unfreeze_account                 court, regulator, org_admin (of the target's org,
                                          broker-a)
========================================  ================================================

Notably the consortium ``admin`` role alone neither votes in governance (that needs ``org_admin``)
nor freezes registry accounts (that needs ``regulator``, ``court`` or the target's ``org_admin``).
A court's freezes (registry accounts, holdings, securities accounts) are judicial orders; it holds
no governance vote (its organization's kind is not a voting kind) and, like the operator roles, its
role is granted only by a consortium admin or governance.
"""

from __future__ import annotations

from typing import Any

import pytest

from consortia.ledger.types import Transaction, TxStatus
from consortia.modules import NATIVE_MODULES
from consortia.modules.corporate_actions import date_start_ms
from consortia.modules.governance import THRESHOLD_PARAM
from consortia.modules.registry import ADMIN_ONLY_ROLES, GOVERNANCE_ONLY_ROLES, ROLES
from tests.chainkit import Consortium, Driver, make_consortium
from tests.ecnykit import issue_tx as ecny_issue_tx
from tests.ecnykit import load_tx, open_wallet_tx
from tests.govkit import grant_role_by_vote
from tests.test_investors import commit_ok, open_account_tx, open_investor_tx
from tests.test_securities import HOME_ORG, advance_to, apply_args

FAR = date_start_ms(20270101)
MODULES = ("enforcement", "corporate_actions", "governance", "registry")
REFUSAL = dict.fromkeys(MODULES, "NOT_AUTHORIZED")

EVERY = frozenset(ROLES)
VOTER = frozenset({"org_admin"})
MANAGER = frozenset({"admin", "org_admin"})
JUDICIAL = frozenset({"court", "regulator"})
PERMITTED: dict[tuple[str, str], frozenset[str]] = {
    ("enforcement", "pledge"): frozenset({"broker", "investor"}),
    ("enforcement", "release"): frozenset({"exchange", "custodian", "operator_bank"}),
    ("enforcement", "freeze"): JUDICIAL,
    ("enforcement", "unfreeze"): JUDICIAL,
    ("enforcement", "forced_transfer"): JUDICIAL,
    ("enforcement", "settle"): EVERY,
    ("corporate_actions", "announce_dividend"): frozenset({"issuer"}),
    ("corporate_actions", "pay"): frozenset({"issuer", "exchange"}),
    ("corporate_actions", "announce_split"): frozenset({"issuer"}),
    ("corporate_actions", "execute_split"): frozenset({"issuer", "exchange"}),
    ("corporate_actions", "cancel_split"): frozenset({"issuer"}),
    ("governance", "propose"): VOTER,
    ("governance", "propose_admit_org"): VOTER,
    ("governance", "propose_remove_org"): VOTER,
    ("governance", "propose_set_param"): VOTER,
    ("governance", "propose_appoint_role"): VOTER,
    ("governance", "propose_revoke_role"): VOTER,
    ("governance", "propose_contract"): VOTER,
    ("governance", "approve"): VOTER,
    ("registry", "register_org"): frozenset({"admin"}),
    ("registry", "register_account"): MANAGER,
    ("registry", "rotate_key"): EVERY,
    ("registry", "reset_key"): MANAGER,
    ("registry", "set_roles"): MANAGER,
    ("registry", "freeze_account"): JUDICIAL | {"org_admin"},
    ("registry", "unfreeze_account"): JUDICIAL | {"org_admin"},
}

# The genesis org_admin of each organization; issuer-x (admitted below) has none, so the
# consortium admin opens its accounts, as it does for roles only an admin may grant.
ORG_ADMIN = {
    "exchange": "exchange-admin",
    "broker-a": "broker-a-admin",
    "broker-b": "broker-b-admin",
    "bank-ccb": "ccb-admin",
    "bank-bocom": "bocom-admin",
    "pboc": "pboc-admin",
    "fund-harvest": "fund-admin",
    "insurer-ping": "insurer-admin",
}


def actor(role: str) -> str:
    return "regulator" if role == "regulator" else f"actor-{role}"


def _register(c: Consortium, name: str, org_id: str, role: str) -> Transaction:
    """The org's admin (or the consortium admin) opens account ``name`` holding only ``role``
    (without it for a role only governance grants: ``base`` has it voted)."""
    kp = c.suite.generate_keypair()
    c.accounts[name] = kp
    by = "exchange-admin" if role in ADMIN_ONLY_ROLES else ORG_ADMIN.get(org_id, "exchange-admin")
    roles = [] if role in GOVERNANCE_ONLY_ROLES else [role]
    args = {"public_key": kp.public_key, "org_id": org_id, "roles": roles}
    return c.tx(by, "registry", "register_account", args)


def base() -> tuple[Consortium, Driver]:
    """Default consortium + issuer-x + one fresh account per role + SA-A (owned by the investor
    actor, kept by broker-a) and SA-B (another investor, broker-b) + EQ1 with 100 in SA-A +
    ``target``, a plain investor-role registry account of broker-a."""
    c = make_consortium()
    d = Driver(c)
    org = {"org_id": "issuer-x", "name": "Org issuer-x", "kind": "issuer"}
    commit_ok(d, [c.tx("exchange-admin", "registry", "register_org", org)])
    assert set(HOME_ORG) | {"regulator"} == set(ROLES)
    commit_ok(
        d,
        [
            *(_register(c, actor(r), HOME_ORG[r], r) for r in sorted(ROLES - {"regulator"})),
            _register(c, "holder-b", "broker-b", "investor"),
            _register(c, "target", "broker-a", "investor"),
        ],
    )
    for n, role in enumerate(sorted(GOVERNANCE_ONLY_ROLES), start=1):
        commit_ok(d, grant_role_by_vote(c, c.addr(actor(role)), role, n))
    commit_ok(
        d,
        [
            open_investor_tx(c, "broker-a-admin", "INV-A", actor("investor")),
            open_account_tx(c, "broker-a-admin", "SA-A", "INV-A"),
            open_investor_tx(c, "broker-b-admin", "INV-B", "holder-b"),
            open_account_tx(c, "broker-b-admin", "SA-B", "INV-B"),
            c.tx(actor("issuer"), "securities", "apply", apply_args("EQ1")),
        ],
    )
    commit_ok(d, [c.tx("exchange-admin", "securities", "approve", {"code": "EQ1", "reason": "ok"})])
    issue = {"code": "EQ1", "account_id": "SA-A", "amount": 100}
    commit_ok(d, [c.tx(actor("issuer"), "securities", "issue", issue)])
    return c, d


# ---------------------------------------------------------------------------------------------
# Per operation: the state it needs (committed) and its arguments for a given actor


def _pledge_args(pledge_id: str) -> dict[str, Any]:
    return {
        "pledge_id": pledge_id,
        "code": "EQ1",
        "account_id": "SA-A",
        "amount": 10,
        "pledgee_address": b"",
        "pledgee_org": "bank-ccb",
        "reference": f"loan contract {pledge_id}",
    }


def _freeze_args(freeze_id: str) -> dict[str, Any]:
    return {
        "freeze_id": freeze_id,
        "code": "EQ1",
        "account_id": "SA-A",
        "amount": 10,
        "reference": f"(2026) court ruling {freeze_id}",
        "expires_at_ms": FAR,
    }


def _dividend_args(dividend_id: str) -> dict[str, Any]:
    return {
        "dividend_id": dividend_id,
        "code": "EQ1",
        "amount_per_share_fen": 125,
        "record_date": 20260101,
        "ex_date": 20260101,
        "payment_date": 20260102,
    }


def _split_args(split_id: str, effective_date: int) -> dict[str, Any]:
    return {
        "split_id": split_id,
        "code": "EQ1",
        "new_shares": 2,
        "old_shares": 1,
        "effective_date": effective_date,
    }


def prepare(c: Consortium, d: Driver, method: str) -> None:
    """Commit what ``method`` needs to succeed for a permitted caller."""
    if method == "release":
        commit_ok(d, [c.tx("broker-a-admin", "enforcement", "pledge", _pledge_args("P1"))])
    elif method in ("unfreeze", "forced_transfer"):
        commit_ok(d, [c.tx("regulator", "enforcement", "freeze", _freeze_args("F1"))])
    elif method == "settle":  # a freeze that has expired, so settling has work to do
        args = {**_freeze_args("F1"), "expires_at_ms": date_start_ms(20260102)}
        commit_ok(d, [c.tx("regulator", "enforcement", "freeze", args)])
        advance_to(d, date_start_ms(20260103))
    elif method == "pay":
        # e-CNY: the issuer's wallet W-ISSUER with a funded sub-wallet W-AGENT held by the
        # operator (its paying agent; the issuer, holding the parent, may spend it too), and
        # SA-A's settlement wallet W-A.
        commit_ok(d, [ecny_issue_tx(c, "bank-ccb", 1_000_000)])
        commit_ok(
            d,
            [
                open_wallet_tx(c, "ccb-admin", "W-ISSUER", actor("issuer"), category=1),
                open_wallet_tx(c, "ccb-admin", "W-A", actor("investor"), category=2),
            ],
        )
        agent = {
            "wallet_id": "W-AGENT",
            "parent": "W-ISSUER",
            "owner": c.addr(actor("exchange")),
            "balance_cap": 10**12,
            "per_payment_limit": 10**12,
            "daily_limit": 10**12,
        }
        commit_ok(d, [c.tx(actor("issuer"), "ecny", "open_sub_wallet", agent)])
        link = {"account_id": "SA-A", "wallet_id": "W-A"}
        dividend = _dividend_args("D1")
        commit_ok(
            d,
            [
                load_tx(c, "ccb-admin", "W-AGENT", 100_000),
                c.tx(actor("investor"), "settlement", "link_wallet", link),
                c.tx(actor("issuer"), "corporate_actions", "announce_dividend", dividend),
            ],
        )
        advance_to(d, date_start_ms(20260102))
    elif method == "execute_split":
        args = _split_args("S1", 20260102)
        commit_ok(d, [c.tx(actor("issuer"), "corporate_actions", "announce_split", args)])
        advance_to(d, date_start_ms(20260102))
    elif method == "cancel_split":
        args = _split_args("S1", 20260105)
        commit_ok(d, [c.tx(actor("issuer"), "corporate_actions", "announce_split", args)])
    elif method == "approve":
        args = {"name": THRESHOLD_PARAM, "value": 8_000, "reason": "stricter votes"}
        commit_ok(d, [c.tx("exchange-admin", "governance", "propose_set_param", args)])
    elif method == "unfreeze_account":
        args = {"address": c.addr("target"), "reason": "suspicious activity"}
        commit_ok(d, [c.tx("regulator", "registry", "freeze_account", args)])


def op_args(c: Consortium, method: str) -> dict[str, Any]:
    fresh_key = c.suite.generate_keypair().public_key
    target = c.addr("target")
    table: dict[str, dict[str, Any]] = {
        # enforcement
        "pledge": _pledge_args("P2"),
        "release": {"pledge_id": "P1", "reference": "repaid"},
        "freeze": _freeze_args("F2"),
        "unfreeze": {"freeze_id": "F1", "reference": "lift order"},
        "forced_transfer": {"freeze_id": "F1", "to_account": "SA-B", "reference": "enforce"},
        "settle": {"account_id": "SA-A", "code": "EQ1"},
        # corporate_actions
        "announce_dividend": _dividend_args("D2"),
        "pay": {"dividend_id": "D1", "account_ids": ["SA-A"], "payer_wallet": "W-AGENT"},
        "announce_split": _split_args("S2", 20260110),
        "execute_split": {"split_id": "S1"},
        "cancel_split": {"split_id": "S1"},
        # governance
        "propose": {
            "action": "add_validator",
            "name": "v-new",
            "public_key": fresh_key,
            "power": 10,
            "reason": "more validators",
        },
        "propose_admit_org": {
            "org_id": "custodian-y",
            "name": "Org custodian-y",
            "kind": "custodian",
            "reason": "new member",
        },
        "propose_remove_org": {"org_id": "broker-b", "reason": "leaves"},
        "propose_set_param": {"name": THRESHOLD_PARAM, "value": 7_500, "reason": "3/4"},
        "propose_appoint_role": {"address": target, "role": "custodian", "reason": "appoint"},
        "propose_revoke_role": {"address": target, "role": "investor", "reason": "revoke"},
        "propose_contract": {
            "action": "approve_code",
            "subject": c.suite.hash(b"contract init code"),
            "reason": "reviewed",
        },
        "approve": {"proposal_id": len(GOVERNANCE_ONLY_ROLES) + 1},  # after base()'s votes
        # registry
        "register_org": {"org_id": "fund-z", "name": "Org fund-z", "kind": "fund_manager"},
        "register_account": {"public_key": fresh_key, "org_id": "broker-a", "roles": ["investor"]},
        "rotate_key": {"new_public_key": fresh_key},
        "reset_key": {"address": target, "new_public_key": fresh_key},
        "set_roles": {"address": target, "roles": ["broker", "investor"]},
        "freeze_account": {"address": target, "reason": "suspicious activity"},
        "unfreeze_account": {"address": target, "reason": "cleared"},
    }
    return table[method]


# ---------------------------------------------------------------------------------------------
# The matrix


def test_matrix_covers_every_method_of_the_four_modules() -> None:
    methods = {(m, n) for m in MODULES for n in NATIVE_MODULES[m].methods}
    assert set(PERMITTED) == methods
    assert all(roles <= ROLES for roles in PERMITTED.values())


@pytest.mark.parametrize(("module", "method"), sorted(PERMITTED))
def test_role_matrix(module: str, method: str) -> None:
    """Every role's account tries ``module.method`` on the same prepared state, each in its own
    proposed block: exactly the permitted roles succeed, the others get NOT_AUTHORIZED."""
    c, d = base()
    prepare(c, d, method)
    succeeded: set[str] = set()
    for role in sorted(ROLES):
        saved = dict(c.nonces)
        tx = c.tx(actor(role), module, method, op_args(c, method))
        c.nonces = saved  # the proposal is not committed
        (receipt,) = d.propose([tx]).receipts
        if receipt.status == TxStatus.OK:
            succeeded.add(role)
            assert receipt.events, (method, role)
        else:
            assert receipt.code == REFUSAL[module], (method, role, receipt.code, receipt.message)
    assert succeeded == PERMITTED[(module, method)], (method, sorted(succeeded))


def test_org_admin_cannot_grant_itself_the_operator_role() -> None:
    """Regression: an org_admin could grant its own account the operator role ``exchange`` and
    so release a pledge held by another organization."""
    c, d = base()
    prepare(c, d, "release")  # P1: 10 EQ1 of SA-A (kept by broker-a) pledged to bank-ccb
    escalate = {"address": c.addr("broker-a-admin"), "roles": ["broker", "exchange", "org_admin"]}
    release = {"pledge_id": "P1", "reference": "released by the pledgor's broker"}
    p = d.commit(
        [
            c.tx("broker-a-admin", "registry", "set_roles", escalate),
            c.tx("broker-a-admin", "enforcement", "release", release),
        ]
    )
    # Intent: the operator role belongs to the exchange and is granted by the consortium admin
    # (or by governance), so the grant is refused and the pledgee's pledge stays in force.
    assert p.receipts[0].code == "NOT_AUTHORIZED"
    assert p.receipts[1].code == "NOT_AUTHORIZED"


@pytest.mark.parametrize("role", ["court", "operator_bank"])
def test_court_and_e_cny_operator_are_granted_by_the_consortium_admin_only(role: str) -> None:
    """No org_admin grants ``role`` (a bank's admin cannot make an account of its bank an e-CNY
    operator, a broker's admin cannot make itself a court) nor drops the operator role from its
    own account; the consortium admin grants it."""
    c = make_consortium()
    d = Driver(c)
    home = {"court": "court-sh", "operator_bank": "bank-bocom"}[role]
    kp, other = c.suite.generate_keypair(), c.suite.generate_keypair()

    def open_account(by: str, org_id: str, key: bytes) -> Transaction:
        args = {"public_key": key, "org_id": org_id, "roles": [role]}
        return c.tx(by, "registry", "register_account", args)

    def own_roles(who: str, roles: list[str]) -> Transaction:
        return c.tx(who, "registry", "set_roles", {"address": c.addr(who), "roles": roles})

    p = d.commit(
        [
            open_account("bocom-admin", "bank-bocom", kp.public_key),
            open_account("broker-a-admin", "broker-a", kp.public_key),
            own_roles("broker-a-admin", ["broker", "org_admin", role]),
            own_roles("bocom-admin", ["org_admin"]),  # dropping operator_bank is reserved too
            open_account("exchange-admin", home, kp.public_key),
            open_account("exchange-admin", "broker-a", other.public_key),
        ]
    )
    assert [r.code for r in p.receipts] == ["NOT_AUTHORIZED"] * 4 + ["", ""]
