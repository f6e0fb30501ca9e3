"""Synchronizing subscribed libraries from their publishers (VCSP): what `subscribed_library.sync`,
`subscribed_item.sync`, a create and the automatic schedule ask for.

A sync runs in the process that holds the sweeper lock (one per cluster), as a task of its own; a request made
anywhere is a row (`library_syncs`, storage/sync_queries.py) that this process picks up at once when it is that
process, else at the holder's next sweep. A running sync claims its library (compare-and-set on `running`, kept
alive by a heartbeat), so no two run for one library, even while the lock moves between processes.

One sync reads lib.json; when its version is the one last mirrored and every item that must be cached is, it is
done. Otherwise it reads items.json and makes the library mirror it: items the publisher no longer lists go, new
ones come (metadata first: name, description, type, what the publisher said of their files), changed ones are
updated, and the bytes of every item that must be cached (all of them; with `on_demand` only those asked for or
already cached) whose content version is not the one held are fetched — incrementally, only those.

The bytes of an item arrive through an update session the server runs on the item itself: each of the publisher's
files is a PULL (streamed into the blob store with flat memory, its size checked, an OVF's files checked against
its manifest, the publisher's certificate pinned), and `complete` makes them the item's files in one transaction.
So an item is never seen half-synced: a publisher that goes away, a corrupted file, a kill of the server mid-sync
leave the item as it was (the session fails or expires and discards what it staged), and the next sync fetches it
again. A restart asks again for the syncs that were running in the previous run of this replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any, Protocol, get_args

from contentlib import errors
from contentlib.model import AddSpec, TransferEndpoint, UpdateSessionModel, WarningBehavior, WarningType
from contentlib.services import ovf
from contentlib.services.core import Core, Ctx, load_json, message_json
from contentlib.services.libraries import Libraries
from contentlib.services.update_sessions import UpdateSessions
from contentlib.services.vcsp_client import ProbeError, Publisher, RemoteItem, Subscription
from contentlib.storage.sql import Row, dumps

log = logging.getLogger("contentlib.subscriber")

SYNC_USER = "com.vmware.content.sync"  # the owner of the update sessions a sync runs (no user can log in so)
_HEARTBEAT = 5.0  # seconds between a running sync's heartbeats
_STALE = 60.0  # a sync whose heartbeat is older than this died with its process: another may take its library
_SYNC_PRIVILEGES = frozenset({"System.Read", "ContentLibrary.UpdateSession"})
_WARNINGS: tuple[WarningType, ...] = get_args(WarningType)
SYNC_FAILED = "com.vmware.content.library.sync.failed"


class SyncSettings(Protocol):
    async def values(self) -> dict[str, bool | int]: ...


class TrustStore(Protocol):
    async def pems(self) -> list[str]: ...


def subscription_of(row: Row) -> dict[str, Any]:
    """The library's stored subscription_info (no password: that is its own column)."""
    return dict(load_json(row["extra"]).get("subscription_info") or {})


