"""Evidence export over the REST API (``consortia-evidence`` bundles, docs/evidence.md).

A bundle has a business half (the business block's header, certificate and validator history,
and the subject: a transaction with its receipt, or a holding / wallet state proof) and an anchor
half (state proofs, against a certified supervision header, of the anchor of that block and of
the chain's registration). Each half is built by a node of its own chain:

- a **supervision** node serves ``GET /v1/evidence/anchor/{chain_id}/{height}``: the anchor half
  as JSON (exactly the bundle's ``anchor`` member) with the supervision genesis document it is
  checkable from (public: anchors are public data);
- a **business** node serves ``GET /v1/evidence/tx/{tx_hash}``,
  ``GET /v1/evidence/holding/{code}/{account_id}?height=N`` and
  ``GET /v1/evidence/wallet/{wallet_id}?height=N`` (signed requests, the rules of
  ``/v1/tx/{hash}``, the holding and the wallet reads), and
  ``GET /v1/evidence/contract/{address}/{slot}?height=N`` (a contract's storage word; without
  ``/{slot}`` its account record; ``consortia-evidence/2`` bundles; the rule of raw ``evm/``
  state reads, ``state_access``: the regulator only): it builds the business half from its own
  store, fetches the anchor half from ``ApiSettings.supervision_api``, and verifies the completed
  bundle with ``verify_bundle`` (against its own genesis and the supervision genesis, whose hash
  must be the one the chain's ``supervision`` light client trusts, when it trusts one) before
  answering it. The answer's body is the canonical bundle file itself (``bundle_to_json``): save
  it and ``consortia evidence verify`` it with the two genesis documents you trust.

Problems: ``EVIDENCE_UNAVAILABLE`` (503: no supervision API configured, or it cannot be reached),
``NOT_ANCHORED`` (409: the block is not anchored yet; the detail names the anchored height),
``BAD_EVIDENCE`` (502: what the supervision node sent does not verify), ``EVIDENCE_BUSY`` (503:
too many exports in flight), ``NOT_A_SUPERVISION_NODE`` / ``NOT_A_BUSINESS_NODE`` (404).

Exports replay blocks from genesis (slow for big heights), so they run in worker threads, at most
``MAX_EXPORTS`` at a time, and the API keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx2
from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from fastapi.responses import Response

from consortia import codec
from consortia.api import app as api_app
from consortia.api.backend import ApiBackend, LocalBackend, NodeBackend
from consortia.api.private import (
    is_regulator,
    read_context,
    securities_account_access,
    state_access,
    tx_access,
    wallet_id_access,
)
from consortia.api.reads import MAX_HASH_BYTES, PRIVATE_PROBLEMS, ApiProblem, Problem, hex_arg
from consortia.contracts import keys as contract_keys
from consortia.evidence.bundle import (
    ECNY_ASSET,
    FORMAT,
    AnchorEvidence,
    EvidenceError,
    bundle_to_json,
    verify_bundle,
)
from consortia.evidence.export import (
    BusinessEvidence,
    ExportChain,
    ExportError,
    NotAnchoredError,
    UnknownSubjectError,
    anchor_evidence,
    anchor_from_obj,
    anchor_to_obj,
    business_contract,
    business_state,
    business_transaction,
    complete,
    parse_contract_address,
    parse_slot,
)
from consortia.execution.genesis import Genesis, genesis_from_json
from consortia.modules import registry, supervision

MAX_EXPORTS = 2  # exports replaying at once; more are refused with EVIDENCE_BUSY
FETCH_TIMEOUT_S = 30.0
MAX_ANCHOR_BYTES = 8 * 1024 * 1024
MAX_CHAIN_ID = 128
MAX_HEIGHT = (1 << 63) - 1
MAX_ID_BYTES = 512

Caller = Callable[..., Coroutine[Any, Any, registry.Account]]
# GET url → (HTTP status, body bytes); raises OSError / httpx2.HTTPError when unreachable.
Fetch = Callable[[str], Awaitable[tuple[int, bytes]]]


def node_genesis(backend: ApiBackend) -> Genesis | None:
    """The genesis document of the chain ``backend`` serves (None for a backend without one)."""
    if isinstance(backend, LocalBackend):
        return backend.chain.genesis
    if isinstance(backend, NodeBackend):
        genesis = getattr(backend.node, "genesis", None)
        return genesis if isinstance(genesis, Genesis) else None
    return None


async def http_fetch(url: str) -> tuple[int, bytes]:
    """GET ``url`` (the production path: HTTP to a supervision node's API)."""
    async with httpx2.AsyncClient(timeout=FETCH_TIMEOUT_S) as client:
        resp = await client.get(url, headers={"Accept": "application/json"})
        return resp.status_code, resp.content[: MAX_ANCHOR_BYTES + 1]


def _problem(status: int, code: str, detail: str) -> ApiProblem:
    return ApiProblem(status, code, detail)


def evidence_router(
    backend: ApiBackend,
    caller: Caller,
    settings: api_app.ApiSettings,
    *,
    fetch: Fetch = http_fetch,
) -> APIRouter:
    """The evidence endpoints over ``backend`` (see the module docstring); ``fetch`` reads the
    supervision node's anchor half (HTTP by default)."""
    router = APIRouter()
    slots = asyncio.Semaphore(MAX_EXPORTS)
    documented: dict[int | str, dict[str, Any]] = {
        **PRIVATE_PROBLEMS,
        409: {"model": Problem, "description": "NOT_ANCHORED (problem details)"},
        502: {"model": Problem, "description": "BAD_EVIDENCE (problem details)"},
        503: {
            "model": Problem,
            "description": "EVIDENCE_UNAVAILABLE, EVIDENCE_BUSY (problem details)",
        },
    }
    bundle_response: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "The canonical consortia-evidence/1 bundle file (docs/evidence.md)",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        **documented,
    }

    def genesis_or_404(tier: str) -> Genesis:
        genesis = node_genesis(backend)
        if genesis is None or genesis.tier != tier:
            code = "NOT_A_SUPERVISION_NODE" if tier == "supervision" else "NOT_A_BUSINESS_NODE"
            raise _problem(404, code, f"this node does not serve a {tier} chain")
        return genesis

    async def exporting(work: Callable[[], Any]) -> Any:
        """Run ``work`` in a worker thread, at most ``MAX_EXPORTS`` at once."""
        if slots.locked():
            raise _problem(503, "EVIDENCE_BUSY", "too many evidence exports in flight; retry")
        async with slots:
            try:
                return await asyncio.to_thread(work)
            except NotAnchoredError as exc:
                raise _problem(409, "NOT_ANCHORED", str(exc)) from None
            except UnknownSubjectError as exc:
                raise _problem(404, "NOT_FOUND", str(exc)) from None
            except ExportError as exc:
                raise _problem(503, "EVIDENCE_UNAVAILABLE", str(exc)) from None

    # -- the anchor half (supervision node) ------------------------------------------------------

    # Anchors are public chain data: the anchor half needs no login.
    public: dict[int | str, dict[str, Any]] = {
        k: v for k, v in documented.items() if k not in (401, 403)
    }

    @router.get("/v1/evidence/anchor/{chain_id}/{height}", tags=["evidence"], responses=public)
    async def get_anchor_half(
        chain_id: str = PathParam(max_length=MAX_CHAIN_ID),
        height: int = PathParam(ge=1, le=MAX_HEIGHT),
    ) -> dict[str, Any]:
        """The anchor half of a bundle for business block ``chain_id``@``height``: state proofs
        of its anchor and of the chain's registration against the supervision head, with the
        supervision chain proof of that head and the supervision genesis document (JSON). 409
        ``NOT_ANCHORED`` while the relayer has not anchored it. Supervision nodes only."""
        genesis = genesis_or_404("supervision")
        state = backend.head()
        sup = ExportChain(genesis.chain_id, genesis, backend, state.height)
        anchor = await exporting(lambda: anchor_evidence(sup, state.tree, chain_id, height))
        return {
            "format": FORMAT,
            "part": "anchor",
            "chain_id": chain_id,
            "height": height,
            "supervision_genesis": json.loads(genesis.to_json()),
            "supervision_genesis_hash": genesis.hash().hex(),
            "anchor": anchor_to_obj(anchor),
        }

    # -- whole bundles (business node) -----------------------------------------------------------

    async def fetch_anchor(chain_id: str, height: int) -> tuple[AnchorEvidence, Genesis]:
        """The anchor half of ``chain_id``@``height`` and the supervision genesis, from the
        supervision node (checked for form here; the proofs by ``verify_bundle`` later). Asked
        before the business half is built, so a block not anchored yet costs no replay."""
        base = settings.supervision_api.rstrip("/")
        if not base:
            raise _problem(
                503, "EVIDENCE_UNAVAILABLE", "this node has no supervision API configured"
            )
        url = f"{base}/v1/evidence/anchor/{urllib.parse.quote(chain_id, safe='')}/{height}"
        try:
            status, raw = await fetch(url)
        except (OSError, httpx2.HTTPError) as exc:
            raise _problem(
                503, "EVIDENCE_UNAVAILABLE", f"the supervision API cannot be reached: {exc}"
            ) from None
        try:
            reply = json.loads(raw) if len(raw) <= MAX_ANCHOR_BYTES else None
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise _problem(
                502,
                "BAD_EVIDENCE",
                f"the supervision API answered HTTP {status}, not a JSON object",
            )
        if status == 409 and reply.get("code") == "NOT_ANCHORED":
            raise _problem(409, "NOT_ANCHORED", str(reply.get("detail", "not anchored yet")))
        if status != 200:
            raise _problem(
                503,
                "EVIDENCE_UNAVAILABLE",
                f"the supervision API answered HTTP {status} {reply.get('code', '')}: "
                f"{reply.get('detail', '')}",
            )
        try:
            sup_genesis = genesis_from_json(json.dumps(reply["supervision_genesis"]))
            anchor = anchor_from_obj(reply["anchor"])
        except (KeyError, ValueError, TypeError, codec.CodecError) as exc:
            raise _problem(502, "BAD_EVIDENCE", f"malformed anchor half: {exc}") from None
        raw_client = backend.head().tree.get(supervision.CLIENT_KEY)
        if raw_client is not None:
            trusted = codec.decode_struct(supervision.SupervisionClient, raw_client)
            if sup_genesis.hash() != trusted.genesis_hash:
                raise _problem(
                    502,
                    "BAD_EVIDENCE",
                    "the supervision API serves another supervision chain than the one this "
                    f"chain trusts ({trusted.chain_id})",
                )
        return anchor, sup_genesis

    async def export(
        genesis: Genesis, height: int, build: Callable[[], BusinessEvidence]
    ) -> Response:
        """Fetch the anchor half of ``height``, build the business half (``build``, in a worker
        thread), join and verify them; answer the canonical bundle file."""
        anchor, sup_genesis = await fetch_anchor(genesis.chain_id, height)
        half: BusinessEvidence = await exporting(build)
        bundle = complete(half, anchor)
        try:
            await asyncio.to_thread(verify_bundle, bundle, genesis, sup_genesis)
        except EvidenceError as exc:
            raise _problem(502, "BAD_EVIDENCE", f"the bundle does not verify: {exc}") from None
        return Response(bundle_to_json(bundle), media_type="application/json")

    def forbidden(what: str) -> ApiProblem:
        return _problem(403, "FORBIDDEN", f"this account may not read {what}")

    def unknown(acct: registry.Account, what: str) -> ApiProblem:
        return _problem(404, "NOT_FOUND", f"no {what}") if is_regulator(acct) else forbidden(what)

    def business_chain(genesis: Genesis) -> ExportChain:
        return ExportChain(genesis.chain_id, genesis, backend, backend.head_height())

    def check_height(height: int | None) -> int:
        head = backend.head_height()
        chosen = head if height is None else height
        if not 1 <= chosen <= head:
            raise _problem(400, "BAD_REQUEST", f"height must be within 1..{head}")
        return chosen

    def check_id(value: str, what: str) -> None:
        if len(value.encode()) > MAX_ID_BYTES:
            raise _problem(400, "BAD_REQUEST", f"{what} longer than {MAX_ID_BYTES} bytes")

    @router.get(
        "/v1/evidence/tx/{tx_hash}",
        tags=["evidence"],
        responses=bundle_response,
        response_class=Response,
    )
    async def get_tx_evidence(tx_hash: str, acct: registry.Account = Depends(caller)) -> Response:
        """The evidence bundle of a committed transaction and its receipt, anchored on the
        supervision chain and verified by this node. Signed request required; allowed as for
        ``/v1/tx/{hash}`` (the sender, an account of its organization, the regulator)."""
        h = hex_arg(tx_hash, "transaction hash", max_bytes=MAX_HASH_BYTES)
        genesis = genesis_or_404("business")
        what = f"committed transaction {h.hex()}"
        found = backend.find_tx(h)
        block = None if found is None else backend.block(found[0])
        if found is None or block is None or found[1] >= len(block.transactions):
            raise unknown(acct, what)
        sender = block.transactions[found[1]].sender
        if tx_access(read_context(backend.head()), acct, sender) is None:
            raise forbidden(what)
        chain = business_chain(genesis)
        return await export(genesis, found[0], lambda: business_transaction(chain, h))

    @router.get(
        "/v1/evidence/holding/{code}/{account_id}",
        tags=["evidence"],
        responses=bundle_response,
        response_class=Response,
    )
    async def get_holding_evidence(
        code: str,
        account_id: str,
        height: int | None = Query(None, ge=1, le=MAX_HEIGHT),
        acct: registry.Account = Depends(caller),
    ) -> Response:
        """The evidence bundle of a securities account's holding of ``code`` at ``height``
        (default: the head), anchored and verified. Signed request required; allowed as for the
        holding read (the investor, its broker, the regulator; by today's records)."""
        check_id(code, "security code")
        check_id(account_id, "account id")
        genesis = genesis_or_404("business")
        what = f"holding {code!r}/{account_id!r}"
        if securities_account_access(read_context(backend.head()), acct, account_id) is None:
            raise unknown(acct, what)
        if code.lower() in (ECNY_ASSET, "e-cny"):
            raise _problem(400, "BAD_REQUEST", "use /v1/evidence/wallet/{wallet_id} for e-CNY")
        at = check_height(height)
        chain = business_chain(genesis)
        return await export(
            genesis, at, lambda: business_state(chain, account=account_id, asset=code, height=at)
        )

    @router.get(
        "/v1/evidence/wallet/{wallet_id}",
        tags=["evidence"],
        responses=bundle_response,
        response_class=Response,
    )
    async def get_wallet_evidence(
        wallet_id: str,
        height: int | None = Query(None, ge=1, le=MAX_HEIGHT),
        acct: registry.Account = Depends(caller),
    ) -> Response:
        """The evidence bundle of an e-CNY wallet record at ``height`` (default: the head),
        anchored and verified. Signed request required; allowed as for the wallet read (the
        owner, its operator bank, the regulator). A state proof needs the record's committed
        bytes, so unlike the wallet read the bundle carries the sealed identity envelope
        (ciphertext only the operator bank and the regulator can open)."""
        check_id(wallet_id, "wallet id")
        genesis = genesis_or_404("business")
        what = f"wallet {wallet_id!r}"
        if wallet_id_access(read_context(backend.head()), acct, wallet_id) is None:
            raise unknown(acct, what)
        at = check_height(height)
        chain = business_chain(genesis)
        return await export(
            genesis,
            at,
            lambda: business_state(chain, account=wallet_id, asset=ECNY_ASSET, height=at),
        )

    contract_response: dict[int | str, dict[str, Any]] = {
        **bundle_response,
        200: {
            "description": "The canonical consortia-evidence/2 bundle file (docs/evidence.md)",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
    }

    async def contract_evidence(
        address: str, slot: str | None, height: int | None, acct: registry.Account
    ) -> Response:
        try:
            addr = parse_contract_address(address)
            number = None if slot is None else parse_slot(slot)
        except ValueError as exc:
            raise _problem(400, "BAD_REQUEST", str(exc)) from None
        genesis = genesis_or_404("business")
        key = (
            contract_keys.account_key(addr)
            if number is None
            else contract_keys.storage_key(addr, number)
        )
        what = f"contract 0x{addr.hex()} state"
        # Raw ``evm/`` state is private: the rule of a raw state read of the same key.
        if state_access(read_context(backend.head()), acct, key, None) is None:
            raise forbidden(what)
        at = check_height(height)
        chain = business_chain(genesis)
        return await export(
            genesis,
            at,
            lambda: business_contract(chain, address=addr, slot=number, height=at),
        )

    @router.get(
        "/v1/evidence/contract/{address}/{slot}",
        tags=["evidence"],
        responses=contract_response,
        response_class=Response,
    )
    async def get_contract_slot_evidence(
        address: str,
        slot: str,
        height: int | None = Query(None, ge=1, le=MAX_HEIGHT),
        acct: registry.Account = Depends(caller),
    ) -> Response:
        """The evidence bundle of storage ``slot`` (decimal or 0x hex) of contract ``address``
        at ``height`` (default: the head), anchored and verified. Signed request required;
        allowed as for a raw read of the ``evm/storage/`` key (the regulator). A zero slot is
        not stored, so it has no record to prove: 404 ``NOT_FOUND``, as for no contract."""
        return await contract_evidence(address, slot, height, acct)

    @router.get(
        "/v1/evidence/contract/{address}",
        tags=["evidence"],
        responses=contract_response,
        response_class=Response,
    )
    async def get_contract_account_evidence(
        address: str,
        height: int | None = Query(None, ge=1, le=MAX_HEIGHT),
        acct: registry.Account = Depends(caller),
    ) -> Response:
        """The evidence bundle of contract ``address``'s account record (nonce, code hash) at
        ``height`` (default: the head), anchored and verified; the regulator only, as above."""
        return await contract_evidence(address, None, height, acct)

    return router


__all__ = ["MAX_EXPORTS", "Fetch", "evidence_router", "http_fetch", "node_genesis"]
