"""The data plane of update sessions: PUSH uploads streamed into staged blobs, OVAs unpacked while they stream,
and PULLs the server runs itself (http, https, file://).

`Transfers` owns how bytes arrive and when a session's file becomes READY or ERROR; every rule about the session
itself (whether it is ACTIVE, its activity, what a finished transfer means for a completing session) belongs to
the session service, reached through `SessionRules`. A transfer is claimed with a compare-and-set on its file's
row, so one request receives a file at a time on any replica.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import stat
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any, BinaryIO, Protocol

import aiohttp

from contentlib import errors
from contentlib.services import ovf, package
from contentlib.services.core import Core, LiveTransfer, load_json, log, message_json
from contentlib.services.sessions import ACTIVE
from contentlib.storage.blobs import read_head
from contentlib.storage.schema import session_file_row
from contentlib.storage.sql import Row, dumps
from contentlib.tarstream import Data, Member, MemberEnd, TarError, TarReader
from contentlib.transfer import Receiver, run_blocking

TRANSFER_FAILED = "com.vmware.content.updatesession.file.transfer_failed"
_RECEIVING = ("TRANSFERRING", "VALIDATING")  # a file in these states belongs to the request receiving it
_PROGRESS_EVERY = 1.0  # seconds between progress writes (bytes_transferred, session activity) during a transfer


class TransferFailed(Exception):
    """A transfer that ended without a usable blob; `error` is what the uploader is told."""

    def __init__(self, reason: str, error: errors.ApiError | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error or errors.invalid_argument(reason, msg_id=TRANSFER_FAILED)


class SessionRules(Protocol):
    """What a transfer needs of the update-session service."""

    async def session(self, sid: str) -> Row: ...

    def require_active(self, row: Row, operation: str) -> None: ...

    def require_open(self, row: Row, operation: str) -> None: ...

    async def transfer_ended(self, sid: str) -> None: ...

    async def touch(self, sid: str) -> bool: ...


class Transfers:
    def __init__(self, core: Core, sessions: SessionRules, http: aiohttp.ClientSession | None = None) -> None:
        self.core = core
        self.store = core.store
        self.sessions = sessions
        self.http = http
        # The credentials the PULLs of a session send (by session id): a subscribed library's sync sets its
        # publisher's, which are never written into the session's rows (a file's info shows its source endpoint).
        self.credentials: dict[str, aiohttp.BasicAuth] = {}

    async def receive_upload(
        self, token: str, name: str, chunks: AsyncIterator[bytes], content_length: int | None
    ) -> None:
        """Stream one PUSH upload into a new staged blob; the URL token is the credential."""
        row = await self.store.session_file_by_token(token)
        if row is None or row["name"] != name:
            raise errors.not_found("upload endpoint", f"/cls/data/{token[:6]}…/{name}")
        session = await self.sessions.session(row["session_id"])
        self.sessions.require_open(session, "upload to")
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
            session = await self.sessions.session(sid)
            self.sessions.require_active(session, "upload to")
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
            await self.sessions.touch(sid)
        live = self.core.live.setdefault((sid, name), LiveTransfer())
        if live.task is None:
            live.task = asyncio.current_task()
        live.claim = _same_transfer(row, blob_id)
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
                session = await self.sessions.session(sid)
                done = session["state"] == ACTIVE and await self.store.update_session_file(
                    sid, name, ready, expect={"pending_blob": blob_id}
                )
                if done:
                    await self.sessions.touch(sid)
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
        """Record bytes_transferred and session activity every so often during a transfer. A session that ended, or
        a file removed or added again, in another process (a worker or replica whose `abort_transfers` cannot reach
        this one) stops the transfer here, as a local abort would."""
        now = self.core.now()
        if now - last < min(_PROGRESS_EVERY, self.core.settings.update_session_timeout / 4):
            return last
        name = row["name"]
        if not await self.store.update_session_file(
            row["session_id"], name, {"bytes_transferred": received, "progress_at": now}, _same_transfer(row, blob_id)
        ):
            reason = f"The transfer of '{name}' was stopped: the file was removed or added again."
            raise TransferFailed(reason, errors.not_allowed(reason, name))
        if not await self.sessions.touch(row["session_id"]):
            reason = f"The transfer of '{name}' was stopped: the update session ended."
            raise TransferFailed(reason, errors.not_allowed(reason, name))
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
        expect = _same_transfer(row, blob_id)
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

    def start_pull(self, row: Row) -> None:
        live = LiveTransfer()
        self.core.live[(row["session_id"], row["name"])] = live
        live.task = asyncio.get_running_loop().create_task(self._pull(row))

    async def _pull(self, row: Row) -> None:
        """Fetch a PULL file's source into the session; whatever the outcome, tell the session it has ended."""
        endpoint = load_json(row["source_endpoint"])
        uri = endpoint["uri"]
        try:
            if uri.startswith("file:"):
                path = urllib.parse.unquote(urllib.parse.urlsplit(uri).path)
                with await run_blocking(open, path, "rb") as source:
                    if not stat.S_ISREG(os.fstat(source.fileno()).st_mode):
                        raise TransferFailed(f"Pulling '{row['name']}' from {uri} failed: not a regular file.")
                    await self._transfer(row, _read_file(source), os.fstat(source.fileno()).st_size)
            else:
                assert self.http is not None
                auth = self.credentials.get(row["session_id"])
                ssl_check = _pull_ssl(endpoint)
                async with self.http.get(uri, ssl=ssl_check, auth=auth) as resp:
                    if resp.status != 200:
                        raise TransferFailed(
                            f"Pulling '{row['name']}' from {uri} failed: HTTP {resp.status} {resp.reason}."
                        )
                    chunks = _resuming(self.http, uri, resp, ssl_check, auth)
                    await self._transfer(row, chunks, resp.content_length)
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
        await self.sessions.transfer_ended(row["session_id"])

    async def flush_progress(self) -> None:
        """Write the byte count of this process's uploads that moved since their last write, so that a GET served by
        another worker or replica shows it within a moment, also while the client pauses (the transfer itself
        writes it only as chunks arrive). Never over a row another transfer owns, nor once the file left
        TRANSFERRING."""
        for (sid, name), live in list(self.core.live.items()):
            if live.claim is not None and live.receiving and live.bytes != live.flushed:
                live.flushed = live.bytes
                expect = {**live.claim, "status": "TRANSFERRING"}
                await self.store.update_session_file(sid, name, {"bytes_transferred": live.bytes}, expect=expect)

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
            await self.sessions.transfer_ended(row["session_id"])


