"""A property-based run of the API's own OpenAPI schema (schemathesis) through ASGI, no network:
every operation, with generated path, query and body values (valid and invalid), unsigned and
signed (as the regulator, who reaches the deepest code paths, and as an ordinary account), must
answer **no 5xx at all**, only documented status codes and content types, and bodies that match
the documented schemas; and nothing on either chain changes.

Both nodes are served as a two-tier network configures them, so that no view answers its
by-design "not configured" 503: the **business** node's API with a look-through index (the
regulator views; no ``LOOKTHROUGH_UNAVAILABLE``) and a supervision API (evidence export; no
``EVIDENCE_UNAVAILABLE``), which is the **supervision** node's API in the same process (its
anchor half fetched through ASGI: the production fetch speaks HTTP to the same route); and the
supervision node's API, with the same index. The one remaining 503 of the evidence routes,
``EVIDENCE_BUSY``, sheds load when more than ``MAX_EXPORTS`` exports run at once; schemathesis
sends one request at a time, so it cannot arise here and is not excluded either.
``test_configured_services_answer`` shows the services really answer (a bundle is exported and
verified, the dashboard views read the index), so the strict check is not vacuous.

The default run keeps examples few (it runs in the normal suite); ``-m slow`` runs many more."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx2
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from consortia.api import LocalBackend, create_app, sign_request
from consortia.api.evidence import Fetch
from consortia.crypto import KeyPair
from consortia.evidence.bundle import parse_bundle
from consortia.ledger.types import decode_block
from consortia.lookthrough.index import LookthroughIndex
from consortia.node.local import LocalChain
from tests.apiworld import ApiWorld, build_api_world, opened
from tests.test_api import OPEN

SUPERVISION_API = "http://supervision.invalid"  # never dialled: fetched in-process (ASGI)
TIERS = ("business", "supervision")


@schemathesis.check
def no_server_fault(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx of any kind: not 500 (an unexpected exception, ``INTERNAL_ERROR``), and, with
    every service configured, not the 503s of an unconfigured node either (module docstring)."""
    status = response.status_code
    if status < 500:
        return None
    try:
        code = json.loads(response.content).get("code")
    except (ValueError, AttributeError):
        code = None
    raise AssertionError(f"server fault: HTTP {status} {code} from {case.operation.label}")


CHECKS = [
    no_server_fault,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FEW = settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
MANY = settings(
    max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None
)


class Signed(requests.auth.AuthBase):
    """Signs each request exactly as sent (path and query on the wire, body bytes)."""

    def __init__(self, chain: LocalChain, kp: KeyPair) -> None:
        self.chain, self.kp = chain, kp
        self.last_ms = 0

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        self.last_ms = max(time.time_ns() // 1_000_000, self.last_ms + 1)
        body = r.body if isinstance(r.body, bytes) else (r.body or "").encode()
        r.headers.update(
            sign_request(
                self.chain.suite,
                self.kp,
                self.chain.suite.address(self.kp.public_key),
                str(r.method),
                r.path_url,
                body,
                self.last_ms,
                chain_id=self.chain.state.chain_id,
            )
        )
        return r


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> ApiWorld:
    return build_api_world(tmp_path_factory.mktemp("api-schema"))


def in_process(app: Any) -> Fetch:
    """The evidence fetch of a business API, reading from ``app`` through ASGI."""

    async def fetch(url: str) -> tuple[int, bytes]:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url=SUPERVISION_API) as client:
            resp = await client.get(url, headers={"Accept": "application/json"})
            return resp.status_code, resp.content

    return fetch


@dataclass
class Served:
    """One node's API as the schema run drives it."""

    chain: LocalChain
    app: Any
    schema: Any
    sessions: dict[str, asgi.ASGIClient]


@pytest.fixture(scope="module")
def served(
    world: ApiWorld, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Served]]:
    with opened(world.business_home) as business, opened(world.supervision_home) as sup:
        index = tmp_path_factory.mktemp("api-schema-index") / "lookthrough.sqlite"
        with LookthroughIndex(index) as idx:
            progress = idx.follow_store(business.store, business.state.chain_id)
        assert progress.height == business.height
        sup_app = create_app(LocalBackend(sup), replace(OPEN, lookthrough_index=index))
        biz_app = create_app(
            LocalBackend(business),
            replace(OPEN, lookthrough_index=index, supervision_api=SUPERVISION_API),
            evidence_fetch=in_process(sup_app),
        )
        signers = {
            "business": (business, world.keys, ("regulator", "alice")),
            "supervision": (sup, world.supervision_keys, ("regulator", "relayer")),
        }
        out = {}
        for tier, app in (("business", biz_app), ("supervision", sup_app)):
            chain, keys, names = signers[tier]
            sessions = {"anonymous": asgi.get_client(app)}
            for name in names:
                client = asgi.get_client(app)
                client.auth = Signed(chain, keys[name])
                sessions[name] = client
            # The stream never ends by design (it has its own tests); everything else is in.
            schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/v1/stream")
            out[tier] = Served(chain, app, schema, sessions)
        yield out


def _exercise(node: Served, others: list[Served], run: Any) -> None:
    """Every operation, positive and negative generated cases, through every session."""
    chains = [n.chain for n in (node, *others)]
    before = [(c.height, c.state.state_root) for c in chains]
    sessions = node.sessions
    operations = [result.ok() for result in node.schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @run
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: Any) -> None:
                for session in sessions.values():
                    case.call_and_validate(session=session, checks=CHECKS)

            try:
                check()
            except Unsatisfiable:
                # Nothing to negate (an operation without parameters or body).
                assert mode == GenerationMode.NEGATIVE, operation.label
    # Generated requests never carry a valid signed transaction: nothing may change.
    assert [(c.height, c.state.state_root) for c in chains] == before


def test_configured_services_answer(served: dict[str, Served]) -> None:
    """The services the strict check relies on are there: the business node exports (fetching
    the anchor half from the supervision app) and verifies a bundle, and both nodes' dashboard
    views read the look-through index."""
    business, sup = served["business"], served["supervision"]
    raw = business.chain.store.block(1)
    assert raw is not None
    tx = decode_block(raw).transactions[0]
    resp = business.sessions["regulator"].get(
        f"/v1/evidence/tx/{tx.hash(business.chain.suite).hex()}"
    )
    assert resp.status_code == 200, resp.text
    assert parse_bundle(resp.content).anchor.supervision.chain_id == sup.chain.state.chain_id
    for node in (business, sup):
        resp = node.sessions["regulator"].get("/v1/supervision/overview")
        assert resp.status_code == 200, resp.text
        heads = resp.json()["indexed"]
        assert [h["chain_id"] for h in heads] == [business.chain.state.chain_id], heads


@pytest.mark.parametrize("tier", TIERS)
def test_schema_no_5xx(served: dict[str, Served], tier: str) -> None:
    _exercise(served[tier], [n for t, n in served.items() if t != tier], FEW)


@pytest.mark.slow
@pytest.mark.parametrize("tier", TIERS)
def test_schema_no_5xx_many(served: dict[str, Served], tier: str) -> None:
    _exercise(served[tier], [n for t, n in served.items() if t != tier], MANY)
