"""Subscribed libraries when things go wrong (issue 12 point 3): a publisher that refuses the subscriber's password,
an https publisher whose certificate is not trusted (and one that is, by thumbprint or as a trusted certificate),
every probe status, a publisher that goes away in the middle of a file, bytes that do not match what the feed or
an OVF manifest says, and a subscriber killed (SIGKILL) in the middle of a sync.

Each case ends in the vendor's error (RESOURCE_INACCESSIBLE, a probe status) or a failed sync the server logs, and
never in an item seen half-synced: an item holds either the files of its previous content version, exactly, or no
file at all (not cached: its files are the publisher's, each `cached: false`). `Watch` samples the items while a
sync runs and fails the test on the first sample that is neither; every failure is followed by the repair (the
right password, a fixed tree, the publisher back, a restart) and a sync that mirrors the publisher byte for byte.

Publishers are real processes or threads speaking HTTP: another contentlib server (`server`), a static tree of
tools/make_vcsp.py served by tests/vcsptree.py's StaticServer (plain http.server, or its own handler with TLS), or
`FaultyServer` here, a static file server in a thread of the test process that can cut a file short, send it
slowly, or stop with its connections open.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ovfkit
import pytest
import requests
import subkit
import vcsptree
from conftest import S3_BUCKET, Api, ServerProcess, assert_error, free_port

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

MiB = 1 << 20
SUB = subkit.SUB
LL = subkit.LL


# -- what a subscriber shows of an item -------------------------------------------------------------------------------
def snapshot(api: Api, item_id: str) -> dict[str, Any]:
    """What the subscriber shows of the item's content: cached, its content version, its files."""
    r = api.get(f"/api/content/library/item/{item_id}")
    assert r.status_code == 200, r.text
    model = r.json()
    files = sorted(api.item_files(item_id).values(), key=lambda f: f["name"])
    return {"cached": model["cached"], "content_version": model["content_version"], "files": files}


def uncached(snap: dict[str, Any], names: set[str] | None = None) -> bool:
    """An item without content: not cached, and every file it lists is the publisher's, not cached."""
    if snap["cached"] or any(f["cached"] for f in snap["files"]):
        return False
    return names is None or {f["name"] for f in snap["files"]} == names


def assert_whole(snap: dict[str, Any], before: dict[str, Any], names: set[str] | None = None) -> None:
    """The item as it was (`before`) exactly, or without content; never a part of a new content."""
    assert snap == before or uncached(snap, names), (snap, before)


def assert_holds(api: Api, item_id: str, files: dict[str, bytes]) -> None:
    """The item is cached and its files are these bytes."""
    snap = snapshot(api, item_id)
    assert snap["cached"], snap
    listed = {f["name"]: f for f in snap["files"]}
    assert set(listed) == set(files), (set(listed), set(files))
    for name, data in files.items():
        assert listed[name]["cached"] is True and listed[name]["size"] == len(data), listed[name]
        assert listed[name]["checksum_info"]["checksum"] == hashlib.sha1(data).hexdigest(), name
        assert hashlib.sha256(api.download(item_id, name)).digest() == hashlib.sha256(data).digest(), name


def item_ids(api: Api, library_id: str) -> dict[str, str]:
    return {name: model["id"] for name, model in subkit.items(api, library_id).items()}


class Watch:
    """Samples the library's items in a thread while a sync runs; `check` asserts that every sample of every item
    was its state before the sync or uncached (`names`: the publisher's files of the items that had none)."""

    def __init__(self, api: Api, library_id: str, names: dict[str, set[str]] | None = None) -> None:
        self.api = Api(api.base)
        self.ids = item_ids(api, library_id)
        self.before = {name: snapshot(api, i) for name, i in self.ids.items()}
        self.names = names or {}
        self.samples: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for name, i in self.ids.items():
                    self.samples.append((name, snapshot(self.api, i)))
            except (requests.RequestException, AssertionError) as e:  # a server being killed
                self.errors.append(e)
            self._stop.wait(0.05)

    def check(self) -> int:
        """How many samples were taken; each one the item's state before, uncached, or its state now (the sync
        that ended well)."""
        after = {name: snapshot(self.api, i) for name, i in self.ids.items()}
        for name, snap in self.samples:
            if snap != after[name]:
                assert_whole(snap, self.before[name], self.names.get(name))
        return len(self.samples)


