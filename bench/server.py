"""The contentlib server process a benchmark runs against, and a small /api client for it."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import requests
from urllib3.exceptions import InsecureRequestWarning

from bench.common import REPO, BenchError

ADMIN_USER = "administrator@vsphere.local"
SESSION_HEADER = "vmware-api-session-id"
US = "/api/content/library/item/update-session"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(
        self,
        workdir: Path,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        password: str | None = None,
        tls: bool = False,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = workdir / "data"
        self.log_path = workdir / "server.log"
        self.args = list(args or [])  # extra `serve` flags (--database, --blobs)
        self.env = dict(env or {})
        self.password = password or "Bench-" + secrets.token_urlsafe(12)
        self.tls = tls  # HTTPS with the certificate the server generates into its data dir (govc's default)
        self.port = free_port()
        self.base = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        env = dict(os.environ)
        env.update(self.env)
        env["CONTENTLIB_ADMIN_PASSWORD"] = self.password
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
        cmd = [sys.executable, "-m", "contentlib", "serve", *([] if self.tls else ["--http"])]
        cmd += ["--listen", f"127.0.0.1:{self.port}"]
        cmd += ["--data-dir", str(self.data_dir), *self.args]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(requests.RequestException), warnings.catch_warnings():
                warnings.simplefilter("ignore", InsecureRequestWarning)  # the self-signed certificate
                if requests.get(self.base + "/api/session", timeout=1, verify=not self.tls).status_code == 401:
                    return
            time.sleep(0.05)
        raise BenchError(f"server did not answer in {timeout:.0f} s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


class Api:
    def __init__(self, base: str, password: str) -> None:
        self.base = base
        self.http = requests.Session()
        r = self.http.post(base + "/api/session", auth=(ADMIN_USER, password), timeout=30)
        if r.status_code != 201:
            raise BenchError(f"login: {r.status_code} {r.text[:300]}")
        self.session_id = str(r.json())
        self.http.headers[SESSION_HEADER] = self.session_id

    def call(self, method: str, path: str, expect: int, **kw: Any) -> Any:
        kw.setdefault("timeout", 120)
        r = self.http.request(method, path if path.startswith("http") else self.base + path, **kw)
        if r.status_code != expect:
            raise BenchError(f"{method} {path} -> {r.status_code} (expected {expect}): {r.text[:500]}")
        return r.json() if r.content else None

    def create_library(self) -> str:
        spec = {
            "name": f"bench-{uuid.uuid4().hex[:8]}",
            "type": "LOCAL",
            "storage_backings": [{"type": "OTHER", "storage_uri": "file:///tmp/contentlib-bench"}],
        }
        return str(self.call("POST", "/api/content/local-library", 201, json=spec))

    def create_item(self, library_id: str, item_type: str = "iso") -> str:
        spec = {"library_id": library_id, "name": f"item-{uuid.uuid4().hex[:12]}", "type": item_type}
        return str(self.call("POST", "/api/content/library/item", 201, json=spec))

    def create_session(self, item_id: str) -> str:
        return str(self.call("POST", US, 201, json={"library_item_id": item_id}))

    def add_file(self, sid: str, name: str, size: int, algo: str | None = None, digest: str = "") -> str:
        spec: dict[str, Any] = {"name": name, "source_type": "PUSH", "size": size}
        if algo:
            spec["checksum_info"] = {"algorithm": algo, "checksum": digest}
        info = self.call("POST", f"{US}/{sid}/file", 201, json=spec)
        return str(info["upload_endpoint"]["uri"])

    def session_file(self, sid: str, name: str) -> dict[str, Any]:
        return dict(self.call("GET", f"{US}/{sid}/file/{name}", 200))

    def session_files(self, sid: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"{US}/{sid}/file", 200))

    def validate(self, sid: str) -> dict[str, Any]:
        return dict(self.call("POST", f"{US}/{sid}/file?action=validate", 200))

    def complete(self, sid: str) -> None:
        self.call("POST", f"{US}/{sid}?action=complete", 204)

    def item_sha1(self, item_id: str, name: str) -> str:
        files = self.call("GET", f"/api/content/library/item/{item_id}/file", 200)
        for f in files:
            if f["name"] == name:
                ci = f.get("checksum_info") or {}
                return f"{ci.get('algorithm')}:{ci.get('checksum')}"
        raise BenchError(f"item {item_id} has no file {name!r}: {files}")

    def delete_item(self, item_id: str) -> None:
        with contextlib.suppress(requests.RequestException):
            self.http.delete(f"{self.base}/api/content/library/item/{item_id}", timeout=120)
