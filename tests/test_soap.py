"""The vim25 SOAP API at /sdk (issue 10 point 2), over real HTTP: the service content, one login shared with
/api and /rest, the PropertyCollector's traversal rules, container views, Fetch, SearchIndex, the datastore that
stands for this server's storage, and the faults (each with its vim25 type, HTTP 500 as vCenter).

These run in both passes: the datastore is the blob store (a directory, or S3), and sessions live in the store."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest
import requests
from conftest import ADMIN_PASSWORD, ADMIN_USER, TEST_S3, Api, ServerProcess
from soapkit import (
    PROPERTY_COLLECTOR,
    SERVICE_INSTANCE,
    SESSION_MANAGER,
    SOAP_ENV,
    XSI,
    E,
    Soap,
    SoapError,
    V,
    contents,
    envelope,
    items,
    moref,
    obj_spec,
    prop_spec,
    ref,
    selection,
    spec_set,
    text,
    traversal,
    xsi_type,
)

ROOT = ("Folder", "group-d1")
DATACENTER = ("Datacenter", "datacenter-1")
DATASTORE_FOLDER = ("Folder", "group-s1")


@pytest.fixture()
def soap(server: ServerProcess) -> Soap:
    s = Soap(server.base)
    s.login(ADMIN_USER, ADMIN_PASSWORD)
    return s


def local(tag: str) -> str:
    return tag.rpartition("}")[2]


def datastore_of(soap: Soap) -> tuple[str, str]:
    (ds,) = items(
        soap.retrieve(spec_set(prop_spec("Folder", "childEntity"), obj_spec(DATASTORE_FOLDER)))[DATASTORE_FOLDER][
            "childEntity"
        ]
    )
    return ds


# -- service content, versions, time -------------------------------------------------------------------------------
def test_service_content_before_login(server: ServerProcess) -> None:
    (content,) = Soap(server.base).call("RetrieveServiceContent", SERVICE_INSTANCE)
    assert moref(content.find(V + "rootFolder")) == ROOT
    assert moref(content.find(V + "propertyCollector")) == PROPERTY_COLLECTOR
    assert moref(content.find(V + "sessionManager")) == SESSION_MANAGER
    assert moref(content.find(V + "viewManager")) == ("ViewManager", "ViewManager")
    assert moref(content.find(V + "searchIndex")) == ("SearchIndex", "SearchIndex")
    about_element = content.find(V + "about")
    assert about_element is not None and about_element.get(f"{{{XSI}}}type") == "AboutInfo"
    about = {local(c.tag): c.text for c in about_element}
    assert about["name"] == "VMware vCenter Server"
    assert about["vendor"] == "VMware, Inc."
    assert about["version"] == "8.0.2" and about["apiVersion"] == "8.0.2.0"
    assert about["apiType"] == "VirtualCenter" and about["productLineId"] == "vpx"
    assert about["build"] and about["fullName"] and about["osType"]
    assert about["licenseProductName"] and about["licenseProductVersion"]
    api = Api(server.base)
    r = api.post(
        "/api/content/local-library",
        json={"name": f"g-{uuid.uuid4().hex[:6]}", "storage_backings": [{"type": "OTHER", "storage_uri": "file:///x"}]},
    )
    assert api.get(f"/api/content/library/{r.json()}").json()["server_guid"] == about["instanceUuid"]


def test_service_versions(server: ServerProcess) -> None:
    r = requests.get(server.base + "/sdk/vimServiceVersions.xml", timeout=10)
    assert r.status_code == 200
    root = ET.fromstring(r.content)
    assert root.tag == "namespaces" and root.get("version") == "1.0"
    assert root.findtext("namespace/name") == "urn:vim25"
    assert root.findtext("namespace/version") == "8.0.2.0"
    prior = [v.text for v in root.findall("namespace/priorVersions/version")]
    assert "7.0.3.0" in prior and "6.7" in prior


def test_current_time_needs_a_login(server: ServerProcess, soap: Soap) -> None:
    fault = Soap(server.base).fault("CurrentTime", SERVICE_INSTANCE)
    assert fault.type == "NotAuthenticated"
    assert moref(fault.detail.find(V + "object")) == SERVICE_INSTANCE
    (now,) = soap.call("CurrentTime", SERVICE_INSTANCE)
    assert now.text and now.text.endswith("Z")


# -- login and the one session ---------------------------------------------------------------------------------------
def test_login_returns_the_session_and_sets_the_cookie(server: ServerProcess) -> None:
    soap = Soap(server.base)
    r = soap.post(
        envelope("Login", SESSION_MANAGER, E("userName", text=ADMIN_USER), E("password", text=ADMIN_PASSWORD))
    )
    assert r.status_code == 200, r.text
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith('vmware_soap_session="') and "HttpOnly" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    session = ET.fromstring(r.content).find(f"{{{SOAP_ENV}}}Body/{V}LoginResponse/{V}returnval")
    assert session is not None
    assert text(session, "key") == soap.session_id
    assert text(session, "userName") == ADMIN_USER
    assert text(session, "loginTime").endswith("Z")


@pytest.mark.parametrize(("user", "password"), [(ADMIN_USER, "wrong"), ("nobody@vsphere.local", "x"), ("", "")])
def test_bad_login_is_invalid_login(server: ServerProcess, user: str, password: str) -> None:
    soap = Soap(server.base)
    fault = soap.fault("Login", SESSION_MANAGER, E("userName", text=user), E("password", text=password))
    assert fault.type == "InvalidLogin"
    assert "incorrect user name or password" in fault.message
    assert soap.session_id is None


def test_current_session_is_unset_before_login(server: ServerProcess) -> None:
    """govmomi checks a cached session by reading currentSession: before login it is unset, not a fault."""
    found = Soap(server.base).retrieve(
        spec_set(prop_spec("SessionManager", "currentSession"), obj_spec(SESSION_MANAGER))
    )
    assert found == {SESSION_MANAGER: {}}
    stale = Soap(server.base)
    stale.http.cookies.set("vmware_soap_session", "0" * 32)
    assert stale.retrieve(spec_set(prop_spec("SessionManager", "currentSession"), obj_spec(SESSION_MANAGER))) == {
        SESSION_MANAGER: {}
    }


def test_inventory_needs_a_login(server: ServerProcess) -> None:
    fault = Soap(server.base).fault(
        "RetrieveProperties", PROPERTY_COLLECTOR, spec_set(prop_spec("Folder", "name"), obj_spec(ROOT))
    )
    assert fault.type == "NotAuthenticated"
    assert moref(fault.detail.find(V + "object")) == ROOT


def test_current_session_and_session_list(server: ServerProcess, soap: Soap) -> None:
    other = Soap(server.base)
    other.login(ADMIN_USER, ADMIN_PASSWORD)
    props = soap.retrieve(spec_set(prop_spec("SessionManager", all_=True), obj_spec(SESSION_MANAGER)))[SESSION_MANAGER]
    current = props["currentSession"]
    assert xsi_type(current) == "UserSession"
    assert text(current, "key") == soap.session_id and text(current, "userName") == ADMIN_USER
    assert text(current, "ipAddress") == "127.0.0.1"
    assert xsi_type(props["sessionList"]) == "ArrayOfUserSession"
    keys = [text(s, "key") for s in props["sessionList"]]
    assert soap.session_id in keys and other.session_id in keys
    assert props["defaultLocale"].text == "en"


def test_soap_session_is_an_api_session(server: ServerProcess) -> None:
    """One login: the SOAP session id is a vmware-api-session-id on /api and /rest, and logging out over SOAP ends it
    everywhere."""
    soap = Soap(server.base)
    soap.login(ADMIN_USER, ADMIN_PASSWORD)
    sid = soap.session_id
    assert sid
    headers = {"vmware-api-session-id": sid}
    api = Api(server.base, login=False)
    r = api.get("/api/session", headers=headers)
    assert r.status_code == 200 and r.json()["user"] == ADMIN_USER, r.text
    r = api.post("/rest/com/vmware/cis/session?~action=get", headers=headers)
    assert r.status_code == 200 and r.json()["value"]["user"] == ADMIN_USER, r.text
    assert api.get("/api/content/library", headers=headers).status_code == 200
    assert soap.call("Logout", SESSION_MANAGER) == []
    assert api.get("/api/session", headers=headers).status_code == 401
    assert api.post("/rest/com/vmware/cis/session?~action=get", headers=headers).status_code == 401
    assert soap.fault("CurrentTime", SERVICE_INSTANCE).type == "NotAuthenticated"


def test_api_session_is_a_soap_session(server: ServerProcess, api: Api) -> None:
    soap = Soap(server.base)
    soap.http.cookies.set("vmware_soap_session", api.session_id)
    found = soap.retrieve(spec_set(prop_spec("SessionManager", "currentSession"), obj_spec(SESSION_MANAGER)))
    assert text(found[SESSION_MANAGER]["currentSession"], "key") == api.session_id
    assert api.delete("/api/session").status_code == 204
    assert soap.fault("CurrentTime", SERVICE_INSTANCE).type == "NotAuthenticated"


def test_session_is_active(server: ServerProcess, soap: Soap) -> None:
    other = Soap(server.base)
    other.login(ADMIN_USER, ADMIN_PASSWORD)

    def active(sid: str, user: str = ADMIN_USER) -> str | None:
        (r,) = soap.call("SessionIsActive", SESSION_MANAGER, E("sessionID", text=sid), E("userName", text=user))
        return r.text

    assert other.session_id
    assert active(other.session_id) == "true"
    assert active("f" * 32) == "false"
    other.call("Logout", SESSION_MANAGER)
    assert active(other.session_id) == "false"


# -- the inventory and the traversal engine ---------------------------------------------------------------------------
def test_inventory_tree(soap: Soap) -> None:
    root = soap.retrieve(spec_set(prop_spec("Folder", "name", "childType", "childEntity", "parent"), obj_spec(ROOT)))[
        ROOT
    ]
    assert root["name"].text == "Datacenters" and xsi_type(root["name"]) == "xsd:string"
    assert "parent" not in root  # unset: left out
    assert xsi_type(root["childType"]) == "ArrayOfString" and items(root["childType"]) == ["Folder", "Datacenter"]
    assert items(root["childEntity"]) == [DATACENTER]
    dc = soap.retrieve(
        spec_set(
            prop_spec("Datacenter", "vmFolder", "hostFolder", "datastoreFolder", "networkFolder", "datastore"),
            obj_spec(DATACENTER),
        )
    )[DATACENTER]
    assert xsi_type(dc["datastoreFolder"]) == "ManagedObjectReference"
    assert moref(dc["datastoreFolder"]) == DATASTORE_FOLDER
    for folder in ("vmFolder", "hostFolder", "networkFolder"):
        props = soap.retrieve(spec_set(prop_spec("Folder", "childEntity", "name"), obj_spec(moref(dc[folder]))))
        assert items(next(iter(props.values()))["childEntity"]) == []  # no VMs, hosts or networks
    assert items(dc["datastore"]) == [datastore_of(soap)]


def test_traverse_parents_recursively(soap: Soap) -> None:
    """govc's traverseParent: a TraversalSpec that names itself walks up to the root, and stops there."""
    ds = datastore_of(soap)
    spec = spec_set(
        prop_spec("ManagedEntity", "name", "parent"),
        obj_spec(ds, traversal("ManagedEntity", "parent", selection("up"), name="up")),
    )
    found = soap.retrieve(spec)
    assert list(found) == [ds, DATASTORE_FOLDER, DATACENTER, ROOT]
    assert moref(found[DATACENTER]["parent"]) == ROOT
    assert found[DATASTORE_FOLDER]["name"].text == "datastore"


