"""Libraries (`com.vmware.content.library`, `.local_library`), items (`.library.item`) and item files
(`.library.item.file`).

Publishing (`local_library.publish`, `item.publish`) is services/subscriptions.py's; `publish_info` itself (its
rules, the password kept hashed, `publish_url`) is services/publish_info.py's.
"""

from __future__ import annotations

from typing import Any

from contentlib import errors
from contentlib.model import (
    ItemFindSpec,
    ItemModel,
    LibraryFindSpec,
    LibraryModel,
    StorageBacking,
    fmt_time,
    to_builtins,
)
from contentlib.services import publish_info
from contentlib.services.catalog import POLICY_IDS
from contentlib.services.core import Core, Ctx, check_client_token, check_uri, load_json
from contentlib.services.datastores import Datastores
from contentlib.storage.sql import Row, TokenTaken, dumps

# publish_info is kept apart (services/publish_info.py): it has rules of its own and a password kept hashed.
_LIBRARY_EXTRA = ("optimization_info", "subscription_info", "security_policy_id", "configuration_info")
_SECRETS = ("password", "current_password")  # write-only members of subscription_info
_ITEM_NAME_MAX = 80
_DESCRIPTION_MAX = 2000


_URIS = {"subscription_info": "subscription_url"}  # returned: must be URIs


def _extra(spec: LibraryModel, field: str) -> dict[str, Any]:
    """The given optional structures of a library spec, as stored and returned: secrets are never returned, and a
    member the contract types as a URI must be one."""
    extra: dict[str, Any] = {}
    for k in _LIBRARY_EXTRA:
        v = to_builtins(getattr(spec, k))
        if isinstance(v, dict):
            v = {name: member for name, member in v.items() if name not in _SECRETS}
            if k in _URIS and isinstance(uri := v.get(_URIS[k]), str):
                check_uri(uri, f"{field}.{k}.{_URIS[k]}")
        if v is not None:
            extra[k] = v
    return extra


def _check_policy(spec: LibraryModel, field: str) -> None:
    """A security policy a library is given must be one this server has (`security_policies.list`)."""
    policy = spec.security_policy_id
    if policy is not None and not spec.unset_security_policy_id and policy not in POLICY_IDS:
        raise errors.invalid_argument(
            f"{field}.security_policy_id '{policy}' is not a security policy of this server "
            f"(security_policies.list names them: {', '.join(sorted(POLICY_IDS))}).",
            policy,
        )


def backing_row(ctx: Ctx, b: StorageBacking, i: int, datastores: Datastores) -> dict[str, Any]:
    """A storage backing as stored. Either kind maps to the blob store; a DATASTORE backing must name this server's
    datastore, and needs the privilege the contract names for it."""
    if b.type is None:
        raise errors.invalid_argument("storage_backings[].type is required (DATASTORE or OTHER).")
    if b.type == "DATASTORE" and b.storage_uri is not None:
        raise errors.invalid_argument("storage_backings[].storage_uri is only valid when type is OTHER.")
    if b.type == "OTHER" and b.datastore_id is not None:
        raise errors.invalid_argument("storage_backings[].datastore_id is only valid when type is DATASTORE.")
    if b.type == "DATASTORE":
        datastore = datastores.check(b.datastore_id, f"create_spec.storage_backings[{i}].datastore_id")
        ctx.require(("Datastore.AllocateSpace",), f"A storage backing on the datastore {datastore.id}")
    if b.storage_uri is not None:
        check_uri(b.storage_uri, f"create_spec.storage_backings[{i}].storage_uri")
    return dict(to_builtins(b))


