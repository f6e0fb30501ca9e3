"""govc 0.24.2, unmodified, with subscribed libraries (issue 12): `library.create -sub URL` (with
`-sub-autosync=false`, `-sub-ondemand`, `-sub-password`, `-pub=false`) against a published library of another
contentlib server, `library.sync` of a library and of an item, `library.ls` / `library.info` of what came, and
`library.export` of a synced item giving the publisher's bytes; `library.rm` of a subscribed library.

govc 0.24.2 has no library.evict or library.probe (nor library.update): those operations are driven over /api by
test_subscriber_faults.py. govc talks the legacy /rest dialect: POST /rest/com/vmware/content/subscribed-library,
POST .../subscribed-library/id:{id}?~action=sync, POST /rest/com/vmware/content/library/subscribed-item/id:{id}
?~action=sync, and the library and item getters it uses for everything else.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ovfkit
import pytest
import requests
import subkit
from conftest import ADMIN_PASSWORD, ADMIN_USER, Api, ServerProcess
from test_govc import Govc, govc_bin  # noqa: F401 - fixture

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

ISO = os.urandom(3 * 1024 * 1024 + 17)
PKG = ovfkit.build_package("tiny", disks={"tiny-disk1.vmdk": ovfkit.disk_bytes("govc-sub", 2 * 1024 * 1024)})


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def publisher(server: ServerProcess) -> tuple[Api, str, str, dict[str, str]]:
    """A published library of the shared server with an ISO item and an OVF item: the api, its id, its publish_url
    and the items' ids by name."""
    api = Api(server.base)
    lib, url = subkit.publish(api)
    ids = {}
    ids["disk"] = api.create_item(lib, "disk", type="iso")
    api.put_files(ids["disk"], {"disk.iso": ISO})
    ids["tiny"] = api.create_item(lib, "tiny", type="ovf")
    api.put_files(ids["tiny"], PKG.files)
    return api, lib, url, ids


@pytest.fixture(params=["http", "https"])
def subscriber(request: pytest.FixtureRequest, make_server: Callable[..., ServerProcess]) -> ServerProcess:
    return make_server(http=request.param == "http")


def library_id(api: Api, name: str) -> str:
    r = api.post("/api/content/library?action=find", json={"name": name})
    assert r.status_code == 200, r.text
    (lid,) = r.json()
    return str(lid)


