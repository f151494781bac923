"""The web UI in headless Chromium (Debian's ``chromium``, driven by Playwright with
``executable_path``) against live local networks of real node processes.

Two module-scoped networks, each started once and only if a test asks for it:

- ``world``: one business chain (a validator serving the REST API) on which the demo story's
  first steps (members, listing, wallets, insurance, fund) commit real transactions: the
  explorer, the investor view (session grants of ``alice``, ``bob``, ``issuer``), sign-in and
  sign-out, refused and revoked sessions, and the dashboard on a node without a look-through
  index (503 ``LOOKTHROUGH_UNAVAILABLE`` shown, activity chart live);
- ``two_tier``: a supervision chain and a business chain, the relayer anchoring it and the
  look-through follower indexing it: the regulator signs in on the supervision node with the URL
  ``consortia api login`` prints, and the dashboard shows the anchoring, alerts, large payments,
  a look-through and a holder register.

Each test checks real values from the chain, submits a new transaction and checks that the page
updates without a reload. Full-page screenshots go to ``test-artifacts/screenshots/``.
Chromium comes from the distribution (``scripts/bootstrap.sh`` installs it); Playwright's own
browser downloads are never used. These tests must run: a missing ``/usr/bin/chromium`` (or
Playwright) fails every test of the module, naming the script that installs it, unless
``CONSORTIA_SKIP_BROWSER=1`` is set, which turns that failure into a skip with the same reason.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from typer.testing import CliRunner

from consortia import codec
from consortia.api.auth import issue_session
from consortia.cli import app as cli_app
from consortia.crypto import KeyPair, Suite, decrypt_key_file, get_suite
from consortia.ledger.types import Transaction
from consortia.modules import ecny
from consortia.node.client import call
from consortia.node.demo import _Signer
from consortia.node.demo_network import NetworkStoryChain
from consortia.node.local import ACCOUNTS_DIR, load_genesis
from consortia.node.network_home import NodeConfig
from consortia.node.story import Story
from consortia.node.supervisor import node_homes, spawn_node
from consortia.node.topology import (
    bootstrap,
    entry_node,
    init_two_tier,
    observer_node,
    spawn_follower,
    spawn_relay,
    wait_until_serving,
)
from tests.netkit import PASSWORD, LocalNet
from tests.twotierkit import free_two_tier_base, stop_process

CHROMIUM = Path("/usr/bin/chromium")
SKIP_ENV = "CONSORTIA_SKIP_BROWSER"
INSTALLER = "scripts/bootstrap.sh"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
NODE = "validator-0"
HOUR_MS = 3_600_000
WAIT_MS = 20_000  # a page condition must hold within this
T = TypeVar("T")


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: run {INSTALLER} (it installs the Debian package chromium)"
    try:
        importlib.import_module("playwright.sync_api")
    except ImportError:
        return f"the playwright package is missing: run {INSTALLER} (it installs .[dev])"
    return None


@pytest.fixture(scope="module", autouse=True)
def browser_installed() -> None:
    """Fail (``CONSORTIA_SKIP_BROWSER=1``: skip) every test here when the browser is missing;
    autouse and module-scoped, so this runs before any network is started."""
    why = browser_missing()
    if why is None:
        return
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{why} ({SKIP_ENV}=1 set)")
    pytest.fail(f"{why}; or set {SKIP_ENV}=1 to skip the browser tests", pytrace=False)


def yuan(fen: int) -> str:
    """As the page formats an amount in fen (``fmtYuan``)."""
    sign = "-" if fen < 0 else ""
    return f"{sign}¥{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="node-client")


def off_loop(fn: Callable[[], T]) -> T:
    """Run a node client call (it runs its own asyncio loop) outside the thread where
    Playwright's sync API keeps its event loop."""
    return _worker.submit(fn).result()


