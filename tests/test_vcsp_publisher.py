"""The VCSP publisher (issue 12 point 1): a published local library serves the VMware Content Subscription
Protocol feed that a vCenter subscribed library synchronizes from, at its `publish_info.publish_url`.

Contract: the format of VMware's make_vcsp_2018.py / make_vcsp_2022.py (lamw/vmware-scripts) and of vCloud
Director's "Content Subscription Endpoint Specification" (docs/vcsp.md has both, quoted): lib.json (`vcspVersion`
"2", `version`, `contentVersion`, `name`, `id` urn:uuid:, `created`, `capabilities` httpGet in and out,
`itemsHref`), items.json (`items`, each as its item.json), item.json (`created`, `description`, `version`, `files`,
`id`, `name`, `properties`, `selfHref`, `type` vcsp.ovf / vcsp.iso / vcsp.other), files (`name`, `size`, `etag`
numeric, `generationNum`, `hrefs` relative to lib.json). Versions only grow, so that subscribers see every change.
PublishInfo (types.json): `publish_url` a URI, present in get while published; `user_name` "vcsp"; `password` and
`current_password` write-only; BASIC: the feed wants user vcsp and the password (401 with a Basic challenge
otherwise); changing the password, turning authentication off or unpublishing needs `current_password`
(INVALID_ARGUMENT when missing or wrong, `LocalLibrary.update`). Not published, or unknown: 404.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from com.vmware.content.library_client import PublishInfo
from com.vmware.content_client import LibraryModel
from conftest import ADMIN_PASSWORD, ADMIN_USER, Api, ServerProcess, assert_error, pg_run
from ovfkit import build_package, disk_bytes
from test_jsonrpc_sdk import connect
from vcsptree import Feed
from vcsptree import http_session as http

pytestmark = [
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

LL = "/api/content/local-library"
ITEM = "/api/content/library/item"
VCSP = ("vcsp", "feed-Pa55!")
BASIC = {"published": True, "authentication_method": "BASIC", "password": VCSP[1]}
OPEN = {"published": True, "authentication_method": "NONE"}
LIB_KEYS = {"vcspVersion", "version", "contentVersion", "name", "id", "created", "capabilities", "itemsHref"}
ITEM_KEYS = {"created", "description", "version", "contentVersion", "files", "id", "name", "properties", "selfHref"}
FILE_KEYS = {"name", "size", "etag", "generationNum", "hrefs"}
ISO8601 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
LONG_MAX = 2**63 - 1


def library_info(api: Api, lib: str) -> dict[str, Any]:
    r = api.get(f"{LL}/{lib}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def feed_of(api: Api, lib: str, auth: tuple[str, str] | None = None) -> Feed:
    return Feed(library_info(api, lib)["publish_info"]["publish_url"], auth)


def check_lib_json(lib: dict[str, Any], library_id: str, name: str) -> None:
    assert set(lib) == LIB_KEYS, lib
    assert lib["vcspVersion"] == "2"
    assert lib["id"] == f"urn:uuid:{library_id}" and lib["name"] == name
    assert lib["capabilities"] == {"transferIn": ["httpGet"], "transferOut": ["httpGet"]}
    assert lib["itemsHref"] == "items.json"
    assert ISO8601.fullmatch(lib["created"]), lib
    for key in ("version", "contentVersion"):
        assert isinstance(lib[key], str) and 0 < int(lib[key]) <= LONG_MAX


def check_item(item: dict[str, Any], item_id: str, kind: str) -> None:
    assert set(item) == ITEM_KEYS | {"type"}, item
    assert item["id"] == f"urn:uuid:{item_id}" and item["type"] == kind
    assert item["selfHref"] == f"{item_id}/item.json" and item["properties"] == {}
    assert ISO8601.fullmatch(item["created"]), item
    for key in ("version", "contentVersion"):
        assert isinstance(item[key], str) and 0 < int(item[key]) <= LONG_MAX
    for f in item["files"]:
        assert set(f) == FILE_KEYS, f
        # vCenter reads the etag as a long: digits only
        assert isinstance(f["etag"], str) and f["etag"].isdigit() and int(f["etag"]) <= LONG_MAX, f
        assert type(f["generationNum"]) is int and 0 < f["generationNum"] <= LONG_MAX, f
        assert type(f["size"]) is int and len(f["hrefs"]) == 1 and isinstance(f["hrefs"][0], str), f


def check_bytes(feed: Feed, f: dict[str, Any], data: bytes) -> None:
    """The file's href serves exactly `data`: whole, HEAD, and ranges (open, closed, suffix, past the end)."""
    href = f["hrefs"][0]
    assert f["size"] == len(data)
    r = feed.get(href)
    assert r.status_code == 200 and r.content == data, (r.status_code, r.text[:200])
    head = feed.http.head(urljoin(feed.url, href), auth=feed.auth, timeout=30)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(data) and head.content == b""
    a, b = len(data) // 3, 2 * len(data) // 3
    for rng, want in [(f"bytes={a}-{b}", data[a : b + 1]), (f"bytes={b}-", data[b:]), ("bytes=-5", data[-5:])]:
        r = feed.get(href, headers={"Range": rng})
        assert r.status_code == 206 and r.content == want, (rng, r.status_code)
        assert r.headers["Content-Range"].endswith(f"/{len(data)}")
    assert feed.get(href, headers={"Range": f"bytes={len(data)}-"}).status_code == 416


