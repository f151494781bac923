"""Prometheus metrics: the registry's exposition text (checked by a strict parser written here),
the API port layout, and a real node whose counters move as transactions commit."""

from __future__ import annotations

import math
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from consortia.crypto import decrypt_key_file, get_suite
from consortia.ledger.types import sign_transaction
from consortia.node.local import NodeError
from consortia.node.metrics import MetricsError, MetricsServer, NodeMetrics, Registry, RelayMetrics
from consortia.node.network_home import API_PORT_OFFSET, CONFIG_FILE, NodeConfig, init_network
from consortia.node.relay import RoundReport
from consortia.node.supervisor import network_status
from consortia.node.topology import (
    RELAY_METRICS_OFFSET,
    Topology,
    init_two_tier,
    relay_metrics_port,
    relay_metrics_url,
)
from tests.netkit import PASSWORD, LocalNet

# ---------------------------------------------------------------------------------------------
# A strict parser for the text exposition format 0.0.4


_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
_SAMPLE = re.compile(rf"^({_NAME})(\{{[^}}]*\}})? (\S+)( -?[0-9]+)?$")
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


@dataclass
class Family:
    name: str
    type: str = "untyped"
    help: str | None = None
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


def _value(text: str) -> float:
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        raise AssertionError(f"bad sample value {text!r}")
    return float(text)


