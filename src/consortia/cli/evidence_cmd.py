"""``consortia evidence ...``: export offline evidence bundles and verify them without a node.

Exit codes: 0 success (``verify``: the bundle proves what it prints), 1 ``verify`` found the
bundle invalid (the failed check is printed) or an export could not be built, 2 bad input
(unreadable files, a malformed genesis, a malformed transaction id). Errors are one line on
stderr, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from consortia import codec
from consortia.cli.notary_cmd import hash_file
from consortia.cli.progress import progress_bar
from consortia.crypto import get_suite
from consortia.evidence.bundle import (
    EvidenceBundle,
    EvidenceError,
    Proven,
    bundle_to_json,
    check_deposited_file,
    parse_bundle,
    verify_bundle,
)
from consortia.evidence.export import (
    ExportError,
    export_contract,
    export_state,
    export_transaction,
    parse_contract_address,
    parse_slot,
)
from consortia.execution.genesis import Genesis, GenesisError, genesis_from_json
from consortia.node.local import NodeError
from consortia.storage import StorageError

EXIT_INVALID = 1
EXIT_USAGE = 2

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Export offline evidence bundles (a transaction, a holding or a contract's storage at a "
    "height) with their "
    "anchors on the supervision chain, and verify them with nothing but the two genesis files.",
    no_args_is_help=True,
)

HomeOpt = Annotated[Path, typer.Option("--home", help="The business chain node's home.")]
SupHomeOpt = Annotated[
    Path, typer.Option("--supervision-home", help="A supervision chain node's home.")
]
OutOpt = Annotated[Path, typer.Option("--output", "-o", help="Where to write the bundle (JSON).")]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print what was written as JSON (and draw no progress).")
]


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _write(bundle: EvidenceBundle, output: Path, *, as_json: bool) -> None:
    text = bundle_to_json(bundle)
    try:
        output.write_text(text)
    except OSError as exc:
        _fail(f"cannot write {output}: {exc.strerror or exc}", EXIT_USAGE)
    what = "transaction" if bundle.transaction is not None else "state"
    h = bundle.business.header
    if as_json:
        out = {
            "ok": True,
            "output": str(output),
            "bytes": len(text),
            "kind": what,
            "chain_id": bundle.business.chain_id,
            "height": h.height,
            "anchor": {
                "chain_id": bundle.anchor.supervision.chain_id,
                "height": bundle.anchor.supervision.header.height,
            },
        }
        typer.echo(json.dumps(out))
        return
    typer.echo(
        f"wrote {output} ({len(text)} bytes): {what} evidence at {bundle.business.chain_id}"
        f"@{h.height}, anchored on {bundle.anchor.supervision.chain_id}"
        f"@{bundle.anchor.supervision.header.height}"
    )


@app.command("export")
def export_cmd(
    home: HomeOpt,
    supervision_home: SupHomeOpt,
    tx: Annotated[str, typer.Option("--tx", help="The transaction id (hex).")],
    output: OutOpt,
    as_json: JsonOpt = False,
) -> None:
    """Bundle a committed transaction with its receipt, proofs, certificates and anchor.

    Older validator sets are recovered by replaying blocks from genesis (a progress bar shows
    it on a terminal)."""
    try:
        tx_hash = bytes.fromhex(tx.removeprefix("0x"))
    except ValueError:
        _fail(f"--tx {tx!r} is not hex", EXIT_USAGE)
    try:
        with progress_bar("replaying blocks", quiet=as_json) as update:
            bundle = export_transaction(home, supervision_home, tx_hash, progress=update)
    except (ExportError, NodeError, StorageError, GenesisError) as exc:
        _fail(str(exc), EXIT_INVALID)
    _write(bundle, output, as_json=as_json)


@app.command("holding")
def holding_cmd(
    home: HomeOpt,
    supervision_home: SupHomeOpt,
    account: Annotated[
        str, typer.Option("--account", help="Securities account id (or e-CNY wallet id).")
    ],
    asset: Annotated[
        str, typer.Option("--asset", help="Security code, or 'ecny' for an e-CNY wallet.")
    ],
    height: Annotated[int, typer.Option("--height", min=1, help="The block height.")],
    output: OutOpt,
    as_json: JsonOpt = False,
) -> None:
    """Bundle a state proof of a holding (or an e-CNY wallet) at a height, anchored.

    The state at HEIGHT is rebuilt by replaying blocks 1..HEIGHT (a progress bar shows it on a
    terminal)."""
    try:
        with progress_bar("replaying blocks", quiet=as_json) as update:
            bundle = export_state(
                home, supervision_home, account=account, asset=asset, height=height, progress=update
            )
    except (ExportError, NodeError, StorageError, GenesisError) as exc:
        _fail(str(exc), EXIT_INVALID)
    _write(bundle, output, as_json=as_json)


@app.command("contract")
def contract_cmd(
    home: HomeOpt,
    supervision_home: SupHomeOpt,
    address: Annotated[str, typer.Option("--address", help="The contract's address (hex).")],
    height: Annotated[int, typer.Option("--height", min=1, help="The block height.")],
    output: OutOpt,
    slot: Annotated[
        str | None,
        typer.Option(
            "--slot",
            help="The storage slot (decimal or 0x hex). Omit it to prove the contract's "
            "account record (nonce and code hash).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Bundle a state proof of a contract's storage slot (or its account record) at a height,
    anchored.

    A zero slot is not stored, so it has no record to prove: the export refuses it. The state at
    HEIGHT is rebuilt by replaying blocks 1..HEIGHT (a progress bar shows it on a terminal)."""
    try:
        addr = parse_contract_address(address)
    except ValueError as exc:
        _fail(f"--address {exc}", EXIT_USAGE)
    try:
        slot_number = None if slot is None else parse_slot(slot)
    except ValueError as exc:
        _fail(f"--slot {exc}", EXIT_USAGE)
    try:
        with progress_bar("replaying blocks", quiet=as_json) as update:
            bundle = export_contract(
                home,
                supervision_home,
                address=addr,
                slot=slot_number,
                height=height,
                progress=update,
            )
    except (ExportError, NodeError, StorageError, GenesisError) as exc:
        _fail(str(exc), EXIT_INVALID)
    _write(bundle, output, as_json=as_json)


