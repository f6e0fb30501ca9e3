"""Build OVF packages and OVA archives for the black-box tests (issue 3), with `cryptography` and `tarfile`.

Everything here is client-side: descriptors, manifests in the dialects real tools write, key pairs and X.509
certificates (self-signed, a test CA and its leaves, expired, not yet valid; RSA and EC), the `.cert` file as
ovftool writes it (signature line over the manifest bytes, then the signer's chain in PEM, leaf first), and OVA
tar archives (ustar or pax) — plus hostile archives that a server must refuse.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import io
import tarfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import requests
from conftest import Api
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
KeyKind = Literal["rsa", "ec"]
TarFormat = Literal["ustar", "pax"]

WARNING_TYPES = (
    "SELF_SIGNED_CERTIFICATE",
    "EXPIRED_CERTIFICATE",
    "NOT_YET_VALID_CERTIFICATE",
    "UNTRUSTED_CERTIFICATE",
)

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "SHA1": hashes.SHA1(),
    "SHA256": hashes.SHA256(),
    "SHA512": hashes.SHA512(),
}


# -- keys and certificates -----------------------------------------------------------------------------------------
@cache
def _rsa_key(slot: int) -> rsa.RSAPrivateKey:
    """RSA key generation is slow; a few keys per process serve every certificate (subjects stay unique)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


_rsa_next = [0]


def new_key(kind: KeyKind = "rsa") -> PrivateKey:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    _rsa_next[0] = (_rsa_next[0] + 1) % 3
    return _rsa_key(_rsa_next[0])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass
class Signer:
    """A private key, its certificate and the chain a `.cert` file carries (leaf first)."""

    key: PrivateKey
    cert: x509.Certificate
    chain: list[x509.Certificate] = field(default_factory=list)

    @property
    def cn(self) -> str:
        return common_name(self.cert.subject)

    @property
    def pem(self) -> str:
        return pem(self.cert)