def test_skip_and_types(soap: Soap) -> None:
    """skip leaves the starting object out; only objects a PropertySpec's type (or a subtype) matches are reported."""
    spec = spec_set(
        prop_spec("Datastore", "name"),
        obj_spec(
            ROOT,
            traversal("Folder", "childEntity", selection("dc"), selection("folder"), name="folder"),
            traversal("Datacenter", "datastoreFolder", selection("folder"), name="dc"),
            skip=True,
        ),
    )
    found = soap.retrieve(spec)
    assert list(found) == [datastore_of(soap)]
    everything = soap.retrieve(
        spec_set(
            prop_spec("ManagedEntity", "name"),
            obj_spec(
                ROOT,
                traversal("Folder", "childEntity", selection("dc"), selection("folder"), name="folder"),
                traversal("Datacenter", "datastoreFolder", selection("folder"), name="dc"),
            ),
        )
    )
    assert list(everything) == [ROOT, DATACENTER, DATASTORE_FOLDER, datastore_of(soap)]
    # A TraversalSpec whose skip is true walks through the objects it reaches without reporting them.
    through = soap.retrieve(
        spec_set(
            prop_spec("ManagedEntity", "name"),
            obj_spec(
                ROOT,
                traversal("Folder", "childEntity", traversal("Datacenter", "datastoreFolder"), skip=True),
                skip=True,
            ),
        )
    )
    assert list(through) == [DATASTORE_FOLDER]


