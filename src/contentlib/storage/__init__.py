"""Where metadata and bytes live: a metadata Store (SQLite or PostgreSQL) and a BlobStore (disk or S3)."""

from __future__ import annotations

from pathlib import Path

from contentlib.config import Settings
from contentlib.storage.blobs import BlobStore
from contentlib.storage.sql import SqlStore


async def open_store(settings: Settings) -> SqlStore:
    """The Store the settings name: `--database postgresql://...`, else SQLite in the data dir."""
    if settings.database:
        if not settings.database.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"--database wants a postgresql:// URL, got {settings.database!r}")
        from contentlib.storage.postgres import PostgresStore

        # One pool per worker process: together no more connections than one process used to take, since a
        # worker's event loop keeps only a few statements in flight at once (research/stack.md: pool size made no
        # difference), and PostgreSQL's connection limit is shared by every replica.
        return await PostgresStore.open(settings.database, max(4, 16 // max(1, settings.workers)))
    from contentlib.storage.sqlite import SQLiteStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SQLiteStore(settings.db_path)


async def open_blobs(settings: Settings) -> BlobStore:
    """The BlobStore the settings name: `--blobs s3://bucket/prefix?endpoint=...` or `file:///dir`, else the data
    dir's blobs/ folder."""
    url = settings.blobs
    if url and url.startswith("s3://"):
        from contentlib.storage.s3 import S3BlobStore

        return await S3BlobStore.open(url)
    from contentlib.storage.fs import FileBlobStore

    if url:
        if not url.startswith("file://"):
            raise ValueError(f"--blobs wants file:///dir or s3://bucket/prefix?endpoint=..., got {url!r}")
        return FileBlobStore(Path(url[len("file://") :]), documents=settings.data_dir)
    return FileBlobStore(settings.blob_dir, documents=settings.data_dir)
