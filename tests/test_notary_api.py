"""Notary reads over the REST API (``consortia.api.notary``): a file found by its SHA-256 with its
public facts for everyone and its metadata for the depositor's organization and the regulator
only, deposits by number, version links and withdrawal, anchoring answered from a supervision
API (served in-process), and problems for bad input."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from consortia import codec
from consortia.api import LocalBackend, create_app
from consortia.api.app import ApiSettings
from consortia.api.auth import HEADER_ACCOUNT, HEADER_SIGNATURE, HEADER_TIMESTAMP
from consortia.ledger.types import TxStatus
from consortia.modules import anchoring, notary
from consortia.node.local import LocalChain
from tests.test_api import OPEN, _Signer, assert_problem, world
from tests.test_api_auth import Caller, Clock

__all__ = ["world"]

PAPER = b"working paper v1: audit of Shenzhen Tech Co., FY2026\n"
PAPER_V2 = PAPER + b"addendum: inventory count\n"
OTHER = b"a file nobody deposited\n"
PRIVATE = ("doc_type", "title", "project", "sealed_metadata", "withdraw_reason")
SUPERVISION = "http://supervision.test"
SUPERVISION_HEIGHT = 77


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Deposits:
    v1: str
    v2: str
    h1: int
    h2: int


def _commit(chain: LocalChain, tx: Any) -> tuple[int, dict[str, Any]]:
    done = chain.commit([tx])
    [receipt] = done.receipts
    assert receipt.status == TxStatus.OK, receipt
    attrs = {k: v for e in receipt.events if e.module == "notary" for k, v in e.attributes.items()}
    return done.block.header.height, attrs


@pytest.fixture(scope="module")
def deposits(world: tuple[LocalChain, dict[str, Any]]) -> Deposits:
    """PAPER and its second version PAPER_V2, deposited by broker-a; the first withdrawn."""
    chain, keys = world
    signer = _Signer(chain)
    ids: list[str] = []
    heights: list[int] = []
    for data in (PAPER, PAPER_V2):
        args = {
            "suite_hash": chain.suite.hash(data),
            "sha256": hashlib.sha256(data).digest(),
            "doc_type": "working-paper",
            "title": "Audit FY2026",
            "project": "IPO-SZTECH",
            "version": None,
            "previous": ids[-1] if ids else "",
            "size": len(data),
            "sealed_metadata": b"",
        }
        height, attrs = _commit(chain, signer.tx(keys["broker-a-admin"], "notary", "deposit", args))
        ids.append(str(attrs["deposit_id"]))
        heights.append(height)
    withdraw = {"deposit_id": ids[0], "reason": "superseded by the signed version"}
    _commit(chain, signer.tx(keys["broker-a-admin"], "notary", "withdraw", withdraw))
    return Deposits(ids[0], ids[1], heights[0], heights[1])


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def client(world: tuple[LocalChain, dict[str, Any]], clock: Clock) -> Iterator[TestClient]:
    chain, _ = world
    with TestClient(create_app(LocalBackend(chain), OPEN, clock_ms=clock)) as c:
        yield c


@pytest.fixture(scope="module")
def who(world: tuple[LocalChain, dict[str, Any]], clock: Clock) -> dict[str, Caller]:
    chain, keys = world
    return {name: Caller(chain, kp, clock) for name, kp in keys.items()}


def _lookup(client: TestClient, data: bytes, caller: Caller | None = None) -> dict[str, Any]:
    path = f"/v1/notary/sha256/{sha(data)}"
    resp = client.get(path) if caller is None else caller.get(client, path)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_anyone_finds_a_deposit_by_sha256(
    client: TestClient, deposits: Deposits, world: tuple[LocalChain, Any]
) -> None:
    chain, keys = world
    body = _lookup(client, PAPER)
    assert body["sha256"] == sha(PAPER) and body["chain_id"] == chain.state.chain_id
    assert body["height"] == chain.height and body["state_root"] == chain.state.state_root.hex()
    assert body["key"] == notary.sha256_key(hashlib.sha256(PAPER).digest()).hex()
    index = codec.decode_struct(notary.Sha256Index, bytes.fromhex(body["value"]))
    assert index.deposit_ids == (deposits.v1,)
    [d] = body["deposits"]
    assert d["access"] == "public"
    assert d["deposit_id"] == deposits.v1 and d["depositor_org"] == "broker-a"
    assert d["depositor"] == chain.suite.address(keys["broker-a-admin"].public_key).hex()
    assert d["height"] == deposits.h1 and d["size"] == len(PAPER) and d["version"] == 1
    assert d["suite_hash"] == chain.suite.hash(PAPER).hex()
    assert d["previous"] == "" and d["next"] == deposits.v2
    assert d["withdrawn"] is True and d["withdrawn_height"] > deposits.h2
    assert d["anchor"] == {
        "status": "unknown",
        "reason": "this node has no supervision API configured",
    }
    for name in PRIVATE:
        assert name not in d
    assert "Audit FY2026" not in json.dumps(body) and "IPO-SZTECH" not in json.dumps(body)


def test_a_file_nobody_deposited_is_not_found(client: TestClient, deposits: Deposits) -> None:
    body = _lookup(client, OTHER)
    assert body["deposits"] == [] and body["value"] is None and body["proof"]
    # one byte changed: another digest, not found either
    assert _lookup(client, PAPER[:-1] + b"?")["deposits"] == []


@pytest.mark.parametrize(
    ("name", "access"),
    [("broker-a-admin", "depositor_org"), ("alice", "depositor_org"), ("regulator", "regulator")],
)
def test_metadata_for_the_depositors_org_and_the_regulator(
    client: TestClient, deposits: Deposits, who: dict[str, Caller], name: str, access: str
) -> None:
    [d] = _lookup(client, PAPER_V2, who[name])["deposits"]
    assert d["access"] == access and d["deposit_id"] == deposits.v2
    assert (d["doc_type"], d["title"], d["project"]) == (
        "working-paper",
        "Audit FY2026",
        "IPO-SZTECH",
    )
    assert d["version"] == 2 and d["previous"] == deposits.v1 and d["withdrawn"] is False
    [v1] = _lookup(client, PAPER, who[name])["deposits"]
    assert v1["withdraw_reason"] == "superseded by the signed version"


def test_another_org_sees_only_the_public_facts(
    client: TestClient, deposits: Deposits, who: dict[str, Caller]
) -> None:
    [d] = _lookup(client, PAPER_V2, who["bob"])["deposits"]  # an account of broker-b
    assert d["access"] == "public" and d["deposit_id"] == deposits.v2
    for name in PRIVATE:
        assert name not in d


def test_deposit_by_number(
    client: TestClient, deposits: Deposits, who: dict[str, Caller], world: tuple[LocalChain, Any]
) -> None:
    chain, _ = world
    public = client.get(f"/v1/notary/deposits/{deposits.v2}")
    assert public.status_code == 200, public.text
    body = public.json()
    assert body["deposit"]["deposit_id"] == deposits.v2 and body["deposit"]["access"] == "public"
    assert body["deposit"]["sha256"] == sha(PAPER_V2) and body["deposit"]["previous"] == deposits.v1
    assert "value" not in body and body["proof"]  # the raw record holds the metadata
    assert body["key"] == notary.deposit_key(deposits.v2).hex()
    reg = who["regulator"].get(client, f"/v1/notary/deposits/{deposits.v2}").json()
    assert reg["deposit"]["access"] == "regulator" and reg["deposit"]["title"] == "Audit FY2026"
    record = codec.decode_struct(notary.Deposit, bytes.fromhex(reg["value"]))
    assert record == notary.load_deposit(chain.state.tree.get, deposits.v2)


def test_bad_input_is_a_problem(client: TestClient, deposits: Deposits) -> None:
    for bad in ("zz", sha(PAPER)[:-1], sha(PAPER) + "00", "g" * 64):
        assert_problem(client.get(f"/v1/notary/sha256/{bad}"), 400, "BAD_REQUEST")
    assert_problem(client.get("/v1/notary/deposits/no%20such%20id!"), 400, "BAD_REQUEST")
    assert_problem(client.get("/v1/notary/deposits/ND-9999999999"), 404, "NOT_FOUND")
    # a request that claims a signature must carry a valid one: never silently public
    forged = {HEADER_ACCOUNT: "00" * 20, HEADER_TIMESTAMP: "1", HEADER_SIGNATURE: "00"}
    resp = client.get(f"/v1/notary/sha256/{sha(PAPER)}", headers=forged)
    assert resp.status_code == 401 and "Audit" not in resp.text
    resp = client.get(
        f"/v1/notary/deposits/{deposits.v1}", headers={"Authorization": "Consortia-Session x"}
    )
    assert resp.status_code == 401


def _supervision(chain: LocalChain, anchored_up_to: int) -> Any:
    """An in-process supervision API whose state anchors this chain's blocks 1..anchored_up_to,
    block h anchored by supervision block SUPERVISION_HEIGHT + h."""
    chain_id = chain.state.chain_id
    zero = b"\x00" * 32
    top = anchoring.AnchoredChain(
        chain_id, chain.suite.name, zero, 0, anchored_up_to, zero, 0, zero,
        chain.state.validators, 1, b"\x00" * 20,
    )  # fmt: skip
    values = {anchoring.chain_key(chain_id): codec.encode_struct(top)}
    for h in range(1, anchored_up_to + 1):
        anchor = anchoring.Anchor(chain_id, h, zero, 0, zero, zero, zero, SUPERVISION_HEIGHT + h)
        values[anchoring.anchor_key(chain_id, h)] = codec.encode_struct(anchor)
    asked: list[str] = []

    async def fetch(url: str) -> tuple[int, bytes]:
        asked.append(url)
        prefix = f"{SUPERVISION}/v1/state/"
        assert url.startswith(prefix), url
        value = values.get(bytes.fromhex(url[len(prefix) :]))
        return 200, json.dumps({"value": None if value is None else value.hex()}).encode()

    fetch.asked = asked  # type: ignore[attr-defined]
    return fetch


def test_anchoring_from_the_supervision_api(
    deposits: Deposits, world: tuple[LocalChain, Any], clock: Clock
) -> None:
    chain, _ = world
    fetch = _supervision(chain, deposits.h1)
    settings = ApiSettings(rate_per_s=1e6, burst=1_000_000, supervision_api=SUPERVISION)
    app = create_app(LocalBackend(chain), settings, clock_ms=clock, evidence_fetch=fetch)
    with TestClient(app) as c:
        [v1] = _lookup(c, PAPER)["deposits"]
        assert v1["anchor"] == {
            "status": "anchored",
            "supervision_height": SUPERVISION_HEIGHT + deposits.h1,
        }
        [v2] = _lookup(c, PAPER_V2)["deposits"]
        assert v2["anchor"] == {"status": "not_anchored", "anchored_height": deposits.h1}
        asked = len(fetch.asked)
        assert _lookup(c, PAPER)["deposits"][0]["anchor"]["status"] == "anchored"
        assert len(fetch.asked) == asked  # an anchor, once seen, is cached


def test_unreachable_supervision_api_leaves_anchoring_unknown(
    deposits: Deposits, world: tuple[LocalChain, Any], clock: Clock
) -> None:
    chain, _ = world

    async def down(url: str) -> tuple[int, bytes]:
        raise OSError("connection refused")

    settings = ApiSettings(rate_per_s=1e6, burst=1_000_000, supervision_api=SUPERVISION)
    app = create_app(LocalBackend(chain), settings, clock_ms=clock, evidence_fetch=down)
    with TestClient(app) as c:
        resp = c.get(f"/v1/notary/deposits/{deposits.v1}")
        assert resp.status_code == 200, resp.text
        anchor = resp.json()["deposit"]["anchor"]
        assert anchor["status"] == "unknown" and "connection refused" in anchor["reason"]
