"""The proposal wire type: a proposer's signed claim "at (height, round) I propose this block".

Votes and commit certificates live in ``consortia.ledger.types`` because blocks carry them; a
proposal is only ever gossiped, so it lives with consensus. It is signed with purpose
``"proposal"``, so a proposal signature never verifies as a vote (``"vote"``) or a transaction
(``"tx"``) and vice versa.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from consortia import codec
from consortia.crypto import KeyPair, Suite
from consortia.ledger.types import ADDRESS_LEN, HASH_LEN, WireFormatError

PURPOSE_PROPOSAL = "proposal"
NO_POL_ROUND = -1  # the proposal carries no proof-of-lock round (a fresh value)
MAX_PROPOSAL_BYTES = 1024
_MAX_UINT63 = (1 << 63) - 1


@dataclass(frozen=True)
class SignedProposal:
    """``proposer`` proposes the block ``block_hash`` for ``height``/``round``.

    ``pol_round`` is the round of the polka (2f+1 prevotes) that made the block the proposer's
    valid value, or ``NO_POL_ROUND`` (-1; CBOR integers may be negative) for a fresh block. The
    block itself travels beside the proposal; receivers check that it hashes to ``block_hash``.
    """

    chain_id: str
    height: int
    round: int
    block_hash: bytes
    pol_round: int
    proposer: bytes
    signature: bytes

    def __post_init__(self) -> None:
        if not self.chain_id or len(self.chain_id) > 64 or not self.chain_id.isascii():
            raise WireFormatError("chain_id must be 1..64 ASCII characters")
        if not 1 <= self.height <= _MAX_UINT63:
            raise WireFormatError(
                f"proposal height must be a positive 63-bit integer: {self.height}"
            )
        if not 0 <= self.round <= _MAX_UINT63:
            raise WireFormatError(f"proposal round must be a 63-bit integer: {self.round}")
        if not NO_POL_ROUND <= self.pol_round < self.round:
            raise WireFormatError(
                f"pol_round must be -1 or an earlier round than {self.round}: {self.pol_round}"
            )
        if len(self.block_hash) != HASH_LEN:
            raise WireFormatError(f"block_hash must be {HASH_LEN} bytes")
        if len(self.proposer) != ADDRESS_LEN:
            raise WireFormatError(f"proposer must be a {ADDRESS_LEN}-byte address")
        if len(self.signature) > 128:
            raise WireFormatError("signature longer than 128 bytes")

    def signing_bytes(self) -> bytes:
        """The canonical proposal without its signature: what the proposer signs."""
        body = codec.to_cbor(self)
        del body["signature"]
        return codec.encode(body)

    def encode(self) -> bytes:
        return codec.encode_struct(self)


def sign_proposal(
    suite: Suite,
    keypair: KeyPair,
    *,
    chain_id: str,
    height: int,
    round: int,
    block_hash: bytes,
    pol_round: int = NO_POL_ROUND,
) -> SignedProposal:
    """Build and sign a proposal with ``keypair`` (the proposer is the key's address)."""
    unsigned = SignedProposal(
        chain_id=chain_id,
        height=height,
        round=round,
        block_hash=block_hash,
        pol_round=pol_round,
        proposer=suite.address(keypair.public_key),
        signature=b"",
    )
    sig = suite.sign(keypair, chain_id, PURPOSE_PROPOSAL, unsigned.signing_bytes())
    return replace(unsigned, signature=sig)


def verify_proposal_signature(suite: Suite, proposal: SignedProposal, public_key: bytes) -> bool:
    """True iff ``proposal.signature`` is ``public_key``'s proposal signature on this chain."""
    return suite.verify(
        public_key,
        proposal.chain_id,
        PURPOSE_PROPOSAL,
        proposal.signing_bytes(),
        proposal.signature,
    )


def decode_proposal(data: bytes) -> SignedProposal:
    """Strictly decode a proposal (canonical bytes, known fields, shape checks)."""
    return codec.decode_struct(SignedProposal, data, max_size=MAX_PROPOSAL_BYTES, max_depth=4)
