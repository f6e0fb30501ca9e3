"""Hostile input on the SOAP endpoint /sdk (beside test_hostile_http.py): XML that is malformed or uses a DTD,
entities (billion laughs, external entities, parameter entities), nesting or size against the parser, bodies that
are not SOAP or not vim25, unknown methods and objects, and bytes that are not UTF-8. Each gets a SOAP fault with its
vim25 type and HTTP 500 (as vCenter answers faults), never a traceback or a file's content, and the server goes on
serving."""

from __future__ import annotations

import gzip
import socket
import subprocess
import sys
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import ADMIN_PASSWORD, ADMIN_USER, ServerProcess
from soapkit import (
    PROPERTY_COLLECTOR,
    SERVICE_INSTANCE,
    E,
    Soap,
    envelope,
    obj_spec,
    parse_fault,
    prop_spec,
    selection,
    spec_set,
    traversal,
)

ENV = (
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    "<soapenv:Body>{}</soapenv:Body></soapenv:Envelope>"
)
THIS = '<_this type="ServiceInstance">ServiceInstance</_this>'
CONTENT = f'<RetrieveServiceContent xmlns="urn:vim25">{THIS}</RetrieveServiceContent>'
LOGIN = '<Login xmlns="urn:vim25"><_this type="SessionManager">SessionManager</_this>{}</Login>'
LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">' for i in range(1, 10))
    + "]>"
    + ENV.format(CONTENT.replace(">ServiceInstance<", ">&lol9;<"))
)
XXE = '<?xml version="1.0"?><!DOCTYPE e [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>' + ENV.format(
    LOGIN.format("<userName>&xxe;</userName><password>x</password>")
)
PARAMETER_ENTITY = (
    '<?xml version="1.0"?><!DOCTYPE e [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>' + ENV.format(CONTENT)
)
EXTERNAL_DTD = '<?xml version="1.0"?><!DOCTYPE soapenv:Envelope SYSTEM "http://127.0.0.1:9/soap.dtd">' + ENV.format(
    CONTENT
)
INTERNAL_DTD = '<?xml version="1.0"?><!DOCTYPE e [<!ELEMENT e ANY>]>' + ENV.format(CONTENT)
ROOT = ("Folder", "group-d1")
DATACENTER = ("Datacenter", "datacenter-1")
DESTROY = (
    '<DestroyDatacenter_Task xmlns="urn:vim25"><_this type="Datacenter">datacenter-1</_this></DestroyDatacenter_Task>'
)

