"""Fuzzing /api and /rest with schemathesis against the vendor's 8.0.2 Swagger files (issue 6 point 3, issue 10).

What runs: every operation of `vsphere-8.0.2-content.swagger.json` + `vsphere-8.0.2-session.swagger.json` that the
server serves (the intersection with the server's own operation table, `contentlib.operations`, on /api, and with
the legacy paths the /rest codec derives from it, `legacy_rest.Route`; the services this server does not implement
are left out), with schemathesis-generated
inputs (its examples, coverage and fuzzing phases; valid and invalid data, and methods the spec does not define
for a path), against a private `contentlib serve` process, authenticated with `vmware-api-session-id` (the
session endpoints: login with HTTP Basic, logout on a throwaway session so the fuzzer never logs itself out).

Reaching deep code: random ids mostly give 404, so the test first creates real resources — libraries (one of them
published), items with published files, ACTIVE update sessions (one holding a signed OVF package whose preview is
AVAILABLE with warnings, one with a file uploaded and one waiting for its bytes), ACTIVE download sessions with a
prepared file, a trusted certificate — and `seed()` replaces about three out of four generated ids and names (path
and query parameters, body members at any depth such as `library_item_id`, `file_name`, `name`, `version`), client
tokens and `cert_text` with real ones; a PULL source URI always points at this server (a real file, a missing one,
a closed port), never at a random host. A successful delete, complete, cancel or fail makes the test replace the
seeds it consumed.

Checks on every response:
- no 5xx, except a 500 whose error_type is RESOURCE_BUSY (and, below, only where the operation declares it);
- schemathesis `response_schema_conformance` and `content_type_conformance` for documented statuses: a 2xx body
  or a documented error validates against the spec's schema (types, required members, enums, date-time formats).
  A 204 must have no body, and so no Content-Type, which the Swagger's global `produces` does not foresee: the
  content-type check is skipped for it (REFERENCE.md §1 item 4, §5 "response content type: absent or JSON");
- every error is a vendor error (REFERENCE.md §4.1) valid against the spec's `VapiStdErrors<Type>` schema, with
  the HTTP status REFERENCE.md §1 item 4 gives its error_type.

On /rest the same checks hold in that dialect (docs/rest-dialect.md): a success is 200 (`{"value": ...}`, or no body
for a void operation), an error is the `{"type", "value"}` envelope valid against the spec's
`vapi.std.errors.<type>_error` schema, with the vAPI runtime's status for its type; a /rest operation is held to the
vendor contract of its /api replacement (the spec's `x-vmw-deprecated` pointer).

Undocumented statuses: the 8.0.2 Swagger lists only some of each operation's errors (most operations omit 401 and
403; some omit errors their vAPI definition declares, e.g. `item.file.get` declares UNSUPPORTED but documents no
400). The vendor contract — operations.json `errors` + `errors_only_in_docstring` (REFERENCE.md Appendix A),
statuses from §1 item 4 — is the authority, so an error is accepted when the operation declares it there, or it
is UNAUTHENTICATED (401, every call needs a session) or UNAUTHORIZED (403, the privilege check every operation
documents). INVALID_ARGUMENT on a status the Swagger does not document is accepted only for a request the Swagger
itself calls invalid (a missing required parameter or body, a body its schema rejects): the codec's answer to
input it cannot decode (DESIGN.md: bad input gets INVALID_ARGUMENT). A valid request answered so is a finding,
except a `cert_text` that is not a PEM certificate (see `_check`). A method the spec does not define for a path
must get OPERATION_NOT_FOUND (404) unless the server serves that method there as another operation.

Bounded: CONTENTLIB_FUZZ_EXAMPLES examples per operation in the fuzzing phase (default 50 in CI; the soak runs
2000) plus schemathesis's deterministic coverage cases (about 3000), derandomized so a red run is reproducible,
no example database. The number of cases run is printed in the terminal summary (conftest).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import uuid
import zlib
from collections.abc import Iterator
from typing import Any
from unittest import mock

import hypothesis
import jsonschema
import ovfkit as k
import pytest
import schemathesis
from conftest import ADMIN_PASSWORD, ADMIN_USER, API_DIR, Api, ServerProcess
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from contentlib import operations
from contentlib.protocols.legacy_rest import _API_FORM_ONLY, SESSION, Route, service_path

EXAMPLES = int(os.environ.get("CONTENTLIB_FUZZ_EXAMPLES", "50"))
SPEC_FILES = ("vsphere-8.0.2-content.swagger.json", "vsphere-8.0.2-session.swagger.json")

# The /api status of each standard error (REFERENCE.md §1 item 4; OPERATION_NOT_FOUND: the runtime's map, §4.3).
ERROR_STATUS = {
    "NOT_FOUND": 404,
    "INVALID_ARGUMENT": 400,
    "NOT_ALLOWED_IN_CURRENT_STATE": 400,
    "INVALID_ELEMENT_TYPE": 400,
    "ALREADY_EXISTS": 400,
    "UNSUPPORTED": 400,
    "UNAUTHENTICATED": 401,
    "UNAUTHORIZED": 403,
    "RESOURCE_BUSY": 500,
    "RESOURCE_INACCESSIBLE": 500,
    "CONCURRENT_CHANGE": 409,
    "SERVICE_UNAVAILABLE": 503,
    "ERROR": 500,
    "OPERATION_NOT_FOUND": 404,
}
# The /rest status of each (docs/rest-dialect.md: the runtime's map).
LEGACY_STATUS = {**ERROR_STATUS, "RESOURCE_BUSY": 400, "RESOURCE_INACCESSIBLE": 400}
# Errors any operation may answer although its Swagger entry does not list them (see the module docstring).
ANY_OPERATION = {"UNAUTHENTICATED", "UNAUTHORIZED", "INVALID_ARGUMENT"}


# -- the schema: the vendor's files, restricted to what the server serves -----------------------------------------
def _served() -> set[tuple[str, str, str | None, str | None]]:
    """(method, path, action, dispatch marker) of every operation in the server's own table."""
    served = set()
    for op in operations.build(mock.Mock()):
        marker = next((p.wire or p.name for p in op.params if p.kind == "dispatch"), None)
        served.add((op.method, op.path, op.action, marker))
    return served


