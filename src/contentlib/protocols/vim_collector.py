"""The PropertyCollector: RetrieveProperties(Ex) as a traversal over the inventory's object graph.

A filter spec names starting objects (ObjectSpec: obj, skip, selectSet), how to walk from them (TraversalSpec: from
objects of `type`, follow the reference(s) in property `path`, then apply its own selectSet; skip: do not report the
objects it reaches; a SelectionSpec with only a name stands for the TraversalSpec of that name anywhere in the filter
spec) and what to report (PropertySpec: for objects of `type` or a subtype, the properties in pathSet, or all). Every
object reached and not skipped, that a PropertySpec's type matches, is reported once, with the union of the
properties its matching specs ask for, whether other ways to it skip it or not. Walking stops where an object was
already walked with the same selection, so recursive specs (govc's `traverseParent`) end.

The specs are checked before anything is collected: an unknown type is InvalidType, a path that is not a property of
its spec's type InvalidProperty, a selection naming no TraversalSpec InvalidArgument, a starting object that does
not exist ManagedObjectNotFound (or, with reportMissingObjectsInResults, a missingSet entry).

RetrievePropertiesEx returns at most `maxObjects` objects and a token for the rest, kept in this process for the
session that asked (ContinueRetrievePropertiesEx on another replica does not find it).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element

from contentlib.protocols.vim_inventory import (
    SERVICE_INSTANCE,
    SESSION_MANAGER,
    Caller,
    Inventory,
    check_path,
    is_a,
    is_known,
)
from contentlib.protocols.vim_values import (
    AnyType,
    Array,
    Data,
    MoRef,
    Value,
    arg_bool,
    arg_int,
    arg_moref,
    arg_text,
    children,
    data,
    invalid_argument,
    invalid_property,
    invalid_type,
    not_authenticated,
    not_found,
    string,
    xsi_type,
)

_PAGES_MAX = 1000  # paged results kept at once (the oldest go first)
_PAGE_TTL = 600.0  # seconds a paged result is kept


@dataclass(frozen=True, eq=False)
class Selection:
    """A SelectionSpec; with `traversal`, a TraversalSpec (type, path, skip, selectSet)."""

    name: str | None
    traversal: Traversal | None = None


@dataclass(frozen=True, eq=False)
class Traversal:
    type: str
    path: str
    skip: bool
    select_set: tuple[Selection, ...]


@dataclass(frozen=True)
class PropertySpec:
    type: str
    all: bool
    path_set: tuple[str, ...]


@dataclass(frozen=True)
class ObjectSpec:
    obj: MoRef
    skip: bool
    select_set: tuple[Selection, ...]


@dataclass(frozen=True)
class FilterSpec:
    prop_set: tuple[PropertySpec, ...]
    object_set: tuple[ObjectSpec, ...]
    report_missing: bool


# -- decoding the specs from the request ----------------------------------------------------------------------------
def filter_specs(args: Element) -> list[FilterSpec]:
    return [filter_spec(e) for e in children(args, "specSet")]


def filter_spec(e: Element) -> FilterSpec:
    report = next(iter(children(e, "reportMissingObjectsInResults")), None)
    return FilterSpec(
        tuple(
            PropertySpec(
                arg_text(p, "type"),
                bool(children(p, "all")) and arg_bool(children(p, "all")[0]),
                tuple(arg_text(x) for x in children(p, "pathSet")),
            )
            for p in children(e, "propSet")
        ),
        tuple(
            ObjectSpec(
                arg_moref(next(iter(children(o, "obj")), None), "objectSet.obj"),
                bool(children(o, "skip")) and arg_bool(children(o, "skip")[0]),
                tuple(_selection(s) for s in children(o, "selectSet")),
            )
            for o in children(e, "objectSet")
        ),
        report is not None and arg_bool(report),
    )


def _selection(e: Element) -> Selection:
    name = next((arg_text(n) for n in children(e, "name")), None)
    kind = xsi_type(e)
    if kind == "SelectionSpec" or (kind is None and not children(e, "path")):
        return Selection(name)
    if kind not in (None, "TraversalSpec"):
        raise invalid_argument("selectSet", f"A selectSet entry is a SelectionSpec or a TraversalSpec, not {kind}.")
    return Selection(
        name,
        Traversal(
            arg_text(e, "type"),
            arg_text(e, "path"),
            bool(children(e, "skip")) and arg_bool(children(e, "skip")[0]),
            tuple(_selection(s) for s in children(e, "selectSet")),
        ),
    )


def retrieve_options(args: Element) -> int | None:
    """RetrieveOptions.maxObjects (None: no limit)."""
    options = next(iter(children(args, "options")), None)
    limit = next(iter(children(options, "maxObjects")), None) if options is not None else None
    if limit is None:
        return None
    n = arg_int(limit)
    if n <= 0:
        raise invalid_argument("maxObjects", f"options.maxObjects must be positive, not {n}.")
    return n


# -- the traversal ----------------------------------------------------------------------------------------------------
@dataclass
class _Walk:
    inventory: Inventory
    caller: Caller
    names: dict[str, Traversal]
    collected: dict[MoRef, None] = field(default_factory=dict)  # in the order they were reached
    walked: set[tuple[MoRef, int]] = field(default_factory=set)
    followed: dict[tuple[MoRef, str], list[MoRef]] = field(default_factory=dict)  # references read, by path

    async def visit(self, obj: MoRef, select_set: tuple[Selection, ...], skip: bool) -> None:
        """Walk from `obj`, depth first, with a stack of its own: a chain of named TraversalSpecs can be thousands
        deep, more than Python's recursion allows. An object is collected when any way that reaches it does not skip
        it (another way may have reached it skipping, with the same selections: all empty ones are one tuple)."""
        todo = [(obj, select_set, skip)]
        while todo:
            obj, select_set, skip = todo.pop()
            if not skip:
                self.collected.setdefault(obj, None)
            key = (obj, id(select_set))
            if key in self.walked:
                continue
            self.walked.add(key)
            reached: list[tuple[MoRef, tuple[Selection, ...], bool]] = []
            for selection in select_set:
                t = selection.traversal or self.names[selection.name or ""]
                if is_a(obj.type, t.type):
                    reached += [(child, t.select_set, t.skip) for child in await self.references(obj, t.path)]
            todo += reversed(reached)  # the first reached is walked first, as a recursive walk would

    async def references(self, obj: MoRef, path: str) -> list[MoRef]:
        """The objects property `path` of `obj` refers to (read once per walk: specs may name a path many times)."""
        found = self.followed.get((obj, path))
        if found is None:
            value = (await self.inventory.values(obj, [path], self.caller)).get(path)
            items = [value] if isinstance(value, MoRef) else value.items if isinstance(value, Array) else ()
            found = self.followed[(obj, path)] = [v for v in items if isinstance(v, MoRef) and self.inventory.exists(v)]
        return found


def _traversals(selections: tuple[Selection, ...], out: list[Traversal], named: dict[str, Traversal]) -> None:
    for s in selections:
        if s.traversal is not None:
            out.append(s.traversal)
            if s.name:
                named.setdefault(s.name, s.traversal)
            _traversals(s.traversal.select_set, out, named)


def _references(selections: tuple[Selection, ...]) -> list[str]:
    names: list[str] = []
    for s in selections:
        if s.traversal is None:
            names.append(s.name or "")
        else:
            names += _references(s.traversal.select_set)
    return names


def _check(spec: FilterSpec) -> dict[str, Traversal]:
    """The spec's named TraversalSpecs, once every type, path and reference in it is known to be valid."""
    for p in spec.prop_set:
        if not is_known(p.type):
            raise invalid_type(p.type)
        if not p.all:
            for path in p.path_set:
                check_path(p.type, path)
    traversals: list[Traversal] = []
    named: dict[str, Traversal] = {}
    roots = tuple(s for o in spec.object_set for s in o.select_set)
    _traversals(roots, traversals, named)
    for t in traversals:
        if not is_known(t.type):
            raise invalid_type(t.type)
        if "." in t.path:
            raise invalid_property(t.path, f"A TraversalSpec's path names a property, not a path into one: {t.path}.")
        check_path(t.type, t.path)
    for name in _references(roots):
        if name not in named:
            raise invalid_argument("selectSet", f"No TraversalSpec in the filter spec is named '{name}'.")
    return named


