"""Fuzzing the vim25 SOAP endpoint /sdk with hypothesis (beside tests/test_fuzz.py, which fuzzes /api and /rest).

What runs: SOAP requests generated from a model of what /sdk serves, against a private `contentlib serve` process
over plain HTTP. The model is written here: the fixed inventory (the root folder, the datacenter, its four folders,
the one datastore, the singletons, container views by their ids), the references between its objects, which
properties each object always has set and their values, how SearchIndex finds entities, and the PropertyCollector's
traversal rules (soap.py's and vim_collector.py's docstrings). Only the vim25 type schema is the server's own
(`vim_inventory.properties`, `DATA_FIELDS`, `is_known`, `is_a`: which properties and fields a type has), as
test_fuzz.py takes its operations from the server's table; every method of the server's dispatch table
(`SoapApi.methods`) has an argument model here (`test_every_dispatched_method_is_modeled` says when one is added).

Strategies, CONTENTLIB_FUZZ_EXAMPLES examples each (default 50; the soak run `bench/soak.py` runs 2000):
- `test_fuzz_calls`: every dispatched method and unknown ones, with valid and mutated arguments (missing,
  duplicated, unicode, huge, NUL and control characters, lone surrogates, whitespace), `_this` right, of the wrong
  type, of a base type, unknown, without a type or missing, and junk elements; logged in (the `vmware_soap_session`
  cookie, quoted or not) or not (no cookie, an unknown or logged-out session, the /api header instead);
- `test_fuzz_retrieve`: RetrieveProperties(Ex) with random PropertyFilterSpecs: objectSet, propSet (all/pathSet,
  valid and invalid paths of every type), selectSet trees of TraversalSpecs and SelectionSpecs (skip, names that
  resolve or not, xsi:type right, missing or wrong), reportMissingObjectsInResults, maxObjects;
- `test_fuzz_large_specs`: the same at the limits: chains and cycles of thousands of named TraversalSpecs, inline
  nesting to the depth limit, thousands of objectSets, selections and specSets, over and under the element limit;
- `test_fuzz_sessions`: logins with every kind of credentials (padded, cased, wrong, unicode, huge), then what each
  session can do before and after its Logout: CurrentTime, its currentSession, SessionIsActive about it;
- `test_fuzz_paging`: RetrievePropertiesEx pages followed, cancelled, replayed, with made-up tokens, from another
  session and without one;
- `test_fuzz_envelope`: valid calls with the envelope mutated: wrong or missing namespaces, no or two Bodies,
  Headers, prefixes, DTDs and entities (billion laughs, XXE, parameter entities, external DTDs), declared encodings
  (supported, multi-byte, unknown, Python text transforms), BOMs, bytes that are not UTF-8, truncation, flipped
  bytes, garbage, comments, CDATA and character references, deep nesting and many elements around the limits;
- `test_fuzz_http`: the HTTP around it: other methods, Content-Type, SOAPAction, Content-Encoding (valid, garbage,
  unknown), chunked bodies, odd cookies and User-Agents, on one keep-alive connection.

Checks on every response: HTTP 200 with the method's `<XResponse>`, or a SOAP fault with HTTP 500 (405 with
`Allow: POST` for other methods); the body parses (defusedxml) as a SOAP 1.1 envelope; a fault has faultcode
ServerFaultCode, a non-empty faultstring and one detail `<XFault xsi:type="X">` in urn:vim25 whose X is one of the
faults the server uses (FAULTS) with its fields; no SystemError (the server's answer to its own bug), no traceback or
"Internal Server Error" in any body, none in the server log; the connection stays usable, the process alive. Where
the model predicts the answer, it must be that answer: the fault type (or one of the types that apply, where several
problems are in one request), or the result: RetrieveProperties returns exactly the objects the specs select (or a
missingSet), each with only properties it was asked for that exist on its type, every always-set one asked for, and
the model's values (names, parents, children, folders, views); Login sets the cookie of the session it returns,
FindByInventoryPath finds what the model finds, and so on. The model follows the server where it is lenient:
managed-object ids, names, paths, types and tokens are compared with their surrounding whitespace trimmed (clients
never pad them); credentials are not (a password may begin or end with a space).

After each strategy the server must still be alive and answer a fresh Login and RetrieveServiceContent.

Bounded: CONTENTLIB_FUZZ_EXAMPLES examples per strategy, derandomized (a red run replays exactly), no example
database, no deadline; the number of cases run is printed in the terminal summary (conftest). At the default the
file takes about 25 s on two cores with `-n 2`. A failure's message holds the request and the answer (schemathesis's
pytest plugin blanks the values in hypothesis's "Failing test case" line).
"""

from __future__ import annotations

import datetime
import gzip
import itertools
import os
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock
from xml.etree import ElementTree as ET

import defusedxml.ElementTree as DET
import hypothesis
import pytest
import requests
from conftest import ADMIN_PASSWORD, ADMIN_USER, ServerProcess
from hypothesis import strategies as st
from soapkit import COOKIE, SOAP_ENV, VIM25, XSI, E, ref

from contentlib.protocols.soap import SoapApi
from contentlib.protocols.vim_inventory import DATA_FIELDS, UNSERVED, is_a, is_known, properties
from contentlib.services.datastores import DATASTORE_ID

EXAMPLES = int(os.environ.get("CONTENTLIB_FUZZ_EXAMPLES", "50"))
SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=[
        hypothesis.HealthCheck.function_scoped_fixture,  # the server and its sessions are meant to outlive examples
        hypothesis.HealthCheck.too_slow,
        hypothesis.HealthCheck.data_too_large,
        hypothesis.HealthCheck.large_base_example,
    ],
)
V = f"{{{VIM25}}}"
XSD = "http://www.w3.org/2001/XMLSchema"
TIMEOUT = 30  # seconds: no request may take longer (a hang is a finding)
# The server's limits (soap.py, config.py): larger, deeper or longer documents are InvalidRequest.
MAX_BODY = 1024 * 1024
MAX_DEPTH = 64
MAX_ELEMENTS = 20_000
# The vim25 faults the server answers with; SystemError is its answer to its own bug, a finding.
FAULTS = {
    "NotAuthenticated": {"object", "privilegeId"},
    "NoPermission": {"object", "privilegeId"},
    "InvalidLogin": set(),
    "ManagedObjectNotFound": {"obj"},
    "InvalidProperty": {"name"},
    "InvalidArgument": {"invalidProperty"},
    "InvalidType": {"argument"},
    "InvalidRequest": set(),
    "MethodFault": set(),
    "MethodNotFound": {"receiver", "method"},
}
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_LEAKS = (b"Traceback", b"Internal Server Error", b'File "/')
_LOG_LEAKS = ("Traceback", "unexpected error", "Unhandled exception", "Error handling request")


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


def text_of(e: ET.Element, strip: bool = True) -> str:
    """An element's text once parsed (XML turns CR and CRLF into LF), trimmed unless it is a credential."""
    t = (e.text or "").replace("\r\n", "\n").replace("\r", "\n")
    return t.strip() if strip else t


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
    return (e.get("type") or "", text_of(e))


def o_text(e: ET.Element, child: str, faults: Faults, strip: bool = True) -> str:
    found = kids(e, child)
    if not found:
        faults.add("InvalidRequest")
        return ""
    return text_of(found[0], strip)


def o_flag(e: ET.Element, child: str, faults: Faults) -> bool:
    found = kids(e, child)
    return bool(found) and o_bool(found[0], faults)


# -- the PropertyCollector's rules --------------------------------------------------------------------------------
@dataclass(eq=False)
class Sel:
    name: str | None
    trav: Trav | None


@dataclass(eq=False)
class Trav:
    type: str
    path: str
    skip: bool
    select: list[Sel]


@dataclass
class PSpec:
    type: str
    all: bool
    paths: list[str]


@dataclass
class OSpec:
    obj: MoRef
    skip: bool
    select: list[Sel]


@dataclass
class FSpec:
    props: list[PSpec]
    objs: list[OSpec]
    report: bool


def o_selection(e: ET.Element, faults: Faults) -> Sel | None:
    """A selectSet entry: a SelectionSpec (xsi:type says so, or it has no path), else a TraversalSpec."""
    names = kids(e, "name")
    name = text_of(names[0]) if names else None
    kind = xsi_of(e)
    if kind == "SelectionSpec" or (kind is None and not kids(e, "path")):
        return Sel(name, None)
    if kind not in (None, "TraversalSpec"):
        faults.add("InvalidArgument")
        return None
    type_, path = o_text(e, "type", faults), o_text(e, "path", faults)
    skip = o_flag(e, "skip", faults)
    select = [s for s in (o_selection(c, faults) for c in kids(e, "selectSet")) if s is not None]
    return Sel(name, Trav(type_, path, skip, select))


def o_specs(method: ET.Element, faults: Faults) -> list[FSpec]:
    specs = []
    for s in kids(method, "specSet"):
        props = [
            PSpec(o_text(p, "type", faults), o_flag(p, "all", faults), [text_of(x) for x in kids(p, "pathSet")])
            for p in kids(s, "propSet")
        ]
        objs = []
        for o in kids(s, "objectSet"):
            obj = o_moref(next(iter(kids(o, "obj")), None), faults)
            skip = o_flag(o, "skip", faults)
            select = [x for x in (o_selection(c, faults) for c in kids(o, "selectSet")) if x is not None]
            if obj is not None:
                objs.append(OSpec(obj, skip, select))
        specs.append(FSpec(props, objs, o_flag(s, "reportMissingObjectsInResults", faults)))
    return specs


def _traversals(select: list[Sel], out: list[Trav], named: dict[str, Trav], names: list[str]) -> None:
    """Every TraversalSpec under `select`, the named ones (the first of a name), and the names selections use."""
    todo = list(reversed(select))
    while todo:
        s = todo.pop()
        if s.trav is None:
            names.append(s.name or "")
            continue
        out.append(s.trav)
        if s.name:
            named.setdefault(s.name, s.trav)
        todo += reversed(s.trav.select)


def o_check(specs: list[FSpec], logged_in: bool, faults: Faults) -> list[dict[str, Trav]]:
    if not logged_in and any(o.obj != SM for spec in specs for o in spec.objs):
        faults.add("NotAuthenticated")
    nameds = []
    for spec in specs:
        for p in spec.props:
            if not is_known(p.type):
                faults.add("InvalidType")
            elif not p.all and not all(valid_path(p.type, x) for x in p.paths):
                faults.add("InvalidProperty")
        travs: list[Trav] = []
        named: dict[str, Trav] = {}
        names: list[str] = []
        _traversals([s for o in spec.objs for s in o.select], travs, named, names)
        for t in travs:
            if not is_known(t.type):
                faults.add("InvalidType")
            elif "." in t.path or not valid_path(t.type, t.path):
                faults.add("InvalidProperty")
        if any(n not in named for n in names):
            faults.add("InvalidArgument")
        if any(not exists(o.obj) and not spec.report for o in spec.objs):
            faults.add("ManagedObjectNotFound")
        nameds.append(named)
    return nameds


