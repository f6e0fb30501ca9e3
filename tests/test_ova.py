"""OVA uploads (issue 3, point 8): one tar archive unpacked while it streams into the session's files, with the
same checks as a package uploaded file by file.

Contract: issue 3 (point 8 and the tests section), REFERENCE.md §2 (file.add: "for ova files, [checksum_info]
should not be set"; keep_in_storage), A.3 File.Info / PreviewInfo, and the lead's decided behaviour for issue 3
(members become PUSH files with the OVA's upload endpoint, READY with size and SHA1; the .ova row READY with the
archive's size; checksum_info on an .ova add → 400 INVALID_ARGUMENT; directories, links, absolute paths, `/` or
`..` in a member name, or a truncated archive → upload 400 INVALID_ARGUMENT, the .ova in ERROR, no member left;
re-adding or removing the .ova drops its members; ustar and pax archives).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ovfkit as k
import pytest
from conftest import Api, ServerProcess, assert_error
from cryptography import x509
from ovfkit import US

SELF = "SELF_SIGNED_CERTIFICATE"
EXPIRED = "EXPIRED_CERTIFICATE"
UNTRUSTED = "UNTRUSTED_CERTIFICATE"
DISK = "vm-disk1.vmdk"
OVA = "vm.ova"


@pytest.fixture()
def trusted(api: Api) -> Iterator[list[x509.Certificate]]:
    certs: list[x509.Certificate] = []
    yield certs
    for c in certs:
        api.delete(f"{k.TRUST}/{k.cert_id(c)}")


@dataclass
class OvaCase:
    archive: bytes
    members: dict[str, bytes]  # name → bytes, as stored in the archive
    kept: dict[str, bytes]  # the item's files after a successful complete
    state: str
    signer: k.Signer | None = None
    warnings: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    invalid: tuple[str, ...] = ()
    fix: dict[str, bytes] = field(default_factory=dict)


def _kept(pkg_kept: dict[str, bytes]) -> dict[str, bytes]:
    """The item after success: the package's kept files, plus the earlier disk if the package does not replace it
    (the session removes only old.txt)."""
    return {DISK: k.PRIOR[DISK], **pkg_kept}


def _case(
    pkg: k.Package,
    signer: k.Signer | None = None,
    warnings: tuple[str, ...] = (),
    fmt: k.TarFormat = "ustar",
    members: list[tuple[str, bytes]] | None = None,
    **kw: object,
) -> OvaCase:
    members = members if members is not None else pkg.ova_members()
    return OvaCase(
        k.ova(members, fmt),
        dict(members),
        _kept(pkg.kept()),
        "AVAILABLE" if signer else "NOT_APPLICABLE",
        signer,
        tuple(sorted(warnings)),
        **kw,  # type: ignore[arg-type]
    )


def _trusted_leaf(api: Api, trusted: list[x509.Certificate], expired: bool = False) -> k.Signer:
    ca = k.make_ca()
    k.trust(api, ca.cert)
    trusted.append(ca.cert)
    return k.expired(ca) if expired else k.leaf(ca)


def _tampered(api: Api, trusted: list[x509.Certificate]) -> OvaCase:
    pkg = k.build_package()
    bad = bytes(b ^ 0xFF for b in pkg.files[DISK])
    members = [(n, bad if n == DISK else d) for n, d in pkg.ova_members()]
    return _case(pkg, members=members, invalid=(DISK,))


def _bad_signature(api: Api, trusted: list[x509.Certificate]) -> OvaCase:
    s = _trusted_leaf(api, trusted)
    pkg = k.build_package(signer=s)
    cert = k.cert_file(pkg.files["vm.mf"], s, "vm.mf", signature=k.sign(b"something else", s.key))
    members = [(n, cert if n == "vm.cert" else d) for n, d in pkg.ova_members()]
    return _case(pkg, s, members=members, invalid=("vm.cert",))


def _missing_member(api: Api, trusted: list[x509.Certificate]) -> OvaCase:
    disk2 = k.disk_bytes("second", 4000)
    pkg = k.build_package(disks={DISK: k.disk_bytes("first", 3000), "vm-disk2.vmdk": disk2})
    members = [(n, d) for n, d in pkg.ova_members() if n != "vm-disk2.vmdk"]
    return _case(pkg, members=members, missing=("vm-disk2.vmdk",), fix={"vm-disk2.vmdk": disk2})


def _wrong_size(api: Api, trusted: list[x509.Certificate]) -> OvaCase:
    disk = k.disk_bytes("ws", 1024)
    return _case(k.build_package(disks={DISK: disk}, sizes={DISK: 1000}), invalid=(DISK,))


def _long_name_pax(api: Api, trusted: list[x509.Certificate]) -> OvaCase:
    """A member name longer than ustar's 100 bytes: pax carries it in a `path` record."""
    name = "vm-" + "x" * 140 + "-disk1.vmdk"
    return _case(k.build_package(disks={name: k.disk_bytes("long", 2500)}), fmt="pax")