# -- a publisher with faults on demand ---------------------------------------------------------------------------------
class FaultyServer:
    """A VCSP tree served over plain HTTP by a thread of this process: `cut[name]` bytes of the file `name` are sent
    (with the whole Content-Length announced) before the connection is dropped; `rate` limits every file's body to
    so many bytes a second; `sent[name]` counts the bytes of each file sent; `stop` drops the open connections too,
    and `start` serves again on the same port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.cut: dict[str, int] = {}
        self.rate: float | None = None
        self.sent: dict[str, int] = {}
        self.httpd: http.server.ThreadingHTTPServer | None = None
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/lib.json"

    def start(self) -> FaultyServer:
        owner = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a: Any, **kw: Any) -> None:
                super().__init__(*a, directory=str(owner.root), **kw)

            def setup(self) -> None:
                super().setup()
                with owner.lock:
                    owner.connections.add(self.connection)

            def finish(self) -> None:
                with owner.lock:
                    owner.connections.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def log_message(self, *args: object) -> None:
                pass

            def copyfile(self, source: Any, outputfile: Any) -> None:
                name = self.path.rsplit("/", 1)[-1]
                limit = owner.cut.get(name)
                rate = owner.rate if not name.endswith(".json") else None
                while True:
                    chunk = source.read(64 * 1024)
                    if not chunk:
                        return
                    done = owner.sent.get(name, 0)
                    if limit is not None and done + len(chunk) >= limit:
                        outputfile.write(chunk[: max(limit - done, 0)])
                        owner.sent[name] = done + max(limit - done, 0)
                        outputfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    outputfile.write(chunk)
                    owner.sent[name] = done + len(chunk)
                    if rate:
                        time.sleep(len(chunk) / rate)

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a connection cut or reset on purpose

        self.httpd = Server(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is None:
            return
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:
            for conn in list(self.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        self.httpd = None

    def __enter__(self) -> FaultyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait(check: Callable[[], Any], what: str, timeout: float = 60.0, srv: ServerProcess | None = None) -> Any:
    return subkit.wait_for(check, timeout=timeout, what=what, srv=srv)


def probe(api: Api, url: str, **kw: Any) -> dict[str, Any]:
    r = api.post(SUB, params={"action": "probe"}, json={"subscription_info": subkit.subscription(url, **kw)})
    assert r.status_code == 200, r.text
    result = dict(r.json())
    assert set(result) <= {"status", "ssl_thumbprint", "error_messages"}, result
    if result["status"] != "SUCCESS":
        assert result["error_messages"] and all(m["default_message"] for m in result["error_messages"]), result
    return result


def libraries(api: Api) -> list[str]:
    r = api.get(SUB)
    assert r.status_code == 200, r.text
    return list(r.json())


def refused(r: requests.Response, status: str, *words: str) -> dict[str, Any]:
    """A create/update/sync refused because the publisher cannot be read: the vendor's RESOURCE_INACCESSIBLE."""
    return assert_error(r, 500, "RESOURCE_INACCESSIBLE", status, *words)


def background_failures(srv: ServerProcess, library_id: str) -> int:
    return len(subkit.sync_failures(srv, library_id))


def stored(srv: ServerProcess) -> list[str]:
    """What holds storage in the server's blob store: its blobs, and on S3 the multipart uploads still open (a
    blob being written, or one a killed server was writing)."""
    blobs = srv.blob_ids()
    if srv.s3_prefix:
        prefix = f"{srv.s3_prefix}/blobs/"
        pages = srv.s3_client().get_paginator("list_multipart_uploads").paginate(Bucket=S3_BUCKET, Prefix=prefix)
        blobs += [f"upload:{u['Key'][len(prefix) :]}" for page in pages for u in page.get("Uploads", [])]
    return blobs


