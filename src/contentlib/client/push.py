"""`item push`: one update session that uploads a file, an OVF folder or an OVA, or has the server fetch a URL.

Each pushed file is declared with its size and SHA-256 (`checksum_info`; not for an OVA, which the vendor says must
not carry one: the server verifies its members against the manifest inside) and streamed from disk with PUT to its
`upload_endpoint.uri`. A cut connection leaves the file in ERROR on the server (services/update_transfers.py); the
contract lets the client send it again, so the file is PUT again from its first byte, up to `--retries` times. What
cannot be finished — a file that keeps failing, a package that does not validate, warnings not ignored, Ctrl-C —
cancels the session, so the item keeps the content it had (an item this push created is deleted again). The item's
files that the push does not bring are removed in the same session (unless `--keep`): it then holds what was
pushed, not an older OVF's disks beside the new ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from contentlib.client import common
from contentlib.client.common import ITEM, Interrupted
from contentlib.client.http import CONFLICT, TRANSFER, USAGE, Client, CliError, api_error
from contentlib.client.keepalive import kept_alive
from contentlib.client.output import warn
from contentlib.client.progress import Transfers
from contentlib.services import ovf

US = "/api/content/library/item/update-session"
_CHUNK = 1 << 20
_SETTLE_SECONDS = 60.0  # how long a cut upload may stay TRANSFERRING on the server before it is sent again
_URL_SCHEMES = ("http://", "https://", "ds://", "file://")


@dataclass(frozen=True)
class PushOptions:
    source: str
    name: str | None = None
    item_type: str | None = None
    description: str | None = None
    ignore_warnings: bool = False
    retries: int = 3
    as_json: bool = False
    keep: bool = False  # keep the item's files this push does not bring


@dataclass(frozen=True)
class Upload:
    name: str
    path: Path | None = None  # PUSH: the bytes on disk
    url: str | None = None  # PULL: the server fetches them
    size: int | None = None
    sha256: str | None = None


async def _sha256(path: Path, progress: Transfers) -> str:
    """The file's SHA-256, a chunk at a time on the event loop (Ctrl-C stops it between two chunks)."""
    digest = hashlib.sha256()
    key = progress.start(f"{path.name} (SHA-256)", path.stat().st_size)
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
            progress.advance(key, len(block))
            await asyncio.sleep(0)
    progress.done(key)
    return digest.hexdigest()


async def checksums(files: list[Upload], to_stderr: bool) -> list[Upload]:
    """The files with the SHA-256 they are declared with (not an OVA's; a bar per file on a terminal)."""
    with Transfers(to_stderr, lines=False) as progress:
        return [
            dataclasses.replace(f, sha256=await _sha256(f.path, progress))
            if f.path is not None and ovf.kind_of(f.name) != "ova"
            else f
            for f in files
        ]


def _local(path: Path) -> Upload:
    return Upload(path.name, path, None, path.stat().st_size)


def _type_of(name: str) -> str | None:
    kind = ovf.kind_of(name)
    if kind in ("descriptor", "ova"):
        return "ovf"
    return "iso" if name.lower().endswith(".iso") else None


def _ovf_folder(descriptor: Path) -> list[Upload]:
    """The .mf and .cert of the descriptor (before it: the server wants them first), the .ovf, its references."""
    try:
        refs = ovf.parse_descriptor(descriptor.read_bytes())["references"]
    except ovf.PackageError as e:
        raise CliError(f"{descriptor}: {e}", USAGE) from None
    folder = descriptor.parent
    names = [f"{descriptor.stem}.mf", f"{descriptor.stem}.cert"]
    files = [_local(folder / n) for n in names if (folder / n).is_file()]
    files.append(_local(descriptor))
    for href in refs:
        if not (folder / href).is_file():
            raise CliError(f"{descriptor.name} references {href}, which is not in {folder}.", USAGE)
        files.append(_local(folder / href))
    return files


def plan(source: str) -> tuple[str, str | None, list[Upload]]:
    """The item name a source suggests, the type of a new item, and the files to add."""
    if source.startswith(_URL_SCHEMES):
        base = urllib.parse.unquote(urllib.parse.urlsplit(source).path.rstrip("/").rsplit("/", 1)[-1])
        if not base:
            raise CliError(f"The URL {source} names no file.", USAGE)
        return Path(base).stem, _type_of(base), [Upload(base, url=source)]
    path = Path(source)
    if path.is_dir():
        descriptors = sorted(path.glob("*.ovf"))
        if len(descriptors) != 1:
            raise CliError(f"{path} holds {len(descriptors)} .ovf descriptors, not one.", USAGE)
        return descriptors[0].stem, "ovf", _ovf_folder(descriptors[0])
    if not path.is_file():
        raise CliError(f"{source} is neither a file, a folder nor a URL.", USAGE)
    kind = ovf.kind_of(path.name)
    if kind == "descriptor":
        return path.stem, "ovf", _ovf_folder(path)
    return path.stem, _type_of(path.name), [_local(path)]


