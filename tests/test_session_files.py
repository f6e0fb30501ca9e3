"""Update-session files: add, get, list, remove and validate (issue 2, points 5 and 9).

Contract: REFERENCE.md §2 (file.add, File.Info, file.get/list/remove, validate), §3 (status codes), A.2
(`com.vmware.content.library.item.updatesession.file`), A.3 (File.AddSpec, File.Info, ValidationResult),
and the lead's decided behaviour in the brief (upload URI shape, token strength, invalid names, overlay of
item files).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import string
import threading
import time
import uuid
from collections.abc import Iterator
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jsonschema
import pytest
import requests
from conftest import API_DIR, Api, ServerProcess, assert_error

US = "/api/content/library/item/update-session"
URLSAFE = set(string.ascii_letters + string.digits + "-_")


# -- helpers ---------------------------------------------------------------------------------------
@cache
def _definitions() -> dict[str, Any]:
    doc = json.loads((Path(API_DIR) / "vsphere-8.0.2-content.swagger.json").read_text())
    return dict(doc["definitions"])


def check_schema(obj: Any, definition: str) -> None:
    """Validate a response body against a definition of the vendor's 8.0.2 Swagger file."""
    schema = {"$ref": f"#/definitions/{definition}", "definitions": _definitions()}
    jsonschema.Draft4Validator(schema).validate(obj)


def files_url(sid: str) -> str:
    return f"{US}/{sid}/file"


def file_url(sid: str, name: str) -> str:
    return f"{US}/{sid}/file/{quote(name, safe='')}"


def add(api: Api, sid: str, spec: Any) -> requests.Response:
    return api.post(files_url(sid), json=spec)


def add_ok(api: Api, sid: str, spec: dict[str, Any]) -> dict[str, Any]:
    r = add(api, sid, spec)
    assert r.status_code == 201, r.text
    info = dict(r.json())
    check_schema(info, "ContentLibraryItemUpdatesessionFileInfo")
    return info


def get_file(api: Api, sid: str, name: str) -> dict[str, Any]:
    r = api.get(file_url(sid, name))
    assert r.status_code == 200, r.text
    info = dict(r.json())
    check_schema(info, "ContentLibraryItemUpdatesessionFileInfo")
    return info


def list_files(api: Api, sid: str) -> dict[str, dict[str, Any]]:
    r = api.get(files_url(sid))
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body, list), body
    for f in body:
        check_schema(f, "ContentLibraryItemUpdatesessionFileInfo")
    names = [f["name"] for f in body]
    assert len(names) == len(set(names)), f"duplicate names in session file list: {names}"
    return {f["name"]: f for f in body}


def token_of(uri: str) -> str:
    """The token of `http://HOST:PORT/cls/data/<token>/<name>`."""
    parts = urlsplit(uri).path.split("/")
    assert parts[:3] == ["", "cls", "data"] and len(parts) == 5, uri
    return parts[3]


def assert_strong_token(token: str) -> None:
    """At least 128 random bits: ≥32 hex digits, or ≥22 url-safe base64 characters."""
    assert set(token) <= URLSAFE, f"token {token!r} is not url-safe"
    if set(token) <= set(string.hexdigits):
        assert len(token) >= 32, f"hex token {token!r} has fewer than 128 bits"
    else:
        assert len(token) >= 22, f"token {token!r} has fewer than 128 bits"


def upload(uri: str, data: bytes) -> requests.Response:
    """PUT to an upload endpoint without any API session header: the URL is the credential."""
    return requests.put(uri, data=data, timeout=60)


