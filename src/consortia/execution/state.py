"""The chain state between blocks: the authenticated tree plus what validating the next block needs.

``ChainState`` is immutable. ``apply_block`` returns a new one and leaves the old one usable, so a
node can execute a proposal speculatively and throw the result away.
"""

from __future__ import annotations

from dataclasses import dataclass

from consortia.crypto import Suite, get_suite
from consortia.ledger.state_tree import StateTree
from consortia.ledger.types import ValidatorSet


def validators_key() -> bytes:
    """State key of the current validator set (provable like any other state)."""
    return b"consensus/validators"


@dataclass(frozen=True)
class ChainState:
    suite_name: str
    chain_id: str
    height: int  # height of the last applied block (0 = genesis)
    last_block_hash: bytes  # genesis hash at height 0
    last_time_ms: int
    tree: StateTree
    last_validators: ValidatorSet  # signed the certificate of block ``height``
    validators: ValidatorSet  # validate block ``height + 1``
    next_validators: ValidatorSet  # validate block ``height + 2``

    @property
    def suite(self) -> Suite:
        return get_suite(self.suite_name)

    @property
    def state_root(self) -> bytes:
        return self.tree.root
