"""The update-session happy path and error path driven by the official Python SDK (vmware-vcenter 9.1).

Contract: REFERENCE.md §1 item 3 (SDK quirks: dropped Client-Token, `?name` / `?file_name` GET bodies, errors
typed as the first declared error, union rules checked on responses), §5 (serialization), §6 (the REST recipe:
msg_protocol='rest', connector URL base+"/api", each stub flipped to SWAGGER_REST / is_vapi_rest False, the
session id as a header on the requests session), §7 (captured wire traffic of this very flow).
Runs once over the shared plain-HTTP server and once over HTTPS against a private server (self-signed).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import requests
from com.vmware.cis_client import Session
from com.vmware.content.library.item.downloadsession_client import File as DownloadFile
from com.vmware.content.library.item.updatesession_client import File as UpdateFile
from com.vmware.content.library.item.updatesession_client import WarningBehavior, WarningType
from com.vmware.content.library.item_client import (
    DownloadSession,
    DownloadSessionModel,
    UpdateSession,
    UpdateSessionModel,
)
from com.vmware.content.library.item_client import File as ItemFile
from com.vmware.content.library_client import Item, ItemModel, StorageBacking
from com.vmware.content_client import LibraryModel, LocalLibrary
from com.vmware.vapi.std import errors_client
from conftest import ADMIN_PASSWORD, ADMIN_USER, ServerProcess
from vmware.vapi.bindings.converter import RestConverter
from vmware.vapi.bindings.error import UnresolvedError, VapiError
from vmware.vapi.bindings.stub import VapiInterface
from vmware.vapi.lib.connect import get_requests_connector
from vmware.vapi.security.user_password import create_user_password_security_context
from vmware.vapi.stdlib.client.factories import StubConfigurationFactory

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

S = TypeVar("S", bound=VapiInterface)


class Sdk:
    """SDK stubs speaking the `/api` REST dialect (REFERENCE.md §6)."""

    def __init__(self, base: str, verify: bool = True) -> None:
        self.base = base
        self.http = requests.Session()
        self.http.verify = verify
        # requests lets REQUESTS_CA_BUNDLE from the environment override Session.verify=False: ignore the env.
        self.http.trust_env = False
        # Login goes through a connector with the user/password context (Basic auth on POST /api/session).
        login_conn = get_requests_connector(session=self.http, msg_protocol="rest", url=base + "/api")
        login_conn.set_security_context(create_user_password_security_context(ADMIN_USER, ADMIN_PASSWORD))
        self._login_cfg = StubConfigurationFactory.new_std_configuration(login_conn)
        self._login_rest = login_conn.get_api_provider().get_api_provider()
        # Every other stub: a connector without a security context; the session id is a header.
        conn = get_requests_connector(session=self.http, msg_protocol="rest", url=base + "/api")
        self._cfg = StubConfigurationFactory.new_std_configuration(conn)
        self._rest = conn.get_api_provider().get_api_provider()
        self.session_id: str | None = None

    @staticmethod
    def _flip(svc: VapiInterface, rest: Any) -> None:
        svc._api_interface._is_vapi_rest = False  # type: ignore[attr-defined]
        svc._api_interface._rest_converter_mode = RestConverter.SWAGGER_REST  # type: ignore[attr-defined]
        rest.set_rest_format(False)  # the stub constructor set it back to vapi-rest

    def login(self) -> str:
        svc = Session(self._login_cfg)
        self._flip(svc, self._login_rest)
        sid = svc.create()
        assert isinstance(sid, str) and sid
        self.session_id = sid
        self.http.headers["vmware-api-session-id"] = sid
        return sid

    def stub(self, cls: type[S]) -> S:
        svc = cls(self._cfg)
        self._flip(svc, self._rest)
        return svc

    def logout(self) -> None:
        svc = self.stub(Session)
        svc.delete()


ERRORS: dict[str, type[errors_client.Error]] = {
    "NOT_FOUND": errors_client.NotFound,
    "NOT_ALLOWED_IN_CURRENT_STATE": errors_client.NotAllowedInCurrentState,
    "RESOURCE_BUSY": errors_client.ResourceBusy,
    "INVALID_ARGUMENT": errors_client.InvalidArgument,
    "ALREADY_EXISTS": errors_client.AlreadyExists,
}


def retype(err: VapiError) -> errors_client.Error:
    """Rebuild the right error class from the body's `error_type` (REFERENCE.md §1 item 3)."""
    if isinstance(err, UnresolvedError):
        raise AssertionError(f"SDK could not decode the error: {err!r}")
    assert isinstance(err, errors_client.Error), repr(err)
    et = err.error_type
    assert et is not None, f"error body without error_type: {err!r}"
    cls = ERRORS.get(str(et))
    assert cls is not None, f"unexpected error_type {et}"
    new = cls(messages=err.messages, data=err.data)
    new.set_status_code(err.get_status_code())
    return new


