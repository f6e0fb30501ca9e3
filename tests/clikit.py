"""Helpers of the CLI client tests: the real `contentlib` command in a subprocess with its own config dir, and a TCP
proxy between it and the server that can cut a connection, corrupt a byte or go slowly (real faults on a real
socket)."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal

from conftest import ADMIN_PASSWORD, ADMIN_USER, Api, free_port

Direction = Literal["up", "down"]  # up: CLI → server (a push), down: server → CLI (a pull)


class Cli:
    """`cli("library", "ls")` runs `python -m contentlib library ls` with XDG_CONFIG_HOME and HOME in `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = dict(os.environ)
        for name in ("REQUESTS_CA_BUNDLE", "CONTENTLIB_PASSWORD", "CONTENTLIB_USER", "XDG_CONFIG_HOME"):
            self.env.pop(name, None)
        self.env.update({"XDG_CONFIG_HOME": str(root / "config"), "HOME": str(root / "home"), "COLUMNS": "200"})
        (root / "home").mkdir(parents=True, exist_ok=True)

    @property
    def login_file(self) -> Path:
        return self.root / "config" / "contentlib" / "login.json"

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "contentlib", *args]

    def __call__(self, *args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args), env=self.env, input=input, capture_output=True, text=True, timeout=timeout
        )

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def login(self, url: str, *extra: str, password: str = ADMIN_PASSWORD) -> subprocess.CompletedProcess[str]:
        return self("login", url, "-u", ADMIN_USER, "--password-stdin", *extra, input=password + "\n")

    def session_id(self) -> str:
        return str(json.loads(self.login_file.read_text())["session_id"])


def failed(done: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The command exited with `code` and said `words` (case-insensitive) on stderr, with no traceback."""
    assert done.returncode == code, f"exit {done.returncode}, not {code}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    for w in words:
        assert w.lower() in done.stderr.lower(), f"{w!r} not in {done.stderr!r}"
    return done.stderr


class Proxy:
    """A TCP forwarder to 127.0.0.1:`target` in threads. In `direction`, the first `cuts` connections that carry
    more than `cut_after` bytes are closed there (both sides); `corrupt_at` flips the byte at that offset of the
    first connection to reach it; `delay` sleeps that long per 16 KiB forwarded (a slow link)."""

    def __init__(
        self,
        target: int,
        direction: Direction = "up",
        cut_after: int | None = None,
        cuts: int = 1,
        corrupt_at: int | None = None,
        delay: float = 0.0,
    ) -> None:
        self.target, self.direction, self.cut_after, self.cuts = target, direction, cut_after, cuts
        self.corrupt_at, self.delay = corrupt_at, delay
        self.port = free_port()
        self.cut = 0  # connections cut so far
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # the server is down: so is this connection
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, upstream, "up"), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, "down"), daemon=True).start()

    def _take(self, kind: str) -> bool:
        with self.lock:
            if kind == "cut" and self.cut_after is not None and self.cut < self.cuts:
                self.cut += 1
                return True
            if kind == "corrupt" and self.corrupt_at is not None:
                self.corrupt_at = None
                return True
            return False

    def _pipe(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        count = 0
        watched = direction == self.direction
        try:
            while data := src.recv(16384):
                if watched and self.cut_after is not None and count + len(data) > self.cut_after and self._take("cut"):
                    dst.sendall(data[: max(self.cut_after - count, 0)])
                    return
                if watched and self.corrupt_at is not None and count + len(data) > self.corrupt_at:
                    at = self.corrupt_at - count
                    if self._take("corrupt"):
                        data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
                if watched and self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
                count += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self.listener.close()


class FileServer:
    """Files of `root` over plain HTTP (a URL for `item push URL`)."""

    def __init__(self, root: Path) -> None:
        handler = _quiet_handler(root)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _quiet_handler(root: Path) -> Any:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, directory=str(root), **kw)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def item_id(api: Api, library_id: str, name: str) -> str | None:
    r = api.post("/api/content/library/item?action=find", json={"library_id": library_id, "name": name})
    assert r.status_code == 200, r.text
    ids = r.json()
    return str(ids[0]) if ids else None


def sessions_of(api: Api, item: str) -> list[dict[str, Any]]:
    """The update sessions of an item (with their ids)."""
    out = []
    for sid in api.get("/api/content/library/item/update-session").json():
        r = api.get(f"/api/content/library/item/update-session/{sid}")
        if r.status_code == 200 and r.json().get("library_item_id") == item:
            out.append({"id": sid, **r.json()})
    return out


def download_sessions_of(api: Api, item: str) -> list[str]:
    out = []
    for d in api.get("/api/content/library/item/download-session").json():
        r = api.get(f"/api/content/library/item/download-session/{d}")
        if r.status_code == 200 and r.json()["library_item_id"] == item:  # (another test may delete its own)
            out.append(d)
    return out
