"""The web UI served by the node's API under ``/ui``: explorer, investor view, regulator dashboard.

Static files shipped as package data (``consortia/api/web``: ``index.html``, ``style.css`` and the
JavaScript modules ``app.js`` (routing, explorer, sign-in, the event stream), ``api.js`` (DOM
helpers, API calls, the session), ``investor.js``, ``dashboard.js`` and ``notary.js``), plain
HTML and vanilla JavaScript modules: no build step, no CDN, no npm at runtime, no external
code. Every value is inserted with ``textContent`` (or an SVG attribute set by DOM calls), never
as HTML. The CSP allows scripts, styles and connections to this origin only (``script-src 'self'``).

- **Explorer** (public): status, blocks, certificates, anchors; live from ``GET /v1/stream``
  (``EventSource``).
- **Sign-in**: a session grant from ``consortia api login`` (``consortia.api.auth``), pasted or
  read from the URL fragment ``#session=TOKEN`` (a fragment never reaches the server or its logs;
  the page removes it from the address bar), kept in ``sessionStorage`` (this tab only) and sent
  as ``Authorization: Consortia-Session TOKEN`` on private GETs. The page shows who is signed in
  (``GET /v1/me``: organization, address, roles) and signs out on request or when the session is
  refused (expired, key rotated). No key ever reaches the browser.
- **Investor view**: ``GET /v1/me`` (investor record, holdings, wallets, fund positions and
  orders, policies), refreshed on every new block of the stream.
- **Notary** (public): a dropped or chosen file is hashed in the page (``crypto.subtle``, the
  file never leaves the machine) and looked up with ``GET /v1/notary/sha256/{hex}``.
- **Regulator dashboard** (a supervision node's API, regulator accounts):
  ``/v1/supervision/...`` panels and ``/v1/activity`` as an inline SVG chart, refreshed on every
  new block; 503 ``LOOKTHROUGH_UNAVAILABLE`` is shown as such.

``/`` redirects to ``/ui/``; any other ``/ui/...`` path is a 404 problem detail (the app's
handler). Files are served from a fixed allow-list, so no path from the request ever reaches the
filesystem.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

UI_PREFIX = "/ui"
WEB_PACKAGE = "consortia.api"
WEB_DIR = "web"
# name -> content type: the only files served.
WEB_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "investor.js": "text/javascript; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "notary.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# Same-origin only: no inline script or style, no third-party anything, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
}


@cache
def web_file(name: str) -> bytes:
    """The bytes of one allow-listed web file (read once from the installed package)."""
    if name not in WEB_FILES:
        raise KeyError(name)
    return resources.files(WEB_PACKAGE).joinpath(WEB_DIR, name).read_bytes()


def _serve(name: str) -> Response:
    if name not in WEB_FILES:
        raise StarletteHTTPException(404)
    return Response(web_file(name), media_type=WEB_FILES[name], headers=_HEADERS)


def webui_router() -> APIRouter:
    """``/`` (redirect), ``/ui`` (redirect) and ``/ui/{file}``; kept out of the OpenAPI schema."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def root() -> Response:
        return RedirectResponse(f"{UI_PREFIX}/", status_code=307)

    @router.get(UI_PREFIX)
    async def ui_bare() -> Response:
        return RedirectResponse(f"{UI_PREFIX}/", status_code=307)

    @router.get(f"{UI_PREFIX}/")
    async def ui_index() -> Response:
        return _serve("index.html")

    @router.get(UI_PREFIX + "/{name:path}")
    async def ui_file(name: str) -> Response:
        return _serve(name)

    return router
