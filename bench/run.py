#!/usr/bin/env python3
"""contentlib benchmark: machine limits, upload, API GET rate, cycle rate, OVA vs plain upload, REST vs JSON-RPC,
PostgreSQL + S3 next to SQLite + disk.

Starts its own `python -m contentlib serve --http` on a free loopback port with a temporary data dir,
measures, prints Markdown tables next to the targets of issues 2-5 and the vcsim reference figures, writes
them to bench/results/latest.md (bench/results/quick.md with --quick), and deletes the data dir.

    .venv/bin/python bench/run.py [--runs N] [--no-10g] [--no-ova] [--no-scaleout] [--quick] [--dir PARENT]
                                  [--out FILE] [--pg URL] [--s3 URL]

Needs curl and wrk (wrk is installed with `apt-get install -y wrk` when missing and running as root). Section 7
needs PostgreSQL and an S3 server: the local ones are started with scripts/ensure-postgres.sh and
scripts/ensure-seaweedfs.sh when they are not running (and stopped again afterwards).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import io
import json
import multiprocessing as mp
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
ADMIN_USER = "administrator@vsphere.local"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SESSION_HEADER = "vmware-api-session-id"
US = "/api/content/library/item/update-session"

# Targets (issue 2, "Performance") and reference figures for the peer vcsim 0.24.2 on this machine
# (../shared/research/vcsim-peer.md).
TARGET_UPLOAD_MBPS = 800.0
TARGET_PEAK_RSS_MB = 150.0
TARGET_GETS = 10_000.0
TARGET_P99_MS = 20.0
TARGET_OVA_RATIO = 0.85  # issue 3: a 1 GiB OVA upload stays within 15% of a 1 GiB plain upload
VCSIM_PUT = "~0.7 GB/s (curl PUT: 705 MB/s plain, 711 TLS; checks nothing)"
VCSIM_GET = "~39-42k GET/s (wrk -t2 -c8, TLS)"
VCSIM_STALL = "GET stalls 4.1 s behind a 1 GiB PUT (global lock)"
VCSIM_CYCLE = (
    "~570 cycles/s create+get+complete with a Python client; "
    "275 upload-cycles/s (create+add+PUT 1 KiB+complete) plain HTTP, 263-324 TLS"
)


# Issue 5 (scale-out): PostgreSQL + S3.
TARGET_S3_RATIO = 0.70  # contentlib's upload to S3 >= 70% of a stock client's plain PUT of the same object
TARGET_PG_GETS = 5_000.0  # per replica on PostgreSQL
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432"  # scripts/ensure-postgres.sh
DEFAULT_S3 = "http://127.0.0.1:8333"  # scripts/ensure-seaweedfs.sh (credentials ci/cisecret)
S3_BUCKET = "contentlib-bench"
S3_ENV = {
    "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "ci"),
    "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "cisecret"),
    "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
}


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------------------------------------
# configuration


@dataclass
class Config:
    runs: int
    quick: bool
    big: bool
    ova: bool
    scaleout: bool
    pg_url: str
    s3_endpoint: str
    hash_bytes: int
    disk_bytes: int
    loop_bytes: int
    upload_bytes: int
    big_repeats: int
    wrk_secs: int
    cycle_secs: float
    warmup: bool
    parent: Path | None
    out: Path


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=None, help="runs per measurement, median reported (default 3)")
    p.add_argument("--no-10g", action="store_true", help="skip the 10 GiB peak-RSS upload")
    p.add_argument("--no-ova", action="store_true", help="skip the OVA vs plain upload comparison")
    p.add_argument("--no-scaleout", action="store_true", help="skip PostgreSQL + S3 next to SQLite + disk")
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
    if a.quick:
        return Config(
            runs=runs,
            quick=True,
            big=not a.no_10g,
            ova=not a.no_ova,
            scaleout=not a.no_scaleout,
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
        )
    return Config(
        runs=runs,
        quick=False,
        big=not a.no_10g,
        ova=not a.no_ova,
        scaleout=not a.no_scaleout,
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
    )


# --------------------------------------------------------------------------------------------------------
# /proc helpers


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields from 3 (state) on


def proc_tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            f = _stat_fields(int(d))
            if f is not None:
                children.setdefault(int(f[1]), []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_cpu(pid: int) -> float:
    """user+sys CPU seconds of the process tree rooted at pid (all threads)."""
    total = 0
    for p in proc_tree(pid):
        f = _stat_fields(p)
        if f is not None:
            total += int(f[11]) + int(f[12])
    return total / CLK_TCK


def machine_busy() -> float:
    """CPU seconds spent not idle by the whole machine since boot (all cores)."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is inside user
    return (sum(vals[:8]) - vals[3] - vals[4]) / CLK_TCK


def client_cpu() -> float:
    """CPU of this process plus its waited-for children (curl, wrk, cat)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class RssSampler:
    """Samples the summed VmRSS of a process tree every `interval` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pids = proc_tree(pid)
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        self.peak = max(self.peak, sum(rss_bytes(p) for p in self.pids))
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


@dataclass
class Meter:
    """CPU accounting over an interval: server tree, this client (+children), the whole machine."""

    pid: int
    t0: float = field(init=False, default=0.0)
    srv0: float = field(init=False, default=0.0)
    cli0: float = field(init=False, default=0.0)
    mach0: float = field(init=False, default=0.0)
    wall: float = field(init=False, default=0.0)
    server: float = field(init=False, default=0.0)
    client: float = field(init=False, default=0.0)
    other: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.srv0, self.cli0, self.mach0 = tree_cpu(self.pid), client_cpu(), machine_busy()
        self.t0 = time.perf_counter()

    def stop(self) -> Meter:
        self.wall = time.perf_counter() - self.t0
        self.server = tree_cpu(self.pid) - self.srv0
        self.client = client_cpu() - self.cli0
        self.other = machine_busy() - self.mach0 - self.server - self.client
        return self


PidSource = Callable[[], list[int]]


