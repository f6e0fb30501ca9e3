"""`item pull`: a download session; each file prepared, fetched into `DIR/name.part`, resumed with a Range request
(If-Range: the ETag the server gave) when the connection breaks, checked against its `checksum_info`, then renamed.
The download session is deleted at the end, on failure and on Ctrl-C too."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp

from contentlib.client.common import Interrupted
from contentlib.client.http import TRANSFER, Client, CliError, api_error
from contentlib.client.keepalive import kept_alive
from contentlib.client.output import warn
from contentlib.client.progress import Transfers

DS = "/api/content/library/item/download-session"
_CHUNK = 1 << 20
_PREPARE_SECONDS = 3600.0


def _safe(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
        raise CliError(f"The server names a file {name!r}, which is not a plain file name.", TRANSFER)
    return name


async def _prepared(api: Client, ds: str, name: str) -> dict[str, Any]:
    info: dict[str, Any] = await api.post(f"{DS}/{ds}/file", {"file_name": name}, action="prepare")
    deadline = time.monotonic() + _PREPARE_SECONDS
    while info.get("status") != "PREPARED":
        if info.get("status") == "ERROR" or time.monotonic() > deadline:
            reason = (info.get("error_message") or {}).get("default_message") or info.get("status")
            raise CliError(f"The server could not prepare {name} for download: {reason}", TRANSFER)
        await asyncio.sleep(0.2)
        info = await api.get(f"{DS}/{ds}/file", {"file_name": name})
    return info


def _digest(info: dict[str, Any]) -> tuple[Any, str] | None:
    checksum = info.get("checksum_info")
    if not checksum or not checksum.get("checksum"):
        return None
    algorithm = str(checksum.get("algorithm") or "SHA1").lower().replace("-", "")
    try:
        return hashlib.new(algorithm), str(checksum["checksum"]).lower()
    except ValueError:
        raise CliError(f"The server gives a {checksum.get('algorithm')} checksum, which cannot be checked.") from None


class _Download:
    """One file's bytes into its `.part`, over as many requests as the cuts need."""

    def __init__(self, api: Client, info: dict[str, Any], fh: BinaryIO, progress: Transfers, key: int) -> None:
        self.api, self.info, self.fh, self.progress, self.key = api, info, fh, progress, key
        self.name = str(info["name"])
        self.size: int | None = info.get("size")
        self.digest = _digest(info)
        self.received = 0
        self.etag: str | None = None

    def _restart(self) -> None:
        self.fh.seek(0)
        self.fh.truncate()
        self.received = 0
        self.digest = _digest(self.info)
        self.progress.restart(self.key)

    async def attempt(self) -> bool:
        """One request; whether the file is now whole. A broken connection raises aiohttp/OS errors."""
        headers = self.api.headers()
        if self.received:
            headers["Range"] = f"bytes={self.received}-"
            if self.etag:
                headers["If-Range"] = self.etag
        uri = self.info["download_endpoint"]["uri"]
        async with self.api.http.get(uri, headers=headers, ssl=self.api.ssl) as resp:
            if resp.status >= 400:
                failure = api_error(resp.status, await resp.read(), f"GET {self.name}")
                raise CliError(f"The download of {self.name} failed: {failure.message}", TRANSFER)
            partial = resp.status == 206 and resp.headers.get("Content-Range", "").startswith(f"bytes {self.received}-")
            if self.received and not partial:
                self._restart()  # the server sends the whole file (it changed, or serves no ranges)
            self.etag = resp.headers.get("ETag") or self.etag
            async for chunk in resp.content.iter_chunked(_CHUNK):
                self.fh.write(chunk)
                if self.digest:
                    self.digest[0].update(chunk)
                self.received += len(chunk)
                self.progress.advance(self.key, len(chunk))
        return self.size is None or self.received >= self.size

    def verify(self) -> None:
        if self.size is not None and self.received != self.size:
            raise CliError(f"{self.name}: received {self.received} bytes, the server announced {self.size}.", TRANSFER)
        if self.digest and self.digest[0].hexdigest() != self.digest[1]:
            raise CliError(
                f"{self.name}: checksum mismatch ({self.digest[0].name} {self.digest[0].hexdigest()}, the server "
                f"gives {self.digest[1]}).",
                TRANSFER,
            )


async def _fetch(api: Client, info: dict[str, Any], directory: Path, retries: int, progress: Transfers) -> None:
    name = _safe(str(info["name"]))
    part = directory / f"{name}.part"
    key = progress.start(name, info.get("size"))
    try:
        with part.open("wb") as fh:
            download = _Download(api, info, fh, progress, key)
            for attempt in range(retries + 1):
                try:
                    if await download.attempt():
                        break
                    problem = f"the connection ended after {download.received} bytes"
                except (aiohttp.ClientError, OSError, TimeoutError) as e:
                    problem = f"{e.__class__.__name__}: {e}" if str(e) else e.__class__.__name__
                if attempt == retries:
                    raise CliError(f"The download of {name} failed {retries + 1} times ({problem}).", TRANSFER)
                progress.note(f"{name}: {problem}; resuming at byte {download.received} ({attempt + 1}/{retries}).")
            download.verify()
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    progress.done(key)


async def pull(
    api: Client, item: dict[str, Any], directory: Path, retries: int, to_stderr: bool
) -> list[dict[str, Any]]:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CliError(f"Cannot create {directory}: {e.strerror}") from None
    ds = str(await api.post(DS, {"library_item_id": item["id"]}))
    done: list[dict[str, Any]] = []
    try:
        files = await api.get(f"{DS}/{ds}/file")
        total = sum(int(f.get("size") or 0) for f in files)
        with Transfers(to_stderr) as progress:
            async with kept_alive(api, f"{DS}/{ds}", lambda: {"progress": progress.percent(total)}):
                for f in files:
                    info = await _prepared(api, ds, _safe(str(f["name"])))
                    await _fetch(api, info, directory, retries, progress)
                    done.append({k: info.get(k) for k in ("name", "size", "checksum_info")})
    except (asyncio.CancelledError, KeyboardInterrupt):
        await _end(api, ds)
        raise Interrupted(f"Interrupted: the download session {ds} was deleted.") from None
    except BaseException:
        await _end(api, ds)
        raise
    await _end(api, ds)
    return done


async def _end(api: Client, ds: str) -> None:
    try:
        await api.delete(f"{DS}/{ds}")
    except CliError as e:
        warn(f"Could not delete the download session {ds}: {e.message}")
