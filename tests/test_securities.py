"""Securities: registration, issuance, asset mapping, transfers with compliance, disclosure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consortia.execution.apply import Proposal
from consortia.execution.consortium import DEFAULT_GENESIS_TIME_MS
from consortia.execution.state import ChainState
from consortia.ledger.types import CommitCertificate, Transaction, TxStatus, sign_transaction
from consortia.modules.investors import PositionCount, positions_key, seal_identity
from consortia.modules.registry import GOVERNANCE_ONLY_ROLES, ROLES
from consortia.modules.securities import (
    Holding,
    InvestorTotal,
    Security,
    holding_key,
    investor_total_key,
    security_key,
)
from consortia.node.home import init_home
from consortia.node.local import ACCOUNTS_DIR, VALIDATORS_DIR, LocalChain, load_key_dir
from tests.chainkit import Consortium, Driver, make_consortium
from tests.govkit import grant_role_by_vote
from tests.test_investors import (
    codes,
    commit_ok,
    identity_of,
    open_account_tx,
    open_investor_tx,
    read,
    register,
)

DAY_MS = 86_400_000

# Investors of the standard world: (investor id, owner account, broker, tolerance, qualified).
INVESTORS = (
    ("INV-A", "inv-a", "broker-a-admin", 5, True),
    ("INV-B", "inv-b", "broker-b-admin", 5, True),
    ("INV-C", "inv-c", "broker-a-admin", 3, False),
    ("INV-D", "inv-d", "broker-a-admin", 5, False),
)
BROKER_OF = {"SA-" + i[0][-1]: i[2] for i in INVESTORS}


def world(suite: str = "intl") -> tuple[Consortium, Driver]:
    """Default consortium + issuer org/account + investors A–D with accounts SA-A..SA-D."""
    c = make_consortium(suite)
    d = Driver(c)
    commit_ok(d, [c.tx("exchange-admin", "registry", "register_org", _org("issuer-x", "issuer"))])
    commit_ok(
        d,
        [
            register(c, "issuer", "issuer-x", ("issuer",)),
            *(
                register(c, owner, broker[:8], ("investor",))
                for _, owner, broker, _, _ in INVESTORS
            ),
        ],
    )
    commit_ok(
        d,
        [
            tx
            for inv_id, owner, broker, tol, q in INVESTORS
            for tx in (
                open_investor_tx(c, broker, inv_id, owner, tolerance=tol, qualified=q),
                open_account_tx(c, broker, "SA-" + inv_id[-1], inv_id),
            )
        ],
    )
    return c, d


def _org(org_id: str, kind: str) -> dict[str, Any]:
    return {"org_id": org_id, "name": f"Org {org_id}", "kind": kind}


def apply_args(code: str, **over: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "code": code,
        "name": f"Security {code}",
        "kind": "equity",
        "authorized": 1_000_000,
        "decimals": 0,
        "risk_level": 2,
        "qualified_only": False,
        "lockup_until_ms": 0,
    }
    args.update(over)
    return args


def listed(c: Consortium, d: Driver, code: str, **over: Any) -> None:
    """Apply for and approve ``code``."""
    commit_ok(
        d,
        [
            c.tx("issuer", "securities", "apply", apply_args(code, **over)),
            c.tx("exchange-admin", "securities", "approve", {"code": code, "reason": "ok"}),
        ],
    )


def issue_tx(c: Consortium, code: str, account: str, amount: int) -> Transaction:
    return c.tx(
        "issuer", "securities", "issue", {"code": code, "account_id": account, "amount": amount}
    )


def transfer_tx(
    c: Consortium, code: str, src: str, dst: str, amount: int, who: str | None = None
) -> Transaction:
    return c.tx(
        who or BROKER_OF.get(src, "broker-a-admin"),
        "securities",
        "transfer",
        {"code": code, "from_account": src, "to_account": dst, "amount": amount, "memo": ""},
    )


def balance(d: Driver, code: str, account: str) -> int:
    h = read(d, holding_key(code, account), Holding)
    return 0 if h is None else h.balance


def security(d: Driver, code: str) -> Security:
    sec = read(d, security_key(code), Security)
    assert sec is not None
    return sec


def advance_to(d: Driver, time_ms: int) -> None:
    """Commit an empty block whose certificate makes the next block's time ``time_ms``."""
    p = d.propose([])
    d.state = p.state
    d.last_cert = d.c.certify(p.block, time_ms=time_ms)


