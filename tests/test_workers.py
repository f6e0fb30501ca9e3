"""`serve --workers N` (issue 11 point 3): several processes on one port, behaving as one server.

Contract: the supervisor forks N workers that accept on the same address (SO_REUSEPORT); each worker is a replica
on the shared database and blob store; the sweeper runs in one process at a time; a logout or a cancel made
through one worker counts at once (a logout) or within a second (a transfer running in another worker stops) in
the others; a worker that dies is replaced; the supervisor's death (even SIGKILL) takes every worker with it;
SIGTERM stops the whole server. Which worker serves a connection is read from /proc (the server-side socket of
the client's port), so the tests that need two different workers get them deterministically.

Every other test file runs with the default, one worker per CPU (two on the CI machine), on both backend pairs.
"""

from __future__ import annotations

import base64
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import ADMIN_PASSWORD, ADMIN_USER, Api, ServerProcess

US = "/api/content/library/item/update-session"


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_for(check: object, timeout: float = 15.0, what: str = "condition") -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _server_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server-side socket of the connection from `client_port` (IPv4 loopback)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            return inode
    return None


def serving_worker(srv: ServerProcess, client: socket.socket) -> int:
    """The pid of the worker that accepted `client`'s connection."""
    client_port = client.getsockname()[1]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        inode = _server_inode(srv.port, client_port)
        if inode is not None:
            for pid in children(srv.proc.pid if srv.proc else 0):
                try:
                    fds = os.listdir(f"/proc/{pid}/fd")
                except FileNotFoundError:
                    continue
                for fd in fds:
                    try:
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                            return pid
                    except OSError:
                        continue
        time.sleep(0.02)
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def connection_to(srv: ServerProcess, worker: int | None = None, not_worker: int | None = None) -> socket.socket:
    """A connection accepted by `worker` (or by any worker but `not_worker`)."""
    for _ in range(200):
        sock = socket.create_connection(("127.0.0.1", srv.port))
        pid = serving_worker(srv, sock)
        if (worker is None or pid == worker) and pid != not_worker:
            return sock
        sock.close()
    raise AssertionError("the kernel never gave a connection to the wanted worker")


