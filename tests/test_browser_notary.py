"""The web UI's Notary page in headless Chromium against a live local network (one validator
serving the REST API): a file deposited with a signed ``notary.deposit`` transaction is hashed IN
the page (``crypto.subtle``; the file is never sent: the page only GETs the digest's lookup) and
found — "Deposited by ORG at TIME in block H (...)" — a different file is "Not found", and a
session of the depositor's organization also sees the title and project. Chromium rules,
fixtures and screenshots as in ``tests/test_browser.py`` (``CONSORTIA_SKIP_BROWSER=1`` skips).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from consortia import codec
from consortia.modules import anchoring, notary
from consortia.node.local import ACCOUNTS_DIR
from tests.netkit import LocalNet
from tests.test_browser import (
    NODE,
    WAIT_MS,
    World,
    _wait_api,
    browser,
    browser_installed,
    page,
    shot,
    two_tier,
    wait_text,
)

# fixtures shared with test_browser
__all__ = ["browser", "browser_installed", "page", "two_tier"]

DEPOSITOR = "broker-a-admin"  # of organization broker-a


@dataclass
class Notarized:
    world: World
    paper: Path  # deposited
    other: Path  # never deposited
    deposit_id: str
    height: int


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def notarized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Notarized]:
    home = tmp_path_factory.mktemp("browser-notary-net")
    files = tmp_path_factory.mktemp("browser-notary-files")
    data = os.urandom(300_000)
    paper = _write(files / "working-paper.pdf", data)
    other = _write(files / "other.pdf", data[:-1] + bytes([data[-1] ^ 1]))  # one byte differs
    net = LocalNet(home, validators=1, api=True)
    net.start_all()
    try:
        net.wait_for([NODE], 1)
        w = World.of(home / NODE, home / ACCOUNTS_DIR)
        digest = hashlib.sha256(data).digest()
        args = {**_deposit_args(w, data, "IPO-SZTECH"), "title": "Audit FY2026"}
        height = w.must(DEPOSITOR, "notary", "deposit", args)
        raw = w.state(notary.sha256_key(digest))
        assert raw is not None
        [deposit_id] = codec.decode_struct(notary.Sha256Index, raw).deposit_ids
        _wait_api(w.base_url)
        yield Notarized(w, paper, other, deposit_id, height)
    finally:
        net.stop_all()


def _deposit_args(w: World, data: bytes, project: str) -> dict[str, Any]:
    return {
        "suite_hash": w.suite.hash(data),
        "sha256": hashlib.sha256(data).digest(),
        "doc_type": "working-paper",
        "title": f"{project} audit working paper",
        "project": project,
        "version": None,
        "previous": "",
        "size": len(data),
        "sealed_metadata": b"",
    }


def _requests(page: Any) -> list[Any]:
    sent: list[Any] = []

    def record(request: Any) -> None:  # a bound builtin cannot be a Playwright handler
        sent.append(request)

    page.on("request", record)
    return sent


def test_page_hashes_the_file_and_finds_the_deposit(notarized: Notarized, page: Any) -> None:
    w = notarized.world
    sent = _requests(page)
    page.goto(f"{w.base_url}/ui/#/notary")
    page.wait_for_selector("#view-notary:not([hidden])")
    page.set_input_files("#notary-input", str(notarized.paper))
    digest = hashlib.sha256(notarized.paper.read_bytes()).hexdigest()
    wait_text(page, "#notary-sha256", lambda t: t == digest, "the SHA-256 computed in the page")
    answer = wait_text(
        page, "#notary-result .answer", lambda t: t.startswith("Deposited"), "the answer"
    )
    assert answer.startswith("Deposited by broker-a at 20")
    assert f"in block {notarized.height} (" in answer
    assert "anchoring not known: this node has no supervision API configured" in answer
    card = page.locator(f'[data-deposit="{notarized.deposit_id}"]').text_content() or ""
    assert notarized.deposit_id in card and f"{notarized.paper.stat().st_size}" in card
    assert "Audit FY2026" not in card  # not signed in: public facts only
    shot(page, "notary-found")
    # the file never left the page: only GETs, none with a body, the digest in the lookup
    assert all(r.method == "GET" and not r.post_data for r in sent)
    assert any(r.url.endswith(f"/v1/notary/sha256/{digest}") for r in sent)


def test_a_different_file_is_not_found(notarized: Notarized, page: Any) -> None:
    w = notarized.world
    page.goto(f"{w.base_url}/ui/#/notary")
    page.wait_for_selector("#view-notary:not([hidden])")
    page.set_input_files("#notary-input", str(notarized.other))
    digest = hashlib.sha256(notarized.other.read_bytes()).hexdigest()
    wait_text(page, "#notary-sha256", lambda t: t == digest, "the other file's SHA-256")
    answer = wait_text(
        page, "#notary-result .answer", lambda t: t.startswith("Not found"), "not found"
    )
    assert f"on {w.chain_id}" in answer
    assert page.locator("#notary-result [data-deposit]").count() == 0
    shot(page, "notary-not-found")


def test_the_depositors_org_sees_the_metadata(notarized: Notarized, page: Any) -> None:
    w = notarized.world
    token = w.token("broker-a-admin")
    page.goto(f"{w.base_url}/ui/#session={token}")
    wait_text(page, "#who", lambda t: "broker-a" in t, "signed in")
    page.goto(f"{w.base_url}/ui/#/notary")
    page.wait_for_selector("#view-notary:not([hidden])")
    page.set_input_files("#notary-input", str(notarized.paper))
    card = wait_text(
        page,
        f'[data-deposit="{notarized.deposit_id}"]',
        lambda t: "Audit FY2026" in t,
        "the title for the depositor's organization",
    )
    assert "IPO-SZTECH" in card and "working-paper" in card
    shot(page, "notary-found-signed-in")


# -- two tiers: the answer names the supervision block that anchored the deposit ------------------


def _api_json(url: str) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    with opener.open(url, timeout=5) as resp:
        body: dict[str, Any] = json.loads(resp.read())
        return body


def test_anchored_deposit_and_the_regulators_notary_panels(
    two_tier: tuple[World, World], page: Any, tmp_path: Path
) -> None:
    """On the business node the page says which supervision block anchored the deposit (the
    anchor record on the supervision chain agrees); on the supervision node the regulator's
    dashboard lists the deposit's project (the follower indexed it) and no gap."""
    biz, sup = two_tier
    data = os.urandom(64_000)
    paper = _write(tmp_path / "contract.pdf", data)
    height = biz.must(DEPOSITOR, "notary", "deposit", _deposit_args(biz, data, "BOND-2026"))
    digest = hashlib.sha256(data).hexdigest()
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:  # the relayer anchors the block within a few rounds
        [d] = _api_json(f"{biz.base_url}/v1/notary/sha256/{digest}")["deposits"]
        if d["anchor"]["status"] == "anchored" or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert d["anchor"]["status"] == "anchored", d["anchor"]
    raw = sup.state(anchoring.anchor_key(biz.chain_id, height))
    assert raw is not None
    supervision_height = codec.decode_struct(anchoring.Anchor, raw).anchored_height

    page.goto(f"{biz.base_url}/ui/#/notary")
    page.wait_for_selector("#view-notary:not([hidden])")
    page.set_input_files("#notary-input", str(paper))
    answer = wait_text(
        page, "#notary-result .answer", lambda t: t.startswith("Deposited"), "the answer"
    )
    assert f"in block {height} (anchored at supervision height {supervision_height})" in answer
    assert answer.startswith("Deposited by broker-a at 20")
    shot(page, "notary-anchored")

    page.goto(f"{sup.base_url}/ui/#session={sup.token('regulator')}")
    wait_text(page, "#who", lambda t: "regulator" in t, "signed in as the regulator")
    page.goto(f"{sup.base_url}/ui/#/dashboard")
    row = wait_text(page, "#dash-notary", lambda t: "BOND-2026" in t, "the notary panel")
    assert "broker-a" in row and biz.chain_id in row
    gaps = page.locator("#dash-notary-gaps").text_content() or ""
    assert "no project idle for more than 30 days" in gaps
    shot(page, "dashboard-notary")