CASES: dict[str, Callable[[Api, list[x509.Certificate]], OvaCase]] = {
    "unsigned": lambda api, t: _case(k.build_package()),
    "unsigned-pax": lambda api, t: _case(k.build_package(), fmt="pax"),
    "unsigned-sha1-spaced": lambda api, t: _case(k.build_package(algorithm="SHA1", style="spaced")),
    "long-name-pax": _long_name_pax,
    "self-signed": lambda api, t: (lambda s: _case(k.build_package(signer=s), s, (SELF, UNTRUSTED)))(
        k.self_signed("rsa")
    ),
    "self-signed-ec-pax": lambda api, t: (lambda s: _case(k.build_package(signer=s), s, (SELF, UNTRUSTED), "pax"))(
        k.self_signed("ec")
    ),
    "trusted-ca": lambda api, t: (lambda s: _case(k.build_package(signer=s), s))(_trusted_leaf(api, t)),
    "untrusted-ca": lambda api, t: (lambda s: _case(k.build_package(signer=s), s, (UNTRUSTED,)))(k.leaf(k.make_ca())),
    "expired": lambda api, t: (lambda s: _case(k.build_package(signer=s), s, (EXPIRED,)))(
        _trusted_leaf(api, t, expired=True)
    ),
    "tampered-disk": _tampered,
    "bad-signature": _bad_signature,
    "missing-member": _missing_member,
    "wrong-size": _wrong_size,
}
WARNED = {"self-signed", "self-signed-ec-pax", "untrusted-ca", "expired"}
PARAMS = [
    pytest.param(c, m, id=f"{c}-{m}")
    for c in CASES
    for m in (["strict", "create", "patch"] if c in WARNED else ["strict"])
]


def _upload_ova(api: Api, sid: str, archive: bytes) -> str:
    r = k.add(api, sid, OVA, archive)
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["keep_in_storage"] is False and info["status"] == "WAITING_FOR_TRANSFER", info
    uri = str(info["upload_endpoint"]["uri"])
    r = api.put(uri, data=archive)
    assert r.status_code == 200, r.text
    return uri


