"""Static VCSP trees for the tests (issue 12 point 3): a tree written by tools/make_vcsp.py and served as plain files,
the way a VCSP endpoint is often hosted (a web server or an S3 bucket in front of a directory).

    root = build_tree(tmp_path / "tree", {"ubuntu": {"ubuntu.iso": data}, ...}, name="static")
    with StaticServer(root) as srv:                         # `python -m http.server`, as it is
        srv.url                                             # the subscription URL: .../lib.json
    with StaticServer(root, password="pw", tls=tmp_path) as srv:   # this module's server: Basic auth, HTTPS
        srv.thumbprint("sha1"), srv.cert_pem                 # for subscription_info.ssl_thumbprint / ssl_certificate

`StaticServer` runs the server in a subprocess. Without a password or TLS it is the standard library's own
`python -m http.server --bind 127.0.0.1 PORT --directory DIR` (which, in Python 3.11, ignores Range: a ranged GET
gets 200 and the whole file). With `password` (user `vcsp`, as vCenter subscribers send) or `tls` (a self-signed
certificate for 127.0.0.1, made here with `cryptography`), or with `ranges=True`, it is this file run as a script: a
small `http.server.SimpleHTTPRequestHandler` subclass that asks for Basic credentials on every path (401 with a
`Basic realm="vcsp"` challenge otherwise) and answers a single byte range with 206 (416 past the end).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import email.utils
import hashlib
import hmac
import http.server
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Literal
from urllib.parse import urljoin

import requests

ROOT = Path(__file__).resolve().parents[1]
MAKE_VCSP = ROOT / "tools" / "make_vcsp.py"
USER = "vcsp"
PASSWORD_ENV = "VCSPTREE_PASSWORD"  # the password reaches the server process in its environment, not in argv


# -- the tree --------------------------------------------------------------------------------------------------------
def run_make_vcsp(root: Path, name: str = "static", *args: str) -> subprocess.CompletedProcess[str]:
    """tools/make_vcsp.py as a user runs it; its exit status and output, unchecked."""
    cmd = [sys.executable, str(MAKE_VCSP), "--name", name, *args, str(root)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def make_vcsp(root: Path, name: str = "static", *args: str) -> str:
    """Run the tool and require success; its one line of output."""
    done = run_make_vcsp(root, name, *args)
    assert done.returncode == 0 and done.stderr == "", (done.returncode, done.stdout, done.stderr)
    return done.stdout.strip()


def write_items(root: Path, items: dict[str, dict[str, bytes]]) -> None:
    """Item directories with their files (an existing directory gets these files added or replaced)."""
    for item, files in items.items():
        (root / item).mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (root / item / name).write_bytes(data)


def build_tree(root: Path, items: dict[str, dict[str, bytes]], name: str = "static") -> Path:
    """A VCSP tree at `root`: the item directories, then the tool's documents."""
    root.mkdir(parents=True, exist_ok=True)
    write_items(root, items)
    make_vcsp(root, name)
    return root


# -- certificates ----------------------------------------------------------------------------------------------------
def self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and localhost) and its key, as PEM files in `directory`: the one
    the server makes for itself (contentlib.tls), so a test pins the kind of certificate a publisher serves."""
    from contentlib.tls import ensure_self_signed

    directory.mkdir(parents=True, exist_ok=True)
    return ensure_self_signed(directory)


def thumbprint(der: bytes, algorithm: str = "sha1") -> str:
    """A certificate's thumbprint in vCenter's form, `AA:BB:...` (uppercase hex pairs joined by colons, as the
    server prints its own in tls.fingerprint). `subscription_info.ssl_thumbprint` is documented as SHA-256, with
    SHA-1 "supported for backward compatibility"; vCenter's older releases use SHA-1."""
    return ":".join(f"{b:02X}" for b in hashlib.new(algorithm, der).digest())


# -- what a subscriber reads ----------------------------------------------------------------------------------------
def http_session() -> requests.Session:
    s = requests.Session()
    s.verify = False
    s.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    return s


class Feed:
    """A subscriber's view of one VCSP feed: everything fetched relative to the subscription URL (lib.json)."""

    def __init__(self, url: str, auth: tuple[str, str] | None = None, verify: bool | str = False) -> None:
        self.url = url
        self.http = http_session()
        self.http.verify = verify
        self.auth = auth

    def get(self, href: str = "lib.json", **kw: Any) -> requests.Response:
        kw.setdefault("auth", self.auth)
        return self.http.get(urljoin(self.url, href), timeout=30, **kw)

    def json(self, href: str = "lib.json") -> dict[str, Any]:
        r = self.get(href)
        assert r.status_code == 200, (href, r.status_code, r.text[:300])
        assert r.headers["Content-Type"].startswith("application/json"), r.headers
        return dict(r.json())

    def version(self) -> int:
        return int(self.json()["version"])

    def feed(self) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """lib.json and the items of items.json by name, each checked against its own item.json."""
        lib = self.json()
        listed = self.json(lib["itemsHref"])
        assert set(listed) == {"items"}, listed
        items = {}
        for item in listed["items"]:
            assert self.json(item["selfHref"]) == item
            items[item["name"]] = item
        return lib, items

    def items(self) -> dict[str, dict[str, Any]]:
        return self.feed()[1]


