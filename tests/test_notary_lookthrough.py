"""The regulator's look-through of notary deposits: deposits per institution per project and the
gap report (projects whose latest deposit is older than N days of block time), from real
``notary`` transactions committed by a ``LocalChain`` with a controlled clock and indexed from its
store; the same through ``consortia supervise deposits|gaps`` and ``/v1/supervision/notary``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from consortia.api import ApiSettings, LocalBackend, create_app
from consortia.cli import app as cli_app
from consortia.crypto import KeyPair
from consortia.ledger.types import TxStatus
from consortia.lookthrough.index import LookthroughError, LookthroughIndex
from consortia.modules.calendar import DAY_MS
from consortia.node.demo import _Signer
from consortia.node.home import init_home
from consortia.node.local import ACCOUNTS_DIR, VALIDATORS_DIR, LocalChain, load_key_dir
from tests.test_api import assert_problem
from tests.test_api_auth import Caller, Clock

PASSWORD = "notary-lookthrough"
CHAIN = "biz-notary"
T0 = 1_900_000_000_000  # block time of day 0 (after the genesis time: wall clock at init)
HEAD_DAY = 41


@dataclass
class Notarized:
    chain: LocalChain
    index: Path
    keys: dict[str, KeyPair]
    ids: dict[str, str]  # label -> deposit id


class BlockClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@pytest.fixture(scope="module")
def notarized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Notarized]:
    """broker-a: IPO-A v1 (day 0), v2 (day 1), v3 (day 40); BOND-B v1 (day 2), then silence.
    broker-b: IPO-C v1 (day 3), withdrawn on day 5. The chain's head is on day 41."""
    base = tmp_path_factory.mktemp("notary-lookthrough")
    home = base / "home"
    init_home(home, chain_id=CHAIN, password=PASSWORD, scrypt_n=1 << 10)
    keys = load_key_dir(home / ACCOUNTS_DIR, PASSWORD)
    clock = BlockClock()
    chain = LocalChain(home, load_key_dir(home / VALIDATORS_DIR, PASSWORD), clock_ms=clock)
    signer = _Signer(chain.suite, CHAIN)
    ids: dict[str, str] = {}

    def at(day: int) -> None:
        """The next block's time is day ``day`` (BFT time: the previous certificate's votes)."""
        clock.now = T0 + day * DAY_MS
        chain.commit([])

    def commit(day: int, who: str, method: str, args: dict[str, Any]) -> dict[str, Any]:
        at(day)
        done = chain.commit([signer.tx(keys[who], "notary", method, args)])
        [receipt] = done.receipts
        assert receipt.status == TxStatus.OK, receipt
        return {k: v for e in receipt.events for k, v in e.attributes.items()}

    def deposit(label: str, day: int, who: str, project: str, previous: str = "") -> None:
        data = f"{project} {label}".encode()
        args = {
            "suite_hash": chain.suite.hash(data),
            "sha256": hashlib.sha256(data).digest(),
            "doc_type": "working-paper",
            "title": f"{project} working paper",
            "project": project,
            "version": None,
            "previous": ids.get(previous, ""),
            "size": len(data),
            "sealed_metadata": b"",
        }
        ids[label] = str(commit(day, who, "deposit", args)["deposit_id"])

    try:
        deposit("a1", 0, "broker-a-admin", "IPO-A")
        deposit("a2", 1, "broker-a-admin", "IPO-A", "a1")
        deposit("b1", 2, "broker-a-admin", "BOND-B")
        deposit("c1", 3, "broker-b-admin", "IPO-C")
        commit(5, "broker-b-admin", "withdraw", {"deposit_id": ids["c1"], "reason": "mistake"})
        deposit("a3", 40, "broker-a-admin", "IPO-A", "a2")
        at(HEAD_DAY)
        chain.commit([])  # the head, on day HEAD_DAY
        index = base / "lookthrough.sqlite"
        with LookthroughIndex(index) as idx:
            idx.follow_store(chain.store, CHAIN)
        yield Notarized(chain, index, keys, ids)
    finally:
        chain.close()


def test_deposits_per_institution_per_project(notarized: Notarized) -> None:
    ids = notarized.ids
    with LookthroughIndex(notarized.index, readonly=True) as idx:
        rows = idx.notary_projects()
        a_rows = idx.notary_projects(org_id="broker-a")
        ipo_a = idx.notary_deposits("broker-a", "IPO-A")
        nothing = idx.notary_projects(org_id="broker-z")
    head = T0 + HEAD_DAY * DAY_MS
    assert [(r["org_id"], r["project"]) for r in rows] == [
        ("broker-a", "BOND-B"),
        ("broker-a", "IPO-A"),
        ("broker-b", "IPO-C"),
    ]
    bond, ipo, ipo_c = rows
    assert (bond["deposits"], bond["withdrawn"], bond["latest_deposit_id"]) == (1, 0, ids["b1"])
    assert bond["latest_time_ms"] == T0 + 2 * DAY_MS and bond["head_time_ms"] == head
    assert (ipo["deposits"], ipo["latest_deposit_id"], ipo["latest_version"]) == (3, ids["a3"], 3)
    assert ipo["latest_time_ms"] == T0 + 40 * DAY_MS and ipo["chain_id"] == CHAIN
    assert (ipo_c["deposits"], ipo_c["withdrawn"]) == (1, 1)
    assert a_rows == [bond, ipo] and nothing == []
    assert [d["deposit_id"] for d in ipo_a] == [ids["a3"], ids["a2"], ids["a1"]]
    assert [d["previous"] for d in ipo_a] == [ids["a2"], ids["a1"], ""]
    assert [d["version"] for d in ipo_a] == [3, 2, 1]
    assert all(d["withdrawn_height"] is None and d["doc_type"] == "working-paper" for d in ipo_a)


