"""Black-box fixtures: every test talks HTTP to a real `contentlib serve` process.

`server` is one shared server per test worker (fast); `make_server(...)` starts a private one with its own
data dir and settings (for restarts, expiry, and anything that must not see other tests' data).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ADMIN_USER = "administrator@vsphere.local"
ADMIN_PASSWORD = "Admin!23-test"
# The vendor contract lives in ../shared/api beside the repository (also in CI).
API_DIR = Path(__file__).resolve().parents[2] / "shared" / "api"


# With CONTENTLIB_TEST_PG=postgresql://user@host:port (a server where the user may create databases), every
# server process keeps its metadata in a fresh PostgreSQL database of its own instead of SQLite.
TEST_PG = os.environ.get("CONTENTLIB_TEST_PG")
# With CONTENTLIB_TEST_S3=http://host:port (an S3 endpoint; credentials from AWS_* or SeaweedFS's ci/cisecret),
# every server process keeps its blobs under a prefix of its own in the bucket contentlib-test.
TEST_S3 = os.environ.get("CONTENTLIB_TEST_S3")
S3_ENV = {
    "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "ci"),
    "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "cisecret"),
    "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
}
S3_BUCKET = "contentlib-test"


def create_database(pg: str | None = TEST_PG) -> str:
    """A new empty PostgreSQL database on the server `pg` (default TEST_PG); its URL."""
    assert pg
    pg = pg.rstrip("/")
    name = f"cl_test_{uuid.uuid4().hex[:12]}"
    pg_run(f"{pg}/postgres", f'CREATE DATABASE "{name}"')
    return f"{pg}/{name}"


def drop_database(url: str) -> None:
    pg, name = url.rsplit("/", 1)
    pg_run(f"{pg}/postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_run(url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Run one statement on the database at `url` (a fresh connection); the rows as dicts."""

    async def run() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(run())


