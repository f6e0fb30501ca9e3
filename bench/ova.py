"""Section 5: an OVA upload against a plain upload of the same bytes (issue 3)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import BenchError, Config, GiB, Meter, MiB, Report, RssSampler, Stat, human, rss_bytes, table, verdict
from bench.server import Api, Server
from bench.upload import Source, UploadResult, curl_put, upload_once

TARGET_OVA_RATIO = 0.85  # issue 3: a 1 GiB OVA upload stays within 15% of a 1 GiB plain upload
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
