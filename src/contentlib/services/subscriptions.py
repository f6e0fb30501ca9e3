"""The subscriptions of a published library (`com.vmware.content.library.subscriptions`): the subscribed libraries
it knows of, which `local_library.publish` and `library.item.publish` push changes to.

A subscription is LOCAL: its subscribed library is one of this server's, made by the create (CREATE_NEW) or
subscribing already to this library's `publish_url` (USE_EXISTING). It reads the feed over HTTP like any
subscriber: at the address the create was called at, pinning this server's own certificate over https, and with a
credential of its own when the library is published with BASIC (the publish password is kept only hashed): a
random password whose SHA-256 the subscription keeps, which the feed accepts as it accepts the library's. REMOTE
subscriptions (a subscribed library on another vCenter, which vCenter makes through its peers) cannot be made
here: RESOURCE_INACCESSIBLE, as for a vCenter that cannot be contacted. Deleting a subscription leaves its
subscribed library ("The subscribed library associated with the subscription will not be deleted").
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from contentlib import errors
from contentlib.model import DestinationSpec, LibraryModel, StorageBacking, SubscriptionInfo
from contentlib.services.core import Core, Ctx, check_client_token, load_json
from contentlib.services.libraries import Libraries
from contentlib.services.publish_info import credential_sha256
from contentlib.services.subscribed import SubscribedLibraries
from contentlib.services.subscriber import subscription_of
from contentlib.services.vcsp_client import DEFAULT_USER
from contentlib.storage.sql import Row, dumps

_PLACEMENT = ("folder", "cluster", "resource_pool", "host", "network")


def _placement(value: Any) -> dict[str, Any]:
    given = value if isinstance(value, dict) else {}
    return {k: given[k] for k in _PLACEMENT if isinstance(given.get(k), str)}


def _own_thumbprint(cert: Path | None) -> str | None:
    if cert is None:
        return None
    return x509.load_pem_x509_certificate(cert.read_bytes()).fingerprint(hashes.SHA256()).hex()


class Subscriptions:
    def __init__(self, core: Core, libraries: Libraries, subscribed: SubscribedLibraries) -> None:
        self.core = core
        self.store = core.store
        self.libraries = libraries
        self.subscribed = subscribed

    async def published(self, library_id: str) -> Row:
        """The published local library whose subscriptions are asked for."""
        row = await self.libraries.library(library_id)
        if row["type"] != "LOCAL":
            raise errors.ApiError(
                "INVALID_ELEMENT_TYPE",
                "com.vmware.content.library.not_local",
                f"The library {library_id} is a subscribed library: only a published library has subscriptions.",
                library_id,
            )
        if (load_json(row["extra"]).get("publish_info") or {}).get("published") is not True:
            raise errors.not_allowed(
                f"The library {library_id} is not published (publish_info.published is not true): it has no "
                "subscriptions.",
                library_id,
                msg_id="com.vmware.content.library.not_published",
            )
        return row

    async def _subscription(self, library_id: str, subscription: str) -> Row:
        row = await self.store.get_subscription(library_id, subscription)
        if row is None:
            raise errors.not_found("subscription", f"{subscription} of library {library_id}")
        return row

    # -- operations ---------------------------------------------------------------------------------------------
    async def create(self, ctx: Ctx, library: str, spec: dict[str, Any], client_token: str | None = None) -> str:
        token = check_client_token(client_token)
        if token is not None and (row := await self.store.subscription_by_token(token)) is not None:
            return str(row["id"])
        published = await self.published(library)
        target = spec.get("subscribed_library") if isinstance(spec, dict) else None
        if not isinstance(target, dict):
            raise errors.invalid_argument("spec.subscribed_library is required: which subscribed library to use.")
        if target.get("location") == "REMOTE":
            host = (target.get("vcenter") or {}).get("hostname") if isinstance(target.get("vcenter"), dict) else None
            raise errors.ApiError(
                "RESOURCE_INACCESSIBLE",
                "com.vmware.content.library.subscription.vcenter_inaccessible",
                f"The vCenter {host or '(none named)'} of a REMOTE subscription cannot be contacted: this server "
                "makes LOCAL subscriptions only (their subscribed library is one of its own).",
                host or "",
            )
        if target.get("location") != "LOCAL":
            raise errors.invalid_argument("spec.subscribed_library.location must be LOCAL or REMOTE.")
        url = f"{ctx.base_url}/cls/vcsp/lib/{published['id']}/lib.json"
        basic = (load_json(published["extra"]).get("publish_info") or {}).get("authentication_method") == "BASIC"
        secret = secrets.token_urlsafe(24) if basic else ""
        if target.get("target") == "CREATE_NEW":
            new = target.get("new_subscribed_library")
            model = self._new_library(new, url, secret)
            subscribed_id = self.core.new_id()
        elif target.get("target") == "USE_EXISTING":
            model, secret = None, ""
            subscribed_id = await self._use_existing(target.get("subscribed_library"), published["id"])
        else:
            raise errors.invalid_argument("spec.subscribed_library.target must be CREATE_NEW or USE_EXISTING.")
        subscription_id = self.core.new_id()
        row = {
            "id": subscription_id,
            "library_id": published["id"],
            "subscribed_library_id": subscribed_id,
            "location": "LOCAL",
            "vcenter": None,
            "placement": dumps(_placement(target.get("placement"))),
            "token_sha256": credential_sha256(secret) if secret else None,
            "created": self.core.now(),
            "client_token": token,
        }
        # The subscription first: the new library's create reads the feed with the subscription's credential.
        if not await self.store.insert_subscription(row):
            raise errors.already_exists(
                f"The library {published['id']} already has a subscription of the subscribed library {subscribed_id}.",
                published["id"],
                subscribed_id,
            )
        if model is not None:
            try:
                await self.subscribed.create(ctx, model, library_id=subscribed_id)
            except BaseException:
                await self.store.delete_subscription(subscription_id)
                raise
        return subscription_id

    def _new_library(self, new: Any, url: str, secret: str) -> LibraryModel:
        """The subscribed library a CREATE_NEW subscription makes (what `subscribed_library.create` is given)."""
        field = "spec.subscribed_library.new_subscribed_library"
        if not isinstance(new, dict) or not new.get("name") or not new.get("storage_backings"):
            raise errors.invalid_argument(f"{field} with a name and storage_backings is required for CREATE_NEW.")
        try:
            backings = msgspec.convert(new["storage_backings"], list[StorageBacking])
        except msgspec.ValidationError as e:
            raise errors.invalid_argument(f"{field}.storage_backings is not valid: {e}.") from None
        info = SubscriptionInfo(
            subscription_url=url,
            authentication_method="BASIC" if secret else "NONE",
            user_name=DEFAULT_USER if secret else None,
            password=secret or None,
            ssl_thumbprint=_own_thumbprint(self.core.settings.tls_cert) if url.startswith("https:") else None,
            on_demand=new.get("on_demand") is True,
            automatic_sync_enabled=new.get("automatic_sync_enabled") is True,
        )
        return LibraryModel(
            name=str(new["name"]),
            description=str(new.get("description") or ""),
            type="SUBSCRIBED",
            storage_backings=backings,
            subscription_info=info,
        )

    async def _use_existing(self, subscribed_id: Any, library_id: str) -> str:
        if not isinstance(subscribed_id, str) or not subscribed_id:
            raise errors.invalid_argument("spec.subscribed_library.subscribed_library is required for USE_EXISTING.")
        row = await self.subscribed.library(subscribed_id)
        url = str(subscription_of(row).get("subscription_url") or "")
        if not url.endswith(f"/cls/vcsp/lib/{library_id}/lib.json"):
            raise errors.invalid_argument(
                f"The subscribed library {subscribed_id} does not subscribe to the library {library_id} (its "
                f"subscription_url is {url}, not this library's publish_url).",
                subscribed_id,
                library_id,
            )
        return subscribed_id

    async def _summary(self, row: Row) -> dict[str, Any]:
        lib = await self.store.get_library(row["subscribed_library_id"])
        return {
            "subscription": row["id"],
            "subscribed_library": row["subscribed_library_id"],
            "subscribed_library_name": lib["name"] if lib else "",
        }

    async def list_all(self, ctx: Ctx, library: str) -> list[dict[str, Any]]:
        await self.published(library)
        return [await self._summary(r) for r in await self.store.list_subscriptions(library)]

    async def get(self, ctx: Ctx, library: str, subscription: str) -> dict[str, Any]:
        await self.published(library)
        row = await self.store.get_subscription(library, subscription)
        if row is None:  # the contract's error for get: "If the subscription is not valid"
            raise errors.invalid_argument(
                f"The library {library} has no subscription {subscription}.", library, subscription
            )
        summary = await self._summary(row)
        return {
            "subscribed_library": summary["subscribed_library"],
            "subscribed_library_name": summary["subscribed_library_name"],
            "subscribed_library_location": row["location"],
            "subscribed_library_placement": load_json(row["placement"]),
        }

    async def update(self, ctx: Ctx, library: str, subscription: str, spec: dict[str, Any]) -> None:
        await self.published(library)
        row = await self._subscription(library, subscription)
        if isinstance(spec, dict) and spec.get("subscribed_library_vcenter") is not None:
            raise errors.invalid_argument(
                "spec.subscribed_library_vcenter cannot be set: the subscription is LOCAL (its subscribed library is "
                "on this server).",
            )
        if isinstance(spec, dict) and "subscribed_library_placement" in spec:
            # "all attributes of the current subscribed library placement will be replaced by this placement"
            await self.store.update_subscription(
                row["id"], {"placement": dumps(_placement(spec["subscribed_library_placement"]))}
            )

    async def delete(self, ctx: Ctx, library: str, subscription: str) -> None:
        await self.published(library)
        row = await self._subscription(library, subscription)
        await self.store.delete_subscription(row["id"])

    # -- publishing ------------------------------------------------------------------------------------------
    async def _targets(self, library_id: str, subscriptions: list[DestinationSpec] | None) -> list[str]:
        """The subscribed libraries a publish reaches: those of the named subscriptions (INVALID_ARGUMENT for one
        the library does not have), or of all of them."""
        known = {r["id"]: r["subscribed_library_id"] for r in await self.store.list_subscriptions(library_id)}
        if subscriptions is None:
            return list(known.values())
        unknown = [s.subscription for s in subscriptions if s.subscription not in known]
        if unknown:
            named = ", ".join(repr(s) for s in unknown)
            raise errors.invalid_argument(
                f"The library {library_id} has no subscription {named}: subscriptions[].subscription must name one of "
                "its subscriptions.",
                library_id,
                named,
                msg_id="com.vmware.content.library.subscription.not_found",
            )
        return [known[s.subscription] for s in subscriptions]

    async def publish_library(
        self, ctx: Ctx, library_id: str, subscriptions: list[DestinationSpec] | None = None
    ) -> None:
        """`local_library.publish`: counted (the library's `publish_version` raises its feed's version, so that
        every subscriber sees it on its next sync), and the subscriptions named (all: none named) sync now."""
        async with self.store.transaction():
            row = await self.libraries.library(library_id, local_only=True)
            self.libraries.require_published(row, f"Cannot publish the library {library_id}")
            targets = await self._targets(library_id, subscriptions)
            await self.store.bump_publish_version("library", library_id)
        for target in targets:
            if await self.store.get_library(target) is not None:
                await self.subscribed.subscriber.request(target)

    async def publish_item(
        self,
        ctx: Ctx,
        library_item_id: str,
        force_sync_content: bool,
        subscriptions: list[DestinationSpec] | None = None,
    ) -> None:
        """`library.item.publish`: counted (the library's count goes up too: a subscriber watches the library's to
        learn that one of its items was published); the subscriptions' copies of the item sync now, with their
        content when `force_sync_content` (on-demand subscriptions) or their library is not on demand. A
        subscription that does not have the item yet gets it with a sync of its library."""
        async with self.store.transaction():
            item = await self.libraries.item(library_item_id)
            await self.libraries.require_writable(item, "Cannot publish")
            row = await self.libraries.library(item["library_id"])
            self.libraries.require_published(row, f"Cannot publish the library item {library_item_id}")
            targets = await self._targets(row["id"], subscriptions)
            await self.store.bump_publish_version("item", library_item_id)
            await self.store.bump_publish_version("library", row["id"])
        for target in targets:
            lib = await self.store.get_library(target)
            if lib is None:
                continue
            copy = next((r for r in await self.store.list_items(target) if r["source_id"] == library_item_id), None)
            content = force_sync_content or subscription_of(lib).get("on_demand") is not True
            await self.subscribed.subscriber.request(target, {copy["id"]: content} if copy else None)
