"""`contentlib item push | pull` against a real server: an ISO, an OVF folder (signed, with certificate warnings),
an OVA, a URL the server fetches; pulls byte-identical; a connection cut mid-push and mid-pull (a TCP proxy between
the CLI and the server), a corrupted download, Ctrl-C during an upload, and the progress output on a terminal and
off one."""

from __future__ import annotations

import fcntl
import hashlib
import os
import pty
import signal
import struct
import subprocess
import termios
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import ovfkit
import pytest
from clikit import Cli, FileServer, Proxy, download_sessions_of, failed, item_id, sessions_of
from conftest import Api, ServerProcess

BIG = os.urandom(4 * 1024 * 1024 + 17)


@pytest.fixture()
def cli(tmp_path: Path, server: ServerProcess) -> Cli:
    c = Cli(tmp_path)
    assert c.login(server.base).returncode == 0
    return c


@pytest.fixture()
def lib(api: Api) -> str:
    return api.create_library(f"lib-{uuid.uuid4().hex[:8]}")


def lib_name(api: Api, lib_id: str) -> str:
    return str(api.get(f"/api/content/library/{lib_id}").json()["name"])


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_push_an_iso_and_pull_it_back(cli: Cli, api: Api, lib: str, tmp_path: Path) -> None:
    iso = write(tmp_path / "media.iso", BIG)
    done = cli("item", "push", lib, str(iso))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("media.iso  4.0 MiB  ") and lines[0].endswith("/s"), lines  # one line per file
    assert lines[1].startswith("Pushed 1 file(s), 4.0 MiB, to ")
    item = item_id(api, lib, "media")
    assert item is not None
    info = api.get(f"/api/content/library/item/{item}").json()
    assert info["type"] == "iso" and info["size"] == len(BIG)
    assert api.item_files(item)["media.iso"]["checksum_info"]["checksum"] == hashlib.sha1(BIG).hexdigest()
    # Pushing again updates the same item in a new session (the version moves on).
    again = cli.json("item", "push", lib, str(iso))
    assert again["item"]["id"] == item and again["item"]["content_version"] != info["content_version"]
    out = tmp_path / "out"
    pulled = cli.json("item", "pull", item, str(out))
    assert pulled["files"][0]["name"] == "media.iso"
    assert (out / "media.iso").read_bytes() == BIG
    assert sorted(os.listdir(out)) == ["media.iso"]  # no .part left
    assert download_sessions_of(api, item) == []  # the download session was deleted


def test_a_declared_checksum_is_sha256(cli: Cli, api: Api, lib: str, tmp_path: Path) -> None:
    iso = write(tmp_path / "x.bin", b"abc" * 1000)
    sid = cli.json("item", "push", lib, str(iso))["session"]
    files = api.get(f"/api/content/library/item/update-session/{sid}/file").json()
    assert files[0]["checksum_info"] == {"algorithm": "SHA256", "checksum": hashlib.sha256(b"abc" * 1000).hexdigest()}


def signed_package() -> ovfkit.Package:
    return ovfkit.build_package("appliance", signer=ovfkit.self_signed())


def test_push_an_ovf_folder_with_certificate_warnings(cli: Cli, api: Api, lib: str, tmp_path: Path) -> None:
    pkg = signed_package()
    folder = tmp_path / "appliance"
    for n, data in pkg.files.items():
        write(folder / n, data)
    write(folder / "unrelated.txt", b"not part of the package")
    refused = cli("item", "push", lib, str(folder))
    failed(refused, 5, "SELF_SIGNED_CERTIFICATE", "--ignore-warnings")
    assert "warning: SELF_SIGNED_CERTIFICATE" in refused.stderr
    assert item_id(api, lib, "appliance") is None  # the item this push created is gone again
    done = cli("item", "push", lib, str(folder), "--ignore-warnings")
    assert done.returncode == 0, done.stderr
    assert "warning: SELF_SIGNED_CERTIFICATE" in done.stderr
    item = item_id(api, lib, "appliance")
    assert item is not None
    assert api.get(f"/api/content/library/item/{item}").json()["type"] == "ovf"
    names = set(api.item_files(item))
    assert names == {"appliance.ovf", "appliance-disk1.vmdk"}, names
    out = tmp_path / "out"
    cli.ok("item", "pull", f"{lib_name(api, lib)}/appliance", str(out))
    assert (out / "appliance-disk1.vmdk").read_bytes() == pkg.files["appliance-disk1.vmdk"]
    assert (out / "appliance.ovf").is_file()


