"""Hostile input over HTTP (issue 6 point 5): request smuggling, slow and huge requests, bytes that are not UTF-8,
path traversal and Unicode tricks in names, guessed and reused upload tokens, one upload URL used by two clients at
once, and tar bombs. Each gets a clear error (the vendor's JSON error wherever the request reaches the API; a plain
400 and a closed connection where the HTTP framing itself is broken), and leaves no trace: no blob, no change to
the item, the server still serving.

These run in both passes (SQLite + disk, PostgreSQL + S3): apart from the framing cases they reach the stores (a
name, a token, a refused upload must leave nothing in either backend), and the framing cases are cheap.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import select
import socket
import tarfile
import threading
import time
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import ovfkit as k
import pytest
import requests
from conftest import Api, ServerProcess, assert_error

US = "/api/content/library/item/update-session"
BLOB_ID = re.compile(r"^[0-9a-f-]{36}/[0-9a-f-]{36}$")  # <session id>/<uuid>: never derived from a name


# -- raw HTTP ------------------------------------------------------------------------------------------------------
def connect(base: str, timeout: float = 30.0) -> socket.socket:
    u = urlsplit(base)
    assert u.hostname and u.port
    return socket.create_connection((u.hostname, u.port), timeout=timeout)


def read_until_closed(s: socket.socket, timeout: float = 30.0) -> tuple[bytes, bool]:
    """Everything the server sends until it closes the connection; (bytes, closed) — closed is False when it was
    still open after `timeout` seconds."""
    s.settimeout(timeout)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out, True
            out += chunk
    except ConnectionResetError:
        return out, True
    except TimeoutError:
        return out, False


def read_response(s: socket.socket, timeout: float = 30.0) -> tuple[int, bytes]:
    """One response with a Content-Length body: (status, body)."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head)[1])  # type: ignore[index]
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, f"connection closed in the body: {data!r}"
        body += chunk
    return int(head.split(b" ", 2)[1]), body


def statuses(data: bytes) -> list[int]:
    return [int(m) for m in re.findall(rb"HTTP/1\.[01] (\d{3}) ", data)]


def request_head(method: str, path: str, headers: list[str]) -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n").encode()


def new_blobs(server: ServerProcess, before: list[str]) -> set[str]:
    return set(server.blob_ids()) - set(before)


# -- request smuggling ---------------------------------------------------------------------------------------------
def _chunked(size_line: bytes) -> tuple[list[str], bytes]:
    return ["Transfer-Encoding: chunked"], size_line + b"\r\nhello\r\n0\r\n\r\n"


# Each: the headers of a POST whose framing is ambiguous or broken, and its body; the smuggled request follows.
SMUGGLING: dict[str, tuple[list[str], bytes]] = {
    "cl-and-te": (["Content-Length: 5", "Transfer-Encoding: chunked"], b"0\r\n\r\n"),
    "te-and-cl": (["Transfer-Encoding: chunked", "Content-Length: 5"], b"0\r\n\r\n"),
    "two-content-lengths": (["Content-Length: 0", "Content-Length: 5"], b"hello"),
    "content-length-list": (["Content-Length: 5, 5"], b"hello"),
    "content-length-plus": (["Content-Length: +5"], b"hello"),
    "content-length-negative": (["Content-Length: -1"], b""),
    "te-unknown-coding": (["Transfer-Encoding: xchunked"], b"0\r\n\r\n"),
    "te-chunked-not-last": (["Transfer-Encoding: chunked, identity"], b"0\r\n\r\n"),
    "te-twice": (["Transfer-Encoding: chunked", "Transfer-Encoding: identity"], b"0\r\n\r\n"),
    "te-space-before-colon": (["Transfer-Encoding : chunked"], b"0\r\n\r\n"),
    "te-obs-fold": (["Transfer-Encoding:", " chunked"], b"0\r\n\r\n"),
    "te-vertical-tab": (["Transfer-Encoding:\x0bchunked"], b"0\r\n\r\n"),
    "te-nul": (["Transfer-Encoding: chunked\x00"], b"0\r\n\r\n"),
    "chunk-size-not-hex": _chunked(b"zz"),
    "chunk-size-negative": _chunked(b"-5"),
    "chunk-size-0x": _chunked(b"0x5"),
    "chunk-size-overflow": _chunked(b"1" + b"0" * 20),
    "chunk-size-bare-lf": (["Transfer-Encoding: chunked"], b"5\nhello\r\n0\r\n\r\n"),
    "chunk-longer-than-size": (["Transfer-Encoding: chunked"], b"3\r\nhello\r\n0\r\n\r\n"),
}


