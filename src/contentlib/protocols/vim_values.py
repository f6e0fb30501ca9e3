"""The values of the vim25 SOAP API, as the inventory produces them and the codec (`soap.py`) encodes them.

A value knows its vim25 type, because the wire needs it: a property's value travels as `anyType` (`xsi:type` says
what it is: `xsd:string`, `ManagedObjectReference`, `ArrayOfManagedObjectReference`, `DatastoreSummary`, ...), and
govmomi's and pyvmomi's decoders pick the type to build from it. Faults are values too (`VimFault`), raised by the
inventory and the collector and encoded by the codec as SOAP faults with their vim25 detail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from contentlib.model import fmt_time

# Characters XML 1.0 cannot carry (C0 controls but tab and newlines, lone surrogates, U+FFFE/U+FFFF).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
XSI = "http://www.w3.org/2001/XMLSchema-instance"


@dataclass(frozen=True)
class MoRef:
    """A ManagedObjectReference: `<x type="Folder">group-d1</x>`."""

    type: str
    value: str


@dataclass(frozen=True)
class Prim:
    """A primitive: its XML Schema type (`string`, `boolean`, `long`, `int`, `dateTime`) and its text."""

    xsd: str
    text: str


@dataclass(frozen=True)
class Enum:
    """A value of a vim25 enumeration (`ManagedEntityStatus` `green`): text with the enum's type."""

    type: str
    text: str


@dataclass(frozen=True)
class Data:
    """A data object: its type and its set fields, in the WSDL's order."""

    type: str
    fields: tuple[tuple[str, Value], ...]

    def get(self, name: str) -> Value | None:
        return next((v for k, v in self.fields if k == name), None)


@dataclass(frozen=True)
class Array:
    """An array of `item` (`string`, `ManagedObjectReference`, `UserSession`): `ArrayOfString`, ... as anyType."""

    item: str
    items: tuple[Value, ...]

    @property
    def type(self) -> str:
        return "ArrayOf" + self.item[:1].upper() + self.item[1:]


@dataclass(frozen=True)
class AnyType:
    """A field declared `anyType` (DynamicProperty.val): its value travels with `xsi:type`."""

    value: Value


Value = MoRef | Prim | Enum | Data | Array | AnyType


def xml_text(text: str) -> str:
    """Text XML can carry: characters it cannot are replaced (a header's odd bytes must not break the document)."""
    return _NOT_XML.sub("\ufffd", text)


def string(text: str) -> Prim:
    return Prim("string", xml_text(text))


def boolean(flag: bool) -> Prim:
    return Prim("boolean", "true" if flag else "false")


def long(n: int) -> Prim:
    return Prim("long", str(n))


def integer(n: int) -> Prim:
    return Prim("int", str(n))


def date_time(t: float) -> Prim:
    return Prim("dateTime", fmt_time(t))


def data(type_: str, **fields: Value | None) -> Data:
    """A data object from its fields in order; unset (None) fields are left out."""
    return Data(type_, tuple((k.rstrip("_"), v) for k, v in fields.items() if v is not None))


def refs(items: list[MoRef] | tuple[MoRef, ...]) -> Array:
    return Array("ManagedObjectReference", tuple(items))


def strings(items: list[str] | tuple[str, ...]) -> Array:
    return Array("string", tuple(string(s) for s in items))


class VimFault(Exception):
    """A vim25 fault: its type (`InvalidLogin`, `ManagedObjectNotFound`, ...), the faultstring, and its fields."""

    def __init__(self, type_: str, message: str, **fields: Value | None) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message
        self.fields = data(type_, **fields).fields


def not_authenticated(obj: MoRef, privilege: str = "System.View") -> VimFault:
    return VimFault(
        "NotAuthenticated",
        "The session is not authenticated: log in with SessionManager.Login first.",
        object=obj,
        privilegeId=string(privilege),
    )


