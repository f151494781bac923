"""Test harness: the two-tier topology (a supervision chain, business chains and their relayers)
as real OS processes on loopback, built with ``consortia.node.topology``.

``TwoTierNet`` starts every node of every chain, runs the trust bootstrap, starts one relayer per
business chain and reads the chains through the nodes' client ports. ``stop`` ends every process
it started (SIGTERM, then SIGKILL); use it in a ``finally`` or a fixture teardown.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from consortia import codec
from consortia.crypto import KeyPair, get_suite
from consortia.ledger.types import Block, decode_block
from consortia.modules import anchoring
from consortia.node.client import NodeUnreachableError, call
from consortia.node.local import load_genesis
from consortia.node.network_home import API_PORT_OFFSET, DEFAULT_BASE_PORT, NodeConfig
from consortia.node.operations import Operator
from consortia.node.supervisor import node_homes, spawn_node
from consortia.node.topology import (
    PORTS_PER_CHAIN,
    Topology,
    account_key,
    bootstrap,
    entry_node,
    init_two_tier,
    observer_node,
    spawn_relay,
    wait_until_serving,
)

PASSWORD = "two-tier-test"
SCRYPT_N = 1 << 10
STOP_GRACE_S = 10.0

T = TypeVar("T")


_DEFAULT_END = DEFAULT_BASE_PORT + 10 * PORTS_PER_CHAIN


def _ephemeral_low() -> int:
    """The first port the kernel hands out for outgoing connections (32768 if unknown)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_two_tier_base(chains: int, nodes_per_chain: int) -> int:
    """A base port for ``init_two_tier`` whose ports are all free: chain n uses
    ``base + n * PORTS_PER_CHAIN`` onwards, two per node. Chosen below the kernel's ephemeral
    range, where the many loopback connections of running networks cannot take them."""
    low, high = 20_000, _ephemeral_low() - chains * PORTS_PER_CHAIN
    if high <= low:
        low, high = 1_024, 60_000 - chains * PORTS_PER_CHAIN
    span = high - low
    step = chains * PORTS_PER_CHAIN + 10
    offset = (os.getpid() * 7919) % span
    for i in range(span // step + 1):
        base = low + (offset + i * step) % span
        if base < _DEFAULT_END and base + step > DEFAULT_BASE_PORT:
            continue  # where `consortia init` puts networks by default (the demo's, say)
        ports = [
            base + n * PORTS_PER_CHAIN + p
            for n in range(chains)
            for p in range(2 * nodes_per_chain)
        ] + [  # and the REST API ports, when a home has them (the demo's)
            base + API_PORT_OFFSET + n * PORTS_PER_CHAIN + i
            for n in range(chains)
            for i in range(nodes_per_chain)
        ]
        if all(_port_free(port) for port in ports):
            return base
    raise RuntimeError("no free port range for a two-tier network")


def wait_until(
    what: str, probe: Callable[[], T | None], *, timeout_s: float, every_s: float = 0.25
) -> T:
    """Poll ``probe`` until it returns something other than None/False; ``AssertionError``
    naming ``what`` (and the last value seen) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            last = probe()
        except (NodeUnreachableError, OSError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if last is not None and last is not False:
                return cast(T, last)
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}: {last!r}")
        time.sleep(every_s)


def stop_process(proc: subprocess.Popen[bytes], *, grace_s: float = STOP_GRACE_S) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class TwoTierNet:
    """A supervision chain and ``business_chains`` business chains, each node its own process."""

    def __init__(
        self,
        home: Path,
        *,
        business_chains: int = 2,
        validators: int = 4,
        observers: int = 1,
        relay_interval_ms: int = 300,
    ) -> None:
        self.home = home
        self.relay_interval_ms = relay_interval_ms
        chains = business_chains + 1
        base = free_two_tier_base(chains, validators + observers)
        self.topology: Topology = init_two_tier(
            home,
            business_chains=business_chains,
            validators=validators,
            observers=observers,
            base_port=base,
            password=PASSWORD,
            scrypt_n=SCRYPT_N,
            api_port_offset=None,  # these tests use the client ports; no REST API processes
        )
        self.nodes: dict[Path, subprocess.Popen[bytes]] = {}
        self.relays: dict[str, subprocess.Popen[bytes]] = {}

    # -- processes -------------------------------------------------------------------------

    @property
    def supervision(self) -> Path:
        return self.topology.chain_home(self.topology.supervision)

    @property
    def business(self) -> tuple[str, ...]:
        return self.topology.business

    def chain_home(self, name: str) -> Path:
        return self.topology.chain_home(name)

    def start(self, *, timeout_s: float = 120.0) -> None:
        """Start every node, wait until all serve, bootstrap the trust, start the relayers."""
        for chain in (self.topology.supervision, *self.topology.business):
            for node_home in node_homes(self.chain_home(chain)):
                self.nodes[node_home] = spawn_node(node_home, password=PASSWORD)
        wait_until_serving(self.topology, timeout_s=timeout_s)
        bootstrap(self.topology, password=PASSWORD)
        for name in self.business:
            self.start_relay(name)

    def start_relay(self, business: str) -> None:
        assert business not in self.relays, f"the relayer of {business} is already running"
        self.relays[business] = spawn_relay(
            self.topology, business, password=PASSWORD, interval_ms=self.relay_interval_ms
        )

    def kill_relay(self, business: str, sig: int = signal.SIGKILL) -> None:
        proc = self.relays.pop(business)
        proc.send_signal(sig)
        proc.wait(timeout=15)

    def stop(self) -> None:
        """End every process this net started: SIGTERM to all, then SIGKILL to stragglers."""
        procs = [*self.relays.values(), *self.nodes.values()]
        self.relays.clear()
        self.nodes.clear()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def dead(self) -> list[str]:
        """Processes that exited although nobody stopped them (with their exit codes)."""
        out = [f"node {h} ({p.returncode})" for h, p in self.nodes.items() if p.poll() is not None]
        out += [
            f"relay {b} ({p.returncode})" for b, p in self.relays.items() if p.poll() is not None
        ]
        return out

    # -- reading the chains ----------------------------------------------------------------

    def key(self, chain: str, account: str) -> KeyPair:
        return account_key(self.chain_home(chain), account, PASSWORD)

    def operator(self, chain: str, account: str, *, node: Path | None = None) -> Operator:
        """``account`` of ``chain`` acting through ``node`` (the chain's entry node)."""
        chain_home = self.chain_home(chain)
        return Operator.from_node_home(self.key(chain, account), node or entry_node(chain_home))

    def reader(self, chain: str) -> Operator:
        """A state reader on the chain's observer node (the regulator's, as the relayer uses)."""
        chain_home = self.chain_home(chain)
        return Operator.from_node_home(self.key(chain, "regulator"), observer_node(chain_home))

    def request(self, chain: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        cfg = NodeConfig.load(observer_node(self.chain_home(chain)))
        reply = call(cfg.host, cfg.client_port, kind, body, timeout_s=10)
        assert isinstance(reply, dict)
        return reply

    def head(self, chain: str) -> int:
        height = self.request(chain, "status", {}).get("height")
        assert isinstance(height, int), height
        return height

    def wait_head(self, chain: str, height: int, *, timeout_s: float = 30) -> int:
        """Wait until ``chain`` has committed ``height``; its head then."""
        return wait_until(
            f"{chain} at height {height}",
            lambda: h if (h := self.head(chain)) >= height else None,
            timeout_s=timeout_s,
            every_s=0.1,
        )

    def block(self, chain: str, height: int) -> Block:
        reply = self.request(chain, "block.get", {"height": height})
        assert reply.get("ok"), reply
        raw = reply.get("block")
        assert isinstance(raw, bytes), reply
        return decode_block(raw)

    def block_hash(self, chain: str, height: int) -> bytes:
        suite = get_suite(load_genesis(observer_node(self.chain_home(chain))).suite)
        return self.block(chain, height).header.hash(suite)

    def record(self, chain: str, key: bytes, cls: type[T]) -> T | None:
        raw = self.reader(chain).state_value(key)
        return None if raw is None else codec.decode_struct(cls, raw)

    def anchored(self, business: str) -> anchoring.AnchoredChain:
        chain = self.record(
            self.topology.supervision, anchoring.chain_key(business), anchoring.AnchoredChain
        )
        assert chain is not None, f"{business} is not registered on the supervision chain"
        return chain

    def wait_anchored(self, business: str, height: int, *, timeout_s: float = 30) -> float:
        """Wait until ``business`` is anchored up to ``height``; the seconds it took."""
        started = time.monotonic()
        wait_until(
            f"{business} anchored up to {height}",
            lambda: self.anchored(business).height >= height,
            timeout_s=timeout_s,
            every_s=0.1,
        )
        return time.monotonic() - started

    def anchor(self, business: str, height: int) -> anchoring.Anchor | None:
        return self.record(
            self.topology.supervision, anchoring.anchor_key(business, height), anchoring.Anchor
        )

    def relay_reports(self, business: str) -> list[dict[str, Any]]:
        """The relayer's round reports so far (one JSON line per round in its log)."""
        path = self.home / f"relay-{business}.log"
        out = []
        for raw in path.read_text(errors="replace").splitlines() if path.exists() else []:
            line = raw.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def logs(self, tail: int = 1500) -> str:
        """The end of every relayer log (for assertion messages)."""
        parts = []
        for name in self.business:
            path = self.home / f"relay-{name}.log"
            if path.exists():
                parts.append(f"--- relay-{name}.log\n{path.read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)