def expect_error(call: Callable[[], Any], error_type: str, status: int) -> errors_client.Error:
    with pytest.raises(VapiError) as info:
        call()
    err = retype(info.value)
    assert isinstance(err, ERRORS[error_type])
    assert err.error_type == error_type
    assert err.get_status_code() == status
    assert err.messages and all(m.default_message for m in err.messages)
    return err


@pytest.fixture(params=["http", "https"])
def sdk(
    request: pytest.FixtureRequest, server: ServerProcess, make_server: Callable[..., ServerProcess]
) -> Iterator[Sdk]:
    if request.param == "http":
        client = Sdk(server.base)
    else:
        srv = make_server(http=False)
        assert srv.base.startswith("https://")
        client = Sdk(srv.base, verify=False)
    client.login()
    yield client
    client.http.close()


def make_library_and_item(sdk: Sdk) -> tuple[str, str]:
    lib_id = sdk.stub(LocalLibrary).create(
        create_spec=LibraryModel(
            name=f"sdk-{uuid.uuid4().hex[:8]}",
            description="created by test_sdk",
            type=LibraryModel.LibraryType.LOCAL,
            storage_backings=[
                StorageBacking(type=StorageBacking.Type.OTHER, storage_uri="file:///tmp/sdk-flow-library")
            ],
        )
    )
    uuid.UUID(lib_id)
    item_id = sdk.stub(Item).create(
        create_spec=ItemModel(library_id=lib_id, name=f"item-{uuid.uuid4().hex[:8]}", type="file")
    )
    uuid.UUID(item_id)
    return lib_id, item_id


