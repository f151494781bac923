"""The Python SDK against a live REST API (uvicorn in a thread over a LocalChain): the whole demo
story through ``consortia.sdk``, typed errors, proof checks, and the README example as written."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from consortia import codec
from consortia.api import ApiSettings, LocalBackend, create_app
from consortia.crypto import KeyPair, Suite, encrypt_key_file
from consortia.ledger.types import Transaction
from consortia.modules import NATIVE_MODULES, ecny
from consortia.modules.securities import holding_key, security_key
from consortia.node.demo import RehearsalClock
from consortia.node.home import init_home
from consortia.node.local import ACCOUNTS_DIR, VALIDATORS_DIR, LocalChain, load_key_dir
from consortia.node.story import Outcome, Story, run_story
from consortia.sdk import (
    Client,
    FailedError,
    ForbiddenError,
    InvalidArgumentsError,
    NotFoundError,
    ProofError,
    RejectedError,
    SdkError,
    TransportError,
    TxResult,
    UnauthorizedError,
)

PASSWORD = "test-password"
OPEN = ApiSettings(rate_per_s=1e6, burst=1_000_000)
ROOT = Path(__file__).resolve().parents[1]
PRIVATE_WALLET = b"ecny/wallet/"


class SdkStoryChain:
    """The demo story's ``StoryChain`` through the SDK: one ``Client`` per key signs (tracking
    its nonce) and submits each transaction with wait; reads are proof-checked SDK reads, signed
    by ``reader`` — the regulator's key, which may read every party's wallets, holdings, escrows,
    freezes and fund records (the regulator's view; any other key gets ``ForbiddenError``).

    The API never returns a wallet's sealed identity, not even to the regulator (who opens it
    from the chain record with its own key), so ``sealed_identity_of`` supplies it for the
    story's anonymity step; everything else about a wallet comes from ``client.wallet``."""

    def __init__(
        self,
        url: str,
        suite: Suite,
        chain_id: str,
        *,
        reader: KeyPair,
        now_ms: Callable[[], int],
        advance_to: Callable[[int], bool],
        sealed_identity_of: Callable[[str], bytes],
    ) -> None:
        self.url, self.suite_, self.chain_id = url, suite, chain_id
        self._now_ms, self._advance_to = now_ms, advance_to
        self._sealed_identity_of = sealed_identity_of
        self.clients: dict[bytes, Client] = {}
        self.reader = Client(url, reader, suite=suite, chain_id=chain_id)
        self.submitted = 0

    def client(self, kp: KeyPair) -> Client:
        addr = self.suite_.address(kp.public_key)
        if addr not in self.clients:
            self.clients[addr] = Client(self.url, kp, suite=self.suite_, chain_id=self.chain_id)
        return self.clients[addr]

    def sign(self, kp: KeyPair, module: str, method: str, args: dict[str, Any]) -> Transaction:
        return self.client(kp).sign(module, method, args)

    def submit(self, txs: list[Transaction], label: str) -> list[Outcome]:
        out = []
        for tx in txs:
            self.submitted += 1
            try:
                result = self.clients[tx.sender].submit(tx)
            except FailedError as exc:
                out.append(Outcome(False, exc.code, exc.height))
            except RejectedError as exc:
                out.append(Outcome(False, exc.code, None))
            else:
                out.append(Outcome(True, "", result.height))
        return out

    def get(self, key: bytes) -> bytes | None:
        try:
            if key.startswith(PRIVATE_WALLET):
                wallet_id = key[len(PRIVATE_WALLET) :].decode()
                wallet = self.reader.wallet(wallet_id)
                sealed = self._sealed_identity_of(wallet_id)
                return codec.encode_struct(replace(wallet, sealed_identity=sealed))
            return self.reader.state(key).value
        except NotFoundError:
            return None

    def now_ms(self) -> int:
        return self._now_ms()

    def advance_to(self, time_ms: int) -> bool:
        return self._advance_to(time_ms)


