"""Builds the server: stores, services, the operation table, the HTTP front-end, and the background sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from contentlib import metrics, operations, workers
from contentlib.config import Settings
from contentlib.protocols.data import DataPlane
from contentlib.protocols.jsonrpc import JsonRpcApi
from contentlib.protocols.legacy_rest import LegacyRestApi
from contentlib.protocols.ops import OpsApi
from contentlib.protocols.rest import RestApi
from contentlib.protocols.soap import SoapApi
from contentlib.protocols.ui import UiFiles
from contentlib.protocols.vcsp import VcspApi
from contentlib.services.auth import Auth
from contentlib.services.configuration import Configuration
from contentlib.services.core import Core, check_text
from contentlib.services.datastores import Datastores
from contentlib.services.download_sessions import DownloadSessions
from contentlib.services.item_content import ItemContent
from contentlib.services.libraries import Libraries
from contentlib.services.subscribed import SubscribedLibraries
from contentlib.services.subscriber import Subscriber
from contentlib.services.subscriptions import Subscriptions
from contentlib.services.trusted_certificates import TrustedCertificates
from contentlib.services.update_sessions import UpdateSessions
from contentlib.services.vcsp import VcspFeed
from contentlib.services.vcsp_persist import FeedPersister
from contentlib.storage import open_blobs, open_store
from contentlib.storage.blobs import BlobStore
from contentlib.storage.sql import SqlStore
from contentlib.transfer import stop_threads

log = logging.getLogger("contentlib")

_GC_EVERY = 60.0  # seconds between full orphan-blob scans (start-up always scans)
_PROGRESS_FLUSH = 0.25  # seconds between writes of the byte counts of this process's uploads
_GC_GRACE = 60.0  # an unreferenced blob younger than this may belong to a request that has not recorded it yet


class App:
    def __init__(self, settings: Settings, store: SqlStore, blobs: BlobStore) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = store
        self.core = Core(settings, self.store, blobs, replica_id(settings.data_dir))
        self.auth = Auth(self.core)
        self.datastores = Datastores(blobs)
        self.libraries = Libraries(self.core, self.datastores)
        self.update_sessions = UpdateSessions(self.core, self.libraries)
        self.download_sessions = DownloadSessions(self.core, self.libraries)
        self.trusted = TrustedCertificates(self.core)
        self.item_content = ItemContent(self.core, self.libraries)
        self.configuration = Configuration(self.core)
        self.subscriber = Subscriber(self.core, self.libraries, self.update_sessions, self.configuration, self.trusted)
        self.subscribed = SubscribedLibraries(self.core, self.libraries, self.subscriber)
        self.subscriptions = Subscriptions(self.core, self.libraries, self.subscribed)
        self.download_sessions.fetch = self.subscribed.fetch
        self.operations = operations.build(self)
        self.rest = RestApi(self)
        self.jsonrpc = JsonRpcApi(self)
        self.legacy_rest = LegacyRestApi(self)
        self.soap = SoapApi(self)
        self.data = DataPlane(self.update_sessions.transfers, self.download_sessions, blobs)
        feed = VcspFeed(self.core)
        self.vcsp = VcspApi(feed, blobs)
        self.ui = UiFiles()  # the web UI's static files (docs/ui.md)
        self.persisted_feeds = FeedPersister(feed, self.store, blobs)
        self.ops = OpsApi(self, self.store, blobs, log_requests=settings.log_format == "json")
        self._proxies = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]
        self._background: list[asyncio.Task[None]] = []  # the sweeper, the transfer watchdog, the persisted feeds
        self._last_gc = 0.0
        self._base_urls: dict[tuple[str, str], str] = {}  # (scheme, Host) -> base URL, checked once
        self.recovered = False  # `recover` ran already, in the process that forked this one

    @property
    def max_body(self) -> int:
        return self.settings.max_api_body

    @property
    def server_guid(self) -> str:
        return self.libraries.server_guid

    def base_url(self, request: web.BaseRequest) -> str:
        """Where clients reach this server, for the upload and download URIs it hands out: the configured public
        URL; else what a trusted proxy forwarded (X-Forwarded-Proto/-Host); else the request's own scheme and host."""
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        if self._proxies and _remote_in(request.remote, self._proxies):
            proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
            host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
            return check_text(f"{proto or request.scheme}://{host or request.host}", "The forwarded host")
        key = (request.scheme, request.host)
        url = self._base_urls.get(key)
        if url is None:
            url = check_text(f"{key[0]}://{key[1]}", "The Host header")
            if len(self._base_urls) > 1024:  # bounded under a spray of Host headers
                self._base_urls.clear()
            self._base_urls[key] = url
        return url

    def web_app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.max_api_body)
        # `[\s\S]`, not `.`: a path may hold a (percent-encoded) newline, and must still reach a handler that
        # answers with a vendor error rather than aiohttp's plain-text 404.
        app.add_routes(
            self.ops.wrap(route)  # request ids, metrics, access lines
            for route in [
                *self.ops.routes(),  # before /api/{tail} and the catch-all
                web.post("/api", self.jsonrpc.handle),
                *self.data.routes(),
                *self.vcsp.routes(),
                web.route("*", r"/api/{tail:[\s\S]*}", self.rest.handle),
                web.route("*", "/api", self.rest.handle),
                web.route("*", r"/rest/{tail:[\s\S]*}", self.legacy_rest.handle),
                web.route("*", "/rest", self.legacy_rest.handle),
                *self.soap.routes(),
                *self.ui.routes(),
                web.route("*", r"/{tail:[\s\S]*}", self.rest.not_found),
            ]
        )
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, _app: web.Application) -> None:
        await self.start()

    async def _on_cleanup(self, _app: web.Application) -> None:
        await self.stop()

    async def recover(self) -> None:
        """What a start finds left by the previous run of this replica: its transfers that were running when it
        stopped fail, and blobs nothing references are deleted. Only while no process of this replica serves
        (`serve --workers N` runs it once, before it forks the workers)."""
        await self.libraries.start()
        await self.update_sessions.transfers.fail_stalled(owner=self.core.replica_id)
        await self.subscriber.recover()
        await self.collect_garbage(grace=0.0)

    async def start(self) -> None:
        self.update_sessions.transfers.http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(sock_connect=30, sock_read=300)
        )
        if self.recovered:
            await self.libraries.start()
        else:
            await self.recover()
        loop = asyncio.get_running_loop()
        self._background = [
            loop.create_task(self._sweep_forever()),
            loop.create_task(self._watch_transfers()),
            loop.create_task(self._persist_forever()),
            loop.create_task(metrics.flush_forever()),
        ]

    async def stop(self) -> None:
        await self.subscriber.stop()
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for live in list(self.core.live.values()):
            if live.task is not None:
                live.task.cancel()
        if self.update_sessions.transfers.http is not None:
            await self.update_sessions.transfers.http.close()
        await self.store.close()
        await self.core.blobs.close()
        metrics.flush()

    async def _watch_transfers(self) -> None:
        """Every process stops its own stalled transfers (their connections are here), a few times per timeout, and
        writes its uploads' byte counts for the others to show (a watchdog per process, by nature: what it watches
        lives in the process)."""
        every = min(_PROGRESS_FLUSH, self.settings.transfer_stall_timeout / 4)
        while True:
            await asyncio.sleep(every)
            self.core.stop_stalled_transfers(time.monotonic())
            try:
                await self.update_sessions.transfers.flush_progress()
            except Exception:
                log.exception("writing the progress of transfers failed")

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval)
            try:
                if await self.store.is_sweeper():  # one replica at a time
                    metrics.count(metrics.SWEEPS)
                    await self.sweep()
            except Exception:
                log.exception("sweep failed")

    async def _persist_forever(self) -> None:
        """The VCSP feeds published with persist_json_enabled, written into the storage by the sweeper's process (one
        replica at a time), in a loop of their own: writing a large library's feed anew must not hold back the
        expiry of sessions."""
        while True:
            await asyncio.sleep(self.settings.sweep_interval)
            try:
                if await self.store.is_sweeper():
                    await self.persisted_feeds.sync()
            except Exception:
                log.exception("writing the persisted VCSP feeds failed")

    async def sweep(self) -> None:
        """Expire idle ACTIVE sessions, delete finished ones after the retention period, forget idle API
        sessions, and now and then delete orphaned blobs."""
        now = time.time()
        await self.update_sessions.transfers.fail_stalled(before=now - self.settings.transfer_stall_timeout)
        await self.update_sessions.sweep(now)
        await self.download_sessions.sweep(now)
        await self.auth.sweep()
        await self.subscriber.tick()
        await self.store.maintain()
        if now - self._last_gc >= _GC_EVERY:
            await self.collect_garbage()

    async def collect_garbage(self, grace: float = _GC_GRACE) -> int:
        """Delete blobs nothing references (left by a crash between writing a blob and recording it, or by
        a request that died). The listing is taken before the references are read: a blob's row is always written
        before the blob itself, so a blob in the listing whose row exists is seen as referenced."""
        self._last_gc = time.time()
        metrics.count(metrics.GC_RUNS)
        listing = await self.core.blobs.list_ids()
        referenced = await self.store.referenced_blobs()
        removed = await self.core.blobs.delete_orphans([b for b in listing if b not in referenced], grace)
        if removed:
            metrics.count(metrics.GC_REMOVED, removed)
            log.info("removed %d orphaned blob(s)", removed)
        return removed