# ---------------------------------------------------------------------------------------------
# Asset registration and mapping


def test_registration_issuance_and_rejection() -> None:
    c, d = world()
    p = commit_ok(
        d,
        [
            c.tx("issuer", "securities", "apply", apply_args("EQ1", authorized=1000)),
            c.tx("issuer", "securities", "apply", apply_args("BAD", kind="bond")),
        ],
    )
    assert [e.kind for r in p.receipts for e in r.events] == ["security_applied"] * 2
    assert security(d, "EQ1").status == "pending"
    p = d.commit(
        [
            issue_tx(c, "EQ1", "SA-A", 10),  # not yet approved
            c.tx("exchange-admin", "securities", "approve", {"code": "EQ1", "reason": "ok"}),
            c.tx("exchange-admin", "securities", "reject", {"code": "BAD", "reason": "no"}),
            c.tx("exchange-admin", "securities", "approve", {"code": "BAD", "reason": "again"}),
            c.tx("issuer", "securities", "apply", apply_args("EQ1")),
            c.tx("issuer", "securities", "apply", apply_args("R6", risk_level=6)),
            issue_tx(c, "EQ1", "SA-X", 1),
            issue_tx(c, "EQ1", "SA-A", 600),
            issue_tx(c, "EQ1", "SA-B", 400),
            issue_tx(c, "EQ1", "SA-B", 1),  # 1001 > 1000 authorized
            issue_tx(c, "BAD", "SA-B", 1),
            issue_tx(c, "NOPE", "SA-A", 1),
        ]
    )
    assert codes(p) == [
        "SECURITY_NOT_APPROVED",
        "",
        "",
        "SECURITY_NOT_PENDING",
        "SECURITY_EXISTS",
        "INVALID_ARGUMENT",
        "UNKNOWN_ACCOUNT",
        "",
        "",
        "EXCEEDS_AUTHORIZED",
        "SECURITY_NOT_APPROVED",
        "UNKNOWN_SECURITY",
    ]
    assert security(d, "EQ1").issued == 1000
    assert security(d, "BAD").status == "rejected"
    assert (balance(d, "EQ1", "SA-A"), balance(d, "EQ1", "SA-B")) == (600, 400)
    count = read(d, positions_key("SA-A"), PositionCount)
    assert count is not None and count.count == 1
    # An account with positions cannot be closed.
    p = d.commit([c.tx("broker-a-admin", "investors", "close_account", {"account_id": "SA-A"})])
    assert codes(p) == ["ACCOUNT_NOT_EMPTY"]


