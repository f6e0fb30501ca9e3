"""Item copy, item storage and item content changes over /api (issue 10 point 3; REFERENCE A.1/A.2
`content.library.item` copy, `content.library.item.storage`, `content.library.item.changes`; A.3 `ItemModel`,
`Storage.Info`, `Changes.Summary`/`Changes.Info`).

Lead's rules: copy answers 200 with the new item's id (the 8.0.2 Swagger), copies no byte (the copy's files are the
source's blobs, which stay until neither item holds them, on both backend pairs, also once the update session that
uploaded them has been swept), a name clash is ALREADY_EXISTS; Storage.Info's storage_uris identify the bytes
(`file://` of the blob file on disk, `s3://bucket/key` on S3); every content change (a complete that changed the
files, a copy) is recorded at the content version it produced, and an unknown version is NOT_FOUND.
"""

from __future__ import annotations

import hashlib
import time
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from conftest import S3_BUCKET, Api, ServerProcess
from test_routes import assert_vapi_error, validate_error_schema

from contentlib.services.item_content import short_message

ITEM = "/api/content/library/item"
US = "/api/content/library/item/update-session"
FILES = {"disk.iso": b"an iso image\n" * 100}
DATETIME_LEN = len("2024-01-02T03:04:05.678Z")


def unique(prefix: str = "item") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def copy(api: Api, source: str, spec: dict[str, Any], **kw: Any) -> str:
    r = api.post(f"{ITEM}/{source}", params={"action": "copy", **kw.pop("params", {})}, json=spec, **kw)
    assert r.status_code == 200, r.text
    new = r.json()
    assert isinstance(new, str) and str(uuid.UUID(new)) == new
    return new


