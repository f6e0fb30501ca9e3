"""The vim25 SOAP API at `/sdk`: the minimum govmomi (govc, Terraform, Packer) and pyvmomi (Ansible) clients need
before they use the content library's REST API: the service content, a login, and a read-only inventory.

The codec: `POST /sdk` is a SOAP 1.1 envelope whose body holds one vim25 method element (namespace `urn:vim25`) with
its `_this` (the managed object it is called on) and arguments. It is parsed with defusedxml (no DTD, no entity, no
external reference; nesting and size bounded), dispatched to the method, and answered with `<MethodResponse>`
holding its `returnval`s, or with a SOAP fault (HTTP 500, as vCenter) whose detail is the vim25 fault:
NotAuthenticated before login, InvalidLogin, ManagedObjectNotFound, InvalidProperty, InvalidRequest for what is not
a vim25 call, and MethodFault naming the method for every method this server does not serve. Responses are built
with ElementTree, each value with the `xsi:type` its position needs (`vim_values`).

One login: `SessionManager.Login` opens an API session of `services/auth.py` (same users, throttling, idle expiry,
revocation) and sets the `vmware_soap_session` cookie to its id, as vCenter does; the same id is a
`vmware-api-session-id` on /api and /rest, and a session made there is a SOAP session with that cookie.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError, SubElement, TreeBuilder, tostring

from aiohttp import web
from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden
from defusedxml.ElementTree import DefusedXMLParser

from contentlib import errors
from contentlib.logs import OPERATION
from contentlib.protocols.host import Host
from contentlib.protocols.http import close_if_unreadable, read_body
from contentlib.protocols.vim_collector import PropertyCollector, filter_specs, retrieve_options
from contentlib.protocols.vim_inventory import (
    API_VERSION,
    PRIOR_VERSIONS,
    SERVICE_INSTANCE,
    Caller,
    ContainerView,
    Inventory,
    is_a,
    is_known,
)
from contentlib.protocols.vim_values import (
    XSI,
    AnyType,
    Array,
    Data,
    MoRef,
    Prim,
    Value,
    VimFault,
    arg_bool,
    arg_moref,
    arg_text,
    boolean,
    children,
    date_time,
    invalid_argument,
    invalid_login,
    invalid_request,
    invalid_type,
    local,
    method_not_found,
    no_permission,
    not_authenticated,
    not_found,
    not_served,
    system_error,
    xml_text,
)
from contentlib.services.auth import Principal
from contentlib.services.roles import ADMINISTRATOR, VIEW, privileges
from contentlib.transfer import run_blocking

log = logging.getLogger("contentlib.soap")

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
VIM25 = "urn:vim25"
COOKIE = "vmware_soap_session"
_MAX_DEPTH = 64  # elements nested deeper than this are refused (govc's deepest specs are a dozen levels)
_MAX_ELEMENTS = 20_000  # and documents with more elements (govc's largest requests have about sixty)
_PARSE_IN_THREAD = 64 * 1024  # bodies larger than this are parsed in a worker thread, not in the event loop
_HEADERS = {"Content-Type": "text/xml; charset=utf-8"}
_ENVELOPE = {
    "xmlns:soapenc": "http://schemas.xmlsoap.org/soap/encoding/",
    "xmlns:soapenv": SOAP_ENV,
    "xmlns:xsd": "http://www.w3.org/2001/XMLSchema",
    "xmlns:xsi": XSI,
}


# -- parsing ----------------------------------------------------------------------------------------------------------
class _TooBig(Exception):
    pass


class _BoundedBuilder(TreeBuilder):
    """The tree, refusing more than _MAX_ELEMENTS elements or nesting deeper than _MAX_DEPTH as it is parsed (the
    parser's time goes with the number of elements: a body of the allowed size could hold a quarter million)."""

    depth = 0
    count = 0

    def start(self, tag: str, attrs: dict[str, str]) -> Element:
        self.depth += 1
        self.count += 1
        if self.depth > _MAX_DEPTH:
            raise _TooBig(f"The request is nested more than {_MAX_DEPTH} elements deep.")
        if self.count > _MAX_ELEMENTS:
            raise _TooBig(f"The request has more than {_MAX_ELEMENTS} elements.")
        return super().start(tag, attrs)

    def end(self, tag: str) -> Element:
        self.depth -= 1
        return super().end(tag)


@dataclass(frozen=True)
class Call:
    method: str
    this: MoRef | None
    args: Element


def parse(body: bytes) -> Call:
    """The vim25 call in a SOAP 1.1 envelope; InvalidRequest for anything else."""
    if not body.strip():
        raise invalid_request("The request has no body: POST a SOAP 1.1 envelope with a vim25 method.")
    parser = DefusedXMLParser(target=_BoundedBuilder(), forbid_dtd=True, forbid_entities=True, forbid_external=True)
    try:
        parser.feed(body)
        root = parser.close()
    except _TooBig as e:
        raise invalid_request(str(e)) from None
    except DTDForbidden:
        raise invalid_request("The request has a document type declaration (<!DOCTYPE>), which is refused.") from None
    except EntitiesForbidden:
        raise invalid_request("The request declares an entity, which is refused.") from None
    except DefusedXmlException:
        raise invalid_request("The request refers to an external resource, which is refused.") from None
    except (ParseError, ValueError, LookupError) as e:  # LookupError: an encoding Python does not know
        raise invalid_request(f"The request is not well-formed XML: {xml_text(str(e))}.") from None
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise invalid_request(f"The request is not a SOAP 1.1 Envelope ({SOAP_ENV}): it is {xml_text(root.tag)}.")
    bodies = [c for c in root if c.tag == f"{{{SOAP_ENV}}}Body"]
    if len(bodies) != 1:
        raise invalid_request("The SOAP envelope must hold exactly one Body.")
    methods = list(bodies[0])
    if len(methods) != 1:
        raise invalid_request("The SOAP Body must hold exactly one method element.")
    method = methods[0]
    if not method.tag.startswith(f"{{{VIM25}}}"):
        raise invalid_request(f"The method element {xml_text(method.tag)} is not in the namespace {VIM25}.")
    this = children(method, "_this")
    return Call(local(method.tag), arg_moref(this[0], "_this") if this else None, method)


# -- encoding ----------------------------------------------------------------------------------------------------------
def encode(parent: Element, tag: str, value: Value, typed: bool = False) -> None:
    """`value` as element(s) `tag` of `parent`. In an anyType position (`typed`) the element says its type; an array
    there is one ArrayOfX element holding one element per item, elsewhere one `tag` element per item."""
    if isinstance(value, AnyType):
        encode(parent, tag, value.value, typed=True)
        return
    if isinstance(value, Array) and not typed:
        for item in value.items:
            encode(parent, tag, item)
        return
    e = SubElement(parent, tag)
    if isinstance(value, Array):
        e.set("xsi:type", value.type)
        for item in value.items:
            encode(e, value.item, item)
    elif isinstance(value, MoRef):
        if typed:
            e.set("xsi:type", "ManagedObjectReference")
        e.set("type", value.type)
        e.text = xml_text(value.value)
    elif isinstance(value, Data):
        e.set("xsi:type", value.type)  # always: a field may hold a subtype of its declared type
        for name, field in value.fields:
            encode(e, name, field)
    else:
        if typed:
            e.set("xsi:type", f"xsd:{value.xsd}" if isinstance(value, Prim) else value.type)
        e.text = value.text


def document(body: Element) -> bytes:
    envelope = Element("soapenv:Envelope", _ENVELOPE)
    SubElement(envelope, "soapenv:Body").append(body)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + tostring(envelope, encoding="unicode").encode()


def fault_document(fault: VimFault) -> bytes:
    e = Element("soapenv:Fault")
    SubElement(e, "faultcode").text = "ServerFaultCode"
    SubElement(e, "faultstring").text = xml_text(fault.message)
    detail = SubElement(SubElement(e, "detail"), f"{fault.type}Fault", {"xmlns": VIM25, "xsi:type": fault.type})
    for name, value in fault.fields:
        encode(detail, name, value)
    return document(e)


def service_versions() -> bytes:
    """`/sdk/vimServiceVersions.xml`: the API version and the older ones it also speaks (govmomi, pyvmomi read it)."""
    root = Element("namespaces", {"version": "1.0"})
    namespace = SubElement(root, "namespace")
    SubElement(namespace, "name").text = VIM25
    SubElement(namespace, "version").text = API_VERSION
    prior = SubElement(namespace, "priorVersions")
    for v in PRIOR_VERSIONS:
        SubElement(prior, "version").text = v
    return b'<?xml version="1.0" encoding="UTF-8" ?>\n' + tostring(root, encoding="unicode").encode() + b"\n"


# -- dispatch ----------------------------------------------------------------------------------------------------------
def _session_cookie(request: web.Request) -> str | None:
    """The session id in the vmware_soap_session cookie; a value no session could have (bytes that are not ASCII,
    controls, anything long) is no session, answered like an unknown one."""
    sid = request.cookies.get(COOKIE) or None
    if sid is None or len(sid) > 256 or not sid.isascii() or not sid.isprintable():
        return None
    return sid


@dataclass
class Request:
    """One call being answered: who calls (their session id and principal, once checked) and what to send back."""

    http: web.Request
    call: Call
    this: MoRef
    caller: Caller
    sid: str | None
    principal: Principal | None
    cookie: str | None = None  # a session id to set in the vmware_soap_session cookie


Result = Value | list[Value] | None
Handler = Callable[[Request], Awaitable[Result]]


@dataclass(frozen=True)
class Method:
    receiver: str  # the managed type `_this` must be
    handler: Handler
    anonymous: bool = False  # callable before login


class SoapApi:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.inventory = Inventory(host)
        self.collector = PropertyCollector(self.inventory)
        self._versions = service_versions()
        self.methods: dict[str, Method] = {
            "RetrieveServiceContent": Method("ServiceInstance", self._service_content, anonymous=True),
            "CurrentTime": Method("ServiceInstance", self._current_time),
            "Login": Method("SessionManager", self._login, anonymous=True),
            "Logout": Method("SessionManager", self._logout),
            "SessionIsActive": Method("SessionManager", self._session_is_active),
            # Before login the collector reads the SessionManager only, which shows no session then (govmomi checks
            # a cached session that way); it refuses anything else itself.
            "RetrieveProperties": Method("PropertyCollector", self._retrieve, anonymous=True),
            "RetrievePropertiesEx": Method("PropertyCollector", self._retrieve_ex, anonymous=True),
            "ContinueRetrievePropertiesEx": Method("PropertyCollector", self._continue),
            "CancelRetrievePropertiesEx": Method("PropertyCollector", self._cancel),
            # Not in the WSDL, but vCenter serves it and pyvmomi reads every property with it (`si.content`).
            "Fetch": Method("ManagedObject", self._fetch, anonymous=True),
            "CreateContainerView": Method("ViewManager", self._create_view),
            "DestroyView": Method("View", self._destroy_view),
            "FindByInventoryPath": Method("SearchIndex", self._find_by_path),
            "FindChild": Method("SearchIndex", self._find_child),
            # Lookups of virtual machines and hosts: there are none, so nothing is ever found.
            **{
                name: Method("SearchIndex", self._find_nothing)
                for name in ("FindByUuid", "FindByIp", "FindByDnsName", "FindByDatastorePath")
            },
            **{
                name: Method("SearchIndex", self._find_none_of_all)
                for name in ("FindAllByUuid", "FindAllByIp", "FindAllByDnsName")
            },
        }

    async def versions(self, request: web.Request) -> web.StreamResponse:
        request[OPERATION] = "soap"
        return web.Response(body=self._versions, headers=_HEADERS)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request[OPERATION] = "soap"
        status, cookie = 200, None
        try:
            if request.method != "POST":
                fault = invalid_request(f"{request.method} is not a SOAP request: POST a SOAP 1.1 envelope to /sdk.")
                with contextlib.suppress(errors.ApiError):  # read, so that a body that cannot be read closes
                    await read_body(request, self.host.max_body)  # the connection (as for a POST)
                response = web.Response(status=405, body=fault_document(fault), headers=_HEADERS | {"Allow": "POST"})
                return close_if_unreadable(request, response)
            body = await read_body(request, self.host.max_body)
            call = parse(body) if len(body) <= _PARSE_IN_THREAD else await run_blocking(parse, body)
            req = await self._request(request, call)
            result = await self.methods[call.method].handler(req)
            body, cookie = self._response(call.method, result), req.cookie
        except VimFault as f:
            status, body = 500, fault_document(f)
        except errors.ApiError as e:  # the body limit, or a service's error
            status, body = 500, fault_document(self._fault_of(e))
        except Exception:
            log.exception("unexpected error in SOAP %s %s", request.method, request.path)
            status, body = 500, fault_document(system_error("An internal error occurred; the server log has details."))
        response = web.Response(status=status, body=body, headers=_HEADERS)
        if cookie is not None:
            secure = "; Secure" if request.scheme == "https" else ""
            response.headers["Set-Cookie"] = f'{COOKIE}="{cookie}"; Path=/; HttpOnly{secure}'
        return close_if_unreadable(request, response)

    @staticmethod
    def _fault_of(e: errors.ApiError) -> VimFault:
        text = str(e)
        if e.error_type == "UNAUTHENTICATED":
            return not_authenticated(SERVICE_INSTANCE)
        if e.error_type in ("INVALID_ARGUMENT", "UNEXPECTED_INPUT"):
            return invalid_request(text)
        return system_error(text)

    async def _request(self, request: web.Request, call: Call) -> Request:
        method = self.methods.get(call.method)
        if method is None:
            raise not_served(call.method)
        if call.this is None:
            raise invalid_request(f"The method {call.method} needs _this: the managed object it is called on.")
        sid = _session_cookie(request)
        principal = None
        if sid is not None:
            try:
                principal = await self.host.auth.check(sid)
            except errors.ApiError:
                if not method.anonymous:
                    raise not_authenticated(call.this) from None
                sid = None
        elif not method.anonymous:
            raise not_authenticated(call.this)
        if principal is not None and VIEW not in privileges(principal.role):
            raise no_permission(call.this, VIEW)
        this = self.inventory.resolve(call.this)
        if this is None:
            raise not_found(call.this)
        if not is_a(this.type, method.receiver):
            raise method_not_found(call.this, call.method)
        caller = Caller(
            self.host.auth.view(sid) if sid else None,  # None: logged out by another request meanwhile
            request.remote or "",
            xml_text(request.headers.get("User-Agent", "")),
        )
        return Request(request, call, this, caller, sid, principal)

    def _response(self, method: str, result: Result) -> bytes:
        e = Element(f"{method}Response", {"xmlns": VIM25})
        for value in result if isinstance(result, list) else [] if result is None else [result]:
            encode(e, "returnval", value)
        return document(e)

    # -- ServiceInstance, SessionManager -------------------------------------------------------------------------
    async def _service_content(self, req: Request) -> Result:
        return self.inventory.service_content()

    async def _current_time(self, req: Request) -> Result:
        return date_time(time.time())

    async def _login(self, req: Request) -> Result:
        # As given, as on /api and /rest: a password may begin or end with a space, and " admin" is not "admin".
        user, password = (
            arg_text(req.call.args, "userName", strip=False),
            arg_text(req.call.args, "password", strip=False),
        )
        try:
            sid = await self.host.auth.login((user, password))
        except errors.ApiError as e:
            if e.error_type == "UNAUTHENTICATED":
                raise invalid_login() from None
            raise
        req.cookie = sid
        session = self.host.auth.view(sid)
        assert session is not None  # nobody else knows the new session's id yet
        return self.inventory.user_session(session, Caller(session, req.caller.address, req.caller.user_agent))

    async def _logout(self, req: Request) -> Result:
        assert req.sid is not None
        await self.host.auth.logout(req.sid)
        return None

    async def _session_is_active(self, req: Request) -> Result:
        """Whether a session id is an open session of the user named. Any caller may ask about their own user's
        sessions; about another user's, only an Administrator (vCenter: Sessions.ValidateSession)."""
        assert req.principal is not None
        sid, user = arg_text(req.call.args, "sessionID"), arg_text(req.call.args, "userName")
        if user.lower() != req.principal.user.lower() and req.principal.role != ADMINISTRATOR:
            raise no_permission(req.this, "Sessions.ValidateSession")
        return boolean(await self.host.auth.is_active(sid, user))

    # -- PropertyCollector -----------------------------------------------------------------------------------------
    async def _retrieve(self, req: Request) -> Result:
        objects: list[Value] = list(await self.collector.retrieve(filter_specs(req.call.args), req.caller))
        return objects

    async def _retrieve_ex(self, req: Request) -> Result:
        limit = retrieve_options(req.call.args)
        objects = await self.collector.retrieve(filter_specs(req.call.args), req.caller)
        return self.collector.page(objects, limit, req.sid or "")

    async def _fetch(self, req: Request) -> Result:
        return await self.collector.fetch(req.this, arg_text(req.call.args, "prop"), req.caller)

    async def _continue(self, req: Request) -> Result:
        return self.collector.resume(arg_text(req.call.args, "token"), req.sid or "")

    async def _cancel(self, req: Request) -> Result:
        self.collector.cancel(arg_text(req.call.args, "token"), req.sid or "")
        return None

    # -- ViewManager -----------------------------------------------------------------------------------------------
    async def _create_view(self, req: Request) -> Result:
        container = arg_moref(next(iter(children(req.call.args, "container")), None), "container")
        types = tuple(arg_text(t) for t in children(req.call.args, "type"))
        recursive = children(req.call.args, "recursive")
        if not recursive:
            raise invalid_request("CreateContainerView needs recursive (true or false).")
        if not self.inventory.exists(container):
            raise not_found(container)
        if container.type not in ("Folder", "Datacenter"):
            raise invalid_argument("container", f"{container.type} {container.value} is not a Folder or a Datacenter.")
        for t in types:
            if not is_known(t):
                raise invalid_type(t)
        return ContainerView(container, arg_bool(recursive[0]), types).ref

    async def _destroy_view(self, req: Request) -> Result:
        return None  # views are stateless: nothing to free

    # -- SearchIndex -----------------------------------------------------------------------------------------------
    async def _find_by_path(self, req: Request) -> Result:
        return self.inventory.find_path(arg_text(req.call.args, "inventoryPath"))

    async def _find_child(self, req: Request) -> Result:
        entity = arg_moref(next(iter(children(req.call.args, "entity")), None), "entity")
        if not self.inventory.exists(entity):
            raise not_found(entity)
        return self.inventory.find_child(entity, arg_text(req.call.args, "name"))

    async def _find_nothing(self, req: Request) -> Result:
        self._check_datacenter(req)
        return None

    async def _find_none_of_all(self, req: Request) -> Result:
        self._check_datacenter(req)
        return []

    def _check_datacenter(self, req: Request) -> None:
        for e in children(req.call.args, "datacenter"):
            datacenter = arg_moref(e, "datacenter")
            if not self.inventory.exists(datacenter):
                raise not_found(datacenter)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/sdk/vimServiceVersions.xml", self.versions), web.route("*", "/sdk", self.handle)]
