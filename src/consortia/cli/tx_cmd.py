"""``consortia tx ...``: perform any module method from the command line (Typer sub-app).

    consortia tx list [--json]
    consortia tx METHOD --module M --args JSON --key KEYFILE --node NODE_HOME [--json]
    consortia tx investors.open_investor --args JSON --identity-file identity.json \
        --key BROKER_KEY --node NODE_HOME [--regulator-key HEX]

``--args`` is a JSON object (or ``@file.json``); bytes fields are hex strings. The key file's
password comes from CONSORTIA_KEY_PASSWORD. ``--identity-file`` (a JSON object: the investor's
name, ID type and number, ...) seals personal identity data on this machine to the sender (the
opening broker) and the regulator (its current key read from the chain, or ``--regulator-key``)
and fills in ``identity_commitment`` and ``sealed_identity``: the clear data never leaves the
client. Exit codes: 0 committed OK; 1 the operation failed
(a FAILED receipt or a transaction the node refused) — the stable code is printed; 2 bad input
(unknown module or method, bad JSON, wrong field types, unusable key or node home, node
unreachable). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from consortia.crypto import CryptoError, decrypt_key_file
from consortia.execution.genesis import GenesisError
from consortia.node.client import NodeUnreachableError
from consortia.node.home import key_password
from consortia.node.local import NodeError
from consortia.node.operations import (
    IDENTITY_FIELDS,
    InvalidOperationError,
    OperationError,
    Operator,
    check_identity_args,
    check_identity_record,
    describe_methods,
    prepare_args,
)

EXIT_FAILED = 1
EXIT_USAGE = 2

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Perform any module method (`consortia tx list` shows them all with their arguments).",
    no_args_is_help=True,
)


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _print_list(as_json: bool) -> None:
    infos = describe_methods()
    if as_json:
        out = [
            {
                "module": i.module,
                "method": i.method,
                "args": [{"name": n, "type": t} for n, t in i.fields],
            }
            for i in infos
        ]
        typer.echo(json.dumps(out, indent=2))
        return
    current = ""
    for info in infos:
        if info.module != current:
            current = info.module
            typer.echo(f"{current}:")
        fields = ", ".join(f"{n}: {t}" for n, t in info.fields)
        typer.echo(f"  {info.method}({fields})")


def _parse_args_json(text: str) -> Any:
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            _fail(f"cannot read --args file: {exc}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"--args is not valid JSON: {exc}")


def _read_identity(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read --identity-file: {exc}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"--identity-file is not valid JSON: {exc}")


def _hex(text: str, option: str) -> bytes:
    body = text[2:] if text[:2].lower() == "0x" else text
    try:
        return bytes.fromhex(body)
    except ValueError:
        _fail(f"{option} must be a hex string")


@app.command()
def tx(
    method: Annotated[
        str, typer.Argument(help="The method (or module.method), or `list` to show every one.")
    ],
    module: Annotated[
        str | None, typer.Option("--module", "-m", help="The module, e.g. securities.")
    ] = None,
    args: Annotated[
        str, typer.Option("--args", "-a", help="Arguments as a JSON object, or @FILE.")
    ] = "{}",
    key: Annotated[
        Path | None, typer.Option("--key", "-k", help="The sender's encrypted key file.")
    ] = None,
    node: Annotated[
        Path | None, typer.Option("--node", "-n", help="A node home (config + genesis).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    identity_file: Annotated[
        Path | None,
        typer.Option(
            "--identity-file",
            help="A JSON identity record to seal client side (open_investor): fills in "
            "identity_commitment and sealed_identity.",
        ),
    ] = None,
    regulator_key: Annotated[
        str | None,
        typer.Option(
            "--regulator-key",
            help="The regulator's public key (hex) to seal to; default: read from the chain.",
        ),
    ] = None,
) -> None:
    """Sign and submit one transaction, wait for its block, and print the outcome."""
    if method == "list":
        _print_list(as_json)
        return
    if module is None:
        if "." not in method:
            _fail("give the module with --module (or write METHOD as module.method)")
        module, method = method.split(".", 1)
    plain = _parse_args_json(args)
    if not isinstance(plain, dict):
        _fail("--args must be a JSON object")
    identity: dict[str, Any] | None = None
    regulator_pk: bytes | None = None
    try:
        if identity_file is not None:
            check_identity_args(module, method, plain)
            identity = check_identity_record(_read_identity(identity_file))
            placeholders = dict.fromkeys(IDENTITY_FIELDS, b"")
            prepare_args(module, method, {**plain, **placeholders})  # fail fast
        else:
            if regulator_key is not None:
                _fail("--regulator-key goes with --identity-file")
            prepare_args(module, method, plain)  # fail fast, before touching the key
        if regulator_key is not None:
            regulator_pk = _hex(regulator_key, "--regulator-key")
    except InvalidOperationError as exc:
        _fail(f"{exc.code}: {exc.message}")
    if key is None or node is None:
        _fail("--key and --node are required to submit")
    commitment: bytes | None = None
    try:
        keypair = decrypt_key_file(key.read_bytes(), key_password())
        operator = Operator.from_node_home(keypair, node)
        if identity is not None:
            plain = operator.with_sealed_identity(
                module, method, plain, identity, regulator_public_key=regulator_pk
            )
            commitment = plain["identity_commitment"]
        result = operator.submit(module, method, plain)
    except OSError as exc:  # includes NodeUnreachableError
        kind = "node unreachable" if isinstance(exc, NodeUnreachableError) else "cannot read"
        _fail(f"{kind}: {exc}")
    except (CryptoError, NodeError, GenesisError) as exc:
        _fail(str(exc))
    except InvalidOperationError as exc:
        _fail(f"{exc.code}: {exc.message}")
    except OperationError as exc:
        if as_json:
            typer.echo(json.dumps({"ok": False, "code": exc.code, "message": exc.message}))
        _fail(f"{exc.code}: {exc.message}", EXIT_FAILED)
    if as_json:
        out = result.to_json()
        if commitment is not None:
            out["identity_commitment"] = commitment.hex()
        typer.echo(json.dumps(out, indent=2))
    else:
        typer.echo(result.summary())
        if commitment is not None:
            typer.echo(f"identity_commitment {commitment.hex()}")
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)
