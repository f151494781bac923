"""``consortia notary ...``: deposit documents' hashes, find them again, export their evidence.

    consortia notary submit FILE --type working-paper --project P --key KEY --node HOME [--seal]
    consortia notary verify FILE --node HOME [--supervision-node SHOME] [--json]
    consortia notary history DEPOSIT --node HOME [--json]
    consortia notary withdraw DEPOSIT --reason TEXT --key KEY --node HOME
    consortia notary evidence DEPOSIT --home HOME --supervision-home SHOME -o bundle.json

A file is hashed streaming (1 MiB at a time, a progress bar on a terminal), never loaded whole:
SHA-256 and the chain suite's hash in one pass. Reads from a node are checked against the state
proof it sends. Exit codes: 0 success (``verify``: the file is deposited); 1 the operation failed,
or ``verify`` found no deposit of the file; 2 bad input (unreadable file, bad option, unusable key
or node home, node unreachable). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from consortia import codec
from consortia.cli.progress import progress_bar
from consortia.crypto import CryptoError, Suite, decrypt_key_file, get_suite
from consortia.evidence.bundle import FileDigests, bundle_to_json, cst_time
from consortia.evidence.export import ExportError, export_deposit
from consortia.execution.errors import TxFailure
from consortia.execution.genesis import GenesisError
from consortia.ledger.state_tree import StateProof, StateTreeError, verify_state_proof
from consortia.ledger.types import decode_receipts
from consortia.modules import anchoring, notary
from consortia.node.client import NodeUnreachableError
from consortia.node.client import call as client_call
from consortia.node.home import key_password
from consortia.node.local import NodeError, load_genesis
from consortia.node.network_home import NodeConfig
from consortia.node.operations import InvalidOperationError, OperationError, Operator
from consortia.storage import StorageError

EXIT_FAILED = 1
EXIT_USAGE = 2
CHUNK = 1 << 20

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Document evidence: deposit a file's hashes on the business chain, find a file's "
    "deposits, follow its versions, withdraw, export offline evidence.",
    no_args_is_help=True,
)

NodeOpt = Annotated[Path, typer.Option("--node", "-n", help="A business node home.")]
KeyOpt = Annotated[Path, typer.Option("--key", "-k", help="The sender's encrypted key file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


# ---------------------------------------------------------------------------------------------
# Hashing


def hash_file(path: Path, suite: Suite, *, quiet: bool = False) -> FileDigests:
    """Size, SHA-256 and ``suite``'s hash of the file at ``path``, read in 1 MiB chunks (memory
    stays bounded whatever the size); ``OSError`` if it cannot be read."""
    sha = hashlib.sha256()
    # On the intl suite the suite hash is SHA-256 itself: hash once.
    other = None if suite.hash_name == "sha256" else hashlib.new(suite.hash_name)
    total = path.stat().st_size
    done = 0
    with progress_bar(f"hashing {path.name}", quiet=quiet) as update, path.open("rb") as f:
        update(0, total)
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            if other is not None:
                other.update(chunk)
            done += len(chunk)
            update(done, max(total, done))
    digest = sha.digest()
    return FileDigests(done, digest, digest if other is None else other.digest())


def _hash_or_fail(path: Path, suite: Suite, *, quiet: bool) -> FileDigests:
    if not path.is_file():
        _fail(f"{path} is not a readable file")
    try:
        return hash_file(path, suite, quiet=quiet)
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}")


# ---------------------------------------------------------------------------------------------
# Reading a node (proof-checked)


@dataclass(frozen=True)
class NodeReader:
    """Committed state of one node, each value checked against the state proof it sends."""

    suite: Suite
    chain_id: str
    host: str
    port: int

    @classmethod
    def from_home(cls, home: Path) -> NodeReader:
        genesis = load_genesis(home)
        config = NodeConfig.load(home)
        return cls(get_suite(genesis.suite), genesis.chain_id, config.host, config.client_port)

    def read(self, key: bytes) -> bytes | None:
        reply = client_call(self.host, self.port, "state.get", {"key": key}, timeout_s=30.0)
        if not reply.get("ok"):
            raise InvalidOperationError(
                str(reply.get("code")), f"state.get: {reply.get('message')}"
            )
        root, raw_proof, value = reply.get("state_root"), reply.get("proof"), reply.get("value")
        try:
            if not isinstance(root, bytes) or not isinstance(raw_proof, bytes):
                raise StateTreeError("the reply lacks a state root or proof")
            proof = StateProof.from_bytes(raw_proof)
            if proof.key != key or proof.value != value:
                raise StateTreeError("the proof is for another key or value")
            return verify_state_proof(self.suite.hash, root, proof)
        except StateTreeError as exc:
            raise InvalidOperationError("BAD_STATE_PROOF", f"state.get: {exc}") from exc

    def deposit_id_of_tx(self, height: int, tx_hash: bytes) -> str | None:
        """The deposit id a committed ``notary.deposit`` transaction reported."""
        reply = client_call(self.host, self.port, "block.get", {"height": height}, timeout_s=30.0)
        raw = reply.get("receipts")
        if not isinstance(raw, bytes):
            return None
        for receipt in decode_receipts(raw).receipts:
            if receipt.tx_hash != tx_hash:
                continue
            for event in receipt.events:
                if (event.module, event.kind) == (notary.NAME, "deposited"):
                    found = event.attributes.get("deposit_id")
                    return found if isinstance(found, str) else None
        return None


def _node_or_fail(home: Path) -> NodeReader:
    try:
        return NodeReader.from_home(home)
    except (NodeError, GenesisError, CryptoError, OSError) as exc:
        _fail(f"unusable node home {home}: {exc}")


def _guard_read(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` with node failures turned into one-line errors."""
    try:
        return fn(*args)
    except NodeUnreachableError as exc:
        _fail(f"node unreachable: {exc}")
    except OSError as exc:
        _fail(f"node error: {exc}")
    except InvalidOperationError as exc:
        _fail(f"{exc.code}: {exc.message}")
    except codec.CodecError as exc:
        _fail(f"the node sent an unreadable record: {exc}")


