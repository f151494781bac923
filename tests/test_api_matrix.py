"""Every endpoint of the OpenAPI schema, walked from the schema itself, against bad input and
unauthorized access: a new route is covered the day it is added.

For each operation (over a business chain that ran the whole story, with a look-through index):

- unsigned, a private read answers 401 ``AUTH_REQUIRED``; a public one answers (2xx or 4xx);
- a request signed with the wrong key for a registered account answers 401
  ``BAD_REQUEST_SIGNATURE`` on a private read;
- unknown ids, signed by an investor, answer 403 or 404 (never 2xx, never 5xx);
- a wrong type for an integer path parameter, and an oversize id, answer 400 (or 404/414);
- every refusal is an RFC 9457 problem (``application/problem+json`` with a stable ``code``);
- the chain is exactly as before (height and state root).

``POST /v1/tx`` gets malformed JSON, wrong types, an oversize body and garbage hex.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consortia.api import LocalBackend, create_app, sign_request
from consortia.api.app import ApiSettings
from consortia.crypto import KeyPair
from consortia.lookthrough.index import LookthroughIndex
from consortia.node.local import LocalChain
from tests.apiworld import ApiWorld, build_api_world, opened

# Never-seen values for each kind of path parameter.
UNKNOWN: dict[str, str] = {
    "integer": "999999",
    "hex": "ab" * 32,
    "string": "NO-SUCH-ID-42",
}
STREAM = "/v1/stream"  # never ends by design; its own tests cover it


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> ApiWorld:
    return build_api_world(tmp_path_factory.mktemp("api-matrix"))


@pytest.fixture(scope="module")
def index_path(world: ApiWorld, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lookthrough") / "index.sqlite"
    with LookthroughIndex(path) as index:
        index.follow_home(world.business_home)
    return path


@pytest.fixture(scope="module")
def chain(world: ApiWorld) -> Iterator[LocalChain]:
    with opened(world.business_home) as c:
        yield c


@pytest.fixture(scope="module")
def client(index_path: Path, chain: LocalChain) -> TestClient:  # index first: one store opener
    settings = ApiSettings(rate_per_s=1e9, burst=1_000_000, lookthrough_index=index_path)
    return TestClient(create_app(LocalBackend(chain), settings), raise_server_exceptions=False)


def _operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    schema = client.get("/openapi.json").json()
    out = []
    for path, item in sorted(schema["paths"].items()):
        for method, op in sorted(item.items()):
            if method in ("get", "post") and path != STREAM:
                out.append((method.upper(), path, op))
    return out


def _is_private(op: dict[str, Any]) -> bool:
    return "401" in op.get("responses", {})


def _param_kind(name: str, param: dict[str, Any]) -> str:
    if param.get("schema", {}).get("type") == "integer":
        return "integer"
    if name.endswith(("_hex", "_hash")) or name in ("address", "key"):
        return "hex"
    return "string"


def _fill(path: str, op: dict[str, Any], override: dict[str, str] | None = None) -> str:
    for param in op.get("parameters", []):
        if param.get("in") != "path":
            continue
        name = param["name"]
        value = (override or {}).get(name) or UNKNOWN[_param_kind(name, param)]
        path = path.replace("{" + name + "}", value).replace("{" + name + ":path}", value)
    return path


class Signer:
    def __init__(self, chain: LocalChain) -> None:
        self.chain = chain
        self.last_ms = 0

    def headers(
        self, kp: KeyPair, method: str, target: str, *, claim: bytes | None = None
    ) -> dict[str, str]:
        self.last_ms = max(time.time_ns() // 1_000_000, self.last_ms + 1)
        suite = self.chain.suite
        address = claim if claim is not None else suite.address(kp.public_key)
        chain_id = self.chain.state.chain_id
        stamp = self.last_ms
        return sign_request(suite, kp, address, method, target, b"", stamp, chain_id=chain_id)


def _snapshot(chain: LocalChain) -> tuple[int, bytes]:
    return chain.state.height, chain.state.state_root


def _assert_problem(resp: Any, *statuses: int) -> str:
    assert resp.status_code in statuses, (resp.status_code, resp.text[:300])
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body = resp.json()
    assert body["status"] == resp.status_code and body["code"], body
    return str(body["code"])


def test_the_walk_covers_every_operation(client: TestClient) -> None:
    ops = _operations(client)
    paths = {p for _, p, _ in ops}
    # Not a fixed list: a sanity floor, so a broken schema walk cannot pass vacuously.
    assert len(ops) >= 30, len(ops)
    for expected in ("/v1/tx", "/v1/me", "/v1/funds/{code}", "/v1/policies/{policy_id}",
                     "/v1/supervision/alerts", "/v1/evidence/tx/{tx_hash}", "/v1/activity"):
        assert expected in paths, expected


def test_unsigned_private_reads_are_refused_and_public_ones_answer(
    client: TestClient, chain: LocalChain
) -> None:
    before = _snapshot(chain)
    private = 0
    for method, path, op in _operations(client):
        if method != "GET":
            continue
        resp = client.get(_fill(path, op))
        assert resp.status_code < 500 or resp.json().get("code") in (
            "EVIDENCE_UNAVAILABLE",
            "NOT_A_SUPERVISION_NODE",
        ), (path, resp.status_code, resp.text[:200])
        if _is_private(op):
            private += 1
            assert _assert_problem(resp, 401) == "AUTH_REQUIRED", path
    assert private >= 15
    assert _snapshot(chain) == before


def test_a_wrong_key_for_a_registered_account_is_refused_everywhere(
    client: TestClient, chain: LocalChain, world: ApiWorld
) -> None:
    before = _snapshot(chain)
    signer = Signer(chain)
    regulator = chain.suite.address(world.keys["regulator"].public_key)
    forger = world.keys["alice"]  # a real key, but not the regulator's
    for method, path, op in _operations(client):
        if method != "GET" or not _is_private(op):
            continue
        target = _fill(path, op)
        resp = client.get(target, headers=signer.headers(forger, "GET", target, claim=regulator))
        assert _assert_problem(resp, 401) == "BAD_REQUEST_SIGNATURE", path
    assert _snapshot(chain) == before


def test_unknown_ids_are_refused_to_an_investor_without_revealing_anything(
    client: TestClient, chain: LocalChain, world: ApiWorld
) -> None:
    before = _snapshot(chain)
    signer = Signer(chain)
    alice = world.keys["alice"]
    checked = 0
    for method, path, op in _operations(client):
        if method != "GET" or not _is_private(op) or "{" not in path:
            continue
        target = _fill(path, op)
        resp = client.get(target, headers=signer.headers(alice, "GET", target))
        _assert_problem(resp, 400, 403, 404)
        checked += 1
    assert checked >= 10
    assert _snapshot(chain) == before


def test_unknown_ids_answer_404_to_the_regulator(
    client: TestClient, chain: LocalChain, world: ApiWorld
) -> None:
    signer = Signer(chain)
    regulator = world.keys["regulator"]
    for method, path, op in _operations(client):
        if method != "GET" or "{" not in path:
            continue
        target = _fill(path, op)
        headers = signer.headers(regulator, "GET", target) if _is_private(op) else {}
        resp = client.get(target, headers=headers)
        if path.startswith("/v1/evidence/") and resp.status_code == 503:
            continue  # this business node has no supervision API: by design, documented
        if path == "/v1/state/{key_hex}":
            # An absent key is answered with its non-membership proof: that is the read's point.
            assert resp.status_code == 200 and resp.json()["value"] is None
            continue
        if path == "/v1/notary/sha256/{sha256_hex}":
            # A file nobody deposited: no deposits, with the index key's non-membership proof.
            assert resp.status_code == 200 and resp.json()["deposits"] == []
            continue
        _assert_problem(resp, 400, 404, 409)


def test_wrong_types_and_oversize_ids_are_400(
    client: TestClient, chain: LocalChain, world: ApiWorld
) -> None:
    before = _snapshot(chain)
    signer = Signer(chain)
    regulator = world.keys["regulator"]
    checked = 0
    for method, path, op in _operations(client):
        if method != "GET":
            continue
        for param in op.get("parameters", []):
            if param.get("in") != "path":
                continue
            name = param["name"]
            bad = "not-a-number" if _param_kind(name, param) == "integer" else "x" * 5000
            target = _fill(path, op, {name: bad})
            headers = signer.headers(regulator, "GET", target) if _is_private(op) else {}
            resp = client.get(target, headers=headers)
            _assert_problem(resp, 400, 404, 414)
            checked += 1
    assert checked >= 20
    assert _snapshot(chain) == before


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b'{"tx": 12, "wait": "yes"}', "application/json", 400),
        (b'{"tx": "zz-not-hex"}', "application/json", 400),
        (b'{"tx": "00ff"}', "application/json", 400),
        (b'{"tx": "' + b"ab" * 300_000 + b'"}', "application/json", 413),
        (b"[]", "application/json", 400),
    ],
    ids=["malformed-json", "wrong-types", "not-hex", "garbage-tx", "oversize", "not-an-object"],
)
def test_bad_submissions_are_problems_and_change_nothing(
    client: TestClient, chain: LocalChain, body: bytes, content_type: str, status: int
) -> None:
    before = _snapshot(chain)
    resp = client.post("/v1/tx", content=body, headers={"content-type": content_type})
    _assert_problem(resp, status)
    assert _snapshot(chain) == before