# -- 1. credentials ---------------------------------------------------------------------------------------------------
def test_wrong_password(server: ServerProcess, make_server: Callable[..., ServerProcess]) -> None:
    pub_api = Api(server.base)
    lib, url = subkit.publish(pub_api, password="first-Pa55")
    item = pub_api.create_item(lib, "disk")
    v1 = {"disk.iso": os.urandom(300 * 1024)}
    pub_api.put_files(item, v1)
    sub = make_server()
    api = Api(sub.base)

    r = subkit.subscribe_raw(api, url, auth=("vcsp", "not-the-password"))
    refused(r, "INVALID_CREDENTIALS", "credentials", url)
    r = subkit.subscribe_raw(api, url)  # no password at all, to a BASIC publisher
    refused(r, "INVALID_CREDENTIALS", "credentials")
    assert libraries(api) == []  # nothing was stored
    result = probe(api, url, auth=("vcsp", "not-the-password"))
    assert result["status"] == "INVALID_CREDENTIALS", result
    assert "credentials" in result["error_messages"][0]["default_message"]
    assert probe(api, url)["status"] == "INVALID_CREDENTIALS"
    assert probe(api, url, auth=("vcsp", "first-Pa55"))["status"] == "SUCCESS"

    sl = subkit.subscribe(api, url, auth=("vcsp", "first-Pa55"))
    subkit.wait_synced(api, sub, sl)
    ids = item_ids(api, sl)
    assert_holds(api, ids["disk"], v1)
    before = snapshot(api, ids["disk"])

    # the publisher changes its password, and its item's content
    r = pub_api.patch(
        f"{LL}/{lib}", json={"publish_info": {"password": "second-Pa55", "current_password": "first-Pa55"}}
    )
    assert r.status_code == 204, r.text
    pub_api.put_files(item, {"disk.iso": os.urandom(200 * 1024)})

    # a library sync checks the publisher first: refused at once, with the reason
    r = api.post(f"{SUB}/{sl}", params={"action": "sync"})
    refused(r, "INVALID_CREDENTIALS", "credentials")
    # an item sync runs in the background, and fails there
    failed = background_failures(sub, sl)
    r = api.post(f"{subkit.SUB_ITEM}/{ids['disk']}", params={"action": "sync"}, json={"force_sync_content": True})
    assert r.status_code == 204, r.text
    line = subkit.wait_failed(sub, sl, failed)
    assert "credentials" in line and "401" in line, line
    assert snapshot(api, ids["disk"]) == before
    assert_holds(api, ids["disk"], v1)
    # an update to another wrong password is checked first, and refused: nothing changes
    r = api.patch(f"{SUB}/{sl}", json={"subscription_info": {"password": "wrong-again"}})
    refused(r, "INVALID_CREDENTIALS")
    assert snapshot(api, ids["disk"]) == before

    # the subscriber is given the new password: the next sync mirrors the new content
    r = api.patch(
        f"{SUB}/{sl}", json={"subscription_info": {"authentication_method": "BASIC", "password": "second-Pa55"}}
    )
    assert r.status_code == 204, r.text
    subkit.sync(api, sub, sl)
    new = pub_api.download(item, "disk.iso")
    assert_holds(api, ids["disk"], {"disk.iso": new})
    assert snapshot(api, ids["disk"])["content_version"] != before["content_version"]


# -- 2. https publishers ---------------------------------------------------------------------------------------------
@pytest.fixture()
def tls_tree(tmp_path: Path) -> Iterator[tuple[vcsptree.StaticServer, dict[str, bytes]]]:
    files = {"tls.iso": os.urandom(2 * MiB + 3)}
    root = vcsptree.build_tree(tmp_path / "tree", {"tls": files}, name="tls")
    with vcsptree.StaticServer(root, tls=tmp_path / "tls") as srv:
        yield srv, files


