"""The continuous look-through follower (`consortia supervise follow`).

The follower runs as its own process, as under `consortia up`, reading the store of a chain this
test process commits to (LMDB: one writer, read-only readers in other processes). It indexes new
blocks as they are committed, stops cleanly on SIGTERM, and a restarted follower resumes without
indexing anything twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from consortia.lookthrough.follower import follow_round, run_follower
from consortia.lookthrough.index import LookthroughError, LookthroughIndex
from consortia.node.home import init_home
from consortia.node.local import VALIDATORS_DIR, LocalChain, load_key_dir
from consortia.node.network_home import NodeConfig
from consortia.node.supervisor import node_homes
from consortia.node.topology import (
    configure_lookthrough,
    init_two_tier,
    lookthrough_path,
    observer_node,
    spawn_follower,
)

PASSWORD = "follower-test"
CHAIN = "biz-follow"


def wait_for(what: str, cond: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def indexed(db: Path) -> int:
    if not db.is_file():
        return 0
    try:
        with LookthroughIndex(db, readonly=True) as idx:
            return idx.indexed_height(CHAIN)
    except Exception:  # the follower may be creating the file right now
        return 0


def block_rows(db: Path) -> list[tuple[int, str]]:
    with LookthroughIndex(db, readonly=True) as idx:
        rows = idx.db.execute("SELECT height, block_hash FROM blocks ORDER BY height").fetchall()
    return [(int(h), str(bh)) for h, bh in rows]


def follower(db: Path, home: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "consortia",
            "supervise",
            "follow",
            "--db",
            str(db),
            "--home",
            str(home),
            "--interval",
            "0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return out


def test_follower_process_indexes_live_blocks_and_resumes_after_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "chain"
    init_home(home, chain_id=CHAIN, password=PASSWORD, scrypt_n=1 << 10)
    db = tmp_path / "lookthrough.sqlite"
    chain = LocalChain(home, load_key_dir(home / VALIDATORS_DIR, PASSWORD))
    proc = follower(db, home)
    try:
        for _ in range(3):
            chain.commit([])
        wait_for("the first 3 blocks", lambda: indexed(db) == 3)
        for _ in range(2):  # committed while the follower runs
            chain.commit([])
        wait_for("blocks 4 and 5", lambda: indexed(db) == 5)
        out = stop(proc)
        assert "stopped: biz-follow at 5" in out, out
        assert f"{CHAIN}: +" in out and "Traceback" not in out
        for _ in range(4):  # committed while no follower runs
            chain.commit([])
        proc = follower(db, home)
        wait_for("the restarted follower to catch up", lambda: indexed(db) == 9)
        out = stop(proc)
        assert f"{CHAIN} at 5" in out.splitlines()[0], out  # resumed where it stopped
        rows = block_rows(db)
        assert [h for h, _ in rows] == list(range(1, 10))  # each block once, no gap
        assert all(bh == (chain.store.block_hash(h) or b"").hex() for h, bh in rows)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        chain.close()


def test_a_chain_it_cannot_read_is_reported_and_the_others_go_on(tmp_path: Path) -> None:
    home = tmp_path / "chain"
    init_home(home, chain_id=CHAIN, password=PASSWORD, scrypt_n=1 << 10)
    with LocalChain(home, load_key_dir(home / VALIDATORS_DIR, PASSWORD)) as chain:
        chain.commit([])
        chain.commit([])
    missing = tmp_path / "no-node-yet"
    db = tmp_path / "idx.sqlite"
    with LookthroughIndex(db) as idx:
        result = follow_round(idx, [missing, home], batch=1)
        assert list(result.errors) == [missing] and "not found" in result.errors[missing]
        assert [(p.chain_id, p.indexed, p.height, p.head) for p in result.progress] == [
            (CHAIN, 1, 1, 2)
        ]
        assert result.behind  # one batch of 1: block 2 still waits
    # run_follower: catches up without pausing between batches, says each problem once.
    lines: list[str] = []
    halt = threading.Event()
    thread = threading.Thread(
        target=run_follower,
        args=(db, [missing, home]),
        kwargs={"stop": halt, "interval_s": 0.05, "batch": 1, "say": lines.append},
    )
    thread.start()
    try:
        wait_for("block 2", lambda: indexed(db) == 2)
        time.sleep(0.3)  # a few more polls
    finally:
        halt.set()
        thread.join(10)
    assert not thread.is_alive()
    problems = [line for line in lines if "cannot follow" in line]
    assert len(problems) == 1 and str(missing) in problems[0], lines
    assert lines[-1] == f"stopped: {CHAIN} at 2"


def test_two_tier_home_wires_the_follower_and_the_supervision_apis(tmp_path: Path) -> None:
    """`init --two-tier` points every supervision node at the index `spawn_follower` writes
    (and only them); the follower started as `consortia up` starts it waits for nodes that are
    not running yet and stops on SIGTERM."""
    home = tmp_path / "net"
    topology = init_two_tier(home, business_chains=2, password=PASSWORD, scrypt_n=1 << 10)
    index = lookthrough_path(topology)
    sup_nodes = node_homes(topology.chain_home(topology.supervision))
    for node_home in sup_nodes:
        configured = NodeConfig.load(node_home).lookthrough_index
        assert configured and (node_home / configured).resolve() == index.resolve()
    for b in topology.business:
        for node_home in node_homes(topology.chain_home(b)):
            assert NodeConfig.load(node_home).lookthrough_index == ""
    assert configure_lookthrough(topology) == []  # idempotent: `up` changes nothing here
    proc = spawn_follower(topology, interval_s=0.1)
    try:
        log = home / "lookthrough.log"
        wait_for(
            "both chains reported as not readable yet",
            lambda: log.is_file() and log.read_text().count("cannot follow") == 2,
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    for b in topology.business:
        assert str(observer_node(topology.chain_home(b))) in text
    assert "stopped: nothing indexed" in text and "Traceback" not in text
    assert index.is_file()  # created empty, ready for the APIs


def test_an_index_of_another_schema_is_refused_with_what_to_do(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    with LookthroughIndex(db) as idx:
        idx.db.execute("UPDATE meta SET value='1' WHERE key='schema'")
    for readonly in (False, True):
        with pytest.raises(LookthroughError, match=r"schema 1.*delete it"):
            LookthroughIndex(db, readonly=readonly)
    with pytest.raises(LookthroughError, match="no index at"):
        LookthroughIndex(tmp_path / "absent.sqlite", readonly=True)
    assert not (tmp_path / "absent.sqlite").exists()
