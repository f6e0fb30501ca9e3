"""Publishing a local library and a library item over /api (issue 10 point 3; REFERENCE A.1/A.2
`content.local_library` publish, `content.library.item` publish).

Contract: both answer 204 (the 8.0.2 Swagger); NOT_FOUND for an unknown library or item; NOT_ALLOWED_IN_CURRENT_STATE
for a library that is not published (`publish_info.published` not true), or an item of such a library;
INVALID_ARGUMENT for a subscription that is not valid (there are no subscriptions on this server yet, so every
named one); item publish requires `force_sync_content`. A publish is counted per library and per item (the
counters a subscription feed will report): read from the database here, the one thing the API does not show.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Api, ServerProcess, pg_run
from test_routes import assert_vapi_error

LL = "/api/content/local-library"
ITEM = "/api/content/library/item"
PUBLISHED = {"published": True, "authentication_method": "NONE"}


def published_library(api: Api) -> str:
    return api.create_library(publish_info=PUBLISHED)


def publish_library(api: Api, lib: str, **kw: Any) -> Any:
    return api.post(f"{LL}/{lib}", params={"action": "publish"}, **kw)


def publish_item(api: Api, item: str, body: Any) -> Any:
    return api.post(f"{ITEM}/{item}", params={"action": "publish"}, json=body)


def library_info(api: Api, lib: str) -> dict[str, Any]:
    r = api.get(f"{LL}/{lib}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def publish_versions(srv: ServerProcess, table: str, object_id: str) -> int:
    """The publish counter of a library or item, read from the server's database."""
    sql = f"SELECT publish_version FROM {table} WHERE id="
    if srv.database:
        return int(pg_run(srv.database, sql + "$1", object_id)[0]["publish_version"])
    with sqlite3.connect(srv.data_dir / "contentlib.sqlite3") as db:
        return int(db.execute(sql + "?", (object_id,)).fetchone()[0])


# -- local library publish -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [None, {}, {"subscriptions": None}, {"subscriptions": []}],
    ids=["no-body", "empty", "null-subscriptions", "no-subscriptions"],
)
def test_publishing_a_published_library(api: Api, body: Any) -> None:
    lib = published_library(api)
    before = library_info(api, lib)
    r = publish_library(api, lib, json=body) if body is not None else publish_library(api, lib)
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert library_info(api, lib) == before  # publishing is not a change of the library's metadata


def test_publishing_is_counted_per_library_and_item(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server()
    api = Api(srv.base)
    lib = published_library(api)
    item = api.create_item(lib)
    other = api.create_item(lib)
    assert (publish_versions(srv, "libraries", lib), publish_versions(srv, "items", item)) == (0, 0)
    assert publish_library(api, lib).status_code == 204
    assert publish_library(api, lib).status_code == 204
    assert publish_versions(srv, "libraries", lib) == 2
    assert publish_item(api, item, {"force_sync_content": False}).status_code == 204
    # An item's publish counts for the item and its library (subscribers watch the library's count).
    assert (publish_versions(srv, "items", item), publish_versions(srv, "libraries", lib)) == (1, 3)
    assert publish_versions(srv, "items", other) == 0
    # Refused publishes count nothing.
    assert publish_library(api, lib, json={"subscriptions": [{"subscription": "nope"}]}).status_code == 400
    assert publish_versions(srv, "libraries", lib) == 3
    srv.restart()
    assert publish_versions(srv, "libraries", lib) == 3


@pytest.mark.parametrize("publish_info", [None, {"published": False, "authentication_method": "NONE"}])
def test_publishing_a_library_that_is_not_published_is_not_allowed(api: Api, publish_info: Any) -> None:
    lib = api.create_library(publish_info=publish_info)
    r = publish_library(api, lib)
    assert_vapi_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE", lib, "not published")


def test_a_library_that_stopped_being_published_cannot_be_published(api: Api) -> None:
    lib = published_library(api)
    assert publish_library(api, lib).status_code == 204
    r = api.patch(f"{LL}/{lib}", json={"publish_info": {"published": False}})
    assert r.status_code == 204, r.text
    assert_vapi_error(publish_library(api, lib), 400, "NOT_ALLOWED_IN_CURRENT_STATE", "not published")
    item = api.create_item(lib)
    r = publish_item(api, item, {"force_sync_content": True})
    assert_vapi_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE", item, lib, "not published")


def test_publishing_to_a_subscription_that_does_not_exist_is_invalid_argument(api: Api) -> None:
    lib = published_library(api)
    subscription = str(uuid.uuid4())
    r = publish_library(api, lib, json={"subscriptions": [{"subscription": subscription}]})
    assert_vapi_error(r, 400, "INVALID_ARGUMENT", subscription, lib, "subscription")
    item = api.create_item(lib)
    r = publish_item(api, item, {"force_sync_content": False, "subscriptions": [{"subscription": subscription}]})
    assert_vapi_error(r, 400, "INVALID_ARGUMENT", subscription, "subscription")


@pytest.mark.parametrize(
    "body",
    [{"subscriptions": [{}]}, {"subscriptions": [{"subscription": 5}]}, {"subscriptions": "all"}, [], "x"],
    ids=["no-member", "not-a-string", "not-a-list", "array", "string"],
)
def test_publish_with_a_malformed_body_is_invalid_argument(api: Api, body: Any) -> None:
    lib = published_library(api)
    assert_vapi_error(publish_library(api, lib, json=body), 400, "INVALID_ARGUMENT")
    item = api.create_item(lib)
    item_body = {"force_sync_content": True, **body} if isinstance(body, dict) else body
    assert_vapi_error(publish_item(api, item, item_body), 400, "INVALID_ARGUMENT")


def test_publishing_an_unknown_library_or_item_is_not_found(api: Api) -> None:
    missing = str(uuid.uuid4())
    assert_vapi_error(publish_library(api, missing), 404, "NOT_FOUND", missing)
    assert_vapi_error(publish_item(api, missing, {"force_sync_content": True}), 404, "NOT_FOUND", missing)


# -- item publish --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("force", [True, False])
def test_publishing_an_item_of_a_published_library(api: Api, force: bool) -> None:
    lib = published_library(api)
    item = api.create_item(lib)
    api.put_files(item, {"a.bin": b"a"})
    before = api.get(f"{ITEM}/{item}").json()
    r = publish_item(api, item, {"force_sync_content": force})
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert api.get(f"{ITEM}/{item}").json() == before
    r = publish_item(api, item, {"force_sync_content": force, "subscriptions": []})
    assert r.status_code == 204, r.text


@pytest.mark.parametrize(
    "body",
    [None, {}, {"force_sync_content": None}, {"force_sync_content": "yes"}, {"force_sync_content": 1}],
    ids=["no-body", "empty", "null", "string", "number"],
)
def test_item_publish_needs_force_sync_content(api: Api, body: Any) -> None:
    item = api.create_item(published_library(api))
    r = (
        api.post(f"{ITEM}/{item}?action=publish", data=b"", headers={"Content-Type": "application/json"})
        if body is None
        else publish_item(api, item, body)
    )
    assert_vapi_error(r, 400, "INVALID_ARGUMENT", "force_sync_content")


def test_publishing_an_item_of_an_unpublished_library_is_not_allowed(api: Api) -> None:
    lib = api.create_library()
    item = api.create_item(lib)
    r = publish_item(api, item, {"force_sync_content": False})
    assert_vapi_error(r, 400, "NOT_ALLOWED_IN_CURRENT_STATE", item, lib, "not published")