@pytest.mark.parametrize("case", list(SMUGGLING))
def test_request_smuggling_is_refused(api: Api, server: ServerProcess, case: str) -> None:
    """The ambiguous request gets a 400 and the connection is closed: the request hidden behind it (which would
    delete an item) is never executed, whichever way its framing was read."""
    item = api.create_item()
    headers, body = SMUGGLING[case]
    smuggled = request_head("DELETE", f"/api/content/library/item/{item}", [f"vmware-api-session-id: {api.session_id}"])
    with connect(server.base) as s:
        s.sendall(request_head("POST", "/api/session", headers) + body + smuggled)
        data, closed = read_until_closed(s)
    assert closed, data
    assert statuses(data) == [400], data
    assert api.get(f"/api/content/library/item/{item}").status_code == 200  # not deleted
    assert api.get("/api/content/library").status_code == 200


# -- huge requests -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "head",
    [
        request_head("GET", "/api/content/library", ["X-Big: " + "a" * 100_000]),
        request_head("GET", "/api/content/library", [f"X-H{i}: v" for i in range(1000)]),
        request_head("GET", "/api/content/library/" + "a" * 100_000, []),
    ],
    ids=["one-huge-header", "many-headers", "huge-url"],
)
def test_huge_request_head_is_refused(api: Api, server: ServerProcess, head: bytes) -> None:
    with connect(server.base) as s:
        s.sendall(head)
        data, closed = read_until_closed(s)
    assert closed and statuses(data)[:1] in ([400], [431]), data[:300]
    assert api.get("/api/content/library").status_code == 200


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_huge_json_body_is_refused(api: Api, framing: str) -> None:
    """A body over the /api limit (1 MiB) is INVALID_ARGUMENT naming the limit: refused from its Content-Length
    before it is read, or as soon as the streamed body passes the limit."""
    before = sorted(api.get("/api/content/library").json())
    spec = {"name": "huge", "description": "x" * (4 * 1024 * 1024), **LIBRARY}
    body = requests.models.complexjson.dumps(spec).encode()
    data: Any = body if framing == "content-length" else iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
    r = api.post("/api/content/local-library", data=data, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "INVALID_ARGUMENT", "1048576")
    assert sorted(api.get("/api/content/library").json()) == before


def test_huge_jsonrpc_body_is_refused(api: Api, server: ServerProcess) -> None:
    r = requests.post(server.base + "/api", data=b'{"jsonrpc": "2.0", "x": "' + b"y" * (2 * 1024 * 1024) + b'"}')
    assert r.status_code == 200, r.text
    assert r.json()["error"]["code"] == -32600 and "exceeds" in r.json()["error"]["message"], r.text


# -- slow clients --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with short header and transfer-stall timeouts (1 second)."""
    srv = ServerProcess(
        tmp_path_factory.mktemp("slow") / "data", ["--header-timeout", "1", "--transfer-stall-timeout", "1"]
    )
    srv.start()
    yield srv
    srv.destroy()


def fresh_api(srv: ServerProcess) -> Api:
    """A client that opens a connection per request (the 1-second server closes idle keep-alive connections)."""
    api = Api(srv.base, login=False)
    api.http.headers["Connection"] = "close"
    api.login()
    return api