def test_https_publisher_certificate(
    tls_tree: tuple[vcsptree.StaticServer, dict[str, bytes]], make_server: Callable[..., ServerProcess]
) -> None:
    srv, files = tls_tree
    sha1, sha256 = srv.thumbprint("sha1"), srv.thumbprint("sha256")
    sub = make_server()
    api = Api(sub.base)

    # not trusted: refused, and the probe says which certificate it is
    r = subkit.subscribe_raw(api, srv.url)
    refused(r, "CERTIFICATE_ERROR", "not trusted", sha1)
    result = probe(api, srv.url)
    assert result["status"] == "CERTIFICATE_ERROR" and result["ssl_thumbprint"] == sha1, result
    assert sha1 in result["error_messages"][0]["default_message"]

    # a wrong thumbprint: refused the same way (SHA-1 and SHA-256 forms)
    wrong1 = vcsptree.thumbprint(b"another certificate", "sha1")
    wrong256 = vcsptree.thumbprint(b"another certificate", "sha256")
    for wrong in (wrong1, wrong256):
        r = subkit.subscribe_raw(api, srv.url, thumbprint=wrong)
        refused(r, "CERTIFICATE_ERROR", "does not match", sha1)
        result = probe(api, srv.url, thumbprint=wrong)
        assert result["status"] == "CERTIFICATE_ERROR" and result["ssl_thumbprint"] == sha1, result
    assert libraries(api) == []

    # the right thumbprint, SHA-1 (vCenter's) or SHA-256, in either case and with or without colons
    assert probe(api, srv.url, thumbprint=sha1) == {"status": "SUCCESS", "ssl_thumbprint": sha1, "error_messages": []}
    assert probe(api, srv.url, thumbprint=sha256.replace(":", "").lower())["status"] == "SUCCESS"
    for pin in (sha1, sha256):
        sl = subkit.subscribe(api, srv.url, thumbprint=pin)
        subkit.wait_synced(api, sub, sl)
        assert_holds(api, item_ids(api, sl)["tls"], files)
        assert subkit.library(api, sl)["subscription_info"]["ssl_thumbprint"] == pin

    # trusted as a trusted certificate: no thumbprint needed (the certificate names 127.0.0.1 in its SAN)
    r = api.post("/api/content/trusted-certificates", json={"cert_text": srv.cert_pem})
    assert r.status_code == 201, r.text
    assert probe(api, srv.url)["status"] == "SUCCESS"
    sl = subkit.subscribe(api, srv.url)
    subkit.wait_synced(api, sub, sl)
    assert_holds(api, item_ids(api, sl)["tls"], files)
    # and no longer once it is removed: the next sync is refused, the item stays
    before = snapshot(api, item_ids(api, sl)["tls"])
    r = api.delete(f"/api/content/trusted-certificates/{r.json()}")
    assert r.status_code == 204, r.text
    refused(api.post(f"{SUB}/{sl}", params={"action": "sync"}), "CERTIFICATE_ERROR", "not trusted")
    assert snapshot(api, item_ids(api, sl)["tls"]) == before


def test_https_publisher_changes_certificate(
    tmp_path: Path,
    tls_tree: tuple[vcsptree.StaticServer, dict[str, bytes]],
    make_server: Callable[..., ServerProcess],
) -> None:
    """The thumbprint is checked whenever the subscription changes: a publisher showing another certificate is
    refused, and the library keeps what it has."""
    srv, _files = tls_tree
    sub = make_server()
    api = Api(sub.base)
    sl = subkit.subscribe(api, srv.url, thumbprint=srv.thumbprint())
    subkit.wait_synced(api, sub, sl)
    item = item_ids(api, sl)["tls"]
    before = snapshot(api, item)
    old = srv.thumbprint()
    with vcsptree.StaticServer(srv.directory, tls=tmp_path / "other-tls") as moved:
        assert moved.thumbprint() != old
        r = api.patch(f"{SUB}/{sl}", json={"subscription_info": {"subscription_url": moved.url}})
        refused(r, "CERTIFICATE_ERROR", "does not match", moved.thumbprint())
    assert snapshot(api, item) == before


