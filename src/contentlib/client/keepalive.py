"""Keeping an update or download session alive during a long transfer: a server ends a session idle for its
timeout (vCenter: 5 minutes), and a transfer it does not watch (a download, an upload to another node) may not count
as activity. The session's `expiration_time` says how long is left; the client sends `keep-alive` when a third of
that has passed."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator, Callable
from typing import Any

from contentlib.client.http import Client, CliError

_FLOOR = 0.5  # seconds between keep-alives at least
_DEFAULT = 60.0  # when the session shows no expiration_time


def _seconds_left(info: dict[str, Any]) -> float | None:
    text = info.get("expiration_time")
    if not isinstance(text, str):
        return None
    try:
        expires = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=datetime.UTC)
    return (expires - datetime.datetime.now(datetime.UTC)).total_seconds()


async def _loop(api: Client, path: str, body: Callable[[], dict[str, Any] | None]) -> None:
    try:
        while True:
            left = _seconds_left(await api.get(path))
            await asyncio.sleep(max(_FLOOR, left / 3) if left is not None else _DEFAULT)
            await api.post(path, body(), action="keep-alive")
    except CliError:
        return  # the session ended or the server is gone: the transfer itself reports that


@contextlib.asynccontextmanager
async def kept_alive(api: Client, path: str, body: Callable[[], dict[str, Any] | None]) -> AsyncIterator[None]:
    task = asyncio.create_task(_loop(api, path, body))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