def _missing(obj: MoRef) -> Data:
    """The ObjectContent of a starting object that does not exist (reportMissingObjectsInResults)."""
    fault = not_found(obj)
    missing = data(
        "MissingProperty",
        path=string(""),
        fault=data("LocalizedMethodFault", fault=Data(fault.type, fault.fields), localizedMessage=string(str(fault))),
    )
    return data("ObjectContent", obj=obj, missingSet=Array("MissingProperty", (missing,)))


def _content(obj: MoRef, props: dict[str, Data]) -> Data:
    return data("ObjectContent", obj=obj, propSet=Array("DynamicProperty", tuple(props.values())) if props else None)


@dataclass
class _Page:
    session: str
    rest: list[Data]
    limit: int
    created: float


class PropertyCollector:
    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.pages: dict[str, _Page] = {}

    async def retrieve(self, specs: list[FilterSpec], caller: Caller) -> list[Data]:
        """The ObjectContent of every object the specs select, in the order they were reached."""
        if caller.session is None:  # before login, only the SessionManager may be read (and shows nothing)
            for spec in specs:
                for o in spec.object_set:
                    if o.obj != SESSION_MANAGER:
                        raise not_authenticated(o.obj, "System.Read")
        checked = [(spec, _check(spec)) for spec in specs]
        found: dict[MoRef, dict[str, Data] | Data] = {}  # an object's properties by path, or its missing entry
        for spec, named in checked:
            walk = _Walk(self.inventory, caller, named)
            for o in spec.object_set:
                if self.inventory.exists(o.obj):
                    await walk.visit(o.obj, o.select_set, o.skip)
                elif spec.report_missing:
                    found.setdefault(o.obj, _missing(o.obj))
                else:
                    raise not_found(o.obj)
            for obj in walk.collected:
                matching = [p for p in spec.prop_set if is_a(obj.type, p.type)]
                if not matching:
                    continue
                paths = None if any(p.all for p in matching) else [x for p in matching for x in p.path_set]
                props = found.setdefault(obj, {})
                if isinstance(props, dict):
                    for prop in await self._props(obj, paths, caller):
                        props.setdefault(str(prop.get("name")), prop)
        return [entry if isinstance(entry, Data) else _content(obj, entry) for obj, entry in found.items()]

    async def _props(self, obj: MoRef, paths: list[str] | None, caller: Caller) -> list[Data]:
        """DynamicProperty values (a path with dots reads into data objects); unset ones are left out."""
        paths = None if paths is None else list(dict.fromkeys(paths))
        tops = None if paths is None else list(dict.fromkeys(p.split(".")[0] for p in paths))
        values = await self.inventory.values(obj, tops, caller)
        out: list[Data] = []
        for path in paths if paths is not None else list(values):
            value: Value | None = values.get(path.split(".")[0])
            for part in path.split(".")[1:]:
                value = value.get(part) if isinstance(value, Data) else None
            if value is not None:
                out.append(data("DynamicProperty", name=string(path), val=AnyType(value)))
        return out

    async def fetch(self, obj: MoRef, path: str, caller: Caller) -> Value | None:
        """Fetch (what pyvmomi reads a property with): one property of one object, or None when it is unset. Before
        login only the ServiceInstance's content and the SessionManager (which then shows nothing) may be read."""
        check_path(obj.type, path)
        if caller.session is None and obj != SESSION_MANAGER and (obj, path) != (SERVICE_INSTANCE, "content"):
            raise not_authenticated(obj, "System.Read")
        found = await self._props(obj, [path], caller)
        return found[0].get("val") if found else None

    # -- RetrievePropertiesEx paging --------------------------------------------------------------------------------
    def page(self, objects: list[Data], limit: int | None, session: str) -> Data | None:
        """A RetrieveResult of at most `limit` objects, with a token for the rest (None: nothing at all)."""
        if not objects:
            return None
        token = None
        if limit is not None and len(objects) > limit:
            self._forget_old()
            token = secrets.token_hex(16)
            self.pages[token] = _Page(session, objects[limit:], limit, time.monotonic())
            objects = objects[:limit]
        return data(
            "RetrieveResult", token=string(token) if token else None, objects=Array("ObjectContent", tuple(objects))
        )

    def resume(self, token: str, session: str) -> Data | None:
        """ContinueRetrievePropertiesEx: the next objects, as many as the first call's maxObjects."""
        page = self.pages.get(token)
        if page is None or page.session != session:
            raise invalid_property("token", f"The token '{token}' names no result left to retrieve in this session.")
        del self.pages[token]
        return self.page(page.rest, page.limit, session)

    def cancel(self, token: str, session: str) -> None:
        page = self.pages.get(token)
        if page is None or page.session != session:
            raise invalid_property("token", f"The token '{token}' names no result left to retrieve in this session.")
        del self.pages[token]

    def _forget_old(self) -> None:
        now = time.monotonic()
        for token, page in list(self.pages.items()):
            if now - page.created > _PAGE_TTL:
                del self.pages[token]
        while len(self.pages) >= _PAGES_MAX:
            del self.pages[next(iter(self.pages))]