def o_walk(spec: FSpec, named: dict[str, Trav]) -> set[MoRef]:
    """The objects a spec reaches and does not skip: an object is reported when any path that reaches it does not
    skip it; walking from an object with the same selections twice adds nothing, so cycles end."""
    collected: set[MoRef] = set()
    walked: set[tuple[MoRef, int]] = set()
    todo = [(o.obj, o.select, o.skip) for o in spec.objs if exists(o.obj)]
    while todo:
        obj, select, skip = todo.pop()
        if not skip:
            collected.add(obj)
        if (obj, id(select)) in walked:
            continue
        walked.add((obj, id(select)))
        for s in select:
            t = s.trav or named[s.name or ""]
            if is_a(obj[0], t.type):
                todo += [(child, t.select, t.skip) for child in references(obj, t.path) or []]
    return collected


@dataclass
class Want:
    """What RetrieveProperties must report of one object."""

    missing: bool = False
    all: bool = False
    paths: set[str] = field(default_factory=set)


def o_retrieve(method: ET.Element, logged_in: bool, faults: Faults) -> dict[MoRef, Want]:
    """The faults the specs call for, else every object to report and what of it."""
    specs = o_specs(method, faults)
    if faults.found:
        return {}  # the specs are decoded before anything is checked
    nameds = o_check(specs, logged_in, faults)
    if faults.found:
        return {}
    wanted: dict[MoRef, Want] = {}
    for spec, named in zip(specs, nameds, strict=True):
        for o in spec.objs:
            if not exists(o.obj):
                wanted.setdefault(o.obj, Want(missing=True))
        for obj in o_walk(spec, named):
            matching = [p for p in spec.props if is_a(obj[0], p.type)]
            if not matching:
                continue
            want = wanted.setdefault(obj, Want())
            if any(p.all for p in matching):
                want.all = True
            else:
                want.paths |= {x for p in matching for x in p.paths}
    return wanted


def morefs_of(val: ET.Element) -> list[MoRef]:
    if val.get(f"{{{XSI}}}type", "").startswith("ArrayOf"):
        return [(c.get("type") or "", c.text or "") for c in val]
    return [(val.get("type") or "", val.text or "")]


def check_value(obj: MoRef, path: str, vals: list[ET.Element], sid: str | None) -> None:
    """A property's value(s) against the model (the references, names and the session)."""
    refs = references(obj, path)
    if refs is not None:
        got = [m for v in vals for m in morefs_of(v)]
        assert sorted(got) == sorted(refs), f"{obj} {path}: {got} != {refs}"
    elif path == "name" and obj in CHILDREN:
        assert [v.text for v in vals] == [entity_name(obj)], f"{obj} name"
    elif path in ("currentSession.key", "currentSession") and obj == SM:
        key = vals[0].text if path.endswith("key") else vals[0].findtext(f"{V}key")
        assert key == sid, f"currentSession.key {key} != {sid}"


_XSD = {
    "string": "xsd:string",
    "boolean": "xsd:boolean",
    "dateTime": "xsd:dateTime",
    "int": "xsd:int",
    "long": "xsd:long",
}


def xsi_type_of(kind: str) -> str | None:
    """The xsi:type a value of this vim25 type travels with as anyType (the schema marks the fields of data objects
    `string` whatever they are: those are not checked)."""
    if kind.endswith("[]"):
        item = kind[:-2]
        return "ArrayOf" + item[:1].upper() + item[1:]
    if kind in _XSD:
        return _XSD[kind]
    return kind or None


def check_contents(objects: list[ET.Element], wanted: dict[MoRef, Want], logged_in: bool, sid: str | None) -> None:
    seen: set[MoRef] = set()
    for oc in objects:
        o = oc.find(f"{V}obj")
        assert o is not None, ET.tostring(oc)[:300]
        obj = (o.get("type") or "", o.text or "")
        assert obj not in seen, f"{obj} reported twice"
        seen.add(obj)
        assert obj in wanted, f"{obj} was not asked for: {sorted(wanted)}"
        want = wanted[obj]
        props = oc.findall(f"{V}propSet")
        if want.missing:
            assert not props, obj
            fault = oc.find(f"{V}missingSet/{V}fault/{V}fault")
            assert fault is not None and xsi_of(fault) == "ManagedObjectNotFound", ET.tostring(oc)[:300]
            continue
        assert oc.find(f"{V}missingSet") is None, obj
        names = [p.findtext(f"{V}name") or "" for p in props]
        assert len(names) == len(set(names)), f"{obj}: a property reported twice: {names}"
        tops = set(properties(obj[0])) if want.all else set()
        assert set(names) <= want.paths | tops, f"{obj}: {set(names) - want.paths - tops} were not asked for"
        must = always_set(obj, logged_in)
        required = (must & want.paths) | {p for p in must if "." not in p and want.all}
        assert required <= set(names), f"{obj}: {required - set(names)} are always set, not reported"
        for p in props:
            val = p.find(f"{V}val")
            path = p.findtext(f"{V}name") or ""
            assert val is not None, ET.tostring(p)[:300]
            kind = path_kind(obj[0], path) or ""
            want_type = xsi_type_of(kind) if "." not in path or kind in DATA_FIELDS else None
            assert want_type in (None, val.get(f"{{{XSI}}}type")), f"{obj} {path}: {val.get(f'{{{XSI}}}type')}"
            check_value(obj, path, [val], sid)
    assert seen == set(wanted), f"not reported: {sorted(set(wanted) - seen)}"


# -- the harness --------------------------------------------------------------------------------------------------
@dataclass
class Answer:
    status: int
    fault: str | None
    message: str
    detail: ET.Element | None
    returnvals: list[ET.Element]
    session: str | None  # the session id a Set-Cookie gave
    body: bytes


@dataclass
class Expect:
    """A prediction: a fault of one of `faults`; else success, checked by `ok`; `unknown`: the generic checks only."""

    faults: frozenset[str] = frozenset()
    ok: Callable[[Answer], None] | None = None
    unknown: bool = False


def fault(*types: str) -> Expect:
    return Expect(frozenset(types))


def from_faults(found: Faults, ok: Callable[[Answer], None] | None = None) -> Expect:
    return Expect(frozenset(found.found), ok if not found.found else None)


UNKNOWN = Expect(unknown=True)