@dataclass
class World:
    url: str
    home: Path
    chain: LocalChain
    keys: dict[str, KeyPair]
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    submitted: int = 0


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("sdk-home")
    init_home(home, password=PASSWORD, scrypt_n=1 << 10)
    vkeys = load_key_dir(home / VALIDATORS_DIR, PASSWORD)
    keys = load_key_dir(home / ACCOUNTS_DIR, PASSWORD)
    clock = RehearsalClock()
    with LocalChain(home, vkeys, clock_ms=clock) as chain:
        sock = free_socket()
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
            yield World(f"http://127.0.0.1:{port}", home, chain, keys)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()


@pytest.fixture(scope="module")
def story_run(world: World) -> World:
    """The whole demo story, every transaction signed and submitted through the SDK."""
    chain = world.chain

    def advance_to(time_ms: int) -> bool:
        # A rehearsal clock (as the single-process demo): certify an empty block at that time so
        # later blocks carry it. No request is in flight: the SDK calls are blocking.
        clock = chain._clock_ms
        assert isinstance(clock, RehearsalClock)
        clock.advance_to(time_ms)
        chain.commit([])
        return True

    def sealed_identity_of(wallet_id: str) -> bytes:
        raw = chain.state.tree.get(ecny.wallet_key(wallet_id))
        return b"" if raw is None else codec.decode_struct(ecny.Wallet, raw).sealed_identity

    sdk_chain = SdkStoryChain(
        world.url,
        chain.suite,
        chain.state.chain_id,
        reader=world.keys["regulator"],
        now_ms=lambda: max(chain._clock_ms(), chain.state.last_time_ms),
        advance_to=advance_to,
        sealed_identity_of=sealed_identity_of,
    )

    def check(label: str, ok: bool, detail: str) -> None:
        world.checks.append((label, ok, detail))

    story = Story(sdk_chain, chain.suite, world.keys, sdk_chain.sign, check, lambda _: None)
    run_story(story)
    world.keys = story.keys
    world.submitted = sdk_chain.submitted
    return world


def test_demo_story_end_to_end_through_the_sdk(story_run: World) -> None:
    failed = [c for c in story_run.checks if not c[1]]
    assert not failed, failed
    assert len(story_run.checks) >= 40
    assert story_run.submitted >= 50
    labels = " ".join(label for label, _, _ in story_run.checks)
    assert "confirm" in labels or "NAV" in labels  # the rehearsal clock ran the fund step fully


def test_typed_operations_and_reads(story_run: World) -> None:
    keys = story_run.keys
    carol = Client(story_run.url, keys["carol"])
    alice = Client(story_run.url, keys["alice"])
    before = alice.wallet("W-ALICE").balance
    result = carol.ecny.pay(from_wallet="W-CAROL", to_wallet="W-ALICE", amount=100, memo="sdk")
    assert isinstance(result, TxResult) and len(result.tx_hash) == 32 and result.height > 1
    assert result.events and all(e.module == "ecny" for e in result.events)
    assert alice.wallet("W-ALICE").balance == before + 100
    assert carol.wallet("W-CAROL").sealed_identity == b""  # never served
    receipt = carol.tx(result.tx_hash)["receipt"]
    assert receipt["status"] == "OK"

    held = alice.holding("000001", "SA-ALICE")
    out = alice.securities.transfer(
        code="000001", from_account="SA-ALICE", to_account="SA-BOB", amount=5
    )
    assert out.height > result.height
    assert alice.holding("000001", "SA-ALICE").balance == held.balance - 5
    account = alice.account()
    assert account.address == alice.address and account.nonce == alice.next_nonce()


