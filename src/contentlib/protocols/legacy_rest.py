"""The legacy REST dialect under `/rest` (vSphere 6.5-7.0): what govc, Terraform, Packer and Ansible's login speak.

A thin codec over the same operation table as /api; the rules of the dialect are written down in
`docs/rest-dialect.md`. Two path forms are served:

- the legacy form, derived from each operation's service id and name (`Route.of`):
  `/rest/com/vmware/content/library/item/id:{id}?~action=copy`, with the operation's inputs as members of one JSON
  object body (`{"create_spec": {...}, "client_token": "..."}`) on POST and PATCH, and as query parameters on GET
  and DELETE;
- the /api form under /rest (`/rest/content/library/item/{id}?action=copy`, bodies as on /api), which the vendor
  serves for the newer services (`/rest/content/library/item/{library_item}/changes` in the 8.0.2 contract) and
  which the official SDK's stock `rest` stubs speak when their URL ends in `/rest`.

Both answer in the legacy envelope (`LegacyDialect`): every success is 200 with `{"value": result}` (void: no body),
errors are `{"type": "com.vmware.vapi.std.errors.<name>", "value": {"error_type", "messages"}}` with the vAPI
runtime's statuses, and the session id travels in the `vmware-api-session-id` header or cookie. Login sets that
cookie unless the client asks for header authentication (`vmware-use-header-authn: true`).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

from contentlib import errors
from contentlib.logs import OPERATION
from contentlib.operations import Operation
from contentlib.privileges import SESSION
from contentlib.protocols.host import Host
from contentlib.protocols.http import (
    JSON_HEADERS,
    basic_credentials,
    close_if_unreadable,
    convert,
    decode,
    header,
    internal,
    json_response,
    read_body,
)
from contentlib.protocols.rest import RestApi
from contentlib.services.core import Ctx, check_text

PREFIX = "/rest"
COOKIE = "vmware-api-session-id"
# Services whose only /rest form in the contract is the /api-style path (8.0.2: `/rest/content/library/item/
# {library_item}/changes`); they get no derived legacy path.
_API_FORM_ONLY = frozenset({"com.vmware.content.library.item.changes"})


class LegacyDialect:
    """The legacy envelope, for both path forms."""

    def session_id(self, request: web.Request) -> str | None:
        cookie = request.cookies.get(COOKIE)
        return header(request, "vmware-api-session-id") or (cookie and check_text(cookie, f"The {COOKIE} cookie"))

    def result(self, request: web.Request, op: Operation, value: Any) -> web.Response:
        if op.status == 204:
            return web.Response(status=200)
        response = json_response(200, {"value": value})
        if (op.service, op.name) == (SESSION, "create") and header(request, "vmware-use-header-authn") != "true":
            response.set_cookie(
                COOKIE, value, path=PREFIX, httponly=True, samesite="Strict", secure=request.scheme == "https"
            )
        return response

    def error(self, e: errors.ApiError) -> web.Response:
        body = {"type": f"com.vmware.vapi.std.errors.{e.error_type.lower()}", "value": e.to_rest()}
        return web.Response(status=e.legacy_status, body=msgspec.json.encode(body), headers=JSON_HEADERS)


def service_path(service: str) -> str:
    """`com.vmware.content.library.item.update_session` → `/rest/com/vmware/content/library/item/update-session`."""
    return PREFIX + "/" + service.replace(".", "/").replace("_", "-")


@dataclass(frozen=True)
class Route:
    """Where an operation is in the legacy form: METHOD base[/id:{id_param}][?~action=action]."""

    method: str
    base: str
    id_param: str | None
    action: str | None

    @staticmethod
    def of(op: Operation) -> Route:
        """The vAPI REST mapping rules: create → POST, list → GET, get → GET /id:{id}, update → PATCH /id:{id},
        delete → DELETE /id:{id}; an operation with inputs beyond its id, and every other operation, is a POST
        `?~action=` (with hyphens) whose inputs are the body's members. The id is the /api path's first variable."""
        id_param = next((p.name for p in op.params if p.kind == "path"), None)
        others = [p for p in op.params if p.name != id_param and p.kind != "header"]
        base = service_path(op.service)
        name = op.name
        if name == "create":
            return Route("POST", base, id_param, None)
        if name == "list":
            return Route("GET", base, None, None)  # every input, the /api path's id too, is a query parameter
        if name == "update":
            return Route("PATCH", base, id_param, None)
        if name in ("get", "delete") and id_param is not None and not others:
            return Route("GET" if name == "get" else "DELETE", base, id_param, None)
        if name == "delete" and id_param is None:
            return Route("DELETE", base, None, None)
        return Route("POST", base, id_param, name.replace("_", "-"))

    @property
    def form(self) -> str:
        """As the swagger file writes it (`POST /rest/.../item/id:{library_item_id}?~action=copy`)."""
        path = self.base + (f"/id:{{{self.id_param}}}" if self.id_param else "")
        return f"{self.method} {path}" + (f"?~action={self.action}" if self.action else "")


def _body_type(op: Operation, route: Route) -> type[msgspec.Struct] | None:
    """The JSON object a POST or PATCH carries: one member per input but the path's id."""
    members = [p for p in op.params if p.name != route.id_param]
    if not members:
        return None
    return msgspec.defstruct(
        f"rest.{op.service}.{op.name}",
        [(p.name, p.type) if p.required and p.kind != "header" else (p.name, p.type | None, None) for p in members],
        kw_only=True,
    )


