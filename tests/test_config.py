"""config.toml: what `consortia init` writes loads back unchanged; every kind of bad file is
refused with a message naming the file, the key and what is wrong; every option is documented."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from consortia.api.app import ApiSettings
from consortia.node.local import NodeError
from consortia.node.network_home import (
    API_LIMIT_OPTIONS,
    CONFIG_FILE,
    LEGACY_CONFIG_FILE,
    LOG_OPTIONS,
    NODE_OPTIONS,
    PEER_OPTIONS,
    TOP_OPTIONS,
    ApiLimits,
    LogSettings,
    NodeConfig,
    NodeSettings,
    PeerConfig,
    init_network,
)
from consortia.node.service import NodeParams

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

FULL = NodeConfig(
    node_name="observer-0",
    org_id="csrc",
    role="observer",
    host="127.0.0.1",
    p2p_port=26608,
    client_port=26609,
    peers=(PeerConfig("validator-0", "10.0.0.1", 26600), PeerConfig("validator-1", "::1", 26602)),
    api_port=27604,
    lookthrough_index="look through/index.sqlite",
    supervision_api="http://127.0.0.1:27700",
    log=LogSettings(format="json", level="DEBUG"),
    node=NodeSettings(
        commit_delay_ms=0,
        max_block_txs=5,
        max_block_bytes=2048,
        tick_ms=250,
        sync_batch=4,
        max_sync_bytes=4096,
        max_client_connections=8,
        wait_timeout_s=1.5,
    ),
    api_limits=ApiLimits(
        max_body_bytes=4096,
        rate_per_s=2.5,
        burst=3,
        max_clients_tracked=7,
        auth_window_ms=1000,
        max_replay_entries=9,
    ),
)


def test_round_trip_of_every_field(tmp_path: Path) -> None:
    FULL.save(tmp_path)
    assert NodeConfig.load(tmp_path) == FULL
    odd = dataclasses.replace(FULL, lookthrough_index='q"uo\\te\ttab\x7fdel\x01ctl é 漢 🙂')
    odd.save(tmp_path)
    assert NodeConfig.load(tmp_path) == odd


def test_generated_file_comments_every_option(tmp_path: Path) -> None:
    text = FULL.to_toml()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\w+) = ", line)
        if m and lines[i - 1] != "[[peers]]" and not lines[i - 1].startswith(("name", "host")):
            assert lines[i - 1].startswith("# "), f"no comment above {m.group(1)}"
    parsed = tomllib.loads(text)
    assert set(parsed) == {o.key for o in TOP_OPTIONS} | {"log", "api_limits", "node", "peers"}


def test_init_writes_toml_configs_that_load(tmp_path: Path) -> None:
    init_network(tmp_path / "net", validators=2, observers=1, scrypt_n=1 << 10)
    for name in ("validator-0", "validator-1", "observer-0"):
        node = tmp_path / "net" / name
        assert (node / CONFIG_FILE).name == "config.toml"
        assert not (node / LEGACY_CONFIG_FILE).exists()
        config = NodeConfig.load(node)
        assert config.node_name == name
        assert config.log == LogSettings() and config.api_limits == ApiLimits()
        assert config.node == NodeSettings()
        assert len(config.peers) == 2


def test_api_limit_defaults_are_the_api_defaults() -> None:
    settings = ApiSettings()
    for field in dataclasses.fields(ApiLimits):
        assert getattr(ApiLimits(), field.name) == getattr(settings, field.name), field.name


def test_node_settings_are_the_node_params() -> None:
    """Same names and defaults: `consortia node start` builds NodeParams from [node]."""
    assert dataclasses.asdict(NodeSettings()) == dataclasses.asdict(NodeParams())


def test_options_cover_every_field() -> None:
    """The option tables drive validation and the generated file: they must name every field."""
    tables = {"peers", "log", "api_limits", "node"}
    expected = {f.name for f in dataclasses.fields(NodeConfig)} - tables
    assert [o.key for o in TOP_OPTIONS] == [
        f.name for f in dataclasses.fields(NodeConfig) if f.name in expected
    ]
    assert {o.key for o in LOG_OPTIONS} == {f.name for f in dataclasses.fields(LogSettings)}
    assert {o.key for o in API_LIMIT_OPTIONS} == {f.name for f in dataclasses.fields(ApiLimits)}
    assert {o.key for o in PEER_OPTIONS} == {f.name for f in dataclasses.fields(PeerConfig)}
    assert {o.key for o in NODE_OPTIONS} == {f.name for f in dataclasses.fields(NodeSettings)}


def test_every_option_is_documented() -> None:
    """Fails when a configuration field is missing from docs/configuration.md's tables."""
    docs = DOCS.read_text()
    sections = {
        "## Top-level keys": NodeConfig,
        "## `[log]`": LogSettings,
        "## `[api_limits]`": ApiLimits,
        "## `[node]`": NodeSettings,
        "## `[[peers]]`": PeerConfig,
    }
    for heading, cls in sections.items():
        assert heading in docs, heading
        section = docs.split(heading, 1)[1].split("\n## ", 1)[0]
        rows = set(re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE))
        fields = {f.name for f in dataclasses.fields(cls)} - {"peers", "log", "api_limits", "node"}
        assert fields <= rows, f"{heading}: undocumented {sorted(fields - rows)}"
        assert rows <= fields, f"{heading}: documented but not options {sorted(rows - fields)}"