def test_create_sync_ls_info_export(
    govc_bin: Path,  # noqa: F811
    publisher: tuple[Api, str, str, dict[str, str]],
    subscriber: ServerProcess,
    tmp_path: Path,
) -> None:
    pub_api, pub_lib, url, pub_ids = publisher
    govc = Govc(govc_bin, subscriber.base, tmp_path / "govmomi")
    api = Api(subscriber.base)
    name = f"sub-{uuid.uuid4().hex[:8]}"
    lid = govc.run("library.create", "-sub", url, "-sub-autosync=false", "-pub=false", name).stdout.strip()
    uuid.UUID(lid)
    model = subkit.library(api, lid)
    assert model["type"] == "SUBSCRIBED" and model["name"] == name, model
    info = model["subscription_info"]
    assert info["subscription_url"] == url and info["authentication_method"] == "NONE", info
    assert info["automatic_sync_enabled"] is False and info["on_demand"] is False, info
    assert "publish_info" not in model or not model["publish_info"].get("published"), model
    subkit.wait_synced(api, subscriber, lid)

    assert sorted(govc.lines("library.ls", f"/{name}/*")) == [f"/{name}/disk", f"/{name}/tiny"]
    assert f"/{name}" in govc.lines("library.ls")
    linfo = govc.fields("library.info", "-l", name)
    assert linfo["Name"] == name and linfo["ID"] == lid and linfo["Items"] == "2", linfo
    assert (linfo["AutoSync"], linfo["URL"], linfo["Auth"], linfo["Download"]) == ("false", url, "NONE", "All"), linfo
    (as_json,) = json.loads(govc.run("library.info", "-json", name).stdout)
    assert as_json["type"] == "SUBSCRIBED" and "last_sync_time" in as_json, as_json
    iinfo = govc.fields("library.info", f"/{name}/disk")
    assert iinfo["Name"] == "disk" and iinfo["Type"] == "iso" and iinfo["Size"] == "3.0MB", iinfo
    items = subkit.items(api, lid)
    assert iinfo["ID"] == items["disk"]["id"]
    assert items["disk"]["source_id"] == pub_ids["disk"] and items["disk"]["cached"] is True, items["disk"]

    out = tmp_path / "out"
    out.mkdir()
    govc.run("library.export", f"/{name}/disk", str(out))
    govc.run("library.export", f"/{name}/tiny", str(out))
    assert sha256((out / "disk.iso").read_bytes()) == sha256(ISO)
    for file_name, data in PKG.kept().items():
        assert sha256((out / file_name).read_bytes()) == sha256(data), file_name

    # the publisher gets a new item and changes one: library.sync brings both
    extra = os.urandom(512 * 1024)
    new = pub_api.create_item(pub_lib, "extra")
    pub_api.put_files(new, {"extra.bin": extra})
    iso2 = os.urandom(1024 * 1024)
    pub_api.put_files(pub_ids["disk"], {"disk.iso": iso2})
    before = subkit.library(api, lid)["last_sync_time"]
    r = govc.run("library.sync", name)
    assert r.stdout.startswith(f"Syncing {name}"), r.stdout
    subkit.wait_synced(api, subscriber, lid, before)
    assert sorted(govc.lines("library.ls", f"/{name}/*")) == [f"/{name}/disk", f"/{name}/extra", f"/{name}/tiny"]
    out2 = tmp_path / "out2"
    out2.mkdir()
    govc.run("library.export", f"/{name}/extra", str(out2))
    govc.run("library.export", f"/{name}/disk", str(out2))
    assert (out2 / "extra.bin").read_bytes() == extra
    assert sha256((out2 / "disk.iso").read_bytes()) == sha256(iso2)

    # a subscribed library is read-only: govc's import into it is refused
    src = tmp_path / "local.iso"
    src.write_bytes(b"local bytes")
    r = govc.run("library.import", name, str(src), ok=False)
    assert r.returncode != 0, r.stdout
    assert sorted(subkit.items(api, lid)) == ["disk", "extra", "tiny"]

    govc.run("library.rm", name)
    assert f"/{name}" not in govc.lines("library.ls")
    assert api.get(f"{subkit.SUB}/{lid}").status_code == 404


def test_on_demand_and_item_sync(
    govc_bin: Path,  # noqa: F811
    publisher: tuple[Api, str, str, dict[str, str]],
    subscriber: ServerProcess,
    tmp_path: Path,
) -> None:
    _, _, url, _ = publisher
    govc = Govc(govc_bin, subscriber.base, tmp_path / "govmomi")
    api = Api(subscriber.base)
    name = f"od-{uuid.uuid4().hex[:8]}"
    lid = govc.run("library.create", "-sub", url, "-sub-ondemand", name).stdout.strip()
    info = subkit.library(api, lid)["subscription_info"]
    assert info["on_demand"] is True and info["automatic_sync_enabled"] is True, info
    subkit.wait_synced(api, subscriber, lid)
    assert sorted(govc.lines("library.ls", f"/{name}/*")) == [f"/{name}/disk", f"/{name}/tiny"]
    items = subkit.items(api, lid)
    assert not items["disk"]["cached"] and not items["tiny"]["cached"], items
    iinfo = govc.fields("library.info", f"/{name}/disk")
    assert iinfo["Size"] == "3.0MB", iinfo  # what the publisher said of the files
    linfo = govc.fields("library.info", name)
    assert (linfo["AutoSync"], linfo["Download"]) == ("true", "On Demand"), linfo

    # govc's item sync asks for no content (force_sync_content false): on demand, the item stays uncached
    r = govc.run("library.sync", f"{name}/disk")
    assert r.stdout.startswith(f"Syncing {name}/disk"), r.stdout
    sync_state = subkit.wait_for(
        lambda: (
            (item := api.get(f"{subkit.ITEM}/{items['disk']['id']}").json()).get("last_sync_time")
            != items["disk"].get("last_sync_time")
            and item
        ),
        what="the item sync",
        srv=subscriber,
    )
    assert sync_state["cached"] is False, sync_state
    # its content, asked for over /api, then exported with govc
    r = api.post(f"{subkit.SUB_ITEM}/{items['disk']['id']}?action=sync", json={"force_sync_content": True})
    assert r.status_code == 204, r.text
    subkit.wait_for(
        lambda: api.get(f"{subkit.ITEM}/{items['disk']['id']}").json()["cached"], what="the content", srv=subscriber
    )
    out = tmp_path / "out"
    out.mkdir()
    govc.run("library.export", f"/{name}/disk", str(out))
    assert sha256((out / "disk.iso").read_bytes()) == sha256(ISO)


