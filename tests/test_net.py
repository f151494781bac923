"""PeerNetwork over loopback: mutual TLS 1.3 between organizations, refusals, bad peers, restarts.

Each test runs its own event loop (``asyncio.run``) with short timeouts; nodes listen on ephemeral
ports on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import random
import ssl
import struct
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

import pytest

from consortia import codec
from consortia.net import frames, pki, tls
from consortia.net.frames import Message
from consortia.net.pki import NodeCredentials, Revocations, TrustAnchors
from consortia.net.transport import NetConfig, NetLimits, PeerAddress, PeerNetwork

CHAIN = "test-chain"
HOST = "127.0.0.1"

CA = {org: pki.create_org_ca(org) for org in ("orgA", "orgB", "orgC")}
ROGUE_CA = pki.create_org_ca("orgR")
TRUST = TrustAnchors({org: (ca.cert,) for org, ca in CA.items()})
# The rogue trusts everyone (so only the honest side's refusal matters), but nobody trusts it.
ROGUE_TRUST = TrustAnchors({**TRUST.cas, "orgR": (ROGUE_CA.cert,)})


def _node(org: str, name: str, chain: str = CHAIN, **kw: Any) -> NodeCredentials:
    return pki.issue_node_certificate(CA[org], chain_id=chain, node_name=name, **kw)


N1 = _node("orgA", "n1")
N2 = _node("orgB", "n2")
N3 = _node("orgC", "n3")
N4 = _node("orgA", "n4")  # revoked in some tests
N5_OTHER_CHAIN = _node("orgB", "n5", chain="other-chain")
RAW = _node("orgC", "raw")  # drives hand-written protocol bytes
ROGUE = pki.issue_node_certificate(ROGUE_CA, chain_id=CHAIN, node_name="rogue")

FAST = NetLimits(
    handshake_timeout_s=2.0,
    write_timeout_s=1.0,
    ping_interval_s=0.2,
    idle_timeout_s=1.0,
    backoff_initial_s=0.05,
    backoff_max_s=0.3,
    close_timeout_s=0.5,
)


def run(coro: Coroutine[Any, Any, None], timeout_s: float = 15.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout_s))


def make_net(
    creds: NodeCredentials,
    *,
    peers: Iterable[PeerAddress] = (),
    port: int = 0,
    chain: str = CHAIN,
    trust: TrustAnchors = TRUST,
    revocations: Revocations | None = None,
    known: dict[str, str] | None = None,
    limits: NetLimits = FAST,
) -> PeerNetwork:
    config = NetConfig(
        chain_id=chain, host=HOST, port=port, peers=tuple(peers), known_nodes=known, limits=limits
    )
    return PeerNetwork(config, creds, trust, revocations, rng=random.Random(7))


def addr(net: PeerNetwork, name: str | None = None) -> PeerAddress:
    return PeerAddress(name or net.name, HOST, net.listen_port)


async def until(pred: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not pred():
            await asyncio.sleep(0.01)


async def recv(net: PeerNetwork, timeout_s: float = 3.0) -> tuple[str, Message]:
    got = await asyncio.wait_for(net.receive(), timeout_s)
    return got.peer.node_name, got.message


def failures(net: PeerNetwork, prefix: str) -> int:
    return sum(n for key, n in net.events.items() if key.startswith(prefix))


async def closing(*nets: PeerNetwork) -> None:
    for net in nets:
        await net.close()


async def started(net: PeerNetwork) -> PeerNetwork:
    await net.start()
    return net


async def assert_exchange(a: PeerNetwork, b: PeerNetwork) -> None:
    """Messages flow both ways between two connected nodes."""
    assert a.send(b.name, Message("test.msg", {"from": a.name, "n": 1}))
    assert await recv(b) == (a.name, Message("test.msg", {"from": a.name, "n": 1}))
    assert b.send(a.name, Message("test.msg", [b.name, b"\x00\xff"]))
    assert await recv(a) == (b.name, Message("test.msg", [b.name, b"\x00\xff"]))


# ---------------------------------------------------------------------------------------------
# A hand-driven TLS client, for bytes an honest node would never send


async def raw_tls(
    port: int, creds: NodeCredentials = RAW, *, hello: dict[str, Any] | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect with a valid certificate and complete the hello, by hand."""
    reader, writer = await asyncio.open_connection(HOST, port, ssl=tls.client_context(creds, TRUST))
    ident = pki.own_identity(creds, TRUST, chain_id=CHAIN)
    body = hello or {
        "chain_id": CHAIN,
        "node_name": ident.node_name,
        "org_id": ident.org_id,
        "height": 0,
        "version": 1,
    }
    writer.write(frames.encode_message(Message("net.hello", body)))
    await writer.drain()
    got = await frames.read_message(reader)
    assert got is not None and got[0].type == "net.hello"
    return reader, writer


