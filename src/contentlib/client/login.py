"""The login file: `$XDG_CONFIG_HOME/contentlib/login.json` (default `~/.config/contentlib/login.json`), mode 0600.

It holds the server's URL, the API session id (a credential: whoever reads it acts as the user until the session
expires) and the TLS choice made at login. It is always written 0600 in a 0700 directory, and a file that others
may read is refused, as ssh refuses a private key.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from contentlib.client.http import AUTH, CliError, Tls


@dataclass(frozen=True)
class Login:
    url: str
    user: str
    session_id: str
    tls: Tls


def path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "contentlib" / "login.json"


def save(login: Login) -> Path:
    target = path()
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    body = {"url": login.url, "user": login.user, "session_id": login.session_id, "tls": login.tls.to_json()}
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, msgspec.json.format(msgspec.json.encode(body)) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    return target


def load() -> Login:
    source = path()
    try:
        mode = source.stat().st_mode
        raw = source.read_bytes()
    except FileNotFoundError:
        raise CliError("Not logged in: contentlib login URL", AUTH) from None
    except OSError as e:
        raise CliError(f"Cannot read the login file {source}: {e.strerror}", AUTH) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CliError(
            f"The login file {source} may be read by others (mode {stat.S_IMODE(mode):04o}); it holds a session "
            "id: remove it and log in again.",
            AUTH,
        )
    try:
        value: dict[str, Any] = msgspec.json.decode(raw)
        return Login(
            str(value["url"]), str(value.get("user", "")), str(value["session_id"]), Tls.from_json(value["tls"])
        )
    except (msgspec.DecodeError, KeyError, TypeError, AttributeError):
        raise CliError(f"The login file {source} is damaged: log in again.", AUTH) from None


def remove() -> bool:
    try:
        path().unlink()
    except FileNotFoundError:
        return False
    return True
