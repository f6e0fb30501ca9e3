"""The SOAP fuzzer's model of the PropertyCollector (soap.py's and vim_collector.py's docstrings): a
RetrieveProperties(Ex) request's PropertyFilterSpecs read as the server reads them, the faults they call for, the
objects their traversal rules reach, and the check of an answer against them: exactly the objects the specs select
(or a missingSet), each with only properties it was asked for that exist on its type, every always-set one asked for,
and the model's values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree import ElementTree as ET

from soapfuzz_model import (
    CHILDREN,
    DC_FOLDERS,
    ROOT,
    SM,
    VIEWS,
    Faults,
    MoRef,
    always_set,
    entity_name,
    exists,
    kid,
    kids,
    o_flag,
    o_moref,
    o_text,
    path_kind,
    references,
    text_of,
    valid_path,
    xsi_of,
)
from soapkit import XSI, E, V, moref, ref, selection, traversal

from contentlib.protocols.vim_inventory import DATA_FIELDS, is_a, is_known, properties


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
            obj = o_moref(kid(o, "obj"), faults)
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
        return [moref(c) for c in val]
    return [moref(val)]


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
        obj = moref(o)
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


def everything() -> ET.Element:
    """A spec that selects every entity (the folders, the datacenter, the datastore) and the views given."""
    down = [traversal("Datacenter", f, selection("folder"), name=f"dc-{f}") for f in DC_FOLDERS]
    folder = traversal(
        "Folder", "childEntity", selection("folder"), *[selection(f"dc-{f}") for f in DC_FOLDERS], name="folder"
    )
    return E(
        "specSet",
        E("propSet", E("type", text="ManagedEntity"), E("pathSet", text="name")),
        E("propSet", E("type", text="ContainerView"), E("pathSet", text="view")),
        E("objectSet", ref("obj", ROOT), folder, *down),
        *[E("objectSet", ref("obj", ("ContainerView", v))) for v in VIEWS[:3]],
    )
