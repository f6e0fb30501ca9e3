"""Raw vAPI JSON-RPC 2.0 on `POST /api`: the envelope, the typed encoding, and dispatch of every operation.

Contract: issue 4 (items 1-4: typed vAPI encoding, security contexts, every REST-served operation served on
JSON-RPC too and the others OperationNotFound, non-JSON-RPC input → a JSON-RPC error object, never a 500),
REFERENCE.md §1 item 1 and §7.3 (the captured envelope: `{"jsonrpc": "2.0", "method": "invoke", "id": ..., "params":
{"serviceId", "operationId", "input": {"STRUCTURE": {"operation-input": {...}}}, "ctx": {"appCtx", "securityCtx"}}}`),
the JSON-RPC 2.0 specification for the error codes (-32700 parse error, -32600 invalid request, -32601 method not
found, -32602 invalid params), operations.json / types.json for the operations and their input types.
Every answer is also fed to the SDK runtime's own decoder (vmware-vapi-runtime), so "decodable by the SDK" is checked
on the exact bytes the server sent.
"""

from __future__ import annotations

import copy
import importlib
import json
import uuid
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
import requests
from com.vmware.vapi.std import errors_client
from conftest import ADMIN_PASSWORD, ADMIN_USER, API_DIR, Api, ServerProcess
from vmware.vapi.bindings.common import raise_bindings_exception
from vmware.vapi.bindings.converter import TypeConverter
from vmware.vapi.bindings.stub import VapiInterface
from vmware.vapi.data.serializers.jsonrpc import JsonRpcDictToVapi
from vmware.vapi.lib.connect import get_requests_connector
from vmware.vapi.stdlib.client.factories import StubConfigurationFactory

