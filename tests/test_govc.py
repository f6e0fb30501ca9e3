"""govc 0.24.2, unmodified (built from Debian's source by scripts/build-govmomi.sh), against the server over plain
HTTP and HTTPS: it logs in over SOAP, reads the inventory (about, ls, find, datastore.info, session.ls), and creates
libraries on the default datastore and on a named one through the legacy /rest API.

A test fails, loudly, when govc cannot be built: these are the clients the SOAP endpoint exists for. Each test has
a GOVMOMI_HOME of its own, where govc caches its SOAP and REST sessions between commands (so the commands after the
first check the cached session with SessionManager.currentSession, as they would against vCenter)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from conftest import ADMIN_PASSWORD, ADMIN_USER, TEST_S3, Api, ServerProcess

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # self-signed, on purpose
DATASTORE = "contentlib-s3" if TEST_S3 else "contentlib-disk"


@pytest.fixture(scope="session")
def govc_bin() -> Path:
    r = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-govmomi.sh")], capture_output=True, text=True, timeout=3600, cwd=REPO
    )
    if r.returncode != 0 or not r.stdout.strip():
        pytest.fail(
            f"govc 0.24.2 could not be built (scripts/build-govmomi.sh exit {r.returncode}):\n{r.stderr[-4000:]}"
        )
    path = Path(r.stdout.strip().splitlines()[-1]) / "govc"
    if not os.access(path, os.X_OK):
        pytest.fail(f"scripts/build-govmomi.sh printed {path.parent}, which holds no govc")
    return path


class Govc:
    def __init__(self, binary: Path, base: str, home: Path, user: str = ADMIN_USER, password: str = ADMIN_PASSWORD):
        scheme, _, host = base.partition("://")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GOVC_", "GOVMOMI_"))}
        env.update(
            GOVC_URL=f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{host}/sdk",
            GOVC_INSECURE="1",  # the server's generated certificate is self-signed
            GOVMOMI_HOME=str(home),
        )
        self.binary = binary
        self.env = env

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([str(self.binary), *args], capture_output=True, text=True, env=self.env, timeout=120)
        if ok:
            assert r.returncode == 0, f"govc {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
        return r

    def lines(self, *args: str) -> list[str]:
        return self.run(*args).stdout.splitlines()

    def fields(self, *args: str) -> dict[str, str]:
        """`Key:  value` lines (govc's info output), stripped."""
        out: dict[str, str] = {}
        for line in self.lines(*args):
            key, sep, value = line.partition(":")
            if sep:
                out.setdefault(key.strip(), value.strip())
        return out


@pytest.fixture(params=["http", "https"])
def target(
    request: pytest.FixtureRequest, server: ServerProcess, make_server: Callable[..., ServerProcess]
) -> ServerProcess:
    return server if request.param == "http" else make_server(http=False)


def test_inventory_commands(govc_bin: Path, target: ServerProcess, tmp_path: Path) -> None:
    govc = Govc(govc_bin, target.base, tmp_path / "govmomi")
    about = govc.fields("about")
    assert about["Name"] == "VMware vCenter Server"
    assert about["Vendor"] == "VMware, Inc."
    assert about["Version"] == "8.0.2" and about["API version"] == "8.0.2.0"
    assert about["API type"] == "VirtualCenter" and about["Product ID"] == "vpx"
    uuid.UUID(about["UUID"])

    assert govc.lines("ls") == ["/Datacenter/vm", "/Datacenter/host", "/Datacenter/datastore", "/Datacenter/network"]
    assert govc.lines("ls", "/") == ["/Datacenter"]
    assert govc.lines("ls", "/Datacenter/datastore") == [f"/Datacenter/datastore/{DATASTORE}"]
    assert govc.lines("ls", "/Datacenter/vm") == []
    found = govc.lines("find")
    assert found[:2] == ["/", "/Datacenter"]
    assert f"/Datacenter/datastore/{DATASTORE}" in found and len(found) == 7
    assert govc.lines("find", "/", "-type", "s") == [f"/Datacenter/datastore/{DATASTORE}"]
    assert govc.lines("find", "/", "-type", "m") == []  # no virtual machines

    info = govc.fields("datastore.info")
    assert info["Name"] == DATASTORE and info["Path"] == f"/Datacenter/datastore/{DATASTORE}"
    assert info["Type"] == "OTHER" and info["URL"].startswith("s3://" if TEST_S3 else "file:///")
    (ds,) = json.loads(govc.run("datastore.info", "-json", DATASTORE).stdout)["Datastores"]
    assert ds["Self"] == {"Type": "Datastore", "Value": "datastore-1"}
    assert ds["Summary"]["Accessible"] is True and 0 < ds["Summary"]["FreeSpace"] <= ds["Summary"]["Capacity"]
    assert ds["Summary"]["Name"] == DATASTORE and ds["Summary"]["Url"] == info["URL"]

    sessions = govc.lines("session.ls")
    assert sessions[0].split() == ["Key", "Name", "Created", "Idle", "Host", "Agent"]
    current = json.loads(govc.run("session.ls", "-json").stdout)["CurrentSession"]
    assert current["UserName"] == ADMIN_USER and current["UserAgent"].startswith("govc/")
    mine = [line for line in sessions[1:] if line.startswith(current["Key"])]
    assert len(mine) == 1 and " . " in mine[0]  # govc marks the session it is using


def test_library_commands(govc_bin: Path, target: ServerProcess, tmp_path: Path) -> None:
    govc = Govc(govc_bin, target.base, tmp_path / "govmomi")
    default, named = f"lib-{uuid.uuid4().hex[:8]}", f"lib-{uuid.uuid4().hex[:8]}"
    default_id = govc.run("library.create", default).stdout.strip()
    named_id = govc.run("library.create", "-ds", DATASTORE, "-d", "on a named datastore", named).stdout.strip()
    uuid.UUID(default_id)
    uuid.UUID(named_id)
    api = Api(target.base)
    for lid in (default_id, named_id):
        model = api.get(f"/api/content/library/{lid}").json()
        assert model["storage_backings"] == [{"type": "DATASTORE", "datastore_id": "datastore-1"}], model
    listed = govc.lines("library.ls")
    assert f"/{default}" in listed and f"/{named}" in listed
    info = govc.fields("library.info", named)
    assert info["Name"] == named and info["ID"] == named_id
    assert info["Description"] == "on a named datastore"
    assert info["DatastoreID"] == DATASTORE  # govc shows the datastore's name, looked up over SOAP
    assert info["Type"] == "DATASTORE"

    r = govc.run("library.create", "-ds", "no-such-datastore", f"lib-{uuid.uuid4().hex[:8]}", ok=False)
    assert r.returncode != 0 and "no-such-datastore" in r.stderr


def test_wrong_password(govc_bin: Path, server: ServerProcess, tmp_path: Path) -> None:
    govc = Govc(govc_bin, server.base, tmp_path / "govmomi", password="not-the-password")
    r = govc.run("about", ok=False)
    assert r.returncode != 0
    assert "Cannot complete login due to an incorrect user name or password" in r.stderr, r.stderr
    assert not list((tmp_path / "govmomi").glob("sessions/*"))  # nothing cached


def test_cached_session_that_ended_is_replaced(govc_bin: Path, server: ServerProcess, tmp_path: Path) -> None:
    """govc keeps its SOAP session in GOVMOMI_HOME; once the session has ended (here: logged out over /api, which
    is the same session), its currentSession is unset and govc logs in again instead of failing."""
    govc = Govc(govc_bin, server.base, tmp_path / "govmomi")
    first = json.loads(govc.run("session.ls", "-json").stdout)["CurrentSession"]["Key"]
    assert json.loads(govc.run("session.ls", "-json").stdout)["CurrentSession"]["Key"] == first  # cached
    http = requests.Session()
    http.trust_env = False
    assert (
        http.delete(server.base + "/api/session", headers={"vmware-api-session-id": first}, timeout=30).status_code
        == 204
    )
    second = json.loads(govc.run("session.ls", "-json").stdout)["CurrentSession"]["Key"]
    assert second != first
    assert govc.lines("ls", "/") == ["/Datacenter"]
