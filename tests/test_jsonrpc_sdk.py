"""The official Python SDK, unmodified: `create_vsphere_client` speaks vAPI JSON-RPC to `POST https://HOST/api`.

Contract: issue 4 (JSON-RPC front-end; errors raised as the right `com.vmware.vapi.std.errors_client` class),
REFERENCE.md §1 item 1 (the SDK's default protocol is JSON-RPC on `/api`), §7.3 (the captured envelope), §2/A.2
(update-session semantics and the documented error of each operation), and the lead's rules in the test brief
(ids are UUIDs, unknown ids → NotFound naming the id, client_token must be a UUID and is idempotent, ...).
Every test runs against a private HTTPS server with its generated self-signed certificate; the requests session
has `verify=False` and `trust_env=False`, as SDK users do.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from com.vmware.cis_client import Session
from com.vmware.content.library.item.downloadsession_client import File as DownloadFile
from com.vmware.content.library.item.updatesession_client import File as UpdateFile
from com.vmware.content.library.item.updatesession_client import WarningBehavior, WarningType
from com.vmware.content.library.item_client import DownloadSessionModel, UpdateSessionModel
from com.vmware.content.library.item_client import File as ItemFile
from com.vmware.content.library_client import Item, ItemModel, StorageBacking
from com.vmware.content_client import Library, LibraryModel, TrustedCertificates
from com.vmware.vapi.std import errors_client
from conftest import ADMIN_PASSWORD, ADMIN_USER, ServerProcess, self_signed_pem
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from vmware.vapi.lib.connect import get_requests_connector
from vmware.vapi.security.client.security_context_filter import LegacySecurityContextFilter
from vmware.vapi.security.user_password import create_user_password_security_context
from vmware.vapi.stdlib.client.factories import StubConfigurationFactory
from vmware.vapi.vsphere.client import VsphereClient, create_vsphere_client

pytestmark = [
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # the SDK's own modules, on import of every stub
]


# -- helpers ------------------------------------------------------------------------------------------------------
def http_session() -> requests.Session:
    s = requests.Session()
    s.verify = False
    s.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override verify=False
    return s


def connect(srv: ServerProcess, **auth: Any) -> VsphereClient:
    """`create_vsphere_client` exactly as an SDK user calls it (host:port, no scheme; HTTPS is implied)."""
    if not auth:
        auth = {"username": ADMIN_USER, "password": ADMIN_PASSWORD}
    return create_vsphere_client(server=f"127.0.0.1:{srv.port}", session=http_session(), **auth)


@pytest.fixture()
def srv(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    s = make_server(http=False)
    assert s.base.startswith("https://")
    return s


@pytest.fixture()
def client(srv: ServerProcess) -> Iterator[VsphereClient]:
    c = connect(srv)
    yield c
    c.session.close()


def expect(call: Callable[[], Any], cls: type[errors_client.Error], *words: str) -> errors_client.Error:
    """The SDK raises exactly `cls` (not a subclass, not the base Error), with its error_type and messages."""
    with pytest.raises(errors_client.Error) as info:
        call()
    err = info.value
    assert type(err) is cls, f"expected {cls.__name__}, got {type(err).__name__}: {err!r}"
    expected_type = cls.__name__  # NotFound -> NOT_FOUND, NotAllowedInCurrentState -> NOT_ALLOWED_IN_CURRENT_STATE
    snake = "".join("_" + c if c.isupper() else c for c in expected_type).lstrip("_").upper()
    assert err.error_type == snake, err
    assert err.messages, err
    for m in err.messages:
        assert isinstance(m.id, str) and m.id
        assert isinstance(m.default_message, str) and m.default_message
        assert isinstance(m.args, list)
    text = " ".join(m.default_message for m in err.messages).lower()
    for w in words:
        assert w.lower() in text, f"{w!r} not in {text!r}"
    return err


def library_spec(name: str | None = None, **extra: Any) -> LibraryModel:
    return LibraryModel(
        name=name or f"rpc-lib-{uuid.uuid4().hex[:8]}",
        type=LibraryModel.LibraryType.LOCAL,
        storage_backings=[StorageBacking(type=StorageBacking.Type.OTHER, storage_uri="file:///tmp/jsonrpc-sdk")],
        **extra,
    )


def make_item(c: VsphereClient, name: str | None = None) -> tuple[str, str]:
    lib_id = c.content.LocalLibrary.create(create_spec=library_spec())
    item_id = c.content.library.Item.create(
        create_spec=ItemModel(library_id=lib_id, name=name or f"rpc-item-{uuid.uuid4().hex[:8]}")
    )
    return lib_id, item_id


def push(c: VsphereClient, sid: str, name: str, data: bytes) -> UpdateFile.Info:
    """file add (PUSH, size, SHA1) then the upload the way the SDK's content-library sample does it."""
    info = c.content.library.item.updatesession.File.add(
        sid,
        UpdateFile.AddSpec(
            name=name,
            source_type=UpdateFile.SourceType.PUSH,
            size=len(data),
            checksum_info=ItemFile.ChecksumInfo(
                algorithm=ItemFile.ChecksumAlgorithm.SHA1, checksum=hashlib.sha1(data).hexdigest()
            ),
        ),
    )
    r = c.session.post(info.upload_endpoint.uri, data=data, headers={"Content-Type": "text/ovf"}, timeout=60)
    assert r.status_code == 200, r.text
    return info


