"""Section 2: 1 GiB (and 10 GiB) uploads with `curl -T` to an update session's upload endpoint."""

from __future__ import annotations

import hashlib
import os
import subprocess
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    BenchError,
    Config,
    CpuMeter,
    GiB,
    Meter,
    MiB,
    PidSource,
    Report,
    RssSampler,
    Stat,
    human,
    rss_bytes,
    table,
    verdict,
)
from bench.server import Api, Server

# Targets (issue 2, "Performance") and reference figures for the peer vcsim 0.24.2 on this machine
# (../shared/research/vcsim-peer.md).
TARGET_UPLOAD_MBPS = 800.0
TARGET_PEAK_RSS_MB = 150.0
VCSIM_PUT = "~0.7 GB/s (curl PUT: 705 MB/s plain, 711 TLS; checks nothing)"


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