@pytest.mark.parametrize(("case", "mode"), PARAMS)
def test_ova(api: Api, trusted: list[x509.Certificate], case: str, mode: str) -> None:
    oc = CASES[case](api, trusted)
    item_id, before = k.seeded_item(api)
    spec: dict[str, object] = {"warning_behavior": k.ignore(k.WARNING_TYPES)} if mode == "create" else {}
    ignored = set(oc.warnings) if mode == "create" else set()
    sid = api.create_session(item_id, **spec)
    assert api.delete(f"{US}/{sid}/file/old.txt").status_code == 204
    uri = _upload_ova(api, sid, oc.archive)

    files = k.session_files(api, sid)
    assert sorted(files) == sorted({OVA, DISK, *oc.members}), sorted(files)
    o = files[OVA]
    assert (o["status"], o["size"], o["keep_in_storage"], o["source_type"]) == ("READY", len(oc.archive), False, "PUSH")
    for name, data in oc.members.items():
        f = files[name]
        assert (f["status"], f["size"], f["source_type"]) == ("READY", len(data), "PUSH"), f
        assert f["checksum_info"] == {"algorithm": "SHA1", "checksum": hashlib.sha1(data).hexdigest()}, f
        assert f["upload_endpoint"]["uri"] == uri, f
        assert f["keep_in_storage"] is (not name.endswith((".mf", ".cert"))), f

    k.assert_preview(k.preview(api, sid), oc.state, oc.signer, oc.warnings, ignored)
    v = k.validate(api, sid)
    assert v["has_errors"] is bool(oc.missing or oc.invalid), v
    assert sorted(v["missing_files"]) == sorted(oc.missing), v
    assert sorted(f["name"] for f in v["invalid_files"]) == sorted(oc.invalid), v

    if mode == "patch":
        r = api.patch(f"{US}/{sid}", json={"warning_behavior": k.ignore(oc.warnings)})
        assert r.status_code == 204, r.text
        ignored = set(oc.warnings)
        k.assert_preview(k.preview(api, sid), oc.state, oc.signer, oc.warnings, ignored)

    blocking = [w for w in oc.warnings if w not in ignored]
    r = k.complete(api, sid)
    if oc.missing or oc.invalid:
        assert_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE", *oc.missing, *oc.invalid)
        assert k.session(api, sid)["state"] == "ACTIVE"
        assert k.snapshot(api, item_id) == before
        if oc.fix:
            k.push_all(api, sid, oc.fix)
            assert k.validate(api, sid) == {"has_errors": False, "missing_files": [], "invalid_files": []}
            assert k.complete(api, sid).status_code == 204
            k.assert_item_holds(api, item_id, oc.kept, "3")
    elif blocking:
        assert_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE", *blocking)
        s = k.session(api, sid)
        assert s["state"] == "ERROR" and "preview_info" not in s, s
        for w in blocking:
            assert w in s["error_message"]["default_message"], s
        assert k.snapshot(api, item_id) == before
    else:
        assert r.status_code == 204, r.text
        assert k.session(api, sid)["state"] == "DONE"
        k.assert_item_holds(api, item_id, oc.kept, "3")
        assert k.item_get(api, item_id)["type"] == "ovf"


# -- add rules -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["SHA1", "SHA256"])
def test_checksum_info_on_an_ova_add_is_invalid(api: Api, algorithm: str) -> None:
    archive = k.package_ova(k.build_package())
    sid = api.create_session()
    before = k.session_files(api, sid)
    checksum = {"algorithm": algorithm, "checksum": hashlib.new(algorithm.lower(), archive).hexdigest()}
    r = k.add(api, sid, OVA, archive, checksum_info=checksum)
    assert_error(r, 400, "INVALID_ARGUMENT", OVA)
    assert k.session_files(api, sid) == before
    assert k.preview(api, sid) == {"state": "UNAVAILABLE"}


def test_ova_row_is_ready_with_the_archives_size_and_no_checksum(api: Api) -> None:
    """The archive is unpacked, not stored: its members are hashed (and checked against the manifest) on the
    stream, the archive as a whole is not, so its File.Info carries no checksum_info (optional: "If unset, the
    server does not verify the checksum") rather than a null checksum (a required string in A.3)."""
    archive = k.package_ova(k.build_package())
    sid = api.create_session()
    _upload_ova(api, sid, archive)
    o = k.session_files(api, sid)[OVA]
    assert (o["status"], o["size"], o["bytes_transferred"]) == ("READY", len(archive), len(archive)), o
    assert "checksum_info" not in o, o
    assert o["keep_in_storage"] is False, o


