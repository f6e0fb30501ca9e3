"""Reading a VCSP publisher (a published library of a vCenter, of this server, or a tree of static files): what a
subscribed library synchronizes from. docs/vcsp.md describes the format.

A connection checks who it talks to once, before it reads anything: over https it takes the server's certificate
in a handshake of its own and holds it against `SubscriptionInfo.ssl_thumbprint` (SHA-1, as vCenter shows it, or
SHA-256) when one is given, else against the system's CAs and this server's trusted certificates. Every request
after that, the file transfers included, pins that very certificate (its SHA-256), so a server that changes its
certificate mid-sync is refused. What goes wrong is a `ProbeError` whose status is one of
`SubscribedLibrary.ProbeResult.Status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import ssl
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec

_CONNECT_TIMEOUT = 15.0  # seconds to reach the publisher
_READ_TIMEOUT = 60.0  # seconds without a byte from it
_LIB_MAX = 1 << 20  # bytes of a lib.json or item.json
_ITEMS_MAX = 128 << 20  # bytes of an items.json (10,000 items are a few MB)
DEFAULT_USER = "vcsp"


class ProbeError(Exception):
    """Why a publisher cannot be read: `status` as ProbeResult.Status names it, `text` for people, and the SSL
    thumbprint the server showed (SHA-1, colon-separated) when its certificate is the problem."""

    def __init__(self, status: str, text: str, thumbprint: str | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.thumbprint = thumbprint


@dataclass(frozen=True)
class Subscription:
    url: str  # the lib.json
    user: str | None = None  # BASIC authentication when a password is set
    password: str | None = None
    thumbprint: str | None = None
    trusted: tuple[str, ...] = ()  # PEM certificates trusted besides the system's CAs


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int | None
    url: str


@dataclass(frozen=True)
class RemoteItem:
    id: str
    name: str
    description: str
    type: str  # vcsp.ovf, vcsp.iso, vcsp.other
    version: str
    content_version: str
    url: str  # its item.json
    files: tuple[RemoteFile, ...] = ()

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = msgspec.to_builtins(self)
        return value

    @staticmethod
    def from_json(value: dict[str, Any]) -> RemoteItem:
        return msgspec.convert(value, RemoteItem)

    @property
    def item_type(self) -> str | None:
        """The item type a library item gets: what `content.type` names (ovf, iso), none for other files."""
        return {"vcsp.ovf": "ovf", "vcsp.iso": "iso"}.get(self.type)


def sha1_thumbprint(der: bytes) -> str:
    return ":".join(f"{b:02X}" for b in hashlib.sha1(der).digest())


def thumbprint_matches(pin: str, der: bytes) -> bool:
    """Whether `pin` (a SHA-1 or SHA-256 thumbprint, colons and spaces optional) is that of the certificate `der`."""
    digest = pin.replace(":", "").replace(" ", "").lower()
    return digest in (hashlib.sha1(der).hexdigest(), hashlib.sha256(der).hexdigest())


def check_url(url: str) -> urllib.parse.SplitResult:
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise ProbeError("INVALID_URL", f"The subscription URL {url!r} holds a space or a control character.")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ProbeError("INVALID_URL", f"The subscription URL {url!r} is not a valid URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProbeError("INVALID_URL", f"The subscription URL {url!r} is not an http or https URL of a VCSP lib.json.")
    return parts


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ProbeError("UNKNOWN_ERROR", f"The publisher's feed is not valid: {what} is not a string.")
    return value


def _version(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ProbeError("UNKNOWN_ERROR", f"The publisher's feed is not valid: {what} is not a version.")
    return str(value)


@dataclass
class Publisher:
    """One conversation with a publisher: `open`, then `library`, `items`, `item`."""

    http: aiohttp.ClientSession
    subscription: Subscription
    certificate: str | None = None  # PEM of the server's certificate (https), once open
    _ssl: aiohttp.Fingerprint | bool = True
    _auth: aiohttp.BasicAuth | None = field(default=None, repr=False)

    async def open(self) -> Publisher:
        parts = check_url(self.subscription.url)
        if self.subscription.password:
            try:
                user = self.subscription.user or DEFAULT_USER
                self._auth = aiohttp.BasicAuth(user, self.subscription.password, encoding="utf-8")
                self._auth.encode()
            except ValueError as e:  # a ':' in the user name, text that is not UTF-8
                raise ProbeError(
                    "INVALID_CREDENTIALS", f"The subscription's credentials cannot be sent: {e}."
                ) from None
        if parts.scheme == "https":
            der = await self._certificate(parts.hostname or "", parts.port or 443)
            self.certificate = ssl.DER_cert_to_PEM_cert(der)
            self._ssl = aiohttp.Fingerprint(hashlib.sha256(der).digest())
        return self

    async def _certificate(self, host: str, port: int) -> bytes:
        pin = self.subscription.thumbprint
        if pin:
            der = await handshake(host, port, unverified_context())
            if not thumbprint_matches(pin, der):
                raise ProbeError(
                    "CERTIFICATE_ERROR",
                    f"The certificate of {host}:{port} (SHA-1 thumbprint {sha1_thumbprint(der)}) does not match "
                    f"the subscription's ssl_thumbprint {pin}.",
                    sha1_thumbprint(der),
                )
            return der
        context = ssl.create_default_context()
        if self.subscription.trusted:
            context.load_verify_locations(cadata="\n".join(self.subscription.trusted))
        try:
            return await handshake(host, port, context)
        except ssl.SSLCertVerificationError as e:
            der = await handshake(host, port, unverified_context())
            raise ProbeError(
                "CERTIFICATE_ERROR",
                f"The certificate of {host}:{port} is not trusted ({e.verify_message}): give its SHA-1 thumbprint "
                f"{sha1_thumbprint(der)} as ssl_thumbprint, or add it to the trusted certificates.",
                sha1_thumbprint(der),
            ) from None

    @property
    def transfer_endpoint(self) -> dict[str, Any]:
        """What a PULL of one of the publisher's files needs besides its URI (the certificate to pin)."""
        return {"ssl_certificate": self.certificate} if self.certificate else {}

    @property
    def auth(self) -> aiohttp.BasicAuth | None:
        return self._auth

    @property
    def thumbprint(self) -> str | None:
        """The SHA-1 thumbprint of the server's certificate (https), as vCenter shows one."""
        return sha1_thumbprint(ssl.PEM_cert_to_DER_cert(self.certificate)) if self.certificate else None

    async def get_json(self, url: str, limit: int) -> Any:
        try:
            async with self.http.get(
                url,
                ssl=self._ssl,
                auth=self._auth,
                timeout=aiohttp.ClientTimeout(sock_connect=_CONNECT_TIMEOUT, sock_read=_READ_TIMEOUT),
            ) as resp:
                if resp.status in (401, 403):
                    raise ProbeError(
                        "INVALID_CREDENTIALS", f"{url} refused the subscription's credentials (HTTP {resp.status})."
                    )
                if resp.status == 404:
                    raise ProbeError("RESOURCE_NOT_FOUND", f"{url} was not found (HTTP 404).")
                if resp.status != 200:
                    raise ProbeError("UNKNOWN_ERROR", f"{url} answered HTTP {resp.status} {resp.reason}.")
                if resp.content_length is not None and resp.content_length > limit:
                    raise ProbeError("UNKNOWN_ERROR", f"{url} is larger than {limit} bytes.")
                body = bytearray()
                async for chunk in resp.content.iter_any():
                    body += chunk
                    if len(body) > limit:
                        raise ProbeError("UNKNOWN_ERROR", f"{url} is larger than {limit} bytes.")
        except ProbeError:
            raise
        except aiohttp.ServerFingerprintMismatch:
            raise ProbeError("CERTIFICATE_ERROR", f"The certificate of {url} changed during the sync.") from None
        except aiohttp.ClientConnectorError as e:
            raise _connect_error(url, e.os_error) from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise ProbeError("TIMED_OUT", f"{url} did not answer in time.") from None
        except (aiohttp.ClientError, OSError) as e:
            raise ProbeError("UNKNOWN_ERROR", f"Reading {url} failed: {e.__class__.__name__} {e}.") from None
        try:
            return msgspec.json.decode(bytes(body))
        except msgspec.DecodeError:
            raise ProbeError("RESOURCE_NOT_FOUND", f"{url} is not a VCSP document (not JSON).") from None

    async def library(self) -> dict[str, Any]:
        """lib.json, checked: a VCSP library descriptor (version 1 or 2)."""
        lib = await self.get_json(self.subscription.url, _LIB_MAX)
        if not isinstance(lib, dict) or "vcspVersion" not in lib or not isinstance(lib.get("itemsHref"), str):
            raise ProbeError(
                "RESOURCE_NOT_FOUND",
                f"{self.subscription.url} is not a VCSP library descriptor (no vcspVersion and itemsHref).",
            )
        if str(lib["vcspVersion"]) not in ("1", "2"):
            raise ProbeError("UNKNOWN_ERROR", f"The publisher speaks VCSP version {lib['vcspVersion']}, not 1 or 2.")
        lib["version"] = _version(lib.get("version"), "lib.json version")
        return lib

    async def items(self, lib: dict[str, Any]) -> list[RemoteItem]:
        url = urllib.parse.urljoin(self.subscription.url, lib["itemsHref"])
        doc = await self.get_json(url, _ITEMS_MAX)
        entries = doc.get("items") if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            raise ProbeError("UNKNOWN_ERROR", f"{url} is not a VCSP item index (no items list).")
        return [self._item(entry, None) for entry in entries]

    async def item(self, url: str) -> RemoteItem | None:
        """The item at its item.json, None if the publisher no longer has it."""
        try:
            return self._item(await self.get_json(url, _LIB_MAX), url)
        except ProbeError as e:
            if e.status == "RESOURCE_NOT_FOUND":
                return None
            raise

    def _item(self, entry: Any, url: str | None) -> RemoteItem:
        if not isinstance(entry, dict):
            raise ProbeError("UNKNOWN_ERROR", "The publisher's feed is not valid: an item is not an object.")
        ident = _text(entry.get("id"), "an item's id")
        ident = ident[len("urn:uuid:") :] if ident.startswith("urn:uuid:") else ident
        base = self.subscription.url
        self_href = entry.get("selfHref")
        files = entry.get("files") or []
        if not isinstance(files, list):
            raise ProbeError("UNKNOWN_ERROR", f"The publisher's feed is not valid: the files of item {ident}.")
        remote_files = []
        for f in files:
            if not isinstance(f, dict) or not isinstance(f.get("hrefs"), list) or not f["hrefs"]:
                raise ProbeError("UNKNOWN_ERROR", f"The publisher's feed is not valid: a file of item {ident}.")
            size = f.get("size")
            remote_files.append(
                RemoteFile(
                    _text(f.get("name"), "a file's name"),
                    size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
                    urllib.parse.urljoin(base, _text(f["hrefs"][0], "a file's href")),
                )
            )
        return RemoteItem(
            id=ident,
            name=_text(entry.get("name"), "an item's name"),
            description=str(entry.get("description") or ""),
            type=str(entry.get("type") or "vcsp.other"),
            version=_version(entry.get("version"), f"the version of item {ident}"),
            content_version=_version(entry.get("contentVersion", entry.get("version")), f"item {ident}"),
            url=url or urllib.parse.urljoin(base, self_href if isinstance(self_href, str) else f"{ident}/item.json"),
            files=tuple(remote_files),
        )


