"""The chain state between blocks: the authenticated tree plus what validating the next block needs.

``ChainState`` is immutable. ``apply_block`` returns a new one and leaves the old one usable, so a
node can execute a proposal speculatively and throw the result away.
"""

from __future__ import annotations

from dataclasses import dataclass

from consortia.crypto import Suite, get_suite
from consortia.ledger.state_tree import StateTree
from consortia.ledger.types import ValidatorSet

# Validator sets live in the state tree, so they are covered by the state root and provable:
# the set that signed the last block, the set for the next block, the set for the one after,
# and (only within a block) a governance change that will take effect two heights later.
VSET_LAST = b"consensus/vset/last"
VSET_CURRENT = b"consensus/vset/current"
VSET_NEXT = b"consensus/vset/next"
VSET_PENDING = b"consensus/vset/pending"

# The history of validator sets, kept for light clients and evidence: the set that validates
# heights from ``first_height`` on (written at genesis for height 1, and by every change).
VSET_HISTORY_PREFIX = b"consensus/vset/from/"


def vset_history_key(first_height: int) -> bytes:
    return VSET_HISTORY_PREFIX + first_height.to_bytes(8, "big")


# A validator-set change decided in block H takes effect at height H + VALIDATOR_CHANGE_OFFSET.
VALIDATOR_CHANGE_OFFSET = 2


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
