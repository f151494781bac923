"""`consortia up`'s process plumbing: a node started by the supervisor logs at the level its
config.toml names unless a level is asked for, and `up` brings a two-tier home laid out before
the look-through follower and evidence over the API up to date before starting anything."""

from __future__ import annotations

import dataclasses
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from consortia import logs
from consortia.cli import app as cli_app
from consortia.node.network_home import LogSettings, NodeConfig
from consortia.node.supervisor import LOG_FILE, node_homes, node_start_argv, spawn_node
from consortia.node.topology import init_two_tier
from tests.netkit import PASSWORD, LocalNet


def test_the_log_level_flag_is_passed_only_when_asked(tmp_path: Path) -> None:
    argv = node_start_argv(tmp_path)
    assert argv == [sys.executable, "-m", "consortia", "node", "start", "--home", str(tmp_path)]
    assert node_start_argv(tmp_path, log_level="DEBUG")[-2:] == ["--log-level", "DEBUG"]


def test_a_spawned_node_logs_at_its_configured_level(tmp_path: Path) -> None:
    """``[log] level = "WARNING"`` in config.toml. Asked for INFO, the node logs its commits at
    INFO; started as `consortia up` starts it (no ``--log-level``), it keeps committing but its
    log holds no INFO line."""
    net = LocalNet(tmp_path / "net", validators=1)
    name = net.names[0]
    node_home = net.home / name
    config = NodeConfig.load(node_home)
    quiet = LogSettings(format="json", level="WARNING")
    dataclasses.replace(config, log=quiet).save(node_home)
    log_file = node_home / LOG_FILE

    def run_until(height: int, **level: str) -> list[dict[str, object]]:
        log_file.write_text("")
        net.procs[name] = spawn_node(node_home, password=PASSWORD, **level)
        try:
            net.wait_for([name], height)
        finally:
            net.kill(name, signal.SIGTERM)
        return [logs.fields_of(line) for line in log_file.read_text().splitlines()]

    loud = run_until(2, log_level="INFO")
    assert any(str(line["message"]).startswith("committed height") for line in loud), loud
    assert {line["level"] for line in loud} >= {"INFO"}
    quiet_lines = run_until(4)  # the supervisor's call
    assert {str(line["level"]) for line in quiet_lines} <= {"WARNING", "ERROR", "CRITICAL"}


def test_up_upgrades_an_older_two_tier_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A home laid out before the follower and evidence over the API: `up` points the
    supervision nodes at the look-through index and the business nodes' APIs at a supervision
    API, saying so, before it supervises anything (the supervision itself is not run here)."""
    home = tmp_path / "net"
    topology = init_two_tier(home, business_chains=1, password=PASSWORD, scrypt_n=1 << 10)
    sup_nodes = node_homes(topology.chain_home(topology.supervision))
    biz_nodes = node_homes(topology.chain_home(topology.business[0]))
    expected = {
        h: (NodeConfig.load(h).lookthrough_index, NodeConfig.load(h).supervision_api)
        for h in (*sup_nodes, *biz_nodes)
    }
    assert any(api for _, api in expected.values()), "business nodes serve no API"
    for node_home in (*sup_nodes, *biz_nodes):  # as an earlier `init --two-tier` left them
        config = NodeConfig.load(node_home)
        older = dataclasses.replace(config, lookthrough_index="", supervision_api="")
        older.save(node_home)
    supervised: list[Sequence[Path]] = []

    def supervise(
        _home: Path, *, node_dirs: Sequence[Path], then: Callable[[], Any], **_: Any
    ) -> int:
        supervised.append(node_dirs)  # started nothing: the layout is what is under test
        return 0

    monkeypatch.setattr("consortia.cli.supervise", supervise)
    result = CliRunner().invoke(cli_app, ["up", "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert len(supervised) == 1 and set(supervised[0]) == {*sup_nodes, *biz_nodes}
    for node_home, (index, api) in expected.items():
        config = NodeConfig.load(node_home)
        assert (config.lookthrough_index, config.supervision_api) == (index, api), node_home
    output = " ".join(result.output.split())
    assert output.count("now serves the look-through index") == len(sup_nodes)
    changed = [h for h in biz_nodes if expected[h][1]]
    assert output.count("now fetches anchor proofs for evidence") == len(changed)
    # Idempotent: a second `up` changes and says nothing more.
    again = CliRunner().invoke(cli_app, ["up", "--home", str(home)])
    assert again.exit_code == 0, again.output
    assert "now " not in again.output