def done_session(c: VsphereClient, item_id: str) -> str:
    """An update session that uploaded one file and completed (state DONE)."""
    sessions = c.content.library.item.UpdateSession
    sid = sessions.create(create_spec=UpdateSessionModel(library_item_id=item_id))
    push(c, sid, "done.bin", b"done session payload")
    sessions.complete(sid)
    assert sessions.get(sid).state == UpdateSessionModel.State.DONE
    return str(sid)


# -- the whole flow -----------------------------------------------------------------------------------------------
def test_sdk_jsonrpc_update_session_flow(srv: ServerProcess, client: VsphereClient) -> None:
    c = client
    assert isinstance(c.session_id, str) and c.session_id
    info = c.session_svc.get()
    assert info.user == ADMIN_USER
    assert info.created_time is not None and info.last_accessed_time is not None

    # local library create/get/list/update, and the generic library view of it
    lib_name = f"rpc-lib-{uuid.uuid4().hex[:8]}"
    lib_id = c.content.LocalLibrary.create(create_spec=library_spec(lib_name, description="made over JSON-RPC"))
    uuid.UUID(lib_id)
    lib = c.content.LocalLibrary.get(lib_id)
    assert (lib.id, lib.name, lib.description, lib.type) == (
        lib_id,
        lib_name,
        "made over JSON-RPC",
        LibraryModel.LibraryType.LOCAL,
    )
    assert [(b.type, b.storage_uri) for b in lib.storage_backings] == [
        (StorageBacking.Type.OTHER, "file:///tmp/jsonrpc-sdk")
    ]
    assert lib_id in c.content.LocalLibrary.list()
    assert lib_id in c.content.Library.list()
    c.content.LocalLibrary.update(lib_id, LibraryModel(description="updated over JSON-RPC"))
    lib = c.content.LocalLibrary.get(lib_id)
    assert (lib.name, lib.description) == (lib_name, "updated over JSON-RPC")
    assert c.content.Library.get(lib_id).description == "updated over JSON-RPC"
    assert c.content.Library.find(Library.FindSpec(name=lib_name)) == [lib_id]

    # item create/get/list/find/update
    item_name = f"rpc-item-{uuid.uuid4().hex[:8]}"
    item_id = c.content.library.Item.create(
        create_spec=ItemModel(library_id=lib_id, name=item_name, description="an item")
    )
    uuid.UUID(item_id)
    item = c.content.library.Item.get(item_id)
    assert (item.id, item.library_id, item.name, item.description) == (item_id, lib_id, item_name, "an item")
    assert item.content_version == "1"
    assert c.content.library.Item.list(lib_id) == [item_id]
    assert c.content.library.Item.find(Item.FindSpec(name=item_name, library_id=lib_id)) == [item_id]
    assert c.content.library.Item.find(Item.FindSpec(name=item_name + "-none", library_id=lib_id)) == []
    c.content.library.Item.update(item_id, ItemModel(description="an updated item"))
    item = c.content.library.Item.get(item_id)
    assert (item.name, item.description) == (item_name, "an updated item")

    # update session: create, PATCH of warning_behavior, get shows it
    sessions = c.content.library.item.UpdateSession
    sid = sessions.create(create_spec=UpdateSessionModel(library_item_id=item_id))
    uuid.UUID(sid)
    us = sessions.get(sid)
    assert (us.library_item_id, us.state) == (item_id, UpdateSessionModel.State.ACTIVE)
    assert us.id is None  # "will not be present in get" (A.3 usage g:absent)
    assert us.library_item_content_version == "1"
    assert us.client_progress == 0
    assert us.expiration_time is not None
    sessions.update(
        sid,
        UpdateSessionModel(
            warning_behavior=[
                WarningBehavior(type=WarningType.SELF_SIGNED_CERTIFICATE, ignored=True),
                WarningBehavior(type=WarningType.UNTRUSTED_CERTIFICATE, ignored=False),
            ]
        ),
    )
    us = sessions.get(sid)
    assert us.state == UpdateSessionModel.State.ACTIVE
    assert {(w.type, w.ignored) for w in us.warning_behavior} == {
        (WarningType.SELF_SIGNED_CERTIFICATE, True),
        (WarningType.UNTRUSTED_CERTIFICATE, False),
    }
    assert sid in sessions.list(library_item_id=item_id)

    # file add (PUSH, size, SHA1), upload with POST text/ovf, file get/list
    data = os.urandom(64 * 1024 + 17)
    sha1 = hashlib.sha1(data).hexdigest()
    files = c.content.library.item.updatesession.File
    added = push(c, sid, "disk-1.bin", data)
    assert added.name == "disk-1.bin"
    assert added.source_type == UpdateFile.SourceType.PUSH
    assert added.status == "WAITING_FOR_TRANSFER"
    assert added.bytes_transferred == 0
    uri = added.upload_endpoint.uri
    assert uri.startswith(srv.base + "/cls/data/"), uri
    assert uri.endswith("/disk-1.bin"), uri
    got = files.get(sid, "disk-1.bin")
    assert (got.name, got.status, got.size, got.bytes_transferred) == ("disk-1.bin", "READY", len(data), len(data))
    assert got.checksum_info.algorithm == ItemFile.ChecksumAlgorithm.SHA1
    assert got.checksum_info.checksum.lower() == sha1
    listed = files.list(sid)
    assert [(f.name, f.status) for f in listed] == [("disk-1.bin", "READY")]

    # validate, keep_alive, complete, session get (DONE)
    result = files.validate(sid)
    assert result.has_errors is False
    assert not result.missing_files
    assert not result.invalid_files
    sessions.keep_alive(sid, client_progress=60)
    assert sessions.get(sid).client_progress == 60
    sessions.keep_alive(sid)
    sessions.complete(sid)
    us = sessions.get(sid)
    assert us.state == UpdateSessionModel.State.DONE
    assert us.client_progress == 60
    assert us.preview_info is None

    # the item's files, with checksums
    item_files = c.content.library.item.File
    ifs = item_files.list(item_id)
    assert [(f.name, f.size, f.cached, f.version) for f in ifs] == [("disk-1.bin", len(data), True, "1")]
    assert ifs[0].checksum_info.algorithm == ItemFile.ChecksumAlgorithm.SHA1
    assert ifs[0].checksum_info.checksum.lower() == sha1
    one = item_files.get(item_id, "disk-1.bin")
    assert (one.name, one.size, one.version) == ("disk-1.bin", len(data), "1")
    assert one.checksum_info.checksum.lower() == sha1
    item = c.content.library.Item.get(item_id)
    assert item.content_version == "2"
    assert item.size == len(data)

    # download session create, file list/prepare/get, download, delete
    downloads = c.content.library.item.DownloadSession
    ds = downloads.create(create_spec=DownloadSessionModel(library_item_id=item_id))
    uuid.UUID(ds)
    dsm = downloads.get(ds)
    assert (dsm.library_item_id, dsm.state) == (item_id, DownloadSessionModel.State.ACTIVE)
    assert dsm.id is None
    assert dsm.library_item_content_version == "2"
    assert ds in downloads.list(library_item_id=item_id)
    dfiles = c.content.library.item.downloadsession.File
    assert [(f.name, f.status) for f in dfiles.list(ds)] == [("disk-1.bin", DownloadFile.PrepareStatus.UNPREPARED)]
    prepared = dfiles.prepare(ds, "disk-1.bin", endpoint_type=DownloadFile.EndpointType.HTTPS)
    assert prepared.status == DownloadFile.PrepareStatus.PREPARED
    assert prepared.download_endpoint.uri.startswith(srv.base + "/cls/download/"), prepared.download_endpoint.uri
    assert dfiles.get(ds, "disk-1.bin").download_endpoint.uri == prepared.download_endpoint.uri
    r = c.session.get(prepared.download_endpoint.uri, timeout=60)
    assert r.status_code == 200
    assert r.content == data
    downloads.keep_alive(ds, progress=100)
    assert downloads.get(ds).client_progress == 100
    downloads.delete(ds)
    expect(lambda: downloads.get(ds), errors_client.NotFound, ds)

    # a terminal update session can be deleted; then it is gone
    sessions.delete(sid)
    expect(lambda: sessions.get(sid), errors_client.NotFound, sid)


