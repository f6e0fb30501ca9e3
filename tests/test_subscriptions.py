"""The subscriptions of a published library (issue 12 point 2, `library.subscriptions`): a LOCAL subscription makes
(CREATE_NEW) or adopts (USE_EXISTING) a subscribed library of the same server, and `publish` pushes changes to it.

Contract (operations.json): create (201; ALREADY_EXISTS for a second subscription of one subscribed library,
INVALID_ARGUMENT for a bad spec, INVALID_ELEMENT_TYPE on a subscribed library, NOT_ALLOWED_IN_CURRENT_STATE on an
unpublished one, RESOURCE_INACCESSIBLE for a vCenter that cannot be contacted), list (Summary), get (Info;
INVALID_ARGUMENT "if the subscription is not valid"), update (placement replaced whole), delete ("the subscribed
library associated with the subscription will not be deleted"); `local_library.publish` / `item.publish` with
`subscriptions` (INVALID_ARGUMENT for one the library does not have).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import subkit as sk
from conftest import Api, ServerProcess, assert_error

PASSWORD = "Pub-l1sh!"


def subs(lib: str) -> str:
    return f"/api/content/library/{lib}/subscriptions"


def new_spec(name: str = "pushed", on_demand: bool = False) -> dict[str, Any]:
    return {
        "subscribed_library": {
            "target": "CREATE_NEW",
            "location": "LOCAL",
            "new_subscribed_library": {
                "name": name,
                "storage_backings": sk.BACKING,
                "automatic_sync_enabled": False,
                "on_demand": on_demand,
            },
            "placement": {"folder": "group-v1", "network": "network-1"},
        }
    }


def create(api: Api, lib: str, spec: dict[str, Any]) -> str:
    r = api.post(subs(lib), json=spec)
    assert r.status_code == 201, r.text
    return str(r.json())


@pytest.fixture(params=["http", "https"])
def srv(request: pytest.FixtureRequest, make_server: Callable[..., ServerProcess]) -> ServerProcess:
    return make_server(http=request.param == "http")


def test_a_local_subscription_makes_a_subscribed_library_that_publish_keeps_up_to_date(srv: ServerProcess) -> None:
    """Over https too: the new library pins the server's own certificate; with BASIC it reads the feed with a
    credential of its own (the publish password is kept only hashed)."""
    api = Api(srv.base)
    lib, _ = sk.publish(api, password=PASSWORD)
    first = api.create_item(lib, "first")
    api.put_files(first, {"first.txt": b"one"})
    sid = create(api, lib, new_spec())
    [summary] = api.get(subs(lib)).json()
    assert summary["subscription"] == sid and summary["subscribed_library_name"] == "pushed"
    target = summary["subscribed_library"]
    info = api.get(f"{subs(lib)}/{sid}").json()
    assert info == {
        "subscribed_library": target,
        "subscribed_library_name": "pushed",
        "subscribed_library_location": "LOCAL",
        "subscribed_library_placement": {"folder": "group-v1", "network": "network-1"},
    }
    sk.wait_synced(api, srv, target)
    model = sk.library(api, target)
    assert model["subscription_info"]["subscription_url"].endswith(f"/cls/vcsp/lib/{lib}/lib.json")
    assert "password" not in model["subscription_info"]
    assert api.download(sk.items(api, target)["first"]["id"], "first.txt") == b"one"

    second = api.create_item(lib, "second")
    api.put_files(second, {"second.txt": b"two"})
    before = model["last_sync_time"]
    r = api.post(f"{sk.LL}/{lib}", params={"action": "publish"}, json={"subscriptions": [{"subscription": sid}]})
    assert r.status_code == 204, r.text
    sk.wait_synced(api, srv, target, before)
    got = sk.items(api, target)
    assert set(got) == {"first", "second"} and api.download(got["second"]["id"], "second.txt") == b"two"

    r = api.patch(f"{subs(lib)}/{sid}", json={"subscribed_library_placement": {"host": "host-9"}})
    assert r.status_code == 204, r.text
    assert api.get(f"{subs(lib)}/{sid}").json()["subscribed_library_placement"] == {"host": "host-9"}
    assert api.delete(f"{subs(lib)}/{sid}").status_code == 204
    assert api.get(subs(lib)).json() == []
    assert sk.library(api, target)["id"] == target, "the subscribed library stays"


def test_item_publish_pushes_the_item_with_its_content(server: ServerProcess) -> None:
    api = Api(server.base)
    lib, _ = sk.publish(api)
    item = api.create_item(lib, "iso")
    api.put_files(item, {"a.iso": b"x" * 5000})
    sid = create(api, lib, new_spec("lazy", on_demand=True))
    target = api.get(f"{subs(lib)}/{sid}").json()["subscribed_library"]
    sk.wait_synced(api, server, target)
    copy = sk.items(api, target)["iso"]
    assert copy["cached"] is False
    r = api.post(f"{sk.ITEM}/{item}", params={"action": "publish"}, json={"force_sync_content": True})
    assert r.status_code == 204, r.text
    sk.wait_for(lambda: api.get(f"{sk.ITEM}/{copy['id']}").json()["cached"], what="the pushed content", srv=server)
    assert api.download(copy["id"], "a.iso") == b"x" * 5000


def test_use_existing_adopts_a_library_that_subscribes_to_this_one(server: ServerProcess) -> None:
    api = Api(server.base)
    lib, url = sk.publish(api)
    _, other_url = sk.publish(api)
    mine = sk.subscribe(api, url)
    foreign = sk.subscribe(api, other_url)

    def existing(target: str) -> dict[str, Any]:
        return {"subscribed_library": {"target": "USE_EXISTING", "location": "LOCAL", "subscribed_library": target}}

    sid = create(api, lib, existing(mine))
    assert api.get(f"{subs(lib)}/{sid}").json()["subscribed_library"] == mine
    assert_error(api.post(subs(lib), json=existing(mine)), 400, "ALREADY_EXISTS", mine)
    assert_error(api.post(subs(lib), json=existing(foreign)), 400, "INVALID_ARGUMENT", "does not subscribe")
    assert_error(api.post(subs(lib), json=existing(lib)), 400, "INVALID_ELEMENT_TYPE", "not a subscribed library")
    # Deleting the subscribed library ends its subscription.
    assert api.delete(f"{sk.SUB}/{mine}").status_code == 204
    assert api.get(subs(lib)).json() == []


def test_subscriptions_errors(server: ServerProcess) -> None:
    api = Api(server.base)
    lib, url = sk.publish(api)
    unpublished = api.create_library()
    subscribed = sk.subscribe(api, url)
    assert_error(api.get(subs("no-such-library")), 404, "NOT_FOUND", "no-such-library")
    assert_error(api.get(subs(unpublished)), 400, "NOT_ALLOWED_IN_CURRENT_STATE", "not published")
    assert_error(api.post(subs(unpublished), json=new_spec()), 400, "NOT_ALLOWED_IN_CURRENT_STATE", "not published")
    assert_error(api.get(subs(subscribed)), 400, "INVALID_ELEMENT_TYPE", "subscribed library")
    remote = new_spec()
    remote["subscribed_library"].update(location="REMOTE", vcenter={"hostname": "vc.example"})
    assert_error(api.post(subs(lib), json=remote), 500, "RESOURCE_INACCESSIBLE", "vc.example")
    assert_error(api.post(subs(lib), json={}), 400, "INVALID_ARGUMENT", "subscribed_library")
    bad = new_spec()
    del bad["subscribed_library"]["new_subscribed_library"]["storage_backings"]
    assert_error(api.post(subs(lib), json=bad), 400, "INVALID_ARGUMENT", "storage_backings")
    assert api.get(subs(lib)).json() == [], "nothing was made"
    missing = "6f0c3c4e-0000-4000-8000-000000000000"
    assert_error(api.get(f"{subs(lib)}/{missing}"), 400, "INVALID_ARGUMENT", missing)
    assert_error(api.delete(f"{subs(lib)}/{missing}"), 404, "NOT_FOUND", missing)
    assert_error(api.patch(f"{subs(lib)}/{missing}", json={}), 404, "NOT_FOUND", missing)
    r = api.post(f"{sk.LL}/{lib}", params={"action": "publish"}, json={"subscriptions": [{"subscription": missing}]})
    assert_error(r, 400, "INVALID_ARGUMENT", missing)