@dataclass
class World:
    """One chain as the tests drive it: a node (client port for transactions and state, REST
    API for the browser), the chain's member keys and a nonce-tracking signer."""

    node_home: Path
    suite: Suite
    chain_id: str
    keys: dict[str, KeyPair]
    signer: _Signer
    base_url: str

    @classmethod
    def of(cls, node_home: Path, accounts_dir: Path) -> World:
        genesis = load_genesis(node_home)
        suite = get_suite(genesis.suite)
        keys = {
            p.stem: decrypt_key_file(p.read_bytes(), PASSWORD) for p in accounts_dir.glob("*.key")
        }
        api_port = NodeConfig.load(node_home).api_port
        assert api_port, f"{node_home} serves no REST API"
        return cls(
            node_home,
            suite,
            genesis.chain_id,
            keys,
            _Signer(suite, genesis.chain_id),
            f"http://127.0.0.1:{api_port}",
        )

    def request(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        cfg = NodeConfig.load(self.node_home)
        return off_loop(lambda: call(cfg.host, cfg.client_port, kind, body, timeout_s=30))

    def submit(self, txs: list[Transaction]) -> list[dict[str, Any]]:
        reply = self.request("tx.submit_many", {"txs": [tx.encode() for tx in txs], "wait": True})
        results: list[dict[str, Any]] = reply["results"]
        return results

    def must(self, who: str, module: str, method: str, args: dict[str, Any]) -> int:
        """Commit one transaction of ``who``; its height."""
        [result] = self.submit([self.signer.tx(self.keys[who], module, method, args)])
        assert result.get("ok"), result
        return int(result["height"])

    def state(self, key: bytes) -> bytes | None:
        value = self.request("state.get", {"key": key}).get("value")
        return value if isinstance(value, bytes) else None

    def wallet(self, wallet_id: str) -> ecny.Wallet:
        raw = self.state(ecny.wallet_key(wallet_id))
        assert raw is not None, wallet_id
        return codec.decode_struct(ecny.Wallet, raw)

    def token(self, who: str, *, ttl_ms: int = HOUR_MS, issued_ms: int | None = None) -> str:
        return issue_session(
            self.suite,
            self.keys[who],
            chain_id=self.chain_id,
            issued_ms=time.time_ns() // 1_000_000 if issued_ms is None else issued_ms,
            ttl_ms=ttl_ms,
        )

    def height(self) -> int:
        return int(self.request("status", {})["height"])

    def run_story(self, *steps: str) -> None:
        """The demo story's ``steps`` (in order) on this chain; every check must pass."""
        failures: list[str] = []

        def check(label: str, ok: bool, detail: str) -> None:
            if not ok:
                failures.append(f"{label}: {detail}")

        story = Story(
            NetworkStoryChain(
                lambda _node, txs, _label: self.submit(txs),
                [self.node_home.name],
                lambda _names, _height: None,  # submissions wait for their block on this node
                lambda _node, key: self.state(key),
                reader=self.node_home.name,
            ),
            self.suite,
            self.keys,
            self.signer.tx,
            check,
            lambda _: None,
        )
        for step in steps:
            getattr(story, step)()
        assert not failures, failures
        self.keys = story.keys  # with the story's investors (alice, bob, ...)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("browser-net")
    net = LocalNet(home, validators=1, api=True)
    net.start_all()
    try:
        net.wait_for([NODE], 1)
        w = World.of(home / NODE, home / ACCOUNTS_DIR)
        w.run_story("members", "listing", "wallets", "insurance", "fund")
        _wait_api(w.base_url)
        yield w
    finally:
        net.stop_all()


@pytest.fixture(scope="module")
def two_tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, World]]:
    """A supervision chain and one business chain (a validator and the regulator's observer
    each), the relayer anchoring the business chain, the look-through follower indexing it:
    (the business chain's validator, the supervision chain's observer: the regulator's API)."""
    home = tmp_path_factory.mktemp("browser-two-tier")
    topology = init_two_tier(
        home,
        business_chains=1,
        validators=1,
        observers=1,
        base_port=free_two_tier_base(2, 2),
        password=PASSWORD,
        scrypt_n=1 << 10,
    )
    procs = []
    try:
        for chain in (topology.supervision, *topology.business):
            for node_home in node_homes(topology.chain_home(chain)):
                procs.append(spawn_node(node_home, password=PASSWORD))
        off_loop(lambda: wait_until_serving(topology, timeout_s=90))
        off_loop(lambda: bootstrap(topology, password=PASSWORD))
        [business] = topology.business
        procs.append(spawn_relay(topology, business, password=PASSWORD, interval_ms=300))
        procs.append(spawn_follower(topology, interval_s=0.3))
        biz_home = topology.chain_home(business)
        sup_home = topology.chain_home(topology.supervision)
        biz = World.of(entry_node(biz_home), biz_home / ACCOUNTS_DIR)
        sup = World.of(observer_node(sup_home), sup_home / ACCOUNTS_DIR)
        biz.run_story("members", "listing", "wallets")
        _wait_api(sup.base_url)
        yield biz, sup
    finally:
        for proc in reversed(procs):
            stop_process(proc)