def pids_named(*names: str) -> list[int]:
    """Processes whose /proc/PID/comm is one of `names` ("weed", "postgres": PostgreSQL's backends keep that comm)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                comm = Path(f"/proc/{d}/comm").read_text().strip()
            except OSError:
                continue
            if comm in names:
                out.append(int(d))
    return out


def proc_cpu(pid: int) -> float | None:
    f = _stat_fields(pid)
    return None if f is None else (int(f[11]) + int(f[12])) / CLK_TCK


class CpuMeter:
    """Like Meter, for named groups of processes (contentlib replicas, the S3 server, PostgreSQL): CPU seconds
    of each group, of this client (+ its waited-for children) and of everything else on the machine. A group's
    processes are looked up at the start and at the end: one that started in between counts from zero."""

    def __init__(self, groups: dict[str, PidSource]) -> None:
        self.groups = groups
        self.cpu: dict[str, float] = {}
        self.wall = self.client = self.other = 0.0
        self._start = {name: self._snapshot(source) for name, source in groups.items()}
        self._cli0, self._mach0 = client_cpu(), machine_busy()
        self._t0 = time.perf_counter()

    @staticmethod
    def _snapshot(source: PidSource) -> dict[int, float]:
        return {p: c for p in source() if (c := proc_cpu(p)) is not None}

    def stop(self) -> CpuMeter:
        self.wall = time.perf_counter() - self._t0
        for name, source in self.groups.items():
            before = self._start[name]
            self.cpu[name] = sum(c - before.get(p, 0.0) for p, c in self._snapshot(source).items())
        self.client = client_cpu() - self._cli0
        self.other = machine_busy() - self._mach0 - sum(self.cpu.values()) - self.client
        return self

    def cores(self, name: str) -> float:
        return self.cpu.get(name, 0.0) / self.wall if self.wall else 0.0


# --------------------------------------------------------------------------------------------------------
# statistics and formatting


@dataclass
class Stat:
    values: list[float]

    @property
    def med(self) -> float:
        return statistics.median(self.values)

    def fmt(self, unit: str = "", digits: int = 0, scale: float = 1.0) -> str:
        f = f"{{:,.{digits}f}}"
        s = f.format(self.med / scale) + unit
        if len(self.values) > 1:
            s += f" ({f.format(min(self.values) / scale)}-{f.format(max(self.values) / scale)})"
        return s


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("**PASS**" if ok else "**FAIL**")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def human(n: int) -> str:
    return f"{n / GiB:g} GiB" if n >= GiB else f"{n / MiB:g} MiB"


# --------------------------------------------------------------------------------------------------------
# 1. bare limits


def hash_rate(algo: str, nbytes: int) -> float:
    buf = os.urandom(MiB)
    h = hashlib.new(algo)
    t = time.perf_counter()
    for _ in range(nbytes // MiB):
        h.update(buf)
    h.hexdigest()
    return nbytes / (time.perf_counter() - t)


def direct_write_rate(directory: Path, nbytes: int) -> float:
    path = directory / "dd-odirect.bin"
    cmd = ["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={nbytes // MiB}", "oflag=direct"]
    cmd.append("conv=fdatasync")
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    elapsed = time.perf_counter() - t
    path.unlink(missing_ok=True)
    if r.returncode != 0:
        raise BenchError(f"dd oflag=direct failed: {r.stderr.strip()}")
    return nbytes / elapsed


def loopback_rate(nbytes: int) -> float:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        cli = socket.create_connection(srv.getsockname())
        conn, _ = srv.accept()
        got = [0]

        def receive() -> None:
            buf = bytearray(MiB)
            while got[0] < nbytes:
                k = conn.recv_into(buf)
                if not k:
                    break
                got[0] += k

        th = threading.Thread(target=receive)
        data = os.urandom(MiB)
        t = time.perf_counter()
        th.start()
        for _ in range(nbytes // MiB):
            cli.sendall(data)
        th.join()
        elapsed = time.perf_counter() - t
        cli.close()
        conn.close()
    return got[0] / elapsed


def fs_of(path: Path) -> str:
    best = ("?", "?", "")
    p = str(path.resolve())
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, fstype = line.split()[:3]
            if (p == mnt or p.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[2]):
                best = (dev, fstype, mnt)
    return f"{best[1]} on {best[0]}"


# --------------------------------------------------------------------------------------------------------
# server and API client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(
        self,
        workdir: Path,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        password: str | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = workdir / "data"
        self.log_path = workdir / "server.log"
        self.args = list(args or [])  # extra `serve` flags (--database, --blobs)
        self.env = dict(env or {})
        self.password = password or "Bench-" + secrets.token_urlsafe(12)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        env = dict(os.environ)
        env.update(self.env)
        env["CONTENTLIB_ADMIN_PASSWORD"] = self.password
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
        cmd = [sys.executable, "-m", "contentlib", "serve", "--http", "--listen", f"127.0.0.1:{self.port}"]
        cmd += ["--data-dir", str(self.data_dir), *self.args]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.base + "/api/session", timeout=1).status_code == 401:
                    return
            time.sleep(0.05)
        raise BenchError(f"server did not answer in {timeout:.0f} s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


class Api:
    def __init__(self, base: str, password: str) -> None:
        self.base = base
        self.http = requests.Session()
        r = self.http.post(base + "/api/session", auth=(ADMIN_USER, password), timeout=30)
        if r.status_code != 201:
            raise BenchError(f"login: {r.status_code} {r.text[:300]}")
        self.session_id = str(r.json())
        self.http.headers[SESSION_HEADER] = self.session_id

    def call(self, method: str, path: str, expect: int, **kw: Any) -> Any:
        kw.setdefault("timeout", 120)
        r = self.http.request(method, path if path.startswith("http") else self.base + path, **kw)
        if r.status_code != expect:
            raise BenchError(f"{method} {path} -> {r.status_code} (expected {expect}): {r.text[:500]}")
        return r.json() if r.content else None

    def create_library(self) -> str:
        spec = {
            "name": f"bench-{uuid.uuid4().hex[:8]}",
            "type": "LOCAL",
            "storage_backings": [{"type": "OTHER", "storage_uri": "file:///tmp/contentlib-bench"}],
        }
        return str(self.call("POST", "/api/content/local-library", 201, json=spec))

    def create_item(self, library_id: str, item_type: str = "iso") -> str:
        spec = {"library_id": library_id, "name": f"item-{uuid.uuid4().hex[:12]}", "type": item_type}
        return str(self.call("POST", "/api/content/library/item", 201, json=spec))

    def create_session(self, item_id: str) -> str:
        return str(self.call("POST", US, 201, json={"library_item_id": item_id}))

    def add_file(self, sid: str, name: str, size: int, algo: str | None = None, digest: str = "") -> str:
        spec: dict[str, Any] = {"name": name, "source_type": "PUSH", "size": size}
        if algo:
            spec["checksum_info"] = {"algorithm": algo, "checksum": digest}
        info = self.call("POST", f"{US}/{sid}/file", 201, json=spec)
        return str(info["upload_endpoint"]["uri"])

    def session_file(self, sid: str, name: str) -> dict[str, Any]:
        return dict(self.call("GET", f"{US}/{sid}/file/{name}", 200))

    def session_files(self, sid: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"{US}/{sid}/file", 200))

    def validate(self, sid: str) -> dict[str, Any]:
        return dict(self.call("POST", f"{US}/{sid}/file?action=validate", 200))

    def complete(self, sid: str) -> None:
        self.call("POST", f"{US}/{sid}?action=complete", 204)

    def item_sha1(self, item_id: str, name: str) -> str:
        files = self.call("GET", f"/api/content/library/item/{item_id}/file", 200)
        for f in files:
            if f["name"] == name:
                ci = f.get("checksum_info") or {}
                return f"{ci.get('algorithm')}:{ci.get('checksum')}"
        raise BenchError(f"item {item_id} has no file {name!r}: {files}")

    def delete_item(self, item_id: str) -> None:
        with contextlib.suppress(requests.RequestException):
            self.http.delete(f"{self.base}/api/content/library/item/{item_id}", timeout=120)


# --------------------------------------------------------------------------------------------------------
# 2. uploads


@dataclass
class Source:
    path: Path
    size: int
    sha1: str
    sha256: str
    repeats: int = 1  # the body is the file repeated this many times


def make_source(path: Path, nbytes: int) -> Source:
    h1, h256 = hashlib.sha1(), hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(nbytes // MiB):
            b = os.urandom(MiB)
            h1.update(b)
            h256.update(b)
            f.write(b)
    return Source(path, nbytes, h1.hexdigest(), h256.hexdigest())


def repeated_digest(path: Path, repeats: int, algo: str) -> str:
    h = hashlib.new(algo)
    buf = bytearray(4 * MiB)
    mv = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        for _ in range(repeats):
            f.seek(0)
            while n := f.readinto(buf):
                h.update(mv[:n])
    return h.hexdigest()


def repeated_source(src: Source, repeats: int) -> Source:
    with ThreadPoolExecutor(2) as ex:  # hashlib releases the GIL: the two digests run in parallel
        f1 = ex.submit(repeated_digest, src.path, repeats, "sha1")
        f256 = ex.submit(repeated_digest, src.path, repeats, "sha256")
        return Source(src.path, src.size * repeats, f1.result(), f256.result(), repeats)


CURL_W = "%{http_code} %{time_total} %{size_upload}"


def curl_put(src: Source, uri: str, resp_file: Path) -> tuple[int, float, int]:
    """PUT the source with curl; returns (status, seconds, bytes sent)."""
    base = ["curl", "-sS", "-o", str(resp_file), "-w", CURL_W, "-H", "Expect:"]
    if src.repeats == 1:
        r = subprocess.run([*base, "-T", str(src.path), uri], capture_output=True, text=True)
        out, err = r.stdout, r.stderr
    else:
        # A pipe, so that a 10 GiB body needs no 10 GiB file; Content-Length instead of chunked encoding.
        cat = subprocess.Popen(["cat"] + [str(src.path)] * src.repeats, stdout=subprocess.PIPE)
        extra = ["-H", f"Content-Length: {src.size}", "-H", "Transfer-Encoding:", "-T", "-", uri]
        cp = subprocess.Popen([*base, *extra], stdin=cat.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert cat.stdout is not None
        cat.stdout.close()
        bout, berr = cp.communicate()
        cat.wait()
        out, err = bout.decode(), berr.decode()
    parts = out.split()
    if len(parts) != 3:
        raise BenchError(f"curl failed: {out!r} {err.strip()}")
    return int(parts[0]), float(parts[1]), int(parts[2])


@dataclass
class UploadResult:
    size: int
    mbps: float
    seconds: float
    cpu_per_gib: float
    server_cores: float
    other_cores: float
    peak_rss: int
    idle_rss: int
    sha1_ok: bool
    note: str = ""
    cpu: CpuMeter | None = None  # around the PUT, when upload_once was given process groups


def upload_once(
    srv: Server, api: Api, lib: str, src: Source, work: Path, groups: dict[str, PidSource] | None = None
) -> UploadResult:
    """create item+session, add with declared size and SHA256, curl PUT, check READY, complete, check SHA1."""
    item = api.create_item(lib)
    try:
        sid = api.create_session(item)
        name = "disk.iso"
        uri = api.add_file(sid, name, src.size, "SHA256", src.sha256)
        idle = rss_bytes(srv.pid)
        with RssSampler(srv.pid) as rss:
            gm = CpuMeter(groups) if groups is not None else None
            m = Meter(srv.pid)
            status, secs, sent = curl_put(src, uri, work / "curl-resp.txt")
            m.stop()
            if gm is not None:
                gm.stop()
        body = (work / "curl-resp.txt").read_text(errors="replace")[:500]
        if status != 200 or sent != src.size:
            raise BenchError(f"upload answered {status} after {sent} of {src.size} bytes: {body}")
        info = api.session_file(sid, name)
        if info.get("status") != "READY":
            raise BenchError(f"file not READY after upload: {info}")
        api.complete(sid)
        got = api.item_sha1(item, name)
        ok = got == f"SHA1:{src.sha1}"
        return UploadResult(
            size=src.size,
            mbps=src.size / secs / 1e6,
            seconds=secs,
            cpu_per_gib=m.server / (src.size / GiB),
            server_cores=m.server / m.wall,
            other_cores=m.other / m.wall,
            peak_rss=rss.peak,
            idle_rss=idle,
            sha1_ok=ok,
            note="" if ok else f"item has {got}, expected SHA1:{src.sha1}",
            cpu=gm,
        )
    finally:
        api.delete_item(item)


# --------------------------------------------------------------------------------------------------------
# 3. API GET rate with wrk


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise BenchError(f"cannot parse wrk time {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass
class WrkResult:
    rps: float
    p50: float
    p99: float
    max: float
    requests: int
    errors: str


def ensure_wrk() -> str | None:
    """Path of wrk; installs it with apt-get when missing (root only). None when unavailable."""
    if (w := shutil.which("wrk")) is not None:
        return w
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    print("wrk not found: running `apt-get install -y wrk`", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", "wrk"]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(cmd, env=env, capture_output=True)
    return shutil.which("wrk")


def run_wrk(wrk: str, url: str, session_id: str, secs: int, conns: int = 50, script: Path | None = None) -> WrkResult:
    cmd = [wrk, "-t1", f"-c{conns}", f"-d{secs}s", "--latency", "--timeout", "10s"]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd += ["-H", f"{SESSION_HEADER}: {session_id}", url]
    r = subprocess.run(cmd, capture_output=True, text=True)
    out = r.stdout
    if r.returncode != 0 or "Requests/sec" not in out:
        raise BenchError(f"wrk failed ({r.returncode}): {out} {r.stderr}")
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.M))
    mx = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", out, re.M)
    reqs = re.search(r"(\d+) requests in", out)
    errors = []
    if m := re.search(r"Socket errors: (.*)", out):
        errors.append("socket errors: " + m.group(1).strip())
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors.append(f"{m.group(1)} non-2xx responses")
    return WrkResult(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50=_ms(lat["50"]),
        p99=_ms(lat["99"]),
        max=_ms(mx.group(1)) if mx else float("nan"),
        requests=int(reqs.group(1)) if reqs else 0,
        errors="; ".join(errors),
    )


@dataclass
class BackgroundUploads:
    """Uploads the source back to back (one session each) until stopped; records each interval."""

    srv: Server
    api: Api
    lib: str
    src: Source
    work: Path
    intervals: list[tuple[float, float, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            item = self.api.create_item(self.lib)
            try:
                sid = self.api.create_session(item)
                uri = self.api.add_file(sid, "bg.iso", self.src.size, "SHA256", self.src.sha256)
                t0 = time.monotonic()
                self.started.set()
                status, _secs, sent = curl_put(self.src, uri, self.work / "curl-bg.txt")
                t1 = time.monotonic()
                if status != 200:
                    self.errors.append(f"upload answered {status}")
                self.intervals.append((t0, t1, sent))
                self.api.complete(sid)
            except Exception as e:
                self.errors.append(str(e)[:300])
                self.started.set()
                return
            finally:
                self.api.delete_item(item)

    def coverage(self, w0: float, w1: float) -> float:
        covered = sum(max(0.0, min(b, w1) - max(a, w0)) for a, b, _ in self.intervals)
        return covered / (w1 - w0)


# --------------------------------------------------------------------------------------------------------
# 4. create -> add -> PUT 1 KiB -> complete cycles


STEPS = ("create", "add", "PUT", "complete")


def cycle_loop(http: requests.Session, base: str, item: str, secs: float) -> tuple[int, float, list[float]]:
    """Cycles on one item until `secs` are over: (cycles, seconds, summed seconds per step)."""
    data = os.urandom(KiB)
    spec: dict[str, Any] = {
        "name": "small.bin",
        "source_type": "PUSH",
        "size": len(data),
        "checksum_info": {"algorithm": "SHA1", "checksum": hashlib.sha1(data).hexdigest()},
    }
    n = 0
    steps = [0.0] * len(STEPS)

    def step(i: int, expect: int, method: str, url: str, **kw: Any) -> requests.Response:
        t = time.perf_counter()
        r = http.request(method, url, timeout=60, **kw)
        steps[i] += time.perf_counter() - t
        if r.status_code != expect:
            raise BenchError(f"{STEPS[i]} -> {r.status_code} (expected {expect}) {r.text[:300]}")
        return r

    t0 = time.perf_counter()
    end = t0 + secs
    while time.perf_counter() < end:
        sid = step(0, 201, "POST", base + US, json={"library_item_id": item}).json()
        uri = step(1, 201, "POST", f"{base}{US}/{sid}/file", json=spec).json()["upload_endpoint"]["uri"]
        step(2, 200, "PUT", uri, data=data)
        step(3, 204, "POST", f"{base}{US}/{sid}?action=complete")
        n += 1
    return n, time.perf_counter() - t0, steps


def cycle_worker(base: str, session_id: str, lib: str, secs: float, ready: Any, go: Any, results: Any) -> None:
    """One client process: own item, one keep-alive connection; reports (cycles, seconds) or an error."""
    try:
        http = requests.Session()
        http.headers[SESSION_HEADER] = session_id
        r = http.post(base + "/api/content/library/item", json={"library_id": lib, "name": uuid.uuid4().hex})
        if r.status_code != 201:
            raise BenchError(f"item create -> {r.status_code} {r.text[:300]}")
        item = r.json()
        ready.put(True)
        go.wait(60)
        results.put(cycle_loop(http, base, item, secs))
    except Exception as e:
        ready.put(True)
        results.put(f"{type(e).__name__}: {e}")


@dataclass
class CycleResult:
    procs: int
    rate: float
    cycles: int
    server_ms_per_cycle: float
    server_cores: float
    other_cores: float
    step_ms: list[float]


def cycles_multi(srv: Server, api: Api, lib: str, procs: int, secs: float) -> CycleResult:
    if procs == 1:
        item = api.create_item(lib)
        m = Meter(srv.pid)
        n, el, steps = cycle_loop(api.http, srv.base, item, secs)
        m.stop()
        per = [t / max(n, 1) * 1e3 for t in steps]
        return CycleResult(1, n / el, n, m.server / max(n, 1) * 1e3, m.server / m.wall, m.other / m.wall, per)
    ctx = mp.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    ps = [
        ctx.Process(target=cycle_worker, args=(srv.base, api.session_id, lib, secs, ready, go, results))
        for _ in range(procs)
    ]
    for p in ps:
        p.start()
    try:
        for _ in ps:
            ready.get(timeout=120)
        m = Meter(srv.pid)
        go.set()
        out = [results.get(timeout=secs + 120) for _ in ps]
    finally:
        for p in ps:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    m.stop()  # after join, so that the client processes' CPU is counted as client, not other
    errs = [o for o in out if isinstance(o, str)]
    if errs:
        raise BenchError("; ".join(errs))
    total = sum(n for n, _, _ in out)
    rate = sum(n / el for n, el, _ in out)
    per = [sum(s[i] for _, _, s in out) / max(total, 1) * 1e3 for i in range(len(STEPS))]
    return CycleResult(procs, rate, total, m.server / max(total, 1) * 1e3, m.server / m.wall, m.other / m.wall, per)


# --------------------------------------------------------------------------------------------------------
# 5. OVA vs plain upload

OVA_NAME = "x.ova"
OVA_DESCRIPTOR = "x.ovf"
OVA_MANIFEST = "x.mf"
OVA_DISK = "disk.vmdk"


@dataclass
class Ova:
    body: Source  # the .ova archive as a request body (its own digests are not needed: sha1/sha256 empty)
    disk: Source  # the disk member: the 1 GiB source itself
    members: dict[str, int]  # member name -> size, in archive order


def ovf_descriptor(disk_size: int) -> bytes:
    """A minimal valid OVF 1.x envelope: one file reference (with its size), one disk, one virtual system."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References>
    <File ovf:href="{OVA_DISK}" ovf:id="file1" ovf:size="{disk_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{disk_size}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1"
          ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <VirtualSystem ovf:id="contentlib-bench">
    <Info>contentlib benchmark package</Info>
    <Name>contentlib-bench</Name>
  </VirtualSystem>
