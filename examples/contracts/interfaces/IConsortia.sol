// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.4;

// consortia's native modules as precompiles (docs/contracts.md, "Precompiles").
//
// A contract acts only for itself: it spends from e-CNY wallets whose owner is the contract's
// address and moves shares out of securities accounts whose investor is the contract. Every rule
// of the native module applies exactly as to a direct transaction (wallet limits and freezes,
// account freezes, lock-ups, suitability, halts); a rule that fails reverts the call with
// NativeCallFailed(code, message), `code` being the module's stable code (for example
// "PER_PAYMENT_LIMIT_EXCEEDED", "ACCOUNT_FROZEN"). Not caught, it reverts the whole transaction,
// whose receipt then carries that code. The state-changing functions return true (a failure
// reverts); the precompiles refuse DELEGATECALL and CALLCODE.

error NativeCallFailed(string code, string message);

interface IConsortiaRegistry {
    /// Whether the registry account `account` holds `role` (false for an unknown account).
    function hasRole(address account, string calldata role) external view returns (bool);
}

interface IConsortiaEcny {
    /// The balance in fen of an e-CNY wallet (reverts UNKNOWN_WALLET).
    function walletBalance(string calldata walletId) external view returns (uint256);

    /// Pay from a wallet this contract owns, under every wallet rule (ecny.pay).
    function payFromWallet(
        string calldata fromWallet,
        string calldata toWallet,
        uint256 amountFen,
        string calldata memo
    ) external returns (bool);

    /// Lock e-CNY from a wallet this contract owns in a conditional payment (ecny.create_escrow);
    /// `condition` is "date", "payer" or "third_party"; `confirmer` is the zero address unless
    /// the condition is "third_party".
    function createEscrow(
        string calldata escrowId,
        string calldata fromWallet,
        string calldata toWallet,
        uint256 amountFen,
        string calldata condition,
        uint256 releaseAtMs,
        address confirmer,
        uint256 expiresAtMs,
        string calldata memo
    ) external returns (bool);

    /// Release an escrow (ecny.release_escrow; this contract as the payer or the confirmer).
    function releaseEscrow(string calldata escrowId) external returns (bool);

    /// Take back an expired escrow this contract paid (ecny.refund_escrow).
    function refundEscrow(string calldata escrowId) external returns (bool);
}

interface IConsortiaSecurities {
    /// A securities account's holding of `code`: its balance and its free part (not pledged,
    /// frozen or locked up). Reverts UNKNOWN_SECURITY.
    function holdingOf(string calldata code, string calldata account)
        external
        view
        returns (uint256 balance, uint256 free);

    /// Move free shares out of a securities account this contract owns (securities transfer
    /// rules: halts, freezes, free balance, lock-up, the receiver's suitability).
    function transferShares(
        string calldata code,
        string calldata fromAccount,
        string calldata toAccount,
        uint256 shares
    ) external returns (bool);
}

IConsortiaRegistry constant CONSORTIA_REGISTRY =
    IConsortiaRegistry(0x00000000000000000000000000000000000C0001);
IConsortiaEcny constant CONSORTIA_ECNY = IConsortiaEcny(0x00000000000000000000000000000000000C0002);
IConsortiaSecurities constant CONSORTIA_SECURITIES =
    IConsortiaSecurities(0x00000000000000000000000000000000000C0003);