def http_request(sock: socket.socket, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> int:
    """One request on a raw keep-alive connection; the response's status (its body is read and dropped)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(head.encode() + b"\r\n" + body)
    reader = sock.makefile("rb")
    status = int(reader.readline().split()[1])
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    reader.read(length)
    return status


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "data", ["--workers", "2", "--sweep-interval", "0.5"])
    srv.start()
    wait_for(lambda: len(children(srv.proc.pid if srv.proc else 0)) == 2, what="two workers")
    yield srv
    srv.destroy()


def test_two_workers_share_the_port_and_both_serve(server: ServerProcess) -> None:
    workers = children(server.proc.pid if server.proc else 0)
    seen = {
        serving_worker(server, s) for s in [socket.create_connection(("127.0.0.1", server.port)) for _ in range(40)]
    }
    assert seen == set(workers)


def test_a_logout_counts_at_once_in_every_worker(server: ServerProcess) -> None:
    api = Api(server.base)
    headers = {"vmware-api-session-id": api.session_id or ""}
    first = connection_to(server)
    other = connection_to(server, not_worker=serving_worker(server, first))
    # Both workers know the session (and keep their answer in their cache for up to two seconds).
    assert http_request(first, "GET", "/api/session", headers) == 200
    assert http_request(other, "GET", "/api/session", headers) == 200
    assert http_request(first, "DELETE", "/api/session", headers) == 204
    assert http_request(other, "GET", "/api/session", headers) == 401


def test_a_cancel_in_one_worker_stops_an_upload_streaming_in_the_other(server: ServerProcess) -> None:
    api = Api(server.base)
    library = api.create_library()
    item = api.create_item(library)
    sid = api.create_session(item)
    size = 64 * 1024 * 1024
    uri = api.add_file(sid, "big.iso", size=size)["upload_endpoint"]["uri"]
    upload = connection_to(server)
    path = uri.split(str(server.port), 1)[1]
    upload.sendall(f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\n\r\n".encode())
    upload.sendall(b"x" * (1024 * 1024))
    stop = threading.Event()

    def trickle() -> None:  # a slow client: the upload is still running when the cancel arrives
        try:
            while not stop.is_set():
                upload.sendall(b"x" * 65536)
                time.sleep(0.05)
        except OSError:
            pass

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        other = connection_to(server, not_worker=serving_worker(server, upload))
        headers = {"vmware-api-session-id": api.session_id or "", "Content-Type": "application/json"}
        assert http_request(other, "POST", f"{US}/{sid}?action=cancel", headers) == 204
        # The worker receiving the bytes sees the session ended at its next progress write (every second).
        upload.settimeout(10)
        status_line = upload.makefile("rb").readline()
        assert status_line.split()[1] == b"400", status_line
    finally:
        stop.set()
        sender.join(5)
        upload.close()
    assert api.get(f"{US}/{sid}").json()["state"] == "CANCELED"
    wait_for(lambda: not [b for b in server.blob_ids() if b.startswith(sid)], what="the canceled upload's blob to go")


def test_the_sweeper_runs_in_one_worker_and_moves_when_it_dies(tmp_path: Path) -> None:
    """SQLite: the sweeper's lock is a file lock beside the database (PostgreSQL's advisory lock, which replicas
    and workers alike take, is tested in test_store_backends.py and test_replicas.py)."""
    srv = ServerProcess(tmp_path / "data", ["--workers", "2", "--sweep-interval", "0.2"], pg=None, s3=None)
    srv.start()
    try:
        lock_path = srv.data_dir / "contentlib.sqlite3.sweeper"

        def holder() -> int | None:
            for pid in children(srv.proc.pid if srv.proc else 0):
                try:
                    fds = os.listdir(f"/proc/{pid}/fd")
                except FileNotFoundError:
                    continue
                for fd in fds:
                    try:
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == str(lock_path):
                            return pid
                    except OSError:
                        continue
            return None

        wait_for(lambda: holder() is not None, what="a worker to hold the sweeper lock")
        first = holder()
        assert first is not None
        with open(lock_path, "a") as f, pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: holder() not in (None, first), what="another worker to take the sweeper over")
        wait_for(lambda: len(children(srv.proc.pid if srv.proc else 0)) == 2, what="the killed worker's successor")
        assert Api(srv.base).get("/api/content/library").status_code == 200
    finally:
        srv.destroy()


def test_a_dead_worker_is_replaced_and_the_server_keeps_serving(server: ServerProcess) -> None:
    api = Api(server.base)
    library = api.create_library()
    victim = children(server.proc.pid if server.proc else 0)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in children(server.proc.pid if server.proc else 0), what="the dead worker reaped")
    wait_for(lambda: len(children(server.proc.pid if server.proc else 0)) == 2, what="its successor")
    for _ in range(20):  # new connections land on both workers: the successor serves too
        assert requests.get(
            f"{server.base}/api/content/library", headers={"vmware-api-session-id": api.session_id or ""}, timeout=10
        ).json() == [library]


def test_killing_the_supervisor_kills_every_worker_and_a_restart_serves_the_same_data(server: ServerProcess) -> None:
    api = Api(server.base)
    library = api.create_library()
    workers = children(server.proc.pid if server.proc else 0)
    server.kill()  # SIGKILL: no chance to stop the workers itself
    wait_for(lambda: not any(alive(pid) for pid in workers), what="the workers to die with the supervisor")
    server.start()
    assert Api(server.base).get("/api/content/library").json() == [library]


def test_sigterm_stops_the_whole_server(server: ServerProcess) -> None:
    assert server.proc is not None
    workers = children(server.proc.pid)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    assert not any(alive(pid) for pid in workers)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2)


def test_login_with_the_admin_password_works_on_every_worker(server: ServerProcess) -> None:
    """Password checks run in a thread pool: each forked worker has a pool of its own (the parent's threads do not
    exist in a child)."""
    for worker in children(server.proc.pid if server.proc else 0):
        sock = connection_to(server, worker=worker)
        basic = base64.b64encode(f"{ADMIN_USER}:{ADMIN_PASSWORD}".encode()).decode()
        sock.settimeout(30)
        assert http_request(sock, "POST", "/api/session", {"Authorization": f"Basic {basic}"}) == 201
        sock.close()


def test_a_restart_waits_for_the_sockets_of_a_previous_run_to_close() -> None:
    """A worker of a killed run that is still exiting holds a SO_REUSEPORT socket on the port: the new run must not
    bind beside it (the kernel would give that socket connections nobody answers), but wait until it closes."""
    from contentlib import workers

    stale = socket.socket()
    stale.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    stale.bind(("127.0.0.1", 0))
    stale.listen(8)
    port = stale.getsockname()[1]
    got: list[socket.socket] = []
    binder = threading.Thread(target=lambda: got.extend(workers.listening_sockets("127.0.0.1", port, 2)))
    binder.start()
    time.sleep(0.5)
    assert not got, "bound beside a socket of a previous run"
    stale.close()
    binder.join(timeout=10)
    assert len(got) == 2 and all(s.getsockname()[1] == port for s in got)
    for s in got:
        s.close()


def test_a_worker_is_forked_only_once_every_other_thread_of_the_supervisor_is_gone(tmp_path: Path) -> None:
    """A thread that `join` has returned for still runs its thread-local destructors (OpenSSL 3 holds a lock there):
    a worker forked then hangs forever on that lock. The fork waits for the kernel to count one thread. Run in a
    process of its own: pytest-xdist's threads run here."""
    script = """
import _thread, os, socket, time
from contentlib import workers

started = time.monotonic()
_thread.start_new_thread(time.sleep, (0.6,))  # a thread `threading` knows nothing of, as a finishing one is
r, w = os.pipe()
sup = workers.Supervisor([socket.socket()], lambda n, s: os.write(w, repr(time.monotonic() - started).encode()))
sup._spawn(0)
os.waitpid(next(iter(sup.pids)), 0)
print(os.read(r, 64).decode())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert float(out.stdout) >= 0.55, f"forked {out.stdout.strip()} s after the start, while a thread still ran"
