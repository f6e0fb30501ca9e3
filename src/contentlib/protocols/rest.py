"""The /api REST codec over the operation table, and the data-plane endpoints (/cls/data, /cls/download).

This module only moves values between HTTP and the operations: it finds the operation for a request, decodes its
inputs (reporting bad input as INVALID_ARGUMENT naming the field), calls the handler, and encodes the result or
the error with the status the vendor's spec gives. It decides nothing about the API itself.
"""

from __future__ import annotations

import base64
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from contentlib import errors
from contentlib.operations import Operation
from contentlib.services.core import Ctx, check_text

if TYPE_CHECKING:
    from contentlib.app import App
    from contentlib.protocols.jsonrpc import JsonRpcApi

log = logging.getLogger("contentlib.rest")

JSON = "application/json"
_JSON_HEADERS = {"Content-Type": JSON}
_encode = msgspec.json.encode


def error_response(e: errors.ApiError) -> web.Response:
    return web.Response(status=e.status, body=_encode(e.to_rest()), headers=_JSON_HEADERS)


@dataclass
class _Route:
    method: str
    path: str
    pattern: re.Pattern[str]
    by_action: dict[str, Operation] = field(default_factory=dict)
    dispatch: Operation | None = None  # the operation selected by a `?name`-style dispatch parameter
    plain: Operation | None = None

    @property
    def params(self) -> int:
        return self.pattern.pattern.count("(?P<")

    @property
    def segments(self) -> int:
        return self.path.count("/")

    @property
    def variable(self) -> bool:
        return "{file_name}" in self.path


def _compile(path: str) -> re.Pattern[str]:
    regex = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m[1]}>{'.+' if m[1] == 'file_name' else '[^/]+'})", path)
    return re.compile(regex, re.DOTALL)  # fullmatch: a name or id may hold any character, a newline too


class Router:
    def __init__(self, operations: list[Operation]) -> None:
        routes: dict[tuple[str, str], _Route] = {}
        plain: dict[tuple[str, str], list[Operation]] = {}
        for op in operations:
            route = routes.setdefault((op.method, op.path), _Route(op.method, op.path, _compile(op.path)))
            if op.action is not None:
                route.by_action[op.action] = op
            else:
                plain.setdefault((op.method, op.path), []).append(op)
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

    def match(self, method: str, path: str, query: Any) -> tuple[Operation, dict[str, str]]:
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
                        f"The action '{action}' is not supported on {method} {path}.", action
                    )
                return op, m.groupdict()
            if route.dispatch is not None:
                key = next(p.wire or p.name for p in route.dispatch.params if p.kind == "dispatch")
                if key in query or route.plain is None:
                    return route.dispatch, m.groupdict()
            if route.plain is not None:
                return route.plain, m.groupdict()
            raise errors.operation_not_found(f"{method} {path} needs an action (?action=...).")
        if matched is not None:
            raise errors.operation_not_found(f"The method {method} is not supported on {path}.", method)
        raise errors.operation_not_found(f"No operation is served at {method} {path}.", path)


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """User name and password of an `Authorization: Basic` header (None without one)."""
    if not authorization:
        return None
    if not authorization.lower().startswith("basic "):
        raise errors.unauthenticated("Authentication required: send user name and password with HTTP Basic.")
    try:
        user, sep, password = base64.b64decode(authorization[6:].strip(), validate=True).decode().partition(":")
    except ValueError:  # not base64 (binascii.Error), not ASCII, or not UTF-8 once decoded
        raise errors.unauthenticated("The Authorization header is not valid HTTP Basic.") from None
    if not sep or not user:
        raise errors.unauthenticated("The Authorization header is not valid HTTP Basic.")
    return user, password


def _header(request: web.Request, name: str) -> str | None:
    """A request header's value; bytes that are not UTF-8 (aiohttp keeps them as surrogates) are a bad request."""
    value = request.headers.get(name)
    return None if value is None else check_text(value, f"The {name} header")


