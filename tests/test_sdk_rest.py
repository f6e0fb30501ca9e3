"""The official SDK's `rest` protocol, unmodified: stock stubs (vapi-rest envelopes) on a connector URL ending in
`/rest` (issue 10 points 1 and 4).

The stubs' URL templates are the /api ones (`/content/library/item?action=find`) and their envelopes the legacy ones
(`{"value": ...}` results, `{"type", "value"}` errors): the /api form under /rest that legacy_rest.py serves. No stub
is flipped to SWAGGER_REST here (tests/test_sdk.py does that for /api); login uses the user/password security context
and every later call the runtime's session security context, as `create_vsphere_client` users' REST code does.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator

import pytest
import requests
from com.vmware.cis_client import Session
from com.vmware.content.library.item.downloadsession_client import File as DownloadFile
from com.vmware.content.library.item.updatesession_client import File as UpdateFile
from com.vmware.content.library.item_client import (
    Changes,
    DownloadSession,
    DownloadSessionModel,
    Storage,
    UpdateSession,
    UpdateSessionModel,
)
from com.vmware.content.library.item_client import File as ItemFile
from com.vmware.content.library_client import Item, ItemModel, PublishInfo, StorageBacking
from com.vmware.content_client import (
    Configuration,
    ConfigurationModel,
    Library,
    LibraryModel,
    LocalLibrary,
    SecurityPolicies,
    Type,
)
from com.vmware.vapi.std import errors_client
from conftest import ADMIN_PASSWORD, ADMIN_USER, ServerProcess
from vmware.vapi.bindings.stub import StubConfiguration
from vmware.vapi.lib.connect import get_requests_connector
from vmware.vapi.security.session import create_session_security_context
from vmware.vapi.security.user_password import create_user_password_security_context
from vmware.vapi.stdlib.client.factories import StubConfigurationFactory

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")


def configuration(base: str, password: str = ADMIN_PASSWORD) -> tuple[StubConfiguration, requests.Session]:
    """Log in with the stock Session stub, then a configuration carrying the session security context."""
    http = requests.Session()
    http.verify = False
    http.trust_env = False  # REQUESTS_CA_BUNDLE would override verify=False
    login = get_requests_connector(session=http, msg_protocol="rest", url=base + "/rest")
    login.set_security_context(create_user_password_security_context(ADMIN_USER, password))
    sid = Session(StubConfigurationFactory.new_std_configuration(login)).create()
    conn = get_requests_connector(session=http, msg_protocol="rest", url=base + "/rest")
    conn.set_security_context(create_session_security_context(sid))
    return StubConfigurationFactory.new_std_configuration(conn), http


@pytest.fixture(params=["http", "https"])
def cfg(request: pytest.FixtureRequest, server: ServerProcess, make_server: object) -> Iterator[StubConfiguration]:
    srv = server if request.param == "http" else make_server(http=False)  # type: ignore[operator]
    stub_cfg, http = configuration(srv.base)
    yield stub_cfg
    http.close()


def test_update_and_download_session_flow(cfg: StubConfiguration) -> None:
    assert Session(cfg).get().user == ADMIN_USER
    backing = StorageBacking(type=StorageBacking.Type.OTHER, storage_uri="file:///tmp/sdk-rest")
    name = f"sdk-rest-{uuid.uuid4().hex[:8]}"
    lib = LocalLibrary(cfg).create(
        create_spec=LibraryModel(name=name, type=LibraryModel.LibraryType.LOCAL, storage_backings=[backing])
    )
    assert LocalLibrary(cfg).get(lib).name == name
    assert lib in Library(cfg).list()
    assert Library(cfg).find(Library.FindSpec(name=name)) == [lib]
    item = Item(cfg).create(create_spec=ItemModel(library_id=lib, name="disk", type="iso"))
    assert Item(cfg).list(lib) == [item]

    us = UpdateSession(cfg).create(create_spec=UpdateSessionModel(library_item_id=item))
    assert UpdateSession(cfg).get(us).state == UpdateSessionModel.State.ACTIVE
    data = b"bytes through the stock rest stubs\n" * 100
    spec = UpdateFile.AddSpec(
        name="disk.iso",
        source_type=UpdateFile.SourceType.PUSH,
        size=len(data),
        checksum_info=ItemFile.ChecksumInfo(
            algorithm=ItemFile.ChecksumAlgorithm.SHA256, checksum=hashlib.sha256(data).hexdigest()
        ),
    )
    info = UpdateFile(cfg).add(us, spec)
    r = requests.put(info.upload_endpoint.uri, data=data, verify=False, timeout=60)
    assert r.status_code == 200, r.text
    assert UpdateFile(cfg).get(us, "disk.iso").status == "READY"
    assert not UpdateFile(cfg).validate(us).has_errors
    UpdateSession(cfg).keep_alive(us, client_progress=100)
    UpdateSession(cfg).complete(us)
    assert UpdateSession(cfg).get(us).state == UpdateSessionModel.State.DONE
    (published,) = ItemFile(cfg).list(item)
    assert (published.name, published.size, published.checksum_info.checksum) == (
        "disk.iso",
        len(data),
        hashlib.sha1(data).hexdigest(),
    )

    ds = DownloadSession(cfg).create(create_spec=DownloadSessionModel(library_item_id=item))
    prepared = DownloadFile(cfg).prepare(ds, "disk.iso")
    assert prepared.status == DownloadFile.PrepareStatus.PREPARED
    r = requests.get(prepared.download_endpoint.uri, verify=False, timeout=60)
    assert r.content == data
    DownloadSession(cfg).delete(ds)

    Item(cfg).update(item, ItemModel(description="patched"))
    assert Item(cfg).get(item).description == "patched"
    Item(cfg).delete(item)
    LocalLibrary(cfg).delete(lib)


def test_errors_carry_the_vendor_type(cfg: StubConfiguration) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(errors_client.NotFound) as nf:
        Item(cfg).get(missing)
    assert nf.value.error_type == "NOT_FOUND" and missing in nf.value.messages[0].default_message
    backing = StorageBacking(type=StorageBacking.Type.OTHER, storage_uri="file:///tmp/sdk-rest")
    lib = LocalLibrary(cfg).create(
        create_spec=LibraryModel(name=f"e-{uuid.uuid4().hex[:8]}", type="LOCAL", storage_backings=[backing])
    )
    item = Item(cfg).create(create_spec=ItemModel(library_id=lib, name="dup"))
    with pytest.raises(errors_client.Error) as dup:
        Item(cfg).create(create_spec=ItemModel(library_id=lib, name="dup"))
    assert dup.value.error_type == "ALREADY_EXISTS"
    UpdateSession(cfg).create(create_spec=UpdateSessionModel(library_item_id=item))
    with pytest.raises(errors_client.Error) as busy:  # the SDK types it as the first declared error (REFERENCE §1.3)
        UpdateSession(cfg).create(create_spec=UpdateSessionModel(library_item_id=item))
    assert busy.value.error_type == "RESOURCE_BUSY"


def test_bad_password_and_logout(server: ServerProcess) -> None:
    with pytest.raises(errors_client.Unauthenticated):
        configuration(server.base, password="wrong")
    cfg, _ = configuration(server.base)
    Session(cfg).delete()
    with pytest.raises(errors_client.Unauthenticated):
        Library(cfg).list()


def test_the_newer_operations(cfg: StubConfiguration) -> None:
    """Item copy, publish, storage and changes, the configuration, security policies and types through the stock
    stubs (issue 10 point 3 "on /api, JSON-RPC and /rest alike")."""
    backing = StorageBacking(type=StorageBacking.Type.OTHER, storage_uri="file:///tmp/sdk-rest")
    lib = LocalLibrary(cfg).create(
        create_spec=LibraryModel(
            name=f"new-{uuid.uuid4().hex[:8]}",
            type="LOCAL",
            storage_backings=[backing],
            publish_info=PublishInfo(published=True, authentication_method=PublishInfo.AuthenticationMethod.NONE),
        )
    )
    item = Item(cfg).create(create_spec=ItemModel(library_id=lib, name="source"))
    us = UpdateSession(cfg).create(create_spec=UpdateSessionModel(library_item_id=item))
    info = UpdateFile(cfg).add(us, UpdateFile.AddSpec(name="a.bin", source_type=UpdateFile.SourceType.PUSH))
    assert requests.put(info.upload_endpoint.uri, data=b"abc", verify=False, timeout=60).status_code == 200
    UpdateSession(cfg).complete(us)

    copy = Item(cfg).copy(item, ItemModel(library_id=lib, name="copy"))
    assert [f.name for f in ItemFile(cfg).list(copy)] == ["a.bin"]
    Item(cfg).publish(copy, force_sync_content=False)
    LocalLibrary(cfg).publish(lib)
    (stored,) = Storage(cfg).list(item)
    assert stored.name == "a.bin" and stored.size == 3 and stored.storage_uris
    changes = Changes(cfg).list(item)
    assert [c.version for c in changes] == ["2"]
    assert Changes(cfg).get(item, "2").user == ADMIN_USER

    model = Configuration(cfg).get()
    assert 0 <= model.automatic_sync_start_hour <= 23
    Configuration(cfg).update(ConfigurationModel(maximum_concurrent_item_syncs=model.maximum_concurrent_item_syncs))
    policies = SecurityPolicies(cfg).list()
    assert policies and policies[0].item_type_rules == {"ovf": "OVF_STRICT_VERIFICATION"}
    assert {t.type for t in Type(cfg).list()} >= {"ovf", "iso"}
