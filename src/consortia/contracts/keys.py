"""Where contract data lives in the authenticated state tree, and how EVM addresses are formed.

Every piece of contract state is an ordinary key of consortia's state tree, so the state root in
each header commits to it and a membership proof (``StateTree.prove``) covers it like a holding:

- ``evm/account/<addr>`` → ``ContractAccount`` (deterministic CBOR): the contract's nonce (used by
  its own CREATE) and the Keccak-256 hash of its code. Present for every contract, absent for
  everything else. There is no balance: contract accounts hold no ether, ever (value is refused).
- ``evm/code/<addr>`` → the contract's runtime bytecode.
- ``evm/storage/<addr><slot>`` → a storage word, ``slot`` being the 32-byte big-endian slot number
  and the value the 32-byte big-endian word. A zero word is never stored (the key is deleted), so
  a missing key reads as zero, as in the EVM.

``<addr>`` is the raw 20-byte EVM address.

Addresses. A consortia account address is already 20 bytes (``Suite.address``), and the EVM uses
it as it is: ``msg.sender`` of a transaction is the sender's consortia address. A contract created
by a transaction gets Ethereum's CREATE address, ``keccak256(rlp([sender, nonce]))[12:]`` with the
sender's transaction nonce, so a client can predict it before sending; a contract created by a
contract uses that contract's own ``evm/account`` nonce the same way (CREATE2 as in Ethereum).
"""

from __future__ import annotations

from dataclasses import dataclass

from eth._utils.address import generate_contract_address
from eth.constants import EMPTY_SHA3

ADDRESS_SIZE = 20
WORD_SIZE = 32

ACCOUNT_PREFIX = b"evm/account/"
CODE_PREFIX = b"evm/code/"
STORAGE_PREFIX = b"evm/storage/"

EMPTY_CODE_HASH: bytes = bytes(EMPTY_SHA3)
"""Keccak-256 of the empty string: the code hash of an address without code."""


@dataclass(frozen=True)
class ContractAccount:
    """The record of one contract account (``evm/account/<addr>``)."""

    nonce: int
    code_hash: bytes


def _check_address(address: bytes) -> None:
    if len(address) != ADDRESS_SIZE:
        raise ValueError(f"an EVM address is {ADDRESS_SIZE} bytes, got {len(address)}")


def account_key(address: bytes) -> bytes:
    _check_address(address)
    return ACCOUNT_PREFIX + address


def code_key(address: bytes) -> bytes:
    _check_address(address)
    return CODE_PREFIX + address


def storage_key(address: bytes, slot: int) -> bytes:
    """The state key of storage ``slot`` (0 ≤ slot < 2**256) of contract ``address``."""
    _check_address(address)
    return STORAGE_PREFIX + address + slot.to_bytes(WORD_SIZE, "big")


def storage_prefix(address: bytes) -> bytes:
    _check_address(address)
    return STORAGE_PREFIX + address


def create_address(sender: bytes, nonce: int) -> bytes:
    """The address a CREATE by ``sender`` at ``nonce`` deploys to (Ethereum's rule)."""
    _check_address(sender)
    if nonce < 0:
        raise ValueError("a nonce is not negative")
    return bytes(generate_contract_address(sender, nonce))  # type: ignore[arg-type]