def test_sdk_jsonrpc_trusted_certificates(client: VsphereClient) -> None:
    certs = client.content.TrustedCertificates
    pem, der = self_signed_pem()
    cert_id = certs.create(TrustedCertificates.CreateSpec(cert_text=pem))
    assert cert_id == hashlib.sha256(der).hexdigest()  # the alias is the SHA256 of the raw certificate data
    listed = {s.certificate: s.cert_text for s in certs.list().certificates}
    assert cert_id in listed
    assert x509.load_pem_x509_certificate(listed[cert_id].encode()).public_bytes(serialization.Encoding.DER) == der
    got = certs.get(cert_id)
    assert x509.load_pem_x509_certificate(got.cert_text.encode()).public_bytes(serialization.Encoding.DER) == der
    certs.delete(cert_id)
    assert cert_id not in {s.certificate for s in certs.list().certificates}
    expect(lambda: certs.get(cert_id), errors_client.NotFound, cert_id)
    expect(lambda: certs.delete(cert_id), errors_client.NotFound, cert_id)


# -- each error class, raised as exactly that class ------------------------------------------------------------------
def test_sdk_jsonrpc_not_found(client: VsphereClient) -> None:
    c = client
    missing = str(uuid.uuid4())
    expect(lambda: c.content.library.item.UpdateSession.get(missing), errors_client.NotFound, missing)
    expect(lambda: c.content.library.item.UpdateSession.complete(missing), errors_client.NotFound, missing)
    expect(lambda: c.content.library.item.updatesession.File.list(missing), errors_client.NotFound, missing)
    expect(lambda: c.content.library.item.DownloadSession.get(missing), errors_client.NotFound, missing)
    expect(lambda: c.content.library.Item.get(missing), errors_client.NotFound, missing)
    expect(lambda: c.content.library.item.File.list(missing), errors_client.NotFound, missing)
    expect(lambda: c.content.LocalLibrary.get(missing), errors_client.NotFound, missing)
    expect(lambda: c.content.Library.get(missing), errors_client.NotFound, missing)
    expect(lambda: c.content.library.Item.list(missing), errors_client.NotFound, missing)
    expect(
        lambda: c.content.library.Item.create(create_spec=ItemModel(library_id=missing, name="orphan")),
        errors_client.NotFound,
        missing,
    )
    expect(
        lambda: c.content.library.item.UpdateSession.create(create_spec=UpdateSessionModel(library_item_id=missing)),
        errors_client.NotFound,
        missing,
    )