def test_private_reads_follow_the_roles(story_run: World) -> None:
    """Every request is signed with the client's key: each party reads what its role allows,
    and gets a typed ``ForbiddenError`` / ``UnauthorizedError`` otherwise."""
    keys, url = story_run.keys, story_run.url
    carol = Client(url, keys["carol"])
    bob = Client(url, keys["bob"])
    broker = Client(url, keys["broker-a-admin"])
    regulator = Client(url, keys["regulator"])
    with pytest.raises(ForbiddenError) as info:
        carol.wallet("W-ALICE")  # another investor's wallet
    assert info.value.code == "FORBIDDEN" and info.value.status == 403
    assert isinstance(info.value, SdkError)
    with pytest.raises(ForbiddenError):
        bob.holding("000001", "SA-ALICE")  # another investor's holding
    with pytest.raises(ForbiddenError):
        bob.state(holding_key("000001", "SA-ALICE"))
    assert broker.holding("000001", "SA-ALICE").balance > 0  # its customer's holding
    assert regulator.holding("000001", "SA-ALICE").balance > 0
    assert regulator.wallet("W-ALICE").balance > 0
    assert regulator.wallet("W-CAROL").balance >= 0
    assert regulator.state(holding_key("000001", "SA-BOB")).value is not None
    with pytest.raises(ForbiddenError) as sealed:
        regulator.state(ecny.wallet_key("W-ALICE"))  # sealed identities: typed reads only
    assert sealed.value.code == "PRIVATE_RECORD"
    # A key the registry does not know: public data stays open, private reads are 401.
    stranger = Client(url, story_run.chain.suite.generate_keypair())
    assert stranger.state(security_key("000001")).value is not None
    assert stranger.status()["height"] > 0
    with pytest.raises(UnauthorizedError) as unknown:
        stranger.wallet("W-ALICE")
    assert unknown.value.code == "UNKNOWN_ACCOUNT" and unknown.value.status == 401
    # Many identical reads in a row are never replays (a fresh timestamp each time).
    assert len({carol.wallet("W-CAROL").balance for _ in range(5)}) == 1


def test_every_module_method_is_reachable(world: World) -> None:
    client = Client(world.url, world.keys["regulator"], suite="intl", chain_id="x")
    for name, module in NATIVE_MODULES.items():
        ops = getattr(client, name)
        assert set(module.methods) <= set(dir(ops))
        for method in module.methods:
            assert callable(getattr(ops, method))
    with pytest.raises(AttributeError):
        _ = client.ecny.no_such_method


def test_failed_payment_raises_failed_error_with_the_module_code(story_run: World) -> None:
    carol = Client(story_run.url, story_run.keys["carol"])
    before = carol.wallet("W-CAROL").balance
    nonce = carol.next_nonce()
    with pytest.raises(FailedError) as info:
        carol.ecny.pay(from_wallet="W-CAROL", to_wallet="W-ALICE", amount=200_001)
    err = info.value
    assert err.code == "PER_PAYMENT_LIMIT_EXCEEDED" and isinstance(err, SdkError)
    assert err.height > 0 and len(err.tx_hash) == 32
    assert carol.tx(err.tx_hash)["receipt"]["code"] == "PER_PAYMENT_LIMIT_EXCEEDED"
    assert carol.wallet("W-CAROL").balance == before  # nothing changed but the nonce
    assert carol.next_nonce(refresh=True) == nonce + 1


def test_bad_signature_is_rejected_and_the_nonce_relearned(story_run: World) -> None:
    dan = Client(story_run.url, story_run.keys["dan"])
    tx = dan.sign(
        "ecny", "pay", {"from_wallet": "W-DAN", "to_wallet": "W-CAROL", "amount": 1, "memo": ""}
    )
    bad = replace(tx, signature=bytes(b ^ 0xFF for b in tx.signature))
    with pytest.raises(RejectedError) as info:
        dan.submit(bad)
    assert info.value.code == "BAD_SIGNATURE" and info.value.status == 400
    # The nonce was not used: the next call refetches it and succeeds.
    assert dan.ecny.pay(from_wallet="W-DAN", to_wallet="W-CAROL", amount=1).height > 0


def test_stale_nonce_is_refetched_and_retried_once(story_run: World) -> None:
    first = Client(story_run.url, story_run.keys["dan"])
    second = Client(story_run.url, story_run.keys["dan"])
    second.next_nonce()  # learns the nonce now ...
    first.ecny.pay(from_wallet="W-DAN", to_wallet="W-CAROL", amount=1)  # ... which this uses
    result = second.ecny.pay(from_wallet="W-DAN", to_wallet="W-CAROL", amount=1)
    assert result.height > 0
    assert second.next_nonce() == first.next_nonce(refresh=True)


