"""Roles and privileges: every served operation by every role, over real HTTP (and the SDK over JSON-RPC).

Contract: issue 6 point 4. What each operation requires is read from operations.json's "privileges" (the same text
as the swagger file's "if you do not have all of the privileges described as follows"), not from the server's
table. The roles' privileges are the ones README.md documents:

- Administrator: everything;
- ContentLibraryAdministrator: every ContentLibrary.* privilege except the trust store's (Add/DeleteCertFromTrustStore)
  and the server's storage (ReadStorage, ImportStorage), plus System.*;
- ReadOnly: System.Anonymous, System.View, System.Read.

A caller whose role lacks a privilege gets 403 UNAUTHORIZED naming it, and nothing changes (the whole visible state,
read back as the administrator, is the same before and after). A caller whose role has it gets the operation's
success status: each case below is a real, valid call on fresh resources.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import requests
import subkit
from conftest import API_DIR, Api, ServerProcess, assert_error, self_signed_pem

US = "/api/content/library/item/update-session"
DS = "/api/content/library/item/download-session"
SYSTEM = {"System.Anonymous", "System.View", "System.Read"}
CONTENT_LIBRARY = {
    p
    for op in json.loads((API_DIR / "operations.json").read_text())["operations"]
    for text in op["privileges"]
    for p in re.findall(r"``(ContentLibrary\.\w+)``", text)
} | {"ContentLibrary.ImportStorage", "ContentLibrary.ReadStorage"}
TRUST_STORE = {"ContentLibrary.AddCertToTrustStore", "ContentLibrary.DeleteCertFromTrustStore"}
SERVER_STORAGE = {"ContentLibrary.ReadStorage", "ContentLibrary.ImportStorage"}
ROLES: dict[str, set[str]] = {
    "Administrator": SYSTEM | CONTENT_LIBRARY | {"Datastore.AllocateSpace"},
    "ContentLibraryAdministrator": SYSTEM
    | (CONTENT_LIBRARY - TRUST_STORE - SERVER_STORAGE)
    | {"Datastore.AllocateSpace"},
    "ReadOnly": set(SYSTEM),
}
PASSWORD = "Role-Pw!23"


@cache
def required() -> dict[tuple[str, str], set[str]]:
    """(service, operation) → the privileges operations.json names for it."""
    out: dict[tuple[str, str], set[str]] = {}
    for op in json.loads((API_DIR / "operations.json").read_text())["operations"]:
        out[(op["service"], op["operation"])] = {
            p for text in op["privileges"] for p in re.findall(r"``([A-Za-z]+\.[A-Za-z]+)``", text)
        }
    return out


@cache
def success_status() -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for op in json.loads((API_DIR / "operations.json").read_text())["operations"]:
        responses = (op.get("swagger_8_0_2") or {}).get("responses", {})
        ok = [int(code) for code in responses if code.startswith("2")]
        if ok:
            out[(op["service"], op["operation"])] = ok[0]
    return out


def run_cli(srv: ServerProcess, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "contentlib", "user", *args, *srv.store_args()],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def user_name(role: str) -> str:
    return f"role-{role.lower()}@vsphere.local"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path_factory.mktemp("privileges") / "data")
    s.start()
    for role, spelling in [
        ("Administrator", "administrator"),
        ("ContentLibraryAdministrator", "content-library-administrator"),
        ("ReadOnly", "Read-only"),
    ]:
        r = run_cli(s, "add", user_name(role), "--role", spelling, stdin=PASSWORD + "\n")
        assert r.returncode == 0 and role in r.stdout, r.stdout + r.stderr
    yield s
    s.destroy()


@pytest.fixture(scope="module")
def admin(srv: ServerProcess) -> Api:
    return Api(srv.base)


# -- the calls: one valid request per operation, on resources made for it by the administrator ----------------------
@dataclass
class Call:
    method: str
    path: str
    json: Any = None
    params: dict[str, str] = field(default_factory=dict)


def pem_certificate() -> str:
    return self_signed_pem()[0]


def item_with_file(a: Api) -> str:
    item = a.create_item()
    a.put_files(item, {"disk.bin": b"published bytes"})
    return item


def session_with_file(a: Api) -> str:
    sid = a.create_session(item_with_file(a))
    a.upload(sid, "new.bin", b"staged bytes")
    return sid


def ended_session(a: Api) -> str:
    sid = a.create_session()
    assert a.post(f"{US}/{sid}", params={"action": "cancel"}).status_code == 204
    return sid


def download_session(a: Api) -> str:
    r = a.post(DS, json={"library_item_id": item_with_file(a)})
    assert r.status_code == 201, r.text
    return str(r.json())


def ended_download_session(a: Api) -> str:
    ds = download_session(a)
    assert a.post(f"{DS}/{ds}", params={"action": "cancel"}).status_code == 204
    return ds


def trusted_certificate(a: Api) -> str:
    r = a.post("/api/content/trusted-certificates", json={"cert_text": pem_certificate()})
    assert r.status_code == 201, r.text
    return str(r.json())


def published_library(a: Api) -> str:
    return a.create_library(publish_info={"published": True, "authentication_method": "NONE"})


def published_item(a: Api) -> str:
    return a.create_item(published_library(a))


def subscribed_library(a: Api, on_demand: bool = False, with_item: bool = False) -> str:
    """A library subscribed to one this server publishes, once its first sync has ended (a sync running in the
    background must not change what a refused call is compared against)."""
    source = published_library(a)
    if with_item:
        a.create_item(source)
    url = a.get(f"{LL}/{source}").json()["publish_info"]["publish_url"]
    lib = subkit.subscribe(a, url, on_demand=on_demand)
    subkit.wait_for(lambda: subkit.library(a, lib).get("last_sync_time"), what="the first sync")
    return lib


def subscribed_item(a: Api) -> str:
    lib = subscribed_library(a, on_demand=True, with_item=True)
    return str(a.get(I, params={"library_id": lib}).json()[0])


def new_subscription() -> dict[str, Any]:
    new = {"name": f"pushed-{uuid.uuid4().hex[:8]}", "storage_backings": library_spec()["storage_backings"]}
    return {"subscribed_library": {"target": "CREATE_NEW", "location": "LOCAL", "new_subscribed_library": new}}


def subscription(a: Api) -> str:
    """The path of a subscription of a published library, once its subscribed library's first sync has ended."""
    lib = published_library(a)
    r = a.post(f"{L}/{lib}/subscriptions", json=new_subscription())
    assert r.status_code == 201, r.text
    target = a.get(f"{L}/{lib}/subscriptions/{r.json()}").json()["subscribed_library"]
    subkit.wait_for(lambda: subkit.library(a, target).get("last_sync_time"), what="the first sync")
    return f"{L}/{lib}/subscriptions/{r.json()}"


