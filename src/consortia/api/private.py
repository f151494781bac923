"""Role-based authorization and the views of private records (investors, wallets).

Who may read what (docs/api.md has the table):

- an investor record (its securities accounts and holdings): the investor's own registry account
  (``Investor.address``), a ``broker`` account of the investor's broker organization
  (``Investor.org_id``, an active broker org), and any ``regulator``;
- a wallet's private view (balance, effective limits, day spent): the wallet's owner account, an
  ``operator_bank`` account of the wallet's operator bank (``Wallet.operator_org``, an active
  bank), and any ``regulator``.

Everyone else is refused with 403 ``FORBIDDEN`` — also for ids that do not exist, so the answer is
no oracle of which ids exist; only the regulator gets 404 for an unknown id. Sealed identities are
never returned, not even to those who may open them (they read them from the chain's record with
their own keys).

All rules are evaluated against one immutable head ``ChainState`` through a read-only
``TxContext``, the same predicates (``is_broker_of``, ``is_operator``) the modules use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consortia import codec
from consortia.execution.context import TxContext
from consortia.execution.state import ChainState
from consortia.modules import ecny, investors, registry, securities


def read_context(state: ChainState) -> TxContext:
    """A read-only view of the head for the modules' predicates (never committed)."""
    return TxContext(
        suite=state.suite,
        chain_id=state.chain_id,
        height=state.height,
        time_ms=state.last_time_ms,
        tree=state.tree,
        block_writes={},
        sender=b"",
    )


def load_account(state: ChainState, address: bytes) -> registry.Account | None:
    raw = state.tree.get(registry.account_key(address))
    return None if raw is None else codec.decode_struct(registry.Account, raw)


def is_regulator(acct: registry.Account) -> bool:
    return registry.has_role(acct, "regulator")


def investor_access(ctx: TxContext, acct: registry.Account, inv: investors.Investor) -> str | None:
    """The rule under which ``acct`` may read ``inv`` (``self``, ``broker``, ``regulator``)."""
    if is_regulator(acct):
        return "regulator"
    if acct.address == inv.address:
        return "self"
    if investors.is_broker_of(ctx, acct, inv.org_id):
        return "broker"
    return None


def wallet_access(ctx: TxContext, acct: registry.Account, wallet: ecny.Wallet) -> str | None:
    """The rule under which ``acct`` may read ``wallet`` (``owner``/``operator``/``regulator``)."""
    if is_regulator(acct):
        return "regulator"
    if acct.address == wallet.owner:
        return "owner"
    if ecny.is_operator(ctx, acct, wallet.operator_org):
        return "operator"
    return None


@dataclass
class _Index:
    state_root: bytes = b""
    accounts_by_investor: dict[str, list[investors.SecuritiesAccount]] = field(default_factory=dict)
    holdings_by_account: dict[str, list[securities.Holding]] = field(default_factory=dict)


_ACCOUNT_PREFIX = investors.account_key("")
_HOLDING_PREFIX = b"securities/holding/"


class HoldingsIndex:
    """Investor → securities accounts → holdings at the head.

    The state has no such secondary index, so it is built by one pass over the state tree and
    reused until the state root changes (i.e. at most once per committed block, and only when a
    private investor read asks for it)."""

    def __init__(self) -> None:
        self._index = _Index()

    def _current(self, state: ChainState) -> _Index:
        root = state.state_root
        if self._index.state_root != root:
            index = _Index(state_root=root)
            for key, value in state.tree.items():
                if key.startswith(_ACCOUNT_PREFIX):
                    acct = codec.decode_struct(investors.SecuritiesAccount, value)
                    index.accounts_by_investor.setdefault(acct.investor_id, []).append(acct)
                elif key.startswith(_HOLDING_PREFIX):
                    holding = codec.decode_struct(securities.Holding, value)
                    index.holdings_by_account.setdefault(holding.account_id, []).append(holding)
            for accounts in index.accounts_by_investor.values():
                accounts.sort(key=lambda a: a.account_id)
            for holdings in index.holdings_by_account.values():
                holdings.sort(key=lambda h: h.code)
            self._index = index
        return self._index

    def accounts(
        self, state: ChainState, investor_id: str
    ) -> list[tuple[investors.SecuritiesAccount, list[securities.Holding]]]:
        index = self._current(state)
        return [
            (acct, index.holdings_by_account.get(acct.account_id, []))
            for acct in index.accounts_by_investor.get(investor_id, [])
        ]


__all__ = [
    "HoldingsIndex",
    "investor_access",
    "is_regulator",
    "load_account",
    "read_context",
    "wallet_access",
]
