"""What update sessions and download sessions share: a session over one library item, owned by the user that
created it, ACTIVE until it is completed, canceled, failed or expires, then kept for the retention period.

Each kind names its table and supplies what ending a session releases (`_release`); the rules themselves —
lookups, the ACTIVE checks, idle expiry, progress, client tokens — live here once.
"""

from __future__ import annotations

import contextlib
from typing import Any

from contentlib import errors
from contentlib.services.core import Core, Ctx, check_client_token, load_json, message_json
from contentlib.services.libraries import Libraries
from contentlib.storage.sql import Busy, Row, TokenTaken

ACTIVE = "ACTIVE"


class ItemSessions:
    kind = ""  # "update" or "download": the Store's table of this kind
    noun = "session"  # "update session", "download session": how messages name one
    msg_prefix = "com.vmware.content.session"

    def __init__(self, core: Core, libraries: Libraries) -> None:
        self.core = core
        self.store = core.store
        self.libraries = libraries

    # -- the kind's own part -----------------------------------------------------------------------------------
    async def _release(self, sid: str) -> None:
        """After the session left ACTIVE: stop its transfers and discard what only it referenced."""
        raise NotImplementedError

    # -- shared rules --------------------------------------------------------------------------------------------
    async def _set(self, sid: str, fields: Row, state: str | None = None) -> bool:
        return await self.store.update_session(self.kind, sid, fields, state)

    async def session(self, sid: str) -> Row:
        row = await self.store.get_session(self.kind, sid)
        if row is None:
            raise errors.not_found(self.noun, sid)
        return row

    def require_active(self, row: Row, operation: str) -> None:
        if row["state"] != ACTIVE:
            raise errors.not_allowed(
                f"Cannot {operation} the {self.noun} {row['id']}: it is {row['state']}, not ACTIVE.",
                row["id"],
                row["state"],
                msg_id=f"{self.msg_prefix}.not_active",
            )

    def no_such_file(self, sid: str, name: str) -> errors.ApiError:
        return errors.invalid_argument(
            f"The {self.noun} {sid} has no file named '{name}'.",
            sid,
            name,
            msg_id=f"{self.msg_prefix}.file.not_found",
        )

    async def touch(self, sid: str) -> bool:
        """Count activity on the session; False if it is no longer ACTIVE."""
        return await self._set(sid, {"last_activity": self.core.now()}, state=ACTIVE)

    async def note_activity(self, row: Row) -> None:
        """Count a read of the ACTIVE session `row` as activity, writing it only when the recorded activity is
        older than a second (at most a hundredth of the timeout): reads stay reads, and the expiration_time shown
        is still one the session is guaranteed to outlive."""
        if self.core.now() - row["last_activity"] >= min(1.0, self.core.settings.update_session_timeout / 100):
            await self.touch(row["id"])

    def base_model(self, row: Row) -> dict[str, Any]:
        """The fields both session models share (`id` is never returned by get or list)."""
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

    async def _create(self, ctx: Ctx, library_item_id: str | None, client_token: str | None, **extra: Any) -> str:
        """Create an ACTIVE session on the item; the same client token returns the same session."""
        token = check_client_token(client_token)
        if token is not None and (row := await self.store.session_by_token(self.kind, token)) is not None:
            return str(row["id"])
        if not library_item_id:
            raise errors.invalid_argument(f"create_spec.library_item_id is required: the item of the {self.noun}.")
        async with self.store.transaction():
            item = await self.libraries.item(library_item_id)
            sid = self.core.new_id()
            try:
                await self.store.insert_session(
                    self.kind,
                    {
                        "id": sid,
                        "item_id": item["id"],
                        "owner": ctx.user,
                        "content_version": item["content_version"],
                        "state": ACTIVE,
                        "client_progress": 0,
                        "error_message": None,
                        "created": self.core.now(),
                        "last_activity": self.core.now(),
                        "ended": None,
                        "client_token": token,
                        **extra,
                    },
                )
            except TokenTaken:
                row = await self.store.session_by_token(self.kind, token or "")
                assert row is not None
                return str(row["id"])
            except Busy:
                raise await self._busy(item["id"]) from None
        return sid

    async def _busy(self, item_id: str) -> errors.ApiError:
        raise NotImplementedError

    async def list_ids(self, ctx: Ctx, library_item_id: str | None = None) -> list[str]:
        """The caller's sessions, optionally of one item (which must exist)."""
        if library_item_id is not None:
            await self.libraries.item(library_item_id)
        return await self.store.list_sessions(self.kind, ctx.user, library_item_id)

    async def _keep_alive(self, sid: str, progress: int | None, name: str) -> None:
        async with self.store.transaction():
            row = await self.session(sid)
            self.require_active(row, "keep alive")
            fields: dict[str, Any] = {"last_activity": self.core.now()}
            if progress is not None:
                if not 0 <= progress <= 100:
                    raise errors.invalid_argument(f"{name} must be between 0 and 100, got {progress}.", progress)
                if progress < row["client_progress"]:
                    raise errors.invalid_argument(
                        f"{name} {progress} is below the current progress {row['client_progress']}.",
                        progress,
                        row["client_progress"],
                    )
                fields["client_progress"] = progress
            await self._set(sid, fields, state=ACTIVE)

    async def _delete(self, sid: str, allow_active: bool) -> None:
        async with self.store.transaction():
            row = await self.session(sid)
            if row["state"] == ACTIVE and not allow_active:
                raise errors.not_allowed(
                    f"Cannot delete the {self.noun} {sid}: it is ACTIVE; cancel or complete it first.",
                    sid,
                    msg_id=f"{self.msg_prefix}.delete_active",
                )
            blobs = await self.store.delete_session(self.kind, sid)
        await self.core.discard_blobs(blobs)

    async def sweep(self, now: float) -> None:
        """Expire idle ACTIVE sessions; delete the ones that ended longer than the retention period ago. A transfer
        whose bytes flow records activity at least every timeout/4, so only stalled ones expire."""
        settings = self.core.settings
        for sid in await self.store.idle_sessions(self.kind, now - settings.update_session_timeout):
            await self.expire(sid)
        for sid in await self.store.ended_sessions(self.kind, now - settings.session_retention):
            with contextlib.suppress(errors.ApiError):
                await self._delete(sid, allow_active=False)

    async def _cancel(self, sid: str) -> None:
        await self._end(sid, "cancel", "CANCELED", None)

    async def _fail(self, sid: str, client_error_message: str) -> None:
        await self._end(sid, "fail", "ERROR", message_json(f"{self.msg_prefix}.client_error", client_error_message))

    async def expire(self, sid: str) -> None:
        timeout = self.core.settings.update_session_timeout
        with contextlib.suppress(errors.ApiError):  # it ended on its own meanwhile
            await self._end(
                sid,
                "expire",
                "ERROR",
                message_json(
                    f"{self.msg_prefix}.expired",
                    f"The {self.noun} expired: no activity for {timeout:g} seconds.",
                    timeout,
                ),
            )

    async def _end(self, sid: str, operation: str, state: str, error_message: str | None) -> None:
        """Move an ACTIVE session to a terminal state, then release what it held."""
        async with self.store.transaction():
            row = await self.session(sid)
            self.require_active(row, operation)
            await self._set(sid, {"state": state, "error_message": error_message, "ended": self.core.now()}, ACTIVE)
        await self._release(sid)