def wait_status(api: Api, sid: str, name: str, want: set[str], timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    info = get_file(api, sid, name)
    while info["status"] not in want and time.monotonic() < deadline:
        time.sleep(0.05)
        info = get_file(api, sid, name)
    assert info["status"] in want, info
    return info


def session_state(api: Api, sid: str) -> str:
    return str(api.session(sid)["state"])


@pytest.fixture()
def sid(api: Api) -> str:
    return api.create_session(api.create_item())


# -- add -------------------------------------------------------------------------------------------
def test_add_push_returns_waiting_file_info(api: Api, server: ServerProcess, sid: str) -> None:
    r = add(api, sid, {"name": "disk-1.vmdk", "source_type": "PUSH", "size": 5})
    assert r.status_code == 201, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    info = r.json()
    check_schema(info, "ContentLibraryItemUpdatesessionFileInfo")
    assert info["name"] == "disk-1.vmdk"
    assert info["source_type"] == "PUSH"
    assert info["bytes_transferred"] == 0
    assert info["status"] == "WAITING_FOR_TRANSFER"
    assert info["keep_in_storage"] is True
    assert info.get("size") is None, "size is only set once the file is READY"
    assert info.get("source_endpoint") is None, "union rule: PUSH must not carry source_endpoint"
    assert info.get("error_message") is None
    uri = info["upload_endpoint"]["uri"]
    parts = urlsplit(uri)
    assert parts.scheme == "http", uri
    assert parts.netloc == f"127.0.0.1:{server.port}", uri
    assert parts.path.startswith("/cls/data/"), uri
    assert parts.path.endswith("/disk-1.vmdk"), uri
    assert_strong_token(token_of(uri))


def test_upload_uri_is_built_from_request_host(api: Api, server: ServerProcess, sid: str) -> None:
    r = api.post(
        files_url(sid),
        json={"name": "a.bin", "source_type": "PUSH"},
        headers={"Host": f"localhost:{server.port}"},
    )
    assert r.status_code == 201, r.text
    uri = r.json()["upload_endpoint"]["uri"]
    assert urlsplit(uri).netloc == f"localhost:{server.port}", uri
    assert uri.startswith(f"http://localhost:{server.port}/cls/data/"), uri


def test_get_returns_the_added_file(api: Api, sid: str) -> None:
    added = add_ok(api, sid, {"name": "x.ovf", "source_type": "PUSH"})
    got = get_file(api, sid, "x.ovf")
    assert got == added


def test_list_shows_exactly_the_added_files(api: Api, sid: str) -> None:
    assert list_files(api, sid) == {}
    a = add_ok(api, sid, {"name": "a.ovf", "source_type": "PUSH"})
    b = add_ok(api, sid, {"name": "b.vmdk", "source_type": "PUSH", "size": 3})
    assert list_files(api, sid) == {"a.ovf": a, "b.vmdk": b}


def test_list_overlays_item_files(api: Api) -> None:
    item = api.create_item()
    api.put_files(item, {"keep.txt": b"keep", "gone.txt": b"gone!", "swap.txt": b"old"})
    sid = api.create_session(item)
    view = list_files(api, sid)
    assert set(view) == {"keep.txt", "gone.txt", "swap.txt"}
    for name, data in {"keep.txt": b"keep", "gone.txt": b"gone!", "swap.txt": b"old"}.items():
        f = view[name]
        assert f["source_type"] == "NONE", f
        assert f["status"] == "READY", f
        assert f["size"] == len(data), f
        assert f.get("upload_endpoint") is None and f.get("source_endpoint") is None, f
        assert get_file(api, sid, name) == f

    swap = add_ok(api, sid, {"name": "swap.txt", "source_type": "PUSH"})
    new = add_ok(api, sid, {"name": "new.txt", "source_type": "PUSH"})
    r = api.delete(file_url(sid, "gone.txt"))
    assert r.status_code == 204, r.text
    view = list_files(api, sid)
    assert set(view) == {"keep.txt", "swap.txt", "new.txt"}
    assert view["keep.txt"]["source_type"] == "NONE"
    assert view["swap.txt"] == swap
    assert view["swap.txt"]["status"] == "WAITING_FOR_TRANSFER"
    assert view["new.txt"] == new
    assert_error(api.get(file_url(sid, "gone.txt")), 400, "INVALID_ARGUMENT", "gone.txt")
    # Staged only: the item itself is untouched until complete.
    assert set(api.item_files(item)) == {"keep.txt", "gone.txt", "swap.txt"}


def test_readd_replaces_the_file(api: Api, sid: str) -> None:
    first = add_ok(api, sid, {"name": "r.bin", "source_type": "PUSH", "size": 10})
    second = add_ok(api, sid, {"name": "r.bin", "source_type": "PUSH", "size": 5})
    assert second["status"] == "WAITING_FOR_TRANSFER"
    assert second["bytes_transferred"] == 0
    assert second["upload_endpoint"]["uri"] != first["upload_endpoint"]["uri"]
    assert list(list_files(api, sid)) == ["r.bin"]
    # The old endpoint no longer leads anywhere; the new one takes the new declared size.
    assert_error(upload(first["upload_endpoint"]["uri"], b"0123456789"), 404, "NOT_FOUND")
    r = upload(second["upload_endpoint"]["uri"], b"01234")
    assert r.status_code == 200, r.text
    info = get_file(api, sid, "r.bin")
    assert info["status"] == "READY", info
    assert info["size"] == 5


def test_readd_after_upload_resets_the_file(api: Api, sid: str) -> None:
    info = add_ok(api, sid, {"name": "z.bin", "source_type": "PUSH"})
    assert upload(info["upload_endpoint"]["uri"], b"payload").status_code == 200
    assert get_file(api, sid, "z.bin")["status"] == "READY"
    again = add_ok(api, sid, {"name": "z.bin", "source_type": "PUSH"})
    assert again["status"] == "WAITING_FOR_TRANSFER"
    assert again["bytes_transferred"] == 0
    assert again.get("size") is None
    assert again["upload_endpoint"]["uri"] != info["upload_endpoint"]["uri"]
    assert get_file(api, sid, "z.bin") == again


def test_upload_tokens_are_strong_and_unique(api: Api) -> None:
    tokens: list[str] = []
    # Same names in two sessions, and a re-add of each name: every endpoint gets its own token.
    for _ in range(2):
        sid = api.create_session(api.create_item())
        for i in range(10):
            info = add_ok(api, sid, {"name": f"f{i}.bin", "source_type": "PUSH"})
            tokens.append(token_of(info["upload_endpoint"]["uri"]))
        info = add_ok(api, sid, {"name": "f0.bin", "source_type": "PUSH"})
        tokens.append(token_of(info["upload_endpoint"]["uri"]))
    for t in tokens:
        assert_strong_token(t)
    assert len(set(tokens)) == len(tokens), tokens


# -- remove ----------------------------------------------------------------------------------------
def test_remove_added_file(api: Api, sid: str) -> None:
    add_ok(api, sid, {"name": "a.bin", "source_type": "PUSH"})
    add_ok(api, sid, {"name": "b.bin", "source_type": "PUSH"})
    r = api.delete(file_url(sid, "a.bin"))
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert set(list_files(api, sid)) == {"b.bin"}
    assert_error(api.get(file_url(sid, "a.bin")), 400, "INVALID_ARGUMENT", "a.bin")
    # Removing it again: no longer in the session's view.
    assert_error(api.delete(file_url(sid, "a.bin")), 400, "INVALID_ARGUMENT", "a.bin")
    assert set(list_files(api, sid)) == {"b.bin"}


def test_remove_uploaded_file_invalidates_its_endpoint(api: Api, sid: str) -> None:
    info = add_ok(api, sid, {"name": "u.bin", "source_type": "PUSH"})
    assert api.delete(file_url(sid, "u.bin")).status_code == 204
    assert_error(upload(info["upload_endpoint"]["uri"], b"late"), 404, "NOT_FOUND")
    assert list_files(api, sid) == {}


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_missing_file_name_is_invalid_argument(api: Api, sid: str, method: str) -> None:
    add_ok(api, sid, {"name": "present.bin", "source_type": "PUSH"})
    r = api.request(method, file_url(sid, "absent-file.bin"))
    assert_error(r, 400, "INVALID_ARGUMENT", "absent-file.bin")
    assert set(list_files(api, sid)) == {"present.bin"}


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("raw", ["a%2Fb", "a%5Cb", "a%00b"], ids=["slash", "backslash", "nul"])
def test_invalid_name_in_path_is_invalid_argument(api: Api, sid: str, method: str, raw: str) -> None:
    r = api.request(method, f"{files_url(sid)}/{raw}")
    assert_error(r, 400, "INVALID_ARGUMENT")


# -- unknown session -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "/file", None),
        ("POST", "/file", {"name": "a.bin", "source_type": "PUSH"}),
        ("GET", "/file/a.bin", None),
        ("DELETE", "/file/a.bin", None),
        ("POST", "/file?action=validate", None),
    ],
    ids=["list", "add", "get", "remove", "validate"],
)
def test_unknown_session_is_not_found(api: Api, method: str, suffix: str, body: Any) -> None:
    missing = str(uuid.uuid4())
    r = api.request(method, f"{US}/{missing}{suffix}", json=body)
    assert_error(r, 404, "NOT_FOUND", missing)