def _dispatch_query(request: web.Request, key: str) -> str | None:
    """A dispatch parameter's value in the query: `?name=v` (the 9.1 spec), also after the bare marker that the
    8.0.2 Swagger keeps in its paths, as clients generated from it send it (`?name&name=v`); None when there is
    only the bare marker (`?name`: the SDK sends the value in the body, REFERENCE.md §1 item 3)."""
    values = request.query.getall(key, [])
    markers = sum(1 for part in request.query_string.split("&") if part == key)
    if len(values) <= markers:
        return None
    return next((v for v in values if v), "")


def _invalid(e: Exception) -> errors.ApiError:
    if isinstance(e, msgspec.ValidationError):
        return errors.invalid_argument(f"The request is not valid: {e}.", str(e))
    return errors.invalid_argument(f"The request body is not valid JSON: {e}.", str(e))


def _decode(body: bytes, type_: Any) -> Any:
    try:
        return msgspec.json.decode(body or b"{}", type=type_)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise _invalid(e) from None
    except UnicodeDecodeError:  # msgspec raises it for bytes that are not UTF-8
        raise errors.invalid_argument("The request body is not valid JSON: it is not UTF-8.") from None
    except RecursionError:
        raise errors.invalid_argument("The request body is nested too deeply.") from None


def _convert(value: Any, type_: Any, name: str) -> Any:
    if type_ is str and isinstance(value, str):
        return value
    try:
        return msgspec.convert(value, type_, strict=False)
    except msgspec.ValidationError as e:
        raise errors.invalid_argument(f"The parameter {name} is not valid: {e}.", name) from None


class RestApi:
    def __init__(self, app: App) -> None:
        self.app = app
        self.router = Router(app.operations)
        self.max_body = app.settings.max_api_body

    async def _read_body(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > self.max_body:
            raise errors.invalid_argument(
                f"The request body has {request.content_length} bytes; at most {self.max_body} are accepted."
            )
        if not request.body_exists:
            return b""
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > self.max_body:
                raise errors.invalid_argument(f"The request body exceeds {self.max_body} bytes.")
            chunks.append(chunk)
        return b"".join(chunks)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            op, path_args = self.router.match(request.method, request.path, request.query)
            ctx = await self._authenticate(request, op)
            kwargs = await self._inputs(request, op, path_args)
            result = await op.call(ctx, **kwargs)
        except errors.ApiError as e:
            return error_response(e)
        except Exception:
            return internal_error(request)
        if op.status == 204:
            return web.Response(status=204)
        return web.Response(status=op.status, body=_encode(result), headers=_JSON_HEADERS)

    async def _authenticate(self, request: web.Request, op: Operation) -> Ctx:
        base_url = self.app.base_url(request)
        if not op.auth:
            return Ctx("", base_url, credentials=_basic_credentials(_header(request, "Authorization")))
        return await self.app.auth.session_context(op, _header(request, "vmware-api-session-id"), base_url)

    async def _inputs(self, request: web.Request, op: Operation, path_args: dict[str, str]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        body = await self._read_body(request)
        fields: dict[str, Any] = {}
        fields_type = op.fields_type
        if fields_type is not None:
            fields = msgspec.structs.asdict(_decode(body, fields_type)) if body.strip() else {}
        for p in op.params:
            if p.kind == "path":
                kwargs[p.name] = path_args[p.name]
            elif p.kind == "body":
                kwargs[p.name] = _decode(body, p.type)
            elif p.kind == "header":
                value = _header(request, p.wire or p.name)
                if value is None and p.name == "client_token":
                    value = request.query.get("client_token")  # the 8.0.2 spec's form
                kwargs[p.name] = value
            elif p.kind == "query":
                value = request.query.get(p.wire or p.name)
                kwargs[p.name] = None if value is None else _convert(value, p.type, p.name)
            else:  # field, dispatch
                value = _dispatch_query(request, p.wire or p.name) if p.kind == "dispatch" else None
                if value is None:  # a bare dispatch marker: the value is in the body (the SDK's form)
                    value = fields.get(p.name)
                if value is None and p.required:
                    raise errors.invalid_argument(f"The parameter {p.name} is required.", p.name)
                if value is not None:
                    kwargs[p.name] = _convert(value, p.type, p.name)
        return kwargs

    # -- data plane --------------------------------------------------------------------------------------------
    async def upload(self, request: web.Request) -> web.StreamResponse:
        try:
            await self.app.update_sessions.receive_upload(
                request.match_info["token"],
                request.match_info["name"],
                request.content.iter_any(),
                request.content_length,
            )
        except errors.ApiError as e:
            return error_response(e)
        except Exception:
            return internal_error(request)
        return web.Response(status=200)

    async def download(self, request: web.Request) -> web.StreamResponse:
        try:
            blob_id = await self.app.download_sessions.open_download(
                request.match_info["token"], request.match_info["name"]
            )
            blobs = self.app.core.blobs
            size = await blobs.size(blob_id)
        except errors.ApiError as e:
            return error_response(e)
        except Exception:
            return internal_error(request)
        span = _span(request, size)
        if span is None:
            # aiohttp would answer this one chunked; clients expect a plain, sized 416.
            return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
        path = blobs.local_path(blob_id)
        if path is not None:  # sendfile, ranges and HEAD by aiohttp
            return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})
        start, end = span
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        if "Range" in request.headers and _parsed_range(request) is not None:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        response = web.StreamResponse(status=206 if "Content-Range" in headers else 200, headers=headers)
        response.content_length = end - start
        await response.prepare(request)
        if request.method != "HEAD":
            async for chunk in blobs.read(blob_id, start, end):
                await response.write(chunk)
        await response.write_eof()
        return response

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        return error_response(
            errors.operation_not_found(f"No operation is served at {request.method} {request.path}.", request.path)
        )


