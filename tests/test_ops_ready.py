"""/readyz going to 503 for real and coming back: PostgreSQL and an S3 endpoint (SeaweedFS) behind a TCP forwarder
that is cut (its port closed, its connections broken) and opened again; a local blob directory that disappears and
comes back. /healthz stays 200 meanwhile (the process serves), and /metrics still answers."""

from __future__ import annotations

import os
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import S3_BUCKET, S3_ENV, TEST_PG, TEST_S3, ServerProcess, create_database, drop_database
from forwarder import Forwarder

PG = TEST_PG or "postgresql://postgres@127.0.0.1:5432"  # the tests' server (scripts/ensure-postgres.sh)
S3 = TEST_S3 or "http://127.0.0.1:8333"  # scripts/ensure-seaweedfs.sh


def reachable(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=2).close()
    except OSError:
        return False
    return True


def get(srv: ServerProcess, path: str) -> requests.Response:
    return requests.get(srv.base + path, timeout=30)


def wait_ready_status(srv: ServerProcess, status: int, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = get(srv, "/readyz")
        if r.status_code == status:
            body: dict[str, Any] = r.json()
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz stayed {r.status_code}: {r.text}")
        time.sleep(0.2)


@pytest.fixture
def forwarders() -> Iterator[list[Forwarder]]:
    made: list[Forwarder] = []
    yield made
    for f in made:
        f.cut()


def test_readyz_is_503_while_the_database_is_cut_and_ready_again_after(
    make_server: Callable[..., ServerProcess], forwarders: list[Forwarder]
) -> None:
    if not reachable(PG):
        pytest.skip(f"no PostgreSQL at {PG}")
    url = create_database(PG)
    parts = urllib.parse.urlsplit(url)
    forwarder = Forwarder(parts.hostname or "127.0.0.1", parts.port or 5432)
    forwarders.append(forwarder)
    forwarder.open()
    dsn = url.replace(parts.netloc, f"{parts.username}@127.0.0.1:{forwarder.port}")
    try:
        srv = make_server(["--workers", "1", "--database", dsn])
        assert wait_ready_status(srv, 200)["checks"] == {"database": "ok", "blob_store": "ok"}
        forwarder.cut()
        body = wait_ready_status(srv, 503)
        assert body["status"] == "unavailable" and body["down"] == ["database"], body
        assert body["checks"]["blob_store"] == "ok" and body["checks"]["database"] != "ok"
        assert get(srv, "/healthz").status_code == 200  # alive: it serves
        r = get(srv, "/metrics")
        assert r.status_code == 200 and "contentlib_requests_total" in r.text
        assert "contentlib_active_update_sessions -1.0" in r.text  # not counted
        forwarder.open()
        assert wait_ready_status(srv, 200)["status"] == "ready"
        assert requests.post(srv.base + "/api/session", timeout=30).status_code == 401  # serves the API again
        srv.stop()
    finally:
        drop_database(url)


def test_readyz_is_503_while_the_s3_endpoint_is_cut_and_ready_again_after(
    make_server: Callable[..., ServerProcess], forwarders: list[Forwarder]
) -> None:
    if not reachable(S3):
        pytest.skip(f"no S3 endpoint at {S3}")
    parts = urllib.parse.urlsplit(S3)
    forwarder = Forwarder(parts.hostname or "127.0.0.1", parts.port or 80)
    forwarders.append(forwarder)
    forwarder.open()
    prefix = f"t-ready-{os.urandom(4).hex()}"
    blobs = f"s3://{S3_BUCKET}/{prefix}?endpoint=http://127.0.0.1:{forwarder.port}"
    srv = make_server(["--workers", "1", "--blobs", blobs], env=S3_ENV)
    assert wait_ready_status(srv, 200)["status"] == "ready"
    forwarder.cut()
    body = wait_ready_status(srv, 503)
    assert body["down"] == ["blob_store"] and body["checks"]["database"] == "ok", body
    assert get(srv, "/healthz").status_code == 200
    forwarder.open()
    assert wait_ready_status(srv, 200)["checks"] == {"database": "ok", "blob_store": "ok"}


def test_readyz_is_503_while_the_blob_directory_is_gone(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    root = tmp_path / "blobs"
    srv = make_server(["--workers", "2", "--blobs", root.as_uri()])
    assert wait_ready_status(srv, 200)["status"] == "ready"
    aside = tmp_path / "blobs-aside"
    root.rename(aside)
    body = wait_ready_status(srv, 503)
    assert body["down"] == ["blob_store"] and "FileNotFoundError" in body["checks"]["blob_store"], body
    assert get(srv, "/healthz").status_code == 200
    aside.rename(root)
    assert wait_ready_status(srv, 200)["status"] == "ready"