def test_asset_mapping_batches() -> None:
    c, d = world()
    listed(c, d, "EQ1", authorized=10_000)

    def batch(batch_id: str, total: int, entries: list[tuple[str, int, int]]) -> Transaction:
        return c.tx(
            "exchange-admin",
            "securities",
            "map_holdings",
            {
                "code": "EQ1",
                "batch_id": batch_id,
                "batch_total": total,
                "entries": [{"account_id": a, "amount": n, "locked": lk} for a, n, lk in entries],
            },
        )

    root = d.state.state_root
    p = d.commit(
        [
            batch("B1", 999, [("SA-A", 500, 0), ("SA-B", 500, 0)]),
            batch("B1", 1000, [("SA-A", 500, 0), ("SA-X", 500, 0)]),
            batch("B1", 1000, [("SA-A", 500, 0), ("SA-A", 500, 0)]),
            batch("B1", 20_000, [("SA-A", 10_000, 0), ("SA-B", 10_000, 0)]),
            c.tx(
                "issuer",
                "securities",
                "map_holdings",
                {"code": "EQ1", "batch_id": "B1", "batch_total": 1, "entries": []},
            ),
        ]
    )
    assert codes(p) == [
        "BATCH_TOTAL_MISMATCH",
        "UNKNOWN_ACCOUNT",
        "INVALID_ARGUMENT",
        "EXCEEDS_AUTHORIZED",
        "NOT_AUTHORIZED",
    ]
    assert security(d, "EQ1").issued == 0 and balance(d, "EQ1", "SA-A") == 0
    assert d.state.state_root != root  # only nonces moved
    p = commit_ok(d, [batch("B1", 1000, [("SA-A", 700, 100), ("SA-B", 300, 0)])])
    mapped = [e for e in p.receipts[0].events if e.kind == "holdings_mapped"]
    assert mapped and mapped[0].attributes["total"] == 1000
    assert security(d, "EQ1").issued == 1000
    assert (balance(d, "EQ1", "SA-A"), balance(d, "EQ1", "SA-B")) == (700, 300)
    p = d.commit([batch("B1", 1, [("SA-C", 1, 0)])])
    assert codes(p) == ["DUPLICATE_BATCH"]


# ---------------------------------------------------------------------------------------------
# Transfers


@pytest.mark.parametrize("suite", ["intl", "gm"])
def test_transfer_compliance_checks(suite: str) -> None:
    c, d = world(suite)
    listed(c, d, "EQ1", risk_level=4)  # R4: too risky for C3 investor C
    listed(c, d, "QF1", kind="fund_share", risk_level=2, qualified_only=True)
    commit_ok(d, [issue_tx(c, "EQ1", "SA-A", 1000), issue_tx(c, "QF1", "SA-A", 1000)])
    p = d.commit(
        [
            transfer_tx(c, "EQ1", "SA-A", "SA-B", 1001),
            transfer_tx(c, "EQ1", "SA-A", "SA-C", 10),
            transfer_tx(c, "QF1", "SA-A", "SA-D", 10),
            transfer_tx(c, "EQ1", "SA-A", "SA-B", 10, who="broker-b-admin"),
            transfer_tx(c, "EQ1", "SA-A", "SA-B", 10, who="inv-b"),
            transfer_tx(c, "EQ1", "SA-A", "SA-A", 10),
            transfer_tx(c, "EQ1", "SA-A", "SA-B", 0),
            transfer_tx(c, "NOPE", "SA-A", "SA-B", 1),
            transfer_tx(c, "EQ1", "SA-A", "SA-X", 1),
            # Allowed: by the owner itself, and by its broker; suitable receivers.
            transfer_tx(c, "EQ1", "SA-A", "SA-B", 100, who="inv-a"),
            transfer_tx(c, "QF1", "SA-A", "SA-C", 10),
            transfer_tx(c, "EQ1", "SA-A", "SA-D", 5),
        ]
    )
    assert codes(p) == [
        "INSUFFICIENT_FREE_BALANCE",
        "SUITABILITY_MISMATCH",
        "QUALIFIED_INVESTORS_ONLY",
        "NOT_AUTHORIZED",
        "NOT_AUTHORIZED",
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "UNKNOWN_SECURITY",
        "UNKNOWN_ACCOUNT",
        "",
        "QUALIFIED_INVESTORS_ONLY",
        "",
    ]
    assert [balance(d, "EQ1", a) for a in ("SA-A", "SA-B", "SA-C", "SA-D")] == [895, 100, 0, 5]

    # A regulator freeze of the receiving (or sending) investor blocks transfers both ways.
    freeze = {"address": c.addr("inv-b"), "reason": "investigation 2026-17"}
    commit_ok(d, [c.tx("regulator", "registry", "freeze_account", freeze)])
    p = d.commit(
        [transfer_tx(c, "EQ1", "SA-A", "SA-B", 1), transfer_tx(c, "EQ1", "SA-B", "SA-A", 1)]
    )
    assert codes(p) == ["ACCOUNT_FROZEN", "ACCOUNT_FROZEN"]
    commit_ok(d, [c.tx("regulator", "registry", "unfreeze_account", freeze)])

    # A trading halt blocks transfers until it is lifted; halts are the operator's.
    halt = {"code": "EQ1", "reason": "pending announcement"}
    p = d.commit(
        [
            c.tx("issuer", "securities", "halt", halt),
            c.tx("exchange-admin", "securities", "halt", halt),
            c.tx("exchange-admin", "securities", "halt", halt),
            transfer_tx(c, "EQ1", "SA-A", "SA-B", 1),
            transfer_tx(c, "QF1", "SA-A", "SA-B", 1),  # other securities trade on
            c.tx("exchange-admin", "securities", "resume", halt),
            c.tx("exchange-admin", "securities", "resume", halt),
            transfer_tx(c, "EQ1", "SA-A", "SA-B", 1),
        ]
    )
    assert codes(p) == [
        "NOT_AUTHORIZED",
        "",
        "ALREADY_HALTED",
        "TRADING_HALTED",
        "",
        "",
        "NOT_HALTED",
        "",
    ]
    assert balance(d, "EQ1", "SA-B") == 101