pytestmark = [
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

USER_PASS = "com.vmware.vapi.std.security.user_pass"
SESSION_ID = "com.vmware.vapi.std.security.session_id"
STD = "com.vmware.vapi.std.errors."

SESSION = "com.vmware.cis.session"
LOCAL = "com.vmware.content.local_library"
LIB = "com.vmware.content.library"
ITEM = "com.vmware.content.library.item"
ITEM_FILE = "com.vmware.content.library.item.file"
US = "com.vmware.content.library.item.update_session"
USF = "com.vmware.content.library.item.updatesession.file"
DS = "com.vmware.content.library.item.download_session"
DSF = "com.vmware.content.library.item.downloadsession.file"
TRUST = "com.vmware.content.trusted_certificates"
STORAGE = "com.vmware.content.library.item.storage"
CHANGES = "com.vmware.content.library.item.changes"
CONFIG = "com.vmware.content.configuration"
POLICIES = "com.vmware.content.security_policies"
TYPE = "com.vmware.content.type"
SERVED_SERVICES = (
    SESSION,
    LOCAL,
    LIB,
    ITEM,
    ITEM_FILE,
    US,
    USF,
    DS,
    DSF,
    TRUST,
    STORAGE,
    CHANGES,
    CONFIG,
    POLICIES,
    TYPE,
)

# Operations of the served services that the server must serve (the update-session flow and its neighbours) ...
MUST_SERVE = {
    (SESSION, "create"),
    (SESSION, "get"),
    (SESSION, "delete"),
    (LOCAL, "create"),
    (LOCAL, "get"),
    (LOCAL, "list"),
    (LOCAL, "update"),
    (LIB, "get"),
    (LIB, "list"),
    (ITEM, "create"),
    (ITEM, "get"),
    (ITEM, "list"),
    (ITEM, "find"),
    (ITEM, "update"),
    (ITEM_FILE, "get"),
    (ITEM_FILE, "list"),
    *((US, op) for op in ("create", "get", "list", "update", "complete", "keep_alive", "cancel", "fail", "delete")),
    *((USF, op) for op in ("add", "get", "list", "remove", "validate")),
    *((DS, op) for op in ("create", "get", "list", "keep_alive", "cancel", "fail", "delete")),
    *((DSF, op) for op in ("list", "prepare", "get")),
    *((TRUST, op) for op in ("create", "get", "list", "delete")),
    # issue 10 point 3
    (LOCAL, "publish"),
    (ITEM, "copy"),
    (ITEM, "publish"),
    (STORAGE, "list"),
    (STORAGE, "get"),
    (CHANGES, "list"),
    (CHANGES, "get"),
    (CONFIG, "get"),
    (CONFIG, "update"),
    (POLICIES, "list"),
    (TYPE, "list"),
}
# ... and ones it does not serve (no REST route either): these must answer OperationNotFound.
MUST_NOT_SERVE = {
    (LIB, "delete"),
    (LIB, "migrate"),
    (LIB, "convert"),
    (LOCAL, "force_delete"),
}


# -- contract data ------------------------------------------------------------------------------------------------
@cache
def operations() -> list[dict[str, Any]]:
    return list(json.loads((API_DIR / "operations.json").read_text())["operations"])


@cache
def types() -> dict[str, Any]:
    return dict(json.loads((API_DIR / "types.json").read_text()))


def std_error_names() -> set[str]:
    return {e["canonical_name"] for e in types()["errors"].values()}


def is_id(t: str) -> bool:
    return t == "id" or t.startswith("id<")


def typed_value(t: str, depth: int = 0) -> Any:
    """A vAPI-typed JSON value of type `t`: ids as unknown UUIDs, optionals null, structures with required fields."""
    assert depth < 8, f"type nesting too deep at {t}"
    if t.startswith("optional<"):
        return {"OPTIONAL": None}
    if is_id(t):
        return str(uuid.uuid4())
    if t.startswith(("list<", "set<", "map<")):
        return []
    simple: dict[str, Any] = {
        "string": "absent.bin",
        "boolean": False,
        "long": 0,
        "double": 0.0,
        "datetime": "2024-01-01T00:00:00.000Z",
        "uri": "https://127.0.0.1/absent.bin",
        "secret": {"SECRET": "x"},
        "binary": {"BINARY": ""},
    }
    if t in simple:
        return simple[t]
    enum = types()["enums"].get(t)
    if enum is not None:
        return enum["values"][0]["value"]
    struct = types()["structures"].get(t)
    assert struct is not None, f"no value for the type {t}"
    fields = {f["name"]: typed_value(f["type"], depth + 1) for f in struct["fields"]}
    return {"STRUCTURE": {struct["canonical_name"]: fields}}


def plain_value(t: str) -> Any:
    """The same value in the untyped REST encoding (structures empty, optionals omitted by the caller)."""
    if is_id(t):
        return str(uuid.uuid4())
    if t.startswith(("list<", "set<")):
        return []
    if t in types()["structures"] or t.startswith("map<"):
        return {}
    return {"string": "absent.bin", "boolean": False, "long": 0}.get(t, "absent.bin")


# -- the SDK runtime as the judge of what the server sent ----------------------------------------------------------
@cache
def stub_config() -> Any:
    # never used to send anything: only the stubs' type information and the error resolver are read
    connector = get_requests_connector(session=requests.Session(), url="https://127.0.0.1:9/api")
    return StubConfigurationFactory.new_std_configuration(connector)


def sdk_interface(python_service: str) -> Any:
    module, cls = python_service.rsplit(".", 1)
    svc = getattr(importlib.import_module(module), cls)(stub_config())
    assert isinstance(svc, VapiInterface)
    return svc._api_interface


def sdk_decode(python_service: str, operation: str, result: dict[str, Any]) -> Any:
    """What the SDK makes of a JSON-RPC `result`: the Python output, or the exception instance it would raise."""
    iface = sdk_interface(python_service)
    op_info = iface._operations[operation]
    method_result = JsonRpcDictToVapi.method_result(copy.deepcopy(result))
    mode = iface._rest_converter_mode
    if method_result.success():
        for validator in op_info["output_validator_list"]:
            raise_bindings_exception(validator.validate(method_result.output, op_info["output_type"]))
        return TypeConverter.convert_to_python(
            method_result.output, op_info["output_type"], stub_config().resolver, mode
        )
    error_type = stub_config().resolver.resolve(method_result.error.name)
    assert error_type is not None, f"the SDK cannot resolve the error {method_result.error.name}"
    return TypeConverter.convert_to_python(method_result.error, error_type, stub_config().resolver, mode)


# -- the wire ---------------------------------------------------------------------------------------------------
def post(base: str, body: Any, raw: bool = False) -> requests.Response:
    data = body if raw else json.dumps(body).encode()
    r = requests.post(base + "/api", data=data, headers={"Content-Type": "application/json"}, timeout=30, verify=False)
    assert r.status_code == 200, f"{r.status_code} {r.text[:500]}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    assert "Traceback" not in r.text, r.text
    return r


def security(sid: str | None = None, user: str | None = None, password: str | None = None) -> dict[str, Any]:
    if sid is not None:
        return {"schemeId": SESSION_ID, "sessionId": sid}
    return {"schemeId": USER_PASS, "userName": user, "password": password}


def envelope(
    service: str,
    operation: str,
    fields: dict[str, Any] | None = None,
    sec: dict[str, Any] | None = None,
    request_id: Any = "1",
) -> dict[str, Any]:
    ctx: dict[str, Any] = {"appCtx": {"opId": str(uuid.uuid4())}}
    if sec is not None:
        ctx["securityCtx"] = sec
    return {
        "jsonrpc": "2.0",
        "method": "invoke",
        "id": request_id,
        "params": {
            "serviceId": service,
            "operationId": operation,
            "input": {"STRUCTURE": {"operation-input": fields or {}}},
            "ctx": ctx,
        },
    }


def invoke(
    base: str, service: str, operation: str, fields: dict[str, Any] | None = None, sec: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One call; returns the vAPI `result` ({"output": ...} or {"error": ...}) after checking the envelope."""
    request_id = str(uuid.uuid4())
    body = post(base, envelope(service, operation, fields, sec, request_id)).json()
    assert body.get("jsonrpc") == "2.0", body
    assert body.get("id") == request_id, body
    assert "error" not in body, body
    result = body["result"]
    assert isinstance(result, dict) and len(set(result) & {"output", "error"}) == 1, result
    return dict(result)


def vapi_error(result: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The typed standard error of a result: (short name such as "not_found", its fields); checks its shape."""
    assert "error" in result, f"expected an error, got {result}"
    err = result["error"]
    assert isinstance(err, dict) and list(err) == ["ERROR"], err
    ((name, fields),) = err["ERROR"].items()
    assert name in std_error_names(), name
    short = name.removeprefix(STD)
    assert fields["error_type"] == {"OPTIONAL": short.upper()}, fields
    messages = fields["messages"]
    assert isinstance(messages, list) and messages, fields
    for m in messages:
        ((canonical, mf),) = m["STRUCTURE"].items()
        assert canonical == "com.vmware.vapi.std.localizable_message"
        assert isinstance(mf["id"], str) and mf["id"]
        assert isinstance(mf["default_message"], str) and mf["default_message"]
        assert isinstance(mf["args"], list)
    return short, dict(fields)


def message_text(fields: dict[str, Any]) -> str:
    return " ".join(
        m["STRUCTURE"]["com.vmware.vapi.std.localizable_message"]["default_message"] for m in fields["messages"]
    )


def login(base: str) -> str:
    result = invoke(base, SESSION, "create", sec=security(user=ADMIN_USER, password=ADMIN_PASSWORD))
    sid = sdk_decode("com.vmware.cis_client.Session", "create", result)
    assert isinstance(sid, str) and sid
    return sid


@pytest.fixture()
def srv(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    return make_server()


@pytest.fixture()
def sid(server: ServerProcess) -> str:
    return login(server.base)


# -- not JSON-RPC: a JSON-RPC error object, never a 500 --------------------------------------------------------------
def rpc_error(r: requests.Response, code: int | tuple[int, ...], request_id: Any = None) -> dict[str, Any]:
    body = r.json()
    assert isinstance(body, dict), body
    assert body.get("jsonrpc") == "2.0", body
    assert "result" not in body, body
    assert body.get("id") == request_id, body
    err = body["error"]
    codes = code if isinstance(code, tuple) else (code,)
    assert err["code"] in codes, body
    assert isinstance(err["message"], str) and err["message"], body
    return dict(err)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"{", b"", b"\xff\xfe\x00", b'{"jsonrpc": "2.0", "method": "invoke", "id": "1",', b"[1, 2"],
    ids=["text", "brace", "empty", "binary", "truncated", "truncated-list"],
)
def test_parse_error(server: ServerProcess, body: bytes) -> None:
    rpc_error(post(server.base, body, raw=True), -32700)


def _valid(request_id: Any = "r-1") -> dict[str, Any]:
    return envelope(LOCAL, "list", {}, {"schemeId": SESSION_ID, "sessionId": "bogus"}, request_id)


def _without(key: str) -> dict[str, Any]:
    e = _valid()
    del e[key]
    return e


def _without_param(key: str) -> dict[str, Any]:
    e = _valid()
    del e["params"][key]
    return e


def _with(key: str, value: Any) -> dict[str, Any]:
    e = _valid()
    e[key] = value
    return e


def _with_param(key: str, value: Any) -> dict[str, Any]:
    e = _valid()
    e["params"][key] = value
    return e


INVALID: list[tuple[str, Any, tuple[int, ...], Any]] = [
    # name, body, accepted codes, id expected back
    ("version-1.0", _with("jsonrpc", "1.0"), (-32600,), "r-1"),
    ("version-number", _with("jsonrpc", 2.0), (-32600,), "r-1"),
    ("no-version", _without("jsonrpc"), (-32600,), "r-1"),
    ("array", [], (-32600,), None),
    ("batch", [_valid()], (-32600,), None),
    ("string", "invoke", (-32600,), None),
    ("number", 5, (-32600,), None),
    ("null", None, (-32600,), None),
    ("no-method", _without("method"), (-32600,), "r-1"),
    ("method-not-string", _with("method", 7), (-32600,), "r-1"),
    ("no-params", _without("params"), (-32600, -32602), "r-1"),
    ("params-list", _with("params", ["x"]), (-32600, -32602), "r-1"),
    ("params-string", _with("params", "x"), (-32600, -32602), "r-1"),
    ("no-serviceId", _without_param("serviceId"), (-32600, -32602), "r-1"),
    ("no-operationId", _without_param("operationId"), (-32600, -32602), "r-1"),
    ("no-input", _without_param("input"), (-32600, -32602), "r-1"),
    ("serviceId-number", _with_param("serviceId", 1), (-32600, -32602), "r-1"),
    ("operationId-null", _with_param("operationId", None), (-32600, -32602), "r-1"),
    ("input-list", _with_param("input", []), (-32600, -32602), "r-1"),
]


@pytest.mark.parametrize(("body", "codes", "request_id"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_request(server: ServerProcess, body: Any, codes: tuple[int, ...], request_id: Any) -> None:
    rpc_error(post(server.base, body), codes, request_id)


@pytest.mark.parametrize("method", ["foo", "Invoke", "invoke ", ""])
def test_unknown_method(server: ServerProcess, method: str) -> None:
    e = _valid(request_id=42)
    e["method"] = method
    rpc_error(post(server.base, e), -32601, 42)


def test_oversized_body_is_a_jsonrpc_error(server: ServerProcess, sid: str) -> None:
    big = envelope(LOCAL, "list", {"padding": "x" * (2 * 1024 * 1024)}, security(sid))
    body = post(server.base, big).json()
    # either refused as a request (JSON-RPC error) or as an argument (vAPI InvalidArgument): never a crash
    if "error" in body:
        assert body["error"]["code"] in (-32600, -32700), body
    else:
        assert vapi_error(body["result"])[0] == "invalid_argument"
    assert isinstance(
        sdk_decode(
            "com.vmware.content_client.LocalLibrary", "list", invoke(server.base, LOCAL, "list", sec=security(sid))
        ),
        list,
    )


def test_ids_echoed(server: ServerProcess, sid: str) -> None:
    for request_id in ("abc", 17, "0"):
        body = post(server.base, envelope(LOCAL, "list", {}, security(sid), request_id)).json()
        assert body["id"] == request_id, body
        assert isinstance(body["result"]["output"], list), body


# -- vAPI-level errors in result.error ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("service", "operation"),
    [("com.vmware.nope", "get"), (LIB, "nope"), (LIB, "migrate"), ("", ""), (US, "Get")],
    ids=["service", "operation", "not-served", "empty", "case"],
)
def test_operation_not_found(server: ServerProcess, sid: str, service: str, operation: str) -> None:
    result = invoke(server.base, service, operation, {}, security(sid))
    short, fields = vapi_error(result)
    assert short == "operation_not_found", result
    assert operation in message_text(fields)
    assert isinstance(sdk_decode("com.vmware.content_client.Library", "get", result), errors_client.OperationNotFound)


@pytest.mark.parametrize(
    "ctx",
    [
        None,
        {},
        {"appCtx": {"opId": "x"}},
        {"securityCtx": None},
        {"securityCtx": {"schemeId": "com.vmware.vapi.std.security.saml_bearer_token", "samlToken": "x"}},
        {"securityCtx": {"schemeId": SESSION_ID}},
        {"securityCtx": {"schemeId": SESSION_ID, "sessionId": "bogus"}},
        {"securityCtx": {"schemeId": SESSION_ID, "sessionId": ""}},
        {"securityCtx": {"sessionId": "whatever"}},
    ],
    ids=["none", "empty", "app-only", "null", "saml", "no-id", "bogus-id", "empty-id", "no-scheme"],
)
def test_unauthenticated(server: ServerProcess, ctx: Any) -> None:
    e = envelope(LOCAL, "list")
    if ctx is None:
        del e["params"]["ctx"]
    else:
        e["params"]["ctx"] = ctx
    body = post(server.base, e).json()
    assert "error" not in body, body
    short, _ = vapi_error(body["result"])
    assert short == "unauthenticated", body
    decoded = sdk_decode("com.vmware.content_client.LocalLibrary", "list", body["result"])
    assert type(decoded) is errors_client.Unauthenticated


def test_login_session_get_logout(server: ServerProcess) -> None:
    bad = invoke(server.base, SESSION, "create", sec=security(user=ADMIN_USER, password="wrong"))
    assert vapi_error(bad)[0] == "unauthenticated"
    nobody = invoke(server.base, SESSION, "create", sec=security(user="nobody", password=ADMIN_PASSWORD))
    assert vapi_error(nobody)[0] == "unauthenticated"
    sid = login(server.base)
    info = invoke(server.base, SESSION, "get", sec=security(sid))
    ((canonical, fields),) = info["output"]["STRUCTURE"].items()
    assert canonical == "com.vmware.cis.session.info"
    assert fields["user"] == ADMIN_USER
    decoded = sdk_decode("com.vmware.cis_client.Session", "get", info)
    assert decoded.user == ADMIN_USER
    assert invoke(server.base, SESSION, "delete", sec=security(sid)) == {"output": None}
    assert vapi_error(invoke(server.base, SESSION, "get", sec=security(sid)))[0] == "unauthenticated"
    assert vapi_error(invoke(server.base, LOCAL, "list", sec=security(sid)))[0] == "unauthenticated"


def test_typed_round_trip(server: ServerProcess, sid: str) -> None:
    """A library created from hand-written typed input comes back as a tagged LibraryModel the SDK decodes."""
    name = f"rpc-raw-{uuid.uuid4().hex[:8]}"
    spec = typed_value("content.LibraryModel")
    fields = spec["STRUCTURE"]["com.vmware.content.library_model"]
    fields["name"] = {"OPTIONAL": name}
    fields["description"] = {"OPTIONAL": "typed by hand"}
    fields["type"] = {"OPTIONAL": "LOCAL"}
    backing = {
        "STRUCTURE": {
            "com.vmware.content.library.storage_backing": {
                "type": "OTHER",
                "datastore_id": {"OPTIONAL": None},
                "storage_uri": {"OPTIONAL": "file:///tmp/rpc-raw"},
            }
        }
    }
    fields["storage_backings"] = {"OPTIONAL": [backing]}
    token = str(uuid.uuid4())
    created = invoke(
        server.base, LOCAL, "create", {"client_token": {"OPTIONAL": token}, "create_spec": spec}, security(sid)
    )
    lib_id = created["output"]
    assert isinstance(lib_id, str)
    uuid.UUID(lib_id)
    again = invoke(
        server.base, LOCAL, "create", {"client_token": {"OPTIONAL": token}, "create_spec": spec}, security(sid)
    )
    assert again == {"output": lib_id}

    got = invoke(server.base, LOCAL, "get", {"library_id": lib_id}, security(sid))
    ((canonical, out),) = got["output"]["STRUCTURE"].items()
    assert canonical == "com.vmware.content.library_model"
    assert out["name"] == {"OPTIONAL": name}
    assert out["id"] == {"OPTIONAL": lib_id}
    assert out["type"] == {"OPTIONAL": "LOCAL"}
    assert all(isinstance(v, dict) and list(v) == ["OPTIONAL"] for v in out.values()), out  # every field optional
    model = sdk_decode("com.vmware.content_client.LocalLibrary", "get", got)
    assert (model.id, model.name, model.description) == (lib_id, name, "typed by hand")
    assert [b.storage_uri for b in model.storage_backings] == ["file:///tmp/rpc-raw"]
    listed = invoke(server.base, LOCAL, "list", {}, security(sid))
    assert lib_id in listed["output"]

    # an optional left out of the input altogether is the same as {"OPTIONAL": null}
    items = invoke(server.base, US, "list", {}, security(sid))
    assert isinstance(items["output"], list)


MALFORMED: list[tuple[str, str, str, dict[str, Any], str]] = [
    # name, service, operation, operation-input fields, a word the message must contain
    ("optional-two-keys", US, "list", {"library_item_id": {"OPTIONAL": None, "X": 1}}, ""),
    ("optional-and-structure", US, "list", {"library_item_id": {"OPTIONAL": None, "STRUCTURE": {}}}, ""),
    ("unknown-tag", US, "get", {"update_session_id": {"FOO": "x"}}, ""),
    ("structure-two-names", LOCAL, "create", {"create_spec": {"STRUCTURE": {"a": {}, "b": {}}}}, ""),
    ("structure-not-object", LOCAL, "create", {"create_spec": {"STRUCTURE": "x"}}, ""),
    (
        "structure-fields-list",
        LOCAL,
        "create",
        {"create_spec": {"STRUCTURE": {"com.vmware.content.library_model": []}}},
        "",
    ),
    ("missing-required", US, "get", {}, "update_session_id"),
    ("id-number", US, "get", {"update_session_id": 12345}, "update_session_id"),
    ("id-list", US, "get", {"update_session_id": ["x"]}, "update_session_id"),
    ("string-as-structure", USF, "add", {"update_session_id": "x", "file_spec": "x"}, "file_spec"),
    ("long-as-string", US, "keep_alive", {"update_session_id": "x", "client_progress": {"OPTIONAL": "lots"}}, ""),
    (
        "unknown-enum",
        USF,
        "add",
        {
            "update_session_id": "x",
            "file_spec": {
                "STRUCTURE": {
                    "com.vmware.content.library.item.updatesession.file.add_spec": {
                        "name": "f.bin",
                        "source_type": "BOGUS",
                    }
                }
            },
        },
        "",
    ),
]


@pytest.mark.parametrize(
    ("service", "operation", "fields", "word"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_typed_input(
    server: ServerProcess, sid: str, service: str, operation: str, fields: dict[str, Any], word: str
) -> None:
    result = invoke(server.base, service, operation, fields, security(sid))
    short, err = vapi_error(result)
    assert short == "invalid_argument", result
    assert word in message_text(err)


def test_input_not_a_structure(server: ServerProcess, sid: str) -> None:
    e = envelope(US, "list", {}, security(sid))
    e["params"]["input"] = {"library_item_id": {"OPTIONAL": None}}  # the fields without the operation-input wrapper
    body = post(server.base, e).json()
    if "error" in body:
        assert body["error"]["code"] == -32602, body
    else:
        assert vapi_error(body["result"])[0] == "invalid_argument", body


def test_rejected_input_changes_nothing(server: ServerProcess, sid: str) -> None:
    api = Api(server.base)
    lib = api.create_library()
    item = api.create_item(lib)
    spec = typed_value("content.library.item.UpdateSessionModel")
    spec["STRUCTURE"]["com.vmware.content.library.item.update_session_model"]["library_item_id"] = {"OPTIONAL": item}
    bad_token = invoke(
        server.base, US, "create", {"client_token": {"OPTIONAL": "nope"}, "create_spec": spec}, security(sid)
    )
    assert vapi_error(bad_token)[0] == "invalid_argument"
    assert invoke(server.base, US, "list", {"library_item_id": {"OPTIONAL": item}}, security(sid)) == {"output": []}
    ok = invoke(server.base, US, "create", {"create_spec": spec}, security(sid))
    us_id = ok["output"]
    busy = invoke(server.base, US, "create", {"create_spec": spec}, security(sid))
    assert vapi_error(busy)[0] == "resource_busy"
    assert isinstance(
        sdk_decode("com.vmware.content.library.item_client.UpdateSession", "create", busy), errors_client.ResourceBusy
    )
    assert invoke(server.base, US, "list", {"library_item_id": {"OPTIONAL": item}}, security(sid)) == {
        "output": [us_id]
    }
    # the JSON-RPC session and the REST view agree
    assert api.session(us_id)["state"] == "ACTIVE"


# -- every operation of the served services is dispatchable ---------------------------------------------------------
def rest_served(base: str, session_id: str, op: dict[str, Any]) -> bool:
    """Is the operation served on /api REST? Unknown ids everywhere; only OPERATION_NOT_FOUND means 'no'."""
    path, _, query = op["url_template"].partition("?")
    params: dict[str, str] = {}
    body: dict[str, Any] | None = None
    for part in filter(None, query.split("&")):
        key, _, value = part.partition("=")
        if value:
            params[key] = value
    for p in op["params"]:
        loc, t = p["location"], p["type"]
        if loc["in"] == "path":
            path = path.replace("{" + loc["name"] + "}", str(plain_value(t)))
        elif loc["in"] == "query" and not p["optional"]:
            params[loc["name"]] = str(plain_value(t))
        elif loc["in"] == "body":
            body = plain_value(t)
        elif loc["in"] == "body-field" and not p["optional"]:
            body = body or {}
            body[loc["name"]] = plain_value(t)
    r = requests.request(
        op["http_method"],
        base + path,
        params=params,
        json=body,
        headers={"vmware-api-session-id": session_id},
        timeout=30,
        verify=False,
    )
    if r.status_code != 404:
        return True
    return bool(r.json().get("error_type") != "OPERATION_NOT_FOUND")


def test_every_operation_is_dispatchable(srv: ServerProcess) -> None:
    ops = [o for o in operations() if o["service"] in SERVED_SERVICES]
    assert {(o["service"], o["operation"]) for o in ops} >= MUST_SERVE | MUST_NOT_SERVE  # the contract lists them
    api = Api(srv.base)
    session_id = login(srv.base)
    served: set[tuple[str, str]] = set()
    problems: list[str] = []
    for op in ops:
        key = (op["service"], op["operation"])
        logout = key == (SESSION, "delete")  # give the logout calls sessions of their own
        rest_sid = Api(srv.base).session_id if logout else api.session_id
        assert rest_sid is not None
        on_rest = rest_served(srv.base, rest_sid, op)
        fields = {p["name"]: typed_value(p["type"]) for p in op["params"]}
        ids = [fields[p["name"]] for p in op["params"] if is_id(p["type"])]
        result = invoke(srv.base, *key, fields, security(login(srv.base) if logout else session_id))
        name = f"{key[0]}.{key[1]}"
        # the SDK runtime must be able to decode whatever came back
        try:
            decoded = sdk_decode(op["python_service"], op["operation"], result)
        except Exception as e:  # collected, reported together
            problems.append(f"{name}: the SDK cannot decode {result}: {e!r}")
            continue
        if "output" in result:
            served.add(key)
            if not on_rest:
                problems.append(f"{name}: answered over JSON-RPC but not served on REST")
            continue
        short, err = vapi_error(result)
        assert isinstance(decoded, errors_client.Error)
        if short == "operation_not_found":
            if on_rest:
                problems.append(f"{name}: served on REST but OperationNotFound over JSON-RPC")
            assert op["operation"] in message_text(err), err
            continue
        served.add(key)
        if not on_rest:
            problems.append(f"{name}: dispatched over JSON-RPC ({short}) but not served on REST")
        if short == "internal_server_error":
            problems.append(f"{name}: internal error: {message_text(err)}")
        if short == "unauthenticated" and key != (SESSION, "create"):
            problems.append(f"{name}: Unauthenticated with a valid session context")
        required_ids = [p for p in op["params"] if not p["optional"]]
        if required_ids and all(is_id(p["type"]) for p in required_ids):
            # nothing but unknown ids: NotFound that names the id
            if short != "not_found":
                problems.append(f"{name}: unknown ids answered {short}, not not_found: {message_text(err)}")
            elif not any(i in message_text(err) for i in ids):
                problems.append(f"{name}: the NotFound message names none of {ids}: {message_text(err)}")
    assert not problems, "\n".join(problems)
    assert served >= MUST_SERVE, sorted(MUST_SERVE - served)
    assert not served & MUST_NOT_SERVE, sorted(served & MUST_NOT_SERVE)
    # never a crash: the server still answers, and logged no stack trace
    still = invoke(srv.base, LOCAL, "list", sec=security(session_id))
    assert isinstance(sdk_decode("com.vmware.content_client.LocalLibrary", "list", still), list)
    assert "Traceback" not in srv.log(), srv.log()