# body → (fault type, a word of its message)
CASES: dict[str, tuple[bytes, str, str]] = {
    "empty": (b"", "InvalidRequest", "no body"),
    "truncated": (ENV.format(CONTENT).encode()[:-20], "InvalidRequest", "well-formed"),
    "mismatched-tags": (b"<a><b></a></b>", "InvalidRequest", "well-formed"),
    "garbage": (b"\x00\x01\x02garbage", "InvalidRequest", "well-formed"),
    "json": (b'{"jsonrpc": "2.0", "method": "RetrieveServiceContent"}', "InvalidRequest", "well-formed"),
    "html": (b"<html><body>hello</body></html>", "InvalidRequest", "envelope"),
    "billion-laughs": (LAUGHS.encode(), "InvalidRequest", "DOCTYPE"),
    "external-entity": (XXE.encode(), "InvalidRequest", "DOCTYPE"),
    "parameter-entity": (PARAMETER_ENTITY.encode(), "InvalidRequest", "DOCTYPE"),
    "external-dtd": (EXTERNAL_DTD.encode(), "InvalidRequest", "DOCTYPE"),
    "internal-dtd": (INTERNAL_DTD.encode(), "InvalidRequest", "DOCTYPE"),
    "too-many-elements": (
        ENV.format(CONTENT.replace("</_this>", "</_this>" + "<a/>" * 30_000)).encode(),
        "InvalidRequest",
        "more than 20000 elements",
    ),
    "deep-nesting": (ENV.format("<a>" * 100_000 + "</a>" * 100_000).encode(), "InvalidRequest", "nested"),
    "soap-1.2": (
        f'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body>{CONTENT}</e:Body></e:Envelope>'.encode(),
        "InvalidRequest",
        "SOAP 1.1",
    ),
    "no-body": (b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"/>', "InvalidRequest", "Body"),
    "two-methods": (ENV.format(CONTENT + CONTENT).encode(), "InvalidRequest", "one method"),
    "wrong-namespace": (ENV.format(CONTENT.replace("urn:vim25", "urn:vim2")).encode(), "InvalidRequest", "urn:vim25"),
    "no-namespace": (ENV.format(CONTENT.replace(' xmlns="urn:vim25"', "")).encode(), "InvalidRequest", "urn:vim25"),
    "no-this": (ENV.format('<CurrentTime xmlns="urn:vim25"/>').encode(), "InvalidRequest", "_this"),
    "this-without-type": (
        ENV.format(CONTENT.replace(' type="ServiceInstance"', "")).encode(),
        "InvalidRequest",
        "type",
    ),
    "unknown-method": (
        ENV.format(DESTROY).encode(),
        "MethodFault",
        "not served",
    ),
    "unknown-moref": (
        ENV.format(CONTENT.replace(">ServiceInstance<", ">ServiceInstance-2<")).encode(),
        "ManagedObjectNotFound",
        "ServiceInstance-2",
    ),
    "not-utf8": (
        ENV.format(CONTENT).encode().replace(b"ServiceInstance<", b"Service\xff\xfeInstance<"),
        "InvalidRequest",
        "well-formed",
    ),
    "bad-declared-encoding": (
        b'<?xml version="1.0" encoding="no-such-encoding"?>' + ENV.format(CONTENT).encode(),
        "InvalidRequest",
        "well-formed",
    ),
}


@pytest.fixture()
def client(server: ServerProcess) -> Iterator[Soap]:
    yield Soap(server.base)
    assert "unexpected error in SOAP" not in server.log()


def serves(server: ServerProcess) -> None:
    (content,) = Soap(server.base).call("RetrieveServiceContent", SERVICE_INSTANCE)
    assert len(content)


def check_fault(r: requests.Response, fault_type: str, word: str) -> None:
    assert r.status_code == 500, f"{r.status_code} {r.text[:300]}"
    assert r.headers["Content-Type"].startswith("text/xml"), r.headers
    assert b"Traceback" not in r.content and b"root:" not in r.content  # no stack, no /etc/passwd
    fault = parse_fault(r.content)
    assert fault.type == fault_type, fault
    assert word.lower() in fault.message.lower(), fault.message


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_body_is_a_fault(client: Soap, server: ServerProcess, case: str) -> None:
    body, fault_type, word = CASES[case]
    check_fault(client.post(body), fault_type, word)
    serves(server)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_over_the_limit(client: Soap, server: ServerProcess, framing: str) -> None:
    """The /api body limit (1 MiB) holds for /sdk: refused from its Content-Length, or once the stream passes it."""
    body = ENV.format(CONTENT.replace("ServiceInstance<", "ServiceInstance" + " " * (2 * 1024 * 1024) + "<")).encode()
    data: Any = body if framing == "content-length" else iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
    check_fault(client.post(data), "InvalidRequest", "1048576")
    serves(server)


def test_many_selections_within_the_limit(client: Soap, server: ServerProcess) -> None:
    """A spec as large as the limits allow (20,000 elements) is answered, quickly: the traversal reads each
    reference once, however many selections name it."""
    client.login(ADMIN_USER, ADMIN_PASSWORD)
    select = [E("selectSet", E("name", text=f"s{i}"), xsi_type="SelectionSpec") for i in range(5_000)]
    named = E(
        "selectSet",
        E("name", text="s0"),
        E("type", text="Folder"),
        E("path", text="childEntity"),
        *select[:1],
        xsi_type="TraversalSpec",
    )
    spec = spec_set(prop_spec("ManagedEntity", "name"), obj_spec(("Folder", "group-d1"), named, *select))
    r = client.post(envelope("RetrieveProperties", PROPERTY_COLLECTOR, spec), headers={})
    check_fault(r, "InvalidArgument", "s1")  # s1..s4999 name no TraversalSpec
    ok = spec_set(prop_spec("ManagedEntity", "name"), obj_spec(("Folder", "group-d1"), named, *select[:1] * 5_000))
    assert len(client.retrieve(ok)) == 2  # the root folder and the datacenter
    serves(server)


@pytest.mark.parametrize(
    ("arg", "fault_type"),
    [
        (E("specSet", E("propSet", E("type", text="Folder"), E("all", text="maybe"))), "InvalidRequest"),
        (E("specSet", E("objectSet", E("obj", text="group-d1"))), "InvalidRequest"),
        (
            E(
                "specSet",
                E("objectSet", E("obj", text="group-d1", type="Folder"), E("selectSet", xsi_type="PropertySpec")),
            ),
            "InvalidArgument",
        ),
    ],
    ids=["bad-boolean", "moref-without-type", "wrong-selection-type"],
)
def test_malformed_arguments(client: Soap, server: ServerProcess, arg: Any, fault_type: str) -> None:
    client.login(ADMIN_USER, ADMIN_PASSWORD)
    check_fault(client.post(envelope("RetrieveProperties", PROPERTY_COLLECTOR, arg)), fault_type, "")
    serves(server)


def test_latin1_and_utf16_envelopes_are_read(client: Soap) -> None:
    """An envelope in another encoding that it declares is XML like any other: read, and answered."""
    login = LOGIN.format("<userName>caf\u00e9</userName><password>x</password>")
    latin1 = ('<?xml version="1.0" encoding="ISO-8859-1"?>' + ENV.format(login)).encode("latin-1")
    check_fault(client.post(latin1), "InvalidLogin", "incorrect")
    utf16 = ('<?xml version="1.0" encoding="UTF-16"?>' + ENV.format(CONTENT)).encode("utf-16")
    r = client.post(utf16)
    assert r.status_code == 200 and b"rootFolder" in r.content, r.text[:300]


def test_get_on_sdk(server: ServerProcess) -> None:
    r = requests.get(server.base + "/sdk", timeout=30)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    assert parse_fault(r.content).type == "InvalidRequest"


@pytest.mark.parametrize(
    "cookie",
    [b'vmware_soap_session="\xff\xfe"', b"vmware_soap_session=" + b"a" * 5000, b'vmware_soap_session="a b"'],
    ids=["not-utf8", "long", "space"],
)
def test_odd_session_cookie_is_not_a_session(client: Soap, server: ServerProcess, cookie: bytes) -> None:
    """A cookie no session could have (it never reaches the store) is answered as a call without a session."""
    body = envelope("CurrentTime", SERVICE_INSTANCE)
    head = f"POST /sdk HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\nConnection: close\r\n".encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(head + b"Cookie: " + cookie + b"\r\n\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    assert status == 500, data[:300]
    fault = parse_fault(data.partition(b"\r\n\r\n")[2])
    assert fault.type == "NotAuthenticated"
    serves(server)


def test_long_chain_of_named_traversals(client: Soap, server: ServerProcess) -> None:
    """Thousands of named TraversalSpecs, each selecting the next (down from the root folder to the datacenter and
    back up): within the element limit, so answered, not a RecursionError in the walk (found by test_fuzz_soap)."""
    client.login(ADMIN_USER, ADMIN_PASSWORD)
    n = 2_500
    steps = [
        traversal(
            "Folder" if i % 2 == 0 else "Datacenter",
            "childEntity" if i % 2 == 0 else "parent",
            *([selection(f"t{i + 1}")] if i + 1 < n else []),
            name=f"t{i}",
        )
        for i in range(n)
    ]
    found = client.retrieve(spec_set(prop_spec("ManagedEntity", "name"), obj_spec(ROOT, *steps, skip=True)))
    assert set(found) == {ROOT, DATACENTER}
    serves(server)


def test_an_object_skipped_one_way_is_reported_another(client: Soap) -> None:
    """An object reached by a way that skips it and by one that does not is reported: two ObjectSpecs for it, or two
    TraversalSpecs to it (with no selectSet of their own, both selections were the same empty one; found by
    test_fuzz_soap)."""
    client.login(ADMIN_USER, ADMIN_PASSWORD)
    names = prop_spec("Datacenter", "name")
    twice = spec_set(names, obj_spec(DATACENTER, skip=True), obj_spec(DATACENTER))
    assert set(client.retrieve(twice)) == {DATACENTER}
    two_ways = obj_spec(
        ROOT, traversal("Folder", "childEntity", skip=True), traversal("Folder", "childEntity"), skip=True
    )
    assert set(client.retrieve(spec_set(names, two_ways))) == {DATACENTER}


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_body_not_in_its_content_encoding(client: Soap, server: ServerProcess, encoding: str, method: str) -> None:
    """A body that is not in the Content-Encoding it declares is bad input: InvalidRequest (or, not POSTed, the 405),
    not a SystemError or a traceback in the log; the answer closes the connection (aiohttp's parser stopped inside
    the body), so the client's next request goes on a new one and is answered (found by test_fuzz_soap)."""
    body = ENV.format(CONTENT).encode()
    h = {"Content-Type": "text/xml", "Content-Encoding": encoding}
    r = client.http.request(method, server.base + "/sdk", data=body, headers=h, timeout=30)
    if method == "POST":
        check_fault(r, "InvalidRequest", f"cannot be read: Can not decode content-encoding: {encoding}")
    else:
        assert r.status_code == 405 and parse_fault(r.content).type == "InvalidRequest", r.status_code
    assert r.headers["Connection"] == "close"
    for _ in range(3):  # the same requests.Session: had the connection stayed open, these would get no answer
        r = client.post(
            gzip.compress(body) if encoding == "gzip" else zlib.compress(body), {"Content-Encoding": encoding}
        )
        assert r.status_code == 200 and b"rootFolder" in r.content, r.text[:300]
    assert "Unhandled exception" not in server.log()


def test_credentials_are_not_trimmed(client: Soap, server: ServerProcess) -> None:
    """Login takes the user name and password as they are, as /api does: a password may begin or end with a space,
    and one with spaces around it is another password (found by test_fuzz_soap: ` password ` logged in)."""
    name = f"spaced-{uuid.uuid4().hex[:8]}@vsphere.local"
    add = [sys.executable, "-m", "contentlib", "user", "add", name, *server.store_args()]
    proc = subprocess.run(add, input=" pass word \n", capture_output=True, text=True, timeout=60)  # from stdin
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert requests.post(server.base + "/api/session", auth=(name, " pass word "), timeout=30).status_code == 201
    client.login(name, " pass word ")
    assert client.session_id
    wrong = [(name, "pass word"), (f" {name}", " pass word "), (ADMIN_USER, f" {ADMIN_PASSWORD}\n")]
    wrong += [(f"{ADMIN_USER} ", ADMIN_PASSWORD)]
    for user, password in wrong:
        login = LOGIN.format(f"<userName>{user}</userName><password>{password}</password>")
        check_fault(Soap(server.base).post(ENV.format(login).encode()), "InvalidLogin", "incorrect")
    client.login(ADMIN_USER, ADMIN_PASSWORD)  # a success clears the failures the throttle counted
