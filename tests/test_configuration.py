"""The service's configuration, security policies and item types over /api (issue 10 point 3; REFERENCE A.1
`content.configuration`, `content.security_policies`, `content.type`; A.3 `ConfigurationModel`,
`ConfigurationSetting`, `SecurityPolicies.Info`, `Type.Info`).

Contract: get returns every member of ConfigurationModel ("It will always be present in the return value of the
get"), with vCenter's defaults from the field docs until changed, each with its `<name>_setting` (name,
reboot_required, constraints of ConfigurationSetting.ConstraintType); update (PATCH, 204) is incremental and a value
out of the documented range is INVALID_ARGUMENT naming the member (then nothing changes); the values are one for the
whole service (kept in the database: they survive a restart; replicas share them, test_replicas.py). The security
policies are vCenter's built-in OVF policy, the one a library's security_policy_id may name; the types are those the
server supports.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from conftest import Api, ServerProcess
from test_routes import assert_vapi_error, validate_error_schema

CONFIG = "/api/content/configuration"
LL = "/api/content/local-library"
DEFAULTS = {
    "automatic_sync_enabled": True,
    "automatic_sync_start_hour": 20,
    "automatic_sync_stop_hour": 7,
    "maximum_concurrent_item_syncs": 5,
    "automatic_sync_refresh_interval": 240,
    "automatic_sync_setting_refresh_interval": 600,
    "transfer_throttling_bandwidth_total": 0,
    "transfer_nfc_max_concurrent_transfers_per_host": 8,
    "priority_transfer_threads_pool_size": 5,
    "transfer_threads_pool_size": 20,
}
HOURS = [{"MIN_INCLUSIVE": "0"}, {"MAX_INCLUSIVE": "23"}]
POSITIVE = [{"MIN_INCLUSIVE": "1"}]
CONSTRAINTS = {
    "automatic_sync_enabled": [{"ENUMERATION": "true"}, {"ENUMERATION": "false"}],
    "automatic_sync_start_hour": HOURS,
    "automatic_sync_stop_hour": HOURS,
    "maximum_concurrent_item_syncs": POSITIVE,
    "automatic_sync_refresh_interval": POSITIVE,
    "automatic_sync_setting_refresh_interval": POSITIVE,
    "transfer_throttling_bandwidth_total": [{"MIN_INCLUSIVE": "0"}],
    "transfer_nfc_max_concurrent_transfers_per_host": POSITIVE,
    "priority_transfer_threads_pool_size": POSITIVE,
    "transfer_threads_pool_size": POSITIVE,
}
# "This setting requires restart of the content library service to take effect when changed."
REBOOT = {
    "automatic_sync_setting_refresh_interval",
    "priority_transfer_threads_pool_size",
    "transfer_threads_pool_size",
}
OVF_POLICY = "0cbb9bb6-43fb-54fe-abfe-b056187413c7"


@pytest.fixture()
def srv(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    """A server of its own: the configuration is global, other tests must not see these changes."""
    return make_server()


def configuration(api: Api) -> dict[str, Any]:
    r = api.get(CONFIG)
    assert r.status_code == 200, r.text
    return dict(r.json())


def values(api: Api) -> dict[str, Any]:
    return {k: v for k, v in configuration(api).items() if not k.endswith("_setting")}


def test_every_setting_is_returned_with_its_default_and_description(srv: ServerProcess) -> None:
    api = Api(srv.base)
    got = configuration(api)
    validate_error_schema(got, "ContentConfigurationModel")  # the 8.0.2 schema (the 9.1 members are extra)
    assert set(got) == set(DEFAULTS) | {f"{name}_setting" for name in DEFAULTS}
    for name, default in DEFAULTS.items():
        assert got[name] == default and type(got[name]) is type(default), name
        assert got[f"{name}_setting"] == {
            "name": name,
            "reboot_required": name in REBOOT,
            "constraints": CONSTRAINTS[name],
        }


def test_update_is_incremental_and_survives_a_restart(srv: ServerProcess) -> None:
    api = Api(srv.base)
    r = api.patch(CONFIG, json={"automatic_sync_start_hour": 0, "automatic_sync_enabled": False})
    assert r.status_code == 204, r.text
    assert r.content == b""
    r = api.patch(CONFIG, json={"transfer_threads_pool_size": 64, "automatic_sync_stop_hour": None})
    assert r.status_code == 204, r.text
    want = {
        **DEFAULTS,
        "automatic_sync_start_hour": 0,
        "automatic_sync_enabled": False,
        "transfer_threads_pool_size": 64,
    }
    assert values(api) == want
    assert api.patch(CONFIG, json={}).status_code == 204
    assert values(api) == want
    srv.restart()
    api = Api(srv.base)
    assert values(api) == want
    # The highest and lowest values the ranges allow.
    edges = {
        "automatic_sync_stop_hour": 23,
        "transfer_throttling_bandwidth_total": 0,
        "maximum_concurrent_item_syncs": 1,
    }
    assert api.patch(CONFIG, json=edges).status_code == 204
    assert values(api) == {**want, **edges}


def test_setting_descriptions_cannot_be_changed(srv: ServerProcess) -> None:
    """The `_setting` members are optional for update; they describe a setting, and are ignored."""
    api = Api(srv.base)
    before = configuration(api)
    setting = {"name": "other", "reboot_required": True, "constraints": [{"MAX_EXCLUSIVE": "2"}]}
    r = api.patch(CONFIG, json={"automatic_sync_start_hour_setting": setting, "automatic_sync_start_hour": 5})
    assert r.status_code == 204, r.text
    assert configuration(api) == {**before, "automatic_sync_start_hour": 5}


@pytest.mark.parametrize(
    ("member", "value", "words"),
    [
        ("automatic_sync_start_hour", 24, ["between 0 and 23"]),
        ("automatic_sync_start_hour", -1, ["between 0 and 23"]),
        ("automatic_sync_stop_hour", 99, ["between 0 and 23"]),
        ("maximum_concurrent_item_syncs", 0, ["positive"]),
        ("maximum_concurrent_item_syncs", -5, ["positive"]),
        ("automatic_sync_refresh_interval", 0, ["positive"]),
        ("automatic_sync_setting_refresh_interval", -600, ["positive"]),
        ("transfer_throttling_bandwidth_total", -1, ["at least 0"]),
        ("transfer_nfc_max_concurrent_transfers_per_host", 0, ["positive"]),
        ("priority_transfer_threads_pool_size", 0, ["positive"]),
        ("transfer_threads_pool_size", -20, ["positive"]),
    ],
)
def test_a_value_out_of_range_is_invalid_argument_and_changes_nothing(
    srv: ServerProcess, member: str, value: int, words: list[str]
) -> None:
    api = Api(srv.base)
    before = configuration(api)
    # together with a valid member: neither is written
    r = api.patch(CONFIG, json={"automatic_sync_enabled": False, member: value})
    assert_vapi_error(r, 400, "INVALID_ARGUMENT", f"model.{member}", str(value), *words)
    assert configuration(api) == before


@pytest.mark.parametrize(
    "body",
    [
        {"automatic_sync_start_hour": "3"},
        {"automatic_sync_start_hour": 3.5},
        {"automatic_sync_start_hour": True},
        {"automatic_sync_enabled": "yes"},
        {"automatic_sync_enabled": 1},
        {"transfer_threads_pool_size": 2**63},
        {"transfer_threads_pool_size": 10**30},
        {"automatic_sync_start_hour_setting": {"constraints": [{"NOT_A_TYPE": "1"}]}},
        [],
        "x",
    ],
)
def test_a_value_of_the_wrong_type_is_invalid_argument(srv: ServerProcess, body: Any) -> None:
    api = Api(srv.base)
    before = configuration(api)
    assert_vapi_error(api.patch(CONFIG, json=body), 400, "INVALID_ARGUMENT")
    assert configuration(api) == before


def test_malformed_json_is_invalid_argument(srv: ServerProcess) -> None:
    api = Api(srv.base)
    r = api.patch(CONFIG, data=b'{"automatic_sync_start_hour": ', headers={"Content-Type": "application/json"})
    assert_vapi_error(r, 400, "INVALID_ARGUMENT", "json")
    assert values(api) == DEFAULTS


# -- security policies and types ---------------------------------------------------------------------------------
def test_the_built_in_ovf_security_policy(api: Api) -> None:
    r = api.get("/api/content/security-policies")
    assert r.status_code == 200, r.text
    policies = r.json()
    for p in policies:
        validate_error_schema(p, "ContentSecurityPoliciesInfo")
    assert policies == [
        {"policy": OVF_POLICY, "name": "OVF default policy", "item_type_rules": {"ovf": "OVF_STRICT_VERIFICATION"}}
    ]


def test_a_library_takes_a_security_policy_of_the_list_and_no_other(api: Api) -> None:
    secure = api.create_library(security_policy_id=OVF_POLICY)
    assert api.get(f"{LL}/{secure}").json()["security_policy_id"] == OVF_POLICY
    unknown = str(uuid.uuid4())
    spec = {
        "name": f"lib-{uuid.uuid4().hex[:8]}",
        "type": "LOCAL",
        "storage_backings": [{"type": "OTHER", "storage_uri": "file:///tmp/contentlib-test"}],
        "security_policy_id": unknown,
    }
    assert_vapi_error(api.post(LL, json=spec), 400, "INVALID_ARGUMENT", unknown, "security_policy_id")
    plain = api.create_library()
    r = api.patch(f"{LL}/{plain}", json={"security_policy_id": unknown})
    assert_vapi_error(r, 400, "INVALID_ARGUMENT", unknown, "update_spec.security_policy_id")
    assert "security_policy_id" not in api.get(f"{LL}/{plain}").json()
    assert api.patch(f"{LL}/{plain}", json={"security_policy_id": OVF_POLICY}).status_code == 204
    assert api.get(f"{LL}/{plain}").json()["security_policy_id"] == OVF_POLICY
    # Removing the policy: the id given along is ignored (unset_security_policy_id wins), whatever it is.
    r = api.patch(f"{LL}/{plain}", json={"security_policy_id": unknown, "unset_security_policy_id": True})
    assert r.status_code == 204, r.text
    assert "security_policy_id" not in api.get(f"{LL}/{plain}").json()


def test_the_supported_item_types(api: Api) -> None:
    r = api.get("/api/content/type")
    assert r.status_code == 200, r.text
    types = {t["type"]: t for t in r.json()}
    assert set(types) == {"ovf", "iso"}
    for t in types.values():
        validate_error_schema(t, "ContentTypeInfo")
        assert t["vendor"] and t["version"] and t["name"] and t["description"]
    assert types["ovf"]["supported_rules"] == ["OVF_STRICT_VERIFICATION"]
    assert "supported_rules" not in types["iso"]  # no security rule applies to an ISO image