# -- the server ------------------------------------------------------------------------------------------------------
class StaticServer:
    """A static HTTP(S) file server for `directory` in a subprocess on a free loopback port (a context manager)."""

    def __init__(
        self, directory: Path, password: str | None = None, tls: Path | None = None, ranges: bool = False
    ) -> None:
        self.directory = directory
        self.password = password
        self.cert_path: Path | None = None
        self.key_path: Path | None = None
        if tls is not None:
            self.cert_path, self.key_path = self_signed(tls)
        self.own = password is not None or tls is not None or ranges  # else the standard library's server
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = directory.parent / f"{directory.name}-http-{id(self)}.log"

    @property
    def base(self) -> str:
        return f"{'https' if self.cert_path else 'http'}://127.0.0.1:{self.port}/"

    @property
    def url(self) -> str:
        """The subscription URL."""
        return self.base + "lib.json"

    @property
    def auth(self) -> tuple[str, str] | None:
        return None if self.password is None else (USER, self.password)

    @property
    def cert_pem(self) -> str:
        assert self.cert_path is not None
        return self.cert_path.read_text()

    @property
    def cert_der(self) -> bytes:
        return ssl.PEM_cert_to_DER_cert(self.cert_pem)

    def thumbprint(self, algorithm: str = "sha1") -> str:
        return thumbprint(self.cert_der, algorithm)

    def start(self) -> StaticServer:
        from conftest import free_port  # here, not at the top: this module is also the server's script

        for _ in range(5):  # the free port may be taken before the child binds it: try another
            self.port = free_port()
            if self.own:
                cmd = [sys.executable, __file__, "--port", str(self.port), "--directory", str(self.directory)]
                if self.cert_path and self.key_path:
                    cmd += ["--cert", str(self.cert_path), "--key", str(self.key_path)]
            else:
                cmd = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(self.port)]
                cmd += ["--directory", str(self.directory)]
            env = dict(os.environ)
            env.pop(PASSWORD_ENV, None)
            if self.password is not None:
                env[PASSWORD_ENV] = self.password
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            if self._wait_ready():
                return self
        raise RuntimeError(f"the static server did not start:\n{self.log_path.read_text(errors='replace')}")

    def _wait_ready(self, timeout: float = 15.0) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                time.sleep(0.05)
        self.stop()
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> StaticServer:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


# -- this module as a script: the server with Basic authentication, TLS and ranges -------------------------------------
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def byte_range(header: str, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """(first, last) of a single `bytes=` range; None to ignore the header (several ranges, another unit: RFC 9110
    lets a server send the whole file); "unsatisfiable" when no byte of it exists (416)."""
    m = _RANGE.fullmatch(header.strip())
    if m is None or (not m[1] and not m[2]):
        return None
    if not m[1]:  # the last N bytes
        n = int(m[2])
        return (max(size - n, 0), size - 1) if n > 0 and size > 0 else "unsatisfiable"
    first = int(m[1])
    last = min(int(m[2]), size - 1) if m[2] else size - 1
    if m[2] and int(m[2]) < first:
        return None  # invalid: ignored
    return (first, last) if first < size else "unsatisfiable"


class Handler(http.server.SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler with Basic authentication (user `vcsp`) and single byte ranges."""

    password: str | None = None
    remaining: int | None = None

    def do_GET(self) -> None:
        if self.authorized():
            super().do_GET()

    def do_HEAD(self) -> None:
        if self.authorized():
            super().do_HEAD()

    def authorized(self) -> bool:
        if self.password is None:
            return True
        scheme, _, value = (self.headers.get("Authorization") or "").partition(" ")
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, sep, password = "", "", ""
        good = hmac.compare_digest(password.encode(), self.password.encode())
        if scheme.lower() == "basic" and sep and user == USER and good:
            return True
        body = b"401 Unauthorized\n"
        self.send_response(401)
        self.send_header("WWW-Authenticate", f'Basic realm="{USER}"')
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return False

    def send_head(self) -> Any:
        self.remaining = None
        header = self.headers.get("Range")
        path = self.translate_path(self.path)
        if header is None or not os.path.isfile(path):
            return super().send_head()
        f: BinaryIO = open(path, "rb")  # noqa: SIM115 - returned to do_GET, which closes it
        size = os.fstat(f.fileno()).st_size
        wanted = byte_range(header, size)
        if wanted is None:
            f.close()
            return super().send_head()
        if wanted == "unsatisfiable":
            f.close()
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        first, last = wanted
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Last-Modified", email.utils.formatdate(os.fstat(f.fileno()).st_mtime, usegmt=True))
        self.end_headers()
        f.seek(first)
        self.remaining = last - first + 1
        return f

    def copyfile(self, source: Any, outputfile: Any) -> None:
        if self.remaining is None:
            super().copyfile(source, outputfile)
            return
        while self.remaining > 0 and (chunk := source.read(min(self.remaining, 1 << 16))):
            outputfile.write(chunk)
            self.remaining -= len(chunk)


class _Server(http.server.ThreadingHTTPServer):
    def shutdown_request(self, request: Any) -> None:
        """Over TLS, a close_notify before the TCP close, as web servers send one. Without it a client on uvloop
        (contentlib's server) may lose the end of a response: uvloop drops what it had not yet handed to the
        application when the TCP connection ends without close_notify (MagicStack/uvloop#385), and a PULL of a
        large file then fails now and then, its last few hundred KB missing."""
        if isinstance(request, ssl.SSLSocket):
            try:
                request.settimeout(5)
                request.unwrap()
            except (OSError, ValueError):
                pass
        super().shutdown_request(request)


def serve(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a directory over HTTP(S), with Basic auth and byte ranges.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--directory", type=Path, required=True)
    parser.add_argument("--cert", type=Path)
    parser.add_argument("--key", type=Path)
    args = parser.parse_args(argv)
    directory = str(args.directory)

    class Bound(Handler):
        password = os.environ.get(PASSWORD_ENV)

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=directory, **kw)

    server = _Server(("127.0.0.1", args.port), Bound)
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        # the handshake happens in the request's thread, not in accept()
        server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    server.serve_forever()


if __name__ == "__main__":
    serve()
