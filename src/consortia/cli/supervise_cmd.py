"""``consortia supervise ...``: the regulator's look-through index and surveillance alerts.

    consortia supervise index --db FILE --home NODE_HOME [--home NODE_HOME2 ...] [--follow]
    consortia supervise follow --db FILE --home NODE_HOME [--home ...] [--interval S]
    consortia supervise investor INVESTOR_ID --db FILE [--json]
    consortia supervise holders CODE [--height H] [--chain CHAIN] --db FILE [--json]
    consortia supervise history ACCOUNT --db FILE [--json]
    consortia supervise large-payments --db FILE --home NODE_HOME ... --regulator-key KEYFILE
    consortia supervise alerts --db FILE [--rule RULE] [--json]
    consortia supervise deposits --db FILE [--org ORG] [--project P] [--json]
    consortia supervise gaps --db FILE --days N [--org ORG] [--json]

The index reads what the nodes have committed (their stores opened read-only) and never runs in
block execution. ``large-payments`` opens the payers' and payees' sealed identities with the
regulator's key (password in CONSORTIA_KEY_PASSWORD) at query time: the clear identities are
printed, never written. Errors are one line on stderr (exit 2), never a traceback.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from consortia import codec
from consortia.crypto import CryptoError, decrypt_key_file
from consortia.execution.genesis import GenesisError
from consortia.lookthrough.follower import run_follower
from consortia.lookthrough.index import (
    LookthroughError,
    LookthroughIndex,
    large_payments_with_identities,
)
from consortia.lookthrough.surveillance import RULES, alert_as_report_fields
from consortia.node.home import key_password
from consortia.node.local import NodeError
from consortia.storage import StorageError

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Look-through supervision: index committed blocks, query holdings, raise alerts.",
    no_args_is_help=True,
)
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True)

DbOption = typer.Option(..., "--db", help="The index file (SQLite).")
JsonOption = typer.Option(False, "--json", help="Print JSON.")


def _fail(message: str) -> NoReturn:
    err_console.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(2)


@contextmanager
def _open(db: Path, *, create: bool = False) -> Iterator[LookthroughIndex]:
    if not create and not db.is_file():
        _fail(f"no index at {db}: run `consortia supervise index --db {db} --home NODE_HOME`")
    try:
        idx = LookthroughIndex(db, readonly=not create)  # a query never writes the file
    except LookthroughError as exc:
        _fail(str(exc))
    try:
        yield idx
    except (
        LookthroughError,
        NodeError,
        GenesisError,
        StorageError,
        CryptoError,
        codec.CodecError,
        sqlite3.Error,
        OSError,
    ) as exc:
        _fail(str(exc))
    finally:
        idx.close()


def _print_json(value: Any) -> None:
    console.print_json(json.dumps(value, default=str))


@app.command("index")
def index_cmd(
    db: Path = DbOption,
    home: list[Path] = typer.Option(..., "--home", help="A node home (repeat for more chains)."),
    follow: bool = typer.Option(False, "--follow", help="Keep polling for new blocks."),
    interval: float = typer.Option(1.0, min=0.1, help="Seconds between polls with --follow."),
) -> None:
    """Index every block the nodes in HOME have committed (resuming where the index stopped)."""
    with _open(db, create=True) as idx:
        while True:
            for h in home:
                p = idx.follow_home(h)
                if p.indexed or not follow:
                    err_console.print(
                        f"{p.chain_id}: indexed {p.indexed} block(s), at height {p.height}/{p.head}"
                    )
            if not follow:
                break
            try:
                time.sleep(interval)
            except KeyboardInterrupt:
                break
        alerts = len(idx.alerts())
        console.print(
            ", ".join(f"{c} at {h}" for c, h in idx.chains()) + f"; {alerts} alert(s) stored"
        )


@app.command("follow")
def follow_cmd(
    db: Path = DbOption,
    home: list[Path] = typer.Option(
        ..., "--home", help="A node home of a business chain (repeat for more chains)."
    ),
    interval: float = typer.Option(
        1.0, "--interval", min=0.1, max=3600.0, help="Seconds between polls."
    ),
) -> None:
    """Keep the index level with the chains until stopped (SIGTERM / SIGINT / Ctrl-C).

    Restart-safe and incremental: it resumes at each chain's indexed height and indexes every
    committed block exactly once. A chain it cannot read yet (its node not started, say) is
    reported and retried; it stops between two blocks."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stop.set()

    old_int = signal.signal(signal.SIGINT, request_stop)
    old_term = signal.signal(signal.SIGTERM, request_stop)
    try:
        run_follower(
            db,
            home,
            stop=stop,
            interval_s=interval,
            say=lambda line: err_console.print(line, markup=False, highlight=False, soft_wrap=True),
        )
    except LookthroughError as exc:
        _fail(str(exc))
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


