"""The SOAP fuzzer's oracles: what the model says a call must get (soapfuzz.py says how they run).

`expect_call` applies the dispatch rules (soap.py: the document, the method, `_this`, the login, the object and its
type), then the method's oracle in `ORACLES` (one for every dispatched method) predicts its fault or checks its
result; `judge` holds an answer to a prediction, `run_call` sends a call and does both.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from conftest import ADMIN_PASSWORD, ADMIN_USER
from soapfuzz import LOGGED_IN, Answer, Fuzzer, auth_headers, cookie, render, show
from soapfuzz_collector import check_contents, check_value, o_retrieve
from soapfuzz_model import (
    PC,
    ROOT,
    SERVED,
    SI,
    SM,
    Faults,
    MoRef,
    always_set,
    exists,
    find_child,
    find_path,
    kid,
    kids,
    local,
    o_bool,
    o_moref,
    o_text,
    path_kind,
    read_ref,
    refused_document,
    resolve,
    text_of,
    valid_path,
    xsi_of,
)
from soapkit import E, V, moref, ref

from contentlib.protocols.vim_inventory import is_a, is_known


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
    this = resolve(read_ref(thises[0]))
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
        got = [moref(v) for v in a.returnvals]
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
    options = kid(c.method, "options")
    given = kid(options, "maxObjects") if ex and options is not None else None
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
        page, token = one_page(a, limit)
        objects += page
        if token is None:
            return objects
        call = E("ContinueRetrievePropertiesEx", ref("_this", PC), E("token", text=token))
        a = c.fuzz.send(render(call), c.cookie, c.headers, answer="ContinueRetrievePropertiesEx")
        assert a.fault is None, f"{a.fault}: {a.message}"


def one_page(a: Answer, limit: int | None) -> tuple[list[ET.Element], str | None]:
    """The objects of one RetrievePropertiesEx page and its token: one object at least, maxObjects at most, and a
    token only after a full page."""
    (result,) = a.returnvals
    page = result.findall(f"{V}objects")
    token = result.findtext(f"{V}token")
    assert page, "an empty page"
    assert limit is None or len(page) <= limit, f"{len(page)} objects in a page of {limit}"
    assert token is None or len(page) == limit, f"a token after a short page of {len(page)}"
    return page, token


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
    container = o_moref(kid(c.method, "container"), f)
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
    entity = o_moref(kid(c.method, "entity"), f)
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


def expect_outcome(c: Ctx, outcome: str) -> Expect:
    """What a call sent in a mutated envelope or HTTP request must get: `same`, the answer to the call as it is;
    `refused`, InvalidRequest; `unknown`, the checks every answer must pass."""
    return {"same": expect_call(c, 0), "refused": fault("InvalidRequest"), "unknown": UNKNOWN}[outcome]


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