REST_NOT_IN_SPEC = (
    service_path(SESSION),
    service_path("com.vmware.content.trusted_certificates"),
    service_path("com.vmware.content.security_policies"),  # vSphere 7.0.3: /api only
)


def _served_rest() -> set[str]:
    """`METHOD /rest/...` of every legacy route the /rest codec derives from the table, as the Swagger writes it."""
    ops = operations.build(mock.Mock())
    served = {Route.of(op).form for op in ops if op.service not in _API_FORM_ONLY}
    return served | {f"GET {service_path(SESSION)}"}


def _key(method: str, swagger_path: str) -> tuple[str, str, str | None, str | None]:
    """The same key for a Swagger path such as `/api/x/{id}?action=find` or `/api/x/{id}/file?name`; a served /rest
    path is keyed by the /api operation it stands for."""
    if swagger_path.startswith("/rest/"):
        return ("REST", f"{method.upper()} {swagger_path}", None, None)
    path, _, suffix = swagger_path.partition("?")
    action = suffix.removeprefix("action=") if suffix.startswith("action=") else None
    return method.upper(), path, action, (suffix or None) if action is None else None


def _raw_schema() -> tuple[dict[str, Any], set[tuple[str, str, str | None, str | None]]]:
    """Both Swagger files as one document holding only the served operations; and the served keys it lacks."""
    served = _served()
    served_rest = {("REST", form, None, None) for form in _served_rest()}
    merged: dict[str, Any] | None = None
    found = set()
    for name in SPEC_FILES:
        doc = json.loads((API_DIR / name).read_text())
        paths: dict[str, Any] = {}
        for path, item in doc["paths"].items():
            kept = {m: o for m, o in item.items() if m == "parameters" or _key(m, path) in served | served_rest}
            found |= {_key(m, path) for m in kept if m != "parameters"}
            if set(kept) - {"parameters"}:
                paths[path] = kept
        if merged is None:
            merged = {**doc, "paths": paths}
        else:
            merged["paths"].update(paths)
            for defname, definition in doc["definitions"].items():
                assert merged["definitions"].setdefault(defname, definition) == definition, defname
    assert merged is not None
    # The 8.0.2 files give no /rest form of the session, the trust store and the security policies at all
    # (docs/rest-dialect.md derives one).
    unspecified = (served | served_rest) - found
    return merged, {k for k in unspecified if not (k[0] == "REST" and k[1].split(" ")[1].startswith(REST_NOT_IN_SPEC))}


