"""`publish_info.persist_json_enabled` (issue 12 point 1): the VCSP feed of a library published with it is also
written into the storage, `vcsp/<library id>/lib.json`, `items.json`, `<item id>/item.json` and the items' files
where their hrefs say (under the data dir on local disk, under the server's prefix on S3), kept up to date by the
sweeper after every change, and removed when the library stops being published with it.

Contract: PublishInfo.persist_json_enabled (types.json): "Whether library and library item metadata are persisted
in the storage backing as JSON files. This flag only applies if the local library is published." The documents
are the feed's own, byte for byte what the server serves at the same versions (docs/vcsp.md).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from conftest import S3_BUCKET, Api, ServerProcess
from ovfkit import build_package, disk_bytes
from test_vcsp_publisher import ITEM, LL, OPEN, feed_of, library_info
from vcsptree import Feed, StaticServer

pytestmark = [
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

PERSISTED = {**OPEN, "persist_json_enabled": True}


def raw_documents(srv: ServerProcess, lib: str) -> dict[str, bytes]:
    """Every document persisted for `lib`, by its path under `vcsp/<lib>/`: files under the data dir, or objects
    under the server's S3 prefix."""
    if not srv.s3_prefix:
        top = srv.data_dir / "vcsp" / lib
        return {p.relative_to(top).as_posix(): p.read_bytes() for p in top.rglob("*") if p.is_file()}
    s3 = srv.s3_client()
    prefix = f"{srv.s3_prefix}/vcsp/{lib}/"
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=prefix)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return {k[len(prefix) :]: s3.get_object(Bucket=S3_BUCKET, Key=k)["Body"].read() for k in keys}


def is_json(name: str) -> bool:
    """lib.json, items.json and `<item id>/item.json`; the rest are the items' files."""
    return name in ("lib.json", "items.json") or (name.count("/") == 1 and name.endswith("/item.json"))


def documents(srv: ServerProcess, lib: str) -> dict[str, Any]:
    """The persisted documents decoded, and the files' bytes, by their path under `vcsp/<lib>/`."""
    return {name: json.loads(data) if is_json(name) else data for name, data in raw_documents(srv, lib).items()}


def served(feed: Feed) -> dict[str, Any]:
    """The feed as the server serves it, keyed like `documents`: every document, and every file at the path its
    href names."""
    out: dict[str, Any] = {"lib.json": feed.json(), "items.json": feed.json("items.json")}
    for item in out["items.json"]["items"]:
        out[item["selfHref"]] = feed.json(item["selfHref"])
        for f in item["files"]:
            r = feed.get(f["hrefs"][0])
            assert r.status_code == 200 and len(r.content) == f["size"], f
            out[unquote(f["hrefs"][0])] = r.content
    return out


def settled(srv: ServerProcess, lib: str, feed: Feed | None, timeout: float = 20.0) -> dict[str, Any]:
    """The persisted documents once they are the served feed (or, with no feed, once there are none)."""
    deadline = time.monotonic() + timeout
    while True:
        docs = documents(srv, lib)
        want = served(feed) if feed is not None else {}
        if docs == want:
            return docs
        if time.monotonic() > deadline:
            raise AssertionError(f"persisted {sorted(docs)} {docs.get('lib.json')}\nserved {sorted(want)}")
        time.sleep(0.2)