</Envelope>
""".encode()


def make_ova(src: Source, path: Path) -> Ova:
    """descriptor, manifest (SHA256 of descriptor and disk, no signature), disk = the source file, streamed into
    a ustar archive by tarfile (the disk is copied from the source file, not held in memory)."""
    if src.repeats != 1:
        raise BenchError("the OVA is built from a plain source file")
    desc = ovf_descriptor(src.size)
    manifest = (
        f"SHA256({OVA_DESCRIPTOR})= {hashlib.sha256(desc).hexdigest()}\nSHA256({OVA_DISK})= {src.sha256}\n"
    ).encode()
    now = int(time.time())

    def info(name: str, size: int) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mode, ti.mtime, ti.uname, ti.gname = size, 0o644, now, "bench", "bench"
        return ti

    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        tf.addfile(info(OVA_DESCRIPTOR, len(desc)), io.BytesIO(desc))
        tf.addfile(info(OVA_MANIFEST, len(manifest)), io.BytesIO(manifest))
        with open(src.path, "rb") as f:
            tf.addfile(info(OVA_DISK, src.size), f)
    members = {OVA_DESCRIPTOR: len(desc), OVA_MANIFEST: len(manifest), OVA_DISK: src.size}
    return Ova(Source(path, path.stat().st_size, "", ""), src, members)


def ova_upload_once(srv: Server, api: Api, lib: str, ova: Ova, work: Path) -> UploadResult:
    """create item+session, add the .ova (size, no checksum_info), curl PUT, check every file READY and the disk's
    size, validate without errors, complete, check the item's disk SHA1."""
    item = api.create_item(lib, "ovf")
    try:
        sid = api.create_session(item)
        uri = api.add_file(sid, OVA_NAME, ova.body.size)
        idle = rss_bytes(srv.pid)
        with RssSampler(srv.pid) as rss:
            m = Meter(srv.pid)
            status, secs, sent = curl_put(ova.body, uri, work / "curl-resp.txt")
            m.stop()
        body = (work / "curl-resp.txt").read_text(errors="replace")[:500]
        if status != 200 or sent != ova.body.size:
            raise BenchError(f"OVA upload answered {status} after {sent} of {ova.body.size} bytes: {body}")
        files = {f["name"]: f for f in api.session_files(sid)}
        problems = [f"{n}: {f.get('status')}" for n, f in files.items() if f.get("status") != "READY"]
        problems += [f"{n}: missing" for n in ova.members if n not in files]
        disk = files.get(OVA_DISK, {})
        if disk and disk.get("size") != ova.disk.size:
            problems.append(f"{OVA_DISK}: size {disk.get('size')}, expected {ova.disk.size}")
        if problems:
            raise BenchError(f"OVA session files after the upload: {'; '.join(problems)}: {list(files.values())}")
        val = api.validate(sid)
        if val.get("has_errors") or val.get("missing_files") or val.get("invalid_files"):
            raise BenchError(f"validate of the OVA session reports errors: {val}")
        api.complete(sid)
        got = api.item_sha1(item, OVA_DISK)
        ok = got == f"SHA1:{ova.disk.sha1}"
        return UploadResult(
            size=ova.body.size,
            mbps=ova.body.size / secs / 1e6,
            seconds=secs,
            cpu_per_gib=m.server / (ova.body.size / GiB),
            server_cores=m.server / m.wall,
            other_cores=m.other / m.wall,
            peak_rss=rss.peak,
            idle_rss=idle,
            sha1_ok=ok,
            note="" if ok else f"item {OVA_DISK} has {got}, expected SHA1:{ova.disk.sha1}",
        )
    finally:
        api.delete_item(item)


