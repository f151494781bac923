"""``PeerNetwork``: one node's authenticated, bounded connections to the other consortium nodes.

Life of a connection (both directions run the same steps, h11-style: no side gets special rules):

1. TCP + TLS 1.3, both certificates required, genesis CAs only (``tls``), within the handshake
   timeout; inbound connections beyond ``max_pending_handshakes`` are closed at once.
2. ``pki.identify_peer``: the peer's certificate → ``NodeIdentity``, refused if revoked, from an
   unknown CA, for another chain, for an organization other than its CA's, not in ``known_nodes``
   (when given), or (when dialing) not the node we meant to dial.
3. Hello: each side sends ``net.hello`` {chain_id, node_name, org_id, height, version} and reads the
   other's; it must repeat what the certificate says.
4. Registration, one connection per peer name. Two simultaneous dials are resolved the same way on
   both sides: keep the connection *initiated by the lexicographically smaller node name*; between
   two connections with the same initiator keep the newer (the peer restarted). Unsent frames of the
   losing connection move to the winner.
5. Serving: a reader (frames → the shared inbox) and a writer (the per-peer send queue → the
   socket, a ``net.ping`` after ``ping_interval_s`` of silence). No frame for ``idle_timeout_s``,
   a frame error, an unexpected ``net.*`` message, a full send queue or a write that does not drain
   within ``write_timeout_s`` drops the peer (logged, counted in ``events``), never the node.

Delivery is at most once per connection, in order; messages queued when a connection dies are lost.
The layers above already tolerate loss (consensus re-gossips; sync re-requests).

Back-pressure: the inbox is bounded by messages and bytes; when it is full, readers stop reading,
TCP pushes back on the sender, and the sender eventually drops us as slow. Memory per node is thus
bounded by roughly ``max_peers × (send_queue_bytes + max_frame_payload) + inbox_bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from consortia.codec import CborValue
from consortia.net import frames, tls
from consortia.net.frames import FrameError, Message
from consortia.net.pki import (
    NodeCredentials,
    NodeIdentity,
    PeerRejectedError,
    Revocations,
    TrustAnchors,
    check_name,
    identify_peer,
    own_identity,
)

PROTOCOL_VERSION: Final = 1
HELLO: Final = "net.hello"
PING: Final = "net.ping"
HELLO_MAX_PAYLOAD: Final = 1024  # a hello is ~150 bytes; no reason to buffer more before it
MAX_HEIGHT: Final = (1 << 63) - 1
MAX_CONFIGURED_PEERS: Final = 1024

log = logging.getLogger("consortia.net")


class HandshakeError(Exception):
    """A connection was refused before registration; ``reason`` is a stable short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ProtocolViolationError(FrameError):
    """A well-formed frame the protocol does not allow here (e.g. a second hello)."""


@dataclass(frozen=True)
class NetLimits:
    """Every bound of the network layer in one place (STYLE §3: a limit on everything)."""

    max_peers: int = 64
    max_pending_handshakes: int = 32
    max_frame_payload: int = frames.DEFAULT_MAX_PAYLOAD
    max_depth: int = 32
    send_queue_frames: int = 1024
    send_queue_bytes: int = 64 * 1024 * 1024
    inbox_messages: int = 4096
    inbox_bytes: int = 64 * 1024 * 1024
    handshake_timeout_s: float = 5.0
    write_timeout_s: float = 10.0
    ping_interval_s: float = 5.0
    idle_timeout_s: float = 20.0
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 10.0
    close_timeout_s: float = 2.0

    def __post_init__(self) -> None:
        counts = (self.max_peers, self.max_pending_handshakes, self.send_queue_frames)
        if min(counts) < 1 or self.inbox_messages < 1 or not 1 <= self.max_depth <= 64:
            raise ValueError("peer, handshake, queue and depth limits must be positive")
        if not 1 <= self.max_frame_payload <= frames.ABSOLUTE_MAX_PAYLOAD:
            raise ValueError("max_frame_payload out of range")
        if min(self.send_queue_bytes, self.inbox_bytes) < self.max_frame_payload:
            raise ValueError("queue byte limits must hold at least one maximum frame")
        times = (
            self.handshake_timeout_s,
            self.write_timeout_s,
            self.ping_interval_s,
            self.backoff_initial_s,
            self.close_timeout_s,
        )
        if min(times) <= 0:
            raise ValueError("timeouts and intervals must be positive")
        if self.idle_timeout_s < 2 * self.ping_interval_s:
            raise ValueError("idle_timeout_s must be at least twice ping_interval_s")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")


