"""What this server supports, as fixed lists: the security policies (`com.vmware.content.security_policies`) a
library's `security_policy_id` may name, and the item types (`com.vmware.content.type`) its type support knows.
"""

from __future__ import annotations

from typing import Any

from contentlib import __version__
from contentlib.services.core import Ctx

# vCenter's built-in policy: OVF items of a library it is applied to must be signed by a trusted certificate. Its id
# is fixed (a UUID derived from its name), the same on every replica and after every restart.
OVF_POLICY_ID = "0cbb9bb6-43fb-54fe-abfe-b056187413c7"
SECURITY_POLICIES: list[dict[str, Any]] = [
    {"policy": OVF_POLICY_ID, "name": "OVF default policy", "item_type_rules": {"ovf": "OVF_STRICT_VERIFICATION"}},
]
POLICY_IDS = frozenset(p["policy"] for p in SECURITY_POLICIES)

# The type support of this server (services/package.py sets an item's type from its files).
TYPES: list[dict[str, Any]] = [
    {
        "type": "ovf",
        "name": "OVF package",
        "vendor": "contentlib",
        "version": __version__,
        "description": "OVF templates: a descriptor with its disks, manifest and signing certificate, or an OVA "
        "archive unpacked as it uploads; references, manifest digests and signatures are checked.",
        "supported_rules": ["OVF_STRICT_VERIFICATION"],
    },
    {
        "type": "iso",
        "name": "ISO image",
        "vendor": "contentlib",
        "version": __version__,
        "description": "An ISO 9660 disc image: an item holding a single .iso file.",
    },
]


async def security_policies(ctx: Ctx) -> list[dict[str, Any]]:
    return SECURITY_POLICIES


async def types(ctx: Ctx) -> list[dict[str, Any]]:
    return TYPES
