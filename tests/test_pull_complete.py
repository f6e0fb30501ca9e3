"""`complete` while PULL files are still arriving (REFERENCE.md §2: for PULL, complete "may return before the changes
become visible"; the client tracks the session with get). What `govc library.import -pull` relies on: it adds a PULL
file, completes at once, and polls the session until it is no longer ACTIVE.

The session stays ACTIVE (marked completing) until its last pull has ended, then it is published exactly as a complete
would publish it (DONE), or it fails with the reason a complete would have given (ERROR, error_message). Meanwhile
nothing can change its files or its warning behavior, cancel and fail still end it, and a repeated complete is a
no-op. A restart of the server mid-pull fails the session instead of leaving it completing forever.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import ovfkit as k
import requests
from conftest import Api, ServerProcess, assert_error
from test_pull import US, Origin, add_pull, origin, wait_file  # noqa: F401 - the origin fixture


def wait_state(api: Api, sid: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        session = api.session(sid)
        if session["state"] != "ACTIVE":
            return session
        assert time.monotonic() < deadline, f"session {sid} still ACTIVE: {session}"
        time.sleep(0.05)


def gated(origin: Origin, data: bytes) -> tuple[str, threading.Event]:  # noqa: F811
    """A source that sends half its bytes, then waits for the gate."""
    uri = origin.serve(data)
    gate = threading.Event()
    origin.gates[uri[len(origin.url("")) :]] = gate
    return uri, gate


def test_complete_returns_at_once_and_publishes_when_the_pull_ends(api: Api, origin: Origin) -> None:  # noqa: F811
    data = os.urandom(300_000)
    uri, gate = gated(origin, data)
    item = api.create_item()
    sid = api.create_session(item)
    api.upload(sid, "pushed.txt", b"pushed before the pull ended\n")
    add_pull(api, sid, "pulled.bin", uri, size=len(data))
    try:
        api.complete(sid)  # 204 while the pull is still running
        session = api.session(sid)
        assert session["state"] == "ACTIVE", session
        assert api.item_files(item) == {}  # nothing visible before the pull has ended
        api.complete(sid)  # again: a no-op
    finally:
        gate.set()
    assert wait_state(api, sid)["state"] == "DONE"
    assert api.download(item, "pulled.bin") == data
    assert sorted(api.item_files(item)) == ["pulled.bin", "pushed.txt"]
    assert api.get(f"/api/content/library/item/{item}").json()["content_version"] == "2"


def test_nothing_changes_a_completing_session(api: Api, origin: Origin) -> None:  # noqa: F811
    data = os.urandom(200_000)
    uri, gate = gated(origin, data)
    item = api.create_item()
    api.put_files(item, {"old.txt": b"old\n"})
    sid = api.create_session(item)
    pushed = api.add_file(sid, "pushed.txt", b"x\n")
    assert requests.put(pushed["upload_endpoint"]["uri"], data=b"x\n", timeout=30).status_code == 200
    add_pull(api, sid, "pulled.bin", uri)
    try:
        api.complete(sid)
        r = api.post(f"{US}/{sid}/file", json={"name": "late.bin", "source_type": "PUSH"})
        assert_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE", "completing")
        assert_error(api.delete(f"{US}/{sid}/file/old.txt"), 400, "NOT_ALLOWED_IN_CURRENT_STATE", "completing")
        r = api.patch(f"{US}/{sid}", json={"warning_behavior": [{"type": "SELF_SIGNED_CERTIFICATE", "ignored": True}]})
        assert_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE", "completing")
        r = requests.put(pushed["upload_endpoint"]["uri"], data=b"y\n", timeout=30)
        assert_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE", "completing")
        r = api.post(f"{US}/{sid}?action=keep-alive", json={"client_progress": 50})
        assert r.status_code == 204, r.text
        assert {f["name"] for f in api.get(f"{US}/{sid}/file").json()} == {"old.txt", "pushed.txt", "pulled.bin"}
    finally:
        gate.set()
    assert wait_state(api, sid)["state"] == "DONE"
    assert api.download(item, "pushed.txt") == b"x\n"
    assert sorted(api.item_files(item)) == ["old.txt", "pulled.bin", "pushed.txt"]


def test_a_pull_that_fails_after_complete_fails_the_session(api: Api, origin: Origin) -> None:  # noqa: F811
    data = os.urandom(200_000)
    uri, gate = gated(origin, data)
    item = api.create_item()
    api.put_files(item, {"old.txt": b"old\n"})
    before = api.get(f"/api/content/library/item/{item}").json()
    sid = api.create_session(item)
    add_pull(api, sid, "pulled.bin", uri, size=len(data) + 1)  # the source has one byte less than declared
    try:
        api.complete(sid)
    finally:
        gate.set()
    session = wait_state(api, sid)
    assert session["state"] == "ERROR", session
    text = session["error_message"]["default_message"]
    assert "pulled.bin" in text and "declared size" in text, text
    assert api.get(f"/api/content/library/item/{item}").json() == before
    assert api.download(item, "old.txt") == b"old\n"


def test_cancel_while_completing(api: Api, origin: Origin) -> None:  # noqa: F811
    data = os.urandom(200_000)
    uri, gate = gated(origin, data)
    item = api.create_item()
    sid = api.create_session(item)
    add_pull(api, sid, "pulled.bin", uri)
    try:
        api.complete(sid)
        r = api.post(f"{US}/{sid}?action=cancel")
        assert r.status_code == 204, r.text
    finally:
        gate.set()
    time.sleep(0.5)
    assert api.session(sid)["state"] == "CANCELED"
    assert api.item_files(item) == {}


def test_an_invalid_package_found_after_the_pull_fails_the_session(api: Api, origin: Origin) -> None:  # noqa: F811
    """The pulled descriptor references a disk the session does not have: what a complete would refuse, the
    completing session fails with."""
    pkg = k.build_package("vm", with_manifest=False)
    descriptor = pkg.files["vm.ovf"]
    uri, gate = gated(origin, descriptor)
    item = api.create_item()
    sid = api.create_session(item)
    add_pull(api, sid, "vm.ovf", uri, size=len(descriptor))
    try:
        api.complete(sid)
    finally:
        gate.set()
    session = wait_state(api, sid)
    assert session["state"] == "ERROR", session
    assert "vm-disk1.vmdk" in session["error_message"]["default_message"], session
    assert api.item_files(item) == {}


def test_a_restart_mid_pull_fails_the_completing_session(
    make_server: Callable[..., ServerProcess],
    origin: Origin,  # noqa: F811
) -> None:
    srv = make_server()
    api = Api(srv.base)
    data = os.urandom(200_000)
    uri, gate = gated(origin, data)
    item = api.create_item()
    sid = api.create_session(item)
    add_pull(api, sid, "pulled.bin", uri)
    api.complete(sid)
    srv.kill()
    gate.set()
    srv.start()
    api = Api(srv.base)
    session = wait_state(api, sid)
    assert session["state"] == "ERROR", session
    assert "interrupted" in session["error_message"]["default_message"], session
    assert api.item_files(item) == {}
    assert wait_file(api, sid, "pulled.bin")["status"] == "ERROR"
