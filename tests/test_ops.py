"""Operations endpoints (issue 13 point 3): /healthz, /readyz (up), /metrics summed over workers, X-Request-Id,
`--log-format json`, the text format unchanged, and the served OpenAPI document.

Readiness going down and coming back (the database behind a TCP forwarder that is cut, the blob store gone) is in
test_ops_ready.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import struct
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from conftest import API_DIR, Api, ServerProcess
from test_workers import children, connection_to, http_request

from contentlib.metrics import FLUSH_EVERY

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import itertools

import gen_openapi

US = "/api/content/library/item/update-session"
DS = "/api/content/library/item/download-session"
GENERATED_ID = re.compile(r"[0-9a-f]{12}-[0-9a-f]+")
_SAMPLE = re.compile(r"^(\w+)(?:\{(.*)\})? (\S+)$")


def get(base: str, path: str, **kw: Any) -> requests.Response:
    with requests.Session() as s:
        s.trust_env = False  # REQUESTS_CA_BUNDLE
        return s.get(base + path, verify=False, timeout=30, **kw)


def scrape(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """/metrics as {(sample name, labels): value}; checks the exposition's content type on the way."""
    r = get(base, "/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in r.text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, line
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m[2] or ""))
        samples[(m[1], labels)] = float(m[3])
    return samples


