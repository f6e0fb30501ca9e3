"""Update sessions (`com.vmware.content.library.item.update_session`) and their files
(`...item.updatesession.file`): a transaction over one library item's files.

Files are staged while the session is ACTIVE (each add gets a fresh upload token; each upload writes a fresh
blob); `complete` publishes the session's view in one metadata transaction; `cancel`, `fail` and expiry end the
session and discard what it staged, leaving the item exactly as it was.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import stat
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any, BinaryIO

import aiohttp

from contentlib import errors
from contentlib.model import AddSpec, UpdateSessionModel, to_builtins
from contentlib.services import ovf, package, preview, roles
from contentlib.services.core import (
    Core,
    Ctx,
    LiveTransfer,
    check_file_name,
    load_json,
    log,
    message_json,
)
from contentlib.services.item_content import record_change
from contentlib.services.libraries import Libraries
from contentlib.services.package import Package, item_type
from contentlib.services.sessions import ACTIVE, ItemSessions
from contentlib.storage.blobs import read_head
from contentlib.storage.sql import Row, dumps, session_file_row
from contentlib.tarstream import Data, Member, MemberEnd, TarError, TarReader
from contentlib.transfer import Receiver, run_blocking

TRANSFER_FAILED = "com.vmware.content.updatesession.file.transfer_failed"
_HEX_LENGTH = {"SHA1": 40, "MD5": 32, "SHA256": 64, "SHA512": 128}
_RECEIVING = ("TRANSFERRING", "VALIDATING")  # a file in these states belongs to the request receiving it
_PROGRESS_EVERY = 1.0  # seconds between progress writes (bytes_transferred, session activity) during a transfer


class TransferFailed(Exception):
    """A transfer that ended without a usable blob; `error` is what the uploader is told."""

    def __init__(self, reason: str, error: errors.ApiError | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error or errors.invalid_argument(reason, msg_id=TRANSFER_FAILED)


class UpdateSessions(ItemSessions):
    kind = "update"
    noun = "update session"
    msg_prefix = "com.vmware.content.updatesession"

    def __init__(self, core: Core, libraries: Libraries, http: aiohttp.ClientSession | None = None) -> None:
        super().__init__(core, libraries)
        self.http = http
        self.package = Package(core)

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
        behavior = to_builtins(create_spec.warning_behavior) if create_spec.warning_behavior is not None else []
        return await self._create(ctx, create_spec.library_item_id, client_token, warning_behavior=dumps(behavior))

    async def get(self, ctx: Ctx, update_session_id: str) -> dict[str, Any]:
        return await self.session_model(await self.session(update_session_id))

    async def update(self, ctx: Ctx, update_session_id: str, update_spec: UpdateSessionModel) -> None:
        """PATCH: incremental; only `warning_behavior` is ever changed, and only while ACTIVE (seed page)."""
        async with self.store.transaction():
            row = await self.session(update_session_id)
            self.require_active(row, "update")
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
        package (if any) is complete and valid, and every preview warning is ignored."""
        row = await self.session(update_session_id)
        self.require_active(row, "complete")
        files = await self.store.session_files(update_session_id)
        unready = [f"{f['name']} ({f['status']})" for f in files if f["op"] == "ADD" and f["status"] != "READY"]
        if unready:
            raise errors.not_allowed(
                f"Cannot complete the update session {update_session_id}: these files are not received "
                f"correctly: {', '.join(unready)}.",
                update_session_id,
                ", ".join(unready),
                msg_id="com.vmware.content.updatesession.files_not_ready",
            )
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
                raise errors.not_allowed(
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
                garbage = await self._publish(row, files, now, ctx.user)
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
            await self.touch(sid)
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
                _thumbprint(spec.source_endpoint.ssl_certificate_thumbprint)
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
            self.require_active(session, "add a file to")
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
            self._start_pull(stored)
        return self.file_info(ctx, stored)

    async def remove_file(self, ctx: Ctx, update_session_id: str, file_name: str) -> None:
        async with self.store.transaction():
            row, staged, current = await self._view(update_session_id)
            self.require_active(row, "remove a file from")
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

    # -- the data plane: uploads (PUSH) and pulls (PULL) ----------------------------------------------------------
    async def receive_upload(
        self, token: str, name: str, chunks: AsyncIterator[bytes], content_length: int | None
    ) -> None:
        """Stream one PUSH upload into a new staged blob; the URL token is the credential."""
        row = await self.store.session_file_by_token(token)
        if row is None or row["name"] != name:
            raise errors.not_found("upload endpoint", f"/cls/data/{token[:6]}…/{name}")
        session = await self.session(row["session_id"])
        self.require_active(session, "upload to")
        declared = row["declared_size"]
        if declared is not None and content_length is not None and content_length != declared:
            reason = f"The upload of '{name}' carries {content_length} bytes but its declared size is {declared} bytes."
            await self._set_file_error(row, None, reason)
            raise errors.invalid_argument(reason, name, msg_id=TRANSFER_FAILED)
        await self._transfer(row, chunks, content_length)

    async def _transfer(self, row: Row, chunks: AsyncIterator[bytes], content_length: int | None) -> None:
        """Receive one file (or unpack one OVA) into the session: TRANSFERRING → READY, or ERROR with a reason."""
        sid, name = row["session_id"], row["name"]
        kind = ovf.kind_of(name)
        blob_id = None if kind == "ova" else self.core.new_blob_id(sid)
        async with self.store.transaction():
            session = await self.session(sid)
            self.require_active(session, "upload to")
            # The claim: a compare-and-set on the row as read, and never a row another request is receiving.
            started = row["status"] not in _RECEIVING and await self.store.update_session_file(
                sid,
                name,
                {
                    "status": "TRANSFERRING",
                    "pending_blob": blob_id,
                    "bytes_transferred": 0,
                    "error_message": None,
                    "progress_at": self.core.now(),
                    "transfer_owner": self.core.replica_id,
                },
                expect={"token": row["token"], "status": row["status"]} if row["token"] else {"status": row["status"]},
            )
            if not started:
                raise errors.not_allowed(
                    f"The file '{name}' is already being transferred, or was added again.",
                    name,
                    msg_id="com.vmware.content.updatesession.file.busy",
                )
            await self.touch(sid)
        live = self.core.live.setdefault((sid, name), LiveTransfer())
        if live.task is None:
            live.task = asyncio.current_task()
        meta = None
        digests: dict[str, str] = {}
        try:
            try:
                if kind == "ova":
                    size = await self._unpack(row, chunks, live)
                else:
                    assert blob_id is not None
                    size, digests = await self._receive(row, blob_id, chunks, live)
                    problem = self._check_received(row, content_length, size, digests)
                    if problem is None:
                        meta = await self._inspect(name, kind, blob_id)
                    if problem is not None:
                        raise TransferFailed(problem)
                if kind == "ova" and content_length is not None and size != content_length:
                    raise TransferFailed(f"The upload of '{name}' ended after {size} of {content_length} bytes.")
            except TransferFailed as failure:
                await self._set_file_error(row, blob_id, failure.reason, live.bytes)
                if kind == "ova":
                    async with self.store.transaction():
                        members = await self.store.delete_members(sid, name)
                    await self.core.discard_blobs(members)
                raise failure.error from None
            ready = {
                "status": "READY",
                "size": size,
                "sha1": digests.get("sha1"),
                "blob_id": blob_id,
                "pending_blob": None,
                "bytes_transferred": size,
                "digests": dumps(digests) if digests else None,
                "meta": dumps(meta) if meta is not None else None,
            }
            async with self.store.transaction():
                session = await self.session(sid)
                done = session["state"] == ACTIVE and await self.store.update_session_file(
                    sid, name, ready, expect={"pending_blob": blob_id}
                )
                if done:
                    await self.touch(sid)
        finally:
            # The live count stands for bytes_transferred until the row has left TRANSFERRING: dropped before the
            # READY write, a GET meanwhile would show the last progress write, an older count.
            if self.core.live.get((sid, name)) is live:
                del self.core.live[(sid, name)]
        if not done:
            await self.core.discard_blobs([blob_id] if blob_id else [])
            raise errors.not_allowed(
                f"The file '{name}' was received, but its session ended or the file was added "
                "again meanwhile; it was discarded.",
                name,
            )
        await self.core.discard_blobs([row["blob_id"]] if row["blob_id"] else [])

    async def _algorithms(self, sid: str, name: str, declared: str | None) -> list[str]:
        """What to hash on the stream: SHA-1 (the item's checksum), the declared algorithm, and for OVF content
        SHA-256 plus whatever the session's manifest names for this file, so that checking the manifest later
        needs no second read of the bytes."""
        algorithms = ["sha1"]
        if declared not in (None, "SHA1"):
            algorithms.append(declared.lower())
        files = await self.store.session_files(sid)
        if ovf.kind_of(name) is not None or package.is_ovf_session(files):
            algorithms.append("sha256")
            manifest = package.parts(files).get("manifest")
            if manifest is not None and manifest["meta"]:
                entry = load_json(manifest["meta"])["entries"].get(name)
                if entry is not None:
                    algorithms.append(entry[0])
        return list(dict.fromkeys(algorithms))

    async def _receive(
        self, row: Row, blob_id: str, chunks: AsyncIterator[bytes], live: LiveTransfer
    ) -> tuple[int, dict[str, str]]:
        """Stream a body into a new blob, hashing it on the way; TransferFailed (blob gone) if anything breaks."""
        sid, name, declared = row["session_id"], row["name"], row["declared_size"]
        receiver = Receiver(self.core.blobs.sink(blob_id), await self._algorithms(sid, name, row["checksum_algorithm"]))
        try:
            last_progress = self.core.now()
            async for chunk in chunks:
                if declared is not None and receiver.size + len(chunk) > declared:
                    raise TransferFailed(f"The file '{name}' is larger than its declared size of {declared} bytes.")
                await receiver.feed(chunk)
                live.bytes = receiver.size
                last_progress = await self._progress(row, blob_id, receiver.size, last_progress)
            live.receiving = False  # all bytes are in: finishing is the server's work, not a stall
            return await receiver.finish()
        except BaseException as e:
            await receiver.abort()
            raise _failure(e, name, live) from None

    async def _progress(self, row: Row, blob_id: str | None, received: int, last: float) -> float:
        """Record bytes_transferred and session activity every so often during a transfer."""
        now = self.core.now()
        if now - last < min(_PROGRESS_EVERY, self.core.settings.update_session_timeout / 4):
            return last
        await self.store.update_session_file(
            row["session_id"],
            row["name"],
            {"bytes_transferred": received, "progress_at": now},
            expect={"pending_blob": blob_id},
        )
        await self.touch(row["session_id"])
        return now

    async def _inspect(self, name: str, kind: str | None, blob_id: str) -> dict[str, Any] | None:
        """Parse an OVF descriptor, manifest or certificate once it is in; a bad one fails the file."""
        parse = {
            "descriptor": ovf.parse_descriptor,
            "manifest": ovf.parse_manifest,
            "certificate": ovf.parse_certificate,
        }.get(kind or "")
        if parse is None:
            return None
        limit = max(ovf.MAX_DESCRIPTOR, ovf.MAX_MANIFEST, ovf.MAX_CERT) + 1
        data = await read_head(self.core.blobs, blob_id, limit)
        try:
            meta: dict[str, Any] = await run_blocking(parse, data)
        except ovf.PackageError as e:
            raise TransferFailed(f"'{name}' is not a valid OVF {kind}: {e}.") from None
        return meta

    async def _unpack(self, ova: Row, chunks: AsyncIterator[bytes], live: LiveTransfer) -> int:
        """Unpack an OVA while it streams: each tar member becomes a file of the session (descriptor first,
        then manifest, certificate and disks), hashed and written once, checked like a separately added file."""
        sid, ova_name = ova["session_id"], ova["name"]
        reader = TarReader()
        total = 0
        last_progress = self.core.now()
        member: Row | None = None
        receiver: Receiver | None = None
        seen: set[str] = set()
        try:
            async for chunk in chunks:
                total += len(chunk)
                live.bytes = total
                for event in reader.feed(chunk):
                    if isinstance(event, Member):
                        if event.name in seen or ovf.kind_of(event.name) == "ova":
                            raise TransferFailed(f"The OVA '{ova_name}' holds '{event.name}' twice or nested.")
                        seen.add(event.name)
                        member = await self._start_member(ova, event.name, event.size)
                        receiver = Receiver(
                            self.core.blobs.sink(member["pending_blob"]),
                            await self._algorithms(sid, event.name, None),
                        )
                    elif isinstance(event, Data):
                        assert receiver is not None
                        await receiver.feed(event.view)
                    elif isinstance(event, MemberEnd):
                        assert member is not None and receiver is not None
                        size, digests = await receiver.finish()
                        receiver = None
                        await self._finish_member(member, size, digests)
                last_progress = await self._progress(ova, None, total, last_progress)
            live.receiving = False
            if not reader.ended:
                raise TransferFailed(f"The OVA '{ova_name}' ends in the middle of the archive after {total} bytes.")
        except BaseException as e:
            if receiver is not None:
                await receiver.abort()
            if isinstance(e, TarError):
                raise TransferFailed(f"The OVA '{ova_name}' is not valid: {e}.") from None
            raise _failure(e, ova_name, live) from None
        return total

    async def _start_member(self, ova: Row, name: str, size: int) -> Row:
        kind = ovf.kind_of(name)
        row = session_file_row(
            ova["session_id"],
            name,
            parent=ova["name"],
            declared_size=size,
            status="TRANSFERRING",
            pending_blob=self.core.new_blob_id(ova["session_id"]),
            keep_in_storage=0 if kind in ("manifest", "certificate") else 1,
        )
        async with self.store.transaction():
            replaced = await self.store.put_session_file(row)
        await self.core.discard_blobs(replaced)
        return row

    async def _finish_member(self, member: Row, size: int, digests: dict[str, str]) -> None:
        blob_id = member["pending_blob"]
        meta = await self._inspect(member["name"], ovf.kind_of(member["name"]), blob_id)
        await self.store.update_session_file(
            member["session_id"],
            member["name"],
            {
                "status": "READY",
                "size": size,
                "bytes_transferred": size,
                "sha1": digests["sha1"],
                "digests": dumps(digests),
                "blob_id": blob_id,
                "pending_blob": None,
                "meta": dumps(meta) if meta is not None else None,
            },
            expect={"pending_blob": blob_id},
        )

    @staticmethod
    def _check_received(row: Row, content_length: int | None, size: int, digests: dict[str, str]) -> str | None:
        name = row["name"]
        if content_length is not None and size != content_length:
            return f"The upload of '{name}' ended after {size} of {content_length} bytes."
        if row["declared_size"] is not None and size != row["declared_size"]:
            return f"The file '{name}' has {size} bytes but its declared size is {row['declared_size']} bytes."
        if row["checksum"] is not None:
            got = digests["sha1" if row["checksum_algorithm"] == "SHA1" else row["checksum_algorithm"].lower()]
            if got != row["checksum"]:
                return (
                    f"The {row['checksum_algorithm']} checksum of '{name}' is {got}, but the declared checksum is "
                    f"{row['checksum']}."
                )
        return None

    async def _set_file_error(self, row: Row, blob_id: str | None, reason: str, received: int | None = None) -> None:
        """Put the file in ERROR (unless it was added again meanwhile) and discard the blob it was writing."""
        expect = {"pending_blob": blob_id} if blob_id else {"token": row["token"]} if row["token"] else {}
        fields: dict[str, Any] = {
            "status": "ERROR",
            "pending_blob": None,
            "error_message": message_json(TRANSFER_FAILED, reason, row["name"]),
        }
        if received is not None:
            fields["bytes_transferred"] = received
        await self.store.update_session_file(row["session_id"], row["name"], fields, expect=expect)
        if blob_id:
            await self.core.discard_blobs([blob_id])

    def _start_pull(self, row: Row) -> None:
        live = LiveTransfer()
        self.core.live[(row["session_id"], row["name"])] = live
        live.task = asyncio.get_running_loop().create_task(self._pull(row))

    async def _pull(self, row: Row) -> None:
        endpoint = load_json(row["source_endpoint"])
        uri = endpoint["uri"]
        try:
            if uri.startswith("file:"):
                path = urllib.parse.unquote(urllib.parse.urlsplit(uri).path)
                with await run_blocking(open, path, "rb") as source:
                    if not stat.S_ISREG(os.fstat(source.fileno()).st_mode):
                        raise TransferFailed(f"Pulling '{row['name']}' from {uri} failed: not a regular file.")
                    await self._transfer(row, _read_file(source), os.fstat(source.fileno()).st_size)
                return
            assert self.http is not None
            async with self.http.get(uri, ssl=_pull_ssl(endpoint)) as resp:
                if resp.status != 200:
                    raise TransferFailed(
                        f"Pulling '{row['name']}' from {uri} failed: HTTP {resp.status} {resp.reason}."
                    )
                await self._transfer(row, resp.content.iter_any(), resp.content_length)
        except errors.ApiError:
            pass  # _transfer recorded the error on the file
        except asyncio.CancelledError:
            await self._set_file_error(row, None, "The pull was stopped.")
        except TransferFailed as failure:
            await self._set_file_error(row, None, failure.reason)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
            await self._set_file_error(row, None, f"Pulling '{row['name']}' from {uri} failed: {e}.")
        except Exception:
            log.exception("pull of %s failed", uri)
            await self._set_file_error(row, None, f"Pulling '{row['name']}' from {uri} failed.")
        finally:
            key = (row["session_id"], row["name"])
            if (live := self.core.live.get(key)) is not None and live.task is asyncio.current_task():
                del self.core.live[key]

    async def fail_stalled(self, owner: str | None = None, before: float | None = None) -> None:
        """Transfers that can no longer finish go to ERROR so the client adds them again: at start-up, those this
        replica ran before it stopped (`owner`); in the sweeper, those of any replica that recorded no progress
        since `before` (their replica died)."""
        for row in await self.store.stalled_transfers(owner, before):
            if (row["session_id"], row["name"]) in self.core.live:
                continue
            await self._set_file_error(
                row, row["pending_blob"], "The transfer was interrupted (its server stopped); add the file again."
            )
            async with self.store.transaction():
                members = await self.store.delete_members(row["session_id"], row["name"])
            await self.core.discard_blobs(members)


def _failure(e: BaseException, name: str, live: LiveTransfer) -> TransferFailed:
    """What a transfer that raised `e` tells the file (its error_message) and the uploader (the error)."""
    if isinstance(e, TransferFailed):
        return e
    if isinstance(e, asyncio.CancelledError) and live.stalled:
        return TransferFailed(f"The transfer of '{name}' timed out after {live.bytes} bytes: {live.aborted}.")
    if isinstance(e, asyncio.CancelledError):
        reason = f"The transfer of '{name}' was stopped: {live.aborted or 'the request was canceled'}."
        return TransferFailed(reason, errors.not_allowed(reason, name))
    if isinstance(e, TimeoutError):
        return TransferFailed(f"The transfer of '{name}' timed out after {live.bytes} bytes: {e or 'no data arrived'}.")
    if isinstance(e, ConnectionError | aiohttp.ClientError):
        return TransferFailed(
            f"The connection was lost while receiving '{name}' after {live.bytes} bytes ({e.__class__.__name__})."
        )
    if isinstance(e, OSError):
        reason = f"Storing '{name}' failed after {live.bytes} bytes: {e.strerror or e}."
        return TransferFailed(
            reason, errors.unable_to_allocate(reason, name, msg_id="com.vmware.content.updatesession.file.storage")
        )
    if isinstance(e, Exception):
        log.exception("transfer of %s failed", name)
        return TransferFailed(
            f"The transfer of '{name}' failed: {e.__class__.__name__}.",
            errors.internal(f"The transfer of '{name}' failed; the server log has the details."),
        )
    raise e


def _fingerprint(files: list[Row]) -> list[tuple[Any, ...]]:
    return [(f["name"], f["op"], f["status"], f["blob_id"]) for f in files]


def _thumbprint(text: str) -> bytes:
    digest = text.replace(":", "").replace(" ", "")
    try:
        raw = bytes.fromhex(digest)
    except ValueError:
        raise errors.invalid_argument(f"ssl_certificate_thumbprint '{text}' is not hexadecimal.", text) from None
    if len(raw) != 32:
        raise errors.invalid_argument(
            f"ssl_certificate_thumbprint '{text}' is not a SHA-256 thumbprint (32 bytes).", text
        )
    return raw


async def _read_file(source: BinaryIO) -> AsyncIterator[bytes]:
    """A local file's bytes, read in worker threads a megabyte at a time."""
    while chunk := await run_blocking(source.read, 1 << 20):
        yield chunk


def _pull_ssl(endpoint: dict[str, Any]) -> aiohttp.Fingerprint | ssl.SSLContext | bool:
    if endpoint.get("ssl_certificate_thumbprint"):
        return aiohttp.Fingerprint(_thumbprint(endpoint["ssl_certificate_thumbprint"]))
    if endpoint.get("ssl_certificate"):
        der = ssl.PEM_cert_to_DER_cert(endpoint["ssl_certificate"])
        return aiohttp.Fingerprint(hashlib.sha256(der).digest())
    return True