# -- invalid specs ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    ["", "a/b", "a\\b", "a\x00b", ".", ".."],
    ids=["empty", "slash", "backslash", "nul", "dot", "dotdot"],
)
def test_add_invalid_name_rejected(api: Api, sid: str, name: str) -> None:
    add_ok(api, sid, {"name": "ok.bin", "source_type": "PUSH"})
    r = add(api, sid, {"name": name, "source_type": "PUSH"})
    assert_error(r, 400, "INVALID_ARGUMENT", "name")
    assert set(list_files(api, sid)) == {"ok.bin"}


SHA1_OF_ABC = hashlib.sha1(b"abc").hexdigest()


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"name": "f.bin"}, "source_type"),
        ({"name": "f.bin", "source_type": "CARRIER_PIGEON"}, "source_type"),
        ({"name": "f.bin", "source_type": 7}, "source_type"),
        ({"source_type": "PUSH"}, "name"),
        ({"name": 12, "source_type": "PUSH"}, "name"),
        ({"name": "f.bin", "source_type": "PUSH", "size": -1}, "size"),
        ({"name": "f.bin", "source_type": "PUSH", "size": "ten"}, "size"),
        ({"name": "f.bin", "source_type": "PUSH", "size": 2**63}, "size"),  # beyond a long (found by fuzzing)
        (
            {
                "name": "f.bin",
                "source_type": "PUSH",
                "checksum_info": {"algorithm": "CRC32", "checksum": "00"},
            },
            "algorithm",
        ),
        ({"name": "f.bin", "source_type": "PUSH", "checksum_info": {"algorithm": "SHA1"}}, "checksum"),
        ({"name": "f.bin", "source_type": "PUSH", "checksum_info": "sha1:" + SHA1_OF_ABC}, "checksum_info"),
        ({"name": "f.bin", "source_type": "PULL"}, "source_endpoint"),
        ({"name": "f.bin", "source_type": "PULL", "source_endpoint": {}}, "uri"),
    ],
    ids=[
        "missing-source-type",
        "unknown-source-type",
        "source-type-not-string",
        "missing-name",
        "name-not-string",
        "negative-size",
        "size-not-integer",
        "size-beyond-long",
        "unknown-algorithm",
        "checksum-missing",
        "checksum-info-not-object",
        "pull-without-endpoint",
        "pull-endpoint-without-uri",
    ],
)
def test_add_bad_spec_rejected(api: Api, sid: str, spec: dict[str, Any], field: str) -> None:
    add_ok(api, sid, {"name": "ok.bin", "source_type": "PUSH"})
    before = list_files(api, sid)
    assert_error(add(api, sid, spec), 400, "INVALID_ARGUMENT", field)
    assert list_files(api, sid) == before
    assert session_state(api, sid) == "ACTIVE"


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'"PUSH"', b""], ids=["malformed", "array", "string", "empty"])
def test_add_body_not_an_object_rejected(api: Api, sid: str, body: bytes) -> None:
    r = api.post(files_url(sid), data=body, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "INVALID_ARGUMENT")
    assert list_files(api, sid) == {}


