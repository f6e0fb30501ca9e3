"""What every service shares: the stores, the settings, the clock, and the small validation rules that more than
one operation applies."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from contentlib import errors
from contentlib.config import Settings
from contentlib.model import fmt_time
from contentlib.storage.blobs import BlobStore
from contentlib.storage.sql import SqlStore, dumps, loads

log = logging.getLogger("contentlib")


@dataclass(frozen=True)
class Ctx:
    """Who calls, and where they reached us (endpoint URIs are built from the request's scheme and host)."""

    user: str
    base_url: str
    session_id: str = ""
    credentials: tuple[str, str] | None = None  # user name and password sent with the call (login)
    role: str = ""
    privileges: frozenset[str] = frozenset()

    def require(self, privileges: tuple[str, ...], what: str) -> None:
        """UNAUTHORIZED unless the caller's role grants every one of `privileges` (needed for `what`)."""
        missing = [p for p in privileges if p not in self.privileges]
        if missing:
            raise errors.unauthorized(
                f"Unable to authorize user {self.user}: {what} requires the privilege {', '.join(missing)}, which the "
                f"role {self.role or 'of this caller'} does not grant.",
                self.user,
                *missing,
            )


@dataclass
class LiveTransfer:
    """An upload or pull in progress in this process: its byte count for `File.Info.bytes_transferred`, and the
    means to stop it when its session ends or it stalls."""

    bytes: int = 0
    task: asyncio.Task[Any] | None = None
    aborted: str | None = None  # why it must stop, once it must
    stalled: bool = False  # it was stopped because no data arrived
    receiving: bool = True  # still waiting for bytes from the client or the source
    seen: int = 0  # `bytes` when the watchdog last saw them move, and when (time.monotonic())
    seen_at: float = field(default_factory=time.monotonic)
    claim: dict[str, Any] | None = None  # what the file's row holds while this transfer owns it (an upload's)
    flushed: int = 0  # `bytes` when they were last written to the file's row


@dataclass
class Core:
    settings: Settings
    store: SqlStore
    blobs: BlobStore
    replica_id: str
    live: dict[tuple[str, str], LiveTransfer] = field(default_factory=dict)

    @staticmethod
    def now() -> float:
        return time.time()

    @staticmethod
    def new_id() -> str:
        return str(uuid.uuid4())

    @staticmethod
    def new_blob_id(session_id: str) -> str:
        """Blobs are staged under their session's prefix (a folder on disk, a key prefix in S3)."""
        return f"{session_id}/{uuid.uuid4()}"

    @staticmethod
    def new_token() -> str:
        """An unguessable URL credential: 192 random bits."""
        return secrets.token_urlsafe(24)

    def expiration(self, last_activity: float) -> str:
        return fmt_time(last_activity + self.settings.update_session_timeout)

    def abort_transfers(self, session_id: str, reason: str, name: str | None = None) -> None:
        """Stop the session's transfers running in this process (only the named file's, with `name`)."""
        for (sid, file_name), live in list(self.live.items()):
            if sid == session_id and name in (None, file_name):
                live.aborted = reason
                if live.task is not None:
                    live.task.cancel()

    def stop_stalled_transfers(self, now: float) -> None:
        """Stop this process's transfers whose byte count has not moved for --transfer-stall-timeout seconds: a
        client that stopped sending (or trickles nothing), a source that stopped answering. A watchdog calls this
        every so often, so receiving a chunk costs nothing more than counting it."""
        limit = self.settings.transfer_stall_timeout
        for live in list(self.live.values()):
            if live.bytes != live.seen:
                live.seen, live.seen_at = live.bytes, now
            elif live.receiving and now - live.seen_at >= limit and live.aborted is None and live.task is not None:
                live.aborted, live.stalled = f"no data arrived for {limit:g} seconds", True
                live.task.cancel()

    async def discard_blobs(self, blob_ids: list[str]) -> None:
        """Delete blobs that lost their last reference (checked again: another row may share it). Unlinking a
        large file takes the filesystem a while, so it happens in a worker thread, never in the event loop."""
        unreferenced = [b for b in blob_ids if b and not await self.store.is_blob_referenced(b)]
        if unreferenced:
            await self.blobs.delete_all(unreferenced)


def check_client_token(token: str | None) -> str | None:
    if token is None:
        return None
    try:
        uuid.UUID(token)
    except ValueError:
        raise errors.invalid_argument(
            f"The client_token '{token}' is not a UUID.", token, msg_id="com.vmware.content.client_token.invalid"
        ) from None
    return token.lower()


def check_file_name(name: str) -> str:
    if name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        raise errors.invalid_argument(
            f"The file name {name!r} is not valid: it must not be empty, '.' or '..', nor contain '/', '\\' or NUL.",
            name,
            msg_id="com.vmware.content.file.invalid_name",
        )
    return name


def check_text(value: str, what: str) -> str:
    """`value` if it is valid Unicode text: bytes that were not UTF-8 (kept by aiohttp and the stdlib as lone
    surrogates) can be neither stored nor echoed back, so they are INVALID_ARGUMENT, not a 500."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise errors.invalid_argument(f"{what} is not valid UTF-8.") from None
    return value


_PCHAR = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})"
_URI = re.compile(  # RFC 3986 section 3: scheme ":" hier-part [ "?" query ] [ "#" fragment ]
    r"[A-Za-z][A-Za-z0-9+\-.]*:"
    rf"(?://(?:(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|%[0-9A-Fa-f]{{2}})*@)?"
    rf"(?P<host>\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{{2}})*)(?::[0-9]*)?(?:/{_PCHAR}*)*"
    rf"|/(?:{_PCHAR}+(?:/{_PCHAR}*)*)?|{_PCHAR}+(?:/{_PCHAR}*)*|)"
    rf"(?:\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?"
)


def check_uri(value: str, what: str) -> str:
    """`value` if it is a URI (RFC 3986, the Swagger's `format: uri`): a member the server stores and returns must
    be one, or every later get of it would break the contract. INVALID_ARGUMENT naming the member otherwise."""
    m = _URI.fullmatch(value)
    valid = m is not None
    if m is not None and (host := m["host"] or "").startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            valid = False
    if not valid:
        raise errors.invalid_argument(f"{what} is not a URI: {value!r}.", what, value)
    return value


def message_json(msg_id: str, text: str, *args: object) -> str:
    return dumps(errors.message(msg_id, text, *args))


load_json = loads
