"""Hostile input on the legacy /rest dialect (issue 10): what tests/test_hostile_http.py and test_hostile_json.py do
to /api, sent to /rest. Every answer is the dialect's error envelope (docs/rest-dialect.md) with the runtime's
status, never a 500 or a traceback, and nothing is written for a refused request."""

from __future__ import annotations

import json

import pytest
import requests
from conftest import ADMIN_PASSWORD, ADMIN_USER, Api, ServerProcess
from test_hostile_http import connect, head_bytes, raw_request, read_until_closed, statuses
from test_legacy_rest import ITEM, LIB, SESSION, US, USF, Rest, check_error

DEPTH = 100_000
REST_LOCAL = "/rest/com/vmware/content/local-library"


def legacy_error(status: int, body: bytes, want_status: int, error_type: str, *words: str) -> None:
    assert status == want_status, body
    error = json.loads(body)
    assert error["type"] == f"com.vmware.vapi.std.errors.{error_type.lower()}", error
    assert error["value"]["error_type"] == error_type, error
    text = error["value"]["messages"][0]["default_message"].lower()
    assert all(w.lower() in text for w in words), text


@pytest.fixture()
def rest(server: ServerProcess) -> Rest:
    return Rest(server.base)


def test_deeply_nested_body_is_invalid_argument(rest: Rest, api: Api) -> None:
    body = b'{"create_spec": ' + b'{"a": ' * DEPTH + b"1" + b"}" * DEPTH + b"}"
    value = check_error(rest.call("POST", f"{REST_LOCAL}", data=body), "INVALID_ARGUMENT")
    assert "nested" in value["messages"][0]["default_message"]
    sid = api.create_session()
    check_error(rest.call("PATCH", f"{US}/id:{sid}", data=b"[" * DEPTH + b"]" * DEPTH), "INVALID_ARGUMENT")
    assert api.session(sid)["warning_behavior"] == []


def test_non_utf8_headers_and_cookies(api: Api, server: ServerProcess) -> None:
    sid = api.session_id
    assert sid
    status, body = raw_request(server, head_bytes("GET", LIB.encode(), [b"vmware-api-session-id: \xff" + sid.encode()]))
    legacy_error(status, body, 400, "INVALID_ARGUMENT", "vmware-api-session-id", "utf-8")
    status, body = raw_request(server, head_bytes("POST", SESSION.encode(), [b"Authorization: Basic \xff\xfe"]))
    legacy_error(status, body, 400, "INVALID_ARGUMENT", "authorization", "utf-8")
    status, body = raw_request(server, head_bytes("POST", SESSION.encode(), [b"Authorization: Basic w7/Dvg=="]))
    legacy_error(status, body, 401, "UNAUTHENTICATED", "basic")
    status, body = raw_request(server, head_bytes("GET", LIB.encode(), [b"Cookie: vmware-api-session-id=\xff\xfe"]))
    legacy_error(status, body, 400, "INVALID_ARGUMENT", "cookie", "utf-8")
    spec = json.dumps({"create_spec": {"library_item_id": api.create_item()}}).encode()
    head = head_bytes(
        "POST", US.encode(), [f"vmware-api-session-id: {sid}".encode(), b"Content-Type: application/json"], len(spec)
    ).replace(b"Host: 127.0.0.1", b"Host: \xff\xfe")
    status, body = raw_request(server, head, spec)
    legacy_error(status, body, 400, "INVALID_ARGUMENT", "host", "utf-8")


def test_non_utf8_in_paths_and_bodies(rest: Rest, api: Api, server: ServerProcess) -> None:
    sid = rest.http.headers["vmware-api-session-id"]
    auth = [f"vmware-api-session-id: {sid}".encode()]
    with connect(server.base) as s:  # raw bytes in the request target break HTTP itself
        s.sendall(head_bytes("GET", LIB.encode() + b"/id:\xff\xfe", auth))
        data, closed = read_until_closed(s)
    assert closed and statuses(data) == [400], data
    status, body = raw_request(server, head_bytes("GET", LIB.encode() + b"/id:%ff%fe", auth))
    legacy_error(status, body, 404, "NOT_FOUND")
    session = api.create_session()
    for bad in (b"\xff\xfe", b"\\udcff"):
        add = b'{"file_spec": {"name": "' + bad + b'", "source_type": "PUSH"}}'
        r = rest.call("POST", f"{USF}/id:{session}", params={"~action": "add"}, data=add)
        check_error(r, "INVALID_ARGUMENT")
    assert api.get(f"/api/content/library/item/update-session/{session}/file").json() == []


@pytest.mark.parametrize("ident", ["", "..", "%2e%2e%2fx", "a%00b", "x" * 5000, "%0a", "id:id:x"])
def test_odd_ids_name_nothing(rest: Rest, ident: str) -> None:
    r = rest.call("GET", f"{ITEM}/id:{ident}")
    value = check_error(r)
    assert value["error_type"] in ("NOT_FOUND", "INVALID_ARGUMENT"), value


def test_the_header_wins_over_the_cookie(server: ServerProcess, api: Api) -> None:
    http = requests.Session()
    http.trust_env = False
    r = http.post(server.base + SESSION, auth=(ADMIN_USER, ADMIN_PASSWORD))
    assert r.status_code == 200
    # A stale header with a good cookie: the header is what counts (as on vCenter), so the call is refused.
    r = http.get(server.base + LIB, headers={"vmware-api-session-id": "f" * 32})
    check_error(r, "UNAUTHENTICATED")
    assert http.get(server.base + LIB).status_code == 200


def test_duplicate_and_empty_actions(rest: Rest, api: Api) -> None:
    sid = api.create_session()
    api.add_file(sid, "waiting.bin", b"never sent")
    # The first ~action counts: a complete with a file still waiting is refused, and the session stays ACTIVE.
    r = rest.call("POST", f"{US}/id:{sid}?~action=complete&~action=cancel")
    check_error(r, "NOT_ALLOWED_IN_CURRENT_STATE")
    assert api.session(sid)["state"] == "ACTIVE"
    check_error(rest.call("POST", f"{US}/id:{sid}?~action="), "OPERATION_NOT_FOUND")
    check_error(rest.call("POST", f"{US}/id:{sid}?~action=%00"), "OPERATION_NOT_FOUND")


def test_server_still_serves(rest: Rest) -> None:
    r = rest.call("GET", LIB)
    assert r.status_code == 200 and isinstance(r.json()["value"], list)
    assert rest.call("POST", SESSION, params={"~action": "get"}).json()["value"]["user"] == ADMIN_USER
