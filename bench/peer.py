"""Section 9: the API request rate of contentlib against the peer vcsim 0.24.2 in the same run (issue 11 point 4).

Both servers run on plain HTTP (`python -m contentlib serve --http`, `vcsim -l 127.0.0.1:PORT -tls=false`) and are
driven through the same wrk Lua scripts on the legacy `/rest` content API, which both serve: the update-session GET
(`-t2 -c8`, `-t1 -c50`), create -> GET -> complete cycles on one connection (`-t1 -c1`, a state machine that reads
the new session id from the create's response), and item creates (`-t1 -c1`, `-t2 -c8`, a unique name per request).
What a script needs (a session, an item, a library) is made by the same Python code for both, fresh for every run;
the servers take turns (the order alternating from round to round), medians are reported. Then, on contentlib only:
the p99 of that GET while 1 GiB uploads run back to back (section 3's code), and the cost per request with a million
library items and a million update sessions written straight into its SQLite database.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.api_rate import TARGET_P99_MS, Loaded, WrkResult, during_uploads, ensure_wrk, run_wrk
from bench.common import BenchError, Config, Meter, Report, Stat, human, table, verdict
from bench.govc import GOVMOMI_VERSION, Peer, Vcsim, build_govmomi, new_home
from bench.rest_wrk import BY_KEY, ITEM, TESTS, UPDATE_SESSION, Rest, RunResult, Target, Test, measure
from bench.server import ADMIN_USER, Api, Server
from bench.upload import Source

CONTENTLIB_DATASTORE = "datastore-1"  # contentlib's one datastore (services/datastores.py)
CONTENTLIB, VCSIM = "contentlib", "vcsim"
# Issue 11 point 4: contentlib / vcsim of the medians.
TARGET_RATIO = {"get8": 1.0, "get50": 1.0, "cycle": 0.5}
TARGET_FLAT = 1.2  # CPU per request with a million rows / with an empty database
FILL_ROWS, QUICK_FILL_ROWS = 1_000_000, 10_000
FILL_LIBRARIES = 4
ACTIVE_EVERY, CANCELED_EVERY = 1000, 10  # filled sessions: 1 in 1000 ACTIVE, 1 in 10 CANCELED, the rest DONE
FILLED_SPAN = 1800.0  # the finished ones ended in the last half hour (the sweeper deletes them after an hour)


# --------------------------------------------------------------------------------------------------------
# the million rows


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


@dataclass
class Fill:
    rows: int
    seconds: float = 0.0
    db_bytes: int = 0
    restart_seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step of the fill
    # "item" -> (item id, its name); "ACTIVE", "CANCELED", "DONE" -> (a session in that state, its item's id)
    samples: dict[str, tuple[str, str]] = field(default_factory=dict)


def uuid4_strings(n: int) -> list[str]:
    """n random version-4 UUIDs as the server writes them (str(uuid.uuid4())), from one os.urandom call: uuid4()
    itself takes ~7 us a call here, 14 s for two million."""
    h = os.urandom(16 * n).hex()
    out = []
    for i in range(0, 32 * n, 32):
        variant = "89ab"[int(h[i + 16], 16) & 3]
        time_part = f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}"
        out.append(f"{time_part}-{variant}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}")
    return out


def _copy_sql(table: str, cols: list[str], overrides: dict[str, str]) -> str:
    """INSERT into `table` one row per fill_ids row, each column from the template row `t` unless overridden."""
    exprs = ", ".join(overrides.get(c, f"t.{c}") for c in cols)
    return (
        f"INSERT INTO {table} ({', '.join(cols)}) SELECT {exprs} FROM temp.fill_ids f, {table} t "
        "WHERE t.id = :template ORDER BY f.n"
    )


def fill_database(db: Path, libraries: list[str], item_template: str, session_template: str, rows: int) -> Fill:
    """`rows` library items (spread over `libraries`) and as many update sessions, one per item, written straight
    into the stopped server's SQLite database in one transaction. Each row is a copy of a row the server wrote
    itself (an item it created; a session it created and completed without files, which leaves the item at
    content version 1), with new ids, names, times and states: 1 in ACTIVE_EVERY sessions ACTIVE (active now),
    1 in CANCELED_EVERY CANCELED, the rest DONE, all ended within the last FILLED_SPAN seconds. The ids (sorted, so
    that every index is appended to) go into a temporary table with executemany; one INSERT ... SELECT per table
    then copies the template row for each of them, so no row passes through Python twice."""
    fill = Fill(rows)
    t0 = time.perf_counter()
    con = sqlite3.connect(db, isolation_level=None)
    con.create_function("lower", 1, _lower, deterministic=True)  # as the server does (its unique name index)
    cols = {}
    for name, template in (("items", item_template), ("update_sessions", session_template)):
        cur = con.execute(f"SELECT * FROM {name} WHERE id=?", (template,))
        row = cur.fetchone()
        cols[name] = [d[0] for d in cur.description]
        if row is None or (name == "update_sessions" and row[cols[name].index("state")] != "DONE"):
            raise BenchError(f"the template row {template} of {name} is missing (or not a DONE session)")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-262144")  # 256 MiB
    con.execute("PRAGMA temp_store=MEMORY")
    item_ids, session_ids = sorted(uuid4_strings(rows)), sorted(uuid4_strings(rows))
    fill.phases["ids"] = time.perf_counter() - t0
    libs = {f"lib{k}": lib for k, lib in enumerate(libraries)}
    params = {"template": "", "now": time.time(), "span": FILLED_SPAN, "rows": rows, **libs}
    ended = "(:now - :span + f.n * :span / :rows)"
    active = f"f.n % {ACTIVE_EVERY} = 0"
    canceled = f"f.n % {CANCELED_EVERY} = 1"
    item_sql = _copy_sql(
        "items",
        cols["items"],
        {
            "id": "f.item_id",
            "library_id": f"CASE f.n % {len(libs)} "
            + " ".join(f"WHEN {k} THEN :lib{k}" for k in range(len(libs)))
            + " END",
            "name": "printf('fill-%07d', f.n)",
            "created": f"({ended} - 1)",
            "modified": f"({ended} - 1)",
            "client_token": "NULL",
        },
    )
    session_sql = _copy_sql(
        "update_sessions",
        cols["update_sessions"],
        {
            "id": "f.session_id",
            "item_id": "f.item_id",
            "state": f"CASE WHEN {active} THEN 'ACTIVE' WHEN {canceled} THEN 'CANCELED' ELSE 'DONE' END",
            "created": f"CASE WHEN {active} THEN :now ELSE {ended} - 0.5 END",
            "last_activity": f"CASE WHEN {active} THEN :now ELSE {ended} END",
            "ended": f"CASE WHEN {active} THEN NULL ELSE {ended} END",
            "client_token": "NULL",
            "completing": "NULL",
        },
    )

    def step(name: str, sql: str, args: dict[str, Any] | None = None) -> None:
        t = time.perf_counter()
        con.execute(sql, args or {})
        fill.phases[name] = time.perf_counter() - t

    con.execute("CREATE TEMP TABLE fill_ids (n INTEGER PRIMARY KEY, item_id TEXT NOT NULL, session_id TEXT NOT NULL)")
    con.execute("BEGIN IMMEDIATE")
    try:
        t = time.perf_counter()
        con.executemany(
            "INSERT INTO temp.fill_ids VALUES (?, ?, ?)", zip(range(rows), item_ids, session_ids, strict=True)
        )
        fill.phases["executemany ids"] = time.perf_counter() - t
        step("items", item_sql, {**params, "template": item_template})
        step("update_sessions", session_sql, {**params, "template": session_template})
        step("commit", "COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    step("checkpoint", "PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    fill.seconds = time.perf_counter() - t0
    fill.db_bytes = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    mid = rows // 2
    fill.samples = {
        "item": (item_ids[mid], f"fill-{mid:07d}"),
        **{s: (session_ids[i], item_ids[i]) for s, i in (("ACTIVE", 0), ("CANCELED", 1), ("DONE", 2))},
    }
    return fill


def check_fill(rest: Rest, fill: Fill, libraries: list[str]) -> str:
    """Read filled rows back with the server's own GETs; what they showed."""
    item_id, name = fill.samples["item"]
    item = rest.get_item(item_id)
    if item.get("name") != name or item.get("library_id") not in libraries:
        raise BenchError(f"the filled item {item_id} reads back as {item}")
    shown = [f"the item {name} of a filled library"]
    for want in ("ACTIVE", "CANCELED", "DONE"):
        sid, item_id = fill.samples[want]
        got = rest.get_session(sid)
        if got.get("state") != want or got.get("library_item_id") != item_id:
            raise BenchError(f"the filled {want} update session {sid} reads back as {got}")
        shown.append(f"{'an' if want == 'ACTIVE' else 'a'} {want} update session")
    return ", ".join(shown[:-1]) + " and " + shown[-1]