class Fuzzer:
    """One `contentlib serve` process, its log, a main logged-in session and helpers around every request."""

    def __init__(self, srv: ServerProcess) -> None:
        self.srv = srv
        self.http = self._session()
        self.log_offset = 0
        self.check_log()
        self.sid = self.login()
        self.other_sid = self.login()  # another session of the same user, for paging tokens
        self.dead_sid = self.login()
        self.logout(self.dead_sid)
        self.serial = itertools.count()
        self.cases = 0

    @staticmethod
    def _session() -> requests.Session:
        s = requests.Session()
        s.verify = False
        s.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override verify=False
        return s

    def post(self, body: Any, headers: dict[str, str | None], method: str = "POST") -> requests.Response:
        try:
            sent = {k: v for k, v in headers.items() if v is not None}  # None: the header is left out
            r = self.http.request(method, self.srv.base + "/sdk", data=body, headers=sent, timeout=TIMEOUT)
        except requests.RequestException as e:
            raise AssertionError(f"no answer to {method} /sdk {headers} {show(body)}: {e!r}") from None
        finally:
            self.http.cookies.clear()  # the cookie of each request is chosen, never a jar's
        return r

    def send(
        self,
        body: Any,
        cookie: str | None = None,
        headers: dict[str, str] | dict[str, str | None] | None = None,
        method: str = "POST",
        answer: str | None = None,
    ) -> Answer:
        """Send one request and apply the checks every response must pass; `answer`: the method it calls."""
        h: dict[str, str | None] = {"Content-Type": 'text/xml; charset="utf-8"', "SOAPAction": "urn:vim25/8.0.2.0"}
        if cookie is not None:
            h["Cookie"] = cookie
        h.update(headers or {})
        r = self.post(body, h, method)
        what = f"{method} {headers or ''} {show(body)} -> {r.status_code} {r.content[:1500]!r}"
        try:
            return self.check(r, method, answer)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{what}") from None
        finally:
            self.check_log(what)
            assert self.srv.proc is not None and self.srv.proc.poll() is None, f"the server died: {what}"

    def check(self, r: requests.Response, method: str, answer: str | None) -> Answer:
        assert not any(leak in r.content for leak in _LEAKS), "a traceback or an internal error in the body"
        if method == "HEAD":
            assert r.status_code == 405 and r.headers.get("Allow") == "POST" and not r.content, r.status_code
            return Answer(405, "InvalidRequest", "", None, [], None, b"")
        assert r.status_code in (200, 500, 405), f"HTTP {r.status_code}"
        assert r.headers.get("Content-Type", "").startswith("text/xml"), r.headers
        root = DET.fromstring(r.content)
        assert root.tag == f"{{{SOAP_ENV}}}Envelope", root.tag
        (body,) = root.findall(f"{{{SOAP_ENV}}}Body")
        (content,) = list(body)
        if r.status_code != 200:
            assert r.status_code == 500 or (method != "POST" and r.headers.get("Allow") == "POST"), r.status_code
            return self.check_fault(r, content)
        assert method == "POST", method
        assert content.tag.startswith(V) and content.tag.endswith("Response"), content.tag
        assert answer is None or content.tag == f"{V}{answer}Response", f"{content.tag}, not {answer}Response"
        session = None
        cookie = r.headers.get("Set-Cookie")
        if cookie is not None:
            m = re.fullmatch(COOKIE + r'="([0-9a-f]{32})"; Path=/; HttpOnly', cookie)
            assert m, cookie
            session = m.group(1)
        return Answer(200, None, "", None, content.findall(f"{V}returnval"), session, r.content)

    @staticmethod
    def check_fault(r: requests.Response, content: ET.Element) -> Answer:
        assert content.tag == f"{{{SOAP_ENV}}}Fault", content.tag
        assert content.findtext("faultcode") == "ServerFaultCode", "faultcode"
        message = content.findtext("faultstring") or ""
        assert message.strip(), "an empty faultstring"
        detail = content.find("detail")
        assert detail is not None and len(detail) == 1, "detail"
        vim = detail[0]
        kind = xsi_of(vim) or ""
        assert vim.tag == f"{V}{kind}Fault", f"{vim.tag} is not {kind}Fault"
        assert kind in FAULTS, f"{kind}: not a fault this server answers with ({message})"
        assert FAULTS[kind] <= {local(c.tag) for c in vim}, f"{kind} without {FAULTS[kind]}"
        assert "Set-Cookie" not in r.headers, "a fault set a cookie"
        return Answer(r.status_code, kind, message, vim, [], None, r.content)

    def check_log(self, what: str = "") -> None:
        with open(self.srv.log_path, "rb") as f:
            f.seek(self.log_offset)
            new = f.read().decode(errors="replace")
        self.log_offset += len(new.encode(errors="replace"))
        leaks = [line for line in new.splitlines() if any(leak in line for leak in _LOG_LEAKS)]
        assert not leaks, f"the server logged {leaks[:3]} after {what}:\n{new[-4000:]}"

    # -- sessions ---------------------------------------------------------------------------------------------
    def login(self, user: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> str:
        args = E("Login", ref("_this", SM), E("userName", text=user), E("password", text=password))
        a = self.send(render(args), answer="Login")
        assert a.fault is None and a.session, a.message
        return a.session

    def logout(self, sid: str) -> None:
        a = self.send(render(E("Logout", ref("_this", SM))), cookie=cookie(sid), answer="Logout")
        assert a.fault is None, a.message

    def alive(self) -> None:
        """The server still answers a fresh Login and RetrieveServiceContent (and logged nothing alarming)."""
        sid = self.login()
        a = self.send(render(E("RetrieveServiceContent", ref("_this", SI))), cookie=cookie(sid))
        assert a.fault is None and a.returnvals[0].findtext(f"{V}rootFolder") == ROOT[1]
        self.logout(sid)

    def own_user_name(self, login: ET.Element) -> None:
        """The login throttle slows down a user name after a few failures in a row: a name that is not the
        administrator's gets a suffix of its own, one that is but for whitespace around it whitespace of its own."""
        users = kids(login, "userName")
        name = (users[0].text or "") if users else ADMIN_USER
        if name.lower() == ADMIN_USER.lower():
            return  # a success clears its failures (`after_login`)
        n = next(self.serial)
        if name.strip().lower() == ADMIN_USER.lower():
            users[0].text = " " * (1 + n % 89) + name.strip() + "\t" * (1 + n // 89 % 89)
        else:
            users[0].text = f"{name}~{n}"

    def after_login(self, login: ET.Element, a: Answer) -> None:
        """End the session a login opened; after the administrator's failed login, clear its failure count."""
        if a.session:
            self.logout(a.session)
        users = kids(login, "userName")
        if a.fault == "InvalidLogin" and users and (users[0].text or "").lower() == ADMIN_USER.lower():
            self.logout(self.login())

    def fill(self, e: ET.Element) -> None:
        """Put the real session ids where a strategy drew their placeholders."""
        swap = {"$SID": self.sid, "$DEAD": self.dead_sid, "$OTHER": self.other_sid, "$DS": DATASTORE_NAME[0]}
        for x in e.iter():
            if x.text and "$" in x.text and len(x.text) < 200:
                for placeholder, value in swap.items():
                    x.text = x.text.replace(placeholder, value)


def cookie(sid: str | None, quoted: bool = True) -> str | None:
    if sid is None:
        return None
    return f'{COOKIE}="{sid}"' if quoted else f"{COOKIE}={sid}"


def show(body: Any) -> str:
    if isinstance(body, bytes):
        return repr(body[:1500]) + (f"... ({len(body)} bytes)" if len(body) > 1500 else "")
    return repr(body)[:200]


def render(method: ET.Element, header: str = "") -> bytes:
    """The envelope around a method element; text XML cannot carry is sent as it is (lone surrogates as CESU)."""
    inner = ET.tostring(method, encoding="unicode")
    return envelope_text(inner, header).encode("utf-8", "surrogatepass")


ENV_OPEN = f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:xsd="{XSD}" xmlns:xsi="{XSI}">'
DECL = '<?xml version="1.0" encoding="UTF-8"?>'


def envelope_text(inner: str, header: str = "", decl: str = DECL, env_open: str = ENV_OPEN) -> str:
    return f"{decl}{env_open}{header}<soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>"


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzer]:
    srv = ServerProcess(tmp_path_factory.mktemp("soapfuzz") / "data")
    srv.start()
    DATASTORE_NAME[0] = "contentlib-s3" if srv.s3_prefix else "contentlib-disk"
    yield Fuzzer(srv)
    srv.destroy()


@pytest.fixture()
def fuzz(fuzz_server: Fuzzer, request: pytest.FixtureRequest) -> Iterator[Fuzzer]:
    """The module's fuzzer for one strategy: its cases are counted (conftest prints the total), and after them the
    server must still serve a fresh login."""
    fuzz_server.cases = 0
    yield fuzz_server
    request.node.user_properties.append(("fuzz_cases", fuzz_server.cases))
    fuzz_server.alive()


# -- strategies: text -----------------------------------------------------------------------------------------------
_SPECIALS = ["\x00", "\x01", "\x0b", "\x1f", "\x7f", "\ud800", "\udfff", "\ufffe", "\uffff", "\U0010ffff", "\ufeff"]
_SPECIALS += ["]]>", "&", "<", "&amp;", "\u202e", "\u0301", "\r\n", " ", "\t", "%2f", "%25", "/", "\\", "\u00e9"]
safe_text = st.text(st.characters(exclude_categories=("Cs", "Cc", "Cn")) | st.sampled_from("\t\n\r "), max_size=30)
hostile_text = st.lists(st.sampled_from(_SPECIALS) | st.text(max_size=5), max_size=6).map("".join)
# Sizes around the limits: parsed in the event loop or in a thread (64 KiB), within or over the body limit (1 MiB).
huge_text = st.builds(
    lambda c, n: c * n,
    st.sampled_from(["a", "\u00e9", "\U0001f600", "<&", " "]),
    st.sampled_from([10_000, 70_000, 300_000, 1_100_000]),
)


def texts(*valid: str) -> st.SearchStrategy[str]:
    """Mostly a valid value, else one with whitespace around it, or any text, hostile text, huge text."""
    options: list[st.SearchStrategy[str]] = [safe_text, hostile_text, huge_text]
    if valid:
        pick = st.sampled_from(valid)
        options = [pick, pick, pick, pick.map(lambda v: f" {v}\n"), pick.map(str.upper), *options]
    return st.one_of(options)


bools = st.sampled_from(["true", "false", "1", "0", " true ", "TRUE", "yes", "", "2"])
xml_names = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.-]{0,15}\Z")


@st.composite
def junk(draw: st.DrawFn) -> list[ET.Element]:
    """Elements no method reads (a client's extra arguments); some in another namespace."""
    out = []
    for _ in range(draw(st.integers(0, 2))):
        tag = draw(xml_names)
        ns = draw(st.sampled_from([VIM25, VIM25, "urn:other", ""]))
        e = ET.Element(f"{{{ns}}}{tag}" if ns else tag)
        e.text = draw(safe_text)
        out.append(e)
    return out


# -- strategies: managed object references --------------------------------------------------------------------------
KNOWN_REFS: list[MoRef] = [*ENTITIES, *SINGLETONS, *(("ContainerView", v) for v in VIEWS)]
BAD_REFS: list[MoRef] = [
    ("Folder", "group-d9"),
    ("Datastore", "datastore-2"),
    ("Folder", "datacenter-1"),
    ("ManagedEntity", DATASTORE_ID),
    ("ManagedObject", "ServiceInstance"),
    ("ExtensibleManagedObject", "group-d1"),
    ("View", "view:group-d1:1:"),
    ("ManagedObjectView", "view:group-s1:0:"),
    ("VirtualMachine", "vm-1"),
    ("Bogus", "group-d1"),
    ("folder", "group-d1"),
    *(("ContainerView", v) for v in BAD_VIEWS),
]
TYPES = sorted(MANAGED) + SOME_UNSERVED + BOGUS_TYPES
moref_values = st.one_of(
    st.sampled_from(KNOWN_REFS), st.sampled_from(KNOWN_REFS), st.sampled_from(KNOWN_REFS), st.sampled_from(BAD_REFS)
) | st.tuples(st.sampled_from(TYPES) | safe_text, st.sampled_from([r[1] for r in KNOWN_REFS]) | texts())


@st.composite
def moref_el(
    draw: st.DrawFn, tag: str, values: st.SearchStrategy[MoRef] = moref_values, forms: list[str] | None = None
) -> ET.Element:
    """A reference element: mostly right, else without a type, padded, or holding an element."""
    type_, value = draw(values)
    form = draw(st.sampled_from(forms or ["plain"] * 6 + ["no-type", "empty-type", "padded", "child", "xsi"]))
    e = E(tag, text=value)
    if form != "no-type":
        e.set("type", "" if form == "empty-type" else type_)
    if form == "padded":
        e.text = f"\n  {value}  "
    elif form == "child":
        e.append(E("x", text="y"))
    elif form == "xsi":
        e.set(f"{{{XSI}}}type", "ManagedObjectReference")
    return e


def this_values(method: str) -> st.SearchStrategy[MoRef]:
    receiver = SERVED[method][0] if method in SERVED else "ManagedObject"
    right = [r for r in KNOWN_REFS if is_a(r[0], receiver)]
    return st.one_of(*[st.sampled_from(right)] * 6, moref_values)


@st.composite
def this_els(draw: st.DrawFn, method: str) -> list[ET.Element]:
    shape = draw(st.sampled_from(["one"] * 10 + ["none", "two"]))
    if shape == "none":
        return []
    return [draw(moref_el("_this", this_values(method))) for _ in range(1 if shape == "one" else 2)]


# -- strategies: PropertyFilterSpecs --------------------------------------------------------------------------------
# Mostly valid specs (so that the results are held to the model), each part now and then mutated (`rare`).
TRAVERSAL_NAMES = ["a", "b", "c", "visitFolders", "traverseParent"]
TRAVERSAL_TYPES = ["Folder", "Datacenter", "ManagedEntity", "ContainerView", "Datastore", "PropertyCollector"]
TRAVERSAL_TYPES += ["VirtualMachine"]
SPEC_TYPES = ["ManagedEntity", "Folder", "Datacenter", "Datastore", "ContainerView", "SessionManager"]
SPEC_TYPES += ["ServiceInstance", "ManagedObject", "HostSystem"]
OTHER_PATHS = ["name", "summary", "content", "summary.datastore", "childEntity.name", "bogus", "", "Parent", "host"]


@dataclass
class Budget:
    """How many parts of one spec may still be mutated: most specs get none, so their results are checked."""

    left: int