def _load_genesis(path: Path) -> Genesis:
    try:
        return genesis_from_json(path.read_text())
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE)
    except GenesisError as exc:
        _fail(f"{path}: {exc}", EXIT_USAGE)


def _proven_json(p: Proven) -> str:
    return json.dumps(
        codec.hex_dump(
            {
                "ok": True,
                "kind": p.kind,
                "who": p.who,
                "what": p.what,
                "when": p.when,
                "block": {"chain_id": p.chain_id, "height": p.height, "hash": p.block_hash},
                "time_ms": p.time_ms,
                "anchor": {
                    "chain_id": p.supervision_chain_id,
                    "anchored_height": p.anchored_height,
                    "proven_height": p.supervision_height,
                    "proven_hash": p.supervision_block_hash,
                },
            }
        ),
        indent=2,
    )


@app.command("verify")
def verify_cmd(
    bundle: Annotated[Path, typer.Argument(help="The bundle file (JSON).")],
    genesis: Annotated[
        list[Path],
        typer.Option(
            "--genesis",
            help="Genesis files: the business chain's and the supervision chain's "
            "(give both; told apart by their tier).",
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="A notarized document: also check that the bundle is its deposit (same size, "
            "SHA-256 and suite hash).",
        ),
    ] = None,
) -> None:
    """Verify a bundle offline: no node, no network, only the two genesis files (and, with
    --file, that the bundle is the notary deposit of that very file)."""
    if len(genesis) != 2:
        _fail("give --genesis twice: the business chain's and the supervision chain's", EXIT_USAGE)
    first, second = (_load_genesis(p) for p in genesis)
    business, supervision = first, second
    if first.tier == "supervision" and second.tier != "supervision":
        business, supervision = second, first
    try:
        data = bundle.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {bundle}: {exc.strerror or exc}", EXIT_USAGE)
    digests = None
    if file is not None:
        try:
            digests = hash_file(file, get_suite(business.suite), quiet=as_json)
        except OSError as exc:
            _fail(f"cannot read {file}: {exc.strerror or exc}", EXIT_USAGE)
    deposit_id = None
    try:
        parsed = parse_bundle(data)
        proven = verify_bundle(parsed, business, supervision)
        if digests is not None:
            deposit_id = check_deposited_file(parsed, digests)
    except EvidenceError as exc:
        if as_json:
            typer.echo(
                json.dumps(
                    {"ok": False, "check": exc.check, "error": str(exc), "type": type(exc).__name__}
                )
            )
        else:
            typer.echo(f"NOT VERIFIED — {type(exc).__name__}: {exc}")
        sys.stdout.flush()
        raise typer.Exit(EXIT_INVALID) from None
    if as_json:
        text = _proven_json(proven)
        if deposit_id is not None and digests is not None:
            obj = json.loads(text)
            obj["file"] = {
                "path": str(file),
                "deposit_id": deposit_id,
                "size": digests.size,
                "sha256": digests.sha256.hex(),
            }
            text = json.dumps(obj, indent=2)
        typer.echo(text)
        return
    if deposit_id is not None and digests is not None:
        typer.echo(
            f"FILE {file} is deposit {deposit_id} (sha256 {digests.sha256.hex()}, "
            f"{digests.size} bytes)"
        )
    typer.echo(
        f"VERIFIED {bundle} offline against genesis {business.chain_id} and {supervision.chain_id}:"
    )
    for line in proven.lines():
        typer.echo(f"  {line}")
