"""``consortia api ...``: the REST API's client side (Typer sub-app).

    consortia api login --home NODE_HOME (--account NAME | --key KEYFILE) [--ttl 8h]
        [--address HEX] [--json]

``login`` signs a session grant (``consortia.api.auth``) with the account's key, here, and prints
the web UI's sign-in URL ``http://HOST:API_PORT/ui/#session=TOKEN`` (the token travels in the URL
fragment, which the browser never sends to the server, so it is in no access log), and the token
alone for other clients (``Authorization: Consortia-Session TOKEN``). ``--json`` prints
``{"token", "url", "address", "chain_id", "issued_ms", "expires_ms"}``. The key is a member
account's key of the node's network (``--account NAME``: ``accounts/NAME.key`` in the node home or
its network home) or any key file (``--key``); its password comes from CONSORTIA_KEY_PASSWORD.
``--address`` names the account when its key was rotated (the address is the first key's). The
grant is valid for ``--ttl`` (``30m``, ``8h``; at most 12 h) and only while the key is the
account's current one. Exit codes: 0 printed; 2 bad input (unreadable key or node home, no API
on the node, bad ``--ttl``). Errors are one line, never a traceback.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from consortia.api.auth import MAX_SESSION_MS, issue_session
from consortia.crypto import CryptoError, KeyPair, decrypt_key_file, get_suite
from consortia.execution.genesis import GenesisError
from consortia.node.home import key_password
from consortia.node.local import ACCOUNTS_DIR, NodeError, load_genesis
from consortia.node.network_home import NodeConfig

EXIT_USAGE = 2
_TTL = re.compile(r"^([0-9]{1,6})([smh])$")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000}
_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

app = typer.Typer(
    rich_markup_mode="markdown",
    help="The REST API's client side: sign in to the web UI.",
    no_args_is_help=True,
)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def parse_ttl(text: str) -> int:
    """``30s``, ``15m``, ``8h`` → milliseconds (``ValueError`` outside 1 s .. 12 h)."""
    m = _TTL.match(text.strip())
    if m is None:
        raise ValueError(f"--ttl must look like 30m or 8h, not {text!r}")
    ms = int(m.group(1)) * _UNIT_MS[m.group(2)]
    if not 1_000 <= ms <= MAX_SESSION_MS:
        raise ValueError(f"--ttl must be between 1s and {MAX_SESSION_MS // 3_600_000}h")
    return ms


def account_key_file(node_home: Path, name: str) -> Path:
    """``accounts/NAME.key`` in the node home (``consortia init``) or the network home above it
    (``consortia init-network`` and two-tier homes keep member keys there)."""
    if not _ACCOUNT_NAME.match(name):
        raise NodeError(f"--account {name!r} is not an account name")
    candidates = [node_home / ACCOUNTS_DIR / f"{name}.key"]
    candidates += [p / ACCOUNTS_DIR / f"{name}.key" for p in node_home.resolve().parents[:2]]
    for path in candidates:
        if path.is_file():
            return path
    raise NodeError(f"no key for account {name!r} (looked for {candidates[0]} and above)")


def _ui_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0") else ("[::1]" if host == "::" else host)


@app.command()
def login(
    home: Annotated[Path, typer.Option("--home", help="The node home whose API to sign in to.")],
    account: Annotated[
        str | None, typer.Option("--account", help="A member account of the network, by name.")
    ] = None,
    key: Annotated[
        Path | None, typer.Option("--key", "-k", help="The account's encrypted key file.")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option("--address", help="The account's address (hex) if its key was rotated."),
    ] = None,
    ttl: Annotated[str, typer.Option("--ttl", help="How long the session lasts.")] = "8h",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Sign a session grant with the account's key and print the web UI's sign-in URL."""
    if (account is None) == (key is None):
        _fail("give exactly one of --account NAME and --key KEYFILE")
    try:
        ttl_ms = parse_ttl(ttl)
    except ValueError as exc:
        _fail(str(exc))
    who: bytes | None = None
    if address is not None:
        try:
            who = bytes.fromhex(address.removeprefix("0x"))
        except ValueError:
            _fail("--address must be hex")
        if not 1 <= len(who) <= 64:
            _fail("--address must be 1..64 bytes")
    try:
        genesis = load_genesis(home)
        config = NodeConfig.load(home)
        if config.api_port == 0:
            _fail(f"the node at {home} serves no REST API (api_port is 0 in its config.toml)")
        path = key if key is not None else account_key_file(home, str(account))
        keypair: KeyPair = decrypt_key_file(path.read_bytes(), key_password())
        suite = get_suite(genesis.suite)
        issued_ms = time.time_ns() // 1_000_000
        token = issue_session(
            suite,
            keypair,
            chain_id=genesis.chain_id,
            issued_ms=issued_ms,
            ttl_ms=ttl_ms,
            address=who,
        )
    except OSError as exc:
        _fail(f"cannot read: {exc}")
    except (CryptoError, NodeError, GenesisError, ValueError) as exc:
        _fail(str(exc))
    owner = who if who is not None else suite.address(keypair.public_key)
    url = f"http://{_ui_host(config.host)}:{config.api_port}/ui/#session={token}"
    if as_json:
        out = {
            "token": token,
            "url": url,
            "address": owner.hex(),
            "chain_id": genesis.chain_id,
            "issued_ms": issued_ms,
            "expires_ms": issued_ms + ttl_ms,
        }
        typer.echo(json.dumps(out, indent=2))
        return
    hours = ttl_ms / 3_600_000
    typer.echo(f"signed in as {owner.hex()} on {genesis.chain_id} for {hours:g} h; open:")
    typer.echo(url)
    typer.echo("or send the header:  Authorization: Consortia-Session <token>")
    typer.echo(token)
