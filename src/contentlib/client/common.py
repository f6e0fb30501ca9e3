"""What every client command shares: `--json`, running one coroutine against the logged-in server, finding a
library or an item by name or id, and turning failures into a message on stderr and an exit status."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from contentlib.client import login
from contentlib.client.http import CONFLICT, INTERRUPTED, NOT_FOUND, ApiError, Client, CliError
from contentlib.client.output import print_json, say

F = TypeVar("F", bound=Callable[..., Any])

LIB = "/api/content/library"
ITEM = "/api/content/library/item"
_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the API's values as JSON (for scripts).")(f)


class Interrupted(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, INTERRUPTED)


def run(action: Callable[[Client], Awaitable[None]]) -> None:
    """Run `action` against the server of the login file; exit with its status."""

    def body() -> None:
        saved = login.load()

        async def main() -> None:
            async with Client(saved.url, saved.tls, saved.session_id) as api:
                await action(api)

        asyncio.run(main())

    finish(body)


def finish(body: Callable[[], None]) -> None:
    """Run `body`; a CliError is its message on stderr and its code, Ctrl-C is status 130."""
    try:
        body()
    except CliError as e:
        click.echo(e.message, err=True)
        sys.exit(e.code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(INTERRUPTED)


async def get_all(api: Client, paths: list[str], parallel: int = 8) -> list[Any]:
    """GET each path, a few at a time (a list gives ids; each one's info is a GET of its own), in order."""
    gate = asyncio.Semaphore(parallel)

    async def one(path: str) -> Any:
        async with gate:
            return await api.get(path)

    return list(await asyncio.gather(*(one(p) for p in paths)))


async def created(api: Client, path: str, new_id: str, as_json: bool) -> None:
    """What a command that made something prints: its id, or with --json its info (GET `path`/`new_id`)."""
    if as_json:
        print_json(await api.get(f"{path}/{new_id}"))
    else:
        say(str(new_id))


async def library(api: Client, ref: str) -> dict[str, Any]:
    """The library named or identified by `ref`; NOT_FOUND, or CONFLICT when several have that name."""
    if _ID.match(ref):
        try:
            value: dict[str, Any] = await api.get(f"{LIB}/{ref}")
            return value
        except ApiError as e:
            if e.code != NOT_FOUND:
                raise
    ids = await api.post(LIB, {"name": ref}, action="find")
    if not ids:
        raise CliError(f"No library is named or has the id {ref!r}.", NOT_FOUND)
    if len(ids) > 1:
        raise CliError(f"{len(ids)} libraries are named {ref!r}: give its id ({', '.join(ids)}).", CONFLICT)
    found: dict[str, Any] = await api.get(f"{LIB}/{ids[0]}")
    return found


async def find_item(api: Client, library_id: str, name: str) -> str | None:
    ids = await api.post(ITEM, {"library_id": library_id, "name": name}, action="find")
    if len(ids) > 1:
        raise CliError(f"{len(ids)} items are named {name!r}: give its id ({', '.join(ids)}).", CONFLICT)
    return str(ids[0]) if ids else None


async def item(api: Client, ref: str) -> dict[str, Any]:
    """The item `ref` names: an item id, or LIBRARY/ITEM (each a name or an id)."""
    if _ID.match(ref):
        try:
            value: dict[str, Any] = await api.get(f"{ITEM}/{ref}")
            return value
        except ApiError as e:
            if e.code != NOT_FOUND:
                raise
    lib_ref, slash, name = ref.partition("/")
    if not slash or not name:
        raise CliError(f"No item has the id {ref!r}; name an item as LIBRARY/ITEM.", NOT_FOUND)
    lib = await library(api, lib_ref)
    if _ID.match(name):
        try:
            value = await api.get(f"{ITEM}/{name}")
            if value.get("library_id") == lib["id"]:
                return dict(value)
        except ApiError as e:
            if e.code != NOT_FOUND:
                raise
    item_id = await find_item(api, lib["id"], name)
    if item_id is None:
        raise CliError(f"The library {lib['name']!r} has no item named {name!r}.", NOT_FOUND)
    found: dict[str, Any] = await api.get(f"{ITEM}/{item_id}")
    return found