def test_sdk_jsonrpc_not_allowed_in_current_state(client: VsphereClient) -> None:
    c = client
    sessions = c.content.library.item.UpdateSession
    _, item_id = make_item(c)
    done = done_session(c, item_id)
    expect(
        lambda: sessions.update(done, UpdateSessionModel(warning_behavior=[])), errors_client.NotAllowedInCurrentState
    )
    expect(lambda: sessions.complete(done), errors_client.NotAllowedInCurrentState)
    expect(lambda: sessions.cancel(done), errors_client.NotAllowedInCurrentState)
    expect(lambda: sessions.keep_alive(done, client_progress=10), errors_client.NotAllowedInCurrentState)
    expect(lambda: sessions.fail(done, "too late"), errors_client.NotAllowedInCurrentState)
    assert sessions.get(done).state == UpdateSessionModel.State.DONE

    active = sessions.create(create_spec=UpdateSessionModel(library_item_id=item_id))
    expect(lambda: sessions.delete(active), errors_client.NotAllowedInCurrentState)
    assert sessions.get(active).state == UpdateSessionModel.State.ACTIVE
    # complete while an added file has not arrived: refused, the message names the file
    c.content.library.item.updatesession.File.add(
        active, UpdateFile.AddSpec(name="pending.bin", source_type=UpdateFile.SourceType.PUSH, size=3)
    )
    expect(lambda: sessions.complete(active), errors_client.NotAllowedInCurrentState, "pending.bin")
    sessions.cancel(active)
    assert sessions.get(active).state == UpdateSessionModel.State.CANCELED
    sessions.delete(active)
    expect(lambda: sessions.get(active), errors_client.NotFound, active)


