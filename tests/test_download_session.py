"""Download sessions, their files, and the download data plane (`/cls/download/...`).

Contract: REFERENCE.md §3 (download-session rows), A.2 `item.download_session` / `downloadsession.file`,
A.3 `DownloadSessionModel` and `downloadsession.File.Info`; common.md "Download session" for the decided
endpoint shape (`http://HOST:PORT/cls/download/<token>/<name>`, Range → 206, Content-Length always set).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from typing import Any

import pytest
import requests
from conftest import Api, ServerProcess, assert_error

DS = "/api/content/library/item/download-session"
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

FILES: dict[str, bytes] = {
    "a.bin": bytes(range(256)) * 4 + b"tail",  # 1028 bytes, every byte value
    "b.txt": b"hello download session\n",
    "c.vmdk": os.urandom(3000),
}


# -- helpers -----------------------------------------------------------------------------------------------


def make_item(api: Api, files: dict[str, bytes] | None = None) -> str:
    item = api.create_item()
    api.put_files(item, FILES if files is None else files)
    return item


def create_ds(api: Api, item_id: str, **kw: Any) -> str:
    r = api.post(DS, json={"library_item_id": item_id}, **kw)
    assert r.status_code == 201, r.text
    ds = r.json()
    assert isinstance(ds, str)
    uuid.UUID(ds)
    return ds


def get_ds(api: Api, ds: str) -> dict[str, Any]:
    r = api.get(f"{DS}/{ds}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def prepare(api: Api, ds: str, name: str, **extra: Any) -> dict[str, Any]:
    r = api.post(f"{DS}/{ds}/file?action=prepare", json={"file_name": name, **extra})
    assert r.status_code == 200, r.text
    info = dict(r.json())
    assert info["name"] == name, info
    assert info["status"] == "PREPARED", info
    assert isinstance(info["bytes_transferred"], int), info
    return info


def prepared_uri(api: Api, ds: str, name: str) -> str:
    return str(prepare(api, ds, name)["download_endpoint"]["uri"])


def bare_get(uri: str, **kw: Any) -> requests.Response:
    """The data plane needs no API session header: use a fresh client."""
    kw.setdefault("timeout", 60)
    return requests.get(uri, verify=False, **kw)


# -- download-session lifecycle ----------------------------------------------------------------------------


def test_create_returns_201_uuid_and_get_shows_the_model(api: Api) -> None:
    item = make_item(api)
    content_version = api.get(f"/api/content/library/item/{item}").json()["content_version"]
    ds = create_ds(api, item)
    info = get_ds(api, ds)
    assert info["library_item_id"] == item
    assert info["library_item_content_version"] == content_version
    assert info["client_progress"] == 0
    assert info["state"] == "ACTIVE"
    assert DATETIME.match(info["expiration_time"]), info
    assert "id" not in info, info  # "will not be present in get/list"
    assert info.get("error_message") is None, info


def test_create_unknown_item_is_404(api: Api) -> None:
    missing = str(uuid.uuid4())
    r = api.post(DS, json={"library_item_id": missing})
    assert_error(r, 404, "NOT_FOUND", missing)


def test_create_missing_item_id_is_400(api: Api) -> None:
    r = api.post(DS, json={})
    assert_error(r, 400, "INVALID_ARGUMENT", "library_item_id")


def test_create_client_token_header_is_idempotent(api: Api) -> None:
    item = make_item(api)
    token = str(uuid.uuid4())
    first = create_ds(api, item, headers={"Client-Token": token})
    again = create_ds(api, item, headers={"Client-Token": token})
    assert again == first
    other = create_ds(api, item, headers={"Client-Token": str(uuid.uuid4())})
    assert other != first
    plain = create_ds(api, item)
    assert plain not in (first, other)


def test_create_client_token_query_is_idempotent(api: Api) -> None:
    item = make_item(api)
    token = str(uuid.uuid4())
    first = create_ds(api, item, params={"client_token": token})
    assert create_ds(api, item, params={"client_token": token}) == first


def test_create_client_token_not_uuid_is_400(api: Api) -> None:
    item = make_item(api)
    r = api.post(DS, json={"library_item_id": item}, headers={"Client-Token": "not-a-uuid"})
    assert_error(r, 400, "INVALID_ARGUMENT")
    r = api.post(DS, json={"library_item_id": item}, params={"client_token": "not-a-uuid"})
    assert_error(r, 400, "INVALID_ARGUMENT")


def test_several_download_sessions_on_one_item_are_allowed(api: Api) -> None:
    item = make_item(api)
    a, b = create_ds(api, item), create_ds(api, item)
    assert a != b
    assert get_ds(api, a)["state"] == get_ds(api, b)["state"] == "ACTIVE"


def test_list_filters_by_item(api: Api) -> None:
    item1, item2 = make_item(api), make_item(api)
    a = create_ds(api, item1)
    b = create_ds(api, item2)
    r = api.get(DS)
    assert r.status_code == 200, r.text
    assert {a, b} <= set(r.json())
    r = api.get(DS, params={"library_item_id": item1})
    assert r.status_code == 200, r.text
    ids = r.json()
    assert a in ids and b not in ids
    r = api.get(DS, params={"library_item_id": item2})
    assert r.status_code == 200, r.text
    assert b in r.json() and a not in r.json()


def test_list_unknown_item_is_404(api: Api) -> None:
    missing = str(uuid.uuid4())
    r = api.get(DS, params={"library_item_id": missing})
    assert_error(r, 404, "NOT_FOUND", missing)


def test_get_unknown_is_404(api: Api) -> None:
    missing = str(uuid.uuid4())
    assert_error(api.get(f"{DS}/{missing}"), 404, "NOT_FOUND", missing)


def test_delete_then_404(api: Api) -> None:
    item = make_item(api)
    ds = create_ds(api, item)
    r = api.delete(f"{DS}/{ds}")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_error(api.get(f"{DS}/{ds}"), 404, "NOT_FOUND", ds)
    assert_error(api.delete(f"{DS}/{ds}"), 404, "NOT_FOUND", ds)
    assert_error(api.get(f"{DS}/{ds}/file"), 404, "NOT_FOUND", ds)
    r = api.get(DS, params={"library_item_id": item})
    assert r.status_code == 200 and ds not in r.json()


def test_keep_alive_updates_progress(api: Api) -> None:
    ds = create_ds(api, make_item(api))
    r = api.post(f"{DS}/{ds}?action=keep-alive", json={"progress": 40})
    assert r.status_code == 204, r.text
    assert get_ds(api, ds)["client_progress"] == 40
    r = api.post(f"{DS}/{ds}?action=keep-alive", json={})  # progress optional: unchanged
    assert r.status_code == 204, r.text
    info = get_ds(api, ds)
    assert info["client_progress"] == 40
    assert info["state"] == "ACTIVE"
    r = api.post(f"{DS}/{ds}?action=keep-alive", json={"progress": 100})
    assert r.status_code == 204, r.text
    assert get_ds(api, ds)["client_progress"] == 100


def test_keep_alive_moves_expiration_forward(api: Api) -> None:
    ds = create_ds(api, make_item(api))
    before = get_ds(api, ds)["expiration_time"]
    time.sleep(0.05)
    r = api.post(f"{DS}/{ds}?action=keep-alive", json={"progress": 1})
    assert r.status_code == 204, r.text
    after = get_ds(api, ds)["expiration_time"]
    assert after > before  # same fixed-width UTC format, so string order is time order


def test_keep_alive_wrong_type_is_400(api: Api) -> None:
    ds = create_ds(api, make_item(api))
    r = api.post(f"{DS}/{ds}?action=keep-alive", json={"progress": "lots"})
    assert_error(r, 400, "INVALID_ARGUMENT", "progress")
    assert get_ds(api, ds)["client_progress"] == 0


def test_cancel_moves_to_canceled(api: Api) -> None:
    ds = create_ds(api, make_item(api))
    r = api.post(f"{DS}/{ds}?action=cancel")
    assert r.status_code == 204, r.text
    assert r.content == b""
    info = get_ds(api, ds)
    assert info["state"] == "CANCELED"


def test_fail_moves_to_error_with_message(api: Api) -> None:
    ds = create_ds(api, make_item(api))
    r = api.post(f"{DS}/{ds}?action=fail", json={"client_error_message": "disk full on the client"})
    assert r.status_code == 204, r.text
    info = get_ds(api, ds)
    assert info["state"] == "ERROR"
    msg = info["error_message"]
    assert msg["default_message"] == "disk full on the client"
    assert isinstance(msg["id"], str) and msg["id"]
    assert isinstance(msg["args"], list)


def test_fail_without_message_is_400(api: Api) -> None:
    ds = create_ds(api, make_item(api))
    r = api.post(f"{DS}/{ds}?action=fail", json={})
    assert_error(r, 400, "INVALID_ARGUMENT", "client_error_message")
    assert get_ds(api, ds)["state"] == "ACTIVE"


@pytest.mark.parametrize("end", ["cancel", "fail"])
def test_actions_when_not_active_are_400(api: Api, end: str) -> None:
    ds = create_ds(api, make_item(api))
    body = {"client_error_message": "bye"} if end == "fail" else None
    r = api.post(f"{DS}/{ds}?action={end}", json=body)
    assert r.status_code == 204, r.text
    state = get_ds(api, ds)["state"]
    for action, payload in (
        ("keep-alive", {"progress": 5}),
        ("cancel", None),
        ("fail", {"client_error_message": "again"}),
    ):
        r = api.post(f"{DS}/{ds}?action={action}", json=payload)
        assert_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE")
    info = get_ds(api, ds)
    assert info["state"] == state
    assert info["client_progress"] == 0
    # delete is allowed in any state
    assert api.delete(f"{DS}/{ds}").status_code == 204


@pytest.mark.parametrize(
    ("action", "body"),
    [("keep-alive", {"progress": 1}), ("cancel", None), ("fail", {"client_error_message": "x"})],
)
def test_actions_on_unknown_session_are_404(api: Api, action: str, body: dict[str, Any] | None) -> None:
    missing = str(uuid.uuid4())
    assert_error(api.post(f"{DS}/{missing}?action={action}", json=body), 404, "NOT_FOUND", missing)


def test_unknown_action_is_operation_not_found(api: Api) -> None:
    ds = create_ds(api, make_item(api))
    assert_error(api.post(f"{DS}/{ds}?action=complete"), 404, "OPERATION_NOT_FOUND")
    assert get_ds(api, ds)["state"] == "ACTIVE"


# -- download-session files ------------------------------------------------------------------------------


def test_file_list_shows_item_files_unprepared(api: Api) -> None:
    item = make_item(api)
    ds = create_ds(api, item)
    r = api.get(f"{DS}/{ds}/file")
    assert r.status_code == 200, r.text
    files = {f["name"]: f for f in r.json()}
    assert set(files) == set(FILES)
    for f in files.values():
        assert f["status"] == "UNPREPARED", f
        assert isinstance(f["bytes_transferred"], int), f
        assert "download_endpoint" not in f or f["download_endpoint"] is None, f


def test_file_list_of_empty_item_is_empty(api: Api) -> None:
    item = api.create_item()
    ds = create_ds(api, item)
    r = api.get(f"{DS}/{ds}/file")
    assert r.status_code == 200, r.text
    assert r.json() == []


def test_prepare_returns_prepared_with_endpoint(api: Api, server: ServerProcess) -> None:
    item = make_item(api)
    ds = create_ds(api, item)
    info = prepare(api, ds, "b.txt")
    uri = info["download_endpoint"]["uri"]
    assert uri.startswith(server.base + "/cls/download/"), uri
    assert uri.endswith("/b.txt"), uri
    info2 = prepare(api, ds, "c.vmdk", endpoint_type="HTTPS")
    assert info2["download_endpoint"]["uri"].endswith("/c.vmdk")
    # the list now shows the prepared files as PREPARED, the others still UNPREPARED
    r = api.get(f"{DS}/{ds}/file")
    assert r.status_code == 200, r.text
    status = {f["name"]: f["status"] for f in r.json()}
    assert status == {"a.bin": "UNPREPARED", "b.txt": "PREPARED", "c.vmdk": "PREPARED"}


def test_prepare_unknown_file_is_400(api: Api) -> None:
    ds = create_ds(api, make_item(api))
    r = api.post(f"{DS}/{ds}/file?action=prepare", json={"file_name": "nope.bin"})
    assert_error(r, 400, "INVALID_ARGUMENT", "nope.bin")


def test_prepare_bad_body_is_400(api: Api) -> None:
    ds = create_ds(api, make_item(api))
    r = api.post(f"{DS}/{ds}/file?action=prepare", json={})
    assert_error(r, 400, "INVALID_ARGUMENT", "file_name")
    r = api.post(f"{DS}/{ds}/file?action=prepare", json={"file_name": "b.txt", "endpoint_type": "CARRIER_PIGEON"})
    assert_error(r, 400, "INVALID_ARGUMENT", "endpoint_type")


def test_prepare_on_unknown_session_is_404(api: Api) -> None:
    missing = str(uuid.uuid4())
    r = api.post(f"{DS}/{missing}/file?action=prepare", json={"file_name": "b.txt"})
    assert_error(r, 404, "NOT_FOUND", missing)


def test_file_get_by_query(api: Api) -> None:
    ds = create_ds(api, make_item(api))
    r = api.get(f"{DS}/{ds}/file", params={"file_name": "a.bin"})
    assert r.status_code == 200, r.text
    info = r.json()
    assert isinstance(info, dict), info
    assert info["name"] == "a.bin"
    assert info["status"] == "UNPREPARED"
    prepare(api, ds, "a.bin")
    r = api.get(f"{DS}/{ds}/file", params={"file_name": "a.bin"})
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["status"] == "PREPARED"
    assert info["download_endpoint"]["uri"].endswith("/a.bin")


def test_file_get_sdk_form_with_json_body(api: Api) -> None:
    """The SDK sends `GET ...file?file_name` plus the body `{"file_name": ...}` and no Content-Type."""
    ds = create_ds(api, make_item(api))
    uri = prepared_uri(api, ds, "c.vmdk")
    body = json.dumps({"file_name": "c.vmdk"}).encode()
    r = api.get(f"{DS}/{ds}/file?file_name", data=body)
    assert "Content-Type" not in r.request.headers
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["name"] == "c.vmdk"
    assert info["status"] == "PREPARED"
    assert info["download_endpoint"]["uri"] == uri
    r = api.get(f"{DS}/{ds}/file?file_name", data=json.dumps({"file_name": "b.txt"}).encode())
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "b.txt"
    assert r.json()["status"] == "UNPREPARED"


def test_file_get_unknown_name_is_400(api: Api) -> None:
    ds = create_ds(api, make_item(api))
    assert_error(api.get(f"{DS}/{ds}/file", params={"file_name": "ghost.bin"}), 400, "INVALID_ARGUMENT", "ghost.bin")
    r = api.get(f"{DS}/{ds}/file?file_name", data=json.dumps({"file_name": "ghost.bin"}).encode())
    assert_error(r, 400, "INVALID_ARGUMENT", "ghost.bin")


def test_file_ops_on_unknown_session_are_404(api: Api) -> None:
    missing = str(uuid.uuid4())
    assert_error(api.get(f"{DS}/{missing}/file"), 404, "NOT_FOUND", missing)
    assert_error(api.get(f"{DS}/{missing}/file", params={"file_name": "a"}), 404, "NOT_FOUND", missing)


def test_file_ops_need_api_session(api: Api, server: ServerProcess) -> None:
    ds = create_ds(api, make_item(api))
    r = requests.get(f"{server.base}{DS}/{ds}/file", timeout=30)
    assert_error(r, 401, "UNAUTHENTICATED")
    r = requests.post(f"{server.base}{DS}", json={"library_item_id": str(uuid.uuid4())}, timeout=30)
    assert_error(r, 401, "UNAUTHENTICATED")


# -- the download endpoint -----------------------------------------------------------------------------------


def test_download_get_returns_exact_bytes(api: Api) -> None:
    ds = create_ds(api, make_item(api))
    for name, data in FILES.items():
        r = bare_get(prepared_uri(api, ds, name))
        assert r.status_code == 200, r.text
        assert r.content == data, name
        assert r.headers["Content-Length"] == str(len(data))


def test_download_large_file_streams(api: Api) -> None:
    data = os.urandom(5 * 1024 * 1024 + 7)
    item = make_item(api, {"big.bin": data})
    ds = create_ds(api, item)
    r = bare_get(prepared_uri(api, ds, "big.bin"), stream=True)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(data))
    h = hashlib.sha1()
    n = 0
    for chunk in r.iter_content(256 * 1024):
        h.update(chunk)
        n += len(chunk)
    assert n == len(data)
    assert h.hexdigest() == hashlib.sha1(data).hexdigest()


def test_download_empty_file(api: Api) -> None:
    ds = create_ds(api, make_item(api, {"empty.bin": b""}))
    r = bare_get(prepared_uri(api, ds, "empty.bin"))
    assert r.status_code == 200, r.text
    assert r.content == b""
    assert r.headers["Content-Length"] == "0"


def test_download_head_returns_headers_only(api: Api) -> None:
    ds = create_ds(api, make_item(api))
    uri = prepared_uri(api, ds, "a.bin")
    r = requests.head(uri, timeout=30, verify=False)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(FILES["a.bin"]))
    assert r.content == b""


def test_download_range(api: Api) -> None:
    data = FILES["a.bin"]
    ds = create_ds(api, make_item(api))
    uri = prepared_uri(api, ds, "a.bin")
    r = bare_get(uri, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206, r.text
    assert r.content == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert r.headers["Content-Length"] == "10"


def test_download_open_ended_and_suffix_ranges(api: Api) -> None:
    data = FILES["a.bin"]
    n = len(data)
    ds = create_ds(api, make_item(api))
    uri = prepared_uri(api, ds, "a.bin")
    r = bare_get(uri, headers={"Range": "bytes=1000-"})
    assert r.status_code == 206, r.text
    assert r.content == data[1000:]
    assert r.headers["Content-Range"] == f"bytes 1000-{n - 1}/{n}"
    r = bare_get(uri, headers={"Range": "bytes=-4"})
    assert r.status_code == 206, r.text
    assert r.content == b"tail"
    assert r.headers["Content-Range"] == f"bytes {n - 4}-{n - 1}/{n}"
    assert r.headers["Content-Length"] == "4"
    # a range running past the end is clipped to the end
    r = bare_get(uri, headers={"Range": f"bytes={n - 2}-{n + 100}"})
    assert r.status_code == 206, r.text
    assert r.content == data[n - 2 :]
    assert r.headers["Content-Range"] == f"bytes {n - 2}-{n - 1}/{n}"
    # a suffix longer than the file is the whole file
    r = bare_get(uri, headers={"Range": f"bytes=-{n + 50}"})
    assert r.status_code == 206, r.text
    assert r.content == data


def test_download_unsatisfiable_range_is_416(api: Api) -> None:
    n = len(FILES["a.bin"])
    ds = create_ds(api, make_item(api))
    uri = prepared_uri(api, ds, "a.bin")
    for rng in (f"bytes={n}-{n + 10}", "bytes=5000-"):
        r = bare_get(uri, headers={"Range": rng}, stream=True)
        assert r.status_code == 416, rng
        if "Content-Range" in r.headers:
            assert r.headers["Content-Range"] == f"bytes */{n}"
        # a well-framed reply (Content-Length is always set), so the connection stays usable
        assert "Content-Length" in r.headers, dict(r.headers)
        assert len(r.content) == int(r.headers["Content-Length"])


def test_download_head_with_range(api: Api) -> None:
    ds = create_ds(api, make_item(api))
    uri = prepared_uri(api, ds, "a.bin")
    r = requests.head(uri, headers={"Range": "bytes=0-9"}, timeout=30, verify=False)
    assert r.status_code == 206
    assert r.headers["Content-Length"] == "10"
    assert r.content == b""


def test_download_unprepared_or_unknown_token_is_refused(api: Api, server: ServerProcess) -> None:
    ds = create_ds(api, make_item(api))
    uri = prepared_uri(api, ds, "a.bin")
    token_part = uri[len(server.base + "/cls/download/") :].split("/")[0]
    bogus = uri.replace(token_part, "0" * len(token_part))
    r = bare_get(bogus)
    assert r.status_code in (400, 404), r.status_code
    assert r.content != FILES["a.bin"]
    # the token of a.bin does not serve a different, unprepared file's name with another file's bytes
    r = bare_get(uri.rsplit("/", 1)[0] + "/nope.bin")
    assert r.status_code in (400, 404), r.status_code


@pytest.mark.parametrize("end", ["cancel", "fail", "delete"])
def test_uri_stops_serving_after_session_ends(api: Api, end: str) -> None:
    ds = create_ds(api, make_item(api))
    uri = prepared_uri(api, ds, "b.txt")
    assert bare_get(uri).content == FILES["b.txt"]
    if end == "delete":
        r = api.delete(f"{DS}/{ds}")
    elif end == "fail":
        r = api.post(f"{DS}/{ds}?action=fail", json={"client_error_message": "stop"})
    else:
        r = api.post(f"{DS}/{ds}?action=cancel")
    assert r.status_code == 204, r.text
    r = bare_get(uri)
    assert r.status_code in (400, 404), r.status_code
    assert r.content != FILES["b.txt"]
    r = requests.head(uri, timeout=30, verify=False)
    assert r.status_code in (400, 404), r.status_code


def test_prepare_on_ended_session_gives_no_working_uri(api: Api) -> None:
    ds = create_ds(api, make_item(api))
    assert api.post(f"{DS}/{ds}?action=cancel").status_code == 204
    r = api.post(f"{DS}/{ds}/file?action=prepare", json={"file_name": "b.txt"})
    if r.status_code == 200:
        uri = r.json().get("download_endpoint", {}).get("uri")
        if uri:
            assert bare_get(uri).status_code in (400, 404)
    else:
        assert_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE")


def test_download_in_flight_survives_replacing_complete(api: Api) -> None:
    old = os.urandom(24 * 1024 * 1024)
    new = os.urandom(1024)
    item = make_item(api, {"disk.vmdk": old})
    ds = create_ds(api, item)
    uri = prepared_uri(api, ds, "disk.vmdk")
    r = bare_get(uri, stream=True)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(old))
    it = r.iter_content(64 * 1024)
    head = next(it)
    # replace the file while the download is running
    api.put_files(item, {"disk.vmdk": new})
    assert api.item_files(item)["disk.vmdk"]["size"] == len(new)
    rest = b"".join(it)
    got = head + rest
    assert len(got) == len(old)
    assert got == old
    # a new download session sees the new content
    assert api.download(item, "disk.vmdk") == new


def test_download_session_files_follow_item_content(api: Api) -> None:
    """A session's file list reflects the item's files, with the item's file names."""
    item = make_item(api, {"one.bin": b"1"})
    ds = create_ds(api, item)
    r = api.get(f"{DS}/{ds}/file")
    assert [f["name"] for f in r.json()] == ["one.bin"]
    assert bare_get(prepared_uri(api, ds, "one.bin")).content == b"1"