def get_item(api: Api, item: str) -> dict[str, Any]:
    r = api.get(f"{ITEM}/{item}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def items_of(api: Api, lib: str) -> list[str]:
    r = api.get(ITEM, params={"library_id": lib})
    assert r.status_code == 200, r.text
    return sorted(r.json())


def storage(api: Api, item: str, file_name: str | None = None) -> list[dict[str, Any]]:
    r = api.get(f"{ITEM}/{item}/storage", params={"file_name": file_name} if file_name is not None else None)
    assert r.status_code == 200, r.text
    return list(r.json())


def changes(api: Api, item: str) -> list[dict[str, Any]]:
    r = api.get(f"{ITEM}/{item}/changes")
    assert r.status_code == 200, r.text
    return list(r.json())


def change(api: Api, item: str, version: str) -> dict[str, Any]:
    r = api.get(f"{ITEM}/{item}/changes/{version}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def read_storage_uri(srv: ServerProcess, uri: str) -> bytes:
    """The bytes a Storage.Info URI names: a file of the server's disk store, or an object of its S3 bucket."""
    parts = urllib.parse.urlsplit(uri)
    if srv.s3_prefix:
        assert parts.scheme == "s3" and parts.netloc == S3_BUCKET, uri
        assert parts.path.startswith(f"/{srv.s3_prefix}/blobs/"), uri
        return bytes(srv.s3_client().get_object(Bucket=S3_BUCKET, Key=parts.path[1:])["Body"].read())
    assert parts.scheme == "file" and not parts.netloc, uri
    path = urllib.parse.unquote(parts.path)
    assert path.startswith(str((srv.data_dir / "blobs").resolve()) + "/"), uri
    with open(path, "rb") as f:
        return f.read()


def check_schema(value: Any, definition: str) -> None:
    """A success body against the 8.0.2 Swagger's definition (what the fuzzer checks too)."""
    validate_error_schema(value, definition)  # any definition of the swagger file, not only the errors'


# -- copy --------------------------------------------------------------------------------------------------------------
def test_copy_makes_an_item_with_the_same_files_and_no_new_bytes(api: Api, server: ServerProcess) -> None:
    source_lib = api.create_library()
    source = api.create_item(source_lib, name="src", description="the source")
    api.put_files(source, {**FILES, "notes.txt": b"notes\n"})
    target_lib = api.create_library()
    blobs_before = server.blob_ids()

    new = copy(api, source, {"library_id": target_lib, "name": "the-copy", "description": "a copy"})

    assert set(server.blob_ids()) <= set(blobs_before)  # not one byte was copied (the collector may take orphans)
    src, got = get_item(api, source), get_item(api, new)
    assert (got["library_id"], got["name"], got["description"]) == (target_lib, "the-copy", "a copy")
    assert got["source_id"] == source  # vSphere 9.1: the source's source_id, or else the source's id
    assert (got["content_version"], got["metadata_version"], got["version"]) == ("1", "1", "1")
    assert got["size"] == src["size"] == sum(len(d) for d in FILES.values()) + 6
    assert got.get("type") == src.get("type")
    assert items_of(api, target_lib) == [new]
    src_files, new_files = api.item_files(source), api.item_files(new)
    assert set(new_files) == set(src_files) == {"disk.iso", "notes.txt"}
    for name, f in new_files.items():
        assert f == {**src_files[name], "version": "1"}
    assert api.download(new, "disk.iso") == FILES["disk.iso"]
    # The copy's files are the source's bytes: the same storage URIs.
    assert {s["name"]: s["storage_uris"] for s in storage(api, new)} == {
        s["name"]: s["storage_uris"] for s in storage(api, source)
    }


def test_copy_takes_what_the_spec_leaves_unset_from_the_source(api: Api) -> None:
    lib = api.create_library()
    source = api.create_item(lib, name="iso-src", description="described")
    api.put_files(source, FILES)
    assert get_item(api, source)["type"] == "iso"
    other_lib = api.create_library()
    # No library: a copy within the source's library (a name is then needed: the source's is taken).
    within = copy(api, source, {"name": "iso-copy"})
    got = get_item(api, within)
    assert (got["library_id"], got["description"], got["type"]) == (lib, "described", "iso")
    # No name: the source's, in another library.
    elsewhere = copy(api, source, {"library_id": other_lib})
    assert get_item(api, elsewhere)["name"] == "iso-src"
    # A copy of a copy keeps the original's id as its source_id.
    again = copy(api, within, {"library_id": other_lib, "name": "second-generation", "type": "custom"})
    got = get_item(api, again)
    assert (got["source_id"], got["type"]) == (source, "custom")


def test_copy_name_clash_is_already_exists(api: Api) -> None:
    lib = api.create_library()
    source = api.create_item(lib, name="twin")
    r = api.post(f"{ITEM}/{source}", params={"action": "copy"}, json={})  # the source's own name, in its library
    assert_vapi_error(r, 400, "ALREADY_EXISTS", "twin", lib)
    r = api.post(f"{ITEM}/{source}", params={"action": "copy"}, json={"library_id": lib, "name": "TWIN"})
    assert_vapi_error(r, 400, "ALREADY_EXISTS", "twin")
    assert items_of(api, lib) == [source]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"name": ""}, ["name"]),
        ({"name": "   "}, ["name"]),
        ({"name": "n" * 81}, ["name", "81", "80"]),
        ({"name": "ok", "description": "d" * 2001}, ["description", "2001", "2000"]),
        ({"name": 42}, ["name"]),
        ({"library_id": ["not", "an", "id"]}, ["library_id"]),
    ],
)
def test_copy_with_an_invalid_spec_is_invalid_argument(api: Api, spec: dict[str, Any], words: list[str]) -> None:
    lib = api.create_library()
    source = api.create_item(lib)
    r = api.post(f"{ITEM}/{source}", params={"action": "copy"}, json={"library_id": lib, **spec})
    assert_vapi_error(r, 400, "INVALID_ARGUMENT", *words)
    assert items_of(api, lib) == [source]


@pytest.mark.parametrize("body", [b"", b"[]", b'{"name": ', b"null"])
def test_copy_without_a_spec_object_is_invalid_argument(api: Api, body: bytes) -> None:
    lib = api.create_library()
    source = api.create_item(lib)
    r = api.post(
        f"{ITEM}/{source}?action=copy", data=body, headers={"Content-Type": "application/json"}
    )  # an empty body is `{}`: a copy in the same library under the source's name
    if body == b"":
        assert_vapi_error(r, 400, "ALREADY_EXISTS")
    else:
        assert_vapi_error(r, 400, "INVALID_ARGUMENT")
    assert items_of(api, lib) == [source]


