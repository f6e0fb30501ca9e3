"""PULL files: the server fetches an update-session file from an http(s) source in the background.

Contract: REFERENCE.md §2 (file.add: PULL, size/checksum verified, a mismatch fails the upload), A.3
`updatesession.File.AddSpec` / `File.Info` (union on source_type: PULL → source_endpoint, no upload_endpoint),
`TransferEndpoint` (ssl_certificate_thumbprint = SHA-256 of the DER certificate; if set, only that certificate
is accepted; if unset, standard validation); issue 2 item 5 ("PULL sources (http/https URL, optional checksum
and TLS thumbprint) are fetched by the server in the background with the same checks").
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import Api, assert_error, free_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

US = "/api/content/library/item/update-session"
TERMINAL = {"READY", "ERROR"}


# -- a tiny origin server run by the test ----------------------------------------------------------------


class Origin:
    """Serves `files` over HTTP or HTTPS on 127.0.0.1; a path in `gates` sends half its body, then waits."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.files: dict[str, bytes] = {}
        self.gates: dict[str, threading.Event] = {}
        self.requests: list[str] = []
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _head(self) -> bytes | None:
                origin.requests.append(self.path)
                data = origin.files.get(self.path.split("?")[0])
                if data is None:
                    body = b"not here"
                    self.send_response(404)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    if self.command == "GET":
                        self.wfile.write(body)
                    return None
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                return data

            def do_HEAD(self) -> None:
                self._head()

            def do_GET(self) -> None:
                data = self._head()
                if data is None:
                    return
                gate = origin.gates.get(self.path.split("?")[0])
                try:
                    if gate is not None:
                        half = len(data) // 2
                        self.wfile.write(data[:half])
                        self.wfile.flush()
                        gate.wait(30)
                        self.wfile.write(data[half:])
                    else:
                        self.wfile.write(data)
                except OSError:
                    pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients that reject our certificate abort the handshake: not an error here

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True, do_handshake_on_connect=False)
            self.scheme = "https"
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def serve(self, data: bytes, name: str | None = None) -> str:
        path = f"/{name or uuid.uuid4().hex}.bin"
        self.files[path] = data
        return self.url(path)

    def close(self) -> None:
        for gate in self.gates.values():
            gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def self_signed(tmp: Path) -> tuple[ssl.SSLContext, str]:
    """A self-signed certificate for 127.0.0.1; returns the server context and the SHA-256 thumbprint."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "origin.crt", tmp / "origin.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    thumbprint = ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
    return ctx, thumbprint


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    o = Origin()
    yield o
    o.close()


@pytest.fixture(scope="module")
def tls_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Origin, str]]:
    ctx, thumbprint = self_signed(tmp_path_factory.mktemp("tls-origin"))
    o = Origin(ctx)
    yield o, thumbprint
    o.close()


# -- helpers ----------------------------------------------------------------------------------------------


def add_pull(api: Api, sid: str, name: str, uri: str, **extra: Any) -> dict[str, Any]:
    endpoint: dict[str, Any] = {"uri": uri}
    if "thumbprint" in extra:
        endpoint["ssl_certificate_thumbprint"] = extra.pop("thumbprint")
    spec: dict[str, Any] = {"name": name, "source_type": "PULL", "source_endpoint": endpoint, **extra}
    r = api.post(f"{US}/{sid}/file", json=spec)
    assert r.status_code == 201, r.text
    info = dict(r.json())
    assert info["name"] == name
    assert info["source_type"] == "PULL"
    assert info["source_endpoint"]["uri"] == uri
    assert "upload_endpoint" not in info or info["upload_endpoint"] is None, info  # union rule
    assert isinstance(info["bytes_transferred"], int)
    assert info["status"] in ("WAITING_FOR_TRANSFER", "TRANSFERRING", "VALIDATING", "READY", "ERROR"), info
    return info


def session_file(api: Api, sid: str, name: str) -> dict[str, Any]:
    r = api.get(f"{US}/{sid}/file/{name}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_file(api: Api, sid: str, name: str, until: set[str] = TERMINAL, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        info = session_file(api, sid, name)
        if info["status"] in until:
            return info
        assert time.monotonic() < deadline, f"file {name} stuck in {info}"
        time.sleep(0.05)


def sha(alg: str, data: bytes) -> str:
    return hashlib.new(alg, data).hexdigest()


def message_text(info: dict[str, Any]) -> str:
    msg = info.get("error_message")
    assert isinstance(msg, dict), info
    assert isinstance(msg["id"], str) and msg["id"]
    assert isinstance(msg["args"], list)
    assert isinstance(msg["default_message"], str) and msg["default_message"], info
    return str(msg["default_message"]).lower()


# -- happy paths ------------------------------------------------------------------------------------------


def test_pull_http_with_size_and_checksum(api: Api, origin: Origin) -> None:
    data = os.urandom(300_001)
    uri = origin.serve(data)
    item = api.create_item()
    sid = api.create_session(item)
    declared = {"algorithm": "SHA256", "checksum": sha("sha256", data)}
    add_pull(api, sid, "pulled.bin", uri, size=len(data), checksum_info=declared)
    info = wait_file(api, sid, "pulled.bin")
    assert info["status"] == "READY", info
    assert info["size"] == len(data)
    assert info["bytes_transferred"] == len(data)
    assert info["checksum_info"]["checksum"].lower() == declared["checksum"]
    assert info["checksum_info"]["algorithm"] == "SHA256"
    assert info["source_type"] == "PULL"
    assert info["source_endpoint"]["uri"] == uri
    assert "upload_endpoint" not in info or info["upload_endpoint"] is None
    api.complete(sid)
    assert api.session(sid)["state"] == "DONE"
    files = api.item_files(item)
    assert set(files) == {"pulled.bin"}
    assert files["pulled.bin"]["size"] == len(data)
    assert files["pulled.bin"]["checksum_info"] == {"algorithm": "SHA1", "checksum": sha("sha1", data)}
    assert api.download(item, "pulled.bin") == data


def test_pull_without_size_or_checksum(api: Api, origin: Origin) -> None:
    data = b"pulled without declarations\n" * 1000
    uri = origin.serve(data)
    item = api.create_item()
    sid = api.create_session(item)
    add_pull(api, sid, "plain.txt", uri)
    info = wait_file(api, sid, "plain.txt")
    assert info["status"] == "READY", info
    assert info["size"] == len(data)
    assert info["checksum_info"]["checksum"].lower() == sha("sha1", data)
    assert info["checksum_info"].get("algorithm", "SHA1") == "SHA1"
    api.complete(sid)
    assert api.download(item, "plain.txt") == data


def test_pull_empty_file(api: Api, origin: Origin) -> None:
    uri = origin.serve(b"")
    item = api.create_item()
    sid = api.create_session(item)
    add_pull(api, sid, "empty.bin", uri, size=0)
    info = wait_file(api, sid, "empty.bin")
    assert info["status"] == "READY", info
    assert info["size"] == 0
    api.complete(sid)
    assert api.item_files(item)["empty.bin"]["size"] == 0


def test_pull_replaces_item_file_and_mixes_with_push(api: Api, origin: Origin) -> None:
    item = api.create_item()
    api.put_files(item, {"disk.bin": b"old disk", "keep.txt": b"kept"})
    new = os.urandom(70_000)
    sid = api.create_session(item)
    add_pull(api, sid, "disk.bin", origin.serve(new), size=len(new))
    api.upload(sid, "pushed.txt", b"pushed alongside")
    assert wait_file(api, sid, "disk.bin")["status"] == "READY"
    api.complete(sid)
    files = api.item_files(item)
    assert set(files) == {"disk.bin", "keep.txt", "pushed.txt"}
    assert files["disk.bin"]["version"] == "2"
    assert files["disk.bin"]["size"] == len(new)
    assert api.download(item, "disk.bin") == new
    assert api.download(item, "keep.txt") == b"kept"


def test_cancel_during_pull_leaves_item_untouched(api: Api, origin: Origin) -> None:
    item = api.create_item()
    api.put_files(item, {"x.bin": b"original"})
    before = api.get(f"/api/content/library/item/{item}").json()
    data = os.urandom(100_000)
    uri = origin.serve(data)
    gate = threading.Event()
    origin.gates[uri[len(origin.url("")) :]] = gate
    try:
        sid = api.create_session(item)
        add_pull(api, sid, "x.bin", uri)
        r = api.post(f"{US}/{sid}?action=cancel")
        assert r.status_code == 204, r.text
        assert api.session(sid)["state"] == "CANCELED"
    finally:
        gate.set()
    time.sleep(0.3)  # let a (wrongly) continuing fetch finish
    after = api.get(f"/api/content/library/item/{item}").json()
    assert after["content_version"] == before["content_version"]
    assert api.download(item, "x.bin") == b"original"


# -- failures of the fetch ------------------------------------------------------------------------------


def test_pull_wrong_checksum_is_error(api: Api, origin: Origin) -> None:
    data = os.urandom(10_000)
    uri = origin.serve(data)
    item = api.create_item()
    sid = api.create_session(item)
    add_pull(api, sid, "bad.bin", uri, checksum_info={"algorithm": "SHA1", "checksum": sha("sha1", b"other")})
    info = wait_file(api, sid, "bad.bin")
    assert info["status"] == "ERROR", info
    text = message_text(info)
    assert "checksum" in text or "sha1" in text, text
    r = api.post(f"{US}/{sid}?action=complete")
    assert_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE", "bad.bin")
    assert api.item_files(item) == {}


def test_pull_wrong_size_is_error(api: Api, origin: Origin) -> None:
    data = os.urandom(5_000)
    uri = origin.serve(data)
    sid = api.create_session(api.create_item())
    add_pull(api, sid, "short.bin", uri, size=len(data) + 1)
    info = wait_file(api, sid, "short.bin")
    assert info["status"] == "ERROR", info
    assert "size" in message_text(info)


def test_pull_404_source_is_error(api: Api, origin: Origin) -> None:
    sid = api.create_session(api.create_item())
    uri = origin.url(f"/missing-{uuid.uuid4().hex}.bin")
    add_pull(api, sid, "gone.bin", uri)
    info = wait_file(api, sid, "gone.bin")
    assert info["status"] == "ERROR", info
    message_text(info)
    r = api.post(f"{US}/{sid}?action=complete")
    assert_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE", "gone.bin")


def test_pull_unreachable_port_is_error(api: Api) -> None:
    sid = api.create_session(api.create_item())
    add_pull(api, sid, "nowhere.bin", f"http://127.0.0.1:{free_port()}/x.bin")
    info = wait_file(api, sid, "nowhere.bin")
    assert info["status"] == "ERROR", info
    message_text(info)


def test_pull_error_can_be_added_again(api: Api, origin: Origin) -> None:
    """Re-adding a name replaces it in the session: a failed pull can be retried."""
    data = os.urandom(4_000)
    item = api.create_item()
    sid = api.create_session(item)
    add_pull(api, sid, "retry.bin", origin.url(f"/missing-{uuid.uuid4().hex}"))
    assert wait_file(api, sid, "retry.bin")["status"] == "ERROR"
    add_pull(api, sid, "retry.bin", origin.serve(data))
    info = wait_file(api, sid, "retry.bin")
    assert info["status"] == "READY", info
    assert info.get("error_message") is None, info
    api.complete(sid)
    assert api.download(item, "retry.bin") == data


# -- rejected at add --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "ftp://127.0.0.1/x.bin",
        "gopher://127.0.0.1/x",
        "not a uri",
        "ds:///vmfs/volumes/datastore1/x.bin",  # no datastores here
        "file://otherhost/tmp/x.bin",  # another machine's file
        "file:relative/x.bin",
    ],
)
def test_pull_non_http_uri_is_400(api: Api, uri: str) -> None:
    sid = api.create_session(api.create_item())
    r = api.post(f"{US}/{sid}/file", json={"name": "x.bin", "source_type": "PULL", "source_endpoint": {"uri": uri}})
    assert_error(r, 400, "INVALID_ARGUMENT")
    r = api.get(f"{US}/{sid}/file")
    assert r.status_code == 200, r.text
    assert r.json() == []


def test_pull_from_a_local_file(api: Api, tmp_path: Path) -> None:
    """file:///absolute/path reads a file of the server's machine (the administrator has ContentLibrary.ReadStorage);
    the source stays where it is."""
    data = os.urandom(3 * 1024 * 1024 + 7)
    source = tmp_path / "disk image with spaces.vmdk"
    source.write_bytes(data)
    item = api.create_item()
    sid = api.create_session(item)
    uri = source.as_uri()
    add_pull(
        api, sid, "disk.vmdk", uri, size=len(data), checksum_info={"algorithm": "MD5", "checksum": sha("md5", data)}
    )
    info = wait_file(api, sid, "disk.vmdk")
    assert info["status"] == "READY", info
    assert info["bytes_transferred"] == len(data)
    api.complete(sid)
    assert api.download(item, "disk.vmdk") == data
    assert source.read_bytes() == data


@pytest.mark.parametrize("case", ["missing", "directory", "device"])
def test_pull_from_an_unusable_local_path_is_error(api: Api, tmp_path: Path, case: str) -> None:
    path = {"missing": tmp_path / "nothing-here", "directory": tmp_path, "device": Path("/dev/zero")}[case]
    sid = api.create_session(api.create_item())
    add_pull(api, sid, "x.bin", path.as_uri())
    info = wait_file(api, sid, "x.bin")
    assert info["status"] == "ERROR", info
    text = message_text(info)
    assert "x.bin" in text and str(path).lower() in text, text
    assert {"missing": "no such file", "directory": "directory", "device": "not a regular file"}[case] in text, text


def test_pull_without_source_endpoint_is_400(api: Api) -> None:
    sid = api.create_session(api.create_item())
    r = api.post(f"{US}/{sid}/file", json={"name": "x.bin", "source_type": "PULL"})
    assert_error(r, 400, "INVALID_ARGUMENT", "source_endpoint")
    r = api.post(f"{US}/{sid}/file", json={"name": "x.bin", "source_type": "PULL", "source_endpoint": {}})
    assert_error(r, 400, "INVALID_ARGUMENT", "uri")
    assert api.get(f"{US}/{sid}/file").json() == []


# -- HTTPS sources and certificate thumbprints ---------------------------------------------------------------


def test_pull_https_with_right_thumbprint(api: Api, tls_origin: tuple[Origin, str]) -> None:
    o, thumbprint = tls_origin
    data = os.urandom(123_457)
    uri = o.serve(data)
    item = api.create_item()
    sid = api.create_session(item)
    info = add_pull(api, sid, "tls.bin", uri, thumbprint=thumbprint, size=len(data))
    assert info["source_endpoint"].get("ssl_certificate_thumbprint") in (None, thumbprint)
    info = wait_file(api, sid, "tls.bin")
    assert info["status"] == "READY", info
    assert info["size"] == len(data)
    api.complete(sid)
    assert api.download(item, "tls.bin") == data


def test_pull_https_with_wrong_thumbprint_is_error(api: Api, tls_origin: tuple[Origin, str]) -> None:
    o, thumbprint = tls_origin
    uri = o.serve(os.urandom(1_000))
    wrong = ":".join(["AB"] * 32)
    assert wrong != thumbprint
    sid = api.create_session(api.create_item())
    add_pull(api, sid, "tls.bin", uri, thumbprint=wrong)
    info = wait_file(api, sid, "tls.bin")
    assert info["status"] == "ERROR", info
    message_text(info)
    assert_error(api.post(f"{US}/{sid}?action=complete"), 400, "NOT_ALLOWED_IN_CURRENT_STATE", "tls.bin")


def test_pull_https_self_signed_without_thumbprint_is_error(api: Api, tls_origin: tuple[Origin, str]) -> None:
    """No thumbprint and no certificate: standard validation, which a self-signed certificate fails."""
    o, _ = tls_origin
    uri = o.serve(os.urandom(1_000))
    sid = api.create_session(api.create_item())
    add_pull(api, sid, "tls.bin", uri)
    info = wait_file(api, sid, "tls.bin")
    assert info["status"] == "ERROR", info
    message_text(info)