@app.command("investor")
def investor_cmd(investor_id: str, db: Path = DbOption, as_json: bool = JsonOption) -> None:
    """An investor's securities accounts, holdings and e-CNY wallets across all chains."""
    with _open(db) as idx:
        found = idx.investor(investor_id)
    if not found["chains"]:
        _fail(f"no investor {investor_id!r} in the index")
    if as_json:
        _print_json(found)
        return
    table = Table(title=f"investor {investor_id}")
    for col in ("chain", "broker", "account / wallet", "holding / balance"):
        table.add_column(col)
    for c in found["chains"]:
        for acct in c["accounts"]:
            held = ", ".join(f"{k}: {v}" for k, v in acct["holdings"].items()) or "-"
            table.add_row(c["chain_id"], c["broker"], acct["account_id"], held)
        for w in c["wallets"]:
            table.add_row(c["chain_id"], "", w["wallet_id"], f"¥{w['balance_fen'] / 100:,.2f}")
    console.print(table)
    console.print(f"total e-CNY ¥{found['total_ecny_fen'] / 100:,.2f}")


@app.command("holders")
def holders_cmd(
    code: str,
    db: Path = DbOption,
    height: int | None = typer.Option(
        None, "--height", min=0, help="At this height (default head)."
    ),
    chain: str | None = typer.Option(None, "--chain", help="Only this chain."),
    as_json: bool = JsonOption,
) -> None:
    """The holder register of a security at a height (exact, from the balance history)."""
    with _open(db) as idx:
        rows = idx.holders(code, height, chain)
    if as_json:
        _print_json(rows)
        return
    table = Table(
        title=f"holders of {code}" + (f" at height {height}" if height is not None else "")
    )
    for col in ("chain", "account", "balance", "since height"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["chain_id"], r["account_id"], str(r["balance"]), str(r["since_height"]))
    console.print(table)


@app.command("history")
def history_cmd(account: str, db: Path = DbOption, as_json: bool = JsonOption) -> None:
    """Every transaction touching an account (securities account, wallet or hex address) or
    its wallets: height, tx hash, module.method, outcome code."""
    with _open(db) as idx:
        rows = idx.history(account)
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"history of {account}")
    for col in ("chain", "height", "tx hash", "call", "outcome", "via"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["chain_id"],
            str(r["height"]),
            r["tx_hash"][:16] + "…",
            r["call"],
            r["outcome"],
            r["via"],
        )
    console.print(table)


@app.command("large-payments")
def large_payments_cmd(
    db: Path = DbOption,
    home: list[Path] = typer.Option(..., "--home", help="A node home of the chain (repeatable)."),
    regulator_key: Path = typer.Option(..., "--regulator-key", help="The regulator's key file."),
    as_json: bool = JsonOption,
) -> None:
    """Large-value e-CNY payments with payer and payee identities opened by the regulator's key
    (read from the node's state and opened now; nothing is written)."""
    try:
        keypair = decrypt_key_file(regulator_key.read_bytes(), key_password())
    except OSError as exc:
        _fail(f"cannot read {regulator_key}: {exc.strerror}")
    except CryptoError as exc:
        _fail(f"cannot decrypt {regulator_key}: {exc}")
    with _open(db) as idx:
        rows = large_payments_with_identities(idx, home, keypair)
    if as_json:
        _print_json(rows)
        return

    def who(identity: object) -> str:
        if isinstance(identity, dict):
            return f"{identity.get('name', '?')} ({identity.get('id_number', '?')})"
        return str(identity)

    table = Table(title="large-value e-CNY payments")
    for col in ("chain", "height", "amount", "payer", "payer identity", "payee", "payee identity"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["chain_id"],
            str(r["height"]),
            f"¥{r['amount_fen'] / 100:,.2f}",
            r["payer"],
            who(r["payer_identity"]),
            r["payee"],
            who(r["payee_identity"]),
        )
    console.print(table)