def baseline(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A scrape once every worker has written what it counted so far (they do four times a second): the numbers a
    test's own requests are then added to, whichever worker later scrapes take."""
    time.sleep(4 * FLUSH_EVERY)
    return scrape(base)


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# -- health and readiness ---------------------------------------------------------------------------------------
def test_healthz_is_alive_without_credentials(server: ServerProcess) -> None:
    r = get(server.base, "/healthz")
    assert r.status_code == 200 and r.json() == {"status": "alive"}
    assert GENERATED_ID.fullmatch(r.headers["X-Request-Id"])


def test_readyz_is_ready_with_the_database_and_blob_store_up(server: ServerProcess) -> None:
    r = get(server.base, "/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"database": "ok", "blob_store": "ok"}}


def test_ops_paths_do_not_hide_api_errors(server: ServerProcess) -> None:
    """Only GET is served there; other methods and neighbouring paths still get the vendor's error shape."""
    api = Api(server.base)
    r = api.post("/healthz")
    assert r.status_code == 404 and r.json()["error_type"] == "OPERATION_NOT_FOUND"
    r = api.get("/api/openapi.json/x")
    assert r.status_code == 404 and r.json()["error_type"] == "OPERATION_NOT_FOUND"


# -- request ids ------------------------------------------------------------------------------------------------
def test_every_response_carries_a_request_id_and_a_sane_incoming_one_is_kept(server: ServerProcess) -> None:
    api = Api(server.base)
    mine = f"client-{uuid.uuid4()}"
    r = api.get("/api/content/library", headers={"X-Request-Id": mine})
    assert r.status_code == 200 and r.headers["X-Request-Id"] == mine
    r = api.get(f"/api/content/library/{uuid.uuid4()}")  # an API error
    assert r.status_code == 404 and GENERATED_ID.fullmatch(r.headers["X-Request-Id"])
    r = api.get("/no/such/path")  # the catch-all
    assert r.status_code == 404 and GENERATED_ID.fullmatch(r.headers["X-Request-Id"])
    r = api.post("/sdk", data=b"<not soap")
    assert r.status_code == 500 and GENERATED_ID.fullmatch(r.headers["X-Request-Id"])
    item = api.create_item()
    api.put_files(item, {"a.bin": b"x" * 1000})
    ds = api.post(DS, json={"library_item_id": item}).json()
    info = api.post(f"{DS}/{ds}/file?action=prepare", json={"file_name": "a.bin"}).json()
    r = api.get(info["download_endpoint"]["uri"], headers={"X-Request-Id": "dl.1"})  # streamed by the data plane
    assert r.status_code == 200 and r.content == b"x" * 1000 and r.headers["X-Request-Id"] == "dl.1"
    ids = {api.get("/healthz").headers["X-Request-Id"] for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize("hostile", ["x" * 129, "a b", "<script>", "-leading-dash", "a\tb", "é", ""])
def test_a_hostile_incoming_request_id_is_replaced(server: ServerProcess, hostile: str) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port))
    try:
        head = f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: {hostile}\r\n\r\n".encode()
        sock.sendall(head)
        response = sock.makefile("rb").read1(65536).decode("latin-1")
    finally:
        sock.close()
    assert response.startswith("HTTP/1.1 200"), response
    rid = re.search(r"(?im)^X-Request-Id: (.*?)\r$", response)
    assert rid and GENERATED_ID.fullmatch(rid[1]), response


# -- metrics ----------------------------------------------------------------------------------------------------
@pytest.fixture
def two_workers(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    srv = make_server(["--workers", "2", "--sweep-interval", "0.3"])
    wait_until(lambda: len(children(srv.proc.pid if srv.proc else 0)) == 2, "two workers")
    return srv


def test_metrics_are_the_sum_of_both_workers(two_workers: ServerProcess) -> None:
    srv = two_workers
    api = Api(srv.base)
    headers = {"vmware-api-session-id": api.session_id or ""}
    a, b = children(srv.proc.pid if srv.proc else 0)
    on_a, on_b = connection_to(srv, worker=a), connection_to(srv, worker=b)
    before = baseline(srv.base)
    try:
        for _ in range(3):
            assert http_request(on_a, "GET", "/api/content/library", headers) == 200
        for _ in range(4):
            assert http_request(on_b, "GET", "/api/content/library", headers) == 200
        for sock in (on_a, on_b):
            assert http_request(sock, "GET", "/api/content/library", {}) == 401
        assert http_request(on_b, "GET", f"/api/content/library/{uuid.uuid4()}", headers) == 404
        assert http_request(on_a, "GET", "/nothing/here", {}) == 404
    finally:
        on_a.close()
        on_b.close()
    expected = {
        ("com.vmware.content.library.list", "200"): 7,
        ("com.vmware.content.library.list", "401"): 2,
        ("com.vmware.content.library.get", "404"): 1,
        ("unmatched", "404"): 1,
    }

    def counts(samples: Any) -> dict[tuple[str, str], float]:
        return {
            (op, st): value(samples, "contentlib_requests_total", operation=op, status=st)
            - value(before, "contentlib_requests_total", operation=op, status=st)
            for op, st in expected
        }

    # Each worker writes its totals four times a second: wait for a scrape with the other worker's (the next scrape
    # may reach the other worker, which may not have read the first one's latest totals yet: everything below is
    # checked on that one scrape). No operation the start or the login used: their counts may still be on their way
    # into `before`.
    scrapes: list[Any] = []

    def complete() -> bool:
        scrapes.append(scrape(srv.base))
        return counts(scrapes[-1]) == expected

    try:
        wait_until(complete, "the counts of both workers")
    except AssertionError:
        raise AssertionError(f"{counts(scrapes[-1])} != {expected}") from None

    after = scrapes[-1]
    op = "com.vmware.content.library.list"
    n = value(after, "contentlib_request_duration_seconds_count", operation=op)
    assert n - value(before, "contentlib_request_duration_seconds_count", operation=op) == 9
    buckets = sorted(
        (float(dict(labels)["le"]), v)
        for (name, labels), v in after.items()
        if name == "contentlib_request_duration_seconds_bucket" and ("operation", op) in labels
    )
    assert len(buckets) == 17 and buckets[-1] == (float("inf"), n)
    assert all(x[1] <= y[1] for x, y in itertools.pairwise(buckets)), buckets  # cumulative
    assert value(after, "contentlib_request_duration_seconds_sum", operation=op) > 0
    assert not any("/" in dict(labels).get("operation", "") for _, labels in after)  # never a path


def test_every_wire_protocol_names_its_operation(server: ServerProcess) -> None:
    api = Api(server.base)
    before = baseline(server.base)
    assert api.get("/rest/com/vmware/content/library").status_code == 200  # the legacy dialect
    assert api.get("/rest/content/library/x").status_code == 404  # the /api form under /rest
    call = {"jsonrpc": "2.0", "id": 1, "method": "invoke",
            "params": {"serviceId": "com.vmware.content.library", "operationId": "list",
                       "input": {"STRUCTURE": {"operation-input": {}}}, "ctx": {"appCtx": {}}}}  # fmt: skip
    assert api.post("/api", json=call).status_code == 200
    assert api.post("/api", data=b"{").status_code == 200  # a JSON-RPC parse error: no operation
    assert api.get("/sdk/vimServiceVersions.xml").status_code == 200
    assert api.post("/api/openapi.json").status_code == 404  # only GET is the document
    assert api.get("/ui/").status_code == 200  # the web UI's files
    assert api.get("/", allow_redirects=False).status_code == 302
    expected = {
        ("ui", "200"): 1,
        ("ui", "302"): 1,
        ("com.vmware.content.library.list", "200"): 2,
        ("com.vmware.content.library.get", "404"): 1,
        ("unmatched", "200"): 1,
        ("soap", "200"): 1,
        ("unmatched", "404"): 1,
    }

    def grown() -> dict[tuple[str, str], float]:
        after = scrape(server.base)
        return {
            key: value(after, "contentlib_requests_total", operation=key[0], status=key[1])
            - value(before, "contentlib_requests_total", operation=key[0], status=key[1])
            for key in expected
        }

    wait_until(lambda: grown() == expected, "the counts (the scrape may reach the other worker)")


def test_bytes_of_an_upload_and_a_download(server: ServerProcess) -> None:
    api = Api(server.base)
    before = baseline(server.base)
    data = os.urandom(300_001)
    item = api.create_item()
    api.put_files(item, {"blob.bin": data})
    assert api.download(item, "blob.bin") == data

    def grew(samples: Any, name: str, op: str) -> float:
        return value(samples, name, operation=op) - value(before, name, operation=op)

    body = json.dumps({"library_item_id": item}).encode()  # what Api.download posts to create its session
    create = "com.vmware.content.library.item.download_session.create"
    wanted = {
        ("contentlib_sent_bytes_total", "data.download"): len(data),
        ("contentlib_received_bytes_total", "data.upload"): len(data),
        ("contentlib_received_bytes_total", create): len(body),
    }
    scrapes: list[Any] = []  # (the scrape may reach the other worker, which reads this one's totals 4 times a second)

    def complete() -> bool:
        scrapes.append(scrape(server.base))
        return {key: grew(scrapes[-1], *key) for key in wanted} == wanted

    wait_until(complete, "the upload's and the download's bytes")
    assert value(scrapes[-1], "contentlib_requests_total", operation="data.upload", status="200") >= 1


def test_a_download_whose_client_goes_away_is_counted_as_499(server: ServerProcess) -> None:
    api = Api(server.base)
    item = api.create_item()
    api.put_files(item, {"big.bin": os.urandom(24 * 1024 * 1024)})
    ds = api.post(DS, json={"library_item_id": item}).json()
    info = api.post(f"{DS}/{ds}/file?action=prepare", json={"file_name": "big.bin"}).json()
    before = baseline(server.base)
    path = info["download_endpoint"]["uri"].split(str(server.port), 1)[1]
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # a reset, with most of the file unsent

    def gone() -> float:
        s = scrape(server.base)
        return value(s, "contentlib_requests_total", operation="data.download", status="499") - value(
            before, "contentlib_requests_total", operation="data.download", status="499"
        )

    wait_until(lambda: gone() == 1, "the broken download counted")


def test_active_sessions_go_up_and_down(server: ServerProcess) -> None:
    api = Api(server.base)

    def active() -> tuple[float, float]:
        s = scrape(server.base)
        return value(s, "contentlib_active_update_sessions"), value(s, "contentlib_active_download_sessions")

    updates, downloads = active()
    item = api.create_item()
    api.put_files(item, {"f.txt": b"hello"})
    us = api.create_session(item)
    assert active() == (updates + 1, downloads)
    ds = api.post(DS, json={"library_item_id": item}).json()
    assert active() == (updates + 1, downloads + 1)
    assert api.post(f"{US}/{us}?action=cancel").status_code == 204
    assert active() == (updates, downloads + 1)
    assert api.post(f"{DS}/{ds}?action=cancel").status_code == 204
    assert active() == (updates, downloads)


def test_sweeper_and_gc_runs_increase(two_workers: ServerProcess) -> None:
    first = scrape(two_workers.base)
    assert value(first, "contentlib_gc_runs_total") >= 1  # the start's scan, in the supervisor
    start = value(first, "contentlib_sweeper_runs_total")
    wait_until(
        lambda: value(scrape(two_workers.base), "contentlib_sweeper_runs_total") >= start + 3, "three more sweeps"
    )


# -- logs -------------------------------------------------------------------------------------------------------
def json_lines(srv: ServerProcess) -> list[dict[str, Any]]:
    text = srv.log_path.read_text(errors="replace")
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_json_logs_carry_the_request_id(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server(["--workers", "1"], env={"CONTENTLIB_LOG_FORMAT": "json"})
    api = Api(srv.base)
    r = api.get("/api/content/library?secret=hunter2", headers={"X-Request-Id": "req-42"})
    assert r.status_code == 200 and r.headers["X-Request-Id"] == "req-42"
    user = f"nobody-{uuid.uuid4().hex[:6]}"
    for i in range(3):  # the third failure logs a warning while its request is handled
        r = requests.post(srv.base + "/api/session", auth=(user, "wrong"), headers={"X-Request-Id": f"login.{i}"})
        assert r.status_code == 401
    sid = api.create_session(api.create_item())
    info = api.add_file(sid, "f.bin", b"abc")
    token_url = info["upload_endpoint"]["uri"]
    r = api.put(token_url, data=b"abc", headers={"X-Request-Id": "up-1"})
    assert r.status_code == 200
    hostile = api.get("/healthz", headers={"X-Request-Id": "bad id!"})
    generated = hostile.headers["X-Request-Id"]
    assert GENERATED_ID.fullmatch(generated)

    def line_for(rid: str, logger: str = "contentlib.access") -> dict[str, Any] | None:
        return next((x for x in json_lines(srv) if x.get("request_id") == rid and x["logger"] == logger), None)

    wait_until(lambda: line_for(generated) is not None, "the access lines")
    access = line_for("req-42")
    assert access is not None
    assert {"time", "level", "logger", "message", "request_id", "method", "path", "status", "duration_ms",
            "operation", "remote"} <= set(access)  # fmt: skip
    assert access["method"] == "GET" and access["path"] == "/api/content/library" and access["status"] == 200
    assert access["operation"] == "com.vmware.content.library.list" and access["remote"] == "127.0.0.1"
    assert access["level"] == "INFO" and isinstance(access["duration_ms"], float)
    warning = next(x for x in json_lines(srv) if x["level"] == "WARNING" and "throttling" in x["message"])
    assert warning["request_id"] == "login.2" and warning["operation"] == "com.vmware.cis.session.create"
    assert warning["logger"].startswith("contentlib")
    upload = line_for("up-1")
    assert upload is not None and upload["operation"] == "data.upload"
    token = token_url.split("/cls/data/")[1].split("/")[0]
    text = srv.log_path.read_text()
    assert token not in text and "hunter2" not in text  # neither a data-plane credential nor a query string
    assert upload["path"].startswith("/cls/data/" + token[:6] + "…/")
    assert line_for(generated) is not None and line_for("bad id!") is None


def test_text_logs_are_unchanged(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server(["--workers", "1"])
    api = Api(srv.base)
    assert api.get("/api/content/library").status_code == 200
    assert api.get(f"/api/content/library/{uuid.uuid4()}").status_code == 404
    lines = srv.log_path.read_text().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("Created user") and lines[1].startswith("contentlib listening on")


def test_an_unknown_log_format_is_refused(tmp_path: Path) -> None:
    import subprocess

    r = subprocess.run(
        [sys.executable, "-m", "contentlib", "serve", "--log-format", "xml", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "--log-format" in r.stderr and "Traceback" not in r.stderr


# -- OpenAPI ----------------------------------------------------------------------------------------------------
def committed() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(gen_openapi.TARGET.read_text())
    return document


def test_the_committed_openapi_document_is_what_the_generator_makes() -> None:
    assert gen_openapi.TARGET.read_text() == gen_openapi.render(API_DIR), "run tools/gen_openapi.py"


def test_the_openapi_document_has_exactly_the_served_operations() -> None:
    document = committed()
    operations = asyncio.run(gen_openapi._operations())
    router = gen_openapi.Router(operations)
    documented = set()
    for path, item in document["paths"].items():
        assert path.startswith("/api/")
        for method in item:
            if method in gen_openapi.METHODS:
                op = gen_openapi.resolve(router, method, path)
                assert op is not None, f"{method} {path} is not served"
                documented.add(op.id)
    assert documented == {op.id for op in operations}
    vendor = {}
    for name in gen_openapi.SOURCES:
        vendor.update(json.loads((API_DIR / name).read_text())["paths"])
    for path, item in document["paths"].items():  # the vendor's words, not rewritten
        for method, spec in item.items():
            assert spec == vendor[path][method]


def test_the_openapi_document_is_valid_and_its_refs_resolve() -> None:
    from schemathesis.specs.openapi.definitions import SWAGGER_20

    document = committed()
    jsonschema.Draft4Validator(SWAGGER_20).validate(document)
    refs: set[str] = set()

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            if isinstance(x.get("$ref"), str):
                refs.add(x["$ref"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(document)
    assert refs and all(r.startswith("#/definitions/") for r in refs)
    names = {r.removeprefix("#/definitions/") for r in refs}
    assert names <= set(document["definitions"]), names - set(document["definitions"])
    assert set(document["definitions"]) == names  # nothing unreferenced


def test_the_served_openapi_document_names_the_request_base(server: ServerProcess) -> None:
    r = get(server.base, "/api/openapi.json")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    served = r.json()
    assert served["host"] == f"127.0.0.1:{server.port}" and served["schemes"] == ["http"]
    assert {**served, "host": "localhost", "schemes": ["https"]} == committed()


def test_the_openapi_document_behind_a_public_url(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server(["--workers", "1", "--public-url", "https://lb.example:9443/content/"])
    served = get(srv.base, "/api/openapi.json").json()
    assert (served["host"], served["schemes"], served["basePath"]) == ("lb.example:9443", ["https"], "/content")
