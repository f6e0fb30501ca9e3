"""Section 7: PostgreSQL + S3 next to SQLite + disk (issue 5)."""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.api_rate import WrkResult, ensure_wrk, run_wrk
from bench.common import (
    BenchError,
    Config,
    CpuMeter,
    GiB,
    MiB,
    PidSource,
    Report,
    Stat,
    human,
    pids_named,
    proc_tree,
    table,
    verdict,
)
from bench.server import US, Api, Server
from bench.services import (
    S3_BUCKET,
    S3_ENV,
    Services,
    empty_prefix,
    ensure_services,
    pg_admin,
    pg_backends,
    stop_services,
)
from bench.upload import Source, upload_once

# Issue 5 (scale-out): PostgreSQL + S3.
TARGET_S3_RATIO = 0.70  # contentlib's upload to S3 >= 70% of a stock client's plain PUT of the same object
TARGET_PG_GETS = 5_000.0  # per replica on PostgreSQL
UPLOAD_KINDS = ("disk", "s3", "upload_file", "put_object")
STOCK_KINDS = ("upload_file", "put_object")


@dataclass
class PathRun:
    """One upload of the source along one path (contentlib on either backend, or a stock client straight to S3)."""

    kind: str
    mbps: float
    cpu: CpuMeter
    ok: bool
    note: str = ""
    peak_rss: int = 0  # of the contentlib server, for uploads through it

    def per_gib(self, group: str, size: int) -> float:
        return self.cpu.cpu.get(group, 0.0) / (size / GiB)


def stock_upload(s3: Any, kind: str, src: Source, key: str, groups: dict[str, PidSource]) -> PathRun:
    """boto3 `upload_file` (its default TransferConfig) or `put_object` of an open file; the object's size checked."""
    m = CpuMeter(groups)
    t = time.perf_counter()
    if kind == "upload_file":
        s3.upload_file(str(src.path), S3_BUCKET, key)
    else:
        with open(src.path, "rb") as f:
            s3.put_object(Bucket=S3_BUCKET, Key=key, Body=f)
    secs = time.perf_counter() - t
    m.stop()
    try:
        size = int(s3.head_object(Bucket=S3_BUCKET, Key=key)["ContentLength"])
    finally:
        s3.delete_object(Bucket=S3_BUCKET, Key=key)
    ok = size == src.size
    return PathRun(kind, src.size / secs / 1e6, m, ok, "" if ok else f"object has {size} bytes, not {src.size}")


def wrk_together(
    wrk: str, urls: list[str], session_id: str, secs: int, groups: dict[str, PidSource]
) -> tuple[list[WrkResult], CpuMeter]:
    """One `wrk -t1 -c50` per URL, all at the same time."""
    with ThreadPoolExecutor(len(urls)) as ex:
        m = CpuMeter(groups)
        futures = [ex.submit(run_wrk, wrk, u, session_id, secs) for u in urls]
        results = [f.result() for f in futures]
    m.stop()  # after the wrk processes were waited for: their CPU counts as client
    return results, m


@dataclass
class GetRun:
    results: list[WrkResult]
    cpu: CpuMeter

    @property
    def rps(self) -> float:
        return sum(r.rps for r in self.results)


