"""The BlobStore on a local filesystem.

On-disk layout under the data dir:

    blobs/
      <update session id>/<uuid>     one file's bytes, staged by that session (blob id "<session id>/<uuid>")
    vcsp/<library id>/                the documents of a feed persisted with `persist_json_enabled`: lib.json,
                                      items.json, <item id>/item.json (written whole: a temporary file renamed),
                                      and the items' files (hard links to their blobs)

A blob is written once, under a fresh id, and never modified. Whether anybody sees it is decided by the metadata
alone: an update session's file row points at its staged blob, and `complete` moves that pointer into the item's
file rows in one transaction. So publishing copies and renames nothing, and a crash at any instant leaves each item
at its old or its new version. Blobs that nothing points at any more (replaced, removed, canceled, or written by a
request that died) are deleted by the garbage collector (`app.collect_garbage`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

from contentlib.transfer import run_blocking

ALIGN = 4096
_TMP = ".contentlib-tmp"  # a document being written (renamed over its key once whole)
_READ = 1024 * 1024
_O_DIRECT = getattr(os, "O_DIRECT", 0)


class FileSink:
    """Writes one new blob: called from worker threads, one call at a time, in order.

    Writes bypass the page cache with O_DIRECT when the filesystem allows it (on this kind of VM buffered writes
    into fresh page-cache memory are 2x slower and all kernel time; research/stack.md §0); `buf` is a page-aligned
    buffer, and the final partial batch is padded to the block size and then truncated back.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        self.direct = bool(_O_DIRECT)
        try:
            self.fd = os.open(path, flags | _O_DIRECT, 0o640)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            self.direct = False
            self.fd = os.open(path, flags, 0o640)

    ordered = True  # batches are appended: each after the one before

    async def write(self, buf: memoryview, n: int, index: int) -> None:
        await run_blocking(self._write, buf, n)

    async def commit(self, size: int) -> None:
        await run_blocking(self._commit, size)

    async def abort(self) -> None:
        await run_blocking(self._abort)

    def _write(self, buf: memoryview, n: int) -> None:
        end = n
        if self.direct and n % ALIGN:
            end = n + ALIGN - n % ALIGN  # the caller's buffer is a whole number of blocks long
        off = 0
        while off < end:
            off += os.write(self.fd, buf[off:end])

    def _commit(self, size: int) -> None:
        if self.direct:
            os.ftruncate(self.fd, size)
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.path.unlink(missing_ok=True)


class FileBlobStore:
    """The BlobStore on a local (or shared) filesystem."""

    def __init__(self, root: Path, documents: Path | None = None) -> None:
        self.root = root
        self.documents = documents or root.parent  # the data dir: the documents are never among the blobs
        root.mkdir(parents=True, exist_ok=True)

    def path(self, blob_id: str) -> Path:
        if ".." in blob_id.split("/") or blob_id.startswith("/"):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return self.root / blob_id

    def sink(self, blob_id: str) -> FileSink:
        return FileSink(self.path(blob_id))

    async def size(self, blob_id: str) -> int:
        return int(await run_blocking(lambda: self.path(blob_id).stat().st_size))

    async def read(self, blob_id: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        f = await run_blocking(open, self.path(blob_id), "rb")
        try:
            await run_blocking(f.seek, start)
            left = None if end is None else end - start
            while left is None or left > 0:
                chunk: bytes = await run_blocking(f.read, _READ if left is None else min(_READ, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            f.close()

    def local_path(self, blob_id: str) -> Path | None:
        return self.path(blob_id)

    def direct_uri(self, blob_id: str) -> str:
        return self.path(blob_id).resolve().as_uri()

    def _delete(self, blob_id: str) -> None:
        path = self.path(blob_id)
        path.unlink(missing_ok=True)
        if path.parent != self.root:
            with contextlib.suppress(OSError):  # the session's folder, once it is empty
                path.parent.rmdir()

    async def delete_all(self, blob_ids: list[str]) -> None:
        def delete_them() -> None:
            for blob_id in blob_ids:
                with contextlib.suppress(OSError):
                    self._delete(blob_id)

        await run_blocking(delete_them)

    async def list_ids(self) -> list[str]:
        def listing() -> list[str]:
            return [f.relative_to(self.root).as_posix() for f in self.root.rglob("*") if f.is_file()]

        return list(await run_blocking(listing))

    async def delete_orphans(self, candidates: list[str], grace: float) -> int:
        def delete_them() -> int:
            removed = 0
            now = time.time()
            for blob_id in candidates:
                path = self.path(blob_id)
                with contextlib.suppress(OSError):  # gone already: not counted
                    if now - path.stat().st_mtime < grace:
                        continue
                    self._delete(blob_id)
                    removed += 1
            return removed

        return int(await run_blocking(delete_them))

    async def ready(self) -> None:
        def check() -> None:
            if not self.root.is_dir():
                raise FileNotFoundError(f"{self.root} is not a directory")
            if not os.access(self.root, os.W_OK | os.X_OK):
                raise PermissionError(f"{self.root} is not writable")

        await run_blocking(check)

    def location(self) -> str:
        return self.root.resolve().as_uri() + "/"

    async def space(self) -> tuple[int, int] | None:
        """The filesystem's size and the bytes an unprivileged writer may still use (statvfs)."""
        st = await run_blocking(os.statvfs, self.root)
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize

    def document_path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or parts[0] == "blobs":
            raise ValueError(f"not a document key: {key!r}")
        return self.documents / key

    def document_uri(self, key: str) -> str:
        return self.document_path(key).resolve().as_uri()

    async def put_document(self, key: str, data: bytes) -> None:
        def write() -> None:
            path = self.document_path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}{_TMP}")
            tmp.write_bytes(data)
            os.replace(tmp, path)

        await run_blocking(write)

    async def copy_to_document(self, blob_id: str, key: str) -> None:
        def link() -> None:
            path = self.document_path(key)
            with contextlib.suppress(OSError):
                if os.path.samefile(self.path(blob_id), path):
                    return  # that blob already (a rename over a link of the same file would do nothing)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}{_TMP}")
            tmp.unlink(missing_ok=True)
            try:  # the same bytes, no copy (blobs are never modified); they stay while either name does
                os.link(self.path(blob_id), tmp)
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                shutil.copyfile(self.path(blob_id), tmp)
            os.replace(tmp, path)

        await run_blocking(link)

    async def read_document(self, key: str) -> bytes | None:
        def read() -> bytes | None:
            try:
                return self.document_path(key).read_bytes()
            except FileNotFoundError:
                return None

        data: bytes | None = await run_blocking(read)
        return data

    async def list_documents(self, prefix: str) -> list[str]:
        def listing() -> list[str]:
            top = self.document_path(prefix.rstrip("/"))
            if not top.is_dir():
                return []
            return sorted(
                f.relative_to(self.documents).as_posix()
                for f in top.rglob("*")
                if f.is_file() and not f.name.endswith(_TMP)
            )

        return list(await run_blocking(listing))

    async def delete_documents(self, keys: list[str]) -> None:
        def delete_them() -> None:
            for key in keys:
                path = self.document_path(key)
                path.unlink(missing_ok=True)
                for folder in path.parents:  # folders left empty, up to the top one (`vcsp`)
                    if folder == self.documents or folder.parent == self.documents:
                        break
                    with contextlib.suppress(OSError):
                        folder.rmdir()

        await run_blocking(delete_them)

    async def close(self) -> None:
        pass