@dataclass(frozen=True)
class PeerAddress:
    """A node to dial: who it must be (name, optionally org) and where it listens."""

    node_name: str
    host: str
    port: int
    org_id: str | None = None

    def __post_init__(self) -> None:
        check_name("node name", self.node_name)
        if self.org_id is not None:
            check_name("org id", self.org_id)
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")


@dataclass(frozen=True)
class NetConfig:
    chain_id: str
    host: str = "127.0.0.1"
    port: int = 0  # 0 = an ephemeral port (see ``PeerNetwork.listen_port``)
    peers: tuple[PeerAddress, ...] = ()
    # node name → org id of every node allowed to connect; None = any node a genesis CA certified.
    known_nodes: Mapping[str, str] | None = None
    limits: NetLimits = field(default_factory=NetLimits)

    def __post_init__(self) -> None:
        check_name("chain id", self.chain_id)
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")
        names = [p.node_name for p in self.peers]
        if len(set(names)) != len(names) or len(names) > MAX_CONFIGURED_PEERS:
            raise ValueError("configured peers must have distinct names (and be few)")


@dataclass(frozen=True)
class Received:
    """A message from a connected peer."""

    peer: NodeIdentity
    message: Message


@dataclass(frozen=True)
class PeerInfo:
    identity: NodeIdentity
    outbound: bool
    initiator: str
    height: int
    remote: str


# ---------------------------------------------------------------------------------------------
# Bounded structures


class _Inbox:
    """FIFO of received messages bounded by count and bytes; ``put`` waits while it is full."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self._items: deque[tuple[Received, int]] = deque()
        self._bytes = 0
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._cond = asyncio.Condition()

    def __len__(self) -> int:
        return len(self._items)

    def _has_room(self, size: int) -> bool:
        if not self._items:
            return True  # one frame always fits (limits are >= one maximum frame)
        return len(self._items) < self._max_items and self._bytes + size <= self._max_bytes

    async def put(self, item: Received, size: int) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self._has_room(size))
            self._items.append((item, size))
            self._bytes += size
            self._cond.notify_all()

    async def get(self) -> Received:
        async with self._cond:
            await self._cond.wait_for(lambda: bool(self._items))
            item, size = self._items.popleft()
            self._bytes -= size
            self._cond.notify_all()
            return item


class _Connection:
    """One registered (or registering) TLS connection to a peer."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        identity: NodeIdentity,
        *,
        outbound: bool,
        initiator: str,
        height: int,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.identity = identity
        self.outbound = outbound
        self.initiator = initiator
        self.height = height
        peer = writer.get_extra_info("peername")
        self.remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.wakeup = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_reason: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.started = time.monotonic()

    def info(self) -> PeerInfo:
        return PeerInfo(self.identity, self.outbound, self.initiator, self.height, self.remote)