def library_spec() -> dict[str, Any]:
    return {
        "name": f"lib-{uuid.uuid4().hex[:8]}",
        "type": "LOCAL",
        "storage_backings": [{"type": "OTHER", "storage_uri": "file:///tmp/contentlib-test"}],
    }


S = "com.vmware.cis.session"
LOCAL = "com.vmware.content.local_library"
LIB = "com.vmware.content.library"
ITEM = "com.vmware.content.library.item"
USS = "com.vmware.content.library.item.update_session"
USF = "com.vmware.content.library.item.updatesession.file"
DSS = "com.vmware.content.library.item.download_session"
DSF = "com.vmware.content.library.item.downloadsession.file"
TRUST = "com.vmware.content.trusted_certificates"
STORAGE = "com.vmware.content.library.item.storage"
CHANGES = "com.vmware.content.library.item.changes"
CONFIG = "com.vmware.content.configuration"
LL = "/api/content/local-library"
L = "/api/content/library"
I = "/api/content/library/item"  # noqa: E741
TC = "/api/content/trusted-certificates"
SUB = "com.vmware.content.subscribed_library"
SUB_ITEM = "com.vmware.content.library.subscribed_item"
SUBS = "com.vmware.content.library.subscriptions"
SL = subkit.SUB
SI = subkit.SUB_ITEM