def bench_ova(cfg: Config, srv: Server, api: Api, lib: str, src: Source, work: Path, rep: Report) -> None:
    """Plain and OVA uploads of the same bytes, interleaved (the order alternates per pair) so that both see the
    same machine; medians of --runs each after one warm-up of each."""
    t = time.perf_counter()
    ova = make_ova(src, work / "bench.ova")
    build_s = time.perf_counter() - t
    try:
        if cfg.warmup:
            upload_once(srv, api, lib, src, work)
            ova_upload_once(srv, api, lib, ova, work)
        plain: list[UploadResult] = []
        packed: list[UploadResult] = []
        for i in range(cfg.runs):
            if i % 2 == 0:
                plain.append(upload_once(srv, api, lib, src, work))
                packed.append(ova_upload_once(srv, api, lib, ova, work))
            else:
                packed.append(ova_upload_once(srv, api, lib, ova, work))
                plain.append(upload_once(srv, api, lib, src, work))
    finally:
        ova.body.path.unlink(missing_ok=True)
    p_mbps, o_mbps = Stat([r.mbps for r in plain]), Stat([r.mbps for r in packed])
    p_cpu, o_cpu = Stat([r.cpu_per_gib for r in plain]), Stat([r.cpu_per_gib for r in packed])
    o_rss = Stat([r.peak_rss / 1e6 for r in packed])
    pairs = [o.mbps / p.mbps for p, o in zip(plain, packed, strict=True)]
    ratio = o_mbps.med / p_mbps.med
    p_ok, o_ok = sum(r.sha1_ok for r in plain), sum(r.sha1_ok for r in packed)
    n = cfg.runs
    size = human(src.size)
    layout = ", ".join(f"{k} ({human(v) if v >= MiB else f'{v} B'})" for k, v in ova.members.items())
    rows = [
        [f"{size} plain file PUT, SHA256 declared, median of {n}", p_mbps.fmt(" MB/s"), "-", "-"],
        [
            f"OVA PUT, {size} disk ({ova.body.size:,} bytes in all), no checksum_info, median of {n}",
            o_mbps.fmt(" MB/s"),
            "-",
            "-",
        ],
        [
            "**OVA / plain rate** (ratio of the medians)",
            f"{ratio:.3f} (per pair: {', '.join(f'{v:.3f}' for v in pairs)})",
            f">= {TARGET_OVA_RATIO:.2f} (OVA within 15% of plain)",
            verdict(ratio >= TARGET_OVA_RATIO),
        ],
        ["server CPU-s per GiB, plain", p_cpu.fmt("", 2), "-", "-"],
        ["server CPU-s per GiB, OVA", o_cpu.fmt("", 2), "-", "-"],
        ["... OVA / plain CPU per GiB", f"{o_cpu.med / p_cpu.med:.3f}", "-", "-"],
        ["peak server RSS during an OVA PUT", o_rss.fmt(" MB"), "-", "-"],
        [
            f"OVA session: every file READY, {OVA_DISK} of {src.size:,} bytes, validate without errors, complete 204",
            f"{n}/{n}",
            "all",
            verdict(True),
        ],
        [
            f"item `{OVA_DISK}` SHA1 (OVA) and plain file SHA1 equal the source's",
            f"OVA {o_ok}/{n}, plain {p_ok}/{n}",
            "all match",
            verdict(o_ok == n and p_ok == n),
        ],
    ]
    detail_rows = []
    for i, (p, o) in enumerate(zip(plain, packed, strict=True), 1):
        notes = "; ".join(r.note for r in (p, o) if r.note)
        detail_rows.append(
            [
                str(i),
                "plain, OVA" if i % 2 == 1 else "OVA, plain",
                f"{p.mbps:.0f}",
                f"{o.mbps:.0f}",
                f"{o.mbps / p.mbps:.3f}",
                f"{p.cpu_per_gib:.2f}",
                f"{o.cpu_per_gib:.2f}",
                f"{p.server_cores:.2f} / {o.server_cores:.2f}",
                f"{p.peak_rss / 1e6:.0f} / {o.peak_rss / 1e6:.0f}",
                f"{p.other_cores:.2f} / {o.other_cores:.2f}",
                "OK" if p.sha1_ok and o.sha1_ok else f"WRONG: {notes}",
            ]
        )
    detail = table(
        [
            "pair",
            "order",
            "plain MB/s",
            "OVA MB/s",
            "OVA/plain",
            "plain CPU-s/GiB",
            "OVA CPU-s/GiB",
            "server cores (plain / OVA)",
            "peak RSS MB (plain / OVA)",
            "other cores (plain / OVA)",
            "SHA1",
        ],
        detail_rows,
    )
    rep.add(
        "## 5. OVA vs plain upload (issue 3)\n\n"
        f"The same {size} of random bytes, once as a plain file (`disk.iso`, SHA256 declared) and once as the disk "
        f"of an OVA `{OVA_NAME}` built with Python `tarfile` (ustar): {layout}; the manifest holds SHA256 digests "
        f"of the descriptor and the disk, no signature (built in {build_s:.1f} s, not timed). Both with "
        "`curl -T` to an update session's upload endpoint, pairs interleaved with alternating order"
        + (", after one warm-up of each" if cfg.warmup else "")
        + ".\n\n"
        + table(["metric", "measured", "target", "verdict"], rows)
        + "\n\nPer pair:\n\n"
        + detail
    )
    if o_ok != n or p_ok != n:
        rep.failed.append("OVA/plain SHA1")