def test_basic_auth_subscription(
    govc_bin: Path,  # noqa: F811
    server: ServerProcess,
    subscriber: ServerProcess,
    tmp_path: Path,
) -> None:
    pub_api = Api(server.base)
    lib, url = subkit.publish(pub_api, password="govc-Pa55")
    item = pub_api.create_item(lib, "secret")
    data = os.urandom(700 * 1024)
    pub_api.put_files(item, {"secret.bin": data})
    govc = Govc(govc_bin, subscriber.base, tmp_path / "govmomi")
    api = Api(subscriber.base)

    name = f"basic-{uuid.uuid4().hex[:8]}"
    r = govc.run("library.create", "-sub", url, "-sub-password", "wrong", name, ok=False)
    assert r.returncode != 0 and "INVALID_CREDENTIALS" in r.stderr, r.stderr
    assert f"/{name}" not in govc.lines("library.ls")

    lid = govc.run("library.create", "-sub", url, "-sub-username", "vcsp", "-sub-password", "govc-Pa55", name)
    lid_text = lid.stdout.strip()
    info = subkit.library(api, lid_text)["subscription_info"]
    assert info["authentication_method"] == "BASIC" and info["user_name"] == "vcsp" and "password" not in info, info
    subkit.wait_synced(api, subscriber, lid_text)
    out = tmp_path / "out"
    out.mkdir()
    govc.run("library.export", f"/{name}/secret", str(out))
    assert (out / "secret.bin").read_bytes() == data
    items = subkit.items(api, lid_text)

    # the publisher changes its password: govc's library.sync is refused with the reason, the item stays
    r = pub_api.patch(
        f"{subkit.LL}/{lib}", json={"publish_info": {"password": "other-Pa55", "current_password": "govc-Pa55"}}
    )
    assert r.status_code == 204, r.text
    r = govc.run("library.sync", name, ok=False)
    assert r.returncode != 0 and "INVALID_CREDENTIALS" in r.stderr, (r.stdout, r.stderr)
    assert subkit.items(api, lid_text) == items
    out2 = tmp_path / "out2"
    out2.mkdir()
    govc.run("library.export", f"/{name}/secret", str(out2))
    assert (out2 / "secret.bin").read_bytes() == data


