"""A small, dependency-free Prometheus metrics registry (text exposition format 0.0.4).

The node keeps one :class:`Registry`; ``render()`` produces what ``GET /metrics`` serves (and
what the client port's ``metrics`` request returns). Three kinds, each optionally labelled:

- :class:`Counter` — only goes up (``inc``); named ``..._total`` by convention;
- :class:`Gauge` — ``set`` / ``inc`` / ``dec``, or ``set_function`` to read a value only when
  rendered (so the node's hot path never updates it: height, round, mempool size, peers);
- :class:`Histogram` — fixed upper bounds; renders cumulative ``_bucket{le="..."}`` series
  (ending with ``le="+Inf"``), ``_sum`` and ``_count``.

Everything runs on the node's single asyncio loop, so no locks are taken; the operations are
plain dictionary updates and safe to call from any coroutine or callback of that loop.
"""

from __future__ import annotations

import itertools
import math
import re
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

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
