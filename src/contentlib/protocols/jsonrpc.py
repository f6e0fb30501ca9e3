"""vAPI JSON-RPC 2.0 on `POST /api`: what the official SDKs (`create_vsphere_client`) speak by default.

A thin codec over the same operation table as the REST front-end. Inputs arrive in the typed vAPI encoding
(structures as `{"STRUCTURE": {"<canonical name>": {...}}}`, optionals as `{"OPTIONAL": value-or-null}`,
secrets as `{"SECRET": ...}`); they are untagged into plain values and decoded into the same structures the REST
codec uses. Results are tagged again from the types of the contract (`vapi_meta.json`, generated from
operations.json and types.json by tools/gen_vapi_meta.py), and errors become the typed standard error structures,
so the SDK raises `NotFound`, `ResourceBusy`, ... exactly. Everything goes back with HTTP 200: the runtime reads
`result.output` or `result.error`, and only a request that is not JSON-RPC at all gets a JSON-RPC `error`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from functools import cache
from importlib import resources
from typing import Any

import msgspec
from aiohttp import web

from contentlib import errors
from contentlib.logs import OPERATION
from contentlib.operations import Operation
from contentlib.protocols.host import Host
from contentlib.protocols.http import close_if_unreadable, unreadable
from contentlib.services.core import Ctx

log = logging.getLogger("contentlib.jsonrpc")

USER_PASS = "com.vmware.vapi.std.security.user_pass"
SESSION_ID = "com.vmware.vapi.std.security.session_id"
_HEADERS = {"Content-Type": "application/json"}
_GENERIC = re.compile(r"^(optional|list|set)<(.*)>$")
_MAP = re.compile(r"^map<([^,<>]+),(.*)>$")
_PLAIN = {"string", "id", "uri", "long", "double", "boolean", "datetime"}


class JsonRpcError(Exception):
    """The request is not a JSON-RPC call we can read: answered with a JSON-RPC error object, not a vAPI error."""

    def __init__(self, code: int, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id


@cache
def meta() -> dict[str, Any]:
    return dict(json.loads(resources.files("contentlib.protocols").joinpath("vapi_meta.json").read_text()))


def untag(value: Any) -> Any:
    """Typed vAPI JSON → plain values: structures become dicts, optionals their value or None."""
    if isinstance(value, dict):
        if len(value) != 1:
            raise ValueError(f"a typed value has {len(value)} tags: {sorted(value)[:4]}")
        ((tag, inner),) = value.items()
        if tag in ("STRUCTURE", "ERROR"):
            if not isinstance(inner, dict) or len(inner) != 1:
                raise ValueError("a STRUCTURE must hold exactly one named structure")
            ((_, fields),) = inner.items()
            if not isinstance(fields, dict):
                raise ValueError("a STRUCTURE's fields must be an object")
            return {k: untag(v) for k, v in fields.items()}
        if tag == "OPTIONAL":
            return None if inner is None else untag(inner)
        if tag == "SECRET":
            return inner
        if tag == "BINARY":
            return base64.b64decode(inner)
        raise ValueError(f"unknown value tag {tag!r}")
    if isinstance(value, list):
        return [untag(v) for v in value]
    return value


def _map_entries(value: Any) -> Any:
    """vAPI maps travel as lists of `map-entry` structures; as input, accept those or a plain object."""
    if isinstance(value, list):
        return {e["key"]: e["value"] for e in value if isinstance(e, dict) and "key" in e}
    return value


def tag(value: Any, type_: str) -> Any:
    """A plain result value → typed vAPI JSON for the declared type."""
    m = _GENERIC.match(type_)
    if m is not None:
        kind, inner = m[1], m[2]
        if kind == "optional":
            return {"OPTIONAL": None if value is None else tag(value, inner)}
        return [tag(v, inner) for v in value]
    m = _MAP.match(type_)
    if m is not None:
        return [{"STRUCTURE": {"map-entry": {"key": tag(k, m[1]), "value": tag(v, m[2])}}} for k, v in value.items()]
    if type_ in _PLAIN or type_.startswith("id<") or type_ in meta()["enums"]:
        return value
    if type_ == "secret":
        return {"SECRET": value}
    if type_ == "void":
        return None
    struct = meta()["structures"].get(type_)
    if struct is None:  # DynamicStructure and anything the contract leaves open
        return {"STRUCTURE": {"dynamic_structure": {}}}
    fields = {name: tag(value.get(name), ftype) for name, ftype in struct["fields"]}
    return {"STRUCTURE": {struct["canonical_name"]: fields}}


_ERROR_CANONICAL = {
    "ALREADY_EXISTS": "already_exists",
    "ALREADY_IN_DESIRED_STATE": "already_in_desired_state",
    "CANCELED": "canceled",
    "CONCURRENT_CHANGE": "concurrent_change",
    "ERROR": "error",
    "FEATURE_IN_USE": "feature_in_use",
    "INTERNAL_SERVER_ERROR": "internal_server_error",
    "INVALID_ARGUMENT": "invalid_argument",
    "INVALID_ELEMENT_CONFIGURATION": "invalid_element_configuration",
    "INVALID_ELEMENT_TYPE": "invalid_element_type",
    "INVALID_REQUEST": "invalid_request",
    "NOT_ALLOWED_IN_CURRENT_STATE": "not_allowed_in_current_state",
    "NOT_FOUND": "not_found",
    "OPERATION_NOT_FOUND": "operation_not_found",
    "RESOURCE_BUSY": "resource_busy",
    "RESOURCE_IN_USE": "resource_in_use",
    "RESOURCE_INACCESSIBLE": "resource_inaccessible",
    "SERVICE_UNAVAILABLE": "service_unavailable",
    "TIMED_OUT": "timed_out",
    "UNABLE_TO_ALLOCATE_RESOURCE": "unable_to_allocate_resource",
    "UNAUTHENTICATED": "unauthenticated",
    "UNAUTHORIZED": "unauthorized",
    "UNEXPECTED_INPUT": "unexpected_input",
    "UNSUPPORTED": "unsupported",
    "UNVERIFIED_PEER": "unverified_peer",
}


def tag_error(e: errors.ApiError) -> dict[str, Any]:
    """A standard error as the runtime expects it: `{"ERROR": {"com.vmware.vapi.std.errors.<name>": {...}}}`."""
    messages = tag(e.messages, "list<vapi.std.LocalizableMessage>")
    fields = {"messages": messages, "data": {"OPTIONAL": None}, "error_type": {"OPTIONAL": e.error_type}}
    return {"ERROR": {f"com.vmware.vapi.std.errors.{_ERROR_CANONICAL[e.error_type]}": fields}}


class JsonRpcApi:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.operations = {(op.service, op.name): op for op in host.operations}
        self.max_body = host.max_body

    async def handle(self, request: web.Request) -> web.StreamResponse:
        return close_if_unreadable(request, await self._handle(request))

    async def _handle(self, request: web.Request) -> web.Response:
        request_id: Any = None
        try:
            body = await self._read(request)
            call, request_id = self._envelope(body)
            result = await self._invoke(request, call)
            return self._reply({"jsonrpc": "2.0", "id": request_id, "result": result})
        except JsonRpcError as e:
            error = {"code": e.code, "message": str(e)}
            return self._reply({"jsonrpc": "2.0", "id": e.request_id or request_id, "error": error})
        except Exception:
            log.exception("JSON-RPC call failed")
            err = errors.internal("An internal error occurred; the server log has the details.")
            return self._reply({"jsonrpc": "2.0", "id": request_id, "result": {"error": tag_error(err)}})

    @staticmethod
    def _reply(payload: dict[str, Any]) -> web.Response:
        return web.Response(status=200, body=msgspec.json.encode(payload), headers=_HEADERS)

    async def _read(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > self.max_body:
            raise JsonRpcError(-32600, f"Invalid Request: the body exceeds {self.max_body} bytes")
        try:
            body = await request.content.read(self.max_body + 1)
        except web.RequestPayloadError as e:
            raise JsonRpcError(-32600, f"Invalid Request: {unreadable(e)}") from None
        if len(body) > self.max_body:
            raise JsonRpcError(-32600, f"Invalid Request: the body exceeds {self.max_body} bytes")
        return body

    @staticmethod
    def _envelope(body: bytes) -> tuple[dict[str, Any], Any]:
        try:  # msgspec, not json: it refuses what is not UTF-8, lone surrogate escapes included
            message = msgspec.json.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError):
            raise JsonRpcError(-32700, "Parse error: the body is not JSON (UTF-8)") from None
        except RecursionError:
            raise JsonRpcError(-32600, "Invalid Request: the body is nested too deeply") from None
        if not isinstance(message, dict):
            raise JsonRpcError(-32600, "Invalid Request: not a JSON-RPC request object")
        request_id = message.get("id")
        if message.get("jsonrpc") != "2.0":
            raise JsonRpcError(-32600, 'Invalid Request: jsonrpc must be "2.0"', request_id)
        if not isinstance(message.get("method"), str):
            raise JsonRpcError(-32600, "Invalid Request: method must be a string", request_id)
        if message.get("method") != "invoke":
            raise JsonRpcError(-32601, f"Method not found: {message.get('method')!r} (only 'invoke')", request_id)
        params = message.get("params")
        if (
            not isinstance(params, dict)
            or not isinstance(params.get("serviceId"), str)
            or not isinstance(params.get("operationId"), str)
            or not isinstance(params.get("input"), dict)
        ):
            raise JsonRpcError(-32602, "Invalid params: serviceId, operationId and input are required", request_id)
        return params, request_id

    async def _invoke(self, request: web.Request, call: dict[str, Any]) -> dict[str, Any]:
        service, operation = call["serviceId"], call["operationId"]
        try:
            op = self.operations.get((service, operation))
            if op is None:
                raise errors.operation_not_found(
                    f"The operation {service}.{operation} is not served by this server.", service, operation
                )
            request[OPERATION] = op.id
            ctx = await self._context(request, op, call.get("ctx"))
            kwargs = self._inputs(op, call["input"])
            result = await op.call(ctx, **kwargs)
        except errors.ApiError as e:
            return {"error": tag_error(e)}
        output_type = meta()["operations"].get(f"{service}/{operation}", {}).get("output", "void")
        return {"output": tag(result, output_type)}

    async def _context(self, request: web.Request, op: Operation, ctx: Any) -> Ctx:
        security = ctx.get("securityCtx") if isinstance(ctx, dict) else None
        base_url = self.host.base_url(request)
        scheme = security.get("schemeId") if isinstance(security, dict) else None
        if scheme == USER_PASS:
            assert isinstance(security, dict)
            credentials = (str(security.get("userName") or ""), str(untag(security.get("password")) or ""))
            if not op.auth:
                return Ctx("", base_url, credentials=credentials)
            return await self.host.auth.password_context(op, credentials, base_url)  # per-call credentials
        if not op.auth:
            return Ctx("", base_url)
        if scheme == SESSION_ID:
            assert isinstance(security, dict)
            sid = security.get("sessionId")
            sid = str(untag(sid)) if sid is not None else None
            return await self.host.auth.session_context(op, sid, base_url)
        raise errors.unauthenticated("This operation requires authentication: send a session_id security context.")

    @staticmethod
    def _inputs(op: Operation, encoded: dict[str, Any]) -> dict[str, Any]:
        try:
            given = untag(encoded)
        except (ValueError, TypeError, binascii.Error, RecursionError) as e:
            raise errors.invalid_argument(f"The operation input is not valid vAPI JSON: {e}.") from None
        if not isinstance(given, dict):
            raise errors.invalid_argument("The operation input must be a structure.")
        kwargs: dict[str, Any] = {}
        for p in op.params:
            value = given.get(p.name)
            if value is None:
                if p.required and p.kind != "header":
                    raise errors.invalid_argument(f"The parameter {p.name} is required.", p.name)
                continue
            try:
                kwargs[p.name] = msgspec.convert(_maps(value), p.type, strict=False)
            except msgspec.ValidationError as e:
                raise errors.invalid_argument(f"The parameter {p.name} is not valid: {e}.", p.name) from None
        return kwargs


def _maps(value: Any) -> Any:
    """Plain values may hold vAPI maps (lists of key/value entries) where a structure expects an object."""
    if isinstance(value, dict):
        return {k: _maps(v) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(e, dict) and set(e) == {"key", "value"} for e in value):
            return _map_entries(value)
        return [_maps(v) for v in value]
    return value
