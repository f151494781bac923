// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Consortia example token: a plain ERC-20 (EIP-20) in Solidity
/// @notice Written for consortia's issue 8 (smart contracts). The whole supply is minted to the
/// deployer. Choices where EIP-20 leaves room, shared with Token.vy so one test scenario
/// (tests/test_contracts_erc20.py) covers both:
/// - transfers to, and transferFrom from, the zero address revert; so does approve to it;
/// - an allowance of type(uint256).max is unlimited: transferFrom never decreases it;
/// - transferFrom emits Transfer only (no Approval for the decreased allowance);
/// - zero-value transfers are ordinary transfers and emit Transfer (EIP-20 requires it);
/// - every refusal reverts with an Error(string) reason, the same text as Token.vy.
contract Token {
    string public name;
    string public symbol;
    uint8 public immutable decimals;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    constructor(string memory tokenName, string memory tokenSymbol, uint8 tokenDecimals, uint256 supply) {
        name = tokenName;
        symbol = tokenSymbol;
        decimals = tokenDecimals;
        totalSupply = supply;
        balanceOf[msg.sender] = supply;
        emit Transfer(address(0), msg.sender, supply);
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        _move(msg.sender, to, amount);
        return true;
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        require(spender != address(0), "approve to the zero address");
        // EIP-20: a new approval overwrites the old one.
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function transferFrom(address owner, address to, uint256 amount) external returns (bool) {
        require(owner != address(0), "transfer from the zero address");
        uint256 allowed = allowance[owner][msg.sender];
        if (allowed != type(uint256).max) {
            require(allowed >= amount, "insufficient allowance");
            unchecked {
                allowance[owner][msg.sender] = allowed - amount;
            }
        }
        _move(owner, to, amount);
        return true;
    }

    function _move(address from, address to, uint256 amount) private {
        require(to != address(0), "transfer to the zero address");
        uint256 held = balanceOf[from];
        require(held >= amount, "insufficient balance");
        // Debit before credit, each re-read: a transfer to oneself leaves the balance as it was.
        unchecked {
            balanceOf[from] = held - amount;
        }
        // Cannot overflow: every balance is part of the fixed total supply.
        unchecked {
            balanceOf[to] += amount;
        }
        emit Transfer(from, to, amount);
    }
}
