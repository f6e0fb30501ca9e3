"""Log lines: the request id every request carries, and `--log-format json` (one JSON object per line).

The request being handled is in a context variable (`CURRENT`), set by the ops middleware for the time of its
handler, so every line logged meanwhile, in whichever module, names it: in JSON its `request_id`, method, path
(without the query string, and without the credential of a data-plane URL), `remote` and, once known, the
`operation`. The text format stays what it always was (Python's last-resort handler: warnings and errors, bare).
"""

from __future__ import annotations

import datetime
import itertools
import logging
import os
import re
import sys
from contextvars import ContextVar
from typing import Any

import msgspec
from aiohttp import web

FORMATS = ("text", "json")
HEADER = "X-Request-Id"
REQUEST_ID = "contentlib.request_id"  # the request's keys (web.Request is a mapping)
OPERATION = "contentlib.operation"
ON_PREPARED = "contentlib.on_prepared"  # called with a file response once aiohttp has prepared (sent) it
CURRENT: ContextVar[web.BaseRequest | None] = ContextVar("contentlib_request", default=None)

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_PREFIX = os.urandom(6).hex()  # per process: ids stay unique across workers and restarts
_counter = itertools.count(1)
_TOKEN_PATHS = ("/cls/data/", "/cls/download/")  # /cls/<kind>/<token>/<name>: the token is a credential


def request_id(incoming: str | None) -> str:
    """The client's X-Request-Id when it is a sane one (at most 128 letters, digits and `._:-`), else a new id."""
    if incoming is not None and _SAFE_ID.fullmatch(incoming):
        return incoming
    return f"{_PREFIX}-{next(_counter):x}"


def _reseed() -> None:
    global _PREFIX, _counter
    _PREFIX = os.urandom(6).hex()
    _counter = itertools.count(1)


os.register_at_fork(after_in_child=_reseed)  # a forked worker must not repeat its supervisor's ids


def loggable_path(path: str) -> str:
    """A request's path as logs show it: a data-plane URL's token (its credential) cut to its first characters."""
    if path.startswith(_TOKEN_PATHS):
        head, _, rest = path[1:].partition("/")
        kind, _, rest = rest.partition("/")
        token, sep, name = rest.partition("/")
        return f"/{head}/{kind}/{token[:6]}…{sep}{name}"
    return path


def request_fields(request: web.BaseRequest) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "request_id": request.get(REQUEST_ID),
        "method": request.method,
        "path": loggable_path(request.path),
        "remote": request.remote,
    }
    if (operation := request.get(OPERATION)) is not None:
        fields["operation"] = operation
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the current request's fields, the
    fields passed as `extra={"fields": {...}}`, and the traceback of an exception as `exc_info` text."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request = CURRENT.get()
        if request is not None:
            line.update(request_fields(request))
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            line.update(extra)
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return msgspec.json.encode(line).decode()


def configure(log_format: str) -> None:
    """Set up the root logger for `log_format` ("text": leave it as it is)."""
    if log_format == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
