"""A light client: follow another chain's headers, trusting only its genesis and its certificates.

The supervision chain keeps one per business chain (``anchoring``) and each business chain keeps
one of the supervision chain (``supervision``); the offline evidence verifier uses the same checks.

A ``TrustedHead`` is what a light client believes: the last verified header of a chain and the
validator set that must certify the next one. ``advance`` accepts exactly the next header, with
a commit certificate by that set, and learns the following set from the header's
``next_validator_set_hash`` — a changed set must be supplied in full and match the hash the
certified header committed to. So the trusted set changes only through certified headers.
``verify_certified`` checks a header at a later height against a known set without following
every header (the evidence verifier's case: the bundle carries every set change).
"""

from __future__ import annotations

from dataclasses import dataclass

from consortia.crypto import Suite
from consortia.ledger.types import (
    CertificateError,
    CommitCertificate,
    Header,
    ValidatorSet,
    verify_commit,
)

ZERO_HASH = bytes(32)


class LightClientError(ValueError):
    """A header the light client must not accept; subclasses name the check that failed."""

    code = "LIGHT_CLIENT_REJECTED"


class WrongChainError(LightClientError):
    code = "WRONG_CHAIN"


class OutOfOrderError(LightClientError):
    code = "OUT_OF_ORDER"


class BrokenLinkError(LightClientError):
    code = "BROKEN_LINK"


class ValidatorSetMismatchError(LightClientError):
    code = "VALIDATOR_SET_MISMATCH"


class BadCertificateError(LightClientError):
    code = "BAD_CERTIFICATE"


@dataclass(frozen=True)
class TrustedHead:
    chain_id: str
    height: int  # 0 = genesis
    block_hash: bytes  # of header ``height`` (the genesis hash at 0)
    time_ms: int
    state_root: bytes  # of header ``height`` (zeros at genesis)
    next_validators: ValidatorSet  # the set that must certify ``height + 1``


@dataclass(frozen=True)
class CertifiedHeader:
    """A header, the certificate that committed it, and — only when the header announces a
    different set for the next height — that set in full."""

    header: Header
    certificate: CommitCertificate
    next_validators: ValidatorSet | None


def trust_genesis(
    chain_id: str, genesis_hash: bytes, genesis_time_ms: int, validators: ValidatorSet
) -> TrustedHead:
    """The light client's starting point: what the chain's genesis file says."""
    return TrustedHead(chain_id, 0, genesis_hash, genesis_time_ms, ZERO_HASH, validators)


def _check_certificate(
    suite: Suite, validators: ValidatorSet, item: CertifiedHeader, block_hash: bytes
) -> None:
    h = item.header
    try:
        verify_commit(
            suite,
            validators,
            item.certificate,
            chain_id=h.chain_id,
            height=h.height,
            block_hash=block_hash,
        )
    except CertificateError as exc:
        raise BadCertificateError(f"{h.chain_id}@{h.height}: {exc}") from exc


def _next_set(suite: Suite, signing: ValidatorSet, item: CertifiedHeader) -> ValidatorSet:
    announced = item.header.next_validator_set_hash
    if announced == signing.hash(suite):
        if item.next_validators is not None and item.next_validators != signing:
            raise ValidatorSetMismatchError("a next validator set was supplied but none changed")
        return signing
    if item.next_validators is None:
        raise ValidatorSetMismatchError(
            f"header {item.header.height} announces a new validator set; supply it"
        )
    if item.next_validators.hash(suite) != announced:
        raise ValidatorSetMismatchError(
            f"the supplied next validator set does not match header {item.header.height}"
        )
    return item.next_validators


def advance(suite: Suite, trusted: TrustedHead, item: CertifiedHeader) -> TrustedHead:
    """Accept the next header of the trusted chain, or raise a ``LightClientError``.

    Guarantees on return: the header has the trusted chain id, height + 1 and links to the
    trusted block; it names the trusted next set, which certified it with more than 2/3 of its
    power; the returned head's next set is the one that header committed to.
    """
    h = item.header
    if h.chain_id != trusted.chain_id:
        raise WrongChainError(
            f"header of {h.chain_id!r}, this light client follows {trusted.chain_id!r}"
        )
    if h.height != trusted.height + 1:
        raise OutOfOrderError(f"header {h.height} does not follow {trusted.height}")
    if h.parent_hash != trusted.block_hash:
        raise BrokenLinkError(
            f"header {h.height} does not link to the trusted block {trusted.height}"
        )
    if h.validator_set_hash != trusted.next_validators.hash(suite):
        raise ValidatorSetMismatchError(
            f"header {h.height} names a validator set other than the trusted one"
        )
    if h.time_ms < trusted.time_ms:
        raise OutOfOrderError(f"header {h.height} goes back in time")
    block_hash = h.hash(suite)
    _check_certificate(suite, trusted.next_validators, item, block_hash)
    return TrustedHead(
        chain_id=h.chain_id,
        height=h.height,
        block_hash=block_hash,
        time_ms=h.time_ms,
        state_root=h.state_root,
        next_validators=_next_set(suite, trusted.next_validators, item),
    )


def verify_certified(
    suite: Suite, chain_id: str, validators: ValidatorSet, item: CertifiedHeader
) -> bytes:
    """Check that ``validators`` certified ``item.header`` of ``chain_id``; returns its hash.

    Used where the caller knows from elsewhere (a validator-set history, an anchor) which set
    was in force at that height; does not check linkage to earlier headers.
    """
    h = item.header
    if h.chain_id != chain_id:
        raise WrongChainError(f"header of {h.chain_id!r}, expected {chain_id!r}")
    if h.validator_set_hash != validators.hash(suite):
        raise ValidatorSetMismatchError(
            f"header {h.height} names a validator set other than the one in force"
        )
    block_hash = h.hash(suite)
    _check_certificate(suite, validators, item, block_hash)
    return block_hash


def next_validators_of(
    suite: Suite, validators: ValidatorSet, item: CertifiedHeader
) -> ValidatorSet:
    """The set that certifies the height after ``item`` (``validators`` certified ``item``)."""
    return _next_set(suite, validators, item)