def _deposit_json(d: notary.Deposit) -> dict[str, Any]:
    return {
        "deposit_id": d.deposit_id,
        "org_id": d.org_id,
        "depositor": d.depositor.hex(),
        "sha256": d.sha256.hex(),
        "suite_hash": d.suite_hash.hex(),
        "doc_type": d.doc_type,
        "title": d.title,
        "project": d.project,
        "version": d.version,
        "previous": d.previous,
        "next": d.next,
        "size": d.size,
        "sealed_metadata": len(d.sealed_metadata) > 0,
        "height": d.height,
        "time_ms": d.time_ms,
        "time": cst_time(d.time_ms),
        "withdrawn": d.withdrawn,
        "withdraw_reason": d.withdraw_reason,
        "withdrawn_height": d.withdrawn_height,
    }


def _deposit_line(d: notary.Deposit) -> str:
    line = (
        f"{d.deposit_id}: {d.doc_type} {d.title!r} (project {d.project}, version {d.version}, "
        f"{d.size} bytes) deposited by {d.org_id} (account {d.depositor.hex()}) at "
        f"{cst_time(d.time_ms)} in block {d.height}"
    )
    if d.withdrawn:
        line += f"; WITHDRAWN at block {d.withdrawn_height}: {d.withdraw_reason}"
    return line


# ---------------------------------------------------------------------------------------------
# Commands


def _operator(key: Path, node: Path) -> Operator:
    try:
        keypair = decrypt_key_file(key.read_bytes(), key_password())
        return Operator.from_node_home(keypair, node)
    except OSError as exc:
        _fail(f"cannot read: {exc}")
    except (CryptoError, NodeError, GenesisError) as exc:
        _fail(str(exc))


def _submit(operator: Operator, method: str, args: dict[str, Any]) -> tuple[int, bytes]:
    """Submit ``notary.<method>``; (height, tx hash) of the committed success."""
    try:
        result = operator.submit(notary.NAME, method, args)
    except NodeUnreachableError as exc:
        _fail(f"node unreachable: {exc}")
    except OSError as exc:
        _fail(f"node error: {exc}")
    except InvalidOperationError as exc:
        _fail(f"{exc.code}: {exc.message}")
    except OperationError as exc:
        _fail(f"{exc.code}: {exc.message}", EXIT_FAILED)
    if not result.ok or result.height is None or result.tx_hash is None:
        _fail(f"{result.code}: {result.message}", EXIT_FAILED)
    return result.height, result.tx_hash


