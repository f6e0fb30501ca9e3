"""The SOAP fuzzer's model of what /sdk serves (the test_fuzz_soap_*.py modules; soapfuzz.py says how they run).

The fixed inventory (the root folder, the datacenter, its four folders, the one datastore, the singletons, container
views by their ids), the references between its objects, which properties each object always has set, how
SearchIndex finds entities, the server's limits on a document, and how the server reads a request (what a strategy
sent, read back the way soap.py reads it). Only the vim25 type schema is the server's own (`vim_inventory.properties`,
`DATA_FIELDS`, `is_known`, `is_a`), and its dispatch table (`SERVED`, from `SoapApi.methods`). The PropertyCollector's
rules are in soapfuzz_collector.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from unittest import mock
from xml.etree import ElementTree as ET

from soapkit import XSI

from contentlib.protocols.soap import SoapApi
from contentlib.protocols.vim_inventory import DATA_FIELDS, UNSERVED, is_a, is_known, properties
from contentlib.services.datastores import DATASTORE_ID

# The server's limits (soap.py, config.py): larger, deeper or longer documents are InvalidRequest.
MAX_BODY = 1024 * 1024
MAX_DEPTH = 64
MAX_ELEMENTS = 20_000
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _dispatch_table() -> dict[str, tuple[str, bool]]:
    """The server's methods: name -> (the managed type `_this` must be, callable before login)."""
    host = mock.Mock()
    host.datastores.all.return_value = []
    return {name: (m.receiver, m.anonymous) for name, m in SoapApi(host).methods.items()}


SERVED = _dispatch_table()


def words(text: str) -> list[str]:
    return text.split()


# -- the model: the inventory -----------------------------------------------------------------------------------
MoRef = tuple[str, str]
SI: MoRef = ("ServiceInstance", "ServiceInstance")
SM: MoRef = ("SessionManager", "SessionManager")
PC: MoRef = ("PropertyCollector", "propertyCollector")
VIEW_MANAGER: MoRef = ("ViewManager", "ViewManager")
SEARCH: MoRef = ("SearchIndex", "SearchIndex")
ROOT: MoRef = ("Folder", "group-d1")
DC: MoRef = ("Datacenter", "datacenter-1")
VM_FOLDER: MoRef = ("Folder", "group-v1")
HOST_FOLDER: MoRef = ("Folder", "group-h1")
DS_FOLDER: MoRef = ("Folder", "group-s1")
NET_FOLDER: MoRef = ("Folder", "group-n1")
DS: MoRef = ("Datastore", DATASTORE_ID)
SINGLETONS = [SI, SM, PC, VIEW_MANAGER, SEARCH]
CHILDREN: dict[MoRef, list[MoRef]] = {
    ROOT: [DC],
    DC: [VM_FOLDER, HOST_FOLDER, DS_FOLDER, NET_FOLDER],
    VM_FOLDER: [],
    HOST_FOLDER: [],
    DS_FOLDER: [DS],
    NET_FOLDER: [],
    DS: [],
}
ENTITIES = list(CHILDREN)
PARENT = {child: parent for parent, children in CHILDREN.items() for child in children}
NAMES = {ROOT: "Datacenters", DC: "Datacenter", VM_FOLDER: "vm", HOST_FOLDER: "host", DS_FOLDER: "datastore"}
NAMES[NET_FOLDER] = "network"
DC_FOLDERS = dict(vmFolder=VM_FOLDER, hostFolder=HOST_FOLDER, datastoreFolder=DS_FOLDER, networkFolder=NET_FOLDER)
# The types there are objects of, with their bases (the others are known by name only: UNSERVED).
MANAGED = {
    *words("ManagedObject ExtensibleManagedObject ManagedEntity Folder Datacenter Datastore ServiceInstance"),
    *words("SessionManager PropertyCollector SearchIndex ViewManager View ManagedObjectView ContainerView"),
}
SOME_UNSERVED = ["VirtualMachine", "HostSystem", "Network", "ComputeResource", "Task", "ResourcePool"]
assert set(SOME_UNSERVED) <= UNSERVED
BOGUS_TYPES = ["Bogus", "", "folder", "ManagedObjectReference", "ArrayOfString", "Folder ", "vim25:Folder"]
VIEWS = [f"view:{v}" for v in ("group-d1:1:", "group-d1:1:Datastore", "group-d1:0:Datacenter", "datacenter-1:0:Folder")]
VIEWS += [f"view:{v}" for v in ("group-s1:1:Datastore,Folder", "datacenter-1:1:ManagedEntity", "datastore-1:1:")]
VIEWS += ["view:group-d1:1:VirtualMachine", "view:group-d1:1:Folder,,Datastore"]
BAD_VIEWS = ["view:group-d1:2:", "view:nope:1:", "view:group-d1:1:Bogus", "view:group-d1", "view:", "view:::"]


