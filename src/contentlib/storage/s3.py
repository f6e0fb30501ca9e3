"""The BlobStore on an S3-compatible object store, shared by every replica (`--blobs s3://bucket/prefix?...`).

Object layout: `<prefix>/blobs/<update session id>/<uuid>` (blob ids are "<session id>/<uuid>": a session's staged
objects share its prefix; `complete` points the item at them, nothing is copied), and documents beside them:
`<prefix>/vcsp/<library id>/lib.json` and the rest of a feed persisted with `persist_json_enabled` (its files are
server-side copies of their blobs).

A blob is uploaded as a multipart upload whose parts are the transfer's batches, streamed as they arrive (no
temporary file, memory bounded by the transfer's ring of batches); parts go up side by side (a part's number fixes
its place, not the order it arrives in). Nothing is visible under the key until the upload completes; an aborted
upload leaves nothing.

The client is aiobotocore (asyncio): requests wait without blocking the event loop. One cost stays in the loop:
over a plain-HTTP endpoint SigV4 signs each part's SHA-256 (about 4 ms per 8 MiB part here); an HTTPS endpoint
sends parts unsigned-payload and avoids it. Credentials come from the standard AWS variables (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

_READ = 1024 * 1024
_COPY_PART = 1024**3  # a blob copied into a persisted feed: parts of 1 GiB beyond that (S3 allows 5 GiB per part)


class S3Sink:
    """Writes one blob as a multipart upload; parts may be sent concurrently (`ordered = False`)."""

    ordered = False

    def __init__(self, store: S3BlobStore, key: str) -> None:
        self.store = store
        self.key = key
        self.upload_id: str | None = None
        self.parts: dict[int, str] = {}
        self.lock = asyncio.Lock()

    async def _upload_id(self) -> str:
        async with self.lock:
            if self.upload_id is None:
                response = await self.store.client.create_multipart_upload(Bucket=self.store.bucket, Key=self.key)
                self.upload_id = str(response["UploadId"])
            return self.upload_id

    async def write(self, buf: memoryview, n: int, index: int) -> None:
        response = await self.store.client.upload_part(
            Bucket=self.store.bucket,
            Key=self.key,
            UploadId=await self._upload_id(),
            PartNumber=index + 1,  # S3 part numbers start at 1; batch `index` is part index+1 whenever it arrives
            Body=bytes(buf[:n]),
        )
        self.parts[index + 1] = response["ETag"]

    async def commit(self, size: int) -> None:
        if self.upload_id is None:  # an empty blob: nothing was written
            await self.store.client.put_object(Bucket=self.store.bucket, Key=self.key, Body=b"")
            return
        parts = [{"PartNumber": n, "ETag": etag} for n, etag in sorted(self.parts.items())]
        await self.store.client.complete_multipart_upload(
            Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": parts}
        )

    async def abort(self) -> None:
        if self.upload_id is not None:
            with contextlib.suppress(ClientError):
                await self.store.client.abort_multipart_upload(
                    Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id
                )


class S3BlobStore:
    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"--blobs wants s3://bucket/prefix?endpoint=..., got {url!r}")
        self.query = dict(urllib.parse.parse_qsl(parsed.query))
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.client: Any = None
        self._exit: contextlib.AsyncExitStack | None = None

    @classmethod
    async def open(cls, url: str) -> S3BlobStore:
        store = cls(url)
        config = AioConfig(
            s3={"addressing_style": store.query.get("addressing", "path")},
            max_pool_connections=32,
            retries={"max_attempts": 5, "mode": "standard"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        store._exit = contextlib.AsyncExitStack()
        store.client = await store._exit.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=store.query.get("endpoint"),
                region_name=store.query.get("region") or None,
                config=config,
            )
        )
        try:
            await store._ensure_bucket()
        except BaseException:
            await store.close()  # no "Unclosed client session" when the endpoint is not there
            raise
        return store

    async def close(self) -> None:
        if self._exit is not None:
            await self._exit.aclose()

    async def _ensure_bucket(self) -> None:
        try:
            await self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            try:
                await self.client.create_bucket(Bucket=self.bucket)
            except ClientError as e:  # another replica made it meanwhile
                if e.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    async def ready(self) -> None:
        await self.client.head_bucket(Bucket=self.bucket)

    def _key(self, blob_id: str) -> str:
        return f"{self.prefix}/blobs/{blob_id}" if self.prefix else f"blobs/{blob_id}"

    def sink(self, blob_id: str) -> S3Sink:
        return S3Sink(self, self._key(blob_id))

    async def size(self, blob_id: str) -> int:
        return int((await self.client.head_object(Bucket=self.bucket, Key=self._key(blob_id)))["ContentLength"])

    async def read(self, blob_id: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if end is not None and end <= start:
            return
        extra = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            response = await self.client.get_object(Bucket=self.bucket, Key=self._key(blob_id), **extra)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "InvalidRange":  # starts at or past the end: nothing
                return
            raise
        async with response["Body"] as body:
            while chunk := await body.read(_READ):
                yield chunk

    def local_path(self, blob_id: str) -> Path | None:
        return None

    def location(self) -> str:
        return f"s3://{self.bucket}/{self._key('')}"

    async def space(self) -> tuple[int, int] | None:
        return None  # a bucket has no capacity, and S3 reports none

    def _document_key(self, key: str) -> str:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or parts[0] == "blobs":
            raise ValueError(f"not a document key: {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def document_uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._document_key(key)}"

    async def put_document(self, key: str, data: bytes) -> None:
        content_type = "application/json" if key.endswith(".json") else "application/octet-stream"
        await self.client.put_object(
            Bucket=self.bucket, Key=self._document_key(key), Body=data, ContentType=content_type
        )

    async def read_document(self, key: str) -> bytes | None:
        try:
            response = await self.client.get_object(Bucket=self.bucket, Key=self._document_key(key))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        async with response["Body"] as body:
            return bytes(await body.read())

    async def list_documents(self, prefix: str) -> list[str]:
        top = self._document_key(prefix.rstrip("/")) + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        keys = []
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=top):
            keys += [entry["Key"][strip:] for entry in page.get("Contents", [])]
        return sorted(keys)

    async def delete_documents(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            objects = [{"Key": self._document_key(k)} for k in keys[start : start + 1000]]
            await self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})

    async def copy_to_document(self, blob_id: str, key: str) -> None:
        source = {"Bucket": self.bucket, "Key": self._key(blob_id)}
        target = self._document_key(key)
        size = await self.size(blob_id)
        if size <= _COPY_PART:  # one CopyObject (S3 copies up to 5 GiB in one request)
            await self.client.copy_object(Bucket=self.bucket, Key=target, CopySource=source)
            return
        upload = (await self.client.create_multipart_upload(Bucket=self.bucket, Key=target))["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, size, _COPY_PART), 1):
                end = min(start + _COPY_PART, size) - 1
                response = await self.client.upload_part_copy(
                    Bucket=self.bucket,
                    Key=target,
                    UploadId=upload,
                    PartNumber=number,
                    CopySource=source,
                    CopySourceRange=f"bytes={start}-{end}",
                )
                parts.append({"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]})
            await self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=target, UploadId=upload, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(ClientError):
                await self.client.abort_multipart_upload(Bucket=self.bucket, Key=target, UploadId=upload)
            raise

    def direct_uri(self, blob_id: str) -> str:
        return f"s3://{self.bucket}/{self._key(blob_id)}"

    async def delete_all(self, blob_ids: list[str]) -> None:
        for start in range(0, len(blob_ids), 1000):
            keys = [{"Key": self._key(b)} for b in blob_ids[start : start + 1000]]
            await self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})

    async def _listing(self) -> AsyncIterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key("")):
            for entry in page.get("Contents", []):
                yield entry

    async def _open_uploads(self) -> AsyncIterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_multipart_uploads")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key("")):
            for upload in page.get("Uploads", []):
                yield upload

    async def list_ids(self) -> list[str]:
        """Every blob that holds storage: the objects, and the multipart uploads still open (a blob being written,
        or left half-written by a replica that died: its parts are stored, though no object shows them yet)."""
        prefix = self._key("")
        ids = [o["Key"][len(prefix) :] async for o in self._listing()]
        ids += [u["Key"][len(prefix) :] async for u in self._open_uploads()]
        return list(dict.fromkeys(ids))

    async def delete_orphans(self, candidates: list[str], grace: float) -> int:
        wanted = set(candidates)
        prefix = self._key("")
        now = time.time()
        doomed = [
            o["Key"][len(prefix) :]
            async for o in self._listing()
            if o["Key"][len(prefix) :] in wanted and (not grace or now - o["LastModified"].timestamp() >= grace)
        ]
        await self.delete_all(doomed)
        # A candidate's open multipart upload holds its parts: abort it (nothing references the blob, so its writer
        # is gone or will fail anyway).
        aborted: set[str] = set()
        async for upload in self._open_uploads():
            blob_id = upload["Key"][len(prefix) :]
            if blob_id in wanted and (not grace or now - upload["Initiated"].timestamp() >= grace):
                with contextlib.suppress(ClientError):  # its writer aborted it meanwhile
                    await self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                aborted.add(blob_id)
        return len(set(doomed) | aborted)