def rare(draw: st.DrawFn, budget: Budget) -> bool:
    """Whether to mutate this part: about one in six while the spec's budget lasts (the middle value of the range,
    so that hypothesis's smallest examples, and what failures shrink to, are the valid ones)."""
    if budget.left <= 0 or draw(st.integers(0, 10)) != 5:
        return False
    budget.left -= 1
    return True


def ref_props(type_: str) -> list[str]:
    """The properties of a type that hold references (a TraversalSpec's path); any name for a type without objects."""
    if type_ not in MANAGED:
        return ["parentVApp", "resourcePool", "host", "parent"]
    return [p for p, kind in properties(type_).items() if kind.startswith("ManagedObjectReference")] or OTHER_PATHS


def paths_for(type_: str) -> st.SearchStrategy[str]:
    valid = all_paths(type_) if type_ in MANAGED else []
    invalid = ["nope", "", "name.x", "summary..name", "childEntity[0]", "content.about.nope", " name "]
    options = [st.sampled_from(valid)] * 4 if valid else []
    return st.one_of(*options, st.sampled_from(invalid + OTHER_PATHS), safe_text)


@st.composite
def flag(draw: st.DrawFn, tag: str, budget: Budget) -> ET.Element | None:
    """A boolean element: true, false or left out; now and then not a boolean."""
    value = draw(bools) if rare(draw, budget) else draw(st.sampled_from([None, "true", "false", "false", "1", "0"]))
    return None if value is None else E(tag, text=value)


@st.composite
def prop_specs(draw: st.DrawFn, budget: Budget) -> ET.Element:
    type_ = draw(st.sampled_from(TYPES)) if rare(draw, budget) else draw(st.sampled_from(SPEC_TYPES))
    parts: list[ET.Element | None] = [None if rare(draw, budget) else E("type", text=type_)]
    if draw(st.integers(0, 3)) == 0:
        parts.append(draw(flag("all", budget)))
    valid = all_paths(type_) if type_ in MANAGED else ["parentVApp", "name"]
    for _ in range(draw(st.integers(0, 4))):
        if rare(draw, budget):
            parts.append(E("pathSet", text=draw(paths_for(type_))))
        elif valid:  # ManagedObject has no properties at all
            parts.append(E("pathSet", text=draw(st.sampled_from(valid))))
    return E("propSet", *parts)


@st.composite
def select_tree(draw: st.DrawFn, names: list[str], depth: int, budget: Budget, traversal: bool = False) -> ET.Element:
    """A selectSet entry: a SelectionSpec naming one of `names`, or a TraversalSpec with entries of its own."""
    if names and not traversal and (depth == 0 or draw(st.booleans())):
        name = draw(st.sampled_from(["", " a ", "nowhere"])) if rare(draw, budget) else draw(st.sampled_from(names))
        e = E("selectSet", E("name", text=name))
        xsi = (
            draw(st.sampled_from([None, "PropertySpec", "vim25:SelectionSpec"]))
            if rare(draw, budget)
            else "SelectionSpec"
        )
        if xsi:
            e.set(f"{{{XSI}}}type", xsi)
        return e
    type_ = draw(st.sampled_from(TYPES)) if rare(draw, budget) else draw(st.sampled_from(TRAVERSAL_TYPES))
    path = (
        draw(st.sampled_from(OTHER_PATHS) | safe_text)
        if rare(draw, budget)
        else draw(st.sampled_from(ref_props(type_)))
    )
    parts: list[ET.Element | None] = []
    if rare(draw, budget):
        parts.append(E("name", text=draw(st.sampled_from(TRAVERSAL_NAMES))))
    parts += [
        None if rare(draw, budget) else E("type", text=type_),
        None if rare(draw, budget) else E("path", text=path),
    ]
    parts.append(draw(flag("skip", budget)))
    parts += [draw(select_tree(names, depth - 1, budget)) for _ in range(draw(st.integers(0, 2)) if depth > 0 else 0)]
    e = E("selectSet", *parts)
    xsi = draw(st.sampled_from(["ObjectSpec", "SelectionSpec", None])) if rare(draw, budget) else "TraversalSpec"
    if xsi:
        e.set(f"{{{XSI}}}type", xsi)
    return e


def _trav(type_: str, path: str, *select: ET.Element, name: str | None = None, skip: bool = False) -> ET.Element:
    return E(
        "selectSet",
        E("name", text=name) if name else None,
        E("type", text=type_),
        E("path", text=path),
        E("skip", text=str(skip).lower()),
        *select,
        xsi_type="TraversalSpec",
    )


def _sel(name: str) -> ET.Element:
    return E("selectSet", E("name", text=name), xsi_type="SelectionSpec")


def govc_selects() -> list[ET.Element]:
    """What govc and pyvmomi send: down the folders and datacenters, up the parents, into a container view."""
    return [
        _trav("Folder", "childEntity", _sel("dc"), _sel("folder"), name="folder"),
        _trav("Datacenter", "datastoreFolder", _sel("folder"), name="dc"),
    ]


KNOWN_SELECTS: list[Callable[[], list[ET.Element]]] = [
    govc_selects,
    lambda: [_trav("ManagedEntity", "parent", _sel("traverseParent"), name="traverseParent")],
    lambda: [_trav("ContainerView", "view")],
    lambda: [_trav("Datacenter", f, name=f) for f in DC_FOLDERS],
    lambda: [_trav("Folder", "childEntity", skip=True), _trav("Folder", "childEntity")],
    lambda: [_trav("Folder", "childEntity", _trav("Datacenter", "vmFolder", skip=True), skip=True)],
]
FORMS = ["no-type", "empty-type", "padded", "child", "xsi"]
starts = st.one_of(st.sampled_from([ROOT, ROOT, ROOT, DC, DS_FOLDER, DS, SM, SI]), st.sampled_from(KNOWN_REFS))


@st.composite
def object_specs(draw: st.DrawFn, names: list[str], named: list[ET.Element], budget: Budget) -> ET.Element:
    values = st.sampled_from(BAD_REFS) if rare(draw, budget) else starts
    obj = draw(moref_el("obj", values, FORMS if rare(draw, budget) else ["plain"]))
    chosen = named + draw(st.lists(select_tree(names, 3, budget), max_size=3))
    if draw(st.integers(0, 4)) == 0:
        chosen += draw(st.sampled_from(KNOWN_SELECTS))()
    return E("objectSet", obj, draw(flag("skip", budget)), *chosen)


@st.composite
def spec_sets(draw: st.DrawFn) -> ET.Element:
    """Named TraversalSpecs (in the first objectSet, as govc puts them) that selections anywhere may name."""
    budget = Budget(draw(st.sampled_from([0, 0, 0, 0, 0, 0, 0, 1, 1, 2])))
    names = draw(st.lists(st.sampled_from(TRAVERSAL_NAMES), max_size=3, unique=True))
    named = [draw(select_tree(names, 2, budget, traversal=True)) for _ in names]
    for name, e in zip(names, named, strict=True):
        if xsi_of(e) != "SelectionSpec" and not kids(e, "name"):
            e.insert(0, E("name", text=name))
    objs = [draw(object_specs(names, named if i == 0 else [], budget)) for i in range(draw(st.integers(1, 3)))]
    if draw(st.integers(0, 2)) == 1:  # the same start again: skipped one way, not the other (or as it comes)
        first = [c for c in objs[0] if local(c.tag) != "skip"]
        skips = draw(st.sampled_from([("true", "false"), ("false", "true"), None]))
        if skips is None:
            skip = draw(flag("skip", budget))
            objs.insert(draw(st.integers(0, len(objs))), E("objectSet", *first, *([skip] if skip is not None else [])))
        else:
            objs[0:1] = [
                E("objectSet", *first, E("skip", text=skips[0])),
                E("objectSet", *first, E("skip", text=skips[1])),
            ]
    parts = draw(st.lists(prop_specs(budget), min_size=1, max_size=3)) + objs
    report = (
        draw(st.sampled_from(["x", "maybe"])) if rare(draw, budget) else draw(st.sampled_from([None, None, "true"]))
    )
    if report is not None:
        parts.append(E("reportMissingObjectsInResults", text=report))
    if rare(draw, budget):
        parts = draw(st.permutations(parts))
    return E("specSet", *parts)


@st.composite
def retrieve_args(draw: st.DrawFn, ex: bool) -> list[ET.Element]:
    args = draw(st.lists(spec_sets(), min_size=1, max_size=3) | st.lists(spec_sets(), max_size=0))
    if ex:
        shape = draw(st.sampled_from(["limit", "limit", "none", "empty", "bad"]))
        if shape == "limit":
            args.append(E("options", E("maxObjects", text=str(draw(st.integers(-1, 12))))))
        elif shape == "empty":
            args.append(E("options"))
        elif shape == "bad":
            args.append(E("options", E("maxObjects", text=draw(texts("3", "99999999999999999999")))))
    return args


# -- strategies: every method's arguments ------------------------------------------------------------------------------
@st.composite
def login_args(draw: st.DrawFn) -> list[ET.Element]:
    user = draw(texts(ADMIN_USER))
    password = draw(
        st.one_of(
            *[st.just(ADMIN_PASSWORD)] * 3,
            st.sampled_from([f" {ADMIN_PASSWORD}", f"{ADMIN_PASSWORD} ", ADMIN_PASSWORD[:-1], ADMIN_PASSWORD + "x"]),
            texts(),
        )
    )
    args = []
    if draw(st.integers(0, 9)):
        args.append(E("userName", text=user))
    if draw(st.integers(0, 9)):
        args.append(E("password", text=password))
    if draw(st.booleans()):
        args.append(E("locale", text=draw(texts("en_US", "de"))))
    return args


def text_args(*names: tuple[str, st.SearchStrategy[str]]) -> st.SearchStrategy[list[ET.Element]]:
    """Elements with these names and texts, each left out now and then."""

    @st.composite
    def build(draw: st.DrawFn) -> list[ET.Element]:
        return [E(name, text=draw(values)) for name, values in names if draw(st.integers(0, 7))]

    return build()


@st.composite
def fetch_args(draw: st.DrawFn, this: list[ET.Element]) -> list[ET.Element]:
    type_ = (this[0].get("type") or "") if this else ""
    resolved = resolve((type_, text_of(this[0]))) if this else None
    prop = draw(paths_for(resolved[0] if resolved else type_))
    return [E("prop", text=prop)] if draw(st.integers(0, 9)) else []


@st.composite
def view_args(draw: st.DrawFn) -> list[ET.Element]:
    args: list[ET.Element] = []
    if draw(st.integers(0, 9)):
        args.append(draw(moref_el("container")))
    for _ in range(draw(st.integers(0, 3))):
        args.append(E("type", text=draw(st.sampled_from(TYPES))))
    if draw(st.integers(0, 9)):
        args.append(E("recursive", text=draw(bools)))
    return args


