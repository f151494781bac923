"""Role-based authorization and the views of private records (investors, wallets, holdings,
transactions, raw state).

Who may read what (docs/api.md has the table):

- an investor record (its securities accounts and holdings): the investor's own registry account
  (``Investor.address``), a ``broker`` account of the investor's broker organization
  (``Investor.org_id``, an active broker org), and any ``regulator``;
- a holding (and any record of one securities account: the account itself, fund positions and
  orders): the same three, through the securities account's investor;
- a wallet (balance; its private view with limits and day spent): the wallet's owner account (for
  a sub-wallet also the parent wallet's owner), an ``operator_bank`` account of the wallet's
  operator bank (``Wallet.operator_org``, an active bank), and any ``regulator``;
- a committed transaction: its sender, an account of the sender's organization, the regulator;
- a raw state key: public prefixes (``PUBLIC_STATE_PREFIXES``) for everyone; the owner rules
  above by key prefix for records of one securities account / investor / wallet; any other key
  (and every absent private key) for the regulator only (``state_access``).

Everyone else is refused with 403 ``FORBIDDEN`` — also for ids that do not exist, so the answer is
no oracle of which ids exist; only the regulator gets 404 for an unknown id. Sealed identities are
never returned, not even to those who may open them (they read them from the chain's record with
their own keys).

All rules are evaluated against one immutable head ``ChainState`` through a read-only
``TxContext``, the same predicates (``is_broker_of``, ``is_operator``) the modules use.
"""

from __future__ import annotations

from consortia import codec
from consortia.execution.context import TxContext
from consortia.execution.state import ChainState
from consortia.modules import ecny, funds, insurance, investors, registry, securities


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
    """The rule under which ``acct`` may read ``wallet`` (``owner``/``operator``/``regulator``);
    a sub-wallet's parent-wallet owner reads it as ``owner`` too."""
    if is_regulator(acct):
        return "regulator"
    if acct.address == wallet.owner:
        return "owner"
    if wallet.parent:
        parent = ctx.get_record(ecny.wallet_key(wallet.parent), ecny.Wallet)
        if parent is not None and acct.address == parent.owner:
            return "owner"
    if ecny.is_operator(ctx, acct, wallet.operator_org):
        return "operator"
    return None


def securities_account_access(
    ctx: TxContext, acct: registry.Account, account_id: str
) -> str | None:
    """The rule under which ``acct`` may read records of securities account ``account_id``: its
    investor's rule (``self``/``broker``); accounts of no investor: the regulator only."""
    if is_regulator(acct):
        return "regulator"
    sa = ctx.get_record(investors.account_key(account_id), investors.SecuritiesAccount)
    if sa is None:
        return None
    return investor_id_access(ctx, acct, sa.investor_id)


def investor_id_access(ctx: TxContext, acct: registry.Account, investor_id: str) -> str | None:
    if is_regulator(acct):
        return "regulator"
    inv = ctx.get_record(investors.investor_key(investor_id), investors.Investor)
    return None if inv is None else investor_access(ctx, acct, inv)


def wallet_id_access(ctx: TxContext, acct: registry.Account, wallet_id: str) -> str | None:
    if is_regulator(acct):
        return "regulator"
    wallet = ctx.get_record(ecny.wallet_key(wallet_id), ecny.Wallet)
    return None if wallet is None else wallet_access(ctx, acct, wallet)


def tx_access(ctx: TxContext, acct: registry.Account, sender: bytes) -> str | None:
    """The rule under which ``acct`` may read a committed transaction of ``sender``
    (``sender``/``org``/``regulator``)."""
    if is_regulator(acct):
        return "regulator"
    if acct.address == sender:
        return "sender"
    owner = ctx.get_record(registry.account_key(sender), registry.Account)
    if owner is not None and owner.org_id and owner.org_id == acct.org_id:
        return "org"
    return None


# Raw state: public market / regulatory / membership data (no signature needed).
PUBLIC_STATE_PREFIXES: tuple[bytes, ...] = (
    b"anchoring/",
    b"consensus/",
    b"chain/",
    b"registry/",
    b"governance/",
    b"supervision/",
    b"securities/security/",
    b"funds/fund/",
    b"funds/nav/",
    b"reports/",
    b"orders/",
    b"insurance/product/",
    b"corporate_actions/dividend/",
    b"corporate_actions/split/",
)
# Raw state of records carrying sealed identities: refused to everyone (use the typed reads).
SEALED_STATE_PREFIXES: tuple[bytes, ...] = (b"ecny/wallet/", b"investors/investor/")


def _owner_rule(ctx: TxContext, acct: registry.Account, key: bytes, value: bytes) -> str | None:
    """Owner rules of the private records that name one securities account, investor or wallet."""
    if key.startswith(b"securities/holding/"):
        holding = codec.decode_struct(securities.Holding, value)
        return securities_account_access(ctx, acct, holding.account_id)
    if key.startswith(b"investors/account/"):
        sa = codec.decode_struct(investors.SecuritiesAccount, value)
        return investor_id_access(ctx, acct, sa.investor_id)
    if key.startswith(b"funds/position/"):
        position = codec.decode_struct(funds.Position, value)
        return securities_account_access(ctx, acct, position.account_id)
    if key.startswith(b"funds/order/"):
        order = codec.decode_struct(funds.Order, value)
        return securities_account_access(ctx, acct, order.account_id)
    if key.startswith(b"insurance/policy/"):
        policy = codec.decode_struct(insurance.Policy, value)
        return investor_id_access(ctx, acct, policy.investor_id)
    if key.startswith(b"ecny/escrow/"):
        escrow = codec.decode_struct(ecny.Escrow, value)
        return wallet_id_access(ctx, acct, escrow.payer) or wallet_id_access(
            ctx, acct, escrow.payee
        )
    return None


def is_public_key(key: bytes) -> bool:
    return key.startswith(PUBLIC_STATE_PREFIXES)


def state_access(
    ctx: TxContext, acct: registry.Account, key: bytes, value: bytes | None
) -> str | None:
    """The rule under which ``acct`` may read raw private state ``key`` (holding ``value``): the
    regulator anything; others the owner rules of ``_owner_rule`` for an existing record."""
    if is_regulator(acct):
        return "regulator"
    if value is None:
        return None
    try:
        return _owner_rule(ctx, acct, key, value)
    except codec.CodecError:
        return None


__all__ = [
    "PUBLIC_STATE_PREFIXES",
    "SEALED_STATE_PREFIXES",
    "investor_access",
    "investor_id_access",
    "is_public_key",
    "is_regulator",
    "load_account",
    "read_context",
    "securities_account_access",
    "state_access",
    "tx_access",
    "wallet_access",
    "wallet_id_access",
]
