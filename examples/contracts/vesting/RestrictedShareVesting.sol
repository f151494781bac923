// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.4;

import "../interfaces/IConsortia.sol";

/// Restricted shares granted to an employee, vesting over time.
///
/// The granted shares sit in a securities account this contract owns (`vestingAccount`, opened
/// by a broker for the contract's address, into which the issuer issues or transfers the grant).
/// Nothing vests before the cliff; from the cliff on, the grant vests linearly until the end of
/// the vesting period. The beneficiary releases what has vested into their own securities account
/// through the securities precompile, so every transfer rule applies: a judicial freeze of the
/// vesting account, a lock-up, a trading halt or an unsuitable receiving account refuses the
/// release, and the release then changes nothing.
contract RestrictedShareVesting {
    address public immutable beneficiary;
    uint256 public immutable totalShares;
    uint256 public immutable start; // block time, seconds
    uint256 public immutable cliff; // seconds after start
    uint256 public immutable duration; // seconds after start; everything has vested then
    string public code;
    string public vestingAccount;
    string public beneficiaryAccount;
    uint256 public released;

    event Released(uint256 shares, uint256 totalReleased);

    constructor(
        address beneficiary_,
        string memory code_,
        string memory vestingAccount_,
        string memory beneficiaryAccount_,
        uint256 totalShares_,
        uint256 start_,
        uint256 cliff_,
        uint256 duration_
    ) {
        require(cliff_ <= duration_ && duration_ > 0, "bad schedule");
        beneficiary = beneficiary_;
        code = code_;
        vestingAccount = vestingAccount_;
        beneficiaryAccount = beneficiaryAccount_;
        totalShares = totalShares_;
        start = start_;
        cliff = cliff_;
        duration = duration_;
    }

    /// Shares vested at block time `t` (seconds).
    function vestedAt(uint256 t) public view returns (uint256) {
        if (t < start + cliff) return 0;
        if (t >= start + duration) return totalShares;
        return (totalShares * (t - start)) / duration;
    }

    function releasable() public view returns (uint256) {
        return vestedAt(block.timestamp) - released;
    }

    /// The beneficiary moves every vested, unreleased share to their own account.
    function release() external returns (uint256 shares) {
        require(msg.sender == beneficiary, "only the beneficiary releases");
        shares = releasable();
        require(shares > 0, "nothing has vested");
        released += shares;
        CONSORTIA_SECURITIES.transferShares(code, vestingAccount, beneficiaryAccount, shares);
        emit Released(shares, released);
    }
}