@pytest.fixture()
def srv(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    return make_server(args=["--sweep-interval", "0.3"])


def test_the_feed_is_written_into_the_storage_and_kept_up_to_date(srv: ServerProcess) -> None:
    api = Api(srv.base)
    lib = api.create_library(publish_info=PERSISTED)
    assert library_info(api, lib)["publish_info"]["persist_json_enabled"] is True
    feed = feed_of(api, lib)
    docs = settled(srv, lib, feed)
    assert set(docs) == {"lib.json", "items.json"} and docs["items.json"] == {"items": []}
    iso = api.create_item(lib, name="ubuntu")
    api.put_files(iso, {"ubuntu.iso": b"iso bytes"})
    other = api.create_item(lib, name="notes")
    api.put_files(other, {"a.txt": b"alpha"})
    docs = settled(srv, lib, feed)
    assert set(docs) == {"lib.json", "items.json", f"{iso}/item.json", f"{other}/item.json"} | {
        f"{iso}/ubuntu.iso",
        f"{other}/a.txt",
    }
    assert docs[f"{iso}/ubuntu.iso"] == b"iso bytes"
    assert [i["name"] for i in docs["items.json"]["items"]] == ["ubuntu", "notes"]
    first = int(docs["lib.json"]["version"])

    # changes: new bytes, a rename, an item gone, another added, the library renamed: all written again
    api.put_files(iso, {"ubuntu.iso": b"new iso bytes"})
    assert api.patch(f"{ITEM}/{other}", json={"name": "renamed"}).status_code == 204
    docs = settled(srv, lib, feed)
    assert docs[f"{iso}/item.json"]["files"][0]["size"] == len(b"new iso bytes")
    assert docs[f"{iso}/ubuntu.iso"] == b"new iso bytes"
    assert docs[f"{other}/item.json"]["name"] == "renamed"
    assert api.delete(f"{ITEM}/{other}").status_code == 204
    third = api.create_item(lib, name="third")
    assert api.patch(f"{LL}/{lib}", json={"name": f"renamed-{uuid.uuid4().hex[:6]}"}).status_code == 204
    docs = settled(srv, lib, feed)
    assert set(docs) == {"lib.json", "items.json", f"{iso}/item.json", f"{third}/item.json", f"{iso}/ubuntu.iso"}
    assert int(docs["lib.json"]["version"]) > first

    # a library published without it has none; one that turns it off, or is unpublished or deleted, loses them
    plain = api.create_library(publish_info=OPEN)
    off = api.create_library(publish_info=PERSISTED)
    gone = api.create_library(publish_info=PERSISTED)
    settled(srv, off, feed_of(api, off))
    settled(srv, gone, feed_of(api, gone))
    assert documents(srv, plain) == {}
    assert api.patch(f"{LL}/{off}", json={"publish_info": {"persist_json_enabled": False}}).status_code == 204
    assert api.patch(f"{LL}/{lib}", json={"publish_info": {"published": False}}).status_code == 204
    assert api.delete(f"{LL}/{gone}").status_code == 204
    for library in (off, lib, gone):
        settled(srv, library, None)
    if not srv.s3_prefix:
        assert not (srv.data_dir / "vcsp" / lib).exists()
    # published again with it: written again
    assert api.patch(f"{LL}/{lib}", json={"publish_info": {"published": True}}).status_code == 204
    settled(srv, lib, feed)


def test_a_plain_file_server_serves_the_persisted_documents(srv: ServerProcess, tmp_path: Path) -> None:
    """The folder under `python -m http.server` (on S3: the objects, copied as they are into a folder): a VCSP
    endpoint whose documents are the server's."""
    api = Api(srv.base)
    lib = api.create_library(publish_info=PERSISTED)
    api.put_files(api.create_item(lib, name="one"), {"one.iso": b"one"})
    # an OVF item: its descriptor, disk and the manifest the feed makes; a file named item.json; an odd name
    pkg = build_package("vm", disks={"vm-disk1.vmdk": disk_bytes("disk1", 40_000)})
    api.put_files(api.create_item(lib, name="appliance"), pkg.files)
    api.put_files(api.create_item(lib, name="notes"), {"item.json": b"not json", "a b%c.txt": b"odd"})
    feed = feed_of(api, lib)
    settled(srv, lib, feed)
    root = srv.data_dir / "vcsp" / lib
    if srv.s3_prefix:
        root = tmp_path / "bucket-copy"
        for name, data in raw_documents(srv, lib).items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
    with StaticServer(root) as static:
        plain = Feed(static.url)
        lib_json, items = plain.feed()  # every item.json checked against items.json
        assert lib_json == feed.json() and items == feed.items()
        for item in items.values():
            for f in item["files"]:  # every file where its href says, the same bytes
                got = plain.get(f["hrefs"][0])
                assert got.status_code == 200 and got.content == feed.get(f["hrefs"][0]).content, f
        assert {f["name"] for f in items["appliance"]["files"]} == {"vm.ovf", "vm-disk1.vmdk", "vm.mf"}


def test_the_documents_survive_a_restart_and_the_garbage_collector(srv: ServerProcess) -> None:
    """They are never among the blobs: the orphan collector (run at every start) leaves them, and a restart
    with nothing changed writes nothing again."""
    api = Api(srv.base)
    lib = api.create_library(publish_info=PERSISTED)
    api.put_files(api.create_item(lib), {"a.iso": b"a"})
    docs = settled(srv, lib, feed_of(api, lib))
    assert not any("vcsp" in b for b in srv.blob_ids())
    srv.restart()
    time.sleep(1.5)  # a few sweeps
    assert documents(srv, lib) == docs
    assert api.login() and api.post(f"{LL}/{lib}", params={"action": "publish"}).status_code == 204
    after = settled(srv, lib, feed_of(api, lib))
    assert int(after["lib.json"]["version"]) > int(docs["lib.json"]["version"])
