"""Download sessions (`com.vmware.content.library.item.download_session`) and their files
(`...item.downloadsession.file`).

`prepare` pins the file's current blob to the session, so a download keeps its bytes even if an update session
replaces the file meanwhile (the garbage collector keeps blobs that ACTIVE download sessions point at).

An item of an on-demand subscribed library may have no bytes here yet: its files are those its publisher lists,
and a `prepare` of one asks for the item's content (a sync, services/subscriber.py) and is PREPARING (its row has
no blob yet) until the content has arrived, when the next look at the file makes it PREPARED.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from contentlib import errors
from contentlib.model import DownloadSessionModel, EndpointType
from contentlib.services.core import Ctx
from contentlib.services.libraries import remote_files
from contentlib.services.sessions import ItemSessions
from contentlib.storage.sql import Row


class DownloadSessions(ItemSessions):
    kind = "download"
    noun = "download session"
    msg_prefix = "com.vmware.content.downloadsession"

    fetch: Callable[[Row], Awaitable[None]] | None = None  # asks for the content of an uncached item (App sets it)

    async def _release(self, sid: str) -> None:
        await self.core.discard_blobs([f["blob_id"] for f in await self.store.download_files(sid)])

    async def create(self, ctx: Ctx, create_spec: DownloadSessionModel, client_token: str | None = None) -> str:
        return await self._create(ctx, create_spec.library_item_id, client_token)

    async def get(self, ctx: Ctx, download_session_id: str) -> dict[str, Any]:
        return self.base_model(await self.session(download_session_id))

    async def delete(self, ctx: Ctx, download_session_id: str) -> None:
        await self._delete(download_session_id, allow_active=True)  # only NotFound is documented for delete

    async def keep_alive(self, ctx: Ctx, download_session_id: str, progress: int | None = None) -> None:
        await self._keep_alive(download_session_id, progress, "progress")

    async def cancel(self, ctx: Ctx, download_session_id: str) -> None:
        await self._cancel(download_session_id)

    async def fail(self, ctx: Ctx, download_session_id: str, client_error_message: str) -> None:
        await self._fail(download_session_id, client_error_message)

    # -- files -----------------------------------------------------------------------------------------------
    def _info(self, ctx: Ctx, item_file: Row, prepared: Row | None) -> dict[str, Any]:
        if prepared is None or not prepared["blob_id"]:
            info = {
                "name": item_file["name"],
                "bytes_transferred": 0,
                "status": "UNPREPARED" if not prepared else "PREPARING",
            }
            if item_file.get("size") is not None:
                info["size"] = item_file["size"]
            return info
        quoted = urllib.parse.quote(prepared["name"], safe="")
        return {
            "name": prepared["name"],
            "size": prepared["size"],
            "bytes_transferred": prepared["bytes_transferred"],
            "status": "PREPARED",
            "download_endpoint": {"uri": f"{ctx.base_url}/cls/download/{prepared['token']}/{quoted}"},
            "checksum_info": {"algorithm": "SHA1", "checksum": prepared["sha1"]},
        }

    async def _files(self, sid: str) -> tuple[Row, dict[str, Row], dict[str, Row]]:
        """The session, the item's files (those its publisher lists, without blobs, while it is not cached), and
        the prepared ones (a PREPARING one whose content has arrived becomes PREPARED here)."""
        row = await self.session(sid)
        item = await self.libraries.item(row["item_id"])
        current = {f["name"]: f for f in await self.store.item_files(row["item_id"])}
        if not item["cached"]:
            current = {
                f["name"]: {"name": f["name"], "size": f.get("size"), "blob_id": "", "sha1": ""}
                for f in remote_files(item)
            }
        prepared = {f["name"]: f for f in await self.store.download_files(sid)}
        for name, f in prepared.items():
            arrived = current.get(name)
            if not f["blob_id"] and arrived is not None and arrived["blob_id"]:
                prepared[name] = {**f, **self._pinned(arrived)}
                await self.store.put_download_file(prepared[name])
        return row, current, prepared

    @staticmethod
    def _pinned(f: Row) -> Row:
        return {"blob_id": f["blob_id"], "size": f["size"], "sha1": f["sha1"], "bytes_transferred": f["size"]}

    async def list_files(self, ctx: Ctx, download_session_id: str) -> list[dict[str, Any]]:
        _, current, prepared = await self._files(download_session_id)
        names = list(dict.fromkeys([*current, *prepared]))
        return [self._info(ctx, prepared.get(n) or current[n], prepared.get(n)) for n in names]

    async def get_file(self, ctx: Ctx, download_session_id: str, file_name: str) -> dict[str, Any]:
        _, current, prepared = await self._files(download_session_id)
        if file_name in prepared:
            return self._info(ctx, prepared[file_name], prepared[file_name])
        if file_name in current:
            return self._info(ctx, current[file_name], None)
        raise self.no_such_file(download_session_id, file_name)

    async def prepare(
        self, ctx: Ctx, download_session_id: str, file_name: str, endpoint_type: EndpointType | None = None
    ) -> dict[str, Any]:
        async with self.store.transaction():
            row, current, _ = await self._files(download_session_id)
            self.require_active(row, "prepare a file of")
            f = current.get(file_name)
            if f is None:
                raise self.no_such_file(download_session_id, file_name)
            entry: Row = {"session_id": download_session_id, "name": file_name, "token": self.core.new_token()}
            if f["blob_id"]:
                entry.update(self._pinned(f))
            else:  # not here yet: PREPARING until the item's content has arrived
                entry.update(blob_id="", size=f["size"] or 0, sha1="", bytes_transferred=0)
            await self.store.put_download_file(entry)
            await self.touch(download_session_id)
        if not f["blob_id"]:
            if self.fetch is not None:
                await self.fetch(await self.libraries.item(row["item_id"]))
            return self._info(ctx, f, entry)
        info = self._info(ctx, entry, entry)
        if endpoint_type == "DIRECT":
            info["download_endpoint"] = {"uri": self.core.blobs.direct_uri(f["blob_id"])}
        return info

    async def open_download(self, token: str, name: str) -> str:
        """The blob id behind a download URL, for the data plane; the URL token is the credential."""
        f = await self.store.download_file_by_token(token)
        if f is None or f["name"] != name:
            raise errors.not_found("download endpoint", f"/cls/download/{token[:6]}…/{name}")
        session = await self.session(f["session_id"])
        self.require_active(session, "download from")
        if not f["blob_id"]:
            raise errors.not_allowed(
                f"The file '{name}' is still being prepared (its content is on its way from the publisher).", name
            )
        await self.note_activity(session)
        return str(f["blob_id"])