# -- 3. probe statuses ------------------------------------------------------------------------------------------------
def test_probe_statuses(server: ServerProcess, tmp_path: Path) -> None:
    api = Api(server.base)
    _lib, url = subkit.publish(api)
    assert probe(api, url) == {"status": "SUCCESS", "error_messages": []}

    for bad in ("ftp://127.0.0.1/lib.json", "garbage", "http://", "http://127.0.0.1:notaport/lib.json"):
        result = probe(api, bad)
        assert result["status"] == "INVALID_URL", (bad, result)

    started = time.monotonic()
    result = probe(api, "http://nonexistent.invalid/lib.json")
    assert result["status"] == "HOST_NOT_FOUND", result
    assert "nonexistent.invalid" in result["error_messages"][0]["default_message"]
    assert time.monotonic() - started < 10, "a name that cannot resolve is said quickly"

    assert probe(api, f"{server.base}/cls/vcsp/lib/{'0' * 8}-0000-0000-0000-{'0' * 12}/lib.json")["status"] in (
        "RESOURCE_NOT_FOUND",
    )
    assert probe(api, url.replace("lib.json", "no-such.json"))["status"] == "RESOURCE_NOT_FOUND"

    root = tmp_path / "notvcsp"
    root.mkdir()
    (root / "lib.json").write_text('{"hello": "world"}')
    (root / "page.html").write_text("<html>not json</html>")
    (root / "list.json").write_text("[1, 2, 3]")
    with vcsptree.StaticServer(root) as srv:
        for name in ("lib.json", "page.html", "list.json"):
            result = probe(api, srv.base + name)
            assert result["status"] == "RESOURCE_NOT_FOUND", (name, result)
        assert probe(api, srv.base + "missing/lib.json")["status"] == "RESOURCE_NOT_FOUND"
        r = subkit.subscribe_raw(api, srv.base + "lib.json")
        refused(r, "RESOURCE_NOT_FOUND", srv.base)

    closed = f"http://127.0.0.1:{free_port()}/lib.json"  # nothing listens there
    assert probe(api, closed)["status"] == "UNKNOWN_ERROR"
    r = subkit.subscribe_raw(api, "ftp://127.0.0.1/lib.json")
    assert_error(r, 400, "INVALID_ARGUMENT", "subscription_url")


# -- 4. the publisher goes away in the middle of a sync ---------------------------------------------------------------
def test_publisher_down_mid_sync(tmp_path: Path, make_server: Callable[..., ServerProcess]) -> None:
    big1, small = os.urandom(64 * MiB), os.urandom(100 * 1024)
    root = vcsptree.build_tree(tmp_path / "tree", {"big": {"big.iso": big1}, "small": {"small.iso": small}})
    sub = make_server()
    api = Api(sub.base)
    with FaultyServer(root) as pub:
        # the file is cut in the middle: the sync fails, the item gets no file, the staged bytes go
        pub.cut["big.iso"] = 32 * MiB
        sl = subkit.subscribe(api, pub.url)
        line = subkit.wait_failed(sub, sl)
        assert "big" in line, line
        assert pub.sent["big.iso"] == 32 * MiB  # it failed in the middle of the file
        ids = item_ids(api, sl)
        assert uncached(snapshot(api, ids["big"]), {"big.iso"}), snapshot(api, ids["big"])
        assert_holds(api, ids["small"], {"small.iso": small})  # the other item is whole
        wait(lambda: len(stored(sub)) == 1, "the cut file's staged bytes to go", srv=sub)

        # the publisher stops while the file comes, slowly
        del pub.cut["big.iso"]
        pub.sent.clear()
        pub.rate = 8 * MiB
        failed = background_failures(sub, sl)
        with Watch(api, sl, {"big": {"big.iso"}}) as watch:
            r = api.post(f"{SUB}/{sl}", params={"action": "sync"})
            assert r.status_code == 204, r.text
            wait(lambda: pub.sent.get("big.iso", 0) > 4 * MiB, "the transfer to start")
            pub.stop()
            line = subkit.wait_failed(sub, sl, failed)
        assert watch.check() > 0
        assert pub.sent["big.iso"] < 64 * MiB
        assert uncached(snapshot(api, ids["big"]), {"big.iso"})
        # while it is down, a sync is refused at once
        refused(api.post(f"{SUB}/{sl}", params={"action": "sync"}), "UNKNOWN_ERROR", "connect")

        # back: the next sync mirrors it fully
        pub.rate = None
        pub.start()
        subkit.sync(api, sub, sl)
        assert_holds(api, ids["big"], {"big.iso": big1})
        assert_holds(api, ids["small"], {"small.iso": small})

        # a new content version cut in the middle: the item keeps the old one exactly
        big2 = os.urandom(64 * MiB)
        (root / "big" / "big.iso").write_bytes(big2)
        vcsptree.make_vcsp(root)
        pub.cut["big.iso"] = 16 * MiB
        pub.sent.clear()
        failed = background_failures(sub, sl)
        with Watch(api, sl) as watch:
            assert api.post(f"{SUB}/{sl}", params={"action": "sync"}).status_code == 204
            subkit.wait_failed(sub, sl, failed)
        assert watch.check() > 0
        assert_holds(api, ids["big"], {"big.iso": big1})
        wait(lambda: len(stored(sub)) == 2, "the cut file's staged bytes to go", srv=sub)

        del pub.cut["big.iso"]
        subkit.sync(api, sub, sl)
        assert_holds(api, ids["big"], {"big.iso": big2})
        wait(lambda: len(stored(sub)) == 2, "the old content's bytes to go", srv=sub)


