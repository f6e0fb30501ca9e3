"""HTTP validators (RFC 9110 §8.8.3 and §13) for responses that carry an entity tag of their own: the VCSP feed's
documents and files. A subscriber that polls lib.json sends back the `ETag` it got in `If-None-Match` and gets 304
Not Modified (no body) while nothing changed; a download resumed with `Range` and `If-Range` gets the part only
when the file is still the one the tag names, else the whole file (200).

Only entity tags are validators here: no `Last-Modified` is sent, so a date in `If-Range` never matches (the whole
file is sent) and `If-Modified-Since` is ignored, as RFC 9110 has it when `If-None-Match` is present or no date was
given. `If-Match` is not evaluated: the feed is read-only, and GET and HEAD are all it serves.
"""

from __future__ import annotations

import re

from aiohttp import web

# an entity-tag: optional weakness, then a quoted opaque string (RFC 9110 §8.8.3)
_TAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


def strong(value: str) -> str:
    """The strong entity tag of `value` (letters, digits, `-` and `.` only), quoted as the header carries it."""
    assert re.fullmatch(r"[0-9A-Za-z.-]+", value), value
    return f'"{value}"'


def _tags(header: str) -> tuple[list[tuple[bool, str]], bool]:
    """The entity tags of an `If-None-Match` list as (weak, quoted tag), and whether it is `*`. Text
    that is not a list of entity tags matches nothing."""
    if header.strip() == "*":
        return [], True
    tags: list[tuple[bool, str]] = []
    pos = 0
    while pos < len(header):
        m = _TAG.match(header, pos)
        if m is None or m.end() == pos:
            return [], False
        tags.append((m.group(1) is not None, m.group(2)))
        pos = m.end()
    return tags, False


def not_modified(request: web.BaseRequest, etag: str) -> bool:
    """Whether `If-None-Match` names the current representation (weak comparison): 304 for GET and HEAD."""
    headers = request.headers.getall("If-None-Match", [])
    if not headers:
        return False
    tags, anything = _tags(", ".join(headers))
    return anything or any(tag == etag for _, tag in tags)


def range_applies(request: web.BaseRequest, etag: str) -> bool:
    """Whether the request's `Range` is to be served: always without `If-Range`; with one, only when it is exactly
    the current strong tag (a weak tag or a date never matches, RFC 9110 §13.1.5), else the whole file is sent."""
    header = request.headers.get("If-Range")
    return header is None or header.strip() == etag


def not_modified_response(etag: str, headers: dict[str, str] | None = None) -> web.Response:
    """304: the validator and the caching headers the 200 would have had, no body."""
    return web.Response(status=304, headers={**(headers or {}), "ETag": etag})
