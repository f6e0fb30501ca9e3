"""HTTP caching of the VCSP feed (issue 12 point 1): every document and file carries a strong `ETag`, a
subscriber's `If-None-Match` gets 304 Not Modified (no body) while nothing changed, and a resumed download's
`Range` with an `If-Range` that no longer names the file gets the whole file (200).

Contract: RFC 9110 §8.8.3 (entity tags, strong and weak, quoted), §13.1.2 (If-None-Match: weak comparison, `*`,
a list; 304 for GET and HEAD), §13.1.5 (If-Range: a strong match, else the Range is ignored and the whole
representation is sent; a date matches only a Last-Modified, and none is sent here), §15.4.5 (304: no body, the
same ETag and Cache-Control as the 200). docs/vcsp.md: an ETag changes with the version that changes the document
(the feed's, the item's, the item's content version for files).
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from conftest import Api
from ovfkit import build_package, disk_bytes
from test_vcsp_publisher import BASIC, ITEM, LL, OPEN, VCSP, feed_of
from vcsptree import Feed

pytestmark = [
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

STRONG = re.compile(r'"[\x21\x23-\x7e]+"')


def tag_of(r: requests.Response) -> str:
    assert r.status_code == 200, (r.status_code, r.text[:200])
    etag = r.headers["ETag"]
    assert STRONG.fullmatch(etag), etag  # strong (no W/), quoted
    return etag


def not_modified(feed: Feed, href: str, inm: str, method: str = "GET") -> requests.Response:
    r = feed.http.request(method, urljoin(feed.url, href), auth=feed.auth, headers={"If-None-Match": inm}, timeout=30)
    assert r.status_code == 304, (href, inm, r.status_code, r.text[:200])
    assert r.content == b"" and r.headers.get("Content-Length", "0") == "0"
    return r


def documents(feed: Feed, item: str) -> dict[str, tuple[str, Any]]:
    """href -> (ETag, JSON body) of lib.json, items.json and the item's item.json."""
    out = {}
    for href in ("lib.json", "items.json", f"{item}/item.json"):
        r = feed.get(href)
        out[href] = (tag_of(r), r.json())
    return out


def test_json_documents_are_revalidated_with_their_etag(api: Api) -> None:
    lib = api.create_library(publish_info=OPEN)
    feed = feed_of(api, lib)
    item = api.create_item(lib, name="disk")
    api.put_files(item, {"disk.iso": b"one"})
    docs = documents(feed, item)
    assert len({tag for tag, _ in docs.values()}) == 3  # each document its own tag
    for href, (tag, body) in docs.items():
        assert feed.get(href).headers["ETag"] == tag  # the same while nothing changes
        r = not_modified(feed, href, tag)
        assert r.headers["ETag"] == tag and r.headers["Cache-Control"] == "no-cache"
        not_modified(feed, href, tag, "HEAD")
        not_modified(feed, href, f"W/{tag}")  # If-None-Match compares weakly
        not_modified(feed, href, f'"elsewhere", {tag}')
        not_modified(feed, href, "*")
        for other in ('"elsewhere"', tag[:-1] + 'x"', "garbage"):
            r = feed.get(href, headers={"If-None-Match": other})
            assert r.status_code == 200 and r.json() == body and r.headers["ETag"] == tag, (href, other)
        head = feed.http.head(urljoin(feed.url, href), headers={"If-None-Match": '"x"'}, timeout=30)
        assert head.status_code == 200 and head.headers["ETag"] == tag

    def changed(before: dict[str, tuple[str, Any]], hrefs: set[str]) -> dict[str, tuple[str, Any]]:
        """After a change: the documents in `hrefs` answer the old tag with 200, a new tag and the new document,
        the others still answer 304; and no document that changed kept its tag."""
        after = documents(feed, item)
        for href, (tag, body) in before.items():
            r = feed.get(href, headers={"If-None-Match": tag})
            if after[href][1] != body or href in hrefs:
                assert r.status_code == 200 and tag_of(r) == after[href][0] != tag, href
                assert r.json() == after[href][1]
            else:
                assert r.status_code == 304 and after[href][0] == tag, href
        assert after["lib.json"][1] != before["lib.json"][1] or not hrefs  # the version a subscriber reads grew
        # items.json (kept encoded per process while the version stays) is what every item.json says now
        assert after["items.json"][1]["items"] == [feed.json(i["selfHref"]) for i in after["items.json"][1]["items"]]
        return after

    docs = changed(docs, set())  # nothing happened: nothing changed
    api.put_files(item, {"disk.iso": b"two!"})  # new bytes
    docs = changed(docs, {"lib.json", "items.json", f"{item}/item.json"})
    assert docs[f"{item}/item.json"][1]["files"][0]["size"] == 4
    assert api.patch(f"{ITEM}/{item}", json={"description": "changed"}).status_code == 204
    docs = changed(docs, {"lib.json", "items.json", f"{item}/item.json"})
    r = api.post(f"{ITEM}/{item}", params={"action": "publish"}, json={"force_sync_content": False})
    assert r.status_code == 204, r.text
    docs = changed(docs, {"lib.json", "items.json", f"{item}/item.json"})
    assert api.post(f"{LL}/{lib}", params={"action": "publish"}).status_code == 204
    docs = changed(docs, {"lib.json", "items.json"})  # the item itself did not change
    assert api.patch(f"{LL}/{lib}", json={"name": f"renamed-{uuid.uuid4().hex[:6]}"}).status_code == 204
    docs = changed(docs, {"lib.json", "items.json"})
    other = api.create_item(lib, name="other")
    docs = changed(docs, {"lib.json", "items.json"})
    assert api.delete(f"{ITEM}/{other}").status_code == 204
    changed(docs, {"lib.json", "items.json"})


