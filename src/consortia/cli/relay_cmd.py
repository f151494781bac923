"""``consortia relay``: relay between a business chain and the supervision chain.

    consortia relay --business NODE_HOME --supervision NODE_HOME \
        --business-key KEYFILE --supervision-key KEYFILE [--once] [--interval-ms N] \
        [--metrics-port PORT [--metrics-host HOST]]

Each round follows the supervision chain on the business chain, carries the orders addressed to
the business chain down with their proofs, and anchors every committed business header on the
supervision chain (``consortia.node.relay``); it prints the round's metrics as one JSON line
(anchoring lag in blocks and ms, heights, orders applied, errors). The relayer keeps no state:
stop it any time and start it again, it resumes from what the chains hold. Key files are the
relayer accounts' (role ``relayer``) on each chain; their password comes from
CONSORTIA_KEY_PASSWORD. Exit codes: 0 (stopped with Ctrl-C / SIGTERM, or ``--once`` without
errors), 1 (``--once`` and the round reported errors), 2 (bad input: unreadable key or node
home). Errors are one line, never a traceback.

``--metrics-port`` serves Prometheus metrics at ``http://HOST:PORT/metrics`` while it runs
(``consortia.node.metrics.RelayMetrics``: rounds, errors, headers anchored, reports filed,
orders applied, and the anchoring lag in blocks and seconds per business chain); 0 (the
default): no server. A port that cannot be bound is a warning on stderr: the relayer relays on.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, NoReturn

import typer
from rich.progress import Progress, TaskID

from consortia import logs
from consortia.cli.progress import make_progress
from consortia.crypto import CryptoError, KeyPair, decrypt_key_file
from consortia.execution.genesis import GenesisError
from consortia.node.home import key_password
from consortia.node.local import NodeError
from consortia.node.metrics import MetricsServer, RelayMetrics
from consortia.node.relay import NodeEndpoint, Relayer, RoundReport

EXIT_ERRORS = 1
EXIT_USAGE = 2


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _load_key(path: Path, option: str) -> KeyPair:
    try:
        return decrypt_key_file(path.read_bytes(), key_password())
    except OSError as exc:
        _fail(f"{option}: cannot read {path}: {exc.strerror or exc}")
    except CryptoError as exc:
        _fail(f"{option}: {path}: {exc}")


def _endpoint(home: Path, option: str) -> NodeEndpoint:
    try:
        return NodeEndpoint.from_node_home(home)
    except (NodeError, GenesisError, CryptoError, OSError) as exc:
        _fail(f"{option}: {exc}")


def _print(report: RoundReport) -> None:
    typer.echo(json.dumps(report.to_json(), sort_keys=True))


class _CatchUp:
    """Progress bars for a relayer behind: one per direction, shown only while behind."""

    def __init__(self, progress: Progress, business: str, supervision: str) -> None:
        self.progress = progress
        self.labels = {
            "anchoring": f"anchoring {business} headers on {supervision}",
            "following": f"following {supervision} headers on {business}",
        }
        self.tasks: dict[str, TaskID] = {}

    def step(self, what: str, done: int, target: int) -> None:
        if done < 0 or target < 0:
            return  # not measurable this round (a node did not answer)
        behind = done < target
        task = self.tasks.get(what)
        if task is None:
            if not behind:
                return
            task = self.tasks[what] = self.progress.add_task(self.labels[what], total=target)
        self.progress.update(task, completed=done, total=target, visible=behind)


def relay(
    business: Annotated[
        Path, typer.Option("--business", help="A node home of the business chain.")
    ],
    supervision: Annotated[
        Path, typer.Option("--supervision", help="A node home of the supervision chain.")
    ],
    business_key: Annotated[
        Path,
        typer.Option(
            "--business-key", help="Key file of the relayer account on the business chain."
        ),
    ],
    supervision_key: Annotated[
        Path,
        typer.Option(
            "--supervision-key", help="Key file of the relayer account on the supervision chain."
        ),
    ],
    once: Annotated[bool, typer.Option("--once", help="Run one round and exit.")] = False,
    interval_ms: Annotated[
        int, typer.Option("--interval-ms", min=10, max=3_600_000, help="Pause between rounds.")
    ] = 1000,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            help="Logs on stderr: text, or json (one object per line with chain and height);"
            " default: only warnings, as plain lines.",
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", help="DEBUG, INFO (a line per round), WARNING or ERROR."),
    ] = None,
    metrics_port: Annotated[
        int,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65_535,
            help="Serve Prometheus metrics at http://HOST:PORT/metrics; 0: no server.",
        ),
    ] = 0,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="Address the metrics server listens on.")
    ] = "127.0.0.1",
) -> None:
    """Anchor business headers on the supervision chain and carry orders down (one JSON line of
    metrics per round on stdout). When a chain is behind, a progress bar on a terminal shows the
    headers anchored (or followed) against the target height."""
    if log_format is not None or log_level is not None:
        try:
            logs.configure(log_format=log_format or "text", level=(log_level or "WARNING").upper())
        except ValueError as exc:
            _fail(str(exc))
    business_ep = _endpoint(business, "--business")
    supervision_ep = _endpoint(supervision, "--supervision")
    if business_ep.chain_id == supervision_ep.chain_id:
        _fail("--business and --supervision are nodes of the same chain")
    relayer = Relayer(
        business_ep,
        supervision_ep,
        _load_key(business_key, "--business-key"),
        _load_key(supervision_key, "--supervision-key"),
    )
    metrics = RelayMetrics()
    server = None
    if metrics_port:
        try:
            server = MetricsServer(metrics, metrics_host, metrics_port)
        except OSError as exc:  # as a node whose API port is taken: relaying matters more
            typer.echo(
                f"warning: --metrics-port: cannot listen on {metrics_host}:{metrics_port}"
                f" ({exc.strerror or exc}); relaying without a metrics server",
                err=True,
            )
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, _on_signal)
    failed = False
    try:
        with make_progress() as progress:
            bars = _CatchUp(progress, business_ep.chain_id, supervision_ep.chain_id)
            relayer.on_step = bars.step
            while not stop.is_set():
                try:
                    report = relayer.run_round()
                except Exception as exc:  # a bug must not end a long-running relayer with a trace
                    typer.echo(f"error: relay round failed: {type(exc).__name__}: {exc}", err=True)
                    metrics.record_failure()
                    failed = True
                else:
                    metrics.record(report)
                    _print(report)
                    bars.step("anchoring", report.anchored_height, report.business_height)
                    bars.step("following", report.followed_height, report.supervision_height)
                    failed = bool(report.errors)
                if once:
                    break
                stop.wait(interval_ms / 1000)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server is not None:
            server.close()
    if once and failed:
        raise typer.Exit(EXIT_ERRORS)