# -- 5. bytes that are not what the feed says --------------------------------------------------------------------------
def test_file_size_differs_from_feed(tmp_path: Path, make_server: Callable[..., ServerProcess]) -> None:
    data = os.urandom(MiB + 5)
    root = vcsptree.build_tree(tmp_path / "tree", {"iso": {"disk.iso": data}})
    path = root / "iso" / "disk.iso"
    sub = make_server()
    api = Api(sub.base)
    with vcsptree.StaticServer(root) as pub:
        path.write_bytes(data[: len(data) // 2])  # truncated after the feed was written
        sl = subkit.subscribe(api, pub.url)
        line = subkit.wait_failed(sub, sl)
        assert f"has {len(data) // 2} bytes but its declared size is {len(data)} bytes" in line, line
        item = item_ids(api, sl)["iso"]
        assert uncached(snapshot(api, item), {"disk.iso"})

        path.write_bytes(data + b"more bytes than the feed says")
        failed = background_failures(sub, sl)
        assert api.post(f"{SUB}/{sl}", params={"action": "sync"}).status_code == 204
        line = subkit.wait_failed(sub, sl, failed)
        assert f"larger than its declared size of {len(data)} bytes" in line, line
        assert uncached(snapshot(api, item), {"disk.iso"})
        wait(lambda: stored(sub) == [], "the staged bytes to go", srv=sub)

        path.write_bytes(data)  # fixed: the feed is right again
        subkit.sync(api, sub, sl)
        assert_holds(api, item, {"disk.iso": data})

        # a new version whose file then shrinks: the item keeps the one it has
        data2 = os.urandom(MiB)
        path.write_bytes(data2)
        vcsptree.make_vcsp(root)
        path.write_bytes(data2[:-1])
        before = snapshot(api, item)
        failed = background_failures(sub, sl)
        with Watch(api, sl) as watch:
            assert api.post(f"{SUB}/{sl}", params={"action": "sync"}).status_code == 204
            subkit.wait_failed(sub, sl, failed)
        assert watch.check() > 0
        assert snapshot(api, item) == before
        path.write_bytes(data2)
        subkit.sync(api, sub, sl)
        assert_holds(api, item, {"disk.iso": data2})


def test_ovf_disk_differs_from_manifest(tmp_path: Path, make_server: Callable[..., ServerProcess]) -> None:
    def package(label: str) -> ovfkit.Package:
        return ovfkit.build_package("vm", disks={"vm-disk1.vmdk": ovfkit.disk_bytes(label, 3 * MiB)})

    pkg1 = package("one")
    root = vcsptree.build_tree(tmp_path / "tree", {"vm": pkg1.files, "other": {"other.iso": b"x" * 4096}})
    disk = root / "vm" / "vm-disk1.vmdk"
    good = disk.read_bytes()
    bad = bytearray(good)
    bad[1000] ^= 0xFF
    stat = disk.stat()
    disk.write_bytes(bytes(bad))  # the same size, and the tool's cache says unchanged: the feed does not move
    os.utime(disk, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    sub = make_server()
    api = Api(sub.base)
    names = set(pkg1.files)
    with vcsptree.StaticServer(root) as pub:
        sl = subkit.subscribe(api, pub.url)
        line = subkit.wait_failed(sub, sl)
        assert "vm: " in line and "The SHA256 digest of 'vm-disk1.vmdk'" in line, line
        ids = item_ids(api, sl)
        assert uncached(snapshot(api, ids["vm"]), names), snapshot(api, ids["vm"])
        assert_holds(api, ids["other"], {"other.iso": b"x" * 4096})
        wait(lambda: len(stored(sub)) == 1, "the staged bytes to go", srv=sub)

        disk.write_bytes(good)
        subkit.sync(api, sub, sl)
        assert_holds(api, ids["vm"], pkg1.kept())
        before = snapshot(api, ids["vm"])

        # a new version of the package whose disk is then corrupted: the item keeps the version it has
        pkg2 = package("two")
        vcsptree.write_items(root, {"vm": pkg2.files})
        vcsptree.make_vcsp(root)
        good2 = disk.read_bytes()
        bad2 = bytearray(good2)
        bad2[-1] ^= 0x01
        disk.write_bytes(bytes(bad2))
        failed = background_failures(sub, sl)
        with Watch(api, sl) as watch:
            assert api.post(f"{SUB}/{sl}", params={"action": "sync"}).status_code == 204
            subkit.wait_failed(sub, sl, failed)
        assert watch.check() > 0
        assert snapshot(api, ids["vm"]) == before
        assert_holds(api, ids["vm"], pkg1.kept())

        disk.write_bytes(good2)
        subkit.sync(api, sub, sl)
        assert_holds(api, ids["vm"], pkg2.kept())
        assert int(snapshot(api, ids["vm"])["content_version"]) > int(before["content_version"])


# -- 6. the subscriber killed in the middle of a sync ------------------------------------------------------------------
def test_sigkill_mid_sync(tmp_path: Path, make_server: Callable[..., ServerProcess]) -> None:
    big1 = os.urandom(64 * MiB)
    root = vcsptree.build_tree(tmp_path / "tree", {"big": {"big.iso": big1}})
    sub = make_server()
    api = Api(sub.base)
    with FaultyServer(root) as pub:
        pub.rate = 4 * MiB
        sl = subkit.subscribe(api, pub.url)
        item = wait(lambda: item_ids(api, sl).get("big"), "the item's metadata", srv=sub)
        wait(lambda: pub.sent.get("big.iso", 0) > 8 * MiB, "the transfer to start", srv=sub)
        assert uncached(snapshot(api, item), {"big.iso"})
        sub.kill()
        assert pub.sent["big.iso"] < 64 * MiB
        assert len(stored(sub)) == 1, stored(sub)  # the part written (on S3: a multipart upload still open)
        pub.rate = None
        sub.start()
        api = Api(sub.base)
        # the interrupted sync runs again by itself; meanwhile the item has no file or all of them
        with Watch(api, sl, {"big": {"big.iso"}}) as watch:
            subkit.wait_synced(api, sub, sl)
        assert watch.check() > 0
        assert_holds(api, item, {"big.iso": big1})
        wait(lambda: len(stored(sub)) == 1, "no orphaned blob", srv=sub)

        # killed while a new version comes: the old one stays until the new one is whole
        big2 = os.urandom(64 * MiB)
        (root / "big" / "big.iso").write_bytes(big2)
        vcsptree.make_vcsp(root)
        pub.sent.clear()
        pub.rate = 4 * MiB
        before = snapshot(api, item)
        assert api.post(f"{SUB}/{sl}", params={"action": "sync"}).status_code == 204
        wait(lambda: pub.sent.get("big.iso", 0) > 8 * MiB, "the transfer to start", srv=sub)
        sub.kill()
        pub.rate = None
        sub.start()
        api = Api(sub.base)
        assert_whole(snapshot(api, item), before)
        with Watch(api, sl) as watch:
            wait(lambda: snapshot(api, item)["files"] != before["files"], "the new version", srv=sub)
        assert watch.check() > 0
        assert_holds(api, item, {"big.iso": big2})
        wait(lambda: len(stored(sub)) == 1, "no orphaned blob", srv=sub)