INVENTORY_PATHS = ["", "/", "Datacenter", "/Datacenter", "Datacenter/", "Datacenter/datastore", "Datacenter/vm"]
INVENTORY_PATHS += ["Datacenter/datastore/$DS", "Datacenter//host", "Datacenter/network", "Datacenter/datastore/nope"]
INVENTORY_PATHS += ["Datacenters", "datacenter", "%2f", "Datacenter%2fdatastore", "/Datacenter/datastore/$DS/"]
CHILD_NAMES = ["Datacenter", "vm", "host", "datastore", "network", "$DS", "Datacenters", "nope", ""]


@st.composite
def find_child_args(draw: st.DrawFn) -> list[ET.Element]:
    args = [draw(moref_el("entity"))] if draw(st.integers(0, 9)) else []
    if draw(st.integers(0, 9)):
        args.append(E("name", text=draw(texts(*CHILD_NAMES))))
    return args


@st.composite
def find_args(draw: st.DrawFn, arg: str) -> list[ET.Element]:
    args = [draw(moref_el("datacenter")) for _ in range(draw(st.sampled_from([0, 1, 1, 2])))]
    args.append(E(arg, text=draw(texts("4213e8e8-1b34-0a31-e8a6-4b3f1f5a1d5e", "10.0.0.1", "[ds] vm/vm.vmx"))))
    if draw(st.booleans()):
        args.append(E("vmSearch", text=draw(bools)))
    return args


tokens = texts("0" * 32, "$SID")
ARGS: dict[str, Callable[[list[ET.Element]], st.SearchStrategy[list[ET.Element]]]] = {
    "RetrieveServiceContent": lambda _: st.just([]),
    "CurrentTime": lambda _: st.just([]),
    "Login": lambda _: login_args(),
    "Logout": lambda _: st.just([]),
    "SessionIsActive": lambda _: text_args(
        ("sessionID", texts("$SID", "$DEAD", "$OTHER")), ("userName", texts(ADMIN_USER, "nobody@vsphere.local"))
    ),
    "RetrieveProperties": lambda _: retrieve_args(ex=False),
    "RetrievePropertiesEx": lambda _: retrieve_args(ex=True),
    "ContinueRetrievePropertiesEx": lambda _: text_args(("token", tokens)),
    "CancelRetrievePropertiesEx": lambda _: text_args(("token", tokens)),
    "Fetch": fetch_args,
    "CreateContainerView": lambda _: view_args(),
    "DestroyView": lambda _: st.just([]),
    "FindByInventoryPath": lambda _: text_args(("inventoryPath", texts(*INVENTORY_PATHS))),
    "FindChild": lambda _: find_child_args(),
    "FindByUuid": lambda _: find_args("uuid"),
    "FindByIp": lambda _: find_args("ip"),
    "FindByDnsName": lambda _: find_args("dnsName"),
    "FindByDatastorePath": lambda _: find_args("path"),
    "FindAllByUuid": lambda _: find_args("uuid"),
    "FindAllByIp": lambda _: find_args("ip"),
    "FindAllByDnsName": lambda _: find_args("dnsName"),
}
NOT_SERVED = ["CreateFilter", "WaitForUpdatesEx", "DestroyDatacenter_Task", "CreateFolder", "Destroy_Task"]
NOT_SERVED += ["RetrieveUserGroups", "AcquireGenericServiceTicket", "retrieveServiceContent", "Login_", "CurrentTIME"]
methods = st.one_of(*[st.sampled_from(sorted(SERVED))] * 4, st.sampled_from(NOT_SERVED), xml_names)


@st.composite
def calls(draw: st.DrawFn) -> ET.Element:
    method = draw(methods)
    this = draw(this_els(method))
    args = draw(ARGS[method](this)) if method in ARGS else draw(junk())
    return E(method, *this, *args, *draw(junk()))


# Who calls: the main session's cookie (quoted as vCenter sets it, or not), or no session: no cookie, an unknown or
# logged-out session id, a cookie no session could have, the /api header instead of the cookie.
AUTH = st.sampled_from(["session"] * 4 + ["bare", "none", "none", "dead", "unknown", "odd", "header"])
LOGGED_IN = {"session", "bare"}


def auth_headers(fuzz: Fuzzer, auth: str, sid: str | None = None) -> tuple[str | None, dict[str, str]]:
    sid = sid or fuzz.sid
    return {
        "session": (cookie(sid), {}),
        "bare": (cookie(sid, quoted=False), {}),
        "none": (None, {}),
        "dead": (cookie(fuzz.dead_sid), {}),
        "unknown": (cookie("0123456789abcdef" * 2), {}),
        "odd": (f'{COOKIE}="{sid} x"', {}),
        "header": (None, {"vmware-api-session-id": sid}),
    }[auth]


# -- the model's answers: every method -----------------------------------------------------------------------------
@dataclass
class Ctx:
    """One call as the model sees it: the method element, whether the caller is logged in (with which session, sent
    as which cookie and headers), the object `_this` resolves to."""

    fuzz: Fuzzer
    method: ET.Element
    logged_in: bool
    sid: str | None
    cookie: str | None
    headers: dict[str, str]
    this: MoRef = ("", "")


def expect_call(c: Ctx, size: int) -> Expect:
    """The dispatch rules (soap.py): the document, the method, `_this`, the login, the object and its type."""
    el = c.method
    if refused_document(el, size):
        return fault("InvalidRequest")
    name = local(el.tag)
    thises = kids(el, "_this")
    if thises and not thises[0].get("type"):
        return fault("InvalidRequest")
    if name not in SERVED:
        return fault("MethodFault")
    if not thises:
        return fault("InvalidRequest")
    receiver, anonymous = SERVED[name]
    if not anonymous and not c.logged_in:
        return fault("NotAuthenticated")
    this = resolve((thises[0].get("type") or "", text_of(thises[0])))
    if this is None:
        return fault("ManagedObjectNotFound")
    if not is_a(this[0], receiver):
        return fault("MethodNotFound")
    c.this = this
    return ORACLES[name](c)


def _no_result(a: Answer) -> None:
    assert not a.returnvals, [ET.tostring(v)[:200] for v in a.returnvals]


def _moref_result(expected: MoRef | None) -> Callable[[Answer], None]:
    def ok(a: Answer) -> None:
        got = [(v.get("type") or "", v.text or "") for v in a.returnvals]
        assert got == ([expected] if expected else []), f"{got} != {expected}"

    return ok


def o_service_content(c: Ctx) -> Expect:
    def ok(a: Answer) -> None:
        (content,) = a.returnvals
        assert xsi_of(content) == "ServiceContent"
        for name, obj in [("rootFolder", ROOT), ("propertyCollector", PC), ("sessionManager", SM)]:
            e = content.find(V + name)
            assert e is not None and (e.get("type"), e.text) == obj, name
        assert content.findtext(f"{V}about/{V}apiVersion") == "8.0.2.0"

    return Expect(ok=ok)


def o_current_time(c: Ctx) -> Expect:
    def ok(a: Answer) -> None:
        (now,) = a.returnvals
        assert now.text and now.text.endswith("Z"), now.text
        datetime.datetime.fromisoformat(now.text.replace("Z", "+00:00"))

    return Expect(ok=ok)


def o_login(c: Ctx) -> Expect:
    f = Faults()
    user, password = o_text(c.method, "userName", f, strip=False), o_text(c.method, "password", f, strip=False)
    if f.found:
        return from_faults(f)
    if user.lower() != ADMIN_USER.lower() or password != ADMIN_PASSWORD:
        return fault("InvalidLogin")

    def ok(a: Answer) -> None:
        (session,) = a.returnvals
        assert a.session and session.findtext(f"{V}key") == a.session, "the cookie is not the session returned"
        assert (session.findtext(f"{V}userName") or "").lower() == ADMIN_USER.lower()

    return Expect(ok=ok)


def o_session_is_active(c: Ctx) -> Expect:
    f = Faults()
    sid, user = o_text(c.method, "sessionID", f), o_text(c.method, "userName", f)
    active = sid in (c.fuzz.sid, c.fuzz.other_sid, c.sid) and user.lower() == ADMIN_USER.lower()

    def ok(a: Answer) -> None:
        assert [v.text for v in a.returnvals] == [str(active).lower()], (sid, user)

    return from_faults(f, ok)


def o_retrieve_ex(c: Ctx) -> Expect:
    return o_retrieve_properties(c, ex=True)


def o_retrieve_properties(c: Ctx, ex: bool = False) -> Expect:
    f = Faults()
    limit = None
    options = next(iter(kids(c.method, "options")), None)
    given = next(iter(kids(options, "maxObjects")), None) if ex and options is not None else None
    if given is not None:
        value = text_of(given)
        if not re.fullmatch(r"[+-]?[0-9]{1,18}", value):
            f.add("InvalidRequest")
        elif int(value) <= 0:
            f.add("InvalidArgument")
        else:
            limit = int(value)
    wanted = o_retrieve(c.method, c.logged_in, f)

    def ok(a: Answer) -> None:
        objects = a.returnvals if not ex else pages(c, a, limit, bool(wanted))
        check_contents(objects, wanted, c.logged_in, c.sid if c.logged_in else None)

    return from_faults(f, ok)


def pages(c: Ctx, a: Answer, limit: int | None, some: bool) -> list[ET.Element]:
    """Every object of a RetrievePropertiesEx answer, following its tokens; each page holds at most maxObjects."""
    objects: list[ET.Element] = []
    while True:
        if not some:
            assert not a.returnvals, "objects where none were selected"
            return objects
        (result,) = a.returnvals
        page = result.findall(f"{V}objects")
        token = result.findtext(f"{V}token")
        assert page, "an empty page"
        assert limit is None or len(page) <= limit, f"{len(page)} objects in a page of {limit}"
        assert token is None or len(page) == limit, f"a token after a short page of {len(page)}"
        objects += page
        if token is None:
            return objects
        call = E("ContinueRetrievePropertiesEx", ref("_this", PC), E("token", text=token))
        a = c.fuzz.send(render(call), c.cookie, c.headers, answer="ContinueRetrievePropertiesEx")
        assert a.fault is None, f"{a.fault}: {a.message}"


def o_token(c: Ctx) -> Expect:
    f = Faults()
    o_text(c.method, "token", f)
    return from_faults(f) if f.found else fault("InvalidProperty")  # no token made up here names a result