def test_copy_of_an_unknown_item_or_into_an_unknown_library_is_not_found(api: Api) -> None:
    lib = api.create_library()
    source = api.create_item(lib)
    missing = str(uuid.uuid4())
    r = api.post(f"{ITEM}/{missing}", params={"action": "copy"}, json={"library_id": lib, "name": "x"})
    assert_vapi_error(r, 404, "NOT_FOUND", missing, "library item")
    r = api.post(f"{ITEM}/{source}", params={"action": "copy"}, json={"library_id": missing, "name": "x"})
    assert_vapi_error(r, 404, "NOT_FOUND", missing, "library")
    assert items_of(api, lib) == [source]


@pytest.mark.parametrize("where", ["header", "query"])
def test_copy_with_a_client_token_is_idempotent(api: Api, where: str) -> None:
    lib = api.create_library()
    source = api.create_item(lib)
    token = str(uuid.uuid4())
    kw: dict[str, Any] = (
        {"headers": {"Client-Token": token}} if where == "header" else {"params": {"client_token": token}}
    )
    first = copy(api, source, {"library_id": lib, "name": "once"}, **kw)
    again = copy(api, source, {"library_id": lib, "name": "once"}, **kw)
    assert again == first
    assert items_of(api, lib) == sorted([source, first])
    r = api.post(
        f"{ITEM}/{source}", params={"action": "copy"}, json={"name": "bad"}, headers={"Client-Token": "not-a-uuid"}
    )
    assert_vapi_error(r, 400, "INVALID_ARGUMENT", "client_token", "not-a-uuid")
    assert items_of(api, lib) == sorted([source, first])


def test_copy_and_source_change_independently(api: Api) -> None:
    lib = api.create_library()
    source = api.create_item(lib)
    api.put_files(source, {"a.bin": b"first a", "b.bin": b"first b"})
    new = copy(api, source, {"name": unique("copy")})
    # Replacing a shared file in the copy, and removing another, leaves the source as it was.
    sid = api.create_session(new)
    api.upload(sid, "a.bin", b"second a")
    assert api.delete(f"{US}/{sid}/file/b.bin").status_code == 204
    api.complete(sid)
    assert api.download(new, "a.bin") == b"second a"
    assert set(api.item_files(new)) == {"a.bin"}
    assert api.download(source, "a.bin") == b"first a"
    assert api.download(source, "b.bin") == b"first b"
    assert get_item(api, source)["content_version"] == "2"
    assert get_item(api, new)["content_version"] == "2"
    # Renaming the source changes nothing in the copy.
    assert api.patch(f"{ITEM}/{source}", json={"name": unique("renamed")}).status_code == 204
    assert get_item(api, new)["source_id"] == source


@pytest.mark.parametrize("delete_first", ["source", "copy"])
def test_shared_blobs_outlive_either_item_and_the_swept_session(
    make_server: Callable[..., ServerProcess], delete_first: str
) -> None:
    """The update session that uploaded the bytes is swept (its rows deleted, its blobs offered to discard), the
    server restarts (a garbage collection with no grace period), one item is deleted: the other keeps every byte.
    Deleting that one too frees them."""
    srv = make_server(["--sweep-interval", "0.2", "--session-retention", "1"])
    api = Api(srv.base)
    lib = api.create_library()
    source = api.create_item(lib)
    sid = api.create_session(source)
    data = {"disk.vmdk": b"disk bytes " * 4096, "vm.bin": b"more bytes"}
    for name, payload in data.items():
        api.upload(sid, name, payload)
    api.complete(sid)
    new = copy(api, source, {"library_id": api.create_library(), "name": "copy"})
    uploaded = srv.blob_ids()
    assert len(uploaded) == 2 and all(b.startswith(f"{sid}/") for b in uploaded), uploaded

    deadline = time.monotonic() + 20
    while api.get(f"{US}/{sid}").status_code != 404:  # swept after the retention period
        assert time.monotonic() < deadline, "the DONE session was never swept"
        time.sleep(0.2)
    srv.restart()  # start-up collects garbage with no grace period
    api = Api(srv.base)
    assert srv.blob_ids() == uploaded

    first, second = (source, new) if delete_first == "source" else (new, source)
    assert api.delete(f"{ITEM}/{first}").status_code == 204
    assert srv.blob_ids() == uploaded
    for name, payload in data.items():
        assert api.download(second, name) == payload
    srv.restart()
    api = Api(srv.base)
    assert srv.blob_ids() == uploaded
    for s in storage(api, second):
        assert read_storage_uri(srv, s["storage_uris"][0]) == data[s["name"]]

    assert api.delete(f"{ITEM}/{second}").status_code == 204
    assert srv.blob_ids() == []


