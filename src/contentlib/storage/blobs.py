"""The BlobStore protocol: where file bytes live (local disk, or an S3 bucket shared by replicas).

A blob is written once under a fresh id and never modified; whether anybody sees it is decided by the metadata
alone (update-session rows point at staged blobs, `complete` moves the pointers into the item's rows in one
transaction). So publishing copies nothing, and blobs nothing points at any more are deleted by the garbage
collector. Every method blocks: callers run them in worker threads (`transfer.run_blocking`), never in the event
loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from contentlib.transfer import Sink


class BlobStore(Protocol):
    def sink(self, blob_id: str) -> Sink:
        """Where a new blob's bytes go (see transfer.Sink); nothing is visible under `blob_id` before commit."""
        ...

    def size(self, blob_id: str) -> int: ...

    def read(self, blob_id: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes [start, end) of a blob, in chunks."""
        ...

    def local_path(self, blob_id: str) -> Path | None:
        """A path on this machine holding the blob (downloads then use sendfile), or None."""
        ...

    def direct_uri(self, blob_id: str) -> str:
        """Where the blob sits on its storage (a DIRECT download endpoint)."""
        ...

    def delete_all(self, blob_ids: list[str]) -> None: ...

    def list_ids(self) -> list[str]: ...

    def delete_orphans(self, candidates: list[str], grace: float) -> int:
        """Delete the candidates not written within the last `grace` seconds; how many went."""
        ...


def read_head(blobs: BlobStore, blob_id: str, limit: int) -> bytes:
    """At most `limit` bytes from the start of a blob (package metadata files are small)."""
    return b"".join(blobs.read(blob_id, 0, limit))


def hash_blob(blobs: BlobStore, blob_id: str, algorithm: str) -> str:
    import hashlib

    h = hashlib.new(algorithm)
    for chunk in blobs.read(blob_id):
        h.update(chunk)
    return h.hexdigest()
