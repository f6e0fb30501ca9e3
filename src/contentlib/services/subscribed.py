"""Subscribed libraries (`com.vmware.content.subscribed_library`) and their items
(`com.vmware.content.library.subscribed_item`): a library that mirrors a VCSP publisher (services/subscriber.py
runs the syncs; services/vcsp_client.py reads publishers).

`subscription_info` is kept in the library's `extra` without its password, which has a column of its own: the
subscriber must send it to its publisher, so it is kept as given (never returned). A create or an update that
changes where or how the library subscribes reads the publisher's lib.json first, and refuses (the vendor's
RESOURCE_INACCESSIBLE, naming the problem) what cannot be read; nothing is stored then.
"""

from __future__ import annotations

from typing import Any

from contentlib import errors
from contentlib.model import LibraryModel, SubscriptionInfo, to_builtins
from contentlib.services.core import Core, Ctx, check_client_token, check_uri, load_json
from contentlib.services.libraries import Libraries
from contentlib.services.subscriber import Subscriber, subscription_of
from contentlib.services.vcsp_client import DEFAULT_USER, ProbeError, check_url
from contentlib.storage.sql import Row, dumps


def _not_subscribed(library_id: str) -> errors.ApiError:
    return errors.ApiError(
        "INVALID_ELEMENT_TYPE",
        "com.vmware.content.library.not_subscribed",
        f"The library {library_id} is not a subscribed library.",
        library_id,
    )


def _inaccessible(e: ProbeError, url: str) -> errors.ApiError:
    if e.status == "INVALID_URL":
        return errors.invalid_argument(f"subscription_info.subscription_url: {e.text}", url)
    return errors.ApiError(
        "RESOURCE_INACCESSIBLE",
        "com.vmware.content.library.subscription.inaccessible",
        f"The published library at {url} cannot be accessed ({e.status}): {e.text}",
        url,
        e.status,
    )


def _merge(old: dict[str, Any], spec: SubscriptionInfo | None, field: str) -> tuple[dict[str, Any], str | None]:
    """The subscription_info to store (no password) and the password given, checked: what a create (old empty)
    or an update (old the stored one) makes of `spec`."""
    given = {k: v for k, v in to_builtins(spec).items() if v is not None} if spec is not None else {}
    password = given.pop("password", None)
    given.pop("source_info", None)  # set by a subscription of a published library of this server, never by a client
    info = {**old, **given}
    if info.get("authentication_method") is None:
        raise errors.invalid_argument(f"{field}.authentication_method is required (BASIC or NONE).")
    for flag in ("automatic_sync_enabled", "on_demand"):
        info.setdefault(flag, False)
    url = info.get("subscription_url")
    if not url:
        raise errors.invalid_argument(f"{field}.subscription_url is required: the publish_url of a published library.")
    check_uri(url, f"{field}.subscription_url")
    try:
        check_url(url)
    except ProbeError as e:
        raise errors.invalid_argument(f"{field}.subscription_url: {e.text}", url) from None
    if info["authentication_method"] == "BASIC":
        info["user_name"] = info.get("user_name") or DEFAULT_USER  # a vCenter's publisher knows only this one
        if ":" in info["user_name"]:
            raise errors.invalid_argument(f"{field}.user_name must not hold ':' (Basic authentication's separator).")
    else:
        info.pop("user_name", None)
        password = None
    return info, password


def _require_password(info: dict[str, Any], password: str | None, field: str) -> None:
    if info["authentication_method"] == "BASIC" and not password:
        raise errors.invalid_argument(f"{field}.password is required with BASIC authentication: the publisher's.")