RAW, UNSPECIFIED = _raw_schema()
SERVED_PATHS = {(method, path) for method, path, _, _ in _served()}
SERVED_REST = _served_rest()
DEFINITIONS = RAW["definitions"]
_VARIABLE = re.compile(r"\{\w+\}")
# operations.json's templates name path variables as the SDK does (`{sourceLibraryItemId}`, `{item}` where the
# Swagger has `{library_item}`): an operation is found by its method and its path with the variables unnamed.
CONTRACT = {
    (o["http_method"], _VARIABLE.sub("{}", o["url_template"])): o
    for o in json.loads((API_DIR / "operations.json").read_text())["operations"]
}

schema = schemathesis.openapi.from_dict(
    RAW,
    config=schemathesis.Config.from_dict(
        {
            "generation": {
                "max-examples": EXAMPLES,
                "deterministic": True,
                "database": "none",
                "with-security-parameters": False,
            },
        }
    ),
)


def _error_name(error_type: str) -> str:
    """INVALID_ARGUMENT -> InvalidArgument (operations.json's spelling)."""
    return "".join(w.capitalize() for w in error_type.split("_"))


def _replacement(case: schemathesis.Case) -> tuple[str, str]:
    """(METHOD, /api Swagger path) of the operation: itself, or for a /rest one the spec's replacement pointer."""
    raw = case.operation.definition.raw
    if not case.operation.path.startswith("/rest/"):
        return case.operation.method.upper(), case.operation.path
    pointer = raw["x-vmw-deprecated"]["replacement"].split("#", 1)[1]  # /paths/~1api~1content~1library/get
    _, _, escaped, method = pointer.split("/")
    return method.upper(), escaped.replace("~1", "/").replace("~0", "~")


def _contract(case: schemathesis.Case) -> dict[str, Any]:
    """The operation in operations.json (its templates keep the `?action=x` / `?name` suffix, as the Swagger paths
    do)."""
    method, path = _replacement(case)
    return dict(CONTRACT[(method, _VARIABLE.sub("{}", path))])


# Errors an operation may answer beyond those its vAPI definition declares, each for a documented reason:
# item copy creates an item as item create does, and the name clash create declares (AlreadyExists "if there is
# already a library item with same name in the library") holds for it too; the Swagger documents copy's 400.
BEYOND_DECLARED = {("POST", "/api/content/library/item/{source_library_item_id}?action=copy"): {"ALREADY_EXISTS"}}


def _declared(case: schemathesis.Case) -> set[str]:
    """The error types the vendor contract lets this operation answer."""
    op = _contract(case)
    names = {e["error"] for e in op["errors"] + op["errors_only_in_docstring"]}
    beyond = BEYOND_DECLARED.get(_replacement(case), set())
    return {t for t in ERROR_STATUS if _error_name(t) in names} | ANY_OPERATION | beyond


# -- seeds: real resources for the generated requests to hit ----------------------------------------------------
PUBLISHED = {"a.txt": b"published bytes\n", "disk-1.vmdk": b"a small disk\n" * 64}