def test_sdk_jsonrpc_resource_busy_and_client_token(client: VsphereClient) -> None:
    c = client
    sessions = c.content.library.item.UpdateSession
    _, item_id = make_item(c)
    token = str(uuid.uuid4())
    first = sessions.create(create_spec=UpdateSessionModel(library_item_id=item_id), client_token=token)
    # over JSON-RPC client_token travels in the input: the same token returns the same session (idempotent)
    again = sessions.create(create_spec=UpdateSessionModel(library_item_id=item_id), client_token=token)
    assert again == first
    expect(
        lambda: sessions.create(create_spec=UpdateSessionModel(library_item_id=item_id)),
        errors_client.ResourceBusy,
        item_id,
    )
    expect(
        lambda: sessions.create(
            create_spec=UpdateSessionModel(library_item_id=item_id), client_token=str(uuid.uuid4())
        ),
        errors_client.ResourceBusy,
    )
    assert sessions.get(first).state == UpdateSessionModel.State.ACTIVE
    assert [s for s in sessions.list(library_item_id=item_id)] == [first]
    sessions.cancel(first)
    second = sessions.create(create_spec=UpdateSessionModel(library_item_id=item_id))
    assert second != first


def test_sdk_jsonrpc_already_exists(client: VsphereClient) -> None:
    c = client
    lib_id, item_id = make_item(c, name="twin")
    expect(
        lambda: c.content.library.Item.create(create_spec=ItemModel(library_id=lib_id, name="twin")),
        errors_client.AlreadyExists,
        "twin",
    )
    other = c.content.library.Item.create(create_spec=ItemModel(library_id=lib_id, name="other"))
    expect(lambda: c.content.library.Item.update(other, ItemModel(name="twin")), errors_client.AlreadyExists, "twin")
    assert c.content.library.Item.get(other).name == "other"
    assert sorted(c.content.library.Item.list(lib_id)) == sorted([item_id, other])


def test_sdk_jsonrpc_invalid_argument(client: VsphereClient) -> None:
    c = client
    lib_id, item_id = make_item(c)
    expect(
        lambda: c.content.library.item.UpdateSession.create(
            create_spec=UpdateSessionModel(library_item_id=item_id), client_token="not-a-uuid"
        ),
        errors_client.InvalidArgument,
        "client_token",
    )
    assert c.content.library.item.UpdateSession.list(library_item_id=item_id) == []
    expect(
        lambda: c.content.LocalLibrary.create(create_spec=library_spec(), client_token="12345"),
        errors_client.InvalidArgument,
        "client_token",
    )
    expect(
        lambda: c.content.library.Item.create(create_spec=ItemModel(library_id=lib_id, name="")),
        errors_client.InvalidArgument,
        "name",
    )
    assert c.content.library.Item.list(lib_id) == [item_id]
    sid = c.content.library.item.UpdateSession.create(create_spec=UpdateSessionModel(library_item_id=item_id))
    for bad in ("a/b.bin", "..", ""):
        spec = UpdateFile.AddSpec(name=bad, source_type=UpdateFile.SourceType.PUSH)
        with pytest.raises(errors_client.InvalidArgument) as info:
            c.content.library.item.updatesession.File.add(sid, spec)
        assert info.value.error_type == "INVALID_ARGUMENT"
    # removing a name that is not in the session's view
    expect(
        lambda: c.content.library.item.updatesession.File.remove(sid, "absent.bin"),
        errors_client.InvalidArgument,
        "absent.bin",
    )
    assert c.content.library.item.updatesession.File.list(sid) == []


