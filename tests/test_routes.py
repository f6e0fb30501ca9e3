"""Routing, generic errors and the error-body schema, driven by the vendor's Swagger files.

Every `/api` operation in scope is read from `vsphere-8.0.2-{content,session}.swagger.json` and sent to the
server with unknown ids: it must be routed (no OPERATION_NOT_FOUND) and answer a status the swagger file lists
for it. Error bodies are validated with jsonschema against the swagger's `VapiStdErrors*` definitions.

`assert_vapi_error` and `in_scope_operations` are also used by test_auth/test_libraries/test_items.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from functools import cache
from typing import Any

import jsonschema
import pytest
import requests
from conftest import ADMIN_PASSWORD, ADMIN_USER, API_DIR, Api, assert_error

CONTENT_SWAGGER = API_DIR / "vsphere-8.0.2-content.swagger.json"
SESSION_SWAGGER = API_DIR / "vsphere-8.0.2-session.swagger.json"
MIB = 1024 * 1024

US = "/api/content/library/item/update-session"
DS = "/api/content/library/item/download-session"

# Operations in scope outside the session and the two session services (which are in scope as a whole).
OTHER_OPERATIONS = {
    ("POST", "/api/content/local-library"),
    ("GET", "/api/content/local-library"),
    ("GET", "/api/content/local-library/{library_id}"),
    ("PATCH", "/api/content/local-library/{library_id}"),
    ("DELETE", "/api/content/local-library/{library_id}"),
    ("GET", "/api/content/library"),
    ("GET", "/api/content/library/{library_id}"),
    ("PATCH", "/api/content/library/{library_id}"),
    ("POST", "/api/content/library?action=find"),
    ("POST", "/api/content/library/item"),
    ("GET", "/api/content/library/item?library_id"),
    ("GET", "/api/content/library/item/{library_item_id}"),
    ("PATCH", "/api/content/library/item/{library_item_id}"),
    ("DELETE", "/api/content/library/item/{library_item_id}"),
    ("POST", "/api/content/library/item?action=find"),
    ("GET", "/api/content/library/item/{library_item_id}/file"),
    ("GET", "/api/content/library/item/{library_item_id}/file?name"),
    # issue 10 point 3
    ("POST", "/api/content/local-library/{library_id}?action=publish"),
    ("POST", "/api/content/library/item/{source_library_item_id}?action=copy"),
    ("POST", "/api/content/library/item/{library_item_id}?action=publish"),
    ("GET", "/api/content/library/item/{library_item_id}/storage"),
    ("GET", "/api/content/library/item/{library_item_id}/storage?file_name"),
    ("GET", "/api/content/library/item/{library_item}/changes"),
    ("GET", "/api/content/library/item/{library_item}/changes/{version}"),
    ("GET", "/api/content/configuration"),
    ("PATCH", "/api/content/configuration"),
    ("GET", "/api/content/security-policies"),
    ("GET", "/api/content/type"),
    # issue 12 point 2
    ("POST", "/api/content/subscribed-library"),
    ("GET", "/api/content/subscribed-library"),
    ("GET", "/api/content/subscribed-library/{library_id}"),
    ("PATCH", "/api/content/subscribed-library/{library_id}"),
    ("DELETE", "/api/content/subscribed-library/{library_id}"),
    ("POST", "/api/content/subscribed-library/{library_id}?action=sync"),
    ("POST", "/api/content/subscribed-library/{library_id}?action=evict"),
    ("POST", "/api/content/subscribed-library?action=probe"),
    ("POST", "/api/content/library/subscribed-item/{library_item_id}?action=sync"),
    ("POST", "/api/content/library/subscribed-item/{library_item_id}?action=evict"),
    ("POST", "/api/content/library/{library}/subscriptions"),
    ("GET", "/api/content/library/{library}/subscriptions"),
    ("GET", "/api/content/library/{library}/subscriptions/{subscription}"),
    ("PATCH", "/api/content/library/{library}/subscriptions/{subscription}"),
    ("DELETE", "/api/content/library/{library}/subscriptions/{subscription}"),
}
# session 3 + local-library 5 + library 4 + item 6 + item file 2 + update-session 14 + download-session 10, and
# local-library publish, item copy and publish, storage 2, changes 2, configuration 2, security policies, type,
# subscribed library 8, subscribed item 2, library subscriptions 5
EXPECTED_OPERATION_COUNT = 70


# -- swagger ------------------------------------------------------------------------------------------
@cache
def swagger(name: str) -> dict[str, Any]:
    path = CONTENT_SWAGGER if name == "content" else SESSION_SWAGGER
    return dict(json.loads(path.read_text()))


@cache
def definitions() -> dict[str, Any]:
    defs = dict(swagger("content")["definitions"])
    for key, value in swagger("session")["definitions"].items():
        defs.setdefault(key, value)
    return defs


def in_scope(method: str, path: str) -> bool:
    if path == "/api/session":
        return True
    if path.startswith((US, DS)):
        return True
    return (method, path) in OTHER_OPERATIONS


def in_scope_operations() -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, swagger path key, operation object) for every `/api` operation in scope."""
    ops: list[tuple[str, str, dict[str, Any]]] = []
    for name in ("session", "content"):
        for path, item in swagger(name)["paths"].items():
            if not path.startswith("/api/"):
                continue
            for method, op in item.items():
                if method == "parameters":
                    continue
                if in_scope(method.upper(), path):
                    ops.append((method.upper(), path, op))
    return ops


