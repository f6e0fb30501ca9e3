"""The /api REST codec over the operation table.

This module only moves values between HTTP and the operations: it finds the operation for a request, decodes its
inputs (reporting bad input as INVALID_ARGUMENT naming the field), calls the handler, and encodes the result or
the error. It decides nothing about the API itself. How results, errors and the session id travel is the
`Dialect`'s: /api's own here; the legacy /rest envelope (`legacy_rest.py`) reuses this codec for the /api-style
paths it also serves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from aiohttp import web

from contentlib import errors
from contentlib.logs import OPERATION
from contentlib.operations import Operation
from contentlib.protocols.host import Host
from contentlib.protocols.http import (
    basic_credentials,
    close_if_unreadable,
    convert,
    decode,
    header,
    internal,
    json_response,
    read_body,
)
from contentlib.services.core import Ctx


class Dialect(Protocol):
    """Where a REST dialect puts what the operation table does not decide."""

    def session_id(self, request: web.Request) -> str | None:
        """The API session id the request carries."""
        ...

    def result(self, request: web.Request, op: Operation, value: Any) -> web.Response:
        """A successful call's response."""
        ...

    def error(self, e: errors.ApiError) -> web.Response:
        """A failed call's response."""
        ...


class ApiDialect:
    """/api: bare JSON results with the contract's success status (204 without a body for void operations),
    `{"error_type", "messages"}` errors with the /api statuses, the session id in `vmware-api-session-id`."""

    def session_id(self, request: web.Request) -> str | None:
        return header(request, "vmware-api-session-id")

    def result(self, request: web.Request, op: Operation, value: Any) -> web.Response:
        if op.status == 204:
            return web.Response(status=204)
        return json_response(op.status, value)

    def error(self, e: errors.ApiError) -> web.Response:
        return json_response(e.status, e.to_rest())


@dataclass
class _Route:
    method: str
    path: str
    pattern: re.Pattern[str]
    by_action: dict[str, Operation] = field(default_factory=dict)
    dispatch: Operation | None = None  # the operation selected by a `?name`-style dispatch parameter
    plain: Operation | None = None
    params: int = field(init=False)  # how many variables the path has
    segments: int = field(init=False)
    variable: bool = field(init=False)  # a `{file_name}` may span several segments

    def __post_init__(self) -> None:
        self.params = self.pattern.pattern.count("(?P<")
        self.segments = self.path.count("/")
        self.variable = "{file_name}" in self.path


_VARIABLE = re.compile(r"\{(\w+)\}")


def _compile(path: str) -> re.Pattern[str]:
    regex = _VARIABLE.sub(lambda m: f"(?P<{m[1]}>{'.+' if m[1] == 'file_name' else '[^/]+'})", path)
    return re.compile(regex, re.DOTALL)  # fullmatch: a name or id may hold any character, a newline too


def _shape(path: str) -> str:
    """A path with its variables unnamed: `/item/{source_library_item_id}` (copy) and `/item/{library_item_id}`
    (publish) are one route, told apart by the action, each operation keeping its parameter's name."""
    return _VARIABLE.sub("{}", path)


_names: dict[str, tuple[str, ...]] = {}


def _arguments(op: Operation, m: re.Match[str]) -> dict[str, str]:
    """The path's variables by the names the operation gives them (routes of one shape match alike)."""
    names = _names.get(op.path)
    if names is None:
        names = _names[op.path] = tuple(_VARIABLE.findall(op.path))
    return dict(zip(names, m.groups(), strict=True))


