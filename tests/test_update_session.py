"""Update sessions: every operation of `/api/content/library/item/update-session`, and the PATCH rules.

Contract: ../shared/api/REFERENCE.md §2 (semantics), §3 (status codes), A.2 `update_session` (errors per
operation), A.3 `UpdateSessionModel` (which fields get/list return), the seed page for PATCH
(../shared/seed/000_8303ed0824f0fd5b.txt) and issue 2 §4.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from conftest import Api, ServerProcess, assert_error

US = "/api/content/library/item/update-session"
ITEM = "/api/content/library/item"
DATETIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
WB_TWO = [
    {"type": "SELF_SIGNED_CERTIFICATE", "ignored": True},
    {"type": "UNTRUSTED_CERTIFICATE", "ignored": False},
]
WB_ONE = [{"type": "EXPIRED_CERTIFICATE", "ignored": True}]
TERMINAL = ["DONE", "CANCELED", "ERROR"]
# Fixed (not random) so that pytest-xdist workers collect identical parameters.
UNKNOWN_ID = "3f1d2c9e-0b7a-4e55-9d61-7c2a8f0e4b13"


# -- helpers ---------------------------------------------------------------------------------------------
def parse_time(value: str) -> datetime:
    assert DATETIME_RE.match(value), value
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC)


def action(api: Api, sid: str, name: str, body: Any = None, **kw: Any) -> requests.Response:
    if body is not None:
        kw["json"] = body
    return api.post(f"{US}/{sid}?action={name}", **kw)


def finish(api: Api, sid: str, state: str) -> None:
    """Move an ACTIVE session to a terminal state."""
    if state == "DONE":
        r = action(api, sid, "complete")
    elif state == "CANCELED":
        r = action(api, sid, "cancel")
    else:
        r = action(api, sid, "fail", {"client_error_message": "client side failure"})
    assert r.status_code == 204, r.text
    assert api.session(sid)["state"] == state


def list_ids(api: Api, item_id: str | None = None) -> list[str]:
    r = api.get(US, params={"library_item_id": item_id} if item_id else None)
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body, list), body
    return [str(x) for x in body]


def item_get(api: Api, item_id: str) -> dict[str, Any]:
    r = api.get(f"{ITEM}/{item_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def patch(api: Api, sid: str, body: Any = None, raw: bytes | None = None) -> requests.Response:
    if raw is not None:
        return api.patch(f"{US}/{sid}", data=raw, headers={"Content-Type": "application/json"})
    return api.patch(f"{US}/{sid}", json=body)


def assert_message_names(r: requests.Response, *alternatives: str) -> None:
    """The error message names the field: at least one of `alternatives` occurs in it."""
    text = " ".join(m["default_message"] for m in r.json()["messages"]).lower()
    assert any(a.lower() in text for a in alternatives), f"none of {alternatives} in {text!r}"


def add_user(srv: ServerProcess, name: str, password: str) -> None:
    """`contentlib user add NAME --data-dir DIR`, password on stdin (not a tty)."""
    proc = subprocess.run(
        [sys.executable, "-m", "contentlib", "user", "add", name, *srv.store_args()],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- create ----------------------------------------------------------------------------------------------
def test_create_returns_201_and_a_uuid(api: Api) -> None:
    item = api.create_item()
    r = api.post(US, json={"library_item_id": item})
    assert r.status_code == 201, r.text
    sid = r.json()
    assert isinstance(sid, str)
    uuid.UUID(sid)
    assert api.session(sid)["library_item_id"] == item


@pytest.mark.parametrize(
    "body",
    [{}, {"warning_behavior": []}, {"library_item_id": None}],
    ids=["empty", "only-warning-behavior", "null"],
)
def test_create_without_library_item_id_is_invalid(api: Api, body: dict[str, Any]) -> None:
    r = api.post(US, json=body)
    assert_error(r, 400, "INVALID_ARGUMENT", "library_item_id")


@pytest.mark.parametrize("value", [5, True, ["x"], {"id": "x"}], ids=["int", "bool", "list", "object"])
def test_create_library_item_id_wrong_type(api: Api, value: Any) -> None:
    r = api.post(US, json={"library_item_id": value})
    assert_error(r, 400, "INVALID_ARGUMENT", "library_item_id")


@pytest.mark.parametrize("raw", [b"{", b"[]", b'"x"', b"", b"{'library_item_id': 1}"])
def test_create_bad_body_is_invalid(api: Api, raw: bytes) -> None:
    r = api.post(US, data=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "INVALID_ARGUMENT")


def test_create_unknown_item_is_not_found(api: Api) -> None:
    missing = str(uuid.uuid4())
    r = api.post(US, json={"library_item_id": missing})
    assert_error(r, 404, "NOT_FOUND", missing)


def test_create_with_warning_behavior(api: Api) -> None:
    sid = api.create_session(warning_behavior=WB_TWO)
    assert api.session(sid)["warning_behavior"] == WB_TWO


@pytest.mark.parametrize("transport", ["header", "query"])
def test_client_token_gives_idempotent_create(api: Api, transport: str) -> None:
    item = api.create_item()
    token = str(uuid.uuid4())
    kw: dict[str, Any] = (
        {"headers": {"Client-Token": token}} if transport == "header" else {"params": {"client_token": token}}
    )
    r1 = api.post(US, json={"library_item_id": item}, **kw)
    assert r1.status_code == 201, r1.text
    r2 = api.post(US, json={"library_item_id": item}, **kw)
    assert r2.status_code == 201, r2.text
    assert r2.json() == r1.json()
    assert list_ids(api, item) == [r1.json()]
    # Another token (or none) is a different creation request: the item is busy.
    r3 = api.post(US, json={"library_item_id": item}, headers={"Client-Token": str(uuid.uuid4())})
    assert_error(r3, 500, "RESOURCE_BUSY")
    r4 = api.post(US, json={"library_item_id": item})
    assert_error(r4, 500, "RESOURCE_BUSY")
    assert list_ids(api, item) == [r1.json()]


def test_client_token_header_and_query_are_the_same_parameter(api: Api) -> None:
    item = api.create_item()
    token = str(uuid.uuid4())
    r1 = api.post(US, json={"library_item_id": item}, headers={"Client-Token": token})
    assert r1.status_code == 201, r1.text
    r2 = api.post(US, json={"library_item_id": item}, params={"client_token": token})
    assert r2.status_code == 201, r2.text
    assert r2.json() == r1.json()


@pytest.mark.parametrize("transport", ["header", "query"])
@pytest.mark.parametrize("token", ["not-a-uuid", "12345", "b8a2a2e3-2314-43cd-a871-6ede0f42975"])
def test_client_token_not_a_uuid_is_invalid(api: Api, transport: str, token: str) -> None:
    item = api.create_item()
    kw: dict[str, Any] = (
        {"headers": {"Client-Token": token}} if transport == "header" else {"params": {"client_token": token}}
    )
    r = api.post(US, json={"library_item_id": item}, **kw)
    assert_error(r, 400, "INVALID_ARGUMENT", "token")
    # Nothing was created: the item is not busy and has no session.
    assert list_ids(api, item) == []
    api.create_session(item)


# -- get -------------------------------------------------------------------------------------------------
def test_get_fields_of_a_new_session(api: Api) -> None:
    item = api.create_item()
    content_version = item_get(api, item)["content_version"]
    before = now()
    sid = api.create_session(item)
    s = api.session(sid)
    after = now()
    assert "id" not in s, s
    assert s["library_item_id"] == item
    assert s["library_item_content_version"] == content_version == "1"
    assert s["client_progress"] == 0
    assert s["state"] == "ACTIVE"
    assert s["preview_info"] == {"state": "UNAVAILABLE"}
    assert s.get("warning_behavior", []) == []
    assert "error_message" not in s
    # The shared server runs with the default 300 s update-session timeout.
    exp = parse_time(s["expiration_time"])
    assert before + timedelta(seconds=295) <= exp <= after + timedelta(seconds=305), (before, exp)


def test_get_content_version_is_the_items_at_creation(api: Api) -> None:
    item = api.create_item()
    api.put_files(item, {"a.txt": b"one"})
    version = item_get(api, item)["content_version"]
    assert version == "2"
    sid = api.create_session(item)
    assert api.session(sid)["library_item_content_version"] == version


@pytest.mark.parametrize("state", TERMINAL)
def test_get_terminal_session_has_no_preview_info(api: Api, state: str) -> None:
    item = api.create_item()
    sid = api.create_session(item, warning_behavior=WB_ONE)
    finish(api, sid, state)
    s = api.session(sid)
    assert s["state"] == state
    assert "preview_info" not in s, s
    assert "id" not in s, s
    assert s["library_item_id"] == item
    assert s["library_item_content_version"] == "1"
    assert s["client_progress"] == 0
    assert s["warning_behavior"] == WB_ONE
    parse_time(s["expiration_time"])
    if state == "ERROR":
        assert s["error_message"]["default_message"] == "client side failure"
    else:
        assert "error_message" not in s, s


@pytest.mark.parametrize("sid", [UNKNOWN_ID, "not-a-uuid"])
def test_get_unknown_session_is_not_found(api: Api, sid: str) -> None:
    assert_error(api.get(f"{US}/{sid}"), 404, "NOT_FOUND", sid)


# -- list ------------------------------------------------------------------------------------------------
def test_list_and_filter_by_item(api: Api) -> None:
    item1, item2 = api.create_item(), api.create_item()
    s1 = api.create_session(item1)
    s2 = api.create_session(item2)
    everything = list_ids(api)
    assert s1 in everything and s2 in everything
    assert list_ids(api, item1) == [s1]
    assert list_ids(api, item2) == [s2]
    # Terminal sessions are listed too, until they are deleted.
    finish(api, s1, "DONE")
    s1b = api.create_session(item1)
    assert sorted(list_ids(api, item1)) == sorted([s1, s1b])
    assert list_ids(api, api.create_item()) == []


def test_list_unknown_item_is_not_found(api: Api) -> None:
    missing = str(uuid.uuid4())
    assert_error(api.get(US, params={"library_item_id": missing}), 404, "NOT_FOUND", missing)


def test_list_shows_only_the_callers_sessions(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server()
    admin = Api(srv.base)
    add_user(srv, "bob@vsphere.local", "Bob!23-secret")
    bob = Api(srv.base, "bob@vsphere.local", "Bob!23-secret")
    lib = admin.create_library()
    item1, item2 = admin.create_item(lib), admin.create_item(lib)
    mine = admin.create_session(item1)
    his = bob.create_session(item2)
    assert list_ids(admin) == [mine]
    assert list_ids(bob) == [his]
    assert list_ids(admin, item2) == []
    assert list_ids(bob, item1) == []
    assert list_ids(bob, item2) == [his]


# -- delete ----------------------------------------------------------------------------------------------
def test_delete_active_session_not_allowed(api: Api) -> None:
    item = api.create_item()
    sid = api.create_session(item)
    assert_error(api.delete(f"{US}/{sid}"), 400, "NOT_ALLOWED_IN_CURRENT_STATE")
    assert api.session(sid)["state"] == "ACTIVE"
    assert list_ids(api, item) == [sid]


@pytest.mark.parametrize("state", TERMINAL)
def test_delete_terminal_session(api: Api, state: str) -> None:
    item = api.create_item()
    sid = api.create_session(item)
    finish(api, sid, state)
    r = api.delete(f"{US}/{sid}")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_error(api.get(f"{US}/{sid}"), 404, "NOT_FOUND", sid)
    assert_error(api.delete(f"{US}/{sid}"), 404, "NOT_FOUND", sid)
    assert list_ids(api, item) == []


def test_delete_unknown_session_is_not_found(api: Api) -> None:
    sid = str(uuid.uuid4())
    assert_error(api.delete(f"{US}/{sid}"), 404, "NOT_FOUND", sid)


# -- cancel / complete / fail / keep-alive -------------------------------------------------------------
def test_cancel_active_session(api: Api) -> None:
    item = api.create_item()
    before = item_get(api, item)
    sid = api.create_session(item)
    r = action(api, sid, "cancel")
    assert r.status_code == 204, r.text
    assert r.content == b""
    s = api.session(sid)
    assert s["state"] == "CANCELED"
    assert item_get(api, item) == before


def test_complete_empty_session(api: Api) -> None:
    item = api.create_item()
    sid = api.create_session(item)
    r = action(api, sid, "complete")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert api.session(sid)["state"] == "DONE"
    assert item_get(api, item)["content_version"] == "1"


def test_fail_stores_client_error_message(api: Api) -> None:
    item = api.create_item()
    before = item_get(api, item)
    sid = api.create_session(item)
    r = action(api, sid, "fail", {"client_error_message": "could not read disk.vmdk"})
    assert r.status_code == 204, r.text
    assert r.content == b""
    s = api.session(sid)
    assert s["state"] == "ERROR"
    msg = s["error_message"]
    assert msg["default_message"] == "could not read disk.vmdk"
    assert isinstance(msg["id"], str) and msg["id"]
    assert isinstance(msg["args"], list)
    assert item_get(api, item) == before


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"json": {}},
        {"json": {"client_error_message": None}},
        {"json": {"client_error_message": 5}},
        {"json": {"client_error_message": ["x"]}},
        {"json": {"message": "x"}},
    ],
    ids=["no-body", "empty", "null", "int", "list", "other-member"],
)
def test_fail_without_client_error_message_is_invalid(api: Api, kw: dict[str, Any]) -> None:
    sid = api.create_session()
    r = api.post(f"{US}/{sid}?action=fail", **kw)
    assert_error(r, 400, "INVALID_ARGUMENT", "client_error_message")
    s = api.session(sid)
    assert s["state"] == "ACTIVE"
    assert "error_message" not in s


@pytest.mark.parametrize("state", TERMINAL)
@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("cancel", None),
        ("complete", None),
        ("fail", {"client_error_message": "late"}),
        ("keep-alive", {"client_progress": 50}),
        ("keep-alive", {}),
    ],
    ids=["cancel", "complete", "fail", "keep-alive-progress", "keep-alive-empty"],
)
def test_actions_on_terminal_session_not_allowed(api: Api, state: str, name: str, body: Any) -> None:
    sid = api.create_session()
    finish(api, sid, state)
    before = api.session(sid)
    assert_error(action(api, sid, name, body), 400, "NOT_ALLOWED_IN_CURRENT_STATE")
    assert api.session(sid) == before


@pytest.mark.parametrize(
    ("name", "body"),
    [("cancel", None), ("complete", None), ("fail", {"client_error_message": "x"}), ("keep-alive", {})],
)
def test_actions_on_unknown_session_not_found(api: Api, name: str, body: Any) -> None:
    sid = str(uuid.uuid4())
    assert_error(action(api, sid, name, body), 404, "NOT_FOUND", sid)


def test_unknown_action_is_operation_not_found(api: Api) -> None:
    sid = api.create_session()
    assert_error(action(api, sid, "explode"), 404, "OPERATION_NOT_FOUND")
    assert api.session(sid)["state"] == "ACTIVE"


def test_keep_alive_without_progress(api: Api) -> None:
    sid = api.create_session()
    for kw in ({}, {"json": {}}):
        r = api.post(f"{US}/{sid}?action=keep-alive", **kw)
        assert r.status_code == 204, r.text
        assert r.content == b""
    s = api.session(sid)
    assert s["state"] == "ACTIVE"
    assert s["client_progress"] == 0


def test_keep_alive_client_progress_rules(api: Api) -> None:
    sid = api.create_session()
    assert action(api, sid, "keep-alive", {"client_progress": 10}).status_code == 204
    assert api.session(sid)["client_progress"] == 10
    # Equal to the current value: not below it, allowed.
    assert action(api, sid, "keep-alive", {"client_progress": 10}).status_code == 204
    for bad in (9, 0, -1, 101, 1000, "50", 50.5, True, None, [50]):
        if bad is None:
            # An explicit null is an unset optional (REFERENCE §5): no progress update.
            assert action(api, sid, "keep-alive", {"client_progress": None}).status_code == 204
            continue
        r = action(api, sid, "keep-alive", {"client_progress": bad})
        assert_error(r, 400, "INVALID_ARGUMENT", "client_progress")
        assert api.session(sid)["client_progress"] == 10, bad
    assert action(api, sid, "keep-alive", {"client_progress": 55}).status_code == 204
    assert api.session(sid)["client_progress"] == 55
    assert action(api, sid, "keep-alive", {"client_progress": 100}).status_code == 204
    s = api.session(sid)
    assert s["client_progress"] == 100
    assert s["state"] == "ACTIVE"


def test_keep_alive_bad_body_is_invalid(api: Api) -> None:
    sid = api.create_session()
    for raw in (b"{", b"[]", b'"x"'):
        r = api.post(f"{US}/{sid}?action=keep-alive", data=raw, headers={"Content-Type": "application/json"})
        assert_error(r, 400, "INVALID_ARGUMENT")
    assert api.session(sid)["client_progress"] == 0


def test_keep_alive_pushes_expiration_forward(api: Api) -> None:
    sid = api.create_session()
    first = parse_time(api.session(sid)["expiration_time"])
    time.sleep(0.05)
    before = now()
    assert action(api, sid, "keep-alive", {}).status_code == 204
    after = now()
    second = parse_time(api.session(sid)["expiration_time"])
    assert second > first
    assert before + timedelta(seconds=299) <= second <= after + timedelta(seconds=301)


# =========================================================================================================
# PATCH (seed page): only warning_behavior is updated; incremental; ACTIVE only.
# =========================================================================================================
def test_patch_returns_204_and_get_returns_the_stored_value(api: Api) -> None:
    sid = api.create_session()
    r = patch(api, sid, {"warning_behavior": WB_TWO})
    assert r.status_code == 204, r.text
    assert r.content == b""
    s = api.session(sid)
    assert s["warning_behavior"] == WB_TWO
    assert s["state"] == "ACTIVE"


def test_patch_without_warning_behavior_leaves_it_unchanged(api: Api) -> None:
    sid = api.create_session(warning_behavior=WB_TWO)
    r = patch(api, sid, {})
    assert r.status_code == 204, r.text
    assert api.session(sid)["warning_behavior"] == WB_TWO


def test_patch_null_warning_behavior_is_unset_and_leaves_it_unchanged(api: Api) -> None:
    # An explicit null is an unset optional in the vAPI JSON encoding (REFERENCE §5, "unset optionals" /
    # "a missing member or null both decode to None"); unset fields are not modified (seed page).
    sid = api.create_session(warning_behavior=WB_TWO)
    r = patch(api, sid, {"warning_behavior": None})
    assert r.status_code == 204, r.text
    assert api.session(sid)["warning_behavior"] == WB_TWO


def test_patch_replaces_the_list_even_by_an_empty_one(api: Api) -> None:
    sid = api.create_session(warning_behavior=WB_TWO)
    assert patch(api, sid, {"warning_behavior": WB_ONE}).status_code == 204
    assert api.session(sid)["warning_behavior"] == WB_ONE  # replaced, not merged
    assert patch(api, sid, {"warning_behavior": []}).status_code == 204
    s = api.session(sid)
    assert "warning_behavior" in s, s
    assert s["warning_behavior"] == []
    assert patch(api, sid, {"warning_behavior": WB_TWO}).status_code == 204
    assert api.session(sid)["warning_behavior"] == WB_TWO


def test_patch_all_warning_types(api: Api) -> None:
    wb = [
        {"type": t, "ignored": i % 2 == 0}
        for i, t in enumerate(
            [
                "SELF_SIGNED_CERTIFICATE",
                "EXPIRED_CERTIFICATE",
                "NOT_YET_VALID_CERTIFICATE",
                "UNTRUSTED_CERTIFICATE",
            ]
        )
    ]
    sid = api.create_session()
    assert patch(api, sid, {"warning_behavior": wb}).status_code == 204
    assert api.session(sid)["warning_behavior"] == wb


def test_patch_does_not_apply_other_fields(api: Api) -> None:
    item, other_item = api.create_item(), api.create_item()
    sid = api.create_session(item, warning_behavior=WB_ONE)
    before = api.session(sid)
    body = {
        "id": str(uuid.uuid4()),
        "library_item_id": other_item,
        "library_item_content_version": "42",
        "client_progress": 77,
        "state": "DONE",
        "expiration_time": "2001-01-01T00:00:00.000Z",
        "error_message": {"id": "x.y", "default_message": "injected", "args": []},
        "preview_info": {"state": "UNAVAILABLE"},
    }
    r = patch(api, sid, body)
    assert r.status_code == 204, r.text
    s = api.session(sid)
    assert s["library_item_id"] == item
    assert s["library_item_content_version"] == "1"
    assert s["client_progress"] == 0
    assert s["state"] == "ACTIVE"
    assert parse_time(s["expiration_time"]) >= parse_time(before["expiration_time"])
    assert parse_time(s["expiration_time"]).year > 2001
    assert "error_message" not in s
    assert "id" not in s
    assert s["preview_info"] == {"state": "UNAVAILABLE"}
    assert s["warning_behavior"] == WB_ONE  # not given → not modified
    # Still the session of `item`: `other_item` is free, `item` is busy.
    assert list_ids(api, other_item) == []
    assert list_ids(api, item) == [sid]
    assert_error(api.post(US, json={"library_item_id": item}), 500, "RESOURCE_BUSY")
    api.create_session(other_item)


def test_patch_applies_warning_behavior_but_not_state(api: Api) -> None:
    sid = api.create_session()
    r = patch(api, sid, {"state": "CANCELED", "client_progress": 100, "warning_behavior": WB_TWO})
    assert r.status_code == 204, r.text
    s = api.session(sid)
    assert s["warning_behavior"] == WB_TWO
    assert s["state"] == "ACTIVE"
    assert s["client_progress"] == 0
    # The session is really still ACTIVE: it can be completed.
    assert action(api, sid, "complete").status_code == 204
    assert api.session(sid)["state"] == "DONE"


@pytest.mark.parametrize("state", TERMINAL)
@pytest.mark.parametrize("body", [{"warning_behavior": []}, {"warning_behavior": WB_TWO}, {}])
def test_patch_terminal_session_not_allowed(api: Api, state: str, body: dict[str, Any]) -> None:
    sid = api.create_session(warning_behavior=WB_ONE)
    finish(api, sid, state)
    before = api.session(sid)
    assert_error(patch(api, sid, body), 400, "NOT_ALLOWED_IN_CURRENT_STATE")
    after = api.session(sid)
    assert after == before
    assert after["warning_behavior"] == WB_ONE


# (raw body, words of which at least one must appear in the message)
INVALID_PATCH_BODIES: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "unknown-type": (
        json.dumps({"warning_behavior": [{"type": "BOGUS_CERTIFICATE", "ignored": True}]}).encode(),
        ("type", "warning_behavior", "BOGUS_CERTIFICATE"),
    ),
    "lowercase-type": (
        json.dumps({"warning_behavior": [{"type": "self_signed_certificate", "ignored": True}]}).encode(),
        ("type", "warning_behavior", "self_signed_certificate"),
    ),
    "type-not-string": (
        json.dumps({"warning_behavior": [{"type": 1, "ignored": True}]}).encode(),
        ("type", "warning_behavior"),
    ),
    "missing-ignored": (
        json.dumps({"warning_behavior": [{"type": "SELF_SIGNED_CERTIFICATE"}]}).encode(),
        ("ignored",),
    ),
    "missing-type": (
        json.dumps({"warning_behavior": [{"ignored": True}]}).encode(),
        ("type",),
    ),
    "ignored-string": (
        json.dumps({"warning_behavior": [{"type": "SELF_SIGNED_CERTIFICATE", "ignored": "yes"}]}).encode(),
        ("ignored",),
    ),
    "ignored-int": (
        json.dumps({"warning_behavior": [{"type": "SELF_SIGNED_CERTIFICATE", "ignored": 1}]}).encode(),
        ("ignored",),
    ),
    "ignored-null": (
        json.dumps({"warning_behavior": [{"type": "SELF_SIGNED_CERTIFICATE", "ignored": None}]}).encode(),
        ("ignored",),
    ),
    "second-element-bad": (
        json.dumps(
            {"warning_behavior": [{"type": "SELF_SIGNED_CERTIFICATE", "ignored": True}, {"type": "X"}]}
        ).encode(),
        ("type", "ignored", "warning_behavior"),
    ),
    "element-not-object": (
        json.dumps({"warning_behavior": ["SELF_SIGNED_CERTIFICATE"]}).encode(),
        ("warning_behavior",),
    ),
    "wb-object": (
        json.dumps({"warning_behavior": {"type": "SELF_SIGNED_CERTIFICATE", "ignored": True}}).encode(),
        ("warning_behavior",),
    ),
    "wb-string": (
        json.dumps({"warning_behavior": "SELF_SIGNED_CERTIFICATE"}).encode(),
        ("warning_behavior",),
    ),
    "wb-bool": (json.dumps({"warning_behavior": True}).encode(), ("warning_behavior",)),
    "body-list": (json.dumps(WB_TWO).encode(), ()),
    "body-string": (b'"warning_behavior"', ()),
    "body-number": (b"5", ()),
    "body-null": (b"null", ()),
    "malformed-json": (b'{"warning_behavior": [', ()),
    "single-quotes": (b"{'warning_behavior': []}", ()),
    "trailing-garbage": (b'{"warning_behavior": []} x', ()),
}


@pytest.mark.parametrize("case", list(INVALID_PATCH_BODIES))
def test_patch_invalid_spec_changes_nothing(api: Api, case: str) -> None:
    raw, words = INVALID_PATCH_BODIES[case]
    sid = api.create_session(warning_behavior=WB_TWO)
    before = api.session(sid)
    r = patch(api, sid, raw=raw)
    assert_error(r, 400, "INVALID_ARGUMENT")
    if words:
        assert_message_names(r, *words)
    after = api.session(sid)
    assert after["warning_behavior"] == WB_TWO
    assert after["state"] == "ACTIVE"
    assert {k: v for k, v in after.items() if k != "expiration_time"} == {
        k: v for k, v in before.items() if k != "expiration_time"
    }


def test_patch_body_over_1_mib_is_invalid(api: Api) -> None:
    sid = api.create_session(warning_behavior=WB_TWO)
    big = json.dumps({"warning_behavior": WB_ONE * 40_000}).encode()
    assert len(big) > 1024 * 1024
    assert_error(patch(api, sid, raw=big), 400, "INVALID_ARGUMENT")
    assert api.session(sid)["warning_behavior"] == WB_TWO


@pytest.mark.parametrize("sid", [UNKNOWN_ID, "not-a-uuid"])
def test_patch_unknown_session_is_not_found(api: Api, sid: str) -> None:
    assert_error(patch(api, sid, {"warning_behavior": WB_ONE}), 404, "NOT_FOUND", sid)
    assert_error(patch(api, sid, {}), 404, "NOT_FOUND", sid)


@pytest.mark.parametrize("case", ["malformed-json", "body-list", "wb-object", "missing-ignored", "ignored-int"])
def test_patch_unknown_session_with_bad_body_is_invalid_argument(api: Api, case: str) -> None:
    # Both NotFound (no such session) and InvalidArgument (spec not valid) apply. The contract decides:
    # in the vAPI framework the skeleton validates and converts the whole input structure (types, required
    # fields) and answers InvalidArgument *before* the provider implementation runs and looks the session
    # up (vmware/vapi/bindings/skeleton.py `ApiInterfaceSkeleton.invoke`: input validators, then
    # TypeConverter.convert_to_python → invalid_argument, then `method(**meth_args)`). A body that cannot
    # be decoded as an UpdateSessionModel is therefore a 400 INVALID_ARGUMENT whatever the id.
    # (An unknown enum value is not checked by the bindings — vAPI enums are open — so that case is not
    # asserted here.)
    raw, _ = INVALID_PATCH_BODIES[case]
    r = patch(api, str(uuid.uuid4()), raw=raw)
    assert_error(r, 400, "INVALID_ARGUMENT")