async def closed_by_peer(reader: asyncio.StreamReader, timeout_s: float = 3.0) -> bool:
    """True once the other end has closed (EOF or a reset), reading and discarding data."""
    async with asyncio.timeout(timeout_s):
        try:
            while await reader.read(65536):
                pass
        except (OSError, ssl.SSLError):
            pass
    return True


# ---------------------------------------------------------------------------------------------
# Happy paths


def test_two_nodes_of_different_orgs_exchange_both_ways() -> None:
    async def main() -> None:
        n1 = await started(make_net(N1))
        n1.set_height(7)
        n2 = await started(make_net(N2, peers=[addr(n1)]))
        try:
            await n1.wait_for_peers(["n2"], 5)
            await n2.wait_for_peers(["n1"], 5)
            await assert_exchange(n1, n2)
            (p,) = n2.peers()
            assert (p.identity.node_name, p.identity.org_id, p.outbound, p.height) == (
                "n1",
                "orgA",
                True,
                7,
            )
            (q,) = n1.peers()
            assert (q.identity.org_id, q.outbound, q.initiator) == ("orgB", False, "n2")
            assert not n1.send("nobody", Message("test.msg"))
            with pytest.raises(ValueError, match="reserved"):
                n1.send("n2", Message("net.ping"))
        finally:
            await closing(n2, n1)

    run(main())


def test_three_nodes_broadcast() -> None:
    async def main() -> None:
        n1 = await started(make_net(N1))
        n2 = await started(make_net(N2, peers=[addr(n1)]))
        n3 = await started(make_net(N3, peers=[addr(n1), addr(n2)]))
        nets = [n1, n2, n3]
        try:
            for net in nets:
                await net.wait_for_peers({"n1", "n2", "n3"} - {net.name}, 5)
            for net in nets:
                assert net.broadcast(Message("test.bcast", net.name)) == 2
            for net in nets:
                got = {await recv(net), await recv(net)}
                others = {"n1", "n2", "n3"} - {net.name}
                assert got == {(o, Message("test.bcast", o)) for o in others}
            assert n1.broadcast(Message("test.bcast", "x"), exclude=["n2"]) == 1
            assert await recv(n3) == ("n1", Message("test.bcast", "x"))
        finally:
            await closing(*nets)

    run(main())


def test_simultaneous_dials_keep_one_connection_chosen_alike() -> None:
    async def main() -> None:
        n1 = await started(make_net(N1))
        n2 = await started(make_net(N2))
        try:
            n1.add_peer(addr(n2))
            n2.add_peer(addr(n1))
            # Both sides keep the connection the smaller name (n1) initiated.
            await until(
                lambda: (
                    [p.initiator for p in n1.peers()] == ["n1"]
                    and [p.initiator for p in n2.peers()] == ["n1"]
                )
            )
            await asyncio.sleep(0.4)  # past a few redial attempts: still one, still the same
            assert [(p.initiator, p.outbound) for p in n1.peers()] == [("n1", True)]
            assert [(p.initiator, p.outbound) for p in n2.peers()] == [("n1", False)]
            await assert_exchange(n1, n2)
        finally:
            await closing(n1, n2)

    run(main())