# -- storage -----------------------------------------------------------------------------------------------------------
def test_storage_lists_every_file_with_uris_of_its_bytes(api: Api, server: ServerProcess) -> None:
    backing = {"type": "OTHER", "storage_uri": "file:///srv/storage-test"}
    lib = api.create_library(storage_backings=[backing])
    item = api.create_item(lib)
    files = {"a.bin": b"alpha" * 100, "b.bin": b"beta"}
    api.put_files(item, files)
    infos = storage(api, item)
    check_schema(infos[0], "ContentLibraryItemStorageInfo")
    assert sorted(s["name"] for s in infos) == ["a.bin", "b.bin"]
    for s in infos:
        data = files[s["name"]]
        assert s["storage_backing"] == backing
        assert s["size"] == len(data) and s["cached"] is True and s["version"] == "1"
        assert s["checksum_info"] == {"algorithm": "SHA1", "checksum": hashlib.sha1(data).hexdigest()}
        assert len(s["storage_uris"]) == 1
        assert read_storage_uri(server, s["storage_uris"][0]) == data
    assert storage(api, api.create_item(lib)) == []


def test_storage_of_one_file(api: Api, server: ServerProcess) -> None:
    item = api.create_item()
    api.put_files(item, {"x y#1.bin": b"spaced", "other.bin": b"other"})
    (one,) = storage(api, item, "x y#1.bin")
    assert one["name"] == "x y#1.bin" and read_storage_uri(server, one["storage_uris"][0]) == b"spaced"
    assert storage(api, item)[0]["name"] == "other.bin"
    # The official SDK's form: the bare `?file_name` marker, the value in a JSON body on the GET.
    r = api.get(f"{ITEM}/{item}/storage?file_name", data=b'{"file_name": "other.bin"}')
    assert r.status_code == 200, r.text
    assert [s["name"] for s in r.json()] == ["other.bin"]


def test_storage_errors(api: Api) -> None:
    item = api.create_item()
    api.put_files(item, {"a.bin": b"a"})
    missing = str(uuid.uuid4())
    assert_vapi_error(api.get(f"{ITEM}/{missing}/storage"), 404, "NOT_FOUND", missing)
    assert_vapi_error(api.get(f"{ITEM}/{missing}/storage", params={"file_name": "a.bin"}), 404, "NOT_FOUND", missing)
    r = api.get(f"{ITEM}/{item}/storage", params={"file_name": "nope.bin"})
    assert_vapi_error(r, 404, "NOT_FOUND", "nope.bin", item)
    assert_vapi_error(api.get(f"{ITEM}/{item}/storage?file_name"), 400, "INVALID_ARGUMENT", "file_name")
    r = api.get(f"{ITEM}/{item}/storage?file_name", data=b'{"file_name": 7}')
    assert_vapi_error(r, 400, "INVALID_ARGUMENT", "file_name")


