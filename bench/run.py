#!/usr/bin/env python3
"""contentlib benchmark: machine limits, upload, API GET rate, cycle rate, OVA vs plain upload, REST vs JSON-RPC,
PostgreSQL + S3 next to SQLite + disk, govc library.import against vcsim 0.24.2, the API request rate against vcsim
0.24.2, the VCSP feed of a published library with 10,000 items.

Starts its own `python -m contentlib serve --http` on a free loopback port with a temporary data dir,
measures, prints Markdown tables next to the targets of issues 2-5 and the vcsim reference figures, writes
them to bench/results/latest.md (bench/results/quick.md with --quick), and deletes the data dir.

    .venv/bin/python bench/run.py [--runs N] [--no-10g] [--no-ova] [--no-scaleout] [--no-govc] [--no-peer]
                                  [--no-vcspfeed]
                                  [--only SECTION,...] [--quick] [--dir PARENT] [--out FILE] [--pg URL] [--s3 URL]

Needs curl and wrk (wrk is installed with `apt-get install -y wrk` when missing and running as root). Section 7
needs PostgreSQL and an S3 server: the local ones are started with scripts/ensure-postgres.sh and
scripts/ensure-seaweedfs.sh when they are not running (and stopped again afterwards). Sections 8 and 9 need govc
and vcsim 0.24.2, built (once, then cached) by scripts/build-govmomi.sh.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import requests

if not __package__:  # run as a script (`python bench/run.py`): import the sections as the package `bench`
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.api_rate import bench_api, ensure_wrk
from bench.common import (
    DEFAULT_PG,
    DEFAULT_S3,
    RESULTS,
    SECTIONS,
    BenchError,
    Config,
    GiB,
    MiB,
    Report,
    header,
    human,
)
from bench.cycles import bench_cycles
from bench.govc import GOVMOMI_VERSION, bench_govc
from bench.jsonrpc import bench_jsonrpc
from bench.limits import bench_limits
from bench.ova import bench_ova
from bench.peer import bench_peer
from bench.scaleout import bench_scaleout
from bench.server import Api, Server
from bench.upload import bench_upload, make_source
from bench.vcsp_feed import bench_vcsp_feed
from bench.vcsp_sync import bench_vcsp_sync


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=None, help="runs per measurement, median reported (default 3)")
    p.add_argument("--no-10g", action="store_true", help="skip the 10 GiB peak-RSS upload")
    p.add_argument("--no-ova", action="store_true", help="skip the OVA vs plain upload comparison")
    p.add_argument("--no-scaleout", action="store_true", help="skip PostgreSQL + S3 next to SQLite + disk")
    p.add_argument(
        "--no-govc",
        action="store_true",
        help=f"skip govc library.import against contentlib and vcsim {GOVMOMI_VERSION}",
    )
    p.add_argument(
        "--no-peer",
        action="store_true",
        help=f"skip the API request rate against vcsim {GOVMOMI_VERSION} (section 9)",
    )
    p.add_argument(
        "--no-vcspfeed",
        action="store_true",
        help="skip the VCSP feed of a published library with 10,000 items (section 11)",
    )
    p.add_argument(
        "--only",
        default="",
        metavar="SECTION,...",
        help="run only these sections, by name or number: "
        + ", ".join(f"{i} {name}" for i, name in enumerate(SECTIONS, 1)),
    )
    p.add_argument(
        "--pg",
        default=DEFAULT_PG,
        metavar="URL",
        help="PostgreSQL server for section 7, postgresql://user@host:port (a user that may create databases); "
        f"default {DEFAULT_PG}, started with scripts/ensure-postgres.sh when it is not running",
    )
    p.add_argument(
        "--s3",
        default=DEFAULT_S3,
        metavar="URL",
        help=f"S3 endpoint for section 7 (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, else ci/cisecret); "
        f"default {DEFAULT_S3}, started with scripts/ensure-seaweedfs.sh when it is not running",
    )
    p.add_argument("--quick", action="store_true", help="small sizes and short runs: a smoke test in seconds")
    p.add_argument("--dir", type=Path, default=None, help="parent of the temporary data dir (default: /tmp)")
    p.add_argument("--out", type=Path, default=None, help="Markdown output (default bench/results/latest.md)")
    a = p.parse_args(argv)
    runs = a.runs if a.runs is not None else (1 if a.quick else 3)
    if runs < 1:
        p.error("--runs must be >= 1")
    only = set()
    for word in filter(None, (w.strip() for w in a.only.split(","))):
        if word.isdigit() and 1 <= int(word) <= len(SECTIONS):
            word = SECTIONS[int(word) - 1]
        if word not in SECTIONS:
            p.error(f"--only: no section {word!r} (sections: {', '.join(SECTIONS)}, or 1-{len(SECTIONS)})")
        only.add(word)
    if a.quick:
        return Config(
            runs=runs,
            quick=True,
            big=not a.no_10g,
            ova=not a.no_ova,
            scaleout=not a.no_scaleout,
            govc=not a.no_govc,
            peer=not a.no_peer,
            pg_url=a.pg.rstrip("/"),
            s3_endpoint=a.s3.rstrip("/"),
            hash_bytes=64 * MiB,
            disk_bytes=64 * MiB,
            loop_bytes=256 * MiB,
            upload_bytes=32 * MiB,
            big_repeats=4,
            wrk_secs=1,
            cycle_secs=1.0,
            warmup=False,
            parent=a.dir,
            out=a.out or RESULTS / "quick.md",
            only=frozenset(only),
            vcspfeed=not a.no_vcspfeed,
        )
    return Config(
        runs=runs,
        quick=False,
        big=not a.no_10g,
        ova=not a.no_ova,
        scaleout=not a.no_scaleout,
        govc=not a.no_govc,
        peer=not a.no_peer,
        pg_url=a.pg.rstrip("/"),
        s3_endpoint=a.s3.rstrip("/"),
        hash_bytes=GiB,
        disk_bytes=GiB,
        loop_bytes=2 * GiB,
        upload_bytes=GiB,
        big_repeats=10,
        wrk_secs=8,
        cycle_secs=5.0,
        warmup=True,
        parent=a.dir,
        out=a.out or RESULTS / "latest.md",
        only=frozenset(only),
        vcspfeed=not a.no_vcspfeed,
    )


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    if shutil.which("curl") is None:
        print("curl is required (apt-get install -y curl)", file=sys.stderr)
        return 2
    ensure_wrk()
    if cfg.parent is not None:
        cfg.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="contentlib-bench-", dir=cfg.parent))
    srv = Server(work)
    rep = Report(cfg)
    try:
        srv.start()
        rep.add(header(cfg, work, srv))
        limits: dict[str, float] = {}
        if cfg.wants("limits"):
            with rep.section("bare limits"):
                limits = bench_limits(cfg, work, rep)
        api = Api(srv.base, srv.password)
        lib = api.create_library()
        print(f"... making a {human(cfg.upload_bytes)} random source file", file=sys.stderr, flush=True)
        src = make_source(work / "source.bin", cfg.upload_bytes)
        if cfg.wants("upload"):
            with rep.section("upload", srv):
                bench_upload(cfg, srv, api, lib, src, work, rep, limits or {"sha256": float("nan")})
        if cfg.wants("api"):
            with rep.section("API GET rate", srv):
                bench_api(cfg, srv, api, lib, src, work, rep)
        if cfg.wants("cycles"):
            with rep.section("cycle rate", srv):
                bench_cycles(cfg, srv, api, lib, rep)
        if cfg.wants("ova"):
            with rep.section("OVA vs plain upload", srv):
                bench_ova(cfg, srv, api, lib, src, work, rep)
        if cfg.wants("jsonrpc"):
            with rep.section("REST vs JSON-RPC", srv):
                bench_jsonrpc(cfg, srv, api, lib, work, rep)
        if cfg.wants("scaleout"):
            with rep.section("PostgreSQL + S3", srv):
                bench_scaleout(cfg, srv, api, lib, src, work, rep)
        if cfg.wants("govc"):
            with rep.section("govc library.import against vcsim"):
                bench_govc(cfg, src, work, rep)
        if cfg.wants("peer"):
            with rep.section("API request rate against vcsim"):
                bench_peer(cfg, src, work, rep)
        if cfg.wants("vcspsync"):
            with rep.section("subscribed library sync", srv):
                bench_vcsp_sync(cfg, srv, api, work, rep)
        if cfg.wants("vcspfeed"):
            with rep.section("VCSP feed"):
                bench_vcsp_feed(cfg, work, rep)
    except (BenchError, requests.RequestException) as e:
        rep.failed.append("setup")
        rep.add(f"**ERROR**: `{type(e).__name__}: {e}`")
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    if rep.failed:
        rep.add("Problems: " + ", ".join(dict.fromkeys(rep.failed)) + ".")
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text("\n\n".join(rep.sections) + "\n")
    print(f"written to {cfg.out}", file=sys.stderr)
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
