"""Operations on the command line: `--json` on every command that prints a result, progress bars
only on a terminal (never in pipes or with --json), and the node's logging options."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pty
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress
from typer.testing import CliRunner

from consortia.cli import app
from consortia.cli.relay_cmd import _CatchUp
from consortia.net import frames
from consortia.node.network_home import CONFIG_FILE, NodeConfig, NodeSettings, init_network
from tests.evidencekit import World, build_world
from tests.netkit import LocalNet

runner = CliRunner()
PASSWORD = "cli-ops-test"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("evidence"))


def test_init_json_prints_the_chain_and_no_progress_off_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSORTIA_KEY_PASSWORD", PASSWORD)
    home = tmp_path / "one"
    r = runner.invoke(app, ["init", "--home", str(home), "--chain-id", "ops-1", "--json"])
    assert r.exit_code == 0, r.output
    assert r.stderr == ""
    out = json.loads(r.stdout)
    (chain,) = out["chains"]
    assert chain["chain_id"] == "ops-1" and chain["tier"] == "business"
    assert len(chain["genesis_hash"]) == 64 and chain["home"] == str(home)
    # Without --json: the human lines, and still nothing on stderr (not a terminal).
    r = runner.invoke(app, ["init", "--home", str(tmp_path / "two"), "--chain-id", "ops-2"])
    assert r.exit_code == 0, r.output
    assert r.stderr == "" and "initialised" in r.stdout


def _run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``consortia ARGS`` with stderr on a pseudo-terminal; (exit code, stdout, stderr)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "consortia", *args],
        stdout=subprocess.PIPE,
        stderr=follower,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            proc.kill()
            break
        try:
            data = os.read(leader, 4096)
        except OSError:  # the child closed its side
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.stdout is not None
    stdout = proc.stdout.read().decode()
    return proc.wait(timeout=30), stdout, b"".join(chunks).decode(errors="replace")


def test_init_draws_a_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    env = {**os.environ, "CONSORTIA_KEY_PASSWORD": PASSWORD, "COLUMNS": "100"}
    code, stdout, stderr = _run_on_a_terminal(["init", "--home", str(tmp_path / "a")], env)
    assert code == 0, stderr
    assert "generating keys" in stderr and "initialised" in stdout
    # --json on a terminal: no bar either (the output is for a machine).
    code, stdout, stderr = _run_on_a_terminal(
        ["init", "--home", str(tmp_path / "b"), "--json"], env
    )
    assert code == 0, stderr
    assert "generating keys" not in stderr
    assert json.loads(stdout)["chains"][0]["chain_id"] == "consortia-local"


def test_crypto_commands_print_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = runner.invoke(app, ["crypto", "hash", "--suite", "intl", "--hex", "616263", "--json"])
    assert r.exit_code == 0, r.output
    digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert json.loads(r.stdout) == {"suite": "intl", "digest": digest}
    monkeypatch.setenv("KEY_PW", "pw")
    key = tmp_path / "k.key"
    args = ["crypto", "keygen", "--suite", "gm", "-o", str(key), "--password-env", "KEY_PW"]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    made = json.loads(r.stdout)
    assert made["suite"] == "gm" and made["file"] == str(key) and key.is_file()
    assert len(bytes.fromhex(made["public_key"])) == 65 and len(made["address"]) == 40
    r = runner.invoke(
        app,
        ["crypto", "verify", "--suite", "intl", "--public-key", "00" * 32,
         "--message-hex", "00", "--signature", "00" * 64, "--json"],
    )  # fmt: skip
    assert r.exit_code in (1, 2), r.output
    if r.exit_code == 1:  # a well-formed key that does not verify the signature
        assert json.loads(r.stdout) == {"valid": False}


def test_ledger_verify_json(world: World) -> None:
    r = runner.invoke(app, ["ledger", "verify", "--home", str(world.business_home), "--json"])
    assert r.exit_code == 0, r.output
    verdict = json.loads(r.stdout)
    assert verdict["ok"] is True and verdict["first_bad_height"] is None
    assert verdict["head_height"] == world.business_head
    assert r.stderr == ""


def test_evidence_export_and_holding_json(world: World, tmp_path: Path) -> None:
    b, s = str(world.business_home), str(world.supervision_home)
    out = tmp_path / "transfer.json"
    r = runner.invoke(
        app,
        ["evidence", "export", "--home", b, "--supervision-home", s,
         "--tx", world.transfer.hex(), "-o", str(out), "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert r.stderr == ""
    written = json.loads(r.stdout)
    assert written["ok"] is True and written["kind"] == "transaction"
    assert written["output"] == str(out) and written["bytes"] == len(out.read_text())
    assert written["chain_id"] == world.business_genesis.chain_id
    assert written["anchor"]["chain_id"] == world.supervision_genesis.chain_id
    holding = tmp_path / "holding.json"
    r = runner.invoke(
        app,
        ["evidence", "holding", "--home", b, "--supervision-home", s, "--account", "SA-BOB",
         "--asset", "000001", "--height", str(world.transfer_height), "-o", str(holding),
         "--json"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    written = json.loads(r.stdout)
    assert written["kind"] == "state" and written["height"] == world.transfer_height


def test_node_start_refuses_a_bad_log_choice_and_a_bad_config(tmp_path: Path) -> None:
    init_network(tmp_path / "net", validators=1, password=PASSWORD, scrypt_n=1 << 10)
    node = tmp_path / "net" / "validator-0"
    r = runner.invoke(app, ["node", "start", "--home", str(node), "--log-format", "xml"])
    assert r.exit_code == 2
    assert "log format must be one of text, json, not 'xml'" in r.output
    (node / CONFIG_FILE).write_text("verbose = true\n" + (node / CONFIG_FILE).read_text())
    r = runner.invoke(app, ["node", "start", "--home", str(node)])
    assert r.exit_code != 0
    assert "unknown key 'verbose'" in str(r.exception)


def test_relay_catch_up_bar_shows_only_while_behind() -> None:
    progress = Progress(console=Console(file=io.StringIO(), force_terminal=True))
    bars = _CatchUp(progress, "biz", "sup")
    bars.step("anchoring", 10, 10)  # caught up: no bar at all
    assert progress.tasks == []
    bars.step("anchoring", 3, 40)
    (task,) = progress.tasks
    assert (task.completed, task.total, task.visible) == (3, 40, True)
    assert task.description == "anchoring biz headers on sup"
    bars.step("anchoring", -1, 40)  # not measured this round: unchanged
    assert task.completed == 3
    bars.step("anchoring", 40, 40)
    assert (task.completed, task.visible) == (40, False)
    bars.step("following", 0, 5)
    assert [t.description for t in progress.tasks][-1] == "following sup headers on biz"


def test_node_start_applies_the_node_table_of_config_toml(tmp_path: Path) -> None:
    """[node] max_client_connections = 1: while one client is served, another is turned away."""
    net = LocalNet(tmp_path / "net", validators=1)
    home = net.home / "validator-0"
    config = NodeConfig.load(home)
    dataclasses.replace(config, node=NodeSettings(max_client_connections=1)).save(home)
    net.start_all()
    try:
        net.wait_for(["validator-0"], 1)
        with socket.create_connection((config.host, config.client_port), timeout=10) as held:
            held.sendall(frames.encode_message(frames.Message("status", {})))
            assert held.recv(4), "the held connection was not served"
            assert net.status("validator-0") is None
        deadline = time.monotonic() + 10
        while net.status("validator-0") is None:
            assert time.monotonic() < deadline, "the node never served a client again"
            time.sleep(0.1)
    finally:
        net.stop_all()
