"""govc 0.24.2's content-library commands, unmodified, against the server (issue 10 point 4): library.create,
library.import (an ISO; an OVF + VMDK + .mf, whose manifest checksums govc declares and the server verifies;
`-pull`, where the server fetches the file), library.ls, library.info, library.export (byte-identical),
library.cp, library.publish, library.rm, library.session.ls/rm — over HTTPS and plain HTTP.

govc logs in over SOAP (/sdk) and REST (/rest/com/vmware/cis/session), finds the datastore over SOAP, and does
everything else over the legacy /rest dialect; tests/test_govc.py has the inventory commands, docs/rest-dialect.md
the dialect. govc 0.24.2 has no library.update, library.trust.* or library.policy.* commands (they came with
later govmomi releases, which Debian does not package); the same operations are driven by the SDK and Ansible tests.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import ovfkit as k
import pytest
from conftest import Api, ServerProcess
from test_govc import Govc, govc_bin, target  # noqa: F401 - fixtures

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

ISO = os.urandom(3 * 1024 * 1024 + 17)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    """An ISO and an OVF package (descriptor, 4 MiB disk, SHA256 manifest) as govc users have them on disk."""
    src = tmp_path / "src"
    (src / "ovf").mkdir(parents=True)
    (src / "disk.iso").write_bytes(ISO)
    pkg = k.build_package("tiny", disks={"tiny-disk1.vmdk": k.disk_bytes("govc", 4 * 1024 * 1024)})
    for name, data in pkg.files.items():
        (src / "ovf" / name).write_bytes(data)
    return src


@pytest.fixture()
def govc(govc_bin: Path, target: ServerProcess, tmp_path: Path) -> Govc:  # noqa: F811 - fixture use
    return Govc(govc_bin, target.base, tmp_path / "govmomi")


def test_import_ls_info_export_rm(govc: Govc, target: ServerProcess, files: Path, tmp_path: Path) -> None:  # noqa: F811
    lib = f"govc-{uuid.uuid4().hex[:8]}"
    lib_id = govc.run("library.create", "-d", "imports", lib).stdout.strip()
    govc.run("library.import", lib, str(files / "disk.iso"))
    govc.run("library.import", lib, str(files / "ovf" / "tiny.ovf"))
    assert sorted(govc.lines("library.ls", f"/{lib}/*")) == [f"/{lib}/disk", f"/{lib}/tiny"]

    api = Api(target.base)
    items = {
        api.get(f"/api/content/library/item/{i}").json()["name"]: i
        for i in api.get("/api/content/library/item", params={"library_id": lib_id}).json()
    }
    iso = api.get(f"/api/content/library/item/{items['disk']}").json()
    assert (iso["type"], iso["size"], iso["content_version"]) == ("iso", len(ISO), "2")
    ovf_files = api.item_files(items["tiny"])
    assert sorted(ovf_files) == ["tiny-disk1.vmdk", "tiny.ovf"]  # the manifest only declares checksums
    assert ovf_files["tiny-disk1.vmdk"]["size"] == 4 * 1024 * 1024

    info = govc.fields("library.info", f"/{lib}/disk")
    assert info["Name"] == "disk" and info["Type"] == "iso" and info["ID"] == items["disk"]
    assert info["Size"] == "3.0MB"
    library = govc.fields("library.info", "-l", lib)
    assert library["Items"] == "2" and library["Description"] == "imports"

    out = tmp_path / "out"
    out.mkdir()
    govc.run("library.export", f"/{lib}/disk", str(out))
    govc.run("library.export", f"/{lib}/tiny", str(out))
    assert (out / "disk.iso").read_bytes() == ISO
    for name in ("tiny.ovf", "tiny-disk1.vmdk"):
        assert sha256(out / name) == sha256(files / "ovf" / name), name

    govc.run("library.rm", f"/{lib}/disk")
    assert govc.lines("library.ls", f"/{lib}/*") == [f"/{lib}/tiny"]
    govc.run("library.rm", lib)
    assert f"/{lib}" not in govc.lines("library.ls")
    assert api.get(f"/api/content/library/{lib_id}").status_code == 404


def test_import_with_a_wrong_manifest_is_refused(govc: Govc, target: ServerProcess, files: Path) -> None:  # noqa: F811
    """The server verifies the checksums govc declares from the .mf (vcsim ignores them): a disk that does not match
    its manifest fails the import with the vendor's error, and the item gets no content."""
    lib = f"govc-{uuid.uuid4().hex[:8]}"
    lib_id = govc.run("library.create", lib).stdout.strip()
    disk = files / "ovf" / "tiny-disk1.vmdk"
    data = bytearray(disk.read_bytes())
    data[1000] ^= 0xFF
    disk.write_bytes(bytes(data))
    r = govc.run("library.import", lib, str(files / "ovf" / "tiny.ovf"), ok=False)
    # govc reports an upload's status line only; the reason is on the session's file.
    assert r.returncode != 0 and "400 Bad Request" in r.stderr, r.stderr
    api = Api(target.base)
    (item,) = api.get("/api/content/library/item", params={"library_id": lib_id}).json()
    (sid,) = api.get("/api/content/library/item/update-session", params={"library_item_id": item}).json()
    failed = api.get(f"/api/content/library/item/update-session/{sid}/file/tiny-disk1.vmdk").json()
    assert failed["status"] == "ERROR" and "checksum" in failed["error_message"]["default_message"].lower(), failed
    assert api.item_files(item) == {}
    assert api.get(f"/api/content/library/item/{item}").json()["content_version"] == "1"


