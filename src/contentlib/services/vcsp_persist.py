"""`publish_info.persist_json_enabled`: the VCSP feed of a published library also written into the storage, as
vCenter writes a library's JSON files to its storage backing, so that a plain file server (or an S3 bucket's web
endpoint) can serve the documents.

    vcsp/<library id>/lib.json               under the data dir on local disk, under the bucket's prefix on S3
    vcsp/<library id>/items.json
    vcsp/<library id>/<item id>/item.json

The documents are the feed's own (services/vcsp.py), made at the feed version read before them. The sweeper (one
replica at a time) brings them up to date on every tick: a library whose feed version is not the one recorded in
the meta table (`vcsp-persisted:<library id>`, the version and the format generation last written) is written
again: the item.json of every item whose version differs from the items.json written before (or of every item,
when that one cannot be read back or has another format), then items.json, then lib.json, last, so that a
subscriber that sees the new lib.json finds the new items; then the documents of items that are gone are deleted.
A library that is no longer published with `persist_json_enabled` (or no longer exists) loses its documents.

Only the documents are written: the files' bytes stay blobs, so the `hrefs` of the persisted item.json (relative,
`<item id>/<file name>`) name files that a server of the documents alone does not have.
"""

from __future__ import annotations

import logging
from typing import Any

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
        items_body = await self.feed.items_body(library, version)
        items: list[dict[str, Any]] = msgspec.json.decode(items_body)["items"]
        before = await self._items_written(top) if stamp is not None and stamp.endswith(f"-f{_FORMAT}") else {}
        for item in items:
            if before.get(item["selfHref"]) != item["version"]:
                await self.blobs.put_document(top + item["selfHref"], msgspec.json.encode(item))
        await self.blobs.put_document(top + ITEMS_FILE, items_body)
        await self.blobs.put_document(top + "lib.json", msgspec.json.encode(await self.feed.lib_json(library, version)))
        keep = {top + "lib.json", top + ITEMS_FILE} | {top + item["selfHref"] for item in items}
        stale = [key for key in await self.blobs.list_documents(top) if key not in keep]
        await self.blobs.delete_documents(stale)
        await self.store.set_meta(META_PREFIX + library["id"], _stamp(version))
        log.info(
            "wrote the VCSP feed of library %s at version %d to %s",
            library["id"],
            version,
            self.blobs.document_uri(top + "lib.json"),
        )

    async def _items_written(self, top: str) -> dict[str, str]:
        """selfHref -> version of each item in the items.json written before; empty when it cannot be read back."""
        data = await self.blobs.read_document(top + ITEMS_FILE)
        try:
            listed = msgspec.json.decode(data or b"")["items"]
            return {str(i["selfHref"]): str(i["version"]) for i in listed}
        except (msgspec.DecodeError, KeyError, TypeError):
            return {}


def _stamp(version: int) -> str:
    return f"{version}-f{_FORMAT}"
