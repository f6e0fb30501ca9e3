"""Section 11: the VCSP feed of a published library with 10,000 items (issue 12 point 4).

A server of its own (`python -m contentlib serve --http`, SQLite + local disk, a fresh data dir) gets two published
local libraries, one with `authentication_method` NONE and one with BASIC, each with one item the server made
itself (an ISO item with one 1 KiB file, uploaded and completed). The server is stopped and each library filled
to FILL_ITEMS items straight in its SQLite file: one INSERT ... SELECT per table copies the template item and its
file row for every new id (as section 9 fills its million rows), so every item of the feed has a file, shared with
the template, as a copied item's is. Restarted, the feed is checked (items.json lists every item, a filled item's
item.json reads back, BASIC refuses a caller without the password), then measured with wrk (`-t2 -c8`, `--runs`
runs each, median): lib.json and items.json with each authentication method, and the revalidation of items.json
that a subscriber polling with its ETag makes (`If-None-Match` -> 304, no body); then how long writing the
library's feed into the data dir takes (`persist_json_enabled`), whole and after one change. Also the cost of one argon2
verification of a publish password (the feed's hasher, in this process): a BASIC request that had to pay it would
be bounded by it; the server remembers a verified password per process for a minute, keyed by the stored hash
(services/publish_info.py, `verify`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.api_rate import WrkResult, ensure_wrk, run_wrk
from bench.common import BenchError, Config, Meter, Report, Stat, table
from bench.peer import uuid4_strings
from bench.server import Api, Server

FILL_ITEMS, QUICK_FILL_ITEMS = 10_000, 1_000
FEED_PASSWORD = "Feed-bench-Pa55"
LL = "/api/content/local-library"
THREADS, CONNS = 2, 8
PERSIST_TICK = 1.0  # --sweep-interval of the server: how often the persisted feeds are brought up to date


@dataclass(frozen=True)
class FeedTest:
    auth: str  # NONE | BASIC
    document: str  # lib.json | items.json
    revalidate: bool = False  # If-None-Match with the document's current ETag: 304

    @property
    def label(self) -> str:
        return f"{self.document}{' If-None-Match (304)' if self.revalidate else ''}"


TESTS = (
    FeedTest("NONE", "lib.json"),
    FeedTest("BASIC", "lib.json"),
    FeedTest("NONE", "items.json"),
    FeedTest("BASIC", "items.json"),
    FeedTest("NONE", "items.json", revalidate=True),
    FeedTest("BASIC", "items.json", revalidate=True),
)


def published_library(api: Api, auth: str) -> tuple[str, str]:
    """A published local library with one ISO item of one 1 KiB file: (library id, publish_url)."""
    info: dict[str, Any] = {"published": True, "authentication_method": auth}
    if auth == "BASIC":
        info["password"] = FEED_PASSWORD
    spec = {
        "name": f"feed-{auth.lower()}-{uuid.uuid4().hex[:6]}",
        "storage_backings": [{"type": "OTHER", "storage_uri": "file:///tmp/contentlib-bench"}],
        "publish_info": info,
    }
    lib = str(api.call("POST", LL, 201, json=spec))
    item = api.create_item(lib)
    sid = api.create_session(item)
    uri = api.add_file(sid, "disk.iso", 1024)
    r = requests.put(uri, data=b"\x5a" * 1024, timeout=60)
    if r.status_code != 200:
        raise BenchError(f"PUT {uri} -> {r.status_code}: {r.text[:300]}")
    api.complete(sid)
    url = api.call("GET", f"{LL}/{lib}", 200)["publish_info"]["publish_url"]
    return lib, str(url)


def fill_library(db: Path, library_id: str, items: int) -> float:
    """The library's one item copied until it has `items`, with new ids, names and creation times, and a copy of
    its file row each, in one transaction of the stopped server's database; the seconds it took."""
    t0 = time.perf_counter()
    con = sqlite3.connect(db, isolation_level=None)
    try:
        (template,) = con.execute("SELECT id FROM items WHERE library_id=?", (library_id,)).fetchone()
        cols = {t: [r[1] for r in con.execute(f"PRAGMA table_info({t})")] for t in ("items", "item_files")}
        item_exprs = {"id": "f.item_id", "name": "printf('feed-%05d', f.n)", "created": "t.created + f.n * 0.001",
                      "modified": "t.modified + f.n * 0.001", "client_token": "NULL"}  # fmt: skip
        item_sql = (
            f"INSERT INTO items ({', '.join(cols['items'])}) SELECT "
            + ", ".join(item_exprs.get(c, f"t.{c}") for c in cols["items"])
            + " FROM temp.fill_ids f, items t WHERE t.id = ? ORDER BY f.n"
        )
        file_sql = (
            f"INSERT INTO item_files ({', '.join(cols['item_files'])}) SELECT "
            + ", ".join("f.item_id" if c == "item_id" else f"t.{c}" for c in cols["item_files"])
            + " FROM temp.fill_ids f, item_files t WHERE t.item_id = ? ORDER BY f.n"
        )
        con.execute("CREATE TEMP TABLE fill_ids (n INTEGER PRIMARY KEY, item_id TEXT NOT NULL)")
        con.execute("BEGIN IMMEDIATE")
        ids = sorted(uuid4_strings(items - 1))
        con.executemany("INSERT INTO temp.fill_ids VALUES (?, ?)", enumerate(ids, 1))
        con.execute(item_sql, (template,))
        con.execute(file_sql, (template,))
        con.execute("COMMIT")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return time.perf_counter() - t0


