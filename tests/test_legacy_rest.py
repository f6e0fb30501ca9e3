"""The legacy `/rest` dialect (issue 10 point 1), driven by the vendor's 8.0.2 Swagger file and docs/rest-dialect.md.

Every `/rest/com/vmware/...` operation of the Swagger file whose `/api` replacement (its `x-vmw-deprecated`
pointer) this server serves must be routed and answer a status the file lists for it; one whose replacement is not
served must be OPERATION_NOT_FOUND: /rest and /api serve exactly the same operations. Success bodies are checked
against the file's `*_resp` schemas, error bodies against its `vapi.std.errors.*_error` schemas (the legacy
`{"type", "value"}` envelope), statuses against the vAPI runtime's map (REFERENCE.md §4.3).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from functools import cache
from typing import Any

import jsonschema
import pytest
import requests
from conftest import ADMIN_PASSWORD, ADMIN_USER, Api, ServerProcess
from test_routes import definitions, in_scope, swagger

REST = "/rest/com/vmware"
LIB = f"{REST}/content/library"
ITEM = f"{LIB}/item"
US = f"{ITEM}/update-session"
USF = f"{ITEM}/updatesession/file"
DS = f"{ITEM}/download-session"
DSF = f"{ITEM}/downloadsession/file"
SESSION = f"{REST}/cis/session"

# error_type -> status on /rest (the runtime's map; /api differs for RESOURCE_BUSY and RESOURCE_INACCESSIBLE)
LEGACY_STATUS = {
    "NOT_FOUND": 404,
    "OPERATION_NOT_FOUND": 404,
    "INVALID_ARGUMENT": 400,
    "NOT_ALLOWED_IN_CURRENT_STATE": 400,
    "ALREADY_EXISTS": 400,
    "INVALID_ELEMENT_TYPE": 400,
    "UNSUPPORTED": 400,
    "RESOURCE_BUSY": 400,
    "UNAUTHENTICATED": 401,
    "UNAUTHORIZED": 403,
    "CONCURRENT_CHANGE": 409,
}


# -- the Swagger file's /rest operations ----------------------------------------------------------------------------
def replacement(op: dict[str, Any]) -> tuple[str, str]:
    """(METHOD, /api swagger path) that the Swagger file names as a /rest operation's replacement."""
    pointer = op["x-vmw-deprecated"]["replacement"].split("#", 1)[1]  # /paths/~1api~1content~1library/get
    _, _, escaped, method = pointer.split("/")
    return method.upper(), escaped.replace("~1", "/").replace("~0", "~")


def rest_operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, item in swagger("content")["paths"].items()
        if path.startswith(REST)
        for method, op in item.items()
    ]


OPERATIONS = rest_operations()
SERVED = [op for op in OPERATIONS if in_scope(*replacement(op[2]))]


def op_id(op: tuple[str, str, dict[str, Any]]) -> str:
    return f"{op[0]} {op[1]}"


@cache
def validator(ref: str) -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator({"$ref": ref, "definitions": definitions()})


def minimal(schema: dict[str, Any], missing: str) -> Any:
    """The smallest value the schema allows: required members only, ids as `missing`."""
    if "$ref" in schema:
        schema = definitions()[schema["$ref"].rsplit("/", 1)[1]]
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {name: minimal(props[name], missing) for name in schema.get("required", [])}
    if "enum" in schema:
        return schema["enum"][0]
    return {"string": missing, "boolean": False, "integer": 0, "array": []}.get(schema.get("type", "string"), missing)


def send(api: Api, method: str, path: str, op: dict[str, Any], missing: str) -> requests.Response:
    """The operation with every id `missing`: path ids as `id:` segments, required query parameters and body
    members filled in."""
    url = path
    for p in op.get("parameters", []):
        if p["in"] == "path":  # `{library}` is a parameter of .../content/library/subscriptions/id:{library}
            url = url.replace(f"{{{p['name']}}}", missing)
    query = {p["name"]: missing for p in op.get("parameters", []) if p["in"] == "query" and p.get("required")}
    body = next((minimal(p["schema"], missing) for p in op.get("parameters", []) if p["in"] == "body"), None)
    if method == "GET":
        return api.get(url, params=query)
    return api.request(method, url, params=query, json=body)