@pytest.mark.parametrize("sends", ["nothing", "trickled-headers"])
def test_slow_request_head_is_cut_off(slow: ServerProcess, sends: str) -> None:
    """A connection that does not deliver a complete request head in time is closed; the request it was
    trickling (an item deletion) never runs."""
    api = fresh_api(slow)
    item = api.create_item()
    head = request_head("DELETE", f"/api/content/library/item/{item}", [f"vmware-api-session-id: {api.session_id}"])
    sent = 0
    with connect(slow.base) as s:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if select.select([s], [], [], 0.05)[0]:  # readable: the server closed (or answered)
                break
            if sends == "trickled-headers" and sent < len(head) - 1:  # never the last byte
                s.sendall(head[sent : sent + 1])
                sent += 1
        data, closed = read_until_closed(s, timeout=5)
    assert closed and data == b"", data
    assert sent < len(head) - 1 or sends == "nothing"
    assert api.get(f"/api/content/library/item/{item}").status_code == 200


# Each case waits out aiohttp's lingering close (10 s of discarding the rest of a refused body) before the
# connection is closed: two cases cover both framings and both ways to carry on.
@pytest.mark.parametrize(("framing", "then"), [("content-length", "re-add"), ("chunked", "remove")])
def test_stalled_upload_body_times_out(slow: ServerProcess, framing: str, then: str) -> None:
    """An upload whose body stops arriving for longer than --transfer-stall-timeout is failed: the uploader gets
    an error naming the timeout, the connection is closed, the file is in ERROR, its partial blob is gone, and
    the session carries on (the file added again, or removed)."""
    api = fresh_api(slow)
    item = api.create_item()
    old = b"published before"
    api.put_files(item, {"old.bin": old})
    sid = api.create_session(item)
    data = os.urandom(256 * 1024)
    uri = api.add_file(sid, "slow.bin", data)["upload_endpoint"]["uri"]
    blobs = slow.blob_ids()
    part = data[:1000]
    if framing == "chunked":
        headers, sent = ["Transfer-Encoding: chunked"], f"{len(part):x}\r\n".encode() + part + b"\r\n"
    else:
        headers, sent = [f"Content-Length: {len(data)}"], part
    with connect(slow.base) as s:
        s.sendall(request_head("PUT", urlsplit(uri).path, headers) + sent)
        status, body = read_response(s)  # and then nothing more is sent
        rest, closed = read_until_closed(s)
    assert status == 400, body
    error = requests.models.complexjson.loads(body)
    assert error["error_type"] == "INVALID_ARGUMENT", error
    text = error["messages"][0]["default_message"]
    assert "slow.bin" in text and "timed out" in text and "no data arrived for 1 seconds" in text, text
    assert closed and rest == b"", rest
    info = api.get(f"{US}/{sid}/file/slow.bin").json()
    assert info["status"] == "ERROR" and "timed out" in info["error_message"]["default_message"], info
    assert new_blobs(slow, blobs) == set()
    assert api.session(sid)["state"] == "ACTIVE"
    if then == "re-add":
        assert requests.put(api.add_file(sid, "slow.bin", data)["upload_endpoint"]["uri"], data=data).status_code == 200
        api.complete(sid)
        assert api.download(item, "slow.bin") == data
    else:
        assert api.delete(f"{US}/{sid}/file/slow.bin").status_code == 204
        api.complete(sid)
        assert "slow.bin" not in api.item_files(item)
    assert api.download(item, "old.bin") == old


