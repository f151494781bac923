"""``consortia contract ...``: deploy, call, query and govern EVM smart contracts (Typer sub-app).

    consortia contract deploy (--abi ABI.json --bytecode CODE | --source FILE [--name N])
        [ARGS...] --key KEYFILE (--api URL | --node NODE_HOME) [--gas N] [--json]
    consortia contract call ADDRESS FUNCTION [ARGS...] --key ... [--abi ABI.json] [--gas N]
    consortia contract query ADDRESS FUNCTION [ARGS...] --key ... [--abi ABI.json]
    consortia contract info ADDRESS (--api URL | --node NODE_HOME)
    consortia contract approve (--bytecode CODE | --source FILE | --code-hash HEX) --reason TEXT
    consortia contract upgrade ADDRESS (--bytecode CODE | --source FILE) [ARGS...] --key ...
    consortia contract freeze ADDRESS --reason TEXT --key ...    (the regulator or a court)
    consortia contract unfreeze ADDRESS --key ...

Everything goes through a node's REST API with the Python SDK (``consortia.sdk``): ``--api`` is
its URL (``consortia status`` lists it), or ``--node`` a node home whose config.toml names it.
The key file's password comes from CONSORTIA_KEY_PASSWORD.

Arguments. Each ARG is a JSON value when it parses as one (``25``, ``true``, ``[1,2]``,
``{"x": 1}``, ``"text"``), else the text itself (so ``0xabc…`` addresses and plain words need no
quotes); ``--args`` takes them all as one JSON list instead. Conventions are
``consortia.contracts.abi``'s: addresses and bytes in hex, big integers as decimal strings.

Code. ``--bytecode`` is the init code (without constructor arguments) as hex or a file of hex or
raw bytes; ``--source`` compiles a ``.sol`` (``--name`` picks the contract, default the file's
stem) or ``.vy`` file with the pinned compilers (``scripts/toolchain.sh``) and takes its ABI too.
``call`` and ``query`` use the ABI published on chain unless ``--abi`` is given.

Exit codes: 0 done (a query answered); 1 the operation failed — a FAILED receipt (the stable
code, e.g. ``EVM_REVERTED``, ``CODE_NOT_APPROVED``, ``CONTRACT_FROZEN``) or a query that
reverted (with its decoded reason); 2 bad input (unreadable files, bad hex or JSON, unknown
function, wrong argument types, node unreachable, refused at admission). Errors are one line on
stderr, never a traceback; ``--json`` prints the outcome as JSON (failures too, then the line).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from consortia.contracts import toolchain
from consortia.contracts.abi import AbiError, ContractAbi
from consortia.crypto import CryptoError, decrypt_key_file, get_suite
from consortia.execution.genesis import GenesisError
from consortia.node.home import key_password
from consortia.node.local import NodeError
from consortia.node.network_home import NodeConfig
from consortia.sdk import Client, FailedError, SdkError, TxResult
from consortia.sdk.contracts import Contract, ContractTxResult, QueryFailedError

EXIT_FAILED = 1
EXIT_USAGE = 2
DEFAULT_GAS = 3_000_000

app = typer.Typer(
    rich_markup_mode="markdown",
    help="EVM smart contracts: deploy, call (a transaction), query (read-only), info, and the "
    "lifecycle (approve by governance, upgrade, freeze, unfreeze), through a node's REST API "
    "(`--api URL`, or `--node NODE_HOME` to read it from config.toml); the key file's password "
    "comes from CONSORTIA_KEY_PASSWORD.\n\n"
    "Arguments: each ARG is a JSON value when it parses as one (`25`, `true`, `[1,2]`), else the "
    "text itself (addresses as `0x…` hex need no quotes); `--args '[...]'` gives them as one JSON "
    "list. Bytes and addresses are hex, big integers decimal strings. `call`/`query` use the ABI "
    "published on chain unless `--abi` is given.\n\n"
    "Exit codes: 0 done; 1 failed on chain (the stable code, e.g. EVM_REVERTED, "
    "CODE_NOT_APPROVED, CONTRACT_FROZEN) or a query that reverted (with its reason); 2 bad input "
    "or node unreachable. `consortia contract COMMAND --help` explains each command.",
    no_args_is_help=True,
)

KeyOption = Annotated[
    Path | None, typer.Option("--key", "-k", help="The sender's encrypted key file.")
]
ApiOption = Annotated[
    str | None, typer.Option("--api", help="The node's REST API URL, e.g. http://127.0.0.1:27600.")
]
NodeOption = Annotated[
    Path | None, typer.Option("--node", "-n", help="A node home whose config.toml names its API.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")]
GasOption = Annotated[
    int, typer.Option("--gas", min=21_000, help="Gas limit (at most the chain's max_tx_gas).")
]
ArgsArgument = Annotated[
    list[str] | None,
    typer.Argument(help="Arguments: each a JSON value, or else taken as text."),
]
ArgsJsonOption = Annotated[
    str | None, typer.Option("--args", help="All arguments as one JSON list (or @FILE).")
]
BytecodeOption = Annotated[
    str | None,
    typer.Option("--bytecode", help="Init code without constructor arguments: hex, or a file."),
]
SourceOption = Annotated[
    Path | None, typer.Option("--source", help="A .sol or .vy file to compile (ABI included).")
]
NameOption = Annotated[
    str | None, typer.Option("--name", help="The contract in a .sol file (default: file stem).")
]
AbiOption = Annotated[Path | None, typer.Option("--abi", help="The contract's ABI JSON file.")]


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read {what}: {exc}")


def _hex_or_file(text: str, what: str) -> bytes:
    """Hex given inline (``0x`` optional), or a file holding hex or the raw bytes."""
    body = text.strip()
    candidate = body[2:] if body[:2].lower() == "0x" else body
    try:
        return bytes.fromhex(candidate)
    except ValueError:
        pass
    path = Path(text)
    if not path.is_file():
        _fail(f"{what} is neither hex nor a readable file: {text!r}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {what}: {exc}")
    stripped = raw.strip()
    stripped = stripped[2:] if stripped[:2].lower() == b"0x" else stripped
    try:
        return bytes.fromhex(stripped.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return raw  # a binary file of the code itself


def _parse_args(values: list[str] | None, as_json: str | None) -> list[Any]:
    if values and as_json is not None:
        _fail("give the arguments either one by one or as --args, not both")
    if as_json is not None:
        text = as_json
        if text.startswith("@"):
            text = _read_text(Path(text[1:]), "--args file")
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            _fail(f"--args is not valid JSON: {exc}")
        if not isinstance(parsed, list):
            _fail("--args must be a JSON list")
        return parsed
    out: list[Any] = []
    for value in values or []:
        try:
            out.append(json.loads(value))
        except json.JSONDecodeError:
            out.append(value)  # plain text: an address, a word
    return out


def _abi_file(path: Path) -> str:
    text = _read_text(path, "--abi")
    try:
        ContractAbi.parse(text)
    except AbiError as exc:
        _fail(f"--abi {path}: {exc.code}: {exc.message}")
    return text


def _code_and_abi(
    bytecode: str | None, source: Path | None, name: str | None, abi: Path | None
) -> tuple[bytes, str | None]:
    """The init code and (if known) the ABI text, from --bytecode/--abi or --source."""
    if (bytecode is None) == (source is None):
        _fail("give exactly one of --bytecode and --source")
    if source is not None:
        text = _read_text(source, "--source")
        try:
            if source.suffix == ".vy":
                compiled = toolchain.compile_vyper(text, name=name or source.stem)
            elif source.suffix == ".sol":
                compiled = toolchain.compile_solidity(text, name or source.stem)
            else:
                _fail("--source must be a .sol or .vy file")
        except (toolchain.ToolchainError, toolchain.CompileError) as exc:
            _fail(f"cannot compile {source}: {exc}")
        abi_text = _abi_file(abi) if abi is not None else json.dumps(list(compiled.abi))
        return compiled.init_code, abi_text
    assert bytecode is not None
    return _hex_or_file(bytecode, "--bytecode"), (None if abi is None else _abi_file(abi))


def _client(key: Path | None, api: str | None, node: Path | None) -> Client:
    if key is None:
        _fail("--key is required (the sender's key file)")
    url = _api_url(api, node)
    try:
        keypair = decrypt_key_file(key.read_bytes(), key_password())
    except OSError as exc:
        _fail(f"cannot read --key: {exc}")
    except CryptoError as exc:
        _fail(f"--key: {exc}")
    return Client(url, keypair)


def _reader(api: str | None, node: Path | None) -> Client:
    """A client for public reads only: a throwaway key of the chain's suite (the routes it
    reads check no signature; the SDK signs every request but the first status read)."""
    url = _api_url(api, node)
    probe = Client(url, get_suite("intl").generate_keypair())
    suite = _run(False, lambda: probe.suite)
    return Client(url, suite.generate_keypair(), suite=suite, chain_id=probe.chain_id)


def _api_url(api: str | None, node: Path | None) -> str:
    if (api is None) == (node is None):
        _fail("give exactly one of --api URL and --node NODE_HOME")
    if api is not None:
        return api
    assert node is not None
    try:
        config = NodeConfig.load(node)
    except (OSError, NodeError, GenesisError, ValueError) as exc:
        _fail(f"--node {node}: {exc}")
    if config.api_port == 0:
        _fail(f"the node at {node} serves no REST API (api_port is 0 in its config.toml)")
    host = "127.0.0.1" if config.host in ("", "0.0.0.0") else config.host
    return f"http://{host}:{config.api_port}"


def _contract(client: Client, address: str, abi: Path | None) -> Contract:
    abi_text = None if abi is None else _abi_file(abi)
    return client.contracts.at(address, abi_text)


def _tx_json(result: TxResult) -> dict[str, Any]:
    return {
        "ok": True,
        "tx_hash": result.tx_hash.hex(),
        "height": result.height,
        "events": [
            {"module": e.module, "kind": e.kind, "attributes": e.attributes} for e in result.events
        ],
    }


def _contract_tx_json(result: ContractTxResult) -> dict[str, Any]:
    return {
        "ok": True,
        "tx_hash": result.tx_hash.hex(),
        "height": result.height,
        "gas_used": result.gas_used,
        "result": result.result,
        "events": [
            {
                "address": e.address.hex(),
                "event": e.name,
                "signature": e.signature,
                "args": e.args,
                "topics": [t.hex() for t in e.topics],
                "data": e.data.hex(),
            }
            for e in result.events
        ],
    }


def _print_events(result: ContractTxResult) -> None:
    for e in result.events:
        if e.name is None:
            topics = " ".join(t.hex() for t in e.topics)
            typer.echo(f"  log 0x{e.address.hex()} topics [{topics}] data {e.data.hex()}")
        else:
            typer.echo(f"  event {e.name} {json.dumps(e.args)}")


def _run(as_json: bool, action: Any) -> Any:
    """Run ``action()``, turning every expected failure into one line and an exit code."""
    try:
        return action()
    except FailedError as exc:
        if as_json:
            typer.echo(json.dumps({"ok": False, "code": exc.code, "message": exc.message}))
        where = f" (tx {exc.tx_hash.hex()} at height {exc.height})"
        _fail(f"FAILED {exc.code}: {exc.message}{where}", EXIT_FAILED)
    except QueryFailedError as exc:
        if as_json:
            out = {"ok": False, "code": exc.code, "message": exc.message, "reason": exc.reason}
            typer.echo(json.dumps(out))
        _fail(f"query {exc.code}: {exc.message}", EXIT_FAILED)
    except SdkError as exc:
        _fail(f"{exc.code}: {exc.message}")
    except AbiError as exc:
        _fail(f"{exc.code}: {exc.message}")


# ---------------------------------------------------------------------------------------------
# Commands


@app.command()
def deploy(
    args: ArgsArgument = None,
    bytecode: BytecodeOption = None,
    source: SourceOption = None,
    name: NameOption = None,
    abi: AbiOption = None,
    args_json: ArgsJsonOption = None,
    gas: GasOption = DEFAULT_GAS,
    key: KeyOption = None,
    api: ApiOption = None,
    node: NodeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deploy a contract: its init code plus the constructor ARGS (encoded with its ABI, which
    is published on chain with it). The code must be approved by governance (`consortia
    contract approve`) or the sender hold the `contract_deployer` role. Prints the address."""
    code, abi_text = _code_and_abi(bytecode, source, name, abi)
    ctor = _parse_args(args, args_json)
    client = _client(key, api, node)
    contract: Contract = _run(
        as_json,
        lambda: client.contracts.deploy(abi_text or "", code, *ctor, gas_limit=gas),
    )
    if as_json:
        out = {"ok": True, "address": contract.address.hex(), "code_hash": None}
        out["code_hash"] = _run(as_json, lambda: client.contracts.code_hash(code)).hex()
        typer.echo(json.dumps(out, indent=2))
        return
    typer.echo(f"deployed at 0x{contract.address.hex()}")