def test_datastore_properties(soap: Soap, server: ServerProcess) -> None:
    ds = datastore_of(soap)
    props = soap.retrieve(
        spec_set(
            prop_spec(
                "Datastore",
                "name",
                "summary",
                "info",
                "overallStatus",
                "parent",
                "host",
                "vm",
                "capability",
                "summary.capacity",
            ),
            obj_spec(ds),
        )
    )[ds]
    summary = props["summary"]
    assert xsi_type(summary) == "DatastoreSummary"
    assert moref(summary.find(V + "datastore")) == ds
    assert text(summary, "name") == props["name"].text
    assert text(summary, "type") == "OTHER" and text(summary, "maintenanceMode") == "normal"
    assert text(summary, "accessible") == "true"
    capacity, free = int(text(summary, "capacity")), int(text(summary, "freeSpace"))
    assert 0 < free <= capacity
    assert (
        props["summary.capacity"].text == text(summary, "capacity")
        and xsi_type(props["summary.capacity"]) == "xsd:long"
    )
    if TEST_S3:
        assert props["name"].text == "contentlib-s3"
        assert text(summary, "url").startswith("s3://") and text(summary, "multipleHostAccess") == "true"
        assert capacity == free == 2**50  # nominal: S3 reports no capacity
    else:
        assert props["name"].text == "contentlib-disk"
        assert text(summary, "url") == (server.data_dir / "blobs").resolve().as_uri() + "/"
        st = os.statvfs(server.data_dir / "blobs")
        assert capacity == st.f_blocks * st.f_frsize
        assert text(summary, "multipleHostAccess") == "false"
    assert xsi_type(props["info"]) == "DatastoreInfo" and text(props["info"], "url") == text(summary, "url")
    assert props["overallStatus"].text == "green" and xsi_type(props["overallStatus"]) == "ManagedEntityStatus"
    assert moref(props["parent"]) == DATASTORE_FOLDER
    assert xsi_type(props["host"]) == "ArrayOfDatastoreHostMount" and len(props["host"]) == 0
    assert items(props["vm"]) == []
    assert xsi_type(props["capability"]) == "DatastoreCapability"