def op_id(op: tuple[str, str, dict[str, Any]]) -> str:
    return f"{op[0]} {op[1]}"


OPERATIONS = in_scope_operations()


# -- error bodies -------------------------------------------------------------------------------------
def camel(error_type: str) -> str:
    return "".join(part.capitalize() for part in error_type.split("_"))


def validate_error_schema(body: Any, definition: str) -> None:
    defs = definitions()
    assert definition in defs, definition
    schema = {"$ref": f"#/definitions/{definition}", "definitions": defs}
    jsonschema.Draft4Validator(schema).validate(body)


def definition_for(error_type: str) -> str:
    name = "VapiStdErrors" + camel(error_type)
    return name if name in definitions() else "VapiStdErrorsError"


def assert_vapi_error(
    r: requests.Response, status: int, error_type: str, *words: str, definition: str | None = None
) -> dict[str, Any]:
    """conftest.assert_error plus a jsonschema check against the swagger `VapiStdErrors*` definition."""
    body = assert_error(r, status, error_type, *words)
    validate_error_schema(body, definition or definition_for(error_type))
    return body


def response_definition(op: dict[str, Any], status: int) -> str | None:
    """The `VapiStdErrors*` definition the swagger gives for `status` of `op`, if any."""
    resp = op.get("responses", {}).get(str(status))
    if not resp:
        return None
    ref = resp.get("schema", {}).get("$ref", "")
    name = ref.rsplit("/", 1)[-1]
    return name if name.startswith("VapiStdErrors") else None


