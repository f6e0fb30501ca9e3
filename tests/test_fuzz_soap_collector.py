"""Fuzzing the PropertyCollector of /sdk (the harness and the model: soapfuzz.py and the soapfuzz_*.py modules).

- `test_fuzz_retrieve`: RetrieveProperties(Ex) with random PropertyFilterSpecs: objectSet, propSet (all/pathSet,
  valid and invalid paths of every type), selectSet trees of TraversalSpecs and SelectionSpecs (skip, names that
  resolve or not, xsi:type right, missing or wrong), reportMissingObjectsInResults, maxObjects;
- `test_fuzz_large_specs`: the same at the limits: chains and cycles of thousands of named TraversalSpecs, inline
  nesting to the depth limit, thousands of objectSets, selections and specSets, over and under the element limit;
- `test_fuzz_paging`: RetrievePropertiesEx pages followed, cancelled, replayed, with made-up tokens, from another
  session and without one.
"""

from __future__ import annotations

import itertools
from xml.etree import ElementTree as ET

import hypothesis
import pytest
from hypothesis import strategies as st
from soapfuzz import EXAMPLES, SETTINGS, Answer, Fuzzer, cookie, render
from soapfuzz import fuzz_fixture as fuzz_fixture  # the fixtures (imported as themselves: pytest finds them)
from soapfuzz import fuzz_server_fixture as fuzz_server_fixture
from soapfuzz_collector import check_contents, everything, o_retrieve
from soapfuzz_model import DS, PC, ROOT, Faults, all_paths
from soapfuzz_oracles import one_page, run_call
from soapfuzz_strategies import BAD_REFS, KNOWN_REFS, retrieve_args
from soapkit import E, V, ref, selection, traversal


@st.composite
def retrieve_calls(draw: st.DrawFn) -> ET.Element:
    ex = draw(st.booleans())
    method = "RetrievePropertiesEx" if ex else "RetrieveProperties"
    return E(method, ref("_this", PC), *draw(retrieve_args(ex=ex)))


@SETTINGS
@hypothesis.given(call=retrieve_calls(), auth=st.sampled_from(["session"] * 6 + ["none", "dead"]))
@pytest.mark.parametrize("examples", [EXAMPLES])
def test_fuzz_retrieve(fuzz: Fuzzer, call: ET.Element, auth: str, examples: int) -> None:
    fuzz.cases += 1
    run_call(fuzz, call, auth)


def chain(n: int, cyclic: bool, inline: bool) -> list[ET.Element]:
    """n TraversalSpecs, down from a folder to its datacenter and back up (`t0` -> `t1` -> ...): named and selected by
    name, or each inside the one before."""
    if inline:
        inner: ET.Element | None = None
        for i in reversed(range(n)):
            down = i % 2 == 0
            kids_ = [inner] if inner is not None else []
            inner = traversal("Folder" if down else "Datacenter", "childEntity" if down else "parent", *kids_)
        return [inner] if inner is not None else []
    out = []
    for i in range(n):
        down = i % 2 == 0
        nxt = f"t{i + 1}" if i + 1 < n else ("t0" if cyclic else None)
        out.append(
            traversal(
                "Folder" if down else "Datacenter",
                "childEntity" if down else "parent",
                *([selection(nxt)] if nxt else []),
                name=f"t{i}",
            )
        )
    return out