@dataclass(frozen=True)
class _Bound:
    op: Operation
    route: Route
    body_type: type[msgspec.Struct] | None


def routes_of(operations: list[Operation]) -> dict[tuple[str, str, bool, str | None], _Bound]:
    table: dict[tuple[str, str, bool, str | None], _Bound] = {}
    for op in operations:
        if op.service in _API_FORM_ONLY:
            continue
        route = Route.of(op)
        table[(route.method, route.base, route.id_param is not None, route.action)] = _Bound(
            op, route, _body_type(op, route)
        )
    # The session's get is also served as a plain GET (vcsim and older clients use it).
    session_get = table[("POST", service_path(SESSION), False, "get")]
    table[("GET", service_path(SESSION), False, None)] = session_get
    return table


class LegacyRestApi:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.dialect = LegacyDialect()
        self.routes = routes_of(list(host.operations))
        self.bases = {key[1] for key in self.routes}
        self.api_form = RestApi(host, self.dialect)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if not path.startswith(PREFIX + "/com/vmware/"):  # the /api form under /rest
            return await self.api_form.serve(request, "/api" + path[len(PREFIX) :])
        return close_if_unreadable(request, await self._serve(request))

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        try:
            bound, id_value = self._match(request)
            request[OPERATION] = bound.op.id
            ctx = await self._authenticate(request, bound.op)
            kwargs = await self._inputs(request, bound, id_value)
            result = await bound.op.call(ctx, **kwargs)
        except errors.ApiError as e:
            return self.dialect.error(e)
        except Exception:
            return self.dialect.error(internal(request))
        return self.dialect.result(request, bound.op, result)

    def _match(self, request: web.Request) -> tuple[_Bound, str | None]:
        # The raw path: an id may hold an encoded `/` (it then names nothing, rather than another route).
        path, method = request.rel_url.raw_path, request.method
        base, _, last = path.rpartition("/")
        id_value: str | None = None
        if last.startswith("id:") and base in self.bases:
            id_value = urllib.parse.unquote(last[3:])
        else:
            base = request.path
        action = request.query.get("~action")
        bound = self.routes.get((method, base, id_value is not None, action))
        if bound is not None:
            return bound, id_value
        if base not in self.bases:
            raise errors.operation_not_found(f"No operation is served at {method} {path}.", path)
        if action is not None:
            raise errors.operation_not_found(f"The action '{action}' is not supported on {method} {path}.", action)
        raise errors.operation_not_found(f"The method {method} is not supported on {path}.", method)

    async def _authenticate(self, request: web.Request, op: Operation) -> Ctx:
        base_url = self.host.base_url(request)
        if not op.auth:
            return Ctx("", base_url, credentials=basic_credentials(header(request, "Authorization")))
        return await self.host.auth.session_context(op, self.dialect.session_id(request), base_url)

    async def _inputs(self, request: web.Request, bound: _Bound, id_value: str | None) -> dict[str, Any]:
        body = await read_body(request, self.host.max_body)
        given: dict[str, Any] = {}
        if request.method in ("POST", "PATCH"):
            if bound.body_type is not None and body.strip():
                given = msgspec.structs.asdict(decode(body, bound.body_type))
        else:
            given = {p.name: request.query[p.name] for p in bound.op.params if p.name in request.query}
        kwargs: dict[str, Any] = {}
        for p in bound.op.params:
            if p.name == bound.route.id_param:
                kwargs[p.name] = id_value or ""
                continue
            value = given.get(p.name)
            if value is None:
                if p.required and p.kind != "header":
                    raise errors.invalid_argument(f"The parameter {p.name} is required.", p.name)
                continue
            kwargs[p.name] = convert(value, p.type, p.name)
        return kwargs