class Seeds:
    """Real ids and names, kept alive: `refresh()` replaces whatever a destructive request consumed."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.libraries: list[str] = []
        self.items: list[str] = []  # with PUBLISHED files
        self.update_sessions: list[str] = []  # ACTIVE
        self.download_sessions: list[str] = []  # ACTIVE, PUBLISHED["a.txt"] prepared
        self.certificates: list[str] = []
        self.uris: list[str] = []
        self.names = [*PUBLISHED, "vm.ovf", "vm.mf", "vm.cert", "vm-disk1.vmdk", "waiting.bin", "up.bin"]
        self.pem = k.make_ca().pem
        self.refresh()

    def _alive(self, path: str, state: bool = False) -> bool:
        r = self.api.get(path)
        return r.status_code == 200 and (not state or r.json()["state"] == "ACTIVE")

    def refresh(self) -> None:
        a = self.api
        lib = "/api/content/local-library"
        self.libraries = [x for x in self.libraries if self._alive(f"{lib}/{x}")]
        while len(self.libraries) < 2:  # the first one is published: its items can be published too
            published = {"published": True, "authentication_method": "NONE"} if not self.libraries else None
            self.libraries.append(a.create_library(publish_info=published))
        self.items = [x for x in self.items if self._alive(f"/api/content/library/item/{x}")]
        while len(self.items) < 2:
            item = a.create_item(self.libraries[0])
            a.put_files(item, PUBLISHED)
            self.items.append(item)
        us = "/api/content/library/item/update-session"
        self.update_sessions = [x for x in self.update_sessions if self._alive(f"{us}/{x}", state=True)]
        while len(self.update_sessions) < 2:
            sid = a.create_session(a.create_item(self.libraries[1]))
            if len(self.update_sessions) % 2 == 0:  # a signed OVF package: preview AVAILABLE with warnings
                k.push_all(a, sid, k.build_package("vm", signer=k.self_signed()).files)
            else:  # one file uploaded, one waiting for its bytes
                a.upload(sid, "up.bin", b"uploaded\n")
                a.add_file(sid, "waiting.bin", b"never sent\n")
            self.update_sessions.append(sid)
        ds = "/api/content/library/item/download-session"
        self.download_sessions = [x for x in self.download_sessions if self._alive(f"{ds}/{x}", state=True)]
        while len(self.download_sessions) < 2:
            r = a.post(ds, json={"library_item_id": self.items[0]})
            assert r.status_code == 201, r.text
            dsid = str(r.json())
            r = a.post(f"{ds}/{dsid}/file?action=prepare", json={"file_name": "a.txt"})
            assert r.status_code == 200, r.text
            self.download_sessions.append(dsid)
        # PULL sources: a file of this server (a pull that succeeds), a missing one, and a closed port.
        prepared = a.get(f"{ds}/{self.download_sessions[0]}/file", params={"file_name": "a.txt"})
        assert prepared.status_code == 200, prepared.text
        self.uris = [
            prepared.json()["download_endpoint"]["uri"],
            f"{a.base}/cls/download/none/x",
            "http://127.0.0.1:9/x",
        ]
        trust = "/api/content/trusted-certificates"
        self.certificates = [x for x in self.certificates if self._alive(f"{trust}/{x}")]
        if not self.certificates:
            r = a.post(trust, json={"cert_text": self.pem})
            assert r.status_code == 201, r.text
            self.certificates.append(r.json())

    def pool(self, name: str) -> list[str]:
        """Real values for a parameter or body member called `name` (empty: leave it generated)."""
        if name == "library_id":
            return self.libraries
        if name in ("library_item_id", "source_id", "library_item", "source_library_item_id"):
            return self.items + self.items[:1]
        if name == "version":  # the items' content versions (changes/{version}), and versions of updates
            return ["2", "1"]
        if name == "update_session_id":
            return self.update_sessions
        if name == "download_session_id":
            return self.download_sessions
        if name == "certificate":
            return self.certificates
        if name in ("file_name", "name"):
            return self.names
        if name == "client_token":
            return [str(uuid.UUID(int=i)) for i in range(1, 4)]
        if name == "cert_text":
            return [self.pem]
        if name == "uri":
            return self.uris
        return []


def _pick(key: str, generated: Any, pool: list[str], always: bool = False) -> Any:
    """A real value for three generated values out of four (a deterministic choice, so a run replays exactly)."""
    h = zlib.crc32(f"{key}={generated!r}".encode())
    return generated if not pool or (h % 4 == 0 and not always) else pool[h // 4 % len(pool)]


def _seed_members(container: Any, label: str, seeds: Seeds) -> None:
    if isinstance(container, list):
        for member in container:
            _seed_members(member, label, seeds)
    if not isinstance(container, dict):
        return
    for key, value in container.items():
        # A PULL source always points at this server: the fuzzer must not send the server to random hosts.
        container[key] = _pick(f"{label} {key}", value, seeds.pool(key), always=key == "uri")
        _seed_members(container[key], label, seeds)


def seed(case: schemathesis.Case, seeds: Seeds) -> None:
    """Put real ids and names into a generated case: its path and query parameters and its body's members."""
    for container in (case.path_parameters, case.query, case.body):
        _seed_members(container, case.operation.label, seeds)