def test_rest_dialect_probe_and_evict(
    publisher: tuple[Api, str, str, dict[str, str]], subscriber: ServerProcess, tmp_path: Path
) -> None:
    """What govc 0.24.2 has no command for, in the dialect it speaks: subscribed_library probe and evict,
    subscribed_item evict, and a create refused (RESOURCE_INACCESSIBLE), on /rest."""
    _, _, url, _ = publisher
    rest = requests.Session()
    rest.verify = False
    rest.trust_env = False
    r = rest.post(
        subscriber.base + "/rest/com/vmware/cis/session",
        auth=(ADMIN_USER, ADMIN_PASSWORD),
        headers={"vmware-use-header-authn": "true"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    rest.headers["vmware-api-session-id"] = r.json()["value"]
    sub_path = subscriber.base + "/rest/com/vmware/content/subscribed-library"

    def probe(info: dict[str, Any]) -> dict[str, Any]:
        r = rest.post(sub_path, params={"~action": "probe"}, json={"subscription_info": info}, timeout=60)
        assert r.status_code == 200, r.text
        return dict(r.json()["value"])

    assert probe(subkit.subscription(url)) == {"status": "SUCCESS", "error_messages": []}
    missing = probe(subkit.subscription(url.replace("lib.json", "nope.json")))
    assert missing["status"] == "RESOURCE_NOT_FOUND" and missing["error_messages"], missing
    assert probe(subkit.subscription("ftp://127.0.0.1/lib.json"))["status"] == "INVALID_URL"

    spec = {
        "name": f"rest-{uuid.uuid4().hex[:8]}",
        "type": "SUBSCRIBED",
        "storage_backings": subkit.BACKING,
        "subscription_info": subkit.subscription(url.replace("lib.json", "nope.json")),
    }
    r = rest.post(sub_path, json={"create_spec": spec}, timeout=60)
    body = r.json()
    assert body["type"] == "com.vmware.vapi.std.errors.resource_inaccessible", (r.status_code, body)
    assert "RESOURCE_NOT_FOUND" in body["value"]["messages"][0]["default_message"], body

    spec["subscription_info"] = subkit.subscription(url, on_demand=True)
    r = rest.post(sub_path, json={"create_spec": spec}, timeout=60)
    assert r.status_code == 200, r.text
    lid = r.json()["value"]
    api = Api(subscriber.base)
    subkit.wait_synced(api, subscriber, lid)
    items = subkit.items(api, lid)
    disk = items["disk"]["id"]
    r = api.post(f"{subkit.SUB_ITEM}/{disk}?action=sync", json={"force_sync_content": True})
    assert r.status_code == 204, r.text
    subkit.wait_for(lambda: api.get(f"{subkit.ITEM}/{disk}").json()["cached"], what="the content", srv=subscriber)
    assert api.item_files(disk)["disk.iso"]["cached"] is True

    item_path = subscriber.base + f"/rest/com/vmware/content/library/subscribed-item/id:{disk}"
    r = rest.post(item_path, params={"~action": "evict"}, timeout=60)
    assert r.status_code == 200, r.text
    assert api.get(f"{subkit.ITEM}/{disk}").json()["cached"] is False
    assert api.item_files(disk)["disk.iso"]["cached"] is False
    r = rest.post(item_path, params={"~action": "sync"}, json={"force_sync_content": True}, timeout=60)
    assert r.status_code == 200, r.text
    subkit.wait_for(lambda: api.get(f"{subkit.ITEM}/{disk}").json()["cached"], what="the content", srv=subscriber)
    r = rest.post(f"{sub_path}/id:{lid}", params={"~action": "evict"}, timeout=60)
    assert r.status_code == 200, r.text
    assert not any(i["cached"] for i in subkit.items(api, lid).values())


def test_subscriber_ls_and_info_show_a_published_librarys_subscriptions(
    govc_bin: Path,  # noqa: F811
    subscriber: ServerProcess,
    tmp_path: Path,
) -> None:
    """`library.subscriber.ls` and `.info` (library.subscriptions over /rest). `library.subscriber.rm` of 0.24.2 looks
    its one argument up as the library as well as the subscription (govc/library/subscriber/rm.go), so it cannot
    work against any server; `.create` needs the VM folder and network of an inventory this server does not have."""
    api = Api(subscriber.base)
    name = f"pub-{uuid.uuid4().hex[:8]}"
    lib = api.create_library(name, publish_info={"published": True, "authentication_method": "NONE"})
    new = {"name": f"pushed-{uuid.uuid4().hex[:6]}", "storage_backings": subkit.BACKING}
    spec = {"subscribed_library": {"target": "CREATE_NEW", "location": "LOCAL", "new_subscribed_library": new}}
    r = api.post(f"/api/content/library/{lib}/subscriptions", json=spec)
    assert r.status_code == 201, r.text
    sid = r.json()
    target = api.get(f"/api/content/library/{lib}/subscriptions/{sid}").json()["subscribed_library"]
    govc = Govc(govc_bin, subscriber.base, tmp_path / "govmomi")
    [row] = govc.lines("library.subscriber.ls", name)[1:]
    assert row.split()[:3] == [sid, new["name"], target], row
    out = govc.run("library.subscriber.info", name, sid).stdout
    assert f"Name:         {new['name']}" in out and f"ID:         {target}" in out and "Location:   LOCAL" in out
