"""Authentication: /api/session (login, get, logout), the session header on every other call, idle
expiry, and users managed with `python -m contentlib user ...` (password on stdin, never on argv)."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests
from conftest import ADMIN_PASSWORD, ADMIN_USER, Api, ServerProcess
from test_routes import OPERATIONS, assert_vapi_error, op_id, send

DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
PROTECTED = [op for op in OPERATIONS if not (op[0] == "POST" and op[1] == "/api/session")]


def login(base: str, user: str, password: str) -> requests.Response:
    return requests.post(base + "/api/session", auth=(user, password), timeout=30)


def get_session(base: str, sid: str) -> requests.Response:
    return requests.get(base + "/api/session", headers={"vmware-api-session-id": sid}, timeout=30)


def content_call(base: str, sid: str | None) -> requests.Response:
    headers = {"vmware-api-session-id": sid} if sid is not None else {}
    return requests.get(base + "/api/content/local-library", headers=headers, timeout=30)


def cli(srv: ServerProcess, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "contentlib", "user", *args, *srv.store_args()],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=60,
    )


def unique_user() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}@vsphere.local"


# -- login ----------------------------------------------------------------------------------------------
def test_login_returns_session_id(server: ServerProcess) -> None:
    r = login(server.base, ADMIN_USER, ADMIN_PASSWORD)
    assert r.status_code == 201, r.text
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    sid = r.json()
    assert isinstance(sid, str) and len(sid) >= 16
    assert get_session(server.base, sid).status_code == 200
    assert content_call(server.base, sid).status_code == 200


def test_login_twice_gives_independent_sessions(server: ServerProcess) -> None:
    a = login(server.base, ADMIN_USER, ADMIN_PASSWORD).json()
    b = login(server.base, ADMIN_USER, ADMIN_PASSWORD).json()
    assert a != b
    r = requests.delete(server.base + "/api/session", headers={"vmware-api-session-id": a}, timeout=30)
    assert r.status_code == 204, r.text
    assert_vapi_error(get_session(server.base, a), 401, "UNAUTHENTICATED")
    assert get_session(server.base, b).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        "basic:" + ADMIN_USER + ":wrong-password",
        "basic:" + ADMIN_USER + ":",
        "basic:" + ADMIN_USER + ":" + ADMIN_PASSWORD.upper(),
        "basic:nobody@vsphere.local:" + ADMIN_PASSWORD,
        "basic::" + ADMIN_PASSWORD,
        None,
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Bearer " + base64.b64encode(f"{ADMIN_USER}:{ADMIN_PASSWORD}".encode()).decode(),
    ],
    ids=[
        "wrong-password",
        "empty-password",
        "password-wrong-case",
        "unknown-user",
        "empty-user",
        "no-auth",
        "malformed-basic",
        "basic-without-colon",
        "not-basic-scheme",
    ],
)
def test_login_rejected(server: ServerProcess, authorization: str | None) -> None:
    headers: dict[str, str] = {}
    if authorization is not None and authorization.startswith("basic:"):
        user, _, password = authorization[len("basic:") :].partition(":")
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    elif authorization is not None:
        headers["Authorization"] = authorization
    r = requests.post(server.base + "/api/session", headers=headers, timeout=30)
    assert_vapi_error(r, 401, "UNAUTHENTICATED")


def test_login_ignores_stale_session_header(server: ServerProcess) -> None:
    """A Basic login carrying an unknown session header still logs in (the credentials decide)."""
    r = requests.post(
        server.base + "/api/session",
        auth=(ADMIN_USER, ADMIN_PASSWORD),
        headers={"vmware-api-session-id": "not-a-session"},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    assert get_session(server.base, r.json()).status_code == 200


# -- session get / delete ---------------------------------------------------------------------------------
def test_session_get(api: Api) -> None:
    r = api.get("/api/session")
    assert r.status_code == 200, r.text
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    info = r.json()
    assert {"user", "created_time", "last_accessed_time"} <= set(info), info
    assert info["user"] == ADMIN_USER
    assert DATETIME.match(info["created_time"]), info
    assert DATETIME.match(info["last_accessed_time"]), info
    assert info["last_accessed_time"] >= info["created_time"]


def test_logout(api: Api) -> None:
    sid = api.session_id
    assert sid is not None
    r = api.delete("/api/session", headers={"Content-Type": "application/json"})
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_vapi_error(api.get("/api/session"), 401, "UNAUTHENTICATED")
    assert_vapi_error(api.get("/api/content/library"), 401, "UNAUTHENTICATED")
    assert_vapi_error(api.post("/api/content/library?action=find", json={"name": "x"}), 401, "UNAUTHENTICATED")
    assert_vapi_error(api.delete("/api/session"), 401, "UNAUTHENTICATED")


def test_logout_without_session_is_unauthenticated(server: ServerProcess) -> None:
    r = requests.delete(server.base + "/api/session", timeout=30)
    assert_vapi_error(r, 401, "UNAUTHENTICATED")


# -- the session header on every other operation -------------------------------------------------------------
@pytest.mark.parametrize("operation", PROTECTED, ids=op_id)
@pytest.mark.parametrize("header", [None, "", "unknown", "uuid"], ids=["missing", "empty", "garbage", "unknown"])
def test_operation_requires_valid_session(
    server: ServerProcess, operation: tuple[str, str, dict[str, Any]], header: str | None
) -> None:
    method, path, op = operation
    client = Api(server.base, login=False)
    if header == "uuid":
        client.http.headers["vmware-api-session-id"] = str(uuid.uuid4())
    elif header == "unknown":
        client.http.headers["vmware-api-session-id"] = "0123456789abcdef-not-a-session"
    elif header is not None:
        client.http.headers["vmware-api-session-id"] = header
    r = send(client, method, path, op, str(uuid.uuid4()), with_filters=False)
    assert_vapi_error(r, 401, "UNAUTHENTICATED")


def test_rejected_calls_change_nothing(api: Api, server: ServerProcess) -> None:
    name = f"noauth-{uuid.uuid4().hex[:8]}"
    spec = {
        "name": name,
        "type": "LOCAL",
        "storage_backings": [{"type": "OTHER", "storage_uri": "file:///tmp/x"}],
    }
    r = requests.post(server.base + "/api/content/local-library", json=spec, timeout=30)
    assert_vapi_error(r, 401, "UNAUTHENTICATED")
    item = api.create_item(name=name)
    r = requests.delete(
        server.base + f"/api/content/library/item/{item}", headers={"vmware-api-session-id": "x"}, timeout=30
    )
    assert_vapi_error(r, 401, "UNAUTHENTICATED")
    r = api.post("/api/content/library?action=find", json={"name": name})
    assert r.status_code == 200 and r.json() == [], r.text
    assert api.get(f"/api/content/library/item/{item}").status_code == 200


# -- idle expiry ------------------------------------------------------------------------------------------
def test_idle_session_expires(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server(args=["--api-session-timeout", "1", "--sweep-interval", "0.2"])
    sid = login(srv.base, ADMIN_USER, ADMIN_PASSWORD).json()
    assert get_session(srv.base, sid).status_code == 200
    time.sleep(1.8)
    assert_vapi_error(get_session(srv.base, sid), 401, "UNAUTHENTICATED")
    assert_vapi_error(content_call(srv.base, sid), 401, "UNAUTHENTICATED")
    r = requests.post(
        srv.base + "/api/content/library/item?action=find",
        json={"name": "x"},
        headers={"vmware-api-session-id": sid},
        timeout=30,
    )
    assert_vapi_error(r, 401, "UNAUTHENTICATED")
    fresh = login(srv.base, ADMIN_USER, ADMIN_PASSWORD)
    assert fresh.status_code == 201, fresh.text
    assert content_call(srv.base, fresh.json()).status_code == 200


def test_activity_keeps_session_alive(make_server: Callable[..., ServerProcess]) -> None:
    """Idle timeout 2 s: a call every 0.5 s keeps a session alive past 2 s; an idle one expires."""
    srv = make_server(args=["--api-session-timeout", "2", "--sweep-interval", "0.2"])
    active = login(srv.base, ADMIN_USER, ADMIN_PASSWORD).json()
    idle = login(srv.base, ADMIN_USER, ADMIN_PASSWORD).json()
    created = get_session(srv.base, active).json()["created_time"]
    start = time.monotonic()
    while time.monotonic() - start < 3.0:
        time.sleep(0.5)
        r = content_call(srv.base, active)
        assert r.status_code == 200, (time.monotonic() - start, r.text)
    info = get_session(srv.base, active).json()
    assert info["last_accessed_time"] > created, info
    assert_vapi_error(get_session(srv.base, idle), 401, "UNAUTHENTICATED")
    time.sleep(2.6)
    assert_vapi_error(content_call(srv.base, active), 401, "UNAUTHENTICATED")


# -- users via the CLI ------------------------------------------------------------------------------------
def test_cli_user_lifecycle(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server()
    name = unique_user()
    password = "Pw with spaces-1!"

    r = cli(srv, "add", name, stdin=password + "\nsecond line is ignored\n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert password not in r.stdout + r.stderr

    r = login(srv.base, name, password)
    assert r.status_code == 201, r.text
    assert get_session(srv.base, r.json()).json()["user"] == name
    assert_vapi_error(login(srv.base, name, "second line is ignored"), 401, "UNAUTHENTICATED")
    assert_vapi_error(login(srv.base, name, password + "x"), 401, "UNAUTHENTICATED")

    r = cli(srv, "list")
    assert r.returncode == 0, r.stdout + r.stderr
    assert name in r.stdout
    assert ADMIN_USER in r.stdout
    assert password not in r.stdout and ADMIN_PASSWORD not in r.stdout

    new_password = "N3w-" + uuid.uuid4().hex
    r = cli(srv, "passwd", name, stdin=new_password + "\n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert new_password not in r.stdout + r.stderr
    assert_vapi_error(login(srv.base, name, password), 401, "UNAUTHENTICATED")
    assert login(srv.base, name, new_password).status_code == 201
    assert login(srv.base, ADMIN_USER, ADMIN_PASSWORD).status_code == 201

    r = cli(srv, "remove", name)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_vapi_error(login(srv.base, name, new_password), 401, "UNAUTHENTICATED")
    r = cli(srv, "list")
    assert r.returncode == 0, r.stdout + r.stderr
    assert name not in r.stdout
    assert ADMIN_USER in r.stdout
    assert login(srv.base, ADMIN_USER, ADMIN_PASSWORD).status_code == 201


def test_cli_users_persist_across_restart(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server()
    name = unique_user()
    r = cli(srv, "add", name, stdin="persist-Pw1\n")
    assert r.returncode == 0, r.stdout + r.stderr
    srv.restart()
    assert login(srv.base, name, "persist-Pw1").status_code == 201


@pytest.mark.parametrize("form", ["positional", "option"])
def test_cli_never_takes_password_from_argv(make_server: Callable[..., ServerProcess], form: str) -> None:
    srv = make_server()
    name = unique_user()
    secret = "Argv-" + uuid.uuid4().hex
    args = ["add", name, secret] if form == "positional" else ["add", name, "--password", secret]
    r = cli(srv, *args, stdin="")
    assert r.returncode != 0, r.stdout + r.stderr
    assert_vapi_error(login(srv.base, name, secret), 401, "UNAUTHENTICATED")