def test_sdk_happy_path(sdk: Sdk) -> None:
    # a real (minimal, unsigned) OVF descriptor: the server parses every .ovf it receives
    data = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"><References/><!-- '
        + os.urandom(2048).hex().encode()
        + b" --></Envelope>\n"
    )
    sha1 = hashlib.sha1(data).hexdigest()

    # library and item
    lib_id, item_id = make_library_and_item(sdk)
    lib = sdk.stub(LocalLibrary).get(lib_id)
    assert lib.type == LibraryModel.LibraryType.LOCAL
    assert lib.storage_backings[0].storage_uri == "file:///tmp/sdk-flow-library"
    item = sdk.stub(Item).get(item_id)
    assert item.library_id == lib_id
    assert item.content_version == "1"
    assert item_id in sdk.stub(Item).list(lib_id)

    # update session
    sessions = sdk.stub(UpdateSession)
    sid = sessions.create(create_spec=UpdateSessionModel(library_item_id=item_id), client_token=str(uuid.uuid4()))
    uuid.UUID(sid)
    us = sessions.get(sid)
    assert us.library_item_id == item_id
    assert us.library_item_content_version == "1"
    assert us.client_progress == 0
    assert us.state == UpdateSessionModel.State.ACTIVE
    assert us.expiration_time is not None
    assert us.id is None

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
    assert us.library_item_id == item_id
    assert {(w.type, w.ignored) for w in us.warning_behavior} == {
        (WarningType.SELF_SIGNED_CERTIFICATE, True),
        (WarningType.UNTRUSTED_CERTIFICATE, False),
    }

    # add a PUSH file with size and SHA1, upload the bytes over the data plane
    files = sdk.stub(UpdateFile)
    added = files.add(
        sid,
        UpdateFile.AddSpec(
            name="payload.ovf",
            source_type=UpdateFile.SourceType.PUSH,
            size=len(data),
            checksum_info=ItemFile.ChecksumInfo(algorithm=ItemFile.ChecksumAlgorithm.SHA1, checksum=sha1),
        ),
    )
    assert added.name == "payload.ovf"
    assert added.source_type == UpdateFile.SourceType.PUSH
    assert added.status == "WAITING_FOR_TRANSFER"
    assert added.bytes_transferred == 0
    uri = added.upload_endpoint.uri
    assert uri.startswith(sdk.base + "/cls/data/"), uri
    assert uri.endswith("/payload.ovf"), uri
    r = requests.post(uri, data=data, headers={"Content-Type": "text/ovf"}, verify=sdk.http.verify, timeout=60)
    assert r.status_code == 200, r.text

    got = files.get(sid, "payload.ovf")
    assert got.status == "READY"
    assert got.size == len(data)
    assert got.bytes_transferred == len(data)
    assert got.checksum_info.checksum.lower() == sha1
    listed = files.list(sid)
    assert [f.name for f in listed] == ["payload.ovf"]
    assert listed[0].status == "READY"
    result = files.validate(sid)
    assert result.has_errors is False
    assert not result.missing_files
    assert not result.invalid_files

    sessions.keep_alive(sid, client_progress=100)
    assert sessions.get(sid).client_progress == 100
    assert sid in sessions.list(library_item_id=item_id)
    sessions.complete(sid)
    us = sessions.get(sid)
    assert us.state == UpdateSessionModel.State.DONE
    assert us.preview_info is None
    assert us.client_progress == 100

    # the item's files
    item_files = sdk.stub(ItemFile)
    ifs = item_files.list(item_id)
    assert len(ifs) == 1
    f = ifs[0]
    assert (f.name, f.size, f.cached, f.version) == ("payload.ovf", len(data), True, "1")
    assert f.checksum_info.algorithm == ItemFile.ChecksumAlgorithm.SHA1
    assert f.checksum_info.checksum.lower() == sha1
    one = item_files.get(item_id, "payload.ovf")  # `GET ...file?name` with a JSON body
    assert (one.name, one.size, one.version) == ("payload.ovf", len(data), "1")
    assert one.checksum_info.checksum.lower() == sha1
    item = sdk.stub(Item).get(item_id)
    assert item.content_version == "2"
    assert item.size == len(data)

    # download it back
    downloads = sdk.stub(DownloadSession)
    ds = downloads.create(create_spec=DownloadSessionModel(library_item_id=item_id))
    uuid.UUID(ds)
    dsm = downloads.get(ds)
    assert dsm.library_item_id == item_id
    assert dsm.library_item_content_version == "2"
    assert dsm.state == DownloadSessionModel.State.ACTIVE
    assert dsm.client_progress == 0
    assert ds in downloads.list(library_item_id=item_id)
    dfiles = sdk.stub(DownloadFile)
    dl = dfiles.list(ds)
    assert [(x.name, x.status) for x in dl] == [("payload.ovf", DownloadFile.PrepareStatus.UNPREPARED)]
    prepared = dfiles.prepare(ds, "payload.ovf", endpoint_type=DownloadFile.EndpointType.HTTPS)
    assert prepared.status == DownloadFile.PrepareStatus.PREPARED
    dget = dfiles.get(ds, "payload.ovf")  # `GET ...file?file_name` with a JSON body
    assert dget.status == DownloadFile.PrepareStatus.PREPARED
    assert dget.download_endpoint.uri == prepared.download_endpoint.uri
    r = requests.get(prepared.download_endpoint.uri, verify=sdk.http.verify, timeout=60)
    assert r.status_code == 200
    assert r.content == data
    downloads.keep_alive(ds, progress=100)
    assert downloads.get(ds).client_progress == 100
    downloads.delete(ds)
    expect_error(lambda: downloads.get(ds), "NOT_FOUND", 404)

    sessions.delete(sid)
    expect_error(lambda: sessions.get(sid), "NOT_FOUND", 404)
    sdk.logout()


