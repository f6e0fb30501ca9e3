"""The web UI's static files at `/ui/` (GET and HEAD): the HTML, ES modules and CSS shipped in `contentlib/ui/`.

The UI is a pure client of the public `/api` on the same origin (docs/ui.md); this serves its files and nothing
else. The files are read once, at start-up, into a fixed table: a request names one of them or gets 404, so no path
can leave the folder (`..`, percent-encoded or not, names no entry). Every response carries a strict
Content-Security-Policy (same-origin scripts, styles, images and connections only; no inline code) and a strong
ETag over the bytes (`If-None-Match` -> 304); `Cache-Control: no-cache` makes browsers revalidate, so an upgrade
is seen at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from contentlib.logs import OPERATION
from contentlib.protocols import conditional

ROOT = Path(__file__).resolve().parent.parent / "ui"
PREFIX = "/ui/"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load(root: Path = ROOT) -> dict[str, Asset]:
    """Every servable file under `root` by its path relative to it (`index.html` also as the empty path)."""
    assets: dict[str, Asset] = {}
    for path in sorted(root.rglob("*")):
        content_type = _TYPES.get(path.suffix)
        if not path.is_file() or content_type is None:
            continue
        body = path.read_bytes()
        etag = conditional.strong(hashlib.sha256(body).hexdigest()[:32])
        assets[path.relative_to(root).as_posix()] = Asset(body, content_type, etag)
    if "index.html" in assets:
        assets[""] = assets["index.html"]
    return assets


class UiFiles:
    def __init__(self, root: Path = ROOT) -> None:
        self.assets = load(root)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.root),  # as vCenter's root leads people to the vSphere Client at /ui
            web.route("*", "/ui", self.redirect),
            web.route("*", r"/ui/{name:[\s\S]*}", self.serve),
        ]

    async def redirect(self, request: web.Request) -> web.StreamResponse:
        request[OPERATION] = "ui"
        if request.method not in ("GET", "HEAD"):
            return _not_allowed()
        return web.Response(status=301, headers={"Location": PREFIX, **SECURITY_HEADERS})

    async def root(self, request: web.Request) -> web.StreamResponse:
        request[OPERATION] = "ui"
        return web.Response(status=302, headers={"Location": PREFIX, **SECURITY_HEADERS})

    async def serve(self, request: web.Request) -> web.StreamResponse:
        request[OPERATION] = "ui"
        if request.method not in ("GET", "HEAD"):
            return _not_allowed()
        asset = self.assets.get(request.match_info["name"])
        if asset is None:
            return _text(404, f"Not found: {request.path} is not a file of the web UI.")
        headers = {"ETag": asset.etag, **SECURITY_HEADERS}
        if conditional.not_modified(request, asset.etag):
            return web.Response(status=304, headers=headers)
        return web.Response(body=asset.body, headers={"Content-Type": asset.content_type, **headers})


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=(message + "\n").encode(),
        headers={"Content-Type": "text/plain; charset=utf-8", **SECURITY_HEADERS, **(headers or {})},
    )


def _not_allowed() -> web.Response:
    return _text(405, "Method not allowed: the web UI's files answer GET and HEAD only.", {"Allow": "GET, HEAD"})
