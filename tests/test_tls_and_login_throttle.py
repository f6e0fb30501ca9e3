"""TLS (issue 6 point 6): a real certificate with --tls-cert/--tls-key, TLS 1.2 or newer only, and the generated
self-signed certificate kept across restarts. Login throttling (point 7): repeated failures for one user name slow
its next attempts down, without locking out anybody else."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests
from conftest import ADMIN_PASSWORD, ADMIN_USER, ServerProcess
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server-key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("contentlib test CA"))
        .issuer_name(_name("contentlib test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, cert_path, key_path


def peer_certificate(port: int, maximum: ssl.TLSVersion | None = None) -> bytes:
    """The DER certificate the server presents (no verification), optionally capping the TLS version offered."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if maximum is not None:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = maximum
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der


def test_real_certificate_is_served_and_verifies(make_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    ca, cert, key = make_ca_and_server_cert(tmp_path)
    srv = make_server(http=False, args=["--tls-cert", str(cert), "--tls-key", str(key)])
    with requests.Session() as http:
        http.trust_env = False
        r = http.get(srv.base + "/api/session", verify=str(ca), timeout=30)  # verified against the test CA
    assert r.status_code == 401, r.text
    served = x509.load_der_x509_certificate(peer_certificate(srv.port))
    assert served == x509.load_pem_x509_certificate(cert.read_bytes())
    assert "127.0.0.1" in srv.log() or "fingerprint" in srv.log()


def test_only_tls_12_or_newer(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server(http=False)
    assert peer_certificate(srv.port, ssl.TLSVersion.TLSv1_2)  # TLS 1.2 is accepted
    for old in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1):
        try:
            peer_certificate(srv.port, old)
        except (ssl.SSLError, ConnectionResetError):
            continue
        raise AssertionError(f"the server accepted {old.name}")


def test_generated_certificate_is_kept_across_restarts(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server(http=False)
    before = peer_certificate(srv.port)
    srv.restart()
    assert peer_certificate(srv.port) == before
    assert (srv.data_dir / "tls-cert.pem").exists() and (srv.data_dir / "tls-key.pem").exists()
    assert (srv.data_dir / "tls-key.pem").stat().st_mode & 0o077 == 0  # the key is not readable by others


def test_tls_cert_without_key_is_refused(tmp_path: Path) -> None:
    _, cert, _ = make_ca_and_server_cert(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "contentlib", "serve", "--listen", "127.0.0.1:1", "--data-dir", str(tmp_path / "d"),
         "--tls-cert", str(cert)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "--tls-key" in proc.stderr, proc.stderr


def _attempt(base: str, user: str, password: str) -> tuple[int, float]:
    t = time.monotonic()
    r = requests.post(base + "/api/session", auth=(user, password), timeout=60)
    return r.status_code, time.monotonic() - t


def test_failed_logins_slow_down_that_user_only(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server()
    other = "other-user@vsphere.local"
    proc = subprocess.run(
        [sys.executable, "-m", "contentlib", "user", "add", other, *srv.store_args()],
        input="Other-Pw-1\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    times = [_attempt(srv.base, ADMIN_USER, "wrong")[1] for _ in range(6)]
    # The first three failures answer at once; then 0.25 s, 0.5 s, 1 s of deliberate delay.
    assert max(times[:3]) < 0.25 + 0.5, times
    assert times[3] >= 0.25 and times[4] >= 0.5 and times[5] >= 1.0, times
    # Another user is not slowed down, and neither is a differently spelled unknown name.
    status, took = _attempt(srv.base, other, "Other-Pw-1")
    assert status == 201 and took < 1.0, (status, took)
    status, took = _attempt(srv.base, "nobody@vsphere.local", "x")
    assert status == 401 and took < 1.0, (status, took)
    # The right password still works (after its wait), and success clears the count.
    status, took = _attempt(srv.base, ADMIN_USER, ADMIN_PASSWORD)
    assert status == 201 and took >= 2.0, (status, took)
    status, took = _attempt(srv.base, ADMIN_USER, "wrong")
    assert status == 401 and took < 0.25 + 0.5, (status, took)
    assert "throttling" in srv.log(), srv.log()


def test_a_failed_login_with_a_huge_user_name_is_an_authentication_failure(
    make_server: Callable[..., ServerProcess],
) -> None:
    """Failed logins are counted in the database by a digest of the name: a long name (300 KB found by the SOAP
    fuzzer over SOAP; PostgreSQL's index entries hold at most ~2.7 KB) is a plain wrong login, twice in a row."""
    srv = make_server()
    name = secrets.token_urlsafe(3500)  # ~4.7 KB that hardly compress: over the index limit, within a header
    for _ in range(2):
        status, _took = _attempt(srv.base, name, "wrong")
        assert status == 401
