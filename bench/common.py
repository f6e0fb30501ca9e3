"""Shared by the benchmark sections: configuration, /proc helpers and CPU/RSS meters, statistics, table
formatting, the Report and its header."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.server import Server


KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432"  # scripts/ensure-postgres.sh
DEFAULT_S3 = "http://127.0.0.1:8333"  # scripts/ensure-seaweedfs.sh (credentials ci/cisecret)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------------------------------------
# configuration


# The sections in the order they run: `--only` takes these names or their numbers (1-11).
SECTIONS = (
    "limits", "upload", "api", "cycles", "ova", "jsonrpc", "scaleout", "govc", "peer", "vcspsync", "vcspfeed",
)  # fmt: skip


@dataclass
class Config:
    runs: int
    quick: bool
    big: bool
    ova: bool
    scaleout: bool
    govc: bool
    peer: bool
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
    only: frozenset[str] = frozenset()  # the sections `--only` names; empty: all of them
    vcspfeed: bool = True

    def wants(self, section: str) -> bool:
        """Whether a section runs: named by `--only` (or no `--only`), and not switched off by its `--no-...`."""
        off = {
            "ova": not self.ova,
            "scaleout": not self.scaleout,
            "govc": not self.govc,
            "peer": not self.peer,
            "vcspfeed": not self.vcspfeed,
        }
        return (not self.only or section in self.only) and not off.get(section, False)


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
# the report


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
            f"- Server: `python -m contentlib serve --http` on {srv.base} (the default --workers: a supervisor and "
            f"{os.cpu_count()} workers; RSS figures sum them), "
            f"data dir in {work} ({fs_of(work)}); git {git}.",
            f"- Mode: {mode}; runs per measurement: {cfg.runs} (median, min-max in brackets). "
            f"Load average at start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}.",
            "- Units: MB/s and GB/s are 10^6 and 10^9 bytes per second; RSS in MB = 10^6 bytes. "
            "'other cores' = CPU used by processes other than the server and this benchmark's clients "
            "(noise from other work on the machine).",
        ]
    )