def _wait_api(base_url: str) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    deadline = time.monotonic() + 30
    while True:
        try:
            with opener.open(f"{base_url}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the REST API at {base_url} did not become ready")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_sync: Any = importlib.import_module("playwright.sync_api")
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(f"script error: {exc}"))
    pg.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )

    def on_response(resp: Any) -> None:
        path = resp.url.split("//", 1)[-1].partition("/")[2]
        expected = path == "favicon.ico" or resp.status in (401, 503)  # refusals the page shows
        if resp.status >= 400 and not expected:
            errors.append(f"HTTP {resp.status} for /{path}")

    pg.on("response", on_response)
    pg.set_default_timeout(WAIT_MS)
    try:
        yield pg
        assert not errors, errors
    finally:
        context.close()


def shot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a rendered page, not an empty canvas
    return path


def wait_text(page: Any, selector: str, predicate: Callable[[str], bool], what: str) -> str:
    """Poll ``selector``'s text until ``predicate`` holds (the page updates by itself)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    last = ""
    while time.monotonic() < deadline:
        loc = page.locator(selector)
        if loc.count():
            last = loc.first.text_content() or ""
            if predicate(last):
                return last
        page.wait_for_timeout(200)
    raise AssertionError(f"{what}: {selector} still shows {last!r}")


# -- the explorer ----------------------------------------------------------------------------------


def test_explorer_shows_live_blocks(world: World, page: Any) -> None:
    page.goto(f"{world.base_url}/ui/")
    head = world.height()
    wait_text(page, "#head-height", lambda t: t.isdigit() and int(t) >= head, "head height")
    wait_text(page, "#live", lambda t: t == "live", "stream badge")
    assert page.locator("#head-chain").text_content().startswith(world.chain_id)
    rows = page.locator("#blocks tbody tr")
    assert rows.count() >= 5
    top = int(rows.first.get_attribute("data-height"))
    assert top >= head
    shot(page, "explorer")

    height = world.must("carol", "ecny", "pay", _payment("W-CAROL", "W-DAN", 1_00))
    wait_text(page, "#head-height", lambda t: int(t) >= height, "head after a new transaction")
    row = page.locator(f'#blocks tbody tr[data-height="{height}"]')
    row.wait_for()
    assert row.locator("td").nth(2).text_content() == "1"  # the transfer is in that block
    # the block page shows the real header and certificate
    row.locator("a").click()
    wait_text(page, "#block-height", lambda t: t == str(height), "block page")
    page.locator("#block-txs li code").first.wait_for()
    assert len(page.locator("#block-txs li code").first.text_content()) == 64
    assert page.locator("#block-signers tbody tr").count() >= 1
    shot(page, "explorer-block")


def _payment(src: str, dst: str, fen: int) -> dict[str, Any]:
    return {"from_wallet": src, "to_wallet": dst, "amount": fen, "memo": "browser test"}


# -- signing in and the investor view --------------------------------------------------------------


def test_investor_view_live(world: World, page: Any) -> None:
    alice = world.wallet("W-ALICE")
    page.goto(f"{world.base_url}/ui/#session={world.token('alice')}")
    page.wait_for_url(re.compile(r"#/investor$"))
    assert "session=" not in page.url  # the token left the address bar
    who = wait_text(page, "#who", lambda t: "broker-a" in t, "signed-in line")
    assert (
        "investor" in who and world.suite.address(world.keys["alice"].public_key).hex()[:8] in who
    )
    assert page.locator("#signin-form").is_hidden() and page.locator("#signout").is_visible()
    balance = page.locator('#inv-wallets tr[data-wallet="W-ALICE"] td.balance')
    wait_text(
        page,
        '#inv-wallets tr[data-wallet="W-ALICE"] td.balance',
        lambda t: t == yuan(alice.balance),
        "alice's balance",
    )
    holding = page.locator(
        '#inv-holdings tr[data-account="SA-ALICE"][data-code="000001"] td.balance'
    )
    assert holding.text_content() not in ("", "0", "—")
    order = page.locator('#inv-orders tr[data-order="S-1"]')
    assert order.count() == 1 and "pending" in order.text_content()
    assert page.locator("[data-investor='INV-ALICE']").count() == 1
    shot(page, "investor")

    # alice pays bob: her balance on the page follows without a reload
    world.must("alice", "ecny", "pay", _payment("W-ALICE", "W-BOB", 123_45))
    after = world.wallet("W-ALICE").balance
    assert after == alice.balance - 123_45
    wait_text(
        page,
        '#inv-wallets tr[data-wallet="W-ALICE"] td.balance',
        lambda t: t == yuan(after),
        "balance after a payment",
    )
    assert "¥123.45" not in balance.text_content()
    shot(page, "investor-after-payment")

    # bob's view (policyholder): his policy appears; sign out forgets the session
    page.locator("#signout").click()
    assert page.locator("#signin-form").is_visible() and page.locator("#signed-in").is_hidden()
    assert page.evaluate("sessionStorage.length") == 0


def test_policyholder_pastes_a_token(world: World, page: Any) -> None:
    page.goto(f"{world.base_url}/ui/")
    page.locator("#signin-token").fill(world.token("bob"))
    page.locator("#signin-form button").click()
    page.wait_for_url(re.compile(r"#/investor$"))
    wait_text(page, "#who", lambda t: "broker-b" in t, "signed in as bob")
    policy = page.locator('#inv-policies tr[data-policy="P-2"]')
    policy.wait_for()
    assert "HEALTH-1" in policy.text_content()
    assert page.locator('#inv-wallets tr[data-wallet="W-BOB"]').count() == 1
    # reloading keeps the session (sessionStorage, this tab)
    page.reload()
    wait_text(page, "#who", lambda t: "broker-b" in t, "still signed in after a reload")


def test_institution_sees_its_customers(world: World, page: Any) -> None:
    page.goto(f"{world.base_url}/ui/#session={world.token('broker-a-admin')}")
    page.wait_for_url(re.compile(r"#/investor$"))
    wait_text(page, "#who", lambda t: "broker-a" in t and "broker" in t, "signed in as broker")
    row = page.locator('#inv-customers tr[data-kind="investor"][data-id="INV-ALICE"]')
    row.wait_for()
    assert "KYC 2" in (row.text_content() or "")
    assert page.locator('#inv-customers tr[data-id="INV-BOB"]').count() == 0  # broker-b's
    shot(page, "institution-customers")


def test_key_rotation_signs_the_page_out(world: World, page: Any) -> None:
    """A session lasts only while its key is the account's: rotating the key revokes it, and
    the open page notices on its next refresh (the next block) and signs out by itself."""
    page.goto(f"{world.base_url}/ui/#session={world.token('issuer')}")
    page.wait_for_url(re.compile(r"#/investor$"))
    page.locator('#inv-wallets tr[data-wallet="W-ISSUER"]').wait_for()
    new_key = world.suite.generate_keypair()
    world.must("issuer", "registry", "rotate_key", {"new_public_key": new_key.public_key})
    wait_text(page, "#error", lambda t: "signed out" in t and "rotation" in t, "revoked")
    assert page.locator("#signin-form").is_visible() and page.locator("#inv-body").is_hidden()
    assert page.evaluate("sessionStorage.length") == 0
    shot(page, "investor-session-revoked")


def test_refused_sessions_sign_out(world: World, page: Any) -> None:
    expired = world.token("alice", issued_ms=time.time_ns() // 1_000_000 - 2 * HOUR_MS)
    page.goto(f"{world.base_url}/ui/#session={expired}")
    wait_text(page, "#error", lambda t: "expired" in t, "expired session message")
    assert page.locator("#signin-form").is_visible()
    assert page.evaluate("sessionStorage.length") == 0
    wait_text(page, "#live", lambda t: t == "live", "page loaded")
    page.locator("#signin-token").fill("not-a-token")
    page.locator("#signin-form button").click()
    wait_text(page, "#error", lambda t: "not a session token" in t, "malformed token message")


# -- the regulator dashboard -----------------------------------------------------------------------


def test_dashboard_on_a_business_node(world: World, page: Any) -> None:
    """A business node serves no look-through index: the dashboard says so (503
    LOOKTHROUGH_UNAVAILABLE), while the chain's own activity chart is live."""
    page.goto(f"{world.base_url}/ui/#session={world.token('regulator')}")
    page.wait_for_url(re.compile(r"#/dashboard$"))
    wait_text(page, "#who", lambda t: "regulator" in t, "signed in as the regulator")
    wait_text(
        page, "#dash-alerts", lambda t: "look-through index is not available" in t, "503 message"
    )
    chart = page.locator("#dash-chart svg.chart")
    chart.wait_for()
    blocks_before = int(chart.get_attribute("data-blocks"))
    assert blocks_before >= 5
    assert page.locator("#dash-chart svg.chart rect.bar").count() == blocks_before
    summary = page.locator("#chart-summary").text_content()
    assert "transactions in" in summary
    shot(page, "dashboard-business-node")
    height = world.must("dan", "ecny", "pay", _payment("W-DAN", "W-CAROL", 2_00))
    wait_text(
        page,
        "#dash-chart svg.chart text.tick:last-of-type",
        lambda t: t.startswith("#") and int(t[1:]) >= height,
        "chart after a new block",
    )


