"""`contentlib serve | user ...`: every flag also reads a CONTENTLIB_* environment variable."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from contentlib.client.commands import COMMANDS
from contentlib.config import Settings, parse_listen
from contentlib.logs import FORMATS
from contentlib.services import roles

if TYPE_CHECKING:
    from contentlib.storage.sql import SqlStore

# The server's modules (TLS, password hashing, the stores) are imported by the commands that use them, so that a
# client command (`contentlib item ls ...`) starts without loading them.

T = TypeVar("T")

ADMIN = "administrator@vsphere.local"

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("contentlib-data"),
    show_default=True,
    envvar="CONTENTLIB_DATA_DIR",
    help="Directory of the SQLite database, the blobs and the TLS certificate.",
)


database_option = click.option(
    "--database",
    default=None,
    envvar="CONTENTLIB_DATABASE",
    help="postgresql://user@host/db: metadata in PostgreSQL (several replicas); default: SQLite in the data dir.",
)


@click.group()
def main() -> None:
    """A standalone vSphere Content Library server."""


@main.command()
@click.option(
    "--listen", default="127.0.0.1:8443", show_default=True, envvar="CONTENTLIB_LISTEN", help="HOST:PORT to serve on."
)
@data_dir_option
@database_option
@click.option(
    "--blobs",
    default=None,
    envvar="CONTENTLIB_BLOBS",
    help="s3://bucket/prefix?endpoint=URL (AWS credentials from the standard variables) or file:///dir; "
    "default: DATA_DIR/blobs.",
)
@click.option(
    "--public-url",
    default=None,
    envvar="CONTENTLIB_PUBLIC_URL",
    help="The URL clients reach this server at (behind a load balancer); upload and download URIs use it.",
)
@click.option(
    "--trusted-proxies",
    default="",
    envvar="CONTENTLIB_TRUSTED_PROXIES",
    help="Comma-separated addresses/CIDRs of proxies whose X-Forwarded-Proto/X-Forwarded-Host are believed.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    envvar="CONTENTLIB_TLS_CERT",
    help="PEM certificate (chain) to serve HTTPS with, instead of the generated self-signed one.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    envvar="CONTENTLIB_TLS_KEY",
    help="PEM private key of --tls-cert.",
)
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
@click.option(
    "--transfer-stall-timeout",
    type=float,
    default=60.0,
    show_default=True,
    envvar="CONTENTLIB_TRANSFER_STALL_TIMEOUT",
    help="Seconds without progress after which a transfer is failed: an upload whose body stops arriving, or one "
    "whose replica died.",
)
@click.option(
    "--header-timeout",
    type=float,
    default=60.0,
    show_default=True,
    envvar="CONTENTLIB_HEADER_TIMEOUT",
    help="Seconds a client has to send a complete request line and headers, from connecting or from its previous "
    "response; the connection is closed after that (slow clients, idle keep-alive connections).",
)
@click.option(
    "--startup-timeout",
    type=float,
    default=60.0,
    show_default=True,
    envvar="CONTENTLIB_STARTUP_TIMEOUT",
    help="Seconds to keep trying a database or object store that is not reachable yet, at the start.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=os.cpu_count() or 1,
    show_default="the number of CPUs",
    envvar="CONTENTLIB_WORKERS",
    help="Server processes on the one port (SO_REUSEPORT); each connection stays in the worker that accepted it.",
)
@click.option(
    "--log-format",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    envvar="CONTENTLIB_LOG_FORMAT",
    help="json: one JSON object per log line, with the request id, and one access line per request.",
)
def serve(**options: Any) -> None:
    """Run the server."""
    from contentlib import startup

    try:
        _serve(**options)
    except Exception as e:
        line = startup.describe(e)
        if line is None:
            raise
        click.echo(f"contentlib: {line}", err=True)
        sys.exit(startup.EXIT_CODE)


def _serve(
    listen: str,
    data_dir: Path,
    database: str | None,
    blobs: str | None,
    public_url: str | None,
    trusted_proxies: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    plain_http: bool,
    update_session_timeout: float,
    api_session_timeout: float,
    sweep_interval: float,
    session_retention: float,
    transfer_stall_timeout: float,
    header_timeout: float,
    startup_timeout: float,
    workers: int,
    log_format: str,
) -> None:
    from contentlib import logs, metrics_dir, startup, tls
    from contentlib.app import run

    logs.configure(log_format)

    try:
        host, port = parse_listen(listen)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    for name, value in (
        ("--update-session-timeout", update_session_timeout),
        ("--api-session-timeout", api_session_timeout),
        ("--sweep-interval", sweep_interval),
        ("--transfer-stall-timeout", transfer_stall_timeout),
        ("--header-timeout", header_timeout),
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
        transfer_stall_timeout=transfer_stall_timeout,
        header_timeout=header_timeout,
        database=database,
        blobs=blobs,
        public_url=public_url,
        trusted_proxies=tuple(p.strip() for p in trusted_proxies.split(",") if p.strip()),
        workers=workers,
        log_format=log_format,
    )
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / ".writable").touch()
        (data_dir / ".writable").unlink()
    except OSError as e:
        raise startup.StartupError(f"cannot use the data dir {data_dir}: {e.strerror or e}") from None
    asyncio.run(startup.wait_for_backends(settings, startup_timeout, lambda line: click.echo(f"contentlib: {line}")))
    _bootstrap_admin(settings)
    if (tls_cert is None) != (tls_key is None):
        raise click.BadParameter("--tls-cert and --tls-key go together")
    ssl_context = None
    if not plain_http:
        cert, key = (tls_cert, tls_key) if tls_cert and tls_key else tls.ensure_self_signed(data_dir)
        try:
            ssl_context = tls.server_context(cert, key)
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            raise click.BadParameter(f"cannot serve TLS with {cert} and {key}: {e}") from None
        click.echo(f"TLS certificate {cert} (SHA-256 fingerprint {tls.fingerprint(cert)})")
        settings = dataclasses.replace(settings, tls_cert=cert)
    with metrics_dir.fresh():
        run(settings, ssl_context)


def _with_store(settings: Settings, action: Callable[[SqlStore], Awaitable[T]]) -> T:
    """Run `action` on the Store the settings name, then close it."""
    from contentlib.storage import open_store

    async def run_it() -> T:
        store = await open_store(settings)
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run_it())


def _bootstrap_admin(settings: Settings) -> None:
    from contentlib.services.auth import hash_password

    async def bootstrap(store: SqlStore) -> None:
        if await store.list_users():
            return
        password = os.environ.get("CONTENTLIB_ADMIN_PASSWORD")
        generated = not password
        password = password or secrets.token_urlsafe(12)
        if not await store.add_user(ADMIN, hash_password(password), time.time(), roles.ADMINISTRATOR):
            return  # another replica created it first
        if generated:
            click.echo(
                f"Created user {ADMIN} with password: {password}  (shown once; change it with "
                f"`contentlib user passwd {ADMIN}`)"
            )
        else:
            click.echo(f"Created user {ADMIN} with the password from CONTENTLIB_ADMIN_PASSWORD")

    _with_store(settings, bootstrap)


def _revoke(data_dir: Path) -> None:
    """Make the server processes using `data_dir` on this machine read sessions and roles again at once (others
    within the two seconds they cache them)."""
    from contentlib.services.auth import revocations

    if data_dir.is_dir():
        revocations(data_dir).bump()


def _new_password_hash() -> str:
    from contentlib.services.auth import hash_password

    return hash_password(_read_password())


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


def _user_settings(data_dir: Path, database: str | None) -> Settings:
    return Settings(data_dir=data_dir, database=database)


def _role(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        return roles.role_name(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


_ROLE_HELP = f"one of {', '.join(roles.ROLES)} (vCenter's labels, like Read-only, are accepted too)"


@user.command("add")
@click.argument("name")
@click.option("--role", default=roles.ADMINISTRATOR, show_default=True, callback=_role, help=_ROLE_HELP)
@data_dir_option
@database_option
def user_add(name: str, role: str, data_dir: Path, database: str | None) -> None:
    password_hash = _new_password_hash()
    settings = _user_settings(data_dir, database)
    if not _with_store(settings, lambda s: s.add_user(name, password_hash, time.time(), role)):
        raise click.ClickException(f"user {name} already exists")
    click.echo(f"added user {name} with role {role}")


@user.command("role")
@click.argument("name")
@click.argument("role", callback=_role)
@data_dir_option
@database_option
def user_role(name: str, role: str, data_dir: Path, database: str | None) -> None:
    """Give user NAME the role ROLE (it counts for their open sessions within seconds)."""
    if not _with_store(_user_settings(data_dir, database), lambda s: s.set_role(name, role)):
        raise click.ClickException(f"no user {name}")
    _revoke(data_dir)
    click.echo(f"user {name} now has role {role}")


@user.command("passwd")
@click.argument("name")
@data_dir_option
@database_option
def user_passwd(name: str, data_dir: Path, database: str | None) -> None:
    settings = _user_settings(data_dir, database)
    if _with_store(settings, lambda s: s.get_user(name)) is None:
        raise click.ClickException(f"no user {name}")
    password_hash = _new_password_hash()
    _with_store(settings, lambda s: s.set_password(name, password_hash))
    click.echo(f"changed the password of {name}")


@user.command("remove")
@click.argument("name")
@data_dir_option
@database_option
def user_remove(name: str, data_dir: Path, database: str | None) -> None:
    if not _with_store(_user_settings(data_dir, database), lambda s: s.remove_user(name)):
        raise click.ClickException(f"no user {name}")
    _revoke(data_dir)
    click.echo(f"removed user {name}")


@user.command("list")
@data_dir_option
@database_option
def user_list(data_dir: Path, database: str | None) -> None:
    for row in _with_store(_user_settings(data_dir, database), lambda s: s.list_users()):
        click.echo(f"{row['name']}\t{row['role']}")


for _command in COMMANDS:  # contentlib login | logout | library | item | session: the /api client (docs/cli.md)
    main.add_command(_command)