def test_all_properties(soap: Soap) -> None:
    ds = datastore_of(soap)
    props = soap.retrieve(spec_set(prop_spec("Datastore", all_=True), obj_spec(ds)))[ds]
    assert {"name", "parent", "summary", "info", "overallStatus", "capability", "host", "vm"} <= set(props)


def test_missing_objects(soap: Soap) -> None:
    gone = ("Datastore", "datastore-999")
    fault = soap.fault(
        "RetrieveProperties", PROPERTY_COLLECTOR, spec_set(prop_spec("Datastore", "name"), obj_spec(gone))
    )
    assert fault.type == "ManagedObjectNotFound" and moref(fault.detail.find(V + "obj")) == gone
    # With reportMissingObjectsInResults, the object comes back with a missingSet instead.
    (oc,) = soap.call(
        "RetrievePropertiesEx",
        PROPERTY_COLLECTOR,
        spec_set(prop_spec("Datastore", "name"), obj_spec(gone), report_missing=True),
        E("options"),
    )
    missing = oc.find(f"{V}objects/{V}missingSet")
    assert missing is not None and xsi_type(missing.find(f"{V}fault/{V}fault")) == "ManagedObjectNotFound"


@pytest.mark.parametrize(
    ("spec", "fault_type", "word"),
    [
        (spec_set(prop_spec("Folder", "nope"), obj_spec(ROOT)), "InvalidProperty", "nope"),
        (spec_set(prop_spec("Datastore", "summary.nope"), obj_spec(ROOT)), "InvalidProperty", "summary.nope"),
        (spec_set(prop_spec("Folder", "name.x"), obj_spec(ROOT)), "InvalidProperty", "name.x"),
        (
            spec_set(prop_spec("Folder", "name"), obj_spec(ROOT, traversal("Folder", "bogus"))),
            "InvalidProperty",
            "bogus",
        ),
        (
            spec_set(prop_spec("Folder", "name"), obj_spec(DATACENTER, traversal("Datastore", "summary.datastore"))),
            "InvalidProperty",
            "summary.datastore",
        ),
        (spec_set(prop_spec("NoSuchType", "name"), obj_spec(ROOT)), "InvalidType", "NoSuchType"),
        (
            spec_set(prop_spec("Folder", "name"), obj_spec(ROOT, traversal("NoSuchType", "x"))),
            "InvalidType",
            "NoSuchType",
        ),
        (spec_set(prop_spec("Folder", "name"), obj_spec(ROOT, selection("nowhere"))), "InvalidArgument", "nowhere"),
    ],
    ids=[
        "unknown-property",
        "unknown-field",
        "path-into-a-string",
        "unknown-traversal-path",
        "traversal-path-into-a-property",
        "unknown-type",
        "unknown-traversal-type",
        "unknown-selection",
    ],
)
def test_bad_specs(soap: Soap, spec: ET.Element, fault_type: str, word: str) -> None:
    fault = soap.fault("RetrieveProperties", PROPERTY_COLLECTOR, spec)
    assert fault.type == fault_type
    assert word in fault.message


