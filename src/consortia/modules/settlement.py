"""Settlement (JR/T 0317 "settlement management"): standing settlement instructions and delivery
versus payment of securities against e-CNY.

- Standing settlement instructions: the investor owning a securities account (or its broker)
  links the account to the e-CNY wallet that pays for its purchases and receives the cash of its
  sales and its dividends (``link_wallet``). The wallet must be spendable by the investor's own
  registry account (``ecny.may_spend``: its holder, or the holder of its parent wallet), so a
  broker can only name one of the investor's wallets. Linking again replaces the link. Other
  modules read it with ``settlement_wallet`` (``NO_SETTLEMENT_WALLET`` when none).
- Delivery versus payment, BIS model 1 (gross, trade by trade, both legs at once): each side of a
  trade instructs it (``instruct``): the seller's investor or broker with side ``deliver``, the
  buyer's with side ``receive``, naming the same trade id and the same terms (security code,
  seller and buyer accounts, shares in the security's smallest unit, ``price_fen`` = price in fen
  per whole share, i.e. per ``10 ** decimals`` smallest units). The first instruction waits
  (``pending``); the matching one settles the trade in its own transaction: the shares move seller
  → buyer through ``securities.move_shares`` (approval, halt, account freezes, free balance,
  lock-up, suitability) and the cash, ``shares × price_fen / 10 ** decimals`` fen (which must be a
  whole number of fen), moves from the buyer's settlement wallet to the seller's through
  ``ecny.pay_between`` (wallet freezes, funds, per-payment and daily limits, balance caps). Both
  legs run in the one transaction, so if either fails the transaction fails and writes nothing:
  the first instruction stays pending, and the counterparty may instruct again later. A second
  instruction with other terms fails with ``TERMS_MISMATCH``; one for the side already instructed
  with ``INSTRUCTION_EXISTS``. Whoever may instruct a side may cancel its pending instruction
  (``cancel_instruction``); the trade id can then be used again. A settled trade is kept and its
  id is closed (``TRADE_SETTLED``).

  The buyer's instruction is the payment order for the cash leg: it authorizes paying from the
  wallet linked to the buyer's account, which the investor's address must still be able to spend
  when the trade settles.
- A securities account a contract owns (its investor's address is a deployed contract,
  ``investors.is_contract``) is the contract's alone: its broker may not link, instruct or cancel
  for it (``NOT_AUTHORIZED``), as ``securities.transfer`` refuses it.

State keys:

- ``settlement/wallet/<account id>`` → ``SettlementLink``
- ``settlement/trade/<trade id>`` → ``Trade`` (pending or settled)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from consortia.execution.context import TxContext
from consortia.execution.errors import TxFailure
from consortia.execution.module import Method, Module
from consortia.modules.ecny import check_fen, may_spend, pay_between, require_wallet
from consortia.modules.investors import (
    InvalidArgumentError,
    Investor,
    NotAuthorizedError,
    SecuritiesAccount,
    check_id,
    is_broker_of,
    is_contract,
    require_investor,
    require_open_account,
    require_securities_account,
    sender_account,
)
from consortia.modules.securities import MAX_AMOUNT, move_shares, require_approved

NAME = "settlement"

SIDES: frozenset[str] = frozenset({"deliver", "receive"})


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class SettlementLink:
    account_id: str
    wallet_id: str
    linked_by: bytes
    height: int


@dataclass(frozen=True)
class Trade:
    trade_id: str
    code: str
    seller_account: str
    buyer_account: str
    shares: int  # smallest units of the security
    price_fen: int  # per whole share
    amount_fen: int  # the cash leg
    deliver_by: bytes  # sender of the deliver instruction (empty until instructed)
    receive_by: bytes  # sender of the receive instruction (empty until instructed)
    status: str  # pending | settled
    instructed_height: int
    settled_height: int


def link_key(account_id: str) -> bytes:
    return b"settlement/wallet/" + account_id.encode()


def trade_key(trade_id: str) -> bytes:
    return b"settlement/trade/" + trade_id.encode()


# ---------------------------------------------------------------------------------------------
# Failures (stable codes)


class NoSettlementWalletError(TxFailure):
    code = "NO_SETTLEMENT_WALLET"


class WalletNotInvestorsError(TxFailure):
    code = "WALLET_NOT_INVESTORS"


class TermsMismatchError(TxFailure):
    code = "TERMS_MISMATCH"


class InstructionExistsError(TxFailure):
    code = "INSTRUCTION_EXISTS"


class UnknownInstructionError(TxFailure):
    code = "UNKNOWN_INSTRUCTION"


class TradeSettledError(TxFailure):
    code = "TRADE_SETTLED"


# ---------------------------------------------------------------------------------------------
# Reads shared with other modules


def settlement_wallet(ctx: TxContext, account_id: str) -> str:
    """The e-CNY wallet linked to a securities account; ``NO_SETTLEMENT_WALLET`` if none."""
    link = ctx.get_record(link_key(account_id), SettlementLink)
    if link is None:
        raise NoSettlementWalletError(f"securities account {account_id!r} has no settlement wallet")
    return link.wallet_id


def _require_party(ctx: TxContext, acct: SecuritiesAccount, what: str) -> Investor:
    """The sender is the account's investor or a broker account of the account's broker; never
    a broker for an account a contract owns (the contract's own rules decide its moves)."""
    owner = require_investor(ctx, acct.investor_id)
    sender = sender_account(ctx)
    if sender.address == owner.address:
        return owner
    if is_broker_of(ctx, sender, acct.org_id) and is_contract(ctx, owner.address):
        raise NotAuthorizedError(
            f"securities account {acct.account_id!r} is owned by contract "
            f"{owner.address.hex()}: only the contract may act for it, not its broker"
        )
    if not is_broker_of(ctx, sender, acct.org_id):
        raise NotAuthorizedError(
            f"only the owner of {acct.account_id!r} or its broker may {what} for it"
        )
    return owner


def _spendable_by(ctx: TxContext, wallet_id: str, owner: Investor) -> None:
    if not may_spend(ctx, require_wallet(ctx, wallet_id), owner.address):
        raise WalletNotInvestorsError(
            f"wallet {wallet_id!r} is not spendable by investor {owner.investor_id!r}"
        )


# ---------------------------------------------------------------------------------------------
# Standing settlement instructions


@dataclass(frozen=True)
class LinkWalletArgs:
    account_id: str
    wallet_id: str


def link_wallet(ctx: TxContext, args: LinkWalletArgs) -> None:
    """The account's investor (or its broker) names the account's settlement wallet."""
    acct = require_open_account(ctx, args.account_id)
    owner = _require_party(ctx, acct, "link a settlement wallet")
    _spendable_by(ctx, args.wallet_id, owner)
    previous = ctx.get_record(link_key(acct.account_id), SettlementLink)
    ctx.put_record(
        link_key(acct.account_id),
        SettlementLink(acct.account_id, args.wallet_id, ctx.sender, ctx.height),
    )
    ctx.emit(
        NAME,
        "wallet_linked",
        account_id=acct.account_id,
        wallet_id=args.wallet_id,
        previous_wallet_id=previous.wallet_id if previous else "",
    )


# ---------------------------------------------------------------------------------------------
# Delivery versus payment


@dataclass(frozen=True)
class InstructArgs:
    trade_id: str
    side: str  # deliver (the seller's side) | receive (the buyer's side)
    code: str
    seller_account: str
    buyer_account: str
    shares: int
    price_fen: int  # per whole share


def _cash_leg(shares: int, price_fen: int, decimals: int) -> int:
    whole: int = 10**decimals
    if (shares * price_fen) % whole:
        raise InvalidArgumentError(
            f"{shares} units at {price_fen} fen per {whole} units is not a whole number of fen"
        )
    amount = shares * price_fen // whole
    check_fen("cash leg", amount)
    return amount


def instruct(ctx: TxContext, args: InstructArgs) -> None:
    """One side instructs a DvP trade; the matching instruction of the other side settles it."""
    check_id("trade_id", args.trade_id)
    if args.side not in SIDES:
        raise InvalidArgumentError(f"side must be one of {sorted(SIDES)}")
    sec = require_approved(ctx, args.code)
    if args.seller_account == args.buyer_account:
        raise InvalidArgumentError("seller and buyer accounts must differ")
    seller = require_open_account(ctx, args.seller_account)
    buyer = require_open_account(ctx, args.buyer_account)
    own = seller if args.side == "deliver" else buyer
    owner = _require_party(ctx, own, f"instruct side {args.side!r}")
    if not 1 <= args.shares <= MAX_AMOUNT:
        raise InvalidArgumentError(f"shares must be 1..{MAX_AMOUNT}")
    check_fen("price_fen", args.price_fen)
    amount = _cash_leg(args.shares, args.price_fen, sec.decimals)
    wallet_id = settlement_wallet(ctx, own.account_id)
    _spendable_by(ctx, wallet_id, owner)
    # The receiving side pays: its instruction is a payment order, so it must come from someone
    # who may spend the paying wallet (the investor), never from a broker acting alone.
    if args.side == "receive" and not may_spend(ctx, require_wallet(ctx, wallet_id), ctx.sender):
        raise NotAuthorizedError(
            f"the paying instruction must be signed by the holder of wallet {wallet_id!r}"
        )
    by = ctx.sender
    trade = ctx.get_record(trade_key(args.trade_id), Trade)
    if trade is None:
        trade = Trade(
            trade_id=args.trade_id,
            code=sec.code,
            seller_account=seller.account_id,
            buyer_account=buyer.account_id,
            shares=args.shares,
            price_fen=args.price_fen,
            amount_fen=amount,
            deliver_by=by if args.side == "deliver" else b"",
            receive_by=by if args.side == "receive" else b"",
            status="pending",
            instructed_height=ctx.height,
            settled_height=0,
        )
        ctx.put_record(trade_key(trade.trade_id), trade)
        _emit_instructed(ctx, trade, args.side, matched=False)
        return
    if trade.status != "pending":
        raise TradeSettledError(f"trade {trade.trade_id!r} has settled")
    if (args.side == "deliver" and trade.deliver_by) or (
        args.side == "receive" and trade.receive_by
    ):
        raise InstructionExistsError(f"trade {trade.trade_id!r} side {args.side!r} is instructed")
    terms = (sec.code, seller.account_id, buyer.account_id, args.shares, args.price_fen)
    agreed = (trade.code, trade.seller_account, trade.buyer_account, trade.shares, trade.price_fen)
    if terms != agreed:
        raise TermsMismatchError(
            f"trade {trade.trade_id!r} was instructed as {trade.shares} {trade.code} from "
            f"{trade.seller_account} to {trade.buyer_account} at {trade.price_fen} fen"
        )
    if args.side == "deliver":
        trade = replace(trade, deliver_by=by)
    else:
        trade = replace(trade, receive_by=by)
    _emit_instructed(ctx, trade, args.side, matched=True)
    _settle(ctx, trade)


def _emit_instructed(ctx: TxContext, t: Trade, side: str, *, matched: bool) -> None:
    ctx.emit(
        NAME,
        "dvp_instructed",
        trade_id=t.trade_id,
        side=side,
        code=t.code,
        seller_account=t.seller_account,
        buyer_account=t.buyer_account,
        shares=t.shares,
        price_fen=t.price_fen,
        amount_fen=t.amount_fen,
        matched=matched,
    )


def _settle(ctx: TxContext, t: Trade) -> None:
    """Both legs, or (by raising) neither."""
    buyer = require_open_account(ctx, t.buyer_account)
    payer = settlement_wallet(ctx, t.buyer_account)
    payee = settlement_wallet(ctx, t.seller_account)
    _spendable_by(ctx, payer, require_investor(ctx, buyer.investor_id))
    memo = f"DvP {t.trade_id}"
    move_shares(ctx, t.code, t.seller_account, t.buyer_account, t.shares, memo=memo)
    pay_between(ctx, payer, payee, t.amount_fen, purpose="dvp", memo=memo)
    settled = replace(t, status="settled", settled_height=ctx.height)
    ctx.put_record(trade_key(t.trade_id), settled)
    ctx.emit(
        NAME,
        "dvp_settled",
        trade_id=t.trade_id,
        code=t.code,
        seller_account=t.seller_account,
        buyer_account=t.buyer_account,
        shares=t.shares,
        payer_wallet=payer,
        payee_wallet=payee,
        amount_fen=t.amount_fen,
    )


@dataclass(frozen=True)
class CancelInstructionArgs:
    trade_id: str


def cancel_instruction(ctx: TxContext, args: CancelInstructionArgs) -> None:
    """The instructing side (its investor or broker) withdraws its unmatched instruction."""
    trade = ctx.get_record(trade_key(args.trade_id), Trade)
    if trade is None:
        raise UnknownInstructionError(f"no instruction for trade {args.trade_id!r}")
    if trade.status != "pending":
        raise TradeSettledError(f"trade {trade.trade_id!r} has settled")
    side = "deliver" if trade.deliver_by else "receive"
    account = trade.seller_account if side == "deliver" else trade.buyer_account
    _require_party(ctx, require_securities_account(ctx, account), "cancel the instruction")
    ctx.delete(trade_key(trade.trade_id))
    ctx.emit(NAME, "dvp_cancelled", trade_id=trade.trade_id, side=side, account_id=account)


MODULE = Module(
    name=NAME,
    methods={
        "link_wallet": Method(LinkWalletArgs, link_wallet),
        "instruct": Method(InstructArgs, instruct),
        "cancel_instruction": Method(CancelInstructionArgs, cancel_instruction),
    },
)