def o_fetch(c: Ctx) -> Expect:
    f = Faults()
    prop = o_text(c.method, "prop", f)
    if f.found:
        return from_faults(f)
    if not valid_path(c.this[0], prop):
        f.add("InvalidProperty")
    if not c.logged_in and c.this != SM and (c.this, prop) != (SI, "content"):
        f.add("NotAuthenticated")
    kind = path_kind(c.this[0], prop) or ""

    def ok(a: Answer) -> None:
        if not kind.endswith("[]"):  # an array is one returnval per item; anything else is one, or none when unset
            assert len(a.returnvals) <= 1, len(a.returnvals)
            assert a.returnvals or prop not in always_set(c.this, c.logged_in), f"{c.this} {prop} is always set"
        if a.returnvals:
            check_value(c.this, prop, a.returnvals, c.sid)

    return from_faults(f, ok)


def o_create_view(c: Ctx) -> Expect:
    f = Faults()
    container = o_moref(next(iter(kids(c.method, "container")), None), f)
    types = [text_of(t) for t in kids(c.method, "type")]
    recursive = kids(c.method, "recursive")
    if not recursive:
        f.add("InvalidRequest")
    if container is not None and not exists(container):
        f.add("ManagedObjectNotFound")
    elif container is not None and container[0] not in ("Folder", "Datacenter"):
        f.add("InvalidArgument")
    if not all(is_known(t) for t in types):
        f.add("InvalidType")
    deep = bool(recursive) and o_bool(recursive[0], f)
    if f.found or container is None:
        return from_faults(f)
    return Expect(ok=_moref_result(("ContainerView", f"view:{container[1]}:{int(deep)}:{','.join(types)}")))


def o_find_path(c: Ctx) -> Expect:
    f = Faults()
    path = o_text(c.method, "inventoryPath", f)
    return from_faults(f, _moref_result(find_path(path)))


def o_find_child(c: Ctx) -> Expect:
    f = Faults()
    entity = o_moref(next(iter(kids(c.method, "entity")), None), f)
    if entity is not None and not exists(entity):
        f.add("ManagedObjectNotFound")
    name = o_text(c.method, "name", f)
    return from_faults(f, _moref_result(find_child(entity, name) if entity else None))


def o_find_nothing(c: Ctx) -> Expect:
    f = Faults()
    for d in kids(c.method, "datacenter"):
        obj = o_moref(d, f)
        if obj is not None and not exists(obj):
            f.add("ManagedObjectNotFound")
    return from_faults(f, _no_result)


ORACLES: dict[str, Callable[[Ctx], Expect]] = {
    "RetrieveServiceContent": o_service_content,
    "CurrentTime": o_current_time,
    "Login": o_login,
    "Logout": lambda c: Expect(ok=_no_result),
    "SessionIsActive": o_session_is_active,
    "RetrieveProperties": o_retrieve_properties,
    "RetrievePropertiesEx": o_retrieve_ex,
    "ContinueRetrievePropertiesEx": o_token,
    "CancelRetrievePropertiesEx": o_token,
    "Fetch": o_fetch,
    "CreateContainerView": o_create_view,
    "DestroyView": lambda c: Expect(ok=_no_result),
    "FindByInventoryPath": o_find_path,
    "FindChild": o_find_child,
    **{m: o_find_nothing for m in ("FindByUuid", "FindByIp", "FindByDnsName", "FindByDatastorePath")},
    **{m: o_find_nothing for m in ("FindAllByUuid", "FindAllByIp", "FindAllByDnsName")},
}


def judge(a: Answer, expect: Expect, what: str) -> None:
    if expect.unknown:
        return
    if expect.faults:
        assert a.fault in expect.faults, f"{a.fault or 'success'} ({a.message}), not {sorted(expect.faults)}: {what}"
        return
    assert a.fault is None, f"{a.fault} ({a.message}), not a success: {what}"
    if expect.ok is not None:
        try:
            expect.ok(a)
        except AssertionError as e:
            raise AssertionError(f"{e}: {what} -> {a.body[:3000]!r}") from None


def run_call(fuzz: Fuzzer, call: ET.Element, auth: str) -> Answer:
    """Send a call as `auth` and hold its answer to the model. Logins and logouts made as the main session are made
    in a session of their own (the fuzzer never logs itself out); a failed login's user name is made unique unless
    it could be the administrator's (the login throttle counts failures per name)."""
    fuzz.fill(call)
    method = local(call.tag)
    logged_in = auth in LOGGED_IN
    sid = fuzz.login() if logged_in and method in ("Login", "Logout") else fuzz.sid
    if method == "Login":
        fuzz.own_user_name(call)
    sent_cookie, headers = auth_headers(fuzz, auth, sid)
    body = render(call)
    c = Ctx(fuzz, call, logged_in, sid if logged_in else None, sent_cookie, headers)
    expect = expect_call(c, len(body))
    a = fuzz.send(body, sent_cookie, headers, answer=method)
    judge(a, expect, f"{auth} {show(body)}")
    if method == "Login":
        fuzz.after_login(call, a)
    if sid != fuzz.sid:
        if method == "Logout" and a.fault is None:  # it ended the session: nothing may be called with it now
            gone = fuzz.send(render(E("CurrentTime", ref("_this", SI))), cookie(sid))
            assert gone.fault == "NotAuthenticated", gone.fault
        else:
            fuzz.logout(sid)
    return a


# -- the strategies' tests ---------------------------------------------------------------------------------------
@SETTINGS
@hypothesis.given(call=calls(), auth=AUTH)
@pytest.mark.parametrize("examples", [EXAMPLES])
def test_fuzz_calls(fuzz: Fuzzer, call: ET.Element, auth: str, examples: int) -> None:
    fuzz.cases += 1
    run_call(fuzz, call, auth)


@st.composite
def retrieve_calls(draw: st.DrawFn) -> ET.Element:
    ex = draw(st.booleans())
    method = "RetrievePropertiesEx" if ex else "RetrieveProperties"
    return E(method, ref("_this", PC), *draw(retrieve_args(ex=ex)))


@SETTINGS
@hypothesis.given(call=retrieve_calls(), auth=st.sampled_from(["session"] * 6 + ["none", "dead"]))
@pytest.mark.parametrize("examples", [EXAMPLES])
def test_fuzz_retrieve(fuzz: Fuzzer, call: ET.Element, auth: str, examples: int) -> None:
    fuzz.cases += 1
    run_call(fuzz, call, auth)


def chain(n: int, cyclic: bool, inline: bool) -> list[ET.Element]:
    """n TraversalSpecs, down from a folder to its datacenter and back up (`t0` -> `t1` -> ...): named and selected by
    name, or each inside the one before."""
    if inline:
        inner: ET.Element | None = None
        for i in reversed(range(n)):
            down = i % 2 == 0
            kids_ = [inner] if inner is not None else []
            inner = _trav("Folder" if down else "Datacenter", "childEntity" if down else "parent", *kids_)
        return [inner] if inner is not None else []
    out = []
    for i in range(n):
        down = i % 2 == 0
        nxt = f"t{i + 1}" if i + 1 < n else ("t0" if cyclic else None)
        out.append(
            _trav(
                "Folder" if down else "Datacenter",
                "childEntity" if down else "parent",
                *([_sel(nxt)] if nxt else []),
                name=f"t{i}",
            )
        )
    return out


@st.composite
def large_calls(draw: st.DrawFn) -> ET.Element:
    shape = draw(st.sampled_from(["chain", "chain", "inline", "objects", "selections", "specs", "paths"]))
    props = [E("propSet", E("type", text="ManagedEntity"), E("pathSet", text="name"))]
    specs: list[ET.Element]
    if shape in ("chain", "inline"):
        n = draw(st.integers(1, 60) if shape == "inline" else st.integers(1, 3500))
        skip = E("skip", text=draw(st.sampled_from(["true", "false"])))
        selects_ = chain(n, draw(st.booleans()), shape == "inline")
        specs = [E("specSet", *props, E("objectSet", ref("obj", ROOT), skip, *selects_))]
    elif shape == "objects":
        n = draw(st.integers(1, 8000))
        objs = draw(st.lists(st.sampled_from(KNOWN_REFS + BAD_REFS[:3]), min_size=1, max_size=5))
        skips = draw(st.lists(st.sampled_from(["true", "false"]), min_size=1, max_size=2))
        report = E("reportMissingObjectsInResults", text="true")
        sets = [
            E("objectSet", ref("obj", objs[i % len(objs)]), E("skip", text=skips[i % len(skips)])) for i in range(n)
        ]
        specs = [
            E("specSet", *props, E("propSet", E("type", text="ManagedObject"), E("all", text="true")), *sets, report)
        ]
    elif shape == "selections":
        n = draw(st.integers(1, 12_000))
        name = draw(st.sampled_from(["s0", "s1"]))
        named = _trav("Folder", "childEntity", _sel("s0"), name="s0")
        specs = [E("specSet", *props, E("objectSet", ref("obj", ROOT), named, *[_sel(name) for _ in range(n)]))]
    elif shape == "specs":
        n = draw(st.integers(1, 5000))
        obj = draw(st.sampled_from(KNOWN_REFS))
        one = E(
            "specSet",
            E("propSet", E("type", text="ManagedObject"), E("all", text="true")),
            E("objectSet", ref("obj", obj)),
        )
        specs = [one] * n
    else:
        n = draw(st.integers(1, 15_000))
        paths = [E("pathSet", text=p) for p in itertools.islice(itertools.cycle(all_paths("Datastore")), n)]
        specs = [E("specSet", E("propSet", E("type", text="Datastore"), *paths), E("objectSet", ref("obj", DS)))]
    ex = draw(st.booleans())
    options = [E("options", E("maxObjects", text=str(draw(st.integers(1, 5)))))] if ex else []
    return E("RetrievePropertiesEx" if ex else "RetrieveProperties", ref("_this", PC), *specs, *options)


@SETTINGS
@hypothesis.given(call=large_calls())
@pytest.mark.parametrize("examples", [EXAMPLES])
def test_fuzz_large_specs(fuzz: Fuzzer, call: ET.Element, examples: int) -> None:
    fuzz.cases += 1
    run_call(fuzz, call, "session")


# -- sessions ------------------------------------------------------------------------------------------------------
session_steps = st.lists(
    st.one_of(
        st.tuples(st.just("login"), login_args()),
        st.tuples(
            st.sampled_from(["logout", "time", "current", "active"]),
            st.integers(0, 3),
            st.sampled_from([ADMIN_USER, ADMIN_USER.upper(), f" {ADMIN_USER}", "nobody@vsphere.local"]),
        ),
    ),
    min_size=1,
    max_size=6,
)