# --------------------------------------------------------------------------------------------------------
# the section


def start_vcsim(work: Path) -> tuple[Vcsim, Target]:
    gm = build_govmomi()
    vcsim = Vcsim(gm.vcsim, work / "vcsim", tls=False)
    vcsim.start()
    govc = Peer(VCSIM, gm.govc, f"http://user:pass@127.0.0.1:{vcsim.port}/sdk", new_home(work / "vc"), vcsim.pid)
    # A DATASTORE backing names the datastore's moref value, `<dir>@folder-N` in vcsim (what govc sends for -ds).
    info = json.loads(govc.run("datastore.info", "-json", "LocalDS_0", timeout=60))
    base = f"http://127.0.0.1:{vcsim.port}"
    return vcsim, Target(
        VCSIM, base, vcsim.pid, Rest(base, "user", "pass"), str(info["Datastores"][0]["Self"]["Value"])
    )


def contentlib_target(srv: Server) -> Target:
    return Target(CONTENTLIB, srv.base, srv.pid, Rest(srv.base, ADMIN_USER, srv.password), CONTENTLIB_DATASTORE)


Results = dict[tuple[str, str], list[RunResult]]  # (test key, server) -> runs


def compare(cfg: Config, wrk: str, targets: list[Target], work: Path) -> Results:
    """Every test against every server, `cfg.runs` rounds, the servers taking turns (alternating order)."""
    for t in targets:
        t.library = t.rest.create_library(t.datastore_id)
    res: Results = {(test.key, t.name): [] for test in TESTS for t in targets}
    if cfg.warmup:
        for test in TESTS:
            for t in targets:
                measure(wrk, t, test, t.prepare(test, work / f"warmup-{t.name}-{test.key}.lua"), 1)
    for rnd in range(cfg.runs):
        for test in TESTS:
            for t in targets if rnd % 2 == 0 else targets[::-1]:
                print(f"... {test.label} {test.wrk} against {t.name} (round {rnd + 1})", file=sys.stderr, flush=True)
                script = t.prepare(test, work / f"{t.name}-{test.key}-{rnd}.lua")
                res[(test.key, t.name)].append(measure(wrk, t, test, script, cfg.wrk_secs))
    return res