def test_keepalive_holds_an_idle_connection() -> None:
    async def main() -> None:
        n1 = await started(make_net(N1))
        n2 = await started(make_net(N2, peers=[addr(n1)]))
        try:
            await n2.wait_for_peers(["n1"], 5)
            await asyncio.sleep(FAST.idle_timeout_s * 1.5)  # no traffic but pings
            assert n1.is_connected("n2") and n2.is_connected("n1")
            assert n1.events["dropped.idle"] == n2.events["dropped.idle"] == 0
        finally:
            await closing(n2, n1)

    run(main())


def test_reconnect_after_the_peer_restarts() -> None:
    async def main() -> None:
        n1 = await started(make_net(N1))
        port = n1.listen_port
        n2 = await started(make_net(N2, peers=[addr(n1)]))
        try:
            await n2.wait_for_peers(["n1"], 5)
            await n1.close()
            await until(lambda: not n2.is_connected("n1"))
            await asyncio.sleep(0.2)  # n2 keeps redialing a closed port meanwhile
            n1 = await started(make_net(N1, port=port))
            await n2.wait_for_peers(["n1"], 5)
            await n1.wait_for_peers(["n2"], 5)
            await assert_exchange(n1, n2)
            assert n2.events["connected"] == 2
            assert n2.events["dial_failed.io"] >= 1
        finally:
            await closing(n2, n1)

    run(main())


# ---------------------------------------------------------------------------------------------
# Refusals


def test_unknown_ca_is_refused_by_the_server() -> None:
    async def main() -> None:
        n1 = await started(make_net(N1))
        rogue = await started(make_net(ROGUE, trust=ROGUE_TRUST, peers=[addr(n1)]))
        try:
            # TLS 1.3: the client finishes its handshake before the server checks the client's
            # certificate, so the rogue only sees the connection die (an alert or EOF).
            await until(lambda: failures(rogue, "dial_failed.") >= 2)
            assert n1.peers() == [] and rogue.peers() == []
            n2 = await started(make_net(N2, peers=[addr(n1)]))  # n1 still serves others
            await n2.wait_for_peers(["n1"], 5)
            await assert_exchange(n1, n2)
            await n2.close()
            assert n1.events["connected"] == 1
        finally:
            await closing(rogue, n1)

    run(main())


def test_unknown_ca_is_refused_by_the_client() -> None:
    async def main() -> None:
        rogue = await started(make_net(ROGUE, trust=ROGUE_TRUST))
        n1 = await started(make_net(N1, peers=[addr(rogue)]))
        try:
            await until(lambda: n1.events["dial_failed.tls_verify"] >= 2)  # and it keeps trying
            assert n1.peers() == [] and rogue.peers() == []
        finally:
            await closing(n1, rogue)

    run(main())


def test_revoked_certificate_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="consortia.net")

    async def main() -> None:
        by_serial = Revocations(serials=frozenset({N4.cert.serial_number}))
        n1 = await started(make_net(N1, revocations=by_serial))
        n4 = await started(make_net(N4, peers=[addr(n1)]))
        by_fingerprint = Revocations(fingerprints=frozenset({pki.fingerprint(N4.cert)}))
        n2 = await started(make_net(N2, peers=[addr(n4)], revocations=by_fingerprint))
        try:
            await until(lambda: n1.events["rejected.revoked"] >= 1)  # server side
            await until(lambda: n2.events["dial_failed.revoked"] >= 1)  # client side
            assert not n1.is_connected("n4") and not n2.is_connected("n4")
            assert "revoked" in caplog.text
        finally:
            await closing(n4, n2, n1)

    run(main())


def test_revoking_a_connected_peer_drops_it() -> None:
    async def main() -> None:
        n1 = await started(make_net(N1))
        n2 = await started(make_net(N2, peers=[addr(n1)]))
        try:
            await n1.wait_for_peers(["n2"], 5)
            revoked = Revocations(serials=frozenset({N2.cert.serial_number}))
            assert n1.set_revocations(revoked) == ["n2"]
            assert not n1.is_connected("n2")
            await asyncio.sleep(0.5)  # n2 redials and is refused every time
            assert not n1.is_connected("n2")
            assert n1.events["rejected.revoked"] >= 1
        finally:
            await closing(n2, n1)

    run(main())


