"""Section 1: bare limits of the machine (hashlib SHA-1/SHA-256, O_DIRECT disk write, loopback TCP)."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

from bench.common import BenchError, Config, MiB, Report, Stat, human, table


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
