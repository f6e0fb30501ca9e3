"""A small vim25 SOAP client for the tests: envelopes built with ElementTree, responses and faults read back.

It speaks exactly what govmomi and pyvmomi put on the wire (the tests drive those clients too), so that the
protocol's rules can be checked one by one, and hostile bodies sent as they are.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import requests

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
VIM25 = "urn:vim25"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
V = f"{{{VIM25}}}"
COOKIE = "vmware_soap_session"

SERVICE_INSTANCE = ("ServiceInstance", "ServiceInstance")
SESSION_MANAGER = ("SessionManager", "SessionManager")
PROPERTY_COLLECTOR = ("PropertyCollector", "propertyCollector")


def E(tag: str, *kids: ET.Element | None, text: str | None = None, **attrs: str) -> ET.Element:
    """An element of urn:vim25 (`xsi_type=` sets xsi:type)."""
    e = ET.Element(V + tag)
    for k, v in attrs.items():
        e.set(f"{{{XSI}}}type" if k == "xsi_type" else k, v)
    e.text = text
    e.extend(k for k in kids if k is not None)
    return e


def ref(tag: str, moref: tuple[str, str]) -> ET.Element:
    return E(tag, text=moref[1], type=moref[0])


def envelope(method: str, this: tuple[str, str], *args: ET.Element) -> bytes:
    env = ET.Element(f"{{{SOAP_ENV}}}Envelope")
    ET.SubElement(env, f"{{{SOAP_ENV}}}Body").append(E(method, ref("_this", this), *args))
    return b'<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(env)


def traversal(type_: str, path: str, *select: ET.Element, name: str | None = None, skip: bool = False) -> ET.Element:
    return E(
        "selectSet",
        E("name", text=name) if name else None,
        E("type", text=type_),
        E("path", text=path),
        E("skip", text=str(skip).lower()),
        *select,
        xsi_type="TraversalSpec",
    )


def selection(name: str) -> ET.Element:
    return E("selectSet", E("name", text=name), xsi_type="SelectionSpec")


def prop_spec(type_: str, *paths: str, all_: bool = False) -> ET.Element:
    return E(
        "propSet",
        E("type", text=type_),
        E("all", text="true") if all_ else None,
        *(E("pathSet", text=p) for p in paths),
    )


def obj_spec(obj: tuple[str, str], *select: ET.Element, skip: bool = False) -> ET.Element:
    return E("objectSet", ref("obj", obj), E("skip", text=str(skip).lower()), *select)


def spec_set(*parts: ET.Element, report_missing: bool = False) -> ET.Element:
    extra = E("reportMissingObjectsInResults", text="true") if report_missing else None
    return E("specSet", *parts, extra)


@dataclass
class Fault:
    type: str
    message: str
    detail: ET.Element


class SoapError(AssertionError):
    def __init__(self, status: int, fault: Fault) -> None:
        super().__init__(f"{status} {fault.type}: {fault.message}")
        self.status = status
        self.fault = fault


def parse_fault(body: bytes) -> Fault:
    root = ET.fromstring(body)
    f = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert f is not None, body[:500]
    assert f.findtext("faultcode") == "ServerFaultCode", body[:500]
    detail = f.find("detail")
    assert detail is not None and len(detail) == 1, body[:500]
    fault = detail[0]
    kind = fault.get(f"{{{XSI}}}type") or ""
    assert fault.tag == f"{V}{kind}Fault", body[:500]
    return Fault(kind, f.findtext("faultstring") or "", fault)


class Soap:
    """One client: its own HTTP session, so the vmware_soap_session cookie it is given is sent back."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.http.verify = False
        self.http.trust_env = False

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
        h = {"Content-Type": 'text/xml; charset="utf-8"', "SOAPAction": "urn:vim25/8.0.2.0", **(headers or {})}
        return self.http.post(self.base + "/sdk", data=body, headers=h, timeout=60)

    def call(self, method: str, this: tuple[str, str], *args: ET.Element) -> list[ET.Element]:
        """The returnval elements of a call that must succeed."""
        r = self.post(envelope(method, this, *args))
        if r.status_code != 200:
            raise SoapError(r.status_code, parse_fault(r.content))
        assert r.headers["Content-Type"].startswith("text/xml"), r.headers
        response = ET.fromstring(r.content).find(f"{{{SOAP_ENV}}}Body/{V}{method}Response")
        assert response is not None, r.text[:500]
        return response.findall(f"{V}returnval")

    def fault(self, method: str, this: tuple[str, str], *args: ET.Element) -> Fault:
        """The fault of a call that must fail (HTTP 500, as vCenter)."""
        r = self.post(envelope(method, this, *args))
        assert r.status_code == 500, f"{r.status_code} {r.text[:500]}"
        return parse_fault(r.content)

    def login(self, user: str, password: str) -> ET.Element:
        (session,) = self.call(
            "Login", SESSION_MANAGER, E("userName", text=user), E("password", text=password), E("locale", text="en_US")
        )
        return session

    @property
    def session_id(self) -> str | None:
        """The session id the server set (vCenter quotes the cookie's value; requests keeps the quotes)."""
        value = self.http.cookies.get(COOKIE)
        return None if value is None else value.strip('"')

    def retrieve(self, *specs: ET.Element) -> dict[tuple[str, str], dict[str, ET.Element]]:
        """RetrieveProperties: {object: {property path: val element}}."""
        return contents(self.call("RetrieveProperties", PROPERTY_COLLECTOR, *specs))


def moref(e: ET.Element | None) -> tuple[str, str]:
    assert e is not None
    return (e.get("type") or "", e.text or "")


def contents(objects: list[ET.Element]) -> dict[tuple[str, str], dict[str, ET.Element]]:
    out: dict[tuple[str, str], dict[str, ET.Element]] = {}
    for oc in objects:
        props = out.setdefault(moref(oc.find(f"{V}obj")), {})
        for p in oc.findall(f"{V}propSet"):
            val = p.find(f"{V}val")
            assert val is not None
            props[p.findtext(f"{V}name") or ""] = val
    return out


def xsi_type(e: ET.Element) -> str | None:
    return e.get(f"{{{XSI}}}type")


def text(e: ET.Element, path: str) -> str:
    found = e.find("/".join(V + p for p in path.split("/")))
    assert found is not None, f"{path} not in {ET.tostring(e)[:300]!r}"
    return found.text or ""


def items(e: ET.Element) -> list[Any]:
    """The items of an ArrayOf... value (their morefs, for ArrayOfManagedObjectReference)."""
    if xsi_type(e) == "ArrayOfManagedObjectReference":
        return [moref(c) for c in e]
    return [c.text for c in e]


def datastore_id(base: str, user: str, password: str) -> str:
    """This server's datastore, found as govc finds it: from the root folder through the datacenter's datastore
    folder."""
    soap = Soap(base)
    soap.login(user, password)
    found = soap.retrieve(
        spec_set(
            prop_spec("Datastore", "name"),
            obj_spec(
                ("Folder", root_folder(soap)),
                traversal("Folder", "childEntity", selection("dc"), selection("folder"), name="folder"),
                traversal("Datacenter", "datastoreFolder", selection("folder"), name="dc"),
                skip=True,
            ),
        )
    )
    (ds,) = [obj for obj in found if obj[0] == "Datastore"]
    return ds[1]


def root_folder(soap: Soap) -> str:
    (content,) = soap.call("RetrieveServiceContent", SERVICE_INSTANCE)
    return text(content, "rootFolder")
