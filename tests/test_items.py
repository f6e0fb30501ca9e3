"""Library items: /api/content/library/item create/get/list/update/delete/find and the item files
(REFERENCE A.2 `content.library.item`, `content.library.item.file`; A.3 `ItemModel`, `item.File.Info`)."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any

import pytest
from conftest import Api
from test_routes import assert_vapi_error

ITEM = "/api/content/library/item"
US = "/api/content/library/item/update-session"
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
FILE_KEYS = {"name", "size", "cached", "version", "checksum_info"}
OPTIONAL_FILE_KEYS = {"file_download_endpoint"}


def unique(prefix: str = "item") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def get_item(api: Api, item: str) -> dict[str, Any]:
    r = api.get(f"{ITEM}/{item}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def list_items(api: Api, lib: str) -> list[str]:
    r = api.get(ITEM, params={"library_id": lib})
    assert r.status_code == 200, r.text
    ids = r.json()
    assert isinstance(ids, list) and all(isinstance(i, str) for i in ids), ids
    return list(ids)


def find_items(api: Api, body: dict[str, Any]) -> list[str]:
    r = api.post(f"{ITEM}?action=find", json=body)
    assert r.status_code == 200, r.text
    ids = r.json()
    assert isinstance(ids, list) and all(isinstance(i, str) for i in ids), ids
    return list(ids)


def file_info(name: str, data: bytes, version: str = "1") -> dict[str, Any]:
    return {
        "name": name,
        "size": len(data),
        "cached": True,
        "version": version,
        "checksum_info": {"algorithm": "SHA1", "checksum": hashlib.sha1(data).hexdigest()},
    }


def check_file(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert set(got) - OPTIONAL_FILE_KEYS == FILE_KEYS, got
    assert {k: got[k] for k in FILE_KEYS} == want


# -- create / get / list ----------------------------------------------------------------------------------
def test_create_and_get_item(api: Api) -> None:
    lib = api.create_library()
    name = unique()
    r = api.post(ITEM, json={"library_id": lib, "name": name})
    assert r.status_code == 201, r.text
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    item = r.json()
    assert isinstance(item, str)
    uuid.UUID(item)
    m = get_item(api, item)
    assert m["id"] == item
    assert m["library_id"] == lib
    assert m["name"] == name
    assert m["description"] == ""
    assert (m["version"], m["metadata_version"], m["content_version"]) == ("1", "1", "1")
    assert m["size"] == 0
    assert m["cached"] is True
    assert DATETIME.match(m["creation_time"]), m
    assert DATETIME.match(m["last_modified_time"]), m
    assert m["last_modified_time"] >= m["creation_time"]
    assert m.get("last_sync_time") is None


def test_create_with_description_and_type(api: Api) -> None:
    item = api.create_item(description="an ovf item", type="ovf")
    m = get_item(api, item)
    assert (m["description"], m["type"]) == ("an ovf item", "ovf")


def test_list_by_library(api: Api) -> None:
    lib = api.create_library()
    other = api.create_library()
    assert list_items(api, lib) == []
    a = api.create_item(lib)
    b = api.create_item(lib)
    c = api.create_item(other)
    assert sorted(list_items(api, lib)) == sorted([a, b])
    assert list_items(api, other) == [c]


def test_list_sdk_dispatch_marker_with_json_body(api: Api) -> None:
    """SDK quirk: `GET ...item?library_id` with body {"library_id": ...} and no Content-Type."""
    lib = api.create_library()
    a = api.create_item(lib)
    b = api.create_item(lib)
    api.create_item()  # another library
    r = api.get(f"{ITEM}?library_id", data=json.dumps({"library_id": lib}))
    assert "Content-Type" not in r.request.headers
    assert r.status_code == 200, r.text
    assert sorted(r.json()) == sorted([a, b])


def test_list_unknown_library_is_not_found(api: Api) -> None:
    missing = str(uuid.uuid4())
    assert_vapi_error(api.get(ITEM, params={"library_id": missing}), 404, "NOT_FOUND", missing)
    r = api.get(f"{ITEM}?library_id", data=json.dumps({"library_id": missing}))
    assert_vapi_error(r, 404, "NOT_FOUND", missing)


# -- create errors ----------------------------------------------------------------------------------------
def test_name_unique_within_library(api: Api) -> None:
    lib = api.create_library()
    name = unique()
    first = api.create_item(lib, name)
    r = api.post(ITEM, json={"library_id": lib, "name": name})
    assert_vapi_error(r, 400, "ALREADY_EXISTS", name)
    assert list_items(api, lib) == [first]
    # The same name in another library is fine.
    other = api.create_library()
    second = api.create_item(other, name)
    assert second != first
    assert list_items(api, other) == [second]


def test_name_and_description_length_limits(api: Api) -> None:
    lib = api.create_library()
    ok = api.create_item(lib, "n" * 80, description="d" * 2000)
    m = get_item(api, ok)
    assert (len(m["name"]), len(m["description"])) == (80, 2000)
    r = api.post(ITEM, json={"library_id": lib, "name": "n" * 81})
    assert_vapi_error(r, 400, "INVALID_ARGUMENT", "name")
    r = api.post(ITEM, json={"library_id": lib, "name": unique(), "description": "d" * 2001})
    assert_vapi_error(r, 400, "INVALID_ARGUMENT", "description")
    assert list_items(api, lib) == [ok]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x"}, "library_id"),
        ({"library_id": 5, "name": "x"}, "library_id"),
        ({"library_id": "{lib}"}, "name"),
        ({"library_id": "{lib}", "name": ""}, "name"),
        ({"library_id": "{lib}", "name": 5}, "name"),
        ({"library_id": "{lib}", "name": "x", "description": 5}, "description"),
        ({"library_id": "{lib}", "name": "x", "type": 5}, "type"),
    ],
    ids=["missing-library", "int-library", "missing-name", "empty-name", "int-name", "int-desc", "int-type"],
)
def test_create_invalid_spec(api: Api, body: dict[str, Any], field: str) -> None:
    lib = api.create_library()
    body = {k: (lib if v == "{lib}" else v) for k, v in body.items()}
    r = api.post(ITEM, json=body)
    assert_vapi_error(r, 400, "INVALID_ARGUMENT", field)
    assert list_items(api, lib) == []


def test_create_in_unknown_library_is_not_found(api: Api) -> None:
    missing = str(uuid.uuid4())
    name = unique()
    r = api.post(ITEM, json={"library_id": missing, "name": name})
    assert_vapi_error(r, 404, "NOT_FOUND", missing)
    assert find_items(api, {"name": name}) == []


def test_client_token_on_item_create(api: Api) -> None:
    lib = api.create_library()
    token = str(uuid.uuid4())
    name = unique()
    ids = []
    for kw in ({"headers": {"Client-Token": token}}, {"headers": {"Client-Token": token}}):
        r = api.post(ITEM, json={"library_id": lib, "name": name}, **kw)
        assert r.status_code == 201, r.text
        ids.append(r.json())
    assert ids[0] == ids[1]
    other = str(uuid.uuid4())
    r1 = api.post(ITEM, json={"library_id": lib, "name": unique()}, params={"client_token": other})
    r2 = api.post(ITEM, json={"library_id": lib, "name": unique()}, params={"client_token": other})
    assert (r1.status_code, r2.status_code) == (201, 201), (r1.text, r2.text)
    assert r1.json() == r2.json()
    assert sorted(list_items(api, lib)) == sorted([ids[0], r1.json()])
    r = api.post(ITEM, json={"library_id": lib, "name": unique()}, headers={"Client-Token": "not-a-uuid"})
    assert_vapi_error(r, 400, "INVALID_ARGUMENT", "token")
    assert len(list_items(api, lib)) == 2


# -- update -----------------------------------------------------------------------------------------------
def test_update_bumps_version_and_metadata_version(api: Api) -> None:
    lib = api.create_library()
    name = unique()
    item = api.create_item(lib, name, description="d1")
    before = get_item(api, item)

    r = api.patch(f"{ITEM}/{item}", json={"description": "d2"})
    assert r.status_code == 204, r.text
    assert r.content == b""
    m = get_item(api, item)
    assert (m["name"], m["description"]) == (name, "d2")
    assert (m["version"], m["metadata_version"], m["content_version"]) == ("2", "2", "1")
    assert m["creation_time"] == before["creation_time"]
    assert m["last_modified_time"] >= before["last_modified_time"]
    assert m["library_id"] == lib

    new_name = unique("renamed")
    r = api.patch(f"{ITEM}/{item}", json={"name": new_name, "version": "2"})
    assert r.status_code == 204, r.text
    m = get_item(api, item)
    assert (m["name"], m["description"]) == (new_name, "d2")
    assert (m["version"], m["metadata_version"], m["content_version"]) == ("3", "3", "1")


def test_update_with_stale_version_is_invalid_argument(api: Api) -> None:
    """Item.update: InvalidArgument if "version is not equal to the current version of the library item"."""
    item = api.create_item(description="d1")
    assert api.patch(f"{ITEM}/{item}", json={"description": "d2"}).status_code == 204
    before = get_item(api, item)
    r = api.patch(f"{ITEM}/{item}", json={"description": "stale", "version": "1"})
    assert_vapi_error(r, 400, "INVALID_ARGUMENT", "version")
    assert get_item(api, item) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "n" * 81}, "name"),
        ({"name": 5}, "name"),
        ({"description": "d" * 2001}, "description"),
        ({"description": 5}, "description"),
        ({"version": 1}, "version"),
    ],
    ids=["empty-name", "long-name", "int-name", "long-desc", "int-desc", "int-version"],
)
def test_update_invalid_spec(api: Api, body: dict[str, Any], field: str) -> None:
    item = api.create_item(description="d1")
    before = get_item(api, item)
    r = api.patch(f"{ITEM}/{item}", json=body)
    assert_vapi_error(r, 400, "INVALID_ARGUMENT", field)
    assert get_item(api, item) == before


def test_update_to_existing_name_is_already_exists(api: Api) -> None:
    lib = api.create_library()
    taken = unique()
    api.create_item(lib, taken)
    item = api.create_item(lib)
    before = get_item(api, item)
    r = api.patch(f"{ITEM}/{item}", json={"name": taken})
    assert_vapi_error(r, 400, "ALREADY_EXISTS", taken)
    assert get_item(api, item) == before


@pytest.mark.parametrize("missing", ["0b7d5e2a-93c4-4f61-8d2e-5a9c1e7f3b84", "no-such-item"])
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_unknown_item_is_not_found(api: Api, method: str, missing: str) -> None:
    kw: dict[str, Any] = {"json": {"description": "x"}} if method == "PATCH" else {}
    r = api.request(method, f"{ITEM}/{missing}", **kw)
    assert_vapi_error(r, 404, "NOT_FOUND", missing)


# -- delete -----------------------------------------------------------------------------------------------
def test_delete(api: Api) -> None:
    lib = api.create_library()
    keep = api.create_item(lib)
    item = api.create_item(lib)
    api.put_files(item, {"a.txt": b"hello"})
    r = api.delete(f"{ITEM}/{item}")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_vapi_error(api.get(f"{ITEM}/{item}"), 404, "NOT_FOUND", item)
    assert_vapi_error(api.get(f"{ITEM}/{item}/file"), 404, "NOT_FOUND", item)
    assert_vapi_error(api.delete(f"{ITEM}/{item}"), 404, "NOT_FOUND", item)
    assert list_items(api, lib) == [keep]


def test_delete_with_active_update_session_is_refused(api: Api) -> None:
    item = api.create_item()
    sid = api.create_session(item)
    r = api.delete(f"{ITEM}/{item}")
    assert_vapi_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE")
    assert get_item(api, item)["id"] == item
    assert api.session(sid)["state"] == "ACTIVE"
    assert api.post(f"{US}/{sid}?action=cancel").status_code == 204
    assert api.delete(f"{ITEM}/{item}").status_code == 204
    assert_vapi_error(api.get(f"{ITEM}/{item}"), 404, "NOT_FOUND", item)


def test_deleting_library_deletes_its_items(api: Api) -> None:
    lib = api.create_library()
    names = [unique(), unique()]
    a = api.create_item(lib, names[0])
    b = api.create_item(lib, names[1])
    api.put_files(b, {"f.bin": b"\x00\x01\x02"})
    other = api.create_item()
    assert api.delete(f"/api/content/local-library/{lib}").status_code == 204
    for item in (a, b):
        assert_vapi_error(api.get(f"{ITEM}/{item}"), 404, "NOT_FOUND", item)
        assert_vapi_error(api.get(f"{ITEM}/{item}/file"), 404, "NOT_FOUND", item)
    assert find_items(api, {"library_id": lib}) == []
    for name in names:
        assert find_items(api, {"name": name}) == []
    assert_vapi_error(api.get(ITEM, params={"library_id": lib}), 404, "NOT_FOUND", lib)
    assert get_item(api, other)["id"] == other


# -- find -------------------------------------------------------------------------------------------------
def test_find(api: Api) -> None:
    lib = api.create_library()
    other = api.create_library()
    name = f"Find-MiXeD-{uuid.uuid4().hex[:8]}"
    a = api.create_item(lib, name, type="ovf")
    b = api.create_item(lib, type="file")
    c = api.create_item(other, name)

    assert sorted(find_items(api, {"name": name})) == sorted([a, c])
    assert sorted(find_items(api, {"name": name.upper()})) == sorted([a, c])
    assert find_items(api, {"name": name.lower(), "library_id": lib}) == [a]
    assert find_items(api, {"name": name, "library_id": other}) == [c]
    assert find_items(api, {"name": name[:-1]}) == []
    assert sorted(find_items(api, {"library_id": lib})) == sorted([a, b])
    assert find_items(api, {"library_id": lib, "type": "OVF"}) == [a]
    assert find_items(api, {"library_id": lib, "type": "file"}) == [b]
    assert sorted(find_items(api, {"library_id": lib, "cached": True})) == sorted([a, b])
    assert find_items(api, {"library_id": lib, "cached": False}) == []
    assert find_items(api, {"library_id": str(uuid.uuid4())}) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, ""), ({"name": 5}, "name"), ({"library_id": 5}, "library_id"), ({"cached": "yes"}, "cached")],
    ids=["empty-spec", "int-name", "int-library", "string-cached"],
)
def test_find_invalid_spec(api: Api, body: dict[str, Any], field: str) -> None:
    r = api.post(f"{ITEM}?action=find", json=body)
    assert_vapi_error(r, 400, "INVALID_ARGUMENT", *([field] if field else []))


# -- item files -------------------------------------------------------------------------------------------
def test_new_item_has_no_files(api: Api) -> None:
    item = api.create_item()
    r = api.get(f"{ITEM}/{item}/file")
    assert r.status_code == 200, r.text
    assert r.json() == []


def test_item_files_list_and_get(api: Api) -> None:
    item = api.create_item()
    files = {"a.txt": b"hello content library\n", "disk 1.bin": bytes(range(256)) * 41, "empty.dat": b""}
    api.put_files(item, files)

    r = api.get(f"{ITEM}/{item}/file")
    assert r.status_code == 200, r.text
    listed = {f["name"]: f for f in r.json()}
    assert sorted(listed) == sorted(files)
    for name, data in files.items():
        check_file(listed[name], file_info(name, data))

    m = get_item(api, item)
    assert m["size"] == sum(len(d) for d in files.values())
    assert m["cached"] is True
    assert (m["version"], m["metadata_version"], m["content_version"]) == ("1", "1", "2")

    for name, data in files.items():
        r = api.get(f"{ITEM}/{item}/file", params={"name": name})
        assert r.status_code == 200, r.text
        check_file(r.json(), file_info(name, data))
        # SDK quirk: bare `?name` marker with the value in a JSON GET body, no Content-Type.
        r = api.get(f"{ITEM}/{item}/file?name", data=json.dumps({"name": name}))
        assert "Content-Type" not in r.request.headers
        assert r.status_code == 200, r.text
        check_file(r.json(), file_info(name, data))


def test_replaced_file_gets_new_version(api: Api) -> None:
    item = api.create_item()
    api.put_files(item, {"a.txt": b"one", "b.txt": b"bee"})
    api.put_files(item, {"a.txt": b"two, longer"})
    files = api.item_files(item)
    check_file(files["a.txt"], file_info("a.txt", b"two, longer", version="2"))
    check_file(files["b.txt"], file_info("b.txt", b"bee", version="1"))
    m = get_item(api, item)
    assert m["size"] == len(b"two, longer") + len(b"bee")
    assert (m["version"], m["metadata_version"], m["content_version"]) == ("1", "1", "3")


def test_metadata_update_leaves_files_and_content_version(api: Api) -> None:
    item = api.create_item()
    api.put_files(item, {"a.txt": b"data"})
    assert api.patch(f"{ITEM}/{item}", json={"description": "changed"}).status_code == 204
    m = get_item(api, item)
    assert (m["version"], m["metadata_version"], m["content_version"]) == ("2", "2", "2")
    check_file(api.item_files(item)["a.txt"], file_info("a.txt", b"data"))


def test_unknown_file_name_is_not_found(api: Api) -> None:
    item = api.create_item()
    api.put_files(item, {"a.txt": b"x"})
    r = api.get(f"{ITEM}/{item}/file", params={"name": "nope.txt"})
    assert_vapi_error(r, 404, "NOT_FOUND", "nope.txt")
    r = api.get(f"{ITEM}/{item}/file?name", data=json.dumps({"name": "nope.txt"}))
    assert_vapi_error(r, 404, "NOT_FOUND", "nope.txt")
    r = api.get(f"{ITEM}/{item}/file", params={"name": "A.TXT"})
    assert_vapi_error(r, 404, "NOT_FOUND", "A.TXT")


def test_files_of_unknown_item_are_not_found(api: Api) -> None:
    missing = str(uuid.uuid4())
    assert_vapi_error(api.get(f"{ITEM}/{missing}/file"), 404, "NOT_FOUND", missing)
    r = api.get(f"{ITEM}/{missing}/file", params={"name": "a.txt"})
    assert_vapi_error(r, 404, "NOT_FOUND", missing)
    r = api.get(f"{ITEM}/{missing}/file?name", data=json.dumps({"name": "a.txt"}))
    assert_vapi_error(r, 404, "NOT_FOUND", missing)