def test_types_without_objects_match_nothing(soap: Soap) -> None:
    """govc asks for VirtualMachine.parentVApp and ComputeResource.resourcePool: valid, and nothing is of them."""
    found = soap.retrieve(
        spec_set(
            prop_spec("VirtualMachine", "parentVApp"),
            prop_spec("Folder", "name"),
            obj_spec(ROOT, traversal("VirtualMachine", "parentVApp")),
        )
    )
    assert list(found) == [ROOT]


def test_retrieve_properties_ex_pages(soap: Soap) -> None:
    walk = spec_set(
        prop_spec("ManagedEntity", "name"),
        obj_spec(
            ROOT,
            traversal("Folder", "childEntity", selection("dc"), name="folder"),
            traversal("Datacenter", "hostFolder", selection("folder"), name="dc"),
        ),
    )
    seen: list[tuple[str, str]] = []
    (result,) = soap.call("RetrievePropertiesEx", PROPERTY_COLLECTOR, walk, E("options", E("maxObjects", text="2")))
    while True:
        objects = result.findall(V + "objects")
        assert 1 <= len(objects) <= 2
        seen += contents(objects)
        token = result.findtext(V + "token")
        if token is None:
            break
        (result,) = soap.call("ContinueRetrievePropertiesEx", PROPERTY_COLLECTOR, E("token", text=token))
    assert seen == [ROOT, DATACENTER, ("Folder", "group-h1")]
    (result,) = soap.call("RetrievePropertiesEx", PROPERTY_COLLECTOR, walk, E("options", E("maxObjects", text="1")))
    token = result.findtext(V + "token") or ""
    assert soap.call("CancelRetrievePropertiesEx", PROPERTY_COLLECTOR, E("token", text=token)) == []
    fault = soap.fault("ContinueRetrievePropertiesEx", PROPERTY_COLLECTOR, E("token", text=token))
    assert fault.type == "InvalidProperty"


