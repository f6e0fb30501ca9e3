"""The metadata Store: every query the services need, written once in SQL that SQLite and PostgreSQL both run.

Contract for callers (the services):
- Every method is a coroutine. Drivers supply five primitives (`_one`, `_all`, `_exec`, `_insert`, `_update`) and
  `transaction()`; statements use `?` placeholders, which a driver rewrites if its database wants others.
- `async with store.transaction():` groups statements atomically. Inside one, reading a session or an item locks
  its row until the end (PostgreSQL: SELECT ... FOR UPDATE; SQLite serializes writers with BEGIN IMMEDIATE), so
  read-check-write sequences on one session cannot interleave, whichever replica runs them. Code inside a
  transaction must not await anything but Store methods.
- One ACTIVE update session per item is the partial unique index `one_active_update_session`; `insert_session`
  turns its violation into `Busy`, so the database, not Python, decides the race.

Layout of rows: times are float epoch seconds; structured values (storage backings, warning behavior, messages,
parsed package metadata) are JSON text; versions are integers rendered as strings by the services. Items may share
blobs (a copy points at its source's): a blob is garbage only when no row of any item references it any more.
"""

from __future__ import annotations

import hashlib
from contextlib import AbstractAsyncContextManager
from typing import Any

import msgspec

from contentlib import errors
from contentlib.storage.schema import Row as Row  # re-exported: the services and drivers import it from here
from contentlib.storage.sync_queries import SyncQueries


class Busy(Exception):
    """Another ACTIVE update session holds the item (the partial unique index said so)."""


class TokenTaken(Exception):
    """A client token was already used for another create."""


class UniqueViolation(Exception):
    """A driver's unique-constraint error; the message names the constraint or its columns."""


