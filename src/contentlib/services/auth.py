"""Users and API sessions (`com.vmware.cis.session`).

Passwords are argon2 hashes; verifying one costs tens of milliseconds, so it runs in a worker thread. Checking a
session id happens on every request, so recent answers are kept in memory for a moment and `last_accessed` is
written back to the database at most once per `_TOUCH_EVERY` seconds of a session's use.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from contentlib import errors
from contentlib.model import fmt_time
from contentlib.operations import Operation
from contentlib.services import roles
from contentlib.services.core import Core, Ctx
from contentlib.transfer import run_blocking

# OWASP's argon2id minimum (19 MiB, 2 passes): a login costs ~20 ms and little memory.
log = logging.getLogger("contentlib.auth")

_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_DUMMY_HASH = _hasher.hash("timing-equaliser")
_CACHE_SECONDS = 2.0


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify(hash_: str, password: str) -> bool:
    try:
        return _hasher.verify(hash_, password)
    except (VerificationError, InvalidHashError):
        return False


_THROTTLE_AFTER = 3  # failed logins in a row for one user name before its attempts are slowed down
_THROTTLE_MAX = 5.0  # seconds: the longest an attempt is held back
_THROTTLE_FORGET = 900.0  # seconds after the last failure when a user name's count starts over


def throttle_delay(count: int, last: float, now: float) -> float:
    """How long the next login attempt for a user name waits, after `count` failures in a row, the last at `last`:
    after a few, each further attempt waits 0.25 s, 0.5 s, 1 s, ... up to 5 s before its password is even checked.
    Only that name is slowed down, so guessing one user's password cannot lock the other users out."""
    if now - last > _THROTTLE_FORGET:
        return 0.0
    excess = count - _THROTTLE_AFTER
    return 0.0 if excess < 0 else min(_THROTTLE_MAX, 0.25 * 2.0**excess)


@dataclass(frozen=True)
class Principal:
    """A caller whose password or session id checked out, with the role their user has now."""

    user: str
    role: str


@dataclass(frozen=True)
class SessionView:
    """An API session as SessionManager.sessionList shows it."""

    id: str
    user: str
    created: float
    last_accessed: float


