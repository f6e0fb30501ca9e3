"""A static VCSP tree (issue 12 point 3): tools/make_vcsp.py writes lib.json, items.json and ITEM/item.json into a
directory of item directories, so that a plain HTTP file server serving it is a VCSP endpoint.

Contract: the feed our publisher serves (docs/vcsp.md, after VMware's make_vcsp_2018.py): the same members with the
same types in lib.json, items.json, item.json and the file entries; `vcspVersion` "2"; `id` urn:uuid:, kept across
runs; versions numeric strings that only grow: an item whose files changed gets version + 1 and new etags (one per
item, the vCloud Director rule), lib.json's version grows when anything changed and only then; removed items leave
items.json; hrefs relative to lib.json and percent-encoded; `vcsp.ovf` / `vcsp.iso` / `vcsp.other`; an OVF item
without a manifest gets the publisher's SHA-1 one. Bad input: one line on stderr, non-zero exit, nothing written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import ssl
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests
from conftest import Api, ServerProcess
from ovfkit import build_package, disk_bytes
from vcsptree import Feed, StaticServer, build_tree, make_vcsp, run_make_vcsp, thumbprint, write_items

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

OPEN = {"published": True, "authentication_method": "NONE"}
ISO8601 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
URN = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def shape(value: Any) -> Any:
    """The members and types of a JSON value, without the values (file lists by file name)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(v, dict) and "name" in v and "hrefs" in v for v in value):
            return {v["name"]: shape(v) for v in value}
        return [shape(v) for v in value]
    return type(value).__name__


def read(root: Path, *parts: str) -> dict[str, Any]:
    return dict(json.loads(root.joinpath(*parts).read_bytes()))


def tree_items(root: Path) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in read(root, "items.json")["items"]}


def check_versions(doc: dict[str, Any]) -> None:
    for key in ("version", "contentVersion"):
        assert isinstance(doc[key], str) and doc[key].isdigit() and int(doc[key]) > 0, doc


