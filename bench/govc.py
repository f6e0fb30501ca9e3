"""Section 8: `govc library.import` of 1 GiB against contentlib and against vcsim 0.24.2 in the same run (issue 10
point 5).

govc and vcsim come from scripts/build-govmomi.sh (the build the tests use); when they cannot be built the section
fails, it is never skipped. Both servers are spoken to over TLS (govc's default, GOVC_INSECURE=1), each with its
own fresh GOVMOMI_HOME. Two kinds of import: an ISO (the 1 GiB random source file) and an OVF package whose disk
is that file, with a .mf manifest (govc declares each file's SHA256 from it in `checksum_info`; contentlib checks
it, vcsim ignores it). After a warm-up of each, `--runs` rounds of one import per server and kind, the order
rotating from round to round. Every import is exported again with `govc library.export` and compared with its
source (SHA-256 of every file): a run whose bytes differ is a failure, not a number.
"""

from __future__ import annotations

import hashlib
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from bench.common import REPO, BenchError, Config, GiB, Meter, Report, RssSampler, Stat, human, table, verdict
from bench.ova import OVA_DISK, ovf_descriptor
from bench.server import ADMIN_USER, Server, free_port
from bench.upload import Source

GOVMOMI_VERSION = "0.24.2"
BUILD_SCRIPT = REPO / "scripts" / "build-govmomi.sh"
# Issue 10 point 5: govc imports at least as fast into contentlib as into vcsim 0.24.2 (ratio of the medians), and
# the vcsim figure measured earlier on this machine (../shared/research/vcsim-peer.md).
TARGET_GOVC_RATIO = 1.0
VCSIM_GOVC = "652 MB/s median, 373-1176 MB/s (13 runs of a 1 GiB ISO over TLS, ../shared/research/vcsim-peer.md)"
KINDS = ("iso", "ovf")
ISO_NAME = "disk.iso"
OVF_DESCRIPTOR = "x.ovf"
OVF_MANIFEST = "x.mf"
CONTENTLIB = "contentlib"
VCSIM = "vcsim"
GOVC_TIMEOUT = 900.0  # seconds for one govc command (a 1 GiB import or export)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# --------------------------------------------------------------------------------------------------------
# govc, vcsim and what is imported


@dataclass
class Govmomi:
    bindir: Path
    info: str  # first line of the build's BUILDINFO
    version: str  # `govc version`

    @property
    def govc(self) -> Path:
        return self.bindir / "govc"

    @property
    def vcsim(self) -> Path:
        return self.bindir / "vcsim"


def govc_message(output: str) -> str:
    """The last lines govc printed, without its progress lines' carriage returns and terminal escapes."""
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", _ANSI.sub("", output)) if ln.strip()]
    return " / ".join(lines[-3:]) or "(no output)"


def build_govmomi() -> Govmomi:
    """govc and vcsim 0.24.2 from scripts/build-govmomi.sh (built from Debian's source package on first use, then
    cached). Raises BenchError when they cannot be had."""
    print(f"... govc and vcsim {GOVMOMI_VERSION}: bash scripts/build-govmomi.sh", file=sys.stderr, flush=True)
    try:
        r = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=3600, cwd=REPO)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"scripts/build-govmomi.sh did not finish in {e.timeout:.0f} s") from e
    out = r.stdout.strip().splitlines()
    if r.returncode != 0 or not out:
        tail = r.stderr.strip()[-2000:]
        raise BenchError(
            f"scripts/build-govmomi.sh failed with exit status {r.returncode}, so there is no govc and vcsim "
            f"{GOVMOMI_VERSION} to measure with: {tail}"
        )
    bindir = Path(out[-1])
    for tool in ("govc", "vcsim"):
        if not os.access(bindir / tool, os.X_OK):
            raise BenchError(f"scripts/build-govmomi.sh printed {bindir}, but {bindir / tool} is not executable")
    buildinfo = bindir.parent / "BUILDINFO"
    info = buildinfo.read_text().splitlines()[0] if buildinfo.exists() else f"govmomi {GOVMOMI_VERSION}"
    version = subprocess.run([str(bindir / "govc"), "version"], capture_output=True, text=True, timeout=30)
    return Govmomi(bindir, info, version.stdout.strip() or "?")


