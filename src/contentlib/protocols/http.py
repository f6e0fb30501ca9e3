"""HTTP plumbing the JSON codecs share: bounded bodies, Basic credentials, header text, decoding into the model's
structures with INVALID_ARGUMENT naming the problem, and logging a bug without leaking it."""

from __future__ import annotations

import base64
import logging
from typing import Any

import msgspec
from aiohttp import web

from contentlib import errors
from contentlib.services.core import check_text

log = logging.getLogger("contentlib.http")

JSON = "application/json"
JSON_HEADERS = {"Content-Type": JSON}


def json_response(status: int, value: Any) -> web.Response:
    return web.Response(status=status, body=msgspec.json.encode(value), headers=JSON_HEADERS)


async def read_body(request: web.BaseRequest, max_body: int) -> bytes:
    """The whole request body, refused (INVALID_ARGUMENT) once it exceeds `max_body` bytes, declared or chunked, or
    when it cannot be read (`unreadable`)."""
    if request.content_length is not None and request.content_length > max_body:
        raise errors.invalid_argument(
            f"The request body has {request.content_length} bytes; at most {max_body} are accepted."
        )
    if not request.body_exists:
        return b""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > max_body:
                raise errors.invalid_argument(f"The request body exceeds {max_body} bytes.")
            chunks.append(chunk)
    except web.RequestPayloadError as e:
        raise unreadable(e) from None
    return b"".join(chunks)


def unreadable(e: web.RequestPayloadError) -> errors.ApiError:
    """A body aiohttp could not read: bytes that are not in the Content-Encoding they declare (gzip, deflate, br),
    a broken chunked framing. Bad input, not a bug; the answer must close the connection (`close_if_unreadable`)."""
    reason = " ".join(str(e.__cause__ or e).split()).removeprefix("400, message: ")
    return errors.invalid_argument(f"The request body cannot be read: {reason}.")


def close_if_unreadable(request: web.BaseRequest, response: web.StreamResponse) -> web.StreamResponse:
    """After a body that could not be read, the connection cannot carry another request (aiohttp's parser stopped
    inside the body and reads nothing more from it): the answer says `Connection: close` and the connection closes
    after it. Its body is marked ended, so that aiohttp does not read it again, only to raise the same error and log
    it as unhandled."""
    if request.content.exception() is not None:
        response.force_close()
        request.content.feed_eof()
    return response


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
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


def header(request: web.BaseRequest, name: str) -> str | None:
    """A request header's value; bytes that are not UTF-8 (aiohttp keeps them as surrogates) are a bad request."""
    value = request.headers.get(name)
    return None if value is None else check_text(value, f"The {name} header")


def decode(body: bytes, type_: Any) -> Any:
    """A JSON body as `type_` (an empty body is `{}`)."""
    try:
        return msgspec.json.decode(body or b"{}", type=type_)
    except msgspec.ValidationError as e:
        raise errors.invalid_argument(f"The request is not valid: {e}.", str(e)) from None
    except msgspec.DecodeError as e:
        raise errors.invalid_argument(f"The request body is not valid JSON: {e}.", str(e)) from None
    except UnicodeDecodeError:  # msgspec raises it for bytes that are not UTF-8
        raise errors.invalid_argument("The request body is not valid JSON: it is not UTF-8.") from None
    except RecursionError:
        raise errors.invalid_argument("The request body is nested too deeply.") from None


def convert(value: Any, type_: Any, name: str) -> Any:
    """A decoded value (a query string, a member of a body) as the parameter's type."""
    if type_ is str and isinstance(value, str):
        return value
    try:
        return msgspec.convert(value, type_, strict=False)
    except msgspec.ValidationError as e:
        raise errors.invalid_argument(f"The parameter {name} is not valid: {e}.", name) from None


def internal(request: web.BaseRequest) -> errors.ApiError:
    """A bug: log it with its stack; the client gets a vendor error without one."""
    log.exception("unexpected error in %s %s", request.method, request.path)
    return errors.internal("An internal error occurred; the server log has the details.")