class Libraries:
    def __init__(self, core: Core, datastores: Datastores) -> None:
        self.core = core
        self.datastores = datastores
        self.store = core.store
        self.server_guid = ""

    async def start(self) -> None:
        guid = await self.store.get_meta("server_guid")
        if guid is None:
            guid = self.core.new_id()
            await self.store.set_meta("server_guid", guid)
        self.server_guid = guid

    # -- rendering -------------------------------------------------------------------------------------------
    def library_model(self, row: Row, base_url: str, last_sync: float | None = None) -> dict[str, Any]:
        model: dict[str, Any] = {
            "id": row["id"],
            "name": row["name"],
            "description": row["description"],
            "type": row["type"],
            "storage_backings": load_json(row["storage_backings"]),
            "creation_time": fmt_time(row["created"]),
            "last_modified_time": fmt_time(row["modified"]),
            "version": str(row["version"]),
            "server_guid": self.server_guid,
            "state_info": {"state": "ACTIVE"},
        }
        extra = load_json(row["extra"])
        info = publish_info.render(extra.pop("publish_info", None), row["id"], base_url)
        model.update(extra)
        if last_sync is not None:
            model["last_sync_time"] = fmt_time(last_sync)
        if info is not None:
            model["publish_info"] = info
        return model

    # -- libraries -----------------------------------------------------------------------------------------
    async def library(self, library_id: str, local_only: bool = False) -> Row:
        row = await self.store.get_library(library_id)
        if row is None:
            raise errors.not_found("library", library_id)
        if local_only and row["type"] != "LOCAL":
            raise errors.ApiError(
                "INVALID_ELEMENT_TYPE",
                "com.vmware.content.library.not_local",
                f"The library {library_id} is not a local library.",
                library_id,
            )
        return row

    async def create_local(self, ctx: Ctx, create_spec: LibraryModel, client_token: str | None = None) -> str:
        token = check_client_token(client_token)
        if token is not None and (row := await self.store.library_by_token(token)) is not None:
            return str(row["id"])
        if not create_spec.name:
            raise errors.invalid_argument("The library name is required and must not be empty (create_spec.name).")
        if create_spec.type not in (None, "LOCAL"):
            raise errors.invalid_argument(f"A local library cannot be created with type {create_spec.type}.")
        backings = self.backings(ctx, create_spec)
        _check_policy(create_spec, "create_spec")
        extra = _extra(create_spec, "create_spec")
        published = await publish_info.for_create(create_spec.publish_info)
        if published is not None:
            extra["publish_info"] = published.info
        password = None if published is None else published.password_hash
        return await self.insert(create_spec, "LOCAL", backings, extra, token, publish_password=password)

    def backings(self, ctx: Ctx, create_spec: LibraryModel) -> list[dict[str, Any]]:
        """A create spec's storage backing, checked, as stored: exactly one (UNSUPPORTED for more)."""
        if not create_spec.storage_backings:
            raise errors.invalid_argument("create_spec.storage_backings is required: give one storage backing.")
        if len(create_spec.storage_backings) > 1:
            raise errors.ApiError(
                "UNSUPPORTED",
                "com.vmware.content.library.multiple_storage_backings",
                "A library supports exactly one storage backing.",
            )
        return [backing_row(ctx, b, i, self.datastores) for i, b in enumerate(create_spec.storage_backings)]

    async def insert(
        self,
        spec: LibraryModel,
        kind: str,
        backings: list[dict[str, Any]],
        extra: dict[str, Any],
        token: str | None,
        library_id: str | None = None,
        **columns: Any,
    ) -> str:
        """Store a new library made from a checked create spec; its id (that of the library made with the same
        client token, when one already was)."""
        now = self.core.now()
        library_id = library_id or self.core.new_id()
        try:
            await self.store.insert_library(
                {
                    "id": library_id,
                    "name": spec.name,
                    "description": spec.description or "",
                    "type": kind,
                    "storage_backings": dumps(backings),
                    "extra": dumps(extra),
                    "version": 1,
                    "created": now,
                    "modified": now,
                    "client_token": token,
                    **columns,
                }
            )
        except TokenTaken:
            row = await self.store.library_by_token(token or "")
            assert row is not None
            return str(row["id"])
        return library_id

    async def get(self, ctx: Ctx, library_id: str, local_only: bool = False) -> dict[str, Any]:
        row = await self.library(library_id, local_only)
        return await self.render(ctx, row)

    async def render(self, ctx: Ctx, row: Row) -> dict[str, Any]:
        """The library's model; a subscribed one's says when its last sync ended well."""
        state = await self.store.sync_state(row["id"]) if row["type"] == "SUBSCRIBED" else None
        return self.library_model(row, ctx.base_url, state["last_sync"] if state else None)

    async def require_writable(self, item: Row, what: str) -> None:
        """INVALID_ELEMENT_TYPE for an item of a subscribed library: only its syncs change it."""
        library = await self.library(item["library_id"])
        if library["type"] != "LOCAL":
            raise errors.ApiError(
                "INVALID_ELEMENT_TYPE",
                "com.vmware.content.library.item.not_local",
                f"{what} the library item {item['id']}: it is a member of the subscribed library {library['id']}, "
                "which only its synchronization changes.",
                item["id"],
                library["id"],
            )

    async def list_all(self, ctx: Ctx, local_only: bool = False) -> list[str]:
        return [r["id"] for r in await self.store.list_libraries("LOCAL" if local_only else None)]

    async def find(self, ctx: Ctx, spec: LibraryFindSpec) -> list[str]:
        if spec.name is None and spec.type is None and spec.storage_backing is None:
            raise errors.invalid_argument("The find spec is empty: give at least one of name, type, storage_backing.")
        want_backing = to_builtins(spec.storage_backing) if spec.storage_backing else None
        found = []
        for row in await self.store.list_libraries(spec.type):
            if spec.name is not None and row["name"].lower() != spec.name.lower():
                continue
            if want_backing is not None and not any(
                all(b.get(k) == v for k, v in want_backing.items()) for b in load_json(row["storage_backings"])
            ):
                continue
            found.append(row["id"])
        return found

    async def update(self, ctx: Ctx, library_id: str, update_spec: LibraryModel, local_only: bool = False) -> None:
        publishing, before_info = None, None
        if update_spec.publish_info is not None:  # checked first: argon2 must not run inside the transaction
            before = await self.library(library_id, local_only)
            before_info = load_json(before["extra"]).get("publish_info")
            publishing = await publish_info.for_update(
                before_info, before["publish_password"], update_spec.publish_info
            )
        async with self.store.transaction():
            row = await self.library(library_id, local_only)
            if update_spec.version is not None and update_spec.version != str(row["version"]):
                text = (
                    f"The library {library_id} was changed concurrently: version {update_spec.version} was given, "
                    f"the current version is {row['version']}."
                )
                if local_only:
                    raise errors.concurrent_change(text)
                raise errors.invalid_argument(text)
            if update_spec.name is not None and not update_spec.name:
                raise errors.invalid_argument("The library name must not be empty (update_spec.name).")
            _check_policy(update_spec, "update_spec")
            fields: dict[str, Any] = {}
            if update_spec.name is not None:
                fields["name"] = update_spec.name
            if update_spec.description is not None:
                fields["description"] = update_spec.description
            extra = load_json(row["extra"]) | _extra(update_spec, "update_spec")
            if update_spec.unset_security_policy_id:
                extra.pop("security_policy_id", None)
            if publishing is not None:
                if (extra.get("publish_info"), row["publish_password"]) != (before_info, publishing.checked_hash):
                    raise errors.concurrent_change(
                        f"The publish_info of the library {library_id} was changed concurrently; try again."
                    )
                extra["publish_info"] = publishing.info
                fields["publish_password"] = publishing.password_hash
            fields["extra"] = dumps(extra)
            fields["version"] = row["version"] + 1
            fields["modified"] = self.core.now()
            await self.store.update_library(library_id, fields)

    async def delete(self, ctx: Ctx, library_id: str, local_only: bool = False) -> None:
        blobs: list[str] = []
        async with self.store.transaction():
            await self.library(library_id, local_only)
            items = await self.store.list_items(library_id)
            for item in items:
                await self._check_no_active_session(item["id"])
            for item in items:
                blobs += await self.store.delete_item(item["id"])
            await self.store.delete_library(library_id)
            await self.store.forget_subscriptions(library_id)
        await self.core.discard_blobs(blobs)

    # -- publishing -------------------------------------------------------------------------------------------
    @staticmethod
    def require_published(row: Row, what: str) -> None:
        if (load_json(row["extra"]).get("publish_info") or {}).get("published") is not True:
            raise errors.not_allowed(
                f"{what}: the library {row['id']} is not published (publish_info.published is not true).",
                row["id"],
                msg_id="com.vmware.content.library.not_published",
            )

    # -- items ------------------------------------------------------------------------------------------------
    def item_model(self, row: Row) -> dict[str, Any]:
        model: dict[str, Any] = {
            "id": row["id"],
            "library_id": row["library_id"],
            "name": row["name"],
            "description": row["description"],
            "content_version": str(row["content_version"]),
            "metadata_version": str(row["metadata_version"]),
            "version": str(row["version"]),
            "creation_time": fmt_time(row["created"]),
            "last_modified_time": fmt_time(row["modified"]),
            "cached": bool(row["cached"]),
            "size": row["size"] if row["cached"] else sum(f.get("size") or 0 for f in remote_files(row)),
            "security_compliance": True,
        }
        if row["last_sync"] is not None:
            model["last_sync_time"] = fmt_time(row["last_sync"])
        if row["type"] is not None:
            model["type"] = row["type"]
        if row["source_id"] is not None:
            model["source_id"] = row["source_id"]
        return model

    async def item(self, item_id: str) -> Row:
        row = await self.store.get_item(item_id)
        if row is None:
            raise errors.not_found("library item", item_id)
        return row

    async def _check_no_active_session(self, item_id: str) -> None:
        session = await self.store.active_update_session_for(item_id)
        if session is not None:
            raise errors.not_allowed(
                f"The library item {item_id} has an ACTIVE update session {session['id']}; "
                "complete or cancel it first.",
                item_id,
                session["id"],
            )

    @staticmethod
    def check_item_text(name: str | None, description: str | None, field: str) -> None:
        if name is not None and not name.strip():
            raise errors.invalid_argument(f"The library item name must not be empty ({field}.name).")
        if name is not None and len(name) > _ITEM_NAME_MAX:
            raise errors.invalid_argument(
                f"The library item name is {len(name)} characters long; at most {_ITEM_NAME_MAX} are allowed "
                f"({field}.name)."
            )
        if description is not None and len(description) > _DESCRIPTION_MAX:
            raise errors.invalid_argument(
                f"The description is {len(description)} characters long; at most {_DESCRIPTION_MAX} are allowed "
                f"({field}.description)."
            )

    async def create_item(self, ctx: Ctx, create_spec: ItemModel, client_token: str | None = None) -> str:
        token = check_client_token(client_token)
        if token is not None and (row := await self.store.item_by_token(token)) is not None:
            return str(row["id"])
        if create_spec.library_id is None:
            raise errors.invalid_argument("create_spec.library_id is required.")
        if create_spec.name is None:
            raise errors.invalid_argument("create_spec.name is required.")
        self.check_item_text(create_spec.name, create_spec.description, "create_spec")
        library = await self.library(create_spec.library_id)
        if library["type"] != "LOCAL":
            raise errors.ApiError(
                "INVALID_ELEMENT_TYPE",
                "com.vmware.content.library.not_local",
                f"Cannot create an item in the library {library['id']}: it is a subscribed library, which only its "
                "synchronization changes.",
                library["id"],
            )
        now = self.core.now()
        item_id = self.core.new_id()
        clash = await self.store.insert_item(
            {
                "id": item_id,
                "library_id": create_spec.library_id,
                "name": create_spec.name,
                "description": create_spec.description or "",
                "type": create_spec.type or None,
                "source_id": create_spec.source_id,
                "version": 1,
                "metadata_version": 1,
                "content_version": 1,
                "created": now,
                "modified": now,
                "client_token": token,
            }
        )
        if clash == "token":
            row = await self.store.item_by_token(token or "")
            assert row is not None
            return str(row["id"])
        if clash == "name":
            raise errors.already_exists(
                f"An item named '{create_spec.name}' already exists in the library {create_spec.library_id}.",
                create_spec.name,
                create_spec.library_id,
            )
        return item_id

    async def get_item(self, ctx: Ctx, library_item_id: str) -> dict[str, Any]:
        return self.item_model(await self.item(library_item_id))

    async def list_items(self, ctx: Ctx, library_id: str) -> list[str]:
        await self.library(library_id)
        return [r["id"] for r in await self.store.list_items(library_id)]

    async def find_items(self, ctx: Ctx, spec: ItemFindSpec) -> list[str]:
        if all(getattr(spec, f) is None for f in ("name", "library_id", "source_id", "type", "cached")):
            raise errors.invalid_argument(
                "The find spec is empty: give at least one of name, library_id, source_id, type, cached."
            )
        found = []
        for row in await self.store.list_items(spec.library_id):
            if spec.cached is not None and bool(row["cached"]) != spec.cached:
                continue
            if spec.name is not None and row["name"].lower() != spec.name.lower():
                continue
            if spec.type is not None and (row["type"] or "").lower() != spec.type.lower():
                continue
            if spec.source_id is not None and row["source_id"] != spec.source_id:
                continue
            found.append(row["id"])
        return found

    async def update_item(self, ctx: Ctx, library_item_id: str, update_spec: ItemModel) -> None:
        async with self.store.transaction():
            row = await self.item(library_item_id)
            await self.require_writable(row, "Cannot update")
            if update_spec.version is not None and update_spec.version != str(row["version"]):
                raise errors.invalid_argument(
                    f"The library item {library_item_id} was changed concurrently: version {update_spec.version} was "
                    f"given, the current version is {row['version']}."
                )
            self.check_item_text(update_spec.name, update_spec.description, "update_spec")
            fields: dict[str, Any] = {}
            if update_spec.name is not None:
                fields["name"] = update_spec.name
            if update_spec.description is not None:
                fields["description"] = update_spec.description
            if update_spec.type is not None:
                fields["type"] = update_spec.type or None
            if fields:
                fields.update(
                    version=row["version"] + 1, metadata_version=row["metadata_version"] + 1, modified=self.core.now()
                )
                if not await self.store.update_item(library_item_id, fields):
                    raise errors.already_exists(
                        f"An item named '{update_spec.name}' already exists in the library {row['library_id']}.",
                        update_spec.name or "",
                        row["library_id"],
                    )

    async def delete_item(self, ctx: Ctx, library_item_id: str) -> None:
        async with self.store.transaction():
            await self.require_writable(await self.item(library_item_id), "Cannot delete")
            await self._check_no_active_session(library_item_id)
            await self.store.count_removed_item(library_item_id)  # the library's feed version must grow
            blobs = await self.store.delete_item(library_item_id)
        await self.core.discard_blobs(blobs)

    # -- item files ---------------------------------------------------------------------------------------------
    @staticmethod
    def file_info(row: Row) -> dict[str, Any]:
        return {
            "name": row["name"],
            "size": row["size"],
            "cached": True,
            "version": str(row["version"]),
            "checksum_info": {"algorithm": "SHA1", "checksum": row["sha1"]},
        }

    @staticmethod
    def uncached_file_info(remote: dict[str, Any]) -> dict[str, Any]:
        """A file of an item whose bytes are not here (on-demand): what its publisher says of it."""
        info: dict[str, Any] = {"name": remote["name"], "cached": False, "version": "1"}
        if remote.get("size") is not None:
            info["size"] = remote["size"]
        return info

    async def list_files(self, ctx: Ctx, library_item_id: str) -> list[dict[str, Any]]:
        item = await self.item(library_item_id)
        if not item["cached"]:
            return [self.uncached_file_info(f) for f in remote_files(item)]
        return [self.file_info(r) for r in await self.store.item_files(library_item_id)]

    async def get_file(self, ctx: Ctx, library_item_id: str, name: str) -> dict[str, Any]:
        item = await self.item(library_item_id)
        if not item["cached"]:
            for f in remote_files(item):
                if f["name"] == name:
                    return self.uncached_file_info(f)
        row = await self.store.item_file(library_item_id, name)
        if row is None:
            raise errors.not_found("file", f"'{name}' of library item {library_item_id}")
        return self.file_info(row)


def remote_files(item: Row) -> list[dict[str, Any]]:
    """The files the publisher of a subscribed library's item lists for it (none for a local item)."""
    return list((load_json(item["remote"]) or {}).get("files") or [])
