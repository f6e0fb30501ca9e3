"""complete, cancel and fail: atomic publish of a session's view into its item (issue 2, point 7).

Contract: REFERENCE.md §2 (purpose: "Modifications are not visible to other clients unless the session is
completed"; complete requires ACTIVE and refuses with NotAllowedInCurrentState if files were not received
correctly; cancel/fail; content version; item files afterwards), §3 (complete/cancel/fail → 204), A.3
(ItemModel, item File.Info) and the decided behaviour in the brief (message names the files;
content_version +1 only when the file list changed; replaced files version+1, new files "1"; item file
checksum is always SHA1; item size = sum).
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from typing import Any

import jsonschema
import pytest
from conftest import API_DIR, Api, assert_error

US = "/api/content/library/item/update-session"


# -- helpers ---------------------------------------------------------------------------------------
def item(api: Api, item_id: str) -> dict[str, Any]:
    r = api.get(f"/api/content/library/item/{item_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def add_push(api: Api, sid: str, name: str, data: bytes | None = None, algorithm: str = "SHA1") -> str:
    spec: dict[str, Any] = {"name": name, "source_type": "PUSH"}
    if data is not None:
        spec["size"] = len(data)
        spec["checksum_info"] = {
            "algorithm": algorithm,
            "checksum": hashlib.new(algorithm.lower(), data).hexdigest(),
        }
    r = api.post(f"{US}/{sid}/file", json=spec)
    assert r.status_code == 201, r.text
    return str(r.json()["upload_endpoint"]["uri"])


def put_bytes(api: Api, uri: str, data: bytes) -> int:
    return api.put(uri, data=data).status_code


def remove(api: Api, sid: str, name: str) -> None:
    r = api.delete(f"{US}/{sid}/file/{name}")
    assert r.status_code == 204, r.text


def snapshot(api: Api, item_id: str) -> dict[str, Any]:
    """Everything a client can see of an item's content: versions, size, file infos and their bytes."""
    it = item(api, item_id)
    files = api.item_files(item_id)
    return {
        "content_version": it["content_version"],
        "version": it["version"],
        "metadata_version": it["metadata_version"],
        "size": it.get("size"),
        "files": files,
        "bytes": {name: api.download(item_id, name) for name in sorted(files)},
    }


def light(api: Api, item_id: str) -> tuple[str, Any, dict[str, dict[str, Any]]]:
    """The item's visible content without downloading (cheap enough to check after every step)."""
    it = item(api, item_id)
    return it["content_version"], it.get("size"), api.item_files(item_id)


@cache
def _item_file_schema() -> dict[str, Any]:
    doc = json.loads((API_DIR / "vsphere-8.0.2-content.swagger.json").read_text())
    return {"$ref": "#/definitions/ContentLibraryItemFileInfo", "definitions": doc["definitions"]}


def assert_item_file(f: dict[str, Any], data: bytes, version: str) -> None:
    jsonschema.Draft4Validator(_item_file_schema()).validate(f)
    assert f["size"] == len(data), f
    assert f["cached"] is True, f
    assert f["version"] == version, f
    assert f["checksum_info"]["algorithm"] == "SHA1", f
    assert f["checksum_info"]["checksum"].lower() == hashlib.sha1(data).hexdigest(), f


def state(api: Api, sid: str) -> str:
    return str(api.session(sid)["state"])


# -- refusals --------------------------------------------------------------------------------------
def test_complete_refused_while_a_file_is_waiting(api: Api) -> None:
    it = api.create_item()
    before = light(api, it)
    sid = api.create_session(it)
    good = b"ready content"
    assert put_bytes(api, add_push(api, sid, "ready.txt", good), good) == 200
    pending = add_push(api, sid, "pending-disk-7.vmdk")
    r = api.post(f"{US}/{sid}?action=complete")
    assert_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE", "pending-disk-7.vmdk")
    assert state(api, sid) == "ACTIVE"
    assert light(api, it) == before
    # Once the missing bytes arrive, complete goes through.
    assert put_bytes(api, pending, b"disk") == 200
    api.complete(sid)
    assert set(api.item_files(it)) == {"ready.txt", "pending-disk-7.vmdk"}


def test_complete_names_every_file_not_ready(api: Api) -> None:
    it = api.create_item()
    sid = api.create_session(it)
    add_push(api, sid, "first-missing.ovf")
    add_push(api, sid, "second-missing.vmdk")
    r = api.post(f"{US}/{sid}?action=complete")
    assert_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE", "first-missing.ovf", "second-missing.vmdk")
    assert state(api, sid) == "ACTIVE"
    assert api.item_files(it) == {}


