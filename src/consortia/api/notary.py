"""Notary reads (docs/notary.md): find a file's deposits by its SHA-256, read a deposit by number.

- ``GET /v1/notary/sha256/{hex}``: every deposit (at most ``notary.MAX_PER_SHA256``, in deposit
  order) of the file whose SHA-256 is ``hex`` (64 hex digits), with the state proof of the index.
  A file nobody deposited is an answer, not an error: 200 with ``deposits: []``.
- ``GET /v1/notary/deposits/{deposit_id}``: one deposit (404 ``NOT_FOUND`` if there is none), with
  the state proof of its record.

Who sees what. That a file was deposited is a public fact — the point of a notary is that anyone
holding the file can check it: the deposit number, the depositor's address and organization, both
hashes, the size, the block height and time, the version links (``version``, ``previous``,
``next``), whether and at which height it was withdrawn, and whether its block is anchored. The
document's metadata — ``doc_type``, ``title``, ``project``, the sealed metadata and the withdrawal
reason — describe the institution's business (a project's name, a case reference) and are shown
only to an account of the depositor's organization (``access: "depositor_org"``) and to the
regulator (``access: "regulator"``); everyone else gets ``access: "public"`` and no such fields,
and the record's raw value is then left out of the proof (it holds the metadata). Both reads work
unsigned; a signed request or a session grant (``consortia api login``) is checked when one is
sent (a bad one is a 401 problem, never silently public).

Anchoring. ``anchor`` of each deposit: ``{"status": "anchored", "supervision_height": S}`` (the
supervision chain's block S anchored the deposit's block), ``{"status": "not_anchored",
"anchored_height": N}`` (anchored only up to business block N so far), or ``{"status":
"unknown", "reason": ...}`` (this node has no ``supervision_api`` configured, or it cannot be
reached). Anchors are read from the supervision node's public state (``anchoring/chain/<id>``
and ``anchoring/header/<id>/<height>``); an anchor never changes, so they are cached.

Problems: ``BAD_REQUEST`` (not 64 hex digits; a malformed deposit id), ``NOT_FOUND``, and the
authentication problems of a bad signature or session.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam

from consortia import codec
from consortia.api.auth import HEADER_ACCOUNT
from consortia.api.backend import ApiBackend
from consortia.api.private import is_regulator
from consortia.api.reads import ApiProblem, proven, read_at
from consortia.modules import anchoring, notary, registry

Caller = Callable[..., Coroutine[Any, Any, registry.Account]]
Fetch = Callable[[str], Awaitable[tuple[int, bytes]]]

SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
DEPOSIT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_REPLY_BYTES = 1 << 20  # a supervision node's state read
MAX_CACHED_ANCHORS = 10_000

# Fields of a deposit only its organization and the regulator see.
PRIVATE_DEPOSIT_FIELDS = ("doc_type", "title", "project", "sealed_metadata", "withdraw_reason")


def deposit_access(acct: registry.Account | None, deposit: notary.Deposit) -> str:
    """``"regulator"``, ``"depositor_org"`` (an account of the depositor's organization) or
    ``"public"`` (anyone else, unsigned readers included)."""
    if acct is None:
        return "public"
    if is_regulator(acct):
        return "regulator"
    if acct.org_id == deposit.org_id:
        return "depositor_org"
    return "public"


def deposit_view(deposit: notary.Deposit, access: str) -> dict[str, Any]:
    """A deposit as JSON for a reader with ``access``: the public facts, and the metadata only
    for ``depositor_org`` / ``regulator``."""
    out: dict[str, Any] = {
        "access": access,
        "deposit_id": deposit.deposit_id,
        "depositor": deposit.depositor.hex(),
        "depositor_org": deposit.org_id,
        "sha256": deposit.sha256.hex(),
        "suite_hash": deposit.suite_hash.hex(),
        "size": deposit.size,
        "height": deposit.height,
        "time_ms": deposit.time_ms,
        "version": deposit.version,
        "previous": deposit.previous,
        "next": deposit.next,
        "withdrawn": deposit.withdrawn,
        "withdrawn_height": deposit.withdrawn_height,
    }
    if access != "public":
        out.update(
            doc_type=deposit.doc_type,
            title=deposit.title,
            project=deposit.project,
            sealed_metadata=deposit.sealed_metadata.hex(),
            withdraw_reason=deposit.withdraw_reason,
        )
    return out


class AnchorLookup:
    """Whether business blocks of this chain are anchored, asked of a supervision node's API
    (public state reads); the anchor of a height, once seen, is cached (it never changes)."""

    def __init__(self, base_url: str, fetch: Fetch) -> None:
        self.base = base_url.rstrip("/")
        self.fetch = fetch
        self._anchored: dict[tuple[str, int], int] = {}

    async def _state(self, key: bytes) -> bytes | None:
        status, raw = await self.fetch(f"{self.base}/v1/state/{key.hex()}")
        if status != 200 or len(raw) > MAX_REPLY_BYTES:
            raise ValueError(f"the supervision API answered HTTP {status}")
        value = json.loads(raw).get("value")
        return None if value is None else bytes.fromhex(str(value))

    async def status(self, chain_id: str, heights: list[int]) -> dict[int, dict[str, Any]]:
        """``anchor`` of each height (see the module docstring); never raises."""
        if not self.base:
            why = "this node has no supervision API configured"
            return {h: {"status": "unknown", "reason": why} for h in heights}
        out: dict[int, dict[str, Any]] = {}
        try:
            top: int | None = None
            for h in sorted(set(heights)):
                cached = self._anchored.get((chain_id, h))
                if cached is None:
                    if top is None:
                        raw_chain = await self._state(anchoring.chain_key(chain_id))
                        top = (
                            0
                            if raw_chain is None
                            else codec.decode_struct(anchoring.AnchoredChain, raw_chain).height
                        )
                    if h > top:
                        out[h] = {"status": "not_anchored", "anchored_height": top}
                        continue
                    raw = await self._state(anchoring.anchor_key(chain_id, h))
                    if raw is None:
                        out[h] = {"status": "not_anchored", "anchored_height": top}
                        continue
                    cached = codec.decode_struct(anchoring.Anchor, raw).anchored_height
                    if len(self._anchored) >= MAX_CACHED_ANCHORS:
                        self._anchored.clear()
                    self._anchored[(chain_id, h)] = cached
                out[h] = {"status": "anchored", "supervision_height": cached}
        except (OSError, ValueError, TypeError, AttributeError, codec.CodecError) as exc:
            reason = f"the supervision API cannot tell: {exc}"
            for h in heights:
                out.setdefault(h, {"status": "unknown", "reason": reason})
        except Exception as exc:  # httpx errors and the like: anchoring stays unknown
            reason = f"the supervision API cannot be reached: {type(exc).__name__}"
            for h in heights:
                out.setdefault(h, {"status": "unknown", "reason": reason})
        return out


def notary_router(
    backend: ApiBackend, caller: Caller, supervision_api: str, fetch: Fetch
) -> APIRouter:
    """The notary reads over ``backend``; ``caller`` authenticates a request that carries a
    signature or a session; anchors are asked of ``supervision_api`` through ``fetch``."""
    # Public reads (no 401 in the schema: unsigned is fine), optionally authenticated.
    router = APIRouter(tags=["notary"])
    anchors = AnchorLookup(supervision_api, fetch)

    async def reader(request: Request) -> registry.Account | None:
        """The signing / session account, if the request carries either; None: unsigned."""
        headers = request.headers
        if "authorization" in headers or HEADER_ACCOUNT.lower() in headers:
            return await caller(request)
        return None

    @router.get("/v1/notary/sha256/{sha256_hex}")
    async def by_sha256(
        request: Request,
        sha256_hex: str = PathParam(description="The file's SHA-256, 64 hex digits"),
    ) -> dict[str, Any]:
        """The deposits of the file with this SHA-256 (none: ``deposits: []``), each with its
        public facts, its anchoring, and its metadata for the depositor's organization and the
        regulator."""
        if not SHA256_HEX.fullmatch(sha256_hex):
            raise ApiProblem(400, "BAD_REQUEST", "sha256 must be 64 hex digits")
        acct = await reader(request)
        digest = bytes.fromhex(sha256_hex)
        state = backend.head()
        index = read_at(state, notary.sha256_key(digest))
        deposits = notary.deposits_by_sha256(state.tree.get, digest)
        marks = await anchors.status(state.chain_id, [d.height for d in deposits])
        return {
            **proven(index),
            "chain_id": state.chain_id,
            "sha256": digest.hex(),
            "deposits": [
                {**deposit_view(d, deposit_access(acct, d)), "anchor": marks[d.height]}
                for d in deposits
            ],
        }

    @router.get("/v1/notary/deposits/{deposit_id}")
    async def by_id(request: Request, deposit_id: str) -> dict[str, Any]:
        """One deposit by its number, with the proof of its record (the raw value only for
        those who may see its metadata)."""
        if not DEPOSIT_ID.fullmatch(deposit_id):
            raise ApiProblem(400, "BAD_REQUEST", "a deposit id is 1..64 of A-Z a-z 0-9 . _ -")
        acct = await reader(request)
        state = backend.head()
        read = read_at(state, notary.deposit_key(deposit_id))
        deposit = notary.load_deposit(state.tree.get, deposit_id)
        if deposit is None:
            raise ApiProblem(404, "NOT_FOUND", f"no deposit {deposit_id!r}")
        access = deposit_access(acct, deposit)
        mark = (await anchors.status(state.chain_id, [deposit.height]))[deposit.height]
        return {
            **proven(read, with_value=access != "public"),
            "chain_id": state.chain_id,
            "deposit": {**deposit_view(deposit, access), "anchor": mark},
        }

    return router


__all__ = ["AnchorLookup", "deposit_access", "deposit_view", "notary_router"]