def unverified_context() -> ssl.SSLContext:
    """A client context that checks nothing: for reading a certificate whose thumbprint is compared after."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def handshake(host: str, port: int, context: ssl.SSLContext) -> bytes:
    """The certificate `host:port` shows in a TLS handshake under `context`."""
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host), _CONNECT_TIMEOUT
        )
    except ssl.SSLCertVerificationError:
        raise
    except TimeoutError:
        raise ProbeError("TIMED_OUT", f"{host}:{port} did not answer within {_CONNECT_TIMEOUT:g} seconds.") from None
    except ssl.SSLError as e:
        raise ProbeError("CERTIFICATE_ERROR", f"The TLS handshake with {host}:{port} failed: {e}.") from None
    except OSError as e:
        raise _connect_error(f"{host}:{port}", e) from None
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    if not der:
        raise ProbeError("CERTIFICATE_ERROR", f"{host}:{port} showed no certificate.")
    return bytes(der)


def _connect_error(where: str, e: OSError | None) -> ProbeError:
    if isinstance(e, socket.gaierror):
        return ProbeError("HOST_NOT_FOUND", f"The host of {where} was not found: {e.strerror or e}.")
    if isinstance(e, TimeoutError):
        return ProbeError("TIMED_OUT", f"{where} did not answer in time.")
    return ProbeError("UNKNOWN_ERROR", f"Cannot connect to {where}: {(e.strerror if e else None) or e}.")