class _Cut(Exception):
    """The connection broke during an upload."""


async def _put(api: Client, uri: str, f: Upload, progress: Transfers, key: int) -> None:
    assert f.path is not None and f.size is not None
    path = f.path

    async def chunks() -> AsyncIterator[bytes]:
        with path.open("rb") as fh:
            while block := fh.read(_CHUNK):
                yield block
                progress.advance(key, len(block))

    headers = {**api.headers(), "Content-Length": str(f.size), "Content-Type": "application/octet-stream"}
    try:
        async with api.http.put(uri, data=chunks(), headers=headers, ssl=api.ssl) as resp:
            body = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        raise _Cut(f"{e.__class__.__name__}: {e}" if str(e) else e.__class__.__name__) from None
    if status in (502, 503, 504):  # a proxy or balancer in between lost the server: as good as a cut
        raise _Cut(f"HTTP {status}")
    if status >= 400:
        failure = api_error(status, body, f"PUT {f.name}")
        raise CliError(f"The upload of {f.name} failed: {failure.message}", TRANSFER)


async def _file(api: Client, sid: str, name: str) -> dict[str, Any]:
    info: dict[str, Any] = await api.get(f"{US}/{sid}/file/{urllib.parse.quote(name, safe='')}")
    return info


async def _settled(api: Client, sid: str, name: str) -> dict[str, Any]:
    """The file's info once the server has stopped receiving it."""
    deadline = time.monotonic() + _SETTLE_SECONDS
    while True:
        info = await _file(api, sid, name)
        if info.get("status") != "TRANSFERRING" or time.monotonic() > deadline:
            return info
        await asyncio.sleep(0.2)


async def _push_file(api: Client, sid: str, f: Upload, progress: Transfers, retries: int) -> None:
    spec: dict[str, Any] = {"name": f.name, "source_type": "PUSH", "size": f.size}
    if f.sha256:
        spec["checksum_info"] = {"algorithm": "SHA256", "checksum": f.sha256}
    info = await api.post(f"{US}/{sid}/file", spec)
    uri = info["upload_endpoint"]["uri"]
    key = progress.start(f.name, f.size)
    for attempt in range(retries + 1):
        try:
            await _put(api, uri, f, progress, key)
            break
        except _Cut as cut:
            try:
                state = await _settled(api, sid, f.name)
            except CliError as e:  # the server cannot be asked either (restarting?): wait, then send it again
                state = {"status": None, "why": e.message}
            if state.get("status") == "READY":  # every byte arrived; only the answer was lost
                break
            if attempt == retries:
                raise CliError(
                    f"The upload of {f.name} was cut {retries + 1} times ({cut}); the update session was canceled.",
                    TRANSFER,
                ) from None
            progress.note(f"{f.name}: the upload was cut ({cut}); sending it again ({attempt + 1}/{retries}).")
            await asyncio.sleep(min(0.5 * 2**attempt, 8.0))
            progress.restart(key)
    progress.done(key)


async def _pull_file(api: Client, sid: str, f: Upload, progress: Transfers) -> None:
    info = await api.post(
        f"{US}/{sid}/file", {"name": f.name, "source_type": "PULL", "source_endpoint": {"uri": f.url}}
    )
    key = progress.start(f.name, info.get("size"))
    while info.get("status") not in ("READY", "ERROR"):
        await asyncio.sleep(0.2)
        info = await _file(api, sid, f.name)
        progress.set(key, int(info.get("bytes_transferred") or 0), info.get("size"))
    if info["status"] == "ERROR":
        reason = (info.get("error_message") or {}).get("default_message") or "the server could not fetch it"
        raise CliError(f"The server's fetch of {f.url} failed: {reason}", TRANSFER)
    progress.set(key, int(info.get("size") or 0))
    progress.done(key, "(fetched by the server)")


async def _send_all(api: Client, sid: str, files: list[Upload], progress: Transfers, retries: int) -> None:
    for f in files:
        if f.url is not None:
            await _pull_file(api, sid, f, progress)
        else:
            await _push_file(api, sid, f, progress, retries)


