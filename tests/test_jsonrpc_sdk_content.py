"""The operations of issue 10 point 3 through the official Python SDK, unmodified, over its default vAPI JSON-RPC
(`create_vsphere_client` → `POST https://HOST/api`): item copy and publish, local library publish, item storage,
item changes, the configuration, security policies and types. Results arrive as the SDK's own classes (typed by
`vapi_meta.json`), errors as exactly the `errors_client` class their error_type names.

Helpers and conventions are test_jsonrpc_sdk.py's (a private HTTPS server with its self-signed certificate; the
requests session has `verify=False` and `trust_env=False`). One server serves the module: the configuration test
restores what it changes.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator

import pytest
from com.vmware.content.library.item_client import Changes, Storage, UpdateSessionModel
from com.vmware.content.library_client import Item, ItemModel, PublishInfo, StorageBacking
from com.vmware.content_client import ConfigurationModel, ConfigurationSetting, LocalLibrary, SecurityRuleType
from com.vmware.vapi.std import errors_client
from conftest import ServerProcess
from test_jsonrpc_sdk import connect, expect, library_spec, make_item, push
from vmware.vapi.vsphere.client import VsphereClient

pytestmark = [
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path_factory.mktemp("rpc-content") / "data", http=False)
    s.start()
    yield s
    s.destroy()


@pytest.fixture()
def client(srv: ServerProcess) -> Iterator[VsphereClient]:
    c = connect(srv)
    yield c
    c.session.close()


def item_with_files(c: VsphereClient, files: dict[str, bytes], library_id: str | None = None) -> tuple[str, str, str]:
    """(library id, item id, update session id) of a new item whose content is `files`."""
    if library_id is None:
        lib, item = make_item(c)
    else:
        lib = library_id
        item = c.content.library.Item.create(create_spec=ItemModel(library_id=lib, name=f"rpc-{uuid.uuid4().hex[:8]}"))
    sessions = c.content.library.item.UpdateSession
    sid = sessions.create(create_spec=UpdateSessionModel(library_item_id=item))
    for name, data in files.items():
        push(c, sid, name, data)
    sessions.complete(sid)
    return lib, item, sid


def test_sdk_jsonrpc_item_copy(client: VsphereClient) -> None:
    c = client
    items = c.content.library.Item
    lib, source, _ = item_with_files(c, {"a.iso": b"iso bytes"})
    other = c.content.LocalLibrary.create(create_spec=library_spec())
    new = items.copy(source_library_item_id=source, destination_create_spec=ItemModel(library_id=other, name="copy"))
    assert isinstance(new, str) and str(uuid.UUID(new)) == new
    got = items.get(new)
    assert (got.library_id, got.name, got.source_id, got.content_version, got.type) == (
        other,
        "copy",
        source,
        "1",
        "iso",
    )
    assert [f.name for f in c.content.library.item.File.list(new)] == ["a.iso"]
    token = str(uuid.uuid4())
    spec = ItemModel(library_id=lib, name="idempotent")
    first = items.copy(source_library_item_id=source, destination_create_spec=spec, client_token=token)
    assert items.copy(source_library_item_id=source, destination_create_spec=spec, client_token=token) == first
    assert sorted(items.list(lib)) == sorted([source, first])

    missing = str(uuid.uuid4())
    expect(
        lambda: items.copy(source_library_item_id=missing, destination_create_spec=ItemModel(name="x")),
        errors_client.NotFound,
        missing,
    )
    expect(
        lambda: items.copy(source_library_item_id=source, destination_create_spec=ItemModel(library_id=missing)),
        errors_client.NotFound,
        missing,
    )
    expect(
        lambda: items.copy(
            source_library_item_id=source, destination_create_spec=ItemModel(library_id=other, name="copy")
        ),
        errors_client.AlreadyExists,
        "copy",
    )
    expect(
        lambda: items.copy(source_library_item_id=source, destination_create_spec=ItemModel(name="")),
        errors_client.InvalidArgument,
        "name",
    )
    expect(
        lambda: items.copy(source_library_item_id=source, destination_create_spec=spec, client_token="nope"),
        errors_client.InvalidArgument,
        "client_token",
    )
    assert sorted(items.list(other)) == [new]


def test_sdk_jsonrpc_storage(client: VsphereClient) -> None:
    c = client
    lib, item, _ = item_with_files(c, {"a.bin": b"alpha", "b.bin": b"beta"})
    storage = c.content.library.item.Storage
    infos = storage.list(item)
    assert all(isinstance(s, Storage.Info) for s in infos)
    assert sorted(s.name for s in infos) == ["a.bin", "b.bin"]
    backing = c.content.LocalLibrary.get(lib).storage_backings[0]
    for s in infos:
        assert s.storage_backing.type == StorageBacking.Type.OTHER
        assert s.storage_backing.storage_uri == backing.storage_uri
        assert len(s.storage_uris) == 1 and s.storage_uris[0].startswith(("file:///", "s3://"))
        assert s.cached is True and s.version == "1" and s.checksum_info.checksum
    (one,) = storage.get(item, "b.bin")
    assert (one.name, one.size) == ("b.bin", 4)
    expect(lambda: storage.get(item, "nope.bin"), errors_client.NotFound, "nope.bin")
    missing = str(uuid.uuid4())
    expect(lambda: storage.list(missing), errors_client.NotFound, missing)


def test_sdk_jsonrpc_changes(client: VsphereClient) -> None:
    c = client
    _, item, sid = item_with_files(c, {"a.bin": b"alpha"})
    changes = c.content.library.item.Changes
    (summary,) = changes.list(item)
    assert isinstance(summary, Changes.Summary)
    assert summary.version == "2" == c.content.library.Item.get(item).content_version
    assert isinstance(summary.time, datetime.datetime)
    assert summary.user == "administrator@vsphere.local"
    assert summary.short_message == f"Content changed by the update session {sid}."
    info = changes.get(item, "2")
    assert isinstance(info, Changes.Info)
    assert info.time == summary.time and info.message.endswith("Added: a.bin")
    expect(lambda: changes.get(item, "3"), errors_client.NotFound, item, "3")
    missing = str(uuid.uuid4())
    expect(lambda: changes.list(missing), errors_client.NotFound, missing)


def test_sdk_jsonrpc_publish(client: VsphereClient) -> None:
    c = client
    published = c.content.LocalLibrary.create(
        create_spec=library_spec(
            publish_info=PublishInfo(published=True, authentication_method=PublishInfo.AuthenticationMethod.NONE)
        )
    )
    c.content.LocalLibrary.publish(published)
    c.content.LocalLibrary.publish(published, subscriptions=[])
    subscription = str(uuid.uuid4())
    expect(
        lambda: c.content.LocalLibrary.publish(
            published, subscriptions=[LocalLibrary.DestinationSpec(subscription=subscription)]
        ),
        errors_client.InvalidArgument,
        subscription,
    )
    item = c.content.library.Item.create(create_spec=ItemModel(library_id=published, name="to-publish"))
    c.content.library.Item.publish(item, force_sync_content=True)
    expect(
        lambda: c.content.library.Item.publish(
            item, force_sync_content=False, subscriptions=[Item.DestinationSpec(subscription=subscription)]
        ),
        errors_client.InvalidArgument,
        subscription,
    )
    plain, plain_item = make_item(c)
    expect(lambda: c.content.LocalLibrary.publish(plain), errors_client.NotAllowedInCurrentState, "not published")
    expect(
        lambda: c.content.library.Item.publish(plain_item, force_sync_content=False),
        errors_client.NotAllowedInCurrentState,
        "not published",
    )
    missing = str(uuid.uuid4())
    expect(lambda: c.content.LocalLibrary.publish(missing), errors_client.NotFound, missing)
    expect(lambda: c.content.library.Item.publish(missing, force_sync_content=True), errors_client.NotFound, missing)


def test_sdk_jsonrpc_configuration(client: VsphereClient) -> None:
    config = client.content.Configuration
    model = config.get()
    assert isinstance(model, ConfigurationModel)
    assert (model.automatic_sync_start_hour, model.automatic_sync_stop_hour) == (20, 7)
    assert model.automatic_sync_enabled is True and model.transfer_threads_pool_size == 20
    setting = model.automatic_sync_start_hour_setting
    assert isinstance(setting, ConfigurationSetting)
    assert setting.name == "automatic_sync_start_hour" and setting.reboot_required is False
    assert [dict(c) for c in setting.constraints] == [
        {ConfigurationSetting.ConstraintType.MIN_INCLUSIVE: "0"},
        {ConfigurationSetting.ConstraintType.MAX_INCLUSIVE: "23"},
    ]
    assert model.transfer_threads_pool_size_setting.reboot_required is True
    try:
        config.update(ConfigurationModel(automatic_sync_start_hour=2, maximum_concurrent_item_syncs=9))
        got = config.get()
        assert (got.automatic_sync_start_hour, got.maximum_concurrent_item_syncs) == (2, 9)
        assert got.automatic_sync_stop_hour == 7  # incremental
        expect(
            lambda: config.update(ConfigurationModel(automatic_sync_stop_hour=24)),
            errors_client.InvalidArgument,
            "automatic_sync_stop_hour",
        )
        assert config.get().automatic_sync_stop_hour == 7
    finally:
        config.update(ConfigurationModel(automatic_sync_start_hour=20, maximum_concurrent_item_syncs=5))


def test_sdk_jsonrpc_security_policies_and_types(client: VsphereClient) -> None:
    (policy,) = client.content.SecurityPolicies.list()
    assert policy.name == "OVF default policy"
    assert policy.item_type_rules == {"ovf": SecurityRuleType.OVF_STRICT_VERIFICATION}
    # the policy a library may be secured with
    lib = client.content.LocalLibrary.create(create_spec=library_spec(security_policy_id=policy.policy))
    assert client.content.LocalLibrary.get(lib).security_policy_id == policy.policy
    expect(
        lambda: client.content.LocalLibrary.create(create_spec=library_spec(security_policy_id="no-such-policy")),
        errors_client.InvalidArgument,
        "no-such-policy",
    )
    types = {t.type: t for t in client.content.Type.list()}
    assert set(types) == {"ovf", "iso"}
    assert types["ovf"].supported_rules == [SecurityRuleType.OVF_STRICT_VERIFICATION]
    assert types["iso"].supported_rules is None
