"""`contentlib login URL`, `logout`, and `session ls | cancel` (update and download sessions)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import click

from contentlib.client import login as login_file
from contentlib.client.common import finish, get_all, json_option, run
from contentlib.client.http import AUTH, USAGE, Client, CliError, Tls, normalize_url
from contentlib.client.output import print_json, say, table

US = "/api/content/library/item/update-session"
DS = "/api/content/library/item/download-session"


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    env = os.environ.get("CONTENTLIB_PASSWORD")
    if env is not None:
        return env
    if not sys.stdin.isatty():
        raise CliError("No password: give --password-stdin, CONTENTLIB_PASSWORD, or run on a terminal.", USAGE)
    value: str = click.prompt("Password", hide_input=True)
    return value


@click.command()
@click.argument("url")
@click.option("-u", "--user", envvar="CONTENTLIB_USER", default=None, help="User name (else prompted).")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.option("--insecure", is_flag=True, help="Do not verify the server's certificate.")
@click.option("--thumbprint", default=None, help="Pin the server's certificate: its SHA-1 or SHA-256 thumbprint.")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False), default=None, help="PEM CAs to trust too.")
@json_option
def login(
    url: str,
    user: str | None,
    password_stdin: bool,
    insecure: bool,
    thumbprint: str | None,
    ca_file: str | None,
    as_json: bool,
) -> None:
    """Log in to the server at URL (this one or a vCenter) and keep the session in the login file."""

    def body() -> None:
        if insecure and thumbprint:
            raise CliError("--insecure and --thumbprint exclude each other.", USAGE)
        base = normalize_url(url)
        name = user if user is not None else str(click.prompt("User"))
        password = _password(password_stdin)
        tls = Tls(insecure, thumbprint, str(Path(ca_file).resolve()) if ca_file else None)  # from any directory

        async def main() -> str:
            async with Client(base, tls) as api:
                auth = aiohttp.BasicAuth(name, password, encoding="utf-8")
                return str(await api.call("POST", "/api/session", auth=auth))

        sid = asyncio.run(main())
        saved = login_file.save(login_file.Login(base, name, sid, tls))
        if as_json:
            print_json({"url": base, "user": name, "login_file": str(saved)})
        else:
            say(f"Logged in to {base} as {name} (session kept in {saved}).")

    finish(body)


@click.command()
def logout() -> None:
    """Delete the API session and the login file."""

    def body() -> None:
        try:
            saved = login_file.load()
        except CliError:
            if login_file.remove():
                say("Removed the login file.")
                return
            raise

        async def main() -> None:
            async with Client(saved.url, saved.tls, saved.session_id) as api:
                try:
                    await api.delete("/api/session")
                except CliError as e:
                    if e.code != AUTH:  # an expired session is gone already
                        raise

        try:
            asyncio.run(main())
        finally:
            login_file.remove()
        say(f"Logged out of {saved.url}.")

    finish(body)


@click.group()
def session() -> None:
    """Update sessions (uploads) and download sessions of the server."""


@session.command("ls")
@click.option("--download", is_flag=True, help="Download sessions instead of update sessions.")
@json_option
def session_ls(download: bool, as_json: bool) -> None:
    """List the sessions this user may see."""

    async def action(api: Client) -> None:
        base = DS if download else US
        ids = await api.get(base)
        found = await get_all(api, [f"{base}/{i}" for i in ids])
        infos: list[dict[str, Any]] = [{"id": i, **info} for i, info in zip(ids, found, strict=True)]
        if as_json:
            print_json(infos)
            return
        table(
            ["ID", "ITEM", "STATE", "PROGRESS", "EXPIRES"],
            [
                [
                    s.get("id"),
                    s.get("library_item_id"),
                    s.get("state"),
                    f"{s['client_progress']}%" if "client_progress" in s else None,
                    s.get("expiration_time"),
                ]
                for s in infos
            ],
        )

    run(action)


@session.command("cancel")
@click.argument("session_id")
@click.option("--download", is_flag=True, help="A download session: delete it.")
def session_cancel(session_id: str, download: bool) -> None:
    """Cancel an update session (its item is left as it was), or delete a download session."""

    async def action(api: Client) -> None:
        if download:
            await api.delete(f"{DS}/{session_id}")
            say(f"Deleted the download session {session_id}.")
        else:
            await api.post(f"{US}/{session_id}", action="cancel")
            say(f"Canceled the update session {session_id}.")

    run(action)
