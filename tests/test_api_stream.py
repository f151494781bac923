"""``GET /v1/stream`` (Server-Sent Events of committed blocks) against a live uvicorn over a
LocalChain: replay then live, public vs signed views, the modules filter, the backlog bound, the
stream cap, heartbeats and client disconnects."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn

from consortia.api import LocalBackend, create_app, sign_request
from consortia.api import stream as stream_module
from consortia.api.stream import StreamSettings
from consortia.crypto import KeyPair
from consortia.node.home import init_home
from consortia.node.local import ACCOUNTS_DIR, VALIDATORS_DIR, LocalChain, load_key_dir
from consortia.node.story import Story
from tests.test_api import OPEN, _Signer, _StoryOnChain, sign

PASSWORD = "test-password"


@contextmanager
def serve(chain: LocalChain) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(LocalBackend(chain), OPEN), log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalChain, dict[str, Any]]]:
    home: Path = tmp_path_factory.mktemp("stream-home")
    init_home(home, password=PASSWORD, scrypt_n=1 << 10)
    vkeys = load_key_dir(home / VALIDATORS_DIR, PASSWORD)
    keys = load_key_dir(home / ACCOUNTS_DIR, PASSWORD)
    failures: list[str] = []

    def check(label: str, ok: bool, detail: str) -> None:
        if not ok:
            failures.append(f"{label}: {detail}")

    with LocalChain(home, vkeys) as chain:
        story = Story(_StoryOnChain(chain), chain.suite, keys, _Signer(chain).tx, check, print)
        story.members()
        assert not failures, failures
        yield chain, story.keys


@pytest.fixture(scope="module")
def url(world: tuple[LocalChain, Any]) -> Iterator[str]:
    with serve(world[0]) as base:
        yield base


class Sse:
    """One open stream: ``next_block()`` parses SSE frames until a ``block`` event."""

    def __init__(self, response: httpx2.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()
        self.comments: list[str] = []

    def next_block(self) -> dict[str, Any]:
        fields: dict[str, str] = {}
        for line in self.lines:
            if line == "":
                if fields.get("event") == "block":
                    data: dict[str, Any] = json.loads(fields["data"])
                    assert fields["id"] == str(data["height"])
                    return data
                fields = {}
            elif line.startswith(":"):
                self.comments.append(line)
            else:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        raise AssertionError("stream ended")


@contextmanager
def open_stream(base: str, query: str = "", headers: dict[str, str] | None = None) -> Iterator[Sse]:
    with (
        httpx2.Client(base_url=base, timeout=httpx2.Timeout(5.0)) as client,
        client.stream("GET", f"/v1/stream{query}", headers=headers) as resp,
    ):
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        yield Sse(resp)


def signed(chain: LocalChain, kp: KeyPair, target: str) -> dict[str, str]:
    address = chain.suite.address(kp.public_key)
    now = time.time_ns() // 1_000_000
    return sign_request(
        chain.suite, kp, address, "GET", target, b"", now, chain_id=chain.state.chain_id
    )


def submit(base: str, raw: bytes) -> dict[str, Any]:
    resp = httpx2.post(f"{base}/v1/tx", json={"tx": raw.hex(), "wait": True}, timeout=10)
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


def register_org(chain: LocalChain, keys: dict[str, Any], org_id: str) -> bytes:
    args = {"org_id": org_id, "name": org_id, "kind": "broker"}
    return sign(chain, keys["exchange-admin"], "registry", "register_org", args)


def test_replay_then_live_public_view(world: tuple[LocalChain, Any], url: str) -> None:
    chain, keys = world
    head = chain.state.height
    with open_stream(url, "?from_height=1") as sse:
        past = [sse.next_block() for _ in range(head)]
        assert [b["height"] for b in past] == list(range(1, head + 1))
        for b in past:
            block = chain.store.block(b["height"])
            assert block is not None and b["tx_count"] == len(b["transactions"])
            assert set(b) >= {"height", "hash", "time_ms", "proposer", "tx_count"}
        assert any(b["tx_count"] for b in past)
        reply = submit(url, register_org(chain, keys, "broker-stream-1"))
        live = sse.next_block()
        assert live["height"] == reply["height"] == head + 1
        assert live["hash"] == chain.state.last_block_hash.hex()
        # Unsigned: only what /v1/blocks already shows, plus the outcome.
        assert live["transactions"] == [{"tx_hash": reply["tx_hash"], "ok": True, "code": ""}]


def test_signed_regulator_sees_calls_and_events(world: tuple[LocalChain, Any], url: str) -> None:
    chain, keys = world
    start = chain.state.height + 1
    target = f"/v1/stream?from_height={start}"
    with open_stream(
        url, target.removeprefix("/v1/stream"), signed(chain, keys["regulator"], target)
    ) as sse:
        reply = submit(url, register_org(chain, keys, "broker-stream-2"))
        live = sse.next_block()
        assert live["height"] == reply["height"] == start
        (tx,) = live["transactions"]
        assert tx["call"] == "registry.register_org" and tx["ok"] is True
        assert tx["sender"] == chain.suite.address(keys["exchange-admin"].public_key).hex()
        assert tx["events"] and all(
            set(e) == {"module", "kind", "attributes"} for e in tx["events"]
        )
        assert "sealed_identity" not in json.dumps(live)


def test_modules_filter(world: tuple[LocalChain, Any], url: str) -> None:
    chain, keys = world
    unsigned = httpx2.get(f"{url}/v1/stream?modules=ecny", timeout=5)
    assert unsigned.status_code == 401 and unsigned.json()["code"] == "AUTH_REQUIRED"
    bad = httpx2.get(f"{url}/v1/stream?modules=Not%20A%20Module", timeout=5)
    assert bad.status_code == 400 and bad.json()["code"] == "BAD_REQUEST"
    start = chain.state.height + 1
    for modules, kept in (("ecny", 0), ("ecny,registry", 1)):
        target = f"/v1/stream?from_height={start}&modules={modules}"
        headers = signed(chain, keys["regulator"], target)
        with open_stream(url, target.removeprefix("/v1/stream"), headers) as sse:
            if modules == "ecny":
                submit(url, register_org(chain, keys, "broker-stream-3"))
            live = sse.next_block()
            assert live["height"] == start and live["tx_count"] == 1
            assert len(live["transactions"]) == kept
            for tx in live["transactions"]:
                assert all(e["module"] in modules.split(",") for e in tx["events"])


def test_backlog_bound_cap_heartbeat_and_disconnect(
    world: tuple[LocalChain, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    chain, keys = world
    monkeypatch.setattr(
        stream_module,
        "DEFAULT_STREAM_SETTINGS",
        StreamSettings(max_streams=2, heartbeat_s=0.2, max_backlog=2),
    )
    with serve(chain) as base:
        head = chain.state.height
        too_far = httpx2.get(f"{base}/v1/stream?from_height=1", timeout=5)
        assert too_far.status_code == 400 and too_far.json()["code"] == "BACKLOG_TOO_LARGE"
        with open_stream(base, f"?from_height={head}") as first, open_stream(base):
            assert first.next_block()["height"] == head
            third = httpx2.get(f"{base}/v1/stream", timeout=5)
            assert third.status_code == 503 and third.json()["code"] == "TOO_MANY_STREAMS"
            assert third.headers["content-type"].startswith("application/problem+json")
        # Both clients went away mid-stream: their slots come back and the server serves on.
        deadline = time.monotonic() + 5
        while httpx2.get(f"{base}/v1/status", timeout=5).status_code == 200:
            with httpx2.Client(base_url=base, timeout=5) as c, c.stream("GET", "/v1/stream") as r:
                if r.status_code == 200:
                    break
            assert time.monotonic() < deadline, "stream slots not released"
            time.sleep(0.05)
        with open_stream(base) as again, open_stream(base) as more:
            submit(base, register_org(chain, keys, "broker-stream-4"))
            assert again.next_block()["height"] == more.next_block()["height"] == head + 1
        with open_stream(base) as idle:
            lines = idle.lines
            seen = [next(lines) for _ in range(4)]
            assert ": heartbeat" in seen
        assert httpx2.get(f"{base}/healthz", timeout=5).json() == {"ok": True}


def test_local_backend_follows_direct_commits(world: tuple[LocalChain, Any]) -> None:
    chain, _ = world
    backend = LocalBackend(chain)

    async def follow() -> int:
        blocks = backend.committed(chain.state.height + 1)
        try:
            first = asyncio.ensure_future(anext(blocks))
            await asyncio.sleep(0.05)
            chain.commit([])  # straight on the chain, then pushed by hand
            backend.notify_committed()
            item = await asyncio.wait_for(first, 5)
            assert item.block.transactions == ()
            return item.height
        finally:
            await blocks.aclose()  # type: ignore[attr-defined]

    assert asyncio.run(follow()) == chain.state.height
    assert len(backend._feed) == 0