def test_container_view(soap: Soap) -> None:
    (view,) = soap.call(
        "CreateContainerView",
        ("ViewManager", "ViewManager"),
        ref("container", ROOT),
        E("type", text="Datastore"),
        E("recursive", text="true"),
    )
    assert view.get("type") == "ContainerView"
    found = soap.retrieve(
        spec_set(prop_spec("Datastore", "name"), obj_spec(moref(view), traversal("ContainerView", "view"), skip=True))
    )
    assert list(found) == [datastore_of(soap)]
    props = soap.retrieve(spec_set(prop_spec("ContainerView", all_=True), obj_spec(moref(view))))[moref(view)]
    assert moref(props["container"]) == ROOT and props["recursive"].text == "true"
    (flat,) = soap.call(
        "CreateContainerView", ("ViewManager", "ViewManager"), ref("container", ROOT), E("recursive", text="false")
    )
    assert items(
        soap.retrieve(spec_set(prop_spec("ContainerView", "view"), obj_spec(moref(flat))))[moref(flat)]["view"]
    ) == [DATACENTER]
    assert soap.call("DestroyView", moref(view)) == []
    fault = soap.fault(
        "CreateContainerView",
        ("ViewManager", "ViewManager"),
        ref("container", ("Folder", "group-x")),
        E("recursive", text="true"),
    )
    assert fault.type == "ManagedObjectNotFound"
    fault = soap.fault(
        "CreateContainerView",
        ("ViewManager", "ViewManager"),
        ref("container", datastore_of(soap)),
        E("recursive", text="true"),
    )
    assert fault.type == "InvalidArgument" and "not a Folder or a Datacenter" in fault.message


def test_fetch(server: ServerProcess, soap: Soap) -> None:
    """Fetch (pyvmomi reads properties with it): the value with its type; unset is no returnval."""
    (content,) = Soap(server.base).call("Fetch", SERVICE_INSTANCE, E("prop", text="content"))
    assert xsi_type(content) == "ServiceContent"
    (name,) = soap.call("Fetch", ROOT, E("prop", text="name"))
    assert name.text == "Datacenters" and xsi_type(name) == "xsd:string"
    assert soap.call("Fetch", ROOT, E("prop", text="parent")) == []
    (children,) = soap.call("Fetch", ("ManagedEntity", "group-d1"), E("prop", text="childEntity"))  # a base type
    assert items(children) == [DATACENTER]
    assert soap.fault("Fetch", ROOT, E("prop", text="nope")).type == "InvalidProperty"
    assert Soap(server.base).fault("Fetch", ROOT, E("prop", text="name")).type == "NotAuthenticated"


def test_search_index(soap: Soap) -> None:
    si = ("SearchIndex", "SearchIndex")
    ds = datastore_of(soap)
    name = soap.retrieve(spec_set(prop_spec("Datastore", "name"), obj_spec(ds)))[ds]["name"].text
    (found,) = soap.call("FindByInventoryPath", si, E("inventoryPath", text=f"/Datacenter/datastore/{name}"))
    assert moref(found) == ds
    assert soap.call("FindByInventoryPath", si, E("inventoryPath", text="/Datacenter/vm/nothing")) == []
    (found,) = soap.call("FindChild", si, ref("entity", DATACENTER), E("name", text="datastore"))
    assert moref(found) == DATASTORE_FOLDER
    assert soap.call("FindByUuid", si, E("uuid", text=str(uuid.uuid4())), E("vmSearch", text="true")) == []
    assert soap.call("FindAllByIp", si, E("ip", text="10.0.0.1"), E("vmSearch", text="true")) == []