def bench_scaleout(
    cfg: Config, base: Server, base_api: Api, base_lib: str, src: Source, work: Path, rep: Report
) -> None:
    wrk = ensure_wrk()
    if wrk is None:
        raise BenchError("wrk is not installed and could not be installed")
    svc = Services()
    db_name = f"bench_{uuid.uuid4().hex[:12]}"
    db_url = f"{cfg.pg_url}/{db_name}"
    prefix = f"bench-{uuid.uuid4().hex[:12]}"
    blobs = f"s3://{S3_BUCKET}/{prefix}?endpoint={cfg.s3_endpoint}"
    replicas: list[Server] = []
    s3: Any = None
    db_made = False
    cleanup: list[str] = []
    upload_runs: dict[str, list[PathRun]] = {k: [] for k in UPLOAD_KINDS}
    orders: list[list[str]] = []
    single: dict[str, list[GetRun]] = {"disk": [], "pg": []}
    pair: list[GetRun] = []
    get_errors: list[str] = []
    finished = False
    try:
        print("... starting PostgreSQL and the S3 server if needed", file=sys.stderr, flush=True)
        s3 = ensure_services(cfg, svc)
        pg_admin(cfg.pg_url, f'CREATE DATABASE "{db_name}"')
        db_made = True
        args = ["--database", db_url, "--blobs", blobs]
        r1 = Server(work / "replica1", args, S3_ENV)
        replicas.append(r1)
        r1.start()
        api1 = Api(r1.base, r1.password)
        lib1 = api1.create_library()
        servers = [base, *replicas]  # replica 2 joins it later
        groups: dict[str, PidSource] = {
            "contentlib": lambda: [p for s in servers if s.proc is not None for p in proc_tree(s.pid)],
            "S3 server": lambda: pids_named("weed"),
            "PostgreSQL": lambda: pg_backends(db_name),
        }

        # (a) one upload of the source along each path per round; the order rotates from round to round
        def upload(kind: str, tag: str) -> PathRun:
            if kind in STOCK_KINDS:
                return stock_upload(s3, kind, src, f"{prefix}/stock/{kind}-{tag}", groups)
            srv, api, lib = (base, base_api, base_lib) if kind == "disk" else (r1, api1, lib1)
            r = upload_once(srv, api, lib, src, work, groups)
            assert r.cpu is not None
            return PathRun(kind, r.mbps, r.cpu, r.sha1_ok, r.note, r.peak_rss)

        print(f"... uploads: {human(src.size)} along 4 paths", file=sys.stderr, flush=True)
        if cfg.warmup:
            for kind in UPLOAD_KINDS:
                upload(kind, "warmup")
        for i in range(cfg.runs):
            order = list(UPLOAD_KINDS[i % 4 :] + UPLOAD_KINDS[: i % 4])
            orders.append(order)
            for kind in order:
                upload_runs[kind].append(upload(kind, str(i)))

        # (b) GET rate of one process: the SQLite server and replica 1, interleaved
        print("... GET rate, one process each", file=sys.stderr, flush=True)
        url_disk = f"{base.base}{US}/{base_api.create_session(base_api.create_item(base_lib))}"
        sid1 = api1.create_session(api1.create_item(lib1))
        url1 = f"{r1.base}{US}/{sid1}"
        base_api.call("GET", url_disk, 200)
        api1.call("GET", url1, 200)
        targets = {"disk": (url_disk, base_api.session_id), "pg": (url1, api1.session_id)}
        if cfg.warmup:
            for url, session in targets.values():
                run_wrk(wrk, url, session, 1)
        for i in range(cfg.runs):
            for name in ("disk", "pg") if i % 2 == 0 else ("pg", "disk"):
                url, session = targets[name]
                res, m = wrk_together(wrk, [url], session, cfg.wrk_secs, groups)
                single[name].append(GetRun(res, m))

        # (c) a second replica on the same database and bucket prefix; the same API session and update session
        # through both, wrk against each at the same time
        print("... GET rate, 2 replicas at once", file=sys.stderr, flush=True)
        r2 = Server(work / "replica2", args, S3_ENV, password=r1.password)
        replicas.append(r2)
        r2.start()
        servers.append(r2)
        url2 = f"{r2.base}{US}/{sid1}"
        api1.call("GET", url2, 200)  # replica 2 knows replica 1's API session and update session
        if cfg.warmup:
            run_wrk(wrk, url2, api1.session_id, 1)
        for _ in range(cfg.runs):
            res, m = wrk_together(wrk, [url1, url2], api1.session_id, cfg.wrk_secs, groups)
            pair.append(GetRun(res, m))
        for label, runs in (("SQLite", single["disk"]), ("PostgreSQL", single["pg"]), ("2 replicas", pair)):
            for g in runs:
                get_errors += [f"{label}: {r.errors}" for r in g.results if r.errors]
        finished = True
    finally:
        for srv in reversed(replicas):
            if srv.proc is not None and srv.proc.poll() is not None:
                cleanup.append(f"replica on port {srv.port} had exited ({srv.proc.returncode}): {srv.log()[-1500:]}")
            srv.stop()
        if db_made:
            try:
                pg_admin(cfg.pg_url, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
                cleanup.append(f"database `{db_name}` dropped")
            except Exception as e:
                cleanup.append(f"**could not drop database `{db_name}`**: {type(e).__name__}: {e}")
                rep.failed.append("scale-out cleanup")
        if s3 is not None:
            try:
                n = empty_prefix(s3, prefix)
                cleanup.append(f"prefix `{prefix}/` emptied ({n} objects were left there and deleted)")
            except Exception as e:
                cleanup.append(f"**could not empty `{prefix}/`**: {type(e).__name__}: {e}")
                rep.failed.append("scale-out cleanup")
        cleanup += stop_services(svc)
        print("... section 7 cleanup: " + "; ".join(cleanup), file=sys.stderr, flush=True)
        if not finished and cleanup:
            rep.add("Section 7 stopped by the error below; cleanup: " + "; ".join(cleanup) + ".")

    rep.add(scaleout_report(cfg, svc, src, db_name, blobs, upload_runs, orders, single, pair, get_errors, cleanup))
    bad = [r for k in UPLOAD_KINDS for r in upload_runs[k] if not r.ok]
    if bad:
        rep.failed.append("scale-out upload check")
    if get_errors:
        rep.failed.append("scale-out wrk errors")


def scaleout_report(
    cfg: Config,
    svc: Services,
    src: Source,
    db_name: str,
    blobs: str,
    upload_runs: dict[str, list[PathRun]],
    orders: list[list[str]],
    single: dict[str, list[GetRun]],
    pair: list[GetRun],
    get_errors: list[str],
    cleanup: list[str],
) -> str:
    import boto3
    from boto3.s3.transfer import TransferConfig

    tc = TransferConfig()
    size = human(src.size)
    n = cfg.runs
    labels = {
        "disk": "contentlib, SQLite + disk (default server): `curl -T`, SHA256 declared",
        "s3": "contentlib, PostgreSQL + S3 (replica 1): the same",
        "upload_file": f"boto3 `upload_file` straight to the S3 server (default TransferConfig: "
        f"{tc.multipart_chunksize // MiB} MiB parts, {tc.max_request_concurrency} threads)",
        "put_object": "boto3 `put_object(Body=open file)` straight to the S3 server (one PUT)",
    }
    short = {"disk": "SQLite+disk", "s3": "PG+S3", "upload_file": "upload_file", "put_object": "put_object"}
    mbps = {k: Stat([r.mbps for r in runs]) for k, runs in upload_runs.items()}
    up_rows = []
    for kind in UPLOAD_KINDS:
        runs = upload_runs[kind]
        ok = sum(r.ok for r in runs)
        what = "item SHA1" if kind in ("disk", "s3") else "object size"
        up_rows.append(
            [
                labels[kind],
                mbps[kind].fmt(" MB/s"),
                Stat([r.per_gib("contentlib", src.size) for r in runs]).fmt("", 2) if kind in ("disk", "s3") else "-",
                Stat([r.per_gib("S3 server", src.size) for r in runs]).fmt("", 2) if kind != "disk" else "-",
                Stat([r.cpu.client / (src.size / GiB) for r in runs]).fmt("", 2),
                Stat([r.cpu.other / r.cpu.wall for r in runs]).fmt("", 2),
                Stat([r.peak_rss / 1e6 for r in runs]).fmt(" MB") if kind in ("disk", "s3") else "-",
                f"{what} {ok}/{len(runs)} OK" + "".join(f"; {r.note}" for r in runs if r.note),
            ]
        )
    round_rows = []
    for i, order in enumerate(orders):
        rr = {k: upload_runs[k][i] for k in UPLOAD_KINDS}
        best_stock = max(rr["upload_file"].mbps, rr["put_object"].mbps)
        round_rows.append(
            [
                str(i + 1),
                ", ".join(short[k] for k in order),
                *(f"{rr[k].mbps:.0f}" for k in UPLOAD_KINDS),
                f"{rr['s3'].mbps / best_stock:.2f}",
                " / ".join(f"{rr[k].cpu.other / rr[k].cpu.wall:.2f}" for k in UPLOAD_KINDS),
            ]
        )
    best_kind = max(STOCK_KINDS, key=lambda k: mbps[k].med)
    ratio = mbps["s3"].med / mbps[best_kind].med
    s3_ok = sum(r.ok for r in upload_runs["s3"])

    wrk_cmd = f"wrk -t1 -c50 -d{cfg.wrk_secs}s"

    def get_row(label: str, runs: list[GetRun]) -> list[str]:
        first = runs[0].results
        each = ""
        if len(first) > 1:
            per = [Stat([g.results[j].rps for g in runs]).med for j in range(len(first))]
            each = " (" + " + ".join(f"{v:,.0f}" for v in per) + ")"
        p50 = statistics.median(statistics.mean(r.p50 for r in g.results) for g in runs)
        p99 = statistics.median(max(r.p99 for r in g.results) for g in runs)
        return [
            label,
            Stat([g.rps for g in runs]).fmt(" GET/s") + each,
            f"{p50:.2f} / {p99:.2f}",
            Stat([g.cpu.cores("contentlib") for g in runs]).fmt("", 2),
            Stat([g.cpu.cores("PostgreSQL") for g in runs]).fmt("", 2),
            Stat([g.cpu.client / g.cpu.wall for g in runs]).fmt("", 2),
            Stat([g.cpu.other / g.cpu.wall for g in runs]).fmt("", 2),
        ]

    get_rows = [
        get_row("SQLite + disk, the default server (1 process)", single["disk"]),
        get_row("PostgreSQL + S3, replica 1 alone", single["pg"]),
        get_row("PostgreSQL + S3, replicas 1 and 2 at once (sum; each)", pair),
    ]
    pg_rps = Stat([g.rps for g in single["pg"]])
    disk_rps = Stat([g.rps for g in single["disk"]])
    pair_rps = Stat([g.rps for g in pair])
    targets = [
        [
            f"contentlib upload to S3 / the stock client's best (boto3 `{best_kind}`), ratio of the medians",
            f"{ratio:.2f} ({mbps['s3'].med:,.0f} vs {mbps[best_kind].med:,.0f} MB/s)",
            f">= {TARGET_S3_RATIO:.2f}",
            verdict(ratio >= TARGET_S3_RATIO),
        ],
        [
            "... contentlib upload, PostgreSQL + S3 / SQLite + disk",
            f"{mbps['s3'].med / mbps['disk'].med:.2f}",
            "-",
            "-",
        ],
        [
            "item file SHA1 after an upload through PostgreSQL + S3 equals the source's",
            f"{s3_ok}/{n} match",
            "all match",
            verdict(s3_ok == n),
        ],
        [
            "API GET rate per replica on PostgreSQL",
            pg_rps.fmt(" GET/s") + f" (SQLite + disk: {disk_rps.fmt(' GET/s')})",
            f">= {TARGET_PG_GETS:,.0f}",
            verdict(pg_rps.med >= TARGET_PG_GETS),
        ],
        [
            "aggregate GET rate of 2 replicas on one database",
            pair_rps.fmt(" GET/s") + f" ({pair_rps.med / pg_rps.med:.2f}x one replica)",
            "reported",
            "-",
        ],
    ]
    if get_errors:
        targets.append(["wrk errors", "; ".join(get_errors), "none", verdict(False)])
    host = cfg.pg_url.split("@")[-1]
    return (
        "## 7. PostgreSQL + S3 next to SQLite + disk (issue 5)\n\n"
        f"contentlib with `--database postgresql://.../{db_name}` (PostgreSQL {svc.pg_version} on {host}, a fresh "
        f"database, dropped afterwards) and `--blobs {blobs}` ({svc.s3_server}, a fresh prefix, emptied "
        "afterwards), next to the default server of sections 2-6 (SQLite + disk in its data dir). The stock "
        f"client is boto3 {boto3.__version__} with its default configuration (path-style addressing), writing "
        f"the same {size} file straight to the S3 server under the same prefix. All on this machine "
        f"({os.cpu_count()} CPUs): the S3 server, PostgreSQL, curl and wrk share its cores with contentlib. "
        f"{n} round{'s' if n > 1 else ''}"
        + (" after one warm-up round" if cfg.warmup else "")
        + "; in each round one upload along "
        "each path, the order rotating from round to round. CPU columns: CPU-s per GiB uploaded of contentlib, "
        "of the S3 server (all `weed` processes) and of the client (curl, or this Python process for boto3); "
        "'other cores' = everything else on the machine (PostgreSQL included) during the upload.\n\n"
        + table(
            [
                f"upload of one {size} file",
                "rate",
                "contentlib CPU-s/GiB",
                "S3 server CPU-s/GiB",
                "client CPU-s/GiB",
                "other cores",
                "contentlib peak RSS",
                "check",
            ],
            up_rows,
        )
        + "\n\nPer round (MB/s):\n\n"
        + table(
            [
                "round",
                "order",
                *(f"{short[k]}" for k in UPLOAD_KINDS),
                "PG+S3 / best stock",
                "other cores (" + " / ".join(short[k] for k in UPLOAD_KINDS) + ")",
            ],
            round_rows,
        )
        + f"\n\nAPI: `{wrk_cmd} --latency` on `GET {US}/{{id}}` with the session header; one process at a time "
        f"({n} interleaved runs each"
        + (", after a 1 s warm-up" if cfg.warmup else "")
        + "), then a second replica on the same database and bucket prefix serving the same API session and "
        "update session, with one wrk against each replica at the same time. PostgreSQL cores = the backends "
        "serving the bench database; p99 of two replicas = the higher of the two.\n\n"
        + table(
            [
                "setup",
                "rate",
                "p50 / p99 ms",
                "contentlib cores",
                "PostgreSQL cores",
                "client cores (wrk)",
                "other cores",
            ],
            get_rows,
        )
        + "\n\n"
        + table(["metric", "measured", "target", "verdict"], targets)
        + "\n\nCleanup: "
        + "; ".join(cleanup)
        + "."
    )