CALLS: dict[tuple[str, str], Callable[[Api], Call]] = {
    (S, "get"): lambda a: Call("GET", "/api/session"),
    (S, "delete"): lambda a: Call("DELETE", "/api/session"),
    (LOCAL, "create"): lambda a: Call("POST", LL, library_spec()),
    (LOCAL, "get"): lambda a: Call("GET", f"{LL}/{a.create_library()}"),
    (LOCAL, "list"): lambda a: Call("GET", LL),
    (LOCAL, "update"): lambda a: Call("PATCH", f"{LL}/{a.create_library()}", {"description": "changed"}),
    (LOCAL, "delete"): lambda a: Call("DELETE", f"{LL}/{a.create_library()}"),
    (LIB, "get"): lambda a: Call("GET", f"{L}/{a.create_library()}"),
    (LIB, "list"): lambda a: Call("GET", L),
    (LIB, "find"): lambda a: Call("POST", L, {"type": "LOCAL"}, {"action": "find"}),
    (LIB, "update"): lambda a: Call("PATCH", f"{L}/{a.create_library()}", {"description": "changed"}),
    (ITEM, "create"): lambda a: Call("POST", I, {"library_id": a.create_library(), "name": "new-item"}),
    (ITEM, "get"): lambda a: Call("GET", f"{I}/{a.create_item()}"),
    (ITEM, "list"): lambda a: Call("GET", I, params={"library_id": a.create_library()}),
    (ITEM, "find"): lambda a: Call("POST", I, {"name": "nothing-by-this-name"}, {"action": "find"}),
    (ITEM, "update"): lambda a: Call("PATCH", f"{I}/{a.create_item()}", {"description": "changed"}),
    (ITEM, "delete"): lambda a: Call("DELETE", f"{I}/{a.create_item()}"),
    (f"{ITEM}.file", "list"): lambda a: Call("GET", f"{I}/{item_with_file(a)}/file"),
    (f"{ITEM}.file", "get"): lambda a: Call("GET", f"{I}/{item_with_file(a)}/file", params={"name": "disk.bin"}),
    (USS, "create"): lambda a: Call("POST", US, {"library_item_id": a.create_item()}),
    (USS, "list"): lambda a: Call("GET", US),
    (USS, "get"): lambda a: Call("GET", f"{US}/{a.create_session()}"),
    (USS, "update"): lambda a: Call(
        "PATCH",
        f"{US}/{a.create_session()}",
        {"warning_behavior": [{"type": "SELF_SIGNED_CERTIFICATE", "ignored": True}]},
    ),
    (USS, "delete"): lambda a: Call("DELETE", f"{US}/{ended_session(a)}"),
    (USS, "complete"): lambda a: Call("POST", f"{US}/{session_with_file(a)}", params={"action": "complete"}),
    (USS, "cancel"): lambda a: Call("POST", f"{US}/{session_with_file(a)}", params={"action": "cancel"}),
    (USS, "fail"): lambda a: Call(
        "POST", f"{US}/{a.create_session()}", {"client_error_message": "x"}, {"action": "fail"}
    ),
    (USS, "keep_alive"): lambda a: Call("POST", f"{US}/{a.create_session()}", params={"action": "keep-alive"}),
    (USF, "add"): lambda a: Call("POST", f"{US}/{a.create_session()}/file", {"name": "f.bin", "source_type": "PUSH"}),
    (USF, "list"): lambda a: Call("GET", f"{US}/{session_with_file(a)}/file"),
    (USF, "get"): lambda a: Call("GET", f"{US}/{session_with_file(a)}/file/new.bin"),
    (USF, "remove"): lambda a: Call("DELETE", f"{US}/{session_with_file(a)}/file/new.bin"),
    (USF, "validate"): lambda a: Call("POST", f"{US}/{session_with_file(a)}/file", params={"action": "validate"}),
    (DSS, "create"): lambda a: Call("POST", DS, {"library_item_id": item_with_file(a)}),
    (DSS, "list"): lambda a: Call("GET", DS),
    (DSS, "get"): lambda a: Call("GET", f"{DS}/{download_session(a)}"),
    (DSS, "delete"): lambda a: Call("DELETE", f"{DS}/{ended_download_session(a)}"),
    (DSS, "keep_alive"): lambda a: Call("POST", f"{DS}/{download_session(a)}", params={"action": "keep-alive"}),
    (DSS, "cancel"): lambda a: Call("POST", f"{DS}/{download_session(a)}", params={"action": "cancel"}),
    (DSS, "fail"): lambda a: Call(
        "POST", f"{DS}/{download_session(a)}", {"client_error_message": "x"}, {"action": "fail"}
    ),
    (DSF, "list"): lambda a: Call("GET", f"{DS}/{download_session(a)}/file"),
    (DSF, "get"): lambda a: Call("GET", f"{DS}/{download_session(a)}/file", params={"file_name": "disk.bin"}),
    (DSF, "prepare"): lambda a: Call(
        "POST", f"{DS}/{download_session(a)}/file", {"file_name": "disk.bin"}, {"action": "prepare"}
    ),
    (TRUST, "create"): lambda a: Call("POST", TC, {"cert_text": pem_certificate()}),
    (TRUST, "list"): lambda a: Call("GET", TC),
    (TRUST, "get"): lambda a: Call("GET", f"{TC}/{trusted_certificate(a)}"),
    (TRUST, "delete"): lambda a: Call("DELETE", f"{TC}/{trusted_certificate(a)}"),
    (LOCAL, "publish"): lambda a: Call("POST", f"{LL}/{published_library(a)}", params={"action": "publish"}),
    (ITEM, "copy"): lambda a: Call(
        "POST", f"{I}/{item_with_file(a)}", {"library_id": a.create_library(), "name": "copy"}, {"action": "copy"}
    ),
    (ITEM, "publish"): lambda a: Call(
        "POST", f"{I}/{published_item(a)}", {"force_sync_content": True}, {"action": "publish"}
    ),
    (STORAGE, "list"): lambda a: Call("GET", f"{I}/{item_with_file(a)}/storage"),
    (STORAGE, "get"): lambda a: Call("GET", f"{I}/{item_with_file(a)}/storage", params={"file_name": "disk.bin"}),
    (CHANGES, "list"): lambda a: Call("GET", f"{I}/{item_with_file(a)}/changes"),
    (CHANGES, "get"): lambda a: Call("GET", f"{I}/{item_with_file(a)}/changes/2"),
    (CONFIG, "get"): lambda a: Call("GET", "/api/content/configuration"),
    (CONFIG, "update"): lambda a: Call("PATCH", "/api/content/configuration", {"automatic_sync_start_hour": 21}),
    ("com.vmware.content.security_policies", "list"): lambda a: Call("GET", "/api/content/security-policies"),
    ("com.vmware.content.type", "list"): lambda a: Call("GET", "/api/content/type"),
    (SUB, "create"): lambda a: Call(
        "POST",
        SL,
        {
            **library_spec(),
            "type": "SUBSCRIBED",
            "subscription_info": subkit.subscription(
                a.get(f"{LL}/{published_library(a)}").json()["publish_info"]["publish_url"]
            ),
        },
    ),
    (SUB, "get"): lambda a: Call("GET", f"{SL}/{subscribed_library(a)}"),
    (SUB, "list"): lambda a: Call("GET", SL),
    (SUB, "update"): lambda a: Call("PATCH", f"{SL}/{subscribed_library(a)}", {"description": "changed"}),
    (SUB, "delete"): lambda a: Call("DELETE", f"{SL}/{subscribed_library(a)}"),
    (SUB, "sync"): lambda a: Call("POST", f"{SL}/{subscribed_library(a)}", params={"action": "sync"}),
    (SUB, "evict"): lambda a: Call("POST", f"{SL}/{subscribed_library(a, on_demand=True)}", params={"action": "evict"}),
    (SUB, "probe"): lambda a: Call(
        "POST",
        SL,
        {"subscription_info": subkit.subscription(f"{a.base}/cls/vcsp/lib/{published_library(a)}/lib.json")},
        {"action": "probe"},
    ),
    (SUB_ITEM, "sync"): lambda a: Call(
        "POST", f"{SI}/{subscribed_item(a)}", {"force_sync_content": False}, {"action": "sync"}
    ),
    (SUB_ITEM, "evict"): lambda a: Call("POST", f"{SI}/{subscribed_item(a)}", params={"action": "evict"}),
    (SUBS, "create"): lambda a: Call("POST", f"{L}/{published_library(a)}/subscriptions", new_subscription()),
    (SUBS, "list"): lambda a: Call("GET", f"{L}/{published_library(a)}/subscriptions"),
    (SUBS, "get"): lambda a: Call("GET", subscription(a)),
    (SUBS, "update"): lambda a: Call("PATCH", subscription(a), {"subscribed_library_placement": {}}),
    (SUBS, "delete"): lambda a: Call("DELETE", subscription(a)),
}