def under_uploads(cfg: Config, wrk: str, srv: Server, target: Target, src: Source, work: Path) -> dict[str, Loaded]:
    """The GET script at -c8 and -c50 while the source is uploaded back to back (section 3's uploads)."""
    api = Api(srv.base, srv.password)
    lib = api.create_library()
    out: dict[str, Loaded] = {}
    for key in ("get8", "get50"):
        test = BY_KEY[key]
        script = target.prepare(test, work / f"uploads-{key}.lua")
        print(f"... {test.label} {test.wrk} during {human(src.size)} uploads", file=sys.stderr, flush=True)

        def run(test: Test = test, script: Path = script) -> WrkResult:
            return run_wrk(wrk, srv.base + "/", target.rest.session_id, cfg.wrk_secs, test.conns, script, test.threads)

        out[key] = during_uploads(srv, api, lib, src, work, run)
    return out


@dataclass
class Million:
    fill: Fill
    runs: dict[tuple[str, str], list[RunResult]] = field(default_factory=dict)  # (phase, test key) -> runs
    idle: dict[str, float] = field(default_factory=dict)  # phase -> server CPU ms per second, idle
    check: str = ""

    def cost(self, phase: str, key: str) -> float:
        """Server CPU us per request over all runs (the sweeper's share included)."""
        runs = self.runs.get((phase, key), [])
        return sum(r.cpu for r in runs) / max(sum(r.wrk.requests for r in runs), 1) * 1e6


