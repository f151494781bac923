"""`consortia up`: run every node of a local network as its own process, and `consortia status`.

Each node runs as ``python -m consortia node start --home DIR/NODE`` with its output in
``DIR/NODE/node.log``. A node that dies is restarted after a short pause (so a crash test can kill
one and see it catch up); Ctrl-C (or SIGTERM) stops them all: SIGTERM first, SIGKILL for any that
has not exited within the grace period.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from consortia.node.client import NodeUnreachableError, request
from consortia.node.local import NodeError
from consortia.node.network_home import CONFIG_FILE, NodeConfig

LOG_FILE = "node.log"
RESTART_DELAY_S = 1.0
STOP_GRACE_S = 10.0


def node_homes(home: Path) -> list[Path]:
    """The node directories of a network home, in name order."""
    homes = (
        sorted(p for p in home.iterdir() if (p / CONFIG_FILE).is_file()) if home.is_dir() else []
    )
    if not homes:
        raise NodeError(f"no node directories under {home}: run `consortia init --home {home}`")
    return homes


@dataclass
class _Child:
    name: str
    start: Callable[[], subprocess.Popen[bytes]]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0


def node_start_argv(node_home: Path, *, log_level: str | None = None) -> list[str]:
    """The command line that starts the node in ``node_home``. ``--log-level`` is passed only
    when ``log_level`` is given, so that by default ``[log] level`` in config.toml decides."""
    argv = [sys.executable, "-m", "consortia", "node", "start", "--home", str(node_home)]
    if log_level is not None:
        argv += ["--log-level", log_level]
    return argv


def spawn_node(
    node_home: Path, *, password: str | None = None, log_level: str | None = None
) -> subprocess.Popen[bytes]:
    """Start ``consortia node start`` for ``node_home`` as its own process, output appended to
    ``node_home/node.log`` (the supervisor, the network demo, tests and benchmarks use this).
    ``log_level`` overrides the node's configured level; None keeps config.toml's."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if password is not None:
        env["CONSORTIA_KEY_PASSWORD"] = password
    with open(node_home / LOG_FILE, "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            node_start_argv(node_home, log_level=log_level),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )


def supervise(
    home: Path,
    *,
    say: Callable[[str], None] = print,
    restart: bool = True,
    node_dirs: Sequence[Path] | None = None,
    then: Callable[[], Sequence[tuple[str, Callable[[], subprocess.Popen[bytes]]]]] | None = None,
) -> int:
    """Start the nodes of ``home`` (or ``node_dirs``) and keep them running until interrupted.

    ``then`` runs once the nodes are started (e.g. the two-tier bootstrap) and returns further
    processes to supervise the same way (the relayers). A process that dies is restarted after
    a short pause when ``restart``. Returns the exit code.
    """
    children = [
        _Child(h.relative_to(home).as_posix(), partial(spawn_node, h))
        for h in (node_dirs if node_dirs is not None else node_homes(home))
    ]
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    def start(child: _Child) -> None:
        child.proc = child.start()
        say(f"started {child.name} (pid {child.proc.pid})")

    old_int = signal.signal(signal.SIGINT, request_stop)
    old_term = signal.signal(signal.SIGTERM, request_stop)
    try:
        for child in children:
            start(child)
        say(f"{len(children)} nodes running; logs in {home}/**/{LOG_FILE}; Ctrl-C stops them all")
        if then is not None and not stopping:
            extra = [_Child(name, fn) for name, fn in then()]
            for child in extra:
                start(child)
            children += extra
        while not stopping:
            time.sleep(0.2)
            for child in children:
                if child.proc is not None and child.proc.poll() is not None and not stopping:
                    say(f"{child.name} exited with {child.proc.returncode}")
                    if restart:
                        time.sleep(RESTART_DELAY_S)
                        child.restarts += 1
                        start(child)
                        say(f"restarted {child.name} (restart {child.restarts})")
                    else:
                        child.proc = None
    finally:
        say("stopping ...")
        for child in children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        say("all stopped")
    return 0


def api_url(config: NodeConfig) -> str | None:
    """The node's configured REST API base URL, or None when it serves none."""
    return f"http://{config.host}:{config.api_port}" if config.api_port else None


async def _status_of(node_home: Path, timeout_s: float) -> dict[str, Any]:
    """One node's status; ``api`` is the URL the node reports (a ``--api-port`` override
    included), or, from an older node or one that does not answer, its configured URL."""
    config = NodeConfig.load(node_home)
    try:
        reply = await request(config.host, config.client_port, "status", timeout_s=timeout_s)
    except (NodeUnreachableError, OSError) as exc:
        return {"node": config.node_name, "ok": False, "api": api_url(config), "error": str(exc)}
    reply.pop("ok", None)
    if "api" not in reply:
        reply["api"] = api_url(config)
    return {"ok": True, **reply}


def network_status(home: Path, *, timeout_s: float = 3.0) -> list[dict[str, Any]]:
    """Ask every node of ``home`` (or the single node ``home``) for its status."""
    homes = [home] if (home / CONFIG_FILE).is_file() else node_homes(home)

    async def gather() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(_status_of(h, timeout_s) for h in homes)))

    return asyncio.run(gather())
