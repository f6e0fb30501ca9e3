#!/usr/bin/env python3
"""Where a request's time goes (issue 11 point 1): SQL statements, commits and fsyncs per request, server CPU per
request, and a profile of the update-session GET by layer.

    .venv/bin/python -m bench.breakdown [--requests N] [--profile-secs S] [--out FILE]

1. Statements and commits: the operations of an update-session cycle (and the reads around it) are called in this
   process on a real App over a SQLite store, through the /api codec with aiohttp requests built in memory; the
   SQLite trace callback counts every statement, the BEGIN IMMEDIATE ... COMMIT pairs among them, and the writes.
2. fsyncs and CPU: a real `contentlib serve --http --workers 1` runs under `strace -f -c` (fsync, fdatasync,
   sync_file_range, msync); each kind of request is sent N times over one keep-alive connection; the server's CPU
   time over those requests (from /proc) and the fsync count are divided by N.
3. Profile: `py-spy record` samples the server while `wrk -t2 -c8` GETs the update session; the samples are grouped
   by layer: the event loop (uvloop, in the `run_app` frame), the socket send (aiohttp's `_writelines`: the kernel
   delivers the bytes over loopback in the sender's time), the rest of aiohttp, contentlib's codec (protocols/),
   the operations and services, and the store (sqlite3 included). py-spy comes from the test extras.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.common import REPO, BenchError, table, tree_cpu
from bench.server import ADMIN_USER, SESSION_HEADER, US, Api, Server

PASSWORD = "Breakdown-pw-1"
_FSYNCS = ("fsync", "fdatasync", "sync_file_range", "msync")


# -- 1. statements and commits, in process ---------------------------------------------------------------------------
async def _count_statements() -> list[list[str]]:
    from aiohttp import streams
    from aiohttp.test_utils import make_mocked_request

    from contentlib.app import open_app
    from contentlib.config import Settings
    from contentlib.services.auth import hash_password

    data = Path(tempfile.mkdtemp(prefix="breakdown-"))
    try:
        settings = Settings(data_dir=data, http=True)
        app = await open_app(settings)
        await app.start()
        await app.store.add_user(ADMIN_USER, hash_password(PASSWORD), time.time(), "Administrator")
        trace: list[str] = []
        app.store.db.set_trace_callback(trace.append)  # type: ignore[attr-defined]
        rows: list[list[str]] = []

        async def call(
            what: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
        ) -> Any:
            h = {"Host": "127.0.0.1:8080", **(headers or {})}
            raw = b"" if body is None else json.dumps(body).encode()
            if body is not None:
                h.update({"Content-Type": "application/json", "Content-Length": str(len(raw))})
            probe = make_mocked_request(method, path, headers=h)
            payload = streams.StreamReader(probe.protocol, 2**16, loop=asyncio.get_running_loop())
            if raw:
                payload.feed_data(raw)
            payload.feed_eof()
            request = make_mocked_request(method, path, headers=h, payload=payload)
            trace.clear()
            response = await app.rest.serve(request, path.split("?")[0])
            statements = [s.split()[0].upper() for s in trace]
            writes = sum(1 for s in statements if s in ("INSERT", "UPDATE", "DELETE"))
            commits = statements.count("COMMIT")
            shown = f"{method} {path.split('?')[0][:60]}"
            rows.append([what, shown, str(response.status), str(len(trace) - 2 * commits), str(writes), str(commits)])
            return json.loads(response.body) if getattr(response, "body", None) else None

        basic = base64.b64encode(f"{ADMIN_USER}:{PASSWORD}".encode()).decode()
        sid = await call("login", "POST", "/api/session", headers={"Authorization": f"Basic {basic}"})
        auth = {SESSION_HEADER: sid}
        backing = [{"type": "OTHER", "storage_uri": "file:///tmp/breakdown"}]
        lib = await call("library create", "POST", "/api/content/local-library",
                         {"name": "b", "type": "LOCAL", "storage_backings": backing}, auth)  # fmt: skip
        item = await call("item create", "POST", "/api/content/library/item",
                          {"library_id": lib, "name": "i", "type": "iso"}, auth)  # fmt: skip
        await call("item get", "GET", f"/api/content/library/item/{item}", headers=auth)
        await call("item list", "GET", f"/api/content/library/item?library_id={lib}", headers=auth)
        us = await call("update-session create", "POST", US, {"library_item_id": item}, auth)
        await call("update-session get", "GET", f"{US}/{us}", headers=auth)
        await call("update-session file add", "POST", f"{US}/{us}/file",
                   {"name": "a.iso", "source_type": "PUSH", "size": 0}, auth)  # fmt: skip
        await call("update-session file get", "GET", f"{US}/{us}/file/a.iso", headers=auth)
        await call("update-session complete (file not sent)", "POST", f"{US}/{us}?action=complete", headers=auth)
        await call("update-session cancel", "POST", f"{US}/{us}?action=cancel", headers=auth)
        us = await call("update-session create", "POST", US, {"library_item_id": item}, auth)
        await call("update-session complete (no files)", "POST", f"{US}/{us}?action=complete", headers=auth)
        await call("logout", "DELETE", "/api/session", headers=auth)
        await app.stop()
        return rows
    finally:
        shutil.rmtree(data, ignore_errors=True)


# -- 2. fsyncs and CPU per request over HTTP --------------------------------------------------------------------------
def _strace_counts(path: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[-1] in _FSYNCS:
            counts[fields[-1]] = int(fields[3])
    return counts


def _per_request(srv: Server, api: Api, n: int, work: Path) -> list[list[str]]:
    strace = shutil.which("strace")
    if strace is None:
        raise BenchError("strace is needed (apt-get install -y strace)")
    lib = api.create_library()
    http = api.http

    def item_create(i: int) -> None:
        api.call("POST", "/api/content/library/item", 201, json={"library_id": lib, "name": f"n{i}", "type": "iso"})

    item = api.create_item(lib)
    session = api.create_session(api.create_item(lib))

    def cycle(_i: int) -> None:
        sid = api.call("POST", US, 201, json={"library_item_id": item})
        api.call("GET", f"{US}/{sid}", 200)
        api.call("POST", f"{US}/{sid}?action=complete", 204)

    def upload(i: int) -> None:  # one 4 KiB file, end to end: create, add, PUT, complete
        sid = api.call("POST", US, 201, json={"library_item_id": item})
        uri = api.add_file(sid, f"f{i}.bin", 4096)
        r = http.put(uri, data=b"x" * 4096, timeout=60)
        if r.status_code != 200:
            raise BenchError(f"PUT {r.status_code}: {r.text[:200]}")
        api.call("POST", f"{US}/{sid}?action=complete", 204)

    kinds = [
        ("update-session GET", lambda _i: api.call("GET", f"{US}/{session}", 200), 1),
        ("item GET", lambda _i: api.call("GET", f"/api/content/library/item/{item}", 200), 1),
        ("item create", item_create, 1),
        ("cycle: create, GET, complete", cycle, 3),
        ("upload cycle: create, add, PUT 4 KiB, complete", upload, 4),
    ]
    rows = []
    for what, fn, requests_each in kinds:
        fn(-1)  # warm
        out = work / "strace.txt"
        tracer = subprocess.Popen([strace, "-f", "-c", "-o", str(out), "-e", "trace=" + ",".join(_FSYNCS), "-p",
                                   str(srv.pid)], stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(0.5)  # attached
        cpu0 = tree_cpu(srv.pid)
        for i in range(n):
            fn(i)
        cpu = tree_cpu(srv.pid) - cpu0
        tracer.send_signal(2)
        tracer.wait(30)
        fsyncs = sum(_strace_counts(out).values())
        per = n * requests_each
        rows.append([what, str(requests_each), f"{fsyncs / n:.2f}", f"{cpu / per * 1e6:.0f}"])
    return rows


# -- 3. profile by layer ---------------------------------------------------------------------------------------------
_LAYERS = [
    ("socket send (aiohttp _writelines: loopback delivery)", re.compile(r"_writelines|StreamWriter\._write ")),
    ("event loop (uvloop, in run_app)", re.compile(r"^run_app ")),
    ("store (storage/, sqlite3 or asyncpg)", re.compile(r"contentlib/storage/")),
    ("operations and services", re.compile(r"contentlib/(services|operations|model|errors)")),
    ("contentlib codec (protocols/, app.py)", re.compile(r"contentlib/(protocols|app)")),
    ("aiohttp routing (web_app, web_urldispatcher)", re.compile(r"aiohttp/(web_app|web_urldispatcher)")),
    ("aiohttp HTTP (parser, request, response, writer)", re.compile(r"aiohttp/|multidict|yarl")),
]


def _profile(srv: Server, api: Api, secs: int, work: Path) -> list[list[str]]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    wrk = shutil.which("wrk")
    if not Path(spy).exists() or wrk is None:
        raise BenchError("py-spy (test extras) and wrk are needed for the profile")
    session = api.create_session(api.create_item(api.create_library()))
    script = work / "get.lua"
    script.write_text(f'wrk.headers["{SESSION_HEADER}"] = "{api.session_id}"\n')
    load = subprocess.Popen([wrk, "-t2", "-c8", f"-d{secs + 3}s", "-s", str(script), f"{srv.base}{US}/{session}"],
                            stdout=subprocess.DEVNULL)  # fmt: skip
    time.sleep(1)
    raw = work / "profile.raw"
    subprocess.run([spy, "record", "-p", str(srv.pid), "-d", str(secs), "-r", "500", "-f", "raw", "-o", str(raw),
                    "--nonblocking"], check=True, capture_output=True)  # fmt: skip
    load.wait(secs + 30)
    layers: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = stack.split(";")[-1]
        n = int(count)
        total += n
        layers[next((name for name, pattern in _LAYERS if pattern.search(leaf)), "other (Python, stdlib)")] += n
    return [[name, f"{100 * n / total:.1f}%"] for name, n in layers.most_common()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=1000, help="requests of each kind for the fsync and CPU counts")
    p.add_argument("--profile-secs", type=int, default=8)
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "breakdown.md")
    args = p.parse_args(argv)
    out = ["# Where a request's time goes (bench/breakdown.py)", ""]
    out += ["## SQL statements per request (SQLite; BEGIN/COMMIT not counted as statements)", ""]
    out.append(table(["operation", "request", "status", "statements", "writes", "commits"],
                     asyncio.run(_count_statements())))  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="breakdown-"))
    srv = Server(work / "srv", args=["--workers", "1"], password=PASSWORD)
    try:
        srv.start()
        api = Api(srv.base, srv.password)
        out += ["", f"## fsyncs and server CPU per request ({args.requests} of each, one connection, --workers 1)", ""]
        out.append(table(["requests", "HTTP requests each", "fsyncs each", "server CPU µs per HTTP request"],
                         _per_request(srv, api, args.requests, work)))  # fmt: skip
        out += ["", f"## Profile of the update-session GET (py-spy, wrk -t2 -c8, {args.profile_secs} s)", ""]
        out.append(table(["layer", "samples"], _profile(srv, api, args.profile_secs, work)))
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(out) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    os.sync()
    return 0


if __name__ == "__main__":
    sys.exit(main())
