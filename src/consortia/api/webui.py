"""The web UI (first slice): a public chain explorer served by the node's API under ``/ui``.

Three static files shipped as package data (``consortia/api/web``: ``index.html``, ``app.js``,
``style.css``), plain HTML and vanilla JavaScript modules: no build step, no CDN, no npm at
runtime. The page reads only the public ``/v1`` endpoints (status, blocks, certificates, anchors)
and follows ``GET /v1/stream`` with an ``EventSource``; every value is inserted with
``textContent``, never as HTML. ``/`` redirects to ``/ui/``; any other ``/ui/...`` path is a 404
problem detail (the app's handler). Files are served from a fixed allow-list, so no path from the
request ever reaches the filesystem.

Not yet: the regulator dashboard and the investor view, which need signed requests and so an
institution login (a local signing proxy, or WebCrypto with an imported key).
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
