"""OVF packages: the descriptor (`.ovf`), the manifest (`.mf`) and the signature (`.cert`).

Everything here is a pure function of bytes (and, for certificate checks, of the trust store and the clock), so
that the update-session service can call it from any protocol and tests can hold it against hand-made packages.
Parsing is defensive: the descriptor is untrusted XML (no DTDs, no entities, size-capped), manifests come in the
dialects real tools write, and a signature that does not verify is an error of the package, not a warning.
"""

from __future__ import annotations

import base64
import datetime
import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

MAX_DESCRIPTOR = 16 * 1024 * 1024  # a descriptor is metadata; anything bigger is refused, not parsed
MAX_MANIFEST = 1024 * 1024
MAX_CERT = 1024 * 1024

# hashlib names of the digest algorithms a manifest or signature line may name, by their spelling there
_ALGORITHMS = {"SHA1": "sha1", "SHA256": "sha256", "SHA384": "sha384", "SHA512": "sha512"}
_LINE = re.compile(r"^\s*([A-Za-z0-9-]+)\s*\(\s*(.+?)\s*\)\s*=\s*([0-9A-Fa-f]+)\s*$")
_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


class PackageError(Exception):
    """The file is not a valid descriptor, manifest or certificate; the message says why."""


def kind_of(name: str) -> str | None:
    """Which part of an OVF package a file name is: descriptor, manifest, certificate or ova."""
    return {".ovf": "descriptor", ".mf": "manifest", ".cert": "certificate", ".ova": "ova"}.get(
        name[name.rfind(".") :].lower() if "." in name else ""
    )


def _algorithm(spelling: str) -> str | None:
    """`SHA256`, `sha256`, `SHA-256` and `SHA2-256` all name SHA-256 (home-assistant/operating-system#826, #3654)."""
    s = spelling.upper().replace("SHA2-", "SHA").replace("SHA-", "SHA")
    return _ALGORITHMS.get(s)


def _digest_line(line: str, what: str, lineno: int) -> tuple[str, str, str]:
    m = _LINE.match(line)
    if m is None:
        raise PackageError(f"line {lineno} of the {what} is not of the form 'SHA256(name)= hex': {line.strip()[:80]!r}")
    algorithm = _algorithm(m[1])
    if algorithm is None:
        raise PackageError(f"line {lineno} of the {what} names an unsupported digest algorithm {m[1]!r}")
    return algorithm, m[2], m[3].lower()


