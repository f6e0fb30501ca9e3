"""The data plane: the upload URLs (`/cls/data/<token>/<name>`, PUT or POST) and download URLs
(`/cls/download/<token>/<name>`, GET/HEAD with Range) that update and download sessions hand out.

These are not operations of the table: the URL token is the credential, and the bytes stream between the socket and
the blob store (the sessions' services own every rule). Errors are /api error bodies whichever API the client used
to get the URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from contentlib import errors
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
        try:
            token, name = request.match_info["token"], request.match_info["name"]
            blob_id = await self.download_sessions.open_download(token, name)
            size = await self.blobs.size(blob_id)
        except errors.ApiError as e:
            return _error(e)
        except Exception:
            return _error(internal(request))
        return await send_blob(request, self.blobs, blob_id, size)


async def send_blob(request: web.Request, blobs: BlobStore, blob_id: str, size: int) -> web.StreamResponse:
    """A blob's bytes, or the part a Range header asks for (206; 416 when none of it exists); HEAD too."""
    path = blobs.local_path(blob_id)

    async def read(start: int, end: int) -> AsyncIterator[bytes]:
        async for chunk in blobs.read(blob_id, start, end):
            yield chunk

    return await send_content(request, size, read, path)


async def send_bytes(request: web.Request, data: bytes) -> web.StreamResponse:
    """Bytes made in memory (a small generated file), served like a blob."""

    async def read(start: int, end: int) -> AsyncIterator[bytes]:
        yield data[start:end]

    return await send_content(request, len(data), read)


async def send_content(
    request: web.Request, size: int, read: Callable[[int, int], AsyncIterator[bytes]], path: Path | None = None
) -> web.StreamResponse:
    span = _span(request, size)
    if span is None:
        # aiohttp would answer this one chunked; clients expect a plain, sized 416.
        return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
    if path is not None:  # sendfile, ranges and HEAD by aiohttp
        return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})
    start, end = span
    headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
    if "Range" in request.headers and _parsed_range(request) is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    response = web.StreamResponse(status=206 if "Content-Range" in headers else 200, headers=headers)
    response.content_length = end - start
    await response.prepare(request)
    if request.method != "HEAD":
        async for chunk in read(start, end):
            await response.write(chunk)
    await response.write_eof()
    return response


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