def _parsed_range(request: web.Request) -> slice | None:
    """The request's Range as a slice, or None without one (a malformed one is ignored)."""
    if "Range" not in request.headers:
        return None
    try:
        rng: slice = request.http_range
    except ValueError:
        return None
    return None if rng.start is None else rng


def _span(request: web.Request, size: int) -> tuple[int, int] | None:
    """The byte range [start, end) a request asks for (the whole blob without a Range header, or with a malformed
    one, which is ignored); None when it cannot be satisfied (416)."""
    rng = _parsed_range(request)
    if rng is None:
        return 0, size
    start: int | None = rng.start
    stop: int | None = rng.stop
    if start is None:
        return 0, size
    if start < 0:  # suffix range: the last -start bytes
        return (max(0, size + start), size) if size > 0 else None
    if start >= size:
        return None
    return start, size if stop is None else min(stop, size)


def internal_error(request: web.Request) -> web.Response:
    """A bug: log it with its stack; the client gets a vendor error without one."""
    log.exception("unexpected error in %s %s", request.method, request.path)
    return error_response(errors.internal("An internal error occurred; the server log has the details."))


def routes(api: RestApi, jsonrpc: JsonRpcApi) -> list[web.RouteDef]:
    # `[\s\S]`, not `.`: a path may hold a (percent-encoded) newline, and must still reach a handler that answers
    # with a vendor error rather than aiohttp's plain-text 404.
    return [
        web.post("/api", jsonrpc.handle),
        web.route("PUT", r"/cls/data/{token}/{name:[\s\S]+}", api.upload),
        web.route("POST", r"/cls/data/{token}/{name:[\s\S]+}", api.upload),
        web.get(r"/cls/download/{token}/{name:[\s\S]+}", api.download),
        web.route("*", r"/api/{tail:[\s\S]*}", api.handle),
        web.route("*", "/api", api.handle),
        web.route("*", r"/{tail:[\s\S]*}", api.not_found),
    ]
