"""`contentlib serve | user ...`: every flag also reads a CONTENTLIB_* environment variable."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from pathlib import Path

import click

from contentlib import tls
from contentlib.config import Settings, parse_listen
from contentlib.services.auth import hash_password
from contentlib.storage.sqlite import SQLiteStore

ADMIN = "administrator@vsphere.local"

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("contentlib-data"),
    show_default=True,
    envvar="CONTENTLIB_DATA_DIR",
    help="Directory of the SQLite database, the blobs and the TLS certificate.",
)


@click.group()
def main() -> None:
    """A standalone vSphere Content Library server."""


@main.command()
@click.option(
    "--listen", default="127.0.0.1:8443", show_default=True, envvar="CONTENTLIB_LISTEN", help="HOST:PORT to serve on."
)
@data_dir_option
@click.option("--http", "plain_http", is_flag=True, envvar="CONTENTLIB_HTTP", help="Serve plain HTTP instead of HTTPS.")
@click.option(
    "--update-session-timeout",
    type=float,
    default=300.0,
    show_default=True,
    envvar="CONTENTLIB_UPDATE_SESSION_TIMEOUT",
    help="Idle seconds before an ACTIVE update or download session expires.",
)
@click.option(
    "--api-session-timeout",
    type=float,
    default=1800.0,
    show_default=True,
    envvar="CONTENTLIB_API_SESSION_TIMEOUT",
    help="Idle seconds before an API session expires.",
)
@click.option(
    "--sweep-interval",
    type=float,
    default=10.0,
    show_default=True,
    envvar="CONTENTLIB_SWEEP_INTERVAL",
    help="Seconds between sweeps of expired sessions.",
)
@click.option(
    "--session-retention",
    type=float,
    default=3600.0,
    show_default=True,
    envvar="CONTENTLIB_SESSION_RETENTION",
    help="Seconds a finished update or download session stays readable before it is deleted.",
)
def serve(
    listen: str,
    data_dir: Path,
    plain_http: bool,
    update_session_timeout: float,
    api_session_timeout: float,
    sweep_interval: float,
    session_retention: float,
) -> None:
    """Run the server."""
    from contentlib.app import run

    try:
        host, port = parse_listen(listen)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    for name, value in (
        ("--update-session-timeout", update_session_timeout),
        ("--api-session-timeout", api_session_timeout),
        ("--sweep-interval", sweep_interval),
    ):
        if value <= 0:
            raise click.BadParameter(f"{name} must be positive")
    settings = Settings(
        data_dir=data_dir,
        host=host,
        port=port,
        http=plain_http,
        update_session_timeout=update_session_timeout,
        api_session_timeout=api_session_timeout,
        sweep_interval=sweep_interval,
        session_retention=session_retention,
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    _bootstrap_admin(data_dir)
    ssl_context = None
    if not plain_http:
        cert, key = tls.ensure_self_signed(data_dir)
        click.echo(f"TLS certificate {cert} (SHA-256 fingerprint {tls.fingerprint(cert)})")
        ssl_context = tls.server_context(cert, key)
    run(settings, ssl_context)


def _store(data_dir: Path) -> SQLiteStore:
    data_dir.mkdir(parents=True, exist_ok=True)
    return SQLiteStore(Settings(data_dir=data_dir).db_path)


def _bootstrap_admin(data_dir: Path) -> None:
    store = _store(data_dir)
    try:
        if asyncio.run(store.list_users()):
            return
        password = os.environ.get("CONTENTLIB_ADMIN_PASSWORD")
        generated = not password
        password = password or secrets.token_urlsafe(12)
        asyncio.run(store.add_user(ADMIN, hash_password(password), _now()))
        if generated:
            click.echo(
                f"Created user {ADMIN} with password: {password}  (shown once; change it with "
                f"`contentlib user passwd {ADMIN}`)"
            )
        else:
            click.echo(f"Created user {ADMIN} with the password from CONTENTLIB_ADMIN_PASSWORD")
    finally:
        store.close()


def _now() -> float:
    return time.time()


def _read_password() -> str:
    if sys.stdin.isatty():
        password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise click.UsageError("the password must not be empty")
    return password


@main.group()
def user() -> None:
    """Manage users (passwords are read from a prompt or stdin, never from the command line)."""


@user.command("add")
@click.argument("name")
@data_dir_option
def user_add(name: str, data_dir: Path) -> None:
    store = _store(data_dir)
    try:
        if not asyncio.run(store.add_user(name, hash_password(_read_password()), _now())):
            raise click.ClickException(f"user {name} already exists")
    finally:
        store.close()
    click.echo(f"added user {name}")


@user.command("passwd")
@click.argument("name")
@data_dir_option
def user_passwd(name: str, data_dir: Path) -> None:
    store = _store(data_dir)
    try:
        if asyncio.run(store.get_user(name)) is None:
            raise click.ClickException(f"no user {name}")
        asyncio.run(store.set_password(name, hash_password(_read_password())))
    finally:
        store.close()
    click.echo(f"changed the password of {name}")


@user.command("remove")
@click.argument("name")
@data_dir_option
def user_remove(name: str, data_dir: Path) -> None:
    store = _store(data_dir)
    try:
        if not asyncio.run(store.remove_user(name)):
            raise click.ClickException(f"no user {name}")
    finally:
        store.close()
    click.echo(f"removed user {name}")


@user.command("list")
@data_dir_option
def user_list(data_dir: Path) -> None:
    store = _store(data_dir)
    try:
        for row in asyncio.run(store.list_users()):
            click.echo(row["name"])
    finally:
        store.close()