def test_gap_report(notarized: Notarized) -> None:
    with LookthroughIndex(notarized.index, readonly=True) as idx:
        gaps = idx.notary_gaps(30)
        assert [(g["project"], g["idle_days"]) for g in gaps] == [("BOND-B", 39), ("IPO-C", 38)]
        assert gaps[0]["idle_ms"] == (HEAD_DAY - 2) * DAY_MS
        assert [g["project"] for g in idx.notary_gaps(30, org_id="broker-a")] == ["BOND-B"]
        assert [g["project"] for g in idx.notary_gaps(0)] == ["BOND-B", "IPO-C", "IPO-A"]
        assert idx.notary_gaps(39) == []  # BOND-B idle exactly 39 days: not more than that
        assert [g["project"] for g in idx.notary_gaps(38)] == ["BOND-B"]
        with pytest.raises(LookthroughError):
            idx.notary_gaps(-1)


def test_cli_deposits_and_gaps(notarized: Notarized) -> None:
    runner = CliRunner()
    db = str(notarized.index)
    r = runner.invoke(cli_app, ["supervise", "deposits", "--db", db, "--json"])
    assert r.exit_code == 0, r.output
    assert [p["project"] for p in json.loads(r.stdout)] == ["BOND-B", "IPO-A", "IPO-C"]
    r = runner.invoke(
        cli_app,
        ["supervise", "deposits", "--db", db, "--org", "broker-a", "--project", "IPO-A"],
    )
    assert r.exit_code == 0, r.output
    assert notarized.ids["a3"] in r.output and notarized.ids["a1"] in r.output
    r = runner.invoke(cli_app, ["supervise", "gaps", "--db", db, "--days", "30", "--json"])
    assert r.exit_code == 0, r.output
    assert [g["project"] for g in json.loads(r.stdout)] == ["BOND-B", "IPO-C"]
    r = runner.invoke(cli_app, ["supervise", "gaps", "--db", db, "--days", "30"])
    assert r.exit_code == 0 and "BOND-B" in r.output and "IPO-A" not in r.output
    r = runner.invoke(cli_app, ["supervise", "gaps", "--db", db, "--days", "-1"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    r = runner.invoke(cli_app, ["supervise", "gaps", "--db", db + ".missing", "--days", "3"])
    assert r.exit_code == 2 and "no index" in r.output


@pytest.fixture(scope="module")
def api(notarized: Notarized) -> Iterator[tuple[TestClient, dict[str, Caller]]]:
    clock = Clock()
    settings = ApiSettings(rate_per_s=1e6, burst=1_000_000, lookthrough_index=notarized.index)
    app = create_app(LocalBackend(notarized.chain), settings, clock_ms=clock)
    callers = {
        n: Caller(notarized.chain, notarized.keys[n], clock)
        for n in ("regulator", "broker-a-admin")
    }
    with TestClient(app) as c:
        yield c, callers


def test_supervision_endpoint(
    notarized: Notarized, api: tuple[TestClient, dict[str, Caller]]
) -> None:
    client, who = api
    resp = who["regulator"].get(client, "/v1/supervision/notary?gap_days=30")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [p["project"] for p in body["projects"]] == ["BOND-B", "IPO-A", "IPO-C"]
    assert [g["project"] for g in body["gaps"]] == ["BOND-B", "IPO-C"]
    assert body["gap_days"] == 30 and body["deposits"] == []
    assert body["indexed"][0]["chain_id"] == CHAIN
    one = who["regulator"].get(client, "/v1/supervision/notary?org=broker-a&project=IPO-A").json()
    assert [p["project"] for p in one["projects"]] == ["IPO-A"]
    assert one["deposits"][0]["deposit_id"] == notarized.ids["a3"]
    assert [g["project"] for g in one["gaps"]] == ["BOND-B"]  # the default: 30 days
    # the regulator only; bad input is a problem
    assert_problem(who["broker-a-admin"].get(client, "/v1/supervision/notary"), 403, "FORBIDDEN")
    assert client.get("/v1/supervision/notary").status_code == 401
    bad = who["regulator"].get(client, "/v1/supervision/notary?gap_days=-1")
    assert_problem(bad, 400, "BAD_REQUEST")
    long_org = "x" * 300
    bad = who["regulator"].get(client, f"/v1/supervision/notary?org={long_org}")
    assert_problem(bad, 400, "BAD_REQUEST")
