"""The data plane: the upload URLs (`/cls/data/<token>/<name>`, PUT or POST) and download URLs
(`/cls/download/<token>/<name>`, GET/HEAD with Range) that update and download sessions hand out.

These are not operations of the table: the URL token is the credential, and the bytes stream between the socket and
the blob store (the sessions' services own every rule). Errors are /api error bodies whichever API the client used
to get the URL.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import ETag

from contentlib import errors
from contentlib.logs import HEADER, ON_PREPARED, OPERATION, REQUEST_ID
from contentlib.protocols import conditional
from contentlib.protocols.http import internal, json_response
from contentlib.services.download_sessions import DownloadSessions
from contentlib.services.update_transfers import Transfers
from contentlib.storage.blobs import BlobStore


def _error(e: errors.ApiError) -> web.Response:
    return json_response(e.status, e.to_rest())


class DataPlane:
    def __init__(self, transfers: Transfers, download_sessions: DownloadSessions, blobs: BlobStore) -> None:
        self.transfers = transfers
        self.download_sessions = download_sessions
        self.blobs = blobs

    def routes(self) -> list[web.RouteDef]:
        # `[\s\S]`, not `.`: a name may hold a (percent-encoded) newline, and must still reach a handler that answers
        # with a vendor error rather than aiohttp's plain-text 404.
        return [
            web.route("PUT", r"/cls/data/{token}/{name:[\s\S]+}", self.upload),
            web.route("POST", r"/cls/data/{token}/{name:[\s\S]+}", self.upload),
            web.get(r"/cls/download/{token}/{name:[\s\S]+}", self.download),
        ]

    async def upload(self, request: web.Request) -> web.StreamResponse:
        request[OPERATION] = "data.upload"
        try:
            await self.transfers.receive_upload(
                request.match_info["token"],
                request.match_info["name"],
                request.content.iter_any(),
                request.content_length,
            )
        except errors.ApiError as e:
            return _error(e)
        except Exception:
            return _error(internal(request))
        return web.Response(status=200)

    async def download(self, request: web.Request) -> web.StreamResponse:
        request[OPERATION] = "data.download"
        try:
            token, name = request.match_info["token"], request.match_info["name"]
            blob_id = await self.download_sessions.open_download(token, name)
            size = await self.blobs.size(blob_id)
        except errors.ApiError as e:
            return _error(e)
        except Exception:
            return _error(internal(request))
        return await send_blob(request, self.blobs, blob_id, size)


async def send_blob(
    request: web.Request, blobs: BlobStore, blob_id: str, size: int, etag: str | None = None
) -> web.StreamResponse:
    """A blob's bytes, or the part a Range header asks for (206; 416 when none of it exists); HEAD too. With `etag`
    (a quoted strong entity tag that changes whenever the bytes do), that is the response's validator:
    `If-None-Match` naming it gets 304, and a `Range` sent with an `If-Range` that does not name it gets the whole
    blob (200)."""
    path = blobs.local_path(blob_id)

    async def read(start: int, end: int) -> AsyncIterator[bytes]:
        async for chunk in blobs.read(blob_id, start, end):
            yield chunk

    return await send_content(request, size, read, path, etag)


async def send_bytes(request: web.Request, data: bytes, etag: str | None = None) -> web.StreamResponse:
    """Bytes made in memory (a small generated file), served like a blob."""

    async def read(start: int, end: int) -> AsyncIterator[bytes]:
        yield data[start:end]

    return await send_content(request, len(data), read, etag=etag)


async def send_content(
    request: web.Request,
    size: int,
    read: Callable[[int, int], AsyncIterator[bytes]],
    path: Path | None = None,
    etag: str | None = None,
) -> web.StreamResponse:
    use_range = True
    if etag is not None:
        if conditional.not_modified(request, etag):
            return conditional.not_modified_response(etag, {"Accept-Ranges": "bytes"})
        use_range = conditional.range_applies(request, etag)
    span = _span(request, size) if use_range else (0, size)
    if span is None:
        # aiohttp would answer this one chunked; clients expect a plain, sized 416.
        return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
    headers = {"Content-Type": "application/octet-stream"}
    if path is not None:  # sendfile, ranges and HEAD by aiohttp
        if etag is not None:
            return _TaggedFileResponse(path, etag, use_range, headers)
        return _FileResponse(path, headers=headers)
    start, end = span
    headers["Accept-Ranges"] = "bytes"
    if etag is not None:
        headers["ETag"] = etag
    if use_range and "Range" in request.headers and _parsed_range(request) is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    if (rid := request.get(REQUEST_ID)) is not None:  # prepared here: the ops middleware comes too late for it
        headers[HEADER] = rid
    response = web.StreamResponse(status=206 if "Content-Range" in headers else 200, headers=headers)
    response.content_length = end - start
    await response.prepare(request)
    if request.method != "HEAD":
        async for chunk in read(start, end):
            await response.write(chunk)
    await response.write_eof()
    return response


_CONDITIONAL = ("If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "If-Range")


class _FileResponse(web.FileResponse):
    """aiohttp's FileResponse, telling the ops middleware its status, range and length (decided as it is prepared,
    after the handler returned it) once it is sent."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        sent = request.get(ON_PREPARED)
        if sent is None:
            return await super().prepare(request)
        del request[ON_PREPARED]
        try:
            writer = await super().prepare(request)
        except BaseException:  # the client went away
            sent(self, False)
            raise
        sent(self, True)
        return writer


class _TaggedFileResponse(_FileResponse):
    """aiohttp's FileResponse (sendfile, Range, HEAD) with the caller's entity tag as its only validator, in place of
    aiohttp's own (the file's mtime and size: another file on S3 than on disk, and unrelated to what a feed says):
    the conditional headers were evaluated by send_content, so aiohttp sees the request without them (and without
    its Range when an If-Range did not match), and its ETag and Last-Modified are not sent."""

    def __init__(self, path: Path, etag: str, use_range: bool, headers: dict[str, str]) -> None:
        super().__init__(path, headers={**headers, "ETag": etag})
        self._use_range = use_range

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:  # the handler's caller prepares again what is already sent
            return await web.StreamResponse.prepare(self, request)
        drop = {h.lower() for h in _CONDITIONAL} | (set() if self._use_range else {"range"})
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in drop]
        return await super().prepare(request.clone(headers=headers))

    @property
    def etag(self) -> ETag | None:
        return super().etag

    @etag.setter
    def etag(self, value: ETag | str | None) -> None:
        """aiohttp's own tag is not sent: the one given at construction stays."""

    @property
    def last_modified(self) -> datetime.datetime | None:
        return None

    @last_modified.setter
    def last_modified(self, value: float | datetime.datetime | str | None) -> None:
        """No Last-Modified: the entity tag is the one validator."""


def _parsed_range(request: web.Request) -> slice | None:
    """The request's Range as a slice, or None without one (a malformed one is ignored)."""
    if "Range" not in request.headers:
        return None
    try:
        rng: slice = request.http_range
    except ValueError:
        return None
    return None if rng.start is None else rng


def _span(request: web.Request, size: int) -> tuple[int, int] | None:
    """The byte range [start, end) a request asks for (the whole blob without a Range header, or with a malformed
    one, which is ignored); None when it cannot be satisfied (416)."""
    rng = _parsed_range(request)
    if rng is None:
        return 0, size
    start: int | None = rng.start
    stop: int | None = rng.stop
    if start is None:
        return 0, size
    if start < 0:  # suffix range: the last -start bytes
        return (max(0, size + start), size) if size > 0 else None
    if start >= size:
        return None
    return start, size if stop is None else min(stop, size)
