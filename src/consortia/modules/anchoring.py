"""The anchoring module of the supervision chain: a light client per registered business chain.

(Records and keys below are the contract the relayer and the evidence bundles rely on; the
methods are being written.)

State keys:

- ``anchoring/chain/<chain id>`` → ``AnchoredChain`` (the light client: what it trusts now)
- ``anchoring/header/<chain id>/<height, 8 bytes big-endian>`` → ``Anchor`` (every anchored
  business header, in order, no gaps)
- ``anchoring/vset/<chain id>/<first height, 8 bytes big-endian>`` → ``ValidatorSet`` (the
  business chain's validator-set history: the set that certifies heights from that one on)
"""

from __future__ import annotations

from dataclasses import dataclass

from consortia.ledger.types import ValidatorSet

NAME = "anchoring"


@dataclass(frozen=True)
class AnchoredChain:
    """A registered business chain and its light client's trusted head."""

    chain_id: str
    suite: str  # the business chain's crypto suite (may differ from the supervision chain's)
    genesis_hash: bytes
    genesis_time_ms: int
    height: int  # last anchored height (0 = only genesis)
    block_hash: bytes  # of ``height`` (the genesis hash at 0)
    time_ms: int
    state_root: bytes
    next_validators: ValidatorSet  # the set that must certify ``height + 1``
    registered_height: int  # supervision height of the registration
    registered_by: bytes


@dataclass(frozen=True)
class Anchor:
    """One business header accepted by the light client (the parts evidence needs)."""

    chain_id: str
    height: int
    block_hash: bytes
    time_ms: int
    state_root: bytes
    transactions_root: bytes
    receipts_root: bytes
    anchored_height: int  # the supervision height whose block anchored it


def chain_key(chain_id: str) -> bytes:
    return b"anchoring/chain/" + chain_id.encode()


def anchor_key(chain_id: str, height: int) -> bytes:
    return b"anchoring/header/" + chain_id.encode() + b"/" + height.to_bytes(8, "big")


def vset_key(chain_id: str, first_height: int) -> bytes:
    return b"anchoring/vset/" + chain_id.encode() + b"/" + first_height.to_bytes(8, "big")