def _abort(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.transport.abort()


# ---------------------------------------------------------------------------------------------
# The service


class PeerNetwork:
    """The network service of one node. Use ``async with PeerNetwork(...) as net`` or
    ``await start()`` / ``await close()`` inside one event loop.

    - ``send(name, msg)`` / ``broadcast(msg)`` enqueue (never block); they return False / count
      only peers that took the message. A full per-peer queue drops that peer.
    - ``await receive()`` returns the next ``Received`` from any peer, in arrival order.
    """

    def __init__(
        self,
        config: NetConfig,
        credentials: NodeCredentials,
        trust: TrustAnchors,
        revocations: Revocations | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.limits = config.limits
        self.identity = own_identity(credentials, trust, chain_id=config.chain_id)
        self.name = self.identity.node_name
        for addr in config.peers:
            if addr.node_name == self.name:
                raise ValueError(f"{self.name} lists itself as a peer")
        self._trust = trust
        self._revocations = revocations or Revocations()
        self._rng = rng or random.Random()
        self._server_ctx = tls.server_context(credentials, trust)
        self._client_ctx = tls.client_context(credentials, trust)
        self._height = 0
        self._peers: dict[str, _Connection] = {}
        self._inbox = _Inbox(self.limits.inbox_messages, self.limits.inbox_bytes)
        self._handshake_tasks: set[asyncio.Task[None]] = set()
        self._conn_tasks: set[asyncio.Task[None]] = set()
        self._dialers: dict[str, asyncio.Task[None]] = {}
        self._server: asyncio.Server | None = None
        self._pending = 0
        self._closing = False
        self._changed = asyncio.Event()
        self._ping_frame = frames.encode_message(Message(PING))
        # Counts by event ("connected", "rejected.revoked", "dropped.slow", ...): a fixed, small
        # set of keys, for metrics and tests.
        self.events: Counter[str] = Counter()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen, and start dialing the configured peers."""
        if self._server is not None or self._closing:
            raise RuntimeError("PeerNetwork already started or closed")
        lim = self.limits
        self._server = await asyncio.start_server(
            self._on_inbound,
            self.config.host,
            self.config.port,
            ssl=self._server_ctx,
            ssl_handshake_timeout=lim.handshake_timeout_s,
            ssl_shutdown_timeout=lim.close_timeout_s,
            backlog=lim.max_pending_handshakes,
        )
        log.info("%s listening on %s:%d", self.name, self.config.host, self.listen_port)
        for addr in self.config.peers:
            self.add_peer(addr)

    @property
    def listen_port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("not listening")
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and dialing, close every connection, and wait (bounded) for the tasks."""
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task in self._dialers.values():
            task.cancel()
        for conn in list(self._peers.values()):
            self._drop(conn, "shutdown", "node closing", graceful=True)
        for task in self._handshake_tasks:
            task.cancel()
        pending = [*self._dialers.values(), *self._handshake_tasks, *self._conn_tasks]
        if pending:
            await asyncio.wait(pending, timeout=self.limits.close_timeout_s * 2)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), self.limits.close_timeout_s)
        log.info("%s closed", self.name)

    async def __aenter__(self) -> PeerNetwork:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- API for the node --------------------------------------------------------------------

    def set_height(self, height: int) -> None:
        """Our committed height, announced in the hello of every new connection."""
        if not 0 <= height <= MAX_HEIGHT:
            raise ValueError(f"height out of range: {height}")
        self._height = height

    def set_revocations(self, revocations: Revocations) -> list[str]:
        """Replace the revocation list and drop connected peers it now revokes; returns them."""
        self._revocations = revocations
        dropped = []
        for conn in list(self._peers.values()):
            ident = conn.identity
            if revocations.revokes(ident.serial, ident.fingerprint):
                self._drop(conn, "revoked", f"certificate serial {ident.serial:x} revoked")
                dropped.append(ident.node_name)
        return dropped

    def add_peer(self, addr: PeerAddress) -> None:
        """Dial ``addr`` (and keep it connected) until ``close``; idempotent per node name."""
        if addr.node_name == self.name:
            raise ValueError("cannot dial self")
        if self._closing or addr.node_name in self._dialers:
            return
        if len(self._dialers) >= MAX_CONFIGURED_PEERS:
            raise ValueError(f"more than {MAX_CONFIGURED_PEERS} peers to dial")
        self._dialers[addr.node_name] = asyncio.create_task(
            self._dial_loop(addr), name=f"{self.name}-dial-{addr.node_name}"
        )

    def peers(self) -> list[PeerInfo]:
        return [self._peers[name].info() for name in sorted(self._peers)]

    def is_connected(self, name: str) -> bool:
        return name in self._peers

    async def wait_for_peers(self, names: Iterable[str], timeout_s: float) -> None:
        """Return once every node in ``names`` is connected; ``TimeoutError`` otherwise."""
        wanted = set(names)
        async with asyncio.timeout(timeout_s):
            while not wanted <= self._peers.keys():
                await self._changed.wait()

    def send(self, peer: str, msg: Message) -> bool:
        """Queue ``msg`` for ``peer``; False if not connected (or dropped now as too slow)."""
        frame = self._encode(msg)
        conn = self._peers.get(peer)
        return conn is not None and self._enqueue(conn, frame)

    def broadcast(self, msg: Message, *, exclude: Iterable[str] = ()) -> int:
        """Queue ``msg`` for every connected peer (encoded once); returns how many took it."""
        frame = self._encode(msg)
        skip = set(exclude)
        targets = [c for name, c in sorted(self._peers.items()) if name not in skip]
        return sum(self._enqueue(conn, frame) for conn in targets)

    async def receive(self) -> Received:
        """The next message from any peer (waits)."""
        return await self._inbox.get()

    # -- internals: queues -------------------------------------------------------------------

    def _encode(self, msg: Message) -> bytes:
        if msg.type.startswith(frames.RESERVED_PREFIX):
            raise ValueError(f"message type {msg.type!r} is reserved for the transport")
        return frames.encode_message(msg, max_payload=self.limits.max_frame_payload)

    def _enqueue(self, conn: _Connection, frame: bytes) -> bool:
        if conn.close_reason is not None:
            return False
        lim = self.limits
        # An empty queue always takes one frame, so a maximum frame can never count as "slow".
        if conn.queue and (
            len(conn.queue) >= lim.send_queue_frames
            or conn.queued_bytes + len(frame) > lim.send_queue_bytes
        ):
            detail = f"send queue full ({len(conn.queue)} frames, {conn.queued_bytes} bytes)"
            self._drop(conn, "slow", detail)
            return False
        conn.queue.append(frame)
        conn.queued_bytes += len(frame)
        conn.wakeup.set()
        return True

    def _notify_changed(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- internals: connection setup ---------------------------------------------------------

    def _count(self, key: str) -> None:
        self.events[key] += 1

    def _backoff_s(self, attempt: int) -> float:
        lim = self.limits
        base = min(lim.backoff_max_s, lim.backoff_initial_s * (2 ** min(attempt, 30)))
        return float(
            base * (0.5 + 0.5 * self._rng.random())
        )  # jitter: two nodes never retry in step

    async def _dial_loop(self, addr: PeerAddress) -> None:
        attempt = 0
        while not self._closing:
            existing = self._peers.get(addr.node_name)
            if existing is not None:
                await existing.closed.wait()
                if time.monotonic() - existing.started >= self.limits.backoff_max_s:
                    attempt = 0  # it was a healthy connection: retry promptly
            else:
                try:
                    await self._dial(addr)
                except (HandshakeError, OSError, FrameError) as exc:
                    reason = exc.reason if isinstance(exc, HandshakeError) else _io_reason(exc)
                    self._count(f"dial_failed.{reason}")
                    log.warning(
                        "%s: dial %s at %s:%d failed (%s): %s",
                        self.name,
                        addr.node_name,
                        addr.host,
                        addr.port,
                        reason,
                        exc,
                    )
                except Exception:  # a bug here must not stop us from ever dialing this peer
                    self._count("dial_failed.internal")
                    log.exception("%s: internal error dialing %s", self.name, addr.node_name)
            await asyncio.sleep(self._backoff_s(attempt))
            attempt += 1

    async def _dial(self, addr: PeerAddress) -> None:
        lim = self.limits
        async with asyncio.timeout(lim.handshake_timeout_s):
            reader, writer = await asyncio.open_connection(
                addr.host,
                addr.port,
                ssl=self._client_ctx,
                ssl_handshake_timeout=lim.handshake_timeout_s,
                ssl_shutdown_timeout=lim.close_timeout_s,
            )
            try:
                conn = await self._handshake(reader, writer, expected=addr)
            except BaseException:
                _abort(writer)
                raise
        self._admit(conn)

    async def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Called by asyncio after the TLS handshake of an accepted connection."""
        peer = writer.get_extra_info("peername")
        if self._closing or self._pending >= self.limits.max_pending_handshakes:
            self._count("rejected.busy")
            _abort(writer)
            return
        task = asyncio.current_task()
        assert task is not None
        self._handshake_tasks.add(task)
        self._pending += 1
        try:
            async with asyncio.timeout(self.limits.handshake_timeout_s):
                conn = await self._handshake(reader, writer, expected=None)
        except (HandshakeError, OSError, FrameError) as exc:
            reason = exc.reason if isinstance(exc, HandshakeError) else _io_reason(exc)
            self._count(f"rejected.{reason}")
            log.warning(
                "%s: refused inbound connection from %s (%s): %s", self.name, peer, reason, exc
            )
            _abort(writer)
            return
        except asyncio.CancelledError:
            _abort(writer)
            return
        except Exception:  # a bug here must cost one connection, not the node
            log.exception("%s: internal error accepting from %s", self.name, peer)
            self._count("rejected.internal")
            _abort(writer)
            return
        finally:
            self._pending -= 1
            self._handshake_tasks.discard(task)
        try:
            self._admit(conn)
        except HandshakeError as exc:
            self._count(f"rejected.{exc.reason}")
            log.warning("%s: refused inbound connection from %s: %s", self.name, peer, exc)

    async def _handshake(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        expected: PeerAddress | None,
    ) -> _Connection:
        """Identify the peer by its certificate, then exchange hellos; ``HandshakeError`` if not."""
        der = tls.peer_certificate_der(writer.get_extra_info("ssl_object"))
        try:
            ident = identify_peer(
                der, self._trust, self._revocations, chain_id=self.config.chain_id
            )
        except PeerRejectedError as exc:
            raise HandshakeError(exc.reason, str(exc)) from exc
        known = self.config.known_nodes
        if known is not None and known.get(ident.node_name) != ident.org_id:
            raise HandshakeError("unknown_node", f"{ident} is not a known node of this chain")
        if expected is not None and (
            ident.node_name != expected.node_name
            or (expected.org_id is not None and ident.org_id != expected.org_id)
        ):
            raise HandshakeError("unexpected_peer", f"dialed {expected.node_name}, reached {ident}")
        if ident.node_name == self.name:
            raise HandshakeError("self", "connected to a node with our own name")

        hello = {
            "chain_id": self.config.chain_id,
            "node_name": self.name,
            "org_id": self.identity.org_id,
            "height": self._height,
            "version": PROTOCOL_VERSION,
        }
        writer.write(frames.encode_message(Message(HELLO, hello)))
        await writer.drain()
        got = await frames.read_message(
            reader, max_payload=HELLO_MAX_PAYLOAD, max_depth=self.limits.max_depth
        )
        if got is None:
            raise HandshakeError("closed", f"{ident} closed the connection during the hello")
        height = self._check_hello(ident, got[0])
        return _Connection(
            reader,
            writer,
            ident,
            outbound=expected is not None,
            initiator=self.name if expected is not None else ident.node_name,
            height=height,
        )

    def _check_hello(self, ident: NodeIdentity, msg: Message) -> int:
        """The peer's height from its hello, which must repeat what its certificate says."""
        body: CborValue = msg.body
        if msg.type != HELLO or not isinstance(body, dict) or set(body) != _HELLO_FIELDS:
            raise HandshakeError("bad_hello", f"{ident} sent {msg.type!r} instead of a hello")
        if type(body["version"]) is not int or body["version"] != PROTOCOL_VERSION:
            raise HandshakeError("version", f"{ident} speaks protocol {body['version']!r}")
        if body["chain_id"] != self.config.chain_id:
            raise HandshakeError("wrong_chain", f"{ident} hello names chain {body['chain_id']!r}")
        if body["node_name"] != ident.node_name or body["org_id"] != ident.org_id:
            raise HandshakeError("bad_hello", f"{ident} hello does not match its certificate")
        height = body["height"]
        if type(height) is not int or not 0 <= height <= MAX_HEIGHT:
            raise HandshakeError("bad_hello", f"{ident} hello has a bad height")
        return height

    def _admit(self, conn: _Connection) -> None:
        """Register ``conn`` (one connection per peer) and start serving it, or refuse it."""
        name = conn.identity.node_name
        if self._closing:
            _abort(conn.writer)
            raise HandshakeError("closing", "node is shutting down")
        existing = self._peers.get(name)
        if existing is not None:
            if existing.identity.org_id != conn.identity.org_id:
                _abort(conn.writer)
                raise HandshakeError("duplicate_name", f"{name} is already {existing.identity}")
            if not self._prefer_new(conn, existing):
                _abort(conn.writer)
                raise HandshakeError(
                    "duplicate", f"keeping the connection {existing.initiator} made"
                )
            conn.queue.extend(existing.queue)  # nothing sent yet on conn: order is kept
            conn.queued_bytes += existing.queued_bytes
            existing.queue.clear()
            existing.queued_bytes = 0
            self._drop(
                existing, "replaced", f"by a connection {conn.initiator} made", graceful=True
            )
        elif len(self._peers) >= self.limits.max_peers:
            _abort(conn.writer)
            raise HandshakeError("max_peers", f"already {len(self._peers)} peers")
        self._peers[name] = conn
        assert len(self._peers) <= self.limits.max_peers
        conn.task = asyncio.create_task(self._serve(conn), name=f"{self.name}-peer-{name}")
        self._conn_tasks.add(conn.task)
        conn.task.add_done_callback(self._conn_tasks.discard)
        self._count("connected")
        log.info(
            "%s: connected to %s (%s, %s) at height %d",
            self.name,
            conn.identity,
            "outbound" if conn.outbound else "inbound",
            conn.remote,
            conn.height,
        )
        self._notify_changed()

    def _prefer_new(self, new: _Connection, old: _Connection) -> bool:
        """Both sides pick the same survivor of two connections between them."""
        preferred = min(self.name, new.identity.node_name)
        if (new.initiator == preferred) != (old.initiator == preferred):
            return new.initiator == preferred
        return True  # same initiator: the newer one (the old one is likely half-dead)

    # -- internals: serving ------------------------------------------------------------------

    def _drop(self, conn: _Connection, reason: str, detail: str, *, graceful: bool = False) -> None:
        """Take ``conn`` out of service now (idempotent); its task cleans up."""
        if conn.close_reason is not None:
            return
        conn.close_reason = reason
        if self._peers.get(conn.identity.node_name) is conn:
            del self._peers[conn.identity.node_name]
            self._notify_changed()
        conn.closed.set()
        self._count(f"dropped.{reason}")
        level = logging.INFO if graceful or reason == "eof" else logging.WARNING
        log.log(level, "%s: dropped %s (%s): %s", self.name, conn.identity, reason, detail)
        if graceful:
            with contextlib.suppress(Exception):
                conn.writer.close()
        else:
            _abort(conn.writer)
        if conn.task is not None and conn.task is not asyncio.current_task():
            conn.task.cancel()

    async def _serve(self, conn: _Connection) -> None:
        writer_task = asyncio.create_task(self._write_loop(conn))
        reason, detail, graceful = "eof", "peer closed the connection", True
        try:
            await self._read_loop(conn)
        except asyncio.CancelledError:
            reason, detail = "cancelled", "cancelled"
        except FrameError as exc:
            reason, detail, graceful = "protocol", f"{type(exc).__name__}: {exc}", False
        except TimeoutError:
            reason, detail, graceful = "idle", f"nothing for {self.limits.idle_timeout_s}s", False
        except (OSError, EOFError) as exc:
            reason, detail, graceful = "io", f"{type(exc).__name__}: {exc}", False
        except Exception as exc:  # a bug here must cost one peer, not the node
            log.exception("%s: internal error serving %s", self.name, conn.identity)
            reason, detail, graceful = "internal", repr(exc), False
        finally:
            writer_task.cancel()
            self._drop(conn, reason, detail, graceful=graceful)
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(conn.writer.wait_closed(), self.limits.close_timeout_s)
            _abort(conn.writer)

    async def _read_loop(self, conn: _Connection) -> None:
        lim = self.limits
        while True:
            async with asyncio.timeout(lim.idle_timeout_s):
                got = await frames.read_message(
                    conn.reader, max_payload=lim.max_frame_payload, max_depth=lim.max_depth
                )
            if got is None:
                return
            msg, size = got
            if msg.type == PING:
                continue
            if msg.type.startswith(frames.RESERVED_PREFIX):
                raise ProtocolViolationError(f"unexpected {msg.type!r} after the hello")
            await self._inbox.put(Received(conn.identity, msg), size)

    async def _write_loop(self, conn: _Connection) -> None:
        lim = self.limits
        try:
            while True:
                if conn.queue:
                    frame = conn.queue.popleft()
                    conn.queued_bytes -= len(frame)
                    assert conn.queued_bytes >= 0 and (conn.queue or conn.queued_bytes == 0)
                else:
                    conn.wakeup.clear()
                    try:
                        async with asyncio.timeout(lim.ping_interval_s):
                            await conn.wakeup.wait()
                        continue
                    except TimeoutError:
                        frame = self._ping_frame  # keepalive: the peer's idle timer needs frames
                conn.writer.write(frame)
                async with asyncio.timeout(lim.write_timeout_s):
                    await conn.writer.drain()
        except TimeoutError:
            self._drop(conn, "slow", f"a write did not drain within {lim.write_timeout_s}s")
        except (OSError, RuntimeError) as exc:
            self._drop(conn, "io", f"write failed: {type(exc).__name__}: {exc}")


_HELLO_FIELDS: Final = frozenset({"chain_id", "node_name", "org_id", "height", "version"})


def _io_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "tls_verify"
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, FrameError):
        return "protocol"
    return "io"


__all__ = [
    "HandshakeError",
    "NetConfig",
    "NetLimits",
    "PeerAddress",
    "PeerInfo",
    "PeerNetwork",
    "ProtocolViolationError",
    "Received",
]