class Router:
    def __init__(self, operations: list[Operation]) -> None:
        routes: dict[tuple[str, str], _Route] = {}
        plain: dict[tuple[str, str], list[Operation]] = {}
        for op in operations:
            key = (op.method, _shape(op.path))
            route = routes.setdefault(key, _Route(op.method, op.path, _compile(op.path)))
            if op.action is not None:
                route.by_action[op.action] = op
            else:
                plain.setdefault(key, []).append(op)
        for key, ops in plain.items():
            # Two operations on one method+path are told apart by a dispatch parameter (`?name`).
            for op in ops:
                if len(ops) > 1 and any(p.kind == "dispatch" for p in op.params):
                    routes[key].dispatch = op
                else:
                    routes[key].plain = op
        # Literal paths first, so `/item/update-session` never matches `/item/{library_item_id}`; and only the
        # routes with as many segments as the request's path are tried (a `{file_name}` may hold more).
        ordered = sorted(routes.values(), key=lambda r: r.params)
        longest = max(r.segments for r in ordered)
        self.by_segments = {
            n: [r for r in ordered if r.segments == n or (r.variable and r.segments <= n)] for n in range(longest + 1)
        }
        self.variable = [r for r in ordered if r.variable]

    def match(self, method: str, path: str, query: Any, shown: str | None = None) -> tuple[Operation, dict[str, str]]:
        """The operation at `path` and its path arguments; errors name the path as the client sent it (`shown`)."""
        matched: int | None = None  # how many parameters the first route matching the path has
        for route in self.by_segments.get(path.count("/"), self.variable):
            if matched is not None and route.params > matched:
                break  # a literal segment matched: `/item/update-session` is never an item id
            m = route.pattern.fullmatch(path)
            if m is None:
                continue
            matched = route.params
            if route.method != method:
                continue
            action = query.get("action")
            if action is not None:
                op = route.by_action.get(action)
                if op is None:
                    raise errors.operation_not_found(
                        f"The action '{action}' is not supported on {method} {shown or path}.", action
                    )
                return op, _arguments(op, m)
            if route.dispatch is not None:
                key = next(p.wire or p.name for p in route.dispatch.params if p.kind == "dispatch")
                if key in query or route.plain is None:
                    return route.dispatch, _arguments(route.dispatch, m)
            if route.plain is not None:
                return route.plain, _arguments(route.plain, m)
            raise errors.operation_not_found(f"{method} {shown or path} needs an action (?action=...).")
        if matched is not None:
            raise errors.operation_not_found(f"The method {method} is not supported on {shown or path}.", method)
        raise errors.operation_not_found(f"No operation is served at {method} {shown or path}.", shown or path)


def _dispatch_query(request: web.Request, key: str) -> str | None:
    """A dispatch parameter's value in the query: `?name=v` (the 9.1 spec), also after the bare marker that the
    8.0.2 Swagger keeps in its paths, as clients generated from it send it (`?name&name=v`); None when there is
    only the bare marker (`?name`: the SDK sends the value in the body, REFERENCE.md §1 item 3)."""
    values = request.query.getall(key, [])
    markers = sum(1 for part in request.query_string.split("&") if part == key)
    if len(values) <= markers:
        return None
    return next((v for v in values if v), "")


class RestApi:
    """The /api codec; with another `Dialect`, the same paths under another prefix (legacy_rest.py)."""

    def __init__(self, host: Host, dialect: Dialect | None = None) -> None:
        self.host = host
        self.dialect: Dialect = dialect or ApiDialect()
        self.router = Router(list(host.operations))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, request.path)

    async def serve(self, request: web.Request, path: str) -> web.StreamResponse:
        """Answer `request` as the operation at `path` (an /api path)."""
        return close_if_unreadable(request, await self._serve(request, path))

    async def _serve(self, request: web.Request, path: str) -> web.StreamResponse:
        try:
            op, path_args = self.router.match(request.method, path, request.query, request.path)
            request[OPERATION] = op.id
            ctx = await self._authenticate(request, op)
            kwargs = await self._inputs(request, op, path_args)
            result = await op.call(ctx, **kwargs)
        except errors.ApiError as e:
            return self.dialect.error(e)
        except Exception:
            return self.dialect.error(internal(request))
        return self.dialect.result(request, op, result)

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        return self.dialect.error(
            errors.operation_not_found(f"No operation is served at {request.method} {request.path}.", request.path)
        )

    async def _authenticate(self, request: web.Request, op: Operation) -> Ctx:
        base_url = self.host.base_url(request)
        if not op.auth:
            return Ctx("", base_url, credentials=basic_credentials(header(request, "Authorization")))
        return await self.host.auth.session_context(op, self.dialect.session_id(request), base_url)

    async def _inputs(self, request: web.Request, op: Operation, path_args: dict[str, str]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        body = await read_body(request, self.host.max_body)
        fields: dict[str, Any] = {}
        fields_type = op.fields_type
        if fields_type is not None:
            fields = msgspec.structs.asdict(decode(body, fields_type)) if body.strip() else {}
        for p in op.params:
            if p.kind == "path":
                kwargs[p.name] = path_args[p.name]
            elif p.kind == "body":
                kwargs[p.name] = decode(body, p.type)
            elif p.kind == "header":
                value = header(request, p.wire or p.name)
                if value is None and p.name == "client_token":
                    value = request.query.get("client_token")  # the 8.0.2 spec's form
                kwargs[p.name] = value
            elif p.kind == "query":
                value = request.query.get(p.wire or p.name)
                kwargs[p.name] = None if value is None else convert(value, p.type, p.name)
            else:  # field, dispatch
                value = _dispatch_query(request, p.wire or p.name) if p.kind == "dispatch" else None
                if value is None:  # a bare dispatch marker: the value is in the body (the SDK's form)
                    value = fields.get(p.name)
                if value is None and p.required:
                    raise errors.invalid_argument(f"The parameter {p.name} is required.", p.name)
                if value is not None:
                    kwargs[p.name] = convert(value, p.type, p.name)
        return kwargs