def served_operations() -> set[tuple[str, str]]:
    """Every operation of the server's table that needs a session (login itself needs none)."""
    from contentlib import operations

    class Anything:
        def __getattr__(self, name: str) -> Any:
            return Anything()

    return {(op.service, op.name) for op in operations.build(Anything()) if op.auth}


def test_every_served_operation_is_in_the_matrix() -> None:
    assert set(CALLS) == served_operations()
    assert set(CALLS) <= set(required())


def snapshot(a: Api) -> dict[str, Any]:
    """Everything a caller could change, read as the administrator."""

    def ok(r: requests.Response) -> Any:
        assert r.status_code == 200, r.text
        return r.json()

    state: dict[str, Any] = {"libraries": {}, "update_sessions": {}, "download_sessions": {}}

    def still(model: dict[str, Any]) -> dict[str, Any]:
        model.pop("last_sync_time", None)  # a sync an earlier call started may end meanwhile: time moves
        return model

    for lib in sorted(ok(a.get(L))):
        items = {}
        for item in sorted(ok(a.get(I, params={"library_id": lib}))):
            items[item] = {
                "info": still(ok(a.get(f"{I}/{item}"))),
                "files": ok(a.get(f"{I}/{item}/file")),
                "changes": ok(a.get(f"{I}/{item}/changes")),
            }
        state["libraries"][lib] = {"info": still(ok(a.get(f"{L}/{lib}"))), "items": items}
    for sid in sorted(ok(a.get(US))):
        info = ok(a.get(f"{US}/{sid}"))
        info.pop("expiration_time", None)  # reading a session does not change it, but time moves
        state["update_sessions"][sid] = info
    for ds in sorted(ok(a.get(DS))):
        info = ok(a.get(f"{DS}/{ds}"))
        info.pop("expiration_time", None)
        state["download_sessions"][ds] = info
    state["trusted"] = ok(a.get(TC))
    state["configuration"] = ok(a.get("/api/content/configuration"))
    return state


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("op", sorted(CALLS), ids=lambda op: f"{op[0].rsplit('.', 1)[-1]}.{op[1]}")
def test_privilege_matrix(srv: ServerProcess, admin: Api, op: tuple[str, str], role: str) -> None:
    call = CALLS[op](admin)
    caller = Api(srv.base, user_name(role), PASSWORD)
    needed = required()[op] - {"Datastore.AllocateSpace"}  # only for a DATASTORE backing; these calls use OTHER
    allowed = needed <= ROLES[role]
    before = None if allowed else snapshot(admin)
    r = caller.request(call.method, call.path, json=call.json, params=call.params)
    if allowed:
        assert r.status_code == success_status()[op], f"{role} {op}: {r.status_code} {r.text}"
        return
    missing = sorted(needed - ROLES[role])
    assert_error(r, 403, "UNAUTHORIZED", "unable to authorize", user_name(role), *missing)
    assert snapshot(admin) == before


