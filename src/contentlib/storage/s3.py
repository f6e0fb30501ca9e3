"""The BlobStore on an S3-compatible object store, shared by every replica (`--blobs s3://bucket/prefix?...`).

Object layout: `<prefix>/blobs/<update session id>/<uuid>` (blob ids are "<session id>/<uuid>": a session's staged
objects share its prefix; `complete` points the item at them, nothing is copied). A blob is uploaded as a multipart
upload whose parts are the transfer's batches, streamed as they arrive (no temporary file, memory bounded by the
transfer's ring of batches); parts go up side by side (a part's number fixes its place, not the order it arrives
in). Nothing is visible under the key until the upload completes; an aborted upload leaves nothing.

The client is boto3, called from worker threads like every other blocking stage of the data plane: request signing
(a SHA-256 of each part over plain HTTP) then costs CPU there, not in the event loop that serves the API.
Credentials come from the standard AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...).
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

_READ = 1024 * 1024


class S3Sink:
    """Writes one blob as a multipart upload; parts may be sent concurrently (`ordered = False`)."""

    ordered = False

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.upload_id: str | None = None
        self.parts: dict[int, str] = {}
        self.lock = threading.Lock()

    def _upload_id(self) -> str:
        with self.lock:
            if self.upload_id is None:
                self.upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key)["UploadId"]
            return self.upload_id

    def write(self, buf: memoryview, n: int, index: int) -> None:
        number = index + 1  # S3 part numbers start at 1; batch `index` is part index+1 whenever it arrives
        response = self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id(), PartNumber=number, Body=bytes(buf[:n])
        )
        with self.lock:
            self.parts[number] = response["ETag"]

    def commit(self, size: int) -> None:
        if self.upload_id is None:  # an empty blob: nothing was written
            self.client.put_object(Bucket=self.bucket, Key=self.key, Body=b"")
            return
        parts = [{"PartNumber": n, "ETag": etag} for n, etag in sorted(self.parts.items())]
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": parts}
        )

    def abort(self) -> None:
        if self.upload_id is not None:
            with contextlib.suppress(ClientError):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)


class S3BlobStore:
    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"--blobs wants s3://bucket/prefix?endpoint=..., got {url!r}")
        query = dict(urllib.parse.parse_qsl(parsed.query))
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.endpoint = query.get("endpoint")
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=query.get("region") or None,
            config=Config(
                s3={"addressing_style": query.get("addressing", "path")},
                max_pool_connections=32,
                retries={"max_attempts": 5, "mode": "standard"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        self._ensure_bucket()

    def _ensure_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except ClientError as e:  # another replica made it meanwhile
                if e.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def _key(self, blob_id: str) -> str:
        return f"{self.prefix}/blobs/{blob_id}" if self.prefix else f"blobs/{blob_id}"

    def sink(self, blob_id: str) -> S3Sink:
        return S3Sink(self.client, self.bucket, self._key(blob_id))

    def size(self, blob_id: str) -> int:
        return int(self.client.head_object(Bucket=self.bucket, Key=self._key(blob_id))["ContentLength"])

    def read(self, blob_id: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        if end is not None and end <= start:
            return
        extra = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(blob_id), **extra)["Body"]
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "InvalidRange":  # starts at or past the end: nothing
                return
            raise
        try:
            yield from body.iter_chunks(_READ)
        finally:
            body.close()

    def local_path(self, blob_id: str) -> Path | None:
        return None

    def direct_uri(self, blob_id: str) -> str:
        return f"s3://{self.bucket}/{self._key(blob_id)}"

    def delete_all(self, blob_ids: list[str]) -> None:
        for start in range(0, len(blob_ids), 1000):
            keys = [{"Key": self._key(b)} for b in blob_ids[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})

    def _listing(self) -> Iterator[dict[str, Any]]:
        prefix = self._key("")
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    def list_ids(self) -> list[str]:
        prefix = self._key("")
        return [o["Key"][len(prefix) :] for o in self._listing()]

    def delete_orphans(self, candidates: list[str], grace: float) -> int:
        wanted = set(candidates)
        prefix = self._key("")
        now = time.time()
        doomed = [
            o["Key"][len(prefix) :]
            for o in self._listing()
            if o["Key"][len(prefix) :] in wanted and (not grace or now - o["LastModified"].timestamp() >= grace)
        ]
        self.delete_all(doomed)
        # Multipart uploads that a dead replica left open hold storage too: abort the old ones.
        for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                blob_id = upload["Key"][len(prefix) :]
                if blob_id in wanted and now - upload["Initiated"].timestamp() >= max(grace, 3600):
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
        return len(doomed)