def test_lock_up_releases_at_block_time() -> None:
    c, d = world()
    until = DEFAULT_GENESIS_TIME_MS + DAY_MS
    listed(c, d, "IPO", lockup_until_ms=until)
    commit_ok(d, [issue_tx(c, "IPO", "SA-A", 1000)])
    h = read(d, holding_key("IPO", "SA-A"), Holding)
    assert h is not None and (h.balance, h.locked, h.lockup_until_ms) == (1000, 1000, until)
    p = d.commit([transfer_tx(c, "IPO", "SA-A", "SA-B", 1)])
    assert codes(p) == ["LOCKED_UP"]
    advance_to(d, until - 1)
    p = d.commit([transfer_tx(c, "IPO", "SA-A", "SA-B", 1)])
    assert p.block.header.time_ms == until - 1 and codes(p) == ["LOCKED_UP"]
    advance_to(d, until)
    p = d.commit(
        [transfer_tx(c, "IPO", "SA-A", "SA-B", 999), transfer_tx(c, "IPO", "SA-A", "SA-B", 2)]
    )
    assert p.block.header.time_ms == until
    assert codes(p) == ["", "INSUFFICIENT_FREE_BALANCE"]
    h = read(d, holding_key("IPO", "SA-A"), Holding)
    assert h is not None and (h.balance, h.locked, h.lockup_until_ms) == (1, 0, 0)
    # Shares issued after the lock-up date are free at once.
    commit_ok(d, [issue_tx(c, "IPO", "SA-C", 5)])
    commit_ok(d, [transfer_tx(c, "IPO", "SA-C", "SA-A", 5)])


def test_disclosure_at_each_five_percent_step() -> None:
    c, d = world()
    listed(c, d, "EQ1")
    commit_ok(d, [issue_tx(c, "EQ1", "SA-A", 1000)])

    def disclosures(p: Proposal) -> list[tuple[str, str, int]]:
        return [
            (e.attributes["investor_id"], e.attributes["direction"], e.attributes["threshold_pct"])
            for r in p.receipts
            for e in r.events
            if e.kind == "disclosure"
        ]

    p = commit_ok(d, [transfer_tx(c, "EQ1", "SA-A", "SA-B", 49)])
    assert disclosures(p) == [("INV-A", "down", 100)]  # 100% → 95.1%
    # B reaches exactly 5% (a threshold reached counts); A at exactly 95% has not fallen below.
    p = commit_ok(d, [transfer_tx(c, "EQ1", "SA-A", "SA-B", 1)])
    assert disclosures(p) == [("INV-B", "up", 5)]
    p = commit_ok(d, [transfer_tx(c, "EQ1", "SA-A", "SA-B", 49)])  # A 90.1%, B 9.9%
    assert disclosures(p) == [("INV-A", "down", 95)]
    p = commit_ok(d, [transfer_tx(c, "EQ1", "SA-A", "SA-B", 120)])  # B at 21.9%: 3 steps at once
    assert disclosures(p) == [("INV-A", "down", 80), ("INV-B", "up", 20)]
    p = commit_ok(d, [transfer_tx(c, "EQ1", "SA-B", "SA-C", 170)])  # B 4.9%, C 17%
    assert disclosures(p) == [("INV-B", "down", 5), ("INV-C", "up", 15)]
    total = read(d, investor_total_key("EQ1", "INV-B"), InvestorTotal)
    assert total is not None and total.total == 49


