"""The vAPI structures we accept as input, named exactly as in types.json.

Decoding a request body into one of these validates it in one pass; msgspec's error names the offending field
(`... - at `$.warning_behavior[0].type``), which becomes the INVALID_ARGUMENT message. JSON `null` and a missing
member both mean "unset" (REFERENCE.md §5). Results are built as plain dicts by the services, leaving unset
optionals out, which is what the SDK expects.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

NonNegative = Annotated[int, Meta(ge=0, le=2**63 - 1)]  # a vAPI long is 64 bits (and so are the database columns)

WarningType = Literal[
    "SELF_SIGNED_CERTIFICATE", "EXPIRED_CERTIFICATE", "NOT_YET_VALID_CERTIFICATE", "UNTRUSTED_CERTIFICATE"
]
UpdateSessionState = Literal["ACTIVE", "DONE", "ERROR", "CANCELED"]
DownloadSessionState = Literal["ACTIVE", "CANCELED", "ERROR"]
ChecksumAlgorithm = Literal["SHA1", "MD5", "SHA256", "SHA512"]
SourceType = Literal["NONE", "PUSH", "PULL"]
LibraryType = Literal["LOCAL", "SUBSCRIBED"]
StorageBackingType = Literal["DATASTORE", "OTHER"]
EndpointType = Literal["HTTPS", "DIRECT"]


class LocalizableMessage(Struct, omit_defaults=True):
    id: str
    default_message: str
    args: list[str]
    params: dict[str, Any] | None = None
    localized: str | None = None


class WarningBehavior(Struct):
    type: WarningType
    ignored: bool


class StorageBacking(Struct, omit_defaults=True):
    type: StorageBackingType | None = None
    datastore_id: str | None = None
    storage_uri: str | None = None


AuthenticationMethod = Literal["BASIC", "NONE"]


class OptimizationInfo(Struct, omit_defaults=True):
    optimize_remote_publishing: bool | None = None


class PublishInfo(Struct, omit_defaults=True):
    authentication_method: AuthenticationMethod | None = None
    published: bool | None = None
    publish_url: str | None = None
    user_name: str | None = None
    password: str | None = None  # write-only (secret): "not used for the get method"
    current_password: str | None = None  # write-only (secret)
    persist_json_enabled: bool | None = None


class SourceInfo(Struct, omit_defaults=True):
    source_library: str | None = None
    subscription: str | None = None


class SubscriptionInfo(Struct, omit_defaults=True):
    authentication_method: AuthenticationMethod | None = None
    automatic_sync_enabled: bool | None = None
    on_demand: bool | None = None
    password: str | None = None  # write-only (secret): "will not be present in the return value of get or list"
    ssl_thumbprint: str | None = None
    subscription_url: str | None = None
    user_name: str | None = None
    source_info: SourceInfo | None = None
    ssl_certificate: str | None = None


class ConfigurationInfo(Struct, omit_defaults=True):
    apply_library_usage_to_items: bool | None = None


class LibraryModel(Struct, omit_defaults=True):
    id: str | None = None
    creation_time: datetime | None = None
    description: str | None = None
    last_modified_time: datetime | None = None
    last_sync_time: datetime | None = None
    name: str | None = None
    storage_backings: list[StorageBacking] | None = None
    type: LibraryType | None = None
    optimization_info: OptimizationInfo | None = None
    version: str | None = None
    publish_info: PublishInfo | None = None
    subscription_info: SubscriptionInfo | None = None
    server_guid: str | None = None
    security_policy_id: str | None = None
    unset_security_policy_id: bool | None = None
    state_info: dict[str, Any] | None = None  # not used for create or update
    configuration_info: ConfigurationInfo | None = None


class LibraryFindSpec(Struct, omit_defaults=True):
    name: str | None = None
    type: LibraryType | None = None
    storage_backing: StorageBacking | None = None


class ItemModel(Struct, omit_defaults=True):
    id: str | None = None
    library_id: str | None = None
    content_version: str | None = None
    creation_time: datetime | None = None
    description: str | None = None
    last_modified_time: datetime | None = None
    last_sync_time: datetime | None = None
    metadata_version: str | None = None
    name: str | None = None
    cached: bool | None = None
    size: int | None = None
    type: str | None = None
    version: str | None = None
    source_id: str | None = None
    security_compliance: bool | None = None
    certificate_verification_info: dict[str, Any] | None = None


class ItemFindSpec(Struct, omit_defaults=True):
    name: str | None = None
    library_id: str | None = None
    source_id: str | None = None
    type: str | None = None
    cached: bool | None = None


class UpdateSessionModel(Struct, omit_defaults=True):
    id: str | None = None
    library_item_id: str | None = None
    library_item_content_version: str | None = None
    error_message: LocalizableMessage | None = None
    client_progress: int | None = None
    state: UpdateSessionState | None = None
    expiration_time: datetime | None = None
    preview_info: dict[str, Any] | None = None
    warning_behavior: list[WarningBehavior] | None = None


class DownloadSessionModel(Struct, omit_defaults=True):
    id: str | None = None
    library_item_id: str | None = None
    library_item_content_version: str | None = None
    error_message: LocalizableMessage | None = None
    client_progress: int | None = None
    state: DownloadSessionState | None = None
    expiration_time: datetime | None = None


class ChecksumInfo(Struct, omit_defaults=True):
    checksum: str
    algorithm: ChecksumAlgorithm | None = None


class TransferEndpoint(Struct, omit_defaults=True):
    uri: str
    ssl_certificate_thumbprint: str | None = None
    ssl_certificate: str | None = None


class AddSpec(Struct, omit_defaults=True):
    name: str
    source_type: SourceType
    source_endpoint: TransferEndpoint | None = None
    size: NonNegative | None = None
    checksum_info: ChecksumInfo | None = None


class TrustedCertificateCreateSpec(Struct):
    cert_text: str


class DestinationSpec(Struct):
    """`LocalLibrary.DestinationSpec` and `library.Item.DestinationSpec` (the same one member): a subscription to
    publish to."""

    subscription: str


Long = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
ConstraintType = Literal["ENUMERATION", "MIN_INCLUSIVE", "MAX_INCLUSIVE", "MIN_EXCLUSIVE", "MAX_EXCLUSIVE"]


class ConfigurationSetting(Struct, omit_defaults=True):
    name: str | None = None
    reboot_required: bool | None = None
    constraints: list[dict[ConstraintType, str]] | None = None


class ConfigurationModel(Struct, omit_defaults=True):
    """The global settings (`content.ConfigurationModel`); each value has a `<name>_setting` describing it."""

    automatic_sync_enabled: bool | None = None
    automatic_sync_enabled_setting: ConfigurationSetting | None = None
    automatic_sync_start_hour: Long | None = None
    automatic_sync_start_hour_setting: ConfigurationSetting | None = None
    automatic_sync_stop_hour: Long | None = None
    automatic_sync_stop_hour_setting: ConfigurationSetting | None = None
    maximum_concurrent_item_syncs: Long | None = None
    maximum_concurrent_item_syncs_setting: ConfigurationSetting | None = None
    automatic_sync_refresh_interval: Long | None = None
    automatic_sync_refresh_interval_setting: ConfigurationSetting | None = None
    automatic_sync_setting_refresh_interval: Long | None = None
    automatic_sync_setting_refresh_interval_setting: ConfigurationSetting | None = None
    transfer_throttling_bandwidth_total: Long | None = None
    transfer_throttling_bandwidth_total_setting: ConfigurationSetting | None = None
    transfer_nfc_max_concurrent_transfers_per_host: Long | None = None
    transfer_nfc_max_concurrent_transfers_per_host_setting: ConfigurationSetting | None = None
    priority_transfer_threads_pool_size: Long | None = None
    priority_transfer_threads_pool_size_setting: ConfigurationSetting | None = None
    transfer_threads_pool_size: Long | None = None
    transfer_threads_pool_size_setting: ConfigurationSetting | None = None


def to_builtins(value: Any) -> Any:
    """A Struct (or anything msgspec can encode) as plain JSON-ready values."""
    return msgspec.to_builtins(value)


_seconds_text: dict[int, str] = {}


def fmt_time(t: float) -> str:
    """Datetimes on the wire: UTC, milliseconds, `Z` (what the SDK sends and parses)."""
    seconds = int(t)
    text = _seconds_text.get(seconds)
    if text is None:  # the same few seconds are formatted over and over: remember them
        if len(_seconds_text) > 4096:
            _seconds_text.clear()
        text = _seconds_text[seconds] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{text}.{int((t - seconds) * 1000):03d}Z"