def test_dashboard_needs_the_regulator(world: World, page: Any) -> None:
    page.goto(f"{world.base_url}/ui/#session={world.token('alice')}")
    page.wait_for_url(re.compile(r"#/investor$"))
    page.goto(f"{world.base_url}/ui/#/dashboard")
    wait_text(page, "#dash-signed-out", lambda t: "no regulator role" in t, "not a regulator")
    assert page.locator("#dash-body").is_hidden()


def _rows(page: Any, selector: str) -> int:
    return int(page.locator(selector).count())


def test_regulator_dashboard_on_the_supervision_node(
    two_tier: tuple[World, World], page: Any
) -> None:
    """The regulator signs in on the supervision node: the business chain's anchoring, its
    large-value payment alert and payment, a look-through and a holder register appear; a new
    large payment on the business chain shows up without a reload."""
    biz, sup = two_tier
    # the regulator's own sign-in: `consortia api login` prints the URL to open
    login = CliRunner().invoke(
        cli_app,
        ["api", "login", "--home", str(sup.node_home), "--account", "regulator", "--json"],
        env={"CONSORTIA_KEY_PASSWORD": PASSWORD},
    )
    assert login.exit_code == 0, login.output
    url = json.loads(login.output)["url"]
    assert url.startswith(f"{sup.base_url}/ui/#session=cs1.")
    page.goto(url)
    page.wait_for_url(re.compile(r"#/dashboard$"))
    wait_text(page, "#who", lambda t: "regulator" in t, "signed in as the regulator")
    alert = '#dash-alerts tr[data-rule="LARGE_VALUE_PAYMENT"]'
    wait_text(page, alert, lambda t: biz.chain_id in t, "the large payment's alert")
    alerts_before = _rows(page, alert)
    assert "¥50,000.00" in (page.locator("#dash-payments").text_content() or "")
    anchored = f'#dash-anchoring tr[data-chain="{biz.chain_id}"] td:nth-child(3)'
    wait_text(page, anchored, lambda t: t.replace(",", "").isdigit() and int(t) > 0, "anchored")
    assert biz.chain_id in (page.locator("#dash-overview").text_content() or "")
    page.locator("#dash-chart svg.chart").wait_for()

    page.locator("#lookthrough-id").fill("INV-ALICE")
    page.locator("#lookthrough-form button").click()
    summary = wait_text(
        page, "#dash-investor p.summary", lambda t: "INV-ALICE" in t, "look-through"
    )
    assert biz.chain_id in summary and "000001" in summary
    page.locator("#holders-chain").fill(biz.chain_id)
    page.locator("#holders-code").fill("000001")
    page.locator("#holders-form button").click()
    wait_text(page, "#dash-holders table", lambda t: "SA-ALICE" in t, "holder register")
    shot(page, "dashboard-supervision")

    # bob pays alice ¥50,000 on the business chain: a new alert arrives by itself
    biz.must("bob", "ecny", "pay", _payment("W-BOB", "W-ALICE", 50_000_00))
    deadline = time.monotonic() + WAIT_MS / 1000
    while _rows(page, alert) <= alerts_before and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert _rows(page, alert) == alerts_before + 1
    assert "W-BOB" in (page.locator("#dash-payments").text_content() or "")
    shot(page, "dashboard-supervision-after-payment")
