"""The SOAP fuzzer's strategies: what a request is drawn from (soapfuzz.py says how they run).

Text (valid values, whitespace around them, unicode, NUL and control characters, lone surrogates, huge), managed
object references (right, of the wrong type, of a base type, unknown, without a type), PropertyFilterSpecs (mostly
valid, so that their results are held to the model, each part now and then mutated), every dispatched method's
arguments (`ARGS`) and whole calls of served and unknown methods with junk elements around them; `BASES`, the valid
calls the envelope and HTTP strategies mutate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from conftest import ADMIN_PASSWORD, ADMIN_USER
from hypothesis import strategies as st
from soapfuzz_collector import everything
from soapfuzz_model import (
    BAD_VIEWS,
    BOGUS_TYPES,
    DC,
    DC_FOLDERS,
    DS,
    DS_FOLDER,
    ENTITIES,
    MANAGED,
    PC,
    ROOT,
    SERVED,
    SI,
    SINGLETONS,
    SM,
    SOME_UNSERVED,
    VIEWS,
    MoRef,
    all_paths,
    kids,
    local,
    read_ref,
    resolve,
    xsi_of,
)
from soapkit import VIM25, XSI, E, ref, selection, traversal

from contentlib.protocols.vim_inventory import is_a, properties
from contentlib.services.datastores import DATASTORE_ID

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


def govc_selects() -> list[ET.Element]:
    """What govc and pyvmomi send: down the folders and datacenters, up the parents, into a container view."""
    return [
        traversal("Folder", "childEntity", selection("dc"), selection("folder"), name="folder"),
        traversal("Datacenter", "datastoreFolder", selection("folder"), name="dc"),
    ]


KNOWN_SELECTS: list[Callable[[], list[ET.Element]]] = [
    govc_selects,
    lambda: [traversal("ManagedEntity", "parent", selection("traverseParent"), name="traverseParent")],
    lambda: [traversal("ContainerView", "view")],
    lambda: [traversal("Datacenter", f, name=f) for f in DC_FOLDERS],
    lambda: [traversal("Folder", "childEntity", skip=True), traversal("Folder", "childEntity")],
    lambda: [traversal("Folder", "childEntity", traversal("Datacenter", "vmFolder", skip=True), skip=True)],
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
    resolved = resolve(read_ref(this[0])) if this else None
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