# -- faults -------------------------------------------------------------------------------------------------------
def test_unknown_method_is_a_method_fault(soap: Soap) -> None:
    fault = soap.fault("PowerOnVM_Task", ("VirtualMachine", "vm-1"))
    assert fault.type == "MethodFault"
    assert "PowerOnVM_Task" in fault.message and "not served" in fault.message


def test_method_on_the_wrong_object(soap: Soap) -> None:
    fault = soap.fault("RetrieveProperties", ROOT, spec_set(prop_spec("Folder", "name"), obj_spec(ROOT)))
    assert fault.type == "MethodNotFound"


def test_unknown_this_is_managed_object_not_found(soap: Soap) -> None:
    fault = soap.fault(
        "RetrieveProperties",
        ("PropertyCollector", "session[x]y"),
        spec_set(prop_spec("Folder", "name"), obj_spec(ROOT)),
    )
    assert fault.type == "ManagedObjectNotFound"
    assert moref(fault.detail.find(V + "obj")) == ("PropertyCollector", "session[x]y")


def test_soap_error_type(soap: Soap) -> None:
    with pytest.raises(SoapError) as e:
        soap.call("CurrentTime", ("ServiceInstance", "nope"))
    assert e.value.status == 500 and e.value.fault.type == "ManagedObjectNotFound"


def test_soap_and_rest_logins_share_the_throttle(server: ServerProcess) -> None:
    """Failed logins count per user name whichever protocol they come by: after three over SOAP, the next over /api
    is held back (0.25 s), and the one after over SOAP longer (0.5 s)."""
    name = f"nobody-{uuid.uuid4().hex[:8]}@vsphere.local"
    soap = Soap(server.base)
    for _ in range(3):
        assert (
            soap.fault("Login", SESSION_MANAGER, E("userName", text=name), E("password", text="x")).type
            == "InvalidLogin"
        )
    http = requests.Session()
    http.trust_env = False
    r = http.post(server.base + "/api/session", auth=(name, "x"), timeout=60)
    assert r.status_code == 401 and r.elapsed.total_seconds() >= 0.25, r.elapsed
    t = time.monotonic()
    assert (
        soap.fault("Login", SESSION_MANAGER, E("userName", text=name), E("password", text="x")).type == "InvalidLogin"
    )
    assert time.monotonic() - t >= 0.5


def test_idle_expiry_and_revocation(make_server: Callable[..., ServerProcess]) -> None:
    """A SOAP session is an API session: it expires after --api-session-timeout idle seconds, and ends when its user
    is removed (within the two seconds a role change takes)."""
    srv = make_server(args=["--api-session-timeout", "2"])
    password = "Soap-User-Pw1"
    cli = [sys.executable, "-m", "contentlib", "user"]
    r = subprocess.run(
        [*cli, "add", "soap-user", *srv.store_args()], input=password + "\n", capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    user = Soap(srv.base)
    user.login("soap-user", password)
    user.call("CurrentTime", SERVICE_INSTANCE)
    r = subprocess.run([*cli, "remove", "soap-user", *srv.store_args()], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r2 = user.post(envelope("CurrentTime", SERVICE_INSTANCE))
        if r2.status_code == 500:
            break
        time.sleep(0.2)
    assert user.fault("CurrentTime", SERVICE_INSTANCE).type == "NotAuthenticated"

    idle = Soap(srv.base)
    idle.login(ADMIN_USER, ADMIN_PASSWORD)
    idle.call("CurrentTime", SERVICE_INSTANCE)
    time.sleep(2.5)
    assert idle.fault("CurrentTime", SERVICE_INSTANCE).type == "NotAuthenticated"
    http = requests.Session()
    http.trust_env = False
    assert (
        http.get(
            srv.base + "/api/session", headers={"vmware-api-session-id": idle.session_id or ""}, timeout=30
        ).status_code
        == 401
    )