def test_update_session_list_is_the_callers_own(srv: ServerProcess, admin: Api) -> None:
    """list needs ContentLibrary.UpdateSession and returns only the caller's sessions, whatever their role."""
    cl_admin = Api(srv.base, user_name("ContentLibraryAdministrator"), PASSWORD)
    item = admin.create_item()
    mine = cl_admin.create_session(item)
    assert mine in cl_admin.get(US).json()
    assert mine not in admin.get(US).json()
    assert mine not in admin.get(US, params={"library_item_id": item}).json()
    # ... and any role may use a session it was given the id of (System.Anonymous): the read-only user cancels it.
    reader = Api(srv.base, user_name("ReadOnly"), PASSWORD)
    assert_error(reader.get(US), 403, "UNAUTHORIZED", "ContentLibrary.UpdateSession")
    assert reader.post(f"{US}/{mine}", params={"action": "cancel"}).status_code == 204
    assert cl_admin.session(mine)["state"] == "CANCELED"


@pytest.mark.parametrize("scheme", ["file:///etc/passwd", "ds:///vmfs/volumes/datastore1/disk.vmdk"])
def test_pull_from_server_storage_needs_read_storage(srv: ServerProcess, admin: Api, scheme: str) -> None:
    """file.add: "if the caller doesn't have ContentLibrary.ReadStorage privilege on the library item of the update
    session and source type PULL is requested for a file or datastore source endpoint" → 403 (swagger)."""
    cl_admin = Api(srv.base, user_name("ContentLibraryAdministrator"), PASSWORD)
    sid = cl_admin.create_session()
    spec = {"name": "disk.vmdk", "source_type": "PULL", "source_endpoint": {"uri": scheme}}
    r = cl_admin.post(f"{US}/{sid}/file", json=spec)
    assert_error(r, 403, "UNAUTHORIZED", "ContentLibrary.ReadStorage", scheme.split(":")[0])
    assert cl_admin.get(f"{US}/{sid}/file").json() == []
    # An http source needs no such privilege.
    http_spec = {"name": "disk.vmdk", "source_type": "PULL", "source_endpoint": {"uri": "http://127.0.0.1:9/x"}}
    assert cl_admin.post(f"{US}/{sid}/file", json=http_spec).status_code == 201


