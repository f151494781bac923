# pragma version 0.4.3
"""
@title Bond coupon payer
@notice Pays a bond's coupons in e-CNY to its holders from the issuer's paying wallet.

The issuer funds this contract's own e-CNY wallet (`paying_wallet`, opened by an operator bank
for the contract's address) and registers each holder's securities account with the wallet that
receives its coupons. From each coupon date on, anyone may trigger that period's payment: every
registered account is paid `coupon_fen_per_unit` for each unit of the bond it holds at that
moment (read from the securities precompile), once per period, in registration order. Payments
go through the e-CNY precompile, so every wallet rule applies; if one payment is refused (a
frozen receiving wallet, a balance cap) the whole period reverts and can be retried after the
cause is fixed. The interfaces below are those of ../interfaces/IConsortiaEcny.vyi and
IConsortiaSecurities.vyi (declared inline so the contract compiles as one source).
"""

interface IConsortiaEcny:
    def walletBalance(walletId: String[64]) -> uint256: view
    def payFromWallet(
        fromWallet: String[64], toWallet: String[64], amountFen: uint256, memo: String[200]
    ) -> bool: nonpayable

interface IConsortiaSecurities:
    def holdingOf(code: String[64], account: String[64]) -> (uint256, uint256): view

ECNY: constant(address) = 0x00000000000000000000000000000000000C0002
SECURITIES: constant(address) = 0x00000000000000000000000000000000000C0003
MAX_HOLDERS: constant(uint256) = 64

struct Holder:
    account: String[64]
    wallet: String[64]

event HolderRegistered:
    account: String[64]
    wallet: String[64]

event CouponPaid:
    period: indexed(uint256)
    account: String[64]
    units: uint256
    amount_fen: uint256

event PeriodPaid:
    period: indexed(uint256)
    total_fen: uint256

issuer: public(address)
bond: public(String[64])
paying_wallet: public(String[64])
coupon_fen_per_unit: public(uint256)
first_coupon_at: public(uint256)  # block time, seconds
period_seconds: public(uint256)
periods: public(uint256)
holders: public(DynArray[Holder, MAX_HOLDERS])
paid: public(HashMap[uint256, bool])

@deploy
def __init__(
    bond: String[64],
    paying_wallet: String[64],
    coupon_fen_per_unit: uint256,
    first_coupon_at: uint256,
    period_seconds: uint256,
    periods: uint256,
):
    assert period_seconds > 0 and periods > 0, "bad schedule"
    self.issuer = msg.sender
    self.bond = bond
    self.paying_wallet = paying_wallet
    self.coupon_fen_per_unit = coupon_fen_per_unit
    self.first_coupon_at = first_coupon_at
    self.period_seconds = period_seconds
    self.periods = periods

@external
def register(account: String[64], wallet: String[64]):
    """The issuer registers a holder's securities account and its coupon wallet."""
    assert msg.sender == self.issuer, "only the issuer registers holders"
    for h: Holder in self.holders:
        assert h.account != account, "already registered"
    self.holders.append(Holder(account=account, wallet=wallet))
    log HolderRegistered(account=account, wallet=wallet)

@view
@external
def due_at(period: uint256) -> uint256:
    return self.first_coupon_at + period * self.period_seconds

@external
def pay_coupon(period: uint256) -> uint256:
    """Pay coupon `period` (0-based) to every registered holder; returns the total paid."""
    assert period < self.periods, "no such period"
    assert not self.paid[period], "already paid"
    assert block.timestamp >= self.first_coupon_at + period * self.period_seconds, "not yet due"
    self.paid[period] = True
    total: uint256 = 0
    for h: Holder in self.holders:
        units: uint256 = 0
        free: uint256 = 0
        units, free = staticcall IConsortiaSecurities(SECURITIES).holdingOf(self.bond, h.account)
        amount: uint256 = units * self.coupon_fen_per_unit
        if amount > 0:
            extcall IConsortiaEcny(ECNY).payFromWallet(self.paying_wallet, h.wallet, amount, "coupon")
            total += amount
            log CouponPaid(period=period, account=h.account, units=units, amount_fen=amount)
    log PeriodPaid(period=period, total_fen=total)
    return total