def test_wrong_chain_in_certificate_is_refused() -> None:
    async def main() -> None:
        n1 = await started(make_net(N1))
        n5 = await started(make_net(N5_OTHER_CHAIN, chain="other-chain", peers=[addr(n1)]))
        n2 = await started(make_net(N2, peers=[addr(n5)]))
        try:
            await until(lambda: n1.events["rejected.wrong_chain"] >= 1)
            await until(lambda: n2.events["dial_failed.wrong_chain"] >= 1)
            assert n1.peers() == [] and n2.peers() == [] and n5.peers() == []
        finally:
            await closing(n5, n2, n1)

    run(main())


def test_wrong_chain_in_hello_is_refused() -> None:
    async def main() -> None:
        n1 = await started(make_net(N1))
        try:
            hello = {
                "chain_id": "other-chain",
                "node_name": "raw",
                "org_id": "orgC",
                "height": 0,
                "version": 1,
            }
            reader, writer = await raw_tls(n1.listen_port, hello=hello)
            assert await closed_by_peer(reader)
            writer.close()
            assert n1.events["rejected.wrong_chain"] == 1
        finally:
            await n1.close()

    run(main())


def test_dialing_the_wrong_node_or_an_unlisted_node_is_refused() -> None:
    async def main() -> None:
        n1 = await started(make_net(N1, known={"n2": "orgB"}))
        n3 = await started(make_net(N3, peers=[addr(n1)]))  # not in n1's known nodes
        n2 = await started(make_net(N2, peers=[addr(n1, "n9")]))  # n1 is not n9
        try:
            await until(lambda: n1.events["rejected.unknown_node"] >= 1)
            await until(lambda: n2.events["dial_failed.unexpected_peer"] >= 1)
            assert n1.peers() == []
        finally:
            await closing(n3, n2, n1)

    run(main())


def test_expired_certificate_is_refused() -> None:
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    expired = _node("orgB", "n2", validity_days=1, now=long_ago)

    async def main() -> None:
        n1 = await started(make_net(N1))
        n2 = await started(make_net(expired, peers=[addr(n1)]))
        n3 = await started(make_net(N3, peers=[addr(n2)]))
        try:
            await until(lambda: failures(n2, "dial_failed.") >= 1)  # refused by n1 (server)
            await until(lambda: n3.events["dial_failed.tls_verify"] >= 1)  # refused by n3 (client)
            assert n1.peers() == [] and n2.peers() == [] and n3.peers() == []
        finally:
            await closing(n3, n2, n1)

    run(main())


# ---------------------------------------------------------------------------------------------
# Bad bytes and bad behaviour cost one peer, never the node


async def _with_bystander(attack: Callable[[PeerNetwork], Awaitable[None]]) -> PeerNetwork:
    """Run ``attack`` against n1 while n2 is connected; n2 must not notice. Returns n1 (closed)."""
    n1 = await started(make_net(N1))
    n2 = await started(make_net(N2, peers=[addr(n1)]))
    try:
        await n1.wait_for_peers(["n2"], 5)
        await attack(n1)
        assert n1.is_connected("n2")
        await assert_exchange(n1, n2)
        n3 = await started(make_net(N3, peers=[addr(n1)]))  # and it still accepts newcomers
        await n1.wait_for_peers(["n3"], 5)
        await n3.close()
    finally:
        await closing(n2, n1)
    return n1