def test_sdk_error_path(sdk: Sdk) -> None:
    _, item_id = make_library_and_item(sdk)
    sessions = sdk.stub(UpdateSession)
    sid = sessions.create(create_spec=UpdateSessionModel(library_item_id=item_id))
    files = sdk.stub(UpdateFile)
    data = b"error path payload"
    added = files.add(sid, UpdateFile.AddSpec(name="e.bin", source_type=UpdateFile.SourceType.PUSH, size=len(data)))
    r = requests.post(
        added.upload_endpoint.uri,
        data=data,
        headers={"Content-Type": "text/ovf"},
        verify=sdk.http.verify,
        timeout=60,
    )
    assert r.status_code == 200, r.text
    sessions.complete(sid)
    assert sessions.get(sid).state == UpdateSessionModel.State.DONE

    # update on a DONE session: the SDK raises its first declared error type; the body says the truth
    err = expect_error(
        lambda: sessions.update(sid, UpdateSessionModel(warning_behavior=[])),
        "NOT_ALLOWED_IN_CURRENT_STATE",
        400,
    )
    assert isinstance(err, errors_client.NotAllowedInCurrentState)
    expect_error(lambda: sessions.keep_alive(sid, client_progress=100), "NOT_ALLOWED_IN_CURRENT_STATE", 400)
    expect_error(lambda: sessions.complete(sid), "NOT_ALLOWED_IN_CURRENT_STATE", 400)

    # unknown session id
    missing = str(uuid.uuid4())
    err = expect_error(lambda: sessions.get(missing), "NOT_FOUND", 404)
    assert any(missing in m.default_message for m in err.messages)

    # a second create on an item with an ACTIVE session (the SDK drops Client-Token, so a "retry" is busy too)
    token = str(uuid.uuid4())
    active = sessions.create(create_spec=UpdateSessionModel(library_item_id=item_id), client_token=token)
    expect_error(
        lambda: sessions.create(create_spec=UpdateSessionModel(library_item_id=item_id), client_token=token),
        "RESOURCE_BUSY",
        500,
    )
    assert sessions.get(active).state == UpdateSessionModel.State.ACTIVE
    # delete of an ACTIVE session is refused; cancel then delete works
    expect_error(lambda: sessions.delete(active), "NOT_ALLOWED_IN_CURRENT_STATE", 400)
    sessions.cancel(active)
    assert sessions.get(active).state == UpdateSessionModel.State.CANCELED
    sessions.delete(active)

    # fail stores the client's message
    failing = sessions.create(create_spec=UpdateSessionModel(library_item_id=item_id))
    sessions.fail(failing, client_error_message="client gave up")
    us = sessions.get(failing)
    assert us.state == UpdateSessionModel.State.ERROR
    assert us.error_message.default_message == "client gave up"

    # item file get of an unknown name, download session of an unknown item
    expect_error(lambda: sdk.stub(ItemFile).get(item_id, "nope"), "NOT_FOUND", 404)
    expect_error(
        lambda: sdk.stub(DownloadSession).create(create_spec=DownloadSessionModel(library_item_id=missing)),
        "NOT_FOUND",
        404,
    )