# --------------------------------------------------------------------------------------------------------
# the run


@dataclass
class Report:
    cfg: Config
    sections: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.sections.append(text)
        print(text + "\n", flush=True)

    @contextlib.contextmanager
    def section(self, title: str, srv: Server | None = None) -> Iterator[None]:
        print(f"... {title}", file=sys.stderr, flush=True)
        try:
            yield
        except Exception as e:
            traceback.print_exc()
            msg = f"**ERROR** in {title}: `{type(e).__name__}: {str(e)[:1500]}`"
            if srv is not None and srv.proc is not None and srv.proc.poll() is not None:
                msg += f"\n\nThe server exited ({srv.proc.returncode}); log tail:\n```\n{srv.log()}\n```"
            self.failed.append(title)
            self.add(msg)


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return " ".join((out.stdout or out.stderr).split()[:2])  # "curl 7.88.1", "wrk debian/4.1.0-3"
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "n/a"


def header(cfg: Config, work: Path, srv: Server) -> str:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "src"], capture_output=True, text=True)
    git = rev.stdout.strip() or "no commit"
    if dirty.stdout.strip():
        git += " + uncommitted changes in src/"
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    mode = "**quick** (small sizes: a smoke run, not comparable with the targets)" if cfg.quick else "full"
    return "\n".join(
        [
            f"# contentlib benchmark, {now}",
            "",
            f"- Machine: {os.cpu_count()} CPUs ({cpu}), {mem:.1f} GiB RAM, Linux {platform.release()}; "
            f"Python {platform.python_version()}; {tool_version(['curl', '--version'])}; "
            f"{tool_version(['wrk', '--version'])}.",
            f"- Server: `python -m contentlib serve --http` on {srv.base} (one process), "
            f"data dir in {work} ({fs_of(work)}); git {git}.",
            f"- Mode: {mode}; runs per measurement: {cfg.runs} (median, min-max in brackets). "
            f"Load average at start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}.",
            "- Units: MB/s and GB/s are 10^6 and 10^9 bytes per second; RSS in MB = 10^6 bytes. "
            "'other cores' = CPU used by processes other than the server and this benchmark's clients "
            "(noise from other work on the machine).",
        ]
    )


