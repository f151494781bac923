"""Every `consortia` command answers `--help` with a summary and help on each option."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from consortia.cli import app


def _commands() -> list[tuple[str, ...]]:
    root = typer.main.get_command(app)
    out: list[tuple[str, ...]] = []

    # Typer vendors its own click: walk by shape, not by class.
    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        out.append(path)
        if hasattr(cmd, "commands"):
            for name, sub in sorted(cmd.commands.items()):
                walk(sub, (*path, name))

    walk(root, ())
    return out


COMMANDS = _commands()


def test_the_cli_has_every_role_s_command_groups() -> None:
    top = {path[0] for path in COMMANDS if path}
    assert {"init", "up", "status", "demo", "node", "tx", "relay", "evidence", "supervise",
            "api", "ledger", "crypto"} <= top


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "consortia")
def test_help_explains_the_command_and_each_option(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    root = typer.main.get_command(app)
    cmd: Any = root
    for name in path:
        cmd = cmd.commands[name]
    assert (cmd.help or "").strip(), f"{' '.join(path)}: no summary"
    for param in cmd.params:
        if param.param_type_name == "option" and param.name != "help":
            assert (param.help or "").strip(), f"{' '.join(path)}: {param.opts} has no help"
