"""`contentlib library ls | info | create | rm | publish | subscribe | sync`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import click

from contentlib.client import common
from contentlib.client.common import LIB, json_option, run
from contentlib.client.http import NOT_FOUND, USAGE, ApiError, Client, CliError
from contentlib.client.output import fields, print_json, say, table

LOCAL = "/api/content/local-library"
SUBSCRIBED = "/api/content/subscribed-library"
DEFAULT_DATASTORE = "datastore-1"  # this server's one datastore (services/datastores.py)


@click.group()
def library() -> None:
    """Content libraries: local, published and subscribed."""


def _published(lib: dict[str, Any]) -> str | None:
    info = lib.get("publish_info") or {}
    return str(info.get("publish_url")) if info.get("published") else None


@library.command("ls")
@json_option
def library_ls(as_json: bool) -> None:
    """List the libraries."""

    async def action(api: Client) -> None:
        libs = await common.get_all(api, [f"{LIB}/{i}" for i in await api.get(LIB)])
        libs.sort(key=lambda lib: str(lib.get("name", "")))
        if as_json:
            print_json(libs)
            return
        table(
            ["NAME", "TYPE", "ID", "PUBLISHED", "SUBSCRIBED TO", "DESCRIPTION"],
            [
                [
                    lib.get("name"),
                    lib.get("type"),
                    lib.get("id"),
                    _published(lib),
                    (lib.get("subscription_info") or {}).get("subscription_url"),
                    lib.get("description"),
                ]
                for lib in libs
            ],
        )

    run(action)


@library.command("info")
@click.argument("lib")
@json_option
def library_info(lib: str, as_json: bool) -> None:
    """Show one library (a name or an id)."""

    async def action(api: Client) -> None:
        found = await common.library(api, lib)
        if as_json:
            print_json(found)
            return
        sub = found.get("subscription_info") or {}
        fields(
            [
                ("Name", found.get("name")),
                ("ID", found.get("id")),
                ("Type", found.get("type")),
                ("Description", found.get("description")),
                ("Version", found.get("version")),
                ("Created", found.get("creation_time")),
                ("Published", _published(found)),
                ("Subscribed to", sub.get("subscription_url")),
                ("On demand", sub.get("on_demand")),
                ("Automatic sync", sub.get("automatic_sync_enabled")),
                ("Last sync", found.get("last_sync_time")),
            ]
        )

    run(action)


async def _backing(api: Client, datastore: str | None, storage_uri: str | None) -> dict[str, str]:
    """A DATASTORE backing: the one named, else the server's only datastore (`/api/vcenter/datastore` on a
    vCenter; this server has none of that API and one datastore, DEFAULT_DATASTORE)."""
    if storage_uri:
        return {"type": "OTHER", "storage_uri": storage_uri}
    if datastore is None:
        try:
            stores = await api.get("/api/vcenter/datastore")
        except ApiError as e:
            if e.code != NOT_FOUND:
                raise
            stores = [{"datastore": DEFAULT_DATASTORE}]
        if len(stores) != 1:
            names = ", ".join(f"{s.get('name')} ({s.get('datastore')})" for s in stores)
            raise CliError(f"Choose a datastore with --datastore: {names or 'none found'}.", USAGE)
        datastore = str(stores[0]["datastore"])
    return {"type": "DATASTORE", "datastore_id": datastore}


def _publish_info(password: str | None) -> dict[str, Any]:
    if password:
        return {"published": True, "authentication_method": "BASIC", "user_name": "vcsp", "password": password}
    return {"published": True, "authentication_method": "NONE"}


@library.command("create")
@click.argument("name")
@click.option("-d", "--description", default=None)
@click.option("--datastore", default=None, help="The datastore id of the storage backing (default: the only one).")
@click.option("--storage-uri", default=None, help="A storage URI backing instead of a datastore.")
@click.option("--publish", is_flag=True, help="Publish the library (a VCSP feed subscribers can read).")
@click.option("--password", default=None, help="With --publish: subscribers log in as 'vcsp' with this password.")
@json_option
def library_create(
    name: str,
    description: str | None,
    datastore: str | None,
    storage_uri: str | None,
    publish: bool,
    password: str | None,
    as_json: bool,
) -> None:
    """Create a local library NAME; print its id."""

    async def action(api: Client) -> None:
        if password and not publish:
            raise CliError("--password needs --publish.", USAGE)
        spec: dict[str, Any] = {
            "name": name,
            "type": "LOCAL",
            "storage_backings": [await _backing(api, datastore, storage_uri)],
        }
        if description is not None:
            spec["description"] = description
        if publish:
            spec["publish_info"] = _publish_info(password)
        lib_id = await api.post(LOCAL, spec)
        await common.created(api, LIB, lib_id, as_json)

    run(action)


@library.command("rm")
@click.argument("lib")
def library_rm(lib: str) -> None:
    """Delete a library (local or subscribed) and its items."""

    async def action(api: Client) -> None:
        found = await common.library(api, lib)
        base = SUBSCRIBED if found.get("type") == "SUBSCRIBED" else LOCAL
        await api.delete(f"{base}/{found['id']}")
        say(f"Deleted the library {found['name']} ({found['id']}).")

    run(action)


@library.command("publish")
@click.argument("lib")
@click.option("--password", default=None, help="Subscribers log in as 'vcsp' with this password.")
@click.option("--current-password", default=None, help="The password set now, to change it or to stop publishing.")
@click.option("--off", is_flag=True, help="Stop publishing.")
@json_option
def library_publish(lib: str, password: str | None, current_password: str | None, off: bool, as_json: bool) -> None:
    """Publish a local library (or stop, with --off); print its subscription URL."""

    async def action(api: Client) -> None:
        found = await common.library(api, lib)
        info: dict[str, Any] = {"published": False} if off else _publish_info(password)
        if current_password is not None:
            info["current_password"] = current_password
        await api.patch(f"{LOCAL}/{found['id']}", {"publish_info": info})
        now = await api.get(f"{LIB}/{found['id']}")
        if as_json:
            print_json(now)
        else:
            say(_published(now) or f"The library {found['name']} is not published.")

    run(action)


@library.command("subscribe")
@click.argument("url")
@click.argument("name")
@click.option("--user", default=None, help="The publisher's user (vcsp for vCenter and this server).")
@click.option("--password", default=None, help="The publisher's password (BASIC authentication).")
@click.option("--thumbprint", default=None, help="The publisher's SSL certificate thumbprint (https).")
@click.option("--on-demand", is_flag=True, help="Download an item's files only when they are used or synced.")
@click.option("--no-auto-sync", is_flag=True, help="Synchronize only when asked (library sync).")
@click.option("--datastore", default=None, help="The datastore id of the storage backing (default: the only one).")
@click.option("--storage-uri", default=None, help="A storage URI backing instead of a datastore.")
@json_option
def library_subscribe(
    url: str,
    name: str,
    user: str | None,
    password: str | None,
    thumbprint: str | None,
    on_demand: bool,
    no_auto_sync: bool,
    datastore: str | None,
    storage_uri: str | None,
    as_json: bool,
) -> None:
    """Create a subscribed library NAME of the published library at URL (its lib.json); print its id."""

    async def action(api: Client) -> None:
        info: dict[str, Any] = {
            "subscription_url": url,
            "on_demand": on_demand,
            "automatic_sync_enabled": not no_auto_sync,
            "authentication_method": "BASIC" if password else "NONE",
        }
        if password:
            info.update(user_name=user or "vcsp", password=password)
        if thumbprint:
            info["ssl_thumbprint"] = thumbprint
        spec = {
            "name": name,
            "type": "SUBSCRIBED",
            "storage_backings": [await _backing(api, datastore, storage_uri)],
            "subscription_info": info,
        }
        lib_id = await api.post(SUBSCRIBED, spec)
        await common.created(api, LIB, lib_id, as_json)

    run(action)


@library.command("sync")
@click.argument("lib")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the sync has ended.")
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds to wait at most.")
@json_option
def library_sync(lib: str, wait: bool, timeout: float, as_json: bool) -> None:
    """Synchronize a subscribed library with its publisher."""

    async def action(api: Client) -> None:
        found = await common.library(api, lib)
        if found.get("type") != "SUBSCRIBED":
            raise CliError(f"The library {found['name']} is not a subscribed library.", USAGE)
        before = found.get("last_sync_time")
        await api.post(f"{SUBSCRIBED}/{found['id']}", action="sync")
        now = found
        deadline = time.monotonic() + timeout
        while wait and now.get("last_sync_time") == before:
            if time.monotonic() > deadline:
                raise CliError(f"The sync of {found['name']} has not ended after {timeout:g} s.")
            await asyncio.sleep(0.2)
            now = await api.get(f"{LIB}/{found['id']}")
        if as_json:
            print_json(now)
        elif wait:
            say(f"Synchronized {found['name']} at {now.get('last_sync_time')}.")
        else:
            say(f"Started the sync of {found['name']}.")

    run(action)