# -- building a request for a swagger operation ---------------------------------------------------------
def body_for(method: str, path: str, missing: str) -> Any:
    """A valid request body for the operation, with `missing` for every id it carries."""
    tag = uuid.uuid4().hex[:8]
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/api/content/local-library"): {
            "name": f"routes-{tag}",
            "type": "LOCAL",
            "storage_backings": [{"type": "OTHER", "storage_uri": "file:///tmp/contentlib-routes"}],
        },
        ("PATCH", "/api/content/local-library/{library_id}"): {"description": "routes"},
        ("PATCH", "/api/content/library/{library_id}"): {"description": "routes"},
        ("POST", "/api/content/library?action=find"): {"name": f"no-such-library-{tag}"},
        ("POST", "/api/content/library/item"): {"library_id": missing, "name": f"routes-{tag}"},
        ("PATCH", "/api/content/library/item/{library_item_id}"): {"description": "routes"},
        ("POST", "/api/content/library/item?action=find"): {"name": f"no-such-item-{tag}"},
        ("POST", US): {"library_item_id": missing},
        ("PATCH", US + "/{update_session_id}"): {"warning_behavior": []},
        ("POST", US + "/{update_session_id}/file"): {"name": "a.bin", "source_type": "PUSH"},
        ("POST", US + "/{update_session_id}?action=fail"): {"client_error_message": "routes"},
        ("POST", US + "/{update_session_id}?action=keep-alive"): {"client_progress": 1},
        ("POST", DS): {"library_item_id": missing},
        ("POST", DS + "/{download_session_id}/file?action=prepare"): {"file_name": "a.bin"},
        ("POST", DS + "/{download_session_id}?action=fail"): {"client_error_message": "routes"},
        ("POST", DS + "/{download_session_id}?action=keep-alive"): {"progress": 1},
        ("POST", "/api/content/local-library/{library_id}?action=publish"): {},
        ("POST", "/api/content/library/item/{source_library_item_id}?action=copy"): {"name": f"routes-{tag}"},
        ("POST", "/api/content/library/item/{library_item_id}?action=publish"): {"force_sync_content": False},
        ("PATCH", "/api/content/configuration"): {},
        ("POST", "/api/content/subscribed-library"): {
            "name": f"routes-{tag}",
            "type": "SUBSCRIBED",
            "storage_backings": [{"type": "OTHER", "storage_uri": "file:///tmp/contentlib-routes"}],
            "subscription_info": UNREACHABLE,
        },
        ("PATCH", "/api/content/subscribed-library/{library_id}"): {"description": "routes"},
        ("POST", "/api/content/subscribed-library?action=probe"): {"subscription_info": UNREACHABLE},
        ("POST", "/api/content/library/subscribed-item/{library_item_id}?action=sync"): {"force_sync_content": False},
        ("POST", "/api/content/library/{library}/subscriptions"): {
            "subscribed_library": {"target": "USE_EXISTING", "location": "LOCAL", "subscribed_library": missing}
        },
        ("PATCH", "/api/content/library/{library}/subscriptions/{subscription}"): {},
    }
    return bodies.get((method, path))


# A subscription of nothing that listens: a create is refused (RESOURCE_INACCESSIBLE), a probe says why.
UNREACHABLE = {
    "subscription_url": "http://127.0.0.1:9/lib.json",
    "authentication_method": "NONE",
    "on_demand": False,
    "automatic_sync_enabled": False,
}
NEEDS_A_PUBLISHER = {("POST", "/api/content/subscribed-library")}  # its success: tests/test_subscriber.py


def has_body_param(op: dict[str, Any]) -> bool:
    return any(p.get("in") == "body" for p in op.get("parameters", []))


def build_url(path: str, op: dict[str, Any], missing: str, with_filters: bool) -> str:
    """Swagger key → concrete URL: path ids → `missing`, dispatch markers → `marker=value`."""
    base, _, query = path.partition("?")
    base = re.sub(r"\{[^}]+\}", missing, base)
    params: list[str] = []
    if query:
        if "=" in query:  # ?action=verb
            params.append(query)
        else:  # dispatch marker: ?name / ?file_name / ?library_id
            params.append(f"{query}={missing if query.endswith('_id') else 'nope.bin'}")
    if with_filters:  # optional id filters, e.g. list ?library_item_id=
        for p in op.get("parameters", []):
            if p.get("in") == "query" and not p.get("required") and p["name"].endswith("_id"):
                params.append(f"{p['name']}={missing}")
    return base + ("?" + "&".join(params) if params else "")


