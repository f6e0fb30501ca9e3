"""A small /api client over aiohttp: the session header, the TLS choice, errors as exit codes.

TLS: `--insecure` verifies nothing; `--thumbprint` pins the server's certificate (SHA-1 as vCenter shows it, or
SHA-256) the way a subscription pins its publisher (services/vcsp_client.py: one handshake of its own, then every
request pins that certificate's SHA-256); otherwise the system's CAs (plus `--ca-file`) verify it.
"""

from __future__ import annotations

import hashlib
import ssl
import urllib.parse
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
import msgspec

from contentlib.services import vcsp_client

# Exit codes (docs/cli.md).
OK, ERROR, USAGE, AUTH, NOT_FOUND, CONFLICT, TRANSFER, CONNECT, INTERRUPTED = 0, 1, 2, 3, 4, 5, 6, 7, 130
SESSION_HEADER = "vmware-api-session-id"

_CODES = {
    "UNAUTHENTICATED": AUTH,
    "NOT_FOUND": NOT_FOUND,
    "OPERATION_NOT_FOUND": NOT_FOUND,
    "ALREADY_EXISTS": CONFLICT,
    "NOT_ALLOWED_IN_CURRENT_STATE": CONFLICT,
    "RESOURCE_BUSY": CONFLICT,
    "RESOURCE_IN_USE": CONFLICT,
    "CONCURRENT_CHANGE": CONFLICT,
    "INVALID_ARGUMENT": USAGE,
}


class CliError(Exception):
    """What the user is told on stderr, and the exit status."""

    def __init__(self, message: str, code: int = ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ApiError(CliError):
    """An /api error: `error_type: message`."""

    def __init__(self, status: int, error_type: str, text: str, value: Any = None) -> None:
        code = _CODES.get(error_type, ERROR)
        if error_type == "UNAUTHENTICATED":
            text = f"{text} (log in again: contentlib login URL)"
        super().__init__(f"{error_type}: {text}", code)
        self.status = status
        self.error_type = error_type
        self.value = value


@dataclass(frozen=True)
class Tls:
    insecure: bool = False
    thumbprint: str | None = None
    ca_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"insecure": self.insecure, "thumbprint": self.thumbprint, "ca_file": self.ca_file}

    @staticmethod
    def from_json(value: dict[str, Any]) -> Tls:
        return Tls(bool(value.get("insecure")), value.get("thumbprint"), value.get("ca_file"))


def normalize_url(url: str) -> str:
    """`host`, `host:port`, `https://host/` or `https://host/api` → `https://host[:port]`."""
    if "://" not in url:
        url = "https://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"{url!r} is not an http or https URL of a server.", USAGE)
    path = parts.path.rstrip("/")
    if path.endswith("/api"):
        path = path[: -len("/api")]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


async def ssl_for(url: str, tls: Tls) -> aiohttp.Fingerprint | ssl.SSLContext | bool:
    """What every request to `url` passes as `ssl=`, after checking the server's certificate once."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https":
        return True
    if tls.insecure:
        return False
    host, port = parts.hostname or "", parts.port or 443
    try:
        if tls.thumbprint:
            der = await vcsp_client.handshake(host, port, vcsp_client.unverified_context())
            if not vcsp_client.thumbprint_matches(tls.thumbprint, der):
                raise CliError(
                    f"The certificate of {host}:{port} (SHA-1 thumbprint {vcsp_client.sha1_thumbprint(der)}) does "
                    f"not match the thumbprint {tls.thumbprint}.",
                    CONNECT,
                )
            return aiohttp.Fingerprint(hashlib.sha256(der).digest())
        context = ssl.create_default_context(cafile=tls.ca_file)
        try:
            await vcsp_client.handshake(host, port, context)
        except ssl.SSLCertVerificationError as e:
            der = await vcsp_client.handshake(host, port, vcsp_client.unverified_context())
            raise CliError(
                f"The certificate of {host}:{port} is not trusted ({e.verify_message}): log in with --thumbprint "
                f"{vcsp_client.sha1_thumbprint(der)} to pin it, --ca-file, or --insecure.",
                CONNECT,
            ) from None
        return context
    except vcsp_client.ProbeError as e:
        raise CliError(e.text, CONNECT) from None


def api_error(status: int, body: bytes, what: str) -> ApiError:
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("error_type"), str):
        messages = value.get("messages") or []
        text = "; ".join(str(m.get("default_message", "")) for m in messages if isinstance(m, dict)) or what
        return ApiError(status, value["error_type"], text, value)
    kind = {401: "UNAUTHENTICATED", 403: "UNAUTHORIZED", 404: "NOT_FOUND"}.get(status, "ERROR")
    return ApiError(status, kind, f"{what}: HTTP {status} {body[:200].decode(errors='replace')}".strip(), value)


class Client:
    """One conversation with a server: `async with Client(url, tls, session_id) as api: await api.get(...)`."""

    def __init__(self, url: str, tls: Tls, session_id: str | None = None) -> None:
        self.url = url
        self.tls = tls
        self.session_id = session_id
        self.ssl: aiohttp.Fingerprint | ssl.SSLContext | bool = True
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        self.ssl = await ssl_for(self.url, self.tls)
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(sock_connect=30, sock_read=300), trust_env=False
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._http is not None:
            await self._http.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "use the client in `async with`"
        return self._http

    def headers(self) -> dict[str, str]:
        return {SESSION_HEADER: self.session_id} if self.session_id else {}

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        auth: aiohttp.BasicAuth | None = None,
    ) -> Any:
        """One /api request; its decoded JSON (None for an empty body), or ApiError."""
        url = self.url + path
        data = msgspec.json.encode(body) if body is not None else None
        headers = self.headers()
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self.http.request(
                method, url, data=data, params=params, headers=headers, auth=auth, ssl=self.ssl
            ) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise api_error(resp.status, raw, f"{method} {path}")
        except aiohttp.ServerFingerprintMismatch:
            raise CliError(f"The certificate of {self.url} changed since login: log in again.", CONNECT) from None
        except aiohttp.ClientConnectorError as e:
            raise CliError(f"Cannot connect to {self.url}: {e.os_error.strerror or e}", CONNECT) from None
        except (aiohttp.ClientError, TimeoutError) as e:
            raise CliError(f"{method} {path} failed: {e.__class__.__name__} {e}", CONNECT) from None
        return msgspec.json.decode(raw) if raw.strip() else None

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        return await self.call("GET", path, params=params)

    async def post(self, path: str, body: Any = None, action: str | None = None) -> Any:
        return await self.call("POST", path, body, {"action": action} if action else None)

    async def patch(self, path: str, body: Any) -> Any:
        return await self.call("PATCH", path, body)

    async def delete(self, path: str) -> Any:
        return await self.call("DELETE", path)