async def _remove_others(api: Client, sid: str) -> list[str]:
    """Remove from the session the item's files it does not add (source_type NONE: left as they are), so that the
    item holds what was pushed and no stale disk of an older OVF."""
    files: list[dict[str, Any]] = await api.get(f"{US}/{sid}/file")
    stale = sorted(str(f["name"]) for f in files if f.get("source_type") == "NONE")
    for name in stale:
        await api.delete(f"{US}/{sid}/file/{urllib.parse.quote(name, safe='')}")
    return stale


async def _check(api: Client, sid: str, ignore_warnings: bool) -> list[dict[str, Any]]:
    """Validate the session's package and decide its preview warnings; the warnings."""
    result = await api.post(f"{US}/{sid}/file", action="validate")
    if result.get("has_errors"):
        missing, invalid = result.get("missing_files") or [], result.get("invalid_files") or []
        problems = [f"missing {', '.join(missing)}"] if missing else []
        for bad in invalid:
            text = (bad.get("error_message") or {}).get("default_message", "invalid")
            problems.append(f"{bad.get('name')}: {text}")
        raise CliError(f"The package does not validate: {'; '.join(problems)}.", TRANSFER)
    session = await api.get(f"{US}/{sid}")
    warnings: list[dict[str, Any]] = (session.get("preview_info") or {}).get("warnings") or []
    for w in warnings:
        warn(f"warning: {w.get('type')}: {(w.get('message') or {}).get('default_message', '')}")
    blocked = sorted({str(w["type"]) for w in warnings if not w.get("ignored")})
    if blocked and not ignore_warnings:
        raise CliError(
            f"The OVF raises warnings ({', '.join(blocked)}): push with --ignore-warnings to accept them.", CONFLICT
        )
    if blocked:
        await api.patch(f"{US}/{sid}", {"warning_behavior": [{"type": t, "ignored": True} for t in blocked]})
    return warnings


async def _wait_done(api: Client, sid: str) -> dict[str, Any]:
    while True:
        session: dict[str, Any] = await api.get(f"{US}/{sid}")
        if session.get("state") == "DONE":
            return session
        if session.get("state") in ("ERROR", "CANCELED"):
            reason = (session.get("error_message") or {}).get("default_message") or session["state"]
            raise CliError(f"The update session ended in {session['state']}: {reason}", TRANSFER)
        await asyncio.sleep(0.2)


async def _abandon(api: Client, sid: str, created_item: str | None) -> None:
    """Cancel the session (the item keeps its content); delete the item this push created."""
    try:
        await api.post(f"{US}/{sid}", action="cancel")
    except CliError as e:
        warn(f"Could not cancel the update session {sid}: {e.message}")
    if created_item is not None:
        try:
            await api.delete(f"{ITEM}/{created_item}")
        except CliError as e:
            warn(f"Could not delete the new item {created_item}: {e.message}")


async def push(api: Client, lib_ref: str, options: PushOptions) -> dict[str, Any]:
    lib = await common.library(api, lib_ref)
    suggested, inferred, files = plan(options.source)
    files = await checksums(files, options.as_json)
    name = options.name or suggested
    item_id = await common.find_item(api, lib["id"], name)
    created = None
    if item_id is None:
        spec: dict[str, Any] = {"library_id": lib["id"], "name": name}
        if options.item_type or inferred:
            spec["type"] = options.item_type or inferred
        if options.description is not None:
            spec["description"] = options.description
        item_id = created = str(await api.post(ITEM, spec))
    sid = str(await api.post(US, {"library_item_id": item_id}))
    try:
        total = sum(f.size or 0 for f in files)
        with Transfers(to_stderr=options.as_json) as progress:
            alive = kept_alive(api, f"{US}/{sid}", lambda: {"client_progress": progress.percent(total)})
            async with alive:
                await _send_all(api, sid, files, progress, options.retries)
        removed = [] if options.keep else await _remove_others(api, sid)
        warnings = await _check(api, sid, options.ignore_warnings)
        await api.post(f"{US}/{sid}", action="complete")
        await _wait_done(api, sid)
    except (asyncio.CancelledError, KeyboardInterrupt):
        await _abandon(api, sid, created)
        raise Interrupted(f"Interrupted: the update session {sid} was canceled.") from None
    except BaseException:
        await _abandon(api, sid, created)
        raise
    return {
        "library": lib["name"],
        "item": await api.get(f"{ITEM}/{item_id}"),
        "session": sid,
        "files": [f.name for f in files],
        "bytes": sum(f.size or 0 for f in files),
        "removed": removed,
        "warnings": warnings,
    }