def check_args(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A write's parameters, refused when a text holds NUL: PostgreSQL cannot store U+0000 in text, and every
    backend refuses it alike. Operation.call refuses such inputs first, naming the member; this is the net under
    every other way text reaches a write (INVALID_ARGUMENT, never a 500)."""
    for value in args:
        if isinstance(value, str) and "\x00" in value:
            raise errors.invalid_argument("A text value holds a NUL character (U+0000), which cannot be stored.")
    return args


def disk_full() -> errors.ApiError:
    """What a driver raises when the database cannot write for lack of disk space: the caller is told (the vendor's
    UNABLE_TO_ALLOCATE_RESOURCE), nothing is half-written (the statement or transaction is rolled back)."""
    return errors.unable_to_allocate(
        "The metadata database cannot write: no space left on its disk. Free some space and try again."
    )


def _failure_key(name: str) -> str:
    """The row key of a name's failed logins: its SHA-256, so that a name of any length (a client may send
    megabytes) fits an index entry on every backend."""
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()


def dumps(value: Any) -> str:
    """JSON text for a column (structured values: backings, messages, warning behavior, parsed metadata)."""
    return msgspec.json.encode(value).decode()


def loads(text: str | None) -> Any:
    """The value of a JSON column; None for SQL NULL."""
    return None if text is None else msgspec.json.decode(text)


class SqlStore(SyncQueries):
    """The queries (those of subscribed libraries' syncs in SyncQueries); a driver subclass supplies the primitives
    below."""

    async def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Row | None:
        raise NotImplementedError

    async def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[Row]:
        raise NotImplementedError

    async def _exec(self, sql: str, args: tuple[Any, ...] = (), may_conflict: bool = False) -> int:
        """Run a statement; the number of rows it changed. Unique violations raise UniqueViolation; with
        `may_conflict` (the caller handles them), the surrounding transaction stays usable after one."""
        raise NotImplementedError

    def transaction(self) -> AbstractAsyncContextManager[None]:
        raise NotImplementedError

    def _locking(self, of: str = "") -> str:
        """The clause that locks the rows a SELECT reads inside a transaction ("" where not needed)."""
        return ""

    async def close(self) -> None:
        raise NotImplementedError

    async def maintain(self) -> None:
        """Housekeeping the sweeper runs now and then (SQLite: checkpoint the WAL)."""

    async def is_sweeper(self) -> bool:
        """Whether this process runs the sweeper (with one database per process: always)."""
        return True

    async def ping(self) -> None:
        """A trivial query: raises when the database cannot be reached (`/readyz`)."""
        await self._one("SELECT 1 AS one")

    async def active_sessions(self) -> tuple[int, int]:
        """How many update and download sessions are ACTIVE (`/metrics`)."""
        row = await self._one(
            "SELECT (SELECT count(*) FROM update_sessions WHERE state='ACTIVE') AS updates, "
            "(SELECT count(*) FROM download_sessions WHERE state='ACTIVE') AS downloads"
        )
        return (int(row["updates"]), int(row["downloads"])) if row else (0, 0)

    async def _insert(self, table: str, row: Row) -> None:
        cols = ",".join(row)
        marks = ",".join("?" * len(row))
        await self._exec(f"INSERT INTO {table} ({cols}) VALUES ({marks})", tuple(row.values()), may_conflict=True)

    async def _update(self, table: str, where: Row, fields: Row, may_conflict: bool = False) -> int:
        """UPDATE ... WHERE every `where` column equals its value (None matches NULL: compare-and-set on an
        unset column works too)."""
        sets = ",".join(f"{k}=?" for k in fields)
        cond = " AND ".join(f"{k} IS NULL" if v is None else f"{k}=?" for k, v in where.items())
        args = (*fields.values(), *(v for v in where.values() if v is not None))
        return await self._exec(f"UPDATE {table} SET {sets} WHERE {cond}", args, may_conflict)

    # -- meta -----------------------------------------------------------------------------------------------
    async def get_meta(self, key: str) -> str | None:
        row = await self._one("SELECT value FROM meta WHERE key=?", (key,))
        return None if row is None else str(row["value"])

    async def meta_under(self, prefix: str) -> dict[str, str]:
        """Every meta value whose key starts with `prefix`, by the rest of its key."""
        rows = await self._all("SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
        return {r["key"][len(prefix) :]: str(r["value"]) for r in rows}

    async def set_meta(self, key: str, value: str) -> None:
        await self._exec(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    async def delete_meta(self, key: str) -> None:
        await self._exec("DELETE FROM meta WHERE key=?", (key,))

    # -- users and API sessions -------------------------------------------------------------------------------
    async def get_user(self, name: str) -> Row | None:
        return await self._one("SELECT * FROM users WHERE lower(name)=lower(?)", (name,))

    async def list_users(self) -> list[Row]:
        return await self._all("SELECT name, role, created FROM users ORDER BY name")

    async def add_user(self, name: str, password_hash: str, now: float, role: str) -> bool:
        try:
            await self._insert("users", {"name": name, "password_hash": password_hash, "created": now, "role": role})
        except UniqueViolation:
            return False
        return True

    async def set_password(self, name: str, password_hash: str) -> bool:
        return (
            await self._exec("UPDATE users SET password_hash=? WHERE lower(name)=lower(?)", (password_hash, name)) > 0
        )

    async def set_role(self, name: str, role: str) -> bool:
        return await self._exec("UPDATE users SET role=? WHERE lower(name)=lower(?)", (role, name)) > 0

    async def remove_user(self, name: str) -> bool:
        async with self.transaction():
            await self._exec("DELETE FROM api_sessions WHERE lower(owner)=lower(?)", (name,))
            return await self._exec("DELETE FROM users WHERE lower(name)=lower(?)", (name,)) > 0

    async def create_api_session(self, sid: str, user: str, now: float) -> None:
        await self._insert("api_sessions", {"id": sid, "owner": user, "created": now, "last_accessed": now})

    async def get_api_session(self, sid: str) -> Row | None:
        """The session with its owner's current role (none once the owner is removed)."""
        return await self._one(
            "SELECT s.*, u.role FROM api_sessions s JOIN users u ON lower(u.name) = lower(s.owner) WHERE s.id=?", (sid,)
        )

    async def list_api_sessions(self, owner: str) -> list[Row]:
        return await self._all("SELECT * FROM api_sessions WHERE lower(owner)=lower(?) ORDER BY created, id", (owner,))

    async def touch_api_session(self, sid: str, now: float) -> None:
        await self._exec("UPDATE api_sessions SET last_accessed=? WHERE id=?", (now, sid))

    async def delete_api_session(self, sid: str) -> None:
        await self._exec("DELETE FROM api_sessions WHERE id=?", (sid,))

    async def delete_idle_api_sessions(self, before: float) -> int:
        return await self._exec("DELETE FROM api_sessions WHERE last_accessed < ?", (before,))

    # -- failed logins (per lower-case user name, shared by every process) --------------------------------------
    async def login_failures(self, name: str) -> Row | None:
        return await self._one("SELECT count, last FROM login_failures WHERE name=?", (_failure_key(name),))

    async def record_login_failure(self, name: str, now: float, forget_before: float) -> int:
        """Count a failed login; a count whose last failure is older than `forget_before` starts over. The new count."""
        async with self.transaction():
            await self._exec(
                "INSERT INTO login_failures (name, count, last) VALUES (?, 1, ?) ON CONFLICT(name) DO UPDATE SET "
                "count = CASE WHEN login_failures.last < ? THEN 1 ELSE login_failures.count + 1 END, "
                "last = excluded.last",
                (_failure_key(name), now, forget_before),
            )
            row = await self.login_failures(name)
        return int(row["count"]) if row else 1

    async def clear_login_failures(self, name: str) -> None:
        await self._exec("DELETE FROM login_failures WHERE name=?", (_failure_key(name),))

    async def forget_login_failures(self, before: float) -> int:
        return await self._exec("DELETE FROM login_failures WHERE last < ?", (before,))

    # -- libraries ----------------------------------------------------------------------------------------
    async def insert_library(self, row: Row) -> None:
        try:
            await self._insert("libraries", row)
        except UniqueViolation as e:
            raise TokenTaken() from e

    async def library_by_token(self, token: str) -> Row | None:
        return await self._one("SELECT * FROM libraries WHERE client_token=?", (token,))

    async def get_library(self, library_id: str) -> Row | None:
        return await self._one("SELECT * FROM libraries WHERE id=?", (library_id,))

    async def list_libraries(self, type_: str | None = None) -> list[Row]:
        if type_ is None:
            return await self._all("SELECT * FROM libraries ORDER BY created, id")
        return await self._all("SELECT * FROM libraries WHERE type=? ORDER BY created, id", (type_,))

    async def update_library(self, library_id: str, fields: Row) -> None:
        await self._update("libraries", {"id": library_id}, fields)

    async def delete_library(self, library_id: str) -> None:
        await self._exec("DELETE FROM libraries WHERE id=?", (library_id,))

    async def bump_publish_version(self, kind: str, object_id: str) -> int:
        """Count one more publish of a library or item (`kind` "library" or "item"); the new count (0: no such row).
        Subscribers compare it with what they last saw to learn that something was published."""
        table = {"library": "libraries", "item": "items"}[kind]
        await self._exec(f"UPDATE {table} SET publish_version = publish_version + 1 WHERE id=?", (object_id,))
        row = await self._one(f"SELECT publish_version FROM {table} WHERE id=?", (object_id,))
        return 0 if row is None else int(row["publish_version"])

    # -- the VCSP feed of a published library ------------------------------------------------------------------------
    async def feed_version(self, library_id: str) -> int:
        """The version of the library's VCSP feed (lib.json `version`; 0: no such library). It is a sum of counters
        that only grow: the library's metadata version and publish count, what its removed items counted
        (`feed_removed`), and every item's metadata, content and publish versions. Every change a subscriber must
        see raises one of them, in the transaction that makes the change, so the sum grows with every change, in
        every worker and replica alike, and no row has to be locked by every write to the library's items."""
        row = await self._one(
            "SELECT CAST(l.version + l.publish_version + l.feed_removed + COALESCE((SELECT SUM(i.version + "
            "i.content_version + i.publish_version) FROM items i WHERE i.library_id=l.id), 0) AS BIGINT) AS v "
            "FROM libraries l WHERE l.id=?",
            (library_id,),
        )
        return 0 if row is None else int(row["v"])

    async def count_removed_item(self, item_id: str) -> None:
        """Before an item is deleted: its library keeps what the item counted towards the feed version, plus one,
        so that the version grows when an item goes (call it in the deleting transaction, before delete_item)."""
        await self._exec(
            "UPDATE libraries SET feed_removed = feed_removed + 1 + "
            "(SELECT version + content_version + publish_version FROM items WHERE id=?) "
            "WHERE id=(SELECT library_id FROM items WHERE id=?)",
            (item_id, item_id),
        )

    async def feed_items(self, library_id: str, item_id: str | None = None) -> list[Row]:
        """The library's items (or the one `item_id`) with their files, read in one statement, hence one snapshot:
        an item is never listed with the files of another of its versions. One row per file (file_* None for an
        item without files), by item creation, then file name."""
        sql = (
            "SELECT i.id, i.name, i.description, i.type, i.version, i.content_version, i.publish_version, i.created, "
            "f.name AS file_name, f.size AS file_size, f.sha1 AS file_sha1, f.blob_id AS file_blob "
            "FROM items i LEFT JOIN item_files f ON f.item_id=i.id WHERE i.library_id=?"
        )
        if item_id is None:
            return await self._all(sql + " ORDER BY i.created, i.id, f.name", (library_id,))
        return await self._all(sql + " AND i.id=? ORDER BY f.name", (library_id, item_id))

    # -- items ----------------------------------------------------------------------------------------------
    async def insert_item(self, row: Row) -> str | None:
        """Insert; on a name clash in the library return 'name', on a reused client token 'token'."""
        try:
            await self._insert("items", row)
        except UniqueViolation as e:
            return "token" if "client_token" in str(e) else "name"
        return None

    async def item_by_token(self, token: str) -> Row | None:
        return await self._one("SELECT * FROM items WHERE client_token=?", (token,))

    async def get_item(self, item_id: str) -> Row | None:
        return await self._one(
            "SELECT i.*, "
            "CAST(COALESCE((SELECT SUM(size) FROM item_files f WHERE f.item_id=i.id), 0) AS BIGINT) AS size "
            f"FROM items i WHERE i.id=?{self._locking('i')}",
            (item_id,),
        )

    async def list_items(self, library_id: str | None = None) -> list[Row]:
        if library_id is None:
            return await self._all("SELECT * FROM items ORDER BY created, id")
        return await self._all("SELECT * FROM items WHERE library_id=? ORDER BY created, id", (library_id,))

    async def update_item(self, item_id: str, fields: Row) -> bool:
        """Apply; False when the new name clashes with another item of the library."""
        try:
            await self._update("items", {"id": item_id}, fields, may_conflict=True)
        except UniqueViolation:
            return False
        return True

    async def delete_item(self, item_id: str) -> list[str]:
        """Delete the item, its files, its change history and its finished sessions; return the blob ids that lost a
        reference (another item, a copy, may still hold some: `is_blob_referenced` decides)."""
        blobs = [r["blob_id"] for r in await self._all("SELECT blob_id FROM item_files WHERE item_id=?", (item_id,))]
        for sid_row in await self._all("SELECT id FROM update_sessions WHERE item_id=?", (item_id,)):
            blobs += await self.delete_session("update", sid_row["id"])
        for sid_row in await self._all("SELECT id FROM download_sessions WHERE item_id=?", (item_id,)):
            blobs += await self.delete_session("download", sid_row["id"])
        await self._exec("DELETE FROM item_files WHERE item_id=?", (item_id,))
        await self._exec("DELETE FROM item_changes WHERE item_id=?", (item_id,))
        await self._exec("DELETE FROM items WHERE id=?", (item_id,))
        return blobs

    async def item_files(self, item_id: str) -> list[Row]:
        return await self._all("SELECT * FROM item_files WHERE item_id=? ORDER BY name", (item_id,))

    async def item_file(self, item_id: str, name: str) -> Row | None:
        return await self._one("SELECT * FROM item_files WHERE item_id=? AND name=?", (item_id, name))

    async def put_item_file(self, row: Row) -> None:
        await self._exec("DELETE FROM item_files WHERE item_id=? AND name=?", (row["item_id"], row["name"]))
        await self._insert("item_files", row)

    async def delete_item_file(self, item_id: str, name: str) -> None:
        await self._exec("DELETE FROM item_files WHERE item_id=? AND name=?", (item_id, name))

    async def copy_item_files(self, source_id: str, target_id: str) -> int:
        """Give the target item the source's files, pointing at the same blobs (no byte is copied), each at version
        1; how many. The blobs stay until neither item references them."""
        return await self._exec(
            "INSERT INTO item_files (item_id, name, blob_id, size, sha1, version) "
            "SELECT ?, name, blob_id, size, sha1, 1 FROM item_files WHERE item_id=?",
            (target_id, source_id),
        )

    # -- item content changes (`version` is the item's content_version the change produced) -------------------------
    async def add_item_change(
        self, item_id: str, version: int, changed: float, user: str | None, message: str | None
    ) -> None:
        await self._exec(
            "INSERT INTO item_changes (item_id, version, changed, user_name, message) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (item_id, version, changed, user, message),
        )

    async def item_changes(self, item_id: str) -> list[Row]:
        """The item's changes, the newest first."""
        return await self._all("SELECT * FROM item_changes WHERE item_id=? ORDER BY version DESC", (item_id,))

    async def item_change(self, item_id: str, version: int) -> Row | None:
        return await self._one("SELECT * FROM item_changes WHERE item_id=? AND version=?", (item_id, version))

    # -- update and download sessions (kind "update" or "download": same columns, one table each) -------------------
    async def insert_session(self, kind: str, row: Row) -> None:
        try:
            await self._insert(f"{kind}_sessions", row)
        except UniqueViolation as e:
            # Which constraint a database reports first differs (SQLite: the ACTIVE index); a reused token wins,
            # so that a retried create finds its session.
            if "client_token" in str(e) or (
                row.get("client_token") and await self.session_by_token(kind, row["client_token"]) is not None
            ):
                raise TokenTaken() from e
            raise Busy() from e

    async def session_by_token(self, kind: str, token: str) -> Row | None:
        return await self._one(f"SELECT * FROM {kind}_sessions WHERE client_token=?", (token,))

    async def get_session(self, kind: str, sid: str) -> Row | None:
        return await self._one(f"SELECT * FROM {kind}_sessions WHERE id=?{self._locking()}", (sid,))

    async def list_sessions(self, kind: str, user: str, item_id: str | None) -> list[str]:
        if item_id is None:
            rows = await self._all(f"SELECT id FROM {kind}_sessions WHERE owner=? ORDER BY created, id", (user,))
        else:
            rows = await self._all(
                f"SELECT id FROM {kind}_sessions WHERE owner=? AND item_id=? ORDER BY created, id", (user, item_id)
            )
        return [r["id"] for r in rows]

    async def update_session(self, kind: str, sid: str, fields: Row, state: str | None = None) -> bool:
        """Apply `fields`; with `state`, only if the session is still in that state (compare-and-set)."""
        where: Row = {"id": sid}
        if state is not None:
            where["state"] = state
        return await self._update(f"{kind}_sessions", where, fields) > 0

    _FILES = {"update": ("session_files", ("blob_id", "pending_blob")), "download": ("download_files", ("blob_id",))}

    async def delete_session(self, kind: str, sid: str) -> list[str]:
        """Delete the session and its file rows; return the blob ids those rows pointed at."""
        table, columns = self._FILES[kind]
        rows = await self._all(f"SELECT {', '.join(columns)} FROM {table} WHERE session_id=?", (sid,))
        await self._exec(f"DELETE FROM {table} WHERE session_id=?", (sid,))
        await self._exec(f"DELETE FROM {kind}_sessions WHERE id=?", (sid,))
        return [b for r in rows for b in r.values() if b]

    async def idle_sessions(self, kind: str, before: float) -> list[str]:
        """ACTIVE sessions without activity since `before`."""
        rows = await self._all(f"SELECT id FROM {kind}_sessions WHERE state='ACTIVE' AND last_activity < ?", (before,))
        return [r["id"] for r in rows]

    async def ended_sessions(self, kind: str, before: float) -> list[str]:
        """Sessions that left ACTIVE before `before`."""
        rows = await self._all(f"SELECT id FROM {kind}_sessions WHERE state!='ACTIVE' AND ended < ?", (before,))
        return [r["id"] for r in rows]

    # -- update sessions ------------------------------------------------------------------------------------------
    async def completing_sessions(self) -> list[str]:
        """ACTIVE update sessions whose client has called complete while their PULL files were still arriving."""
        rows = await self._all("SELECT id FROM update_sessions WHERE state='ACTIVE' AND completing IS NOT NULL")
        return [r["id"] for r in rows]

    async def active_update_session_for(self, item_id: str) -> Row | None:
        return await self._one("SELECT * FROM update_sessions WHERE item_id=? AND state='ACTIVE'", (item_id,))

    # -- update-session files ----------------------------------------------------------------------------------
    async def session_files(self, sid: str) -> list[Row]:
        return await self._all("SELECT * FROM session_files WHERE session_id=? ORDER BY seq", (sid,))

    async def session_file(self, sid: str, name: str) -> Row | None:
        return await self._one("SELECT * FROM session_files WHERE session_id=? AND name=?", (sid, name))

    async def session_file_by_token(self, token: str) -> Row | None:
        return await self._one("SELECT * FROM session_files WHERE token=?", (token,))

    async def put_session_file(self, row: Row) -> list[str]:
        """Insert or replace the session's entry for the name; return the replaced entry's blob ids."""
        old = await self._one(
            "SELECT blob_id, pending_blob FROM session_files WHERE session_id=? AND name=?",
            (row["session_id"], row["name"]),
        )
        seq = await self._one(
            "SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM session_files WHERE session_id=?", (row["session_id"],)
        )
        assert seq is not None
        await self._exec("DELETE FROM session_files WHERE session_id=? AND name=?", (row["session_id"], row["name"]))
        await self._insert("session_files", {**row, "seq": seq["n"]})
        return [b for b in (old or {}).values() if b]

    async def delete_session_file(self, sid: str, name: str) -> None:
        await self._exec("DELETE FROM session_files WHERE session_id=? AND name=?", (sid, name))

    async def update_session_file(self, sid: str, name: str, fields: Row, expect: Row | None = None) -> bool:
        """Apply `fields` if the row still matches `expect` (compare-and-set across concurrent requests)."""
        return await self._update("session_files", {"session_id": sid, "name": name, **(expect or {})}, fields) > 0

    async def stalled_transfers(self, owner: str | None = None, before: float | None = None) -> list[Row]:
        """Transfers (uploads, and pulls about to start or running) of ACTIVE sessions that can no longer finish:
        those run by the replica `owner` (when it has just started), or that recorded no progress since `before`."""
        sql = (
            "SELECT f.* FROM session_files f JOIN update_sessions s ON s.id=f.session_id WHERE s.state='ACTIVE' "
            "AND f.parent IS NULL "  # files unpacked from an OVA stall and fail with it
            "AND (f.status IN ('TRANSFERRING', 'VALIDATING') "
            "OR (f.source_type='PULL' AND f.status='WAITING_FOR_TRANSFER'))"
        )
        if owner is not None:
            return await self._all(sql + " AND f.transfer_owner=?", (owner,))
        return await self._all(sql + " AND (f.progress_at IS NULL OR f.progress_at < ?)", (before,))

    async def delete_members(self, sid: str, parent: str) -> list[str]:
        """Drop the files unpacked from an archive (an OVA) of the session; return their blob ids."""
        rows = await self._all(
            "SELECT blob_id, pending_blob FROM session_files WHERE session_id=? AND parent=?", (sid, parent)
        )
        await self._exec("DELETE FROM session_files WHERE session_id=? AND parent=?", (sid, parent))
        return [b for r in rows for b in (r["blob_id"], r["pending_blob"]) if b]

    # -- trusted certificates ------------------------------------------------------------------------------------
    async def trusted_certificates(self) -> list[Row]:
        return await self._all("SELECT * FROM trusted_certificates ORDER BY created, id")

    async def trusted_certificate(self, cert_id: str) -> Row | None:
        return await self._one("SELECT * FROM trusted_certificates WHERE id=?", (cert_id,))

    async def add_trusted_certificate(self, cert_id: str, cert_text: str, now: float) -> None:
        await self._exec(
            "INSERT INTO trusted_certificates (id, cert_text, created) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (cert_id, cert_text, now),
        )

    async def delete_trusted_certificate(self, cert_id: str) -> bool:
        return await self._exec("DELETE FROM trusted_certificates WHERE id=?", (cert_id,)) > 0

    # -- download sessions -----------------------------------------------------------------------------------
    async def download_files(self, sid: str) -> list[Row]:
        return await self._all("SELECT * FROM download_files WHERE session_id=?", (sid,))

    async def download_file_by_token(self, token: str) -> Row | None:
        return await self._one("SELECT * FROM download_files WHERE token=?", (token,))

    async def put_download_file(self, row: Row) -> None:
        await self._exec("DELETE FROM download_files WHERE session_id=? AND name=?", (row["session_id"], row["name"]))
        await self._insert("download_files", row)

    # -- blob references (for garbage collection) ------------------------------------------------------------------
    async def referenced_blobs(self) -> set[str]:
        """Every blob id something still points at: item files, files of unfinished update sessions (staged
        and in-flight), and files prepared by ACTIVE download sessions."""
        refs: set[str] = set()
        for r in await self._all("SELECT blob_id FROM item_files"):
            refs.add(r["blob_id"])
        for r in await self._all(
            "SELECT f.blob_id, f.pending_blob FROM session_files f "
            "JOIN update_sessions s ON s.id=f.session_id WHERE s.state='ACTIVE'"
        ):
            refs.update(b for b in (r["blob_id"], r["pending_blob"]) if b)
        for r in await self._all(
            "SELECT f.blob_id FROM download_files f "
            "JOIN download_sessions s ON s.id=f.session_id WHERE s.state='ACTIVE'"
        ):
            refs.add(r["blob_id"])
        return refs

    async def is_blob_referenced(self, blob_id: str) -> bool:
        return (
            await self._one(
                "SELECT 1 FROM item_files WHERE blob_id=? UNION ALL "
                "SELECT 1 FROM session_files f JOIN update_sessions s ON s.id=f.session_id "
                "WHERE s.state='ACTIVE' AND (f.blob_id=? OR f.pending_blob=?) UNION ALL "
                "SELECT 1 FROM download_files f JOIN download_sessions s ON s.id=f.session_id "
                "WHERE s.state='ACTIVE' AND f.blob_id=? LIMIT 1",
                (blob_id, blob_id, blob_id, blob_id),
            )
            is not None
        )
