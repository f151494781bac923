"""The web UI (explorer, investor view, regulator dashboard) as served by the API over a
LocalChain: the files, their content types, redirects, 404 problems, no external URLs, no HTML
sinks, module imports only of served files, and the JavaScript's /v1 paths checked against the
app's OpenAPI so the UI can't drift from the API. (tests/test_browser.py runs it in Chromium.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from consortia.api import ApiSettings, LocalBackend, create_app
from consortia.api.webui import WEB_FILES, web_file
from consortia.node.home import init_home
from consortia.node.local import VALIDATORS_DIR, LocalChain, load_key_dir

PASSWORD = "test-password"
OPEN = ApiSettings(rate_per_s=1e6, burst=1_000_000)
PROBLEM = "application/problem+json"
WEB = Path(__file__).resolve().parents[1] / "src" / "consortia" / "api" / "web"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    home: Path = tmp_path_factory.mktemp("webui-home")
    init_home(home, password=PASSWORD, scrypt_n=1 << 10)
    vkeys = load_key_dir(home / VALIDATORS_DIR, PASSWORD)
    with (
        LocalChain(home, vkeys) as chain,
        TestClient(create_app(LocalBackend(chain), OPEN)) as c,
    ):
        yield c


def test_index_served_as_html(client: TestClient) -> None:
    resp = client.get("/ui/")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in resp.headers["content-security-policy"]
    assert '<script type="module" src="app.js">' in resp.text
    assert 'href="style.css"' in resp.text


JS_FILES = sorted(name for name in WEB_FILES if name.endswith(".js"))
# The one URL the scripts may contain: SVG's XML namespace (an identifier, never fetched).
SVG_NAMESPACE = '"http://www.w3.org/2000/svg"'


@pytest.mark.parametrize(
    ("name", "content_type"),
    [(name, "text/javascript; charset=utf-8") for name in JS_FILES]
    + [("style.css", "text/css; charset=utf-8")],
)
def test_assets_served(client: TestClient, name: str, content_type: str) -> None:
    resp = client.get(f"/ui/{name}")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == content_type
    assert resp.content == (WEB / name).read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/ui/nope.js",
        "/ui/index.htm",
        "/ui/../pyproject.toml",
        "/ui/%2e%2e/webui.py",
        "/ui/web/app.js",
        "/ui/a/b/c",
    ],
)
def test_unknown_ui_paths_are_404_problems(client: TestClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == PROBLEM
    body = resp.json()
    assert body["code"] == "NOT_FOUND"
    assert body["status"] == 404


@pytest.mark.parametrize("path", ["/", "/ui"])
def test_redirects_to_ui(client: TestClient, path: str) -> None:
    resp = client.get(path, follow_redirects=False)
    assert resp.status_code in (302, 307)
    assert resp.headers["location"] == "/ui/"
    assert client.get(path).headers["content-type"].startswith("text/html")


def test_ui_routes_stay_out_of_openapi(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not any(p == "/" or p.startswith("/ui") for p in paths)


def test_package_data_matches_source_tree() -> None:
    assert sorted(p.name for p in WEB.iterdir()) == sorted(WEB_FILES)
    for name in WEB_FILES:
        assert web_file(name) == (WEB / name).read_bytes()


# -- the JavaScript uses only API routes that exist ------------------------------------------------

# A string literal ("..." or `...`) starting with /v1/; template holes become {param}.
_V1_LITERAL = re.compile(r"""(["'`])(/v1/[^"'`]*)\1""")
_HOLE = re.compile(r"\$\{[^}]*\}")
_PARAM = re.compile(r"\{[^}/]+\}")


def _js_paths(js: str) -> set[str]:
    found = set()
    for _, raw in _V1_LITERAL.findall(js):
        path = _HOLE.sub("{param}", raw).split("?", 1)[0]
        found.add(_PARAM.sub("{param}", path))
    return found


def test_js_paths_parser() -> None:
    js = "get(\"/v1/status\"); get(`/v1/blocks/${h}/certificate?x=1`); const s = '/v1/x/{id}';"
    assert _js_paths(js) == {"/v1/status", "/v1/blocks/{param}/certificate", "/v1/x/{param}"}


def test_js_references_only_existing_v1_routes(client: TestClient) -> None:
    js = "\n".join(client.get(f"/ui/{name}").text for name in JS_FILES)
    used = _js_paths(js)
    assert {
        "/v1/status",
        "/v1/stream",
        "/v1/blocks/{param}",
        "/v1/blocks/{param}/certificate",
        "/v1/anchors/{param}",
        "/v1/me",
        "/v1/activity",
        "/v1/supervision/alerts",
        "/v1/supervision/anchoring",
    } <= used
    routes = {_PARAM.sub("{param}", p) for p in client.get("/openapi.json").json()["paths"]}
    missing = used - routes
    assert not missing, f"the UI calls routes the API does not have: {sorted(missing)}"
    # every /v1 mention in the files is one of the parsed literals (no path built another way)
    assert js.count("/v1/") == sum(1 for _ in _V1_LITERAL.finditer(js))


def test_js_modules_import_only_served_files(client: TestClient) -> None:
    index = client.get("/ui/").text
    assert re.findall(r'<script[^>]*src="([^"]+)"', index) == ["app.js"]
    for name in JS_FILES:
        js = client.get(f"/ui/{name}").text
        for target in re.findall(r"""^import\s[^;]*?from\s+["']([^"']+)["']""", js, re.M):
            assert target.startswith("./") and target[2:] in WEB_FILES, (name, target)


@pytest.mark.parametrize("name", JS_FILES)
def test_js_inserts_no_html(client: TestClient, name: str) -> None:
    js = client.get(f"/ui/{name}").text
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in js
    assert "new Function" not in js and ".style." not in js  # no code from strings, no inline CSS


@pytest.mark.parametrize("name", sorted(WEB_FILES))
def test_no_external_urls(client: TestClient, name: str) -> None:
    text = client.get("/ui/" if name == "index.html" else f"/ui/{name}").text
    if name == "dashboard.js":
        assert text.count(SVG_NAMESPACE) == 1
        text = text.replace(SVG_NAMESPACE, "")
    assert "http://" not in text
    assert "https://" not in text
    # nor protocol-relative ones ("//host/...") in src / href attributes or CSS url()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?//|url\(\s*["']?//""", text)
