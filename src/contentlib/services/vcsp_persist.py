"""`publish_info.persist_json_enabled`: the VCSP feed of a published library also written into the storage, as
vCenter writes a library's JSON files to its storage backing beside its files, so that a plain file server (or an
S3 bucket's web endpoint) serves the whole feed.

    vcsp/<library id>/lib.json               under the data dir on local disk, under the bucket's prefix on S3
    vcsp/<library id>/items.json
    vcsp/<library id>/<item id>/item.json
    vcsp/<library id>/<item id>/<file name>   the item's files: hard links to their blobs on disk, copies on S3

The documents are the feed's own (services/vcsp.py), made at the feed version read before them. The sweeper's
process (one replica at a time; a loop of its own, app.py) brings them up to date every `--sweep-interval`: a
library whose feed version is not the one recorded in the meta table (`vcsp-persisted:<library id>`, the version
and the format generation last written) is written again: the files of every item whose contentVersion differs
from the items.json written before, and the item.json of every item whose version does (every item, when that one
cannot be read back or has another format), WRITES_AT_ONCE at a time, then items.json, then lib.json, last: a
reader that sees the new lib.json finds the new items and files, and a write cut short is completed by the next
tick (items.json says what was whole). Then what belongs to no item any more is deleted. A library no longer
published with `persist_json_enabled` (or no longer there) loses the folder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any
from urllib.parse import unquote

import msgspec

from contentlib.services.core import load_json
from contentlib.services.vcsp import ITEMS_FILE, VcspFeed
from contentlib.storage.blobs import BlobStore
from contentlib.storage.sql import Row, SqlStore

log = logging.getLogger("contentlib.vcsp")

META_PREFIX = "vcsp-persisted:"
PREFIX = "vcsp"
# Raised whenever the persisted documents of the same versions change: everything is written again.
_FORMAT = 1
WRITES_AT_ONCE = 16


def folder(library_id: str) -> str:
    return f"{PREFIX}/{library_id}/"


def persisted(library: Row) -> bool:
    """Whether the library's feed is to be kept in the storage: a local library published with
    `persist_json_enabled` true."""
    info = load_json(library["extra"]).get("publish_info") or {}
    return library["type"] == "LOCAL" and info.get("published") is True and info.get("persist_json_enabled") is True


class FeedPersister:
    def __init__(self, feed: VcspFeed, store: SqlStore, blobs: BlobStore) -> None:
        self.feed = feed
        self.store = store
        self.blobs = blobs

    async def sync(self) -> int:
        """Bring every persisted feed up to date, and remove the ones no longer wanted; how many were written."""
        written = await self.store.meta_under(META_PREFIX)
        count = 0
        for library in await self.store.list_libraries("LOCAL"):
            if not persisted(library):
                continue
            stamp = written.pop(library["id"], None)
            version = await self.feed.version(library)
            if stamp != _stamp(version):
                await self.write(library, version, stamp)
                count += 1
        for library_id in written:  # unpublished, persist_json_enabled turned off, or deleted
            await self.blobs.delete_documents(await self.blobs.list_documents(folder(library_id)))
            await self.store.delete_meta(META_PREFIX + library_id)
        return count

    async def write(self, library: Row, version: int, stamp: str | None) -> None:
        top = folder(library["id"])
        entries = await self.feed.items_with_files(library)
        items = [item for item, _ in entries]
        before = await self._items_written(top) if stamp is not None and stamp.endswith(f"-f{_FORMAT}") else {}
        keep = {top + "lib.json", top + ITEMS_FILE}
        writes: list[Coroutine[Any, Any, None]] = []
        for item, files in entries:
            old = before.get(item["selfHref"])
            same_bytes = old is not None and old[1] == item["contentVersion"]
            for f, entry in zip(files, item["files"], strict=True):
                key = top + unquote(entry["hrefs"][0])
                keep.add(key)
                if same_bytes:
                    continue
                if f.data is not None:
                    writes.append(self.blobs.put_document(key, f.data))
                else:
                    assert f.blob_id is not None
                    writes.append(self.blobs.copy_to_document(f.blob_id, key))
            keep.add(top + item["selfHref"])
            if old is None or old[0] != item["version"]:
                writes.append(self.blobs.put_document(top + item["selfHref"], msgspec.json.encode(item)))
        await _run_bounded(writes)  # every item whole before items.json and lib.json say it is there
        await self.blobs.put_document(top + ITEMS_FILE, msgspec.json.encode({"items": items}))
        await self.blobs.put_document(top + "lib.json", msgspec.json.encode(await self.feed.lib_json(library, version)))
        await self.blobs.delete_documents([key for key in await self.blobs.list_documents(top) if key not in keep])
        await self.store.set_meta(META_PREFIX + library["id"], _stamp(version))
        log.info(
            "wrote the VCSP feed of library %s at version %d to %s",
            library["id"],
            version,
            self.blobs.document_uri(top + "lib.json"),
        )

    async def _items_written(self, top: str) -> dict[str, tuple[str, str]]:
        """selfHref -> (version, contentVersion) of each item in the items.json written before; empty when it
        cannot be read back."""
        data = await self.blobs.read_document(top + ITEMS_FILE)
        try:
            listed = msgspec.json.decode(data or b"")["items"]
            return {str(i["selfHref"]): (str(i["version"]), str(i["contentVersion"])) for i in listed}
        except (msgspec.DecodeError, KeyError, TypeError):
            return {}


async def _run_bounded(writes: list[Coroutine[Any, Any, None]]) -> None:
    """The writes, WRITES_AT_ONCE at a time (S3 requests wait on the network; a disk's are short)."""
    gate = asyncio.Semaphore(WRITES_AT_ONCE)

    async def one(write: Coroutine[Any, Any, None]) -> None:
        async with gate:
            await write

    await asyncio.gather(*(one(w) for w in writes))


def _stamp(version: int) -> str:
    return f"{version}-f{_FORMAT}"
