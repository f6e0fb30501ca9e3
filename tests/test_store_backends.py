"""The backend suite: one set of contract tests, written once, run against every metadata Store and BlobStore.

Contract: issue 5 point 2 ("one backend test suite, written once, run against every Store and every BlobStore",
like distribution's storage/driver/testsuites) and point 3/4 (one ACTIVE update session per item decided by the
database, atomic transactions, migrations safe when several replicas start at once); the method contracts are the
docstrings of src/contentlib/storage/sql.py (the Store) and storage/blobs.py (the BlobStore protocol).

These tests drive the storage classes directly (no server). Every Store test runs on SQLite (a file in a tmp dir)
and on PostgreSQL (one fresh database per test module on CONTENTLIB_TEST_PG, default
postgresql://postgres@127.0.0.1:5432, dropped at the end). When PostgreSQL is unreachable the PostgreSQL tests
FAIL (they are never skipped): run scripts/ensure-postgres.sh. BlobStore tests run over BLOB_BACKENDS, a list of
factories with the local-disk store in it now; an S3 BlobStore is one more entry.
"""

from __future__ import annotations

import asyncio
import hashlib
import mmap
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from contentlib.storage.blobs import BlobStore
from contentlib.storage.fs import FileBlobStore
from contentlib.storage.postgres import PostgresStore
from contentlib.storage.schema import SCHEMA_VERSION, schema_statements, session_file_row
from contentlib.storage.sql import Busy, Row, SqlStore, TokenTaken
from contentlib.storage.sqlite import SQLiteStore
from contentlib.transfer import BATCH, Receiver

