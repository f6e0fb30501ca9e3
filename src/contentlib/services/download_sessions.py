"""Download sessions (`com.vmware.content.library.item.download_session`) and their files
(`...item.downloadsession.file`).

`prepare` pins the file's current blob to the session, so a download keeps its bytes even if an update session
replaces the file meanwhile (the garbage collector keeps blobs that ACTIVE download sessions point at).
"""

from __future__ import annotations

import contextlib
import urllib.parse
from pathlib import Path
from typing import Any

from contentlib import errors
from contentlib.model import DownloadSessionModel, EndpointType
from contentlib.services.core import Core, Ctx, check_client_token, load_json, message_json
from contentlib.services.libraries import Libraries
from contentlib.storage.sqlite import Row, TokenTaken

ACTIVE = "ACTIVE"


class DownloadSessions:
    def __init__(self, core: Core, libraries: Libraries) -> None:
        self.core = core
        self.store = core.store
        self.libraries = libraries

    def session_model(self, row: Row) -> dict[str, Any]:
        model: dict[str, Any] = {
            "library_item_id": row["item_id"],
            "library_item_content_version": str(row["content_version"]),
            "client_progress": row["client_progress"],
            "state": row["state"],
            "expiration_time": self.core.expiration(row["last_activity"]),
        }
        if row["error_message"] is not None:
            model["error_message"] = load_json(row["error_message"])
        return model

    async def session(self, sid: str) -> Row:
        row = await self.store.get_download_session(sid)
        if row is None:
            raise errors.not_found("download session", sid)
        return row

    @staticmethod
    def require_active(row: Row, operation: str) -> None:
        if row["state"] != ACTIVE:
            raise errors.not_allowed(
                f"Cannot {operation} the download session {row['id']}: it is {row['state']}, not ACTIVE.",
                row["id"],
                row["state"],
                msg_id="com.vmware.content.downloadsession.not_active",
            )

    async def touch(self, sid: str) -> None:
        await self.store.update_download_session(sid, {"last_activity": self.core.now()}, state=ACTIVE)

    async def create(self, ctx: Ctx, create_spec: DownloadSessionModel, client_token: str | None = None) -> str:
        token = check_client_token(client_token)
        if token is not None and (row := await self.store.download_session_by_token(token)) is not None:
            return str(row["id"])
        if not create_spec.library_item_id:
            raise errors.invalid_argument("create_spec.library_item_id is required: the item to download.")
        item = await self.libraries.item(create_spec.library_item_id)
        sid = self.core.new_id()
        try:
            await self.store.insert_download_session(
                {
                    "id": sid,
                    "item_id": item["id"],
                    "user": ctx.user,
                    "content_version": item["content_version"],
                    "state": ACTIVE,
                    "client_progress": 0,
                    "error_message": None,
                    "last_activity": self.core.now(),
                    "ended": None,
                    "client_token": token,
                }
            )
        except TokenTaken:
            row = await self.store.download_session_by_token(token or "")
            assert row is not None
            return str(row["id"])
        return sid

    async def get(self, ctx: Ctx, download_session_id: str) -> dict[str, Any]:
        return self.session_model(await self.session(download_session_id))

    async def list_ids(self, ctx: Ctx, library_item_id: str | None = None) -> list[str]:
        if library_item_id is not None:
            await self.libraries.item(library_item_id)
        return await self.store.list_download_sessions(ctx.user, library_item_id)

    async def delete(self, ctx: Ctx, download_session_id: str) -> None:
        async with self.store.transaction():
            await self.session(download_session_id)
            blobs = [f["blob_id"] for f in await self.store.download_files(download_session_id)]
            await self.store.delete_download_session(download_session_id)
        await self.core.discard_blobs(blobs)

    async def keep_alive(self, ctx: Ctx, download_session_id: str, progress: int | None = None) -> None:
        async with self.store.transaction():
            row = await self.session(download_session_id)
            self.require_active(row, "keep alive")
            fields: dict[str, Any] = {"last_activity": self.core.now()}
            if progress is not None:
                if not 0 <= progress <= 100:
                    raise errors.invalid_argument(f"progress must be between 0 and 100, got {progress}.", progress)
                if progress < row["client_progress"]:
                    raise errors.invalid_argument(
                        f"progress {progress} is below the current progress {row['client_progress']}.", progress
                    )
                fields["client_progress"] = progress
            await self.store.update_download_session(download_session_id, fields, state=ACTIVE)

    async def cancel(self, ctx: Ctx, download_session_id: str) -> None:
        await self._end(download_session_id, "cancel", "CANCELED", None)

    async def fail(self, ctx: Ctx, download_session_id: str, client_error_message: str) -> None:
        await self._end(
            download_session_id,
            "fail",
            "ERROR",
            message_json("com.vmware.content.downloadsession.client_error", client_error_message),
        )

    async def expire(self, download_session_id: str) -> None:
        timeout = self.core.settings.update_session_timeout
        with contextlib.suppress(errors.ApiError):
            await self._end(
                download_session_id,
                "expire",
                "ERROR",
                message_json(
                    "com.vmware.content.downloadsession.expired",
                    f"The download session expired: no activity for {timeout:g} seconds.",
                    timeout,
                ),
            )

    async def _end(self, sid: str, operation: str, state: str, error_message: str | None) -> None:
        async with self.store.transaction():
            row = await self.session(sid)
            self.require_active(row, operation)
            await self.store.update_download_session(
                sid, {"state": state, "error_message": error_message, "ended": self.core.now()}, state=ACTIVE
            )
            blobs = [f["blob_id"] for f in await self.store.download_files(sid)]
        await self.core.discard_blobs(blobs)

    # -- files -----------------------------------------------------------------------------------------------
    def _info(self, ctx: Ctx, item_file: Row, prepared: Row | None) -> dict[str, Any]:
        if prepared is None:
            return {
                "name": item_file["name"],
                "size": item_file["size"],
                "bytes_transferred": 0,
                "status": "UNPREPARED",
            }
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
        row = await self.session(sid)
        current = {f["name"]: f for f in await self.store.item_files(row["item_id"])}
        prepared = {f["name"]: f for f in await self.store.download_files(sid)}
        return row, current, prepared

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
        raise self._no_such_file(download_session_id, file_name)

    @staticmethod
    def _no_such_file(sid: str, name: str) -> errors.ApiError:
        return errors.invalid_argument(
            f"The library item of download session {sid} has no file named '{name}'.",
            sid,
            name,
            msg_id="com.vmware.content.downloadsession.file.not_found",
        )

    async def prepare(
        self, ctx: Ctx, download_session_id: str, file_name: str, endpoint_type: EndpointType | None = None
    ) -> dict[str, Any]:
        async with self.store.transaction():
            row, current, _ = await self._files(download_session_id)
            self.require_active(row, "prepare a file of")
            f = current.get(file_name)
            if f is None:
                raise self._no_such_file(download_session_id, file_name)
            entry = {
                "session_id": download_session_id,
                "name": file_name,
                "token": self.core.new_token(),
                "blob_id": f["blob_id"],
                "size": f["size"],
                "sha1": f["sha1"],
                "bytes_transferred": f["size"],
            }
            await self.store.put_download_file(entry)
            await self.touch(download_session_id)
        info = self._info(ctx, entry, entry)
        if endpoint_type == "DIRECT":
            info["download_endpoint"] = {"uri": self.core.blobs.path(f["blob_id"]).resolve().as_uri()}
        return info

    async def open_download(self, token: str, name: str) -> Path:
        """The blob behind a download URL, for the data plane; the URL token is the credential."""
        f = await self.store.download_file_by_token(token)
        if f is None or f["name"] != name:
            raise errors.not_found("download endpoint", f"/cls/download/{token[:6]}…/{name}")
        session = await self.session(f["session_id"])
        self.require_active(session, "download from")
        await self.touch(session["id"])
        return self.core.blobs.path(f["blob_id"])