def send(api: Api, method: str, path: str, op: dict[str, Any], missing: str, with_filters: bool) -> requests.Response:
    """Send the operation the way the SDK does (JSON Content-Type on every non-GET, even without a body)."""
    url = build_url(path, op, missing, with_filters)
    body = body_for(method, path, missing)
    if path == "/api/session":
        if method == "POST":
            return requests.post(api.url(url), auth=(ADMIN_USER, ADMIN_PASSWORD), timeout=30)
        return api.request(method, url, headers={"Content-Type": "application/json"} if method != "GET" else {})
    if body is not None:
        return api.request(method, url, json=body)
    if method == "GET":
        return api.get(url)
    return api.request(method, url, data=b"", headers={"Content-Type": "application/json"})


def needs_id(method: str, path: str) -> bool:
    """Whether the operation always names an id (path, dispatch marker or create body)."""
    if "{" in path or path.endswith("?library_id"):
        return True
    return method == "POST" and path in ("/api/content/library/item", US, DS)


def has_id_filter(op: dict[str, Any]) -> bool:
    """Whether the operation takes an optional id filter in the query (list ?library_item_id=)."""
    return any(
        p.get("in") == "query" and not p.get("required") and p["name"].endswith("_id") for p in op.get("parameters", [])
    )


# -- tests --------------------------------------------------------------------------------------------
def test_scope_matches_swagger() -> None:
    """The in-scope list is what the brief names: no typo left an operation out."""
    found = {(m, p) for m, p, _ in OPERATIONS}
    assert found >= OTHER_OPERATIONS, OTHER_OPERATIONS - found
    assert len(OPERATIONS) == EXPECTED_OPERATION_COUNT, sorted(found)
    for method, path, op in OPERATIONS:
        if has_body_param(op):
            assert body_for(method, path, "x") is not None, (method, path)


@pytest.mark.parametrize("operation", OPERATIONS, ids=op_id)
def test_swagger_operation_is_routed(api: Api, operation: tuple[str, str, dict[str, Any]]) -> None:
    method, path, op = operation
    missing = str(uuid.uuid4())
    r = send(api, method, path, op, missing, with_filters=False)
    listed = {int(code) for code in op["responses"]}
    allowed = listed | {400, 401}
    if r.status_code >= 400:
        assert r.headers.get("Content-Type", "").startswith("application/json"), (r.status_code, r.text)
        body = r.json()
        assert body.get("error_type") != "OPERATION_NOT_FOUND", f"{method} {path} not routed: {r.text}"
        definition = response_definition(op, r.status_code) or definition_for(str(body.get("error_type")))
        validate_error_schema(body, definition)
    assert r.status_code in allowed, f"{method} {path}: {r.status_code} not in {sorted(allowed)}: {r.text}"


def expected_success(method: str, path: str) -> int:
    if method == "POST" and path in ("/api/session", "/api/content/local-library"):
        return 201
    if method in ("DELETE", "PATCH"):
        return 204
    return 200


@pytest.mark.parametrize(
    "operation",
    [op for op in OPERATIONS if not needs_id(op[0], op[1]) and op[:2] not in NEEDS_A_PUBLISHER],
    ids=op_id,
)
def test_swagger_operation_without_ids_succeeds(api: Api, operation: tuple[str, str, dict[str, Any]]) -> None:
    method, path, op = operation
    r = send(api, method, path, op, str(uuid.uuid4()), with_filters=False)
    assert r.status_code == expected_success(method, path), r.text
    assert str(r.status_code) in op["responses"]


@pytest.mark.parametrize(
    "operation", [op for op in OPERATIONS if needs_id(op[0], op[1]) or has_id_filter(op[2])], ids=op_id
)
def test_swagger_operation_unknown_id_is_not_found(api: Api, operation: tuple[str, str, dict[str, Any]]) -> None:
    method, path, op = operation
    missing = str(uuid.uuid4())
    r = send(api, method, path, op, missing, with_filters=True)
    assert "404" in op["responses"]
    assert_vapi_error(r, 404, "NOT_FOUND", missing, definition=response_definition(op, 404))


