"""The OVF package an update session is building: its preview, and what `validate` and `complete` find wrong.

The package is read from the session's rows: the parsed descriptor, manifest and certificate (`meta`, filled in
when each finished uploading) and the digests computed while the bytes streamed (`digests`). Only a digest that
the stream did not compute — a manifest naming an algorithm nobody asked for when the file was uploaded, or a
file the session leaves unchanged — is computed from the stored blob.
"""

from __future__ import annotations

import datetime
from typing import Any

from contentlib import errors
from contentlib.services import ovf, preview
from contentlib.services.core import Core, load_json
from contentlib.storage.blobs import hash_blob
from contentlib.storage.sql import Row, dumps


def parts(files: list[Row]) -> dict[str, Row]:
    """The descriptor, manifest, certificate and OVA among the files the session adds (the last of each kind)."""
    found: dict[str, Row] = {}
    for f in files:
        kind = ovf.kind_of(f["name"])
        if f["op"] == "ADD" and kind is not None:
            found[kind] = f
    return found


def is_ovf_session(files: list[Row]) -> bool:
    return bool(parts(files))


def _message(msg_id: str, text: str, *args: object) -> dict[str, Any]:
    return errors.message(msg_id, text, *args)


class Package:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.store = core.store

    async def _trusted(self) -> list[str]:
        return [r["cert_text"] for r in await self.store.trusted_certificates()]

    async def _review(self, files: list[Row]) -> tuple[str, dict[str, Any] | None]:
        """The preview state, and the certificate review once the package's metadata is in."""
        p = parts(files)
        if "descriptor" not in p and "ova" not in p:
            return "UNAVAILABLE", None
        meta_files = [p[k] for k in ("ova", "descriptor", "manifest", "certificate") if k in p]
        if any(f["status"] == "ERROR" for f in meta_files):
            return "UNAVAILABLE", None
        if any(f["status"] != "READY" for f in meta_files) or "descriptor" not in p:
            return "PREPARING", None
        cert = p.get("certificate")
        if cert is None:
            return "NOT_APPLICABLE", None
        review = ovf.certificate_review(
            load_json(cert["meta"])["chain"], await self._trusted(), datetime.datetime.now(datetime.UTC)
        )
        return "AVAILABLE", review

    async def preview_info(self, files: list[Row], warning_behavior: list[dict[str, Any]] | None) -> dict[str, Any]:
        """`UpdateSessionModel.preview_info` of an ACTIVE session (union rule: `warnings` only when AVAILABLE)."""
        state, review = await self._review(files)
        if review is None:
            return {"state": state}
        return {
            "state": state,
            "certificate_info": review["certificate_info"],
            "cert_chain": review["cert_chain"],
            "warnings": preview.with_ignored(self._warnings(review), warning_behavior),
        }

    @staticmethod
    def _warnings(review: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"type": w.type, "message": _message(f"com.vmware.content.updatesession.preview.{w.type.lower()}", w.text)}
            for w in review["warnings"]
        ]

    async def warnings(self, files: list[Row]) -> list[dict[str, Any]]:
        """The warnings the preview raises (for `complete`, which decides with `preview.blocking_warnings`)."""
        _, review = await self._review(files)
        return [] if review is None else self._warnings(review)

    async def digest_of(self, row: Row, algorithm: str) -> str:
        """A file's digest: the one computed on the upload stream, else read from its blob once and kept."""
        if algorithm == "sha1" and row.get("sha1"):
            return str(row["sha1"])
        digests = load_json(row.get("digests")) or {}
        if algorithm in digests:
            return str(digests[algorithm])
        digest = await hash_blob(self.core.blobs, row["blob_id"], algorithm)
        if "session_id" in row:
            digests[algorithm] = digest
            await self.store.update_session_file(row["session_id"], row["name"], {"digests": dumps(digests)})
        return digest

    async def problems(self, item_id: str, files: list[Row]) -> tuple[list[str], list[dict[str, Any]]]:
        """`missing_files` (referenced by the descriptor or the manifest, not in the session's view) and
        `invalid_files` (failed transfers; sizes that differ from the descriptor; digests that differ from the
        manifest; a signature that does not verify)."""
        invalid: dict[str, dict[str, Any]] = {}
        for f in files:
            if f["op"] == "ADD" and f["status"] == "ERROR":
                invalid[f["name"]] = load_json(f["error_message"]) or _message(
                    "com.vmware.content.updatesession.file.error", f"The transfer of '{f['name']}' failed.", f["name"]
                )
        p = parts(files)
        ready = {k: f for k, f in p.items() if f["status"] == "READY" and f["meta"]}
        if not ready:
            return [], list(self._invalid_list(invalid))
        staged = {f["name"]: f for f in files}
        view: dict[str, Row] = {f["name"]: f for f in await self.store.item_files(item_id) if f["name"] not in staged}
        view.update({f["name"]: f for f in files if f["op"] == "ADD"})
        missing: list[str] = []

        def invalidate(name: str, msg_id: str, text: str) -> None:
            invalid.setdefault(name, _message(f"com.vmware.content.updatesession.package.{msg_id}", text, name))

        if "descriptor" in ready:
            for href, size in load_json(ready["descriptor"]["meta"])["references"].items():
                target = view.get(href)
                if target is None:
                    missing.append(href)
                elif size is not None and target.get("status", "READY") == "READY" and target["size"] != size:
                    invalidate(
                        href, "size_mismatch", f"'{href}' has {target['size']} bytes; the OVF descriptor says {size}."
                    )
        manifest = ready.get("manifest")
        if manifest is not None:
            for name, (algorithm, expected) in load_json(manifest["meta"])["entries"].items():
                target = view.get(name)
                if target is None:
                    if name not in missing:
                        missing.append(name)
                elif target.get("status", "READY") == "READY" and name not in invalid:
                    got = await self.digest_of(target, algorithm)
                    if got != expected:
                        invalidate(
                            name,
                            "digest_mismatch",
                            f"The {algorithm.upper()} digest of '{name}' is {got}; the "
                            f"manifest {manifest['name']} says {expected}.",
                        )
        cert = ready.get("certificate")
        if cert is not None:
            meta = load_json(cert["meta"])
            if manifest is None or meta["manifest"] != manifest["name"]:
                invalidate(
                    cert["name"],
                    "unsigned_manifest",
                    f"The certificate file {cert['name']} signs the manifest "
                    f"'{meta['manifest']}', which is not part of the session.",
                )
            elif (why := ovf.verify_signature(meta, load_json(manifest["meta"]))) is not None:
                invalidate(cert["name"], "bad_signature", f"The signature in {cert['name']} is not valid: {why}.")
        return missing, list(self._invalid_list(invalid))

    @staticmethod
    def _invalid_list(invalid: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"name": name, "error_message": message} for name, message in invalid.items()]


def item_type(names: list[str], current: str | None) -> str | None:
    """The type vCenter reports for an item's content: `ovf` with a descriptor, `iso` for a single ISO image."""
    if any(ovf.kind_of(n) == "descriptor" for n in names):
        return "ovf"
    if len(names) == 1 and names[0].lower().endswith(".iso"):
        return "iso"
    return current
