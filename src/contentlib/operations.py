"""The one operation table: (service id, operation) → handler, inputs, REST route and success status.

Every wire protocol is a thin codec over this table; no rule of the API lives in a protocol. Service ids,
operation names and parameter names are those of operations.json / the SDK, so a reader can hold each row against
the contract. `kind` says where a parameter travels on /api:

- path: a `{name}` segment of the route;  query: `?name=value`;  header: an HTTP header (`wire` names it);
- body: the whole JSON body is this structure;  field: a member of a JSON object body (keep-alive, fail, ...);
- dispatch: `?name=value`, or — as the official Python SDK sends it — a bare `?name` marker with the value as a
  member of a JSON body on a GET (REFERENCE.md §1 item 3).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import msgspec

from contentlib import errors
from contentlib.model import (
    AddSpec,
    ConfigurationModel,
    DestinationSpec,
    DownloadSessionModel,
    EndpointType,
    ItemFindSpec,
    ItemModel,
    LibraryFindSpec,
    LibraryModel,
    SubscriptionInfo,
    TrustedCertificateCreateSpec,
    UpdateSessionModel,
)
from contentlib.privileges import (
    CHANGES,
    CONFIG,
    DS,
    DSF,
    ITEM,
    LIB,
    LOCAL,
    POLICIES,
    PRIVILEGES,
    SESSION,
    STORAGE,
    SUB,
    SUB_ITEM,
    SUBS,
    TRUST,
    TYPE,
    US,
    USF,
)
from contentlib.services import catalog

ParamKind = Literal["path", "query", "header", "body", "field", "dispatch"]


@dataclass(frozen=True)
class Param:
    name: str
    kind: ParamKind
    type: Any = str
    required: bool = True
    wire: str | None = None  # the query or header name when it differs from `name`
    stored: bool = True  # a body or member that may be stored (and so must hold no NUL); a probe's never is


@dataclass(frozen=True)
class Operation:
    service: str
    name: str
    method: str
    path: str
    action: str | None
    params: tuple[Param, ...]
    handler: Callable[..., Awaitable[Any]]
    status: int  # on success
    auth: bool = True  # needs a vmware-api-session-id
    privileges: tuple[str, ...] = ()  # what the caller's role must grant (PRIVILEGES)

    @functools.cached_property
    def id(self) -> str:
        """`com.vmware.content.library.get`: how metrics and logs name the operation."""
        return f"{self.service}.{self.name}"

    @property
    def fields_type(self) -> type[msgspec.Struct] | None:
        """The JSON-object body of an operation whose inputs are `field`/`dispatch` members."""
        return _fields_type(self)

    async def call(self, ctx: Any, **kwargs: Any) -> Any:
        """Run the handler on decoded inputs. Text that may be stored (a body, or a member of one) must not hold
        a NUL character, on every backend: PostgreSQL's text cannot hold one."""
        for p in self.params:
            if p.kind in ("body", "field") and p.stored and (where := _nul_at(kwargs.get(p.name), p.name)) is not None:
                raise errors.invalid_argument(f"{where} holds a NUL character.", where)
        return await self.handler(ctx, **kwargs)