@SETTINGS
@hypothesis.given(steps=session_steps, quoted=st.booleans())
@pytest.mark.parametrize("examples", [EXAMPLES])
def test_fuzz_sessions(fuzz: Fuzzer, steps: list[tuple[Any, ...]], quoted: bool, examples: int) -> None:
    """Logins with every kind of credentials, and what the sessions they open can do, before and after they end:
    CurrentTime, their own currentSession, SessionIsActive about them (asked by the main session), Logout."""
    fuzz.cases += 1
    sessions: list[list[Any]] = []  # [id, open]
    for kind, *args in steps:
        if kind == "login":
            call = E("Login", ref("_this", SM), *args[0])
            fuzz.own_user_name(call)
            body = render(call)
            a = fuzz.send(body, answer="Login")
            judge(a, expect_call(Ctx(fuzz, call, False, None, None, {}), len(body)), show(body))
            if a.session:
                sessions.append([a.session, True])
            elif a.fault == "InvalidLogin":
                fuzz.after_login(call, a)
            continue
        if not sessions:
            continue
        i, user = args
        sid, alive = sessions[i % len(sessions)]
        sent = cookie(sid, quoted)
        if kind == "logout":
            a = fuzz.send(render(E("Logout", ref("_this", SM))), sent, answer="Logout")
            assert a.fault == (None if alive else "NotAuthenticated"), (kind, alive, a.fault)
            sessions[i % len(sessions)][1] = False
        elif kind == "time":
            a = fuzz.send(render(E("CurrentTime", ref("_this", SI))), sent, answer="CurrentTime")
            assert a.fault == (None if alive else "NotAuthenticated"), (kind, alive, a.fault)
        elif kind == "current":
            spec = E("specSet", E("propSet", E("type", text="SessionManager"), E("pathSet", text="currentSession")))
            spec.append(E("objectSet", ref("obj", SM)))
            a = fuzz.send(render(E("RetrieveProperties", ref("_this", PC), spec)), sent, answer="RetrieveProperties")
            assert a.fault is None, a.fault
            (oc,) = a.returnvals
            assert oc.findtext(f"{V}propSet/{V}val/{V}key") == (sid if alive else None), (kind, alive)
        else:
            call = E("SessionIsActive", ref("_this", SM), E("sessionID", text=sid), E("userName", text=user))
            a = fuzz.send(render(call), cookie(fuzz.sid), answer="SessionIsActive")
            active = alive and user.strip().lower() == ADMIN_USER.lower()
            assert a.fault is None and [v.text for v in a.returnvals] == [str(active).lower()], (kind, alive, user)
    for sid, alive in sessions:
        if alive:
            fuzz.logout(sid)


# -- paging ---------------------------------------------------------------------------------------------------------
def everything() -> ET.Element:
    """A spec that selects every entity (the folders, the datacenter, the datastore) and the views given."""
    down = [_trav("Datacenter", f, _sel("folder"), name=f"dc-{f}") for f in DC_FOLDERS]
    folder = _trav("Folder", "childEntity", _sel("folder"), *[_sel(f"dc-{f}") for f in DC_FOLDERS], name="folder")
    return E(
        "specSet",
        E("propSet", E("type", text="ManagedEntity"), E("pathSet", text="name")),
        E("propSet", E("type", text="ContainerView"), E("pathSet", text="view")),
        E("objectSet", ref("obj", ROOT), folder, *down),
        *[E("objectSet", ref("obj", ("ContainerView", v))) for v in VIEWS[:3]],
    )


PAGING = st.sampled_from(["continue"] * 5 + ["bogus", "replay", "other", "anonymous", "cancel", "cancel-bogus"])


@SETTINGS
@hypothesis.given(limit=st.integers(1, 11), actions=st.lists(PAGING, max_size=14))
@pytest.mark.parametrize("examples", [EXAMPLES])
def test_fuzz_paging(fuzz: Fuzzer, limit: int, actions: list[str], examples: int) -> None:
    """RetrievePropertiesEx in pages of `limit`: each token gives the next page once, in its session only; a made-up,
    used or cancelled token is InvalidProperty; all pages together are what one RetrieveProperties returns."""
    fuzz.cases += 1
    call = E("RetrievePropertiesEx", ref("_this", PC), everything(), E("options", E("maxObjects", text=str(limit))))
    wanted = o_retrieve(call, True, Faults())
    main = cookie(fuzz.sid)

    def page(a: Answer) -> tuple[list[ET.Element], str | None]:
        assert a.fault is None, f"{a.fault}: {a.message}"
        (result,) = a.returnvals
        objects, token = result.findall(f"{V}objects"), result.findtext(f"{V}token")
        assert objects and len(objects) <= limit and (token is None or len(objects) == limit), len(objects)
        return objects, token

    def step(method: str, token: str, sent: str | None) -> Answer:
        return fuzz.send(render(E(method, ref("_this", PC), E("token", text=token))), sent, answer=method)

    objects, token = page(fuzz.send(render(call), main, answer="RetrievePropertiesEx"))
    used: list[str] = []
    cancelled = False
    for action in actions:
        if token is None:
            break
        if action == "continue":
            more, new = page(step("ContinueRetrievePropertiesEx", token, main))
            used.append(token)
            objects, token = objects + more, new
        elif action == "cancel":
            a = step("CancelRetrievePropertiesEx", token, main)
            assert a.fault is None and not a.returnvals, a.fault
            used.append(token)
            token, cancelled = None, True
        else:
            sent = {"other": cookie(fuzz.other_sid), "anonymous": None}.get(action, main)
            name = {"replay": used[0] if used else "0" * 32, "bogus": "0" * 32, "cancel-bogus": "f" * 32}.get(action)
            method = "CancelRetrievePropertiesEx" if action == "cancel-bogus" else "ContinueRetrievePropertiesEx"
            a = step(method, name or token, sent)
            assert a.fault == ("NotAuthenticated" if action == "anonymous" else "InvalidProperty"), (action, a.fault)
    while token is not None and not cancelled:
        more, token = page(step("ContinueRetrievePropertiesEx", token, main))
        objects += more
    if cancelled:
        got = [(o.get("type") or "", o.text or "") for oc in objects for o in oc.findall(f"{V}obj")]
        assert len(got) == len(set(got)) and set(got) <= set(wanted), got
        assert step("ContinueRetrievePropertiesEx", used[-1], main).fault == "InvalidProperty"
    else:
        check_contents(objects, wanted, True, fuzz.sid)


# -- the envelope -------------------------------------------------------------------------------------------------
BASES: dict[str, tuple[Callable[[], ET.Element], str]] = {
    "content": (lambda: E("RetrieveServiceContent", ref("_this", SI)), "none"),
    "time": (lambda: E("CurrentTime", ref("_this", SI)), "session"),
    "retrieve": (lambda: E("RetrieveProperties", ref("_this", PC), everything()), "session"),
    "anonymous": (
        lambda: E(
            "RetrieveProperties",
            ref("_this", PC),
            E(
                "specSet",
                E("propSet", E("type", text="SessionManager"), E("all", text="true")),
                E("objectSet", ref("obj", SM)),
            ),
        ),
        "none",
    ),
}
LAUGHS = '<!DOCTYPE lolz [<!ENTITY lol "lol">' + "".join(
    f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">' for i in range(1, 10)
)
DOCTYPES = [
    LAUGHS + "]>",
    '<!DOCTYPE e [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE e [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>',
    '<!DOCTYPE soapenv:Envelope SYSTEM "http://127.0.0.1:9/soap.dtd">',
    "<!DOCTYPE e [<!ELEMENT e ANY>]>",
    '<!DOCTYPE e PUBLIC "-//x//y" "http://127.0.0.1:9/y.dtd">',
    "<!DOCTYPE e>",
]
# A declared encoding, and whether the body encoded so reads the same (the bodies are ASCII).
SAME_ENCODINGS = ["UTF-8", "utf-8", "UTF-16", "ISO-8859-1", "latin-1", "US-ASCII", "cp1252", "koi8-r", "cp437"]
ODD_ENCODINGS = ["UTF-32", "utf-7", "shift_jis", "rot13", "punycode", "idna", "unicode_escape", "base64", "hex"]
ODD_ENCODINGS += ["no-such-encoding", "", "cp500", "UTF-16LE", "utf_8_sig", "zlib", "uu", "mbcs", "ascii\x00"]


@dataclass(frozen=True)
class Mutation:
    kind: str
    arg: Any = None


