"""Operations endpoints: `/healthz`, `/readyz`, `/metrics`, `/api/openapi.json`; and the middleware every request
passes through for its request id, its metrics and (with `--log-format json`) its access log line.

The wire codecs name the operation a request resolved to in `request[logs.OPERATION]` (an operation-table id, or
one of the fixed few in `metrics`); the middleware records it with the status, the time and the body bytes.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.resources
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from contentlib import logs, metrics
from contentlib.protocols.host import Host
from contentlib.protocols.http import json_response
from contentlib.storage.blobs import BlobStore
from contentlib.storage.sql import SqlStore

access_log = logging.getLogger("contentlib.access")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

READY_TIMEOUT = 3.0  # seconds each backend has to answer a readiness probe
_HEALTHY = b'{"status":"alive"}'
_JSON = {"Content-Type": "application/json"}


def _openapi_document() -> dict[str, Any]:
    text = importlib.resources.files("contentlib.protocols").joinpath("openapi.json").read_bytes()
    document: dict[str, Any] = msgspec.json.decode(text)
    return document


class OpsApi:
    def __init__(self, host: Host, store: SqlStore, blobs: BlobStore, log_requests: bool) -> None:
        self.host = host
        self.store = store
        self.blobs = blobs
        self.log_requests = log_requests  # one access line per request (JSON logs)
        self._openapi: dict[str, Any] | None = None

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get("/metrics", self.metrics),
            web.get("/api/openapi.json", self.openapi),
        ]

    # -- the endpoints ---------------------------------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.StreamResponse:
        """Alive: the process serves requests (no I/O, no credentials)."""
        request[logs.OPERATION] = "ops.healthz"
        return web.Response(body=_HEALTHY, headers=_JSON)

    async def readyz(self, request: web.Request) -> web.StreamResponse:
        """Ready: the database answers a trivial query and the blob store a cheap call, each within READY_TIMEOUT;
        503 naming what is down otherwise."""
        request[logs.OPERATION] = "ops.readyz"
        database, blobs = await asyncio.gather(_probe(self.store.ping()), _probe(self.blobs.ready()))
        checks = {"database": database, "blob_store": blobs}
        down = [name for name, problem in checks.items() if problem is not None]
        body: dict[str, Any] = {
            "status": "unavailable" if down else "ready",
            "checks": {name: problem or "ok" for name, problem in checks.items()},
        }
        if down:
            body["down"] = down
        return json_response(503 if down else 200, body)

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        """The Prometheus exposition of every worker's counters (no credentials: a scrape target)."""
        request[logs.OPERATION] = "ops.metrics"
        try:
            updates, downloads = await asyncio.wait_for(self.store.active_sessions(), READY_TIMEOUT)
        except Exception as e:  # the counters are still worth a scrape while the database is down
            logging.getLogger("contentlib.ops").warning("counting the active sessions failed: %s", _reason(e))
            updates = downloads = -1
        body = metrics.render(updates, downloads)
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})

    async def openapi(self, request: web.Request) -> web.StreamResponse:
        """The vendor's OpenAPI (Swagger 2.0) document cut down to what this server serves on /api, with `host`
        and `schemes` of the address the request reached (no credentials, like /healthz: it holds nothing that is
        not in the vendor's published document)."""
        request[logs.OPERATION] = "ops.openapi"
        if self._openapi is None:
            self._openapi = _openapi_document()
        scheme, _, rest = self.host.base_url(request).partition("://")
        host, slash, prefix = rest.partition("/")
        document = {**self._openapi, "host": host, "schemes": [scheme]}
        if prefix.strip("/"):  # a --public-url with a path: the paths are under it
            document["basePath"] = slash + prefix.rstrip("/")
        return json_response(200, document)

    # -- every request ---------------------------------------------------------------------------------------
    def wrap(self, route: web.RouteDef) -> web.RouteDef:
        """The route with its handler called through `middleware`. (Wrapped per route rather than as an aiohttp
        middleware: with any of those, aiohttp adds one of its own to every request, a context manager, costing
        about as much again. The catch-all route leaves aiohttp no request to answer by itself.)"""
        handler = route.handler
        middleware = self.middleware

        async def wrapped(request: web.Request) -> web.StreamResponse:
            return await middleware(request, handler)

        return web.RouteDef(route.method, route.path, wrapped, route.kwargs)

    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        request[logs.REQUEST_ID] = rid = logs.request_id(request.headers.get(logs.HEADER))
        token = logs.CURRENT.set(request)
        status = 500
        sent = 0
        deferred = False
        try:
            response: web.StreamResponse = await handler(request)
            if not response.prepared:  # (one streamed by its handler has the header already: data.send_content)
                response.headers[logs.HEADER] = rid
                if isinstance(response, web.FileResponse):
                    # sendfile: its status, range and length are decided, and the file sent, as aiohttp prepares
                    # it, after this (data.py's file responses call back)
                    request[logs.ON_PREPARED] = functools.partial(self._file_sent, request, start)
                    deferred = True
                    return response
            status = response.status
            if request.method != "HEAD":
                sent = response.content_length or response.body_length
            return response
        except web.HTTPException as e:  # aiohttp's own answers (a body over client_max_size...)
            e.headers[logs.HEADER] = rid
            status = e.status
            sent = e.content_length or 0
            raise
        except (asyncio.CancelledError, ConnectionResetError):  # the client went away
            status = 499
            raise
        finally:
            if not deferred:
                self._finish(request, status, sent, start)
            logs.CURRENT.reset(token)

    def _file_sent(self, request: web.Request, start: float, response: web.StreamResponse, complete: bool) -> None:
        """A file response was sent (`complete`), or its client went away meanwhile (499)."""
        token = logs.CURRENT.set(request)
        if not complete:
            self._finish(request, 499, response.body_length, start)
        else:
            sent = 0 if request.method == "HEAD" else response.content_length or 0
            self._finish(request, response.status, sent, start)
        logs.CURRENT.reset(token)

    def _finish(self, request: web.Request, status: int, sent: int, start: float) -> None:
        seconds = time.perf_counter() - start
        try:
            operation = request[logs.OPERATION]
        except KeyError:  # no operation was found for the request
            operation = "unmatched"
        metrics.record(operation, status, seconds, request.content.total_bytes, sent)
        if self.log_requests:
            access_log.info(
                "%s %s %d",
                request.method,
                logs.loggable_path(request.path),
                status,
                extra={"fields": {"status": status, "duration_ms": round(seconds * 1000, 3)}},
            )


async def _probe(check: Any) -> str | None:
    """None when the check passes in time, else why not."""
    try:
        await asyncio.wait_for(check, READY_TIMEOUT)
    except TimeoutError:
        return f"no answer within {READY_TIMEOUT:g} s"
    except Exception as e:
        return _reason(e)
    return None


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}"[:300] if text else type(e).__name__