def close_session(api: Api, sid: str, how: str) -> None:
    if how == "fail":
        r = api.post(f"{US}/{sid}?action=fail", json={"client_error_message": "client gave up"})
    else:
        r = api.post(f"{US}/{sid}?action={how}")
    assert r.status_code == 204, r.text


@pytest.mark.parametrize("how", ["cancel", "fail", "complete"])
def test_add_on_closed_session_not_allowed(api: Api, sid: str, how: str) -> None:
    close_session(api, sid, how)
    r = add(api, sid, {"name": "late.bin", "source_type": "PUSH"})
    assert_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE")
    assert list_files(api, sid) == {}


# -- validate --------------------------------------------------------------------------------------
def validate(api: Api, sid: str) -> dict[str, Any]:
    r = api.post(f"{files_url(sid)}?action=validate")
    assert r.status_code == 200, r.text
    body = dict(r.json())
    check_schema(body, "ContentLibraryItemUpdatesessionFileValidationResult")
    return body


def test_validate_empty_session(api: Api, sid: str) -> None:
    assert validate(api, sid) == {"has_errors": False, "missing_files": [], "invalid_files": []}


def test_validate_after_uploads(api: Api, sid: str) -> None:
    data = b"validated bytes"
    info = add_ok(
        api,
        sid,
        {
            "name": "v.bin",
            "source_type": "PUSH",
            "size": len(data),
            "checksum_info": {"algorithm": "SHA1", "checksum": hashlib.sha1(data).hexdigest()},
        },
    )
    assert upload(info["upload_endpoint"]["uri"], data).status_code == 200
    assert validate(api, sid) == {"has_errors": False, "missing_files": [], "invalid_files": []}
    # validate changes nothing.
    assert get_file(api, sid, "v.bin")["status"] == "READY"
    assert session_state(api, sid) == "ACTIVE"


