"""The VCSP feed (VMware Content Subscription Protocol, version 2) of a published local library: what a vCenter
subscribed library reads at the library's `publish_url` to synchronize. docs/vcsp.md describes the format and where
it comes from (VMware's `make_vcsp_2018.py`, the vCloud Director endpoint specification).

    {publish_url}                 lib.json    the library: vcspVersion "2", version, id urn:uuid:..., itemsHref
    items.json                                every item, as in its item.json
    {item_id}/item.json                       one item: version, contentVersion, type, files (name, size, etag,
                                              generationNum, hrefs)
    {item_id}/{file_name}                     a file's bytes (`{item_id}/file/{file_name}` too: a file named
                                              item.json has only that one)

Versions are what subscribers compare to decide what to fetch again, so they only grow, and every one is derived
from counters kept in the database (the same in every worker and replica, and after a restart): the library's
`version` is Store.feed_version, an item's is the sum of its metadata, content and publish versions, and a file's
etag (a number: vCenter reads it as a long) and generationNum are the item's content version, the same for every
file of the item and raised by every change of its bytes, as the vCloud Director specification asks.

An OVF item carries its descriptor and disks; the server keeps no manifest after an upload, so the feed adds one,
`{descriptor stem}.mf`, with the SHA-1 of every file as recorded when it was uploaded. An ISO item carries its one
image.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import msgspec

from contentlib import errors
from contentlib.model import fmt_time
from contentlib.services import ovf
from contentlib.services.auth import _THROTTLE_AFTER, _THROTTLE_FORGET, throttle_delay
from contentlib.services.core import Core, load_json
from contentlib.services.publish_info import USER_NAME, credential_sha256, verify
from contentlib.storage.sql import Row

log = logging.getLogger("contentlib.vcsp")

VCSP_VERSION = "2"
ITEM_FILE = "item.json"
ITEMS_FILE = "items.json"
ITEMS_CACHE_BYTES = 64 * 1024 * 1024  # encoded items.json bodies kept per process (VcspFeed.items_body)
CAPABILITIES = {"transferIn": ["httpGet"], "transferOut": ["httpGet"]}


@dataclass(frozen=True)
class FeedFile:
    """A file of the feed: bytes of a blob, or (the generated manifest) bytes made here."""

    name: str
    size: int
    generation: int  # the item's content version: its `etag` and `generationNum` in item.json
    blob_id: str | None = None
    data: bytes | None = None


def vcsp_type(item_type: str | None, names: list[str]) -> str:
    """`vcsp.ovf` for an OVF template, `vcsp.iso` for an ISO image, `vcsp.other` for anything else (the types of
    make_vcsp_2018.py)."""
    kind = (item_type or "").lower()
    if kind == "ovf" or any(ovf.kind_of(n) == "descriptor" for n in names):
        return "vcsp.ovf"
    if kind == "iso" or (len(names) == 1 and names[0].lower().endswith(".iso")):
        return "vcsp.iso"
    return "vcsp.other"


def _manifest(files: list[Row], generation: int) -> FeedFile | None:
    """The manifest the feed adds to an OVF item that has a descriptor and no manifest: `SHA1(name)= digest` for
    the descriptor and every other file (the OVF manifest format; digests recorded when each file was uploaded)."""
    names = [f["file_name"] for f in files]
    descriptors = [n for n in names if ovf.kind_of(n) == "descriptor"]
    if not descriptors or any(ovf.kind_of(n) == "manifest" for n in names):
        return None
    name = descriptors[0].rsplit(".", 1)[0] + ".mf"
    data = "".join(f"SHA1({f['file_name']})= {f['file_sha1'].lower()}\n" for f in files).encode()
    return FeedFile(name, len(data), generation, data=data)


def _href(item_id: str, name: str) -> str:
    if name == ITEM_FILE:  # that path is the item's descriptor
        return f"{quote(item_id, safe='')}/file/{quote(name, safe='')}"
    return f"{quote(item_id, safe='')}/{quote(name, safe='')}"


class VcspFeed:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.store = core.store
        # library id -> (feed version, items.json encoded), least recently used first; ITEMS_CACHE_BYTES at most
        self._items: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self._items_bytes = 0

    async def library(self, library_id: str, credentials: tuple[str, str] | None) -> Row:
        """The published library the feed is asked for: NOT_FOUND unless it is a local library whose
        `publish_info.published` is true (even to a caller with its password); with BASIC authentication,
        UNAUTHENTICATED unless the caller sends the user `vcsp` and the library's publish password. Wrong passwords
        are counted per library like failed logins (in the database) and, after a few in a row, answered slowly."""
        row = await self.store.get_library(library_id)
        info = {} if row is None else load_json(row["extra"]).get("publish_info") or {}
        if row is None or row["type"] != "LOCAL" or info.get("published") is not True:
            raise errors.not_found("library", library_id)
        if info.get("authentication_method") == "BASIC":
            if credentials is None:
                raise errors.unauthenticated(
                    f"The library {library_id} is published with BASIC authentication: send the user "
                    f"'{USER_NAME}' and the library's password."
                )
            await self._check_password(row, *credentials)
        return row

    async def _check_password(self, library: Row, user: str, password: str) -> None:
        key = f"vcsp:{library['id']}"
        failures = await self.store.login_failures(key)
        if failures is not None and (delay := throttle_delay(failures["count"], failures["last"], self.core.now())):
            await asyncio.sleep(delay)
        stored = library["publish_password"]
        if user == USER_NAME and credential_sha256(password) in await self.store.subscription_tokens(library["id"]):
            return  # the credential of one of the library's subscriptions on this server (services/subscriptions.py)
        if user != USER_NAME or stored is None or not await verify(stored, password):
            now = self.core.now()
            if await self.store.record_login_failure(key, now, now - _THROTTLE_FORGET) == _THROTTLE_AFTER:
                log.warning("wrong credentials for the VCSP feed of library %s: throttling its attempts", library["id"])
            raise errors.unauthenticated(f"Wrong user name or password for the library {library['id']}.")
        if failures is not None:
            await self.store.clear_login_failures(key)

    async def version(self, library: Row) -> int:
        """The feed's version (lib.json `version`). Read it before the document it labels (lib_json, items_json):
        a change in between then labels a newer document with an older version, which only makes a subscriber
        fetch it again, never keep an older document under a newer version."""
        return await self.store.feed_version(library["id"])

    async def lib_json(self, library: Row, version: int) -> dict[str, Any]:
        """lib.json at `version` (read before): the library's name is read again after it."""
        row = await self.store.get_library(library["id"]) or library
        return {
            "vcspVersion": VCSP_VERSION,
            "version": str(version),
            "contentVersion": str(version),
            "name": row["name"],
            "id": f"urn:uuid:{library['id']}",
            "created": fmt_time(library["created"]),
            "capabilities": CAPABILITIES,
            "itemsHref": ITEMS_FILE,
        }

    async def items_body(self, library: Row, version: int) -> bytes:
        """items.json, encoded, at `version` (read before, see `version`). The last one made for each library is
        kept in this process while the feed's version stays the same: every change a subscriber must see raises
        the version (docs/vcsp.md, "Versions"), so a kept body is never older than the version that finds it, in
        every worker and replica alike. A library of 10,000 items is a 4 MB body that takes a core ~0.2 s to make;
        ITEMS_CACHE_BYTES bounds what is kept (the least recently used go first)."""
        key = library["id"]
        kept = self._items.get(key)
        if kept is not None and kept[0] == version:
            self._items.move_to_end(key)
            return kept[1]
        body = msgspec.json.encode(await self.items_json(library))
        if kept is not None:
            self._items_bytes -= len(self._items.pop(key)[1])
        if len(body) <= ITEMS_CACHE_BYTES:
            self._items[key] = (version, body)
            self._items_bytes += len(body)
            while self._items_bytes > ITEMS_CACHE_BYTES:
                self._items_bytes -= len(self._items.popitem(last=False)[1][1])
        return body

    async def items_json(self, library: Row) -> dict[str, Any]:
        return {"items": [item for item, _ in await self.items_with_files(library)]}

    async def items_with_files(self, library: Row) -> list[tuple[dict[str, Any], list[FeedFile]]]:
        """Every item as items.json lists it, with its files in the order of its `files`, from one read."""
        grouped: dict[str, list[Row]] = {}
        for row in await self.store.feed_items(library["id"]):
            grouped.setdefault(row["id"], []).append(row)
        return [(self._item(rows), self._files(rows)) for rows in grouped.values()]

    async def item_json(self, library: Row, item_id: str) -> dict[str, Any]:
        return self._item(await self._rows(library, item_id))

    async def file(self, library: Row, item_id: str, name: str) -> FeedFile:
        rows = await self._rows(library, item_id)
        for f in self._files(rows):
            if f.name == name:
                return f
        raise errors.not_found("file", f"'{name}' of library item {item_id}")

    async def _rows(self, library: Row, item_id: str) -> list[Row]:
        rows = await self.store.feed_items(library["id"], item_id)
        if not rows:
            raise errors.not_found("library item", item_id)
        return rows

    @staticmethod
    def _files(rows: list[Row]) -> list[FeedFile]:
        files = [r for r in rows if r["file_name"] is not None]
        generation = int(rows[0]["content_version"])
        feed = [FeedFile(f["file_name"], int(f["file_size"]), generation, blob_id=f["file_blob"]) for f in files]
        if vcsp_type(rows[0]["type"], [f["file_name"] for f in files]) == "vcsp.ovf":
            manifest = _manifest(files, generation)
            if manifest is not None:
                feed.append(manifest)
        return feed

    def _item(self, rows: list[Row]) -> dict[str, Any]:
        item = rows[0]
        content = int(item["content_version"])
        files = self._files(rows)
        return {
            "created": fmt_time(item["created"]),
            "description": item["description"],
            "version": str(item["version"] + content + item["publish_version"]),
            "contentVersion": str(content),
            "files": [
                {
                    "name": f.name,
                    "size": f.size,
                    "etag": str(content),
                    "generationNum": content,
                    "hrefs": [_href(item["id"], f.name)],
                }
                for f in files
            ],
            "id": f"urn:uuid:{item['id']}",
            "name": item["name"],
            "properties": {},
            "selfHref": f"{quote(item['id'], safe='')}/{ITEM_FILE}",
            "type": vcsp_type(item["type"], [f.name for f in files]),
        }