def s3_client(endpoint: str) -> Any:
    """A boto3 client for the S3 endpoint the tests use (path-style: the endpoint is an IP address; fail fast)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_ENV["AWS_DEFAULT_REGION"],
        config=Config(connect_timeout=3, read_timeout=30, retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A `contentlib serve` child process on a free loopback port. With `pg` (a PostgreSQL server URL) it gets a
    database of its own there, with `s3` (an S3 endpoint) a prefix of its own in S3_BUCKET; both default to the
    CONTENTLIB_TEST_* switches, and explicit `--database`/`--blobs` args win over them."""

    def __init__(
        self,
        data_dir: Path,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        http: bool = True,
        pg: str | None = TEST_PG,
        s3: str | None = TEST_S3,
    ) -> None:
        self.data_dir = data_dir
        self.args = list(args or [])
        self.env = dict(env or {})
        self.http = http
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.s3 = s3.rstrip("/") if s3 else None
        self.database = create_database(pg) if pg and "--database" not in self.args else None
        self.s3_prefix = f"t-{uuid.uuid4().hex[:12]}" if self.s3 and "--blobs" not in self.args else None

    @property
    def base(self) -> str:
        return f"{'http' if self.http else 'https'}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the process without waiting for it to serve (`wait_ready` waits)."""
        env = dict(os.environ)
        env.setdefault("CONTENTLIB_ADMIN_PASSWORD", ADMIN_PASSWORD)
        env.update(self.env)
        cmd = [
            sys.executable,
            "-m",
            "contentlib",
            "serve",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--data-dir",
            str(self.data_dir),
        ]
        if self.http:
            cmd.append("--http")
        if self.database:
            cmd += ["--database", self.database]
        if self.s3_prefix:
            cmd += ["--blobs", f"s3://{S3_BUCKET}/{self.s3_prefix}?endpoint={self.s3}"]
            env.update({k: v for k, v in S3_ENV.items() if k not in self.env})
        cmd += self.args
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                r = requests.get(self.base + "/api/session", timeout=1, verify=False)
                if r.status_code == 401:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def blob_ids(self) -> list[str]:
        """Every blob this server has stored (files under blobs/ in its data dir, or objects under its S3 prefix)."""
        if not self.s3_prefix:
            # os.walk, not rglob: the server may delete a session's folder while it is listed (the sweeper runs).
            root = self.data_dir / "blobs"
            return sorted((Path(d) / f).relative_to(root).as_posix() for d, _, files in os.walk(root) for f in files)
        s3 = self.s3_client()
        prefix = f"{self.s3_prefix}/blobs/"
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=prefix)
        return sorted(o["Key"][len(prefix) :] for page in pages for o in page.get("Contents", []))

    def s3_client(self) -> Any:
        """A boto3 client for this server's S3 endpoint."""
        assert self.s3
        return s3_client(self.s3)

    def store_args(self) -> list[str]:
        """The flags that point a `contentlib user ...` command at this server's data."""
        return ["--data-dir", str(self.data_dir), *(["--database", self.database] if self.database else [])]

    def destroy(self) -> None:
        """Stop for good and drop the server's own database, if it has one."""
        self.stop()
        if self.database:
            drop_database(self.database)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def stacks(self) -> str:
        """What every process of the server is doing (py-spy dump of the supervisor and its workers): for a request
        that hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return "(the server is not running)"
        pids = [self.proc.pid]
        with contextlib.suppress(OSError):
            pids += [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        spy = Path(sys.executable).with_name("py-spy")
        out = []
        for pid in pids:
            r = subprocess.run(
                [str(spy), "dump", "--native", "--pid", str(pid)], capture_output=True, text=True, timeout=60
            )
            out.append(f"--- pid {pid} ---\n{r.stdout}{r.stderr}")
        return "\n".join(out)


class Api:
    """A thin `requests` client for /api with the session header, plus helpers for common set-up."""

    def __init__(self, base: str, user: str = ADMIN_USER, password: str = ADMIN_PASSWORD, login: bool = True) -> None:
        self.base = base
        self.http = requests.Session()
        self.http.verify = False
        self.http.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override verify=False
        self.session_id: str | None = None
        if login:
            self.login(user, password)

    # -- raw verbs -----------------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base + path

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 60)
        return self.http.request(method, self.url(path), **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.request("POST", path, **kw)

    def patch(self, path: str, **kw: Any) -> requests.Response:
        return self.request("PATCH", path, **kw)

    def put(self, path: str, **kw: Any) -> requests.Response:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, **kw)

    def login(self, user: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> str:
        r = self.http.post(self.url("/api/session"), auth=(user, password), timeout=30)
        assert r.status_code == 201, r.text
        self.session_id = r.json()
        self.http.headers["vmware-api-session-id"] = self.session_id
        return self.session_id

    # -- helpers that assert success -------------------------------------------------------------------
    def create_library(self, name: str | None = None, **extra: Any) -> str:
        spec: dict[str, Any] = {
            "name": name or f"lib-{uuid.uuid4().hex[:8]}",
            "type": "LOCAL",
            "storage_backings": [{"type": "OTHER", "storage_uri": "file:///tmp/contentlib-test"}],
        }
        spec.update(extra)
        r = self.post("/api/content/local-library", json=spec)
        assert r.status_code == 201, r.text
        return str(r.json())

    def create_item(self, library_id: str | None = None, name: str | None = None, **extra: Any) -> str:
        spec: dict[str, Any] = {
            "library_id": library_id or self.create_library(),
            "name": name or f"item-{uuid.uuid4().hex[:8]}",
        }
        spec.update(extra)
        r = self.post("/api/content/library/item", json=spec)
        assert r.status_code == 201, r.text
        return str(r.json())

    def create_session(self, item_id: str | None = None, **extra: Any) -> str:
        spec: dict[str, Any] = {"library_item_id": item_id or self.create_item()}
        spec.update(extra)
        r = self.post("/api/content/library/item/update-session", json=spec)
        assert r.status_code == 201, r.text
        return str(r.json())

    def session(self, session_id: str) -> dict[str, Any]:
        r = self.get(f"/api/content/library/item/update-session/{session_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def add_file(
        self, session_id: str, name: str, data: bytes | None = None, checksum: str | None = "SHA1", **extra: Any
    ) -> dict[str, Any]:
        """Add a PUSH file; with `data`, declare its size and checksum (unless checksum=None)."""
        spec: dict[str, Any] = {"name": name, "source_type": "PUSH"}
        if data is not None:
            spec["size"] = len(data)
            if checksum:
                spec["checksum_info"] = {
                    "algorithm": checksum,
                    "checksum": hashlib.new(checksum.lower(), data).hexdigest(),
                }
        spec.update(extra)
        r = self.post(f"/api/content/library/item/update-session/{session_id}/file", json=spec)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def upload(self, session_id: str, name: str, data: bytes, method: str = "PUT", **add: Any) -> None:
        info = self.add_file(session_id, name, data, **add)
        r = self.request(method, info["upload_endpoint"]["uri"], data=data)
        assert r.status_code in (200, 201, 204), r.text

    def complete(self, session_id: str) -> None:
        r = self.post(f"/api/content/library/item/update-session/{session_id}?action=complete")
        assert r.status_code == 204, r.text

    def put_files(self, item_id: str, files: dict[str, bytes]) -> None:
        """One whole update session that uploads `files` into the item and completes it."""
        sid = self.create_session(item_id)
        for name, data in files.items():
            self.upload(sid, name, data)
        self.complete(sid)

    def item_files(self, item_id: str) -> dict[str, dict[str, Any]]:
        r = self.get(f"/api/content/library/item/{item_id}/file")
        assert r.status_code == 200, r.text
        return {f["name"]: f for f in r.json()}

    def download(self, item_id: str, name: str) -> bytes:
        """Read a published file back through a download session."""
        r = self.post("/api/content/library/item/download-session", json={"library_item_id": item_id})
        assert r.status_code == 201, r.text
        ds = r.json()
        r = self.post(f"/api/content/library/item/download-session/{ds}/file?action=prepare", json={"file_name": name})
        assert r.status_code == 200, r.text
        info = r.json()
        assert info["status"] == "PREPARED", info
        r = self.get(info["download_endpoint"]["uri"])
        assert r.status_code == 200, r.text
        self.delete(f"/api/content/library/item/download-session/{ds}")
        return r.content


def self_signed_pem() -> tuple[str, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"rpc-{uuid.uuid4().hex[:8]}.example")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), cert.public_bytes(serialization.Encoding.DER)


def assert_error(r: requests.Response, status: int, error_type: str, *words: str) -> dict[str, Any]:
    """The vendor error shape: status, error_type, and a message that names the problem."""
    assert r.status_code == status, f"{r.status_code} {r.text}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    body = r.json()
    assert body["error_type"] == error_type, body
    assert isinstance(body["messages"], list) and body["messages"], body
    for m in body["messages"]:
        assert isinstance(m["id"], str) and m["id"]
        assert isinstance(m["default_message"], str) and m["default_message"]
        assert isinstance(m["args"], list)
    text = " ".join(m["default_message"] for m in body["messages"]).lower()
    for w in words:
        assert w.lower() in text, f"{w!r} not in {text!r}"
    return dict(body)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("shared") / "data")
    srv.start()
    yield srv
    srv.destroy()


@pytest.fixture()
def make_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def factory(
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        http: bool = True,
        data_dir: Path | None = None,
        start: bool = True,
    ) -> ServerProcess:
        srv = ServerProcess(data_dir or tmp_path / f"data{len(started)}", args, env, http)
        started.append(srv)
        if start:
            srv.start()
        return srv

    yield factory
    for srv in started:
        srv.destroy()


@pytest.fixture()
def api(server: ServerProcess) -> Api:
    return Api(server.base)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How many fuzz cases ran (tests/test_fuzz.py records them per operation, the tests/test_fuzz_soap_*.py modules
    per strategy, also from xdist workers): the total, then per file."""
    counts: dict[str, list[int]] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "teardown":
                continue
            for name, value in getattr(report, "user_properties", ()):
                if name == "fuzz_cases":
                    counts.setdefault(report.nodeid.split("::")[0], []).append(value)
    if counts:
        total, tests = sum(map(sum, counts.values())), sum(map(len, counts.values()))
        each = ", ".join(f"{path}: {sum(c)} over {len(c)}" for path, c in sorted(counts.items()))
        terminalreporter.write_line(f"fuzz: {total} cases over {tests} operations and strategies ({each})")
