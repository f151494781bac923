"""A real 4-validator network on this machine, driven by clients; prints one JSON object last.

    .venv/bin/python bench/network.py                 # both suites, fixed load then saturation
    .venv/bin/python bench/network.py --suite intl --seconds 10

For each suite: a fresh network (4 validator processes, mutual TLS on loopback) is started;
transactions are signed beforehand by five member accounts (the registry's ``set_roles`` on the
sender's own account: a signed, executed, state-writing transaction — the transfer modules arrive
with the securities issue); client connections spread over the four nodes submit them and wait
for each one's commit. Two phases:

- fixed offered load (``--rate`` tx/s): latency is submission → commit (finality), p50 / p99;
- saturation: as many outstanding transactions as the clients allow.

Reported per phase: committed tx/s, finality latency p50/p99 (ms), blocks/s, CPU seconds per
node process. The client runs on the same 2 cores as the four nodes and takes its share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from consortia.cli.progress import stages
from consortia.crypto import decrypt_key_file, get_suite
from consortia.ledger.types import Transaction, sign_transaction
from consortia.node.client import ClientConnection, call
from consortia.node.network_home import NodeConfig, init_network
from consortia.node.supervisor import spawn_node

PASSWORD = "bench"
SENDERS = {
    "exchange-admin": ["admin", "exchange", "org_admin"],
    "broker-a-admin": ["broker", "org_admin"],
    "broker-b-admin": ["broker", "org_admin"],
    "ccb-admin": ["operator_bank", "org_admin"],
    "pboc-admin": ["central_bank", "org_admin"],
}
NODES = [f"validator-{i}" for i in range(4)]


def _free_base() -> int:
    import socket

    for base in range(31_000, 60_000, 50):
        ok = True
        for port in range(base, base + 10):
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free ports")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def presign(home: Path, suite_name: str, per_sender: int) -> dict[str, list[Transaction]]:
    suite = get_suite(suite_name)
    out = {}
    for name, roles in SENDERS.items():
        key = decrypt_key_file((home / "accounts" / f"{name}.key").read_bytes(), PASSWORD)
        addr = suite.address(key.public_key)
        out[name] = [
            sign_transaction(
                suite,
                key,
                chain_id="consortia-bench",
                nonce=n,
                module="registry",
                method="set_roles",
                args={"address": addr, "roles": roles},
            )
            for n in range(per_sender)
        ]
    return out


async def drive(
    configs: Sequence[NodeConfig],
    queues: dict[str, list[Transaction]],
    *,
    seconds: float,
    rate: float | None,
    concurrency: int,
    batch: int = 1,
) -> dict[str, Any]:
    """Submit from ``concurrency`` connections (``batch`` transactions per request, each request
    waiting for all of its transactions' commits); returns latencies and counts."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    # Interleave senders so every connection keeps each sender's nonces roughly in order.
    order = [tx for group in zip(*queues.values(), strict=False) for tx in group]
    cursor = 0
    interval = None if rate is None else concurrency / rate

    async def worker(i: int) -> None:
        nonlocal cursor
        cfg = configs[i % len(configs)]
        conn = await ClientConnection.open(cfg.host, cfg.client_port)
        try:
            next_at = time.monotonic()
            while time.monotonic() < deadline and cursor < len(order):
                if interval is not None:
                    next_at += interval
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                txs = order[cursor : cursor + batch]
                cursor += len(txs)
                start = time.monotonic()
                reply = await conn.request(
                    "tx.submit_many", {"txs": [tx.encode() for tx in txs], "wait": True}
                )
                took_ms = (time.monotonic() - start) * 1000
                for result in reply.get("results") or [reply]:
                    if result.get("ok"):
                        latencies.append(took_ms)
                    else:
                        code = str(result.get("code"))
                        errors[code] = errors.get(code, 0) + 1
        finally:
            await conn.close()

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return {"latencies": latencies, "errors": errors, "used": cursor}


def run_suite(
    suite_name: str,
    seconds: float,
    rate: float,
    concurrency: int,
    batch: int,
    stage: Callable[[str], None] = lambda _label: None,
) -> dict[str, Any]:
    """Both load phases on a fresh network; ``stage(label)`` is told as each step starts."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "net"
        init_network(
            home,
            validators=4,
            suite_name=suite_name,
            chain_id="consortia-bench",
            base_port=_free_base(),
            password=PASSWORD,
            scrypt_n=1 << 10,
        )
        stage(f"[{suite_name}] pre-signing transactions")
        # Enough for the fixed phase plus a saturation phase above what 2 cores can commit.
        ceiling = 3_000 if suite_name == "intl" else 800
        per_sender = int((rate + ceiling) * seconds / len(SENDERS)) + 1
        queues = presign(home, suite_name, per_sender)
        configs = [NodeConfig.load(home / n) for n in NODES]
        stage(f"[{suite_name}] starting 4 validators")
        procs = [spawn_node(home / n, password=PASSWORD, log_level="WARNING") for n in NODES]
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (
                        call(configs[0].host, configs[0].client_port, "status", timeout_s=2)[
                            "height"
                        ]
                        >= 2
                    ):
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("network did not start")
                time.sleep(0.3)
            offsets = dict.fromkeys(queues, 0)
            for phase, phase_rate in (("fixed_load", rate), ("saturation", None)):
                remaining = {k: v[offsets[k] :] for k, v in queues.items()}
                stage(f"[{suite_name}] {phase} for {seconds:.0f} s")
                h0 = call(configs[0].host, configs[0].client_port, "status")["height"]
                cpu0 = [_cpu_seconds(p.pid) for p in procs]
                t0 = time.monotonic()
                out = asyncio.run(
                    drive(
                        configs,
                        remaining,
                        seconds=seconds,
                        rate=phase_rate,
                        # Saturation: few connections, large batches (many txs in flight).
                        concurrency=16 if phase_rate is None else concurrency,
                        batch=batch if phase_rate is None else 1,
                    )
                )
                elapsed = time.monotonic() - t0
                h1 = call(configs[0].host, configs[0].client_port, "status")["height"]
                cpu1 = [_cpu_seconds(p.pid) for p in procs]
                lat = sorted(out["latencies"])
                # ``order`` is round-robin over senders: count what each one used.
                for i, name in enumerate(remaining):
                    offsets[name] += len(range(i, out["used"], len(remaining)))
                results[phase] = {
                    "offered_tx_per_s": phase_rate,
                    "committed_tx_per_s": round(len(lat) / elapsed, 1),
                    "finality_ms_p50": round(statistics.median(lat), 1) if lat else None,
                    "finality_ms_p99": round(lat[int(len(lat) * 0.99) - 1], 1) if lat else None,
                    "blocks_per_s": round((h1 - h0) / elapsed, 2),
                    "cpu_s_per_node": [round(b - a, 2) for a, b in zip(cpu0, cpu1, strict=True)],
                    "seconds": round(elapsed, 1),
                    "errors": out["errors"],
                    "submitted": out["used"],
                }
                time.sleep(2)  # let the next phase start from an empty mempool
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=["intl", "gm", "both"], default="both")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=200.0, help="fixed offered load, tx/s")
    parser.add_argument("--concurrency", type=int, default=64, help="fixed-load connections")
    parser.add_argument(
        "--batch", type=int, default=100, help="transactions per request at saturation"
    )
    args = parser.parse_args()
    suites = ["intl", "gm"] if args.suite == "both" else [args.suite]
    report: dict[str, Any] = {"validators": 4, "cores": os.cpu_count()}
    # Progress on stderr (a bar on a terminal); stdout is only the JSON report.
    with stages("network benchmark", 4 * len(suites)) as stage:
        for s in suites:
            rate = args.rate if s == "intl" else min(args.rate, 100.0)
            report[s] = run_suite(s, args.seconds, rate, args.concurrency, args.batch, stage)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