def _nul_at(value: Any, where: str) -> str | None:
    """The member of `value` (named from `where` down) that is text with a NUL character, if any."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    members: list[tuple[str, Any]]
    if isinstance(value, msgspec.Struct):
        members = [(f"{where}.{name}", getattr(value, name)) for name in value.__struct_fields__]
    elif isinstance(value, dict):
        members = [(where, key) for key in value] + [(f"{where}.{key}", v) for key, v in value.items()]
    elif isinstance(value, list | tuple):
        members = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    else:
        return None
    return next((found for name, member in members if (found := _nul_at(member, name)) is not None), None)


_fields_cache: dict[tuple[str, str], type[msgspec.Struct] | None] = {}


def _fields_type(op: Operation) -> type[msgspec.Struct] | None:
    key = (op.service, op.name)
    if key not in _fields_cache:
        members = [p for p in op.params if p.kind in ("field", "dispatch")]
        _fields_cache[key] = (
            msgspec.defstruct(
                f"{op.service}.{op.name}.input",
                [(p.name, p.type) if p.required else (p.name, p.type | None, None) for p in members],
                omit_defaults=True,
            )
            if members
            else None
        )
    return _fields_cache[key]


def _p(name: str, kind: ParamKind, type_: Any = str, required: bool = True, wire: str | None = None) -> Param:
    return Param(name, kind, type_, required, wire)


TOKEN = _p("client_token", "header", str, False, "Client-Token")

US_ID = _p("update_session_id", "path")
DS_ID = _p("download_session_id", "path")
ITEM_ID = _p("library_item_id", "path")
LIB_ID = _p("library_id", "path")
CHANGED_ITEM = _p("library_item", "path")  # the changes service names its item parameter so
SUBSCRIPTIONS = _p("subscriptions", "field", list[DestinationSpec], False)


def build(app: Any) -> list[Operation]:
    """The table, bound to the service objects of a running server (`app.App`)."""
    return [replace(op, privileges=PRIVILEGES[(op.service, op.name)]) if op.auth else op for op in _table(app)]


def _table(app: Any) -> list[Operation]:
    auth, libs, us, ds, trust = app.auth, app.libraries, app.update_sessions, app.download_sessions, app.trusted
    content, config, sub, subs = app.item_content, app.configuration, app.subscribed, app.subscriptions

    async def local_get(ctx: Any, library_id: str) -> Any:
        return await libs.get(ctx, library_id, local_only=True)

    async def local_list(ctx: Any) -> Any:
        return await libs.list_all(ctx, local_only=True)

    async def local_update(ctx: Any, library_id: str, update_spec: LibraryModel) -> None:
        await libs.update(ctx, library_id, update_spec, local_only=True)

    async def local_delete(ctx: Any, library_id: str) -> None:
        await libs.delete(ctx, library_id, local_only=True)

    async def session_create(ctx: Any) -> str:
        return str(await auth.login(ctx.credentials))

    async def session_get(ctx: Any) -> Any:
        return await auth.info(ctx.session_id)

    async def session_delete(ctx: Any) -> None:
        await auth.logout(ctx.session_id)

    base = "/api/content"
    local, item = f"{base}/local-library", f"{base}/library/item"
    copy_params = (TOKEN, _p("source_library_item_id", "path"), _p("destination_create_spec", "body", ItemModel))
    publish_params = (ITEM_ID, _p("force_sync_content", "field", bool), SUBSCRIPTIONS)
    storage_get = (ITEM_ID, _p("file_name", "dispatch"))
    change = (CHANGED_ITEM, _p("version", "path"))
    lib_publish = (LIB_ID, SUBSCRIPTIONS)
    config_model = (_p("model", "body", ConfigurationModel),)
    subscribed, sub_item = f"{base}/subscribed-library", f"{base}/library/subscribed-item"
    sub_create = (TOKEN, _p("create_spec", "body", LibraryModel))
    sub_update = (LIB_ID, _p("update_spec", "body", LibraryModel))
    probe = (Param("subscription_info", "field", SubscriptionInfo, stored=False),)
    item_sync = (ITEM_ID, _p("force_sync_content", "field", bool), _p("sync_optional_files", "field", bool, False))
    subscriptions, one = (
        f"{base}/library/{{library}}/subscriptions",
        f"{base}/library/{{library}}/subscriptions/{{subscription}}",
    )
    lib_p, sub_p = _p("library", "path"), _p("subscription", "path")
    subs_create = (TOKEN, lib_p, _p("spec", "body", dict[str, Any]))
    subs_update = (lib_p, sub_p, _p("spec", "body", dict[str, Any]))
    O = Operation  # noqa: E741 - a table reads better with a short constructor
    return [
        O(
            SESSION,
            "create",
            "POST",
            "/api/session",
            None,
            (),
            session_create,
            201,
            auth=False,
        ),
        O(SESSION, "get", "GET", "/api/session", None, (), session_get, 200),
        O(SESSION, "delete", "DELETE", "/api/session", None, (), session_delete, 204),
        O(
            LOCAL,
            "create",
            "POST",
            f"{base}/local-library",
            None,
            (TOKEN, _p("create_spec", "body", LibraryModel)),
            libs.create_local,
            201,
        ),
        O(LOCAL, "get", "GET", f"{base}/local-library/{{library_id}}", None, (LIB_ID,), local_get, 200),
        O(LOCAL, "list", "GET", f"{base}/local-library", None, (), local_list, 200),
        O(
            LOCAL,
            "update",
            "PATCH",
            f"{base}/local-library/{{library_id}}",
            None,
            (LIB_ID, _p("update_spec", "body", LibraryModel)),
            local_update,
            204,
        ),
        O(LOCAL, "delete", "DELETE", f"{base}/local-library/{{library_id}}", None, (LIB_ID,), local_delete, 204),
        O(LIB, "get", "GET", f"{base}/library/{{library_id}}", None, (LIB_ID,), libs.get, 200),
        O(LIB, "list", "GET", f"{base}/library", None, (), libs.list_all, 200),
        O(LIB, "find", "POST", f"{base}/library", "find", (_p("spec", "body", LibraryFindSpec),), libs.find, 200),
        O(
            LIB,
            "update",
            "PATCH",
            f"{base}/library/{{library_id}}",
            None,
            (LIB_ID, _p("update_spec", "body", LibraryModel)),
            libs.update,
            204,
        ),
        O(
            ITEM,
            "create",
            "POST",
            f"{base}/library/item",
            None,
            (TOKEN, _p("create_spec", "body", ItemModel)),
            libs.create_item,
            201,
        ),
        O(ITEM, "get", "GET", f"{base}/library/item/{{library_item_id}}", None, (ITEM_ID,), libs.get_item, 200),
        O(ITEM, "list", "GET", f"{base}/library/item", None, (_p("library_id", "dispatch"),), libs.list_items, 200),
        O(
            ITEM,
            "find",
            "POST",
            f"{base}/library/item",
            "find",
            (_p("spec", "body", ItemFindSpec),),
            libs.find_items,
            200,
        ),
        O(
            ITEM,
            "update",
            "PATCH",
            f"{base}/library/item/{{library_item_id}}",
            None,
            (ITEM_ID, _p("update_spec", "body", ItemModel)),
            libs.update_item,
            204,
        ),
        O(
            ITEM,
            "delete",
            "DELETE",
            f"{base}/library/item/{{library_item_id}}",
            None,
            (ITEM_ID,),
            libs.delete_item,
            204,
        ),
        O(
            f"{ITEM}.file",
            "list",
            "GET",
            f"{base}/library/item/{{library_item_id}}/file",
            None,
            (ITEM_ID,),
            libs.list_files,
            200,
        ),
        O(
            f"{ITEM}.file",
            "get",
            "GET",
            f"{base}/library/item/{{library_item_id}}/file",
            None,
            (ITEM_ID, _p("name", "dispatch")),
            libs.get_file,
            200,
        ),
        O(
            US,
            "create",
            "POST",
            f"{base}/library/item/update-session",
            None,
            (TOKEN, _p("create_spec", "body", UpdateSessionModel)),
            us.create,
            201,
        ),
        O(US, "get", "GET", f"{base}/library/item/update-session/{{update_session_id}}", None, (US_ID,), us.get, 200),
        O(
            US,
            "list",
            "GET",
            f"{base}/library/item/update-session",
            None,
            (_p("library_item_id", "query", str, False),),
            us.list_ids,
            200,
        ),
        O(
            US,
            "update",
            "PATCH",
            f"{base}/library/item/update-session/{{update_session_id}}",
            None,
            (US_ID, _p("update_spec", "body", UpdateSessionModel)),
            us.update,
            204,
        ),
        O(
            US,
            "delete",
            "DELETE",
            f"{base}/library/item/update-session/{{update_session_id}}",
            None,
            (US_ID,),
            us.delete,
            204,
        ),
        O(
            US,
            "complete",
            "POST",
            f"{base}/library/item/update-session/{{update_session_id}}",
            "complete",
            (US_ID,),
            us.complete,
            204,
        ),
        O(
            US,
            "cancel",
            "POST",
            f"{base}/library/item/update-session/{{update_session_id}}",
            "cancel",
            (US_ID,),
            us.cancel,
            204,
        ),
        O(
            US,
            "fail",
            "POST",
            f"{base}/library/item/update-session/{{update_session_id}}",
            "fail",
            (US_ID, _p("client_error_message", "field")),
            us.fail,
            204,
        ),
        O(
            US,
            "keep_alive",
            "POST",
            f"{base}/library/item/update-session/{{update_session_id}}",
            "keep-alive",
            (US_ID, _p("client_progress", "field", int, False)),
            us.keep_alive,
            204,
        ),
        O(
            USF,
            "add",
            "POST",
            f"{base}/library/item/update-session/{{update_session_id}}/file",
            None,
            (US_ID, _p("file_spec", "body", AddSpec)),
            us.add_file,
            201,
        ),
        O(
            USF,
            "list",
            "GET",
            f"{base}/library/item/update-session/{{update_session_id}}/file",
            None,
            (US_ID,),
            us.list_files,
            200,
        ),
        O(
            USF,
            "get",
            "GET",
            f"{base}/library/item/update-session/{{update_session_id}}/file/{{file_name}}",
            None,
            (US_ID, _p("file_name", "path")),
            us.get_file,
            200,
        ),
        O(
            USF,
            "remove",
            "DELETE",
            f"{base}/library/item/update-session/{{update_session_id}}/file/{{file_name}}",
            None,
            (US_ID, _p("file_name", "path")),
            us.remove_file,
            204,
        ),
        O(
            USF,
            "validate",
            "POST",
            f"{base}/library/item/update-session/{{update_session_id}}/file",
            "validate",
            (US_ID,),
            us.validate,
            200,
        ),
        O(
            DS,
            "create",
            "POST",
            f"{base}/library/item/download-session",
            None,
            (TOKEN, _p("create_spec", "body", DownloadSessionModel)),
            ds.create,
            201,
        ),
        O(
            DS,
            "get",
            "GET",
            f"{base}/library/item/download-session/{{download_session_id}}",
            None,
            (DS_ID,),
            ds.get,
            200,
        ),
        O(
            DS,
            "list",
            "GET",
            f"{base}/library/item/download-session",
            None,
            (_p("library_item_id", "query", str, False),),
            ds.list_ids,
            200,
        ),
        O(
            DS,
            "delete",
            "DELETE",
            f"{base}/library/item/download-session/{{download_session_id}}",
            None,
            (DS_ID,),
            ds.delete,
            204,
        ),
        O(
            DS,
            "keep_alive",
            "POST",
            f"{base}/library/item/download-session/{{download_session_id}}",
            "keep-alive",
            (DS_ID, _p("progress", "field", int, False)),
            ds.keep_alive,
            204,
        ),
        O(
            DS,
            "cancel",
            "POST",
            f"{base}/library/item/download-session/{{download_session_id}}",
            "cancel",
            (DS_ID,),
            ds.cancel,
            204,
        ),
        O(
            DS,
            "fail",
            "POST",
            f"{base}/library/item/download-session/{{download_session_id}}",
            "fail",
            (DS_ID, _p("client_error_message", "field")),
            ds.fail,
            204,
        ),
        O(
            DSF,
            "list",
            "GET",
            f"{base}/library/item/download-session/{{download_session_id}}/file",
            None,
            (DS_ID,),
            ds.list_files,
            200,
        ),
        O(
            DSF,
            "get",
            "GET",
            f"{base}/library/item/download-session/{{download_session_id}}/file",
            None,
            (DS_ID, _p("file_name", "dispatch")),
            ds.get_file,
            200,
        ),
        O(
            DSF,
            "prepare",
            "POST",
            f"{base}/library/item/download-session/{{download_session_id}}/file",
            "prepare",
            (DS_ID, _p("file_name", "field"), _p("endpoint_type", "field", EndpointType, False)),
            ds.prepare,
            200,
        ),
        O(
            TRUST,
            "create",
            "POST",
            f"{base}/trusted-certificates",
            None,
            (_p("spec", "body", TrustedCertificateCreateSpec),),
            trust.create,
            201,
        ),
        O(TRUST, "list", "GET", f"{base}/trusted-certificates", None, (), trust.list_all, 200),
        O(
            TRUST,
            "get",
            "GET",
            f"{base}/trusted-certificates/{{certificate}}",
            None,
            (_p("certificate", "path"),),
            trust.get,
            200,
        ),
        O(
            TRUST,
            "delete",
            "DELETE",
            f"{base}/trusted-certificates/{{certificate}}",
            None,
            (_p("certificate", "path"),),
            trust.delete,
            204,
        ),
        # Publishing, copies, storage, content changes, the service's configuration and what it supports.
        O(LOCAL, "publish", "POST", f"{local}/{{library_id}}", "publish", lib_publish, subs.publish_library, 204),
        O(ITEM, "copy", "POST", f"{item}/{{source_library_item_id}}", "copy", copy_params, content.copy, 200),
        O(ITEM, "publish", "POST", f"{item}/{{library_item_id}}", "publish", publish_params, subs.publish_item, 204),
        O(STORAGE, "list", "GET", f"{item}/{{library_item_id}}/storage", None, (ITEM_ID,), content.list_storage, 200),
        O(STORAGE, "get", "GET", f"{item}/{{library_item_id}}/storage", None, storage_get, content.get_storage, 200),
        O(CHANGES, "list", "GET", f"{item}/{{library_item}}/changes", None, (CHANGED_ITEM,), content.list_changes, 200),
        O(CHANGES, "get", "GET", f"{item}/{{library_item}}/changes/{{version}}", None, change, content.get_change, 200),
        O(CONFIG, "get", "GET", f"{base}/configuration", None, (), config.get, 200),
        O(CONFIG, "update", "PATCH", f"{base}/configuration", None, config_model, config.update, 204),
        O(POLICIES, "list", "GET", f"{base}/security-policies", None, (), catalog.security_policies, 200),
        O(TYPE, "list", "GET", f"{base}/type", None, (), catalog.types, 200),
        # Subscribed libraries and their items (services/subscribed.py; the syncs: services/subscriber.py).
        O(SUB, "create", "POST", subscribed, None, sub_create, sub.create, 201),
        O(SUB, "get", "GET", f"{subscribed}/{{library_id}}", None, (LIB_ID,), sub.get, 200),
        O(SUB, "list", "GET", subscribed, None, (), sub.list_all, 200),
        O(SUB, "update", "PATCH", f"{subscribed}/{{library_id}}", None, sub_update, sub.update, 204),
        O(SUB, "delete", "DELETE", f"{subscribed}/{{library_id}}", None, (LIB_ID,), sub.delete, 204),
        O(SUB, "sync", "POST", f"{subscribed}/{{library_id}}", "sync", (LIB_ID,), sub.sync, 204),
        O(SUB, "evict", "POST", f"{subscribed}/{{library_id}}", "evict", (LIB_ID,), sub.evict, 204),
        O(SUB, "probe", "POST", subscribed, "probe", probe, sub.probe, 200),
        O(SUB_ITEM, "sync", "POST", f"{sub_item}/{{library_item_id}}", "sync", item_sync, sub.sync_item, 204),
        O(SUB_ITEM, "evict", "POST", f"{sub_item}/{{library_item_id}}", "evict", (ITEM_ID,), sub.evict_item, 204),
        O(SUBS, "create", "POST", subscriptions, None, subs_create, subs.create, 201),
        O(SUBS, "list", "GET", subscriptions, None, (lib_p,), subs.list_all, 200),
        O(SUBS, "get", "GET", one, None, (lib_p, sub_p), subs.get, 200),
        O(SUBS, "update", "PATCH", one, None, subs_update, subs.update, 204),
        O(SUBS, "delete", "DELETE", one, None, (lib_p, sub_p), subs.delete, 204),
    ]
