"""Wire types of a chain: transactions, headers, blocks, receipts, votes and commit certificates.

Every type is a frozen dataclass whose canonical bytes are ``codec.encode_struct(value)``; hashes
and signatures always cover those bytes. ``decode_*`` helpers decode strictly (canonical bytes, no
unknown fields, right types, size limits) and check lengths in ``__post_init__``, so a value that
exists has the right shape.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from consortia import codec
from consortia.crypto import KeyPair, Suite

HASH_LEN = 32
ADDRESS_LEN = 20
ZERO_HASH = bytes(HASH_LEN)

MAX_TX_BYTES = 64 * 1024
MAX_BLOCK_BYTES = 4 * 1024 * 1024
MAX_TXS_PER_BLOCK = 5_000
MAX_NAME_LEN = 64  # module, method, chain id
MAX_EVIDENCE_PER_BLOCK = 16

# Signature purposes: a signature made for one purpose never verifies for another.
PURPOSE_TX = "tx"
PURPOSE_VOTE = "vote"


class WireFormatError(ValueError):
    """A wire value has the wrong shape (lengths, ranges, names)."""


def _check_hash(name: str, value: bytes, *, allow_empty: bool = False) -> None:
    if allow_empty and value == b"":
        return
    if len(value) != HASH_LEN:
        raise WireFormatError(f"{name} must be {HASH_LEN} bytes, got {len(value)}")


def _check_address(name: str, value: bytes) -> None:
    if len(value) != ADDRESS_LEN:
        raise WireFormatError(f"{name} must be a {ADDRESS_LEN}-byte address, got {len(value)}")


def _check_name(name: str, value: str) -> None:
    if not value or len(value) > MAX_NAME_LEN or not value.isascii() or not value.isprintable():
        raise WireFormatError(f"{name} must be 1..{MAX_NAME_LEN} printable ASCII characters")


def _check_uint(name: str, value: int) -> None:
    if value < 0 or value >= 1 << 63:
        raise WireFormatError(f"{name} must be a non-negative 63-bit integer, got {value}")


# ---------------------------------------------------------------------------------------------
# Transactions


@dataclass(frozen=True)
class Transaction:
    """A signed request by ``sender`` to run ``module.method(args)`` on chain ``chain_id``.

    ``nonce`` is the sender's sequence number (0, 1, 2, ...); the signature is by the sender's
    registered key over ``signing_bytes()`` with purpose ``"tx"`` and this chain id.
    """

    chain_id: str
    sender: bytes
    nonce: int
    module: str
    method: str
    args: dict[str, Any]
    signature: bytes

    def __post_init__(self) -> None:
        _check_name("chain_id", self.chain_id)
        _check_address("sender", self.sender)
        _check_uint("nonce", self.nonce)
        _check_name("module", self.module)
        _check_name("method", self.method)
        if len(self.signature) > 128:
            raise WireFormatError("signature longer than 128 bytes")

    # Encodings are memoized on the (immutable) instance: a transaction is encoded for its id,
    # its signature check, the transactions root and the store, and should be encoded once.
    @cached_property
    def _signing_bytes(self) -> bytes:
        body = codec.fields_to_cbor(self)
        del body["signature"]
        return codec.encode(body)

    @cached_property
    def _encoding(self) -> bytes:
        return codec.encode_struct(self)

    def signing_bytes(self) -> bytes:
        """The bytes the signature covers: the canonical transaction without its signature."""
        return self._signing_bytes

    def encode(self) -> bytes:
        return self._encoding

    def cbor_encoding(self) -> bytes:
        """Used by the codec when a block (or anything else) includes this transaction."""
        return self._encoding

    def hash(self, suite: Suite) -> bytes:
        """Transaction id: the suite hash of the full canonical encoding (signature included)."""
        return suite.hash(self._encoding)


def sign_transaction(
    suite: Suite,
    keypair: KeyPair,
    *,
    chain_id: str,
    nonce: int,
    module: str,
    method: str,
    args: dict[str, Any],
    sender: bytes | None = None,
) -> Transaction:
    """Build and sign a transaction with ``keypair``.

    ``sender`` defaults to the key's own address; pass it for an account whose key was rotated
    (the address stays that of the account's first key).
    """
    unsigned = Transaction(
        chain_id=chain_id,
        sender=sender if sender is not None else suite.address(keypair.public_key),
        nonce=nonce,
        module=module,
        method=method,
        args=args,
        signature=b"",
    )
    sig = suite.sign(keypair, chain_id, PURPOSE_TX, unsigned.signing_bytes())
    return replace(unsigned, signature=sig)


def verify_transaction_signature(suite: Suite, tx: Transaction, public_key: bytes) -> bool:
    """True iff ``tx.signature`` is ``public_key``'s signature of this tx on this chain."""
    return suite.verify(public_key, tx.chain_id, PURPOSE_TX, tx.signing_bytes(), tx.signature)


def decode_transaction(data: bytes) -> Transaction:
    """Strictly decode a transaction (canonical bytes, size limit, known fields only)."""
    return codec.decode_struct(Transaction, data, max_size=MAX_TX_BYTES, max_depth=16)


# ---------------------------------------------------------------------------------------------
# Receipts and events


class TxStatus(enum.IntEnum):
    OK = 0
    FAILED = 1


@dataclass(frozen=True)
class Event:
    """Something a module reports happened (for subscribers, indexes and the regulator)."""

    module: str
    kind: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class Receipt:
    """The outcome of one transaction: status, stable error code ("" when OK), message, events."""

    tx_hash: bytes
    status: TxStatus
    code: str
    message: str
    events: tuple[Event, ...]

    def __post_init__(self) -> None:
        _check_hash("tx_hash", self.tx_hash)

    # Encoded once: for the receipts root, the stored receipt list and the executor's check
    # that the receipt is representable at all.
    @cached_property
    def _encoding(self) -> bytes:
        return codec.encode_struct(self)

    def encode(self) -> bytes:
        return self._encoding

    def cbor_encoding(self) -> bytes:
        """Used by the codec when a receipt list includes this receipt."""
        return self._encoding


@dataclass(frozen=True)
class ReceiptList:
    """All receipts of one block, in transaction order (the unit stored per height)."""

    receipts: tuple[Receipt, ...]


# ---------------------------------------------------------------------------------------------
# Validators, votes and commit certificates


@dataclass(frozen=True)
class Validator:
    address: bytes
    public_key: bytes
    power: int

    def __post_init__(self) -> None:
        _check_address("validator address", self.address)
        if not 1 <= self.power < 1 << 40:
            raise WireFormatError(f"validator power must be in 1..2**40, got {self.power}")


@dataclass(frozen=True)
class ValidatorSet:
    """Validators sorted by address (unique); the set's hash is committed in every header."""

    validators: tuple[Validator, ...]

    def __post_init__(self) -> None:
        addrs = [v.address for v in self.validators]
        if not addrs:
            raise WireFormatError("a validator set needs at least one validator")
        if addrs != sorted(set(addrs)):
            raise WireFormatError("validators must be sorted by address without duplicates")

    @property
    def total_power(self) -> int:
        return sum(v.power for v in self.validators)

    def quorum_power(self) -> int:
        """Smallest power strictly greater than two thirds of the total."""
        return self.total_power * 2 // 3 + 1

    def get(self, address: bytes) -> Validator | None:
        for v in self.validators:
            if v.address == address:
                return v
        return None

    def hash(self, suite: Suite) -> bytes:
        return suite.hash(codec.encode_struct(self))


class VoteType(enum.IntEnum):
    PREVOTE = 1
    PRECOMMIT = 2


@dataclass(frozen=True)
class Vote:
    """A validator's signed prevote or precommit for ``block_hash`` (b"" = nil) at height/round."""

    chain_id: str
    vote_type: VoteType
    height: int
    round: int
    block_hash: bytes
    time_ms: int
    validator: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_name("chain_id", self.chain_id)
        _check_uint("height", self.height)
        _check_uint("round", self.round)
        _check_hash("block_hash", self.block_hash, allow_empty=True)
        _check_uint("time_ms", self.time_ms)
        _check_address("validator", self.validator)

    def signing_bytes(self) -> bytes:
        body = codec.to_cbor(self)
        del body["signature"]
        return codec.encode(body)


def sign_vote(suite: Suite, keypair: KeyPair, vote: Vote) -> Vote:
    sig = suite.sign(keypair, vote.chain_id, PURPOSE_VOTE, vote.signing_bytes())
    return replace(vote, signature=sig)


def verify_vote_signature(suite: Suite, vote: Vote, public_key: bytes) -> bool:
    return suite.verify(
        public_key, vote.chain_id, PURPOSE_VOTE, vote.signing_bytes(), vote.signature
    )


@dataclass(frozen=True)
class CommitSig:
    """One validator's precommit signature inside a certificate."""

    validator: bytes
    time_ms: int
    signature: bytes

    def __post_init__(self) -> None:
        _check_address("validator", self.validator)
        _check_uint("time_ms", self.time_ms)


@dataclass(frozen=True)
class CommitCertificate:
    """Precommits for one block by validators holding more than 2/3 of the voting power.

    Checkable offline by anyone who knows the validator set: see ``verify_commit``.
    """

    chain_id: str
    height: int
    round: int
    block_hash: bytes
    signatures: tuple[CommitSig, ...]

    def __post_init__(self) -> None:
        _check_name("chain_id", self.chain_id)
        _check_uint("height", self.height)
        _check_uint("round", self.round)
        _check_hash("block_hash", self.block_hash)
        addrs = [s.validator for s in self.signatures]
        if addrs != sorted(set(addrs)):
            raise WireFormatError("certificate signatures must be sorted by validator, unique")

    def vote_of(self, sig: CommitSig) -> Vote:
        """The precommit vote each signature in the certificate signs."""
        return Vote(
            chain_id=self.chain_id,
            vote_type=VoteType.PRECOMMIT,
            height=self.height,
            round=self.round,
            block_hash=self.block_hash,
            time_ms=sig.time_ms,
            validator=sig.validator,
            signature=sig.signature,
        )

    def encode(self) -> bytes:
        return codec.encode_struct(self)

    def hash(self, suite: Suite) -> bytes:
        return suite.hash(self.encode())


class CertificateError(ValueError):
    """A commit certificate does not prove its block (base of the kinds below)."""


class CertificateMismatchError(CertificateError):
    """The certificate is for another chain, height or block."""


class UnknownSignerError(CertificateError):
    """A signature is by someone outside the validator set."""


class BadCommitSignatureError(CertificateError):
    """A precommit signature does not verify."""


class InsufficientPowerError(CertificateError):
    """Valid signatures hold no more than 2/3 of the voting power."""


def verify_commit(
    suite: Suite,
    validators: ValidatorSet,
    cert: CommitCertificate,
    *,
    chain_id: str,
    height: int,
    block_hash: bytes,
) -> None:
    """Raise a ``CertificateError`` unless ``cert`` proves ``block_hash`` at ``height``.

    Guarantees on return: every signature is a valid precommit by a distinct member of
    ``validators`` for exactly this chain, height and block, and their power exceeds 2/3.
    """
    if cert.chain_id != chain_id or cert.height != height or cert.block_hash != block_hash:
        raise CertificateMismatchError(
            f"certificate is for {cert.chain_id}@{cert.height} {cert.block_hash.hex()[:16]}, "
            f"expected {chain_id}@{height} {block_hash.hex()[:16]}"
        )
    power = 0
    for sig in cert.signatures:
        member = validators.get(sig.validator)
        if member is None:
            raise UnknownSignerError(f"{sig.validator.hex()} is not a validator at {height}")
        if not verify_vote_signature(suite, cert.vote_of(sig), member.public_key):
            raise BadCommitSignatureError(f"bad precommit signature by {sig.validator.hex()}")
        power += member.power
    if power < validators.quorum_power():
        raise InsufficientPowerError(
            f"certificate holds power {power}, needs {validators.quorum_power()} "
            f"of {validators.total_power}"
        )


def bft_time_ms(validators: ValidatorSet, cert: CommitCertificate) -> int:
    """Weighted median of the precommit times (Tendermint's BFT time).

    Deterministic given the certificate, and honest when fewer than 1/3 of the power is faulty,
    since the median by power is bracketed by honest validators' clocks.
    """
    weighted = sorted(
        (s.time_ms, member.power)
        for s in cert.signatures
        if (member := validators.get(s.validator)) is not None
    )
    total = sum(p for _, p in weighted)
    acc = 0
    for t, p in weighted:
        acc += p
        if acc * 2 > total:
            return t
    raise InsufficientPowerError("certificate has no signatures by known validators")


# ---------------------------------------------------------------------------------------------
# Equivocation evidence (verification lives in ``consortia.ledger.evidence``)


def conflict_problem(a: Vote, b: Vote) -> str | None:
    """Why ``a`` and ``b`` are not a canonical conflicting pair, or None if they are."""
    if (a.chain_id, a.vote_type, a.height, a.round, a.validator) != (
        b.chain_id,
        b.vote_type,
        b.height,
        b.round,
        b.validator,
    ):
        return "the votes are not by one validator for one chain, height, round and type"
    if a.block_hash == b.block_hash:
        return "the votes are for the same block"
    if a.block_hash > b.block_hash:
        return "the votes are not in canonical order (vote_a.block_hash < vote_b.block_hash)"
    return None


@dataclass(frozen=True)
class DuplicateVoteEvidence:
    """Two conflicting votes, ordered canonically by block hash (nil, b"", sorts first)."""

    vote_a: Vote
    vote_b: Vote

    def __post_init__(self) -> None:
        problem = conflict_problem(self.vote_a, self.vote_b)
        if problem is not None:
            raise WireFormatError(problem)

    @property
    def validator(self) -> bytes:
        return self.vote_a.validator

    def encode(self) -> bytes:
        return codec.encode_struct(self)

    def hash(self, suite: Suite) -> bytes:
        return suite.hash(self.encode())


# ---------------------------------------------------------------------------------------------
# Headers and blocks


@dataclass(frozen=True)
class Header:
    """Commits to everything about a block; its suite hash is the block id."""

    chain_id: str
    height: int
    time_ms: int
    parent_hash: bytes
    transactions_root: bytes
    receipts_root: bytes
    state_root: bytes
    validator_set_hash: bytes
    next_validator_set_hash: bytes
    proposer: bytes
    last_commit_hash: bytes
    evidence_hash: bytes  # RFC 6962 root over the block's equivocation evidence

    def __post_init__(self) -> None:
        _check_name("chain_id", self.chain_id)
        _check_uint("height", self.height)
        _check_uint("time_ms", self.time_ms)
        for name in (
            "parent_hash",
            "transactions_root",
            "receipts_root",
            "state_root",
            "validator_set_hash",
            "next_validator_set_hash",
            "last_commit_hash",
            "evidence_hash",
        ):
            _check_hash(name, getattr(self, name))
        _check_address("proposer", self.proposer)

    def encode(self) -> bytes:
        return codec.encode_struct(self)

    def hash(self, suite: Suite) -> bytes:
        return suite.hash(self.encode())


@dataclass(frozen=True)
class Block:
    """A header, its transactions, the certificate that committed the previous block, and
    evidence of validators' equivocation to record on chain."""

    header: Header
    transactions: tuple[Transaction, ...]
    last_commit: CommitCertificate | None = field(default=None)
    evidence: tuple[DuplicateVoteEvidence, ...] = ()

    def __post_init__(self) -> None:
        if len(self.transactions) > MAX_TXS_PER_BLOCK:
            raise WireFormatError(f"block holds more than {MAX_TXS_PER_BLOCK} transactions")
        if len(self.evidence) > MAX_EVIDENCE_PER_BLOCK:
            raise WireFormatError(f"block holds more than {MAX_EVIDENCE_PER_BLOCK} evidence items")

    def encode(self) -> bytes:
        return codec.encode_struct(self)

    def hash(self, suite: Suite) -> bytes:
        return self.header.hash(suite)


def decode_block(data: bytes) -> Block:
    return codec.decode_struct(Block, data, max_size=MAX_BLOCK_BYTES, max_depth=24)


def decode_certificate(data: bytes) -> CommitCertificate:
    return codec.decode_struct(CommitCertificate, data, max_size=256 * 1024, max_depth=8)


def decode_receipts(data: bytes) -> ReceiptList:
    return codec.decode_struct(ReceiptList, data, max_size=MAX_BLOCK_BYTES, max_depth=24)
