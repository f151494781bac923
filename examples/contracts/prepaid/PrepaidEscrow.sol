// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.4;

import "../interfaces/IConsortia.sol";

/// Prepaid-funds protection for a merchant that sells prepaid cards (a gym, a training school).
///
/// What consumers prepay never sits in the merchant's own wallet: it is paid into this contract's
/// e-CNY wallet (`escrowWallet`, opened by an operator bank for the contract's address), and it
/// reaches the merchant only as each card holder confirms a service used. If the regulator
/// declares that the merchant stopped serving, or the cards expire, every holder takes the unused
/// balance back to a wallet of their own. All money moves through the e-CNY precompile, so every
/// wallet rule (limits, caps, freezes) applies, and a refused payment reverts the whole call.
contract PrepaidEscrow {
    struct Card {
        address holder; // the card holder's registry account
        string refundWallet; // where an unused balance goes back
        uint256 balanceFen; // unused prepaid balance
    }

    address public immutable merchant;
    uint256 public immutable expiresAt; // block time (seconds) after which cards are refundable
    string public escrowWallet;
    string public merchantWallet;
    bool public merchantDefaulted;
    uint256 public outstandingFen; // sum of every card's unused balance

    mapping(string => Card) private cards;

    event CardIssued(string cardId, address indexed holder, uint256 amountFen);
    event Released(string cardId, uint256 amountFen, uint256 balanceFen);
    event Refunded(string cardId, uint256 amountFen);
    event MerchantDefaulted(address indexed regulator);

    constructor(
        address merchant_,
        string memory escrowWallet_,
        string memory merchantWallet_,
        uint256 expiresAt_
    ) {
        merchant = merchant_;
        escrowWallet = escrowWallet_;
        merchantWallet = merchantWallet_;
        expiresAt = expiresAt_;
    }

    /// The merchant records a card sold for `amountFen`, which the buyer has already paid into
    /// the escrow wallet: the wallet must hold it on top of every card still outstanding.
    function issueCard(
        string calldata cardId,
        address holder,
        string calldata refundWallet,
        uint256 amountFen
    ) external {
        require(msg.sender == merchant, "only the merchant issues cards");
        require(!merchantDefaulted && block.timestamp < expiresAt, "the programme is closed");
        require(amountFen > 0, "a card holds a positive amount");
        require(cards[cardId].holder == address(0), "the card exists");
        require(
            CONSORTIA_ECNY.walletBalance(escrowWallet) >= outstandingFen + amountFen,
            "the prepaid funds are not in escrow"
        );
        cards[cardId] = Card(holder, refundWallet, amountFen);
        outstandingFen += amountFen;
        emit CardIssued(cardId, holder, amountFen);
    }

    /// The card holder confirms a service used worth `amountFen`: that much of the escrow is
    /// released to the merchant.
    function release(string calldata cardId, uint256 amountFen) external {
        Card storage card = cards[cardId];
        require(msg.sender == card.holder, "only the card holder confirms");
        require(!merchantDefaulted && block.timestamp < expiresAt, "the programme is closed");
        require(amountFen > 0 && amountFen <= card.balanceFen, "beyond the card's balance");
        card.balanceFen -= amountFen;
        outstandingFen -= amountFen;
        CONSORTIA_ECNY.payFromWallet(escrowWallet, merchantWallet, amountFen, cardId);
        emit Released(cardId, amountFen, card.balanceFen);
    }

    /// The regulator declares that the merchant stopped serving: every card becomes refundable.
    function declareDefault() external {
        require(CONSORTIA_REGISTRY.hasRole(msg.sender, "regulator"), "only the regulator");
        merchantDefaulted = true;
        emit MerchantDefaulted(msg.sender);
    }

    /// After a default or the expiry, the holder takes the card's unused balance back.
    function refund(string calldata cardId) external {
        Card storage card = cards[cardId];
        require(msg.sender == card.holder, "only the card holder takes a refund");
        require(merchantDefaulted || block.timestamp >= expiresAt, "the card is still in use");
        uint256 amountFen = card.balanceFen;
        require(amountFen > 0, "nothing to refund");
        card.balanceFen = 0;
        outstandingFen -= amountFen;
        CONSORTIA_ECNY.payFromWallet(escrowWallet, card.refundWallet, amountFen, cardId);
        emit Refunded(cardId, amountFen);
    }

    function cardOf(string calldata cardId)
        external
        view
        returns (address holder, uint256 balanceFen)
    {
        Card storage card = cards[cardId];
        return (card.holder, card.balanceFen);
    }
}
