"""The BlobStore protocol: where file bytes live (local disk, or an S3 bucket shared by replicas).

A blob is written once under a fresh id and never modified; whether anybody sees it is decided by the metadata
alone (update-session rows point at staged blobs, `complete` moves the pointers into the item's rows in one
transaction). So publishing copies nothing, and blobs nothing points at any more are deleted by the garbage
collector. Every method is a coroutine: the disk store runs its blocking calls in worker threads, the S3 store is
an async client; neither blocks the event loop.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol


class Sink(Protocol):
    """Where one new blob's bytes go. `write` gets batch number `index` (0, 1, ...) and the first `n` bytes of
    `buf`; with `ordered`, calls come one at a time in index order, else side by side in any order. `commit` comes
    last and makes the blob visible; `abort` leaves nothing."""

    ordered: bool

    async def write(self, buf: memoryview, n: int, index: int) -> None: ...

    async def commit(self, size: int) -> None: ...

    async def abort(self) -> None: ...


class BlobStore(Protocol):
    def sink(self, blob_id: str) -> Sink: ...

    async def size(self, blob_id: str) -> int: ...

    def read(self, blob_id: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes [start, end) of a blob (clipped to its size), in chunks."""
        ...

    def local_path(self, blob_id: str) -> Path | None:
        """A path on this machine holding the blob (downloads then use sendfile), or None."""
        ...

    def direct_uri(self, blob_id: str) -> str:
        """The URI that identifies the blob's bytes on its storage: `file:///...` of the file on disk, `s3://bucket/key`
        on S3 (a DIRECT download endpoint; an item file's `Storage.Info.storage_uris`)."""
        ...

    async def delete_all(self, blob_ids: list[str]) -> None: ...

    async def list_ids(self) -> list[str]:
        """Every blob that holds storage, including ones being written or left half-written by a process that
        died (the garbage collector deletes those nothing references)."""
        ...

    async def delete_orphans(self, candidates: list[str], grace: float) -> int:
        """Delete the candidates not written within the last `grace` seconds; how many went."""
        ...

    def location(self) -> str:
        """Where the blobs live, as a URL (`file:///dir/`, `s3://bucket/prefix/`): the datastore's url."""
        ...

    async def space(self) -> tuple[int, int] | None:
        """The storage's capacity and free bytes, or None when it has no capacity to report (S3)."""
        ...

    # Documents: small files written whole under a key (`vcsp/<library id>/lib.json`), beside the blobs and never
    # among them (the garbage collector lists and deletes blobs only). A document replaces the one before under its
    # key at once: a reader never sees half of one. Used for the VCSP feeds persisted with `persist_json_enabled`.
    async def put_document(self, key: str, data: bytes) -> None: ...

    async def read_document(self, key: str) -> bytes | None:
        """The document under `key`, or None when there is none."""
        ...

    async def list_documents(self, prefix: str) -> list[str]:
        """The keys of every document under `prefix` (a folder: `vcsp/<library id>/`)."""
        ...

    async def delete_documents(self, keys: list[str]) -> None: ...

    async def copy_to_document(self, blob_id: str, key: str) -> None:
        """The blob's bytes also under the document key `key` (a hard link on disk where the filesystem allows
        it, a server-side copy on S3): a persisted feed's files."""
        ...

    def document_uri(self, key: str) -> str:
        """Where a document is, as a URI (`file:///...`, `s3://bucket/key`)."""
        ...

    async def ready(self) -> None:
        """A cheap call that raises when the storage cannot be used (`/readyz`): the blob directory is there and
        writable; the bucket answers."""
        ...

    async def close(self) -> None: ...


async def read_head(blobs: BlobStore, blob_id: str, limit: int) -> bytes:
    """At most `limit` bytes from the start of a blob (package metadata files are small)."""
    return b"".join([chunk async for chunk in blobs.read(blob_id, 0, limit)])


async def hash_blob(blobs: BlobStore, blob_id: str, algorithm: str) -> str:
    """A blob's digest, read back once (only for an algorithm the upload stream did not compute)."""
    from contentlib.transfer import run_blocking

    h = hashlib.new(algorithm)
    async for chunk in blobs.read(blob_id):
        await run_blocking(h.update, chunk)
    return h.hexdigest()
