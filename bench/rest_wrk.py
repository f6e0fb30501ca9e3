"""The legacy `/rest` content API as contentlib and vcsim 0.24.2 both serve it, and the wrk Lua scripts that drive
it (section 9): the same Python requests and the same scripts for either server, one wrk run measured against one
server's process tree.

Scripts: the update-session GET (static request), create -> GET -> complete cycles (a state machine per thread,
one connection each, that reads the new session's id from the create's answer, checks that the GET shows it ACTIVE,
and prints the cycles and failed steps it counted from done()), and item creates with a unique name per request
(the thread's number and a counter).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.api_rate import WrkResult, run_wrk
from bench.common import BenchError, Meter
from bench.server import SESSION_HEADER

LOGIN = "/rest/com/vmware/cis/session"
LOCAL_LIBRARY = "/rest/com/vmware/content/local-library"
ITEM = "/rest/com/vmware/content/library/item"
UPDATE_SESSION = "/rest/com/vmware/content/library/item/update-session"


@dataclass(frozen=True)
class Test:
    key: str
    label: str
    kind: str  # get | cycle | create
    threads: int
    conns: int

    @property
    def wrk(self) -> str:
        return f"-t{self.threads} -c{self.conns}"


TESTS = (
    Test("get8", "GET update session", "get", 2, 8),
    Test("get50", "GET update session", "get", 1, 50),
    Test("cycle", "create -> GET -> complete cycle", "cycle", 1, 1),
    Test("create1", "create library item", "create", 1, 1),
    Test("create8", "create library item", "create", 2, 8),
)
BY_KEY = {t.key: t for t in TESTS}


# --------------------------------------------------------------------------------------------------------
# the legacy /rest API, the same requests for both servers


class Rest:
    def __init__(self, base: str, user: str, password: str) -> None:
        self.base = base
        self.http = requests.Session()
        r = self.http.post(base + LOGIN, auth=(user, password), headers={"vmware-use-header-authn": "true"}, timeout=30)
        if r.status_code != 200:
            raise BenchError(f"POST {LOGIN} -> {r.status_code}: {r.text[:300]}")
        self.session_id = str(r.json()["value"])
        self.http.headers.update({SESSION_HEADER: self.session_id, "Accept": "application/json"})

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = self.http.request(method, self.base + path, json=body, timeout=120)
        if r.status_code != 200:
            raise BenchError(f"{method} {path} -> {r.status_code} (expected 200): {r.text[:500]}")
        return r.json().get("value") if r.content else None

    def create_library(self, datastore_id: str) -> str:
        backing = {"type": "DATASTORE", "datastore_id": datastore_id}
        spec = {"name": f"peer-{uuid.uuid4().hex[:8]}", "type": "LOCAL", "storage_backings": [backing]}
        return str(self.call("POST", LOCAL_LIBRARY, {"create_spec": spec}))

    def create_item(self, library_id: str) -> str:
        spec = {"library_id": library_id, "name": f"item-{uuid.uuid4().hex[:12]}", "type": "iso"}
        return str(self.call("POST", ITEM, {"create_spec": spec}))

    def create_session(self, item_id: str) -> str:
        return str(self.call("POST", UPDATE_SESSION, {"create_spec": {"library_item_id": item_id}}))

    def get_session(self, sid: str) -> dict[str, Any]:
        return dict(self.call("GET", f"{UPDATE_SESSION}/id:{sid}"))

    def get_item(self, item_id: str) -> dict[str, Any]:
        return dict(self.call("GET", f"{ITEM}/id:{item_id}"))

    def complete(self, sid: str) -> None:
        self.call("POST", f"{UPDATE_SESSION}/id:{sid}?~action=complete")


# --------------------------------------------------------------------------------------------------------
# the wrk scripts

_HEADERS = (
    'local hdr = {{["{header}"] = "{sid}", ["Accept"] = "application/json", ["Content-Type"] = "application/json"}}\n'
)

GET_LUA = """wrk.method = "GET"
wrk.path = "{path}"
wrk.headers["{header}"] = "{sid}"
wrk.headers["Accept"] = "application/json"
"""

# One connection per thread (-c = -t): the thread's globals are its connection's state.
CYCLE_LUA = """local us = "{us}"
local create_body = '{{"create_spec":{{"library_item_id":"{item}"}}}}'
local threads = {{}}
step, sid, cycles, errors, last = 0, "", 0, 0, ""
function setup(thread) table.insert(threads, thread) end
function request()
  if step == 1 then return wrk.format("GET", us .. "/id:" .. sid, hdr) end
  if step == 2 then return wrk.format("POST", us .. "/id:" .. sid .. "?~action=complete", hdr, "") end
  return wrk.format("POST", us, hdr, create_body)