@pytest.mark.parametrize("how", ["cancel", "fail", "complete"])
def test_validate_on_closed_session_not_allowed(api: Api, sid: str, how: str) -> None:
    close_session(api, sid, how)
    assert_error(api.post(f"{files_url(sid)}?action=validate"), 400, "NOT_ALLOWED_IN_CURRENT_STATE")


# -- PULL ------------------------------------------------------------------------------------------
class _Source(BaseHTTPRequestHandler):
    blobs: dict[str, bytes] = {}

    def do_GET(self) -> None:
        data = self.blobs.get(self.path)
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture()
def http_source() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A plain HTTP server that serves `blobs[path]`; yields (base URL, blobs)."""
    blobs: dict[str, bytes] = {}
    handler = type("Source", (_Source,), {"blobs": blobs})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", blobs
    httpd.shutdown()
    httpd.server_close()


def test_pull_file_is_fetched_and_verified(api: Api, http_source: tuple[str, dict[str, bytes]]) -> None:
    base, blobs = http_source
    data = secrets.token_bytes(100_000)
    blobs["/disk.vmdk"] = data
    item = api.create_item()
    sid = api.create_session(item)
    info = add_ok(
        api,
        sid,
        {
            "name": "disk.vmdk",
            "source_type": "PULL",
            "source_endpoint": {"uri": f"{base}/disk.vmdk"},
            "size": len(data),
            "checksum_info": {"algorithm": "SHA256", "checksum": hashlib.sha256(data).hexdigest()},
        },
    )
    assert info["source_type"] == "PULL"
    assert info["source_endpoint"]["uri"] == f"{base}/disk.vmdk"
    assert info.get("upload_endpoint") is None, "union rule: PULL must not carry upload_endpoint"
    done = wait_status(api, sid, "disk.vmdk", {"READY", "ERROR"})
    assert done["status"] == "READY", done
    assert done["size"] == len(data)
    assert done["bytes_transferred"] == len(data)
    api.complete(sid)
    assert api.download(item, "disk.vmdk") == data


@pytest.mark.parametrize("case", ["bad-checksum", "bad-size", "http-404"])
def test_pull_failure_puts_file_in_error(api: Api, http_source: tuple[str, dict[str, bytes]], case: str) -> None:
    base, blobs = http_source
    data = b"pulled content " * 100
    blobs["/f.bin"] = data
    spec: dict[str, Any] = {
        "name": "f.bin",
        "source_type": "PULL",
        "source_endpoint": {"uri": f"{base}/f.bin"},
    }
    if case == "bad-checksum":
        spec["checksum_info"] = {"algorithm": "SHA1", "checksum": hashlib.sha1(b"other").hexdigest()}
    elif case == "bad-size":
        spec["size"] = len(data) + 1
    else:
        spec["source_endpoint"] = {"uri": f"{base}/nowhere.bin"}
    sid = api.create_session(api.create_item())
    add_ok(api, sid, spec)
    info = wait_status(api, sid, "f.bin", {"READY", "ERROR"})
    assert info["status"] == "ERROR", info
    msg = info["error_message"]
    assert isinstance(msg["id"], str) and msg["id"] and isinstance(msg["args"], list), msg
    assert msg["default_message"]
    if case == "bad-checksum":
        assert "checksum" in msg["default_message"].lower(), msg
    elif case == "bad-size":
        assert "size" in msg["default_message"].lower(), msg
