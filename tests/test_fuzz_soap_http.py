"""Fuzzing the HTTP around /sdk's SOAP (the harness and the model: soapfuzz.py and the soapfuzz_*.py modules).

- `test_fuzz_http`: the HTTP around it: other methods, Content-Type, SOAPAction, Content-Encoding (valid, garbage,
  unknown), chunked bodies, odd cookies and User-Agents, on one keep-alive connection.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st
from soapfuzz import EXAMPLES, LOGGED_IN, SETTINGS, Fuzzer, auth_headers, render, show
from soapfuzz import fuzz_fixture as fuzz_fixture  # the fixtures (imported as themselves: pytest finds them)
from soapfuzz import fuzz_server_fixture as fuzz_server_fixture
from soapfuzz_model import local
from soapfuzz_oracles import Ctx, expect_outcome, fault, judge
from soapfuzz_strategies import BASES

CONTENT_TYPES = [None, 'text/xml; charset="utf-8"', "application/soap+xml", "application/json", "text/plain", ""]
CONTENT_TYPES += [
    "text/xml; charset=latin-1",
    "multipart/form-data; boundary=x",
    "x" * 3000,
    'text/xml; charset="utf-16"',
]
SOAP_ACTIONS = [None, "urn:vim25/8.0.2.0", '""', "urn:vim25/5.5", "urn:vim25/9.9.9", "garbage", "urn:internalvim25/8.0"]
SOAP_ACTIONS += ["x" * 4000, "urn:vim25/\u00e9"]
# Content-Encodings aiohttp has no decoder for here (br, zstd: their libraries are not installed) are refused by its
# HTTP parser with a plain 400 before /sdk sees the request, as any broken HTTP (test_hostile_http.py): not sent.
ENCODINGS = [None, None, None, "gzip", "deflate", "gzip-garbage", "deflate-garbage", "x-unknown", "identity"]
ENCODINGS += ["gzip, gzip", "GZIP", "compress"]
COOKIES = [None, "a=b", "a=b; $C", "$C; a=b", "$C; vmware_soap_session_x=1", '$C; other="a b"', "=; $C", "$C;;;"]
AGENTS = [None, "pyvmomi Python/3.11", "govc/0.24.2", "\u00e9\u00e8", "x" * 4000, "a\tb", ""]
HTTP_METHODS = ["POST"] * 8 + ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PROPFIND"]


def encoded(body: bytes, encoding: str | None) -> tuple[bytes, str]:
    """The body with a Content-Encoding, and what it must get (as in `mutate`)."""
    if encoding in ("gzip", "GZIP"):
        return gzip.compress(body), "same"
    if encoding == "deflate":
        return zlib.compress(body), "same"
    if encoding in ("gzip-garbage", "deflate-garbage"):
        return body, "refused"  # the bytes are not what the header says
    if encoding == "gzip, gzip":
        return gzip.compress(gzip.compress(body)), "unknown"
    return body, "same" if encoding in (None, "identity") else "unknown"


@SETTINGS
@hypothesis.given(
    base=st.sampled_from(sorted(BASES)),
    http_method=st.sampled_from(HTTP_METHODS),
    content_type=st.sampled_from(CONTENT_TYPES),
    soap_action=st.sampled_from(SOAP_ACTIONS),
    encoding=st.sampled_from(ENCODINGS),
    chunked=st.booleans(),
    cookies=st.sampled_from(COOKIES),
    agent=st.sampled_from(AGENTS),
)
@pytest.mark.parametrize("examples", [EXAMPLES])
def test_fuzz_http(
    fuzz: Fuzzer,
    base: str,
    http_method: str,
    content_type: str | None,
    soap_action: str | None,
    encoding: str | None,
    chunked: bool,
    cookies: str | None,
    agent: str | None,
    examples: int,
) -> None:
    """All on one keep-alive connection: an answer that does not close it must leave it usable."""
    fuzz.cases += 1
    build, auth = BASES[base]
    method = build()
    body, outcome = encoded(render(method), encoding)
    sent_cookie, auth_header = auth_headers(fuzz, auth)
    logged_in = auth in LOGGED_IN and (cookies is None or "$C" in cookies)
    c = Ctx(fuzz, method, logged_in, fuzz.sid if logged_in else None, sent_cookie, auth_header)
    if cookies is not None:
        sent_cookie = cookies.replace("$C", sent_cookie or "c=d")
    headers: dict[str, str | None] = {"Content-Type": content_type, "SOAPAction": soap_action, "User-Agent": agent}
    headers |= auth_header  # None: the header is left out
    if encoding is not None:
        headers["Content-Encoding"] = encoding.replace("-garbage", "")
    data: Any = body if not chunked else iter([body[i : i + 7000] for i in range(0, len(body), 7000)] or [b""])
    expect = fault("InvalidRequest") if http_method != "POST" else expect_outcome(c, outcome)
    a = fuzz.send(data, sent_cookie, headers, http_method, answer=local(method.tag) if outcome == "same" else None)
    judge(a, expect, f"{http_method} {headers} {show(body)}")