def check_error(r: requests.Response, error_type: str | None = None, status: int | None = None) -> dict[str, Any]:
    """The legacy error envelope, valid against the Swagger file's schema, with the runtime's status."""
    assert r.headers.get("Content-Type", "").startswith("application/json"), (r.status_code, r.text)
    body = r.json()
    value = body["value"]
    if error_type is not None:
        assert value["error_type"] == error_type, body
    assert body["type"] == f"com.vmware.vapi.std.errors.{value['error_type'].lower()}", body
    assert r.status_code == (status or LEGACY_STATUS[value["error_type"]]), (r.status_code, body)
    name = f"vapi.std.errors.{value['error_type'].lower()}_error"
    validator(f"#/definitions/{name if name in definitions() else 'vapi.std.errors.error_error'}").validate(body)
    for m in value["messages"]:
        assert m["id"] and m["default_message"] and isinstance(m["args"], list), m
    return dict(value)


def check_success(r: requests.Response, path_key: str, method: str) -> Any:
    """200 with `{"value": ...}` valid against the Swagger file's schema for the path (void: no body)."""
    assert r.status_code == 200, r.text
    schema = swagger("content")["paths"][path_key][method.lower()]["responses"]["200"].get("schema")
    if schema is None:
        assert r.content == b"", r.content
        return None
    body = r.json()
    validator(schema["$ref"]).validate(body)
    return body["value"]


class Rest:
    """A /rest client as govc is one: Basic login with header authentication, then the session header."""

    def __init__(self, base: str, login: bool = True) -> None:
        self.base = base
        self.http = requests.Session()
        self.http.verify = False
        self.http.trust_env = False
        if login:
            r = self.http.post(
                base + SESSION, auth=(ADMIN_USER, ADMIN_PASSWORD), headers={"vmware-use-header-authn": "true"}
            )
            assert r.status_code == 200, r.text
            assert "Set-Cookie" not in r.headers
            self.http.headers["vmware-api-session-id"] = r.json()["value"]

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 60)
        return self.http.request(method, path if path.startswith("http") else self.base + path, **kw)


@pytest.fixture()
def rest(server: ServerProcess) -> Rest:
    return Rest(server.base)


# -- routing ----------------------------------------------------------------------------------------------------
def test_every_served_api_operation_has_its_rest_form() -> None:
    """The Swagger file's /rest operations whose /api replacement is served: all of them, by name."""
    names = {(r[0], r[1]) for r in SERVED}
    assert ("POST", f"{US}/id:{{update_session_id}}?~action=complete") in names
    assert ("POST", f"{USF}/id:{{update_session_id}}?~action=add") in names
    assert len(SERVED) >= 40, sorted(names)


@pytest.mark.parametrize("operation", SERVED, ids=op_id)
def test_served_rest_operation_is_routed(api: Api, operation: tuple[str, str, dict[str, Any]]) -> None:
    method, path, op = operation
    r = send(api, method, path, op, str(uuid.uuid4()))
    listed = {int(code) for code in op["responses"]} | {400, 401}
    if r.status_code >= 400:
        value = check_error(r)
        assert value["error_type"] != "OPERATION_NOT_FOUND", f"{method} {path} not routed: {r.text}"
    assert r.status_code in listed, f"{method} {path}: {r.status_code} not in {sorted(listed)}: {r.text}"


def test_every_rest_operation_of_the_content_api_is_served() -> None:
    """Every content /rest operation of the Swagger file has its /api replacement served here (subscriptions, the
    last ones, came with issue 12); one that is not would have to answer OPERATION_NOT_FOUND."""
    assert [op_id(op) for op in OPERATIONS if op not in SERVED] == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{LIB}/nope"),
        ("POST", f"{US}/id:x?~action=nope"),
        ("PUT", f"{LIB}/id:x"),
        ("GET", f"{LIB}/2f7e1d3c-0b4e-4f53-9a41-6c1c3a8d7e55"),  # an id without the `id:` prefix
        ("GET", "/rest/com/vmware/nothing"),
        ("GET", "/rest"),
    ],
)
def test_unknown_rest_paths_are_operation_not_found(rest: Rest, method: str, path: str) -> None:
    check_error(rest.call(method, path), "OPERATION_NOT_FOUND")