# -- the run ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Seeds]]:
    # Seeds must not expire in a long (soak) run; expiry has its own tests.
    srv = ServerProcess(tmp_path_factory.mktemp("fuzz") / "data", ["--update-session-timeout", "86400"])
    srv.start()
    yield srv, Seeds(Api(srv.base))
    srv.destroy()


@pytest.fixture()
def counted(request: pytest.FixtureRequest) -> Iterator[list[int]]:
    """Counts the cases of one operation; the total is printed by conftest's terminal summary."""
    cases = [0]
    yield cases
    request.node.user_properties.append(("fuzz_cases", cases[0]))


def _headers(case: schemathesis.Case, seeds: Seeds) -> dict[str, str]:
    if case.operation.path in ("/api/session", service_path(SESSION)):
        if case.method.upper() == "POST":
            return {"Authorization": "Basic " + base64.b64encode(f"{ADMIN_USER}:{ADMIN_PASSWORD}".encode()).decode()}
        if case.method.upper() == "DELETE":  # log out a throwaway session, never ours
            return {"vmware-api-session-id": Api(seeds.api.base).session_id or ""}
    return {"vmware-api-session-id": seeds.api.session_id or ""}


@functools.cache
def _error_validator(error_type: str, legacy: bool = False) -> jsonschema.Draft4Validator:
    """The spec's schema of this error (Swagger 2.0 schemas are JSON Schema draft 4); on /rest, of its envelope."""
    if legacy:
        name = f"vapi.std.errors.{error_type.lower()}_error"
        ref = f"#/definitions/{name if name in DEFINITIONS else 'vapi.std.errors.error_error'}"
    else:
        name = f"VapiStdErrors{_error_name(error_type)}"
        ref = f"#/definitions/{name if name in DEFINITIONS else 'VapiStdErrorsError'}"  # all have the Error shape
    return jsonschema.Draft4Validator({"$ref": ref, "definitions": DEFINITIONS})


_body_validators: dict[str, jsonschema.Draft4Validator] = {}


def _valid_per_spec(case: schemathesis.Case) -> bool:
    """Whether the request as sent is valid by the Swagger's own parameter definitions."""
    for p in case.operation.definition.raw.get("parameters", []):
        if p["in"] == "query" and p.get("required") and p["name"] not in (case.query or {}):
            return False
        if p["in"] == "body":
            if isinstance(case.body, NotSet):
                # The /api paths never mark a body required (operations.json has the vAPI parameter's `optional`);
                # the /rest ones do, for the object that wraps the inputs.
                if p.get("required") or any(
                    q["location"]["in"] == "body" and not q["optional"] for q in _contract(case)["params"]
                ):
                    return False
                continue
            label = case.operation.label
            if label not in _body_validators:
                _body_validators[label] = jsonschema.Draft4Validator({**p["schema"], "definitions": DEFINITIONS})
            if case.media_type != "application/json" or not _body_validators[label].is_valid(case.body):
                return False
    return True