GOOD = FULL.to_toml()


def _top(text: str) -> str:
    """``text`` placed before the first table, where top-level keys go."""
    return text + "\n" + GOOD


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Syntax
        ("node_name = \n", r"is not valid TOML"),
        # Unknown keys, at every level
        (_top("api_prot = 80"), r"unknown key 'api_prot'"),
        (GOOD.replace("[log]\n", "[log]\ncolour = true\n"), r"unknown key 'log\.colour'"),
        (
            GOOD.replace("[api_limits]\n", "[api_limits]\nmax_body = 1\n"),
            r"unknown key 'api_limits\.max_body'",
        ),
        (GOOD + "weight = 1\n", r"unknown key 'peers\[1\]\.weight'"),
        # Wrong types
        (
            GOOD.replace("api_port = 27604", 'api_port = "80"'),
            r"'api_port' must be an integer, not a string",
        ),
        (
            GOOD.replace("api_port = 27604", "api_port = true"),
            r"'api_port' must be an integer, not a boolean",
        ),
        (
            GOOD.replace("p2p_port = 26608", "p2p_port = 26608.0"),
            r"'p2p_port' must be an integer, not a number",
        ),
        (GOOD.replace('role = "observer"', "role = 1"), r"'role' must be a string, not an integer"),
        (
            GOOD.replace("rate_per_s = 2.5", 'rate_per_s = "fast"'),
            r"'api_limits\.rate_per_s' must be a number",
        ),
        (
            GOOD.replace('format = "json"', "format = []"),
            r"'log\.format' must be a string, not an array",
        ),
        (
            "peers = 3\n" + dataclasses.replace(FULL, peers=()).to_toml(),
            r"'peers' must be an array of tables",
        ),
        (GOOD.replace("[log]\n", "[log.x]\n"), r"unknown key 'log\.x'"),
        # Out-of-range values
        (
            GOOD.replace('role = "observer"', 'role = "leader"'),
            r"'role' must be one of 'validator', 'observer'",
        ),
        (
            GOOD.replace("p2p_port = 26608", "p2p_port = 70000"),
            r"'p2p_port' must be between 1 and 65535",
        ),
        (
            GOOD.replace("client_port = 26609", "client_port = 0"),
            r"'client_port' must be between 1 and 65535",
        ),
        (
            GOOD.replace("api_port = 27604", "api_port = -1"),
            r"'api_port' must be between 0 and 65535",
        ),
        (
            GOOD.replace('node_name = "observer-0"', 'node_name = ""'),
            r"'node_name' must be 1\.\.64",
        ),
        (GOOD.replace('org_id = "csrc"', 'org_id = "a b"'), r"'org_id' must be 1\.\.64"),
        (GOOD.replace('host = "127.0.0.1"', 'host = ""', 1), r"'host' must be a host name"),
        (
            GOOD.replace(
                'supervision_api = "http://127.0.0.1:27700"', 'supervision_api = "ftp://x"'
            ),
            r"'supervision_api' must be \"\" \(none\) or an http",
        ),
        (
            GOOD.replace('level = "DEBUG"', 'level = "debug"'),
            r"'log\.level' must be one of 'DEBUG'",
        ),
        (
            GOOD.replace('format = "json"', 'format = "xml"'),
            r"'log\.format' must be one of 'text', 'json'",
        ),
        (
            GOOD.replace("max_body_bytes = 4096", "max_body_bytes = 10"),
            r"'api_limits\.max_body_bytes' must be between 1024",
        ),
        (
            GOOD.replace("rate_per_s = 2.5", "rate_per_s = 0"),
            r"'api_limits\.rate_per_s' must be a positive number",
        ),
        (
            GOOD.replace("rate_per_s = 2.5", "rate_per_s = inf"),
            r"'api_limits\.rate_per_s' must be a positive number",
        ),
        (GOOD.replace("burst = 3", "burst = 0"), r"'api_limits\.burst' must be at least 1"),
        (GOOD.replace("tick_ms = 250", "tick_ms = 1"), r"'node\.tick_ms' must be between 50"),
        (
            GOOD.replace("wait_timeout_s = 1.5", 'wait_timeout_s = "1"'),
            r"'node\.wait_timeout_s' must be a number, not a string",
        ),
        (
            GOOD.replace("max_block_bytes = 2048", "max_block_bytes = 5000000"),
            r"'node\.max_block_bytes' must be between 1024 and 3145728",
        ),
        (GOOD.replace("[node]\n", "[node]\nfast = 1\n"), r"unknown key 'node\.fast'"),
        (
            GOOD.replace("auth_window_ms = 1000", "auth_window_ms = 5"),
            r"'api_limits\.auth_window_ms' must be at least 1000",
        ),
        (
            GOOD.replace("port = 26600\n", "port = 0\n"),
            r"'peers\[0\]\.port' must be between 1 and 65535",
        ),
        (
            GOOD.replace(
                'lookthrough_index = "look through/index.sqlite"', 'lookthrough_index = "a\\u0000b"'
            ),
            r"'lookthrough_index' must be a path",
        ),
        # Missing keys and duplicates
        (GOOD.replace('role = "observer"\n', ""), r"missing key 'role'"),
        (GOOD.replace('name = "validator-1"\n', ""), r"missing key 'peers\[1\]\.name'"),
        (GOOD.replace('"validator-1"', '"validator-0"'), r"peer 'validator-0' is listed twice"),
        (
            GOOD.replace('"validator-1"', '"observer-0"'),
            r"peer 'observer-0' is listed twice or is this node",
        ),
    ],
)
def test_bad_config_is_refused_naming_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    (tmp_path / CONFIG_FILE).write_text(text)
    with pytest.raises(NodeError, match=expected) as info:
        NodeConfig.load(tmp_path)
    assert str(tmp_path / CONFIG_FILE) in str(info.value)