def test_sdk_jsonrpc_unauthenticated(srv: ServerProcess, client: VsphereClient) -> None:
    bogus = connect(srv, session_id="bogus")
    expect(lambda: bogus.content.LocalLibrary.list(), errors_client.Unauthenticated)
    expect(lambda: bogus.content.library.Item.get(str(uuid.uuid4())), errors_client.Unauthenticated)
    expect(lambda: bogus.session_svc.get(), errors_client.Unauthenticated)
    bogus.session.close()

    # a client whose session was logged out
    other = connect(srv)
    lib_id = other.content.LocalLibrary.create(create_spec=library_spec())
    assert other.content.LocalLibrary.get(lib_id).id == lib_id
    other.session_svc.delete()
    expect(lambda: other.content.LocalLibrary.get(lib_id), errors_client.Unauthenticated)
    expect(lambda: other.session_svc.get(), errors_client.Unauthenticated)
    other.session.close()

    # a session id obtained by one client works for a second one (session_id=..., no login); the first is intact
    reuse = connect(srv, session_id=client.session_id)
    assert lib_id in reuse.content.LocalLibrary.list()
    assert client.session_svc.get().user == ADMIN_USER


def sdk_login(srv: ServerProcess, username: str, password: str) -> str:
    """The login `create_vsphere_client` performs (VsphereClient.__init__), on the same stubs and filters.

    Not `create_vsphere_client` itself for a login that must fail: a VsphereClient whose __init__ raised recurses
    without end in its `__getattr__` when its `__del__` runs (SDK 9.1.1.0), which can kill the test process.
    """
    connector = get_requests_connector(
        session=http_session(),
        url=f"https://127.0.0.1:{srv.port}/api",
        provider_filter_chain=[
            LegacySecurityContextFilter(security_context=create_user_password_security_context(username, password))
        ],
    )
    sid = Session(StubConfigurationFactory.new_std_configuration(connector)).create()
    assert isinstance(sid, str)
    return sid


def test_sdk_jsonrpc_wrong_password(srv: ServerProcess) -> None:
    expect(lambda: sdk_login(srv, ADMIN_USER, "not-the-password"), errors_client.Unauthenticated)
    expect(lambda: sdk_login(srv, "nobody@vsphere.local", ADMIN_PASSWORD), errors_client.Unauthenticated)
    expect(lambda: sdk_login(srv, ADMIN_USER, ""), errors_client.Unauthenticated)
    sid = sdk_login(srv, ADMIN_USER, ADMIN_PASSWORD)  # the right one works, and its session id serves calls
    c = connect(srv, session_id=sid)
    assert c.session_svc.get().user == ADMIN_USER
    c.session.close()


def test_sdk_jsonrpc_operation_not_found(client: VsphereClient) -> None:
    """Operations the SDK offers but the server does not serve: OperationNotFound, never a crash."""
    lib_id, item_id = make_item(client)
    expect(lambda: client.content.Library.delete(lib_id), errors_client.OperationNotFound, "delete")
    # vSphere 9's, which the 8.0.2 contract does not have
    expect(lambda: client.content.SubscribedLibrary.force_delete(lib_id), errors_client.OperationNotFound, "force")
    # the library and item are untouched, and the connection still serves
    assert client.content.LocalLibrary.get(lib_id).id == lib_id
    assert client.content.library.Item.list(lib_id) == [item_id]


def test_sdk_jsonrpc_session_stub(srv: ServerProcess) -> None:
    """`com.vmware.cis.session` through the stock Session stub on the client's own configuration."""
    c = connect(srv)
    svc: Session = c.session_svc
    assert svc.get().user == ADMIN_USER
    svc.delete()
    expect(lambda: svc.delete(), errors_client.Unauthenticated)
