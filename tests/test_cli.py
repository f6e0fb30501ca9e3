"""The `contentlib` client commands (docs/cli.md) against a real server: login and its file, every library, item
and session command, `--json`, TLS choices, and the exit codes that say what failed."""

from __future__ import annotations

import hashlib
import json
import ssl
import stat
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from clikit import Cli, failed
from conftest import ADMIN_PASSWORD, ADMIN_USER, Api, ServerProcess


@pytest.fixture()
def cli(tmp_path: Path, server: ServerProcess) -> Cli:
    c = Cli(tmp_path)
    assert c.login(server.base).returncode == 0
    return c


def name(prefix: str = "lib") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_login_keeps_the_session_in_a_file_only_the_user_reads(tmp_path: Path, server: ServerProcess) -> None:
    c = Cli(tmp_path)
    done = c.login(server.base + "/api/")
    assert done.returncode == 0, done.stderr
    assert "Logged in" in done.stdout
    assert stat.S_IMODE(c.login_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(c.login_file.parent.stat().st_mode) == 0o700
    saved = json.loads(c.login_file.read_text())
    assert saved["url"] == server.base  # normalized: no /api, no trailing slash
    assert Api(server.base, login=False).get("/api/session", headers={"vmware-api-session-id": saved["session_id"]})
    # Logging in again over a file someone opened up rewrites it 0600.
    c.login_file.chmod(0o644)
    assert c.login(server.base).returncode == 0
    assert stat.S_IMODE(c.login_file.stat().st_mode) == 0o600


def test_a_login_file_others_may_read_is_refused(cli: Cli) -> None:
    cli.login_file.chmod(0o640)
    failed(cli("library", "ls"), 3, "may be read by others", "log in again")


def test_a_wrong_password_and_no_login_exit_3(tmp_path: Path, server: ServerProcess) -> None:
    c = Cli(tmp_path)
    failed(c("library", "ls"), 3, "not logged in")
    failed(c.login(server.base, password="wrong"), 3, "UNAUTHENTICATED")
    assert not c.login_file.exists()
    failed(c("login", server.base, "-u", "x"), 2, "no password")  # stdin is no terminal


def test_the_password_from_the_environment(tmp_path: Path, server: ServerProcess) -> None:
    c = Cli(tmp_path)
    c.env["CONTENTLIB_PASSWORD"] = "Admin!23-test"
    c.ok("login", server.base, "-u", "administrator@vsphere.local")
    c.ok("library", "ls")


def test_a_deleted_session_says_log_in_again(cli: Cli, server: ServerProcess) -> None:
    r = Api(server.base, login=False).delete("/api/session", headers={"vmware-api-session-id": cli.session_id()})
    assert r.status_code == 204
    failed(cli("library", "ls"), 3, "UNAUTHENTICATED", "log in again")


def test_logout_deletes_the_api_session_and_the_file(cli: Cli, server: ServerProcess) -> None:
    sid = cli.session_id()
    assert "Logged out" in cli.ok("logout")
    assert not cli.login_file.exists()
    r = Api(server.base, login=False).get("/api/session", headers={"vmware-api-session-id": sid})
    assert r.status_code == 401
    failed(cli("logout"), 3, "not logged in")


def test_library_create_ls_info_rm(cli: Cli, api: Api) -> None:
    lib = name()
    lib_id = cli.ok("library", "create", lib, "-d", "the description").strip()
    assert api.get(f"/api/content/library/{lib_id}").json()["storage_backings"] == [
        {"type": "DATASTORE", "datastore_id": "datastore-1"}
    ]
    table = cli.ok("library", "ls")
    row = next(line for line in table.splitlines() if lib in line)
    assert lib_id in row and "LOCAL" in row and "the description" in row
    listed = cli.json("library", "ls")
    assert {"id": lib_id, "name": lib, "type": "LOCAL"}.items() <= next(x for x in listed if x["id"] == lib_id).items()
    info = cli.ok("library", "info", lib)
    assert "ID:" in info and lib_id in info
    assert cli.json("library", "info", lib_id)["name"] == lib
    assert lib in cli.ok("library", "rm", lib)
    assert api.get(f"/api/content/library/{lib_id}").status_code == 404
    failed(cli("library", "info", lib), 4, "no library")
    failed(cli("library", "rm", lib_id), 4)


def test_library_create_with_a_storage_uri_and_a_datastore_that_does_not_exist(cli: Cli, api: Api) -> None:
    lib_id = cli.json("library", "create", name(), "--storage-uri", "file:///tmp/contentlib-cli")["id"]
    assert api.get(f"/api/content/library/{lib_id}").json()["storage_backings"][0]["type"] == "OTHER"
    failed(cli("library", "create", name(), "--datastore", "datastore-9"), 2, "INVALID_ARGUMENT", "datastore-9")


def test_a_name_two_libraries_share_is_ambiguous(cli: Cli, api: Api) -> None:
    lib = name()
    first, second = api.create_library(lib), api.create_library(lib)
    err = failed(cli("library", "info", lib), 5, "2 libraries are named")
    assert first in err and second in err
    assert cli.json("library", "info", first)["id"] == first


def test_publish_subscribe_and_sync(cli: Cli, api: Api, tmp_path: Path) -> None:
    pub = name("pub")
    cli.ok("library", "create", pub)
    (tmp_path / "x.iso").write_bytes(b"x" * 5000)
    cli.ok("item", "push", pub, str(tmp_path / "x.iso"))
    url = cli.ok("library", "publish", pub, "--password", "Sub-pass-1").strip()
    assert url.endswith("lib.json"), url
    failed(cli("library", "subscribe", url, name("sub"), "--no-auto-sync"), 1, "credentials")
    sub = name("sub")
    sub_id = cli.ok("library", "subscribe", url, sub, "--password", "Sub-pass-1", "--no-auto-sync", "--on-demand")
    info = api.get(f"/api/content/library/{sub_id.strip()}").json()
    assert info["type"] == "SUBSCRIBED"
    assert info["subscription_info"]["on_demand"] is True
    assert info["subscription_info"]["automatic_sync_enabled"] is False
    assert "Synchronized" in cli.ok("library", "sync", sub)
    assert [i["name"] for i in cli.json("item", "ls", sub)] == ["x"]
    assert url in cli.ok("library", "ls")
    failed(cli("library", "publish", pub, "--off"), 2, "current_password")
    off = cli.json("library", "publish", pub, "--off", "--current-password", "Sub-pass-1")
    assert off["publish_info"]["published"] is False
    failed(cli("library", "sync", pub), 2, "not a subscribed library")
    cli.ok("library", "rm", sub)
    assert api.get(f"/api/content/library/{sub_id.strip()}").status_code == 404


def test_item_ls_info_cp_rm(cli: Cli, api: Api, tmp_path: Path) -> None:
    src, dst = name(), name()
    cli.ok("library", "create", src)
    dst_id = cli.ok("library", "create", dst).strip()
    data = b"\x01" * 70000
    (tmp_path / "disk.bin").write_bytes(data)
    cli.ok("item", "push", src, str(tmp_path / "disk.bin"), "--name", "thing", "-d", "a file")
    row = next(line for line in cli.ok("item", "ls", src).splitlines() if "thing" in line)
    assert "68.4 KiB" in row  # human-readable
    items = cli.json("item", "ls", src)
    assert [(i["name"], i["size"], i.get("type")) for i in items] == [("thing", len(data), None)]
    info = cli.ok("item", "info", f"{src}/thing")
    assert "disk.bin" in info and "SHA1:" + hashlib.sha1(data).hexdigest() in info
    by_id = cli.json("item", "info", items[0]["id"])
    assert by_id["files"][0]["name"] == "disk.bin" and by_id["description"] == "a file"
    copy_id = cli.ok("item", "cp", f"{src}/thing", dst, "--name", "copy").strip()
    assert api.get(f"/api/content/library/item/{copy_id}").json()["library_id"] == dst_id
    failed(cli("item", "cp", f"{src}/thing", src), 5, "ALREADY_EXISTS")
    assert "Deleted" in cli.ok("item", "rm", f"{dst}/copy")
    assert api.get(f"/api/content/library/item/{copy_id}").status_code == 404
    failed(cli("item", "info", f"{dst}/copy"), 4, "no item named")
    failed(cli("item", "info", "not-an-id"), 4, "LIBRARY/ITEM")


def test_session_ls_and_cancel(cli: Cli, api: Api) -> None:
    item = api.create_item()
    sid = api.create_session(item)
    listed = cli.json("session", "ls")
    assert any(s["id"] == sid and s["state"] == "ACTIVE" for s in listed)
    assert sid in cli.ok("session", "ls")
    assert "Canceled" in cli.ok("session", "cancel", sid)
    assert api.session(sid)["state"] == "CANCELED"
    failed(cli("session", "cancel", sid), 5, "NOT_ALLOWED_IN_CURRENT_STATE")
    failed(cli("session", "cancel", str(uuid.uuid4())), 4, "NOT_FOUND")
    api.put_files(item, {"f.bin": b"abc"})
    r = api.post("/api/content/library/item/download-session", json={"library_item_id": item})
    ds = r.json()
    assert any(s["id"] == ds for s in cli.json("session", "ls", "--download"))
    assert "Deleted" in cli.ok("session", "cancel", "--download", ds)
    assert api.get(f"/api/content/library/item/download-session/{ds}").status_code == 404


def test_usage_errors_exit_2(cli: Cli) -> None:
    failed(cli("library", "ls", "--bogus"), 2)
    failed(cli("item", "push"), 2)
    failed(cli("login", "ftp://x"), 2, "not an http")
    failed(cli("login", "https://x", "--insecure", "--thumbprint", "AA"), 2, "exclude")


def test_an_unreachable_server_exits_7(tmp_path: Path) -> None:
    from conftest import free_port

    c = Cli(tmp_path)
    failed(c.login(f"http://127.0.0.1:{free_port()}"), 7, "cannot connect")


@pytest.fixture()
def https_server(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    return make_server(http=False)


def thumbprints(srv: ServerProcess) -> tuple[str, str]:
    der = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", srv.port)))
    sha1 = ":".join(f"{b:02X}" for b in hashlib.sha1(der).digest())
    return sha1, hashlib.sha256(der).hexdigest()


def test_https_thumbprint_insecure_and_a_bad_thumbprint(tmp_path: Path, https_server: ServerProcess) -> None:
    sha1, sha256 = thumbprints(https_server)
    c = Cli(tmp_path)
    err = failed(c.login(https_server.base), 7, "not trusted", "--thumbprint")
    assert sha1 in err  # what to pin, as govc shows it
    wrong = ":".join(["AB"] * 20)
    failed(c.login(https_server.base, "--thumbprint", wrong), 7, "does not match")
    assert not c.login_file.exists()
    c.login(https_server.base, "--thumbprint", sha1).check_returncode()
    assert json.loads(c.login_file.read_text())["tls"]["thumbprint"] == sha1
    c.ok("library", "create", name())
    c.login(https_server.base, "--thumbprint", sha256).check_returncode()
    c.ok("library", "ls")
    c.login(https_server.base, "--insecure").check_returncode()
    lib = name()
    c.ok("library", "create", lib)
    (tmp_path / "t.iso").write_bytes(b"t" * 100000)
    c.ok("item", "push", lib, str(tmp_path / "t.iso"))
    c.ok("item", "pull", f"{lib}/t", str(tmp_path / "out"))
    assert (tmp_path / "out" / "t.iso").read_bytes() == b"t" * 100000
    # The server's own certificate as the CA to trust (kept as an absolute path: commands run from anywhere).
    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "server.pem").write_bytes((https_server.data_dir / "tls-cert.pem").read_bytes())
    done = subprocess.run(
        [*c.command("login", https_server.base, "-u", ADMIN_USER, "--password-stdin", "--ca-file", "server.pem")],
        env=c.env,
        input=ADMIN_PASSWORD + "\n",
        capture_output=True,
        text=True,
        cwd=tmp_path / "ca",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(c.login_file.read_text())["tls"]["ca_file"] == str(tmp_path / "ca" / "server.pem")
    assert c.json("library", "info", lib)["name"] == lib
    # A pinned login refuses a server whose certificate is not the one pinned any more.
    saved = json.loads(c.login_file.read_text())
    saved["tls"] = {"insecure": False, "thumbprint": wrong, "ca_file": None}
    c.login_file.write_text(json.dumps(saved))
    failed(c("library", "ls"), 7, "does not match")


def test_a_reader_that_goes_away_is_no_traceback(cli: Cli) -> None:
    """`contentlib library ls | head -1`: stdout closed before the command writes (click pacifies the pipe)."""
    proc = subprocess.Popen(
        cli.command("library", "ls", "--json"), env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert "Traceback" not in err and "BrokenPipe" not in err, err
