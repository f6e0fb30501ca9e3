"""Deeply nested JSON (issue 6 point 5) is a bad request, never a 500: on /api REST and on JSON-RPC. So is text
with a NUL character (found by tests/test_fuzz.py on PostgreSQL, whose text cannot hold one): stored text with a
NUL is INVALID_ARGUMENT on every backend, and an id or name with a NUL names nothing (NOT_FOUND)."""

from __future__ import annotations

import uuid

import requests
from conftest import Api, ServerProcess, assert_error

DEPTH = 100_000


def test_deeply_nested_rest_body_is_invalid_argument(api: Api) -> None:
    body = b'{"name": "x", "optimization_info": ' + b'{"a": ' * DEPTH + b"1" + b"}" * DEPTH + b"}"
    r = api.post("/api/content/local-library", data=body, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "INVALID_ARGUMENT", "nested")
    r = api.patch(
        f"/api/content/library/item/update-session/{api.create_session()}",
        data=b"[" * DEPTH + b"]" * DEPTH,
        headers={"Content-Type": "application/json"},
    )
    assert_error(r, 400, "INVALID_ARGUMENT")


def test_deeply_nested_jsonrpc_is_a_jsonrpc_error(server: ServerProcess) -> None:
    r = requests.post(server.base + "/api", data=b"[" * DEPTH + b"]" * DEPTH, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["error"]["code"] == -32600, r.text
    deep_input = '{"STRUCTURE": {"operation-input": ' + '{"OPTIONAL": ' * 5000 + "null" + "}" * 5000 + "}}"
    envelope = (
        '{"jsonrpc": "2.0", "method": "invoke", "id": "1", "params": {"serviceId": '
        '"com.vmware.content.library.item.update_session", "operationId": "get", "input": ' + deep_input + ', "ctx": '
        '{"securityCtx": {"schemeId": "com.vmware.vapi.std.security.user_pass", "userName": "u", "password": "p"}}}}'
    )
    r = requests.post(server.base + "/api", data=envelope.encode(), timeout=60)
    assert r.status_code == 200, r.text
    assert "Traceback" not in r.text
    assert "result" in r.json() or "error" in r.json(), r.text


def test_nul_in_stored_text_is_invalid_argument(api: Api) -> None:
    name = f"nul-{uuid.uuid4().hex[:8]}"
    spec = {
        "name": name + "\u0000",
        "type": "LOCAL",
        "storage_backings": [{"type": "OTHER", "storage_uri": "file:///x"}],
    }
    r = api.post("/api/content/local-library", json=spec)
    assert_error(r, 400, "INVALID_ARGUMENT", "create_spec.name", "NUL")
    r = api.post("/api/content/library?action=find", json={"name": name + "\u0000"})
    assert_error(r, 400, "INVALID_ARGUMENT", "spec.name", "NUL")
    r = api.post("/api/content/library?action=find", json={"name": name})
    assert r.status_code == 200 and r.json() == [], r.text
    item = api.create_item()
    r = api.patch(f"/api/content/library/item/{item}", json={"description": "a\u0000b"})
    assert_error(r, 400, "INVALID_ARGUMENT", "update_spec.description", "NUL")
    sid = api.create_session(item)
    r = api.post(
        f"/api/content/library/item/update-session/{sid}/file", json={"name": "a\u0000", "source_type": "PUSH"}
    )
    assert_error(r, 400, "INVALID_ARGUMENT", "file_spec.name", "NUL")
    r = api.post(f"/api/content/library/item/update-session/{sid}?action=fail", json={"client_error_message": "\u0000"})
    assert_error(r, 400, "INVALID_ARGUMENT", "client_error_message", "NUL")
    assert api.session(sid)["state"] == "ACTIVE"
    assert api.get(f"/api/content/library/item/{item}").json()["description"] == ""


def test_nul_in_an_id_or_name_names_nothing(api: Api) -> None:
    item = api.create_item()
    for path in (
        "/api/content/library/item/x%00",
        "/api/content/local-library/x%00",
        "/api/content/library/item?library_id=x%00",
        "/api/content/library/item/update-session?library_item_id=x%00",
        f"/api/content/library/item/{item}/file?name=a%00",
    ):
        assert_error(api.get(path), 404, "NOT_FOUND")
    sid = api.create_session(item)
    r = api.get(f"/api/content/library/item/update-session/{sid}/file/a%00")
    assert_error(r, 400, "INVALID_ARGUMENT", "a\x00")