@app.command()
def call(
    address: Annotated[str, typer.Argument(help="The contract's address (hex).")],
    function: Annotated[str, typer.Argument(help="Name, full signature or 0x selector.")],
    args: ArgsArgument = None,
    abi: AbiOption = None,
    args_json: ArgsJsonOption = None,
    gas: GasOption = DEFAULT_GAS,
    key: KeyOption = None,
    api: ApiOption = None,
    node: NodeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Call FUNCTION(ARGS) in a signed transaction (`contracts.call`), wait for its block, and
    print the decoded return value and events."""
    values = _parse_args(args, args_json)
    client = _client(key, api, node)
    contract = _run(as_json, lambda: _contract(client, address, abi))
    result: ContractTxResult = _run(
        as_json, lambda: contract.transact(function, *values, gas_limit=gas)
    )
    if as_json:
        typer.echo(json.dumps(_contract_tx_json(result), indent=2))
        return
    typer.echo(f"OK tx {result.tx_hash.hex()} at height {result.height}, gas {result.gas_used}")
    if result.result is not None:
        typer.echo(f"  returned {json.dumps(result.result)}")
    _print_events(result)


@app.command()
def query(
    address: Annotated[str, typer.Argument(help="The contract's address (hex).")],
    function: Annotated[str, typer.Argument(help="Name, full signature or 0x selector.")],
    args: ArgsArgument = None,
    abi: AbiOption = None,
    args_json: ArgsJsonOption = None,
    key: KeyOption = None,
    api: ApiOption = None,
    node: NodeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Read FUNCTION(ARGS) without a transaction (a static call over the head state, signed by
    the key's account, which the contract sees as `msg.sender`) and print the decoded value."""
    values = _parse_args(args, args_json)
    client = _client(key, api, node)
    contract = _run(as_json, lambda: _contract(client, address, abi))
    value = _run(as_json, lambda: contract.query(function, *values))
    typer.echo(
        json.dumps({"ok": True, "result": value}, indent=2) if as_json else json.dumps(value)
    )


@app.command()
def info(
    address: Annotated[str, typer.Argument(help="The contract's address (hex).")],
    api: ApiOption = None,
    node: NodeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print a contract's public record: deployer, approved code hash, version, frozen, and the
    functions and events of its published ABI (no key needed)."""
    client = _reader(api, node)
    view: dict[str, Any] = _run(as_json, lambda: client.contracts.info(address))
    if as_json:
        typer.echo(json.dumps(view, indent=2))
        return
    record = view.get("record") or {}
    typer.echo(f"contract 0x{view['address']} (height {view['height']})")
    typer.echo(f"  deployer   {view.get('deployer')} ({record.get('deployer_org', '-')})")
    typer.echo(f"  code hash  {view.get('code_hash')} (version {record.get('version', '-')})")
    typer.echo(f"  runtime    {view['runtime_code_size']} bytes, {view['runtime_code_hash']}")
    freeze = view.get("freeze") or {}
    typer.echo("  frozen     " + (f"yes: {freeze.get('reason')}" if view["frozen"] else "no"))
    try:
        parsed = ContractAbi.parse(view["abi"] or [])
    except AbiError:
        parsed = ContractAbi()
    for fn in parsed.functions:
        typer.echo(f"  function   {fn.signature} {fn.state_mutability}")
    for ev in parsed.events:
        typer.echo(f"  event      {ev.signature}")


@app.command()
def approve(
    bytecode: BytecodeOption = None,
    source: SourceOption = None,
    name: NameOption = None,
    code_hash: Annotated[
        str | None, typer.Option("--code-hash", help="The code hash itself (hex).")
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the proposal).")] = "",
    key: KeyOption = None,
    api: ApiOption = None,
    node: NodeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Propose that governance approve deploying this code (a `governance.propose_contract`
    `approve_code` proposal by a voting organization's account); other organizations then
    approve it with `consortia tx governance.approve --args '{"proposal_id": N}'`."""
    if not reason.strip():
        _fail("--reason is required")
    client = _client(key, api, node)
    if code_hash is not None:
        if bytecode is not None or source is not None:
            _fail("give --code-hash alone, or --bytecode / --source")
        subject = _hex_or_file(code_hash, "--code-hash")
    else:
        code, _abi_text = _code_and_abi(bytecode, source, name, None)
        subject = _run(as_json, lambda: client.contracts.code_hash(code))
    result: TxResult = _run(
        as_json,
        lambda: client.call(
            "governance",
            "propose_contract",
            action="approve_code",
            subject=subject,
            reason=reason,
        ),
    )
    opened = [e for e in result.events if e.kind == "proposal_opened"]
    pid = opened[0].attributes.get("proposal_id") if opened else None
    if as_json:
        typer.echo(json.dumps({**_tx_json(result), "proposal_id": pid, "code_hash": subject.hex()}))
        return
    typer.echo(f"proposal {pid} opened to approve code {subject.hex()} (height {result.height})")


@app.command()
def upgrade(
    address: Annotated[str, typer.Argument(help="The contract's address (hex).")],
    args: ArgsArgument = None,
    bytecode: BytecodeOption = None,
    source: SourceOption = None,
    name: NameOption = None,
    abi: AbiOption = None,
    args_json: ArgsJsonOption = None,
    gas: GasOption = DEFAULT_GAS,
    key: KeyOption = None,
    api: ApiOption = None,
    node: NodeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Install an approved new version at ADDRESS, keeping its storage (an org_admin of the
    original deployer's organization). ARGS are the new constructor's."""
    code, abi_text = _code_and_abi(bytecode, source, name, abi)
    ctor = _parse_args(args, args_json)
    if ctor and abi_text is None:
        _fail("constructor arguments need the new version's ABI (--abi or --source)")
    client = _client(key, api, node)
    result: TxResult = _run(
        as_json,
        lambda: client.contracts.upgrade(address, code, *ctor, abi=abi_text, gas_limit=gas),
    )
    if as_json:
        typer.echo(json.dumps(_tx_json(result), indent=2))
        return
    typer.echo(f"OK upgraded 0x{address.removeprefix('0x')} at height {result.height}")


@app.command()
def freeze(
    address: Annotated[str, typer.Argument(help="The contract's address (hex).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept on chain).")] = "",
    key: KeyOption = None,
    api: ApiOption = None,
    node: NodeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Freeze a contract (the regulator or a court): its calls and upgrades are refused with
    CONTRACT_FROZEN until unfrozen; queries still answer."""
    client = _client(key, api, node)
    result: TxResult = _run(as_json, lambda: client.contracts.freeze(address, reason=reason))
    if as_json:
        typer.echo(json.dumps(_tx_json(result), indent=2))
        return
    typer.echo(f"OK frozen 0x{address.removeprefix('0x')} at height {result.height}")


@app.command()
def unfreeze(
    address: Annotated[str, typer.Argument(help="The contract's address (hex).")],
    key: KeyOption = None,
    api: ApiOption = None,
    node: NodeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Lift a contract's freeze (the regulator or a court)."""
    client = _client(key, api, node)
    result: TxResult = _run(as_json, lambda: client.contracts.unfreeze(address))
    if as_json:
        typer.echo(json.dumps(_tx_json(result), indent=2))
        return
    typer.echo(f"OK unfrozen 0x{address.removeprefix('0x')} at height {result.height}")