def bench_limits(cfg: Config, work: Path, rep: Report) -> dict[str, float]:
    sha1 = Stat([hash_rate("sha1", cfg.hash_bytes) for _ in range(cfg.runs)])
    sha256 = Stat([hash_rate("sha256", cfg.hash_bytes) for _ in range(cfg.runs)])
    serial = Stat([1 / (1 / a + 1 / b) for a, b in zip(sha1.values, sha256.values, strict=True)])
    rows = [
        ["SHA-1, 1 core", f"hashlib, {human(cfg.hash_bytes)} of 1 MiB buffers", sha1.fmt(" GB/s", 2, 1e9)],
        [
            "SHA-256, 1 core",
            f"hashlib, {human(cfg.hash_bytes)} of 1 MiB buffers",
            sha256.fmt(" GB/s", 2, 1e9),
        ],
        ["SHA-1 + SHA-256 on one core", "derived: 1/(1/a+1/b)", serial.fmt(" GB/s", 2, 1e9)],
    ]
    out = {"sha1": sha1.med, "sha256": sha256.med}
    try:
        disk = Stat([direct_write_rate(work, cfg.disk_bytes) for _ in range(cfg.runs)])
        how = f"`dd bs=1M oflag=direct conv=fdatasync`, {human(cfg.disk_bytes)} into the data dir's fs"
        rows.append(["disk write, O_DIRECT", how, disk.fmt(" GB/s", 2, 1e9)])
        out["disk"] = disk.med
    except BenchError as e:
        rows.append(["disk write, O_DIRECT", "dd oflag=direct", f"n/a ({e})"])
    loop = Stat([loopback_rate(cfg.loop_bytes) for _ in range(cfg.runs)])
    how = f"Python sockets, sendall/recv_into of 1 MiB, {human(cfg.loop_bytes)}"
    rows.append(["loopback TCP", how, loop.fmt(" GB/s", 2, 1e9)])
    out["loop"] = loop.med
    rep.add("## 1. Bare limits (measured in this run)\n\n" + table(["what", "how", "rate"], rows))
    return out


def bench_upload(
    cfg: Config,
    srv: Server,
    api: Api,
    lib: str,
    src: Source,
    work: Path,
    rep: Report,
    limits: dict[str, float],
) -> None:
    if cfg.warmup:
        upload_once(srv, api, lib, src, work)
    runs = [upload_once(srv, api, lib, src, work) for _ in range(cfg.runs)]
    big: UploadResult | None = None
    big_err = ""
    if cfg.big:
        try:
            big = upload_once(srv, api, lib, repeated_source(src, cfg.big_repeats), work)
        except Exception as e:
            traceback.print_exc()
            big_err = f"ERROR: {type(e).__name__}: {str(e)[:500]}"
            rep.failed.append("big upload")
    mbps = Stat([r.mbps for r in runs])
    cpu = Stat([r.cpu_per_gib for r in runs])
    rss = Stat([r.peak_rss / 1e6 for r in runs])
    ok = sum(r.sha1_ok for r in runs)
    size = human(src.size)
    rows = [
        [
            f"{size} PUT, `curl -T`, SHA256 declared (+SHA1 by the server), median of {cfg.runs}",
            mbps.fmt(" MB/s"),
            f">= {TARGET_UPLOAD_MBPS:.0f} MB/s",
            VCSIM_PUT,
            verdict(mbps.med >= TARGET_UPLOAD_MBPS),
        ],
        [
            "... as a share of the bare limits",
            f"{mbps.med * 1e6 / limits['sha256']:.0%} of SHA-256 1-core rate"
            + (f", {mbps.med * 1e6 / limits['disk']:.0%} of O_DIRECT write" if "disk" in limits else ""),
            "-",
            "-",
            "-",
        ],
        ["server CPU-s per GiB uploaded", cpu.fmt("", 2), "- (research goal <= 1.9)", "-", "-"],
        [f"peak server RSS during a {size} PUT", rss.fmt(" MB"), "-", "-", "-"],
        [
            "item file SHA1 (server-computed) equals the source's",
            f"{ok}/{len(runs)} match",
            "all match",
            "no checks",
            verdict(ok == len(runs)),
        ],
    ]
    big_label = f"{human(src.size * cfg.big_repeats)} PUT (`cat` pipe, Content-Length)"
    if big is not None:
        rows += [
            [
                f"peak server RSS during a {big_label}",
                f"{big.peak_rss / 1e6:.0f} MB (idle before: {big.idle_rss / 1e6:.0f} MB)",
                f"< {TARGET_PEAK_RSS_MB:.0f} MB",
                "-",
                verdict(big.peak_rss / 1e6 < TARGET_PEAK_RSS_MB),
            ],
            [
                "... its rate, SHA1 check",
                f"{big.mbps:.0f} MB/s, SHA1 {'OK' if big.sha1_ok else 'WRONG'}",
                "-",
                "-",
                verdict(big.sha1_ok),
            ],
        ]
    elif cfg.big:
        rows.append([f"peak server RSS during a {big_label}", big_err, f"< {TARGET_PEAK_RSS_MB:.0f} MB", "-", "-"])
    else:
        rows.append(["peak server RSS during a 10 GiB PUT", "skipped (--no-10g)", "< 150 MB", "-", "-"])
    detail_rows = []
    for i, r in enumerate(runs + ([big] if big else []), 1):
        detail_rows.append(
            [
                str(i) if r is not big else "big",
                human(r.size),
                f"{r.mbps:.0f}",
                f"{r.seconds:.2f}",
                f"{r.cpu_per_gib:.2f}",
                f"{r.server_cores:.2f}",
                f"{r.peak_rss / 1e6:.0f} ({r.idle_rss / 1e6:.0f})",
                f"{r.other_cores:.2f}",
                "OK" if r.sha1_ok else f"WRONG: {r.note}",
            ]
        )
    detail = table(
        [
            "run",
            "size",
            "MB/s",
            "s",
            "CPU-s/GiB",
            "server cores",
            "peak RSS MB (idle)",
            "other cores",
            "SHA1",
        ],
        detail_rows,
    )
    rep.add(
        "## 2. Upload (plain HTTP, one connection)\n\n"
        + table(["metric", "measured", "target", "vcsim 0.24.2", "verdict"], rows)
        + ("\n\n(a warm-up upload ran first and is not counted)" if cfg.warmup else "")
        + "\n\nPer run:\n\n"
        + detail
    )
    if ok != len(runs):
        rep.failed.append("upload SHA1")