@app.command("submit")
def submit_cmd(
    file: Annotated[Path, typer.Argument(help="The document to deposit (it stays here).")],
    doc_type: Annotated[
        str, typer.Option("--type", help="Document type, e.g. working-paper, contract.")
    ],
    project: Annotated[str, typer.Option("--project", help="Project or case reference.")],
    key: KeyOpt,
    node: NodeOpt,
    title: Annotated[
        str | None, typer.Option("--title", help="Title (default: the file's name).")
    ] = None,
    previous: Annotated[
        str, typer.Option("--previous", help="The deposit this version supersedes.")
    ] = "",
    version: Annotated[
        int | None, typer.Option("--version", help="Expected version number (checked).")
    ] = None,
    seal: Annotated[
        bool,
        typer.Option(
            "--seal",
            help="Also deposit the metadata sealed to this account and the regulator.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Hash FILE (streaming) and deposit its hashes and metadata; prints the deposit number."""
    operator = _operator(key, node)
    doc_title = title if title is not None else file.name
    placeholder = notary.DepositArgs(
        suite_hash=bytes(32),
        sha256=bytes(32),
        doc_type=doc_type,
        title=doc_title,
        project=project,
        version=version,
        previous=previous,
        size=0,
        sealed_metadata=b"",
    )
    try:
        notary.check_deposit_args(placeholder)  # fail before hashing a large file
    except TxFailure as exc:
        _fail(f"{exc.code}: {exc.message}")
    digests = _hash_or_fail(file, operator.suite, quiet=as_json)
    sealed = b""
    if seal:
        metadata = {
            "file_name": file.name,
            "title": doc_title,
            "doc_type": doc_type,
            "project": project,
            "size": digests.size,
            "sha256": digests.sha256,
        }
        regulator = _guard_read(operator.regulator_public_key)
        try:
            sealed = operator.suite.seal(
                [operator.key.public_key, regulator], codec.encode(metadata)
            )
        except (CryptoError, codec.CodecError) as exc:
            _fail(f"cannot seal the metadata: {exc}")
    args: dict[str, Any] = {
        "suite_hash": digests.suite_hash,
        "sha256": digests.sha256,
        "doc_type": doc_type,
        "title": doc_title,
        "project": project,
        "version": version,
        "previous": previous,
        "size": digests.size,
        "sealed_metadata": sealed,
    }
    height, tx_hash = _submit(operator, "deposit", args)
    reader = NodeReader(operator.suite, operator.chain_id, operator.host, operator.port)
    deposit_id = _guard_read(reader.deposit_id_of_tx, height, tx_hash)
    if as_json:
        out = {
            "ok": True,
            "deposit_id": deposit_id,
            "height": height,
            "tx_hash": tx_hash.hex(),
            "sha256": digests.sha256.hex(),
            "suite_hash": digests.suite_hash.hex(),
            "size": digests.size,
        }
        typer.echo(json.dumps(out, indent=2))
        return
    typer.echo(
        f"deposited {file} as {deposit_id} in block {height} (tx {tx_hash.hex()}); "
        f"sha256 {digests.sha256.hex()}, {digests.size} bytes"
    )


@app.command("verify")
def verify_cmd(
    file: Annotated[Path, typer.Argument(help="The file to look up.")],
    node: NodeOpt,
    supervision_node: Annotated[
        Path | None,
        typer.Option("--supervision-node", help="A supervision node home, to show the anchor."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Find FILE's deposits by its SHA-256 and check its size and suite hash against each."""
    reader = _node_or_fail(node)
    digests = _hash_or_fail(file, reader.suite, quiet=as_json)
    found: tuple[notary.Deposit, ...] = _guard_read(
        notary.deposits_by_sha256, reader.read, digests.sha256
    )
    matches = [d for d in found if (d.size, d.suite_hash) == (digests.size, digests.suite_hash)]
    sup = None if supervision_node is None else _node_or_fail(supervision_node)
    anchors: dict[str, int | None] = {}
    for d in matches:
        anchored = None
        if sup is not None:
            raw = _guard_read(sup.read, anchoring.anchor_key(reader.chain_id, d.height))
            if raw is not None:
                anchor = codec.decode_struct(anchoring.Anchor, raw)
                anchored = anchor.anchored_height if anchor.time_ms == d.time_ms else None
        anchors[d.deposit_id] = anchored
    if as_json:
        out = {
            "found": bool(matches),
            "sha256": digests.sha256.hex(),
            "suite_hash": digests.suite_hash.hex(),
            "size": digests.size,
            "chain_id": reader.chain_id,
            "deposits": [
                {**_deposit_json(d), "anchored_height": anchors[d.deposit_id]} for d in matches
            ],
        }
        typer.echo(json.dumps(out, indent=2))
    elif not matches:
        typer.echo(f"NOT FOUND: no deposit of {file} (sha256 {digests.sha256.hex()})")
    else:
        typer.echo(f"FOUND {file} (sha256 {digests.sha256.hex()}) on chain {reader.chain_id}:")
        for d in matches:
            typer.echo(f"  {_deposit_line(d)}")
            if sup is not None:
                s = anchors[d.deposit_id]
                where = "not anchored yet" if s is None else f"anchored at supervision height {s}"
                typer.echo(f"    {where}")
    if not matches:
        raise typer.Exit(EXIT_FAILED)


@app.command("history")
def history_cmd(
    deposit_id: Annotated[str, typer.Argument(help="Any deposit of the version chain.")],
    node: NodeOpt,
    as_json: JsonOpt = False,
) -> None:
    """Show the whole version history DEPOSIT belongs to, oldest first."""
    reader = _node_or_fail(node)
    chain: tuple[notary.Deposit, ...] = _guard_read(notary.version_history, reader.read, deposit_id)
    if not chain:
        _fail(f"NOTARY_NOT_FOUND: no deposit {deposit_id!r}", EXIT_FAILED)
    if as_json:
        typer.echo(json.dumps([_deposit_json(d) for d in chain], indent=2))
        return
    for d in chain:
        mark = "*" if d.deposit_id == deposit_id else " "
        typer.echo(f"{mark} v{d.version} {_deposit_line(d)}; sha256 {d.sha256.hex()}")


@app.command("withdraw")
def withdraw_cmd(
    deposit_id: Annotated[str, typer.Argument(help="The deposit to mark withdrawn.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept on chain).")],
    key: KeyOpt,
    node: NodeOpt,
) -> None:
    """Mark a deposit withdrawn (it is never erased)."""
    operator = _operator(key, node)
    height, tx_hash = _submit(operator, "withdraw", {"deposit_id": deposit_id, "reason": reason})
    typer.echo(f"withdrew {deposit_id} in block {height} (tx {tx_hash.hex()})")


@app.command("evidence")
def evidence_cmd(
    deposit_id: Annotated[str, typer.Argument(help="The deposit number.")],
    home: Annotated[Path, typer.Option("--home", help="The business chain node's home.")],
    supervision_home: Annotated[
        Path, typer.Option("--supervision-home", help="A supervision chain node's home.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the bundle.")],
) -> None:
    """Export the offline evidence bundle of a deposit (its anchored transaction bundle);
    `consortia evidence verify BUNDLE --genesis ... --file FILE` checks it with the file."""
    try:
        with progress_bar("replaying blocks") as update:
            bundle = export_deposit(home, supervision_home, deposit_id, progress=update)
    except (ExportError, NodeError, StorageError, GenesisError) as exc:
        _fail(str(exc), EXIT_FAILED)
    text = bundle_to_json(bundle)
    try:
        output.write_text(text)
    except OSError as exc:
        _fail(f"cannot write {output}: {exc.strerror or exc}")
    typer.echo(
        f"wrote {output} ({len(text)} bytes): evidence of {deposit_id} at "
        f"{bundle.business.chain_id}@{bundle.business.header.height}, anchored on "
        f"{bundle.anchor.supervision.chain_id}@{bundle.anchor.supervision.header.height}"
    )
