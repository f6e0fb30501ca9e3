"""The global settings of the service (`com.vmware.content.configuration`): one value for every replica, kept in the
metadata database (a meta row per setting), so they survive restarts and are the same on every replica.

Every setting is always returned (the stored value or vCenter's default, from the field docs of
`content.ConfigurationModel`), each with its `<name>_setting`: the `ConfigurationSetting` that names it, says whether
a change needs a restart, and lists its constraints. `update` is incremental (an unset member is left as it is) and
checks every given value against those constraints before it writes any: a value out of range is INVALID_ARGUMENT
naming the member, and nothing changes. The `_setting` members describe a setting and cannot be changed: given to
update, they are ignored. This server keeps the values but does not act on them (it has no subscribed libraries to
synchronize, and its transfers are not throttled).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from contentlib import errors
from contentlib.model import ConfigurationModel
from contentlib.services.core import Core, Ctx

_KEY = "configuration."  # meta keys: configuration.<setting name> -> the value as JSON


@dataclass(frozen=True)
class Setting:
    name: str
    default: bool | int
    low: int | None = None  # inclusive bounds of a number
    high: int | None = None
    reboot_required: bool = False  # "This setting requires restart of the content library service"

    @property
    def constraints(self) -> list[dict[str, str]]:
        if isinstance(self.default, bool):
            return [{"ENUMERATION": "true"}, {"ENUMERATION": "false"}]
        bounds = [("MIN_INCLUSIVE", self.low), ("MAX_INCLUSIVE", self.high)]
        return [{kind: str(value)} for kind, value in bounds if value is not None]

    def check(self, value: bool | int) -> None:
        if isinstance(self.default, bool):
            return  # the codec decoded a boolean
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            if self.high is not None:
                allowed = f"between {self.low} and {self.high} inclusive"
            else:
                allowed = "positive" if self.low == 1 else f"at least {self.low}"
            raise errors.invalid_argument(
                f"model.{self.name} is {value}; it must be {allowed}.",
                f"model.{self.name}",
                value,
                msg_id="com.vmware.content.configuration.out_of_range",
            )


# vCenter's defaults and ranges, as the field docs of content.ConfigurationModel give them.
SETTINGS = (
    Setting("automatic_sync_enabled", True),
    Setting("automatic_sync_start_hour", 20, 0, 23),
    Setting("automatic_sync_stop_hour", 7, 0, 23),
    Setting("maximum_concurrent_item_syncs", 5, 1),
    Setting("automatic_sync_refresh_interval", 240, 1),  # minutes
    Setting("automatic_sync_setting_refresh_interval", 600, 1, reboot_required=True),  # seconds
    Setting("transfer_throttling_bandwidth_total", 0, 0),  # Mbit/s; 0: unlimited
    Setting("transfer_nfc_max_concurrent_transfers_per_host", 8, 1),
    Setting("priority_transfer_threads_pool_size", 5, 1, reboot_required=True),
    Setting("transfer_threads_pool_size", 20, 1, reboot_required=True),
)


class Configuration:
    def __init__(self, core: Core) -> None:
        self.store = core.store

    async def values(self) -> dict[str, bool | int]:
        """Every setting's current value (stored, else the default)."""
        stored = await self.store.meta_under(_KEY)
        values: dict[str, bool | int] = {}
        for s in SETTINGS:
            try:
                value = msgspec.json.decode(stored[s.name], type=type(s.default)) if s.name in stored else s.default
            except msgspec.MsgspecError:
                value = s.default  # not written by this server: the default holds
            values[s.name] = value
        return values

    async def get(self, ctx: Ctx) -> dict[str, Any]:
        model: dict[str, Any] = {}
        for name, value in (await self.values()).items():
            s = next(s for s in SETTINGS if s.name == name)
            model[name] = value
            model[f"{name}_setting"] = {
                "name": name,
                "reboot_required": s.reboot_required,
                "constraints": s.constraints,
            }
        return model

    async def update(self, ctx: Ctx, model: ConfigurationModel) -> None:
        given = {s.name: (s, getattr(model, s.name)) for s in SETTINGS if getattr(model, s.name) is not None}
        for s, value in given.values():
            s.check(value)
        async with self.store.transaction():
            for name, (_, value) in given.items():
                await self.store.set_meta(_KEY + name, msgspec.json.encode(value).decode())
