"""Edge-code review findings (API, CLI, SDK): each test pins one mended hole."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consortia.cli import app
from consortia.crypto import get_suite
from consortia.lookthrough.index import LookthroughIndex
from consortia.sdk import Client
from consortia.sdk.errors import TransportError


def _tables(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master"))
    finally:
        db.close()


def test_sdk_unusable_base_url_is_a_transport_error() -> None:
    # urllib refuses a URL without a scheme with a bare ValueError while building the request.
    suite = get_suite("intl")
    client = Client("not-a-url", suite.generate_keypair(), suite=suite, chain_id="c")
    with pytest.raises(TransportError) as exc:
        client.status()
    assert exc.value.code == "TRANSPORT"


def test_cli_contract_info_unusable_api_url_is_one_line_not_a_traceback() -> None:
    result = CliRunner().invoke(app, ["contract", "info", "0x00", "--api", "not-a-url"])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "error:" in result.output


@pytest.mark.parametrize(
    "command",
    [
        ["alerts"],
        ["deposits"],
        ["gaps", "--days", "1"],
        ["investor", "INV-1"],
        ["holders", "000001"],
        ["history", "SA-1"],
    ],
)
def test_cli_supervise_queries_never_write_the_file(tmp_path: Path, command: list[str]) -> None:
    # A query opens the index read-only: pointed at some other SQLite file it fails cleanly and
    # leaves the file as it was (opened read-write it would gain the index's tables).
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE mine (x)")
    db.commit()
    db.close()
    before = _tables(other)
    result = CliRunner().invoke(app, ["supervise", *command, "--db", str(other)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert _tables(other) == before


def test_cli_supervise_queries_read_a_real_index(tmp_path: Path) -> None:
    path = tmp_path / "idx.db"
    LookthroughIndex(path).close()
    result = CliRunner().invoke(app, ["supervise", "alerts", "--db", str(path), "--json"])
    assert result.exit_code == 0, result.output