@app.command("alerts")
def alerts_cmd(
    db: Path = DbOption,
    rule: str | None = typer.Option(None, "--rule", help="Only this rule: " + ", ".join(RULES)),
    as_json: bool = JsonOption,
) -> None:
    """The surveillance alerts raised so far (each as regulatory_object report fields)."""
    if rule is not None and rule not in RULES:
        _fail(f"unknown rule {rule!r}; rules: {', '.join(RULES)}")
    with _open(db) as idx:
        alerts = idx.alerts(rule)
    if as_json:
        _print_json([alert_as_report_fields(a) for a in alerts])
        return
    table = Table(title="surveillance alerts")
    for col in ("rule", "severity", "chain", "height", "subject", "detail"):
        table.add_column(col)
    for a in alerts:
        table.add_row(a.rule, a.severity, a.chain_id, str(a.height), a.subject, a.detail)
    console.print(table)


def _when(ms: object) -> str:
    if not isinstance(ms, int) or ms <= 0:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000))


@app.command("deposits")
def deposits_cmd(
    db: Path = DbOption,
    org: str | None = typer.Option(None, "--org", help="Only this institution (org id)."),
    project: str | None = typer.Option(None, "--project", help="Only this project."),
    as_json: bool = JsonOption,
) -> None:
    """Notary deposits per institution per project: how many, withdrawn ones, the latest
    (deposit number, version, height, block time). With ``--org`` and ``--project``, also that
    project's deposits, newest first."""
    with _open(db) as idx:
        rows = idx.notary_projects(org_id=org, project=project)
        listed = (
            idx.notary_deposits(org, project) if org is not None and project is not None else []
        )
    if as_json:
        _print_json({"projects": rows, "deposits": listed} if listed else rows)
        return
    table = Table(title="notary deposits per institution and project")
    for col in ("org", "project", "chain", "deposits", "withdrawn", "latest", "version", "at"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["org_id"],
            r["project"],
            r["chain_id"],
            str(r["deposits"]),
            str(r["withdrawn"]),
            r["latest_deposit_id"],
            str(r["latest_version"]),
            f"{_when(r['latest_time_ms'])} (block {r['latest_height']})",
        )
    console.print(table)
    if listed:
        detail = Table(title=f"deposits of {org} / {project}")
        for col in ("deposit", "version", "previous", "type", "sha256", "size", "height", "state"):
            detail.add_column(col)
        for d in listed:
            detail.add_row(
                d["deposit_id"],
                str(d["version"]),
                d["previous"] or "—",
                d["doc_type"],
                d["sha256"][:16] + "…",
                str(d["size"]),
                str(d["height"]),
                "withdrawn" if d["withdrawn_height"] is not None else "valid",
            )
        console.print(detail)


@app.command("gaps")
def gaps_cmd(
    db: Path = DbOption,
    days: int = typer.Option(
        ..., "--days", min=0, help="Report projects idle for more than this many days."
    ),
    org: str | None = typer.Option(None, "--org", help="Only this institution (org id)."),
    as_json: bool = JsonOption,
) -> None:
    """The gap report: projects whose latest notary deposit is more than ``--days`` days of
    block time older than their chain's indexed head (working papers no longer updated)."""
    with _open(db) as idx:
        rows = idx.notary_gaps(days, org_id=org)
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"projects without a deposit for more than {days} days")
    for col in ("org", "project", "chain", "idle days", "latest", "at"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["org_id"],
            r["project"],
            r["chain_id"],
            str(r["idle_days"]),
            r["latest_deposit_id"],
            _when(r["latest_time_ms"]),
        )
    console.print(table)
