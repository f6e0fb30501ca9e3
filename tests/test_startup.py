"""A calm start (issue 13 point 4): a database that is not reachable yet is tried again with backoff for
`--startup-timeout` seconds, one line per attempt, and the server starts once it answers; what cannot work is one
line on stderr and exit status 2, never a traceback (nor aiohttp's "Unclosed client session")."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import ADMIN_PASSWORD, S3_ENV, create_database, free_port
from forwarder import Forwarder

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG = f"postgresql://postgres@{PG_HOST}:{PG_PORT}"  # the tests' server (scripts/ensure-postgres.sh)


def serve(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **S3_ENV, "CONTENTLIB_ADMIN_PASSWORD": ADMIN_PASSWORD}
    cmd = [sys.executable, "-m", "contentlib", "serve", "--http", "--workers", "1", "--data-dir", str(tmp_path / "d")]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)


def one_line_failure(done: subprocess.CompletedProcess[str], *words: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout and "Unclosed" not in done.stderr, done.stderr
    [line] = done.stderr.strip().splitlines()
    for w in words:
        assert w in line, line
    return line


def test_a_database_that_never_comes_is_one_line_and_exit_2(tmp_path: Path) -> None:
    port = free_port()
    started = time.monotonic()
    done = serve(tmp_path, "--listen", f"127.0.0.1:{free_port()}", "--database",
                 f"postgresql://postgres@127.0.0.1:{port}/x", "--startup-timeout", "2")  # fmt: skip
    assert 1.5 < time.monotonic() - started < 30
    one_line_failure(done, "still not reachable after 2 s", str(port))
    attempts = [line for line in done.stdout.splitlines() if "is not reachable yet" in line]
    assert len(attempts) >= 2 and "attempt 1," in attempts[0], done.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--database", "mysql://x"], ["--database wants a postgresql:// URL"]),
        (["--blobs", "ftp://x"], ["--blobs wants"]),
        (["--blobs", "s3://bucket/p?endpoint=http://127.0.0.1:1"], ["object store", "still not reachable"]),
    ],
)
def test_a_setup_that_cannot_work_is_one_line_and_exit_2(tmp_path: Path, args: list[str], words: list[str]) -> None:
    done = serve(tmp_path, "--listen", f"127.0.0.1:{free_port()}", "--startup-timeout", "1", *args)
    one_line_failure(done, *words)


def test_a_port_in_use_and_a_data_dir_that_is_a_file(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        done = serve(tmp_path, "--listen", f"127.0.0.1:{taken.getsockname()[1]}")
        one_line_failure(done, "already in use")
    finally:
        taken.close()
    (tmp_path / "file").write_text("not a directory")
    done = subprocess.run(
        [sys.executable, "-m", "contentlib", "serve", "--http", "--data-dir", str(tmp_path / "file" / "d")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CONTENTLIB_ADMIN_PASSWORD": ADMIN_PASSWORD},
        check=False,
    )
    one_line_failure(done, "cannot use the data dir")


def test_a_database_that_comes_up_late_is_waited_for(tmp_path: Path) -> None:
    """PostgreSQL (the one the tests use) behind a port that opens 2 s after the server started."""
    url = create_database(PG)
    late = Forwarder(PG_HOST, PG_PORT)  # refuses connections until open()
    dsn = url.replace("127.0.0.1:5432", f"127.0.0.1:{late.port}").replace("localhost:5432", f"127.0.0.1:{late.port}")
    assert str(late.port) in dsn, url
    port = free_port()
    env = {**os.environ, "CONTENTLIB_ADMIN_PASSWORD": ADMIN_PASSWORD}
    cmd = [sys.executable, "-m", "contentlib", "serve", "--http", "--workers", "1", "--data-dir", str(tmp_path / "d"),
           "--listen", f"127.0.0.1:{port}", "--database", dsn, "--startup-timeout", "60"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        time.sleep(2)
        late.open()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.post(f"http://127.0.0.1:{port}/api/session", timeout=5).status_code == 401:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        else:
            raise AssertionError("the server did not start once the database was up")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
        late.cut()
    assert "is not reachable yet" in out and "Traceback" not in out, out