_PREFIX = xml_names.filter(lambda n: not n.lower().startswith("xml"))
_BAD_UTF8 = [b"\xff\xfe", b"\xc3\x28", b"\x80", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x00"]
_GARBAGE = [b"", b"   \n", b"{}", b"<html/>", b"\xef\xbb\xbf", b"<a><b></a></b>"]
# Each kind of mutation, with what it takes (`mutate` applies it).
MUTATIONS: dict[str, st.SearchStrategy[Any]] = {
    "envelope-ns": st.sampled_from(
        ["http://www.w3.org/2003/05/soap-envelope", "urn:vim25", SOAP_ENV.rstrip("/"), SOAP_ENV + "/"]
    ),
    "root": st.sampled_from(["Envelop", "Body", "Fault", "html"]),
    "header": st.sampled_from(
        [
            "<soapenv:Header/>",
            "<soapenv:Header><x>1</x></soapenv:Header>",
            '<soapenv:Header><y soapenv:mustUnderstand="1"/></soapenv:Header>',
        ]
    ),
    "header-after": st.just("<soapenv:Header/>"),
    "method-ns": st.sampled_from(["urn:vim2", f"{VIM25}/8.0.2.0", "urn:internalvim25", "URN:VIM25", f"{VIM25} ", ""]),
    "prefixes": st.tuples(_PREFIX, _PREFIX),
    "doctype": st.sampled_from(DOCTYPES),
    "encoding": st.sampled_from(SAME_ENCODINGS),
    "odd-encoding": st.sampled_from(ODD_ENCODINGS),
    "bad-bytes": st.tuples(st.floats(0, 1), st.sampled_from(_BAD_UTF8)),
    "truncate": st.floats(0, 0.999),
    "flip": st.tuples(st.floats(0, 0.999), st.integers(0, 255)),
    "garbage": st.binary(max_size=300) | st.sampled_from(_GARBAGE),
    "deep": st.integers(1, 4000),
    "many": st.integers(1, 25_000),
    "comment": st.sampled_from(["<!-- x -->", "<?pi x?>", "<!---->", "\n\t "]),
    **dict.fromkeys(["no-body", "two-bodies", "empty-body", "two-methods", "body-text", "no-decl"], st.none()),
    **dict.fromkeys(["default-ns", "bom", "cdata", "charref", "undefined-entity", "xsi-type", "dup-attr"], st.none()),
    **dict.fromkeys(["undeclared-prefix", "xml-1.1", "standalone", "leading-space", "trailing-space"], st.none()),
    "trailing-element": st.none(),
}
mutations = st.one_of(*[st.builds(Mutation, st.just(kind), arg) for kind, arg in MUTATIONS.items()])


def mutate(m: Mutation, method: ET.Element) -> tuple[bytes, str]:
    """The mutated body, and what it must get: `same` (the answer to the call as it was), `refused` (InvalidRequest)
    or `unknown` (the checks every answer must pass)."""
    inner = ET.tostring(method, encoding="unicode")
    this = kids(method, "_this")[0]
    value = this.text or ""
    plain = envelope_text(inner)
    start = inner.index(">") + 1  # after the method's start tag
    k, arg = m.kind, m.arg
    if k == "envelope-ns":
        return envelope_text(inner, env_open=ENV_OPEN.replace(SOAP_ENV, arg, 1)).encode(), "refused"
    if k == "root":
        return f'{DECL}<{arg} xmlns="{SOAP_ENV}">{inner}</{arg}>'.encode(), "refused"
    if k in ("no-body", "two-bodies", "empty-body", "two-methods", "body-text", "no-decl"):
        body = {
            "no-body": f"{DECL}{ENV_OPEN}</soapenv:Envelope>",
            "two-bodies": plain.replace(
                "</soapenv:Envelope>", f"<soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>"
            ),
            "empty-body": envelope_text(""),
            "two-methods": envelope_text(inner + inner),
            "body-text": envelope_text(f"\n junk {inner} more "),
            "no-decl": plain[len(DECL) :],
        }[k]
        return body.encode(), "same" if k in ("body-text", "no-decl") else "refused"
    if k in ("header", "header-after"):
        body = envelope_text(inner, arg) if k == "header" else plain.replace("</soapenv:Body>", f"</soapenv:Body>{arg}")
        return body.encode(), "same"
    if k == "method-ns":
        return envelope_text(inner.replace(f'"{VIM25}"', f'"{arg}"', 1)).encode(), "refused"
    if k == "prefixes":
        env, ns = arg
        body = plain.replace("soapenv:", f"{env}:").replace("xmlns:soapenv=", f"xmlns:{env}=")
        body = body.replace("ns0:", f"{ns}:").replace("xmlns:ns0=", f"xmlns:{ns}=")
        same = env != ns and "xsi" not in (env, ns) and "xsd" not in (env, ns)
        return body.encode(), "same" if same else "unknown"
    if k == "default-ns":
        body = f'{DECL}<Envelope xmlns="{SOAP_ENV}" xmlns:xsi="{XSI}"><Body>{inner}</Body></Envelope>'
        return body.encode(), "same"
    if k == "doctype":
        return (DECL + arg + plain[len(DECL) :]).encode(), "refused"
    if k in ("encoding", "odd-encoding"):
        body = plain.replace('encoding="UTF-8"', f'encoding="{arg}"', 1)
        if k == "odd-encoding":
            return body.encode(), "unknown"
        return body.encode(arg), "same"
    if k == "bom":
        return b"\xef\xbb\xbf" + plain.encode(), "same"
    raw = plain.encode()
    if k == "bad-bytes":
        at = int(arg[0] * len(raw))
        return raw[:at] + arg[1] + raw[at:], "refused"
    if k == "truncate":
        return raw[: int(arg * len(raw))], "refused"
    if k == "flip":
        at = int(arg[0] * len(raw))
        return raw[:at] + bytes([arg[1]]) + raw[at + 1 :], "unknown"
    if k == "garbage":
        return arg, "refused"
    if k in ("deep", "many"):
        extra = "<x>" * arg + "</x>" * arg if k == "deep" else "<x/>" * arg
        nested = envelope_text(inner[:start] + extra + inner[start:]).encode()
        count = 2 + sum(1 for _ in method.iter())
        over = 3 + arg > MAX_DEPTH if k == "deep" else count + arg > MAX_ELEMENTS
        return nested, "refused" if over or len(nested) > MAX_BODY else "same"
    if k == "comment":
        return envelope_text(inner[:start] + arg + inner[start:]).replace(
            "<soapenv:Body>", f"<soapenv:Body>{arg}"
        ).encode(), "same"
    if k in ("cdata", "charref", "undefined-entity"):
        new = {
            "cdata": f"<![CDATA[{value}]]>",
            "charref": f"&#x{ord(value[0]):x};{value[1:]}",
            "undefined-entity": "&nope;",
        }[k]
        return envelope_text(
            inner.replace(f">{value}<", f">{new}<", 1)
        ).encode(), "refused" if k == "undefined-entity" else "same"
    if k in ("xsi-type", "dup-attr"):
        attr = ' xsi:type="xsd:string"' if k == "xsi-type" else f' type="{this.get("type")}"'
        at = inner.index("_this") + len("_this")
        return envelope_text(inner[:at] + attr + inner[at:]).encode(), "same" if k == "xsi-type" else "refused"
    if k == "undeclared-prefix":
        return envelope_text(inner[:start] + "<foo:bar/>" + inner[start:]).encode(), "refused"
    if k == "xml-1.1":
        return plain.replace('version="1.0"', 'version="1.1"', 1).encode(), "unknown"
    if k == "standalone":
        return plain.replace('encoding="UTF-8"', 'encoding="UTF-8" standalone="yes"', 1).encode(), "same"
    if k == "leading-space":
        return (" \n" + plain).encode(), "refused"
    if k == "trailing-space":
        return (plain + "\n \t\n").encode(), "same"
    assert k == "trailing-element", k
    return (plain + "<x/>").encode(), "refused"


@SETTINGS
@hypothesis.given(base=st.sampled_from(sorted(BASES)), mutation=mutations)
@pytest.mark.parametrize("examples", [EXAMPLES])
def test_fuzz_envelope(fuzz: Fuzzer, base: str, mutation: Mutation, examples: int) -> None:
    fuzz.cases += 1
    build, auth = BASES[base]
    method = build()
    body, outcome = mutate(mutation, method)
    sent_cookie, headers = auth_headers(fuzz, auth)
    c = Ctx(fuzz, method, auth in LOGGED_IN, fuzz.sid if auth in LOGGED_IN else None, sent_cookie, headers)
    expect = {"same": expect_call(c, 0), "refused": fault("InvalidRequest"), "unknown": UNKNOWN}[outcome]
    a = fuzz.send(body, sent_cookie, headers, answer=local(method.tag) if outcome == "same" else None)
    judge(a, expect, f"{mutation} {show(body)}")


# -- HTTP -----------------------------------------------------------------------------------------------------------
CONTENT_TYPES = [None, 'text/xml; charset="utf-8"', "application/soap+xml", "application/json", "text/plain", ""]
CONTENT_TYPES += [
    "text/xml; charset=latin-1",
    "multipart/form-data; boundary=x",
    "x" * 3000,
    'text/xml; charset="utf-16"',
]
SOAP_ACTIONS = [None, "urn:vim25/8.0.2.0", '""', "urn:vim25/5.5", "urn:vim25/9.9.9", "garbage", "urn:internalvim25/8.0"]
SOAP_ACTIONS += ["x" * 4000, "urn:vim25/\u00e9"]
# Content-Encodings aiohttp has no decoder for here (br, zstd: their libraries are not installed) are refused by its
# HTTP parser with a plain 400 before /sdk sees the request, as any broken HTTP (test_hostile_http.py): not sent.
ENCODINGS = [None, None, None, "gzip", "deflate", "gzip-garbage", "deflate-garbage", "x-unknown", "identity"]
ENCODINGS += ["gzip, gzip", "GZIP", "compress"]
COOKIES = [None, "a=b", "a=b; $C", "$C; a=b", "$C; vmware_soap_session_x=1", '$C; other="a b"', "=; $C", "$C;;;"]
AGENTS = [None, "pyvmomi Python/3.11", "govc/0.24.2", "\u00e9\u00e8", "x" * 4000, "a\tb", ""]
HTTP_METHODS = ["POST"] * 8 + ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PROPFIND"]


def encoded(body: bytes, encoding: str | None) -> tuple[bytes, str]:
    """The body with a Content-Encoding, and what it must get (as in `mutate`)."""
    if encoding in ("gzip", "GZIP"):
        return gzip.compress(body), "same"
    if encoding == "deflate":
        return zlib.compress(body), "same"
    if encoding in ("gzip-garbage", "deflate-garbage"):
        return body, "refused"  # the bytes are not what the header says
    if encoding == "gzip, gzip":
        return gzip.compress(gzip.compress(body)), "unknown"
    return body, "same" if encoding in (None, "identity") else "unknown"


@SETTINGS
@hypothesis.given(
    base=st.sampled_from(sorted(BASES)),
    http_method=st.sampled_from(HTTP_METHODS),
    content_type=st.sampled_from(CONTENT_TYPES),
    soap_action=st.sampled_from(SOAP_ACTIONS),
    encoding=st.sampled_from(ENCODINGS),
    chunked=st.booleans(),
    cookies=st.sampled_from(COOKIES),
    agent=st.sampled_from(AGENTS),
)
@pytest.mark.parametrize("examples", [EXAMPLES])
def test_fuzz_http(
    fuzz: Fuzzer,
    base: str,
    http_method: str,
    content_type: str | None,
    soap_action: str | None,
    encoding: str | None,
    chunked: bool,
    cookies: str | None,
    agent: str | None,
    examples: int,
) -> None:
    """All on one keep-alive connection: an answer that does not close it must leave it usable."""
    fuzz.cases += 1
    build, auth = BASES[base]
    method = build()
    body, outcome = encoded(render(method), encoding)
    sent_cookie, auth_header = auth_headers(fuzz, auth)
    logged_in = auth in LOGGED_IN and (cookies is None or "$C" in cookies)
    c = Ctx(fuzz, method, logged_in, fuzz.sid if logged_in else None, sent_cookie, auth_header)
    if cookies is not None:
        sent_cookie = cookies.replace("$C", sent_cookie or "c=d")
    headers: dict[str, str | None] = {"Content-Type": content_type, "SOAPAction": soap_action, "User-Agent": agent}
    headers |= auth_header  # None: the header is left out
    if encoding is not None:
        headers["Content-Encoding"] = encoding.replace("-garbage", "")
    data: Any = body if not chunked else iter([body[i : i + 7000] for i in range(0, len(body), 7000)] or [b""])
    if http_method != "POST":
        expect = fault("InvalidRequest")
    else:
        expect = {"same": expect_call(c, 0), "refused": fault("InvalidRequest"), "unknown": UNKNOWN}[outcome]
    a = fuzz.send(data, sent_cookie, headers, http_method, answer=local(method.tag) if outcome == "same" else None)
    judge(a, expect, f"{http_method} {headers} {show(body)}")


def test_every_dispatched_method_is_modeled() -> None:
    """A method the server dispatches without an argument model and an oracle here would go unfuzzed."""
    assert set(SERVED) == set(ARGS) == set(ORACLES), set(SERVED) ^ set(ARGS) | set(SERVED) ^ set(ORACLES)