class Revocations:
    """A value that changes whenever an API session ends or a user's access changes, shared by every process of
    this server on its machine: 8 bytes of a file in the data dir, mapped shared. Each process drops its cache of
    session answers when the value moved, so a logout on one worker counts at once on the others (other machines of
    a cluster rely on the cache's two-second limit). Each change writes fresh random bytes, not a count: two
    processes changing it at once cannot make it look unchanged to a third."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)
            self._map = mmap.mmap(fd, 8)
        finally:
            os.close(fd)
        self._seen = self._map[:8]

    def changed(self) -> bool:
        """Whether the value moved since this process last looked."""
        now = self._map[:8]
        if now == self._seen:
            return False
        self._seen = now
        return True

    def bump(self) -> None:
        self._map[:8] = secrets.token_bytes(8)


def revocations(data_dir: Path) -> Revocations:
    return Revocations(data_dir / "api-sessions.epoch")


@dataclass
class _Cached:
    user: str
    role: str
    created: float
    last_accessed: float
    stored_last_accessed: float
    checked: float
    ctx: Ctx | None = None  # the context the session's last call got


class Auth:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.cache: dict[str, _Cached] = {}
        self.revocations = revocations(core.settings.data_dir)
        self.touch_every = min(30.0, core.settings.api_session_timeout / 10)

    async def session_context(self, op: Operation, sid: str | None, base_url: str) -> Ctx:
        """The context of a call made with a session id, after authenticating and authorizing it for `op`. The
        session's entry keeps the context it gave last (it is rebuilt with the entry, so with a changed role)."""
        entry = await self._check(sid)
        ctx = entry.ctx
        if ctx is None or ctx.base_url != base_url:
            ctx = entry.ctx = Ctx(
                entry.user, base_url, sid or "", role=entry.role, privileges=roles.privileges(entry.role)
            )
        if not ctx.privileges.issuperset(op.privileges):
            ctx.require(op.privileges, f"{op.service}.{op.name}")
        return ctx

    async def password_context(self, op: Operation, credentials: tuple[str, str] | None, base_url: str) -> Ctx:
        """The context of a call that carries its own user name and password (JSON-RPC), authorized for `op`."""
        return self._authorized(op, await self.authenticate(credentials), base_url, "")

    @staticmethod
    def _authorized(op: Operation, who: Principal, base_url: str, sid: str) -> Ctx:
        ctx = Ctx(who.user, base_url, sid, role=who.role, privileges=roles.privileges(who.role))
        ctx.require(op.privileges, f"{op.service}.{op.name}")
        return ctx

    async def authenticate(self, credentials: tuple[str, str] | None) -> Principal:
        """The user for a user name and password (from whichever protocol), or UNAUTHENTICATED."""
        if credentials is None:
            raise errors.unauthenticated("Authentication required: send a user name and password.")
        user, password = credentials
        key = user.lower()
        store = self.core.store
        failures = await store.login_failures(key)  # counted in the database: every worker and replica sees them
        if failures is not None and (delay := throttle_delay(failures["count"], failures["last"], self.core.now())):
            await asyncio.sleep(delay)  # repeated failures for this user name: answer its next attempts slowly
        row = await store.get_user(user)
        ok = await run_blocking(_verify, row["password_hash"] if row else _DUMMY_HASH, password)
        if not row or not ok:
            now = self.core.now()
            count = await store.record_login_failure(key, now, now - _THROTTLE_FORGET)
            if count >= _THROTTLE_AFTER:
                log.warning("login failed %d times in a row for user %r: throttling its attempts", count, user)
            raise errors.unauthenticated("Authentication failed: the user name or password is not valid.")
        if failures is not None:  # a success clears the count
            await store.clear_login_failures(key)
        return Principal(str(row["name"]), str(row["role"]))

    async def login(self, credentials: tuple[str, str] | None) -> str:
        """`com.vmware.cis.session.create` → a new session id."""
        who = await self.authenticate(credentials)
        sid = secrets.token_hex(16)
        now = self.core.now()
        await self.core.store.create_api_session(sid, who.user, now)
        self.cache[sid] = _Cached(who.user, who.role, now, now, now, now)
        return sid

    async def check(self, sid: str | None) -> Principal:
        """The user behind a `vmware-api-session-id`, refreshing its idle timer; else UNAUTHENTICATED. The user's
        role is read again with the session every couple of seconds, so a changed role or a removed user counts
        on every replica within that time."""
        entry = await self._check(sid)
        return Principal(entry.user, entry.role)

    async def _check(self, sid: str | None) -> _Cached:
        if not sid:
            raise errors.unauthenticated(
                "This operation requires an authenticated session: send the vmware-api-session-id header."
            )
        now = self.core.now()
        if self.revocations.changed():
            self.cache.clear()
        entry = self.cache.get(sid)
        if entry is None or now - entry.checked > _CACHE_SECONDS:
            row = await self.core.store.get_api_session(sid)
            if row is None:
                self.cache.pop(sid, None)
                raise errors.unauthenticated("The session is not authenticated: unknown or expired session id.")
            last = max(row["last_accessed"], entry.last_accessed if entry else 0.0)
            entry = _Cached(row["owner"], row["role"], row["created"], last, row["last_accessed"], now)
            self.cache[sid] = entry
        if now - entry.last_accessed > self.core.settings.api_session_timeout:
            await self.logout(sid)
            raise errors.unauthenticated(
                "The session is not authenticated: it expired after "
                f"{self.core.settings.api_session_timeout:g} seconds without use."
            )
        entry.last_accessed = now
        if now - entry.stored_last_accessed > self.touch_every:
            entry.stored_last_accessed = now
            await self.core.store.touch_api_session(sid, now)
        return entry

    def view(self, sid: str) -> SessionView | None:
        """The session `check` has just let through (None if it was logged out since)."""
        entry = self.cache.get(sid)
        return None if entry is None else SessionView(sid, entry.user, entry.created, entry.last_accessed)

    async def sessions_of(self, user: str) -> list[SessionView]:
        """The user's sessions that have not expired, with this process's latest use of each."""
        now = self.core.now()
        views = []
        for row in await self.core.store.list_api_sessions(user):
            entry = self.cache.get(row["id"])
            last = max(row["last_accessed"], entry.last_accessed if entry else 0.0)
            if now - last <= self.core.settings.api_session_timeout:
                views.append(SessionView(row["id"], row["owner"], row["created"], last))
        return views

    async def is_active(self, sid: str, user: str) -> bool:
        """Whether `sid` is an open session of `user` (without counting as a use of it)."""
        row = await self.core.store.get_api_session(sid)
        if row is None or str(row["owner"]).lower() != user.lower():
            return False
        entry = self.cache.get(sid)
        last = max(row["last_accessed"], entry.last_accessed if entry else 0.0)
        return bool(self.core.now() - last <= self.core.settings.api_session_timeout)

    async def info(self, sid: str) -> dict[str, Any]:
        entry = self.cache[sid]
        return {
            "user": entry.user,
            "created_time": fmt_time(entry.created),
            "last_accessed_time": fmt_time(entry.last_accessed),
        }

    async def logout(self, sid: str) -> None:
        self.cache.pop(sid, None)
        await self.core.store.delete_api_session(sid)
        self.revocations.bump()

    async def sweep(self) -> None:
        now = self.core.now()
        for sid, entry in list(self.cache.items()):
            if now - entry.last_accessed > self.core.settings.api_session_timeout:
                self.cache.pop(sid, None)
            elif entry.last_accessed > entry.stored_last_accessed:
                entry.stored_last_accessed = entry.last_accessed
                await self.core.store.touch_api_session(sid, entry.last_accessed)
        await self.core.store.delete_idle_api_sessions(now - self.core.settings.api_session_timeout)
        await self.core.store.forget_login_failures(now - _THROTTLE_FORGET)
