"""Test harness: a real local network of node processes on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from consortia.node.client import NodeUnreachableError, call
from consortia.node.network_home import API_PORT_OFFSET, NodeConfig, init_network
from consortia.node.supervisor import spawn_node

PASSWORD = "net-test"


def _ports_free(base: int, count: int) -> bool:
    for port in range(base, base + count):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_base_port(count: int) -> int:
    """A base of ``count`` free ports whose REST API range (``API_PORT_OFFSET`` above it, one
    port per node) is free too, for networks that serve the API (the demo's)."""
    start = 20_000 + (os.getpid() * 37) % 20_000
    for base in range(start, 60_000, count + 10):
        if _ports_free(base, count) and _ports_free(base + API_PORT_OFFSET, count // 2 + 1):
            return base
    raise RuntimeError("no free port range")


class LocalNet:
    """Nodes as separate OS processes; the test kills and restarts them at will."""

    def __init__(
        self,
        home: Path,
        *,
        validators: int = 4,
        observers: int = 0,
        standby: int = 0,
        suite: str = "intl",
        api: bool = False,
    ) -> None:
        self.home = home
        n = validators + observers + standby
        init_network(
            home,
            validators=validators,
            observers=observers,
            standby=standby,
            suite_name=suite,
            base_port=free_base_port(2 * n),
            password=PASSWORD,
            scrypt_n=1 << 10,
            api_port_offset=API_PORT_OFFSET if api else None,  # most tests need no REST API
        )
        self.names = [f"validator-{i}" for i in range(validators + standby)] + [
            f"observer-{i}" for i in range(observers)
        ]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.configs = {name: NodeConfig.load(home / name) for name in self.names}

    def start(self, name: str) -> None:
        self.procs[name] = spawn_node(self.home / name, password=PASSWORD)

    def start_all(self) -> None:
        for name in self.names:
            self.start(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait(timeout=15)

    def stop_all(self) -> None:
        for name in list(self.procs):
            proc = self.procs.pop(name)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def status(self, name: str) -> dict[str, Any] | None:
        """The node's status, or None if it does not answer as *that* node (down, busy, or —
        should another test's network have taken the port — someone else)."""
        cfg = self.configs[name]
        try:
            reply = call(cfg.host, cfg.client_port, "status", timeout_s=5)
        except (NodeUnreachableError, OSError):
            return None
        if reply.get("node") != name or "height" not in reply:
            return None
        return reply

    def request(
        self, name: str, kind: str, body: dict[str, Any], timeout_s: float = 30
    ) -> dict[str, Any]:
        cfg = self.configs[name]
        return call(cfg.host, cfg.client_port, kind, body, timeout_s=timeout_s)

    def heights(self, names: list[str] | None = None) -> dict[str, int]:
        out = {}
        for name in names or list(self.procs):
            st = self.status(name)
            out[name] = -1 if st is None else int(st["height"])
        return out

    def wait_for(self, names: list[str], height: int, timeout_s: float = 60) -> dict[str, int]:
        deadline = time.monotonic() + timeout_s
        while True:
            hs = self.heights(names)
            if all(h >= height for h in hs.values()):
                return hs
            if time.monotonic() > deadline:
                logs = {n: (self.home / n / "node.log").read_text()[-2000:] for n in names}
                raise AssertionError(f"heights {hs} did not reach {height}; logs: {logs}")
            time.sleep(0.3)

    def block(self, name: str, height: int) -> dict[str, Any]:
        return self.request(name, "block.get", {"height": height}, timeout_s=5)
