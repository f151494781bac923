# pragma version 0.4.3
"""
@title Consortia example token: a plain ERC-20 (EIP-20) in Vyper
@notice Written for consortia's issue 8 (smart contracts). The whole supply is minted to the
        deployer. Choices where EIP-20 leaves room, shared with Token.sol so one test scenario
        (tests/test_contracts_erc20.py) covers both:
        - transfers to, and transferFrom from, the zero address revert; so does approve to it;
        - an allowance of max_value(uint256) is unlimited: transferFrom never decreases it;
        - transferFrom emits Transfer only (no Approval for the decreased allowance);
        - zero-value transfers are ordinary transfers and emit Transfer (EIP-20 requires it);
        - every refusal reverts with an Error(string) reason, the same text as Token.sol.
"""

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256

name: public(String[64])
symbol: public(String[32])
decimals: public(uint8)
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])


@deploy
def __init__(token_name: String[64], token_symbol: String[32], token_decimals: uint8, supply: uint256):
    self.name = token_name
    self.symbol = token_symbol
    self.decimals = token_decimals
    self.totalSupply = supply
    self.balanceOf[msg.sender] = supply
    log Transfer(sender=empty(address), receiver=msg.sender, value=supply)


@internal
def _move(source: address, target: address, amount: uint256):
    assert target != empty(address), "transfer to the zero address"
    held: uint256 = self.balanceOf[source]
    assert held >= amount, "insufficient balance"
    # Debit before credit, each re-read: a transfer to oneself leaves the balance as it was.
    self.balanceOf[source] = held - amount
    self.balanceOf[target] += amount
    log Transfer(sender=source, receiver=target, value=amount)


@external
def transfer(receiver: address, amount: uint256) -> bool:
    self._move(msg.sender, receiver, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    assert spender != empty(address), "approve to the zero address"
    # EIP-20: a new approval overwrites the old one.
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def transferFrom(owner: address, receiver: address, amount: uint256) -> bool:
    assert owner != empty(address), "transfer from the zero address"
    allowed: uint256 = self.allowance[owner][msg.sender]
    if allowed != max_value(uint256):
        assert allowed >= amount, "insufficient allowance"
        self.allowance[owner][msg.sender] = allowed - amount
    self._move(owner, receiver, amount)
    return True