@pytest.fixture()
def published(api: Api) -> Iterator[tuple[str, Feed]]:
    lib = api.create_library(publish_info=OPEN)
    yield lib, feed_of(api, lib)


# -- publish_url and publish_info -------------------------------------------------------------------------------------
def test_a_published_library_gets_its_publish_url_and_an_unpublished_one_none(server: ServerProcess, api: Api) -> None:
    lib = api.create_library(publish_info=OPEN)
    info = library_info(api, lib)["publish_info"]
    assert info == {
        "authentication_method": "NONE",
        "published": True,
        "persist_json_enabled": False,
        "user_name": "vcsp",
        "publish_url": f"{server.base}/cls/vcsp/lib/{lib}/lib.json",
    }
    # a given publish_url is not used (the contract: unused for create and update): the server says where it is
    other = api.create_library(publish_info={**OPEN, "publish_url": "https://elsewhere.example/lib.json"})
    assert library_info(api, other)["publish_info"]["publish_url"] == f"{server.base}/cls/vcsp/lib/{other}/lib.json"
    unpublished = api.create_library(publish_info={"published": False, "authentication_method": "NONE"})
    assert "publish_url" not in library_info(api, unpublished)["publish_info"]
    assert "publish_info" not in library_info(api, api.create_library())
    r = api.patch(f"{LL}/{unpublished}", json={"publish_info": {"published": True}})
    assert r.status_code == 204, r.text
    info = library_info(api, unpublished)["publish_info"]
    assert info["publish_url"] == f"{server.base}/cls/vcsp/lib/{unpublished}/lib.json"
    assert info["authentication_method"] == "NONE"  # members not given keep their value
    assert api.patch(f"{LL}/{unpublished}", json={"publish_info": {"published": False}}).status_code == 204
    assert "publish_url" not in library_info(api, unpublished)["publish_info"]


@pytest.mark.parametrize(
    ("publish_info", "words"),
    [
        ({"published": True, "authentication_method": "BASIC"}, ("password", "required")),
        ({"published": True, "authentication_method": "BASIC", "password": ""}, ("password", "empty")),
        ({**OPEN, "user_name": "admin"}, ("user_name", "vcsp")),
        ({**OPEN, "publish_url": "not a uri"}, ("publish_url",)),
    ],
    ids=["basic-without-password", "basic-empty-password", "other-user-name", "publish-url-not-a-uri"],
)
def test_a_publish_info_against_the_rules_is_invalid_argument(api: Api, publish_info: Any, words: Any) -> None:
    name = f"bad-{uuid.uuid4().hex[:8]}"
    r = api.post(LL, json={"name": name, "storage_backings": [{"type": "OTHER", "storage_uri": "file:///x"}],
                           "publish_info": publish_info})  # fmt: skip
    assert_error(r, 400, "INVALID_ARGUMENT", *words)
    assert name not in str(api.get("/api/content/library").json())