def parse_descriptor(data: bytes) -> dict[str, Any]:
    """The files an OVF descriptor references: `{"references": {href: size or None}}`."""
    if len(data) > MAX_DESCRIPTOR:
        raise PackageError(f"the OVF descriptor is larger than {MAX_DESCRIPTOR} bytes")
    try:
        root = ElementTree.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as e:
        raise PackageError(
            f"the OVF descriptor is refused: {e.__class__.__name__} (DTDs and entities are not allowed)"
        ) from None
    except ElementTree.ParseError as e:
        raise PackageError(f"the OVF descriptor is not well-formed XML: {e}") from None
    if _local(root.tag) != "Envelope":
        raise PackageError(f"the OVF descriptor's root element is {_local(root.tag)!r}, not 'Envelope'")
    references: dict[str, int | None] = {}
    for refs in root:
        if _local(refs.tag) != "References":
            continue
        for f in refs:
            if _local(f.tag) != "File":
                continue
            attrs = {_local(k): v for k, v in f.attrib.items()}
            href = attrs.get("href")
            if not href:
                raise PackageError("a References/File element of the OVF descriptor has no href")
            if "/" in href or "\\" in href or href in (".", "..") or ":" in href:
                raise PackageError(f"the OVF descriptor references {href!r}, which is not a file of the package")
            size = attrs.get("size")
            try:
                references[href] = int(size) if size is not None else None
            except ValueError:
                raise PackageError(f"the size {size!r} of {href!r} in the OVF descriptor is not a number") from None
    return {"references": references}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_manifest(data: bytes) -> dict[str, Any]:
    """`{"entries": {name: [algorithm, hex]}, "text": base64 of the manifest}` (the text is kept for the
    signature check)."""
    if len(data) > MAX_MANIFEST:
        raise PackageError(f"the manifest is larger than {MAX_MANIFEST} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PackageError("the manifest is not UTF-8 text") from None
    entries: dict[str, list[str]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        algorithm, name, digest = _digest_line(line, "manifest", lineno)
        if len(digest) != _HASHES[algorithm].digest_size * 2:
            raise PackageError(f"line {lineno} of the manifest has a {algorithm.upper()} digest of the wrong length")
        entries[name] = [algorithm, digest]
    if not entries:
        raise PackageError("the manifest lists no files")
    return {"entries": entries, "text": base64.b64encode(data).decode()}


def parse_certificate(data: bytes) -> dict[str, Any]:
    """A `.cert` file: the signature line over the manifest, then the signer's certificate chain in PEM.
    `{"manifest": name, "algorithm": alg, "signature": hex, "chain": [pem, ...]}`."""
    if len(data) > MAX_CERT:
        raise PackageError(f"the certificate file is larger than {MAX_CERT} bytes")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise PackageError("the certificate file is not ASCII text") from None
    signature = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if "(" in line and "=" in line and "-----" not in line:
            signature = _digest_line(line, "certificate file", lineno)
            break
    if signature is None:
        raise PackageError("the certificate file has no signature line 'SHA256(name.mf)= hex'")
    if len(signature[2]) % 2:
        raise PackageError("the signature in the certificate file has an odd number of hex digits")
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise PackageError("the certificate file has no valid PEM certificate") from None
    return {
        "manifest": signature[1],
        "algorithm": signature[0],
        "signature": signature[2],
        "chain": [c.public_bytes(serialization.Encoding.PEM).decode() for c in chain],
    }


def verify_signature(cert: dict[str, Any], manifest: dict[str, Any]) -> str | None:
    """None when the signature in `cert` verifies over the manifest's bytes with the signer's key; else why not."""
    signer = x509.load_pem_x509_certificate(cert["chain"][0].encode())
    key = signer.public_key()
    algorithm = _HASHES[cert["algorithm"]]
    signed = base64.b64decode(manifest["text"])
    signature = bytes.fromhex(cert["signature"])
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, signed, ec.ECDSA(algorithm))
        else:
            return f"the signer's key type {key.__class__.__name__} is not supported"
    except InvalidSignature:
        return "the signature does not verify over the manifest with the signer's certificate"
    return None


@dataclass(frozen=True)
class Warning_:
    type: str
    text: str


def _name(n: x509.Name) -> str:
    """`/C=US/O=Example, Inc./CN=signer`, the OpenSSL one-line form the vendor's docs show."""
    return "".join(f"/{a.rfc4514_attribute_name}={a.value!s}" for a in n)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def certificate_review(chain_pem: list[str], trusted_pem: list[str], now: datetime.datetime) -> dict[str, Any]:
    """The preview of a signature: `certificate_info`, `cert_chain` and the raised warnings (type, text)."""
    chain = [x509.load_pem_x509_certificate(p.encode()) for p in chain_pem]
    trusted = [x509.load_pem_x509_certificate(p.encode()) for p in trusted_pem]
    trusted_fps = {t.fingerprint(hashes.SHA256()) for t in trusted}
    leaf = chain[0]
    self_signed = leaf.issuer == leaf.subject and _issued_by(leaf, leaf)
    warnings: list[Warning_] = []
    if self_signed:
        warnings.append(
            Warning_("SELF_SIGNED_CERTIFICATE", f"The signing certificate {_name(leaf.subject)} is self-signed.")
        )
    expired = [c for c in chain if c.not_valid_after_utc < now]
    if expired:
        warnings.append(
            Warning_(
                "EXPIRED_CERTIFICATE",
                f"The certificate {_name(expired[0].subject)} expired on {expired[0].not_valid_after_utc.isoformat()}.",
            )
        )
    future = [c for c in chain if c.not_valid_before_utc > now]
    if future:
        warnings.append(
            Warning_(
                "NOT_YET_VALID_CERTIFICATE",
                f"The certificate {_name(future[0].subject)} is not "
                f"valid before {future[0].not_valid_before_utc.isoformat()}.",
            )
        )
    if not _anchored(chain, trusted, trusted_fps):
        warnings.append(
            Warning_(
                "UNTRUSTED_CERTIFICATE",
                f"The certificate chain of {_name(leaf.subject)} does not "
                "lead to a trusted certificate of this server.",
            )
        )
    return {
        "certificate_info": {
            "issuer": _name(leaf.issuer),
            "subject": _name(leaf.subject),
            "self_signed": self_signed,
            "x509": chain_pem[0],
        },
        "cert_chain": [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain],
        "warnings": warnings,
    }


def _anchored(chain: list[x509.Certificate], trusted: list[x509.Certificate], trusted_fps: set[bytes]) -> bool:
    """Whether walking up from the signer, each certificate issued by the next, reaches a trusted certificate."""
    cert = chain[0]
    candidates = chain[1:] + trusted
    for _ in range(len(chain) + 1):
        if cert.fingerprint(hashes.SHA256()) in trusted_fps:
            return True
        issuer = next((c for c in candidates if c.subject == cert.issuer and _issued_by(cert, c)), None)
        if issuer is None or issuer is cert:
            return False
        cert = issuer
    return False


def load_trusted(cert_text: str) -> x509.Certificate:
    """A trusted certificate as the API takes it: PEM (the vendor's docs: base64 PEM, one line with escaped
    newlines is also accepted)."""
    text = cert_text.replace("\\n", "\n").strip()
    try:
        return x509.load_pem_x509_certificate(text.encode())
    except ValueError:
        raise PackageError("cert_text is not a PEM-encoded X.509 certificate") from None