# -- changes -----------------------------------------------------------------------------------------------------------
def test_every_content_change_is_recorded_at_its_version(api: Api) -> None:
    item = api.create_item()
    assert changes(api, item) == []  # a new item has no content yet
    sid = api.create_session(item)
    api.upload(sid, "a.bin", b"a1")
    api.upload(sid, "b.bin", b"b1")
    before = time.time()
    api.complete(sid)
    assert get_item(api, item)["content_version"] == "2"
    (first,) = changes(api, item)
    check_schema(first, "ContentLibraryItemChangesSummary")
    assert first["version"] == "2" and first["user"] == "administrator@vsphere.local"
    assert first["short_message"] == f"Content changed by the update session {sid}."
    assert len(first["time"]) == DATETIME_LEN and first["time"].endswith("Z")
    info = change(api, item, "2")
    check_schema(info, "ContentLibraryItemChangesInfo")
    assert info["time"] == first["time"] and info["user"] == first["user"]
    assert info["message"] == f"Content changed by the update session {sid}.\nAdded: a.bin, b.bin"
    assert time.strftime("%Y-%m-%d", time.gmtime(before)) <= info["time"][:10]

    second = api.create_session(item)
    api.upload(second, "a.bin", b"a2")
    assert api.delete(f"{US}/{second}/file/b.bin").status_code == 204
    api.upload(second, "c.bin", b"c2")
    api.complete(second)
    assert [c["version"] for c in changes(api, item)] == ["3", "2"]  # the newest first
    assert change(api, item, "3")["message"].splitlines()[1:] == ["Added: c.bin", "Replaced: a.bin", "Removed: b.bin"]

    # A session that changes nothing (no files; or only removing a file the item does not have) records nothing.
    idle = api.create_session(item)
    api.complete(idle)
    assert get_item(api, item)["content_version"] == "3"
    assert [c["version"] for c in changes(api, item)] == ["3", "2"]


def test_a_copy_records_its_origin(api: Api) -> None:
    source = api.create_item()
    api.put_files(source, {"a.bin": b"a"})
    new = copy(api, source, {"name": unique("copy")})
    (only,) = changes(api, new)
    assert only["version"] == "1" == get_item(api, new)["content_version"]
    assert only["short_message"] == f"Copied from the library item {source}."
    assert change(api, new, "1")["message"] == f"{only['short_message']}\nThe source's content version was 2."
    assert [c["version"] for c in changes(api, source)] == ["2"]


@pytest.mark.parametrize(
    "version", ["1", "4", "0", "02", "abc", "-2", "2.0", "99999999999999999999999999", "%E2%82%82"]
)
def test_unknown_version_is_not_found(api: Api, version: str) -> None:
    item = api.create_item()
    api.put_files(item, {"a.bin": b"a"})
    r = api.get(f"{ITEM}/{item}/changes/{version}")
    body = assert_vapi_error(r, 404, "NOT_FOUND", item)
    assert urllib.parse.unquote(version) in body["messages"][0]["default_message"]


def test_changes_of_an_unknown_or_deleted_item_are_not_found(api: Api) -> None:
    missing = str(uuid.uuid4())
    assert_vapi_error(api.get(f"{ITEM}/{missing}/changes"), 404, "NOT_FOUND", missing)
    assert_vapi_error(api.get(f"{ITEM}/{missing}/changes/2"), 404, "NOT_FOUND", missing)
    item = api.create_item()
    api.put_files(item, {"a.bin": b"a"})
    assert api.delete(f"{ITEM}/{item}").status_code == 204
    assert_vapi_error(api.get(f"{ITEM}/{item}/changes"), 404, "NOT_FOUND", item)
    assert_vapi_error(api.get(f"{ITEM}/{item}/changes/2"), 404, "NOT_FOUND", item)


def test_changes_survive_a_restart(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server()
    api = Api(srv.base)
    item = api.create_item()
    api.put_files(item, {"a.bin": b"a"})
    before = changes(api, item)
    srv.restart()
    api = Api(srv.base)
    assert changes(api, item) == before
    assert change(api, item, "2")["message"].endswith("Added: a.bin")


@pytest.mark.parametrize(
    ("message", "short"),
    [
        ("one line", "one line"),
        ("first\nsecond", "first"),
        ("\n\nleading newlines\nthen more", "leading newlines"),
        ("x" * 100, "x" * 80),
        ("y" * 90 + "\nz", "y" * 80),
        ("windows\r\nline", "windows"),
    ],
)
def test_short_message_is_the_first_line_or_80_characters(message: str, short: str) -> None:
    """`Changes.Summary.short_message`: "truncated to the first 80 characters or first non-leading newline
    character, whichever length is shorter" (the server's messages are short; the rule is checked on its own)."""
    assert short_message(message) == short