# -- login and the session --------------------------------------------------------------------------------------
def test_login_sets_the_session_cookie_unless_header_authn(server: ServerProcess) -> None:
    http = requests.Session()
    http.trust_env = False
    r = http.post(server.base + SESSION, auth=(ADMIN_USER, ADMIN_PASSWORD))
    assert r.status_code == 200, r.text
    sid = r.json()["value"]
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith(f"vmware-api-session-id={sid}") and "Path=/rest" in cookie and "HttpOnly" in cookie
    # The cookie alone authenticates /rest calls (requests sends it back).
    r = http.post(server.base + SESSION, params={"~action": "get"})
    assert check_success_session(r) == ADMIN_USER
    assert http.get(server.base + SESSION).json()["value"]["user"] == ADMIN_USER
    r = http.delete(server.base + SESSION)
    assert r.status_code == 200 and r.content == b""
    check_error(http.post(server.base + SESSION, params={"~action": "get"}), "UNAUTHENTICATED")


def check_success_session(r: requests.Response) -> str:
    assert r.status_code == 200, r.text
    info = r.json()["value"]
    assert set(info) == {"user", "created_time", "last_accessed_time"}, info
    return str(info["user"])


def test_the_rest_session_is_the_api_session(server: ServerProcess, rest: Rest) -> None:
    sid = rest.http.headers["vmware-api-session-id"]
    r = requests.get(server.base + "/api/session", headers={"vmware-api-session-id": sid}, timeout=30)
    assert r.status_code == 200 and r.json()["user"] == ADMIN_USER
    api = Api(server.base)
    r = rest.call("POST", SESSION, params={"~action": "get"}, headers={"vmware-api-session-id": api.session_id})
    assert check_success_session(r) == ADMIN_USER


@pytest.mark.parametrize(
    "auth", [None, ("administrator@vsphere.local", "wrong"), ("nobody@vsphere.local", "x")], ids=str
)
def test_bad_login_is_unauthenticated(server: ServerProcess, auth: tuple[str, str] | None) -> None:
    r = requests.post(server.base + SESSION, auth=auth, timeout=30)
    check_error(r, "UNAUTHENTICATED")
    assert "Set-Cookie" not in r.headers


def test_calls_without_a_session_are_unauthenticated(server: ServerProcess) -> None:
    r = requests.get(server.base + LIB, timeout=30)
    check_error(r, "UNAUTHENTICATED")
    r = requests.get(server.base + LIB, headers={"vmware-api-session-id": "0" * 32}, timeout=30)
    check_error(r, "UNAUTHENTICATED")


# -- the dialect, end to end -------------------------------------------------------------------------------------
def _value(r: requests.Response, key: str, method: str) -> Any:
    return check_success(r, key, method)


