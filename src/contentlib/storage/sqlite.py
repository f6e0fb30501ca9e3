"""The SQLite driver of the metadata Store (stdlib sqlite3, WAL): the embedded default.

Statements run directly in the event loop thread: point queries take microseconds (25-29k req/s measured in
research/stack.md), less than a hop to a worker thread would cost. One connection serves the process, so a
transaction is simply BEGIN IMMEDIATE ... COMMIT on it; other processes (the workers of `serve --workers`, the
`contentlib user` CLI) share the database file through WAL, and a write waits for another process's lock in `_run`
without stalling the event loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from contentlib.storage.schema import SCHEMA_VERSION, schema_statements
from contentlib.storage.sql import Row, SqlStore, UniqueViolation, check_args, disk_full

_BUSY_TIMEOUT = 10.0  # seconds a statement waits for another process's write lock before it fails


def _names(cursor: sqlite3.Cursor) -> list[str]:
    """The columns of a result; rows become dicts after fetching (a row factory would cost a Python call per row,
    which was a tenth of a point query's time)."""
    return [d[0] for d in cursor.description]


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class SQLiteStore(SqlStore):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        # SQLite's own lower() folds ASCII only; names are case-insensitive in every script (as on PostgreSQL).
        self.db.create_function("lower", 1, _lower, deterministic=True)
        self._wal()
        # NORMAL in WAL mode: a committed transaction survives a crash of the process (what "acknowledged"
        # means here); only a power loss can drop the last commits.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT * 1000)}")  # while migrating; `_run` waits later
        self.db.execute("PRAGMA foreign_keys=ON")
        # Checkpoints write and fsync the database file: not in the event loop on commit, but from the sweeper
        # in a worker thread on a connection of its own (`checkpoint`).
        self.db.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer: sqlite3.Connection | None = None
        self._sweeper_lock: int | None = None  # the open lock file, once this process runs the sweeper
        self._tx_depth = 0
        self._migrate()
        self.db.execute("PRAGMA busy_timeout=0")

    def _wal(self) -> None:
        """Switch to WAL; while another process opens the same new database the switch can report busy at once
        (it does not wait like other statements), so retry for a while."""
        for attempt in range(100):
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or attempt == 99:
                    raise
                time.sleep(0.05)

    def _migrate(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            current = self.db.execute("PRAGMA user_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} has schema version {current}, newer than this server's")
            if current < SCHEMA_VERSION:
                for stmt in schema_statements("REAL", "INTEGER", current):
                    self.db.execute(stmt)
                self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        self.db.close()
        if self._checkpointer is not None:
            self._checkpointer.close()
        if self._sweeper_lock is not None:
            os.close(self._sweeper_lock)
            self._sweeper_lock = None

    async def is_sweeper(self) -> bool:
        """Whether this process holds (or just took) the sweeper's lock: an exclusive lock on a file beside the
        database, which the kernel releases when its holder dies, so another worker takes over on its next sweep."""
        if self._sweeper_lock is None:
            fd = os.open(self.path.with_name(self.path.name + ".sweeper"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._sweeper_lock = fd
        return True

    def checkpoint(self) -> None:
        """Copy the WAL into the database file (blocking: call it from a worker thread)."""
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._checkpointer.execute("PRAGMA busy_timeout=10000")
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def maintain(self) -> None:
        from contentlib.transfer import run_blocking

        await run_blocking(self.checkpoint)

    async def integrity_check(self) -> str:
        return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        if self._tx_depth:
            self._tx_depth += 1
            try:
                yield
            finally:
                self._tx_depth -= 1
            return
        await self._run("BEGIN IMMEDIATE")
        self._tx_depth = 1
        try:
            yield
            self._tx_depth = 0
            self._execute("COMMIT")
        except BaseException:
            self._tx_depth = 0
            if self.db.in_transaction:  # SQLite may have rolled back already (a full disk does)
                self.db.execute("ROLLBACK")
            raise

    def _execute(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return self.db.execute(sql, args)
        except sqlite3.OperationalError as e:
            if e.sqlite_errorcode == sqlite3.SQLITE_FULL:
                raise disk_full() from e
            raise

    async def _run(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        """A statement outside a transaction, or the BEGIN of one: when another process holds the write lock (the
        workers of `serve --workers` share the database), wait for it here, letting the event loop serve other
        requests meanwhile, instead of in SQLite's busy handler, which would stall the loop for a millisecond or
        more each time. Inside a transaction this process holds the lock already: nothing waits there."""
        try:
            return self._execute(sql, args)
        except sqlite3.OperationalError as e:
            if e.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or self._tx_depth:
                raise
        deadline = time.monotonic() + _BUSY_TIMEOUT
        attempt = 0
        while True:
            attempt += 1
            # Write transactions take well under a millisecond: yield to the loop a few times first, then sleep.
            await asyncio.sleep(0 if attempt <= 8 else min(0.05, 0.001 * (attempt - 8)))
            try:
                return self._execute(sql, args)
            except sqlite3.OperationalError as e:
                if e.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise

    async def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Row | None:
        cursor = await self._run(sql, args)
        row = cursor.fetchone()
        return None if row is None else dict(zip(_names(cursor), row, strict=True))

    async def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[Row]:
        cursor = await self._run(sql, args)
        rows = cursor.fetchall()
        if not rows:
            return []
        names = _names(cursor)
        return [dict(zip(names, row, strict=True)) for row in rows]

    async def _exec(self, sql: str, args: tuple[Any, ...] = (), may_conflict: bool = False) -> int:
        try:
            return (await self._run(sql, check_args(args))).rowcount
        except sqlite3.IntegrityError as e:
            if "UNIQUE" in str(e):
                raise UniqueViolation(str(e)) from e
            raise