class SubscribedLibraries:
    def __init__(self, core: Core, libraries: Libraries, subscriber: Subscriber) -> None:
        self.core = core
        self.store = core.store
        self.libraries = libraries
        self.subscriber = subscriber

    async def library(self, library_id: str) -> Row:
        row = await self.libraries.library(library_id)
        if row["type"] != "SUBSCRIBED":
            raise _not_subscribed(library_id)
        return row

    async def _check_reachable(self, info: dict[str, Any], password: str | None) -> None:
        try:
            await (await self.subscriber.connect(info, password)).library()
        except ProbeError as e:
            raise _inaccessible(e, info["subscription_url"]) from None

    # -- subscribed_library -------------------------------------------------------------------------------------
    async def create(
        self, ctx: Ctx, create_spec: LibraryModel, client_token: str | None = None, library_id: str | None = None
    ) -> str:
        """`library_id`: the id the new library gets (a subscription made for it names it first)."""
        token = check_client_token(client_token)
        if token is not None and (row := await self.store.library_by_token(token)) is not None:
            return str(row["id"])
        spec = create_spec
        if not spec.name:
            raise errors.invalid_argument("The library name is required and must not be empty (create_spec.name).")
        if spec.type not in (None, "SUBSCRIBED"):
            raise errors.invalid_argument(f"A subscribed library cannot be created with type {spec.type}.")
        if spec.publish_info is not None:
            raise errors.invalid_argument("create_spec.publish_info is not valid for a subscribed library.")
        if spec.subscription_info is None:
            raise errors.invalid_argument("create_spec.subscription_info is required: what the library subscribes to.")
        backings = self.libraries.backings(ctx, spec)
        info, password = _merge({}, spec.subscription_info, "create_spec.subscription_info")
        _require_password(info, password, "create_spec.subscription_info")
        await self._check_reachable(info, password)
        extra: dict[str, Any] = {"subscription_info": info}
        for k in ("optimization_info", "configuration_info"):
            if (v := to_builtins(getattr(spec, k))) is not None:
                extra[k] = v
        library_id = await self.libraries.insert(
            spec, "SUBSCRIBED", backings, extra, token, library_id, subscription_password=password
        )
        await self.subscriber.request(library_id)  # "the Content Library Service will attempt to synchronize"
        return library_id

    async def get(self, ctx: Ctx, library_id: str) -> dict[str, Any]:
        return await self.libraries.render(ctx, await self.library(library_id))

    async def list_all(self, ctx: Ctx) -> list[str]:
        return [r["id"] for r in await self.store.list_libraries("SUBSCRIBED")]

    async def update(self, ctx: Ctx, library_id: str, update_spec: LibraryModel) -> None:
        spec = update_spec
        before = await self.library(library_id)
        if spec.publish_info is not None:
            raise errors.invalid_argument("update_spec.publish_info is not valid for a subscribed library.")
        old = subscription_of(before)
        info, password = old, before["subscription_password"]
        if spec.subscription_info is not None:
            info, given = _merge(old, spec.subscription_info, "update_spec.subscription_info")
            password = (given or before["subscription_password"]) if info["authentication_method"] == "BASIC" else None
            _require_password(info, password, "update_spec.subscription_info")
            reach = ("subscription_url", "authentication_method", "ssl_thumbprint", "user_name")
            if any(info.get(k) != old.get(k) for k in reach) or given is not None:
                await self._check_reachable(info, password)
        if spec.name is not None and not spec.name:
            raise errors.invalid_argument("The library name must not be empty (update_spec.name).")
        async with self.store.transaction():
            row = await self.library(library_id)
            if spec.version is not None and spec.version != str(row["version"]):
                raise errors.concurrent_change(
                    f"The library {library_id} was changed concurrently: version {spec.version} was given, the "
                    f"current version is {row['version']}."
                )
            if (row["extra"], row["subscription_password"]) != (before["extra"], before["subscription_password"]):
                raise errors.resource_busy(f"The library {library_id} is being updated concurrently; try again.")
            extra = load_json(row["extra"]) | {"subscription_info": info}
            fields: dict[str, Any] = {
                "extra": dumps(extra),
                "subscription_password": password,
                "version": row["version"] + 1,
                "modified": self.core.now(),
            }
            if spec.name is not None:
                fields["name"] = spec.name
            if spec.description is not None:
                fields["description"] = spec.description
            await self.store.update_library(library_id, fields)
        if info != old and (info.get("subscription_url") != old.get("subscription_url") or not info["on_demand"]):
            await self.subscriber.request(library_id)

    async def delete(self, ctx: Ctx, library_id: str) -> None:
        """The library and its items go at once, with whatever a sync of it was fetching."""
        await self.library(library_id)
        task = self.subscriber.tasks.get(library_id)
        if task is not None:
            task.cancel()
            await self.subscriber.wait(library_id)
        blobs: list[str] = []
        for item in await self.store.list_items(library_id):
            await self.subscriber.cancel_session(item["id"])
        async with self.store.transaction():
            await self.library(library_id)
            for item in await self.store.list_items(library_id):
                session = await self.store.active_update_session_for(item["id"])
                if session is not None:
                    raise errors.not_allowed(
                        f"The library item {item['id']} has an ACTIVE update session {session['id']}; try again.",
                        item["id"],
                        session["id"],
                    )
                blobs += await self.store.delete_item(item["id"])
            await self.store.delete_library(library_id)
            await self.store.delete_sync_state(library_id)
            await self.store.forget_subscriptions(library_id)
        await self.core.discard_blobs(blobs)

    async def sync(self, ctx: Ctx, library_id: str) -> None:
        """Start a sync (the call does not wait for it: `last_sync_time` says when one ended well); the publisher is
        checked first, so that one that cannot be reached is said at once."""
        row = await self.library(library_id)
        await self._check_reachable(subscription_of(row), row["subscription_password"])
        await self.subscriber.request(library_id)

    async def evict(self, ctx: Ctx, library_id: str) -> None:
        row = await self.library(library_id)
        if subscription_of(row).get("on_demand") is not True:
            raise errors.not_allowed(
                f"Cannot evict the library {library_id}: it does not synchronize on demand (subscription_info."
                "on_demand is false), so it keeps every item's content.",
                library_id,
                msg_id="com.vmware.content.library.not_on_demand",
            )
        for item in await self.store.list_items(library_id):
            await self._evict(item)

    async def _evict(self, item: Row) -> None:
        async with self.store.transaction():
            blobs = await self.store.evict_item(item["id"])
        await self.core.discard_blobs(blobs)

    async def probe(self, ctx: Ctx, subscription_info: SubscriptionInfo) -> dict[str, Any]:
        """Whether the subscription would work, and if not why (ProbeResult): never an error."""
        given = {k: v for k, v in to_builtins(subscription_info).items() if v is not None}
        result: dict[str, Any] = {"status": "SUCCESS", "error_messages": []}
        try:
            check_url(str(given.get("subscription_url") or ""))
            pub = await self.subscriber.connect(given, given.get("password"))
            await pub.library()
            if pub.thumbprint is not None:
                result["ssl_thumbprint"] = pub.thumbprint
        except ProbeError as e:
            result["status"] = e.status
            result["error_messages"] = [errors.message(f"com.vmware.content.probe.{e.status.lower()}", e.text)]
            if e.thumbprint is not None:
                result["ssl_thumbprint"] = e.thumbprint
        return result

    # -- subscribed_item ------------------------------------------------------------------------------------------
    async def _item(self, library_item_id: str) -> tuple[Row, Row]:
        item = await self.libraries.item(library_item_id)
        library = await self.libraries.library(item["library_id"])
        if library["type"] != "SUBSCRIBED":
            raise errors.ApiError(
                "INVALID_ELEMENT_TYPE",
                "com.vmware.content.library.item.not_subscribed",
                f"The library item {library_item_id} is not a member of a subscribed library.",
                library_item_id,
            )
        return item, library

    async def sync_item(
        self, ctx: Ctx, library_item_id: str, force_sync_content: bool, sync_optional_files: bool | None = None
    ) -> None:
        item, library = await self._item(library_item_id)
        content = force_sync_content or subscription_of(library).get("on_demand") is not True
        await self.subscriber.request(library["id"], {item["id"]: content})

    async def fetch(self, item: Row) -> None:
        """The content of an item of a subscribed library, asked for (a download session's prepare)."""
        await self.subscriber.request(item["library_id"], {item["id"]: True})

    async def evict_item(self, ctx: Ctx, library_item_id: str) -> None:
        item, library = await self._item(library_item_id)
        if subscription_of(library).get("on_demand") is not True:
            raise errors.ApiError(
                "INVALID_ELEMENT_CONFIGURATION",
                "com.vmware.content.library.not_on_demand",
                f"Cannot evict the library item {library_item_id}: its library {library['id']} does not synchronize "
                "on demand.",
                library_item_id,
                library["id"],
            )
        await self._evict(item)