def no_permission(obj: MoRef, privilege: str) -> VimFault:
    return VimFault(
        "NoPermission",
        f"Permission to perform this operation was denied: it requires the privilege {privilege}.",
        object=obj,
        privilegeId=string(privilege),
    )


def invalid_login() -> VimFault:
    return VimFault("InvalidLogin", "Cannot complete login due to an incorrect user name or password.")


def not_found(obj: MoRef) -> VimFault:
    return VimFault(
        "ManagedObjectNotFound",
        f"The object '{obj.type}:{xml_text(obj.value)}' has already been deleted or has not been completely created",
        obj=obj,
    )


def invalid_property(name: str, message: str) -> VimFault:
    return VimFault("InvalidProperty", message, name=string(name))


def invalid_argument(name: str, message: str) -> VimFault:
    return VimFault("InvalidArgument", message, invalidProperty=string(name))


def invalid_type(name: str) -> VimFault:
    text = f"The type '{xml_text(name)}' is not a vim25 managed object type."
    return VimFault("InvalidType", text, argument=string(name))


def invalid_request(message: str) -> VimFault:
    return VimFault("InvalidRequest", message)


def not_served(method: str) -> VimFault:
    return VimFault(
        "MethodFault",
        f"The method '{xml_text(method)}' is not served by this server: it serves the content library, a login, and a "
        "read-only inventory of one datacenter and its datastore (no virtual machines, hosts or networks).",
    )


def method_not_found(receiver: MoRef, method: str) -> VimFault:
    return VimFault(
        "MethodNotFound",
        f"The object '{receiver.type}:{xml_text(receiver.value)}' has no method '{xml_text(method)}'.",
        receiver=receiver,
        method=string(method),
    )


def system_error(reason: str) -> VimFault:
    return VimFault("SystemError", reason, reason=string(reason))


# -- reading a request's arguments (elements of the parsed envelope) ----------------------------------------------
def local(tag: str) -> str:
    """An element's name without its namespace: children are matched by name, whatever namespace a client uses."""
    return tag.rpartition("}")[2]


def children(e: Element | None, name: str) -> list[Element]:
    return [] if e is None else [c for c in e if local(c.tag) == name]


def xsi_type(e: Element) -> str | None:
    """An element's xsi:type without its prefix (`vim25:TraversalSpec` → `TraversalSpec`)."""
    value = e.get(f"{{{XSI}}}type")
    return None if value is None else value.rpartition(":")[2]


def arg_text(e: Element, child: str | None = None, strip: bool = True) -> str:
    """The text of `e`, or of its required child `child`; trimmed, unless `strip` is false (a credential: a password
    may begin or end with a space)."""
    if child is not None:
        found = children(e, child)
        if not found:
            raise invalid_request(f"The element {local(e.tag)} has no {child}: it is required.")
        e = found[0]
    text = e.text or ""
    return text.strip() if strip else text


def optional_text(e: Element, child: str) -> str | None:
    found = children(e, child)
    return arg_text(found[0]) if found else None


def arg_bool(e: Element) -> bool:
    text = arg_text(e)
    if text not in ("true", "false", "1", "0"):
        raise invalid_request(f"The element {local(e.tag)} holds '{xml_text(text[:40])}', which is not a boolean.")
    return text in ("true", "1")


def arg_int(e: Element) -> int:
    text = arg_text(e)
    if not re.fullmatch(r"[+-]?[0-9]{1,18}", text):
        raise invalid_request(f"The element {local(e.tag)} holds '{xml_text(text[:40])}', which is not an integer.")
    return int(text)


def arg_moref(e: Element | None, where: str) -> MoRef:
    """A ManagedObjectReference argument: its `type` attribute and its text."""
    if e is None:
        raise invalid_request(f"{where} is required: a managed object reference.")
    type_ = e.get("type")
    if not type_:
        raise invalid_request(f"{where} is not a managed object reference: it names no type.")
    return MoRef(type_, arg_text(e))
