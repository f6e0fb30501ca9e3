"""The upload endpoint (`/cls/data/<token>/<name>`): methods, content types, framing, size and checksum
checks, progress, disconnects, and what a failed upload leaves behind (issue 2, point 6).

Contract: REFERENCE.md §2 (file.add: declared size/checksum are verified, a mismatch fails the upload;
File.Info status WAITING_FOR_TRANSFER → TRANSFERRING → READY or ERROR with error_message; size only when
READY; bytes_transferred), A.3 (File.ChecksumInfo: SHA1, MD5, SHA256, SHA512, default SHA1) and the
decided behaviour in the brief (PUT or POST, any Content-Type → 200; mismatch → 400 INVALID_ARGUMENT and
file ERROR; not ACTIVE → 400 NOT_ALLOWED_IN_CURRENT_STATE; unknown token → 404 NOT_FOUND).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests
from conftest import Api, ServerProcess, assert_error

US = "/api/content/library/item/update-session"
ALGORITHMS = ["SHA1", "MD5", "SHA256", "SHA512"]


# -- helpers ---------------------------------------------------------------------------------------
def digest(algorithm: str, data: bytes) -> str:
    return hashlib.new(algorithm.lower(), data).hexdigest()


def new_session(api: Api) -> tuple[str, str]:
    item = api.create_item()
    return item, api.create_session(item)


def add_push(api: Api, sid: str, name: str, size: int | None = None, checksum: dict[str, str] | None = None) -> str:
    """Add a PUSH file with the given declarations; return its upload URI."""
    spec: dict[str, Any] = {"name": name, "source_type": "PUSH"}
    if size is not None:
        spec["size"] = size
    if checksum is not None:
        spec["checksum_info"] = checksum
    r = api.post(f"{US}/{sid}/file", json=spec)
    assert r.status_code == 201, r.text
    return str(r.json()["upload_endpoint"]["uri"])


def add_declared(api: Api, sid: str, name: str, data: bytes, algorithm: str = "SHA1") -> str:
    return add_push(api, sid, name, len(data), {"algorithm": algorithm, "checksum": digest(algorithm, data)})


def file_info(api: Api, sid: str, name: str) -> dict[str, Any]:
    r = api.get(f"{US}/{sid}/file/{quote(name, safe='')}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_status(api: Api, sid: str, name: str, want: set[str], timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    info = file_info(api, sid, name)
    while info["status"] not in want and time.monotonic() < deadline:
        time.sleep(0.05)
        info = file_info(api, sid, name)
    assert info["status"] in want, info
    return info


def send(
    uri: str, data: bytes | Iterator[bytes], method: str = "PUT", content_type: str | None = None
) -> requests.Response:
    """Upload without any API session header: the URL is the credential. A generator body goes chunked."""
    headers = {"Content-Type": content_type} if content_type else {}
    return requests.request(method, uri, data=data, headers=headers, timeout=60)


def chunks(data: bytes, size: int, pause: float = 0.0) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        if pause and i:
            time.sleep(pause)
        yield data[i : i + size]


def assert_ready(info: dict[str, Any], data: bytes, algorithm: str | None = None) -> None:
    assert info["status"] == "READY", info
    assert info["size"] == len(data), info
    assert info["bytes_transferred"] == len(data), info
    assert info.get("error_message") is None, info
    ci = info["checksum_info"]
    algorithm = algorithm or "SHA1"  # declared, else the server's own SHA1
    assert ci.get("algorithm", "SHA1") == algorithm, ci
    assert ci["checksum"].lower() == digest(algorithm, data), ci


def assert_file_error(info: dict[str, Any], word: str) -> None:
    assert info["status"] == "ERROR", info
    msg = info.get("error_message")
    assert isinstance(msg, dict), info
    assert isinstance(msg["id"], str) and msg["id"], msg
    assert isinstance(msg["args"], list), msg
    assert word in msg["default_message"].lower(), msg


def item_state(api: Api, item: str) -> tuple[str, int, dict[str, dict[str, Any]]]:
    r = api.get(f"/api/content/library/item/{item}")
    assert r.status_code == 200, r.text
    body = r.json()
    return body["content_version"], body.get("size", 0), api.item_files(item)


# -- methods, content types, framing ---------------------------------------------------------------
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("content_type", ["text/ovf", "application/octet-stream"])
@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_upload_method_content_type_framing(api: Api, method: str, content_type: str, framing: str) -> None:
    item, sid = new_session(api)
    data = os.urandom(200_000)
    uri = add_declared(api, sid, "payload.bin", data)
    body: bytes | Iterator[bytes] = data if framing == "content-length" else chunks(data, 65_536)
    r = send(uri, body, method, content_type)
    assert r.status_code == 200, r.text
    assert_ready(file_info(api, sid, "payload.bin"), data)
    api.complete(sid)
    assert api.download(item, "payload.bin") == data


def test_upload_without_declarations_uses_server_sha1(api: Api) -> None:
    _, sid = new_session(api)
    data = b"no size, no checksum declared"
    r = send(add_push(api, sid, "plain.txt"), data)
    assert r.status_code == 200, r.text
    assert_ready(file_info(api, sid, "plain.txt"), data)


def test_checksum_without_algorithm_defaults_to_sha1(api: Api) -> None:
    _, sid = new_session(api)
    data = b"default algorithm"
    good = add_push(api, sid, "good.bin", checksum={"checksum": digest("SHA1", data)})
    assert send(good, data).status_code == 200
    assert_ready(file_info(api, sid, "good.bin"), data)
    bad = add_push(api, sid, "bad.bin", checksum={"checksum": digest("SHA1", b"other")})
    assert_error(send(bad, data), 400, "INVALID_ARGUMENT", "checksum")
    assert_file_error(file_info(api, sid, "bad.bin"), "checksum")


# -- size and checksum verification ----------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_declared_checksum_verified_ok(api: Api, algorithm: str) -> None:
    item, sid = new_session(api)
    data = os.urandom(70_000)
    assert send(add_declared(api, sid, "ok.bin", data, algorithm), data).status_code == 200
    assert_ready(file_info(api, sid, "ok.bin"), data, algorithm)
    api.complete(sid)
    assert api.download(item, "ok.bin") == data


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_declared_checksum_upper_case_hex_accepted(api: Api, algorithm: str) -> None:
    _, sid = new_session(api)
    data = b"Upper-case hex digests are the same digests."
    uri = add_push(
        api,
        sid,
        "upper.bin",
        len(data),
        {"algorithm": algorithm, "checksum": digest(algorithm, data).upper()},
    )
    r = send(uri, data)
    assert r.status_code == 200, r.text
    assert_ready(file_info(api, sid, "upper.bin"), data, algorithm)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_wrong_checksum_rejected(api: Api, algorithm: str, framing: str) -> None:
    item, sid = new_session(api)
    data = os.urandom(50_000)
    # Same length, one flipped byte: only the checksum can tell.
    sent = data[:-1] + bytes([data[-1] ^ 0xFF])
    uri = add_declared(api, sid, "bad.bin", data, algorithm)
    body: bytes | Iterator[bytes] = sent if framing == "content-length" else chunks(sent, 16_384)
    assert_error(send(uri, body), 400, "INVALID_ARGUMENT", "checksum")
    info = file_info(api, sid, "bad.bin")
    assert_file_error(info, "checksum")
    assert info.get("size") is None, "size is only set on READY files"
    assert api.session(sid)["state"] == "ACTIVE"
    assert api.item_files(item) == {}


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("direction", ["short", "long"])
def test_wrong_size_rejected(api: Api, direction: str, framing: str) -> None:
    item, sid = new_session(api)
    data = os.urandom(40_000)
    declared = len(data) + 100 if direction == "short" else len(data) - 100
    uri = add_push(api, sid, "sized.bin", size=declared)
    body: bytes | Iterator[bytes] = data if framing == "content-length" else chunks(data, 8_192)
    assert_error(send(uri, body), 400, "INVALID_ARGUMENT", "size")
    info = file_info(api, sid, "sized.bin")
    assert_file_error(info, "size")
    assert info.get("size") is None
    assert api.session(sid)["state"] == "ACTIVE"
    assert api.item_files(item) == {}


def test_zero_byte_file(api: Api) -> None:
    item, sid = new_session(api)
    uri = add_declared(api, sid, "empty.bin", b"")
    r = send(uri, b"")
    assert r.status_code == 200, r.text
    assert_ready(file_info(api, sid, "empty.bin"), b"")
    api.complete(sid)
    f = api.item_files(item)["empty.bin"]
    assert f["size"] == 0
    assert f["checksum_info"]["checksum"].lower() == hashlib.sha1(b"").hexdigest()
    assert api.download(item, "empty.bin") == b""


def test_few_mib_of_random_bytes(api: Api) -> None:
    item, sid = new_session(api)
    data = os.urandom(3 * 1024 * 1024 + 17)
    uri = add_declared(api, sid, "big.vmdk", data, "SHA256")
    r = send(uri, chunks(data, 1 << 20))
    assert r.status_code == 200, r.text
    assert_ready(file_info(api, sid, "big.vmdk"), data, "SHA256")
    api.complete(sid)
    f = api.item_files(item)["big.vmdk"]
    assert f["size"] == len(data)
    assert f["checksum_info"] == {"algorithm": "SHA1", "checksum": hashlib.sha1(data).hexdigest()}
    assert api.download(item, "big.vmdk") == data


def test_parallel_uploads_into_one_session(api: Api) -> None:
    item, sid = new_session(api)
    blobs = {f"part-{i}.bin": os.urandom(300_000 + i) for i in range(4)}
    uris = {name: add_declared(api, sid, name, data, "SHA256") for name, data in blobs.items()}
    results: dict[str, int] = {}

    def run(name: str) -> None:
        results[name] = send(uris[name], chunks(blobs[name], 32_768)).status_code

    threads = [threading.Thread(target=run, args=(name,)) for name in blobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == dict.fromkeys(blobs, 200)
    for name, data in blobs.items():
        assert_ready(file_info(api, sid, name), data, "SHA256")
    api.complete(sid)
    for name, data in blobs.items():
        assert api.download(item, name) == data


def test_expect_100_continue(api: Api) -> None:
    """curl sends `Expect: 100-continue` for large bodies and waits for the interim response."""
    _, sid = new_session(api)
    data = os.urandom(64 * 1024)
    u = urlsplit(add_declared(api, sid, "curl.bin", data))
    assert u.hostname and u.port
    head = (
        f"PUT {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Length: {len(data)}\r\n"
        "Expect: 100-continue\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(head)
        interim = s.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        s.sendall(data)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert_ready(file_info(api, sid, "curl.bin"), data)


# -- progress --------------------------------------------------------------------------------------
def test_bytes_transferred_grows_during_slow_upload(api: Api) -> None:
    _, sid = new_session(api)
    data = os.urandom(16 * 128 * 1024)
    uri = add_declared(api, sid, "slow.bin", data)
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["response"] = send(uri, chunks(data, 128 * 1024, pause=0.12))
        except Exception as e:  # reported by the main thread
            result["error"] = e

    t = threading.Thread(target=run)
    t.start()
    seen: list[tuple[str, int]] = []
    while t.is_alive():  # the upload thread does not use `api`: it sends without the API session
        info = file_info(api, sid, "slow.bin")
        seen.append((info["status"], info["bytes_transferred"]))
        time.sleep(0.04)
    t.join()
    assert "error" not in result, result
    assert result["response"].status_code == 200, result["response"].text
    mid = [(s, b) for s, b in seen if s == "TRANSFERRING" and 0 < b < len(data)]
    assert mid, f"never saw TRANSFERRING with 0 < bytes_transferred < {len(data)}: {seen}"
    assert len({b for _, b in mid}) >= 2, f"bytes_transferred did not grow while transferring: {seen}"
    counts = [b for _, b in seen]
    assert counts == sorted(counts), f"bytes_transferred went backwards: {seen}"
    assert all(s in ("WAITING_FOR_TRANSFER", "TRANSFERRING", "VALIDATING", "READY") for s, _ in seen), seen
    assert_ready(file_info(api, sid, "slow.bin"), data)


# -- disconnects -----------------------------------------------------------------------------------
def send_half_and_close(uri: str, data: bytes, chunked: bool) -> None:
    """Raw HTTP: headers announcing the whole body, then half of it, then a closed socket."""
    u = urlsplit(uri)
    assert u.hostname and u.port
    half = data[: len(data) // 2]
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(data)}"
    head = (
        f"PUT {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/octet-stream\r\n{framing}\r\n\r\n"
    ).encode()
    body = f"{len(half):x}\r\n".encode() + half + b"\r\n" if chunked else half
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(head + body)
        time.sleep(0.3)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_client_disconnect_mid_body_puts_file_in_error(api: Api, chunked: bool) -> None:
    item, sid = new_session(api)
    data = os.urandom(256 * 1024)
    uri = add_declared(api, sid, "cut.bin", data)
    send_half_and_close(uri, data, chunked)
    info = wait_status(api, sid, "cut.bin", {"ERROR", "READY"})
    assert info["status"] == "ERROR", info
    assert info["error_message"]["default_message"], info
    assert info.get("size") is None
    assert api.session(sid)["state"] == "ACTIVE"
    assert api.item_files(item) == {}
    # The client can add the file again and finish the job.
    r = send(add_declared(api, sid, "cut.bin", data), data)
    assert r.status_code == 200, r.text
    assert_ready(file_info(api, sid, "cut.bin"), data)
    api.complete(sid)
    assert api.download(item, "cut.bin") == data


# -- closed sessions and unknown tokens ------------------------------------------------------------
@pytest.mark.parametrize("how", ["cancel", "fail", "complete"])
@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_upload_to_closed_session_not_allowed(api: Api, how: str, method: str) -> None:
    item, sid = new_session(api)
    data = b"bytes after the session ended"
    uri = add_declared(api, sid, "late.bin", data)
    if how == "complete":
        assert send(uri, data).status_code == 200
        api.complete(sid)
    elif how == "fail":
        r = api.post(f"{US}/{sid}?action=fail", json={"client_error_message": "stop"})
        assert r.status_code == 204, r.text
    else:
        r = api.post(f"{US}/{sid}?action=cancel")
        assert r.status_code == 204, r.text
    before = item_state(api, item)
    assert_error(send(uri, data, method), 400, "NOT_ALLOWED_IN_CURRENT_STATE")
    assert item_state(api, item) == before


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_unknown_token_not_found(api: Api, server: ServerProcess, method: str) -> None:
    uri = f"{server.base}/cls/data/{secrets.token_urlsafe(32)}/x.bin"
    assert_error(send(uri, b"data", method), 404, "NOT_FOUND")


def test_token_of_one_name_does_not_reach_another(api: Api) -> None:
    """The URL is the credential: a valid token with another file name is not a way into the session."""
    _, sid = new_session(api)
    uri = add_push(api, sid, "a.bin")
    add_push(api, sid, "b.bin")
    other = uri.rsplit("/", 1)[0] + "/b.bin"
    assert_error(send(other, b"data"), 404, "NOT_FOUND")
    assert file_info(api, sid, "b.bin")["status"] == "WAITING_FOR_TRANSFER"
    assert file_info(api, sid, "a.bin")["status"] == "WAITING_FOR_TRANSFER"


# -- failed uploads leave no trace -----------------------------------------------------------------
@pytest.mark.parametrize("failure", ["checksum", "size", "disconnect"])
def test_failed_upload_not_visible_in_item(api: Api, failure: str) -> None:
    item = api.create_item()
    old = b"the published content v1"
    api.put_files(item, {"disk.vmdk": old})
    before = item_state(api, item)
    sid = api.create_session(item)
    new = os.urandom(100_000)
    if failure == "checksum":
        uri = add_declared(api, sid, "disk.vmdk", new)
        assert_error(send(uri, new[::-1]), 400, "INVALID_ARGUMENT", "checksum")
    elif failure == "size":
        uri = add_push(api, sid, "disk.vmdk", size=len(new) * 2)
        assert_error(send(uri, new), 400, "INVALID_ARGUMENT", "size")
    else:
        uri = add_declared(api, sid, "disk.vmdk", new)
        send_half_and_close(uri, new, chunked=False)
    assert wait_status(api, sid, "disk.vmdk", {"ERROR", "READY"})["status"] == "ERROR"
    assert item_state(api, item) == before
    assert api.download(item, "disk.vmdk") == old
    r = api.post(f"{US}/{sid}?action=cancel")
    assert r.status_code == 204, r.text
    assert item_state(api, item) == before
    assert api.download(item, "disk.vmdk") == old


def test_error_file_can_be_readded_and_completed(api: Api) -> None:
    item, sid = new_session(api)
    data = os.urandom(30_000)
    uri = add_declared(api, sid, "retry.bin", data, "MD5")
    assert_error(send(uri, data + b"!"), 400, "INVALID_ARGUMENT")
    assert file_info(api, sid, "retry.bin")["status"] == "ERROR"
    uri2 = add_declared(api, sid, "retry.bin", data, "MD5")
    assert uri2 != uri
    again = file_info(api, sid, "retry.bin")
    assert again["status"] == "WAITING_FOR_TRANSFER", again
    assert again.get("error_message") is None, again
    assert again["bytes_transferred"] == 0
    assert send(uri2, data, "POST", "text/ovf").status_code == 200
    assert_ready(file_info(api, sid, "retry.bin"), data, "MD5")
    api.complete(sid)
    assert api.session(sid)["state"] == "DONE"
    f = api.item_files(item)["retry.bin"]
    assert f["size"] == len(data)
    assert f["version"] == "1"
    assert api.download(item, "retry.bin") == data