def _basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"vcsp:{password}".encode()).decode()


def write_script(path: Path, headers: dict[str, str]) -> Path:
    # Lua long brackets: an ETag's double quotes are part of the value
    lines = ['wrk.method = "GET"'] + [f'wrk.headers["{k}"] = [[{v}]]' for k, v in headers.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def cold_items_ms(api: Api, lib: str, url: str, headers: dict[str, str], runs: int) -> Stat:
    """items.json right after a change (`local_library.publish` raises the feed version), when the server makes it
    again rather than serve the one it kept: one request each time, in milliseconds."""
    out = []
    for _ in range(runs):
        api.call("POST", f"{LL}/{lib}?action=publish", 204)
        t = time.perf_counter()
        r = requests.get(url.rsplit("/", 1)[0] + "/items.json", headers=headers, timeout=120)
        out.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200:
            raise BenchError(f"items.json after a publish: {r.status_code} {r.text[:300]}")
    return Stat(out)


def persist_seconds(api: Api, srv: Server, lib: str, url: str) -> tuple[float, float]:
    """Seconds until the persisted feed (`DATA_DIR/vcsp/<lib>/lib.json`) shows the served version: after
    `persist_json_enabled` is turned on, then after one item's `publish`."""
    path = srv.data_dir / "vcsp" / lib / "lib.json"

    def settled(deadline: float = 600.0) -> float:
        t0, want = time.perf_counter(), requests.get(url, timeout=30).json()["version"]
        while time.perf_counter() - t0 < deadline:
            with contextlib.suppress(OSError, ValueError, KeyError):
                if json.loads(path.read_bytes())["version"] == want:
                    return time.perf_counter() - t0
            time.sleep(0.05)
        raise BenchError(f"the persisted feed of {lib} did not reach version {want} in {deadline:.0f} s")

    api.call("PATCH", f"{LL}/{lib}", 204, json={"publish_info": {"persist_json_enabled": True}})
    first = settled()
    items = requests.get(url.rsplit("/", 1)[0] + "/items.json", timeout=120).json()["items"]
    item = items[len(items) // 2]["id"].removeprefix("urn:uuid:")
    api.call("POST", f"/api/content/library/item/{item}?action=publish", 204, json={"force_sync_content": False})
    return first, settled()


def argon2_ms(runs: int = 5) -> Stat:
    """One verification of a publish password with the server's hasher (services/auth.py), in milliseconds."""
    from contentlib.services.auth import _verify, hash_password

    stored = hash_password(FEED_PASSWORD)
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        if not _verify(stored, FEED_PASSWORD):
            raise BenchError("argon2: the password does not verify against its own hash")
        out.append((time.perf_counter() - t) * 1000)
    return Stat(out)


@dataclass
class FeedRun:
    wrk: WrkResult
    cpu_per_request_ms: float


def bench_vcsp_feed(cfg: Config, work: Path, rep: Report) -> None:
    wrk = ensure_wrk()
    if wrk is None:
        raise BenchError("wrk is not installed (apt-get install -y wrk)")
    items = QUICK_FILL_ITEMS if cfg.quick else FILL_ITEMS
    srv = Server(work / "vcsp-feed", args=["--sweep-interval", str(PERSIST_TICK)])
    try:
        srv.start()
        api = Api(srv.base, srv.password)
        libs = {auth: published_library(api, auth) for auth in ("NONE", "BASIC")}
        srv.stop()
        fill_secs = sum(fill_library(srv.data_dir / "contentlib.sqlite3", lib, items) for lib, _ in libs.values())
        srv.start()
        auth_header = {"NONE": {}, "BASIC": {"Authorization": _basic(FEED_PASSWORD)}}
        etags, sizes = {}, {}
        for auth, (_, url) in libs.items():
            base = url.rsplit("/", 1)[0]
            if auth == "BASIC" and requests.get(url, timeout=30).status_code != 401:
                raise BenchError("the BASIC library's feed answers a caller without the password")
            got = requests.get(f"{base}/items.json", headers=auth_header[auth], timeout=120)
            listed = got.json().get("items", []) if got.status_code == 200 else []
            if len(listed) != items or any(len(i["files"]) != 1 for i in listed):
                raise BenchError(f"{auth}: items.json lists {len(listed)} items ({got.status_code}), not {items}")
            sample = requests.get(f"{base}/{listed[items // 2]['selfHref']}", headers=auth_header[auth], timeout=30)
            if sample.status_code != 200 or sample.json() != listed[items // 2]:
                raise BenchError(f"{auth}: a filled item's item.json does not read back: {sample.text[:300]}")
            etags[auth], sizes[auth] = got.headers["ETag"], len(got.content)
        results: dict[FeedTest, list[FeedRun]] = {t: [] for t in TESTS}
        for test in TESTS:
            headers = dict(auth_header[test.auth])
            if test.revalidate:
                headers["If-None-Match"] = etags[test.auth]
            script = write_script(work / "vcsp-feed.lua", headers)
            url = libs[test.auth][1].rsplit("/", 1)[0] + "/" + test.document
            want = 304 if test.revalidate else 200
            if (got := requests.get(url, headers=headers, timeout=120)).status_code != want:
                raise BenchError(f"{test.label} ({test.auth}): {got.status_code}, not {want}: {got.text[:300]}")
            run_wrk(wrk, url, "-", 1, CONNS, script, THREADS)  # warm-up
            for _ in range(cfg.runs):
                m = Meter(srv.pid)
                r = run_wrk(wrk, url, "-", cfg.wrk_secs, CONNS, script, THREADS)
                m.stop()
                if r.errors:
                    rep.failed.append("VCSP feed")
                results[test].append(FeedRun(r, m.server / max(r.requests, 1) * 1000))
        cold = {
            auth: cold_items_ms(api, lib, url, auth_header[auth], max(cfg.runs, 3)) for auth, (lib, url) in libs.items()
        }
        persist = persist_seconds(api, srv, *libs["NONE"])
        argon2 = argon2_ms()
    finally:
        srv.stop()
    rep.add(report(cfg, items, fill_secs, sizes, results, cold, persist, argon2))


def report(
    cfg: Config,
    items: int,
    fill_secs: float,
    sizes: dict[str, int],
    results: dict[FeedTest, list[FeedRun]],
    cold: dict[str, Stat],
    persist: tuple[float, float],
    argon2: Stat,
) -> str:
    rows = []
    for test, runs in results.items():
        rps = Stat([r.wrk.rps for r in runs])
        p99 = Stat([r.wrk.p99 for r in runs])
        cpu = statistics.median(r.cpu_per_request_ms for r in runs)
        errors = "; ".join(r.wrk.errors for r in runs if r.wrk.errors) or "none"
        rows.append([test.label, test.auth, rps.fmt(" req/s"), p99.fmt(" ms", 2), f"{cpu:.2f} ms", errors])
    workers = "the default `--workers` (one per CPU)"
    lines = [
        f"## 11. VCSP feed of a published library with {items:,} items",
        "",
        f"Server: `contentlib serve --http`, SQLite + local disk, {workers}; two published libraries (NONE, BASIC) "
        f"filled to {items:,} items of one file each straight in SQLite ({fill_secs:.2f} s for both); "
        f"items.json is {sizes['NONE'] / 1e6:.2f} MB. `wrk -t{THREADS} -c{CONNS} -d{cfg.wrk_secs}s`, "
        f"{cfg.runs} run(s) each after a 1 s warm-up, median (min-max); server CPU per request from /proc.",
        "",
        table(["document", "authentication", "rate", "p99", "server CPU / request", "errors"], rows),
        "",
        "items.json right after a change (the server makes it again; then it serves the one it kept while the "
        f"version stays): NONE {cold['NONE'].fmt(' ms')}, BASIC {cold['BASIC'].fmt(' ms')} (one request each, "
        "after `local_library.publish`).",
        "",
        f"`persist_json_enabled` turned on for the NONE library: its whole feed ({items:,} item.json and as many "
        f"hard-linked files) in the data dir after {persist[0]:.1f} s; after one item's `publish` (its item.json "
        f"written again, the rest kept) {persist[1]:.1f} s (sweeps every {PERSIST_TICK:g} s; times until the "
        "persisted lib.json shows the version the server serves).",
        "",
        f"One argon2 verification of the publish password (the server's hasher): {argon2.fmt(' ms', 1)}. BASIC "
        "pays it once per process and minute (a verified password is remembered, keyed by the stored hash); a "
        f"feed that verified every request would be bounded near {1000 / argon2.med:,.0f} requests/s per core.",
    ]
    return "\n".join(lines)