@pytest.mark.parametrize(
    ("path", "field", "value"),
    [
        ("/api/content/library/item?library_id", "library_id", None),
        ("/api/content/library/item/{id}/file?name", "name", "nope.bin"),
        (DS + "/{id}/file?file_name", "file_name", "nope.bin"),
        ("/api/content/library/item/{id}/storage?file_name", "file_name", "nope.bin"),
    ],
)
def test_sdk_dispatch_marker_with_json_body_is_routed(api: Api, path: str, field: str, value: str | None) -> None:
    """SDK quirk (REFERENCE §1.3): bare `?marker` plus a JSON GET body without Content-Type."""
    missing = str(uuid.uuid4())
    url = path.replace("{id}", missing)
    body = json.dumps({field: value or missing})
    r = api.get(url, data=body)
    assert "Content-Type" not in r.request.headers
    assert_vapi_error(r, 404, "NOT_FOUND", missing)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/content/library/item?library_id", "library_id"),
        ("/api/content/library/item/{id}/file?name", "name"),
        (DS + "/{id}/file?file_name", "file_name"),
        ("/api/content/library/item/{id}/storage?file_name", "file_name"),
    ],
)
def test_swagger_dispatch_marker_followed_by_the_value_is_routed(api: Api, path: str, field: str) -> None:
    """A client generated from the 8.0.2 Swagger keeps the bare marker of the path and adds the value as a query
    parameter (`?name&name=v`); found by tests/test_fuzz.py (schemathesis sends exactly that)."""
    missing = str(uuid.uuid4())
    url = path.replace("{id}", missing)
    r = api.get(url, params={field: missing})
    assert r.request.url.endswith(f"?{field}&{field}={missing}"), r.request.url
    assert_vapi_error(r, 404, "NOT_FOUND", missing)


def test_explicit_empty_dispatch_value_is_a_value_not_a_missing_parameter(api: Api) -> None:
    """`?name=` names the file "" (not found), where a bare `?name` without a body lacks the parameter."""
    item = api.create_item()
    r = api.get(f"/api/content/library/item/{item}/file?name=")
    assert_vapi_error(r, 404, "NOT_FOUND")
    r = api.get(f"/api/content/library/item/{item}/file?name")
    assert_vapi_error(r, 400, "INVALID_ARGUMENT", "name")


@pytest.mark.parametrize(
    ("path", "error_type", "word"),
    [
        ("/api/content/library/item/a%0Ab", "NOT_FOUND", "a\nb"),
        ("/api/content/local-library/x%0A", "NOT_FOUND", "x\n"),
        ("/api/content/library/item/update-session/%0A?action=cancel", "NOT_FOUND", "session"),
        ("/nope%0A", "OPERATION_NOT_FOUND", "/nope\n"),
    ],
)
def test_newline_in_path_gets_a_vendor_error(api: Api, path: str, error_type: str, word: str) -> None:
    """A percent-encoded newline in the path still reaches the router (not aiohttp's plain-text 404); found by
    tests/test_fuzz.py."""
    r = api.request("POST" if "action" in path else "GET", path)
    assert_vapi_error(r, 404, error_type, word)


# -- unknown routes, actions and methods ----------------------------------------------------------------
@pytest.fixture()
def ids(api: Api) -> dict[str, str]:
    lib = api.create_library()
    item = api.create_item(lib)
    sid = api.create_session(item)
    r = api.post(DS, json={"library_item_id": item})
    assert r.status_code == 201, r.text
    return {"lib": lib, "item": item, "sid": sid, "ds": str(r.json())}