def bench_api(cfg: Config, srv: Server, api: Api, lib: str, src: Source, work: Path, rep: Report) -> None:
    wrk = ensure_wrk()
    if wrk is None:
        rep.failed.append("wrk missing")
        rep.add("## 3. API: session GET rate\n\nskipped: wrk is not installed and could not be installed")
        return
    sid = api.create_session(api.create_item(lib))
    url = f"{srv.base}{US}/{sid}"
    api.call("GET", url, 200)
    if cfg.warmup:
        run_wrk(wrk, url, api.session_id, 1)
    m = Meter(srv.pid)
    alone = run_wrk(wrk, url, api.session_id, cfg.wrk_secs)
    m.stop()
    alone_cores, alone_other = m.server / m.wall, m.other / m.wall

    bg = BackgroundUploads(srv, api, lib, src, work)
    th = threading.Thread(target=bg.run, daemon=True)
    th.start()
    bg.started.wait(120)
    time.sleep(0.2)  # let the upload get going
    w0 = time.monotonic()
    m = Meter(srv.pid)
    during = run_wrk(wrk, url, api.session_id, cfg.wrk_secs)
    m.stop()
    w1 = time.monotonic()
    bg.stop.set()
    th.join()
    if bg.errors:
        raise BenchError("background upload: " + "; ".join(bg.errors))
    cov = bg.coverage(w0, w1)
    up_rates = [n / (b - a) / 1e6 for a, b, n in bg.intervals]
    wrk_cmd = f"wrk -t1 -c50 -d{cfg.wrk_secs}s --latency"
    rows = [
        [
            f"session GETs/s, idle server (`{wrk_cmd}`)",
            f"{alone.rps:,.0f} req/s (server {alone_cores:.2f} cores, other {alone_other:.2f})",
            f">= {TARGET_GETS:,.0f}",
            VCSIM_GET,
            verdict(alone.rps >= TARGET_GETS),
        ],
        [
            "... latency p50 / p99 / max",
            f"{alone.p50:.2f} / {alone.p99:.2f} / {alone.max:.1f} ms",
            "-",
            "GET 3.3 ms idle (single request)",
            "-",
        ],
        [
            f"session GETs/s during {human(src.size)} uploads",
            f"{during.rps:,.0f} req/s (server {m.server / m.wall:.2f} cores)",
            "-",
            "-",
            "-",
        ],
        [
            "... p99 during the upload",
            f"{during.p99:.2f} ms (p50 {during.p50:.2f}, max {during.max:.1f})",
            f"< {TARGET_P99_MS:.0f} ms",
            VCSIM_STALL,
            verdict(during.p99 < TARGET_P99_MS),
        ],
        [
            "... the uploads in that window",
            f"{len(bg.intervals)} x {human(src.size)}, "
            f"{statistics.median(up_rates) if up_rates else 0:.0f} MB/s median, "
            f"covering {cov:.0%} of the wrk window",
            "-",
            "-",
            "-",
        ],
    ]
    errors = [f"{n}: {r.errors}" for n, r in (("idle", alone), ("during upload", during)) if r.errors]
    if errors:
        rows.append(["wrk errors", "; ".join(errors), "none", "-", verdict(False)])
        rep.failed.append("wrk errors")
    rep.add(
        "## 3. API: `GET /api/content/library/item/update-session/{id}` with the session header\n\n"
        + table(["metric", "measured", "target", "vcsim 0.24.2", "verdict"], rows)
    )


def bench_cycles(cfg: Config, srv: Server, api: Api, lib: str, rep: Report) -> None:
    rows = []
    for procs in (1, 4):
        r = cycles_multi(srv, api, lib, procs, cfg.cycle_secs)
        label = "1 process, 1 keep-alive connection" if procs == 1 else f"{procs} processes, 1 connection each"
        rows.append(
            [
                label,
                f"{r.rate:,.0f} cycles/s ({r.rate * 4:,.0f} req/s)",
                f"{r.server_ms_per_cycle:.2f} ms ({r.server_cores:.2f} cores)",
                " / ".join(f"{t:.1f}" for t in r.step_ms),
                f"{r.cycles} in {cfg.cycle_secs:g} s",
                f"{r.other_cores:.2f}",
            ]
        )
    rep.add(
        "## 4. Update-session cycle: create -> add (SHA1 declared) -> PUT 1 KiB -> complete "
        "(Python requests)\n\n"
        + table(
            [
                "clients",
                "rate",
                "server CPU per cycle",
                "latency ms: " + " / ".join(STEPS),
                "cycles",
                "other cores",
            ],
            rows,
        )
        + f"\n\nTarget: reported only. vcsim 0.24.2 reference: {VCSIM_CYCLE}."
    )


# --------------------------------------------------------------------------------------------------------
# 6. the same GET over REST and over vAPI JSON-RPC (issue 4)

TARGET_JSONRPC_COST = 2.0  # issue 4: JSON-RPC decoding costs less than 2x the REST path


def jsonrpc_get_body(session_id: str, update_session_id: str) -> str:
    """What the official SDK sends for UpdateSession.get (REFERENCE.md §7.3)."""
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "method": "invoke",
            "id": "1",
            "params": {
                "serviceId": "com.vmware.content.library.item.update_session",
                "operationId": "get",
                "input": {"STRUCTURE": {"operation-input": {"update_session_id": update_session_id}}},
                "ctx": {
                    "appCtx": {"opId": "bench"},
                    "securityCtx": {"schemeId": "com.vmware.vapi.std.security.session_id", "sessionId": session_id},
                },
            },
        }
    )


def bench_jsonrpc(cfg: Config, srv: Server, api: Api, lib: str, work: Path, rep: Report) -> None:
    wrk = ensure_wrk()
    if wrk is None:
        rep.add("## 6. REST vs JSON-RPC\n\nskipped: wrk is not installed and could not be installed")
        return
    sid = api.create_session(api.create_item(lib))
    rest_url = f"{srv.base}{US}/{sid}"
    body = jsonrpc_get_body(api.session_id, sid)
    check = requests.post(f"{srv.base}/api", data=body, headers={"Content-Type": "application/json"}, timeout=30)
    if check.status_code != 200 or "output" not in check.json().get("result", {}):
        raise BenchError(f"JSON-RPC get answered {check.status_code}: {check.text[:300]}")
    script = work / "jsonrpc.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = {json.dumps(body)}\n'
    )
    results: dict[str, list[tuple[WrkResult, float]]] = {"REST": [], "JSON-RPC": []}
    for _ in range(cfg.runs):  # interleaved, so both see the same machine
        for name, url, lua in (("REST", rest_url, None), ("JSON-RPC", f"{srv.base}/api", script)):
            m = Meter(srv.pid)
            r = run_wrk(wrk, url, api.session_id, cfg.wrk_secs, script=lua)
            m.stop()
            if r.errors:
                raise BenchError(f"{name}: {r.errors}")
            results[name].append((r, m.server / max(r.requests, 1)))
    rows = []
    cost: dict[str, float] = {}
    for name, runs in results.items():
        rps = Stat([r.rps for r, _ in runs])
        cpu = Stat([c * 1e6 for _, c in runs])
        cost[name] = cpu.med
        p99 = statistics.median(r.p99 for r, _ in runs)
        rows.append([name, rps.fmt(" req/s"), cpu.fmt(" us"), f"{p99:.2f} ms"])
    ratio = cost["JSON-RPC"] / cost["REST"]
    rep.add(
        "## 6. The same GET over REST and over vAPI JSON-RPC (issue 4)\n\n"
        f"`GET {US}/{{id}}` against `POST /api` invoking `com.vmware.content.library.item.update_session.get` "
        f"(the SDK's envelope), `wrk -t1 -c50 -d{cfg.wrk_secs}s`, {cfg.runs} interleaved runs each.\n\n"
        + table(["protocol", "rate", "server CPU per request", "p99"], rows)
        + "\n\n"
        + table(
            ["metric", "measured", "target", "verdict"],
            [
                [
                    "JSON-RPC / REST server CPU per request",
                    f"{ratio:.2f}x",
                    f"< {TARGET_JSONRPC_COST:.0f}x",
                    verdict(ratio < TARGET_JSONRPC_COST),
                ]
            ],
        )
    )
    if ratio >= TARGET_JSONRPC_COST:
        rep.failed.append("JSON-RPC cost")


