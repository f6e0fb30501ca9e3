"""Section 3: the API GET rate with wrk, idle and during back-to-back 1 GiB uploads; the wrk runner."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import BenchError, Config, Meter, Report, human, table, verdict
from bench.server import SESSION_HEADER, US, Api, Server
from bench.upload import Source, curl_put

# Targets (issue 2) and the vcsim 0.24.2 reference figures (../shared/research/vcsim-peer.md).
TARGET_GETS = 10_000.0
TARGET_P99_MS = 20.0
VCSIM_GET = "~39-42k GET/s (wrk -t2 -c8, TLS)"
VCSIM_STALL = "GET stalls 4.1 s behind a 1 GiB PUT (global lock)"

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
    output: str = ""  # what wrk printed (a script's done() adds its own lines)


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


def run_wrk(
    wrk: str,
    url: str,
    session_id: str,
    secs: int,
    conns: int = 50,
    script: Path | None = None,
    threads: int = 1,
) -> WrkResult:
    cmd = [wrk, f"-t{threads}", f"-c{conns}", f"-d{secs}s", "--latency", "--timeout", "10s"]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd += ["-H", f"{SESSION_HEADER}: {session_id}", url]
    r = subprocess.run(cmd, capture_output=True, text=True)
    out = r.stdout
    if r.returncode != 0 or "Requests/sec" not in out:
        raise BenchError(f"wrk failed ({r.returncode}): {out} {r.stderr}")
    # wrk pads a value with one letter of unit ("1.02s") with a trailing space
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", out, re.M))
    if "50" not in lat or "99" not in lat:
        raise BenchError(f"wrk printed no latency distribution: {out} {r.stderr}")
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
        output=out,
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


@dataclass
class Loaded:
    """A measurement taken while 1 GiB uploads ran back to back: its wrk result, the server's CPU over it, the
    uploads, and the share of the wrk window they covered."""

    wrk: WrkResult
    meter: Meter
    uploads: BackgroundUploads
    coverage: float

    @property
    def upload_rates(self) -> list[float]:
        """MB/s of each upload."""
        return [n / (b - a) / 1e6 for a, b, n in self.uploads.intervals]


def during_uploads(
    srv: Server, api: Api, lib: str, src: Source, work: Path, measure: Callable[[], WrkResult]
) -> Loaded:
    """Run `measure` (a wrk run) while the source is uploaded back to back into `lib` (one session each)."""
    bg = BackgroundUploads(srv, api, lib, src, work)
    th = threading.Thread(target=bg.run, daemon=True)
    th.start()
    bg.started.wait(120)
    time.sleep(0.2)  # let the upload get going
    w0 = time.monotonic()
    m = Meter(srv.pid)
    result = measure()
    m.stop()
    w1 = time.monotonic()
    bg.stop.set()
    th.join()
    if bg.errors:
        raise BenchError("background upload: " + "; ".join(bg.errors))
    return Loaded(result, m, bg, bg.coverage(w0, w1))


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

    loaded = during_uploads(srv, api, lib, src, work, lambda: run_wrk(wrk, url, api.session_id, cfg.wrk_secs))
    during, m, bg, cov = loaded.wrk, loaded.meter, loaded.uploads, loaded.coverage
    up_rates = loaded.upload_rates
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