@st.composite
def large_calls(draw: st.DrawFn) -> ET.Element:
    shape = draw(st.sampled_from(["chain", "chain", "inline", "objects", "selections", "specs", "paths"]))
    props = [E("propSet", E("type", text="ManagedEntity"), E("pathSet", text="name"))]
    specs: list[ET.Element]
    if shape in ("chain", "inline"):
        n = draw(st.integers(1, 60) if shape == "inline" else st.integers(1, 3500))
        skip = E("skip", text=draw(st.sampled_from(["true", "false"])))
        selects_ = chain(n, draw(st.booleans()), shape == "inline")
        specs = [E("specSet", *props, E("objectSet", ref("obj", ROOT), skip, *selects_))]
    elif shape == "objects":
        n = draw(st.integers(1, 8000))
        objs = draw(st.lists(st.sampled_from(KNOWN_REFS + BAD_REFS[:3]), min_size=1, max_size=5))
        skips = draw(st.lists(st.sampled_from(["true", "false"]), min_size=1, max_size=2))
        report = E("reportMissingObjectsInResults", text="true")
        sets = [
            E("objectSet", ref("obj", objs[i % len(objs)]), E("skip", text=skips[i % len(skips)])) for i in range(n)
        ]
        specs = [
            E("specSet", *props, E("propSet", E("type", text="ManagedObject"), E("all", text="true")), *sets, report)
        ]
    elif shape == "selections":
        n = draw(st.integers(1, 12_000))
        name = draw(st.sampled_from(["s0", "s1"]))
        named = traversal("Folder", "childEntity", selection("s0"), name="s0")
        specs = [E("specSet", *props, E("objectSet", ref("obj", ROOT), named, *[selection(name) for _ in range(n)]))]
    elif shape == "specs":
        n = draw(st.integers(1, 5000))
        obj = draw(st.sampled_from(KNOWN_REFS))
        one = E(
            "specSet",
            E("propSet", E("type", text="ManagedObject"), E("all", text="true")),
            E("objectSet", ref("obj", obj)),
        )
        specs = [one] * n
    else:
        n = draw(st.integers(1, 15_000))
        paths = [E("pathSet", text=p) for p in itertools.islice(itertools.cycle(all_paths("Datastore")), n)]
        specs = [E("specSet", E("propSet", E("type", text="Datastore"), *paths), E("objectSet", ref("obj", DS)))]
    ex = draw(st.booleans())
    options = [E("options", E("maxObjects", text=str(draw(st.integers(1, 5)))))] if ex else []
    return E("RetrievePropertiesEx" if ex else "RetrieveProperties", ref("_this", PC), *specs, *options)


@SETTINGS
@hypothesis.given(call=large_calls())
@pytest.mark.parametrize("examples", [EXAMPLES])
def test_fuzz_large_specs(fuzz: Fuzzer, call: ET.Element, examples: int) -> None:
    fuzz.cases += 1
    run_call(fuzz, call, "session")


PAGING = st.sampled_from(["continue"] * 5 + ["bogus", "replay", "other", "anonymous", "cancel", "cancel-bogus"])


@SETTINGS
@hypothesis.given(limit=st.integers(1, 11), actions=st.lists(PAGING, max_size=14))
@pytest.mark.parametrize("examples", [EXAMPLES])
def test_fuzz_paging(fuzz: Fuzzer, limit: int, actions: list[str], examples: int) -> None:
    """RetrievePropertiesEx in pages of `limit`: each token gives the next page once, in its session only; a made-up,
    used or cancelled token is InvalidProperty; all pages together are what one RetrieveProperties returns."""
    fuzz.cases += 1
    call = E("RetrievePropertiesEx", ref("_this", PC), everything(), E("options", E("maxObjects", text=str(limit))))
    wanted = o_retrieve(call, True, Faults())
    main = cookie(fuzz.sid)

    def page(a: Answer) -> tuple[list[ET.Element], str | None]:
        assert a.fault is None, f"{a.fault}: {a.message}"
        return one_page(a, limit)

    def step(method: str, token: str, sent: str | None) -> Answer:
        return fuzz.send(render(E(method, ref("_this", PC), E("token", text=token))), sent, answer=method)

    objects, token = page(fuzz.send(render(call), main, answer="RetrievePropertiesEx"))
    used: list[str] = []
    cancelled = False
    for action in actions:
        if token is None:
            break
        if action == "continue":
            more, new = page(step("ContinueRetrievePropertiesEx", token, main))
            used.append(token)
            objects, token = objects + more, new
        elif action == "cancel":
            a = step("CancelRetrievePropertiesEx", token, main)
            assert a.fault is None and not a.returnvals, a.fault
            used.append(token)
            token, cancelled = None, True
        else:
            sent = {"other": cookie(fuzz.other_sid), "anonymous": None}.get(action, main)
            name = {"replay": used[0] if used else "0" * 32, "bogus": "0" * 32, "cancel-bogus": "f" * 32}.get(action)
            method = "CancelRetrievePropertiesEx" if action == "cancel-bogus" else "ContinueRetrievePropertiesEx"
            a = step(method, name or token, sent)
            assert a.fault == ("NotAuthenticated" if action == "anonymous" else "InvalidProperty"), (action, a.fault)
    while token is not None and not cancelled:
        more, token = page(step("ContinueRetrievePropertiesEx", token, main))
        objects += more
    if cancelled:
        got = [(o.get("type") or "", o.text or "") for oc in objects for o in oc.findall(f"{V}obj")]
        assert len(got) == len(set(got)) and set(got) <= set(wanted), got
        assert step("ContinueRetrievePropertiesEx", used[-1], main).fault == "InvalidProperty"
    else:
        check_contents(objects, wanted, True, fuzz.sid)