def _remote_in(remote: str | None, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    return any(address in n for n in networks)


def replica_id(data_dir: Path) -> str:
    """This replica's identity, kept in its data dir: transfers it ran before a restart are known as its own."""
    path = data_dir / "replica-id"
    with contextlib.suppress(FileNotFoundError):
        if rid := path.read_text().strip():
            return rid
    # Written whole or not at all: a crash during the first start must not leave an empty identity behind (the
    # replicas that did would share it). No transfer can have been recorded under an identity never written.
    rid = str(uuid.uuid4())
    tmp = path.with_name(f"replica-id.{rid}.tmp")
    tmp.write_text(rid + "\n")
    tmp.replace(path)
    return rid


async def open_app(settings: Settings) -> App:
    return App(settings, await open_store(settings), await open_blobs(settings))


def run(settings: Settings, ssl_context: Any = None) -> None:
    """Serve until SIGTERM or SIGINT: in this process, or in `settings.workers` forked ones."""
    scheme = "https" if ssl_context else "http"
    banner = f"contentlib listening on {scheme}://{settings.host}:{settings.port}"
    if settings.workers <= 1:
        _use_uvloop()
        _run_worker(settings, ssl_context, None, lambda: print(banner, flush=True), recovered=False)
        return
    sockets = workers.listening_sockets(settings.host, settings.port, settings.workers)

    async def recover() -> None:
        app = await open_app(settings)
        try:
            await app.recover()
        finally:
            await app.store.close()
            await app.core.blobs.close()

    asyncio.run(recover())  # before any worker runs
    # Fork from a process with no other thread: a lock held by one (a pool thread's, the allocator's) would stay
    # held forever in a child, which then hangs on its first request that needs it.
    stop_threads()  # and the supervisor waits, before each fork, until they are gone

    def worker(_n: int, sock: socket.socket) -> None:
        _use_uvloop()
        _run_worker(settings, ssl_context, sock, None, recovered=True)

    supervisor = workers.Supervisor(sockets, worker)
    print(f"{banner} ({settings.workers} workers)", flush=True)
    raise SystemExit(supervisor.run())


def _use_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass


def _run_worker(
    settings: Settings, ssl_context: Any, sock: socket.socket | None, ready: Callable[[], None] | None, recovered: bool
) -> None:
    async def build() -> web.Application:
        app = await open_app(settings)
        app.recovered = recovered
        return app.web_app()

    web.run_app(
        build(),
        host=None if sock else settings.host,
        port=None if sock else settings.port,
        sock=sock,
        ssl_context=ssl_context,
        # aiohttp's keep-alive timer also runs from a connection's start until its first complete request head
        # (and from each response to the next head): it is the header timeout, and trickled headers do not reset it.
        keepalive_timeout=settings.header_timeout,
        access_log=None,
        print=lambda _: ready() if ready else None,
    )