@pytest.fixture()
def http_source(files: Path) -> Iterator[str]:
    """A plain HTTP file server for `library.import -pull` (govc HEADs the URL itself, then the server GETs it)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = lambda *a, **kw: Quiet(*a, directory=str(files), **kw)  # noqa: E731
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_import_pull(govc: Govc, target: ServerProcess, http_source: str, tmp_path: Path) -> None:  # noqa: F811
    """`-pull`: govc adds a PULL file, completes at once and polls the session until it is no longer ACTIVE
    (REFERENCE.md: for PULL, complete "may return before the changes become visible")."""
    lib = f"govc-{uuid.uuid4().hex[:8]}"
    govc.run("library.create", lib)
    govc.run("library.import", "-pull", lib, f"{http_source}/disk.iso")
    out = tmp_path / "out"
    out.mkdir()
    govc.run("library.export", f"/{lib}/disk", str(out))
    assert (out / "disk.iso").read_bytes() == ISO


def test_cp_and_publish(govc: Govc, target: ServerProcess, files: Path, tmp_path: Path) -> None:  # noqa: F811
    lib = f"govc-{uuid.uuid4().hex[:8]}"
    lib_id = govc.run("library.create", "-pub", lib).stdout.strip()
    govc.run("library.import", lib, str(files / "disk.iso"))
    govc.run("library.cp", "-n", "copy", f"/{lib}/disk", f"/{lib}")
    assert sorted(govc.lines("library.ls", f"/{lib}/*")) == [f"/{lib}/copy", f"/{lib}/disk"]
    out = tmp_path / "out"
    out.mkdir()
    govc.run("library.export", f"/{lib}/copy", str(out))
    assert (out / "disk.iso").read_bytes() == ISO
    govc.run("library.publish", lib)
    govc.run("library.publish", f"/{lib}/copy")
    api = Api(target.base)
    assert api.get(f"/api/content/library/{lib_id}").json()["publish_info"]["published"] is True


def test_session_ls_and_rm(govc: Govc, target: ServerProcess, files: Path) -> None:  # noqa: F811
    lib = f"govc-{uuid.uuid4().hex[:8]}"
    lib_id = govc.run("library.create", lib).stdout.strip()
    api = Api(target.base)
    item = api.create_item(lib_id, name="pending")
    sid = api.create_session(item)
    rows = [line.split() for line in govc.lines("library.session.ls")]
    mine = [row for row in rows if f"/{lib}/pending" in row]
    assert len(mine) == 1 and "Update" in mine[0] and "ACTIVE" in mine[0], rows
    govc.run("library.session.rm", "-f", sid)  # -f: cancel first (an ACTIVE session cannot be deleted)
    assert api.get(f"/api/content/library/item/update-session/{sid}").status_code == 404
