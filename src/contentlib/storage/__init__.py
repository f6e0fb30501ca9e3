"""Where metadata and bytes live: a metadata Store (SQLite or PostgreSQL) and a BlobStore (local disk)."""

from __future__ import annotations

from contentlib.config import Settings
from contentlib.storage.sql import SqlStore


async def open_store(settings: Settings) -> SqlStore:
    """The Store the settings name: `--database postgresql://...`, else SQLite in the data dir."""
    if settings.database:
        if not settings.database.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"--database wants a postgresql:// URL, got {settings.database!r}")
        from contentlib.storage.postgres import PostgresStore

        return await PostgresStore.open(settings.database)
    from contentlib.storage.sqlite import SQLiteStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SQLiteStore(settings.db_path)
