"""The metadata Store on SQLite (stdlib sqlite3, WAL): the embedded default.

Contract for callers (the services):
- Every method is a coroutine so that other Store implementations can do real I/O; this one runs its statements
  directly in the event loop thread (point queries take microseconds; measured 25-29k req/s in research/stack.md).
- `async with store.transaction():` groups statements atomically (BEGIN IMMEDIATE ... COMMIT). Code inside a
  transaction must not await anything but Store methods: with one connection, a real suspension would let
  another request's statements join the transaction.
- One ACTIVE update session per item is the partial unique index `one_active_update_session`; `insert_session`
  turns its violation into `Busy`, so the database, not Python, decides the race.

Layout of rows: times are float epoch seconds; structured values (storage backings, warning behavior, messages)
are JSON text; versions are integers rendered as strings by the services.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec

Row = dict[str, Any]

SCHEMA_VERSION = 2

MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE users (
    name TEXT PRIMARY KEY COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE api_sessions (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    created REAL NOT NULL,
    last_accessed REAL NOT NULL
);
CREATE TABLE libraries (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    type TEXT NOT NULL,
    storage_backings TEXT NOT NULL,
    extra TEXT NOT NULL,
    version INTEGER NOT NULL,
    created REAL NOT NULL,
    modified REAL NOT NULL,
    client_token TEXT UNIQUE
);
CREATE TABLE items (
    id TEXT PRIMARY KEY,
    library_id TEXT NOT NULL REFERENCES libraries(id),
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    type TEXT,
    source_id TEXT,
    version INTEGER NOT NULL,
    metadata_version INTEGER NOT NULL,
    content_version INTEGER NOT NULL,
    created REAL NOT NULL,
    modified REAL NOT NULL,
    client_token TEXT UNIQUE
);
CREATE UNIQUE INDEX items_name ON items (library_id, name COLLATE NOCASE);
CREATE TABLE item_files (
    item_id TEXT NOT NULL REFERENCES items(id),
    name TEXT NOT NULL,
    blob_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha1 TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (item_id, name)
);
CREATE TABLE update_sessions (
    id TEXT PRIMARY KEY,
    item_id TEXT NOT NULL,
    user TEXT NOT NULL,
    content_version INTEGER NOT NULL,
    state TEXT NOT NULL,
    client_progress INTEGER NOT NULL,
    error_message TEXT,
    warning_behavior TEXT,
    last_activity REAL NOT NULL,
    ended REAL,
    client_token TEXT UNIQUE
);
CREATE UNIQUE INDEX one_active_update_session ON update_sessions (item_id) WHERE state = 'ACTIVE';
CREATE INDEX update_sessions_user ON update_sessions (user);
CREATE TABLE session_files (
    session_id TEXT NOT NULL REFERENCES update_sessions(id),
    name TEXT NOT NULL,
    op TEXT NOT NULL,
    seq INTEGER NOT NULL,
    source_type TEXT NOT NULL,
    source_endpoint TEXT,
    token TEXT UNIQUE,
    declared_size INTEGER,
    checksum_algorithm TEXT,
    checksum TEXT,
    status TEXT NOT NULL,
    bytes_transferred INTEGER NOT NULL,
    size INTEGER,
    sha1 TEXT,
    blob_id TEXT,
    pending_blob TEXT,
    error_message TEXT,
    keep_in_storage INTEGER NOT NULL,
    PRIMARY KEY (session_id, name)
);
CREATE TABLE download_sessions (
    id TEXT PRIMARY KEY,
    item_id TEXT NOT NULL,
    user TEXT NOT NULL,
    content_version INTEGER NOT NULL,
    state TEXT NOT NULL,
    client_progress INTEGER NOT NULL,
    error_message TEXT,
    last_activity REAL NOT NULL,
    ended REAL,
    client_token TEXT UNIQUE
);
CREATE TABLE download_files (
    session_id TEXT NOT NULL REFERENCES download_sessions(id),
    name TEXT NOT NULL,
    token TEXT NOT NULL UNIQUE,
    blob_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha1 TEXT NOT NULL,
    bytes_transferred INTEGER NOT NULL,
    PRIMARY KEY (session_id, name)
);
""",
    2: """
ALTER TABLE session_files ADD COLUMN digests TEXT;
ALTER TABLE session_files ADD COLUMN meta TEXT;
ALTER TABLE session_files ADD COLUMN parent TEXT;
ALTER TABLE update_sessions ADD COLUMN has_package INTEGER NOT NULL DEFAULT 0;
CREATE TABLE trusted_certificates (
    id TEXT PRIMARY KEY,
    cert_text TEXT NOT NULL,
    created REAL NOT NULL
);
""",
}