@dataclass
class Payload:
    kind: str
    path: Path  # what `govc library.import` is given
    files: dict[str, str]  # file name -> SHA-256 of what the item must hold afterwards (the .mf is not uploaded)
    size: int  # bytes govc uploads


def _link(src: Path, dest: Path) -> None:
    """dest names the same bytes as src: a hard link (same file system), else a copy."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def make_payloads(src: Source, work: Path) -> dict[str, Payload]:
    """`iso/disk.iso` = the source; `ovf/x.ovf` (the OVF envelope of section 5, naming `disk.vmdk` with its size),
    `ovf/x.mf` (SHA256 of the descriptor and the disk) and `ovf/disk.vmdk` = the source."""
    if src.repeats != 1:
        raise BenchError("the govc payloads are made from a plain source file")
    iso, ovf = work / "iso", work / "ovf"
    iso.mkdir(parents=True)
    ovf.mkdir(parents=True)
    _link(src.path, iso / ISO_NAME)
    desc = ovf_descriptor(src.size)
    desc_sha = hashlib.sha256(desc).hexdigest()
    (ovf / OVF_DESCRIPTOR).write_bytes(desc)
    (ovf / OVF_MANIFEST).write_text(f"SHA256({OVF_DESCRIPTOR})= {desc_sha}\nSHA256({OVA_DISK})= {src.sha256}\n")
    _link(src.path, ovf / OVA_DISK)
    return {
        "iso": Payload("iso", iso / ISO_NAME, {ISO_NAME: src.sha256}, src.size),
        "ovf": Payload(
            "ovf", ovf / OVF_DESCRIPTOR, {OVF_DESCRIPTOR: desc_sha, OVA_DISK: src.sha256}, src.size + len(desc)
        ),
    }


# --------------------------------------------------------------------------------------------------------
# the two servers, as govc sees them


class Vcsim:
    """`vcsim -l 127.0.0.1:PORT` (TLS, or plain HTTP with `tls=False`), with TMPDIR in the work dir: its datastore
    LocalDS_0 (a temp dir) is on the same file system as contentlib's data dir, and goes away with the work dir."""

    def __init__(self, binary: Path, workdir: Path, tls: bool = True) -> None:
        self.binary = binary
        self.tls = tls  # False: plain HTTP (`-tls=false`)
        self.tmp = workdir / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "vcsim.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        env = {**os.environ, "TMPDIR": str(self.tmp)}
        cmd = [str(self.binary), "-l", f"127.0.0.1:{self.port}", *([] if self.tls else ["-tls=false"])]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )
        # vcsim prints `export GOVC_URL=https://user:pass@127.0.0.1:PORT/sdk ...` once it listens; the port check
        # makes sure that what answers is this vcsim, not something else that took the port meanwhile.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"vcsim exited with {self.proc.returncode}: {self.log()}")
            if f"127.0.0.1:{self.port}/sdk" in self.log():
                with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                    return
            time.sleep(0.05)
        raise BenchError(f"vcsim did not start listening in {timeout:.0f} s: {self.log()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


@dataclass
class Peer:
    """One server as govc talks to it: GOVC_URL, its own GOVMOMI_HOME, the process whose CPU and RSS are read."""

    name: str
    govc: Path
    url: str
    home: Path
    pid: int
    library: str = ""
    error: str = ""  # why this server's side stopped (setup or a run failed); no more runs then

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOVC_")}
        env.update(GOVC_URL=self.url, GOVC_INSECURE="1", GOVMOMI_HOME=str(self.home))
        return env

    def run(self, *args: str, timeout: float = GOVC_TIMEOUT) -> str:
        cmd = [str(self.govc), *args]
        try:
            r = subprocess.run(
                cmd, env=self.env(), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired as e:
            raise BenchError(f"`govc {' '.join(args)}` against {self.name} did not finish in {timeout:.0f} s") from e
        if r.returncode != 0:
            msg = govc_message(r.stderr + r.stdout).replace(str(self.govc), "govc")
            raise BenchError(f"`govc {' '.join(args)}` against {self.name} failed (exit {r.returncode}): {msg}")
        return r.stdout


def new_home(workdir: Path) -> Path:
    home = workdir / "govmomi-home"
    home.mkdir(parents=True)
    return home


# --------------------------------------------------------------------------------------------------------
# one import


@dataclass
class GovcRun:
    peer: str
    kind: str
    tag: str
    size: int
    seconds: float = 0.0
    sync_seconds: float = 0.0  # `sync` right after the import: what it takes to have the bytes on disk
    cpu: float = 0.0  # server CPU-s
    govc_cpu: float = 0.0
    server_cores: float = 0.0
    other_cores: float = 0.0
    peak_rss: int = 0
    ok: bool = False
    note: str = ""

    @property
    def mbps(self) -> float:
        return self.size / self.seconds / 1e6 if self.seconds else 0.0

    @property
    def durable_mbps(self) -> float:
        """The rate counting the time until the imported bytes are on disk (contentlib fsyncs before it answers;
        vcsim leaves them in the page cache)."""
        total = self.seconds + self.sync_seconds
        return self.size / total / 1e6 if total else 0.0

    @property
    def cpu_per_gib(self) -> float:
        return self.cpu / (self.size / GiB)

    @property
    def govc_cpu_per_gib(self) -> float:
        return self.govc_cpu / (self.size / GiB)


def _children_cpu() -> float:
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return c.ru_utime + c.ru_stime


def export_check(peer: Peer, payload: Payload, item: str, dest: Path) -> str:
    """`govc library.export LIB/ITEM DEST`, then the SHA-256 of every file against the source's; "" when equal."""
    peer.run("library.export", f"{peer.library}/{item}", str(dest))
    got: dict[str, str] = {}
    for p in sorted(dest.iterdir()):
        with open(p, "rb") as f:
            got[p.name] = hashlib.file_digest(f, "sha256").hexdigest()
    problems = [f"{n} missing" for n in payload.files if n not in got]
    problems += [
        f"{n} has SHA-256 {got[n][:16]}..., the source {want[:16]}..."
        for n, want in payload.files.items()
        if n in got and got[n] != want
    ]
    problems += [f"unexpected file {n}" for n in got if n not in payload.files]
    return "; ".join(problems)


def import_once(peer: Peer, payload: Payload, tag: str, work: Path) -> GovcRun:
    """One `govc library.import -n ITEM LIB FILE`, timed as a whole, with the server's CPU and peak RSS; then the
    item is exported and compared with the source, and deleted."""
    item = f"{payload.kind}-{tag}"
    run = GovcRun(peer.name, payload.kind, tag, payload.size)
    os.sync()  # start with nothing dirty: the sync after the import times this import's bytes only
    with RssSampler(peer.pid) as rss:
        c0 = _children_cpu()
        m = Meter(peer.pid)
        t = time.perf_counter()
        peer.run("library.import", "-n", item, peer.library, str(payload.path))
        run.seconds = time.perf_counter() - t
        m.stop()
        run.govc_cpu = _children_cpu() - c0
        t = time.perf_counter()
        os.sync()
        run.sync_seconds = time.perf_counter() - t
    run.cpu, run.server_cores, run.other_cores = m.server, m.server / m.wall, m.other / m.wall
    run.peak_rss = rss.peak
    dest = work / f"export-{peer.name}-{item}"
    dest.mkdir()
    try:
        run.note = export_check(peer, payload, item, dest)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    run.ok = not run.note
    peer.run("library.rm", f"{peer.library}/{item}", timeout=120)
    return run


# --------------------------------------------------------------------------------------------------------
# the section


@dataclass
class GovcResults:
    runs: dict[tuple[str, str], list[GovcRun]] = field(default_factory=dict)  # (peer, kind) -> counted runs
    orders: list[list[tuple[str, str]]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def bench_govc(cfg: Config, src: Source, work: Path, rep: Report) -> None:
    gm = build_govmomi()
    load0 = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    work = work / "govc"
    payloads = make_payloads(src, work)
    vcsim = Vcsim(gm.vcsim, work / "vcsim")
    cl = Server(work / "contentlib", tls=True)
    res = GovcResults()
    try:
        vcsim.start()
        cl.start()
        user = f"{quote(ADMIN_USER, safe='')}:{quote(cl.password, safe='')}"
        peers = {
            CONTENTLIB: Peer(
                CONTENTLIB, gm.govc, f"https://{user}@127.0.0.1:{cl.port}/sdk", new_home(work / "cl"), cl.pid
            ),
            VCSIM: Peer(
                VCSIM, gm.govc, f"https://user:pass@127.0.0.1:{vcsim.port}/sdk", new_home(work / "vc"), vcsim.pid
            ),
        }
        # contentlib serves one datastore, which govc takes by default; vcsim has several, LocalDS_0 is its own dir
        for peer, ds in ((peers[CONTENTLIB], []), (peers[VCSIM], ["-ds", "LocalDS_0"])):
            name = f"bench-{uuid.uuid4().hex[:8]}"
            try:
                peer.run("library.create", *ds, name, timeout=120)
                peer.library = name
            except BenchError as e:
                peer.error = str(e)
        paths = [(p, k) for k in KINDS for p in (CONTENTLIB, VCSIM)]
        res.runs = {path: [] for path in paths}

        def one(peer_name: str, kind: str, tag: str) -> GovcRun | None:
            peer = peers[peer_name]
            if peer.error:
                return None
            print(f"... govc library.import {kind} into {peer_name} ({tag})", file=sys.stderr, flush=True)
            try:
                r = import_once(peer, payloads[kind], tag, work)
            except BenchError as e:
                peer.error = str(e)
                return None
            if not r.ok:
                peer.error = f"{kind} import {tag}: the exported bytes differ from the source: {r.note}"
            return r

        if cfg.warmup:
            for peer_name, kind in paths:
                one(peer_name, kind, "warmup")
        for i in range(cfg.runs):
            order = paths[i % len(paths) :] + paths[: i % len(paths)]
            res.orders.append(order)
            for peer_name, kind in order:
                if (r := one(peer_name, kind, str(i + 1))) is not None:
                    res.runs[(peer_name, kind)].append(r)
        for peer in peers.values():
            if peer.error:
                res.failures.append(f"{peer.name}: {peer.error}")
        if cl.proc is not None and cl.proc.poll() is not None:
            res.failures.append(f"contentlib exited ({cl.proc.returncode}); log tail: {cl.log()[-1500:]}")
        if vcsim.proc is not None and vcsim.proc.poll() is not None:
            res.failures.append(f"vcsim exited ({vcsim.proc.returncode}); log tail: {vcsim.log()}")
    finally:
        cl.stop()
        vcsim.stop()
    load1 = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    rep.add(govc_report(cfg, gm, src, payloads, res, load0, load1))
    if res.failures:
        rep.failed.append("govc import")


def govc_report(
    cfg: Config,
    gm: Govmomi,
    src: Source,
    payloads: dict[str, Payload],
    res: GovcResults,
    load0: str,
    load1: str,
) -> str:
    size = human(src.size)
    labels = {
        "iso": f"ISO: `govc library.import -n ITEM LIB {ISO_NAME}` ({size})",
        "ovf": f"OVF + .mf: `govc library.import -n ITEM LIB {OVF_DESCRIPTOR}` ({size} disk, SHA256 declared)",
    }
    short = {(CONTENTLIB, "iso"): "CL iso", (VCSIM, "iso"): "vc iso", (CONTENTLIB, "ovf"): "CL ovf"}
    short[(VCSIM, "ovf")] = "vc ovf"
    rows = []
    med: dict[tuple[str, str], float] = {}
    durable: dict[tuple[str, str], float] = {}
    for kind in KINDS:
        for peer in (CONTENTLIB, VCSIM):
            runs = res.runs.get((peer, kind), [])
            good = [r for r in runs if r.ok]
            if good:
                mbps = Stat([r.mbps for r in good])
                med[(peer, kind)] = mbps.med
                durable_mbps = Stat([r.durable_mbps for r in good])
                durable[(peer, kind)] = durable_mbps.med
                rows.append(
                    [
                        labels[kind],
                        peer,
                        mbps.fmt(" MB/s"),
                        Stat([r.seconds for r in good]).fmt(" s", 2),
                        durable_mbps.fmt(" MB/s"),
                        Stat([r.cpu_per_gib for r in good]).fmt("", 2),
                        Stat([r.peak_rss / 1e6 for r in good]).fmt(" MB"),
                        Stat([r.govc_cpu_per_gib for r in good]).fmt("", 2),
                        Stat([r.other_cores for r in good]).fmt("", 2),
                        f"{len(good)}/{cfg.runs} OK",
                    ]
                )
            else:
                rows.append([labels[kind], peer, "n/a", "-", "-", "-", "-", "-", "-", f"{len(good)}/{cfg.runs} OK"])
    targets = []
    for kind in KINDS:
        cl, vc = med.get((CONTENTLIB, kind)), med.get((VCSIM, kind))
        label = f"contentlib / vcsim, {kind.upper()} (ratio of the medians)"
        if cl is None or vc is None:
            missing = " and ".join(p for p in (CONTENTLIB, VCSIM) if med.get((p, kind)) is None)
            targets.append([label, f"n/a: no successful run against {missing}", f">= {TARGET_GOVC_RATIO:.1f}x", "-"])
            continue
        pairs = [
            f"{a.mbps / b.mbps:.2f}"
            for a, b in zip(res.runs[(CONTENTLIB, kind)], res.runs[(VCSIM, kind)], strict=False)
            if a.ok and b.ok
        ]
        targets.append(
            [
                label,
                f"{cl / vc:.2f}x ({cl:,.0f} vs {vc:,.0f} MB/s; per round: {', '.join(pairs)})",
                f">= {TARGET_GOVC_RATIO:.1f}x",
                verdict(cl / vc >= TARGET_GOVC_RATIO),
            ]
        )
        dcl, dvc = durable[(CONTENTLIB, kind)], durable[(VCSIM, kind)]
        targets.append(
            [
                f"contentlib / vcsim, {kind.upper()}, until the bytes are on disk (import + `sync`)",
                f"{dcl / dvc:.2f}x ({dcl:,.0f} vs {dvc:,.0f} MB/s)",
                "- (reference: like for like durability)",
                "-",
            ]
        )
    done = [r for runs in res.runs.values() for r in runs]
    counts = {p: sum(r.ok for r in done if r.peer == p) for p in (CONTENTLIB, VCSIM)}
    total = len(KINDS) * cfg.runs
    wrong = any(not r.ok for r in done)
    targets.append(
        [
            "every import exported again (`govc library.export`) equals its source, SHA-256 of every file",
            f"contentlib {counts[CONTENTLIB]}/{total}, vcsim {counts[VCSIM]}/{total}"
            + ("" if len(done) == 2 * total else f" ({2 * total - len(done)} imports not run or failed, see below)"),
            "all",
            verdict(False if wrong else (True if len(done) == 2 * total else None)),
        ]
    )
    targets.append(["earlier vcsim measurement on this machine (ISO)", VCSIM_GOVC, "-", "-"])
    detail_rows = []
    for i, order in enumerate(res.orders):
        tag = str(i + 1)
        for peer, kind in order:
            r = next((x for x in res.runs[(peer, kind)] if x.tag == tag), None)
            if r is None:
                detail_rows.append([tag, peer, kind, "-", "-", "-", "-", "-", "not run (see below)"])
                continue
            detail_rows.append(
                [
                    tag,
                    peer,
                    kind,
                    f"{r.seconds:.2f}",
                    f"{r.mbps:.0f}",
                    f"{r.cpu_per_gib:.2f} ({r.server_cores:.2f} cores)",
                    f"{r.peak_rss / 1e6:.0f}",
                    f"{r.other_cores:.2f}",
                    "OK" if r.ok else f"WRONG: {r.note}",
                ]
            )
    ovf = payloads["ovf"]
    text = (
        f"## 8. `govc library.import` against vcsim {GOVMOMI_VERSION} (issue 10.5)\n\n"
        f"govc and vcsim from `scripts/build-govmomi.sh` ({gm.info}; `govc version`: {gm.version}). contentlib: "
        "a second server, `python -m contentlib serve` over HTTPS (its generated self-signed certificate) with a "
        "fresh data dir; vcsim: `vcsim -l 127.0.0.1:PORT` (TLS), its LocalDS_0 in the same file system. govc over "
        "TLS with `GOVC_INSECURE=1` and a fresh `GOVMOMI_HOME` per server (the login is cached there from the first "
        "command on, as govc does by default); libraries made with `govc library.create` (contentlib: its one "
        "datastore, govc's default; vcsim: `-ds LocalDS_0`). Imports: the same random "
        f"{size} as an ISO, and as the disk `{OVA_DISK}` of an OVF package `{OVF_DESCRIPTOR}` + `{OVF_MANIFEST}` "
        f"({ovf.size:,} bytes uploaded; govc reads the manifest and declares each file's SHA256 in `checksum_info`, "
        "which contentlib verifies and vcsim ignores). The whole govc command is timed. "
        f"{cfg.runs} round{'s' if cfg.runs > 1 else ''}"
        + (" after one warm-up import of each" if cfg.warmup else "")
        + ", one import per server and kind in each, the order rotating from round to round; after every import "
        "`govc library.export` into a temp dir and SHA-256 of every file against the source (not timed), then "
        "`govc library.rm`. 'Rate until on disk' also counts a `sync` timed right after the import (the page cache "
        "was clean before it): contentlib fsyncs every file before it answers the upload, vcsim never does, so "
        "only this rate compares like with like on durability; the disk's O_DIRECT write rate is in section 1. "
        "CPU: server CPU-s per GiB uploaded (/proc, the whole process tree) and govc's own; "
        f"'other cores' = everything else on the machine. Load average: {load0} at the start, {load1} at the end.\n\n"
        + table(
            [
                "import",
                "server",
                "rate",
                "time",
                "rate until on disk",
                "server CPU-s/GiB",
                "server peak RSS",
                "govc CPU-s/GiB",
                "other cores",
                "bytes",
            ],
            rows,
        )
        + "\n\n"
        + table(["metric", "measured", "target", "verdict"], targets)
        + "\n\nPer run:\n\n"
        + table(
            ["round", "server", "kind", "s", "MB/s", "server CPU-s/GiB", "peak RSS MB", "other cores", "bytes"],
            detail_rows,
        )
        + "\n\nOrder per round: "
        + "; ".join(f"{i + 1}: " + ", ".join(short[p] for p in o) for i, o in enumerate(res.orders))
        + "."
    )
    if res.failures:
        text += "\n\n" + "\n".join(f"**FAILED**: {f}" for f in res.failures)
    return text