PG_SERVER = os.environ.get("CONTENTLIB_TEST_PG", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
PG_HINT = "run scripts/ensure-postgres.sh (PostgreSQL on 127.0.0.1:5432, user postgres, trust auth)"

Body = Callable[[SqlStore], Awaitable[None]]


# -- PostgreSQL databases ------------------------------------------------------------------------------------------
async def _pg_admin(statement: str) -> None:
    conn = await asyncpg.connect(f"{PG_SERVER}/postgres", timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def pg_create_database() -> str:
    """A fresh empty database on PG_SERVER; its URL. Fails the test (never skips) when the server is down."""
    name = f"cl_backend_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as e:
        pytest.fail(f"PostgreSQL at {PG_SERVER} is not usable ({type(e).__name__}: {e}); {PG_HINT}", pytrace=False)
    return f"{PG_SERVER}/{name}"


def pg_drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class PgDatabase:
    """The module's PostgreSQL database: its URL, or why there is none."""

    url: str | None
    problem: str = ""

    def require(self) -> str:
        """The URL; fails the calling test (never skips it) when PostgreSQL is not usable."""
        if self.url is None:
            pytest.fail(self.problem, pytrace=False)
        return self.url


@pytest.fixture(scope="module")
def pg_database() -> Iterator[PgDatabase]:
    """One database for the module's PostgreSQL tests, dropped at the end. When the server is not usable each
    PostgreSQL test fails in its body, with the hint, instead of being skipped."""
    try:
        url = pg_create_database()
    except pytest.fail.Exception as e:
        yield PgDatabase(None, str(e))
        return
    yield PgDatabase(url)
    pg_drop_database(url)


# -- the Store backends --------------------------------------------------------------------------------------------
@dataclass
class Backend:
    """How a test opens the Store under test (several times: each open is another connection/replica)."""

    name: str
    opener: Callable[[], Awaitable[SqlStore]]

    async def open(self) -> SqlStore:
        return await self.opener()

    def run(self, body: Body) -> None:
        """Open a Store, run `body(store)` in a fresh event loop, close the Store."""

        async def main() -> None:
            store = await self.open()
            try:
                await body(store)
            finally:
                await store.close()

        asyncio.run(main())


def sqlite_backend(tmp_path: Path) -> Backend:
    path = tmp_path / "metadata.db"

    async def opener() -> SqlStore:
        return SQLiteStore(path)

    return Backend("sqlite", opener)


def postgres_backend(database: PgDatabase) -> Backend:
    async def opener() -> SqlStore:
        return await PostgresStore.open(database.require())

    return Backend("postgres", opener)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return sqlite_backend(tmp_path)
    return postgres_backend(request.getfixturevalue("pg_database"))


# -- rows ----------------------------------------------------------------------------------------------------------
def new_id() -> str:
    return str(uuid.uuid4())


def library_row(**fields: Any) -> Row:
    now = time.time()
    row: Row = {
        "id": new_id(),
        "name": f"lib-{uuid.uuid4().hex[:8]}",
        "description": "",
        "type": "LOCAL",
        "storage_backings": "[]",
        "extra": "{}",
        "version": 1,
        "created": now,
        "modified": now,
        "client_token": None,
    }
    row.update(fields)
    return row


def item_row(library_id: str, name: str | None = None, **fields: Any) -> Row:
    now = time.time()
    row: Row = {
        "id": new_id(),
        "library_id": library_id,
        "name": name or f"item-{uuid.uuid4().hex[:8]}",
        "description": "",
        "type": None,
        "source_id": None,
        "version": 1,
        "metadata_version": 1,
        "content_version": 1,
        "created": now,
        "modified": now,
        "client_token": None,
    }
    row.update(fields)
    return row


def session_row(kind: str, item_id: str, owner: str = "admin", **fields: Any) -> Row:
    now = time.time()
    row: Row = {
        "id": new_id(),
        "item_id": item_id,
        "owner": owner,
        "content_version": 1,
        "state": "ACTIVE",
        "client_progress": 0,
        "error_message": None,
        "created": now,
        "last_activity": now,
        "ended": None,
        "client_token": None,
    }
    if kind == "update":
        row.update(warning_behavior=None, has_package=0, completing=None)
    row.update(fields)
    return row


def item_file_row(item_id: str, name: str, size: int, blob_id: str | None = None, version: int = 1) -> Row:
    return {
        "item_id": item_id,
        "name": name,
        "blob_id": blob_id or new_id(),
        "size": size,
        "sha1": "0" * 40,
        "version": version,
    }


def download_file_row(session_id: str, name: str, blob_id: str) -> Row:
    return {
        "session_id": session_id,
        "name": name,
        "token": uuid.uuid4().hex,
        "blob_id": blob_id,
        "size": 1,
        "sha1": "0" * 40,
        "bytes_transferred": 0,
    }


async def make_item(store: SqlStore, name: str | None = None) -> tuple[str, str]:
    """A new library with one item in it: (library id, item id)."""
    lib = library_row()
    await store.insert_library(lib)
    item = item_row(lib["id"], name)
    assert await store.insert_item(item) is None
    return lib["id"], item["id"]


async def make_session(store: SqlStore, kind: str, item_id: str, **fields: Any) -> str:
    row = session_row(kind, item_id, **fields)
    await store.insert_session(kind, row)
    return str(row["id"])


# -- schema ----------------------------------------------------------------------------------------------------------
def test_opening_twice_migrates_once_and_keeps_data(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        lib = library_row()
        await store.insert_library(lib)
        await store.set_meta("backend-suite", "one")
        again = await backend.open()  # a second open of a migrated database (another replica, the CLI)
        try:
            assert (await again.get_library(lib["id"])) == await store.get_library(lib["id"])
            assert await again.get_meta("backend-suite") == "one"
        finally:
            await again.close()
        await store.set_meta("backend-suite", "two")
        assert await store.get_meta("backend-suite") == "two"
        assert await store.get_meta(f"missing-{uuid.uuid4().hex}") is None

    backend.run(body)

    async def reopened(store: SqlStore) -> None:
        assert await store.get_meta("backend-suite") == "two"

    backend.run(reopened)


def test_postgres_concurrent_first_opens_migrate_exactly_once(pg_database: PgDatabase) -> None:
    pg_database.require()
    url = pg_create_database()

    async def main() -> None:
        stores = await asyncio.gather(*(PostgresStore.open(url) for _ in range(4)))
        try:
            conn = await asyncpg.connect(url)
            try:
                assert await conn.fetch("SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
            finally:
                await conn.close()
            lib = library_row()
            await stores[0].insert_library(lib)
            for other in stores[1:]:
                assert (await other.get_library(lib["id"])) is not None
        finally:
            await asyncio.gather(*(s.close() for s in stores))

    try:
        asyncio.run(main())
    finally:
        pg_drop_database(url)


def test_sqlite_concurrent_first_opens_migrate_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    stores: list[SQLiteStore] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        start.wait()
        try:
            stores.append(SQLiteStore(path))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

    async def check() -> None:
        try:
            assert stores[0].db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            lib = library_row()
            await stores[0].insert_library(lib)
            for other in stores[1:]:
                assert (await other.get_library(lib["id"])) is not None
        finally:
            for s in stores:
                await s.close()

    asyncio.run(check())


# -- users and API sessions ------------------------------------------------------------------------------------------
def test_users_are_case_insensitive(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        name = f"Alice-{uuid.uuid4().hex[:8]}@vsphere.local"
        assert await store.add_user(name, "hash-1", 100.0, "ReadOnly") is True
        assert await store.add_user(name, "hash-2", 101.0, "ReadOnly") is False
        assert await store.add_user(name.lower(), "hash-3", 102.0, "ReadOnly") is False
        assert await store.add_user(name.upper(), "hash-4", 103.0, "ReadOnly") is False
        for spelling in (name, name.lower(), name.upper()):
            row = await store.get_user(spelling)
            assert row is not None and row["name"] == name and row["password_hash"] == "hash-1"
        assert [u["name"] for u in await store.list_users()].count(name) == 1
        assert await store.get_user(f"nobody-{uuid.uuid4().hex}") is None

    backend.run(body)


def test_set_password_finds_the_user_case_insensitively(backend: Backend) -> None:
    """`contentlib user passwd NAME` checks the user with get_user (case-insensitive) and then calls set_password
    with the same spelling: set_password must find the user the same way."""

    async def body(store: SqlStore) -> None:
        name = f"Pat-{uuid.uuid4().hex[:8]}"
        assert await store.add_user(name, "old", 1.0, "ReadOnly")
        assert await store.set_password(name, "new-1") is True
        assert (await store.get_user(name) or {})["password_hash"] == "new-1"
        assert await store.set_password(name.upper(), "new-2") is True
        assert (await store.get_user(name) or {})["password_hash"] == "new-2"
        assert await store.set_password(f"nobody-{uuid.uuid4().hex}", "x") is False

    backend.run(body)


def test_remove_user_drops_their_api_sessions(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        alice, bob = f"Alice-{uuid.uuid4().hex[:8]}", f"Bob-{uuid.uuid4().hex[:8]}"
        assert await store.add_user(alice, "h", 1.0, "ReadOnly") and await store.add_user(bob, "h", 1.0, "ReadOnly")
        a1, a2, b1 = new_id(), new_id(), new_id()
        await store.create_api_session(a1, alice, 10.0)
        await store.create_api_session(a2, alice.lower(), 10.0)
        await store.create_api_session(b1, bob, 10.0)
        assert await store.remove_user(alice.upper()) is True
        assert await store.get_user(alice) is None
        assert await store.get_api_session(a1) is None
        assert await store.get_api_session(a2) is None
        assert (await store.get_api_session(b1) or {})["owner"] == bob
        assert await store.remove_user(alice) is False
        assert await store.get_user(bob) is not None

    backend.run(body)


def test_api_sessions(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        old, fresh = new_id(), new_id()
        base = 1_000_000.0 + (uuid.uuid4().int % 1000)
        carol = f"Carol-{uuid.uuid4().hex[:8]}"
        assert await store.add_user(carol, "h", 1.0, "ContentLibraryAdministrator")
        await store.create_api_session(old, carol, base)
        await store.create_api_session(fresh, carol.lower(), base)
        assert await store.get_api_session(old) == {
            "id": old,
            "owner": carol,
            "created": base,
            "last_accessed": base,
            "role": "ContentLibraryAdministrator",
        }
        assert await store.set_role(carol.upper(), "ReadOnly") is True
        assert (await store.get_api_session(fresh) or {})["role"] == "ReadOnly"
        assert await store.set_role(f"nobody-{uuid.uuid4().hex}", "ReadOnly") is False
        await store.touch_api_session(fresh, base + 100)
        assert (await store.get_api_session(fresh) or {})["last_accessed"] == base + 100
        assert await store.delete_idle_api_sessions(base + 50) >= 1
        assert await store.get_api_session(old) is None
        assert await store.get_api_session(fresh) is not None
        await store.delete_api_session(fresh)
        assert await store.get_api_session(fresh) is None

    backend.run(body)


# -- libraries and items -----------------------------------------------------------------------------------------------
def test_library_client_token_is_unique(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        token = new_id()
        first = library_row(client_token=token)
        await store.insert_library(first)
        with pytest.raises(TokenTaken):
            await store.insert_library(library_row(client_token=token))
        assert (await store.library_by_token(token) or {})["id"] == first["id"]
        assert await store.library_by_token(new_id()) is None
        # Libraries without a token and libraries with the same name are fine.
        a, b = library_row(name="same"), library_row(name="same")
        await store.insert_library(a)
        await store.insert_library(b)
        subscribed = library_row(type="SUBSCRIBED")
        await store.insert_library(subscribed)
        local_ids = [r["id"] for r in await store.list_libraries("LOCAL")]
        assert {first["id"], a["id"], b["id"]} <= set(local_ids) and subscribed["id"] not in local_ids
        assert subscribed["id"] in [r["id"] for r in await store.list_libraries()]
        await store.update_library(a["id"], {"description": "changed", "version": 2})
        row = await store.get_library(a["id"])
        assert row is not None and row["description"] == "changed" and row["version"] == 2
        await store.delete_library(a["id"])
        assert await store.get_library(a["id"]) is None

    backend.run(body)


def test_item_client_token_and_name_uniqueness(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        lib_a, item_id = await make_item(store, "Photon-OS")
        lib_b, _ = await make_item(store)
        token = new_id()
        tokened = item_row(lib_a, client_token=token)
        assert await store.insert_item(tokened) is None
        assert await store.insert_item(item_row(lib_b, client_token=token)) == "token"
        assert (await store.item_by_token(token) or {})["id"] == tokened["id"]
        assert await store.insert_item(item_row(lib_a, "Photon-OS")) == "name"
        assert await store.insert_item(item_row(lib_a, "photon-os")) == "name"
        assert await store.insert_item(item_row(lib_a, "PHOTON-OS")) == "name"
        other = item_row(lib_b, "photon-OS")
        assert await store.insert_item(other) is None
        assert {r["id"] for r in await store.list_items(lib_a)} == {item_id, tokened["id"]}
        assert {r["id"] for r in await store.list_items(lib_b)} >= {other["id"]}
        assert {item_id, tokened["id"], other["id"]} <= {r["id"] for r in await store.list_items()}

    backend.run(body)


def test_item_names_are_case_insensitive_beyond_ascii(backend: Backend) -> None:
    """The vendor: "The name is case-insensitive." Both databases must agree on what a clash is."""

    async def body(store: SqlStore) -> None:
        lib, _ = await make_item(store, "Émile-Ubuntu")
        assert await store.insert_item(item_row(lib, "émile-ubuntu")) == "name"
        user = f"Ärger-{uuid.uuid4().hex[:8]}"
        assert await store.add_user(user, "h", 1.0, "ReadOnly")
        assert await store.add_user(user.lower(), "h", 1.0, "ReadOnly") is False
        assert (await store.get_user(user.lower()) or {}).get("name") == user

    backend.run(body)


def test_update_item_name_clash(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        lib, first = await make_item(store, "alpha")
        second = item_row(lib, "beta")
        assert await store.insert_item(second) is None
        assert await store.update_item(second["id"], {"name": "ALPHA", "version": 2}) is False
        row = await store.get_item(second["id"])
        assert row is not None and row["name"] == "beta" and row["version"] == 1
        assert await store.update_item(second["id"], {"name": "Beta", "version": 2}) is True  # its own name
        assert await store.update_item(second["id"], {"name": "gamma", "version": 3}) is True
        row = await store.get_item(second["id"])
        assert row is not None and row["name"] == "gamma" and row["version"] == 3
        # Another library's item may take the name.
        _, elsewhere = await make_item(store)
        assert await store.update_item(elsewhere, {"name": "alpha"}) is True
        assert (await store.get_item(first) or {})["name"] == "alpha"

    backend.run(body)


def test_update_item_name_clash_inside_a_transaction_leaves_it_usable(backend: Backend) -> None:
    """update_item's contract is "False when the new name clashes" — also inside `transaction()`: the other
    statements of the transaction still commit, and statements after it still run (a failed statement undoes only
    itself, as on SQLite)."""

    async def body(store: SqlStore) -> None:
        lib, _ = await make_item(store, "taken")
        mine = item_row(lib, "mine")
        assert await store.insert_item(mine) is None
        async with store.transaction():
            await store.update_library(lib, {"description": "before"})
            assert await store.update_item(mine["id"], {"name": "TAKEN"}) is False
        library = await store.get_library(lib)
        assert library is not None and library["description"] == "before", "the transaction's update was lost"
        async with store.transaction():
            assert await store.update_item(mine["id"], {"name": "TAKEN"}) is False
            await store.update_item(mine["id"], {"description": "after"})
        row = await store.get_item(mine["id"])
        assert row is not None and row["name"] == "mine" and row["description"] == "after"

    backend.run(body)


def test_item_files_and_size_is_an_integer(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        _, item = await make_item(store)
        row = await store.get_item(item)
        assert row is not None and row["size"] == 0 and type(row["size"]) is int
        big = 3 * 1024**3 + 1  # more than 32 bits
        await store.put_item_file(item_file_row(item, "disk.vmdk", big))
        await store.put_item_file(item_file_row(item, "a.ovf", 5))
        row = await store.get_item(item)
        assert row is not None and row["size"] == big + 5 and type(row["size"]) is int
        for key in ("version", "metadata_version", "content_version"):
            assert type(row[key]) is int
        assert [f["name"] for f in await store.item_files(item)] == ["a.ovf", "disk.vmdk"]
        replacement = item_file_row(item, "disk.vmdk", 7, version=2)
        await store.put_item_file(replacement)
        files = await store.item_files(item)
        assert [(f["name"], f["size"], f["version"]) for f in files] == [("a.ovf", 5, 1), ("disk.vmdk", 7, 2)]
        assert all(type(f["size"]) is int for f in files)
        assert await store.item_file(item, "disk.vmdk") == replacement
        assert await store.item_file(item, "missing") is None
        assert (await store.get_item(item) or {})["size"] == 12
        await store.delete_item_file(item, "a.ovf")
        assert [f["name"] for f in await store.item_files(item)] == ["disk.vmdk"]
        async with store.transaction():  # the locking variant of the query (FOR UPDATE on PostgreSQL)
            locked = await store.get_item(item)
        assert locked is not None and locked["size"] == 7 and type(locked["size"]) is int

    backend.run(body)


def test_delete_item_returns_blobs_of_its_files_and_sessions(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        _, item = await make_item(store)
        await store.put_item_file(item_file_row(item, "f", 1, blob_id="item-blob"))
        us = await make_session(store, "update", item, state="DONE", ended=1.0)
        await store.put_session_file(session_file_row(us, "g", blob_id="staged-blob", pending_blob="pending-blob"))
        ds = await make_session(store, "download", item)
        await store.put_download_file(download_file_row(ds, "f", "item-blob"))
        blobs = await store.delete_item(item)
        assert sorted(blobs) == sorted(["item-blob", "staged-blob", "pending-blob", "item-blob"])
        assert await store.get_item(item) is None
        assert await store.item_files(item) == []
        assert await store.get_session("update", us) is None and await store.session_files(us) == []
        assert await store.get_session("download", ds) is None and await store.download_files(ds) == []

    backend.run(body)


def test_meta_under_a_prefix(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        tag = uuid.uuid4().hex[:8]
        await store.set_meta(f"cfg-{tag}.a", "1")
        await store.set_meta(f"cfg-{tag}.b", "true")
        await store.set_meta(f"cfg-{tag}x", "not under the prefix")
        await store.set_meta(f"other.cfg-{tag}.c", "nor this")
        assert await store.meta_under(f"cfg-{tag}.") == {"a": "1", "b": "true"}
        assert await store.meta_under(f"none-{tag}.") == {}

    backend.run(body)


def test_publish_versions_count_per_library_and_item(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        lib, item = await make_item(store)
        assert (await store.get_library(lib) or {})["publish_version"] == 0
        assert (await store.get_item(item) or {})["publish_version"] == 0
        assert await store.bump_publish_version("library", lib) == 1
        assert await store.bump_publish_version("library", lib) == 2
        assert await store.bump_publish_version("item", item) == 1
        assert (await store.get_library(lib) or {})["publish_version"] == 2
        assert (await store.get_item(item) or {})["publish_version"] == 1
        assert await store.bump_publish_version("item", new_id()) == 0  # no such row: nothing counted

    backend.run(body)


def test_feed_version_grows_with_every_change_and_never_falls(backend: Backend) -> None:
    """Store.feed_version (a published library's lib.json `version`): every counter it sums only grows, and a
    removed item's share moves to the library (count_removed_item), so the version grows when an item goes too.
    feed_items reads items with their files in one statement."""

    async def body(store: SqlStore) -> None:
        lib, item = await make_item(store)
        seen = [await store.feed_version(lib)]

        async def grew() -> None:
            seen.append(await store.feed_version(lib))
            assert seen[-1] > seen[-2], seen
            assert type(seen[-1]) is int

        assert seen[0] == 1 + 1 + 1  # library version 1, the item's version and content version 1
        assert await store.feed_version(new_id()) == 0
        await store.update_item(item, {"content_version": 2})
        await grew()
        await store.update_library(lib, {"version": 2})
        await grew()
        await store.bump_publish_version("library", lib)
        await grew()
        await store.bump_publish_version("item", item)
        await grew()
        other = item_row(lib)
        assert await store.insert_item(other) is None
        await grew()
        await store.put_item_file(item_file_row(other["id"], "b.vmdk", 7, blob_id="disk-b"))
        await store.put_item_file(item_file_row(other["id"], "a.ovf", 5, blob_id="ovf-a"))
        rows = await store.feed_items(lib)
        assert [(r["id"], r["file_name"]) for r in rows] == [
            (item, None),
            (other["id"], "a.ovf"),
            (other["id"], "b.vmdk"),
        ]
        assert [(r["file_size"], r["file_blob"]) for r in rows[1:]] == [(5, "ovf-a"), (7, "disk-b")]
        assert [r["file_name"] for r in await store.feed_items(lib, item)] == [None]
        assert await store.feed_items(lib, new_id()) == []
        async with store.transaction():
            await store.count_removed_item(item)
            await store.delete_item(item)
        await grew()
        await store.count_removed_item(new_id())  # no such item: nothing counted, nothing fails
        assert await store.feed_version(lib) == seen[-1]
        async with store.transaction():
            await store.count_removed_item(other["id"])
            await store.delete_item(other["id"])
        await grew()
        assert await store.feed_items(lib) == []

    backend.run(body)


def test_item_changes_are_kept_per_version_and_deleted_with_the_item(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        _, item = await make_item(store)
        _, other = await make_item(store)
        await store.add_item_change(item, 2, 10.5, "alice@vsphere.local", "first upload\nAdded: a")
        await store.add_item_change(item, 3, 20.25, None, None)
        await store.add_item_change(other, 2, 30.0, "bob", "other item")
        got = await store.item_changes(item)
        assert [(c["version"], c["changed"], c["user_name"], c["message"]) for c in got] == [
            (3, 20.25, None, None),
            (2, 10.5, "alice@vsphere.local", "first upload\nAdded: a"),
        ]
        assert all(type(c["version"]) is int for c in got)
        assert (await store.item_change(item, 2) or {})["user_name"] == "alice@vsphere.local"
        assert await store.item_change(item, 4) is None
        await store.delete_item(item)  # the changes go with it (a foreign key would refuse otherwise)
        assert await store.item_changes(item) == []
        assert [c["version"] for c in await store.item_changes(other)] == [2]

    backend.run(body)


def test_copied_files_share_blobs_until_neither_item_references_them(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        lib, source = await make_item(store)
        await store.put_item_file(item_file_row(source, "disk.vmdk", 3 * 1024**3, blob_id="shared-disk", version=4))
        await store.put_item_file(item_file_row(source, "a.ovf", 5, blob_id="shared-ovf", version=2))
        copy = item_row(lib)
        assert await store.insert_item(copy) is None
        async with store.transaction():
            assert await store.copy_item_files(source, copy["id"]) == 2
        files = await store.item_files(copy["id"])
        assert [(f["name"], f["blob_id"], f["size"], f["version"]) for f in files] == [
            ("a.ovf", "shared-ovf", 5, 1),
            ("disk.vmdk", "shared-disk", 3 * 1024**3, 1),
        ]
        assert (await store.get_item(copy["id"]) or {})["size"] == 3 * 1024**3 + 5
        assert {"shared-disk", "shared-ovf"} <= await store.referenced_blobs()
        assert sorted(await store.delete_item(source)) == ["shared-disk", "shared-ovf"]
        assert await store.is_blob_referenced("shared-disk") and await store.is_blob_referenced("shared-ovf")
        assert {"shared-disk", "shared-ovf"} <= await store.referenced_blobs()
        await store.delete_item(copy["id"])
        assert not await store.is_blob_referenced("shared-disk")
        assert not {"shared-disk", "shared-ovf"} & await store.referenced_blobs()

    backend.run(body)


# -- update and download sessions -----------------------------------------------------------------------------------
KINDS = ["update", "download"]


@pytest.mark.parametrize("kind", KINDS)
def test_session_insert_get_and_token(backend: Backend, kind: str) -> None:
    async def body(store: SqlStore) -> None:
        _, item = await make_item(store)
        token = new_id()
        row = session_row(kind, item, client_token=token, created=123.5, last_activity=124.25)
        await store.insert_session(kind, row)
        assert await store.get_session(kind, row["id"]) == row
        assert await store.session_by_token(kind, token) == row
        assert await store.session_by_token(kind, new_id()) is None
        assert await store.get_session(kind, new_id()) is None
        with pytest.raises(TokenTaken):  # another item, so only the token clashes
            _, other = await make_item(store)
            await store.insert_session(kind, session_row(kind, other, client_token=token))
        async with store.transaction():
            assert await store.get_session(kind, row["id"]) == row

    backend.run(body)


@pytest.mark.parametrize("kind", KINDS)
def test_list_sessions_by_owner_and_item_in_creation_order(backend: Backend, kind: str) -> None:
    async def body(store: SqlStore) -> None:
        _, item1 = await make_item(store)
        _, item2 = await make_item(store)
        owner, stranger = f"owner-{uuid.uuid4().hex[:8]}", f"stranger-{uuid.uuid4().hex[:8]}"
        # Inserted out of creation order; states vary so that the one-ACTIVE rule does not interfere.
        s30 = await make_session(store, kind, item1, owner=owner, created=30.0, state="DONE", ended=31.0)
        s10 = await make_session(store, kind, item2, owner=owner, created=10.0)
        s20 = await make_session(store, kind, item1, owner=owner, created=20.0)
        s15 = await make_session(store, kind, item1, owner=owner, created=15.0, state="ERROR", ended=16.0)
        await make_session(store, kind, item1, owner=stranger, created=5.0, state="CANCELED", ended=6.0)
        assert await store.list_sessions(kind, owner, None) == [s10, s15, s20, s30]
        assert await store.list_sessions(kind, owner, item1) == [s15, s20, s30]
        assert await store.list_sessions(kind, owner, item2) == [s10]
        assert await store.list_sessions(kind, f"nobody-{uuid.uuid4().hex}", None) == []

    backend.run(body)


@pytest.mark.parametrize("kind", KINDS)
def test_update_session_compare_and_set(backend: Backend, kind: str) -> None:
    async def body(store: SqlStore) -> None:
        _, item = await make_item(store)
        sid = await make_session(store, kind, item)
        assert await store.update_session(kind, sid, {"client_progress": 40}) is True
        assert await store.update_session(kind, sid, {"state": "DONE", "ended": 9.0}, state="ACTIVE") is True
        assert await store.update_session(kind, sid, {"state": "CANCELED", "ended": 10.0}, state="ACTIVE") is False
        row = await store.get_session(kind, sid)
        assert row is not None
        assert (row["state"], row["ended"], row["client_progress"]) == ("DONE", 9.0, 40)
        assert await store.update_session(kind, sid, {"error_message": "x"}, state="DONE") is True
        assert await store.update_session(kind, new_id(), {"client_progress": 1}) is False

    backend.run(body)


@pytest.mark.parametrize("kind", KINDS)
def test_idle_and_ended_sessions(backend: Backend, kind: str) -> None:
    async def body(store: SqlStore) -> None:
        _, item1 = await make_item(store)
        _, item2 = await make_item(store)
        idle = await make_session(store, kind, item1, last_activity=100.0)
        busy = await make_session(store, kind, item2, last_activity=300.0)
        ended_early = await make_session(store, kind, item1, state="DONE", last_activity=50.0, ended=100.0)
        ended_late = await make_session(store, kind, item1, state="ERROR", last_activity=50.0, ended=300.0)
        mine = {idle, busy, ended_early, ended_late}
        assert set(await store.idle_sessions(kind, 200.0)) & mine == {idle}
        assert set(await store.idle_sessions(kind, 400.0)) & mine == {idle, busy}
        assert set(await store.ended_sessions(kind, 200.0)) & mine == {ended_early}
        assert set(await store.ended_sessions(kind, 400.0)) & mine == {ended_early, ended_late}
        assert set(await store.ended_sessions(kind, 50.0)) & mine == set()

    backend.run(body)


@pytest.mark.parametrize("kind", KINDS)
def test_delete_session_returns_blob_ids_of_its_files(backend: Backend, kind: str) -> None:
    async def body(store: SqlStore) -> None:
        _, item = await make_item(store)
        sid = await make_session(store, kind, item)
        keep = await make_session(store, kind, item, state="DONE", ended=1.0)
        if kind == "update":
            await store.put_session_file(session_file_row(sid, "a", blob_id="a-blob"))
            await store.put_session_file(session_file_row(sid, "b", blob_id="b-blob", pending_blob="b-pending"))
            await store.put_session_file(session_file_row(sid, "c"))  # no blob yet
            await store.put_session_file(session_file_row(keep, "a", blob_id="keep-blob"))
            expected = ["a-blob", "b-blob", "b-pending"]
        else:
            await store.put_download_file(download_file_row(sid, "a", "a-blob"))
            await store.put_download_file(download_file_row(sid, "b", "b-blob"))
            await store.put_download_file(download_file_row(keep, "a", "keep-blob"))
            expected = ["a-blob", "b-blob"]
        assert sorted(await store.delete_session(kind, sid)) == expected
        assert await store.get_session(kind, sid) is None
        files = store.session_files if kind == "update" else store.download_files
        assert await files(sid) == []
        assert len(await files(keep)) == 1 and await store.get_session(kind, keep) is not None
        assert await store.delete_session(kind, sid) == []

    backend.run(body)


# -- one ACTIVE update session per item ------------------------------------------------------------------------------
def test_one_active_update_session_per_item(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        _, item = await make_item(store)
        _, other_item = await make_item(store)
        first = await make_session(store, "update", item)
        with pytest.raises(Busy):
            await make_session(store, "update", item)
        with pytest.raises(Busy):  # also with a client token: Busy, not TokenTaken
            await make_session(store, "update", item, client_token=new_id())
        await make_session(store, "update", other_item)
        await make_session(store, "update", item, state="ERROR", ended=1.0)  # only ACTIVE ones count
        assert (await store.active_update_session_for(item) or {})["id"] == first
        assert await store.update_session("update", first, {"state": "DONE", "ended": 2.0}, state="ACTIVE")
        assert await store.active_update_session_for(item) is None
        second = await make_session(store, "update", item)
        assert (await store.active_update_session_for(item) or {})["id"] == second
        # Download sessions have no such rule.
        d1 = await make_session(store, "download", item)
        d2 = await make_session(store, "download", item)
        assert await store.list_sessions("download", "admin", item) == [d1, d2]

    backend.run(body)


def test_reused_client_token_is_token_taken_even_on_a_busy_item(backend: Backend) -> None:
    """A create retried with its client token (same item, the first create's session still ACTIVE) must be
    TokenTaken, so that the service answers with the first session, not Busy."""

    async def body(store: SqlStore) -> None:
        _, item = await make_item(store)
        token = new_id()
        first = await make_session(store, "update", item, client_token=token)
        with pytest.raises(TokenTaken):
            await make_session(store, "update", item, client_token=token)
        assert (await store.session_by_token("update", token) or {})["id"] == first

    backend.run(body)


def test_concurrent_active_update_session_inserts_exactly_one_wins(backend: Backend) -> None:
    """20 tasks race for one item, plainly and the way the services do it (lock the item in a transaction, then
    insert): exactly one wins, the other 19 get Busy. On PostgreSQL the tasks run on separate pool connections."""

    async def body(store: SqlStore) -> None:
        _, plain_item = await make_item(store)
        _, tx_item = await make_item(store)

        async def plain() -> str:
            return await make_session(store, "update", plain_item)

        async def in_transaction() -> str:
            async with store.transaction():
                assert await store.get_item(tx_item) is not None
                return await make_session(store, "update", tx_item)

        for attempt, item in ((plain, plain_item), (in_transaction, tx_item)):
            results = await asyncio.gather(*(attempt() for _ in range(20)), return_exceptions=True)
            winners = [r for r in results if isinstance(r, str)]
            others = [r for r in results if not isinstance(r, str)]
            assert len(winners) == 1, results
            assert all(isinstance(r, Busy) for r in others), others
            assert (await store.active_update_session_for(item) or {})["id"] == winners[0]
            assert await store.list_sessions("update", "admin", item) == winners

    backend.run(body)


def test_postgres_sweeper_leadership_is_exclusive_and_moves_on(pg_database: PgDatabase) -> None:
    """Exactly one replica sweeps at a time; when it goes away, another one takes over (issue 5 point 3)."""
    backend = postgres_backend(pg_database)

    async def body(first: SqlStore) -> None:
        second = await backend.open()
        try:
            assert await first.is_sweeper() is True
            assert await second.is_sweeper() is False
            assert await first.is_sweeper() is True  # it keeps the role
            await first.close()
            assert await second.is_sweeper() is True
        finally:
            await second.close()

    async def main() -> None:
        store = await backend.open()
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


# -- transactions ------------------------------------------------------------------------------------------------------
def test_transaction_rolls_back_every_statement_when_the_block_raises(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        lib, item = await make_item(store)
        sid = await make_session(store, "update", item)
        new_lib = library_row()
        with pytest.raises(RuntimeError, match="boom"):
            async with store.transaction():
                await store.insert_library(new_lib)
                assert await store.insert_item(item_row(new_lib["id"])) is None
                await store.update_library(lib, {"description": "changed"})
                await store.put_item_file(item_file_row(item, "f", 3))
                await store.put_session_file(session_file_row(sid, "g"))
                assert await store.update_session("update", sid, {"state": "DONE", "ended": 1.0}, state="ACTIVE")
                assert await store.get_library(new_lib["id"]) is not None  # visible inside
                raise RuntimeError("boom")
        assert await store.get_library(new_lib["id"]) is None
        assert await store.list_items(new_lib["id"]) == []
        assert (await store.get_library(lib) or {})["description"] == ""
        assert await store.item_files(item) == []
        assert await store.session_files(sid) == []
        assert (await store.get_session("update", sid) or {})["state"] == "ACTIVE"
        # The store is usable afterwards.
        async with store.transaction():
            await store.update_library(lib, {"description": "after"})
        assert (await store.get_library(lib) or {})["description"] == "after"

    backend.run(body)


def test_transaction_commits_and_is_invisible_to_others_until_then(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        other = await backend.open()  # another connection (another replica)
        try:
            _, item = await make_item(store)
            new_lib = library_row()
            async with store.transaction():
                await store.insert_library(new_lib)
                await store.put_item_file(item_file_row(item, "f", 3))
                assert await other.get_library(new_lib["id"]) is None
                assert await other.item_files(item) == []
            assert await other.get_library(new_lib["id"]) is not None
            assert [f["name"] for f in await other.item_files(item)] == ["f"]
            assert (await other.get_item(item) or {})["size"] == 3
        finally:
            await other.close()

    backend.run(body)


def test_nested_transaction_joins_the_outer_one(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        other = await backend.open()
        try:
            outer_lib, inner_lib = library_row(), library_row()
            with pytest.raises(RuntimeError):
                async with store.transaction():
                    await store.insert_library(outer_lib)
                    async with store.transaction():
                        await store.insert_library(inner_lib)
                    # The inner block's end commits nothing by itself.
                    assert await other.get_library(inner_lib["id"]) is None
                    assert await store.get_library(inner_lib["id"]) is not None
                    raise RuntimeError("outer fails")
            assert await store.get_library(outer_lib["id"]) is None
            assert await store.get_library(inner_lib["id"]) is None
            # An exception from the inner block that escapes the outer one rolls back both, too.
            with pytest.raises(RuntimeError):
                async with store.transaction():
                    await store.insert_library(outer_lib)
                    async with store.transaction():
                        await store.insert_library(inner_lib)
                        raise RuntimeError("inner fails")
            assert await store.get_library(outer_lib["id"]) is None
            assert await store.get_library(inner_lib["id"]) is None
            async with store.transaction():
                await store.insert_library(outer_lib)
                async with store.transaction():
                    await store.insert_library(inner_lib)
            assert await other.get_library(outer_lib["id"]) is not None
            assert await other.get_library(inner_lib["id"]) is not None
        finally:
            await other.close()

    backend.run(body)


def test_rows_read_in_a_transaction_are_locked_until_its_end(backend: Backend) -> None:
    """Read-check-write on one session or item from 12 concurrent tasks (and two Store instances): no update is
    lost, because reading the row inside transaction() locks it."""

    async def body(store: SqlStore) -> None:
        other = await backend.open()
        try:
            _, item = await make_item(store)
            sid = await make_session(store, "update", item)

            async def bump(s: SqlStore) -> None:
                async with s.transaction():
                    row = await s.get_session("update", sid)
                    assert row is not None
                    await s.update_session("update", sid, {"client_progress": row["client_progress"] + 1})
                    it = await s.get_item(item)
                    assert it is not None
                    await s.update_item(item, {"version": it["version"] + 1})

            await asyncio.gather(*(bump(store if i % 2 else other) for i in range(12)))
            assert (await store.get_session("update", sid) or {})["client_progress"] == 12
            assert (await store.get_item(item) or {})["version"] == 13
        finally:
            await other.close()

    backend.run(body)


# -- update-session files ----------------------------------------------------------------------------------------------
def test_put_session_file_replaces_and_returns_the_old_blobs(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        _, item = await make_item(store)
        sid = await make_session(store, "update", item)
        token_a = uuid.uuid4().hex
        assert await store.put_session_file(session_file_row(sid, "a", token=token_a)) == []
        assert await store.put_session_file(session_file_row(sid, "b", blob_id="b-1")) == []
        assert [f["name"] for f in await store.session_files(sid)] == ["a", "b"]
        assert (await store.session_file_by_token(token_a) or {})["name"] == "a"
        old = await store.put_session_file(
            session_file_row(sid, "a", blob_id="a-2", pending_blob="a-2p", status="READY")
        )
        assert old == []  # the replaced entry had no blobs
        old = await store.put_session_file(session_file_row(sid, "a", status="WAITING_FOR_TRANSFER"))
        assert sorted(old) == ["a-2", "a-2p"]
        # The replacement is the newest entry: session files come in the order they were (re)added.
        assert [f["name"] for f in await store.session_files(sid)] == ["b", "a"]
        row = await store.session_file(sid, "a")
        assert row is not None and row["blob_id"] is None and row["status"] == "WAITING_FOR_TRANSFER"
        assert await store.session_file_by_token(token_a) is None
        await store.delete_session_file(sid, "b")
        assert [f["name"] for f in await store.session_files(sid)] == ["a"]
        assert await store.session_file(sid, "b") is None

    backend.run(body)


def test_update_session_file_compare_and_set(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        _, item = await make_item(store)
        sid = await make_session(store, "update", item)
        await store.put_session_file(session_file_row(sid, "f"))
        ok = await store.update_session_file(
            sid, "f", {"status": "TRANSFERRING"}, expect={"status": "WAITING_FOR_TRANSFER"}
        )
        assert ok is True
        ok = await store.update_session_file(
            sid, "f", {"status": "TRANSFERRING"}, expect={"status": "WAITING_FOR_TRANSFER"}
        )
        assert ok is False
        # None in `expect` matches SQL NULL.
        assert await store.update_session_file(sid, "f", {"pending_blob": "p1"}, expect={"pending_blob": None})
        assert not await store.update_session_file(sid, "f", {"pending_blob": "p2"}, expect={"pending_blob": None})
        assert await store.update_session_file(
            sid,
            "f",
            {"status": "READY", "blob_id": "p1", "pending_blob": None, "size": 2**40},
            expect={"status": "TRANSFERRING", "pending_blob": "p1", "blob_id": None},
        )
        row = await store.session_file(sid, "f")
        assert row is not None
        assert (row["status"], row["blob_id"], row["pending_blob"], row["size"]) == ("READY", "p1", None, 2**40)
        assert await store.update_session_file(sid, "f", {"bytes_transferred": 5}) is True
        assert await store.update_session_file(sid, "missing", {"bytes_transferred": 5}) is False

    backend.run(body)


def test_delete_members(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        _, item = await make_item(store)
        sid = await make_session(store, "update", item)
        _, item2 = await make_item(store)
        other = await make_session(store, "update", item2)
        await store.put_session_file(session_file_row(sid, "x.ova", blob_id="ova"))
        await store.put_session_file(session_file_row(sid, "x.ovf", parent="x.ova", blob_id="m1"))
        await store.put_session_file(session_file_row(sid, "x.vmdk", parent="x.ova", pending_blob="m2"))
        await store.put_session_file(session_file_row(sid, "y.vmdk", parent="y.ova", blob_id="m3"))
        await store.put_session_file(session_file_row(other, "x.ovf", parent="x.ova", blob_id="o1"))
        assert sorted(await store.delete_members(sid, "x.ova")) == ["m1", "m2"]
        assert [f["name"] for f in await store.session_files(sid)] == ["x.ova", "y.vmdk"]
        assert [f["name"] for f in await store.session_files(other)] == ["x.ovf"]
        assert await store.delete_members(sid, "x.ova") == []

    backend.run(body)


def test_stalled_transfers_by_owner_and_by_age(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        _, item = await make_item(store)
        _, item2 = await make_item(store)
        active = await make_session(store, "update", item)
        done = await make_session(store, "update", item2, state="DONE", ended=1.0)
        me, them = new_id(), new_id()

        async def put(sid: str, name: str, **fields: Any) -> None:
            await store.put_session_file(session_file_row(sid, name, **fields))

        await put(active, "uploading", status="TRANSFERRING", transfer_owner=me, progress_at=100.0)
        await put(active, "validating", status="VALIDATING", transfer_owner=them, progress_at=300.0)
        await put(active, "pull-waiting", source_type="PULL", transfer_owner=me, progress_at=None)
        await put(active, "push-waiting", transfer_owner=me, progress_at=100.0)  # no transfer yet
        await put(active, "ready", status="READY", transfer_owner=me, progress_at=100.0)
        await put(active, "error", status="ERROR", transfer_owner=me, progress_at=100.0)
        await put(active, "member", status="TRANSFERRING", parent="x.ova", transfer_owner=me, progress_at=100.0)
        await put(done, "uploading", status="TRANSFERRING", transfer_owner=me, progress_at=100.0)

        def names(rows: list[Row]) -> set[str]:
            return {r["name"] for r in rows if r["session_id"] in (active, done)}

        assert names(await store.stalled_transfers(owner=me)) == {"uploading", "pull-waiting"}
        assert names(await store.stalled_transfers(owner=them)) == {"validating"}
        assert names(await store.stalled_transfers(before=200.0)) == {"uploading", "pull-waiting"}
        assert names(await store.stalled_transfers(before=400.0)) == {"uploading", "pull-waiting", "validating"}
        assert {r["session_id"] for r in await store.stalled_transfers(owner=me)} == {active}

    backend.run(body)


# -- blob references ---------------------------------------------------------------------------------------------------
def test_referenced_blobs(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        _, item = await make_item(store)
        _, item2 = await make_item(store)
        kinds = ["item", "staged", "pending", "done_staged", "done_pending", "prepared", "canceled_prepared", "nothing"]
        b = {k: f"{k}-{uuid.uuid4().hex}" for k in kinds}
        await store.put_item_file(item_file_row(item, "f", 1, blob_id=b["item"]))
        active = await make_session(store, "update", item)
        await store.put_session_file(session_file_row(active, "a", blob_id=b["staged"], status="READY"))
        await store.put_session_file(session_file_row(active, "b", pending_blob=b["pending"], status="TRANSFERRING"))
        done = await make_session(store, "update", item2, state="CANCELED", ended=1.0)
        await store.put_session_file(
            session_file_row(done, "a", blob_id=b["done_staged"], pending_blob=b["done_pending"])
        )
        dl = await make_session(store, "download", item)
        await store.put_download_file(download_file_row(dl, "f", b["prepared"]))
        dl_gone = await make_session(store, "download", item, state="CANCELED", ended=1.0)
        await store.put_download_file(download_file_row(dl_gone, "f", b["canceled_prepared"]))

        referenced = {"item", "staged", "pending", "prepared"}
        refs = await store.referenced_blobs()
        assert {k for k, blob in b.items() if blob in refs} == referenced
        for k, blob in b.items():
            assert await store.is_blob_referenced(blob) is (k in referenced), k
        # A DONE download session no longer pins its prepared files; the item file still pins the item's blob.
        assert await store.update_session("download", dl, {"state": "DONE", "ended": 2.0}, state="ACTIVE")
        assert await store.is_blob_referenced(b["prepared"]) is False
        assert await store.update_session("update", active, {"state": "ERROR", "ended": 2.0}, state="ACTIVE")
        assert await store.is_blob_referenced(b["staged"]) is False
        assert await store.is_blob_referenced(b["pending"]) is False
        assert await store.is_blob_referenced(b["item"]) is True

    backend.run(body)


# -- trusted certificates ----------------------------------------------------------------------------------------------
def test_trusted_certificates(backend: Backend) -> None:
    async def body(store: SqlStore) -> None:
        cid = new_id()
        await store.add_trusted_certificate(cid, "PEM-1", 10.0)
        await store.add_trusted_certificate(cid, "PEM-2", 11.0)  # adding twice keeps one
        assert [r for r in await store.trusted_certificates() if r["id"] == cid] == [
            {"id": cid, "cert_text": "PEM-1", "created": 10.0}
        ]
        assert await store.trusted_certificate(cid) == {"id": cid, "cert_text": "PEM-1", "created": 10.0}
        assert await store.delete_trusted_certificate(cid) is True
        assert await store.delete_trusted_certificate(cid) is False
        assert await store.trusted_certificate(cid) is None

    backend.run(body)


# -- BlobStores --------------------------------------------------------------------------------------------------------
@dataclass
class BlobBackend:
    """A BlobStore under test (storage.blobs.BlobStore) and what it raises for a blob that is not there."""

    store: BlobStore
    missing: tuple[type[BaseException], ...]


async def fs_blob_backend(tmp_path: Path) -> BlobBackend:
    return BlobBackend(FileBlobStore(tmp_path / "blobs"), (FileNotFoundError,))


S3_ENDPOINT = os.environ.get("CONTENTLIB_TEST_S3", "http://127.0.0.1:8333")


async def s3_blob_backend(tmp_path: Path) -> BlobBackend:
    """An S3BlobStore on a prefix of its own (SeaweedFS in CI: scripts/ensure-seaweedfs.sh starts it)."""
    from botocore.exceptions import ClientError, EndpointConnectionError

    from contentlib.storage.s3 import S3BlobStore

    for key, value in (
        ("AWS_ACCESS_KEY_ID", "ci"),
        ("AWS_SECRET_ACCESS_KEY", "cisecret"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ.setdefault(key, value)
    try:
        store = await S3BlobStore.open(f"s3://contentlib-test/store-{uuid.uuid4().hex[:12]}?endpoint={S3_ENDPOINT}")
    except EndpointConnectionError as e:
        pytest.fail(f"S3 at {S3_ENDPOINT} is not reachable ({e}); run scripts/ensure-seaweedfs.sh")
    return BlobBackend(store, (ClientError,))


# name -> factory: every BlobStore runs the same tests.
BLOB_BACKENDS: dict[str, Callable[[Path], Awaitable[BlobBackend]]] = {"fs": fs_blob_backend, "s3": s3_blob_backend}


@pytest.fixture(params=sorted(BLOB_BACKENDS))
def run_blobs(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[Callable[[BlobBackend], Awaitable[None]]], None]:
    """Run an async test body against a freshly opened BlobStore, in one event loop (async clients are bound to
    the loop that opened them)."""

    def run(body: Callable[[BlobBackend], Awaitable[None]]) -> None:
        async def main() -> None:
            blobs = await BLOB_BACKENDS[request.param](tmp_path)
            try:
                await body(blobs)
            finally:
                await blobs.store.close()

        asyncio.run(main())

    return run


def blob_id() -> str:
    return f"{uuid.uuid4().hex}/{uuid.uuid4().hex}"  # "<session id>/<uuid>", as the server makes them


async def read(store: BlobStore, bid: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(bid, start, end)])


async def write_blob(store: BlobStore, bid: str, data: bytes, chunk: int = 65_537) -> tuple[int, dict[str, str]]:
    """Write a blob the way uploads do (transfer.Receiver into the store's sink); its size and digests."""
    receiver = Receiver(store.sink(bid), ["sha1", "sha256"])
    view = memoryview(data)
    for off in range(0, len(data), chunk):
        await receiver.feed(view[off : off + chunk])
    return await receiver.finish()


@pytest.mark.parametrize("size", [0, 1, 4096, 4097, BATCH + 4097])
def test_blob_written_reads_back_exactly(run_blobs: Callable[..., None], size: int) -> None:
    async def body(blobs: BlobBackend) -> None:
        data = os.urandom(size)
        bid = blob_id()
        got_size, digests = await write_blob(blobs.store, bid, data)
        assert got_size == size
        assert digests == {"sha1": hashlib.sha1(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest()}
        assert await blobs.store.size(bid) == size
        assert await read(blobs.store, bid) == data
        assert await read(blobs.store, bid, 1, 4097) == data[1:4097]
        assert await read(blobs.store, bid, size // 2) == data[size // 2 :]
        assert await blobs.store.list_ids() == [bid]

    run_blobs(body)


def test_blob_abort_leaves_nothing(run_blobs: Callable[..., None]) -> None:
    async def body(blobs: BlobBackend) -> None:
        bid = blob_id()
        receiver = Receiver(blobs.store.sink(bid), ["sha1"])
        await receiver.feed(os.urandom(BATCH + 10))  # one full batch is already on its way to the sink
        await receiver.abort()
        assert bid not in await blobs.store.list_ids()
        with pytest.raises(blobs.missing):
            await blobs.store.size(bid)
        with pytest.raises(blobs.missing):
            await read(blobs.store, bid)

    run_blobs(body)


def test_blob_list_ids_and_delete_all(run_blobs: Callable[..., None]) -> None:
    async def body(blobs: BlobBackend) -> None:
        assert await blobs.store.list_ids() == []
        ids = [blob_id() for _ in range(3)]
        for i, bid in enumerate(ids):
            await write_blob(blobs.store, bid, bytes([i]) * (i + 1))
        assert sorted(await blobs.store.list_ids()) == sorted(ids)
        await blobs.store.delete_all([ids[0], ids[1], blob_id()])  # an unknown id is no error
        assert await blobs.store.list_ids() == [ids[2]]
        assert await read(blobs.store, ids[2]) == b"\x02\x02\x02"
        with pytest.raises(blobs.missing):
            await read(blobs.store, ids[0])
        await blobs.store.delete_all([ids[2]])
        await blobs.store.delete_all([ids[2]])  # deleting twice is no error
        assert await blobs.store.list_ids() == []

    run_blobs(body)


def test_blob_left_half_written_by_a_dead_writer_is_listed_and_collected(run_blobs: Callable[..., None]) -> None:
    """A process killed while writing leaves a partial blob (a file on disk, an open multipart upload on S3): it is
    listed, so the garbage collector sees it, and delete_orphans removes it once older than the grace period."""

    async def body(blobs: BlobBackend) -> None:
        bid = blob_id()
        buf = mmap.mmap(-1, 4096)  # page-aligned, like the Receiver's batches
        buf.write(b"x" * 4096)
        sink = blobs.store.sink(bid)
        await sink.write(memoryview(buf), 4096, 0)  # then neither commit nor abort: the writer died
        assert await blobs.store.list_ids() == [bid]
        assert await blobs.store.delete_orphans([bid], 3600) == 0
        assert await blobs.store.list_ids() == [bid]
        assert await blobs.store.delete_orphans([bid], 0) == 1
        assert await blobs.store.list_ids() == []
        await sink.abort()  # the late writer's clean-up finds nothing to remove

    run_blobs(body)


def test_blob_delete_orphans_respects_the_grace_period(run_blobs: Callable[..., None]) -> None:
    async def body(blobs: BlobBackend) -> None:
        old, old_kept, young = blob_id(), blob_id(), blob_id()
        for bid in (old, old_kept):
            await write_blob(blobs.store, bid, b"x" * 10)
        await asyncio.sleep(3.2)
        await write_blob(blobs.store, young, b"x" * 10)
        # Candidates older than the grace period go; young ones and non-candidates stay; unknown ids don't count.
        # (S3 keeps LastModified in whole seconds: a blob written just now may look up to a second old.)
        assert await blobs.store.delete_orphans([old, young, blob_id()], 2.0) == 1
        assert sorted(await blobs.store.list_ids()) == sorted([old_kept, young])
        assert await read(blobs.store, young) == b"x" * 10
        # Without a grace period every candidate goes.
        assert await blobs.store.delete_orphans([old_kept, young, old], 0) == 2
        assert await blobs.store.list_ids() == []

    run_blobs(body)


def test_documents_are_written_whole_listed_and_deleted_beside_the_blobs(run_blobs: Callable[..., None]) -> None:
    """The documents of persisted VCSP feeds: replaced whole under their key, listed by folder, deleted; never
    among the blobs (the garbage collector lists only those), and keys that could leave their place refused."""

    async def body(blobs: BlobBackend) -> None:
        store = blobs.store
        bid = blob_id()
        await write_blob(store, bid, b"blob")
        top = f"vcsp/{uuid.uuid4()}/"
        assert await store.read_document(top + "lib.json") is None
        assert await store.list_documents(top) == []
        await store.put_document(top + "lib.json", b'{"version": "1"}')
        await store.put_document(top + "lib.json", b'{"version": "2"}')  # replaced
        await store.put_document(top + "i1/item.json", b"{}")
        await store.put_document(f"vcsp/{uuid.uuid4()}/lib.json", b"{}")  # another folder
        assert await store.read_document(top + "lib.json") == b'{"version": "2"}'
        assert await store.list_documents(top) == [top + "i1/item.json", top + "lib.json"]
        assert await store.list_ids() == [bid]  # not blobs
        assert (top + "lib.json").split("/", 1)[1] in store.document_uri(top + "lib.json")
        await store.delete_documents([top + "i1/item.json", top + "missing.json"])
        assert await store.list_documents(top) == [top + "lib.json"]
        await store.delete_documents([top + "lib.json"])
        assert await store.list_documents(top) == [] and await read(store, bid) == b"blob"
        for bad in ("", "/etc/passwd", "vcsp/../x", "vcsp//x", f"blobs/{bid}", "vcsp/./x"):
            with pytest.raises(ValueError):
                await store.put_document(bad, b"x")

    run_blobs(body)


def test_a_blob_copied_to_a_document_has_its_bytes(
    run_blobs: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A persisted feed's files: a hard link on disk (no bytes copied), a server-side copy on S3, in parts beyond
    `_COPY_PART` (made small here: S3 parts are at least 5 MiB, but the last); the blob itself unchanged."""
    import contentlib.storage.s3

    monkeypatch.setattr(contentlib.storage.s3, "_COPY_PART", 5 * 1024 * 1024)

    async def body(blobs: BlobBackend) -> None:
        store = blobs.store
        top = f"vcsp/{uuid.uuid4()}/"
        for size in (0, 1000, 11 * 1024 * 1024 + 3):
            data, bid = os.urandom(size), blob_id()
            await write_blob(store, bid, data)
            await store.copy_to_document(bid, top + f"item/{size}.iso")
            await store.copy_to_document(bid, top + f"item/{size}.iso")  # again: replaced
            assert await store.read_document(top + f"item/{size}.iso") == data
            assert await read(store, bid) == data
            if isinstance(store, FileBlobStore):
                assert store.document_path(top + f"item/{size}.iso").stat().st_nlink == 2  # the blob's own bytes
        assert len(await store.list_documents(top)) == 3 and len(await store.list_ids()) == 3

    run_blobs(body)


# -- schema migrations -----------------------------------------------------------------------------------------------
def version_6_statements(real: str, integer: str) -> list[str]:
    """The schema of version 6: today's, without what migration 7 adds (subscribed libraries: a column of libraries,
    four of items, the library_syncs and subscriptions tables)."""
    statements = [
        s
        for s in schema_statements(real, integer)
        if not s.startswith(
            ("CREATE TABLE library_syncs", "CREATE TABLE subscriptions", "CREATE UNIQUE INDEX subscriptions")
        )
    ]
    for table, added in (
        ("libraries", ",\n    subscription_password TEXT"),
        (
            "items",
            f",\n    cached {integer} NOT NULL DEFAULT 1,\n    remote TEXT,\n    synced_content TEXT,"
            f"\n    last_sync {real}",
        ),
    ):
        i = next(i for i, s in enumerate(statements) if s.startswith(f"CREATE TABLE {table} "))
        assert added in statements[i], statements[i]
        statements[i] = statements[i].replace(added, "")
    return statements


def version_5_statements(real: str, integer: str) -> list[str]:
    """The schema of version 5: version 6's, without what migration 6 adds (the VCSP feed's columns of libraries)."""
    statements = version_6_statements(real, integer)
    i = next(i for i, s in enumerate(statements) if s.startswith("CREATE TABLE libraries "))
    added = f",\n    feed_removed {integer} NOT NULL DEFAULT 0,\n    publish_password TEXT"
    assert added in statements[i]
    statements[i] = statements[i].replace(added, "")
    return statements


def version_4_statements(real: str, integer: str) -> list[str]:
    """The schema of version 4: version 5's, without what migration 5 adds (the login_failures table)."""
    return [s for s in version_5_statements(real, integer) if not s.startswith("CREATE TABLE login_failures")]


def version_3_statements(real: str, integer: str) -> list[str]:
    """The schema of version 3: version 4's, without what migration 4 adds (update_sessions.completing, its index)."""
    statements = [s for s in version_4_statements(real, integer) if "update_sessions_completing" not in s]
    i = next(i for i, s in enumerate(statements) if s.startswith("CREATE TABLE update_sessions "))
    assert f",\n    completing {real}" in statements[i]
    statements[i] = statements[i].replace(f",\n    completing {real}", "")
    return statements


def version_2_statements(real: str, integer: str) -> list[str]:
    """The schema of version 2: version 3's, without what migration 3 adds (the publish counters, item_changes)."""
    statements = [s for s in version_3_statements(real, integer) if not s.startswith("CREATE TABLE item_changes")]
    counter = f",\n    publish_version {integer} NOT NULL DEFAULT 0"
    for table in ("libraries", "items"):
        i = next(i for i, s in enumerate(statements) if s.startswith(f"CREATE TABLE {table} "))
        assert counter in statements[i]
        statements[i] = statements[i].replace(counter, "")
    return statements


def version_1_statements(real: str, integer: str) -> list[str]:
    """The schema of version 1: version 2's, without the column that migration 2 adds (users.role)."""
    statements = version_2_statements(real, integer)
    users = next(i for i, s in enumerate(statements) if s.startswith("CREATE TABLE users"))
    assert ",\n    role TEXT NOT NULL" in statements[users]
    statements[users] = statements[users].replace(",\n    role TEXT NOT NULL", "")
    return statements


def old_database(kind: str, tmp_path: Path, version: int, rows: list[str]) -> tuple[Backend, str | None]:
    """A database of schema `version` holding `rows` (INSERT statements); a Backend that opens it, and the
    PostgreSQL URL to drop afterwards."""
    real, integer = ("REAL", "INTEGER") if kind == "sqlite" else ("DOUBLE PRECISION", "BIGINT")
    older = {
        1: version_1_statements,
        2: version_2_statements,
        3: version_3_statements,
        4: version_4_statements,
        5: version_5_statements,
        6: version_6_statements,
    }[version]
    statements = older(real, integer) + rows
    if kind == "sqlite":
        import sqlite3

        db = sqlite3.connect(tmp_path / "metadata.db")
        for stmt in statements:
            db.execute(stmt)
        db.execute(f"PRAGMA user_version={version}")
        db.commit()
        db.close()
        return sqlite_backend(tmp_path), None
    url = pg_create_database()

    async def create() -> None:
        conn = await asyncpg.connect(url)
        try:
            for stmt in statements:
                await conn.execute(stmt)
            await conn.execute("CREATE TABLE schema_version (version BIGINT NOT NULL)")
            await conn.execute(f"INSERT INTO schema_version VALUES ({version})")
        finally:
            await conn.close()

    asyncio.run(create())
    return postgres_backend(PgDatabase(url)), url


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_version_1_database_is_migrated(kind: str, tmp_path: Path) -> None:
    """A database written before users had roles opens, its users become Administrators (they could do anything),
    and it is marked with the current schema version, once."""
    user = "INSERT INTO users (name, password_hash, created) VALUES ('old@vsphere.local', 'h', 1)"
    backend, url = old_database(kind, tmp_path, 1, [user])

    async def body(store: SqlStore) -> None:
        assert (await store.get_user("OLD@vsphere.local") or {})["role"] == "Administrator"
        assert await store.add_user("new@vsphere.local", "h", 2.0, "ReadOnly")
        assert [(u["name"], u["role"]) for u in await store.list_users()] == [
            ("new@vsphere.local", "ReadOnly"),
            ("old@vsphere.local", "Administrator"),
        ]

    async def reopened(store: SqlStore) -> None:  # the migration ran once: adding the column again would fail
        assert len(await store.list_users()) == 2

    try:
        backend.run(body)
        backend.run(reopened)
    finally:
        if url:
            pg_drop_database(url)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_version_2_database_is_migrated(kind: str, tmp_path: Path) -> None:
    """A database written before publish counters and change history opens with its libraries and items intact,
    their counters at 0 and no recorded changes; both work at once, and the migration runs once."""
    rows = [
        "INSERT INTO libraries (id, name, description, type, storage_backings, extra, version, created, modified) "
        "VALUES ('lib-1', 'old', '', 'LOCAL', '[]', '{}', 3, 1, 2)",
        "INSERT INTO items (id, library_id, name, description, type, source_id, version, metadata_version, "
        "content_version, created, modified) VALUES ('item-1', 'lib-1', 'disk', '', NULL, NULL, 1, 1, 5, 1, 2)",
        "INSERT INTO item_files (item_id, name, blob_id, size, sha1, version) "
        "VALUES ('item-1', 'disk.iso', 'blob-1', 42, 'ab', 4)",
    ]
    backend, url = old_database(kind, tmp_path, 2, rows)

    async def body(store: SqlStore) -> None:
        lib = await store.get_library("lib-1")
        item = await store.get_item("item-1")
        assert lib is not None and (lib["name"], lib["version"], lib["publish_version"]) == ("old", 3, 0)
        assert item is not None and (item["content_version"], item["size"], item["publish_version"]) == (5, 42, 0)
        assert await store.item_changes("item-1") == []
        assert await store.bump_publish_version("item", "item-1") == 1
        await store.add_item_change("item-1", 6, 3.0, "admin", "after the upgrade")
        assert [c["version"] for c in await store.item_changes("item-1")] == [6]
        assert await store.delete_item("item-1") == ["blob-1"]

    async def reopened(store: SqlStore) -> None:  # migrated once: adding the columns again would fail
        assert (await store.get_library("lib-1") or {})["publish_version"] == 0
        assert await store.get_item("item-1") is None

    try:
        backend.run(body)
        backend.run(reopened)
    finally:
        if url:
            pg_drop_database(url)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_version_3_database_is_migrated(kind: str, tmp_path: Path) -> None:
    """A database written before a complete could wait for pulls opens with its ACTIVE session not completing; it
    can be marked completing (and found so) at once, and the migration runs once."""
    rows = [
        "INSERT INTO update_sessions (id, item_id, owner, content_version, state, client_progress, created, "
        "last_activity) VALUES ('us-1', 'item-1', 'admin', 1, 'ACTIVE', 0, 1, 2)",
    ]
    backend, url = old_database(kind, tmp_path, 3, rows)

    async def body(store: SqlStore) -> None:
        session = await store.get_session("update", "us-1")
        assert session is not None and session["completing"] is None and session["state"] == "ACTIVE"
        assert await store.completing_sessions() == []
        assert await store.update_session("update", "us-1", {"completing": 3.0}, state="ACTIVE")
        assert await store.completing_sessions() == ["us-1"]

    async def reopened(store: SqlStore) -> None:  # migrated once: adding the column again would fail
        assert await store.completing_sessions() == ["us-1"]

    try:
        backend.run(body)
        backend.run(reopened)
    finally:
        if url:
            pg_drop_database(url)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_version_4_database_is_migrated(kind: str, tmp_path: Path) -> None:
    """A database written before failed logins were counted in it opens with no failures counted; they count from
    then on, start over after the forget period, and clear; the migration runs once."""
    rows = [
        "INSERT INTO users (name, password_hash, created, role) VALUES ('admin', 'x', 1, 'Administrator')",
    ]
    backend, url = old_database(kind, tmp_path, 4, rows)

    async def body(store: SqlStore) -> None:
        assert await store.login_failures("admin") is None
        assert [await store.record_login_failure("admin", t, 0.0) for t in (10.0, 11.0, 12.0)] == [1, 2, 3]
        assert await store.login_failures("admin") == {"count": 3, "last": 12.0}
        assert await store.record_login_failure("admin", 100.0, forget_before=50.0) == 1  # the last was too old

    async def reopened(store: SqlStore) -> None:  # migrated once: creating the table again would fail
        assert (await store.login_failures("admin") or {})["count"] == 1
        assert await store.forget_login_failures(before=50.0) == 0
        await store.clear_login_failures("admin")
        assert await store.login_failures("admin") is None

    try:
        backend.run(body)
        backend.run(reopened)
    finally:
        if url:
            pg_drop_database(url)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_version_5_database_is_migrated(kind: str, tmp_path: Path) -> None:
    """A database written before the VCSP feed opens with its libraries intact, nothing counted for removed items
    and no publish password (a BASIC library needs one set); the feed version works at once (and grows when an
    item goes), a password hash can be kept, and the migration runs once."""
    rows = [
        "INSERT INTO libraries (id, name, description, type, storage_backings, extra, version, created, modified, "
        "publish_version) VALUES ('lib-1', 'old', '', 'LOCAL', '[]', "
        '\'{"publish_info": {"published": true, "authentication_method": "BASIC"}}\', 3, 1, 2, 4)',
        "INSERT INTO items (id, library_id, name, description, type, source_id, version, metadata_version, "
        "content_version, created, modified, publish_version) "
        "VALUES ('item-1', 'lib-1', 'disk', '', NULL, NULL, 2, 2, 5, 1, 2, 1)",
    ]
    backend, url = old_database(kind, tmp_path, 5, rows)

    async def body(store: SqlStore) -> None:
        lib = await store.get_library("lib-1")
        assert lib is not None and (lib["feed_removed"], lib["publish_password"]) == (0, None)
        assert await store.feed_version("lib-1") == 3 + 4 + (2 + 5 + 1)
        async with store.transaction():
            await store.count_removed_item("item-1")
            await store.delete_item("item-1")
        assert await store.feed_version("lib-1") == 3 + 4 + (2 + 5 + 1) + 1
        await store.update_library("lib-1", {"publish_password": "$argon2id$hash"})

    async def reopened(store: SqlStore) -> None:  # migrated once: adding the columns again would fail
        lib = await store.get_library("lib-1")
        assert lib is not None and (lib["feed_removed"], lib["publish_password"]) == (9, "$argon2id$hash")

    try:
        backend.run(body)
        backend.run(reopened)
    finally:
        if url:
            pg_drop_database(url)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_version_6_database_is_migrated(kind: str, tmp_path: Path) -> None:
    """A database written before subscribed libraries opens with its items cached (their bytes are here), no sync
    state and no subscriptions; the new columns and tables work at once, and the migration runs once."""
    rows = [
        "INSERT INTO libraries (id, name, description, type, storage_backings, extra, version, created, modified) "
        "VALUES ('lib-1', 'old', '', 'LOCAL', '[]', '{}', 1, 1, 2)",
        "INSERT INTO items (id, library_id, name, description, type, source_id, version, metadata_version, "
        "content_version, created, modified) VALUES ('item-1', 'lib-1', 'disk', '', NULL, NULL, 1, 1, 1, 1, 2)",
    ]
    backend, url = old_database(kind, tmp_path, 6, rows)

    async def body(store: SqlStore) -> None:
        item = await store.get_item("item-1")
        assert item is not None and (item["cached"], item["remote"], item["last_sync"]) == (1, None, None)
        lib = await store.get_library("lib-1")
        assert lib is not None and lib["subscription_password"] is None
        assert await store.sync_states() == [] and await store.list_subscriptions("lib-1") == []
        async with store.transaction():
            await store.request_sync("lib-1", 5.0)

    async def reopened(store: SqlStore) -> None:  # migrated once: adding the columns again would fail
        state = await store.sync_state("lib-1")
        assert state is not None and state["requested"] == 5.0

    try:
        backend.run(body)
        backend.run(reopened)
    finally:
        if url:
            pg_drop_database(url)