UNKNOWN_ROUTES = [
    ("GET", "/api/nope"),
    ("GET", "/api/content/nope"),
    ("POST", "/api/content/nope"),
    ("GET", "/api/content/library/item/{item}/nope"),
    ("GET", "/api/content/local-library/{lib}/nope"),
    ("GET", US + "/{sid}/nope"),
    ("GET", DS + "/{ds}/file/a.bin/nope/more"),
]
UNKNOWN_ACTIONS = [
    ("POST", "/api/content/library?action=bogus"),
    ("POST", "/api/content/library/item?action=bogus"),
    ("POST", "/api/content/local-library/{lib}?action=bogus"),
    ("POST", "/api/content/library/item/{item}?action=bogus"),
    ("POST", "/api/content/library/item/{item}?action=sync"),
    ("POST", "/api/content/local-library/{lib}?action=sync"),
    ("POST", US + "/{sid}?action=bogus"),
    ("POST", US + "/{sid}/file?action=bogus"),
    ("POST", DS + "/{ds}?action=bogus"),
    ("POST", DS + "/{ds}/file?action=bogus"),
]
WRONG_METHODS = [
    ("PUT", "/api/session"),
    ("PUT", "/api/content/local-library"),
    ("DELETE", "/api/content/local-library"),
    ("PUT", "/api/content/local-library/{lib}"),
    ("POST", "/api/content/local-library/{lib}"),
    ("DELETE", "/api/content/library"),
    ("PUT", "/api/content/library/{lib}"),
    ("GET", "/api/content/library?action=find"),
    ("GET", "/api/content/library/item?action=find"),
    ("PUT", "/api/content/library/item/{item}"),
    ("POST", "/api/content/library/item/{item}"),
    ("DELETE", "/api/content/library/item/{item}/file"),
    ("DELETE", US),
    ("PUT", US + "/{sid}"),
    ("POST", US + "/{sid}"),
    ("GET", US + "/{sid}?action=complete"),
    ("PATCH", US + "/{sid}/file/a.bin"),
    ("DELETE", US + "/{sid}/file"),
    ("PUT", DS),
    ("DELETE", DS),
    ("PATCH", DS + "/{ds}"),
    ("GET", DS + "/{ds}?action=cancel"),
    ("POST", DS + "/{ds}/file"),
    ("POST", "/api/content/library/item/{item}/storage"),
    ("DELETE", "/api/content/library/item/{item}/changes"),
    ("POST", "/api/content/library/item/{item}/changes/1"),
    ("POST", "/api/content/configuration"),
    ("PUT", "/api/content/configuration"),
    ("DELETE", "/api/content/security-policies"),
    ("POST", "/api/content/type"),
]


@pytest.mark.parametrize(("method", "path"), UNKNOWN_ROUTES + UNKNOWN_ACTIONS + WRONG_METHODS)
def test_unknown_operation_is_operation_not_found(api: Api, ids: dict[str, str], method: str, path: str) -> None:
    url = path.format(**ids)
    r = api.request(method, url, json={} if method not in ("GET", "DELETE") else None)
    assert_vapi_error(r, 404, "OPERATION_NOT_FOUND")
    # Nothing happened to the objects the URL named.
    assert api.session(ids["sid"])["state"] == "ACTIVE"
    assert api.get(f"/api/content/library/item/{ids['item']}").status_code == 200
    assert api.get(f"/api/content/local-library/{ids['lib']}").status_code == 200
    r = api.get(f"{DS}/{ids['ds']}")
    assert r.status_code == 200 and r.json()["state"] == "ACTIVE", r.text


# -- malformed and oversized bodies ------------------------------------------------------------------------
def library_names(api: Api, name: str) -> list[str]:
    r = api.post("/api/content/library?action=find", json={"name": name})
    assert r.status_code == 200, r.text
    return list(r.json())


@pytest.mark.parametrize(
    "raw",
    [b'{"name": ', b"{name: 'x'}", b'{"name": "x",}', b"\xff\xfe{}", b"nul\x00", b"[1, 2", b"{}}"],
    ids=["truncated", "js-literal", "trailing-comma", "bad-utf8", "garbage", "bad-array", "extra-brace"],
)
def test_malformed_json_is_invalid_argument(api: Api, raw: bytes) -> None:
    r = api.post("/api/content/local-library", data=raw, headers={"Content-Type": "application/json"})
    assert_vapi_error(r, 400, "INVALID_ARGUMENT")


