"""One ACTIVE update session per library item, also under concurrent creates.

Contract: REFERENCE.md §2 "one session per item" (create → ResourceBusy "if there is another update session on
the same library item"), §1 item 4 / §3 (ResourceBusy → HTTP 500), issue 2 §4 (enforced by the database: 50
concurrent creates on one item yield exactly one session).
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from conftest import ADMIN_PASSWORD, ADMIN_USER, Api, ServerProcess, assert_error

US = "/api/content/library/item/update-session"
N = 50


def list_ids(api: Api, item_id: str) -> list[str]:
    r = api.get(US, params={"library_item_id": item_id})
    assert r.status_code == 200, r.text
    return [str(x) for x in r.json()]


def login(base: str) -> str:
    with requests.Session() as http:
        http.trust_env = False
        r = http.post(base + "/api/session", auth=(ADMIN_USER, ADMIN_PASSWORD), timeout=60)
    assert r.status_code == 201, r.text
    return str(r.json())


def concurrent_creates(
    base: str, item_id: str, session_ids: list[str], headers: list[dict[str, str]] | None = None
) -> list[requests.Response]:
    """len(session_ids) creates on `item_id`, released together by a barrier, each on its own connection."""
    n = len(session_ids)
    barrier = threading.Barrier(n)

    def one(i: int) -> requests.Response:
        with requests.Session() as http:
            http.trust_env = False
            http.headers["vmware-api-session-id"] = session_ids[i]
            if headers:
                http.headers.update(headers[i])
            # Open the connection before the barrier so that the creates really overlap.
            http.get(base + "/api/session", timeout=60)
            barrier.wait(timeout=60)
            return http.post(base + US, json={"library_item_id": item_id}, timeout=60)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


def test_second_create_is_resource_busy(api: Api) -> None:
    item = api.create_item()
    sid = api.create_session(item)
    r = api.post(US, json={"library_item_id": item})
    assert_error(r, 500, "RESOURCE_BUSY")
    r = api.post(US, json={"library_item_id": item, "warning_behavior": []})
    assert_error(r, 500, "RESOURCE_BUSY")
    r = api.post(US, json={"library_item_id": item}, headers={"Client-Token": str(uuid.uuid4())})
    assert_error(r, 500, "RESOURCE_BUSY")
    assert list_ids(api, item) == [sid]
    assert api.session(sid)["state"] == "ACTIVE"


def test_busy_is_per_item(api: Api) -> None:
    lib = api.create_library()
    item1, item2 = api.create_item(lib), api.create_item(lib)
    api.create_session(item1)
    api.create_session(item2)


@pytest.mark.parametrize("how", ["complete", "cancel", "fail"])
def test_new_session_after_the_active_one_ends(api: Api, how: str) -> None:
    item = api.create_item()
    first = api.create_session(item)
    assert_error(api.post(US, json={"library_item_id": item}), 500, "RESOURCE_BUSY")
    body: dict[str, Any] | None = {"client_error_message": "x"} if how == "fail" else None
    r = api.post(f"{US}/{first}?action={how}", json=body) if body else api.post(f"{US}/{first}?action={how}")
    assert r.status_code == 204, r.text
    second = api.create_session(item)
    assert second != first
    assert api.session(second)["state"] == "ACTIVE"
    assert sorted(list_ids(api, item)) == sorted([first, second])
    assert_error(api.post(US, json={"library_item_id": item}), 500, "RESOURCE_BUSY")


@pytest.mark.parametrize("logins", ["same-login", "separate-logins"])
def test_concurrent_creates_yield_exactly_one_session(api: Api, server: ServerProcess, logins: str) -> None:
    item = api.create_item()
    assert api.session_id is not None
    sids = [api.session_id] * N if logins == "same-login" else [login(server.base) for _ in range(N)]
    responses = concurrent_creates(server.base, item, sids)
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 500: N - 1}, statuses
    winner = next(r.json() for r in responses if r.status_code == 201)
    for r in responses:
        if r.status_code == 500:
            assert_error(r, 500, "RESOURCE_BUSY")
    assert list_ids(api, item) == [winner]
    active = [s for s in list_ids(api, item) if api.session(s)["state"] == "ACTIVE"]
    assert active == [winner]
    # The winner is a normal, usable session.
    api.upload(winner, "f.bin", b"concurrency")
    api.complete(winner)
    assert api.item_files(item)["f.bin"]["size"] == len(b"concurrency")
    api.create_session(item)


def test_concurrent_creates_with_one_client_token_return_one_id(api: Api, server: ServerProcess) -> None:
    # Retries of one creation request (same Client-Token) must all get the same id, never RESOURCE_BUSY.
    item = api.create_item()
    assert api.session_id is not None
    token = str(uuid.uuid4())
    n = 20
    responses = concurrent_creates(server.base, item, [api.session_id] * n, [{"Client-Token": token}] * n)
    assert [r.status_code for r in responses] == [201] * n, [r.text for r in responses]
    ids = {r.json() for r in responses}
    assert len(ids) == 1
    assert list_ids(api, item) == list(ids)


def test_concurrent_creates_on_different_items_all_succeed(api: Api, server: ServerProcess) -> None:
    lib = api.create_library()
    items = [api.create_item(lib) for _ in range(10)]
    assert api.session_id is not None
    barrier = threading.Barrier(len(items))

    def one(item: str) -> requests.Response:
        with requests.Session() as http:
            http.trust_env = False
            http.headers["vmware-api-session-id"] = str(api.session_id)
            barrier.wait(timeout=60)
            return http.post(server.base + US, json={"library_item_id": item}, timeout=60)

    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        responses = list(pool.map(one, items))
    assert [r.status_code for r in responses] == [201] * len(items), [r.text for r in responses]
    for item, r in zip(items, responses, strict=True):
        assert list_ids(api, item) == [r.json()]
