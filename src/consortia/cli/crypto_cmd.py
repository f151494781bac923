"""``consortia crypto ...``: hash data, verify a raw signature, generate an encrypted key file.

Exit codes: 0 success (``verify``: the signature is valid), 1 ``verify`` found the signature
invalid, 2 bad input (unknown suite, malformed hex, malformed key, unusable options). Errors are
one line on stderr, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from consortia.crypto import (
    CryptoError,
    Suite,
    encrypt_key_file,
    get_suite,
)

EXIT_INVALID = 1
EXIT_USAGE = 2

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Hash data, verify signatures and generate key files with a chain's crypto suite "
    "(intl = Ed25519/SHA-256, gm = SM2/SM3/SM4).",
    no_args_is_help=True,
)

SuiteOption = Annotated[str, typer.Option("--suite", "-s", help="Crypto suite: intl or gm.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def _fail(message: str) -> NoReturn:
    """Print one error line on stderr and exit with the usage-error code."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _suite(name: str) -> Suite:
    try:
        return get_suite(name)
    except CryptoError as exc:
        _fail(str(exc))


def _hex(option: str, text: str) -> bytes:
    """Bytes of a hex string (optional 0x prefix, no whitespace); exits 2 if it is not hex."""
    body = text[2:] if text[:2].lower() == "0x" else text
    if not _HEX.fullmatch(body):
        _fail(f"{option} is not an even-length hex string")
    return bytes.fromhex(body)


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the duration.

    Why: GmSSL prints a C-level trace line on every failed verification. In this one-shot,
    single-threaded command that line is noise next to our own "invalid"; a long-running node
    must not do this (fd 2 is process-wide), so it lives here and not in the crypto package.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@app.command("hash")
def hash_command(
    suite: SuiteOption,
    data: Annotated[str, typer.Option("--hex", help="The data to hash, as hex.")],
    as_json: JsonOption = False,
) -> None:
    """Print the suite's digest (SHA-256 or SM3) of the --hex data, as hex."""
    chosen = _suite(suite)
    digest = chosen.hash(_hex("--hex", data)).hex()
    typer.echo(json.dumps({"suite": chosen.name, "digest": digest}) if as_json else digest)


def _user_id(chosen: Suite, user_id: str | None) -> bytes | None:
    if user_id is None:
        return None
    if chosen.name != "gm":
        _fail(f"--user-id applies to SM2 (suite gm) only, not {chosen.name}")
    return user_id.encode("utf-8")


@app.command()
def verify(
    suite: SuiteOption,
    public_key: Annotated[
        str, typer.Option("--public-key", help="Ed25519: 32 bytes; SM2: 65 bytes 04||x||y (hex).")
    ],
    message_hex: Annotated[str, typer.Option("--message-hex", help="The signed message (hex).")],
    signature: Annotated[str, typer.Option("--signature", help="64-byte signature, r||s for SM2.")],
    user_id: Annotated[
        str | None, typer.Option("--user-id", help="SM2 signer ID (default 1234567812345678).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Verify a raw (not domain-separated) signature; print valid (exit 0) or invalid (exit 1)."""
    chosen = _suite(suite)
    key = _hex("--public-key", public_key)
    message = _hex("--message-hex", message_hex)
    sig = _hex("--signature", signature)
    uid = _user_id(chosen, user_id)
    if len(sig) != chosen.signature_size:
        _fail(f"--signature must be {chosen.signature_size} bytes, got {len(sig)}")
    try:
        chosen.check_public_key(key)
        with _native_stderr_silenced():
            ok = chosen.verify_raw(key, message, sig, user_id=uid)
    except CryptoError as exc:
        _fail(str(exc))
    typer.echo(json.dumps({"valid": ok}) if as_json else ("valid" if ok else "invalid"))
    raise typer.Exit(0 if ok else EXIT_INVALID)


def _password(password_env: str | None) -> str:
    if password_env is not None:
        password = os.environ.get(password_env)
        if password is None:
            _fail(f"environment variable {password_env} is not set")
    else:
        password = typer.prompt("Key file password", hide_input=True, confirmation_prompt=True)
    if not password:
        _fail("the password must not be empty")
    return password


def _write_private(path: Path, data: bytes, overwrite: bool) -> None:
    """Write ``data`` to ``path`` readable by the owner only; refuse to replace a file unless
    ``overwrite`` (a key file is often the only copy of a key)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        _fail(f"{path} exists; pass --force to overwrite it")
    except OSError as exc:
        _fail(f"cannot create {path}: {exc.strerror}")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


@app.command()
def keygen(
    suite: SuiteOption,
    output: Annotated[Path, typer.Option("--output", "-o", help="Key file to write.")],
    password_env: Annotated[
        str | None,
        typer.Option("--password-env", help="Read the password from this environment variable."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Generate a key pair, write it as a password-encrypted key file, print its address."""
    chosen = _suite(suite)
    password = _password(password_env)
    keypair = chosen.generate_keypair()
    _write_private(output, encrypt_key_file(keypair, password), force)
    address, public_key = chosen.address(keypair.public_key).hex(), keypair.public_key.hex()
    if as_json:
        out = {"suite": chosen.name, "file": str(output), "address": address}
        typer.echo(json.dumps({**out, "public_key": public_key}))
        return
    typer.echo(f"address: {address}")
    typer.echo(f"public_key: {public_key}")