def _check(case: schemathesis.Case, r: schemathesis.Response) -> None:
    """The status policy of the module docstring (the schema checks are schemathesis's)."""
    method, path = case.operation.method.upper(), case.operation.path
    documented = case.operation.definition.raw["responses"]
    text = r.content.decode(errors="replace")
    what = f"{case.method} {r.request.url} {r.request.body!r:.1000} -> {r.status_code} {text[:2000]}"
    legacy = path.startswith("/rest/")
    if r.status_code < 400:
        assert case.method.upper() == method and str(r.status_code) in documented, what
        assert r.status_code != 204 or not r.content, what
        return
    # Every error is a vendor error (REFERENCE.md §4.1) with its type's status, valid against the spec's schema.
    assert r.headers.get("content-type", [""])[0].startswith("application/json"), what
    body = json.loads(text)
    error = body.get("value") if legacy and isinstance(body, dict) else body
    error_type = error.get("error_type") if isinstance(error, dict) else None
    assert error_type in ERROR_STATUS, what
    assert (LEGACY_STATUS if legacy else ERROR_STATUS)[error_type] == r.status_code, what
    assert r.status_code < 500 or error_type == "RESOURCE_BUSY", what
    if legacy:
        assert body["type"] == f"com.vmware.vapi.std.errors.{error_type.lower()}", what
    problems = [e.message for e in _error_validator(error_type, legacy).iter_errors(body)]
    assert not problems, f"{what}: {problems}"
    if case.method.upper() != method:
        # The coverage phase also sends methods the spec does not define for the path. Where the server has no
        # operation for that method, that is OPERATION_NOT_FOUND; where it has (POST /item next to
        # GET /item?library_id), the request was that operation's, held to the checks above only.
        if legacy:
            base = path.partition("?")[0]
            if not any(form.split(" ", 1) == [case.method.upper(), base] for form in SERVED_REST):
                assert error_type == "OPERATION_NOT_FOUND", what
        elif (case.method.upper(), path.partition("?")[0]) not in SERVED_PATHS:
            assert error_type == "OPERATION_NOT_FOUND", what
        return
    declared = _declared(case)
    if str(r.status_code) not in documented and _valid_per_spec(case):
        declared.discard("INVALID_ARGUMENT")  # only the codec's answer to input the spec itself calls invalid
        if _replacement(case) == ("POST", "/api/content/trusted-certificates"):
            # The spec's cert_text is any string; one that is not a PEM certificate is bad input, and bad input
            # gets INVALID_ARGUMENT (DESIGN.md "Errors are values"), not the 500 ERROR the contract declares.
            declared.add("INVALID_ARGUMENT")
    assert error_type in declared, what


DESTRUCTIVE = re.compile(r"action=(complete|cancel|fail)$")


@schema.parametrize()
@hypothesis.settings(suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])  # `counted` is meant so
# The bound in the test id; it also gives every operation's item a node id of its own (`test_fuzz[<op>][50]`):
# under pytest 9 schemathesis gives them all the bare `test_fuzz`, and xdist's loadgroup would run only one.
@pytest.mark.parametrize("examples", [EXAMPLES])
def test_fuzz(
    case: schemathesis.Case, fuzz_server: tuple[ServerProcess, Seeds], counted: list[int], examples: int
) -> None:
    assert schema.config.generation.max_examples == examples
    srv, seeds = fuzz_server
    counted[0] += 1
    seed(case, seeds)
    r = case.call(base_url=srv.base, session=seeds.api.http, headers=_headers(case, seeds), timeout=60)
    _check(case, r)
    checks = [response_schema_conformance, content_type_conformance]
    if not r.content:
        # A void operation answers with no body (204 on /api, 200 on /rest) and so no Content-Type, which the
        # Swagger's global `produces` does not foresee; REFERENCE.md §1 item 4 and §5 ("absent or JSON").
        checks.remove(content_type_conformance)
    case.validate_response(r, checks=checks)
    if r.status_code < 300 and (case.method.upper() == "DELETE" or DESTRUCTIVE.search(case.operation.path)):
        seeds.refresh()


def test_every_served_operation_is_in_the_spec() -> None:
    """A served operation the 8.0.2 files lack would go unfuzzed: say so (add it to the spec's coverage)."""
    assert not UNSPECIFIED, UNSPECIFIED