# ---------------------------------------------------------------------------------------------
# Role matrix


PERMITTED: dict[tuple[str, str], frozenset[str]] = {
    ("investors", "open_investor"): frozenset({"broker"}),
    ("investors", "reassess"): frozenset({"broker"}),
    ("investors", "open_account"): frozenset({"broker"}),
    ("investors", "close_account"): frozenset({"broker"}),
    ("securities", "apply"): frozenset({"issuer"}),
    ("securities", "approve"): frozenset({"exchange"}),
    ("securities", "reject"): frozenset({"exchange"}),
    ("securities", "issue"): frozenset({"issuer"}),
    ("securities", "map_holdings"): frozenset({"exchange"}),
    ("securities", "halt"): frozenset({"exchange"}),
    ("securities", "resume"): frozenset({"exchange"}),
    ("securities", "transfer"): frozenset({"broker", "investor"}),
}
HOME_ORG = {
    "broker": "broker-a",
    "org_admin": "broker-a",
    "investor": "broker-a",
    "issuer": "issuer-x",
    "exchange": "exchange",
    "admin": "exchange",
    "validator_operator": "exchange",
    "custodian": "bank-ccb",
    "operator_bank": "bank-ccb",
    "fund_manager": "broker-b",
    "insurer": "broker-b",
    "central_bank": "pboc",
    "court": "court-sh",
    "relayer": "csrc",
    "contract_deployer": "broker-a",
}


def _matrix_args(c: Consortium, actor: str, method: str) -> dict[str, Any]:
    if method == "open_investor":
        commitment, sealed, _ = seal_identity(
            c.suite,
            identity_of("INV-NEW"),
            c.accounts[actor].public_key,
            c.accounts["regulator"].public_key,
        )
        return {
            "investor_id": "INV-NEW",
            "kind": "institutional",
            "kyc_level": 3,
            "risk_tolerance": 4,
            "qualified": True,
            "address": c.addr("inv-new"),
            "identity_commitment": commitment,
            "sealed_identity": sealed,
        }
    reason = {"reason": "matrix"}
    table: dict[str, dict[str, Any]] = {
        "reassess": {
            "investor_id": "INV-A",
            "kyc_level": 1,
            "risk_tolerance": 2,
            "qualified": False,
        },
        "open_account": {"account_id": "SA-NEW", "investor_id": "INV-A"},
        "close_account": {"account_id": "SA-EMPTY"},
        "apply": apply_args("NEWSEC"),
        "approve": {"code": "PEND", **reason},
        "reject": {"code": "PEND", **reason},
        "issue": {"code": "EQ1", "account_id": "SA-A", "amount": 10},
        "map_holdings": {
            "code": "EQ1",
            "batch_id": "M1",
            "batch_total": 7,
            "entries": [{"account_id": "SA-B", "amount": 7, "locked": 0}],
        },
        "halt": {"code": "EQ1", **reason},
        "resume": {"code": "HALTED", **reason},
        "transfer": {
            "code": "EQ1",
            "from_account": "SA-A",
            "to_account": "SA-B",
            "amount": 1,
            "memo": "matrix",
        },
    }
    return table[method]


