"""Restart persistence (SIGTERM and kill -9) and an upload cut by a crash.

Contract: issue 2 §10 (everything — libraries, items, sessions, files, users, API sessions — persists; a
restart loses nothing that was acknowledged; an upload cut by a restart leaves its file in ERROR and the
client can add it again), §4 (one ACTIVE session per item), §7 (complete publishes the session's view).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from conftest import ADMIN_USER, Api, ServerProcess, assert_error

US = "/api/content/library/item/update-session"
WB = [{"type": "SELF_SIGNED_CERTIFICATE", "ignored": True}, {"type": "EXPIRED_CERTIFICATE", "ignored": False}]
USER, USER_PASSWORD = "carol@vsphere.local", "Carol!23-secret"


def put(uri: str, data: Any, timeout: float = 60) -> requests.Response:
    """A data-plane PUT without the API session header (the URL is the credential), ignoring proxy env."""
    with requests.Session() as http:
        http.trust_env = False
        return http.put(uri, data=data, timeout=timeout)


def cli(srv: ServerProcess, *args: str, stdin: str = "") -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "contentlib", "user", *args, *srv.store_args()],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def get_json(api: Api, path: str) -> Any:
    r = api.get(path)
    assert r.status_code == 200, f"{path}: {r.status_code} {r.text}"
    return r.json()


def file_info(api: Api, sid: str, name: str) -> dict[str, Any]:
    return dict(get_json(api, f"{US}/{sid}/file/{name}"))


def without(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_restart_keeps_everything(make_server: Callable[..., ServerProcess], how: str) -> None:
    srv = make_server()
    api = Api(srv.base)
    cli(srv, "add", USER, stdin=USER_PASSWORD + "\n")

    lib = api.create_library(description="kept across restarts")
    item1 = api.create_item(lib, description="published content")
    big = os.urandom(300_000)
    api.put_files(item1, {"a.txt": b"alpha", "big.bin": big})
    api.put_files(item1, {"a.txt": b"alpha v2"})
    # Terminal sessions of every kind on item1.
    canceled = api.create_session(item1)
    api.upload(canceled, "discard.bin", b"discarded")
    assert api.post(f"{US}/{canceled}?action=cancel").status_code == 204
    failed = api.create_session(item1, warning_behavior=WB)
    r = api.post(f"{US}/{failed}?action=fail", json={"client_error_message": "client gave up"})
    assert r.status_code == 204, r.text
    # An ACTIVE session with a READY staged file, warning_behavior and progress.
    item2 = api.create_item(lib)
    staged = os.urandom(50_000)
    ready_sid = api.create_session(item2)
    api.upload(ready_sid, "staged.bin", staged)
    assert api.patch(f"{US}/{ready_sid}", json={"warning_behavior": WB}).status_code == 204
    r = api.post(f"{US}/{ready_sid}?action=keep-alive", json={"client_progress": 30})
    assert r.status_code == 204, r.text
    # An ACTIVE session whose file waits for its upload.
    item3 = api.create_item(lib)
    later = b"uploaded after the restart"
    waiting_sid = api.create_session(item3)
    waiting = api.add_file(waiting_sid, "later.bin", later)
    assert waiting["status"] == "WAITING_FOR_TRANSFER"

    sessions = [canceled, failed, ready_sid, waiting_sid]
    before: dict[str, Any] = {
        "library": get_json(api, f"/api/content/local-library/{lib}"),
        "libraries": sorted(get_json(api, "/api/content/local-library")),
        "items": {i: get_json(api, f"/api/content/library/item/{i}") for i in (item1, item2, item3)},
        "item_list": sorted(get_json(api, f"/api/content/library/item?library_id={lib}")),
        "files": {i: api.item_files(i) for i in (item1, item2, item3)},
        "sessions": {s: api.session(s) for s in sessions},
        "session_files": {s: get_json(api, f"{US}/{s}/file") for s in (ready_sid, waiting_sid)},
        "session_list": sorted(get_json(api, US)),
    }
    assert before["items"][item1]["content_version"] == "3"
    assert before["files"][item1]["a.txt"]["version"] == "2"
    assert before["sessions"][ready_sid]["warning_behavior"] == WB
    assert before["sessions"][failed]["warning_behavior"] == WB

    if how == "sigterm":
        srv.restart()
    else:
        srv.kill()
        srv.start()

    # The old API session id still works; both users can log in.
    who = get_json(api, "/api/session")
    assert who["user"] == ADMIN_USER
    Api(srv.base, USER, USER_PASSWORD)
    listed = cli(srv, "list")
    assert USER in listed and ADMIN_USER in listed

    assert get_json(api, f"/api/content/local-library/{lib}") == before["library"]
    assert sorted(get_json(api, "/api/content/local-library")) == before["libraries"]
    assert sorted(get_json(api, f"/api/content/library/item?library_id={lib}")) == before["item_list"]
    for i, info in before["items"].items():
        assert get_json(api, f"/api/content/library/item/{i}") == info
    for i, files in before["files"].items():
        assert api.item_files(i) == files
    assert sorted(get_json(api, US)) == before["session_list"]
    for s in (canceled, failed):
        assert api.session(s) == before["sessions"][s]
    for s in (ready_sid, waiting_sid):
        now = api.session(s)
        assert now["state"] == "ACTIVE"
        assert without(now, "expiration_time") == without(before["sessions"][s], "expiration_time")
        assert get_json(api, f"{US}/{s}/file") == before["session_files"][s]
    assert api.session(failed)["error_message"]["default_message"] == "client gave up"
    assert api.session(ready_sid)["client_progress"] == 30
    assert file_info(api, ready_sid, "staged.bin")["status"] == "READY"
    assert file_info(api, waiting_sid, "later.bin")["status"] == "WAITING_FOR_TRANSFER"

    # Bytes are intact.
    assert api.download(item1, "a.txt") == b"alpha v2"
    assert api.download(item1, "big.bin") == big

    # One ACTIVE session per item still holds, and the ACTIVE sessions carry on.
    assert_error(api.post(US, json={"library_item_id": item2}), 500, "RESOURCE_BUSY")
    api.complete(ready_sid)
    assert api.item_files(item2)["staged.bin"]["size"] == len(staged)
    assert api.download(item2, "staged.bin") == staged
    r = put(waiting["upload_endpoint"]["uri"], data=later, timeout=60)
    assert r.status_code == 200, r.text
    api.complete(waiting_sid)
    assert api.download(item3, "later.bin") == later
    assert api.session(ready_sid)["state"] == "DONE"


class CutBody:
    """A body of known length that stops after `cut` bytes until `release` is set, then sends the rest."""

    def __init__(self, data: bytes, cut: int, half: threading.Event, release: threading.Event) -> None:
        self.data, self.cut, self.half, self.release = data, cut, half, release

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[bytes]:
        chunk = 64 * 1024
        for i in range(0, len(self.data), chunk):
            if i == self.cut:
                self.half.set()
                self.release.wait(60)
            yield self.data[i : i + chunk]


def test_upload_cut_by_sigkill_leaves_file_in_error(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server()
    api = Api(srv.base)
    item = api.create_item()
    sid = api.create_session(item)
    data = os.urandom(8 * 1024 * 1024)
    info = api.add_file(sid, "cut.bin", data)
    half, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def upload() -> None:
        try:
            outcome["response"] = put(
                info["upload_endpoint"]["uri"], data=CutBody(data, 4 * 1024 * 1024, half, release), timeout=60
            )
        except requests.RequestException as e:
            outcome["error"] = e

    t = threading.Thread(target=upload, daemon=True)
    t.start()
    try:
        assert half.wait(30), "upload did not start"
        deadline = time.monotonic() + 10
        f = file_info(api, sid, "cut.bin")
        while not (f["status"] == "TRANSFERRING" and f["bytes_transferred"] > 0) and time.monotonic() < deadline:
            time.sleep(0.1)
            f = file_info(api, sid, "cut.bin")
        assert f["status"] == "TRANSFERRING", f
        assert 0 < f["bytes_transferred"] <= 4 * 1024 * 1024, f
        srv.kill()
    finally:
        release.set()
        t.join(60)
    assert "response" not in outcome or outcome["response"].status_code != 200, outcome

    srv.start()
    # The partial blob of the cut upload was an orphan; start-up removed it.
    assert srv.blob_ids() == [], srv.blob_ids()
    f = file_info(api, sid, "cut.bin")
    assert f["status"] == "ERROR", f
    assert f["error_message"]["default_message"], f
    assert api.session(sid)["state"] == "ACTIVE"
    assert_error(api.post(f"{US}/{sid}?action=complete"), 400, "NOT_ALLOWED_IN_CURRENT_STATE", "cut.bin")
    assert api.item_files(item) == {}

    # The client adds the file again and uploads it in full.
    again = api.add_file(sid, "cut.bin", data)
    assert again["status"] == "WAITING_FOR_TRANSFER"
    assert again["upload_endpoint"]["uri"] != info["upload_endpoint"]["uri"]
    r = put(again["upload_endpoint"]["uri"], data=data, timeout=120)
    assert r.status_code == 200, r.text
    f = file_info(api, sid, "cut.bin")
    assert f["status"] == "READY", f
    assert f["size"] == len(data)
    api.complete(sid)
    files = api.item_files(item)
    assert files["cut.bin"]["size"] == len(data)
    assert files["cut.bin"]["checksum_info"] == {
        "algorithm": "SHA1",
        "checksum": hashlib.sha1(data).hexdigest(),
    }
    assert api.download(item, "cut.bin") == data
    assert len(srv.blob_ids()) == 1  # exactly the published file's blob
