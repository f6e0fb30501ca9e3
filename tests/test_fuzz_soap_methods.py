"""Fuzzing every method /sdk dispatches (the harness and the model: soapfuzz.py and the soapfuzz_*.py modules).

- `test_fuzz_calls`: every dispatched method and unknown ones, with valid and mutated arguments (missing,
  duplicated, unicode, huge, NUL and control characters, lone surrogates, whitespace), `_this` right, of the wrong
  type, of a base type, unknown, without a type or missing, and junk elements; logged in (the `vmware_soap_session`
  cookie, quoted or not) or not (no cookie, an unknown or logged-out session, the /api header instead);
- `test_every_dispatched_method_is_modeled`: every method of the server's dispatch table has an argument model and an
  oracle here.
"""

from __future__ import annotations

from xml.etree import ElementTree as ET

import hypothesis
import pytest
from soapfuzz import AUTH, EXAMPLES, SETTINGS, Fuzzer
from soapfuzz import fuzz_fixture as fuzz_fixture  # the fixtures (imported as themselves: pytest finds them)
from soapfuzz import fuzz_server_fixture as fuzz_server_fixture
from soapfuzz_model import SERVED
from soapfuzz_oracles import ORACLES, run_call
from soapfuzz_strategies import ARGS, calls


@SETTINGS
@hypothesis.given(call=calls(), auth=AUTH)
@pytest.mark.parametrize("examples", [EXAMPLES])
def test_fuzz_calls(fuzz: Fuzzer, call: ET.Element, auth: str, examples: int) -> None:
    fuzz.cases += 1
    run_call(fuzz, call, auth)


def test_every_dispatched_method_is_modeled() -> None:
    """A method the server dispatches without an argument model and an oracle here would go unfuzzed."""
    assert set(SERVED) == set(ARGS) == set(ORACLES), set(SERVED) ^ set(ARGS) | set(SERVED) ^ set(ORACLES)
