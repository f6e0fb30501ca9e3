"""`contentlib item ls | info | rm | cp | push | pull`. An ITEM is an item id or LIBRARY/ITEM (names or ids)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from contentlib.client import common
from contentlib.client.common import ITEM, json_option, run
from contentlib.client.http import Client
from contentlib.client.output import fields, print_json, say, size, table


@click.group()
def item() -> None:
    """Library items: list, show, delete, copy, upload (push) and download (pull)."""


@item.command("ls")
@click.argument("lib")
@json_option
def item_ls(lib: str, as_json: bool) -> None:
    """List the items of the library LIB (a name or an id)."""

    async def action(api: Client) -> None:
        found = await common.library(api, lib)
        ids = await api.get(ITEM, {"library_id": found["id"]})
        items = sorted(await common.get_all(api, [f"{ITEM}/{i}" for i in ids]), key=lambda i: str(i.get("name", "")))
        if as_json:
            print_json(items)
            return
        table(
            ["NAME", "TYPE", "SIZE", "VERSION", "CACHED", "ID"],
            [
                [i.get("name"), i.get("type"), size(i.get("size")), i.get("content_version"), i.get("cached"), i["id"]]
                for i in items
            ],
        )

    run(action)


@item.command("info")
@click.argument("ref", metavar="ITEM")
@json_option
def item_info(ref: str, as_json: bool) -> None:
    """Show an item and its files."""

    async def action(api: Client) -> None:
        found = await common.item(api, ref)
        files: list[dict[str, Any]] = await api.get(f"{ITEM}/{found['id']}/file")
        if as_json:
            print_json({**found, "files": files})
            return
        lib = await api.get(f"/api/content/library/{found['library_id']}")
        fields(
            [
                ("Name", found.get("name")),
                ("ID", found.get("id")),
                ("Library", f"{lib.get('name')} ({found.get('library_id')})"),
                ("Type", found.get("type")),
                ("Description", found.get("description")),
                ("Size", size(found.get("size"))),
                ("Version", found.get("content_version")),
                ("Cached", found.get("cached")),
                ("Created", found.get("creation_time")),
                ("Modified", found.get("last_modified_time")),
            ]
        )
        say("")
        table(
            ["FILE", "SIZE", "CACHED", "CHECKSUM"],
            [
                [
                    f.get("name"),
                    size(f.get("size")),
                    f.get("cached"),
                    _checksum(f.get("checksum_info")),
                ]
                for f in files
            ],
        )

    run(action)


def _checksum(info: dict[str, Any] | None) -> str | None:
    return f"{info.get('algorithm', 'SHA1')}:{info.get('checksum')}" if info else None


@item.command("rm")
@click.argument("ref", metavar="ITEM")
def item_rm(ref: str) -> None:
    """Delete an item."""

    async def action(api: Client) -> None:
        found = await common.item(api, ref)
        await api.delete(f"{ITEM}/{found['id']}")
        say(f"Deleted the item {found['name']} ({found['id']}).")

    run(action)


@item.command("cp")
@click.argument("ref", metavar="ITEM")
@click.argument("lib")
@click.option("--name", default=None, help="The copy's name (default: the item's).")
@json_option
def item_cp(ref: str, lib: str, name: str | None, as_json: bool) -> None:
    """Copy an item into the library LIB; print the copy's id."""

    async def action(api: Client) -> None:
        found = await common.item(api, ref)
        dest = await common.library(api, lib)
        spec = {"library_id": dest["id"], "name": name or found["name"]}
        copy_id = await api.post(f"{ITEM}/{found['id']}", spec, action="copy")
        await common.created(api, ITEM, copy_id, as_json)

    run(action)


@item.command("push")
@click.argument("lib")
@click.argument("source", metavar="FILE|DIR|URL")
@click.option("--name", default=None, help="The item's name (default: the file's or the OVF's name).")
@click.option("--type", "item_type", default=None, help="The type of a new item (default: ovf, iso, or none).")
@click.option("-d", "--description", default=None, help="The description of a new item.")
@click.option("--ignore-warnings", is_flag=True, help="Accept an OVF whose certificate raises warnings.")
@click.option("--retries", type=int, default=3, show_default=True, help="Times a cut upload of a file is retried.")
@click.option("--keep", is_flag=True, help="Keep the item's other files (default: the item holds what is pushed).")
@json_option
def item_push(
    lib: str,
    source: str,
    name: str | None,
    item_type: str | None,
    description: str | None,
    ignore_warnings: bool,
    retries: int,
    keep: bool,
    as_json: bool,
) -> None:
    """Upload FILE (an ISO, any file, an OVA), DIR (an OVF folder) or URL (the server fetches it) into LIB, in one
    update session; the item is created when LIB has none of that name."""
    from contentlib.client.push import PushOptions, push  # (the OVF reader and cryptography: only for a push)

    options = PushOptions(source, name, item_type, description, ignore_warnings, retries, as_json, keep)

    async def action(api: Client) -> None:
        result = await push(api, lib, options)
        if as_json:
            print_json(result)
        else:
            item_info = result["item"]
            say(
                f"Pushed {len(result['files'])} file(s), {size(result['bytes'])}, to "
                f"{result['library']}/{item_info['name']} ({item_info['id']}), "
                f"content version {item_info['content_version']}"
                + (f"; removed {', '.join(result['removed'])}." if result["removed"] else ".")
            )

    run(action)


@item.command("pull")
@click.argument("ref", metavar="ITEM")
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--retries", type=int, default=5, show_default=True, help="Times a cut download is resumed.")
@json_option
def item_pull(ref: str, directory: Path, retries: int, as_json: bool) -> None:
    """Download the files of ITEM into DIR (created if missing), checksums verified."""

    async def action(api: Client) -> None:
        from contentlib.client.pull import pull

        found = await common.item(api, ref)
        files = await pull(api, found, directory, retries, as_json)
        if as_json:
            print_json({"item": found, "directory": str(directory), "files": files})
        else:
            total = sum(int(f["size"]) for f in files)
            say(f"Pulled {len(files)} file(s), {size(total)}, of {found['name']} into {directory}.")

    run(action)
