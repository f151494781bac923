"""Structured logs: JSON lines parse and carry chain/height/tx — from the formatter directly and
from a real node process committing a transaction (``[log] format = "json"`` in config.toml)."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consortia import logs
from consortia.crypto import decrypt_key_file, get_suite
from consortia.ledger.types import sign_transaction
from consortia.node.network_home import LogSettings, NodeConfig
from consortia.node.supervisor import LOG_FILE, spawn_node
from tests.netkit import PASSWORD, LocalNet


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    stream = io.StringIO()
    handler = logs.configure(log_format="json", level="DEBUG", stream=stream)
    yield stream, logging.getLogger("consortia.test")
    logging.getLogger().removeHandler(handler)
    logs.bind(chain=None, node=None)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [logs.fields_of(line) for line in stream.getvalue().splitlines()]


def test_json_line_has_the_fixed_fields_and_extras(
    capture: tuple[io.StringIO, logging.Logger],
) -> None:
    stream, log = capture
    log.info("committed height %d", 7, extra={"height": 7, "tx": b"\xab\xcd", "round": 2})
    (line,) = _lines(stream)
    assert list(line)[:4] == ["ts", "level", "logger", "message"]
    assert line["level"] == "INFO" and line["logger"] == "consortia.test"
    assert line["message"] == "committed height 7"
    assert line["height"] == 7 and line["tx"] == "abcd" and line["round"] == 2
    assert str(line["ts"]).endswith("Z") and "T" in str(line["ts"])


def test_bound_and_context_fields_fill_in_but_never_override(
    capture: tuple[io.StringIO, logging.Logger],
) -> None:
    stream, log = capture
    logs.bind(chain="chain-a", node="validator-0")
    log.warning("plain")
    with logs.log_context(chain="chain-b", height=3):
        log.warning("in context")
        log.warning("explicit", extra={"chain": "chain-c", "height": 9})
    log.warning("after")
    plain, inside, explicit, after = _lines(stream)
    assert (plain["chain"], plain["node"], "height" in plain) == ("chain-a", "validator-0", False)
    assert (inside["chain"], inside["height"]) == ("chain-b", 3)
    assert (explicit["chain"], explicit["height"]) == ("chain-c", 9)
    assert after["chain"] == "chain-a" and "height" not in after


def test_exceptions_and_odd_values_stay_one_json_line(
    capture: tuple[io.StringIO, logging.Logger],
) -> None:
    stream, log = capture
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("failed with %s", 'quotes " and\nnewline', extra={"peer": object()})
    assert len(stream.getvalue().splitlines()) == 1
    (line,) = _lines(stream)
    assert line["level"] == "ERROR" and "ValueError: boom" in str(line["exc"])
    assert line["message"] == 'failed with quotes " and\nnewline'
    assert str(line["peer"]).startswith("<object object")


def test_level_filters_and_text_stays_the_default() -> None:
    stream = io.StringIO()
    handler = logs.configure(level="WARNING", stream=stream)
    try:
        log = logging.getLogger("consortia.test")
        log.info("hidden", extra={"height": 1})
        log.warning("shown %d", 2, extra={"height": 2})
    finally:
        logging.getLogger().removeHandler(handler)
    (text,) = stream.getvalue().splitlines()
    assert text.endswith(" WARNING consortia.test: shown 2")
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


@pytest.mark.parametrize(("fmt", "level"), [("xml", "INFO"), ("json", "LOUD")])
def test_configure_refuses_unknown_choices(fmt: str, level: str) -> None:
    with pytest.raises(ValueError, match="must be one of"):
        logs.configure(log_format=fmt, level=level, stream=io.StringIO())


def test_fields_of_refuses_other_lines() -> None:
    with pytest.raises(ValueError, match="not a consortia JSON log line"):
        logs.fields_of('{"message": "no ts"}')


def test_a_real_node_logs_commits_and_transactions_as_json(tmp_path: Path) -> None:
    """One validator as its own process, JSON logs chosen in config.toml (the level on the
    command line, as `consortia up` passes it): every line parses; the committed block's line
    carries chain and height; the transaction's lines carry its hash and height."""
    net = LocalNet(tmp_path / "net", validators=1, api=True)
    node_home = net.home / "validator-0"
    config = NodeConfig.load(node_home)
    dataclasses.replace(config, log=LogSettings(format="json")).save(node_home)
    # Its API port taken: uvicorn logs why it cannot bind — through the node's JSON logs too.
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", config.api_port))
    blocker.listen()
    net.procs["validator-0"] = spawn_node(node_home, password=PASSWORD, log_level="DEBUG")
    try:
        net.wait_for(["validator-0"], 1)
        suite = get_suite("intl")
        admin = decrypt_key_file(
            (net.home / "accounts" / "exchange-admin.key").read_bytes(), PASSWORD
        )
        tx = sign_transaction(
            suite,
            admin,
            chain_id="consortia-local",
            nonce=0,
            module="registry",
            method="register_org",
            args={"org_id": "fund-log", "name": "Fund Log", "kind": "fund_manager"},
        )
        reply = net.request("validator-0", "tx.submit", {"tx": tx.encode(), "wait": True})
        assert reply["ok"] is True, reply
        height = reply["height"]
        junk = net.request("validator-0", "tx.submit", {"tx": b"\x00junk"})
        assert junk["ok"] is False
    finally:
        net.kill("validator-0", signal.SIGTERM)
        blocker.close()
    tx_hex = tx.hash(suite).hex()
    lines = [logs.fields_of(line) for line in (node_home / LOG_FILE).read_text().splitlines()]
    assert lines, "the node logged nothing"
    assert all(line["chain"] == "consortia-local" for line in lines)
    assert all(line["node"] == "validator-0" for line in lines)
    assert any(str(line["logger"]).startswith("uvicorn") for line in lines)
    committed = [rec for rec in lines if str(rec["message"]).startswith("committed height")]
    ours = [rec for rec in committed if rec["height"] == height]
    assert len(ours) == 1 and ours[0]["txs"] == 1 and ours[0]["via"] == "consensus"
    about_tx = [rec for rec in lines if rec.get("tx") == tx_hex]
    assert {str(rec["message"]).split(" ")[-1] for rec in about_tx} >= {"admitted", "OK"}
    assert [rec["height"] for rec in about_tx if "committed" in str(rec["message"])] == [height]
    rejected = [rec for rec in lines if str(rec["message"]).startswith("tx rejected")]
    assert [rec["code"] for rec in rejected] == [junk["code"]]


def test_view_changes_are_logged_as_json(tmp_path: Path) -> None:
    """Four validators, one of them down: when its turn to propose comes, the others time out
    and move to the next round — a JSON line with chain, height and round on each of them."""
    net = LocalNet(tmp_path / "net", validators=4)
    for name in net.names:
        config = NodeConfig.load(net.home / name)
        dataclasses.replace(config, log=LogSettings(format="json")).save(net.home / name)
    up = net.names[:3]
    for name in up:
        net.start(name)
    log_file = net.home / up[0] / LOG_FILE
    try:
        deadline = time.monotonic() + 90
        while "view change" not in (log_file.read_text() if log_file.exists() else ""):
            assert time.monotonic() < deadline, "no view change logged"
            time.sleep(0.5)
    finally:
        net.stop_all()
    lines = [logs.fields_of(line) for line in log_file.read_text().splitlines()]
    changes = [rec for rec in lines if str(rec["message"]).startswith("view change")]
    first = changes[0]
    assert first["chain"] == "consortia-local" and first["node"] == up[0]
    assert isinstance(first["height"], int) and first["height"] >= 1
    assert first["round"] == 1
    assert first["message"] == f"view change at height {first['height']}: round 0 -> 1"