def test_invalid_arguments_are_refused_before_signing(world: World) -> None:
    client = Client(world.url, world.keys["ccb-admin"])
    nonce = client.next_nonce()
    with pytest.raises(InvalidArgumentsError) as info:
        client.ecny.pay(from_wallet="W-CAROL", to_wallet="W-ALICE", amount="lots")  # type: ignore[arg-type]
    assert info.value.code == "BAD_ARGUMENTS"
    with pytest.raises(InvalidArgumentsError):
        client.call("ecny", "pay", from_wallet="W-CAROL")
    with pytest.raises(InvalidArgumentsError) as unknown:
        client.call("nope", "pay")
    assert unknown.value.code == "UNKNOWN_MODULE"
    assert client.next_nonce() == nonce


def test_reads_not_found_and_transport_errors(world: World) -> None:
    client = Client(world.url, world.keys["regulator"])
    assert client.status()["chain_id"] == client.chain_id
    with pytest.raises(NotFoundError) as info:
        client.holding("999999", "SA-NOBODY")
    assert info.value.code == "NOT_FOUND" and info.value.status == 404
    with pytest.raises(NotFoundError):
        client.tx(bytes(32))
    with pytest.raises(NotFoundError):
        client.wallet("W-NOBODY")
    absent = client.state(b"no/such/key")
    assert absent.value is None and absent.verified
    dead = Client("http://127.0.0.1:9", world.keys["regulator"], timeout_s=2)
    with pytest.raises(TransportError) as down:
        dead.status()
    assert down.value.code == "TRANSPORT"


def test_state_proofs_are_checked_locally(
    story_run: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client(story_run.url, story_run.keys["regulator"])
    key = holding_key("000001", "SA-ALICE")
    good = client.state(key)
    assert good.verified and good.value is not None
    assert client.holding("000001", "SA-ALICE").balance > 0

    real_get = client._get

    def tampered(mutate: Callable[[dict[str, Any]], None]) -> Callable[[str], dict[str, Any]]:
        def get(path: str) -> dict[str, Any]:
            reply = real_get(path)
            mutate(reply)
            return reply

        return get

    def flip_value(r: dict[str, Any]) -> None:
        raw = bytearray(bytes.fromhex(r["value"]))
        raw[-1] ^= 1
        r["value"] = raw.hex()

    def flip_proof(r: dict[str, Any]) -> None:
        raw = bytearray(bytes.fromhex(r["proof"]))
        raw[-1] ^= 1
        r["proof"] = raw.hex()

    def flip_root(r: dict[str, Any]) -> None:
        r["state_root"] = bytes(32).hex()

    def flip_record(r: dict[str, Any]) -> None:
        r["record"]["balance"] += 1

    for mutate in (flip_value, flip_proof, flip_root):
        monkeypatch.setattr(client, "_get", tampered(mutate))
        with pytest.raises(ProofError) as info:
            client.state(key)
        assert info.value.code == "BAD_PROOF"
        assert client.state(key, verify=False).verified is False  # unchecked read still served
    monkeypatch.setattr(client, "_get", tampered(flip_record))
    with pytest.raises(ProofError):
        client.holding("000001", "SA-ALICE")


def readme_sdk_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python SDK", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README's Python SDK section has no python code block"
    return match.group(1)


def test_readme_example_works_as_written(world: World) -> None:
    code = readme_sdk_example()
    assert len(code.strip().splitlines()) <= 10
    env = {
        **os.environ,
        "CONSORTIA_API": world.url,
        "CONSORTIA_KEY": str(world.home / ACCOUNTS_DIR / "pboc-admin.key"),
        "CONSORTIA_KEY_PASSWORD": PASSWORD,
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "issued at height" in done.stdout


def test_key_file_client(world: World, tmp_path: Path) -> None:
    kp = world.keys["ccb-admin"]
    path = tmp_path / "ccb.key"
    path.write_bytes(encrypt_key_file(kp, "pw", scrypt_n=1 << 10))
    client = Client.from_key_file(world.url, path, password="pw")
    assert client.key.public_key == kp.public_key
    with pytest.raises(InvalidArgumentsError):
        Client.from_key_file(world.url, path, password="wrong")