MILLION_TESTS = ("get8", "create8")
EMPTY, FILLED = "empty", "filled"


def measure_phase(cfg: Config, wrk: str, t: Target, phase: str, m: Million, work: Path) -> None:
    """GET and create at -c8 (the items into the first library: the one with the most rows), then the idle cost."""
    for key in MILLION_TESTS:
        if cfg.warmup:
            test = BY_KEY[key]
            measure(wrk, t, test, t.prepare(test, work / f"{phase}-warmup-{key}.lua", t.library), 1)
    for i in range(cfg.runs):
        for key in MILLION_TESTS:
            test = BY_KEY[key]
            print(f"... {test.label} {test.wrk}, {phase} database (run {i + 1})", file=sys.stderr, flush=True)
            script = t.prepare(test, work / f"{phase}-{key}-{i}.lua", t.library)
            m.runs.setdefault((phase, key), []).append(measure(wrk, t, test, script, cfg.wrk_secs))
    idle = Meter(t.pid)
    time.sleep(2 if cfg.quick else 20)  # two sweeps (every 10 s)
    idle.stop()
    m.idle[phase] = idle.server / idle.wall * 1000


def cost_with_rows(cfg: Config, wrk: str, work: Path) -> Million:
    """A server of its own: measured empty, stopped, filled, restarted, checked, measured again."""
    m = Million(Fill(QUICK_FILL_ROWS if cfg.quick else FILL_ROWS))
    srv = Server(work / "million")
    try:
        srv.start()
        t = contentlib_target(srv)
        libs = [t.rest.create_library(CONTENTLIB_DATASTORE) for _ in range(FILL_LIBRARIES)]
        t.library = libs[0]
        template_item = t.rest.create_item(libs[0])
        template_session = t.rest.create_session(template_item)
        t.rest.complete(template_session)
        measure_phase(cfg, wrk, t, EMPTY, m, work)
        srv.stop()
        print(f"... writing {m.fill.rows:,} items and update sessions into the database", file=sys.stderr, flush=True)
        db = srv.data_dir / "contentlib.sqlite3"
        m.fill = fill_database(db, libs, template_item, template_session, m.fill.rows)
        t0 = time.perf_counter()
        srv.start(timeout=600)
        m.fill.restart_seconds = time.perf_counter() - t0
        t = contentlib_target(srv)
        t.library = libs[0]
        m.check = check_fill(t.rest, m.fill, libs)
        measure_phase(cfg, wrk, t, FILLED, m, work)
    finally:
        srv.stop()
    return m


def bench_peer(cfg: Config, src: Source, work: Path, rep: Report) -> None:
    wrk = ensure_wrk()
    if wrk is None:
        raise BenchError("wrk is not installed and could not be installed")
    work = work / "peer"
    work.mkdir(parents=True)
    load0 = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    cl = Server(work / "contentlib")
    vcsim: Vcsim | None = None
    try:
        vcsim, vc = start_vcsim(work)
        cl.start()
        ours = contentlib_target(cl)
        res = compare(cfg, wrk, [ours, vc], work)
        loaded = under_uploads(cfg, wrk, cl, ours, src, work)
        exited = [
            f"{name} exited ({proc.returncode})"
            for name, proc in ((CONTENTLIB, cl.proc), (VCSIM, vcsim.proc))
            if proc is not None and proc.poll() is not None
        ]
    finally:
        cl.stop()
        if vcsim is not None:
            vcsim.stop()
    million = cost_with_rows(cfg, wrk, work)
    load1 = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    failures = exited + [
        f"{r.server}, {BY_KEY[r.test].label} `{BY_KEY[r.test].wrk}`: {r.errors}"
        for runs in res.values()
        for r in runs
        if r.errors
    ]
    failures += [
        f"contentlib, GET `{BY_KEY[k].wrk}` during uploads: {x.wrk.errors}" for k, x in loaded.items() if x.wrk.errors
    ]
    failures += [
        f"contentlib, {k} ({p} database): {r.errors}" for (p, k), rs in million.runs.items() for r in rs if r.errors
    ]
    rep.add(report(cfg, src, res, loaded, million, load0, load1, failures))
    if failures:
        rep.failed.append("peer: errors under the wrk scripts")


