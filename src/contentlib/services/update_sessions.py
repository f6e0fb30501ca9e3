"""Update sessions (`com.vmware.content.library.item.update_session`) and their files
(`...item.updatesession.file`): a transaction over one library item's files.

Files are staged while the session is ACTIVE (each add gets a fresh upload token; each upload writes a fresh
blob); `complete` publishes the session's view in one metadata transaction; `cancel`, `fail` and expiry end the
session and discard what it staged, leaving the item exactly as it was.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from typing import Any

import aiohttp

from contentlib import errors
from contentlib.model import AddSpec, UpdateSessionModel, to_builtins
from contentlib.services import ovf, package, preview, roles
from contentlib.services.core import Core, Ctx, check_file_name, load_json, message_json
from contentlib.services.item_content import record_change
from contentlib.services.libraries import Libraries
from contentlib.services.package import Package, item_type
from contentlib.services.sessions import ACTIVE, ItemSessions
from contentlib.services.update_transfers import Transfers, thumbprint
from contentlib.storage.schema import session_file_row
from contentlib.storage.sql import Row, dumps

_HEX_LENGTH = {"SHA1": 40, "MD5": 32, "SHA256": 64, "SHA512": 128}
_ARRIVING = ("WAITING_FOR_TRANSFER", "TRANSFERRING", "VALIDATING")  # a file whose bytes are still on their way


class UpdateSessions(ItemSessions):
    kind = "update"
    noun = "update session"
    msg_prefix = "com.vmware.content.updatesession"

    def __init__(self, core: Core, libraries: Libraries, http: aiohttp.ClientSession | None = None) -> None:
        super().__init__(core, libraries)
        self.package = Package(core)
        self.transfers = Transfers(core, self, http)

    async def _release(self, sid: str) -> None:
        self.core.abort_transfers(sid, "the update session ended")
        files = await self.store.session_files(sid)
        await self.core.discard_blobs([b for f in files for b in (f["blob_id"], f["pending_blob"]) if b])

    async def _busy(self, item_id: str) -> errors.ApiError:
        other = await self.store.active_update_session_for(item_id)
        other_id = other["id"] if other else "?"
        return errors.resource_busy(
            f"The library item {item_id} already has an ACTIVE update session ({other_id}); only one "
            "update session can be active per item.",
            item_id,
            other_id,
        )

    # -- rendering ------------------------------------------------------------------------------------------
    async def session_model(self, row: Row) -> dict[str, Any]:
        model = self.base_model(row)
        behavior = load_json(row["warning_behavior"])
        if behavior is not None:
            model["warning_behavior"] = behavior
        if row["state"] == ACTIVE:  # union rule: preview_info only while ACTIVE
            files = await self.store.session_files(row["id"]) if row["has_package"] else []
            model["preview_info"] = await self.package.preview_info(files, behavior)
        return model

    def file_info(self, ctx: Ctx, row: Row, staged: dict[str, Row] | None = None) -> dict[str, Any]:
        """`File.Info` of a file the session adds; a file unpacked from an OVA shows the OVA's upload endpoint
        (`staged`, the session's rows by name, finds it)."""
        live = self.core.live.get((row["session_id"], row["name"]))
        info: dict[str, Any] = {
            "name": row["name"],
            "source_type": row["source_type"],
            "bytes_transferred": live.bytes if live and row["status"] == "TRANSFERRING" else row["bytes_transferred"],
            "status": row["status"],
            "keep_in_storage": bool(row["keep_in_storage"]),
        }
        if row["status"] == "READY":
            info["size"] = row["size"]
        if row["checksum"] is not None:
            info["checksum_info"] = {"algorithm": row["checksum_algorithm"], "checksum": row["checksum"]}
        elif row["status"] == "READY" and row["sha1"]:  # an unpacked OVA has no checksum of its own
            info["checksum_info"] = {"algorithm": "SHA1", "checksum": row["sha1"]}
        if row["source_type"] == "PUSH":
            carrier = (staged or {}).get(row["parent"], row) if row["parent"] else row
            quoted = urllib.parse.quote(carrier["name"], safe="")
            info["upload_endpoint"] = {"uri": f"{ctx.base_url}/cls/data/{carrier['token']}/{quoted}"}
        else:
            info["source_endpoint"] = load_json(row["source_endpoint"])
        if row["status"] == "ERROR" and row["error_message"] is not None:
            info["error_message"] = load_json(row["error_message"])
        return info

    @staticmethod
    def unchanged_file_info(row: Row) -> dict[str, Any]:
        """A file of the item that the session leaves as it is."""
        return {
            "name": row["name"],
            "source_type": "NONE",
            "size": row["size"],
            "bytes_transferred": row["size"],
            "status": "READY",
            "keep_in_storage": True,
            "checksum_info": {"algorithm": "SHA1", "checksum": row["sha1"]},
        }

    # -- update session operations ------------------------------------------------------------------------------
    async def create(self, ctx: Ctx, create_spec: UpdateSessionModel, client_token: str | None = None) -> str:
        """A session on an item of a local library: a subscribed library's items change only by its syncs."""
        if create_spec.library_item_id:
            item = await self.libraries.item(create_spec.library_item_id)
            await self.libraries.require_writable(item, "An update session cannot be created on")
        return await self.create_unchecked(ctx, create_spec, client_token)

    async def create_unchecked(self, ctx: Ctx, create_spec: UpdateSessionModel, client_token: str | None = None) -> str:
        """A session on any item: what a subscribed library's sync runs on its items."""
        behavior = to_builtins(create_spec.warning_behavior) if create_spec.warning_behavior is not None else []
        return await self._create(ctx, create_spec.library_item_id, client_token, warning_behavior=dumps(behavior))

    async def get(self, ctx: Ctx, update_session_id: str) -> dict[str, Any]:
        return await self.session_model(await self.session(update_session_id))

    async def update(self, ctx: Ctx, update_session_id: str, update_spec: UpdateSessionModel) -> None:
        """PATCH: incremental; only `warning_behavior` is ever changed, and only while ACTIVE (seed page)."""
        async with self.store.transaction():
            row = await self.session(update_session_id)
            self.require_open(row, "update")
            fields: dict[str, Any] = {"last_activity": self.core.now()}
            if update_spec.warning_behavior is not None:
                fields["warning_behavior"] = dumps(to_builtins(update_spec.warning_behavior))
            await self._set(update_session_id, fields, state=ACTIVE)

    async def delete(self, ctx: Ctx, update_session_id: str) -> None:
        await self._delete(update_session_id, allow_active=False)

    async def keep_alive(self, ctx: Ctx, update_session_id: str, client_progress: int | None = None) -> None:
        await self._keep_alive(update_session_id, client_progress, "client_progress")

    async def cancel(self, ctx: Ctx, update_session_id: str) -> None:
        await self._cancel(update_session_id)

    async def fail(self, ctx: Ctx, update_session_id: str, client_error_message: str) -> None:
        await self._fail(update_session_id, client_error_message)

    async def complete(self, ctx: Ctx, update_session_id: str) -> None:
        """Publish the session's view into the item in one transaction, once every added file is READY, the OVF
        package (if any) is complete and valid, and every preview warning is ignored.

        PULL files still arriving do not hold the call up (REFERENCE.md §2: for PULL, complete "may return before
        the changes become visible", and the client tracks the session with get): the session stays ACTIVE, marked
        completing, and is published (DONE) or fails (ERROR, with the reason) when its last pull has ended."""
        row = await self.session(update_session_id)
        self.require_active(row, "complete")
        if row["completing"] is not None:
            return  # already completing: its pulls finish it
        files = await self.store.session_files(update_session_id)
        added = [f for f in files if f["op"] == "ADD"]
        pulling = [f for f in added if f["source_type"] == "PULL" and f["status"] in _ARRIVING]
        unready = [f"{f['name']} ({f['status']})" for f in added if f["status"] != "READY" and f not in pulling]
        if unready:
            raise errors.not_allowed(
                f"Cannot complete the update session {update_session_id}: these files are not received "
                f"correctly: {', '.join(unready)}.",
                update_session_id,
                ", ".join(unready),
                msg_id="com.vmware.content.updatesession.files_not_ready",
            )
        if not pulling:
            await self._complete(row, files, ctx.user)
            return
        now = self.core.now()
        async with self.store.transaction():
            self.require_active(await self.session(update_session_id), "complete")
            await self._set(update_session_id, {"completing": now, "last_activity": now}, state=ACTIVE)
        await self.transfer_ended(update_session_id)  # the last pull may have ended meanwhile

    def require_open(self, row: Row, operation: str) -> None:
        """ACTIVE and not completing: what changes the session's files or its warning behavior needs."""
        self.require_active(row, operation)
        if row["completing"] is not None:
            raise errors.not_allowed(
                f"Cannot {operation} the update session {row['id']}: it is completing (complete was called; its "
                "pulls are still running).",
                row["id"],
                msg_id="com.vmware.content.updatesession.completing",
            )

    async def transfer_ended(self, sid: str) -> None:
        """A transfer of the session has ended (READY or ERROR). A completing session is published once none of its
        files is still arriving, or fails with the reason a complete would have given: nobody waits for that
        answer, so the session keeps it as its error_message."""
        row = await self.store.get_session(self.kind, sid)
        if row is None or row["state"] != ACTIVE or row["completing"] is None:
            return
        files = await self.store.session_files(sid)
        added = [f for f in files if f["op"] == "ADD"]
        if any(f["source_type"] == "PULL" and f["status"] in _ARRIVING for f in added):
            return
        try:
            failed = [f for f in added if f["status"] != "READY"]
            if failed:
                reasons = [f"{f['name']} ({load_json(f['error_message'])['default_message']})" for f in failed]
                raise errors.not_allowed(
                    f"The update session {sid} failed: these files were not received: {'; '.join(reasons)}",
                    sid,
                    "; ".join(reasons),
                    msg_id="com.vmware.content.updatesession.files_not_received",
                )
            await self._complete(row, files, row["owner"])
        except _FilesChanged:
            pass  # a transfer ended meanwhile: its own call (or the sweeper) finishes the session
        except errors.ApiError as e:
            with contextlib.suppress(errors.ApiError):  # unless it ended meanwhile
                await self._end(sid, "complete", "ERROR", dumps(e.messages[0]))

    async def sweep(self, now: float) -> None:
        await super().sweep(now)
        for sid in await self.store.completing_sessions():  # whose last transfer ended on a replica that died
            await self.transfer_ended(sid)

    async def _complete(self, row: Row, files: list[Row], user: str) -> None:
        """Validate the package and the warnings, then publish `files` (read when every added file was READY)."""
        update_session_id = row["id"]
        missing, invalid = await self.package.problems(row["item_id"], files)
        if missing or invalid:
            named = [f"{n} (missing)" for n in missing] + [
                f"{f['name']} ({f['error_message']['default_message']})" for f in invalid
            ]
            raise errors.not_allowed(
                f"Cannot complete the update session {update_session_id}: the package has missing or invalid "
                f"files: {'; '.join(named)}.",
                update_session_id,
                "; ".join(named),
                msg_id="com.vmware.content.updatesession.package_invalid",
            )
        blocked = preview.blocking_warnings(await self.package.warnings(files), load_json(row["warning_behavior"]))
        now = self.core.now()
        async with self.store.transaction():
            # What was checked above must still be what gets published (no await but the Store's since).
            current = await self.session(update_session_id)
            self.require_active(current, "complete")
            if _fingerprint(await self.store.session_files(update_session_id)) != _fingerprint(files):
                raise _FilesChanged(
                    "NOT_ALLOWED_IN_CURRENT_STATE",
                    "com.vmware.vapi.std.errors.not_allowed_in_current_state",
                    f"The files of the update session {update_session_id} changed while it was completing; "
                    "complete it again.",
                    update_session_id,
                )
            if blocked:
                text = (
                    f"The update session {update_session_id} failed: the preview raised warnings that were not "
                    f"ignored: {', '.join(blocked)}."
                )
                await self._set(
                    update_session_id,
                    {
                        "state": "ERROR",
                        "ended": now,
                        "error_message": message_json(
                            "com.vmware.content.updatesession.warnings_not_ignored", text, ", ".join(blocked)
                        ),
                    },
                    state=ACTIVE,
                )
                garbage = [b for f in files for b in (f["blob_id"], f["pending_blob"]) if b]
            else:
                garbage = await self._publish(row, files, now, user)
                await self._set(update_session_id, {"state": "DONE", "ended": now, "last_activity": now}, state=ACTIVE)
        await self.core.discard_blobs(garbage)
        if blocked:
            raise errors.not_allowed(
                f"The update session {update_session_id} cannot complete: the preview raised warnings that were not "
                f"ignored ({', '.join(blocked)}); the session is now in ERROR.",
                update_session_id,
                ", ".join(blocked),
                msg_id="com.vmware.content.updatesession.warnings_not_ignored",
            )

    async def _publish(self, session: Row, files: list[Row], now: float, user: str) -> list[str]:
        """Make the session's view the item's file list (inside the caller's transaction) and, when that changed
        the content, record the change; return the blobs the item no longer references."""
        item_id = session["item_id"]
        current = {f["name"]: f for f in await self.store.item_files(item_id)}
        garbage: list[str] = []
        changed: dict[str, list[str]] = {"Added": [], "Replaced": [], "Removed": []}
        for f in files:
            prev = current.get(f["name"])
            if f["op"] == "REMOVE":
                if prev is not None:
                    await self.store.delete_item_file(item_id, f["name"])
                    garbage.append(prev["blob_id"])
                    changed["Removed"].append(f["name"])
                continue
            if not f["keep_in_storage"]:
                if f["blob_id"]:
                    garbage.append(f["blob_id"])
                continue
            await self.store.put_item_file(
                {
                    "item_id": item_id,
                    "name": f["name"],
                    "blob_id": f["blob_id"],
                    "size": f["size"],
                    "sha1": f["sha1"],
                    "version": prev["version"] + 1 if prev else 1,
                }
            )
            if prev is not None:
                garbage.append(prev["blob_id"])
            changed["Replaced" if prev is not None else "Added"].append(f["name"])
        if any(changed.values()):
            item = await self.libraries.item(item_id)
            names = [f["name"] for f in await self.store.item_files(item_id)]
            version = item["content_version"] + 1
            await self.store.update_item(
                item_id, {"content_version": version, "modified": now, "type": item_type(names, item["type"])}
            )
            details = [f"{what}: {', '.join(which)}" for what, which in changed.items() if which]
            message = "\n".join([f"Content changed by the update session {session['id']}.", *details])
            await record_change(self.core, item_id, version, user, message)
        return garbage

    # -- update-session file operations ------------------------------------------------------------------------
    async def _view(self, sid: str) -> tuple[Row, dict[str, Row], dict[str, Row]]:
        """The session's view of the item's files; reading it is file activity that postpones expiry."""
        row = await self.session(sid)
        if row["state"] == ACTIVE:
            await self.note_activity(row)
        staged = {f["name"]: f for f in await self.store.session_files(sid)}
        current = {f["name"]: f for f in await self.store.item_files(row["item_id"])}
        return row, staged, current

    async def list_files(self, ctx: Ctx, update_session_id: str) -> list[dict[str, Any]]:
        _, staged, current = await self._view(update_session_id)
        infos = [self.unchanged_file_info(f) for name, f in current.items() if name not in staged]
        infos += [self.file_info(ctx, f, staged) for f in staged.values() if f["op"] == "ADD"]
        return infos

    async def get_file(self, ctx: Ctx, update_session_id: str, file_name: str) -> dict[str, Any]:
        _, staged, current = await self._view(update_session_id)
        f = staged.get(file_name)
        if f is not None and f["op"] == "ADD":
            return self.file_info(ctx, f, staged)
        if f is None and file_name in current:
            return self.unchanged_file_info(current[file_name])
        raise self.no_such_file(update_session_id, file_name)

    def _check_add_spec(self, ctx: Ctx, spec: AddSpec) -> tuple[str | None, str | None]:
        check_file_name(spec.name)
        if spec.source_type == "NONE":
            raise errors.invalid_argument("file_spec.source_type must be PUSH or PULL to add a file.")
        if spec.source_type == "PUSH" and spec.source_endpoint is not None:
            raise errors.invalid_argument("file_spec.source_endpoint is only valid when source_type is PULL.")
        if spec.source_type == "PULL":
            if spec.source_endpoint is None:
                raise errors.invalid_argument("file_spec.source_endpoint is required when source_type is PULL.")
            uri = urllib.parse.urlsplit(spec.source_endpoint.uri)
            if uri.scheme in ("file", "ds"):  # the server's own storage (swagger: 403 without ReadStorage)
                ctx.require((roles.READ_STORAGE,), f"a PULL from the {uri.scheme}:// source of '{spec.name}'")
            local = uri.scheme == "file" and uri.hostname in (None, "localhost") and uri.path.startswith("/")
            if not local and (uri.scheme not in ("http", "https") or not uri.hostname):
                raise errors.invalid_argument(
                    f"file_spec.source_endpoint.uri '{spec.source_endpoint.uri}' is not supported: this server pulls "
                    "from http and https URLs, and from file:///absolute/path on its own machine.",
                    spec.source_endpoint.uri,
                )
            if spec.source_endpoint.ssl_certificate_thumbprint is not None:
                thumbprint(spec.source_endpoint.ssl_certificate_thumbprint)
        if spec.checksum_info is None:
            return None, None
        if ovf.kind_of(spec.name) == "ova":
            raise errors.invalid_argument(
                f"file_spec.checksum_info must not be set for the OVA '{spec.name}': its members are verified "
                "against the package's manifest.",
                spec.name,
            )
        algorithm = spec.checksum_info.algorithm or "SHA1"
        checksum = spec.checksum_info.checksum.strip().lower()
        if len(checksum) != _HEX_LENGTH[algorithm] or any(c not in "0123456789abcdef" for c in checksum):
            raise errors.invalid_argument(
                f"file_spec.checksum_info.checksum is not a {algorithm} checksum: expected "
                f"{_HEX_LENGTH[algorithm]} hexadecimal digits.",
                algorithm,
            )
        return algorithm, checksum

    async def add_file(self, ctx: Ctx, update_session_id: str, file_spec: AddSpec) -> dict[str, Any]:
        algorithm, checksum = self._check_add_spec(ctx, file_spec)
        kind = ovf.kind_of(file_spec.name)
        row = session_file_row(
            update_session_id,
            file_spec.name,
            source_type=file_spec.source_type,
            source_endpoint=dumps(to_builtins(file_spec.source_endpoint)) if file_spec.source_endpoint else None,
            token=self.core.new_token() if file_spec.source_type == "PUSH" else None,
            progress_at=self.core.now(),
            transfer_owner=self.core.replica_id,
            declared_size=file_spec.size,
            checksum_algorithm=algorithm,
            checksum=checksum,
            keep_in_storage=0 if kind in ("manifest", "certificate", "ova") else 1,
        )
        async with self.store.transaction():
            session = await self.session(update_session_id)
            self.require_open(session, "add a file to")
            if kind in ("manifest", "certificate"):
                descriptor = package.parts(await self.store.session_files(update_session_id)).get("descriptor")
                if descriptor is not None:
                    raise errors.not_allowed(
                        f"The {kind} '{file_spec.name}' must be added before the OVF descriptor "
                        f"'{descriptor['name']}', which the session already has.",
                        file_spec.name,
                        descriptor["name"],
                        msg_id="com.vmware.content.updatesession.file.metadata_after_descriptor",
                    )
            replaced = await self.store.put_session_file(row)
            replaced += await self.store.delete_members(update_session_id, file_spec.name)
            await self.touch(update_session_id)
            if kind is not None:  # the session now builds an OVF package: its GET computes a preview
                await self._set(update_session_id, {"has_package": 1})
        self.core.abort_transfers(update_session_id, "the file was added again", file_spec.name)
        await self.core.discard_blobs(replaced)
        stored = await self.store.session_file(update_session_id, file_spec.name)
        assert stored is not None
        if file_spec.source_type == "PULL":
            self.transfers.start_pull(stored)
        return self.file_info(ctx, stored)

    async def remove_file(self, ctx: Ctx, update_session_id: str, file_name: str) -> None:
        async with self.store.transaction():
            row, staged, current = await self._view(update_session_id)
            self.require_open(row, "remove a file from")
            f = staged.get(file_name)
            if (f is None and file_name not in current) or (f is not None and f["op"] == "REMOVE"):
                raise self.no_such_file(update_session_id, file_name)
            replaced = await self.store.delete_members(update_session_id, file_name)
            if file_name in current:
                replaced += await self.store.put_session_file(
                    session_file_row(update_session_id, file_name, op="REMOVE", source_type="NONE", status="READY")
                )
            else:
                replaced += [b for b in (f["blob_id"], f["pending_blob"]) if b] if f else []
                await self.store.delete_session_file(update_session_id, file_name)
        self.core.abort_transfers(update_session_id, "the file was removed", file_name)
        await self.core.discard_blobs(replaced)

    async def validate(self, ctx: Ctx, update_session_id: str) -> dict[str, Any]:
        row = await self.session(update_session_id)
        self.require_active(row, "validate")
        await self.touch(update_session_id)
        files = await self.store.session_files(update_session_id)
        missing, invalid = await self.package.problems(row["item_id"], files)
        return {"has_errors": bool(invalid or missing), "missing_files": missing, "invalid_files": invalid}


class _FilesChanged(errors.ApiError):
    """The session's files changed between the checks of a complete and its publishing transaction."""


def _fingerprint(files: list[Row]) -> list[tuple[Any, ...]]:
    return [(f["name"], f["op"], f["status"], f["blob_id"]) for f in files]
