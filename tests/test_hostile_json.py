"""Deeply nested JSON (issue 6 point 5) is a bad request, never a 500: on /api REST and on JSON-RPC."""

from __future__ import annotations

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