def test_role_matrix() -> None:
    """Every operation × every role (an account holding only that role): exactly the permitted
    ones succeed, the others fail with NOT_AUTHORIZED."""
    c, d = world()
    actors = {"regulator": "regulator", "investor": "inv-a"}
    setup = [register(c, "inv-new", "broker-a", ("investor",))]
    for role in sorted(ROLES - set(actors)):
        actors[role] = f"actor-{role}"
        granted = () if role in GOVERNANCE_ONLY_ROLES else (role,)
        setup.append(register(c, actors[role], HOME_ORG[role], granted))
    commit_ok(d, setup)
    for n, role in enumerate(sorted(GOVERNANCE_ONLY_ROLES), start=1):
        commit_ok(d, grant_role_by_vote(c, c.addr(actors[role]), role, n))
    listed(c, d, "EQ1")
    listed(c, d, "HALTED")
    commit_ok(
        d,
        [
            c.tx("issuer", "securities", "apply", apply_args("PEND")),
            c.tx("exchange-admin", "securities", "halt", {"code": "HALTED", "reason": "h"}),
            issue_tx(c, "EQ1", "SA-A", 100),
            open_account_tx(c, "broker-a-admin", "SA-EMPTY", "INV-A"),
        ],
    )
    assert set(actors) == set(ROLES)
    outcomes: dict[tuple[str, str], set[str]] = {}
    for (module, method), permitted in PERMITTED.items():
        succeeded = set()
        for role, actor in sorted(actors.items()):
            saved = dict(c.nonces)
            tx = c.tx(actor, module, method, _matrix_args(c, actor, method))
            c.nonces = saved  # proposals are not committed
            (receipt,) = d.propose([tx]).receipts
            if receipt.status == TxStatus.OK:
                succeeded.add(role)
            else:
                assert receipt.code == "NOT_AUTHORIZED", (method, role, receipt.message)
        outcomes[(module, method)] = succeeded
        assert succeeded == permitted, (method, succeeded)
    assert set(outcomes) == {(m, n) for m in ("investors", "securities") for n in _methods(m)}


def _methods(module: str) -> set[str]:
    from consortia.modules import NATIVE_MODULES

    return set(NATIVE_MODULES[module].methods)


# ---------------------------------------------------------------------------------------------
# Property: conservation and no half-applied state, against a dict model


AUTHORIZED = {"EQ1": 2000, "QB1": 1000}
RISK = {"EQ1": 2, "QB1": 4}
QUALIFIED_ONLY = {"EQ1": False, "QB1": True}
TOLERANCE = {"SA-" + i[0][-1]: (i[3], i[4]) for i in INVESTORS}
ACCOUNTS = [*sorted(TOLERANCE), "SA-X"]


@dataclass
class Model:
    holdings: dict[tuple[str, str], int] = field(default_factory=dict)
    issued: dict[str, int] = field(default_factory=lambda: dict.fromkeys(AUTHORIZED, 0))
    halted: bool = False

    def suitability(self, code: str, dst: str) -> str:
        tolerance, qualified = TOLERANCE[dst]
        if RISK[code] > tolerance:
            return "SUITABILITY_MISMATCH"
        if QUALIFIED_ONLY[code] and not qualified:
            return "QUALIFIED_INVESTORS_ONLY"
        return ""

    def transfer(self, code: str, src: str, dst: str, amount: int) -> str:
        if src not in TOLERANCE:
            return "UNKNOWN_ACCOUNT"
        if amount < 1 or src == dst:
            return "INVALID_ARGUMENT"
        if dst not in TOLERANCE:
            return "UNKNOWN_ACCOUNT"
        if self.halted and code == "EQ1":
            return "TRADING_HALTED"
        if self.holdings.get((code, src), 0) < amount:
            return "INSUFFICIENT_FREE_BALANCE"
        failure = self.suitability(code, dst)
        if not failure:
            self.holdings[(code, src)] -= amount
            self.holdings[(code, dst)] = self.holdings.get((code, dst), 0) + amount
        return failure

    def issue(self, code: str, dst: str, amount: int) -> str:
        if amount < 1:
            return "INVALID_ARGUMENT"
        if self.issued[code] + amount > AUTHORIZED[code]:
            return "EXCEEDS_AUTHORIZED"
        if dst not in TOLERANCE:
            return "UNKNOWN_ACCOUNT"
        failure = self.suitability(code, dst)
        if not failure:
            self.issued[code] += amount
            self.holdings[(code, dst)] = self.holdings.get((code, dst), 0) + amount
        return failure

    def halt(self, on: bool) -> str:
        if on == self.halted:
            return "ALREADY_HALTED" if on else "NOT_HALTED"
        self.halted = on
        return ""


