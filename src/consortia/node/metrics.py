"""A small, dependency-free Prometheus metrics registry (text exposition format 0.0.4).

The node keeps one :class:`Registry`; ``render()`` produces what ``GET /metrics`` serves (and
what the client port's ``metrics`` request returns). Three kinds, each optionally labelled:

- :class:`Counter` — only goes up (``inc``); named ``..._total`` by convention;
- :class:`Gauge` — ``set`` / ``inc`` / ``dec``, or ``set_function`` to read a value only when
  rendered (so the node's hot path never updates it: height, round, mempool size, peers);
- :class:`Histogram` — fixed upper bounds; renders cumulative ``_bucket{le="..."}`` series
  (ending with ``le="+Inf"``), ``_sum`` and ``_count``.

In a node everything runs on its single asyncio loop, so no locks are taken; the operations are
plain dictionary updates and safe to call from any coroutine or callback of that loop.

Also here: ``AnchoringGauges`` (a supervision node's anchored height and anchor age per
business chain), ``RelayMetrics`` (what ``consortia relay --metrics-port`` serves; locked, as
the relay loop and the HTTP threads share it) and ``MetricsServer`` (a stdlib HTTP server for
``GET /metrics`` in a daemon thread, for processes without the REST API).
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import threading
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from consortia.execution.state import ChainState
from consortia.ledger.types import Receipt
from consortia.modules import anchoring, modules_of_chain

if TYPE_CHECKING:  # the relayer imports the node client; a node need not load it
    from consortia.node.relay import RoundReport

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

LabelValues = tuple[str, ...]


class MetricsError(ValueError):
    """A bad metric name, label set or value."""


def format_value(value: float) -> str:
    """A sample value as the exposition format spells it (``+Inf``, ``-Inf``, ``NaN``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels_text(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    inner = ",".join(f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + inner + "}"


class _Metric(ABC):
    kind = ""

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        if not _NAME.match(name):
            raise MetricsError(f"bad metric name {name!r}")
        for label in labels:
            if not _LABEL.match(label) or label.startswith("__") or label == "le":
                raise MetricsError(f"bad label name {label!r} for {name}")
        if len(set(labels)) != len(labels):
            raise MetricsError(f"duplicate label names for {name}")
        self.name = name
        self.help = help_text
        self.label_names: tuple[str, ...] = tuple(labels)

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if set(labels) != set(self.label_names):
            raise MetricsError(
                f"{self.name} takes labels {list(self.label_names)}, got {sorted(labels)}"
            )
        return tuple(str(labels[n]) for n in self.label_names)

    @abstractmethod
    def samples(self) -> Iterator[tuple[str, str, float]]:
        """(name suffix, label text, value) for every series, per kind."""

    def render(self) -> str:
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        lines += [f"{self.name}{sfx}{lbl} {format_value(v)}" for sfx, lbl, v in self.samples()]
        return "\n".join(lines) + "\n"


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = {} if labels else {(): 0.0}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0 or math.isnan(amount):
            raise MetricsError(f"{self.name}: a counter only goes up (got {amount})")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterator[tuple[str, str, float]]:
        for key, v in sorted(self._values.items()):
            yield "", _labels_text(self.label_names, key), v


class Gauge(_Metric):
    kind = "gauge"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = {} if labels else {(): 0.0}
        self._functions: dict[LabelValues, Callable[[], float]] = {}

    def set(self, value: float, **labels: str) -> None:
        self._values[self._key(labels)] = float(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.inc(-amount, **labels)

    def set_function(self, fn: Callable[[], float], **labels: str) -> None:
        """Read the value from ``fn()`` each time the gauge is rendered."""
        self._functions[self._key(labels)] = fn

    def value(self, **labels: str) -> float:
        key = self._key(labels)
        fn = self._functions.get(key)
        return float(fn()) if fn is not None else self._values.get(key, 0.0)

    def samples(self) -> Iterator[tuple[str, str, float]]:
        keys = sorted(set(self._values) | set(self._functions))
        for key in keys:
            fn = self._functions.get(key)
            try:
                v = float(fn()) if fn is not None else self._values[key]
            except Exception:  # a failing reader must not break the whole exposition
                v = math.nan
            yield "", _labels_text(self.label_names, key), v


DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, labels)
        bounds = [float(b) for b in buckets if not math.isinf(b)]
        if not bounds or any(a >= b for a, b in itertools.pairwise(bounds)):
            raise MetricsError(f"{name}: buckets must be non-empty and strictly increasing")
        self.buckets: tuple[float, ...] = tuple(bounds)
        # per label set: [count in each finite bucket (non-cumulative)..., +Inf-only count], sum
        self._counts: dict[LabelValues, list[int]] = {}
        self._sums: dict[LabelValues, float] = {}
        if not labels:
            self._counts[()] = [0] * (len(self.buckets) + 1)
            self._sums[()] = 0.0

    def observe(self, value: float, **labels: str) -> None:
        if math.isnan(value):
            raise MetricsError(f"{self.name}: cannot observe NaN")
        key = self._key(labels)
        counts = self._counts.setdefault(key, [0] * (len(self.buckets) + 1))
        counts[bisect_left(self.buckets, value)] += 1  # le is inclusive: value == bound fits
        self._sums[key] = self._sums.get(key, 0.0) + value

    def count(self, **labels: str) -> int:
        return sum(self._counts.get(self._key(labels), []))

    def sum(self, **labels: str) -> float:
        return self._sums.get(self._key(labels), 0.0)

    def samples(self) -> Iterator[tuple[str, str, float]]:
        names = (*self.label_names, "le")
        for key, counts in sorted(self._counts.items()):
            running = 0
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                running += n
                yield "_bucket", _labels_text(names, (*key, format_value(bound))), running
            yield "_sum", _labels_text(self.label_names, key), self._sums[key]
            yield "_count", _labels_text(self.label_names, key), running


class Registry:
    """The metrics of one process, rendered in registration order."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def _add(self, metric: _Metric) -> None:
        if metric.name in self._metrics:
            raise MetricsError(f"metric {metric.name} registered twice")
        self._metrics[metric.name] = metric

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Counter:
        c = Counter(name, help_text, labels)
        self._add(c)
        return c

    def gauge(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Gauge:
        g = Gauge(name, help_text, labels)
        self._add(g)
        return g

    def histogram(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        h = Histogram(name, help_text, labels, buckets)
        self._add(h)
        return h

    def get(self, name: str) -> _Metric | None:
        return self._metrics.get(name)

    def render(self) -> str:
        """The whole registry in the Prometheus text exposition format, version 0.0.4."""
        return "".join(m.render() for m in self._metrics.values())


# Seconds; a height normally commits in well under a second on a LAN, a stalled one in rounds of
# the consensus timeouts (seconds to tens of seconds).
COMMIT_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class NodeMetrics(Registry):
    """The metrics a node exposes (every name is prefixed ``consortia_``).

    ``consortia_info{chain_id, node, org, role}`` is always 1 and carries the identity labels,
    so the other series stay label-free (join on ``instance`` in PromQL). The gauges read the
    node's live state when rendered (``Node`` sets their functions); the counters and the
    histogram are updated by the node as events happen.

    ``consortia_commit_latency_seconds`` measures, for each height this node decides through
    consensus, the time from *starting the height* (feeding ``NewHeight`` to the consensus core,
    i.e. after the post-commit ``commit_delay_ms`` pause) to committing its block. Blocks applied
    through block sync are counted in ``consortia_committed_blocks_total{via="sync"}`` but not
    observed in the histogram.
    """

    def __init__(self, *, chain_id: str, node: str, org: str, role: str) -> None:
        super().__init__()
        self.info = self.gauge(
            "consortia_info", "Node identity (always 1).", ("chain_id", "node", "org", "role")
        )
        self.info.set(1, chain_id=chain_id, node=node, org=org, role=role)
        self.height = self.gauge("consortia_height", "Height of the last committed block.")
        self.round = self.gauge("consortia_round", "Current consensus round of the working height.")
        self.mempool_size = self.gauge("consortia_mempool_size", "Transactions in the mempool.")
        self.peers = self.gauge("consortia_peers", "Connected, authenticated peers.")
        self.committed_blocks = self.counter(
            "consortia_committed_blocks_total",
            "Blocks committed by this node, by how they were decided (consensus or sync).",
            ("via",),
        )
        for via in ("consensus", "sync"):
            self.committed_blocks.inc(0, via=via)  # both series exist from the start
        self.committed_txs = self.counter(
            "consortia_committed_txs_total", "Transactions in blocks committed by this node."
        )
        self.tx_submitted = self.counter(
            "consortia_tx_submitted_total", "Transactions submitted on the client port."
        )
        self.tx_rejected = self.counter(
            "consortia_tx_rejected_total",
            "Client-port transactions refused at admission, by error code.",
            ("code",),
        )
        self.commit_latency = self.histogram(
            "consortia_commit_latency_seconds",
            "Seconds from starting a height to committing its block (consensus commits only).",
            buckets=COMMIT_LATENCY_BUCKETS,
        )
        # Supervision nodes only (no series elsewhere): see ``AnchoringGauges``.
        self.anchored_height = self.gauge(
            "consortia_anchored_height",
            "Supervision chain: the last anchored header height of each registered business chain.",
            ("chain",),
        )
        self.anchor_age = self.gauge(
            "consortia_anchor_age_seconds",
            "Supervision chain: this node's last block time minus the time of the last anchored"
            " header of each business chain (block time; its genesis time before any anchor).",
            ("chain",),
        )


class AnchoringGauges:
    """Keeps ``consortia_anchored_height`` and ``consortia_anchor_age_seconds`` of a node.

    Only on a chain that runs the ``anchoring`` module (the supervision tier, fixed at
    genesis); elsewhere ``start`` and ``on_commit`` do nothing. ``start`` finds the registered
    chains with one pass over the state (the tree has no prefix index); from then on a chain's
    record is re-read only when a committed block's events say it was written
    (``anchoring.chains_changed_by``), so a commit costs one gauge update per registered chain.
    Both values come from committed state alone (no clock): the age is the node's last block
    time minus the anchored header's time, never below 0 (the chains' clocks may disagree).
    """

    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics
        self.active = False
        self.chains: dict[str, anchoring.AnchoredChain] = {}

    def start(self, state: ChainState) -> None:
        self.active = anchoring.NAME in modules_of_chain(state.tree.get)
        if not self.active:
            return
        self._read(state, anchoring.registered_chains(state.tree))
        self._publish(state)

    def on_commit(self, state: ChainState, receipts: Sequence[Receipt]) -> None:
        if not self.active:
            return
        self._read(state, anchoring.chains_changed_by(ev for r in receipts for ev in r.events))
        self._publish(state)

    def _read(self, state: ChainState, chain_ids: frozenset[str]) -> None:
        for chain_id in chain_ids:
            chain = anchoring.read_chain(state.tree, chain_id)
            if chain is not None:
                self.chains[chain_id] = chain

    def _publish(self, state: ChainState) -> None:
        for chain_id, chain in self.chains.items():
            self.metrics.anchored_height.set(chain.height, chain=chain_id)
            age_ms = max(0, state.last_time_ms - chain.time_ms)
            self.metrics.anchor_age.set(age_ms / 1000, chain=chain_id)


class RelayMetrics(Registry):
    """What ``consortia relay --metrics-port`` serves: counters over the relayer's rounds and
    the anchoring lag of its last round (``record`` after each one).

    The lag gauges are NaN while not measurable: a node did not answer that round, or (for
    seconds) nothing of the chain is anchored yet. Rendered from the HTTP server's threads
    while the relay loop records, so both hold a lock.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.rounds = self.counter("consortia_relay_rounds_total", "Relay rounds run.")
        self.errors = self.counter(
            "consortia_relay_errors_total", "Errors reported by relay rounds (a failed round: 1)."
        )
        self.lag_blocks = self.gauge(
            "consortia_anchoring_lag_blocks",
            "Business head height minus its last height anchored on the supervision chain.",
            ("chain",),
        )
        self.lag_seconds = self.gauge(
            "consortia_anchoring_lag_seconds",
            "Business head block time minus the last anchored header's time.",
            ("chain",),
        )
        self.anchored_headers = self.counter(
            "consortia_relay_anchored_headers_total",
            "Business headers this relayer anchored on the supervision chain.",
        )
        self.reports_filed = self.counter(
            "consortia_relay_reports_filed_total", "Regulatory reports this relayer filed."
        )
        self.orders_applied = self.counter(
            "consortia_relay_orders_applied_total",
            "Supervision orders this relayer applied on the business chain.",
        )

    def record(self, report: RoundReport) -> None:
        """Count one finished round."""
        chain = report.business_chain
        lag_s = report.anchor_lag_ms / 1000 if report.anchor_lag_ms >= 0 else math.nan
        with self._lock:
            self.rounds.inc()
            self.errors.inc(len(report.errors))
            self.anchored_headers.inc(report.anchored)
            self.reports_filed.inc(report.reports_filed)
            self.orders_applied.inc(report.orders_applied)
            blocks = report.anchor_lag_blocks
            self.lag_blocks.set(blocks if blocks >= 0 else math.nan, chain=chain)
            self.lag_seconds.set(lag_s, chain=chain)

    def record_failure(self) -> None:
        """Count a round that raised instead of reporting (one error)."""
        with self._lock:
            self.rounds.inc()
            self.errors.inc()

    def render(self) -> str:
        with self._lock:
            return super().render()


class _MetricsHandler(BaseHTTPRequestHandler):
    """``GET`` / ``HEAD /metrics`` (any query string ignored); any other path is 404, any other
    method 501, a malformed request 400 (``BaseHTTPRequestHandler``)."""

    registry: Registry  # set on the per-server subclass
    server_version = "consortia-metrics"
    error_message_format = "%(code)d %(message)s\n"  # plain text, not the stdlib's HTML page
    error_content_type = "text/plain; charset=utf-8"
    timeout = 10.0  # a client that stalls mid-request does not hold its thread for ever

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _answer(self, *, with_body: bool) -> None:
        if urlsplit(self.path).path != "/metrics":
            self._send(404, b"not found: this server only serves /metrics\n", with_body)
            return
        try:
            body = self.registry.render().encode()
        except Exception:  # a bug in a metric must not kill the server thread with a trace
            log.exception("rendering the metrics failed")
            self._send(500, b"rendering the metrics failed\n", with_body)
            return
        self._send(200, body, with_body, CONTENT_TYPE)

    def _send(
        self,
        status: int,
        body: bytes,
        with_body: bool,
        content_type: str = "text/plain; charset=utf-8",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("metrics http: %s %s", self.address_string(), format % args)


class MetricsServer:
    """Serves ``registry`` at ``http://host:port/metrics`` from a daemon thread (a thread per
    connection), until ``close``. Port 0 picks a free port (``port`` says which). Binding
    raises ``OSError`` (e.g. the port is taken) before any thread starts."""

    def __init__(self, registry: Registry, host: str = "127.0.0.1", port: int = 0) -> None:
        handler = type("MetricsHandler", (_MetricsHandler,), {"registry": registry})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self.host = host
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="metrics-http", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