def test_complete_refused_while_a_file_is_in_error(api: Api) -> None:
    it = api.create_item()
    api.put_files(it, {"base.txt": b"base"})
    before = light(api, it)
    sid = api.create_session(it)
    data = b"the real bytes"
    uri = add_push(api, sid, "broken-checksum.bin", data, "SHA256")
    assert put_bytes(api, uri, b"the fake bytes") == 400
    info = api.get(f"{US}/{sid}/file/broken-checksum.bin").json()
    assert info["status"] == "ERROR", info
    r = api.post(f"{US}/{sid}?action=complete")
    assert_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE", "broken-checksum.bin")
    assert state(api, sid) == "ACTIVE"
    assert light(api, it) == before
    # Dropping the broken file from the session lets the rest complete, without it.
    remove(api, sid, "broken-checksum.bin")
    api.complete(sid)
    assert state(api, sid) == "DONE"
    assert set(api.item_files(it)) == {"base.txt"}


def test_complete_twice_not_allowed(api: Api) -> None:
    it = api.create_item()
    sid = api.create_session(it)
    assert put_bytes(api, add_push(api, sid, "a.txt", b"a"), b"a") == 200
    api.complete(sid)
    after = light(api, it)
    assert_error(api.post(f"{US}/{sid}?action=complete"), 400, "NOT_ALLOWED_IN_CURRENT_STATE")
    assert state(api, sid) == "DONE"
    assert light(api, it) == after


# -- publish ---------------------------------------------------------------------------------------
def test_complete_publishes_the_session_view(api: Api) -> None:
    it = api.create_item()
    fresh = item(api, it)
    assert fresh["content_version"] == "1"
    assert fresh.get("size", 0) == 0
    assert api.item_files(it) == {}
    files = {
        "a.ovf": (b"<Envelope/>", "SHA256"),
        "b.vmdk": (os.urandom(65_537), "MD5"),
        "c.nvram": (os.urandom(1000), "SHA512"),
        "d.txt": (b"", "SHA1"),
    }
    sid = api.create_session(it)
    for name, (data, algorithm) in files.items():
        assert put_bytes(api, add_push(api, sid, name, data, algorithm), data) == 200
    assert put_bytes(api, add_push(api, sid, "undeclared.bin"), b"no declarations") == 200
    r = api.post(f"{US}/{sid}?action=complete")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert state(api, sid) == "DONE"

    after = item(api, it)
    assert after["content_version"] == "2"
    assert after["version"] == fresh["version"], "version is not bumped by content changes"
    assert after["metadata_version"] == fresh["metadata_version"]
    published = api.item_files(it)
    expected = {name: data for name, (data, _) in files.items()} | {"undeclared.bin": b"no declarations"}
    assert set(published) == set(expected)
    for name, data in expected.items():
        assert_item_file(published[name], data, "1")
        assert api.download(it, name) == data
    assert after["size"] == sum(len(d) for d in expected.values())
    r = api.get(f"/api/content/library/item/{it}/file", params={"name": "b.vmdk"})
    assert r.status_code == 200, r.text
    assert_item_file(r.json(), expected["b.vmdk"], "1")


def test_second_session_replace_remove_add(api: Api) -> None:
    it = api.create_item()
    v1 = {"a.txt": b"alpha version one", "b.txt": b"bravo", "d.txt": b"delta stays"}
    api.put_files(it, v1)
    first = item(api, it)
    assert first["content_version"] == "2"
    untouched_before = api.item_files(it)["d.txt"]

    sid = api.create_session(it)
    assert api.session(sid)["library_item_content_version"] == first["content_version"]
    a2 = os.urandom(50_000)
    c1 = b"charlie is new"
    assert put_bytes(api, add_push(api, sid, "a.txt", a2, "SHA256"), a2) == 200
    remove(api, sid, "b.txt")
    assert put_bytes(api, add_push(api, sid, "c.txt", c1), c1) == 200
    api.complete(sid)

    after = item(api, it)
    assert after["content_version"] == "3"
    files = api.item_files(it)
    assert set(files) == {"a.txt", "c.txt", "d.txt"}
    assert_item_file(files["a.txt"], a2, "2")
    assert_item_file(files["c.txt"], c1, "1")
    assert_item_file(files["d.txt"], v1["d.txt"], "1")
    assert files["d.txt"] == untouched_before
    assert api.download(it, "a.txt") == a2
    assert api.download(it, "c.txt") == c1
    assert api.download(it, "d.txt") == v1["d.txt"]
    assert after["size"] == len(a2) + len(c1) + len(v1["d.txt"])
    r = api.get(f"/api/content/library/item/{it}/file", params={"name": "b.txt"})
    assert_error(r, 404, "NOT_FOUND", "b.txt")


