"""Section 4: create -> add -> PUT 1 KiB -> complete cycles with Python requests, 1 and 4 processes."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import requests

from bench.common import BenchError, Config, KiB, Meter, Report, table
from bench.server import SESSION_HEADER, US, Api, Server

# The vcsim 0.24.2 reference (../shared/research/vcsim-peer.md); this section has no target.
VCSIM_CYCLE = (
    "~570 cycles/s create+get+complete with a Python client; "
    "275 upload-cycles/s (create+add+PUT 1 KiB+complete) plain HTTP, 263-324 TLS"
)
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
