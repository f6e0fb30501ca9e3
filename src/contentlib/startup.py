"""A calm start (issue 13 point 4): a database or object store that is not reachable yet is tried again with
backoff for `--startup-timeout` seconds, one log line per attempt, and what cannot work (a bad URL, credentials
refused, a bucket that cannot be made, a port in use, a data dir that cannot be written) is one line on stderr and
exit status 2, never a traceback."""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from contentlib.config import Settings

EXIT_CODE = 2
_FIRST_DELAY = 0.5  # seconds before the second attempt; doubled each time, at most _MAX_DELAY
_MAX_DELAY = 10.0


class StartupError(Exception):
    """Why the server cannot start, in one line."""


def _transient(e: BaseException) -> bool:
    """Whether `e` says the service is not there yet (so trying again may work), not that it is set up wrong."""
    if isinstance(e, ConnectionError | TimeoutError | socket.gaierror):
        return True
    name = type(e).__name__
    if name in ("CannotConnectNowError", "TooManyConnectionsError", "EndpointConnectionError", "ConnectTimeoutError"):
        return True  # PostgreSQL starting up or full; the S3 endpoint not listening yet
    return isinstance(e, OSError) and e.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH)


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


async def _open_and_close(opener: Callable[[Settings], Awaitable[Any]], settings: Settings) -> None:
    backend = await opener(settings)
    await backend.close()


async def wait_for_backends(settings: Settings, timeout: float, say: Callable[[str], None]) -> None:
    """Until the database and the object store both answer; StartupError when one is set up wrong, or is still
    not reachable after `timeout` seconds."""
    from contentlib.storage import open_blobs, open_store

    deadline = time.monotonic() + timeout
    for what, opener, where in (
        ("database", open_store, settings.database or str(settings.db_path)),
        ("object store", open_blobs, settings.blobs or str(settings.blob_dir)),
    ):
        delay, attempt = _FIRST_DELAY, 1
        while True:
            try:
                await _open_and_close(opener, settings)
                break
            except Exception as e:
                if not _transient(e):
                    raise StartupError(f"cannot use the {what} {where}: {_reason(e)}") from None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StartupError(
                        f"the {what} {where} is still not reachable after {timeout:g} s ({attempt} attempts): "
                        f"{_reason(e)}"
                    ) from None
                delay = min(delay, left)
                say(f"the {what} {where} is not reachable yet ({_reason(e)}); attempt {attempt}, next in {delay:g} s")
                await asyncio.sleep(delay)
                delay, attempt = min(delay * 2, _MAX_DELAY), attempt + 1


def describe(e: BaseException) -> str | None:
    """The one line for an error that is the setup's, not a bug: None for anything else."""
    if isinstance(e, StartupError):
        return str(e)
    if isinstance(e, OSError) and e.errno == errno.EADDRINUSE:
        return f"cannot listen: the address is already in use ({e.strerror})"
    if isinstance(e, PermissionError):
        return f"permission denied: {e.filename or e}"
    return None
