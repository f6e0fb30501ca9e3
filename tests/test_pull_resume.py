"""A PULL whose connection breaks mid-body continues with a Range request when its source serves ranges
(`Accept-Ranges: bytes`), guarded by `If-Range` with the source's ETag: a cut connection costs a request, not the
transfer (a subscribed library's sync fetches its publisher's files as PULLs). A source that changed meanwhile,
or serves no ranges, still fails the file, as before."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Api

DATA = os.urandom(6 * 1024 * 1024 + 123)


class Source:
    """An HTTP source of `data` in a thread: the first `cuts` full GETs stop after `cut_at` bytes (the connection is
    closed), ranged GETs are served (206) unless `ranges` is off, and with `change` the source has another ETag
    once a GET was cut (it changed meanwhile)."""

    def __init__(self, cut_at: int, cuts: int = 1, ranges: bool = True, change: bool = False) -> None:
        self.data, self.cut_at, self.cuts, self.ranges, self.change = DATA, cut_at, cuts, ranges, change
        self.etag = '"v1"'
        self.requests: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                data = owner.data
                wanted = self.headers.get("Range")
                owner.requests.append(wanted or "full")
                if wanted and owner.ranges and self.headers.get("If-Range") in (None, owner.etag):
                    start = int(wanted.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    body = data[start:]
                else:
                    self.send_response(200)
                    body = data
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", owner.etag)
                if owner.ranges:
                    self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if not wanted and owner.cuts > 0:
                    owner.cuts -= 1
                    self.wfile.write(body[: owner.cut_at])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # cut: the rest never comes
                    self.close_connection = True
                    if owner.change:
                        owner.etag = '"v2"'
                    return
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/disk.iso"


@pytest.fixture()
def source(request: pytest.FixtureRequest) -> Iterator[Source]:
    src = Source(**getattr(request, "param", {"cut_at": 2 * 1024 * 1024}))
    src.thread.start()
    yield src
    src.server.shutdown()
    src.server.server_close()


def pull(api: Api, url: str) -> tuple[str, dict[str, Any]]:
    """An update session with one PULL of `url` (its size and SHA-1 declared), once the file's transfer ended."""
    sid = api.create_session()
    api.post(
        f"/api/content/library/item/update-session/{sid}/file",
        json={
            "name": "disk.iso",
            "source_type": "PULL",
            "source_endpoint": {"uri": url},
            "size": len(DATA),
            "checksum_info": {"algorithm": "SHA1", "checksum": hashlib.sha1(DATA).hexdigest()},
        },
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = api.get(f"/api/content/library/item/update-session/{sid}/file/disk.iso").json()
        if info["status"] in ("READY", "ERROR"):
            return sid, info
        time.sleep(0.05)
    raise AssertionError("the pull did not end")


def test_a_cut_pull_resumes_with_a_range_request(api: Api, source: Source) -> None:
    sid, info = pull(api, source.url)
    assert info["status"] == "READY", info
    assert source.requests == ["full", f"bytes={source.cut_at}-"]
    api.complete(sid)
    item = api.session(sid)["library_item_id"]
    assert api.download(item, "disk.iso") == DATA


@pytest.mark.parametrize("source", [{"cut_at": 1024 * 1024, "cuts": 10}], indirect=True)
def test_resuming_gives_up_after_a_few_cuts(api: Api, source: Source) -> None:
    """The ranged requests are not cut here (only full ones are): 10 full cuts means the first resume works; with
    resumes cut too, the pull would stop after three."""
    _, info = pull(api, source.url)
    assert info["status"] == "READY" and len(source.requests) == 2


@pytest.mark.parametrize("source", [{"cut_at": 1024 * 1024, "ranges": False}], indirect=True)
def test_a_cut_pull_of_a_source_without_ranges_fails(api: Api, source: Source) -> None:
    _, info = pull(api, source.url)
    assert info["status"] == "ERROR" and source.requests == ["full"], info
    assert "disk.iso" in info["error_message"]["default_message"]


@pytest.mark.parametrize("source", [{"cut_at": 1024 * 1024, "change": True}], indirect=True)
def test_a_source_that_changed_is_not_spliced(api: Api, source: Source) -> None:
    """If-Range with the first answer's ETag: the source changed meanwhile, so it answers 200 with the whole new
    file, and the pull fails rather than join two versions."""
    _, info = pull(api, source.url)
    assert source.requests == ["full", "bytes=1048576-"]
    assert info["status"] == "ERROR", info