def test_ova_without_declared_size(api: Api) -> None:
    pkg = k.build_package()
    archive = k.package_ova(pkg)
    item_id = api.create_item()
    sid = api.create_session(item_id)
    r = k.add(api, sid, OVA)
    assert r.status_code == 201, r.text
    assert api.put(r.json()["upload_endpoint"]["uri"], data=archive).status_code == 200
    assert k.session_files(api, sid)[OVA]["size"] == len(archive)
    assert k.complete(api, sid).status_code == 204
    k.assert_item_holds(api, item_id, pkg.kept(), "2")


def test_preview_preparing_while_the_ova_is_not_uploaded(api: Api) -> None:
    archive = k.package_ova(k.build_package())
    sid = api.create_session()
    r = k.add(api, sid, OVA, archive)
    assert r.status_code == 201, r.text
    assert k.preview(api, sid) == {"state": "PREPARING"}
    assert api.put(r.json()["upload_endpoint"]["uri"], data=archive).status_code == 200
    assert k.preview(api, sid) == {"state": "NOT_APPLICABLE"}


# -- hostile archives --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", k.HOSTILE_KINDS)
def test_hostile_ova_is_refused(api: Api, server: ServerProcess, kind: str) -> None:
    pkg = k.build_package()
    archive = k.hostile_ova(pkg, kind)
    if kind in ("traversal", "absolute", "subdir"):
        assert any(n.startswith(("../", "/")) or "/" in n for n in k.tar_names(archive))
    item_id, before = k.seeded_item(api)
    sid = api.create_session(item_id)
    r = k.add(api, sid, OVA, archive)
    assert r.status_code == 201, r.text
    uri = r.json()["upload_endpoint"]["uri"]
    blobs = server.blob_ids()
    assert_error(api.put(uri, data=archive), 400, "INVALID_ARGUMENT", OVA)
    assert set(server.blob_ids()) - set(blobs) == set()  # the members written before the bad one are gone

    files = k.session_files(api, sid)
    assert sorted(files) == sorted({OVA, *k.PRIOR}), sorted(files)  # no member is left
    assert files[OVA]["status"] == "ERROR" and files[OVA]["error_message"]["default_message"], files[OVA]
    for name in k.PRIOR:
        assert files[name]["source_type"] == "NONE", files[name]
    v = k.validate(api, sid)
    assert v["has_errors"] is True and [f["name"] for f in v["invalid_files"]] == [OVA], v
    assert_error(k.complete(api, sid), 400, "NOT_ALLOWED_IN_CURRENT_STATE", OVA)
    assert k.snapshot(api, item_id) == before
    for where in (Path.cwd().parent, server.data_dir.parent, server.data_dir, Path("/tmp")):
        assert not (where / "evil-contentlib.vmdk").exists(), where

    # The client recovers by adding the OVA again and uploading a good archive.
    good = k.package_ova(pkg)
    r = k.add(api, sid, OVA, good)
    assert r.status_code == 201 and r.json()["status"] == "WAITING_FOR_TRANSFER", r.text
    assert api.put(r.json()["upload_endpoint"]["uri"], data=good).status_code == 200
    assert k.complete(api, sid).status_code == 204
    k.assert_item_holds(api, item_id, {"old.txt": k.PRIOR["old.txt"], **pkg.kept()}, "3")


@pytest.mark.parametrize("kind", ["xxe", "billion-laughs", "malformed"])
def test_ova_with_a_bad_descriptor_is_refused(api: Api, server: ServerProcess, kind: str) -> None:
    data = {"xxe": k.XXE, "billion-laughs": k.XML_BOMB, "malformed": k.MALFORMED_XML}[kind]
    pkg = k.build_package(with_manifest=False)
    archive = k.ova([("vm.ovf", data), (DISK, pkg.files[DISK])])
    item_id, before = k.seeded_item(api)
    sid = api.create_session(item_id)
    r = k.add(api, sid, OVA, archive)
    assert r.status_code == 201, r.text
    blobs = server.blob_ids()
    assert_error(api.put(r.json()["upload_endpoint"]["uri"], data=archive), 400, "INVALID_ARGUMENT")
    assert set(server.blob_ids()) - set(blobs) == set()
    assert k.preview(api, sid) == {"state": "UNAVAILABLE"}
    assert k.validate(api, sid)["has_errors"] is True
    assert_error(k.complete(api, sid), 400, "NOT_ALLOWED_IN_CURRENT_STATE")
    assert k.snapshot(api, item_id) == before


