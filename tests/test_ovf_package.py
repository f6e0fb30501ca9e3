"""Signed and unsigned OVF packages uploaded file by file (issue 3): preview, validate, complete, warning_behavior.

Contract: issue 3 (points 1-6, 9), REFERENCE.md §1 item 3 (union rules of PreviewInfo / UpdateSessionModel), §2
(preview and warnings; file.add: manifest or certificate after the descriptor → NotAllowedInCurrentState;
keep_in_storage false for .mf/.cert; validate), A.3 (PreviewInfo, CertificateInfo, PreviewWarningInfo,
ValidationResult), and the lead's decided behaviour for issue 3 (ordering message names both files; parse errors
→ upload 400 INVALID_ARGUMENT and the file in ERROR; validate's missing/invalid rules; complete with problems →
400 NOT_ALLOWED_IN_CURRENT_STATE and the session stays ACTIVE; complete with warnings not ignored → 400, the
session in ERROR naming them; item untouched; item type `ovf`/`iso`).

Every scenario starts from an item that already holds content (`ovfkit.PRIOR`: old.txt, which the session
removes, and vm-disk1.vmdk, which the package replaces), so that success shows exactly the package's files and
failure shows the earlier content byte for byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import ovfkit as k
import pytest
from conftest import Api, ServerProcess, assert_error
from cryptography import x509
from ovfkit import US

SELF = "SELF_SIGNED_CERTIFICATE"
EXPIRED = "EXPIRED_CERTIFICATE"
NYV = "NOT_YET_VALID_CERTIFICATE"
UNTRUSTED = "UNTRUSTED_CERTIFICATE"
DISK = "vm-disk1.vmdk"
NVRAM = "vm.nvram"
NVRAM_SIZE = 8684


@dataclass
class Scenario:
    uploads: dict[str, bytes]  # what the client uploads, in this order
    kept: dict[str, bytes]  # the item's files after a successful complete
    state: str  # preview state once everything is uploaded
    signer: k.Signer | None = None
    warnings: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    invalid: tuple[str, ...] = ()
    digests: tuple[str, str] | None = None  # (manifest's, actual) SHA-256 of the tampered file
    fix: dict[str, bytes] = field(default_factory=dict)  # uploads that make the package valid


Trusted = list[x509.Certificate]
Builder = Callable[[Api, Trusted], Scenario]


@pytest.fixture()
def trusted(api: Api) -> Iterator[Trusted]:
    """Certificates a scenario adds to the server's trust store; removed again afterwards."""
    certs: Trusted = []
    yield certs
    for c in certs:
        api.delete(f"{k.TRUST}/{k.cert_id(c)}")


def _trust(api: Api, trusted: Trusted, cert: x509.Certificate) -> None:
    k.trust(api, cert)
    trusted.append(cert)


def _trusted_ca(api: Api, trusted: Trusted) -> k.Signer:
    ca = k.make_ca()
    _trust(api, trusted, ca.cert)
    return ca


def _trusted_leaf(api: Api, trusted: Trusted, kind: k.KeyKind = "rsa", with_ca: bool = True) -> k.Signer:
    ca = k.make_ca()
    _trust(api, trusted, ca.cert)
    return k.leaf(ca, kind, with_ca=with_ca)


def _valid(pkg: k.Package, signer: k.Signer | None = None, warnings: tuple[str, ...] = ()) -> Scenario:
    return Scenario(
        dict(pkg.files), pkg.kept(), "AVAILABLE" if signer else "NOT_APPLICABLE", signer, tuple(sorted(warnings))
    )


def _signed(signer: k.Signer, warnings: tuple[str, ...], **kw: object) -> Scenario:
    return _valid(k.build_package(signer=signer, **kw), signer, warnings)  # type: ignore[arg-type]


def _tampered_disk(pkg: k.Package, signer: k.Signer | None) -> Scenario:
    good = pkg.files[DISK]
    bad = bytes(b ^ 0x5A for b in good)  # same size: only the digest can tell
    uploads = {**pkg.files, DISK: bad}
    return Scenario(
        uploads,
        pkg.kept(),
        "AVAILABLE" if signer else "NOT_APPLICABLE",
        signer,
        invalid=(DISK,),
        digests=(hashlib.sha256(good).hexdigest(), hashlib.sha256(bad).hexdigest()),
        fix={DISK: good},
    )