# --------------------------------------------------------------------------------------------------------
# the report


def _lat(runs: list[RunResult]) -> str:
    return f"{statistics.median(r.wrk.p50 for r in runs):.2f} / {statistics.median(r.wrk.p99 for r in runs):.2f} ms"


def report(
    cfg: Config,
    src: Source,
    res: Results,
    loaded: dict[str, Loaded],
    million: Million,
    load0: str,
    load1: str,
    failures: list[str],
) -> str:
    rows, detail = [], []
    for test in TESTS:
        cl, vc = res[(test.key, CONTENTLIB)], res[(test.key, VCSIM)]
        unit = " cycles/s" if test.kind == "cycle" else " req/s"
        ratio = Stat([r.rate for r in cl]).med / Stat([r.rate for r in vc]).med
        target = TARGET_RATIO.get(test.key)
        rows.append(
            [
                test.label,
                f"`{test.wrk}`",
                Stat([r.rate for r in cl]).fmt(unit),
                _lat(cl),
                Stat([r.cpu_per_1000 for r in cl]).fmt("", 3),
                Stat([r.rate for r in vc]).fmt(unit),
                _lat(vc),
                Stat([r.cpu_per_1000 for r in vc]).fmt("", 3),
                f"{ratio:.2f}x",
                "-" if target is None else f">= {target:.1f}x",
                verdict(None if target is None else ratio >= target),
            ]
        )
        for i, (a, b) in enumerate(zip(cl, vc, strict=True)):
            for r in (a, b) if i % 2 == 0 else (b, a):
                detail.append(
                    [
                        str(i + 1),
                        f"{test.label} `{test.wrk}`",
                        r.server,
                        f"{r.rate:,.0f}",
                        f"{r.wrk.p99:.2f}",
                        f"{r.wrk.max:.0f}",
                        f"{r.cpu_per_1000:.3f}",
                        f"{r.server_cores:.2f}",
                        f"{r.other_cores:.2f}",
                        r.errors or "none",
                    ]
                )
    up_rows = []
    for key, x in loaded.items():
        test = BY_KEY[key]
        idle_p99 = statistics.median(r.wrk.p99 for r in res[(key, CONTENTLIB)])
        rates = x.upload_rates
        up_rows.append(
            [
                f"GET update session `{test.wrk}`",
                f"{x.wrk.p99:.2f} ms (p50 {x.wrk.p50:.2f}, max {x.wrk.max:.1f}; idle p99 {idle_p99:.2f})",
                f"{x.wrk.rps:,.0f} req/s, server {x.meter.server / x.meter.wall:.2f} cores",
                f"{len(x.uploads.intervals)} x {human(src.size)}, "
                f"{statistics.median(rates) if rates else 0:.0f} MB/s, covering {x.coverage:.0%}",
                f"< {TARGET_P99_MS:.0f} ms",
                verdict(x.wrk.p99 < TARGET_P99_MS),
            ]
        )
    f = million.fill
    m_rows = []

    def phase_cell(phase: str, key: str) -> str:
        runs = million.runs[(phase, key)]
        p99, top = statistics.median(r.wrk.p99 for r in runs), max(r.wrk.max for r in runs)
        rate = Stat([r.rate for r in runs]).fmt(" req/s")
        return f"{rate}, p99 {p99:.2f} ms, max {top:.0f} ms, **{million.cost(phase, key):.0f} us**"

    for key in MILLION_TESTS:
        test = BY_KEY[key]
        ratio = million.cost(FILLED, key) / million.cost(EMPTY, key)
        m_rows.append(
            [
                f"{test.label} `{test.wrk}`",
                phase_cell(EMPTY, key),
                phase_cell(FILLED, key),
                f"{ratio:.2f}x",
                f"<= {TARGET_FLAT:.1f}x",
                verdict(ratio <= TARGET_FLAT),
            ]
        )
    idle0, idle1 = million.idle.get(EMPTY, 0.0), million.idle.get(FILLED, 0.0)
    m_rows.append(
        [
            "idle server (it sweeps every 10 s)",
            f"{idle0:.1f} ms CPU per s",
            f"{idle1:.1f} ms CPU per s",
            f"{idle1 / idle0:.1f}x" if idle0 >= 0.5 else "-",
            "-",
            "-",
        ]
    )
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in f.phases.items())
    secs = cfg.wrk_secs
    text = (
        f"## 9. API request rate against vcsim {GOVMOMI_VERSION} (issue 11.4)\n\n"
        "Both on plain HTTP: contentlib (`python -m contentlib serve --http`, fresh data dir) and vcsim "
        f"(`vcsim -l 127.0.0.1:PORT -tls=false`, from `scripts/build-govmomi.sh`), driven by the same wrk Lua "
        f"scripts on the legacy `/rest` API they both serve, `-d{secs}s --latency`, {cfg.runs} round"
        f"{'s' if cfg.runs > 1 else ''}" + (" after a 1 s warm-up of each" if cfg.warmup else "") + ", the servers "
        "taking turns (order alternating per round), medians (min-max). GET: `GET "
        f"{UPDATE_SESSION}/id:S` of a fresh ACTIVE session; cycle: `POST {UPDATE_SESSION}` "
        "(`create_spec.library_item_id`) -> `GET .../id:S` (checked ACTIVE) -> `POST .../id:S?~action=complete` on one "
        "connection, the id read from the create's answer, cycles = requests / 3; create: `POST "
        f"{ITEM}` with a unique name per request into a library made for the run. Every run gets fresh objects from "
        "the same Python code for both servers (login with Basic auth, `vmware-api-session-id` header; libraries "
        f"with a DATASTORE backing: contentlib's `{CONTENTLIB_DATASTORE}`, vcsim's LocalDS_0 moref from "
        "`govc datastore.info`). Server CPU from /proc (contentlib: its whole process tree); latency p50 / p99 is "
        "over all requests of a run. contentlib commits every create and complete to SQLite; vcsim keeps "
        f"everything in memory. Load average: {load0} at the start, {load1} at the end.\n\n"
        + table(
            [
                "test",
                "wrk",
                "contentlib",
                "p50 / p99",
                "CPU-s per 1000 req",
                "vcsim",
                "p50 / p99",
                "CPU-s per 1000 req",
                "contentlib / vcsim",
                "target",
                "verdict",
            ],
            rows,
        )
        + f"\n\nThe same GET script against contentlib while {human(src.size)} uploads (`curl -T`, SHA256 declared, "
        "one session each) run back to back, section 3's uploads:\n\n"
        + table(["request", "p99 during the uploads", "rate", "uploads in the window", "target", "verdict"], up_rows)
        + f"\n\nCost per request with {f.rows:,} library items (over {FILL_LIBRARIES} libraries) and {f.rows:,} update "
        f"sessions (1 in {ACTIVE_EVERY} ACTIVE, 1 in {CANCELED_EVERY} CANCELED, the rest DONE, ended within the last "
        f"{FILLED_SPAN / 60:.0f} minutes so none is swept) in contentlib's SQLite database: a server of its own, "
        "measured empty, stopped, the rows written straight into its database (copies of rows it wrote itself; "
        "one transaction: the sorted ids with executemany into a temporary table, then one INSERT ... SELECT per "
        f"table; {f.seconds:.1f} s: {phases}; database {f.db_bytes / 1e6:,.0f} MB), restarted "
        f"({f.restart_seconds:.1f} s to answer), read back with its own GETs ({million.check}), measured again. The "
        "GET reads a fresh session, the creates go into the first library (the empty one, then one of "
        f"{f.rows // FILL_LIBRARIES:,} items). CPU per request = server CPU over all runs / their requests.\n\n"
        + table(["request", "empty database", f"{f.rows:,} rows", "CPU per request ratio", "target", "verdict"], m_rows)
        + "\n\nPer run:\n\n"
        + table(
            [
                "round",
                "test",
                "server",
                "rate",
                "p99 ms",
                "max ms",
                "CPU-s/1000 req",
                "server cores",
                "other cores",
                "errors",
            ],
            detail,
        )
    )
    if failures:
        text += "\n\n" + "\n".join(f"**FAILED**: {x}" for x in failures)
    return text