def test_readding_a_name_twice_bumps_its_version_once(api: Api) -> None:
    it = api.create_item()
    api.put_files(it, {"x.bin": b"one"})
    sid = api.create_session(it)
    add_push(api, sid, "x.bin", b"two")
    assert put_bytes(api, add_push(api, sid, "x.bin", b"three"), b"three") == 200
    api.complete(sid)
    assert_item_file(api.item_files(it)["x.bin"], b"three", "2")
    assert item(api, it)["content_version"] == "3"
    assert api.download(it, "x.bin") == b"three"


def test_remove_every_file_empties_the_item(api: Api) -> None:
    it = api.create_item()
    api.put_files(it, {"a": b"aa", "b": b"bbb"})
    sid = api.create_session(it)
    remove(api, sid, "a")
    remove(api, sid, "b")
    r = api.get(f"{US}/{sid}/file")
    assert r.status_code == 200 and r.json() == [], r.text
    api.complete(sid)
    assert api.item_files(it) == {}
    after = item(api, it)
    assert after["content_version"] == "3"
    assert after.get("size", 0) == 0


def test_complete_without_changes_keeps_content_version(api: Api) -> None:
    it = api.create_item()
    api.put_files(it, {"a.txt": b"same"})
    before = light(api, it)
    sid = api.create_session(it)
    api.complete(sid)
    assert state(api, sid) == "DONE"
    assert light(api, it) == before


def test_item_unchanged_until_complete(api: Api) -> None:
    it = api.create_item()
    api.put_files(it, {"keep.txt": b"keep", "old.txt": b"old", "swap.txt": b"swap v1"})
    before = light(api, it)
    sid = api.create_session(it)
    steps: list[tuple[str, bytes | None]] = [
        ("new-1.bin", os.urandom(10_000)),
        ("swap.txt", b"swap v2"),
        ("old.txt", None),
        ("new-2.bin", b""),
    ]
    for name, data in steps:
        if data is None:
            remove(api, sid, name)
        else:
            uri = add_push(api, sid, name, data)
            assert light(api, it) == before, f"item changed after adding {name}"
            assert put_bytes(api, uri, data) == 200
        assert light(api, it) == before, f"item changed before complete, after {name}"
    api.complete(sid)
    version, size, files = light(api, it)
    assert version == str(int(before[0]) + 1)
    assert set(files) == {"keep.txt", "swap.txt", "new-1.bin", "new-2.bin"}
    assert files["swap.txt"]["version"] == "2"
    assert size == 4 + len(b"swap v2") + 10_000 + 0


def test_session_content_version_tracks_the_item(api: Api) -> None:
    it = api.create_item()
    for expected in ("1", "2", "3"):
        assert item(api, it)["content_version"] == expected
        sid = api.create_session(it)
        got = api.session(sid)
        assert got["library_item_content_version"] == expected
        data = expected.encode() * 10
        assert put_bytes(api, add_push(api, sid, f"f{expected}.bin", data), data) == 200
        api.complete(sid)
        assert api.session(sid)["library_item_content_version"] == expected


# -- cancel and fail -------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["cancel", "fail"])
def test_abandoned_session_leaves_item_byte_for_byte(api: Api, how: str) -> None:
    it = api.create_item()
    api.put_files(it, {"a.txt": b"original a", "b.txt": os.urandom(20_000)})
    before = snapshot(api, it)
    sid = api.create_session(it)
    new_a = os.urandom(30_000)
    assert put_bytes(api, add_push(api, sid, "a.txt", new_a), new_a) == 200
    remove(api, sid, "b.txt")
    assert put_bytes(api, add_push(api, sid, "c.txt", b"never published"), b"never published") == 200
    add_push(api, sid, "d.txt")  # still waiting: abandoning must not care
    message = "operator pressed stop"
    if how == "cancel":
        r = api.post(f"{US}/{sid}?action=cancel")
    else:
        r = api.post(f"{US}/{sid}?action=fail", json={"client_error_message": message})
    assert r.status_code == 204, r.text
    got = api.session(sid)
    if how == "cancel":
        assert got["state"] == "CANCELED", got
    else:
        assert got["state"] == "ERROR", got
        assert got["error_message"]["default_message"] == message, got
    assert snapshot(api, it) == before
    # A new session starts from the untouched item.
    sid2 = api.create_session(it)
    assert api.session(sid2)["library_item_content_version"] == before["content_version"]
    r = api.get(f"{US}/{sid2}/file")
    assert r.status_code == 200, r.text
    view = {f["name"]: f for f in r.json()}
    assert set(view) == {"a.txt", "b.txt"}
    assert all(f["source_type"] == "NONE" and f["status"] == "READY" for f in view.values()), view
    r = api.post(f"{US}/{sid2}?action=cancel")
    assert r.status_code == 204, r.text
