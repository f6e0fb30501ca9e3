"""The trusted-certificates store (`com.vmware.content.trusted_certificates`): the anchors against which the
certificate chain of a signed OVF package is checked (UNTRUSTED_CERTIFICATE otherwise)."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import hashes, serialization

from contentlib import errors
from contentlib.model import TrustedCertificateCreateSpec
from contentlib.services import ovf
from contentlib.services.core import Core, Ctx


class TrustedCertificates:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.store = core.store

    async def create(self, ctx: Ctx, spec: TrustedCertificateCreateSpec) -> str:
        """Add a certificate; its id is the SHA-256 of its DER bytes, so adding it again returns the same id."""
        try:
            cert = ovf.load_trusted(spec.cert_text)
        except ovf.PackageError as e:
            raise errors.invalid_argument(
                f"spec.cert_text is not valid: {e}.",
                msg_id="com.vmware.content.trusted_certificates.invalid_certificate",
            ) from None
        cert_id = cert.fingerprint(hashes.SHA256()).hex()
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        await self.store.add_trusted_certificate(cert_id, pem, self.core.now())
        return cert_id

    async def list_all(self, ctx: Ctx) -> dict[str, Any]:
        rows = await self.store.trusted_certificates()
        return {"certificates": [{"certificate": r["id"], "cert_text": r["cert_text"]} for r in rows]}

    async def pems(self) -> list[str]:
        """Every trusted certificate's PEM text: what a subscription to an https publisher trusts besides the
        system's CAs."""
        return [r["cert_text"] for r in await self.core.store.trusted_certificates()]

    async def _get(self, certificate: str) -> dict[str, Any]:
        row = await self.store.trusted_certificate(certificate.lower())
        if row is None:
            raise errors.not_found("trusted certificate", certificate)
        return row

    async def get(self, ctx: Ctx, certificate: str) -> dict[str, Any]:
        return {"cert_text": (await self._get(certificate))["cert_text"]}

    async def delete(self, ctx: Ctx, certificate: str) -> None:
        await self._get(certificate)
        await self.store.delete_trusted_certificate(certificate.lower())