def test_upload_and_download_flow_over_rest(rest: Rest) -> None:
    """What govc's library.import and library.export do, every response checked against the Swagger file."""
    tag = uuid.uuid4().hex[:8]
    spec = {"name": f"rest-{tag}", "type": "LOCAL", "storage_backings": [{"type": "OTHER", "storage_uri": "file:///x"}]}
    lib = _value(
        rest.call("POST", f"{REST}/content/local-library", json={"create_spec": spec}),
        "/rest/com/vmware/content/local-library",
        "POST",
    )
    model = _value(rest.call("GET", f"{LIB}/id:{lib}"), "/rest/com/vmware/content/library/id:{library_id}", "GET")
    assert model["name"] == spec["name"] and model["type"] == "LOCAL"
    found = _value(
        rest.call("POST", LIB, params={"~action": "find"}, json={"spec": {"name": spec["name"]}}),
        "/rest/com/vmware/content/library?~action=find",
        "POST",
    )
    assert found == [lib]
    item = _value(
        rest.call(
            "POST",
            ITEM,
            json={"create_spec": {"library_id": lib, "name": "disk", "type": "iso"}, "client_token": str(uuid.uuid4())},
        ),
        "/rest/com/vmware/content/library/item",
        "POST",
    )
    assert _value(
        rest.call("GET", ITEM, params={"library_id": lib}), "/rest/com/vmware/content/library/item", "GET"
    ) == [item]
    sid = _value(
        rest.call("POST", US, json={"create_spec": {"library_item_id": item}}),
        "/rest/com/vmware/content/library/item/update-session",
        "POST",
    )
    data = b"an ISO image\n" * 1000
    info = _value(
        rest.call(
            "POST",
            f"{USF}/id:{sid}",
            params={"~action": "add"},
            json={
                "file_spec": {
                    "name": "disk.iso",
                    "source_type": "PUSH",
                    "size": len(data),
                    "checksum_info": {"algorithm": "SHA256", "checksum": hashlib.sha256(data).hexdigest()},
                }
            },
        ),
        "/rest/com/vmware/content/library/item/updatesession/file/id:{update_session_id}?~action=add",
        "POST",
    )
    assert info["status"] == "WAITING_FOR_TRANSFER"
    r = rest.call("PUT", info["upload_endpoint"]["uri"], data=data)
    assert r.status_code == 200, r.text
    files = _value(
        rest.call("GET", USF, params={"update_session_id": sid}),
        "/rest/com/vmware/content/library/item/updatesession/file",
        "GET",
    )
    assert [(f["name"], f["status"]) for f in files] == [("disk.iso", "READY")]
    got = _value(
        rest.call("POST", f"{USF}/id:{sid}", params={"~action": "get"}, json={"file_name": "disk.iso"}),
        "/rest/com/vmware/content/library/item/updatesession/file/id:{update_session_id}?~action=get",
        "POST",
    )
    assert got["size"] == len(data)
    result = _value(
        rest.call("POST", f"{USF}/id:{sid}", params={"~action": "validate"}),
        "/rest/com/vmware/content/library/item/updatesession/file/id:{update_session_id}?~action=validate",
        "POST",
    )
    assert result["has_errors"] is False
    _value(
        rest.call("POST", f"{US}/id:{sid}", params={"~action": "keep-alive"}, json={"client_progress": 100}),
        "/rest/com/vmware/content/library/item/update-session/id:{update_session_id}?~action=keep-alive",
        "POST",
    )
    _value(
        rest.call("POST", f"{US}/id:{sid}", params={"~action": "complete"}),
        "/rest/com/vmware/content/library/item/update-session/id:{update_session_id}?~action=complete",
        "POST",
    )
    session = _value(
        rest.call("GET", f"{US}/id:{sid}"),
        "/rest/com/vmware/content/library/item/update-session/id:{update_session_id}",
        "GET",
    )
    assert session["state"] == "DONE"
    assert sid in _value(rest.call("GET", US), "/rest/com/vmware/content/library/item/update-session", "GET")
    item_files = _value(
        rest.call("GET", f"{ITEM}/file", params={"library_item_id": item}),
        "/rest/com/vmware/content/library/item/file",
        "GET",
    )
    assert [(f["name"], f["size"]) for f in item_files] == [("disk.iso", len(data))]
    one = _value(
        rest.call("POST", f"{ITEM}/file/id:{item}", params={"~action": "get"}, json={"name": "disk.iso"}),
        "/rest/com/vmware/content/library/item/file/id:{library_item_id}?~action=get",
        "POST",
    )
    assert one["checksum_info"]["checksum"] == hashlib.sha1(data).hexdigest()
    # download
    ds = _value(
        rest.call("POST", DS, json={"create_spec": {"library_item_id": item}}),
        "/rest/com/vmware/content/library/item/download-session",
        "POST",
    )
    listed = _value(
        rest.call("GET", DSF, params={"download_session_id": ds}),
        "/rest/com/vmware/content/library/item/downloadsession/file",
        "GET",
    )
    assert [f["status"] for f in listed] == ["UNPREPARED"]
    prepared = _value(
        rest.call("POST", f"{DSF}/id:{ds}", params={"~action": "prepare"}, json={"file_name": "disk.iso"}),
        "/rest/com/vmware/content/library/item/downloadsession/file/id:{download_session_id}?~action=prepare",
        "POST",
    )
    assert prepared["status"] == "PREPARED"
    r = rest.call("GET", prepared["download_endpoint"]["uri"])
    assert r.status_code == 200 and r.content == data
    _value(
        rest.call("DELETE", f"{DS}/id:{ds}"),
        "/rest/com/vmware/content/library/item/download-session/id:{download_session_id}",
        "DELETE",
    )
    # update, then delete
    _value(
        rest.call("PATCH", f"{ITEM}/id:{item}", json={"update_spec": {"description": "patched"}}),
        "/rest/com/vmware/content/library/item/id:{library_item_id}",
        "PATCH",
    )
    assert (
        _value(
            rest.call("GET", f"{ITEM}/id:{item}"), "/rest/com/vmware/content/library/item/id:{library_item_id}", "GET"
        )["description"]
        == "patched"
    )
    _value(
        rest.call("DELETE", f"{ITEM}/id:{item}"), "/rest/com/vmware/content/library/item/id:{library_item_id}", "DELETE"
    )
    _value(
        rest.call("DELETE", f"{REST}/content/local-library/id:{lib}"),
        "/rest/com/vmware/content/local-library/id:{library_id}",
        "DELETE",
    )
    check_error(rest.call("GET", f"{LIB}/id:{lib}"), "NOT_FOUND")