def _same_transfer(row: Row, blob_id: str | None) -> Row:
    """What the file's row still holds while this transfer owns it: the blob it writes (an OVA writes none of its
    own: its upload token, which adding the file again replaces)."""
    return {"pending_blob": blob_id} if blob_id else {"token": row["token"]} if row["token"] else {}


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


def thumbprint(text: str) -> bytes:
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


_RESUMES = 3  # times a PULL whose connection broke mid-body continues with a Range request


async def _resuming(
    http: aiohttp.ClientSession,
    uri: str,
    first: aiohttp.ClientResponse,
    ssl_check: aiohttp.Fingerprint | ssl.SSLContext | bool,
    auth: aiohttp.BasicAuth | None,
) -> AsyncIterator[bytes]:
    """A PULL's body; when the connection breaks before its Content-Length is in and the source serves ranges
    (Accept-Ranges: bytes), the rest comes from a Range request (If-Range: its ETag, so that a source that changed
    meanwhile is not spliced in: it answers 200, and the pull fails as before). A cut connection, or a TLS peer
    that closes without close_notify (uvloop then loses the body's tail), costs a request, not the transfer."""
    total = first.content_length
    resumable = total is not None and first.headers.get("Accept-Ranges", "").lower() == "bytes"
    etag = first.headers.get("ETag")
    received, resumes, current = 0, 0, first
    try:
        while True:
            try:
                async for chunk in current.content.iter_any():
                    received += len(chunk)
                    yield chunk
                return
            except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, ConnectionError):
                if not resumable or resumes >= _RESUMES or total is None or received >= total:
                    raise
            resumes += 1
            headers = {"Range": f"bytes={received}-"} | ({"If-Range": etag} if etag else {})
            if current is not first:
                current.release()
            current = await http.get(uri, ssl=ssl_check, auth=auth, headers=headers)
            expected = f"bytes {received}-{total - 1}/{total}"
            if current.status != 206 or current.headers.get("Content-Range", "") != expected:
                raise aiohttp.ClientPayloadError(
                    f"the source answered the Range request for bytes {received}- with HTTP {current.status} "
                    f"{current.headers.get('Content-Range', '')}"
                )
    finally:
        if current is not first:
            current.release()


async def _read_file(source: BinaryIO) -> AsyncIterator[bytes]:
    """A local file's bytes, read in worker threads a megabyte at a time."""
    while chunk := await run_blocking(source.read, 1 << 20):
        yield chunk


def _pull_ssl(endpoint: dict[str, Any]) -> aiohttp.Fingerprint | ssl.SSLContext | bool:
    if endpoint.get("ssl_certificate_thumbprint"):
        return aiohttp.Fingerprint(thumbprint(endpoint["ssl_certificate_thumbprint"]))
    if endpoint.get("ssl_certificate"):
        der = ssl.PEM_cert_to_DER_cert(endpoint["ssl_certificate"])
        return aiohttp.Fingerprint(hashlib.sha256(der).digest())
    return True