def test_the_etag_is_checked_only_after_the_credentials(api: Api) -> None:
    lib = api.create_library(publish_info=BASIC)
    url = api.get(f"{LL}/{lib}").json()["publish_info"]["publish_url"]
    tag = tag_of(Feed(url, VCSP).get())
    for auth in (None, ("vcsp", "wrong")):
        r = Feed(url, auth).get(headers={"If-None-Match": tag})
        assert r.status_code == 401 and "ETag" not in r.headers, r.status_code
    not_modified(Feed(url, VCSP), "lib.json", tag)
    # another password (a new publish_info) is another version of the library: the old tag is stale
    r = api.patch(f"{LL}/{lib}", json={"publish_info": {"password": "other-Pa55", "current_password": VCSP[1]}})
    assert r.status_code == 204, r.text
    r = Feed(url, ("vcsp", "other-Pa55")).get(headers={"If-None-Match": tag})
    assert r.status_code == 200 and tag_of(r) != tag


def ranged(feed: Feed, href: str, **headers: str) -> requests.Response:
    return feed.get(href, headers=headers)


def check_file(feed: Feed, href: str, data: bytes) -> str:
    """The file at `href` (bytes `data`) against every validator: its ETag, 304, If-Range matching or not."""
    r = feed.get(href)
    assert r.content == data
    tag = tag_of(r)
    assert "Last-Modified" not in r.headers  # the ETag is the one validator (a date in If-Range never matches)
    r = not_modified(feed, href, tag)
    assert r.headers["ETag"] == tag
    not_modified(feed, href, tag, "HEAD")
    not_modified(feed, href, f"W/{tag}")
    head = feed.http.head(urljoin(feed.url, href), timeout=30)
    assert head.headers["ETag"] == tag and int(head.headers["Content-Length"]) == len(data)
    a, b = 2, len(data) // 2
    r = ranged(feed, href, Range=f"bytes={a}-{b}", **{"If-Range": tag})
    assert r.status_code == 206 and r.content == data[a : b + 1] and r.headers["ETag"] == tag
    assert r.headers["Content-Range"] == f"bytes {a}-{b}/{len(data)}"
    r = ranged(feed, href, Range=f"bytes={a}-{b}")
    assert r.status_code == 206 and r.content == data[a : b + 1]
    for stale in ('"file-0-f1"', f"W/{tag}", "Thu, 01 Jan 2099 00:00:00 GMT", "Thu, 01 Jan 1970 00:00:00 GMT"):
        r = ranged(feed, href, Range=f"bytes={a}-{b}", **{"If-Range": stale})
        assert r.status_code == 200 and r.content == data and "Content-Range" not in r.headers, stale
        assert r.headers["ETag"] == tag
    # If-Range that does not match sends the whole file even for a range past the end (no 416)
    r = ranged(feed, href, Range=f"bytes={len(data) + 10}-", **{"If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == data
    assert ranged(feed, href, Range=f"bytes={len(data) + 10}-", **{"If-Range": tag}).status_code == 416
    r = ranged(feed, href, Range=f"bytes={a}-{b}", **{"If-None-Match": tag})
    assert r.status_code == 304
    return tag


def test_files_carry_the_items_generation_as_etag(api: Api) -> None:
    """A stored file (sendfile from disk, or streamed from S3) and the manifest the feed makes for an OVF item."""
    lib = api.create_library(publish_info=OPEN)
    feed = feed_of(api, lib)
    item = api.create_item(lib, name="appliance")
    pkg = build_package("vm", disks={"vm-disk1.vmdk": disk_bytes("disk1", 50_000)})
    api.put_files(item, pkg.files)
    files = {f["name"]: f for f in feed.items()["appliance"]["files"]}
    disk_href, mf_href = files["vm-disk1.vmdk"]["hrefs"][0], files["vm.mf"]["hrefs"][0]
    disk_tag = check_file(feed, disk_href, pkg.files["vm-disk1.vmdk"])
    manifest = feed.get(mf_href).content
    mf_tag = check_file(feed, mf_href, manifest)
    assert check_file(feed, f"{item}/file/vm-disk1.vmdk", pkg.files["vm-disk1.vmdk"]) == disk_tag
    generation = str(files["vm-disk1.vmdk"]["generationNum"])
    assert generation in disk_tag and generation in mf_tag  # the generation item.json gives

    # new bytes: a new generation, so the old validators are stale, and a resumed download starts over
    new_disk = disk_bytes("disk1-v2", 60_000)
    pkg2 = build_package("vm", disks={"vm-disk1.vmdk": new_disk})
    api.put_files(item, pkg2.files)
    r = ranged(feed, disk_href, Range="bytes=10-20", **{"If-Range": disk_tag})
    assert r.status_code == 200 and r.content == new_disk and tag_of(r) != disk_tag
    r = feed.get(disk_href, headers={"If-None-Match": disk_tag})
    assert r.status_code == 200 and r.content == new_disk
    r = feed.get(mf_href, headers={"If-None-Match": mf_tag})
    assert r.status_code == 200 and tag_of(r) != mf_tag and r.content != manifest
    check_file(feed, disk_href, new_disk)
    # a metadata change is no new bytes: the file's tag stays
    assert api.patch(f"{ITEM}/{item}", json={"description": "changed"}).status_code == 204
    assert feed.get(disk_href, headers={"If-None-Match": tag_of(feed.get(disk_href))}).status_code == 304
