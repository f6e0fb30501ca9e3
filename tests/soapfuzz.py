"""Fuzzing the vim25 SOAP endpoint /sdk with hypothesis (beside tests/test_fuzz.py, which fuzzes /api and /rest): the
harness the tests/test_fuzz_soap_*.py modules share.

What runs: SOAP requests generated from a model of what /sdk serves, against a private `contentlib serve` process
over plain HTTP (one per test module and xdist worker: the `fuzz_server` fixture here, which a test module imports
with `fuzz`). The model is written here too: soapfuzz_model.py has the fixed inventory (the root folder, the
datacenter, its four folders, the one datastore, the singletons, container views by their ids), the references
between its objects, which properties each object always has set and their values, how SearchIndex finds entities;
soapfuzz_collector.py the PropertyCollector's traversal rules (soap.py's and vim_collector.py's docstrings);
soapfuzz_oracles.py what every method must answer; soapfuzz_strategies.py the requests drawn. Only the vim25 type
schema is the server's own (`vim_inventory.properties`, `DATA_FIELDS`, `is_known`, `is_a`: which properties and
fields a type has), as test_fuzz.py takes its operations from the server's table; every method of the server's
dispatch table (`SoapApi.methods`) has an argument model and an oracle (`test_every_dispatched_method_is_modeled` in
test_fuzz_soap_methods.py says when one is added).

Strategies, CONTENTLIB_FUZZ_EXAMPLES examples each (default 50; the soak run `bench/soak.py` runs 2000), one module a
concern, each module's docstring saying what its strategies send:
- test_fuzz_soap_methods.py: `test_fuzz_calls`, every dispatched method and unknown ones with valid and mutated
  arguments, logged in or not;
- test_fuzz_soap_sessions.py: `test_fuzz_sessions`, logins with every kind of credentials and what each session can
  do before and after its Logout;
- test_fuzz_soap_collector.py: `test_fuzz_retrieve`, `test_fuzz_large_specs`, `test_fuzz_paging`, the
  PropertyCollector: random PropertyFilterSpecs, the same at the limits, RetrievePropertiesEx pages;
- test_fuzz_soap_envelopes.py: `test_fuzz_envelope`, valid calls with the envelope mutated;
- test_fuzz_soap_http.py: `test_fuzz_http`, the HTTP around it.

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
database, no deadline; the number of cases run is printed in the terminal summary (conftest), per module. At the
default the modules take about 12 s together on two cores with `-n 2` (`pytest tests/test_fuzz_soap_*.py -n 2`). A
failure's message holds the request and the answer (schemathesis's pytest plugin blanks the values in hypothesis's
"Failing test case" line).
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree as ET

import defusedxml.ElementTree as DET
import hypothesis
import pytest
import requests
from conftest import ADMIN_PASSWORD, ADMIN_USER, ServerProcess
from hypothesis import strategies as st
from soapfuzz_model import DATASTORE_NAME, ROOT, SI, SM, kids, local, xsi_of
from soapkit import COOKIE, SOAP_ENV, XSI, E, V, ref

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
XSD = "http://www.w3.org/2001/XMLSchema"
TIMEOUT = 30  # seconds: no request may take longer (a hang is a finding)
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
_LEAKS = (b"Traceback", b"Internal Server Error", b'File "/')
_LOG_LEAKS = ("Traceback", "unexpected error", "Unhandled exception", "Error handling request")


@dataclass
class Answer:
    status: int
    fault: str | None
    message: str
    detail: ET.Element | None
    returnvals: list[ET.Element]
    session: str | None  # the session id a Set-Cookie gave
    body: bytes


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


@pytest.fixture(scope="module", name="fuzz_server")
def fuzz_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzer]:
    srv = ServerProcess(tmp_path_factory.mktemp("soapfuzz") / "data")
    srv.start()
    DATASTORE_NAME[0] = "contentlib-s3" if srv.s3_prefix else "contentlib-disk"
    yield Fuzzer(srv)
    srv.destroy()


@pytest.fixture(name="fuzz")
def fuzz_fixture(fuzz_server: Fuzzer, request: pytest.FixtureRequest) -> Iterator[Fuzzer]:
    """The module's fuzzer for one strategy: its cases are counted (conftest prints the total), and after them the
    server must still serve a fresh login."""
    fuzz_server.cases = 0
    yield fuzz_server
    request.node.user_properties.append(("fuzz_cases", fuzz_server.cases))
    fuzz_server.alive()


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