class Busy(Exception):
    """Another ACTIVE update session holds the item (the partial unique index said so)."""


class TokenTaken(Exception):
    """A client token was already used for another create."""


def _dict_factory(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Row:
    return {d[0]: v for d, v in zip(cursor.description, row, strict=True)}


def dumps(value: Any) -> str:
    """JSON text for a column (structured values: backings, messages, warning behavior, parsed metadata)."""
    return msgspec.json.encode(value).decode()


def loads(text: str | None) -> Any:
    """The value of a JSON column; None for SQL NULL."""
    return None if text is None else msgspec.json.decode(text)


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = _dict_factory
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives a crash of the process (what "acknowledged"
        # means here); only a power loss can drop the last commits.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=10000")
        self.db.execute("PRAGMA foreign_keys=ON")
        # Checkpoints write and fsync the database file: not in the event loop on commit, but from the sweeper
        # in a worker thread on a connection of its own (`checkpoint`).
        self.db.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer: sqlite3.Connection | None = None
        self._tx_depth = 0
        self._migrate()

    # -- plumbing -----------------------------------------------------------------------------------------
    def _migrate(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            current = self.db.execute("PRAGMA user_version").fetchone()["user_version"]
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for stmt in MIGRATIONS[version].split(";"):
                    if stmt.strip():
                        self.db.execute(stmt)
                self.db.execute(f"PRAGMA user_version={version}")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()
        if self._checkpointer is not None:
            self._checkpointer.close()

    def checkpoint(self) -> None:
        """Copy the WAL into the database file (blocking: call it from a worker thread)."""
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._checkpointer.execute("PRAGMA busy_timeout=10000")
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        if self._tx_depth:
            self._tx_depth += 1
            try:
                yield
            finally:
                self._tx_depth -= 1
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._tx_depth = 1
        try:
            yield
        except BaseException:
            self._tx_depth = 0
            self.db.execute("ROLLBACK")
            raise
        self._tx_depth = 0
        self.db.execute("COMMIT")

    def _one(self, sql: str, args: tuple[Any, ...] | Row = ()) -> Row | None:
        row: Row | None = self.db.execute(sql, args).fetchone()
        return row

    def _all(self, sql: str, args: tuple[Any, ...] | Row = ()) -> list[Row]:
        return list(self.db.execute(sql, args).fetchall())

    def _exec(self, sql: str, args: tuple[Any, ...] | Row = ()) -> int:
        return self.db.execute(sql, args).rowcount

    def _insert(self, table: str, row: Row) -> None:
        cols = ",".join(row)
        marks = ",".join("?" * len(row))
        self.db.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", tuple(row.values()))

    def _update(self, table: str, where: Row, fields: Row) -> int:
        """UPDATE ... WHERE every `where` column equals its value (None matches NULL: compare-and-set on an
        unset column works too)."""
        sets = ",".join(f"{k}=?" for k in fields)
        cond = " AND ".join(f"{k} IS NULL" if v is None else f"{k}=?" for k, v in where.items())
        args = (*fields.values(), *(v for v in where.values() if v is not None))
        return self.db.execute(f"UPDATE {table} SET {sets} WHERE {cond}", args).rowcount

    # -- meta -----------------------------------------------------------------------------------------------
    async def get_meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key=?", (key,))
        return None if row is None else str(row["value"])

    async def set_meta(self, key: str, value: str) -> None:
        self._exec(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    async def integrity_check(self) -> str:
        row = self._one("PRAGMA integrity_check")
        assert row is not None
        return str(next(iter(row.values())))

    # -- users and API sessions -------------------------------------------------------------------------------
    async def get_user(self, name: str) -> Row | None:
        return self._one("SELECT * FROM users WHERE name=?", (name,))

    async def list_users(self) -> list[Row]:
        return self._all("SELECT name, created FROM users ORDER BY name")

    async def add_user(self, name: str, password_hash: str, now: float) -> bool:
        try:
            self._insert("users", {"name": name, "password_hash": password_hash, "created": now})
        except sqlite3.IntegrityError:
            return False
        return True

    async def set_password(self, name: str, password_hash: str) -> bool:
        return self._update("users", {"name": name}, {"password_hash": password_hash}) > 0

    async def remove_user(self, name: str) -> bool:
        async with self.transaction():
            self._exec("DELETE FROM api_sessions WHERE user=? COLLATE NOCASE", (name,))
            return self._exec("DELETE FROM users WHERE name=?", (name,)) > 0

    async def create_api_session(self, sid: str, user: str, now: float) -> None:
        self._insert("api_sessions", {"id": sid, "user": user, "created": now, "last_accessed": now})

    async def get_api_session(self, sid: str) -> Row | None:
        return self._one("SELECT * FROM api_sessions WHERE id=?", (sid,))

    async def touch_api_session(self, sid: str, now: float) -> None:
        self._exec("UPDATE api_sessions SET last_accessed=? WHERE id=?", (now, sid))

    async def delete_api_session(self, sid: str) -> None:
        self._exec("DELETE FROM api_sessions WHERE id=?", (sid,))

    async def delete_idle_api_sessions(self, before: float) -> int:
        return self._exec("DELETE FROM api_sessions WHERE last_accessed < ?", (before,))

    # -- libraries ----------------------------------------------------------------------------------------
    async def insert_library(self, row: Row) -> None:
        try:
            self._insert("libraries", row)
        except sqlite3.IntegrityError as e:
            raise TokenTaken() from e

    async def library_by_token(self, token: str) -> Row | None:
        return self._one("SELECT * FROM libraries WHERE client_token=?", (token,))

    async def get_library(self, library_id: str) -> Row | None:
        return self._one("SELECT * FROM libraries WHERE id=?", (library_id,))

    async def list_libraries(self, type_: str | None = None) -> list[Row]:
        if type_ is None:
            return self._all("SELECT * FROM libraries ORDER BY created, id")
        return self._all("SELECT * FROM libraries WHERE type=? ORDER BY created, id", (type_,))

    async def update_library(self, library_id: str, fields: Row) -> None:
        self._update("libraries", {"id": library_id}, fields)

    async def delete_library(self, library_id: str) -> None:
        self._exec("DELETE FROM libraries WHERE id=?", (library_id,))

    # -- items ----------------------------------------------------------------------------------------------
    async def insert_item(self, row: Row) -> str | None:
        """Insert; on a name clash in the library return 'name', on a reused client token 'token'."""
        try:
            self._insert("items", row)
        except sqlite3.IntegrityError as e:
            return "token" if "client_token" in str(e) else "name"
        return None

    async def item_by_token(self, token: str) -> Row | None:
        return self._one("SELECT * FROM items WHERE client_token=?", (token,))

    async def get_item(self, item_id: str) -> Row | None:
        return self._one(
            "SELECT i.*, COALESCE((SELECT SUM(size) FROM item_files f WHERE f.item_id=i.id), 0) AS size "
            "FROM items i WHERE i.id=?",
            (item_id,),
        )

    async def list_items(self, library_id: str | None = None) -> list[Row]:
        if library_id is None:
            return self._all("SELECT * FROM items ORDER BY created, id")
        return self._all("SELECT * FROM items WHERE library_id=? ORDER BY created, id", (library_id,))

    async def update_item(self, item_id: str, fields: Row) -> bool:
        """Apply; False when the new name clashes with another item of the library."""
        try:
            self._update("items", {"id": item_id}, fields)
        except sqlite3.IntegrityError:
            return False
        return True

    async def delete_item(self, item_id: str) -> list[str]:
        """Delete the item, its files and its finished sessions; return the blob ids that lost a reference."""
        blobs = [r["blob_id"] for r in self._all("SELECT blob_id FROM item_files WHERE item_id=?", (item_id,))]
        for sid_row in self._all("SELECT id FROM update_sessions WHERE item_id=?", (item_id,)):
            blobs += await self.delete_session("update", sid_row["id"])
        for sid_row in self._all("SELECT id FROM download_sessions WHERE item_id=?", (item_id,)):
            blobs += await self.delete_session("download", sid_row["id"])
        self._exec("DELETE FROM item_files WHERE item_id=?", (item_id,))
        self._exec("DELETE FROM items WHERE id=?", (item_id,))
        return blobs

    async def item_files(self, item_id: str) -> list[Row]:
        return self._all("SELECT * FROM item_files WHERE item_id=? ORDER BY name", (item_id,))

    async def item_file(self, item_id: str, name: str) -> Row | None:
        return self._one("SELECT * FROM item_files WHERE item_id=? AND name=?", (item_id, name))

    async def put_item_file(self, row: Row) -> None:
        self._exec("DELETE FROM item_files WHERE item_id=? AND name=?", (row["item_id"], row["name"]))
        self._insert("item_files", row)

    async def delete_item_file(self, item_id: str, name: str) -> None:
        self._exec("DELETE FROM item_files WHERE item_id=? AND name=?", (item_id, name))

    # -- update and download sessions (kind "update" or "download": same columns, one table each) -------------------
    async def insert_session(self, kind: str, row: Row) -> None:
        try:
            self._insert(f"{kind}_sessions", row)
        except sqlite3.IntegrityError as e:
            if "client_token" in str(e):
                raise TokenTaken() from e
            raise Busy() from e

    async def session_by_token(self, kind: str, token: str) -> Row | None:
        return self._one(f"SELECT * FROM {kind}_sessions WHERE client_token=?", (token,))

    async def get_session(self, kind: str, sid: str) -> Row | None:
        return self._one(f"SELECT * FROM {kind}_sessions WHERE id=?", (sid,))

    async def list_sessions(self, kind: str, user: str, item_id: str | None) -> list[str]:
        if item_id is None:
            rows = self._all(f"SELECT id FROM {kind}_sessions WHERE user=? ORDER BY rowid", (user,))
        else:
            rows = self._all(
                f"SELECT id FROM {kind}_sessions WHERE user=? AND item_id=? ORDER BY rowid", (user, item_id)
            )
        return [r["id"] for r in rows]

    async def update_session(self, kind: str, sid: str, fields: Row, state: str | None = None) -> bool:
        """Apply `fields`; with `state`, only if the session is still in that state (compare-and-set)."""
        where: Row = {"id": sid}
        if state is not None:
            where["state"] = state
        return self._update(f"{kind}_sessions", where, fields) > 0

    _FILES = {"update": ("session_files", ("blob_id", "pending_blob")), "download": ("download_files", ("blob_id",))}

    async def delete_session(self, kind: str, sid: str) -> list[str]:
        """Delete the session and its file rows; return the blob ids those rows pointed at."""
        table, columns = self._FILES[kind]
        rows = self._all(f"SELECT {', '.join(columns)} FROM {table} WHERE session_id=?", (sid,))
        self._exec(f"DELETE FROM {table} WHERE session_id=?", (sid,))
        self._exec(f"DELETE FROM {kind}_sessions WHERE id=?", (sid,))
        return [b for r in rows for b in r.values() if b]

    async def idle_sessions(self, kind: str, before: float) -> list[str]:
        """ACTIVE sessions without activity since `before`."""
        rows = self._all(f"SELECT id FROM {kind}_sessions WHERE state='ACTIVE' AND last_activity < ?", (before,))
        return [r["id"] for r in rows]

    async def ended_sessions(self, kind: str, before: float) -> list[str]:
        """Sessions that left ACTIVE before `before`."""
        rows = self._all(f"SELECT id FROM {kind}_sessions WHERE state!='ACTIVE' AND ended < ?", (before,))
        return [r["id"] for r in rows]

    # -- update sessions ------------------------------------------------------------------------------------------
    async def active_update_session_for(self, item_id: str) -> Row | None:
        return self._one("SELECT * FROM update_sessions WHERE item_id=? AND state='ACTIVE'", (item_id,))

    # -- update-session files ----------------------------------------------------------------------------------
    async def session_files(self, sid: str) -> list[Row]:
        return self._all("SELECT * FROM session_files WHERE session_id=? ORDER BY seq", (sid,))

    async def session_file(self, sid: str, name: str) -> Row | None:
        return self._one("SELECT * FROM session_files WHERE session_id=? AND name=?", (sid, name))

    async def session_file_by_token(self, token: str) -> Row | None:
        return self._one("SELECT * FROM session_files WHERE token=?", (token,))

    async def put_session_file(self, row: Row) -> list[str]:
        """Insert or replace the session's entry for the name; return the replaced entry's blob ids."""
        old = self._one(
            "SELECT blob_id, pending_blob FROM session_files WHERE session_id=? AND name=?",
            (row["session_id"], row["name"]),
        )
        seq = self._one(
            "SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM session_files WHERE session_id=?", (row["session_id"],)
        )
        assert seq is not None
        self._exec("DELETE FROM session_files WHERE session_id=? AND name=?", (row["session_id"], row["name"]))
        self._insert("session_files", {**row, "seq": seq["n"]})
        return [b for b in (old or {}).values() if b]

    async def delete_session_file(self, sid: str, name: str) -> None:
        self._exec("DELETE FROM session_files WHERE session_id=? AND name=?", (sid, name))

    async def update_session_file(self, sid: str, name: str, fields: Row, expect: Row | None = None) -> bool:
        """Apply `fields` if the row still matches `expect` (compare-and-set across concurrent requests)."""
        return self._update("session_files", {"session_id": sid, "name": name, **(expect or {})}, fields) > 0

    async def interrupted_transfers(self) -> list[Row]:
        return self._all(
            "SELECT * FROM session_files WHERE status IN ('TRANSFERRING', 'VALIDATING') "
            "OR (source_type='PULL' AND status='WAITING_FOR_TRANSFER')"
        )

    async def delete_members(self, sid: str, parent: str) -> list[str]:
        """Drop the files unpacked from an archive (an OVA) of the session; return their blob ids."""
        rows = self._all(
            "SELECT blob_id, pending_blob FROM session_files WHERE session_id=? AND parent=?", (sid, parent)
        )
        self._exec("DELETE FROM session_files WHERE session_id=? AND parent=?", (sid, parent))
        return [b for r in rows for b in (r["blob_id"], r["pending_blob"]) if b]

    # -- trusted certificates ------------------------------------------------------------------------------------
    async def trusted_certificates(self) -> list[Row]:
        return self._all("SELECT * FROM trusted_certificates ORDER BY created, id")

    async def trusted_certificate(self, cert_id: str) -> Row | None:
        return self._one("SELECT * FROM trusted_certificates WHERE id=?", (cert_id,))

    async def add_trusted_certificate(self, cert_id: str, cert_text: str, now: float) -> None:
        self._exec(
            "INSERT OR IGNORE INTO trusted_certificates (id, cert_text, created) VALUES (?, ?, ?)",
            (cert_id, cert_text, now),
        )

    async def delete_trusted_certificate(self, cert_id: str) -> bool:
        return self._exec("DELETE FROM trusted_certificates WHERE id=?", (cert_id,)) > 0

    # -- download sessions -----------------------------------------------------------------------------------
    async def download_files(self, sid: str) -> list[Row]:
        return self._all("SELECT * FROM download_files WHERE session_id=?", (sid,))

    async def download_file_by_token(self, token: str) -> Row | None:
        return self._one("SELECT * FROM download_files WHERE token=?", (token,))

    async def put_download_file(self, row: Row) -> None:
        self._exec("DELETE FROM download_files WHERE session_id=? AND name=?", (row["session_id"], row["name"]))
        self._insert("download_files", row)

    # -- blob references (for garbage collection) ------------------------------------------------------------------
    async def referenced_blobs(self) -> set[str]:
        """Every blob id something still points at: item files, files of unfinished update sessions (staged
        and in-flight), and files prepared by ACTIVE download sessions."""
        refs: set[str] = set()
        for r in self._all("SELECT blob_id FROM item_files"):
            refs.add(r["blob_id"])
        for r in self._all(
            "SELECT f.blob_id, f.pending_blob FROM session_files f "
            "JOIN update_sessions s ON s.id=f.session_id WHERE s.state='ACTIVE'"
        ):
            refs.update(b for b in (r["blob_id"], r["pending_blob"]) if b)
        for r in self._all(
            "SELECT f.blob_id FROM download_files f "
            "JOIN download_sessions s ON s.id=f.session_id WHERE s.state='ACTIVE'"
        ):
            refs.add(r["blob_id"])
        return refs

    async def is_blob_referenced(self, blob_id: str) -> bool:
        return (
            self._one(
                "SELECT 1 FROM item_files WHERE blob_id=:b UNION ALL "
                "SELECT 1 FROM session_files f JOIN update_sessions s ON s.id=f.session_id "
                "WHERE s.state='ACTIVE' AND (f.blob_id=:b OR f.pending_blob=:b) UNION ALL "
                "SELECT 1 FROM download_files f JOIN download_sessions s ON s.id=f.session_id "
                "WHERE s.state='ACTIVE' AND f.blob_id=:b LIMIT 1",
                {"b": blob_id},
            )
            is not None
        )
