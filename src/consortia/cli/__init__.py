"""The ``consortia`` command line: every error reaches the user as one clear line, no traceback."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from consortia import codec, logs
from consortia.cli.api_cmd import app as api_app
from consortia.cli.contract_cmd import app as contract_app
from consortia.cli.crypto_cmd import app as crypto_app
from consortia.cli.evidence_cmd import app as evidence_app
from consortia.cli.notary_cmd import app as notary_app
from consortia.cli.progress import make_progress, progress_bar
from consortia.cli.relay_cmd import relay as relay_command
from consortia.cli.supervise_cmd import app as supervise_app
from consortia.cli.tx_cmd import tx as tx_command
from consortia.crypto import CryptoError
from consortia.execution.genesis import Genesis, GenesisError
from consortia.ledger.types import decode_block
from consortia.node.demo import run_demo
from consortia.node.demo_network import run_network_demo
from consortia.node.demo_two_tier import run_two_tier_demo
from consortia.node.home import init_home, key_password
from consortia.node.local import DATA_DIR, NodeError, load_genesis
from consortia.node.network_home import NodeConfig, init_network
from consortia.node.service import Node, NodeParams
from consortia.node.supervisor import network_status, node_homes, supervise
from consortia.node.topology import (
    Topology,
    bootstrap,
    configure_evidence,
    configure_lookthrough,
    init_two_tier,
    is_two_tier,
    relay_metrics_url,
    spawn_follower,
    spawn_relay,
    wait_until_serving,
)
from consortia.node.verify import verify_chain
from consortia.storage import ChainStore, StorageError

app = typer.Typer(
    rich_markup_mode="markdown",
    name="consortia",
    help="consortia: a permissioned, two-tier consortium blockchain for securities and e-CNY.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
ledger_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Inspect and re-verify a node's stored chain.",
    no_args_is_help=True,
)
app.add_typer(crypto_app, name="crypto")
app.add_typer(api_app, name="api")
app.add_typer(ledger_app, name="ledger")
app.add_typer(evidence_app, name="evidence")
app.command("tx")(tx_command)
app.command("relay")(relay_command)
app.add_typer(supervise_app, name="supervise")
app.add_typer(contract_app, name="contract")
app.add_typer(notary_app, name="notary")

# Wide enough for the demo table when output is not a terminal (CI logs, pipes).
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True)

HomeOption = typer.Option(..., "--home", help="The node's home directory.")


def _progress(*, quiet: bool = False) -> Progress:
    """A progress display on stderr, drawn only on a terminal and without --json."""
    return make_progress(quiet=quiet)


@app.command()
def init(
    home: Path = HomeOption,
    suite: str = typer.Option(
        "intl", help="Crypto suite: intl (Ed25519/SHA-256) or gm (SM2/SM3/SM4)."
    ),
    chain_id: str = typer.Option("consortia-local", help="Chain id (1..64 of A-Z a-z 0-9 . _ -)."),
    validators: int = typer.Option(
        0, min=0, max=64, help="Validators of a local network (0: a single-process home instead)."
    ),
    observers: int = typer.Option(0, min=0, max=64, help="Observer nodes (run by the regulator)."),
    base_port: int = typer.Option(26600, min=1024, max=65000, help="First TCP port to use."),
    two_tier: bool = typer.Option(
        False,
        "--two-tier",
        help="A supervision chain plus business chains (and their relayers under `up`).",
    ),
    business_chains: int = typer.Option(
        1, min=1, max=9, help="Business chains of a --two-tier home."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the chains made (home, chain id, tier, genesis hash) as JSON."
    ),
) -> None:
    """Create a home: organizations, CAs, node and account keys, certificates, genesis, configs.

    With --validators N it lays out a local network (one directory per node, started by
    `consortia up`); with --two-tier, a supervision chain and --business-chains business chains
    (each with --validators validators, default 4, and --observers observers, default 1); with
    neither, a single-process home (used by `consortia demo --single-process`). Each node
    directory gets a config.toml with every option commented (docs/configuration.md). Key files
    are encrypted with the password in CONSORTIA_KEY_PASSWORD (a demo password if unset); a
    progress bar shows the key generation on a terminal.
    """

    def made(chain_home: Path, g: Genesis) -> dict[str, str]:
        return {
            "home": str(chain_home),
            "chain_id": g.chain_id,
            "tier": g.tier,
            "suite": g.suite,
            "genesis_hash": g.hash().hex(),
        }

    if two_tier:
        with progress_bar("creating chains (keys, certificates)", quiet=as_json):
            topology = init_two_tier(
                home,
                business_chains=business_chains,
                validators=validators or 4,
                observers=observers or 1,
                suite_name=suite,
                base_port=base_port,
            )
        chains = [
            made(topology.chain_home(name), load_genesis(topology.chain_home(name)))
            for name in (topology.supervision, *topology.business)
        ]
        if as_json:
            console.print_json(json.dumps({"home": str(home), "chains": chains}))
            return
        for c in chains:
            console.print(
                f"initialised [bold]{c['home']}[/] — {c['tier']} chain {c['chain_id']}, "
                f"suite {c['suite']}, genesis hash {c['genesis_hash']}"
            )
        return
    with progress_bar("generating keys", quiet=as_json) as update:
        if validators == 0:
            genesis = init_home(home, suite_name=suite, chain_id=chain_id, progress=update)
        else:
            genesis = init_network(
                home,
                validators=validators,
                observers=observers,
                suite_name=suite,
                chain_id=chain_id,
                base_port=base_port,
                progress=update,
            )
    if as_json:
        console.print_json(json.dumps({"home": str(home), "chains": [made(home, genesis)]}))
        return
    console.print(f"initialised [bold]{home}[/] — chain {genesis.chain_id}, suite {genesis.suite}")
    console.print(f"genesis hash {genesis.hash().hex()}")


node_app = typer.Typer(
    rich_markup_mode="markdown",
    help="Run one node.",
    no_args_is_help=True,
)
app.add_typer(node_app, name="node")


@node_app.command("start")
def node_start(
    home: Path = HomeOption,
    log_level: str | None = typer.Option(
        None, help="DEBUG, INFO, WARNING or ERROR; default: log.level in config.toml."
    ),
    log_format: str | None = typer.Option(
        None,
        help="text, or json (one object per line with chain, height, tx);"
        " default: log.format in config.toml.",
    ),
    api_port: int | None = typer.Option(
        None,
        min=0,
        max=65535,
        help="Serve the REST API on this port (0: no API); default: api_port in config.toml.",
    ),
) -> None:
    """Start the node in HOME (a node directory made by `consortia init --validators N`).

    Reads HOME/config.toml (docs/configuration.md). Runs until SIGINT/SIGTERM; then closes
    peers, clients, the REST API and the store cleanly. Logs go to stderr.
    """
    config = NodeConfig.load(home)
    try:
        logs.configure(
            log_format=log_format or config.log.format,
            level=(log_level or config.log.level).upper(),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    params = NodeParams(**asdict(config.node))  # config.toml [node]
    node = Node(home, password=key_password(), api_port=api_port, params=params)
    logs.bind(chain=node.chain_id, node=node.config.node_name)

    async def main_async() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, node.stop)
        await node.run()

    asyncio.run(main_async())


@app.command()
def up(
    home: Path = HomeOption,
    restart: bool = typer.Option(True, help="Restart a node that dies."),
) -> None:
    """Start every node of a local network as its own process and supervise them.

    For a --two-tier home: every node of every chain, then (once they answer) the one-time
    trust bootstrap between the tiers, then one relayer per business chain and the
    look-through follower (HOME/supervision/lookthrough.sqlite, served by the supervision nodes'
    APIs to the regulator). Logs go to HOME/**/node.log, HOME/relay-*.log and
    HOME/lookthrough.log; Ctrl-C stops them all cleanly.
    """
    if not is_two_tier(home):
        raise typer.Exit(supervise(home, say=console.print, restart=restart))
    topology = Topology.load(home)
    for node_home in configure_lookthrough(topology):  # a home laid out before the follower
        console.print(f"{node_home.relative_to(home)}: now serves the look-through index")
    for node_home in configure_evidence(topology):  # ... or before evidence over the API
        console.print(f"{node_home.relative_to(home)}: now fetches anchor proofs for evidence")
    dirs = [
        h
        for name in (topology.supervision, *topology.business)
        for h in node_homes(topology.chain_home(name))
    ]

    def then() -> list[tuple[str, Callable[[], subprocess.Popen[bytes]]]]:
        wait_until_serving(topology)
        for line in bootstrap(topology):
            console.print(line)
        relays = [(f"relay {b}", partial(spawn_relay, topology, b)) for b in topology.business]
        return [*relays, ("lookthrough follower", partial(spawn_follower, topology))]

    raise typer.Exit(supervise(home, say=console.print, restart=restart, node_dirs=dirs, then=then))


@app.command()
def status(home: Path = HomeOption) -> None:
    """Print, as JSON, each node's height, last block hash, connected peers and API URL (for a
    --two-tier home: per chain, and under "relayers" each relayer's metrics URL)."""
    if is_two_tier(home):
        topology = Topology.load(home)
        chains = (topology.supervision, *topology.business)
        out: dict[str, Any] = {name: network_status(topology.chain_home(name)) for name in chains}
        relayers = {b: {"metrics": relay_metrics_url(topology, b)} for b in topology.business}
        out["relayers"] = relayers
        console.print_json(json.dumps(out))
        return
    console.print_json(json.dumps(network_status(home)))