@dataclass(frozen=True)
class View:
    container: MoRef
    recursive: bool
    types: tuple[str, ...]


def view_of(obj: MoRef) -> View | None:
    """The container view a ContainerView id stands for (`view:<container id>:<0|1>:<type,type,...>`)."""
    if obj[0] != "ContainerView" or not obj[1].startswith("view:"):
        return None
    parts = obj[1][len("view:") :].split(":")
    if len(parts) != 3 or parts[1] not in ("0", "1"):
        return None
    container = next((e for e in ENTITIES if e[1] == parts[0]), None)
    types = tuple(t for t in parts[2].split(",") if t)
    if container is None or not all(is_known(t) for t in types):
        return None
    return View(container, parts[1] == "1", types)


def exists(obj: MoRef) -> bool:
    return obj in CHILDREN or obj in SINGLETONS or view_of(obj) is not None


def resolve(obj: MoRef) -> MoRef | None:
    """What a `_this` names: the object itself, or the object of that id whose type is a subtype of the one given."""
    if exists(obj):
        return obj
    if obj[0] not in MANAGED:
        return None
    if is_a("ContainerView", obj[0]) and view_of(("ContainerView", obj[1])) is not None:
        return ("ContainerView", obj[1])
    return next((o for o in [*ENTITIES, *SINGLETONS] if o[1] == obj[1] and is_a(o[0], obj[0])), None)


def contents(view: View) -> list[MoRef]:
    found: list[MoRef] = []
    todo = list(CHILDREN[view.container])
    while todo:
        obj = todo.pop(0)
        found.append(obj)
        if view.recursive:
            todo += CHILDREN[obj]
    return [o for o in found if not view.types or any(is_a(o[0], t) for t in view.types)]


def references(obj: MoRef, prop: str) -> list[MoRef] | None:
    """The objects a reference property refers to (None: not a reference, or unset)."""
    if obj in CHILDREN:
        if prop == "parent":
            return [PARENT[obj]] if obj in PARENT else None
        if prop == "recentTask" or (obj == DS and prop == "vm") or (obj == DC and prop == "network"):
            return []
        if obj[0] == "Folder" and prop == "childEntity":
            return CHILDREN[obj]
        if obj == DC and prop in DC_FOLDERS:
            return [DC_FOLDERS[prop]]
        if obj == DC and prop == "datastore":
            return [DS]
        return None
    if (obj, prop) in ((PC, "filter"), (VIEW_MANAGER, "viewList")):
        return []
    view = view_of(obj)
    if view is not None and prop == "view":
        return contents(view)
    if view is not None and prop == "container":
        return [view.container]
    return None


def _fields(prefix: str, type_: str, names: str) -> set[str]:
    assert all(n in DATA_FIELDS[type_] for n in names.split()), names
    return {f"{prefix}.{n}" for n in names.split()}


ABOUT = "name fullName vendor version build localeVersion localeBuild osType productLineId apiType apiVersion"
ABOUT += " instanceUuid licenseProductName licenseProductVersion"
CONTENT = "rootFolder propertyCollector viewManager about sessionManager searchIndex"
SESSION = "key userName fullName loginTime lastActiveTime locale messageLocale extensionSession ipAddress userAgent"
DS_CAPABILITY = "directoryHierarchySupported rawDiskMappingsSupported perFileThinProvisioningSupported"
DS_CAPABILITY += " storageIORMSupported nativeSnapshotSupported"


def always_set(obj: MoRef, logged_in: bool) -> set[str]:
    """The property paths the server always has a value for on this object."""
    if obj in CHILDREN:
        props = {"name", "overallStatus", "configStatus", "recentTask", "disabledMethod"}
        props |= {"parent"} if obj in PARENT else set()
        if obj[0] == "Folder":
            return props | {"childType", "childEntity"}
        if obj == DC:
            return props | set(DC_FOLDERS) | {"datastore", "network"}
        summary = "datastore name url capacity freeSpace accessible multipleHostAccess type maintenanceMode"
        info = "name url freeSpace maxFileSize maxMemoryFileSize timestamp"
        return (
            props
            | {"host", "vm", "capability", "summary", "info"}
            | _fields("summary", "DatastoreSummary", summary)
            | _fields("info", "DatastoreInfo", info)
            | _fields("capability", "DatastoreCapability", DS_CAPABILITY)
        )
    if obj == SI:
        capability = "provisioningSupported multiHostSupported userShellAccessSupported"
        return (
            {"content", "serverClock", "capability"}
            | _fields("content", "ServiceContent", CONTENT)
            | _fields("content.about", "AboutInfo", ABOUT)
            | _fields("capability", "Capability", capability)
        )
    if obj == SM:
        if not logged_in:
            return set()  # before login the SessionManager shows nothing
        return {"currentSession", "sessionList", "defaultLocale", "messageLocaleList", "supportedLocaleList"} | _fields(
            "currentSession", "UserSession", SESSION
        )
    if obj == PC:
        return {"filter"}
    if obj == VIEW_MANAGER:
        return {"viewList"}
    if view_of(obj) is not None:
        return {"view", "container", "type", "recursive"}
    return set()