def test_wrong_type_message_shows_the_value(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text(GOOD.replace("api_port = 27604", 'api_port = "80"'))
    with pytest.raises(NodeError) as info:
        NodeConfig.load(tmp_path)
    assert str(info.value).endswith("key 'api_port' must be an integer, not a string ('80')")


def test_integer_rate_is_accepted_as_a_number(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text(GOOD.replace("rate_per_s = 2.5", "rate_per_s = 7"))
    assert NodeConfig.load(tmp_path).api_limits.rate_per_s == 7.0


def test_minimal_file_gets_the_defaults(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text(
        'node_name = "n"\norg_id = "o"\nrole = "validator"\nhost = "h"\n'
        "p2p_port = 1\nclient_port = 2\n"
    )
    config = NodeConfig.load(tmp_path)
    assert config == NodeConfig("n", "o", "validator", "h", 1, 2, ())


def test_missing_file_and_legacy_json_are_explained(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match=r"not found: is .* a node home from `consortia init`"):
        NodeConfig.load(tmp_path)
    (tmp_path / LEGACY_CONFIG_FILE).write_text("{}")
    with pytest.raises(
        NodeError, match=r"config\.json is the old JSON configuration.*config\.toml"
    ):
        NodeConfig.load(tmp_path)


def test_undecodable_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_bytes(b"\xff\xfe\x00")
    with pytest.raises(NodeError, match="cannot be read"):
        NodeConfig.load(tmp_path)


def test_the_documented_example_loads(tmp_path: Path) -> None:
    example = DOCS.read_text().split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / CONFIG_FILE).write_text(example)
    config = NodeConfig.load(tmp_path)
    assert config.log.format == "json" and config.node == NodeSettings()
