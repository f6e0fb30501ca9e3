"""The PostgreSQL driver of the metadata Store (asyncpg), for several replicas sharing one database.

Each transaction runs on a connection of its own from the pool (a context variable carries it to the queries
inside), and rows read in it are locked FOR UPDATE, so replicas serialize per session and per item, not globally.
Schema migrations take a transaction-scoped advisory lock, so replicas starting together migrate once. The
sweeper's leadership is a session-scoped advisory lock held on a dedicated connection: if its replica dies, the
connection drops, PostgreSQL releases the lock and another replica's next sweep takes over.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from contentlib.storage.schema import SCHEMA_VERSION, schema_statements
from contentlib.storage.sql import Row, SqlStore, UniqueViolation, check_args, disk_full

_MIGRATE_LOCK = 0x636C6D69  # "clmi": advisory lock keys of this application
_SWEEPER_LOCK = 0x636C7377  # "clsw"
_PLACEHOLDER = re.compile(r"\?")


def _unmatchable(args: tuple[Any, ...]) -> bool:
    """Whether a lookup names text with a NUL character: PostgreSQL's text cannot hold one (binding it fails), so
    no stored value equals it. (Operation.call keeps NUL out of what is written; check_args guards every write.)"""
    return any(isinstance(a, str) and "\x00" in a for a in args)


class PostgresStore(SqlStore):
    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self.pool = pool
        self.dsn = dsn
        self._conn: contextvars.ContextVar[asyncpg.Connection | None] = contextvars.ContextVar(
            "contentlib_pg_tx", default=None
        )
        self._sql: dict[str, str] = {}
        self._leader: asyncpg.Connection | None = None  # the connection that holds (or tries) the sweeper's lock
        self._leading = False

    @classmethod
    async def open(cls, dsn: str, max_connections: int = 16) -> PostgresStore:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_connections, command_timeout=60)
        store = cls(pool, dsn)
        await store._migrate()
        return store

    async def _migrate(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATE_LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            current = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
            if current > SCHEMA_VERSION:
                raise RuntimeError(f"the database has schema version {current}, newer than this server's")
            if current < SCHEMA_VERSION:
                for stmt in schema_statements("DOUBLE PRECISION", "BIGINT", current):
                    await conn.execute(stmt)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", SCHEMA_VERSION)

    async def close(self) -> None:
        if self._leader is not None:
            await self._leader.close()
        await self.pool.close()

    async def is_sweeper(self) -> bool:
        """Whether this process holds (or just took) the sweeper's lock, on a connection kept for it. The others
        look at pg_locks through their pool and open a connection to try only when nobody holds it, so that the
        cluster keeps one such connection, not one per worker."""
        if self._leading and self._leader is not None and not self._leader.is_closed():
            return True
        self._leading = False
        held = await self._one(
            "SELECT 1 AS held FROM pg_locks WHERE locktype='advisory' AND classid=0 AND objid=? AND granted "
            "AND database=(SELECT oid FROM pg_database WHERE datname=current_database())",
            (_SWEEPER_LOCK,),
        )
        if held is not None:
            return False
        if self._leader is None or self._leader.is_closed():
            self._leader = await asyncpg.connect(self.dsn)
        self._leading = bool(await self._leader.fetchval("SELECT pg_try_advisory_lock($1)", _SWEEPER_LOCK))
        if not self._leading:  # another took it first
            await self._leader.close()
            self._leader = None
        return self._leading

    def _q(self, sql: str) -> str:
        q = self._sql.get(sql)
        if q is None:
            counter = iter(range(1, 1000))
            q = self._sql[sql] = _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)
        return q

    def _locking(self, of: str = "") -> str:
        if self._conn.get() is None:
            return ""
        return f" FOR UPDATE OF {of}" if of else " FOR UPDATE"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        if self._conn.get() is not None:
            yield
            return
        async with self.pool.acquire() as conn, conn.transaction():
            token = self._conn.set(conn)
            try:
                yield
            finally:
                self._conn.reset(token)

    async def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Row | None:
        if _unmatchable(args):
            return None
        conn = self._conn.get()
        row = await (conn or self.pool).fetchrow(self._q(sql), *args)
        return None if row is None else dict(row)

    async def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[Row]:
        if _unmatchable(args):
            return []
        conn = self._conn.get()
        return [dict(r) for r in await (conn or self.pool).fetch(self._q(sql), *args)]

    async def _exec(self, sql: str, args: tuple[Any, ...] = (), may_conflict: bool = False) -> int:
        conn = self._conn.get()
        args = check_args(args)
        try:
            if conn is not None and may_conflict:
                # A savepoint keeps the surrounding transaction usable when the statement hits a unique constraint
                # that the caller handles.
                async with conn.transaction():
                    status: str = await conn.execute(self._q(sql), *args)
            else:
                status = await (conn or self.pool).execute(self._q(sql), *args)
        except asyncpg.UniqueViolationError as e:
            raise UniqueViolation(f"{e.constraint_name}: {e.detail}") from e
        except asyncpg.DiskFullError as e:
            raise disk_full() from e
        count = status.rsplit(" ", 1)[-1]
        return int(count) if count.isdigit() else 0