# -- (a) the publisher's members and types ----------------------------------------------------------------------------
def test_the_tree_has_the_members_and_types_of_the_publishers_feed(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    iso = disk_bytes("iso", 150_000)
    pkg = build_package("vm", disks={"vm-disk1.vmdk": disk_bytes("d1", 60_000), "vm-disk2.vmdk": b"z" * 900})
    srv = make_server()
    api = Api(srv.base)
    lib = api.create_library(name="same-content", publish_info=OPEN)
    iso_item = api.create_item(lib, name="ubuntu")
    api.put_files(iso_item, {"ubuntu.iso": iso})
    ovf_item = api.create_item(lib, name="appliance")
    api.put_files(ovf_item, pkg.files)  # the server checks the manifest, keeps descriptor and disks
    r = api.get(f"/api/content/local-library/{lib}")
    assert r.status_code == 200, r.text
    published = Feed(r.json()["publish_info"]["publish_url"])
    pub_lib, pub_items = published.feed()

    # the same files as the publisher serves: descriptor and disks, and the manifest it adds
    root = build_tree(tmp_path / "tree", {"ubuntu": {"ubuntu.iso": iso}, "appliance": pkg.kept()}, "same-content")
    with StaticServer(root) as static:
        tree = Feed(static.url)
        tree_lib, items = tree.feed()
        assert shape(tree_lib) == shape(pub_lib)
        assert shape(tree.json("items.json")) == {"items": [shape(i) for i in items.values()]}
        assert set(items) == set(pub_items) == {"ubuntu", "appliance"}
        for name, item in items.items():
            pub = pub_items[name]
            assert shape(item) == shape(pub), name
            same = ("name", "description", "properties", "type")
            assert {k: item[k] for k in same} == {k: pub[k] for k in same}, name
            assert {f["name"]: f["size"] for f in item["files"]} == {f["name"]: f["size"] for f in pub["files"]}
            for f in item["files"]:
                assert f["hrefs"] == [f"{name}/{f['name']}"]
                assert tree.get(f["hrefs"][0]).content == (root / name / f["name"]).read_bytes()
            check_versions(item)
            for f in item["files"] + pub["files"]:  # one etag per item, its content version (digits: a long)
                assert f["etag"].isdigit() and f["generationNum"] == int(f["etag"]), f
            assert {f["etag"] for f in item["files"]} == {item["contentVersion"]}
            assert URN.fullmatch(item["id"]) and ISO8601.fullmatch(item["created"]), item
            assert item["selfHref"] == f"{name}/item.json"
        assert items["ubuntu"]["type"] == "vcsp.iso" and items["appliance"]["type"] == "vcsp.ovf"
        # the manifest is the publisher's, byte for byte: SHA-1 of the descriptor and every disk
        pub_mf = next(f for f in pub_items["appliance"]["files"] if f["name"] == "vm.mf")
        assert tree.get("appliance/vm.mf").content == published.get(pub_mf["hrefs"][0]).content
    for key in ("vcspVersion", "name", "capabilities", "itemsHref"):
        assert tree_lib[key] == pub_lib[key], key
    check_versions(tree_lib)
    assert URN.fullmatch(tree_lib["id"]) and ISO8601.fullmatch(tree_lib["created"]), tree_lib


# -- (b) versions across runs -----------------------------------------------------------------------------------------
def test_rerunning_after_changes_raises_exactly_the_versions_of_what_changed(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    pkg = build_package("vm", disks={"vm-disk1.vmdk": disk_bytes("d1", 5000)})
    build_tree(root, {"a": {"a.iso": b"A" * 1000}, "b": pkg.kept(), "c": {"c.txt": b"c"}})
    lib1, items1 = read(root, "lib.json"), tree_items(root)
    assert lib1["version"] == lib1["contentVersion"] == "1"
    assert {n: (i["version"], i["contentVersion"]) for n, i in items1.items()} == {n: ("1", "1") for n in "abc"}
    assert {f["etag"] for i in items1.values() for f in i["files"]} == {"1"}
    assert len({lib1["id"], *(i["id"] for i in items1.values())}) == 4

    def documents() -> dict[str, tuple[bytes, int]]:
        return {
            str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()
        }

    before = documents()
    assert make_vcsp(root).endswith("version 1, 3 items")  # nothing changed: nothing written at all
    assert documents() == before

    (root / "a" / "a.iso").write_bytes(b"B" * 1000)  # same size, new bytes and time
    write_items(root, {"d": {"d.bin": b"new"}})
    for p in (root / "c").iterdir():
        p.unlink()
    (root / "c").rmdir()
    assert "(1 added, 1 changed, 1 removed)" in make_vcsp(root)
    lib2, items2 = read(root, "lib.json"), tree_items(root)
    assert (lib2["version"], lib2["id"], lib2["created"]) == ("2", lib1["id"], lib1["created"])
    assert list(items2) == ["a", "b", "d"]
    assert (items2["a"]["version"], items2["a"]["contentVersion"], items2["a"]["id"]) == ("2", "2", items1["a"]["id"])
    assert [(f["etag"], f["generationNum"]) for f in items2["a"]["files"]] == [("2", 2)]
    assert items2["b"] == items1["b"] and (root / "b" / "item.json").read_bytes() == before["b/item.json"][0]
    assert items2["d"]["version"] == "1" and items2["d"]["id"] not in {i["id"] for i in items1.values()}
    assert read(root, "a", "item.json") == items2["a"]

    # a disk of the OVF item changes: the manifest the tool wrote follows it
    (root / "b" / "vm-disk1.vmdk").write_bytes(disk_bytes("d1-new", 5001))
    make_vcsp(root)
    b = tree_items(root)["b"]
    assert (b["version"], read(root, "lib.json")["version"], b["id"]) == ("2", "3", items1["b"]["id"])
    lines = (root / "b" / "vm.mf").read_text().splitlines()
    assert lines == [
        f"SHA1({n})= {hashlib.sha1((root / 'b' / n).read_bytes()).hexdigest()}" for n in ("vm-disk1.vmdk", "vm.ovf")
    ]
    assert {f["name"]: f["size"] for f in b["files"]}["vm.mf"] == (root / "b" / "vm.mf").stat().st_size

    # only the time changes: a change (the tool cannot know the bytes are the same without reading them)
    st = (root / "d" / "d.bin").stat()
    os.utime(root / "d" / "d.bin", ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))  # older, even
    make_vcsp(root)
    assert tree_items(root)["d"]["version"] == "2" and read(root, "lib.json")["version"] == "4"

    # new bytes with the old size and time: seen only with --checksum, which reads every file
    st = (root / "d" / "d.bin").stat()
    (root / "d" / "d.bin").write_bytes(b"NEW")
    os.utime(root / "d" / "d.bin", ns=(st.st_atime_ns, st.st_mtime_ns))
    make_vcsp(root)
    assert tree_items(root)["d"]["version"] == "2"
    make_vcsp(root, "static", "--checksum")
    assert tree_items(root)["d"]["version"] == "3" and read(root, "lib.json")["version"] == "5"

    # the item gets a manifest of its own: the tool's goes, the item's is served as it is
    mf = (root / "b" / "vm.mf").read_bytes()
    (root / "b" / "own.mf").write_bytes(mf)
    make_vcsp(root)
    b = tree_items(root)["b"]
    assert sorted(f["name"] for f in b["files"]) == ["own.mf", "vm-disk1.vmdk", "vm.ovf"] and b["version"] == "3"
    assert not (root / "b" / "vm.mf").exists()

    # the state file is a cache: without it nothing counts as changed; renaming the library raises lib.json only
    (root / ".make_vcsp.json").unlink()
    items_before = tree_items(root)
    make_vcsp(root)
    assert tree_items(root) == items_before and read(root, "lib.json")["version"] == "6"
    make_vcsp(root, "renamed")
    lib = read(root, "lib.json")
    assert (lib["name"], lib["version"], lib["id"]) == ("renamed", "7", lib1["id"]) and tree_items(root) == items_before
    for item in tree_items(root).values():
        check_versions(item)

    # an item that goes, alone, raises lib.json too
    for p in (root / "d").iterdir():
        p.unlink()
    (root / "d").rmdir()
    assert make_vcsp(root, "renamed").endswith("(1 removed)")
    assert read(root, "lib.json")["version"] == "8" and list(tree_items(root)) == ["a", "b"]


# -- (c) a plain http.server is the endpoint ---------------------------------------------------------------------------
def test_the_standard_librarys_http_server_serves_every_href(tmp_path: Path) -> None:
    pkg = build_package("vm", disks={"vm-disk1.vmdk": disk_bytes("disk", 300_000)})
    files = {
        "ubuntu": {"ubuntu.iso": disk_bytes("iso", 123_457)},
        "appliance": pkg.files,  # with its own (SHA-256) manifest
        "my item #1 (50% off)": {"read me?.txt": b"hash, question mark, percent", "ü ß.bin": b"utf-8 names"},
        "empty": {},
    }
    root = tmp_path / "tree"
    write_items(root, {".git": {"config": b"x"}, "empty": {".DS_Store": b"finder"}})  # hidden: not in the feed
    (root / "top.txt").write_bytes(b"files at the top are no items")
    build_tree(root, files, name="tree #1: 50% off / ü")
    items = tree_items(root)
    assert items["my item #1 (50% off)"]["selfHref"] == "my%20item%20%231%20%2850%25%20off%29/item.json"
    hrefs = {f["name"]: f["hrefs"][0] for f in items["my item #1 (50% off)"]["files"]}
    assert hrefs["read me?.txt"].endswith("/read%20me%3F.txt") and hrefs["ü ß.bin"].endswith("/%C3%BC%20%C3%9F.bin")
    assert {i["type"] for i in items.values()} == {"vcsp.iso", "vcsp.ovf", "vcsp.other"}
    assert set(items) == set(files) and items["empty"]["files"] == []
    with StaticServer(root) as static:
        sub = Feed(static.url)
        lib, served = sub.feed()
        assert lib == read(root, "lib.json") and served == items and lib["name"] == "tree #1: 50% off / ü"
        count = 0
        for name, item in served.items():
            assert sorted(f["name"] for f in item["files"]) == sorted(files[name]), name
            for f in item["files"]:
                data = files[name][f["name"]]
                r = sub.get(f["hrefs"][0])
                assert r.status_code == 200 and r.content == data and f["size"] == len(data), f
                head = sub.http.head(urljoin(sub.url, f["hrefs"][0]), timeout=30)
                assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(data)
                count += 1
        assert count == 6
        # Python 3.11's http.server ignores Range: a subscriber gets the whole file with 200 and must cope
        whole = files["ubuntu"]["ubuntu.iso"]
        r = sub.get("ubuntu/ubuntu.iso", headers={"Range": "bytes=100-199"})
        assert (r.status_code, r.content) in ((200, whole), (206, whole[100:200])), r.status_code
    with StaticServer(root, ranges=True) as ranged:  # the helper's server answers ranges
        sub = Feed(ranged.url)
        for rng, want in [
            ("bytes=100-199", whole[100:200]),
            ("bytes=123000-", whole[123000:]),
            ("bytes=-7", whole[-7:]),
        ]:
            r = sub.get("ubuntu/ubuntu.iso", headers={"Range": rng})
            assert r.status_code == 206 and r.content == want, (rng, r.status_code)
            assert r.headers["Content-Range"].endswith(f"/{len(whole)}")
        assert sub.get("ubuntu/ubuntu.iso", headers={"Range": f"bytes={len(whole)}-"}).status_code == 416
        assert sub.get("ubuntu/ubuntu.iso").content == whole


# -- (d) Basic authentication and HTTPS -------------------------------------------------------------------------------
def test_the_basic_auth_server_wants_user_vcsp_and_the_password(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "tree", {"disk": {"disk.iso": b"secret bytes"}})
    with StaticServer(root, password="tree-Pa55") as srv:
        good = Feed(srv.url, srv.auth)
        _, items = good.feed()
        href = items["disk"]["files"][0]["hrefs"][0]
        assert good.get(href).content == b"secret bytes"
        assert good.get("nothing").status_code == 404
        for path in ("lib.json", "items.json", "disk/item.json", href, "nothing", ""):
            for auth in (None, ("vcsp", "wrong"), ("admin", "tree-Pa55"), ("vcsp", "")):
                r = Feed(srv.url, auth).get(path)
                assert r.status_code == 401, (path, auth, r.status_code)
                assert r.headers["WWW-Authenticate"] == 'Basic realm="vcsp"' and b"secret" not in r.content
        r = Feed(srv.url).get("lib.json", headers={"Authorization": "Basic !!!"})
        assert r.status_code == 401
        assert good.http.head(urljoin(srv.url, href), auth=srv.auth, timeout=30).status_code == 200
        assert Feed(srv.url).http.head(urljoin(srv.url, href), timeout=30).status_code == 401


def test_the_https_server_presents_the_certificate_of_its_thumbprint(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "tree", {"disk": {"disk.iso": b"over tls"}})
    with StaticServer(root, password="tls-Pa55", tls=tmp_path / "tls") as srv:
        assert srv.url.startswith("https://127.0.0.1:")
        presented = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", srv.port)))
        assert presented == srv.cert_der
        sha1 = srv.thumbprint()
        assert re.fullmatch(r"([0-9A-F]{2}:){19}[0-9A-F]{2}", sha1) and sha1 == thumbprint(presented, "sha1")
        assert srv.thumbprint("sha256") == ":".join(f"{b:02X}" for b in hashlib.sha256(presented).digest())
        with pytest.raises(requests.exceptions.SSLError):  # self-signed: refused unless pinned or trusted
            Feed(srv.url, srv.auth, verify=True).get()
        trusting = Feed(srv.url, srv.auth, verify=str(srv.cert_path))
        _, items = trusting.feed()
        assert trusting.get(items["disk"]["files"][0]["hrefs"][0]).content == b"over tls"
        assert Feed(srv.url, verify=str(srv.cert_path)).get().status_code == 401


# -- (e) bad input ----------------------------------------------------------------------------------------------------
def one_line_error(done: Any, *words: str) -> str:
    assert done.returncode != 0 and done.stdout == "", (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("make_vcsp: error: "), done.stderr
    for w in words:
        assert w in done.stderr, (w, done.stderr)
    return str(done.stderr)


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def test_bad_input_is_one_line_and_a_failure(tmp_path: Path) -> None:
    one_line_error(run_make_vcsp(tmp_path / "missing"), "missing", "no such directory")
    (tmp_path / "file").write_bytes(b"x")
    one_line_error(run_make_vcsp(tmp_path / "file"), "file", "not a directory")
    ok = build_tree(tmp_path / "ok", {"a": {"a.iso": b"a"}})
    one_line_error(run_make_vcsp(ok, ""), "name")
    one_line_error(run_make_vcsp(ok, "line\nbreak"), "control character")
    done = subprocess.run(
        [sys.executable, "tools/make_vcsp.py", str(ok)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[1],
    )
    assert done.returncode == 2
    one_line_error(done, "--name")

    def refused(items: dict[str, dict[str, bytes]], *words: str, setup: Callable[[Path], object] | None = None) -> None:
        root = tmp_path / f"t-{uuid.uuid4().hex[:8]}"
        root.mkdir()
        write_items(root, items)
        if setup:
            setup(root)
        before = snapshot(root)
        one_line_error(run_make_vcsp(root), *words)
        assert snapshot(root) == before  # nothing written

    refused({"a": {"a.iso": b"a"}}, "sub", "flat", setup=lambda r: (r / "a" / "sub").mkdir())
    refused({"a": {"new\nline.iso": b"a"}}, "control character")
    refused({"a": {"back\\slash.iso": b"a"}}, "backslash")
    refused({"items.json": {"a.iso": b"a"}}, "items.json")
    refused({"a": {"a.iso": b"a"}}, "lib.json", setup=lambda r: (r / "lib.json").write_text("{not json"))
    refused({"a": {"a.iso": b"a"}}, "lib.json", setup=lambda r: (r / "lib.json").write_text('{"id": "x"}'))

    def undecodable(root: Path) -> None:
        fd = os.open(os.path.join(os.fsencode(root / "a"), b"caf\xe9.iso"), os.O_WRONLY | os.O_CREAT, 0o644)
        os.close(fd)

    refused({"a": {}}, "not valid UTF-8", "caf", setup=undecodable)
    refused(
        {"a": {"a.iso": b"a"}},
        "dangling.iso",
        "No such file",
        setup=lambda r: os.symlink(r / "nowhere", r / "a" / "dangling.iso"),
    )

    # a broken item.json of an earlier run: refused, and nothing else is written either
    before = {p: p.read_bytes() for p in ok.rglob("*.json")}
    (ok / "a" / "item.json").write_text('{"id": "urn:uuid:nope", "version": "x"}')
    one_line_error(run_make_vcsp(ok), "item.json")
    assert read(ok, "lib.json") == json.loads(before[ok / "lib.json"])