def test_the_password_is_never_returned_on_any_dialect(make_server: Callable[..., ServerProcess]) -> None:
    """get on /api, on the legacy /rest and through the official SDK's JSON-RPC: no password, no hash, no member
    named password or current_password, and the SDK decodes publish_url as the URI it is typed."""
    srv = make_server(http=False)
    api = Api(srv.base)
    lib = api.create_library(publish_info=BASIC)
    r = api.patch(f"{LL}/{lib}", json={"publish_info": {"password": "second-Pa55", "current_password": VCSP[1]}})
    assert r.status_code == 204, r.text
    bodies = [api.get(f"{LL}/{lib}").text, api.get(f"/api/content/library/{lib}").text]
    rest = http()
    sid = rest.post(f"{srv.base}/rest/com/vmware/cis/session", auth=(ADMIN_USER, ADMIN_PASSWORD), timeout=30)
    assert sid.status_code == 200, sid.text
    rest.headers["vmware-api-session-id"] = sid.json()["value"]
    for path in (f"/rest/com/vmware/content/local-library/id:{lib}", f"/rest/com/vmware/content/library/id:{lib}"):
        r = rest.get(srv.base + path, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["value"]["publish_info"]["user_name"] == "vcsp"
        bodies.append(r.text)
    for body in bodies:
        assert "password" not in body and VCSP[1] not in body and "second-Pa55" not in body and "argon2" not in body
        assert f"/cls/vcsp/lib/{lib}/lib.json" in body
    client = connect(srv)
    try:
        info = client.content.LocalLibrary.get(lib).publish_info
        assert (info.password, info.current_password, info.user_name) == (None, None, "vcsp")
        assert info.publish_url == f"{srv.base}/cls/vcsp/lib/{lib}/lib.json"
        # the SDK sends the secrets of an update (typed `secret`) as the REST body does
        change = PublishInfo(password="third-Pa55", current_password="second-Pa55")
        client.content.LocalLibrary.update(lib, LibraryModel(publish_info=change))
        assert client.content.LocalLibrary.get(lib).publish_info.password is None
    finally:
        client.session.close()
    feed = feed_of(api, lib, ("vcsp", "third-Pa55"))
    assert feed.get().status_code == 200  # over HTTPS, the feed a vCenter reads
    assert Feed(feed.url, ("vcsp", "second-Pa55")).get().status_code == 401


def test_publish_url_names_the_public_url(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server(args=["--public-url", "https://cl.example.com:8443/"])
    api = Api(srv.base)
    lib = api.create_library(publish_info=OPEN)
    url = library_info(api, lib)["publish_info"]["publish_url"]
    assert url == f"https://cl.example.com:8443/cls/vcsp/lib/{lib}/lib.json"


# -- the feed ---------------------------------------------------------------------------------------------------------
def test_the_feed_of_iso_and_ovf_items_and_their_bytes(api: Api, published: tuple[str, Feed]) -> None:
    lib, feed = published
    name = library_info(api, lib)["name"]
    check_lib_json(feed.json(), lib, name)
    assert feed.json("items.json") == {"items": []}
    iso_bytes = disk_bytes("iso", 200_000)
    iso = api.create_item(lib, name="ubuntu")
    api.put_files(iso, {"ubuntu.iso": iso_bytes})
    pkg = build_package("vm", disks={"vm-disk1.vmdk": disk_bytes("disk1", 70_000), "vm-disk2.vmdk": b"x" * 1000})
    ovf = api.create_item(lib, name="appliance", description="an OVF template")
    api.put_files(ovf, pkg.files)
    other = api.create_item(lib, name="notes")
    api.put_files(other, {"a.txt": b"alpha", "item.json": b'{"not": "the descriptor"}'})
    empty = api.create_item(lib, name="empty")
    check_lib_json(feed.json(), lib, name)
    for href in ("lib.json", "items.json", f"{iso}/item.json"):
        head = feed.http.head(urljoin(feed.url, href), timeout=30)
        assert head.status_code == 200 and head.content == b"", href
        assert int(head.headers["Content-Length"]) == len(feed.get(href).content)
        assert head.headers["Content-Type"].startswith("application/json")

    items = feed.items()
    assert list(items) == ["ubuntu", "appliance", "notes", "empty"]  # in creation order
    check_item(items["ubuntu"], iso, "vcsp.iso")
    (f,) = items["ubuntu"]["files"]
    assert (f["name"], f["hrefs"]) == ("ubuntu.iso", [f"{iso}/ubuntu.iso"])
    check_bytes(feed, f, iso_bytes)

    check_item(items["appliance"], ovf, "vcsp.ovf")
    assert items["appliance"]["description"] == "an OVF template"
    files = {f["name"]: f for f in items["appliance"]["files"]}
    # the descriptor and the disks, as uploaded, and a manifest (the server keeps none) of their SHA-1s
    assert set(files) == {"vm.ovf", "vm-disk1.vmdk", "vm-disk2.vmdk", "vm.mf"}
    for n, data in pkg.kept().items():
        check_bytes(feed, files[n], data)
    manifest = feed.get(files["vm.mf"]["hrefs"][0]).content
    check_bytes(feed, files["vm.mf"], manifest)
    lines = manifest.decode().splitlines()
    assert lines == [f"SHA1({n})= {hashlib.sha1(pkg.files[n]).hexdigest()}" for n in sorted(pkg.kept())]
    assert len({f["etag"] for f in files.values()}) == 1  # one item-level etag (the vCloud Director spec)

    check_item(items["notes"], other, "vcsp.other")
    files = {f["name"]: f for f in items["notes"]["files"]}
    assert files["item.json"]["hrefs"] == [f"{other}/file/item.json"]  # item.json is the item's descriptor
    check_bytes(feed, files["item.json"], b'{"not": "the descriptor"}')
    check_bytes(feed, files["a.txt"], b"alpha")
    assert feed.get(f"{other}/file/a.txt").content == b"alpha"
    check_item(items["empty"], empty, "vcsp.other")
    assert items["empty"]["files"] == []


def test_unknown_items_and_files_are_not_found(api: Api, published: tuple[str, Feed]) -> None:
    lib, feed = published
    item = api.create_item(lib)
    api.put_files(item, {"a.iso": b"a"})
    missing = str(uuid.uuid4())
    hrefs = (f"{missing}/item.json", f"{missing}/a.iso", f"{item}/b.iso", f"{item}/file/b.iso", "nothing.json", "a/b/c")
    for href in hrefs:
        assert_error(feed.get(href), 404, "NOT_FOUND")
    assert feed.get(f"{item}/a.iso").content == b"a"
    other = api.create_library(publish_info=OPEN)  # an item is found only through its own library
    assert_error(feed_of(api, other).get(f"{item}/item.json"), 404, "NOT_FOUND", item)


@pytest.mark.parametrize(
    "publish_info", [None, {"published": False, "authentication_method": "NONE"}], ids=["local", "unpublished"]
)
def test_a_library_that_is_not_published_has_no_feed(server: ServerProcess, api: Api, publish_info: Any) -> None:
    lib = api.create_library(publish_info=publish_info)
    item = api.create_item(lib)
    api.put_files(item, {"a.iso": b"a"})
    for href in ("lib.json", "items.json", f"{item}/item.json", f"{item}/a.iso"):
        r = http().get(f"{server.base}/cls/vcsp/lib/{lib}/{href}", timeout=30)
        assert_error(r, 404, "NOT_FOUND", lib)
    r = http().get(f"{server.base}/cls/vcsp/lib/{uuid.uuid4()}/lib.json", auth=VCSP, timeout=30)
    assert_error(r, 404, "NOT_FOUND")


def test_an_unpublished_library_loses_its_feed_and_a_republished_one_gets_it_back(
    api: Api, published: tuple[str, Feed]
) -> None:
    lib, feed = published
    before = feed.version()
    assert api.patch(f"{LL}/{lib}", json={"publish_info": {"published": False}}).status_code == 204
    assert_error(feed.get(), 404, "NOT_FOUND")
    assert api.patch(f"{LL}/{lib}", json={"publish_info": {"published": True}}).status_code == 204
    assert feed.version() > before


# -- authentication ---------------------------------------------------------------------------------------------------
def test_basic_authentication_wants_the_user_vcsp_and_the_password(api: Api) -> None:
    lib = api.create_library(publish_info=BASIC)
    item = api.create_item(lib)
    api.put_files(item, {"a.iso": b"secret bytes"})
    url = library_info(api, lib)["publish_info"]["publish_url"]
    good = Feed(url, VCSP)

    def refused(r: requests.Response) -> None:
        assert_error(r, 401, "UNAUTHENTICATED")
        assert r.headers["WWW-Authenticate"] == 'Basic realm="vcsp"', r.headers
        assert b"secret bytes" not in r.content
        assert good.get().status_code == 200  # a success clears the failures counted (no slow answers here)

    hrefs = ["lib.json", "items.json", f"{item}/item.json", f"{item}/a.iso", f"{item}/file/a.iso", "nothing"]
    for href in hrefs:
        refused(Feed(url).get(href))
        refused(Feed(url, ("vcsp", "wrong")).get(href))
    for auth in [("admin", VCSP[1]), ("VCSP", VCSP[1]), ("vcsp", ""), ("vcsp", VCSP[1].upper())]:
        refused(Feed(url, auth).get())
    for header in ("Bearer abc", "Basic !!!", "Basic dmNzcA=="):  # not Basic; not base64; no ':'
        refused(Feed(url).get(headers={"Authorization": header}))
    assert good.get(f"{item}/a.iso").content == b"secret bytes"
    assert_error(good.get("nothing"), 404, "NOT_FOUND")
    assert [i["id"] for i in good.items().values()] == [f"urn:uuid:{item}"]
    open_feed = feed_of(api, api.create_library(publish_info=OPEN))
    assert open_feed.get().status_code == 200  # NONE: no credentials needed, any accepted
    assert Feed(open_feed.url, ("anyone", "anything")).get().status_code == 200


def test_wrong_passwords_in_a_row_are_answered_slowly(api: Api) -> None:
    """Like failed logins (tests/test_auth.py): counted per library in the database, so every worker slows down
    the next attempts after three; the right password still gets in and clears the count."""
    lib = api.create_library(publish_info=BASIC)
    url = library_info(api, lib)["publish_info"]["publish_url"]
    took = []
    for _ in range(6):
        start = time.monotonic()
        assert Feed(url, ("vcsp", "guess")).get().status_code == 401
        took.append(time.monotonic() - start)
    assert max(took[:3]) < 1.0 and took[3] >= 0.25 and took[5] >= 1.0, took  # then 0.25 s, 0.5 s, 1 s, 2 s, ...
    assert Feed(url, VCSP).get().status_code == 200
    start = time.monotonic()
    assert Feed(url, ("vcsp", "guess")).get().status_code == 401
    assert time.monotonic() - start < 2.0  # counted from one again (the 7th in a row would wait 4 s)


def test_changing_the_password_needs_the_current_one(api: Api) -> None:
    lib = api.create_library(publish_info=BASIC)
    url = library_info(api, lib)["publish_info"]["publish_url"]

    def update(**publish_info: Any) -> requests.Response:
        return api.patch(f"{LL}/{lib}", json={"publish_info": publish_info})

    assert_error(update(password="new-Pa55"), 400, "INVALID_ARGUMENT", "current_password", "required")
    assert_error(update(password="new-Pa55", current_password="nope"), 400, "INVALID_ARGUMENT", "does not match")
    assert_error(update(authentication_method="NONE"), 400, "INVALID_ARGUMENT", "current_password")
    assert_error(update(published=False), 400, "INVALID_ARGUMENT", "current_password")
    assert_error(update(published=False, current_password="nope"), 400, "INVALID_ARGUMENT", "does not match")
    assert Feed(url, VCSP).get().status_code == 200  # nothing changed
    assert update(published=True).status_code == 204  # nothing guarded: no current password needed
    assert update(password="new-Pa55", current_password=VCSP[1]).status_code == 204
    assert Feed(url, VCSP).get().status_code == 401
    assert Feed(url, ("vcsp", "new-Pa55")).get().status_code == 200
    assert update(authentication_method="NONE", current_password="new-Pa55").status_code == 204
    assert Feed(url).get().status_code == 200
    # back to BASIC: the password kept is used again (no current password is asked while NONE is in force)
    assert update(authentication_method="BASIC").status_code == 204
    assert Feed(url).get().status_code == 401 and Feed(url, ("vcsp", "new-Pa55")).get().status_code == 200
    assert update(published=False, current_password="new-Pa55").status_code == 204
    assert Feed(url, ("vcsp", "new-Pa55")).get().status_code == 404
    opened = api.create_library(publish_info=OPEN)
    r = api.patch(f"{LL}/{opened}", json={"publish_info": {"authentication_method": "BASIC"}})
    assert_error(r, 400, "INVALID_ARGUMENT", "password")
    r = api.patch(f"{LL}/{opened}", json={"publish_info": {"authentication_method": "BASIC", "password": "p-Pa55"}})
    assert r.status_code == 204, r.text
    assert feed_of(api, opened).get().status_code == 401 and feed_of(api, opened, ("vcsp", "p-Pa55")).get().ok


def test_a_changed_publish_password_counts_at_once_in_every_worker(make_server: Callable[..., ServerProcess]) -> None:
    """A verified publish password is remembered per process (argon2 costs tens of milliseconds a request), keyed by
    the stored hash: after a change the old password is refused at once by every worker, though each had just
    accepted it, and the new one accepted."""
    srv = make_server(args=["--workers", "2"])
    api = Api(srv.base)
    lib = api.create_library(publish_info=BASIC)
    url = library_info(api, lib)["publish_info"]["publish_url"]

    def answer(auth: tuple[str, str]) -> int:
        # a new connection each time: the kernel spreads them over both workers
        return requests.get(url, auth=auth, timeout=30).status_code

    assert {answer(VCSP) for _ in range(24)} == {200}  # remembered now, in both workers
    r = api.patch(f"{LL}/{lib}", json={"publish_info": {"password": "changed-Pa55", "current_password": VCSP[1]}})
    assert r.status_code == 204, r.text
    # each refusal followed by a success, which clears the failures counted (no slowed-down answers)
    assert {(answer(VCSP), answer(("vcsp", "changed-Pa55"))) for _ in range(24)} == {(401, 200)}


def forget_publish_password(srv: ServerProcess, lib: str) -> None:
    """Make `lib` what a library published with BASIC before schema 6 is: no publish password stored (the server
    is stopped while its database is changed, as an upgrade finds it)."""
    srv.stop()
    sql = "UPDATE libraries SET publish_password=NULL WHERE id="
    if srv.database:
        pg_run(srv.database, sql + "$1", lib)
    else:
        with sqlite3.connect(srv.data_dir / "contentlib.sqlite3") as db:
            assert db.execute(sql + "?", (lib,)).rowcount == 1
    srv.start()


def test_a_basic_library_from_before_schema_6_gets_a_password_without_a_current_one(
    make_server: Callable[..., ServerProcess],
) -> None:
    """Schema 6 added `publish_password`; a BASIC library published before has none, so its feed refuses everyone
    (there is no password to accept) until an update gives it one, which needs no `current_password` (there is none
    to check); from then on the usual rules hold."""
    srv = make_server()
    api = Api(srv.base)
    lib = api.create_library(publish_info=BASIC)
    forget_publish_password(srv, lib)
    assert api.login()
    url = library_info(api, lib)["publish_info"]["publish_url"]
    assert library_info(api, lib)["publish_info"]["authentication_method"] == "BASIC"
    for auth in (VCSP, ("vcsp", ""), ("vcsp", "anything"), None):
        assert_error(Feed(url, auth).get(), 401, "UNAUTHENTICATED")
    r = api.patch(f"{LL}/{lib}", json={"publish_info": {"password": "given-Pa55"}})
    assert r.status_code == 204, r.text
    assert Feed(url, ("vcsp", "given-Pa55")).get().status_code == 200
    assert_error(Feed(url, VCSP).get(), 401, "UNAUTHENTICATED")
    r = api.patch(f"{LL}/{lib}", json={"publish_info": {"password": "third-Pa55"}})  # now there is one to check
    assert_error(r, 400, "INVALID_ARGUMENT", "current_password")
    assert Feed(url, ("vcsp", "given-Pa55")).get().status_code == 200
    # the other ways out of such a library need no current password either: turning BASIC off, unpublishing
    off, unpublished = api.create_library(publish_info=BASIC), api.create_library(publish_info=BASIC)
    forget_publish_password(srv, off)
    forget_publish_password(srv, unpublished)
    assert api.login()
    assert api.patch(f"{LL}/{off}", json={"publish_info": {"authentication_method": "NONE"}}).status_code == 204
    assert feed_of(api, off).get().status_code == 200
    assert api.patch(f"{LL}/{unpublished}", json={"publish_info": {"published": False}}).status_code == 204
    assert "publish_url" not in library_info(api, unpublished)["publish_info"]
    # published again with BASIC, it needs the password it never had
    r = api.patch(f"{LL}/{unpublished}", json={"publish_info": {"published": True}})
    assert_error(r, 400, "INVALID_ARGUMENT", "password", "required")
    r = api.patch(f"{LL}/{unpublished}", json={"publish_info": {"published": True, "password": "fourth-Pa55"}})
    assert r.status_code == 204, r.text
    assert feed_of(api, unpublished, ("vcsp", "fourth-Pa55")).get().status_code == 200
    # and one that has no password may not keep BASIC with an empty one
    last = api.create_library(publish_info=BASIC)
    forget_publish_password(srv, last)
    assert api.login()
    r = api.patch(f"{LL}/{last}", json={"publish_info": {"password": ""}})
    assert_error(r, 400, "INVALID_ARGUMENT", "password", "empty")


# -- versions -------------------------------------------------------------------------------------------------------
def test_versions_grow_with_every_change_and_survive_a_restart(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server()
    api = Api(srv.base)
    lib = api.create_library(publish_info=BASIC)
    feed = feed_of(api, lib, VCSP)
    seen = [feed.version()]

    def grew() -> None:
        seen.append(feed.version())
        assert seen[-1] > seen[-2], seen

    item = api.create_item(lib, name="disk")
    grew()
    api.put_files(item, {"disk.iso": b"one"})
    grew()
    first = feed.items()["disk"]
    api.put_files(item, {"disk.iso": b"two!"})  # new bytes: the item's version and the file's etag change
    grew()
    second = feed.items()["disk"]
    assert int(second["version"]) > int(first["version"])
    assert int(second["contentVersion"]) > int(first["contentVersion"])
    assert int(second["files"][0]["etag"]) > int(first["files"][0]["etag"])
    assert second["files"][0]["generationNum"] > first["files"][0]["generationNum"]
    assert feed.get(second["files"][0]["hrefs"][0]).content == b"two!"
    assert api.patch(f"{ITEM}/{item}", json={"name": "renamed"}).status_code == 204
    grew()
    third = feed.items()["renamed"]
    assert int(third["version"]) > int(second["version"]) and third["files"] == second["files"]
    r = api.post(f"{ITEM}/{item}", params={"action": "publish"}, json={"force_sync_content": False})
    assert r.status_code == 204, r.text
    grew()
    assert int(feed.items()["renamed"]["version"]) > int(third["version"])
    assert api.post(f"{LL}/{lib}", params={"action": "publish"}).status_code == 204
    grew()
    assert api.patch(f"{LL}/{lib}", json={"name": "library-renamed"}).status_code == 204
    grew()
    assert feed.json()["name"] == "library-renamed"
    copy = api.post(f"{ITEM}/{item}", params={"action": "copy"}, json={"name": "copy"})
    assert copy.status_code == 200, copy.text
    grew()
    before_restart = feed.items()
    srv.restart()
    assert feed.version() == seen[-1] and feed.items() == before_restart
    assert api.login() and api.delete(f"{ITEM}/{item}").status_code == 204
    grew()
    assert list(feed.items()) == [before_restart[n]["name"] for n in before_restart if n != "renamed"]
    other = api.create_item(lib)
    grew()
    assert api.delete(f"{ITEM}/{other}").status_code == 204  # an item that comes and goes still counts
    grew()
    # unrelated changes elsewhere do not change this feed
    api.put_files(api.create_item(api.create_library(publish_info=OPEN)), {"x.iso": b"x"})
    assert feed.version() == seen[-1]
