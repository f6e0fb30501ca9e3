#!/usr/bin/env python3
"""What the ops middleware adds to a request (issue 13 point 3): request id, context variable, metrics (with a
metrics directory, as `serve` runs it), the X-Request-Id header.

    .venv/bin/python -m bench.ops_overhead [--requests N]

A handler that returns a prepared-in-advance 200 is called N times on one aiohttp request built in memory, bare and
through the middleware, interleaved in rounds; the difference of the medians per
call is the middleware's cost. `--log-format json` adds one access line per request: measured too, into /dev/null.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

os.environ["CONTENTLIB_METRICS_DIR"] = tempfile.mkdtemp(prefix="contentlib-bench-metrics-")

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from contentlib import logs
from contentlib.protocols.ops import OpsApi

ROUNDS = 7


async def _measure(requests: int) -> dict[str, float]:
    body = web.Response(body=b'{"id":"x"}', headers={"Content-Type": "application/json"})

    async def handler(request: web.Request) -> web.StreamResponse:
        request[logs.OPERATION] = "com.vmware.content.library.item.update_session.get"
        return body

    request = make_mocked_request("GET", "/api/content/library/item/update-session/x")
    plain = OpsApi(None, None, None, log_requests=False)  # type: ignore[arg-type]
    logging_ = OpsApi(None, None, None, log_requests=True)  # type: ignore[arg-type]

    async def bare() -> None:
        for _ in range(requests):
            await handler(request)

    async def through(ops: OpsApi) -> None:
        for _ in range(requests):
            await ops.middleware(request, handler)

    async def timed(run: Any) -> float:
        start = time.perf_counter()
        await run
        return (time.perf_counter() - start) / requests * 1e6

    results: dict[str, list[float]] = {"bare": [], "middleware": [], "middleware + JSON access line": []}
    logs.configure("json")
    logging.getLogger().handlers[0].stream = open(os.devnull, "w")  # type: ignore[attr-defined]  # noqa: SIM115
    for _ in range(ROUNDS):
        results["bare"].append(await timed(bare()))
        results["middleware"].append(await timed(through(plain)))
        results["middleware + JSON access line"].append(await timed(through(logging_)))
    return {name: statistics.median(values) for name, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    medians = asyncio.run(_measure(args.requests))
    base = medians["bare"]
    print(f"{'':34} µs/request  added")
    for name, value in medians.items():
        print(f"{name:34} {value:10.2f} {value - base:6.2f}")


if __name__ == "__main__":
    main()