def test_role_changes_and_removal_reach_open_sessions(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    s = make_server()
    name = f"changing-{uuid.uuid4().hex[:8]}@vsphere.local"
    r = run_cli(s, "add", name, "--role", "read-only", stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stdout + r.stderr
    user = Api(s.base, name, PASSWORD)
    assert_error(user.post(LL, json=library_spec()), 403, "UNAUTHORIZED", "ContentLibrary.CreateLocalLibrary")

    r = run_cli(s, "role", name, "ContentLibraryAdministrator")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{name}\tContentLibraryAdministrator" in run_cli(s, "list").stdout
    deadline = time.monotonic() + 10
    while (r := user.post(LL, json=library_spec())).status_code == 403 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert r.status_code == 201, r.text

    assert run_cli(s, "remove", name).returncode == 0
    deadline = time.monotonic() + 10
    while (r := user.get(LL)).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert_error(r, 401, "UNAUTHENTICATED")


@pytest.mark.parametrize("args", [["--role", "superuser"], ["--role", ""]])
def test_cli_rejects_unknown_roles(srv: ServerProcess, args: list[str]) -> None:
    name = f"nobody-{uuid.uuid4().hex[:8]}"
    r = run_cli(srv, "add", name, *args, stdin=PASSWORD + "\n")
    assert r.returncode != 0
    assert "unknown role" in r.stderr and "ReadOnly" in r.stderr, r.stderr
    assert name not in run_cli(srv, "list").stdout
    r = run_cli(srv, "role", user_name("ReadOnly"), "root")
    assert r.returncode != 0 and "unknown role" in r.stderr, r.stderr


def test_users_default_to_administrator(srv: ServerProcess) -> None:
    """`user add` without --role keeps what it did before roles existed: a full administrator."""
    name = f"default-{uuid.uuid4().hex[:8]}@vsphere.local"
    r = run_cli(srv, "add", name, stdin=PASSWORD + "\n")
    assert r.returncode == 0 and "Administrator" in r.stdout, r.stdout + r.stderr
    user = Api(srv.base, name, PASSWORD)
    assert user.post(TC, json={"cert_text": pem_certificate()}).status_code == 201


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_sdk_raises_unauthorized_over_json_rpc(make_server: Callable[..., ServerProcess]) -> None:
    """The unmodified SDK (vAPI JSON-RPC on POST /api) gets com.vmware.vapi.std.errors_client.Unauthorized."""
    from com.vmware.vapi.std import errors_client
    from test_jsonrpc_sdk import connect, expect
    from test_jsonrpc_sdk import library_spec as sdk_library_spec

    s = make_server(http=False)
    name = f"sdk-reader-{uuid.uuid4().hex[:8]}@vsphere.local"
    assert run_cli(s, "add", name, "--role", "ReadOnly", stdin=PASSWORD + "\n").returncode == 0
    client = connect(s, username=name, password=PASSWORD)
    assert client.content.LocalLibrary.list() == []
    expect(
        lambda: client.content.LocalLibrary.create(sdk_library_spec()),
        errors_client.Unauthorized,
        "ContentLibrary.CreateLocalLibrary",
    )
    assert connect(s).content.LocalLibrary.list() == []
