"""Fuzzing the SOAP envelope /sdk reads (the harness and the model: soapfuzz.py and the soapfuzz_*.py modules).

- `test_fuzz_envelope`: valid calls with the envelope mutated: wrong or missing namespaces, no or two Bodies,
  Headers, prefixes, DTDs and entities (billion laughs, XXE, parameter entities, external DTDs), declared encodings
  (supported, multi-byte, unknown, Python text transforms), BOMs, bytes that are not UTF-8, truncation, flipped
  bytes, garbage, comments, CDATA and character references, deep nesting and many elements around the limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree as ET

import hypothesis
import pytest
from hypothesis import strategies as st
from soapfuzz import DECL, ENV_OPEN, EXAMPLES, LOGGED_IN, SETTINGS, Fuzzer, auth_headers, envelope_text, show
from soapfuzz import fuzz_fixture as fuzz_fixture  # the fixtures (imported as themselves: pytest finds them)
from soapfuzz import fuzz_server_fixture as fuzz_server_fixture
from soapfuzz_model import MAX_BODY, MAX_DEPTH, MAX_ELEMENTS, kids, local
from soapfuzz_oracles import Ctx, expect_outcome, judge
from soapfuzz_strategies import BASES, xml_names
from soapkit import SOAP_ENV, VIM25, XSI

LAUGHS = '<!DOCTYPE lolz [<!ENTITY lol "lol">' + "".join(
    f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">' for i in range(1, 10)
)
DOCTYPES = [
    LAUGHS + "]>",
    '<!DOCTYPE e [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE e [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>',
    '<!DOCTYPE soapenv:Envelope SYSTEM "http://127.0.0.1:9/soap.dtd">',
    "<!DOCTYPE e [<!ELEMENT e ANY>]>",
    '<!DOCTYPE e PUBLIC "-//x//y" "http://127.0.0.1:9/y.dtd">',
    "<!DOCTYPE e>",
]
# A declared encoding, and whether the body encoded so reads the same (the bodies are ASCII).
SAME_ENCODINGS = ["UTF-8", "utf-8", "UTF-16", "ISO-8859-1", "latin-1", "US-ASCII", "cp1252", "koi8-r", "cp437"]
ODD_ENCODINGS = ["UTF-32", "utf-7", "shift_jis", "rot13", "punycode", "idna", "unicode_escape", "base64", "hex"]
ODD_ENCODINGS += ["no-such-encoding", "", "cp500", "UTF-16LE", "utf_8_sig", "zlib", "uu", "mbcs", "ascii\x00"]


@dataclass(frozen=True)
class Mutation:
    kind: str
    arg: Any = None


_PREFIX = xml_names.filter(lambda n: not n.lower().startswith("xml"))
_BAD_UTF8 = [b"\xff\xfe", b"\xc3\x28", b"\x80", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x00"]
_GARBAGE = [b"", b"   \n", b"{}", b"<html/>", b"\xef\xbb\xbf", b"<a><b></a></b>"]
# Each kind of mutation, with what it takes (`mutate` applies it).
MUTATIONS: dict[str, st.SearchStrategy[Any]] = {
    "envelope-ns": st.sampled_from(
        ["http://www.w3.org/2003/05/soap-envelope", "urn:vim25", SOAP_ENV.rstrip("/"), SOAP_ENV + "/"]
    ),
    "root": st.sampled_from(["Envelop", "Body", "Fault", "html"]),
    "header": st.sampled_from(
        [
            "<soapenv:Header/>",
            "<soapenv:Header><x>1</x></soapenv:Header>",
            '<soapenv:Header><y soapenv:mustUnderstand="1"/></soapenv:Header>',
        ]
    ),
    "header-after": st.just("<soapenv:Header/>"),
    "method-ns": st.sampled_from(["urn:vim2", f"{VIM25}/8.0.2.0", "urn:internalvim25", "URN:VIM25", f"{VIM25} ", ""]),
    "prefixes": st.tuples(_PREFIX, _PREFIX),
    "doctype": st.sampled_from(DOCTYPES),
    "encoding": st.sampled_from(SAME_ENCODINGS),
    "odd-encoding": st.sampled_from(ODD_ENCODINGS),
    "bad-bytes": st.tuples(st.floats(0, 1), st.sampled_from(_BAD_UTF8)),
    "truncate": st.floats(0, 0.999),
    "flip": st.tuples(st.floats(0, 0.999), st.integers(0, 255)),
    "garbage": st.binary(max_size=300) | st.sampled_from(_GARBAGE),
    "deep": st.integers(1, 4000),
    "many": st.integers(1, 25_000),
    "comment": st.sampled_from(["<!-- x -->", "<?pi x?>", "<!---->", "\n\t "]),
    **dict.fromkeys(["no-body", "two-bodies", "empty-body", "two-methods", "body-text", "no-decl"], st.none()),
    **dict.fromkeys(["default-ns", "bom", "cdata", "charref", "undefined-entity", "xsi-type", "dup-attr"], st.none()),
    **dict.fromkeys(["undeclared-prefix", "xml-1.1", "standalone", "leading-space", "trailing-space"], st.none()),
    "trailing-element": st.none(),
}
mutations = st.one_of(*[st.builds(Mutation, st.just(kind), arg) for kind, arg in MUTATIONS.items()])


def mutate(m: Mutation, method: ET.Element) -> tuple[bytes, str]:
    """The mutated body, and what it must get: `same` (the answer to the call as it was), `refused` (InvalidRequest)
    or `unknown` (the checks every answer must pass)."""
    inner = ET.tostring(method, encoding="unicode")
    this = kids(method, "_this")[0]
    value = this.text or ""
    plain = envelope_text(inner)
    start = inner.index(">") + 1  # after the method's start tag
    k, arg = m.kind, m.arg
    if k == "envelope-ns":
        return envelope_text(inner, env_open=ENV_OPEN.replace(SOAP_ENV, arg, 1)).encode(), "refused"
    if k == "root":
        return f'{DECL}<{arg} xmlns="{SOAP_ENV}">{inner}</{arg}>'.encode(), "refused"
    if k in ("no-body", "two-bodies", "empty-body", "two-methods", "body-text", "no-decl"):
        body = {
            "no-body": f"{DECL}{ENV_OPEN}</soapenv:Envelope>",
            "two-bodies": plain.replace(
                "</soapenv:Envelope>", f"<soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>"
            ),
            "empty-body": envelope_text(""),
            "two-methods": envelope_text(inner + inner),
            "body-text": envelope_text(f"\n junk {inner} more "),
            "no-decl": plain[len(DECL) :],
        }[k]
        return body.encode(), "same" if k in ("body-text", "no-decl") else "refused"
    if k in ("header", "header-after"):
        body = envelope_text(inner, arg) if k == "header" else plain.replace("</soapenv:Body>", f"</soapenv:Body>{arg}")
        return body.encode(), "same"
    if k == "method-ns":
        return envelope_text(inner.replace(f'"{VIM25}"', f'"{arg}"', 1)).encode(), "refused"
    if k == "prefixes":
        env, ns = arg
        body = plain.replace("soapenv:", f"{env}:").replace("xmlns:soapenv=", f"xmlns:{env}=")
        body = body.replace("ns0:", f"{ns}:").replace("xmlns:ns0=", f"xmlns:{ns}=")
        same = env != ns and "xsi" not in (env, ns) and "xsd" not in (env, ns)
        return body.encode(), "same" if same else "unknown"
    if k == "default-ns":
        body = f'{DECL}<Envelope xmlns="{SOAP_ENV}" xmlns:xsi="{XSI}"><Body>{inner}</Body></Envelope>'
        return body.encode(), "same"
    if k == "doctype":
        return (DECL + arg + plain[len(DECL) :]).encode(), "refused"
    if k in ("encoding", "odd-encoding"):
        body = plain.replace('encoding="UTF-8"', f'encoding="{arg}"', 1)
        if k == "odd-encoding":
            return body.encode(), "unknown"
        return body.encode(arg), "same"
    if k == "bom":
        return b"\xef\xbb\xbf" + plain.encode(), "same"
    raw = plain.encode()
    if k == "bad-bytes":
        at = int(arg[0] * len(raw))
        return raw[:at] + arg[1] + raw[at:], "refused"
    if k == "truncate":
        return raw[: int(arg * len(raw))], "refused"
    if k == "flip":
        at = int(arg[0] * len(raw))
        return raw[:at] + bytes([arg[1]]) + raw[at + 1 :], "unknown"
    if k == "garbage":
        return arg, "refused"
    if k in ("deep", "many"):
        extra = "<x>" * arg + "</x>" * arg if k == "deep" else "<x/>" * arg
        nested = envelope_text(inner[:start] + extra + inner[start:]).encode()
        count = 2 + sum(1 for _ in method.iter())
        over = 3 + arg > MAX_DEPTH if k == "deep" else count + arg > MAX_ELEMENTS
        return nested, "refused" if over or len(nested) > MAX_BODY else "same"
    if k == "comment":
        return envelope_text(inner[:start] + arg + inner[start:]).replace(
            "<soapenv:Body>", f"<soapenv:Body>{arg}"
        ).encode(), "same"
    if k in ("cdata", "charref", "undefined-entity"):
        new = {
            "cdata": f"<![CDATA[{value}]]>",
            "charref": f"&#x{ord(value[0]):x};{value[1:]}",
            "undefined-entity": "&nope;",
        }[k]
        return envelope_text(
            inner.replace(f">{value}<", f">{new}<", 1)
        ).encode(), "refused" if k == "undefined-entity" else "same"
    if k in ("xsi-type", "dup-attr"):
        attr = ' xsi:type="xsd:string"' if k == "xsi-type" else f' type="{this.get("type")}"'
        at = inner.index("_this") + len("_this")
        return envelope_text(inner[:at] + attr + inner[at:]).encode(), "same" if k == "xsi-type" else "refused"
    if k == "undeclared-prefix":
        return envelope_text(inner[:start] + "<foo:bar/>" + inner[start:]).encode(), "refused"
    if k == "xml-1.1":
        return plain.replace('version="1.0"', 'version="1.1"', 1).encode(), "unknown"
    if k == "standalone":
        return plain.replace('encoding="UTF-8"', 'encoding="UTF-8" standalone="yes"', 1).encode(), "same"
    if k == "leading-space":
        return (" \n" + plain).encode(), "refused"
    if k == "trailing-space":
        return (plain + "\n \t\n").encode(), "same"
    assert k == "trailing-element", k
    return (plain + "<x/>").encode(), "refused"


@SETTINGS
@hypothesis.given(base=st.sampled_from(sorted(BASES)), mutation=mutations)
@pytest.mark.parametrize("examples", [EXAMPLES])
def test_fuzz_envelope(fuzz: Fuzzer, base: str, mutation: Mutation, examples: int) -> None:
    fuzz.cases += 1
    build, auth = BASES[base]
    method = build()
    body, outcome = mutate(mutation, method)
    sent_cookie, headers = auth_headers(fuzz, auth)
    c = Ctx(fuzz, method, auth in LOGGED_IN, fuzz.sid if auth in LOGGED_IN else None, sent_cookie, headers)
    expect = expect_outcome(c, outcome)
    a = fuzz.send(body, sent_cookie, headers, answer=local(method.tag) if outcome == "same" else None)
    judge(a, expect, f"{mutation} {show(body)}")