def _labels(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    inner = text[1:-1]
    out: dict[str, str] = {}
    pos = 0
    while pos < len(inner):
        m = _LABEL_PAIR.match(inner, pos)
        assert m, f"bad label set {text!r}"
        assert m.group(1) not in out, f"duplicate label in {text!r}"
        out[m.group(1)] = m.group(2).replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        pos = m.end()
        if pos < len(inner):
            assert inner[pos] == ",", f"bad label set {text!r}"
            pos += 1
    return out


def _family_of(sample: str, families: dict[str, Family]) -> Family:
    if sample in families:
        return families[sample]
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample.removesuffix(suffix)
        if base != sample and base in families and families[base].type == "histogram":
            return families[base]
    raise AssertionError(f"sample {sample} has no # TYPE line before it")


def parse_exposition(text: str) -> dict[str, Family]:
    """Parse strictly: metadata before samples, one family's samples together, no duplicate
    series, histograms well-formed (cumulative buckets ending in +Inf == _count)."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families: dict[str, Family] = {}
    current: Family | None = None
    closed: set[str] = set()
    series: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for line in text[:-1].split("\n"):
        assert line, "no blank lines"
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                assert re.fullmatch(_NAME, name), line
                assert name not in closed, f"{name} metadata after its samples ended"
                fam = families.setdefault(name, Family(name))
                if current is not None and current.name != name:
                    closed.add(current.name)
                current = fam
                if parts[1] == "HELP":
                    assert fam.help is None, f"second HELP for {name}"
                    fam.help = parts[3] if len(parts) == 4 else ""
                else:
                    assert len(parts) == 4 and parts[3] in _TYPES, line
                    assert not fam.samples, f"TYPE after samples for {name}"
                    fam.type = parts[3]
            continue
        m = _SAMPLE.match(line)
        assert m, f"bad sample line {line!r}"
        fam = _family_of(m.group(1), families)
        assert fam is current and fam.name not in closed, f"{fam.name}'s samples are split up"
        labels = _labels(m.group(2))
        key = (m.group(1), tuple(sorted(labels.items())))
        assert key not in series, f"duplicate series {line!r}"
        series.add(key)
        value = _value(m.group(3))
        if fam.type == "counter":
            assert value >= 0, line
        fam.samples.append((m.group(1), labels, value))
    for fam in families.values():
        if fam.type == "histogram":
            _check_histogram(fam)
    return families


def _check_histogram(fam: Family) -> None:
    groups: dict[tuple[tuple[str, str], ...], list[tuple[str, dict[str, str], float]]] = {}
    for sample in fam.samples:
        key = tuple(sorted((k, v) for k, v in sample[1].items() if k != "le"))
        groups.setdefault(key, []).append(sample)
    for samples in groups.values():
        buckets = [(_value(lbl["le"]), v) for n, lbl, v in samples if n == f"{fam.name}_bucket"]
        counts = [v for n, _, v in samples if n == f"{fam.name}_count"]
        sums = [v for n, _, v in samples if n == f"{fam.name}_sum"]
        assert buckets and len(counts) == 1 and len(sums) == 1, fam.name
        bounds = [b for b, _ in buckets]
        assert bounds == sorted(bounds) and bounds[-1] == math.inf, fam.name
        values = [v for _, v in buckets]
        assert values == sorted(values), f"{fam.name} buckets are not cumulative"
        assert values[-1] == counts[0], f"{fam.name}: +Inf bucket != _count"


def value_of(families: dict[str, Family], sample: str, **labels: str) -> float:
    for fam in families.values():
        for name, lbl, v in fam.samples:
            if name == sample and lbl == labels:
                return v
    raise KeyError(f"{sample}{labels}")


# ---------------------------------------------------------------------------------------------
# The registry


def test_registry_renders_strict_exposition_text() -> None:
    reg = Registry()
    c = reg.counter("app_requests_total", "Requests\nserved (by \\ path).", ("path",))
    c.inc(path="/a")
    c.inc(2, path='/b"x"\n')
    g = reg.gauge("app_temperature", "A gauge.")
    g.set(-1.5)
    f = reg.gauge("app_live", "Read when rendered.")
    f.set_function(lambda: 7)
    h = reg.histogram("app_latency_seconds", "A histogram.", buckets=(0.1, 1.0, 10.0))
    for v in (0.05, 0.1, 0.5, 3.0, 100.0):
        h.observe(v)
    text = reg.render()
    fams = parse_exposition(text)
    assert fams["app_requests_total"].type == "counter"
    assert fams["app_requests_total"].help == "Requests\\nserved (by \\\\ path)."
    assert value_of(fams, "app_requests_total", path="/a") == 1
    assert value_of(fams, "app_requests_total", path='/b"x"\n') == 2
    assert value_of(fams, "app_temperature") == -1.5
    assert value_of(fams, "app_live") == 7
    assert value_of(fams, "app_latency_seconds_bucket", le="0.1") == 2  # le is inclusive
    assert value_of(fams, "app_latency_seconds_bucket", le="1") == 3
    assert value_of(fams, "app_latency_seconds_bucket", le="10") == 4
    assert value_of(fams, "app_latency_seconds_bucket", le="+Inf") == 5
    assert value_of(fams, "app_latency_seconds_count") == 5
    assert value_of(fams, "app_latency_seconds_sum") == pytest.approx(103.65)
    assert 'app_latency_seconds_bucket{le="+Inf"} 5\n' in text
    assert "# TYPE app_latency_seconds histogram\n" in text


def test_registry_refuses_misuse() -> None:
    reg = Registry()
    c = reg.counter("x_total", "x", ("code",))
    with pytest.raises(MetricsError):
        c.inc(-1, code="a")
    with pytest.raises(MetricsError):
        c.inc()  # missing label
    with pytest.raises(MetricsError):
        reg.counter("x_total", "again")
    with pytest.raises(MetricsError):
        reg.gauge("bad-name", "x")
    with pytest.raises(MetricsError):
        reg.histogram("h", "x", labels=("le",))
    with pytest.raises(MetricsError):
        reg.histogram("h2", "x", buckets=(1.0, 0.5))


def test_labelled_histogram_and_failing_gauge_reader() -> None:
    reg = Registry()
    h = reg.histogram("op_seconds", "per op", ("op",), buckets=(1.0,))
    h.observe(0.5, op="read")
    h.observe(2.0, op="write")
    g = reg.gauge("broken", "raises when read")

    def boom() -> float:
        raise RuntimeError("gone")

    g.set_function(boom)
    fams = parse_exposition(reg.render())
    assert value_of(fams, "op_seconds_bucket", op="read", le="1") == 1
    assert value_of(fams, "op_seconds_bucket", op="write", le="1") == 0
    assert value_of(fams, "op_seconds_count", op="write") == 1
    assert math.isnan(value_of(fams, "broken"))


def test_node_metrics_names() -> None:
    m = NodeMetrics(chain_id="c-1", node="validator-0", org="exchange", role="validator")
    fams = parse_exposition(m.render())
    assert value_of(fams, "consortia_info", chain_id="c-1", node="validator-0", org="exchange",
                    role="validator") == 1  # fmt: skip
    for name, kind in [
        ("consortia_height", "gauge"),
        ("consortia_round", "gauge"),
        ("consortia_mempool_size", "gauge"),
        ("consortia_peers", "gauge"),
        ("consortia_committed_blocks_total", "counter"),
        ("consortia_committed_txs_total", "counter"),
        ("consortia_tx_submitted_total", "counter"),
        ("consortia_tx_rejected_total", "counter"),
        ("consortia_commit_latency_seconds", "histogram"),
    ]:
        assert fams[name].type == kind, name
    assert value_of(fams, "consortia_committed_blocks_total", via="sync") == 0


def test_anchoring_and_relay_metric_names() -> None:
    node = parse_exposition(NodeMetrics(chain_id="s", node="n", org="o", role="observer").render())
    for name in ("consortia_anchored_height", "consortia_anchor_age_seconds"):
        assert node[name].type == "gauge" and node[name].samples == []  # until a node sets them
    relay = parse_exposition(RelayMetrics().render())
    for name, kind in [
        ("consortia_relay_rounds_total", "counter"),
        ("consortia_relay_errors_total", "counter"),
        ("consortia_anchoring_lag_blocks", "gauge"),
        ("consortia_anchoring_lag_seconds", "gauge"),
        ("consortia_relay_anchored_headers_total", "counter"),
        ("consortia_relay_reports_filed_total", "counter"),
        ("consortia_relay_orders_applied_total", "counter"),
    ]:
        assert relay[name].type == kind, name
    assert value_of(relay, "consortia_relay_rounds_total") == 0


def _round(n: int, **fields: object) -> RoundReport:
    base: dict[str, object] = {
        "round": n,
        "business_chain": "business-1",
        "supervision_chain": "supervision",
        "business_height": 10,
        "anchored_height": 7,
        "anchor_lag_blocks": 3,
        "anchor_lag_ms": 2500,
        "supervision_height": 5,
        "followed_height": 5,
        "anchored": 0,
        "followed": 0,
        "orders_applied": 0,
        "orders_applied_total": 0,
        "orders_pending": 0,
    }
    return RoundReport(**{**base, **fields})  # type: ignore[arg-type]


def test_relay_metrics_record_rounds() -> None:
    m = RelayMetrics()
    m.record(_round(1, anchored=7, reports_filed=2, orders_applied=1, errors=("x", "y")))
    m.record(_round(2, anchored=3, anchor_lag_blocks=0, anchor_lag_ms=0))
    m.record_failure()
    fams = parse_exposition(m.render())
    assert value_of(fams, "consortia_relay_rounds_total") == 3
    assert value_of(fams, "consortia_relay_errors_total") == 3
    assert value_of(fams, "consortia_relay_anchored_headers_total") == 10
    assert value_of(fams, "consortia_relay_reports_filed_total") == 2
    assert value_of(fams, "consortia_relay_orders_applied_total") == 1
    assert value_of(fams, "consortia_anchoring_lag_blocks", chain="business-1") == 0
    assert value_of(fams, "consortia_anchoring_lag_seconds", chain="business-1") == 0
    # Not measurable (a node did not answer; nothing anchored yet): NaN, not a stale value.
    m.record(_round(3, anchor_lag_blocks=-1, anchor_lag_ms=-1))
    fams = parse_exposition(m.render())
    assert math.isnan(value_of(fams, "consortia_anchoring_lag_blocks", chain="business-1"))
    assert math.isnan(value_of(fams, "consortia_anchoring_lag_seconds", chain="business-1"))


def _http(port: int, raw: bytes) -> bytes:
    """Send ``raw`` as is and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(raw)
        conn.shutdown(socket.SHUT_WR)  # and nothing more
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_metrics_server_serves_404s_and_survives_garbage() -> None:
    reg = Registry()
    hits = reg.counter("demo_hits_total", "Hits.")
    with MetricsServer(reg, "127.0.0.1", 0) as server:
        assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(server.url + "?x=1", timeout=10) as reply:
            assert reply.status == 200
            assert reply.headers["content-type"] == ("text/plain; version=0.0.4; charset=utf-8")
            assert value_of(parse_exposition(reply.read().decode()), "demo_hits_total") == 0
        for path in ("/", "/metricsx", "/metrics/", "/api/metrics"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=10)
            assert err.value.code == 404, path
        assert _http(server.port, b"POST /metrics HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 501")
        head = _http(server.port, b"HEAD /metrics HTTP/1.0\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200") and head.endswith(b"\r\n\r\n")
        # Garbage of every kind gets an error status or a closed connection, never a dead server.
        for junk in (
            b"\x00\xff\xfe garbage\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET /metrics HTTP/9.9\r\n\r\n",
            b"GET /" + b"a" * 70_000 + b" HTTP/1.0\r\n\r\n",
            b"GET /metrics HTTP/1.0\r\n" + b"X-A: b\r\n" * 200 + b"\r\n",
            b"",
        ):
            answer = _http(server.port, junk)
            # (a request line without a version is answered HTTP/0.9 style: no status line)
            assert answer == b"" or re.match(rb"(HTTP/1\.[01] )?[45]\d\d ", answer), answer[:80]
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
            idle.sendall(b"GET /met")  # a client stalling mid-request holds only its own thread
            hits.inc(5)
            with urllib.request.urlopen(server.url, timeout=10) as reply:
                assert value_of(parse_exposition(reply.read().decode()), "demo_hits_total") == 5
    with pytest.raises(OSError):  # closed: nothing listens any more
        urllib.request.urlopen(server.url, timeout=5)


def test_metrics_server_port_taken() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        with pytest.raises(OSError):
            MetricsServer(Registry(), "127.0.0.1", blocker.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# Configuration: API ports


def test_config_without_api_port_loads(tmp_path: Path) -> None:
    node = tmp_path / "n"
    node.mkdir()
    text = """
node_name = "validator-0"
org_id = "exchange"
role = "validator"
host = "127.0.0.1"
p2p_port = 26600
client_port = 26601
[[peers]]
name = "validator-1"
host = "127.0.0.1"
port = 26602
"""
    (node / CONFIG_FILE).write_text(text)
    assert NodeConfig.load(node).api_port == 0
    (node / CONFIG_FILE).write_text('api_port = "80"\n' + text)
    with pytest.raises(NodeError, match="api_port"):
        NodeConfig.load(node)


def _configs(home: Path) -> Iterator[NodeConfig]:
    for path in sorted(home.rglob(CONFIG_FILE)):
        yield NodeConfig.load(path.parent)


def test_two_tier_ports_never_collide(tmp_path: Path) -> None:
    base = 30_000
    init_two_tier(
        tmp_path / "tt",
        business_chains=9,
        validators=4,
        observers=1,
        base_port=base,
        password=PASSWORD,
        scrypt_n=1 << 10,
    )
    configs = list(_configs(tmp_path / "tt"))
    assert len(configs) == 10 * 5
    ports = [p for c in configs for p in (c.p2p_port, c.client_port, c.api_port)]
    assert all(ports) and len(set(ports)) == len(ports)
    assert min(c.api_port for c in configs) == base + API_PORT_OFFSET


def test_relay_metrics_ports_stay_off_the_node_ports(tmp_path: Path) -> None:
    base = 31_000
    topology = init_two_tier(
        tmp_path / "tt",
        business_chains=3,
        validators=2,
        observers=1,
        base_port=base,
        password=PASSWORD,
        scrypt_n=1 << 10,
    )
    node_ports = {
        p for c in _configs(topology.home) for p in (c.p2p_port, c.client_port, c.api_port)
    }
    relay_ports = [relay_metrics_port(topology, b) for b in topology.business]
    assert relay_ports == [base + RELAY_METRICS_OFFSET + k for k in (1, 2, 3)]
    assert not set(relay_ports) & node_ports
    assert relay_metrics_url(topology, "business-2") == (
        f"http://127.0.0.1:{base + RELAY_METRICS_OFFSET + 2}/metrics"
    )
    # A custom API offset that lands on those ports: no metrics server rather than a clash.
    clash = init_two_tier(
        tmp_path / "clash",
        business_chains=1,
        validators=2,
        observers=0,
        base_port=base,
        password=PASSWORD,
        scrypt_n=1 << 10,
        api_port_offset=RELAY_METRICS_OFFSET,
    )
    assert relay_metrics_port(clash, "business-1") == 0
    assert relay_metrics_url(Topology.load(clash.home), "business-1") is None


def test_api_ports_off_and_out_of_range(tmp_path: Path) -> None:
    init_network(
        tmp_path / "off", validators=1, password=PASSWORD, scrypt_n=1 << 10, api_port_offset=None
    )
    assert [c.api_port for c in _configs(tmp_path / "off")] == [0]
    with pytest.raises(NodeError, match="API ports"):
        init_network(tmp_path / "high", validators=4, base_port=65_000, password=PASSWORD)


# ---------------------------------------------------------------------------------------------
# A real node


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNet]:
    network = LocalNet(tmp_path_factory.mktemp("metrics") / "net", validators=1, api=True)
    network.start_all()
    try:
        network.wait_for(network.names, 1)
        yield network
    finally:
        network.stop_all()


def _metrics(net: LocalNet) -> dict[str, Family]:
    reply = net.request("validator-0", "metrics", {}, timeout_s=10)
    assert reply["ok"] is True
    return parse_exposition(reply["text"])


def test_node_counters_move_as_transactions_commit(net: LocalNet) -> None:
    before = _metrics(net)
    assert value_of(before, "consortia_info", chain_id="consortia-local", node="validator-0",
                    org="exchange", role="validator") == 1  # fmt: skip
    suite = get_suite("intl")
    admin = decrypt_key_file((net.home / "accounts" / "exchange-admin.key").read_bytes(), PASSWORD)
    txs = [
        sign_transaction(
            suite,
            admin,
            chain_id="consortia-local",
            nonce=i,
            module="registry",
            method="register_org",
            args={"org_id": f"fund-{i}", "name": f"Fund {i}", "kind": "fund_manager"},
        ).encode()
        for i in range(3)
    ]
    reply = net.request("validator-0", "tx.submit_many", {"txs": txs, "wait": True})
    assert reply["ok"] is True
    assert [r["ok"] for r in reply["results"]] == [True, True, True], reply
    junk = net.request("validator-0", "tx.submit", {"tx": b"\x00garbage"})
    assert junk["ok"] is False

    after = _metrics(net)
    assert value_of(after, "consortia_committed_txs_total") >= (
        value_of(before, "consortia_committed_txs_total") + 3
    )
    assert value_of(after, "consortia_height") > value_of(before, "consortia_height")
    assert value_of(after, "consortia_committed_blocks_total", via="consensus") > value_of(
        before, "consortia_committed_blocks_total", via="consensus"
    )
    assert value_of(after, "consortia_tx_submitted_total") == (
        value_of(before, "consortia_tx_submitted_total") + 4
    )
    assert value_of(after, "consortia_tx_rejected_total", code="MALFORMED_TRANSACTION") == 1
    assert value_of(after, "consortia_commit_latency_seconds_count") > value_of(
        before, "consortia_commit_latency_seconds_count"
    )
    assert value_of(after, "consortia_peers") == 0  # a single validator has no peers
    assert value_of(after, "consortia_round") >= 0


def test_status_lists_the_api_url(net: LocalNet) -> None:
    cfg = net.configs["validator-0"]
    assert cfg.api_port != 0
    url = f"http://127.0.0.1:{cfg.api_port}"
    assert net.request("validator-0", "status", {})["api"] == url
    [st] = network_status(net.home)
    assert st["ok"] is True and st["api"] == url


def test_rest_api_serves_metrics(net: LocalNet) -> None:
    cfg = net.configs["validator-0"]
    url = f"http://127.0.0.1:{cfg.api_port}/metrics"
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                status, content_type = reply.status, reply.headers["content-type"]
                text = reply.read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    fams = parse_exposition(text)
    assert value_of(fams, "consortia_height") >= 1


def test_node_runs_on_when_its_api_port_is_taken(tmp_path: Path) -> None:
    network = LocalNet(tmp_path / "net", validators=1, api=True)
    cfg = network.configs["validator-0"]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", cfg.api_port))
        blocker.listen()
        network.start_all()
        try:
            network.wait_for(network.names, 2)
            deadline = time.monotonic() + 10
            log = network.home / "validator-0" / "node.log"
            while "REST API" not in log.read_text() or "could not" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            height = network.heights()["validator-0"]
            network.wait_for(network.names, height + 1)  # still committing
        finally:
            network.stop_all()