def test_raw_tcp_garbage_is_dropped() -> None:
    async def attack(n1: PeerNetwork) -> None:
        reader, writer = await asyncio.open_connection(HOST, n1.listen_port)
        writer.write(b"GET / HTTP/1.1\r\n\r\n" + bytes(range(256)) * 4)
        await writer.drain()
        assert await closed_by_peer(reader)
        writer.close()

    n1 = asyncio.run(asyncio.wait_for(_with_bystander(attack), 15))
    assert n1.events["connected"] == 2


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\xff\xff\xff\xff", id="oversize-length"),
        pytest.param(struct.pack(">I", 3) + b"\xff\xfe\xfd", id="non-cbor"),
        pytest.param(struct.pack(">I", 2) + b"\x18\x01", id="non-canonical"),
        pytest.param(frames.encode_frame([1, 2]), id="not-an-envelope"),
        pytest.param(frames.encode_frame({"type": "net.hello", "body": None}), id="second-hello"),
        pytest.param(struct.pack(">I", 100) + b"\x01" * 10, id="truncated"),
    ],
)
def test_garbage_after_tls_drops_only_that_peer(garbage: bytes) -> None:
    async def attack(n1: PeerNetwork) -> None:
        reader, writer = await raw_tls(n1.listen_port)
        await n1.wait_for_peers(["raw"], 3)
        writer.write(garbage)
        await writer.drain()
        if garbage.startswith(struct.pack(">I", 100)):
            writer.close()  # the stream ends inside the frame
        await until(lambda: not n1.is_connected("raw"))
        with contextlib.suppress(Exception):
            await closed_by_peer(reader)
        writer.close()

    n1 = asyncio.run(asyncio.wait_for(_with_bystander(attack), 15))
    assert n1.events["dropped.protocol"] == 1


def test_silent_peer_is_dropped_as_idle() -> None:
    async def attack(n1: PeerNetwork) -> None:
        _, writer = await raw_tls(n1.listen_port)
        await n1.wait_for_peers(["raw"], 3)
        await until(lambda: not n1.is_connected("raw"), FAST.idle_timeout_s * 3)
        writer.close()

    n1 = asyncio.run(asyncio.wait_for(_with_bystander(attack), 15))
    assert n1.events["dropped.idle"] == 1


def test_slow_reader_is_dropped_instead_of_buffering() -> None:
    small = NetLimits(
        **{
            **FAST.__dict__,
            "max_frame_payload": 128 * 1024,
            "send_queue_bytes": 512 * 1024,
            "inbox_bytes": 1024 * 1024,
        }
    )

    async def main() -> None:
        n1 = await started(make_net(N1, limits=small))
        try:
            _, writer = await raw_tls(n1.listen_port)  # then never reads again
            await n1.wait_for_peers(["raw"], 3)
            chunk = Message("test.big", b"\x00" * (100 * 1024))
            sent = 0
            while n1.send("raw", chunk):
                sent += 1
                assert sent < 2000, "the queue never filled"
                await asyncio.sleep(0)  # let the writer push into the socket
            assert not n1.is_connected("raw")
            assert n1.events["dropped.slow"] == 1
            writer.close()
        finally:
            await n1.close()

    run(main())


def test_reserved_and_oversize_sends_are_caller_errors() -> None:
    async def main() -> None:
        n1 = await started(make_net(N1))
        try:
            with pytest.raises(ValueError, match="reserved"):
                n1.broadcast(Message("net.hello", {}))
            with pytest.raises(frames.FrameTooLargeError):
                n1.broadcast(Message("test.big", b"\x00" * (FAST.max_frame_payload + 1)))
            with pytest.raises(codec.CodecError):
                n1.broadcast(Message("test.float", 1.5))
        finally:
            await n1.close()

    run(main())


def test_configuration_is_checked() -> None:
    with pytest.raises(ValueError):
        NetLimits(ping_interval_s=5, idle_timeout_s=6)
    with pytest.raises(ValueError):
        NetLimits(send_queue_bytes=10)
    with pytest.raises(ValueError):
        NetConfig(chain_id="bad chain")
    with pytest.raises(ValueError):
        PeerAddress("n2", HOST, 0)
    with pytest.raises(ValueError):
        NetConfig(chain_id=CHAIN, peers=(PeerAddress("n2", HOST, 1), PeerAddress("n2", HOST, 2)))
    with pytest.raises(ValueError):
        make_net(N1, peers=[PeerAddress("n1", HOST, 1)])
    with pytest.raises(pki.PkiError):
        make_net(N1, chain="other-chain")  # own certificate names another chain
