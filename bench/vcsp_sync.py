"""Section: a subscribed library syncing from another contentlib (issue 12 point 4), against `curl` of the same
files in the same run.

The main server publishes a library of 4 ISO items (1 GiB in all; `--quick`: the upload size), a second server
subscribes to it and syncs; the time runs from the subscribed library's create to every item cached. The reference
fetches the same feed files with `curl` into files on the same filesystem, one after the other and all at once
(the subscriber fetches `maximum_concurrent_item_syncs`, 5, items at a time). A second sync with nothing changed
shows what an incremental sync costs (lib.json only).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

from bench.common import BenchError, Config, Report, RssSampler, human, proc_tree, rss_bytes, table, verdict
from bench.server import Api, Server
from bench.upload import make_source

TARGET = 0.8  # sync MB/s at least 0.8x curl's (issue 12 point 4)
ITEMS = 4
MiB = 1024 * 1024


def _publish(api: Api, files: list[Path]) -> tuple[str, list[str]]:
    spec = {
        "name": f"bench-pub-{uuid.uuid4().hex[:8]}",
        "type": "LOCAL",
        "storage_backings": [{"type": "OTHER", "storage_uri": "file:///tmp/contentlib-bench"}],
        "publish_info": {"published": True, "authentication_method": "NONE"},
    }
    lib = str(api.call("POST", "/api/content/local-library", 201, json=spec))
    items = []
    for path in files:
        item = api.create_item(lib)
        sid = api.create_session(item)
        uri = api.add_file(sid, path.name, path.stat().st_size)
        with open(path, "rb") as f:
            api.call("PUT", uri, 200, data=f, timeout=600)
        api.complete(sid)
        items.append(item)
    url = api.call("GET", f"/api/content/local-library/{lib}", 200)["publish_info"]["publish_url"]
    return str(url), items


def _curl(urls: list[str], out: Path, parallel: bool) -> float:
    out.mkdir(parents=True, exist_ok=True)
    args = ["curl", "-sS", "--no-progress-meter", "--fail"]
    if parallel:
        args += ["--parallel", "--parallel-max", "5"]
    for i, url in enumerate(urls):
        args += ["-o", str(out / f"f{i}"), url]
    started = time.monotonic()
    subprocess.run(args, check=True)
    for i in range(len(urls)):
        with open(out / f"f{i}", "rb+") as f:  # durable, as the subscriber's blobs are
            os.fsync(f.fileno())
    elapsed = time.monotonic() - started
    for i in range(len(urls)):
        (out / f"f{i}").unlink()
    return elapsed


def _sync(sub_api: Api, url: str, sub_srv: Server) -> tuple[str, float, int, int]:
    spec = {
        "name": f"bench-sub-{uuid.uuid4().hex[:8]}",
        "type": "SUBSCRIBED",
        "storage_backings": [{"type": "OTHER", "storage_uri": "file:///tmp/contentlib-bench"}],
        "subscription_info": {
            "subscription_url": url,
            "authentication_method": "NONE",
            "on_demand": False,
            "automatic_sync_enabled": False,
        },
    }
    before = sum(rss_bytes(p) for p in proc_tree(sub_srv.pid))
    with RssSampler(sub_srv.pid) as rss:
        started = time.monotonic()
        lib = str(sub_api.call("POST", "/api/content/subscribed-library", 201, json=spec))
        while True:
            ids = sub_api.call("GET", f"/api/content/library/item?library_id={lib}", 200)
            if len(ids) == ITEMS and all(
                sub_api.call("GET", f"/api/content/library/item/{i}", 200)["cached"] for i in ids
            ):
                break
            if time.monotonic() - started > 1800:
                raise BenchError("the sync did not finish in 30 minutes")
            time.sleep(0.02)
        elapsed = time.monotonic() - started
    return lib, elapsed, before, rss.peak


def bench_vcsp_sync(cfg: Config, srv: Server, api: Api, work: Path, rep: Report) -> None:
    total = cfg.upload_bytes
    per_item = max(MiB, total // ITEMS // MiB * MiB)
    files = [make_source(work / f"sync-{i}.iso", per_item).path for i in range(ITEMS)]
    url, items = _publish(api, files)
    base = url.rsplit("/", 1)[0]
    feed = [f"{base}/{item}/{path.name}" for item, path in zip(items, files, strict=True)]
    for path in files:
        path.unlink()
    size = per_item * ITEMS
    sub_srv = Server(work / "subscriber")
    sub_srv.start()
    try:
        sub_api = Api(sub_srv.base, sub_srv.password)
        rows = []
        sync_rates, curl_rates, par_rates = [], [], []
        for _ in range(cfg.runs):
            serial = _curl(feed, work / "curl", parallel=False)
            together = _curl(feed, work / "curl", parallel=True)
            lib, took, idle, peak = _sync(sub_api, url, sub_srv)
            started = time.monotonic()
            before = sub_api.call("GET", f"/api/content/subscribed-library/{lib}", 200).get("last_sync_time")
            sub_api.call("POST", f"/api/content/subscribed-library/{lib}?action=sync", 204)
            while sub_api.call("GET", f"/api/content/subscribed-library/{lib}", 200).get("last_sync_time") == before:
                time.sleep(0.005)
            again = time.monotonic() - started
            sub_api.call("DELETE", f"/api/content/subscribed-library/{lib}", 204)
            sync_rates.append(size / took / MiB)
            curl_rates.append(size / serial / MiB)
            par_rates.append(size / together / MiB)
            rows.append(
                [
                    f"{size / took / MiB:.0f} MB/s ({took:.1f} s)",
                    f"{size / serial / MiB:.0f} MB/s",
                    f"{size / together / MiB:.0f} MB/s",
                    f"{again * 1000:.0f} ms",
                    f"{human(idle)} → {human(peak)}",
                ]
            )
    finally:
        sub_srv.stop()
    best = max(sync_rates) / max(max(curl_rates), max(par_rates))
    rep.add(
        f"## Subscribed library sync from another contentlib ({ITEMS} items, {human(size)} in all)\n\n"
        + table(
            [
                "sync (create → all cached)",
                "curl, one by one",
                "curl --parallel",
                "sync again, unchanged",
                "subscriber RSS (all processes): before → peak",
            ],
            rows,
        )
        + f"\n\nBest sync vs best curl: **{best:.2f}x** (target ≥ {TARGET}x): {verdict(best >= TARGET)}. "
        "curl writes the same files onto the same filesystem and fsyncs them; the sync streams each file into the "
        "subscriber's blob store through an update session (SHA-1 of every byte, fsync, one metadata transaction per "
        "item)."
    )
