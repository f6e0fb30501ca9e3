"""Section 6: the same GET over REST and over vAPI JSON-RPC (issue 4)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import requests

from bench.api_rate import WrkResult, ensure_wrk, run_wrk
from bench.common import BenchError, Config, Meter, Report, Stat, table, verdict
from bench.server import US, Api, Server

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