class Subscriber:
    def __init__(
        self, core: Core, libraries: Libraries, sessions: UpdateSessions, config: SyncSettings, trust: TrustStore
    ) -> None:
        self.core = core
        self.store = core.store
        self.libraries = libraries
        self.sessions = sessions
        self.config = config
        self.trust = trust
        self.owner = f"{core.replica_id}/{os.getpid()}"
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._ctx = Ctx(user=SYNC_USER, base_url="", role="Administrator", privileges=_SYNC_PRIVILEGES)

    # -- connecting ----------------------------------------------------------------------------------------------
    async def subscription(self, info: dict[str, Any], password: str | None) -> Subscription:
        basic = info.get("authentication_method") == "BASIC"
        return Subscription(
            url=str(info.get("subscription_url") or ""),
            user=info.get("user_name") if basic else None,
            password=password if basic else None,
            thumbprint=info.get("ssl_thumbprint"),
            trusted=tuple(await self.trust.pems()),
        )

    async def connect(self, info: dict[str, Any], password: str | None) -> Publisher:
        http = self.sessions.transfers.http
        assert http is not None, "the server's HTTP client is made at its start"
        return await Publisher(http, await self.subscription(info, password)).open()

    # -- requests and the schedule ---------------------------------------------------------------------------
    async def request(self, library_id: str, items: dict[str, bool] | None = None) -> None:
        """Ask for a sync of the library (or of some items: id → whether their bytes must come) and, in the
        process that runs syncs, start it now."""
        async with self.store.transaction():
            await self.store.request_sync(library_id, self.core.now(), items)
        if await self.store.is_sweeper():
            self._start(library_id)

    def _start(self, library_id: str) -> None:
        """Run the library's requested sync in this process, unless one already runs here (it takes the new
        request when it ends)."""
        if library_id not in self.tasks:
            self.tasks[library_id] = asyncio.get_running_loop().create_task(self._run(library_id))

    async def tick(self) -> None:
        """From the sweeper: ask for the automatic syncs that are due, and start every requested one that does not
        run in this process yet."""
        now = self.core.now()
        states = {s["library_id"]: s for s in await self.store.sync_states()}
        config = await self.config.values()
        if config["automatic_sync_enabled"]:
            for lib in await self.store.list_libraries("SUBSCRIBED"):
                state = states.get(lib["id"]) or {}
                if state.get("requested") is not None or state.get("running") is not None:
                    continue
                # The last attempt counts, not only the last success: a publisher that is down is tried again
                # one interval later, not at every sweep.
                last = max(state.get("last_sync") or 0, state.get("heartbeat") or 0, lib["created"])
                if automatic_due(now, config, subscription_of(lib).get("automatic_sync_enabled") is True, last):
                    await self.store.request_sync(lib["id"], now)
                    states[lib["id"]] = {"requested": now}
        for library_id, state in states.items():
            if state.get("requested") is not None or state.get("items"):
                self._start(library_id)

    async def recover(self) -> None:
        """At a start, before any sync runs here: the syncs this replica's previous run left running run again."""
        await self.store.requeue_syncs(f"{self.core.replica_id}/")

    async def stop(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        for task in list(self.tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def wait(self, library_id: str) -> None:
        """Until the sync of the library running in this process (if any) has ended."""
        task = self.tasks.get(library_id)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(task)

    # -- running one library's sync ------------------------------------------------------------------------
    async def _run(self, library_id: str) -> None:
        try:
            while True:
                async with self.store.transaction():
                    taken = await self.store.claim_sync(
                        library_id, self.owner, self.core.now(), self.core.now() - _STALE
                    )
                if taken is None:
                    return
                beat = asyncio.get_running_loop().create_task(self._heartbeat(library_id))
                try:
                    await self._sync(library_id, taken)
                finally:
                    beat.cancel()
        except Exception:
            log.exception("the sync of library %s failed", library_id)
        finally:
            self.tasks.pop(library_id, None)

    async def _heartbeat(self, library_id: str) -> None:
        while True:
            await asyncio.sleep(_HEARTBEAT)
            with contextlib.suppress(Exception):
                await self.store.sync_heartbeat(library_id, self.owner, self.core.now())

    async def _sync(self, library_id: str, taken: Row) -> None:
        lib = await self.store.get_library(library_id)
        if lib is None or lib["type"] != "SUBSCRIBED":
            await self.store.delete_sync_state(library_id)
            return
        started = self.core.now()
        version: str | None = None
        try:
            pub = await self.connect(subscription_of(lib), lib["subscription_password"])
            if taken["requested"] is not None:
                version = await self.sync_library(lib, pub, taken["feed_version"])
            for item_id, content in (load_json(taken["items"]) or {}).items():
                await self.sync_one(lib, pub, item_id, content)
        except Exception as e:  # recorded, whatever it was: the request was taken, and must end
            if isinstance(e, ProbeError | errors.ApiError):
                text = e.text if isinstance(e, ProbeError) else e.messages[0]["default_message"]
            else:
                log.exception("the sync of library %s broke", library_id)
                text = f"{e.__class__.__name__}: {e}"
            log.warning("the sync of library %s failed: %s", library_id, text)
            failure = message_json(SYNC_FAILED, f"The sync of the library {library_id} failed: {text}", text)
            await self.store.finish_sync(library_id, self.owner, None, failure, None)
            return
        await self.store.finish_sync(
            library_id, self.owner, started if taken["requested"] is not None else None, None, version
        )

    async def sync_library(self, lib: Row, pub: Publisher, mirrored: str | None) -> str:
        """Make the library mirror its publisher; the publisher's lib.json version it now mirrors."""
        on_demand = subscription_of(lib).get("on_demand") is True
        descriptor = await pub.library()
        # What was mirrored is named by the publisher's URL and library id as well as its version: another
        # publisher's library (a new subscription_url) may well be at the same version number.
        version = f"{pub.subscription.url} {descriptor.get('id')} {descriptor['version']}"
        local = [r for r in await self.store.list_items(lib["id"]) if r["source_id"]]
        if version == mirrored and all(r["cached"] or on_demand for r in local):
            return version
        remote = await pub.items(descriptor)
        rows = await self._mirror_metadata(lib, remote, local)
        wanted = [(rows[r.id], r) for r in remote if r.id in rows and (not on_demand or rows[r.id]["cached"])]
        failures = await self._fetch_all(lib, pub, [(row, r) for row, r in wanted if _stale(row, r)])
        if failures:
            raise errors.ApiError(
                "ERROR",
                SYNC_FAILED,
                f"{len(failures)} of {len(remote)} items could not be synchronized: {'; '.join(failures)}",
                "; ".join(failures),
            )
        return version

    async def sync_one(self, lib: Row, pub: Publisher, item_id: str, content: bool) -> None:
        """`subscribed_item.sync`: the item's metadata from its item.json, and its bytes when `content` (or when the
        library is not on demand, or the item is cached); an item its publisher no longer has goes."""
        row = await self.store.get_item(item_id)
        if row is None or row["library_id"] != lib["id"] or not row["remote"]:
            return
        remote = await pub.item(RemoteItem.from_json(load_json(row["remote"])).url)
        if remote is None:
            await self._delete(row)
            return
        rows = await self._mirror_metadata(lib, [remote], [row], remove=False)
        row = rows[remote.id]
        on_demand = subscription_of(lib).get("on_demand") is True
        if (content or not on_demand or row["cached"]) and _stale(row, remote):
            failures = await self._fetch_all(lib, pub, [(row, remote)])
            if failures:
                raise errors.ApiError("ERROR", SYNC_FAILED, failures[0], failures[0])

    # -- metadata ------------------------------------------------------------------------------------------
    async def _mirror_metadata(
        self, lib: Row, remote: list[RemoteItem], local: list[Row], remove: bool = True
    ) -> dict[str, Row]:
        """Items gone from the publisher go, new ones are made (uncached), changed ones take the publisher's name,
        description and type; the rows by publisher id. Names are unique in a library: an item that takes another's
        old name (a swap) first gets a name of its own for a moment."""
        if await self.store.get_library(lib["id"]) is None:
            raise errors.not_found("library", lib["id"])  # deleted meanwhile: nothing to mirror into
        by_source = {r["source_id"]: r for r in local}
        listed = {r.id for r in remote}
        if remove:
            for gone in local:
                if gone["source_id"] not in listed:
                    await self._delete(gone)
        renamed = [(by_source[r.id], r) for r in remote if r.id in by_source and by_source[r.id]["name"] != r.name]
        for moved, _ in renamed:
            await self.store.update_item(moved["id"], {"name": f"~{moved['id']}"})
        now = self.core.now()
        for r in remote:
            row = by_source.get(r.id)
            meta: dict[str, Any] = {"name": r.name, "description": r.description[:2000], "remote": dumps(r.to_json())}
            if row is None:
                if r.item_type is not None:
                    meta["type"] = r.item_type
                clash = await self.store.insert_item(
                    {
                        "id": self.core.new_id(),
                        "library_id": lib["id"],
                        "source_id": r.id,
                        "version": 1,
                        "metadata_version": 1,
                        "content_version": 1,
                        "created": now,
                        "modified": now,
                        "cached": 0,
                        "last_sync": now,
                        **meta,
                    }
                )
                if clash:
                    log.warning("library %s: the publisher's item %s is named like another one", lib["id"], r.id)
                continue
            remembered = load_json(row["remote"]) or {}
            if row["name"] != r.name or remembered.get("version") != r.version or row["description"] != r.description:
                meta.update(version=row["version"] + 1, metadata_version=row["metadata_version"] + 1, modified=now)
            if not await self.store.update_item(row["id"], {**meta, "last_sync": now}):
                log.warning("library %s: the publisher's item %s is named like another one", lib["id"], r.id)
        fresh = {r["source_id"]: r for r in await self.store.list_items(lib["id"]) if r["source_id"]}
        return {r.id: fresh[r.id] for r in remote if r.id in fresh}

    async def _delete(self, row: Row) -> None:
        """An item its publisher no longer has: gone, with its bytes (a sync session of it is canceled first)."""
        await self.cancel_session(row["id"])
        async with self.store.transaction():
            await self.store.count_removed_item(row["id"])
            blobs = await self.store.delete_item(row["id"])
        await self.core.discard_blobs(blobs)

    async def cancel_session(self, item_id: str) -> None:
        """Cancel the ACTIVE update session a sync runs on the item, if any."""
        session = await self.store.active_update_session_for(item_id)
        if session is not None and session["owner"] == SYNC_USER:
            with contextlib.suppress(errors.ApiError):
                await self.sessions.cancel(self._ctx, session["id"])

    # -- content ------------------------------------------------------------------------------------------------
    async def _fetch_all(self, lib: Row, pub: Publisher, todo: list[tuple[Row, RemoteItem]]) -> list[str]:
        """Fetch the bytes of these items, a few at a time (content.configuration's
        maximum_concurrent_item_syncs); why each one that failed did."""
        limit = asyncio.Semaphore(max(1, int((await self.config.values())["maximum_concurrent_item_syncs"])))
        failures: list[str] = []

        async def one(row: Row, remote: RemoteItem) -> None:
            async with limit:
                if await self.store.get_library(lib["id"]) is None:
                    return  # deleted meanwhile (in another process): its items went with it
                try:
                    await self.fetch(row, remote, pub)
                except errors.ApiError as e:
                    failures.append(f"{remote.name}: {e.messages[0]['default_message']}")

        await asyncio.gather(*(one(row, remote) for row, remote in todo))
        return failures

    async def fetch(self, row: Row, remote: RemoteItem, pub: Publisher) -> None:
        """The item's bytes from the publisher, through an update session of its own: all of them, or none."""
        sid = await self._session(row["id"])
        transfers = self.sessions.transfers
        try:
            if pub.auth is not None:
                transfers.credentials[sid] = pub.auth
            first = [f for f in remote.files if ovf.kind_of(f.name) in ("manifest", "certificate")]
            for f in first + [f for f in remote.files if f not in first]:
                spec = AddSpec(f.name, "PULL", TransferEndpoint(uri=f.url, **pub.transfer_endpoint), size=f.size)
                await self.sessions.add_file(self._ctx, sid, spec)
            names = {f.name for f in remote.files}
            for old in await self.store.item_files(row["id"]):
                if old["name"] not in names:
                    await self.sessions.remove_file(self._ctx, sid, old["name"])
            pulls = [live.task for (s, _), live in list(self.core.live.items()) if s == sid and live.task is not None]
            await asyncio.gather(*pulls, return_exceptions=True)
            failed = [f for f in await self.store.session_files(sid) if f["op"] == "ADD" and f["status"] == "ERROR"]
            if failed:  # why each one failed (complete would only name them)
                reasons = [str((load_json(f["error_message"]) or {}).get("default_message", f["name"])) for f in failed]
                raise errors.ApiError("ERROR", SYNC_FAILED, " ".join(reasons))
            await self.sessions.complete(self._ctx, sid)
            state = await self.sessions.session(sid)
            if state["state"] != "DONE":
                reason = load_json(state["error_message"]) or {}
                raise errors.ApiError("ERROR", SYNC_FAILED, reason.get("default_message", "the sync failed"))
        except errors.ApiError as e:
            with contextlib.suppress(errors.ApiError):
                await self.sessions.fail(self._ctx, sid, e.messages[0]["default_message"])
            raise
        except BaseException:
            with contextlib.suppress(Exception):
                await self.sessions.cancel(self._ctx, sid)
            raise
        finally:
            transfers.credentials.pop(sid, None)
        await self.store.update_item(
            row["id"], {"cached": 1, "synced_content": remote.content_version, "last_sync": self.core.now()}
        )

    async def _session(self, item_id: str) -> str:
        """A new update session of the item for the sync; one a sync left ACTIVE (its server died) is canceled."""
        spec = UpdateSessionModel(
            library_item_id=item_id, warning_behavior=[WarningBehavior(w, True) for w in _WARNINGS]
        )
        try:
            return await self.sessions.create_unchecked(self._ctx, spec)
        except errors.ApiError as e:
            other = await self.store.active_update_session_for(item_id)
            if e.error_type != "RESOURCE_BUSY" or other is None or other["owner"] != SYNC_USER:
                raise
        with contextlib.suppress(errors.ApiError):
            await self.sessions.cancel(self._ctx, other["id"])
        return await self.sessions.create_unchecked(self._ctx, spec)


def _stale(row: Row, remote: RemoteItem) -> bool:
    """Whether the item's bytes must be fetched: it has none, or not those of the publisher's content version."""
    return not row["cached"] or row["synced_content"] != remote.content_version


def automatic_due(now: float, config: dict[str, bool | int], enabled: bool, last: float) -> bool:
    """Whether a library's automatic sync is due: automatic sync on for it and for the service, the hour within
    the window, and `automatic_sync_refresh_interval` minutes since its last attempt."""
    if not (enabled and config["automatic_sync_enabled"] and _in_window(now, config)):
        return False
    return now - last >= float(config["automatic_sync_refresh_interval"]) * 60


def _in_window(now: float, config: dict[str, bool | int]) -> bool:
    """Whether the hour (UTC) is within content.configuration's automatic sync window (start == stop: all day)."""
    hour = time.gmtime(now).tm_hour
    start, stop = int(config["automatic_sync_start_hour"]), int(config["automatic_sync_stop_hour"])
    if start == stop:
        return True
    return start <= hour < stop if start < stop else hour >= start or hour < stop