# --------------------------------------------------------------------------------------------------------
# 7. PostgreSQL + S3 next to SQLite + disk (issue 5)

SCRIPTS = REPO / "scripts"
UPLOAD_KINDS = ("disk", "s3", "upload_file", "put_object")
STOCK_KINDS = ("upload_file", "put_object")


@dataclass
class Services:
    """What section 7 started itself (and stops again afterwards), like scripts/with-services.sh."""

    started_pg: bool = False
    started_s3: bool = False
    pg_version: str = "?"
    s3_server: str = "?"


def run_script(*args: str) -> None:
    cmd = ["bash", str(SCRIPTS / args[0]), *args[1:]]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"scripts/{' '.join(args)} did not finish in {e.timeout:.0f} s") from e
    if r.returncode != 0:
        tail = (r.stderr + r.stdout).strip()[-2000:]
        raise BenchError(f"scripts/{' '.join(args)} failed with exit status {r.returncode}: {tail}")


def pg_isready() -> bool:
    cmd = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]
    with contextlib.suppress(OSError):
        return subprocess.run(cmd, capture_output=True).returncode == 0
    return False


def s3_answers(endpoint: str) -> bool:
    try:
        requests.get(endpoint + "/", timeout=2)
        return True
    except requests.RequestException:
        return False


def pg_admin(server_url: str, sql: str) -> str:
    """Run one statement on the `postgres` database of the server; the first column of the first row, if any."""
    import asyncio

    import asyncpg

    async def run() -> str:
        conn = await asyncpg.connect(f"{server_url}/postgres", timeout=15)
        try:
            return str(await conn.fetchval(sql))
        finally:
            await conn.close()

    return asyncio.run(run())


def s3_client(endpoint: str) -> Any:
    """A boto3 S3 client with the stock configuration (path-style addressing: the endpoint is an IP address)."""
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_ENV["AWS_DEFAULT_REGION"],
        config=BotoConfig(s3={"addressing_style": "path"}),
    )


def s3_probe(s3: Any, endpoint: str) -> None:
    """The bucket exists (made if missing) and a small object can be written, read back and deleted."""
    from botocore.exceptions import BotoCoreError, ClientError

    key = f"probe-{uuid.uuid4().hex[:12]}"
    data = os.urandom(4 * KiB)
    try:
        try:
            s3.head_bucket(Bucket=S3_BUCKET)
        except ClientError:
            s3.create_bucket(Bucket=S3_BUCKET)
        s3.put_object(Bucket=S3_BUCKET, Key=key, Body=data)
        back = s3.get_object(Bucket=S3_BUCKET, Key=key)["Body"].read()
        s3.delete_object(Bucket=S3_BUCKET, Key=key)
    except (BotoCoreError, ClientError) as e:
        raise BenchError(f"the S3 server at {endpoint} answers but does not work: {type(e).__name__}: {e}") from e
    if back != data:
        raise BenchError(f"the S3 server at {endpoint} returned other bytes than were written")


def ensure_services(cfg: Config, svc: Services) -> Any:
    """PostgreSQL and the S3 server are up and work (the local ones are started with scripts/ensure-*.sh when
    they are not running); the S3 client. Raises BenchError when either cannot be had."""
    if cfg.pg_url == DEFAULT_PG:
        svc.started_pg = not pg_isready()
        run_script("ensure-postgres.sh")
    if cfg.s3_endpoint == DEFAULT_S3:
        svc.started_s3 = not s3_answers(cfg.s3_endpoint)
        run_script("ensure-seaweedfs.sh")
    try:
        svc.pg_version = pg_admin(cfg.pg_url, "SHOW server_version").split()[0]
    except Exception as e:
        raise BenchError(f"PostgreSQL at {cfg.pg_url} does not work: {type(e).__name__}: {e}") from e
    if not s3_answers(cfg.s3_endpoint):
        raise BenchError(f"nothing answers at the S3 endpoint {cfg.s3_endpoint}")
    weed = shutil.which("weed") or str(REPO / ".venv" / "bin" / "weed")
    if pids_named("weed") and os.access(weed, os.X_OK):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):  # "version 8000GB 4.48 pypi linux amd64"
            words = subprocess.run([weed, "version"], capture_output=True, text=True, timeout=10).stdout.split()
            svc.s3_server = "SeaweedFS " + next((w for w in words if re.fullmatch(r"\d+(\.\d+)+", w)), "?")
    else:
        svc.s3_server = requests.get(cfg.s3_endpoint + "/", timeout=5).headers.get("Server", "S3 server")
    s3 = s3_client(cfg.s3_endpoint)
    s3_probe(s3, cfg.s3_endpoint)
    return s3


def stop_services(svc: Services) -> list[str]:
    notes = []
    if svc.started_s3:
        with contextlib.suppress(BenchError):
            run_script("ensure-seaweedfs.sh", "stop")
            notes.append("SeaweedFS stopped again (this run started it)")
    if svc.started_pg:
        stop = 'pg_ctlcluster "$(ls /etc/postgresql | sort -V | tail -1)" main stop'
        if subprocess.run(["bash", "-c", stop], capture_output=True).returncode == 0:
            notes.append("PostgreSQL stopped again (this run started it)")
    return notes


def empty_prefix(s3: Any, prefix: str) -> int:
    """Delete every object and abort every multipart upload under `prefix/` in the bench bucket; objects deleted.
    Raises BenchError when something is left."""
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=prefix + "/"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=S3_BUCKET, Delete={"Objects": keys, "Quiet": True})
            deleted += len(keys)
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=S3_BUCKET, Prefix=prefix + "/"):
        for up in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=S3_BUCKET, Key=up["Key"], UploadId=up["UploadId"])
    left = s3.list_objects_v2(Bucket=S3_BUCKET, Prefix=prefix + "/").get("KeyCount", 0)
    if left:
        raise BenchError(f"{left} objects are left under s3://{S3_BUCKET}/{prefix}/")
    return deleted


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


def pg_backends(db_name: str) -> list[int]:
    """PostgreSQL backends serving `db_name` (their command line names the database)."""
    out = []
    for pid in pids_named("postgres"):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if f" {db_name} " in argv:
                out.append(pid)
    return out


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
        with rep.section("bare limits"):
            limits = bench_limits(cfg, work, rep)
        api = Api(srv.base, srv.password)
        lib = api.create_library()
        print(f"... making a {human(cfg.upload_bytes)} random source file", file=sys.stderr, flush=True)
        src = make_source(work / "source.bin", cfg.upload_bytes)
        with rep.section("upload", srv):
            bench_upload(cfg, srv, api, lib, src, work, rep, limits or {"sha256": float("nan")})
        with rep.section("API GET rate", srv):
            bench_api(cfg, srv, api, lib, src, work, rep)
        with rep.section("cycle rate", srv):
            bench_cycles(cfg, srv, api, lib, rep)
        if cfg.ova:
            with rep.section("OVA vs plain upload", srv):
                bench_ova(cfg, srv, api, lib, src, work, rep)
        with rep.section("REST vs JSON-RPC", srv):
            bench_jsonrpc(cfg, srv, api, lib, work, rep)
        if cfg.scaleout:
            with rep.section("PostgreSQL + S3", srv):
                bench_scaleout(cfg, srv, api, lib, src, work, rep)
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