_BASE: list[tuple[Consortium, ChainState, CommitCertificate | None, dict[bytes, int]]] = []


def _base() -> tuple[Consortium, ChainState, CommitCertificate | None, dict[bytes, int]]:
    if not _BASE:
        c, d = world()
        listed(c, d, "EQ1", authorized=AUTHORIZED["EQ1"], risk_level=RISK["EQ1"])
        listed(
            c,
            d,
            "QB1",
            kind="bond",
            authorized=AUTHORIZED["QB1"],
            risk_level=RISK["QB1"],
            qualified_only=True,
        )
        _BASE.append((c, d.state, d.last_cert, dict(c.nonces)))
    return _BASE[0]


codes_st = st.sampled_from(sorted(AUTHORIZED))
accounts_st = st.sampled_from(ACCOUNTS)
amounts_st = st.integers(min_value=-2, max_value=700)
op_st = st.one_of(
    st.tuples(st.just("transfer"), codes_st, accounts_st, accounts_st, amounts_st),
    st.tuples(st.just("issue"), codes_st, accounts_st, amounts_st),
    st.tuples(st.just("halt"), st.booleans()),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=st.lists(st.lists(op_st, max_size=6), min_size=1, max_size=5))
def test_random_operations_match_a_model_and_conserve_totals(blocks: list[list[Any]]) -> None:
    c, state, cert, nonces = _base()
    c.nonces = dict(nonces)
    d = Driver(c)
    d.state, d.last_cert = state, cert
    model = Model()
    for ops in blocks:
        txs, expected = [], []
        for op in ops:
            if op[0] == "transfer":
                _, code, src, dst, amount = op
                txs.append(transfer_tx(c, code, src, dst, amount))
                expected.append(model.transfer(code, src, dst, amount))
            elif op[0] == "issue":
                _, code, dst, amount = op
                txs.append(issue_tx(c, code, dst, amount))
                expected.append(model.issue(code, dst, amount))
            else:
                method = "halt" if op[1] else "resume"
                args = {"code": "EQ1", "reason": "property"}
                txs.append(c.tx("exchange-admin", "securities", method, args))
                expected.append(model.halt(op[1]))
        p = d.commit(txs)
        assert codes(p) == expected
        for code in AUTHORIZED:
            assert security(d, code).issued == model.issued[code]
            held = [balance(d, code, a) for a in TOLERANCE]
            assert held == [model.holdings.get((code, a), 0) for a in TOLERANCE]
            assert sum(held) == model.issued[code]  # conservation
            for inv_id, *_ in INVESTORS:
                total = read(d, investor_total_key(code, inv_id), InvestorTotal)
                want = model.holdings.get((code, "SA-" + inv_id[-1]), 0)
                assert (0 if total is None else total.total) == want
        for account in TOLERANCE:
            count = read(d, positions_key(account), PositionCount)
            want = sum(1 for code in AUTHORIZED if model.holdings.get((code, account), 0))
            assert (0 if count is None else count.count) == want


# ---------------------------------------------------------------------------------------------
# Identity data never reaches the disk in clear


