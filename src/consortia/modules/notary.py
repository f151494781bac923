"""The notary module of a business chain: document evidence deposits.

An institution registers a document's hashes (the chain suite's hash and, for interoperability,
SHA-256), its metadata and optionally a sealed copy of the metadata for the regulator; it gets a
deterministic deposit number ``ND-<10-digit counter>``. A new version names the deposit it
supersedes (``previous``, same depositor organization), so versions form a chain; a deposit can be
marked withdrawn, never erased. Only hashes and metadata are on chain, never the document.

State keys: ``notary/counter`` → ``DepositCounter``; ``notary/deposit/<id>`` → ``Deposit``;
``notary/sha256/<64 hex>`` → ``Sha256Index`` (the ids of deposits of that SHA-256, at most
``MAX_PER_SHA256``). Events: ``deposited``, ``withdrawn``. docs/notary.md is the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from consortia import codec
from consortia.execution.context import TxContext
from consortia.execution.errors import TxFailure
from consortia.execution.module import Method, Module
from consortia.modules.registry import InvalidFieldError, check_text, is_id, require_account

NAME = "notary"

DIGEST_SIZE = 32
MAX_SEALED = 4096
MAX_PER_SHA256 = 64
MAX_SIZE = (1 << 63) - 1
ID_PREFIX = "ND-"
ID_DIGITS = 10

Read = Callable[[bytes], bytes | None]


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class DepositCounter:
    count: int


@dataclass(frozen=True)
class Deposit:
    deposit_id: str
    depositor: bytes
    org_id: str
    suite_hash: bytes
    sha256: bytes
    doc_type: str
    title: str
    project: str
    version: int
    previous: str
    next: str
    size: int
    sealed_metadata: bytes
    height: int
    time_ms: int
    withdrawn: bool
    withdraw_reason: str
    withdrawn_height: int


@dataclass(frozen=True)
class Sha256Index:
    deposit_ids: tuple[str, ...]


COUNTER_KEY = b"notary/counter"


def deposit_key(deposit_id: str) -> bytes:
    return b"notary/deposit/" + deposit_id.encode()


def sha256_key(digest: bytes) -> bytes:
    return b"notary/sha256/" + digest.hex().encode()


def deposit_id_of(number: int) -> str:
    """The deposit number of the ``number``-th deposit (1-based)."""
    return f"{ID_PREFIX}{number:0{ID_DIGITS}d}"


def is_deposit_id(text: str) -> bool:
    digits = text[len(ID_PREFIX) :]
    return (
        text.startswith(ID_PREFIX)
        and len(digits) == ID_DIGITS
        and digits.isascii()
        and digits.isdigit()
    )


def load_deposit(read: Read, deposit_id: str) -> Deposit | None:
    """The deposit ``deposit_id`` from state read by ``read`` (None if there is none)."""
    if not is_deposit_id(deposit_id):
        return None
    raw = read(deposit_key(deposit_id))
    return None if raw is None else codec.decode_struct(Deposit, raw)


def deposits_by_sha256(read: Read, digest: bytes) -> tuple[Deposit, ...]:
    """Every deposit of a file with SHA-256 ``digest``, in deposit order."""
    raw = read(sha256_key(digest))
    if raw is None:
        return ()
    index = codec.decode_struct(Sha256Index, raw)
    out = []
    for deposit_id in index.deposit_ids:
        d = load_deposit(read, deposit_id)
        if d is not None:
            out.append(d)
    return tuple(out)


def version_history(read: Read, deposit_id: str) -> tuple[Deposit, ...]:
    """The whole version chain ``deposit_id`` belongs to, oldest first (empty if unknown)."""
    d = load_deposit(read, deposit_id)
    if d is None:
        return ()
    seen = {d.deposit_id}
    while d.previous:
        prev = load_deposit(read, d.previous)
        if prev is None or prev.deposit_id in seen:
            break
        seen.add(prev.deposit_id)
        d = prev
    chain = [d]
    walked = {d.deposit_id}
    while chain[-1].next and chain[-1].next not in walked:
        nxt = load_deposit(read, chain[-1].next)
        if nxt is None:
            break
        walked.add(nxt.deposit_id)
        chain.append(nxt)
    return tuple(chain)


# ---------------------------------------------------------------------------------------------
# Failures (stable codes)


class NotaryNotFoundError(TxFailure):
    code = "NOTARY_NOT_FOUND"


class NotaryForbiddenError(TxFailure):
    code = "NOTARY_FORBIDDEN"


class NotarySupersededError(TxFailure):
    code = "NOTARY_SUPERSEDED"


class NotaryWithdrawnError(TxFailure):
    code = "NOTARY_WITHDRAWN"


class NotaryVersionMismatchError(TxFailure):
    code = "NOTARY_VERSION_MISMATCH"


class NotaryIndexFullError(TxFailure):
    code = "NOTARY_INDEX_FULL"


# ---------------------------------------------------------------------------------------------
# Methods


@dataclass(frozen=True)
class DepositArgs:
    suite_hash: bytes
    sha256: bytes
    doc_type: str
    title: str
    project: str
    version: int | None
    previous: str
    size: int
    sealed_metadata: bytes


def check_deposit_args(args: DepositArgs) -> None:
    """Raise ``InvalidFieldError`` naming the first argument that breaks its rule (clients call
    it too, to fail before hashing or signing)."""
    if len(args.suite_hash) != DIGEST_SIZE:
        raise InvalidFieldError(f"suite_hash must be {DIGEST_SIZE} bytes")
    if len(args.sha256) != DIGEST_SIZE:
        raise InvalidFieldError(f"sha256 must be {DIGEST_SIZE} bytes")
    if not is_id(args.doc_type):
        raise InvalidFieldError("doc_type must be 1..64 ASCII letters, digits, '-', '_', '.'")
    check_text("title", args.title)
    if not is_id(args.project):
        raise InvalidFieldError("project must be 1..64 ASCII letters, digits, '-', '_', '.'")
    if args.version is not None and not 1 <= args.version <= MAX_SIZE:
        raise InvalidFieldError("version must be a positive integer")
    if args.previous and not is_deposit_id(args.previous):
        raise InvalidFieldError(f"previous must be '' or a deposit id like {deposit_id_of(1)}")
    if not 0 <= args.size <= MAX_SIZE:
        raise InvalidFieldError(f"size must be in 0..{MAX_SIZE}")
    if len(args.sealed_metadata) > MAX_SEALED:
        raise InvalidFieldError(f"sealed_metadata must be at most {MAX_SEALED} bytes")


def deposit(ctx: TxContext, args: DepositArgs) -> None:
    """Record a document deposit under the next deposit number; a new version links both ways
    with the deposit it supersedes. All checks run before any write."""
    sender = require_account(ctx, ctx.sender)
    check_deposit_args(args)
    version = 1
    prev: Deposit | None = None
    if args.previous:
        prev = ctx.get_record(deposit_key(args.previous), Deposit)
        if prev is None:
            raise NotaryNotFoundError(f"no deposit {args.previous}")
        if prev.org_id != sender.org_id:
            raise NotaryForbiddenError(
                f"deposit {prev.deposit_id} belongs to organization {prev.org_id!r}"
            )
        if prev.next:
            raise NotarySupersededError(
                f"deposit {prev.deposit_id} is already superseded by {prev.next}"
            )
        if prev.withdrawn:
            raise NotaryWithdrawnError(f"deposit {prev.deposit_id} is withdrawn")
        version = prev.version + 1
    if args.version is not None and args.version != version:
        raise NotaryVersionMismatchError(f"version must be {version}, got {args.version}")
    index = ctx.get_record(sha256_key(args.sha256), Sha256Index) or Sha256Index(())
    if len(index.deposit_ids) >= MAX_PER_SHA256:
        raise NotaryIndexFullError(
            f"SHA-256 {args.sha256.hex()} already has {MAX_PER_SHA256} deposits"
        )
    counter = ctx.get_record(COUNTER_KEY, DepositCounter) or DepositCounter(0)
    deposit_id = deposit_id_of(counter.count + 1)
    ctx.put_record(COUNTER_KEY, DepositCounter(counter.count + 1))
    ctx.put_record(
        deposit_key(deposit_id),
        Deposit(
            deposit_id=deposit_id,
            depositor=ctx.sender,
            org_id=sender.org_id,
            suite_hash=args.suite_hash,
            sha256=args.sha256,
            doc_type=args.doc_type,
            title=args.title,
            project=args.project,
            version=version,
            previous=args.previous,
            next="",
            size=args.size,
            sealed_metadata=args.sealed_metadata,
            height=ctx.height,
            time_ms=ctx.time_ms,
            withdrawn=False,
            withdraw_reason="",
            withdrawn_height=0,
        ),
    )
    ctx.put_record(sha256_key(args.sha256), Sha256Index((*index.deposit_ids, deposit_id)))
    if prev is not None:
        ctx.put_record(deposit_key(prev.deposit_id), replace(prev, next=deposit_id))
    ctx.emit(
        NAME,
        "deposited",
        deposit_id=deposit_id,
        org_id=sender.org_id,
        depositor=ctx.sender,
        sha256=args.sha256,
        suite_hash=args.suite_hash,
        doc_type=args.doc_type,
        project=args.project,
        version=version,
        previous=args.previous,
        size=args.size,
    )


@dataclass(frozen=True)
class WithdrawArgs:
    deposit_id: str
    reason: str


def withdraw(ctx: TxContext, args: WithdrawArgs) -> None:
    """Mark a deposit withdrawn (the depositor or its organization's org_admin); the record and
    its index entries stay."""
    sender = require_account(ctx, ctx.sender)
    check_text("reason", args.reason)
    d = None
    if is_deposit_id(args.deposit_id):
        d = ctx.get_record(deposit_key(args.deposit_id), Deposit)
    if d is None:
        raise NotaryNotFoundError(f"no deposit {args.deposit_id!r}")
    own_org_admin = sender.org_id == d.org_id and "org_admin" in sender.roles
    if ctx.sender != d.depositor and not own_org_admin:
        raise NotaryForbiddenError(
            f"only the depositor or an org_admin of {d.org_id!r} withdraws {d.deposit_id}"
        )
    if d.withdrawn:
        raise NotaryWithdrawnError(f"deposit {d.deposit_id} is already withdrawn")
    ctx.put_record(
        deposit_key(d.deposit_id),
        replace(d, withdrawn=True, withdraw_reason=args.reason, withdrawn_height=ctx.height),
    )
    ctx.emit(NAME, "withdrawn", deposit_id=d.deposit_id, org_id=d.org_id, reason=args.reason)


MODULE = Module(
    name=NAME,
    methods={
        "deposit": Method(DepositArgs, deposit),
        "withdraw": Method(WithdrawArgs, withdraw),
    },
)
