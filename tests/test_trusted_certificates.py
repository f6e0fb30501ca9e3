"""The trusted-certificates store, `/api/content/trusted-certificates` (issue 3, point 7).

Contract: REFERENCE.md A.1 (create → 201 id, get → 200 Info, list → 200 ListResult, delete → 204; NotFound →
404), A.3 (CreateSpec.cert_text: PEM, "a single line string with escape sequence for new-lines"; Info.cert_text;
ListResult), the general decided behaviour (unknown ids → 404 NOT_FOUND naming the id; bad bodies → 400
INVALID_ARGUMENT naming the field) and the lead's decided behaviour for issue 3 (id = lower-case hex SHA-256 of
the DER, the same certificate gives the same id, one-line PEM accepted, bad PEM → 400 INVALID_ARGUMENT, persisted
across restarts, used by UNTRUSTED_CERTIFICATE at preview time).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import ovfkit as k
import pytest
import requests
from conftest import Api, ServerProcess, assert_error
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from ovfkit import TRUST

SELF = "SELF_SIGNED_CERTIFICATE"
UNTRUSTED = "UNTRUSTED_CERTIFICATE"


def _listed(api: Api) -> dict[str, str]:
    r = api.get(TRUST)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"certificates"}, body
    out: dict[str, str] = {}
    for entry in body["certificates"]:
        assert set(entry) == {"certificate", "cert_text"}, entry
        assert entry["certificate"] not in out, body
        out[entry["certificate"]] = entry["cert_text"]
    return out


def _same_cert(text: str, cert: x509.Certificate) -> bool:
    return x509.load_pem_x509_certificate(text.replace("\\n", "\n").encode()) == cert


def _create(api: Api, cert_text: Any) -> requests.Response:
    return api.post(TRUST, json={"cert_text": cert_text})


def test_create_get_list_delete(api: Api) -> None:
    ca = k.make_ca()
    r = _create(api, ca.pem)
    assert r.status_code == 201, r.text
    cid = r.json()
    assert cid == k.cert_id(ca.cert), cid  # lower-case hex SHA-256 of the DER
    r = api.get(f"{TRUST}/{cid}")
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"cert_text"}, r.json()
    assert _same_cert(r.json()["cert_text"], ca.cert)
    listed = _listed(api)
    assert cid in listed and _same_cert(listed[cid], ca.cert)

    r = api.delete(f"{TRUST}/{cid}")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_error(api.get(f"{TRUST}/{cid}"), 404, "NOT_FOUND", cid)
    assert_error(api.delete(f"{TRUST}/{cid}"), 404, "NOT_FOUND", cid)
    assert cid not in _listed(api)


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_rsa_and_ec_certificates(api: Api, kind: k.KeyKind) -> None:
    s = k.self_signed(kind)
    cid = k.trust(api, s.cert)
    assert _same_cert(api.get(f"{TRUST}/{cid}").json()["cert_text"], s.cert)
    k.untrust(api, s.cert)


def test_same_certificate_twice_gives_the_same_id(api: Api) -> None:
    ca = k.make_ca()
    first = _create(api, ca.pem)
    assert first.status_code == 201, first.text
    # The same certificate, spelled differently: CRLF line ends and surrounding blank space.
    again = _create(api, "\n  " + ca.pem.replace("\n", "\r\n") + "\n\n")
    assert again.status_code == 201, again.text
    assert again.json() == first.json() == k.cert_id(ca.cert)
    assert list(_listed(api)).count(first.json()) == 1
    k.untrust(api, ca.cert)
    assert first.json() not in _listed(api)


def test_one_line_pem_with_escaped_newlines(api: Api) -> None:
    ca = k.make_ca()
    one_line = ca.pem.strip().replace("\n", "\\n")
    assert "\n" not in one_line
    r = _create(api, one_line)
    assert r.status_code == 201, r.text
    assert r.json() == k.cert_id(ca.cert)
    assert _same_cert(api.get(f"{TRUST}/{r.json()}").json()["cert_text"], ca.cert)
    k.untrust(api, ca.cert)


def _bad_pems() -> dict[str, Any]:
    ca = k.make_ca()
    body = ca.pem.strip().splitlines()
    key_pem = ca.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "text": "not a certificate",
        "empty": "",
        "private-key": key_pem,
        "truncated": "\n".join(body[:3] + body[-1:]),
        "no-end-line": "\n".join(body[:-1]),
        "bad-base64": "\n".join([body[0], "!!!! not base64 !!!!", body[-1]]),
        "der-base64-without-armour": k.der_b64(ca.cert),
    }


BAD_PEMS = [
    "text",
    "empty",
    "private-key",
    "truncated",
    "no-end-line",
    "bad-base64",
    "der-base64-without-armour",
]


@pytest.mark.parametrize("kind", BAD_PEMS)
def test_bad_pem_is_invalid(api: Api, kind: str) -> None:
    before = _listed(api)
    r = _create(api, _bad_pems()[kind])
    assert_error(r, 400, "INVALID_ARGUMENT")
    assert _listed(api) == before  # nothing was added


@pytest.mark.parametrize(
    "body",
    [{}, {"cert_text": None}, {"cert_text": 5}, {"cert_text": ["x"]}],
    ids=["missing", "null", "int", "list"],
)
def test_bad_body_is_invalid(api: Api, body: dict[str, Any]) -> None:
    assert_error(api.post(TRUST, json=body), 400, "INVALID_ARGUMENT", "cert_text")


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_unknown_id_is_not_found(api: Api, method: str) -> None:
    cid = uuid.uuid4().hex * 2  # 64 hex digits, like a real id
    assert_error(api.request(method, f"{TRUST}/{cid}"), 404, "NOT_FOUND", cid)


def test_requires_authentication(api: Api) -> None:
    anon = Api(api.base, login=False)
    for method, path in [("GET", TRUST), ("POST", TRUST), ("GET", f"{TRUST}/{'0' * 64}")]:
        kw: dict[str, Any] = {"json": {"cert_text": k.make_ca().pem}} if method == "POST" else {}
        assert_error(anon.request(method, path, **kw), 401, "UNAUTHENTICATED")


def test_persisted_across_restarts(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server()
    api = Api(srv.base)
    kept, dropped = k.make_ca(), k.make_ca("rsa")
    kid, did = k.trust(api, kept.cert), k.trust(api, dropped.cert)
    srv.restart()
    api = Api(srv.base)
    listed = _listed(api)
    assert set(listed) == {kid, did}
    assert _same_cert(listed[kid], kept.cert) and _same_cert(listed[did], dropped.cert)
    k.untrust(api, dropped.cert)
    srv.kill()
    srv.start()
    api = Api(srv.base)
    assert set(_listed(api)) == {kid}
    assert _same_cert(api.get(f"{TRUST}/{kid}").json()["cert_text"], kept.cert)
    assert_error(api.get(f"{TRUST}/{did}"), 404, "NOT_FOUND", did)


# -- the store decides UNTRUSTED_CERTIFICATE -------------------------------------------------------------------------
def _signed_session(api: Api, signer: k.Signer, **spec: Any) -> str:
    sid = api.create_session(**spec)
    k.push_all(api, sid, k.build_package(signer=signer).files)
    return sid


def test_adding_and_deleting_the_ca_flips_untrusted(api: Api) -> None:
    ca = k.make_ca()
    s = k.leaf(ca)
    sid = _signed_session(api, s)
    k.assert_preview(k.preview(api, sid), "AVAILABLE", s, (UNTRUSTED,))
    k.trust(api, ca.cert)
    k.assert_preview(k.preview(api, sid), "AVAILABLE", s, ())
    k.untrust(api, ca.cert)
    k.assert_preview(k.preview(api, sid), "AVAILABLE", s, (UNTRUSTED,))
    # And complete follows the store at the time it is called.
    k.trust(api, ca.cert)
    try:
        assert k.complete(api, sid).status_code == 204
    finally:
        k.untrust(api, ca.cert)


def test_trusting_the_ca_of_a_leaf_only_chain(api: Api) -> None:
    """The .cert carries only the leaf: it is anchored through the trusted CA that issued it."""
    ca = k.make_ca("rsa")
    s = k.leaf(ca, "ec", with_ca=False)
    sid = _signed_session(api, s)
    k.assert_preview(k.preview(api, sid), "AVAILABLE", s, (UNTRUSTED,))
    k.trust(api, ca.cert)
    try:
        k.assert_preview(k.preview(api, sid), "AVAILABLE", s, ())
    finally:
        k.untrust(api, ca.cert)


def test_trusting_a_self_signed_signer_leaves_only_self_signed(api: Api) -> None:
    s = k.self_signed("ec")
    sid = _signed_session(api, s)
    k.assert_preview(k.preview(api, sid), "AVAILABLE", s, (SELF, UNTRUSTED))
    k.trust(api, s.cert)
    try:
        k.assert_preview(k.preview(api, sid), "AVAILABLE", s, (SELF,))
    finally:
        k.untrust(api, s.cert)
    k.assert_preview(k.preview(api, sid), "AVAILABLE", s, (SELF, UNTRUSTED))


def test_trusting_an_unrelated_certificate_changes_nothing(api: Api) -> None:
    s = k.leaf(k.make_ca())
    other = k.make_ca()
    sid = _signed_session(api, s)
    k.trust(api, other.cert)
    try:
        k.assert_preview(k.preview(api, sid), "AVAILABLE", s, (UNTRUSTED,))
        # A CA with the same name as the real issuer, but another key, does not anchor the chain either.
        impostor = k.make_ca(cn=k.common_name(s.cert.issuer))
        k.trust(api, impostor.cert)
        try:
            k.assert_preview(k.preview(api, sid), "AVAILABLE", s, (UNTRUSTED,))
        finally:
            k.untrust(api, impostor.cert)
    finally:
        k.untrust(api, other.cert)
