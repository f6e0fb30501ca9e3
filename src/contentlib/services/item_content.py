"""An item's content beyond its file list: copying it (`library.item.copy`), where its files are stored
(`library.item.storage`), and the history of its content versions (`library.item.changes`).

A copy shares its source's bytes: the new item's file rows point at the same blobs, in the same transaction that
creates it, and a blob is deleted only when no item references it any more (`Core.discard_blobs`, the garbage
collector's `referenced_blobs`), so deleting either item, or sweeping the update session that uploaded the bytes,
never takes them from the other.

Every change of an item's content is recorded with the content version it produced: each `complete` of an update
session that changed the files (`record_change`, called inside its transaction) and each copy (version 1 of the
new item). Changes are deleted with their item.
"""

from __future__ import annotations

import re
from typing import Any

from contentlib import errors
from contentlib.model import ItemModel, fmt_time
from contentlib.services.core import Core, Ctx, check_client_token, load_json
from contentlib.services.libraries import Libraries
from contentlib.storage.sql import Row

_SHORT_MESSAGE = 80
_VERSION = re.compile(r"[1-9][0-9]{0,17}")  # a content version as this server writes them (a positive long)


def short_message(message: str) -> str:
    """`Changes.Summary.short_message`: "truncated to the first 80 characters or first non-leading newline
    character, whichever length is shorter"."""
    return message.lstrip("\r\n").split("\n", 1)[0].rstrip("\r")[:_SHORT_MESSAGE]


async def record_change(core: Core, item_id: str, version: int, user: str, message: str) -> None:
    """Record that the item's content became `version` now (inside the caller's transaction)."""
    await core.store.add_item_change(item_id, version, core.now(), user or None, message or None)


class ItemContent:
    def __init__(self, core: Core, libraries: Libraries) -> None:
        self.core = core
        self.store = core.store
        self.libraries = libraries

    # -- copy ------------------------------------------------------------------------------------------------------
    async def copy(
        self,
        ctx: Ctx,
        source_library_item_id: str,
        destination_create_spec: ItemModel,
        client_token: str | None = None,
    ) -> str:
        """A new item with the source's files (the same blobs, each file at version 1). What the spec leaves unset
        is the source's: the library (a copy within it), the name, the description and the type. `source_id` is the
        source's own `source_id`, or else the source's id (vSphere 9.1's rule)."""
        token = check_client_token(client_token)
        if token is not None and (row := await self.store.item_by_token(token)) is not None:
            return str(row["id"])
        spec = destination_create_spec
        self.libraries.check_item_text(spec.name, spec.description, "destination_create_spec")
        item_id = self.core.new_id()
        now = self.core.now()
        async with self.store.transaction():
            source = await self.libraries.item(source_library_item_id)
            if not source["cached"]:
                raise errors.not_allowed(
                    f"Cannot copy the library item {source_library_item_id}: its content is not cached here (it is "
                    "an item of an on-demand subscribed library); sync it with force_sync_content first.",
                    source_library_item_id,
                    msg_id="com.vmware.content.library.item.not_cached",
                )
            library = await self.libraries.library(source["library_id"] if spec.library_id is None else spec.library_id)
            if library["type"] != "LOCAL":
                raise errors.ApiError(
                    "INVALID_ELEMENT_TYPE",
                    "com.vmware.content.library.not_local",
                    f"Cannot copy into the library {library['id']}: it is a subscribed library.",
                    library["id"],
                )
            name = source["name"] if spec.name is None else spec.name
            clash = await self.store.insert_item(
                {
                    "id": item_id,
                    "library_id": library["id"],
                    "name": name,
                    "description": source["description"] if spec.description is None else spec.description,
                    "type": source["type"] if spec.type is None else spec.type or None,
                    "source_id": source["source_id"] or source["id"],
                    "version": 1,
                    "metadata_version": 1,
                    "content_version": 1,
                    "created": now,
                    "modified": now,
                    "client_token": token,
                }
            )
            if clash == "name":
                raise errors.already_exists(
                    f"An item named '{name}' already exists in the library {library['id']}.", name, library["id"]
                )
            if clash is None:
                await self.store.copy_item_files(source["id"], item_id)
                await record_change(
                    self.core,
                    item_id,
                    1,
                    ctx.user,
                    f"Copied from the library item {source['id']}.\n"
                    f"The source's content version was {source['content_version']}.",
                )
        if clash == "token":  # a retried copy with the same client token
            row = await self.store.item_by_token(token or "")
            assert row is not None
            return str(row["id"])
        return item_id

    # -- storage -------------------------------------------------------------------------------------------------
    def storage_info(self, row: Row, backing: dict[str, Any]) -> dict[str, Any]:
        """`Storage.Info`: the file's `File.Info` plus where its bytes are (a `file://` URI of the blob file on the
        disk store, `s3://bucket/key` on S3) and the library's storage backing."""
        return {
            **self.libraries.file_info(row),
            "storage_backing": backing,
            "storage_uris": [self.core.blobs.direct_uri(row["blob_id"])],
        }

    async def _backing(self, item: Row) -> dict[str, Any]:
        library = await self.libraries.library(item["library_id"])
        backings: list[dict[str, Any]] = load_json(library["storage_backings"])
        return backings[0] if backings else {"type": "OTHER"}

    async def list_storage(self, ctx: Ctx, library_item_id: str) -> list[dict[str, Any]]:
        item = await self.libraries.item(library_item_id)
        backing = await self._backing(item)
        return [self.storage_info(f, backing) for f in await self.store.item_files(library_item_id)]

    async def get_storage(self, ctx: Ctx, library_item_id: str, file_name: str) -> list[dict[str, Any]]:
        item = await self.libraries.item(library_item_id)
        row = await self.store.item_file(library_item_id, file_name)
        if row is None:
            raise errors.not_found("file", f"'{file_name}' of library item {library_item_id}")
        return [self.storage_info(row, await self._backing(item))]

    # -- changes -------------------------------------------------------------------------------------------------
    async def list_changes(self, ctx: Ctx, library_item: str) -> list[dict[str, Any]]:
        """`Changes.Summary` of every recorded content change of the item, the newest first."""
        await self.libraries.item(library_item)
        summaries = []
        for row in await self.store.item_changes(library_item):
            summary: dict[str, Any] = {"version": str(row["version"]), "time": fmt_time(row["changed"])}
            if row["user_name"] is not None:
                summary["user"] = row["user_name"]
            if row["message"] is not None:
                summary["short_message"] = short_message(row["message"])
            summaries.append(summary)
        return summaries

    async def get_change(self, ctx: Ctx, library_item: str, version: str) -> dict[str, Any]:
        await self.libraries.item(library_item)
        row = await self.store.item_change(library_item, int(version)) if _VERSION.fullmatch(version) else None
        if row is None:
            raise errors.ApiError(
                "NOT_FOUND",
                "com.vmware.content.library.item.version.not_found",
                f"The library item {library_item} has no recorded change to version {version}.",
                library_item,
                version,
            )
        info: dict[str, Any] = {"time": fmt_time(row["changed"])}
        if row["user_name"] is not None:
            info["user"] = row["user_name"]
        if row["message"] is not None:
            info["message"] = row["message"]
        return info