def test_a_push_replaces_the_items_files_unless_keep(cli: Cli, api: Api, lib: str, tmp_path: Path) -> None:
    for folder, disk in (("one", "one.vmdk"), ("two", "two.vmdk"), ("three", "three.vmdk")):
        for n, data in ovfkit.build_package("vm", disks={disk: ovfkit.disk_bytes(disk, 3000)}).files.items():
            write(tmp_path / folder / n, data)
    item = cli.json("item", "push", lib, str(tmp_path / "one"))["item"]["id"]
    done = cli("item", "push", lib, str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr
    assert "removed one.vmdk." in done.stdout
    assert set(api.item_files(item)) == {"vm.ovf", "two.vmdk"}
    assert cli.json("item", "push", lib, str(tmp_path / "three"), "--keep")["removed"] == []
    assert set(api.item_files(item)) == {"vm.ovf", "two.vmdk", "three.vmdk"}


def test_an_ovf_folder_missing_a_referenced_disk_is_a_usage_error(cli: Cli, lib: str, tmp_path: Path) -> None:
    pkg = ovfkit.build_package("vm")
    write(tmp_path / "vm" / "vm.ovf", pkg.files["vm.ovf"])
    failed(cli("item", "push", lib, str(tmp_path / "vm")), 2, "references vm-disk1.vmdk")
    failed(cli("item", "push", lib, str(tmp_path / "nothing-here")), 2, "neither a file")


def test_push_an_ova(cli: Cli, api: Api, lib: str, tmp_path: Path) -> None:
    pkg = ovfkit.build_package("box")
    ova = write(tmp_path / "box.ova", ovfkit.package_ova(pkg))
    result = cli.json("item", "push", lib, str(ova))
    assert result["item"]["type"] == "ovf"
    files = api.get(f"/api/content/library/item/update-session/{result['session']}/file").json()
    assert not any("checksum_info" in f and f["name"] == "box.ova" for f in files)  # no checksum for an OVA
    item = result["item"]["id"]
    assert set(api.item_files(item)) == {"box.ovf", "box-disk1.vmdk"}
    out = tmp_path / "out"
    cli.ok("item", "pull", item, str(out))
    assert (out / "box-disk1.vmdk").read_bytes() == pkg.files["box-disk1.vmdk"]


@pytest.fixture()
def files(tmp_path: Path) -> Iterator[FileServer]:
    srv = FileServer(tmp_path / "www")
    yield srv
    srv.close()


def test_push_a_url_the_server_fetches(cli: Cli, api: Api, lib: str, tmp_path: Path, files: FileServer) -> None:
    write(tmp_path / "www" / "tools.iso", BIG)
    done = cli("item", "push", lib, files.url("tools.iso"))
    assert done.returncode == 0, done.stderr
    assert "fetched by the server" in done.stdout
    item = item_id(api, lib, "tools")
    assert item is not None
    assert api.download(item, "tools.iso") == BIG
    failed(cli("item", "push", lib, files.url("missing.iso")), 6, "fetch", "missing.iso")
    assert item_id(api, lib, "missing") is None


def test_a_cut_push_is_sent_again_and_completes(
    cli: Cli, api: Api, lib: str, tmp_path: Path, server: ServerProcess
) -> None:
    proxy = Proxy(server.port, "up", cut_after=1024 * 1024)
    try:
        assert cli.login(proxy.base).returncode == 0
        iso = write(tmp_path / "cut.iso", BIG)
        done = cli("item", "push", lib, str(iso))
        assert done.returncode == 0, done.stderr
        assert "cut.iso: the upload was cut" in done.stderr and "sending it again (1/3)" in done.stderr
        assert proxy.cut == 1
    finally:
        proxy.close()
    item = item_id(api, lib, "cut")
    assert item is not None
    assert api.download(item, "cut.iso") == BIG


def test_a_push_cut_every_time_fails_and_leaves_the_item_as_it_was(
    cli: Cli, api: Api, lib: str, tmp_path: Path, server: ServerProcess
) -> None:
    item = api.create_item(lib, "kept")
    api.put_files(item, {"kept.iso": b"old bytes"})
    before = api.get(f"/api/content/library/item/{item}").json()
    proxy = Proxy(server.port, "up", cut_after=1024 * 1024, cuts=100)
    try:
        assert cli.login(proxy.base).returncode == 0
        iso = write(tmp_path / "kept.iso", BIG)
        failed(cli("item", "push", lib, str(iso), "--retries", "1"), 6, "kept.iso", "cut 2 times", "canceled")
    finally:
        proxy.close()
    assert api.get(f"/api/content/library/item/{item}").json()["content_version"] == before["content_version"]
    assert api.download(item, "kept.iso") == b"old bytes"
    assert [s["state"] for s in sessions_of(api, item) if s["state"] != "DONE"] == ["CANCELED"]


def test_a_push_survives_a_server_restart(tmp_path: Path, make_server: Callable[..., ServerProcess]) -> None:
    """The server is killed mid-upload and started again: the client cannot reach it for a while, then finds the
    file in ERROR (the restart fails transfers that were cut) and sends it again in the same session."""
    srv = make_server()
    api = Api(srv.base)
    lib = api.create_library()
    proxy = Proxy(srv.port, "up", delay=0.02)
    try:
        c = Cli(tmp_path)
        assert c.login(proxy.base).returncode == 0
        iso = write(tmp_path / "restart.iso", BIG)
        proc = subprocess.Popen(
            c.command("item", "push", lib, str(iso), "--retries", "8"), env=c.env, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 60
        while (item := item_id(api, lib, "restart")) is None:
            assert time.monotonic() < deadline, "the item was not created"
            time.sleep(0.05)
        wait_transferring(api, item)
        proxy.delay = 0.0
        srv.kill()
        srv.start()
        _, err = proc.communicate(timeout=120)
    finally:
        proxy.close()
    assert proc.returncode == 0, err
    assert "restart.iso: the upload was cut" in err
    api = Api(srv.base)
    assert api.download(item, "restart.iso") == BIG


def test_a_cut_pull_resumes_with_a_range_request(
    cli: Cli, api: Api, lib: str, tmp_path: Path, server: ServerProcess
) -> None:
    item = api.create_item(lib, "big")
    api.put_files(item, {"big.iso": BIG})
    proxy = Proxy(server.port, "down", cut_after=1024 * 1024)
    try:
        assert cli.login(proxy.base).returncode == 0
        done = cli("item", "pull", item, str(tmp_path / "out"))
        assert done.returncode == 0, done.stderr
        assert "big.iso:" in done.stderr and "resuming at byte" in done.stderr
        assert proxy.cut == 1
    finally:
        proxy.close()
    assert (tmp_path / "out" / "big.iso").read_bytes() == BIG


def test_a_corrupted_download_fails_its_checksum(
    cli: Cli, api: Api, lib: str, tmp_path: Path, server: ServerProcess
) -> None:
    item = api.create_item(lib, "bad")
    api.put_files(item, {"bad.iso": BIG})
    proxy = Proxy(server.port, "down", corrupt_at=2 * 1024 * 1024)
    try:
        assert cli.login(proxy.base).returncode == 0
        failed(cli("item", "pull", item, str(tmp_path / "out")), 6, "bad.iso", "checksum mismatch")
    finally:
        proxy.close()
    assert os.listdir(tmp_path / "out") == []  # neither the file nor its .part


def wait_transferring(api: Api, item: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for s in sessions_of(api, item):
            files = api.get(f"/api/content/library/item/update-session/{s['id']}/file").json()
            if s["state"] == "ACTIVE" and any(f["bytes_transferred"] > 0 for f in files):
                return str(s["id"])
        time.sleep(0.1)
    raise AssertionError("the upload did not start")


def test_ctrl_c_cancels_the_update_session(cli: Cli, api: Api, lib: str, tmp_path: Path, server: ServerProcess) -> None:
    item = api.create_item(lib, "slow")
    api.put_files(item, {"slow.iso": b"before"})
    proxy = Proxy(server.port, "up", delay=0.05)
    try:
        assert cli.login(proxy.base).returncode == 0
        iso = write(tmp_path / "slow.iso", BIG)
        proc = subprocess.Popen(
            cli.command("item", "push", lib, str(iso)),
            env=cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        sid = wait_transferring(api, item)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proxy.close()
    assert proc.returncode == 130, (out, err)
    assert f"the update session {sid} was canceled" in err and "Traceback" not in err
    assert api.session(sid)["state"] == "CANCELED"
    assert api.download(item, "slow.iso") == b"before"


def test_ctrl_c_during_a_pull_deletes_the_download_session(
    cli: Cli, api: Api, lib: str, tmp_path: Path, server: ServerProcess
) -> None:
    item = api.create_item(lib, "pulled")
    api.put_files(item, {"pulled.iso": BIG})
    proxy = Proxy(server.port, "down", delay=0.05)
    out = tmp_path / "out"
    try:
        assert cli.login(proxy.base).returncode == 0
        proc = subprocess.Popen(
            cli.command("item", "pull", item, str(out)), env=cli.env, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 60
        while not (out / "pulled.iso.part").is_file() or (out / "pulled.iso.part").stat().st_size == 0:
            assert time.monotonic() < deadline and proc.poll() is None, "the download did not start"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proxy.close()
    assert proc.returncode == 130, err
    assert "the download session" in err and "was deleted" in err and "Traceback" not in err
    assert download_sessions_of(api, item) == []
    assert os.listdir(out) == []  # the .part is gone


def test_a_progress_bar_on_a_terminal(cli: Cli, lib: str, tmp_path: Path) -> None:
    iso = write(tmp_path / "tty.iso", BIG)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen(
        cli.command("item", "push", lib, str(iso)),
        env={**cli.env, "TERM": "xterm-256color"},
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert "tty.iso" in screen and "━" in screen and "/s" in screen, screen  # a bar, its rate
    assert "\x1b[" in screen  # drawn with terminal control sequences (rich), not one line per file
    assert "Pushed 1 file(s)" in screen


def test_a_slow_push_sends_keep_alive_with_its_progress(
    tmp_path: Path, make_server: Callable[..., ServerProcess]
) -> None:
    """A server whose sessions expire after 3 idle seconds: during a slow upload the client sends keep-alive (a
    third of the time left) with `client_progress`, the share of the bytes sent, which the session then shows."""
    srv = make_server(args=["--update-session-timeout", "3"])
    api = Api(srv.base)
    lib = api.create_library()
    proxy = Proxy(srv.port, "up", delay=0.03)
    try:
        c = Cli(tmp_path)
        assert c.login(proxy.base).returncode == 0
        iso = write(tmp_path / "slow.iso", BIG)
        proc = subprocess.Popen(c.command("item", "push", lib, str(iso)), env=c.env, stderr=subprocess.PIPE, text=True)
        progress: list[int] = []
        while proc.poll() is None and not progress:
            item = item_id(api, lib, "slow")
            for s in sessions_of(api, item) if item else []:
                if s["state"] == "ACTIVE" and 0 < s.get("client_progress", 0) < 100:
                    progress.append(s["client_progress"])
            time.sleep(0.1)
        _, err = proc.communicate(timeout=120)
    finally:
        proxy.close()
    assert proc.returncode == 0, err
    assert progress, "no keep-alive with a client_progress was seen during the upload"


def test_an_expired_api_session_says_log_in_again(tmp_path: Path, make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server(args=["--api-session-timeout", "6", "--sweep-interval", "0.2"])
    c = Cli(tmp_path)
    assert c.login(srv.base).returncode == 0
    c.ok("library", "ls")
    time.sleep(8)  # idle past the session timeout
    failed(c("library", "ls"), 3, "UNAUTHENTICATED", "log in again")
