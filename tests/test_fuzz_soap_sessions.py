"""Fuzzing the sessions of /sdk (the harness and the model: soapfuzz.py and the soapfuzz_*.py modules).

- `test_fuzz_sessions`: logins with every kind of credentials (padded, cased, wrong, unicode, huge), then what each
  session can do before and after its Logout: CurrentTime, its currentSession, SessionIsActive about it.
"""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
from conftest import ADMIN_USER
from hypothesis import strategies as st
from soapfuzz import EXAMPLES, SETTINGS, Fuzzer, cookie, render, show
from soapfuzz import fuzz_fixture as fuzz_fixture  # the fixtures (imported as themselves: pytest finds them)
from soapfuzz import fuzz_server_fixture as fuzz_server_fixture
from soapfuzz_model import PC, SI, SM
from soapfuzz_oracles import Ctx, expect_call, judge
from soapfuzz_strategies import login_args
from soapkit import E, V, ref

session_steps = st.lists(
    st.one_of(
        st.tuples(st.just("login"), login_args()),
        st.tuples(
            st.sampled_from(["logout", "time", "current", "active"]),
            st.integers(0, 3),
            st.sampled_from([ADMIN_USER, ADMIN_USER.upper(), f" {ADMIN_USER}", "nobody@vsphere.local"]),
        ),
    ),
    min_size=1,
    max_size=6,
)


@SETTINGS
@hypothesis.given(steps=session_steps, quoted=st.booleans())
@pytest.mark.parametrize("examples", [EXAMPLES])
def test_fuzz_sessions(fuzz: Fuzzer, steps: list[tuple[Any, ...]], quoted: bool, examples: int) -> None:
    """Logins with every kind of credentials, and what the sessions they open can do, before and after they end:
    CurrentTime, their own currentSession, SessionIsActive about them (asked by the main session), Logout."""
    fuzz.cases += 1
    sessions: list[list[Any]] = []  # [id, open]
    for kind, *args in steps:
        if kind == "login":
            call = E("Login", ref("_this", SM), *args[0])
            fuzz.own_user_name(call)
            body = render(call)
            a = fuzz.send(body, answer="Login")
            judge(a, expect_call(Ctx(fuzz, call, False, None, None, {}), len(body)), show(body))
            if a.session:
                sessions.append([a.session, True])
            elif a.fault == "InvalidLogin":
                fuzz.after_login(call, a)
            continue
        if not sessions:
            continue
        i, user = args
        sid, alive = sessions[i % len(sessions)]
        sent = cookie(sid, quoted)
        if kind == "logout":
            a = fuzz.send(render(E("Logout", ref("_this", SM))), sent, answer="Logout")
            assert a.fault == (None if alive else "NotAuthenticated"), (kind, alive, a.fault)
            sessions[i % len(sessions)][1] = False
        elif kind == "time":
            a = fuzz.send(render(E("CurrentTime", ref("_this", SI))), sent, answer="CurrentTime")
            assert a.fault == (None if alive else "NotAuthenticated"), (kind, alive, a.fault)
        elif kind == "current":
            spec = E("specSet", E("propSet", E("type", text="SessionManager"), E("pathSet", text="currentSession")))
            spec.append(E("objectSet", ref("obj", SM)))
            a = fuzz.send(render(E("RetrieveProperties", ref("_this", PC), spec)), sent, answer="RetrieveProperties")
            assert a.fault is None, a.fault
            (oc,) = a.returnvals
            assert oc.findtext(f"{V}propSet/{V}val/{V}key") == (sid if alive else None), (kind, alive)
        else:
            call = E("SessionIsActive", ref("_this", SM), E("sessionID", text=sid), E("userName", text=user))
            a = fuzz.send(render(call), cookie(fuzz.sid), answer="SessionIsActive")
            active = alive and user.strip().lower() == ADMIN_USER.lower()
            assert a.fault is None and [v.text for v in a.returnvals] == [str(active).lower()], (kind, alive, user)
    for sid, alive in sessions:
        if alive:
            fuzz.logout(sid)