# -- bytes that are not UTF-8 --------------------------------------------------------------------------------------
def raw_request(server: ServerProcess, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    with connect(server.base) as s:
        s.sendall(head + body)
        return read_response(s)


def head_bytes(method: str, path: bytes, headers: list[bytes], length: int | None = 0) -> bytes:
    lines = [method.encode() + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close", *headers]
    if length is not None:
        lines.append(b"Content-Length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def vendor_error(status: int, body: bytes, want_status: int, error_type: str, *words: str) -> None:
    assert status == want_status, body
    error = requests.models.complexjson.loads(body)
    assert error["error_type"] == error_type, error
    text = error["messages"][0]["default_message"].lower()
    assert all(w.lower() in text for w in words), text


def test_non_utf8_header_values_are_bad_requests(api: Api, server: ServerProcess) -> None:
    sid = api.session_id
    assert sid
    # A session id, a client token, Basic credentials and a Host that are not UTF-8: the vendor's error, never a
    # 500 (they used to reach the database, or the JSON encoder, as lone surrogates).
    status, body = raw_request(
        server, head_bytes("GET", b"/api/content/library", [b"vmware-api-session-id: \xff\xfe" + sid.encode()])
    )
    vendor_error(status, body, 400, "INVALID_ARGUMENT", "vmware-api-session-id", "utf-8")
    status, body = raw_request(server, head_bytes("POST", b"/api/session", [b"Authorization: Basic \xff\xfe"]))
    vendor_error(status, body, 400, "INVALID_ARGUMENT", "authorization", "utf-8")
    status, body = raw_request(server, head_bytes("POST", b"/api/session", [b"Authorization: Basic w7/Dvg=="]))
    vendor_error(status, body, 401, "UNAUTHENTICATED", "basic")  # base64 of bytes that are not UTF-8
    spec = requests.models.complexjson.dumps({"name": "lib", **LIBRARY}).encode()
    status, body = raw_request(
        server,
        head_bytes(
            "POST",
            b"/api/content/local-library",
            [
                f"vmware-api-session-id: {sid}".encode(),
                b"Client-Token: \xff",
                b"Content-Type: application/json",
            ],
            len(spec),
        ),
        spec,
    )
    vendor_error(status, body, 400, "INVALID_ARGUMENT", "utf-8")
    session = api.create_session()
    add = requests.models.complexjson.dumps({"name": "a.bin", "source_type": "PUSH"}).encode()
    head = head_bytes(
        "POST",
        f"{US}/{session}/file".encode(),
        [f"vmware-api-session-id: {sid}".encode(), b"Content-Type: application/json"],
        len(add),
    ).replace(b"Host: 127.0.0.1", b"Host: \xff\xfe")
    status, body = raw_request(server, head, add)
    vendor_error(status, body, 400, "INVALID_ARGUMENT", "host", "utf-8")
    assert api.get(f"{US}/{session}/file").json() == []
    assert api.get("/api/content/library").status_code == 200


def test_non_utf8_in_paths_and_bodies(api: Api, server: ServerProcess) -> None:
    sid = api.session_id
    assert sid
    auth = [f"vmware-api-session-id: {sid}".encode(), b"Content-Type: application/json"]
    # Raw bytes in the request target break HTTP itself: a plain 400, connection closed.
    with connect(server.base) as s:
        s.sendall(head_bytes("GET", b"/api/content/library/\xff\xfe", auth))
        data, closed = read_until_closed(s)
    assert closed and statuses(data) == [400], data
    # Percent-encoded bytes that are not UTF-8 are only characters that name nothing.
    status, body = raw_request(server, head_bytes("GET", b"/api/content/library/%ff%fe", auth))
    vendor_error(status, body, 404, "NOT_FOUND")
    session = api.create_session()
    status, body = raw_request(server, head_bytes("GET", f"{US}/{session}/file/%ff%fe".encode(), auth))
    assert status in (400, 404), body
    # JSON that is not UTF-8, or holds a lone surrogate escape: REST and JSON-RPC both refuse it.
    for bad in (b"\xff\xfe", b"\\udcff"):  # bytes that are not UTF-8; a lone surrogate escape
        add = b'{"name": "' + bad + b'", "source_type": "PUSH"}'
        r = api.post(f"{US}/{session}/file", data=add, headers={"Content-Type": "application/json"})
        assert_error(r, 400, "INVALID_ARGUMENT", "json")
        envelope = (
            b'{"jsonrpc": "2.0", "method": "invoke", "id": "1", "params": {"serviceId": '
            b'"com.vmware.cis.session", "operationId": "create", "input": {}, "ctx": {"securityCtx": {"schemeId": '
            b'"com.vmware.vapi.std.security.user_pass", "userName": "' + bad + b'", "password": "p"}}}}'
        )
        r = requests.post(server.base + "/api", data=envelope, timeout=30)
        assert r.status_code == 200 and r.json()["error"]["code"] == -32700, r.text
    assert api.get(f"{US}/{session}/file").json() == []


# -- names: traversal and Unicode tricks ---------------------------------------------------------------------------
LIBRARY = {"type": "LOCAL", "storage_backings": [{"type": "OTHER", "storage_uri": "file:///tmp/contentlib-test"}]}

# Legal file names (the vendor forbids only path separators, NUL, '', '.' and '..'): stored and returned exactly,
# never used as a path (a blob's name is a fresh UUID), and distinct when their code points differ.
LEGAL_NAMES = [
    "%2e%2e%2fescape.bin",  # percent-encoded ../ is just characters
    "..%2fescape.bin",
    "a\uff0fb.bin",  # FULLWIDTH SOLIDUS is not a separator
    "a\u2215b.bin",  # DIVISION SLASH neither
    "invoice\u202egpj.exe",  # RIGHT-TO-LEFT OVERRIDE
    "zero\u200bwidth.bin",
    "caf\u00e9.bin",  # NFC
    "cafe\u0301.bin",  # NFD of the same text: another name
    "...",
    " -rf .bin",
    "C:escape.bin",
    "a?b#c&d.bin",
    "\U0001f4be.bin",
]
INVALID_NAMES = ["../escape.bin", "/tmp/escape.bin", "..\\escape.bin", "C:\\escape.bin", "escape.bin\x00.txt", ".."]


def test_traversal_file_names_are_invalid(api: Api, server: ServerProcess) -> None:
    sid = api.create_session()
    blobs = server.blob_ids()
    for name in INVALID_NAMES:
        r = api.post(f"{US}/{sid}/file", json={"name": name, "source_type": "PUSH"})
        assert_error(r, 400, "INVALID_ARGUMENT", "name")
    assert api.get(f"{US}/{sid}/file").json() == []
    assert new_blobs(server, blobs) == set()


def test_tricky_file_names_are_legal_and_stay_inside_the_store(api: Api, server: ServerProcess) -> None:
    assert unicodedata.normalize("NFC", LEGAL_NAMES[7]) == LEGAL_NAMES[6]
    item = api.create_item()
    files = {name: f"content of {name!r}".encode() for name in LEGAL_NAMES}
    roots = (server.data_dir.parent, Path("/tmp"), Path.cwd())
    outside = {p for root in roots for p in root.iterdir()}
    sid = api.create_session(item)
    for name, data in files.items():
        info = api.add_file(sid, name, data)
        assert info["name"] == name
        assert urlsplit(info["upload_endpoint"]["uri"]).path.endswith("/" + quote(name, safe=""))
        assert requests.put(info["upload_endpoint"]["uri"], data=data, timeout=30).status_code == 200
    api.complete(sid)
    assert set(api.item_files(item)) == set(files)
    for name, data in files.items():
        assert api.download(item, name) == data
    assert all(BLOB_ID.match(b) for b in server.blob_ids()), server.blob_ids()
    created = {p for root in roots for p in root.iterdir()} - outside
    assert not [p for p in created if "escape" in p.name or "\u202e" in p.name], created


def test_tricky_item_names(api: Api) -> None:
    """Item names are display text: traversal-looking and Unicode-tricky names are legal and kept exactly; NFC and
    NFD spellings are two names; an empty or blank one is INVALID_ARGUMENT."""
    library = api.create_library()
    names = [*LEGAL_NAMES, "../../etc/passwd", "/abs/path", "back\\slash"]
    ids = {name: api.create_item(library, name) for name in names}
    for name, item in ids.items():
        assert api.get(f"/api/content/library/item/{item}").json()["name"] == name
    for blank in ("", "   ", "\t"):
        r = api.post("/api/content/library/item", json={"library_id": library, "name": blank})
        assert_error(r, 400, "INVALID_ARGUMENT", "name")
    listed = api.get("/api/content/library/item", params={"library_id": library}).json()
    assert sorted(listed) == sorted(ids.values())


@pytest.mark.parametrize("where", ["item name", "item description", "library name", "library description"])
def test_nul_in_text_is_invalid(api: Api, where: str) -> None:
    """A NUL character cannot be stored as text by PostgreSQL; it is refused the same way on every backend, and
    nothing is created."""
    library = api.create_library()
    before = sorted(api.get("/api/content/library").json())
    if where.startswith("item"):
        spec: dict[str, Any] = {"library_id": library, "name": "item", "description": "d"}
        spec[where.split()[1]] = "a\x00b"
        r = api.post("/api/content/library/item", json=spec)
        assert_error(r, 400, "INVALID_ARGUMENT", "NUL")
        assert api.get("/api/content/library/item", params={"library_id": library}).json() == []
    else:
        spec = {"name": "lib", "description": "d", **LIBRARY}
        spec[where.split()[1]] = "a\x00b"
        r = api.post("/api/content/local-library", json=spec)
        assert_error(r, 400, "INVALID_ARGUMENT", "NUL")
        assert sorted(api.get("/api/content/library").json()) == before


# -- upload tokens -------------------------------------------------------------------------------------------------
def near_misses(token: str) -> list[str]:
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    return [flipped, token[:-1], token + "A", token.upper() if token.upper() != token else token.lower(), ""]


def test_guessed_upload_tokens_are_not_found(api: Api, server: ServerProcess) -> None:
    sid = api.create_session()
    data = b"the real bytes"
    uri = api.add_file(sid, "a.bin", data)["upload_endpoint"]["uri"]
    prefix, token, name = uri.rsplit("/", 2)
    blobs = server.blob_ids()
    guesses = [secrets.token_urlsafe(24) for _ in range(5)] + [g for g in near_misses(token) if g]
    for guess in guesses:
        r = requests.put(f"{prefix}/{guess}/{name}", data=b"guessed", timeout=30)
        assert_error(r, 404, "NOT_FOUND")
    r = requests.put(f"{prefix}//{name}", data=b"guessed", timeout=30)
    assert r.status_code == 404, r.text
    info = api.get(f"{US}/{sid}/file/a.bin").json()
    assert info["status"] == "WAITING_FOR_TRANSFER" and info["bytes_transferred"] == 0, info
    assert new_blobs(server, blobs) == set()
    assert requests.put(uri, data=data, timeout=30).status_code == 200  # the real one still works


@pytest.mark.parametrize("after", ["complete", "cancel", "remove", "re-add", "expired-session-deleted"])
def test_reused_upload_tokens(api: Api, server: ServerProcess, after: str) -> None:
    """An upload URL outlives nothing: after its session ends (complete, cancel), its file is removed or added
    again, it is refused with a clear error and writes nothing."""
    item = api.create_item()
    old = b"published"
    api.put_files(item, {"a.bin": old})
    sid = api.create_session(item)
    first = b"first upload"
    uri = api.add_file(sid, "a.bin", first)["upload_endpoint"]["uri"]
    assert requests.put(uri, data=first, timeout=30).status_code == 200
    if after == "complete":
        api.complete(sid)
    elif after == "cancel":
        assert api.post(f"{US}/{sid}?action=cancel").status_code == 204
    elif after == "remove":
        assert api.delete(f"{US}/{sid}/file/a.bin").status_code == 204
    elif after == "re-add":
        again = api.add_file(sid, "a.bin", first)["upload_endpoint"]["uri"]
        assert again != uri
    else:
        assert api.post(f"{US}/{sid}?action=cancel").status_code == 204
        assert api.delete(f"{US}/{sid}").status_code == 204
    content_version = api.get(f"/api/content/library/item/{item}").json()["content_version"]
    blobs = server.blob_ids()
    r = requests.put(uri, data=b"replayed bytes", timeout=30)
    if after in ("complete", "cancel"):
        assert_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE")
    else:
        assert_error(r, 404, "NOT_FOUND")
    assert new_blobs(server, blobs) == set()
    assert api.get(f"/api/content/library/item/{item}").json()["content_version"] == content_version
    assert api.download(item, "a.bin") == (first if after == "complete" else old)
    if after == "re-add":
        assert api.get(f"{US}/{sid}/file/a.bin").json()["status"] == "WAITING_FOR_TRANSFER"


@pytest.mark.parametrize("start", ["together", "second-while-first-transfers"])
def test_same_upload_url_used_by_two_clients_at_once(api: Api, server: ServerProcess, start: str) -> None:
    """Two PUTs on one upload URL at the same time: the transfer is claimed by a compare-and-set on the file's
    row, so exactly one is received; the other gets a clear error at once, and the stored bytes are the winner's.
    `together`: both claim at the same instant; `second-while-first-transfers`: the second arrives once the first
    is visibly TRANSFERRING (it used to take the transfer over, and the first one's bytes were discarded)."""
    item = api.create_item()
    sid = api.create_session(item)
    size = 512 * 1024
    bodies = [os.urandom(size), os.urandom(size)]
    info = api.add_file(sid, "race.bin", checksum=None, size=size)
    path = urlsplit(info["upload_endpoint"]["uri"]).path
    head = request_head("PUT", path, [f"Content-Length: {size}"])
    barrier = threading.Barrier(2)
    results: dict[int, tuple[int, bytes]] = {}

    def client(i: int) -> None:
        with connect(server.base) as s:
            if start == "together":
                barrier.wait()
            elif i == 1:
                deadline = time.monotonic() + 30
                while api.get(f"{US}/{sid}/file/race.bin").json()["status"] != "TRANSFERRING":
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
            s.sendall(head + bodies[i][:1024])  # claim the transfer
            if select.select([s], [], [], 1.0)[0]:  # refused already: the loser
                results[i] = read_response(s)
                return
            s.sendall(bodies[i][1024:])
            results[i] = read_response(s)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [0, 1], results
    winners = [i for i, (status, _) in results.items() if status == 200]
    assert len(winners) == 1, results
    if start != "together":
        assert winners == [0], results
    loser = 1 - winners[0]
    status, body = results[loser]
    vendor_error(status, body, 400, "NOT_ALLOWED_IN_CURRENT_STATE", "race.bin", "already being transferred")
    got = api.get(f"{US}/{sid}/file/race.bin").json()
    assert got["status"] == "READY", got
    assert got["checksum_info"]["checksum"] == hashlib.sha1(bodies[winners[0]]).hexdigest(), got
    api.complete(sid)
    assert api.download(item, "race.bin") == bodies[winners[0]]


# -- tar bombs -----------------------------------------------------------------------------------------------------
def _tar(members: list[tarfile.TarInfo], fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for m in members:
            tar.addfile(m, io.BytesIO(b"\0" * m.size))
    return buf.getvalue()


def _member(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.size, m.type = size, kind
    return m


def _claims_huge_size() -> bytes:
    """A member whose header claims 1 TiB (GNU base-256) followed by a few bytes: nothing is reserved for it."""
    archive = bytearray(_tar([_member("vm.ovf", 512)], tarfile.GNU_FORMAT))
    header = archive[:512]
    header[124:136] = (1 << 40).to_bytes(12, "big")
    header[124] |= 0x80
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header) + b"x" * 4096


def _sparse() -> bytes:
    archive = bytearray(_tar([_member("disk.vmdk", 0)], tarfile.GNU_FORMAT))
    header = archive[:512]
    header[156:157] = b"S"  # an old GNU sparse file: its size claims expand on extraction
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header) + bytes(archive[512:])


TAR_BOMBS = {
    "many-members": lambda: _tar([_member(f"f{i:04d}.txt") for i in range(400)]),
    "huge-size-claim": _claims_huge_size,
    "gnu-sparse": _sparse,
    "pax-sparse": lambda: _tar(
        [_member("GNUSparseFile.0/disk.vmdk", 512)],
        tarfile.PAX_FORMAT,
    ),
    "device": lambda: _tar([_member("vm.ovf", 0, tarfile.CHRTYPE)]),
    "fifo": lambda: _tar([_member("vm.ovf", 0, tarfile.FIFOTYPE)]),
    "dot-dot-in-pax-path": lambda: _tar([_member("a" * 120 + "/../../escape.ovf")], tarfile.PAX_FORMAT),
}


TAR_BOMB_WORDS = {"many-members": "more than 300 files", "huge-size-claim": "ends in the middle"}


@pytest.mark.parametrize("kind", list(TAR_BOMBS))
def test_tar_bomb_is_refused(api: Api, server: ServerProcess, kind: str) -> None:
    archive = TAR_BOMBS[kind]()
    item_id, before = k.seeded_item(api)
    sid = api.create_session(item_id)
    blobs = server.blob_ids()
    r = api.post(f"{US}/{sid}/file", json={"name": "bomb.ova", "source_type": "PUSH"})
    assert r.status_code == 201, r.text
    r = requests.put(r.json()["upload_endpoint"]["uri"], data=archive, timeout=60)
    assert_error(r, 400, "INVALID_ARGUMENT", "bomb.ova", TAR_BOMB_WORDS.get(kind, "not valid"))
    files = k.session_files(api, sid)
    assert sorted(files) == sorted({"bomb.ova", *k.PRIOR}), sorted(files)  # no member is left
    assert files["bomb.ova"]["status"] == "ERROR", files["bomb.ova"]
    assert new_blobs(server, blobs) == set()
    assert k.snapshot(api, item_id) == before
    assert not list(server.data_dir.parent.glob("**/escape.ovf"))


def test_server_still_serves(api: Api) -> None:
    """After everything above, on this worker's shared server."""
    item = api.create_item(name=f"after-{uuid.uuid4().hex[:6]}")
    api.put_files(item, {"x.bin": b"still here"})
    assert api.download(item, "x.bin") == b"still here"


@pytest.mark.parametrize("where", ["api", "rest", "jsonrpc"])
def test_body_not_in_its_content_encoding(api: Api, server: ServerProcess, where: str) -> None:
    """A gzip body that is not gzip is bad input on every codec (INVALID_ARGUMENT; on JSON-RPC an Invalid Request),
    not an internal error with a logged traceback, and the answer closes the connection (aiohttp stops reading it
    inside the body); as on /sdk (test_hostile_soap.py)."""
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    path = {"api": "/api/content/local-library", "rest": "/rest/com/vmware/content/local-library", "jsonrpc": "/api"}
    r = api.post(path[where], data=b'{"name": "x"}', headers=headers)
    assert r.headers["Connection"] == "close", r.headers
    if where == "api":
        assert_error(r, 400, "INVALID_ARGUMENT", "cannot be read", "content-encoding: gzip")
    elif where == "rest":
        assert r.status_code == 400 and r.json()["type"] == "com.vmware.vapi.std.errors.invalid_argument", r.text
    else:
        assert r.status_code == 200 and r.json()["error"]["code"] == -32600, r.text
        assert "cannot be read" in r.json()["error"]["message"]
    assert api.get("/api/content/library").status_code == 200  # the next request, on a new connection
    assert "unexpected error" not in server.log() and "Unhandled exception" not in server.log()