def _tampered_disk_signed(api: Api, trusted: Trusted) -> Scenario:
    s = _trusted_leaf(api, trusted)
    return _tampered_disk(k.build_package(signer=s), s)


def _self_signed_trusted(api: Api, trusted: Trusted) -> Scenario:
    """A self-signed signer that is itself in the trust store: trusted, but still self-signed."""
    s = k.self_signed("ec")
    _trust(api, trusted, s.cert)
    return _signed(s, (SELF,))


def _tampered_manifest(api: Api, trusted: Trusted) -> Scenario:
    """The disk was changed and the manifest rewritten to match it, but the signature is over the old manifest."""
    s = _trusted_leaf(api, trusted)
    pkg = k.build_package(signer=s)
    bad = k.disk_bytes("evil", len(pkg.files[DISK]))
    mf = k.manifest({"vm.ovf": pkg.files["vm.ovf"], DISK: bad})
    uploads = {"vm.mf": mf, "vm.cert": pkg.files["vm.cert"], "vm.ovf": pkg.files["vm.ovf"], DISK: bad}
    return Scenario(uploads, {}, "AVAILABLE", s, invalid=("vm.cert",))


def _bad_cert(signer: k.Signer, warnings: tuple[str, ...], how: str) -> Scenario:
    pkg = k.build_package(signer=signer)
    mf = pkg.files["vm.mf"]
    if how == "flipped":
        sig = bytearray(k.sign(mf, signer.key))
        sig[len(sig) // 2] ^= 0x01
        cert = k.cert_file(mf, signer, "vm.mf", signature=bytes(sig))
    elif how == "other-key":
        cert = k.cert_file(mf, signer, "vm.mf", signature=k.sign(mf, k.new_key("ec")))
    else:  # the signature line names a manifest that is not in the session
        cert = k.cert_file(mf, signer, "other.mf")
    uploads = {**pkg.files, "vm.cert": cert}
    return Scenario(uploads, pkg.kept(), "AVAILABLE", signer, tuple(sorted(warnings)), invalid=("vm.cert",))


def _missing_nvram(api: Api, trusted: Trusted) -> Scenario:
    pkg = k.build_package(extra_refs={NVRAM: NVRAM_SIZE})
    nvram = k.disk_bytes("nvram", NVRAM_SIZE)
    return Scenario(
        dict(pkg.files), {**pkg.kept(), NVRAM: nvram}, "NOT_APPLICABLE", missing=(NVRAM,), fix={NVRAM: nvram}
    )


def _manifest_lists_missing(api: Api, trusted: Trusted) -> Scenario:
    disk = k.disk_bytes("d1", 2000)
    disk2 = k.disk_bytes("d2", 1500)
    ovf = k.descriptor([(DISK, len(disk))])
    mf = k.manifest({"vm.ovf": ovf, DISK: disk, "vm-disk2.vmdk": disk2})
    uploads = {"vm.mf": mf, "vm.ovf": ovf, DISK: disk}
    return Scenario(
        uploads,
        {"vm.ovf": ovf, DISK: disk, "vm-disk2.vmdk": disk2},
        "NOT_APPLICABLE",
        missing=("vm-disk2.vmdk",),
        fix={"vm-disk2.vmdk": disk2},
    )


def _wrong_size(api: Api, trusted: Trusted) -> Scenario:
    disk = k.disk_bytes("ws", 2048)
    pkg = k.build_package(disks={DISK: disk}, sizes={DISK: 2049})
    return Scenario(dict(pkg.files), pkg.kept(), "NOT_APPLICABLE", invalid=(DISK,))


def _disks_first(api: Api, trusted: Trusted) -> Scenario:
    """Disks uploaded before the manifest names their (SHA-512) digests: the check still holds."""
    pkg = k.build_package(algorithm="SHA512")
    order = [DISK, "vm.mf", "vm.ovf"]
    return Scenario({n: pkg.files[n] for n in order}, pkg.kept(), "NOT_APPLICABLE")


def _dialect(**kw: object) -> Builder:
    return lambda api, trusted: _valid(k.build_package(**kw))  # type: ignore[arg-type]


CASES: dict[str, Builder] = {
    "unsigned": lambda api, t: _valid(k.build_package()),
    "unsigned-no-manifest": lambda api, t: _valid(k.build_package(with_manifest=False)),
    "unsigned-two-disks": lambda api, t: _valid(
        k.build_package(disks={DISK: k.disk_bytes("a", 5000), "vm-disk2.vmdk": k.disk_bytes("b", 700)})
    ),
    "self-signed-rsa": lambda api, t: _signed(k.self_signed("rsa"), (SELF, UNTRUSTED)),
    "self-signed-ec": lambda api, t: _signed(k.self_signed("ec"), (SELF, UNTRUSTED)),
    "self-signed-trusted": _self_signed_trusted,
    "trusted-ca": lambda api, t: _signed(_trusted_leaf(api, t), ()),
    "trusted-ca-ec-leaf": lambda api, t: _signed(_trusted_leaf(api, t, "ec"), ()),
    "trusted-ca-leaf-only-chain": lambda api, t: _signed(_trusted_leaf(api, t, with_ca=False), ()),
    "trusted-ca-sha1": lambda api, t: _signed(_trusted_leaf(api, t), (), algorithm="SHA1"),
    "trusted-ca-sha512": lambda api, t: _signed(_trusted_leaf(api, t), (), algorithm="SHA512"),
    "untrusted-ca": lambda api, t: _signed(k.leaf(k.make_ca()), (UNTRUSTED,)),
    "untrusted-ca-leaf-only-chain": lambda api, t: _signed(k.leaf(k.make_ca(), with_ca=False), (UNTRUSTED,)),
    "expired": lambda api, t: _signed(k.expired(_trusted_ca(api, t)), (EXPIRED,)),
    "expired-self-signed": lambda api, t: _signed(k.expired(None, "ec"), (SELF, EXPIRED, UNTRUSTED)),
    "not-yet-valid": lambda api, t: _signed(k.not_yet_valid(_trusted_ca(api, t)), (NYV,)),
    "not-yet-valid-self-signed": lambda api, t: _signed(k.not_yet_valid(None, "ec"), (SELF, NYV, UNTRUSTED)),
    "tampered-disk": lambda api, t: _tampered_disk(k.build_package(), None),
    "tampered-disk-signed": _tampered_disk_signed,
    "tampered-manifest": _tampered_manifest,
    "bad-signature": lambda api, t: _bad_cert(k.self_signed("rsa"), (SELF, UNTRUSTED), "flipped"),
    "signature-by-other-key": lambda api, t: _bad_cert(_trusted_leaf(api, t), (), "other-key"),
    "cert-signs-other-manifest": lambda api, t: _bad_cert(_trusted_leaf(api, t), (), "other-manifest"),
    "missing-nvram": _missing_nvram,
    "manifest-lists-missing": _manifest_lists_missing,
    "wrong-size": _wrong_size,
    "mf-sha1": _dialect(algorithm="SHA1"),
    "mf-sha512": _dialect(algorithm="SHA512"),
    "mf-spaced": _dialect(style="spaced"),
    "mf-SHA-256": _dialect(spelling="SHA-256"),
    "mf-SHA2-256": _dialect(spelling="SHA2-256"),
    "mf-upper-hex": _dialect(upper=True),
    "mf-blank-lines": _dialect(blank_lines=True),
    "mf-spaced-sha512-upper-blank": _dialect(algorithm="SHA512", style="spaced", upper=True, blank_lines=True),
    "mf-disks-first-sha512": _disks_first,
}


def _modes(case: str) -> list[str]:
    """Which complete paths a case is run through (the scenario is built lazily, so decide by its name)."""
    warned = {
        "self-signed-rsa": 2,
        "self-signed-ec": 2,
        "self-signed-trusted": 1,
        "untrusted-ca": 1,
        "untrusted-ca-leaf-only-chain": 1,
        "expired": 1,
        "expired-self-signed": 3,
        "not-yet-valid": 1,
        "not-yet-valid-self-signed": 3,
        "bad-signature": 2,
    }.get(case, 0)
    if case == "bad-signature":
        return ["strict", "create"]  # an invalid signature is an error, not a warning: ignoring all does not help
    if not warned:
        return ["strict"]
    return ["strict", "create", "patch"] + (["partial"] if warned > 1 else [])


PARAMS = [pytest.param(c, m, id=f"{c}-{m}") for c in CASES for m in _modes(c)]


@pytest.mark.parametrize(("case", "mode"), PARAMS)
def test_package(api: Api, trusted: Trusted, case: str, mode: str) -> None:
    sc = CASES[case](api, trusted)
    item_id, before = k.seeded_item(api)
    ignored: set[str] = set()
    spec: dict[str, object] = {}
    if mode == "create":
        spec["warning_behavior"] = k.ignore(k.WARNING_TYPES)
        ignored = set(k.WARNING_TYPES)
    elif mode == "partial":
        ignored = set(sc.warnings[:-1])
        spec["warning_behavior"] = k.ignore(sorted(ignored)) + k.ignore([sc.warnings[-1]], False)
    sid = api.create_session(item_id, **spec)
    assert api.delete(f"{US}/{sid}/file/old.txt").status_code == 204
    k.push_all(api, sid, sc.uploads)

    # The session's files: what was uploaded (READY, sizes), the package metadata not kept in storage.
    files = k.session_files(api, sid)
    assert sorted(files) == sorted(set(sc.uploads) | {DISK}), sorted(files)
    for name, data in sc.uploads.items():
        f = files[name]
        assert (f["status"], f["size"], f["source_type"]) == ("READY", len(data), "PUSH"), f
        assert f["keep_in_storage"] is (not name.endswith((".mf", ".cert"))), f

    k.assert_preview(k.preview(api, sid), sc.state, sc.signer, sc.warnings, ignored & set(sc.warnings))

    v = k.validate(api, sid)
    assert v["has_errors"] is bool(sc.missing or sc.invalid), v
    assert sorted(v["missing_files"]) == sorted(sc.missing), v
    assert sorted(f["name"] for f in v["invalid_files"]) == sorted(sc.invalid), v
    for f in v["invalid_files"]:
        assert f["error_message"]["default_message"] and isinstance(f["error_message"]["args"], list), f
    if sc.digests is not None:
        text = v["invalid_files"][0]["error_message"]["default_message"].lower()
        assert "sha256" in text.replace("-", "") and sc.digests[0] in text and sc.digests[1] in text, text

    if mode == "patch":
        r = api.patch(f"{US}/{sid}", json={"warning_behavior": k.ignore(sc.warnings)})
        assert r.status_code == 204, r.text
        ignored = set(sc.warnings)
        k.assert_preview(k.preview(api, sid), sc.state, sc.signer, sc.warnings, ignored)

    blocking = [w for w in sc.warnings if w not in ignored]
    r = k.complete(api, sid)
    if sc.missing or sc.invalid:
        # The client can still fix the package: the session stays ACTIVE, the item is untouched.
        assert_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE", *sc.missing, *sc.invalid)
        assert k.session(api, sid)["state"] == "ACTIVE"
        assert k.snapshot(api, item_id) == before
        if sc.fix and not blocking:
            k.push_all(api, sid, sc.fix)
            assert k.validate(api, sid) == {"has_errors": False, "missing_files": [], "invalid_files": []}
            r = k.complete(api, sid)
            assert r.status_code == 204, r.text
            k.assert_item_holds(api, item_id, sc.kept, "3")
    elif blocking:
        body = assert_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE", *blocking)
        text = " ".join(m["default_message"] for m in body["messages"])
        for w in ignored & set(sc.warnings):
            assert w not in text, text
        s = k.session(api, sid)
        assert s["state"] == "ERROR", s
        assert "preview_info" not in s, s
        for w in blocking:
            assert w in s["error_message"]["default_message"], s
        assert k.snapshot(api, item_id) == before
    else:
        assert r.status_code == 204, r.text
        s = k.session(api, sid)
        assert s["state"] == "DONE" and "preview_info" not in s, s
        k.assert_item_holds(api, item_id, sc.kept, "3")


# -- warning_behavior details -------------------------------------------------------------------------------------
def _self_signed_session(api: Api, **spec: object) -> tuple[str, str, k.Signer, dict[str, bytes]]:
    item_id, _ = k.seeded_item(api)
    s = k.self_signed("ec")
    pkg = k.build_package(signer=s)
    sid = api.create_session(item_id, **spec)
    k.push_all(api, sid, pkg.files)
    return item_id, sid, s, pkg.files


def test_warning_behavior_last_entry_for_a_type_wins(api: Api) -> None:
    wb = k.ignore([SELF]) + k.ignore([UNTRUSTED]) + k.ignore([SELF], False)
    item_id, sid, s, _ = _self_signed_session(api, warning_behavior=wb)
    k.assert_preview(k.preview(api, sid), "AVAILABLE", s, (SELF, UNTRUSTED), {UNTRUSTED})
    before = k.snapshot(api, item_id)
    assert_error(k.complete(api, sid), 400, "NOT_ALLOWED_IN_CURRENT_STATE", SELF)
    assert k.session(api, sid)["state"] == "ERROR"
    assert k.snapshot(api, item_id) == before


def test_patch_can_take_an_ignore_back(api: Api) -> None:
    item_id, sid, s, _ = _self_signed_session(api, warning_behavior=k.ignore([SELF, UNTRUSTED]))
    k.assert_preview(k.preview(api, sid), "AVAILABLE", s, (SELF, UNTRUSTED), {SELF, UNTRUSTED})
    r = api.patch(f"{US}/{sid}", json={"warning_behavior": k.ignore([SELF], False) + k.ignore([UNTRUSTED])})
    assert r.status_code == 204, r.text
    k.assert_preview(k.preview(api, sid), "AVAILABLE", s, (SELF, UNTRUSTED), {UNTRUSTED})
    before = k.snapshot(api, item_id)
    body = assert_error(k.complete(api, sid), 400, "NOT_ALLOWED_IN_CURRENT_STATE", SELF)
    assert UNTRUSTED not in " ".join(m["default_message"] for m in body["messages"])
    s2 = k.session(api, sid)
    assert s2["state"] == "ERROR" and SELF in s2["error_message"]["default_message"], s2
    assert k.snapshot(api, item_id) == before


def test_ignoring_warnings_that_are_not_raised_does_not_matter(api: Api) -> None:
    """Only raised warnings count: ignoring EXPIRED does not help a self-signed package, and a package without
    warnings completes whatever the behaviour says."""
    _, sid, s, _ = _self_signed_session(api, warning_behavior=k.ignore([EXPIRED, NYV]))
    k.assert_preview(k.preview(api, sid), "AVAILABLE", s, (SELF, UNTRUSTED), set())
    assert_error(k.complete(api, sid), 400, "NOT_ALLOWED_IN_CURRENT_STATE", SELF, UNTRUSTED)


# -- ordering: manifest and certificate before the descriptor ---------------------------------------------------
@pytest.mark.parametrize("late", ["vm.mf", "vm.cert"])
@pytest.mark.parametrize("uploaded", [True, False], ids=["descriptor-uploaded", "descriptor-added"])
def test_metadata_after_the_descriptor_is_refused(api: Api, late: str, uploaded: bool) -> None:
    pkg = k.build_package(signer=k.self_signed("ec"))
    sid = api.create_session()
    if late == "vm.cert":
        k.push_all(api, sid, {"vm.mf": pkg.files["vm.mf"]})
    if uploaded:
        k.push_all(api, sid, {"vm.ovf": pkg.files["vm.ovf"]})
    else:
        assert k.add(api, sid, "vm.ovf", pkg.files["vm.ovf"]).status_code == 201
    before = k.session_files(api, sid)
    r = k.add(api, sid, late, pkg.files[late])
    assert_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE", late, "vm.ovf")
    assert k.session_files(api, sid) == before
    assert k.session(api, sid)["state"] == "ACTIVE"


def test_metadata_before_the_descriptor_is_accepted_and_not_kept(api: Api) -> None:
    pkg = k.build_package(signer=k.self_signed("ec"))
    sid = api.create_session()
    for name in ("vm.mf", "vm.cert", "vm.ovf", DISK):
        r = k.add(api, sid, name, pkg.files[name])
        assert r.status_code == 201, r.text
        assert r.json()["keep_in_storage"] is (name in ("vm.ovf", DISK)), r.json()
        assert r.json()["status"] == "WAITING_FOR_TRANSFER", r.json()


# -- preview states ------------------------------------------------------------------------------------------------
def test_preview_unavailable_without_a_descriptor(api: Api) -> None:
    s = k.self_signed("ec")
    pkg = k.build_package(signer=s)
    sid = api.create_session()
    assert k.preview(api, sid) == {"state": "UNAVAILABLE"}
    k.push_all(api, sid, {DISK: pkg.files[DISK]})
    assert k.preview(api, sid) == {"state": "UNAVAILABLE"}
    k.push_all(api, sid, {"vm.mf": pkg.files["vm.mf"], "vm.cert": pkg.files["vm.cert"]})
    assert k.preview(api, sid) == {"state": "UNAVAILABLE"}
    k.push_all(api, sid, {"vm.ovf": pkg.files["vm.ovf"]})
    k.assert_preview(k.preview(api, sid), "AVAILABLE", s, (SELF, UNTRUSTED))


def test_preview_preparing_while_the_descriptor_is_not_uploaded(api: Api) -> None:
    pkg = k.build_package()
    sid = api.create_session()
    assert k.add(api, sid, "vm.ovf", pkg.files["vm.ovf"]).status_code == 201
    assert k.preview(api, sid) == {"state": "PREPARING"}
    uri = k.session_files(api, sid)["vm.ovf"]["upload_endpoint"]["uri"]
    assert api.put(uri, data=pkg.files["vm.ovf"]).status_code == 200
    assert k.preview(api, sid) == {"state": "NOT_APPLICABLE"}


@pytest.mark.parametrize("pending", ["vm.mf", "vm.cert"])
def test_preview_preparing_while_manifest_or_certificate_is_not_uploaded(api: Api, pending: str) -> None:
    s = k.self_signed("ec")
    pkg = k.build_package(signer=s)
    sid = api.create_session()
    uris = {}
    for name in ("vm.mf", "vm.cert", "vm.ovf"):
        r = k.add(api, sid, name, pkg.files[name])
        assert r.status_code == 201, r.text
        uris[name] = r.json()["upload_endpoint"]["uri"]
    for name in ("vm.mf", "vm.cert", "vm.ovf"):
        if name != pending:
            assert api.put(uris[name], data=pkg.files[name]).status_code == 200
    assert k.preview(api, sid) == {"state": "PREPARING"}
    assert api.put(uris[pending], data=pkg.files[pending]).status_code == 200
    k.assert_preview(k.preview(api, sid), "AVAILABLE", s, (SELF, UNTRUSTED))


def test_no_preview_info_once_the_session_is_terminal(api: Api) -> None:
    s = k.self_signed("ec")
    pkg = k.build_package(signer=s)
    ended = []
    for end in ("cancel", "fail"):
        sid = api.create_session()
        k.push_all(api, sid, pkg.files)
        assert k.preview(api, sid)["state"] == "AVAILABLE"
        body = {"client_error_message": "stop"} if end == "fail" else None
        r = api.post(f"{US}/{sid}?action={end}", json=body)
        assert r.status_code == 204, r.text
        ended.append(sid)
    for sid, state in zip(ended, ("CANCELED", "ERROR"), strict=True):
        got = k.session(api, sid)
        assert got["state"] == state and "preview_info" not in got, got


# -- files that are not a descriptor, manifest or certificate -----------------------------------------------------
HOSTILE_DESCRIPTORS = {
    "malformed": k.MALFORMED_XML,
    "billion-laughs": k.XML_BOMB,
    "xxe": k.XXE,
    "not-envelope": k.NOT_ENVELOPE,
    "not-xml": b"\x00\x01binary\xff",
}


@pytest.mark.parametrize("kind", list(HOSTILE_DESCRIPTORS))
def test_bad_descriptor_goes_to_error_and_blocks_complete(api: Api, server: ServerProcess, kind: str) -> None:
    item_id, before = k.seeded_item(api)
    sid = api.create_session(item_id)
    assert api.delete(f"{US}/{sid}/file/old.txt").status_code == 204
    blobs = server.blob_ids()
    r = k.push(api, sid, "vm.ovf", HOSTILE_DESCRIPTORS[kind])
    assert_error(r, 400, "INVALID_ARGUMENT", "vm.ovf")
    assert set(server.blob_ids()) - set(blobs) == set()  # the refused descriptor's blob is gone
    f = k.session_files(api, sid)["vm.ovf"]
    assert f["status"] == "ERROR" and "size" not in f, f
    assert f["error_message"]["default_message"], f
    assert k.preview(api, sid) == {"state": "UNAVAILABLE"}
    disk = k.disk_bytes("bd", 1000)
    k.push_all(api, sid, {DISK: disk})
    v = k.validate(api, sid)
    assert v["has_errors"] is True and v["missing_files"] == [], v
    assert [x["name"] for x in v["invalid_files"]] == ["vm.ovf"], v
    assert_error(k.complete(api, sid), 400, "NOT_ALLOWED_IN_CURRENT_STATE", "vm.ovf")
    assert k.session(api, sid)["state"] == "ACTIVE"
    assert k.snapshot(api, item_id) == before
    # The client fixes it by adding the descriptor again.
    ovf = k.descriptor([(DISK, len(disk))])
    k.push_all(api, sid, {"vm.ovf": ovf})
    assert k.preview(api, sid) == {"state": "NOT_APPLICABLE"}
    assert k.validate(api, sid) == {"has_errors": False, "missing_files": [], "invalid_files": []}
    assert k.complete(api, sid).status_code == 204
    k.assert_item_holds(api, item_id, {"vm.ovf": ovf, DISK: disk}, "3")


def _bad_metadata(kind: str) -> tuple[str, bytes]:
    s = k.self_signed("ec")
    pkg = k.build_package(signer=s)
    mf = pkg.files["vm.mf"]
    line = mf.decode().splitlines()[0]
    return {
        "mf-garbage": ("vm.mf", b"this is not a manifest\n"),
        "mf-md5": ("vm.mf", b"MD5(vm.ovf)= 0123456789abcdef0123456789abcdef\n"),
        "mf-no-equals": ("vm.mf", line.replace("=", "").encode() + b"\n"),
        "mf-not-hex": ("vm.mf", line[:-4].encode() + b"zzzz\n"),
        "cert-no-signature-line": ("vm.cert", s.pem.encode()),
        "cert-no-pem": ("vm.cert", pkg.files["vm.cert"].split(b"-----BEGIN")[0]),
        "cert-broken-pem": ("vm.cert", pkg.files["vm.cert"].decode().replace("A", "!", 5).encode()),
    }[kind]


@pytest.mark.parametrize(
    "kind",
    ["mf-garbage", "mf-md5", "mf-no-equals", "mf-not-hex", "cert-no-signature-line", "cert-no-pem", "cert-broken-pem"],
)
def test_bad_manifest_or_certificate_goes_to_error(api: Api, kind: str) -> None:
    name, data = _bad_metadata(kind)
    pkg = k.build_package()
    item_id, before = k.seeded_item(api)
    sid = api.create_session(item_id)
    if name == "vm.cert":
        k.push_all(api, sid, {"vm.mf": pkg.files["vm.mf"]})
    r = k.push(api, sid, name, data)
    assert_error(r, 400, "INVALID_ARGUMENT", name)
    f = k.session_files(api, sid)[name]
    assert f["status"] == "ERROR" and f["error_message"]["default_message"], f
    k.push_all(api, sid, {"vm.ovf": pkg.files["vm.ovf"], DISK: pkg.files[DISK]})
    assert k.preview(api, sid) == {"state": "UNAVAILABLE"}
    v = k.validate(api, sid)
    assert v["has_errors"] is True and name in [x["name"] for x in v["invalid_files"]], v
    assert_error(k.complete(api, sid), 400, "NOT_ALLOWED_IN_CURRENT_STATE", name)
    assert k.snapshot(api, item_id) == before


# -- files already in the item -------------------------------------------------------------------------------------
def test_new_descriptor_checked_against_the_items_files(api: Api) -> None:
    item_id = api.create_item()
    pkg = k.build_package()
    api.put_files(item_id, pkg.files)
    k.assert_item_holds(api, item_id, pkg.kept(), "2")
    disk = pkg.files[DISK]
    ovf2 = k.descriptor([(DISK, len(disk))], vm_name="vm-renamed")

    # A manifest with a wrong digest for the disk the item already holds: invalid, though not in the session.
    sid = api.create_session(item_id)
    bad_mf = k.manifest({"vm.ovf": ovf2, DISK: b"other bytes"})
    k.push_all(api, sid, {"vm.mf": bad_mf, "vm.ovf": ovf2})
    v = k.validate(api, sid)
    assert v["missing_files"] == [] and [x["name"] for x in v["invalid_files"]] == [DISK], v
    assert_error(k.complete(api, sid), 400, "NOT_ALLOWED_IN_CURRENT_STATE", DISK)
    assert api.post(f"{US}/{sid}?action=cancel").status_code == 204
    k.assert_item_holds(api, item_id, pkg.kept(), "2")

    # The right manifest: the disk in the item satisfies the new descriptor.
    sid = api.create_session(item_id)
    k.push_all(api, sid, {"vm.mf": k.manifest({"vm.ovf": ovf2, DISK: disk}), "vm.ovf": ovf2})
    assert k.validate(api, sid) == {"has_errors": False, "missing_files": [], "invalid_files": []}
    assert k.complete(api, sid).status_code == 204
    k.assert_item_holds(api, item_id, {"vm.ovf": ovf2, DISK: disk}, "3")


def test_removing_a_referenced_file_makes_it_missing(api: Api) -> None:
    item_id = api.create_item()
    pkg = k.build_package(with_manifest=False)
    api.put_files(item_id, pkg.files)
    sid = api.create_session(item_id)
    ovf2 = k.descriptor([(DISK, len(pkg.files[DISK]))], vm_name="vm2")
    k.push_all(api, sid, {"vm.ovf": ovf2})
    assert api.delete(f"{US}/{sid}/file/{DISK}").status_code == 204
    v = k.validate(api, sid)
    assert v == {"has_errors": True, "missing_files": [DISK], "invalid_files": []}, v
    assert_error(k.complete(api, sid), 400, "NOT_ALLOWED_IN_CURRENT_STATE", DISK)
    assert k.session(api, sid)["state"] == "ACTIVE"
    k.assert_item_holds(api, item_id, pkg.kept(), "2")


# -- item type -----------------------------------------------------------------------------------------------------
def test_item_type_iso_for_a_single_iso(api: Api) -> None:
    item_id = api.create_item()
    api.put_files(item_id, {"disc.iso": b"ISO 9660 image\n"})
    assert k.item_get(api, item_id)["type"] == "iso"


def test_item_type_unchanged_for_an_iso_among_other_files(api: Api) -> None:
    item_id = api.create_item()
    before = k.item_get(api, item_id).get("type")
    api.put_files(item_id, {"disc.iso": b"ISO 9660 image\n", "readme.txt": b"hello\n"})
    it = k.item_get(api, item_id)
    assert it.get("type") == before and before != "iso", it


def test_item_type_becomes_ovf_then_iso(api: Api) -> None:
    item_id = api.create_item()
    api.put_files(item_id, {"disc.iso": b"ISO 9660 image\n"})
    assert k.item_get(api, item_id)["type"] == "iso"
    pkg = k.build_package(with_manifest=False)
    sid = api.create_session(item_id)
    assert api.delete(f"{US}/{sid}/file/disc.iso").status_code == 204
    k.push_all(api, sid, pkg.files)
    api.complete(sid)
    k.assert_item_holds(api, item_id, pkg.kept(), "3")
    assert k.item_get(api, item_id)["type"] == "ovf"
    sid = api.create_session(item_id)
    for name in pkg.kept():
        assert api.delete(f"{US}/{sid}/file/{name}").status_code == 204
    k.push_all(api, sid, {"other.iso": b"another image\n"})
    api.complete(sid)
    assert k.item_get(api, item_id)["type"] == "iso"
