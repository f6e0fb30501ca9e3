"""Subscribed libraries (issue 12 points 2 and 3): one contentlib server publishes, another subscribes and syncs, on
the backend pair of the run (SQLite + disk, or PostgreSQL + S3 in the second pass).

Contract (operations.json, types.json): `subscribed_library` create (201; INVALID_ARGUMENT for a bad spec,
UNSUPPORTED for several backings, RESOURCE_INACCESSIBLE when the publisher cannot be read), get/list/update/delete,
`sync` (204; "performs the same synchronization behavior as would run periodically"), `evict` (on-demand only:
NOT_ALLOWED_IN_CURRENT_STATE otherwise), `probe` (a ProbeResult, never an error); `subscribed_item` sync
(`force_sync_content` for on-demand items) and evict (INVALID_ELEMENT_CONFIGURATION when the library is not on
demand). `SubscriptionInfo.password` is never returned; `on_demand` syncs metadata only; items of a subscribed
library are read-only (item create/update/delete, update-session create, copy into it: INVALID_ELEMENT_TYPE). The
faults (wrong credentials and certificates, publishers that fail mid-sync, corrupted bytes, a kill mid-sync) are in
tests/test_subscriber_faults.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import subkit as sk
import vcsptree as vt
from conftest import Api, ServerProcess, assert_error
from ovfkit import build_package, disk_bytes

PASSWORD = "Sub-scr1be!"
ISO = disk_bytes("iso", 300_000)
PKG = build_package("vm", disks={"vm-disk1.vmdk": disk_bytes("disk1", 120_000)})


@pytest.fixture()
def pub(server: ServerProcess) -> Api:
    return Api(server.base)


@pytest.fixture()
def sub_srv(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    return make_server()


@pytest.fixture()
def sub(sub_srv: ServerProcess) -> Api:
    return Api(sub_srv.base)


@pytest.fixture()
def published(pub: Api) -> Iterator[tuple[str, str, dict[str, str]]]:
    """A BASIC-published library with an ISO item and an OVF item: (library id, publish_url, item ids by name)."""
    lib, url = sk.publish(pub, password=PASSWORD)
    ids = {"disk.iso": pub.create_item(lib, "disk.iso"), "vm": pub.create_item(lib, "vm")}
    pub.put_files(ids["disk.iso"], {"disk.iso": ISO})
    pub.put_files(ids["vm"], PKG.files)
    yield lib, url, ids


def test_a_subscribed_library_mirrors_its_publisher(
    pub: Api, sub: Api, sub_srv: ServerProcess, published: tuple[str, str, dict[str, str]]
) -> None:
    _, url, ids = published
    lib = sk.subscribe(sub, url, name="mirror", auth=("vcsp", PASSWORD))
    model = sk.wait_synced(sub, sub_srv, lib)
    assert model["type"] == "SUBSCRIBED" and model["name"] == "mirror"
    info = model["subscription_info"]
    assert info == {
        "authentication_method": "BASIC",
        "automatic_sync_enabled": False,
        "on_demand": False,
        "subscription_url": url,
        "user_name": "vcsp",
    }, "the password is never returned"
    assert sub.get(f"/api/content/library/{lib}").json()["subscription_info"] == info
    assert lib in sub.get(sk.SUB).json() and lib not in sub.get(sk.LL).json()

    got = sk.items(sub, lib)
    assert set(got) == {"disk.iso", "vm"}
    assert got["disk.iso"]["type"] == "iso" and got["vm"]["type"] == "ovf"
    for name, item in got.items():
        assert item["cached"] is True and item["source_id"] == ids[name]
        assert "last_sync_time" in item
    assert got["disk.iso"]["size"] == len(ISO)
    assert sub.download(got["disk.iso"]["id"], "disk.iso") == ISO
    files = sub.item_files(got["vm"]["id"])
    assert set(files) == {"vm.ovf", "vm-disk1.vmdk"}  # the manifest was checked, as an upload's is, not kept
    for name in files:
        assert sub.download(got["vm"]["id"], name) == PKG.files[name]
        assert files[name]["cached"] is True
    assert (
        sub.item_files(got["vm"]["id"])["vm.ovf"]["checksum_info"]
        == pub.item_files(ids["vm"])["vm.ovf"]["checksum_info"]
    )


def test_sync_is_incremental_and_mirrors_changes_deletes_and_additions(
    pub: Api, sub: Api, sub_srv: ServerProcess, published: tuple[str, str, dict[str, str]]
) -> None:
    source, url, ids = published
    lib = sk.subscribe(sub, url, auth=("vcsp", PASSWORD))
    sk.wait_synced(sub, sub_srv, lib)
    before = sk.items(sub, lib)

    sk.sync(sub, sub_srv, lib)  # nothing changed: nothing is fetched again
    again = sk.items(sub, lib)
    for name in before:
        assert again[name]["content_version"] == before[name]["content_version"]

    new_iso = disk_bytes("iso2", 50_000)
    pub.put_files(ids["disk.iso"], {"disk.iso": new_iso})
    r = pub.delete(f"{sk.ITEM}/{ids['vm']}")
    assert r.status_code == 204, r.text
    added = pub.create_item(source, "notes", description="added later")
    pub.put_files(added, {"notes.txt": b"hello"})
    sk.sync(sub, sub_srv, lib)
    after = sk.items(sub, lib)
    assert set(after) == {"disk.iso", "notes"}
    assert after["disk.iso"]["id"] == before["disk.iso"]["id"], "the same item, updated"
    assert int(after["disk.iso"]["content_version"]) > int(before["disk.iso"]["content_version"])
    assert sub.download(after["disk.iso"]["id"], "disk.iso") == new_iso
    assert after["notes"]["description"] == "added later"
    assert sub.download(after["notes"]["id"], "notes.txt") == b"hello"
    assert sub.get(f"{sk.ITEM}/{before['vm']['id']}").status_code == 404


def test_renamed_and_swapped_names_are_mirrored(pub: Api, sub: Api, sub_srv: ServerProcess) -> None:
    source, url = sk.publish(pub)
    a, b = pub.create_item(source, "alpha"), pub.create_item(source, "beta")
    lib = sk.subscribe(sub, url)
    sk.wait_synced(sub, sub_srv, lib)
    for item, name in ((a, "tmp"), (b, "alpha"), (a, "beta")):
        r = pub.patch(f"{sk.ITEM}/{item}", json={"name": name})
        assert r.status_code == 204, r.text
    sk.sync(sub, sub_srv, lib)
    got = sk.items(sub, lib)
    assert {name: item["source_id"] for name, item in got.items()} == {"alpha": b, "beta": a}


def test_on_demand_syncs_metadata_then_content_when_asked(
    pub: Api, sub: Api, sub_srv: ServerProcess, published: tuple[str, str, dict[str, str]]
) -> None:
    _, url, _ = published
    lib = sk.subscribe(sub, url, auth=("vcsp", PASSWORD), on_demand=True)
    sk.wait_synced(sub, sub_srv, lib)
    got = sk.items(sub, lib)
    iso = got["disk.iso"]
    assert iso["cached"] is False and iso["size"] == len(ISO)
    files = sub.item_files(iso["id"])
    assert files == {"disk.iso": {"name": "disk.iso", "cached": False, "size": len(ISO), "version": "1"}}
    found = sub.post(sk.ITEM, params={"action": "find"}, json={"library_id": lib, "cached": False})
    assert sorted(found.json()) == sorted(i["id"] for i in got.values())
    r = sub.post(f"{sk.SUB_ITEM}/{iso['id']}", params={"action": "sync"}, json={"force_sync_content": True})
    assert r.status_code == 204, r.text
    sk.wait_for(lambda: sub.get(f"{sk.ITEM}/{iso['id']}").json()["cached"], what="the item's content", srv=sub_srv)
    assert sub.download(iso["id"], "disk.iso") == ISO
    assert sk.items(sub, lib)["vm"]["cached"] is False, "only the item asked for"

    blobs = len(sub_srv.blob_ids())
    r = sub.post(f"{sk.SUB_ITEM}/{iso['id']}", params={"action": "evict"})
    assert r.status_code == 204, r.text
    evicted = sub.get(f"{sk.ITEM}/{iso['id']}").json()
    assert evicted["cached"] is False and sub.item_files(iso["id"])["disk.iso"]["cached"] is False
    assert len(sub_srv.blob_ids()) < blobs, "the bytes are gone"

    r = sub.post(f"{sk.SUB_ITEM}/{got['vm']['id']}", params={"action": "sync"}, json={"force_sync_content": True})
    assert r.status_code == 204, r.text
    sk.wait_for(lambda: sub.get(f"{sk.ITEM}/{got['vm']['id']}").json()["cached"], what="the OVF", srv=sub_srv)
    r = sub.post(f"{sk.SUB}/{lib}", params={"action": "evict"})
    assert r.status_code == 204, r.text
    assert not any(i["cached"] for i in sk.items(sub, lib).values())


def test_evict_needs_an_on_demand_library(
    sub: Api, sub_srv: ServerProcess, published: tuple[str, str, dict[str, str]]
) -> None:
    lib = sk.subscribe(sub, published[1], auth=("vcsp", PASSWORD))
    sk.wait_synced(sub, sub_srv, lib)
    assert_error(sub.post(f"{sk.SUB}/{lib}", params={"action": "evict"}), 400, "NOT_ALLOWED_IN_CURRENT_STATE", "demand")
    item = sk.items(sub, lib)["disk.iso"]["id"]
    r = sub.post(f"{sk.SUB_ITEM}/{item}", params={"action": "evict"})
    assert_error(r, 400, "INVALID_ELEMENT_CONFIGURATION", "on demand")
    assert sub.get(f"{sk.ITEM}/{item}").json()["cached"] is True


def test_items_of_a_subscribed_library_are_read_only(
    sub: Api, sub_srv: ServerProcess, published: tuple[str, str, dict[str, str]]
) -> None:
    lib = sk.subscribe(sub, published[1], auth=("vcsp", PASSWORD))
    sk.wait_synced(sub, sub_srv, lib)
    item = sk.items(sub, lib)["disk.iso"]
    before = sub.get(f"{sk.ITEM}/{item['id']}").json()
    calls = [
        sub.post(sk.ITEM, json={"library_id": lib, "name": "mine"}),
        sub.patch(f"{sk.ITEM}/{item['id']}", json={"name": "renamed"}),
        sub.delete(f"{sk.ITEM}/{item['id']}"),
        sub.post("/api/content/library/item/update-session", json={"library_item_id": item["id"]}),
        sub.post(f"{sk.ITEM}/{sub.create_item()}", params={"action": "copy"}, json={"library_id": lib}),
    ]
    for r in calls:
        assert_error(r, 400, "INVALID_ELEMENT_TYPE", "subscribed")
    assert sub.get(f"{sk.ITEM}/{item['id']}").json() == before
    assert set(sk.items(sub, lib)) == {"disk.iso", "vm"}
    # A subscribed library is not a local one, and the other way round.
    assert_error(sub.get(f"{sk.LL}/{lib}"), 400, "INVALID_ELEMENT_TYPE", lib)
    assert_error(sub.get(f"{sk.SUB}/{sub.create_library()}"), 400, "INVALID_ELEMENT_TYPE", "not a subscribed")
    assert_error(sub.get(f"{sk.SUB}/no-such-library"), 404, "NOT_FOUND", "no-such-library")
    local_item = sub.create_item()
    r = sub.post(f"{sk.SUB_ITEM}/{local_item}", params={"action": "sync"}, json={"force_sync_content": True})
    assert_error(r, 400, "INVALID_ELEMENT_TYPE", "not a member of a subscribed library")


@pytest.mark.parametrize(
    ("change", "status", "error_type", "words"),
    [
        ({"subscription_info": None}, 400, "INVALID_ARGUMENT", ["subscription_info is required"]),
        ({"name": ""}, 400, "INVALID_ARGUMENT", ["name"]),
        ({"type": "LOCAL"}, 400, "INVALID_ARGUMENT", ["LOCAL"]),
        ({"storage_backings": sk.BACKING * 2}, 400, "UNSUPPORTED", ["one storage backing"]),
        ({"publish_info": {"published": True}}, 400, "INVALID_ARGUMENT", ["publish_info"]),
        ({"subscription_info": {"authentication_method": "NONE"}}, 400, "INVALID_ARGUMENT", ["subscription_url"]),
        ({"subscription_info": {"subscription_url": "http://x/lib.json"}}, 400, "INVALID_ARGUMENT", ["authentication"]),
        (
            {"subscription_info": {"authentication_method": "BASIC", "subscription_url": "http://x/lib.json"}},
            400,
            "INVALID_ARGUMENT",
            ["password"],
        ),
        (
            {"subscription_info": {"authentication_method": "NONE", "subscription_url": "ftp://x/lib.json"}},
            400,
            "INVALID_ARGUMENT",
            ["http"],
        ),
    ],
)
def test_create_refuses_a_bad_spec(
    sub: Api, change: dict[str, Any], status: int, error_type: str, words: list[str]
) -> None:
    """Refused before the publisher is read (the URL given otherwise is of nothing that listens)."""
    spec = {
        "name": "bad",
        "type": "SUBSCRIBED",
        "storage_backings": sk.BACKING,
        "subscription_info": sk.subscription("http://127.0.0.1:9/lib.json"),
    }
    spec.update(change)
    spec = {k: v for k, v in spec.items() if v is not None}
    before = sub.get(sk.SUB).json()
    assert_error(sub.post(sk.SUB, json=spec), status, error_type, *words)
    assert sub.get(sk.SUB).json() == before


def test_create_refuses_a_publisher_it_cannot_read(sub: Api, pub: Api) -> None:
    source, url = sk.publish(pub, password=PASSWORD)
    before = sub.get(sk.SUB).json()
    r = sk.subscribe_raw(sub, url, auth=("vcsp", "wrong"))
    assert_error(r, 500, "RESOURCE_INACCESSIBLE", "INVALID_CREDENTIALS", url)
    r = sk.subscribe_raw(sub, url.replace(source, "00000000-0000-0000-0000-000000000000"))
    assert_error(r, 500, "RESOURCE_INACCESSIBLE", "RESOURCE_NOT_FOUND")
    assert sub.get(sk.SUB).json() == before


def test_probe_reports_what_would_go_wrong(sub: Api, pub: Api) -> None:
    _, url = sk.publish(pub, password=PASSWORD)

    def probe(info: dict[str, Any]) -> dict[str, Any]:
        r = sub.post(sk.SUB, params={"action": "probe"}, json={"subscription_info": info})
        assert r.status_code == 200, r.text
        return dict(r.json())

    assert probe(sk.subscription(url, auth=("vcsp", PASSWORD))) == {"status": "SUCCESS", "error_messages": []}
    wrong = probe(sk.subscription(url, auth=("vcsp", "nope")))
    assert wrong["status"] == "INVALID_CREDENTIALS" and wrong["error_messages"][0]["default_message"]
    assert probe(sk.subscription(url))["status"] == "INVALID_CREDENTIALS"
    assert probe(sk.subscription("not a url"))["status"] == "INVALID_URL"
    missing = sk.subscription(url.replace("lib.json", "nothing.json"), auth=("vcsp", PASSWORD))
    assert probe(missing)["status"] == "RESOURCE_NOT_FOUND"


def test_update_delete_and_a_new_subscription_url(pub: Api, sub: Api, sub_srv: ServerProcess) -> None:
    first, url1 = sk.publish(pub)
    second, url2 = sk.publish(pub)
    pub.put_files(pub.create_item(first, "one"), {"one.txt": b"1"})
    pub.put_files(pub.create_item(second, "two"), {"two.txt": b"2"})
    lib = sk.subscribe(sub, url1)
    model = sk.wait_synced(sub, sub_srv, lib)
    assert set(sk.items(sub, lib)) == {"one"}

    stale = sub.patch(f"{sk.SUB}/{lib}", json={"description": "x", "version": "999"})
    assert_error(stale, 409, "CONCURRENT_CHANGE", "999")
    r = sub.patch(
        f"{sk.SUB}/{lib}", json={"description": "mirror of two", "subscription_info": {"subscription_url": url2}}
    )
    assert r.status_code == 204, r.text

    def mirrored() -> dict[str, Any] | None:
        got = sk.items(sub, lib)
        return sk.library(sub, lib) if set(got) == {"two"} and got["two"]["cached"] else None

    model = sk.wait_for(mirrored, what="the new publisher's items", srv=sub_srv)
    assert model["description"] == "mirror of two" and model["subscription_info"]["subscription_url"] == url2
    assert sub.download(sk.items(sub, lib)["two"]["id"], "two.txt") == b"2"
    bad = sub.patch(f"{sk.SUB}/{lib}", json={"subscription_info": {"subscription_url": url2 + "x"}})
    assert_error(bad, 500, "RESOURCE_INACCESSIBLE")
    assert sk.library(sub, lib)["subscription_info"]["subscription_url"] == url2

    item = sk.items(sub, lib)["two"]["id"]
    assert sub.delete(f"{sk.SUB}/{lib}").status_code == 204
    assert sub.get(f"{sk.SUB}/{lib}").status_code == 404
    assert sub.get(f"{sk.ITEM}/{item}").status_code == 404
    sk.wait_for(lambda: not sub_srv.blob_ids(), what="the library's blobs to go", srv=sub_srv)


def test_the_official_sdk_drives_a_subscription(
    make_server: Callable[..., ServerProcess], published: tuple[str, str, dict[str, str]]
) -> None:
    """The vSphere Automation SDK for Python over JSON-RPC (https, as it always talks): probe, create, list, sync,
    get, item sync with force_sync_content, item evict, delete."""
    from com.vmware.content.library_client import StorageBacking, SubscriptionInfo
    from com.vmware.content_client import LibraryModel, SubscribedLibrary
    from test_jsonrpc_sdk import connect

    client = connect(make_server(http=False))
    info = SubscriptionInfo(
        authentication_method=SubscriptionInfo.AuthenticationMethod.BASIC,
        user_name="vcsp",
        password=PASSWORD,
        subscription_url=published[1],
        on_demand=True,
        automatic_sync_enabled=False,
    )
    assert client.content.SubscribedLibrary.probe(info).status == SubscribedLibrary.ProbeResult.Status.SUCCESS
    lib = client.content.SubscribedLibrary.create(
        LibraryModel(
            name="sdk-sub",
            type=LibraryModel.LibraryType.SUBSCRIBED,
            storage_backings=[StorageBacking(type=StorageBacking.Type.OTHER, storage_uri="file:///tmp/sdk-sub")],
            subscription_info=info,
        )
    )
    assert lib in client.content.SubscribedLibrary.list()
    client.content.SubscribedLibrary.sync(lib)
    sk.wait_for(lambda: client.content.SubscribedLibrary.get(lib).last_sync_time, what="a sync")
    model = client.content.SubscribedLibrary.get(lib)
    assert model.subscription_info.on_demand is True and model.subscription_info.password is None
    items = client.content.library.Item.list(lib)
    assert len(items) == 2 and not any(client.content.library.Item.get(i).cached for i in items)
    client.content.library.SubscribedItem.sync(items[0], True)
    sk.wait_for(lambda: client.content.library.Item.get(items[0]).cached, what="the item's content")
    client.content.library.SubscribedItem.evict(items[0])
    assert client.content.library.Item.get(items[0]).cached is False
    client.content.SubscribedLibrary.delete(lib)
    assert lib not in client.content.SubscribedLibrary.list()


def test_a_static_tree_served_by_a_plain_file_server(sub: Api, sub_srv: ServerProcess, tmp_path: Path) -> None:
    """tools/make_vcsp.py's tree under Python's http.server (no Range, no authentication): subscribed to, synced,
    changed, re-generated, synced again."""
    root = vt.build_tree(tmp_path / "tree", {"ubuntu": {"ubuntu.iso": ISO}, "vm": dict(PKG.files)})
    with vt.StaticServer(root) as web:
        lib = sk.subscribe(sub, web.url)
        sk.wait_synced(sub, sub_srv, lib)
        got = sk.items(sub, lib)
        assert set(got) == {"ubuntu", "vm"} and got["ubuntu"]["type"] == "iso" and got["vm"]["type"] == "ovf"
        assert sub.download(got["ubuntu"]["id"], "ubuntu.iso") == ISO
        assert sub.download(got["vm"]["id"], "vm-disk1.vmdk") == PKG.files["vm-disk1.vmdk"]
        new_iso = disk_bytes("iso-2", 70_000)
        (root / "ubuntu" / "ubuntu.iso").write_bytes(new_iso)
        shutil.rmtree(root / "vm")
        vt.write_items(root, {"notes": {"readme.txt": b"static"}})
        vt.make_vcsp(root)
        sk.sync(sub, sub_srv, lib)
        after = sk.items(sub, lib)
        assert set(after) == {"ubuntu", "notes"}
        assert after["ubuntu"]["id"] == got["ubuntu"]["id"]
        assert sub.download(after["ubuntu"]["id"], "ubuntu.iso") == new_iso
        assert sub.download(after["notes"]["id"], "readme.txt") == b"static"


def test_a_download_of_an_uncached_item_fetches_its_content(
    sub: Api, sub_srv: ServerProcess, published: tuple[str, str, dict[str, str]]
) -> None:
    """On demand: prepare asks for the item's content and is PREPARING until it has arrived, then PREPARED."""
    lib = sk.subscribe(sub, published[1], auth=("vcsp", PASSWORD), on_demand=True)
    sk.wait_synced(sub, sub_srv, lib)
    item = sk.items(sub, lib)["disk.iso"]["id"]
    ds_path = "/api/content/library/item/download-session"
    r = sub.post(ds_path, json={"library_item_id": item})
    assert r.status_code == 201, r.text
    ds = r.json()
    listed = sub.get(f"{ds_path}/{ds}/file").json()
    assert listed == [{"name": "disk.iso", "size": len(ISO), "bytes_transferred": 0, "status": "UNPREPARED"}]
    r = sub.post(f"{ds_path}/{ds}/file", params={"action": "prepare"}, json={"file_name": "disk.iso"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] in ("PREPARING", "PREPARED")

    def prepared() -> dict[str, Any] | None:
        got = sub.get(f"{ds_path}/{ds}/file", params={"file_name": "disk.iso"})
        assert got.status_code == 200, got.text
        return got.json() if got.json()["status"] == "PREPARED" else None

    info = sk.wait_for(prepared, what="the file to be prepared", srv=sub_srv)
    assert info["size"] == len(ISO) and info["checksum_info"]["checksum"]
    data = sub.http.get(info["download_endpoint"]["uri"], timeout=60)
    assert data.status_code == 200 and data.content == ISO
    assert sub.get(f"{sk.ITEM}/{item}").json()["cached"] is True