@pytest.mark.parametrize("raw", [b"[]", b'"a string"', b"42", b"null", b"true"])
def test_json_body_that_is_not_an_object_is_invalid_argument(api: Api, raw: bytes) -> None:
    r = api.post("/api/content/local-library", data=raw, headers={"Content-Type": "application/json"})
    assert_vapi_error(r, 400, "INVALID_ARGUMENT")


def test_malformed_json_on_patch_changes_nothing(api: Api) -> None:
    item = api.create_item(description="before")
    r = api.patch(
        f"/api/content/library/item/{item}",
        data=b'{"description": "after"',
        headers={"Content-Type": "application/json"},
    )
    assert_vapi_error(r, 400, "INVALID_ARGUMENT")
    got = api.get(f"/api/content/library/item/{item}").json()
    assert got["description"] == "before"
    assert got["version"] == "1"


def oversized_library_spec(name: str, size: int) -> bytes:
    spec = {
        "name": name,
        "type": "LOCAL",
        "storage_backings": [{"type": "OTHER", "storage_uri": "file:///tmp/contentlib-routes"}],
        "description": "",
    }
    base = len(json.dumps(spec).encode())
    spec["description"] = "x" * (size - base)
    raw = json.dumps(spec).encode()
    assert len(raw) == size
    return raw


@pytest.mark.parametrize("size", [MIB + 1, 2 * MIB, 8 * MIB])
def test_body_over_one_mib_is_invalid_argument(api: Api, size: int) -> None:
    name = f"huge-{uuid.uuid4().hex[:8]}"
    r = api.post(
        "/api/content/local-library",
        data=oversized_library_spec(name, size),
        headers={"Content-Type": "application/json"},
    )
    assert_vapi_error(r, 400, "INVALID_ARGUMENT")
    assert library_names(api, name) == []


def test_chunked_body_over_one_mib_is_invalid_argument(api: Api) -> None:
    """No Content-Length: the limit must hold on the bytes actually read."""
    name = f"huge-{uuid.uuid4().hex[:8]}"
    raw = oversized_library_spec(name, 2 * MIB)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(raw), 64 * 1024):
            yield raw[i : i + 64 * 1024]

    r = api.post("/api/content/local-library", data=chunks(), headers={"Content-Type": "application/json"})
    assert "Content-Length" not in r.request.headers
    assert_vapi_error(r, 400, "INVALID_ARGUMENT")
    assert library_names(api, name) == []


def test_oversized_patch_changes_nothing(api: Api) -> None:
    item = api.create_item(description="before")
    raw = json.dumps({"description": "y" * (MIB + 16)}).encode()
    r = api.patch(f"/api/content/library/item/{item}", data=raw, headers={"Content-Type": "application/json"})
    assert_vapi_error(r, 400, "INVALID_ARGUMENT")
    got = api.get(f"/api/content/library/item/{item}").json()
    assert got["description"] == "before"
    assert got["version"] == "1"


def test_error_schema_helper_rejects_bad_bodies() -> None:
    """The jsonschema check itself can fail (messages required, message members typed)."""
    bad: list[Any] = [
        {"error_type": "NOT_FOUND"},
        {"error_type": "NOT_FOUND", "messages": [{"id": "x", "default_message": "y"}]},
        {"error_type": "NO_SUCH_TYPE", "messages": []},
        {"error_type": "NOT_FOUND", "messages": [{"id": 1, "default_message": "y", "args": []}]},
    ]
    for body in bad:
        with pytest.raises(jsonschema.ValidationError):
            validate_error_schema(body, "VapiStdErrorsNotFound")
    validate_error_schema(
        {"error_type": "NOT_FOUND", "messages": [{"id": "a", "default_message": "b", "args": []}]},
        "VapiStdErrorsNotFound",
    )