def test_identity_never_stored_in_clear(tmp_path: Path) -> None:
    home = tmp_path / "node"
    init_home(home, suite_name="intl", password="pw", scrypt_n=1 << 10)
    vkeys = load_key_dir(home / VALIDATORS_DIR, "pw")
    keys = load_key_dir(home / ACCOUNTS_DIR, "pw")
    with LocalChain(home, vkeys) as chain:
        suite = chain.suite
        keys.update({n: suite.generate_keypair() for n in ("issuer", "wang", "chen")})
        nonces: dict[str, int] = {}

        def tx(who: str, module: str, method: str, args: dict[str, Any]) -> Transaction:
            n = nonces.get(who, 0)
            nonces[who] = n + 1
            return sign_transaction(
                suite,
                keys[who],
                chain_id=chain.state.chain_id,
                nonce=n,
                module=module,
                method=method,
                args=args,
                sender=suite.address(keys[who].public_key),
            )

        people = {
            "wang": {
                "name": "王小明",
                "name_latin": "WANG Xiaoming",
                "id_number": "310101198807071234",
            },
            "chen": {
                "name": "陈静怡",
                "name_latin": "CHEN Jingyi",
                "id_number": "44030119950505888X",
            },
        }

        def open_tx(owner: str, investor_id: str) -> Transaction:
            commitment, sealed, _ = seal_identity(
                suite,
                people[owner],
                keys["broker-a-admin"].public_key,
                keys["regulator"].public_key,
            )
            return tx(
                "broker-a-admin",
                "investors",
                "open_investor",
                {
                    "investor_id": investor_id,
                    "kind": "individual",
                    "kyc_level": 2,
                    "risk_tolerance": 4,
                    "qualified": True,
                    "address": suite.address(keys[owner].public_key),
                    "identity_commitment": commitment,
                    "sealed_identity": sealed,
                },
            )

        def account(name: str, org: str, role: str) -> Transaction:
            args = {"public_key": keys[name].public_key, "org_id": org, "roles": [role]}
            return tx("exchange-admin", "registry", "register_account", args)

        batches = [
            [tx("exchange-admin", "registry", "register_org", _org("issuer-x", "issuer"))],
            [
                account("issuer", "issuer-x", "issuer"),
                account("wang", "broker-a", "investor"),
                account("chen", "broker-a", "investor"),
            ],
            [
                open_tx("wang", "GREPINV-1"),
                open_tx("chen", "GREPINV-2"),
                tx("issuer", "securities", "apply", apply_args("GREPSEC")),
                tx("exchange-admin", "securities", "approve", {"code": "GREPSEC", "reason": "ok"}),
            ],
            [
                tx(
                    "broker-a-admin",
                    "investors",
                    "open_account",
                    {"account_id": f"GREPACCT-{i}", "investor_id": f"GREPINV-{i}"},
                )
                for i in (1, 2)
            ],
            [
                tx(
                    "issuer",
                    "securities",
                    "issue",
                    {"code": "GREPSEC", "account_id": "GREPACCT-1", "amount": 500},
                )
            ],
            [
                tx(
                    "wang",
                    "securities",
                    "transfer",
                    {
                        "code": "GREPSEC",
                        "from_account": "GREPACCT-1",
                        "to_account": "GREPACCT-2",
                        "amount": 100,
                        "memo": "gift",
                    },
                )
            ],
        ]
        for batch in batches:
            committed = chain.commit(batch)
            assert [r.code for r in committed.receipts] == [""] * len(batch)
    stored = b"".join(p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file())
    # The grep works: what is public is found.
    for visible in ("GREPINV-1", "GREPACCT-2", "GREPSEC", "gift"):
        assert visible.encode() in stored
    for person in people.values():
        for value in person.values():
            for encoding in ("utf-8", "utf-16-le", "utf-16-be", "gb18030"):
                assert value.encode(encoding) not in stored, (value, encoding)