def test_rest_errors_use_the_runtime_statuses(rest: Rest, api: Api) -> None:
    item = api.create_item()
    _ = rest.call("POST", US, json={"create_spec": {"library_item_id": item}})
    # A second ACTIVE session on the item: RESOURCE_BUSY is 400 on /rest (500 on /api).
    value = check_error(rest.call("POST", US, json={"create_spec": {"library_item_id": item}}), "RESOURCE_BUSY", 400)
    assert item in " ".join(m["default_message"] for m in value["messages"])
    r = api.post("/api/content/library/item/update-session", json={"library_item_id": item})
    assert r.status_code == 500 and r.json()["error_type"] == "RESOURCE_BUSY"
    missing = str(uuid.uuid4())
    value = check_error(rest.call("GET", f"{ITEM}/id:{missing}"), "NOT_FOUND", 404)
    assert missing in value["messages"][0]["default_message"]


@pytest.mark.parametrize(
    ("body", "word"),
    [
        (b"{", "json"),
        (b"[]", "valid"),
        (b'"x"', "valid"),
        (b'{"create_spec": 7}', "create_spec"),
        (b'{"create_spec": {"library_item_id": 7}}', "library_item_id"),
        (b'{"nothing": 1}', "create_spec"),
        (b"\xff\xfe", "json"),
    ],
)
def test_bad_bodies_are_invalid_argument(rest: Rest, body: bytes, word: str) -> None:
    r = rest.call("POST", US, data=body, headers={"Content-Type": "application/json"})
    value = check_error(r, "INVALID_ARGUMENT")
    assert word.lower() in json.dumps(value).lower(), value


def test_body_over_the_limit_is_invalid_argument(rest: Rest) -> None:
    r = rest.call("POST", US, data=b'{"create_spec": {"library_item_id": "' + b"x" * (1024 * 1024 + 10) + b'"}}')
    check_error(r, "INVALID_ARGUMENT")


def test_nul_in_stored_text_is_invalid_argument(rest: Rest, api: Api) -> None:
    lib = api.create_library()
    r = rest.call("POST", ITEM, json={"create_spec": {"library_id": lib, "name": "a\x00b"}})
    value = check_error(r, "INVALID_ARGUMENT")
    assert "create_spec.name" in value["messages"][0]["default_message"]


def test_empty_action_bodies_are_accepted(rest: Rest, api: Api) -> None:
    """govc sends `complete` with an empty chunked body."""
    sid = api.create_session()

    def empty() -> Any:
        yield b""

    r = rest.call("POST", f"{US}/id:{sid}", params={"~action": "cancel"}, data=empty())
    assert r.status_code == 200 and r.content == b"", r.text
    assert api.session(sid)["state"] == "CANCELED"


# -- the /api form under /rest (the official SDK's stock `rest` stubs with a URL ending in /rest) -----------------
def test_api_paths_under_rest_answer_in_the_legacy_envelope(server: ServerProcess, api: Api) -> None:
    r = requests.post(server.base + "/rest/session", auth=(ADMIN_USER, ADMIN_PASSWORD), timeout=30)
    assert r.status_code == 200, r.text
    sid = r.json()["value"]
    h = {"vmware-api-session-id": sid}
    lib = api.create_library()
    r = requests.post(server.base + "/rest/content/library/item", json={"library_id": lib, "name": "x"}, headers=h)
    assert r.status_code == 200, r.text
    item = r.json()["value"]
    r = requests.get(server.base + "/rest/content/library/item", params={"library_id": lib}, headers=h, timeout=30)
    assert r.json() == {"value": [item]}
    r = requests.get(server.base + f"/rest/content/library/item/{uuid.uuid4()}", headers=h, timeout=30)
    check_error(r, "NOT_FOUND")
    r = requests.delete(server.base + f"/rest/content/library/item/{item}", headers=h, timeout=30)
    assert r.status_code == 200 and r.content == b""