def common_name(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def oneline(name: x509.Name) -> str:
    """`/C=US/O=contentlib tests/CN=x`: OpenSSL's one-line form, RDNs in certificate order."""
    return "".join(f"/{a.rfc4514_attribute_name}={a.value!s}" for a in name)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "contentlib tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def make_cert(
    cn: str,
    key: PrivateKey,
    issuer: Signer | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    ca: bool = False,
) -> x509.Certificate:
    """A certificate for `key` named `cn`, signed by `issuer` (self-signed when None)."""
    now = _now()
    subject = _name(cn)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - datetime.timedelta(days=1))
        .not_valid_after(not_after or now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    signing_key = issuer.key if issuer else key
    return builder.sign(signing_key, hashes.SHA256())


def unique_cn(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def self_signed(
    kind: KeyKind = "rsa",
    cn: str | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> Signer:
    key = new_key(kind)
    cert = make_cert(cn or unique_cn("self"), key, None, not_before, not_after)
    return Signer(key, cert, [cert])


def make_ca(kind: KeyKind = "ec", cn: str | None = None) -> Signer:
    key = new_key(kind)
    cert = make_cert(cn or unique_cn("test-ca"), key, None, ca=True)
    return Signer(key, cert, [cert])


def leaf(
    ca: Signer,
    kind: KeyKind = "rsa",
    cn: str | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    with_ca: bool = True,
) -> Signer:
    """A signing certificate issued by `ca`; its chain is [leaf, ca] (or [leaf] with with_ca=False)."""
    key = new_key(kind)
    cert = make_cert(cn or unique_cn("leaf"), key, ca, not_before, not_after)
    return Signer(key, cert, [cert, ca.cert] if with_ca else [cert])


def expired(ca: Signer | None = None, kind: KeyKind = "rsa") -> Signer:
    nb, na = _now() - datetime.timedelta(days=10), _now() - datetime.timedelta(days=1)
    return leaf(ca, kind, not_before=nb, not_after=na) if ca else self_signed(kind, not_before=nb, not_after=na)


def not_yet_valid(ca: Signer | None = None, kind: KeyKind = "rsa") -> Signer:
    nb, na = _now() + datetime.timedelta(days=1), _now() + datetime.timedelta(days=10)
    return leaf(ca, kind, not_before=nb, not_after=na) if ca else self_signed(kind, not_before=nb, not_after=na)


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def der_b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def cert_id(cert: x509.Certificate) -> str:
    """The id the trusted-certificates store gives a certificate: lower-case hex SHA-256 of its DER."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


# -- package files -------------------------------------------------------------------------------------------------
def descriptor(refs: Iterable[tuple[str, int | None]], vm_name: str = "vm") -> bytes:
    """A minimal valid OVF 1.x descriptor whose References/File entries are `refs` (href, ovf:size or None)."""
    files = []
    disks = []
    for i, (href, size) in enumerate(refs, 1):
        size_attr = f' ovf:size="{size}"' if size is not None else ""
        files.append(f'    <File ovf:href="{href}" ovf:id="file{i}"{size_attr}/>')
        if href.endswith(".vmdk"):
            disks.append(
                f'    <Disk ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^20" ovf:diskId="vmdisk{i}" '
                f'ovf:fileRef="file{i}" '
                'ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>'
            )
    text = "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<Envelope vmw:buildId="build-1" xmlns="http://schemas.dmtf.org/ovf/envelope/1" '
            'xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" '
            'xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" '
            'xmlns:vmw="http://www.vmware.com/schema/ovf" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">',
            "  <References>",
            *files,
            "  </References>",
            "  <DiskSection>",
            "    <Info>Virtual disk information</Info>",
            *disks,
            "  </DiskSection>",
            f'  <VirtualSystem ovf:id="{vm_name}">',
            "    <Info>A virtual machine</Info>",
            f"    <Name>{vm_name}</Name>",
            "  </VirtualSystem>",
            "</Envelope>",
            "",
        ]
    )
    return text.encode()


def manifest(
    files: dict[str, bytes],
    algorithm: str = "SHA256",
    spelling: str | None = None,
    style: Literal["openssl", "spaced"] = "openssl",
    upper: bool = False,
    blank_lines: bool = False,
) -> bytes:
    """A manifest listing `files`: `SHA256(name)= hex` (openssl/ovftool) or `SHA256 (name) = hex` (spaced),
    the algorithm spelled `spelling` if given (e.g. SHA-256, SHA2-256), hex in upper case if asked, blank lines
    between entries if asked."""
    label = spelling or algorithm
    lines = []
    for name, data in files.items():
        digest = hashlib.new(algorithm.lower(), data).hexdigest()
        if upper:
            digest = digest.upper()
        lines.append(f"{label}({name})= {digest}" if style == "openssl" else f"{label} ({name}) = {digest}")
    sep = "\n\n" if blank_lines else "\n"
    text = sep.join(lines) + ("\n\n" if blank_lines else "\n")
    return ("\n" + text if blank_lines else text).encode()


def sign(data: bytes, key: PrivateKey, algorithm: str = "SHA256") -> bytes:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), _HASHES[algorithm])
    return key.sign(data, ec.ECDSA(_HASHES[algorithm]))


def cert_file(
    mf_bytes: bytes,
    signer: Signer,
    mf_name: str,
    algorithm: str = "SHA256",
    signature: bytes | None = None,
) -> bytes:
    """The `.cert` file: `SHA256(name.mf)= <hex signature over the manifest bytes>`, then the chain in PEM."""
    sig = signature if signature is not None else sign(mf_bytes, signer.key, algorithm)
    return (f"{algorithm}({mf_name})= {sig.hex()}\n" + "".join(pem(c) for c in signer.chain)).encode()


def disk_bytes(label: str, size: int) -> bytes:
    """Deterministic, distinct content of `size` bytes."""
    seed = hashlib.sha256(label.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


@dataclass
class Package:
    """The files of an OVF package, in the order a client adds them: manifest, certificate, descriptor, disks."""

    base: str
    files: dict[str, bytes]

    @property
    def ovf_name(self) -> str:
        return f"{self.base}.ovf"

    @property
    def mf_name(self) -> str:
        return f"{self.base}.mf"

    @property
    def cert_name(self) -> str:
        return f"{self.base}.cert"

    def kept(self) -> dict[str, bytes]:
        """The files an item keeps after complete: everything but the manifest and the certificate."""
        return {n: d for n, d in self.files.items() if not n.endswith((".mf", ".cert"))}

    def ova_members(self) -> list[tuple[str, bytes]]:
        """The OVA order: descriptor, manifest, certificate, then the rest."""
        order = [self.ovf_name, self.mf_name, self.cert_name]
        first = [(n, self.files[n]) for n in order if n in self.files]
        return first + [(n, d) for n, d in self.files.items() if n not in order]


def build_package(
    base: str = "vm",
    disks: dict[str, bytes] | None = None,
    signer: Signer | None = None,
    with_manifest: bool = True,
    algorithm: str = "SHA256",
    sign_algorithm: str | None = None,
    spelling: str | None = None,
    style: Literal["openssl", "spaced"] = "openssl",
    upper: bool = False,
    blank_lines: bool = False,
    extra_refs: dict[str, int | None] | None = None,
    sizes: dict[str, int] | None = None,
) -> Package:
    """A consistent package: descriptor referencing `disks` (+ `extra_refs`, with `sizes` overriding ovf:size),
    manifest over descriptor and disks, and (with `signer`) the `.cert`."""
    disks = disks if disks is not None else {f"{base}-disk1.vmdk": disk_bytes(base + "1", 3000)}
    refs: dict[str, int | None] = {n: (sizes or {}).get(n, len(d)) for n, d in disks.items()}
    refs.update(extra_refs or {})
    ovf = descriptor(refs.items(), base)
    files: dict[str, bytes] = {}
    if with_manifest:
        mf = manifest({f"{base}.ovf": ovf, **disks}, algorithm, spelling, style, upper, blank_lines)
        files[f"{base}.mf"] = mf
        if signer is not None:
            files[f"{base}.cert"] = cert_file(mf, signer, f"{base}.mf", sign_algorithm or algorithm)
    files[f"{base}.ovf"] = ovf
    files.update(disks)
    return Package(base, files)


# -- hostile descriptors -------------------------------------------------------------------------------------------
MALFORMED_XML = b'<?xml version="1.0"?>\n<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><References>'

XML_BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE Envelope [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><References/><Info>&lol9;</Info></Envelope>
"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References><File ovf:href="&xxe;" ovf:id="file1"/></References>
</Envelope>
"""

NOT_ENVELOPE = b'<?xml version="1.0"?>\n<Project xmlns="http://example.com/x"><References/></Project>\n'


# -- OVA archives --------------------------------------------------------------------------------------------------
def _format(fmt: TarFormat) -> int:
    return tarfile.USTAR_FORMAT if fmt == "ustar" else tarfile.PAX_FORMAT


def _regular(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 1_700_000_000
    return info


def ova(members: Iterable[tuple[str, bytes]], fmt: TarFormat = "ustar") -> bytes:
    """A tar archive of `members` (name, bytes), in that order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=_format(fmt)) as tar:
        for name, data in members:
            tar.addfile(_regular(name, len(data)), io.BytesIO(data))
    return buf.getvalue()


def package_ova(pkg: Package, fmt: TarFormat = "ustar") -> bytes:
    return ova(pkg.ova_members(), fmt)


HostileKind = Literal["traversal", "absolute", "symlink", "hardlink", "directory", "subdir", "truncated", "not-tar"]
HOSTILE_KINDS: tuple[str, ...] = (
    "traversal",
    "absolute",
    "symlink",
    "hardlink",
    "directory",
    "subdir",
    "truncated",
    "not-tar",
)


def hostile_ova(pkg: Package, kind: str) -> bytes:
    """An OVA whose valid members (the package's) come first, then a member no server may accept — or the
    package's archive cut short, or bytes that are not a tar archive at all."""
    members = pkg.ova_members()
    if kind == "truncated":
        whole = ova(members)
        with tarfile.open(fileobj=io.BytesIO(whole), mode="r:") as tar:
            last = tar.getmembers()[-1]
        return whole[: last.offset_data + last.size // 2]  # cut in the middle of the last member's data
    if kind == "not-tar":
        return disk_bytes("not a tar", 4096)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members[:2]:
            tar.addfile(_regular(name, len(data)), io.BytesIO(data))
        bad: tarfile.TarInfo
        payload = b"evil payload\n"
        if kind == "traversal":
            bad = _regular("../evil-contentlib.vmdk", len(payload))
        elif kind == "absolute":
            bad = _regular("/tmp/evil-contentlib.vmdk", len(payload))
        elif kind == "subdir":
            bad = _regular("sub/evil.vmdk", len(payload))
        elif kind == "symlink":
            bad = tarfile.TarInfo("evil.vmdk")
            bad.type = tarfile.SYMTYPE
            bad.linkname = "/etc/passwd"
            payload = b""
        elif kind == "hardlink":
            bad = tarfile.TarInfo("evil.vmdk")
            bad.type = tarfile.LNKTYPE
            bad.linkname = members[0][0]
            payload = b""
        elif kind == "directory":
            bad = tarfile.TarInfo("evil-dir")
            bad.type = tarfile.DIRTYPE
            bad.mode = 0o755
            payload = b""
        else:
            raise ValueError(kind)
        tar.addfile(bad, io.BytesIO(payload) if payload else None)
        for name, data in members[2:]:
            tar.addfile(_regular(name, len(data)), io.BytesIO(data))
    return buf.getvalue()


def tar_names(data: bytes) -> list[str]:
    """Member names as stored (to check a hostile archive really holds what it claims)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return [m.name for m in tar.getmembers()]


# -- talking to the server (shared by test_ovf_package.py and test_ova.py) -----------------------------------------
US = "/api/content/library/item/update-session"
ITEM = "/api/content/library/item"
TRUST = "/api/content/trusted-certificates"
PRIOR = {"old.txt": b"the item's earlier content\n", "vm-disk1.vmdk": b"an earlier disk, replaced by the package\n"}


def add(api: Api, sid: str, name: str, data: bytes | None = None, **extra: Any) -> requests.Response:
    """Add a PUSH file (declaring the size of `data` when given); the raw answer."""
    spec: dict[str, Any] = {"name": name, "source_type": "PUSH"}
    if data is not None:
        spec["size"] = len(data)
    spec.update(extra)
    return api.post(f"{US}/{sid}/file", json=spec)


def push(api: Api, sid: str, name: str, data: bytes, **extra: Any) -> requests.Response:
    """Add a PUSH file and upload `data`; the upload's raw answer."""
    r = add(api, sid, name, data, **extra)
    assert r.status_code == 201, r.text
    return api.put(r.json()["upload_endpoint"]["uri"], data=data)


def push_all(api: Api, sid: str, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        r = push(api, sid, name, data)
        assert r.status_code == 200, f"{name}: {r.status_code} {r.text}"


def session(api: Api, sid: str) -> dict[str, Any]:
    r = api.get(f"{US}/{sid}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def preview(api: Api, sid: str) -> dict[str, Any]:
    s = session(api, sid)
    assert s["state"] == "ACTIVE", s
    return dict(s["preview_info"])


def validate(api: Api, sid: str) -> dict[str, Any]:
    r = api.post(f"{US}/{sid}/file?action=validate")
    assert r.status_code == 200, r.text
    body = dict(r.json())
    assert set(body) == {"has_errors", "missing_files", "invalid_files"}, body
    return body


def session_files(api: Api, sid: str) -> dict[str, dict[str, Any]]:
    r = api.get(f"{US}/{sid}/file")
    assert r.status_code == 200, r.text
    files = {f["name"]: f for f in r.json()}
    assert len(files) == len(r.json()), r.json()
    return files


def complete(api: Api, sid: str) -> requests.Response:
    return api.post(f"{US}/{sid}?action=complete")


def item_get(api: Api, item_id: str) -> dict[str, Any]:
    r = api.get(f"{ITEM}/{item_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def snapshot(api: Api, item_id: str) -> dict[str, Any]:
    """What a client sees of an item's content: versions, type, size, file infos and every file's bytes."""
    it = item_get(api, item_id)
    files = api.item_files(item_id)
    return {
        "content_version": it["content_version"],
        "type": it.get("type"),
        "size": it.get("size"),
        "files": files,
        "bytes": {name: api.download(item_id, name) for name in sorted(files)},
    }


def seeded_item(api: Api) -> tuple[str, dict[str, Any]]:
    """An item that already holds content (PRIOR), so that a failed session can be seen to leave it alone."""
    item_id = api.create_item()
    api.put_files(item_id, PRIOR)
    snap = snapshot(api, item_id)
    assert snap["content_version"] == "2", snap
    assert snap["bytes"] == PRIOR
    return item_id, snap


def assert_item_holds(api: Api, item_id: str, files: dict[str, bytes], content_version: str) -> None:
    """The item's files are exactly `files`: names, sizes, SHA1 and bytes; its content version and type."""
    it = item_get(api, item_id)
    assert it["content_version"] == content_version, it
    listed = api.item_files(item_id)
    assert sorted(listed) == sorted(files), (sorted(listed), sorted(files))
    for name, data in files.items():
        info = listed[name]
        assert info["size"] == len(data), info
        assert info["checksum_info"] == {"algorithm": "SHA1", "checksum": hashlib.sha1(data).hexdigest()}, info
        assert api.download(item_id, name) == data, name
    if any(n.endswith(".ovf") for n in files):
        assert it["type"] == "ovf", it


def warning_types(pv: dict[str, Any]) -> list[str]:
    return sorted(w["type"] for w in pv.get("warnings", []))


def ignore(types: Iterable[str], ignored: bool = True) -> list[dict[str, Any]]:
    return [{"type": t, "ignored": ignored} for t in types]


def assert_preview(
    pv: dict[str, Any],
    state: str,
    signer: Signer | None = None,
    warnings: Iterable[str] = (),
    ignored: Iterable[str] = (),
) -> None:
    """The preview's union rules and content: only `state` unless AVAILABLE; when AVAILABLE the signer's
    certificate_info and cert_chain, and exactly `warnings`, each `ignored` as the session says."""
    if state != "AVAILABLE":
        assert pv == {"state": state}, pv
        return
    assert signer is not None
    assert pv["state"] == "AVAILABLE", pv
    assert set(pv) == {"state", "certificate_info", "cert_chain", "warnings"}, pv
    info = pv["certificate_info"]
    assert set(info) == {"issuer", "subject", "self_signed", "x509"}, info
    # The OpenSSL one-line form of the vendor's example ("/C=US/ST=California/L=Palo Alto/O=VMware, Inc.").
    assert info["subject"] == oneline(signer.cert.subject), info
    assert info["issuer"] == oneline(signer.cert.issuer), info
    assert info["self_signed"] is (signer.cert.issuer == signer.cert.subject), info
    assert x509.load_pem_x509_certificate(info["x509"].encode()) == signer.cert
    assert pv["cert_chain"] == [der_b64(c) for c in signer.chain]
    raised = pv["warnings"]
    assert isinstance(raised, list)
    assert sorted(w["type"] for w in raised) == sorted(set(warnings)), raised
    skip = set(ignored)
    for w in raised:
        assert set(w) == {"type", "message", "ignored"}, w
        msg = w["message"]
        assert isinstance(msg["id"], str) and msg["id"], w
        assert isinstance(msg["default_message"], str) and msg["default_message"], w
        assert isinstance(msg["args"], list), w
        assert w["ignored"] is (w["type"] in skip), (w, skip)


def trust(api: Api, cert: x509.Certificate) -> str:
    r = api.post(TRUST, json={"cert_text": pem(cert)})
    assert r.status_code == 201, r.text
    assert r.json() == cert_id(cert)
    return str(r.json())


def untrust(api: Api, cert: x509.Certificate) -> None:
    r = api.delete(f"{TRUST}/{cert_id(cert)}")
    assert r.status_code == 204, r.text
