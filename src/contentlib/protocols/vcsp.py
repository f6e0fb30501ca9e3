"""The VCSP feed over HTTP: `/cls/vcsp/lib/{library_id}/...` (GET and HEAD), the path vCenter publishes its
libraries at. The feed's content and every rule are services/vcsp.py's; this is the codec: HTTP Basic credentials
in, JSON documents and file bytes (with Range, through the data plane's code) out, and errors as /api error bodies
with their status: 404 for a library that is not published (or does not exist), an item or file that does not
exist; 401 with a Basic challenge for missing or wrong credentials of a BASIC library. Every document and file has
a strong ETag derived from its version (`If-None-Match` -> 304; `If-Range` decides whether a Range is served),
docs/vcsp.md "HTTP caching".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from contentlib import errors
from contentlib.logs import OPERATION
from contentlib.protocols import conditional
from contentlib.protocols.data import send_blob, send_bytes
from contentlib.protocols.http import JSON_HEADERS, basic_credentials, header, internal, json_response
from contentlib.services.publish_info import FEED_PATH
from contentlib.services.vcsp import ITEM_FILE, ITEMS_FILE, VcspFeed
from contentlib.storage.blobs import BlobStore
from contentlib.storage.sql import Row

CHALLENGE = {"WWW-Authenticate": 'Basic realm="vcsp"'}
_NO_CACHE = {"Cache-Control": "no-cache"}  # versions are what subscribers poll: revalidate (ETag) every time
# Raised whenever what this server serves for the same versions changes (a member added, another href form), so
# that an entity tag never names two different documents or files across an upgrade.
_FORMAT = 1

Handler = Callable[[web.Request, Row], Awaitable[web.StreamResponse]]


class VcspApi:
    def __init__(self, feed: VcspFeed, blobs: BlobStore) -> None:
        self.feed = feed
        self.blobs = blobs

    def routes(self) -> list[web.RouteDef]:
        base = FEED_PATH + "/{library_id}"
        # A file name has no '/' (core.check_file_name); `[^/]` still lets a (percent-encoded) newline through.
        return [
            web.get(f"{base}/lib.json", self._with(self.lib)),
            web.get(f"{base}/{ITEMS_FILE}", self._with(self.items)),
            web.get(f"{base}/{{item_id}}/{ITEM_FILE}", self._with(self.item)),
            web.get(f"{base}/{{item_id}}/file/{{name:[^/]+}}", self._with(self.file)),
            web.get(f"{base}/{{item_id}}/{{name:[^/]+}}", self._with(self.file)),
            web.get(rf"{base}/{{tail:[\s\S]*}}", self._with(self.unknown)),  # a 404 still after the credentials
        ]

    def _with(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The handler, called with the published library once the caller may read it."""

        async def handle(request: web.Request) -> web.StreamResponse:
            request[OPERATION] = "vcsp"
            try:
                library = await self.feed.library(request.match_info["library_id"], _credentials(request))
                return await handler(request, library)
            except errors.ApiError as e:
                response = json_response(e.status, e.to_rest())
                if e.error_type == "UNAUTHENTICATED":
                    response.headers.update(CHALLENGE)
                return response
            except Exception:
                bug = internal(request)
                return json_response(bug.status, bug.to_rest())

        return handle

    async def lib(self, request: web.Request, library: Row) -> web.StreamResponse:
        version = await self.feed.version(library)
        tag = _etag("lib", version)
        if conditional.not_modified(request, tag):
            return conditional.not_modified_response(tag, _NO_CACHE)
        return _json(await self.feed.lib_json(library, version), tag)

    async def items(self, request: web.Request, library: Row) -> web.StreamResponse:
        version = await self.feed.version(library)  # before the items: see VcspFeed.version
        tag = _etag("items", version)
        if conditional.not_modified(request, tag):
            return conditional.not_modified_response(tag, _NO_CACHE)
        return _json_body(await self.feed.items_body(library, version), tag)

    async def item(self, request: web.Request, library: Row) -> web.StreamResponse:
        item = await self.feed.item_json(library, request.match_info["item_id"])
        tag = _etag("item", item["version"])
        if conditional.not_modified(request, tag):
            return conditional.not_modified_response(tag, _NO_CACHE)
        return _json(item, tag)

    async def file(self, request: web.Request, library: Row) -> web.StreamResponse:
        f = await self.feed.file(library, request.match_info["item_id"], request.match_info["name"])
        tag = _etag("file", f.generation)
        if f.data is not None:
            return await send_bytes(request, f.data, tag)
        assert f.blob_id is not None
        return await send_blob(request, self.blobs, f.blob_id, f.size, tag)

    async def unknown(self, request: web.Request, library: Row) -> web.StreamResponse:
        raise errors.not_found("file", f"{request.match_info['tail']!r} of the feed of library {library['id']}")


def _credentials(request: web.Request) -> tuple[str, str] | None:
    """The Basic credentials sent, if any; an Authorization header that is not valid Basic counts as wrong ones."""
    try:
        return basic_credentials(header(request, "Authorization"))
    except errors.ApiError:
        return "", ""


def _etag(kind: str, version: int | str) -> str:
    """A document's or file's strong entity tag: what it is, the version that changes with its every change (the
    feed's for lib.json and items.json, the item's for item.json, the item's content version for a file, as
    docs/vcsp.md has them), and the format generation of this server's documents."""
    return conditional.strong(f"{kind}-{version}-f{_FORMAT}")


def _json(value: Any, etag: str) -> web.Response:
    return _json_body(msgspec.json.encode(value), etag)


def _json_body(body: bytes, etag: str) -> web.Response:
    return web.Response(status=200, body=body, headers={**JSON_HEADERS, **_NO_CACHE, "ETag": etag})