end
function response(status, headers, body)
  if status ~= 200 then
    errors = errors + 1
    last = "step " .. step .. ": " .. status .. " " .. string.sub(body, 1, 300)
    if step == 1 then step = 2 else step = 0 end
    return
  end
  if step == 0 then
    local id = string.match(body, '"value"%s*:%s*"([^"]+)"')
    if id then sid = id; step = 1 else errors = errors + 1; last = "create: no id in " .. string.sub(body, 1, 300) end
  elseif step == 1 then
    if not string.find(body, '"state"%s*:%s*"ACTIVE"') then
      errors = errors + 1; last = "GET: not ACTIVE: " .. string.sub(body, 1, 300)
    end
    step = 2
  else
    cycles = cycles + 1; step = 0
  end
end
function done(summary, latency, requests)
  local c, e, l = 0, 0, ""
  for _, t in ipairs(threads) do
    c = c + t:get("cycles"); e = e + t:get("errors")
    if t:get("last") ~= "" then l = t:get("last") end
  end
  io.write(string.format("cycles: %d\\ncycle errors: %d\\n", c, e))
  if l ~= "" then io.write("last cycle error: " .. l .. "\\n") end
end
"""

CREATE_LUA = """counter, n, tid = 0, 0, 0
function setup(thread) counter = counter + 1; thread:set("tid", counter) end
function request()
  n = n + 1
  local body = string.format('{{"create_spec":{{"library_id":"{library}","name":"{tag}-%d-%d","type":"iso"}}}}', tid, n)
  return wrk.format("POST", "{path}", hdr, body)
end
"""


def write_script(path: Path, kind: str, session_id: str, **values: str) -> Path:
    if kind == "get":
        text = GET_LUA.format(header=SESSION_HEADER, sid=session_id, path=f"{UPDATE_SESSION}/id:{values['sid']}")
    else:
        body = (CYCLE_LUA if kind == "cycle" else CREATE_LUA).format(us=UPDATE_SESSION, path=ITEM, **values)
        text = _HEADERS.format(header=SESSION_HEADER, sid=session_id) + body
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------------------
# one server, one run


@dataclass
class Target:
    name: str
    base: str
    pid: int
    rest: Rest
    datastore_id: str
    library: str = ""  # where the items of the GET and cycle runs go

    def prepare(self, test: Test, script: Path, library: str | None = None) -> Path:
        """What the test needs, made fresh (the same requests for both servers), and its script."""
        sid = self.rest.session_id
        if test.kind == "get":
            us = self.rest.create_session(self.rest.create_item(library or self.library))
            if self.rest.get_session(us).get("state") != "ACTIVE":
                raise BenchError(f"{self.name}: the new update session {us} is not ACTIVE")
            return write_script(script, "get", sid, sid=us)
        if test.kind == "cycle":
            if test.threads != test.conns:
                raise BenchError("the cycle script keeps one state per thread: it needs -c equal to -t")
            return write_script(script, "cycle", sid, item=self.rest.create_item(library or self.library))
        lib = library or self.rest.create_library(self.datastore_id)  # a fresh library: both start from none
        return write_script(script, "create", sid, library=lib, tag=uuid.uuid4().hex[:8])


@dataclass
class RunResult:
    server: str
    test: str
    wrk: WrkResult
    rate: float  # req/s, cycles/s for the cycle
    cpu: float  # server CPU-s (the process tree)
    server_cores: float
    other_cores: float
    errors: str

    @property
    def cpu_per_1000(self) -> float:
        return self.cpu / max(self.wrk.requests, 1) * 1000


def _count(out: str, label: str) -> int | None:
    for line in out.splitlines():
        if line.startswith(label + ":"):
            return int(line.split(":", 1)[1])
    return None


def measure(wrk: str, target: Target, test: Test, script: Path, secs: int) -> RunResult:
    m = Meter(target.pid)
    r = run_wrk(wrk, target.base + "/", target.rest.session_id, secs, test.conns, script, test.threads)
    m.stop()
    rate, errors = r.rps, [r.errors] if r.errors else []
    if test.kind == "cycle":
        cycles, bad = _count(r.output, "cycles"), _count(r.output, "cycle errors")
        if cycles is None or bad is None:
            raise BenchError(f"the cycle script printed no counts: {r.output[-500:]}")
        rate = cycles * r.rps / max(r.requests, 1)
        if bad:
            last = next((ln for ln in r.output.splitlines() if ln.startswith("last cycle error:")), "")
            errors.append(f"{bad} failed cycle steps ({last})")
    return RunResult(target.name, test.key, r, rate, m.server, m.server / m.wall, m.other / m.wall, "; ".join(errors))