# -- re-adding and removing the OVA ------------------------------------------------------------------------------
def test_re_adding_the_ova_drops_its_members(api: Api) -> None:
    pkg = k.build_package(signer=k.self_signed("ec"))
    archive = k.package_ova(pkg)
    item_id = api.create_item()
    sid = api.create_session(item_id, warning_behavior=k.ignore(k.WARNING_TYPES))
    _upload_ova(api, sid, archive)
    assert sorted(k.session_files(api, sid)) == sorted({OVA, *pkg.files})
    assert k.preview(api, sid)["state"] == "AVAILABLE"

    r = k.add(api, sid, OVA, archive)
    assert r.status_code == 201, r.text
    files = k.session_files(api, sid)
    assert list(files) == [OVA] and files[OVA]["status"] == "WAITING_FOR_TRANSFER", files
    assert k.preview(api, sid) == {"state": "PREPARING"}

    # A different archive now: only its members appear.
    pkg2 = k.build_package(disks={"other.vmdk": k.disk_bytes("o", 999)}, with_manifest=False)
    archive2 = k.package_ova(pkg2)
    r = k.add(api, sid, OVA, archive2)
    assert r.status_code == 201, r.text
    assert api.put(r.json()["upload_endpoint"]["uri"], data=archive2).status_code == 200
    assert sorted(k.session_files(api, sid)) == sorted({OVA, *pkg2.files})
    assert k.preview(api, sid) == {"state": "NOT_APPLICABLE"}
    assert k.complete(api, sid).status_code == 204
    k.assert_item_holds(api, item_id, pkg2.kept(), "2")


def test_removing_the_ova_drops_its_members(api: Api) -> None:
    pkg = k.build_package()
    item_id, before = k.seeded_item(api)
    sid = api.create_session(item_id)
    _upload_ova(api, sid, k.package_ova(pkg))
    assert set(pkg.files) <= set(k.session_files(api, sid))
    assert api.delete(f"{US}/{sid}/file/{OVA}").status_code == 204
    files = k.session_files(api, sid)
    assert sorted(files) == sorted(k.PRIOR), files
    assert all(f["source_type"] == "NONE" for f in files.values()), files
    assert k.preview(api, sid) == {"state": "UNAVAILABLE"}
    assert k.validate(api, sid) == {"has_errors": False, "missing_files": [], "invalid_files": []}
    assert k.complete(api, sid).status_code == 204
    assert k.snapshot(api, item_id) == before


# -- a large OVA ---------------------------------------------------------------------------------------------------
def test_large_ova_spanning_several_batches(api: Api) -> None:
    big = os.urandom(20 * 1024 * 1024 + 12345)
    small = k.disk_bytes("small", 777)
    s = k.self_signed("ec")
    pkg = k.build_package(disks={DISK: big, "vm-disk2.vmdk": small}, signer=s)
    archive = k.package_ova(pkg, "pax")
    item_id = api.create_item()
    sid = api.create_session(item_id, warning_behavior=k.ignore([SELF, UNTRUSTED]))
    _upload_ova(api, sid, archive)
    files = k.session_files(api, sid)
    assert files[OVA]["size"] == len(archive)
    assert files[DISK]["size"] == len(big)
    assert files[DISK]["checksum_info"]["checksum"] == hashlib.sha1(big).hexdigest()
    k.assert_preview(k.preview(api, sid), "AVAILABLE", s, (SELF, UNTRUSTED), {SELF, UNTRUSTED})
    assert k.validate(api, sid) == {"has_errors": False, "missing_files": [], "invalid_files": []}
    assert k.complete(api, sid).status_code == 204
    k.assert_item_holds(api, item_id, pkg.kept(), "2")