@app.command()
def demo(
    home: Path = typer.Option(Path("demo-home"), "--home", help="Where the demo chain lives."),
    suite: str = typer.Option("intl", help="Crypto suite: intl or gm."),
    investors: int = typer.Option(600, min=2, max=20_000, help="Investor accounts to open."),
    block_size: int = typer.Option(300, min=1, max=1_000, help="Transactions per submission."),
    single_process: bool = typer.Option(
        False, "--single-process", help="Run the chain in this process instead of a network."
    ),
    one_tier: bool = typer.Option(
        False, "--one-tier", help="Only the business chain's network (no supervision tier)."
    ),
    base_port: int = typer.Option(
        26600, min=1024, max=60000, help="First TCP port of the demo network's nodes."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Run the whole story on a fresh two-tier local network and verify it all.

    Starts the supervision chain (4 validators of the regulator and the association, the
    regulator's observer) and a business chain (4 validators: exchange, two securities firms, a
    bank; the regulator's observer) as 10 processes over mutual TLS, and the relayer. Brokers
    open investor accounts; a validator is killed with SIGKILL and the chain goes on; the
    business story runs (listing, e-CNY issuance and tiered wallets, payments, escrow, DvP,
    insurance, dividends in e-CNY, a fund order, court freezes); every block is anchored; the
    regulator orders a freeze on the supervision chain and the business chain applies it with a
    proof; alerts are raised and one filed; evidence bundles are exported to HOME/evidence and
    verified offline; every node's store is re-verified from genesis. Exits 0 only if every
    step succeeded. --one-tier runs the business network alone; --single-process runs the
    scenario in this process (with a rehearsal clock, so fund orders are confirmed at NAVs).
    """
    say = (lambda _m: None) if as_json else console.print
    with _progress(quiet=as_json) as progress:
        task = progress.add_task("opening investor accounts", total=investors)
        common: dict[str, Any] = {
            "suite_name": suite,
            "investors": investors,
            "block_size": block_size,
            "say": say,
            "progress": lambda done, total: progress.update(task, completed=done, total=total),
        }
        if single_process:
            report = run_demo(home, **common)
        else:
            runner = run_network_demo if one_tier else run_two_tier_demo
            report = runner(home, base_port=base_port, **common)
    if as_json:
        out = {
            "suite": report.suite,
            "chain_id": report.chain_id,
            "blocks": report.blocks,
            "checks": [{"name": n, "ok": ok, "detail": d} for n, ok, d in report.checks],
            "evidence": [{"bundle": path, "proves": lines} for path, lines in report.evidence],
            "ok": report.ok,
        }
        console.print_json(json.dumps(out))
    else:
        table = Table(title=f"chain {report.chain_id} ({report.suite}) — committed blocks")
        for col in ("height", "what", "txs", "ok", "failed", "rejected", "block hash", "signers"):
            table.add_column(col)
        for b in report.blocks:
            table.add_row(
                str(b["height"]),
                b["label"],
                str(b["txs"]),
                str(b["ok"]),
                str(b["failed"]),
                str(b["rejected"]),
                (b["hash"][:16] + "…") if b["hash"] else "-",
                f"{b['signers']}/4" if b["signers"] else "-",
            )
        console.print(table)
        for path, lines in report.evidence:
            console.print(f"[bold]evidence verified offline[/] — {path}")
            for line in lines:
                console.print(f"  {line}")
        if report.evidence:
            console.print(
                "check any bundle yourself: consortia evidence verify BUNDLE "
                f"--genesis {home}/business-1/genesis.json "
                f"--genesis {home}/supervision/genesis.json"
            )
        console.print("[bold green]demo OK[/]" if report.ok else "[bold red]demo FAILED[/]")
    if not report.ok:
        raise typer.Exit(1)


@ledger_app.command("verify")
def ledger_verify(
    home: Path = HomeOption,
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
) -> None:
    """Re-check the whole stored chain from genesis: hash links, certificates, Merkle roots,
    receipts, and the state root (by replaying every block). Exits 1 naming the first bad height.
    """
    with _progress(quiet=as_json) as progress:
        task = progress.add_task("verifying blocks", total=None)
        verdict = verify_chain(
            home, progress=lambda done, total: progress.update(task, completed=done, total=total)
        )
    if as_json:
        out = {
            "ok": verdict.ok,
            "head_height": verdict.head_height,
            "first_bad_height": verdict.first_bad_height,
            "reason": verdict.reason,
        }
        console.print_json(json.dumps(out))
        if not verdict.ok:
            raise typer.Exit(1)
        return
    if verdict.ok:
        console.print(f"OK: {verdict.head_height} blocks verified — {verdict.reason}")
        return
    err_console.print(f"FAILED at height {verdict.first_bad_height}: {verdict.reason}")
    raise typer.Exit(1)


@ledger_app.command("head")
def ledger_head(home: Path = HomeOption) -> None:
    """Print the stored head: height, block hash, state root, time."""
    with ChainStore.open(home / DATA_DIR, readonly=True) as store:
        head = store.head()
        if head is None:
            console.print("empty chain (no blocks yet)")
            return
        raw = store.block(head[0])
        assert raw is not None
        header = decode_block(raw).header
    console.print_json(json.dumps(codec.hex_dump(codec.to_cbor(header))))


def main() -> None:
    """Entry point: run the app, turning expected failures into one-line messages (exit 2)."""
    try:
        app()
    except (NodeError, GenesisError, StorageError, CryptoError, codec.CodecError) as exc:
        err_console.print(f"error: {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