def path_kind(type_: str, path: str) -> str | None:
    """The vim25 type of a property path of a served type (None: no such property or field)."""
    first, *rest = path.split(".")
    kind: str | None = properties(type_).get(first)
    for part in rest:
        kind = DATA_FIELDS.get(kind or "", {}).get(part)
    return kind


def valid_path(type_: str, path: str) -> bool:
    """Types there are no objects of are not checked (nothing of them is ever collected)."""
    return type_ not in MANAGED or path_kind(type_, path) is not None


def all_paths(type_: str) -> list[str]:
    """Every property path of a served type: its properties, and the fields of data objects in them."""
    out: list[str] = []
    todo = [(p, k) for p, k in properties(type_).items()]
    while todo:
        path, kind = todo.pop(0)
        out.append(path)
        todo += [(f"{path}.{f}", k) for f, k in DATA_FIELDS.get(kind, {}).items()]
    return out


def find_child(parent: MoRef, name: str) -> MoRef | None:
    return next((c for c in CHILDREN.get(parent, []) if entity_name(c) == name), None)


def find_path(path: str) -> MoRef | None:
    found: MoRef | None = ROOT
    for part in path.split("/"):
        if part and found is not None:
            name = part.replace("%2f", "/").replace("%2F", "/").replace("%5c", "\\").replace("%25", "%")
            found = find_child(found, name)
    return found


DATASTORE_NAME = ["contentlib-disk"]  # the fuzz server's (contentlib-s3 when the run uses S3)


def entity_name(obj: MoRef) -> str:
    return DATASTORE_NAME[0] if obj == DS else NAMES[obj]


# -- reading the sent request as the server reads it --------------------------------------------------------------
def local(tag: str) -> str:
    return tag.rpartition("}")[2]


def kids(e: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in e if local(c.tag) == name]


def kid(e: ET.Element, name: str) -> ET.Element | None:
    """The first child of that name (the one the server reads), if any."""
    return next(iter(kids(e, name)), None)


def text_of(e: ET.Element, strip: bool = True) -> str:
    """An element's text once parsed (XML turns CR and CRLF into LF), trimmed unless it is a credential."""
    t = (e.text or "").replace("\r\n", "\n").replace("\r", "\n")
    return t.strip() if strip else t


def read_ref(e: ET.Element) -> MoRef:
    """A reference as the server reads it: its type, and its id trimmed."""
    return (e.get("type") or "", text_of(e))


def xsi_of(e: ET.Element) -> str | None:
    value = e.get(f"{{{XSI}}}type")
    return None if value is None else value.rpartition(":")[2]


def refused_document(method: ET.Element, size: int, extra_elements: int = 2, extra_depth: int = 2) -> bool:
    """Whether the document is refused whole (InvalidRequest): over the size, depth or element limits, or holding
    characters XML cannot carry (around the method: Envelope and Body)."""
    count, depth, bad = 0, 0, False
    todo = [(method, 1)]
    while todo:
        e, d = todo.pop()
        count += 1
        depth = max(depth, d)
        texts = [e.text or "", e.tail or "", local(e.tag), *e.attrib.values()]
        bad = bad or any(_NOT_XML.search(t) for t in texts)
        todo += [(c, d + 1) for c in e]
    return bad or size > MAX_BODY or count + extra_elements > MAX_ELEMENTS or depth + extra_depth > MAX_DEPTH


@dataclass
class Faults:
    """Faults the model finds in a request (a request may have several problems: any of them may be answered)."""

    found: set[str] = field(default_factory=set)

    def add(self, fault: str) -> None:
        self.found.add(fault)


def o_bool(e: ET.Element, faults: Faults) -> bool:
    value = text_of(e)
    if value not in ("true", "false", "1", "0"):
        faults.add("InvalidRequest")
    return value in ("true", "1")


def o_moref(e: ET.Element | None, faults: Faults) -> MoRef | None:
    if e is None or not e.get("type"):
        faults.add("InvalidRequest")
        return None
    return read_ref(e)


def o_text(e: ET.Element, child: str, faults: Faults, strip: bool = True) -> str:
    found = kids(e, child)
    if not found:
        faults.add("InvalidRequest")
        return ""
    return text_of(found[0], strip)


def o_flag(e: ET.Element, child: str, faults: Faults) -> bool:
    found = kids(e, child)
    return bool(found) and o_bool(found[0], faults)
