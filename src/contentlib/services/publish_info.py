"""A local library's `publish_info` (`com.vmware.content.library.PublishInfo`): the vendor's rules for creating
and changing it, what `get` returns, and the publish password that subscribers of the VCSP feed authenticate with.

Stored: `authentication_method` (NONE or BASIC), `published` and `persist_json_enabled` in the library's `extra`
JSON, and the password only as an argon2 hash in its own column (`libraries.publish_password`): the contract makes
`password` and `current_password` write-only ("not used for the get method"). `publish_url` is never stored: `get`
computes it from the address the caller reached the server at (`--public-url` when set), the URL vCenter gives,
`{base}/cls/vcsp/lib/{library_id}/lib.json`. `user_name` is `vcsp`, the one user name the contract allows ("If
specified, it must be set to 'vcsp'") and the one the feed accepts.

Changing a BASIC library's password, turning its authentication off, or unpublishing it needs `current_password`
(the contract, `PublishInfo.current_password`); a wrong one is INVALID_ARGUMENT (`LocalLibrary.update` errors).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from dataclasses import dataclass
from typing import Any

from contentlib import errors
from contentlib.model import PublishInfo
from contentlib.services.auth import _verify, hash_password
from contentlib.services.core import check_uri
from contentlib.transfer import run_blocking

USER_NAME = "vcsp"


def credential_sha256(password: str) -> str:
    """What is kept of the feed credential of a subscription on this server (services/subscriptions.py): a random
    password, so a SHA-256 is enough; the feed compares a caller's password with it (services/vcsp.py)."""
    return hashlib.sha256(password.encode("utf-8", "surrogatepass")).hexdigest()


FEED_PATH = "/cls/vcsp/lib"
_VERIFIED_FOR = 60.0  # seconds a password that matched a hash is believed without argon2 again (per process)
_verified: dict[tuple[str, str], float] = {}  # (hash, sha256 of the password) -> when it last matched


@dataclass(frozen=True)
class PublishChange:
    """What a create or update makes of `publish_info`: the stored members, the password hash to keep, and the hash
    the change was checked against (the update applies only while the library still has that one)."""

    info: dict[str, Any]
    password_hash: str | None
    checked_hash: str | None


def publish_url(base_url: str, library_id: str) -> str:
    return f"{base_url}{FEED_PATH}/{library_id}/lib.json"


def render(info: dict[str, Any] | None, library_id: str, base_url: str) -> dict[str, Any] | None:
    """`publish_info` as `get` returns it: every member the contract says is always present, `publish_url` while
    the library is published (and the caller's address makes a URI of it), never a password."""
    if info is None:
        return None
    out: dict[str, Any] = {
        "authentication_method": info.get("authentication_method") or "NONE",
        "published": info.get("published") is True,
        "persist_json_enabled": info.get("persist_json_enabled") is True,
        "user_name": USER_NAME,
    }
    if out["published"]:
        url = publish_url(base_url, library_id)
        with contextlib.suppress(errors.ApiError):  # a Host header that makes no URI: rather no member than a bad one
            out["publish_url"] = check_uri(url, "publish_url")
    return out


def _check_user_name(spec: PublishInfo, field: str) -> None:
    if spec.user_name is not None and spec.user_name != USER_NAME:
        raise errors.invalid_argument(
            f"{field}.user_name must be '{USER_NAME}' (or left unset): subscribers authenticate as '{USER_NAME}'.",
            f"{field}.user_name",
        )
    if spec.publish_url is not None:  # not used for create or update: checked, never stored (get computes it)
        check_uri(spec.publish_url, f"{field}.publish_url")


async def _hash(password: str | None, method: str, field: str) -> str | None:
    if password is None:
        return None
    if not password and method == "BASIC":
        raise errors.invalid_argument(
            f"{field}.password must not be empty when authentication_method is BASIC.", f"{field}.password"
        )
    return str(await run_blocking(hash_password, password)) if password else None


async def for_create(spec: PublishInfo | None, field: str = "create_spec.publish_info") -> PublishChange | None:
    """The stored form of a new library's `publish_info`: `authentication_method` defaults to NONE and `published`
    to false; BASIC needs a non-empty password. `current_password` is unused for create."""
    if spec is None:
        return None
    _check_user_name(spec, field)
    method = spec.authentication_method or "NONE"
    password_hash = await _hash(spec.password, method, field)
    if method == "BASIC" and password_hash is None:
        raise errors.invalid_argument(
            f"{field}.password is required when authentication_method is BASIC: it is the password subscribers "
            f"give (as user '{USER_NAME}').",
            f"{field}.password",
        )
    info = {
        "authentication_method": method,
        "published": spec.published is True,
        "persist_json_enabled": spec.persist_json_enabled is True,
    }
    return PublishChange(info, password_hash, None)


async def for_update(
    current: dict[str, Any] | None, current_hash: str | None, spec: PublishInfo, field: str = "update_spec.publish_info"
) -> PublishChange:
    """The stored form after an update: members left unset keep their value. With BASIC in force (and a password
    kept), a new password, a switch to NONE or unpublishing needs `current_password` to match."""
    _check_user_name(spec, field)
    old = current or {}
    old_method = old.get("authentication_method") or "NONE"
    method = spec.authentication_method or old_method
    published = old.get("published") is True if spec.published is None else spec.published
    persist = spec.persist_json_enabled if spec.persist_json_enabled is not None else old.get("persist_json_enabled")
    guarded = []
    if spec.password is not None:
        guarded.append("changing the password")
    if method == "NONE" and old_method == "BASIC":
        guarded.append("turning authentication off")
    if old.get("published") is True and not published:
        guarded.append("unpublishing the library")
    if guarded and old_method == "BASIC" and current_hash is not None:
        if spec.current_password is None:
            raise errors.invalid_argument(
                f"{field}.current_password is required: the library is protected by BASIC authentication, and "
                f"{' and '.join(guarded)} needs its current password.",
                f"{field}.current_password",
            )
        if not await verify(current_hash, spec.current_password):
            raise errors.invalid_argument(
                f"{field}.current_password does not match the existing password of the published library.",
                f"{field}.current_password",
            )
    password_hash = await _hash(spec.password, method, field) if spec.password is not None else current_hash
    # A library published with BASIC before schema 6 has no password: it may be unpublished as it is (nothing then
    # serves it), anything else that keeps BASIC must give it one.
    if method == "BASIC" and password_hash is None and (published or old_method != "BASIC"):
        raise errors.invalid_argument(
            f"{field}.password is required to use BASIC authentication: the library has no password yet.",
            f"{field}.password",
        )
    info = {"authentication_method": method, "published": published, "persist_json_enabled": persist is True}
    return PublishChange(info, password_hash, current_hash)


async def verify(password_hash: str, password: str) -> bool:
    """Whether `password` matches the argon2 hash. A match is remembered for a minute in this process, keyed by the
    hash itself: a subscriber's sync is many requests, each with the password, and argon2 costs tens of
    milliseconds. Every worker reads the hash from the database per request, so a changed password (a new hash)
    is never matched by what another worker remembers."""
    key = (password_hash, hashlib.sha256(password.encode()).hexdigest())
    now = time.monotonic()
    seen = _verified.get(key)
    if seen is not None and now - seen < _VERIFIED_FOR:
        return True
    if not await run_blocking(_verify, password_hash, password):
        return False
    if len(_verified) > 1024:  # bounded: forget everything rather than grow
        _verified.clear()
    _verified[key] = now
    return True
