"""pyvmomi (from PyPI), as Ansible's community.vmware uses it, against the server over HTTPS and plain HTTP:
SmartConnect (which reads /sdk/vimServiceVersions.xml first), the service content, CurrentTime, the session,
property reads (pyvmomi's Fetch), a PropertyCollector retrieval of the datastore through a traversal, a container
view, InvalidLogin on a bad password, and Disconnect."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from conftest import ADMIN_PASSWORD, ADMIN_USER, TEST_S3, ServerProcess
from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

PC = vmodl.query.PropertyCollector
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # self-signed, on purpose
DATASTORE = "contentlib-s3" if TEST_S3 else "contentlib-disk"


@pytest.fixture(params=["https", "http"])
def target(
    request: pytest.FixtureRequest, server: ServerProcess, make_server: Callable[..., ServerProcess]
) -> ServerProcess:
    return make_server(http=False) if request.param == "https" else server


def connect(srv: ServerProcess, password: str = ADMIN_PASSWORD) -> Any:
    return SmartConnect(
        protocol="https" if srv.base.startswith("https") else "http",
        host="127.0.0.1",
        port=srv.port,
        user=ADMIN_USER,
        pwd=password,
        disableSslCertValidation=True,
    )


@pytest.fixture()
def si(target: ServerProcess) -> Iterator[Any]:
    si = connect(target)
    yield si
    Disconnect(si)


def test_about_time_and_session(si: Any, target: ServerProcess) -> None:
    about = si.content.about
    assert about.name == "VMware vCenter Server"
    assert about.vendor == "VMware, Inc."
    assert about.apiType == "VirtualCenter" and about.apiVersion == "8.0.2.0" and about.version == "8.0.2"
    assert about.productLineId == "vpx"
    assert about.instanceUuid
    now = si.CurrentTime()
    assert now.tzinfo is not None and abs((now - si.serverClock).total_seconds()) < 60
    session = si.content.sessionManager.currentSession
    assert session.userName == ADMIN_USER
    assert session.key == si._stub.GetSessionId()
    # The SOAP session is an API session: the same id works on /api.
    http = requests.Session()
    http.trust_env = False
    r = http.get(target.base + "/api/session", headers={"vmware-api-session-id": session.key}, verify=False, timeout=30)
    assert r.status_code == 200 and r.json()["user"] == ADMIN_USER


def test_datastore_through_a_traversal(si: Any) -> None:
    """The classic pyvmomi retrieval: from the root folder through folders and the datacenter's datastore folder to
    every Datastore, its name and summary."""
    content = si.content
    folder = PC.TraversalSpec(
        name="folder",
        type=vim.Folder,
        path="childEntity",
        skip=False,
        selectSet=[PC.SelectionSpec(name="folder"), PC.SelectionSpec(name="datacenter")],
    )
    datacenter = PC.TraversalSpec(
        name="datacenter",
        type=vim.Datacenter,
        path="datastoreFolder",
        skip=False,
        selectSet=[PC.SelectionSpec(name="folder")],
    )
    spec = PC.FilterSpec(
        objectSet=[PC.ObjectSpec(obj=content.rootFolder, skip=True, selectSet=[folder, datacenter])],
        propSet=[PC.PropertySpec(type=vim.Datastore, pathSet=["name", "summary", "summary.freeSpace"])],
    )
    (found,) = content.propertyCollector.RetrieveContents([spec])
    assert isinstance(found.obj, vim.Datastore)
    props = {p.name: p.val for p in found.propSet}
    assert props["name"] == DATASTORE
    summary = props["summary"]
    assert isinstance(summary, vim.Datastore.Summary)
    assert summary.name == DATASTORE and summary.accessible and summary.type == "OTHER"
    assert 0 < summary.freeSpace <= summary.capacity
    assert props["summary.freeSpace"] == summary.freeSpace  # read from the same summary

    result = content.propertyCollector.RetrievePropertiesEx([spec], PC.RetrieveOptions())
    assert result.token is None and [o.obj for o in result.objects] == [found.obj]

    # Reading properties of the object itself (pyvmomi's Fetch).
    ds = found.obj
    assert ds.name == DATASTORE and ds.summary.url == summary.url
    assert ds.parent.name == "datastore" and ds.parent.parent.name == "Datacenter"
    assert list(ds.vm) == [] and list(ds.host) == []
    datacenter_obj = content.rootFolder.childEntity[0]
    assert isinstance(datacenter_obj, vim.Datacenter) and list(datacenter_obj.datastore) == [ds]
    assert list(datacenter_obj.vmFolder.childEntity) == []


def test_container_view(si: Any) -> None:
    """How community.vmware lists objects: a recursive container view of a type, then its `view`."""
    content = si.content
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.Datastore], True)
    try:
        assert [d.name for d in view.view] == [DATASTORE]
    finally:
        view.Destroy()
    vms = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    assert list(vms.view) == []
    assert content.searchIndex.FindByInventoryPath(f"Datacenter/datastore/{DATASTORE}").name == DATASTORE
    assert content.searchIndex.FindByUuid(None, "4215e1f8-0000-0000-0000-000000000000", True) is None


def test_faults(si: Any) -> None:
    with pytest.raises(vmodl.query.InvalidProperty):
        si.content.propertyCollector.RetrieveContents(
            [
                PC.FilterSpec(
                    objectSet=[PC.ObjectSpec(obj=si.content.rootFolder)],
                    propSet=[PC.PropertySpec(type=vim.Folder, pathSet=["noSuchProperty"])],
                )
            ]
        )
    with pytest.raises(vmodl.fault.ManagedObjectNotFound):
        vim.Datastore("datastore-404", si._stub).name  # noqa: B018 - reading it is the call
    with pytest.raises(vmodl.MethodFault) as e:
        si.content.rootFolder.CreateFolder("x")
    assert "not served" in e.value.msg


def test_bad_password_is_invalid_login(target: ServerProcess) -> None:
    with pytest.raises(vim.fault.InvalidLogin) as e:
        connect(target, password="not-the-password")
    assert "incorrect user name or password" in e.value.msg


def test_disconnect_ends_the_session(target: ServerProcess) -> None:
    si = connect(target)
    sid = si.content.sessionManager.currentSession.key
    Disconnect(si)
    http = requests.Session()
    http.trust_env = False
    r = http.get(target.base + "/api/session", headers={"vmware-api-session-id": sid}, verify=False, timeout=30)
    assert r.status_code == 401
    with pytest.raises(vim.fault.NotAuthenticated):
        si.CurrentTime()
