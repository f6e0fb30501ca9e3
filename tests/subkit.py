"""Helpers of the subscriber tests: subscribing a library of one server to a publisher (another contentlib, or a
static VCSP tree), and waiting for its syncs, which run in the background (`sync` returns at once; a library's
`last_sync_time` says when one ended well, and the server log when one failed)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from conftest import Api, ServerProcess

SUB = "/api/content/subscribed-library"
SUB_ITEM = "/api/content/library/subscribed-item"
LL = "/api/content/local-library"
ITEM = "/api/content/library/item"
BACKING = [{"type": "OTHER", "storage_uri": "file:///tmp/contentlib-subscribed"}]


def subscription(
    url: str,
    on_demand: bool = False,
    auth: tuple[str, str] | None = None,
    thumbprint: str | None = None,
    automatic: bool = False,
) -> dict[str, Any]:
    info: dict[str, Any] = {
        "subscription_url": url,
        "authentication_method": "BASIC" if auth else "NONE",
        "on_demand": on_demand,
        "automatic_sync_enabled": automatic,
    }
    if auth:
        info["user_name"], info["password"] = auth
    if thumbprint:
        info["ssl_thumbprint"] = thumbprint
    return info


def subscribe_raw(api: Api, url: str, name: str | None = None, **kw: Any) -> Any:
    spec = {
        "name": name or f"sub-{uuid.uuid4().hex[:8]}",
        "type": "SUBSCRIBED",
        "storage_backings": BACKING,
        "subscription_info": subscription(url, **kw),
    }
    return api.post(SUB, json=spec)


def subscribe(api: Api, url: str, name: str | None = None, **kw: Any) -> str:
    r = subscribe_raw(api, url, name, **kw)
    assert r.status_code == 201, r.text
    return str(r.json())


def library(api: Api, library_id: str) -> dict[str, Any]:
    r = api.get(f"{SUB}/{library_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_for(check: Any, timeout: float = 60.0, what: str = "condition", srv: ServerProcess | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{srv.log()[-3000:]}" if srv else ""))


def sync_failures(srv: ServerProcess, library_id: str) -> list[str]:
    return [line for line in srv.log().splitlines() if f"the sync of library {library_id} failed" in line]


def wait_synced(api: Api, srv: ServerProcess, library_id: str, after: str | None = None) -> dict[str, Any]:
    """Until a sync of the library ended well after `after` (a last_sync_time); its model. A sync that fails
    meanwhile fails the wait, with what the server logged."""
    failed_before = len(sync_failures(srv, library_id))

    def done() -> dict[str, Any] | None:
        failures = sync_failures(srv, library_id)
        assert len(failures) == failed_before, failures[-1]
        model = library(api, library_id)
        last = model.get("last_sync_time")
        return model if last is not None and (after is None or last > after) else None

    return dict(wait_for(done, what=f"a sync of {library_id}", srv=srv))


def wait_failed(srv: ServerProcess, library_id: str, before: int = 0) -> str:
    """Until the server has logged more than `before` failed syncs of the library; the last one."""
    return str(
        wait_for(
            lambda: len(sync_failures(srv, library_id)) > before and sync_failures(srv, library_id)[-1],
            what=f"a failed sync of {library_id}",
            srv=srv,
        )
    )


def sync(api: Api, srv: ServerProcess, library_id: str) -> dict[str, Any]:
    """One sync, asked for and waited for."""
    before = library(api, library_id).get("last_sync_time")
    time.sleep(0.002)  # last_sync_time has milliseconds: the next one is later
    r = api.post(f"{SUB}/{library_id}?action=sync")
    assert r.status_code == 204, r.text
    return wait_synced(api, srv, library_id, before)


def items(api: Api, library_id: str) -> dict[str, dict[str, Any]]:
    """The library's items by name (one a sync deletes between the list and its get is left out)."""
    r = api.get(f"{ITEM}?library_id={library_id}")
    assert r.status_code == 200, r.text
    out = {}
    for item_id in r.json():
        got = api.get(f"{ITEM}/{item_id}")
        if got.status_code == 404:
            continue
        assert got.status_code == 200, got.text
        out[got.json()["name"]] = got.json()
    return out


def publish(api: Api, name: str | None = None, password: str | None = None) -> tuple[str, str]:
    """A published local library: its id and publish_url."""
    info: dict[str, Any] = {"published": True, "authentication_method": "BASIC" if password else "NONE"}
    if password:
        info["password"] = password
    lib = api.create_library(name, publish_info=info)
    r = api.get(f"{LL}/{lib}")
    assert r.status_code == 200, r.text
    return lib, str(r.json()["publish_info"]["publish_url"])
